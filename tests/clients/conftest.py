"""Fixtures for the client tests: the real `sluice` binary on a free loopback port with a fresh
data dir, stopped by PID (never by name).

The binary is $SLUICE_BIN, else target/release/sluice, else target/debug/sluice.
"""
import os
import re
import signal
import subprocess
import tempfile
import threading
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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

    def __init__(self, data_dir, listen="127.0.0.1:0", args=()):
        self.data_dir = data_dir
        self.args = list(args)
        self.proc = None
        self.bootstrap = None
        self._start(listen)

    def _start(self, listen):
        self.proc = subprocess.Popen(
            [sluice_bin(), "start", "--listen", listen, "--data-dir", self.data_dir, *self.args],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
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
                raise RuntimeError(f"sluice exited with {self.proc.returncode} before listening")
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


@pytest.fixture
def broker():
    with tempfile.TemporaryDirectory(prefix="sluice-clients-") as d:
        b = Broker(os.path.join(d, "data"), args=["--cores", "2"])
        yield b
        if b.proc.poll() is None:
            b.kill()
