//! The transactions of one partition's log (issue 23): Kafka's share of `ProducerStateManager`
//! that follows transactions (`ongoingTxns`, `unreplicatedTxns`) and its transaction index
//! (the aborted transactions a read_committed Fetch returns), as a pure table the partition
//! feeds with every batch it appends, replicates or replays.
//!
//! A transactional data batch opens its producer's transaction at its base offset, unless one
//! is open already; a transaction marker (a control batch whose one record says COMMIT or
//! ABORT, written by the transaction coordinator through WriteTxnMarkers) ends it. The
//! first unstable offset is the first offset of the oldest transaction that is open or whose
//! marker the high watermark has not passed yet; the last stable offset (LSO) is the smaller
//! of it and the high watermark, and read_committed consumers read below it. An aborted
//! transaction is remembered as Kafka's index entry (producer id, first offset, marker offset,
//! and the LSO when it ended) so a read_committed Fetch can tell clients which records to drop.
//!
//! What must stay true: the LSO never passes an open transaction's first offset nor the high
//! watermark; `truncate` at or above the high watermark (the only truncation a replica does)
//! gives the state a replay of the kept log would give.
//!
//! The partition feeds it (`ProducerEvent::apply_to_transactions`) and persists it: the open
//! transactions in the producer snapshot (`producer_state.rs`), the aborted ones in each
//! segment's `.txnindex` file (`txn_index.rs`).

use std::collections::{BTreeMap, HashMap};

use bytes::{BufMut, Bytes, BytesMut};
use sluice_net::record_batch::RecordBatch;
use sluice_net::record_batch::build::{BatchSpec, batch};

/// Batch attributes of a transaction marker: transactional (0x10) and control (0x20).
pub const MARKER_ATTRIBUTES: i16 = 0x10 | 0x20;
/// Control record types (the key's second field): Kafka's `ControlRecordType`.
const ABORT: i16 = 0;
const COMMIT: i16 = 1;

/// A transaction marker's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    /// COMMIT, else ABORT.
    pub commit: bool,
    /// The coordinator's epoch (its `__transaction_state` partition's leader epoch), which
    /// fences markers from a deposed coordinator.
    pub coordinator_epoch: i32,
}

/// The control batch for `marker` of `producer_id` at `producer_epoch`, offset 0 (the log
/// assigns it): one record, key `(version 0, type)`, value `(version 0, coordinator epoch)`,
/// as Kafka's `EndTransactionMarker`.
pub fn marker_batch(producer_id: i64, producer_epoch: i16, marker: Marker, now_ms: i64) -> Bytes {
    let mut key = BytesMut::with_capacity(4);
    key.put_i16(0);
    key.put_i16(if marker.commit { COMMIT } else { ABORT });
    let mut value = BytesMut::with_capacity(6);
    value.put_i16(0);
    value.put_i32(marker.coordinator_epoch);
    let spec = BatchSpec {
        base_timestamp: now_ms,
        producer_id,
        producer_epoch,
        attributes: MARKER_ATTRIBUTES,
        ..BatchSpec::default()
    };
    batch(&spec, &[(Some(&key[..]), Some(&value[..]))])
}

/// The marker a control batch carries; `None` for a batch that is not a control batch, and
/// for other control records (a leader change, a snapshot header) or a damaged one.
pub fn marker_of(b: &RecordBatch) -> Option<Marker> {
    if !b.is_control() {
        return None;
    }
    let record = b.records().ok()?.next()?.ok()?;
    let key = record.key?;
    let kind = i16::from_be_bytes(key.get(2..4)?.try_into().ok()?);
    let commit = match kind {
        COMMIT => true,
        ABORT => false,
        _ => return None,
    };
    // A marker whose value cannot be read still ends the transaction (Kafka reads the type
    // from the key alone to decide); its coordinator epoch is then unknown.
    let coordinator_epoch = record
        .value
        .and_then(|v| Some(i32::from_be_bytes(v.get(2..6)?.try_into().ok()?)))
        .unwrap_or(-1);
    Some(Marker {
        commit,
        coordinator_epoch,
    })
}

/// An aborted transaction, as Kafka's transaction index keeps it and a read_committed Fetch
/// reports it (`AbortedTransaction`: producer id and first offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The offset of its ABORT marker.
    pub last_offset: i64,
    /// The last stable offset once it ended (Kafka's `lastStableOffset` of the entry).
    pub last_stable_offset: i64,
}

/// A transaction that ended but whose marker the high watermark has not passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ended {
    producer_id: i64,
    marker_offset: i64,
}

/// The transactions of one partition (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct Transactions {
    /// Producer id -> the first offset of its open transaction.
    open: HashMap<i64, i64>,
    /// The same, by first offset.
    open_by_first: BTreeMap<i64, i64>,
    /// First offset -> a transaction whose marker is at or above the high watermark.
    unreplicated: BTreeMap<i64, Ended>,
    /// Aborted transactions by marker offset.
    aborted: BTreeMap<i64, AbortedTxn>,
}

impl Transactions {
    /// Follows one batch appended at its base offset (a data batch, or a control batch).
    pub fn batch(&mut self, b: &RecordBatch) {
        if let Some(marker) = marker_of(b) {
            self.end(b.producer_id(), b.base_offset(), marker.commit);
        } else if b.is_transactional() && !b.is_control() && b.producer_id() >= 0 {
            self.data(b.producer_id(), b.base_offset());
        }
    }

    /// A transactional data batch of `producer_id` at `base_offset`: its transaction is open
    /// from there, unless it was already.
    pub fn data(&mut self, producer_id: i64, base_offset: i64) {
        if let std::collections::hash_map::Entry::Vacant(v) = self.open.entry(producer_id) {
            v.insert(base_offset);
            self.open_by_first.insert(base_offset, producer_id);
        }
    }

    /// A marker of `producer_id` at `marker_offset` ends its transaction; an ABORT is
    /// returned as the index entry it adds. A marker with no open transaction changes nothing
    /// (Kafka's `appendEndTxnMarker` emits a completed transaction only for a non-empty one:
    /// it neither holds the LSO nor enters the index).
    pub fn end(
        &mut self,
        producer_id: i64,
        marker_offset: i64,
        commit: bool,
    ) -> Option<AbortedTxn> {
        let first_offset = self.open.remove(&producer_id)?;
        self.open_by_first.remove(&first_offset);
        let ended = Ended {
            producer_id,
            marker_offset,
        };
        self.unreplicated.insert(first_offset, ended);
        if commit {
            return None;
        }
        // Kafka's `lastStableOffset(completedTxn)`: the first offset of the oldest other open
        // transaction, else just past the marker.
        let last_stable_offset = self
            .open_by_first
            .keys()
            .next()
            .copied()
            .unwrap_or(marker_offset + 1);
        let aborted = AbortedTxn {
            producer_id,
            first_offset,
            last_offset: marker_offset,
            last_stable_offset,
        };
        self.aborted.insert(marker_offset, aborted);
        Some(aborted)
    }

    /// The high watermark moved to `high_watermark`: transactions whose marker is below it
    /// are stable.
    pub fn high_watermark_moved(&mut self, high_watermark: i64) {
        self.unreplicated
            .retain(|_, e| e.marker_offset >= high_watermark);
    }

    /// The first offset of the oldest transaction that is open or not yet stable.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        let open = self.open_by_first.keys().next();
        let ended = self.unreplicated.keys().next();
        match (open, ended) {
            (Some(a), Some(b)) => Some(*a.min(b)),
            (a, b) => a.or(b).copied(),
        }
    }

    /// The last stable offset at high watermark `high_watermark`.
    pub fn last_stable_offset(&self, high_watermark: i64) -> i64 {
        self.first_unstable_offset()
            .map_or(high_watermark, |f| f.min(high_watermark))
    }

    /// Whether `producer_id` has an open transaction here.
    pub fn is_open(&self, producer_id: i64) -> bool {
        self.open.contains_key(&producer_id)
    }

    /// The aborted transactions a read from `fetch_offset` up to `upper_bound` (exclusive)
    /// overlaps, oldest marker first (Kafka's `collectAbortedTxns`: the marker at or past the
    /// fetch offset, the first offset before the bound).
    pub fn aborted_between(&self, fetch_offset: i64, upper_bound: i64) -> Vec<AbortedTxn> {
        self.aborted
            .range(fetch_offset..)
            .map(|(_, a)| *a)
            .filter(|a| a.first_offset < upper_bound)
            .collect()
    }

    /// The log was cut to end at `offset` (at or above the high watermark): what began there
    /// is forgotten, and a transaction whose marker was cut is open again.
    pub fn truncate(&mut self, offset: i64) {
        self.open.retain(|_, first| *first < offset);
        self.open_by_first.retain(|first, _| *first < offset);
        self.aborted.retain(|marker, _| *marker < offset);
        let cut: Vec<(i64, Ended)> = self
            .unreplicated
            .iter()
            .filter(|(_, e)| e.marker_offset >= offset)
            .map(|(first, e)| (*first, *e))
            .collect();
        for (first, e) in cut {
            self.unreplicated.remove(&first);
            if first < offset {
                self.open.insert(e.producer_id, first);
                self.open_by_first.insert(first, e.producer_id);
            }
        }
    }

    /// The log now starts at `log_start`: aborted transactions that ended before it are
    /// dropped from the index (a Fetch cannot reach them).
    pub fn delete_before(&mut self, log_start: i64) {
        self.aborted.retain(|marker, _| *marker >= log_start);
    }

    /// The open transactions, producer id -> first offset (for a producer snapshot).
    pub fn open_transactions(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.open.iter().map(|(p, f)| (*p, *f))
    }

    /// The first offset of `producer_id`'s open transaction.
    pub fn open_first_offset(&self, producer_id: i64) -> Option<i64> {
        self.open.get(&producer_id).copied()
    }

    /// Aborted transactions whose marker lies in `range` (a segment's, for its index file).
    pub fn aborted_in(&self, range: std::ops::Range<i64>) -> Vec<AbortedTxn> {
        self.aborted.range(range).map(|(_, a)| *a).collect()
    }

    /// Forgets the aborted transaction whose ABORT marker was at `marker_offset` (compaction
    /// removed that marker, and the transaction's batches before it).
    pub fn forget_aborted(&mut self, marker_offset: i64) {
        self.aborted.remove(&marker_offset);
    }

    /// Adds an aborted transaction read back from an index file (on open).
    pub fn insert_aborted(&mut self, aborted: AbortedTxn) {
        self.aborted.insert(aborted.last_offset, aborted);
    }

    /// Every aborted transaction the index holds, oldest marker first.
    pub fn aborted(&self) -> impl Iterator<Item = &AbortedTxn> + '_ {
        self.aborted.values()
    }

    /// The transactions a producer snapshot describes: open ones (producer id, first
    /// offset); every ended one is stable (the log below a snapshot was committed when it
    /// was written).
    pub fn restored(open: impl IntoIterator<Item = (i64, i64)>) -> Self {
        let mut t = Self::default();
        for (producer_id, first) in open {
            t.data(producer_id, first);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_net::record_batch::set_base_offset;

    fn data_batch(pid: i64, offset: i64, transactional: bool) -> RecordBatch {
        let spec = BatchSpec {
            base_offset: offset,
            producer_id: pid,
            producer_epoch: 0,
            base_sequence: 0,
            attributes: if transactional { 0x10 } else { 0 },
            ..BatchSpec::default()
        };
        RecordBatch::new(batch(&spec, &[(None, Some(b"v"))])).unwrap()
    }

    fn marker_at(pid: i64, offset: i64, commit: bool) -> RecordBatch {
        let marker = Marker {
            commit,
            coordinator_epoch: 7,
        };
        let mut bytes = BytesMut::from(&marker_batch(pid, 0, marker, 1_000)[..]);
        set_base_offset(&mut bytes, offset);
        RecordBatch::new(bytes.freeze()).unwrap()
    }

    /// A marker round-trips through its control batch, which is valid and flagged.
    #[test]
    fn marker_codec() {
        for commit in [true, false] {
            let b = marker_at(9, 40, commit);
            b.validate().unwrap();
            assert!(b.is_control() && b.is_transactional());
            assert_eq!((b.producer_id(), b.base_offset()), (9, 40));
            let m = marker_of(&b).unwrap();
            assert_eq!((m.commit, m.coordinator_epoch), (commit, 7));
        }
        assert_eq!(marker_of(&data_batch(9, 0, true)), None);
    }

    /// Open transactions hold the LSO at their first offset; an ended one until the high
    /// watermark passes its marker; the LSO never passes the high watermark.
    #[test]
    fn last_stable_offset() {
        let mut t = Transactions::default();
        assert_eq!(t.last_stable_offset(10), 10);
        t.batch(&data_batch(1, 10, false));
        assert_eq!(t.last_stable_offset(11), 11, "not transactional");
        t.batch(&data_batch(2, 11, true));
        t.batch(&data_batch(3, 12, true));
        t.batch(&data_batch(2, 13, true));
        assert_eq!(t.first_unstable_offset(), Some(11));
        assert_eq!(t.last_stable_offset(14), 11);
        assert_eq!(t.last_stable_offset(5), 5);
        t.batch(&marker_at(2, 14, true));
        assert!(!t.is_open(2) && t.is_open(3));
        // Committed, but the marker is not replicated yet: still unstable from 11.
        assert_eq!(t.last_stable_offset(14), 11);
        t.high_watermark_moved(15);
        assert_eq!(t.last_stable_offset(15), 12, "producer 3 is still open");
        t.batch(&marker_at(3, 15, false));
        t.high_watermark_moved(16);
        assert_eq!(t.last_stable_offset(16), 16);
        assert_eq!(t.first_unstable_offset(), None);
    }

    /// Aborted transactions are indexed with Kafka's last stable offset, and a read gets the
    /// ones whose marker is at or past its start and whose first offset is before its end.
    #[test]
    fn aborted_index() {
        let mut t = Transactions::default();
        t.batch(&data_batch(1, 0, true));
        t.batch(&data_batch(2, 1, true));
        let a1 = t.end(1, 2, false).unwrap();
        assert_eq!(
            a1,
            AbortedTxn {
                producer_id: 1,
                first_offset: 0,
                last_offset: 2,
                last_stable_offset: 1
            }
        );
        t.batch(&marker_at(2, 3, true));
        t.batch(&data_batch(1, 4, true));
        t.batch(&marker_at(1, 5, false));
        // A marker with nothing open is no transaction: no index entry, no unstable offset.
        assert_eq!(t.end(4, 6, false), None);
        assert_eq!(
            t.first_unstable_offset(),
            Some(0),
            "the others are not stable yet"
        );
        t.high_watermark_moved(7);
        assert_eq!(t.first_unstable_offset(), None);
        let firsts = |v: Vec<AbortedTxn>| v.iter().map(|a| a.first_offset).collect::<Vec<_>>();
        assert_eq!(firsts(t.aborted_between(0, 10)), vec![0, 4]);
        assert_eq!(firsts(t.aborted_between(3, 10)), vec![4]);
        assert_eq!(firsts(t.aborted_between(0, 4)), vec![0]);
        assert_eq!(firsts(t.aborted_between(2, 5)), vec![0, 4]);
        t.delete_before(3);
        assert_eq!(firsts(t.aborted_between(0, 10)), vec![4]);
    }

    /// Truncation at or above the high watermark leaves what a replay of the kept log gives:
    /// a cut marker reopens its transaction, a cut first batch forgets it.
    #[test]
    fn truncation_equals_replay() {
        let log = [
            data_batch(1, 0, true),
            data_batch(2, 1, true),
            data_batch(3, 2, false),
            marker_at(1, 3, false),
            data_batch(4, 4, true),
            marker_at(2, 5, true),
            data_batch(1, 6, true),
            marker_at(4, 7, false),
        ];
        for cut in 0..=log.len() {
            for hw in 0..=cut {
                let mut t = Transactions::default();
                let mut replayed = Transactions::default();
                for (i, b) in log.iter().enumerate() {
                    t.batch(b);
                    if i < cut {
                        replayed.batch(b);
                    }
                }
                let hw = i64::try_from(hw).unwrap();
                let cut = i64::try_from(cut).unwrap();
                t.high_watermark_moved(hw);
                replayed.high_watermark_moved(hw);
                t.truncate(cut);
                let all = |x: &Transactions| {
                    let mut open: Vec<(i64, i64)> = x.open_transactions().collect();
                    open.sort_unstable();
                    (
                        open,
                        x.first_unstable_offset(),
                        x.aborted_between(0, i64::MAX),
                    )
                };
                assert_eq!(all(&t), all(&replayed), "cut {cut}, hw {hw}");
            }
        }
    }
}
