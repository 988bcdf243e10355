"""Scenario modules; importing this package registers all of them (see common.scenario)."""
from . import ck  # noqa: F401  confluent-kafka (librdkafka)
from . import kp  # noqa: F401  kafka-python
from . import kcat  # noqa: F401  kcat 1.7 (librdkafka 2.0.2)
from . import cli  # noqa: F401  Apache Kafka's own CLI tools
