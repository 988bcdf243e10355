"""Scenarios driven by confluent-kafka (Python over librdkafka)."""
import time

from confluent_kafka import (Consumer, ElectionType, TopicCollection, KafkaError, KafkaException, Producer,
                             TopicPartition,
                             TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME, TIMESTAMP_NOT_AVAILABLE)
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   NewPartitions, NewTopic, OffsetSpec, ResourceType)

from common import TS0, bdecode, deadline, scenario

P = "ck"
LABEL = "confluent-kafka"
TS_TYPES = {TIMESTAMP_NOT_AVAILABLE: "none", TIMESTAMP_CREATE_TIME: "create", TIMESTAMP_LOG_APPEND_TIME: "log-append"}


def reg(name):
    return scenario(P, name, LABEL)


def kerr(e):
    """What a client observes of an error: the KafkaError name and code (message dropped by normalize)."""
    if isinstance(e, KafkaException) and e.args and isinstance(e.args[0], KafkaError):
        e = e.args[0]
    if isinstance(e, KafkaError):
        return {"error": e.name(), "code": e.code(), "retriable": e.retriable(), "msg": e.str()}
    return {"error": type(e).__name__, "msg": str(e)}


def admin(bs):
    return AdminClient({"bootstrap.servers": bs, "socket.timeout.ms": 10000})


def producer(bs, **extra):
    conf = {"bootstrap.servers": bs, "linger.ms": 5, "message.timeout.ms": 20000}
    conf.update(extra)
    return Producer(conf)


def consumer(bs, **extra):
    conf = {"bootstrap.servers": bs, "group.id": "diff-ck-assign", "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "allow.auto.create.topics": False,
            "enable.partition.eof": False}
    conf.update(extra)
    return Consumer(conf)


def create(t, bs, topic, partitions=1, config=None):
    a = admin(bs)   # keep the handle alive until the future resolves (else _DESTROY)
    fs = a.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1,
                                   config=config or {})], operation_timeout=15, request_timeout=15)
    fs[topic].result(timeout=20)
    wait_metadata(bs, topic, partitions)


def wait_metadata(bs, topic, partitions, seconds=15):
    a = admin(bs)
    alive = deadline(seconds)
    while alive():
        d = describe(a, topic)
        if not isinstance(d, dict) and len(d.partitions) == partitions and all(
                p.leader is not None and p.leader.id >= 0 for p in d.partitions):
            return
        time.sleep(0.1)
    raise TimeoutError(f"topic {topic} not ready with {partitions} partitions")


def describe(a, topic):
    """AdminClient.describe_topics: a Metadata request that never auto-creates the topic.
    (librdkafka's list_topics(topic=X) does ask for auto-creation; see metadata_auto_create.)"""
    try:
        f = a.describe_topics(TopicCollection([topic]), request_timeout=15)
        return f[topic].result(timeout=20)
    except KafkaException as e:
        return kerr(e)


def exists(a, topic):
    return topic in a.list_topics(timeout=10).topics


def produce_all(p, t, topic, msgs):
    """msgs: list of dicts for Producer.produce; records each delivery report in produce order."""
    reports = [None] * len(msgs)

    def cb(i):
        def f(err, m):
            reports[i] = (err, m)
        return f
    for i, m in enumerate(msgs):
        p.produce(topic, on_delivery=cb(i), **m)
    left = p.flush(30)
    t.check(left == 0, "every produced record got a delivery report", left=left)
    return reports


def rec_reports(t, reports, every=1):
    for i, (err, m) in enumerate(reports):
        if err is not None:
            t.rec("delivery", i=i, **kerr(err))
        elif i % every == 0:
            ts_type, ts = m.timestamp()
            t.rec("delivery", i=i, partition=m.partition(), offset=m.offset(),
                  ts_type=TS_TYPES.get(ts_type), timestamp=ts)


def consume_all(bs, topic, partitions, expect, seconds=20, **extra):
    """Reads `expect` records from offset 0 of every partition; returns them sorted by (partition, offset)."""
    c = consumer(bs, **extra)
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out = []
    errors = []
    alive = deadline(seconds)
    try:
        while alive() and len(out) < expect:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                errors.append(kerr(m.error()))
                if not m.error().retriable():
                    break
                continue
            ts_type, ts = m.timestamp()
            out.append({"partition": m.partition(), "offset": m.offset(), "key": bdecode(m.key()),
                        "value": bdecode(m.value()), "ts_type": TS_TYPES.get(ts_type), "timestamp": ts,
                        "headers": [[k, bdecode(v)] for k, v in (m.headers() or [])]})
    finally:
        c.close()
    out.sort(key=lambda r: (r["partition"], r["offset"]))
    return out, errors


def watermarks(t, bs, topic, partitions):
    c = consumer(bs)
    try:
        for p in range(partitions):
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            t.rec("watermarks", partition=p, low=lo, high=hi)
    finally:
        c.close()


@reg("produce_consume_keyed")
def produce_consume_keyed(t, bs):
    """Keyed records with headers and explicit timestamps to 3 partitions; consumed back exactly."""
    topic = t.topic()
    create(t, bs, topic, partitions=3)
    msgs = []
    for i in range(30):
        msgs.append({"key": f"key-{i % 7}".encode(), "value": f"value-{i}".encode(),
                     "headers": [("h-index", str(i).encode()), ("h-bin", bytes([0, 255, i])), ("h-dup", b"a"), ("h-dup", b"b")],
                     "timestamp": TS0 + i * 1000})
    msgs.append({"key": None, "value": b"no-key", "partition": 0, "timestamp": TS0 + 99_000})
    msgs.append({"key": b"null-value", "value": None, "partition": 1, "timestamp": TS0 + 99_001})
    msgs.append({"key": b"", "value": b"", "partition": 2, "timestamp": TS0 + 99_002})
    p = producer(bs)
    reports = produce_all(p, t, topic, msgs)
    rec_reports(t, reports)
    got, errors = consume_all(bs, topic, 3, len(msgs))
    for e in errors:
        t.rec("consume-error", **e)
    for r in got:
        t.rec("record", **r)
    t.check(len(got) == len(msgs), "every record consumed", got=len(got))
    by_key = {}
    for r in got:
        by_key.setdefault(r["key"], set()).add(r["partition"])
    t.check(all(len(v) == 1 for v in by_key.values()), "one key, one partition")
    watermarks(t, bs, topic, 3)


@reg("auto_create_on_produce")
def auto_create_on_produce(t, bs):
    """Producing to a topic that does not exist creates it (broker default auto-create on)."""
    topic = t.topic()
    p = producer(bs)
    reports = produce_all(p, t, topic, [{"value": b"first", "timestamp": TS0}])
    rec_reports(t, reports)
    describe_topic(t, bs, topic, "auto-created by produce", settle=has_partitions(1))
    got, errors = consume_all(bs, topic, 1, 1)
    for r in got:
        t.rec("record", **r)


@reg("idempotent_acks_all")
def idempotent_acks_all(t, bs):
    """Idempotent producer (InitProducerId + sequences), acks=all, 2000 records; all there once, in order."""
    topic = t.topic()
    create(t, bs, topic, partitions=2)
    p = producer(bs, **{"enable.idempotence": True, "acks": "all", "linger.ms": 20,
                        "max.in.flight.requests.per.connection": 5})
    n = 2000
    msgs = [{"key": f"k{i % 10}".encode(), "value": f"v{i}".encode(), "timestamp": TS0 + i} for i in range(n)]
    reports = produce_all(p, t, topic, msgs)
    errs = [kerr(e) for e, _ in reports if e is not None]
    t.rec("delivery-summary", delivered=n - len(errs), errors=errs[:3])
    got, errors = consume_all(bs, topic, 2, n, seconds=30)
    t.rec("consumed", count=len(got), errors=errors[:3])
    for part in range(2):
        offs = [r["offset"] for r in got if r["partition"] == part]
        t.rec("partition", partition=part, count=len(offs), contiguous_from_0=offs == list(range(len(offs))))
        vals = [int(r["value"][1:]) for r in got if r["partition"] == part]
        t.check(vals == sorted(vals), "per-partition order is produce order", partition=part)
    t.check(sorted(int(r["value"][1:]) for r in got) == list(range(n)), "each record exactly once")
    watermarks(t, bs, topic, 2)


def codec_scenario(codec):
    def fn(t, bs):
        topic = t.topic()
        create(t, bs, topic, partitions=1)
        p = producer(bs, **{"compression.type": codec, "linger.ms": 50, "batch.num.messages": 100})
        n = 500
        msgs = [{"key": f"k{i}".encode(), "value": (f"{codec}-{i}-" + "x" * (i % 50)).encode(),
                 "headers": [("i", str(i).encode())], "timestamp": TS0 + i} for i in range(n)]
        reports = produce_all(p, t, topic, msgs)
        rec_reports(t, reports, every=97)
        got, errors = consume_all(bs, topic, 1, n)
        t.rec("consumed", count=len(got), errors=errors[:3])
        for r in got[::61]:
            t.rec("record", **r)
        t.check([r["value"] for r in got] == [m["value"].decode() for m in msgs], "values round-trip")
        t.check([r["headers"] for r in got] == [[["i", str(i)]] for i in range(n)], "headers round-trip")
        watermarks(t, bs, topic, 1)
    return fn


for _codec in ("gzip", "snappy", "lz4", "zstd"):
    reg(f"codec_{_codec}")(codec_scenario(_codec))


def list_offsets(t, bs, topic, partition, label, spec):
    a = admin(bs)
    try:
        fs = a.list_offsets({TopicPartition(topic, partition): spec}, request_timeout=15)
        r = list(fs.values())[0].result(timeout=20)
        t.rec("list-offsets", spec=label, partition=partition, offset=r.offset, timestamp=r.timestamp,
              leader_epoch=r.leader_epoch is not None)
    except KafkaException as e:
        t.rec("list-offsets", spec=label, partition=partition, **kerr(e))


@reg("list_offsets")
def list_offsets_scenario(t, bs):
    """ListOffsets earliest/latest/max-timestamp/by-time, on an empty partition then on records."""
    topic = t.topic()
    # retention.ms -1: the records carry 2001 timestamps, and Kafka's time-retention pass (30 s
    # after it starts, then every 5 min) deletes a segment whose newest record is older than 7 days,
    # moving the log start past them; a run where that pass fell inside this scenario saw -1 for
    # the later by-time lookups (single node, and kafka3 in CI)
    create(t, bs, topic, partitions=1, config={"retention.ms": "-1"})
    specs = [("earliest", OffsetSpec.earliest()), ("latest", OffsetSpec.latest()),
             ("max_timestamp", OffsetSpec.max_timestamp()), ("time:TS0", OffsetSpec.for_timestamp(TS0))]
    for label, spec in specs:
        list_offsets(t, bs, topic, 0, "empty/" + label, spec)
    # timestamps deliberately not monotonic: 5000, 1000, 3000, 3000, 2000
    stamps = [5000, 1000, 3000, 3000, 2000]
    p = producer(bs)
    rec_reports(t, produce_all(p, t, topic, [{"value": f"r{i}".encode(), "timestamp": TS0 + s}
                                              for i, s in enumerate(stamps)]))
    specs = [("earliest", OffsetSpec.earliest()), ("latest", OffsetSpec.latest()),
             ("max_timestamp", OffsetSpec.max_timestamp())]
    for s in (0, 999, 1000, 1001, 2500, 3000, 4000, 5000, 5001):
        specs.append((f"time:TS0+{s}", OffsetSpec.for_timestamp(TS0 + s)))
    for label, spec in specs:
        list_offsets(t, bs, topic, 0, label, spec)
    # the consumer API for the same thing (offsets_for_times)
    c = consumer(bs)
    try:
        for s in (0, 2500, 6000):
            r = c.offsets_for_times([TopicPartition(topic, 0, TS0 + s)], timeout=10)[0]
            t.rec("offsets-for-times", ts=TS0 + s, offset=r.offset, error=r.error and r.error.name())
    finally:
        c.close()
    # unknown partition and unknown topic
    list_offsets(t, bs, topic, 7, "latest(unknown partition)", OffsetSpec.latest())
    list_offsets(t, bs, t.topic("nope"), 0, "latest(unknown topic)", OffsetSpec.latest())


def describe_configs(t, bs, topic, label, until=None, gone=False):
    """Records the topic's configs. `until(configs)`: poll until it holds (bounded), because a
    Kafka broker acknowledges AlterConfigs before its DescribeConfigs shows the change.
    `gone`: poll until the answer is an error (bounded): after a delete, the cluster broker
    that answers may not have applied it yet (seen on Kafka's 3-node cluster, whose brokers
    answered with the deleted topic's configs right after DescribeTopics said it was gone)."""
    a = admin(bs)
    res = ConfigResource(ResourceType.TOPIC, topic)
    alive = deadline(10)
    while True:
        try:
            cfg = list(a.describe_configs([res], request_timeout=15).values())[0].result(timeout=20)
        except KafkaException as e:
            t.rec("describe-configs", at=label, **kerr(e))
            return
        configs = {k: {"value": v.value, "default": v.is_default, "read_only": v.is_read_only,
                       "sensitive": v.is_sensitive, "source": v.source} for k, v in cfg.items()}
        done = until(configs) if until is not None else not gone
        if done or not alive():
            break
        time.sleep(0.1)
    t.rec("describe-configs", at=label, configs=configs)


def has_partitions(n):
    """settle= of describe_topic: the topic is listed with n partitions, each with a leader."""
    return lambda d: not isinstance(d, dict) and len(d.partitions) == n and all(
        p.leader is not None and p.leader.id >= 0 for p in d.partitions)


def is_gone(d):
    """settle= of describe_topic: the topic is not listed (an error answer)."""
    return isinstance(d, dict)


def describe_topic(t, bs, topic, label, settle=None, seconds=15):
    """Records AdminClient.describe_topics of one topic. settle: on a cluster each broker learns a
    change from the metadata log at its own pace, so right after a create (or delete) a broker
    other than the one that answered may still show the old state for a moment (Kafka and sluice
    alike); then ask again, for at most `seconds`, until settle(answer) holds, and record the last
    answer. On a single broker the first answer already settles."""
    a = admin(bs)
    d = describe(a, topic)
    alive = deadline(seconds)
    while settle is not None and not settle(d) and alive():
        time.sleep(0.2)
        d = describe(a, topic)
    if isinstance(d, dict):
        t.rec("describe-topic", at=label, topic=topic, **d)
        return
    t.rec("describe-topic", at=label, topic=topic, error=None, internal=d.is_internal,
          topic_id=str(d.topic_id) if d.topic_id else None,
          partitions=[{"id": p.id, "leader": p.leader.id if p.leader else None,
                       "replicas": [r.id for r in p.replicas], "isr": [r.id for r in p.isr]}
                      for p in d.partitions])


@reg("admin_topics_configs")
def admin_topics_configs(t, bs):
    """Create with configs, describe, alter (full and incremental), create partitions, delete."""
    a = admin(bs)
    topic = t.topic()
    fs = a.create_topics([NewTopic(topic, 2, 1, config={"retention.ms": "3600000", "cleanup.policy": "delete",
                                                        "max.message.bytes": "200000"})],
                         operation_timeout=15, request_timeout=15)
    fs[topic].result(timeout=20)
    wait_metadata(bs, topic, 2)
    t.rec("created", topic=topic)
    # create again
    try:
        a.create_topics([NewTopic(topic, 2, 1)], request_timeout=15)[topic].result(timeout=20)
        t.rec("create-again", error=None)
    except KafkaException as e:
        t.rec("create-again", **kerr(e))
    # validate only: nothing created
    vtopic = t.topic("validate-only")
    a.create_topics([NewTopic(vtopic, 4, 1)], validate_only=True, request_timeout=15)[vtopic].result(timeout=20)
    t.rec("validate-only", topic=vtopic, exists=exists(a, vtopic))
    describe_topic(t, bs, topic, "created", settle=has_partitions(2))
    describe_configs(t, bs, topic, "created")
    # full AlterConfigs replaces the whole set: the settings not named go back to defaults
    res = ConfigResource(ResourceType.TOPIC, topic, set_config={"retention.bytes": "1048576"})
    list(a.alter_configs([res], request_timeout=15).values())[0].result(timeout=20)
    t.rec("altered", how="alter_configs", set={"retention.bytes": "1048576"})
    describe_configs(t, bs, topic, "after alter_configs",
                     until=lambda c: c["retention.bytes"]["value"] == "1048576")
    # incremental: SET two, DELETE one
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("segment.bytes", "1048576", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("message.timestamp.type", "LogAppendTime", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("retention.bytes", None, incremental_operation=AlterConfigOpType.DELETE)])
    list(a.incremental_alter_configs([res], request_timeout=15).values())[0].result(timeout=20)
    t.rec("altered", how="incremental_alter_configs")
    describe_configs(t, bs, topic, "after incremental_alter_configs",
                     until=lambda c: c["segment.bytes"]["value"] == "1048576")
    # invalid values
    for name, value in (("retention.ms", "not-a-number"), ("cleanup.policy", "sideways"),
                        ("no.such.config", "1")):
        res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
            ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)])
        try:
            list(a.incremental_alter_configs([res], request_timeout=15).values())[0].result(timeout=20)
            t.rec("alter-invalid", name=name, value=value, error=None)
        except KafkaException as e:
            t.rec("alter-invalid", name=name, value=value, **kerr(e))
    # partitions: grow to 4, then try to shrink and to stay the same
    for n in (4, 3, 4):
        try:
            a.create_partitions([NewPartitions(topic, n)], request_timeout=15)[topic].result(timeout=20)
            t.rec("create-partitions", total=n, error=None)
        except KafkaException as e:
            t.rec("create-partitions", total=n, **kerr(e))
    wait_metadata(bs, topic, 4)
    describe_topic(t, bs, topic, "after create_partitions", settle=has_partitions(4))
    # delete, then it is gone
    a.delete_topics([topic], operation_timeout=15, request_timeout=15)[topic].result(timeout=20)
    t.rec("deleted", topic=topic)
    alive = deadline(15)
    while alive() and exists(a, topic):
        time.sleep(0.2)
    describe_topic(t, bs, topic, "after delete", settle=is_gone)
    describe_configs(t, bs, topic, "after delete", gone=True)
    try:
        a.delete_topics([topic], request_timeout=15)[topic].result(timeout=20)
        t.rec("delete-again", error=None)
    except KafkaException as e:
        t.rec("delete-again", **kerr(e))


@reg("delete_records_and_fetch_below_start")
def delete_records(t, bs):
    """DeleteRecords moves the log start; fetching below it is OFFSET_OUT_OF_RANGE (reset=error)."""
    topic = t.topic()
    create(t, bs, topic, partitions=1)
    p = producer(bs)
    rec_reports(t, produce_all(p, t, topic, [{"value": f"r{i}".encode(), "timestamp": TS0 + i} for i in range(10)]))
    a = admin(bs)
    for before in (4, 2, 10, 11):
        try:
            r = a.delete_records([TopicPartition(topic, 0, before)], request_timeout=15)
            res = list(r.values())[0].result(timeout=20)
            t.rec("delete-records", before=before, low_watermark=res.low_watermark, error=None)
        except KafkaException as e:
            t.rec("delete-records", before=before, **kerr(e))
        except Exception as e:  # noqa: BLE001
            t.rec("delete-records", before=before, error=type(e).__name__)
    watermarks(t, bs, topic, 1)
    # delete up to 4 only is done; now log start is 10 (deleted up to 10). Produce 3 more.
    rec_reports(t, produce_all(p, t, topic, [{"value": f"s{i}".encode(), "timestamp": TS0 + 100 + i} for i in range(3)]))
    list_offsets(t, bs, topic, 0, "earliest", OffsetSpec.earliest())
    list_offsets(t, bs, topic, 0, "time:TS0", OffsetSpec.for_timestamp(TS0))
    # fetch from 0 with auto.offset.reset=error: the client reports the out-of-range position
    c = consumer(bs, **{"auto.offset.reset": "error"})
    c.assign([TopicPartition(topic, 0, 0)])
    seen = None
    alive = deadline(15)
    try:
        while alive() and seen is None:
            m = c.poll(0.5)
            if m is None:
                continue
            seen = kerr(m.error()) if m.error() else {"record_offset": m.offset()}
    finally:
        c.close()
    t.rec("fetch-below-start", **(seen or {"error": "nothing within 15s"}))
    # with reset=earliest the consumer starts at the new log start
    got, _ = consume_all(bs, topic, 1, 3)
    t.rec("after-reset", offsets=[r["offset"] for r in got], values=[r["value"] for r in got])
    # delete records on an unknown partition
    try:
        r = a.delete_records([TopicPartition(topic, 5, 1)], request_timeout=15)
        list(r.values())[0].result(timeout=20)
        t.rec("delete-records-unknown-partition", error=None)
    except KafkaException as e:
        t.rec("delete-records-unknown-partition", **kerr(e))


@reg("errors_create_topics")
def errors_create_topics(t, bs):
    """CreateTopics error paths: invalid names, partitions <= 0, replication factor above brokers."""
    a = admin(bs)
    cases = [("bad name!", 1, 1), (".", 1, 1), ("..", 1, 1), ("x" * 250, 1, 1), ("a/b", 1, 1),
             (t.topic("zero-partitions"), 0, 1), (t.topic("minus-two-partitions"), -2, 1),
             (t.topic("rf-3"), 1, 3), (t.topic("rf-0"), 1, 0),
             (t.topic("defaults"), -1, -1)]
    for name, parts, rf in cases:
        try:
            a.create_topics([NewTopic(name, num_partitions=parts, replication_factor=rf)],
                            request_timeout=15)[name].result(timeout=20)
            t.rec("create", name=name[:60], partitions=parts, rf=rf, error=None)
        except KafkaException as e:
            t.rec("create", name=name[:60], partitions=parts, rf=rf, **kerr(e))
        except ValueError as e:   # librdkafka validates some arguments itself
            t.rec("create", name=name[:60], partitions=parts, rf=rf, error="client-side ValueError", msg=str(e))
    wait_metadata(bs, t.topic("defaults"), 1)
    describe_topic(t, bs, t.topic("defaults"), "created with -1/-1 (broker defaults)", settle=has_partitions(1))
    # a config the broker rejects at creation
    name = t.topic("bad-config")
    try:
        a.create_topics([NewTopic(name, 1, 1, config={"cleanup.policy": "sideways"})],
                        request_timeout=15)[name].result(timeout=20)
        t.rec("create", name=name, config="cleanup.policy=sideways", error=None)
    except KafkaException as e:
        t.rec("create", name=name, config="cleanup.policy=sideways", **kerr(e))


@reg("errors_unknown_topic")
def errors_unknown_topic(t, bs):
    """A topic that does not exist, asked for without auto-create: Metadata, consumer, delete."""
    topic = t.topic()
    a = admin(bs)
    describe_topic(t, bs, topic, "metadata for unknown topic")  # the admin asks without auto-create
    t.rec("exists-after-metadata", exists=exists(a, topic))
    c = consumer(bs)   # allow.auto.create.topics=false
    c.assign([TopicPartition(topic, 0, 0)])
    seen = None
    alive = deadline(8)
    try:
        while alive() and seen is None:
            m = c.poll(0.5)
            if m is not None:
                seen = kerr(m.error()) if m.error() else {"record_offset": m.offset()}
    finally:
        c.close()
    t.rec("consume-unknown", **(seen or {"error": None}))
    t.rec("exists-after-consume", exists=exists(a, topic))
    describe_configs(t, bs, topic, "unknown topic")
    try:
        a.delete_topics([topic], request_timeout=15)[topic].result(timeout=20)
        t.rec("delete-unknown", error=None)
    except KafkaException as e:
        t.rec("delete-unknown", **kerr(e))


@reg("errors_record_too_large")
def errors_record_too_large(t, bs):
    """A record larger than the topic's max.message.bytes is refused with MESSAGE_TOO_LARGE."""
    topic = t.topic()
    create(t, bs, topic, partitions=1, config={"max.message.bytes": "1024"})
    p = producer(bs, **{"enable.idempotence": False, "acks": "all", "retries": 0})
    for i, v in enumerate((b"small", b"y" * 4000, b"small-again")):   # one request each
        rec_reports(t, produce_all(p, t, topic, [{"value": v, "timestamp": TS0 + i}]))
    p2 = producer(bs, **{"enable.idempotence": True, "acks": "all"})
    rec_reports(t, produce_all(p2, t, topic, [{"value": b"z" * 4000, "timestamp": TS0 + 3}]))
    watermarks(t, bs, topic, 1)
    got, _ = consume_all(bs, topic, 1, 10, seconds=5)
    t.rec("consumed", values=[r["value"][:20] for r in got])


@reg("metadata_auto_create")
def metadata_auto_create(t, bs):
    """librdkafka's list_topics(topic=X) sends Metadata allowing auto-creation: the topic appears
    with the broker's default partition count (num.partitions=1)."""
    topic = t.topic()
    a = admin(bs)
    a.list_topics(topic=topic, timeout=10)   # its first answer may or may not list the topic yet: not recorded
    wait_metadata(bs, topic, 1)
    describe_topic(t, bs, topic, "after auto-create", settle=has_partitions(1))


@reg("group_subscribe_commit")
def group_subscribe_commit(t, bs):
    """Classic consumer group: subscribe, consume, commit, committed(); admin list/describe/offsets/delete."""
    from confluent_kafka import ConsumerGroupTopicPartitions
    topic = t.topic()
    gid = t.topic("group")
    create(t, bs, topic, partitions=2)
    p = producer(bs)
    produce_all(p, t, topic, [{"value": f"g{i}".encode(), "partition": i % 2, "timestamp": TS0 + i} for i in range(10)])
    c = Consumer({"bootstrap.servers": bs, "group.id": gid, "enable.auto.commit": False,
                  "auto.offset.reset": "earliest", "session.timeout.ms": 10000})
    n = 0
    try:
        c.subscribe([topic])
        alive = deadline(25)
        while alive() and n < 10:
            m = c.poll(0.5)
            if m is not None and not m.error():
                n += 1
        t.rec("consumed", count=n, assignment=sorted(tp.partition for tp in c.assignment()))
        c.commit(offsets=[TopicPartition(topic, 0, 3), TopicPartition(topic, 1, 5)], asynchronous=False)
        got = c.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=10)
        t.rec("committed", offsets={tp.partition: tp.offset for tp in got})
        a = admin(bs)
        d = a.describe_consumer_groups([gid], request_timeout=15)[gid].result(timeout=20)
        t.rec("describe-group", state=str(d.state), members=len(d.members), simple=d.is_simple_consumer_group,
              assignor=d.partition_assignor)
    finally:
        c.close()
    a = admin(bs)
    r = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(gid)], request_timeout=15)[gid].result(timeout=20)
    t.rec("group-offsets", offsets=sorted((tp.partition, tp.offset) for tp in r.topic_partitions))
    a.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(gid, [TopicPartition(topic, 0, 1)])],
                                   request_timeout=15)[gid].result(timeout=20)
    r = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(gid)], request_timeout=15)[gid].result(timeout=20)
    t.rec("group-offsets-after-alter", offsets=sorted((tp.partition, tp.offset) for tp in r.topic_partitions))
    listed = a.list_consumer_groups(request_timeout=15).result(timeout=20)
    t.rec("list-groups", mine=[str(g.state) for g in listed.valid if g.group_id == gid])
    a.delete_consumer_groups([gid], request_timeout=15)[gid].result(timeout=20)
    try:
        d = a.describe_consumer_groups([gid], request_timeout=15)[gid].result(timeout=20)
        t.rec("describe-deleted-group", state=str(d.state), members=len(d.members))
    except KafkaException as e:
        t.rec("describe-deleted-group", **kerr(e))


@reg("broker_configs_alter")
def broker_configs_alter(t, bs):
    """IncrementalAlterConfigs on this broker's resource: validate-only sets of dynamic keys
    (nothing stored, so scenarios running beside this one are not disturbed), read-only keys,
    invalid values, and an unknown broker id. Values are compared through their error names
    and texts; tests/clients/test_broker_configs.py covers real changes."""
    a = admin(bs)
    me = str(a.describe_cluster(request_timeout=15).result(timeout=20).nodes[0].id)

    def try_alter(label, name, key, value, op=AlterConfigOpType.SET, validate_only=True):
        res = ConfigResource(ResourceType.BROKER, name,
                             incremental_configs=[ConfigEntry(key, value, incremental_operation=op)])
        try:
            a.incremental_alter_configs([res], validate_only=validate_only,
                                        request_timeout=15)[res].result(timeout=20)
            t.rec("alter-broker", at=label, key=key, error=None)
        except KafkaException as e:
            t.rec("alter-broker", at=label, key=key, **kerr(e))

    try_alter("dynamic key, validate only", me, "log.retention.bytes", "1073741824")
    try_alter("list append, validate only", me, "log.cleanup.policy", "compact", AlterConfigOpType.APPEND)
    try_alter("read-only key", me, "num.partitions", "3")
    try_alter("read-only hours key", me, "log.retention.hours", "5")
    try_alter("value below minimum", me, "log.segment.bytes", "100")
    try_alter("not a number", me, "log.retention.ms", "abc")
    res = ConfigResource(ResourceType.BROKER, me)
    cfg = list(a.describe_configs([res], request_timeout=15).values())[0].result(timeout=20)
    t.rec("describe-broker", values={k: cfg[k].value for k in ("log.retention.bytes", "log.segment.bytes")
                                     if k in cfg},
          read_only={k: cfg[k].is_read_only for k in ("num.partitions", "log.retention.bytes") if k in cfg})


# ---- Issue 18 item 3: per-record produce errors (ProduceResponse v8+ record_errors). ----------
# Kafka rejects a whole batch when some of its records are invalid and names those records in
# record_errors. librdkafka: when two or more are named, INVALID_RECORD for them and
# _INVALID_DIFFERENT_RECORD for the others (which a producer may resend); when one is named, every
# message of the batch gets the partition's error code (rd_kafka_dr_msgq0 forces it). A broker
# without record_errors makes every message fail with the partition's error.

_RE_FUTURE_TS = 4_000_000_000_000   # 2096: beyond any message.timestamp.after.max.ms used here


def _re_producer(bs, topic, **extra):
    """A producer whose each group of produce() calls leaves as one batch: a long linger.ms, and
    the topic's partitions known before the first produce() (else the first message can be sent
    on its own when the metadata arrives)."""
    conf = {"linger.ms": 500, "batch.num.messages": 1000, "enable.idempotence": False}
    conf.update(extra)
    p = producer(bs, **conf)
    p.list_topics(topic=topic, timeout=10)
    return p


def _re_group(t, p, topic, label, msgs):
    """Produces msgs (dicts for Producer.produce, partition 0) as one batch; records each delivery
    report; returns the reports."""
    reports = produce_all(p, t, topic, [dict(m, partition=0) for m in msgs])
    for i, (err, m) in enumerate(reports):
        key = bdecode(msgs[i].get("key"))
        if err is not None:
            t.rec("delivery", group=label, i=i, key=key, **kerr(err))
        else:
            t.rec("delivery", group=label, i=i, key=key, partition=m.partition(), offset=m.offset())
    return reports


def _re_different(msgs, reports):
    return [m for m, (err, _) in zip(msgs, reports)
            if err is not None and err.code() == KafkaError._INVALID_DIFFERENT_RECORD]


def _re_read(t, bs, topic, expect, label):
    got, errors = consume_all(bs, topic, 1, expect, seconds=10 if expect else 3)
    t.rec("readable", at=label, errors=errors[:3],
          records=[{"offset": r["offset"], "key": r["key"], "value": r["value"], "ts_type": r["ts_type"],
                    "timestamp": r["timestamp"]} for r in got])


@reg("produce_record_errors_keyless")
def produce_record_errors_keyless(t, bs):
    """Compacted topic: one batch mixing keyed and keyless records is refused whole; the keyless
    ones fail with INVALID_RECORD, the others with _INVALID_DIFFERENT_RECORD and can be resent.
    Then the same with an idempotent producer (the refused batch must not advance its sequence)."""
    topic = t.topic()
    create(t, bs, topic, partitions=1, config={"cleanup.policy": "compact"})
    p = _re_producer(bs, topic)
    groups = [
        ("two-keyless", [{"key": b"k0", "value": b"a0"}, {"key": None, "value": b"a1"},
                         {"key": b"", "value": b"a2-empty-key"}, {"key": None, "value": b"a3"},
                         {"key": b"k4", "value": b"a4"}, {"key": b"k5", "value": b"a5"}]),
        # one named record: librdkafka gives every message of the batch the partition's error
        ("one-keyless", [{"key": b"k0", "value": b"b0"}, {"key": None, "value": b"b1"},
                         {"key": b"k2", "value": b"b2"}]),
        ("keyless-tombstone", [{"key": b"k9", "value": b"c0"}, {"key": None, "value": None}]),
        ("all-keyless", [{"key": None, "value": b"d0"}, {"key": None, "value": b"d1"}]),
    ]
    again = []
    for label, msgs in groups:
        reports = _re_group(t, p, topic, label, msgs)
        t.check(all(err is not None for err, _ in reports), "the whole batch is refused", group=label)
        again += _re_different(msgs, reports)
    watermarks(t, bs, topic, 1)
    _re_read(t, bs, topic, 0, "after refused batches")
    reports = _re_group(t, p, topic, "resend-different", again)
    t.check(all(err is None for err, _ in reports), "the resent records are accepted")
    _re_read(t, bs, topic, len(again), "after resend")
    # idempotent producer: a refused batch, then its good records resent, then a fresh batch
    q = _re_producer(bs, topic, **{"enable.idempotence": True, "acks": "all"})
    msgs = [{"key": b"i0", "value": b"e0"}, {"key": None, "value": b"e1"}, {"key": b"i2", "value": b"e2"},
            {"key": None, "value": b"e3"}, {"key": b"i4", "value": b"e4"}]
    reports = _re_group(t, q, topic, "idempotent-two-keyless", msgs)
    resend = _re_different(msgs, reports)
    _re_group(t, q, topic, "idempotent-resend-different", resend)
    _re_group(t, q, topic, "idempotent-next", [{"key": b"i5", "value": b"e5"}, {"key": b"i6", "value": b"e6"}])
    watermarks(t, bs, topic, 1)
    _re_read(t, bs, topic, len(again) + len(resend) + 2, "at end")


@reg("produce_record_errors_timestamp")
def produce_record_errors_timestamp(t, bs):
    """message.timestamp.before.max.ms / after.max.ms (KIP-937): a batch with records outside
    [now - before, now + after] is refused whole. One bad record: it fails with the partition's
    INVALID_TIMESTAMP; several: INVALID_RECORD each; the rest _INVALID_DIFFERENT_RECORD. On a
    compacted topic with limits, the key check comes first for a record failing both."""
    topic = t.topic()
    limits = {"message.timestamp.before.max.ms": "600000", "message.timestamp.after.max.ms": "600000"}
    create(t, bs, topic, partitions=1, config=limits)
    p = _re_producer(bs, topic)
    now = {"key": b"k", "value": b"now"}    # no timestamp: the producer stamps the current time
    groups = [
        ("old-and-future", [dict(now, value=b"a0"), {"key": b"k", "value": b"a1-old", "timestamp": TS0},
                            {"key": b"k", "value": b"a2-future", "timestamp": _RE_FUTURE_TS},
                            dict(now, value=b"a3"), dict(now, value=b"a4")]),
        ("one-future", [dict(now, value=b"b0"), {"key": b"k", "value": b"b1-future", "timestamp": _RE_FUTURE_TS},
                        dict(now, value=b"b2")]),
        ("one-old-alone", [{"key": b"k", "value": b"c0-old", "timestamp": TS0}]),
    ]
    again = []
    for label, msgs in groups:
        reports = _re_group(t, p, topic, label, msgs)
        t.check(all(err is not None for err, _ in reports), "the whole batch is refused", group=label)
        again += _re_different(msgs, reports)
    watermarks(t, bs, topic, 1)
    reports = _re_group(t, p, topic, "resend-different", again)
    t.check(all(err is None for err, _ in reports), "the resent records are accepted")
    _re_read(t, bs, topic, len(again), "after resend")
    # compacted topic with the same limits: keyless and out-of-range records in one batch
    ctopic = t.topic("compacted")
    create(t, bs, ctopic, partitions=1, config=dict(limits, **{"cleanup.policy": "compact"}))
    p = _re_producer(bs, ctopic)
    groups = [
        ("keyless-and-old", [dict(now, value=b"d0"), {"key": None, "value": b"d1-keyless"},
                             {"key": b"k", "value": b"d2-old", "timestamp": TS0}, dict(now, value=b"d3")]),
        ("keyless-and-old-same-record", [dict(now, value=b"e0"),
                                         {"key": None, "value": b"e1-keyless-old", "timestamp": TS0}]),
        ("one-old-keyed", [dict(now, value=b"f0"), {"key": b"k", "value": b"f1-old", "timestamp": TS0}]),
    ]
    for label, msgs in groups:
        reports = _re_group(t, p, ctopic, label, msgs)
        t.check(all(err is not None for err, _ in reports), "the whole batch is refused", group=label)
    watermarks(t, bs, ctopic, 1)
# ---- end of issue 18 item 3 (ck) ----


# ---- Issue 18 item 5: admin answers as confluent-kafka sees them (authorized operations, -------
# group configs, min.insync.replicas' source). Facts: tests/diff/KAFKA-FACTS.md / the helper's
# notes (admin.md). Kafka 4.4 with no authorizer answers every operation the resource type
# supports: cluster 8096, topic 3576, group 3400.

def _acl_ops(ops):
    """AclOperation list as the client returns it: sorted names and the bitfield they came from."""
    if ops is None:
        return {"ops": None}
    return {"ops": sorted(o.name for o in ops), "bits": sum(1 << int(o.value) for o in ops)}


def _commit_group(bs, gid, topic):
    """A classic group that exists only through a committed offset (state Empty)."""
    c = Consumer({"bootstrap.servers": bs, "group.id": gid, "enable.auto.commit": False})
    try:
        c.commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)
    finally:
        c.close()


@reg("describe_cluster_authorized_ops")
def describe_cluster_authorized_ops(t, bs):
    """describe_cluster / describe_topics / describe_consumer_groups with and without
    include_authorized_operations (DescribeCluster, Metadata v8+, DescribeGroups v3+)."""
    a = admin(bs)
    for asked in (True, False):
        c = a.describe_cluster(include_authorized_operations=asked, request_timeout=15).result(timeout=20)
        t.rec("describe-cluster", asked=asked, nodes=len(c.nodes), **_acl_ops(c.authorized_operations))
    topic = t.topic()
    create(t, bs, topic, partitions=1)
    for name, asked in ((topic, True), (topic, False), (t.topic("unknown"), True)):
        # On a cluster the broker asked may not have learned the new topic yet (Kafka's 3 nodes
        # answered UNKNOWN_TOPIC_OR_PART once in CI): retry that retriable error, bounded, for
        # the topic that exists; the unknown one is asked once.
        alive = deadline(10 if name == topic else 0)
        while True:
            try:
                d = a.describe_topics(TopicCollection([name]), include_authorized_operations=asked,
                                      request_timeout=15)[name].result(timeout=20)
                t.rec("describe-topic", topic=name, asked=asked, error=None,
                      **_acl_ops(d.authorized_operations))
            except KafkaException as e:
                if e.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART and alive():
                    time.sleep(0.1)
                    continue
                t.rec("describe-topic", topic=name, asked=asked, **kerr(e))
            break
    gid = t.topic("group")
    _commit_group(bs, gid, topic)
    for name, asked in ((gid, True), (gid, False), (t.topic("no-group"), True)):
        try:
            g = a.describe_consumer_groups([name], include_authorized_operations=asked,
                                           request_timeout=15)[name].result(timeout=20)
            t.rec("describe-group", group=name, asked=asked, error=None, state=str(g.state),
                  **_acl_ops(g.authorized_operations))
        except KafkaException as e:
            t.rec("describe-group", group=name, asked=asked, **kerr(e))


def _describe_group_configs(a, gid):
    res = ConfigResource(ResourceType.GROUP, gid)
    cfg = list(a.describe_configs([res], request_timeout=15).values())[0].result(timeout=20)
    return {k: {"value": v.value, "source": v.source, "default": v.is_default, "read_only": v.is_read_only,
                "sensitive": v.is_sensitive,
                "synonyms": [[s.name, s.value, s.source] for s in (v.synonyms or {}).values()]}
            for k, v in sorted(cfg.items())}


def _rec_group_configs(t, a, gid, label, until=None):
    """Records a group's configs (as "group_configs": normalize.py keeps this whole map, unlike a
    topic's "configs"). `until(configs)`: poll (bounded), because Kafka acknowledges an
    (Incremental)AlterConfigs before its DescribeConfigs shows the change."""
    alive = deadline(10)
    while True:
        try:
            configs = _describe_group_configs(a, gid)
        except KafkaException as e:
            t.rec("describe-group-configs", at=label, **kerr(e))
            return None
        if until is None or until(configs) or not alive():
            break
        time.sleep(0.1)
    t.rec("describe-group-configs", at=label, group_configs=configs)
    return configs


def _alter_group(t, a, gid, label, entries, validate_only=False):
    """IncrementalAlterConfigs on a GROUP resource; entries: (name, value, op)."""
    res = ConfigResource(ResourceType.GROUP, gid, incremental_configs=[
        ConfigEntry(k, v, incremental_operation=op) for k, v, op in entries])
    try:
        list(a.incremental_alter_configs([res], validate_only=validate_only,
                                         request_timeout=15).values())[0].result(timeout=20)
        t.rec("alter-group-configs", at=label, error=None)
    except KafkaException as e:
        t.rec("alter-group-configs", at=label, **kerr(e))


@reg("group_configs")
def group_configs(t, bs):
    """DescribeConfigs / IncrementalAlterConfigs / AlterConfigs on GROUP resources (type 32):
    defaults of an existing and of a never-seen group, SET two, invalid values, DELETE, and the
    legacy AlterConfigs (replaces the group's whole set)."""
    a = admin(bs)
    topic = t.topic()
    create(t, bs, topic, partitions=1)
    gid = t.topic("group")
    _commit_group(bs, gid, topic)
    _rec_group_configs(t, a, gid, "defaults, existing group")
    _rec_group_configs(t, a, t.topic("never-seen"), "defaults, group that does not exist")
    SET, DELETE, APPEND = AlterConfigOpType.SET, AlterConfigOpType.DELETE, AlterConfigOpType.APPEND
    _alter_group(t, a, gid, "validate only", [("consumer.session.timeout.ms", "60000", SET)], validate_only=True)
    _alter_group(t, a, gid, "set session and heartbeat",
                 [("consumer.session.timeout.ms", "50000", SET), ("consumer.heartbeat.interval.ms", "6000", SET)])
    _rec_group_configs(t, a, gid, "after set", until=lambda c: c["consumer.session.timeout.ms"]["value"] == "50000"
                       and c["consumer.heartbeat.interval.ms"]["value"] == "6000")
    for label, entries in (
            ("session below group.consumer.min.session.timeout.ms", [("consumer.session.timeout.ms", "1000", SET)]),
            ("session above group.consumer.max.session.timeout.ms", [("consumer.session.timeout.ms", "70000", SET)]),
            ("heartbeat below group.consumer.min.heartbeat.interval.ms", [("consumer.heartbeat.interval.ms", "1000", SET)]),
            ("session not a number", [("consumer.session.timeout.ms", "abc", SET)]),
            ("session negative", [("consumer.session.timeout.ms", "-1", SET)]),
            ("unknown name", [("no.such.group.config", "1", SET)]),
            ("append to an int", [("consumer.session.timeout.ms", "1", APPEND)]),
            ("share.auto.offset.reset invalid", [("share.auto.offset.reset", "sideways", SET)])):
        _alter_group(t, a, gid, label, entries)
    _alter_group(t, a, gid, "delete session", [("consumer.session.timeout.ms", None, DELETE)])
    _rec_group_configs(t, a, gid, "after delete", until=lambda c: c["consumer.session.timeout.ms"]["source"] == 5)
    # a group that does not exist takes configs too (they live in the metadata log, not the group)
    other = t.topic("config-only")
    _alter_group(t, a, other, "set on a group that does not exist", [("consumer.session.timeout.ms", "55000", SET)])
    _rec_group_configs(t, a, other, "config-only group",
                       until=lambda c: c["consumer.session.timeout.ms"]["value"] == "55000")
    # legacy AlterConfigs: the named set replaces the group's overrides (heartbeat goes back to default)
    res = ConfigResource(ResourceType.GROUP, gid, set_config={"consumer.session.timeout.ms": "46000"})
    try:
        list(a.alter_configs([res], request_timeout=15).values())[0].result(timeout=20)
        t.rec("alter-configs-legacy", error=None)
    except KafkaException as e:
        t.rec("alter-configs-legacy", **kerr(e))
    _rec_group_configs(t, a, gid, "after legacy alter_configs",
                       until=lambda c: c["consumer.session.timeout.ms"]["value"] == "46000"
                       and c["consumer.heartbeat.interval.ms"]["source"] == 5)


def _describe_configs_known(a, res, seconds=10):
    """DescribeConfigs of one resource, asked again (bounded) while the answer is
    UNKNOWN_TOPIC_OR_PART: on a cluster the broker asked may not have applied a topic created a
    moment ago yet (Kafka's 3 nodes failed this scenario once in CI that way)."""
    alive = deadline(seconds)
    while True:
        try:
            return list(a.describe_configs([res], request_timeout=15).values())[0].result(timeout=20)
        except KafkaException as e:
            if e.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART or not alive():
                raise
            time.sleep(0.1)


@reg("topic_min_insync_replicas_source")
def topic_min_insync_replicas_source(t, bs):
    """min.insync.replicas as DescribeConfigs reports it: Kafka 4.4's controller writes a
    cluster-level (broker resource "") min.insync.replicas=1 at bootstrap (ELR is on), so a
    topic without an override reports DYNAMIC_DEFAULT_BROKER_CONFIG (3), not DEFAULT_CONFIG."""
    a = admin(bs)
    topic = t.topic()
    create(t, bs, topic, partitions=1)
    with_override = t.topic("override")
    create(t, bs, with_override, partitions=1, config={"min.insync.replicas": "1"})
    me = str(a.describe_cluster(request_timeout=15).result(timeout=20).nodes[0].id)
    for label, res in (("topic", ConfigResource(ResourceType.TOPIC, topic)),
                       ("topic with override", ConfigResource(ResourceType.TOPIC, with_override)),
                       ("this broker", ConfigResource(ResourceType.BROKER, me))):
        cfg = _describe_configs_known(a, res)
        v = cfg.get("min.insync.replicas")
        if v is None:
            t.rec("min-insync-replicas", at=label, present=False)
            continue
        # confluent-kafka keys synonyms by name, so of Kafka's two min.insync.replicas synonyms
        # (DYNAMIC_DEFAULT_BROKER_CONFIG, DEFAULT_CONFIG) only the last is visible here
        t.rec("min-insync-replicas", at=label, present=True, value=v.value, source=v.source,
              default=v.is_default, read_only=v.is_read_only,
              synonyms=[[s.name, s.value, s.source] for s in (v.synonyms or {}).values()])
    # with ELR on, Kafka refuses a broker-level (per node) min.insync.replicas: INVALID_CONFIG
    # (validate only, so a broker that accepts it changes nothing for the scenarios beside this one)
    for op, value in ((AlterConfigOpType.SET, "2"), (AlterConfigOpType.DELETE, None)):
        res = ConfigResource(ResourceType.BROKER, me, incremental_configs=[
            ConfigEntry("min.insync.replicas", value, incremental_operation=op)])
        try:
            a.incremental_alter_configs([res], validate_only=True, request_timeout=15)[res].result(timeout=20)
            t.rec("alter-broker-min-insync-replicas", op=str(op), error=None)
        except KafkaException as e:
            t.rec("alter-broker-min-insync-replicas", op=str(op), **kerr(e))
# ---- end of issue 18 item 5 (ck) ----


@reg("elect_leaders")
def elect_leaders(t, bs):
    """ElectLeaders (kafka-leader-election) for partitions whose leader is already the preferred
    replica (ELECTION_NOT_NEEDED), an unknown topic, an unknown partition and every partition
    (null: only what was elected is listed), preferred and unclean."""
    a = admin(bs)
    topic = t.topic()
    create(t, bs, topic, partitions=2)
    asks = (("known", [TopicPartition(topic, 0), TopicPartition(topic, 1)]),
            ("unknown-topic", [TopicPartition(t.topic("nope"), 0)]),
            ("unknown-partition", [TopicPartition(topic, 7)]),
            ("all", None))
    for kind in (ElectionType.PREFERRED, ElectionType.UNCLEAN):
        for label, partitions in asks:
            try:
                r = a.elect_leaders(kind, partitions).result(timeout=20)
            except KafkaException as e:
                t.rec("elect", type=kind.name, ask=label, **kerr(e))
                continue
            # "all" on a shared cluster lists other scenarios' partitions elected at that moment
            # (none, when every leader is preferred already): keep only this scenario's topics.
            results = {f"{tp.topic}-{tp.partition}": (kerr(err) if err else None)
                       for tp, err in sorted(r.items(), key=lambda kv: (kv[0].topic, kv[0].partition))
                       if tp.topic.startswith(topic)}
            t.rec("elect", type=kind.name, ask=label, results=results)
