"""Fixtures for the Kafka Streams test (issue 23): a broker and the word-count application, every
process started here and stopped by PID (never by name).

The broker is the real `sluice` binary ($SLUICE_BIN, else target/release/sluice, else
target/debug/sluice) on a free loopback port with a fresh data dir, restartable on the same port
and data dir; its log (RUST_LOG, default info) is kept beside the data dir and its tail is printed
when a test fails. As in tests/connect: KAFKA_BOOTSTRAP=host:port runs the same tests against that
broker (the reference Kafka of tests/kafka-ref), KAFKA_REF_DIR=DIR (the dir tests/kafka-ref/start
ran with) lets the broker-kill step SIGKILL and restart it.
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
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
JAR = os.path.join(HERE, ".cache", "wordcount.jar")
OUT = os.path.join(HERE, ".out")


def _load(name, path):
    loader = importlib.machinery.SourceFileLoader(name, path)
    spec = importlib.util.spec_from_loader(name, loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


clients_conftest = _load("clients_conftest", os.path.join(ROOT, "tests", "clients", "conftest.py"))


def target_name():
    return "kafka" if os.environ.get("KAFKA_BOOTSTRAP") else "sluice"


def tail(path, n):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return "(no file)"


@pytest.fixture
def workdir(request):
    """A temp dir, removed afterwards; when the test failed (or xfailed), its *.log files are
    first copied to tests/streams/.out/logs-<target>/<test>/."""
    d = tempfile.mkdtemp(prefix="sluice-streams-")
    yield d
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and (rep.failed or hasattr(rep, "wasxfail")):
        keep = os.path.join(OUT, f"logs-{target_name()}", request.node.name)
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
        b.log_path = os.path.join(b.ref_dir, "server.log") if b.ref_dir else None
        if b.restartable:
            b._pid()            # records the command line while the process runs
        yield b
        return
    os.makedirs(os.path.join(workdir, "sluice"))
    b = clients_conftest.Broker(os.path.join(workdir, "sluice", "data"),
                                args=["--cores", "2", "--metrics-listen", "127.0.0.1:0"])
    yield b
    if b.proc.poll() is None:
        b.kill()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and (rep.failed or hasattr(rep, "wasxfail")):
        print(f"\n--- sluice log (tail) ---\n{tail(b.log_path, 60)}")


class App:
    """One word-count JVM (tests/streams/src), its stdout in DIR/app-N.stdout.log and its log4j2 log in
    DIR/app-N.log (N counts the launches); stopped by PID."""

    def __init__(self, d, bootstrap, guarantee, app_id, input_topic, output_topic, commit_ms=100, extra=()):
        self.dir = d
        os.makedirs(d, exist_ok=True)
        self.args = ["--bootstrap", bootstrap, "--guarantee", guarantee, "--app-id", app_id,
                     "--input", input_topic, "--output", output_topic,
                     "--state-dir", os.path.join(d, "state"), "--commit-ms", str(commit_ms)]
        for kv in extra:
            self.args += ["--set", kv]
        self.proc = None
        self.launches = 0
        self.out_path = self.log_path = None

    def launch(self):
        if not os.path.exists(JAR):
            raise RuntimeError(f"{JAR} is missing: run tests/streams/install first")
        self.launches += 1
        self.out_path = os.path.join(self.dir, f"app-{self.launches}.stdout.log")
        self.log_path = os.path.join(self.dir, f"app-{self.launches}.log")
        out = open(self.out_path, "w")
        self.proc = subprocess.Popen(
            ["java", "-Xmx384m", "-Xms64m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
             "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={HERE}/log4j2.properties",
             f"-Dstreams.log.file={self.log_path}", "-jar", JAR, *self.args],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        self.launched_at = time.time()
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def events(self):
        """(epoch seconds, text) of each line the current JVM printed ("STATE A->B", "FATAL ...")."""
        ev = []
        try:
            with open(self.out_path, errors="replace") as f:
                for l in f:
                    m = re.match(r"(\d{13}) (.*)", l)
                    if m:
                        ev.append((int(m.group(1)) / 1000.0, m.group(2)))
        except OSError:
            pass
        return ev

    def fatal(self):
        """The FATAL line the application printed, with the root cause of its stack trace."""
        line = next((t for _, t in self.events() if t.startswith("FATAL")), None)
        if line is None:
            return None
        causes = [l.strip() for l in open(self.out_path, errors="replace") if l.startswith("Caused by: ")]
        return f"root cause {causes[-1][len('Caused by: '):]}; {line}" if causes else line

    def kill(self):
        if self.alive():
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(timeout=30)

    def stop(self, timeout=40):
        """SIGTERM (KafkaStreams.close in the app's shutdown hook) and wait; returns the exit code."""
        if not self.alive():
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=30)

    def diagnostics(self, n=30):
        """The tails of the current JVM's stdout and log, and its WARN/ERROR lines, for a failure."""
        warns = []
        try:
            with open(self.log_path, errors="replace") as f:
                warns = [l for l in f if re.match(r"\[[^]]*\] (WARN|ERROR) ", l)]
        except OSError:
            pass
        return (f"\n--- app stdout (tail) ---\n{tail(self.out_path, n)}"
                f"\n--- app WARN/ERROR lines (last {n} of {len(warns)}) ---\n{''.join(warns[-n:])}")


def log_warnings(paths):
    """WARN/ERROR lines of the given app logs, numbers cut, counted: Counter('LEVEL msg')."""
    seen = collections.Counter()
    for p in paths:
        try:
            with open(p, errors="replace") as f:
                for l in f:
                    m = re.match(r"\[[^]]*\] (WARN|ERROR) \[[^]]*\] (.*)", l)
                    if m:
                        msg = re.sub(r"\d+", "N", m.group(2))[:200]
                        seen[f"{m.group(1)} {msg}"] += 1
        except OSError:
            pass
    return seen


@pytest.fixture
def apps(request):
    """A list the test appends Apps to; each still running at the end is killed, and their WARN
    and ERROR lines go to .out/warnings-<target>.txt."""
    xs = []
    yield xs
    for a in xs:
        a.kill()
    seen = log_warnings([os.path.join(a.dir, f) for a in xs for f in sorted(os.listdir(a.dir))
                         if f.endswith(".log") and not f.endswith(".stdout.log")])
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, f"warnings-{target_name()}.txt"), "a") as f:
        f.write(f"== {request.node.name}\n")
        for k, v in seen.most_common():
            f.write(f"{v:6} {k}\n")


# Figures the tests measure plus each test's outcome, written to
# tests/streams/.out/results-<target>.json when the session ends (also after a failure or an
# interrupted run, with whatever was measured until then); tests/streams/side-by-side reads them.
RESULTS = {"target": None, "tests": {}, "failures": {}, "figures": {}}


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
    if hasattr(rep, "wasxfail"):
        state = "xfailed" if rep.skipped else "xpassed"
    elif rep.failed:
        state = "failed" if rep.when == "call" else f"error in {rep.when}"
    elif rep.skipped:
        state = "skipped"
    else:
        state = "passed" if rep.when == "call" else None
    prev = RESULTS["tests"].get(item.name, "")
    if state and not prev.startswith(("failed", "error", "xfailed")):
        RESULTS["tests"][item.name] = state
    if (rep.failed or (hasattr(rep, "wasxfail") and rep.skipped)) and item.name not in RESULTS["failures"]:
        text = str(rep.longrepr or "")
        first = next((l[1:].strip() for l in text.splitlines() if l.startswith("E ")), text[:200])
        RESULTS["failures"][item.name] = first[:400]


def pytest_sessionstart(session):
    RESULTS["target"] = target_name()
    os.makedirs(OUT, exist_ok=True)
    for name in (f"warnings-{target_name()}.txt", f"results-{target_name()}.json"):
        try:
            os.remove(os.path.join(OUT, name))
        except OSError:
            pass


def pytest_sessionfinish(session, exitstatus):
    RESULTS["pytest_exit"] = int(exitstatus)
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, f"results-{target_name()}.json"), "w") as f:
        json.dump(RESULTS, f, indent=2, sort_keys=True)


def pytest_terminal_summary(terminalreporter):
    for g, figs in RESULTS["figures"].items():
        terminalreporter.write_line(f"streams figures ({target_name()}, {g}): {json.dumps(figs, sort_keys=True)}")


@pytest.fixture(scope="session")
def results():
    """The dict of figures per test (RESULTS['figures']) a test adds to; see pytest_sessionfinish."""
    return RESULTS["figures"]
