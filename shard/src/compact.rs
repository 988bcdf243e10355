//! Log compaction for `cleanup.policy=compact` partitions: keep, for every key, only the
//! record with the highest offset; drop tombstones (null values) once they have been in the
//! cleaned part of the log for `delete_retention_ms`.
//!
//! # A pass ([`Partition::compact`])
//! 1. Plan (in memory, cheap): the cleanable segments are the closed, sealed ones from the
//!    start of the log up to the first that is too young (`min_compaction_lag_ms`) or not yet
//!    durable; never the active one. The dirty part is what lies at or after the cleaner checkpoint's
//!    `cleaned_upto`. A pass runs when dirty bytes / cleanable bytes reach
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
//! On open, [`recover_swap`] removes `*.cleaned` files and finishes any `.swap`: it removes
//! every segment whose base is in `(base, end)` and renames the swap file over `<base>.log`.
//! So a crash at any step leaves the old segment set or the new one. A write error during
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
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use sluice_net::record_batch::{self, Compression, RecordBatch, peek_batch_size};

use crate::codec::{self, Framing};
use crate::error::{Result, ShardError, io_err};
use crate::index::SparseIndex;
use crate::io::{OpenMode, Storage, StorageFile, read_file, write_file_atomic};
use crate::partition::{Partition, Segment, SegmentFile, segment_file};

/// The cleaner's checkpoint file in a partition directory.
pub(crate) const CHECKPOINT_FILE: &str = "cleaner.checkpoint";
const CHECKPOINT_MAGIC: &[u8; 4] = b"SLCC";
const CLEANED_SUFFIX: &str = ".log.cleaned";
const SWAP_SUFFIX: &str = ".swap";
/// Regions remembered for tombstone ages; older ones merge (keeping tombstones longer).
const REGIONS_MAX: usize = 64;
/// Output bytes gathered before one write of a cleaned segment.
const WRITE_CHUNK: usize = 1 << 20;

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
    }
}

/// The cleaner's memory of what it cleaned and when (the checkpoint file's content).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CleanerState {
    /// Offsets below this were cleaned at least once; at and above is the dirty part.
    pub(crate) cleaned_upto: i64,
    /// `(end, first cleaned at ms)`: offsets below `end` (and at or above the previous
    /// entry's `end`) were first cleaned then. Both fields increase.
    pub(crate) regions: Vec<(i64, i64)>,
}

impl CleanerState {
    /// When the region holding `offset` was first cleaned; `None` if it is dirty.
    pub(crate) fn cleaned_at(&self, offset: i64) -> Option<i64> {
        if offset >= self.cleaned_upto {
            return None;
        }
        let i = self.regions.partition_point(|r| r.0 <= offset);
        self.regions.get(i).map(|r| r.1)
    }

    /// Records that everything below `end` is cleaned, the new part at `now_ms`.
    pub(crate) fn advance(&mut self, end: i64, now_ms: i64, delete_retention_ms: i64) {
        if end <= self.cleaned_upto {
            return;
        }
        self.cleaned_upto = end;
        let at = self.regions.last().map_or(now_ms, |r| r.1.max(now_ms));
        match self.regions.last_mut() {
            Some(last) if last.1 == at => last.0 = end,
            _ => self.regions.push((end, at)),
        }
        // Regions old enough that their tombstones may all go are merged into one.
        let expired = self
            .regions
            .partition_point(|r| now_ms.saturating_sub(r.1) > delete_retention_ms);
        if expired > 1 {
            self.regions.drain(..expired - 1);
        }
        while self.regions.len() > REGIONS_MAX {
            // Its offsets take the next region's (later) time: tombstones stay longer.
            self.regions.remove(0);
        }
    }

    /// Forgets cleaning at or after `offset` (after a truncation).
    pub(crate) fn truncate(&mut self, offset: i64) {
        if self.cleaned_upto <= offset {
            return;
        }
        self.cleaned_upto = offset;
        let i = self.regions.partition_point(|r| r.0 < offset);
        if i < self.regions.len() {
            self.regions[i].0 = offset;
            self.regions.truncate(i + 1);
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(8 + 16 * self.regions.len());
        body.extend_from_slice(&self.cleaned_upto.to_be_bytes());
        for (end, at) in &self.regions {
            body.extend_from_slice(&end.to_be_bytes());
            body.extend_from_slice(&at.to_be_bytes());
        }
        let mut out = Vec::with_capacity(16 + body.len());
        out.extend_from_slice(CHECKPOINT_MAGIC);
        out.extend_from_slice(&(self.regions.len() as u32).to_be_bytes());
        out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        out.extend_from_slice(&1u32.to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    fn decode(data: &[u8]) -> Option<Self> {
        if data.len() < 24 || &data[..4] != CHECKPOINT_MAGIC {
            return None;
        }
        let word = |i: usize| u32::from_be_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);
        let long = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&data[i..i + 8]);
            i64::from_be_bytes(a)
        };
        let count = word(4) as usize;
        if word(12) != 1 || data.len() != 24 + count.checked_mul(16)? {
            return None;
        }
        if crc32c::crc32c(&data[16..]) != word(8) {
            return None;
        }
        let mut s = CleanerState {
            cleaned_upto: long(16),
            regions: Vec::with_capacity(count),
        };
        for i in 0..count {
            let r = (long(24 + 16 * i), long(32 + 16 * i));
            if s.regions.last().is_some_and(|p| r.0 <= p.0 || r.1 < p.1) {
                return None;
            }
            s.regions.push(r);
        }
        if s.cleaned_upto < 0 || s.regions.last().is_some_and(|r| r.0 > s.cleaned_upto) {
            return None;
        }
        Some(s)
    }
}

/// Reads the cleaner checkpoint of a partition directory. Returns the state and the offset
/// below which segments may have compaction gaps: `cleaned_upto`, or every offset if the file
/// exists but is unreadable (then the cleaner starts over, which is always safe).
pub(crate) async fn load_checkpoint<S: Storage>(
    storage: &S,
    dir: &Path,
    names: &[String],
) -> (CleanerState, i64) {
    if !names.iter().any(|n| n == CHECKPOINT_FILE) {
        return (CleanerState::default(), 0);
    }
    let path = dir.join(CHECKPOINT_FILE);
    match read_file(storage, &path)
        .await
        .ok()
        .and_then(|d| CleanerState::decode(&d))
    {
        Some(s) => {
            let below = s.cleaned_upto;
            (s, below)
        }
        None => {
            tracing::warn!(path = %path.display(), "unreadable cleaner checkpoint; recleaning");
            (CleanerState::default(), i64::MAX)
        }
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
    for n in names.iter().filter(|n| n.ends_with(CLEANED_SUFFIX)) {
        remove_if_present(storage, &dir.join(n)).await?;
        changed = true;
    }
    for n in &names {
        let Some((base, end)) = parse_swap_name(n) else {
            continue;
        };
        tracing::warn!(dir = %dir.display(), base, end, "finishing an interrupted compaction");
        for b in names.iter().filter_map(|m| parse_log_name(m)) {
            if b > base && b < end {
                for ext in ["log", "index", "timeindex"] {
                    remove_if_present(storage, &segment_file(dir, b, ext)).await?;
                }
            }
        }
        for ext in ["index", "timeindex"] {
            remove_if_present(storage, &segment_file(dir, base, ext)).await?;
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
    if changed {
        storage
            .sync_dir(dir)
            .await
            .map_err(io_err("sync dir", dir))?;
    }
    Ok(())
}

/// One record's place in an uncompressed batch.
#[derive(Debug, Clone, Copy)]
struct Rec {
    /// Byte range of the whole record (its length varint included).
    start: usize,
    end: usize,
    offset_delta: i32,
    key: Option<(usize, usize)>,
    tombstone: bool,
}

fn read_varlong(b: &[u8], pos: &mut usize) -> Option<i64> {
    let mut raw: u64 = 0;
    for i in 0..10 {
        let byte = *b.get(*pos)?;
        *pos += 1;
        raw |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(((raw >> 1) as i64) ^ -((raw & 1) as i64));
        }
    }
    None
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
    let codec = b.compression().ok()?;
    let raw = b.bytes().slice(record_batch::HEADER_BYTES..);
    if codec == Compression::None {
        return Some(Decoded {
            records: raw,
            codec,
            framing: Framing::Plain,
        });
    }
    let (records, framing) = codec::decompress(codec, &raw, max).ok()?;
    Some(Decoded {
        records: Bytes::from(records),
        codec,
        framing,
    })
}

/// The records of a batch's (decompressed) records section with their byte ranges in it;
/// `None` if any is malformed (such a batch is then kept whole).
fn parse_records(b: &RecordBatch, bytes: &[u8]) -> Option<Vec<Rec>> {
    let count = usize::try_from(b.record_count()).ok()?;
    let mut out = Vec::with_capacity(count.min(bytes.len() / 7 + 1));
    let mut pos = 0;
    let mut prev_delta = -1i64;
    for _ in 0..count {
        let start = pos;
        let len = usize::try_from(read_varlong(bytes, &mut pos)?).ok()?;
        let end = pos.checked_add(len).filter(|&e| e <= bytes.len())?;
        let body = &bytes[..end];
        let mut q = pos + 1; // attributes
        read_varlong(body, &mut q)?; // timestamp delta
        let delta = read_varlong(body, &mut q)?;
        if delta <= prev_delta || delta > i64::from(b.last_offset_delta()) {
            return None;
        }
        prev_delta = delta;
        let klen = read_varlong(body, &mut q)?;
        let key = if klen == -1 {
            None
        } else {
            let k = usize::try_from(klen).ok()?;
            let ke = q.checked_add(k).filter(|&e| e <= end)?;
            let r = (q, ke);
            q = ke;
            Some(r)
        };
        let vlen = read_varlong(body, &mut q)?;
        if vlen < -1 || q > end {
            return None;
        }
        out.push(Rec {
            start,
            end,
            offset_delta: i32::try_from(delta).ok()?,
            key,
            tombstone: vlen == -1,
        });
        pos = end;
    }
    (pos == bytes.len()).then_some(out)
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
    let body: usize = keep.iter().map(|r| r.end - r.start).sum();
    let mut records = Vec::with_capacity(body);
    for r in keep {
        records.extend_from_slice(&d.records[r.start..r.end]);
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
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    Some(out.freeze())
}

/// Offsets in the dirty part: the latest offset of each key, the last batch of each producer.
#[derive(Default)]
struct OffsetMap {
    keys: HashMap<u128, i64>,
    producers: HashMap<i64, i64>,
}

/// A closed segment taking part in a pass.
struct Src {
    base: i64,
    end: i64,
    size: u64,
    max_ts: i64,
    /// `Segment::id`: the swap refuses to replace a segment that is not this one any more.
    id: u64,
}

struct Plan {
    segs: Vec<Src>,
    dirty_from: usize,
    cleaner: CleanerState,
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
struct SegWriter<F: StorageFile> {
    file: F,
    base: i64,
    interval: u64,
    pending: Vec<u8>,
    /// Bytes already written (a multiple of the alignment).
    flushed: u64,
    size: u64,
    index: SparseIndex,
    max_ts: i64,
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

    async fn finish(mut self) -> std::io::Result<(F, u64, SparseIndex, i64)> {
        self.write_out(true).await?;
        self.file.truncate(self.size).await?;
        self.file.fdatasync().await?;
        Ok((self.file, self.size, self.index, self.max_ts))
    }
}

/// Splits `segs` into runs of adjacent segments to merge: sizes adding up to at most
/// `max_bytes`, offsets and positions fitting the index's 32-bit fields.
fn groups(segs: &[Src], max_bytes: u64) -> Vec<std::ops::Range<usize>> {
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

/// Clears the partition's "compacting" flag on every exit path.
struct Running<'a>(&'a std::cell::Cell<bool>);
impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

impl<S: Storage> Partition<S> {
    /// Whether [`Partition::compact`] would do work now (cheap: memory only).
    pub fn compaction_due(&self, now_ms: i64) -> bool {
        self.inner.config.compact && !self.inner.compacting.get() && self.plan(now_ms).is_some()
    }

    /// Runs one compaction pass if one is due (see the module docs of `compact.rs`): the
    /// closed segments are rewritten keeping the last record per key; the active segment is
    /// never touched. Returns what it did (`passes == 0` when nothing was due, the topic is
    /// not compacted, or another pass is running). Appends and reads go on meanwhile; only
    /// the file swaps hold the partition's I/O lock. An I/O error during a swap makes the
    /// partition read-only (`Poisoned`) until it is reopened.
    pub async fn compact(&self, now_ms: i64) -> Result<crate::CompactionStats> {
        let inner = &*self.inner;
        let mut stats = CompactionStats::default();
        if !inner.config.compact || inner.compacting.get() {
            return Ok(stats);
        }
        self.check_usable()?;
        inner.compacting.set(true);
        let _running = Running(&inner.compacting);
        let Some(mut plan) = self.plan(now_ms) else {
            return Ok(stats);
        };
        stats.passes = 1;
        let map = self.build_offset_map(&mut plan, &mut stats).await?;
        for g in groups(&plan.segs, inner.config.segment_bytes) {
            let swapped = self
                .clean_group(&plan.segs[g], &plan.cleaner, &map, now_ms, &mut stats)
                .await?;
            if !swapped {
                break;
            }
        }
        Ok(stats)
    }

    fn plan(&self, now_ms: i64) -> Option<Plan> {
        let inner = &*self.inner;
        let cfg = &inner.config;
        let st = inner.state.borrow();
        if st.closed || st.poisoned.is_some() {
            return None;
        }
        let active = *st.segments.keys().next_back()?;
        let mut segs = Vec::new();
        for (&base, s) in st.segments.range(..active) {
            // Fully written and synced (its index files may still be pending: they are
            // rewritten by the swap anyway).
            let sealed = s.written_bytes == s.size_bytes && s.next_offset <= st.durable_end_offset;
            let young = cfg.min_compaction_lag_ms > 0
                && s.max_timestamp > now_ms.saturating_sub(cfg.min_compaction_lag_ms);
            if !sealed || !s.file.exists() || young {
                break;
            }
            segs.push(Src {
                base,
                end: s.next_offset,
                size: s.size_bytes,
                max_ts: s.max_timestamp,
                id: s.id,
            });
        }
        let cu = st.cleaner.cleaned_upto;
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
            cleaner: st.cleaner.clone(),
        })
    }

    /// Reads the dirty segments into the offset map; stops (shortening the plan) at the
    /// segment where the map passes `compaction_keys_max` keys.
    async fn build_offset_map(
        &self,
        plan: &mut Plan,
        stats: &mut CompactionStats,
    ) -> Result<OffsetMap> {
        let inner = &*self.inner;
        let mut map = OffsetMap::default();
        let cu = plan.cleaner.cleaned_upto;
        let chunk = inner.shard_config.read_bytes_min.max(1 << 20);
        let max_decoded = inner.shard_config.decompressed_batch_bytes_max;
        let mut end = plan.segs.len();
        for i in plan.dirty_from..plan.segs.len() {
            let s = &plan.segs[i];
            let Some(file) = self.src_file(s).await? else {
                // Removed underneath (retention, truncation): clean what comes before.
                end = i;
                break;
            };
            let path = segment_file(&inner.dir, s.base, "log");
            let mut r = SegReader::new(&*file, path, s.size, chunk);
            while let Some(b) = r.next().await? {
                stats.bytes_read += b.size_bytes() as u64;
                if b.base_offset() < cu {
                    continue;
                }
                if b.producer_id() >= 0 {
                    map.producers.insert(b.producer_id(), b.base_offset());
                }
                let Some(d) = decode(&b, max_decoded) else {
                    continue;
                };
                if let Some(recs) = parse_records(&b, &d.records) {
                    for rec in recs {
                        if let Some((ks, ke)) = rec.key {
                            let off = b.base_offset() + i64::from(rec.offset_delta);
                            map.keys.insert(key_hash(&d.records[ks..ke]), off);
                        }
                    }
                }
                inner.storage.yield_if_needed().await;
            }
            if map.keys.len() > inner.shard_config.compaction_keys_max {
                end = i + 1;
                break;
            }
        }
        plan.segs.truncate(end);
        Ok(map)
    }

    /// The file of a segment in the plan; `None` if that segment left the log or was
    /// replaced since the plan was made.
    async fn src_file(&self, s: &Src) -> Result<Option<Rc<S::File>>> {
        let Some(f) = self.segment_handle(s.base).await? else {
            return Ok(None);
        };
        let same = self
            .inner
            .state
            .borrow()
            .segments
            .get(&s.base)
            .map(|g| g.id)
            == Some(s.id);
        Ok(same.then_some(f))
    }

    /// Cleans one group of segments into a new file and swaps it in. `Ok(false)` if the log
    /// changed underneath (retention, truncation, close) and the pass should stop.
    async fn clean_group(
        &self,
        group: &[Src],
        cleaner: &CleanerState,
        map: &OffsetMap,
        now_ms: i64,
        stats: &mut CompactionStats,
    ) -> Result<bool> {
        let inner = &*self.inner;
        let base = group[0].base;
        let cleaned_path = inner.dir.join(format!("{base:020}{CLEANED_SUFFIX}"));
        let file = inner
            .storage
            .open(&cleaned_path, OpenMode::CreateTruncate)
            .await
            .map_err(io_err("create cleaned segment", &cleaned_path))?;
        let mut w = SegWriter {
            file,
            base,
            interval: inner.config.index_interval_bytes,
            pending: Vec::new(),
            flushed: 0,
            size: 0,
            index: SparseIndex::default(),
            max_ts: -1,
        };
        let mut local = CompactionStats::default();
        let r = self
            .filter_group(group, cleaner, map, now_ms, &mut w, &mut local)
            .await;
        let (changed, done) = match r {
            Ok(changed) => match w.finish().await {
                Ok(done) => (changed, done),
                Err(e) => {
                    let _ = remove_if_present(&inner.storage, &cleaned_path).await;
                    return Err(io_err("write cleaned segment", &cleaned_path)(e));
                }
            },
            Err(e) => {
                drop(w);
                let _ = remove_if_present(&inner.storage, &cleaned_path).await;
                return Err(e);
            }
        };
        stats.bytes_read += local.bytes_read;
        if !changed && group.len() == 1 {
            // Nothing to gain: leave the segment in place, but count it as cleaned.
            drop(done);
            remove_if_present(&inner.storage, &cleaned_path).await?;
            let end = group[0].end;
            let _g = inner.io_lock.lock().await;
            let data = {
                let mut st = inner.state.borrow_mut();
                if st.closed || st.poisoned.is_some() || st.cleaner.cleaned_upto >= end {
                    return Ok(true);
                }
                let mut c = st.cleaner.clone();
                c.advance(end, now_ms, inner.config.delete_retention_ms);
                let data = c.encode();
                st.cleaner = c;
                data
            };
            let cp = inner.dir.join(CHECKPOINT_FILE);
            write_file_atomic(&inner.storage, &cp, &data)
                .await
                .map_err(io_err("write cleaner checkpoint", &cp))?;
            return Ok(true);
        }
        let (file, size, index, max_ts) = done;
        let swapped = self
            .swap(group, cleaner, file, size, index, max_ts, now_ms)
            .await?;
        if swapped {
            local.bytes_read = 0;
            stats.add(&local);
            stats.segments_cleaned += group.len() as u64;
            stats.segments_written += 1;
            stats.bytes_written += size;
            stats.bytes_before += group.iter().map(|s| s.size).sum::<u64>();
            stats.bytes_after += size;
        } else {
            remove_if_present(&inner.storage, &cleaned_path).await?;
        }
        Ok(swapped)
    }

    /// Streams the group's batches through the filter into `w`; true if anything changed.
    async fn filter_group(
        &self,
        group: &[Src],
        cleaner: &CleanerState,
        map: &OffsetMap,
        now_ms: i64,
        w: &mut SegWriter<S::File>,
        stats: &mut CompactionStats,
    ) -> Result<bool> {
        let inner = &*self.inner;
        let chunk = inner.shard_config.read_bytes_min.max(1 << 20);
        let retention = inner.config.delete_retention_ms;
        let max_decoded = inner.shard_config.decompressed_batch_bytes_max;
        let remembered: HashSet<i64> = inner.state.borrow().producers.batch_bases().collect();
        let mut changed = false;
        let verdict = |off: i64, key: Option<&[u8]>, tombstone: bool| -> Verdict {
            let Some(k) = key else {
                return Verdict::Keyless;
            };
            if map
                .keys
                .get(&key_hash(k))
                .is_some_and(|&latest| off < latest)
            {
                return Verdict::Superseded;
            }
            let expired = cleaner
                .cleaned_at(off)
                .is_some_and(|t| now_ms.saturating_sub(t) > retention);
            if tombstone && expired {
                Verdict::Tombstone
            } else {
                Verdict::Keep
            }
        };
        for s in group {
            let Some(file) = self.src_file(s).await? else {
                // Removed underneath: the swap sees the change and drops this output.
                continue;
            };
            let path = segment_file(&inner.dir, s.base, "log");
            let mut r = SegReader::new(&*file, path.clone(), s.size, chunk);
            let mut expect = s.base;
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
                let pid = b.producer_id();
                let keep_empty = pid >= 0
                    && (remembered.contains(&b.base_offset())
                        || map
                            .producers
                            .get(&pid)
                            .is_none_or(|&last| b.base_offset() >= last));
                let decoded = decode(&b, max_decoded);
                let recs = decoded.as_ref().and_then(|d| parse_records(&b, &d.records));
                let out = match (decoded, recs) {
                    (Some(d), Some(recs)) => {
                        let mut keep = Vec::with_capacity(recs.len());
                        for rec in &recs {
                            let off = b.base_offset() + i64::from(rec.offset_delta);
                            let key = rec.key.map(|(ks, ke)| &d.records[ks..ke]);
                            match verdict(off, key, rec.tombstone) {
                                Verdict::Keep => keep.push(*rec),
                                Verdict::Tombstone => {
                                    stats.tombstones_dropped += 1;
                                    stats.records_dropped += 1;
                                }
                                Verdict::Superseded | Verdict::Keyless => {
                                    stats.records_dropped += 1;
                                }
                            }
                        }
                        if keep.len() == recs.len() && (!recs.is_empty() || keep_empty) {
                            Filtered::Whole
                        } else if keep.is_empty() && !keep_empty {
                            stats.batches_dropped += 1;
                            Filtered::Dropped
                        } else {
                            match rebuild(&b, &d, &keep) {
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
                    _ => {
                        stats.batches_opaque += 1;
                        Filtered::Whole
                    }
                };
                match out {
                    Filtered::Whole => w.push(&b, b.bytes()),
                    Filtered::Rewritten(bytes) => {
                        changed = true;
                        w.push(&b, &bytes);
                    }
                    Filtered::Dropped => changed = true,
                }
                if w.pending.len() >= WRITE_CHUNK {
                    w.write_out(false)
                        .await
                        .map_err(io_err("write cleaned segment", &path))?;
                }
                inner.storage.yield_if_needed().await;
            }
        }
        Ok(changed)
    }

    /// Swaps a cleaned file in for `group` under the I/O lock (see "Crash safety").
    #[allow(clippy::too_many_arguments)]
    async fn swap(
        &self,
        group: &[Src],
        cleaner: &CleanerState,
        file: S::File,
        size: u64,
        index: SparseIndex,
        max_ts: i64,
        now_ms: i64,
    ) -> Result<bool> {
        let inner = &*self.inner;
        let dir = &inner.dir;
        let base = group[0].base;
        let end = group[group.len() - 1].end;
        let _g = inner.io_lock.lock().await;
        let new_cleaner = {
            let st = inner.state.borrow();
            if st.closed || st.poisoned.is_some() {
                return Ok(false);
            }
            let active = st.segments.keys().next_back().copied().unwrap_or(i64::MIN);
            let now: Vec<(i64, i64, u64, u64)> = st
                .segments
                .range(base..end)
                .map(|(b, s)| (*b, s.next_offset, s.size_bytes, s.id))
                .collect();
            let then: Vec<(i64, i64, u64, u64)> = group
                .iter()
                .map(|s| (s.base, s.end, s.size, s.id))
                .collect();
            if now != then || end > active {
                return Ok(false);
            }
            // Continue from the state as it is now (a truncation may have lowered it), and
            // never lower it below what this pass started from.
            let mut c = st.cleaner.clone();
            if c.cleaned_upto < cleaner.cleaned_upto.min(base) {
                return Ok(false);
            }
            c.advance(end, now_ms, inner.config.delete_retention_ms);
            c
        };
        let cp = dir.join(CHECKPOINT_FILE);
        write_file_atomic(&inner.storage, &cp, &new_cleaner.encode())
            .await
            .map_err(io_err("write cleaner checkpoint", &cp))?;
        inner.state.borrow_mut().cleaner = new_cleaner;
        // The swap renames files over these segments' paths: from here until they leave the
        // map, readers must use the files they have, never open the paths again.
        let mut r = Ok(());
        for s in group {
            if let Err(e) = self.pin_segment(s.base).await {
                r = Err(e);
                break;
            }
        }
        if r.is_ok() {
            r = self.swap_files(group, base, end).await;
        }
        if let Err(e) = r {
            let mut st = inner.state.borrow_mut();
            if st.poisoned.is_none() {
                st.poisoned = Some(e.to_string());
            }
            return Err(e);
        }
        let file = Rc::new(file);
        {
            let mut st = inner.state.borrow_mut();
            for s in group {
                if let Some(old) = st.segments.remove(&s.base) {
                    self.forget_segment_file(&old);
                }
            }
            let mut seg = Segment::new(base, now_ms);
            // Pinned until sealed below, which hands it to the file cache.
            seg.file = SegmentFile::Pinned(file.clone());
            seg.size_bytes = size;
            seg.written_bytes = size;
            seg.allocated_bytes = size;
            seg.next_offset = end;
            seg.max_timestamp = max_ts;
            seg.index = index;
            seg.index_dirty = true;
            st.segments.insert(base, seg);
            inner.cache.borrow_mut().remove_before(inner.id, end);
        }
        self.seal_segment(&file, base).await?;
        Ok(true)
    }

    async fn swap_files(&self, group: &[Src], base: i64, end: i64) -> Result<()> {
        let inner = &*self.inner;
        let (storage, dir) = (&inner.storage, &inner.dir);
        let sync = || async { storage.sync_dir(dir).await.map_err(io_err("sync dir", dir)) };
        let cleaned = dir.join(format!("{base:020}{CLEANED_SUFFIX}"));
        let swap = swap_name(dir, base, end);
        storage
            .rename(&cleaned, &swap)
            .await
            .map_err(io_err("rename cleaned segment", &swap))?;
        sync().await?;
        for s in &group[1..] {
            for ext in ["log", "index", "timeindex"] {
                remove_if_present(storage, &segment_file(dir, s.base, ext)).await?;
            }
        }
        for ext in ["index", "timeindex"] {
            remove_if_present(storage, &segment_file(dir, base, ext)).await?;
        }
        sync().await?;
        let log = segment_file(dir, base, "log");
        storage
            .rename(&swap, &log)
            .await
            .map_err(io_err("rename swap segment", &log))?;
        sync().await
    }

    /// Writes `cleaner.checkpoint` if the cleaner has any state (after a truncation).
    pub(crate) async fn write_cleaner_checkpoint(&self) -> Result<()> {
        let inner = &*self.inner;
        let data = {
            let st = inner.state.borrow();
            if st.cleaner == CleanerState::default() {
                return Ok(());
            }
            st.cleaner.encode()
        };
        let cp = inner.dir.join(CHECKPOINT_FILE);
        write_file_atomic(&inner.storage, &cp, &data)
            .await
            .map_err(io_err("write cleaner checkpoint", &cp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_net::record_batch::build::{BatchSpec, batch};

    /// Tombstone ages follow the regions; old regions merge; truncation lowers the state;
    /// the file format round-trips and refuses damage.
    #[test]
    fn cleaner_state() {
        let mut c = CleanerState::default();
        assert_eq!(c.cleaned_at(0), None);
        c.advance(100, 1_000, 500);
        c.advance(200, 1_200, 500);
        assert_eq!(c.cleaned_at(50), Some(1_000));
        assert_eq!(c.cleaned_at(150), Some(1_200));
        assert_eq!(c.cleaned_at(200), None);
        c.advance(300, 2_000, 500);
        assert_eq!(c.regions, vec![(200, 1_200), (300, 2_000)]);
        assert_eq!(c.cleaned_at(50), Some(1_200));
        let e = c.encode();
        assert_eq!(CleanerState::decode(&e), Some(c.clone()));
        for i in 0..e.len() {
            let mut m = e.clone();
            m[i] ^= 0x20;
            assert!(CleanerState::decode(&m).is_none(), "{i}");
            assert!(CleanerState::decode(&e[..i]).is_none());
        }
        c.truncate(250);
        assert_eq!(c.cleaned_upto, 250);
        assert_eq!(c.regions, vec![(200, 1_200), (250, 2_000)]);
        for i in 0..100 {
            c.advance(300 + i, 3_000 + i, 1 << 40);
        }
        assert!(c.regions.len() <= REGIONS_MAX);
    }

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
        let recs = parse_records(&b, &d.records).unwrap();
        assert_eq!(recs.len(), 4);
        assert!(recs[1].tombstone && !recs[0].tombstone);
        let out = RecordBatch::new(rebuild(&b, &d, &[recs[1], recs[3]]).unwrap()).unwrap();
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
        let crc = crc32c::crc32c(&v[21..]);
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
