//! InitProducerId with a transactional id, as Kafka 4.4's `TransactionCoordinator`: a new id
//! gets a producer id at epoch 0; an idle id has its epoch bumped (or, its epoch exhausted, a
//! new producer id); a producer recovering with its id and epoch (KIP-360) keeps its id, a
//! retry of the last bump gets the same epoch, anything older is PRODUCER_FENCED; an ongoing
//! transaction is aborted with a fencing epoch bump first and the client hears
//! CONCURRENT_TRANSACTIONS, retrying until the abort is complete.
//!
//! KIP-939 (two-phase commit): `Enable2Pc` without `transaction.two.phase.commit.enable` is
//! TRANSACTIONAL_ID_AUTHORIZATION_FAILED, with it the timeout becomes `i32::MAX`;
//! `KeepPreparedTxn` is UNSUPPORTED_VERSION, as in 4.4.

use sluice_net::ErrorCode;

use crate::coordinator::{Coordinator, EndReply, Op, OpKind, init_answer};
use crate::effect::{Effect, InitProducerId, ProducerIdSource};
use crate::end_txn::EndCall;
use crate::metadata::{TxnMetadata, TxnTransit};
use crate::types::{
    NO_PRODUCER_EPOCH, NO_PRODUCER_ID, RequestId, TxnResult, TxnState, epoch_exhausted,
};

/// A producer's claim to an id and epoch (KIP-360).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Expected {
    producer_id: i64,
    epoch: i16,
}

impl Coordinator {
    /// Handles InitProducerId for a transactional id; its answer comes as an
    /// `Effect::Answer` now or after the append it starts.
    pub fn init_producer_id(
        &mut self,
        request: RequestId,
        r: &InitProducerId,
        now_ms: i64,
        ids: &mut dyn ProducerIdSource,
    ) -> Vec<Effect> {
        match self.init_checks(r) {
            Ok((timeout_ms, expected)) => {
                match self.init_prepare(request, r, timeout_ms, expected, now_ms, ids) {
                    Ok(effects) => effects,
                    Err(e) => vec![init_answer(request, e, NO_PRODUCER_ID, NO_PRODUCER_EPOCH)],
                }
            }
            Err(e) => vec![init_answer(request, e, NO_PRODUCER_ID, NO_PRODUCER_EPOCH)],
        }
    }

    /// The request-level checks, in Kafka's order: the id/epoch pair (KafkaApis), the empty
    /// id, 2PC, KeepPreparedTxn, the timeout.
    fn init_checks(&self, r: &InitProducerId) -> Result<(i32, Option<Expected>), ErrorCode> {
        let expected = match (r.producer_id, r.producer_epoch) {
            (NO_PRODUCER_ID, NO_PRODUCER_EPOCH) => None,
            (NO_PRODUCER_ID, _) | (_, NO_PRODUCER_EPOCH) => {
                return Err(ErrorCode::INVALID_REQUEST);
            }
            (producer_id, epoch) => Some(Expected { producer_id, epoch }),
        };
        if r.transactional_id.is_empty() {
            return Err(ErrorCode::INVALID_REQUEST);
        }
        if r.enable_two_phase_commit && !self.config.two_phase_commit_enable {
            return Err(ErrorCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
        }
        if r.keep_prepared_txn {
            return Err(ErrorCode::UNSUPPORTED_VERSION);
        }
        let valid_timeout = r.enable_two_phase_commit
            || (r.timeout_ms > 0 && r.timeout_ms <= self.config.max_timeout_ms);
        if !valid_timeout {
            return Err(ErrorCode::INVALID_TRANSACTION_TIMEOUT);
        }
        let timeout_ms = if r.enable_two_phase_commit {
            i32::MAX
        } else {
            r.timeout_ms
        };
        Ok((timeout_ms, expected))
    }

    fn init_prepare(
        &mut self,
        request: RequestId,
        r: &InitProducerId,
        timeout_ms: i32,
        expected: Option<Expected>,
        now_ms: i64,
        ids: &mut dyn ProducerIdSource,
    ) -> Result<Vec<Effect>, ErrorCode> {
        let id = r.transactional_id.as_str();
        let coordinator_epoch = self.serving_epoch(id)?;
        if !self.txns.contains_key(id) {
            let pid = ids.next_producer_id()?;
            self.txns.insert(
                id.to_string(),
                TxnMetadata::new(id, pid, timeout_ms, now_ms),
            );
        }
        let Some(meta) = self.txns.get_mut(id) else {
            return Err(ErrorCode::UNKNOWN_SERVER_ERROR);
        };
        let transit = init_transit(meta, timeout_ms, expected, now_ms, ids)?;
        if transit.state == TxnState::PrepareEpochFence {
            let call = EndCall {
                producer_id: transit.producer_id,
                producer_epoch: transit.producer_epoch,
                result: TxnResult::Abort,
                from_client: false,
                version: self.config.cluster_version,
                reply: EndReply::FenceForInit(request),
            };
            return Ok(self.end_transaction(id, call, now_ms, ids));
        }
        let op = Op {
            transactional_id: id.to_string(),
            coordinator_epoch,
            transit,
            kind: OpKind::InitProducerId(request),
        };
        Ok(vec![self.start_append(op, now_ms)])
    }
}

/// Kafka's `prepareInitProducerIdTransit`.
fn init_transit(
    meta: &mut TxnMetadata,
    timeout_ms: i32,
    expected: Option<Expected>,
    now_ms: i64,
    ids: &mut dyn ProducerIdSource,
) -> Result<TxnTransit, ErrorCode> {
    if meta.pending_state.is_some() {
        return Err(ErrorCode::CONCURRENT_TRANSACTIONS);
    }
    if let Some(e) = expected {
        // Fence unless the id was just created, the producer id is current, or it is the
        // previous one with an exhausted epoch (a retry after a rotation it never heard of).
        let valid = meta.producer_epoch == NO_PRODUCER_EPOCH
            || e.producer_id == meta.producer_id
            || (e.producer_id == meta.prev_producer_id && epoch_exhausted(e.epoch));
        if !valid {
            return Err(ErrorCode::PRODUCER_FENCED);
        }
    }
    match meta.state {
        TxnState::PrepareAbort | TxnState::PrepareCommit => Err(ErrorCode::CONCURRENT_TRANSACTIONS),
        TxnState::CompleteAbort | TxnState::CompleteCommit | TxnState::Empty => {
            if meta.is_epoch_exhausted() && expected.is_none_or(|e| e.epoch == meta.producer_epoch)
            {
                let pid = ids.next_producer_id()?;
                meta.prepare_producer_id_rotation(pid, timeout_ms, now_ms, expected.is_some())
            } else {
                meta.prepare_increment_epoch(timeout_ms, expected.map(|e| e.epoch), now_ms)
            }
        }
        TxnState::Ongoing => meta.prepare_fence_epoch(),
        TxnState::Dead | TxnState::PrepareEpochFence => Err(ErrorCode::UNKNOWN_SERVER_ERROR),
    }
}
