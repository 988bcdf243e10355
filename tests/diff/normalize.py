"""THE one place where transcripts are normalized before kafka and sluice are compared.

Every rule says what it changes and why that field legitimately differs between two brokers that
behave the same for a client. Anything not matched here is compared exactly. Do not normalize
inside scenarios: record what the client saw, and add a rule here (with its reason) if needed.
"""
import re
import time

# 1. Human-readable error text. Clients show the broker's error message, and Kafka's wording is
#    not part of the protocol contract; the error code/name (recorded separately) is.
DROP_KEYS = {"msg",
             # 2. Timing: how long something took, or the throttle a broker asks for.
             "elapsed_ms", "throttle_time_ms"}

# 3. Identity of the broker process: cluster id is random per `kafka-storage format` / data dir,
#    node ids are configuration (the reference Kafka runs node.id=1), host/port are free ports.
CLUSTER_KEYS = {"cluster_id"}
#    librdkafka's error strings (kcat) name the node: "Broker: Offset out of range (broker 1)".
BROKER_IN_TEXT = re.compile(r"\(broker \d+\)")
NODE_KEYS = {"node_id", "leader", "controller_id", "controller", "broker_id", "replicas", "isr",
             "offline_replicas", "nodes", "broker",
             "coordinator_id"}   # DescribeTransactions: the transaction coordinator's node
#    Lists of node ids become lists of "<node>" of the same length: their order and which ids
#    they hold are placement (on a cluster, which broker leads a partition or answers is up to
#    each broker's placer), but how many there are (replicas, ISR, brokers listed) is compared.
#    A number under "nodes" is a count of brokers (DescribeCluster's, DescribeLogDirs' answers),
#    not an id: compared exactly, so a cluster that lists 1 broker where Kafka lists 3 differs.
NODE_COUNT_KEYS = {"nodes"}
ADDR_KEYS = {"host", "port", "bootstrap", "address"}
# 4. Topic ids are random UUIDs per creation; only whether one is set (non-zero) is compared.
TOPIC_ID_KEYS = {"topic_id"}
ZERO_UUID = {"AAAAAAAAAAAAAAAAAAAAAA", "00000000-0000-0000-0000-000000000000", None, ""}
# 5. Timestamps taken from a clock at run time (producer CreateTime when none was given,
#    LogAppendTime, ListOffsets' max-timestamp of such records): within a day of now they become
#    "<now>". Scenarios that test timestamps set explicit ones (around 2001), which stay exact.
TS_KEYS = {"timestamp", "ts", "max_timestamp",
           "log_append_time_ms",   # Produce answers' LogAppendTime (-1 on CreateTime topics stays)
           "txn_start_time_ms"}    # DescribeTransactions: when the coordinator saw the transaction start
_NOW_MS = time.time() * 1000
_DAY_MS = 86_400_000
#    The same inside texts: Kafka's per-record produce errors (ProduceResponse record_errors,
#    compared exactly) name the accepted window taken from its clock, "The timestamp should be
#    within [now - message.timestamp.before.max.ms, now + ...after.max.ms]"; with the default
#    before.max.ms (Long.MAX_VALUE) the lower bound is now - Long.MAX_VALUE. Such numbers within a
#    day of now (or of now - Long.MAX_VALUE) become "<now>" ("<now-Long.MAX>").
_LONG_MAX = 2**63 - 1
_CLOCK_NUMBER = re.compile(r"-?\d{12,19}")


def _clock_number(m):
    v = int(m.group(0))
    if abs(v - _NOW_MS) < _DAY_MS:
        return "<now>"
    if abs(v - (_NOW_MS - _LONG_MAX)) < _DAY_MS:
        return "<now-Long.MAX>"
    return m.group(0)

# 6. Kafka-only configs. DescribeConfigs on Kafka lists every topic config it knows (~40 per
#    topic: remote storage, compaction tuning, throttled replicas, ...), most of which sluice does
#    not have. Only the topic configs issue 12 makes sluice implement (plus compression.type) are
#    compared, on both sides; other entries of a "configs" map are dropped. A scenario that needs
#    another config compared adds it here. min.insync.replicas is compared since sluice has it as
#    Kafka 4.4 does (a cluster-level dynamic default, source DYNAMIC_DEFAULT_BROKER_CONFIG).
COMPARED_TOPIC_CONFIGS = {
    "cleanup.policy", "max.message.bytes", "message.timestamp.type", "retention.bytes",
    "retention.ms", "segment.bytes", "compression.type", "min.insync.replicas",
}
CONFIG_KEYS = {"configs"}

# 8. Producer ids (InitProducerId, DescribeTransactions, ListTransactions): Kafka hands them out
#    from blocks the controller allocates, in the order producers ask, and scenarios run 3 at a
#    time, so which id a scenario's producer gets is a race. Only whether one is set (>= 0) is
#    compared; scenarios record the relations that matter (same id after fencing, epoch deltas)
#    as fields of their own. Producer epochs are compared exactly.
PRODUCER_ID_KEYS = {"producer_id"}


def _node(v):
    if isinstance(v, list):
        return ["<node>" if isinstance(x, int) and x >= 0 else x for x in v]
    if isinstance(v, int) and v >= 0:
        return "<node>"
    return v


def _value(key, v):
    if key in CLUSTER_KEYS:
        return "<cluster-id>" if v else v
    if key in NODE_COUNT_KEYS and isinstance(v, int) and not isinstance(v, bool):
        return v
    if key in NODE_KEYS:
        return _node(v)
    if key in ADDR_KEYS:
        return "<addr>" if v is not None else v
    if key in TOPIC_ID_KEYS:
        return v if v in ZERO_UUID else "<topic-id>"
    if key in PRODUCER_ID_KEYS and isinstance(v, int) and not isinstance(v, bool):
        return "<producer-id>" if v >= 0 else v
    if key in TS_KEYS and isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v - _NOW_MS) < _DAY_MS:
        return "<now>"
    if key in CONFIG_KEYS and isinstance(v, dict):
        return {k: norm(x) for k, x in v.items() if k in COMPARED_TOPIC_CONFIGS}
    return norm(v)


def norm(v):
    if isinstance(v, dict):
        return {k: _value(k, x) for k, x in v.items() if k not in DROP_KEYS}
    if isinstance(v, list):
        return [norm(x) for x in v]
    if isinstance(v, str):
        if "(broker " in v:
            v = BROKER_IN_TEXT.sub("(broker <node>)", v)
        return _CLOCK_NUMBER.sub(_clock_number, v)
    return v


# 7. Cluster comparisons only (kafka3 against sluice3): the 3-node reference is started by
#    tests/kafka-ref/start-cluster, whose own default min.insync.replicas is 2; the runner overrides
#    it with --set min.insync.replicas=1 (replication factor 1, as sluice's cluster has), and a
#    value written in server.properties shows as a STATIC_BROKER_CONFIG synonym (kafka-configs
#    prints "..., STATIC_BROKER_CONFIG:min.insync.replicas=1, ...") that a broker without that
#    line (the single-node reference, sluice) does not report. That one synonym is dropped from
#    texts; any other static synonym, or another value, is still compared.
STATIC_MIN_ISR_SYNONYM = re.compile(r"STATIC_BROKER_CONFIG:min\.insync\.replicas=1(?:, |(?=\}|$))")


def _cluster(v):
    if isinstance(v, dict):
        return {k: _cluster(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_cluster(x) for x in v]
    if isinstance(v, str) and "STATIC_BROKER_CONFIG:min.insync.replicas=1" in v:
        return STATIC_MIN_ISR_SYNONYM.sub("", v).replace(", }", "}").rstrip(", ")
    return v


def normalize_line(line, cluster=False):
    """cluster: the line comes from a 3-node target (rule 7 applies too)."""
    return norm(_cluster(line) if cluster else line)
