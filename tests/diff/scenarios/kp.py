"""Scenarios driven by kafka-python (pure Python client, its own protocol code)."""
import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import AlterConfigOp, ConfigResource, ConfigResourceType, OffsetSpec
import kafka.errors as Errors

from common import TS0, bdecode, deadline, scenario

P = "kp"
LABEL = "kafka-python"


def reg(name):
    return scenario(P, name, LABEL)


def kerr(e):
    return {"error": type(e).__name__, "code": getattr(e, "errno", None), "msg": str(e)[:300]}


def admin(bs):
    return KafkaAdminClient(bootstrap_servers=bs, request_timeout_ms=15000, client_id="diff-kp")


def producer(bs, **extra):
    conf = {"bootstrap_servers": bs, "linger_ms": 5, "request_timeout_ms": 30000, "max_block_ms": 15000}
    conf.update(extra)
    return KafkaProducer(**conf)


def consumer(bs, **extra):
    conf = {"bootstrap_servers": bs, "group_id": None, "enable_auto_commit": False,
            "auto_offset_reset": "earliest", "request_timeout_ms": 15000}
    conf.update(extra)
    return KafkaConsumer(**conf)


def create(a, topic, partitions=1, configs=None):
    r = a.create_topics({topic: {"num_partitions": partitions, "replication_factor": 1, "configs": configs or {}}})
    wait_ready(a, topic, partitions)
    return r


def wait_ready(a, topic, partitions, seconds=15):
    alive = deadline(seconds)
    while alive():
        try:
            d = a.describe_topics([topic])[0]
            if d["error_code"] == 0 and len(d["partitions"]) == partitions and all(
                    p["leader_id"] >= 0 for p in d["partitions"]):
                return
        except Errors.KafkaError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{topic} not ready")


def send_all(t, p, topic, msgs, every=1):
    futs = [p.send(topic, **m) for m in msgs]
    p.flush(timeout=30)
    for i, f in enumerate(futs):
        try:
            md = f.get(timeout=20)
            if i % every == 0:
                t.rec("delivery", i=i, partition=md.partition, offset=md.offset, timestamp=md.timestamp)
        except Errors.KafkaError as e:
            t.rec("delivery", i=i, **kerr(e))


def consume_all(bs, topic, partitions, expect, seconds=20, **extra):
    c = consumer(bs, **extra)
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    c.assign(tps)
    for tp in tps:
        c.seek(tp, 0)
    out, errors = [], []
    alive = deadline(seconds)
    try:
        while alive() and len(out) < expect:
            try:
                batch = c.poll(timeout_ms=500)
            except Errors.KafkaError as e:
                errors.append(kerr(e))
                break
            for recs in batch.values():
                for m in recs:
                    out.append({"partition": m.partition, "offset": m.offset, "key": bdecode(m.key),
                                "value": bdecode(m.value), "timestamp": m.timestamp,
                                "ts_type": m.timestamp_type,
                                "headers": [[k, bdecode(v)] for k, v in (m.headers or [])]})
    finally:
        c.close()
    out.sort(key=lambda r: (r["partition"], r["offset"]))
    return out, errors


def offsets(t, a, topic, partitions, label="offsets"):
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    lo = a.list_partition_offsets({tp: OffsetSpec.EARLIEST for tp in tps})
    hi = a.list_partition_offsets({tp: OffsetSpec.LATEST for tp in tps})
    for tp in tps:
        t.rec(label, partition=tp.partition, low=lo[tp].offset, high=hi[tp].offset)


def wait_end(a, tp, want, seconds=15):
    more = deadline(seconds)
    while more():
        if a.list_partition_offsets({tp: OffsetSpec.LATEST})[tp].offset >= want:
            return
        time.sleep(0.05)
    raise AssertionError(f"end offset of {tp} never reached {want}")


@reg("produce_consume_keyed")
def produce_consume_keyed(t, bs):
    a = admin(bs)
    topic = t.topic()
    create(a, topic, 3)
    msgs = [{"key": f"key-{i % 7}".encode(), "value": f"value-{i}".encode(),
             "headers": [("h-index", str(i).encode()), ("h-bin", bytes([0, 255, i]))],
             "timestamp_ms": TS0 + i * 1000} for i in range(30)]
    msgs += [{"key": None, "value": b"no-key", "partition": 0, "timestamp_ms": TS0 + 99_000},
             {"key": b"null-value", "value": None, "partition": 1, "timestamp_ms": TS0 + 99_001}]
    send_all(t, producer(bs), topic, msgs)
    got, errors = consume_all(bs, topic, 3, len(msgs))
    for e in errors:
        t.rec("consume-error", **e)
    for r in got:
        t.rec("record", **r)
    t.check(len(got) == len(msgs), "every record consumed", got=len(got))
    offsets(t, a, topic, 3)


@reg("idempotent_acks_all")
def idempotent_acks_all(t, bs):
    a = admin(bs)
    topic = t.topic()
    create(a, topic, 2)
    p = producer(bs, enable_idempotence=True, acks="all", linger_ms=20)
    n = 1000
    futs = [p.send(topic, key=f"k{i % 10}".encode(), value=f"v{i}".encode(), timestamp_ms=TS0 + i) for i in range(n)]
    p.flush(timeout=30)
    errs = []
    for f in futs:
        try:
            f.get(timeout=20)
        except Errors.KafkaError as e:
            errs.append(kerr(e))
    t.rec("delivery-summary", delivered=n - len(errs), errors=errs[:3])
    got, errors = consume_all(bs, topic, 2, n, seconds=30)
    t.rec("consumed", count=len(got), errors=errors[:3])
    t.check(sorted(int(r["value"][1:]) for r in got) == list(range(n)), "each record exactly once")
    for part in range(2):
        offs = [r["offset"] for r in got if r["partition"] == part]
        t.rec("partition", partition=part, count=len(offs), contiguous_from_0=offs == list(range(len(offs))))
    offsets(t, a, topic, 2)


@reg("acks_0_and_1")
def acks_0_and_1(t, bs):
    a = admin(bs)
    topic = t.topic()
    create(a, topic, 1)
    for acks in (0, 1):
        p = producer(bs, acks=acks, enable_idempotence=False)
        futs = [p.send(topic, value=f"acks{acks}-{i}".encode(), timestamp_ms=TS0 + i) for i in range(50)]
        p.flush(timeout=30)
        offs = [f.get(timeout=20).offset for f in futs]
        if acks == 0:
            # The client never learns the offsets: kafka-python makes them up from its own
            # batching (relative offsets in whatever batches its sender thread cut), which
            # depends on timing, not on the broker. Record only that every send resolved.
            t.rec("acks", acks=acks, resolved=len(offs))
            # Those requests may still be in flight on this producer's connection when the next
            # producer connects; neither broker orders requests across connections.
            wait_end(a, TopicPartition(topic, 0), 50)
        else:
            t.rec("acks", acks=acks, offsets_first_last=[offs[0], offs[-1]])
        p.close()
    got, _ = consume_all(bs, topic, 1, 100)
    t.rec("consumed", count=len(got), first=got[0]["value"] if got else None, last=got[-1]["value"] if got else None)
    offsets(t, a, topic, 1)


def codec_scenario(codec):
    def fn(t, bs):
        a = admin(bs)
        topic = t.topic()
        create(a, topic, 1)
        p = producer(bs, compression_type=codec, linger_ms=50)
        n = 300
        msgs = [{"key": f"k{i}".encode(), "value": (f"{codec}-{i}-" + "x" * (i % 50)).encode(),
                 "headers": [("i", str(i).encode())], "timestamp_ms": TS0 + i} for i in range(n)]
        send_all(t, p, topic, msgs, every=97)
        got, errors = consume_all(bs, topic, 1, n)
        t.rec("consumed", count=len(got), errors=errors[:3])
        for r in got[::61]:
            t.rec("record", **r)
        t.check([r["value"] for r in got] == [m["value"].decode() for m in msgs], "values round-trip")
        offsets(t, a, topic, 1)
    return fn


for _codec in ("gzip", "snappy", "lz4", "zstd"):
    reg(f"codec_{_codec}")(codec_scenario(_codec))


def lpo(t, a, topic, part, label, spec):
    try:
        r = a.list_partition_offsets({TopicPartition(topic, part): spec})
        v = list(r.values())[0]
        t.rec("list-offsets", spec=label, partition=part, offset=v.offset, timestamp=v.timestamp,
              leader_epoch=v.leader_epoch is not None)
    except Errors.KafkaError as e:
        t.rec("list-offsets", spec=label, partition=part, **kerr(e))


@reg("list_offsets")
def list_offsets(t, bs):
    a = admin(bs)
    topic = t.topic()
    create(a, topic, 1)
    for label, spec in (("earliest", OffsetSpec.EARLIEST), ("latest", OffsetSpec.LATEST),
                        ("max_timestamp", OffsetSpec.MAX_TIMESTAMP), ("time:TS0", TS0)):
        lpo(t, a, topic, 0, "empty/" + label, spec)
    stamps = [5000, 1000, 3000, 3000, 2000]
    p = producer(bs)
    # one send and flush per record: each record is its own batch here (unlike ck.list_offsets)
    for i, s in enumerate(stamps):
        send_all(t, p, topic, [{"value": f"r{i}".encode(), "timestamp_ms": TS0 + s}])
    for label, spec in (("earliest", OffsetSpec.EARLIEST), ("latest", OffsetSpec.LATEST),
                        ("max_timestamp", OffsetSpec.MAX_TIMESTAMP)):
        lpo(t, a, topic, 0, label, spec)
    for s in (0, 1000, 1001, 2500, 3000, 4000, 5000, 5001):
        lpo(t, a, topic, 0, f"time:TS0+{s}", TS0 + s)
    c = consumer(bs)
    try:
        tp = TopicPartition(topic, 0)
        r = c.offsets_for_times({tp: TS0 + 2500})
        t.rec("offsets-for-times", ts=TS0 + 2500, offset=r[tp] and r[tp].offset, timestamp=r[tp] and r[tp].timestamp)
        r = c.offsets_for_times({tp: TS0 + 9000})
        t.rec("offsets-for-times", ts=TS0 + 9000, result=None if r[tp] is None else r[tp].offset)
        t.rec("beginning-end", beginning=c.beginning_offsets([tp])[tp], end=c.end_offsets([tp])[tp])
    finally:
        c.close()
    lpo(t, a, topic, 4, "latest(unknown partition)", OffsetSpec.LATEST)


def describe_configs(t, a, topic, label, until=None):
    alive = deadline(10)
    while True:
        try:
            r = a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all")
        except Errors.KafkaError as e:
            t.rec("describe-configs", at=label, **kerr(e))
            return
        cfg = r["topic"][topic]
        configs = {k: {"value": v["value"], "source": v["config_source"], "read_only": v["read_only"],
                       "sensitive": v["is_sensitive"], "type": v.get("config_type")} for k, v in cfg.items()}
        if until is None or until(configs) or not alive():
            break
        time.sleep(0.1)
    t.rec("describe-configs", at=label, configs=configs)


def describe_topic(t, a, topic, label, partitions=None, seconds=15):
    """Records describe_topics of one topic. `partitions`: on a cluster the broker asked may not
    have applied a change yet (Kafka's 3 nodes showed 2 of 5 partitions once in CI right after
    wait_ready saw 5 on another broker); ask again, bounded, until it shows that many."""
    alive = deadline(seconds)
    while True:
        try:
            d = a.describe_topics([topic])[0]
        except Errors.KafkaError as e:
            t.rec("describe-topic", at=label, **kerr(e))
            return
        if partitions is None or len(d["partitions"]) == partitions or not alive():
            break
        time.sleep(0.2)
    t.rec("describe-topic", at=label, name=d["name"], error_code=d["error_code"], internal=d["is_internal"],
          topic_id=d["topic_id"],
          partitions=[{"id": p["partition_index"], "error_code": p["error_code"], "leader": p["leader_id"],
                       "leader_epoch": p["leader_epoch"], "replicas": p["replica_nodes"], "isr": p["isr_nodes"]}
                      for p in sorted(d["partitions"], key=lambda p: p["partition_index"])])
    t.rec("authorized-operations", at=label, ops=sorted(d.get("authorized_operations") or []))


def _alter_result(r):
    """kafka-python returns {type: {name: error-or-None}}; keep the "[Error N] Name" part of each
    error (the broker's message text follows it and is not compared)."""
    def short(v):
        return v.split(":")[0] if isinstance(v, str) else v
    if isinstance(r, dict):
        return {k: ({n: short(v) for n, v in vs.items()} if isinstance(vs, dict) else short(vs))
                for k, vs in r.items()}
    return type(r).__name__


@reg("admin_topics_configs")
def admin_topics_configs(t, bs):
    a = admin(bs)
    topic = t.topic()
    r = a.create_topics({topic: {"num_partitions": 2, "replication_factor": 1,
                                 "configs": {"retention.ms": "3600000", "max.message.bytes": "200000"}}})
    created = r["topics"][0]
    t.rec("create-result", name=created["name"], error_code=created["error_code"], topic_id=created["topic_id"],
          num_partitions=created["num_partitions"], replication_factor=created["replication_factor"],
          configs={k: {"value": v["value"], "source": v["config_source"]} for k, v in (created.get("configs") or {}).items()})
    wait_ready(a, topic, 2)
    try:
        a.create_topics({topic: {"num_partitions": 2}})
        t.rec("create-again", error=None)
    except Errors.KafkaError as e:
        t.rec("create-again", **kerr(e))
    v = a.create_topics({t.topic("vo"): {"num_partitions": 3}}, validate_only=True)["topics"][0]
    t.rec("validate-only", error_code=v["error_code"], num_partitions=v["num_partitions"],
          exists=t.topic("vo") in a.list_topics())
    describe_topic(t, a, topic, "created")
    describe_configs(t, a, topic, "created")
    a.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs={
        "segment.bytes": (AlterConfigOp.SET, "1048576"), "retention.ms": (AlterConfigOp.DELETE, None),
        "cleanup.policy": (AlterConfigOp.SET, "compact")})])
    t.rec("altered", ops="SET segment.bytes, DELETE retention.ms, SET cleanup.policy=compact")
    describe_configs(t, a, topic, "after alter", until=lambda c: c["segment.bytes"]["value"] == "1048576")
    for name, value in (("retention.ms", "abc"), ("no.such.config", "1"), ("segment.bytes", "1")):
        try:
            r = a.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs={name: value})],
                                raise_on_unknown=False)
            t.rec("alter-invalid", name=name, value=value, response=_alter_result(r))
        except Errors.KafkaError as e:
            t.rec("alter-invalid", name=name, value=value, **kerr(e))
    a.create_partitions({topic: 5})
    t.rec("create-partitions", total=5)
    for n in (4, 5):
        try:
            a.create_partitions({topic: n})
            t.rec("create-partitions", total=n, error=None)
        except Errors.KafkaError as e:
            t.rec("create-partitions", total=n, **kerr(e))
    wait_ready(a, topic, 5)
    describe_topic(t, a, topic, "after create_partitions", partitions=5)
    cl = a.describe_cluster()
    t.rec("describe-cluster", cluster_id=cl["cluster_id"], controller_id=cl["controller_id"],
          brokers=[{"broker_id": b["broker_id"], "host": b["host"], "port": b["port"], "rack": b["rack"]}
                   for b in cl["brokers"]])
    r = a.delete_topics([topic])
    t.rec("deleted", topic=topic)
    alive = deadline(15)
    while alive() and topic in a.list_topics():
        time.sleep(0.2)
    describe_topic(t, a, topic, "after delete")
    try:
        a.delete_topics([topic])
        t.rec("delete-again", error=None)
    except Errors.KafkaError as e:
        t.rec("delete-again", **kerr(e))


@reg("delete_records_and_fetch_below_start")
def delete_records(t, bs):
    a = admin(bs)
    topic = t.topic()
    create(a, topic, 1)
    p = producer(bs)
    send_all(t, p, topic, [{"value": f"r{i}".encode(), "timestamp_ms": TS0 + i} for i in range(10)], every=3)
    tp = TopicPartition(topic, 0)
    for before in (3, 1, 10, 12, -1):
        try:
            r = a.delete_records({tp: before})
            t.rec("delete-records", before=before, result={str(k): v for k, v in r.items()})
        except Errors.KafkaError as e:
            t.rec("delete-records", before=before, **kerr(e))
    offsets(t, a, topic, 1)
    send_all(t, p, topic, [{"value": b"after", "timestamp_ms": TS0 + 50}])
    c = consumer(bs, auto_offset_reset="none")
    c.assign([tp])
    c.seek(tp, 2)
    try:
        r = c.poll(timeout_ms=5000)
        r = c.poll(timeout_ms=2000) if not r else r
        t.rec("fetch-below-start", records=sum(len(v) for v in r.values()))
    except Errors.KafkaError as e:
        t.rec("fetch-below-start", **kerr(e))
    finally:
        c.close()
    got, _ = consume_all(bs, topic, 1, 1, seconds=5)   # seek(0) with reset=earliest
    t.rec("after-reset", offsets=[r["offset"] for r in got], values=[r["value"] for r in got])


@reg("errors_create_topics")
def errors_create_topics(t, bs):
    a = admin(bs)
    cases = [("bad name!", 1, 1), ("..", 1, 1), ("y" * 250, 1, 1), (t.topic("p0"), 0, 1),
             (t.topic("pm2"), -2, 1), (t.topic("rf3"), 1, 3), (t.topic("rf0"), 1, 0),
             (t.topic("defaults"), -1, -1)]
    for name, parts, rf in cases:
        r = a.create_topics({name: {"num_partitions": parts, "replication_factor": rf}}, raise_errors=False)
        x = r["topics"][0]
        t.rec("create", name=name[:60], partitions=parts, rf=rf, error_code=x["error_code"],
              num_partitions=x.get("num_partitions"), replication_factor=x.get("replication_factor"))
    r = a.create_topics({t.topic("bad-cfg"): {"num_partitions": 1, "configs": {"max.message.bytes": "-5"}}},
                        raise_errors=False)["topics"][0]
    t.rec("create", name=t.topic("bad-cfg"), config="max.message.bytes=-5", error_code=r["error_code"])


@reg("errors_unknown_topic")
def errors_unknown_topic(t, bs):
    a = admin(bs)
    topic = t.topic()
    describe_topic(t, a, topic, "unknown")
    t.rec("exists", exists=topic in a.list_topics())
    describe_configs(t, a, topic, "unknown")
    try:
        a.delete_topics([topic])
        t.rec("delete-unknown", error=None)
    except Errors.KafkaError as e:
        t.rec("delete-unknown", **kerr(e))
    lpo(t, a, topic, 0, "latest(unknown topic)", OffsetSpec.LATEST)
    p = producer(bs, max_block_ms=3000)
    # the Java-like client asks Metadata with auto-create allowed; the broker creates the topic
    try:
        md = p.send(t.topic("auto"), value=b"x", timestamp_ms=TS0).get(timeout=20)
        t.rec("produce-to-new-topic", partition=md.partition, offset=md.offset)
    except Errors.KafkaError as e:
        t.rec("produce-to-new-topic", **kerr(e))


@reg("errors_record_too_large")
def errors_record_too_large(t, bs):
    a = admin(bs)
    topic = t.topic()
    create(a, topic, 1, {"max.message.bytes": "1024"})
    p = producer(bs, acks="all", retries=0, enable_idempotence=False)
    for i, v in enumerate((b"small", b"y" * 4000, b"small-again")):
        send_all(t, p, topic, [{"value": v, "timestamp_ms": TS0 + i}])
    offsets(t, a, topic, 1)


@reg("group_subscribe_commit")
def group_subscribe_commit(t, bs):
    """Classic consumer group through kafka-python: subscribe, consume, commit, admin views, delete."""
    from kafka.structs import OffsetAndMetadata
    a = admin(bs)
    topic = t.topic()
    gid = t.topic("group")
    create(a, topic, 2)
    send_all(t, producer(bs), topic, [{"value": f"g{i}".encode(), "partition": i % 2, "timestamp_ms": TS0 + i}
                                      for i in range(10)], every=100)
    c = KafkaConsumer(topic, bootstrap_servers=bs, group_id=gid, enable_auto_commit=False,
                      auto_offset_reset="earliest", request_timeout_ms=15000, session_timeout_ms=10000)
    try:
        n = 0
        alive = deadline(25)
        while alive() and n < 10:
            n += sum(len(v) for v in c.poll(timeout_ms=500).values())
        t.rec("consumed", count=n, assignment=sorted(tp.partition for tp in c.assignment()))
        c.commit({TopicPartition(topic, 0): OffsetAndMetadata(3, "meta", -1)})
        t.rec("committed", p0=c.committed(TopicPartition(topic, 0)), p1=c.committed(TopicPartition(topic, 1)))
        d = a.describe_groups([gid])[gid]
        t.rec("describe-group", error_code=d.get("error_code"), state=d.get("group_state"),
              protocol_type=d.get("protocol_type"), protocol=d.get("protocol_data"),
              members=len(d.get("members") or []))
    finally:
        c.close()
    offs = a.list_group_offsets({gid: None})[gid]
    t.rec("group-offsets", offsets=sorted((tp.partition, om.offset, om.metadata) for tp, om in offs.items()))
    r = a.delete_groups([gid])
    t.rec("delete-group", result={g: (e if isinstance(e, (str, type(None))) else type(e).__name__) for g, e in r.items()})
    r = a.delete_groups([gid])
    t.rec("delete-group-again", result={g: (e if isinstance(e, (str, type(None))) else type(e).__name__) for g, e in r.items()})


# ---- Issue 18 item 3: per-record produce errors (ProduceResponse v8+ record_errors). ----------
# A raw transcript of Kafka's answer (kafka-python's protocol classes over a plain socket, record
# batches built here), and what kafka-python's own producer makes of it. The per-record texts and
# the partition's error_message are recorded under their own keys, so they are compared exactly
# (normalize.py only replaces the clock-taken bounds of the timestamp texts).
import gzip as _re_gzip  # noqa: E402  (this block keeps its imports with it)
import socket as _re_socket  # noqa: E402
import struct as _re_struct  # noqa: E402

from kafka.protocol.producer import ProduceRequest as _ReProduceRequest, ProduceResponse as _ReProduceResponse  # noqa: E402
from kafka.record.util import calc_crc32c as _re_crc32c  # noqa: E402

_RE_FUTURE_TS = 4_000_000_000_000   # 2096


def _re_varint(n):
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if not n:
            out.append(b)
            return bytes(out)
        out.append(b | 0x80)


def _re_vbytes(b):
    return _re_varint(-1) if b is None else _re_varint(len(b)) + b


def _re_batch(recs, base_ts=None, base_offset=0, attributes=0, max_ts=None, offset_deltas=None,
              last_offset_delta=None, count=None, codec=None, pid=-1, epoch=-1, seq=-1):
    """A v2 record batch. recs: [(key, value, timestamp)]; the other arguments make it odd on purpose."""
    deltas = offset_deltas or list(range(len(recs)))
    if base_ts is None:
        base_ts = min(ts for _, _, ts in recs)
    payload = b""
    for (k, v, ts), od in zip(recs, deltas):
        body = b"\x00" + _re_varint(ts - base_ts) + _re_varint(od) + _re_vbytes(k) + _re_vbytes(v) + _re_varint(0)
        payload += _re_varint(len(body)) + body
    if codec == "gzip":
        payload = _re_gzip.compress(payload, mtime=0)
        attributes |= 1
    if max_ts is None:
        max_ts = max(ts for _, _, ts in recs)
    after_crc = _re_struct.pack(">hiqqqhii", attributes, max(deltas) if last_offset_delta is None else last_offset_delta,
                                base_ts, max_ts, pid, epoch, seq, len(recs) if count is None else count) + payload
    body = _re_struct.pack(">ibI", 0, 2, _re_crc32c(after_crc)) + after_crc
    return _re_struct.pack(">qi", base_offset, len(body)) + body


class _ReConn:
    def __init__(self, addr):
        host, port = addr
        self.s = _re_socket.create_connection((host, int(port)), timeout=20)
        self.corr = 0

    def _recv(self, n):
        buf = b""
        while len(buf) < n:
            c = self.s.recv(n - len(buf))
            if not c:
                raise ConnectionError("connection closed by the broker")
            buf += c
        return buf

    def call(self, req, version, resp_cls):
        self.corr += 1
        req.with_header(correlation_id=self.corr, client_id="diff-kp-raw")
        self.s.sendall(req.encode(version=version, header=True, framed=True))
        (size,) = _re_struct.unpack(">i", self._recv(4))
        return resp_cls.decode(self._recv(size), version=version, header=True)

    def close(self):
        self.s.close()


class _ReRaw:
    """Sends Produce requests (by topic name: v3..v12, the versions both brokers advertise) and
    records the decoded partition answers; a connection the broker closes is recorded too.
    Each partition's records go to its leader (as a client does; on a cluster the partitions of
    one case may lead on different brokers: one request per leader, the answers merged by
    partition). On a single broker that is one request, as before."""

    def __init__(self, t, a):
        self.t, self.a = t, a
        self.conns = {}     # (host, port) -> _ReConn
        self.leaders = {}   # (topic, partition) -> (host, port)

    def _leader(self, topic, partition):
        if (topic, partition) not in self.leaders:
            brokers = {b["broker_id"]: (b["host"], b["port"]) for b in self.a.describe_cluster()["brokers"]}
            for d in self.a.describe_topics([topic]):
                for p in d["partitions"]:
                    self.leaders[(topic, p["partition_index"])] = brokers[p["leader_id"]]
        return self.leaders[(topic, partition)]

    def produce(self, case, topic, parts, version=12):
        TD = _ReProduceRequest.TopicProduceData
        PD = TD.PartitionProduceData
        by_leader = {}
        for p, b in parts:
            by_leader.setdefault(self._leader(topic, p), []).append((p, b))
        resps = []
        for addr, lparts in by_leader.items():
            try:
                if addr not in self.conns:
                    self.conns[addr] = _ReConn(addr)
                req = _ReProduceRequest(transactional_id=None, acks=-1, timeout_ms=10000,
                                        topic_data=[TD(name=topic, partition_data=[PD(index=p, records=b) for p, b in lparts])])
                # A cluster's leader may not have applied the just-created topic yet: every
                # partition UNKNOWN_TOPIC_OR_PARTITION (retriable, nothing appended) is asked
                # again, bounded, as a client would.
                more = deadline(10)
                while True:
                    r = self.conns[addr].call(req, version, _ReProduceResponse)
                    codes = {p.error_code for tr in r.responses for p in tr.partition_responses}
                    if codes != {3} or not more():
                        break
                    time.sleep(0.2)
                resps.append(r)
            except Exception as e:  # noqa: BLE001  (what the broker did is the observation)
                self.t.rec("produce-raw", case=case, version=version, exception=type(e).__name__)
                c = self.conns.pop(addr, None)
                if c is not None:
                    c.close()
                return
        out = []
        for tr in (tr for resp in resps for tr in resp.responses):
            for p in tr.partition_responses:
                d = {"partition": p.index, "error_code": p.error_code, "base_offset": p.base_offset,
                     "log_append_time_ms": p.log_append_time_ms}
                if version >= 5:
                    d["log_start_offset"] = p.log_start_offset
                if version >= 8:
                    d["error_message"] = p.error_message
                    d["record_errors"] = [[e.batch_index, e.batch_index_error_message] for e in p.record_errors]
                out.append(d)
        self.t.rec("produce-raw", case=case, version=version, partitions=sorted(out, key=lambda d: d["partition"]))

    def close(self):
        for c in self.conns.values():
            c.close()


def _re_offsets(t, a, base, topics):
    for topic, n in topics:
        offsets(t, a, topic, n, label="offsets " + topic[len(base) + 1:])


@reg("produce_record_errors_raw")
def produce_record_errors_raw(t, bs):
    """Produce v3..v12 answers to batches with invalid records (keyless on a compacted topic,
    timestamps outside message.timestamp.before/after.max.ms, a LogAppendTime flag set by the
    producer): error_code, error_message, record_errors (batch_index + text), base_offset,
    log_append_time_ms, log_start_offset. Nothing of a refused batch is written."""
    a = admin(bs)
    cmp_topic, ts_topic, both, lat, plain = (t.topic("compacted"), t.topic("ts-limits"), t.topic("compacted-ts"),
                                             t.topic("log-append"), t.topic("default"))
    limits = {"message.timestamp.before.max.ms": "600000", "message.timestamp.after.max.ms": "600000"}
    create(a, cmp_topic, 2, {"cleanup.policy": "compact"})
    create(a, ts_topic, 1, limits)
    create(a, both, 1, dict(limits, **{"cleanup.policy": "compact"}))
    create(a, lat, 1, {"message.timestamp.type": "LogAppendTime"})
    create(a, plain, 1)
    raw = _ReRaw(t, a)
    now = int(time.time() * 1000)
    keyless_mix = [(b"k0", b"v0", now), (None, b"v1", now), (b"k2", b"v2", now), (None, b"v3", now),
                   (None, b"v4", now), (b"", b"v5-empty-key", now)]
    for v in range(3, 13):
        raw.produce("keyless-mix", cmp_topic, [(0, _re_batch(keyless_mix))], version=v)
    raw.produce("one-keyless", cmp_topic, [(0, _re_batch([(b"k0", b"v0", now), (None, b"v1", now)]))])
    raw.produce("ten-keyless", cmp_topic, [(0, _re_batch([(None, b"x%d" % i, now) for i in range(10)]))])
    raw.produce("keyless-tombstone", cmp_topic, [(0, _re_batch([(b"k0", b"v0", now), (None, None, now)]))])
    raw.produce("keyless-mix-gzip", cmp_topic, [(0, _re_batch(keyless_mix, codec="gzip"))])
    # inner offset deltas 5, 3, 9 in a compressed batch: Kafka reassigns them (no error of their own)
    raw.produce("keyless-gzip-odd-inner-offsets", cmp_topic,
                [(0, _re_batch([(b"k0", b"v0", now), (None, b"v1", now), (None, b"v2", now)], codec="gzip",
                               offset_deltas=[5, 3, 9], last_offset_delta=2))])
    raw.produce("good-p0-keyless-p1", cmp_topic, [(0, _re_batch([(b"k0", b"v0", now)])),
                                                  (1, _re_batch([(b"k0", b"v0", now), (None, b"v1", now)]))])
    ts_mix = [(b"k0", b"v0", now), (b"k1", b"old", TS0), (b"k2", b"future", _RE_FUTURE_TS), (b"k3", b"v3", now)]
    for v in (7, 8, 12):
        raw.produce("timestamps-old-and-future", ts_topic, [(0, _re_batch(ts_mix))], version=v)
    raw.produce("timestamps-one-old-gzip", ts_topic, [(0, _re_batch([(b"k0", b"v0", now), (b"k1", b"old", TS0)],
                                                                     codec="gzip"))])
    # the text names the record's offset as sent (offset delta), not its index in the batch
    raw.produce("timestamps-offset-deltas-0-0-7", ts_topic,
                [(0, _re_batch([(b"k0", b"v0", now), (b"k1", b"old", TS0), (b"k2", b"old", TS0 + 1)],
                               offset_deltas=[0, 0, 7], last_offset_delta=2))])
    raw.produce("timestamp-minus-one-is-not-checked", ts_topic,
                [(0, _re_batch([(b"k0", b"v0", -1)], base_ts=-1, max_ts=-1))])
    # the default limits: message.timestamp.after.max.ms=3600000, before.max.ms=Long.MAX_VALUE
    raw.produce("default-limits-future", plain, [(0, _re_batch([(b"k0", b"v0", now), (b"k1", b"future", _RE_FUTURE_TS)]))])
    raw.produce("default-limits-old", plain, [(0, _re_batch([(b"k0", b"v0", TS0)]))])
    raw.produce("keyless-and-timestamps", both,
                [(0, _re_batch([(b"k0", b"v0", now), (None, b"keyless", now), (b"k2", b"old", TS0),
                                (None, b"keyless-old", TS0)]))])
    raw.produce("one-keyless-one-old", both, [(0, _re_batch([(None, b"keyless", now), (b"k1", b"old", TS0)]))])
    raw.produce("one-keyless-old", both, [(0, _re_batch([(b"k0", b"v0", now), (None, b"keyless-old", TS0)]))])
    raw.produce("old-on-log-append-topic-is-not-checked", lat, [(0, _re_batch([(b"k0", b"v0", TS0)]))])
    raw.produce("log-append-flag-on-log-append-topic", lat,
                [(0, _re_batch([(b"k0", b"v0", TS0), (None, None, TS0)], attributes=8))])
    raw.produce("log-append-flag-no-timestamp", plain,
                [(0, _re_batch([(b"k0", b"v0", TS0), (b"k1", b"v1", TS0)], attributes=8, max_ts=-1))])
    raw.close()
    _re_offsets(t, a, t.topic(), ((cmp_topic, 2), (ts_topic, 1), (both, 1), (lat, 1), (plain, 1)))


@reg("produce_batch_errors_raw")
def produce_batch_errors_raw(t, bs):
    """The batch-level refusals beside issue 18's per-record ones: Kafka answers them with no
    record_errors and a null error_message even when a record of the batch is also keyless on a
    compacted topic (its checks run first); log_start_offset is -1 for some (see the facts)."""
    a = admin(bs)
    cmp_topic, small = t.topic("compacted"), t.topic("small")
    create(a, cmp_topic, 1, {"cleanup.policy": "compact"})
    create(a, small, 1, {"cleanup.policy": "compact", "max.message.bytes": "200"})
    raw = _ReRaw(t, a)
    now = int(time.time() * 1000)
    good = _re_batch([(b"k0", b"v0", now)])
    raw.produce("two-batches-both-keyed", cmp_topic, [(0, good + _re_batch([(b"k1", b"v1", now)], base_offset=1))])
    raw.produce("two-batches-second-keyless", cmp_topic, [(0, good + _re_batch([(None, b"v1", now)], base_offset=1))])
    bad_crc = bytearray(_re_batch([(b"k0", b"v0", now), (None, b"v1", now)]))
    bad_crc[-1] ^= 1
    raw.produce("bad-crc-with-keyless", cmp_topic, [(0, bytes(bad_crc))])
    raw.produce("too-large-with-keyless", small, [(0, _re_batch([(b"k0", b"x" * 300, now), (None, b"v1", now)]))])
    raw.produce("count-3-of-2-records-with-keyless", cmp_topic,
                [(0, _re_batch([(b"k0", b"v0", now), (None, b"v1", now)], count=3, last_offset_delta=2))])
    raw.produce("last-offset-delta-5-of-2-records", cmp_topic,
                [(0, _re_batch([(b"k0", b"v0", now), (b"k1", b"v1", now)], last_offset_delta=5))])
    raw.produce("base-offset-100-with-keyless", cmp_topic,
                [(0, _re_batch([(b"k0", b"v0", now), (None, b"v1", now)], base_offset=100))])
    raw.produce("control-batch-keyless", cmp_topic, [(0, _re_batch([(None, b"v1", now)], attributes=0x20))])
    raw.produce("no-records", cmp_topic, [(0, b"")])
    raw.close()
    _re_offsets(t, a, t.topic(), ((cmp_topic, 1), (small, 1)))


@reg("produce_record_errors_producer")
def produce_record_errors_producer(t, bs):
    """kafka-python's producer (Produce v9) on a refused batch: one named record fails with the
    partition's error, several with InvalidRecordError, the rest with KafkaError ("part of a
    batch which had one more more invalid records"); the exception text is the broker's per-record
    text. The others are resent."""
    a = admin(bs)
    topic, ts_topic = t.topic("compacted"), t.topic("ts-limits")
    create(a, topic, 1, {"cleanup.policy": "compact"})
    create(a, ts_topic, 1, {"message.timestamp.before.max.ms": "600000", "message.timestamp.after.max.ms": "600000"})
    p = producer(bs, linger_ms=500, retries=0, enable_idempotence=False, acks="all")

    def group(label, tp, msgs):
        futs = [p.send(tp, partition=0, **m) for m in msgs]
        p.flush(timeout=30)
        failed = []
        for i, f in enumerate(futs):
            try:
                md = f.get(timeout=20)
                t.rec("delivery", group=label, i=i, key=bdecode(msgs[i].get("key")), offset=md.offset)
            except Errors.KafkaError as e:
                t.rec("delivery", group=label, i=i, key=bdecode(msgs[i].get("key")), error=type(e).__name__,
                      code=getattr(e, "errno", None), text=str(e))
                failed.append((msgs[i], e))
        return failed

    groups = [
        (topic, "two-keyless", [{"key": b"k0", "value": b"a0"}, {"key": None, "value": b"a1"},
                                {"key": b"k2", "value": b"a2"}, {"key": None, "value": b"a3"}]),
        (topic, "one-keyless", [{"key": b"k0", "value": b"b0"}, {"key": None, "value": b"b1"}]),
        (ts_topic, "one-old", [{"key": b"k0", "value": b"c0"}, {"key": b"k1", "value": b"c1", "timestamp_ms": TS0}]),
        (ts_topic, "old-and-future", [{"key": b"k0", "value": b"d0"},
                                      {"key": b"k1", "value": b"d1", "timestamp_ms": TS0},
                                      {"key": b"k2", "value": b"d2", "timestamp_ms": _RE_FUTURE_TS}]),
    ]
    for tp, label, msgs in groups:
        failed = group(label, tp, msgs)
        again = [m for m, e in failed if type(e) is Errors.KafkaError]
        if again:
            group(label + "/resend-others", tp, again)
    p.close()
    offsets(t, a, topic, 1, label="offsets compacted")
    offsets(t, a, ts_topic, 1, label="offsets ts-limits")
# ---- end of issue 18 item 3 (kp) ----


# ---- transactions, raw requests (issue 23) ----
# The Java client and librdkafka refuse most misuse on their own side (IllegalStateException,
# _STATE) and never send an AddPartitionsToTxn for a topic they do not know, so the broker's
# answers to out-of-order and invalid transaction requests are sent raw here, with the versions
# a pre-KIP-890 client uses (InitProducerId v4, AddPartitionsToTxn v3, EndTxn v4, Produce v11:
# Kafka 4.4 then runs the transaction as transaction version 1, as for librdkafka).

from kafka.protocol.metadata import FindCoordinatorRequest as _TxFindReq, FindCoordinatorResponse as _TxFindResp  # noqa: E402
from kafka.protocol.producer.transaction import (  # noqa: E402
    AddPartitionsToTxnRequest as _TxAddReq, AddPartitionsToTxnResponse as _TxAddResp,
    EndTxnRequest as _TxEndReq, EndTxnResponse as _TxEndResp,
    InitProducerIdRequest as _TxInitReq, InitProducerIdResponse as _TxInitResp)
from kafka.protocol.admin import ListTransactionsRequest as _TxListReq, ListTransactionsResponse as _TxListResp  # noqa: E402

# Answers a client retries (the coordinator loading or moving, a transaction still completing):
# asked again (bounded) and only the final answer is recorded, as a client would see it.
_TX_RETRIABLE = {14, 15, 16, 51}   # COORDINATOR_LOAD_IN_PROGRESS, _NOT_AVAILABLE, NOT_COORDINATOR, CONCURRENT_TRANSACTIONS


class _TxRaw:
    def __init__(self, t, a, bs, txid):
        self.t, self.a, self.txid = t, a, txid
        host, port = bs.split(",")[0].rsplit(":", 1)
        self.boot = _ReConn((host, port))
        self.coord = None
        self.conns = {}
        self.leaders = {}

    def close(self):
        for c in [self.boot, self.coord, *self.conns.values()]:
            if c is not None:
                c.close()

    def find_coordinator(self, seconds=30):
        alive = deadline(seconds)
        while True:
            r = self.boot.call(_TxFindReq(key=self.txid, key_type=1), 3, _TxFindResp)
            if r.error_code not in _TX_RETRIABLE or not alive():
                break
            time.sleep(0.2)
        self.t.rec("find-coordinator", key_type=1, error_code=r.error_code, node_id=r.node_id)
        if r.error_code == 0:
            self.coord = _ReConn((r.host, r.port))
        return r.error_code == 0

    def _coord_of(self, txid):
        """The connection to `txid`'s coordinator: another id may live on another broker of a
        cluster (found without recording, as a client would)."""
        if txid is None or txid == self.txid:
            return self.coord
        if txid not in self.conns:
            alive = deadline(30)
            while True:
                r = self.boot.call(_TxFindReq(key=txid, key_type=1), 3, _TxFindResp)
                if r.error_code not in _TX_RETRIABLE or not alive():
                    break
                time.sleep(0.2)
            self.conns[txid] = _ReConn((r.host, r.port)) if r.error_code == 0 else self.coord
        return self.conns[txid]

    def _coord_call(self, req, version, resp_cls, code_of, seconds=15):
        alive = deadline(seconds)
        coord = self._coord_of(getattr(req, "transactional_id", None)
                               or getattr(req, "v3_and_below_transactional_id", None))
        while True:
            r = coord.call(req, version, resp_cls)
            if code_of(r) not in _TX_RETRIABLE or not alive():
                return r
            time.sleep(0.1)

    def init(self, case, timeout_ms=60000, pid=-1, epoch=-1, txid=None):
        req = _TxInitReq(transactional_id=self.txid if txid is None else txid, transaction_timeout_ms=timeout_ms,
                         producer_id=pid, producer_epoch=epoch)
        r = self._coord_call(req, 4, _TxInitResp, lambda r: r.error_code)
        self.t.rec("init-producer-id", case=case, version=4, error_code=r.error_code, producer_id=r.producer_id,
                   producer_epoch=r.producer_epoch)
        return r

    def add_partitions(self, case, pid, epoch, topics, txid=None):
        TT = _TxAddReq.AddPartitionsToTxnTopic
        req = _TxAddReq(v3_and_below_transactional_id=self.txid if txid is None else txid,
                        v3_and_below_producer_id=pid, v3_and_below_producer_epoch=epoch,
                        v3_and_below_topics=[TT(name=n, partitions=ps) for n, ps in topics])

        def codes(r):
            cs = {p.partition_error_code for tr in r.results_by_topic_v3_and_below for p in tr.results_by_partition}
            return 51 if 51 in cs else 0
        r = self._coord_call(req, 3, _TxAddResp, codes)
        res = sorted([tr.name, p.partition_index, p.partition_error_code]
                     for tr in r.results_by_topic_v3_and_below for p in tr.results_by_partition)
        self.t.rec("add-partitions-to-txn", case=case, version=3, results=res)

    def end(self, case, pid, epoch, committed, txid=None, version=4):
        req = _TxEndReq(transactional_id=self.txid if txid is None else txid, producer_id=pid,
                        producer_epoch=epoch, committed=committed)
        r = self._coord_call(req, version, _TxEndResp, lambda r: r.error_code)
        if version >= 5:   # transaction version 2: the bumped epoch comes back
            self.t.rec("end-txn", case=case, version=version, committed=committed, error_code=r.error_code,
                       same_producer_id=r.producer_id == pid, epoch_delta=r.producer_epoch - epoch)
            return r
        self.t.rec("end-txn", case=case, version=4, committed=committed, error_code=r.error_code)
        return r

    def produce(self, case, topic, partition, batch, version=11, txid="", more=()):
        """A transactional Produce (v11 unless told; transactional_id set unless None) to the
        partition's leader; `more`: other (partition, batch) pairs in the same request (they
        must have the same leader)."""
        if (topic, partition) not in self.leaders:
            brokers = {b["broker_id"]: (b["host"], b["port"]) for b in self.a.describe_cluster()["brokers"]}
            for d in self.a.describe_topics([topic]):
                for p in d["partitions"]:
                    self.leaders[(topic, p["partition_index"])] = brokers[p["leader_id"]]
        addr = self.leaders[(topic, partition)]
        if addr not in self.conns:
            self.conns[addr] = _ReConn(addr)
        TD = _ReProduceRequest.TopicProduceData
        PD = TD.PartitionProduceData
        req = _ReProduceRequest(transactional_id=self.txid if txid == "" else txid, acks=-1, timeout_ms=10000,
                                topic_data=[TD(name=topic, partition_data=[PD(index=p, records=b) for p, b in
                                                                           [(partition, batch), *more]])])
        # A cluster's leader may not have applied the just-created topic or its leadership yet:
        # every partition UNKNOWN_TOPIC_OR_PARTITION or NOT_LEADER_OR_FOLLOWER (retriable,
        # nothing appended) is asked again, bounded, as a client would. A CI run's 3-node Kafka
        # answered NOT_LEADER_OR_FOLLOWER to the first Produce of a topic its metadata named
        # that broker the leader of.
        more_time = deadline(10)
        while True:
            r = self.conns[addr].call(req, version, _ReProduceResponse)
            codes = {p.error_code for tr in r.responses for p in tr.partition_responses}
            if not codes <= {3, 6} or not more_time():
                break
            time.sleep(0.2)
        out = [{"partition": p.index, "error_code": p.error_code, "base_offset": p.base_offset,
                **({"error_message": p.error_message} if version >= 8 else {})}
               for tr in r.responses for p in tr.partition_responses]
        self.t.rec("produce-txn", case=case, version=version, partitions=out)


@reg("txn_raw_errors")
def txn_raw_errors(t, bs):
    """The coordinator's answers, one request at a time, for one transactional id: EndTxn commit
    and abort with no transaction, AddPartitionsToTxn naming an unknown topic and an unknown
    partition beside a valid one, other epochs and unknown producer ids, a transactional
    Produce to a partition not in the transaction, a retried commit and an abort after it, an
    unknown transactional id, and InitProducerId again (the epoch)."""
    a = admin(bs)
    topic = t.topic()
    create(a, topic, 2, {"retention.ms": "-1"})
    raw = _TxRaw(t, a, bs, t.topic("txid"))
    try:
        if not raw.find_coordinator():
            return
        r = raw.init("first")
        pid, epoch = r.producer_id, r.producer_epoch
        raw.end("commit with no transaction", pid, epoch, True)
        raw.end("abort with no transaction", pid, epoch, False)
        raw.add_partitions("unknown topic and partition beside a valid one", pid, epoch,
                           [(topic, [0, 7]), (t.topic("no-such-topic"), [0])])
        raw.add_partitions("unknown topic alone", pid, epoch, [(t.topic("no-such-topic"), [0])])
        raw.end("commit after the refused adds", pid, epoch, True)
        raw.add_partitions("epoch + 1", pid, epoch + 1, [(topic, [0])])
        raw.add_partitions("unknown producer id", pid + 1_000_000, epoch, [(topic, [0])])
        raw.add_partitions("valid", pid, epoch, [(topic, [0])])
        raw.add_partitions("valid again", pid, epoch, [(topic, [0])])
        raw.produce("partition in the transaction", topic, 0,
                    _re_batch([(None, b"tx-0", TS0)], attributes=0x10, pid=pid, epoch=epoch, seq=0))
        raw.produce("partition not in the transaction", topic, 1,
                    _re_batch([(None, b"tx-1", TS0)], attributes=0x10, pid=pid, epoch=epoch, seq=0))
        raw.end("commit, epoch + 1", pid, epoch + 1, True)
        raw.end("commit, unknown producer id", pid + 1_000_000, epoch, True)
        raw.end("commit, unknown transactional id", pid, epoch, True, txid=t.topic("no-such-txid"))
        raw.add_partitions("unknown transactional id", pid, epoch, [(topic, [0])], txid=t.topic("no-such-txid"))
        raw.end("commit", pid, epoch, True)
        raw.end("commit again (a retry)", pid, epoch, True)
        raw.end("abort after the commit", pid, epoch, False)
        r2 = raw.init("again")
        t.rec("relation", what="init again against first", same_producer_id=r2.producer_id == pid,
              epoch_delta=r2.producer_epoch - epoch)
        raw.init("timeout above transaction.max.timeout.ms", timeout_ms=900001)
        raw.init("its producer id with the epoch before the last init", pid=pid, epoch=epoch)
    finally:
        raw.close()
    # the commit's marker is written after EndTxn's answer (the retried commit above waits for
    # the coordinator to complete, so it is there by now on Kafka); bounded, then recorded
    tp = TopicPartition(topic, 0)
    more = deadline(10)
    while more() and a.list_partition_offsets({tp: OffsetSpec.LATEST})[tp].offset < 2:
        time.sleep(0.1)
    offsets(t, a, topic, 2)


@reg("txn_produce_verification")
def txn_produce_verification(t, bs):
    """KIP-890 at the partition leader, raw: a transactional Produce to a partition the
    coordinator has not added, at each version's answer (v10 INVALID_TXN_STATE, v11
    TRANSACTION_ABORTABLE, v12+ added implicitly: transaction version 2), transactional records
    without a transactional id, two producer ids in one request, EndTxn v5's bumped epoch, the
    old epoch after it, and a second transaction started by Produce alone; ListTransactions by
    id pattern; then the offsets."""
    a = admin(bs)
    topic = t.topic()
    create(a, topic, 3, {"retention.ms": "-1"})
    raw = _TxRaw(t, a, bs, t.topic("txid"))
    try:
        if not raw.find_coordinator():
            return
        r = raw.init("first")
        pid, epoch = r.producer_id, r.producer_epoch

        def tx(value, seq, e=None, attributes=0x10):
            return _re_batch([(None, value, TS0)], attributes=attributes, pid=pid,
                             epoch=epoch if e is None else e, seq=seq)
        raw.produce("not added, v10", topic, 1, tx(b"v10", 0), version=10)
        raw.produce("not added, v11", topic, 1, tx(b"v11", 0), version=11)
        raw.produce("no transactional id, v12", topic, 1, tx(b"noid", 0), version=12, txid=None)
        other = _re_batch([(None, b"other", TS0)], attributes=0x10, pid=pid + 1000, epoch=0, seq=0)
        raw.produce("two producer ids in one request, v12", topic, 0, tx(b"x", 0), version=12,
                    more=[(2, other)])
        raw.produce("added by the produce, v12", topic, 0, tx(b"a0", 0), version=12)
        raw.produce("its next batch, v12", topic, 0, tx(b"a1", 1), version=12)
        raw.produce("a second partition, v12", topic, 2, tx(b"b0", 0), version=12)
        raw.produce("a retry of the first batch, v12", topic, 0, tx(b"a0", 0), version=12)
        e = raw.end("commit (v5)", pid, epoch, True, version=5)
        bumped = e.producer_epoch
        # EndTxn answers before its markers are written: wait for partition 0's (offset 2)
        wait_end(a, TopicPartition(topic, 0), 3)
        raw.produce("the epoch before the commit, v12", topic, 0, tx(b"old", 2), version=12)
        raw.produce("the bumped epoch, v12", topic, 0, tx(b"c0", 0, e=bumped), version=12)
        raw.end("abort (v5)", pid, bumped, False, version=5)
        # ListTransactions v2's TransactionalIdPattern (RE2, the whole id must match), at the
        # coordinator: this scenario's id by a pattern, a prefix without a wildcard, a bad one
        txid = raw.txid
        for case, pattern in [("pattern", txid[:-3] + ".*"), ("prefix only", txid[:-3]),
                              ("invalid", "(")]:
            more = deadline(10)   # the abort's markers complete after EndTxn's answer
            while True:
                r = raw.coord.call(_TxListReq(state_filters=[], producer_id_filters=[], duration_filter=-1,
                                              transactional_id_pattern=pattern), 2, _TxListResp)
                if not any(x.transaction_state.startswith("Prepare") for x in r.transaction_states) \
                        or not more():
                    break
                time.sleep(0.1)
            t.rec("list-transactions", case=case, version=2, error_code=r.error_code,
                  listed=sorted((x.transactional_id == txid, x.transaction_state)
                                for x in r.transaction_states))
    finally:
        raw.close()
    more = deadline(10)
    tp = TopicPartition(topic, 0)
    while more() and a.list_partition_offsets({tp: OffsetSpec.LATEST})[tp].offset < 5:
        time.sleep(0.1)
    offsets(t, a, topic, 3)
# ---- end of transactions, raw requests (issue 23) ----
