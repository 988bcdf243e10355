//! The partition log as replication sees it: the `Log` trait (the seam the broker implements
//! over its `Partition`) and `MemLog`, an in-memory log for tests and the simulator.
//!
//! Invariants every `Log` keeps: batches are contiguous from the log start to the log end;
//! leader epochs never decrease along the log; the leader epoch cache has an entry for every
//! epoch that starts a batch (and possibly one for the leader's current epoch at the log end);
//! `log_start() <= durable_end() <= log_end()`.
//!
//! `MemLog`'s fault model (for a simulated crash, `MemLog::crash`): everything below the durable
//! end survives; of the batches after it, any prefix survives (a torn write keeps what reached
//! the disk in order; a half-written batch fails its CRC on recovery and is dropped whole);
//! truncation is durable at once, as the leader epoch cache is (Kafka writes its checkpoint
//! synchronously on assign).

use crate::epoch_cache::LeaderEpochCache;
use crate::types::{Epoch, Offset};

/// What replication needs to know of a record batch: its offsets and its leader epoch (Kafka's
/// `baseOffset`, `lastOffset`, `partitionLeaderEpoch`).
pub trait RecordBatch: Clone + std::fmt::Debug {
    /// The first record's offset.
    fn base_offset(&self) -> Offset;
    /// The last record's offset (inclusive).
    fn last_offset(&self) -> Offset;
    /// The leader epoch the batch was written in.
    fn epoch(&self) -> Epoch;
    /// The offset after the batch.
    fn next_offset(&self) -> Offset {
        self.last_offset().next()
    }
}

/// A partition's log. Calls are synchronous: an append is readable at once but durable only
/// after `sync`; truncation and epoch assignment are durable when they return.
pub trait Log {
    /// The batches this log holds.
    type Batch: RecordBatch;

    /// The first offset the log holds (Kafka's log start offset).
    fn log_start(&self) -> Offset;
    /// The offset the next record gets (Kafka's log end offset).
    fn log_end(&self) -> Offset;
    /// Everything below this offset survives a crash.
    fn durable_end(&self) -> Offset;
    /// The leader epoch cache of this log.
    fn epochs(&self) -> &LeaderEpochCache;
    /// On the leader: appends `batch` at the log end in `epoch` (the log sets its offsets and
    /// epoch). Returns its first and last offsets.
    fn append_as_leader(&mut self, epoch: Epoch, batch: Self::Batch) -> (Offset, Offset);
    /// On a follower: appends a batch read from the leader as it is, offsets and epoch kept;
    /// its base offset is the log end.
    fn append_as_follower(&mut self, batch: Self::Batch);
    /// A new leader notes its epoch starting at its log end, before it appends.
    fn assign_epoch_start(&mut self, epoch: Epoch, start_offset: Offset);
    /// Drops every record at or past `end` (at least the log start), and every leader epoch
    /// cache entry starting at or past the resulting log end, even when no record goes.
    fn truncate_to(&mut self, end: Offset);
    /// Drops everything and starts the log empty at `start` (Kafka's `truncateFullyAndStartAt`).
    fn truncate_fully_and_start_at(&mut self, start: Offset);
    /// Drops the records below `start` (at most the log end), moving the log start there
    /// (Kafka's `maybeIncrementLogStartOffset`: retention and DeleteRecords on a leader, and a
    /// follower following its leader's log start). Durable when it returns.
    fn advance_log_start(&mut self, start: Offset);
    /// Up to `batches_max` batches from `offset` on; the first one may start before `offset`
    /// when `offset` is inside it (a `Log` may also cut it there, as `MemLog` does).
    fn read_from(&self, offset: Offset, batches_max: usize) -> Vec<Self::Batch>;
    /// Makes every appended batch durable.
    fn sync(&mut self);
}

/// A batch of `MemLog`: records as opaque bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MemBatch {
    pub base_offset: Offset,
    pub epoch: Epoch,
    /// At least one record.
    pub records: Vec<Vec<u8>>,
}

impl MemBatch {
    /// A batch of `records` for a leader to append (offsets and epoch are set on append).
    pub fn new(records: Vec<Vec<u8>>) -> MemBatch {
        assert!(!records.is_empty(), "an empty batch");
        MemBatch {
            base_offset: Offset(0),
            epoch: Epoch(0),
            records,
        }
    }

    /// The records from `offset` on (within the batch).
    fn cut_at(&self, offset: Offset) -> MemBatch {
        let skip = usize::try_from(offset.0 - self.base_offset.0).unwrap_or(0);
        MemBatch {
            base_offset: offset.max(self.base_offset),
            epoch: self.epoch,
            records: self.records[skip..].to_vec(),
        }
    }
}

impl RecordBatch for MemBatch {
    fn base_offset(&self) -> Offset {
        self.base_offset
    }
    fn last_offset(&self) -> Offset {
        self.base_offset.plus(self.records.len() - 1)
    }
    fn epoch(&self) -> Epoch {
        self.epoch
    }
}

/// An in-memory log with a durable prefix (see the module doc for its fault model).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct MemLog {
    start: Offset,
    batches: Vec<MemBatch>,
    durable_end: Offset,
    epochs: LeaderEpochCache,
}

impl MemLog {
    /// An empty log starting at 0.
    pub fn new() -> MemLog {
        MemLog::default()
    }

    /// Every batch, oldest first.
    pub fn batches(&self) -> &[MemBatch] {
        &self.batches
    }

    /// The record at `offset` with its batch's epoch, if the log holds it.
    pub fn record(&self, offset: Offset) -> Option<(Epoch, &[u8])> {
        let index = self.batch_index(offset)?;
        let batch = &self.batches[index];
        let within = usize::try_from(offset.0 - batch.base_offset.0).ok()?;
        Some((batch.epoch, batch.records[within].as_slice()))
    }

    /// How many batches are not yet durable.
    pub fn unsynced_batch_count(&self) -> usize {
        self.batches
            .iter()
            .filter(|b| b.next_offset() > self.durable_end)
            .count()
    }

    /// What a crash leaves: the durable prefix and the first `kept` batches after it.
    pub fn crash(&self, kept: usize) -> MemLog {
        let mut log = self.clone();
        let end = self
            .batches
            .iter()
            .filter(|b| b.next_offset() > self.durable_end)
            .take(kept)
            .last()
            .map_or(self.durable_end, |b| b.next_offset());
        log.truncate_to(end);
        log.durable_end = end;
        log
    }

    fn batch_index(&self, offset: Offset) -> Option<usize> {
        let index = self.batches.partition_point(|b| b.next_offset() <= offset);
        (index < self.batches.len() && self.batches[index].base_offset <= offset).then_some(index)
    }

    fn push(&mut self, batch: MemBatch) {
        assert_eq!(
            batch.base_offset,
            self.log_end(),
            "a batch not at the log end"
        );
        if let Some(latest) = self.epochs.latest_epoch() {
            assert!(batch.epoch >= latest, "leader epochs going backwards");
        }
        self.epochs.assign(batch.epoch, batch.base_offset);
        self.batches.push(batch);
    }
}

impl Log for MemLog {
    type Batch = MemBatch;

    fn log_start(&self) -> Offset {
        self.start
    }
    fn log_end(&self) -> Offset {
        self.batches.last().map_or(self.start, |b| b.next_offset())
    }
    fn durable_end(&self) -> Offset {
        self.durable_end
    }
    fn epochs(&self) -> &LeaderEpochCache {
        &self.epochs
    }
    fn append_as_leader(&mut self, epoch: Epoch, mut batch: MemBatch) -> (Offset, Offset) {
        batch.base_offset = self.log_end();
        batch.epoch = epoch;
        let offsets = (batch.base_offset, batch.last_offset());
        self.push(batch);
        offsets
    }
    fn append_as_follower(&mut self, batch: MemBatch) {
        self.push(batch);
    }
    fn assign_epoch_start(&mut self, epoch: Epoch, start_offset: Offset) {
        self.epochs.assign(epoch, start_offset);
    }
    fn truncate_to(&mut self, end: Offset) {
        assert!(end >= self.start, "truncation below the log start");
        if end >= self.log_end() {
            // Kafka's `truncateTo` trims the cache even when no record goes: a former leader
            // may hold an entry for an epoch in which it wrote nothing, which would otherwise
            // be its "last fetched epoch" forever.
            self.epochs.truncate_from_end(self.log_end());
            return;
        }
        self.batches.retain(|b| b.base_offset < end);
        if let Some(last) = self.batches.last_mut() {
            let keep = usize::try_from(end.0 - last.base_offset.0).unwrap_or(0);
            last.records.truncate(keep);
        }
        self.epochs.truncate_from_end(end);
        self.durable_end = self.durable_end.min(end);
    }
    fn truncate_fully_and_start_at(&mut self, start: Offset) {
        self.batches.clear();
        self.start = start;
        self.durable_end = start;
        self.epochs.clear();
    }
    fn advance_log_start(&mut self, start: Offset) {
        let start = start.min(self.log_end());
        if start <= self.start {
            return;
        }
        self.batches.retain(|b| b.next_offset() > start);
        if let Some(first) = self.batches.first_mut() {
            *first = first.cut_at(start);
        }
        self.start = start;
        self.durable_end = self.durable_end.max(start);
        self.epochs.truncate_from_start(start);
    }
    fn read_from(&self, offset: Offset, batches_max: usize) -> Vec<MemBatch> {
        let Some(first) = self.batch_index(offset) else {
            return Vec::new();
        };
        let mut out = vec![self.batches[first].cut_at(offset)];
        let rest = self.batches[first + 1..]
            .iter()
            .take(batches_max.saturating_sub(1));
        out.extend(rest.cloned());
        out
    }
    fn sync(&mut self) {
        self.durable_end = self.log_end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(records: &[&str]) -> MemBatch {
        MemBatch::new(records.iter().map(|r| r.as_bytes().to_vec()).collect())
    }

    /// A leader append sets offsets and epoch and notes a new epoch in the cache; reads start
    /// inside a batch; truncation cuts a batch and the cache.
    #[test]
    fn append_read_truncate() {
        let mut log = MemLog::new();
        assert_eq!(
            log.append_as_leader(Epoch(1), batch(&["a", "b"])),
            (Offset(0), Offset(1))
        );
        assert_eq!(
            log.append_as_leader(Epoch(2), batch(&["c", "d"])),
            (Offset(2), Offset(3))
        );
        assert_eq!(log.log_end(), Offset(4));
        let read = log.read_from(Offset(1), 8);
        assert_eq!(read.len(), 2);
        assert_eq!((read[0].base_offset, read[0].records.len()), (Offset(1), 1));
        assert_eq!(log.record(Offset(2)), Some((Epoch(2), "c".as_bytes())));
        log.truncate_to(Offset(1));
        assert_eq!(log.log_end(), Offset(1));
        assert_eq!(log.epochs().latest_epoch(), Some(Epoch(1)));
        assert!(log.read_from(Offset(1), 8).is_empty());
    }

    /// An epoch assigned at the log end by a leader that then wrote nothing is dropped by a
    /// truncation that cuts no record (else a follower would report it as its last fetched
    /// epoch, and never converge with the new leader).
    #[test]
    fn truncate_at_end_drops_an_empty_epoch() {
        let mut log = MemLog::new();
        log.append_as_leader(Epoch(1), batch(&["a"]));
        log.assign_epoch_start(Epoch(2), Offset(1));
        assert_eq!(log.epochs().latest_epoch(), Some(Epoch(2)));
        log.truncate_to(Offset(1));
        assert_eq!(log.epochs().latest_epoch(), Some(Epoch(1)));
    }

    /// A crash keeps the durable prefix and whole batches after it, in order.
    #[test]
    fn crash_keeps_durable_prefix_and_torn_batches() {
        let mut log = MemLog::new();
        log.append_as_leader(Epoch(1), batch(&["a"]));
        log.sync();
        log.append_as_leader(Epoch(1), batch(&["b", "c"]));
        log.append_as_leader(Epoch(2), batch(&["d"]));
        assert_eq!(log.unsynced_batch_count(), 2);
        assert_eq!(log.crash(0).log_end(), Offset(1));
        let torn = log.crash(1);
        assert_eq!((torn.log_end(), torn.durable_end()), (Offset(3), Offset(3)));
        assert_eq!(torn.epochs().latest_epoch(), Some(Epoch(1)));
        assert_eq!(log.crash(5).log_end(), Offset(4));
    }

    /// Moving the log start drops the records below it (cutting a batch) and rewrites the
    /// first epoch entry; a full truncation empties the cache.
    #[test]
    fn advance_log_start_and_truncate_fully() {
        let mut log = MemLog::new();
        log.append_as_leader(Epoch(1), batch(&["a", "b"]));
        log.append_as_leader(Epoch(3), batch(&["c", "d"]));
        log.sync();
        log.advance_log_start(Offset(1));
        assert_eq!(
            (log.log_start(), log.record(Offset(1))),
            (Offset(1), Some((Epoch(1), "b".as_bytes())))
        );
        assert_eq!(log.record(Offset(0)), None);
        log.advance_log_start(Offset(3));
        assert_eq!(log.log_start(), Offset(3));
        assert_eq!(log.epochs().entries().len(), 1);
        assert_eq!(log.epochs().epoch_for(Offset(3)), Some(Epoch(3)));
        log.truncate_fully_and_start_at(Offset(10));
        assert_eq!((log.log_start(), log.log_end()), (Offset(10), Offset(10)));
        assert_eq!(log.epochs().latest_epoch(), None);
    }
}
