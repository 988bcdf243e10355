//! The image as metadata records (Kafka's `MetadataImage.write` into a snapshot): records that,
//! applied in order to an empty image by [`MetadataImage::from_snapshot_records`], rebuild it.
//!
//! Order (Kafka's): feature levels (`metadata.version` first, so every later record is read
//! at a known level), brokers (each `RegisterBrokerRecord` carries its epoch, fenced and
//! controlled-shutdown state), topics each followed by its partitions (current replicas, ISR,
//! leader, both epochs, ELR, last-known ELR, recovery state, directories), configs, the
//! producer-id block.
//!
//! What a snapshot does not carry: the offset of each broker's `RegisterBrokerRecord`
//! (`BrokerRegistration::registered_offset`). Like Kafka (`QuorumController` replays every
//! snapshot record at the snapshot's last contained offset), a loaded image sets it to the
//! snapshot's last offset: a fenced broker then unfences once caught up to the snapshot, which
//! it is at least as late as its registration (the snapshot holds only committed records).

use super::{ImageError, METADATA_VERSION, MetadataImage, PartitionRegistration};
use crate::bootstrap::{PARTITION_RECORD_VERSION, REGISTER_BROKER_RECORD_VERSION};
use sluice_net::Uuid;
use sluice_net::messages::register_broker_record::{BrokerEndpoint, BrokerFeature};
use sluice_net::messages::{
    ConfigRecord, FeatureLevelRecord, MetadataRecord, PartitionRecord, ProducerIdsRecord,
    RegisterBrokerRecord, TopicRecord,
};
use sluice_net::metadata_record::VersionedRecord;

use super::BrokerRegistration;

impl MetadataImage {
    /// The records that rebuild this image (see the module doc for their order).
    pub fn records(&self) -> Vec<VersionedRecord> {
        let mut out = Vec::new();
        let mut features: Vec<_> = self.features.iter().collect();
        features.sort_by_key(|(name, _)| name.as_str() != METADATA_VERSION);
        for (name, level) in features {
            out.push(v0(MetadataRecord::FeatureLevel(FeatureLevelRecord {
                name: name.as_str().into(),
                feature_level: *level,
                ..Default::default()
            })));
        }
        for broker in self.brokers.values() {
            out.push(VersionedRecord {
                version: REGISTER_BROKER_RECORD_VERSION,
                record: MetadataRecord::RegisterBroker(register_record(broker)),
            });
        }
        for topic in self.topics.values() {
            out.push(v0(MetadataRecord::Topic(TopicRecord {
                name: topic.name.as_str().into(),
                topic_id: topic.id,
                ..Default::default()
            })));
            for (&index, partition) in &topic.partitions {
                out.push(VersionedRecord {
                    version: PARTITION_RECORD_VERSION,
                    record: MetadataRecord::Partition(partition_record(topic.id, index, partition)),
                });
            }
        }
        for (resource, keys) in self.configs.iter() {
            for (name, value) in keys.iter() {
                out.push(v0(MetadataRecord::Config(ConfigRecord {
                    resource_type: resource.resource_type,
                    resource_name: resource.name.as_str().into(),
                    name: name.as_str().into(),
                    value: Some(value.as_str().into()),
                    ..Default::default()
                })));
            }
        }
        if self.next_producer_id > 0 {
            // The image keeps only the next id; the block's owner is not needed to go on.
            out.push(v0(MetadataRecord::ProducerIds(ProducerIdsRecord {
                broker_id: (-1).into(),
                broker_epoch: -1,
                next_producer_id: self.next_producer_id,
                ..Default::default()
            })));
        }
        out
    }

    /// The image a snapshot's records build: each applied as if at `last_offset` (the
    /// snapshot's end offset minus one, see the module doc), then the image stands at
    /// `last_offset` with leader epoch `epoch`.
    pub fn from_snapshot_records(
        last_offset: i64,
        epoch: i32,
        records: &[VersionedRecord],
    ) -> Result<MetadataImage, ImageError> {
        let mut image = MetadataImage::empty();
        for record in records {
            image.apply_record(last_offset, &record.record)?;
        }
        image.offset = last_offset;
        image.epoch = epoch;
        Ok(image)
    }
}

fn register_record(b: &BrokerRegistration) -> RegisterBrokerRecord {
    RegisterBrokerRecord {
        broker_id: b.id.into(),
        incarnation_id: b.incarnation_id,
        broker_epoch: b.epoch,
        end_points: b
            .endpoints
            .iter()
            .map(|e| BrokerEndpoint {
                name: e.name.as_str().into(),
                host: e.host.as_str().into(),
                port: e.port,
                security_protocol: e.security_protocol,
                ..Default::default()
            })
            .collect(),
        features: b
            .features
            .iter()
            .map(|(name, &(min, max))| BrokerFeature {
                name: name.as_str().into(),
                min_supported_version: min,
                max_supported_version: max,
                ..Default::default()
            })
            .collect(),
        rack: b.rack.as_deref().map(Into::into),
        fenced: b.fenced,
        in_controlled_shutdown: b.in_controlled_shutdown,
        log_dirs: b.log_dirs.clone(),
        ..Default::default()
    }
}

fn partition_record(topic_id: Uuid, index: i32, p: &PartitionRegistration) -> PartitionRecord {
    let ids = |v: &[i32]| v.iter().map(|&b| b.into()).collect::<Vec<_>>();
    PartitionRecord {
        partition_id: index,
        topic_id,
        replicas: ids(&p.replicas),
        isr: p.isr.clone(),
        removing_replicas: ids(&p.removing_replicas),
        adding_replicas: ids(&p.adding_replicas),
        leader: p.leader.into(),
        leader_recovery_state: p.leader_recovery_state,
        leader_epoch: p.leader_epoch,
        partition_epoch: p.partition_epoch,
        directories: p.directories.clone(),
        eligible_leader_replicas: Some(ids(&p.elr)),
        last_known_elr: Some(ids(&p.last_known_elr)),
        ..Default::default()
    }
}

fn v0(record: MetadataRecord) -> VersionedRecord {
    VersionedRecord { version: 0, record }
}
