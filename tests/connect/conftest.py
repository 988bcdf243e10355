"""Fixtures for the Kafka Connect tests (issue 11): a broker and Connect workers, every process
started here and stopped by PID (never by name).

The broker is the real `sluice` binary ($SLUICE_BIN, else target/release/sluice, else
target/debug/sluice) on a free loopback port with a fresh data dir; its log (RUST_LOG, default
info) goes to the test's temp dir and is printed when a test fails.
Opt-in, as in tests/clients: KAFKA_BOOTSTRAP=host:port runs the same tests against that broker
(the reference Kafka of tests/kafka-ref), KAFKA_REF_DIR=DIR (the dir tests/kafka-ref/start ran
with) lets the broker-restart step SIGKILL and restart it.
"""
import collections
import importlib.machinery
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def _load(name, path):
    loader = importlib.machinery.SourceFileLoader(name, path)
    spec = importlib.util.spec_from_loader(name, loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


clients_conftest = _load("clients_conftest", os.path.join(ROOT, "tests", "clients", "conftest.py"))
connect_start = _load("connect_start", os.path.join(HERE, "start"))


def target_name():
    return "kafka" if os.environ.get("KAFKA_BOOTSTRAP") else "sluice"


class Sluice:
    """A running sluice process (log to DIR/sluice.log); restartable on the same port and data."""

    external = False
    restartable = True

    def __init__(self, d):
        self.dir = d
        os.makedirs(d, exist_ok=True)
        self.data_dir = os.path.join(d, "data")
        self.log = os.path.join(d, "sluice.log")
        self.proc = None
        self.bootstrap = None
        self._start("127.0.0.1:0")

    def _start(self, listen):
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        err = open(self.log, "a")
        self.proc = subprocess.Popen(
            [clients_conftest.sluice_bin(), "start", "--listen", listen, "--data-dir", self.data_dir,
             "--cores", "2", "--metrics-listen", "127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=err, text=True, env=env)
        found = {}

        def read():
            for line in self.proc.stdout:
                m = re.match(r"sluice: listening on (\S+)", line)
                if m and "addr" not in found:
                    found["addr"] = m.group(1)
        threading.Thread(target=read, daemon=True).start()
        deadline = time.time() + 30
        while "addr" not in found:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sluice exited with {self.proc.returncode} before listening; see {self.log}")
            if time.time() > deadline:
                self.proc.kill()
                raise RuntimeError("sluice did not report listening within 30 s")
            time.sleep(0.02)
        self.bootstrap = found["addr"]

    def kill(self):
        self.proc.kill()
        self.proc.wait(timeout=30)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)

    def restart(self):
        if self.proc.poll() is None:
            self.kill()
        self._start(self.bootstrap)


@pytest.fixture
def workdir(request):
    """A temp dir, removed afterwards; when the test failed, its *.log files are first copied to
    tests/connect/.out/logs-<target>/<test>/."""
    d = tempfile.mkdtemp(prefix="sluice-connect-")
    yield d
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        keep = os.path.join(HERE, ".out", f"logs-{target_name()}", request.node.name)
        shutil.rmtree(keep, ignore_errors=True)
        for base, _, names in os.walk(d):
            for n in names:
                if n.endswith(".log"):
                    rel = os.path.relpath(os.path.join(base, n), d)
                    os.makedirs(os.path.dirname(os.path.join(keep, rel)), exist_ok=True)
                    shutil.copy(os.path.join(base, n), os.path.join(keep, rel))
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def broker(workdir, request):
    if os.environ.get("KAFKA_BOOTSTRAP"):
        b = clients_conftest.ExternalBroker(os.environ["KAFKA_BOOTSTRAP"], os.environ.get("KAFKA_REF_DIR"))
        if b.restartable:
            b._pid()            # records the command line while the process runs
        yield b
        return
    b = Sluice(os.path.join(workdir, "sluice"))
    yield b
    if b.proc.poll() is None:
        b.kill()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(f"\n--- sluice log (tail) ---\n{tail(b.log, 60)}")


# Figures the tests measure plus each test's outcome, written to
# tests/connect/.out/results-<target>.json when the session ends (also after a failure or an
# interrupted run, with whatever was measured until then); tests/connect/side-by-side reads them.
RESULTS = {"target": None, "tests": {}, "failures": {}}


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
    # One outcome per test: "passed", "skipped", "failed" (its call) or "error in setup|teardown";
    # a later phase never hides an earlier failure.
    if rep.failed:
        state = "failed" if rep.when == "call" else f"error in {rep.when}"
    elif rep.skipped:
        state = "skipped"
    else:
        state = "passed" if rep.when == "call" else None
    prev = RESULTS["tests"].get(item.name, "")
    if state and not prev.startswith(("failed", "error")):
        RESULTS["tests"][item.name] = state
    if rep.failed and item.name not in RESULTS["failures"]:
        text = str(rep.longrepr or "")
        first = next((l[1:].strip() for l in text.splitlines() if l.startswith("E ")), text[:200])
        RESULTS["failures"][item.name] = first[:300]


def pytest_sessionstart(session):
    RESULTS["target"] = target_name()
    os.makedirs(os.path.join(HERE, ".out"), exist_ok=True)
    for name in (f"warnings-{target_name()}.txt", f"results-{target_name()}.json"):
        try:
            os.remove(os.path.join(HERE, ".out", name))
        except OSError:
            pass


def pytest_sessionfinish(session, exitstatus):
    RESULTS["pytest_exit"] = int(exitstatus)
    with open(os.path.join(HERE, ".out", f"results-{target_name()}.json"), "w") as f:
        json.dump(RESULTS, f, indent=2, sort_keys=True)


def pytest_terminal_summary(terminalreporter):
    figs = {k: v for k, v in RESULTS.items() if k not in ("tests", "failures")}
    terminalreporter.write_line(f"connect figures ({target_name()}): {json.dumps(figs, sort_keys=True)}")


def tail(path, n):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return "(no file)"


class Worker:
    """One Connect worker JVM (tests/connect/start's launch), in DIR, stopped by PID."""

    def __init__(self, mode, bootstrap, d, settings, group="connect-cluster", topic_suffix="",
                 connector_files=()):
        self.mode, self.dir = mode, d
        self.port = connect_start.free_port()
        self.props = connect_start.worker_props(mode, bootstrap, d, self.port, group, topic_suffix,
                                                [f"{k}={v}" for k, v in settings.items()])
        self.connector_files = list(connector_files)
        self.url = f"http://127.0.0.1:{self.port}"
        self.id = f"127.0.0.1:{self.port}"
        self.proc = None

    def launch(self):
        self.proc = connect_start.launch(self.mode, self.dir, self.props, self.connector_files)
        return self

    def wait_ready(self, timeout=120):
        connect_start.wait_ready(self.proc, self.url, timeout, self.dir)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        if self.alive():
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(timeout=30)

    def stop(self, timeout=40):
        """SIGTERM and wait (SIGKILL after `timeout` s); returns the exit code."""
        if not self.alive():
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=30)

    def log_tail(self, n=40):
        return tail(os.path.join(self.dir, "worker.log"), n)

    def rest(self, method, path, body=None, timeout=10):
        """(status, decoded JSON or None)."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json",
                                              "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw = r.read()
                return r.status, (json.loads(raw) if raw else None)
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, raw.decode(errors="replace")
        except (urllib.error.URLError, OSError) as e:
            return None, str(e)


def collect_warnings(ws, name):
    """Appends each worker's WARN/ERROR lines (timestamps cut) to .out/warnings-<target>.txt."""
    seen = collections.Counter()
    for w in ws:
        try:
            with open(os.path.join(w.dir, "worker.log"), errors="replace") as f:
                for l in f:
                    m = re.match(r"\[[^]]*\] (WARN|ERROR) (.*)", l)
                    if m:
                        msg = re.sub(r"\d+", "N", m.group(2))[:220]
                        seen[f"{m.group(1)} {msg}"] += 1
        except OSError:
            pass
    os.makedirs(os.path.join(HERE, ".out"), exist_ok=True)
    with open(os.path.join(HERE, ".out", f"warnings-{target_name()}.txt"), "a") as f:
        f.write(f"== {name}\n")
        for k, v in seen.most_common():
            f.write(f"{v:6} {k}\n")
    # Totals over all tests, so a difference between brokers shows in the figures.
    for level, key in (("WARN", "worker_log_warn_lines"), ("ERROR", "worker_log_error_lines")):
        RESULTS[key] = RESULTS.get(key, 0) + sum(v for k, v in seen.items() if k.startswith(level + " "))


@pytest.fixture
def workers(request):
    """A list the test appends Workers to; each still running at the end is stopped."""
    ws = []
    yield ws
    for w in ws:
        if w.alive():
            w.proc.send_signal(signal.SIGTERM)
    for w in ws:
        if w.proc is not None:
            try:
                w.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait(timeout=30)
    collect_warnings(ws, request.node.name)


@pytest.fixture(scope="session")
def results():
    """The dict of figures (RESULTS) a test adds to; see pytest_sessionfinish."""
    return RESULTS
