"""README's first commands, exactly as written (issue 18: the start command's relative
`./sluice-data` left every partition unopened, and README's kcat producer timed out).

The commands are read from README.md's "Start a broker" section, not copied here, so the test
follows the README. They run in the checkout's root, as a newcomer runs them on a fresh clone:
the broker's data goes to the relative `./sluice-data` it names, which must not exist before
(on a checkout where README's broker already ran, the test skips rather than touch that data).
README's broker listens on the fixed 127.0.0.1:9092 (and metrics on 9644); CI has no services.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import ROOT


def readme_section(title):
    text = open(os.path.join(ROOT, "README.md")).read()
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", text, re.S | re.M)
    assert m, f"README has a '## {title}' section"
    return re.findall(r"```sh\n(.*?)```", m.group(1), re.S)


def port_free(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def descendants(pid):
    """PIDs below `pid` in the process tree (bash, then cargo run, then the broker), from each
    process's parent in /proc/PID/stat."""
    parent = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = open(f"/proc/{name}/stat").read()
                parent[int(name)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    out, frontier = [], [pid]
    while frontier:
        kids = [p for p, pp in parent.items() if pp in frontier]
        out += kids
        frontier = kids
    return out


def broker_pids(pid):
    """The `sluice` process that README's command started, by its executable: `pid` itself when
    bash, rustup's proxy and `cargo run` each exec the next (they do on Linux), else below it."""
    found = []
    for p in [pid] + descendants(pid):
        try:
            if os.path.basename(os.readlink(f"/proc/{p}/exe")) == "sluice":
                found.append(p)
        except OSError:
            pass
    return found


def test_readme_start_command_then_kcat_lines():
    blocks = readme_section("Start a broker")
    start = blocks[0].strip()
    assert start.startswith("cargo run") and start.endswith("start"), start
    kcat_lines = [line for line in blocks[1].strip().splitlines() if line.startswith(("printf", "kcat"))]
    assert len(kcat_lines) == 2, blocks[1]
    data = os.path.join(ROOT, "sluice-data")
    if os.path.exists(data):
        pytest.skip("./sluice-data exists from an earlier README broker; runs on a fresh checkout")
    for port in (9092, 9644):
        assert port_free(port), f"README's broker needs 127.0.0.1:{port} free"

    log = open(os.path.join(ROOT, "target", "readme-broker.log"), "wb")
    proc = subprocess.Popen(["bash", "-c", start], cwd=ROOT, stdout=subprocess.PIPE, stderr=log,
                            text=True, start_new_session=True)
    listening = threading.Event()

    def read():
        for line in proc.stdout:
            if line.startswith("sluice: listening on 127.0.0.1:9092"):
                listening.set()
    threading.Thread(target=read, daemon=True).start()
    try:
        deadline = time.time() + 600   # cargo run may still build
        while not listening.is_set():
            assert proc.poll() is None, f"README's start command exited {proc.returncode}"
            assert time.time() < deadline, "README's broker did not say it listens"
            time.sleep(0.1)
        produced = subprocess.run(["bash", "-c", kcat_lines[0]], cwd=ROOT, capture_output=True,
                                  text=True, timeout=60)
        assert produced.returncode == 0, produced.stderr
        consumed = subprocess.run(["bash", "-c", kcat_lines[1]], cwd=ROOT, capture_output=True,
                                  text=True, timeout=60)
        assert consumed.returncode == 0, consumed.stderr
        assert consumed.stdout.split() == ["hello", "world"], consumed.stdout
        assert os.path.isdir(os.path.join(data, "demo-0")), "the log is in ./sluice-data"
    finally:
        for pid in broker_pids(proc.pid):
            os.kill(pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)   # the session cargo run started, by its PID
                proc.wait()
            log.close()
            shutil.rmtree(data, ignore_errors=True)
    assert proc.returncode == 0, f"README's broker exited {proc.returncode} on SIGTERM"
