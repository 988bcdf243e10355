//! Scenario tests on a tiny lossless cluster: observers (non-voters) finding the leader,
//! following it and never counting; what the leader reports for DescribeQuorum; snapshots.
//!
//! The harness delivers every message at once (in send order) to nodes that are up, a
//! millisecond of virtual time per round, and records each node's high watermarks, so each
//! test reads as a story: start, run, take nodes down, check.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use sluice_quorum::{
    Config, Effect, Log, MemLog, Message, NodeId, Offset, OffsetAndEpoch, QuorumState, Replica,
    RoleKind, SnapshotError,
};

/// A lossless cluster of voters and observers on `MemLog`s.
struct Cluster {
    now: u64,
    nodes: BTreeMap<NodeId, Replica<MemLog>>,
    down: BTreeSet<NodeId>,
    queue: VecDeque<(NodeId, NodeId, Message)>,
    /// Each node's latest `Effect::HighWatermark`.
    high_watermarks: BTreeMap<NodeId, Offset>,
    /// Roles seen on observers, over the whole run.
    observer_roles: BTreeSet<String>,
    /// Each node's `Effect::LoadSnapshot`s, in order.
    loads: BTreeMap<NodeId, Vec<OffsetAndEpoch>>,
}

impl Cluster {
    fn new(voters: &[i32], observers: &[i32]) -> Cluster {
        let voter_ids: Vec<NodeId> = voters.iter().copied().map(NodeId).collect();
        let mut nodes = BTreeMap::new();
        for &id in voters.iter().chain(observers) {
            let config = Config::new(NodeId(id), voter_ids.clone());
            let replica = Replica::new(
                config,
                MemLog::new(),
                QuorumState::default(),
                7 + id as u64,
                0,
            );
            nodes.insert(NodeId(id), replica);
        }
        Cluster {
            now: 0,
            nodes,
            down: BTreeSet::new(),
            queue: VecDeque::new(),
            high_watermarks: BTreeMap::new(),
            observer_roles: BTreeSet::new(),
            loads: BTreeMap::new(),
        }
    }

    fn node(&self, id: i32) -> &Replica<MemLog> {
        &self.nodes[&NodeId(id)]
    }

    fn node_mut(&mut self, id: i32) -> &mut Replica<MemLog> {
        self.nodes
            .get_mut(&NodeId(id))
            .expect("a node of this cluster")
    }

    fn carry_out(&mut self, id: NodeId) {
        let effects = self.nodes.get_mut(&id).expect("node").drain_effects();
        for effect in effects {
            match effect {
                Effect::Send { to, message } => self.queue.push_back((id, to, message)),
                Effect::HighWatermark(offset) => {
                    self.high_watermarks.insert(id, offset);
                }
                Effect::LoadSnapshot(snapshot) => {
                    self.loads.entry(id).or_default().push(snapshot);
                }
                Effect::Persist(_) => {}
            }
        }
    }

    /// One millisecond: every node that is up ticks, then messages flow until none is left.
    fn round(&mut self) {
        self.now += 1;
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for &id in &ids {
            if !self.down.contains(&id) {
                let now = self.now;
                self.nodes.get_mut(&id).expect("node").tick(now);
                self.carry_out(id);
            }
        }
        while let Some((from, to, message)) = self.queue.pop_front() {
            if self.down.contains(&to) || self.down.contains(&from) {
                continue;
            }
            let now = self.now;
            let Some(replica) = self.nodes.get_mut(&to) else {
                continue;
            };
            replica.receive(now, from, message);
            self.carry_out(to);
        }
        for replica in self.nodes.values().filter(|r| r.is_observer()) {
            self.observer_roles.insert(format!("{:?}", replica.role()));
        }
    }

    fn run(&mut self, ms: u64) {
        for _ in 0..ms {
            self.round();
        }
    }

    /// The one live leader, if there is exactly one.
    fn leader(&self) -> Option<i32> {
        let leaders: Vec<i32> = self
            .nodes
            .iter()
            .filter(|(id, r)| !self.down.contains(id) && r.role() == RoleKind::Leader)
            .map(|(id, _)| id.0)
            .collect();
        (leaders.len() == 1).then(|| leaders[0])
    }

    fn propose(&mut self, data: &[u8]) -> Offset {
        let leader = self.leader().expect("a leader");
        let now = self.now;
        let offset = self
            .node_mut(leader)
            .propose(now, data.to_vec())
            .expect("leads");
        self.carry_out(NodeId(leader));
        offset
    }

    fn high_watermark(&self, id: i32) -> Offset {
        self.high_watermarks
            .get(&NodeId(id))
            .copied()
            .unwrap_or_default()
    }
}

/// An observer finds the leader by asking voters, follows it, and ends with the same log and
/// high watermark as the voters; it is only ever Unattached or Follower.
#[test]
fn observer_follows_the_leader_and_applies_the_same_prefix() {
    let mut cluster = Cluster::new(&[1, 2, 3], &[4]);
    cluster.run(1000);
    let leader = cluster.leader().expect("a leader within a second");
    for i in 0..20u8 {
        cluster.propose(&[i]);
        cluster.run(5);
    }
    cluster.run(200);
    let committed = cluster.high_watermark(leader);
    assert_eq!(cluster.high_watermark(4), committed);
    let observer = cluster.node(4);
    assert_eq!(observer.role(), RoleKind::Follower);
    assert_eq!(observer.leader(), Some(NodeId(leader)));
    for offset in 0..committed.0 {
        let offset = Offset(offset);
        assert_eq!(
            observer.log().entry(offset),
            cluster.node(leader).log().entry(offset)
        );
    }
    let roles: Vec<&str> = cluster.observer_roles.iter().map(String::as_str).collect();
    assert_eq!(roles, ["Follower", "Unattached"]);
    let described = cluster.node(leader).describe().expect("leads");
    let observers: Vec<(i32, Option<Offset>)> = described
        .observers
        .iter()
        .map(|r| (r.id.0, r.log_end_offset))
        .collect();
    assert_eq!(observers, [(4, Some(cluster.node(leader).log().end()))]);
    assert_eq!(described.voters.len(), 3);
}

/// A Vote (standard or pre-vote) sent to an observer is refused, and the observer never
/// stands even when no voter ever answers it.
#[test]
fn observer_refuses_votes_and_never_stands() {
    let voters = vec![NodeId(1), NodeId(2), NodeId(3)];
    let config = Config::new(NodeId(9), voters);
    let mut observer = Replica::new(config, MemLog::new(), QuorumState::default(), 1, 0);
    for pre_vote in [true, false] {
        let last = observer.log().end_and_epoch();
        let epoch = observer.epoch().next();
        observer.receive(
            1,
            NodeId(1),
            Message::Vote {
                epoch,
                last,
                pre_vote,
            },
        );
        let granted: Vec<bool> = observer
            .drain_effects()
            .into_iter()
            .filter_map(|e| match e {
                Effect::Send {
                    message: Message::VoteResponse { granted, .. },
                    ..
                } => Some(granted),
                _ => None,
            })
            .collect();
        assert_eq!(granted, [false]);
    }
    for now in 0..10_000 {
        observer.tick(now);
        assert_eq!(observer.role(), RoleKind::Unattached);
        for effect in observer.drain_effects() {
            if let Effect::Send { to, message } = effect {
                assert!(matches!(message, Message::Fetch { .. }), "{message:?}");
                assert!(to.0 >= 1 && to.0 <= 3);
            }
        }
    }
}

/// Observers never count: with two of three voters down, a leader fetched from by two
/// observers commits nothing new and resigns by check quorum, and the observers never apply
/// past what was committed.
#[test]
fn observers_alone_cannot_commit() {
    let mut cluster = Cluster::new(&[1, 2, 3], &[4, 5]);
    cluster.run(1000);
    let leader = cluster.leader().expect("a leader");
    cluster.run(100);
    let committed = cluster.high_watermark(leader);
    for id in [1, 2, 3].into_iter().filter(|&id| id != leader) {
        cluster.down.insert(NodeId(id));
    }
    cluster.propose(b"never committed");
    cluster.run(2000);
    assert_eq!(cluster.high_watermark(leader), committed);
    assert_eq!(cluster.high_watermark(4), committed);
    assert_eq!(cluster.high_watermark(5), committed);
    assert_ne!(
        cluster.node(leader).role(),
        RoleKind::Leader,
        "check quorum counts voters only"
    );
}

/// When its leader dies, an observer goes back to asking voters and follows the next leader.
#[test]
fn observer_moves_to_the_next_leader() {
    let mut cluster = Cluster::new(&[1, 2, 3], &[4]);
    cluster.run(1000);
    let first = cluster.leader().expect("a leader");
    cluster.down.insert(NodeId(first));
    cluster.run(3000);
    let second = cluster.leader().expect("a new leader");
    assert_ne!(first, second);
    let offset = cluster.propose(b"after the change");
    cluster.run(300);
    assert_eq!(cluster.node(4).leader(), Some(NodeId(second)));
    assert!(cluster.high_watermark(4) > offset);
}

/// Every voter snapshots at its high watermark and drops its log below it.
fn snapshot_voters(cluster: &mut Cluster, voters: &[i32]) -> Offset {
    let mut start = Offset(0);
    for &id in voters {
        let replica = cluster.node_mut(id);
        let offset = replica.high_watermark();
        let data = format!("state below {}", offset.0).into_bytes();
        replica.snapshot_taken(offset, data).expect("committed");
        start = replica.delete_before_snapshot();
        assert_eq!(start, offset);
    }
    start
}

/// A node that was down while the voters dropped their logs below a snapshot catches up by
/// FetchSnapshot: it installs the leader's snapshot (its log now starts there, and it is told
/// to load it), then fetches the entries after it. Shown for an observer and for a voter.
#[test]
fn a_lagging_replica_catches_up_through_the_snapshot() {
    let mut cluster = Cluster::new(&[1, 2, 3], &[4]);
    cluster.run(1000);
    let leader = cluster.leader().expect("a leader");
    let lagging = [1, 2, 3]
        .into_iter()
        .find(|&id| id != leader)
        .expect("a follower");
    cluster.down.insert(NodeId(4));
    cluster.down.insert(NodeId(lagging));
    for i in 0..30u8 {
        cluster.propose(&[i]);
        cluster.run(2);
    }
    cluster.run(100);
    let up: Vec<i32> = [1, 2, 3].into_iter().filter(|&id| id != lagging).collect();
    let start = snapshot_voters(&mut cluster, &up);
    assert!(start.0 > 30);
    let after = cluster.propose(b"after the snapshot");
    cluster.down.clear();
    cluster.run(500);
    let snapshot = cluster.node(leader).log().snapshot().map(|s| s.id);
    for id in [4, lagging] {
        let replica = cluster.node(id);
        assert_eq!(
            cluster.loads.get(&NodeId(id)).map(Vec::as_slice),
            snapshot.as_ref().map(std::slice::from_ref)
        );
        assert_eq!(replica.log().start().offset, start);
        assert_eq!(
            replica.log().snapshot(),
            cluster.node(leader).log().snapshot()
        );
        assert!(
            cluster.high_watermark(id) > after,
            "node {id} applied past the snapshot"
        );
        assert_eq!(
            replica.log().entry(after),
            cluster.node(leader).log().entry(after)
        );
    }
}

/// A snapshot is refused past the high watermark or not past the latest one; a restart from a
/// log with a snapshot tells the caller to load it first, with the high watermark at its end.
#[test]
fn snapshot_rules_and_restart() {
    let mut cluster = Cluster::new(&[1, 2, 3], &[]);
    cluster.run(1000);
    let leader = cluster.leader().expect("a leader");
    cluster.propose(b"one");
    cluster.run(50);
    let replica = cluster.node_mut(leader);
    let high_watermark = replica.high_watermark();
    let past = high_watermark.next();
    assert_eq!(
        replica.snapshot_taken(past, Vec::new()),
        Err(SnapshotError::NotCommitted {
            offset: past,
            high_watermark
        })
    );
    let id = replica
        .snapshot_taken(high_watermark, b"s".to_vec())
        .expect("committed");
    assert_eq!(
        replica.snapshot_taken(high_watermark, Vec::new()),
        Err(SnapshotError::NotNewer {
            offset: high_watermark,
            latest: high_watermark
        })
    );
    let log = replica.log().clone();
    let config = Config::new(NodeId(leader), vec![NodeId(1), NodeId(2), NodeId(3)]);
    let mut restarted = Replica::new(config, log, replica.quorum_state(), 1, cluster.now);
    assert_eq!(
        restarted.drain_effects().first(),
        Some(&Effect::LoadSnapshot(id))
    );
    assert_eq!(restarted.high_watermark(), high_watermark);
}
