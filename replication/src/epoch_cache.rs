//! The leader epoch cache (Kafka's `LeaderEpochFileCache`): for each leader epoch that wrote
//! to the log, the offset of its first record. It answers OffsetForLeaderEpoch (where does an
//! epoch end on this log?), which is how a leader finds where a follower's log left its own
//! (`DivergingEpoch`) and how the follower finds where to cut.
//!
//! What must stay true: entries are sorted by epoch and by start offset, both strictly
//! increasing; an entry is added when a batch of a newer epoch is appended, and by a new leader
//! for its own epoch at its log end before it writes anything (so a follower holding records of
//! an epoch the leader never saw still gets a precise answer); truncating the log from the end
//! drops the entries that start at or past the new end, and moving the log start forward
//! rewrites the first entry to start there.

use crate::types::{Epoch, EpochEndOffset, Offset};

/// One epoch and the offset of its first record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EpochEntry {
    pub epoch: Epoch,
    pub start_offset: Offset,
}

/// The cache. Kept by each `Log`, which updates it on append and truncation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct LeaderEpochCache {
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    /// An empty cache (a log that never had a record).
    pub fn new() -> LeaderEpochCache {
        LeaderEpochCache::default()
    }

    /// Every entry, oldest first.
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    /// The newest epoch, if any.
    pub fn latest_epoch(&self) -> Option<Epoch> {
        self.entries.last().map(|e| e.epoch)
    }

    /// Notes that `epoch` starts at `start_offset` (Kafka's `assign`). Nothing changes when it
    /// is the latest epoch already, starting there or earlier. Otherwise entries that would
    /// break the order (an epoch at least as new, or a start at least as far) are dropped
    /// first: they were written by a leader whose records this log no longer holds.
    pub fn assign(&mut self, epoch: Epoch, start_offset: Offset) {
        assert!(epoch.0 >= 0, "a negative leader epoch {epoch:?}");
        assert!(
            start_offset.0 >= 0,
            "a negative start offset {start_offset:?}"
        );
        let needed = self
            .entries
            .last()
            .is_none_or(|last| last.epoch != epoch || start_offset < last.start_offset);
        if !needed {
            return;
        }
        while let Some(last) = self.entries.last() {
            if last.epoch >= epoch || last.start_offset >= start_offset {
                self.entries.pop();
            } else {
                break;
            }
        }
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
    }

    /// Kafka's `endOffsetFor`: the largest epoch at most `requested` and the offset where it
    /// ends (the start of the next epoch; the log end for the latest epoch). An epoch older
    /// than every entry is answered with itself and the first entry's start (its records, if
    /// any, were deleted below the log start; Kafka answers so that the follower can start at
    /// the leader's start). `None` is Kafka's UNDEFINED: an empty cache, or an epoch newer than
    /// every entry (which no correct follower asks a leader about, since the leader's own
    /// epoch is its latest entry).
    pub fn end_offset_for(&self, requested: Epoch, log_end: Offset) -> Option<EpochEndOffset> {
        let latest = self.entries.last()?;
        if latest.epoch == requested {
            return Some(EpochEndOffset {
                epoch: requested,
                end_offset: log_end,
            });
        }
        let higher = self.entries.iter().find(|e| e.epoch > requested)?;
        let floor = self.entries.iter().rev().find(|e| e.epoch <= requested);
        Some(EpochEndOffset {
            epoch: floor.map_or(requested, |f| f.epoch),
            end_offset: higher.start_offset,
        })
    }

    /// The epoch of the record at `offset`, if the cache covers it.
    pub fn epoch_for(&self, offset: Offset) -> Option<Epoch> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.start_offset <= offset)
            .map(|e| e.epoch)
    }

    /// The log was cut to end at `end`: drop the entries starting at or past it (Kafka's
    /// `truncateFromEnd`).
    pub fn truncate_from_end(&mut self, end: Offset) {
        self.entries.retain(|e| e.start_offset < end);
    }

    /// The log now starts at `start`: drop the entries starting at or before it, keeping the
    /// last of them as starting at `start` (Kafka's `truncateFromStart`, which keeps an entry
    /// at `start`).
    pub fn truncate_from_start(&mut self, start: Offset) {
        let dropped = self
            .entries
            .iter()
            .take_while(|e| e.start_offset <= start)
            .count();
        if dropped == 0 {
            return;
        }
        let epoch = self.entries[dropped - 1].epoch;
        self.entries.drain(..dropped);
        self.entries.insert(
            0,
            EpochEntry {
                epoch,
                start_offset: start,
            },
        );
    }

    /// Forgets everything (Kafka's `clear`, when a log is truncated fully).
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> LeaderEpochCache {
        let mut c = LeaderEpochCache::new();
        for &(epoch, start) in entries {
            c.assign(Epoch(epoch), Offset(start));
        }
        c
    }

    fn answer(epoch: i32, end: i64) -> Option<EpochEndOffset> {
        Some(EpochEndOffset {
            epoch: Epoch(epoch),
            end_offset: Offset(end),
        })
    }

    /// An epoch ends where the next higher one starts; the latest ends at the log end; an
    /// epoch with no entry of its own is answered with the largest one below it.
    #[test]
    fn end_offset_for_middle_latest_and_gap() {
        let c = cache(&[(1, 0), (3, 10), (6, 25)]);
        assert_eq!(c.end_offset_for(Epoch(1), Offset(40)), answer(1, 10));
        assert_eq!(c.end_offset_for(Epoch(3), Offset(40)), answer(3, 25));
        // Epochs 4 and 5 never wrote here: epoch 3 is the floor, and it ends at 25.
        assert_eq!(c.end_offset_for(Epoch(5), Offset(40)), answer(3, 25));
        assert_eq!(c.end_offset_for(Epoch(6), Offset(40)), answer(6, 40));
    }

    /// Kafka's UNDEFINED cases: an empty cache and an epoch past the latest. An epoch below
    /// the first is answered with itself and the first start (LeaderEpochFileCache's
    /// `floorEntry == null` branch), not UNDEFINED.
    #[test]
    fn end_offset_for_undefined_and_below_first() {
        assert_eq!(
            LeaderEpochCache::new().end_offset_for(Epoch(1), Offset(0)),
            None
        );
        let c = cache(&[(2, 5), (4, 9)]);
        assert_eq!(c.end_offset_for(Epoch(7), Offset(12)), None);
        assert_eq!(c.end_offset_for(Epoch(1), Offset(12)), answer(1, 5));
    }

    /// Assigning the latest epoch again further on is a no-op; earlier rewrites its start;
    /// an older epoch or an earlier start drops the newer entries.
    #[test]
    fn assign_keeps_order() {
        let mut c = cache(&[(1, 0), (2, 5)]);
        c.assign(Epoch(2), Offset(8));
        assert_eq!(c, cache(&[(1, 0), (2, 5)]));
        c.assign(Epoch(2), Offset(3));
        assert_eq!(c, cache(&[(1, 0), (2, 3)]));
        c.assign(Epoch(3), Offset(3));
        assert_eq!(c, cache(&[(1, 0), (3, 3)]));
        c.assign(Epoch(2), Offset(7));
        assert_eq!(c, cache(&[(1, 0), (2, 7)]));
    }

    /// Truncating from the end drops entries starting at or past the cut, and only those.
    #[test]
    fn truncate_from_end() {
        let mut c = cache(&[(1, 0), (2, 5), (4, 9)]);
        c.truncate_from_end(Offset(10));
        assert_eq!(c, cache(&[(1, 0), (2, 5), (4, 9)]));
        c.truncate_from_end(Offset(9));
        assert_eq!(c, cache(&[(1, 0), (2, 5)]));
        c.truncate_from_end(Offset(0));
        assert_eq!(c, LeaderEpochCache::new());
    }

    /// Truncating from the start keeps the epoch in force at the new start, starting there.
    #[test]
    fn truncate_from_start() {
        let mut c = cache(&[(1, 0), (2, 5), (4, 9)]);
        c.truncate_from_start(Offset(7));
        assert_eq!(c, cache(&[(2, 7), (4, 9)]));
        c.truncate_from_start(Offset(9));
        assert_eq!(c, cache(&[(4, 9)]));
        assert_eq!(c.epoch_for(Offset(20)), Some(Epoch(4)));
        assert_eq!(c.epoch_for(Offset(3)), None);
    }
}
