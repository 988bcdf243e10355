//! One partition's registration in the image (Kafka's `PartitionRegistration`): replicas, ISR,
//! leader and the two epochs, built from a `PartitionRecord` and moved by `PartitionChangeRecord`s.
//!
//! Invariant kept by `merge` (as Kafka's): every change bumps the partition epoch by one; a
//! change that names a leader (even the same one) bumps the leader epoch by one; a field the
//! record leaves null keeps its value.

use sluice_net::Uuid;
use sluice_net::messages::{PartitionChangeRecord, PartitionRecord};

/// Leader value meaning "no leader" (the partition is offline).
pub const NO_LEADER: i32 = -1;
/// Leader value in a `PartitionChangeRecord` meaning "leader unchanged".
pub const NO_LEADER_CHANGE: i32 = -2;

/// A partition's state. `leader == -1` means offline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRegistration {
    /// Replicas in preferred order.
    pub replicas: Vec<i32>,
    /// Log directory of each replica (same order as `replicas`).
    pub directories: Vec<Uuid>,
    /// In-sync replicas.
    pub isr: Vec<i32>,
    /// Replicas being removed by a reassignment.
    pub removing_replicas: Vec<i32>,
    /// Replicas being added by a reassignment.
    pub adding_replicas: Vec<i32>,
    /// The leader, or -1.
    pub leader: i32,
    /// 0 recovered, 1 recovering from an unclean election.
    pub leader_recovery_state: i8,
    /// Bumped at every leader change.
    pub leader_epoch: i32,
    /// Bumped at every change.
    pub partition_epoch: i32,
    /// Eligible leader replicas (KIP-966).
    pub elr: Vec<i32>,
    /// Last known eligible leader replicas (KIP-966).
    pub last_known_elr: Vec<i32>,
}

impl PartitionRegistration {
    /// The registration a `PartitionRecord` describes.
    pub fn from_record(r: &PartitionRecord) -> PartitionRegistration {
        PartitionRegistration {
            replicas: r.replicas.iter().map(|b| b.get()).collect(),
            directories: r.directories.clone(),
            isr: r.isr.clone(),
            removing_replicas: r.removing_replicas.iter().map(|b| b.get()).collect(),
            adding_replicas: r.adding_replicas.iter().map(|b| b.get()).collect(),
            leader: r.leader.get(),
            leader_recovery_state: r.leader_recovery_state,
            leader_epoch: r.leader_epoch,
            partition_epoch: r.partition_epoch,
            elr: ids(r.eligible_leader_replicas.as_deref().unwrap_or_default()),
            last_known_elr: ids(r.last_known_elr.as_deref().unwrap_or_default()),
        }
    }

    /// The log directory of replica `broker`; `None` if it is not a replica.
    pub fn directory(&self, broker: i32) -> Option<Uuid> {
        let index = self.replicas.iter().position(|&r| r == broker)?;
        Some(self.directories.get(index).copied().unwrap_or(Uuid::ZERO))
    }

    /// Whether the partition has no leader.
    pub fn is_offline(&self) -> bool {
        self.leader == NO_LEADER
    }

    /// The registration after `r` (Kafka's `PartitionRegistration.merge`).
    pub fn merge(&self, r: &PartitionChangeRecord) -> PartitionRegistration {
        let pick = |new: &Option<Vec<sluice_net::BrokerId>>, old: &Vec<i32>| match new {
            Some(v) => ids(v),
            None => old.clone(),
        };
        let (leader, leader_epoch) = if r.leader.get() == NO_LEADER_CHANGE {
            (self.leader, self.leader_epoch)
        } else {
            (r.leader.get(), self.leader_epoch + 1)
        };
        let replicas = pick(&r.replicas, &self.replicas);
        let mut directories = r
            .directories
            .clone()
            .unwrap_or_else(|| self.directories.clone());
        directories.resize(replicas.len(), Uuid::ZERO);
        PartitionRegistration {
            isr: pick(&r.isr, &self.isr),
            removing_replicas: pick(&r.removing_replicas, &self.removing_replicas),
            adding_replicas: pick(&r.adding_replicas, &self.adding_replicas),
            replicas,
            directories,
            leader,
            leader_recovery_state: if r.leader_recovery_state >= 0 {
                r.leader_recovery_state
            } else {
                self.leader_recovery_state
            },
            leader_epoch,
            partition_epoch: self.partition_epoch + 1,
            elr: pick(&r.eligible_leader_replicas, &self.elr),
            last_known_elr: pick(&r.last_known_elr, &self.last_known_elr),
        }
    }
}

fn ids(v: &[sluice_net::BrokerId]) -> Vec<i32> {
    v.iter().map(|b| b.get()).collect()
}
