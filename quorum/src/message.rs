//! The messages replicas exchange, as plain data mirroring the fields of Kafka's Vote,
//! BeginQuorumEpoch, EndQuorumEpoch, Fetch (KIP-595, KIP-996's `PreVote` flag) and
//! FetchSnapshot (KIP-630, in one chunk), one partition each. A later slice maps them onto
//! `sluice-net`'s generated messages; the sender is passed beside the message
//! (`Replica::receive`), as Kafka's replica id is.

use crate::types::{Entry, Epoch, NodeId, Offset, OffsetAndEpoch};

/// One message between two voters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Message {
    /// Kafka's VoteRequest: a standard vote (`pre_vote` false) asks for the sender's election
    /// in `epoch`; a pre-vote asks whether the voter would grant one if the sender stood in the
    /// next epoch, and changes nothing on the voter.
    Vote {
        epoch: Epoch,
        /// The candidate's log end and last epoch (`LastOffset`, `LastOffsetEpoch`).
        last: OffsetAndEpoch,
        pre_vote: bool,
    },
    /// Kafka's VoteResponse. `epoch` is the voter's epoch when it is ahead, else the request's.
    VoteResponse {
        epoch: Epoch,
        leader: Option<NodeId>,
        granted: bool,
        pre_vote: bool,
    },
    /// A new leader announces itself to every voter.
    BeginQuorumEpoch { epoch: Epoch },
    /// The answer: the voter's epoch and the leader it knows.
    BeginQuorumEpochResponse {
        epoch: Epoch,
        leader: Option<NodeId>,
    },
    /// A leader resigning on purpose, with the voters it would like to see next, most caught up
    /// first.
    EndQuorumEpoch {
        epoch: Epoch,
        preferred_successors: Vec<NodeId>,
    },
    /// Kafka's Fetch from a voter (`CurrentLeaderEpoch`, `FetchOffset`, `LastFetchedEpoch`).
    Fetch {
        epoch: Epoch,
        fetch_offset: Offset,
        last_fetched_epoch: Epoch,
    },
    /// Kafka's FetchResponse for the metadata partition.
    FetchResponse(FetchResponse),
    /// Kafka's FetchSnapshot (KIP-630) for the snapshot a FetchResponse named, whole (one
    /// chunk: metadata snapshots are small).
    FetchSnapshot {
        epoch: Epoch,
        snapshot: OffsetAndEpoch,
    },
    /// Kafka's FetchSnapshotResponse.
    FetchSnapshotResponse(FetchSnapshotResponse),
}

/// Why a Fetch was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FetchError {
    /// The request's epoch is older than the receiver's (`FENCED_LEADER_EPOCH`).
    FencedLeaderEpoch,
    /// The request's epoch is newer than the receiver's (`UNKNOWN_LEADER_EPOCH`).
    UnknownLeaderEpoch,
    /// The receiver does not lead the epoch (`NOT_LEADER_OR_FOLLOWER`).
    NotLeader,
    /// The leader no longer holds the snapshot asked for (`SNAPSHOT_NOT_FOUND`): fetch again
    /// to learn its latest.
    SnapshotNotFound,
}

/// A Fetch answer. It echoes the request's position so the follower can tell an answer to its
/// current position from a late duplicate (Kafka matches them by correlation id instead).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FetchResponse {
    /// The responder's epoch and the leader it knows (`CurrentLeader`).
    pub epoch: Epoch,
    pub leader: Option<NodeId>,
    pub error: Option<FetchError>,
    pub fetch_offset: Offset,
    pub last_fetched_epoch: Epoch,
    pub high_watermark: Offset,
    /// Set when the follower's position is not on the leader's log (`DivergingEpoch`): the
    /// largest leader epoch at most `last_fetched_epoch` and where it ends.
    pub diverging: Option<OffsetAndEpoch>,
    /// Set when the follower's position is below the leader's log start, or its epoch history
    /// there unknown (`SnapshotId`): fetch this snapshot first.
    pub snapshot: Option<OffsetAndEpoch>,
    /// Entries from `fetch_offset` on (empty when diverging, on a snapshot, or on error).
    pub entries: Vec<Entry>,
}

/// A FetchSnapshot answer: the whole snapshot, or an error.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FetchSnapshotResponse {
    /// The responder's epoch and the leader it knows (`CurrentLeader`).
    pub epoch: Epoch,
    pub leader: Option<NodeId>,
    pub error: Option<FetchError>,
    /// The snapshot asked for.
    pub snapshot: OffsetAndEpoch,
    /// Its bytes (empty on error).
    pub data: Vec<u8>,
}
