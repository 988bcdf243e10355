//! Leader, ISR and assignment changes (Kafka's `PartitionChangeBuilder`), and those of a broker
//! that is fenced, unfenced or shuts down (Kafka's
//! `ReplicationControlManager.generateLeaderAndIsrUpdates`).
//!
//! The election has Kafka's three modes ([`LeaderElection`]): online (keep the partition led;
//! the only one brokers' state changes and AlterPartition use), preferred (the first replica of
//! the assignment if it can lead: ElectLeaders and the leader rebalance) and unclean (any live
//! replica when no clean choice is left: ElectLeaders). With KIP-966's eligible leader replicas
//! when the `eligible.leader.replicas.version` feature is on (Kafka 4.4's default). Without ELR
//! a partition never loses its last ISR member (so a fenced RF-1 partition keeps ISR [b], leader
//! -1); with ELR the ISR may become empty and the member moves to the ELR, from which it is
//! elected back; once both are empty the last known leader is elected back (uncleanly) when it
//! returns.
//!
//! Reassignments (KIP-455, `reassignments.rs`): a change aims for an [`Assignment`] (replicas,
//! adding, removing; the partition's own unless a reassignment starts or is cancelled), and
//! every change, whoever builds it, first completes an ongoing reassignment the target ISR
//! allows (Kafka 4.4's `PartitionReassignmentReplicas.maybeCompleteReassignment`, as KAFKA-19975
//! left it: a replica kept by the reassignment need not be in sync unless it shrinks): the ISR
//! without the removing replicas is not empty and holds every adding replica, the replicas
//! without the removing ones are not empty, and, when fewer replicas are added than removed,
//! that ISR holds every remaining replica. Completing makes the assignment the replicas without
//! the removing ones (their directories kept), clears adding and removing, and takes the
//! removing replicas out of the ISR. The election walks the target assignment's replicas in
//! order (a removing replica still in the ISR may lead until the reassignment completes; then
//! a leader outside the new ISR is replaced). A change whose replicas drop one of the
//! partition's bumps the leader epoch even when the leader stays (the record names it). The
//! record carries the replicas, adding, removing and directories that differ from the
//! partition's (a replica new to the partition gets the directory the caller gives it).

use super::{Controller, versioned};
use crate::bootstrap::PARTITION_CHANGE_RECORD_VERSION;
use crate::image::{
    ELR_VERSION, PartitionRegistration, RESOURCE_BROKER, RESOURCE_TOPIC, TopicImage,
};
use sluice_net::Uuid;
use sluice_net::messages::{MetadataRecord, PartitionChangeRecord};
use sluice_net::metadata_record::VersionedRecord;

const NO_LEADER: i32 = -1;
/// A `PartitionChangeRecord` leader meaning "unchanged".
const NO_LEADER_CHANGE: i32 = -2;

/// What the election may use: `remove` never leads and leaves the ISR, `add` may lead
/// although still fenced, `unclean` (a broker that restarted without a clean shutdown, with
/// ELR on) also leaves the ELR. -1 for none.
#[derive(Debug, Clone, Copy)]
pub(super) struct Election {
    pub remove: i32,
    pub add: i32,
    pub unclean: i32,
}

impl Controller {
    /// PartitionChangeRecords for every partition matching `select`, after removing
    /// `election.remove` from the ISR and electing leaders among acceptable replicas.
    pub(super) fn leader_and_isr_updates(
        &self,
        election: Election,
        select: impl Fn(&PartitionRegistration) -> bool,
    ) -> Vec<VersionedRecord> {
        let elr = self.image.feature_level(ELR_VERSION) >= 1;
        let mut records = Vec::new();
        for topic in self.image.topics().values() {
            let min_isr = self.min_isr(topic);
            for (&partition_id, partition) in &topic.partitions {
                if !select(partition) {
                    continue;
                }
                let target_isr: Vec<i32> = partition
                    .isr
                    .iter()
                    .copied()
                    .filter(|&r| r != election.remove)
                    .collect();
                let acceptable =
                    |r: i32| r != election.remove && (r == election.add || self.is_active(r));
                let change = Change {
                    partition,
                    target_isr,
                    elr_enabled: elr,
                    min_isr,
                    unclean: election.unclean,
                    recovery: partition.leader_recovery_state,
                    election: self.keep_led(topic),
                    assignment: Assignment::of(partition),
                };
                if let Some(mut record) = change.build(acceptable) {
                    record.topic_id = topic.id;
                    record.partition_id = partition_id;
                    let record = MetadataRecord::PartitionChange(record);
                    records.push(versioned(PARTITION_CHANGE_RECORD_VERSION, record));
                }
            }
        }
        records
    }

    /// Registered, unfenced and not in controlled shutdown (Kafka's `isActive`).
    pub(super) fn is_active(&self, broker: i32) -> bool {
        self.image
            .broker(broker)
            .is_some_and(|b| !b.fenced && !b.in_controlled_shutdown)
    }

    /// Kafka's `uncleanLeaderElectionEnabledForTopic`: the topic's
    /// `unclean.leader.election.enable`, else the cluster's, else the controller's (false by
    /// default).
    pub(super) fn unclean_election_enabled(&self, topic: &TopicImage) -> bool {
        let key = "unclean.leader.election.enable";
        let topic_level = self.image.config(RESOURCE_TOPIC, &topic.name, key);
        let value = topic_level.or_else(|| self.image.config(RESOURCE_BROKER, "", key));
        value.map_or(self.config.unclean_leader_election, |v| {
            v.eq_ignore_ascii_case("true")
        })
    }

    /// The election a change of `topic` that only keeps its partitions led uses: unclean when
    /// the topic allows it (Kafka's `generateLeaderAndIsrUpdates` and `alterPartition`).
    pub(super) fn keep_led(&self, topic: &TopicImage) -> LeaderElection {
        if self.unclean_election_enabled(topic) {
            LeaderElection::Unclean
        } else {
            LeaderElection::Online
        }
    }

    /// The topic's `min.insync.replicas`, else the cluster's, else the controller's.
    pub(super) fn min_isr(&self, topic: &TopicImage) -> usize {
        let key = "min.insync.replicas";
        let topic_level = self.image.config(RESOURCE_TOPIC, &topic.name, key);
        let value = topic_level.or_else(|| self.image.config(RESOURCE_BROKER, "", key));
        let configured = value.and_then(|v| v.parse::<i32>().ok());
        let min_isr = configured.unwrap_or(self.config.min_insync_replicas);
        usize::try_from(min_isr.max(1)).unwrap_or(1)
    }
}

/// Kafka's `PartitionChangeBuilder.Election`: which leader a change aims for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LeaderElection {
    /// Keep the partition led: the current leader while valid, else the first valid replica.
    Online,
    /// The first replica of the assignment if valid, else as `Online`.
    Preferred,
    /// As `Online`; then, with no valid replica and no last known leader to take back, the
    /// first acceptable replica, uncleanly (it alone in the ISR, its log recovering).
    Unclean,
}

/// One partition's change being built (the part of `PartitionChangeBuilder` used here).
pub(super) struct Change<'a> {
    pub partition: &'a PartitionRegistration,
    pub target_isr: Vec<i32>,
    pub elr_enabled: bool,
    pub min_isr: usize,
    /// A replica whose broker shut down uncleanly (never an ELR member), or -1.
    pub unclean: i32,
    /// The leader recovery state to have (the partition's own to keep it).
    pub recovery: i8,
    /// The election's mode.
    pub election: LeaderElection,
    /// The assignment to have (`Assignment::of` the partition to keep it).
    pub assignment: Assignment,
}

/// A partition's assignment: Kafka's target replicas, adding and removing replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Assignment {
    /// Replicas in preferred order.
    pub replicas: Vec<i32>,
    /// The log directory of each replica, in the order of `replicas`.
    pub directories: Vec<Uuid>,
    /// Replicas a reassignment adds.
    pub adding: Vec<i32>,
    /// Replicas a reassignment removes.
    pub removing: Vec<i32>,
}

impl Assignment {
    /// The partition's own assignment.
    pub(super) fn of(p: &PartitionRegistration) -> Assignment {
        Assignment {
            replicas: p.replicas.clone(),
            directories: p.directories.clone(),
            adding: p.adding_replicas.clone(),
            removing: p.removing_replicas.clone(),
        }
    }

    /// Kafka 4.4's `PartitionReassignmentReplicas.maybeCompleteReassignment`: the completed
    /// assignment and ISR, when a reassignment is in progress and `isr` allows completing it.
    fn completed(&self, isr: &[i32]) -> Option<(Assignment, Vec<i32>)> {
        if self.adding.is_empty() && self.removing.is_empty() {
            return None;
        }
        let kept = |r: &i32| !self.removing.contains(r);
        let new_isr: Vec<i32> = isr.iter().copied().filter(kept).collect();
        let (replicas, directories): (Vec<i32>, Vec<Uuid>) = self
            .replicas
            .iter()
            .zip(
                self.directories
                    .iter()
                    .chain(std::iter::repeat(&Uuid::ZERO)),
            )
            .filter(|(r, _)| kept(r))
            .unzip();
        if new_isr.is_empty() || replicas.is_empty() {
            return None;
        }
        let in_isr = |r: &i32| new_isr.contains(r);
        if !self.adding.iter().all(in_isr) {
            return None;
        }
        if self.adding.len() < self.removing.len() && !replicas.iter().all(in_isr) {
            return None;
        }
        let assignment = Assignment {
            replicas,
            directories,
            adding: Vec::new(),
            removing: Vec::new(),
        };
        Some((assignment, new_isr))
    }
}

impl Change<'_> {
    /// The record, or `None` when nothing changes. Kafka's order: complete a reassignment the
    /// target ISR allows, the target ELR, the election, a leader epoch bump when replicas
    /// leave, the ELR fields, the ISR, then the last known leader (Kafka's default "last known
    /// leader in balanced recovery" mode, in which `last_known_elr` holds the partition's last
    /// leader while it has none), the assignment, then the target leader recovery state.
    pub(super) fn build(
        mut self,
        acceptable: impl Fn(i32) -> bool,
    ) -> Option<PartitionChangeRecord> {
        let p = self.partition;
        if let Some((assignment, isr)) = self.assignment.completed(&self.target_isr) {
            self.assignment = assignment;
            self.target_isr = isr;
        }
        let mut target_elr = self.target_elr();
        let mut record = PartitionChangeRecord::default();
        let (elected, unclean) = self.elect(&target_elr, &acceptable);
        if elected != p.leader {
            if target_elr.contains(&elected) {
                self.target_isr = vec![elected];
                target_elr.retain(|&r| r != elected);
            }
            record.leader = elected.into();
            if unclean {
                // The last known leader comes back with whatever its log holds: it alone is
                // in sync, and its log is marked as recovering (Kafka's unclean election).
                record.isr = Some(brokers(&[elected]));
                if p.leader_recovery_state != LEADER_RECOVERING {
                    record.leader_recovery_state = LEADER_RECOVERING;
                }
            }
        }
        let replicas_leave = p
            .replicas
            .iter()
            .any(|r| !self.assignment.replicas.contains(r));
        if record.leader.get() == NO_LEADER_CHANGE && replicas_leave {
            record.leader = p.leader.into();
        }
        if record.isr.is_some() || !self.elr_enabled {
            target_elr.clear();
        }
        if target_elr != p.elr {
            record.eligible_leader_replicas = Some(brokers(&target_elr));
        }
        let isr_may_change = !self.target_isr.is_empty() || self.elr_enabled;
        if record.isr.is_none() && isr_may_change && self.target_isr != p.isr {
            record.isr = Some(brokers(&self.target_isr));
        }
        if self.elr_enabled {
            record.last_known_elr = last_known_leader(p, &record);
        }
        self.assignment_changes(&mut record);
        if self.recovery != p.leader_recovery_state {
            record.leader_recovery_state = self.recovery;
        }
        (!is_no_op(&record)).then_some(record)
    }

    /// Kafka's `setAssignmentChanges`: the assignment's fields that differ from the partition's.
    fn assignment_changes(&self, record: &mut PartitionChangeRecord) {
        let (p, a) = (self.partition, &self.assignment);
        if !a.replicas.is_empty() {
            if a.directories != p.directories {
                record.directories = Some(a.directories.clone());
            }
            if a.replicas != p.replicas {
                record.replicas = Some(brokers(&a.replicas));
            }
        }
        if a.removing != p.removing_replicas {
            record.removing_replicas = Some(brokers(&a.removing));
        }
        if a.adding != p.adding_replicas {
            record.adding_replicas = Some(brokers(&a.adding));
        }
    }

    /// The leader to have, and whether it is an unclean choice (Kafka's `electPreferredLeader`
    /// and `electAnyLeader`), over the target assignment's replicas in order: for a preferred
    /// election the first replica if valid; then the current leader if still valid, else the
    /// first valid replica (in the ISR, or in the ELR when the ISR is empty), else (ISR and ELR
    /// empty, ELR on) the last known leader once it is acceptable again; for an unclean
    /// election last the first acceptable replica.
    fn elect(&self, target_elr: &[i32], acceptable: &impl Fn(i32) -> bool) -> (i32, bool) {
        let p = self.partition;
        let isr = &self.target_isr;
        let replicas = &self.assignment.replicas;
        let valid = |r: i32| {
            (isr.contains(&r) || (isr.is_empty() && target_elr.contains(&r))) && acceptable(r)
        };
        let preferred = replicas.first().copied();
        if self.election == LeaderElection::Preferred
            && let Some(r) = preferred.filter(|&r| valid(r))
        {
            return (r, false);
        }
        if valid(p.leader) {
            return (p.leader, false);
        }
        if let Some(r) = replicas.iter().copied().find(|&r| valid(r)) {
            return (r, false);
        }
        match p.last_known_elr.as_slice() {
            [last]
                if self.elr_enabled
                    && isr.is_empty()
                    && target_elr.is_empty()
                    && acceptable(*last) =>
            {
                return (*last, true);
            }
            _ => {}
        }
        if self.election == LeaderElection::Unclean
            && let Some(r) = replicas.iter().copied().find(|&r| acceptable(r))
        {
            return (r, true);
        }
        (NO_LEADER, false)
    }

    /// KIP-966: below min ISR, the old ISR members leaving it become eligible leaders (but
    /// not a replica whose broker shut down uncleanly).
    fn target_elr(&self) -> Vec<i32> {
        let p = self.partition;
        if !self.elr_enabled {
            return p.elr.clone();
        }
        if self.target_isr.len() >= self.min_isr {
            return Vec::new();
        }
        let mut elr: Vec<i32> = p.elr.iter().chain(&p.isr).copied().collect();
        elr.sort_unstable();
        elr.dedup();
        elr.retain(|r| !self.target_isr.contains(r) && *r != self.unclean);
        elr
    }
}

/// Kafka's `changeRecordIsNoOp`.
fn is_no_op(record: &PartitionChangeRecord) -> bool {
    record.leader.get() == NO_LEADER_CHANGE
        && record.isr.is_none()
        && record.eligible_leader_replicas.is_none()
        && record.last_known_elr.is_none()
        && record.replicas.is_none()
        && record.removing_replicas.is_none()
        && record.adding_replicas.is_none()
        && record.leader_recovery_state == -1
        && record.directories.is_none()
}

/// Kafka's `maybeUpdateLastKnownLeader`: when the ISR becomes empty the partition's leader is
/// remembered (once); when it has or keeps a leader the memory is cleared.
fn last_known_leader(
    p: &PartitionRegistration,
    record: &PartitionChangeRecord,
) -> Option<Vec<sluice_net::BrokerId>> {
    let new_leader = record.leader.get();
    let isr_emptied = record.isr.as_ref().is_some_and(Vec::is_empty);
    if isr_emptied && p.last_known_elr != [p.leader] {
        Some(brokers(&[p.leader]))
    } else if (new_leader >= 0 || (p.leader != NO_LEADER && new_leader != NO_LEADER))
        && !p.last_known_elr.is_empty()
    {
        Some(Vec::new())
    } else {
        None
    }
}

/// `LeaderRecoveryState.RECOVERING`: the leader was elected uncleanly.
const LEADER_RECOVERING: i8 = 1;

fn brokers(ids: &[i32]) -> Vec<sluice_net::BrokerId> {
    ids.iter().map(|&b| b.into()).collect()
}
