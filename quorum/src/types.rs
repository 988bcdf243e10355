//! The words of the quorum: node ids, epochs, offsets, log entries, the persisted quorum state
//! and the replica's configuration.
//!
//! Offsets count entries from 0 (an entry's offset is its position in the log); epochs start at
//! 0 (no leader yet) and every leader's entries carry the epoch it was elected in, so
//! `(offset, epoch)` names one entry on every node (Raft's log matching).

/// A replica's id (Kafka's replica id, `node.id`): a voter's or an observer's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub i32);

/// A leader epoch. Epoch 0 has no leader; the first election makes epoch 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Epoch(pub i32);

impl Epoch {
    /// The epoch after this one.
    pub fn next(self) -> Epoch {
        Epoch(self.0 + 1)
    }
}

/// A log offset (an entry's position; a log's end offset is the next offset to write).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Offset(pub i64);

impl Offset {
    /// The offset after this one.
    pub fn next(self) -> Offset {
        Offset(self.0 + 1)
    }

    /// As an index into an in-memory vector.
    pub fn index(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }

    /// The offset of the entry at `index`.
    pub fn from_index(index: usize) -> Offset {
        Offset(i64::try_from(index).unwrap_or(i64::MAX))
    }
}

/// An offset together with the epoch of the entry before it: a log's end, or where an epoch
/// ends (Kafka's `OffsetAndEpoch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct OffsetAndEpoch {
    pub offset: Offset,
    pub epoch: Epoch,
}

/// What an entry carries.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Payload {
    /// The control record a new leader writes first in its epoch (Kafka's `LeaderChange`):
    /// committing it commits every earlier entry (Raft only counts replicas for entries of the
    /// current epoch).
    LeaderChange { leader: NodeId },
    /// Records for the state machine above (a metadata record batch, later).
    Data(Vec<u8>),
}

/// One log entry; its offset is its position.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Entry {
    pub epoch: Epoch,
    pub payload: Payload,
}

/// A snapshot of the state machine above (KIP-630): its state after applying every entry
/// below `id.offset`, whose last entry had epoch `id.epoch`. Taken only at a committed offset;
/// the bytes are opaque here (the controller's metadata image, later).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Snapshot {
    /// Kafka's snapshot id: end offset and epoch.
    pub id: OffsetAndEpoch,
    /// The state, as the caller wrote it.
    pub data: Vec<u8>,
}

/// What survives a restart besides the log (Kafka's `quorum-state` file): it is written before
/// any message that depends on it is sent (a granted vote, a BeginQuorumEpoch, a Fetch to a
/// new leader), so a node never votes twice in an epoch nor forgets an epoch it acted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct QuorumState {
    pub epoch: Epoch,
    pub voted_for: Option<NodeId>,
    pub leader: Option<NodeId>,
}

/// Timeouts and bounds (Kafka's `controller.quorum.*` settings).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Config {
    /// This node: a voter when it is in `voters`, else an observer (Kafka's broker-only
    /// replica), which follows the log but never votes nor stands.
    pub id: NodeId,
    /// Every voter (static: no voter changes in this slice).
    pub voters: Vec<NodeId>,
    /// A follower that has not fetched from its leader this long starts a pre-vote; a leader
    /// that has not been fetched from by a majority for this long resigns (check quorum).
    pub fetch_timeout_ms: u64,
    /// Base election timeout; each round adds a random `0..election_jitter_ms`.
    pub election_timeout_ms: u64,
    /// Random spread added to each election timeout (0: deterministic, for the model check).
    pub election_jitter_ms: u64,
    /// A request without an answer is sent again after this long (Vote, BeginQuorumEpoch,
    /// Fetch).
    pub request_timeout_ms: u64,
    /// An up-to-date follower asks again this long after an empty Fetch answer (Kafka long-polls
    /// instead; the leader here answers at once).
    pub fetch_interval_ms: u64,
    /// Most entries in one Fetch answer.
    pub fetch_entries_max: usize,
    /// A leader flushes what it appended at most this often (on `tick`; 0: every tick), the
    /// window in which a crash tears its writes; Kafka's `linger.ms` for the metadata log.
    pub flush_interval_ms: u64,
    /// A leader forgets an observer that has not fetched this long (Kafka's observer session,
    /// 5 minutes there, scaled down tenfold here), so the observers it tracks stay bounded by
    /// the live ones.
    pub observer_session_timeout_ms: u64,
}

impl Config {
    /// Defaults for `id` among `voters`, in the spirit of Kafka's (fetch timeout 2 s, election
    /// timeout 1 s), scaled down tenfold for a LAN controller quorum.
    pub fn new(id: NodeId, voters: Vec<NodeId>) -> Config {
        Config {
            id,
            voters,
            fetch_timeout_ms: 200,
            election_timeout_ms: 100,
            election_jitter_ms: 100,
            request_timeout_ms: 50,
            fetch_interval_ms: 20,
            fetch_entries_max: 64,
            flush_interval_ms: 0,
            observer_session_timeout_ms: 30_000,
        }
    }

    /// How many voters make a majority.
    pub fn majority(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    /// Is `node` a voter?
    pub fn is_voter(&self, node: NodeId) -> bool {
        self.voters.contains(&node)
    }

    /// Is this node an observer (not a voter)?
    pub fn is_observer(&self) -> bool {
        !self.is_voter(self.id)
    }
}
