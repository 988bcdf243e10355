//! `Replica`: one replica of a KRaft quorum (a voter, or an observer: a replica whose id is
//! not among the voters) as a sans-IO state machine. Inputs are `tick`,
//! `receive`, `propose` and `resign`, each with the caller's clock; outputs are `Effect`s
//! (persist the quorum state, send a message, a new high watermark), drained by the caller
//! and carried out in order. The log is the one thing called directly, through `Log`.
//!
//! What must stay true: a `Persist` effect comes before every `Send` that depends on it, so a
//! caller that carries effects out in order never sends a vote or an announcement it could
//! forget in a crash; only a leader has unflushed entries (every other role flushes before it
//! fetches, votes or stands), and a leader counts only its flushed end towards the high
//! watermark; a node that restarts as the leader of its persisted epoch resigns it, so no
//! `(offset, epoch)` is ever written twice with different contents. An observer is only ever
//! Unattached or Follower: it never votes, never stands, and the leader never counts it.
//!
//! Role changes live here; vote and quorum-epoch handling in `election.rs`; Fetch, the high
//! watermark and proposals in `replication.rs`.

use crate::log::Log;
use crate::message::Message;
use crate::rng::Rng;
use crate::state::{Election, FollowerProgress, Following, Leading, Role, RoleKind};
use crate::types::{Config, Entry, Epoch, NodeId, Offset, OffsetAndEpoch, Payload, QuorumState};

/// What the caller must do, in order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Effect {
    /// Write the quorum state durably before carrying out any later effect.
    Persist(QuorumState),
    /// Send `message` to `to` (best effort: the protocol resends what matters).
    Send { to: NodeId, message: Message },
    /// Entries below this offset are committed: apply them in order.
    HighWatermark(Offset),
    /// Reset the state machine from the log's snapshot with this id (`Log::snapshot`): it
    /// holds everything below `id.offset`, which is committed; apply entries from there as
    /// later high watermarks pass them. Comes first after a restart from a log with a
    /// snapshot, and after a snapshot fetched from the leader is installed.
    LoadSnapshot(OffsetAndEpoch),
}

/// A proposal reached a replica that does not lead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NotLeader {
    pub epoch: Epoch,
    /// The leader this replica knows, if any, to retry there.
    pub leader: Option<NodeId>,
}

/// One replica of the metadata log: a voter, or an observer (`Config::id` not among
/// `Config::voters`, Kafka's broker-only node). Lives on the controller shard's executor;
/// single-threaded, no I/O: the caller owns the clock, the network and the quorum-state file,
/// and passes the log in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Replica<L> {
    pub(crate) config: Config,
    pub(crate) log: L,
    pub(crate) rng: Rng,
    /// The current quorum state; every change is also pushed as `Effect::Persist`.
    pub(crate) quorum: QuorumState,
    pub(crate) role: Role,
    /// Not persisted (as in Kafka): after a restart it is learned again from the leader.
    pub(crate) high_watermark: Offset,
    pub(crate) effects: Vec<Effect>,
    pub(crate) now_ms: u64,
}

impl<L: Log> Replica<L> {
    /// A replica starting (or restarting) at `now_ms` from its persisted quorum state and its
    /// log. `seed` drives its election timeouts (and an observer's choice of voter to ask).
    pub fn new(config: Config, log: L, persisted: QuorumState, seed: u64, now_ms: u64) -> Self {
        assert!(
            !config.is_observer() || persisted.leader != Some(config.id),
            "an observer never leads"
        );
        let mut replica = Replica {
            config,
            log,
            rng: Rng::new(seed),
            quorum: persisted,
            role: Role::Unattached { election_at: 0 },
            high_watermark: Offset(0),
            effects: Vec::new(),
            now_ms,
        };
        replica.role = match persisted.leader {
            // Entries it wrote as leader may be gone with a crash: never lead this epoch again.
            Some(leader) if leader == replica.config.id => Role::Resigned {
                election_at: replica.election_deadline(),
            },
            Some(leader) => Role::Follower(replica.following(leader)),
            None => Role::Unattached {
                election_at: replica.unattached_deadline(),
            },
        };
        if let Some(id) = replica.log.snapshot().map(|s| s.id) {
            // A snapshot is only ever taken or installed at a committed offset.
            replica.high_watermark = id.offset;
            replica.effects.push(Effect::LoadSnapshot(id));
        }
        replica
    }

    /// Time passes: timeouts fire, requests are sent again, a leader flushes its log.
    pub fn tick(&mut self, now_ms: u64) {
        self.advance(now_ms);
        match self.role.kind() {
            RoleKind::Unattached if self.config.is_observer() => self.tick_observer(),
            RoleKind::Unattached | RoleKind::Resigned => {
                if self.now_ms >= self.election_at() {
                    self.become_prospective();
                }
            }
            RoleKind::Prospective | RoleKind::Candidate => self.tick_election(),
            RoleKind::Leader => self.tick_leader(),
            RoleKind::Follower => self.tick_follower(),
        }
    }

    /// A message from replica `from` arrived. Fetch and FetchSnapshot are taken from any
    /// replica (voters and observers); everything else only from voters.
    pub fn receive(&mut self, now_ms: u64, from: NodeId, message: Message) {
        self.advance(now_ms);
        let fetch = matches!(
            message,
            Message::Fetch { .. } | Message::FetchSnapshot { .. }
        );
        if from == self.config.id || !(fetch || self.config.is_voter(from)) {
            return;
        }
        match message {
            Message::Vote {
                epoch,
                last,
                pre_vote,
            } => self.on_vote(from, epoch, last, pre_vote),
            Message::VoteResponse {
                epoch,
                leader,
                granted,
                pre_vote,
            } => self.on_vote_response(from, epoch, leader, granted, pre_vote),
            Message::BeginQuorumEpoch { epoch } => self.on_begin_quorum_epoch(from, epoch),
            Message::BeginQuorumEpochResponse { epoch, leader } => {
                self.on_begin_quorum_epoch_response(from, epoch, leader)
            }
            Message::EndQuorumEpoch {
                epoch,
                preferred_successors,
            } => self.on_end_quorum_epoch(from, epoch, &preferred_successors),
            Message::Fetch {
                epoch,
                fetch_offset,
                last_fetched_epoch,
            } => self.on_fetch(from, epoch, fetch_offset, last_fetched_epoch),
            Message::FetchResponse(response) => self.on_fetch_response(from, response),
            Message::FetchSnapshot { epoch, snapshot } => {
                self.on_fetch_snapshot(from, epoch, snapshot)
            }
            Message::FetchSnapshotResponse(response) => {
                self.on_fetch_snapshot_response(from, response)
            }
        }
    }

    /// Everything to do since the last drain, in order.
    pub fn drain_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// For the model check: every pending timer is due, so the next `tick` at the same time
    /// fires them all (time there is "any amount", not a number).
    pub fn expire_timers(&mut self) {
        match &mut self.role {
            Role::Unattached { election_at } | Role::Resigned { election_at } => *election_at = 0,
            Role::Prospective(election) | Role::Candidate(election) => {
                election.election_at = 0;
                election.resend_at = 0;
            }
            Role::Leader(leading) => {
                leading.check_quorum_at = 0;
                leading.flush_at = 0;
                for progress in leading.followers.values_mut() {
                    progress.begin_resend_at = 0;
                }
            }
            Role::Follower(following) => {
                following.fetch_timeout_at = 0;
                following.next_fetch_at = 0;
            }
        }
    }

    /// This replica's id.
    pub fn id(&self) -> NodeId {
        self.config.id
    }

    /// Whether this replica is an observer (not a voter).
    pub fn is_observer(&self) -> bool {
        self.config.is_observer()
    }

    /// The role it is in.
    pub fn role(&self) -> RoleKind {
        self.role.kind()
    }

    /// The current epoch.
    pub fn epoch(&self) -> Epoch {
        self.quorum.epoch
    }

    /// The leader of the current epoch, if this replica knows it.
    pub fn leader(&self) -> Option<NodeId> {
        self.quorum.leader
    }

    /// The quorum state as last pushed in `Effect::Persist`.
    pub fn quorum_state(&self) -> QuorumState {
        self.quorum
    }

    /// Entries below this offset are committed (as far as this replica knows).
    pub fn high_watermark(&self) -> Offset {
        self.high_watermark
    }

    /// The log, to read entries below the high watermark.
    pub fn log(&self) -> &L {
        &self.log
    }

    /// The log, for its own settings (a disk log's clock for batch timestamps). Appending,
    /// truncating or flushing through it would break the replica's view: only the replica
    /// does those.
    pub fn log_mut(&mut self) -> &mut L {
        &mut self.log
    }

    fn advance(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
    }

    /// A fresh randomized election deadline.
    pub(crate) fn election_deadline(&mut self) -> u64 {
        let jitter = self.rng.below(self.config.election_jitter_ms);
        self.now_ms + self.config.election_timeout_ms + jitter
    }

    /// When an Unattached replica acts: a voter's randomized election deadline; at once for an
    /// observer, which asks a voter for the leader.
    fn unattached_deadline(&mut self) -> u64 {
        if self.config.is_observer() {
            self.now_ms
        } else {
            self.election_deadline()
        }
    }

    fn election_at(&self) -> u64 {
        match &self.role {
            Role::Unattached { election_at } | Role::Resigned { election_at } => *election_at,
            Role::Prospective(election) | Role::Candidate(election) => election.election_at,
            Role::Leader(_) | Role::Follower(_) => u64::MAX,
        }
    }

    pub(crate) fn send(&mut self, to: NodeId, message: Message) {
        self.effects.push(Effect::Send { to, message });
    }

    /// Every voter but this one.
    pub(crate) fn others(&self) -> Vec<NodeId> {
        let me = self.config.id;
        self.config
            .voters
            .iter()
            .copied()
            .filter(|&v| v != me)
            .collect()
    }

    fn set_quorum(&mut self, quorum: QuorumState) {
        if quorum != self.quorum {
            self.quorum = quorum;
            self.effects.push(Effect::Persist(quorum));
        }
    }

    /// Every role change goes through here. Only a leader holds unflushed entries, so leaving
    /// the leader role flushes: the log end this node votes and fetches with is durable.
    fn set_role(&mut self, role: Role) {
        if self.role.kind() == RoleKind::Leader {
            self.log.flush();
        }
        self.role = role;
    }

    fn following(&mut self, leader: NodeId) -> Following {
        Following {
            leader,
            fetch_timeout_at: self.now_ms + self.config.fetch_timeout_ms,
            fetched: false,
            fetch_sent_at: None,
            next_fetch_at: self.now_ms,
            fetching_snapshot: None,
        }
    }

    /// No leader known in `epoch` (a higher one, or the current one with a vote cast).
    pub(crate) fn become_unattached(&mut self, epoch: Epoch, voted_for: Option<NodeId>) {
        assert!(epoch >= self.quorum.epoch, "epochs never go back");
        let election_at = self.unattached_deadline();
        self.set_role(Role::Unattached { election_at });
        self.set_quorum(QuorumState {
            epoch,
            voted_for,
            leader: None,
        });
    }

    /// Follow `leader` in `epoch`; persisted before the first Fetch goes out.
    pub(crate) fn become_follower(&mut self, epoch: Epoch, leader: NodeId) {
        assert!(epoch >= self.quorum.epoch, "epochs never go back");
        assert!(leader != self.config.id, "a node never follows itself");
        let voted_for = if epoch == self.quorum.epoch {
            self.quorum.voted_for
        } else {
            None
        };
        let following = self.following(leader);
        self.set_role(Role::Follower(following));
        self.set_quorum(QuorumState {
            epoch,
            voted_for,
            leader: Some(leader),
        });
        self.send_fetch();
    }

    /// Learned of `epoch` (and maybe its leader) from any message: move there if it is newer,
    /// or take the leader if this epoch's was unknown. Returns whether `epoch` is now ours.
    pub(crate) fn observe_epoch(&mut self, epoch: Epoch, leader: Option<NodeId>) -> bool {
        let me = self.config.id;
        if epoch > self.quorum.epoch {
            match leader {
                Some(leader) if leader != me => self.become_follower(epoch, leader),
                _ => self.become_unattached(epoch, None),
            }
        } else if epoch == self.quorum.epoch
            && self.quorum.leader.is_none()
            && let Some(leader) = leader.filter(|&l| l != me)
        {
            self.become_follower(epoch, leader);
        }
        epoch == self.quorum.epoch
    }

    /// KIP-996: ask for pre-votes in the current epoch, voting for itself.
    pub(crate) fn become_prospective(&mut self) {
        assert!(!self.config.is_observer(), "an observer never stands");
        let election = self.new_election();
        self.set_role(Role::Prospective(election));
        self.log.flush();
        self.send_votes(true);
        self.check_election();
    }

    fn become_candidate(&mut self) {
        let me = self.config.id;
        // The log end a candidate claims must survive a crash (a voter's grant relies on it).
        self.log.flush();
        let election = self.new_election();
        self.set_role(Role::Candidate(election));
        self.set_quorum(QuorumState {
            epoch: self.quorum.epoch.next(),
            voted_for: Some(me),
            leader: None,
        });
        self.send_votes(false);
        self.check_election();
    }

    fn new_election(&mut self) -> Election {
        let mut granted = std::collections::BTreeSet::new();
        granted.insert(self.config.id);
        Election {
            granted,
            rejected: std::collections::BTreeSet::new(),
            election_at: self.election_deadline(),
            resend_at: self.now_ms + self.config.request_timeout_ms,
        }
    }

    /// A majority of grants moves a prospective to candidate and a candidate to leader.
    pub(crate) fn check_election(&mut self) {
        let majority = self.config.majority();
        match &self.role {
            Role::Prospective(e) if e.granted.len() >= majority => self.become_candidate(),
            Role::Candidate(e) if e.granted.len() >= majority => self.become_leader(),
            _ => {}
        }
    }

    fn become_leader(&mut self) {
        let me = self.config.id;
        self.set_quorum(QuorumState {
            leader: Some(me),
            ..self.quorum
        });
        let epoch_start = self.log.end();
        let followers = self
            .others()
            .into_iter()
            .map(|v| (v, FollowerProgress::default()))
            .collect();
        self.set_role(Role::Leader(Leading {
            epoch_start,
            followers,
            observers: std::collections::BTreeMap::new(),
            fetched_since_check: std::collections::BTreeSet::new(),
            check_quorum_at: self.now_ms + self.config.fetch_timeout_ms * 3 / 2,
            flush_at: self.now_ms + self.config.flush_interval_ms,
        }));
        self.log.append(Entry {
            epoch: self.quorum.epoch,
            payload: Payload::LeaderChange { leader: me },
        });
        self.announce_leader();
        // A quorum of one commits on its own flush.
        self.flush_leader();
    }

    /// Give up leading this epoch: on purpose (`graceful`, with EndQuorumEpoch naming the most
    /// caught-up voters first), or because a majority stopped fetching (check quorum).
    pub(crate) fn become_resigned(&mut self, graceful: bool) {
        let successors = self.preferred_successors();
        let election_at = self.election_deadline();
        self.set_role(Role::Resigned { election_at });
        if graceful {
            let epoch = self.quorum.epoch;
            for to in self.others() {
                let preferred_successors = successors.clone();
                let message = Message::EndQuorumEpoch {
                    epoch,
                    preferred_successors,
                };
                self.send(to, message);
            }
        }
    }

    fn tick_election(&mut self) {
        let (election_at, resend_at) = match &self.role {
            Role::Prospective(e) | Role::Candidate(e) => (e.election_at, e.resend_at),
            _ => return,
        };
        if self.now_ms >= election_at {
            // KIP-996: a failed round, pre-vote or vote, goes back to asking for pre-votes.
            self.become_prospective();
        } else if self.now_ms >= resend_at {
            let pre_vote = self.role.kind() == RoleKind::Prospective;
            let next = self.now_ms + self.config.request_timeout_ms;
            if let Role::Prospective(e) | Role::Candidate(e) = &mut self.role {
                e.resend_at = next;
            }
            self.send_votes(pre_vote);
        }
    }

    /// An observer without a leader asks a random voter (Kafka's bootstrap voters) with a
    /// Fetch; the answer names the leader it knows, which `observe_epoch` then follows.
    fn tick_observer(&mut self) {
        let Role::Unattached { election_at } = &mut self.role else {
            return;
        };
        if self.now_ms < *election_at {
            return;
        }
        *election_at = self.now_ms + self.config.request_timeout_ms;
        let voter_count = u64::try_from(self.config.voters.len()).unwrap_or(0);
        let index = usize::try_from(self.rng.below(voter_count)).unwrap_or(0);
        if let Some(&voter) = self.config.voters.get(index) {
            let position = self.log.end_and_epoch();
            let message = Message::Fetch {
                epoch: self.quorum.epoch,
                fetch_offset: position.offset,
                last_fetched_epoch: position.epoch,
            };
            self.send(voter, message);
        }
    }

    fn tick_follower(&mut self) {
        let Role::Follower(f) = &self.role else {
            return;
        };
        if self.now_ms >= f.fetch_timeout_at {
            if self.config.is_observer() {
                // Kafka's observers go back to asking the voters who leads.
                self.become_unattached(self.quorum.epoch, None);
            } else {
                self.become_prospective();
            }
            return;
        }
        let due = match f.fetch_sent_at {
            Some(sent) => self.now_ms >= sent + self.config.request_timeout_ms,
            None => self.now_ms >= f.next_fetch_at,
        };
        if due {
            self.send_fetch();
        }
    }
}
