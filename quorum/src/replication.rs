//! Pull replication (KIP-595): followers Fetch from the leader with their log end and last
//! epoch; the leader answers with entries, or with `DivergingEpoch` when that position is not
//! on its log, and the follower truncates with its own epoch lookup and fetches again. The
//! leader moves the high watermark to the largest offset a majority of voters hold durably,
//! once that includes an entry of its own epoch. A position below the leader's log start is
//! answered with its snapshot's id instead (KIP-630, `snapshot.rs`).
//!
//! What must stay true: a follower appends only an answer to its current position (log end and
//! last epoch echoed back) from the leader of its current epoch, and flushes before it fetches
//! again, so the offset a leader counts is durable; the high watermark never moves backwards,
//! and truncation never goes below it (asserted).

use crate::log::Log;
use crate::message::{FetchError, FetchResponse, Message};
use crate::replica::{Effect, NotLeader, Replica};
use crate::state::Role;
use crate::types::{Entry, Epoch, NodeId, Offset, OffsetAndEpoch, Payload};

impl<L: Log> Replica<L> {
    /// On the leader: append one entry with `data` (not yet durable; the next `tick` flushes).
    /// Returns its offset; it is committed once the high watermark passes it.
    pub fn propose(&mut self, now_ms: u64, data: Vec<u8>) -> Result<Offset, NotLeader> {
        self.now_ms = self.now_ms.max(now_ms);
        if !matches!(self.role, Role::Leader(_)) {
            return Err(NotLeader {
                epoch: self.quorum.epoch,
                leader: self.quorum.leader,
            });
        }
        let offset = self.log.end();
        self.log.append(Entry {
            epoch: self.quorum.epoch,
            payload: Payload::Data(data),
        });
        Ok(offset)
    }

    /// On the leader: give up the epoch on purpose (a clean shutdown), telling the voters.
    pub fn resign(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
        if matches!(self.role, Role::Leader(_)) {
            self.become_resigned(true);
        }
    }

    pub(crate) fn tick_leader(&mut self) {
        let now = self.now_ms;
        let flush_next = now + self.config.flush_interval_ms;
        if let Role::Leader(leading) = &mut self.role
            && now >= leading.flush_at
        {
            leading.flush_at = flush_next;
            self.flush_leader();
        }
        let majority = self.config.majority();
        let next_check = now + self.config.fetch_timeout_ms * 3 / 2;
        let session_ms = self.config.observer_session_timeout_ms;
        let Role::Leader(leading) = &mut self.role else {
            return;
        };
        leading
            .observers
            .retain(|_, p| p.last_fetch_ms.is_some_and(|at| at + session_ms > now));
        if now >= leading.check_quorum_at {
            // Check quorum: a leader a majority no longer fetches from steps aside, so a
            // partitioned leader does not keep refusing pre-votes on its side.
            let alive = leading.fetched_since_check.len() + 1;
            leading.fetched_since_check.clear();
            leading.check_quorum_at = next_check;
            if alive < majority {
                self.become_resigned(false);
                return;
            }
        }
        self.announce_leader();
    }

    /// The leader makes its appended entries durable and counts them.
    pub(crate) fn flush_leader(&mut self) {
        self.log.flush();
        self.update_high_watermark();
    }

    fn update_high_watermark(&mut self) {
        let Role::Leader(leading) = &self.role else {
            return;
        };
        let mut ends: Vec<Offset> = leading
            .followers
            .values()
            .map(|p| p.fetch.end.unwrap_or_default())
            .collect();
        ends.push(self.log.flushed_end());
        ends.sort_by(|a, b| b.cmp(a));
        let majority_end = ends[self.config.majority() - 1];
        // Raft's rule: count replicas only for an entry of the current epoch.
        if majority_end > leading.epoch_start && majority_end > self.high_watermark {
            self.high_watermark = majority_end;
            self.effects.push(Effect::HighWatermark(majority_end));
        }
    }

    pub(crate) fn send_fetch(&mut self) {
        let now = self.now_ms;
        let epoch = self.quorum.epoch;
        // Only a leader holds unflushed entries; this keeps the fetch offset durable anyway.
        self.log.flush();
        let position = self.log.end_and_epoch();
        let Role::Follower(f) = &mut self.role else {
            return;
        };
        f.fetch_sent_at = Some(now);
        let leader = f.leader;
        let message = match f.fetching_snapshot {
            Some(snapshot) => Message::FetchSnapshot { epoch, snapshot },
            None => Message::Fetch {
                epoch,
                fetch_offset: position.offset,
                last_fetched_epoch: position.epoch,
            },
        };
        self.send(leader, message);
    }

    pub(crate) fn on_fetch(
        &mut self,
        from: NodeId,
        epoch: Epoch,
        fetch_offset: Offset,
        last_fetched_epoch: Epoch,
    ) {
        let mut response = FetchResponse {
            epoch: self.quorum.epoch,
            leader: self.quorum.leader,
            error: None,
            fetch_offset,
            last_fetched_epoch,
            high_watermark: self.high_watermark,
            diverging: None,
            snapshot: None,
            entries: Vec::new(),
        };
        if epoch < self.quorum.epoch {
            response.error = Some(FetchError::FencedLeaderEpoch);
        } else if epoch > self.quorum.epoch {
            response.error = Some(FetchError::UnknownLeaderEpoch);
        } else if !matches!(self.role, Role::Leader(_)) {
            response.error = Some(FetchError::NotLeader);
        } else {
            self.serve_fetch(from, fetch_offset, last_fetched_epoch, &mut response);
        }
        self.send(from, Message::FetchResponse(response));
    }

    /// The leader's side of a Fetch in its own epoch.
    fn serve_fetch(
        &mut self,
        from: NodeId,
        fetch_offset: Offset,
        last_fetched_epoch: Epoch,
        response: &mut FetchResponse,
    ) {
        let voter = self.config.is_voter(from);
        if let Role::Leader(leading) = &mut self.role
            && voter
        {
            leading.fetched_since_check.insert(from);
        }
        if let Some(snapshot) = self.snapshot_for(fetch_offset, last_fetched_epoch) {
            response.snapshot = Some(snapshot);
            return;
        }
        // Kafka's `validateOffsetAndEpoch`: the position is on our log when our log has the
        // fetched epoch and that epoch reaches at least the fetch offset.
        let ours = self.log.end_offset_for_epoch(last_fetched_epoch);
        let valid = fetch_offset <= self.log.end()
            && (fetch_offset.0 == 0
                || (ours.epoch == last_fetched_epoch && ours.offset >= fetch_offset));
        if !valid {
            response.diverging = Some(ours);
            return;
        }
        self.record_fetch(from, fetch_offset);
        self.update_high_watermark();
        response.high_watermark = self.high_watermark;
        let mut offset = fetch_offset;
        while response.entries.len() < self.config.fetch_entries_max {
            let Some(entry) = self.log.entry(offset) else {
                break;
            };
            response.entries.push(entry.clone());
            offset = offset.next();
        }
    }

    /// Kafka's snapshot cases of `validateOffsetAndEpoch`, for a log that dropped a prefix:
    /// the follower needs the latest snapshot when it fetches below the log start, at the log
    /// start with another epoch, or with an epoch older than the start's (whose end this log no
    /// longer knows).
    fn snapshot_for(
        &self,
        fetch_offset: Offset,
        last_fetched_epoch: Epoch,
    ) -> Option<OffsetAndEpoch> {
        let start = self.log.start();
        if start.offset.0 == 0 {
            return None;
        }
        let needed = fetch_offset < start.offset
            || (fetch_offset == start.offset && last_fetched_epoch != start.epoch)
            || last_fetched_epoch < start.epoch;
        let snapshot = self.log.snapshot().map(|s| s.id);
        assert!(snapshot.is_some(), "a log start past 0 without a snapshot");
        snapshot.filter(|_| needed)
    }

    /// The leader notes a valid Fetch: a voter's in `followers`, an observer's in `observers`.
    fn record_fetch(&mut self, from: NodeId, fetch_offset: Offset) {
        let (now, leader_end) = (self.now_ms, self.log.flushed_end());
        let Role::Leader(leading) = &mut self.role else {
            return;
        };
        if let Some(progress) = leading.followers.get_mut(&from) {
            progress.fetch.record(now, fetch_offset, leader_end);
            progress.knows_leader = true;
        } else {
            let progress = leading.observers.entry(from).or_default();
            progress.record(now, fetch_offset, leader_end);
        }
    }

    pub(crate) fn on_fetch_response(&mut self, from: NodeId, response: FetchResponse) {
        if !self.observe_epoch(response.epoch, response.leader) {
            return;
        }
        let position = self.log.end_and_epoch();
        let Role::Follower(f) = &mut self.role else {
            return;
        };
        let current = response.fetch_offset == position.offset
            && response.last_fetched_epoch == position.epoch;
        if f.leader != from || !current {
            return;
        }
        f.fetch_sent_at = None;
        if response.error.is_some() {
            f.next_fetch_at = self.now_ms + self.config.fetch_interval_ms;
            return;
        }
        f.fetched = true;
        f.fetch_timeout_at = self.now_ms + self.config.fetch_timeout_ms;
        f.fetching_snapshot = response.snapshot;
        if response.snapshot.is_some() {
            self.send_fetch();
            return;
        }
        if let Some(diverging) = response.diverging {
            self.truncate_diverging(diverging);
            self.send_fetch();
            return;
        }
        let appended = !response.entries.is_empty();
        for entry in response.entries {
            assert!(
                entry.epoch <= self.quorum.epoch,
                "an entry from a future epoch"
            );
            self.log.append(entry);
        }
        self.log.flush();
        let high_watermark = response.high_watermark.min(self.log.end());
        if high_watermark > self.high_watermark {
            self.high_watermark = high_watermark;
            self.effects.push(Effect::HighWatermark(high_watermark));
        }
        if appended {
            self.send_fetch();
        } else if let Role::Follower(f) = &mut self.role {
            f.next_fetch_at = self.now_ms + self.config.fetch_interval_ms;
        }
    }

    /// Kafka's `truncateToEndOffset`: cut the log where it leaves the leader's.
    fn truncate_diverging(&mut self, leader_end: OffsetAndEpoch) {
        let truncate_to = if leader_end.epoch == Epoch(0) {
            leader_end.offset.min(self.log.end())
        } else {
            let local = self.log.end_offset_for_epoch(leader_end.epoch);
            if local.epoch == leader_end.epoch {
                local.offset.min(leader_end.offset)
            } else {
                local.offset
            }
        };
        assert!(
            truncate_to >= self.high_watermark,
            "node {:?} would truncate committed entries: to {:?} below high watermark {:?}",
            self.config.id,
            truncate_to,
            self.high_watermark
        );
        assert!(
            truncate_to < self.log.end(),
            "a diverging answer that truncates nothing"
        );
        self.log.truncate_to(truncate_to);
    }
}
