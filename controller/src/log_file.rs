//! `FileLog`: the KRaft metadata log on disk in Kafka's own layout, so Kafka's tools read it
//! (`kafka-dump-log --cluster-metadata-decoder`) and sluice reads what Kafka wrote.
//!
//! Layout: a directory `<data-dir>/__cluster_metadata-0/` of segment files
//! `{base_offset:020}.log`, each a run of v2 record batches. No `.index`/`.timeindex` files:
//! `kafka-dump-log` reads a `.log` alone, and sluice finds entries by keeping them in memory.
//! No `leader-epoch-checkpoint` either: the epochs are in every batch header and are rebuilt
//! by the scan at open.
//!
//! Mapping (what sluice writes): one quorum entry is one record in one batch; the batch's base
//! offset is the entry's offset, its partition leader epoch the entry's epoch, producer id -1,
//! no compression, CreateTime = the `now_ms` the caller last set (`set_now_ms`; sans-IO, like
//! the replica's clock). `Payload::LeaderChange` is a control batch (attribute bit 5) whose
//! record has Kafka's control key (version 0, type 2) and a `LeaderChangeMessage` v0 value
//! (leader, the voters given at open, and as granting voters the leader alone: it surely voted
//! for itself, the replica does not report who else did, and Kafka only displays the field).
//! `Payload::Data(bytes)` is a record whose value is those bytes (the caller frames a
//! `VersionedRecord`; not interpreted here).
//!
//! Reading accepts more than it writes: a batch of several records (as Kafka writes them)
//! becomes several entries at consecutive offsets, so offsets stay Kafka's offsets.
//!
//! Snapshots (KIP-630): `{end_offset:020}-{epoch:010}.checkpoint` files next to the segments,
//! each the bytes of `Snapshot::data` (record batches from a header to a footer, see
//! `crate::snapshot`), written to a `.part` file, fsynced, renamed and the directory fsynced.
//! At open the newest checkpoint that validates is the snapshot and the log start (older or
//! torn ones are ignored; `.part` leftovers deleted); entries below it are not kept, and a log
//! that ends below it (a crash during `install_snapshot`) is dropped. `truncate_prefix` deletes
//! the segments wholly below the new start and the older checkpoints.
//!
//! Invariants, asserted or checked at open: entries are contiguous from the log start (the
//! latest snapshot's end offset, or 0); epochs never decrease; each segment's name is the base
//! offset of its first batch; the first segment starts at or below the log start;
//! `locations.len()` (the flushed entries) `<= entries.len()`.

use crate::batch::{batch_payloads, encode_entry};
use crate::storage_error::StorageError;
use bytes::Bytes;
use sluice_net::record_batch::{Batches, RecordBatch};
use sluice_quorum::{Entry, Epoch, Log, NodeId, Offset, OffsetAndEpoch, Snapshot};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The directory name of the metadata log inside a data directory (Kafka's topic
/// `__cluster_metadata`, partition 0).
pub const METADATA_LOG_DIR: &str = "__cluster_metadata-0";

/// Default segment size. Kafka's `metadata.log.segment.bytes` defaults to 1 GiB, sized for a
/// log that snapshots delete from. Here the size sets how finely a snapshot frees space (only
/// whole segments below it are deleted): 1 MiB is about ten thousand metadata records, small
/// enough to delete in steps and to rescan quickly.
pub const SEGMENT_BYTES_MAX_DEFAULT: u64 = 1 << 20;

/// What `FileLog::open` needs besides the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileLogConfig {
    /// The quorum's voters, written into every LeaderChange record.
    pub voters: Vec<NodeId>,
    /// A segment rolls before a batch would take it past this size (a bigger single batch
    /// still goes into an empty segment).
    pub segment_bytes_max: u64,
}

impl FileLogConfig {
    /// A config for `voters` with the default segment size.
    pub fn new(voters: Vec<NodeId>) -> FileLogConfig {
        FileLogConfig {
            voters,
            segment_bytes_max: SEGMENT_BYTES_MAX_DEFAULT,
        }
    }
}

/// What the scan at open found and repaired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Recovery {
    /// Bytes cut from the end of a segment because they were not a whole valid batch (a torn
    /// write), plus the sizes of later segments deleted with them.
    pub truncated_bytes: u64,
    /// Segments after the torn one that were deleted (Kafka's recovery does the same).
    pub deleted_segments: usize,
    /// Checkpoint files that did not validate (torn or foreign) and were skipped.
    pub ignored_snapshots: usize,
}

/// Where a flushed entry's batch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Location {
    segment: usize,
    position: u64,
}

/// One `.log` file.
#[derive(Debug)]
struct Segment {
    base_offset: i64,
    path: PathBuf,
    file: File,
    size_bytes: u64,
}

/// The metadata log in a Kafka-format directory.
///
/// Lives on the controller's own executor thread, never on a data core: it uses blocking
/// `std::fs` calls (a write and an fdatasync per `flush`), which would stall a glommio reactor
/// serving produce requests but are fine on a thread that only runs the controller.
///
/// Durability: `append` only buffers (the entry is readable at once, nothing is written);
/// `flush` writes every unflushed entry and fdatasyncs before returning (a new segment's
/// directory entry is synced too); `truncate_to` below the flushed end cuts the files and
/// syncs before returning. One caller at a time (`&mut self`). An I/O error in the `Log`
/// methods panics: after a failed fsync the page cache state is unknown, so the process must
/// restart and recover from the files (the `try_` methods return the error instead).
///
/// Memory: every entry since the log start stays in memory (about the log's size on disk plus
/// ~40 bytes per entry), and the latest snapshot's bytes; snapshots bound both.
#[derive(Debug)]
pub struct FileLog {
    dir: PathBuf,
    config: FileLogConfig,
    now_ms: i64,
    /// The log start: the offset of `entries[0]`, with the epoch of the entry before it.
    start: OffsetAndEpoch,
    /// At open only: the offset the next scanned batch must have.
    scan_next: i64,
    entries: Vec<Entry>,
    /// The batch position of each flushed entry; its length is the flushed end.
    locations: Vec<Location>,
    /// Never empty after `open`; the last one is the active segment.
    segments: Vec<Segment>,
    recovery: Recovery,
    /// The latest snapshot, also in its `.checkpoint` file.
    snapshot: Option<Snapshot>,
}

impl FileLog {
    /// The metadata log's directory inside `data_dir`.
    pub fn dir_in(data_dir: &Path) -> PathBuf {
        data_dir.join(METADATA_LOG_DIR)
    }

    /// Opens (creating if needed) the log in `dir`: scans every segment, checks each batch's
    /// CRC, truncates at the first torn or invalid batch and deletes later segments (what a
    /// crash leaves), and rebuilds the entries. Fails on what a crash cannot explain (offsets
    /// that do not continue, epochs going down, valid batches it cannot read).
    pub fn open(dir: &Path, config: FileLogConfig) -> Result<FileLog, StorageError> {
        assert!(
            config.segment_bytes_max > 0,
            "segment_bytes_max must be positive"
        );
        std::fs::create_dir_all(dir).map_err(StorageError::io("create directory", dir))?;
        let mut log = FileLog {
            dir: dir.to_path_buf(),
            config,
            now_ms: 0,
            start: OffsetAndEpoch::default(),
            scan_next: 0,
            entries: Vec::new(),
            locations: Vec::new(),
            segments: Vec::new(),
            recovery: Recovery::default(),
            snapshot: None,
        };
        log.load_snapshot()?;
        let paths = segment_paths(dir)?;
        log.scan_next = paths.first().map_or(log.start.offset.0, |(base, _)| {
            (*base).min(log.start.offset.0)
        });
        for (index, (base_offset, path)) in paths.iter().enumerate() {
            if !log.recover_segment(*base_offset, path)? {
                log.delete_segments_after(&paths[index + 1..])?;
                break;
            }
        }
        if log.scan_next < log.start.offset.0 {
            // The segments end below the snapshot (a crash inside `install_snapshot`): the
            // snapshot stands for all of them.
            log.drop_all_segments()?;
        }
        if log.segments.is_empty() {
            log.roll(log.start.offset.0)?;
        }
        assert_eq!(log.locations.len(), log.entries.len());
        Ok(log)
    }

    /// Makes the newest checkpoint file that validates the snapshot and the log start.
    fn load_snapshot(&mut self) -> Result<(), StorageError> {
        for (id, path) in checkpoint_paths(&self.dir)?.into_iter().rev() {
            let bytes = std::fs::read(&path).map_err(StorageError::io("read checkpoint", &path))?;
            if crate::snapshot::validate(&bytes).is_err() {
                self.recovery.ignored_snapshots += 1;
                continue;
            }
            self.start = id;
            self.snapshot = Some(Snapshot { id, data: bytes });
            break;
        }
        Ok(())
    }

    /// Writes `snapshot`'s checkpoint file durably: a `.part` file, fsync, rename, fsync the
    /// directory.
    fn write_checkpoint(&self, snapshot: &Snapshot) -> Result<(), StorageError> {
        let path = self.dir.join(checkpoint_name(snapshot.id));
        let part = path.with_extension("checkpoint.part");
        let io = |op| StorageError::io(op, &part);
        let file = File::create(&part).map_err(io("create checkpoint"))?;
        file.write_all_at(&snapshot.data, 0).map_err(io("write"))?;
        file.sync_all().map_err(io("fsync"))?;
        std::fs::rename(&part, &path).map_err(StorageError::io("rename checkpoint", &path))?;
        sync_dir(&self.dir)
    }

    /// Deletes the checkpoint files of snapshots older than the latest.
    fn delete_older_checkpoints(&self) -> Result<(), StorageError> {
        let latest = self.snapshot.as_ref().map_or(Offset(0), |s| s.id.offset);
        let mut deleted = false;
        for (id, path) in checkpoint_paths(&self.dir)? {
            if id.offset < latest {
                remove_file(&path)?;
                deleted = true;
            }
        }
        if deleted {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Deletes every segment and forgets every entry (the snapshot stands for them).
    fn drop_all_segments(&mut self) -> Result<(), StorageError> {
        for segment in self.segments.drain(..) {
            remove_file(&segment.path)?;
        }
        sync_dir(&self.dir)?;
        self.entries.clear();
        self.locations.clear();
        Ok(())
    }

    /// `Log::truncate_prefix`, returning the I/O error instead of panicking.
    pub fn try_truncate_prefix(&mut self, start: Offset) -> Result<(), StorageError> {
        let covered = self.snapshot.as_ref().map_or(Offset(0), |s| s.id.offset);
        assert!(start <= covered, "entries dropped that no snapshot holds");
        assert!(
            start <= self.flushed_end(),
            "a log start past the durable log"
        );
        let Some(new_start) = self.offset_and_epoch(start) else {
            panic!("a log start below the current one");
        };
        let dropped = self.index_of(start).unwrap_or(0);
        self.entries.drain(..dropped);
        self.locations.drain(..dropped);
        self.start = new_start;
        // Whole segments wholly below the start go: those the next one starts at or below it.
        let gone = (1..self.segments.len())
            .take_while(|&i| self.segments[i].base_offset <= start.0)
            .count();
        for segment in self.segments.drain(..gone) {
            remove_file(&segment.path)?;
        }
        for location in &mut self.locations {
            location.segment -= gone;
        }
        if gone > 0 {
            sync_dir(&self.dir)?;
        }
        self.delete_older_checkpoints()
    }

    /// `Log::install_snapshot`, returning the I/O error instead of panicking. The checkpoint
    /// is durable before any segment goes, so a crash in between reopens at the snapshot.
    pub fn try_install_snapshot(&mut self, snapshot: Snapshot) -> Result<(), StorageError> {
        self.write_checkpoint(&snapshot)?;
        self.drop_all_segments()?;
        self.start = snapshot.id;
        self.snapshot = Some(snapshot);
        self.roll(self.start.offset.0)?;
        self.delete_older_checkpoints()
    }

    /// The index into `entries` of `offset`, if it is at or past the start.
    fn index_of(&self, offset: Offset) -> Option<usize> {
        usize::try_from(offset.0 - self.start.offset.0).ok()
    }

    /// Sets the time stamped on batches written by later flushes (ms since the epoch).
    pub fn set_now_ms(&mut self, now_ms: i64) {
        self.now_ms = now_ms;
    }

    /// The directory this log lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What the scan at open repaired.
    pub fn recovery(&self) -> Recovery {
        self.recovery
    }

    /// How many segment files the log has.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// `Log::flush`, returning the I/O error instead of panicking. After an error the log
    /// must be dropped and reopened (what reached the disk is unknown).
    pub fn try_flush(&mut self) -> Result<(), StorageError> {
        let first = self.locations.len();
        let mut pending = Vec::new();
        let mut pending_locations = Vec::new();
        for index in first..self.entries.len() {
            let offset = self.start.offset.0 + Offset::from_index(index).0;
            let encoded = encode_entry(
                Offset(offset),
                &self.entries[index],
                &self.config.voters,
                self.now_ms,
            );
            let active = self.active()?;
            let used = active.size_bytes + pending.len() as u64;
            if used > 0 && used + encoded.len() as u64 > self.config.segment_bytes_max {
                self.write_active(&pending)?;
                pending.clear();
                self.roll(offset)?;
            }
            let segment = self.segments.len() - 1;
            let position = self.active()?.size_bytes + pending.len() as u64;
            pending_locations.push(Location { segment, position });
            pending.extend_from_slice(&encoded);
        }
        self.write_active(&pending)?;
        self.locations.extend(pending_locations);
        assert_eq!(self.locations.len(), self.entries.len());
        Ok(())
    }

    /// `Log::truncate_to`, returning the I/O error instead of panicking. Cutting inside a
    /// batch of several records (only Kafka writes those) cuts the file at the batch start and
    /// rewrites the kept records as one-record batches; a crash between the two loses them,
    /// which is why sluice itself writes one record per batch.
    pub fn try_truncate_to(&mut self, end: Offset) -> Result<(), StorageError> {
        let Some(end) = self.index_of(end) else {
            panic!("truncation below the log start");
        };
        let end = end.min(self.entries.len());
        if end >= self.locations.len() {
            self.entries.truncate(end);
            return Ok(());
        }
        let cut = self.locations[end];
        let batch_start = (0..end)
            .rev()
            .take_while(|&i| self.locations[i] == cut)
            .last()
            .unwrap_or(end);
        let later: Vec<Segment> = self.segments.drain(cut.segment + 1..).collect();
        for segment in &later {
            remove_file(&segment.path)?;
        }
        if !later.is_empty() {
            sync_dir(&self.dir)?;
        }
        let active = self.active_mut()?;
        active
            .file
            .set_len(cut.position)
            .map_err(StorageError::io("truncate", &active.path))?;
        active
            .file
            .sync_all()
            .map_err(StorageError::io("fsync", &active.path))?;
        active.size_bytes = cut.position;
        self.locations.truncate(batch_start);
        self.entries.truncate(end);
        self.try_flush()
    }

    fn active(&self) -> Result<&Segment, StorageError> {
        self.segments.last().ok_or_else(|| StorageError::Io {
            op: "find the active segment in",
            path: self.dir.clone(),
            source: std::io::Error::other("no segment"),
        })
    }

    fn active_mut(&mut self) -> Result<&mut Segment, StorageError> {
        let dir = self.dir.clone();
        self.segments.last_mut().ok_or_else(|| StorageError::Io {
            op: "find the active segment in",
            path: dir,
            source: std::io::Error::other("no segment"),
        })
    }

    /// Appends `bytes` at the active segment's end and fdatasyncs it.
    fn write_active(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        if bytes.is_empty() {
            return Ok(());
        }
        let active = self.active_mut()?;
        let io = |op| StorageError::io(op, &active.path);
        active
            .file
            .write_all_at(bytes, active.size_bytes)
            .map_err(io("write"))?;
        active.file.sync_data().map_err(io("fdatasync"))?;
        active.size_bytes += bytes.len() as u64;
        Ok(())
    }

    /// Starts a new, empty segment whose first batch will be at `base_offset`.
    fn roll(&mut self, base_offset: i64) -> Result<(), StorageError> {
        assert!(base_offset >= 0, "segment base offset must not be negative");
        if let Some(last) = self.segments.last() {
            assert!(last.base_offset < base_offset, "segments roll forward");
        }
        let path = self.dir.join(segment_name(base_offset));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(StorageError::io("create segment", &path))?;
        file.sync_all().map_err(StorageError::io("fsync", &path))?;
        sync_dir(&self.dir)?;
        self.segments.push(Segment {
            base_offset,
            path,
            file,
            size_bytes: 0,
        });
        Ok(())
    }

    /// Reads one segment into the entries. Returns false if it ended at a torn or invalid
    /// batch (the file is truncated there and the scan must stop).
    fn recover_segment(&mut self, base_offset: i64, path: &Path) -> Result<bool, StorageError> {
        let expected = self.scan_next;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(StorageError::io("open segment", path))?;
        let bytes = std::fs::read(path).map_err(StorageError::io("read segment", path))?;
        let file_bytes = bytes.len() as u64;
        if bytes.is_empty() && base_offset != expected {
            // A segment rolled for entries that are gone: drop it like a torn tail.
            remove_file(path)?;
            self.recovery.deleted_segments += 1;
            return Ok(false);
        }
        if base_offset != expected {
            return Err(StorageError::OffsetGap {
                path: path.to_path_buf(),
                position: 0,
                expected,
                found: base_offset,
            });
        }
        let segment = self.segments.len();
        let mut position = 0u64;
        let mut torn = false;
        for batch in Batches::new(Bytes::from(bytes)) {
            let Ok(batch) = batch.and_then(|b| b.validate_stored().map(|()| b)) else {
                torn = true;
                break;
            };
            self.recover_batch(&batch, path, position, segment)?;
            position += batch.size_bytes() as u64;
        }
        if torn {
            file.set_len(position)
                .map_err(StorageError::io("truncate", path))?;
            file.sync_all().map_err(StorageError::io("fsync", path))?;
            self.recovery.truncated_bytes += file_bytes - position;
        }
        self.segments.push(Segment {
            base_offset,
            path: path.to_path_buf(),
            file,
            size_bytes: position,
        });
        Ok(!torn)
    }

    /// Turns one valid batch into entries, checking offsets and epochs continue the log.
    fn recover_batch(
        &mut self,
        batch: &RecordBatch,
        path: &Path,
        position: u64,
        segment: usize,
    ) -> Result<(), StorageError> {
        let expected = self.scan_next;
        if batch.base_offset() != expected {
            return Err(StorageError::OffsetGap {
                path: path.to_path_buf(),
                position,
                expected,
                found: batch.base_offset(),
            });
        }
        let epoch = Epoch(batch.partition_leader_epoch());
        let previous = self.last_epoch();
        // Entries below the log start (under the snapshot) are read past, not kept.
        let kept = batch.last_offset() >= self.start.offset.0;
        if kept && epoch < previous {
            return Err(StorageError::EpochDecreased {
                path: path.to_path_buf(),
                offset: expected,
                epoch: epoch.0,
                previous: previous.0,
            });
        }
        let payloads = batch_payloads(batch).map_err(|what| StorageError::BadBatch {
            path: path.to_path_buf(),
            offset: expected,
            what,
        })?;
        for payload in payloads {
            if self.scan_next >= self.start.offset.0 {
                self.entries.push(Entry { epoch, payload });
                self.locations.push(Location { segment, position });
            }
            self.scan_next += 1;
        }
        Ok(())
    }

    /// Deletes the segments after a torn one.
    fn delete_segments_after(&mut self, later: &[(i64, PathBuf)]) -> Result<(), StorageError> {
        for (_, path) in later {
            let size = std::fs::metadata(path).map_or(0, |m| m.len());
            remove_file(path)?;
            self.recovery.truncated_bytes += size;
            self.recovery.deleted_segments += 1;
        }
        if !later.is_empty() {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }
}

impl Log for FileLog {
    fn start(&self) -> OffsetAndEpoch {
        self.start
    }

    fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }

    /// Durable when it returns (the checkpoint file is written, fsynced and renamed).
    fn store_snapshot(&mut self, snapshot: Snapshot) {
        let id = snapshot.id;
        assert!(
            id.offset <= self.flushed_end(),
            "a snapshot past the durable log"
        );
        assert_eq!(
            self.offset_and_epoch(id.offset),
            Some(id),
            "a snapshot off the log"
        );
        let previous = self.snapshot.as_ref().map_or(Offset(0), |s| s.id.offset);
        assert!(id.offset > previous, "snapshots only move forward");
        if let Err(e) = self.write_checkpoint(&snapshot) {
            panic!("metadata snapshot write failed, restart to recover from the files: {e}");
        }
        self.snapshot = Some(snapshot);
    }

    /// Deletes the segments wholly below `start` and the older checkpoints, durably.
    fn truncate_prefix(&mut self, start: Offset) {
        if let Err(e) = self.try_truncate_prefix(start) {
            panic!("metadata log prefix deletion failed, restart to recover from the files: {e}");
        }
    }

    /// Writes the checkpoint, then deletes every segment and starts an empty one at the
    /// snapshot's end offset, durably.
    fn install_snapshot(&mut self, snapshot: Snapshot) {
        if let Err(e) = self.try_install_snapshot(snapshot) {
            panic!("metadata snapshot install failed, restart to recover from the files: {e}");
        }
    }

    fn end(&self) -> Offset {
        Offset(self.start.offset.0 + Offset::from_index(self.entries.len()).0)
    }

    fn flushed_end(&self) -> Offset {
        Offset(self.start.offset.0 + Offset::from_index(self.locations.len()).0)
    }

    fn entry(&self, offset: Offset) -> Option<&Entry> {
        self.entries.get(self.index_of(offset)?)
    }

    fn append(&mut self, entry: Entry) {
        assert!(
            entry.epoch >= self.last_epoch(),
            "epochs never decrease along the log"
        );
        self.entries.push(entry);
    }

    fn truncate_to(&mut self, end: Offset) {
        if let Err(e) = self.try_truncate_to(end) {
            panic!("metadata log truncation failed, restart to recover from the files: {e}");
        }
    }

    fn flush(&mut self) {
        if let Err(e) = self.try_flush() {
            panic!("metadata log flush failed, restart to recover from the files: {e}");
        }
    }
}

/// `{base_offset:020}.log`.
fn segment_name(base_offset: i64) -> String {
    format!("{base_offset:020}.log")
}

/// `{end_offset:020}-{epoch:010}.checkpoint` (Kafka's snapshot file name).
fn checkpoint_name(id: OffsetAndEpoch) -> String {
    format!("{:020}-{:010}.checkpoint", id.offset.0, id.epoch.0)
}

/// The checkpoint files in `dir` with their ids, oldest first; deletes `.part` leftovers of
/// a write a crash interrupted. Names that do not parse are left alone.
fn checkpoint_paths(dir: &Path) -> Result<Vec<(OffsetAndEpoch, PathBuf)>, StorageError> {
    let mut out = Vec::new();
    let listing = std::fs::read_dir(dir).map_err(StorageError::io("list", dir))?;
    for item in listing {
        let path = item.map_err(StorageError::io("list", dir))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.ends_with(".checkpoint.part") {
            remove_file(&path)?;
            continue;
        }
        let Some((offset, epoch)) = name
            .strip_suffix(".checkpoint")
            .and_then(|stem| stem.split_once('-'))
        else {
            continue;
        };
        let (Ok(offset), Ok(epoch)) = (offset.parse::<i64>(), epoch.parse::<i32>()) else {
            continue;
        };
        let id = OffsetAndEpoch {
            offset: Offset(offset),
            epoch: Epoch(epoch),
        };
        out.push((id, path));
    }
    out.sort();
    Ok(out)
}

/// The segments in `dir`, sorted by base offset. Other files (Kafka's indexes, checkpoints,
/// `quorum-state`) are left alone.
fn segment_paths(dir: &Path) -> Result<Vec<(i64, PathBuf)>, StorageError> {
    let mut out = Vec::new();
    let listing = std::fs::read_dir(dir).map_err(StorageError::io("list", dir))?;
    for item in listing {
        let path = item.map_err(StorageError::io("list", dir))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(stem) = name.strip_suffix(".log") else {
            continue;
        };
        let base_offset = stem
            .parse::<i64>()
            .ok()
            .filter(|o| stem.len() == 20 && *o >= 0)
            .ok_or_else(|| StorageError::BadSegmentName { path: path.clone() })?;
        out.push((base_offset, path));
    }
    out.sort();
    Ok(out)
}

fn remove_file(path: &Path) -> Result<(), StorageError> {
    std::fs::remove_file(path).map_err(StorageError::io("delete", path))
}

/// fsyncs a directory, so a file created, renamed or deleted in it stays so after a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StorageError::io("fsync directory", dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_net::record_batch::build::{BatchSpec, batch};
    use sluice_quorum::Payload;

    fn data(epoch: i32, byte: u8, len: usize) -> Entry {
        Entry {
            epoch: Epoch(epoch),
            payload: Payload::Data(vec![byte; len]),
        }
    }

    fn leader_change(epoch: i32, leader: i32) -> Entry {
        Entry {
            epoch: Epoch(epoch),
            payload: Payload::LeaderChange {
                leader: NodeId(leader),
            },
        }
    }

    fn config(segment_bytes_max: u64) -> FileLogConfig {
        FileLogConfig {
            voters: vec![NodeId(1), NodeId(2), NodeId(3)],
            segment_bytes_max,
        }
    }

    fn entries(log: &FileLog) -> Vec<Entry> {
        (0..log.end().0)
            .map(|o| log.entry(Offset(o)).unwrap().clone())
            .collect()
    }

    /// A log of a leader change then `n - 1` data entries, flushed.
    fn written(dir: &Path, n: usize, segment_bytes_max: u64) -> Vec<Entry> {
        let mut log = FileLog::open(dir, config(segment_bytes_max)).unwrap();
        log.set_now_ms(1_700_000_000_000);
        log.append(leader_change(1, 2));
        for i in 1..n {
            log.append(data(1 + (i / 7) as i32, i as u8, 1 + i % 50));
        }
        log.flush();
        assert_eq!(log.flushed_end(), log.end());
        entries(&log)
    }

    fn segment_files(dir: &Path) -> Vec<PathBuf> {
        segment_paths(dir)
            .unwrap()
            .into_iter()
            .map(|(_, p)| p)
            .collect()
    }

    /// Entries written and flushed read back identically after a reopen, with no repair,
    /// and the epoch lookups agree with the entries.
    #[test]
    fn round_trip_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let wrote = written(dir.path(), 40, SEGMENT_BYTES_MAX_DEFAULT);
        let log = FileLog::open(dir.path(), config(SEGMENT_BYTES_MAX_DEFAULT)).unwrap();
        assert_eq!(entries(&log), wrote);
        assert_eq!(log.flushed_end(), Offset(40));
        assert_eq!(log.recovery(), Recovery::default());
        assert_eq!(log.segment_count(), 1);
        assert_eq!(log.last_epoch(), wrote[39].epoch);
        assert_eq!(
            segment_files(dir.path())[0].file_name().unwrap(),
            "00000000000000000000.log"
        );
    }

    /// What was appended but never flushed is gone after a reopen (nothing was written);
    /// what was flushed stays.
    #[test]
    fn unflushed_entries_do_not_survive() {
        let dir = tempfile::tempdir().unwrap();
        let wrote = written(dir.path(), 5, SEGMENT_BYTES_MAX_DEFAULT);
        let mut log = FileLog::open(dir.path(), config(SEGMENT_BYTES_MAX_DEFAULT)).unwrap();
        log.append(data(3, 9, 3));
        assert_eq!(log.end(), Offset(6));
        assert_eq!(log.flushed_end(), Offset(5));
        drop(log);
        let log = FileLog::open(dir.path(), config(SEGMENT_BYTES_MAX_DEFAULT)).unwrap();
        assert_eq!(entries(&log), wrote);
    }

    /// A crash tears the tail: garbage, half a batch, or a batch with a flipped byte at the
    /// end of the last segment. Open truncates the file at the last whole valid batch, keeps
    /// every entry before it, reports the bytes cut, and a second open finds nothing to cut.
    #[test]
    fn torn_tail_is_truncated_at_open() {
        type Tail = fn(&[u8]) -> Vec<u8>;
        let tails: [Tail; 4] = [
            |_| vec![0xAB; 37],
            |whole| whole[..whole.len() / 2].to_vec(),
            |_| vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            |whole| {
                let mut w = whole.to_vec();
                let last = w.len() - 1;
                w[last] ^= 0x40;
                w
            },
        ];
        for (case, tail) in tails.iter().enumerate() {
            let dir = tempfile::tempdir().unwrap();
            let wrote = written(dir.path(), 12, SEGMENT_BYTES_MAX_DEFAULT);
            let path = segment_files(dir.path())[0].clone();
            let clean_len = std::fs::metadata(&path).unwrap().len();
            let next = batch(
                &BatchSpec {
                    base_offset: 12,
                    ..BatchSpec::default()
                },
                &[(None, Some(b"x"))],
            );
            let tail = tail(&next);
            let mut bytes = std::fs::read(&path).unwrap();
            bytes.extend_from_slice(&tail);
            std::fs::write(&path, &bytes).unwrap();
            let log = FileLog::open(dir.path(), config(SEGMENT_BYTES_MAX_DEFAULT)).unwrap();
            assert_eq!(entries(&log), wrote, "case {case}");
            assert_eq!(
                log.recovery().truncated_bytes,
                tail.len() as u64,
                "case {case}"
            );
            assert_eq!(
                std::fs::metadata(&path).unwrap().len(),
                clean_len,
                "case {case}"
            );
            drop(log);
            let log = FileLog::open(dir.path(), config(SEGMENT_BYTES_MAX_DEFAULT)).unwrap();
            assert_eq!(log.recovery(), Recovery::default(), "case {case}");
            assert_eq!(entries(&log), wrote, "case {case}");
        }
    }

    /// Truncation cuts the file durably: after a reopen the log ends where it was cut, and
    /// appending continues at that offset with a later epoch.
    #[test]
    fn truncate_then_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let wrote = written(dir.path(), 20, SEGMENT_BYTES_MAX_DEFAULT);
        let mut log = FileLog::open(dir.path(), config(SEGMENT_BYTES_MAX_DEFAULT)).unwrap();
        log.truncate_to(Offset(9));
        assert_eq!(log.end(), Offset(9));
        assert_eq!(log.flushed_end(), Offset(9));
        drop(log);
        let mut log = FileLog::open(dir.path(), config(SEGMENT_BYTES_MAX_DEFAULT)).unwrap();
        assert_eq!(entries(&log), wrote[..9]);
        log.append(leader_change(9, 3));
        log.append(data(9, 1, 1));
        log.flush();
        log.truncate_to(Offset(10));
        drop(log);
        let log = FileLog::open(dir.path(), config(SEGMENT_BYTES_MAX_DEFAULT)).unwrap();
        assert_eq!(entries(&log)[..9], wrote[..9]);
        assert_eq!(entries(&log)[9], leader_change(9, 3));
        assert_eq!(log.end(), Offset(10));
    }

    /// Many entries roll into many small segments, each named after its first offset; all
    /// read back; truncating into an early segment deletes the later ones, durably.
    #[test]
    fn many_entries_across_segment_rolls() {
        let dir = tempfile::tempdir().unwrap();
        let wrote = written(dir.path(), 600, 2_000);
        let files = segment_files(dir.path());
        assert!(files.len() > 10, "{} segments", files.len());
        for (base, path) in segment_paths(dir.path()).unwrap() {
            let bytes = Bytes::from(std::fs::read(&path).unwrap());
            let first = Batches::new(bytes).next().unwrap().unwrap();
            assert_eq!(first.base_offset(), base);
            assert!(std::fs::metadata(&path).unwrap().len() <= 2_000);
        }
        let mut log = FileLog::open(dir.path(), config(2_000)).unwrap();
        assert_eq!(entries(&log), wrote);
        assert_eq!(log.segment_count(), files.len());
        log.truncate_to(Offset(50));
        drop(log);
        let log = FileLog::open(dir.path(), config(2_000)).unwrap();
        assert_eq!(entries(&log), wrote[..50]);
        assert!(segment_files(dir.path()).len() < files.len());
        assert_eq!(log.recovery(), Recovery::default());
    }

    /// A torn segment in the middle (a later segment exists) loses everything after the tear,
    /// later segments included, as Kafka's recovery does.
    #[test]
    fn torn_middle_segment_drops_later_segments() {
        let dir = tempfile::tempdir().unwrap();
        let wrote = written(dir.path(), 100, 1_000);
        let files = segment_files(dir.path());
        assert!(files.len() >= 3);
        let bytes = std::fs::read(&files[1]).unwrap();
        std::fs::write(&files[1], &bytes[..bytes.len() - 3]).unwrap();
        let log = FileLog::open(dir.path(), config(1_000)).unwrap();
        assert_eq!(log.recovery().deleted_segments, files.len() - 2);
        assert_eq!(entries(&log), wrote[..log.end().index()]);
        assert_eq!(segment_files(dir.path()).len(), 2);
    }

    /// A whole valid segment under the wrong name is not a torn write: open refuses it.
    #[test]
    fn offset_gap_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        written(dir.path(), 3, SEGMENT_BYTES_MAX_DEFAULT);
        let from = dir.path().join(segment_name(0));
        std::fs::rename(&from, dir.path().join(segment_name(5))).unwrap();
        let err = FileLog::open(dir.path(), config(SEGMENT_BYTES_MAX_DEFAULT)).unwrap_err();
        assert!(
            matches!(
                err,
                StorageError::OffsetGap {
                    expected: 0,
                    found: 5,
                    ..
                }
            ),
            "{err}"
        );
    }

    fn snapshot_at(log: &FileLog, offset: i64) -> Snapshot {
        let id = log.offset_and_epoch(Offset(offset)).unwrap();
        let data = crate::snapshot::encode_snapshot(&crate::MetadataImage::empty(), id, 9);
        Snapshot { id, data }
    }

    fn checkpoint_files(dir: &Path) -> Vec<OffsetAndEpoch> {
        checkpoint_paths(dir)
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    }

    /// A stored snapshot is a checkpoint file that a reopen loads: the log then starts at
    /// its id and holds the entries after it.
    #[test]
    fn snapshot_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let wrote = written(dir.path(), 40, SEGMENT_BYTES_MAX_DEFAULT);
        let mut log = FileLog::open(dir.path(), config(SEGMENT_BYTES_MAX_DEFAULT)).unwrap();
        let snapshot = snapshot_at(&log, 20);
        log.store_snapshot(snapshot.clone());
        assert_eq!(log.start(), OffsetAndEpoch::default());
        drop(log);
        assert_eq!(checkpoint_files(dir.path()), vec![snapshot.id]);
        let name = checkpoint_name(snapshot.id);
        assert_eq!(
            name,
            format!("00000000000000000020-{:010}.checkpoint", wrote[19].epoch.0)
        );
        let log = FileLog::open(dir.path(), config(SEGMENT_BYTES_MAX_DEFAULT)).unwrap();
        assert_eq!(log.snapshot(), Some(&snapshot));
        assert_eq!(log.start(), snapshot.id);
        assert_eq!(log.end(), Offset(40));
        assert_eq!(log.entry(Offset(19)), None);
        let kept: Vec<Entry> = (20..40)
            .map(|o| log.entry(Offset(o)).unwrap().clone())
            .collect();
        assert_eq!(kept, wrote[20..]);
        assert_eq!(log.recovery(), Recovery::default());
    }

    /// `truncate_prefix` deletes the segments wholly below the new start and the older
    /// checkpoints; the rest reads back after a reopen, and appends go on.
    #[test]
    fn truncate_prefix_removes_old_segments() {
        let dir = tempfile::tempdir().unwrap();
        let wrote = written(dir.path(), 600, 2_000);
        let before = segment_files(dir.path()).len();
        let mut log = FileLog::open(dir.path(), config(2_000)).unwrap();
        log.store_snapshot(snapshot_at(&log, 100));
        let snapshot = snapshot_at(&log, 300);
        log.store_snapshot(snapshot.clone());
        assert_eq!(checkpoint_files(dir.path()).len(), 2);
        log.truncate_prefix(Offset(300));
        assert_eq!(log.start(), snapshot.id);
        assert_eq!(checkpoint_files(dir.path()), vec![snapshot.id]);
        let bases: Vec<i64> = segment_paths(dir.path())
            .unwrap()
            .iter()
            .map(|(b, _)| *b)
            .collect();
        assert!(
            bases.len() < before / 2 + 2,
            "{} of {before} segments left",
            bases.len()
        );
        assert!(bases[0] <= 300 && bases[1] > 300, "{bases:?}");
        log.append(data(90, 1, 3));
        log.flush();
        log.truncate_to(Offset(550));
        drop(log);
        let log = FileLog::open(dir.path(), config(2_000)).unwrap();
        assert_eq!(log.start(), snapshot.id);
        let kept: Vec<Entry> = (300..550)
            .map(|o| log.entry(Offset(o)).unwrap().clone())
            .collect();
        assert_eq!(kept, wrote[300..550]);
        assert_eq!(log.end(), Offset(550));
        assert_eq!(log.recovery(), Recovery::default());
    }

    /// A torn checkpoint (cut short, or a flipped byte) is ignored at open: the previous
    /// snapshot is used, or with none the whole log; a `.part` leftover is deleted.
    #[test]
    fn torn_checkpoint_is_ignored() {
        for with_previous in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let wrote = written(dir.path(), 40, SEGMENT_BYTES_MAX_DEFAULT);
            let mut log = FileLog::open(dir.path(), config(SEGMENT_BYTES_MAX_DEFAULT)).unwrap();
            let first = snapshot_at(&log, 10);
            if with_previous {
                log.store_snapshot(first.clone());
            }
            let torn = snapshot_at(&log, 30);
            drop(log);
            let half = &torn.data[..torn.data.len() - 5];
            std::fs::write(dir.path().join(checkpoint_name(torn.id)), half).unwrap();
            let mut flipped = snapshot_at(&FileLog::open(dir.path(), config(1 << 20)).unwrap(), 35);
            let middle = flipped.data.len() / 2;
            flipped.data[middle] ^= 1;
            std::fs::write(dir.path().join(checkpoint_name(flipped.id)), &flipped.data).unwrap();
            std::fs::write(dir.path().join("x.checkpoint.part"), b"partial").unwrap();
            let log = FileLog::open(dir.path(), config(SEGMENT_BYTES_MAX_DEFAULT)).unwrap();
            assert_eq!(log.recovery().ignored_snapshots, 2);
            assert!(!dir.path().join("x.checkpoint.part").exists());
            let (start, snapshot) = if with_previous {
                (first.id, Some(&first))
            } else {
                (OffsetAndEpoch::default(), None)
            };
            assert_eq!(log.start(), start);
            assert_eq!(log.snapshot(), snapshot);
            let kept: Vec<Entry> = (start.offset.0..40)
                .map(|o| log.entry(Offset(o)).unwrap().clone())
                .collect();
            assert_eq!(kept, wrote[start.offset.index()..]);
        }
    }

    /// Installing a fetched snapshot replaces the log: one empty segment at its end offset;
    /// after a reopen the log starts there and keeps what was appended after it.
    #[test]
    fn install_snapshot_then_reopen() {
        let dir = tempfile::tempdir().unwrap();
        written(dir.path(), 30, 1_000);
        let mut log = FileLog::open(dir.path(), config(1_000)).unwrap();
        let id = OffsetAndEpoch {
            offset: Offset(500),
            epoch: Epoch(40),
        };
        let image = crate::MetadataImage::empty();
        let snapshot = Snapshot {
            id,
            data: crate::snapshot::encode_snapshot(&image, id, 3),
        };
        log.install_snapshot(snapshot.clone());
        assert_eq!((log.start(), log.end()), (id, Offset(500)));
        assert_eq!(segment_files(dir.path()).len(), 1);
        log.append(leader_change(41, 2));
        log.append(data(41, 7, 7));
        log.flush();
        drop(log);
        let log = FileLog::open(dir.path(), config(1_000)).unwrap();
        assert_eq!(log.start(), id);
        assert_eq!(log.snapshot(), Some(&snapshot));
        assert_eq!(log.end(), Offset(502));
        assert_eq!(log.entry(Offset(501)), Some(&data(41, 7, 7)));
        assert_eq!(
            segment_files(dir.path())[0].file_name().unwrap(),
            segment_name(500).as_str()
        );
    }

    /// A crash inside `install_snapshot` after the checkpoint was written leaves segments that
    /// end below it: open drops them and starts at the snapshot.
    #[test]
    fn checkpoint_past_the_log_drops_the_segments() {
        let dir = tempfile::tempdir().unwrap();
        written(dir.path(), 30, 1_000);
        let id = OffsetAndEpoch {
            offset: Offset(90),
            epoch: Epoch(9),
        };
        let data = crate::snapshot::encode_snapshot(&crate::MetadataImage::empty(), id, 3);
        std::fs::write(dir.path().join(checkpoint_name(id)), data).unwrap();
        let log = FileLog::open(dir.path(), config(1_000)).unwrap();
        assert_eq!((log.start(), log.end()), (id, Offset(90)));
        assert_eq!(segment_paths(dir.path()).unwrap().len(), 1);
        assert_eq!(segment_paths(dir.path()).unwrap()[0].0, 90);
    }

    /// The bytes of a LeaderChange batch are Kafka's: a control batch, key version 0 type 2,
    /// a 19-byte LeaderChangeMessage v0 for one voter (what Kafka 4.4 itself wrote).
    #[test]
    fn leader_change_batch_layout() {
        let mut log = FileLog {
            dir: PathBuf::new(),
            config: config(1),
            now_ms: 5,
            start: OffsetAndEpoch::default(),
            scan_next: 0,
            entries: Vec::new(),
            locations: Vec::new(),
            segments: Vec::new(),
            recovery: Recovery::default(),
            snapshot: None,
        };
        log.config.voters = vec![NodeId(1)];
        let bytes = encode_entry(
            Offset(7),
            &leader_change(3, 1),
            &log.config.voters,
            log.now_ms,
        );
        let batch = RecordBatch::new(bytes).unwrap();
        batch.validate().unwrap();
        assert!(batch.is_control());
        assert_eq!(batch.base_offset(), 7);
        assert_eq!(batch.partition_leader_epoch(), 3);
        assert_eq!(batch.producer_id(), -1);
        assert_eq!(batch.base_timestamp(), 5);
        let record = batch.records().unwrap().next().unwrap().unwrap();
        assert_eq!(record.key.as_deref(), Some(&[0u8, 0, 0, 2][..]));
        assert_eq!(record.value.unwrap().len(), 19);
    }
}
