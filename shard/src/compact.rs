//! Log compaction for `cleanup.policy=compact` partitions: keep, for every key, only the
//! record with the highest offset; drop tombstones (null values) once they have been in the
//! cleaned part of the log for `delete_retention_ms`.
//!
//! # Layout of the code
//! This module is the cleaner itself: the plan ([`plan`]), the offset map, the record filter
//! and batch rewrite, the cleaned segment's writer and the swap's file steps ([`Cleaner`]).
//! It sees segments only through `Segment`'s methods and never the partition: the pass is
//! driven by `Partition::compact` (`partition/compaction.rs`), which hands it files and
//! decides under its I/O lock whether a swap still applies. Records are parsed by
//! `sluice_net::record_batch` (the parser the produce path validates with), and the cleaner's
//! checkpoint lives in `cleaner_checkpoint.rs`.
//!
//! # A pass (`Partition::compact`)
//! 1. Plan (in memory, cheap): the cleanable segments are the closed, sealed ones from the
//!    start of the log up to the first that is too young (`min_compaction_lag_ms`) or not yet
//!    durable; never the active one. The dirty part is what lies at or after the cleaner
//!    checkpoint's `cleaned_upto`. A pass runs when dirty bytes / cleanable bytes reach
//!    `min_cleanable_dirty_ratio`, or when the first dirty segment's newest record is older
//!    than `max_compaction_lag_ms`.
//! 2. Offset map: the dirty segments are read once; for each key (a 128-bit hash of it) the
//!    highest offset, and for each producer id the base offset of its last batch. The map is
//!    bounded by `ShardConfig::compaction_keys_max`: the pass stops at the segment where it
//!    passes that bound, and the rest waits for the next pass.
//! 3. Clean: the cleanable segments, in groups of adjacent segments whose sizes add up to at
//!    most `segment_bytes` (small neighbours are merged), are rewritten group by group. A
//!    record is kept if no later record has its key; a tombstone that is the latest for its
//!    key is dropped once its region was first cleaned more than `delete_retention_ms` ago;
//!    a record without a key is dropped (as Kafka's cleaner does; appends of such records are
//!    refused on compacted topics). A batch whose records all stay is copied byte for byte.
//!    Otherwise it is rewritten with its kept records: same base offset, lastOffsetDelta,
//!    timestamps, producer fields and attributes, new batchLength, recordCount and CRC (v2
//!    batches allow gaps between record offsets). A batch left with no record is removed,
//!    unless it may be the last batch of its producer id (or the in-memory producer table
//!    still remembers it): then an empty batch (0 records, same offsets and sequence) stays,
//!    so the idempotent-producer state rebuilt by a rescan is the same.
//! 4. Compressed batches (gzip, snappy raw or xerial-framed, lz4 frame, zstd) are decompressed
//!    (bounded by `ShardConfig::decompressed_batch_bytes_max`) and treated like plain ones; a
//!    rewritten batch is compressed again with the same codec and snappy framing (an empty
//!    one is written uncompressed, as Kafka does). Control batches, and batches that do not
//!    decode, are kept whole and their keys supersede nothing: nothing is ever lost.
//! 5. Transactions (issue 23): only segments below the last stable offset are cleanable
//!    (as Kafka's `cleanableOffsets`). Transaction markers are control batches: their record
//!    key is never taken for a data key. Records of aborted transactions never enter the
//!    offset map, so they never shadow a committed record, and they are removed (their
//!    batch dropped, or kept empty when it may be its producer's last, as any emptied
//!    batch), as Kafka's cleaner does. A marker goes (Kafka's `CleanedTransactionMetadata`)
//!    once no batch of its transaction is left before it and its region was first cleaned
//!    more than `delete_retention_ms` ago, as a tombstone ([`MarkerSweep`]). As Kafka's, the
//!    sweep follows the whole pass from the log start, across groups, so a marker never goes
//!    while its transaction's data is in an earlier group (a replay would see that
//!    transaction open forever). An ABORT marker's index entry goes with it: a
//!    read_committed client that got the entry would drop the producer's later batches until
//!    it met a marker.
//!
//! Offsets never change and the log start offset does not move. A group whose bytes would not
//! change is left in place.
//!
//! # Crash safety (per group)
//! 1. Write `<base>.log.cleaned`, fdatasync.
//! 2. Write `cleaner.checkpoint` (atomic) with `cleaned_upto` past the group: recovery then
//!    accepts offset gaps in these segments.
//! 3. Rename to `<base>.<end>.swap`, sync the directory: from here recovery finishes the swap.
//! 4. Remove the other source segments of the group and the old index files; sync.
//! 5. Rename the swap file to `<base>.log`; sync. Write the new index files.
//!
//! The group's transaction index is written as `<base>.txnindex.cleaned` before step 3 (only
//! if the group has or had aborted transactions) and renamed over `<base>.txnindex` in step
//! 4, so the index changes with the segments it describes.
//!
//! On open, [`recover_swap`] finishes any `.swap`: it removes every segment whose base is in
//! `(base, end)`, puts the group's cleaned transaction index in place, and renames the swap
//! file over `<base>.log`; then it removes `*.cleaned` files. So a crash at any step leaves
//! the old segment set or the new one, each with its own transaction index. A write error during
//! steps 3-5 makes the partition read-only (`Poisoned`) until it is reopened, since memory and
//! disk may then disagree.
//!
//! Readers hold `Rc` handles to segment files, so a fetch already reading an old segment keeps
//! reading it (the unlinked file stays readable); the segment map is switched in one borrow.
//! From step 3 on the group's segments are pinned (they hold their files open instead of
//! going through the shard's file cache), so no reader opens a path while it is renamed.
//! The batch cache drops everything below the end of a swapped group.

use std::collections::{HashMap, HashSet};
use std::hash::Hasher;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use sluice_net::record_batch::{self, Compression, RecordBatch, Records, peek_batch_size};

use crate::cleaner_checkpoint::CleanerState;
use crate::codec::{self, Framing};
use crate::config::LogConfig;
use crate::error::{Result, ShardError, io_err};
use crate::index::SparseIndex;
use crate::io::{OpenMode, Storage, StorageFile, read_file};
use crate::limits::COMPACTION_WRITE_BYTES;
use crate::segment::{Segment, segment_file};
use crate::transactions::marker_of;
use crate::txn_index;

const CLEANED_SUFFIX: &str = ".log.cleaned";
const TXN_CLEANED_SUFFIX: &str = ".txnindex.cleaned";
const SWAP_SUFFIX: &str = ".swap";

/// What one compaction pass did (summed over partitions by `Shard::compact_due`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactionStats {
    /// Passes that ran (0 when nothing was due).
    pub passes: u64,
    /// Source segments rewritten (swapped).
    pub segments_cleaned: u64,
    /// Segments they became.
    pub segments_written: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Bytes the swapped segments held before and after.
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub records_dropped: u64,
    pub tombstones_dropped: u64,
    pub batches_dropped: u64,
    /// Batches kept only as empty batches (producer state).
    pub batches_emptied: u64,
    /// Compressed or control batches kept whole without looking inside.
    pub batches_opaque: u64,
    /// Transaction markers removed (their transaction had no batch left).
    pub markers_dropped: u64,
}

impl CompactionStats {
    pub(crate) fn add(&mut self, o: &CompactionStats) {
        self.passes += o.passes;
        self.segments_cleaned += o.segments_cleaned;
        self.segments_written += o.segments_written;
        self.bytes_read += o.bytes_read;
        self.bytes_written += o.bytes_written;
        self.bytes_before += o.bytes_before;
        self.bytes_after += o.bytes_after;
        self.records_dropped += o.records_dropped;
        self.tombstones_dropped += o.tombstones_dropped;
        self.batches_dropped += o.batches_dropped;
        self.batches_emptied += o.batches_emptied;
        self.batches_opaque += o.batches_opaque;
        self.markers_dropped += o.markers_dropped;
    }
}

fn parse_log_name(n: &str) -> Option<i64> {
    n.strip_suffix(".log")
        .filter(|s| s.len() == 20)
        .and_then(|s| s.parse().ok())
}

/// `<base>.<end>.swap` -> (base, end).
fn parse_swap_name(n: &str) -> Option<(i64, i64)> {
    let stem = n.strip_suffix(SWAP_SUFFIX)?;
    let (a, b) = stem.split_once('.')?;
    if a.len() != 20 || b.len() != 20 {
        return None;
    }
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Where a compaction group starting at `base` writes its transaction index before the swap.
pub(crate) fn txn_cleaned_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{base:020}{TXN_CLEANED_SUFFIX}"))
}

/// Puts a group's cleaned transaction index in place of `<base>.txnindex`; an `empty` one
/// removes both (a segment without aborted transactions has no file). The caller syncs.
async fn install_txn_index<S: Storage>(
    storage: &S,
    dir: &Path,
    base: i64,
    empty: bool,
) -> Result<()> {
    let (from, to) = (
        txn_cleaned_path(dir, base),
        segment_file(dir, base, "txnindex"),
    );
    if empty {
        remove_if_present(storage, &to).await?;
        return remove_if_present(storage, &from).await;
    }
    storage
        .rename(&from, &to)
        .await
        .map_err(io_err("rename cleaned transaction index", &to))
}

fn swap_name(dir: &Path, base: i64, end: i64) -> PathBuf {
    dir.join(format!("{base:020}.{end:020}{SWAP_SUFFIX}"))
}

async fn remove_if_present<S: Storage>(storage: &S, path: &Path) -> Result<()> {
    match storage.remove(path).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("remove", path)(e)),
    }
}

/// Finishes an interrupted compaction swap, or drops an unfinished cleaned file. Called by
/// `Partition::open` before it lists segments.
pub(crate) async fn recover_swap<S: Storage>(storage: &S, dir: &Path) -> Result<()> {
    let names = storage
        .list_dir(dir)
        .await
        .map_err(io_err("list dir", dir))?;
    let mut changed = false;
    for n in &names {
        let Some((base, end)) = parse_swap_name(n) else {
            continue;
        };
        tracing::warn!(dir = %dir.display(), base, end, "finishing an interrupted compaction");
        for b in names.iter().filter_map(|m| parse_log_name(m)) {
            if b > base && b < end {
                // The group's transaction index was merged into `<base>.txnindex` before the
                // swap file existed.
                for ext in ["log", "index", "timeindex", "txnindex"] {
                    remove_if_present(storage, &segment_file(dir, b, ext)).await?;
                }
            }
        }
        for ext in ["index", "timeindex"] {
            remove_if_present(storage, &segment_file(dir, base, ext)).await?;
        }
        let txn_cleaned = txn_cleaned_path(dir, base);
        if names.iter().any(|m| dir.join(m) == txn_cleaned) {
            let empty = read_file(storage, &txn_cleaned)
                .await
                .ok()
                .and_then(|d| txn_index::decode(&d).ok())
                .is_some_and(|(_, entries)| entries.is_empty());
            install_txn_index(storage, dir, base, empty).await?;
        }
        storage
            .sync_dir(dir)
            .await
            .map_err(io_err("sync dir", dir))?;
        let to = segment_file(dir, base, "log");
        storage
            .rename(&dir.join(n), &to)
            .await
            .map_err(io_err("rename swap", &to))?;
        changed = true;
    }
    // Whatever `.cleaned` file is left belongs to a pass that had not reached its swap.
    for n in names
        .iter()
        .filter(|n| n.ends_with(CLEANED_SUFFIX) || n.ends_with(TXN_CLEANED_SUFFIX))
    {
        remove_if_present(storage, &dir.join(n)).await?;
        changed = true;
    }
    if changed {
        storage
            .sync_dir(dir)
            .await
            .map_err(io_err("sync dir", dir))?;
    }
    Ok(())
}

/// One record as the cleaner sees it: its whole encoding (a view into the batch's records
/// section, copied as is when the record stays) and the fields the filter looks at.
#[derive(Debug, Clone)]
struct Rec {
    encoding: Bytes,
    offset_delta: i32,
    key: Option<Bytes>,
    tombstone: bool,
}

/// A batch's records section, decompressed if need be.
struct Decoded {
    records: Bytes,
    codec: Compression,
    framing: Framing,
}

/// The records section of `b` (decompressed up to `max` bytes); `None` for control batches
/// and batches that do not decompress (those are kept whole).
fn decode(b: &RecordBatch, max: usize) -> Option<Decoded> {
    if b.is_control() {
        return None;
    }
    let (records, codec, framing) = codec::records_section(b, max).ok()?;
    Some(Decoded {
        records,
        codec,
        framing,
    })
}

/// The records of a batch's (decompressed) records section, parsed by
/// `sluice_net::record_batch`; `None` if any is malformed or their offset deltas do not
/// increase within the batch's range (such a batch is then kept whole).
fn parse_records(b: &RecordBatch, d: &Decoded) -> Option<Vec<Rec>> {
    let count = usize::try_from(b.record_count()).ok()?;
    let mut out = Vec::with_capacity(count.min(d.records.len() / 7 + 1));
    let mut prev_delta = -1i64;
    for r in Records::from_section(d.records.clone(), count).with_encoding() {
        let (encoding, r) = r.ok()?;
        let delta = i64::from(r.offset_delta);
        if delta <= prev_delta || r.offset_delta > b.last_offset_delta() {
            return None;
        }
        prev_delta = delta;
        out.push(Rec {
            encoding,
            offset_delta: r.offset_delta,
            tombstone: r.value.is_none(),
            key: r.key,
        });
    }
    Some(out)
}

/// A 128-bit digest of a key (two SipHash-1-3 runs with different prefixes); collisions are
/// as unlikely as with the MD5 Kafka's cleaner uses.
fn key_hash(key: &[u8]) -> u128 {
    let mut a = std::collections::hash_map::DefaultHasher::new();
    a.write_u8(0x5a);
    a.write(key);
    let mut b = std::collections::hash_map::DefaultHasher::new();
    b.write_u8(0xa5);
    b.write(key);
    (u128::from(a.finish()) << 64) | u128::from(b.finish())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Keep,
    Superseded,
    Tombstone,
    Keyless,
}

enum Filtered {
    Whole,
    Rewritten(Bytes),
    Dropped,
}

/// Rebuilds `b` with only the records in `keep` (possibly none): same header except
/// batchLength, recordCount and CRC; compressed again with the batch's codec (and snappy
/// framing). An empty batch is written uncompressed, as Kafka does. `None` if the codec
/// fails (the batch is then kept whole).
fn rebuild(b: &RecordBatch, d: &Decoded, keep: &[Rec]) -> Option<Bytes> {
    let src = b.bytes();
    let body: usize = keep.iter().map(|r| r.encoding.len()).sum();
    let mut records = Vec::with_capacity(body);
    for r in keep {
        records.extend_from_slice(&r.encoding);
    }
    let records = if keep.is_empty() || d.codec == Compression::None {
        records
    } else {
        codec::compress(d.codec, d.framing, &records).ok()?
    };
    let mut out = BytesMut::with_capacity(record_batch::HEADER_BYTES + records.len());
    out.extend_from_slice(&src[..record_batch::HEADER_BYTES]);
    out.extend_from_slice(&records);
    if keep.is_empty() {
        // Compression bits (0..=2) of the attributes cleared.
        out[22] &= !0x07;
    }
    let batch_length = (out.len() - record_batch::LOG_OVERHEAD_BYTES) as i32;
    out[8..12].copy_from_slice(&batch_length.to_be_bytes());
    out[57..61].copy_from_slice(&(keep.len() as i32).to_be_bytes());
    let crc = record_batch::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    Some(out.freeze())
}

/// The aborted transactions of the log, by producer: (first offset, marker offset) ranges.
/// A transactional data batch of a producer inside one of its ranges belongs to that aborted
/// transaction (a producer has one transaction at a time).
#[derive(Debug, Default)]
pub(crate) struct AbortedRanges {
    by_producer: HashMap<i64, Vec<(i64, i64)>>,
}

impl AbortedRanges {
    /// From (producer id, first offset, marker offset) triples.
    pub(crate) fn new(aborted: impl Iterator<Item = (i64, i64, i64)>) -> Self {
        let mut by_producer: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
        for (pid, first, last) in aborted {
            by_producer.entry(pid).or_default().push((first, last));
        }
        Self { by_producer }
    }

    /// Whether `b` is a data batch of an aborted transaction.
    fn holds(&self, b: &RecordBatch) -> bool {
        if !b.is_transactional() || b.is_control() {
            return false;
        }
        let o = b.base_offset();
        self.by_producer
            .get(&b.producer_id())
            .is_some_and(|r| r.iter().any(|&(first, last)| first <= o && o <= last))
    }
}

/// Offsets in the dirty part: the latest offset of each key (records of aborted transactions
/// left out, so they never shadow committed ones), the last data batch of each producer.
#[derive(Default)]
pub(crate) struct OffsetMap {
    keys: HashMap<u128, i64>,
    producers: HashMap<i64, i64>,
}

impl OffsetMap {
    /// Records the keys and the producer of one dirty batch. A transaction marker is not a
    /// producer's data batch (the producer table does not record it), and a control batch's
    /// record key is no data key.
    fn add_batch(&mut self, b: &RecordBatch, max_decoded: usize, aborted: &AbortedRanges) {
        if b.is_control() {
            return;
        }
        if b.producer_id() >= 0 {
            self.producers.insert(b.producer_id(), b.base_offset());
        }
        if aborted.holds(b) {
            return;
        }
        let Some(d) = decode(b, max_decoded) else {
            return;
        };
        let Some(recs) = parse_records(b, &d) else {
            return;
        };
        for rec in recs {
            if let Some(k) = &rec.key {
                let off = b.base_offset() + i64::from(rec.offset_delta);
                self.keys.insert(key_hash(k), off);
            }
        }
    }

    /// Distinct keys in the map.
    pub(crate) fn key_count(&self) -> usize {
        self.keys.len()
    }
}

/// A closed segment taking part in a pass.
#[derive(Debug)]
pub(crate) struct Src {
    pub(crate) base: i64,
    pub(crate) end: i64,
    pub(crate) size: u64,
    max_ts: i64,
    /// `Segment::id`: the swap refuses to replace a segment that is not this one any more.
    pub(crate) id: u64,
}

/// What a pass will clean: the cleanable segments, the first dirty one among them, and the
/// cleaner state the pass started from.
pub(crate) struct Plan {
    pub(crate) segs: Vec<Src>,
    pub(crate) dirty_from: usize,
    pub(crate) cleaner: CleanerState,
}

/// Decides whether a pass is due (memory only). `closed` are the log's segments before the
/// active one, in offset order; `cleanable_end` the partition's durable end offset or its
/// last stable offset, whichever is smaller (Kafka cleans below the LSO only: an open
/// transaction's records may still be aborted).
pub(crate) fn plan<'a, F: 'a>(
    closed: impl Iterator<Item = &'a Segment<F>>,
    cleanable_end: i64,
    cleaner: &CleanerState,
    cfg: &LogConfig,
    now_ms: i64,
) -> Option<Plan> {
    let mut segs = Vec::new();
    for s in closed {
        // Fully written and synced (its index files may still be pending: they are
        // rewritten by the swap anyway).
        let sealed = s.is_fully_written() && s.next_offset() <= cleanable_end;
        let young = cfg.min_compaction_lag_ms > 0
            && s.max_timestamp() > now_ms.saturating_sub(cfg.min_compaction_lag_ms);
        if !sealed || !s.has_file() || young {
            break;
        }
        segs.push(Src {
            base: s.base_offset(),
            end: s.next_offset(),
            size: s.size_bytes(),
            max_ts: s.max_timestamp(),
            id: s.id(),
        });
    }
    let cu = cleaner.cleaned_upto;
    let dirty_from = segs.iter().position(|s| s.end > cu)?;
    let total: u64 = segs.iter().map(|s| s.size).sum();
    let dirty: u64 = segs[dirty_from..].iter().map(|s| s.size).sum();
    if dirty == 0 {
        return None;
    }
    let forced = segs[dirty_from].max_ts < now_ms.saturating_sub(cfg.max_compaction_lag_ms);
    let ratio = dirty as f64 / total as f64;
    if !forced && ratio < cfg.min_cleanable_dirty_ratio {
        return None;
    }
    Some(Plan {
        segs,
        dirty_from,
        cleaner: cleaner.clone(),
    })
}

/// Reads a segment's batches in order, in chunks, checking framing and CRC.
struct SegReader<'a, F> {
    file: &'a F,
    path: PathBuf,
    size: u64,
    pos: u64,
    buf: Bytes,
    buf_pos: u64,
    chunk: usize,
}

impl<'a, F: StorageFile> SegReader<'a, F> {
    fn new(file: &'a F, path: PathBuf, size: u64, chunk: usize) -> Self {
        Self {
            file,
            path,
            size,
            pos: 0,
            buf: Bytes::new(),
            buf_pos: 0,
            chunk,
        }
    }

    fn corrupt(&self, detail: impl Into<String>) -> ShardError {
        ShardError::Corrupt {
            path: self.path.clone(),
            position: self.pos,
            detail: detail.into(),
        }
    }

    async fn next(&mut self) -> Result<Option<RecordBatch>> {
        while self.pos < self.size {
            let rel = (self.pos - self.buf_pos) as usize;
            let avail = self.buf.get(rel..).unwrap_or(&[]);
            let need = match peek_batch_size(avail) {
                Ok(Some(n)) if n <= avail.len() => {
                    let b = RecordBatch::new(self.buf.slice(rel..rel + n))
                        .map_err(|e| self.corrupt(e.to_string()))?;
                    b.validate_stored()
                        .map_err(|e| self.corrupt(e.to_string()))?;
                    self.pos += n as u64;
                    return Ok(Some(b));
                }
                Ok(Some(n)) => n,
                Ok(None) => record_batch::LOG_OVERHEAD_BYTES,
                Err(e) => return Err(self.corrupt(e.to_string())),
            };
            if self.pos + need as u64 > self.size {
                return Err(self.corrupt("batch runs past the segment end"));
            }
            let want = need.max(self.chunk).min((self.size - self.pos) as usize);
            self.buf = self
                .file
                .read_at(self.pos, want)
                .await
                .map_err(io_err("read", &self.path))?;
            self.buf_pos = self.pos;
            if self.buf.len() < need {
                return Err(self.corrupt("short read inside the segment"));
            }
        }
        Ok(None)
    }
}

/// Writes a cleaned segment with aligned writes and builds its sparse index.
pub(crate) struct SegWriter<F: StorageFile> {
    file: F,
    path: PathBuf,
    base: i64,
    interval: u64,
    pending: Vec<u8>,
    /// Bytes already written (a multiple of the alignment).
    flushed: u64,
    size: u64,
    index: SparseIndex,
    max_ts: i64,
}

/// A cleaned segment, written and synced, ready to be swapped in.
pub(crate) struct Cleaned<F> {
    pub(crate) file: F,
    pub(crate) size: u64,
    pub(crate) index: SparseIndex,
    pub(crate) max_timestamp: i64,
}

impl<F: StorageFile> SegWriter<F> {
    fn push(&mut self, batch: &RecordBatch, bytes: &[u8]) {
        self.max_ts = self.max_ts.max(batch.max_timestamp());
        self.index.on_batch(
            (batch.base_offset() - self.base) as u32,
            self.size as u32,
            bytes.len() as u64,
            self.max_ts,
            self.interval,
        );
        self.pending.extend_from_slice(bytes);
        self.size += bytes.len() as u64;
    }

    /// Writes the aligned part of what is pending (all of it, zero-padded, with `last`).
    async fn write_out(&mut self, last: bool) -> std::io::Result<()> {
        let align = self.file.alignment() as usize;
        let n = if last {
            self.pending.len().div_ceil(align) * align
        } else {
            self.pending.len() / align * align
        };
        if n == 0 {
            return Ok(());
        }
        let mut buf = self.file.alloc_buf(n);
        let have = self.pending.len().min(n);
        buf[..have].copy_from_slice(&self.pending[..have]);
        buf[have..].fill(0);
        self.file.write_at(buf, self.flushed).await?;
        self.pending.drain(..have);
        self.flushed += n as u64;
        Ok(())
    }

    /// Writes what is pending, cuts the file to its exact size and syncs it.
    pub(crate) async fn finish(mut self) -> Result<Cleaned<F>> {
        let path = self.path.clone();
        let r: std::io::Result<()> = async {
            self.write_out(true).await?;
            self.file.truncate(self.size).await?;
            self.file.fdatasync().await
        }
        .await;
        r.map_err(io_err("write cleaned segment", &path))?;
        Ok(Cleaned {
            file: self.file,
            size: self.size,
            index: self.index,
            max_timestamp: self.max_ts,
        })
    }
}

/// Splits `segs` into runs of adjacent segments to merge: sizes adding up to at most
/// `max_bytes`, offsets and positions fitting the index's 32-bit fields.
pub(crate) fn groups(segs: &[Src], max_bytes: u64) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0u64;
    for (i, s) in segs.iter().enumerate() {
        if i > start
            && (bytes + s.size > max_bytes.min(u64::from(u32::MAX))
                || s.end - segs[start].base > i64::from(u32::MAX))
        {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += s.size;
    }
    if start < segs.len() {
        out.push(start..segs.len());
    }
    out
}

/// Which transaction markers a pass removes (Kafka's `CleanedTransactionMetadata`, one for
/// the whole pass, across groups): it follows the kept batches in offset order.
#[derive(Debug, Default)]
pub(crate) struct MarkerSweep {
    /// Producers with a transactional batch kept since their last marker: their next
    /// marker stays.
    pending: HashSet<i64>,
    /// Markers removed in the group being cleaned: (offset, whether an ABORT).
    removed: Vec<(i64, bool)>,
}

impl MarkerSweep {
    /// The markers removed in the group just cleaned (the sweep goes on with the next one).
    pub(crate) fn take_removed(&mut self) -> Vec<(i64, bool)> {
        std::mem::take(&mut self.removed)
    }
}

/// Decides, record by record, what a group's rewrite keeps.
pub(crate) struct Filter<'a> {
    pub(crate) map: &'a OffsetMap,
    /// The cleaner state the pass started from (when each region was first cleaned).
    pub(crate) cleaner: &'a CleanerState,
    pub(crate) now_ms: i64,
    pub(crate) delete_retention_ms: i64,
    pub(crate) decompressed_max: usize,
    /// Base offsets of the batches the partition's producer table remembers.
    pub(crate) remembered: HashSet<i64>,
    /// Aborted transactions: their data records are all dropped.
    pub(crate) aborted: &'a AbortedRanges,
    /// The markers of the pass (it spans groups).
    pub(crate) sweep: &'a std::cell::RefCell<MarkerSweep>,
}

impl Filter<'_> {
    fn verdict(&self, off: i64, key: Option<&[u8]>, tombstone: bool) -> Verdict {
        let Some(k) = key else {
            return Verdict::Keyless;
        };
        if self
            .map
            .keys
            .get(&key_hash(k))
            .is_some_and(|&latest| off < latest)
        {
            return Verdict::Superseded;
        }
        if tombstone && self.horizon_passed(off) {
            Verdict::Tombstone
        } else {
            Verdict::Keep
        }
    }

    /// Whether the region holding `off` was first cleaned more than `delete_retention_ms`
    /// ago (Kafka's delete horizon, for tombstones and markers).
    fn horizon_passed(&self, off: i64) -> bool {
        self.cleaner
            .cleaned_at(off)
            .is_some_and(|t| self.now_ms.saturating_sub(t) > self.delete_retention_ms)
    }

    /// Whether `b`, once emptied, must stay as an empty batch: it may be the last batch of
    /// its producer id, or the in-memory producer table still remembers it.
    fn keep_empty(&self, b: &RecordBatch) -> bool {
        let pid = b.producer_id();
        pid >= 0
            && (self.remembered.contains(&b.base_offset())
                || self
                    .map
                    .producers
                    .get(&pid)
                    .is_none_or(|&last| b.base_offset() >= last))
    }

    /// What becomes of batch `b`.
    fn batch(&self, b: &RecordBatch, stats: &mut CompactionStats) -> Filtered {
        if b.is_control() {
            return self.control_batch(b, stats);
        }
        let out = self.data_batch(b, stats);
        if b.is_transactional() && b.producer_id() >= 0 && !matches!(out, Filtered::Dropped) {
            self.sweep.borrow_mut().pending.insert(b.producer_id());
        }
        out
    }

    /// A transaction marker goes when no batch of its transaction is left before it and its
    /// delete horizon has passed; other control batches stay.
    fn control_batch(&self, b: &RecordBatch, stats: &mut CompactionStats) -> Filtered {
        let Some(marker) = marker_of(b) else {
            stats.batches_opaque += 1;
            return Filtered::Whole;
        };
        let mut sweep = self.sweep.borrow_mut();
        if sweep.pending.remove(&b.producer_id()) || !self.horizon_passed(b.base_offset()) {
            stats.batches_opaque += 1;
            return Filtered::Whole;
        }
        sweep.removed.push((b.base_offset(), !marker.commit));
        stats.markers_dropped += 1;
        stats.batches_dropped += 1;
        Filtered::Dropped
    }

    /// What becomes of data batch `b`.
    fn data_batch(&self, b: &RecordBatch, stats: &mut CompactionStats) -> Filtered {
        let keep_empty = self.keep_empty(b);
        let decoded = decode(b, self.decompressed_max);
        let recs = decoded.as_ref().and_then(|d| parse_records(b, d));
        let (Some(d), Some(recs)) = (decoded, recs) else {
            stats.batches_opaque += 1;
            return Filtered::Whole;
        };
        let mut keep = Vec::with_capacity(recs.len());
        let aborted = self.aborted.holds(b);
        for rec in &recs {
            if aborted {
                stats.records_dropped += 1;
                continue;
            }
            let off = b.base_offset() + i64::from(rec.offset_delta);
            match self.verdict(off, rec.key.as_deref(), rec.tombstone) {
                Verdict::Keep => keep.push(rec.clone()),
                Verdict::Tombstone => {
                    stats.tombstones_dropped += 1;
                    stats.records_dropped += 1;
                }
                Verdict::Superseded | Verdict::Keyless => stats.records_dropped += 1,
            }
        }
        if keep.len() == recs.len() && (!recs.is_empty() || keep_empty) {
            return Filtered::Whole;
        }
        if keep.is_empty() && !keep_empty {
            stats.batches_dropped += 1;
            return Filtered::Dropped;
        }
        match rebuild(b, &d, &keep) {
            Some(bytes) => {
                if keep.is_empty() {
                    stats.batches_emptied += 1;
                }
                Filtered::Rewritten(bytes)
            }
            None => {
                stats.batches_opaque += 1;
                Filtered::Whole
            }
        }
    }
}

/// The file side of a pass on one partition directory: reading source segments, writing the
/// cleaned one, and the swap's renames. Knows nothing of the partition's state: the caller
/// hands it files and decides, under its I/O lock, whether a swap still applies.
pub(crate) struct Cleaner<'a, S: Storage> {
    pub(crate) storage: &'a S,
    pub(crate) dir: &'a Path,
    /// Bytes read at once from a source segment.
    pub(crate) chunk: usize,
    pub(crate) decompressed_max: usize,
    pub(crate) index_interval_bytes: u64,
}

impl<S: Storage> Cleaner<'_, S> {
    /// Adds the batches of dirty segment `s` at or above `cleaned_upto` to `map`.
    pub(crate) async fn map_segment(
        &self,
        map: &mut OffsetMap,
        (file, s): (&S::File, &Src),
        cleaned_upto: i64,
        aborted: &AbortedRanges,
        stats: &mut CompactionStats,
    ) -> Result<()> {
        let path = segment_file(self.dir, s.base, "log");
        let mut r = SegReader::new(file, path, s.size, self.chunk);
        while let Some(b) = r.next().await? {
            stats.bytes_read += b.size_bytes() as u64;
            if b.base_offset() >= cleaned_upto {
                map.add_batch(&b, self.decompressed_max, aborted);
                self.storage.yield_if_needed().await;
            }
        }
        Ok(())
    }

    /// The path a group starting at `base` is cleaned into.
    pub(crate) fn cleaned_path(&self, base: i64) -> PathBuf {
        self.dir.join(format!("{base:020}{CLEANED_SUFFIX}"))
    }

    /// Creates the cleaned file of a group starting at `base`.
    pub(crate) async fn create_output(&self, base: i64) -> Result<SegWriter<S::File>> {
        let path = self.cleaned_path(base);
        let file = self
            .storage
            .open(&path, OpenMode::CreateTruncate)
            .await
            .map_err(io_err("create cleaned segment", &path))?;
        Ok(SegWriter {
            file,
            path,
            base,
            interval: self.index_interval_bytes,
            pending: Vec::new(),
            flushed: 0,
            size: 0,
            index: SparseIndex::default(),
            max_ts: -1,
        })
    }

    /// Removes the cleaned file of a group starting at `base`, if any.
    pub(crate) async fn discard_output(&self, base: i64) -> Result<()> {
        remove_if_present(self.storage, &self.cleaned_path(base)).await
    }

    /// Streams the batches of source segment `s` through `filter` into `w`; true if anything
    /// changed. The batches' offsets must lie in `s`'s range and increase.
    pub(crate) async fn filter_segment(
        &self,
        filter: &Filter<'_>,
        file: &S::File,
        s: &Src,
        w: &mut SegWriter<S::File>,
        stats: &mut CompactionStats,
    ) -> Result<bool> {
        let path = segment_file(self.dir, s.base, "log");
        let mut r = SegReader::new(file, path.clone(), s.size, self.chunk);
        let mut expect = s.base;
        let mut changed = false;
        while let Some(b) = r.next().await? {
            if b.base_offset() < expect || b.last_offset() >= s.end {
                return Err(r.corrupt(format!(
                    "batch offsets {}..={} outside the expected {expect}..{}",
                    b.base_offset(),
                    b.last_offset(),
                    s.end
                )));
            }
            expect = b.last_offset() + 1;
            stats.bytes_read += b.size_bytes() as u64;
            match filter.batch(&b, stats) {
                Filtered::Whole => w.push(&b, b.bytes()),
                Filtered::Rewritten(bytes) => {
                    changed = true;
                    w.push(&b, &bytes);
                }
                Filtered::Dropped => changed = true,
            }
            if w.pending.len() >= COMPACTION_WRITE_BYTES {
                w.write_out(false)
                    .await
                    .map_err(io_err("write cleaned segment", &path))?;
            }
            self.storage.yield_if_needed().await;
        }
        Ok(changed)
    }

    /// Steps 3 to 5 of a swap (see "Crash safety"): the cleaned file of the group `base..end`
    /// becomes `<base>.log`, and the group's other segments and old index files go.
    /// `txn_cleaned`: the group's transaction index was written to [`txn_cleaned_path`]
    /// (with no entry, when `Some(true)`).
    pub(crate) async fn swap_files(
        &self,
        group: &[Src],
        (base, end): (i64, i64),
        txn_cleaned: Option<bool>,
    ) -> Result<()> {
        let (storage, dir) = (self.storage, self.dir);
        let sync = || async { storage.sync_dir(dir).await.map_err(io_err("sync dir", dir)) };
        let cleaned = self.cleaned_path(base);
        let swap = swap_name(dir, base, end);
        storage
            .rename(&cleaned, &swap)
            .await
            .map_err(io_err("rename cleaned segment", &swap))?;
        sync().await?;
        for s in &group[1..] {
            for ext in ["log", "index", "timeindex", "txnindex"] {
                remove_if_present(storage, &segment_file(dir, s.base, ext)).await?;
            }
        }
        for ext in ["index", "timeindex"] {
            remove_if_present(storage, &segment_file(dir, base, ext)).await?;
        }
        if let Some(empty) = txn_cleaned {
            install_txn_index(storage, dir, base, empty).await?;
        }
        sync().await?;
        let log = segment_file(dir, base, "log");
        storage
            .rename(&swap, &log)
            .await
            .map_err(io_err("rename swap segment", &log))?;
        sync().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_net::record_batch::build::{BatchSpec, batch};

    /// A rewritten batch keeps its header fields, holds the kept records with their original
    /// deltas, and passes the stored-batch check; keyless records are found.
    #[test]
    fn rebuild_keeps_offsets() {
        let b = batch(
            &BatchSpec {
                base_offset: 40,
                producer_id: 9,
                producer_epoch: 1,
                base_sequence: 5,
                ..BatchSpec::default()
            },
            &[
                (Some(b"a"), Some(b"1")),
                (Some(b"b"), None),
                (None, Some(b"3")),
                (Some(b"a"), Some(b"4")),
            ],
        );
        let b = RecordBatch::new(b).unwrap();
        let d = decode(&b, 1 << 20).unwrap();
        let recs = parse_records(&b, &d).unwrap();
        assert_eq!(recs.len(), 4);
        assert!(recs[1].tombstone && !recs[0].tombstone);
        assert!(recs[2].key.is_none());
        let keep = [recs[1].clone(), recs[3].clone()];
        let out = RecordBatch::new(rebuild(&b, &d, &keep).unwrap()).unwrap();
        out.validate_stored().unwrap();
        assert_eq!(out.base_offset(), 40);
        assert_eq!(out.last_offset(), 43);
        assert_eq!(out.record_count(), 2);
        assert_eq!(out.base_sequence(), 5);
        let kept: Vec<_> = out.records().unwrap().map(|r| r.unwrap()).collect();
        assert_eq!(kept[0].offset_delta, 1);
        assert_eq!(kept[1].offset_delta, 3);
        assert_eq!(kept[1].value.as_deref(), Some(&b"4"[..]));
        let empty = RecordBatch::new(rebuild(&b, &d, &[]).unwrap()).unwrap();
        empty.validate_stored().unwrap();
        assert_eq!((empty.record_count(), empty.last_offset()), (0, 43));
        assert_eq!(key_hash(b"a"), key_hash(b"a"));
        assert_ne!(key_hash(b"a"), key_hash(b"b"));
    }

    /// `b` (uncompressed) with its records section compressed by `codec`.
    fn compressed(b: &Bytes, codec: Compression, framing: Framing) -> Bytes {
        let bits = match codec {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        };
        let mut v = b[..record_batch::HEADER_BYTES].to_vec();
        v.extend(codec::compress(codec, framing, &b[record_batch::HEADER_BYTES..]).unwrap());
        v[22] |= bits;
        let len = (v.len() - 12) as i32;
        v[8..12].copy_from_slice(&len.to_be_bytes());
        let crc = record_batch::crc32c(&v[21..]);
        v[17..21].copy_from_slice(&crc.to_be_bytes());
        Bytes::from(v)
    }

    /// Compressed batches of every codec are compacted like plain ones and rewritten with
    /// the same codec (and snappy framing); keyless records inside them are refused.
    #[test]
    #[allow(clippy::type_complexity)]
    fn compressed_batches_compact_with_their_codec() {
        use crate::{FakeDisk, Faults, LogConfig, Shard, ShardConfig, ShardError};
        use futures_lite::future::block_on;
        let cases = [
            (Compression::Gzip, Framing::Plain),
            (Compression::Snappy, Framing::Plain),
            (Compression::Snappy, Framing::Xerial),
            (Compression::Lz4, Framing::Plain),
            (Compression::Zstd, Framing::Plain),
        ];
        for (codec, framing) in cases {
            let disk = FakeDisk::new(1, Faults::default(), 1_000_000);
            block_on(async {
                let s = Shard::open(disk.clone(), Path::new("/d"), ShardConfig::default())
                    .await
                    .unwrap();
                let cfg = LogConfig {
                    compact: true,
                    segment_bytes: 1500,
                    preallocate_bytes: 4096,
                    min_cleanable_dirty_ratio: 0.0,
                    ..LogConfig::default()
                };
                let p = s.create_partition("z", 0, cfg).await.unwrap();
                let keyless = batch(&BatchSpec::default(), &[(None, Some(b"v"))]);
                match p.append(compressed(&keyless, codec, framing)).await {
                    Err(ShardError::RecordErrors { errors, .. }) if errors.len() == 1 => {}
                    other => panic!("{codec:?}: expected a keyless record error, got {other:?}"),
                }
                let mut last: HashMap<Vec<u8>, (i64, Vec<u8>)> = HashMap::new();
                for i in 0..40 {
                    let recs: Vec<(Vec<u8>, Vec<u8>)> = (0..5)
                        .map(|j| {
                            let k = format!("k{}", (i * 5 + j) % 7).into_bytes();
                            (k, format!("{codec:?}-{i}-{j}").into_bytes())
                        })
                        .collect();
                    let refs: Vec<(Option<&[u8]>, Option<&[u8]>)> = recs
                        .iter()
                        .map(|(k, v)| (Some(k.as_slice()), Some(v.as_slice())))
                        .collect();
                    let raw = batch(&BatchSpec::default(), &refs);
                    let info = p.append(compressed(&raw, codec, framing)).await.unwrap();
                    for (j, (k, v)) in recs.into_iter().enumerate() {
                        last.insert(k, (info.base_offset + j as i64, v));
                    }
                }
                p.roll().await.unwrap();
                let st = p.compact(1_000_000).await.unwrap();
                assert!(st.records_dropped > 150 && st.batches_opaque == 0, "{st:?}");
                let r = p.read(0, 1 << 20).await.unwrap();
                let mut seen: HashMap<Vec<u8>, (i64, Vec<u8>)> = HashMap::new();
                for b in r.batches {
                    let b = RecordBatch::new(b).unwrap();
                    b.validate_stored().unwrap();
                    if b.record_count() == 0 {
                        continue;
                    }
                    assert_eq!(b.compression(), Ok(codec));
                    let d = decode(&b, 1 << 20).unwrap();
                    assert_eq!(d.framing, framing);
                    // The same records as an uncompressed batch, parsed by the net crate.
                    let mut plain = b.bytes()[..record_batch::HEADER_BYTES].to_vec();
                    plain[22] &= !0x07;
                    plain.extend_from_slice(&d.records);
                    let len = (plain.len() - 12) as i32;
                    plain[8..12].copy_from_slice(&len.to_be_bytes());
                    let plain = RecordBatch::new(Bytes::from(plain)).unwrap();
                    for rec in plain.records().unwrap() {
                        let rec = rec.unwrap();
                        let k = rec.key.unwrap().to_vec();
                        let off = b.base_offset() + i64::from(rec.offset_delta);
                        let v = rec.value.unwrap().to_vec();
                        assert!(seen.insert(k, (off, v)).is_none(), "{codec:?}: key twice");
                    }
                }
                assert_eq!(seen, last, "{codec:?}");
            });
        }
    }
}
