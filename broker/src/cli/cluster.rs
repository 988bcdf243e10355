//! What every CLI command shares: connections (one blocking [`Client`] per broker, the
//! bootstrap first), the metadata and ListOffsets lookups, and how a Kafka error code becomes
//! an error message.

use std::collections::{BTreeMap, HashMap};

use anyhow::{anyhow, bail};
use sluice_net::client::Client;
use sluice_net::error_code::{ErrorCode, code};
use sluice_net::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use sluice_net::messages::metadata_request::MetadataRequestTopic;
use sluice_net::messages::{ListOffsetsRequest, MetadataRequest, MetadataResponse};
use sluice_net::{BrokerId, Request, Response, StrBytes};

use super::{CLIENT_ID, TIMEOUT, Target};

/// ListOffsets' timestamp for a partition's log start offset.
pub(super) const EARLIEST: i64 = -2;
/// ListOffsets' timestamp for a partition's log end offset.
pub(super) const LATEST: i64 = -1;

/// A wire string from `x`: a `StrBytes`, or an entity such as `TopicName` or `GroupId`.
pub(super) fn s<T: for<'a> From<&'a str>>(x: &str) -> T {
    T::from(x)
}

pub(super) fn connect(addr: &str) -> anyhow::Result<Client> {
    Ok(Client::connect(addr, CLIENT_ID, TIMEOUT)?)
}

/// The error codes the CLI names in its messages (others print as a bare number). Every code
/// could be named from `ErrorCode` now; the list keeps the output as it was.
const NAMED: &[i16] = &[
    code::UNKNOWN_TOPIC_OR_PARTITION,
    code::REQUEST_TIMED_OUT,
    code::COORDINATOR_NOT_AVAILABLE,
    code::NOT_COORDINATOR,
    code::UNKNOWN_MEMBER_ID,
    code::REBALANCE_IN_PROGRESS,
    code::TOPIC_ALREADY_EXISTS,
    code::INVALID_PARTITIONS,
    code::INVALID_CONFIG,
    code::NON_EMPTY_GROUP,
    code::GROUP_ID_NOT_FOUND,
];

/// `Kafka error <code> <NAME>`, the name left out for the codes not in [`NAMED`].
pub(super) fn kafka_error(error_code: i16) -> String {
    let name = ErrorCode::from_code(error_code)
        .filter(|_| NAMED.contains(&error_code))
        .map_or("", ErrorCode::name);
    format!("Kafka error {error_code} {name}")
        .trim_end()
        .to_owned()
}

/// `Ok` for error code 0; otherwise an error naming `what`, the code and the broker's message.
pub(super) fn check(error_code: i16, what: &str, message: Option<&StrBytes>) -> anyhow::Result<()> {
    if error_code == code::NONE {
        return Ok(());
    }
    match message.filter(|m| !m.is_empty()) {
        Some(m) => bail!("{what}: {} ({})", kafka_error(error_code), m.as_str()),
        None => bail!("{what}: {}", kafka_error(error_code)),
    }
}

/// `key=value` split at the first `=`.
pub(super) fn key_value(kv: &str) -> anyhow::Result<(String, String)> {
    kv.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| anyhow!("`{kv}` is not key=value"))
}

/// The cluster as the bootstrap broker describes it, with one connection per broker.
pub(super) struct Cluster {
    pub(super) bootstrap: Client,
    brokers: HashMap<i32, String>,
    conns: HashMap<i32, Client>,
}

impl Cluster {
    pub(super) fn connect(target: &Target) -> anyhow::Result<Cluster> {
        Ok(Cluster {
            bootstrap: connect(target.bootstrap())?,
            brokers: HashMap::new(),
            conns: HashMap::new(),
        })
    }

    /// Metadata of `topics` (all topics with `None`), never creating one; remembers the
    /// brokers' addresses.
    pub(super) fn metadata(&mut self, topics: Option<&[&str]>) -> anyhow::Result<MetadataResponse> {
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
    pub(super) fn partitions(&mut self, topic: &str) -> anyhow::Result<Vec<(i32, i32)>> {
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

    /// The connection to broker `node`, opened on first use.
    pub(super) fn broker(&mut self, node: i32) -> anyhow::Result<&mut Client> {
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

    /// Earliest ([`EARLIEST`]) or latest ([`LATEST`]) offsets of partitions (grouped by
    /// leader).
    pub(super) fn list_offsets(
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Named codes carry Kafka's name; others only the number, with no trailing space.
    #[test]
    fn kafka_error_names_the_codes_it_knows() {
        assert_eq!(kafka_error(36), "Kafka error 36 TOPIC_ALREADY_EXISTS");
        assert_eq!(kafka_error(3), "Kafka error 3 UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(kafka_error(69), "Kafka error 69 GROUP_ID_NOT_FOUND");
        assert_eq!(kafka_error(29), "Kafka error 29");
        assert_eq!(kafka_error(999), "Kafka error 999");
    }

    /// Code 0 passes; others fail with what was tried, the code, and a non-empty message.
    #[test]
    fn check_builds_the_error_text() {
        assert!(check(0, "anything", None).is_ok());
        let e = check(36, "create t", None).expect_err("36 fails");
        assert_eq!(
            e.to_string(),
            "create t: Kafka error 36 TOPIC_ALREADY_EXISTS"
        );
        let msg = StrBytes::from("Topic 't' already exists.");
        let e = check(36, "create t", Some(&msg)).expect_err("36 fails");
        assert_eq!(
            e.to_string(),
            "create t: Kafka error 36 TOPIC_ALREADY_EXISTS (Topic 't' already exists.)"
        );
        let empty = StrBytes::default();
        let e = check(7, "x", Some(&empty)).expect_err("7 fails");
        assert_eq!(e.to_string(), "x: Kafka error 7 REQUEST_TIMED_OUT");
    }

    /// `key=value` splits at the first `=`; a value may hold `=` or be empty.
    #[test]
    fn key_value_splits_at_the_first_equals() {
        assert_eq!(
            key_value("retention.ms=1000").expect("kv"),
            ("retention.ms".to_owned(), "1000".to_owned())
        );
        assert_eq!(
            key_value("a=b=c").expect("kv"),
            ("a".to_owned(), "b=c".to_owned())
        );
        assert_eq!(
            key_value("a=").expect("kv"),
            ("a".to_owned(), String::new())
        );
        let e = key_value("novalue").expect_err("no =");
        assert_eq!(e.to_string(), "`novalue` is not key=value");
    }
}
