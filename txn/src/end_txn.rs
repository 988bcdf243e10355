//! EndTxn, and the aborts the coordinator starts itself (a fence by InitProducerId, a
//! timeout), as Kafka 4.4's `TransactionCoordinator.endTransaction`: TV0/TV1 clients
//! (EndTxn v0-4) keep their epoch; TV2 clients (v5) get a bumped epoch per transaction, may
//! abort with no partitions added, and a retried EndTxn of a completed transaction (epoch one
//! below, or the last epoch before a producer id rotation) is answered NONE with the current
//! producer id and epoch.
//!
//! Checks, in 4.4's order. TV2: pending transition (other than a fence) CONCURRENT_TRANSACTIONS,
//! producer id INVALID_PRODUCER_ID_MAPPING, epoch PRODUCER_FENCED, then the state table
//! (see `end_v2`). TV0/TV1: producer id, epoch (strictly equal from a client), pending, state.

use sluice_net::ErrorCode;

use crate::coordinator::{Coordinator, EndReply, Op, OpKind, end_answer, end_failure};
use crate::effect::{Effect, EndTxn, ProducerIdSource};
use crate::metadata::{TxnMetadata, TxnTransit};
use crate::types::{NO_PRODUCER_EPOCH, NO_PRODUCER_ID, RequestId, TxnResult, TxnState, TxnVersion};

/// An abort or commit request, from a client or from the coordinator itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EndCall {
    pub(crate) producer_id: i64,
    pub(crate) producer_epoch: i16,
    pub(crate) result: TxnResult,
    pub(crate) from_client: bool,
    pub(crate) version: TxnVersion,
    pub(crate) reply: EndReply,
}

/// What an EndTxn comes to before anything is written.
enum EndStep {
    /// Already done: answer NONE with this producer id and epoch.
    Done(i64, i16),
    /// Append this Prepare transition.
    Write { transit: TxnTransit, fence: bool },
}

impl Coordinator {
    /// Handles a client's EndTxn; the answer comes as an `Effect::Answer`, after the Prepare
    /// record is durable when there is one (markers follow as `Effect::WriteMarkers`).
    pub fn end_txn(
        &mut self,
        request: RequestId,
        r: &EndTxn,
        now_ms: i64,
        ids: &mut dyn ProducerIdSource,
    ) -> Vec<Effect> {
        let call = EndCall {
            producer_id: r.producer_id,
            producer_epoch: r.producer_epoch,
            result: r.result,
            from_client: true,
            version: r.client_version,
            reply: EndReply::Client {
                request,
                version: r.client_version,
            },
        };
        self.end_transaction(&r.transactional_id, call, now_ms, ids)
    }

    pub(crate) fn end_transaction(
        &mut self,
        id: &str,
        call: EndCall,
        now_ms: i64,
        ids: &mut dyn ProducerIdSource,
    ) -> Vec<Effect> {
        if id.is_empty() {
            return end_failure(call.reply, ErrorCode::INVALID_REQUEST);
        }
        let coordinator_epoch = match self.serving_epoch(id) {
            Ok(e) => e,
            Err(e) => return end_failure(call.reply, e),
        };
        let Some(meta) = self.txns.get_mut(id) else {
            return end_failure(call.reply, ErrorCode::INVALID_PRODUCER_ID_MAPPING);
        };
        let step = if call.version.supports_epoch_bump() {
            end_v2(meta, &call, now_ms, ids)
        } else {
            end_v1(meta, &call, now_ms)
        };
        if step.is_err() && meta.pending_state == Some(TxnState::PrepareEpochFence) {
            // Never left behind: a fence that cannot proceed must not block the id.
            meta.pending_state = None;
        }
        match step {
            Err(e) => end_failure(call.reply, e),
            Ok(EndStep::Done(pid, epoch)) => match call.reply {
                EndReply::Client { request, .. } => {
                    vec![end_answer(request, ErrorCode::NONE, pid, epoch)]
                }
                EndReply::FenceForInit(_) | EndReply::Timeout => Vec::new(),
            },
            Ok(EndStep::Write { transit, fence }) => {
                let op = Op {
                    transactional_id: id.to_string(),
                    coordinator_epoch,
                    transit,
                    kind: OpKind::End {
                        result: call.result,
                        reply: call.reply,
                        epoch_fence: fence,
                    },
                };
                vec![self.start_append(op, now_ms)]
            }
        }
    }
}

fn invalid_state() -> Result<EndStep, ErrorCode> {
    Err(ErrorCode::INVALID_TXN_STATE)
}

/// EndTxn v0-4 (and the coordinator's own aborts on a TV0/TV1 cluster).
fn end_v1(meta: &mut TxnMetadata, call: &EndCall, now_ms: i64) -> Result<EndStep, ErrorCode> {
    if meta.producer_id != call.producer_id {
        return Err(ErrorCode::INVALID_PRODUCER_ID_MAPPING);
    }
    if (call.from_client && call.producer_epoch != meta.producer_epoch)
        || call.producer_epoch < meta.producer_epoch
    {
        return Err(ErrorCode::PRODUCER_FENCED);
    }
    let fencing = meta.pending_state == Some(TxnState::PrepareEpochFence);
    if meta.pending_state.is_some() && !fencing {
        return Err(ErrorCode::CONCURRENT_TRANSACTIONS);
    }
    let done = Ok(EndStep::Done(NO_PRODUCER_ID, NO_PRODUCER_EPOCH));
    match (meta.state, call.result) {
        (TxnState::Ongoing, result) => {
            let next = result.prepare_state();
            let fence = next == TxnState::PrepareAbort && fencing;
            if fence {
                // Kafka applies the fencing epoch in memory before the write.
                meta.pending_state = None;
                meta.producer_epoch = call.producer_epoch;
                meta.last_producer_epoch = NO_PRODUCER_EPOCH;
            }
            let transit =
                meta.prepare_abort_or_commit(next, TxnVersion::TV0, NO_PRODUCER_ID, now_ms, false)?;
            Ok(EndStep::Write { transit, fence })
        }
        (TxnState::CompleteCommit, TxnResult::Commit) => done,
        (TxnState::CompleteAbort, TxnResult::Abort) => done,
        (TxnState::PrepareCommit, TxnResult::Commit) => Err(ErrorCode::CONCURRENT_TRANSACTIONS),
        (TxnState::PrepareAbort, TxnResult::Abort) => Err(ErrorCode::CONCURRENT_TRANSACTIONS),
        (TxnState::Dead | TxnState::PrepareEpochFence, _) => Err(ErrorCode::UNKNOWN_SERVER_ERROR),
        _ => invalid_state(),
    }
}

/// EndTxn v5 (and the coordinator's own aborts on a TV2 cluster). Retry and state table:
///
/// | state          | abort, retry | abort, current | commit, retry | commit, current |
/// | -------------- | ------------ | -------------- | ------------- | --------------- |
/// | Empty          | FENCED       | bump + abort   | FENCED        | INVALID_TXN_STATE |
/// | CompleteAbort  | NONE         | bump + abort   | INVALID_TXN_STATE | INVALID_TXN_STATE |
/// | CompleteCommit | INVALID_TXN_STATE | bump + abort | NONE       | INVALID_TXN_STATE |
fn end_v2(
    meta: &mut TxnMetadata,
    call: &EndCall,
    now_ms: i64,
    ids: &mut dyn ProducerIdSource,
) -> Result<EndStep, ErrorCode> {
    let fence = meta.pending_state == Some(TxnState::PrepareEpochFence);
    let current = i32::from(meta.producer_epoch);
    let asked = i32::from(call.producer_epoch);
    let retry_on_overflow = !fence
        && meta.prev_producer_id == call.producer_id
        && call.producer_epoch == i16::MAX - 1
        && meta.producer_epoch == 0;
    let retry_on_bump = !fence && current == asked + 1;
    let valid_epoch = if fence {
        (!call.from_client || asked == current) && asked >= current
    } else {
        match meta.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => retry_on_bump,
            TxnState::CompleteCommit | TxnState::CompleteAbort => {
                retry_on_bump || retry_on_overflow || asked == current
            }
            _ => asked == current,
        }
    };
    let retry = retry_on_bump || retry_on_overflow;
    if meta.pending_state.is_some() && !fence {
        return Err(ErrorCode::CONCURRENT_TRANSACTIONS);
    }
    if meta.producer_id != call.producer_id && !retry_on_overflow {
        return Err(ErrorCode::INVALID_PRODUCER_ID_MAPPING);
    }
    if !valid_epoch {
        return Err(ErrorCode::PRODUCER_FENCED);
    }
    let done = Ok(EndStep::Done(meta.producer_id, meta.producer_epoch));
    let abort = TxnState::PrepareAbort;
    match (meta.state, call.result) {
        (TxnState::Ongoing, r) => {
            prepare_v2(meta, call, r.prepare_state(), false, fence, now_ms, ids)
        }
        (TxnState::CompleteCommit, TxnResult::Commit) if retry => done,
        (TxnState::CompleteCommit, TxnResult::Abort) if !retry => {
            prepare_v2(meta, call, abort, true, fence, now_ms, ids)
        }
        (TxnState::CompleteAbort, TxnResult::Abort) if retry => done,
        (TxnState::CompleteAbort | TxnState::Empty, TxnResult::Abort) => {
            prepare_v2(meta, call, abort, true, fence, now_ms, ids)
        }
        (TxnState::PrepareCommit, TxnResult::Commit) => Err(ErrorCode::CONCURRENT_TRANSACTIONS),
        (TxnState::PrepareAbort, TxnResult::Abort) => Err(ErrorCode::CONCURRENT_TRANSACTIONS),
        (TxnState::Dead | TxnState::PrepareEpochFence, _) => Err(ErrorCode::UNKNOWN_SERVER_ERROR),
        _ => invalid_state(),
    }
}

/// Kafka's `generateTxnTransitMetadataForTxnCompletion`: a new producer id when the epoch is
/// exhausted, the fence's pending state cleared, then the Prepare transition.
fn prepare_v2(
    meta: &mut TxnMetadata,
    call: &EndCall,
    next: TxnState,
    no_partition_added: bool,
    fence: bool,
    now_ms: i64,
    ids: &mut dyn ProducerIdSource,
) -> Result<EndStep, ErrorCode> {
    let next_producer_id = if meta.is_epoch_exhausted() {
        ids.next_producer_id()
    } else {
        Ok(NO_PRODUCER_ID)
    };
    if next == TxnState::PrepareAbort && fence {
        meta.pending_state = None;
    }
    let transit = meta.prepare_abort_or_commit(
        next,
        call.version,
        next_producer_id?,
        now_ms,
        no_partition_added,
    )?;
    Ok(EndStep::Write { transit, fence })
}
