//! A metadata snapshot's bytes (KIP-630), as Kafka writes a `.checkpoint` file and sends it in
//! a FetchSnapshot answer: v2 record batches from offset 0, all with the snapshot's epoch as
//! partition leader epoch; first a control batch holding a `SnapshotHeaderRecord` (control type
//! 3), then the image's metadata records ([`MetadataImage::records`]) in plain batches, last a
//! control batch holding a `SnapshotFooterRecord` (control type 4).
//!
//! These bytes are the quorum's `Snapshot::data`: the replica carries them opaquely, `FileLog`
//! writes them to the `.checkpoint` file as they are and checks [`validate`] at open (a file
//! without its footer, or with a bad CRC, is torn and ignored).

use crate::batch::{ATTRIBUTE_CONTROL, control_key};
use crate::image::{ImageError, MetadataImage};
use bytes::Bytes;
use sluice_net::messages::{SnapshotFooterRecord, SnapshotHeaderRecord};
use sluice_net::metadata_record::VersionedRecord;
use sluice_net::record_batch::build::{BatchSpec, KeyValue, batch};
use sluice_net::record_batch::{Batches, Compression, RecordBatch, set_partition_leader_epoch};
use sluice_net::{Decoder, Encoder};
use sluice_quorum::{OffsetAndEpoch, Snapshot};

/// Kafka's control types for a snapshot's first and last record.
const CONTROL_TYPE_SNAPSHOT_HEADER: i16 = 3;
const CONTROL_TYPE_SNAPSHOT_FOOTER: i16 = 4;
/// The header and footer schema version Kafka 4.4 writes.
const SNAPSHOT_CONTROL_VERSION: i16 = 0;
/// Metadata records per batch. Kafka fills batches up to 8 KiB
/// (`controller.max.batch.size.bytes`); a few hundred records is about that size.
const RECORDS_PER_BATCH_MAX: usize = 200;

/// Why bytes are not a whole snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotFileError {
    #[error("bad snapshot (torn or not a KRaft snapshot; check with kafka-dump-log): {0}")]
    Bad(String),
    #[error("snapshot records do not build an image: {0}")]
    Image(ImageError),
}

fn bad(what: impl Into<String>) -> SnapshotFileError {
    SnapshotFileError::Bad(what.into())
}

/// The snapshot bytes of `image` taken at `id` (everything below `id.offset` applied);
/// `last_timestamp_ms` goes into the header (Kafka: the append time of the last record
/// contained) and stamps every batch.
pub fn encode_snapshot(
    image: &MetadataImage,
    id: OffsetAndEpoch,
    last_timestamp_ms: i64,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut offset = 0i64;
    let mut push = |attributes: i16, records: &[KeyValue<'_>]| {
        let spec = BatchSpec {
            base_offset: offset,
            base_timestamp: last_timestamp_ms,
            attributes,
            timestamp_step: 0,
            ..BatchSpec::default()
        };
        let mut bytes = bytes::BytesMut::from(&batch(&spec, records)[..]);
        set_partition_leader_epoch(&mut bytes, id.epoch.0);
        out.extend_from_slice(&bytes);
        offset += records.len() as i64;
    };
    let header = SnapshotHeaderRecord {
        version: SNAPSHOT_CONTROL_VERSION,
        last_contained_log_timestamp: last_timestamp_ms,
        ..Default::default()
    };
    let mut e = Encoder::new();
    header.encode(&mut e, SNAPSHOT_CONTROL_VERSION);
    let key = control_key(CONTROL_TYPE_SNAPSHOT_HEADER);
    push(
        ATTRIBUTE_CONTROL,
        &[(Some(&key[..]), Some(&e.finish_contiguous()[..]))],
    );
    let values: Vec<Bytes> = image
        .records()
        .iter()
        .map(VersionedRecord::encode)
        .collect();
    for chunk in values.chunks(RECORDS_PER_BATCH_MAX) {
        let records: Vec<_> = chunk.iter().map(|v| (None, Some(&v[..]))).collect();
        push(0, &records);
    }
    let mut e = Encoder::new();
    SnapshotFooterRecord::default().encode(&mut e, SNAPSHOT_CONTROL_VERSION);
    let key = control_key(CONTROL_TYPE_SNAPSHOT_FOOTER);
    push(
        ATTRIBUTE_CONTROL,
        &[(Some(&key[..]), Some(&e.finish_contiguous()[..]))],
    );
    out
}

/// The metadata records of snapshot bytes, checking the whole layout: valid batches at
/// consecutive offsets from 0, uncompressed, a header first, a footer last, nothing after it.
pub fn decode_snapshot(bytes: &[u8]) -> Result<Vec<VersionedRecord>, SnapshotFileError> {
    let mut records = Vec::new();
    let mut next = 0i64;
    let mut footer = false;
    for batch in Batches::new(Bytes::copy_from_slice(bytes)) {
        let batch = batch.map_err(|e| bad(e.to_string()))?;
        batch.validate_stored().map_err(|e| bad(e.to_string()))?;
        if footer {
            return Err(bad("a batch after the footer"));
        }
        if batch.base_offset() != next {
            return Err(bad(format!(
                "batch at {} where {next} was due",
                batch.base_offset()
            )));
        }
        if batch.compression().map_err(|e| bad(e.to_string()))? != Compression::None {
            return Err(bad("compressed batch"));
        }
        next = batch.last_offset() + 1;
        if batch.is_control() {
            let control = control_type(&batch)?;
            match (control, batch.base_offset()) {
                (CONTROL_TYPE_SNAPSHOT_HEADER, 0) => {}
                (CONTROL_TYPE_SNAPSHOT_FOOTER, o) if o > 0 => footer = true,
                (other, o) => return Err(bad(format!("control type {other} at offset {o}"))),
            }
            continue;
        }
        if batch.base_offset() == 0 {
            return Err(bad("no snapshot header"));
        }
        for record in batch.records().map_err(|e| bad(e.to_string()))? {
            let record = record.map_err(|e| bad(e.to_string()))?;
            let value = record
                .value
                .ok_or_else(|| bad("a record without a value"))?;
            let decoded = VersionedRecord::decode(value).map_err(|e| bad(e.to_string()))?;
            records.push(decoded);
        }
    }
    if !footer {
        return Err(bad("no snapshot footer (torn)"));
    }
    Ok(records)
}

/// Whether `bytes` are a whole snapshot ([`decode_snapshot`] succeeds).
pub fn validate(bytes: &[u8]) -> Result<(), SnapshotFileError> {
    decode_snapshot(bytes).map(|_| ())
}

/// The image a snapshot holds, standing at the snapshot's last offset and epoch.
pub fn load_image(snapshot: &Snapshot) -> Result<MetadataImage, SnapshotFileError> {
    let records = decode_snapshot(&snapshot.data)?;
    let id = snapshot.id;
    MetadataImage::from_snapshot_records(id.offset.0 - 1, id.epoch.0, &records)
        .map_err(SnapshotFileError::Image)
}

/// The control type of a control batch's single record, checking its value decodes.
fn control_type(batch: &RecordBatch) -> Result<i16, SnapshotFileError> {
    let mut records = batch.records().map_err(|e| bad(e.to_string()))?;
    let record = records
        .next()
        .ok_or_else(|| bad("empty control batch"))?
        .map_err(|e| bad(e.to_string()))?;
    let key = record
        .key
        .filter(|k| k.len() >= 4)
        .ok_or_else(|| bad("short control key"))?;
    let control = i16::from_be_bytes([key[2], key[3]]);
    let value = record
        .value
        .ok_or_else(|| bad("control record without a value"))?;
    let mut d = Decoder::new(value);
    let decoded = match control {
        CONTROL_TYPE_SNAPSHOT_HEADER => {
            SnapshotHeaderRecord::decode(&mut d, SNAPSHOT_CONTROL_VERSION).map(|_| ())
        }
        CONTROL_TYPE_SNAPSHOT_FOOTER => {
            SnapshotFooterRecord::decode(&mut d, SNAPSHOT_CONTROL_VERSION).map(|_| ())
        }
        _ => Ok(()),
    };
    decoded.map_err(|e| bad(format!("control record {control}: {e}")))?;
    Ok(control)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_quorum::{Epoch, Offset};

    /// An empty image is a header and a footer; it decodes to no records.
    #[test]
    fn empty_image_round_trips() {
        let id = OffsetAndEpoch {
            offset: Offset(5),
            epoch: Epoch(2),
        };
        let bytes = encode_snapshot(&MetadataImage::empty(), id, 7);
        assert_eq!(decode_snapshot(&bytes), Ok(Vec::new()));
        assert!(decode_snapshot(&bytes[..bytes.len() - 1]).is_err());
        let snapshot = Snapshot { id, data: bytes };
        let image = load_image(&snapshot).unwrap();
        assert_eq!((image.offset(), image.epoch()), (4, 2));
    }
}
