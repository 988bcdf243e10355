//! AlterPartition (KIP-497; broker epochs in the new ISR, KIP-903): a partition's leader asks
//! the active controller to shrink or expand its ISR (Kafka 4.4's
//! `ReplicationControlManager.alterPartition` over `PartitionChangeBuilder`).
//!
//! Rules, as Kafka's: a request whose broker epoch is not the sender's registered one is
//! refused as a whole (STALE_BROKER_EPOCH). Each partition is then checked in Kafka's order:
//! unknown topic id (UNKNOWN_TOPIC_ID) or partition (UNKNOWN_TOPIC_OR_PARTITION); a leader or
//! partition epoch ahead of this controller's (NOT_CONTROLLER: the sender saw a newer
//! controller); an older leader epoch (FENCED_LEADER_EPOCH); a sender that is not the leader
//! (INVALID_REQUEST); an older partition epoch (INVALID_UPDATE_VERSION); an ISR that is not a
//! set of replicas or lacks the leader (INVALID_REQUEST); a recovering leader with more than
//! itself in the ISR, or a recovered one asking to recover (INVALID_REQUEST); a new ISR member
//! not registered, fenced, in controlled shutdown, or whose broker epoch is given and not the
//! registered one (INELIGIBLE_REPLICA). An accepted change is a `PartitionChangeRecord` built
//! as for any ISR change (KIP-966's ELR: below `min.insync.replicas` the members leaving the
//! ISR become eligible leaders, at or above it the ELR is cleared); it leaves the leader and
//! its epoch alone (`metadata.version` 33 bumps no leader epoch on a shrink), and the image
//! bumps the partition epoch when it applies it. The answer is the partition's state after the
//! change; a request that changes nothing writes no record and gets the current state.
//!
//! An ISR expansion that lets an ongoing reassignment complete (`reassignments.rs`; the rule is
//! `change.rs`'s) completes it in the same record: the assignment becomes the target, the
//! removed replicas leave the ISR, and the leader epoch is bumped (the record names the leader).
//! When that moves leadership away from the sender (it was a removed replica), the record is
//! written all the same and the sender gets NEW_LEADER_ELECTED instead of the state (Kafka's
//! answer at versions above 1), so it fetches the new metadata; otherwise it gets the state after
//! the change, its new leader epoch included.
//!
//! Versions 2 and 3 (the ones Kafka 4.4 serves): version 2 names the new ISR by broker id only,
//! taken as broker epoch -1 (not checked). Not here: log directories. A topic with
//! `unclean.leader.election.enable` gets Kafka's unclean election. A leader recovery state
//! outside 0 and 1, where Kafka's controller throws (an UNKNOWN_SERVER_ERROR and a controller
//! failover), refuses the request as a whole with UNKNOWN_SERVER_ERROR, with no failover.

use super::change::{Assignment, Change};
use super::{Controller, Proposal, versioned};
use crate::bootstrap::PARTITION_CHANGE_RECORD_VERSION;
use crate::image::{ELR_VERSION, PartitionRegistration, TopicImage};
use sluice_net::messages::alter_partition_request::{PartitionData, TopicData};
use sluice_net::messages::alter_partition_response as answer;
use sluice_net::messages::{AlterPartitionRequest, AlterPartitionResponse, MetadataRecord};
use sluice_net::metadata_record::VersionedRecord;
use sluice_net::{ErrorCode, Uuid};

/// A `PartitionChangeRecord` leader meaning "unchanged".
const NO_LEADER_CHANGE: i32 = -2;
/// `LeaderRecoveryState.RECOVERED` and `RECOVERING`.
const RECOVERED: i8 = 0;
const RECOVERING: i8 = 1;

/// A new ISR member with the broker epoch the leader saw (-1: not checked).
#[derive(Debug, Clone, Copy)]
struct Member {
    id: i32,
    epoch: i64,
}

impl Controller {
    /// Handles an AlterPartition request at `version` (2 or 3) from broker
    /// `request.broker_id`. The reply holds one answer per partition asked about.
    pub fn alter_partition(
        &mut self,
        version: i16,
        request: &AlterPartitionRequest,
    ) -> Proposal<AlterPartitionResponse> {
        let broker = request.broker_id.get();
        let registered = self.image.broker(broker).map(|b| b.epoch);
        if registered != Some(request.broker_epoch) {
            return self.propose(Vec::new(), top_level(ErrorCode::STALE_BROKER_EPOCH));
        }
        let partitions = request.topics.iter().flat_map(|t| &t.partitions);
        if partitions
            .map(|p| p.leader_recovery_state)
            .any(|s| s != RECOVERED && s != RECOVERING)
        {
            return self.propose(Vec::new(), top_level(ErrorCode::UNKNOWN_SERVER_ERROR));
        }
        let mut records = Vec::new();
        let mut topics = Vec::new();
        for asked in &request.topics {
            let partitions = self.alter_topic(version, broker, asked, &mut records);
            topics.push(answer::TopicData {
                topic_id: asked.topic_id,
                partitions,
                ..Default::default()
            });
        }
        let reply = AlterPartitionResponse {
            topics,
            ..Default::default()
        };
        self.propose(records, reply)
    }

    /// One topic's partitions: their answers, their records appended to `records`.
    fn alter_topic(
        &self,
        version: i16,
        broker: i32,
        asked: &TopicData,
        records: &mut Vec<VersionedRecord>,
    ) -> Vec<answer::PartitionData> {
        let topic = Some(asked.topic_id)
            .filter(|id| *id != Uuid::ZERO)
            .and_then(|id| self.image.topic(&id));
        let Some(topic) = topic else {
            let refuse =
                |p: &PartitionData| refused(p.partition_index, ErrorCode::UNKNOWN_TOPIC_ID);
            return asked.partitions.iter().map(refuse).collect();
        };
        let mut answers = Vec::new();
        for data in &asked.partitions {
            let (reply, record) = self.alter_one(version, broker, topic, data);
            answers.push(reply);
            records.extend(record);
        }
        answers
    }

    /// One partition: the answer and the record, if anything changes.
    fn alter_one(
        &self,
        version: i16,
        broker: i32,
        topic: &TopicImage,
        data: &PartitionData,
    ) -> (answer::PartitionData, Option<VersionedRecord>) {
        let index = data.partition_index;
        let Some(partition) = topic.partitions.get(&index) else {
            return (refused(index, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION), None);
        };
        let new_isr = new_isr(version, data);
        if let Err(code) = self.check_alter(broker, partition, data, &new_isr) {
            return (refused(index, code), None);
        }
        let change = Change {
            partition,
            target_isr: new_isr.iter().map(|m| m.id).collect(),
            elr_enabled: self.image.feature_level(ELR_VERSION) >= 1,
            min_isr: self.min_isr(topic),
            unclean: -1,
            recovery: data.leader_recovery_state,
            election: self.keep_led(topic),
            assignment: Assignment::of(partition),
        };
        let Some(mut record) = change.build(|r| self.is_active(r)) else {
            return (state(index, partition), None);
        };
        record.topic_id = topic.id;
        record.partition_id = index;
        let after = partition.merge(&record);
        let leader = record.leader.get();
        let record = versioned(
            PARTITION_CHANGE_RECORD_VERSION,
            MetadataRecord::PartitionChange(record),
        );
        if leader != broker && leader != NO_LEADER_CHANGE {
            // Only a reassignment completed by this ISR change moves the leader (Kafka): the
            // record is written and the sender told to look at the new metadata.
            return (refused(index, ErrorCode::NEW_LEADER_ELECTED), Some(record));
        }
        (state(index, &after), Some(record))
    }

    /// Kafka's `validateAlterPartitionData`, in its order.
    fn check_alter(
        &self,
        broker: i32,
        partition: &PartitionRegistration,
        data: &PartitionData,
        new_isr: &[Member],
    ) -> Result<(), ErrorCode> {
        if data.leader_epoch > partition.leader_epoch
            || data.partition_epoch > partition.partition_epoch
        {
            return Err(ErrorCode::NOT_CONTROLLER);
        }
        if data.leader_epoch < partition.leader_epoch {
            return Err(ErrorCode::FENCED_LEADER_EPOCH);
        }
        if broker != partition.leader {
            return Err(ErrorCode::INVALID_REQUEST);
        }
        if data.partition_epoch < partition.partition_epoch {
            return Err(ErrorCode::INVALID_UPDATE_VERSION);
        }
        let ids: Vec<i32> = new_isr.iter().map(|m| m.id).collect();
        if !valid_isr(&partition.replicas, &ids) || !ids.contains(&partition.leader) {
            return Err(ErrorCode::INVALID_REQUEST);
        }
        let recovering = data.leader_recovery_state == RECOVERING;
        if recovering && (ids.len() > 1 || partition.leader_recovery_state == RECOVERED) {
            return Err(ErrorCode::INVALID_REQUEST);
        }
        if new_isr.iter().any(|m| !self.eligible(*m)) {
            return Err(ErrorCode::INELIGIBLE_REPLICA);
        }
        Ok(())
    }

    /// Kafka's `ineligibleReplicasForIsr`, for one member: registered, not in controlled
    /// shutdown, not fenced, and of the registered epoch unless the epoch is -1.
    fn eligible(&self, member: Member) -> bool {
        self.image.broker(member.id).is_some_and(|b| {
            !b.in_controlled_shutdown
                && !b.fenced
                && (member.epoch == -1 || member.epoch == b.epoch)
        })
    }
}

/// The new ISR as asked: version 3's members with epochs, version 2's ids with epoch -1.
fn new_isr(version: i16, data: &PartitionData) -> Vec<Member> {
    if version < 3 {
        let member = |id: &sluice_net::BrokerId| Member {
            id: id.get(),
            epoch: -1,
        };
        return data.new_isr.iter().map(member).collect();
    }
    data.new_isr_with_epochs
        .iter()
        .map(|b| Member {
            id: b.broker_id.get(),
            epoch: b.broker_epoch,
        })
        .collect()
}

/// Kafka's `Replicas.validateIsr`: no negative id, no duplicate, every member a replica
/// (an empty ISR passes here; the leader check refuses it).
fn valid_isr(replicas: &[i32], isr: &[i32]) -> bool {
    let mut sorted = isr.to_vec();
    sorted.sort_unstable();
    let unique = sorted.windows(2).all(|w| w[0] != w[1]);
    unique && sorted.iter().all(|r| *r >= 0 && replicas.contains(r))
}

/// A partition's answer carrying only an error.
fn refused(index: i32, code: ErrorCode) -> answer::PartitionData {
    answer::PartitionData {
        partition_index: index,
        error_code: code.code(),
        ..Default::default()
    }
}

/// A partition's answer: its state.
fn state(index: i32, p: &PartitionRegistration) -> answer::PartitionData {
    answer::PartitionData {
        partition_index: index,
        leader_id: p.leader.into(),
        leader_epoch: p.leader_epoch,
        isr: p.isr.iter().map(|&b| b.into()).collect(),
        leader_recovery_state: p.leader_recovery_state,
        partition_epoch: p.partition_epoch,
        ..Default::default()
    }
}

/// A whole-request refusal.
fn top_level(code: ErrorCode) -> AlterPartitionResponse {
    AlterPartitionResponse {
        error_code: code.code(),
        ..Default::default()
    }
}
