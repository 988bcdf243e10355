//! ListOffsets: earliest (-2), latest (-1), earliest-local (-4), or the first offset at or
//! after a timestamp. With no transactions the last stable offset is the high watermark, so
//! both isolation levels answer the same.

use std::rc::Rc;

use sluice_net::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use sluice_net::messages::{ListOffsetsRequest, ListOffsetsResponse};

use crate::core::Core;
use crate::errors::code;
use crate::partitions::{self, Addressed, PartitionOp, PartitionOpResult};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;

pub async fn handle(
    core: &Rc<Core>,
    request: ListOffsetsRequest,
    _version: i16,
) -> ListOffsetsResponse {
    let table = core.topics();
    let mut topics = Vec::with_capacity(request.topics.len());
    let mut ops = Vec::new();
    let mut op_slots = Vec::new(); // (topic index, partition index, requested timestamp)
    for (ti, t) in request.topics.iter().enumerate() {
        let meta = table.topics.get(t.name.as_str());
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
                    } else if p.timestamp < 0 {
                        PartitionOp::Offsets
                    } else {
                        PartitionOp::OffsetForTimestamp {
                            timestamp_ms: p.timestamp,
                        }
                    };
                    if p.timestamp < 0
                        && ![LATEST, EARLIEST, MAX_TIMESTAMP, EARLIEST_LOCAL].contains(&p.timestamp)
                    {
                        // Special timestamps sluice does not implement are not advertised;
                        // an old client sending one gets Kafka's "no such offset" answer.
                        partitions.push(r);
                        continue;
                    }
                    op_slots.push((ti, pi, p.timestamp));
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
    let results = partitions::run(core, ops).await;
    for ((ti, pi, ts), result) in op_slots.into_iter().zip(results) {
        let r = &mut topics[ti].partitions[pi];
        match result {
            PartitionOpResult::Offsets(Ok(o)) => {
                r.offset = if ts == LATEST {
                    o.high_watermark
                } else {
                    o.log_start_offset
                };
                r.leader_epoch = 0;
            }
            PartitionOpResult::OffsetForTimestamp(Ok(found))
            | PartitionOpResult::MaxTimestamp(Ok(found)) => {
                if let Some((offset, timestamp)) = found {
                    r.offset = offset;
                    r.timestamp = timestamp;
                    r.leader_epoch = 0;
                }
            }
            PartitionOpResult::Offsets(Err(e))
            | PartitionOpResult::OffsetForTimestamp(Err(e))
            | PartitionOpResult::MaxTimestamp(Err(e)) => {
                r.error_code = e.code;
            }
            other => unreachable!("list offsets answered with {other:?}"),
        }
    }
    ListOffsetsResponse {
        topics,
        ..Default::default()
    }
}
