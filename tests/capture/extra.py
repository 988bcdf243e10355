#!/usr/bin/env python3
"""More real traffic for the codec corpus: Kafka 4.4.0's own admin tools, each run once against
the reference Kafka behind the recording proxy, for the APIs the differential suite's scenarios
never use (DescribeQuorum, DescribeAcls, ListTransactions, DescribeProducers, client quotas,
SCRAM credentials, ElectLeaders, share groups, streams groups, delegation tokens, features, ...).

    tests/capture/extra.py --out DIR

Starts tests/capture/proxy.py (recording into DIR) and a fresh Kafka (tests/kafka-ref/start)
that advertises the proxy's address, runs every tool in TOOLS (a failing tool is reported, not
fatal: its error answers are real traffic too), then stops Kafka and the proxy by PID.
Only the Python standard library is used.
"""
import argparse, os, signal, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
KREF = os.path.join(ROOT, "tests", "kafka-ref")
LIBS = os.path.join(KREF, ".cache", "libs")
T = "org.apache.kafka.tools."

# (main class, arguments); {b} is the bootstrap, {t} a topic created first.
TOOLS = [
    (T + "BrokerApiVersionsCommand", ["--bootstrap-server", "{b}"]),
    (T + "TopicCommand", ["--bootstrap-server", "{b}", "--create", "--topic", "{t}", "--partitions", "2"]),
    (T + "TopicCommand", ["--bootstrap-server", "{b}", "--describe", "--topic", "{t}"]),
    (T + "ProducerPerformance", ["--topic", "{t}", "--num-records", "200", "--record-size", "100",
                                 "--throughput", "-1", "--producer-props", "bootstrap.servers={b}",
                                 "compression.type=zstd", "--transactional-id", "extra-txn",
                                 "--transaction-duration-ms", "100"]),
    (T + "MetadataQuorumCommand", ["--bootstrap-server", "{b}", "describe", "--status"]),
    (T + "MetadataQuorumCommand", ["--bootstrap-server", "{b}", "describe", "--replication"]),
    (T + "ClusterTool", ["cluster-id", "--bootstrap-server", "{b}"]),
    (T + "FeatureCommand", ["--bootstrap-server", "{b}", "describe"]),
    (T + "AclCommand", ["--bootstrap-server", "{b}", "--list"]),
    (T + "TransactionsCommand", ["--bootstrap-server", "{b}", "list"]),
    (T + "TransactionsCommand", ["--bootstrap-server", "{b}", "describe", "--transactional-id", "extra-txn"]),
    (T + "TransactionsCommand", ["--bootstrap-server", "{b}", "describe-producers", "--topic", "{t}", "--partition", "0"]),
    (T + "TransactionsCommand", ["--bootstrap-server", "{b}", "find-hanging", "--broker-id", "1"]),
    (T + "ClientMetricsCommand", ["--bootstrap-server", "{b}", "--list"]),
    (T + "ConfigCommand", ["--bootstrap-server", "{b}", "--alter", "--entity-type", "clients",
                           "--entity-name", "extra-client", "--add-config", "producer_byte_rate=1048576"]),
    (T + "ConfigCommand", ["--bootstrap-server", "{b}", "--describe", "--entity-type", "clients"]),
    (T + "ConfigCommand", ["--bootstrap-server", "{b}", "--alter", "--entity-type", "users",
                           "--entity-name", "extra-user", "--add-config",
                           "SCRAM-SHA-256=[iterations=4096,password=extra-secret]"]),
    (T + "ConfigCommand", ["--bootstrap-server", "{b}", "--describe", "--entity-type", "users"]),
    (T + "ConfigCommand", ["--bootstrap-server", "{b}", "--describe", "--entity-type", "brokers", "--all"]),
    (T + "LeaderElectionCommand", ["--bootstrap-server", "{b}", "--election-type", "preferred",
                                   "--all-topic-partitions"]),
    (T + "reassign.ReassignPartitionsCommand", ["--bootstrap-server", "{b}", "--list"]),
    (T + "LogDirsCommand", ["--bootstrap-server", "{b}", "--describe"]),
    (T + "GroupsCommand", ["--bootstrap-server", "{b}", "--list"]),
    (T + "ConfigCommand", ["--bootstrap-server", "{b}", "--alter", "--entity-type", "groups",
                           "--entity-name", "extra-share", "--add-config", "share.auto.offset.reset=earliest"]),
    (T + "consumer.ConsoleShareConsumer", ["--bootstrap-server", "{b}", "--topic", "{t}", "--group", "extra-share",
                                           "--max-messages", "50", "--timeout-ms", "15000"]),
    (T + "consumer.group.ShareGroupCommand", ["--bootstrap-server", "{b}", "--describe", "--group", "extra-share"]),
    (T + "consumer.group.ShareGroupCommand", ["--bootstrap-server", "{b}", "--describe", "--group", "extra-share",
                                              "--offsets"]),
    (T + "consumer.ConsoleConsumer", ["--bootstrap-server", "{b}", "--topic", "{t}", "--group", "extra-classic",
                                      "--from-beginning", "--max-messages", "50", "--timeout-ms", "15000",
                                      "--isolation-level", "read_committed"]),
    (T + "consumer.group.ConsumerGroupCommand", ["--bootstrap-server", "{b}", "--describe", "--all-groups"]),
    (T + "consumer.group.ConsumerGroupCommand", ["--bootstrap-server", "{b}", "--reset-offsets", "--group",
                                                 "extra-classic", "--topic", "{t}", "--to-earliest", "--execute"]),
    (T + "streams.StreamsGroupCommand", ["--bootstrap-server", "{b}", "--list"]),
    (T + "DelegationTokenCommand", ["--bootstrap-server", "{b}", "--describe", "--command-config", os.devnull]),
    (T + "GetOffsetShell", ["--bootstrap-server", "{b}", "--topic", "{t}", "--time", "-5"]),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    kdir = tempfile.mkdtemp(prefix="capture-extra-kafka-")
    sys.path.insert(0, KREF)
    import importlib.machinery, importlib.util
    loader = importlib.machinery.SourceFileLoader("kafka_ref_start", os.path.join(KREF, "start"))
    spec = importlib.util.spec_from_loader("kafka_ref_start", loader)
    kstart = importlib.util.module_from_spec(spec)
    loader.exec_module(kstart)
    kport = kstart.free_port()
    proxy = subprocess.Popen([sys.executable, os.path.join(HERE, "proxy.py"), "--listen", "0",
                              "--upstream", f"127.0.0.1:{kport}", "--out", a.out],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True, start_new_session=True)
    kafka_started = False
    failed = []
    try:
        b = proxy.stdout.readline().strip()
        if not b:
            sys.exit("extra: the proxy did not start")
        r = subprocess.run([os.path.join(KREF, "start"), "--dir", kdir, "--port", str(kport),
                            "--set", f"advertised.listeners=PLAINTEXT://{b}"], capture_output=True, text=True,
                           timeout=180)
        if r.returncode != 0:
            sys.exit(f"extra: kafka-ref/start failed: {r.stderr[-2000:]}")
        kafka_started = True
        print(f"extra: Kafka behind the proxy at {b}", file=sys.stderr, flush=True)
        java = ["java", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={KREF}/log4j2-tools.properties", "-cp", os.path.join(LIBS, "*")]
        for cls, args in TOOLS:
            args = [x.format(b=b, t="capture-extra") for x in args]
            t0 = time.monotonic()
            try:
                r = subprocess.run(java + [cls] + args, capture_output=True, text=True, timeout=120,
                                   stdin=subprocess.DEVNULL)
                rc = r.returncode
                why = (r.stderr.strip().splitlines() or [""])[-1][:200]
            except subprocess.TimeoutExpired:
                rc, why = "timeout", ""
            short = cls.removeprefix(T)
            print(f"extra: {rc!s:7} {time.monotonic() - t0:5.1f}s {short} {' '.join(args[2:6])}"
                  + (f"  ({why})" if rc != 0 else ""), file=sys.stderr, flush=True)
            if rc != 0:
                failed.append(short)
    finally:
        if kafka_started:
            subprocess.run([os.path.join(KREF, "stop"), kdir, "--rm"], timeout=60)
        proxy.send_signal(signal.SIGTERM)
        try:
            proxy.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proxy.kill()
            proxy.wait(timeout=10)
    print(f"extra: {len(TOOLS) - len(failed)}/{len(TOOLS)} tools exited 0; raw captures in {a.out}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
