//! The operator CLI: `sluice topic|group|produce|consume`, talking the Kafka protocol to any
//! broker (`--bootstrap`), one blocking connection per broker (`sluice_net::client`).

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Write};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use clap::{Args, Subcommand};
use sluice_net::client::{Client, partition_for_key};
use sluice_net::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use sluice_net::messages::describe_configs_request::DescribeConfigsResource;
use sluice_net::messages::fetch_request::{FetchPartition, FetchTopic};
use sluice_net::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use sluice_net::messages::join_group_request::JoinGroupRequestProtocol;
use sluice_net::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use sluice_net::messages::metadata_request::MetadataRequestTopic;
use sluice_net::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use sluice_net::messages::offset_fetch_request::OffsetFetchRequestTopic;
use sluice_net::messages::produce_request::{PartitionProduceData, TopicProduceData};
use sluice_net::messages::sync_group_request::SyncGroupRequestAssignment;
use sluice_net::messages::*;
use sluice_net::record_batch::{Batches, build};
use sluice_net::{BrokerId, Records, Request, Response, StrBytes};

const CLIENT_ID: &str = "sluice-cli";
const TIMEOUT: Duration = Duration::from_secs(10);

/// Where the broker is.
#[derive(Args, Debug, Clone)]
pub struct Target {
    /// A broker of the cluster, host:port (default 127.0.0.1:9092); accepted anywhere on the
    /// command line, also as Kafka's tools spell it, `--bootstrap-server`.
    #[arg(long, global = true, visible_alias = "bootstrap-server")]
    pub bootstrap: Option<String>,
}

impl Target {
    /// The broker to connect to first.
    pub fn bootstrap(&self) -> &str {
        self.bootstrap.as_deref().unwrap_or("127.0.0.1:9092")
    }
}

#[derive(Subcommand, Debug)]
pub enum TopicCmd {
    /// Create a topic.
    Create {
        name: String,
        #[arg(long, default_value_t = 1)]
        partitions: i32,
        /// A topic config, key=value; repeatable.
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
    },
    /// List topics (internal ones with --internal).
    List {
        #[arg(long)]
        internal: bool,
    },
    /// Partitions, leaders, offsets and config overrides of a topic.
    Describe { name: String },
    /// Delete a topic.
    Delete { name: String },
    /// Set (--set key=value) or remove (--delete key) topic configs.
    AlterConfig {
        name: String,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        #[arg(long = "delete", value_name = "KEY")]
        delete: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum GroupCmd {
    /// List consumer groups with their state.
    List,
    /// Members, committed offsets and lag of a group.
    Describe { group: String },
    /// Delete an empty group and its offsets.
    Delete { group: String },
    /// Move an empty group's committed offsets of a topic (dry run without --execute).
    ResetOffsets {
        group: String,
        #[arg(long)]
        topic: String,
        #[arg(long, conflicts_with_all = ["to_latest", "to_offset"])]
        to_earliest: bool,
        #[arg(long, conflicts_with = "to_offset")]
        to_latest: bool,
        #[arg(long)]
        to_offset: Option<i64>,
        #[arg(long)]
        execute: bool,
    },
}

#[derive(Args, Debug)]
pub struct ProduceArgs {
    pub topic: String,
    /// Split each line at the first SEP into key and value (keys pick partitions with the Java
    /// client's murmur2).
    #[arg(long, value_name = "SEP")]
    pub key_separator: Option<String>,
    /// acks: 0, 1 or all.
    #[arg(long, default_value = "all")]
    pub acks: String,
    /// Send every record to this partition.
    #[arg(long)]
    pub partition: Option<i32>,
}

#[derive(Args, Debug)]
pub struct ConsumeArgs {
    pub topic: String,
    /// Where to start without a committed offset: beginning, end, or an offset.
    #[arg(long, default_value = "beginning")]
    pub from: String,
    /// Consume as a member of this group (committing offsets as it goes).
    #[arg(long)]
    pub group: Option<String>,
    /// Stop after this many records.
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop at the end of every partition.
    #[arg(long)]
    pub exit: bool,
    /// text (the value), kv (key<TAB>value) or json.
    #[arg(long, default_value = "text")]
    pub format: String,
}

/// A wire string from `x`: a `StrBytes`, or an entity such as `TopicName` or `GroupId`.
fn s<T: for<'a> From<&'a str>>(x: &str) -> T {
    T::from(x)
}

fn connect(addr: &str) -> anyhow::Result<Client> {
    Ok(Client::connect(addr, CLIENT_ID, TIMEOUT)?)
}

fn kafka_error(code: i16) -> String {
    let name = match code {
        3 => "UNKNOWN_TOPIC_OR_PARTITION",
        7 => "REQUEST_TIMED_OUT",
        15 => "COORDINATOR_NOT_AVAILABLE",
        16 => "NOT_COORDINATOR",
        25 => "UNKNOWN_MEMBER_ID",
        27 => "REBALANCE_IN_PROGRESS",
        36 => "TOPIC_ALREADY_EXISTS",
        37 => "INVALID_PARTITIONS",
        40 => "INVALID_CONFIG",
        68 => "NON_EMPTY_GROUP",
        69 => "GROUP_ID_NOT_FOUND",
        _ => "",
    };
    format!("Kafka error {code} {name}").trim_end().to_owned()
}

fn check(code: i16, what: &str, message: Option<&StrBytes>) -> anyhow::Result<()> {
    if code == 0 {
        return Ok(());
    }
    match message.filter(|m| !m.is_empty()) {
        Some(m) => bail!("{what}: {} ({})", kafka_error(code), m.as_str()),
        None => bail!("{what}: {}", kafka_error(code)),
    }
}

/// The cluster as the bootstrap broker describes it, with one connection per broker.
struct Cluster {
    bootstrap: Client,
    brokers: HashMap<i32, String>,
    conns: HashMap<i32, Client>,
}

impl Cluster {
    fn connect(target: &Target) -> anyhow::Result<Cluster> {
        Ok(Cluster {
            bootstrap: connect(target.bootstrap())?,
            brokers: HashMap::new(),
            conns: HashMap::new(),
        })
    }

    fn metadata(&mut self, topics: Option<&[&str]>) -> anyhow::Result<MetadataResponse> {
        let req = Request::Metadata(MetadataRequest {
            topics: topics.map(|ts| {
                ts.iter()
                    .map(|t| MetadataRequestTopic {
                        name: Some(s(t)),
                        ..Default::default()
                    })
                    .collect()
            }),
            allow_auto_topic_creation: false,
            ..Default::default()
        });
        let Response::Metadata(m) = self.bootstrap.call(12, &req)?.1 else {
            bail!("unexpected answer to Metadata");
        };
        for b in &m.brokers {
            self.brokers
                .insert(b.node_id.get(), format!("{}:{}", b.host.as_str(), b.port));
        }
        Ok(m)
    }

    /// (partition, leader) of a topic.
    fn partitions(&mut self, topic: &str) -> anyhow::Result<Vec<(i32, i32)>> {
        let m = self.metadata(Some(&[topic]))?;
        let t = m
            .topics
            .first()
            .ok_or_else(|| anyhow!("no answer for {topic}"))?;
        check(t.error_code, &format!("topic {topic}"), None)?;
        let mut ps: Vec<(i32, i32)> = t
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.leader_id.get()))
            .collect();
        ps.sort_unstable();
        Ok(ps)
    }

    fn broker(&mut self, node: i32) -> anyhow::Result<&mut Client> {
        if !self.conns.contains_key(&node) {
            let addr = self
                .brokers
                .get(&node)
                .cloned()
                .ok_or_else(|| anyhow!("broker {node} is not in the metadata"))?;
            self.conns.insert(node, connect(&addr)?);
        }
        Ok(self.conns.get_mut(&node).expect("inserted above"))
    }

    /// Earliest (-2) or latest (-1) offsets of partitions (grouped by leader).
    fn list_offsets(
        &mut self,
        topic: &str,
        parts: &[(i32, i32)],
        timestamp: i64,
    ) -> anyhow::Result<BTreeMap<i32, i64>> {
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for (p, leader) in parts {
            by_leader.entry(*leader).or_default().push(*p);
        }
        let mut out = BTreeMap::new();
        for (leader, ps) in by_leader {
            let req = Request::ListOffsets(ListOffsetsRequest {
                replica_id: BrokerId(-1),
                topics: vec![ListOffsetsTopic {
                    name: s(topic),
                    partitions: ps
                        .iter()
                        .map(|p| ListOffsetsPartition {
                            partition_index: *p,
                            current_leader_epoch: -1,
                            timestamp,
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            });
            let Response::ListOffsets(r) = self.broker(leader)?.call(7, &req)?.1 else {
                bail!("unexpected answer to ListOffsets");
            };
            for t in r.topics {
                for p in t.partitions {
                    check(
                        p.error_code,
                        &format!("offsets of {topic}-{}", p.partition_index),
                        None,
                    )?;
                    out.insert(p.partition_index, p.offset);
                }
            }
        }
        Ok(out)
    }
}

fn key_value(kv: &str) -> anyhow::Result<(String, String)> {
    kv.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| anyhow!("`{kv}` is not key=value"))
}

pub fn topic(target: &Target, cmd: TopicCmd) -> anyhow::Result<()> {
    let mut c = Cluster::connect(target)?;
    match cmd {
        TopicCmd::Create {
            name,
            partitions,
            configs,
        } => {
            let configs = configs
                .iter()
                .map(|kv| {
                    key_value(kv).map(|(k, v)| CreatableTopicConfig {
                        name: k.into(),
                        value: Some(v.into()),
                        ..Default::default()
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let req = Request::CreateTopics(CreateTopicsRequest {
                topics: vec![CreatableTopic {
                    name: s(&name),
                    num_partitions: partitions,
                    replication_factor: -1,
                    configs,
                    ..Default::default()
                }],
                timeout_ms: 30_000,
                ..Default::default()
            });
            let Response::CreateTopics(r) = c.bootstrap.call(7, &req)?.1 else {
                bail!("unexpected answer to CreateTopics");
            };
            let t = r.topics.first().ok_or_else(|| anyhow!("no result"))?;
            check(
                t.error_code,
                &format!("create {name}"),
                t.error_message.as_ref(),
            )?;
            println!("created topic {name} with {partitions} partitions");
        }
        TopicCmd::List { internal } => {
            let m = c.metadata(None)?;
            let mut names: Vec<(String, usize)> = m
                .topics
                .iter()
                .filter(|t| internal || !t.is_internal)
                .filter_map(|t| t.name.as_ref().map(|n| (n.to_string(), t.partitions.len())))
                .collect();
            names.sort();
            for (n, _) in names {
                println!("{n}");
            }
        }
        TopicCmd::Describe { name } => {
            let parts = c.partitions(&name)?;
            let start = c.list_offsets(&name, &parts, -2)?;
            let end = c.list_offsets(&name, &parts, -1)?;
            let req = Request::DescribeConfigs(DescribeConfigsRequest {
                resources: vec![DescribeConfigsResource {
                    resource_type: 2,
                    resource_name: s(&name),
                    configuration_keys: None,
                    ..Default::default()
                }],
                ..Default::default()
            });
            let Response::DescribeConfigs(r) = c.bootstrap.call(4, &req)?.1 else {
                bail!("unexpected answer to DescribeConfigs");
            };
            let overrides: Vec<String> = r
                .results
                .iter()
                .flat_map(|res| res.configs.iter())
                .filter(|cfg| cfg.config_source == 1)
                .map(|cfg| {
                    format!(
                        "{}={}",
                        cfg.name.as_str(),
                        cfg.value.as_ref().map_or("", |v| v.as_str())
                    )
                })
                .collect();
            println!(
                "topic {name}: {} partitions; configs: {}",
                parts.len(),
                if overrides.is_empty() {
                    "(defaults)".to_owned()
                } else {
                    overrides.join(", ")
                }
            );
            println!(
                "{:>9}  {:>6}  {:>12}  {:>12}",
                "PARTITION", "LEADER", "START", "END"
            );
            for (p, leader) in parts {
                println!(
                    "{p:>9}  {leader:>6}  {:>12}  {:>12}",
                    start.get(&p).copied().unwrap_or(-1),
                    end.get(&p).copied().unwrap_or(-1)
                );
            }
        }
        TopicCmd::Delete { name } => {
            let req = Request::DeleteTopics(DeleteTopicsRequest {
                topic_names: vec![s(&name)],
                timeout_ms: 30_000,
                ..Default::default()
            });
            let Response::DeleteTopics(r) = c.bootstrap.call(5, &req)?.1 else {
                bail!("unexpected answer to DeleteTopics");
            };
            let t = r.responses.first().ok_or_else(|| anyhow!("no result"))?;
            check(
                t.error_code,
                &format!("delete {name}"),
                t.error_message.as_ref(),
            )?;
            println!("deleted topic {name}");
        }
        TopicCmd::AlterConfig { name, set, delete } => {
            let mut configs = Vec::new();
            for kv in &set {
                let (k, v) = key_value(kv)?;
                configs.push(AlterableConfig {
                    name: k.into(),
                    config_operation: 0,
                    value: Some(v.into()),
                    ..Default::default()
                });
            }
            for k in &delete {
                configs.push(AlterableConfig {
                    name: s(k),
                    config_operation: 1,
                    value: None,
                    ..Default::default()
                });
            }
            let req = Request::IncrementalAlterConfigs(IncrementalAlterConfigsRequest {
                resources: vec![AlterConfigsResource {
                    resource_type: 2,
                    resource_name: s(&name),
                    configs,
                    ..Default::default()
                }],
                ..Default::default()
            });
            let Response::IncrementalAlterConfigs(r) = c.bootstrap.call(1, &req)?.1 else {
                bail!("unexpected answer to IncrementalAlterConfigs");
            };
            let res = r.responses.first().ok_or_else(|| anyhow!("no result"))?;
            check(
                res.error_code,
                &format!("alter {name}"),
                res.error_message.as_ref(),
            )?;
            println!("altered configs of topic {name}");
        }
    }
    Ok(())
}

/// The group's coordinator, connected.
fn coordinator(c: &mut Cluster, group: &str) -> anyhow::Result<Client> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let req = Request::FindCoordinator(FindCoordinatorRequest {
            key: s(group),
            key_type: 0,
            ..Default::default()
        });
        let Response::FindCoordinator(r) = c.bootstrap.call(3, &req)?.1 else {
            bail!("unexpected answer to FindCoordinator");
        };
        if r.error_code == 0 {
            return connect(&format!("{}:{}", r.host.as_str(), r.port));
        }
        if Instant::now() > deadline {
            check(
                r.error_code,
                &format!("coordinator of {group}"),
                r.error_message.as_ref(),
            )?;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// ConsumerProtocolSubscription v0: the topics.
fn subscription(topics: &[&str]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    b.put_i32(topics.len() as i32);
    for t in topics {
        b.put_i16(t.len() as i16);
        b.put_slice(t.as_bytes());
    }
    b.put_i32(-1);
    b.freeze()
}

fn read_str(b: &mut Bytes) -> Option<String> {
    if b.remaining() < 2 {
        return None;
    }
    let n = usize::try_from(b.get_i16()).ok()?;
    if b.remaining() < n {
        return None;
    }
    String::from_utf8(b.split_to(n).to_vec()).ok()
}

/// ConsumerProtocolAssignment (any version): topic → partitions.
fn decode_assignment(mut b: Bytes) -> Vec<(String, Vec<i32>)> {
    let mut out = Vec::new();
    if b.remaining() < 6 {
        return out;
    }
    let _version = b.get_i16();
    let n = b.get_i32();
    for _ in 0..n.max(0) {
        let Some(topic) = read_str(&mut b) else {
            break;
        };
        if b.remaining() < 4 {
            break;
        }
        let count = b.get_i32().max(0) as usize;
        if b.remaining() < count * 4 {
            break;
        }
        out.push((topic, (0..count).map(|_| b.get_i32()).collect()));
    }
    out
}

fn encode_assignment(parts: &[(String, Vec<i32>)]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    b.put_i32(parts.len() as i32);
    for (t, ps) in parts {
        b.put_i16(t.len() as i16);
        b.put_slice(t.as_bytes());
        b.put_i32(ps.len() as i32);
        for p in ps {
            b.put_i32(*p);
        }
    }
    b.put_i32(-1);
    b.freeze()
}

/// Committed offsets of a group (topic → partition → offset).
fn committed(coord: &mut Client, group: &str) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
    let req = Request::OffsetFetch(OffsetFetchRequest {
        group_id: s(group),
        topics: None,
        ..Default::default()
    });
    let Response::OffsetFetch(r) = coord.call(7, &req)?.1 else {
        bail!("unexpected answer to OffsetFetch");
    };
    check(r.error_code, &format!("offsets of {group}"), None)?;
    Ok(r.topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .filter(|p| p.committed_offset >= 0)
                .map(move |p| ((t.name.to_string(), p.partition_index), p.committed_offset))
        })
        .collect())
}

fn describe_group(coord: &mut Client, group: &str) -> anyhow::Result<DescribeGroupsResponse> {
    let req = Request::DescribeGroups(DescribeGroupsRequest {
        groups: vec![s(group)],
        ..Default::default()
    });
    let Response::DescribeGroups(r) = coord.call(5, &req)?.1 else {
        bail!("unexpected answer to DescribeGroups");
    };
    Ok(r)
}

fn commit(
    coord: &mut Client,
    group: &str,
    generation: i32,
    member: &str,
    offsets: &[(String, i32, i64)],
) -> anyhow::Result<()> {
    let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
    for (t, p, o) in offsets {
        let part = OffsetCommitRequestPartition {
            partition_index: *p,
            committed_offset: *o,
            committed_leader_epoch: -1,
            committed_metadata: Some(StrBytes::default()),
            ..Default::default()
        };
        match topics.iter_mut().find(|x| x.name.as_str() == t) {
            Some(x) => x.partitions.push(part),
            None => topics.push(OffsetCommitRequestTopic {
                name: s(t),
                partitions: vec![part],
                ..Default::default()
            }),
        }
    }
    let req = Request::OffsetCommit(OffsetCommitRequest {
        group_id: s(group),
        generation_id_or_member_epoch: generation,
        member_id: s(member),
        topics,
        ..Default::default()
    });
    let Response::OffsetCommit(r) = coord.call(8, &req)?.1 else {
        bail!("unexpected answer to OffsetCommit");
    };
    for t in &r.topics {
        for p in &t.partitions {
            check(
                p.error_code,
                &format!("commit {}-{}", t.name.as_str(), p.partition_index),
                None,
            )?;
        }
    }
    Ok(())
}

pub fn group(target: &Target, cmd: GroupCmd) -> anyhow::Result<()> {
    let mut c = Cluster::connect(target)?;
    match cmd {
        GroupCmd::List => {
            let req = Request::ListGroups(ListGroupsRequest::default());
            let Response::ListGroups(r) = c.bootstrap.call(4, &req)?.1 else {
                bail!("unexpected answer to ListGroups");
            };
            check(r.error_code, "list groups", None)?;
            let mut groups: Vec<_> = r.groups.iter().collect();
            groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
            for g in groups {
                println!(
                    "{}\t{}\t{}",
                    g.group_id.as_str(),
                    g.group_state.as_str(),
                    g.protocol_type.as_str()
                );
            }
        }
        GroupCmd::Describe { group } => {
            let mut coord = coordinator(&mut c, &group)?;
            let d = describe_group(&mut coord, &group)?;
            let g = d.groups.first().ok_or_else(|| anyhow!("no answer"))?;
            check(
                g.error_code,
                &format!("describe {group}"),
                g.error_message.as_ref(),
            )?;
            println!(
                "group {group}: state {}, protocol {} {}, {} members",
                g.group_state.as_str(),
                g.protocol_type.as_str(),
                g.protocol_data.as_str(),
                g.members.len()
            );
            let mut owner: HashMap<(String, i32), (String, String, String)> = HashMap::new();
            for m in &g.members {
                for (t, ps) in decode_assignment(m.member_assignment.clone()) {
                    for p in ps {
                        owner.insert(
                            (t.clone(), p),
                            (
                                m.member_id.to_string(),
                                m.client_host.to_string(),
                                m.client_id.to_string(),
                            ),
                        );
                    }
                }
            }
            let offsets = committed(&mut coord, &group)?;
            let mut keys: Vec<(String, i32)> = offsets.keys().cloned().collect();
            for k in owner.keys() {
                if !offsets.contains_key(k) {
                    keys.push(k.clone());
                }
            }
            keys.sort();
            keys.dedup();
            let mut ends: HashMap<(String, i32), i64> = HashMap::new();
            let topics: std::collections::BTreeSet<String> =
                keys.iter().map(|(t, _)| t.clone()).collect();
            for t in topics {
                if let Ok(parts) = c.partitions(&t) {
                    for (p, o) in c.list_offsets(&t, &parts, -1)? {
                        ends.insert((t.clone(), p), o);
                    }
                }
            }
            println!(
                "{:<24} {:>9} {:>14} {:>14} {:>8}  CONSUMER-ID / HOST / CLIENT-ID",
                "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG"
            );
            for k in keys {
                let cur = offsets.get(&k).copied();
                let end = ends.get(&k).copied();
                let lag = match (cur, end) {
                    (Some(c), Some(e)) => (e - c).to_string(),
                    _ => "-".to_owned(),
                };
                let who = owner
                    .get(&k)
                    .map_or("-".to_owned(), |(m, h, c)| format!("{m} / {h} / {c}"));
                println!(
                    "{:<24} {:>9} {:>14} {:>14} {:>8}  {who}",
                    k.0,
                    k.1,
                    cur.map_or("-".to_owned(), |c| c.to_string()),
                    end.map_or("-".to_owned(), |e| e.to_string()),
                    lag
                );
            }
        }
        GroupCmd::Delete { group } => {
            let mut coord = coordinator(&mut c, &group)?;
            let req = Request::DeleteGroups(DeleteGroupsRequest {
                groups_names: vec![s(&group)],
                ..Default::default()
            });
            let Response::DeleteGroups(r) = coord.call(2, &req)?.1 else {
                bail!("unexpected answer to DeleteGroups");
            };
            let res = r.results.first().ok_or_else(|| anyhow!("no result"))?;
            check(
                res.error_code,
                &format!("delete {group}"),
                res.error_message.as_ref(),
            )?;
            println!("deleted group {group}");
        }
        GroupCmd::ResetOffsets {
            group,
            topic,
            to_earliest,
            to_latest,
            to_offset,
            execute,
        } => {
            let mut coord = coordinator(&mut c, &group)?;
            let d = describe_group(&mut coord, &group)?;
            if let Some(g) = d.groups.first()
                && !g.members.is_empty()
            {
                bail!(
                    "group {group} has {} active members (state {}): stop them first",
                    g.members.len(),
                    g.group_state.as_str()
                );
            }
            let parts = c.partitions(&topic)?;
            let target_offsets: BTreeMap<i32, i64> = if to_earliest {
                c.list_offsets(&topic, &parts, -2)?
            } else if to_latest {
                c.list_offsets(&topic, &parts, -1)?
            } else if let Some(o) = to_offset {
                parts.iter().map(|(p, _)| (*p, o)).collect()
            } else {
                bail!("say where to: --to-earliest, --to-latest or --to-offset N");
            };
            let plan: Vec<(String, i32, i64)> = target_offsets
                .iter()
                .map(|(p, o)| (topic.clone(), *p, *o))
                .collect();
            for (t, p, o) in &plan {
                println!("{t}\t{p}\t{o}");
            }
            if execute {
                commit(&mut coord, &group, -1, "", &plan)?;
                println!(
                    "reset {} partitions of {topic} for group {group}",
                    plan.len()
                );
            } else {
                println!("(dry run: add --execute to commit these offsets)");
            }
        }
    }
    Ok(())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub fn produce(target: &Target, args: ProduceArgs) -> anyhow::Result<()> {
    let acks: i16 = match args.acks.as_str() {
        "all" | "-1" => -1,
        "1" => 1,
        "0" => 0,
        other => bail!("acks must be 0, 1 or all, not {other}"),
    };
    let mut c = Cluster::connect(target)?;
    // Creates the topic where the broker auto-creates, as producers do.
    let req = Request::Metadata(MetadataRequest {
        topics: Some(vec![MetadataRequestTopic {
            name: Some(s(&args.topic)),
            ..Default::default()
        }]),
        allow_auto_topic_creation: true,
        ..Default::default()
    });
    let _ = c.bootstrap.call(12, &req)?;
    let parts = c.partitions(&args.topic)?;
    if parts.is_empty() {
        bail!("topic {} has no partitions", args.topic);
    }
    let leaders: HashMap<i32, i32> = parts.iter().copied().collect();
    let n = parts.len() as i32;
    let stdin = std::io::stdin();
    let mut pending: BTreeMap<i32, Vec<(Option<Vec<u8>>, Vec<u8>)>> = BTreeMap::new();
    let mut pending_bytes = 0usize;
    let mut sticky = 0i32;
    let mut sent = 0u64;
    let flush = |c: &mut Cluster,
                 pending: &mut BTreeMap<i32, Vec<(Option<Vec<u8>>, Vec<u8>)>>|
     -> anyhow::Result<u64> {
        let mut count = 0u64;
        for (p, recs) in std::mem::take(pending) {
            let refs: Vec<(Option<&[u8]>, Option<&[u8]>)> = recs
                .iter()
                .map(|(k, v)| (k.as_deref(), Some(v.as_slice())))
                .collect();
            let batch = build::batch(
                &build::BatchSpec {
                    base_timestamp: now_ms(),
                    timestamp_step: 0,
                    ..build::BatchSpec::default()
                },
                &refs,
            );
            let req = Request::Produce(ProduceRequest {
                acks,
                timeout_ms: 30_000,
                topic_data: vec![TopicProduceData {
                    name: s(&args.topic),
                    partition_data: vec![PartitionProduceData {
                        index: p,
                        records: Some(batch.into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            });
            let leader = leaders.get(&p).copied().unwrap_or(-1);
            let client = c.broker(leader)?;
            if acks == 0 {
                bail!("acks=0 is not supported by this tool (no answer to check)");
            }
            let Response::Produce(r) = client.call(9, &req)?.1 else {
                bail!("unexpected answer to Produce");
            };
            for t in &r.responses {
                for pr in &t.partition_responses {
                    check(
                        pr.error_code,
                        &format!("produce to {}-{p}", args.topic),
                        pr.error_message.as_ref(),
                    )?;
                }
            }
            count += recs.len() as u64;
        }
        Ok(count)
    };
    for line in stdin.lock().lines() {
        let line = line.context("reading stdin")?;
        let (key, value) = match &args.key_separator {
            Some(sep) => match line.split_once(sep.as_str()) {
                Some((k, v)) => (Some(k.as_bytes().to_vec()), v.as_bytes().to_vec()),
                None => (None, line.as_bytes().to_vec()),
            },
            None => (None, line.as_bytes().to_vec()),
        };
        let p = match (args.partition, &key) {
            (Some(p), _) => p,
            (None, Some(k)) => partition_for_key(k, n),
            (None, None) => parts[(sticky as usize) % parts.len()].0,
        };
        pending_bytes += value.len() + key.as_ref().map_or(0, Vec::len) + 16;
        pending.entry(p).or_default().push((key, value));
        if pending_bytes >= 512 * 1024 || pending.values().map(Vec::len).sum::<usize>() >= 1000 {
            sent += flush(&mut c, &mut pending)?;
            pending_bytes = 0;
            sticky = sticky.wrapping_add(1);
        }
    }
    sent += flush(&mut c, &mut pending)?;
    eprintln!("produced {sent} records to {}", args.topic);
    Ok(())
}

/// A record as the consumer prints it.
struct Printed<'a> {
    partition: i32,
    offset: i64,
    timestamp: i64,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
}

fn json_str(b: Option<&[u8]>) -> String {
    match b {
        None => "null".to_owned(),
        Some(b) => {
            let s = String::from_utf8_lossy(b);
            let mut out = String::with_capacity(s.len() + 2);
            out.push('"');
            for ch in s.chars() {
                match ch {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                    c => out.push(c),
                }
            }
            out.push('"');
            out
        }
    }
}

fn print_record(out: &mut impl Write, format: &str, r: &Printed) -> std::io::Result<()> {
    let text = |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
    match format {
        "json" => writeln!(
            out,
            "{{\"partition\":{},\"offset\":{},\"timestamp\":{},\"key\":{},\"value\":{}}}",
            r.partition,
            r.offset,
            r.timestamp,
            json_str(r.key),
            json_str(r.value)
        ),
        "kv" => writeln!(out, "{}\t{}", text(r.key), text(r.value)),
        _ => writeln!(out, "{}", text(r.value)),
    }
}

/// A group membership held by `sluice consume --group`.
struct Member {
    coord: Client,
    group: String,
    member_id: String,
    generation: i32,
    last_heartbeat: Instant,
}

impl Member {
    /// Joins (range-assigning as leader) and returns the partitions of `topic` this member got.
    fn join(c: &mut Cluster, group: &str, topic: &str) -> anyhow::Result<(Member, Vec<i32>)> {
        let coord = coordinator(c, group)?;
        let mut m = Member {
            coord,
            group: group.to_owned(),
            member_id: String::new(),
            generation: -1,
            last_heartbeat: Instant::now(),
        };
        let parts = m.rejoin(c, topic)?;
        Ok((m, parts))
    }

    fn rejoin(&mut self, c: &mut Cluster, topic: &str) -> anyhow::Result<Vec<i32>> {
        loop {
            let req = Request::JoinGroup(JoinGroupRequest {
                group_id: s(&self.group),
                session_timeout_ms: 10_000,
                rebalance_timeout_ms: 30_000,
                member_id: s(&self.member_id),
                protocol_type: s("consumer"),
                protocols: vec![JoinGroupRequestProtocol {
                    name: s("range"),
                    metadata: subscription(&[topic]),
                    ..Default::default()
                }],
                ..Default::default()
            });
            let Response::JoinGroup(j) = self.coord.call(7, &req)?.1 else {
                bail!("unexpected answer to JoinGroup");
            };
            if j.error_code == 79 {
                self.member_id = j.member_id.to_string();
                continue;
            }
            if j.error_code == 25 {
                self.member_id.clear();
                continue;
            }
            check(j.error_code, &format!("join {}", self.group), None)?;
            self.member_id = j.member_id.to_string();
            self.generation = j.generation_id;
            let assignments = if j.leader == j.member_id {
                let parts = c.partitions(topic)?;
                let mut members: Vec<String> =
                    j.members.iter().map(|m| m.member_id.to_string()).collect();
                members.sort();
                let per = parts.len() / members.len().max(1);
                let extra = parts.len() % members.len().max(1);
                let mut next = 0;
                members
                    .iter()
                    .enumerate()
                    .map(|(i, m)| {
                        let take = per + usize::from(i < extra);
                        let mine: Vec<i32> =
                            parts[next..next + take].iter().map(|(p, _)| *p).collect();
                        next += take;
                        SyncGroupRequestAssignment {
                            member_id: s(m),
                            assignment: encode_assignment(&[(topic.to_owned(), mine)]),
                            ..Default::default()
                        }
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let req = Request::SyncGroup(SyncGroupRequest {
                group_id: s(&self.group),
                generation_id: self.generation,
                member_id: s(&self.member_id),
                protocol_type: Some(s("consumer")),
                protocol_name: Some(s("range")),
                assignments,
                ..Default::default()
            });
            let Response::SyncGroup(sy) = self.coord.call(5, &req)?.1 else {
                bail!("unexpected answer to SyncGroup");
            };
            if sy.error_code == 27 {
                continue;
            }
            check(sy.error_code, &format!("sync {}", self.group), None)?;
            self.last_heartbeat = Instant::now();
            return Ok(decode_assignment(sy.assignment)
                .into_iter()
                .filter(|(t, _)| t == topic)
                .flat_map(|(_, ps)| ps)
                .collect());
        }
    }

    /// Heartbeats when due; `true` when the group rebalances (the caller rejoins).
    fn heartbeat(&mut self) -> anyhow::Result<bool> {
        if self.last_heartbeat.elapsed() < Duration::from_secs(3) {
            return Ok(false);
        }
        self.last_heartbeat = Instant::now();
        let req = Request::Heartbeat(HeartbeatRequest {
            group_id: s(&self.group),
            generation_id: self.generation,
            member_id: s(&self.member_id),
            ..Default::default()
        });
        let Response::Heartbeat(h) = self.coord.call(4, &req)?.1 else {
            bail!("unexpected answer to Heartbeat");
        };
        match h.error_code {
            0 => Ok(false),
            22 | 25 | 27 => Ok(true),
            e => {
                check(e, "heartbeat", None)?;
                Ok(false)
            }
        }
    }

    fn leave(&mut self) {
        let req = Request::LeaveGroup(LeaveGroupRequest {
            group_id: s(&self.group),
            member_id: s(&self.member_id),
            ..Default::default()
        });
        let _ = self.coord.call(2, &req);
    }
}

pub fn consume(target: &Target, args: ConsumeArgs) -> anyhow::Result<()> {
    let mut c = Cluster::connect(target)?;
    let all = c.partitions(&args.topic)?;
    let leaders: HashMap<i32, i32> = all.iter().copied().collect();
    let start_ts = match args.from.as_str() {
        "beginning" | "earliest" => Some(-2),
        "end" | "latest" => Some(-1),
        _ => None,
    };
    let explicit: Option<i64> = if start_ts.is_none() {
        Some(
            args.from
                .parse()
                .map_err(|_| anyhow!("--from is beginning, end or an offset, not {}", args.from))?,
        )
    } else {
        None
    };
    let mut member = None;
    let mut mine: Vec<i32> = all.iter().map(|(p, _)| *p).collect();
    if let Some(g) = &args.group {
        let (m, parts) = Member::join(&mut c, g, &args.topic)?;
        member = Some(m);
        mine = parts;
    }
    let mut positions = start_positions(
        &mut c,
        &args,
        &mine,
        &leaders,
        start_ts,
        explicit,
        member.as_mut(),
    )?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut printed = 0u64;
    let mut at_end: HashMap<i32, bool> = HashMap::new();
    loop {
        if args.count.is_some_and(|n| printed >= n) {
            break;
        }
        if let Some(m) = member.as_mut()
            && m.heartbeat()?
        {
            mine = m.rejoin(&mut c, &args.topic)?;
            positions =
                start_positions(&mut c, &args, &mine, &leaders, start_ts, explicit, Some(m))?;
            at_end.clear();
        }
        if args.exit
            && !positions.is_empty()
            && positions.keys().all(|p| at_end.get(p) == Some(&true))
        {
            break;
        }
        if positions.is_empty() {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        let mut by_leader: BTreeMap<i32, Vec<(i32, i64)>> = BTreeMap::new();
        for (p, o) in &positions {
            by_leader
                .entry(leaders.get(p).copied().unwrap_or(-1))
                .or_default()
                .push((*p, *o));
        }
        let mut commits = Vec::new();
        for (leader, ps) in by_leader {
            let req = Request::Fetch(FetchRequest {
                replica_id: BrokerId(-1),
                max_wait_ms: 500,
                min_bytes: 1,
                max_bytes: 8 << 20,
                session_epoch: -1,
                topics: vec![FetchTopic {
                    topic: s(&args.topic),
                    partitions: ps
                        .iter()
                        .map(|(p, o)| FetchPartition {
                            partition: *p,
                            current_leader_epoch: -1,
                            fetch_offset: *o,
                            last_fetched_epoch: -1,
                            log_start_offset: -1,
                            partition_max_bytes: 1 << 20,
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            });
            let Response::Fetch(r) = c.broker(leader)?.call(12, &req)?.1 else {
                bail!("unexpected answer to Fetch");
            };
            check(r.error_code, "fetch", None)?;
            for t in r.responses {
                for pd in t.partitions {
                    let p = pd.partition_index;
                    check(pd.error_code, &format!("fetch {}-{p}", args.topic), None)?;
                    let mut next = positions.get(&p).copied().unwrap_or(0);
                    for batch in
                        Batches::new(pd.records.map(Records::into_bytes).unwrap_or_default())
                    {
                        let batch =
                            batch.map_err(|e| anyhow!("bad batch in {}-{p}: {e}", args.topic))?;
                        if batch.last_offset() < next || batch.is_control() {
                            next = next.max(batch.last_offset() + 1);
                            continue;
                        }
                        let log_append = batch.timestamp_type()
                            == sluice_net::record_batch::TimestampType::LogAppendTime;
                        let records =
                            sluice_shard::batch_records(&batch, 64 << 20).map_err(|e| {
                                anyhow!(
                                    "cannot read a batch of {}-{p} ({:?}): {e}",
                                    args.topic,
                                    batch.compression()
                                )
                            })?;
                        for rec in records {
                            let rec = rec.map_err(|e| anyhow!("{e}"))?;
                            let offset = batch.base_offset() + i64::from(rec.offset_delta);
                            if offset < next {
                                continue;
                            }
                            if args.count.is_some_and(|n| printed >= n) {
                                break;
                            }
                            print_record(
                                &mut out,
                                &args.format,
                                &Printed {
                                    partition: p,
                                    offset,
                                    timestamp: if log_append {
                                        batch.max_timestamp()
                                    } else {
                                        batch.base_timestamp() + rec.timestamp_delta
                                    },
                                    key: rec.key.as_deref(),
                                    value: rec.value.as_deref(),
                                },
                            )?;
                            printed += 1;
                            next = offset + 1;
                        }
                        if args.count.is_none_or(|n| printed < n) {
                            next = next.max(batch.last_offset() + 1);
                        }
                    }
                    if next != positions.get(&p).copied().unwrap_or(0) {
                        commits.push((args.topic.clone(), p, next));
                    }
                    positions.insert(p, next);
                    at_end.insert(p, next >= pd.high_watermark);
                }
            }
        }
        out.flush()?;
        if let Some(m) = member.as_mut()
            && !commits.is_empty()
        {
            let (generation, id) = (m.generation, m.member_id.clone());
            if let Err(e) = commit(&mut m.coord, &m.group, generation, &id, &commits) {
                eprintln!("commit failed (will rejoin): {e}");
                m.last_heartbeat = Instant::now() - Duration::from_secs(10);
            }
        }
    }
    if let Some(m) = member.as_mut() {
        m.leave();
    }
    Ok(())
}

/// Where each partition starts: the group's committed offset, else `--from`.
fn start_positions(
    c: &mut Cluster,
    args: &ConsumeArgs,
    mine: &[i32],
    leaders: &HashMap<i32, i32>,
    start_ts: Option<i64>,
    explicit: Option<i64>,
    member: Option<&mut Member>,
) -> anyhow::Result<BTreeMap<i32, i64>> {
    let parts: Vec<(i32, i32)> = mine
        .iter()
        .map(|p| (*p, leaders.get(p).copied().unwrap_or(-1)))
        .collect();
    let mut positions: BTreeMap<i32, i64> = match (start_ts, explicit) {
        (Some(ts), _) => c.list_offsets(&args.topic, &parts, ts)?,
        (None, Some(o)) => mine.iter().map(|p| (*p, o)).collect(),
        (None, None) => BTreeMap::new(),
    };
    if let Some(m) = member {
        let req = Request::OffsetFetch(OffsetFetchRequest {
            group_id: s(&m.group),
            topics: Some(vec![OffsetFetchRequestTopic {
                name: s(&args.topic),
                partition_indexes: mine.to_vec(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        let Response::OffsetFetch(r) = m.coord.call(7, &req)?.1 else {
            bail!("unexpected answer to OffsetFetch");
        };
        for t in r.topics {
            for p in t.partitions {
                if p.committed_offset >= 0 {
                    positions.insert(p.partition_index, p.committed_offset);
                }
            }
        }
    }
    Ok(positions)
}
