#!/usr/bin/env python3
"""Differential compatibility suite: runs every scenario against Apache Kafka (the reference) and
against sluice, each on a fresh data dir, and compares what the clients observed.

  python3 tests/diff/run.py [--targets kafka,sluice] [--allow-missing-sluice] [--only GLOB ...]
                            [--jobs N] [--timeout S] [--out DIR] [--strict] [--list]
  python3 tests/diff/run.py --targets kafka3,sluice3 ...   (3-node clusters, replication factor 1)

One Kafka and one sluice per run; scenarios share them on topics of their own. Transcripts
(JSON lines) go to --out (default tests/diff/.out/latest/{kafka,sluice}/SCENARIO.jsonl).
Normalization: normalize.py. Deliberate or not-yet-built differences: known-differences.toml
(and known-differences-cluster.toml for sluice3).
Exit status 0 when every scenario passes on Kafka and, on sluice, matches Kafka or is listed as a
known difference. sluice not starting fails the run, unless --allow-missing-sluice.
"""
import argparse
import concurrent.futures as cf
import fnmatch
import importlib.machinery
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
KREF = os.path.join(ROOT, "tests", "kafka-ref")
sys.path.insert(0, HERE)
import common  # noqa: E402
import normalize  # noqa: E402
import scenarios  # noqa: E402,F401
import batch_clients  # noqa: E402


def _load_start_module():
    loader = importlib.machinery.SourceFileLoader("kafka_ref_start", os.path.join(KREF, "start"))
    spec = importlib.util.spec_from_loader("kafka_ref_start", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


KSTART = _load_start_module()
sys.path.insert(0, KREF)
import kref  # noqa: E402  (tests/kafka-ref/kref.py: free ports, the Metadata probe)


def log(msg):
    print(msg, flush=True)


# ---------------------------------------------------------------- targets

class Unavailable(Exception):
    pass


class KafkaTarget:
    def __init__(self, workdir, name="kafka", capture=None):
        self.name = name
        self.dir = os.path.join(workdir, name)
        self.capture = capture   # --capture DIR: clients reach this Kafka through tests/capture/proxy.py
        self.proxy = None

    def start(self):
        r = subprocess.run([os.path.join(KREF, "install")], capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise Unavailable(f"tests/kafka-ref/install failed: {r.stderr.strip()}")
        extra = []
        if self.capture:
            # The recording proxy listens on its own port and forwards to Kafka's; Kafka advertises
            # the proxy's address, so every connection a client opens (bootstrap, then the broker
            # and coordinators it learns from Metadata/FindCoordinator/DescribeCluster) goes through it.
            kport = KSTART.free_port()
            self.proxy = subprocess.Popen(
                [sys.executable, os.path.join(ROOT, "tests", "capture", "proxy.py"), "--listen", "0",
                 "--upstream", f"127.0.0.1:{kport}", "--out", self.capture],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True, start_new_session=True)
            paddr = self.proxy.stdout.readline().strip()
            if not paddr:
                self.stop_proxy()
                raise Unavailable("tests/capture/proxy.py did not start")
            extra = ["--port", str(kport), "--set", f"advertised.listeners=PLAINTEXT://{paddr}"]
        r = subprocess.run([os.path.join(KREF, "start"), "--dir", self.dir, *extra], capture_output=True,
                           text=True, timeout=180)
        if r.returncode != 0:
            self.stop_proxy()
            raise Unavailable(f"tests/kafka-ref/start failed: {r.stderr.strip()[-2000:]}")
        self.bootstrap = r.stdout.strip().splitlines()[-1]
        if self.proxy:
            self.bootstrap = paddr
        return self.bootstrap

    def stop(self):
        subprocess.run([os.path.join(KREF, "stop"), self.dir], timeout=60)
        self.stop_proxy()

    def stop_proxy(self):
        if self.proxy is None:
            return
        self.proxy.send_signal(signal.SIGTERM)
        try:
            self.proxy.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proxy.kill()
            self.proxy.wait(timeout=10)
        self.proxy = None

    def logs(self):
        return os.path.join(self.dir, "server.log")


class SluiceTarget:
    name = "sluice"

    def __init__(self, workdir, binary):
        self.dir = os.path.join(workdir, "sluice")
        self.binary = binary
        self.proc = None

    def start(self):
        if not os.path.isfile(self.binary) or not os.access(self.binary, os.X_OK):
            raise Unavailable(f"no sluice binary at {self.binary} (build it with "
                              f"`cargo build --release`, or set SLUICE_BIN)")
        os.makedirs(self.dir, exist_ok=True)
        port = KSTART.free_port()
        self.bootstrap = f"127.0.0.1:{port}"
        self.logfile = os.path.join(self.dir, "sluice.log")
        out = open(self.logfile, "w")
        self.proc = subprocess.Popen([self.binary, "start", "--listen", self.bootstrap,
                                      "--data-dir", os.path.join(self.dir, "data")],
                                     stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        end = time.monotonic() + 30
        last = "no answer"
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                text = open(self.logfile).read().strip()
                rc, self.proc = self.proc.returncode, None
                raise Unavailable(f"`sluice start` exited with status {rc} before answering "
                                  f"Metadata: {text[-500:] or '(no output)'}")
            try:
                if KSTART.metadata_brokers(port) >= 1:
                    return self.bootstrap
                last = "Metadata listed no broker"
            except (OSError, ConnectionError, Exception) as e:  # noqa: BLE001 - any failure: retry
                last = f"{type(e).__name__}: {e}"
            time.sleep(0.2)
        self.stop()
        raise Unavailable(f"sluice did not answer Metadata within 30 s ({last}); its output: "
                          f"{open(self.logfile).read().strip()[-500:] or '(none)'}")

    def stop(self):
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=30)
            if rc != 0:
                log(f"warning: sluice exited with status {rc} after SIGTERM (issue 12 wants 0); "
                    f"its output is kept as broker.log beside the sluice transcripts")
        except subprocess.TimeoutExpired:
            log(f"warning: sluice still running 30 s after SIGTERM; killing pid {self.proc.pid}")
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def logs(self):
        return self.logfile


# The 3-node targets. Each side is three combined broker+controller nodes (ids 1..3) on loopback,
# with replication factor 1 everywhere: sluice's cluster has no replication yet (issue 21), so the
# reference is configured the same (start-cluster's own defaults are RF 3 / min ISR 2).
CLUSTER_NODES = 3
KAFKA_CLUSTER_SETS = ["default.replication.factor=1", "offsets.topic.replication.factor=1",
                      "min.insync.replicas=1", "transaction.state.log.replication.factor=1",
                      "transaction.state.log.min.isr=1"]


class KafkaClusterTarget:
    """kafka3: tests/kafka-ref/start-cluster (three JVMs), stopped with stop-cluster."""
    cluster = True

    def __init__(self, workdir, name="kafka3"):
        self.name = name
        self.dir = os.path.join(workdir, name)

    def start(self):
        r = subprocess.run([os.path.join(KREF, "install")], capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise Unavailable(f"tests/kafka-ref/install failed: {r.stderr.strip()}")
        sets = [x for kv in KAFKA_CLUSTER_SETS for x in ("--set", kv)]
        r = subprocess.run([os.path.join(KREF, "start-cluster"), "--dir", self.dir, *sets],
                           capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            self.stop()   # a node that started stays up when another one failed
            raise Unavailable(f"tests/kafka-ref/start-cluster failed: {r.stderr.strip()[-2000:]}")
        log(f"diff: {r.stderr.strip().splitlines()[-1]}")
        self.bootstrap = r.stdout.strip().splitlines()[0]   # 127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3
        return self.bootstrap

    def stop(self):
        if os.path.isdir(self.dir):
            subprocess.run([os.path.join(KREF, "stop-cluster"), self.dir], timeout=120)

    def logs(self):
        return [(os.path.join(self.dir, f"node{i}", "server.log"), f"broker-node{i}.log")
                for i in range(1, CLUSTER_NODES + 1)]


def sluice_cluster_commands(binary, datadir, ports, cports, mports):
    """The `sluice start` command line of each node of a loopback cluster (node ids 1..n)."""
    voters = ",".join(f"{i}@127.0.0.1:{c}" for i, c in enumerate(cports, 1))
    return [[binary, "start", "--node-id", str(i), "--controller-voters", voters,
             "--listen", f"127.0.0.1:{p}", "--metrics-listen", f"127.0.0.1:{m}",
             "--data-dir", os.path.join(datadir, f"node{i}")]
            for i, (p, m) in enumerate(zip(ports, mports), 1)]


class SluiceClusterTarget:
    """sluice3: three `sluice start --node-id N --controller-voters ...` processes, ready when
    every broker's Metadata lists all three; stopped with SIGTERM by PID (SIGKILL after 30 s)."""
    name = "sluice3"
    cluster = True
    READY_S = 60

    def __init__(self, workdir, binary):
        self.dir = os.path.join(workdir, "sluice3")
        self.binary = binary
        self.procs = []

    def start(self):
        if not os.path.isfile(self.binary) or not os.access(self.binary, os.X_OK):
            raise Unavailable(f"no sluice binary at {self.binary} (build it with "
                              f"`cargo build --release`, or set SLUICE_BIN)")
        os.makedirs(self.dir, exist_ok=True)
        n = CLUSTER_NODES
        ports = kref.free_ports(3 * n)
        self.ports, cports, mports = ports[:n], ports[n:2 * n], ports[2 * n:]
        self.bootstrap = ",".join(f"127.0.0.1:{p}" for p in self.ports)
        self.logfiles = [os.path.join(self.dir, f"sluice-node{i}.log") for i in range(1, n + 1)]
        for cmd, lf in zip(sluice_cluster_commands(self.binary, self.dir, self.ports, cports, mports), self.logfiles):
            with open(lf, "w") as out:
                self.procs.append(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                                   stderr=subprocess.STDOUT, start_new_session=True))
        end = time.monotonic() + self.READY_S
        last = "no answer"
        while time.monotonic() < end:
            for i, (p, lf) in enumerate(zip(self.procs, self.logfiles), 1):
                if p.poll() is not None:
                    rc = p.returncode
                    self.stop()
                    raise Unavailable(f"sluice node {i} exited with status {rc} before the cluster formed: "
                                      f"{open(lf).read().strip()[-500:] or '(no output)'}")
            try:
                counts = [KSTART.metadata_brokers(port) for port in self.ports]
                if all(c >= n for c in counts):
                    return self.bootstrap
                last = f"Metadata listed {counts} brokers"
            except (OSError, ConnectionError, Exception) as e:  # noqa: BLE001 - any failure: retry
                last = f"{type(e).__name__}: {e}"
            time.sleep(0.2)
        self.stop()
        raise Unavailable(f"the sluice cluster did not list {n} brokers in every broker's Metadata within "
                          f"{self.READY_S} s ({last}); node 1's output: "
                          f"{open(self.logfiles[0]).read().strip()[-500:] or '(none)'}")

    def stop(self):
        for p in self.procs:   # all at once, as stop-cluster does for the reference
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for i, p in enumerate(self.procs, 1):
            try:
                rc = p.wait(timeout=max(0.1, deadline - time.monotonic()))
                if rc != 0:
                    log(f"warning: sluice node {i} exited with status {rc} after SIGTERM; its output is "
                        f"kept as broker-node{i}.log beside the sluice3 transcripts")
            except subprocess.TimeoutExpired:
                log(f"warning: sluice node {i} still running 30 s after SIGTERM; killing pid {p.pid}")
                p.kill()
                p.wait(timeout=10)
        self.procs = []

    def logs(self):
        return [(lf, f"broker-node{i}.log") for i, lf in enumerate(self.logfiles, 1)]


# ---------------------------------------------------------------- running scenarios

def run_python_scenario(sid, bootstrap, outdir, timeout, until=None):
    path = os.path.join(outdir, f"{sid}.jsonl")
    errpath = os.path.join(outdir, f"{sid}.stderr")
    t0 = time.monotonic()
    if until is not None:
        if t0 >= until - 5:   # the target's time budget is spent: do not start it
            with open(path, "w") as f:
                f.write(json.dumps({"kind": "not-run", "why": "the target's --budget was spent"}) + "\n")
            return sid, "not-run", 0.0
        timeout = min(timeout, until - t0)
    with open(errpath, "w") as err:
        p = subprocess.Popen([sys.executable, os.path.join(HERE, "scenario_main.py"), sid, bootstrap, path],
                             stdin=subprocess.DEVNULL, stdout=err, stderr=subprocess.STDOUT,
                             start_new_session=True, cwd=outdir)
        try:
            rc = p.wait(timeout=timeout)
            status = "ok" if rc == 0 else "failed"
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)   # the scenario's own process group, started above
            p.wait(timeout=10)
            status = "timeout"
            with open(path, "a") as f:
                f.write(json.dumps({"kind": "timeout", "after_s": timeout}) + "\n")
    return sid, status, time.monotonic() - t0


def read_transcript(path):
    lines = []
    if os.path.exists(path):
        with open(path) as f:
            for raw in f:
                raw = raw.strip()
                if raw:
                    lines.append(json.loads(raw))
    return lines


def first_difference(a, b):
    """Index of the first differing normalized line, or None when equal."""
    for i in range(max(len(a), len(b))):
        x = a[i] if i < len(a) else None
        y = b[i] if i < len(b) else None
        if x != y:
            return i
    return None


def field_diff(x, y, prefix="", other="sluice", ref="kafka"):
    out = []
    if isinstance(x, dict) and isinstance(y, dict):
        for k in sorted(set(x) | set(y)):
            if x.get(k, "<absent>") != y.get(k, "<absent>"):
                out += field_diff(x.get(k, "<absent>"), y.get(k, "<absent>"), f"{prefix}{k}.", other, ref)
        return out
    if isinstance(x, list) and isinstance(y, list) and len(x) == len(y):
        for i, (p, q) in enumerate(zip(x, y)):
            if p != q:
                out += field_diff(p, q, f"{prefix}[{i}].", other, ref)
        return out
    return [f"{prefix.rstrip('.') or '(line)'}: {ref} {json.dumps(x)[:300]}  {other} {json.dumps(y)[:300]}"]


def describe_difference(sid, ka, sl, i, kpath, spath, sstatus, other="sluice", ref="kafka"):
    k = ka[i] if i < len(ka) else None
    s = sl[i] if i < len(sl) else None
    msg = [f"  {sid}: first difference at transcript line {i + 1} ({other} status: {sstatus})"]
    if k is None:
        msg.append(f"    {ref}  transcript ended; {other} has more: {json.dumps(s)[:500]}")
    elif s is None:
        msg.append(f"    {other} transcript ends here; {ref} next: {json.dumps(k)[:500]}")
    else:
        msg.append(f"    {ref + ':':7} {json.dumps(k)[:500]}")
        msg.append(f"    {other + ':':7} {json.dumps(s)[:500]}")
        for d in field_diff(k, s, other=other, ref=ref)[:6]:
            msg.append(f"      {d}")
    if i > 0:
        msg.append(f"    (last line both agree on: {json.dumps(ka[i - 1])[:300]})")
    msg.append(f"    transcripts: {kpath}  {spath}")
    return "\n".join(msg)


KNOWN_FILE = "known-differences.toml"
KNOWN_CLUSTER_FILE = "known-differences-cluster.toml"


def _read_known(name):
    path = os.path.join(HERE, name)
    with open(path, "rb") as f:
        data = tomllib.load(f)
    return path, data.get("known", [])


def load_known():
    """The single-node list (sluice against kafka): [{scenario, reason, file}]."""
    path, known = _read_known(KNOWN_FILE)
    for k in known:
        if not k.get("scenario") or not k.get("reason"):
            raise SystemExit(f"{path}: every [[known]] needs scenario and reason: {k}")
        k["file"] = KNOWN_FILE
    return known


def load_known_cluster(single=None):
    """The cluster list (sluice3 against kafka3): known-differences-cluster.toml's entries, each
    with its own reason, or `single_node = true` to reuse the entry of known-differences.toml
    with the same scenario (and its reason) where the reason holds on a cluster too."""
    path, known = _read_known(KNOWN_CLUSTER_FILE)
    single = load_known() if single is None else single
    by_scenario = {k["scenario"]: k for k in single}
    out = []
    for k in known:
        if not k.get("scenario"):
            raise SystemExit(f"{path}: every [[known]] needs a scenario: {k}")
        if k.get("single_node"):
            if k.get("reason"):
                raise SystemExit(f"{path}: {k['scenario']}: single_node = true takes the reason of "
                                 f"{KNOWN_FILE}; give no reason of its own")
            if k["scenario"] not in by_scenario:
                raise SystemExit(f"{path}: {k['scenario']}: single_node = true but {KNOWN_FILE} "
                                 f"has no entry with that scenario")
            k = dict(k, reason=by_scenario[k["scenario"]]["reason"])
        elif not k.get("reason"):
            raise SystemExit(f"{path}: every [[known]] needs a reason (or single_node = true): {k}")
        out.append(dict(k, file=KNOWN_CLUSTER_FILE))
    return out


def known_entry(known, sid):
    for k in known:
        if fnmatch.fnmatchcase(sid, k["scenario"]):
            return k
    return None


def known_reason(known, sid):
    k = known_entry(known, sid)
    return k["reason"] if k else None


# Target names: the reference (Apache Kafka) and the side compared with it.
REFERENCES = ("kafka", "kafka3")
COMPARED = {"sluice": "kafka", "kafka2": "kafka", "sluice3": "kafka3"}   # compared side -> its reference
SLUICES = ("sluice", "sluice3")


def pick_targets(targets):
    """Checks a --targets list and returns (reference or None, compared side or None)."""
    for t in targets:
        if t not in REFERENCES and t not in COMPARED:
            raise SystemExit(f"unknown target {t} (kafka, sluice, or kafka2: a second Kafka compared "
                             f"in sluice's place, to check that scenarios are deterministic; kafka3 and "
                             f"sluice3: 3-node clusters)")
    if len(targets) != len(set(targets)):
        raise SystemExit(f"--targets: a target is named twice: {','.join(targets)}")
    refs = [t for t in targets if t in REFERENCES]
    others = [t for t in targets if t in COMPARED]
    if len(others) > 1:
        raise SystemExit(f"--targets: {' and '.join(others)} all take the compared side; pick one")
    if len(refs) > 1:
        raise SystemExit("--targets: kafka and kafka3 are both references; compare single-node and "
                         "cluster targets in separate runs")
    ref = refs[0] if refs else None
    other = others[0] if others else None
    if ref and other and COMPARED[other] != ref:
        raise SystemExit(f"--targets: {other} is compared with {COMPARED[other]}, not {ref}")
    return ref, other   # ref None: the compared side alone, it must run every scenario to its end


def client_of(sid):
    prefix = sid.split(".", 1)[0]
    return common.CLIENT_LABELS.get(prefix, prefix)


def verdicts(ids, targets, results, unavailable, known, out, other, strict=False, ref=None):
    """Compares the transcripts under `out` and decides each scenario. `ref` is the reference
    target ("kafka" or "kafka3"; by default the one `other` is compared with). Returns
    (failures: list of report texts, counts: client -> numbers, passed, failed, skipped)."""
    if ref is None:
        ref = COMPARED.get(other, "kafka")
    failures = []
    counts = {}   # client -> dict
    kres = results.get(ref, {})
    sres = results.get(other, {})
    passed = failed = skipped = 0
    for sid in ids:
        c = counts.setdefault(client_of(sid), {"run": 0, "kafka_ok": 0, "matched": 0, "known": 0,
                                               "differ": 0, "fixed": 0})
        c["run"] += 1
        if ref in targets:
            if ref in unavailable:
                failed += 1
            elif kres.get(sid) == "ok":
                c["kafka_ok"] += 1
                passed += 1
            else:
                failed += 1
                if kres.get(sid) == "not-run":
                    failures.append(f"  {sid}: not run on {ref}: the --budget was spent")
                else:
                    errfile = sid if sid in common.REGISTRY else sid.split(".", 1)[0]   # batch clients: one file
                    failures.append(f"  {sid}: fails on Apache Kafka itself ({ref}: {kres.get(sid)}); see "
                                    f"{os.path.join(out, ref, errfile + '.stderr')} — fix the scenario")
        if other is None:
            continue
        if other in unavailable:
            skipped += 1
            continue
        entry = known_entry(known, sid) if other in SLUICES else None
        reason = entry and entry["reason"]
        spath = os.path.join(out, other, f"{sid}.jsonl")
        cluster = other in ("sluice3",)
        sl = [normalize.normalize_line(x, cluster=cluster) for x in read_transcript(spath)]
        if ref in results:
            kpath = os.path.join(out, ref, f"{sid}.jsonl")
            ka = [normalize.normalize_line(x, cluster=cluster) for x in read_transcript(kpath)]
            i = first_difference(ka, sl)
            same = i is None and sres.get(sid) == "ok"
        else:   # sluice alone: it must at least run every scenario to its end
            i, same, kpath, ka = None, sres.get(sid) == "ok", f"({ref} not run)", []
        if same:
            if reason:
                c["fixed"] += 1
                msg = (f"  {sid}: listed as a known difference but now matches {ref}: remove it from "
                       f"{entry.get('file', KNOWN_FILE)}")
                log("note:" + msg[1:])
                if strict:
                    failures.append(msg)
                    failed += 1
                    continue
            c["matched"] += 1
            passed += 1
        elif reason:
            c["known"] += 1
            skipped += 1
        else:
            c["differ"] += 1
            failed += 1
            if i is None:
                i = min(len(ka), len(sl))
            failures.append(describe_difference(sid, ka, sl, i, kpath, spath, sres.get(sid), other, ref))

    return failures, counts, passed, failed, skipped


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", default="kafka,sluice")
    ap.add_argument("--allow-missing-sluice", action="store_true")
    ap.add_argument("--only", action="append", default=[], metavar="GLOB",
                    help="run only scenarios whose id matches (repeatable), e.g. 'ck.*'")
    ap.add_argument("--jobs", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=90.0, help="per scenario, seconds")
    ap.add_argument("--budget", type=float, default=360.0,
                    help="seconds of scenarios per target; what has not started by then is reported not-run "
                         "(keeps a run against a hanging broker bounded)")
    ap.add_argument("--out", default=os.path.join(HERE, ".out", "latest"))
    ap.add_argument("--strict", action="store_true",
                    help="also fail when a known difference now matches (so the list gets shrunk)")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--capture", metavar="DIR",
                    help="run the kafka target behind tests/capture/proxy.py (Kafka advertises the proxy) "
                         "and record every connection's bytes into DIR (see tests/capture/README.md)")
    a = ap.parse_args()

    t_run = time.monotonic()
    batch = {c.prefix: c for c in batch_clients.CLIENTS}
    all_ids = sorted(common.REGISTRY) + [s for c in batch_clients.CLIENTS for s in c.scenario_ids()]
    ids = [s for s in all_ids if not a.only or any(fnmatch.fnmatchcase(s, g) for g in a.only)]
    if a.list:
        for s in ids:
            print(s)
        return 0
    if not ids:
        log("diff: no scenario matches --only")
        return 2
    targets = [t.strip() for t in a.targets.split(",") if t.strip()]
    ref, other = pick_targets(targets)
    known = load_known_cluster() if other == "sluice3" else load_known()
    known_files = sorted({k["file"] for k in known}) or [KNOWN_FILE]

    # Only the directories of this run's targets are replaced, so a cluster run keeps the
    # single-node transcripts of the last `kafka,sluice` run beside its own (and the other way).
    for tname in targets:
        shutil.rmtree(os.path.join(a.out, tname), ignore_errors=True)
    os.makedirs(a.out, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="sluice-diff-")
    sluice_bin = os.path.abspath(os.environ.get("SLUICE_BIN", os.path.join(ROOT, "target", "release", "sluice")))
    objs = {"kafka": KafkaTarget(workdir, capture=a.capture and os.path.abspath(a.capture)), "kafka2": KafkaTarget(workdir, "kafka2"),
            "sluice": SluiceTarget(workdir, sluice_bin),
            "kafka3": KafkaClusterTarget(workdir), "sluice3": SluiceClusterTarget(workdir, sluice_bin)}

    py_ids = [s for s in ids if s in common.REGISTRY]
    batch_ids = {}
    for s in ids:
        if s not in common.REGISTRY:
            batch_ids.setdefault(s.split(".", 1)[0], []).append(s)
    for prefix in batch_ids:
        try:
            batch[prefix].build()
        except batch_clients.BuildError as e:
            log(f"diff: the {batch[prefix].label} scenarios did not build: {e}")
            return 1

    results = {}      # target -> sid -> status
    unavailable = {}
    started = []
    try:
        for tname in targets:
            tgt = objs[tname]
            t0 = time.monotonic()
            try:
                bootstrap = tgt.start()
            except Unavailable as e:
                unavailable[tname] = str(e)
                log(f"diff: target {tname} unavailable: {e}")
                if tname in REFERENCES:
                    log("diff: without the reference there is nothing to compare against; stopping")
                    return 1
                continue
            started.append(tgt)
            log(f"diff: {tname} up at {bootstrap} in {time.monotonic() - t0:.1f}s")
            outdir = os.path.join(a.out, tname)
            os.makedirs(outdir, exist_ok=True)
            res = results.setdefault(tname, {})
            with cf.ThreadPoolExecutor(max_workers=max(1, a.jobs)) as pool:
                until = time.monotonic() + a.budget
                futs = []
                for prefix, bids in batch_ids.items():   # the long batches first
                    futs.append(pool.submit(batch[prefix].run, bids, bootstrap, outdir, a.timeout, until))
                futs += [pool.submit(run_python_scenario, sid, bootstrap, outdir, a.timeout, until) for sid in py_ids]
                for f in cf.as_completed(futs):
                    r = f.result()
                    for sid, status, secs in (r if isinstance(r, list) else [r]):
                        res[sid] = status
                        log(f"  {tname:7} {status:7} {secs:5.1f}s {sid}")
            tgt.stop()
            started.remove(tgt)
            logs = tgt.logs()   # keep the brokers' logs with the transcripts (the data dirs are deleted below)
            for src, name in ([(logs, "broker.log")] if isinstance(logs, str) else logs):
                try:
                    shutil.copy(src, os.path.join(outdir, name))
                except OSError:
                    pass
    finally:
        for tgt in started:
            tgt.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    failures, counts, passed, failed, skipped = verdicts(ids, targets, results, unavailable, known,
                                                         a.out, other, a.strict, ref=ref)
    if failures:
        log("\nFAILURES")
        for f in failures:
            log(f)
    log("\nsummary (per client):")
    for client, c in sorted(counts.items()):
        parts = [f"{client}: {c['run']} scenarios"]
        if ref:
            parts.append(f"{ref} passed {c['kafka_ok']}/{c['run']}" if ref not in unavailable else f"{ref} unavailable")
        if other:
            if other in unavailable:
                parts.append(f"{other} unavailable")
            else:
                parts.append(f"{other} matched {c['matched']}, known differences {c['known']}, "
                             f"differing {c['differ']}" + (f", fixed-but-listed {c['fixed']}" if c['fixed'] else ""))
        log("  " + "; ".join(parts))
    for tname, why in unavailable.items():
        log(f"  {tname} unavailable: {why.splitlines()[0][:300]}")
    log(f"  {' + '.join(known_files)} entries: {len(known)}; transcripts in {a.out}; "
        f"wall time {time.monotonic() - t_run:.0f}s")
    rc = 1 if failed else 0
    if any(t in unavailable for t in ("kafka", "kafka2", "kafka3")):
        rc = 1
    for sname in SLUICES:
        if sname not in unavailable:
            continue
        if a.allow_missing_sluice:
            log(f"diff: {sname} did not start; accepted because of --allow-missing-sluice")
        else:
            log(f"diff: {sname} did not start (use --allow-missing-sluice to accept that)")
            rc = 1
    log(f"diff: {passed} passed, {failed} failed, {skipped} skipped")
    return rc


if __name__ == "__main__":
    sys.exit(main())
