//! What a leader reports for DescribeQuorum (Kafka's `DescribeQuorumResponse`, KIP-595 and
//! KIP-836): the epoch, the high watermark, and for every voter and observer its log end, when
//! it last fetched and when it was last caught up, from the leader's own fetch bookkeeping.
//!
//! Only a leader knows these; any other role answers `None` (Kafka's `NOT_LEADER_OR_FOLLOWER`).

use crate::log::Log;
use crate::replica::Replica;
use crate::state::{FetchProgress, Role};
use crate::types::{Epoch, NodeId, Offset};

/// The quorum as its leader sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QuorumDescription {
    /// The leader (this replica).
    pub leader: NodeId,
    /// The leader's epoch.
    pub epoch: Epoch,
    /// The leader's high watermark.
    pub high_watermark: Offset,
    /// Every voter, the leader included, by id.
    pub voters: Vec<ReplicaDescription>,
    /// Every observer that fetched in this epoch within the observer session, by id.
    pub observers: Vec<ReplicaDescription>,
}

/// One replica's state (Kafka's `ReplicaState`); `None` is Kafka's -1, not known yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReplicaDescription {
    /// `ReplicaId`.
    pub id: NodeId,
    /// `LogEndOffset`: its fetch offset at its last valid Fetch (the leader: its flushed end).
    pub log_end_offset: Option<Offset>,
    /// `LastFetchTimestamp`, on the caller's clock (the leader: now).
    pub last_fetch_ms: Option<u64>,
    /// `LastCaughtUpTimestamp`: the latest time the leader's log end was at most this
    /// replica's fetch offset (the leader: now).
    pub last_caught_up_ms: Option<u64>,
}

impl ReplicaDescription {
    fn from_progress(id: NodeId, progress: &FetchProgress) -> ReplicaDescription {
        ReplicaDescription {
            id,
            log_end_offset: progress.end,
            last_fetch_ms: progress.last_fetch_ms,
            last_caught_up_ms: progress.last_caught_up_ms,
        }
    }
}

impl<L: Log> Replica<L> {
    /// On the leader: the quorum for DescribeQuorum, as of the latest time passed in; `None`
    /// on any other role.
    pub fn describe(&self) -> Option<QuorumDescription> {
        let Role::Leader(leading) = &self.role else {
            return None;
        };
        let me = ReplicaDescription {
            id: self.config.id,
            log_end_offset: Some(self.log.flushed_end()),
            last_fetch_ms: Some(self.now_ms),
            last_caught_up_ms: Some(self.now_ms),
        };
        let mut voters: Vec<ReplicaDescription> = leading
            .followers
            .iter()
            .map(|(&id, p)| ReplicaDescription::from_progress(id, &p.fetch))
            .chain(std::iter::once(me))
            .collect();
        voters.sort_by_key(|r| r.id);
        let observers = leading
            .observers
            .iter()
            .map(|(&id, p)| ReplicaDescription::from_progress(id, p))
            .collect();
        Some(QuorumDescription {
            leader: self.config.id,
            epoch: self.quorum.epoch,
            high_watermark: self.high_watermark,
            voters,
            observers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::MemLog;
    use crate::message::Message;
    use crate::types::{Config, QuorumState};

    /// A leader of epoch 1 among voters 1..=3 with an empty log (made directly: a single
    /// pre-vote and vote round delivered by hand).
    fn leader() -> Replica<MemLog> {
        let voters = vec![NodeId(1), NodeId(2), NodeId(3)];
        let mut replica = Replica::new(
            Config::new(NodeId(1), voters),
            MemLog::new(),
            QuorumState::default(),
            1,
            0,
        );
        replica.tick(1_000);
        let last = replica.log().end_and_epoch();
        let pre = Message::VoteResponse {
            epoch: Epoch(0),
            leader: None,
            granted: true,
            pre_vote: true,
        };
        replica.receive(1_000, NodeId(2), pre);
        let vote = Message::VoteResponse {
            epoch: Epoch(1),
            leader: None,
            granted: true,
            pre_vote: false,
        };
        replica.receive(1_000, NodeId(2), vote);
        assert!(
            replica.describe().is_some(),
            "leads after two grants ({last:?})"
        );
        replica.drain_effects();
        replica
    }

    fn fetch(replica: &mut Replica<MemLog>, now: u64, from: i32, offset: i64) {
        let last_fetched_epoch = if offset == 0 { Epoch(0) } else { Epoch(1) };
        let message = Message::Fetch {
            epoch: Epoch(1),
            fetch_offset: Offset(offset),
            last_fetched_epoch,
        };
        replica.receive(now, NodeId(from), message);
        replica.drain_effects();
    }

    fn find(list: &[ReplicaDescription], id: i32) -> ReplicaDescription {
        *list.iter().find(|r| r.id == NodeId(id)).expect("listed")
    }

    /// Before any fetch the followers are listed with nothing known; the leader lists itself
    /// with its flushed end and the current time; non-leaders describe nothing.
    #[test]
    fn fresh_leader_knows_only_itself() {
        let replica = leader();
        let d = replica.describe().expect("leader");
        assert_eq!((d.leader, d.epoch), (NodeId(1), Epoch(1)));
        let ids: Vec<i32> = d.voters.iter().map(|r| r.id.0).collect();
        assert_eq!(ids, [1, 2, 3]);
        assert_eq!(find(&d.voters, 1).log_end_offset, Some(Offset(1)));
        assert_eq!(find(&d.voters, 1).last_fetch_ms, Some(1_000));
        assert_eq!(find(&d.voters, 2).log_end_offset, None);
        assert_eq!(find(&d.voters, 2).last_caught_up_ms, None);
        assert!(d.observers.is_empty());
        let voters = vec![NodeId(1), NodeId(2)];
        let config = Config::new(NodeId(2), voters);
        let follower = Replica::new(config, MemLog::new(), QuorumState::default(), 1, 0);
        assert_eq!(follower.describe(), None);
    }

    /// Fetches set the log end and fetch time; "caught up" follows Kafka's rule: now when the
    /// fetch reaches the leader's end, else the previous fetch's time when it reaches where the
    /// leader's end was then. Observers are listed apart and never move the high watermark.
    #[test]
    fn fetches_set_log_end_and_caught_up_times() {
        let mut replica = leader();
        fetch(&mut replica, 1_010, 2, 0);
        let d = replica.describe().expect("leader");
        let two = find(&d.voters, 2);
        assert_eq!(two.log_end_offset, Some(Offset(0)));
        assert_eq!(two.last_fetch_ms, Some(1_010));
        assert_eq!(two.last_caught_up_ms, None, "behind the leader's end (1)");
        fetch(&mut replica, 1_020, 2, 1);
        let two = find(&replica.describe().expect("leader").voters, 2);
        assert_eq!(two.last_caught_up_ms, Some(1_020));
        // The leader appends two more (end 3); a fetch at 1 is behind it and behind nothing
        // new either: still caught up as of 1,020.
        replica.propose(1_025, vec![1]).expect("leads");
        replica.propose(1_025, vec![2]).expect("leads");
        replica.tick(1_025);
        fetch(&mut replica, 1_030, 2, 1);
        let two = find(&replica.describe().expect("leader").voters, 2);
        assert_eq!(two.last_caught_up_ms, Some(1_020));
        // Two more (end 5); the next fetch reaches 3, where the leader's end was at the
        // previous fetch: caught up as of that fetch, 1,030.
        replica.propose(1_035, vec![3]).expect("leads");
        replica.propose(1_035, vec![4]).expect("leads");
        replica.tick(1_035);
        fetch(&mut replica, 1_040, 2, 3);
        let two = find(&replica.describe().expect("leader").voters, 2);
        assert_eq!(two.log_end_offset, Some(Offset(3)));
        assert_eq!(two.last_caught_up_ms, Some(1_030));
        let before = replica.high_watermark();
        fetch(&mut replica, 1_050, 7, 5);
        let d = replica.describe().expect("leader");
        assert_eq!(d.high_watermark, before, "an observer never counts");
        let seven = find(&d.observers, 7);
        assert_eq!(seven.log_end_offset, Some(Offset(5)));
        assert_eq!(seven.last_caught_up_ms, Some(1_050));
        assert!(d.voters.iter().all(|r| r.id != NodeId(7)));
    }

    /// An observer that stops fetching is forgotten after the observer session.
    #[test]
    fn silent_observers_are_forgotten() {
        let mut replica = leader();
        fetch(&mut replica, 1_010, 7, 0);
        let session = replica.config.observer_session_timeout_ms;
        // Keep the leader alive meanwhile: voter 2 fetches, so check quorum holds.
        let mut now = 1_010;
        while now < 1_010 + session + 100 {
            now += 50;
            fetch(&mut replica, now, 2, 1);
            replica.tick(now);
        }
        let d = replica.describe().expect("still leads");
        assert!(d.observers.is_empty(), "{d:?}");
    }
}
