//! Quorum entries as Kafka record batches: how an entry travels in a Fetch answer and lies in
//! a `__cluster_metadata-0` segment.
//!
//! One entry is one record in a batch of its own: base offset = the entry's offset, partition
//! leader epoch = the entry's epoch. A `LeaderChange` entry is a control batch whose record has
//! Kafka's control key (version 0, type 2) and a `LeaderChangeMessage` value; a `Data` entry is a
//! plain batch whose record value is the entry's bytes (a framed metadata record). Reading
//! accepts batches of several records too (Kafka writes those), each record one entry.

use bytes::Bytes;
use sluice_net::messages::LeaderChangeMessage;
use sluice_net::messages::leader_change_message::Voter;
use sluice_net::record_batch::build::{BatchSpec, batch};
use sluice_net::record_batch::{Batches, RecordBatch, set_partition_leader_epoch};
use sluice_net::{Decoder, Encoder};
use sluice_quorum::{Entry, Epoch, NodeId, Offset, Payload};

/// The control bit of a batch's attributes.
const CONTROL: i16 = 0x20;
/// Kafka's control record type of a leader change.
const LEADER_CHANGE: i16 = 2;
/// The `LeaderChangeMessage` version written.
const LEADER_CHANGE_VERSION: i16 = 0;

/// Why batches could not be read as entries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("bad record batch: {0}")]
    Batch(String),
    #[error("batch at offset {found} where offset {expected} was due")]
    Gap { expected: i64, found: i64 },
    #[error("control record at offset {0} is not a leader change")]
    Control(i64),
}

/// The batch holding `entry` at `offset`; `voters` fill a leader change's voter list.
pub fn encode_entry(offset: Offset, entry: &Entry, voters: &[NodeId], now_ms: i64) -> Bytes {
    let spec = |attributes| BatchSpec {
        base_offset: offset.0,
        base_timestamp: now_ms,
        attributes,
        ..BatchSpec::default()
    };
    let bytes = match &entry.payload {
        Payload::Data(value) => batch(&spec(0), &[(None, Some(value))]),
        Payload::LeaderChange { leader } => {
            let key = control_key(LEADER_CHANGE);
            let value = leader_change_value(*leader, voters);
            batch(&spec(CONTROL), &[(Some(&key), Some(&value))])
        }
    };
    let mut bytes = bytes.to_vec();
    set_partition_leader_epoch(&mut bytes, entry.epoch.0);
    Bytes::from(bytes)
}

/// Every entry in `bytes` (whole batches), from `first` on, with its offset. Fails on a gap
/// between offsets, a damaged batch or a control record other than a leader change (Kafka's
/// snapshot and voters control records are not written by this log).
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
        next = batch_entries(&batch, &mut out)?;
    }
    Ok(out)
}

/// Pushes the entries of one batch; the offset after it.
fn batch_entries(batch: &RecordBatch, out: &mut Vec<(Offset, Entry)>) -> Result<i64, BatchError> {
    let epoch = Epoch(batch.partition_leader_epoch());
    let records = batch
        .records()
        .map_err(|e| BatchError::Batch(e.to_string()))?;
    for record in records {
        let record = record.map_err(|e| BatchError::Batch(e.to_string()))?;
        let offset = batch.base_offset() + i64::from(record.offset_delta);
        let payload = if batch.is_control() {
            leader_change(record.key, record.value).ok_or(BatchError::Control(offset))?
        } else {
            Payload::Data(record.value.map(|v| v.to_vec()).unwrap_or_default())
        };
        out.push((Offset(offset), Entry { epoch, payload }));
    }
    Ok(batch.last_offset() + 1)
}

/// Kafka's control record key: version 0, then the type.
fn control_key(ty: i16) -> [u8; 4] {
    let mut key = [0u8; 4];
    key[2..].copy_from_slice(&ty.to_be_bytes());
    key
}

fn leader_change_value(leader: NodeId, voters: &[NodeId]) -> Bytes {
    let voter = |id: &NodeId| Voter {
        voter_id: id.0,
        ..Voter::default()
    };
    let message = LeaderChangeMessage {
        version: LEADER_CHANGE_VERSION,
        leader_id: leader.0.into(),
        voters: voters.iter().map(voter).collect(),
        granting_voters: Vec::new(),
        ..LeaderChangeMessage::default()
    };
    let mut e = Encoder::new();
    message.encode(&mut e, LEADER_CHANGE_VERSION);
    e.finish_contiguous()
}

/// The leader change a control record holds, if it is one.
fn leader_change(key: Option<Bytes>, value: Option<Bytes>) -> Option<Payload> {
    let key = key?;
    if key.len() < 4 || i16::from_be_bytes([key[2], key[3]]) != LEADER_CHANGE {
        return None;
    }
    let mut d = Decoder::new(value?);
    let message = LeaderChangeMessage::decode(&mut d, LEADER_CHANGE_VERSION).ok()?;
    Some(Payload::LeaderChange {
        leader: NodeId(message.leader_id.into()),
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
