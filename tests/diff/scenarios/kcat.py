"""Scenarios driven by kcat 1.7 (Debian's, librdkafka 2.0.2: an older protocol negotiation)."""
import json
import subprocess
import time

from common import TS0, scenario
from . import ck

P = "kcat"
LABEL = "kcat"


def reg(name):
    return scenario(P, name, LABEL)


def kcat(t, bs, *args, stdin=None, timeout=30):
    extra = {"input": stdin} if stdin is not None else {"stdin": subprocess.DEVNULL}
    r = subprocess.run(["kcat", "-b", bs, "-X", "socket.timeout.ms=10000", *args],
                       capture_output=True, text=True, timeout=timeout, **extra)
    return r


def err_lines(stderr):
    """kcat's error lines, without the parts that carry names or addresses of this run."""
    out = []
    for line in stderr.splitlines():
        if "ERROR" in line or "error" in line:
            out.append(line.split(": ", 1)[-1] if "Broker:" not in line else "Broker:" + line.split("Broker:", 1)[1])
    return out


def consume_json(t, bs, topic, *extra):
    r = kcat(t, bs, "-C", "-t", topic, "-e", "-q", "-J", *extra)
    recs = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    recs.sort(key=lambda m: (m["partition"], m["offset"]))
    return r.returncode, recs, err_lines(r.stderr)


@reg("produce_consume_keyed_headers")
def produce_consume_keyed_headers(t, bs):
    """kcat -P -K: -H to an auto-created topic, then -C -J from the beginning."""
    topic = t.topic()
    lines = "".join(f"key-{i % 4}:value-{i}\n" for i in range(20))
    r = kcat(t, bs, "-P", "-t", topic, "-K:", "-H", "h1=a", "-H", "h2=b=c", "-H", "empty=", stdin=lines)
    t.rec("produce", rc=r.returncode, errors=err_lines(r.stderr))
    rc, recs, errs = consume_json(t, bs, topic, "-o", "beginning")
    t.rec("consume", rc=rc, count=len(recs), errors=errs)
    for m in recs:
        t.rec("record", **m)
    t.check(len(recs) == 20, "20 records back", got=len(recs))
    r = kcat(t, bs, "-C", "-t", topic, "-e", "-q", "-o", "-3", "-f", "%p|%o|%k|%s|%h|%K|%S\\n")
    t.rec("consume-last-3-formatted", rc=r.returncode, lines=r.stdout.splitlines())
    r = kcat(t, bs, "-C", "-t", topic, "-e", "-q", "-o", "5", "-c", "2", "-f", "%o:%s\\n")
    t.rec("consume-from-5-count-2", rc=r.returncode, lines=r.stdout.splitlines())


@reg("keyed_partitioning")
def keyed_partitioning(t, bs):
    """Three partitions: every record of one key lands in one partition."""
    topic = t.topic()
    ck.create(t, bs, topic, partitions=3)
    lines = "".join(f"user-{i % 9}:event-{i}\n" for i in range(90))
    r = kcat(t, bs, "-P", "-t", topic, "-K:", stdin=lines)
    t.rec("produce", rc=r.returncode, errors=err_lines(r.stderr))
    rc, recs, errs = consume_json(t, bs, topic, "-o", "beginning")
    t.rec("consume", rc=rc, count=len(recs), errors=errs)
    parts = {}
    for m in recs:
        parts.setdefault(m["key"], set()).add(m["partition"])
    t.rec("key-partitions", mapping={k: sorted(v) for k, v in sorted(parts.items())})
    t.check(all(len(v) == 1 for v in parts.values()), "one key, one partition")
    per_part = {}
    for m in recs:
        per_part.setdefault(m["partition"], []).append(m["offset"])
    t.rec("offsets", contiguous={p: o == list(range(len(o))) for p, o in sorted(per_part.items())})


@reg("metadata_L")
def metadata_list(t, bs):
    """kcat -L -J for one topic of 3 partitions, and for an unknown one."""
    topic = t.topic()
    ck.create(t, bs, topic, partitions=3)
    r = kcat(t, bs, "-L", "-J", "-t", topic)
    md = json.loads(r.stdout)
    t.rec("metadata", rc=r.returncode, controller_id=md.get("controllerid"),
          brokers=[{"node_id": b["id"]} for b in md["brokers"]],
          topics=[{"topic": x["topic"], "error": x.get("error"),
                   "partitions": [{"partition": p["partition"], "leader": p["leader"],
                                   "replicas": [q["id"] for q in p["replicas"]],
                                   "isr": [q["id"] for q in p["isrs"]], "error": p.get("error")}
                                  for p in x["partitions"]]} for x in md["topics"]])
    # librdkafka 2.0.2 asks Metadata for a named topic with auto-creation allowed: Kafka creates it,
    # and whether kcat's own answer already lists it depends on timing. So ask until it does
    # (bounded) and record where it ends.
    end = time.monotonic() + 10
    while True:
        r = kcat(t, bs, "-L", "-J", "-t", t.topic("absent"))
        md = json.loads(r.stdout) if r.stdout.strip() else {}
        topics = [{"topic": x["topic"], "error": x.get("error"), "partitions": len(x["partitions"])}
                  for x in md.get("topics", [])]
        if all(x["partitions"] > 0 for x in topics) or time.monotonic() > end:
            break
        time.sleep(0.3)
    t.rec("metadata-unknown-eventually", rc=r.returncode, topics=topics)


@reg("offsets_by_time_Q")
def offsets_by_time(t, bs):
    """kcat -Q (ListOffsets by timestamp) on records written with explicit timestamps."""
    topic = t.topic()
    ck.create(t, bs, topic, partitions=2)
    p = ck.producer(bs)
    msgs = [{"value": f"r{i}".encode(), "partition": i % 2, "timestamp": TS0 + 1000 * i} for i in range(10)]
    ck.rec_reports(t, ck.produce_all(p, t, topic, msgs))
    for ts in (0, TS0, TS0 + 1500, TS0 + 4000, TS0 + 9000, TS0 + 9001, -1, -2):
        r = kcat(t, bs, "-Q", "-J", "-t", f"{topic}:0:{ts}", "-t", f"{topic}:1:{ts}")
        out = json.loads(r.stdout) if r.stdout.strip() else {}
        t.rec("query", ts=ts, rc=r.returncode, answer=out.get(topic), errors=err_lines(r.stderr))


@reg("codecs")
def codecs(t, bs):
    """kcat -z for each codec; every record comes back."""
    for codec in ("gzip", "snappy", "lz4", "zstd"):
        topic = t.topic(codec)
        lines = "".join(f"{codec}-{i}-{'z' * (i % 30)}\n" for i in range(200))
        r = kcat(t, bs, "-P", "-t", topic, "-z", codec, "-X", "linger.ms=50", stdin=lines)
        rc, recs, errs = consume_json(t, bs, topic, "-o", "beginning")
        t.rec("codec", codec=codec, produce_rc=r.returncode, consume_rc=rc, count=len(recs),
              first=recs[0]["payload"] if recs else None, last=recs[-1]["payload"] if recs else None,
              offsets_ok=[m["offset"] for m in recs] == list(range(len(recs))), errors=errs)
        t.check(len(recs) == 200, f"{codec}: 200 records back", got=len(recs))


@reg("errors_unknown_topic_and_offsets")
def errors_unknown(t, bs):
    """Consuming an unknown topic (kcat's consumer does not auto-create), and offsets past the end."""
    topic = t.topic()
    r = kcat(t, bs, "-C", "-t", topic, "-o", "beginning", "-e", "-q", timeout=30)
    t.rec("consume-unknown", rc=r.returncode, errors=err_lines(r.stderr))
    known = t.topic("known")
    ck.create(t, bs, known, partitions=1)
    kcat(t, bs, "-P", "-t", known, stdin="a\nb\nc\n")
    r = kcat(t, bs, "-C", "-t", known, "-p", "0", "-o", "10", "-e", "-q", "-X", "auto.offset.reset=error")
    t.rec("consume-past-end", rc=r.returncode, out=r.stdout.splitlines(), errors=err_lines(r.stderr))
    r = kcat(t, bs, "-C", "-t", known, "-p", "5", "-o", "beginning", "-e", "-q")
    t.rec("consume-unknown-partition", rc=r.returncode, errors=err_lines(r.stderr))
