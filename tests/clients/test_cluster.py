"""A 3-node sluice cluster (issue 20): three real `sluice` processes, each a broker and a KRaft
controller voter, on free loopback ports, driven by unmodified clients through any broker's
address: confluent-kafka (librdkafka), kcat and Kafka's own Java CLI tools.

- A topic of 12 partitions (replication factor 1) created through one broker is placed on all
  three, every broker lists all three brokers and the same leaders; a replication factor above
  the live brokers is refused with INVALID_REPLICATION_FACTOR, as Kafka answers.
- Records produced with acks=all through each broker's address alone (the client finds the
  leaders from Metadata) are all consumed through another broker, by a consumer group whose
  coordinator may be any broker; groups' coordinators are spread over the brokers.
- kill -9 of a broker: within its session timeout it leaves Metadata and its partitions are
  reported leaderless (LEADER_NOT_AVAILABLE); restarted, it is listed again, leads its
  partitions again and every acknowledged record is still there.
- Issue 21: `__consumer_offsets` has 3 replicas, so a group's committed offsets survive kill -9
  of its coordinator's broker and are answered by the new coordinator on a survivor.
- Issue 23: `__transaction_state` has 3 replicas (min.insync.replicas 2), so an open
  transaction survives kill -9 of its coordinator's broker and commits on a survivor; the
  brokers' transaction calls to each other (markers, KIP-890 verification) reuse connections.
"""
import os
import subprocess
import tempfile
import time
import urllib.request
import uuid

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import ROOT, Broker, free_port

KAFKA_TOOL = os.path.join(ROOT, "tests", "kafka-ref", "kafka-tool")
# The broker session timeout the nodes run with (sluice's default, 3 s) and a margin for a
# loaded CI machine.
SESSION_S = 3.0
FENCE_WITHIN_S = SESSION_S + 7.0


class Cluster:
    """Three broker+controller nodes; `nodes[i]` is node id i+1."""

    def __init__(self, root):
        ports = [free_port() for _ in range(3)]
        voters = ",".join(f"{i + 1}@127.0.0.1:{p}" for i, p in enumerate(ports))
        self.nodes = []
        for i in range(3):
            metrics = free_port()
            args = ["--node-id", str(i + 1), "--controller-voters", voters, "--cores", "2",
                    "--metrics-listen", f"127.0.0.1:{metrics}"]
            self.nodes.append(Broker(os.path.join(root, f"node{i + 1}"), args=args))
            self.nodes[-1].metrics_port = metrics

    def connections_accepted(self, i):
        """Client connections node i+1 accepted so far (its /metrics, summed over cores)."""
        url = f"http://127.0.0.1:{self.nodes[i].metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as r:
            text = r.read().decode()
        return sum(float(line.split()[-1]) for line in text.splitlines()
                   if line.startswith("sluice_connections_accepted"))

    def bootstrap(self, i):
        return self.nodes[i].bootstrap

    def all_bootstrap(self):
        return ",".join(n.bootstrap for n in self.nodes)

    def stop(self):
        for n in self.nodes:
            if n.proc.poll() is None:
                n.kill()


@pytest.fixture
def cluster():
    if os.environ.get("KAFKA_BOOTSTRAP"):
        pytest.skip("starts its own sluice cluster")
    with tempfile.TemporaryDirectory(prefix="sluice-cluster-") as d:
        c = Cluster(d)
        try:
            wait_for(lambda: len(brokers(c.bootstrap(0))) == 3, 60, "three live brokers")
            yield c
        finally:
            c.stop()


def wait_for(check, timeout, what):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = check()
            if last:
                return last
        except KafkaException as e:
            last = e
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def metadata(bootstrap, topic=None):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    return admin.list_topics(topic=topic, timeout=10)


def brokers(bootstrap):
    return sorted(metadata(bootstrap).brokers)


def leaders(bootstrap, topic):
    t = metadata(bootstrap, topic).topics[topic]
    return {p: (m.leader, m.error.code() if m.error else 0) for p, m in t.partitions.items()}


def create(bootstrap, topic, partitions, rf=1):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, partitions, rf)], operation_timeout=30)
    futures[topic].result(timeout=60)


def produce(bootstrap, topic, records):
    """acks=all; returns the (partition, offset) of each acknowledged record."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                  "enable.idempotence": True, "message.timeout.ms": 30000})
    acked = []

    def done(err, msg):
        assert err is None, err
        acked.append((msg.partition(), msg.offset()))
    for k, v in records:
        p.produce(topic, key=k, value=v, on_delivery=done)
    assert p.flush(60) == 0
    return acked


def consume_group(bootstrap, topic, group, expected, timeout=60):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    got = []
    deadline = time.time() + timeout
    try:
        while len(got) < expected and time.time() < deadline:
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            got.append((m.key(), m.value()))
        c.commit(asynchronous=False)
    finally:
        c.close()
    return got


def test_topics_spread_over_the_brokers_and_clients_use_any_address(cluster):
    topic = f"spread-{uuid.uuid4().hex[:8]}"
    create(cluster.bootstrap(1), topic, 12)
    # Another broker has the topic once the metadata log reaches it.
    wanted = wait_for(lambda: (lambda ls: ls if sorted(ls) == list(range(12)) else None)(
        leaders(cluster.bootstrap(0), topic)), 10, "the topic on broker 1")
    per_broker = {}
    for _, (leader, error) in wanted.items():
        assert error == 0
        per_broker[leader] = per_broker.get(leader, 0) + 1
    assert sorted(per_broker) == [1, 2, 3], per_broker
    assert sorted(per_broker.values()) == [4, 4, 4], per_broker
    for i in range(3):
        assert brokers(cluster.bootstrap(i)) == [1, 2, 3]
        assert wait_for(lambda: leaders(cluster.bootstrap(i), topic) == wanted, 10,
                        f"broker {i + 1} agrees on the leaders")

    # A replication factor above the live brokers: Kafka's INVALID_REPLICATION_FACTOR (38).
    with pytest.raises(KafkaException) as e:
        create(cluster.bootstrap(2), f"rf4-{uuid.uuid4().hex[:8]}", 3, rf=4)
    assert e.value.args[0].code() == 38, e.value

    records = []
    for i in range(3):
        batch = [(f"b{i}-k{n}".encode(), f"v{n}".encode()) for n in range(200)]
        acked = produce(cluster.bootstrap(i), topic, batch)
        assert len(acked) == len(batch)
        records += batch
    assert len({p for p, _ in produce(cluster.bootstrap(0), topic, records[:60])}) > 1
    got = consume_group(cluster.bootstrap(2), topic, f"g-{topic}", len(records) + 60)
    assert sorted(got) == sorted(records + records[:60])


def test_group_coordinators_spread_and_any_broker_answers(cluster):
    topic = f"groups-{uuid.uuid4().hex[:8]}"
    create(cluster.bootstrap(0), topic, 6)
    records = [(f"k{n}".encode(), f"v{n}".encode()) for n in range(60)]
    produce(cluster.all_bootstrap(), topic, records)
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap(0)})
    coordinators = set()
    for g in range(6):
        group = f"g{g}-{topic}"
        # Each group joins through a different broker's address.
        got = consume_group(cluster.bootstrap(g % 3), topic, group, len(records))
        assert sorted(got) == sorted(records)
        described = admin.describe_consumer_groups([group])[group].result(timeout=30)
        coordinators.add(described.coordinator.id)
    assert len(coordinators) >= 2, coordinators


def kafka_tool(*args, input=None, timeout=120):
    return subprocess.run([KAFKA_TOOL, *args], input=input, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.skipif(not os.path.exists(os.path.join(ROOT, "tests", "kafka-ref", ".cache", "libs")),
                    reason="Kafka's tools are not installed (tests/kafka-ref/install)")
def test_kafka_cli_and_kcat_through_different_brokers(cluster):
    topic = f"cli-{uuid.uuid4().hex[:8]}"
    r = kafka_tool("kafka-topics", "--bootstrap-server", cluster.bootstrap(2), "--create",
                   "--topic", topic, "--partitions", "6")
    assert r.returncode == 0, r.stderr
    r = kafka_tool("kafka-topics", "--bootstrap-server", cluster.bootstrap(0), "--describe",
                   "--topic", topic)
    assert r.returncode == 0, r.stderr
    described = [line for line in r.stdout.splitlines() if "Partition:" in line]
    assert len(described) == 6
    assert {line.split("Leader: ")[1].split()[0] for line in described} == {"1", "2", "3"}
    lines = "".join(f"java-{n}\n" for n in range(30))
    r = kafka_tool("kafka-console-producer", "--bootstrap-server", cluster.bootstrap(1),
                   "--topic", topic, "--producer-property", "acks=all", input=lines)
    assert r.returncode == 0, r.stderr
    kcat = subprocess.run(["kcat", "-b", cluster.bootstrap(2), "-P", "-t", topic, "-K:"],
                          input="".join(f"k{n}:kcat-{n}\n" for n in range(30)),
                          capture_output=True, text=True, timeout=60)
    assert kcat.returncode == 0, kcat.stderr
    out = subprocess.run(["kcat", "-b", cluster.bootstrap(0), "-C", "-t", topic, "-o",
                          "beginning", "-e", "-q"], capture_output=True, text=True, timeout=60)
    assert sorted(out.stdout.split()) == sorted(
        [f"java-{n}" for n in range(30)] + [f"kcat-{n}" for n in range(30)])
    r = kafka_tool("kafka-console-consumer", "--bootstrap-server", cluster.bootstrap(1),
                   "--topic", topic, "--group", f"cli-{topic}", "--from-beginning",
                   "--max-messages", "60", "--timeout-ms", "60000")
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.split()) == 60
    r = kafka_tool("kafka-consumer-groups", "--bootstrap-server", cluster.bootstrap(2),
                   "--describe", "--group", f"cli-{topic}")
    assert r.returncode == 0, r.stderr
    lags = [line.split() for line in r.stdout.splitlines() if line.startswith(f"cli-{topic}")]
    assert len(lags) == 6 and all(row[5] == "0" for row in lags), r.stdout


def test_killed_broker_is_fenced_and_comes_back_with_its_data(cluster):
    topic = f"fence-{uuid.uuid4().hex[:8]}"
    create(cluster.bootstrap(0), topic, 6)
    records = [(f"k{n}".encode(), f"v{n}".encode()) for n in range(300)]
    acked = produce(cluster.all_bootstrap(), topic, records)
    victim_id = 3
    on_victim = {p for p, (leader, _) in leaders(cluster.bootstrap(0), topic).items()
                 if leader == victim_id}
    assert on_victim
    victim = cluster.nodes[victim_id - 1]
    killed = time.time()
    victim.kill()
    wait_for(lambda: brokers(cluster.bootstrap(0)) == [1, 2], FENCE_WITHIN_S,
             "the killed broker to leave Metadata")
    fenced_after = time.time() - killed

    def victim_offline():
        # Each broker sees the fencing when the metadata log reaches it: ask another one.
        now = leaders(cluster.bootstrap(1), topic)
        # (-1, 5): no leader, LEADER_NOT_AVAILABLE.
        return now if all(now[p] == (-1, 5) for p in on_victim) else None
    now = wait_for(victim_offline, 10, "its partitions leaderless on another broker")
    for p in set(now) - on_victim:
        assert now[p][0] in (1, 2) and now[p][1] == 0, now
    victim.restart()
    wait_for(lambda: brokers(cluster.bootstrap(0)) == [1, 2, 3], 30, "the broker back")
    wait_for(lambda: all(leaders(cluster.bootstrap(0), topic)[p] == (victim_id, 0)
                         for p in on_victim), 30, "its partitions led again")
    got = consume_group(cluster.bootstrap(2), topic, f"g-{topic}", len(records))
    assert sorted(got) == sorted(records), f"{len(got)} of {len(acked)} acknowledged records"
    print(f"fenced {fenced_after:.1f} s after kill -9 (session {SESSION_S} s)")


def test_committed_offsets_survive_the_coordinators_kill(cluster):
    """__consumer_offsets has 3 replicas: kill -9 of the group coordinator's broker moves the
    coordinator to a survivor, which replays the partition and still has every commit."""
    topic = f"coord-{uuid.uuid4().hex[:8]}"
    create(cluster.bootstrap(0), topic, 3, rf=3)
    records = [(f"k{n}".encode(), f"v{n}".encode()) for n in range(90)]
    acked = produce(cluster.all_bootstrap(), topic, records)
    group = f"g-{topic}"
    assert len(consume_group(cluster.bootstrap(0), topic, group, len(records))) == len(records)
    ends = {p: max(o for q, o in acked if q == p) + 1 for p in {q for q, _ in acked}}
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap(0)})
    coordinator = admin.describe_consumer_groups([group])[group].result(timeout=30).coordinator.id
    victim = cluster.nodes[coordinator - 1]
    victim.kill()
    survivors = ",".join(n.bootstrap for n in cluster.nodes if n is not victim)

    def committed():
        c = Consumer({"bootstrap.servers": survivors, "group.id": group,
                      "enable.auto.commit": False})
        try:
            got = c.committed([TopicPartition(topic, p) for p in ends], timeout=5)
            return {t.partition: t.offset for t in got}
        finally:
            c.close()
    seen = wait_for(lambda: (lambda got: got if got == ends else None)(committed()),
                    FENCE_WITHIN_S + 20, f"the committed offsets {ends} through the survivors")
    # The client must outlive its future (a dropped AdminClient never completes it).
    after = AdminClient({"bootstrap.servers": survivors})
    moved = after.describe_consumer_groups([group])[group].result(timeout=30).coordinator.id
    assert moved != coordinator, (moved, coordinator)
    assert seen == ends


def txn_coordinator(bootstrap, transactional_id):
    """The node id FindCoordinator(TRANSACTION) names for `transactional_id` (raw request:
    confluent-kafka's admin client has no call for it)."""
    import socket
    import struct
    from kafka.protocol.metadata import FindCoordinatorRequest, FindCoordinatorResponse
    host, port = bootstrap.split(",")[0].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        for attempt in range(100):
            req = FindCoordinatorRequest(key=transactional_id, key_type=1)
            req.with_header(correlation_id=attempt, client_id="test-cluster")
            s.sendall(req.encode(version=3, header=True, framed=True))
            (size,) = struct.unpack(">i", s.recv(4, socket.MSG_WAITALL))
            r = FindCoordinatorResponse.decode(s.recv(size, socket.MSG_WAITALL), version=3,
                                               header=True)
            if r.error_code == 0:
                return r.node_id
            time.sleep(0.2)
    raise AssertionError(f"no transaction coordinator for {transactional_id}")


def test_a_transaction_survives_its_coordinators_kill(cluster):
    """__transaction_state has 3 replicas and min.insync.replicas 2 (Kafka's
    transaction.state.log defaults): kill -9 of the broker coordinating an open transaction
    moves the coordinator to a survivor, which replays the partition; the producer commits
    there and a read_committed consumer sees both transactions' records exactly once, with
    nothing left hanging (the last stable offset reaches the end)."""
    topic = f"txn-{uuid.uuid4().hex[:8]}"
    create(cluster.bootstrap(0), topic, 3, rf=3)
    txid = f"tx-{topic}"
    p = Producer({"bootstrap.servers": cluster.all_bootstrap(), "transactional.id": txid,
                  "transaction.timeout.ms": 60000, "message.timeout.ms": 60000})
    p.init_transactions(30)
    p.begin_transaction()
    for n in range(30):
        p.produce(topic, key=f"a{n}".encode(), value=b"first")
    p.commit_transaction(30)
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap(0)})
    state = metadata(cluster.bootstrap(0), "__transaction_state").topics["__transaction_state"]
    assert all(len(m.replicas) == 3 for m in state.partitions.values()), state.partitions
    from confluent_kafka.admin import ConfigResource
    res = ConfigResource(ConfigResource.Type.TOPIC, "__transaction_state")
    configs = admin.describe_configs([res])[res].result(timeout=30)
    assert configs["min.insync.replicas"].value == "2"

    p.begin_transaction()
    for n in range(30):
        p.produce(topic, key=f"b{n}".encode(), value=b"second")
    assert p.flush(30) == 0
    coordinator = txn_coordinator(cluster.bootstrap(0), txid)
    victim = cluster.nodes[coordinator - 1]
    victim.kill()
    p.commit_transaction(FENCE_WITHIN_S + 50)
    survivors = ",".join(n.bootstrap for n in cluster.nodes if n is not victim)
    assert txn_coordinator(survivors, txid) != coordinator

    c = Consumer({"bootstrap.servers": survivors, "group.id": f"g-{topic}",
                  "auto.offset.reset": "earliest", "isolation.level": "read_committed",
                  "enable.auto.commit": False})
    c.subscribe([topic])
    got = []
    deadline = time.time() + 60
    try:
        while len(got) < 60 and time.time() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got.append(m.key())
        # The last stable offset reaches each partition's end (past the commit markers):
        # the consumer's position gets there and nothing more comes.
        def at_ends():
            assert c.poll(0.5) is None
            ends = {tp.partition: c.get_watermark_offsets(tp, timeout=10)[1]
                    for tp in c.assignment()}
            now = {tp.partition: tp.offset for tp in c.position(c.assignment())}
            return len(ends) == 3 and now == ends
        wait_for(at_ends, 30, "read_committed positions at the partitions' ends")
    finally:
        c.close()
    assert sorted(got) == sorted([f"a{n}".encode() for n in range(30)]
                                 + [f"b{n}".encode() for n in range(30)])


def test_brokers_keep_their_connections_for_transaction_calls(cluster):
    """Markers to other leaders (WriteTxnMarkers) and KIP-890 verification with a coordinator on
    another broker (AddPartitionsToTxn v5 from the leaders: librdkafka sends Produce v11 and
    below) travel over connections the brokers keep: 40 transactions over partitions on every
    broker open far fewer connections between the brokers than one per transaction."""
    topic = f"txc-{uuid.uuid4().hex[:8]}"
    create(cluster.bootstrap(0), topic, 6)
    assert {leader for leader, _ in leaders(cluster.bootstrap(0), topic).values()} == {1, 2, 3}
    p = Producer({"bootstrap.servers": cluster.all_bootstrap(),
                  "transactional.id": f"tx-{topic}", "linger.ms": 0})
    p.init_transactions(30)
    p.begin_transaction()
    for n in range(6):
        p.produce(topic, value=b"warm", partition=n)
    p.commit_transaction(30)
    before = [cluster.connections_accepted(i) for i in range(3)]
    for t in range(40):
        p.begin_transaction()
        for n in range(6):
            p.produce(topic, value=f"{t}".encode(), partition=n)
        p.commit_transaction(30)
    opened = sum(cluster.connections_accepted(i) - before[i] for i in range(3))
    assert opened < 20, f"{opened} connections for 40 transactions"
