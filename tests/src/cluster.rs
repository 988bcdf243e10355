//! Clusters of real `sluice` processes for the integration tests: nodes `1..=n` on free
//! loopback ports, each in `<tmp>/node-{id}`, started as controller voters of one static
//! quorum (`--controller-voters`) and, for combined nodes, as brokers too; waits on what the
//! brokers' Metadata shows (registered brokers, each partition's leader, epoch and ISR); and
//! the Produce request the cluster tests send.
//!
//! Node `id` is `nodes[id - 1]` of the vectors returned here. Every node is a [`Broker`]:
//! stopped with SIGKILL, by its PID, when dropped.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sluice_net::Request;
use sluice_net::error_code::code;
use sluice_net::messages::{MetadataResponse, ProduceRequest, produce_request};
use sluice_net::record_batch::build::{BatchSpec, KeyValue, batch};

use crate::{Broker, free_port, metadata_of, wait_for_state};

/// `--process-roles` of a node that is both a broker and a controller voter.
pub const COMBINED: &str = "broker,controller";

/// The controller voters of a cluster: node ids `1..=n`, each with its controller listener on
/// a free loopback port.
#[derive(Debug, Clone)]
pub struct Voters {
    listeners: Vec<(i32, SocketAddr)>,
    arg: String,
}

impl Voters {
    /// Voters `1..=n` on free ports.
    pub fn new(n: i32) -> Voters {
        let listeners: Vec<(i32, SocketAddr)> = (1..=n)
            .map(|id| (id, SocketAddr::from(([127, 0, 0, 1], free_port()))))
            .collect();
        let arg = listeners
            .iter()
            .map(|(id, a)| format!("{id}@{a}"))
            .collect::<Vec<_>>()
            .join(",");
        Voters { listeners, arg }
    }

    /// Each voter's id and controller listener.
    pub fn listeners(&self) -> &[(i32, SocketAddr)] {
        &self.listeners
    }

    /// The `--controller-voters` value: `1@127.0.0.1:port,2@...`.
    pub fn arg(&self) -> &str {
        &self.arg
    }
}

/// How a node runs besides its id and the voters: its roles, cores, `/metrics` listener and
/// any further flags, and whether its log is kept in a file; [`NodeArgs::new`] gives one core,
/// no metrics, and the log on the test's stderr only.
#[derive(Debug, Clone, Copy)]
pub struct NodeArgs<'a> {
    pub roles: &'a str,
    pub cores: usize,
    /// `/metrics` on this loopback port; `None`: `--metrics-listen off`.
    pub metrics_port: Option<u16>,
    pub extra: &'a [&'a str],
    /// Also appends the node's stderr (its log) to this file ([`Broker::start_logged`]).
    pub stderr_log: Option<&'a Path>,
}

impl<'a> NodeArgs<'a> {
    /// `roles` on one core, without metrics, no further flags.
    pub fn new(roles: &'a str) -> NodeArgs<'a> {
        NodeArgs {
            roles,
            cores: 1,
            metrics_port: None,
            extra: &[],
            stderr_log: None,
        }
    }
}

/// The data dir of node `id`: `tmp/node-{id}`.
pub fn node_dir(tmp: &Path, id: i32) -> PathBuf {
    tmp.join(format!("node-{id}"))
}

/// Starts node `id` of `voters` in [`node_dir`] with `args`, its client listener on a free
/// port.
pub fn start_node(tmp: &Path, id: i32, voters: &Voters, args: &NodeArgs<'_>) -> Broker {
    let node_id = id.to_string();
    let cores = args.cores.to_string();
    let metrics = args
        .metrics_port
        .map_or_else(|| "off".to_owned(), |port| format!("127.0.0.1:{port}"));
    let mut all = vec![
        "--node-id",
        node_id.as_str(),
        "--controller-voters",
        voters.arg(),
        "--process-roles",
        args.roles,
        "--cores",
        cores.as_str(),
        "--metrics-listen",
        metrics.as_str(),
    ];
    all.extend_from_slice(args.extra);
    let listen = "127.0.0.1:0".parse().expect("a socket address");
    Broker::start_logged(&node_dir(tmp, id), listen, &all, args.stderr_log)
}

/// Starts every voter of `voters`, node `id` with `args(id)`; they are returned in id order.
pub fn start_voters<'a>(
    tmp: &Path,
    voters: &Voters,
    args: impl Fn(i32) -> NodeArgs<'a>,
) -> Vec<Broker> {
    voters
        .listeners()
        .iter()
        .map(|&(id, _)| start_node(tmp, id, voters, &args(id)))
        .collect()
}

/// Nodes `1..=n`, each a broker and a controller voter, on one core without metrics, in
/// `tmp/node-{id}`; `extra` is given to every node. Returns once every broker is registered and
/// unfenced.
pub fn start_cluster(tmp: &Path, n: i32, extra: &[&str]) -> Vec<Broker> {
    start_cluster_with_voters(tmp, n, extra).0
}

/// [`start_cluster`], and its voters.
pub fn start_cluster_with_voters(tmp: &Path, n: i32, extra: &[&str]) -> (Vec<Broker>, Voters) {
    let voters = Voters::new(n);
    let nodes = start_voters(tmp, &voters, |_| NodeArgs {
        extra,
        ..NodeArgs::new(COMBINED)
    });
    wait_brokers(&nodes[0].bootstrap(), usize::try_from(n).expect("n >= 0"));
    (nodes, voters)
}

/// Waits until `broker`'s Metadata lists `n` brokers (registered and unfenced).
pub fn wait_brokers(broker: &str, n: usize) {
    wait_for_state(
        Duration::from_secs(30),
        "every broker registered and unfenced (Metadata's brokers)",
        || metadata_of(broker, "none").map(|r| r.brokers.len()),
        |seen| *seen == Some(n),
    );
}

/// The client address of node `id` (`nodes[id - 1]`).
pub fn addr_of(nodes: &[Broker], id: i32) -> String {
    nodes[usize::try_from(id - 1).expect("node ids start at 1")].bootstrap()
}

/// One partition as a broker's Metadata shows it (replicas and ISR sorted).
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    pub leader: i32,
    pub epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

impl Placement {
    /// The replicas other than the leader.
    pub fn followers(&self) -> Vec<i32> {
        let leader = self.leader;
        self.replicas
            .iter()
            .copied()
            .filter(|&r| r != leader)
            .collect()
    }
}

/// Each partition of `topic` as `broker` sees it; empty if it does not answer or know the topic.
/// Never ask a SIGSTOPped node: it accepts the connection and then answers nothing.
pub fn placements(broker: &str, topic: &str) -> BTreeMap<i32, Placement> {
    metadata_of(broker, topic).map_or_else(BTreeMap::new, |r| placements_in(&r))
}

/// Every partition of the first topic in a Metadata answer, by index; empty if the topic is
/// unknown.
pub fn placements_in(r: &MetadataResponse) -> BTreeMap<i32, Placement> {
    let Some(t) = r.topics.first().filter(|t| t.error_code == code::NONE) else {
        return BTreeMap::new();
    };
    let sorted = |ids: &[sluice_net::BrokerId]| {
        let mut v: Vec<i32> = ids.iter().map(|b| b.0).collect();
        v.sort_unstable();
        v
    };
    t.partitions
        .iter()
        .map(|p| {
            let placement = Placement {
                leader: p.leader_id.0,
                epoch: p.leader_epoch,
                replicas: sorted(&p.replica_nodes),
                isr: sorted(&p.isr_nodes),
            };
            (p.partition_index, placement)
        })
        .collect()
}

/// A Produce of one batch holding `values` (no keys) to `topic`-`partition`, with `acks` and
/// `timeout_ms`.
pub fn produce_request(
    topic: &str,
    partition: i32,
    (acks, timeout_ms): (i16, i32),
    values: &[&[u8]],
) -> Request {
    let records: Vec<KeyValue<'_>> = values.iter().map(|v| (None, Some(*v))).collect();
    Request::Produce(ProduceRequest {
        acks,
        timeout_ms,
        topic_data: vec![produce_request::TopicProduceData {
            name: topic.into(),
            partition_data: vec![produce_request::PartitionProduceData {
                index: partition,
                records: Some(batch(&BatchSpec::default(), &records).into()),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    })
}
