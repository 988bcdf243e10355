//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3), earliest-local (-4, the log
//! start: all of a sluice log is local), latest-tiered (-5) and earliest-pending-upload (-6)
//! (offset -1 without error: nothing is tiered, as on a Kafka without remote storage), or the
//! first offset at or after a timestamp. A special timestamp the request's version does not
//! know, or an unknown one, gets UNSUPPORTED_VERSION on its partition, as on Kafka 4.4. v10's
//! `TimeoutMs` is for remote lookups and has nothing to wait for here. Latest is the high
//! watermark for read_uncommitted and the last stable offset for read_committed (isolation
//! level 1), as Kafka answers.
//!
//! Not done: Kafka also hides a timestamp lookup's answer at or past the last stable offset
//! from read_committed; sluice answers it as for read_uncommitted.

use std::rc::Rc;

use sluice_net::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use sluice_net::messages::{ListOffsetsRequest, ListOffsetsResponse};

use crate::core::Core;
use crate::errors::{self, code};
use crate::messages::{Addressed, PartitionOp, PartitionOpResult};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;
const EARLIEST_PENDING_UPLOAD: i64 = -6;

/// The lowest ListOffsets version that knows a special (negative) timestamp; `None` for one
/// Kafka does not define.
fn min_version(timestamp: i64) -> Option<i16> {
    match timestamp {
        LATEST | EARLIEST => Some(0),
        MAX_TIMESTAMP => Some(7),
        EARLIEST_LOCAL => Some(8),
        LATEST_TIERED => Some(9),
        EARLIEST_PENDING_UPLOAD => Some(11),
        _ => None,
    }
}

pub async fn handle(
    core: &Rc<Core>,
    request: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let table = core.topics();
    let mut topics = Vec::with_capacity(request.topics.len());
    let mut ops = Vec::new();
    let mut op_slots = Vec::new(); // (topic index, partition index, requested timestamp)
    for (ti, t) in request.topics.iter().enumerate() {
        let meta = table.topics().get(t.name.as_str());
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for (pi, p) in t.partitions.iter().enumerate() {
            let mut r = ListOffsetsPartitionResponse {
                partition_index: p.partition_index,
                error_code: code::NONE,
                timestamp: -1,
                offset: -1,
                leader_epoch: -1,
                ..Default::default()
            };
            match meta {
                Some(m) if p.partition_index >= 0 && p.partition_index < m.partitions => {
                    let op = if p.timestamp == MAX_TIMESTAMP {
                        PartitionOp::MaxTimestamp
                    } else if p.timestamp == LATEST && request.isolation_level == 1 {
                        PartitionOp::StableOffsets
                    } else if p.timestamp < 0 {
                        PartitionOp::Offsets
                    } else {
                        PartitionOp::OffsetForTimestamp {
                            timestamp_ms: p.timestamp,
                        }
                    };
                    if p.timestamp < 0 && min_version(p.timestamp).is_none_or(|v| version < v) {
                        r.error_code = code::UNSUPPORTED_VERSION;
                        partitions.push(r);
                        continue;
                    }
                    if matches!(p.timestamp, LATEST_TIERED | EARLIEST_PENDING_UPLOAD) {
                        partitions.push(r);
                        continue;
                    }
                    let epoch = table
                        .partition(&m.name, p.partition_index)
                        .map_or(-1, |s| s.leader_epoch);
                    op_slots.push((ti, pi, p.timestamp, epoch));
                    ops.push(Addressed {
                        topic: m.name.clone(),
                        partition: p.partition_index,
                        op,
                    });
                }
                _ => r.error_code = code::UNKNOWN_TOPIC_OR_PARTITION,
            }
            partitions.push(r);
        }
        topics.push(ListOffsetsTopicResponse {
            name: t.name.clone(),
            partitions,
            ..Default::default()
        });
    }
    let results = core.router.partitions(&core.topics(), ops).await;
    for ((ti, pi, ts, epoch), result) in op_slots.into_iter().zip(results) {
        let r = &mut topics[ti].partitions[pi];
        match result {
            PartitionOpResult::Offsets(Ok(o)) => {
                r.offset = if ts == LATEST {
                    o.high_watermark
                } else {
                    o.log_start_offset
                };
                r.leader_epoch = epoch;
            }
            PartitionOpResult::StableOffsets(Ok((_, last_stable))) => {
                r.offset = last_stable;
                r.leader_epoch = epoch;
            }
            PartitionOpResult::OffsetForTimestamp(Ok(found))
            | PartitionOpResult::MaxTimestamp(Ok(found)) => {
                if let Some((offset, timestamp)) = found {
                    r.offset = offset;
                    r.timestamp = timestamp;
                    r.leader_epoch = epoch;
                }
            }
            PartitionOpResult::Offsets(Err(e))
            | PartitionOpResult::StableOffsets(Err(e))
            | PartitionOpResult::OffsetForTimestamp(Err(e))
            | PartitionOpResult::MaxTimestamp(Err(e)) => {
                r.error_code = errors::part(e).code;
            }
            other => unreachable!("list offsets answered with {other:?}"),
        }
    }
    ListOffsetsResponse {
        topics,
        ..Default::default()
    }
}
