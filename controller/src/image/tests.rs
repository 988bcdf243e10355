//! Unit tests of the metadata image: each record type applied, refusals leave the image
//! unchanged, clones share structure, and replaying the same records gives equal images.

#[cfg(test)]
use super::*;
use sluice_net::messages::register_broker_record::BrokerEndpoint;
use sluice_net::messages::{
    FeatureLevelRecord, FenceBrokerRecord, MetadataRecordType, NoOpRecord, ProducerIdsRecord,
    RemoveTopicRecord, UnfenceBrokerRecord, UnregisterBrokerRecord,
};

fn v(version: i16, record: MetadataRecord) -> VersionedRecord {
    VersionedRecord { version, record }
}

const TOPIC: Uuid = Uuid([9; 16]);

/// Every modelled record type, in an order that makes sense.
fn history() -> Vec<VersionedRecord> {
    vec![
        v(
            0,
            MetadataRecord::FeatureLevel(FeatureLevelRecord {
                name: METADATA_VERSION.into(),
                feature_level: 33,
                ..Default::default()
            }),
        ),
        v(
            4,
            MetadataRecord::RegisterBroker(RegisterBrokerRecord {
                broker_id: 1.into(),
                incarnation_id: Uuid([1; 16]),
                broker_epoch: 1,
                end_points: vec![BrokerEndpoint {
                    name: "PLAINTEXT".into(),
                    host: "h".into(),
                    port: 9092,
                    ..Default::default()
                }],
                rack: Some("r1".into()),
                fenced: true,
                ..Default::default()
            }),
        ),
        v(
            0,
            MetadataRecord::UnfenceBroker(UnfenceBrokerRecord {
                id: 1.into(),
                epoch: 1,
                ..Default::default()
            }),
        ),
        v(
            0,
            MetadataRecord::Topic(TopicRecord {
                name: "t".into(),
                topic_id: TOPIC,
                ..Default::default()
            }),
        ),
        v(
            0,
            MetadataRecord::Config(ConfigRecord {
                resource_type: RESOURCE_TOPIC,
                resource_name: "t".into(),
                name: "retention.ms".into(),
                value: Some("5".into()),
                ..Default::default()
            }),
        ),
        v(
            2,
            MetadataRecord::Partition(PartitionRecord {
                partition_id: 0,
                topic_id: TOPIC,
                replicas: vec![1.into()],
                isr: vec![1],
                leader: 1.into(),
                leader_epoch: 0,
                partition_epoch: 0,
                ..Default::default()
            }),
        ),
        v(
            2,
            MetadataRecord::PartitionChange(PartitionChangeRecord {
                partition_id: 0,
                topic_id: TOPIC,
                leader: (-1).into(),
                ..Default::default()
            }),
        ),
        v(
            0,
            MetadataRecord::FenceBroker(FenceBrokerRecord {
                id: 1.into(),
                epoch: 1,
                ..Default::default()
            }),
        ),
        v(
            1,
            MetadataRecord::BrokerRegistrationChange(BrokerRegistrationChangeRecord {
                broker_id: 1.into(),
                broker_epoch: 1,
                fenced: -1,
                in_controlled_shutdown: 1,
                ..Default::default()
            }),
        ),
        v(
            0,
            MetadataRecord::ProducerIds(ProducerIdsRecord {
                broker_id: 1.into(),
                broker_epoch: 1,
                next_producer_id: 1000,
                ..Default::default()
            }),
        ),
        v(0, MetadataRecord::NoOp(NoOpRecord::default())),
    ]
}

fn build(records: &[VersionedRecord]) -> MetadataImage {
    let mut image = MetadataImage::empty();
    for (i, r) in records.iter().enumerate() {
        image.apply(i as i64 + 10, 3, r).unwrap();
    }
    image
}

/// Each record type lands where Kafka's image puts it.
#[test]
fn every_record_type_applies() {
    let image = build(&history());
    assert_eq!((image.offset(), image.epoch()), (20, 3));
    assert_eq!(image.metadata_version(), Some(33));
    let b = image.broker(1).unwrap();
    assert_eq!((b.epoch, b.registered_offset, b.fenced), (1, 11, false));
    assert!(b.in_controlled_shutdown);
    assert_eq!(b.rack.as_deref(), Some("r1"));
    assert_eq!(b.endpoints[0].port, 9092);
    let t = image.topic_by_name("t").unwrap();
    let p = &t.partitions[&0];
    assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (-1, 1, 1));
    assert!(p.is_offline());
    assert_eq!(p.isr, vec![1]);
    assert_eq!(image.config(RESOURCE_TOPIC, "t", "retention.ms"), Some("5"));
    assert_eq!(image.next_producer_id(), 1000);
}

/// Replaying the same records gives equal images; clones share topics until one changes.
#[test]
fn replay_gives_equal_images_and_clones_share() {
    let a = build(&history());
    let b = build(&history());
    assert_eq!(a, b);
    let mut c = a.clone();
    assert!(Arc::ptr_eq(&a.topics, &c.topics));
    let remove = v(
        0,
        MetadataRecord::RemoveTopic(RemoveTopicRecord {
            topic_id: TOPIC,
            ..Default::default()
        }),
    );
    c.apply(21, 3, &remove).unwrap();
    assert!(c.topic_by_name("t").is_none());
    assert!(c.config(RESOURCE_TOPIC, "t", "retention.ms").is_none());
    assert!(a.topic_by_name("t").is_some());
    assert!(Arc::ptr_eq(&a.brokers, &c.brokers));
}

/// Inconsistent records are refused and change nothing; unmodelled types only move offset.
#[test]
fn refusals_and_unknown_types() {
    let mut image = build(&history());
    let before = image.clone();
    let stale = v(
        0,
        MetadataRecord::UnregisterBroker(UnregisterBrokerRecord {
            broker_id: 1.into(),
            broker_epoch: 7,
            ..Default::default()
        }),
    );
    assert!(matches!(
        image.apply(30, 3, &stale),
        Err(ImageError::StaleBrokerEpoch { .. })
    ));
    let orphan = v(
        2,
        MetadataRecord::PartitionChange(PartitionChangeRecord {
            topic_id: Uuid([1; 16]),
            ..Default::default()
        }),
    );
    assert!(image.apply(30, 3, &orphan).is_err());
    assert!(image.apply(5, 3, &history()[10]).is_err());
    assert_eq!(image, before);
    for &ty in MetadataRecordType::ALL {
        let record = MetadataRecord::decode(
            ty,
            0,
            &mut sluice_net::Decoder::new(bytes::Bytes::from_static(&[0; 64])),
        );
        let Ok(record) = record else { continue };
        let mut copy = image.clone();
        // Any record type either applies or is refused; none panics.
        let _ = copy.apply(40, 3, &v(0, record));
    }
    let unregister = v(
        0,
        MetadataRecord::UnregisterBroker(UnregisterBrokerRecord {
            broker_id: 1.into(),
            broker_epoch: 1,
            ..Default::default()
        }),
    );
    image.apply(41, 3, &unregister).unwrap();
    assert!(image.broker(1).is_none());
}
