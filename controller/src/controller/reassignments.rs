//! Partition reassignments (KIP-455): AlterPartitionReassignments and
//! ListPartitionReassignments (Kafka 4.4's `ReplicationControlManager.alterPartitionReassignments`,
//! `changePartitionReassignment`, `cancelPartitionReassignment` and `listPartitionReassignments`,
//! over `PartitionChangeBuilder`; `change.rs`), as `kafka-reassign-partitions` uses them.
//!
//! Rules, as Kafka's. An empty list of topics gets Kafka's default answer (an empty error
//! message, `allow_replication_factor_change` true), nothing checked. Otherwise every partition
//! is answered, topics and partitions in the request's order, each decided on the state before
//! the request (Kafka writes the records only after deciding them all: a partition named twice
//! gets two records); the answer has a null top-level message and echoes
//! `allow_replication_factor_change` (version 0 carries none and decodes as true). Each
//! partition, in Kafka's order: an unknown topic ("Unable to find a topic named T.") or
//! partition ("Unable to find partition T:P.") is UNKNOWN_TOPIC_OR_PARTITION. Then:
//!
//! - Null replicas cancel: without a reassignment in progress (no adding and no removing
//!   replica) NO_REASSIGNMENT_IN_PROGRESS, no message. Else the revert
//!   (`PartitionReassignmentRevert`): the replicas without the adding ones (in the current
//!   order), the ISR without the adding ones; an ISR left empty takes the first remaining
//!   replica, which is an unclean election: refused with INVALID_REPLICA_ASSIGNMENT ("Unable to
//!   revert partition assignment for T:P because it would require an unclean leader election.")
//!   unless the topic's `unclean.leader.election.enable` (else the cluster's) is true; with it
//!   the change's election is unclean. Adding and removing are cleared.
//! - A replica list starts or replaces a reassignment. It is checked as Kafka's
//!   `validateManualPartitionAssignment` (INVALID_REPLICA_ASSIGNMENT: an empty list, an
//!   unregistered broker, a broker named twice, checked in ascending broker order, with Kafka's
//!   messages). Without `allow_replication_factor_change` (KIP-860, version 1) the target must
//!   have as many replicas as the partition's replication factor (its replicas, or while a
//!   reassignment is in progress the distinct replicas and adding ones without the removing
//!   ones): else INVALID_REPLICATION_FACTOR "The replication factor is changed from N to M".
//!   Against the current replicas (those of an ongoing reassignment included: a new target
//!   replaces it), removing = current − target and adding = target − current, each in
//!   ascending order, and the replicas become the target followed by removing. An empty
//!   adding (removing) leaves the partition's own adding (removing) as it is, as Kafka's does.
//!   The ISR and the leader stay; the record is the change's (`change.rs`), so a target the ISR
//!   already allows (a reordering, a shrink to in-sync replicas) completes at once, in that
//!   same record; a request that changes nothing writes none and answers NONE.
//!
//! Later, a leader's AlterPartition that brings the adding replicas into the ISR completes the
//! reassignment (`alter_partition.rs`). A new replica's log directory is its broker's only one,
//! else unassigned (Kafka's `defaultDir`). More than 10,000 records (Kafka's bounded list of
//! `MAX_RECORDS_PER_USER_OP`): each partition that would write one more answers
//! UNKNOWN_SERVER_ERROR, no message, and writes nothing; the others stand.
//!
//! ListPartitionReassignments answers the partitions with a reassignment in progress: their
//! replicas, adding and removing replicas. An empty list of topics gets the default answer
//! (empty message); otherwise the message is null. A null list means every topic (by name, its
//! partitions by index; Kafka's order is its hash map's); a list names topics (in its order,
//! unknown ones left out) and partitions (in its order, unknown and idle ones left out); a
//! topic with none left is left out. Kafka reads its last stable offset: pass the committed
//! image to [`list_partition_reassignments`], or use [`Controller::list_partition_reassignments`]
//! (the speculative image) and answer once everything proposed is committed.
//!
//! Not here: cordoned log directories (KIP-1066: a broker whose every directory is cordoned is
//! refused as a new replica), and offline log directories (Kafka's leader acceptor).

use super::change::{Assignment, Change, LeaderElection};
use super::{Controller, Proposal, versioned};
use crate::bootstrap::PARTITION_CHANGE_RECORD_VERSION;
use crate::image::{ELR_VERSION, MetadataImage, PartitionRegistration, TopicImage};
use sluice_net::ErrorCode;
use sluice_net::messages::alter_partition_reassignments_request::ReassignablePartition;
use sluice_net::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use sluice_net::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use sluice_net::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, MetadataRecord,
    PartitionChangeRecord,
};
use sluice_net::metadata_record::VersionedRecord;
use std::collections::BTreeSet;

/// Kafka's `MAX_RECORDS_PER_USER_OP`: the most records one request may write.
const MAX_RECORDS_PER_USER_OP: usize = 10_000;

/// A partition's refusal: the error and its message (`None`: Kafka sends none).
type Refusal = (ErrorCode, Option<String>);

impl Controller {
    /// Handles an AlterPartitionReassignments request (versions 0 and 1). The reply answers
    /// every partition asked about.
    pub fn alter_partition_reassignments(
        &mut self,
        request: &AlterPartitionReassignmentsRequest,
    ) -> Proposal<AlterPartitionReassignmentsResponse> {
        if request.topics.is_empty() {
            return self.propose(Vec::new(), AlterPartitionReassignmentsResponse::default());
        }
        let allow_rf_change = request.allow_replication_factor_change;
        let mut records = Vec::new();
        let mut responses = Vec::new();
        for topic in &request.topics {
            let mut partitions = Vec::new();
            for target in &topic.partitions {
                let name = topic.name.as_str();
                let outcome = self.reassign_one(name, target, allow_rf_change, &mut records);
                partitions.push(partition_answer(target.partition_index, outcome));
            }
            responses.push(ReassignableTopicResponse {
                name: topic.name.clone(),
                partitions,
                ..Default::default()
            });
        }
        let reply = AlterPartitionReassignmentsResponse {
            allow_replication_factor_change: allow_rf_change,
            error_message: None,
            responses,
            ..Default::default()
        };
        self.propose(records, reply)
    }

    /// Handles a ListPartitionReassignments request over the speculative image (see the module
    /// doc: Kafka reads its last stable offset).
    pub fn list_partition_reassignments(
        &self,
        request: &ListPartitionReassignmentsRequest,
    ) -> ListPartitionReassignmentsResponse {
        list_partition_reassignments(&self.image, request)
    }

    /// Kafka's `alterPartitionReassignment`: one partition, its record appended to `records`.
    fn reassign_one(
        &self,
        name: &str,
        target: &ReassignablePartition,
        allow_rf_change: bool,
        records: &mut Vec<VersionedRecord>,
    ) -> Result<(), Refusal> {
        let index = target.partition_index;
        let unknown = ErrorCode::UNKNOWN_TOPIC_OR_PARTITION;
        let Some(topic) = self.image.topic_by_name(name) else {
            return Err((
                unknown,
                Some(format!("Unable to find a topic named {name}.")),
            ));
        };
        let Some(partition) = topic.partitions.get(&index) else {
            return Err((
                unknown,
                Some(format!("Unable to find partition {name}:{index}.")),
            ));
        };
        let record = match &target.replicas {
            None => self.cancel_reassignment(topic, index, partition)?,
            Some(replicas) => {
                let replicas: Vec<i32> = replicas.iter().map(|b| b.get()).collect();
                self.change_reassignment(topic, partition, &replicas, allow_rf_change)?
            }
        };
        let Some(mut record) = record else {
            return Ok(());
        };
        if records.len() >= MAX_RECORDS_PER_USER_OP {
            return Err((ErrorCode::UNKNOWN_SERVER_ERROR, None));
        }
        record.topic_id = topic.id;
        record.partition_id = index;
        let record = MetadataRecord::PartitionChange(record);
        records.push(versioned(PARTITION_CHANGE_RECORD_VERSION, record));
        Ok(())
    }

    /// Kafka's `cancelPartitionReassignment`, over `PartitionReassignmentRevert`.
    fn cancel_reassignment(
        &self,
        topic: &TopicImage,
        index: i32,
        p: &PartitionRegistration,
    ) -> Result<Option<PartitionChangeRecord>, Refusal> {
        if !in_progress(p) {
            return Err((ErrorCode::NO_REASSIGNMENT_IN_PROGRESS, None));
        }
        let adding = &p.adding_replicas;
        let original = |r: &&i32| !adding.contains(r);
        let replicas: Vec<i32> = p.replicas.iter().filter(original).copied().collect();
        let mut isr: Vec<i32> = p.isr.iter().filter(original).copied().collect();
        let unclean_enabled = self.unclean_election_enabled(topic);
        if isr.is_empty() {
            let invalid = ErrorCode::INVALID_REPLICA_ASSIGNMENT;
            let Some(&first) = replicas.first() else {
                let message = "Invalid replica assignment: addingReplicas contains all replicas.";
                return Err((invalid, Some(message.to_string())));
            };
            if !unclean_enabled {
                let message = format!(
                    "Unable to revert partition assignment for {}:{index} because it would \
                     require an unclean leader election.",
                    topic.name
                );
                return Err((invalid, Some(message)));
            }
            isr = vec![first];
        }
        let assignment = Assignment {
            directories: replicas
                .iter()
                .map(|&r| p.directory(r).unwrap_or_default())
                .collect(),
            replicas,
            adding: Vec::new(),
            removing: Vec::new(),
        };
        let election = if unclean_enabled {
            LeaderElection::Unclean
        } else {
            LeaderElection::Online
        };
        Ok(self.reassignment_change(topic, p, isr, election, assignment))
    }

    /// Kafka's `changePartitionReassignment`: starts a reassignment to `target`, or replaces
    /// the one in progress.
    fn change_reassignment(
        &self,
        topic: &TopicImage,
        p: &PartitionRegistration,
        target: &[i32],
        allow_rf_change: bool,
    ) -> Result<Option<PartitionChangeRecord>, Refusal> {
        let invalid = |(code, message): (ErrorCode, String)| (code, Some(message));
        self.check_manual_assignment(target, None)
            .map_err(invalid)?;
        let factor = replication_factor(p);
        if !allow_rf_change && factor != target.len() {
            let message = format!(
                "The replication factor is changed from {factor} to {}",
                target.len()
            );
            return Err((ErrorCode::INVALID_REPLICATION_FACTOR, Some(message)));
        }
        let removing = difference(&p.replicas, target);
        let adding = difference(target, &p.replicas);
        let mut assignment = Assignment::of(p);
        let replicas: Vec<i32> = target.iter().chain(&removing).copied().collect();
        if replicas != p.replicas {
            assignment.directories = replicas
                .iter()
                .map(|&r| p.directory(r).unwrap_or_else(|| self.default_dir(r)))
                .collect();
            assignment.replicas = replicas;
        }
        if !removing.is_empty() {
            assignment.removing = removing;
        }
        if !adding.is_empty() {
            assignment.adding = adding;
        }
        let election = LeaderElection::Online;
        let isr = p.isr.clone();
        Ok(self.reassignment_change(topic, p, isr, election, assignment))
    }

    /// The partition's change to `assignment` and `isr`, with `election` among active brokers.
    fn reassignment_change(
        &self,
        topic: &TopicImage,
        p: &PartitionRegistration,
        isr: Vec<i32>,
        election: LeaderElection,
        assignment: Assignment,
    ) -> Option<PartitionChangeRecord> {
        let change = Change {
            partition: p,
            target_isr: isr,
            elr_enabled: self.image.feature_level(ELR_VERSION) >= 1,
            min_isr: self.min_isr(topic),
            unclean: -1,
            recovery: p.leader_recovery_state,
            election,
            assignment,
        };
        change.build(|r| self.is_active(r))
    }
}

/// ListPartitionReassignments over `image` (Kafka's `listPartitionReassignments`; see the
/// module doc). Pass the committed image to answer as Kafka does.
pub fn list_partition_reassignments(
    image: &MetadataImage,
    request: &ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    if request.topics.as_ref().is_some_and(Vec::is_empty) {
        return ListPartitionReassignmentsResponse::default();
    }
    let mut topics = Vec::new();
    match &request.topics {
        None => {
            let mut names: Vec<&str> = image.topics().values().map(|t| &*t.name).collect();
            names.sort_unstable();
            for topic in names.into_iter().filter_map(|n| image.topic_by_name(n)) {
                let indexes: Vec<i32> = topic.partitions.keys().copied().collect();
                topics.extend(ongoing_topic(topic, &indexes));
            }
        }
        Some(asked) => {
            for t in asked {
                let topic = image.topic_by_name(t.name.as_str());
                topics.extend(topic.and_then(|topic| ongoing_topic(topic, &t.partition_indexes)));
            }
        }
    }
    ListPartitionReassignmentsResponse {
        error_message: None,
        topics,
        ..Default::default()
    }
}

/// The topic's partitions among `indexes` with a reassignment in progress; `None` if none.
fn ongoing_topic(topic: &TopicImage, indexes: &[i32]) -> Option<OngoingTopicReassignment> {
    let ongoing = |&index: &i32| {
        let p = topic.partitions.get(&index).filter(|p| in_progress(p))?;
        Some(OngoingPartitionReassignment {
            partition_index: index,
            replicas: p.replicas.iter().map(|&b| b.into()).collect(),
            adding_replicas: p.adding_replicas.iter().map(|&b| b.into()).collect(),
            removing_replicas: p.removing_replicas.iter().map(|&b| b.into()).collect(),
            ..Default::default()
        })
    };
    let partitions: Vec<_> = indexes.iter().filter_map(ongoing).collect();
    (!partitions.is_empty()).then(|| OngoingTopicReassignment {
        name: topic.name.as_str().into(),
        partitions,
        ..Default::default()
    })
}

/// Kafka's `isReassignmentInProgress`: some replica is being added or removed.
fn in_progress(p: &PartitionRegistration) -> bool {
    !p.adding_replicas.is_empty() || !p.removing_replicas.is_empty()
}

/// Kafka's `validatePartitionReplicationFactorUnchanged`: the replication factor a target is
/// compared with.
fn replication_factor(p: &PartitionRegistration) -> usize {
    if !in_progress(p) {
        return p.replicas.len();
    }
    let mut replicas: BTreeSet<i32> = p
        .replicas
        .iter()
        .chain(&p.adding_replicas)
        .copied()
        .collect();
    for r in &p.removing_replicas {
        replicas.remove(r);
    }
    replicas.len()
}

/// The members of `a` not in `b`, ascending, once each (Kafka's `calculateDifference`).
fn difference(a: &[i32], b: &[i32]) -> Vec<i32> {
    let set: BTreeSet<i32> = a.iter().copied().filter(|r| !b.contains(r)).collect();
    set.into_iter().collect()
}

fn partition_answer(index: i32, outcome: Result<(), Refusal>) -> ReassignablePartitionResponse {
    let (code, message) = outcome.err().unwrap_or((ErrorCode::NONE, None));
    ReassignablePartitionResponse {
        partition_index: index,
        error_code: code.code(),
        error_message: message.map(Into::into),
        ..Default::default()
    }
}
