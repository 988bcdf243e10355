//! The transaction APIs (issue 23): InitProducerId with a transactional id,
//! AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, TxnOffsetCommit (to the group coordinator),
//! DescribeTransactions, ListTransactions, and WriteTxnMarkers from other brokers'
//! coordinators.
//!
//! Each request for a transactional id becomes a [`TxnCall`] answered by the core that
//! coordinates the id (`crate::txn`); the broker-side checks Kafka's `KafkaApis` makes before
//! asking its coordinator (topics that do not exist, the OPERATION_NOT_ATTEMPTED of the other
//! partitions) are made here. Error codes go through `sluice_txn::error_for_version`, which
//! turns PRODUCER_FENCED into INVALID_PRODUCER_EPOCH for versions that predate it.

use std::collections::BTreeMap;
use std::rc::Rc;

use sluice_net::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use sluice_net::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use sluice_net::messages::describe_transactions_response::{TopicData, TransactionState};
use sluice_net::messages::list_transactions_response::TransactionState as Listed;
use sluice_net::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use sluice_net::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use sluice_net::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, DescribeTransactionsRequest, DescribeTransactionsResponse,
    EndTxnRequest, EndTxnResponse, InitProducerIdRequest, InitProducerIdResponse,
    ListTransactionsRequest, ListTransactionsResponse, TxnOffsetCommitRequest,
    TxnOffsetCommitResponse, WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};
use sluice_net::{ErrorCode, ProducerId};
use sluice_shard::Marker;
use sluice_txn::{
    AddOffsets, AddPartitions, Answer, EndTxn, InitProducerId, TopicPartition, TxnApi, TxnResult,
    TxnVersion, error_for_version,
};

use crate::core::Core;
use crate::errors::code;
use crate::groups::{CommitEntry, GroupCall, GroupReply};
use crate::messages::{Addressed, CoreReply, CoreRequest, PartitionOp, PartitionOpResult};
use crate::txn::{self, TxnCall, TxnReply, verify};

/// InitProducerId with a transactional id.
pub async fn init_producer_id(
    core: &Rc<Core>,
    request: &InitProducerIdRequest,
    version: i16,
    r: &mut InitProducerIdResponse,
) {
    let id = request
        .transactional_id
        .as_ref()
        .map(|t| t.to_string())
        .unwrap_or_default();
    let call = TxnCall::Init(InitProducerId {
        transactional_id: id.clone(),
        timeout_ms: request.transaction_timeout_ms,
        producer_id: request.producer_id.0,
        producer_epoch: request.producer_epoch,
        enable_two_phase_commit: request.enable2_pc,
        keep_prepared_txn: request.keep_prepared_txn,
    });
    let (error, producer) = producer_answer(&txn::call(core, &id, true, call).await);
    if let Some((producer_id, producer_epoch)) = producer {
        r.producer_id = ProducerId(producer_id);
        r.producer_epoch = producer_epoch;
    }
    r.error_code = error_for_version(TxnApi::InitProducerId, version, error).code();
}

/// The code of an InitProducerId or EndTxn answer, with the producer id and epoch it carries
/// (`None` when the call did not reach the coordinator).
fn producer_answer(reply: &TxnReply) -> (ErrorCode, Option<(i64, i16)>) {
    match reply {
        TxnReply::Answer(
            Answer::InitProducerId {
                error,
                producer_id,
                producer_epoch,
            }
            | Answer::EndTxn {
                error,
                producer_id,
                producer_epoch,
            },
        ) => (*error, Some((*producer_id, *producer_epoch))),
        TxnReply::Failed(e) => (*e, None),
        other => (unexpected(other), None),
    }
}

fn unexpected(reply: &TxnReply) -> ErrorCode {
    tracing::error!(?reply, "the transaction coordinator answered another call");
    ErrorCode::UNKNOWN_SERVER_ERROR
}

/// The code of an answer to an add or an end.
fn answer_code(reply: &TxnReply) -> ErrorCode {
    match reply {
        TxnReply::Answer(Answer::AddPartitions { error } | Answer::AddOffsets { error }) => *error,
        TxnReply::Failed(e) => *e,
        other => unexpected(other),
    }
}

/// Kafka's broker-side check of the partitions to add: those that do not exist here get
/// UNKNOWN_TOPIC_OR_PARTITION; if any does, the others get OPERATION_NOT_ATTEMPTED.
fn unknown_partitions(
    core: &Core,
    topics: &[AddPartitionsToTxnTopic],
) -> Option<Vec<(String, i32, ErrorCode)>> {
    let image = core.topics();
    let all: Vec<(String, i32, bool)> = topics
        .iter()
        .flat_map(|t| {
            let known = image.topics().get(t.name.as_str()).map(|m| m.partitions);
            t.partitions.iter().map(move |&p| {
                let exists = known.is_some_and(|n| p >= 0 && p < n);
                (t.name.to_string(), p, exists)
            })
        })
        .collect();
    if all.iter().all(|(_, _, exists)| *exists) {
        return None;
    }
    Some(
        all.into_iter()
            .map(|(t, p, exists)| {
                let code = if exists {
                    ErrorCode::OPERATION_NOT_ATTEMPTED
                } else {
                    ErrorCode::UNKNOWN_TOPIC_OR_PARTITION
                };
                (t, p, code)
            })
            .collect(),
    )
}

/// Per-topic results with one code per partition.
fn topic_results(codes: Vec<(String, i32, ErrorCode)>) -> Vec<AddPartitionsToTxnTopicResult> {
    let mut by_topic: BTreeMap<String, Vec<AddPartitionsToTxnPartitionResult>> = BTreeMap::new();
    for (topic, partition, code) in codes {
        by_topic
            .entry(topic)
            .or_default()
            .push(AddPartitionsToTxnPartitionResult {
                partition_index: partition,
                partition_error_code: code.code(),
                ..Default::default()
            });
    }
    by_topic
        .into_iter()
        .map(
            |(name, results_by_partition)| AddPartitionsToTxnTopicResult {
                name: name.into(),
                results_by_partition,
                ..Default::default()
            },
        )
        .collect()
}

fn partitions_of(topics: &[AddPartitionsToTxnTopic]) -> Vec<TopicPartition> {
    topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |&p| TopicPartition::new(t.name.as_str(), p))
        })
        .collect()
}

/// One transaction's AddPartitionsToTxn: its per-partition codes.
async fn add_one(
    core: &Rc<Core>,
    transactional_id: String,
    producer_id: i64,
    producer_epoch: i16,
    topics: &[AddPartitionsToTxnTopic],
    (version, verify_only): (i16, bool),
) -> Vec<(String, i32, ErrorCode)> {
    if let Some(codes) = unknown_partitions(core, topics) {
        return codes;
    }
    let partitions = partitions_of(topics);
    let triples = |codes: Vec<(TopicPartition, ErrorCode)>| {
        codes
            .into_iter()
            .map(|(tp, code)| (tp.topic, tp.partition, code))
            .collect()
    };
    if version > 3 {
        // The broker form (KIP-890): verify, or add for a transaction version 2 client.
        let who = verify::Producer {
            transactional_id: &transactional_id,
            producer_id,
            producer_epoch,
        };
        let what = if verify_only {
            verify::Ask::Verify
        } else {
            verify::Ask::Add
        };
        let mut codes = verify::local(core, &who, &partitions, what).await;
        if !verify_only {
            for (_, code) in &mut codes {
                *code = error_for_version(TxnApi::AddPartitionsToTxn, version, *code);
            }
        }
        return triples(codes);
    }
    let id = transactional_id.clone();
    let call = TxnCall::Add(AddPartitions {
        transactional_id,
        producer_id,
        producer_epoch,
        partitions: partitions.clone(),
        client_version: TxnVersion::for_add_partitions(version),
    });
    let code = error_for_version(
        TxnApi::AddPartitionsToTxn,
        version,
        answer_code(&txn::call(core, &id, false, call).await),
    );
    triples(partitions.iter().map(|tp| (tp.clone(), code)).collect())
}

pub async fn add_partitions_to_txn(
    core: &Rc<Core>,
    request: AddPartitionsToTxnRequest,
    version: i16,
) -> AddPartitionsToTxnResponse {
    let mut r = AddPartitionsToTxnResponse::default();
    if version <= 3 {
        let codes = add_one(
            core,
            request.v3_and_below_transactional_id.to_string(),
            request.v3_and_below_producer_id.0,
            request.v3_and_below_producer_epoch,
            &request.v3_and_below_topics,
            (version, false),
        )
        .await;
        r.results_by_topic_v3_and_below = topic_results(codes);
        return r;
    }
    for t in request.transactions {
        let codes = add_one(
            core,
            t.transactional_id.to_string(),
            t.producer_id.0,
            t.producer_epoch,
            &t.topics,
            (version, t.verify_only),
        )
        .await;
        r.results_by_transaction.push(AddPartitionsToTxnResult {
            transactional_id: t.transactional_id,
            topic_results: topic_results(codes),
            ..Default::default()
        });
    }
    r
}

pub async fn add_offsets_to_txn(
    core: &Rc<Core>,
    request: AddOffsetsToTxnRequest,
    version: i16,
) -> AddOffsetsToTxnResponse {
    let id = request.transactional_id.to_string();
    let offsets_partitions = core
        .topics()
        .topics()
        .get(crate::groups::OFFSETS_TOPIC)
        .map_or(core.config.offsets_topic_partitions, |t| t.partitions);
    let call = TxnCall::AddOffsets(AddOffsets {
        transactional_id: id.clone(),
        producer_id: request.producer_id.0,
        producer_epoch: request.producer_epoch,
        offsets_partition: crate::groups::partition_for(
            request.group_id.as_str(),
            offsets_partitions,
        ),
    });
    let code = answer_code(&txn::call(core, &id, false, call).await);
    AddOffsetsToTxnResponse {
        error_code: error_for_version(TxnApi::AddOffsetsToTxn, version, code).code(),
        ..Default::default()
    }
}

pub async fn end_txn(core: &Rc<Core>, request: EndTxnRequest, version: i16) -> EndTxnResponse {
    let id = request.transactional_id.to_string();
    let call = TxnCall::End(EndTxn {
        transactional_id: id.clone(),
        producer_id: request.producer_id.0,
        producer_epoch: request.producer_epoch,
        result: if request.committed {
            TxnResult::Commit
        } else {
            TxnResult::Abort
        },
        client_version: TxnVersion::for_end_txn(version),
    });
    let mut r = EndTxnResponse {
        producer_id: ProducerId(-1),
        producer_epoch: -1,
        ..Default::default()
    };
    let (code, producer) = producer_answer(&txn::call(core, &id, false, call).await);
    if let Some((producer_id, producer_epoch)) = producer {
        r.producer_id = ProducerId(producer_id);
        r.producer_epoch = producer_epoch;
    }
    r.error_code = error_for_version(TxnApi::EndTxn, version, code).code();
    r
}

pub async fn describe_transactions(
    core: &Rc<Core>,
    request: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let mut r = DescribeTransactionsResponse::default();
    for id in request.transactional_ids {
        let mut state = TransactionState {
            transactional_id: id.clone(),
            transaction_state: "".into(),
            producer_id: ProducerId(-1),
            producer_epoch: -1,
            transaction_start_time_ms: -1,
            ..Default::default()
        };
        match txn::call(core, id.as_str(), false, TxnCall::Describe(id.to_string())).await {
            TxnReply::Described(d) => {
                state.error_code = d.error.code();
                state.transaction_state = d.state.into();
                state.transaction_timeout_ms = d.timeout_ms;
                state.transaction_start_time_ms = d.start_ms;
                state.producer_id = ProducerId(d.producer_id);
                state.producer_epoch = d.producer_epoch;
                state.topics = d
                    .topics
                    .into_iter()
                    .map(|(topic, partitions)| TopicData {
                        topic: topic.into(),
                        partitions,
                        ..Default::default()
                    })
                    .collect();
            }
            TxnReply::Failed(e) => state.error_code = e.code(),
            other => state.error_code = unexpected(&other).code(),
        }
        r.transaction_states.push(state);
    }
    r
}

/// ListTransactions: every core's coordinator lists the ids of the partitions it leads.
pub async fn list_transactions(
    core: &Rc<Core>,
    request: ListTransactionsRequest,
) -> ListTransactionsResponse {
    let mut r = ListTransactionsResponse::default();
    let states: Vec<String> = request
        .state_filters
        .iter()
        .map(|s| s.to_string())
        .collect();
    let producer_ids: Vec<i64> = request.producer_id_filters.iter().map(|p| p.0).collect();
    let pattern = request
        .transactional_id_pattern
        .as_ref()
        .map(|p| p.to_string());
    if let Err(e) = txn::calls::id_pattern(pattern.as_deref()) {
        r.error_code = e.code();
        return r;
    }
    let mut unknown = None;
    for owner in 0..core.router.cores() {
        let call = TxnCall::List {
            states: states.clone(),
            producer_ids: producer_ids.clone(),
            duration_ms: request.duration_filter,
            pattern: pattern.clone(),
        };
        let request = CoreRequest::Txn {
            partition: -1,
            call,
        };
        let listed = match core.router.call(owner, request).await {
            Ok(CoreReply::Txn(TxnReply::Listed(l))) => l,
            _ => continue,
        };
        if listed.error != ErrorCode::NONE {
            r.error_code = listed.error.code();
        }
        unknown.get_or_insert(listed.unknown_state_filters);
        r.transaction_states
            .extend(listed.transactions.into_iter().map(|t| Listed {
                transactional_id: t.transactional_id.into(),
                producer_id: ProducerId(t.producer_id),
                transaction_state: t.state.into(),
                ..Default::default()
            }));
    }
    r.unknown_state_filters = unknown
        .unwrap_or_default()
        .into_iter()
        .map(Into::into)
        .collect();
    r
}

/// WriteTxnMarkers from a transaction coordinator: each marker to the partitions this broker
/// leads (NOT_LEADER_OR_FOLLOWER for the others, UNKNOWN_TOPIC_OR_PARTITION for unknown ones).
pub async fn write_txn_markers(
    core: &Rc<Core>,
    request: WriteTxnMarkersRequest,
) -> WriteTxnMarkersResponse {
    let image = core.topics();
    let mut r = WriteTxnMarkersResponse::default();
    for m in request.markers {
        let marker = Marker {
            commit: m.transaction_result,
            coordinator_epoch: m.coordinator_epoch,
        };
        let mut ops = Vec::new();
        for t in &m.topics {
            for &p in &t.partition_indexes {
                ops.push(Addressed {
                    topic: t.name.to_string(),
                    partition: p,
                    op: PartitionOp::WriteMarker {
                        producer_id: m.producer_id.0,
                        producer_epoch: m.producer_epoch,
                        marker,
                        transaction_version: m.transaction_version,
                    },
                });
            }
        }
        let results = core.router.partitions(&image, ops).await;
        let written: Vec<i32> = m
            .topics
            .iter()
            .flat_map(|t| {
                t.partition_indexes
                    .iter()
                    .map(move |&p| (t.name.as_str(), p))
            })
            .zip(&results)
            .filter(|((t, _), r)| {
                *t == crate::groups::OFFSETS_TOPIC
                    && matches!(r, PartitionOpResult::MarkerWritten(Ok(_)))
            })
            .map(|((_, p), _)| p)
            .collect();
        let settled = (m.producer_id.0, marker.commit);
        crate::txn::markers::settle_offsets(&core.router, &image, &written, settled).await;
        let mut answers = results.into_iter();
        let topics = m
            .topics
            .iter()
            .map(|t| WritableTxnMarkerTopicResult {
                name: t.name.clone(),
                partitions: t
                    .partition_indexes
                    .iter()
                    .map(|&p| WritableTxnMarkerPartitionResult {
                        partition_index: p,
                        error_code: match answers.next() {
                            Some(PartitionOpResult::MarkerWritten(Ok(_))) => 0,
                            Some(PartitionOpResult::MarkerWritten(Err(e))) => {
                                crate::errors::part(e).code
                            }
                            _ => ErrorCode::UNKNOWN_SERVER_ERROR.code(),
                        },
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
            .collect();
        r.markers.push(WritableTxnMarkerResult {
            producer_id: m.producer_id,
            topics,
            ..Default::default()
        });
    }
    r
}

/// TxnOffsetCommit: the group's coordinator keeps the offsets pending in the producer's
/// transaction until its marker reaches the group's `__consumer_offsets` partition.
/// KIP-890 for TxnOffsetCommit: the group's `__consumer_offsets` partition (`partition`) must
/// be in the producer's transaction; v5+ (transaction version 2, which sends no
/// AddOffsetsToTxn) adds it. The error for every partition, as Kafka's group coordinator
/// maps it (`CoordinatorOperationExceptionHelper`), if it is not.
async fn offsets_in_transaction(
    core: &Rc<Core>,
    request: &TxnOffsetCommitRequest,
    partition: i32,
    version: i16,
) -> Result<(), i16> {
    let who = verify::Producer {
        transactional_id: request.transactional_id.as_str(),
        producer_id: request.producer_id.0,
        producer_epoch: request.producer_epoch,
    };
    let what = if version >= 5 {
        verify::Ask::Add
    } else {
        verify::Ask::Verify
    };
    let tp = TopicPartition::new(crate::groups::OFFSETS_TOPIC, partition);
    let code = verify::ask(core, &who, &[tp], what)
        .await
        .pop()
        .map_or(ErrorCode::UNKNOWN_SERVER_ERROR, |(_, c)| c);
    let code = match code {
        ErrorCode::NONE => return Ok(()),
        ErrorCode::PRODUCER_FENCED => ErrorCode::INVALID_PRODUCER_EPOCH,
        ErrorCode::TRANSACTION_ABORTABLE if version <= 3 => ErrorCode::INVALID_TXN_STATE,
        ErrorCode::NETWORK_EXCEPTION => ErrorCode::COORDINATOR_LOAD_IN_PROGRESS,
        ErrorCode::UNKNOWN_TOPIC_OR_PARTITION
        | ErrorCode::NOT_ENOUGH_REPLICAS
        | ErrorCode::REQUEST_TIMED_OUT => ErrorCode::COORDINATOR_NOT_AVAILABLE,
        ErrorCode::NOT_LEADER_OR_FOLLOWER | ErrorCode::KAFKA_STORAGE_ERROR => {
            ErrorCode::NOT_COORDINATOR
        }
        other => other,
    };
    Err(code.code())
}

pub async fn txn_offset_commit(
    core: &Rc<Core>,
    request: TxnOffsetCommitRequest,
    version: i16,
) -> TxnOffsetCommitResponse {
    // v6 names topics by id: an unknown id is answered UNKNOWN_TOPIC_ID before the
    // coordinator is asked, as OffsetCommit v10.
    let names = super::groups::topic_names(
        core,
        version >= 6,
        request.topics.iter().map(|t| (&t.name, &t.topic_id)),
    );
    let topics = request.topics.iter().map(|t| &t.partitions[..]);
    let entries = super::groups::named_entries(topics, &names, |name, p| {
        let at = (p.committed_offset, p.committed_leader_epoch);
        CommitEntry::new(name, p.partition_index, at, p.committed_metadata.as_ref())
    });
    if entries.is_empty() && !request.topics.is_empty() {
        return txn_offset_commit_answer(&request, &names, &Ok(Vec::new()));
    }
    let group = request.group_id.to_string();
    let codes = match super::groups::coordinator(core, &group, true).await {
        Err(e) => Err(e),
        Ok((partition, target)) => {
            if let Err(e) = offsets_in_transaction(core, &request, partition, version).await {
                return txn_offset_commit_answer(&request, &names, &Err(e));
            }
            let call = GroupCall::TxnCommit {
                partition,
                group,
                producer: (request.producer_id.0, request.producer_epoch),
                member_id: request.member_id.to_string(),
                instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
                generation: request.generation_id_or_member_epoch,
                offsets: entries,
            };
            match super::groups::route(core, target, call).await {
                Some(GroupReply::Commit(r)) => r,
                _ => Err(ErrorCode::COORDINATOR_NOT_AVAILABLE.code()),
            }
        }
    };
    txn_offset_commit_answer(&request, &names, &codes)
}

/// TxnOffsetCommit's answer: UNKNOWN_TOPIC_ID for the topics `names` could not name, and for
/// the others each partition's code in order, or one error for all.
fn txn_offset_commit_answer(
    request: &TxnOffsetCommitRequest,
    names: &[Option<String>],
    codes: &Result<Vec<i16>, i16>,
) -> TxnOffsetCommitResponse {
    let mut next = codes.as_ref().ok().map(|c| c.iter().copied());
    let topics = request
        .topics
        .iter()
        .zip(names)
        .map(|(t, name)| TxnOffsetCommitResponseTopic {
            name: t.name.clone(),
            topic_id: t.topic_id,
            partitions: t
                .partitions
                .iter()
                .map(|p| TxnOffsetCommitResponsePartition {
                    partition_index: p.partition_index,
                    error_code: match (name, codes) {
                        (None, _) => code::UNKNOWN_TOPIC_ID,
                        (Some(_), Err(e)) => *e,
                        (Some(_), Ok(_)) => {
                            next.as_mut().and_then(Iterator::next).unwrap_or(code::NONE)
                        }
                    },
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    TxnOffsetCommitResponse {
        topics,
        ..Default::default()
    }
}
