//! One partition replica on one broker: its log and its role, leader or follower, as the
//! controller's partition state (the metadata image) decides. `PartitionReplica` routes each
//! input to the role and makes the role changes Kafka's `makeLeader` / `makeFollower` make:
//! a newer leader epoch naming this replica starts a new `PartitionLeader` (or re-elects the
//! current one); one naming another starts a new `PartitionFollower`; a newer partition epoch
//! of the same leader epoch updates the leader's ISR. The high watermark carries over.
//!
//! What must stay true: partition states are applied in partition epoch order (older ones are
//! ignored); a leader that stops leading answers every waiting produce.

use std::collections::BTreeSet;

use crate::follower::{FetchOutcome, PartitionFollower};
use crate::leader::PartitionLeader;
use crate::log::Log;
use crate::message::{
    Acks, AlterPartitionAnswer, Effect, FetchError, FetchRequest, FetchResponse, ProduceError,
};
use crate::types::{Config, Epoch, LeaderAndIsr, Offset, PartitionEpoch, ReplicaId};

/// A replica's role in the partition.
#[derive(Debug, Clone)]
pub enum Role {
    /// No partition state applied yet.
    Unassigned,
    Leader(Box<PartitionLeader>),
    Follower(PartitionFollower),
}

/// One partition's replica: its log and its role.
#[derive(Debug, Clone)]
pub struct PartitionReplica<L: Log> {
    config: Config,
    log: L,
    role: Role,
    /// The newest partition state applied, by (partition epoch, leader epoch).
    applied: Option<(PartitionEpoch, Epoch)>,
    /// The high watermark while unassigned (from a checkpoint, say).
    high_watermark: Offset,
}

impl<L: Log> PartitionReplica<L> {
    /// A replica over `log`, waiting for its first partition state.
    pub fn new(config: Config, log: L, high_watermark: Offset) -> PartitionReplica<L> {
        PartitionReplica {
            config,
            high_watermark: high_watermark.min(log.log_end()),
            log,
            role: Role::Unassigned,
            applied: None,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn log(&self) -> &L {
        &self.log
    }

    /// The log, for what the replication core does not do (syncing the leader's appends,
    /// retention). Do not append or truncate through it.
    pub fn log_mut(&mut self) -> &mut L {
        &mut self.log
    }

    pub fn role(&self) -> &Role {
        &self.role
    }

    /// The leader, when this replica leads.
    pub fn leader(&self) -> Option<&PartitionLeader> {
        match &self.role {
            Role::Leader(leader) => Some(leader.as_ref()),
            _ => None,
        }
    }

    /// The leader epoch of the role (None while unassigned).
    pub fn leader_epoch(&self) -> Option<Epoch> {
        match &self.role {
            Role::Unassigned => None,
            Role::Leader(l) => Some(l.leader_epoch()),
            Role::Follower(f) => Some(f.leader_epoch()),
        }
    }

    /// The high watermark this replica knows.
    pub fn high_watermark(&self) -> Offset {
        match &self.role {
            Role::Unassigned => self.high_watermark,
            Role::Leader(l) => l.high_watermark(),
            Role::Follower(f) => f.high_watermark(),
        }
    }

    /// Applies the controller's partition state (Kafka's `makeLeader` / `makeFollower`).
    /// Returns the effects of a leader that stops leading (its waiting produces' answers).
    pub fn apply_partition_state(&mut self, now_ms: u64, state: &LeaderAndIsr) -> Vec<Effect> {
        let key = (state.partition_epoch, state.leader_epoch);
        if self.applied.is_some_and(|applied| key < applied) {
            return Vec::new();
        }
        self.applied = Some(key);
        if state.leader == Some(self.config.replica_id) {
            self.lead(now_ms, state);
            return Vec::new();
        }
        let mut effects = Vec::new();
        if let Role::Leader(leader) = &mut self.role {
            effects = leader.resign();
        }
        let same_epoch = matches!(&self.role, Role::Follower(f)
            if f.leader_epoch() == state.leader_epoch && f.leader() == state.leader);
        if !same_epoch {
            let high_watermark = self.high_watermark();
            let follower =
                PartitionFollower::new(self.config.clone(), state, &self.log, high_watermark);
            self.role = Role::Follower(follower);
        }
        effects
    }

    fn lead(&mut self, now_ms: u64, state: &LeaderAndIsr) {
        match &mut self.role {
            Role::Leader(leader) if leader.leader_epoch() == state.leader_epoch => {
                leader.update_partition_state(now_ms, &self.log, state);
            }
            Role::Leader(leader) if leader.leader_epoch() < state.leader_epoch => {
                leader.reelect(state, now_ms, &mut self.log);
            }
            Role::Leader(_) => {}
            _ => {
                let high_watermark = self.high_watermark();
                let config = self.config.clone();
                let leader =
                    PartitionLeader::new(config, state, now_ms, &mut self.log, high_watermark);
                self.role = Role::Leader(Box::new(leader));
            }
        }
    }

    /// The brokers the metadata says may not join an ISR now (fenced, in controlled
    /// shutdown), for the leader (`LeaderReplicas::set_ineligible`); nothing when following.
    pub fn set_ineligible(&mut self, brokers: &BTreeSet<ReplicaId>) {
        if let Role::Leader(leader) = &mut self.role {
            leader.set_ineligible(brokers);
        }
    }

    /// A produce to this replica: appended when it leads, else NOT_LEADER_OR_FOLLOWER.
    pub fn append(
        &mut self,
        now_ms: u64,
        batch: L::Batch,
        acks: Acks,
    ) -> Result<(Offset, Offset), ProduceError> {
        match &mut self.role {
            Role::Leader(leader) => leader.append(now_ms, &mut self.log, batch, acks),
            _ => Err(ProduceError::NotLeaderOrFollower),
        }
    }

    /// A follower's Fetch to this replica: served when it leads; else the leader epoch
    /// errors, or NOT_LEADER_OR_FOLLOWER (Kafka's `getLocalLog`).
    pub fn handle_fetch(&mut self, now_ms: u64, request: &FetchRequest) -> FetchResponse<L::Batch> {
        if let Role::Leader(leader) = &mut self.role {
            return leader.handle_fetch(now_ms, &self.log, request);
        }
        let epoch = self.leader_epoch().unwrap_or(Epoch(-1));
        let error = if request.current_leader_epoch < epoch {
            FetchError::FencedLeaderEpoch
        } else if request.current_leader_epoch > epoch {
            FetchError::UnknownLeaderEpoch
        } else {
            FetchError::NotLeaderOrFollower
        };
        FetchResponse {
            current_leader_epoch: request.current_leader_epoch,
            fetch_offset: request.fetch_offset,
            last_fetched_epoch: request.last_fetched_epoch,
            error: Some(error),
            high_watermark: Offset(-1),
            log_start_offset: self.log.log_start(),
            diverging_epoch: None,
            batches: Vec::new(),
        }
    }

    /// The Fetch to send now, when following.
    pub fn poll_fetch(&mut self, now_ms: u64) -> Option<FetchRequest> {
        match &mut self.role {
            Role::Follower(follower) => follower.poll_fetch(now_ms, &mut self.log),
            _ => None,
        }
    }

    /// The leader's answer to this replica's Fetch.
    pub fn handle_fetch_response(
        &mut self,
        now_ms: u64,
        response: FetchResponse<L::Batch>,
    ) -> FetchOutcome {
        match &mut self.role {
            Role::Follower(f) => f.handle_fetch_response(now_ms, &mut self.log, response),
            _ => FetchOutcome::Ignored,
        }
    }

    /// The controller's answer to this replica's AlterPartition.
    pub fn handle_alter_partition_answer(&mut self, now_ms: u64, answer: &AlterPartitionAnswer) {
        if let Role::Leader(leader) = &mut self.role {
            leader.handle_alter_partition_answer(now_ms, &self.log, answer);
        }
    }

    /// Time passes (see `PartitionLeader::tick`).
    pub fn tick(&mut self, now_ms: u64) {
        if let Role::Leader(leader) = &mut self.role {
            leader.tick(now_ms, &self.log);
        }
    }

    /// What the leader asks its caller to do (nothing when following).
    pub fn drain_effects(&mut self) -> Vec<Effect> {
        match &mut self.role {
            Role::Leader(leader) => leader.drain_effects(),
            _ => Vec::new(),
        }
    }
}
