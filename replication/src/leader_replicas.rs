//! What a leader knows of its partition's replicas, apart from its log (Kafka's `Partition`
//! fields `partitionState` and `remoteReplicasMap`): the replica set and ISR, the leader epoch
//! and partition epoch, where this epoch began, each follower's progress, and the
//! AlterPartition requests it has to send. ISR changes are in `leader_isr.rs`.
//!
//! It is the part of a leader a broker can run beside a log it keeps in its own way: it is
//! given the log's ends as numbers and never touches the log. `PartitionLeader` wraps it with
//! the high watermark and the waiting produces over a `Log`, and the simulator runs it there;
//! sluice's broker runs the same `LeaderReplicas` over its storage engine's partitions (its
//! high watermark bound comes from [`LeaderReplicas::high_watermark_bound`]).
//!
//! What must stay true: the bound never passes the log end of any member of the maximal ISR,
//! and there is none while the committed ISR is below `min.insync.replicas`.

use std::collections::{BTreeMap, BTreeSet};

use crate::isr::IsrState;
use crate::message::AlterPartitionRequest;
use crate::progress::FollowerProgress;
use crate::types::{BrokerEpoch, Config, Epoch, LeaderAndIsr, Offset, PartitionEpoch, ReplicaId};

/// A leader's replicas in one leader epoch.
#[derive(Debug, Clone)]
pub struct LeaderReplicas {
    pub(crate) config: Config,
    pub(crate) leader_epoch: Epoch,
    pub(crate) partition_epoch: PartitionEpoch,
    pub(crate) replicas: Vec<ReplicaId>,
    pub(crate) isr: IsrState,
    /// The log end when this epoch began: the first offset this leader wrote.
    pub(crate) epoch_start_offset: Offset,
    pub(crate) followers: BTreeMap<ReplicaId, FollowerProgress>,
    /// When to send the AlterPartition in flight again, while no answer came.
    pub(crate) alter_partition_retry_at: Option<u64>,
    /// AlterPartition requests to send, oldest first.
    pub(crate) outbox: Vec<AlterPartitionRequest>,
    /// Replicas whose broker the caller's metadata says may not join the ISR (fenced, in
    /// controlled shutdown, not registered: Kafka's `isReplicaIsrEligible`).
    pub(crate) ineligible: BTreeSet<ReplicaId>,
}

impl LeaderReplicas {
    /// This replica becomes leader in `state`'s (new) leader epoch at log end `log_end`
    /// (Kafka's `makeLeader`), knowing nothing of its followers: ISR members count as caught
    /// up now, others never.
    pub fn new(config: Config, state: &LeaderAndIsr, now_ms: u64, log_end: Offset) -> Self {
        assert_eq!(
            state.leader,
            Some(config.replica_id),
            "not the leader of {state:?}"
        );
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
        LeaderReplicas {
            config,
            leader_epoch: state.leader_epoch,
            partition_epoch: state.partition_epoch,
            replicas: state.replicas.clone(),
            isr: IsrState::committed(state.isr.clone()),
            epoch_start_offset: log_end,
            followers,
            alter_partition_retry_at: None,
            outbox: Vec::new(),
            ineligible: BTreeSet::new(),
        }
    }

    /// The same replica leads again in a newer leader epoch, at log end `log_end`: a new epoch
    /// start, the ISR from `state`, the followers' log ends kept and their clocks restarted
    /// (Kafka's `makeLeader` when it already led).
    pub fn reelect(&mut self, state: &LeaderAndIsr, now_ms: u64, log_end: Offset) {
        assert!(
            state.leader_epoch > self.leader_epoch,
            "re-elected in an old epoch"
        );
        self.epoch_start_offset = log_end;
        self.leader_epoch = state.leader_epoch;
        self.set_replicas(state, now_ms);
        for (id, progress) in &mut self.followers {
            progress.reelected(now_ms, log_end, state.isr.contains(id));
        }
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

    /// A partition state of the same leader epoch reached this leader through the metadata
    /// (the controller changed the ISR itself, e.g. fencing a broker, or committed this
    /// leader's AlterPartition). A newer partition epoch replaces the ISR, in flight or not
    /// (the controller will refuse a request based on an older one). An older one is ignored
    /// (Kafka's `makeLeader` skips it), and so is the current one while an AlterPartition
    /// based on it is in flight: the controller may still apply that request, so the maximal
    /// ISR it implies must keep holding the high watermark back. (Kafka's `makeLeader` resets
    /// to the committed ISR here. The simulator's seed 26, run with the min-ISR freeze of the
    /// high watermark mutated away, showed the harm: the state that had answered the leader's
    /// shrink arrived late, wiped the expansion in flight, the high watermark passed the
    /// joining follower's log end, and the controller then added that follower, which was
    /// elected and lost committed records.) Returns whether the state was taken.
    pub fn update_partition_state(&mut self, now_ms: u64, state: &LeaderAndIsr) -> bool {
        assert_eq!(
            state.leader_epoch, self.leader_epoch,
            "a state of another leader epoch"
        );
        if state.partition_epoch < self.partition_epoch {
            return false;
        }
        if state.partition_epoch == self.partition_epoch && self.isr.in_flight().is_some() {
            return false;
        }
        self.set_replicas(state, now_ms);
        true
    }

    /// This replica's settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// `min.insync.replicas` from now on (a topic's setting changed).
    pub fn set_min_insync_replicas(&mut self, min_insync_replicas: usize) {
        self.config.min_insync_replicas = min_insync_replicas;
    }

    /// The leader epoch this replica leads.
    pub fn leader_epoch(&self) -> Epoch {
        self.leader_epoch
    }

    /// The partition epoch the leader's ISR is based on.
    pub fn partition_epoch(&self) -> PartitionEpoch {
        self.partition_epoch
    }

    /// The first offset of this leader epoch.
    pub fn epoch_start_offset(&self) -> Offset {
        self.epoch_start_offset
    }

    /// The assigned replicas.
    pub fn replicas(&self) -> &[ReplicaId] {
        &self.replicas
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

    /// `min.insync.replicas`, capped at the replication factor (Kafka's `effectiveMinIsr`).
    pub fn effective_min_isr(&self) -> usize {
        self.config.min_insync_replicas.min(self.replicas.len())
    }

    /// Whether acks=all produces are refused before appending (NOT_ENOUGH_REPLICAS): the
    /// committed ISR is below `min.insync.replicas`.
    pub fn below_min_isr(&self) -> bool {
        self.isr.isr().len() < self.effective_min_isr()
    }

    /// Whether the maximal ISR still has `min.insync.replicas` members (else a produce the
    /// high watermark passes is answered NOT_ENOUGH_REPLICAS_AFTER_APPEND).
    pub fn enough_replicas(&self) -> bool {
        self.isr.maximal_isr().len() >= self.effective_min_isr()
    }

    /// The replicas whose broker may not join the ISR now, from the caller's metadata (Kafka's
    /// `isReplicaIsrEligible`: fenced, in controlled shutdown, or not registered): they are
    /// not proposed for the ISR and a caught-up one does not hold the high watermark back as
    /// about to join. (A SIGTERMed broker still fetches while it moves its leaderships away;
    /// counted as joining, its last fetch would hold the high watermark for
    /// `replica_lag_time_max_ms` after it exits.) Without a call, every replica that has sent
    /// a Fetch with a broker epoch is eligible.
    pub fn set_ineligible(&mut self, replicas: impl IntoIterator<Item = ReplicaId>) {
        self.ineligible = replicas.into_iter().collect();
    }

    /// Whether `replica` may join the ISR: its broker epoch known from a Fetch (KIP-903) and
    /// not ineligible by the caller's metadata.
    pub(crate) fn is_eligible(&self, replica: ReplicaId) -> bool {
        !self.ineligible.contains(&replica)
            && self
                .followers
                .get(&replica)
                .is_some_and(|p| p.broker_epoch.is_some())
    }

    /// Whether `replica` is one of this partition's followers.
    pub fn is_follower(&self, replica: ReplicaId) -> bool {
        self.followers.contains_key(&replica)
    }

    /// The broker epoch of the last Fetch from `replica`, if any came (KIP-903).
    pub fn follower_broker_epoch(&self, replica: ReplicaId) -> Option<BrokerEpoch> {
        self.followers.get(&replica).and_then(|p| p.broker_epoch)
    }

    /// A valid Fetch from `replica` at `fetch_offset`, served when the leader's log ended at
    /// `leader_end` (Kafka's `updateFollowerFetchState`), then maybe its return to the ISR
    /// (the high watermark is `high_watermark`). Returns whether the follower's log end
    /// moved (so the high watermark may), `None` when it is not a follower.
    pub fn record_fetch(
        &mut self,
        now_ms: u64,
        replica: ReplicaId,
        position: (Offset, Offset),
        leader_end: Offset,
        broker_epoch: BrokerEpoch,
        high_watermark: Offset,
    ) -> Option<bool> {
        let (fetch_offset, log_start) = position;
        let progress = self.followers.get_mut(&replica)?;
        let previous_end = progress.log_end;
        progress.record_fetch(fetch_offset, log_start, now_ms, leader_end, broker_epoch);
        self.maybe_expand_isr(now_ms, replica, high_watermark);
        Some(previous_end != Some(fetch_offset))
    }

    /// Kafka's `maybeIncrementLeaderHW` without the leader's own log: the smallest log end of
    /// the followers in the maximal ISR, and of those caught up and eligible to join it (so
    /// a follower about to join is not left behind; one not fetched yet counts as -1); `None`
    /// while the committed ISR is below `min.insync.replicas` (the high watermark stays);
    /// `Offset(i64::MAX)` when no follower counts. The high watermark is the smaller of this
    /// and the leader's durable end, and never moves back.
    pub fn high_watermark_bound(&self, now_ms: u64, leader_end: Offset) -> Option<Offset> {
        if self.below_min_isr() {
            return None;
        }
        let lag_max_ms = self.config.replica_lag_time_max_ms;
        let mut bound = Offset(i64::MAX);
        for (id, progress) in &self.followers {
            let joining =
                || self.is_eligible(*id) && progress.is_caught_up(leader_end, now_ms, lag_max_ms);
            if self.isr.in_maximal_isr(*id) || joining() {
                bound = bound.min(progress.log_end.unwrap_or(Offset(-1)));
            }
        }
        Some(bound)
    }

    /// The AlterPartition requests to send now, oldest first.
    pub fn take_alter_partition_requests(&mut self) -> Vec<AlterPartitionRequest> {
        std::mem::take(&mut self.outbox)
    }
}
