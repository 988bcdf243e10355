//! ElectLeaders (KIP-183's preferred and KIP-460's unclean election) and the automatic leader
//! rebalance (Kafka 4.4's `ReplicationControlManager.electLeaders`, `electLeader` and
//! `maybeBalancePartitionLeaders`, over `PartitionChangeBuilder`; `change.rs`).
//!
//! Rules, as Kafka's: `election_type` 0 is preferred, 1 unclean (version 0 carries none and
//! decodes as 0). An empty list of partitions gets an empty answer, nothing checked, not even
//! the election type (`QuorumController.electLeaders`). Another election type refuses the whole
//! request: top-level INVALID_REQUEST, and every partition asked INVALID_REQUEST with "Unknown
//! election type N" (Kafka's controller throws; `ControllerApis` answers with the request's
//! error response). A null list means every partition of every topic: every topic is answered,
//! its partitions whose election is not needed left out. Each partition, in Kafka's order:
//! an unknown topic ("No such topic as T") or partition ("No such partition as T-P") is
//! UNKNOWN_TOPIC_OR_PARTITION; a preferred election where the first replica already leads, or
//! an unclean one where the partition has a leader, is ELECTION_NOT_NEEDED; else the change is
//! built with that election, and one that writes nothing is PREFERRED_LEADER_NOT_AVAILABLE
//! (preferred) or ELIGIBLE_LEADERS_NOT_AVAILABLE (unclean), with Kafka's default message of the
//! error; a change that writes a record answers NONE, no message (even one that elects another
//! replica than the preferred, for a leaderless partition, as Kafka's does).
//!
//! The preferred election makes the first replica of the assignment leader iff it is in the ISR
//! (or in the ELR while the ISR is empty) and active: registered, unfenced, not in controlled
//! shutdown. The unclean election keeps the clean choices first (an ISR or ELR member, then
//! the last known leader) and then takes the first live replica in assignment order: it alone
//! in the ISR, the ELR cleared, its leader recovery state RECOVERING. Every election bumps the
//! leader epoch (the image, applying the record). Each partition is decided on the state before
//! the request, as Kafka writes the records only after deciding them all: a partition named
//! twice gets two records. More than 10,000 records (Kafka's `MAX_RECORDS_PER_USER_OP`) refuse
//! the whole request with POLICY_VIOLATION "Unable to perform excessively large batch
//! operation.", every partition asked included.
//!
//! The rebalance ([`Controller::rebalance_leaders`]) is Kafka 4.4's `electPreferred` periodic
//! task, registered only with `auto.leader.rebalance.enable`: first due one check interval after
//! activation, then one interval after each run, or 10 ms after a run that wrote 1,000 records
//! (`MAX_ELECTIONS_PER_IMBALANCE`: more may be left). A run makes the preferred election for
//! every partition whose leader is not its first replica (Kafka's `imbalancedPartitions`,
//! leaderless partitions included) and stops at 1,000 records. Kafka 4.4 has no
//! `leader.imbalance.per.broker.percentage` any more, and elects no preferred leader when a
//! broker is unfenced (only the online election of leaderless partitions). Partitions are taken
//! by topic id, then index (Kafka's hash-set order is unspecified), topics by name for a null
//! list.

use super::change::{Assignment, Change, LeaderElection};
use super::{Controller, Proposal, versioned};
use crate::bootstrap::PARTITION_CHANGE_RECORD_VERSION;
use crate::image::{ELR_VERSION, PartitionRegistration, TopicImage};
use sluice_net::ErrorCode;
use sluice_net::messages::elect_leaders_request::TopicPartitions;
use sluice_net::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use sluice_net::messages::{ElectLeadersRequest, ElectLeadersResponse, MetadataRecord};
use sluice_net::metadata_record::VersionedRecord;

/// `ElectionType.PREFERRED` and `UNCLEAN`.
const PREFERRED: i8 = 0;
const UNCLEAN: i8 = 1;
/// Kafka's `MAX_RECORDS_PER_USER_OP`: the most records one request may write.
const MAX_RECORDS_PER_USER_OP: usize = 10_000;
/// Kafka's `MAX_ELECTIONS_PER_IMBALANCE`: the most records one rebalance run writes.
pub(super) const MAX_ELECTIONS_PER_IMBALANCE: usize = 1_000;
/// Kafka's `PeriodicTask` default immediate period: the next run after a full one.
const IMMEDIATE_RERUN_MS: u64 = 10;

/// A partition's outcome: the error and its message (`None` for NONE).
type Outcome = (ErrorCode, Option<String>);

impl Controller {
    /// Handles an ElectLeaders request (versions 0 to 2; the version changes nothing here).
    /// The reply lists the topics and partitions asked about, or every topic for a null list.
    pub fn elect_leaders(
        &mut self,
        request: &ElectLeadersRequest,
    ) -> Proposal<ElectLeadersResponse> {
        if request.topic_partitions.as_ref().is_some_and(Vec::is_empty) {
            return self.propose(Vec::new(), ElectLeadersResponse::default());
        }
        let election = match request.election_type {
            PREFERRED => LeaderElection::Preferred,
            UNCLEAN => LeaderElection::Unclean,
            other => {
                let message = format!("Unknown election type {other}");
                let reply = refused(request, ErrorCode::INVALID_REQUEST, message);
                return self.propose(Vec::new(), reply);
            }
        };
        let mut records = Vec::new();
        let results = match &request.topic_partitions {
            None => self.elect_everywhere(election, &mut records),
            Some(asked) => self.elect_asked(asked, election, &mut records),
        };
        if records.len() > MAX_RECORDS_PER_USER_OP {
            let message = "Unable to perform excessively large batch operation.".to_string();
            let reply = refused(request, ErrorCode::POLICY_VIOLATION, message);
            return self.propose(Vec::new(), reply);
        }
        let reply = ElectLeadersResponse {
            replica_election_results: results,
            ..Default::default()
        };
        self.propose(records, reply)
    }

    /// Kafka's automatic leader rebalance, when due at `now_ms`: the preferred election for
    /// every partition whose first replica does not lead (for a leaderless one of a topic with
    /// `unclean.leader.election.enable`, the unclean election), at most 1,000 records (Kafka's
    /// `MAX_ELECTIONS_PER_IMBALANCE`). The reply is the number of records (elections); when not
    /// due, or with nothing to elect, the proposal is empty (nothing to propose). Call it from
    /// the controller's timer, at or after [`Controller::next_rebalance_ms`].
    pub fn rebalance_leaders(&mut self, now_ms: u64) -> Proposal<usize> {
        if !self.config.auto_leader_rebalance || now_ms < self.next_rebalance_ms {
            return self.propose(Vec::new(), 0);
        }
        let mut records = Vec::new();
        'topics: for topic in self.image.topics().values() {
            for (&index, partition) in &topic.partitions {
                if records.len() >= MAX_ELECTIONS_PER_IMBALANCE {
                    break 'topics;
                }
                // Kafka's `maybeAdjustPartitionLeaders`: a leaderless partition of a topic
                // that allows it gets an unclean election (its config may have changed since
                // it lost its leader).
                let election = if partition.leader == NO_LEADER {
                    self.keep_led(topic)
                } else {
                    LeaderElection::Preferred
                };
                if !has_preferred_leader(partition) {
                    records.extend(self.election_record(topic, index, partition, election));
                }
            }
        }
        let full = records.len() >= MAX_ELECTIONS_PER_IMBALANCE;
        let delay = if full {
            IMMEDIATE_RERUN_MS
        } else {
            self.config.leader_imbalance_check_interval_ms
        };
        self.next_rebalance_ms = now_ms.saturating_add(delay);
        let elections = records.len();
        self.propose(records, elections)
    }

    /// When [`Controller::rebalance_leaders`] is next due; `None` when the rebalance is off.
    pub fn next_rebalance_ms(&self) -> Option<u64> {
        self.config
            .auto_leader_rebalance
            .then_some(self.next_rebalance_ms)
    }

    /// Every partition of every topic (a null list), topics by name; partitions whose election
    /// is not needed are left out of the answer.
    fn elect_everywhere(
        &self,
        election: LeaderElection,
        records: &mut Vec<VersionedRecord>,
    ) -> Vec<ReplicaElectionResult> {
        let mut names: Vec<&str> = self.image.topics().values().map(|t| &*t.name).collect();
        names.sort_unstable();
        let mut results = Vec::new();
        for name in names {
            let mut partition_result = Vec::new();
            let indexes = self.image.topic_by_name(name).map(|t| t.partitions.keys());
            for &index in indexes.into_iter().flatten() {
                let outcome = self.elect_one(name, index, election, records);
                if outcome.0 != ErrorCode::ELECTION_NOT_NEEDED {
                    partition_result.push(partition_answer(index, outcome));
                }
            }
            results.push(ReplicaElectionResult {
                topic: name.into(),
                partition_result,
                ..Default::default()
            });
        }
        results
    }

    /// The partitions asked about, each answered, in the request's order.
    fn elect_asked(
        &self,
        asked: &[TopicPartitions],
        election: LeaderElection,
        records: &mut Vec<VersionedRecord>,
    ) -> Vec<ReplicaElectionResult> {
        let answer_topic = |topic: &TopicPartitions, records: &mut Vec<VersionedRecord>| {
            let partition_result = topic
                .partitions
                .iter()
                .map(|&index| {
                    let outcome = self.elect_one(topic.topic.as_str(), index, election, records);
                    partition_answer(index, outcome)
                })
                .collect();
            ReplicaElectionResult {
                topic: topic.topic.clone(),
                partition_result,
                ..Default::default()
            }
        };
        asked.iter().map(|t| answer_topic(t, records)).collect()
    }

    /// Kafka's `electLeader`: one partition's outcome, its record appended to `records`.
    fn elect_one(
        &self,
        name: &str,
        index: i32,
        election: LeaderElection,
        records: &mut Vec<VersionedRecord>,
    ) -> Outcome {
        let unknown = ErrorCode::UNKNOWN_TOPIC_OR_PARTITION;
        let Some(topic) = self.image.topic_by_name(name) else {
            return (unknown, Some(format!("No such topic as {name}")));
        };
        let Some(partition) = topic.partitions.get(&index) else {
            return (
                unknown,
                Some(format!("No such partition as {name}-{index}")),
            );
        };
        let not_needed = match election {
            LeaderElection::Preferred => has_preferred_leader(partition),
            LeaderElection::Unclean => partition.leader != NO_LEADER,
            LeaderElection::Online => false,
        };
        if not_needed {
            return with_default_message(ErrorCode::ELECTION_NOT_NEEDED);
        }
        match self.election_record(topic, index, partition, election) {
            Some(record) => {
                records.push(record);
                (ErrorCode::NONE, None)
            }
            None if election == LeaderElection::Preferred => {
                with_default_message(ErrorCode::PREFERRED_LEADER_NOT_AVAILABLE)
            }
            None => with_default_message(ErrorCode::ELIGIBLE_LEADERS_NOT_AVAILABLE),
        }
    }

    /// The partition's change with `election` among active replicas, if it writes anything.
    fn election_record(
        &self,
        topic: &TopicImage,
        index: i32,
        partition: &PartitionRegistration,
        election: LeaderElection,
    ) -> Option<VersionedRecord> {
        let change = Change {
            partition,
            target_isr: partition.isr.clone(),
            elr_enabled: self.image.feature_level(ELR_VERSION) >= 1,
            min_isr: self.min_isr(topic),
            unclean: -1,
            recovery: partition.leader_recovery_state,
            election,
            assignment: Assignment::of(partition),
        };
        let mut record = change.build(|r| self.is_active(r))?;
        record.topic_id = topic.id;
        record.partition_id = index;
        let record = MetadataRecord::PartitionChange(record);
        Some(versioned(PARTITION_CHANGE_RECORD_VERSION, record))
    }
}

const NO_LEADER: i32 = -1;

/// Kafka's `PartitionRegistration.hasPreferredLeader`: the first replica leads.
fn has_preferred_leader(p: &PartitionRegistration) -> bool {
    p.leader == p.replicas.first().copied().unwrap_or(NO_LEADER)
}

/// An error with Kafka's default message for it (`new ApiError(error)`).
fn with_default_message(code: ErrorCode) -> Outcome {
    let message = if code == ErrorCode::ELECTION_NOT_NEEDED {
        "Leader election not needed for topic partition."
    } else if code == ErrorCode::PREFERRED_LEADER_NOT_AVAILABLE {
        "The preferred leader was not available."
    } else {
        assert_eq!(
            code,
            ErrorCode::ELIGIBLE_LEADERS_NOT_AVAILABLE,
            "no default message"
        );
        "Eligible topic partition leaders are not available."
    };
    (code, Some(message.to_string()))
}

fn partition_answer(index: i32, (code, message): Outcome) -> PartitionResult {
    PartitionResult {
        partition_id: index,
        error_code: code.code(),
        error_message: message.map(Into::into),
        ..Default::default()
    }
}

/// Kafka's `ElectLeadersRequest.getErrorResponse`: the top-level error, and every partition
/// asked about (none for a null list) with that error and message.
fn refused(
    request: &ElectLeadersRequest,
    code: ErrorCode,
    message: String,
) -> ElectLeadersResponse {
    let topics = request.topic_partitions.iter().flatten();
    let answer_topic = |t: &TopicPartitions| ReplicaElectionResult {
        topic: t.topic.clone(),
        partition_result: t
            .partitions
            .iter()
            .map(|&index| partition_answer(index, (code, Some(message.clone()))))
            .collect(),
        ..Default::default()
    };
    ElectLeadersResponse {
        error_code: code.code(),
        replica_election_results: topics.map(answer_topic).collect(),
        ..Default::default()
    }
}
