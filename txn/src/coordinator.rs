//! The transaction coordinator of one broker: the transactional ids of the `__transaction_state`
//! partitions it leads, the appends in flight, and the completion of those appends. The
//! request handlers (`init_pid.rs`, `add.rs`, `end_txn.rs`), markers (`markers.rs`), loading
//! (`load.rs`), timeouts and expiry (`background.rs`) and the admin answers (`admin.rs`) are
//! further `impl Coordinator` blocks.
//!
//! Lives on the core that owns those partitions; single-threaded, no I/O: the broker performs
//! every `Effect` and reports back. Kafka's `TransactionStateManager` cache and its
//! `appendTransactionToLog` callback are here.
//!
//! What must stay true: a transactional id has at most one transition pending (an append in
//! flight, or the Complete transition waiting for markers); an append's outcome is applied only
//! if its partition is still led in the coordinator epoch it was written in, otherwise the
//! client hears NOT_COORDINATOR and nothing changes.

use std::collections::BTreeMap;

use sluice_net::ErrorCode;

use crate::effect::{Answer, Append, Config, Effect};
use crate::errors::append_error_to_coordinator;
use crate::log::{encode_key, encode_value};
use crate::metadata::{TxnMetadata, TxnTransit};
use crate::partition::partition_for;
use crate::types::{
    NO_PRODUCER_EPOCH, NO_PRODUCER_ID, RequestId, TxnResult, TxnState, TxnVersion, WriteId,
};

/// A `__transaction_state` partition this coordinator leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Owned {
    pub(crate) coordinator_epoch: i32,
    /// Between `begin_load` and `finish_load`: requests get COORDINATOR_LOAD_IN_PROGRESS.
    pub(crate) loading: bool,
}

/// Who hears how an EndTxn-style abort or commit went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndReply {
    /// A client's EndTxn.
    Client {
        request: RequestId,
        version: TxnVersion,
    },
    /// InitProducerId fencing an ongoing transaction: CONCURRENT_TRANSACTIONS once aborted.
    FenceForInit(RequestId),
    /// A transaction timeout: nobody.
    Timeout,
}

/// Why an append was started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OpKind {
    InitProducerId(RequestId),
    Add {
        request: RequestId,
        offsets: bool,
    },
    End {
        result: TxnResult,
        reply: EndReply,
        epoch_fence: bool,
    },
    Complete,
    Expire,
}

/// An append in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Op {
    pub(crate) transactional_id: String,
    pub(crate) coordinator_epoch: i32,
    pub(crate) transit: TxnTransit,
    pub(crate) kind: OpKind,
}

/// A transaction whose Prepare record is durable and whose markers are being written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AwaitingMarkers {
    pub(crate) coordinator_epoch: i32,
    pub(crate) result: TxnResult,
    pub(crate) complete: TxnTransit,
}

/// The transaction coordinator (see the module doc). Call order for the broker:
/// `begin_load` / `finish_load` when it becomes leader of a `__transaction_state` partition,
/// the request methods, `append_done` and `markers_written` as effects complete,
/// `abort_timed_out` and `expire_transactional_ids` on timers, `unload` when it stops leading.
#[derive(Debug)]
pub struct Coordinator {
    pub(crate) config: Config,
    pub(crate) owned: BTreeMap<i32, Owned>,
    pub(crate) txns: BTreeMap<String, TxnMetadata>,
    pub(crate) awaiting: BTreeMap<String, AwaitingMarkers>,
    pub(crate) writes: BTreeMap<WriteId, Op>,
    next_write: u64,
}

impl Coordinator {
    pub fn new(config: Config) -> Coordinator {
        Coordinator {
            config,
            owned: BTreeMap::new(),
            txns: BTreeMap::new(),
            awaiting: BTreeMap::new(),
            writes: BTreeMap::new(),
            next_write: 0,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The `__transaction_state` partition of `transactional_id`.
    pub fn partition_for(&self, transactional_id: &str) -> i32 {
        partition_for(transactional_id, self.config.state_log_partitions)
    }

    /// The state of an id this coordinator holds (loaded partitions only).
    pub fn metadata(&self, transactional_id: &str) -> Option<&TxnMetadata> {
        self.txns.get(transactional_id)
    }

    /// Every id held, in id order.
    pub fn all_metadata(&self) -> impl Iterator<Item = &TxnMetadata> {
        self.txns.values()
    }

    /// Whether a transition of `transactional_id` is pending (an append or markers).
    pub fn is_pending(&self, transactional_id: &str) -> bool {
        self.txns
            .get(transactional_id)
            .is_some_and(|m| m.pending_state.is_some())
    }

    /// The coordinator epoch `transactional_id` is served in, or why it is not served here.
    pub(crate) fn serving_epoch(&self, transactional_id: &str) -> Result<i32, ErrorCode> {
        match self.owned.get(&self.partition_for(transactional_id)) {
            None => Err(ErrorCode::NOT_COORDINATOR),
            Some(o) if o.loading => Err(ErrorCode::COORDINATOR_LOAD_IN_PROGRESS),
            Some(o) => Ok(o.coordinator_epoch),
        }
    }

    /// Starts the append of `op`'s transit (or a tombstone for an expiry).
    pub(crate) fn start_append(&mut self, op: Op, now_ms: i64) -> Effect {
        let write = WriteId(self.next_write);
        self.next_write += 1;
        let value = match op.kind {
            OpKind::Expire => None,
            _ => {
                let version = self.config.cluster_version.log_value_version();
                Some(encode_value(&op.transit.to_log_value(version), version))
            }
        };
        let append = Append {
            write,
            partition: self.partition_for(&op.transactional_id),
            coordinator_epoch: op.coordinator_epoch,
            transactional_id: op.transactional_id.clone(),
            key: encode_key(&op.transactional_id),
            value,
            timestamp_ms: now_ms,
        };
        self.writes.insert(write, op);
        Effect::Append(append)
    }

    /// The outcome of an `Effect::Append`: `Ok` once the record is durable (acks=all), or the
    /// produce error. Returns the answers and follow-up work it causes.
    pub fn append_done(
        &mut self,
        write: WriteId,
        result: Result<(), ErrorCode>,
        now_ms: i64,
    ) -> Vec<Effect> {
        let Some(op) = self.writes.remove(&write) else {
            return Vec::new();
        };
        let current = self.serving_epoch(&op.transactional_id) == Ok(op.coordinator_epoch)
            && self.txns.contains_key(&op.transactional_id);
        match result {
            Ok(()) if current => self.append_succeeded(op, now_ms),
            Ok(()) => self.append_failed(op, ErrorCode::NOT_COORDINATOR, false, now_ms),
            Err(e) => self.append_failed(op, append_error_to_coordinator(e), current, now_ms),
        }
    }

    fn append_succeeded(&mut self, op: Op, now_ms: i64) -> Vec<Effect> {
        let Some(meta) = self.txns.get_mut(&op.transactional_id) else {
            return Vec::new();
        };
        if op.kind == OpKind::Expire {
            if meta.pending_state == Some(TxnState::Dead)
                && meta.producer_epoch == op.transit.producer_epoch
            {
                self.txns.remove(&op.transactional_id);
            } else {
                meta.pending_state = None;
            }
            return Vec::new();
        }
        meta.complete(&op.transit);
        match op.kind {
            OpKind::InitProducerId(request) => vec![init_answer(
                request,
                ErrorCode::NONE,
                op.transit.producer_id,
                op.transit.producer_epoch,
            )],
            OpKind::Add { request, offsets } => vec![add_answer(request, offsets, ErrorCode::NONE)],
            OpKind::End { result, reply, .. } => self.prepare_written(
                &op.transactional_id,
                op.coordinator_epoch,
                result,
                reply,
                now_ms,
            ),
            OpKind::Complete | OpKind::Expire => Vec::new(),
        }
    }

    fn append_failed(
        &mut self,
        op: Op,
        error: ErrorCode,
        current: bool,
        now_ms: i64,
    ) -> Vec<Effect> {
        if current {
            if op.kind == OpKind::Complete && error == ErrorCode::COORDINATOR_NOT_AVAILABLE {
                // Kafka retries the completion with the pending state kept.
                return vec![self.start_append(op, now_ms)];
            }
            if let Some(meta) = self.txns.get_mut(&op.transactional_id) {
                meta.pending_state = None;
                if let OpKind::End {
                    epoch_fence: true, ..
                } = op.kind
                {
                    meta.has_failed_epoch_fence = true;
                }
            }
        }
        match op.kind {
            OpKind::InitProducerId(request) => {
                vec![init_answer(
                    request,
                    error,
                    NO_PRODUCER_ID,
                    NO_PRODUCER_EPOCH,
                )]
            }
            OpKind::Add { request, offsets } => vec![add_answer(request, offsets, error)],
            OpKind::End { reply, .. } => end_failure(reply, error),
            OpKind::Complete | OpKind::Expire => Vec::new(),
        }
    }
}

pub(crate) fn init_answer(request: RequestId, error: ErrorCode, pid: i64, epoch: i16) -> Effect {
    Effect::Answer {
        request,
        answer: Answer::InitProducerId {
            error,
            producer_id: pid,
            producer_epoch: epoch,
        },
    }
}

pub(crate) fn add_answer(request: RequestId, offsets: bool, error: ErrorCode) -> Effect {
    let answer = if offsets {
        Answer::AddOffsets { error }
    } else {
        Answer::AddPartitions { error }
    };
    Effect::Answer { request, answer }
}

pub(crate) fn end_answer(request: RequestId, error: ErrorCode, pid: i64, epoch: i16) -> Effect {
    Effect::Answer {
        request,
        answer: Answer::EndTxn {
            error,
            producer_id: pid,
            producer_epoch: epoch,
        },
    }
}

/// The answer to an abort or commit that failed before its Prepare record was durable.
pub(crate) fn end_failure(reply: EndReply, error: ErrorCode) -> Vec<Effect> {
    match reply {
        EndReply::Client { request, .. } => {
            vec![end_answer(
                request,
                error,
                NO_PRODUCER_ID,
                NO_PRODUCER_EPOCH,
            )]
        }
        EndReply::FenceForInit(request) => {
            vec![init_answer(
                request,
                error,
                NO_PRODUCER_ID,
                NO_PRODUCER_EPOCH,
            )]
        }
        EndReply::Timeout => Vec::new(),
    }
}
