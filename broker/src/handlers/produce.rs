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
use sluice_net::{BrokerId, ErrorCode, Records, StrBytes, TopicName};
use sluice_txn::TopicPartition;

use crate::core::Core;
use crate::errors::{self, PartAnswer, code};
use crate::image::TopicImage;
use crate::messages::{Addressed, PartitionOp, PartitionOpResult, TxnAppend};
use crate::metadata::TopicMeta;
use crate::txn::verify;

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

/// The producer id and epoch of a partition's records if they are a transactional batch
/// (bit 4 of the attributes), with the batch's first sequence.
fn transactional_producer(records: &bytes::Bytes) -> Option<((i64, i16), i32)> {
    Batches::new(records.clone())
        .next()
        .and_then(Result::ok)
        .filter(|b| b.is_transactional())
        .map(|b| ((b.producer_id(), b.producer_epoch()), b.base_sequence()))
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
    /// The appends, and for each its slot, topic, partition and records.
    ops: Vec<Addressed>,
    op_slots: Vec<OpSlot>,
    /// The (producer id, epoch) of each transactional batch.
    transactional: std::collections::BTreeSet<(i64, i16)>,
}

/// Where an append's answer goes, and what it appends (its size for metrics; transactional
/// records are kept for the append after their verification).
struct OpSlot {
    slot: usize,
    topic: String,
    partition: i32,
    bytes: u64,
    records: Option<bytes::Bytes>,
}

/// An append's outcome: the partition's answer, or the coordinator's refusal to confirm the
/// partition is in the producer's transaction (KIP-890; code and Kafka's message).
enum Outcome {
    Op(PartitionOpResult),
    Unverified(i16, Option<String>),
}

pub async fn handle(core: &Rc<Core>, request: ProduceRequest, version: i16) -> Produced {
    let acks = request.acks;
    let transactional_id = request.transactional_id.as_ref().map(ToString::to_string);
    let image = core.topics();
    // On a cluster acks=all waits for the in-sync replicas (a single node's high watermark is
    // its durable end, reached when the append returns).
    let acks_all = (acks == -1 && image.cluster().is_some()).then(|| {
        std::time::Duration::from_millis(u64::try_from(request.timeout_ms.max(0)).unwrap_or(0))
    });
    let mut plan = plan(&image, request, version, acks_all);
    if !plan.transactional.is_empty() && transactional_id.is_none() {
        // Kafka refuses the whole request: transactional records need a transactional id.
        refuse_all(&mut plan, code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED, None);
        return respond(core, &image, plan, acks, true);
    }
    if plan.transactional.len() > 1 {
        let message = "Transactional records contained more than one producer ID";
        refuse_all(&mut plan, code::INVALID_PRODUCER_ID_MAPPING, Some(message));
        return respond(core, &image, plan, acks, true);
    }
    let results = core
        .router
        .partitions(&image, std::mem::take(&mut plan.ops))
        .await;
    let txn = Txn {
        transactional_id: transactional_id.as_deref(),
        version,
        acks_all,
    };
    let outcomes = verify_and_append(core, &plan.op_slots, results, &txn).await;
    let mut any_error = plan.slots.iter().any(|(_, r)| r.error_code != code::NONE);
    for (op, outcome) in plan.op_slots.iter().zip(outcomes) {
        let r = &mut plan.slots[op.slot].1;
        match outcome {
            Outcome::Op(PartitionOpResult::Appended(Ok(info))) => {
                let records = u64::try_from(info.last_offset - info.base_offset + 1).unwrap_or(0);
                core.metrics.produced(&op.topic, op.bytes, records);
                r.base_offset = info.base_offset;
                r.log_append_time_ms = info.log_append_time_ms;
                r.log_start_offset = info.log_start_offset;
            }
            Outcome::Op(PartitionOpResult::Appended(Err(e))) => {
                any_error = true;
                refused(r, errors::part(e));
            }
            Outcome::Unverified(code, message) => {
                any_error = true;
                r.error_code = code;
                r.error_message = message.map(StrBytes::from);
            }
            Outcome::Op(other) => unreachable!("append answered with {other:?}"),
        }
    }
    respond(core, &image, plan, acks, any_error)
}

/// The answer to send, once every slot is filled.
fn respond(
    core: &Core,
    image: &TopicImage,
    mut plan: Plan,
    acks: i16,
    any_error: bool,
) -> Produced {
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
    let node_endpoints = name_leaders(core, image, &mut plan.topics);
    Produced::Respond(ProduceResponse {
        responses: plan.topics,
        node_endpoints,
        ..Default::default()
    })
}

/// Refuses every partition of the request with `error` (and Kafka's `message`): nothing is
/// appended.
fn refuse_all(plan: &mut Plan, error: i16, message: Option<&str>) {
    for (_, r) in &mut plan.slots {
        r.error_code = error;
        r.error_message = message.map(StrBytes::from);
    }
}

/// The request's transactional context.
struct Txn<'a> {
    transactional_id: Option<&'a str>,
    version: i16,
    acks_all: Option<std::time::Duration>,
}

/// KIP-890: the appends the owning cores held back because their batch would open a
/// transaction are confirmed with the transaction coordinator (verified, or added to the
/// transaction for a producer of transaction version 2: Produce v12+), then appended with
/// their guard. The other outcomes pass through.
async fn verify_and_append(
    core: &Rc<Core>,
    op_slots: &[OpSlot],
    results: Vec<PartitionOpResult>,
    txn: &Txn<'_>,
) -> Vec<Outcome> {
    let mut outcomes: Vec<Outcome> = results.into_iter().map(Outcome::Op).collect();
    // (index, guard, leader epoch); the request has one producer (checked in `handle`).
    let mut producer = None;
    let held: Vec<(usize, u64, Option<i32>)> = outcomes
        .iter()
        .enumerate()
        .filter_map(|(i, o)| match o {
            Outcome::Op(PartitionOpResult::Verify {
                guard,
                producer_id,
                producer_epoch,
                leader_epoch,
            }) => {
                producer = Some((*producer_id, *producer_epoch));
                Some((i, *guard, *leader_epoch))
            }
            _ => None,
        })
        .collect();
    let (Some((producer_id, producer_epoch)), Some(transactional_id)) =
        (producer, txn.transactional_id)
    else {
        return outcomes;
    };
    let partitions: Vec<TopicPartition> = held
        .iter()
        .map(|&(i, ..)| TopicPartition::new(op_slots[i].topic.as_str(), op_slots[i].partition))
        .collect();
    let who = verify::Producer {
        transactional_id,
        producer_id,
        producer_epoch,
    };
    let ask = if txn.version >= 12 {
        verify::Ask::Add
    } else {
        verify::Ask::Verify
    };
    let codes = verify::ask_patiently(core, &who, &partitions, ask).await;
    let mut again = Vec::new();
    let mut again_at = Vec::new();
    for (&(i, guard, leader_epoch), (_, code)) in held.iter().zip(codes) {
        if code == ErrorCode::NONE {
            again_at.push(i);
            again.push(Addressed {
                topic: op_slots[i].topic.clone(),
                partition: op_slots[i].partition,
                op: PartitionOp::Append {
                    records: op_slots[i].records.clone().unwrap_or_default(),
                    acks_all: txn.acks_all,
                    txn: TxnAppend::Verified {
                        guard: Some(guard),
                        leader_epoch,
                    },
                },
            });
        } else {
            let (code, message) = unverified(code, txn.version);
            outcomes[i] = Outcome::Unverified(code, message);
        }
    }
    // The image now: leadership may have moved while the coordinator was asked.
    let appended = core.router.partitions(&core.topics(), again).await;
    for (i, result) in again_at.into_iter().zip(appended) {
        outcomes[i] = Outcome::Op(result);
    }
    outcomes
}

/// How Kafka 4.4 answers a Produce whose partition the coordinator did not confirm
/// (`AddPartitionsToTxnManager` then `ReplicaManager`): a fenced producer gets
/// INVALID_PRODUCER_EPOCH; TRANSACTION_ABORTABLE only reaches clients that know it (Produce
/// v11+), older ones get INVALID_TXN_STATE; errors that older clients may not retry become
/// NOT_ENOUGH_REPLICAS, which they do (CONCURRENT_TRANSACTIONS too, below v12).
fn unverified(code: ErrorCode, version: i16) -> (i16, Option<String>) {
    let code = match code {
        ErrorCode::PRODUCER_FENCED => ErrorCode::INVALID_PRODUCER_EPOCH,
        ErrorCode::TRANSACTION_ABORTABLE if version <= 10 => ErrorCode::INVALID_TXN_STATE,
        other => other,
    };
    let retriable = matches!(
        code,
        ErrorCode::NETWORK_EXCEPTION
            | ErrorCode::COORDINATOR_LOAD_IN_PROGRESS
            | ErrorCode::COORDINATOR_NOT_AVAILABLE
            | ErrorCode::NOT_COORDINATOR
    ) || (code == ErrorCode::CONCURRENT_TRANSACTIONS && version <= 11);
    if retriable {
        let message = format!(
            "Unable to verify the partition has been added to the transaction. \
             Underlying error: {}",
            code.name()
        );
        return (code::NOT_ENOUGH_REPLICAS, Some(message));
    }
    if code == ErrorCode::INVALID_TXN_STATE {
        let message = "Partition was not added to the transaction".to_owned();
        return (code.code(), Some(message));
    }
    (code.code(), None)
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
                    let records = p.records.map(Records::into_bytes).unwrap_or_default();
                    let first = transactional_producer(&records);
                    let producer = first.map(|(p, _)| p);
                    plan.transactional.extend(producer);
                    plan.op_slots.push(OpSlot {
                        slot: plan.slots.len(),
                        topic: m.name.clone(),
                        partition: p.index,
                        bytes: records.len() as u64,
                        records: producer.map(|_| records.clone()),
                    });
                    plan.ops.push(Addressed {
                        topic: m.name.clone(),
                        partition: p.index,
                        op: PartitionOp::Append {
                            records,
                            acks_all,
                            txn: TxnAppend::Start {
                                producer,
                                first_sequence: first.map_or(-1, |(_, s)| s),
                                epoch_bump: version >= 12,
                            },
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
