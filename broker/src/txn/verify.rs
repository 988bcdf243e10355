//! A partition leader asking a transaction coordinator about a transactional append (KIP-890):
//! whether the partitions are in the producer's ongoing transaction (part 1, verification),
//! or to add them (part 2, transaction version 2, where clients no longer send
//! AddPartitionsToTxn). Kafka's `AddPartitionsToTxnManager`: AddPartitionsToTxn v5 from
//! broker to coordinator; here a call to the local core that coordinates the id, or that
//! request to the broker that does (over a connection this core keeps, `peer_calls.rs`).

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use sluice_net::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use sluice_net::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse};
use sluice_net::{ErrorCode, Request, Response};
use sluice_txn::{AddPartitions, Answer, TopicPartition, TxnVersion};

use super::{TxnCall, TxnReply};
use crate::core::Core;

/// AddPartitionsToTxn version a broker sends a coordinator (the broker batch form).
const BROKER_ADD_VERSION: i16 = 5;
/// How long the coordinator broker has to answer.
const REMOTE_TIMEOUT: Duration = Duration::from_secs(30);

/// What the leader asks of the coordinator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// Only whether the partitions are in the transaction (older clients).
    Verify,
    /// Add them to the transaction (transaction version 2 clients).
    Add,
}

/// Who asks, for which producer.
pub struct Producer<'a> {
    pub transactional_id: &'a str,
    pub producer_id: i64,
    pub producer_epoch: i16,
}

/// While a coordinator answers CONCURRENT_TRANSACTIONS to an add (the producer's last
/// transaction is still writing its markers), it is asked again this often, for this long
/// (Kafka's `add.partitions.to.txn.retry.backoff.ms` and `.backoff.max.ms`).
const ADD_RETRY_BACKOFF: Duration = Duration::from_millis(20);
const ADD_RETRY_FOR: Duration = Duration::from_millis(100);

/// [`ask`], asking again as Kafka does while an add meets CONCURRENT_TRANSACTIONS.
pub async fn ask_patiently(
    core: &Rc<Core>,
    who: &Producer<'_>,
    partitions: &[TopicPartition],
    what: Ask,
) -> Vec<(TopicPartition, ErrorCode)> {
    let started = std::time::Instant::now();
    loop {
        let codes = ask(core, who, partitions, what).await;
        let concurrent = codes
            .iter()
            .any(|(_, c)| *c == ErrorCode::CONCURRENT_TRANSACTIONS);
        if what != Ask::Add || !concurrent || started.elapsed() >= ADD_RETRY_FOR {
            return codes;
        }
        glommio::timer::sleep(ADD_RETRY_BACKOFF).await;
    }
}

/// The coordinator's code for each of `partitions`: NONE when it is in the transaction
/// (verified or added), else the error the coordinator gave (COORDINATOR_NOT_AVAILABLE or
/// NETWORK_EXCEPTION when it could not be asked).
pub async fn ask(
    core: &Rc<Core>,
    who: &Producer<'_>,
    partitions: &[TopicPartition],
    what: Ask,
) -> Vec<(TopicPartition, ErrorCode)> {
    match super::locate(core, who.transactional_id) {
        Ok(_) => local(core, who, partitions, what).await,
        Err(ErrorCode::NOT_COORDINATOR) => match remote(core, who, partitions, what).await {
            Ok(codes) => codes,
            Err(code) => every(partitions, code),
        },
        Err(code) => every(partitions, code),
    }
}

/// Asks this broker's core that coordinates the id.
pub async fn local(
    core: &Rc<Core>,
    who: &Producer<'_>,
    partitions: &[TopicPartition],
    what: Ask,
) -> Vec<(TopicPartition, ErrorCode)> {
    let call = match what {
        Ask::Verify => TxnCall::Verify {
            transactional_id: who.transactional_id.to_owned(),
            producer_id: who.producer_id,
            producer_epoch: who.producer_epoch,
            partitions: partitions.to_vec(),
        },
        Ask::Add => TxnCall::Add(AddPartitions {
            transactional_id: who.transactional_id.to_owned(),
            producer_id: who.producer_id,
            producer_epoch: who.producer_epoch,
            partitions: partitions.to_vec(),
            client_version: TxnVersion::for_add_partitions(BROKER_ADD_VERSION),
        }),
    };
    match super::call(core, who.transactional_id, false, call).await {
        TxnReply::Verified(codes) => codes,
        TxnReply::Answer(Answer::AddPartitions { error }) | TxnReply::Failed(error) => {
            every(partitions, error)
        }
        other => {
            tracing::error!(?other, "the transaction coordinator answered another call");
            every(partitions, ErrorCode::UNKNOWN_SERVER_ERROR)
        }
    }
}

/// `code` for each of `partitions`.
fn every(partitions: &[TopicPartition], code: ErrorCode) -> Vec<(TopicPartition, ErrorCode)> {
    partitions.iter().map(|tp| (tp.clone(), code)).collect()
}

/// Sends AddPartitionsToTxn v5 to the broker that coordinates the id.
async fn remote(
    core: &Rc<Core>,
    who: &Producer<'_>,
    partitions: &[TopicPartition],
    what: Ask,
) -> Result<Vec<(TopicPartition, ErrorCode)>, ErrorCode> {
    let image = core.topics();
    let endpoint = super::coordinator_of(core, &image, who.transactional_id)
        .ok_or(ErrorCode::COORDINATOR_NOT_AVAILABLE)?;
    let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for tp in partitions {
        topics.entry(&tp.topic).or_default().push(tp.partition);
    }
    let request = AddPartitionsToTxnRequest {
        transactions: vec![AddPartitionsToTxnTransaction {
            transactional_id: who.transactional_id.to_owned().into(),
            producer_id: who.producer_id.into(),
            producer_epoch: who.producer_epoch,
            verify_only: what == Ask::Verify,
            topics: topics
                .into_iter()
                .map(|(name, partitions)| AddPartitionsToTxnTopic {
                    name: name.to_owned().into(),
                    partitions,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let client_id = format!("sluice-txn-verify-{}", core.config.node_id);
    let answer = crate::peer_calls::call(
        (&endpoint.host, endpoint.port),
        &client_id,
        BROKER_ADD_VERSION,
        &Request::AddPartitionsToTxn(request),
        REMOTE_TIMEOUT,
    )
    .await;
    match answer {
        Some(Response::AddPartitionsToTxn(r)) => Ok(codes_of(&r, partitions)),
        _ => Err(ErrorCode::NETWORK_EXCEPTION),
    }
}

/// Each partition's code in a coordinator's answer: its top-level error for all of them if
/// it has one; a partition missing from the answer counts as verified, as in Kafka.
fn codes_of(
    r: &AddPartitionsToTxnResponse,
    partitions: &[TopicPartition],
) -> Vec<(TopicPartition, ErrorCode)> {
    let top = match ErrorCode::from_code(r.error_code) {
        // Not for the client's eyes: the verification did not complete (Kafka's mapping).
        Some(ErrorCode::CLUSTER_AUTHORIZATION_FAILED) => ErrorCode::INVALID_TXN_STATE,
        Some(code) => code,
        None => ErrorCode::UNKNOWN_SERVER_ERROR,
    };
    partitions
        .iter()
        .map(|tp| {
            if top != ErrorCode::NONE {
                return (tp.clone(), top);
            }
            let code = r
                .results_by_transaction
                .iter()
                .flat_map(|t| &t.topic_results)
                .filter(|t| t.name.as_str() == tp.topic)
                .flat_map(|t| &t.results_by_partition)
                .find(|p| p.partition_index == tp.partition)
                .map_or(ErrorCode::NONE.code(), |p| p.partition_error_code);
            let code = ErrorCode::from_code(code).unwrap_or(ErrorCode::UNKNOWN_SERVER_ERROR);
            (tp.clone(), code)
        })
        .collect()
}
