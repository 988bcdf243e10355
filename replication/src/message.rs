//! What replicas, the controller and producers exchange with a partition replica, as plain data
//! mirroring the fields of Kafka's Fetch (v12+: ReplicaState, CurrentLeaderEpoch,
//! LastFetchedEpoch; DivergingEpoch in the answer), AlterPartition (v3: ISR with broker
//! epochs) and Produce. The broker maps them onto `sluice-net`'s generated messages later.

use crate::types::{
    BrokerEpoch, Epoch, EpochEndOffset, LeaderAndIsr, Offset, PartitionEpoch, ReplicaId,
};

/// A follower's Fetch for one partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FetchRequest {
    /// `ReplicaState.ReplicaId`.
    pub replica_id: ReplicaId,
    /// `ReplicaState.ReplicaEpoch` (KIP-903): the follower's broker epoch.
    pub replica_epoch: BrokerEpoch,
    /// The leader epoch the follower believes current.
    pub current_leader_epoch: Epoch,
    /// The follower's log end offset.
    pub fetch_offset: Offset,
    /// The epoch of the follower's last record (None for an empty log).
    pub last_fetched_epoch: Option<Epoch>,
    /// The follower's log start offset.
    pub log_start_offset: Offset,
}

/// Errors of a Fetch answer (Kafka's error codes of the same names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FetchError {
    /// The follower's leader epoch is older than the leader's: it must learn the new one from
    /// the metadata before it fetches again.
    FencedLeaderEpoch,
    /// The follower's leader epoch is newer than this replica's (it has not learned it yet),
    /// or the follower is not (yet) among the replicas: retry after a backoff.
    UnknownLeaderEpoch,
    /// A fetch from a stale incarnation of the follower (an older broker epoch).
    NotLeaderOrFollower,
    /// The fetch offset is outside the leader's log, or the epoch of the follower's last
    /// record is unknown to the leader.
    OffsetOutOfRange,
}

/// The leader's answer to a Fetch. `current_leader_epoch`, `fetch_offset` and
/// `last_fetched_epoch` echo the request, so the follower drops answers to requests it no
/// longer waits for (Kafka's wire answer does not carry them: the broker fills them in from
/// the request it matched by correlation id).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FetchResponse<B> {
    pub current_leader_epoch: Epoch,
    pub fetch_offset: Offset,
    pub last_fetched_epoch: Option<Epoch>,
    pub error: Option<FetchError>,
    pub high_watermark: Offset,
    pub log_start_offset: Offset,
    /// Set when the follower's log leaves the leader's: where the follower's last fetched
    /// epoch ends on the leader (Kafka's `DivergingEpoch`). No records then.
    pub diverging_epoch: Option<EpochEndOffset>,
    pub batches: Vec<B>,
}

/// An ISR member as AlterPartition names it: id and broker epoch (-1: unknown, Kafka's
/// "don't check").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IsrMember {
    pub replica_id: ReplicaId,
    pub broker_epoch: Option<BrokerEpoch>,
}

/// The leader's AlterPartition to the controller: a new ISR, based on the leader epoch and
/// partition epoch it knows.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AlterPartitionRequest {
    pub leader: ReplicaId,
    pub leader_epoch: Epoch,
    pub partition_epoch: PartitionEpoch,
    pub new_isr: Vec<IsrMember>,
    /// Which send of this change it is (1, then 2, ... as it is sent again). Not on Kafka's
    /// wire: the broker keeps it beside the correlation id of the request it sent. The leader
    /// acts only on the answer to its latest send, which is safe over an ordered channel
    /// (TCP), where the controller has handled every earlier send by then: acting on an
    /// earlier send's INELIGIBLE_REPLICA while a later send could still be applied would
    /// drop a member from the maximal ISR that the controller then adds (found by the
    /// simulator, seed 107, with answers reordered).
    pub attempt: u32,
}

/// The controller's refusals of an AlterPartition (Kafka's error codes of the same names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlterPartitionError {
    /// The partition epoch is stale: a newer state is on its way in the metadata.
    InvalidUpdateVersion,
    /// The leader epoch is stale: this replica no longer leads.
    FencedLeaderEpoch,
    /// A new member is fenced, shutting down, or of another broker epoch (KIP-903); the
    /// controller applied nothing, so the leader goes back to its committed ISR.
    IneligibleReplica,
    /// As `IneligibleReplica`, for older request versions.
    OperationNotAttempted,
    /// Not the leader, an ISR outside the replicas, or without the leader.
    InvalidRequest,
    /// The request reached a controller that is not (or no longer) active: send it again.
    NotController,
}

/// The controller's answer, with the request it answers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AlterPartitionAnswer {
    pub request: AlterPartitionRequest,
    pub result: Result<LeaderAndIsr, AlterPartitionError>,
}

/// Which acknowledgement a produce asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Acks {
    /// acks=0 or acks=1: answered by the caller once appended (and synced, by its own rule).
    Leader,
    /// acks=-1: answered once the high watermark passes the batch, or at `timeout_ms`.
    All {
        token: ProduceToken,
        timeout_ms: u64,
    },
}

/// The caller's name for a waiting acks=all produce, handed back in `Effect::ProduceDone`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProduceToken(pub u64);

/// Why a produce failed (Kafka's error codes of the same names, but `TooManyWaiting`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProduceError {
    /// acks=all with the ISR below `min.insync.replicas`: refused before appending.
    NotEnoughReplicas,
    /// Appended, and the high watermark passed it, but the ISR had shrunk below
    /// `min.insync.replicas` meanwhile.
    NotEnoughReplicasAfterAppend,
    /// The high watermark did not pass the batch within the produce's timeout.
    RequestTimedOut,
    /// This replica stopped leading before the batch was acknowledged.
    NotLeaderOrFollower,
    /// The bounded set of waiting produces is full: refused before appending.
    TooManyWaiting,
}

/// What a leader asks its caller to do, drained with `PartitionLeader::drain_effects`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Effect {
    /// Send this AlterPartition to the controller.
    AlterPartition(AlterPartitionRequest),
    /// The high watermark moved (consumers may read below it; wake long-polling fetches).
    HighWatermark(Offset),
    /// Answer a waiting acks=all produce: its batch's first offset, or why it failed.
    ProduceDone {
        token: ProduceToken,
        base_offset: Offset,
        result: Result<(), ProduceError>,
    },
}
