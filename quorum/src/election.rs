//! Elections: Vote and pre-vote (KIP-595, KIP-996), BeginQuorumEpoch and EndQuorumEpoch.
//!
//! Granting rules (a voter answers with the epoch it is in when that is newer, which moves the
//! asker there): a standard vote in a newer epoch first moves the voter to that epoch
//! (persisted); it is granted when the candidate's log is at least as up to date, by
//! `(last epoch, end offset)`, and the voter has neither voted for another node nor learned of a
//! leader in the epoch. The grant is persisted before the answer is sent. A pre-vote changes
//! nothing on the voter; it is granted when the log is up to date and the voter has not heard
//! from a live leader: a leader refuses, and a follower refuses once it has fetched from its
//! leader successfully (KIP-996).

use crate::log::Log;
use crate::message::Message;
use crate::replica::Replica;
use crate::state::{Role, RoleKind};
use crate::types::{Epoch, NodeId, OffsetAndEpoch};

impl<L: Log> Replica<L> {
    pub(crate) fn send_votes(&mut self, pre_vote: bool) {
        let (epoch, answered) = match &self.role {
            Role::Prospective(e) | Role::Candidate(e) => {
                let answered: Vec<NodeId> = e.granted.union(&e.rejected).copied().collect();
                (self.quorum.epoch, answered)
            }
            _ => return,
        };
        let last = self.log.end_and_epoch();
        for to in self.others() {
            if !answered.contains(&to) {
                let message = Message::Vote {
                    epoch,
                    last,
                    pre_vote,
                };
                self.send(to, message);
            }
        }
    }

    pub(crate) fn on_vote(
        &mut self,
        from: NodeId,
        epoch: Epoch,
        last: OffsetAndEpoch,
        pre_vote: bool,
    ) {
        if epoch > self.quorum.epoch && !pre_vote {
            self.become_unattached(epoch, None);
        }
        let mine = self.log.end_and_epoch();
        let log_ok = (last.epoch, last.offset) >= (mine.epoch, mine.offset);
        let granted = epoch >= self.quorum.epoch
            && log_ok
            && if pre_vote {
                self.can_grant_pre_vote()
            } else {
                self.can_grant_vote(from)
            };
        if granted && !pre_vote && self.quorum.voted_for.is_none() {
            // Persisted (through the Persist effect) before the answer below is sent.
            self.become_unattached(epoch, Some(from));
        }
        let current = self.quorum.epoch;
        let message = Message::VoteResponse {
            epoch: current.max(epoch),
            leader: self.quorum.leader.filter(|_| current >= epoch),
            granted,
            pre_vote,
        };
        self.send(from, message);
    }

    /// KIP-996: grant unless this node is in touch with a live leader (an observer never
    /// grants).
    fn can_grant_pre_vote(&self) -> bool {
        if self.config.is_observer() {
            return false;
        }
        match &self.role {
            Role::Leader(_) => false,
            Role::Follower(f) => !f.fetched,
            _ => true,
        }
    }

    /// One vote per epoch, and none once the epoch's leader is known (nor ever by an
    /// observer).
    fn can_grant_vote(&self, candidate: NodeId) -> bool {
        if self.quorum.leader.is_some() || self.config.is_observer() {
            return false;
        }
        match self.role.kind() {
            RoleKind::Unattached | RoleKind::Prospective => {
                self.quorum.voted_for.is_none_or(|v| v == candidate)
            }
            RoleKind::Candidate | RoleKind::Leader | RoleKind::Follower | RoleKind::Resigned => {
                false
            }
        }
    }

    pub(crate) fn on_vote_response(
        &mut self,
        from: NodeId,
        epoch: Epoch,
        leader: Option<NodeId>,
        granted: bool,
        pre_vote: bool,
    ) {
        if !self.observe_epoch(epoch, leader) {
            return;
        }
        let me = self.config.id;
        match &mut self.role {
            Role::Prospective(e) if pre_vote => {
                if granted {
                    e.granted.insert(from);
                } else {
                    e.rejected.insert(from);
                }
            }
            Role::Candidate(e) if !pre_vote => {
                if granted {
                    e.granted.insert(from);
                } else {
                    e.rejected.insert(from);
                }
            }
            _ => return,
        }
        // A refused pre-vote naming a live leader of this epoch: follow it (KIP-996).
        if let Some(leader) = leader.filter(|&l| l != me && !granted && pre_vote) {
            self.become_follower(epoch, leader);
            return;
        }
        self.check_election();
    }

    /// A leader announces itself (and again until each voter answers or fetches).
    pub(crate) fn announce_leader(&mut self) {
        let epoch = self.quorum.epoch;
        let now = self.now_ms;
        let resend = now + self.config.request_timeout_ms;
        let Role::Leader(leading) = &mut self.role else {
            return;
        };
        let mut due = Vec::new();
        for (&voter, progress) in leading.followers.iter_mut() {
            if !progress.knows_leader && now >= progress.begin_resend_at {
                progress.begin_resend_at = resend;
                due.push(voter);
            }
        }
        for to in due {
            self.send(to, Message::BeginQuorumEpoch { epoch });
        }
    }

    pub(crate) fn on_begin_quorum_epoch(&mut self, from: NodeId, epoch: Epoch) {
        let ours = epoch >= self.quorum.epoch;
        let conflicting =
            epoch == self.quorum.epoch && self.quorum.leader.is_some_and(|l| l != from);
        // Two leaders in one epoch would be a bug elsewhere; never follow a second one.
        if ours && !conflicting {
            let following = matches!(&self.role, Role::Follower(f) if f.leader == from);
            if !following || epoch > self.quorum.epoch {
                self.become_follower(epoch, from);
            }
        }
        let message = Message::BeginQuorumEpochResponse {
            epoch: self.quorum.epoch,
            leader: self.quorum.leader,
        };
        self.send(from, message);
    }

    pub(crate) fn on_begin_quorum_epoch_response(
        &mut self,
        from: NodeId,
        epoch: Epoch,
        leader: Option<NodeId>,
    ) {
        if !self.observe_epoch(epoch, leader) {
            return;
        }
        if let Role::Leader(leading) = &mut self.role
            && let Some(progress) = leading.followers.get_mut(&from)
        {
            progress.knows_leader = true;
        }
    }

    /// The leader resigned: a follower of it stops trusting it at once, so it grants
    /// pre-votes, and starts its own pre-vote sooner the higher the leader ranked it.
    pub(crate) fn on_end_quorum_epoch(&mut self, from: NodeId, epoch: Epoch, preferred: &[NodeId]) {
        if epoch < self.quorum.epoch || !self.observe_epoch(epoch, Some(from)) {
            return;
        }
        let me = self.config.id;
        let rank = preferred
            .iter()
            .position(|&v| v == me)
            .unwrap_or(preferred.len());
        let rank = u64::try_from(rank.min(3)).unwrap_or(3);
        let backoff = rank * self.config.election_timeout_ms / 2;
        let jitter = self.rng.below(self.config.election_jitter_ms / 4);
        let now = self.now_ms;
        if let Role::Follower(f) = &mut self.role
            && f.leader == from
        {
            f.fetched = false;
            f.fetch_timeout_at = f.fetch_timeout_at.min(now + backoff + jitter);
        }
    }

    /// Voters by how far they have fetched, most caught up first.
    pub(crate) fn preferred_successors(&self) -> Vec<NodeId> {
        let Role::Leader(leading) = &self.role else {
            return Vec::new();
        };
        let mut ranked: Vec<(NodeId, i64)> = leading
            .followers
            .iter()
            .map(|(&v, p)| (v, p.fetch.end.map_or(-1, |o| o.0)))
            .collect();
        ranked.sort_by_key(|&(v, end)| (std::cmp::Reverse(end), v));
        ranked.into_iter().map(|(v, _)| v).collect()
    }
}
