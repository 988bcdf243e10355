"""Scenario modules; importing this package registers all of them (see common.scenario)."""
from . import ck  # noqa: F401  confluent-kafka (librdkafka)
