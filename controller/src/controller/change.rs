//! Leader and ISR changes when a broker is fenced, unfenced or shuts down (Kafka's
//! `ReplicationControlManager.generateLeaderAndIsrUpdates` over `PartitionChangeBuilder`).
//!
//! Only the clean ("online") election is here, with KIP-966's eligible leader replicas when the
//! `eligible.leader.replicas.version` feature is on (Kafka 4.4's default): no reassignment, no
//! unclean or preferred election, no last-known-leader recovery. Without ELR a partition never
//! loses its last ISR member (so a fenced RF-1 partition keeps ISR [b], leader -1); with ELR
//! the ISR may become empty and the member moves to the ELR, from which it is elected back.

use super::{Controller, versioned};
use crate::bootstrap::PARTITION_CHANGE_RECORD_VERSION;
use crate::image::{
    ELR_VERSION, PartitionRegistration, RESOURCE_BROKER, RESOURCE_TOPIC, TopicImage,
};
use sluice_net::messages::{MetadataRecord, PartitionChangeRecord};
use sluice_net::metadata_record::VersionedRecord;

const NO_LEADER: i32 = -1;

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

    /// The topic's `min.insync.replicas`, else the cluster's, else the controller's.
    fn min_isr(&self, topic: &TopicImage) -> usize {
        let key = "min.insync.replicas";
        let topic_level = self.image.config(RESOURCE_TOPIC, &topic.name, key);
        let value = topic_level.or_else(|| self.image.config(RESOURCE_BROKER, "", key));
        let configured = value.and_then(|v| v.parse::<i32>().ok());
        let min_isr = configured.unwrap_or(self.config.min_insync_replicas);
        usize::try_from(min_isr.max(1)).unwrap_or(1)
    }
}

/// One partition's change being built (the part of `PartitionChangeBuilder` used here).
struct Change<'a> {
    partition: &'a PartitionRegistration,
    target_isr: Vec<i32>,
    elr_enabled: bool,
    min_isr: usize,
    unclean: i32,
}

impl Change<'_> {
    /// The record, or `None` when nothing changes.
    fn build(mut self, acceptable: impl Fn(i32) -> bool) -> Option<PartitionChangeRecord> {
        let p = self.partition;
        let (mut target_elr, mut target_lkelr) = self.target_elr();
        let mut record = PartitionChangeRecord::default();
        let valid = |r: i32, isr: &[i32], elr: &[i32]| {
            (isr.contains(&r) || (isr.is_empty() && elr.contains(&r))) && acceptable(r)
        };
        let elected = if valid(p.leader, &self.target_isr, &target_elr) {
            p.leader
        } else {
            let found = p.replicas.iter().copied();
            let mut found = found.filter(|&r| valid(r, &self.target_isr, &target_elr));
            found.next().unwrap_or(NO_LEADER)
        };
        if elected != p.leader {
            if target_elr.contains(&elected) {
                self.target_isr = vec![elected];
                target_elr.retain(|&r| r != elected);
            }
            record.leader = elected.into();
        }
        if !self.elr_enabled {
            target_elr.clear();
            target_lkelr.clear();
        }
        if target_elr != p.elr {
            record.eligible_leader_replicas = Some(brokers(&target_elr));
        }
        if target_lkelr != p.last_known_elr {
            record.last_known_elr = Some(brokers(&target_lkelr));
        }
        let isr_may_change = !self.target_isr.is_empty() || self.elr_enabled;
        if isr_may_change && self.target_isr != p.isr {
            record.isr = Some(brokers(&self.target_isr));
        }
        let unchanged = record.leader.get() == -2
            && record.isr.is_none()
            && record.eligible_leader_replicas.is_none()
            && record.last_known_elr.is_none();
        (!unchanged).then_some(record)
    }

    /// KIP-966: below min ISR, the old ISR members leaving it become eligible leaders.
    fn target_elr(&self) -> (Vec<i32>, Vec<i32>) {
        let p = self.partition;
        if !self.elr_enabled {
            return (p.elr.clone(), p.last_known_elr.clone());
        }
        if self.target_isr.len() >= self.min_isr {
            return (Vec::new(), Vec::new());
        }
        let mut candidates: Vec<i32> = p.elr.iter().chain(&p.isr).copied().collect();
        candidates.sort_unstable();
        candidates.dedup();
        candidates.retain(|r| !self.target_isr.contains(r));
        let mut elr = candidates.clone();
        elr.retain(|&r| r != self.unclean);
        let mut last_known: Vec<i32> = candidates
            .into_iter()
            .chain(p.last_known_elr.clone())
            .collect();
        last_known.sort_unstable();
        last_known.dedup();
        last_known.retain(|r| !self.target_isr.contains(r) && !elr.contains(r));
        (elr, last_known)
    }
}

fn brokers(ids: &[i32]) -> Vec<sluice_net::BrokerId> {
    ids.iter().map(|&b| b.into()).collect()
}
