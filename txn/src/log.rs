//! The `__transaction_state` record format of Kafka 4.4: `TransactionLogKey` (a 2-byte record
//! type, 0, then the transactional id as a v0 string) and `TransactionLogValue` (a 2-byte
//! version, 0 or 1, then the body; v1 is flexible with tagged fields), and a null value as
//! the tombstone of an expired id.
//!
//! Value fields in order: ProducerId, ProducerEpoch, TransactionTimeoutMs, TransactionStatus,
//! TransactionPartitions (nullable; null when Empty), TransactionLastUpdateTimestampMs,
//! TransactionStartTimestampMs; v1 tags: 0 PreviousProducerId, 1 NextProducerId,
//! 2 ClientTransactionVersion, 3 NextProducerEpoch, each written only when not its default
//! (-1, -1, 0, -1), as Kafka's generated writer does. Kafka 4.4 writes tags 0, 1 and 2, never
//! 3, and reads 3 without using it. Unknown tags are kept and written back.
//!
//! Decoding never trusts the bytes: lengths are bounded by what is left (`sluice_net`'s
//! `Decoder`), trailing bytes are an error.

use sluice_net::{DecodeError, Decoder, Encoder, TaggedField};

/// The coordinator record type of `TransactionLogKey` (the key's 2-byte prefix).
pub const TXN_KEY_TYPE: i16 = 0;
/// The highest `TransactionLogValue` version Kafka 4.4 reads and writes.
pub const TXN_VALUE_VERSION_MAX: i16 = 1;

/// One topic's partitions in a `TransactionLogValue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPartitions {
    pub topic: String,
    pub partition_ids: Vec<i32>,
    pub unknown_tagged_fields: Vec<TaggedField>,
}

/// A decoded `TransactionLogValue`, every version's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnLogValue {
    pub producer_id: i64,
    pub previous_producer_id: i64,
    pub next_producer_id: i64,
    pub producer_epoch: i16,
    pub next_producer_epoch: i16,
    pub timeout_ms: i32,
    pub status: i8,
    pub partitions: Option<Vec<LogPartitions>>,
    pub last_update_ms: i64,
    pub start_ms: i64,
    pub client_transaction_version: i16,
    pub unknown_tagged_fields: Vec<TaggedField>,
}

impl Default for TxnLogValue {
    fn default() -> TxnLogValue {
        TxnLogValue {
            producer_id: 0,
            previous_producer_id: -1,
            next_producer_id: -1,
            producer_epoch: 0,
            next_producer_epoch: -1,
            timeout_ms: 0,
            status: 0,
            partitions: None,
            last_update_ms: 0,
            start_ms: 0,
            client_transaction_version: 0,
            unknown_tagged_fields: Vec::new(),
        }
    }
}

/// What one `__transaction_state` record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogRecord {
    /// The id's state (the last one in the log wins).
    Value {
        transactional_id: String,
        value: TxnLogValue,
    },
    /// The id expired: forget it.
    Tombstone { transactional_id: String },
    /// A key of another record type: Kafka skips it with a warning.
    UnknownKey { key_type: i16 },
    /// A value of a version this code does not know: Kafka 4.4 skips it too.
    UnknownValueVersion {
        transactional_id: String,
        version: i16,
    },
}

/// The key of `transactional_id`'s records.
pub fn encode_key(transactional_id: &str) -> Vec<u8> {
    let mut e = Encoder::new();
    e.i16(TXN_KEY_TYPE);
    e.string(transactional_id, false);
    e.finish_contiguous().to_vec()
}

/// A value at `version` (0 or 1).
pub fn encode_value(value: &TxnLogValue, version: i16) -> Vec<u8> {
    assert!(
        (0..=TXN_VALUE_VERSION_MAX).contains(&version),
        "value v{version}"
    );
    let flexible = version >= 1;
    let mut e = Encoder::new();
    e.i16(version);
    e.i64(value.producer_id);
    e.i16(value.producer_epoch);
    e.i32(value.timeout_ms);
    e.i8(value.status);
    match &value.partitions {
        None => e.nullable_array_len(None, flexible),
        Some(topics) => {
            e.nullable_array_len(Some(topics.len()), flexible);
            for t in topics {
                encode_partitions(&mut e, t, flexible);
            }
        }
    }
    e.i64(value.last_update_ms);
    e.i64(value.start_ms);
    if flexible {
        encode_value_tags(&mut e, value);
    }
    e.finish_contiguous().to_vec()
}

fn encode_partitions(e: &mut Encoder, t: &LogPartitions, flexible: bool) {
    e.string(&t.topic, flexible);
    e.array_len(t.partition_ids.len(), flexible);
    for p in &t.partition_ids {
        e.i32(*p);
    }
    if flexible {
        e.uvarint(count_u32(t.unknown_tagged_fields.len()));
        e.unknown_tagged_fields(&t.unknown_tagged_fields);
    }
}

fn encode_value_tags(e: &mut Encoder, v: &TxnLogValue) {
    let known = [
        v.previous_producer_id != -1,
        v.next_producer_id != -1,
        v.client_transaction_version != 0,
        v.next_producer_epoch != -1,
    ];
    let count = known.iter().filter(|k| **k).count() + v.unknown_tagged_fields.len();
    e.uvarint(count_u32(count));
    if known[0] {
        e.tagged_field(0, |e| e.i64(v.previous_producer_id));
    }
    if known[1] {
        e.tagged_field(1, |e| e.i64(v.next_producer_id));
    }
    if known[2] {
        e.tagged_field(2, |e| e.i16(v.client_transaction_version));
    }
    if known[3] {
        e.tagged_field(3, |e| e.i16(v.next_producer_epoch));
    }
    // Unknown tags were read with tags above 3 (known ones are never kept), so ascending order
    // holds when they come last, as the reader found them.
    e.unknown_tagged_fields(&v.unknown_tagged_fields);
}

fn count_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Reads one record: its key and its value (`None`: a tombstone).
pub fn decode_record(key: &[u8], value: Option<&[u8]>) -> Result<LogRecord, DecodeError> {
    let mut d = Decoder::new(bytes_of(key));
    let key_type = d.i16()?;
    if key_type != TXN_KEY_TYPE {
        return Ok(LogRecord::UnknownKey { key_type });
    }
    d.at("TransactionLogKey.transactional_id");
    let transactional_id = d.string(false)?.as_str().to_string();
    d.finish()?;
    let Some(value) = value else {
        return Ok(LogRecord::Tombstone { transactional_id });
    };
    let mut d = Decoder::new(bytes_of(value));
    let version = d.i16()?;
    if !(0..=TXN_VALUE_VERSION_MAX).contains(&version) {
        return Ok(LogRecord::UnknownValueVersion {
            transactional_id,
            version,
        });
    }
    let value = decode_value(&mut d, version)?;
    d.finish()?;
    Ok(LogRecord::Value {
        transactional_id,
        value,
    })
}

fn bytes_of(b: &[u8]) -> bytes::Bytes {
    bytes::Bytes::copy_from_slice(b)
}

fn decode_value(d: &mut Decoder, version: i16) -> Result<TxnLogValue, DecodeError> {
    let flexible = version >= 1;
    let mut v = TxnLogValue {
        producer_id: d.i64()?,
        producer_epoch: d.i16()?,
        timeout_ms: d.i32()?,
        status: d.i8()?,
        ..TxnLogValue::default()
    };
    d.at("TransactionLogValue.transaction_partitions");
    // A partitions entry takes at least a topic length and an array length.
    v.partitions = d.nullable_array(flexible, 2, |d| decode_partitions(d, flexible))?;
    v.last_update_ms = d.i64()?;
    v.start_ms = d.i64()?;
    if flexible {
        d.at("TransactionLogValue._tagged_fields");
        let unknown = d.tagged_fields(|d, tag| {
            match tag {
                0 => v.previous_producer_id = d.i64()?,
                1 => v.next_producer_id = d.i64()?,
                2 => v.client_transaction_version = d.i16()?,
                3 => v.next_producer_epoch = d.i16()?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        v.unknown_tagged_fields = unknown;
    }
    Ok(v)
}

fn decode_partitions(d: &mut Decoder, flexible: bool) -> Result<LogPartitions, DecodeError> {
    d.at("PartitionsSchema.topic");
    let topic = d.string(flexible)?.as_str().to_string();
    d.at("PartitionsSchema.partition_ids");
    let partition_ids = d.array(flexible, 4, |d| d.i32())?;
    let unknown_tagged_fields = if flexible {
        d.tagged_fields(|_, _| Ok(false))?
    } else {
        Vec::new()
    };
    Ok(LogPartitions {
        topic,
        partition_ids,
        unknown_tagged_fields,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TxnLogValue {
        TxnLogValue {
            producer_id: 1000,
            producer_epoch: 3,
            timeout_ms: 60_000,
            status: 1,
            partitions: Some(vec![LogPartitions {
                topic: "orders".into(),
                partition_ids: vec![0, 2],
                unknown_tagged_fields: Vec::new(),
            }]),
            last_update_ms: 1_700_000_000_123,
            start_ms: 1_700_000_000_000,
            client_transaction_version: 2,
            previous_producer_id: 999,
            ..TxnLogValue::default()
        }
    }

    /// The key is the type prefix 0 then a v0 string (i16 length).
    #[test]
    fn key_bytes() {
        assert_eq!(encode_key("t1"), vec![0, 0, 0, 2, b't', b'1']);
    }

    /// v0 golden bytes: no tags, partitions with i32 lengths, null partitions as -1.
    #[test]
    fn value_v0_golden() {
        let mut v = sample();
        v.partitions = None;
        v.status = 0;
        let b = encode_value(&v, 0);
        let mut want = vec![0, 0];
        want.extend(1000i64.to_be_bytes());
        want.extend(3i16.to_be_bytes());
        want.extend(60_000i32.to_be_bytes());
        want.push(0);
        want.extend((-1i32).to_be_bytes());
        want.extend(1_700_000_000_123i64.to_be_bytes());
        want.extend(1_700_000_000_000i64.to_be_bytes());
        assert_eq!(b, want);
    }

    /// v1 golden bytes: compact arrays and strings, struct tag section, then tags 0 and 2 in
    /// ascending order (tag 1 and 3 at their defaults are left out).
    #[test]
    fn value_v1_golden() {
        let b = encode_value(&sample(), 1);
        let mut want = vec![0, 1];
        want.extend(1000i64.to_be_bytes());
        want.extend(3i16.to_be_bytes());
        want.extend(60_000i32.to_be_bytes());
        want.push(1);
        want.push(2); // one topic
        want.push(7);
        want.extend(b"orders");
        want.push(3); // two partitions
        want.extend(0i32.to_be_bytes());
        want.extend(2i32.to_be_bytes());
        want.push(0); // partition struct tags
        want.extend(1_700_000_000_123i64.to_be_bytes());
        want.extend(1_700_000_000_000i64.to_be_bytes());
        want.push(2); // two tags
        want.extend([0, 8]);
        want.extend(999i64.to_be_bytes());
        want.extend([2, 2, 0, 2]);
        assert_eq!(b, want);
    }

    /// Both versions round-trip, a v0 value reads with the tag defaults, unknown tags survive.
    #[test]
    fn values_round_trip() {
        let key = encode_key("t1");
        let mut v = sample();
        v.unknown_tagged_fields = vec![(9, bytes::Bytes::from_static(b"xy"))];
        v.next_producer_epoch = 4;
        v.next_producer_id = 77;
        let got = decode_record(&key, Some(&encode_value(&v, 1)));
        assert_eq!(
            got,
            Ok(LogRecord::Value {
                transactional_id: "t1".into(),
                value: v.clone()
            })
        );
        let v0 = decode_record(&key, Some(&encode_value(&v, 0)));
        let want = TxnLogValue {
            unknown_tagged_fields: Vec::new(),
            next_producer_epoch: -1,
            next_producer_id: -1,
            previous_producer_id: -1,
            client_transaction_version: 0,
            ..v
        };
        assert_eq!(
            v0,
            Ok(LogRecord::Value {
                transactional_id: "t1".into(),
                value: want
            })
        );
    }

    /// Tombstones, other key types, unknown value versions; truncated and trailing bytes fail.
    #[test]
    fn other_records_and_errors() {
        let key = encode_key("t1");
        assert_eq!(
            decode_record(&key, None),
            Ok(LogRecord::Tombstone {
                transactional_id: "t1".into()
            })
        );
        assert_eq!(
            decode_record(&[0, 5, 0, 0], None),
            Ok(LogRecord::UnknownKey { key_type: 5 })
        );
        assert_eq!(
            decode_record(&key, Some(&[0, 2, 1])),
            Ok(LogRecord::UnknownValueVersion {
                transactional_id: "t1".into(),
                version: 2
            })
        );
        let good = encode_value(&sample(), 1);
        for cut in 2..good.len() {
            assert!(
                decode_record(&key, Some(&good[..cut])).is_err(),
                "cut {cut}"
            );
        }
        let mut long = good.clone();
        long.push(0);
        assert!(decode_record(&key, Some(&long)).is_err());
        assert!(decode_record(&[0], None).is_err());
    }

    /// Arbitrary bytes give an error or a record, never a panic or a huge allocation.
    #[test]
    fn garbage_never_panics() {
        let mut x: u64 = 0x1234_5678;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 64) as usize;
            let bytes: Vec<u8> = (0..len).map(|i| (x >> (i % 8 * 8)) as u8).collect();
            let _ = decode_record(&encode_key("k"), Some(&bytes));
            let _ = decode_record(&bytes, None);
        }
    }
}
