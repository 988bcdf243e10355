//! Kafka's checks of a producer's batch beyond its framing (Kafka's `LogValidator`): the batch's
//! shape, then every record, so that a batch with bad records is refused whole and each bad
//! record is named ([`ShardError::RecordErrors`], Produce's `record_errors`), letting clients
//! fail those records and resend the others.
//!
//! Per record, in batch order, the first failing check wins (as in Kafka 4.4):
//! 1. a compacted topic needs a key (an empty key is a key);
//! 2. on a `CreateTime` topic, a timestamp other than -1 must lie within
//!    `[now - message.timestamp.before.max.ms, now + message.timestamp.after.max.ms]`;
//! 3. otherwise, a producer must not set the `LogAppendTime` attribute.
//!
//! Arithmetic wraps as Java's `long` does, so the bounds in the texts are Kafka's to the digit.
//!
//! Cost: an uncompressed batch's records are parsed (varints, no copies). A compressed batch is
//! decompressed only when a rule can fail for it: on compacted topics, when the producer set
//! `LogAppendTime`, when `before.max.ms` is bounded, or when the header's `maxTimestamp` is past
//! `after.max.ms`. Otherwise its records are not looked at, and the header's `maxTimestamp` is
//! trusted for the upper bound (Kafka decompresses every batch; a client whose header disagrees
//! with its records is the one case sluice answers differently).

use sluice_net::record_batch::{BatchError, Compression, Record, RecordBatch};

use crate::error::{RecordError, ShardError};

/// The topic settings the checks depend on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rules {
    pub compact: bool,
    /// `message.timestamp.type=CreateTime` (else `LogAppendTime`).
    pub create_time: bool,
    pub before_max_ms: i64,
    pub after_max_ms: i64,
    /// Largest records section a compressed batch may decompress to.
    pub decompressed_max: usize,
}

/// The batch-level checks Kafka makes before looking at records (`LogValidator.validateBatch`
/// and the log's base-offset check); a failure is INVALID_RECORD without record errors.
pub(crate) fn check_shape(b: &RecordBatch, index: usize) -> Result<(), ShardError> {
    let reason = if b.base_offset() != 0 {
        "the base offset of a produced batch must be 0"
    } else if b.is_control() {
        "clients must not send control batches"
    } else if b.producer_id() >= 0 && b.base_sequence() < 0 {
        "an idempotent batch needs a base sequence"
    } else {
        return Ok(());
    };
    Err(ShardError::InvalidBatch {
        index,
        source: BatchError::BadRecord {
            index: 0,
            what: reason,
        },
    })
}

/// Checks every record of `b` (the `index`-th batch of the request) at `now_ms`.
pub(crate) fn check_records(
    b: &RecordBatch,
    index: usize,
    rules: &Rules,
    now_ms: i64,
    topic: &str,
    partition: i32,
) -> Result<(), ShardError> {
    let log_append_flag = b.attributes() & 0x08 != 0;
    let compressed = b.compression().ok() != Some(Compression::None);
    let may_fail = rules.compact
        || log_append_flag
        || (rules.create_time
            && (rules.before_max_ms != i64::MAX
                || b.max_timestamp().wrapping_sub(now_ms) > rules.after_max_ms));
    if compressed && !may_fail {
        return Ok(());
    }
    let invalid = |source| ShardError::InvalidBatch { index, source };
    let records = crate::codec::batch_records(b, rules.decompressed_max).map_err(|_| {
        invalid(BatchError::BadRecord {
            index: 0,
            what: "the records do not decompress",
        })
    })?;
    let mut errors = Vec::new();
    let mut timestamp_error = false;
    for (i, record) in records.enumerate() {
        let r = record.map_err(invalid)?;
        if !may_fail {
            continue;
        }
        let Some((message, timestamp)) = record_error(b, &r, rules, now_ms, topic, partition)
        else {
            continue;
        };
        timestamp_error |= timestamp;
        errors.push(RecordError {
            batch_index: i32::try_from(i).unwrap_or(i32::MAX),
            message,
        });
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ShardError::RecordErrors {
            timestamp: timestamp_error,
            errors,
        })
    }
}

/// Kafka's text for the first check record `r` of `b` fails, if any, and whether that is a
/// timestamp check.
fn record_error(
    b: &RecordBatch,
    r: &Record,
    rules: &Rules,
    now_ms: i64,
    topic: &str,
    partition: i32,
) -> Option<(String, bool)> {
    let log_append_flag = b.attributes() & 0x08 != 0;
    let offset = b.base_offset().wrapping_add(i64::from(r.offset_delta));
    let timestamp = if log_append_flag {
        b.max_timestamp()
    } else {
        b.base_timestamp().wrapping_add(r.timestamp_delta)
    };
    if rules.compact && r.key.is_none() {
        let message = format!(
            "Compacted topic cannot accept message without key in topic partition \
             {topic}-{partition}"
        );
        return Some((message, false));
    }
    if rules.create_time && timestamp != -1 {
        if now_ms.wrapping_sub(timestamp) <= rules.before_max_ms
            && timestamp.wrapping_sub(now_ms) <= rules.after_max_ms
        {
            return None;
        }
        let message = format!(
            "Timestamp {timestamp} of message with offset {offset} is out of range. The \
             timestamp should be within [{}, {}]",
            now_ms.wrapping_sub(rules.before_max_ms),
            now_ms.wrapping_add(rules.after_max_ms)
        );
        return Some((message, true));
    }
    if log_append_flag {
        let message = format!(
            "Invalid timestamp type in message DefaultRecord(offset={offset}, \
             timestamp={timestamp}, key={} bytes, value={} bytes). Producer should not set \
             timestamp type to LogAppendTime.",
            r.key.as_ref().map_or(0, |k| k.len()),
            r.value.as_ref().map_or(0, |v| v.len())
        );
        return Some((message, true));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_net::record_batch::build::{BatchSpec, batch};

    const NOW: i64 = 1_700_000_000_000;

    fn rules() -> Rules {
        Rules {
            compact: false,
            create_time: true,
            before_max_ms: i64::MAX,
            after_max_ms: 3_600_000,
            decompressed_max: 1 << 20,
        }
    }

    fn errors(r: Result<(), ShardError>) -> (bool, Vec<(i32, String)>) {
        match r {
            Err(ShardError::RecordErrors { timestamp, errors }) => (
                timestamp,
                errors
                    .into_iter()
                    .map(|e| (e.batch_index, e.message))
                    .collect(),
            ),
            other => panic!("expected record errors, got {other:?}"),
        }
    }

    #[test]
    fn keyless_records_of_a_compacted_topic_are_each_named() {
        let b = batch(
            &BatchSpec {
                base_timestamp: NOW,
                ..BatchSpec::default()
            },
            &[
                (Some(b"k0"), Some(b"v")),
                (None, Some(b"v")),
                (Some(b""), Some(b"v")),
                (None, None),
            ],
        );
        let b = RecordBatch::new(b).expect("batch");
        let r = Rules {
            compact: true,
            ..rules()
        };
        let (timestamp, errs) = errors(check_records(&b, 0, &r, NOW, "cmp", 3));
        assert!(!timestamp);
        let text = "Compacted topic cannot accept message without key in topic partition cmp-3";
        assert_eq!(errs, vec![(1, text.to_owned()), (3, text.to_owned())]);
        assert!(check_records(&b, 0, &rules(), NOW, "cmp", 3).is_ok());
    }

    #[test]
    fn timestamps_outside_the_window_are_named_with_kafkas_bounds() {
        let spec = BatchSpec {
            base_timestamp: NOW - 700_000,
            timestamp_step: 700_000,
            ..BatchSpec::default()
        };
        // Timestamps NOW-700000, NOW, NOW+700000.
        let b = batch(
            &spec,
            &[(None, Some(b"a")), (None, Some(b"b")), (None, Some(b"c"))],
        );
        let b = RecordBatch::new(b).expect("batch");
        let r = Rules {
            before_max_ms: 600_000,
            after_max_ms: 600_000,
            ..rules()
        };
        let (timestamp, errs) = errors(check_records(&b, 0, &r, NOW, "t", 0));
        assert!(timestamp);
        let window = format!("[{}, {}]", NOW - 600_000, NOW + 600_000);
        assert_eq!(
            errs,
            vec![
                (
                    0,
                    format!(
                        "Timestamp {} of message with offset 0 is out of range. The timestamp \
                         should be within {window}",
                        NOW - 700_000
                    )
                ),
                (
                    2,
                    format!(
                        "Timestamp {} of message with offset 2 is out of range. The timestamp \
                         should be within {window}",
                        NOW + 700_000
                    )
                ),
            ]
        );
        // The default window: no lower bound (the text's lower end wraps as Java's long does),
        // an hour ahead.
        let (_, errs) = errors(check_records(&b, 0, &rules(), NOW - 3_000_000, "t", 0));
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].1.ends_with(&format!(
                "[{}, {}]",
                (NOW - 3_000_000).wrapping_sub(i64::MAX),
                NOW - 3_000_000 + 3_600_000
            )),
            "{}",
            errs[0].1
        );
        // A LogAppendTime topic checks no window.
        let lat = Rules {
            create_time: false,
            ..r
        };
        assert!(check_records(&b, 0, &lat, NOW, "t", 0).is_ok());
    }

    #[test]
    fn producers_must_not_set_log_append_time() {
        let spec = BatchSpec {
            base_timestamp: NOW,
            attributes: 0x08,
            ..BatchSpec::default()
        };
        let b = RecordBatch::new(batch(&spec, &[(Some(b"key"), None)])).expect("batch");
        let lat = Rules {
            create_time: false,
            ..rules()
        };
        let (timestamp, errs) = errors(check_records(&b, 0, &lat, NOW, "t", 0));
        assert!(timestamp);
        assert_eq!(
            errs,
            vec![(
                0,
                format!(
                    "Invalid timestamp type in message DefaultRecord(offset=0, timestamp={}, \
                     key=3 bytes, value=0 bytes). Producer should not set timestamp type to \
                     LogAppendTime.",
                    b.max_timestamp()
                )
            )]
        );
        // On a CreateTime topic an in-range LogAppendTime batch passes, as on Kafka.
        assert!(check_records(&b, 0, &rules(), NOW, "t", 0).is_ok());
    }

    #[test]
    fn shape_checks() {
        let ok = RecordBatch::new(batch(&BatchSpec::default(), &[(None, Some(b"v"))])).unwrap();
        assert!(check_shape(&ok, 0).is_ok());
        let moved = RecordBatch::new(batch(
            &BatchSpec {
                base_offset: 100,
                ..BatchSpec::default()
            },
            &[(None, Some(b"v"))],
        ))
        .unwrap();
        assert!(matches!(
            check_shape(&moved, 0),
            Err(ShardError::InvalidBatch { .. })
        ));
        let no_sequence = RecordBatch::new(batch(
            &BatchSpec {
                producer_id: 7,
                producer_epoch: 0,
                base_sequence: -1,
                ..BatchSpec::default()
            },
            &[(None, Some(b"v"))],
        ))
        .unwrap();
        assert!(check_shape(&no_sequence, 0).is_err());
    }
}
