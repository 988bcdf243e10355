//! Opening a partition: finishing an interrupted compaction swap, then an interrupted log
//! reset (`log_reset.rs`: the old log's files go, an empty log at the marker's offset stays),
//! reading `partition.meta` and the cleaner checkpoint, then recovering each segment (trusted
//! closed segments by their index files, the rest by a framing and CRC scan that truncates a
//! torn tail) and checking that the segments are contiguous. Opening never panics on file
//! content.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::rc::Rc;

use bytes::Bytes;
use sluice_net::record_batch::{self, Batches, RecordBatch, peek_batch_size};

use super::{LogEnds, LogState, Partition, PartitionInner, corrupt};
use crate::cache::BatchCache;
use crate::cleaner_checkpoint;
use crate::cleaner_checkpoint::CleanerState;
use crate::compact;
use crate::config::{Durability, LogConfig, ShardConfig};
use crate::error::{Result, ShardError, io_err};
use crate::files::{FileCache, close_evicted};
use crate::index::SparseIndex;
use crate::io::{OpenMode, Storage, StorageFile, read_file};
use crate::limits::SCAN_READ_BYTES;
use crate::log_reset;
use crate::meta::{self, META_FILE, PartitionMeta};
use crate::notify::{AsyncLock, Notify};
use crate::producer_state::{ProducerEvent, ProducerTable};
use crate::segment::{Segment, SegmentFile, segment_file};
use crate::transactions::Transactions;

/// Result of scanning a segment's bytes.
pub(super) struct ScanResult {
    /// Batches and transaction markers of producers, in offset order.
    pub(super) producers: Vec<ProducerEvent>,
    pub(super) valid_bytes: u64,
    pub(super) next_offset: i64,
    pub(super) max_timestamp: i64,
    pub(super) index: SparseIndex,
    /// Whether the bytes right after `valid_bytes` (a batch header's worth) hold anything but
    /// zeros, when the scan's last read covered them; `None` when it did not.
    pub(super) tail_not_zeros: Option<bool>,
}

/// Whether a scan keeps `batch`, found at byte `pos` where offset `next` was due: framing
/// (magic, CRC) checked, and strict contiguity unless the segment was compacted (then gaps
/// are allowed, but offsets still increase). A flipped baseOffset, which the CRC does not
/// cover, ends the valid part of the segment here; so do offsets or positions past the
/// index's 32-bit fields.
fn scan_accepts(batch: &RecordBatch, next: i64, base_offset: i64, pos: u64, gaps: bool) -> bool {
    if batch.validate_stored().is_err() {
        return false;
    }
    let base = batch.base_offset();
    let last = batch.last_offset();
    !(base < next
        || (base != next && !gaps)
        || last < base
        || base - base_offset > i64::from(u32::MAX)
        || pos > u64::from(u32::MAX))
}

/// Scans batches from position 0 (or from `start` with an existing index prefix), checking
/// framing, magic, CRC and offset order; stops at the first bad batch.
pub(super) async fn scan_segment<F: StorageFile>(
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
        if !scan_accepts(&batch, next, base_offset, pos, allow_gaps) {
            break;
        }
        let base = batch.base_offset();
        let last = batch.last_offset();
        max_ts = max_ts.max(batch.max_timestamp());
        if let Some(event) = ProducerEvent::of(&batch, base, batch.max_timestamp()) {
            producers.push(event);
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
    let tail = buf.get((pos - buf_pos) as usize..).unwrap_or(&[]);
    let tail = &tail[..tail.len().min(record_batch::LOG_OVERHEAD_BYTES)];
    let tail_not_zeros = (!tail.is_empty()).then(|| tail.iter().any(|&b| b != 0));
    Ok(ScanResult {
        tail_not_zeros,
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
        // Finish a compaction swap a crash interrupted (or drop its unfinished output) before
        // looking at the segments.
        compact::recover_swap(&storage, &dir).await?;
        // Then finish a log reset a crash interrupted: it drops whatever segments are left.
        log_reset::finish_interrupted(&storage, &dir).await?;
        let names = storage
            .list_dir(&dir)
            .await
            .map_err(io_err("list dir", &dir))?;
        // Segments below `gaps_below` were compacted and may have offset gaps.
        let (cleaner, gaps_below) = cleaner_checkpoint::load(&storage, &dir, &names).await;
        let meta = read_meta(&storage, &dir, &names).await?;
        let recovery = Recovery {
            storage: &storage,
            dir: &dir,
            config: &config,
            shard_config: &shard_config,
            files: &files,
            partition_id: id,
            gaps_below,
            now,
        };
        let recovery_point = meta.as_ref().map_or(0, |m| m.recovery_point);
        let (segments, scanned) = recovery.segments(&names, recovery_point).await?;
        let state = initial_state(segments, meta, cleaner, &config, now);
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
                readahead: Default::default(),
            }),
        };
        p.load_producers(&names, &scanned).await?;
        p.write_meta().await?;
        Ok(p)
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
}

/// `partition.meta`, if the directory has one; a damaged one is an error.
async fn read_meta<S: Storage>(
    storage: &S,
    dir: &Path,
    names: &[String],
) -> Result<Option<PartitionMeta>> {
    if !names.iter().any(|n| n == META_FILE) {
        return Ok(None);
    }
    let meta_path = dir.join(META_FILE);
    let data = read_file(storage, &meta_path)
        .await
        .map_err(io_err("read meta", &meta_path))?;
    let meta = meta::decode(&data).map_err(|detail| ShardError::BadMeta {
        path: meta_path.clone(),
        detail,
    })?;
    Ok(Some(meta))
}

/// The state of a log just recovered: its segments (an empty one at the log start if there
/// were none), the log start from the metadata within the segments, every end at the
/// recovered end, and the leader epochs below it.
fn initial_state<F>(
    mut segments: BTreeMap<i64, Segment<F>>,
    meta: Option<PartitionMeta>,
    cleaner: CleanerState,
    config: &LogConfig,
    now: i64,
) -> LogState<F> {
    if segments.is_empty() {
        let start = meta.as_ref().map_or(0, |m| m.log_start_offset);
        segments.insert(start, Segment::new(start, now));
    }
    let recovery_point = meta.as_ref().map_or(0, |m| m.recovery_point);
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
    LogState {
        segments,
        log_start_offset,
        // Recovery synced what it kept, so all of it is durable and committed.
        ends: LogEnds::recovered(
            log_end_offset,
            matches!(config.durability, Durability::SyncEachAppend),
        ),
        unwritten: VecDeque::new(),
        unwritten_segment: VecDeque::new(),
        unwritten_bytes: 0,
        truncating: false,
        append_seq: 0,
        durable_seq: 0,
        recovery_point,
        leader_epochs,
        leader_epoch,
        hw_bound: i64::MAX,
        producers: ProducerTable::default(),
        txns: Transactions::default(),
        verifications: Default::default(),
        pending_snapshots: Vec::new(),
        poisoned: None,
        closed: false,
        last_flush_ms: now,
        cleaner,
    }
}

/// Whether something that is not padding follows the last valid batch of the active segment,
/// at `valid` of its `file_bytes`: a batch header (a torn or corrupt batch, which recovery
/// cuts) rather than the zeros the file holds past its batches (the direct-I/O block's
/// padding, preallocation). Only for the log line, when the scan's last read did not cover
/// those bytes; a failed read says no.
async fn batch_starts_at<F: StorageFile>(file: &F, valid: u64, file_bytes: u64) -> bool {
    let len = (file_bytes - valid).min(record_batch::LOG_OVERHEAD_BYTES as u64) as usize;
    file.read_at(valid, len)
        .await
        .is_ok_and(|head| head.iter().any(|&b| b != 0))
}

/// Idempotent-producer batches of the segments recovery scanned, by segment base, so the
/// producer-state replay need not read those again.
pub(super) type Scanned = BTreeMap<i64, Vec<ProducerEvent>>;

/// What recovering one partition directory's segments needs.
struct Recovery<'a, S: Storage> {
    storage: &'a S,
    dir: &'a Path,
    config: &'a LogConfig,
    shard_config: &'a ShardConfig,
    files: &'a Rc<RefCell<FileCache<S::File>>>,
    partition_id: u64,
    /// Segments below this were compacted and may have offset gaps.
    gaps_below: i64,
    now: i64,
}

impl<S: Storage> Recovery<'_, S> {
    /// Recovers every `<base>.log` in `names`, in offset order, checking that each starts
    /// where the previous one ends. Segments wholly below `recovery_point` are trusted (their
    /// index files are checked against their tail); the rest are scanned.
    async fn segments(
        &self,
        names: &[String],
        recovery_point: i64,
    ) -> Result<(BTreeMap<i64, Segment<S::File>>, Scanned)> {
        let mut bases: Vec<i64> = names
            .iter()
            .filter_map(|n| n.strip_suffix(".log"))
            .filter(|s| s.len() == 20)
            .filter_map(|s| s.parse::<i64>().ok())
            .collect();
        bases.sort_unstable();
        let mut segments: BTreeMap<i64, Segment<S::File>> = BTreeMap::new();
        let mut scanned = Scanned::new();
        for (i, &base) in bases.iter().enumerate() {
            let path = segment_file(self.dir, base, "log");
            let file = self
                .storage
                .open(&path, OpenMode::Existing)
                .await
                .map_err(io_err("open segment", &path))?;
            let is_last = i + 1 == bases.len();
            let trusted = !is_last && bases[i + 1] <= recovery_point;
            let (mut seg, producers) = self.load_segment(&file, base, is_last, trusted).await?;
            if let Some(producers) = producers {
                scanned.insert(base, producers);
            }
            self.check_follows(&mut segments, base, &path)?;
            self.place_segment(&mut seg, file, is_last).await?;
            segments.insert(base, seg);
        }
        Ok((segments, scanned))
    }

    /// Recovers segment `base` from its file: by its index files if `trusted` and they
    /// check out, else by a scan that cuts a torn tail (then with the producer batches it
    /// saw).
    async fn load_segment(
        &self,
        file: &S::File,
        base: i64,
        is_last: bool,
        trusted: bool,
    ) -> Result<(Segment<S::File>, Option<Vec<ProducerEvent>>)> {
        let path = segment_file(self.dir, base, "log");
        let file_bytes = file.size().await.map_err(io_err("stat segment", &path))?;
        let gaps = base < self.gaps_below;
        let mut seg = Segment::new(base, self.now);
        let mut producers = None;
        let loaded = if trusted {
            Partition::load_trusted(self.storage, self.dir, file, base, file_bytes, gaps).await?
        } else {
            None
        };
        if let Some((idx, (next_offset, max_timestamp))) = loaded {
            seg.index = idx;
            seg.index_dirty = false;
            seg.size_bytes = file_bytes;
            seg.next_offset = next_offset;
            seg.max_timestamp = max_timestamp;
        } else {
            let chunk = self.shard_config.read_bytes_min.max(SCAN_READ_BYTES);
            let interval = self.config.index_interval_bytes;
            let scan = scan_segment(file, base, file_bytes, interval, chunk, gaps)
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
                } else if match scan.tail_not_zeros {
                    Some(not_zeros) => not_zeros,
                    None => batch_starts_at(file, scan.valid_bytes, file_bytes).await,
                } {
                    tracing::warn!(
                        path = %path.display(),
                        valid = scan.valid_bytes,
                        next_offset = scan.next_offset,
                        file_bytes,
                        "truncating a torn batch at the end of the log"
                    );
                }
                file.truncate(scan.valid_bytes)
                    .await
                    .map_err(io_err("truncate torn tail", &path))?;
            }
            producers = Some(scan.producers);
            seg.size_bytes = scan.valid_bytes;
            seg.next_offset = scan.next_offset;
            seg.max_timestamp = scan.max_timestamp;
            seg.index = scan.index;
            seg.index_dirty = true;
        }
        seg.written_bytes = seg.size_bytes;
        seg.allocated_bytes = seg.size_bytes;
        Ok((seg, producers))
    }

    /// Checks that segment `base` starts where the last recovered one ends. A compacted
    /// segment still covers offsets up to the next segment's base, even where its last
    /// batches were removed, so its end moves up to `base`.
    fn check_follows(
        &self,
        segments: &mut BTreeMap<i64, Segment<S::File>>,
        base: i64,
        path: &Path,
    ) -> Result<()> {
        let Some((&prev_base, prev)) = segments.iter_mut().next_back() else {
            return Ok(());
        };
        if prev_base < self.gaps_below && prev.next_offset < base {
            prev.next_offset = base;
        }
        if prev.next_offset != base {
            return Err(corrupt(
                path,
                0,
                format!(
                    "segment starts at offset {base} but the previous one ends at {}",
                    prev.next_offset
                ),
            ));
        }
        Ok(())
    }

    /// Gives a recovered segment its file: the last one (active) keeps it pinned, with its
    /// tail block read back and everything synced; the others go to the file cache.
    async fn place_segment(
        &self,
        seg: &mut Segment<S::File>,
        file: S::File,
        is_last: bool,
    ) -> Result<()> {
        if !is_last {
            seg.file = SegmentFile::Cached;
            let evicted = self
                .files
                .borrow_mut()
                .insert(self.partition_id, seg.id, Rc::new(file));
            close_evicted(evicted).await;
            return Ok(());
        }
        let path = segment_file(self.dir, seg.base_offset, "log");
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
        seg.file = SegmentFile::Pinned(Rc::new(file));
        Ok(())
    }
}
