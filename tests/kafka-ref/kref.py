"""Shared pieces of tests/kafka-ref/start (one node) and start-cluster (three nodes): free ports,
the Metadata probe, server.properties, kafka-storage format and the broker launch.
Only the Python standard library is used."""
import base64, os, random, socket, struct, subprocess, sys, time, uuid

HERE = os.path.dirname(os.path.abspath(__file__))
LIBS = os.path.join(HERE, ".cache", "libs")
CLASSPATH = os.path.join(LIBS, "*")
# Short-lived tool JVMs (kafka-storage format): small heap, C1 only.
TOOL_OPTS = ["-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
             f"-Dlog4j2.configurationFile={HERE}/log4j2-tools.properties"]


def require_installed(who):
    if not os.path.isdir(LIBS) or not any(f.startswith("kafka_2.13-") for f in os.listdir(LIBS)):
        sys.exit(f"{who}: {LIBS} is missing: run tests/kafka-ref/install first")


_GIVEN = set()


def free_port(taken=()):
    """A free loopback port from 20000..32000, below Linux's ephemeral range (32768..60999):
    a port bind(:0) hands out may also go to the next outgoing connection, which then holds it
    when the broker binds it (EADDRINUSE under load). Each port is handed out once per process;
    random picks keep concurrent processes apart."""
    rng = random.Random()
    for _ in range(12000):
        p = rng.randrange(20000, 32000)
        if p in taken or p in _GIVEN:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                continue
        _GIVEN.add(p)
        return p
    raise RuntimeError("no free port in 20000..32000")


def free_ports(n):
    ports = []
    while len(ports) < n:
        ports.append(free_port(ports))
    return ports


def metadata_brokers(port, timeout=2.0):
    """Sends a Metadata v4 request (all topics) and returns the number of brokers in the answer."""
    body = struct.pack(">i", -1) + b"\x00"           # topics: null (all), allow_auto_topic_creation=false
    client = b"kafka-ref-start"
    header = struct.pack(">hhih", 3, 4, 7, len(client)) + client
    req = header + body
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(struct.pack(">i", len(req)) + req)
        def recv(n):
            buf = b""
            while len(buf) < n:
                chunk = s.recv(n - len(buf))
                if not chunk:
                    raise ConnectionError("closed")
                buf += chunk
            return buf
        (size,) = struct.unpack(">i", recv(4))
        resp = recv(size)
    corr, _throttle, nbrokers = struct.unpack(">iii", resp[:12])
    if corr != 7:
        raise ConnectionError("bad correlation id")
    return nbrokers


def node_props(node_id, bport, cport, voters, log_dir, replication=1, min_isr=1):
    """server.properties of one combined broker+controller node. voters: Kafka's
    controller.quorum.voters ("1@127.0.0.1:C1,..."). replication/min_isr apply to the internal
    topics (offsets, transactions, share-group state) and to topics created without a factor."""
    props = {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://127.0.0.1:{bport},CONTROLLER://127.0.0.1:{cport}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{bport}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": log_dir,
        "num.partitions": "1",
        "default.replication.factor": str(replication),
        "offsets.topic.replication.factor": str(replication),
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": str(replication),
        "transaction.state.log.min.isr": str(min_isr),
        "transaction.state.log.num.partitions": "1",
        "share.coordinator.state.topic.replication.factor": str(replication),
        "share.coordinator.state.topic.min.isr": str(min_isr),
        "group.initial.rebalance.delay.ms": "0",
        "num.network.threads": "2",
        "num.io.threads": "4",
    }
    # Only when it differs from Kafka's default (1): written at all, it becomes a
    # STATIC_BROKER_CONFIG synonym that the single-node differential scenarios would see.
    if min_isr != 1:
        props["min.insync.replicas"] = str(min_isr)
    return props


def apply_sets(props, sets, who):
    """--set key=value overrides, in order."""
    for kv in sets:
        k, sep, v = kv.partition("=")
        if not sep:
            sys.exit(f"{who}: --set wants key=value, got {kv!r}")
        props[k.strip()] = v.strip()


def write_props(path, props, who):
    with open(path, "w") as f:
        f.write(f"# written by tests/kafka-ref/{who}\n")
        for k, v in props.items():
            f.write(f"{k}={v}\n")


def new_cluster_id():
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def format_cmd(cfg, cluster_id):
    # The id may start with "-": pass it as --x=v.
    return ["java", *TOOL_OPTS, "-cp", CLASSPATH, "kafka.tools.StorageTool", "format",
            f"--cluster-id={cluster_id}", f"--config={cfg}"]


def format_storage(cfgs, cluster_id, who):
    """kafka-storage format of every config in cfgs with one cluster id, the JVMs in parallel."""
    procs = [subprocess.Popen(format_cmd(c, cluster_id), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for c in cfgs]
    for c, p in zip(cfgs, procs):
        try:
            out, _ = p.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
        if p.returncode != 0:
            for q in procs:
                if q.poll() is None:
                    q.kill()
            sys.exit(f"{who}: kafka-storage format of {c} failed:\n{out}")


def launch(d, cfg, heap):
    """Starts one Kafka server from cfg in its own session; logs to d/server.log (INFO) and
    d/stdout.log; writes d/kafka.pid. -Dkafka.ref.dir=d is what `stop d` checks for."""
    log = os.path.join(d, "server.log")
    jvm = [f"-Xmx{heap}", f"-Xms{heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
           "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent",
           "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={HERE}/log4j2-broker.properties",
           f"-Dkafka.ref.log={log}", f"-Dkafka.ref.dir={d}"]
    out = open(os.path.join(d, "stdout.log"), "w")
    proc = subprocess.Popen(["java", *jvm, "-cp", CLASSPATH, "kafka.Kafka", cfg], stdin=subprocess.DEVNULL,
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    out.close()
    with open(os.path.join(d, "kafka.pid"), "w") as f:
        f.write(f"{proc.pid}\n")
    return proc


def stop_procs(procs, grace=20):
    """SIGTERM to each still-running Popen, SIGKILL after grace seconds (used on start failure)."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def stdout_tail(d, n=3000):
    try:
        return open(os.path.join(d, "stdout.log")).read()[-n:]
    except OSError:
        return ""


class ClusterLayout:
    """The n combined nodes of a loopback cluster in d/node<i>/ (written and formatted by
    prepare_cluster): ids, dirs, cfgs, bports (PLAINTEXT), cports (CONTROLLER), voters."""

    def __init__(self, d, n):
        self.dir = d
        self.ids = list(range(1, n + 1))
        self.dirs = [os.path.join(d, f"node{i}") for i in self.ids]
        self.cfgs = [os.path.join(nd, "server.properties") for nd in self.dirs]
        ports = free_ports(2 * n)
        self.bports, self.cports = ports[:n], ports[n:]
        self.voters = ",".join(f"{i}@127.0.0.1:{c}" for i, c in zip(self.ids, self.cports))
        self.bootstrap = ",".join(f"127.0.0.1:{p}" for p in self.bports)
        self.controllers = ",".join(f"127.0.0.1:{p}" for p in self.cports)
        self.cluster_id = new_cluster_id()
        self.format_s = None


def prepare_cluster(d, n, sets, who):
    """Writes server.properties of n combined broker+controller nodes under d (static
    controller.quorum.voters; replication factor min(3, n) and min.insync.replicas min(2, n) for the
    internal topics and new topics), then formats all of them with one cluster id (in parallel).
    sets: --set key=value overrides for every node. Returns the ClusterLayout."""
    c = ClusterLayout(d, n)
    for nd in c.dirs:
        if os.path.exists(os.path.join(nd, "data")):
            sys.exit(f"{who}: {nd}/data exists: give a fresh --dir")
    for i, nd, cfg, bp, cp in zip(c.ids, c.dirs, c.cfgs, c.bports, c.cports):
        os.makedirs(nd, exist_ok=True)
        props = node_props(i, bp, cp, c.voters, os.path.join(nd, "data"), replication=min(3, n), min_isr=min(2, n))
        apply_sets(props, sets, who)
        write_props(cfg, props, "start-cluster")
    t0 = time.monotonic()
    format_storage(c.cfgs, c.cluster_id, who)
    c.format_s = time.monotonic() - t0
    return c
