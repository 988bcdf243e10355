//! One transactional id's state (Kafka 4.4's `TransactionMetadata`) and its transitions.
//!
//! A change happens in two steps, as in Kafka: a `prepare_*` method computes the next state
//! (a [`TxnTransit`], what goes into the log) and marks it pending; once that record is
//! durable, [`TxnMetadata::complete`] applies it. While a transition is pending, every other
//! one is refused (the coordinator answers CONCURRENT_TRANSACTIONS before getting here).
//!
//! What must stay true: a prepared transition starts from one of the target state's allowed
//! previous states, never from a pending one, and has a producer id >= 0 and (but for Dead)
//! an epoch >= 0; `complete` re-checks Kafka's consistency rules (epoch unchanged, +1, or 0 on
//! a new producer id; partitions only grow while Ongoing; ...) and panics on a violation,
//! which is a bug in this crate. A prepare that would break the rules returns
//! UNKNOWN_SERVER_ERROR instead, which is what Kafka's IllegalStateException becomes.

use std::collections::BTreeSet;

use sluice_net::ErrorCode;

use crate::log::{LogPartitions, TxnLogValue};
use crate::types::{
    NO_PRODUCER_EPOCH, NO_PRODUCER_ID, TopicPartition, TxnState, TxnVersion, epoch_exhausted,
};

/// What a transition writes: every persisted field, plus the last epoch (kept in memory only,
/// as Kafka 4.4 does not write it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnTransit {
    pub producer_id: i64,
    pub prev_producer_id: i64,
    pub next_producer_id: i64,
    pub producer_epoch: i16,
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<TopicPartition>,
    pub start_ms: i64,
    pub last_update_ms: i64,
    pub client_version: TxnVersion,
}

impl TxnTransit {
    /// The `TransactionLogValue` of this transit, written at a cluster transaction version.
    /// Partitions are null when Empty; the tags exist only in v1 (TV1+).
    pub fn to_log_value(&self, log_version: i16) -> TxnLogValue {
        let partitions = if self.state == TxnState::Empty {
            None
        } else {
            Some(group_partitions(&self.partitions))
        };
        let (prev, next) = if log_version >= 1 {
            (self.prev_producer_id, self.next_producer_id)
        } else {
            (NO_PRODUCER_ID, NO_PRODUCER_ID)
        };
        TxnLogValue {
            producer_id: self.producer_id,
            previous_producer_id: prev,
            next_producer_id: next,
            producer_epoch: self.producer_epoch,
            next_producer_epoch: NO_PRODUCER_EPOCH,
            timeout_ms: self.timeout_ms,
            status: self.state.id(),
            partitions,
            last_update_ms: self.last_update_ms,
            start_ms: self.start_ms,
            client_transaction_version: self.client_version.0,
            unknown_tagged_fields: Vec::new(),
        }
    }
}

/// Partitions grouped by topic, topics and partitions in ascending order.
pub fn group_partitions(partitions: &BTreeSet<TopicPartition>) -> Vec<LogPartitions> {
    let mut out: Vec<LogPartitions> = Vec::new();
    for tp in partitions {
        match out.last_mut() {
            Some(last) if last.topic == tp.topic => last.partition_ids.push(tp.partition),
            _ => out.push(LogPartitions {
                topic: tp.topic.clone(),
                partition_ids: vec![tp.partition],
                unknown_tagged_fields: Vec::new(),
            }),
        }
    }
    out
}

/// One transactional id on its coordinator. Lives on the core that leads its
/// `__transaction_state` partition; created by InitProducerId or by loading the partition,
/// removed by expiry or unloading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMetadata {
    pub transactional_id: String,
    pub producer_id: i64,
    /// The producer id before the last transition (Kafka's `prevProducerId`).
    pub prev_producer_id: i64,
    /// The producer id a TV2 transaction moves to when its epoch runs out.
    pub next_producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch before the last bump, for retried InitProducerId (KIP-360); not persisted.
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<TopicPartition>,
    /// When the first partition was added (-1 when none).
    pub start_ms: i64,
    pub last_update_ms: i64,
    pub client_version: TxnVersion,
    /// The state a prepared, not yet durable transition goes to.
    pub pending_state: Option<TxnState>,
    /// A fencing epoch bump failed to reach the log: do not bump again on the next fence.
    pub has_failed_epoch_fence: bool,
}

impl TxnMetadata {
    /// A new id as InitProducerId creates it: Empty, no epoch yet, TV0.
    pub fn new(transactional_id: &str, producer_id: i64, timeout_ms: i32, now_ms: i64) -> Self {
        TxnMetadata {
            transactional_id: transactional_id.to_string(),
            producer_id,
            prev_producer_id: NO_PRODUCER_ID,
            next_producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            start_ms: -1,
            last_update_ms: now_ms,
            client_version: TxnVersion::TV0,
            pending_state: None,
            has_failed_epoch_fence: false,
        }
    }

    /// The state a log value describes (Kafka reads the last epoch back as -1). Fails on a
    /// status byte no state has.
    pub fn from_log_value(transactional_id: &str, v: &TxnLogValue) -> Option<TxnMetadata> {
        let state = TxnState::from_id(v.status)?;
        let mut partitions = BTreeSet::new();
        if state != TxnState::Empty {
            for t in v.partitions.iter().flatten() {
                for p in &t.partition_ids {
                    partitions.insert(TopicPartition::new(&t.topic, *p));
                }
            }
        }
        Some(TxnMetadata {
            transactional_id: transactional_id.to_string(),
            producer_id: v.producer_id,
            prev_producer_id: v.previous_producer_id,
            next_producer_id: v.next_producer_id,
            producer_epoch: v.producer_epoch,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            timeout_ms: v.timeout_ms,
            state,
            partitions,
            start_ms: v.start_ms,
            last_update_ms: v.last_update_ms,
            client_version: TxnVersion(v.client_transaction_version),
            pending_state: None,
            has_failed_epoch_fence: false,
        })
    }

    /// The current state as a transit (what replaying its last record gives back).
    pub fn snapshot(&self) -> TxnTransit {
        TxnTransit {
            producer_id: self.producer_id,
            prev_producer_id: self.prev_producer_id,
            next_producer_id: self.next_producer_id,
            producer_epoch: self.producer_epoch,
            last_producer_epoch: self.last_producer_epoch,
            timeout_ms: self.timeout_ms,
            state: self.state,
            partitions: self.partitions.clone(),
            start_ms: self.start_ms,
            last_update_ms: self.last_update_ms,
            client_version: self.client_version,
        }
    }

    pub fn is_epoch_exhausted(&self) -> bool {
        epoch_exhausted(self.producer_epoch)
    }

    /// A KIP-939 two-phase-commit transaction (no timeout).
    pub fn is_two_phase_commit(&self) -> bool {
        self.timeout_ms == i32::MAX
    }

    fn has_pending_transaction(&self) -> bool {
        matches!(
            self.state,
            TxnState::Ongoing | TxnState::PrepareAbort | TxnState::PrepareCommit
        )
    }

    /// Marks `t` pending if it is a legal next state.
    fn prepare(&mut self, t: TxnTransit) -> Result<TxnTransit, ErrorCode> {
        if self.pending_state.is_some() || t.producer_id < 0 {
            return Err(ErrorCode::UNKNOWN_SERVER_ERROR);
        }
        if t.state != TxnState::Dead && t.producer_epoch < 0 {
            return Err(ErrorCode::UNKNOWN_SERVER_ERROR);
        }
        if !t.state.valid_previous().contains(&self.state) {
            return Err(ErrorCode::UNKNOWN_SERVER_ERROR);
        }
        let t = TxnTransit {
            prev_producer_id: self.producer_id,
            ..t
        };
        self.pending_state = Some(t.state);
        Ok(t)
    }

    /// A fence of an ongoing transaction by a newer producer or a timeout: the epoch goes up
    /// by one, unless a previous fence failed to reach the log or it is at `i16::MAX`.
    pub fn prepare_fence_epoch(&mut self) -> Result<TxnTransit, ErrorCode> {
        let epoch = if self.has_failed_epoch_fence || self.producer_epoch == i16::MAX {
            self.producer_epoch
        } else {
            self.producer_epoch + 1
        };
        let t = TxnTransit {
            state: TxnState::PrepareEpochFence,
            producer_epoch: epoch,
            ..self.snapshot()
        };
        self.prepare(t)
    }

    /// InitProducerId on an idle id: bump the epoch, or (KIP-360) answer a retry of the last
    /// bump with the same epoch, or fence a producer whose epoch is neither.
    pub fn prepare_increment_epoch(
        &mut self,
        timeout_ms: i32,
        expected_epoch: Option<i16>,
        now_ms: i64,
    ) -> Result<TxnTransit, ErrorCode> {
        if self.is_epoch_exhausted() {
            return Err(ErrorCode::UNKNOWN_SERVER_ERROR);
        }
        let bumped = self.producer_epoch + 1;
        let (epoch, last) = match expected_epoch {
            None => (bumped, NO_PRODUCER_EPOCH),
            Some(e) if self.producer_epoch == NO_PRODUCER_EPOCH || e == self.producer_epoch => {
                (bumped, self.producer_epoch)
            }
            Some(e) if e == self.last_producer_epoch => {
                (self.producer_epoch, self.last_producer_epoch)
            }
            Some(_) => return Err(ErrorCode::PRODUCER_FENCED),
        };
        let t = TxnTransit {
            state: TxnState::Empty,
            producer_epoch: epoch,
            last_producer_epoch: last,
            timeout_ms,
            partitions: BTreeSet::new(),
            start_ms: -1,
            last_update_ms: now_ms,
            ..self.snapshot()
        };
        self.prepare(t)
    }

    /// InitProducerId when the epoch ran out: a new producer id at epoch 0.
    pub fn prepare_producer_id_rotation(
        &mut self,
        new_producer_id: i64,
        timeout_ms: i32,
        now_ms: i64,
        record_last_epoch: bool,
    ) -> Result<TxnTransit, ErrorCode> {
        if self.has_pending_transaction() {
            return Err(ErrorCode::UNKNOWN_SERVER_ERROR);
        }
        let t = TxnTransit {
            state: TxnState::Empty,
            producer_id: new_producer_id,
            producer_epoch: 0,
            last_producer_epoch: if record_last_epoch {
                self.producer_epoch
            } else {
                NO_PRODUCER_EPOCH
            },
            timeout_ms,
            partitions: BTreeSet::new(),
            start_ms: -1,
            last_update_ms: now_ms,
            ..self.snapshot()
        };
        self.prepare(t)
    }

    /// AddPartitionsToTxn / AddOffsetsToTxn: Ongoing with the union of partitions; a new
    /// transaction starts its clock now.
    pub fn prepare_add_partitions(
        &mut self,
        added: &BTreeSet<TopicPartition>,
        now_ms: i64,
        client_version: TxnVersion,
    ) -> Result<TxnTransit, ErrorCode> {
        let start_ms = match self.state {
            TxnState::Empty | TxnState::CompleteAbort | TxnState::CompleteCommit => now_ms,
            _ => self.start_ms,
        };
        let mut partitions = self.partitions.clone();
        partitions.extend(added.iter().cloned());
        let t = TxnTransit {
            state: TxnState::Ongoing,
            partitions,
            start_ms,
            last_update_ms: now_ms,
            client_version,
            ..self.snapshot()
        };
        self.prepare(t)
    }

    /// EndTxn: PrepareCommit or PrepareAbort; TV2 bumps the epoch (not past `i16::MAX` on an
    /// abort) and remembers the producer id to move to if the epoch ran out.
    pub fn prepare_abort_or_commit(
        &mut self,
        state: TxnState,
        client_version: TxnVersion,
        next_producer_id: i64,
        now_ms: i64,
        no_partition_added: bool,
    ) -> Result<TxnTransit, ErrorCode> {
        let (epoch, last) = if client_version.supports_epoch_bump() {
            let e = if self.producer_epoch == i16::MAX && state == TxnState::PrepareAbort {
                self.producer_epoch
            } else {
                self.producer_epoch.wrapping_add(1)
            };
            (e, self.producer_epoch)
        } else {
            (self.producer_epoch, self.last_producer_epoch)
        };
        let t = TxnTransit {
            state,
            producer_epoch: epoch,
            last_producer_epoch: last,
            start_ms: if no_partition_added {
                now_ms
            } else {
                self.start_ms
            },
            next_producer_id,
            last_update_ms: now_ms,
            client_version,
            ..self.snapshot()
        };
        self.prepare(t)
    }

    /// Every marker is written: CompleteCommit or CompleteAbort, no partitions; a TV2
    /// transaction whose epoch ran out moves to its next producer id at epoch 0.
    pub fn prepare_complete(&mut self, now_ms: i64) -> Result<TxnTransit, ErrorCode> {
        self.has_failed_epoch_fence = false;
        let state = if self.state == TxnState::PrepareCommit {
            TxnState::CompleteCommit
        } else {
            TxnState::CompleteAbort
        };
        let (pid, epoch) = if self.client_version.supports_epoch_bump()
            && self.next_producer_id != NO_PRODUCER_ID
        {
            (self.next_producer_id, 0)
        } else {
            (self.producer_id, self.producer_epoch)
        };
        let t = TxnTransit {
            state,
            producer_id: pid,
            producer_epoch: epoch,
            next_producer_id: NO_PRODUCER_ID,
            partitions: BTreeSet::new(),
            last_update_ms: now_ms,
            ..self.snapshot()
        };
        self.prepare(t)
    }

    /// Expiry of an idle id.
    pub fn prepare_dead(&mut self) -> Result<TxnTransit, ErrorCode> {
        let t = TxnTransit {
            state: TxnState::Dead,
            partitions: BTreeSet::new(),
            ..self.snapshot()
        };
        self.prepare(t)
    }

    /// Applies a transition whose record is durable. Panics if it is not the pending one or
    /// breaks Kafka's consistency rules: a bug in the prepare methods or their callers.
    pub fn complete(&mut self, t: &TxnTransit) {
        assert_eq!(
            self.pending_state,
            Some(t.state),
            "{}",
            self.transactional_id
        );
        assert!(self.transit_is_consistent(t), "{self:?} -> {t:?}");
        self.producer_id = t.producer_id;
        self.prev_producer_id = t.prev_producer_id;
        self.next_producer_id = t.next_producer_id;
        self.producer_epoch = t.producer_epoch;
        self.last_producer_epoch = t.last_producer_epoch;
        self.timeout_ms = t.timeout_ms;
        self.partitions = t.partitions.clone();
        self.start_ms = t.start_ms;
        self.last_update_ms = t.last_update_ms;
        self.client_version = t.client_version;
        self.pending_state = None;
        self.state = t.state;
    }

    fn transit_is_consistent(&self, t: &TxnTransit) -> bool {
        match t.state {
            TxnState::Empty => {
                (self.producer_epoch == t.producer_epoch || self.valid_epoch_bump(t))
                    && t.partitions.is_empty()
                    && t.start_ms == -1
            }
            TxnState::Ongoing => {
                self.valid_epoch(t)
                    && t.partitions.is_superset(&self.partitions)
                    && self.timeout_ms == t.timeout_ms
            }
            TxnState::PrepareAbort | TxnState::PrepareCommit => {
                let empty_abort = t.state == TxnState::PrepareAbort
                    && t.client_version.supports_epoch_bump()
                    && self.state.expiration_allowed();
                self.valid_epoch(t)
                    && self.partitions == t.partitions
                    && self.timeout_ms == t.timeout_ms
                    && (self.start_ms == t.start_ms || empty_abort)
            }
            TxnState::CompleteAbort | TxnState::CompleteCommit => {
                self.valid_epoch(t) && self.timeout_ms == t.timeout_ms && t.start_ms != -1
            }
            TxnState::PrepareEpochFence | TxnState::Dead => false,
        }
    }

    fn valid_epoch(&self, t: &TxnTransit) -> bool {
        let v2 = t.client_version.supports_epoch_bump();
        if v2 && t.state.is_complete() && t.producer_epoch == 0 {
            return t.last_producer_epoch == self.last_producer_epoch
                && t.prev_producer_id == self.producer_id;
        }
        if v2 && t.state.is_prepare() {
            return t.last_producer_epoch == self.producer_epoch
                && t.producer_id == self.producer_id;
        }
        t.producer_epoch == self.producer_epoch && t.producer_id == self.producer_id
    }

    fn valid_epoch_bump(&self, t: &TxnTransit) -> bool {
        i32::from(t.producer_epoch) == i32::from(self.producer_epoch) + 1
            || (t.producer_epoch == 0 && t.producer_id != self.producer_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(t: &str, p: i32) -> TopicPartition {
        TopicPartition::new(t, p)
    }

    fn ongoing(epoch: i16) -> TxnMetadata {
        let mut m = TxnMetadata::new("t", 7, 1000, 0);
        m.producer_epoch = epoch;
        m.state = TxnState::Ongoing;
        m.partitions.insert(tp("a", 0));
        m.start_ms = 5;
        m
    }

    /// A new producer bumps -1 to 0; a KIP-360 retry with the current epoch bumps and keeps
    /// the last; a retry with the last epoch gets the same epoch; any other epoch is fenced.
    #[test]
    fn increment_epoch_cases() {
        let mut m = TxnMetadata::new("t", 7, 1000, 0);
        let t = m.prepare_increment_epoch(1000, None, 1).expect("bump");
        assert_eq!((t.producer_epoch, t.last_producer_epoch), (0, -1));
        m.complete(&t);
        let t = m.prepare_increment_epoch(1000, Some(0), 2).expect("bump");
        assert_eq!((t.producer_epoch, t.last_producer_epoch), (1, 0));
        m.complete(&t);
        let t = m.prepare_increment_epoch(1000, Some(0), 3).expect("retry");
        assert_eq!((t.producer_epoch, t.last_producer_epoch), (1, 0));
        m.complete(&t);
        assert_eq!(
            m.prepare_increment_epoch(1000, Some(5), 4),
            Err(ErrorCode::PRODUCER_FENCED)
        );
        assert_eq!(m.pending_state, None);
        m.producer_epoch = i16::MAX - 1;
        assert_eq!(
            m.prepare_increment_epoch(1000, None, 4),
            Err(ErrorCode::UNKNOWN_SERVER_ERROR)
        );
    }

    /// A second prepare while one is pending is refused; completing clears the pending state.
    #[test]
    fn one_pending_transition_at_a_time() {
        let mut m = ongoing(3);
        let t = m
            .prepare_abort_or_commit(TxnState::PrepareCommit, TxnVersion::TV0, -1, 9, false)
            .expect("prepare");
        assert_eq!(m.prepare_dead(), Err(ErrorCode::UNKNOWN_SERVER_ERROR));
        m.complete(&t);
        assert_eq!(m.state, TxnState::PrepareCommit);
        assert_eq!(m.pending_state, None);
        assert_eq!(m.producer_epoch, 3);
    }

    /// TV2 commit bumps the epoch; with the epoch exhausted the complete moves to the next
    /// producer id at epoch 0 and keeps the last epoch the client saw.
    #[test]
    fn tv2_commit_and_overflow() {
        let mut m = ongoing(i16::MAX - 1);
        m.last_producer_epoch = i16::MAX - 2;
        let t = m
            .prepare_abort_or_commit(TxnState::PrepareCommit, TxnVersion::TV2, 99, 9, false)
            .expect("prepare");
        assert_eq!(
            (t.producer_epoch, t.last_producer_epoch),
            (i16::MAX, i16::MAX - 1)
        );
        m.complete(&t);
        let c = m.prepare_complete(10).expect("complete");
        assert_eq!(
            (c.producer_id, c.producer_epoch, c.prev_producer_id),
            (99, 0, 7)
        );
        assert_eq!(c.last_producer_epoch, i16::MAX - 1);
        assert!(c.partitions.is_empty());
        m.complete(&c);
        assert_eq!(m.state, TxnState::CompleteCommit);
        assert_eq!(m.next_producer_id, -1);
    }

    /// Transitions out of the allowed-previous table are refused: commit from Empty, add
    /// partitions while preparing, dead while ongoing.
    #[test]
    fn illegal_transitions_are_refused() {
        let mut m = TxnMetadata::new("t", 7, 1000, 0);
        m.producer_epoch = 0;
        let bad = m.prepare_abort_or_commit(TxnState::PrepareCommit, TxnVersion::TV2, -1, 1, true);
        assert_eq!(bad, Err(ErrorCode::UNKNOWN_SERVER_ERROR));
        let mut o = ongoing(1);
        assert_eq!(o.prepare_dead(), Err(ErrorCode::UNKNOWN_SERVER_ERROR));
        o.state = TxnState::PrepareCommit;
        let add = o.prepare_add_partitions(&BTreeSet::new(), 1, TxnVersion::TV0);
        assert_eq!(add, Err(ErrorCode::UNKNOWN_SERVER_ERROR));
        let rot = o.prepare_producer_id_rotation(8, 1000, 1, false);
        assert_eq!(rot, Err(ErrorCode::UNKNOWN_SERVER_ERROR));
    }

    /// A fence bumps once; after a failed fence it does not bump again; at MAX it stays.
    #[test]
    fn fence_epoch() {
        let mut m = ongoing(4);
        assert_eq!(m.prepare_fence_epoch().map(|t| t.producer_epoch), Ok(5));
        m.pending_state = None;
        m.has_failed_epoch_fence = true;
        assert_eq!(m.prepare_fence_epoch().map(|t| t.producer_epoch), Ok(4));
        m.pending_state = None;
        m.has_failed_epoch_fence = false;
        m.producer_epoch = i16::MAX;
        assert_eq!(
            m.prepare_fence_epoch().map(|t| t.producer_epoch),
            Ok(i16::MAX)
        );
    }

    /// Log values: Empty writes null partitions, v0 drops the tags, and reading back gives the
    /// same persisted fields with the last epoch forgotten.
    #[test]
    fn log_value_round_trip() {
        let m = ongoing(2);
        let v = m.snapshot().to_log_value(1);
        assert_eq!(v.partitions.as_ref().map(Vec::len), Some(1));
        let back = TxnMetadata::from_log_value("t", &v).expect("state");
        assert_eq!(back, m);
        let mut e = TxnMetadata::new("t", 7, 1000, 0);
        e.prev_producer_id = 3;
        let v0 = e.snapshot().to_log_value(0);
        assert_eq!(v0.partitions, None);
        assert_eq!(v0.previous_producer_id, -1);
        let mut bad = v;
        bad.status = 9;
        assert_eq!(TxnMetadata::from_log_value("t", &bad), None);
    }

    /// Partitions are grouped by topic in ascending order.
    #[test]
    fn grouping() {
        let set: BTreeSet<_> = [tp("b", 1), tp("a", 2), tp("a", 0)].into_iter().collect();
        let g = group_partitions(&set);
        assert_eq!(g.len(), 2);
        assert_eq!(
            (g[0].topic.as_str(), g[0].partition_ids.clone()),
            ("a", vec![0, 2])
        );
        assert_eq!(
            (g[1].topic.as_str(), g[1].partition_ids.clone()),
            ("b", vec![1])
        );
    }
}
