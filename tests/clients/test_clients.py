"""Real Kafka clients against the real broker (issue 12's client scenarios)."""
import subprocess
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def create(bootstrap, topic, partitions=1, config=None):
    a = AdminClient({"bootstrap.servers": bootstrap})
    fs = a.create_topics([NewTopic(topic, partitions, 1, config=config or {})])
    fs[topic].result(15)


def consume_all(bootstrap, topic, partitions, expected, timeout=60):
    """Reads partitions from offset 0 (assign, no group) until `expected` records arrive."""
    c = Consumer({"bootstrap.servers": bootstrap, "enable.auto.commit": False,
                  "group.id": "unused-" + uuid.uuid4().hex, "enable.partition.eof": False})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out = []
    deadline = time.time() + timeout
    while len(out) < expected and time.time() < deadline:
        for m in c.consume(1000, 1.0):
            assert m.error() is None, m.error()
            out.append(m)
    c.close()
    return out


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (the Java client's Utils.murmur2)."""
    seed, m, r = 0x9747B28C, 0x5BD1E995, 24
    length = len(data)
    h = (seed ^ length) & 0xFFFFFFFF
    for i in range(length // 4):
        k = int.from_bytes(data[4 * i:4 * i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    rest = length % 4
    tail = length & ~3
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def java_partition(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def test_kcat_keys_headers_round_trip(broker):
    """kcat 1.7 (librdkafka 2.0.2) produces keyed records with headers to an auto-created
    topic and reads them back: same keys, values and headers, offsets contiguous from 0."""
    lines = "".join(f"k{i}:v{i}\n" for i in range(50))
    subprocess.run(["kcat", "-b", broker.bootstrap, "-P", "-t", "kc", "-K:", "-H", "h1=x", "-H", "h2=y"],
                   input=lines, text=True, check=True, timeout=30)
    out = subprocess.run(["kcat", "-b", broker.bootstrap, "-C", "-t", "kc", "-o", "beginning", "-e",
                          "-f", "%k|%s|%o|%h\n"], capture_output=True, text=True, check=True, timeout=30).stdout
    rows = [l.split("|") for l in out.strip().splitlines()]
    assert [(k, v) for k, v, _, _ in rows] == [(f"k{i}", f"v{i}") for i in range(50)]
    assert [int(o) for _, _, o, _ in rows] == list(range(50))
    assert all(h == "h1=x,h2=y" for *_, h in rows)


def test_explicit_timestamps_and_list_offsets_by_time(broker):
    """Explicit CreateTime timestamps come back unchanged; ListOffsets by time finds the first
    record at or after a timestamp; earliest and latest answer 0 and the count."""
    create(broker.bootstrap, "ts")
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(20):
        p.produce("ts", key=b"k", value=b"v%d" % i, timestamp=1_700_000_000_000 + i * 10)
    p.flush(30)
    msgs = consume_all(broker.bootstrap, "ts", 1, 20)
    assert [m.timestamp()[1] for m in msgs] == [1_700_000_000_000 + i * 10 for i in range(20)]
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "x"})
    found = c.offsets_for_times([TopicPartition("ts", 0, 1_700_000_000_000 + 55)], timeout=10)
    assert found[0].offset == 6
    lo, hi = c.get_watermark_offsets(TopicPartition("ts", 0), timeout=10)
    assert (lo, hi) == (0, 20)
    c.close()


def test_same_key_same_partition_as_java(broker):
    """With the Java-compatible partitioner, every record of one key lands in the partition
    murmur2 picks, as the Java client maps keys."""
    create(broker.bootstrap, "keyed", partitions=3)
    p = Producer({"bootstrap.servers": broker.bootstrap, "partitioner": "murmur2_random"})
    keys = [b"user-%d" % i for i in range(30)]
    for rnd in range(3):
        for k in keys:
            p.produce("keyed", key=k, value=b"%d" % rnd)
    p.flush(30)
    msgs = consume_all(broker.bootstrap, "keyed", 3, 90)
    assert len(msgs) == 90
    for m in msgs:
        assert m.partition() == java_partition(m.key(), 3), m.key()


def test_idempotent_acks_all_100k_in_order(broker):
    """An idempotent producer with acks=all sends 100,000 records over 3 partitions; a
    consumer reads every one, in order per partition, with no duplicates."""
    create(broker.bootstrap, "bulk", partitions=3)
    p = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True, "acks": "all",
                  "linger.ms": 5, "batch.num.messages": 2000})
    errors = []
    for i in range(100_000):
        while True:
            try:
                p.produce("bulk", key=b"%d" % (i % 1000), value=b"%d" % i,
                          on_delivery=lambda e, m: e and errors.append(e))
                break
            except BufferError:
                p.poll(0.05)
    assert p.flush(120) == 0
    assert not errors, errors[:3]
    msgs = consume_all(broker.bootstrap, "bulk", 3, 100_000, timeout=120)
    assert len(msgs) == 100_000
    per_part = {}
    for m in msgs:
        per_part.setdefault(m.partition(), []).append(m)
    for part, ms in per_part.items():
        offsets = [m.offset() for m in ms]
        assert offsets == list(range(len(ms))), f"partition {part} offsets not contiguous"
        by_key = {}
        for m in ms:
            by_key.setdefault(m.key(), []).append(int(m.value()))
        for k, vals in by_key.items():
            assert vals == sorted(vals), f"key {k} out of order"
    assert sorted(int(m.value()) for m in msgs) == list(range(100_000))


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compression_codecs_pass_through(broker, codec):
    """Batches compressed with each codec are stored as sent and read back intact."""
    topic = "codec-" + codec
    create(broker.bootstrap, topic)
    p = Producer({"bootstrap.servers": broker.bootstrap, "compression.type": codec, "linger.ms": 20})
    for i in range(500):
        p.produce(topic, key=b"k%d" % i, value=(b"value-%d-" % i) * 20)
    assert p.flush(30) == 0
    msgs = consume_all(broker.bootstrap, topic, 1, 500)
    assert [m.value() for m in msgs] == [(b"value-%d-" % i) * 20 for i in range(500)]
    # The operator CLI reads the same compressed batches.
    from conftest import sluice_bin
    out = subprocess.run([sluice_bin(), "consume", "--bootstrap", broker.bootstrap, topic, "--exit",
                          "--format", "kv"], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.splitlines() == ["k%d\t%s" % (i, ("value-%d-" % i) * 20) for i in range(500)]


def test_sigkill_during_acks_all_loses_nothing_acknowledged(broker):
    """SIGKILL while an acks=all producer runs: after a restart every acknowledged record is
    there, and the topic keeps its configs."""
    create(broker.bootstrap, "crash", partitions=2, config={"retention.ms": "86400001"})
    acked = []
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 1,
                  "message.timeout.ms": 5000})

    def on_delivery(err, msg):
        if err is None:
            acked.append((msg.partition(), msg.offset(), msg.value()))
    deadline = time.time() + 1.5
    i = 0
    while time.time() < deadline:
        try:
            p.produce("crash", value=b"r%d" % i, on_delivery=on_delivery)
            i += 1
        except BufferError:
            pass
        p.poll(0)
    broker.kill()
    p.flush(6)
    assert acked, "nothing was acknowledged before the kill"
    broker.restart()
    # Read each partition to its end: records stored but not acknowledged before the kill are
    # there too, so stopping at len(acked) records could stop short of one partition's tail.
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused-" + uuid.uuid4().hex})
    stored_count = sum(c.get_watermark_offsets(TopicPartition("crash", q), timeout=10)[1] for q in (0, 1))
    c.close()
    assert stored_count >= len(acked)
    stored = {(m.partition(), m.offset()): m.value()
              for m in consume_all(broker.bootstrap, "crash", 2, stored_count)}
    missing = [a for a in acked if stored.get((a[0], a[1])) != a[2]]
    assert not missing, f"{len(missing)} acknowledged records lost, first {missing[:3]}"
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    from confluent_kafka.admin import ConfigResource
    res = a.describe_configs([ConfigResource("topic", "crash")])
    cfg = list(res.values())[0].result(10)
    assert cfg["retention.ms"].value == "86400001"


def test_sigterm_exits_zero_and_data_survives(broker):
    """SIGTERM stops the broker with exit code 0; after a restart the records are there."""
    create(broker.bootstrap, "term")
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    for i in range(100):
        p.produce("term", value=b"%d" % i)
    assert p.flush(30) == 0
    assert broker.stop() == 0
    broker.restart()
    msgs = consume_all(broker.bootstrap, "term", 1, 100)
    assert [m.value() for m in msgs] == [b"%d" % i for i in range(100)]


def test_retention_drops_old_segments(broker):
    """A topic with small segment.bytes and retention.bytes drops its oldest segments; the
    earliest offset moves up, and a fetch below it gets OFFSET_OUT_OF_RANGE."""
    create(broker.bootstrap, "ret", config={"segment.bytes": "1048576", "retention.bytes": "1048576"})
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 10})
    for i in range(6000):
        p.produce("ret", value=b"x" * 1000)
        if i % 500 == 0:
            p.poll(0)
    assert p.flush(60) == 0
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "x", "auto.offset.reset": "error",
                  "enable.auto.commit": False})
    deadline = time.time() + 30
    lo = 0
    while time.time() < deadline:
        lo, hi = c.get_watermark_offsets(TopicPartition("ret", 0), timeout=10)
        if lo > 0:
            break
        time.sleep(0.5)
    assert lo > 0, "retention did not move the log start offset"
    assert hi == 6000
    c.assign([TopicPartition("ret", 0, 0)])
    err = None
    deadline = time.time() + 15
    while err is None and time.time() < deadline:
        for m in c.consume(10, 1.0):
            if m.error():
                err = m.error()
    c.close()
    assert err is not None and err.code() == KafkaError._AUTO_OFFSET_RESET, err
