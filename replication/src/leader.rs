//! The leader side of one partition (Kafka's `Partition` while it leads): its replica set and
//! ISR, leader epoch and partition epoch, each follower's progress, the high watermark, and the
//! waiting acks=all produces. Fetch handling is in `leader_fetch.rs`, ISR changes in
//! `leader_isr.rs`.
//!
//! A `PartitionLeader` lives beside its partition's log on the core that owns the partition;
//! every call passes the time and the log in and leaves what the caller must do in
//! `drain_effects` (AlterPartition requests, high watermark moves, produce answers).
//!
//! What must stay true: the high watermark never moves backwards, never passes the leader's
//! durable end (an acknowledged record is on the leader's disk, sluice's fdatasync default) nor
//! the log end of any member of the maximal ISR, and does not move while the committed ISR is
//! below `min.insync.replicas` (Kafka's `maybeIncrementLeaderHW`); a produce is acknowledged
//! only once the high watermark passes it.

use std::collections::BTreeMap;

use crate::acks::WaitingProduces;
use crate::isr::IsrState;
use crate::log::Log;
use crate::message::{Acks, AlterPartitionRequest, Effect, ProduceError};
use crate::progress::FollowerProgress;
use crate::types::{Config, Epoch, LeaderAndIsr, Offset, PartitionEpoch, ReplicaId};

/// The leader of one partition in one leader epoch.
#[derive(Debug, Clone)]
pub struct PartitionLeader {
    pub(crate) config: Config,
    pub(crate) leader_epoch: Epoch,
    pub(crate) partition_epoch: PartitionEpoch,
    pub(crate) replicas: Vec<ReplicaId>,
    pub(crate) isr: IsrState,
    /// The log end when this epoch began: the first offset this leader wrote.
    pub(crate) epoch_start_offset: Offset,
    pub(crate) high_watermark: Offset,
    pub(crate) followers: BTreeMap<ReplicaId, FollowerProgress>,
    pub(crate) waiting: WaitingProduces,
    pub(crate) effects: Vec<Effect>,
    /// When to send the AlterPartition in flight again, while no answer came.
    pub(crate) alter_partition_retry_at: Option<u64>,
}

impl PartitionLeader {
    /// This replica becomes leader in `state`'s (new) leader epoch, with the high watermark it
    /// knew as a follower (Kafka's `makeLeader`): it notes its epoch at its log end in the
    /// leader epoch cache, and starts knowing nothing of its followers.
    pub fn new<L: Log>(
        config: Config,
        state: &LeaderAndIsr,
        now_ms: u64,
        log: &mut L,
        high_watermark: Offset,
    ) -> PartitionLeader {
        assert_eq!(
            state.leader,
            Some(config.replica_id),
            "not the leader of {state:?}"
        );
        let epoch_start_offset = log.log_end();
        log.assign_epoch_start(state.leader_epoch, epoch_start_offset);
        let followers = state
            .replicas
            .iter()
            .filter(|&&r| r != config.replica_id)
            .map(|&r| {
                (
                    r,
                    FollowerProgress::for_new_leader(now_ms, state.isr.contains(&r)),
                )
            })
            .collect();
        let waiting = WaitingProduces::new(config.waiting_produces_max);
        let mut leader = PartitionLeader {
            config,
            leader_epoch: state.leader_epoch,
            partition_epoch: state.partition_epoch,
            replicas: state.replicas.clone(),
            isr: IsrState::committed(state.isr.clone()),
            epoch_start_offset,
            high_watermark: high_watermark.min(log.log_end()),
            followers,
            waiting,
            effects: Vec::new(),
            alter_partition_retry_at: None,
        };
        leader.maybe_increment_high_watermark(now_ms, log);
        leader
    }

    /// The same replica leads again in a newer leader epoch: a new epoch start, the ISR from
    /// `state`, and the followers' log ends kept (Kafka's `makeLeader` when it already led).
    pub fn reelect<L: Log>(&mut self, state: &LeaderAndIsr, now_ms: u64, log: &mut L) {
        assert!(
            state.leader_epoch > self.leader_epoch,
            "re-elected in an old epoch"
        );
        self.epoch_start_offset = log.log_end();
        log.assign_epoch_start(state.leader_epoch, self.epoch_start_offset);
        self.leader_epoch = state.leader_epoch;
        self.set_replicas(state, now_ms);
        let start = self.epoch_start_offset;
        for (id, progress) in &mut self.followers {
            progress.reelected(now_ms, start, state.isr.contains(id));
        }
        self.maybe_increment_high_watermark(now_ms, log);
    }

    /// The replica set, ISR and partition epoch from the controller (the AlterPartition in
    /// flight, if any, is forgotten: the controller's state wins).
    pub(crate) fn set_replicas(&mut self, state: &LeaderAndIsr, now_ms: u64) {
        self.partition_epoch = state.partition_epoch;
        self.replicas = state.replicas.clone();
        self.isr = IsrState::committed(state.isr.clone());
        let me = self.config.replica_id;
        self.followers.retain(|id, _| state.replicas.contains(id));
        for &replica in state.replicas.iter().filter(|&&r| r != me) {
            self.followers
                .entry(replica)
                .or_insert_with(|| FollowerProgress::for_new_leader(now_ms, false));
        }
    }

    /// The leader epoch this replica leads.
    pub fn leader_epoch(&self) -> Epoch {
        self.leader_epoch
    }

    /// The partition epoch the leader's ISR is based on.
    pub fn partition_epoch(&self) -> PartitionEpoch {
        self.partition_epoch
    }

    /// The high watermark: consumers read below it.
    pub fn high_watermark(&self) -> Offset {
        self.high_watermark
    }

    /// The first offset of this leader epoch.
    pub fn epoch_start_offset(&self) -> Offset {
        self.epoch_start_offset
    }

    /// The committed ISR.
    pub fn isr(&self) -> &[ReplicaId] {
        self.isr.isr()
    }

    /// The ISR the high watermark waits for (the committed one, plus a member being added).
    pub fn maximal_isr(&self) -> Vec<ReplicaId> {
        self.isr.maximal_isr()
    }

    /// The AlterPartition waiting for the controller's answer, if any.
    pub fn alter_partition_in_flight(&self) -> Option<&AlterPartitionRequest> {
        self.isr.in_flight()
    }

    /// How many acks=all produces wait.
    pub fn waiting_produce_count(&self) -> usize {
        self.waiting.len()
    }

    /// Whether ListOffsets may be answered: Kafka answers OFFSET_NOT_AVAILABLE while the high
    /// watermark is below the start of the current leader epoch (a new leader's high
    /// watermark may lag the one its predecessor had shown consumers).
    pub fn offsets_available(&self) -> bool {
        self.high_watermark >= self.epoch_start_offset
    }

    /// `min.insync.replicas`, capped at the replication factor (Kafka's `effectiveMinIsr`).
    pub(crate) fn effective_min_isr(&self) -> usize {
        self.config.min_insync_replicas.min(self.replicas.len())
    }

    /// Appends `batch` in this leader epoch (Kafka's `appendRecordsToLeader`). An acks=all
    /// produce is refused with NOT_ENOUGH_REPLICAS while the committed ISR is below
    /// `min.insync.replicas`, and otherwise waits for the high watermark (answered in an
    /// `Effect::ProduceDone`). Returns the batch's first and last offsets.
    pub fn append<L: Log>(
        &mut self,
        now_ms: u64,
        log: &mut L,
        batch: L::Batch,
        acks: Acks,
    ) -> Result<(Offset, Offset), ProduceError> {
        if let Acks::All { .. } = acks {
            if self.isr.isr().len() < self.effective_min_isr() {
                return Err(ProduceError::NotEnoughReplicas);
            }
            if self.waiting.is_full() {
                return Err(ProduceError::TooManyWaiting);
            }
        }
        let (base, last) = log.append_as_leader(self.leader_epoch, batch);
        if let Acks::All { token, timeout_ms } = acks {
            self.waiting
                .add(token, base, last.next(), now_ms + timeout_ms);
        }
        self.maybe_increment_high_watermark(now_ms, log);
        Ok((base, last))
    }

    /// Time passes: followers that lag too long leave the ISR (an AlterPartition), the high
    /// watermark follows a sync of the leader's log, waiting produces time out, an unanswered
    /// AlterPartition is sent again. Call after
    /// every sync of the log and at least every `replica_lag_time_max_ms / 2`.
    pub fn tick<L: Log>(&mut self, now_ms: u64, log: &L) {
        self.maybe_resend_alter_partition(now_ms);
        self.maybe_shrink_isr(now_ms, log);
        self.maybe_increment_high_watermark(now_ms, log);
        self.waiting.expire(now_ms, &mut self.effects);
    }

    /// This replica stops leading: every waiting produce fails with NOT_LEADER_OR_FOLLOWER.
    /// Returns the effects left, those answers included.
    pub fn resign(&mut self) -> Vec<Effect> {
        self.waiting
            .fail_all(ProduceError::NotLeaderOrFollower, &mut self.effects);
        self.drain_effects()
    }

    /// What the caller must do, in order.
    pub fn drain_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// Kafka's `maybeIncrementLeaderHW`: the smallest log end among the leader (its durable
    /// end here) and the followers of the maximal ISR, and those caught up and eligible to
    /// join it (so a follower about to join is not left behind); not while the committed ISR
    /// is below `min.insync.replicas`. Returns whether it moved.
    pub(crate) fn maybe_increment_high_watermark<L: Log>(&mut self, now_ms: u64, log: &L) -> bool {
        if self.isr.isr().len() < self.effective_min_isr() {
            return false;
        }
        let leader_end = log.log_end();
        let maximal = self.isr.maximal_isr();
        let lag_max_ms = self.config.replica_lag_time_max_ms;
        let mut candidate = log.durable_end();
        for (id, progress) in &self.followers {
            let joining = progress.broker_epoch.is_some()
                && progress.is_caught_up(leader_end, now_ms, lag_max_ms);
            if maximal.contains(id) || joining {
                candidate = candidate.min(progress.log_end.unwrap_or(Offset(-1)));
            }
        }
        if candidate <= self.high_watermark {
            return false;
        }
        self.high_watermark = candidate;
        self.effects.push(Effect::HighWatermark(candidate));
        self.release_waiting();
        true
    }

    /// Kafka's `checkEnoughReplicasReachOffset`, for a broker-level purgatory holding a
    /// produce to several partitions: whether the high watermark has reached
    /// `required_offset` (a batch's last offset + 1) and, if so, its answer: NOT_ENOUGH_-
    /// REPLICAS_AFTER_APPEND when the maximal ISR is now below `min.insync.replicas`. (With
    /// the high watermark frozen under `min.insync.replicas`, this is how Kafka 4 still
    /// reaches that error: a partition passed earlier, re-checked when the last one passes.)
    pub fn check_enough_replicas_reach_offset(
        &self,
        required_offset: Offset,
    ) -> Option<Result<(), ProduceError>> {
        if self.high_watermark < required_offset {
            return None;
        }
        if self.isr.maximal_isr().len() >= self.effective_min_isr() {
            Some(Ok(()))
        } else {
            Some(Err(ProduceError::NotEnoughReplicasAfterAppend))
        }
    }

    /// Answers the produces the high watermark has passed.
    pub(crate) fn release_waiting(&mut self) {
        let enough = self.isr.maximal_isr().len() >= self.effective_min_isr();
        self.waiting
            .release(self.high_watermark, enough, &mut self.effects);
    }
}
