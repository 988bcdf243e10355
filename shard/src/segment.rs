//! One log segment in memory: its offset range, sizes, sparse index and where its file handle
//! is (`SegmentFile`), plus the file naming (`segment_file`).
//!
//! Owned by a partition's `LogState` (one core). Compaction reads segments only through the
//! methods here, never their fields, so the partition stays the one writer of a segment.
//!
//! Segment file layout: batches back to back from byte 0, exactly as stored by Kafka. The file
//! may be longer than its batches (fallocate steps, zero padding to the direct-I/O block); the
//! logical end is found by framing and CRC on recovery and kept in `Segment::size_bytes`.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::index::SparseIndex;

/// Where a segment's file handle is.
pub(crate) enum SegmentFile<F> {
    /// No file yet: a new segment before its first write.
    Missing,
    /// Held open by the partition: the active segment, and a rolled one until it is sealed
    /// (or a closed one while a compaction swap renames files under it).
    Pinned(Rc<F>),
    /// Sealed and closed: opened on demand through the shard's `FileCache`.
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

/// One segment of a partition's log, covering offsets `[base_offset, next_offset)`.
///
/// Fields are the partition's to change (only the owning core, between awaits); everyone else
/// (compaction) reads a segment through the methods below.
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
    /// Whether its `.txnindex` file exists (aborted transactions ended in it).
    pub(crate) txn_index: bool,
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
            txn_index: false,
            tail: Vec::new(),
            allocated_bytes: 0,
        }
    }

    /// First offset the segment covers.
    pub(crate) fn base_offset(&self) -> i64 {
        self.base_offset
    }

    /// One past the last offset the segment covers (the next segment's base).
    pub(crate) fn next_offset(&self) -> i64 {
        self.next_offset
    }

    /// Bytes of batches in the segment (its logical size).
    pub(crate) fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// Largest batch `maxTimestamp` in the segment; -1 if none.
    pub(crate) fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }

    /// The segment's core-unique id (see the field).
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Whether every batch assigned to the segment has been handed to the kernel.
    pub(crate) fn is_fully_written(&self) -> bool {
        self.written_bytes == self.size_bytes
    }

    /// Whether the segment has a file yet.
    pub(crate) fn has_file(&self) -> bool {
        self.file.exists()
    }
}

/// The path of segment `base`'s file with extension `ext` (`log`, `index`, `timeindex`).
pub(crate) fn segment_file(dir: &Path, base: i64, ext: &str) -> PathBuf {
    dir.join(format!("{base:020}.{ext}"))
}
