"""Kafka Connect 4.4.0 (tests/connect/install) runs unchanged against the broker (issue 11).

- test_standalone: a standalone worker with a line-file source (file -> topic) and a line-file
  sink (topic -> file); the output equals the input line for line; after a worker restart it
  resumes from its stored offsets and no line is repeated.
- test_distributed: WORKERS workers in one group with Connect's default internal topics
  (connect-configs: 1 partition, compact; connect-offsets: 25; connect-status: 5), the connectors
  created through the REST API; SIGKILL of the worker running the source task (its tasks move to
  the others, timed); SIGKILL + restart of the broker (the workers carry on); pause, resume and
  delete; every line arrives and duplicates are counted and reported.

The connectors are dev.sluice.connect.LineFileSource/LineFileSink (tests/connect/plugin), our own
stand-ins for Kafka's FileStreamSource/FileStreamSink: org.apache.kafka:connect-file:4.4.0 does
not resolve from the Maven repository this project installs from (checked again 2026-11-25:
`mvn -U dependency:get -Dartifact=org.apache.kafka:connect-file:4.4.0` fails with "Missing POM
for org.apache.kafka:connect-file:jar:4.4.0" / "Couldn't download artifact"), while
connect-runtime, connect-json and connect-api 4.4.0 do. The worker settings are
tests/connect/start's (only bootstrap.servers differs between brokers) plus TEST_SETTINGS below,
the same against any broker. On a fresh broker the internal topics keep Connect's default names;
only a broker that already has connect-configs gets per-run names (figure internal_topics).

tests/run runs tests/connect/side-by-side: a fresh reference Kafka (started once, SIGKILLed and
restarted by test_distributed, stopped by PID), then sluice, and a table of both targets' figures
(tests/connect/figures; machine readable in .out/side-by-side.json); a failure on either fails it.
Against the reference Kafka by hand (same tests, same settings):
    tests/kafka-ref/start --dir /tmp/kref-connect
    KAFKA_REF_DIR=/tmp/kref-connect KAFKA_BOOTSTRAP=$(cat /tmp/kref-connect/bootstrap) \\
        python3 -m pytest tests/connect -v -s
    tests/kafka-ref/stop /tmp/kref-connect --rm
Per target: figures, test outcomes and pytest's exit status in .out/results-{sluice,kafka}.json
(conftest.py writes it when the session ends, also after a failure); WARN/ERROR lines of the
workers: .out/warnings-{sluice,kafka}.txt; logs of a failed test: .out/logs-{sluice,kafka}/TEST/.

History: test_distributed first failed against sluice: a Fetch long poll at the log end spun on
the broker until max_wait_ms (repro_fetch_spin.py), and the workers' ~10 idle consumers starved
Produce. Fixed in broker/src/handlers/fetch.rs.
"""
import collections
import os
import threading
import time
import uuid

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import Worker

HERE = os.path.dirname(os.path.abspath(__file__))
WORKERS = int(os.environ.get("CONNECT_WORKERS", "3"))
THROUGHPUT_LINES = int(os.environ.get("CONNECT_THROUGHPUT_LINES", "100000"))
WRITE_RATE = int(os.environ.get("CONNECT_WRITE_RATE", "2000"))     # lines/s while workers or the broker die
SESSION_TIMEOUT_MS = 10000          # Connect's default session.timeout.ms, stated for the check

# Test-friendly worker settings, identical for every broker:
TEST_SETTINGS = {
    # Commit source and sink offsets every second (default 60 s), so a kill repeats little.
    "offset.flush.interval.ms": "1000",
    # Reassign a lost worker's tasks at the next rebalance instead of waiting up to 5 minutes for
    # it to come back (Connect's default scheduled.rebalance.max.delay.ms is 300000).
    "scheduled.rebalance.max.delay.ms": "0",
}
PAD = "." * 88                      # ~100-byte lines
SOURCE = "dev.sluice.connect.LineFileSource"
SINK = "dev.sluice.connect.LineFileSink"
CONNECTORS = "LineFileSource/LineFileSink"     # as the figures name them


def uniq(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def line(batch, i):
    return f"{batch}-{i:07d} {PAD}"


def append_lines(path, batch, start, n):
    with open(path, "a") as f:
        f.write("".join(line(batch, i) + "\n" for i in range(start, start + n)))


def read_lines(path):
    try:
        with open(path) as f:
            data = f.read()
    except FileNotFoundError:
        return []
    return data.split("\n")[:-1]        # only complete lines


def wait_until(pred, timeout, what, workers=()):
    deadline = time.time() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.time() > deadline:
            logs = "".join(f"\n--- {w.id} worker.log (tail) ---\n{w.log_tail(25)}" for w in workers)
            pytest.fail(f"timed out after {timeout} s waiting for {what}{logs}")
        time.sleep(0.1)


def wait_lines(path, want, timeout, what, workers=()):
    """Waits until every line in `want` (a set) is in the file; returns the file's lines."""
    state = {}

    def done():
        got = read_lines(path)
        state["missing"] = len(want - set(got))
        return got if state["missing"] == 0 else None
    deadline = time.time() + timeout
    while True:
        got = done()
        if got is not None:
            return got
        if time.time() > deadline:
            logs = "".join(f"\n--- {w.id} worker.log (tail) ---\n{w.log_tail(25)}" for w in workers)
            pytest.fail(f"timed out after {timeout} s waiting for {what}: {state['missing']} of "
                        f"{len(want)} lines missing{logs}")
        time.sleep(0.1)


def start_all(ws, timeout=150):
    """Launches the workers at once, then waits for each REST API."""
    for w in ws:
        w.launch()
    for w in ws:
        w.wait_ready(timeout)


# ---------------------------------------------------------------------------------------------
def test_standalone(broker, workdir, workers, results):
    results["connectors"] = CONNECTORS
    topic = uniq("lines")
    src, out = os.path.join(workdir, "in.txt"), os.path.join(workdir, "out.txt")
    files = []
    for name, props in (("source", {"connector.class": SOURCE,
                                    "tasks.max": "1", "file": src, "topic": topic}),
                        ("sink", {"connector.class": SINK,
                                  "tasks.max": "1", "file": out, "topics": topic})):
        p = os.path.join(workdir, f"{name}.properties")
        with open(p, "w") as f:
            f.write(f"name={name}-{topic}\n" + "".join(f"{k}={v}\n" for k, v in props.items()))
        files.append(p)
    n1, n2 = 5000, 3000
    append_lines(src, "a", 0, n1)
    wdir = os.path.join(workdir, "standalone")

    def new_worker():
        w = Worker("standalone", broker.bootstrap, wdir, TEST_SETTINGS, connector_files=files)
        workers.append(w)
        return w

    w = new_worker()
    t0 = time.time()
    start_all([w])
    want = [line("a", i) for i in range(n1)]
    wait_lines(out, set(want), 90, "the first round trip", [w])
    results["standalone_first_round_trip_s"] = round(time.time() - t0, 1)
    time.sleep(1.5)                         # no late extra lines
    assert read_lines(out) == want, "output differs from input"

    assert w.stop() in (0, 130, 143), "standalone worker did not stop cleanly"
    append_lines(src, "b", 0, n2)           # written while the worker is down
    w = new_worker()
    start_all([w])
    want += [line("b", i) for i in range(n2)]
    wait_lines(out, set(want), 90, "the lines written while the worker was down", [w])
    time.sleep(2.5)                         # a repeat from stale offsets would show by now
    got = read_lines(out)
    dups = len(got) - len(set(got))
    results["standalone_duplicates_after_restart"] = dups
    assert got == want, f"after the restart the output differs from the input ({dups} duplicates)"
    w.stop()


# ---------------------------------------------------------------------------------------------
def status_of(w, name):
    code, body = w.rest("GET", f"/connectors/{name}/status")
    return body if code == 200 else None


def all_running(w, names, alive_ids):
    """True when each connector and each of its tasks is RUNNING on a live worker."""
    for name in names:
        st = status_of(w, name)
        if not st or st["connector"]["state"] != "RUNNING" or st["connector"]["worker_id"] not in alive_ids:
            return False
        if not st["tasks"]:
            return False
        for t in st["tasks"]:
            if t["state"] != "RUNNING" or t["worker_id"] not in alive_ids:
                return False
    return True


def rest_ok(w, method, path, body=None, ok=(200, 201, 202, 204), timeout=60):
    """Retries while the group rebalances (409) or a request times out; returns the body."""
    deadline = time.time() + timeout
    while True:
        code, resp = w.rest(method, path, body, timeout=20)
        if code in ok:
            return resp
        if time.time() > deadline:
            pytest.fail(f"{method} {path}: {code} {resp}\n--- worker.log ---\n{w.log_tail(30)}")
        time.sleep(0.5)


def test_distributed(broker, workdir, workers, results):
    results["connectors"] = CONNECTORS
    run = uuid.uuid4().hex[:8]
    group, topic = f"connect-{run}", f"lines-{run}"
    src, out = os.path.join(workdir, "in.txt"), os.path.join(workdir, "out.txt")
    open(src, "w").close()
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    # Connect's default internal topic names on a fresh broker (sluice here, the reference Kafka
    # of side-by-side); names with a per-run suffix only on a broker that already has them (an
    # external broker used before), so the figures say which one ran.
    existing = set(a.list_topics(timeout=30).topics)
    suffix = f"-{run}" if "connect-configs" in existing else ""
    results["internal_topics"] = "connect-{configs,offsets,status}" + (suffix and "-RUN (the defaults existed)")
    # The data topic: 3 partitions so the sink's 3 tasks each have one.
    a.create_topics([NewTopic(topic, 3, 1)])[topic].result(30)

    ws = [Worker("distributed", broker.bootstrap, os.path.join(workdir, f"w{i}"), TEST_SETTINGS,
                 group=group, topic_suffix=suffix) for i in range(WORKERS)]
    workers.extend(ws)
    t0 = time.time()
    start_all(ws)
    results["workers"] = WORKERS
    results["distributed_workers_ready_s"] = round(time.time() - t0, 1)
    w0 = ws[0]
    source, sink = f"src-{run}", f"sink-{run}"
    rest_ok(w0, "PUT", f"/connectors/{source}/config",
            {"connector.class": SOURCE, "tasks.max": "1",
             "file": src, "topic": topic})
    rest_ok(w0, "PUT", f"/connectors/{sink}/config",
            {"connector.class": SINK, "tasks.max": "3",
             "file": out, "topics": topic})
    ids = {w.id for w in ws}
    wait_until(lambda: all_running(w0, [source, sink], ids), 90, "both connectors RUNNING", ws)
    # The internal topics as Connect created them (partitions; cleanup policy is checked by
    # Connect itself at start-up, which refuses a non-compacted config topic).
    md = a.list_topics(timeout=10).topics
    results["internal_topic_partitions"] = {
        k: len(md[k + suffix].partitions) for k in ("connect-configs", "connect-offsets", "connect-status")
        if k + suffix in md}
    assert results["internal_topic_partitions"].get("connect-configs") == 1

    want = set()

    # 1. Throughput: 100k lines of ~100 bytes written at once, source -> broker -> sink.
    n = THROUGHPUT_LINES
    t1 = time.time()
    append_lines(src, "a", 0, n)
    want |= {line("a", i) for i in range(n)}
    try:
        wait_lines(out, want, 120, "batch a (throughput)", ws)
    except pytest.fail.Exception:
        got = len(set(read_lines(out)) & want)
        results["lines_per_s_source_to_sink"] = round(got / (time.time() - t1))
        results["throughput_incomplete"] = f"{got} of {n} lines in {round(time.time() - t1)} s"
        raise
    secs = time.time() - t1
    results["lines_per_s_source_to_sink"] = round(n / secs)
    results["throughput_lines"] = n
    results["throughput_s"] = round(secs, 2)

    # 2. SIGKILL the worker running the source task; its tasks move to the others.
    st = status_of(w0, source)
    victim = next(w for w in ws if w.id == st["tasks"][0]["worker_id"])
    writer_stop = threading.Event()

    def writer(batch, rate, total):
        # Keeps lines coming while the group rebalances (at `rate` lines/s, at most `total`).
        i = 0
        while not writer_stop.is_set() and i < total:
            append_lines(src, batch, i, rate // 10)
            i += rate // 10
            time.sleep(0.1)
        counts[batch] = i
    counts = {}
    wt = threading.Thread(target=writer, args=("b", WRITE_RATE, WRITE_RATE * 60))
    wt.start()
    time.sleep(1.0)
    t_kill = time.time()
    victim.kill()
    alive = [w for w in ws if w is not victim]
    alive_ids = {w.id for w in alive}
    wait_until(lambda: all_running(alive[0], [source, sink], alive_ids), SESSION_TIMEOUT_MS / 1000 + 50,
               "the killed worker's tasks RUNNING on the others", alive)
    results["rebalance_after_kill9_s"] = round(time.time() - t_kill, 2)
    time.sleep(1.0)
    writer_stop.set()
    wt.join()
    want |= {line("b", i) for i in range(counts["b"])}
    wait_lines(out, want, 90, "batch b (written across the worker kill)", alive)
    results["lines_across_worker_kill"] = counts["b"]

    # 3. SIGKILL + restart the broker while lines flow; the workers carry on.
    if broker.restartable:
        writer_stop.clear()
        wt = threading.Thread(target=writer, args=("c", WRITE_RATE, WRITE_RATE * 60))
        wt.start()
        time.sleep(1.0)
        t_b = time.time()
        broker.kill()
        time.sleep(1.0)
        broker.restart()
        t_up = time.time()
        results["broker_restart_s"] = round(t_up - t_b, 2)
        time.sleep(2.0)
        writer_stop.set()
        wt.join()
        want |= {line("c", i) for i in range(counts["c"])}
        wait_lines(out, want, 120, "batch c (written across the broker restart)", alive)
        results["broker_up_to_all_lines_s"] = round(time.time() - t_up, 2)
        results["lines_across_broker_restart"] = counts["c"]
        wait_until(lambda: all_running(alive[0], [source, sink], alive_ids), 60,
                   "connectors RUNNING after the broker restart", alive)
    else:
        results["broker_restart_s"] = "skipped (set KAFKA_REF_DIR)"

    # 4. Pause the source: lines written meanwhile stay in the file; resume: they arrive.
    rest_ok(alive[0], "PUT", f"/connectors/{source}/pause")

    def paused():
        st = status_of(alive[0], source)
        return st and st["connector"]["state"] == "PAUSED" and st["tasks"] and \
            all(t["state"] == "PAUSED" for t in st["tasks"])
    wait_until(paused, 60, "the source PAUSED", alive)
    before = len(read_lines(out))
    append_lines(src, "d", 0, 2000)
    time.sleep(3.0)
    assert not any(l.startswith("d-") for l in read_lines(out)), "a paused source delivered lines"
    rest_ok(alive[0], "PUT", f"/connectors/{source}/resume")
    want |= {line("d", i) for i in range(2000)}
    wait_lines(out, want, 60, "batch d after resume", alive)
    assert len(read_lines(out)) >= before + 2000

    # 5. Delete the sink: lines still go to the topic but no longer to the file.
    rest_ok(alive[0], "DELETE", f"/connectors/{sink}")
    wait_until(lambda: sink not in (alive[0].rest("GET", "/connectors")[1] or []), 60,
               "the sink gone from GET /connectors", alive)
    time.sleep(2.0)                          # the sink tasks stop
    append_lines(src, "e", 0, 1000)
    time.sleep(3.0)
    assert not any(l.startswith("e-") for l in read_lines(out)), "a deleted sink wrote lines"
    rest_ok(alive[0], "DELETE", f"/connectors/{source}")

    got = read_lines(out)
    c = collections.Counter(got)
    results["lines_expected"] = len(want)
    results["lines_written"] = len(got)
    results["duplicates"] = sum(v - 1 for v in c.values() if v > 1)
    by_batch = collections.Counter({b: 0 for b in ("abcd" if broker.restartable else "abd")})
    for l, v in c.items():
        if v > 1:
            by_batch[l.split("-", 1)[0]] += v - 1
    results["duplicates_by_batch"] = dict(by_batch)   # a: throughput, b: worker kill, c: broker kill, d: pause
    assert not (want - set(got))
    assert set(got) <= want, "the sink wrote lines nobody wrote"
    for w in alive:
        w.stop()
