//! The sluice half of `cargo xtask metalog`, which uses Apache Kafka's `kafka-dump-log
//! --cluster-metadata-decoder` as the oracle for `FileLog`'s on-disk format.
//!
//! `write DIR`: writes a metadata log with `FileLog` into DIR: a LeaderChange, then one record
//! of every metadata record type at its highest version (realistic values for the records a
//! controller writes, seeded random ones for the rest), one per batch. Prints one expectation
//! per offset, `<offset> <json>`: the subset of the JSON Kafka's decoder must print for it
//! (`{"type":..,"version":..,"data":{..}}`, or `{"LeaderChange":{..}}`).
//!
//! `read DIR`: opens DIR (a copy of a log Kafka wrote) with `FileLog`, decodes every data
//! entry with `VersionedRecord::decode`, and prints `<offset> <TYPE_NAME> <version>` or
//! `<offset> LeaderChange <leader>`, to be compared with Kafka's own dump of the same files.
//!
//! `checkpoint DIR`: applies the realistic records to an image, writes them to a `FileLog` in
//! DIR and stores a snapshot of the image there (a `.checkpoint` file, as the controller
//! shard does). Prints one expectation per snapshot record, `<offset> <json>` (offset 0 is
//! the snapshot header, so the records start at 1).
//!
//! Usage: `cargo run -p sluice-controller --example metalog_oracle -- write|read|checkpoint DIR`.

use bytes::Bytes;
use serde_json::{Value, json};
use sluice_controller::snapshot::encode_snapshot;
use sluice_controller::{FileLog, FileLogConfig, MetadataImage};
use sluice_net::Uuid;
use sluice_net::messages::*;
use sluice_net::metadata_record::VersionedRecord;
use sluice_net::{Rng, StrBytes};
use sluice_quorum::{Entry, Epoch, Log, NodeId, Offset, Payload, Snapshot};
use std::path::Path;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match (args.first().map(String::as_str), args.get(1)) {
        (Some("write"), Some(dir)) => write(Path::new(dir)),
        (Some("read"), Some(dir)) => read(Path::new(dir)),
        (Some("checkpoint"), Some(dir)) => checkpoint(Path::new(dir)),
        _ => {
            eprintln!("usage: metalog_oracle write|read|checkpoint DIR");
            std::process::exit(2);
        }
    }
}

/// `RegisterBroker` -> `REGISTER_BROKER_RECORD`, the name Kafka's decoder prints.
fn kafka_type_name(ty: MetadataRecordType) -> String {
    let mut out = String::new();
    for (i, c) in format!("{ty:?}").chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out + "_RECORD"
}

fn uuid(n: u8) -> Uuid {
    Uuid([n; 16])
}

fn s(text: &str) -> StrBytes {
    StrBytes::from(text)
}

/// Records a controller writes, with realistic values, and the data fields Kafka must print.
fn realistic() -> Vec<(MetadataRecord, Value)> {
    let topic_id = uuid(7);
    let feature = |name: &str, min, max| register_broker_record::BrokerFeature {
        name: s(name),
        min_supported_version: min,
        max_supported_version: max,
        ..Default::default()
    };
    vec![
        (
            MetadataRecord::FeatureLevel(FeatureLevelRecord {
                name: s("metadata.version"),
                feature_level: 33,
                ..Default::default()
            }),
            json!({"name": "metadata.version", "featureLevel": 33}),
        ),
        (
            MetadataRecord::RegisterBroker(RegisterBrokerRecord {
                broker_id: 1.into(),
                incarnation_id: uuid(1),
                broker_epoch: 13,
                end_points: vec![register_broker_record::BrokerEndpoint {
                    name: s("PLAINTEXT"),
                    host: s("127.0.0.1"),
                    port: 9092,
                    security_protocol: 0,
                    ..Default::default()
                }],
                features: vec![feature("metadata.version", 7, 33)],
                fenced: true,
                log_dirs: vec![uuid(2)],
                // The schema's default is "", not null; a broker without a rack sends null.
                rack: None,
                ..Default::default()
            }),
            json!({"brokerId": 1, "brokerEpoch": 13, "fenced": true, "rack": null,
                   "endPoints": [{"name": "PLAINTEXT", "host": "127.0.0.1", "port": 9092,
                                  "securityProtocol": 0}]}),
        ),
        (
            MetadataRecord::UnfenceBroker(UnfenceBrokerRecord {
                id: 1.into(),
                epoch: 13,
                ..Default::default()
            }),
            json!({"id": 1, "epoch": 13}),
        ),
        (
            MetadataRecord::Topic(TopicRecord {
                name: "orders".into(),
                topic_id,
                ..Default::default()
            }),
            json!({"name": "orders"}),
        ),
        (
            MetadataRecord::Partition(PartitionRecord {
                partition_id: 0,
                topic_id,
                replicas: vec![1.into(), 2.into(), 3.into()],
                isr: vec![1, 2, 3],
                leader: 1.into(),
                leader_recovery_state: 0,
                leader_epoch: 0,
                partition_epoch: 0,
                directories: vec![uuid(2), uuid(3), uuid(4)],
                ..Default::default()
            }),
            json!({"partitionId": 0, "replicas": [1, 2, 3], "isr": [1, 2, 3], "leader": 1,
                   "leaderEpoch": 0, "partitionEpoch": 0}),
        ),
        (
            MetadataRecord::Config(ConfigRecord {
                resource_type: 2,
                resource_name: s("orders"),
                name: s("retention.ms"),
                value: Some(s("604800000")),
                ..Default::default()
            }),
            json!({"resourceType": 2, "resourceName": "orders", "name": "retention.ms",
                   "value": "604800000"}),
        ),
        (
            MetadataRecord::PartitionChange(PartitionChangeRecord {
                partition_id: 0,
                topic_id,
                isr: Some(vec![1.into(), 2.into()]),
                leader: 1.into(),
                eligible_leader_replicas: Some(vec![3.into()]),
                last_known_elr: Some(vec![]),
                directories: Some(vec![uuid(2), uuid(3), uuid(4)]),
                ..Default::default()
            }),
            json!({"partitionId": 0, "isr": [1, 2], "leader": 1,
                   "eligibleLeaderReplicas": [3]}),
        ),
        (
            MetadataRecord::FenceBroker(FenceBrokerRecord {
                id: 2.into(),
                epoch: 14,
                ..Default::default()
            }),
            json!({"id": 2, "epoch": 14}),
        ),
        (
            MetadataRecord::ProducerIds(ProducerIdsRecord {
                broker_id: 1.into(),
                broker_epoch: 13,
                next_producer_id: 1000,
                ..Default::default()
            }),
            json!({"brokerId": 1, "brokerEpoch": 13, "nextProducerId": 1000}),
        ),
        (
            MetadataRecord::BrokerRegistrationChange(BrokerRegistrationChangeRecord {
                broker_id: 2.into(),
                broker_epoch: 14,
                fenced: -1,
                in_controlled_shutdown: 1,
                ..Default::default()
            }),
            json!({"brokerId": 2, "brokerEpoch": 14}),
        ),
        (
            MetadataRecord::UnregisterBroker(UnregisterBrokerRecord {
                broker_id: 2.into(),
                broker_epoch: 14,
                ..Default::default()
            }),
            json!({"brokerId": 2, "brokerEpoch": 14}),
        ),
        (
            MetadataRecord::RemoveTopic(RemoveTopicRecord {
                topic_id,
                ..Default::default()
            }),
            json!({}),
        ),
        (MetadataRecord::NoOp(NoOpRecord::default()), json!({})),
    ]
}

/// Every type not in `realistic`, at its highest version, with seeded random values.
fn random_rest(done: &[MetadataRecordType]) -> Vec<(MetadataRecord, Value)> {
    let mut r = Rng::new(20);
    MetadataRecordType::ALL
        .iter()
        .filter(|ty| !done.contains(ty))
        .map(|&ty| {
            let version = *ty.valid_versions().end();
            (MetadataRecord::random(ty, version, &mut r), json!({}))
        })
        .collect()
}

fn write(dir: &Path) {
    let voters = vec![NodeId(1), NodeId(2), NodeId(3)];
    let mut log = FileLog::open(dir, FileLogConfig::new(voters)).expect("open the log");
    log.set_now_ms(1_764_000_000_000);
    log.append(Entry {
        epoch: Epoch(4),
        payload: Payload::LeaderChange { leader: NodeId(2) },
    });
    let leader = json!({"LeaderChange": {"version": 0, "leaderId": 2,
        "voters": [{"voterId": 1}, {"voterId": 2}, {"voterId": 3}],
        "grantingVoters": [{"voterId": 2}]}});
    println!("0 {leader}");
    let mut records = realistic();
    let done: Vec<_> = records.iter().map(|(r, _)| r.record_type()).collect();
    records.extend(random_rest(&done));
    for (offset, (record, data)) in (1..).zip(records) {
        let ty = record.record_type();
        let version = *ty.valid_versions().end();
        let value = VersionedRecord { version, record }.encode();
        log.append(Entry {
            epoch: Epoch(4),
            payload: Payload::Data(value.to_vec()),
        });
        let expected = json!({"type": kafka_type_name(ty), "version": version, "data": data});
        println!("{offset} {expected}");
    }
    log.flush();
}

fn read(dir: &Path) {
    let log = FileLog::open(dir, FileLogConfig::new(vec![NodeId(1)])).expect("open the log");
    for offset in 0..log.end().0 {
        let entry = log.entry(Offset(offset)).expect("entry below the end");
        match &entry.payload {
            Payload::LeaderChange { leader } => println!("{offset} LeaderChange {}", leader.0),
            Payload::Data(value) => {
                let record = VersionedRecord::decode(Bytes::from(value.clone()))
                    .unwrap_or_else(|e| panic!("offset {offset}: {e}"));
                let name = kafka_type_name(record.record.record_type());
                println!("{offset} {name} {}", record.version);
            }
        }
    }
}

fn checkpoint(dir: &Path) {
    let voters = vec![NodeId(1), NodeId(2), NodeId(3)];
    let mut log = FileLog::open(dir, FileLogConfig::new(voters)).expect("open the log");
    log.set_now_ms(1_764_000_000_000);
    let mut image = MetadataImage::empty();
    for (offset, (record, _)) in (0..).zip(realistic()) {
        let ty = record.record_type();
        let version = *ty.valid_versions().end();
        let record = VersionedRecord { version, record };
        // The removals are left out so the snapshot has a topic and a broker; records that
        // contradict the image so far are skipped, as the controller shard does.
        let removal = matches!(
            record.record,
            MetadataRecord::UnregisterBroker(_) | MetadataRecord::RemoveTopic(_)
        );
        if !removal {
            let _ = image.apply(offset, 4, &record);
        }
        log.append(Entry {
            epoch: Epoch(4),
            payload: Payload::Data(record.encode().to_vec()),
        });
    }
    log.flush();
    let id = log.end_and_epoch();
    let data = encode_snapshot(&image, id, 1_764_000_000_000);
    log.store_snapshot(Snapshot { id, data });
    for (offset, record) in (1..).zip(image.records()) {
        let ty = kafka_type_name(record.record.record_type());
        println!(
            "{offset} {}",
            json!({"type": ty, "version": record.version})
        );
    }
}
