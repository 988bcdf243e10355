"""A real client uses incremental fetch sessions (KIP-227) with sluice.

kafka-python 3 keeps a fetch session per broker (its FetchSessionHandler, after the Java
client's): after the first full fetch it sends incremental ones. The test consumes a topic with
it and reads sluice's /metrics: incremental fetches were served and a session is kept.
librdkafka (confluent-kafka, kcat) never opens a session (it always sends session id 0 and
epoch -1), so it cannot show this; the Java consumer and franz-go do, like kafka-python.

sluice only: the check reads sluice's own metrics, so the test skips with KAFKA_BOOTSTRAP.
"""
import os
import tempfile
import time
import urllib.request
import uuid
import warnings

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import Broker, free_port

with warnings.catch_warnings():          # kafka-python loads its schemas with deprecated importlib calls
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")   # kafka-python's importlib use


def metric_sum(port, name):
    """The sum over cores of one series in sluice's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.skipif(bool(os.environ.get("KAFKA_BOOTSTRAP")), reason="reads sluice's own metrics")
def test_kafka_python_consumer_fetches_incrementally():
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="sluice-sessions-") as d:
        b = Broker(os.path.join(d, "data"),
                   args=["--cores", "2", "--metrics-listen", f"127.0.0.1:{port}"])
        try:
            topic = f"sessions-{uuid.uuid4().hex[:8]}"
            admin = AdminClient({"bootstrap.servers": b.bootstrap})
            admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])[topic].result(30)
            p = Producer({"bootstrap.servers": b.bootstrap})
            for i in range(300):
                p.produce(topic, key=str(i).encode(), value=b"v%d" % i)
            assert p.flush(30) == 0

            c = KafkaConsumer(bootstrap_servers=b.bootstrap, enable_auto_commit=False,
                              fetch_max_wait_ms=100, consumer_timeout_ms=1000)
            parts = [KTP(topic, i) for i in range(3)]
            c.assign(parts)
            c.seek_to_beginning(*parts)
            got = 0
            deadline = time.time() + 60
            while got < 300 and time.time() < deadline:
                for batch in c.poll(timeout_ms=500).values():
                    got += len(batch)
            # A few more polls with nothing new: incremental fetches that answer no partition.
            for _ in range(3):
                c.poll(timeout_ms=300)
            c.close()
            assert got == 300
            assert metric_sum(port, "sluice_incremental_fetches_total") > 0, \
                "the consumer's fetches after the first were incremental"
            assert metric_sum(port, "sluice_fetch_sessions") >= 1, "its session is kept"
            assert metric_sum(port, "sluice_fetch_session_partitions") >= 3
        finally:
            if b.proc.poll() is None:
                b.kill()
