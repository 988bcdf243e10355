//! The words of partition replication: replica ids, the three epochs (leader epoch, partition
//! epoch, broker epoch), offsets, the controller's partition state and the replica's settings.
//!
//! Offsets count records from 0; a log end offset is the next offset to write. Every record
//! batch carries the leader epoch it was first appended in, and at most one leader writes in an
//! epoch, so `(offset, epoch)` names one record on every replica.

/// A broker's id as a partition replica (Kafka's `broker.id` / `node.id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ReplicaId(pub i32);

/// A partition's leader epoch: bumped by the controller on every leader change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Epoch(pub i32);

impl Epoch {
    /// The epoch after this one.
    pub fn next(self) -> Epoch {
        Epoch(self.0 + 1)
    }
}

/// A partition's partition epoch (Kafka's `partitionEpoch`, once the ZooKeeper version): bumped
/// by the controller on every change of the partition's state, ISR changes included. An
/// AlterPartition names the one it was based on, so a stale one is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PartitionEpoch(pub i32);

impl PartitionEpoch {
    /// The partition epoch after this one.
    pub fn next(self) -> PartitionEpoch {
        PartitionEpoch(self.0 + 1)
    }
}

/// A broker's epoch (KIP-903): new at every registration, so a restarted broker's replica is
/// told apart from the one that was in the ISR before it crashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct BrokerEpoch(pub i64);

/// A log offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Offset(pub i64);

impl Offset {
    /// The offset after this one.
    pub fn next(self) -> Offset {
        Offset(self.0 + 1)
    }

    /// This offset moved `count` records on.
    pub fn plus(self, count: usize) -> Offset {
        Offset(self.0 + i64::try_from(count).unwrap_or(i64::MAX))
    }
}

/// Where an epoch ends on a log (Kafka's `EpochEndOffset`, the answer of OffsetForLeaderEpoch
/// and the `DivergingEpoch` of a Fetch answer): the largest epoch at most the one asked, and
/// the first offset past it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EpochEndOffset {
    pub epoch: Epoch,
    pub end_offset: Offset,
}

/// A partition's state as the controller publishes it in the metadata image (Kafka's
/// `PartitionRecord`/`PartitionChangeRecord` applied, or a LeaderAndIsr request): each replica
/// becomes leader or follower from it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaderAndIsr {
    /// None while no ISR member can lead (the partition is offline).
    pub leader: Option<ReplicaId>,
    pub leader_epoch: Epoch,
    pub partition_epoch: PartitionEpoch,
    /// The assigned replicas, preferred leader first.
    pub replicas: Vec<ReplicaId>,
    /// The in-sync replicas, the leader among them.
    pub isr: Vec<ReplicaId>,
}

/// One replica's settings (Kafka's broker and topic configs of the same names).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Config {
    /// This replica.
    pub replica_id: ReplicaId,
    /// This broker's epoch, from its registration; sent in every Fetch and in AlterPartition.
    pub broker_epoch: BrokerEpoch,
    /// `replica.lag.time.max.ms`: a follower that has not caught up to the leader's log end
    /// this long leaves the ISR (Kafka's default 30 s).
    pub replica_lag_time_max_ms: u64,
    /// `min.insync.replicas`: fewer in the ISR refuses acks=all produces (capped at the
    /// replication factor, as Kafka's `effectiveMinIsr`).
    pub min_insync_replicas: usize,
    /// The most batches one Fetch answer carries (Kafka bounds bytes: `replica.fetch.max.bytes`).
    pub fetch_batches_max: usize,
    /// The most acks=all produces waiting on one partition (Kafka's purgatory is unbounded; a
    /// broker should stop reading a connection before this is reached).
    pub waiting_produces_max: usize,
    /// A follower sends its next Fetch this long after an answer without records (Kafka
    /// long-polls with `replica.fetch.wait.max.ms` instead) or after an error
    /// (`replica.fetch.backoff.ms`).
    pub fetch_backoff_ms: u64,
    /// A Fetch without an answer this long is sent again.
    pub fetch_timeout_ms: u64,
    /// An AlterPartition without an answer this long is sent again (Kafka's
    /// `AlterPartitionManager` retries until the controller answers).
    pub alter_partition_retry_ms: u64,
}

impl Config {
    /// Kafka's defaults, times scaled down a hundredfold for the simulator (lag 300 ms).
    pub fn new(replica_id: ReplicaId, broker_epoch: BrokerEpoch) -> Config {
        Config {
            replica_id,
            broker_epoch,
            replica_lag_time_max_ms: 300,
            min_insync_replicas: 1,
            fetch_batches_max: 16,
            waiting_produces_max: 1024,
            fetch_backoff_ms: 5,
            fetch_timeout_ms: 50,
            alter_partition_retry_ms: 100,
        }
    }
}
