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

use crate::acks::WaitingProduces;
use crate::leader_replicas::LeaderReplicas;
use crate::log::Log;
use crate::message::{Acks, AlterPartitionAnswer, AlterPartitionRequest, Effect, ProduceError};
use crate::types::{Config, Epoch, LeaderAndIsr, Offset, PartitionEpoch, ReplicaId};

/// The leader of one partition in one leader epoch.
#[derive(Debug, Clone)]
pub struct PartitionLeader {
    /// Its replicas, ISR and epochs (what sluice's broker runs too).
    pub(crate) replicas: LeaderReplicas,
    pub(crate) high_watermark: Offset,
    pub(crate) waiting: WaitingProduces,
    pub(crate) effects: Vec<Effect>,
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
        let waiting = WaitingProduces::new(config.waiting_produces_max);
        let replicas = LeaderReplicas::new(config, state, now_ms, log.log_end());
        log.assign_epoch_start(state.leader_epoch, replicas.epoch_start_offset());
        let mut leader = PartitionLeader {
            replicas,
            high_watermark: high_watermark.min(log.log_end()),
            waiting,
            effects: Vec::new(),
        };
        leader.maybe_increment_high_watermark(now_ms, log);
        leader
    }

    /// The same replica leads again in a newer leader epoch: a new epoch start, the ISR from
    /// `state`, and the followers' log ends kept (Kafka's `makeLeader` when it already led).
    pub fn reelect<L: Log>(&mut self, state: &LeaderAndIsr, now_ms: u64, log: &mut L) {
        self.replicas.reelect(state, now_ms, log.log_end());
        log.assign_epoch_start(state.leader_epoch, self.replicas.epoch_start_offset());
        self.maybe_increment_high_watermark(now_ms, log);
    }

    /// The replicas, ISR and epochs this leader tracks.
    pub fn replicas(&self) -> &LeaderReplicas {
        &self.replicas
    }

    /// The leader epoch this replica leads.
    pub fn leader_epoch(&self) -> Epoch {
        self.replicas.leader_epoch()
    }

    /// The partition epoch the leader's ISR is based on.
    pub fn partition_epoch(&self) -> PartitionEpoch {
        self.replicas.partition_epoch()
    }

    /// The high watermark: consumers read below it.
    pub fn high_watermark(&self) -> Offset {
        self.high_watermark
    }

    /// The first offset of this leader epoch.
    pub fn epoch_start_offset(&self) -> Offset {
        self.replicas.epoch_start_offset()
    }

    /// The committed ISR.
    pub fn isr(&self) -> &[ReplicaId] {
        self.replicas.isr()
    }

    /// The ISR the high watermark waits for (the committed one, plus a member being added).
    pub fn maximal_isr(&self) -> Vec<ReplicaId> {
        self.replicas.maximal_isr()
    }

    /// The AlterPartition waiting for the controller's answer, if any.
    pub fn alter_partition_in_flight(&self) -> Option<&AlterPartitionRequest> {
        self.replicas.alter_partition_in_flight()
    }

    /// How many acks=all produces wait.
    pub fn waiting_produce_count(&self) -> usize {
        self.waiting.len()
    }

    /// Whether ListOffsets may be answered: Kafka answers OFFSET_NOT_AVAILABLE while the high
    /// watermark is below the start of the current leader epoch (a new leader's high
    /// watermark may lag the one its predecessor had shown consumers).
    pub fn offsets_available(&self) -> bool {
        self.high_watermark >= self.replicas.epoch_start_offset()
    }

    /// The brokers that may not join the ISR now, of those the metadata names
    /// (`LeaderReplicas::set_ineligible`).
    pub fn set_ineligible(&mut self, brokers: &std::collections::BTreeSet<ReplicaId>) {
        let ineligible = self
            .replicas
            .replicas()
            .iter()
            .filter(|r| brokers.contains(r));
        let ineligible: Vec<ReplicaId> = ineligible.copied().collect();
        self.replicas.set_ineligible(ineligible);
    }

    /// Moves the AlterPartition requests the replicas produced into the effects, in order.
    pub(crate) fn send_alter_partitions(&mut self) {
        let requests = self.replicas.take_alter_partition_requests();
        self.effects
            .extend(requests.into_iter().map(Effect::AlterPartition));
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
            if self.replicas.below_min_isr() {
                return Err(ProduceError::NotEnoughReplicas);
            }
            if self.waiting.is_full() {
                return Err(ProduceError::TooManyWaiting);
            }
        }
        let (base, last) = log.append_as_leader(self.replicas.leader_epoch(), batch);
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
        self.replicas.maybe_resend_alter_partition(now_ms);
        self.replicas.maybe_shrink_isr(now_ms, log.log_end());
        self.send_alter_partitions();
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

    /// Kafka's `maybeIncrementLeaderHW`: the smaller of the leader's durable end and the
    /// replicas' bound (`LeaderReplicas::high_watermark_bound`); not while the committed ISR is
    /// below `min.insync.replicas`. Returns whether it moved.
    pub(crate) fn maybe_increment_high_watermark<L: Log>(&mut self, now_ms: u64, log: &L) -> bool {
        let Some(bound) = self.replicas.high_watermark_bound(now_ms, log.log_end()) else {
            return false;
        };
        let candidate = log.durable_end().min(bound);
        if candidate <= self.high_watermark {
            return false;
        }
        self.high_watermark = candidate;
        self.effects.push(Effect::HighWatermark(candidate));
        self.release_waiting();
        true
    }

    /// The controller answered an AlterPartition (`LeaderReplicas::handle_alter_partition_-
    /// answer`); a committed ISR may move the high watermark, and a shrink may have left the
    /// maximal ISR below `min.insync.replicas`.
    pub fn handle_alter_partition_answer<L: Log>(
        &mut self,
        now_ms: u64,
        log: &L,
        answer: &AlterPartitionAnswer,
    ) {
        let committed = self.replicas.handle_alter_partition_answer(now_ms, answer);
        self.send_alter_partitions();
        if committed {
            self.maybe_increment_high_watermark(now_ms, log);
            self.release_waiting();
        }
    }

    /// A partition state of the same leader epoch from the metadata
    /// (`LeaderReplicas::update_partition_state`).
    pub fn update_partition_state<L: Log>(&mut self, now_ms: u64, log: &L, state: &LeaderAndIsr) {
        if self.replicas.update_partition_state(now_ms, state) {
            self.maybe_increment_high_watermark(now_ms, log);
        }
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
        if self.replicas.enough_replicas() {
            Some(Ok(()))
        } else {
            Some(Err(ProduceError::NotEnoughReplicasAfterAppend))
        }
    }

    /// Answers the produces the high watermark has passed.
    pub(crate) fn release_waiting(&mut self) {
        let enough = self.replicas.enough_replicas();
        self.waiting
            .release(self.high_watermark, enough, &mut self.effects);
    }
}
