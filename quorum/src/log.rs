//! The replicated log as the replica sees it: the `Log` trait, and `MemLog`, an in-memory log
//! that keeps the flushed/unflushed split so a simulated crash loses what was never synced.
//!
//! Invariants every `Log` keeps: entries are contiguous from the log start offset to the log
//! end; epochs never decrease along the log, starting from the log start's epoch;
//! `start().offset <= flushed_end() <= end()`; a log whose start is past 0 holds a snapshot at
//! or past its start (KIP-630: entries are only dropped below a snapshot), and the snapshot's
//! id names an entry boundary of the log (`offset_and_epoch(id.offset) == Some(id)` while the
//! log still reaches it).

use crate::types::{Entry, Epoch, Offset, OffsetAndEpoch, Snapshot};

/// The log a replica appends to and reads from. Calls are synchronous: `append` makes an entry
/// readable at once but not durable; `flush` makes everything appended durable before it
/// returns; `truncate_to`, `store_snapshot`, `truncate_prefix` and `install_snapshot` are
/// durable when they return (a simplification of Kafka's, which deletes segment files and
/// writes snapshot files).
pub trait Log {
    /// The log start offset, with the epoch of the entry just before it (`(0, 0)` for a log
    /// that never dropped a prefix): the first offset `entry` can return.
    fn start(&self) -> OffsetAndEpoch;
    /// The latest snapshot, if any (Kafka's `latestSnapshotId` and its reader).
    fn snapshot(&self) -> Option<&Snapshot>;
    /// Keeps `snapshot` as the latest, replacing the previous one. The caller checks that its
    /// id is an entry boundary between the start and the flushed end, past the previous one.
    fn store_snapshot(&mut self, snapshot: Snapshot);
    /// Drops every entry below `start` (at most the latest snapshot's end offset and the
    /// flushed end): Kafka's `deleteBeforeSnapshot`.
    fn truncate_prefix(&mut self, start: Offset);
    /// Replaces the whole log with `snapshot`: no entries, the start at its id (Kafka's
    /// `truncateToLatestSnapshot` after a FetchSnapshot download).
    fn install_snapshot(&mut self, snapshot: Snapshot);

    /// The offset the next entry gets (Kafka's log end offset).
    fn end(&self) -> Offset;
    /// Everything below this offset survives a crash.
    fn flushed_end(&self) -> Offset;
    /// The entry at `offset`, if the log holds it.
    fn entry(&self, offset: Offset) -> Option<&Entry>;
    /// Appends one entry at `end()`. The caller keeps epochs non-decreasing.
    fn append(&mut self, entry: Entry);
    /// Drops every entry at or after `end`.
    fn truncate_to(&mut self, end: Offset);
    /// Makes every appended entry durable.
    fn flush(&mut self);

    /// The epoch of the last entry (the start's epoch for a log without entries).
    fn last_epoch(&self) -> Epoch {
        self.offset_and_epoch(self.end())
            .map_or(Epoch(0), |position| position.epoch)
    }

    /// `offset` with the epoch of the entry before it, when the log knows it (`offset` from the
    /// start to the end).
    fn offset_and_epoch(&self, offset: Offset) -> Option<OffsetAndEpoch> {
        let start = self.start();
        if offset == start.offset {
            return Some(start);
        }
        if offset < start.offset || offset > self.end() {
            return None;
        }
        let entry = self.entry(Offset(offset.0 - 1))?;
        Some(OffsetAndEpoch {
            offset,
            epoch: entry.epoch,
        })
    }

    /// The log end with the last entry's epoch (what a Vote request and a Fetch carry).
    fn end_and_epoch(&self) -> OffsetAndEpoch {
        OffsetAndEpoch {
            offset: self.end(),
            epoch: self.last_epoch(),
        }
    }

    /// The largest epoch in the log that is at most `epoch`, with the offset where it ends
    /// (the first offset of the next epoch, or the log end): Kafka's `endOffsetForEpoch`, the
    /// leader-epoch-cache lookup behind `DivergingEpoch`. The log start when no entry
    /// qualifies: `(0, 0)` for a log from offset 0; past a dropped prefix the start's epoch
    /// stands for it (Kafka answers with the snapshot at the log start), and an epoch below
    /// that is unknown here, answered with the start too (its epoch then differs from the one
    /// asked, which callers treat as "not on this log").
    fn end_offset_for_epoch(&self, epoch: Epoch) -> OffsetAndEpoch {
        let start = self.start();
        if epoch < start.epoch {
            return start;
        }
        // Epochs are sorted along the log, so binary-search the first entry past `epoch`.
        let (mut low, mut high) = (start.offset.0, self.end().0);
        while low < high {
            let mid = low + (high - low) / 2;
            let mid_epoch = self.entry(Offset(mid)).map_or(Epoch(0), |e| e.epoch);
            if mid_epoch <= epoch {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        self.offset_and_epoch(Offset(low)).unwrap_or(start)
    }
}

/// An in-memory log for tests, the simulator and the model check. Fault model: a crash
/// (`MemLog::crash`) keeps every flushed entry and any prefix of the unflushed ones (a torn
/// write keeps what reached the disk in order); truncation, snapshots and prefix deletion are
/// durable at once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct MemLog {
    start: OffsetAndEpoch,
    /// The entries from `start.offset` on.
    entries: Vec<Entry>,
    /// How many of `entries` are durable.
    flushed: usize,
    snapshot: Option<Snapshot>,
}

impl MemLog {
    /// An empty log.
    pub fn new() -> MemLog {
        MemLog::default()
    }

    /// What is left after a crash: the flushed entries and the first `unflushed_kept` of the
    /// unflushed ones (capped at how many there are).
    pub fn crash(&self, unflushed_kept: usize) -> MemLog {
        let kept = (self.flushed + unflushed_kept).min(self.entries.len());
        MemLog {
            start: self.start,
            entries: self.entries[..kept].to_vec(),
            flushed: kept,
            snapshot: self.snapshot.clone(),
        }
    }

    /// How many entries were appended but not yet flushed.
    pub fn unflushed_count(&self) -> usize {
        self.entries.len() - self.flushed
    }

    /// Every entry from the log start on, in offset order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The index into `entries` of `offset`, if it is at or past the start.
    fn index_of(&self, offset: Offset) -> Option<usize> {
        usize::try_from(offset.0 - self.start.offset.0).ok()
    }
}

impl Log for MemLog {
    fn end(&self) -> Offset {
        Offset(self.start.offset.0 + Offset::from_index(self.entries.len()).0)
    }

    fn flushed_end(&self) -> Offset {
        Offset(self.start.offset.0 + Offset::from_index(self.flushed).0)
    }

    fn entry(&self, offset: Offset) -> Option<&Entry> {
        self.entries.get(self.index_of(offset)?)
    }

    fn append(&mut self, entry: Entry) {
        assert!(
            entry.epoch >= self.last_epoch(),
            "epochs never decrease along the log"
        );
        self.entries.push(entry);
    }

    fn truncate_to(&mut self, end: Offset) {
        let Some(kept) = self.index_of(end) else {
            panic!("truncation below the log start");
        };
        let kept = kept.min(self.entries.len());
        self.entries.truncate(kept);
        self.flushed = self.flushed.min(kept);
    }

    fn flush(&mut self) {
        self.flushed = self.entries.len();
    }

    fn start(&self) -> OffsetAndEpoch {
        self.start
    }

    fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }

    fn store_snapshot(&mut self, snapshot: Snapshot) {
        let id = snapshot.id;
        assert!(
            id.offset <= self.flushed_end(),
            "a snapshot past the durable log"
        );
        assert_eq!(
            self.offset_and_epoch(id.offset),
            Some(id),
            "a snapshot off the log"
        );
        let previous = self.snapshot.as_ref().map_or(Offset(0), |s| s.id.offset);
        assert!(id.offset > previous, "snapshots only move forward");
        self.snapshot = Some(snapshot);
    }

    fn truncate_prefix(&mut self, start: Offset) {
        let covered = self.snapshot.as_ref().map_or(Offset(0), |s| s.id.offset);
        assert!(start <= covered, "entries dropped that no snapshot holds");
        assert!(
            start <= self.flushed_end(),
            "a log start past the durable log"
        );
        let Some(new_start) = self.offset_and_epoch(start) else {
            panic!("a log start below the current one");
        };
        let dropped = self.index_of(start).unwrap_or(0);
        self.entries.drain(..dropped);
        self.flushed -= dropped;
        self.start = new_start;
    }

    fn install_snapshot(&mut self, snapshot: Snapshot) {
        self.entries.clear();
        self.flushed = 0;
        self.start = snapshot.id;
        self.snapshot = Some(snapshot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Payload;

    fn log_of(epochs: &[i32]) -> MemLog {
        let mut log = MemLog::new();
        for &epoch in epochs {
            log.append(Entry {
                epoch: Epoch(epoch),
                payload: Payload::Data(Vec::new()),
            });
        }
        log
    }

    fn oe(offset: i64, epoch: i32) -> OffsetAndEpoch {
        OffsetAndEpoch {
            offset: Offset(offset),
            epoch: Epoch(epoch),
        }
    }

    /// The epoch-end lookup answers with the largest epoch at or below the one asked, and
    /// where it ends: the cases `DivergingEpoch` depends on.
    #[test]
    fn end_offset_for_epoch_finds_largest_epoch_at_or_below() {
        let log = log_of(&[1, 1, 3, 3, 3, 5]);
        assert_eq!(log.end_offset_for_epoch(Epoch(0)), oe(0, 0));
        assert_eq!(log.end_offset_for_epoch(Epoch(1)), oe(2, 1));
        assert_eq!(log.end_offset_for_epoch(Epoch(2)), oe(2, 1));
        assert_eq!(log.end_offset_for_epoch(Epoch(3)), oe(5, 3));
        assert_eq!(log.end_offset_for_epoch(Epoch(5)), oe(6, 5));
        assert_eq!(log.end_offset_for_epoch(Epoch(9)), oe(6, 5));
        assert_eq!(MemLog::new().end_offset_for_epoch(Epoch(4)), oe(0, 0));
    }

    /// A crash keeps the flushed entries and a prefix of the rest; truncation lowers the
    /// flushed mark with it.
    #[test]
    fn crash_keeps_flushed_and_a_prefix_of_unflushed() {
        let mut log = log_of(&[1, 1]);
        log.flush();
        log.append(Entry {
            epoch: Epoch(2),
            payload: Payload::Data(vec![1]),
        });
        log.append(Entry {
            epoch: Epoch(2),
            payload: Payload::Data(vec![2]),
        });
        assert_eq!(log.unflushed_count(), 2);
        assert_eq!(log.crash(0).end(), Offset(2));
        assert_eq!(log.crash(1).end(), Offset(3));
        assert_eq!(log.crash(9).end(), Offset(4));
        log.truncate_to(Offset(1));
        assert_eq!(log.flushed_end(), Offset(1));
        assert_eq!(log.last_epoch(), Epoch(1));
    }

    fn snapshot_at(log: &MemLog, offset: i64) -> Snapshot {
        let id = log.offset_and_epoch(Offset(offset)).expect("on the log");
        Snapshot { id, data: vec![7] }
    }

    /// Dropping a prefix below a snapshot keeps offsets, epochs and lookups: the start's epoch
    /// stands for the dropped entries, and an epoch below it answers with the start.
    #[test]
    fn truncate_prefix_keeps_offsets_and_epochs() {
        let mut log = log_of(&[1, 1, 3, 3, 3, 5]);
        log.flush();
        log.store_snapshot(snapshot_at(&log, 3));
        log.truncate_prefix(Offset(3));
        assert_eq!(log.start(), oe(3, 3));
        assert_eq!(log.end(), Offset(6));
        assert_eq!(log.flushed_end(), Offset(6));
        assert_eq!(log.entry(Offset(2)), None);
        assert_eq!(log.entry(Offset(3)).map(|e| e.epoch), Some(Epoch(3)));
        assert_eq!(log.end_offset_for_epoch(Epoch(1)), oe(3, 3));
        assert_eq!(log.end_offset_for_epoch(Epoch(3)), oe(5, 3));
        assert_eq!(log.end_offset_for_epoch(Epoch(4)), oe(5, 3));
        assert_eq!(log.end_offset_for_epoch(Epoch(7)), oe(6, 5));
        log.truncate_to(Offset(3));
        assert_eq!(log.end_and_epoch(), oe(3, 3));
        assert_eq!(log.end_offset_for_epoch(Epoch(9)), oe(3, 3));
        let crashed = log.crash(0);
        assert_eq!(
            (crashed.start(), crashed.snapshot().map(|s| s.id)),
            (oe(3, 3), Some(oe(3, 3)))
        );
    }

    /// Installing a snapshot replaces the log: empty, starting at the snapshot's id.
    #[test]
    fn install_snapshot_resets_the_log() {
        let mut log = log_of(&[1, 2]);
        log.flush();
        log.install_snapshot(Snapshot {
            id: oe(10, 4),
            data: vec![1, 2],
        });
        assert_eq!(log.start(), oe(10, 4));
        assert_eq!(log.end_and_epoch(), oe(10, 4));
        assert_eq!(log.entry(Offset(0)), None);
        log.append(Entry {
            epoch: Epoch(4),
            payload: Payload::Data(vec![]),
        });
        assert_eq!(log.entry(Offset(10)).map(|e| e.epoch), Some(Epoch(4)));
    }

    /// A snapshot must name an entry boundary of the durable log, past the previous one.
    #[test]
    #[should_panic(expected = "snapshots only move forward")]
    fn snapshots_only_move_forward() {
        let mut log = log_of(&[1, 1, 1]);
        log.flush();
        log.store_snapshot(snapshot_at(&log, 2));
        log.store_snapshot(snapshot_at(&log, 1));
    }
}
