//! The first records of a metadata log: what a brand-new Kafka 4.4 cluster writes (the
//! `kafka-storage format` feature levels plus the controller's activation records), and the
//! records that carry an existing single-node sluice data dir's topics into the log.
//!
//! Kafka 4.4, measured with its own `Formatter` and read from `ActivationRecordsGenerator`:
//! the bootstrap is one metadata transaction: `BeginTransaction("Bootstrap records")`,
//! `metadata.version` = 33 (4.4-IV2, the latest production level), then the other production
//! features at their defaults in name order (eligible.leader.replicas.version 1, group.version
//! 1, share.version 2, streams.version 1, transaction.version 2; kraft.version lives in the
//! KRaft control records, not here), the cluster-level `min.insync.replicas` config (written
//! because ELR is on), and `EndTransaction`.

use crate::image::{ELR_VERSION, METADATA_VERSION, RESOURCE_BROKER, RESOURCE_TOPIC};
use sluice_net::Uuid;
use sluice_net::messages::{
    BeginTransactionRecord, ConfigRecord, EndTransactionRecord, FeatureLevelRecord, MetadataRecord,
    PartitionRecord, TopicRecord,
};
use sluice_net::metadata_record::VersionedRecord;

/// Kafka 4.4's latest production `metadata.version` level (`MetadataVersion.IBP_4_4_IV2`).
pub const METADATA_VERSION_LEVEL: i16 = 33;
/// `PartitionRecord` version at level 33 (`MetadataVersion.partitionRecordVersion`).
pub const PARTITION_RECORD_VERSION: i16 = 2;
/// `PartitionChangeRecord` version at level 33.
pub const PARTITION_CHANGE_RECORD_VERSION: i16 = 2;
/// `RegisterBrokerRecord` version at level 33.
pub const REGISTER_BROKER_RECORD_VERSION: i16 = 4;

/// The non-`metadata.version` features Kafka 4.4 bootstraps, in the order it writes them.
pub const BOOTSTRAP_FEATURES: &[(&str, i16)] = &[
    (ELR_VERSION, 1),
    ("group.version", 1),
    ("share.version", 2),
    ("streams.version", 1),
    ("transaction.version", 2),
];

/// The records a brand-new cluster's first active controller writes, as Kafka 4.4 does.
/// `min_insync_replicas` is the cluster default it records (Kafka: its own config, 1).
pub fn bootstrap_records(min_insync_replicas: i32) -> Vec<VersionedRecord> {
    let mut records = vec![v0(MetadataRecord::BeginTransaction(
        BeginTransactionRecord {
            name: Some("Bootstrap records".into()),
            ..Default::default()
        },
    ))];
    records.push(feature(METADATA_VERSION, METADATA_VERSION_LEVEL));
    for &(name, level) in BOOTSTRAP_FEATURES {
        records.push(feature(name, level));
    }
    records.push(v0(MetadataRecord::Config(ConfigRecord {
        resource_type: RESOURCE_BROKER,
        resource_name: "".into(),
        name: "min.insync.replicas".into(),
        value: Some(min_insync_replicas.to_string().into()),
        ..Default::default()
    })));
    records.push(v0(MetadataRecord::EndTransaction(
        EndTransactionRecord::default(),
    )));
    records
}

/// A topic of a single-node sluice data dir written before the cluster existed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyTopic {
    /// Topic name.
    pub name: String,
    /// The topic id the data dir already uses (kept, so clients see the same id).
    pub id: Uuid,
    /// Partition count.
    pub partition_count: i32,
    /// Topic-level configs set on it.
    pub configs: Vec<(String, String)>,
}

/// The records that make an old data dir's topics the log's first topics, all hosted by
/// `broker_id` (the node that owned the dir). Partitions start with that broker as the only
/// replica and in-sync replica and no leader: it becomes leader (epoch 1) when it registers
/// and is unfenced, the same path a fenced broker's partitions take to come back.
/// Write them after [`bootstrap_records`].
pub fn legacy_topic_records(topics: &[LegacyTopic], broker_id: i32) -> Vec<VersionedRecord> {
    let mut records = Vec::new();
    for topic in topics {
        records.push(v0(MetadataRecord::Topic(TopicRecord {
            name: topic.name.as_str().into(),
            topic_id: topic.id,
            ..Default::default()
        })));
        for (key, value) in &topic.configs {
            records.push(v0(MetadataRecord::Config(ConfigRecord {
                resource_type: RESOURCE_TOPIC,
                resource_name: topic.name.as_str().into(),
                name: key.as_str().into(),
                value: Some(value.as_str().into()),
                ..Default::default()
            })));
        }
        for partition_id in 0..topic.partition_count {
            records.push(new_partition_record(
                topic.id,
                partition_id,
                &[broker_id],
                &[broker_id],
                -1,
                &[Uuid::ZERO],
            ));
        }
    }
    records
}

/// A `PartitionRecord` for a new partition at Kafka 4.4's version (epochs 0, no ELR).
pub(crate) fn new_partition_record(
    topic_id: Uuid,
    partition_id: i32,
    replicas: &[i32],
    isr: &[i32],
    leader: i32,
    directories: &[Uuid],
) -> VersionedRecord {
    VersionedRecord {
        version: PARTITION_RECORD_VERSION,
        record: MetadataRecord::Partition(PartitionRecord {
            partition_id,
            topic_id,
            replicas: replicas.iter().map(|&b| b.into()).collect(),
            isr: isr.to_vec(),
            leader: leader.into(),
            leader_epoch: 0,
            partition_epoch: 0,
            directories: directories.to_vec(),
            eligible_leader_replicas: Some(Vec::new()),
            last_known_elr: Some(Vec::new()),
            ..Default::default()
        }),
    }
}

fn feature(name: &str, level: i16) -> VersionedRecord {
    v0(MetadataRecord::FeatureLevel(FeatureLevelRecord {
        name: name.into(),
        feature_level: level,
        ..Default::default()
    }))
}

fn v0(record: MetadataRecord) -> VersionedRecord {
    VersionedRecord { version: 0, record }
}
