//! Produce: each partition's batches go to the owning core, which validates them (CRC, sizes,
//! counts), assigns offsets and appends them durably; one failure fills only that partition's
//! slot. acks=0 sends no response; if anything failed, the connection is closed instead, as
//! Kafka does, so the client learns of it.

use std::rc::Rc;

use sluice_net::messages::produce_request::PartitionProduceData;
use sluice_net::messages::produce_response::{
    BatchIndexAndErrorMessage, LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse,
    TopicProduceResponse,
};
use sluice_net::messages::{ProduceRequest, ProduceResponse};
use sluice_net::record_batch::{BatchError, Batches};
use sluice_net::{BrokerId, Records, StrBytes, TopicName};

use crate::core::Core;
use crate::errors::{self, PartAnswer, code};
use crate::image::TopicImage;
use crate::messages::{Addressed, PartitionOp, PartitionOpResult};
use crate::metadata::TopicMeta;

/// What the connection should do with a produce.
pub enum Produced {
    Respond(ProduceResponse),
    /// acks=0 and everything succeeded.
    Silent,
    /// acks=0 and something failed.
    Close(String),
}

/// Kafka's request-level check of a partition's records (`ProduceRequest.validateRecords`):
/// exactly one batch, of magic 2. A batch whose framing is broken passes here and gets
/// CORRUPT_MESSAGE from the owning core, as on Kafka.
fn one_batch_of_magic_2(records: &bytes::Bytes) -> bool {
    let mut batches = Batches::new(records.clone());
    match (batches.next(), batches.next()) {
        (Some(Ok(b)), None) => b.magic() == 2,
        (Some(Err(BatchError::BadMagic { .. })), _) => false,
        (Some(Err(_)), _) => true,
        (Some(Ok(_)), Some(_)) | (None, _) => false,
    }
}

/// Fills a partition's answer for a refused append as Kafka does: the error code, the log
/// start offset where Kafka reports one, and for refused records (`record_errors`, v8+) each
/// record's index and reason with Kafka's partition message. Kafka sends no message for any
/// other error, so the reason only goes to the debug log.
fn refused(r: &mut PartitionProduceResponse, e: PartAnswer) {
    r.error_code = e.code;
    r.log_start_offset = e.produce_log_start_offset();
    if e.record_errors.is_empty() {
        tracing::debug!(code = e.code, reason = %e.message, "produce refused");
        return;
    }
    r.record_errors = e
        .record_errors
        .into_iter()
        .map(|re| BatchIndexAndErrorMessage {
            batch_index: re.batch_index,
            batch_index_error_message: Some(StrBytes::from(re.message)),
            ..Default::default()
        })
        .collect();
    r.error_message = Some(StrBytes::from(e.message));
}

/// A produce request split into the appends to run and the answers known already.
#[derive(Default)]
struct Plan {
    /// One response entry per topic of the request, in order.
    topics: Vec<TopicProduceResponse>,
    /// One result slot per partition of the request (topic index, answer), filled now (an
    /// error) or by its append.
    slots: Vec<(usize, PartitionProduceResponse)>,
    /// The appends, with the slot and (topic, bytes) of each, for metrics.
    ops: Vec<Addressed>,
    op_slots: Vec<(usize, String, u64)>,
}

pub async fn handle(core: &Rc<Core>, request: ProduceRequest, version: i16) -> Produced {
    let acks = request.acks;
    let image = core.topics();
    // On a cluster acks=all waits for the in-sync replicas (a single node's high watermark is
    // its durable end, reached when the append returns).
    let acks_all = (acks == -1 && image.cluster().is_some()).then(|| {
        std::time::Duration::from_millis(u64::try_from(request.timeout_ms.max(0)).unwrap_or(0))
    });
    let mut plan = plan(&image, request, version, acks_all);
    let results = core.router.partitions(&image, plan.ops).await;
    let mut any_error = plan.slots.iter().any(|(_, r)| r.error_code != code::NONE);
    for ((slot, topic, bytes), result) in plan.op_slots.into_iter().zip(results) {
        let r = &mut plan.slots[slot].1;
        match result {
            PartitionOpResult::Appended(Ok(info)) => {
                let records = u64::try_from(info.last_offset - info.base_offset + 1).unwrap_or(0);
                core.metrics.produced(&topic, bytes, records);
                r.base_offset = info.base_offset;
                r.log_append_time_ms = info.log_append_time_ms;
                r.log_start_offset = info.log_start_offset;
            }
            PartitionOpResult::Appended(Err(e)) => {
                any_error = true;
                refused(r, errors::part(e));
            }
            other => unreachable!("append answered with {other:?}"),
        }
    }
    if acks == 0 {
        return if any_error {
            Produced::Close("acks=0 produce failed".into())
        } else {
            Produced::Silent
        };
    }
    for (ti, r) in plan.slots {
        plan.topics[ti].partition_responses.push(r);
    }
    let node_endpoints = name_leaders(core, &image, &mut plan.topics);
    Produced::Respond(ProduceResponse {
        responses: plan.topics,
        node_endpoints,
        ..Default::default()
    })
}

/// KIP-951: each NOT_LEADER_OR_FOLLOWER partition gets the current leader and epoch, and the
/// answer the endpoints of the leaders named.
fn name_leaders(
    core: &Core,
    image: &TopicImage,
    topics: &mut [TopicProduceResponse],
) -> Vec<NodeEndpoint> {
    let mut leaders = super::leaders::Leaders::new(image);
    for t in topics.iter_mut() {
        let name = if t.name.is_empty() {
            leaders.name_of(&t.topic_id.0).unwrap_or_default()
        } else {
            t.name.to_string()
        };
        for p in &mut t.partition_responses {
            if p.error_code != code::NOT_LEADER_OR_FOLLOWER {
                continue;
            }
            if let Some((leader, epoch)) = leaders.of(&name, p.index) {
                p.current_leader = LeaderIdAndEpoch {
                    leader_id: BrokerId(leader),
                    leader_epoch: epoch,
                    ..Default::default()
                };
            }
        }
    }
    leaders
        .endpoints(core)
        .into_iter()
        .map(|b| NodeEndpoint {
            node_id: BrokerId(b.id),
            host: b.host.into(),
            port: b.port,
            rack: b.rack.map(Into::into),
            ..Default::default()
        })
        .collect()
}

/// Checks each partition of the request against the image and the request's shape: an
/// append for each one that passes, an answer for each one that does not.
fn plan(
    table: &TopicImage,
    request: ProduceRequest,
    version: i16,
    acks_all: Option<std::time::Duration>,
) -> Plan {
    let acks_valid = matches!(request.acks, -1..=1);
    let mut plan = Plan::default();
    for (ti, t) in request.topic_data.into_iter().enumerate() {
        let meta = if version >= 13 {
            table.by_id(&t.topic_id.0)
        } else {
            table.topics().get(t.name.as_str())
        };
        plan.topics.push(TopicProduceResponse {
            name: if version >= 13 {
                TopicName::default()
            } else {
                t.name.clone()
            },
            topic_id: t.topic_id,
            partition_responses: Vec::new(),
            ..Default::default()
        });
        for p in t.partition_data {
            let mut r = PartitionProduceResponse {
                index: p.index,
                error_code: code::NONE,
                base_offset: -1,
                log_append_time_ms: -1,
                log_start_offset: -1,
                ..Default::default()
            };
            match (refusal(acks_valid, meta, &p, version), meta) {
                (Some((error, reason)), _) => {
                    tracing::debug!(code = error, reason, "produce refused");
                    r.error_code = error;
                }
                (None, Some(m)) => {
                    let bytes = p.records.as_ref().map_or(0, |r| r.len() as u64);
                    plan.op_slots
                        .push((plan.slots.len(), m.name.clone(), bytes));
                    plan.ops.push(Addressed {
                        topic: m.name.clone(),
                        partition: p.index,
                        op: PartitionOp::Append {
                            records: p.records.map(Records::into_bytes).unwrap_or_default(),
                            acks_all,
                        },
                    });
                }
                (None, None) => unreachable!("a missing topic is refused"),
            }
            plan.slots.push((ti, r));
        }
    }
    plan
}

/// Why a partition's data is refused before any append, as Kafka answers it; `None` to append.
fn refusal(
    acks_valid: bool,
    meta: Option<&TopicMeta>,
    p: &PartitionProduceData,
    version: i16,
) -> Option<(i16, &'static str)> {
    if !acks_valid {
        Some((code::INVALID_REQUIRED_ACKS, "Invalid required acks"))
    } else if meta.is_none_or(|m| p.index < 0 || p.index >= m.partitions) {
        Some((
            if version >= 13 {
                code::UNKNOWN_TOPIC_ID
            } else {
                code::UNKNOWN_TOPIC_OR_PARTITION
            },
            "This server does not host this topic-partition.",
        ))
    } else if meta.is_some_and(|m| super::metadata::is_internal(&m.name)) {
        // Only the coordinator writes its internal topic, as in Kafka.
        Some((
            code::INVALID_TOPIC_EXCEPTION,
            "Cannot append to internal topic",
        ))
    } else if !p
        .records
        .as_ref()
        .is_some_and(|r| one_batch_of_magic_2(&r.to_bytes()))
    {
        Some((
            code::INVALID_RECORD,
            "a partition's records must be exactly one batch of magic 2",
        ))
    } else {
        None
    }
}
