"""Scenarios driven by Apache Kafka's own command-line tools (tests/kafka-ref/kafka-tool)."""
import json
import os
import re
import subprocess
import tempfile

from common import scenario

P = "cli"
LABEL = "kafka-cli"
TOOL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "kafka-ref", "kafka-tool")
EXC = re.compile(r"\b((?:org\.apache\.kafka\.common\.errors|org\.apache\.kafka\.common\.config|java\.lang)\.\w+)")


def reg(name):
    return scenario(P, name, LABEL)


def tool(name, bs, *args, stdin=None, timeout=60):
    extra = {"input": stdin} if stdin is not None else {"stdin": subprocess.DEVNULL}
    r = subprocess.run([TOOL, name, "--bootstrap-server", bs, *args], capture_output=True,
                       text=True, timeout=timeout, **extra)
    exceptions = sorted(set(m.group(1).rsplit(".", 1)[1] for m in EXC.finditer(r.stdout + r.stderr)))
    return r, exceptions


def outcome(t, what, r, exc, **extra):
    t.rec(what, rc=r.returncode, exceptions=exc, **extra)


def parse_describe(text):
    """kafka-topics --describe: one dict per topic line and per partition line."""
    out = []
    for line in text.splitlines():
        if "Topic:" not in line:
            continue
        d = {}
        for field in line.strip().split("\t"):
            k, _, v = field.partition(":")
            d[k.strip()] = v.strip()
        if "Configs" in d:
            d["configs"] = dict(kv.split("=", 1) for kv in d.pop("Configs").split(",") if "=" in kv)
        if "TopicId" in d:
            d["topic_id"] = d.pop("TopicId")
        for k, nk in (("Leader", "leader"), ("Replicas", "replicas"), ("Isr", "isr")):
            if k in d:
                d[nk] = [int(x) for x in d.pop(k).split(",") if x.strip().lstrip("-").isdigit()]
        out.append(d)
    return out


def parse_configs(text):
    """kafka-configs --describe: {name: {value, sensitive}} and the synonyms separately."""
    cfg, syn = {}, {}
    for line in text.splitlines():
        m = re.match(r"\s+([\w.]+)=(.*?) sensitive=(\w+) synonyms=\{(.*)\}$", line)
        if m:
            cfg[m.group(1)] = {"value": m.group(2), "sensitive": m.group(3)}
            syn[m.group(1)] = m.group(4)
    return cfg, syn


@reg("topics_lifecycle")
def topics_lifecycle(t, bs):
    """kafka-topics: create (with a config), create again, list, describe, add partitions, delete; error paths."""
    topic = t.topic()
    r, exc = tool("kafka-topics", bs, "--create", "--topic", topic, "--partitions", "2",
                  "--config", "retention.ms=86400000", "--config", "cleanup.policy=delete")
    outcome(t, "create", r, exc, out=r.stdout.strip())
    r, exc = tool("kafka-topics", bs, "--create", "--topic", topic, "--partitions", "2")
    outcome(t, "create-again", r, exc)
    r, exc = tool("kafka-topics", bs, "--create", "--if-not-exists", "--topic", topic, "--partitions", "2")
    outcome(t, "create-if-not-exists", r, exc)
    r, exc = tool("kafka-topics", bs, "--list")
    outcome(t, "list", r, exc, mine=sorted(x for x in r.stdout.split() if x.startswith(topic)))
    r, exc = tool("kafka-topics", bs, "--describe", "--topic", topic)
    outcome(t, "describe", r, exc, lines=parse_describe(r.stdout))
    r, exc = tool("kafka-topics", bs, "--alter", "--topic", topic, "--partitions", "3")
    outcome(t, "alter-partitions-3", r, exc)
    r, exc = tool("kafka-topics", bs, "--alter", "--topic", topic, "--partitions", "2")
    outcome(t, "alter-partitions-2", r, exc)
    r, exc = tool("kafka-topics", bs, "--describe", "--topic", topic)
    outcome(t, "describe-after-alter", r, exc, lines=parse_describe(r.stdout))
    for name, args in (("invalid-name", ["--topic", "bad name"]),
                       ("rf-3", ["--topic", t.topic("rf3"), "--replication-factor", "3"]),
                       ("partitions-0", ["--topic", t.topic("p0"), "--partitions", "0"]),
                       ("bad-config", ["--topic", t.topic("badcfg"), "--config", "retention.ms=abc"])):
        r, exc = tool("kafka-topics", bs, "--create", *args)
        outcome(t, "create-" + name, r, exc)
    r, exc = tool("kafka-topics", bs, "--delete", "--topic", topic)
    outcome(t, "delete", r, exc)
    r, exc = tool("kafka-topics", bs, "--describe", "--topic", t.topic("never-created"))
    outcome(t, "describe-unknown", r, exc)


@reg("produce_consume_offsets")
def produce_consume_offsets(t, bs):
    """Console producer from stdin (keys, headers), console consumer printing everything, get-offsets."""
    topic = t.topic()
    r, exc = tool("kafka-topics", bs, "--create", "--topic", topic, "--partitions", "2")
    outcome(t, "create", r, exc)
    lines = "".join(f"h1:a{i},h2:b\tkey-{i % 5}\tvalue-{i}\n" for i in range(20))
    r, exc = tool("kafka-console-producer", bs, "--topic", topic, "--reader-property", "parse.key=true",
                  "--reader-property", "parse.headers=true", "--producer-property", "acks=all", stdin=lines)
    outcome(t, "produce", r, exc)
    # one partition at a time (--partition: assign mode, no consumer group; groups are a separate scenario)
    r, exc = tool("kafka-get-offsets", bs, "--topic", topic, "--time", "-1")
    ends = {int(x.split(":")[1]): int(x.split(":")[2]) for x in r.stdout.split() if x.count(":") == 2}
    outcome(t, "end-offsets", r, exc, ends=ends)
    recs = []
    for part in (0, 1):
        r, exc = tool("kafka-console-consumer", bs, "--topic", topic, "--partition", str(part), "--offset", "earliest",
                      "--max-messages", str(max(1, ends.get(part, 0))), "--timeout-ms", "10000",
                      "--formatter-property", "print.key=true",
                      "--formatter-property", "print.partition=true", "--formatter-property", "print.offset=true",
                      "--formatter-property", "print.headers=true", "--formatter-property", "print.timestamp=true")
        for line in r.stdout.splitlines():
            f = line.split("\t")
            if len(f) == 6 and f[0].startswith("CreateTime:"):
                recs.append({"timestamp": int(f[0].split(":")[1]), "partition": int(f[1].split(":")[1]),
                             "offset": int(f[2].split(":")[1]), "headers": f[3], "key": f[4], "value": f[5]})
    recs.sort(key=lambda x: (x["partition"], x["offset"]))
    outcome(t, "consume", r, exc, count=len(recs))
    for x in recs:
        t.rec("record", **x)
    t.check(len(recs) == 20, "20 records consumed", got=len(recs))
    # (-3, max timestamp, is not asked here: console-producer timestamps are clock times, so which
    #  offset holds the max is not deterministic; ck/kp/java.list_offsets cover it with fixed ones)
    for spec in ("-1", "-2", "1000000000000", "4000000000000"):
        r, exc = tool("kafka-get-offsets", bs, "--topic", topic, "--time", spec)
        outcome(t, "get-offsets", r, exc, time=spec, out=sorted(r.stdout.split()))
    r, exc = tool("kafka-console-consumer", bs, "--topic", topic, "--partition", "1", "--offset", "2",
                  "--max-messages", "2", "--timeout-ms", "20000", "--formatter-property", "print.offset=true")
    outcome(t, "consume-partition-1-from-2", r, exc, out=r.stdout.splitlines())


@reg("configs_and_delete_records")
def configs_and_delete_records(t, bs):
    """kafka-configs alter/describe/delete-config; kafka-delete-records; offsets after it."""
    topic = t.topic()
    r, exc = tool("kafka-topics", bs, "--create", "--topic", topic, "--partitions", "1")
    outcome(t, "create", r, exc)
    r, exc = tool("kafka-console-producer", bs, "--topic", topic, stdin="".join(f"m{i}\n" for i in range(10)))
    outcome(t, "produce", r, exc)
    ent = ["--entity-type", "topics", "--entity-name", topic]
    r, exc = tool("kafka-configs", bs, *ent, "--alter", "--add-config", "retention.ms=3600000,segment.bytes=2000000")
    outcome(t, "alter-add", r, exc, out=r.stdout.strip())
    r, exc = tool("kafka-configs", bs, *ent, "--describe")
    cfg, syn1 = parse_configs(r.stdout)
    outcome(t, "describe", r, exc, configs=cfg)
    r, exc = tool("kafka-configs", bs, *ent, "--alter", "--delete-config", "segment.bytes")
    outcome(t, "alter-delete", r, exc)
    r, exc = tool("kafka-configs", bs, *ent, "--describe")
    cfg, syn2 = parse_configs(r.stdout)
    outcome(t, "describe-after-delete", r, exc, configs=cfg)
    r, exc = tool("kafka-configs", bs, *ent, "--alter", "--add-config", "retention.ms=forever")
    outcome(t, "alter-invalid", r, exc)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"version": 1, "partitions": [{"topic": topic, "partition": 0, "offset": 4}]}, f)
    r, exc = tool("kafka-delete-records", bs, "--offset-json-file", f.name)
    outcome(t, "delete-records", r, exc, out=[x for x in r.stdout.splitlines() if x.startswith("partition")])
    with open(f.name, "w") as g:
        json.dump({"version": 1, "partitions": [{"topic": topic, "partition": 0, "offset": 99}]}, g)
    r, exc = tool("kafka-delete-records", bs, "--offset-json-file", f.name)
    outcome(t, "delete-records-past-end", r, exc,
            out=[x.split(":")[0] + ": " + x.split("error:")[-1].strip().split(":")[0]
                 for x in r.stdout.splitlines() if x.startswith("partition")])
    os.unlink(f.name)
    for spec in ("-1", "-2"):
        r, exc = tool("kafka-get-offsets", bs, "--topic", topic, "--time", spec)
        outcome(t, "get-offsets", r, exc, time=spec, out=r.stdout.split())
    r, exc = tool("kafka-console-consumer", bs, "--topic", topic, "--partition", "0", "--offset", "earliest",
                  "--max-messages", "6", "--timeout-ms", "20000", "--formatter-property", "print.offset=true")
    outcome(t, "consume-after-delete", r, exc, out=r.stdout.splitlines())
    # what kafka-configs shows as synonyms (the broker-level defaults behind a topic config)
    t.rec("synonyms", first=syn1, after_delete=syn2)


def parse_group_table(text):
    """kafka-consumer-groups tables: --describe (GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET
    LAG CONSUMER-ID HOST CLIENT-ID) and --reset-offsets (GROUP TOPIC PARTITION NEW-OFFSET)."""
    rows = []
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 6 and f[0] != "GROUP" and f[2].isdigit():
            rows.append({"topic": f[1], "partition": int(f[2]), "current": f[3], "log_end": f[4], "lag": f[5],
                         "has_consumer": f[6] != "-" if len(f) > 6 else None})
        elif len(f) == 4 and f[0] != "GROUP" and f[2].isdigit():
            rows.append({"topic": f[1], "partition": int(f[2]), "new_offset": f[3]})
    rows.sort(key=lambda r: r["partition"])
    return rows


@reg("consumer_groups")
def consumer_groups(t, bs):
    """Console consumer in a group (commits), kafka-consumer-groups list/describe/reset-offsets/delete."""
    topic = t.topic()
    gid = t.topic("group")
    r, exc = tool("kafka-topics", bs, "--create", "--topic", topic, "--partitions", "2")
    outcome(t, "create", r, exc)
    # keyed, so the partition of each record is fixed (murmur2), not left to the sticky partitioner
    r, exc = tool("kafka-console-producer", bs, "--topic", topic, "--reader-property", "parse.key=true",
                  stdin="".join(f"key-{i}\tm{i}\n" for i in range(10)))
    outcome(t, "produce", r, exc)
    r, exc = tool("kafka-console-consumer", bs, "--topic", topic, "--group", gid, "--from-beginning",
                  "--max-messages", "10", "--timeout-ms", "20000")
    outcome(t, "consume-in-group", r, exc, count=len(r.stdout.splitlines()))
    r, exc = tool("kafka-consumer-groups", bs, "--list")
    outcome(t, "list", r, exc, mine=[g for g in r.stdout.split() if g == gid])
    r, exc = tool("kafka-consumer-groups", bs, "--describe", "--group", gid)
    outcome(t, "describe", r, exc, rows=parse_group_table(r.stdout))
    r, exc = tool("kafka-consumer-groups", bs, "--reset-offsets", "--group", gid, "--topic", topic,
                  "--to-earliest", "--execute")
    outcome(t, "reset-to-earliest", r, exc, rows=parse_group_table(r.stdout))
    r, exc = tool("kafka-consumer-groups", bs, "--reset-offsets", "--group", gid, "--topic", f"{topic}:1",
                  "--to-offset", "2", "--execute")
    outcome(t, "reset-partition-1-to-2", r, exc, rows=parse_group_table(r.stdout))
    r, exc = tool("kafka-consumer-groups", bs, "--describe", "--group", gid)
    outcome(t, "describe-after-reset", r, exc, rows=parse_group_table(r.stdout))
    r, exc = tool("kafka-consumer-groups", bs, "--delete", "--group", gid)
    outcome(t, "delete", r, exc)
    r, exc = tool("kafka-consumer-groups", bs, "--describe", "--group", gid)
    outcome(t, "describe-deleted", r, exc)


# ---- Issue 18 item 5: kafka-configs on groups, ListConfigResources, min.insync.replicas --------
# Facts: tests/diff/KAFKA-FACTS.md / the helper's notes (admin.md).

def _configs_until(bs, ent, pred, tries=5):
    """kafka-configs --describe, again (bounded) until pred(stdout) holds: Kafka acknowledges an
    alter before its DescribeConfigs shows it."""
    for _ in range(tries):
        r, exc = tool("kafka-configs", bs, *ent, "--describe")
        if r.returncode != 0 or pred(r.stdout):
            break
    return r, exc


def _lines(text):
    return [x.rstrip() for x in text.splitlines() if x.strip()]


def _error_line(r):
    """The tool's one-line reason (the last 'Caused by'/exception line), for the transcript; it
    is recorded as msg, which normalize.py drops (error text is not compared)."""
    found = [x for x in (r.stdout + r.stderr).splitlines() if "Exception:" in x]
    return found[-1].split("Exception:", 1)[1].strip() if found else None


@reg("group_configs")
def group_configs(t, bs):
    """kafka-configs --entity-type groups: describe a group with no configs, --alter --add-config
    consumer.session.timeout.ms=50000, describe (dynamic and --all), invalid values, delete."""
    gid = t.topic("group")
    ent = ["--entity-type", "groups", "--entity-name", gid]
    r, exc = tool("kafka-configs", bs, *ent, "--describe")
    outcome(t, "describe-no-configs", r, exc, out=_lines(r.stdout))
    r, exc = tool("kafka-configs", bs, *ent, "--alter", "--add-config", "consumer.session.timeout.ms=50000")
    outcome(t, "alter-add", r, exc, out=_lines(r.stdout))
    r, exc = _configs_until(bs, ent, lambda out: "consumer.session.timeout.ms=50000" in out)
    cfg, syn = parse_configs(r.stdout)
    outcome(t, "describe", r, exc, header=_lines(r.stdout)[:1], group_configs=cfg, synonyms=syn)
    r, exc = tool("kafka-configs", bs, *ent, "--describe", "--all")
    cfg, syn = parse_configs(r.stdout)
    outcome(t, "describe-all", r, exc, header=_lines(r.stdout)[:1], group_configs=cfg, synonyms=syn)
    # (ck.group_configs covers the other invalid values; each tool run here is a JVM start)
    for name, kv in (("below-min-session", "consumer.session.timeout.ms=1000"),
                     ("unknown-name", "no.such.group.config=1")):
        r, exc = tool("kafka-configs", bs, *ent, "--alter", "--add-config", kv)
        outcome(t, "alter-invalid-" + name, r, exc, msg=_error_line(r))
    r, exc = tool("kafka-configs", bs, *ent, "--alter", "--add-config",
                  "consumer.heartbeat.interval.ms=6000,consumer.session.timeout.ms=55000")
    outcome(t, "alter-add-two", r, exc, out=_lines(r.stdout))
    r, exc = _configs_until(bs, ent, lambda out: "consumer.session.timeout.ms=55000" in out
                            and "consumer.heartbeat.interval.ms=6000" in out)
    cfg, syn = parse_configs(r.stdout)
    outcome(t, "describe-two", r, exc, group_configs=cfg, synonyms=syn)
    r, exc = tool("kafka-configs", bs, *ent, "--alter", "--delete-config",
                  "consumer.session.timeout.ms,consumer.heartbeat.interval.ms")
    outcome(t, "alter-delete", r, exc, out=_lines(r.stdout))
    r, exc = _configs_until(bs, ent, lambda out: "consumer." not in out)
    outcome(t, "describe-after-delete", r, exc, out=_lines(r.stdout))


def _config_blocks(text, prefix):
    """kafka-configs --describe without --entity-name: {entity: [config lines]} for the entities
    whose name starts with prefix (other scenarios' groups share the broker)."""
    blocks, cur = {}, None
    for line in text.splitlines():
        m = re.match(r"Dynamic configs for [\w-]+ (\S+) are:$", line)
        if m:
            cur = m.group(1) if m.group(1).startswith(prefix) else None
            if cur:
                blocks[cur] = []
        elif cur and line.startswith("  "):
            blocks[cur].append(line.strip())
    return blocks


@reg("list_config_resources")
def list_config_resources(t, bs):
    """ListConfigResources (API 74) as kafka-configs uses it: --describe --entity-type
    client-metrics without a name lists the subscriptions (v1, types [16]); --describe
    --entity-type groups without a name lists ListGroups' groups plus the groups that have
    configs (v1, types [32]), so a group that only has configs shows up."""
    prefix = t.topic()
    r, exc = tool("kafka-configs", bs, "--describe", "--entity-type", "client-metrics")
    outcome(t, "client-metrics-none", r, exc, mine=_config_blocks(r.stdout, prefix))
    sub = t.topic("sub")
    cm = ["--entity-type", "client-metrics", "--entity-name", sub]
    # matches no client (client_id), so the clients of scenarios running beside this one are not asked for telemetry
    r, exc = tool("kafka-configs", bs, *cm, "--alter", "--add-config",
                  "metrics=[org.apache.kafka.producer.],interval.ms=60000,match=[client_id=diff-matches-no-client]")
    outcome(t, "client-metrics-add", r, exc, out=_lines(r.stdout))
    for _ in range(5):
        r, exc = tool("kafka-configs", bs, "--describe", "--entity-type", "client-metrics")
        if r.returncode != 0 or sub in r.stdout:
            break
    outcome(t, "client-metrics-list", r, exc, mine=_config_blocks(r.stdout, prefix))
    r, exc = tool("kafka-configs", bs, *cm, "--alter", "--add-config", "interval.ms=10")
    outcome(t, "client-metrics-invalid-interval", r, exc, msg=_error_line(r))
    r, exc = tool("kafka-configs", bs, *cm, "--alter", "--delete-config", "metrics,interval.ms,match")
    outcome(t, "client-metrics-delete", r, exc, out=_lines(r.stdout))
    r, exc = _configs_until(bs, cm, lambda out: "interval.ms" not in out)
    outcome(t, "client-metrics-describe-deleted", r, exc, out=_lines(r.stdout))
    gid = t.topic("config-only-group")
    r, exc = tool("kafka-configs", bs, "--entity-type", "groups", "--entity-name", gid, "--alter",
                  "--add-config", "consumer.heartbeat.interval.ms=7000")
    outcome(t, "group-add", r, exc, out=_lines(r.stdout))
    for _ in range(5):
        r, exc = tool("kafka-configs", bs, "--describe", "--entity-type", "groups")
        if r.returncode != 0 or "consumer.heartbeat.interval.ms=7000" in r.stdout:
            break
    outcome(t, "groups-list", r, exc, mine=_config_blocks(r.stdout, prefix))


@reg("topic_min_insync_replicas")
def topic_min_insync_replicas(t, bs):
    """Where min.insync.replicas comes from, as the tools print it: kafka-topics --describe shows
    it among a topic's Configs (non-default source), kafka-configs shows the cluster-level
    (--entity-default) value Kafka 4.4's controller writes at bootstrap, and the topic's synonyms."""
    topic = t.topic()
    r, exc = tool("kafka-topics", bs, "--create", "--topic", topic, "--partitions", "1")
    outcome(t, "create", r, exc)
    r, exc = tool("kafka-topics", bs, "--describe", "--topic", topic)
    shown = [d.get("configs") for d in parse_describe(r.stdout) if "PartitionCount" in d]
    outcome(t, "describe-topic", r, exc, topic_configs_shown=shown)
    r, exc = tool("kafka-configs", bs, "--describe", "--entity-type", "brokers", "--entity-default")
    outcome(t, "describe-cluster-default", r, exc,
            out=[x for x in _lines(r.stdout) if not x.startswith("  ") or "min.insync.replicas" in x])
    r, exc = tool("kafka-configs", bs, "--describe", "--entity-type", "topics", "--entity-name", topic, "--all")
    cfg, syn = parse_configs(r.stdout)
    outcome(t, "describe-topic-all", r, exc, min_insync_replicas=cfg.get("min.insync.replicas"),
            synonyms=syn.get("min.insync.replicas"))
# ---- end of issue 18 item 5 (cli) ----
