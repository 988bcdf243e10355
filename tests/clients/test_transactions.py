"""Transactions with a real client (issue 23): confluent-kafka's transactional producer against
the real broker. Commit and abort visibility under read_committed and read_uncommitted, the
last stable offset while a transaction is open, fencing of a zombie producer, offsets sent to
a transaction (consume-transform-produce), a transaction that times out, and kill -9 of the
broker mid-transaction and after commits and aborts: nothing aborted or open is ever read
committed, nothing committed is lost.

Every test has its own topic, group and transactional ids, so the file also runs against the
reference Kafka (see conftest.py):

    tests/kafka-ref/start --dir /tmp/kref-txn --set transaction.state.log.num.partitions=1 \
        --set transaction.abort.timed.out.transaction.cleanup.interval.ms=1000
    KAFKA_REF_DIR=/tmp/kref-txn KAFKA_BOOTSTRAP=$(cat /tmp/kref-txn/bootstrap) \
        python3 -m pytest tests/clients/test_transactions.py -v
    tests/kafka-ref/stop /tmp/kref-txn --rm
"""
import time
import uuid

import pytest
from confluent_kafka import (Consumer, ConsumerGroupTopicPartitions, KafkaError, KafkaException,
                             Producer, TopicPartition)
from confluent_kafka.admin import AdminClient, NewTopic


def uniq(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create(bootstrap, topic, partitions):
    a = AdminClient({"bootstrap.servers": bootstrap})
    a.create_topics([NewTopic(topic, partitions, 1)])[topic].result(15)


def txn_producer(bootstrap, txn_id, **extra):
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id,
                  "linger.ms": 0, **extra})
    p.init_transactions(30)
    return p


def send(p, topic, values, partition=None):
    for v in values:
        if partition is None:
            p.produce(topic, value=v.encode())
        else:
            p.produce(topic, value=v.encode(), partition=partition)
    p.flush(15)


def read_all(bootstrap, topic, partitions, isolation, expect=None, timeout=20):
    """Every value in `topic` from the beginning as a consumer with `isolation` reads it, by
    partition; stops once `expect` values arrived (or no new one came for 3 s)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": uniq("reader"),
                  "enable.auto.commit": False, "isolation.level": isolation,
                  "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got = {p: [] for p in range(partitions)}
    deadline = time.time() + timeout
    last_new = time.time()
    try:
        while time.time() < deadline:
            n = sum(len(v) for v in got.values())
            if expect is not None and n >= expect:
                # a little longer, to catch anything that should not be there
                if time.time() - last_new > 1.0:
                    break
            elif expect is None and time.time() - last_new > 3.0:
                break
            m = c.poll(0.2)
            if m is None or m.error():
                continue
            got[m.partition()].append((m.offset(), m.value().decode()))
            last_new = time.time()
    finally:
        c.close()
    return got


def values(got):
    return sorted(v for lst in got.values() for _, v in lst)


def stable_and_high(bootstrap, topic, partition):
    """(high watermark as read_committed sees it, as read_uncommitted sees it)."""
    out = []
    for isolation in ("read_committed", "read_uncommitted"):
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": uniq("wm"),
                      "isolation.level": isolation})
        try:
            _, high = c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10,
                                              cached=False)
        finally:
            c.close()
        out.append(high)
    return tuple(out)


def settled(bootstrap, topic, partition, want, timeout=10):
    """stable_and_high once it equals `want` (markers follow EndTxn's answer), or as it is
    after `timeout` seconds."""
    deadline = time.time() + timeout
    got = stable_and_high(bootstrap, topic, partition)
    while got != want and time.time() < deadline:
        time.sleep(0.1)
        got = stable_and_high(bootstrap, topic, partition)
    return got


def test_commit_and_abort_visibility(broker):
    topic = uniq("txn-vis")
    create(broker.bootstrap, topic, 2)
    p = txn_producer(broker.bootstrap, uniq("tid"))
    for i, outcome in enumerate(["commit", "abort", "commit"]):
        p.begin_transaction()
        send(p, topic, [f"{outcome}-{i}-{k}" for k in range(5)], partition=0)
        send(p, topic, [f"{outcome}-{i}-p1"], partition=1)
        if outcome == "commit":
            p.commit_transaction(30)
        else:
            p.abort_transaction(30)
    committed = read_all(broker.bootstrap, topic, 2, "read_committed", expect=12)
    assert values(committed) == sorted([f"commit-{i}-{k}" for i in (0, 2) for k in range(5)]
                                       + ["commit-0-p1", "commit-2-p1"])
    everything = read_all(broker.bootstrap, topic, 2, "read_uncommitted", expect=18)
    assert len(values(everything)) == 18
    # Each transaction's marker takes an offset: 5 records + marker, three times, on partition 0.
    offsets = [o for o, _ in everything[0]]
    assert offsets == [0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 12, 13, 14, 15, 16]
    assert settled(broker.bootstrap, topic, 0, (18, 18)) == (18, 18)


def test_open_transaction_holds_the_last_stable_offset(broker):
    topic = uniq("txn-lso")
    create(broker.bootstrap, topic, 1)
    plain = Producer({"bootstrap.servers": broker.bootstrap})
    send(plain, topic, ["a", "b"])
    p = txn_producer(broker.bootstrap, uniq("tid"))
    p.begin_transaction()
    send(p, topic, ["t1", "t2"])
    send(plain, topic, ["c"])
    # Offsets 0-1 plain, 2-3 in the open transaction, 4 plain: the LSO stays at 2.
    assert stable_and_high(broker.bootstrap, topic, 0) == (2, 5)
    assert values(read_all(broker.bootstrap, topic, 1, "read_committed", expect=2)) == ["a", "b"]
    p.commit_transaction(30)
    assert settled(broker.bootstrap, topic, 0, (6, 6)) == (6, 6)
    assert values(read_all(broker.bootstrap, topic, 1, "read_committed", expect=5)) == [
        "a", "b", "c", "t1", "t2"]


def test_a_zombie_producer_is_fenced(broker):
    topic = uniq("txn-zombie")
    create(broker.bootstrap, topic, 1)
    tid = uniq("tid")
    zombie = txn_producer(broker.bootstrap, tid)
    zombie.begin_transaction()
    send(zombie, topic, ["zombie-1"])
    fresh = txn_producer(broker.bootstrap, tid)      # fences the zombie, aborts its transaction
    fresh.begin_transaction()
    send(fresh, topic, ["fresh-1"])
    fresh.commit_transaction(30)
    with pytest.raises(KafkaException) as e:
        zombie.produce(topic, value=b"zombie-2")
        zombie.flush(10)
        zombie.commit_transaction(10)
    err = e.value.args[0]
    assert err.fatal() or err.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED,
                                         KafkaError.INVALID_PRODUCER_EPOCH), err
    assert values(read_all(broker.bootstrap, topic, 1, "read_committed", expect=1)) == ["fresh-1"]


def test_offsets_sent_to_a_transaction_commit_with_it(broker):
    source, sink = uniq("txn-in"), uniq("txn-out")
    create(broker.bootstrap, source, 1)
    create(broker.bootstrap, sink, 1)
    send(Producer({"bootstrap.servers": broker.bootstrap}), source, [f"m{i}" for i in range(6)])
    group = uniq("txn-group")
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  "isolation.level": "read_committed"})
    c.subscribe([source])
    p = txn_producer(broker.bootstrap, uniq("tid"))
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})

    def committed():
        f = admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group, [TopicPartition(source, 0)])])
        return f[group].result(15).topic_partitions[0].offset

    try:
        for outcome, want in (("abort", 3), ("commit", 3)):
            got = []
            deadline = time.time() + 20
            while len(got) < want and time.time() < deadline:
                m = c.poll(0.5)
                if m is not None and not m.error():
                    got.append(m)
            assert len(got) == want
            p.begin_transaction()
            send(p, sink, [f"out-{m.value().decode()}" for m in got])
            p.send_offsets_to_transaction(c.position(c.assignment()),
                                          c.consumer_group_metadata(), 30)
            if outcome == "abort":
                p.abort_transaction(30)
                assert committed() < 0, "aborted offsets must not be committed"
                # rewind to what is committed (nothing): the aborted input is read again
                c.seek(TopicPartition(source, 0, 0))
            else:
                p.commit_transaction(30)
                # EndTxn answers once the commit is decided; the markers (which make the
                # offsets committed) follow, on Kafka as here.
                deadline = time.time() + 10
                while committed() != 3 and time.time() < deadline:
                    time.sleep(0.05)
                assert committed() == 3
    finally:
        c.close()
    assert values(read_all(broker.bootstrap, sink, 1, "read_committed", expect=3)) == [
        "out-m0", "out-m1", "out-m2"]


def test_a_transaction_left_open_times_out_and_is_aborted(broker):
    topic = uniq("txn-timeout")
    create(broker.bootstrap, topic, 1)
    tid = uniq("tid")
    p = txn_producer(broker.bootstrap, tid, **{"transaction.timeout.ms": 2000})
    p.begin_transaction()
    send(p, topic, ["left-open"])
    # The coordinator aborts it (Kafka checks every 10 s by default): the LSO moves past it.
    deadline = time.time() + 30
    while time.time() < deadline and stable_and_high(broker.bootstrap, topic, 0)[0] == 0:
        time.sleep(0.5)
    assert settled(broker.bootstrap, topic, 0, (2, 2)) == (2, 2)
    assert values(read_all(broker.bootstrap, topic, 1, "read_committed", expect=0)) == []
    # The same id starts afresh.
    again = txn_producer(broker.bootstrap, tid)
    again.begin_transaction()
    send(again, topic, ["after"])
    again.commit_transaction(30)
    assert values(read_all(broker.bootstrap, topic, 1, "read_committed", expect=1)) == ["after"]


def test_transactions_survive_a_broker_crash(broker):
    if not broker.restartable:
        pytest.skip("needs a broker this test can kill and restart")
    topic = uniq("txn-crash")
    create(broker.bootstrap, topic, 2)
    tid = uniq("tid")
    p = txn_producer(broker.bootstrap, tid, **{"transaction.timeout.ms": 5000})
    for i, outcome in enumerate(["commit", "abort", "commit"]):
        p.begin_transaction()
        send(p, topic, [f"{outcome}-{i}-{k}" for k in range(3)], partition=i % 2)
        if outcome == "commit":
            p.commit_transaction(30)
        else:
            p.abort_transaction(30)
    p.begin_transaction()
    send(p, topic, ["open-0", "open-1"], partition=0)
    broker.kill()
    broker.restart()
    # After the restart the open transaction is aborted (it times out), the aborted one stays
    # hidden, and both committed ones are read.
    want = sorted([f"commit-{i}-{k}" for i in (0, 2) for k in range(3)])
    deadline = time.time() + 40
    while time.time() < deadline:
        stable = stable_and_high(broker.bootstrap, topic, 0)
        if stable[0] == stable[1]:
            break
        time.sleep(0.5)
    assert stable[0] == stable[1], f"the open transaction was never ended: {stable}"
    assert values(read_all(broker.bootstrap, topic, 2, "read_committed", expect=6)) == want
    fresh = txn_producer(broker.bootstrap, tid)
    fresh.begin_transaction()
    send(fresh, topic, ["after-crash"], partition=1)
    fresh.commit_transaction(30)
    assert values(read_all(broker.bootstrap, topic, 2, "read_committed", expect=7)) == sorted(
        want + ["after-crash"])
