"""Real clients in classic consumer groups (issue 5): sharing partitions, a member crashing,
independent groups, committed offsets across broker crashes, static membership, and the admin
calls on groups and their offsets.

Every test has its own topic and group names (random suffixes), so the file also runs against a
long-lived reference Kafka: KAFKA_BOOTSTRAP=host:port (see conftest.py; tests that restart the
broker skip there unless KAFKA_REF_DIR is set as well):

    tests/kafka-ref/start --dir /tmp/kref-clients --set group.initial.rebalance.delay.ms=0
    KAFKA_REF_DIR=/tmp/kref-clients KAFKA_BOOTSTRAP=$(cat /tmp/kref-clients/bootstrap) \
        python3 -m pytest tests/clients/test_groups.py -v
    tests/kafka-ref/stop /tmp/kref-clients --rm

Member processes are tests/clients/group_member.py (one consumer each, JSON events on stdout).
"""
import collections
import json
import os
import subprocess
import sys
import threading
import time
import uuid
import warnings

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
with warnings.catch_warnings():          # kafka-python loads its schemas with deprecated importlib calls
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaAdminClient, KafkaConsumer
    from kafka import TopicPartition as KTP
    from kafka.structs import OffsetAndMetadata

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")   # kafka-python's importlib use

HERE = os.path.dirname(os.path.abspath(__file__))
MEMBER = os.path.join(HERE, "group_member.py")


def uniq(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create(bootstrap, topic, partitions):
    a = AdminClient({"bootstrap.servers": bootstrap})
    a.create_topics([NewTopic(topic, partitions, 1)])[topic].result(15)


def wait_until(pred, timeout, what):
    """Polls pred() every 20 ms until it is truthy; fails with `what` after `timeout` seconds."""
    deadline = time.time() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.time() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def produce(bootstrap, topic, n, partition=None, start=0):
    """Produces n keyed records (keys k<i % 100>), waits for every acknowledgement and returns
    {(partition, offset): key}."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    acked, errors = {}, []

    def on_delivery(err, msg):
        if err:
            errors.append(err)
        else:
            acked[(msg.partition(), msg.offset())] = msg.key().decode()
    for i in range(start, start + n):
        kw = {} if partition is None else {"partition": partition}
        p.produce(topic, key=b"k%d" % (i % 100), value=b"v%d" % i, on_delivery=on_delivery, **kw)
    assert p.flush(30) == 0
    assert not errors, errors[:3]
    return acked


def kadmin(bootstrap):
    return KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)


def group_offsets(bootstrap, group):
    """{(topic, partition): OffsetAndMetadata} committed for the group (kafka-python admin)."""
    a = kadmin(bootstrap)
    try:
        res = a.list_group_offsets({group: None})[group]
    finally:
        a.close()
    return {(tp.topic, tp.partition): om for tp, om in res.items()}


def describe(bootstrap, group):
    a = kadmin(bootstrap)
    try:
        return a.describe_groups([group])[group]
    finally:
        a.close()


def consume_n(consumer, n, timeout, what):
    """Polls a subscribed confluent consumer until n records arrived; returns them."""
    got = []
    deadline = time.time() + timeout
    while len(got) < n:
        if time.time() > deadline:
            pytest.fail(f"{what}: {len(got)} of {n} records after {timeout} s")
        for m in consumer.consume(1000, 0.2):
            assert m.error() is None, m.error()
            got.append(m)
    return got


class Member:
    """group_member.py in a subprocess; its JSON events are collected by a reader thread."""

    def __init__(self, bootstrap, group, topic, **conf):
        args = [f"{k.replace('_', '.')}={v}" for k, v in conf.items()]
        self.proc = subprocess.Popen([sys.executable, MEMBER, bootstrap, group, topic, *args],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.lock = threading.Lock()
        self.events = []
        self.parts = set()
        self.seen = []              # (partition, offset, key) in arrival order
        self.gen = None
        self.member_id = None
        self.closed = False
        self.killed = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            with self.lock:
                self.events.append(ev)
                kind = ev["ev"]
                if kind == "msg":
                    self.seen.append((ev["p"], ev["o"], ev["k"]))
                elif kind == "assigned":
                    self.parts = set(ev["parts"])
                    self.gen, self.member_id = ev["gen"], ev["member"]
                elif kind in ("revoked", "lost"):
                    self.parts -= set(ev["parts"])
                elif kind == "closed":
                    self.closed = True

    def check(self):
        """Fails the test if the process ended without being asked to."""
        if not self.killed and not self.closed and self.proc.poll() is not None:
            pytest.fail(f"group_member.py exited with {self.proc.returncode} on its own")

    def assignment(self):
        self.check()
        with self.lock:
            return set(self.parts)

    def rebalance_events(self):
        with self.lock:
            return [e for e in self.events if e["ev"] in ("assigned", "revoked", "lost")]

    def seen_records(self):
        self.check()
        with self.lock:
            return list(self.seen)

    def kill(self):
        self.killed = True
        self.proc.kill()
        self.proc.wait(10)

    def close(self, timeout=30):
        """Asks for a clean close() (stdin closed) and waits for the process to exit 0."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        assert self.proc.wait(timeout) == 0
        return self

    def cleanup(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def members():
    started = []
    yield started
    for m in started:
        m.cleanup()


# --- 1. three members share a topic; one is SIGKILLed; nothing is lost across the handover -----

def test_three_members_share_and_survive_a_sigkill(broker, members):
    """Three consumers (separate processes) in one group split a 6-partition topic two each.
    Records are produced while one member is SIGKILLed: after its session times out the other
    two own all six partitions, and every produced (partition, offset) was seen by some member
    (members commit synchronously after processing: duplicates are allowed, gaps are not)."""
    topic, group = uniq("share"), uniq("share-g")
    create(broker.bootstrap, topic, 6)
    conf = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000}
    ms = [Member(broker.bootstrap, group, topic, **conf) for _ in range(3)]
    members.extend(ms)

    def split_two_each(group_members, n_each):
        a = [m.assignment() for m in group_members]
        return all(len(x) == n_each for x in a) and set().union(*a) == set(range(6))
    wait_until(lambda: split_two_each(ms, 2), 60, "three members with two partitions each")
    victim, survivors = ms[0], ms[1:]
    victim_parts = victim.assignment()

    # Produce 3000 keyed records in small steps from a thread: the first 1000 while the victim
    # consumes (it is killed mid-stream), the other 2000 only after the kill.
    total, acked, errors = 3000, {}, []
    produced = collections.Counter()
    killed = threading.Event()

    def producer():
        p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 2})

        def on_delivery(err, msg):
            if err:
                errors.append(err)
            else:
                acked[(msg.partition(), msg.offset())] = msg.key().decode()
        for i in range(total):
            if i == 1000:
                killed.wait(60)
            p.produce(topic, key=b"k%d" % (i % 100), value=b"v%d" % i, on_delivery=on_delivery)
            produced["n"] += 1
            if i % 20 == 19:
                p.poll(0.01)
        p.flush(30)
    t = threading.Thread(target=producer, daemon=True)
    t.start()
    wait_until(lambda: produced["n"] >= 500 and any(p in victim_parts for p, _, _ in victim.seen_records()),
               30, "the victim to consume something")
    victim.kill()
    killed.set()
    killed_at = time.time()
    wait_until(lambda: split_two_each(survivors, 3), 40, "the two survivors to own all six partitions")
    handover = time.time() - killed_at
    t.join(60)
    assert not errors, errors[:3]
    assert len(acked) == total

    def all_seen():
        s = {}
        for m in ms:
            for p, o, k in m.seen_records():
                s[(p, o)] = k
        return s if set(acked) <= set(s) else None
    seen = wait_until(all_seen, 60, "every produced record to be seen by some member")
    assert all(seen[po] == k for po, k in acked.items()), "a record came back with another key"
    assert set(seen) == set(acked), "a member saw an offset nobody produced"
    by_key = collections.Counter(acked.values())
    assert collections.Counter(seen[po] for po in acked) == by_key
    # the survivors took over the victim's partitions and read on from its committed offsets
    took_over = [(p, o) for m in survivors for p, o, _ in m.seen_records() if p in victim_parts]
    assert took_over, "no survivor consumed from the victim's partitions"
    # ... from where the victim committed: at most its last batch (500 records) is read again
    vseen = victim.seen_records()
    for p in victim_parts:
        last = max((o for pp, o, _ in vseen if pp == p), default=-1)
        first = min(o for pp, o in took_over if pp == p)
        assert last + 1 - 500 <= first <= last + 1, (p, last, first)
    assert handover >= 4.0, f"the group moved on {handover:.1f} s after the kill: the 6 s session timeout (1 s heartbeats) was not awaited"
    for m in survivors:
        m.close()


# --- 2. a second group reads the same topic independently --------------------------------------

def test_second_group_reads_everything_independently(broker):
    """Two groups consume the same topic at the same time: each reads every record, and each
    group's committed offsets are its own."""
    topic, ga, gb = uniq("indep"), uniq("indep-a"), uniq("indep-b")
    create(broker.bootstrap, topic, 4)
    acked = produce(broker.bootstrap, topic, 400)
    ends = collections.Counter(p for p, _ in acked)
    cs = {g: Consumer({"bootstrap.servers": broker.bootstrap, "group.id": g, "auto.offset.reset": "earliest",
                       "enable.auto.commit": False}) for g in (ga, gb)}
    for c in cs.values():
        c.subscribe([topic])
    got = {ga: {}, gb: {}}
    deadline = time.time() + 60
    while any(len(v) < 400 for v in got.values()):
        assert time.time() < deadline, f"records per group after 60 s: { {g: len(v) for g, v in got.items()} }"
        for g, c in cs.items():
            for m in c.consume(1000, 0.1):
                assert m.error() is None, m.error()
                got[g][(m.partition(), m.offset())] = m.key().decode()
    # group a commits everything, group b only its first 10 records of each partition
    cs[ga].commit(asynchronous=False)
    cs[gb].commit(offsets=[TopicPartition(topic, p, 10) for p in range(4)], asynchronous=False)
    for c in cs.values():
        c.close()
    assert got[ga] == acked and got[gb] == acked
    assert {tp: om.offset for tp, om in group_offsets(broker.bootstrap, ga).items()} == \
        {(topic, p): n for p, n in ends.items()}
    assert {tp: om.offset for tp, om in group_offsets(broker.bootstrap, gb).items()} == \
        {(topic, p): 10 for p in range(4)}


# --- 3. committed offsets survive a broker crash; a new member resumes there -------------------

@pytest.mark.parametrize("how", ["sigkill", "sigterm"])
def test_committed_offsets_survive_broker_restart(broker, how):
    """Offsets committed synchronously survive kill -9 (and a clean SIGTERM) of the broker: a new
    consumer in the group sees them in committed() and its first record of each partition is
    exactly at the committed offset."""
    if not broker.restartable:
        pytest.skip("needs a broker the test can restart")
    topic, group = uniq("resume"), uniq("resume-g")
    create(broker.bootstrap, topic, 3)
    for p in range(3):
        produce(broker.bootstrap, topic, 100, partition=p)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.subscribe([topic])
    consume_n(c, 300, 60, "first consumer")
    want = {0: 37, 1: 50, 2: 100}
    c.commit(offsets=[TopicPartition(topic, p, o) for p, o in want.items()], asynchronous=False)
    c.close()

    if how == "sigkill":
        broker.kill()
    else:
        broker.stop()
    broker.restart()
    produce(broker.bootstrap, topic, 5, partition=2)     # so partition 2 has something past 100

    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})

    def committed():
        try:
            return {tp.partition: tp.offset for tp in c.committed([TopicPartition(topic, p) for p in range(3)], 10)}
        except KafkaException:
            return None         # e.g. the coordinator still loading after the restart
    assert wait_until(committed, 60, "committed() after the restart") == want
    c.subscribe([topic])
    # the first member left cleanly before the crash: the new one needs no session timeout to pass
    got = consume_n(c, 63 + 50 + 5, 20, "the consumer after the restart (the group's only earlier member had left)")
    c.close()
    first = {}
    for m in got:
        first.setdefault(m.partition(), m.offset())
    assert first == want
    per = collections.Counter(m.partition() for m in got)
    assert per == {0: 63, 1: 50, 2: 5}


# --- 4. kafka-python's KafkaConsumer and kcat's balanced consumer ------------------------------

def test_kafka_python_consumer_group(broker):
    """kafka-python's KafkaConsumer(group_id=...) joins, gets every partition, reads every
    record, and its commit shows up as the group's offsets."""
    topic, group = uniq("kpy"), uniq("kpy-g")
    create(broker.bootstrap, topic, 3)
    acked = produce(broker.bootstrap, topic, 300)
    c = KafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id=group, auto_offset_reset="earliest",
                      enable_auto_commit=False)
    got = {}
    deadline = time.time() + 60
    while len(got) < 300:
        assert time.time() < deadline, f"{len(got)} of 300 records"
        for tp, recs in c.poll(timeout_ms=200).items():
            for r in recs:
                got[(r.partition, r.offset)] = r.key.decode()
    assert got == acked
    assert {tp.partition for tp in c.assignment()} == {0, 1, 2}
    c.commit()
    ends = collections.Counter(p for p, _ in acked)
    assert {p: c.committed(KTP(topic, p)) for p in range(3)} == dict(ends)
    c.close()
    assert {tp: om.offset for tp, om in group_offsets(broker.bootstrap, group).items()} == \
        {(topic, p): n for p, n in ends.items()}


def test_kcat_balanced_consumer(broker):
    """kcat -G (librdkafka's KafkaConsumer) joins a group and reads every record; on exit its
    auto-commit leaves the group's offsets at the end of each partition."""
    topic, group = uniq("kcat"), uniq("kcat-g")
    create(broker.bootstrap, topic, 2)
    acked = produce(broker.bootstrap, topic, 200)
    out = subprocess.run(["kcat", "-b", broker.bootstrap, "-G", group, "-X", "auto.offset.reset=earliest",
                          "-c", "200", "-f", "%p %o %k\n", "-q", topic],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [l.split() for l in out.stdout.splitlines() if l.strip()]
    assert {(int(p), int(o)): k for p, o, k in rows} == acked
    ends = collections.Counter(p for p, _ in acked)
    assert {tp: om.offset for tp, om in group_offsets(broker.bootstrap, group).items()} == \
        {(topic, p): n for p, n in ends.items()}


# --- 5. static membership: a quick restart does not rebalance ----------------------------------

def test_static_member_restart_keeps_partitions_without_rebalance(broker, members):
    """A member with group.instance.id closes and comes back within its session timeout: no
    rebalance (same generation, no revoke or assign at the other member) and it gets the same
    partitions back, under a new member id."""
    topic, group = uniq("static"), uniq("static-g")
    create(broker.bootstrap, topic, 4)
    conf = {"session.timeout.ms": 30000, "heartbeat.interval.ms": 1000}
    a = Member(broker.bootstrap, group, topic, group_instance_id="static-a", **conf)
    b = Member(broker.bootstrap, group, topic, group_instance_id="static-b", **conf)
    members.extend([a, b])
    wait_until(lambda: len(a.assignment()) == 2 and len(b.assignment()) == 2 and a.gen == b.gen,
               60, "two static members with two partitions each")
    gen, a_parts, a_id, b_id = a.gen, a.assignment(), a.member_id, b.member_id
    d = describe(broker.bootstrap, group)
    assert d["group_state"] == "Stable"
    assert sorted(m["group_instance_id"] for m in d["members"]) == ["static-a", "static-b"]
    b_events = len(b.rebalance_events())

    a.close()
    a2 = Member(broker.bootstrap, group, topic, group_instance_id="static-a", **conf)
    members.append(a2)
    wait_until(lambda: a2.assignment(), 30, "the restarted static member to get partitions")
    assert a2.assignment() == a_parts
    assert a2.gen == gen, f"generation moved from {gen} to {a2.gen}: a rebalance happened"
    assert a2.member_id != a_id
    # both members still consume (so b would have seen any rebalance by now)
    acked = produce(broker.bootstrap, topic, 40)
    wait_until(lambda: {(p, o) for m in (a2, b) for p, o, _ in m.seen_records()} >= set(acked),
               30, "both members to consume the new records")
    assert len(b.rebalance_events()) == b_events, b.rebalance_events()[b_events:]
    assert b.member_id == b_id and b.gen == gen
    d = describe(broker.bootstrap, group)
    assert d["group_state"] == "Stable"
    ids = {m["group_instance_id"]: m["member_id"] for m in d["members"]}
    assert ids == {"static-a": a2.member_id, "static-b": b_id}
    assigned = {m["group_instance_id"]: {p for t in m["member_assignment"]["assigned_partitions"]
                                          for p in t["partitions"]} for m in d["members"]}
    assert assigned == {"static-a": a_parts, "static-b": set(range(4)) - a_parts}
    a2.close()
    b.close()


# --- 6. admin calls on groups and their offsets ------------------------------------------------

def test_admin_list_describe_delete_groups_and_offsets(broker):
    """kafka-python's admin client: list_groups, describe_groups (state, members, assignment),
    delete_group_offsets and delete_groups (refused while the group has a member, done once it
    is empty), alter_group_offsets; confluent-kafka's AdminClient lists and alters offsets too."""
    topic, group = uniq("adm"), uniq("adm-g")
    create(broker.bootstrap, topic, 2)
    produce(broker.bootstrap, topic, 20)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "client.id": "adm-client"})
    c.subscribe([topic])
    consume_n(c, 20, 60, "the admin test's consumer")
    c.commit(asynchronous=False)
    a = kadmin(broker.bootstrap)
    try:
        listed = {g["group_id"]: g for g in a.list_groups()}
        assert group in listed
        assert listed[group]["protocol_type"] == "consumer"
        assert listed[group]["group_state"] == "Stable"
        stable = [g["group_id"] for g in a.list_groups(states_filter=["Stable"])]
        assert group in stable
        assert group not in [g["group_id"] for g in a.list_groups(states_filter=["Empty"])]

        d = a.describe_groups([group])[group]
        assert d["error"] is None
        assert d["group_state"] == "Stable"
        assert d["protocol_type"] == "consumer"
        assert d["protocol_data"] in ("range", "roundrobin")
        assert len(d["members"]) == 1
        m = d["members"][0]
        assert m["client_id"] == "adm-client"
        assert m["member_metadata"]["topics"] == [topic]
        assert [(t["topic"], sorted(t["partitions"])) for t in m["member_assignment"]["assigned_partitions"]] == \
            [(topic, [0, 1])]

        # a group with a member: not deletable, and its subscribed offsets neither
        assert a.delete_groups([group]) == {group: "NonEmptyGroupError"}
        res = a.delete_group_offsets(group, [KTP(topic, 0)])
        assert res[KTP(topic, 0)].__name__ == "GroupSubscribedToTopicError"
        c.close()
        wait_until(lambda: a.describe_groups([group])[group]["group_state"] == "Empty", 30,
                   "the group to be Empty after its member left")
        assert a.describe_groups([group])[group]["members"] == []
        before = group_offsets(broker.bootstrap, group)
        assert set(before) == {(topic, 0), (topic, 1)}

        res = a.delete_group_offsets(group, [KTP(topic, 0)])
        assert res[KTP(topic, 0)].__name__ == "NoError"
        assert set(group_offsets(broker.bootstrap, group)) == {(topic, 1)}
        res = a.alter_group_offsets(group, {KTP(topic, 1): OffsetAndMetadata(3, "note", -1)})
        assert res[KTP(topic, 1)].__name__ == "NoError"
        after = group_offsets(broker.bootstrap, group)
        assert after[(topic, 1)].offset == 3 and after[(topic, 1)].metadata == "note"

        # confluent-kafka's AdminClient sees and alters the same offsets
        from confluent_kafka import ConsumerGroupTopicPartitions
        ca = AdminClient({"bootstrap.servers": broker.bootstrap})
        r = ca.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(15)
        assert {(tp.topic, tp.partition): tp.offset for tp in r.topic_partitions} == {(topic, 1): 3}
        r = ca.alter_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, 7)])])[group].result(15)
        assert [(tp.partition, tp.offset, tp.error) for tp in r.topic_partitions] == [(0, 7, None)]
        assert {tp: om.offset for tp, om in group_offsets(broker.bootstrap, group).items()} == \
            {(topic, 0): 7, (topic, 1): 3}
        listed = {g.group_id: g for g in ca.list_consumer_groups().result(15).valid}
        assert group in listed and str(listed[group].state) == "ConsumerGroupState.EMPTY"

        # the empty group is deleted; a second delete, and a never-seen group, are not found
        assert a.delete_groups([group]) == {group: "OK"}
        assert group not in [g["group_id"] for g in a.list_groups()]
        assert a.describe_groups([group])[group]["group_state"] == "Dead"
        assert a.list_group_offsets({group: None})[group] == {}
        never = uniq("never")
        assert a.delete_groups([group, never]) == {group: "GroupIdNotFoundError", never: "GroupIdNotFoundError"}
    finally:
        a.close()


# --- 7. group offsets and group state after a broker restart -----------------------------------

def test_group_offsets_and_state_survive_broker_restart(broker, members):
    """Across kill -9 of the broker: committed offsets (with metadata), offsets set by the admin
    API, deleted offsets and deleted groups stay as they were; the groups are listed and
    described again, and a member that was running rejoins and reads on."""
    if not broker.restartable:
        pytest.skip("needs a broker the test can restart")
    topic = uniq("durable")
    g_commit, g_admin, g_deleted, g_live = (uniq(x) for x in ("dur-commit", "dur-admin", "dur-del", "dur-live"))
    create(broker.bootstrap, topic, 3)
    produce(broker.bootstrap, topic, 90)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": g_commit, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.subscribe([topic])
    consume_n(c, 90, 60, "the committing consumer")
    c.commit(offsets=[TopicPartition(topic, 0, 11, metadata="m0"), TopicPartition(topic, 1, 12),
                      TopicPartition(topic, 2, 13, metadata="m2")], asynchronous=False)
    c.close()
    a = kadmin(broker.bootstrap)
    try:
        assert all(e.__name__ == "NoError" for e in a.alter_group_offsets(
            g_admin, {KTP(topic, p): OffsetAndMetadata(20 + p, "adm", -1) for p in range(3)}).values())
        assert a.delete_group_offsets(g_commit, [KTP(topic, 1)])[KTP(topic, 1)].__name__ == "NoError"
        assert all(e.__name__ == "NoError" for e in a.alter_group_offsets(
            g_deleted, {KTP(topic, 0): OffsetAndMetadata(1, "", -1)}).values())
        assert a.delete_groups([g_deleted]) == {g_deleted: "OK"}
    finally:
        a.close()
    live = Member(broker.bootstrap, g_live, topic)
    members.append(live)
    wait_until(lambda: len({(p, o) for p, o, _ in live.seen_records()}) == 90, 60, "the live member to read all")

    def snapshot():
        offs = {g: group_offsets(broker.bootstrap, g) for g in (g_commit, g_admin, g_deleted, g_live)}
        ad = kadmin(broker.bootstrap)
        try:
            listed = {g["group_id"]: g["group_state"] for g in ad.list_groups()}
        finally:
            ad.close()
        return offs, listed
    before, listed = snapshot()
    # (confluent-kafka 2.16 sends the metadata string with its C terminator: "m0\0")
    assert {tp: (om.offset, om.metadata.rstrip("\0")) for tp, om in before[g_commit].items()} == \
        {(topic, 0): (11, "m0"), (topic, 2): (13, "m2")}
    assert {tp: om.offset for tp, om in before[g_admin].items()} == {(topic, p): 20 + p for p in range(3)}
    assert before[g_deleted] == {}
    wait_until(lambda: sum(om.offset for om in group_offsets(broker.bootstrap, g_live).values()) == 90, 30,
               "the live member's commits")
    before, listed = snapshot()
    assert listed.get(g_commit) == "Empty" and listed.get(g_admin) == "Empty" and listed.get(g_live) == "Stable"
    assert g_deleted not in listed

    broker.kill()
    broker.restart()

    def after_restart():
        try:
            s = snapshot()
        except Exception:
            return None         # coordinator still loading
        return s if s[1].get(g_live) == "Stable" else None
    after, listed_after = wait_until(after_restart, 90, "the groups to be listed after the restart, g_live Stable")
    assert after == before
    assert {g: listed_after.get(g) for g in (g_commit, g_admin, g_deleted)} == \
        {g_commit: "Empty", g_admin: "Empty", g_deleted: None}
    d = describe(broker.bootstrap, g_commit)
    assert d["group_state"] == "Empty" and d["members"] == []
    d = describe(broker.bootstrap, g_live)
    assert d["group_state"] == "Stable" and len(d["members"]) == 1
    # the live member, which kept running through the crash, reads on from its offsets
    acked = produce(broker.bootstrap, topic, 30)
    wait_until(lambda: {(p, o) for p, o, _ in live.seen_records()} >= set(acked), 60,
               "the live member to read the records produced after the restart")
    assert len(live.seen_records()) < 90 + 30 + 90, "the live member re-read the topic from the start"
    live.close()
