//! Idempotent-producer state of one partition: for each producer id, its epoch and the
//! sequence ranges and offsets of its last five batches (Kafka keeps five in flight).
//!
//! Rules (Kafka's): a lower epoch is fenced (`InvalidProducerEpoch`); a higher epoch must start
//! at sequence 0; within an epoch a batch repeating one of the five cached ranges is a
//! duplicate (`DuplicateSequence`, carrying the original offsets), and a new batch must start
//! right after the last one (`OutOfOrderSequence`). A producer not in the table is accepted at
//! any sequence: the table is rebuilt on open only from the segments recovery scans (the
//! active one), so a producer whose batches are all in older segments is forgotten.

use std::collections::{HashMap, VecDeque};

/// Batches remembered per producer.
pub(crate) const PRODUCER_BATCHES_MAX: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProducerBatch {
    pub(crate) first_seq: i32,
    pub(crate) last_seq: i32,
    pub(crate) base_offset: i64,
    pub(crate) last_offset: i64,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct ProducerEntry {
    pub(crate) epoch: i16,
    pub(crate) batches: VecDeque<ProducerBatch>,
}

/// What the table says about an incoming batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SeqCheck {
    Accept,
    Duplicate { base_offset: i64, last_offset: i64 },
    OutOfOrder { expected: i32 },
    Fenced { current_epoch: i16 },
}

#[derive(Debug, Default)]
pub(crate) struct ProducerTable {
    map: HashMap<i64, ProducerEntry>,
}

fn next_seq(s: i32) -> i32 {
    if s == i32::MAX { 0 } else { s + 1 }
}

impl ProducerTable {
    pub(crate) fn get(&self, pid: i64) -> Option<&ProducerEntry> {
        self.map.get(&pid)
    }

    /// Checks a batch against `entry` (the producer's current state, if known).
    pub(crate) fn check(
        entry: Option<&ProducerEntry>,
        epoch: i16,
        first_seq: i32,
        last_seq: i32,
    ) -> SeqCheck {
        let Some(e) = entry else {
            return SeqCheck::Accept;
        };
        if epoch < e.epoch {
            return SeqCheck::Fenced {
                current_epoch: e.epoch,
            };
        }
        if epoch > e.epoch {
            return if first_seq == 0 {
                SeqCheck::Accept
            } else {
                SeqCheck::OutOfOrder { expected: 0 }
            };
        }
        if let Some(b) = e
            .batches
            .iter()
            .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
        {
            return SeqCheck::Duplicate {
                base_offset: b.base_offset,
                last_offset: b.last_offset,
            };
        }
        match e.batches.back() {
            Some(last) if first_seq != next_seq(last.last_seq) => SeqCheck::OutOfOrder {
                expected: next_seq(last.last_seq),
            },
            _ => SeqCheck::Accept,
        }
    }

    /// Records an accepted batch into `entry`.
    pub(crate) fn record(entry: &mut ProducerEntry, epoch: i16, batch: ProducerBatch) {
        if epoch != entry.epoch {
            entry.epoch = epoch;
            entry.batches.clear();
        }
        if let Some(last) = entry.batches.back() {
            assert!(
                batch.base_offset > last.last_offset,
                "producer offsets must increase"
            );
        }
        entry.batches.push_back(batch);
        while entry.batches.len() > PRODUCER_BATCHES_MAX {
            entry.batches.pop_front();
        }
    }

    /// Base offsets of every batch the table remembers (compaction keeps these batches, at
    /// least as empty batches, so a rescan of the log rebuilds the same table).
    pub(crate) fn batch_bases(&self) -> impl Iterator<Item = i64> + '_ {
        self.map
            .values()
            .flat_map(|e| e.batches.iter().map(|b| b.base_offset))
    }

    pub(crate) fn insert(&mut self, pid: i64, entry: ProducerEntry) {
        self.map.insert(pid, entry);
    }

    /// Forgets batches at or after `offset` (after a truncation); producers left with no
    /// batch are forgotten.
    pub(crate) fn truncate(&mut self, offset: i64) {
        for e in self.map.values_mut() {
            e.batches.retain(|b| b.last_offset < offset);
        }
        self.map.retain(|_, e| !e.batches.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(first: i32, last: i32, off: i64) -> ProducerBatch {
        ProducerBatch {
            first_seq: first,
            last_seq: last,
            base_offset: off,
            last_offset: off + i64::from(last - first),
        }
    }

    /// Duplicates, gaps, fencing, epoch bumps and the five-batch window.
    #[test]
    fn rules() {
        let mut e = ProducerEntry::default();
        assert_eq!(ProducerTable::check(None, 0, 7, 9), SeqCheck::Accept);
        for i in 0..7 {
            ProducerTable::record(&mut e, 0, b(i * 3, i * 3 + 2, 100 + i64::from(i) * 3));
        }
        assert_eq!(e.batches.len(), PRODUCER_BATCHES_MAX);
        assert_eq!(
            ProducerTable::check(Some(&e), 0, 18, 20),
            SeqCheck::Duplicate {
                base_offset: 118,
                last_offset: 120
            }
        );
        assert_eq!(ProducerTable::check(Some(&e), 0, 21, 21), SeqCheck::Accept);
        assert_eq!(
            ProducerTable::check(Some(&e), 0, 23, 23),
            SeqCheck::OutOfOrder { expected: 21 }
        );
        assert_eq!(
            ProducerTable::check(Some(&e), 0, 0, 2),
            SeqCheck::OutOfOrder { expected: 21 }
        );
        assert_eq!(
            ProducerTable::check(Some(&e), -1, 21, 21),
            SeqCheck::Fenced { current_epoch: 0 }
        );
        assert_eq!(ProducerTable::check(Some(&e), 1, 0, 0), SeqCheck::Accept);
        assert_eq!(
            ProducerTable::check(Some(&e), 1, 5, 5),
            SeqCheck::OutOfOrder { expected: 0 }
        );
        let mut w = ProducerEntry::default();
        ProducerTable::record(&mut w, 0, b(i32::MAX, i32::MAX, 5));
        assert_eq!(ProducerTable::check(Some(&w), 0, 0, 0), SeqCheck::Accept);
    }
}
