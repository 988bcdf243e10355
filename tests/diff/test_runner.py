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
