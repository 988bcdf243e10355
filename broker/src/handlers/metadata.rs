//! Metadata: this broker, and every requested topic with its partitions (auto-creating missing
//! topics when allowed). On one node every partition's leader, replica and ISR is this broker;
//! on a cluster node the brokers and placements come from the controller's metadata image.

use std::rc::Rc;

use sluice_net::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use sluice_net::messages::{
    DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, MetadataRequest,
    MetadataResponse,
};
use sluice_net::{BrokerId, StrBytes, TopicName, Uuid};

use super::authorized;
use crate::core::Core;
use crate::errors::code;
use crate::image::{PartitionState, TopicImage};
use crate::metadata::{TopicMeta, topic_name_error};
use crate::registry::TopicChange;

/// Whether a topic is one of Kafka's internal topics.
pub fn is_internal(name: &str) -> bool {
    name == "__consumer_offsets" || name == "__transaction_state"
}

pub async fn handle(core: &Rc<Core>, request: MetadataRequest, version: i16) -> MetadataResponse {
    let allow_auto_create =
        (version < 4 || request.allow_auto_topic_creation) && core.config.auto_create_topics;
    if let Some(requested) = &request.topics
        && allow_auto_create
    {
        let table = core.topics();
        let missing: Vec<TopicChange> = requested
            .iter()
            .filter_map(|t| t.name.as_ref())
            .filter(|n| !table.topics().contains_key(n.as_str()) && topic_name_error(n).is_none())
            .map(|n| TopicChange::Create {
                name: n.to_string(),
                partitions: core.config.default_partitions,
                configs: Default::default(),
                dry_run: false,
            })
            .collect();
        if !missing.is_empty() {
            // Racing creators get TOPIC_ALREADY_EXISTS here, which is fine: the topic exists.
            let _ = core.change_topics(missing).await;
        }
    }
    let table = core.topics();
    let describe =
        |t: &TopicMeta| topic_entry(&table, t, request.include_topic_authorized_operations);
    let brokers = listed_brokers(core, &table);
    let topics = match &request.topics {
        None => table.topics().values().map(describe).collect(),
        Some(requested) => requested
            .iter()
            .map(|r| match &r.name {
                Some(name) => match table.topics().get(name.as_str()) {
                    Some(t) => describe(t),
                    None => missing_topic(
                        request.include_topic_authorized_operations,
                        Some(name.clone()),
                        Uuid::default(),
                        if topic_name_error(name).is_some() {
                            code::INVALID_TOPIC_EXCEPTION
                        } else {
                            code::UNKNOWN_TOPIC_OR_PARTITION
                        },
                    ),
                },
                None => match table.by_id(&r.topic_id.0) {
                    Some(t) => describe(t),
                    None => missing_topic(
                        request.include_topic_authorized_operations,
                        None,
                        r.topic_id,
                        code::UNKNOWN_TOPIC_ID,
                    ),
                },
            })
            .collect(),
    };
    MetadataResponse {
        brokers,
        cluster_id: Some(StrBytes::from(core.cluster_id.as_str())),
        controller_id: core.controller_id(&table).into(),
        topics,
        // Only v8-10 carry the field (the codec leaves it out of other versions); librdkafka's
        // describe_cluster asks through it.
        cluster_authorized_operations: authorized::when(
            request.include_cluster_authorized_operations,
            authorized::CLUSTER,
        ),
        ..Default::default()
    }
}

/// The brokers a Metadata answer lists.
fn listed_brokers(core: &Core, table: &TopicImage) -> Vec<MetadataResponseBroker> {
    core.brokers(table)
        .into_iter()
        .map(|b| MetadataResponseBroker {
            node_id: b.id.into(),
            host: b.host.into(),
            port: b.port,
            rack: b.rack.map(Into::into),
            ..Default::default()
        })
        .collect()
}

/// An unknown topic's entry. With no authorizer Kafka reports every topic operation as allowed
/// even for a topic that does not exist (observed on Kafka 4.4 with kafka-python).
fn missing_topic(
    include_ops: bool,
    name: Option<TopicName>,
    topic_id: Uuid,
    error_code: i16,
) -> MetadataResponseTopic {
    MetadataResponseTopic {
        error_code,
        name,
        topic_id,
        is_internal: false,
        partitions: Vec::new(),
        topic_authorized_operations: authorized::when(include_ops, authorized::TOPIC),
        ..Default::default()
    }
}

/// A partition's error in Metadata: LEADER_NOT_AVAILABLE while it has no leader (its only
/// replicas fenced), as Kafka answers.
fn partition_error(state: &PartitionState) -> i16 {
    if state.leader < 0 {
        code::LEADER_NOT_AVAILABLE
    } else {
        code::NONE
    }
}

/// Broker ids as the wire types them.
fn brokers(ids: &[i32]) -> Vec<BrokerId> {
    ids.iter().copied().map(BrokerId).collect()
}

fn topic_entry(image: &TopicImage, t: &TopicMeta, include_ops: bool) -> MetadataResponseTopic {
    MetadataResponseTopic {
        error_code: code::NONE,
        name: Some(t.name.as_str().into()),
        topic_id: Uuid(t.id),
        is_internal: is_internal(&t.name),
        partitions: (0..t.partitions)
            .filter_map(|p| {
                let state = image.partition(&t.name, p)?;
                Some(MetadataResponsePartition {
                    error_code: partition_error(state),
                    partition_index: p,
                    leader_id: BrokerId(state.leader),
                    leader_epoch: state.leader_epoch,
                    replica_nodes: brokers(&state.replicas),
                    isr_nodes: brokers(&state.isr),
                    offline_replicas: brokers(&image.offline_replicas(state)),
                    ..Default::default()
                })
            })
            .collect(),
        topic_authorized_operations: authorized::when(include_ops, authorized::TOPIC),
        ..Default::default()
    }
}

/// DescribeTopicPartitions (KIP-966), which Kafka 4's `kafka-topics --describe` uses: like
/// Metadata, with a partition limit and a cursor for paging, and the eligible-leader-replica
/// lists (always empty on one node).
pub fn describe_topic_partitions(
    core: &Rc<Core>,
    request: &DescribeTopicPartitionsRequest,
) -> DescribeTopicPartitionsResponse {
    use sluice_net::messages::describe_topic_partitions_response::{
        Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
    };
    let cursor_at = |name: &str, partition_index: i32| Cursor {
        topic_name: name.into(),
        partition_index,
        ..Default::default()
    };
    let table = core.topics();
    let mut names: Vec<String> = if request.topics.is_empty() {
        table.topics().keys().cloned().collect()
    } else {
        request.topics.iter().map(|t| t.name.to_string()).collect()
    };
    names.sort();
    names.dedup();
    let (cursor_topic, cursor_partition) = match &request.cursor {
        Some(c) => (Some(c.topic_name.to_string()), c.partition_index.max(0)),
        None => (None, 0),
    };
    let mut budget = usize::try_from(request.response_partition_limit.max(1)).unwrap_or(1);
    let mut topics = Vec::new();
    let mut next_cursor = None;
    for name in names {
        if cursor_topic.as_ref().is_some_and(|c| name < *c) {
            continue;
        }
        let first = if cursor_topic.as_deref() == Some(name.as_str()) {
            cursor_partition
        } else {
            0
        };
        let Some(t) = table.topics().get(&name) else {
            topics.push(DescribeTopicPartitionsResponseTopic {
                error_code: code::UNKNOWN_TOPIC_OR_PARTITION,
                name: Some(name.into()),
                topic_authorized_operations: authorized::TOPIC,
                ..Default::default()
            });
            continue;
        };
        if budget == 0 {
            next_cursor = Some(cursor_at(&name, first));
            break;
        }
        let mut partitions = Vec::new();
        for p in first..t.partitions {
            if budget == 0 {
                next_cursor = Some(cursor_at(&name, p));
                break;
            }
            let Some(state) = table.partition(&name, p) else {
                continue;
            };
            budget -= 1;
            partitions.push(DescribeTopicPartitionsResponsePartition {
                error_code: partition_error(state),
                partition_index: p,
                leader_id: BrokerId(state.leader),
                leader_epoch: state.leader_epoch,
                replica_nodes: brokers(&state.replicas),
                isr_nodes: brokers(&state.isr),
                eligible_leader_replicas: Some(Vec::new()),
                last_known_elr: Some(Vec::new()),
                offline_replicas: brokers(&table.offline_replicas(state)),
                ..Default::default()
            });
        }
        topics.push(DescribeTopicPartitionsResponseTopic {
            error_code: code::NONE,
            name: Some(name.as_str().into()),
            topic_id: Uuid(t.id),
            is_internal: is_internal(&name),
            partitions,
            topic_authorized_operations: authorized::TOPIC,
            ..Default::default()
        });
        if next_cursor.is_some() {
            break;
        }
    }
    DescribeTopicPartitionsResponse {
        topics,
        next_cursor,
        ..Default::default()
    }
}
