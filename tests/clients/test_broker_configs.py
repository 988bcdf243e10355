"""Dynamic broker configs through confluent-kafka's admin client: the broker-level defaults
of topic configs change at runtime, topics without their own value follow them, read-only
configs are refused with Kafka's answer, and the values survive a restart."""
import os
import tempfile
import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   ConfigSource, ResourceType)

from conftest import Broker
from test_clients import create


def broker_id(admin):
    return str(admin.describe_cluster().result(15).nodes[0].id)


def alter(admin, resource_type, name, **ops):
    """IncrementalAlterConfigs of one resource; ops are key=(operation, value)."""
    entries = [ConfigEntry(k.replace("_", "."), v, incremental_operation=op) for k, (op, v) in ops.items()]
    res = ConfigResource(resource_type, name, incremental_configs=entries)
    return admin.incremental_alter_configs([res])[res].result(15)


def describe(admin, resource_type, name):
    res = ConfigResource(resource_type, name)
    return admin.describe_configs([res])[res].result(15)


def settled(admin, resource_type, name, key, want, timeout=15):
    """(value, source) of one config once it equals `want`: Kafka answers AlterConfigs before
    its DescribeConfigs shows the change, so both brokers are read until it does."""
    deadline = time.time() + timeout
    while True:
        e = describe(admin, resource_type, name)[key]
        got = (e.value, e.source)
        if got == want or time.time() > deadline:
            return got
        time.sleep(0.2)


def log_start(bootstrap, topic):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused"})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    finally:
        c.close()


def test_broker_retention_applies_to_topics_and_persists(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    me = broker_id(admin)
    create(broker.bootstrap, "dyn", config={"segment.bytes": "1048576"})
    create(broker.bootstrap, "own", config={"segment.bytes": "1048576", "retention.bytes": "-1"})
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 10})
    for i in range(5000):
        p.produce("dyn", value=b"x" * 1000)
        p.produce("own", value=b"y" * 1000)
        if i % 500 == 0:
            p.poll(0)
    assert p.flush(60) == 0
    assert log_start(broker.bootstrap, "dyn") == (0, 5000)

    alter(admin, ResourceType.BROKER, me, log_retention_bytes=(AlterConfigOpType.SET, "1048576"))
    dynamic = ("1048576", ConfigSource.DYNAMIC_BROKER_CONFIG.value)
    assert settled(admin, ResourceType.BROKER, me, "log.retention.bytes", dynamic) == dynamic
    assert settled(admin, ResourceType.TOPIC, "dyn", "retention.bytes", dynamic) == dynamic
    # the topic that sets its own retention.bytes keeps it
    assert describe(admin, ResourceType.TOPIC, "own")["retention.bytes"].value == "-1"

    deadline = time.time() + 30
    lo, hi = 0, 0
    while time.time() < deadline:
        lo, hi = log_start(broker.bootstrap, "dyn")
        if lo > 0:
            break
        time.sleep(0.5)
    assert lo > 0 and hi == 5000, "the broker-level retention.bytes did not apply to the topic"
    assert log_start(broker.bootstrap, "own") == (0, 5000)

    if broker.restartable:
        broker.restart()
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        assert settled(admin, ResourceType.BROKER, me, "log.retention.bytes", dynamic) == dynamic

    alter(admin, ResourceType.BROKER, me, log_retention_bytes=(AlterConfigOpType.DELETE, None))
    default = ("-1", ConfigSource.DEFAULT_CONFIG.value)
    assert settled(admin, ResourceType.TOPIC, "dyn", "retention.bytes", default) == default


def test_broker_config_errors(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    me = broker_id(admin)
    for key, value, text in [
        ("num.partitions", "3", "Cannot update these configs dynamically: [num.partitions]"),
        ("log.retention.hours", "5", "Cannot update these configs dynamically: [log.retention.hours]"),
        ("log.segment.bytes", "100",
         "Invalid value 100 for configuration log.segment.bytes: Value must be at least 1048576"),
        ("log.retention.ms", "abc",
         "Invalid value abc for configuration log.retention.ms: Not a number of type LONG"),
    ]:
        with pytest.raises(KafkaException) as e:
            alter(admin, ResourceType.BROKER, me, **{key.replace(".", "_"): (AlterConfigOpType.SET, value)})
        err = e.value.args[0]
        assert err.name() == "INVALID_REQUEST", (key, err)
        assert err.str() == text, (key, err)
    # nothing was stored
    cfg = describe(admin, ResourceType.BROKER, me)
    assert cfg["log.segment.bytes"].value == "1073741824"
    # a list config takes APPEND, and validation runs on the result
    alter(admin, ResourceType.BROKER, me, log_cleanup_policy=(AlterConfigOpType.APPEND, "compact"))
    both = ("delete,compact", ConfigSource.DYNAMIC_BROKER_CONFIG.value)
    assert settled(admin, ResourceType.BROKER, me, "log.cleanup.policy", both) == both
    alter(admin, ResourceType.BROKER, me, log_cleanup_policy=(AlterConfigOpType.DELETE, None))
    default = ("delete", ConfigSource.DEFAULT_CONFIG.value)
    assert settled(admin, ResourceType.BROKER, me, "log.cleanup.policy", default) == default


def test_config_file_unclean_leader_election_is_described():
    """`unclean_leader_election_enable` in sluice's config file is Kafka's static
    `unclean.leader.election.enable`: DescribeConfigs shows it as a static broker config, and
    topics without their own value inherit it (the controller elects with it on a cluster)."""
    if os.environ.get("KAFKA_BOOTSTRAP"):
        pytest.skip("starts its own sluice with a config setting")
    with tempfile.TemporaryDirectory(prefix="sluice-unclean-") as d:
        b = Broker(os.path.join(d, "data"),
                   args=["--cores", "1", "--set", "unclean_leader_election_enable=true"])
        try:
            admin = AdminClient({"bootstrap.servers": b.bootstrap})
            create(b.bootstrap, "inherits")
            create(b.bootstrap, "own", config={"unclean.leader.election.enable": "false"})
            key = "unclean.leader.election.enable"
            static = ConfigSource.STATIC_BROKER_CONFIG.value
            e = describe(admin, ResourceType.BROKER, broker_id(admin))[key]
            assert (e.value, e.source) == ("true", static)
            e = describe(admin, ResourceType.TOPIC, "inherits")[key]
            assert (e.value, e.source) == ("true", static)
            e = describe(admin, ResourceType.TOPIC, "own")[key]
            assert (e.value, e.source) == ("false", ConfigSource.DYNAMIC_TOPIC_CONFIG.value)
        finally:
            b.kill()
