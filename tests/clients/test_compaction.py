"""Log compaction through real clients: a `cleanup.policy=compact` topic keeps the last value
per key at its original offset, and refuses records without a key (INVALID_RECORD)."""
import os
import tempfile
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import Broker


@pytest.fixture
def cbroker():
    """A broker that looks for due compactions every 500 ms (Kafka's default is 15 s)."""
    with tempfile.TemporaryDirectory(prefix="sluice-compact-") as d:
        b = Broker(os.path.join(d, "data"),
                   args=["--cores", "2", "--set", "log_cleaner_backoff_ms=500"])
        yield b
        if b.proc.poll() is None:
            b.kill()


def create(bootstrap, topic, config):
    a = AdminClient({"bootstrap.servers": bootstrap})
    fs = a.create_topics([NewTopic(topic, 1, 1, config=config)])
    fs[topic].result(15)


def read_log(bootstrap, topic):
    """Every record from offset 0 to the high watermark, as (offset, key, value)."""
    c = Consumer({"bootstrap.servers": bootstrap, "enable.auto.commit": False,
                  "group.id": "unused-" + uuid.uuid4().hex, "enable.partition.eof": True})
    _, hi = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    c.assign([TopicPartition(topic, 0, 0)])
    out = []
    deadline = time.time() + 30
    done = False
    while not done and time.time() < deadline:
        for m in c.consume(1000, 1.0):
            if m.error():
                assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
                done = True
                break
            out.append((m.offset(), m.key(), m.value()))
            if m.offset() >= hi - 1:
                done = True
    c.close()
    return out


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_compacted_topic_keeps_last_value_per_key(cbroker, codec):
    """Many values for few keys, in segments rolled every 100 ms: after compaction a reader
    from offset 0 sees each key once, with its last value at the offset it was acknowledged
    at; a key whose last record is a tombstone shows at most that tombstone. With each codec
    librdkafka writes: compressed batches are decompressed, filtered and recompressed."""
    topic = "compacted-" + codec
    create(cbroker.bootstrap, topic, {
        "cleanup.policy": "compact",
        "segment.ms": "100",
        "min.cleanable.dirty.ratio": "0.01",
        "delete.retention.ms": "60000",
    })
    acked = {}

    def on_delivery(err, msg):
        assert err is None, err
        acked[msg.key()] = (msg.offset(), msg.value())

    p = Producer({"bootstrap.servers": cbroker.bootstrap, "linger.ms": 5,
                  "enable.idempotence": True, "compression.type": codec})
    keys = [b"key-%d" % k for k in range(20)]
    total = 0
    for round_ in range(60):
        for k in keys:
            p.produce(topic, key=k, value=b"%s=%d" % (k, round_), on_delivery=on_delivery)
            total += 1
        p.poll(0)
        if round_ % 10 == 9:
            p.flush(30)
            time.sleep(0.15)
    p.produce(topic, key=b"deleted", value=b"soon gone", on_delivery=on_delivery)
    p.produce(topic, key=b"deleted", value=None, on_delivery=on_delivery)
    assert p.flush(30) == 0
    # One more record after segment.ms rolls everything above into closed segments.
    time.sleep(0.3)
    p.produce(topic, key=b"sentinel", value=b"end", on_delivery=on_delivery)
    assert p.flush(30) == 0

    deadline = time.time() + 40
    while True:
        log = read_log(cbroker.bootstrap, topic)
        if len(log) <= len(keys) + 2 or time.time() > deadline:
            break
        time.sleep(0.5)
    assert len(log) < total, "nothing was compacted"
    seen = {}
    for off, k, v in log:
        assert k not in seen, f"key {k!r} appears twice after compaction: {log}"
        seen[k] = (off, v)
    for k in keys + [b"sentinel"]:
        assert seen[k] == acked[k], (k, seen.get(k), acked[k])
    if b"deleted" in seen:
        assert seen[b"deleted"] == (acked[b"deleted"][0], None)
    offsets = [off for off, _, _ in log]
    assert offsets == sorted(offsets)
    # Offsets did not move: the log end is where the producer left it.
    c = Consumer({"bootstrap.servers": cbroker.bootstrap, "group.id": "w"})
    lo, hi = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    c.close()
    assert (lo, hi) == (0, acked[b"sentinel"][0] + 1)


@pytest.mark.parametrize("codec", ["none", "lz4"])
def test_compacted_topic_refuses_records_without_key(cbroker, codec):
    create(cbroker.bootstrap, "needs-keys", {"cleanup.policy": "compact"})
    errors = []
    p = Producer({"bootstrap.servers": cbroker.bootstrap, "retries": 0,
                  "compression.type": codec})
    p.produce("needs-keys", value=b"no key", on_delivery=lambda err, msg: errors.append(err))
    p.flush(30)
    assert len(errors) == 1 and errors[0] is not None
    assert errors[0].code() == KafkaError.INVALID_RECORD, errors[0]
