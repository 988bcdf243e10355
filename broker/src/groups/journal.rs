//! The coordinator's journal: records appended to `__consumer_offsets`, and the replay that
//! rebuilds a partition's groups from them.
//!
//! Appends go through the partition's normal log, so [`append`] returns only once the records
//! are durable (OffsetCommit answers after it). [`spawn_write`] is the fire-and-forget form
//! for group metadata: tasks start in spawn order and the log orders appends as they start,
//! so metadata records land in the order their state changes happened.
//!
//! [`replay`] reads a partition from its log start and hands each decoded record, with its
//! offset, to the caller in log order; [`apply_record`] is what the coordinator does with one
//! (synchronous, so tests drive it without an executor).

use std::collections::HashMap;

use bytes::Bytes;
use sluice_net::record_batch::{RecordBatch, build};
use sluice_shard::{DmaStorage, Partition, Shard, ShardError};

use super::OFFSETS_TOPIC;
use super::group::{Committed, Group};
use super::records::Decoded;
use crate::limits::{OFFSETS_REPLAY_READ_BYTES, OFFSETS_WRITE_BATCH_BYTES};
use sluice_net::error_code::code;

/// One `__consumer_offsets` record: its key, and its value or `None` for a tombstone.
pub type Record = (Bytes, Option<Bytes>);

/// A [`Record`] as the batch builder takes it.
type RecordRef<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// Records to append to one `__consumer_offsets` partition, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub partition: i32,
    pub records: Vec<Record>,
}

/// One `__consumer_offsets` partition's log on this core.
type Log = Partition<DmaStorage>;

/// Appends records durably to partition `partition` of `__consumer_offsets`; the offset of the
/// first one. `timestamp_ms` goes in each batch's base timestamp.
pub async fn append(
    shard: &Shard,
    partition: i32,
    recs: &[Record],
    timestamp_ms: i64,
) -> Result<i64, i16> {
    let Some(log) = shard.partition(OFFSETS_TOPIC, partition) else {
        return Err(code::NOT_COORDINATOR);
    };
    append_records(&log, OFFSETS_TOPIC, recs, timestamp_ms).await
}

/// Appends `recs` to `log` (a partition of the internal topic `topic`: `__consumer_offsets`,
/// or `__transaction_state` for the transaction coordinator) in batches, and waits until the
/// in-sync replicas have them; the offset of the first one.
pub(crate) async fn append_records(
    log: &Log,
    topic: &str,
    recs: &[Record],
    timestamp_ms: i64,
) -> Result<i64, i16> {
    let partition = log.partition();
    let mut first = None;
    let mut start = 0;
    while start < recs.len() {
        let end = batch_end(recs, start);
        let refs: Vec<RecordRef<'_>> = recs[start..end]
            .iter()
            .map(|(k, v)| (Some(k.as_ref()), v.as_deref()))
            .collect();
        let batch = build::batch(
            &build::BatchSpec {
                base_timestamp: timestamp_ms,
                ..build::BatchSpec::default()
            },
            &refs,
        );
        match log.append(batch).await {
            Ok(info) => {
                first.get_or_insert(info.base_offset);
            }
            Err(e) => {
                tracing::warn!(topic, partition, error = %e, "append to an internal topic failed");
                return Err(append_error(&e));
            }
        }
        start = end;
    }
    let first = first.ok_or(code::UNKNOWN_SERVER_ERROR)?;
    committed(log).await?;
    Ok(first)
}

/// Appends a TxnOffsetCommit's records durably to partition `partition` of
/// `__consumer_offsets` as one transactional batch of `producer_id` at `producer_epoch` (as
/// the coordinator writes it: no sequence), waiting for the in-sync replicas; the offset of
/// the first record.
pub async fn append_txn(
    shard: &Shard,
    partition: i32,
    recs: &[Record],
    (producer_id, producer_epoch): (i64, i16),
    timestamp_ms: i64,
) -> Result<i64, i16> {
    let Some(log) = shard.partition(OFFSETS_TOPIC, partition) else {
        return Err(code::NOT_COORDINATOR);
    };
    let refs: Vec<RecordRef<'_>> = recs
        .iter()
        .map(|(k, v)| (Some(k.as_ref()), v.as_deref()))
        .collect();
    let batch = build::batch(
        &build::BatchSpec {
            base_timestamp: timestamp_ms,
            producer_id,
            producer_epoch,
            base_sequence: 0,
            attributes: 0x10,
            ..build::BatchSpec::default()
        },
        &refs,
    );
    let info = log.append_from_coordinator(batch).await.map_err(|e| {
        tracing::warn!(partition, error = %e, "transactional offset commit failed");
        match e {
            ShardError::InvalidProducerEpoch { .. } => code::INVALID_PRODUCER_EPOCH,
            e => append_error(&e),
        }
    })?;
    committed(&log).await?;
    Ok(info.base_offset)
}

/// How long a write waits for the other in-sync replicas of its `__consumer_offsets`
/// partition (Kafka's `offsets.commit.timeout.ms`).
const COMMIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Waits until everything appended to `log` is below its high watermark: on one node at once
/// (durable is committed), on a cluster once the in-sync replicas have it (acks=all, as
/// Kafka's coordinator writes); REQUEST_TIMED_OUT after [`COMMIT_TIMEOUT`].
async fn committed(log: &Log) -> Result<(), i16> {
    let end = log.offsets().log_end_offset;
    let waited = futures_lite::future::or(
        async {
            log.wait_for_append(end - 1).await;
            true
        },
        async {
            glommio::timer::sleep(COMMIT_TIMEOUT).await;
            false
        },
    )
    .await;
    if waited && log.offsets().high_watermark >= end {
        Ok(())
    } else {
        Err(code::REQUEST_TIMED_OUT)
    }
}

/// The end (exclusive) of the batch starting at `start`: at least one record, then records
/// until the batch reaches [`OFFSETS_WRITE_BATCH_BYTES`].
fn batch_end(recs: &[Record], start: usize) -> usize {
    let mut end = start;
    let mut bytes = 0;
    while end < recs.len() && (end == start || bytes < OFFSETS_WRITE_BATCH_BYTES) {
        bytes += recs[end].0.len() + recs[end].1.as_ref().map_or(0, Bytes::len) + 24;
        end += 1;
    }
    end
}

/// The coordinator's answer when its log refuses an append: Kafka's coordinator says
/// INVALID_COMMIT_OFFSET_SIZE for a batch over the size limit (the shard's only "too large"
/// refusal, MESSAGE_TOO_LARGE on the produce path) and NOT_COORDINATOR for anything else, so
/// the client looks the coordinator up again.
fn append_error(e: &ShardError) -> i16 {
    match e {
        ShardError::BatchTooLarge { .. } => code::INVALID_COMMIT_OFFSET_SIZE,
        _ => code::NOT_COORDINATOR,
    }
}

/// Appends `write` in the background; a failure is logged (group metadata only: a lost record
/// costs a rebalance after a crash, never an offset).
pub fn spawn_write(shard: &Shard, write: Write, timestamp_ms: i64) {
    let Write { partition, records } = write;
    let Some(log) = shard.partition(OFFSETS_TOPIC, partition) else {
        tracing::warn!(
            partition,
            error = code::NOT_COORDINATOR,
            "writing group metadata to __consumer_offsets failed"
        );
        return;
    };
    glommio::spawn_local(async move {
        if let Err(e) = append_records(&log, OFFSETS_TOPIC, &records, timestamp_ms).await {
            tracing::warn!(
                partition,
                error = e,
                "writing group metadata to __consumer_offsets failed"
            );
        }
    })
    .detach();
}

/// Reads partition `p` of `__consumer_offsets` from its log start to its log end (as Kafka's
/// loader: a new leader's high watermark may still be below commits its predecessor
/// acknowledged) and
/// calls `apply(record, offset)` for each record sluice can read, in log order (between reads,
/// never across an await). The number of records applied.
pub async fn replay(
    shard: &Shard,
    p: i32,
    apply: &mut dyn FnMut(Replayed, i64),
) -> Result<usize, i16> {
    let Some(log) = shard.partition(OFFSETS_TOPIC, p) else {
        return Err(code::NOT_COORDINATOR);
    };
    let mut next = log.offsets().log_start_offset;
    let mut applied = 0usize;
    loop {
        let read = log
            .read_to_log_end(next, OFFSETS_REPLAY_READ_BYTES)
            .await
            .map_err(|e| {
                tracing::error!(partition = p, error = %e, "replaying __consumer_offsets failed");
                code::COORDINATOR_NOT_AVAILABLE
            })?;
        if read.batches.is_empty() {
            return Ok(applied);
        }
        for raw in read.batches {
            let batch = RecordBatch::new(raw).map_err(|e| {
                tracing::error!(
                    partition = p,
                    error = %e,
                    "unreadable batch in __consumer_offsets"
                );
                code::COORDINATOR_NOT_AVAILABLE
            })?;
            next = batch.last_offset() + 1;
            applied += replay_batch(&batch, p, apply);
        }
        glommio::yield_if_needed().await;
    }
}

/// What a replay hands over: a record (with its producer id when it is part of a
/// transaction: a TxnOffsetCommit), or the marker that ends a producer's transaction.
#[derive(Debug)]
pub enum Replayed {
    Record {
        decoded: Decoded,
        transactional: Option<i64>,
    },
    TxnEnd {
        producer_id: i64,
        commit: bool,
    },
}

/// Applies the records of one batch; how many were applied.
fn replay_batch(batch: &RecordBatch, p: i32, apply: &mut dyn FnMut(Replayed, i64)) -> usize {
    if batch.is_control() {
        let Some(marker) = sluice_shard::marker_of(batch) else {
            return 0;
        };
        let end = Replayed::TxnEnd {
            producer_id: batch.producer_id(),
            commit: marker.commit,
        };
        apply(end, batch.base_offset());
        return 1;
    }
    let transactional = batch.is_transactional().then(|| batch.producer_id());
    let records = match batch.records() {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(
                partition = p,
                error = %e,
                "skipping a batch of __consumer_offsets sluice cannot read"
            );
            return 0;
        }
    };
    let mut applied = 0;
    for record in records {
        let Ok(record) = record else {
            tracing::warn!(
                partition = p,
                "skipping a malformed record in __consumer_offsets"
            );
            break;
        };
        let at = batch.base_offset() + i64::from(record.offset_delta);
        match super::records::decode(record.key, record.value) {
            Ok(decoded) => {
                let r = Replayed::Record {
                    decoded,
                    transactional,
                };
                apply(r, at);
                applied += 1;
            }
            Err(e) => {
                tracing::warn!(partition = p, offset = at, error = %e, "skipping record")
            }
        }
    }
    applied
}

/// Applies what a replay handed over at log offset `at`: a record ([`apply_record`]), a
/// transactional offset commit (pending until its producer's marker) or that marker.
/// `in_partition` tells the groups of the replayed partition (a marker ends the transaction
/// in those only).
pub fn apply_replayed(
    groups: &mut HashMap<String, Group>,
    r: Replayed,
    (at, now): (i64, i64),
    in_partition: &dyn Fn(&str) -> bool,
) {
    match r {
        Replayed::Record {
            decoded,
            transactional: None,
        } => apply_record(groups, decoded, at, now),
        Replayed::Record {
            decoded:
                Decoded::Offset {
                    group,
                    topic,
                    partition,
                    value: Some(value),
                },
            transactional: Some(producer_id),
        } => {
            let g = groups
                .entry(group.clone())
                .or_insert_with(|| Group::new(&group, now));
            let committed = Committed {
                value,
                record_offset: at,
            };
            g.pending_txn
                .entry(producer_id)
                .or_default()
                .insert((topic, partition), committed);
        }
        Replayed::Record { .. } => {}
        Replayed::TxnEnd {
            producer_id,
            commit,
        } => {
            let mine = groups.values_mut().filter(|g| in_partition(&g.id));
            end_txn(mine, producer_id, commit);
        }
    }
}

/// Ends `producer_id`'s transaction in `groups`: with `commit` its pending offsets become
/// committed where no later record replaced them (Kafka compares log offsets), else they are
/// dropped.
pub fn end_txn<'a>(groups: impl Iterator<Item = &'a mut Group>, producer_id: i64, commit: bool) {
    for g in groups {
        let Some(pending) = g.pending_txn.remove(&producer_id) else {
            continue;
        };
        if !commit {
            continue;
        }
        for (key, c) in pending {
            let newer = g
                .offsets
                .get(&key)
                .is_none_or(|old| old.record_offset < c.record_offset);
            if newer {
                g.offsets.insert(key, c);
            }
        }
    }
}

/// Applies one replayed record at log offset `at`: an offset commit or its tombstone, a
/// group's metadata or its tombstone. Records come in log order, so the last one wins.
pub fn apply_record(groups: &mut HashMap<String, Group>, d: Decoded, at: i64, now: i64) {
    match d {
        Decoded::Offset {
            group,
            topic,
            partition,
            value,
        } => {
            let g = groups
                .entry(group.clone())
                .or_insert_with(|| Group::new(&group, now));
            match value {
                Some(value) => {
                    g.offsets.insert(
                        (topic, partition),
                        Committed {
                            value,
                            record_offset: at,
                        },
                    );
                }
                None => {
                    g.offsets.remove(&(topic, partition));
                }
            }
        }
        Decoded::Group { group, value } => match value {
            Some(v) => groups
                .entry(group.clone())
                .or_insert_with(|| Group::new(&group, now))
                .restore(v, now),
            None => {
                groups.remove(&group);
            }
        },
        Decoded::Unknown => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::groups::records::{self, GroupValue, OffsetValue};

    fn offset(group: &str, topic: &str, partition: i32, value: Option<i64>) -> Decoded {
        Decoded::Offset {
            group: group.into(),
            topic: topic.into(),
            partition,
            value: value.map(|offset| OffsetValue {
                offset,
                leader_epoch: -1,
                metadata: String::new(),
                commit_timestamp_ms: 0,
            }),
        }
    }

    /// Replaying applies records in log order: a later commit replaces an earlier one, a
    /// tombstone removes the offset, and a group tombstone removes the whole group. Driven
    /// record by record, as `replay` hands them over.
    #[test]
    fn replay_applies_records_in_log_order() {
        let mut groups = HashMap::new();
        apply_record(&mut groups, offset("g", "t", 0, Some(5)), 10, 0);
        apply_record(&mut groups, offset("g", "t", 0, Some(7)), 11, 0);
        apply_record(&mut groups, offset("g", "t", 1, Some(3)), 12, 0);
        let g = &groups["g"];
        assert_eq!(g.offsets[&("t".to_owned(), 0)].value.offset, 7);
        assert_eq!(g.offsets[&("t".to_owned(), 0)].record_offset, 11);
        assert_eq!(g.offsets.len(), 2);

        apply_record(&mut groups, offset("g", "t", 1, None), 13, 0);
        assert_eq!(groups["g"].offsets.len(), 1);

        apply_record(
            &mut groups,
            Decoded::Group {
                group: "h".into(),
                value: Some(GroupValue {
                    protocol_type: "consumer".into(),
                    generation: 3,
                    protocol: None,
                    leader: None,
                    current_state_timestamp_ms: 0,
                    members: Vec::new(),
                }),
            },
            14,
            0,
        );
        assert_eq!(groups["h"].generation, 3);
        apply_record(
            &mut groups,
            Decoded::Group {
                group: "g".into(),
                value: None,
            },
            15,
            0,
        );
        assert!(!groups.contains_key("g"));
        apply_record(&mut groups, Decoded::Unknown, 16, 0);
        assert_eq!(groups.len(), 1);
    }

    /// A big write is split into batches near `OFFSETS_WRITE_BATCH_BYTES`, each with at least one
    /// record, and together they cover every record once.
    #[test]
    fn big_writes_split_into_batches() {
        let value = Bytes::from(vec![0u8; 100 * 1024]);
        let recs: Vec<Record> = (0..12)
            .map(|i| (records::group_key(&format!("g{i}")), Some(value.clone())))
            .collect();
        let mut start = 0;
        let mut batches = 0;
        while start < recs.len() {
            let end = batch_end(&recs, start);
            assert!(end > start);
            start = end;
            batches += 1;
        }
        assert_eq!(start, recs.len());
        assert_eq!(batches, 2);
        let huge = vec![(
            Bytes::from_static(b"k"),
            Some(Bytes::from(vec![0u8; 1 << 20])),
        )];
        assert_eq!(batch_end(&huge, 0), 1);
    }
}
