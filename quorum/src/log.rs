//! The replicated log as the replica sees it: the `Log` trait, and `MemLog`, an in-memory log
//! that keeps the flushed/unflushed split so a simulated crash loses what was never synced.
//!
//! Invariants every `Log` keeps: entries are contiguous from offset 0 (no snapshots yet, so the
//! log start offset is always 0); epochs never decrease along the log; `flushed_end() <= end()`.

use crate::types::{Entry, Epoch, Offset, OffsetAndEpoch};

/// The log a replica appends to and reads from. Calls are synchronous: `append` makes an entry
/// readable at once but not durable; `flush` makes everything appended durable before it
/// returns; `truncate_to` is durable when it returns (a simplification of Kafka's truncation,
/// which deletes segment data).
pub trait Log {
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

    /// The epoch of the last entry (epoch 0 for an empty log).
    fn last_epoch(&self) -> Epoch {
        match self.end().0 {
            0 => Epoch(0),
            end => self.entry(Offset(end - 1)).map_or(Epoch(0), |e| e.epoch),
        }
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
    /// leader-epoch-cache lookup behind `DivergingEpoch`. `(0, 0)` when no entry qualifies.
    fn end_offset_for_epoch(&self, epoch: Epoch) -> OffsetAndEpoch {
        // Epochs are sorted along the log, so binary-search the first entry past `epoch`.
        let (mut low, mut high) = (0i64, self.end().0);
        while low < high {
            let mid = low + (high - low) / 2;
            let mid_epoch = self.entry(Offset(mid)).map_or(Epoch(0), |e| e.epoch);
            if mid_epoch <= epoch {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        match low {
            0 => OffsetAndEpoch::default(),
            end => OffsetAndEpoch {
                offset: Offset(end),
                epoch: self.entry(Offset(end - 1)).map_or(Epoch(0), |e| e.epoch),
            },
        }
    }
}

/// An in-memory log for tests, the simulator and the model check. Fault model: a crash
/// (`MemLog::crash`) keeps every flushed entry and any prefix of the unflushed ones (a torn
/// write keeps what reached the disk in order); truncation is durable at once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct MemLog {
    entries: Vec<Entry>,
    flushed: usize,
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
            entries: self.entries[..kept].to_vec(),
            flushed: kept,
        }
    }

    /// How many entries were appended but not yet flushed.
    pub fn unflushed_count(&self) -> usize {
        self.entries.len() - self.flushed
    }

    /// Every entry, in offset order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }
}

impl Log for MemLog {
    fn end(&self) -> Offset {
        Offset::from_index(self.entries.len())
    }

    fn flushed_end(&self) -> Offset {
        Offset::from_index(self.flushed)
    }

    fn entry(&self, offset: Offset) -> Option<&Entry> {
        if offset.0 < 0 {
            return None;
        }
        self.entries.get(offset.index())
    }

    fn append(&mut self, entry: Entry) {
        assert!(
            entry.epoch >= self.last_epoch(),
            "epochs never decrease along the log"
        );
        self.entries.push(entry);
    }

    fn truncate_to(&mut self, end: Offset) {
        assert!(end.0 >= 0, "truncation to a negative offset");
        let end = end.index().min(self.entries.len());
        self.entries.truncate(end);
        self.flushed = self.flushed.min(end);
    }

    fn flush(&mut self) {
        self.flushed = self.entries.len();
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
}
