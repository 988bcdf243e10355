"""Unit tests of the differential runner's own logic (normalization, diffing, verdicts).
Run: python3 -m pytest tests/diff/test_runner.py -q   (no broker needed)."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import normalize  # noqa: E402
import run  # noqa: E402


def test_normalize_identity_fields():
    line = {"kind": "describe-cluster", "cluster_id": "abcDEF", "controller_id": 1, "leader": 1,
            "replicas": [1], "isr": [1], "host": "127.0.0.1", "port": 40000, "topic_id": "X7Fc9iy3Shqd8OA",
            "msg": "Broker: whatever", "throttle_time_ms": 3}
    n = normalize.normalize_line(line)
    assert n == {"kind": "describe-cluster", "cluster_id": "<cluster-id>", "controller_id": "<node>",
                 "leader": "<node>", "replicas": ["<node>"], "isr": ["<node>"], "host": "<addr>",
                 "port": "<addr>", "topic_id": "<topic-id>"}


def test_normalize_keeps_what_a_client_must_see():
    # a leader of -1 (no leader) is not a node id; an unset topic id stays visible
    n = normalize.normalize_line({"leader": -1, "topic_id": None, "error": "UNKNOWN_TOPIC_OR_PART", "code": 3})
    assert n == {"leader": -1, "topic_id": None, "error": "UNKNOWN_TOPIC_OR_PART", "code": 3}


def test_normalize_broker_named_in_librdkafka_text():
    n = normalize.normalize_line({"errors": ["Broker: Offset out of range (broker 1)"]})
    assert n == {"errors": ["Broker: Offset out of range (broker <node>)"]}


def test_normalize_timestamps_only_near_now():
    now = int(time.time() * 1000)
    assert normalize.normalize_line({"timestamp": now})["timestamp"] == "<now>"
    assert normalize.normalize_line({"timestamp": 1_000_000_005_000})["timestamp"] == 1_000_000_005_000
    assert normalize.normalize_line({"timestamp": -1})["timestamp"] == -1


def test_normalize_transaction_fields():
    # producer ids are a race between scenarios (only whether one is set counts), the
    # coordinator is a node, the transaction's start time comes from the broker's clock;
    # epochs, states, partitions and timeouts stay exact
    now = int(time.time() * 1000)
    line = {"kind": "describe-txn", "producer_id": 17, "producer_epoch": 2, "coordinator_id": 3,
            "txn_start_time_ms": now, "state": "Ongoing", "timeout_ms": 3000, "partitions": ["t-0"]}
    assert normalize.normalize_line(line) == {
        "kind": "describe-txn", "producer_id": "<producer-id>", "producer_epoch": 2, "coordinator_id": "<node>",
        "txn_start_time_ms": "<now>", "state": "Ongoing", "timeout_ms": 3000, "partitions": ["t-0"]}
    assert normalize.normalize_line({"producer_id": -1, "txn_start_time_ms": None}) == {
        "producer_id": -1, "txn_start_time_ms": None}


def test_normalize_configs_compares_only_the_listed_ones():
    cfg = {"retention.ms": {"value": "1000"}, "remote.storage.enable": {"value": "false"},
           "cleanup.policy": {"value": "delete"}, "min.insync.replicas": {"value": "1", "source": 3}}
    n = normalize.normalize_line({"configs": cfg})
    assert n == {"configs": {"retention.ms": {"value": "1000"}, "cleanup.policy": {"value": "delete"},
                             "min.insync.replicas": {"value": "1", "source": 3}}}


def test_first_difference():
    a = [{"k": 1}, {"k": 2}]
    assert run.first_difference(a, list(a)) is None
    assert run.first_difference(a, [{"k": 1}, {"k": 3}]) == 1
    assert run.first_difference(a, [{"k": 1}]) == 1


def test_describe_difference_names_the_field():
    text = run.describe_difference("ck.x", [{"kind": "r", "offset": 0}], [{"kind": "r", "offset": 1}], 0,
                                   "k.jsonl", "s.jsonl", "ok")
    assert "offset: kafka 0  sluice 1" in text
    assert "k.jsonl" in text and "s.jsonl" in text


def _write(out, target, sid, lines):
    os.makedirs(os.path.join(out, target), exist_ok=True)
    with open(os.path.join(out, target, f"{sid}.jsonl"), "w") as f:
        for line in lines:
            f.write(json.dumps(line) + "\n")


def test_verdicts(tmp_path):
    out = str(tmp_path)
    same = [{"kind": "record", "offset": 0, "cluster_id": "a"}, {"kind": "end"}]
    _write(out, "kafka", "ck.same", same)
    _write(out, "sluice", "ck.same", [{"kind": "record", "offset": 0, "cluster_id": "b"}, {"kind": "end"}])
    _write(out, "kafka", "ck.differs", same)
    _write(out, "sluice", "ck.differs", [{"kind": "record", "offset": 5}, {"kind": "end"}])
    _write(out, "kafka", "ck.listed", same)
    _write(out, "sluice", "ck.listed", [{"kind": "exception", "type": "X"}])
    _write(out, "kafka", "ck.broken_on_kafka", [{"kind": "check-failed"}])
    _write(out, "sluice", "ck.broken_on_kafka", [{"kind": "check-failed"}])
    ids = ["ck.same", "ck.differs", "ck.listed", "ck.broken_on_kafka"]
    results = {"kafka": {"ck.same": "ok", "ck.differs": "ok", "ck.listed": "ok", "ck.broken_on_kafka": "failed"},
               "sluice": {"ck.same": "ok", "ck.differs": "ok", "ck.listed": "failed", "ck.broken_on_kafka": "failed"}}
    known = [{"scenario": "ck.list*", "reason": "not built yet"}]
    failures, counts, passed, failed, skipped = run.verdicts(ids, ["kafka", "sluice"], results, {}, known, out, "sluice")
    c = counts["ck"] if "ck" in counts else next(iter(counts.values()))
    assert c["matched"] == 1 and c["known"] == 1 and c["differ"] == 2 and c["kafka_ok"] == 3
    assert failed == 3   # differs on sluice, broken on kafka, and its sluice side (status failed, unlisted)
    assert skipped == 1
    text = "\n".join(failures)
    assert "ck.differs" in text and "fails on Apache Kafka itself" in text and "ck.same" not in text


def test_verdicts_sluice_unavailable_and_fixed(tmp_path):
    out = str(tmp_path)
    _write(out, "kafka", "ck.a", [{"kind": "end"}])
    _write(out, "sluice", "ck.a", [{"kind": "end"}])
    results = {"kafka": {"ck.a": "ok"}, "sluice": {"ck.a": "ok"}}
    known = [{"scenario": "ck.a", "reason": "was not built"}]
    f, counts, p, fl, s = run.verdicts(["ck.a"], ["kafka", "sluice"], results, {}, known, out, "sluice")
    assert fl == 0 and next(iter(counts.values()))["fixed"] == 1
    f, counts, p, fl, s = run.verdicts(["ck.a"], ["kafka", "sluice"], results, {}, known, out, "sluice", strict=True)
    assert fl == 1
    f, counts, p, fl, s = run.verdicts(["ck.a"], ["kafka", "sluice"], {"kafka": {"ck.a": "ok"}},
                                       {"sluice": "not built yet"}, [], out, "sluice")
    assert (p, fl, s) == (1, 0, 1)


def test_known_differences_file_is_valid_and_every_entry_names_a_scenario():
    known = run.load_known()
    ids = set(run.common.REGISTRY) | {s for c in run.batch_clients.CLIENTS for s in c.scenario_ids()}
    import fnmatch
    for k in known:
        assert any(fnmatch.fnmatchcase(s, k["scenario"]) for s in ids), k


# ---- cluster targets (kafka3, sluice3) ----

def test_pick_targets():
    import pytest
    assert run.pick_targets(["kafka", "sluice"]) == ("kafka", "sluice")
    assert run.pick_targets(["kafka3", "sluice3"]) == ("kafka3", "sluice3")
    assert run.pick_targets(["kafka3"]) == ("kafka3", None)
    assert run.pick_targets(["sluice3"]) == (None, "sluice3")
    assert run.pick_targets(["kafka", "kafka2"]) == ("kafka", "kafka2")
    for bad in (["kafka", "sluice3"], ["kafka3", "sluice"], ["kafka", "kafka3"], ["sluice", "kafka2"],
                ["sluice", "sluice3"], ["kafka4"], ["kafka", "kafka"]):
        with pytest.raises(SystemExit):
            run.pick_targets(bad)


def test_sluice_cluster_commands():
    cmds = run.sluice_cluster_commands("/bin/sluice", "/d", [9001, 9002, 9003], [9101, 9102, 9103],
                                       [9201, 9202, 9203])
    assert len(cmds) == 3
    assert cmds[1] == ["/bin/sluice", "start", "--node-id", "2", "--controller-voters",
                       "1@127.0.0.1:9101,2@127.0.0.1:9102,3@127.0.0.1:9103", "--listen", "127.0.0.1:9002",
                       "--metrics-listen", "127.0.0.1:9202", "--data-dir", "/d/node2"]


def test_kafka_cluster_sets_are_replication_factor_one():
    sets = dict(kv.split("=", 1) for kv in run.KAFKA_CLUSTER_SETS)
    assert sets == {"default.replication.factor": "1", "offsets.topic.replication.factor": "1",
                    "min.insync.replicas": "1", "transaction.state.log.replication.factor": "1",
                    "transaction.state.log.min.isr": "1"}


def test_normalize_node_lists_keep_their_length_not_their_order():
    a = normalize.normalize_line({"brokers": [{"node_id": 1}, {"node_id": 2}, {"node_id": 3}],
                                  "replicas": [3, 1], "isr": [2]})
    b = normalize.normalize_line({"brokers": [{"node_id": 3}, {"node_id": 1}, {"node_id": 2}],
                                  "replicas": [1, 2], "isr": [3]})
    assert a == b
    one = normalize.normalize_line({"brokers": [{"node_id": 1}]})
    assert one != normalize.normalize_line({"brokers": [{"node_id": 1}, {"node_id": 2}, {"node_id": 3}]})
    assert normalize.normalize_line({"replicas": [1]}) != normalize.normalize_line({"replicas": [1, 2]})


def test_normalize_nodes_count_is_compared():
    # a number under "nodes" is how many brokers DescribeCluster/DescribeLogDirs answered for
    assert normalize.normalize_line({"nodes": 3}) == {"nodes": 3}
    assert normalize.normalize_line({"nodes": 1}) != normalize.normalize_line({"nodes": 3})
    assert normalize.normalize_line({"nodes": [1, 2]}) == {"nodes": ["<node>", "<node>"]}


def test_normalize_cluster_drops_only_the_static_min_isr_synonym():
    line = {"synonyms": "DYNAMIC_DEFAULT_BROKER_CONFIG:min.insync.replicas=1, "
                        "STATIC_BROKER_CONFIG:min.insync.replicas=1, DEFAULT_CONFIG:min.insync.replicas=1",
            "out": ["  min.insync.replicas=1 sensitive=false synonyms={DYNAMIC_DEFAULT_BROKER_CONFIG:"
                    "min.insync.replicas=1, STATIC_BROKER_CONFIG:min.insync.replicas=1}"]}
    n = normalize.normalize_line(line, cluster=True)
    assert n["synonyms"] == ("DYNAMIC_DEFAULT_BROKER_CONFIG:min.insync.replicas=1, "
                             "DEFAULT_CONFIG:min.insync.replicas=1")
    assert n["out"] == ["  min.insync.replicas=1 sensitive=false synonyms={DYNAMIC_DEFAULT_BROKER_CONFIG:"
                        "min.insync.replicas=1}"]
    # single-node comparisons keep it (the single-node reference does not write it), and other
    # values or other static synonyms are still compared on a cluster
    assert normalize.normalize_line(line) == line
    other = {"s": "STATIC_BROKER_CONFIG:min.insync.replicas=2, STATIC_BROKER_CONFIG:log.retention.ms=5"}
    assert normalize.normalize_line(other, cluster=True) == other


def test_load_known_cluster_reuses_single_node_reasons(tmp_path, monkeypatch):
    import pytest
    single = [{"scenario": "java.tx", "reason": "not built", "file": run.KNOWN_FILE}]
    (tmp_path / run.KNOWN_CLUSTER_FILE).write_text(
        '[[known]]\nscenario = "java.tx"\nsingle_node = true\n\n'
        '[[known]]\nscenario = "ck.alter*"\nreason = "refused on a cluster"\n')
    monkeypatch.setattr(run, "HERE", str(tmp_path))
    k = run.load_known_cluster(single)
    assert [(x["scenario"], x["reason"], x["file"]) for x in k] == [
        ("java.tx", "not built", run.KNOWN_CLUSTER_FILE), ("ck.alter*", "refused on a cluster", run.KNOWN_CLUSTER_FILE)]
    for body in ('[[known]]\nscenario = "java.other"\nsingle_node = true\n',       # no such single-node entry
                 '[[known]]\nscenario = "java.tx"\nsingle_node = true\nreason = "x"\n',   # both
                 '[[known]]\nscenario = "ck.x"\n'):                                  # no reason
        (tmp_path / run.KNOWN_CLUSTER_FILE).write_text(body)
        with pytest.raises(SystemExit):
            run.load_known_cluster(single)


def test_known_cluster_file_is_valid_and_every_entry_names_a_scenario():
    known = run.load_known_cluster()
    ids = set(run.common.REGISTRY) | {s for c in run.batch_clients.CLIENTS for s in c.scenario_ids()}
    import fnmatch
    for k in known:
        assert k["reason"] and any(fnmatch.fnmatchcase(s, k["scenario"]) for s in ids), k


def test_verdicts_cluster(tmp_path):
    out = str(tmp_path)
    _write(out, "kafka3", "ck.a", [{"kind": "brokers", "nodes": 3, "leader": 2}, {"kind": "end"}])
    _write(out, "sluice3", "ck.a", [{"kind": "brokers", "nodes": 3, "leader": 3}, {"kind": "end"}])
    _write(out, "kafka3", "ck.b", [{"kind": "brokers", "nodes": 3}])
    _write(out, "sluice3", "ck.b", [{"kind": "brokers", "nodes": 1}])
    _write(out, "kafka3", "ck.c", [{"kind": "altered"}])
    _write(out, "sluice3", "ck.c", [{"kind": "exception"}])
    results = {"kafka3": {"ck.a": "ok", "ck.b": "ok", "ck.c": "ok"},
               "sluice3": {"ck.a": "ok", "ck.b": "ok", "ck.c": "failed"}}
    known = [{"scenario": "ck.c", "reason": "refused on a cluster", "file": run.KNOWN_CLUSTER_FILE}]
    failures, counts, p, fl, s = run.verdicts(["ck.a", "ck.b", "ck.c"], ["kafka3", "sluice3"], results, {},
                                              known, out, "sluice3", ref="kafka3")
    c = next(iter(counts.values()))
    assert (c["kafka_ok"], c["matched"], c["known"], c["differ"]) == (3, 1, 1, 1)
    text = "\n".join(failures)
    assert "ck.b" in text and "nodes: kafka3 3  sluice3 1" in text
    # the reference defaults to the one the compared side goes with
    f2, *_ = run.verdicts(["ck.b"], ["kafka3", "sluice3"], results, {}, [], out, "sluice3")
    assert "kafka3" in "\n".join(f2)
    # a listed scenario that matches names the file to remove it from
    _write(out, "sluice3", "ck.c", [{"kind": "altered"}])
    results["sluice3"]["ck.c"] = "ok"
    f3, counts, p, fl, s = run.verdicts(["ck.c"], ["kafka3", "sluice3"], results, {}, known, out, "sluice3",
                                        strict=True, ref="kafka3")
    assert fl == 1 and run.KNOWN_CLUSTER_FILE in "\n".join(f3)
