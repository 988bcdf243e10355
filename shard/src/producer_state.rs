//! Idempotent-producer state of one partition: for each producer id, its epoch and the
//! sequence ranges and offsets of its last five batches (Kafka keeps five in flight).
//!
//! Rules (Kafka's): a lower epoch is fenced (`InvalidProducerEpoch`); a higher epoch must start
//! at sequence 0; within an epoch a batch repeating one of the five cached ranges is a
//! duplicate (`DuplicateSequence`, carrying the original offsets), and a new batch must start
//! right after the last one (`OutOfOrderSequence`). A producer not in the table is accepted at
//! any sequence.
//!
//! # Expiry
//! As Kafka's `producer.id.expiration.ms`, a producer is forgotten once its newest batch's
//! `maxTimestamp` (Kafka's `lastTimestamp`; the append time for `LogAppendTime` topics) is
//! [`LogConfig::producer_id_expiration_ms`](crate::LogConfig) or more in the past:
//! [`ProducerTable::expire`] runs with every retention pass (`Partition::enforce_retention`,
//! which the broker's housekeeping calls every few seconds) and when the table is loaded on
//! open (expired snapshot entries are dropped before the log after the snapshot is replayed,
//! and the replayed table is expired again). An expired producer is unknown again, so its next
//! batch is accepted at any sequence, as Kafka does; this bounds the table by the producers
//! active within the expiration window instead of every producer id ever seen.
//!
//! # Snapshots
//! As Kafka does, the table is saved in `<20-digit offset>.snapshot` files: the state after
//! every batch below that offset. One is written when a segment rolls (at the new segment's
//! base, once every batch below it is durable) and one on a clean close (at the log end);
//! the newest `limits::SNAPSHOTS_KEPT` are kept. On open the partition loads the newest valid
//! snapshot at or below the recovered log end and replays the batches from its offset to the
//! log end, so a producer whose batches are all in older segments, even deleted ones
//! (retention, delete-records), is still known. A snapshot above the log end (left by a
//! truncation or a torn tail) or one that fails its checks is removed with a warning and an
//! older one, or a scan of the whole log, is used instead. `truncate_to` removes snapshots
//! above the new log end.
//!
//! File format: `meta::frame_archive` with magic `SLPS` around an rkyv archive of
//! [`SnapshotFile`], read with checked access and then checked for sense (offsets below the
//! snapshot offset and increasing, at most [`PRODUCER_BATCHES_MAX`] batches per producer).
//! Version 2 stores each batch's `maxTimestamp` (for expiry); a version 1 file (no
//! timestamps) fails to decode like a damaged one, so it is removed with a warning and the
//! state is rebuilt from an older snapshot or a scan of the log, whose batch headers carry
//! the timestamps. Version 3 (magic `SLPT`, issue 23) adds per producer what transactions
//! need, as Kafka's snapshot entry does: the coordinator epoch of its last marker, its
//! `lastTimestamp` (a marker's timestamp counts) and the first offset of its open
//! transaction (-1 if none). A version 2 file still loads, as a table with no open
//! transaction and no coordinator epoch (it was written before transactions existed).
//!
//! # Transactions
//! A transaction marker (`Marker`, appended by `Partition::append_marker` or replicated) is
//! not a sequenced batch: it updates the entry as Kafka's `ProducerStateEntry.update` does.
//! A marker in a newer epoch (transaction version 2 bumps the epoch at every commit or abort)
//! sets the epoch and forgets the batches, so the next batch must start at sequence 0; a
//! marker in the same epoch keeps them, so the producer's sequence goes on. Either way it
//! remembers the coordinator epoch (older markers are fenced) and the marker's timestamp.
//! An entry can thus hold an epoch and no batch; it is kept (in memory and in snapshots), as
//! Kafka keeps it, so the epoch and coordinator epoch still fence zombies. Which producers have
//! an open transaction is `Transactions`' to know, not the entry's (one source of truth);
//! a producer with an open transaction never expires (Kafka's `isProducerExpired`).

use std::collections::{HashMap, VecDeque};

use rkyv::rancor;
use sluice_net::record_batch::RecordBatch;

use crate::limits::PRODUCER_BATCHES_MAX;
use crate::meta::{frame_archive, unframe_archive};
use crate::transactions::{Marker, Transactions, marker_of};

pub(crate) const SNAPSHOT_SUFFIX: &str = ".snapshot";
const SNAPSHOT_MAGIC_V2: &[u8; 4] = b"SLPS";
const SNAPSHOT_VERSION_V2: u32 = 2;
const SNAPSHOT_MAGIC: &[u8; 4] = b"SLPT";
const SNAPSHOT_VERSION: u32 = 3;

/// Sequence of the last record of a batch: sequences wrap from i32::MAX to 0.
pub(crate) fn last_sequence(first_seq: i32, last_offset_delta: i32) -> i32 {
    ((i64::from(first_seq) + i64::from(last_offset_delta)) % (i64::from(i32::MAX) + 1)) as i32
}

/// File name of the snapshot at `offset`.
pub(crate) fn snapshot_name(offset: i64) -> String {
    format!("{offset:020}{SNAPSHOT_SUFFIX}")
}

/// The offset of a snapshot file name, if `name` is one.
pub(crate) fn parse_snapshot_name(name: &str) -> Option<i64> {
    let digits = name.strip_suffix(SNAPSHOT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The content of a version 2 snapshot file (magic `SLPS`), read only.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(crate) struct SnapshotFileV2 {
    pub(crate) version: u32,
    /// The table holds every batch below this offset and none at or above it.
    pub(crate) offset: i64,
    /// Sorted by producer id.
    pub(crate) producers: Vec<SnapshotProducerV2>,
}

#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(crate) struct SnapshotProducerV2 {
    pub(crate) producer_id: i64,
    pub(crate) epoch: i16,
    /// (first sequence, last sequence, base offset, last offset, max timestamp), oldest
    /// first.
    pub(crate) batches: Vec<(i32, i32, i64, i64, i64)>,
}

/// The content of a version 3 snapshot file (magic `SLPT`).
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(crate) struct SnapshotFile {
    pub(crate) version: u32,
    /// The table holds every batch and marker below this offset and none at or above it.
    pub(crate) offset: i64,
    /// Sorted by producer id.
    pub(crate) producers: Vec<SnapshotProducer>,
}

#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(crate) struct SnapshotProducer {
    pub(crate) producer_id: i64,
    pub(crate) epoch: i16,
    /// The coordinator epoch of its last marker (-1 if none).
    pub(crate) coordinator_epoch: i32,
    /// Kafka's `lastTimestamp`: of its newest batch or marker.
    pub(crate) last_timestamp: i64,
    /// First offset of its open transaction, -1 if none.
    pub(crate) txn_first_offset: i64,
    /// (first sequence, last sequence, base offset, last offset, max timestamp), oldest
    /// first; may be empty (a marker bumped the epoch).
    pub(crate) batches: Vec<(i32, i32, i64, i64, i64)>,
}

/// A batch of a producer as the log holds it, for the producer table and the transactions:
/// a data batch (sequenced) or a transaction marker (a control batch). What appends,
/// follower appends and the replay on open all feed both tables with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProducerEvent {
    Data {
        pid: i64,
        epoch: i16,
        batch: ProducerBatch,
        transactional: bool,
    },
    Marker {
        pid: i64,
        epoch: i16,
        offset: i64,
        marker: Marker,
        timestamp: i64,
    },
}

impl ProducerEvent {
    /// What batch `b`, stored at offset `base` with `max_timestamp`, means to the producer
    /// state: `None` for a batch without producer id and for a control batch that is not a
    /// transaction marker.
    pub(crate) fn of(b: &RecordBatch, base: i64, max_timestamp: i64) -> Option<Self> {
        let pid = b.producer_id();
        if pid < 0 {
            return None;
        }
        if b.is_control() {
            let marker = marker_of(b)?;
            return Some(ProducerEvent::Marker {
                pid,
                epoch: b.producer_epoch(),
                offset: base,
                marker,
                timestamp: max_timestamp,
            });
        }
        Some(ProducerEvent::Data {
            pid,
            epoch: b.producer_epoch(),
            batch: ProducerBatch {
                first_seq: b.base_sequence(),
                last_seq: last_sequence(b.base_sequence(), b.last_offset_delta()),
                base_offset: base,
                last_offset: base + i64::from(b.last_offset_delta()),
                max_timestamp,
            },
            transactional: b.is_transactional(),
        })
    }

    /// The offset the event starts at.
    pub(crate) fn offset(&self) -> i64 {
        match self {
            ProducerEvent::Data { batch, .. } => batch.base_offset,
            ProducerEvent::Marker { offset, .. } => *offset,
        }
    }

    /// Feeds the event to `txns` (a transactional batch opens its producer's transaction, a
    /// marker ends it).
    pub(crate) fn apply_to_transactions(&self, txns: &mut Transactions) {
        match *self {
            ProducerEvent::Data {
                pid,
                batch,
                transactional: true,
                ..
            } => txns.data(pid, batch.base_offset),
            ProducerEvent::Data { .. } => {}
            ProducerEvent::Marker {
                pid,
                offset,
                marker,
                ..
            } => {
                txns.end(pid, offset, marker.commit);
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProducerBatch {
    pub(crate) first_seq: i32,
    pub(crate) last_seq: i32,
    pub(crate) base_offset: i64,
    pub(crate) last_offset: i64,
    /// The batch's `maxTimestamp` as stored (the append time for `LogAppendTime`).
    pub(crate) max_timestamp: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct ProducerEntry {
    pub(crate) epoch: i16,
    pub(crate) batches: VecDeque<ProducerBatch>,
    /// The coordinator epoch of the producer's last marker; -1 before any.
    pub(crate) coordinator_epoch: i32,
    /// Kafka's `lastTimestamp`: the `maxTimestamp` of the newest batch, or the timestamp of
    /// a newer marker (-1 if none).
    pub(crate) last_timestamp: i64,
}

impl Default for ProducerEntry {
    fn default() -> Self {
        Self {
            epoch: 0,
            batches: VecDeque::new(),
            coordinator_epoch: -1,
            last_timestamp: -1,
        }
    }
}

impl ProducerEntry {
    /// Kafka's `lastTimestamp` (see the field).
    pub(crate) fn last_timestamp(&self) -> i64 {
        self.last_timestamp
    }

    /// The sequence of the newest batch, -1 if none (Kafka's `lastSeq`).
    pub(crate) fn last_sequence(&self) -> i32 {
        self.batches.back().map_or(-1, |b| b.last_seq)
    }

    /// Whether the producer has been idle `expiration_ms` or more at `now_ms` (Kafka's
    /// `currentTimeMs - lastTimestamp >= producerIdExpirationMs`).
    pub(crate) fn expired(&self, now_ms: i64, expiration_ms: i64) -> bool {
        now_ms.saturating_sub(self.last_timestamp()) >= expiration_ms
    }
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
        // A known producer with no batch in this epoch (a marker bumped it) starts at 0, as
        // Kafka's `checkSequence` (its last sequence is then -1).
        let expected = e.batches.back().map_or(0, |last| next_seq(last.last_seq));
        if first_seq == expected {
            SeqCheck::Accept
        } else {
            SeqCheck::OutOfOrder { expected }
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
        entry.last_timestamp = batch.max_timestamp;
        entry.batches.push_back(batch);
        while entry.batches.len() > PRODUCER_BATCHES_MAX {
            entry.batches.pop_front();
        }
    }

    /// Records a transaction marker of `epoch` into `entry` (Kafka's
    /// `ProducerStateEntry.update`): a new epoch forgets the batches (the next batch starts
    /// at sequence 0), the same one keeps them (the sequence goes on); the coordinator epoch
    /// and the marker's timestamp are remembered.
    pub(crate) fn record_marker(
        entry: &mut ProducerEntry,
        epoch: i16,
        coordinator_epoch: i32,
        timestamp: i64,
    ) {
        if epoch != entry.epoch {
            entry.epoch = epoch;
            entry.batches.clear();
        }
        entry.coordinator_epoch = coordinator_epoch;
        entry.last_timestamp = timestamp;
    }

    /// Applies an event appended here (checked by the append) or replicated (checked by the
    /// leader): recorded as it is.
    pub(crate) fn apply(&mut self, event: &ProducerEvent) {
        match *event {
            ProducerEvent::Data {
                pid, epoch, batch, ..
            } => Self::record(self.entry_mut(pid), epoch, batch),
            ProducerEvent::Marker {
                pid,
                epoch,
                marker,
                timestamp,
                ..
            } => Self::record_marker(
                self.entry_mut(pid),
                epoch,
                marker.coordinator_epoch,
                timestamp,
            ),
        }
    }

    /// Applies an event read back from the log on open (no checks: the append made them). A data batch is recorded unless its epoch is older than the producer's (which
    /// an append would have fenced); so is a marker.
    pub(crate) fn replay_event(&mut self, event: &ProducerEvent) {
        match *event {
            ProducerEvent::Data {
                pid, epoch, batch, ..
            } => self.replay(pid, epoch, batch),
            ProducerEvent::Marker {
                pid,
                epoch,
                marker,
                timestamp,
                ..
            } => {
                let fresh = !self.map.contains_key(&pid);
                let e = self.map.entry(pid).or_default();
                if fresh || epoch >= e.epoch {
                    Self::record_marker(e, epoch, marker.coordinator_epoch, timestamp);
                }
            }
        }
    }

    /// Every producer with its entry (for DescribeProducers).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (i64, &ProducerEntry)> + '_ {
        self.map.iter().map(|(p, e)| (*p, e))
    }

    /// Base offsets of every batch the table remembers (compaction keeps these batches, at
    /// least as empty batches, so a rescan of the log rebuilds the same table).
    pub(crate) fn batch_bases(&self) -> impl Iterator<Item = i64> + '_ {
        self.map
            .values()
            .flat_map(|e| e.batches.iter().map(|b| b.base_offset))
    }

    /// The producer's entry, created empty if new (for recording an accepted batch).
    pub(crate) fn entry_mut(&mut self, pid: i64) -> &mut ProducerEntry {
        self.map.entry(pid).or_default()
    }

    /// Applies a batch read back from the log (recovery replay): recorded unless it carries
    /// an epoch older than the producer's (which an append would have fenced).
    pub(crate) fn replay(&mut self, pid: i64, epoch: i16, batch: ProducerBatch) {
        let fresh = !self.map.contains_key(&pid);
        let e = self.map.entry(pid).or_default();
        if fresh || epoch >= e.epoch {
            Self::record(e, epoch, batch);
        }
    }

    /// Producers known.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Forgets every producer idle for `expiration_ms` or more at `now_ms`, but those with an
    /// open transaction in `txns`; returns how many.
    pub(crate) fn expire(&mut self, now_ms: i64, expiration_ms: i64, txns: &Transactions) -> usize {
        let before = self.map.len();
        self.map
            .retain(|pid, e| txns.is_open(*pid) || !e.expired(now_ms, expiration_ms));
        before - self.map.len()
    }

    /// The snapshot file for this table taken at `offset` (every batch and marker recorded
    /// is below it), with the open transactions of `txns`.
    pub(crate) fn encode_snapshot(&self, offset: i64, txns: &Transactions) -> Vec<u8> {
        let open: HashMap<i64, i64> = txns.open_transactions().collect();
        let mut producers: Vec<SnapshotProducer> = self
            .map
            .iter()
            .map(|(&pid, e)| SnapshotProducer {
                producer_id: pid,
                epoch: e.epoch,
                coordinator_epoch: e.coordinator_epoch,
                last_timestamp: e.last_timestamp,
                txn_first_offset: open.get(&pid).copied().unwrap_or(-1),
                batches: e
                    .batches
                    .iter()
                    .map(|b| {
                        assert!(b.last_offset < offset, "snapshot must cover its batches");
                        (
                            b.first_seq,
                            b.last_seq,
                            b.base_offset,
                            b.last_offset,
                            b.max_timestamp,
                        )
                    })
                    .collect(),
            })
            .collect();
        // An open transaction of a producer the table does not hold (expired while open
        // cannot happen; this is a guard) still goes into the snapshot.
        for (&pid, &first) in &open {
            assert!(first < offset, "snapshot must cover its open transactions");
            if !self.map.contains_key(&pid) {
                producers.push(SnapshotProducer {
                    producer_id: pid,
                    epoch: 0,
                    coordinator_epoch: -1,
                    last_timestamp: -1,
                    txn_first_offset: first,
                    batches: Vec::new(),
                });
            }
        }
        producers.sort_unstable_by_key(|p| p.producer_id);
        let file = SnapshotFile {
            version: SNAPSHOT_VERSION,
            offset,
            producers,
        };
        // Serializing integers and Vecs cannot fail; an error here is a bug.
        let archive = match rkyv::to_bytes::<rancor::Error>(&file) {
            Ok(a) => a,
            Err(e) => panic!("serializing a producer snapshot failed: {e}"),
        };
        frame_archive(SNAPSHOT_MAGIC, &archive)
    }

    /// Reads a snapshot file back (version 3, or 2 as a table without transactions): its
    /// offset, table and open transactions (producer id, first offset). Any damage or
    /// nonsense is an error (never a panic), and the table it returns keeps every invariant
    /// `record` asserts.
    pub(crate) fn decode_snapshot(data: &[u8]) -> Result<DecodedSnapshot, String> {
        if data.get(..4) == Some(&SNAPSHOT_MAGIC_V2[..]) {
            return Self::decode_snapshot_v2(data);
        }
        let aligned = unframe_archive(SNAPSHOT_MAGIC, data)?;
        let file = rkyv::from_bytes::<SnapshotFile, rancor::Error>(&aligned)
            .map_err(|e| format!("archive check failed: {e}"))?;
        if file.version != SNAPSHOT_VERSION {
            return Err(format!("unknown version {}", file.version));
        }
        if file.offset < 0 {
            return Err("negative offset".into());
        }
        let mut table = ProducerTable::default();
        let mut open = Vec::new();
        for p in file.producers {
            let pid = p.producer_id;
            let first = p.txn_first_offset;
            if pid < 0
                || p.batches.len() > PRODUCER_BATCHES_MAX
                || first < -1
                || first >= file.offset
            {
                return Err(format!("bad entry for producer {pid}"));
            }
            let mut entry = entry_of(pid, p.epoch, &p.batches, file.offset)?;
            entry.coordinator_epoch = p.coordinator_epoch;
            entry.last_timestamp = p.last_timestamp;
            if first >= 0 {
                open.push((pid, first));
            }
            if table.map.insert(pid, entry).is_some() {
                return Err(format!("producer {pid} twice"));
            }
        }
        Ok((file.offset, table, open))
    }

    fn decode_snapshot_v2(data: &[u8]) -> Result<DecodedSnapshot, String> {
        let aligned = unframe_archive(SNAPSHOT_MAGIC_V2, data)?;
        let file = rkyv::from_bytes::<SnapshotFileV2, rancor::Error>(&aligned)
            .map_err(|e| format!("archive check failed: {e}"))?;
        if file.version != SNAPSHOT_VERSION_V2 {
            return Err(format!("unknown version {}", file.version));
        }
        if file.offset < 0 {
            return Err("negative offset".into());
        }
        let mut table = ProducerTable::default();
        for p in file.producers {
            if p.producer_id < 0 || p.batches.is_empty() || p.batches.len() > PRODUCER_BATCHES_MAX {
                return Err(format!("bad entry for producer {}", p.producer_id));
            }
            let entry = entry_of(p.producer_id, p.epoch, &p.batches, file.offset)?;
            if table.map.insert(p.producer_id, entry).is_some() {
                return Err(format!("producer {} twice", p.producer_id));
            }
        }
        Ok((file.offset, table, Vec::new()))
    }
}

/// What a snapshot file holds: its offset, the producer table and the open transactions
/// (producer id, first offset).
pub(crate) type DecodedSnapshot = (i64, ProducerTable, Vec<(i64, i64)>);

/// A producer entry from a snapshot's batch list, checked: offsets increasing and below the
/// snapshot's `offset`, sequences not negative. Its last timestamp is its newest batch's.
fn entry_of(
    pid: i64,
    epoch: i16,
    batches: &[(i32, i32, i64, i64, i64)],
    offset: i64,
) -> Result<ProducerEntry, String> {
    let mut entry = ProducerEntry {
        epoch,
        batches: VecDeque::with_capacity(batches.len()),
        ..ProducerEntry::default()
    };
    for &(first_seq, last_seq, base_offset, last_offset, max_timestamp) in batches {
        let prev_last = entry.batches.back().map_or(-1, |b| b.last_offset);
        if first_seq < 0
            || last_seq < 0
            || base_offset <= prev_last
            || last_offset < base_offset
            || last_offset >= offset
        {
            return Err(format!("bad batch for producer {pid}"));
        }
        entry.batches.push_back(ProducerBatch {
            first_seq,
            last_seq,
            base_offset,
            last_offset,
            max_timestamp,
        });
        entry.last_timestamp = max_timestamp;
    }
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(first: i32, last: i32, off: i64) -> ProducerBatch {
        bt(first, last, off, 1_000)
    }

    fn bt(first: i32, last: i32, off: i64, ts: i64) -> ProducerBatch {
        ProducerBatch {
            first_seq: first,
            last_seq: last,
            base_offset: off,
            last_offset: off + i64::from(last - first),
            max_timestamp: ts,
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

    /// A snapshot round-trips; a flipped byte, a truncation or garbage is an error, and so
    /// is a checksummed archive that says something impossible.
    #[test]
    fn snapshot_roundtrip_and_garbage() {
        let mut t = ProducerTable::default();
        for i in 0..7 {
            t.replay(7, 2, b(i * 3, i * 3 + 2, 100 + i64::from(i) * 3));
        }
        t.replay(9, 0, b(0, 0, 200));
        let e = t.encode_snapshot(201, &Transactions::default());
        let (off, back, _) = ProducerTable::decode_snapshot(&e).unwrap();
        assert_eq!(off, 201);
        assert_eq!(back.len(), 2);
        assert_eq!(back.get(7).unwrap().batches, t.get(7).unwrap().batches);
        assert_eq!(back.get(7).unwrap().epoch, 2);
        assert_eq!(back.get(9).unwrap().batches, t.get(9).unwrap().batches);
        for i in 0..e.len() {
            let mut x = e.clone();
            x[i] ^= 0x08;
            assert!(ProducerTable::decode_snapshot(&x).is_err(), "{i}");
            assert!(ProducerTable::decode_snapshot(&e[..i]).is_err());
        }
        assert!(ProducerTable::decode_snapshot(b"garbage garbage garbage").is_err());
        // A batch at or past the snapshot offset is refused even with a valid checksum.
        let bad = SnapshotFile {
            version: SNAPSHOT_VERSION,
            offset: 10,
            producers: vec![SnapshotProducer {
                producer_id: 1,
                epoch: 0,
                coordinator_epoch: -1,
                last_timestamp: 0,
                txn_first_offset: -1,
                batches: vec![(0, 0, 10, 10, 0)],
            }],
        };
        let archive = rkyv::to_bytes::<rancor::Error>(&bad).unwrap();
        let framed = frame_archive(SNAPSHOT_MAGIC, &archive);
        assert!(ProducerTable::decode_snapshot(&framed).is_err());
        // So is a version 1 file (before timestamps were stored): its archive has another
        // layout, and even one that passed the checks would carry the old version number.
        #[derive(rkyv::Archive, rkyv::Serialize)]
        struct V1Producer {
            producer_id: i64,
            epoch: i16,
            batches: Vec<(i32, i32, i64, i64)>,
        }
        #[derive(rkyv::Archive, rkyv::Serialize)]
        struct V1File {
            version: u32,
            offset: i64,
            producers: Vec<V1Producer>,
        }
        for n in [0, 1, 3] {
            let v1 = V1File {
                version: 1,
                offset: 100,
                producers: (0..n)
                    .map(|i| V1Producer {
                        producer_id: i,
                        epoch: 0,
                        batches: vec![(0, 4, i * 10, i * 10 + 4)],
                    })
                    .collect(),
            };
            let archive = rkyv::to_bytes::<rancor::Error>(&v1).unwrap();
            let framed = frame_archive(SNAPSHOT_MAGIC, &archive);
            assert!(ProducerTable::decode_snapshot(&framed).is_err(), "{n}");
        }
        assert_eq!(parse_snapshot_name(&snapshot_name(42)), Some(42));
        assert_eq!(parse_snapshot_name("42.snapshot"), None);
        assert_eq!(parse_snapshot_name("00000000000000000042.log"), None);
    }

    /// Expiry (Kafka's `producer.id.expiration.ms`): a producer whose newest batch's
    /// timestamp is `expiration` or more in the past is removed, one with a recent batch is
    /// kept (even if its older batches are old), and the removed one is then unknown, so its
    /// next batch is accepted at any sequence. The timestamps survive a snapshot.
    #[test]
    fn expiry() {
        let now = 10_000_000;
        let expiration = 1_000;
        let mut t = ProducerTable::default();
        t.replay(1, 0, bt(0, 4, 0, now - 5_000));
        t.replay(1, 0, bt(5, 9, 5, now - expiration));
        t.replay(2, 0, bt(0, 0, 10, now - 5_000));
        t.replay(2, 0, bt(1, 1, 11, now - expiration + 1));
        t.replay(3, 3, bt(0, 0, 12, -1));
        assert_eq!(t.get(1).unwrap().last_timestamp(), now - expiration);
        let none = Transactions::default();
        let (_, back, _) = ProducerTable::decode_snapshot(&t.encode_snapshot(13, &none)).unwrap();
        assert_eq!(back.get(2).unwrap().batches, t.get(2).unwrap().batches);

        // Nothing is idle long enough yet, except the producer without timestamps.
        assert_eq!(t.expire(now - 1, expiration, &none), 1);
        assert!(t.get(1).is_some() && t.get(3).is_none());
        // At exactly `expiration` since its last batch producer 1 goes; 2 stays.
        assert_eq!(t.expire(now, expiration, &none), 1);
        assert!(t.get(1).is_none());
        assert_eq!(t.get(2).unwrap().batches.len(), 2);
        assert_eq!(t.len(), 1);
        assert_eq!(t.expire(now, expiration, &none), 0);

        // Producer 1 is unknown now: any sequence, any epoch is accepted (before expiry
        // sequence 42 was out of order and epoch -1 fenced)...
        assert_eq!(ProducerTable::check(t.get(1), 0, 42, 42), SeqCheck::Accept);
        assert_eq!(ProducerTable::check(t.get(1), -1, 7, 7), SeqCheck::Accept);
        // ...and recording it starts a fresh entry, checked from there on.
        ProducerTable::record(t.entry_mut(1), 0, bt(42, 42, 13, now));
        assert_eq!(
            ProducerTable::check(t.get(1), 0, 44, 44),
            SeqCheck::OutOfOrder { expected: 43 }
        );
        // Producer 2 still is checked against its window.
        assert_eq!(
            ProducerTable::check(t.get(2), 0, 1, 1),
            SeqCheck::Duplicate {
                base_offset: 11,
                last_offset: 11
            }
        );
        assert_eq!(
            ProducerTable::check(t.get(2), 0, 5, 5),
            SeqCheck::OutOfOrder { expected: 2 }
        );
    }

    /// A version 2 snapshot (before transactions) still loads: its producers with their
    /// batches, no open transaction, no coordinator epoch. A version 3 one round-trips the
    /// transaction fields, including an entry with an epoch and no batch.
    #[test]
    fn snapshot_v2_loads_and_v3_keeps_transactions() {
        let v2 = SnapshotFileV2 {
            version: SNAPSHOT_VERSION_V2,
            offset: 20,
            producers: vec![SnapshotProducerV2 {
                producer_id: 4,
                epoch: 3,
                batches: vec![(0, 4, 10, 14, 777)],
            }],
        };
        let archive = rkyv::to_bytes::<rancor::Error>(&v2).unwrap();
        let (off, t, open) =
            ProducerTable::decode_snapshot(&frame_archive(SNAPSHOT_MAGIC_V2, &archive)).unwrap();
        assert_eq!((off, open), (20, vec![]));
        let e = t.get(4).unwrap();
        assert_eq!(
            (e.epoch, e.coordinator_epoch, e.last_timestamp),
            (3, -1, 777)
        );
        assert_eq!(ProducerTable::check(Some(e), 3, 5, 5), SeqCheck::Accept);

        let mut t = ProducerTable::default();
        t.replay(1, 0, b(0, 1, 0));
        ProducerTable::record_marker(t.entry_mut(2), 5, 9, 1_234);
        let mut txns = Transactions::default();
        txns.data(1, 0);
        let (_, back, open) = ProducerTable::decode_snapshot(&t.encode_snapshot(3, &txns)).unwrap();
        assert_eq!(open, vec![(1, 0)]);
        let e = back.get(2).unwrap();
        assert!(e.batches.is_empty());
        assert_eq!(
            (e.epoch, e.coordinator_epoch, e.last_timestamp),
            (5, 9, 1_234)
        );
        assert_eq!(
            ProducerTable::check(Some(e), 5, 3, 3),
            SeqCheck::OutOfOrder { expected: 0 }
        );
    }
}
