"""Scenario modules; importing this package registers all of them (see common.scenario)."""
from . import ck  # noqa: F401  confluent-kafka (librdkafka)
from . import kp  # noqa: F401  kafka-python
