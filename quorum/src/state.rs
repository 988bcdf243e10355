//! The replica's roles and what each one remembers (Kafka's `UnattachedState`,
//! `ProspectiveState`, `CandidateState`, `LeaderState`, `FollowerState`, `ResignedState`).
//!
//! The epoch, the vote and the known leader are not here but in the replica's `QuorumState`,
//! the part that is persisted; a role holds only what a restart may forget (timers, votes
//! received, followers' progress). Times are absolute milliseconds of the caller's clock.

use std::collections::{BTreeMap, BTreeSet};

use crate::types::{NodeId, Offset, OffsetAndEpoch};

/// Which role a replica is in, without its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoleKind {
    Unattached,
    Prospective,
    Candidate,
    Leader,
    Follower,
    Resigned,
}

/// A role with its timers and bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Role {
    /// Knows no leader in its epoch (and may have voted in it); a voter starts a pre-vote when
    /// `election_at` passes, an observer asks a random voter for the leader then (a Fetch, as
    /// Kafka's observers do) and again every request timeout.
    Unattached {
        election_at: u64,
    },
    /// KIP-996: asking for pre-votes without bumping the epoch.
    Prospective(Election),
    /// Standing for election in its epoch, having voted for itself.
    Candidate(Election),
    Leader(Leading),
    Follower(Following),
    /// A leader that gave up its epoch (on purpose, on losing the quorum, or found on restart);
    /// starts a pre-vote when `election_at` passes.
    Resigned {
        election_at: u64,
    },
}

impl Role {
    /// The role's kind.
    pub fn kind(&self) -> RoleKind {
        match self {
            Role::Unattached { .. } => RoleKind::Unattached,
            Role::Prospective(_) => RoleKind::Prospective,
            Role::Candidate(_) => RoleKind::Candidate,
            Role::Leader(_) => RoleKind::Leader,
            Role::Follower(_) => RoleKind::Follower,
            Role::Resigned { .. } => RoleKind::Resigned,
        }
    }
}

/// A (pre-)vote round.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Election {
    pub granted: BTreeSet<NodeId>,
    pub rejected: BTreeSet<NodeId>,
    /// The round gives up at this time.
    pub election_at: u64,
    /// Voters that have not answered are asked again at this time.
    pub resend_at: u64,
}

/// What a leader tracks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Leading {
    /// The offset of this epoch's LeaderChange entry: the high watermark only moves past it.
    pub epoch_start: Offset,
    /// Every other voter's state.
    pub followers: BTreeMap<NodeId, FollowerProgress>,
    /// Every non-voter that fetched in this epoch (Kafka's observers), forgotten after
    /// `Config::observer_session_timeout_ms` without a fetch. They never count towards the
    /// high watermark nor check quorum.
    pub observers: BTreeMap<NodeId, FetchProgress>,
    /// Voters that fetched since the last check-quorum time.
    pub fetched_since_check: BTreeSet<NodeId>,
    /// When to check that a majority still fetches.
    pub check_quorum_at: u64,
    /// When the next tick flushes the log.
    pub flush_at: u64,
}

/// A leader's view of one voter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct FollowerProgress {
    /// Where its valid Fetches reached (its log end is durable on the follower: followers flush
    /// before they fetch).
    pub fetch: FetchProgress,
    /// It answered BeginQuorumEpoch or fetched: stop announcing.
    pub knows_leader: bool,
    /// When to send BeginQuorumEpoch again.
    pub begin_resend_at: u64,
}

/// What a follower tracks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Following {
    /// The leader fetched from.
    pub leader: NodeId,
    /// Without a good Fetch answer by this time the follower starts a pre-vote.
    pub fetch_timeout_at: u64,
    /// A good Fetch answer came since this follower took this leader (KIP-996: until then it
    /// grants pre-votes, so two followers of a dead leader cannot refuse each other forever).
    pub fetched: bool,
    /// When the outstanding Fetch was sent, if one is.
    pub fetch_sent_at: Option<u64>,
    /// When to send the next Fetch when none is outstanding.
    pub next_fetch_at: u64,
    /// The leader answered with this snapshot id (KIP-630): FetchSnapshot it, instead of
    /// Fetch, until it is installed or refused.
    pub fetching_snapshot: Option<OffsetAndEpoch>,
}

/// A leader's record of one replica's fetches in its epoch (voter or observer), for the high
/// watermark and for DescribeQuorum (Kafka's `LeaderState.ReplicaState`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct FetchProgress {
    /// The replica's log end at its last valid Fetch (`LogEndOffset`).
    pub end: Option<Offset>,
    /// When that Fetch arrived (`LastFetchTimestamp`).
    pub last_fetch_ms: Option<u64>,
    /// The latest time at which the leader's log end was at most the replica's latest fetch
    /// offset (`LastCaughtUpTimestamp`).
    pub last_caught_up_ms: Option<u64>,
    /// The leader's log end when the previous Fetch arrived.
    pub leader_end_at_last_fetch: Offset,
}

impl FetchProgress {
    /// A valid Fetch at `fetch_offset` arrived at `now_ms` while the leader's log ended at
    /// `leader_end`. Caught up now if it reaches `leader_end`; else caught up as of the previous
    /// fetch if it reaches where the leader's log ended then (Kafka's rule).
    pub fn record(&mut self, now_ms: u64, fetch_offset: Offset, leader_end: Offset) {
        if fetch_offset >= leader_end {
            self.last_caught_up_ms = Some(now_ms);
        } else if let Some(previous) = self.last_fetch_ms
            && fetch_offset >= self.leader_end_at_last_fetch
        {
            self.last_caught_up_ms =
                Some(self.last_caught_up_ms.map_or(previous, |c| c.max(previous)));
        }
        self.end = Some(fetch_offset);
        self.last_fetch_ms = Some(now_ms);
        self.leader_end_at_last_fetch = leader_end;
    }
}
