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
import kref  # noqa: E402 - tests/kafka-ref, on sys.path through clients_conftest


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
    """A temp dir, removed afterwards; when the test failed (or xfailed, or STREAMS_KEEP_LOGS is
    set), its *.log files are first copied to tests/streams/.out/logs-<target>/<test>/."""
    d = tempfile.mkdtemp(prefix="sluice-streams-")
    yield d
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and (rep.failed or hasattr(rep, "wasxfail") or os.environ.get("STREAMS_KEEP_LOGS")):
        keep = os.path.join(OUT, f"logs-{target_name()}", request.node.name)
        shutil.rmtree(keep, ignore_errors=True)
        for base, _, names in os.walk(d):
            for n in names:
                if n.endswith(".log"):
                    rel = os.path.relpath(os.path.join(base, n), d)
                    os.makedirs(os.path.dirname(os.path.join(keep, rel)), exist_ok=True)
                    shutil.copy(os.path.join(base, n), os.path.join(keep, rel))
    shutil.rmtree(d, ignore_errors=True)


NODES = int(os.environ.get("STREAMS_NODES", "1"))


class SluiceNode:
    """One node of a loopback sluice cluster (`sluice start --node-id N --controller-voters ...`),
    its output in log_path; restartable on the same ports and data dir; stopped by PID."""

    restartable = True

    def __init__(self, node_id, cmd, port, log_path, nodes):
        self.id, self.cmd, self.port, self.log_path, self.nodes = node_id, cmd, port, log_path, nodes
        self.proc = None
        self._start()

    def _start(self):
        with open(self.log_path, "a") as out:
            self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout=60):
        """Until this node's Metadata lists every node."""
        deadline, last = time.time() + timeout, "no answer"
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sluice node {self.id} exited with {self.proc.returncode}:\n"
                                   f"{tail(self.log_path, 20)}")
            try:
                n = kref.metadata_brokers(self.port)
                if n >= self.nodes:
                    return
                last = f"Metadata listed {n} brokers"
            except Exception as e:      # noqa: BLE001 - not up yet
                last = str(e)
            time.sleep(0.2)
        raise RuntimeError(f"sluice node {self.id}: not ready within {timeout} s ({last})")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self):
        if self.proc.poll() is None:
            self.kill()
        self._start()
        self.wait_ready()


class Target:
    """The broker(s) under test: bootstrap, nodes by id (each with kill() and restart()), and
    which node the broker-kill step kills: the only one, or in a cluster the coordinator of the
    application's consumer group (so the group and its offsets move too)."""

    def __init__(self, name, bootstrap, nodes, restartable, logs):
        self.name, self.bootstrap, self.nodes, self.restartable, self.logs = name, bootstrap, nodes, restartable, logs

    def victim(self, group):
        if len(self.nodes) == 1:
            return next(iter(self.nodes.items()))
        from confluent_kafka.admin import AdminClient
        a = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 2})
        d = a.describe_consumer_groups([group], request_timeout=15)[group].result(20)
        return d.coordinator.id, self.nodes[d.coordinator.id]


def kafka_target():
    bootstrap, ref = os.environ["KAFKA_BOOTSTRAP"], os.environ.get("KAFKA_REF_DIR")
    if ref and os.path.isdir(os.path.join(ref, "node1")):
        # A cluster of tests/kafka-ref/start-cluster: each DIR/nodeN is restartable on its own.
        nodes, logs = {}, []
        for i in range(1, 10):
            nd = os.path.abspath(os.path.join(ref, f"node{i}"))
            if not os.path.isdir(nd):
                break
            props = dict(l.strip().split("=", 1) for l in open(os.path.join(nd, "server.properties"))
                         if "=" in l and not l.startswith("#"))
            port = props["advertised.listeners"].rsplit(":", 1)[1]
            b = clients_conftest.ExternalBroker(f"127.0.0.1:{port}", nd)
            b._pid()
            nodes[int(props["node.id"])] = b
            logs.append(os.path.join(nd, "server.log"))
        return Target("kafka", bootstrap, nodes, True, logs)
    b = clients_conftest.ExternalBroker(bootstrap, ref)
    if b.restartable:
        b._pid()            # records the command line while the process runs
    return Target("kafka", bootstrap, {1: b}, b.restartable, [os.path.join(ref, "server.log")] if ref else [])


def sluice_cluster(d, n):
    ports = kref.free_ports(3 * n)
    bports, cports, mports = ports[:n], ports[n:2 * n], ports[2 * n:]
    voters = ",".join(f"{i}@127.0.0.1:{c}" for i, c in enumerate(cports, 1))
    nodes = {}
    for i in range(1, n + 1):
        cmd = [clients_conftest.sluice_bin(), "start", "--node-id", str(i), "--controller-voters", voters,
               "--listen", f"127.0.0.1:{bports[i - 1]}", "--metrics-listen", f"127.0.0.1:{mports[i - 1]}",
               "--data-dir", os.path.join(d, f"node{i}"), "--cores", "1"]
        nodes[i] = SluiceNode(i, cmd, bports[i - 1], os.path.join(d, f"node{i}.log"), n)
    try:
        for node in nodes.values():
            node.wait_ready()
    except RuntimeError:
        for node in nodes.values():
            node.kill()
        raise
    return Target("sluice", ",".join(f"127.0.0.1:{p}" for p in bports), nodes, True,
                  [node.log_path for node in nodes.values()])


@pytest.fixture
def broker(workdir, request):
    if os.environ.get("KAFKA_BOOTSTRAP"):
        yield kafka_target()
        return
    d = os.path.join(workdir, "sluice")
    os.makedirs(d)
    if NODES > 1:
        t = sluice_cluster(d, NODES)
    else:
        b = clients_conftest.Broker(os.path.join(d, "data"), args=["--cores", "2", "--metrics-listen", "127.0.0.1:0"])
        t = Target("sluice", b.bootstrap, {1: b}, True, [b.log_path])
    yield t
    for node in t.nodes.values():
        if node.proc.poll() is None:
            node.kill()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and (rep.failed or hasattr(rep, "wasxfail")):
        for p in t.logs:
            print(f"\n--- {os.path.basename(p)} (tail) ---\n{tail(p, 40)}")


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

    def thread_dump(self):
        """jstack of the running JVM into DIR/app-N.jstack.log (kept with the logs of a failed
        test): where a stalled application waits."""
        if not self.alive():
            return None
        path = os.path.join(self.dir, f"app-{self.launches}.jstack.log")
        try:
            with open(path, "w") as f:
                subprocess.run(["jstack", str(self.proc.pid)], stdout=f, stderr=subprocess.STDOUT, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return path

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


def keep_passed(path):
    """With STREAMS_KEEP_PASSED=1 (tests/streams/side-by-side's second Kafka run, of the tests the
    first did not pass): the outcomes and figures of the tests that passed in the run that wrote
    `path`, so that one results file holds both runs."""
    if os.environ.get("STREAMS_KEEP_PASSED") != "1":
        return
    try:
        with open(path) as f:
            prev = json.load(f)
    except (OSError, ValueError):
        return
    for name, state in prev.get("tests", {}).items():
        m = re.fullmatch(r"test_wordcount\[(.+)\]", name)
        if state in ("passed", "xfailed", "xpassed") and m:
            RESULTS["tests"][name] = state
            RESULTS["figures"][m.group(1)] = prev.get("figures", {}).get(m.group(1), {})


def pytest_sessionstart(session):
    RESULTS["target"] = target_name()
    os.makedirs(OUT, exist_ok=True)
    keep_passed(os.path.join(OUT, f"results-{target_name()}.json"))
    shutil.rmtree(os.path.join(OUT, f"logs-{target_name()}"), ignore_errors=True)
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
