//! A network partition of one broker (issue 21), made with Linux network namespaces and veth
//! pairs: three combined broker and controller nodes, a topic with replication factor 3 and
//! `min.insync.replicas=2`, acks=all producers writing to every node, and the leader of the
//! partition cut off from the two other nodes, then reconnected.
//!
//! Topology (made with `ip` only; the names and the 198.18.x.y/28 block are unique per run):
//!
//! ```text
//!        root namespace: this test (producers, Metadata, ListOffsets, Fetch)   .10
//!                                     | veth
//!        router namespace: forwards; .9 on each of its four veths
//!            |  veth             |  veth             |  veth
//!        node 1 (.1)         node 2 (.2)         node 3 (.3)    one namespace each
//! ```
//!
//! Each node has one address, on the veth to the router: its client listener (`--listen`,
//! advertised in Metadata and used by the followers' fetches) is `.N:9092`, its controller
//! listener (`--controller-voters`) `.N:9093`. Every packet between two nodes, and between the
//! test and a node, goes through the router. The partition is a pair of `ip rule ... blackhole`
//! rules in the router per other node (isolated -> other and other -> isolated): the router drops
//! those packets silently, as a switch that lost the link would, so connects hang and established
//! connections stall without a reset. The test still reaches every node, the isolated one
//! included, and sees what it answers. Healing deletes the rules. The namespaces (and with them
//! every veth, address, route and rule) are deleted when the test ends, also on a panic; the
//! broker processes are killed by PID first.
//!
//! Asserted:
//! 1. the isolated leader acknowledges no acks=all Produce sent to it between the cut and the
//!    heal, whenever it answers: such a record lands past anything its followers fetched before
//!    the cut, so its high watermark cannot reach it while the ISR stays whole (and it cannot
//!    reach a controller to shrink the ISR); by the heal the majority has elected another leader
//!    in a new epoch, so after the heal the record can only be truncated, never committed. What
//!    it answered is printed; every answer of every node must be a retriable refusal
//!    (REQUEST_TIMED_OUT, NOT_ENOUGH_REPLICAS, NOT_LEADER_OR_FOLLOWER, ...) or none;
//! 2. both nodes of the majority show another leader with a higher leader epoch, and acks=all
//!    produces to it are acknowledged;
//! 3. after the heal all three nodes show the partition with its three replicas in the ISR; the
//!    records the isolated leader appended after the cut (never acknowledged) are gone from its
//!    log, truncated where it left the new leader's (DivergingEpoch, in its log);
//! 4. every acknowledged record, by whichever node, is in the final leader's log exactly once at
//!    its acknowledged offset, and the three replicas' logs (the logical bytes of the `.log`
//!    segments in their data dirs) are identical and end at the leader's high watermark.
//!
//! Needs root and iproute2 (`ip netns`, veth); without them the test fails with a message
//! saying so. The broker processes run with `ip netns exec`, which execs the binary, so the
//! PID of the child is the broker's.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_net::client::Client;
use sluice_net::error_code::code;
use sluice_net::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use sluice_net::messages::{
    CreateTopicsRequest, FetchRequest, ListOffsetsRequest, ProduceRequest, fetch_request,
    list_offsets_request, produce_request,
};
use sluice_net::record_batch::Batches;
use sluice_net::record_batch::build::{BatchSpec, KeyValue, batch};
use sluice_net::{Request, Response};
use sluice_tests::{metadata_of, replica_log, sluice_bin, wait_for_state};

/// The topic, one partition.
const TOPIC: &str = "split";
/// Connect timeout of every client here; reads wait four times as long (`Client::connect`).
const CONNECT: Duration = Duration::from_secs(5);
/// The acks=all Produce timeout: how long the isolated leader may hold a request.
const PRODUCE_TIMEOUT_MS: i32 = 3000;
/// How long any state is waited for (generous: a noisy 2-core machine).
const WAIT: Duration = Duration::from_secs(45);
/// The nodes' client and controller ports (each node has its own namespace and address).
const CLIENT_PORT: u16 = 9092;
const CONTROLLER_PORT: u16 = 9093;
/// Host numbers in the run's /28: nodes are 1..=3, the router and the root namespace these.
const ROUTER_HOST: u32 = 9;
const ROOT_HOST: u32 = 10;
/// 198.18.0.0/15 (RFC 2544, benchmarking): 8192 blocks of 16 addresses.
const BLOCKS: u32 = 8192;

/// Seconds from the start of the test to `t`.
fn secs(t: Instant) -> f64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    t.saturating_duration_since(start).as_secs_f64()
}

/// Seconds since the test started, for the timeline.
fn at() -> String {
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
struct Net {
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
    /// The router, three node namespaces and the root namespace's link to the router.
    fn create() -> Net {
        let (pid, block) = (std::process::id(), free_block());
        let mut net = Net {
            namespaces: Vec::new(),
            root_link: format!("slp{pid:x}-{block:x}"),
            base: u32::from(Ipv4Addr::new(198, 18, 0, 0)) + block * 16,
            cuts: Vec::new(),
        };
        for name in ["r", "1", "2", "3"] {
            let ns = format!("sluice-part-{pid}-{block}-{name}");
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
        for id in 1..=3 {
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
    fn node(&self, id: i32) -> String {
        self.host(u32::try_from(id).expect("node ids are positive"))
    }

    /// Node `id`'s namespace.
    fn ns(&self, id: i32) -> &str {
        &self.namespaces[usize::try_from(id).expect("node ids are positive")]
    }

    /// A veth from node `id` (`eth0`, its address) to the router (`n{id}`), and the routes.
    fn link_node(&self, id: i32) {
        let (ns, router) = (self.ns(id).to_owned(), self.namespaces[0].clone());
        let port = format!("n{id}");
        let (own, gateway) = (self.node(id), self.host(ROUTER_HOST));
        let veth = [
            "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name",
        ];
        ip(&[&veth[..], &[&port, "netns", &router]].concat());
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{own}/32"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        ip(&[
            "-n",
            &ns,
            "route",
            "add",
            &format!("{gateway}/32"),
            "dev",
            "eth0",
        ]);
        ip(&[
            "-n", &ns, "route", "add", "default", "via", &gateway, "dev", "eth0",
        ]);
        ip(&[
            "-n",
            &router,
            "addr",
            "add",
            &format!("{gateway}/32"),
            "dev",
            &port,
        ]);
        ip(&["-n", &router, "link", "set", &port, "up"]);
        ip(&[
            "-n",
            &router,
            "route",
            "add",
            &format!("{own}/32"),
            "dev",
            &port,
        ]);
    }

    /// The veth from the root namespace (this test) to the router (`tester`), and the routes.
    fn link_root(&self) {
        let router = self.namespaces[0].clone();
        let (own, gateway) = (self.host(ROOT_HOST), self.host(ROUTER_HOST));
        let link = self.root_link.as_str();
        ip(&[
            "link", "add", link, "type", "veth", "peer", "name", "tester", "netns", &router,
        ]);
        ip(&["addr", "add", &format!("{own}/32"), "dev", link]);
        ip(&["link", "set", link, "up"]);
        ip(&["route", "add", &format!("{gateway}/32"), "dev", link]);
        let block = format!("{}/28", self.host(0));
        ip(&["route", "add", &block, "via", &gateway, "dev", link]);
        ip(&[
            "-n",
            &router,
            "addr",
            "add",
            &format!("{gateway}/32"),
            "dev",
            "tester",
        ]);
        ip(&["-n", &router, "link", "set", "tester", "up"]);
        ip(&[
            "-n",
            &router,
            "route",
            "add",
            &format!("{own}/32"),
            "dev",
            "tester",
        ]);
    }

    /// Drops every packet between node `id` and the other nodes, both ways, in the router.
    fn isolate(&mut self, id: i32) {
        for other in (1..=3).filter(|&o| o != id) {
            for (from, to) in [(id, other), (other, id)] {
                self.rule("add", from, to);
                self.cuts.push((from, to));
            }
        }
    }

    /// Deletes the router's blackhole rules.
    fn heal(&mut self) {
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

/// One `sluice` process in its node's namespace; SIGKILLed (by PID) when dropped.
struct Node {
    child: Child,
    /// The client listener, `address:9092`.
    addr: String,
    /// Its stderr (the broker's log).
    log: PathBuf,
}

impl Node {
    /// Starts node `id` in its namespace with its data in `root/node-{id}` and its log in
    /// `root/node-{id}.log`; waits until it listens.
    fn start(net: &Net, root: &Path, id: i32, voters: &str) -> Node {
        let addr = format!("{}:{CLIENT_PORT}", net.node(id));
        let log = root.join(format!("node-{id}.log"));
        let stderr = std::fs::File::create(&log).expect("log file");
        let mut child = Command::new("ip")
            .args(["netns", "exec", net.ns(id)])
            .arg(sluice_bin())
            .args(["start", "--node-id", &id.to_string(), "--listen", &addr])
            .args(["--controller-voters", voters, "--process-roles"])
            .args([
                "broker,controller",
                "--cores",
                "1",
                "--metrics-listen",
                "off",
            ])
            .arg("--data-dir")
            .arg(root.join(format!("node-{id}")))
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
        let mut node = Node { child, addr, log };
        if rx.recv_timeout(Duration::from_secs(30)).is_err() {
            let _ = node.child.kill();
            let status = node.child.wait();
            panic!(
                "node {id} did not report listening within 30 s (exit: {status:?}); its log:\n{}",
                tail(&node.log, 40)
            );
        }
        node
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // SIGKILL to the child's PID: `ip netns exec` execs sluice, so it is the broker.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last `n` lines of a file.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Three nodes, each a broker and a controller voter in its own namespace. Fields drop in
/// order: the processes first, then the namespaces, then the data.
struct Cluster {
    nodes: Vec<Node>,
    net: Net,
    tmp: tempfile::TempDir,
}

impl Cluster {
    fn start() -> Cluster {
        let tmp = tempfile::Builder::new()
            .prefix("sluice-partition-")
            .tempdir()
            .expect("tempdir");
        let net = Net::create();
        let voters: Vec<String> = (1..=3)
            .map(|id| format!("{id}@{}:{CONTROLLER_PORT}", net.node(id)))
            .collect();
        let voters = voters.join(",");
        let nodes: Vec<Node> = (1..=3)
            .map(|id| Node::start(&net, tmp.path(), id, &voters))
            .collect();
        let cluster = Cluster { nodes, net, tmp };
        wait_for_state(
            WAIT,
            "every broker registered and unfenced (Metadata's brokers)",
            || metadata_of(&cluster.addr(1), "none").map(|r| r.brokers.len()),
            |seen| *seen == Some(3),
        );
        eprintln!("{} three nodes up, voters {voters}", at());
        cluster
    }

    fn node(&self, id: i32) -> &Node {
        &self.nodes[usize::try_from(id - 1).expect("node ids start at 1")]
    }

    fn addr(&self, id: i32) -> String {
        self.node(id).addr.clone()
    }

    /// Node `id`'s replica of the partition: its logical log bytes and next offset.
    fn replica(&self, id: i32) -> (Vec<u8>, i64) {
        replica_log(&self.tmp.path().join(format!("node-{id}")), TOPIC, 0)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for (i, node) in self.nodes.iter().enumerate() {
                eprintln!("--- node {} log (last 40 lines) ---", i + 1);
                eprintln!("{}", tail(&node.log, 40));
            }
        }
    }
}

/// CreateTopics of [`TOPIC`] with one partition, replication factor 3, min.insync.replicas=2.
fn create_replicated(broker: &str) {
    let mut client = Client::connect(broker, "test", CONNECT).expect("connect");
    let request = Request::CreateTopics(CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: TOPIC.into(),
            num_partitions: 1,
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

/// The partition as a broker's Metadata shows it (replicas and ISR sorted).
#[derive(Debug, Clone, PartialEq)]
struct Placement {
    leader: i32,
    epoch: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
}

/// Partition 0 of [`TOPIC`] as `broker` sees it; `None` if it does not answer or know it.
fn placement(broker: &str) -> Option<Placement> {
    let r = metadata_of(broker, TOPIC)?;
    let t = r.topics.first().filter(|t| t.error_code == code::NONE)?;
    let p = t.partitions.iter().find(|p| p.partition_index == 0)?;
    let sorted = |ids: &[sluice_net::BrokerId]| {
        let mut v: Vec<i32> = ids.iter().map(|b| b.0).collect();
        v.sort_unstable();
        v
    };
    Some(Placement {
        leader: p.leader_id.0,
        epoch: p.leader_epoch,
        replicas: sorted(&p.replica_nodes),
        isr: sorted(&p.isr_nodes),
    })
}

/// Waits until all three nodes show the same placement with a leader and the full ISR.
fn wait_in_sync(cluster: &Cluster, what: &str) -> Placement {
    let views = wait_for_state(
        WAIT,
        &format!("{what}: the same leader and the full ISR, as every node sees"),
        || -> Vec<Option<Placement>> { (1..=3).map(|id| placement(&cluster.addr(id))).collect() },
        |views| {
            views.iter().all(|v| v == &views[0])
                && views[0]
                    .as_ref()
                    .is_some_and(|p| p.leader > 0 && p.replicas.len() == 3 && p.isr == p.replicas)
        },
    );
    views[0].clone().expect("a placement")
}

/// Produce of one record `value` to partition 0 of [`TOPIC`] on `broker`, acks=all: the
/// partition's (error code, base offset); `None` without an answer (no connection, or none
/// within the client's read timeout, 20 s).
fn produce(broker: &str, value: &str) -> Option<(i16, i64)> {
    let records: Vec<KeyValue<'_>> = vec![(None, Some(value.as_bytes()))];
    let request = Request::Produce(ProduceRequest {
        acks: -1,
        timeout_ms: PRODUCE_TIMEOUT_MS,
        topic_data: vec![produce_request::TopicProduceData {
            name: TOPIC.into(),
            partition_data: vec![produce_request::PartitionProduceData {
                index: 0,
                records: Some(batch(&BatchSpec::default(), &records).into()),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    });
    let mut client = Client::connect(broker, "test", CONNECT).ok()?;
    let (_, Response::Produce(r)) = client.call(11, &request).ok()? else {
        return None;
    };
    let p = r.responses.first()?.partition_responses.first()?;
    Some((p.error_code, p.base_offset))
}

/// What one Produce got.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    Acked(i64),
    Refused(i16),
    NoAnswer,
}

/// One Produce: to which node, which value, when it was sent and answered, what it got.
#[derive(Clone)]
struct Answer {
    node: i32,
    value: String,
    sent: Instant,
    answered: Instant,
    outcome: Outcome,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} to node {}: sent at {:.2}s, {:?} at {:.2}s",
            self.value,
            self.node,
            secs(self.sent),
            self.outcome,
            secs(self.answered)
        )
    }
}

/// What the producer threads share with the test.
#[derive(Default)]
struct Shared {
    answers: Mutex<Vec<Answer>>,
    stop: AtomicBool,
}

/// One acks=all producer per node, each sending only to its node, so the isolated leader keeps
/// being asked. Every attempt sends a fresh value (`n{node}-{attempt}`; a retried value could
/// land twice); after anything but an acknowledgement it waits 100 ms. Stopped when dropped.
struct Producers {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Producers {
    fn start(cluster: &Cluster) -> Producers {
        let shared = Arc::new(Shared::default());
        let threads = (1..=3)
            .map(|node| {
                let (shared, addr) = (Arc::clone(&shared), cluster.addr(node));
                std::thread::spawn(move || produce_to(node, &addr, &shared))
            })
            .collect();
        Producers { shared, threads }
    }

    fn answers(&self) -> Vec<Answer> {
        self.shared
            .answers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Stops the threads and waits for their last answers: every answer.
    fn stop(&mut self) -> Vec<Answer> {
        self.shared.stop.store(true, Ordering::Relaxed);
        for t in std::mem::take(&mut self.threads) {
            t.join().expect("a producer thread");
        }
        self.answers()
    }

    /// Waits until `node` acknowledged `count` produces sent at or after `since`.
    fn wait_acks(&self, node: i32, since: Instant, count: usize, what: &str) {
        wait_for_state(
            WAIT,
            &format!("{count} records acknowledged by node {node} {what} (so far)"),
            || {
                self.answers()
                    .iter()
                    .filter(|a| a.node == node && a.sent >= since)
                    .filter(|a| matches!(a.outcome, Outcome::Acked(_)))
                    .count()
            },
            |n| *n >= count,
        );
    }
}

impl Drop for Producers {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

fn produce_to(node: i32, addr: &str, shared: &Shared) {
    let mut attempt = 0u32;
    while !shared.stop.load(Ordering::Relaxed) {
        let value = format!("n{node}-{attempt:06}");
        attempt += 1;
        let sent = Instant::now();
        let outcome = match produce(addr, &value) {
            Some((code::NONE, offset)) => Outcome::Acked(offset),
            Some((error, _)) => Outcome::Refused(error),
            None => Outcome::NoAnswer,
        };
        let acked = matches!(outcome, Outcome::Acked(_));
        shared
            .answers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Answer {
                node,
                value,
                sent,
                answered: Instant::now(),
                outcome,
            });
        if !acked {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// How many of `answers` got each outcome (error codes by number).
fn tally<'a>(answers: impl Iterator<Item = &'a Answer>) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for a in answers {
        let key = match a.outcome {
            Outcome::Acked(_) => "acked".to_owned(),
            Outcome::Refused(e) => format!("error {e}"),
            Outcome::NoAnswer => "no answer".to_owned(),
        };
        *out.entry(key).or_insert(0) += 1;
    }
    out
}

/// Errors a producer retries: the leadership moved, or the ISR is short or did not answer.
const RETRIABLE: [i16; 5] = [
    code::LEADER_NOT_AVAILABLE,
    code::NOT_LEADER_OR_FOLLOWER,
    code::REQUEST_TIMED_OUT,
    code::NOT_ENOUGH_REPLICAS,
    code::NOT_ENOUGH_REPLICAS_AFTER_APPEND,
];

/// A network partition of the leader under acks=all load: see the module docs.
#[test]
fn isolated_leader_stops_acknowledging_and_rejoins_after_heal() {
    at();
    let mut cluster = Cluster::start();
    create_replicated(&cluster.addr(1));
    let first = wait_in_sync(&cluster, "the new topic");
    eprintln!("{} {TOPIC}-0 placed: {first:?}", at());
    let mut producers = Producers::start(&cluster);
    producers.wait_acks(first.leader, Instant::now(), 20, "before the cut");

    let (cut, elected) = cut_off_leader(&mut cluster, &producers, &first);
    let isolated = first.leader;
    let (stranded_log, _) = cluster.replica(isolated);
    let old_view = placement(&cluster.addr(isolated));
    eprintln!(
        "{} the isolated node's own view before the heal: {old_view:?}",
        at()
    );

    cluster.net.heal();
    let healed = Instant::now();
    eprintln!("{} healed: the router's rules deleted", at());
    let last = wait_in_sync(&cluster, "after the heal");
    eprintln!("{} all three in sync again: {last:?}", at());
    producers.wait_acks(last.leader, Instant::now(), 10, "after the heal");
    let answers = producers.stop();
    eprintln!("{} producers stopped: {} answers", at(), answers.len());
    report_answers(&answers, isolated, (cut, healed));
    assert!(last.epoch >= elected.epoch, "{elected:?} then {last:?}");

    let acked = acknowledged(&answers);
    let log = wait_logs_identical(&cluster, &last, &acked);
    check_isolated_answers(&answers, isolated, (cut, healed), &log);
    check_acknowledged(&log, &acked);
    check_truncated(&cluster, isolated, &stranded_log, &answers, (cut, healed));
    eprintln!("{} done", at());
}

/// Cuts the leader off from the two other nodes; waits until both of them show another leader
/// with a higher epoch, it acknowledged produces, and the isolated leader answered produces sent
/// after that election. When the cut was made, and the majority's placement.
fn cut_off_leader(
    cluster: &mut Cluster,
    producers: &Producers,
    first: &Placement,
) -> (Instant, Placement) {
    let isolated = first.leader;
    let majority: Vec<i32> = (1..=3).filter(|&id| id != isolated).collect();
    cluster.net.isolate(isolated);
    let cut = Instant::now();
    let acked_before = producers
        .answers()
        .iter()
        .filter(|a| matches!(a.outcome, Outcome::Acked(_)))
        .count();
    eprintln!(
        "{} cut: leader {isolated} isolated from {majority:?} ({acked_before} acknowledged so \
         far; the cut at {:.2}s)",
        at(),
        secs(cut)
    );
    let views = wait_for_state(
        WAIT,
        &format!(
            "nodes {majority:?} (the majority) agreeing on a new leader other than {isolated} \
             with an epoch above {}",
            first.epoch
        ),
        || -> Vec<Option<Placement>> {
            majority
                .iter()
                .map(|&id| placement(&cluster.addr(id)))
                .collect()
        },
        |views| {
            views.iter().all(|v| v == &views[0])
                && views[0]
                    .as_ref()
                    .is_some_and(|p| p.leader > 0 && p.leader != isolated && p.epoch > first.epoch)
        },
    );
    let elected = views[0].clone().expect("a placement");
    let since = Instant::now();
    eprintln!("{} the majority elected: {elected:?}", at());
    producers.wait_acks(elected.leader, since, 20, "after the election");
    eprintln!("{} the new leader {} acknowledges", at(), elected.leader);
    wait_for_state(
        WAIT,
        &format!("answers of isolated node {isolated} to produces sent after the election"),
        || {
            let answers = producers.answers();
            tally(
                answers
                    .iter()
                    .filter(|a| a.node == isolated && a.sent >= since),
            )
        },
        |t| t.values().sum::<usize>() >= 2,
    );
    (cut, elected)
}

/// Prints what each node answered, and what the isolated one answered to produces sent to it
/// during the partition.
fn report_answers(answers: &[Answer], isolated: i32, (cut, healed): (Instant, Instant)) {
    let during = answers
        .iter()
        .filter(|a| a.node == isolated && a.sent >= cut && a.sent < healed);
    eprintln!(
        "{} isolated leader {isolated}, produces sent to it between the cut ({:.2}s) and the \
         heal ({:.2}s): {:?}",
        at(),
        secs(cut),
        secs(healed),
        tally(during)
    );
    for node in 1..=3 {
        let all = tally(answers.iter().filter(|a| a.node == node));
        eprintln!("{} node {node}, every answer: {all:?}", at());
    }
}

/// Assertion 1: the isolated leader acknowledged no produce sent to it between the cut and
/// the heal (whenever it answered), and every node refused with retriable errors only. `log`
/// (the final leader's) is shown for the offsets of any such acknowledgement.
fn check_isolated_answers(
    answers: &[Answer],
    isolated: i32,
    (cut, healed): (Instant, Instant),
    log: &[(i64, Vec<u8>)],
) {
    let acked: Vec<String> = answers
        .iter()
        .filter(|a| a.node == isolated && a.sent >= cut && a.sent < healed)
        .filter_map(|a| match a.outcome {
            Outcome::Acked(offset) => {
                let now = log
                    .iter()
                    .find(|(o, _)| *o == offset)
                    .map(|(_, v)| String::from_utf8_lossy(v).into_owned());
                Some(format!("{a:?}; the final log holds {now:?} at {offset}"))
            }
            _ => None,
        })
        .collect();
    assert!(
        acked.is_empty(),
        "isolated leader {isolated} acknowledged acks=all produces sent to it after it was cut \
         off from both followers (cut at {:.2}s, heal at {:.2}s):\n{}",
        secs(cut),
        secs(healed),
        acked.join("\n")
    );
    let odd: Vec<&Answer> = answers
        .iter()
        .filter(|a| matches!(a.outcome, Outcome::Refused(e) if !RETRIABLE.contains(&e)))
        .collect();
    assert!(odd.is_empty(), "errors a producer cannot retry: {odd:?}");
}

/// ListOffsets LATEST as a consumer: the high watermark.
fn high_watermark(broker: &str) -> Option<i64> {
    let mut client = Client::connect(broker, "test", CONNECT).ok()?;
    let request = Request::ListOffsets(ListOffsetsRequest {
        replica_id: sluice_net::BrokerId(-1),
        topics: vec![list_offsets_request::ListOffsetsTopic {
            name: TOPIC.into(),
            partitions: vec![list_offsets_request::ListOffsetsPartition {
                partition_index: 0,
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

/// Every acknowledged (offset, value), by any node.
fn acknowledged(answers: &[Answer]) -> Vec<(i64, String)> {
    answers
        .iter()
        .filter_map(|a| match a.outcome {
            Outcome::Acked(offset) => Some((offset, a.value.clone())),
            _ => None,
        })
        .collect()
}

/// Assertion 4, first half: waits until the three replicas' logs are byte-identical and end at
/// the leader's high watermark, past every acknowledged offset. The leader's log as a consumer
/// reads it.
fn wait_logs_identical(
    cluster: &Cluster,
    last: &Placement,
    acked: &[(i64, String)],
) -> Vec<(i64, Vec<u8>)> {
    let end = acked.iter().map(|(o, _)| o + 1).max().unwrap_or(0);
    let leader = cluster.addr(last.leader);
    let seen = wait_for_state(
        Duration::from_secs(30),
        &format!(
            "the three replicas' logs byte-identical and ending at leader {}'s high watermark, \
             at least {end} ((high watermark, [(next offset, bytes, same as the leader's) of \
             nodes 1, 2, 3]))",
            last.leader
        ),
        || {
            let (leader_log, _) = cluster.replica(last.leader);
            let logs: Vec<(i64, usize, bool)> = (1..=3)
                .map(|id| {
                    let (bytes, next) = cluster.replica(id);
                    (next, bytes.len(), bytes == leader_log)
                })
                .collect();
            (high_watermark(&leader), logs)
        },
        |(hw, logs)| {
            logs.iter()
                .all(|&(next, _, same)| same && Some(next) == *hw && next >= end)
        },
    );
    eprintln!(
        "{} the three logs are identical: {} bytes, offsets 0..{}; {} records acknowledged",
        at(),
        seen.1[0].1,
        seen.1[0].0,
        acked.len()
    );
    read_all(&leader)
}

/// Assertion 3: the records the isolated leader appended from produces sent to it during the
/// partition (never acknowledged) are in no replica's final log, and if there were any, its log
/// says it truncated where it left the new leader's (DivergingEpoch).
fn check_truncated(
    cluster: &Cluster,
    isolated: i32,
    stranded_log: &[u8],
    answers: &[Answer],
    (cut, healed): (Instant, Instant),
) {
    let sent_then: BTreeSet<&str> = answers
        .iter()
        .filter(|a| a.node == isolated && a.sent >= cut && a.sent < healed)
        .map(|a| a.value.as_str())
        .collect();
    let stranded: Vec<(i64, String)> = log_values(stranded_log)
        .into_iter()
        .filter(|(_, v)| sent_then.contains(v.as_str()))
        .collect();
    eprintln!(
        "{} records the isolated leader appended during the partition: {stranded:?}",
        at()
    );
    let (final_log, _) = cluster.replica(isolated);
    let kept: Vec<(i64, String)> = log_values(&final_log)
        .into_iter()
        .filter(|(_, v)| sent_then.contains(v.as_str()))
        .collect();
    assert!(
        kept.is_empty(),
        "records produced to isolated node {isolated} during the partition, never acknowledged, \
         are still in the logs: {kept:?}"
    );
    if stranded.is_empty() {
        eprintln!(
            "{} (nothing to truncate: it appended nothing after the cut)",
            at()
        );
        return;
    }
    let log = std::fs::read_to_string(&cluster.node(isolated).log).unwrap_or_default();
    let truncation = log
        .lines()
        .find(|l| l.contains("truncating a replica where it left the leader's log"));
    eprintln!("{} node {isolated}: {truncation:?}", at());
    assert!(
        truncation.is_some(),
        "node {isolated} dropped the records it appended during the partition but its log has no \
         \"truncating a replica where it left the leader's log\" (DivergingEpoch) line"
    );
}

/// The (offset, value) of every record in `log` (whole v2 batches, uncompressed).
fn log_values(log: &[u8]) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    for batch in Batches::new(Bytes::copy_from_slice(log)) {
        let Ok(batch) = batch else { break };
        for record in batch.records().expect("uncompressed") {
            let record = record.expect("a whole record");
            let offset = batch.base_offset() + i64::from(record.offset_delta);
            let value = record.value.map(|v| v.to_vec()).unwrap_or_default();
            out.push((offset, String::from_utf8_lossy(&value).into_owned()));
        }
    }
    out
}

/// Every record a consumer reads from `broker`, from offset 0 up to the high watermark:
/// (offset, value).
fn read_all(broker: &str) -> Vec<(i64, Vec<u8>)> {
    let mut client = Client::connect(broker, "test", CONNECT).expect("connect");
    let mut out = Vec::new();
    let mut next = 0;
    loop {
        let request = Request::Fetch(FetchRequest {
            max_wait_ms: 0,
            max_bytes: 1 << 20,
            session_epoch: -1,
            topics: vec![fetch_request::FetchTopic {
                topic: TOPIC.into(),
                partitions: vec![fetch_request::FetchPartition {
                    partition: 0,
                    fetch_offset: next,
                    partition_max_bytes: 1 << 20,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        });
        let Ok((_, Response::Fetch(f))) = client.call(12, &request) else {
            panic!("no Fetch answer");
        };
        let p = &f.responses[0].partitions[0];
        assert_eq!(p.error_code, code::NONE, "fetch at {next}: {f:?}");
        let before = next;
        let records = p.records.as_ref().map(|r| r.to_bytes()).unwrap_or_default();
        for batch in Batches::new(records) {
            let Ok(batch) = batch else { break };
            for record in batch.records().expect("uncompressed") {
                let record = record.expect("a whole record");
                let offset = batch.base_offset() + i64::from(record.offset_delta);
                if offset >= next && offset < p.high_watermark {
                    out.push((offset, record.value.map(|v| v.to_vec()).unwrap_or_default()));
                    next = offset + 1;
                }
            }
        }
        if next >= p.high_watermark {
            return out;
        }
        assert!(next > before, "no progress reading at {next}: {p:?}");
    }
}

/// Every acknowledged value is in `log` exactly once, at its acknowledged offset.
fn check_acknowledged(log: &[(i64, Vec<u8>)], acked: &[(i64, String)]) {
    let at_offset: BTreeMap<i64, String> = log
        .iter()
        .map(|(o, v)| (*o, String::from_utf8_lossy(v).into_owned()))
        .collect();
    let mut times: HashMap<&str, usize> = HashMap::new();
    for v in at_offset.values() {
        *times.entry(v.as_str()).or_insert(0) += 1;
    }
    for (offset, value) in acked {
        let around: Vec<(&i64, &String)> = at_offset.range(offset - 5..offset + 5).collect();
        assert_eq!(
            at_offset.get(offset),
            Some(value),
            "acknowledged {value} at offset {offset}; the leader's log around it: {around:?}"
        );
        let n = times.get(value.as_str()).copied().unwrap_or(0);
        assert_eq!(n, 1, "acknowledged {value} is in the log {n} times");
    }
}
