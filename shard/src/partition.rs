//! One partition's log: segments, appends with group commit, reads, truncation, retention,
//! recovery. Lives on one core; a [`Partition`] handle is `Rc`-shared by tasks on that core.
//!
//! Concurrency rule: the state sits in a `RefCell` that is only borrowed between awaits. All
//! file I/O is done under `io_lock` (one I/O operation at a time per partition), with file
//! handles cloned out of the state as `Rc`s, so appends can keep adding to memory while a
//! flush is on the disk. Unwritten batches wait in `unwritten`; a flush writes them in order.
//!
//! Segment file layout: batches back to back from byte 0, exactly as stored by Kafka. The file
//! may be longer than its batches (fallocate steps, zero padding to the direct-I/O block); the
//! logical end is found by framing and CRC on recovery and kept in `Segment::size_bytes`.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use sluice_net::record_batch::{self, Batches, Compression, RecordBatch, peek_batch_size};

use crate::cache::{BatchCache, CachedBatch, collect_run};
use crate::compact::{self, CleanerState};
use crate::config::{Durability, LogConfig, ShardConfig};
use crate::error::{Result, ShardError, io_err};
use crate::files::FileCache;
use crate::index::SparseIndex;
use crate::io::{OpenMode, Storage, StorageFile, read_file, write_file_atomic};
use crate::meta::{self, META_FILE, PartitionMeta};
use crate::notify::{AsyncLock, Notify};
use crate::producer_state::{
    ProducerBatch, ProducerEntry, ProducerTable, SNAPSHOTS_KEPT, SeqCheck, parse_snapshot_name,
    snapshot_name,
};

/// Sequence of the last record of a batch: sequences wrap from i32::MAX to 0.
fn last_sequence(first_seq: i32, last_offset_delta: i32) -> i32 {
    ((i64::from(first_seq) + i64::from(last_offset_delta)) % (i64::from(i32::MAX) + 1)) as i32
}

/// What an append did. All offsets are Kafka offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset given to the first record of the first batch.
    pub base_offset: i64,
    /// Offset of the last record of the last batch.
    pub last_offset: i64,
    /// Append time stamped for LogAppendTime topics; -1 (CreateTime) here.
    pub log_append_time_ms: i64,
    /// Log start offset after the append.
    pub log_start_offset: i64,
}

/// Batches served by a read, plus the offsets a Fetch response carries.
#[derive(Debug, Clone, Default)]
pub struct ReadResult {
    /// Whole batches, in order, starting with the batch holding the requested offset.
    pub batches: Vec<Bytes>,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
}

/// Offsets of a partition at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offsets {
    pub log_start_offset: i64,
    pub high_watermark: i64,
    pub log_end_offset: i64,
}

/// Where a segment's file handle is.
pub(crate) enum SegmentFile<F> {
    /// No file yet: a new segment before its first write.
    Missing,
    /// Held open by the partition: the active segment, and a rolled one until it is sealed
    /// (or a closed one while a compaction swap renames files under it).
    Pinned(Rc<F>),
    /// Sealed and closed: opened on demand through the shard's [`FileCache`].
    Cached,
}

impl<F> SegmentFile<F> {
    pub(crate) fn exists(&self) -> bool {
        !matches!(self, SegmentFile::Missing)
    }
}

thread_local! {
    /// Segment ids: unique on the core for the life of the process (see `Segment::id`).
    static NEXT_SEGMENT_ID: std::cell::Cell<u64> = const { std::cell::Cell::new(1) };
}

pub(crate) struct Segment<F> {
    pub(crate) base_offset: i64,
    /// Unique on the core: names this segment (not its base offset, which a later segment
    /// may reuse after a truncation or a compaction swap) in the shard's file cache.
    pub(crate) id: u64,
    pub(crate) file: SegmentFile<F>,
    /// Bytes of batches assigned to this segment, written or not.
    pub(crate) size_bytes: u64,
    /// Bytes of batches handed to the kernel.
    pub(crate) written_bytes: u64,
    pub(crate) next_offset: i64,
    pub(crate) max_timestamp: i64,
    pub(crate) created_ms: i64,
    pub(crate) index: SparseIndex,
    pub(crate) index_dirty: bool,
    /// Bytes [align_down(written_bytes), written_bytes) of the file: rewritten with the next
    /// write so the partial tail block is never lost.
    pub(crate) tail: Vec<u8>,
    pub(crate) allocated_bytes: u64,
}

impl<F> Segment<F> {
    pub(crate) fn new(base_offset: i64, now_ms: i64) -> Self {
        let id = NEXT_SEGMENT_ID.with(|n| {
            let id = n.get();
            n.set(id + 1);
            id
        });
        Self {
            base_offset,
            id,
            file: SegmentFile::Missing,
            size_bytes: 0,
            written_bytes: 0,
            next_offset: base_offset,
            max_timestamp: -1,
            created_ms: now_ms,
            index: SparseIndex::default(),
            index_dirty: true,
            tail: Vec::new(),
            allocated_bytes: 0,
        }
    }
}

pub(crate) fn segment_file(dir: &Path, base: i64, ext: &str) -> PathBuf {
    dir.join(format!("{base:020}.{ext}"))
}

pub(crate) struct LogState<F> {
    /// Keyed by base offset. Segments cover contiguous offset ranges: a segment covers
    /// `[base, next_offset)`, and `next_offset` is the next segment's base. After compaction
    /// a segment may hold no batch for parts of its range (gaps), even at its end.
    pub(crate) segments: BTreeMap<i64, Segment<F>>,
    pub(crate) log_start_offset: i64,
    log_end_offset: i64,
    /// Everything below this offset is written (maybe not synced).
    written_end_offset: i64,
    /// Everything below this offset is fdatasync'ed.
    pub(crate) durable_end_offset: i64,
    pub(crate) high_watermark: i64,
    /// Appended batches not yet handed to the kernel, in offset order, and for each the base
    /// offset of the segment it belongs to.
    unwritten: VecDeque<CachedBatch>,
    unwritten_segment: VecDeque<i64>,
    unwritten_bytes: usize,
    /// Set while `truncate_to` runs; appends wait for it to clear.
    truncating: bool,
    append_seq: u64,
    durable_seq: u64,
    recovery_point: i64,
    leader_epochs: Vec<(i32, i64)>,
    leader_epoch: i32,
    pub(crate) producers: ProducerTable,
    /// Producer snapshots taken when a segment rolled in memory, as (offset, file bytes);
    /// written when that segment's file is created, once everything below is durable.
    pending_snapshots: Vec<(i64, Vec<u8>)>,
    pub(crate) poisoned: Option<String>,
    pub(crate) closed: bool,
    last_flush_ms: i64,
    /// What compaction has cleaned (persisted in `cleaner.checkpoint`).
    pub(crate) cleaner: CleanerState,
}

pub(crate) struct PartitionInner<S: Storage> {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) id: u64,
    pub(crate) dir: PathBuf,
    pub(crate) storage: S,
    pub(crate) config: LogConfig,
    pub(crate) shard_config: ShardConfig,
    pub(crate) cache: Rc<RefCell<BatchCache>>,
    /// Open files of closed segments, shared by the core's partitions.
    pub(crate) files: Rc<RefCell<FileCache<S::File>>>,
    pub(crate) state: RefCell<LogState<S::File>>,
    pub(crate) io_lock: AsyncLock,
    /// Set while a compaction pass runs (one at a time per partition).
    pub(crate) compacting: std::cell::Cell<bool>,
    /// Fires when a flush finishes (success or failure).
    synced: Notify,
    /// Fires when the high watermark or log end moves (or the partition closes).
    appended: Notify,
}

/// A handle on one partition of a [`crate::Shard`]; clones share the partition.
///
/// Lives on the core that opened it. Any number of tasks on that core may call it at once:
/// appends are ordered by the order their calls start; I/O is serialized inside.
///
/// Durability: with [`Durability::SyncEachAppend`] (default), when `append` returns `Ok` the
/// batches are written and fdatasync'ed, so they survive a crash; appends running at the same
/// time share one fdatasync. With `FlushInterval`, `append` returns once the batches are in
/// memory (readable), and `flush` returning `Ok` means every earlier append is durable. After
/// any write or sync error the partition refuses appends (`Poisoned`) until reopened, since
/// the kernel may have dropped the data that failed.
pub struct Partition<S: Storage> {
    pub(crate) inner: Rc<PartitionInner<S>>,
}

impl<S: Storage> Clone for Partition<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<S: Storage> std::fmt::Debug for Partition<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Partition({}-{})",
            self.inner.topic, self.inner.partition
        )
    }
}

/// `baseOffset + lastOffsetDelta + 1` of a stored batch (its header was checked).
fn batch_next_offset(b: &[u8]) -> i64 {
    let mut base = [0u8; 8];
    base.copy_from_slice(&b[..8]);
    let mut delta = [0u8; 4];
    delta.copy_from_slice(&b[23..27]);
    i64::from_be_bytes(base) + i64::from(i32::from_be_bytes(delta)) + 1
}

fn corrupt(path: &Path, position: u64, detail: impl Into<String>) -> ShardError {
    ShardError::Corrupt {
        path: path.to_path_buf(),
        position,
        detail: detail.into(),
    }
}

/// Closes handles the file cache let go of, unless a reader still holds one (then it is
/// closed when that reader drops it). A failed close loses nothing: the file was synced
/// when its segment was sealed.
pub(crate) async fn close_evicted<F: StorageFile>(evicted: Vec<Rc<F>>) {
    for f in evicted {
        if let Ok(f) = Rc::try_unwrap(f) {
            if let Err(e) = f.close().await {
                tracing::warn!(error = %e, "closing a segment file failed");
            }
        }
    }
}

/// The idempotent-producer batches of a segment from byte `pos` (a batch start) to `limit`,
/// from their headers only: for replaying the log into the producer table on open. The
/// segment was checked by recovery, so anything unparseable is corruption.
async fn read_producer_batches<F: StorageFile>(
    file: &F,
    path: &Path,
    mut pos: u64,
    limit: u64,
    chunk: usize,
) -> Result<Vec<(i64, i16, ProducerBatch)>> {
    let be = |b: &[u8], at: usize, n: usize| -> i64 {
        b[at..at + n]
            .iter()
            .fold(0i64, |acc, &x| (acc << 8) | i64::from(x))
    };
    let mut out = Vec::new();
    let mut buf = Bytes::new();
    let mut buf_pos = pos;
    while pos < limit {
        let at = (pos - buf_pos) as usize;
        if buf.len() < at + record_batch::HEADER_BYTES {
            let want = chunk
                .max(record_batch::HEADER_BYTES)
                .min((limit - pos) as usize);
            buf = file
                .read_at(pos, want)
                .await
                .map_err(io_err("read", path))?;
            buf_pos = pos;
            if buf.len() < record_batch::HEADER_BYTES {
                return Err(corrupt(path, pos, "short batch header"));
            }
            continue;
        }
        let h = &buf[at..at + record_batch::HEADER_BYTES];
        let size = match peek_batch_size(h) {
            Ok(Some(n)) if pos + n as u64 <= limit => n,
            _ => return Err(corrupt(path, pos, "bad batch header in producer replay")),
        };
        let base = be(h, 0, 8);
        let delta = be(h, 23, 4) as i32;
        let pid = be(h, 43, 8);
        if pid >= 0 && delta >= 0 {
            let first_seq = be(h, 53, 4) as i32;
            out.push((
                pid,
                be(h, 51, 2) as i16,
                ProducerBatch {
                    first_seq,
                    last_seq: last_sequence(first_seq, delta),
                    base_offset: base,
                    last_offset: base + i64::from(delta),
                    max_timestamp: be(h, 35, 8),
                },
            ));
        }
        pos += size as u64;
    }
    Ok(out)
}

/// Result of scanning a segment's bytes.
struct ScanResult {
    /// Batches of idempotent producers, in offset order: (producer id, epoch, batch).
    producers: Vec<(i64, i16, ProducerBatch)>,
    valid_bytes: u64,
    next_offset: i64,
    max_timestamp: i64,
    index: SparseIndex,
}

/// Scans batches from position 0 (or from `start` with an existing index prefix), checking
/// framing, magic, CRC and offset order; stops at the first bad batch.
async fn scan_segment<F: StorageFile>(
    file: &F,
    base_offset: i64,
    file_bytes: u64,
    interval: u64,
    chunk: usize,
    allow_gaps: bool,
) -> std::io::Result<ScanResult> {
    let mut index = SparseIndex::default();
    let mut pos = 0u64;
    let mut next = base_offset;
    let mut max_ts = -1i64;
    let mut producers = Vec::new();
    let mut buf = Bytes::new();
    let mut buf_pos = 0u64;
    'outer: while pos < file_bytes {
        let rel = (pos - buf_pos) as usize;
        let need = match peek_batch_size(buf.get(rel..).unwrap_or(&[])) {
            Ok(Some(n)) => n,
            Ok(None) => record_batch::LOG_OVERHEAD_BYTES,
            Err(_) => break,
        };
        if rel + need > buf.len() {
            if pos + need as u64 > file_bytes {
                break;
            }
            let want = need.max(chunk).min((file_bytes - pos) as usize);
            buf = file.read_at(pos, want).await?;
            buf_pos = pos;
            if buf.len() < need {
                break;
            }
            continue 'outer;
        }
        let Ok(batch) = RecordBatch::new(buf.slice(rel..rel + need)) else {
            break;
        };
        if batch.validate_stored().is_err() {
            break;
        }
        let base = batch.base_offset();
        let last = batch.last_offset();
        // Strict contiguity unless the segment was compacted (then gaps are allowed, but
        // offsets still increase): a flipped baseOffset, which the CRC does not cover, ends
        // the valid part of the segment here.
        if base < next
            || (base != next && !allow_gaps)
            || last < base
            || base - base_offset > i64::from(u32::MAX)
        {
            break;
        }
        if pos > u64::from(u32::MAX) {
            break;
        }
        max_ts = max_ts.max(batch.max_timestamp());
        if batch.producer_id() >= 0 {
            producers.push((
                batch.producer_id(),
                batch.producer_epoch(),
                ProducerBatch {
                    first_seq: batch.base_sequence(),
                    last_seq: last_sequence(batch.base_sequence(), batch.last_offset_delta()),
                    base_offset: base,
                    last_offset: last,
                    max_timestamp: batch.max_timestamp(),
                },
            ));
        }
        index.on_batch(
            (base - base_offset) as u32,
            pos as u32,
            need as u64,
            max_ts,
            interval,
        );
        next = last + 1;
        pos += need as u64;
    }
    Ok(ScanResult {
        producers,
        valid_bytes: pos,
        next_offset: next,
        max_timestamp: max_ts,
        index,
    })
}

impl<S: Storage> Partition<S> {
    /// Opens (or creates) the partition directory and recovers it. See the crate docs.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn open(
        storage: S,
        root: &Path,
        topic: &str,
        partition: i32,
        id: u64,
        config: LogConfig,
        shard_config: ShardConfig,
        cache: Rc<RefCell<BatchCache>>,
        files: Rc<RefCell<FileCache<S::File>>>,
    ) -> Result<Self> {
        assert!(config.segment_bytes > 0 && config.index_interval_bytes > 0);
        let dir = root.join(format!("{topic}-{partition}"));
        storage
            .create_dir_all(&dir)
            .await
            .map_err(io_err("create dir", &dir))?;
        let now = storage.now_ms();
        let meta_path = dir.join(META_FILE);
        // Finish a compaction swap a crash interrupted (or drop its unfinished output) before
        // looking at the segments.
        compact::recover_swap(&storage, &dir).await?;
        let names = storage
            .list_dir(&dir)
            .await
            .map_err(io_err("list dir", &dir))?;
        // Segments below `gaps_below` were compacted and may have offset gaps.
        let (cleaner, gaps_below) = compact::load_checkpoint(&storage, &dir, &names).await;
        let meta = if names.iter().any(|n| n == META_FILE) {
            let data = read_file(&storage, &meta_path)
                .await
                .map_err(io_err("read meta", &meta_path))?;
            Some(meta::decode(&data).map_err(|detail| ShardError::BadMeta {
                path: meta_path.clone(),
                detail,
            })?)
        } else {
            None
        };
        let mut bases: Vec<i64> = names
            .iter()
            .filter_map(|n| n.strip_suffix(".log"))
            .filter(|s| s.len() == 20)
            .filter_map(|s| s.parse::<i64>().ok())
            .collect();
        bases.sort_unstable();
        let recovery_point = meta.as_ref().map_or(0, |m| m.recovery_point);
        let mut segments: BTreeMap<i64, Segment<S::File>> = BTreeMap::new();
        // Idempotent-producer batches of the segments recovery scanned, by segment base, so
        // the producer-state replay need not read those again.
        let mut scanned: BTreeMap<i64, Vec<(i64, i16, ProducerBatch)>> = BTreeMap::new();
        for (i, &base) in bases.iter().enumerate() {
            let path = segment_file(&dir, base, "log");
            let file = storage
                .open(&path, OpenMode::Existing)
                .await
                .map_err(io_err("open segment", &path))?;
            let file_bytes = file.size().await.map_err(io_err("stat segment", &path))?;
            let is_last = i + 1 == bases.len();
            let trusted = !is_last && bases[i + 1] <= recovery_point;
            let mut seg = Segment::new(base, now);
            let mut done = false;
            if trusted {
                if let Some((idx, scan)) =
                    Self::load_trusted(&storage, &dir, &file, base, file_bytes, base < gaps_below)
                        .await?
                {
                    seg.index = idx;
                    seg.index_dirty = false;
                    seg.size_bytes = file_bytes;
                    seg.next_offset = scan.0;
                    seg.max_timestamp = scan.1;
                    done = true;
                }
            }
            if !done {
                let scan = scan_segment(
                    &file,
                    base,
                    file_bytes,
                    config.index_interval_bytes,
                    shard_config.read_bytes_min.max(1 << 20),
                    base < gaps_below,
                )
                .await
                .map_err(io_err("scan segment", &path))?;
                if scan.valid_bytes < file_bytes {
                    if !is_last {
                        tracing::warn!(
                            path = %path.display(),
                            valid = scan.valid_bytes,
                            file_bytes,
                            "closed segment has a corrupt tail"
                        );
                    }
                    file.truncate(scan.valid_bytes)
                        .await
                        .map_err(io_err("truncate torn tail", &path))?;
                }
                scanned.insert(base, scan.producers);
                seg.size_bytes = scan.valid_bytes;
                seg.next_offset = scan.next_offset;
                seg.max_timestamp = scan.max_timestamp;
                seg.index = scan.index;
                seg.index_dirty = true;
            }
            seg.written_bytes = seg.size_bytes;
            seg.allocated_bytes = seg.size_bytes;
            if let Some((&prev_base, prev)) = segments.iter_mut().next_back() {
                // A compacted segment still covers offsets up to the next segment's base,
                // even where its last batches were removed.
                if prev_base < gaps_below && prev.next_offset < base {
                    prev.next_offset = base;
                }
                if prev.next_offset != base {
                    return Err(corrupt(
                        &path,
                        0,
                        format!(
                            "segment starts at offset {base} but the previous one ends at {}",
                            prev.next_offset
                        ),
                    ));
                }
            }
            if is_last {
                let align = file.alignment();
                let tail_start = seg.size_bytes / align * align;
                let tail = file
                    .read_at(tail_start, (seg.size_bytes - tail_start) as usize)
                    .await
                    .map_err(io_err("read tail", &path))?;
                if tail.len() as u64 != seg.size_bytes - tail_start {
                    return Err(corrupt(&path, tail_start, "short read of the tail block"));
                }
                seg.tail = tail.to_vec();
                // Whatever recovery kept must be durable before it is served as committed.
                file.fdatasync().await.map_err(io_err("sync", &path))?;
            }
            if is_last {
                seg.file = SegmentFile::Pinned(Rc::new(file));
            } else {
                seg.file = SegmentFile::Cached;
                let evicted = files.borrow_mut().insert(id, seg.id, Rc::new(file));
                close_evicted(evicted).await;
            }
            segments.insert(base, seg);
        }
        if segments.is_empty() {
            let start = meta.as_ref().map_or(0, |m| m.log_start_offset);
            segments.insert(start, Segment::new(start, now));
        }
        let first_base = segments.keys().next().copied().unwrap_or(0);
        let log_end_offset = segments
            .values()
            .next_back()
            .map_or(first_base, |s| s.next_offset);
        let log_start_offset = meta
            .as_ref()
            .map_or(first_base, |m| m.log_start_offset.max(first_base))
            .min(log_end_offset);
        let mut leader_epochs = meta.map(|m| m.leader_epochs).unwrap_or_default();
        leader_epochs.retain(|e| e.1 < log_end_offset);
        let leader_epoch = leader_epochs.last().map_or(0, |e| e.0);
        let state = LogState {
            segments,
            log_start_offset,
            log_end_offset,
            written_end_offset: log_end_offset,
            durable_end_offset: log_end_offset,
            high_watermark: log_end_offset,
            unwritten: VecDeque::new(),
            unwritten_segment: VecDeque::new(),
            unwritten_bytes: 0,
            truncating: false,
            append_seq: 0,
            durable_seq: 0,
            recovery_point,
            leader_epochs,
            leader_epoch,
            producers: ProducerTable::default(),
            pending_snapshots: Vec::new(),
            poisoned: None,
            closed: false,
            last_flush_ms: now,
            cleaner,
        };
        let p = Partition {
            inner: Rc::new(PartitionInner {
                topic: topic.to_owned(),
                partition,
                id,
                dir,
                storage,
                config,
                shard_config,
                cache,
                files,
                state: RefCell::new(state),
                io_lock: AsyncLock::default(),
                compacting: std::cell::Cell::new(false),
                synced: Notify::default(),
                appended: Notify::default(),
            }),
        };
        p.load_producers(&names, &scanned).await?;
        p.write_meta().await?;
        Ok(p)
    }

    /// Rebuilds the idempotent-producer table on open: the newest valid snapshot at or below
    /// the log end, then every batch from its offset to the log end (all of the log if no
    /// snapshot is usable). Snapshots above the log end or failing their checks are removed
    /// with a warning. `scanned` holds the producer batches of segments recovery just read.
    async fn load_producers(
        &self,
        names: &[String],
        scanned: &BTreeMap<i64, Vec<(i64, i16, ProducerBatch)>>,
    ) -> Result<()> {
        let inner = &*self.inner;
        let end = inner.state.borrow().log_end_offset;
        let mut offsets: Vec<i64> = names
            .iter()
            .filter_map(|n| parse_snapshot_name(n))
            .collect();
        offsets.sort_unstable_by(|a, b| b.cmp(a));
        let mut loaded = None;
        let mut doomed = Vec::new();
        for off in offsets {
            let path = inner.dir.join(snapshot_name(off));
            if off > end {
                tracing::warn!(
                    path = %path.display(),
                    log_end_offset = end,
                    "producer snapshot above the log end; removed"
                );
                doomed.push(path);
                continue;
            }
            let data = match read_file(&inner.storage, &path).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e,
                        "unreadable producer snapshot; trying an older one");
                    continue;
                }
            };
            match ProducerTable::decode_snapshot(&data) {
                Ok((o, table)) if o == off => {
                    loaded = Some((o, table));
                    break;
                }
                Ok((o, _)) => {
                    tracing::warn!(path = %path.display(), offset = o,
                        "producer snapshot holds another offset than its name; removed");
                    doomed.push(path);
                }
                Err(detail) => {
                    tracing::warn!(path = %path.display(), %detail,
                        "corrupt producer snapshot; removed, trying an older one");
                    doomed.push(path);
                }
            }
        }
        for path in &doomed {
            match inner.storage.remove(path).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("remove snapshot", path)(e)),
            }
        }
        if !doomed.is_empty() {
            inner
                .storage
                .sync_dir(&inner.dir)
                .await
                .map_err(io_err("sync dir", &inner.dir))?;
        }
        let (from, mut table) = loaded.unwrap_or((i64::MIN, ProducerTable::default()));
        // Expired producers are not loaded (as Kafka): dropped before the replay, so a later
        // batch of theirs in the log starts a fresh entry, and again after it.
        let now = inner.storage.now_ms();
        let expiration = inner.config.producer_id_expiration_ms;
        let mut expired = table.expire(now, expiration);
        // Segments holding offsets at or after `from`, and where in each the replay starts.
        let segs: Vec<(i64, u64, u64)> = {
            let st = inner.state.borrow();
            st.segments
                .iter()
                .filter(|(_, s)| s.next_offset > from && s.file.exists() && s.written_bytes > 0)
                .map(|(&b, s)| {
                    let rel = (from.max(b) - b).min(i64::from(u32::MAX)) as u32;
                    (b, u64::from(s.index.position_for(rel)), s.written_bytes)
                })
                .collect()
        };
        let chunk = inner.shard_config.read_bytes_min.max(1 << 20);
        for (base, pos, limit) in segs {
            let read;
            let batches = match scanned.get(&base) {
                Some(list) => list,
                None => {
                    let Some(file) = self.segment_handle(base).await? else {
                        continue;
                    };
                    let path = segment_file(&inner.dir, base, "log");
                    read = read_producer_batches(&*file, &path, pos, limit, chunk).await?;
                    &read
                }
            };
            for &(pid, epoch, b) in batches {
                if b.base_offset >= from {
                    table.replay(pid, epoch, b);
                }
            }
        }
        expired += table.expire(now, expiration);
        tracing::debug!(
            partition = ?self,
            snapshot = from,
            producers = table.len(),
            expired,
            "producer state loaded"
        );
        inner.state.borrow_mut().producers = table;
        Ok(())
    }

    /// Writes the producer snapshots taken by rolls at or below `upto`, then prunes.
    async fn write_pending_snapshots(&self, upto: i64) -> Result<()> {
        let inner = &*self.inner;
        let due: Vec<(i64, Vec<u8>)> = {
            let mut st = inner.state.borrow_mut();
            let (due, later) = std::mem::take(&mut st.pending_snapshots)
                .into_iter()
                .partition(|(o, _)| *o <= upto);
            st.pending_snapshots = later;
            due
        };
        if due.is_empty() {
            return Ok(());
        }
        for (offset, data) in due {
            self.write_snapshot(offset, &data).await?;
        }
        self.prune_snapshots(i64::MAX).await
    }

    async fn write_snapshot(&self, offset: i64, data: &[u8]) -> Result<()> {
        let inner = &*self.inner;
        let path = inner.dir.join(snapshot_name(offset));
        write_file_atomic(&inner.storage, &path, data)
            .await
            .map_err(io_err("write producer snapshot", &path))
    }

    /// Removes producer snapshots above `above` and all but the newest [`SNAPSHOTS_KEPT`].
    async fn prune_snapshots(&self, above: i64) -> Result<()> {
        let inner = &*self.inner;
        let names = inner
            .storage
            .list_dir(&inner.dir)
            .await
            .map_err(io_err("list dir", &inner.dir))?;
        let mut offsets: Vec<i64> = names
            .iter()
            .filter_map(|n| parse_snapshot_name(n))
            .collect();
        offsets.sort_unstable_by(|a, b| b.cmp(a));
        let mut kept = 0;
        let mut removed = false;
        for off in offsets {
            if off <= above && kept < SNAPSHOTS_KEPT {
                kept += 1;
                continue;
            }
            let path = inner.dir.join(snapshot_name(off));
            match inner.storage.remove(&path).await {
                Ok(()) => removed = true,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("remove snapshot", &path)(e)),
            }
        }
        if removed {
            inner
                .storage
                .sync_dir(&inner.dir)
                .await
                .map_err(io_err("sync dir", &inner.dir))?;
        }
        Ok(())
    }

    /// Loads a closed segment's index files and checks them against the segment's tail.
    /// `Ok(None)` means "rebuild by scanning".
    async fn load_trusted(
        storage: &S,
        dir: &Path,
        file: &S::File,
        base: i64,
        file_bytes: u64,
        allow_gaps: bool,
    ) -> Result<Option<(SparseIndex, (i64, i64))>> {
        let ip = segment_file(dir, base, "index");
        let tp = segment_file(dir, base, "timeindex");
        let (Ok(o), Ok(t)) = (read_file(storage, &ip).await, read_file(storage, &tp).await) else {
            return Ok(None);
        };
        let Some(idx) = SparseIndex::decode(&o, &t, file_bytes) else {
            return Ok(None);
        };
        let Some(&(rel, pos)) = idx.offsets.last() else {
            return Ok(None);
        };
        // Scan from the last entry to the end: it must end exactly at the file size.
        let tail_bytes = file_bytes - u64::from(pos);
        let data = file
            .read_at(u64::from(pos), tail_bytes as usize)
            .await
            .map_err(io_err("read segment", segment_file(dir, base, "log")))?;
        let mut next = base + i64::from(rel);
        let mut max_ts = idx.times.last().map_or(-1, |t| t.0);
        let mut consumed = 0usize;
        for b in Batches::new(data.clone()) {
            let Ok(b) = b else { return Ok(None) };
            let gap_ok = allow_gaps && b.base_offset() > next;
            if b.validate_stored().is_err() || (b.base_offset() != next && !gap_ok) {
                return Ok(None);
            }
            next = b.last_offset() + 1;
            max_ts = max_ts.max(b.max_timestamp());
            consumed += b.size_bytes();
        }
        if consumed != data.len() || data.len() as u64 != tail_bytes {
            return Ok(None);
        }
        Ok(Some((idx, (next, max_ts))))
    }

    pub(crate) fn poisoned_err(&self, cause: String) -> ShardError {
        ShardError::Poisoned {
            topic: self.inner.topic.clone(),
            partition: self.inner.partition,
            cause,
        }
    }

    pub(crate) fn check_usable(&self) -> Result<()> {
        let st = self.inner.state.borrow();
        if st.closed {
            return Err(ShardError::Closed {
                topic: self.inner.topic.clone(),
                partition: self.inner.partition,
            });
        }
        if let Some(c) = &st.poisoned {
            return Err(self.poisoned_err(c.clone()));
        }
        Ok(())
    }

    /// The open file of segment `base`: its pinned handle, or the shard's cached one, opened
    /// and cached if needed. `None` if the segment is gone or has no file yet. The handle
    /// stays usable however long the caller holds it, even if the cache evicts it.
    pub(crate) async fn segment_handle(&self, base: i64) -> Result<Option<Rc<S::File>>> {
        let inner = &*self.inner;
        loop {
            let id = {
                let st = inner.state.borrow();
                let Some(seg) = st.segments.get(&base) else {
                    return Ok(None);
                };
                match &seg.file {
                    SegmentFile::Missing => return Ok(None),
                    SegmentFile::Pinned(f) => return Ok(Some(f.clone())),
                    SegmentFile::Cached => seg.id,
                }
            };
            if let Some(f) = inner.files.borrow_mut().get(inner.id, id) {
                return Ok(Some(f));
            }
            let path = segment_file(&inner.dir, base, "log");
            let opened = inner.storage.open(&path, OpenMode::Existing).await;
            // While the file was opening, the segment may have been removed, replaced (a new
            // segment at the same base) or pinned for a compaction swap that renames files:
            // then what was opened may not be this segment's file. Look again.
            let unchanged = inner
                .state
                .borrow()
                .segments
                .get(&base)
                .is_some_and(|s| s.id == id && matches!(s.file, SegmentFile::Cached));
            match opened {
                Ok(f) if unchanged => {
                    let f = Rc::new(f);
                    let evicted = {
                        let mut files = inner.files.borrow_mut();
                        files.opens += 1;
                        files.insert(inner.id, id, f.clone())
                    };
                    close_evicted(evicted).await;
                    return Ok(Some(f));
                }
                Ok(f) => close_evicted(vec![Rc::new(f)]).await,
                Err(_) if !unchanged => {}
                Err(e) => return Err(io_err("open segment", &path)(e)),
            }
        }
    }

    /// Makes segment `base` hold its file open itself (it becomes the active segment, or a
    /// compaction swap is about to rename files under it). No-op if it has no file.
    pub(crate) async fn pin_segment(&self, base: i64) -> Result<Option<Rc<S::File>>> {
        let Some(f) = self.segment_handle(base).await? else {
            return Ok(None);
        };
        let inner = &*self.inner;
        let mut st = inner.state.borrow_mut();
        if let Some(seg) = st.segments.get_mut(&base) {
            if matches!(seg.file, SegmentFile::Cached) {
                inner.files.borrow_mut().remove(inner.id, seg.id);
                seg.file = SegmentFile::Pinned(f.clone());
            }
        }
        Ok(Some(f))
    }

    /// Forgets a segment's cached handle as the segment leaves the log (the caller removes
    /// it from the map). Readers holding the handle keep reading the unlinked file.
    pub(crate) fn forget_segment_file(&self, seg: &Segment<S::File>) {
        let inner = &*self.inner;
        inner.files.borrow_mut().remove(inner.id, seg.id);
    }

    /// Topic name.
    pub fn topic(&self) -> &str {
        &self.inner.topic
    }
    /// Partition index.
    pub fn partition(&self) -> i32 {
        self.inner.partition
    }

    /// Log start, high watermark and log end offsets.
    pub fn offsets(&self) -> Offsets {
        let st = self.inner.state.borrow();
        Offsets {
            log_start_offset: st.log_start_offset,
            high_watermark: st.high_watermark,
            log_end_offset: st.log_end_offset,
        }
    }

    /// Sets the leader epoch stamped into batches appended from now on; recorded in the
    /// leader epoch cache with the first offset appended in it. Epochs only go up.
    pub fn set_leader_epoch(&self, epoch: i32) {
        let mut st = self.inner.state.borrow_mut();
        assert!(epoch >= st.leader_epoch, "leader epoch went backwards");
        st.leader_epoch = epoch;
    }

    /// The leader epoch cache: (epoch, first offset of that epoch), increasing.
    pub fn leader_epochs(&self) -> Vec<(i32, i64)> {
        self.inner.state.borrow().leader_epochs.clone()
    }

    /// Appends one or more concatenated v2 batches (a Produce `records` field). Every batch is
    /// validated before anything is written; a bad batch rejects the whole call. Offsets are
    /// assigned by rewriting `baseOffset`; the current leader epoch is stamped. Returns per
    /// the partition's [`Durability`] (see [`Partition`]).
    pub async fn append(&self, records: Bytes) -> Result<AppendInfo> {
        self.check_usable()?;
        let config = &self.inner.config;
        let rules = crate::validate::Rules {
            compact: config.compact,
            create_time: !config.log_append_time,
            before_max_ms: config.timestamp_before_max_ms,
            after_max_ms: config.timestamp_after_max_ms,
            decompressed_max: self.inner.shard_config.decompressed_batch_bytes_max,
        };
        let now_ms = self.inner.storage.now_ms();
        let mut batches = Vec::new();
        for (index, b) in Batches::new(records).enumerate() {
            let b = b.map_err(|source| ShardError::InvalidBatch { index, source })?;
            if b.size_bytes() > self.inner.config.batch_bytes_max {
                return Err(ShardError::BatchTooLarge {
                    size: b.size_bytes(),
                    max: self.inner.config.batch_bytes_max,
                });
            }
            b.validate()
                .map_err(|source| ShardError::InvalidBatch { index, source })?;
            crate::validate::check_shape(&b, index)?;
            crate::validate::check_records(
                &b,
                index,
                &rules,
                now_ms,
                &self.inner.topic,
                self.inner.partition,
            )?;
            batches.push(b);
        }
        if batches.is_empty() {
            return Err(ShardError::InvalidBatch {
                index: 0,
                source: record_batch::BatchError::Truncated {
                    needed: record_batch::HEADER_BYTES,
                    available: 0,
                },
            });
        }
        if let Durability::FlushInterval { .. } = self.inner.config.durability {
            // Bound memory: wait for room before adding more unwritten bytes.
            while self.inner.state.borrow().unwritten_bytes
                > self.inner.shard_config.unflushed_bytes_max
            {
                self.flush().await?;
            }
        }
        loop {
            let seen = self.inner.appended.generation();
            if !self.inner.state.borrow().truncating {
                break;
            }
            self.inner.appended.wait(seen).await;
        }
        self.check_usable()?;
        let (info, seq) = self.append_in_memory(&batches)?;
        self.inner.appended.notify_all();
        match self.inner.config.durability {
            Durability::SyncEachAppend => self.sync_to(seq).await?,
            Durability::FlushInterval { .. } => {}
        }
        Ok(info)
    }

    /// Checks idempotent-producer sequences for the whole request without changing anything
    /// (the caller records the batches one by one as it assigns their offsets).
    fn check_producers(st: &LogState<S::File>, batches: &[RecordBatch]) -> Result<()> {
        let mut touched: Vec<(i64, ProducerEntry)> = Vec::new();
        let mut next = st.log_end_offset;
        for b in batches {
            let base = next;
            next = base + i64::from(b.last_offset_delta()) + 1;
            let pid = b.producer_id();
            if pid < 0 {
                continue;
            }
            let epoch = b.producer_epoch();
            let first_seq = b.base_sequence();
            let last_seq = last_sequence(first_seq, b.last_offset_delta());
            let i = match touched.iter().position(|(p, _)| *p == pid) {
                Some(i) => i,
                None => {
                    touched.push((pid, st.producers.get(pid).cloned().unwrap_or_default()));
                    touched.len() - 1
                }
            };
            let known = st.producers.get(pid).is_some() || !touched[i].1.batches.is_empty();
            let entry = known.then_some(&touched[i].1);
            match ProducerTable::check(entry, epoch, first_seq, last_seq) {
                SeqCheck::Accept => {}
                SeqCheck::Duplicate {
                    base_offset,
                    last_offset,
                } => {
                    return Err(ShardError::DuplicateSequence {
                        producer_id: pid,
                        base_offset,
                        last_offset,
                    });
                }
                SeqCheck::OutOfOrder { expected } => {
                    return Err(ShardError::OutOfOrderSequence {
                        producer_id: pid,
                        expected,
                        received: first_seq,
                    });
                }
                SeqCheck::Fenced { current_epoch } => {
                    return Err(ShardError::InvalidProducerEpoch {
                        producer_id: pid,
                        epoch,
                        current_epoch,
                    });
                }
            }
            ProducerTable::record(
                &mut touched[i].1,
                epoch,
                ProducerBatch {
                    first_seq,
                    last_seq,
                    base_offset: base,
                    last_offset: next - 1,
                    max_timestamp: b.max_timestamp(),
                },
            );
        }
        Ok(())
    }

    fn append_in_memory(&self, batches: &[RecordBatch]) -> Result<(AppendInfo, u64)> {
        let inner = &*self.inner;
        let now = inner.storage.now_ms();
        let mut st = inner.state.borrow_mut();
        let st = &mut *st;
        Self::check_producers(st, batches)?;
        let base_offset = st.log_end_offset;
        let epoch = st.leader_epoch;
        if st.leader_epochs.last().is_none_or(|e| e.0 < epoch) {
            st.leader_epochs.push((epoch, base_offset));
        }
        st.append_seq += 1;
        let seq = st.append_seq;
        let mut cache = inner.cache.borrow_mut();
        for b in batches {
            let base = st.log_end_offset;
            let last = base + i64::from(b.last_offset_delta());
            assert!(last >= base, "offset range must not be empty");
            let size = b.size_bytes() as u64;
            let mut buf = BytesMut::from(&b.bytes()[..]);
            record_batch::set_base_offset(&mut buf, base);
            record_batch::set_partition_leader_epoch(&mut buf, epoch);
            let max_timestamp = if inner.config.log_append_time {
                record_batch::set_log_append_time(&mut buf, now);
                now
            } else {
                b.max_timestamp()
            };
            let bytes = buf.freeze();
            let roll = {
                let (_, active) = st.segments.iter().next_back().expect("a log has a segment");
                active.size_bytes > 0
                    && (active.size_bytes + size > inner.config.segment_bytes
                        || now - active.created_ms >= inner.config.segment_ms
                        || base - active.base_offset + i64::from(b.last_offset_delta())
                            > i64::from(u32::MAX)
                        || active.size_bytes + size > u64::from(u32::MAX))
            };
            if roll {
                // The producer state as of the new segment's base: every batch below it is
                // recorded, none at or above. Written when the segment's file is created.
                let snapshot = st.producers.encode_snapshot(base);
                st.pending_snapshots.push((base, snapshot));
                st.segments.insert(base, Segment::new(base, now));
            }
            if b.producer_id() >= 0 {
                let first_seq = b.base_sequence();
                ProducerTable::record(
                    st.producers.entry_mut(b.producer_id()),
                    b.producer_epoch(),
                    ProducerBatch {
                        first_seq,
                        last_seq: last_sequence(first_seq, b.last_offset_delta()),
                        base_offset: base,
                        last_offset: last,
                        max_timestamp,
                    },
                );
            }
            let (&seg_base, active) = st.segments.iter_mut().next_back().expect("segment");
            assert!(active.next_offset == base, "offsets must be contiguous");
            let position = active.size_bytes;
            active.max_timestamp = active.max_timestamp.max(max_timestamp);
            active.index.on_batch(
                (base - seg_base) as u32,
                position as u32,
                size,
                active.max_timestamp,
                inner.config.index_interval_bytes,
            );
            active.index_dirty = true;
            active.size_bytes += size;
            active.next_offset = last + 1;
            let cached = CachedBatch {
                base_offset: base,
                last_offset: last,
                bytes,
            };
            cache.insert(inner.id, cached.clone());
            st.unwritten_bytes += size as usize;
            st.unwritten.push_back(cached);
            st.unwritten_segment.push_back(seg_base);
            st.log_end_offset = last + 1;
        }
        if let Durability::FlushInterval { .. } = inner.config.durability {
            st.high_watermark = st.log_end_offset;
        }
        let info = AppendInfo {
            base_offset,
            last_offset: st.log_end_offset - 1,
            log_append_time_ms: if inner.config.log_append_time {
                now
            } else {
                -1
            },
            log_start_offset: st.log_start_offset,
        };
        Ok((info, seq))
    }

    /// Waits until append number `seq` is durable, flushing if no one else is (group commit:
    /// whoever flushes writes and syncs every unwritten batch, covering all waiters).
    /// Proved by `tests::append_behind_a_holder_that_does_not_flush_completes`.
    async fn sync_to(&self, seq: u64) -> Result<()> {
        loop {
            let seen = self.inner.synced.generation();
            {
                let st = self.inner.state.borrow();
                if st.durable_seq >= seq {
                    return Ok(());
                }
                self.check_usable()?;
            }
            if let Some(guard) = self.inner.io_lock.try_lock() {
                let r = self.flush_locked().await;
                drop(guard);
                r?;
            } else {
                // The holder may be a flush (it notifies `synced`) or other work that does not
                // flush (compaction's swap, retention, truncation): then its release is the
                // moment to try again, or an append on an idle partition waited for the next
                // append.
                futures_lite::future::or(
                    self.inner.synced.wait(seen),
                    self.inner.io_lock.released(),
                )
                .await;
            }
        }
    }

    /// Writes and fdatasyncs every batch appended so far. When it returns `Ok`, all earlier
    /// appends are durable.
    pub async fn flush(&self) -> Result<()> {
        self.check_usable()?;
        let _g = self.inner.io_lock.lock().await;
        self.flush_locked().await
    }

    /// Flushes if the partition is in `FlushInterval` mode and its interval has passed.
    pub(crate) async fn flush_if_due(&self) -> Result<()> {
        let Durability::FlushInterval { interval_ms } = self.inner.config.durability else {
            return Ok(());
        };
        let due = {
            let st = self.inner.state.borrow();
            !st.unwritten.is_empty()
                && self.inner.storage.now_ms() - st.last_flush_ms >= interval_ms as i64
        };
        if due { self.flush().await } else { Ok(()) }
    }

    async fn flush_locked(&self) -> Result<()> {
        let r = self.flush_locked_inner().await;
        if let Err(e) = &r {
            let mut st = self.inner.state.borrow_mut();
            if st.poisoned.is_none() {
                st.poisoned = Some(e.to_string());
            }
        }
        self.inner.synced.notify_all();
        self.inner.appended.notify_all();
        r
    }

    async fn flush_locked_inner(&self) -> Result<()> {
        let inner = &*self.inner;
        if let Some(c) = &inner.state.borrow().poisoned {
            return Err(self.poisoned_err(c.clone()));
        }
        // Appends up to this sequence number are covered by the fdatasync below: every one
        // that was in memory when the write loop found nothing left to write.
        let covered_seq: u64;
        let mut synced_file: Option<(Rc<S::File>, i64)> = None;
        loop {
            // Plan one write: the unwritten batches of the first segment that has some.
            let plan = {
                let st = inner.state.borrow();
                let Some(&seg_base) = st.unwritten_segment.front() else {
                    covered_seq = st.append_seq;
                    break;
                };
                let mut n = 0usize;
                let mut bytes = 0usize;
                for (u, &sb) in st.unwritten.iter().zip(st.unwritten_segment.iter()) {
                    if sb != seg_base
                        || (n > 0 && bytes + u.bytes.len() > inner.shard_config.write_bytes_max)
                    {
                        break;
                    }
                    n += 1;
                    bytes += u.bytes.len();
                }
                let seg = &st.segments[&seg_base];
                let file = match &seg.file {
                    SegmentFile::Missing => None,
                    SegmentFile::Pinned(f) => Some(f.clone()),
                    SegmentFile::Cached => panic!("a segment with unwritten batches is sealed"),
                };
                (seg_base, n, bytes, file)
            };
            let (seg_base, n, bytes, file) = plan;
            let file = match file {
                Some(f) => f,
                None => self.open_new_segment(seg_base).await?,
            };
            // An earlier file written in this flush was sealed (synced) by open_new_segment, so
            // only the last file written needs the fdatasync below.
            let path = segment_file(&inner.dir, seg_base, "log");
            let align = file.alignment();
            let (pos, buf_len, new_written, tail_keep) = {
                let st = inner.state.borrow();
                let seg = &st.segments[&seg_base];
                let start = seg.written_bytes / align * align;
                assert!(seg.tail.len() as u64 == seg.written_bytes - start);
                let end = seg.written_bytes + bytes as u64;
                (
                    start,
                    (end.div_ceil(align) * align - start) as usize,
                    end,
                    seg.tail.len(),
                )
            };
            let mut buf = file.alloc_buf(buf_len);
            {
                let st = inner.state.borrow();
                let seg = &st.segments[&seg_base];
                buf[..tail_keep].copy_from_slice(&seg.tail);
                let mut at = tail_keep;
                for u in st.unwritten.iter().take(n) {
                    let b = &u.bytes;
                    buf[at..at + b.len()].copy_from_slice(b);
                    at += b.len();
                }
                assert!(at == tail_keep + bytes);
                buf[at..].fill(0);
            }
            let new_tail_start = new_written / align * align;
            let new_tail =
                buf[(new_tail_start - pos) as usize..(new_written - pos) as usize].to_vec();
            let allocated = inner.state.borrow().segments[&seg_base].allocated_bytes;
            let write_end = pos + buf_len as u64;
            if write_end > allocated {
                let target = (allocated + inner.config.preallocate_bytes).max(write_end);
                file.allocate(target)
                    .await
                    .map_err(io_err("fallocate", &path))?;
                let mut st = inner.state.borrow_mut();
                if let Some(seg) = st.segments.get_mut(&seg_base) {
                    seg.allocated_bytes = target;
                }
            }
            assert!(pos % align == 0 && buf_len as u64 % align == 0);
            file.write_at(buf, pos)
                .await
                .map_err(io_err("write", &path))?;
            {
                let mut st = inner.state.borrow_mut();
                let st = &mut *st;
                let seg = st
                    .segments
                    .get_mut(&seg_base)
                    .expect("segments are not removed during a flush");
                seg.written_bytes = new_written;
                seg.tail = new_tail;
                let mut last = st.written_end_offset - 1;
                for _ in 0..n {
                    let u = st
                        .unwritten
                        .pop_front()
                        .expect("planned batches are unwritten");
                    st.unwritten_segment.pop_front();
                    assert!(u.base_offset == last + 1, "written offsets contiguous");
                    last = u.last_offset;
                    st.unwritten_bytes -= u.bytes.len();
                }
                st.written_end_offset = last + 1;
            }
            synced_file = Some((file, seg_base));
        }
        if let Some((file, base)) = synced_file {
            let path = segment_file(&inner.dir, base, "log");
            let started = std::time::Instant::now();
            file.fdatasync().await.map_err(io_err("fdatasync", &path))?;
            inner.cache.borrow_mut().stats.fsync(started.elapsed());
        }
        let mut st = inner.state.borrow_mut();
        st.durable_end_offset = st.written_end_offset;
        st.durable_seq = st.durable_seq.max(covered_seq);
        st.high_watermark = match inner.config.durability {
            Durability::SyncEachAppend => st.durable_end_offset,
            Durability::FlushInterval { .. } => st.log_end_offset,
        };
        st.last_flush_ms = inner.storage.now_ms();
        Ok(())
    }

    async fn open_new_segment(&self, base: i64) -> Result<Rc<S::File>> {
        let inner = &*self.inner;
        // Seal every earlier segment that is not yet sealed (normally just the previous one).
        let prev: Vec<i64> = {
            let st = inner.state.borrow();
            st.segments
                .range(..base)
                .filter(|(_, s)| s.index_dirty && s.file.exists())
                .map(|(b, _)| *b)
                .collect()
        };
        for b in prev {
            if let Some(f) = self.segment_handle(b).await? {
                self.seal_segment(&f, b).await?;
            }
        }
        let path = segment_file(&inner.dir, base, "log");
        let file = inner
            .storage
            .open(&path, OpenMode::CreateTruncate)
            .await
            .map_err(io_err("create segment", &path))?;
        inner
            .storage
            .sync_dir(&inner.dir)
            .await
            .map_err(io_err("sync dir", &inner.dir))?;
        let file = Rc::new(file);
        {
            let mut st = inner.state.borrow_mut();
            st.recovery_point = st.recovery_point.max(base);
            if let Some(seg) = st.segments.get_mut(&base) {
                seg.file = SegmentFile::Pinned(file.clone());
            }
        }
        self.write_meta().await?;
        // Every batch below `base` is durable now (sealed above), so the roll's producer
        // snapshot may say so.
        self.write_pending_snapshots(base).await?;
        Ok(file)
    }

    /// Makes a complete segment durable and exact-sized, and writes its index files.
    pub(crate) async fn seal_segment(&self, file: &Rc<S::File>, base: i64) -> Result<()> {
        let inner = &*self.inner;
        let path = segment_file(&inner.dir, base, "log");
        let (size, offsets, times) = {
            let st = inner.state.borrow();
            let Some(seg) = st.segments.get(&base) else {
                return Ok(());
            };
            assert!(
                seg.written_bytes == seg.size_bytes,
                "seal a fully written segment"
            );
            (
                seg.size_bytes,
                seg.index.encode_offsets(),
                seg.index.encode_times(),
            )
        };
        file.truncate(size)
            .await
            .map_err(io_err("truncate", &path))?;
        file.fdatasync().await.map_err(io_err("fdatasync", &path))?;
        let ip = segment_file(&inner.dir, base, "index");
        write_file_atomic(&inner.storage, &ip, &offsets)
            .await
            .map_err(io_err("write index", &ip))?;
        let tp = segment_file(&inner.dir, base, "timeindex");
        write_file_atomic(&inner.storage, &tp, &times)
            .await
            .map_err(io_err("write time index", &tp))?;
        let evicted = {
            let mut st = inner.state.borrow_mut();
            let last = st.segments.keys().next_back().copied();
            let Some(seg) = st.segments.get_mut(&base) else {
                return Ok(());
            };
            seg.index_dirty = false;
            seg.allocated_bytes = size;
            // A sealed segment that is not the active one gives its file to the shard's
            // cache, which bounds how many such files stay open.
            if last != Some(base) && matches!(seg.file, SegmentFile::Pinned(_)) {
                seg.file = SegmentFile::Cached;
                inner
                    .files
                    .borrow_mut()
                    .insert(inner.id, seg.id, file.clone())
            } else {
                Vec::new()
            }
        };
        close_evicted(evicted).await;
        Ok(())
    }

    pub(crate) async fn write_meta(&self) -> Result<()> {
        let inner = &*self.inner;
        let m = {
            let st = inner.state.borrow();
            PartitionMeta {
                version: 1,
                log_start_offset: st.log_start_offset,
                recovery_point: st.recovery_point,
                leader_epochs: st.leader_epochs.clone(),
            }
        };
        let path = inner.dir.join(META_FILE);
        write_file_atomic(&inner.storage, &path, &meta::encode(&m))
            .await
            .map_err(io_err("write meta", &path))
    }

    /// Reads committed batches (below the high watermark) starting at the batch that holds
    /// `offset`; whole batches up to `max_bytes`, but the first batch is returned whole even
    /// if larger. Served from memory when the data is recent; otherwise one DMA read.
    /// `offset == high watermark` returns no batches; outside `[log start, log end]` is
    /// `OffsetOutOfRange`.
    pub async fn read(&self, offset: i64, max_bytes: usize) -> Result<ReadResult> {
        let upto = self.inner.state.borrow().high_watermark;
        self.read_upto(offset, max_bytes, upto).await
    }

    /// Like [`Partition::read`] but up to the log end offset (for follower fetches).
    pub async fn read_to_log_end(&self, offset: i64, max_bytes: usize) -> Result<ReadResult> {
        let upto = self.inner.state.borrow().log_end_offset;
        self.read_upto(offset, max_bytes, upto).await
    }

    async fn read_upto(&self, offset: i64, max_bytes: usize, upto: i64) -> Result<ReadResult> {
        let inner = &*self.inner;
        let (mut result, from_memory) = {
            let st = inner.state.borrow();
            if st.closed {
                return Err(ShardError::Closed {
                    topic: inner.topic.clone(),
                    partition: inner.partition,
                });
            }
            if offset < st.log_start_offset || offset > st.log_end_offset {
                return Err(ShardError::OffsetOutOfRange {
                    offset,
                    log_start_offset: st.log_start_offset,
                    log_end_offset: st.log_end_offset,
                });
            }
            let result = ReadResult {
                batches: Vec::new(),
                high_watermark: st.high_watermark,
                log_start_offset: st.log_start_offset,
                log_end_offset: st.log_end_offset,
            };
            if offset >= upto {
                return Ok(result);
            }
            let mem = inner
                .cache
                .borrow()
                .read(inner.id, offset, max_bytes, upto)
                .or_else(|| {
                    if offset >= st.written_end_offset {
                        collect_run(&st.unwritten, offset, max_bytes, upto)
                    } else {
                        None
                    }
                });
            (result, mem)
        };
        let mut last_from_disk = from_memory.is_none();
        {
            let mut cache = inner.cache.borrow_mut();
            if last_from_disk {
                cache.stats.cache_misses += 1;
            } else {
                cache.stats.cache_hits += 1;
            }
        }
        let mut out = match from_memory {
            Some(b) => b,
            None => self.read_disk(offset, max_bytes, upto, true).await?,
        };
        // A read may span disk, the cache and the unwritten queue: continue where the first
        // source stopped until the budget or the visible end is reached.
        loop {
            let total: usize = out.iter().map(Bytes::len).sum();
            let Some(last) = out.last() else { break };
            let next = batch_next_offset(last);
            if next >= upto || total >= max_bytes {
                break;
            }
            let more = {
                let st = inner.state.borrow();
                inner
                    .cache
                    .borrow()
                    .read(inner.id, next, max_bytes - total, upto)
                    .or_else(|| {
                        (next >= st.written_end_offset)
                            .then(|| collect_run(&st.unwritten, next, max_bytes - total, upto))
                            .flatten()
                    })
            };
            let more = match more {
                Some(m) => {
                    last_from_disk = false;
                    m
                }
                // A disk read already went as far as the budget and the segments allow; a
                // second one would only re-read the header it stopped at.
                None if last_from_disk => break,
                None => {
                    last_from_disk = true;
                    self.read_disk(next, max_bytes - total, upto, false).await?
                }
            };
            let mut added = false;
            let mut t = total;
            for b in more {
                if t + b.len() > max_bytes {
                    break;
                }
                t += b.len();
                out.push(b);
                added = true;
            }
            if !added {
                break;
            }
        }
        result.batches = out;
        Ok(result)
    }

    /// Reads batches from the segment files. With `first_whole`, the first batch is returned
    /// even if larger than `max_bytes` (Kafka's rule for the first batch of a fetch);
    /// without it every batch must fit (used to continue a read begun elsewhere).
    async fn read_disk(
        &self,
        offset: i64,
        max_bytes: usize,
        upto: i64,
        first_whole: bool,
    ) -> Result<Vec<Bytes>> {
        let inner = &*self.inner;
        let mut out: Vec<Bytes> = Vec::new();
        let mut total = 0usize;
        let mut cur = offset;
        loop {
            let (base, id, mut pos, limit, next_offset, mut expect, epochs) = {
                let st = inner.state.borrow();
                // Segments are contiguous, so the last one starting at or before `cur` holds
                // it, unless `cur` is at the log end.
                let Some((&base, seg)) = st.segments.range(..=cur).next_back() else {
                    return Ok(out);
                };
                if cur >= seg.next_offset || cur >= st.written_end_offset {
                    return Ok(out);
                }
                if !seg.file.exists() {
                    return Ok(out);
                }
                let rel = (cur - base).clamp(0, i64::from(u32::MAX)) as u32;
                let (entry_rel, pos) = seg.index.entry_for(rel);
                (
                    base,
                    seg.id,
                    u64::from(pos),
                    seg.written_bytes,
                    seg.next_offset,
                    base + i64::from(entry_rel),
                    st.leader_epochs.clone(),
                )
            };
            let Some(file) = self.segment_handle(base).await? else {
                return Ok(out);
            };
            // The segment may have been replaced while its file was opening (a compaction
            // swap): the positions above belong to the old one, so look it up again.
            if self.inner.state.borrow().segments.get(&base).map(|s| s.id) != Some(id) {
                continue;
            }
            let path = segment_file(&inner.dir, base, "log");
            let mut data = Bytes::new();
            let mut data_pos = pos;
            while pos < limit {
                let window = max_bytes
                    .saturating_sub(total)
                    .max(inner.shard_config.read_bytes_min)
                    .saturating_add(inner.config.index_interval_bytes as usize);
                let at = (pos - data_pos) as usize;
                let size = match peek_batch_size(data.get(at..).unwrap_or(&[])) {
                    Ok(Some(s)) => Some(s),
                    Ok(None) => None,
                    Err(e) => return Err(corrupt(&path, pos, e.to_string())),
                };
                let have = data.len().saturating_sub(at);
                // Stop before reading a batch that cannot be returned anyway.
                if let Some(sz) = size {
                    if (!out.is_empty() || !first_whole) && total + sz > max_bytes {
                        let mut hdr_base = [0u8; 8];
                        hdr_base.copy_from_slice(&data[at..at + 8]);
                        if i64::from_be_bytes(hdr_base) >= offset || !out.is_empty() {
                            return Ok(out);
                        }
                    }
                }
                if size.is_none_or(|s| s > have) {
                    let need = size.unwrap_or(record_batch::HEADER_BYTES);
                    if pos + need as u64 > limit {
                        return Err(corrupt(&path, pos, "batch runs past the segment end"));
                    }
                    let want = need.max(window).min((limit - pos) as usize);
                    data = file
                        .read_at(pos, want)
                        .await
                        .map_err(io_err("read", &path))?;
                    data_pos = pos;
                    if data.len() < need {
                        return Err(corrupt(&path, pos, "short read inside the segment"));
                    }
                    continue;
                }
                let size = size.unwrap_or(0);
                let batch = RecordBatch::new(data.slice(at..at + size))
                    .map_err(|e| corrupt(&path, pos, e.to_string()))?;
                batch
                    .validate_stored()
                    .map_err(|e| corrupt(&path, pos, e.to_string()))?;
                // baseOffset and partitionLeaderEpoch are outside the CRC: check them against
                // what the index and the leader epoch cache say. Offsets increase; compaction
                // may have left gaps between batches.
                if batch.base_offset() < expect || batch.last_offset() >= next_offset {
                    return Err(corrupt(
                        &path,
                        pos,
                        format!(
                            "batch base offset {} where {expect} was expected",
                            batch.base_offset()
                        ),
                    ));
                }
                let i = epochs.partition_point(|e| e.1 <= batch.base_offset());
                if i > 0 && epochs[i - 1].0 != batch.partition_leader_epoch() {
                    return Err(corrupt(
                        &path,
                        pos,
                        format!(
                            "batch leader epoch {} where {} was expected",
                            batch.partition_leader_epoch(),
                            epochs[i - 1].0
                        ),
                    ));
                }
                expect = batch.last_offset() + 1;
                pos += size as u64;
                if batch.last_offset() < offset {
                    continue;
                }
                if batch.base_offset() >= upto || (!out.is_empty() && total + size > max_bytes) {
                    return Ok(out);
                }
                total += size;
                out.push(batch.into_bytes());
            }
            cur = next_offset;
        }
    }

    /// The first offset whose record timestamp is at or after `timestamp_ms`, with that
    /// timestamp, among committed records; `None` if there is none (ListOffsets answers the
    /// log end then). Flushes first so the search sees the disk only.
    pub async fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Option<(i64, i64)>> {
        self.check_usable()?;
        let _g = self.inner.io_lock.lock().await;
        self.flush_locked().await?;
        let inner = &*self.inner;
        let (start_offset, hw, cands) = {
            let st = inner.state.borrow();
            let cands: Vec<(i64, u64)> = st
                .segments
                .iter()
                .filter(|(_, s)| {
                    s.max_timestamp >= timestamp_ms && s.next_offset > st.log_start_offset
                })
                .map(|(b, s)| (*b, u64::from(s.index.position_for_time(timestamp_ms))))
                .collect();
            (st.log_start_offset, st.high_watermark, cands)
        };
        for (base, pos) in cands {
            let mut cursor = pos;
            let Some(file) = self.segment_handle(base).await? else {
                continue;
            };
            loop {
                let limit = {
                    let st = inner.state.borrow();
                    let Some(seg) = st.segments.get(&base) else {
                        break;
                    };
                    seg.written_bytes
                };
                if cursor >= limit {
                    break;
                }
                let path = segment_file(&inner.dir, base, "log");
                let want = (limit - cursor).min(1 << 20) as usize;
                let data = file
                    .read_at(cursor, want)
                    .await
                    .map_err(io_err("read", &path))?;
                let mut progressed = 0usize;
                for b in Batches::new(data.clone()) {
                    let Ok(b) = b else { break };
                    b.validate_stored()
                        .map_err(|e| corrupt(&path, cursor + progressed as u64, e.to_string()))?;
                    progressed += b.size_bytes();
                    if b.base_offset() >= hw {
                        return Ok(None);
                    }
                    if b.max_timestamp() < timestamp_ms || b.last_offset() < start_offset {
                        continue;
                    }
                    if b.compression() == Ok(Compression::None) {
                        if let Ok(records) = b.records() {
                            for r in records.flatten() {
                                let o = b.base_offset() + i64::from(r.offset_delta);
                                let ts = b.base_timestamp() + r.timestamp_delta;
                                if ts >= timestamp_ms && o >= start_offset && o < hw {
                                    return Ok(Some((o, ts)));
                                }
                            }
                            continue;
                        }
                    }
                    return Ok(Some((b.base_offset().max(start_offset), b.max_timestamp())));
                }
                if progressed == 0 {
                    let need = peek_batch_size(&data).ok().flatten().unwrap_or(0);
                    if need == 0 || need as u64 > limit - cursor {
                        return Err(corrupt(&path, cursor, "unparseable batch"));
                    }
                    // A batch larger than the window: read it alone next time.
                    let d = file
                        .read_at(cursor, need)
                        .await
                        .map_err(io_err("read", &path))?;
                    let b =
                        RecordBatch::new(d).map_err(|e| corrupt(&path, cursor, e.to_string()))?;
                    b.validate_stored()
                        .map_err(|e| corrupt(&path, cursor, e.to_string()))?;
                    if b.base_offset() >= hw {
                        return Ok(None);
                    }
                    if b.max_timestamp() >= timestamp_ms && b.last_offset() >= start_offset {
                        return Ok(Some((b.base_offset().max(start_offset), b.max_timestamp())));
                    }
                    progressed = need;
                }
                cursor += progressed as u64;
            }
        }
        Ok(None)
    }

    /// Removes every batch whose last offset is at or after `offset` (a batch is never split):
    /// afterwards the log end offset is the base of the first removed batch, or `offset` if it
    /// was the log end. Durable when it returns. `offset` below the log start is an error.
    pub async fn truncate_to(&self, offset: i64) -> Result<()> {
        self.check_usable()?;
        let _g = self.inner.io_lock.lock().await;
        let _t = TruncatingGuard::new(self);
        self.flush_locked().await?;
        let inner = &*self.inner;
        {
            let st = inner.state.borrow();
            if offset < st.log_start_offset || offset > st.log_end_offset {
                return Err(ShardError::OffsetOutOfRange {
                    offset,
                    log_start_offset: st.log_start_offset,
                    log_end_offset: st.log_end_offset,
                });
            }
            if offset == st.log_end_offset {
                return Ok(());
            }
        }
        // Remove whole segments after the one that holds `offset`.
        let (keep_base, doomed): (i64, Vec<i64>) = {
            let st = inner.state.borrow();
            let first = *st.segments.keys().next().expect("segment");
            let keep = st
                .segments
                .range(..=offset)
                .next_back()
                .map_or(first, |(b, _)| *b);
            let doomed = st.segments.range(keep + 1..).map(|(b, _)| *b).collect();
            (keep, doomed)
        };
        for b in doomed.into_iter().rev() {
            if let Some(seg) = inner.state.borrow().segments.get(&b) {
                self.forget_segment_file(seg);
            }
            self.remove_segment_files(b).await?;
            inner.state.borrow_mut().segments.remove(&b);
        }
        // The kept segment is the active one from here on: it holds its file open.
        let file = self.pin_segment(keep_base).await?;
        // Find the cut inside the kept segment.
        let pos0 = {
            let st = inner.state.borrow();
            let seg = &st.segments[&keep_base];
            let rel = (offset - keep_base).clamp(0, i64::from(u32::MAX)) as u32;
            u64::from(seg.index.position_for(rel))
        };
        let path = segment_file(&inner.dir, keep_base, "log");
        let (cut_pos, new_end) = match &file {
            None => (0, keep_base),
            Some(file) => {
                let size = inner.state.borrow().segments[&keep_base].size_bytes;
                let mut p = pos0;
                let mut found = None;
                let mut end = inner.state.borrow().segments[&keep_base].next_offset;
                while p < size {
                    let hdr = file
                        .read_at(p, record_batch::HEADER_BYTES)
                        .await
                        .map_err(io_err("read", &path))?;
                    let n = peek_batch_size(&hdr)
                        .ok()
                        .flatten()
                        .filter(|&n| {
                            hdr.len() == record_batch::HEADER_BYTES && p + n as u64 <= size
                        })
                        .ok_or_else(|| corrupt(&path, p, "bad batch header during truncation"))?;
                    let mut b8 = [0u8; 8];
                    b8.copy_from_slice(&hdr[..8]);
                    let base = i64::from_be_bytes(b8);
                    let mut d4 = [0u8; 4];
                    d4.copy_from_slice(&hdr[23..27]);
                    let last = base + i64::from(i32::from_be_bytes(d4));
                    if last >= offset {
                        found = Some(p);
                        end = base;
                        break;
                    }
                    p += n as u64;
                }
                // No batch reaches `offset`: it lies in a compaction gap (or at the end), so
                // the log ends at `offset` itself.
                (
                    found.unwrap_or(size),
                    if found.is_some() {
                        end
                    } else {
                        end.min(offset)
                    },
                )
            }
        };
        if let Some(file) = &file {
            file.truncate(cut_pos)
                .await
                .map_err(io_err("truncate", &path))?;
            let align = file.alignment();
            let ts = cut_pos / align * align;
            let tail = file
                .read_at(ts, (cut_pos - ts) as usize)
                .await
                .map_err(io_err("read tail", &path))?;
            file.fdatasync().await.map_err(io_err("fdatasync", &path))?;
            let mut st = inner.state.borrow_mut();
            let seg = st.segments.get_mut(&keep_base).expect("kept segment");
            seg.tail = tail.to_vec();
        }
        {
            let mut st = inner.state.borrow_mut();
            let st = &mut *st;
            let seg = st.segments.get_mut(&keep_base).expect("kept segment");
            seg.size_bytes = cut_pos;
            seg.written_bytes = cut_pos;
            seg.allocated_bytes = cut_pos;
            seg.next_offset = new_end;
            seg.index.truncate_at(cut_pos as u32);
            seg.index_dirty = true;
            seg.max_timestamp = seg.index.times.last().map_or(-1, |t| t.0);
            assert!(new_end <= offset);
            st.log_end_offset = new_end;
            st.written_end_offset = new_end;
            st.durable_end_offset = new_end;
            st.high_watermark = st.high_watermark.min(new_end);
            st.recovery_point = st.recovery_point.min(keep_base);
            st.leader_epochs.retain(|e| e.1 < new_end);
            st.producers.truncate(new_end);
            st.pending_snapshots.retain(|(o, _)| *o <= new_end);
            st.cleaner.truncate(new_end);
            if st.log_start_offset > new_end {
                st.log_start_offset = new_end;
            }
            inner.cache.borrow_mut().truncate(inner.id, new_end);
        }
        // Index max timestamp after truncation is approximate; rescan to make it exact.
        if let Some(file) = &file {
            let gaps = keep_base < inner.state.borrow().cleaner.cleaned_upto;
            let scan = scan_segment(
                &**file,
                keep_base,
                cut_pos,
                inner.config.index_interval_bytes,
                1 << 20,
                gaps,
            )
            .await
            .map_err(io_err("scan segment", &path))?;
            let mut st = inner.state.borrow_mut();
            let seg = st.segments.get_mut(&keep_base).expect("kept segment");
            assert!(
                scan.valid_bytes == cut_pos,
                "truncated segment must scan clean"
            );
            assert!(scan.next_offset <= new_end || cut_pos == 0);
            seg.max_timestamp = scan.max_timestamp;
            seg.index = scan.index;
        }
        self.write_meta().await?;
        self.write_cleaner_checkpoint().await?;
        // Snapshots above the new end describe batches that are gone.
        self.prune_snapshots(new_end).await?;
        inner.appended.notify_all();
        Ok(())
    }

    async fn remove_segment_files(&self, base: i64) -> Result<()> {
        let inner = &*self.inner;
        for ext in ["log", "index", "timeindex"] {
            let p = segment_file(&inner.dir, base, ext);
            match inner.storage.remove(&p).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("remove", &p)(e)),
            }
        }
        inner
            .storage
            .sync_dir(&inner.dir)
            .await
            .map_err(io_err("sync dir", &inner.dir))
    }

    /// Moves the log start offset to `offset` (capped at the high watermark) and deletes the
    /// segments wholly below it. Returns the new log start offset; durable when it returns.
    pub async fn delete_records_before(&self, offset: i64) -> Result<i64> {
        self.check_usable()?;
        let _g = self.inner.io_lock.lock().await;
        self.flush_locked().await?;
        let inner = &*self.inner;
        let new_start = {
            let mut st = inner.state.borrow_mut();
            if offset < 0 || offset > st.high_watermark {
                return Err(ShardError::OffsetOutOfRange {
                    offset,
                    log_start_offset: st.log_start_offset,
                    log_end_offset: st.high_watermark,
                });
            }
            st.log_start_offset = st.log_start_offset.max(offset);
            st.log_start_offset
        };
        self.write_meta().await?;
        self.remove_segments_below(new_start).await?;
        inner.cache.borrow_mut().remove_before(inner.id, new_start);
        Ok(new_start)
    }

    /// Deletes closed segments whose offsets are all below `offset`.
    async fn remove_segments_below(&self, offset: i64) -> Result<()> {
        let doomed: Vec<i64> = {
            let st = self.inner.state.borrow();
            let active = *st.segments.keys().next_back().expect("segment");
            st.segments
                .iter()
                .filter(|(b, s)| **b != active && s.next_offset <= offset)
                .map(|(b, _)| *b)
                .collect()
        };
        for b in doomed {
            let seg = self.inner.state.borrow_mut().segments.remove(&b);
            if let Some(seg) = seg {
                self.forget_segment_file(&seg);
            }
            self.remove_segment_files(b).await?;
        }
        Ok(())
    }

    /// Applies `retention_ms` and `retention_bytes`: deletes the oldest closed segments that
    /// are too old or beyond the size budget, moving the log start offset past them. The
    /// active segment is never deleted. Returns the number of segments deleted.
    /// Also expires idle producers ([`Partition::expire_producers`]), so the housekeeping
    /// that drives retention bounds the producer table too.
    pub async fn enforce_retention(&self) -> Result<usize> {
        self.check_usable()?;
        self.expire_producers();
        let _g = self.inner.io_lock.lock().await;
        // Segments about to be deleted must not hold unwritten batches.
        self.flush_locked().await?;
        let inner = &*self.inner;
        let now = inner.storage.now_ms();
        let new_start = {
            let st = inner.state.borrow();
            let mut total: u64 = st.segments.values().map(|s| s.size_bytes).sum();
            let active = *st.segments.keys().next_back().expect("segment");
            let mut new_start = None;
            for (b, s) in &st.segments {
                if *b == active {
                    break;
                }
                let too_old = inner
                    .config
                    .retention_ms
                    .is_some_and(|r| s.max_timestamp < now - r);
                let too_big = inner
                    .config
                    .retention_bytes
                    .is_some_and(|r| total - s.size_bytes >= r);
                if !(too_old || too_big) || s.next_offset > st.high_watermark {
                    break;
                }
                total -= s.size_bytes;
                new_start = Some(s.next_offset);
            }
            new_start
        };
        let Some(new_start) = new_start else {
            return Ok(0);
        };
        let before = inner.state.borrow().segments.len();
        {
            let mut st = inner.state.borrow_mut();
            st.log_start_offset = st.log_start_offset.max(new_start);
        }
        self.write_meta().await?;
        self.remove_segments_below(new_start).await?;
        inner.cache.borrow_mut().remove_before(inner.id, new_start);
        Ok(before - inner.state.borrow().segments.len())
    }

    /// Forgets idempotent producers whose newest batch's `maxTimestamp` is
    /// `producer_id_expiration_ms` or more before now (Kafka's `producer.id.expiration.ms`);
    /// their next batch is accepted at any sequence. In memory only: the next snapshot (roll
    /// or close) leaves them out, and loading an older snapshot drops them again. Returns the
    /// number forgotten.
    pub fn expire_producers(&self) -> usize {
        let inner = &*self.inner;
        let now = inner.storage.now_ms();
        let n = inner
            .state
            .borrow_mut()
            .producers
            .expire(now, inner.config.producer_id_expiration_ms);
        if n > 0 {
            tracing::debug!(partition = ?self, expired = n, "idle producers expired");
        }
        n
    }

    /// Idempotent producers the partition remembers now.
    pub fn producer_count(&self) -> usize {
        self.inner.state.borrow().producers.len()
    }

    /// Closes the active segment and starts a new one at the log end (if the active one holds
    /// any batch). Durable when it returns.
    pub async fn roll(&self) -> Result<()> {
        self.check_usable()?;
        let _g = self.inner.io_lock.lock().await;
        self.flush_locked().await?;
        let inner = &*self.inner;
        let leo = {
            let mut st = inner.state.borrow_mut();
            let leo = st.log_end_offset;
            let active = st.segments.values().next_back().expect("segment");
            if active.size_bytes == 0 {
                return Ok(());
            }
            let now = inner.storage.now_ms();
            // Flushed and no await since: the table holds exactly the batches below `leo`.
            let snapshot = st.producers.encode_snapshot(leo);
            st.pending_snapshots.push((leo, snapshot));
            st.segments.insert(leo, Segment::new(leo, now));
            leo
        };
        self.open_new_segment(leo).await?;
        Ok(())
    }

    /// Waits until the high watermark moves past `after_offset` (or the partition closes or
    /// fails). Returns at once if it already has. No polling: woken by appends and syncs.
    pub async fn wait_for_append(&self, after_offset: i64) {
        loop {
            let seen = self.inner.appended.generation();
            {
                let st = self.inner.state.borrow();
                if st.high_watermark > after_offset || st.closed || st.poisoned.is_some() {
                    return;
                }
            }
            self.inner.appended.wait(seen).await;
        }
    }

    /// Flushes, writes the active segment's index files and the metadata with the recovery
    /// point at the log end (so the next open need not scan), and closes the files.
    pub async fn close(&self) -> Result<()> {
        let _g = self.inner.io_lock.lock().await;
        if self.inner.state.borrow().closed {
            return Ok(());
        }
        let r = self.close_locked().await;
        let inner = &*self.inner;
        inner.state.borrow_mut().closed = true;
        inner.cache.borrow_mut().remove_partition(inner.id);
        let cached = inner.files.borrow_mut().remove_partition(inner.id);
        close_evicted(cached).await;
        inner.appended.notify_all();
        inner.synced.notify_all();
        r
    }

    async fn close_locked(&self) -> Result<()> {
        if self.inner.state.borrow().poisoned.is_some() {
            return Ok(());
        }
        // Refuse new appends from here on; the flush below covers every earlier one.
        self.inner.state.borrow_mut().closed = true;
        self.flush_locked().await?;
        let inner = &*self.inner;
        let dirty: Vec<i64> = {
            let st = inner.state.borrow();
            st.segments
                .iter()
                .filter(|(_, s)| s.index_dirty && s.file.exists())
                .map(|(b, _)| *b)
                .collect()
        };
        for b in dirty {
            if let Some(f) = self.segment_handle(b).await? {
                self.seal_segment(&f, b).await?;
            }
        }
        let (leo, snapshot) = {
            let mut st = inner.state.borrow_mut();
            st.recovery_point = st.log_end_offset;
            (
                st.log_end_offset,
                st.producers.encode_snapshot(st.log_end_offset),
            )
        };
        self.write_meta().await?;
        // The next open loads this and replays nothing.
        self.write_pending_snapshots(leo).await?;
        self.write_snapshot(leo, &snapshot).await?;
        self.prune_snapshots(i64::MAX).await
    }

    /// Bytes this partition holds on disk (sum of its segments' logical sizes).
    pub fn size_bytes(&self) -> u64 {
        self.inner
            .state
            .borrow()
            .segments
            .values()
            .map(|s| s.size_bytes)
            .sum()
    }

    /// Number of segments.
    pub fn segment_count(&self) -> usize {
        self.inner.state.borrow().segments.len()
    }
}

/// Holds appends off while a truncation rewrites the log end; clears on every exit path.
struct TruncatingGuard<'a, S: Storage> {
    p: &'a Partition<S>,
}

impl<'a, S: Storage> TruncatingGuard<'a, S> {
    fn new(p: &'a Partition<S>) -> Self {
        p.inner.state.borrow_mut().truncating = true;
        Self { p }
    }
}

impl<S: Storage> Drop for TruncatingGuard<'_, S> {
    fn drop(&mut self) {
        self.p.inner.state.borrow_mut().truncating = false;
        self.p.inner.appended.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use futures_lite::future::{block_on, poll_once};
    use sluice_net::record_batch::build::{BatchSpec, batch};

    use crate::{FakeDisk, Faults, LogConfig, Shard, ShardConfig};

    /// An acks append that finds the partition's I/O lock held by work that does not flush
    /// (compaction's swap, retention) completes once the lock is released; it used to wait
    /// for a flush that never came on an idle partition.
    #[test]
    fn append_behind_a_holder_that_does_not_flush_completes() {
        let disk = FakeDisk::new(7, Faults::default(), 1_000_000);
        block_on(async {
            let s = Shard::open(disk.clone(), Path::new("/d"), ShardConfig::default())
                .await
                .expect("shard");
            let p = s
                .create_partition("t", 0, LogConfig::default())
                .await
                .expect("partition");
            let guard = p.inner.io_lock.try_lock().expect("free");
            let mut append = Box::pin(p.append(batch(
                &BatchSpec::default(),
                &[(None, Some(b"v".as_slice()))],
            )));
            assert!(poll_once(&mut append).await.is_none(), "waits for the lock");
            drop(guard);
            for _ in 0..1000 {
                if let Some(r) = poll_once(&mut append).await {
                    assert_eq!(r.expect("appended").base_offset, 0);
                    return;
                }
            }
            panic!("the append never completed after the lock was released");
        });
    }
}
