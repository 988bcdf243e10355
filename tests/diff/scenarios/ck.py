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
        # retention.ms=-1: Kafka's first retention pass would delete these 2001-timestamped
        # records mid-scenario; idempotence: a batch retried after a slow answer (Kafka's
        # 3-node cluster under CI load) must not be written twice (seen once: offsets from 200).
        create(t, bs, topic, partitions=1, config={"retention.ms": "-1"})
        p = producer(bs, **{"compression.type": codec, "linger.ms": 50, "batch.num.messages": 100,
                            "enable.idempotence": True})
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
        # Generous: a 3-node Kafka reference once delivered only one partition within 25 s
        # (a rebalance after the first assignment); the loop ends as soon as all 10 came.
        alive = deadline(60)
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


# ---- transactions (issue 23) ----
# librdkafka's transactional producer against the coordinator: commit/abort visibility (the
# offsets the control markers take), zombie fencing, send_offsets_to_transaction, the broker's
# abort of a timed-out transaction, the last stable offset, misuse. Commit and abort are answered
# before the markers are in the data partitions, so whatever depends on them (LSO, high
# watermark, a transaction's committed offsets) is read after a bounded wait, then recorded.
# (confluent-kafka has no DescribeTransactions/ListTransactions; java.txn_describe_list has them.)

from confluent_kafka import ConsumerGroupTopicPartitions, IsolationLevel  # noqa: E402

TXN_KEEP = {"retention.ms": "-1"}   # records carry 2001 timestamps (TS0): no time retention


def txerr(e):
    """kerr() and the flags librdkafka sets on a transactional error."""
    if isinstance(e, KafkaException) and e.args and isinstance(e.args[0], KafkaError):
        ke = e.args[0]
        return dict(kerr(ke), fatal=ke.fatal(), txn_requires_abort=ke.txn_requires_abort())
    if isinstance(e, KafkaError):
        return dict(kerr(e), fatal=e.fatal(), txn_requires_abort=e.txn_requires_abort())
    return kerr(e)


def tx_producer(bs, txid, **extra):
    return producer(bs, **{"transactional.id": txid, **extra})


def tx_step(t, what, fn):
    """Runs one client call and records its outcome (error None, or the error and its flags)."""
    try:
        fn()
        t.rec("step", what=what, error=None)
        return True
    except Exception as e:  # noqa: BLE001  (what the client raised is the observation)
        t.rec("step", what=what, **txerr(e))
        return False


def tx_send(t, p, sent, topic, partition, ts, value):
    """Produces one record; its delivery is recorded by tx_delivered (a produce() that raises is
    recorded at once)."""
    slot = {"value": value}

    def cb(err, m):
        slot["report"] = (err, m)
    try:
        p.produce(topic, value=value.encode(), partition=partition, timestamp=TS0 + ts, on_delivery=cb)
        sent.append(slot)
    except Exception as e:  # noqa: BLE001
        t.rec("produce", value=value, **txerr(e))


def tx_delivered(t, p, sent):
    try:
        left = p.flush(30)
        if left:
            t.rec("flush", left=left)
    except KafkaException as e:   # flush raises a fatal error (a fenced producer)
        t.rec("flush", **txerr(e))
    for s in sent:
        err, m = s.get("report", (None, None))
        if err is not None:
            t.rec("delivery", value=s["value"], **txerr(err))
        elif m is None:
            t.rec("delivery", value=s["value"], report=None)
        else:
            t.rec("delivery", value=s["value"], topic=m.topic(), partition=m.partition(), offset=m.offset())
    sent.clear()


def tx_offsets(a, topic, partition):
    """earliest, latest (high watermark), latest with read_committed (the last stable offset)."""
    tp = TopicPartition(topic, partition)

    def one(spec, iso):
        fs = a.list_offsets({tp: spec}, isolation_level=iso, request_timeout=15)
        return list(fs.values())[0].result(timeout=20).offset
    return (one(OffsetSpec.earliest(), IsolationLevel.READ_UNCOMMITTED),
            one(OffsetSpec.latest(), IsolationLevel.READ_UNCOMMITTED),
            one(OffsetSpec.latest(), IsolationLevel.READ_COMMITTED))


def tx_rec_offsets(t, at, topic, partition, o):
    t.rec("offsets", at=at, topic=topic, partition=partition, earliest=o[0], latest=o[1], latest_read_committed=o[2])


def tx_offsets_now(t, a, at, tps):
    for topic, partition in tps:
        tx_rec_offsets(t, at, topic, partition, tx_offsets(a, topic, partition))


def tx_settled(t, a, at, tps, seconds=15, min_end=()):
    """Waits (bounded) until each partition's LSO equals its high watermark and that is at least
    min_end[i] (the markers of an ended transaction are written after the client's answer), then
    records them (what the last poll saw, if that never happens)."""
    alive = deadline(seconds)
    for i, (topic, partition) in enumerate(tps):
        want = min_end[i] if i < len(min_end) else 0
        o = tx_offsets(a, topic, partition)
        while (o[2] != o[1] or o[1] < want) and alive():
            time.sleep(0.1)
            o = tx_offsets(a, topic, partition)
        tx_rec_offsets(t, at, topic, partition, o)


class TxReader:
    """A consumer (assign, from offset 0, partition EOF events on) with an isolation level. drain()
    reads until every partition is at its end for that isolation level (ListOffsets latest: the
    LSO for read_committed), by position or by an EOF event at or past it (librdkafka's position
    is the last record returned + 1, so markers and aborted records at the end do not move it)."""

    def __init__(self, bs, isolation, tps):
        self.bs, self.isolation, self.tps = bs, isolation, tps
        self.c = consumer(bs, **{"isolation.level": isolation, "enable.partition.eof": True})
        self.c.assign([TopicPartition(tp, p, 0) for tp, p in tps])
        self.eof = {}

    def drain(self, t, a, label, seconds=20):
        iso = IsolationLevel.READ_COMMITTED if self.isolation == "read_committed" else IsolationLevel.READ_UNCOMMITTED
        ends = {}
        for topic, p in self.tps:
            tp = TopicPartition(topic, p)
            ends[(topic, p)] = list(a.list_offsets({tp: OffsetSpec.latest()}, isolation_level=iso,
                                                   request_timeout=15).values())[0].result(timeout=20).offset
        got, errors = [], []
        pos = {}
        alive = deadline(seconds)

        def done():
            for k in self.tps:
                pos[k] = self.c.position([TopicPartition(*k)])[0].offset
                if max(pos[k], self.eof.get(k, -1)) < ends[k]:
                    return False
            return True
        while not done() and alive():
            m = self.c.poll(0.2)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    self.eof[(m.topic(), m.partition())] = m.offset()
                else:
                    errors.append(kerr(m.error()))
                continue
            got.append({"topic": m.topic(), "partition": m.partition(), "offset": m.offset(), "value": bdecode(m.value())})
        for e in errors:
            t.rec("consume-error", reader=label, **e)
        for r in sorted(got, key=lambda r: (r["topic"], r["partition"], r["offset"])):
            t.rec("read", reader=label, **r)
        t.rec("read-end", reader=label, count=len(got),
              positions=[{"topic": k[0], "partition": k[1], "end_offset": ends[k], "position": pos.get(k)}
                         for k in self.tps])   # (whether an EOF event was polled yet is timing)

    def watermarks(self, t, label):
        for topic, p in self.tps:
            lo, hi = self.c.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)
            t.rec("consumer-watermarks", reader=label, topic=topic, partition=p, low=lo, high=hi)

    def close(self):
        self.c.close()


def tx_read(t, bs, a, isolation, tps):
    r = TxReader(bs, isolation, tps)
    try:
        r.drain(t, a, isolation)
        r.watermarks(t, isolation)
    finally:
        r.close()


@reg("txn_commit_abort_visibility")
def txn_commit_abort_visibility(t, bs):
    """Three transactions over 2 partitions of one topic and 1 of another: commit, abort, commit.
    Offsets after each (a marker takes one offset per partition per transaction), then what
    read_committed and read_uncommitted consumers see."""
    a = admin(bs)
    ta, tb = t.topic("a"), t.topic("b")
    create(t, bs, ta, 2, TXN_KEEP)
    create(t, bs, tb, 1, TXN_KEEP)
    tps = [(ta, 0), (ta, 1), (tb, 0)]
    p = tx_producer(bs, t.topic("txid"))
    tx_step(t, "init-transactions", lambda: p.init_transactions(30))
    ends = [0, 0, 0]
    sent = []
    for n, outcome in ((1, "commit"), (2, "abort"), (3, "commit")):
        p.begin_transaction()
        tx_send(t, p, sent, ta, 0, n * 10, f"t{n}-a0-0")
        tx_send(t, p, sent, ta, 0, n * 10 + 1, f"t{n}-a0-1")
        tx_send(t, p, sent, ta, 1, n * 10 + 2, f"t{n}-a1-0")
        tx_send(t, p, sent, tb, 0, n * 10 + 3, f"t{n}-b0-0")
        tx_delivered(t, p, sent)
        if n == 2:
            tx_offsets_now(t, a, "txn 2 open", tps)
        tx_step(t, f"{outcome} txn {n}", (lambda: p.commit_transaction(30)) if outcome == "commit"
                else (lambda: p.abort_transaction(30)))
        ends = [ends[0] + 3, ends[1] + 2, ends[2] + 2]
        tx_settled(t, a, f"after {outcome} txn {n}", tps, min_end=ends)
    tx_read(t, bs, a, "read_committed", tps)
    tx_read(t, bs, a, "read_uncommitted", tps)


@reg("txn_zombie_fencing")
def txn_zombie_fencing(t, bs):
    """Producer A opens a transaction and writes; producer B initializes the same transactional.id,
    which fences A and aborts A's transaction. A's next produce, commit and abort fail as recorded;
    B's transaction commits; read_committed sees none of A's records."""
    a = admin(bs)
    topic = t.topic()
    txid = t.topic("txid")
    create(t, bs, topic, 2, TXN_KEEP)
    tps = [(topic, 0), (topic, 1)]
    pa = tx_producer(bs, txid)
    sent = []
    tx_step(t, "A init-transactions", lambda: pa.init_transactions(30))
    pa.begin_transaction()
    tx_send(t, pa, sent, topic, 0, 0, "zombie-0")
    tx_delivered(t, pa, sent)
    pb = tx_producer(bs, txid)
    tx_step(t, "B init-transactions", lambda: pb.init_transactions(30))
    # one at a time: to the partition already in the transaction, then to a new one
    tx_send(t, pa, sent, topic, 0, 1, "zombie-1")
    tx_delivered(t, pa, sent)
    tx_send(t, pa, sent, topic, 1, 2, "zombie-2")
    tx_delivered(t, pa, sent)
    tx_step(t, "A commit", lambda: pa.commit_transaction(15))
    tx_step(t, "A abort", lambda: pa.abort_transaction(15))
    tx_step(t, "A begin", pa.begin_transaction)
    tx_settled(t, a, "after fencing", tps, min_end=(2, 0))
    pb.begin_transaction()
    tx_send(t, pb, sent, topic, 0, 3, "b-0")
    tx_send(t, pb, sent, topic, 1, 4, "b-1")
    tx_delivered(t, pb, sent)
    tx_step(t, "B commit", lambda: pb.commit_transaction(30))
    tx_settled(t, a, "after B commit", tps, min_end=(4, 2))
    tx_read(t, bs, a, "read_committed", tps)
    tx_read(t, bs, a, "read_uncommitted", tps)


def tx_group_offsets(t, a, at, gid, parts, require_stable, wait_for=-1, settle=False, seconds=10):
    """The group's committed offsets through the AdminClient (OffsetFetch), all partitions (parts
    None) or those given, with require_stable or not. With settle, waits (bounded) while the
    answer is an error, has a partition error, or shows no offset of at least wait_for: a
    transaction's offsets become stable when its markers reach __consumer_offsets."""
    which = "all" if parts is None else ",".join(f"{tp}-{p}" for tp, p in parts)
    alive = deadline(seconds)
    while True:
        try:
            req = ConsumerGroupTopicPartitions(gid, None if parts is None else [TopicPartition(tp, p) for tp, p in parts])
            r = a.list_consumer_group_offsets([req], require_stable=require_stable, request_timeout=5)[gid].result(timeout=20)
            offs = {f"{tp.topic}-{tp.partition}": (kerr(tp.error) if tp.error else f"{tp.offset}/{tp.metadata}")
                    for tp in r.topic_partitions}
            have = max([tp.offset for tp in r.topic_partitions if not tp.error] + [-1])
            ok = have >= wait_for and not any(tp.error for tp in r.topic_partitions)
            if ok or not settle or not alive():
                t.rec("group-offsets", at=at, partitions=which, require_stable=require_stable, offsets=offs)
                return
        except KafkaException as e:
            if not settle or not alive():
                t.rec("group-offsets", at=at, partitions=which, require_stable=require_stable, **kerr(e))
                return
        time.sleep(0.1)


def tx_group_offsets4(t, a, at, gid, itp, wait_for=-1, settle=False):
    for parts in (None, [itp]):
        for stable in (False, True):
            tx_group_offsets(t, a, at, gid, parts, stable, wait_for, settle)


def tx_consumer_committed(t, c, at, itp):
    try:
        r = c.committed([TopicPartition(*itp)], timeout=3)[0]
        t.rec("consumer-committed", at=at, offset=r.offset, metadata=r.metadata,
              error=kerr(r.error) if r.error else None)
    except KafkaException as e:
        t.rec("consumer-committed", at=at, **kerr(e))


@reg("txn_send_offsets")
def txn_send_offsets(t, bs):
    """Consume-transform-produce with a subscribed group member: transaction 1 (3 records, input
    offset 3 sent to the transaction) aborted, transaction 2 (all 6, offset 6) committed. The
    group's committed offsets (AdminClient, and the consumer's committed()) while open, after the
    abort and after the commit; the output as read_committed and read_uncommitted see it."""
    a = admin(bs)
    tin, tout, gid = t.topic("in"), t.topic("out"), t.topic("group")
    create(t, bs, tin, 1, TXN_KEEP)
    create(t, bs, tout, 1, TXN_KEEP)
    plain = producer(bs)
    produce_all(plain, t, tin, [{"value": f"in-{i}".encode(), "partition": 0, "timestamp": TS0 + i} for i in range(6)])
    c = Consumer({"bootstrap.servers": bs, "group.id": gid, "enable.auto.commit": False,
                  "auto.offset.reset": "earliest", "session.timeout.ms": 10000,
                  "isolation.level": "read_committed"})
    p = tx_producer(bs, t.topic("txid"))
    itp = (tin, 0)
    sent = []
    try:
        tx_step(t, "init-transactions", lambda: p.init_transactions(30))
        c.subscribe([tin])
        got = []
        alive = deadline(25)
        while alive() and len(got) < 6:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got.append(bdecode(m.value()))
        t.check(len(got) == 6, "the group member consumed the 6 input records", got=len(got))
        p.begin_transaction()
        for i in range(3):
            tx_send(t, p, sent, tout, 0, i, "out-" + got[i])
        tx_step(t, "send-offsets txn 1", lambda: p.send_offsets_to_transaction(
            [TopicPartition(tin, 0, 3, "txn1")], c.consumer_group_metadata(), 15))
        tx_delivered(t, p, sent)
        tx_group_offsets4(t, a, "txn 1 open", gid, itp)
        tx_consumer_committed(t, c, "txn 1 open", itp)
        tx_step(t, "abort txn 1", lambda: p.abort_transaction(30))
        tx_group_offsets4(t, a, "after abort", gid, itp, settle=True)
        tx_consumer_committed(t, c, "after abort", itp)
        p.begin_transaction()
        for i in range(6):
            tx_send(t, p, sent, tout, 0, 10 + i, "out-" + got[i])
        tx_step(t, "send-offsets txn 2", lambda: p.send_offsets_to_transaction(
            [TopicPartition(tin, 0, 6, "txn2")], c.consumer_group_metadata(), 15))
        tx_delivered(t, p, sent)
        tx_step(t, "commit txn 2", lambda: p.commit_transaction(30))
        tx_group_offsets4(t, a, "after commit", gid, itp, wait_for=6, settle=True)
        tx_consumer_committed(t, c, "after commit", itp)
    finally:
        c.close()
    tx_settled(t, a, "output", [(tout, 0)], min_end=(11,))
    tx_read(t, bs, a, "read_committed", [(tout, 0)])
    tx_read(t, bs, a, "read_uncommitted", [(tout, 0)])


@reg("txn_timeout")
def txn_timeout(t, bs):
    """transaction.timeout.ms 3000 and a transaction left open: the coordinator aborts it (Kafka
    looks every 10 s: transaction.abort.timed.out.transaction.cleanup.interval.ms), the LSO moves
    past the abort marker, read_committed sees nothing of it, and the producer's next calls fail
    as recorded (librdkafka wants message.timeout.ms <= transaction.timeout.ms)."""
    a = admin(bs)
    topic = t.topic()
    create(t, bs, topic, 1, TXN_KEEP)
    tps = [(topic, 0)]
    p = tx_producer(bs, t.topic("txid"), **{"transaction.timeout.ms": 3000, "message.timeout.ms": 3000})
    sent = []
    tx_step(t, "init-transactions", lambda: p.init_transactions(30))
    p.begin_transaction()
    tx_send(t, p, sent, topic, 0, 0, "open-0")
    tx_delivered(t, p, sent)
    tx_offsets_now(t, a, "open", tps)
    tx_settled(t, a, "after the broker's abort", tps, seconds=20, min_end=(2,))
    tx_send(t, p, sent, topic, 0, 1, "late-1")
    tx_delivered(t, p, sent)
    tx_step(t, "commit", lambda: p.commit_transaction(15))
    if tx_step(t, "abort", lambda: p.abort_transaction(15)):
        if tx_step(t, "begin again", p.begin_transaction):
            tx_send(t, p, sent, topic, 0, 2, "again-2")
            tx_delivered(t, p, sent)
            tx_step(t, "commit again", lambda: p.commit_transaction(15))
    tx_settled(t, a, "end", tps)
    tx_read(t, bs, a, "read_committed", tps)
    tx_read(t, bs, a, "read_uncommitted", tps)


@reg("txn_lso")
def txn_lso(t, bs):
    """The last stable offset: a plain (idempotent) producer's records interleaved with a
    transaction's on one partition. ListOffsets latest by isolation level, and a long-lived
    read_committed consumer (its reads, position, partition-EOF offset, get_watermark_offsets)
    while the transaction is open (it stops at the LSO), after its abort (it skips the aborted
    record: the Fetch aborted-transactions list) and around a second, committed transaction."""
    a = admin(bs)
    topic = t.topic()
    create(t, bs, topic, 1, TXN_KEEP)
    tps = [(topic, 0)]
    plain = producer(bs, **{"enable.idempotence": True})
    tx = tx_producer(bs, t.topic("txid"))
    rc = TxReader(bs, "read_committed", tps)
    sent = []
    try:
        tx_send(t, plain, sent, topic, 0, 0, "r0")
        tx_send(t, plain, sent, topic, 0, 1, "r1")
        tx_delivered(t, plain, sent)
        tx_step(t, "init-transactions", lambda: tx.init_transactions(30))
        tx.begin_transaction()
        tx_send(t, tx, sent, topic, 0, 2, "t0")
        tx_delivered(t, tx, sent)
        tx_send(t, plain, sent, topic, 0, 3, "r2")
        tx_delivered(t, plain, sent)
        tx_offsets_now(t, a, "txn 1 open", tps)
        rc.drain(t, a, "read_committed, txn 1 open")
        rc.watermarks(t, "read_committed, txn 1 open")
        tx_step(t, "abort txn 1", lambda: tx.abort_transaction(30))
        tx_settled(t, a, "after abort", tps, min_end=(5,))
        rc.drain(t, a, "read_committed, after abort")
        tx.begin_transaction()
        tx_send(t, tx, sent, topic, 0, 4, "t1")
        tx_delivered(t, tx, sent)
        tx_send(t, plain, sent, topic, 0, 5, "r3")
        tx_delivered(t, plain, sent)
        tx_offsets_now(t, a, "txn 2 open", tps)
        rc.drain(t, a, "read_committed, txn 2 open")
        tx_step(t, "commit txn 2", lambda: tx.commit_transaction(30))
        tx_settled(t, a, "after commit", tps, min_end=(8,))
        rc.drain(t, a, "read_committed, after commit")
        rc.watermarks(t, "read_committed, after commit")
    finally:
        rc.close()
    tx_read(t, bs, a, "read_committed", tps)
    tx_read(t, bs, a, "read_uncommitted", tps)


@reg("txn_misuse")
def txn_misuse(t, bs):
    """Transactional calls out of order, each group on a fresh producer: before
    init_transactions, commit/abort/send_offsets without a transaction, begin twice, a
    transactional call on a non-transactional producer, a transaction timeout above the broker's
    transaction.max.timeout.ms (the broker's InitProducerId error), and, inside a transaction, a
    produce to a partition that does not exist and to a topic that does not exist with
    allow.auto.create.topics=false (the topic is not created; the transaction must be aborted)."""
    a = admin(bs)
    topic = t.topic()
    txid = t.topic("txid")
    create(t, bs, topic, 1, TXN_KEEP)
    p = tx_producer(bs, txid + "-1")
    tx_step(t, "begin before init", p.begin_transaction)
    tx_step(t, "commit before init", lambda: p.commit_transaction(5))
    tx_step(t, "init-transactions", lambda: p.init_transactions(30))
    tx_step(t, "commit without begin", lambda: p.commit_transaction(5))
    tx_step(t, "abort without begin", lambda: p.abort_transaction(5))
    cm = Consumer({"bootstrap.servers": bs, "group.id": t.topic("group")})
    tx_step(t, "send-offsets without begin", lambda: p.send_offsets_to_transaction(
        [TopicPartition(topic, 0, 1)], cm.consumer_group_metadata(), 5))
    cm.close()
    tx_step(t, "begin", p.begin_transaction)
    tx_step(t, "begin again", p.begin_transaction)
    tx_step(t, "commit empty transaction", lambda: p.commit_transaction(10))
    tx_step(t, "init-transactions again", lambda: p.init_transactions(10))
    plain = producer(bs)
    tx_step(t, "init-transactions on a non-transactional producer", lambda: plain.init_transactions(5))
    big = tx_producer(bs, txid + "-2", **{"transaction.timeout.ms": 900001})
    tx_step(t, "init-transactions with timeout above transaction.max.timeout.ms", lambda: big.init_transactions(10))
    missing = t.topic("missing")
    p3 = tx_producer(bs, txid + "-3", **{"allow.auto.create.topics": False, "message.timeout.ms": 5000,
                                         "topic.metadata.propagation.max.ms": 1000})
    sent = []
    tx_step(t, "init-transactions", lambda: p3.init_transactions(30))
    tx_step(t, "begin", p3.begin_transaction)
    tx_send(t, p3, sent, topic, 0, 0, "ok-0")
    tx_delivered(t, p3, sent)   # written before the failures below make the transaction abortable
    tx_send(t, p3, sent, topic, 5, 1, "no-such-partition")
    tx_delivered(t, p3, sent)
    tx_send(t, p3, sent, missing, 0, 2, "no-such-topic")
    tx_delivered(t, p3, sent)
    tx_step(t, "commit", lambda: p3.commit_transaction(15))
    tx_step(t, "abort", lambda: p3.abort_transaction(15))
    tx_step(t, "begin after abort", p3.begin_transaction)
    tx_send(t, p3, sent, topic, 0, 3, "ok-3")
    tx_delivered(t, p3, sent)
    tx_step(t, "commit after abort", lambda: p3.commit_transaction(15))
    t.rec("missing-topic-exists", exists=exists(a, missing))
    tx_settled(t, a, "end", [(topic, 0)], min_end=(4,))
    tx_read(t, bs, a, "read_committed", [(topic, 0)])
    tx_read(t, bs, a, "read_uncommitted", [(topic, 0)])
# ---- end of transactions (issue 23) ----
