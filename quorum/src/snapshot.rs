//! Snapshots (KIP-630): the caller snapshots its state machine at a committed offset and may
//! then drop the log below it; a leader answers a Fetch below its log start with the snapshot's
//! id, and the follower or observer downloads it with FetchSnapshot (whole, one chunk) and
//! installs it, resetting its log to start at the snapshot's end.
//!
//! What must stay true: a snapshot covers only committed entries (taken at or below the high
//! watermark; a fetched one is the leader's, which was); installing one never goes below the
//! installer's high watermark (asserted: a follower is sent a snapshot only when its position is
//! off the leader's retained log, which puts its committed prefix at or below the snapshot); the
//! state machine is reset (`Effect::LoadSnapshot`) before any entry past the snapshot is applied.

use std::fmt;

use crate::log::Log;
use crate::message::{FetchError, FetchSnapshotResponse, Message};
use crate::replica::{Effect, Replica};
use crate::state::Role;
use crate::types::{Epoch, NodeId, Offset, OffsetAndEpoch, Snapshot};

/// Why `Replica::snapshot_taken` refused a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SnapshotError {
    /// The offset is past the high watermark: not known to be committed.
    NotCommitted {
        offset: Offset,
        high_watermark: Offset,
    },
    /// The offset is not past the latest snapshot (nor past 0).
    NotNewer { offset: Offset, latest: Offset },
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::NotCommitted {
                offset,
                high_watermark,
            } => write!(
                f,
                "snapshot at offset {} is past the high watermark {}: snapshot only applied \
                 (committed) state",
                offset.0, high_watermark.0
            ),
            SnapshotError::NotNewer { offset, latest } => write!(
                f,
                "snapshot at offset {} is not past the latest snapshot at {}",
                offset.0, latest.0
            ),
        }
    }
}

impl std::error::Error for SnapshotError {}

impl<L: Log> Replica<L> {
    /// The caller has snapshotted its state machine after applying every entry below `offset`
    /// (`data` is that state): the log keeps it as its latest snapshot, durably. `offset` must
    /// be committed (at most the high watermark) and past the latest snapshot. Returns the
    /// snapshot's id (the epoch is that of the entry before `offset`).
    pub fn snapshot_taken(
        &mut self,
        offset: Offset,
        data: Vec<u8>,
    ) -> Result<OffsetAndEpoch, SnapshotError> {
        if offset > self.high_watermark {
            return Err(SnapshotError::NotCommitted {
                offset,
                high_watermark: self.high_watermark,
            });
        }
        let latest = self.log.snapshot().map_or(Offset(0), |s| s.id.offset);
        let id = self.log.offset_and_epoch(offset);
        let Some(id) = id.filter(|_| offset > latest) else {
            return Err(SnapshotError::NotNewer { offset, latest });
        };
        if offset > self.log.flushed_end() {
            // A leader may count followers' durable copies past its own flushed end; the
            // entries a snapshot stands for must be durable here too before it is kept.
            self.log.flush();
        }
        self.log.store_snapshot(Snapshot { id, data });
        Ok(id)
    }

    /// Drops the log below the latest snapshot (Kafka's `deleteBeforeSnapshot`), durably;
    /// returns the log start offset. Replicas that fetch from below it get the snapshot.
    pub fn delete_before_snapshot(&mut self) -> Offset {
        if let Some(end) = self.log.snapshot().map(|s| s.id.offset)
            && end > self.log.start().offset
        {
            self.log.truncate_prefix(end);
        }
        self.log.start().offset
    }

    /// The leader's answer to FetchSnapshot: the snapshot, if it is still its latest.
    pub(crate) fn on_fetch_snapshot(&mut self, from: NodeId, epoch: Epoch, id: OffsetAndEpoch) {
        let mut response = FetchSnapshotResponse {
            epoch: self.quorum.epoch,
            leader: self.quorum.leader,
            error: None,
            snapshot: id,
            data: Vec::new(),
        };
        response.error = if epoch < self.quorum.epoch {
            Some(FetchError::FencedLeaderEpoch)
        } else if epoch > self.quorum.epoch {
            Some(FetchError::UnknownLeaderEpoch)
        } else if !matches!(self.role, Role::Leader(_)) {
            Some(FetchError::NotLeader)
        } else {
            match self.log.snapshot() {
                Some(snapshot) if snapshot.id == id => {
                    response.data = snapshot.data.clone();
                    None
                }
                _ => Some(FetchError::SnapshotNotFound),
            }
        };
        self.send(from, Message::FetchSnapshotResponse(response));
    }

    /// A follower's (or observer's) download arrived: install it if it is the one it waits
    /// for from its leader, then fetch on from its end.
    pub(crate) fn on_fetch_snapshot_response(
        &mut self,
        from: NodeId,
        response: FetchSnapshotResponse,
    ) {
        if !self.observe_epoch(response.epoch, response.leader) {
            return;
        }
        let (now, fetch_timeout) = (self.now_ms, self.config.fetch_timeout_ms);
        let next_fetch_at = now + self.config.fetch_interval_ms;
        let Role::Follower(f) = &mut self.role else {
            return;
        };
        if f.leader != from || f.fetching_snapshot != Some(response.snapshot) {
            return;
        }
        f.fetch_sent_at = None;
        f.fetching_snapshot = None;
        if response.error.is_some() {
            // Fetch again: the answer names the leader's current snapshot, if one is needed.
            f.next_fetch_at = next_fetch_at;
            return;
        }
        f.fetched = true;
        f.fetch_timeout_at = now + fetch_timeout;
        self.install_snapshot(Snapshot {
            id: response.snapshot,
            data: response.data,
        });
        self.send_fetch();
    }

    fn install_snapshot(&mut self, snapshot: Snapshot) {
        let id = snapshot.id;
        assert!(
            id.offset >= self.high_watermark,
            "node {:?} would install snapshot {:?} below its high watermark {:?}",
            self.config.id,
            id,
            self.high_watermark
        );
        self.log.install_snapshot(snapshot);
        self.high_watermark = id.offset;
        self.effects.push(Effect::LoadSnapshot(id));
    }
}
