"""Fixtures for the client tests: the real `sluice` binary on a free loopback port with a fresh
data dir, stopped by PID (never by name).

The binary is $SLUICE_BIN, else target/release/sluice, else target/debug/sluice.

Opt-in, to check a test against another broker (the reference Apache Kafka of tests/kafka-ref):
KAFKA_BOOTSTRAP=host:port makes the `broker` fixture yield an ExternalBroker for that address
instead of starting sluice. Such a broker cannot be restarted (`broker.restartable` is False;
tests that need a restart skip) unless KAFKA_REF_DIR names the directory tests/kafka-ref/start
ran with: then kill() SIGKILLs the PID in DIR/kafka.pid and restart() runs the same command line
again (same port, same data). Topic and group names must then be unique per run, as the broker
keeps its data between runs.
"""
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Free loopback ports below the ephemeral range, so no outgoing connection takes one between
# the test picking it and the broker binding it (the picker is shared with tests/kafka-ref).
sys.path.insert(0, os.path.join(ROOT, "tests", "kafka-ref"))
from kref import free_port  # noqa: E402,F401


def sluice_bin():
    if os.environ.get("SLUICE_BIN"):
        return os.environ["SLUICE_BIN"]
    for profile in ("release", "debug"):
        p = os.path.join(ROOT, "target", profile, "sluice")
        if os.path.exists(p):
            return p
    raise RuntimeError("no sluice binary: run `cargo build --release --bins` first")


class Broker:
    """A running sluice process."""

    external = False
    restartable = True

    def __init__(self, data_dir, listen="127.0.0.1:0", args=()):
        self.data_dir = data_dir
        self.args = list(args)
        self.proc = None
        self.bootstrap = None
        self._start(listen)

    def log_tail(self, lines=20):
        """The last lines sluice wrote to stderr (kept beside the data dir)."""
        try:
            with open(self.log_path, "rb") as f:
                return "\n".join(f.read().decode(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _start(self, listen):
        self.log_path = self.data_dir.rstrip("/") + ".log"
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sluice_bin(), "start", "--listen", listen, "--data-dir", self.data_dir, *self.args],
            stdout=subprocess.PIPE, stderr=log, text=True)
        log.close()
        found = {}

        def read():
            for line in self.proc.stdout:
                m = re.match(r"sluice: listening on (\S+)", line)
                if m and "addr" not in found:
                    found["addr"] = m.group(1)
        t = threading.Thread(target=read, daemon=True)
        t.start()
        deadline = time.time() + 30
        while "addr" not in found:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sluice exited with {self.proc.returncode} before listening:\n"
                                   + self.log_tail())
            if time.time() > deadline:
                self.proc.kill()
                raise RuntimeError("sluice did not report listening within 30 s")
            time.sleep(0.02)
        self.bootstrap = found["addr"]

    def stop(self):
        """SIGTERM; returns the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)

    def kill(self):
        """SIGKILL, as a crash."""
        self.proc.kill()
        self.proc.wait(timeout=30)

    def restart(self):
        """Starts again on the same port and data dir (after stop or kill)."""
        if self.proc.poll() is None:
            self.kill()
        self._start(self.bootstrap)


def _kafka_ref_start_module():
    """tests/kafka-ref/start as a module (for its Metadata probe)."""
    import importlib.machinery
    import importlib.util
    path = os.path.join(ROOT, "tests", "kafka-ref", "start")
    loader = importlib.machinery.SourceFileLoader("kafka_ref_start", path)
    spec = importlib.util.spec_from_loader("kafka_ref_start", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


class ExternalBroker:
    """A broker this suite did not start (KAFKA_BOOTSTRAP); restartable only with KAFKA_REF_DIR."""

    external = True

    def __init__(self, bootstrap, ref_dir=None):
        self.bootstrap = bootstrap
        self.ref_dir = os.path.abspath(ref_dir) if ref_dir else None
        self._cmdline = None

    @property
    def restartable(self):
        return self.ref_dir is not None

    def _pid(self):
        """The PID in DIR/kafka.pid if that process is the Kafka started with DIR, else None."""
        try:
            pid = int(open(os.path.join(self.ref_dir, "kafka.pid")).read().strip())
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        except (OSError, ValueError):
            return None
        if f"-Dkafka.ref.dir={self.ref_dir}".encode() not in cmd:
            return None
        self._cmdline = [c.decode() for c in cmd if c]
        return pid

    def _signal(self, sig):
        if not self.restartable:
            pytest.skip("the external broker cannot be restarted (set KAFKA_REF_DIR)")
        pid = self._pid()
        if pid is None:
            return
        os.kill(pid, sig)
        deadline = time.time() + 30
        while os.path.exists(f"/proc/{pid}") and time.time() < deadline:
            try:
                if open(f"/proc/{pid}/stat").read().split(") ")[1].startswith("Z"):
                    break
            except OSError:
                break
            time.sleep(0.05)

    def stop(self):
        """SIGTERM; waits for the process to go."""
        self._signal(signal.SIGTERM)

    def kill(self):
        """SIGKILL, as a crash."""
        self._signal(signal.SIGKILL)

    def restart(self):
        """Runs the recorded Kafka command line again (after stop or kill) and waits for Metadata."""
        if self._pid() is not None:
            self.kill()
        if not self._cmdline:
            pytest.skip("no recorded Kafka command line to restart with")
        out = open(os.path.join(self.ref_dir, "stdout.log"), "a")
        proc = subprocess.Popen(self._cmdline, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        with open(os.path.join(self.ref_dir, "kafka.pid"), "w") as f:
            f.write(f"{proc.pid}\n")
        probe = _kafka_ref_start_module().metadata_brokers
        port = int(self.bootstrap.rsplit(":", 1)[1])
        deadline = time.time() + 90
        while time.time() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"Kafka exited with {proc.returncode} on restart")
            try:
                if probe(port) >= 1:
                    return
            except Exception:
                pass
            time.sleep(0.2)
        raise RuntimeError("Kafka did not answer Metadata within 90 s of a restart")


@pytest.fixture
def broker():
    if os.environ.get("KAFKA_BOOTSTRAP"):
        b = ExternalBroker(os.environ["KAFKA_BOOTSTRAP"], os.environ.get("KAFKA_REF_DIR"))
        if b.restartable:
            b._pid()            # records the command line while the process runs
        yield b
        return
    with tempfile.TemporaryDirectory(prefix="sluice-clients-") as d:
        b = Broker(os.path.join(d, "data"), args=["--cores", "2"])
        yield b
        if b.proc.poll() is None:
            b.kill()
