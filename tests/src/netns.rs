//! A three-node sluice cluster in Linux network namespaces, for the tests that cut the network
//! or kill nodes (`tests/partition.rs`, `tests/jepsen.rs`; issue 21): the topology and its
//! cleanup, the nodes (start, SIGKILL, restart, by PID), the partitions (`ip rule blackhole` in
//! a router namespace), Metadata / Produce / Fetch / ListOffsets / DescribeQuorum helpers over
//! the raw `sluice_net` client, and the checks of acknowledged records against the logs.
//!
//! Topology (made with `ip` only; the names and the 198.18.x.y/28 block are unique per run):
//!
//! ```text
//!        root namespace: the test (producers, Metadata, ListOffsets, Fetch)    .10
//!                                     | veth
//!        router namespace: forwards; .9 on each of its four veths
//!            |  veth             |  veth             |  veth
//!        node 1 (.1)         node 2 (.2)         node 3 (.3)    one namespace each
//! ```
//!
//! Each node has one address, on the veth to the router: its client listener (`--listen`,
//! advertised in Metadata and used by the followers' fetches) is `.N:9092`, its controller
//! listener (`--controller-voters`) `.N:9093`. Every packet between two nodes, and between the
//! test and a node, goes through the router. A partition is a pair of `ip rule ... blackhole`
//! rules in the router per cut link (a -> b and b -> a): the router drops those packets
//! silently, as a switch that lost the link would, so connects hang and established
//! connections stall without a reset. The test still reaches every node, an isolated one
//! included, and sees what it answers. Healing deletes the rules. The namespaces (and with them
//! every veth, address, route and rule) are deleted when the [`Cluster`] drops, also on a panic;
//! the broker processes are killed by PID first.
//!
//! Needs root and iproute2 (`ip netns`, veth); without them [`Cluster::start`] fails with a
//! message saying so. The broker processes run with `ip netns exec`, which execs the binary,
//! so the PID of the child is the broker's.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_net::client::Client;
use sluice_net::error_code::code;
use sluice_net::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use sluice_net::messages::{
    CreateTopicsRequest, DescribeQuorumRequest, ListOffsetsRequest, MetadataRequest,
    MetadataResponse, ProduceRequest, describe_quorum_request as dq, list_offsets_request,
    metadata_request, produce_request,
};
use sluice_net::record_batch::Batches;
use sluice_net::{Request, Response};

pub use crate::cluster::{Placement, placements_in};
use crate::{fetch_at, replica_log, sluice_bin, wait_for_state};

/// Connect timeout of the helpers' clients; reads wait four times as long (`Client::connect`).
pub const CONNECT: Duration = Duration::from_secs(5);
/// How long any state is waited for (generous: a noisy 2-core machine).
pub const WAIT: Duration = Duration::from_secs(45);
/// The nodes' client and controller ports (each node has its own namespace and address).
pub const CLIENT_PORT: u16 = 9092;
pub const CONTROLLER_PORT: u16 = 9093;
/// The node ids: three combined broker and controller nodes.
pub const NODES: [i32; 3] = [1, 2, 3];
/// Host numbers in the run's /28: nodes are 1..=3, the router and the root namespace these.
const ROUTER_HOST: u32 = 9;
const ROOT_HOST: u32 = 10;
/// 198.18.0.0/15 (RFC 2544, benchmarking): 8192 blocks of 16 addresses.
const BLOCKS: u32 = 8192;

/// Seconds from the first call of this (the start of the test) to `t`.
pub fn secs(t: Instant) -> f64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    t.saturating_duration_since(start).as_secs_f64()
}

/// Seconds since the test started, for the timeline.
pub fn at() -> String {
    format!("[{:6.2}s]", secs(Instant::now()))
}

/// Runs `ip ARGS`: its stdout, or its stderr when it fails.
fn try_ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip`: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// Runs `ip ARGS`; a failure fails the test, saying what it needs.
fn ip(args: &[&str]) -> String {
    try_ip(args).unwrap_or_else(|e| {
        panic!(
            "`ip {}` failed: {e}\nthis test makes network namespaces and veth pairs: it needs \
             root and iproute2 (CI runs it as root)",
            args.join(" ")
        )
    })
}

/// A number that differs between processes and calls.
fn random() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mut x = (nanos ^ std::process::id().rotate_left(16)) | 1;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    x
}

/// A /28 block of 198.18.0.0/15 no route of the root namespace uses (another run's).
fn free_block() -> u32 {
    let first = u32::from(Ipv4Addr::new(198, 18, 0, 0));
    let routes = ip(&["-4", "route", "show", "root", "198.18.0.0/15"]);
    let used: BTreeSet<u32> = routes
        .lines()
        .filter_map(|l| l.split([' ', '/']).next()?.parse::<Ipv4Addr>().ok())
        .map(|a| (u32::from(a) - first) / 16)
        .collect();
    let start = random() % BLOCKS;
    (0..BLOCKS)
        .map(|i| (start + i) % BLOCKS)
        .find(|b| !used.contains(b))
        .expect("a free block in 198.18.0.0/15")
}

/// The namespaces and links of one run. Dropping it deletes the namespaces, and with them
/// every veth (the root namespace's end too), address, route and rule made in them.
#[derive(Debug)]
pub struct Net {
    /// The router's namespace, then node 1's, 2's and 3's, as far as they were made.
    namespaces: Vec<String>,
    /// The root namespace's end of the veth to the router.
    root_link: String,
    /// First address of the run's /28.
    base: u32,
    /// The router's blackhole rules in place: (from, to) node ids.
    cuts: Vec<(i32, i32)>,
}

impl Net {
    /// The router, three node namespaces (`sluice-{tag}-{pid}-{block}-{r,1,2,3}`) and the root
    /// namespace's link to the router.
    pub fn create(tag: &str) -> Net {
        let (pid, block) = (std::process::id(), free_block());
        let mut net = Net {
            namespaces: Vec::new(),
            root_link: format!("slp{pid:x}-{block:x}"),
            base: u32::from(Ipv4Addr::new(198, 18, 0, 0)) + block * 16,
            cuts: Vec::new(),
        };
        for name in ["r", "1", "2", "3"] {
            let ns = format!("sluice-{tag}-{pid}-{block}-{name}");
            ip(&["netns", "add", &ns]);
            net.namespaces.push(ns.clone());
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        let router = net.namespaces[0].clone();
        let forward = Command::new("ip")
            .args(["netns", "exec", &router, "sh", "-c"])
            .arg("echo 1 > /proc/sys/net/ipv4/ip_forward")
            .status();
        assert!(
            forward.as_ref().is_ok_and(|s| s.success()),
            "enabling forwarding in {router}: {forward:?}"
        );
        for id in NODES {
            net.link_node(id);
        }
        net.link_root();
        eprintln!(
            "{} network: router {router}, nodes {:?} at {}..{}, test at {} via {}",
            at(),
            &net.namespaces[1..],
            net.host(1),
            net.host(3),
            net.host(ROOT_HOST),
            net.root_link
        );
        net
    }

    /// The address `host` of the run's block.
    fn host(&self, host: u32) -> String {
        Ipv4Addr::from(self.base + host).to_string()
    }

    /// Node `id`'s address.
    pub fn node(&self, id: i32) -> String {
        self.host(u32::try_from(id).expect("node ids are positive"))
    }

    /// Node `id`'s namespace.
    pub fn ns(&self, id: i32) -> &str {
        &self.namespaces[usize::try_from(id).expect("node ids are positive")]
    }

    /// A veth from node `id` (`eth0`, its address) to the router (`n{id}`), and the routes.
    fn link_node(&self, id: i32) {
        let (ns, router) = (self.ns(id).to_owned(), self.namespaces[0].clone());
        let port = format!("n{id}");
        let (own, gateway) = (format!("{}/32", self.node(id)), self.host(ROUTER_HOST));
        let veth = [
            "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name",
        ];
        ip(&[&veth[..], &[&port, "netns", &router]].concat());
        ip(&["-n", &ns, "addr", "add", &own, "dev", "eth0"]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        let gateway_host = format!("{gateway}/32");
        ip(&["-n", &ns, "route", "add", &gateway_host, "dev", "eth0"]);
        ip(&[
            "-n", &ns, "route", "add", "default", "via", &gateway, "dev", "eth0",
        ]);
        ip(&["-n", &router, "addr", "add", &gateway_host, "dev", &port]);
        ip(&["-n", &router, "link", "set", &port, "up"]);
        ip(&["-n", &router, "route", "add", &own, "dev", &port]);
    }

    /// The veth from the root namespace (the test) to the router (`tester`), and the routes.
    fn link_root(&self) {
        let router = self.namespaces[0].clone();
        let (own, gateway) = (self.host(ROOT_HOST), self.host(ROUTER_HOST));
        let (own_host, gateway_host) = (format!("{own}/32"), format!("{gateway}/32"));
        let link = self.root_link.as_str();
        ip(&[
            "link", "add", link, "type", "veth", "peer", "name", "tester", "netns", &router,
        ]);
        ip(&["addr", "add", &own_host, "dev", link]);
        ip(&["link", "set", link, "up"]);
        ip(&["route", "add", &gateway_host, "dev", link]);
        let block = format!("{}/28", self.host(0));
        ip(&["route", "add", &block, "via", &gateway, "dev", link]);
        ip(&["-n", &router, "addr", "add", &gateway_host, "dev", "tester"]);
        ip(&["-n", &router, "link", "set", "tester", "up"]);
        ip(&["-n", &router, "route", "add", &own_host, "dev", "tester"]);
    }

    /// Drops every packet between node `id` and the other nodes, both ways, in the router.
    pub fn isolate(&mut self, id: i32) {
        for other in NODES.into_iter().filter(|&o| o != id) {
            for (from, to) in [(id, other), (other, id)] {
                self.rule("add", from, to);
                self.cuts.push((from, to));
            }
        }
    }

    /// The router's blackhole rules in place: (from, to) node ids.
    pub fn cuts(&self) -> &[(i32, i32)] {
        &self.cuts
    }

    /// Deletes the router's blackhole rules.
    pub fn heal(&mut self) {
        for (from, to) in std::mem::take(&mut self.cuts) {
            self.rule("del", from, to);
        }
    }

    fn rule(&self, verb: &str, from: i32, to: i32) {
        let (from, to) = (
            format!("{}/32", self.node(from)),
            format!("{}/32", self.node(to)),
        );
        let router = self.namespaces[0].as_str();
        ip(&[
            "-n",
            router,
            "rule",
            verb,
            "from",
            &from,
            "to",
            &to,
            "blackhole",
        ]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            if let Err(e) = try_ip(&["netns", "del", ns]) {
                eprintln!("deleting namespace {ns}: {e}");
            }
        }
        // Gone with the router's namespace unless a process still holds it.
        if try_ip(&["link", "show", &self.root_link]).is_ok()
            && let Err(e) = try_ip(&["link", "del", &self.root_link])
        {
            eprintln!("deleting link {}: {e}", self.root_link);
        }
    }
}

/// One `sluice` node in its namespace: a broker and a controller voter. SIGKILLed (by PID)
/// when dropped.
#[derive(Debug)]
pub struct Node {
    id: i32,
    /// The running process; `None` once killed.
    child: Option<Child>,
    /// The client listener, `address:9092`.
    pub addr: String,
    /// Its stderr (the broker's log), every start appended.
    pub log: PathBuf,
    /// Its data dir.
    pub data: PathBuf,
    /// Its namespace.
    ns: String,
    /// `--controller-voters`.
    voters: String,
    /// How many times it was started.
    pub starts: u32,
}

impl Node {
    /// Starts node `id` in its namespace with its data in `root/node-{id}` and its log in
    /// `root/node-{id}.log`; waits until it listens.
    fn start(net: &Net, root: &Path, id: i32, voters: &str) -> Node {
        let mut node = Node {
            id,
            child: None,
            addr: format!("{}:{CLIENT_PORT}", net.node(id)),
            log: root.join(format!("node-{id}.log")),
            data: root.join(format!("node-{id}")),
            ns: net.ns(id).to_owned(),
            voters: voters.to_owned(),
            starts: 0,
        };
        node.spawn();
        node
    }

    /// Starts the process (again, on the same data dir and address); waits until it listens.
    fn spawn(&mut self) {
        assert!(self.child.is_none(), "node {} is running", self.id);
        let mut stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        self.starts += 1;
        let note = format!("--- {} start {} of node {} ---", at(), self.starts, self.id);
        writeln!(stderr, "{note}").expect("write the log file");
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(sluice_bin())
            .args(["start", "--node-id", &self.id.to_string()])
            .args(["--listen", &self.addr, "--controller-voters", &self.voters])
            .args(["--process-roles", "broker,controller", "--cores", "1"])
            .args(["--metrics-listen", "off", "--data-dir"])
            .arg(&self.data)
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn `ip netns exec ... sluice`");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("sluice: listening on ") {
                    let _ = tx.send(());
                }
            }
        });
        self.child = Some(child);
        if rx.recv_timeout(Duration::from_secs(30)).is_err() {
            let status = self.child.as_mut().map(|c| {
                let _ = c.kill();
                c.wait()
            });
            self.child = None;
            panic!(
                "node {} did not report listening within 30 s (exit: {status:?}); its log:\n{}",
                self.id,
                tail(&self.log, 40)
            );
        }
    }

    /// SIGKILL to the process's PID (`ip netns exec` execs sluice, so it is the broker), as
    /// a crash; waits for it. Nothing if it is not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the process runs (started and not killed, and not exited on its own).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// The process's id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Three nodes, each a broker and a controller voter in its own namespace. Fields drop in
/// order: the processes first, then the namespaces, then the data (unless kept).
#[derive(Debug)]
pub struct Cluster {
    nodes: Vec<Node>,
    pub net: Net,
    /// The data dirs and logs; `None` once [`Cluster::keep`] kept them.
    tmp: Option<tempfile::TempDir>,
    root: PathBuf,
}

impl Cluster {
    /// Makes the network (`tag` in the namespace names), starts the three nodes (data dirs and
    /// logs under a temporary `sluice-{tag}-…` directory) and waits until every broker is
    /// registered and unfenced.
    pub fn start(tag: &str) -> Cluster {
        at();
        let tmp = tempfile::Builder::new()
            .prefix(&format!("sluice-{tag}-"))
            .tempdir()
            .expect("tempdir");
        let root = tmp.path().to_owned();
        let net = Net::create(tag);
        let voters: Vec<String> = NODES
            .iter()
            .map(|id| format!("{id}@{}:{CONTROLLER_PORT}", net.node(*id)))
            .collect();
        let voters = voters.join(",");
        let nodes: Vec<Node> = NODES
            .iter()
            .map(|&id| Node::start(&net, &root, id, &voters))
            .collect();
        let cluster = Cluster {
            nodes,
            net,
            tmp: Some(tmp),
            root,
        };
        wait_for_state(
            WAIT,
            "every broker registered and unfenced (Metadata's brokers)",
            || crate::metadata_of(&cluster.addr(1), "none").map(|r| r.brokers.len()),
            |seen| *seen == Some(3),
        );
        eprintln!("{} three nodes up, voters {voters}", at());
        cluster
    }

    pub fn node(&self, id: i32) -> &Node {
        &self.nodes[usize::try_from(id - 1).expect("node ids start at 1")]
    }

    fn node_mut(&mut self, id: i32) -> &mut Node {
        &mut self.nodes[usize::try_from(id - 1).expect("node ids start at 1")]
    }

    /// Node `id`'s client listener, `address:9092`.
    pub fn addr(&self, id: i32) -> String {
        self.node(id).addr.clone()
    }

    /// Every node's client listener, node 1's first.
    pub fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.addr.clone()).collect()
    }

    /// Where the data dirs and logs are.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Keeps the data dirs and logs after the test (for a failure's post-mortem): their path.
    pub fn keep(&mut self) -> PathBuf {
        if let Some(tmp) = self.tmp.take() {
            let _ = tmp.keep();
        }
        self.root.clone()
    }

    /// SIGKILL of node `id` (by PID), as a crash.
    pub fn kill(&mut self, id: i32) {
        let node = self.node_mut(id);
        let pid = node.pid();
        node.kill();
        eprintln!("{} node {id} killed (SIGKILL to pid {pid:?})", at());
    }

    /// Starts node `id` again on its data dir, if it is not running; waits until it listens.
    pub fn restart(&mut self, id: i32) {
        let node = self.node_mut(id);
        if node.is_running() {
            return;
        }
        node.kill();
        node.spawn();
        eprintln!("{} node {id} restarted (pid {:?})", at(), node.pid());
    }

    /// Whether node `id`'s process runs.
    pub fn is_running(&mut self, id: i32) -> bool {
        self.node_mut(id).is_running()
    }

    /// Node `id`'s replica of `topic`-`partition`: its logical log bytes and next offset.
    pub fn replica(&self, id: i32, topic: &str, partition: i32) -> (Vec<u8>, i64) {
        replica_log(&self.node(id).data, topic, partition)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for node in &self.nodes {
                eprintln!("--- node {} log (last 40 lines) ---", node.id);
                eprintln!("{}", tail(&node.log, 40));
            }
        }
    }
}

/// CreateTopics of `topic` with `partitions` partitions, replication factor 3,
/// min.insync.replicas=2.
pub fn create_replicated(broker: &str, topic: &str, partitions: i32) {
    let mut client = Client::connect(broker, "test", CONNECT).expect("connect");
    let request = Request::CreateTopics(CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: topic.into(),
            num_partitions: partitions,
            replication_factor: 3,
            configs: vec![CreatableTopicConfig {
                name: "min.insync.replicas".into(),
                value: Some("2".into()),
                ..Default::default()
            }],
            ..Default::default()
        }],
        timeout_ms: 30_000,
        ..Default::default()
    });
    let Ok((_, Response::CreateTopics(r))) = client.call(7, &request) else {
        panic!("no CreateTopics answer");
    };
    assert_eq!(r.topics[0].error_code, code::NONE, "{r:?}");
}

/// A broker's Metadata answer for `topic`, waiting at most about `timeout` to connect (and
/// four times that for the answer); `None` without one.
pub fn metadata_within(broker: &str, topic: &str, timeout: Duration) -> Option<MetadataResponse> {
    let mut client = Client::connect(broker, "test", timeout).ok()?;
    let request = Request::Metadata(MetadataRequest {
        topics: Some(vec![metadata_request::MetadataRequestTopic {
            name: Some(topic.into()),
            ..Default::default()
        }]),
        allow_auto_topic_creation: false,
        ..Default::default()
    });
    match client.call(12, &request).ok()? {
        (_, Response::Metadata(r)) => Some(r),
        _ => None,
    }
}

/// `topic`-`partition` as `broker` sees it; `None` if it does not answer or know it.
pub fn placement(broker: &str, topic: &str, partition: i32) -> Option<Placement> {
    let r = metadata_within(broker, topic, CONNECT)?;
    placements_in(&r).remove(&partition)
}

/// Waits (at most `within`) until all three nodes show `topic`-`partition` with the same
/// placement, a leader and the full ISR: that placement, or as `Err` what each node showed
/// last.
pub fn in_sync_within(
    cluster: &Cluster,
    topic: &str,
    partition: i32,
    within: Duration,
) -> Result<Placement, Vec<Option<Placement>>> {
    let deadline = Instant::now() + within;
    loop {
        let views: Vec<Option<Placement>> = NODES
            .iter()
            .map(|&id| placement(&cluster.addr(id), topic, partition))
            .collect();
        let whole = |p: &Placement| p.leader > 0 && p.replicas.len() == 3 && p.isr == p.replicas;
        if views.iter().all(|v| v == &views[0])
            && let Some(p) = views[0].as_ref().filter(|p| whole(p))
        {
            return Ok(p.clone());
        }
        if Instant::now() > deadline {
            return Err(views);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until all three nodes show `topic`-`partition` with the same placement, a leader and
/// the full ISR (at most `within`); fails the test, saying `what`, if they do not.
pub fn wait_in_sync(
    cluster: &Cluster,
    topic: &str,
    partition: i32,
    within: Duration,
    what: &str,
) -> Placement {
    in_sync_within(cluster, topic, partition, within).unwrap_or_else(|views| {
        panic!(
            "timed out waiting for {what}: {topic}-{partition} with the same leader and the \
             full ISR, as every node sees; last seen: {views:?}"
        )
    })
}

/// The active controller: the leader named by the DescribeQuorum answers of the nodes'
/// controller listeners that call themselves leader (a non-leader answers
/// NOT_LEADER_OR_FOLLOWER), the highest epoch's if several do (a cut-off old leader). `None`
/// when no node answers as leader.
pub fn active_controller(cluster: &Cluster, timeout: Duration) -> Option<i32> {
    let request = Request::DescribeQuorum(DescribeQuorumRequest {
        topics: vec![dq::TopicData {
            topic_name: "__cluster_metadata".into(),
            partitions: vec![dq::PartitionData {
                partition_index: 0,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    });
    let ask = |id: i32| -> Option<(i32, i32)> {
        let addr = format!("{}:{CONTROLLER_PORT}", cluster.net.node(id));
        let mut client = Client::connect(&addr, "test", timeout).ok()?;
        let (_, Response::DescribeQuorum(r)) = client.call(2, &request).ok()? else {
            return None;
        };
        let p = r.topics.first()?.partitions.first()?;
        (r.error_code == code::NONE && p.error_code == code::NONE && p.leader_id.0 > 0)
            .then_some((p.leader_epoch, p.leader_id.0))
    };
    NODES
        .iter()
        .filter_map(|&id| ask(id))
        .max()
        .map(|(_, id)| id)
}

/// A Produce of one batch (`records`) to `topic`-`partition`, acks=all, answered within
/// `timeout_ms` by the broker.
pub fn produce_request(topic: &str, partition: i32, records: Bytes, timeout_ms: i32) -> Request {
    Request::Produce(ProduceRequest {
        acks: -1,
        timeout_ms,
        topic_data: vec![produce_request::TopicProduceData {
            name: topic.into(),
            partition_data: vec![produce_request::PartitionProduceData {
                index: partition,
                records: Some(records.into()),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    })
}

/// Sends `request` (a one-partition Produce) on `client`: the partition's (error code, base
/// offset), or why there is none (the connection failed, or no answer within its read timeout).
pub fn produce_on(client: &mut Client, request: &Request) -> Result<(i16, i64), String> {
    match client.call(11, request) {
        Ok((_, Response::Produce(r))) => {
            let p = r
                .responses
                .first()
                .and_then(|t| t.partition_responses.first())
                .ok_or_else(|| format!("a Produce answer without the partition: {r:?}"))?;
            Ok((p.error_code, p.base_offset))
        }
        Ok((_, other)) => Err(format!("not a Produce answer: {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

/// ListOffsets LATEST of `topic`-`partition` as a consumer: the high watermark.
pub fn high_watermark(broker: &str, topic: &str, partition: i32) -> Option<i64> {
    let mut client = Client::connect(broker, "test", CONNECT).ok()?;
    let request = Request::ListOffsets(ListOffsetsRequest {
        replica_id: sluice_net::BrokerId(-1),
        topics: vec![list_offsets_request::ListOffsetsTopic {
            name: topic.into(),
            partitions: vec![list_offsets_request::ListOffsetsPartition {
                partition_index: partition,
                timestamp: -1,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    });
    let Ok((_, Response::ListOffsets(r))) = client.call(7, &request) else {
        return None;
    };
    let p = r.topics.first()?.partitions.first()?;
    (p.error_code == code::NONE).then_some(p.offset)
}

/// One record of a log, with its batch's idempotent-producer stamp.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    pub offset: i64,
    /// The batch's partition leader epoch: the epoch of the leader that appended it.
    pub leader_epoch: i32,
    /// -1 for a record of a non-idempotent producer.
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// The batch's base sequence plus the record's offset delta; -1 without a producer id.
    pub sequence: i32,
    /// The value (empty for a null one).
    pub value: Vec<u8>,
}

impl LogRecord {
    /// The value as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.value).into_owned()
    }
}

/// The records of whole v2 batches (uncompressed) in `bytes` whose offsets are in
/// `from..below`, in the order of the bytes; stops at the first bytes that are not a batch.
pub fn log_records(bytes: Bytes, from: i64, below: i64) -> Vec<LogRecord> {
    let mut out = Vec::new();
    for batch in Batches::new(bytes) {
        let Ok(batch) = batch else { break };
        for record in batch.records().expect("uncompressed") {
            let record = record.expect("a whole record");
            let offset = batch.base_offset() + i64::from(record.offset_delta);
            if offset < from || offset >= below {
                continue;
            }
            let sequence = if batch.base_sequence() < 0 {
                -1
            } else {
                batch.base_sequence().wrapping_add(record.offset_delta)
            };
            out.push(LogRecord {
                offset,
                leader_epoch: batch.partition_leader_epoch(),
                producer_id: batch.producer_id(),
                producer_epoch: batch.producer_epoch(),
                sequence,
                value: record.value.map(|v| v.to_vec()).unwrap_or_default(),
            });
        }
    }
    out
}

/// Every record a consumer reads from `topic`-`partition` on `broker` with Fetch, from offset
/// 0 up to the high watermark.
pub fn read_all(broker: &str, topic: &str, partition: i32) -> Vec<LogRecord> {
    let mut client = Client::connect(broker, "test", CONNECT).expect("connect");
    let mut out: Vec<LogRecord> = Vec::new();
    let mut next = 0;
    loop {
        let Some(f) = fetch_at(&mut client, topic, partition, next) else {
            panic!("no Fetch answer from {broker}");
        };
        let p = &f.responses[0].partitions[0];
        assert_eq!(p.error_code, code::NONE, "fetch at {next}: {f:?}");
        let before = next;
        let records = p.records.as_ref().map(|r| r.to_bytes()).unwrap_or_default();
        let got = log_records(records, next, p.high_watermark);
        next = got.last().map_or(next, |r| r.offset + 1);
        out.extend(got);
        if next >= p.high_watermark {
            return out;
        }
        assert!(next > before, "no progress reading at {next}: {p:?}");
    }
}

/// A partition's replicas as [`logs_identical_within`] saw them last.
#[derive(Debug, Clone)]
pub struct ReplicaViews {
    /// The leader's high watermark (ListOffsets), if it answered.
    pub high_watermark: Option<i64>,
    /// Nodes 1, 2, 3: (next offset, bytes, same bytes as the leader's).
    pub replicas: Vec<(i64, usize, bool)>,
}

/// Waits (at most `within`) until the three replicas' logs of `topic`-`partition` (the logical
/// bytes of the `.log` segments in their data dirs) are byte-identical and end at `leader`'s
/// high watermark, at least `end`: what it saw last, as `Err` if that never happened.
pub fn logs_identical_within(
    cluster: &Cluster,
    (topic, partition): (&str, i32),
    leader: i32,
    end: i64,
    within: Duration,
) -> Result<ReplicaViews, ReplicaViews> {
    let leader_addr = cluster.addr(leader);
    let deadline = Instant::now() + within;
    loop {
        let (leader_log, _) = cluster.replica(leader, topic, partition);
        let replicas: Vec<(i64, usize, bool)> = NODES
            .iter()
            .map(|&id| {
                let (bytes, next) = cluster.replica(id, topic, partition);
                (next, bytes.len(), bytes == leader_log)
            })
            .collect();
        let seen = ReplicaViews {
            high_watermark: high_watermark(&leader_addr, topic, partition),
            replicas,
        };
        let hw = seen.high_watermark;
        let done = |&(next, _, same): &(i64, usize, bool)| same && Some(next) == hw && next >= end;
        if seen.replicas.iter().all(done) {
            return Ok(seen);
        }
        if Instant::now() > deadline {
            return Err(seen);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits (at most `within`) until the three replicas' logs of `topic`-`partition` are
/// byte-identical and end at `leader`'s high watermark, at least `end`
/// ([`logs_identical_within`]); fails the test if they do not. The leader's log as a consumer
/// reads it.
pub fn wait_logs_identical(
    cluster: &Cluster,
    (topic, partition): (&str, i32),
    leader: i32,
    end: i64,
    within: Duration,
) -> Vec<LogRecord> {
    match logs_identical_within(cluster, (topic, partition), leader, end, within) {
        Ok(seen) => eprintln!(
            "{} {topic}-{partition}: the three logs are identical: {} bytes, offsets 0..{}",
            at(),
            seen.replicas[0].1,
            seen.replicas[0].0,
        ),
        Err(seen) => panic!(
            "timed out waiting for the three replicas' logs of {topic}-{partition} \
             byte-identical and ending at leader {leader}'s high watermark, at least {end}; last \
             seen: {seen:?}; where they differ:\n{}",
            replica_differences(cluster, (topic, partition), leader, 20)
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
    read_all(&cluster.addr(leader), topic, partition)
}

/// An offset where the replicas of a partition differ, with every node's record there.
#[derive(Debug, Clone)]
pub struct Difference {
    pub offset: i64,
    /// (node, its record at `offset`, if it has one), for every node.
    pub records: Vec<(i32, Option<LogRecord>)>,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "offset {}:", self.offset)?;
        for (id, r) in &self.records {
            match r {
                Some(r) => {
                    let stamp = (r.producer_id, r.producer_epoch, r.sequence);
                    let epoch = r.leader_epoch;
                    write!(
                        f,
                        " node {id}: {} {stamp:?} leader epoch {epoch};",
                        r.text()
                    )?;
                }
                None => write!(f, " node {id}: nothing;")?,
            }
        }
        Ok(())
    }
}

/// Where the replicas of `topic`-`partition` differ from `leader`'s, record by record (value,
/// producer stamp or leader epoch): the first `limit` offsets.
pub fn replica_differences(
    cluster: &Cluster,
    (topic, partition): (&str, i32),
    leader: i32,
    limit: usize,
) -> Vec<Difference> {
    let records = |id: i32| -> BTreeMap<i64, LogRecord> {
        let (bytes, _) = cluster.replica(id, topic, partition);
        log_records(Bytes::from(bytes), 0, i64::MAX)
            .into_iter()
            .map(|r| (r.offset, r))
            .collect()
    };
    let logs: BTreeMap<i32, BTreeMap<i64, LogRecord>> =
        NODES.iter().map(|&id| (id, records(id))).collect();
    let offsets: BTreeSet<i64> = logs.values().flat_map(|l| l.keys().copied()).collect();
    offsets
        .into_iter()
        .filter(|o| {
            let mine = logs[&leader].get(o);
            logs.values().any(|l| l.get(o) != mine)
        })
        .take(limit)
        .map(|offset| Difference {
            offset,
            records: logs
                .iter()
                .map(|(id, l)| (*id, l.get(&offset).cloned()))
                .collect(),
        })
        .collect()
}

/// An acknowledged record [`check_acknowledged`] found wrong.
#[derive(Debug, Clone)]
pub struct AckFinding {
    /// The acknowledged offset and value.
    pub offset: i64,
    pub value: Vec<u8>,
    /// Where the log has the value.
    pub found: Vec<i64>,
    /// The log around the acknowledged offset: (offset, value).
    pub around: Vec<(i64, String)>,
}

impl std::fmt::Display for AckFinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "acknowledged {} at offset {}; in the log at {:?}; the log around {}: {:?}",
            String::from_utf8_lossy(&self.value),
            self.offset,
            self.found,
            self.offset,
            self.around
        )
    }
}

/// What [`check_acknowledged`] found wrong.
#[derive(Debug, Default)]
pub struct AckFindings {
    /// Acknowledged records in no place of the log.
    pub lost: Vec<AckFinding>,
    /// Acknowledged records in the log, but not at their acknowledged offset.
    pub misplaced: Vec<AckFinding>,
    /// Acknowledged records in the log more than once.
    pub repeated: Vec<AckFinding>,
}

impl AckFindings {
    /// Whether every acknowledged record is in the log exactly once, at its offset.
    pub fn is_clean(&self) -> bool {
        self.lost.is_empty() && self.misplaced.is_empty() && self.repeated.is_empty()
    }

    /// Every finding, one per line: what, then the record.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for (what, list) in [
            ("lost", &self.lost),
            ("misplaced", &self.misplaced),
            ("repeated", &self.repeated),
        ] {
            lines.extend(list.iter().map(|l| format!("{what}: {l}")));
        }
        lines
    }

    /// Every finding, one per line.
    pub fn report(&self) -> String {
        self.lines().join("\n")
    }
}

/// Checks that every acknowledged (offset, value) is in `log` exactly once, at its
/// acknowledged offset.
pub fn check_acknowledged(log: &[LogRecord], acked: &[(i64, Vec<u8>)]) -> AckFindings {
    let at_offset: BTreeMap<i64, &LogRecord> = log.iter().map(|r| (r.offset, r)).collect();
    let mut offsets_of: BTreeMap<&[u8], Vec<i64>> = BTreeMap::new();
    for r in log {
        offsets_of.entry(&r.value).or_default().push(r.offset);
    }
    let mut findings = AckFindings::default();
    for (offset, value) in acked {
        let found = offsets_of
            .get(value.as_slice())
            .cloned()
            .unwrap_or_default();
        let list = if found.is_empty() {
            &mut findings.lost
        } else if !found.contains(offset) {
            &mut findings.misplaced
        } else if found.len() > 1 {
            &mut findings.repeated
        } else {
            continue;
        };
        let around = at_offset
            .range(offset - 3..offset + 4)
            .map(|(o, r)| (*o, r.text()))
            .collect();
        list.push(AckFinding {
            offset: *offset,
            value: value.clone(),
            found,
            around,
        });
    }
    findings
}
