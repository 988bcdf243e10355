//! Operations on partitions, routed to the core that owns each one.
//!
//! A handler builds a list of [`PartitionOp`]s and calls [`run`]; ops for this core run
//! directly, ops for other cores go as one mesh message per core (batched, never one message per
//! partition), and all of them run concurrently. Results come back in the order of the ops.
//! Errors become Kafka error codes on the owning core (`errors::shard`), so a reply is plain
//! `Send` data.

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use sluice_net::record_batch::{RecordBatch, TimestampType};
use sluice_shard::{AppendInfo, Offsets, ReadResult, ShardError};

use crate::core::{Core, CoreReply, CoreRequest};
use crate::errors::{self, code};
use crate::metadata::shard_for;

/// A Kafka error code with its message.
#[derive(Debug, Clone)]
pub struct PartError {
    pub code: i16,
    pub message: String,
    /// The partition's log start offset where Kafka reports it with a failed append (every
    /// error but a missing partition, a too-large or corrupt batch, or a storage error); -1
    /// otherwise.
    pub log_start_offset: i64,
    /// Refused records of a batch (Produce's `record_errors`): (index in the batch, why). When
    /// present, `message` is Kafka's custom partition message for them.
    pub record_errors: Vec<sluice_shard::RecordError>,
}

impl PartError {
    pub fn new(code: i16, message: impl Into<String>) -> PartError {
        PartError {
            code,
            message: message.into(),
            log_start_offset: -1,
            record_errors: Vec::new(),
        }
    }
}

/// What to do to one partition.
#[derive(Debug)]
pub enum PartitionOp {
    /// Append one or more v2 batches (a Produce `records` field).
    Append { records: Bytes },
    /// Read committed batches from `offset`, at most about `max_bytes`.
    Read { offset: i64, max_bytes: usize },
    /// Log start, high watermark, log end.
    Offsets,
    /// First offset whose timestamp is at or after this one.
    OffsetForTimestamp { timestamp_ms: i64 },
    /// Wait until the high watermark passes `after` or `timeout` passes.
    WaitForAppend { after: i64, timeout: Duration },
    /// DeleteRecords: move the log start offset up to `offset` (-1: the high watermark).
    DeleteRecordsBefore { offset: i64 },
    /// Offsets and bytes on disk (DescribeLogDirs).
    Describe,
    /// Offset and timestamp of the first record with the largest timestamp (ListOffsets -3).
    MaxTimestamp,
}

/// The result of a [`PartitionOp`], in the same variant order.
#[derive(Debug)]
pub enum PartitionOpResult {
    Appended(Result<AppendInfo, PartError>),
    Read(Result<ReadResult, PartError>),
    Offsets(Result<Offsets, PartError>),
    OffsetForTimestamp(Result<Option<(i64, i64)>, PartError>),
    Waited,
    DeletedRecords(Result<i64, PartError>),
    Described(Result<(Offsets, u64), PartError>),
    MaxTimestamp(Result<Option<(i64, i64)>, PartError>),
}

/// One op addressed to a partition.
#[derive(Debug)]
pub struct Addressed {
    pub topic: String,
    pub partition: i32,
    pub op: PartitionOp,
}

/// Runs `ops` on their owning cores, concurrently; results in the order of `ops`.
pub async fn run(core: &Rc<Core>, ops: Vec<Addressed>) -> Vec<PartitionOpResult> {
    let cores = core.mesh.cores();
    let n = ops.len();
    let mut by_core: Vec<Vec<(usize, Addressed)>> = (0..cores).map(|_| Vec::new()).collect();
    for (i, op) in ops.into_iter().enumerate() {
        by_core[shard_for(&op.topic, op.partition, cores)].push((i, op));
    }
    let mut tasks = Vec::new();
    for (owner, batch) in by_core.into_iter().enumerate() {
        if batch.is_empty() {
            continue;
        }
        let (slots, ops): (Vec<usize>, Vec<Addressed>) = batch.into_iter().unzip();
        let core = Rc::clone(core);
        tasks.push((
            slots,
            glommio::spawn_local(async move {
                if owner == core.id {
                    run_local(&core, ops).await
                } else {
                    let failures: Vec<Failure> = ops.iter().map(|a| failure(&a.op)).collect();
                    match core.mesh.call(owner, CoreRequest::Partitions(ops)).await {
                        Ok(CoreReply::Partitions(results)) => results,
                        _ => failures.into_iter().map(|f| f(core_gone(owner))).collect(),
                    }
                }
            }),
        ));
    }
    let mut out: Vec<Option<PartitionOpResult>> = (0..n).map(|_| None).collect();
    for (slots, task) in tasks {
        for (slot, result) in slots.into_iter().zip(task.await) {
            out[slot] = Some(result);
        }
    }
    out.into_iter()
        .map(|r| r.expect("every op has a result"))
        .collect()
}

fn core_gone(owner: usize) -> PartError {
    PartError::new(
        code::KAFKA_STORAGE_ERROR,
        format!("core {owner} did not answer"),
    )
}

/// Builds the result of an op failing with an error.
type Failure = fn(PartError) -> PartitionOpResult;

/// How `op` fails: kept before the op is handed away, and called only if it does fail, so the
/// request path builds no error it does not send.
fn failure(op: &PartitionOp) -> Failure {
    match op {
        PartitionOp::Append { .. } => |e| PartitionOpResult::Appended(Err(e)),
        PartitionOp::Read { .. } => |e| PartitionOpResult::Read(Err(e)),
        PartitionOp::Offsets => |e| PartitionOpResult::Offsets(Err(e)),
        PartitionOp::OffsetForTimestamp { .. } => |e| PartitionOpResult::OffsetForTimestamp(Err(e)),
        PartitionOp::WaitForAppend { .. } => |_| PartitionOpResult::Waited,
        PartitionOp::DeleteRecordsBefore { .. } => |e| PartitionOpResult::DeletedRecords(Err(e)),
        PartitionOp::Describe => |e| PartitionOpResult::Described(Err(e)),
        PartitionOp::MaxTimestamp => |e| PartitionOpResult::MaxTimestamp(Err(e)),
    }
}

/// Runs ops on partitions this core owns, concurrently. Each op is a detached task, so it runs
/// to its end even when the request waiting for it is dropped (a connection cancelled by a
/// bounded shutdown): storage work is never cut off half way.
pub async fn run_local(core: &Rc<Core>, ops: Vec<Addressed>) -> Vec<PartitionOpResult> {
    let tasks: Vec<_> = ops
        .into_iter()
        .map(|a| {
            let core = Rc::clone(core);
            let failed = failure(&a.op);
            let owner = core.id;
            let task = glommio::spawn_local(async move { run_one(&core, a).await }).detach();
            (task, failed, owner)
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for (task, failed, owner) in tasks {
        out.push(task.await.unwrap_or_else(|| failed(core_gone(owner))));
    }
    out
}

async fn run_one(core: &Rc<Core>, a: Addressed) -> PartitionOpResult {
    let Some(p) = core.shard.partition(&a.topic, a.partition) else {
        let e = match core.unopened.borrow().get(&(a.topic.clone(), a.partition)) {
            Some(why) => PartError::new(code::KAFKA_STORAGE_ERROR, why.clone()),
            None => PartError::new(
                code::UNKNOWN_TOPIC_OR_PARTITION,
                "This server does not host this topic-partition.",
            ),
        };
        return failure(&a.op)(e);
    };
    match a.op {
        PartitionOp::Append { records } => {
            PartitionOpResult::Appended(match p.append(records).await {
                Ok(info) => Ok(info),
                // A retried batch the log already has: Kafka answers success with the offsets the
                // first attempt got, so the producer moves on without a duplicate.
                Err(ShardError::DuplicateSequence {
                    base_offset,
                    last_offset,
                    ..
                }) => Ok(AppendInfo {
                    base_offset,
                    last_offset,
                    log_append_time_ms: -1,
                    log_start_offset: p.offsets().log_start_offset,
                }),
                Err(e) => {
                    let mut error = errors::shard(&e);
                    if !matches!(
                        error.code,
                        code::MESSAGE_TOO_LARGE | code::CORRUPT_MESSAGE | code::KAFKA_STORAGE_ERROR
                    ) {
                        error.log_start_offset = p.offsets().log_start_offset;
                    }
                    Err(error)
                }
            })
        }
        PartitionOp::Read { offset, max_bytes } => PartitionOpResult::Read(
            p.read(offset, max_bytes)
                .await
                .map_err(|e| errors::shard(&e)),
        ),
        PartitionOp::Offsets => PartitionOpResult::Offsets(Ok(p.offsets())),
        PartitionOp::Describe => PartitionOpResult::Described(Ok((p.offsets(), p.size_bytes()))),
        PartitionOp::MaxTimestamp => PartitionOpResult::MaxTimestamp(max_timestamp(&p).await),
        PartitionOp::OffsetForTimestamp { timestamp_ms } => PartitionOpResult::OffsetForTimestamp(
            p.offset_for_timestamp(timestamp_ms)
                .await
                .map_err(|e| errors::shard(&e)),
        ),
        PartitionOp::WaitForAppend { after, timeout } => {
            futures_lite::future::or(
                futures_lite::future::or(p.wait_for_append(after), glommio::timer::sleep(timeout)),
                core.stop.stopped(),
            )
            .await;
            PartitionOpResult::Waited
        }
        PartitionOp::DeleteRecordsBefore { offset } => {
            let target = if offset == -1 {
                p.offsets().high_watermark
            } else {
                offset
            };
            let hw = p.offsets().high_watermark;
            if target < 0 || target > hw {
                return PartitionOpResult::DeletedRecords(Err(PartError::new(
                    code::OFFSET_OUT_OF_RANGE,
                    format!(
                        "Cannot increment the log start offset to {target} of partition {}-{} since it is larger than the high watermark {hw}",
                        a.topic, a.partition
                    ),
                )));
            }
            PartitionOpResult::DeletedRecords(
                p.delete_records_before(target)
                    .await
                    .map_err(|e| errors::shard(&e)),
            )
        }
    }
}

/// Bytes read per step while scanning for the largest timestamp.
const MAX_TIMESTAMP_READ_BYTES: usize = 1 << 20;

/// The first record holding the partition's largest timestamp, found by reading every batch
/// header from the log start (the storage engine keeps no per-segment maximum yet, so this
/// costs a read of the whole log). Within the winning batch the records are walked to find the
/// first one with that timestamp; a compressed batch answers its base offset, since sluice
/// does not decompress batches.
async fn max_timestamp(
    p: &sluice_shard::Partition<sluice_shard::DmaStorage>,
) -> Result<Option<(i64, i64)>, PartError> {
    let mut offset = p.offsets().log_start_offset;
    let mut best: Option<(i64, Bytes)> = None;
    loop {
        let read = p
            .read(offset, MAX_TIMESTAMP_READ_BYTES)
            .await
            .map_err(|e| errors::shard(&e))?;
        if read.batches.is_empty() {
            break;
        }
        for b in read.batches {
            let Ok(batch) = RecordBatch::new(b.clone()) else {
                continue;
            };
            if best
                .as_ref()
                .is_none_or(|(ts, _)| batch.max_timestamp() > *ts)
            {
                best = Some((batch.max_timestamp(), b));
            }
            offset = batch.last_offset() + 1;
        }
    }
    let Some((ts, bytes)) = best else {
        return Ok(None);
    };
    let Ok(batch) = RecordBatch::new(bytes) else {
        return Ok(None);
    };
    if batch.timestamp_type() == TimestampType::LogAppendTime {
        return Ok(Some((batch.base_offset(), ts)));
    }
    if let Ok(records) = batch.records() {
        for r in records.flatten() {
            if batch.base_timestamp() + r.timestamp_delta == ts {
                return Ok(Some((batch.base_offset() + i64::from(r.offset_delta), ts)));
            }
        }
    }
    Ok(Some((batch.base_offset(), ts)))
}
