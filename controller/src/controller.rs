//! The active controller's decisions (Kafka's `QuorumController` and its managers), sans-IO.
//!
//! A `Controller` exists only on the active controller, from the moment its quorum replica
//! becomes leader (built from the committed image) until it loses leadership (dropped). Every
//! request or tick returns a [`Proposal`]: the records to propose, in order, and the answer to
//! send once the quorum has committed `Proposal::commit_offset`. The controller applies its own
//! records to a speculative image as it proposes them (as Kafka's controller replays its writes
//! at once), so the next decision sees them; it assigns each record the next log offset itself,
//! so the caller must propose every record it gets, in order, one quorum entry each, with
//! nothing else in between. If a proposal fails (leadership lost), drop the `Controller`.
//!
//! Heartbeat sessions live here only, never in the log (Kafka's `BrokerHeartbeatManager`): a
//! new active controller starts every registered broker's session afresh at activation.

mod alter_partition;
mod change;
mod cluster;
mod configs;
mod elect_leaders;
mod placement;
mod producer_ids;
mod reassignments;
mod topics;

pub use reassignments::list_partition_reassignments;

use crate::image::MetadataImage;
use sluice_net::metadata_record::VersionedRecord;
use sluice_quorum::Rng;
use std::collections::BTreeMap;

/// Settings of the controller (Kafka's controller and broker configs of the same meaning).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerConfig {
    /// The cluster id brokers must present when registering.
    pub cluster_id: String,
    /// `broker.session.timeout.ms`: a broker silent this long is fenced.
    pub session_timeout_ms: u64,
    /// `num.partitions`: partitions of a topic created with `num_partitions = -1`.
    pub default_num_partitions: i32,
    /// `default.replication.factor`: replicas of a topic created with factor -1.
    pub default_replication_factor: i16,
    /// `min.insync.replicas`, the cluster default written at bootstrap (KIP-966 needs it).
    pub min_insync_replicas: i32,
    /// The topics of a single-node data dir this node ran on before it joined a cluster, and
    /// its broker id: written right after the bootstrap records when this controller is the
    /// one that bootstraps the log, so they become the cluster's first topics.
    pub legacy_topics: Option<(i32, Vec<crate::LegacyTopic>)>,
    /// `auto.leader.rebalance.enable`: [`Controller::rebalance_leaders`] elects preferred
    /// leaders every `leader_imbalance_check_interval_ms`.
    pub auto_leader_rebalance: bool,
    /// `leader.imbalance.check.interval.seconds`, in milliseconds.
    pub leader_imbalance_check_interval_ms: u64,
    /// `unclean.leader.election.enable`, for topics that do not set it (false, as Kafka): a
    /// partition whose in-sync replicas are all gone may then be led by any live replica,
    /// losing what it had not copied.
    pub unclean_leader_election: bool,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            cluster_id: String::new(),
            session_timeout_ms: 9_000,
            default_num_partitions: 1,
            default_replication_factor: 1,
            min_insync_replicas: 1,
            legacy_topics: None,
            auto_leader_rebalance: true,
            leader_imbalance_check_interval_ms: 300_000,
            unclean_leader_election: false,
        }
    }
}

/// What a decision produced: records to propose, and the answer to send once committed.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal<T> {
    /// The offset the first record gets (the controller's next offset when it decided).
    pub first_offset: i64,
    /// Records to propose, in order, one quorum entry each.
    pub records: Vec<VersionedRecord>,
    /// The answer. Send it only once `commit_offset` is committed.
    pub reply: T,
}

impl<T> Proposal<T> {
    /// The offset that must be committed before the reply is sent: the last record's, or
    /// with no records the last offset already proposed (read-after-write, as Kafka waits).
    pub fn commit_offset(&self) -> i64 {
        self.first_offset + self.records.len() as i64 - 1
    }
}

/// A broker's heartbeat session (Kafka's `BrokerHeartbeatState`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Session {
    last_contact_ms: u64,
    metadata_offset: i64,
    /// Offset at which the broker entered controlled shutdown, or -1.
    controlled_shutdown_offset: i64,
}

/// The active controller. See the module doc for its lifecycle and the calling contract.
#[derive(Debug, Clone)]
pub struct Controller {
    config: ControllerConfig,
    image: MetadataImage,
    next_offset: i64,
    epoch: i32,
    sessions: BTreeMap<i32, Session>,
    rng: Rng,
    /// When the next leader rebalance is due (Kafka's `electPreferred` periodic task).
    next_rebalance_ms: u64,
}

impl Controller {
    /// Becomes active over `committed` (the image of every committed record) at quorum epoch
    /// `epoch`, with `next_offset` the offset the next proposed entry will get (after the
    /// leader's own LeaderChange entry). Every registered broker's session starts at `now_ms`.
    /// `seed` drives placement and topic ids.
    pub fn activate(
        config: ControllerConfig,
        committed: MetadataImage,
        epoch: i32,
        next_offset: i64,
        now_ms: u64,
        seed: u64,
    ) -> Controller {
        assert!(
            next_offset > committed.offset(),
            "next offset behind the image"
        );
        let sessions = committed
            .brokers()
            .keys()
            .map(|&id| (id, Session::fresh(now_ms)))
            .collect();
        let next_rebalance_ms = now_ms.saturating_add(config.leader_imbalance_check_interval_ms);
        Controller {
            config,
            image: committed,
            next_offset,
            epoch,
            sessions,
            rng: Rng::new(seed),
            next_rebalance_ms,
        }
    }

    /// The records a controller writes first on an empty log (Kafka's bootstrap records, then
    /// any legacy topics of its config), as a proposal; `None` once the log holds a
    /// `metadata.version`.
    pub fn bootstrap_if_empty(&mut self) -> Option<Proposal<()>> {
        if self.image.metadata_version().is_some() {
            return None;
        }
        let mut records = crate::bootstrap::bootstrap_records(self.config.min_insync_replicas);
        if let Some((broker, topics)) = &self.config.legacy_topics {
            records.extend(crate::bootstrap::legacy_topic_records(topics, *broker));
        }
        Some(self.propose(records, ()))
    }

    /// The speculative image: committed records plus every record proposed since activation.
    pub fn image(&self) -> &MetadataImage {
        &self.image
    }

    /// The offset the next proposed record gets.
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    /// Applies `records` to the speculative image at the next offsets and wraps them.
    fn propose<T>(&mut self, records: Vec<VersionedRecord>, reply: T) -> Proposal<T> {
        let first_offset = self.next_offset;
        for record in &records {
            if let Err(e) = self.image.apply(self.next_offset, self.epoch, record) {
                panic!("controller proposed a record its own image refuses: {e}");
            }
            self.next_offset += 1;
        }
        Proposal {
            first_offset,
            records,
            reply,
        }
    }
}

impl Session {
    fn fresh(now_ms: u64) -> Session {
        Session {
            last_contact_ms: now_ms,
            metadata_offset: -1,
            controlled_shutdown_offset: -1,
        }
    }
}

/// A record at a version.
fn versioned(version: i16, record: sluice_net::messages::MetadataRecord) -> VersionedRecord {
    VersionedRecord { version, record }
}

#[cfg(test)]
mod tests;
