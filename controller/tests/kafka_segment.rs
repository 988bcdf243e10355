//! FileLog reads a segment that Apache Kafka 4.4.0 itself wrote (`tests/fixtures/`, copied
//! from a single-node reference broker's `__cluster_metadata-0` after creating a topic with
//! `tests/kafka-ref`): every record becomes an entry at Kafka's offset, every data record's
//! value is a framed metadata record sluice's codec reads, and a truncation inside one of
//! Kafka's multi-record batches keeps the records before the cut. `cargo xtask crosscheck`
//! runs the same check against a fresh Kafka log.

use bytes::Bytes;
use sluice_controller::{FileLog, FileLogConfig};
use sluice_net::messages::{MetadataRecord, MetadataRecordType};
use sluice_net::metadata_record::VersionedRecord;
use sluice_quorum::{Entry, Log, NodeId, Offset, Payload};
use std::path::Path;

const FIXTURE: &str = "tests/fixtures/kafka-4.4.0-cluster-metadata.log";

fn open_copy(dir: &Path) -> FileLog {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE);
    std::fs::copy(source, dir.join("00000000000000000000.log")).unwrap();
    FileLog::open(dir, FileLogConfig::new(vec![NodeId(1)])).unwrap()
}

fn entries(log: &FileLog) -> Vec<Entry> {
    (0..log.end().0)
        .map(|o| log.entry(Offset(o)).unwrap().clone())
        .collect()
}

/// Offset 0 is Kafka's LeaderChange (leader 1, epoch 1); offsets 1..=9 are its bootstrap
/// batch of nine records (BeginTransaction .. EndTransaction); every data value decodes, and
/// the topic created on the broker is there.
#[test]
fn reads_every_record_kafka_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_copy(dir.path());
    assert_eq!(log.recovery(), Default::default());
    let all = entries(&log);
    assert!(all.len() > 20, "{} entries", all.len());
    assert_eq!(all[0].payload, Payload::LeaderChange { leader: NodeId(1) });
    assert!(all.iter().all(|e| e.epoch.0 == 1));
    let mut types = Vec::new();
    for (offset, entry) in all.iter().enumerate().skip(1) {
        let Payload::Data(value) = &entry.payload else {
            panic!("offset {offset}: a second control record");
        };
        let record = VersionedRecord::decode(Bytes::from(value.clone()))
            .unwrap_or_else(|e| panic!("offset {offset}: {e}"));
        types.push(record.record.record_type());
        if let MetadataRecord::Topic(topic) = &record.record {
            assert_eq!(&*topic.name, "orders");
        }
    }
    assert_eq!(types[0], MetadataRecordType::BeginTransaction);
    assert_eq!(types[8], MetadataRecordType::EndTransaction);
    for expected in [
        MetadataRecordType::FeatureLevel,
        MetadataRecordType::RegisterBroker,
        MetadataRecordType::Topic,
        MetadataRecordType::Partition,
        MetadataRecordType::Config,
    ] {
        assert!(types.contains(&expected), "no {expected:?} in {types:?}");
    }
}

/// Truncating inside Kafka's nine-record batch keeps the records before the cut (rewritten
/// as one-record batches), durably: a reopen sees exactly them.
#[test]
fn truncation_inside_a_kafka_batch_keeps_the_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open_copy(dir.path());
    let before = entries(&log);
    log.truncate_to(Offset(5));
    assert_eq!(entries(&log), before[..5]);
    drop(log);
    let log = FileLog::open(dir.path(), FileLogConfig::new(vec![NodeId(1)])).unwrap();
    assert_eq!(entries(&log), before[..5]);
    assert_eq!(log.flushed_end(), Offset(5));
}
