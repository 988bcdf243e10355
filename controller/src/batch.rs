//! Quorum entries as Kafka record batches: how an entry travels in a Fetch answer and lies in
//! a `__cluster_metadata-0` segment.
//!
//! One entry is one record in a batch of its own: base offset = the entry's offset, partition
//! leader epoch = the entry's epoch. A `LeaderChange` entry is a control batch whose record has
//! Kafka's control key (version 0, type 2) and a `LeaderChangeMessage` value; a `Data` entry is a
//! plain batch whose record value is the entry's bytes (a framed metadata record). Reading
//! accepts batches of several records too (Kafka writes those), each record one entry.

use bytes::{Bytes, BytesMut};
use sluice_net::messages::leader_change_message::{LeaderChangeMessage, Voter};
use sluice_net::record_batch::build::{BatchSpec, batch};
use sluice_net::record_batch::{Batches, Compression, RecordBatch, set_partition_leader_epoch};
use sluice_net::{Decoder, Encoder};
use sluice_quorum::{Entry, Epoch, NodeId, Offset, Payload};

/// Kafka's control record key version and the LEADER_CHANGE control type.
const CONTROL_KEY_VERSION: i16 = 0;
const CONTROL_TYPE_LEADER_CHANGE: i16 = 2;
/// The `LeaderChangeMessage` schema version Kafka 4.4 writes into the log.
const LEADER_CHANGE_VERSION: i16 = 0;
/// Record batch attribute bit: control batch.
pub(crate) const ATTRIBUTE_CONTROL: i16 = 0x20;

/// Why batches could not be read as entries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("bad record batch: {0}")]
    Batch(String),
    #[error("batch at offset {found} where offset {expected} was due")]
    Gap { expected: i64, found: i64 },
}

/// The batch holding `entry` at `offset`; `voters` fill a leader change's voter list.
pub fn encode_entry(offset: Offset, entry: &Entry, voters: &[NodeId], now_ms: i64) -> Bytes {
    let mut spec = BatchSpec {
        base_offset: offset.0,
        base_timestamp: now_ms,
        ..BatchSpec::default()
    };
    let bytes = match &entry.payload {
        Payload::LeaderChange { leader } => {
            spec.attributes = ATTRIBUTE_CONTROL;
            let key = control_key(CONTROL_TYPE_LEADER_CHANGE);
            let value = leader_change_value(*leader, voters);
            batch(&spec, &[(Some(&key[..]), Some(&value[..]))])
        }
        Payload::Data(value) => batch(&spec, &[(None, Some(&value[..]))]),
    };
    let mut bytes = BytesMut::from(&bytes[..]);
    set_partition_leader_epoch(&mut bytes, entry.epoch.0);
    let bytes = bytes.freeze();
    // The batch about to be written or sent reads back as the entry.
    debug_assert_eq!(
        RecordBatch::new(bytes.clone())
            .ok()
            .and_then(|b| batch_payloads(&b).ok()),
        Some(vec![entry.payload.clone()])
    );
    bytes
}

/// Every entry in `bytes` (whole batches), from `first` on, with its offset. Fails on a gap
/// between offsets or a batch [`batch_payloads`] refuses.
pub fn decode_entries(bytes: Bytes, first: Offset) -> Result<Vec<(Offset, Entry)>, BatchError> {
    let mut out = Vec::new();
    let mut next = first.0;
    for batch in Batches::new(bytes) {
        let batch = batch.map_err(|e| BatchError::Batch(e.to_string()))?;
        batch
            .validate()
            .map_err(|e| BatchError::Batch(e.to_string()))?;
        if batch.base_offset() != next {
            return Err(BatchError::Gap {
                expected: next,
                found: batch.base_offset(),
            });
        }
        let epoch = Epoch(batch.partition_leader_epoch());
        for payload in batch_payloads(&batch).map_err(BatchError::Batch)? {
            out.push((Offset(next), Entry { epoch, payload }));
            next += 1;
        }
    }
    Ok(out)
}

/// The payloads of a valid (CRC-checked) batch, one per record: uncompressed, offset deltas
/// 0, 1, ..., values present, control records only leader changes. `Err` says why not.
pub fn batch_payloads(batch: &RecordBatch) -> Result<Vec<Payload>, String> {
    if batch.compression().map_err(|e| e.to_string())? != Compression::None {
        return Err("compressed batches are not read (Kafka's metadata log writes none)".into());
    }
    let mut out = Vec::new();
    for (index, record) in batch.records().map_err(|e| e.to_string())?.enumerate() {
        let record = record.map_err(|e| e.to_string())?;
        if i64::from(record.offset_delta) != index as i64 {
            return Err(format!(
                "record {index} has offset delta {}",
                record.offset_delta
            ));
        }
        let value = record
            .value
            .ok_or_else(|| format!("record {index} has a null value"))?;
        let payload = if batch.is_control() {
            control_payload(record.key.as_deref(), value)?
        } else {
            Payload::Data(value.to_vec())
        };
        out.push(payload);
    }
    if out.len() as i64 != i64::from(batch.last_offset_delta()) + 1 {
        return Err(format!(
            "{} records but last offset delta {}",
            out.len(),
            batch.last_offset_delta()
        ));
    }
    Ok(out)
}

/// Kafka's control record key: version, then type, both int16.
pub(crate) fn control_key(control_type: i16) -> [u8; 4] {
    let mut key = [0u8; 4];
    key[..2].copy_from_slice(&CONTROL_KEY_VERSION.to_be_bytes());
    key[2..].copy_from_slice(&control_type.to_be_bytes());
    key
}

/// A `LeaderChangeMessage` v0 body, as Kafka puts it in a control record's value (no
/// version prefix). The granting voters list only the leader, which surely voted for itself
/// (the replica does not report who else did).
fn leader_change_value(leader: NodeId, voters: &[NodeId]) -> Bytes {
    let voter = |id: i32| Voter {
        voter_id: id,
        ..Voter::default()
    };
    let message = LeaderChangeMessage {
        version: LEADER_CHANGE_VERSION,
        leader_id: leader.0.into(),
        voters: voters.iter().map(|v| voter(v.0)).collect(),
        granting_voters: vec![voter(leader.0)],
        ..LeaderChangeMessage::default()
    };
    let mut e = Encoder::new();
    message.encode(&mut e, LEADER_CHANGE_VERSION);
    e.finish_contiguous()
}

/// A control record as an entry: only LeaderChange has one.
fn control_payload(key: Option<&[u8]>, value: Bytes) -> Result<Payload, String> {
    let key = key
        .filter(|k| k.len() >= 4)
        .ok_or("control record key too short")?;
    let control_type = i16::from_be_bytes([key[2], key[3]]);
    if control_type != CONTROL_TYPE_LEADER_CHANGE {
        return Err(format!(
            "control record type {control_type} is not LeaderChange (2); snapshots and voter \
             changes are not supported yet"
        ));
    }
    let mut d = Decoder::new(value);
    let message = LeaderChangeMessage::decode(&mut d, LEADER_CHANGE_VERSION)
        .map_err(|e| format!("LeaderChangeMessage: {e}"))?;
    Ok(Payload::LeaderChange {
        leader: NodeId(message.leader_id.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries() -> Vec<Entry> {
        vec![
            Entry {
                epoch: Epoch(1),
                payload: Payload::LeaderChange { leader: NodeId(2) },
            },
            Entry {
                epoch: Epoch(1),
                payload: Payload::Data(b"record".to_vec()),
            },
            Entry {
                epoch: Epoch(3),
                payload: Payload::Data(Vec::new()),
            },
        ]
    }

    /// Entries written as batches read back with their offsets, epochs and payloads.
    #[test]
    fn entries_round_trip() {
        let voters = [NodeId(1), NodeId(2), NodeId(3)];
        let mut bytes = Vec::new();
        for (i, entry) in entries().iter().enumerate() {
            let b = encode_entry(Offset(10 + i as i64), entry, &voters, 1_000);
            bytes.extend_from_slice(&b);
        }
        let back = decode_entries(Bytes::from(bytes), Offset(10)).unwrap();
        let expected: Vec<_> = entries()
            .into_iter()
            .enumerate()
            .map(|(i, e)| (Offset(10 + i as i64), e))
            .collect();
        assert_eq!(back, expected);
    }

    /// A batch that does not start where the previous one ended is refused.
    #[test]
    fn gaps_are_refused() {
        let b = encode_entry(Offset(5), &entries()[1], &[], 0);
        assert_eq!(
            decode_entries(b, Offset(4)),
            Err(BatchError::Gap {
                expected: 4,
                found: 5
            })
        );
    }
}
