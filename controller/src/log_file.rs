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
//! for itself, the replica does not report who else did, and Kafka only displays the field). `Payload::Data(bytes)` is a record
//! whose value is those bytes (the caller frames a `VersionedRecord`; not interpreted here).
//!
//! Reading accepts more than it writes: a batch of several records (as Kafka writes them)
//! becomes several entries at consecutive offsets, so offsets stay Kafka's offsets.
//!
//! Invariants, asserted or checked at open: entries are contiguous from offset 0 (no
//! snapshots yet); epochs never decrease; each segment's name is the base offset of its first
//! batch; `locations.len()` (the flushed entries) `<= entries.len()`.

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
/// log that snapshots delete from. Here nothing deletes segments yet, so the size only sets how
/// much one file holds and how finely a future snapshot can free space: 1 MiB is about ten
/// thousand metadata records, small enough to delete in steps and to rescan quickly.
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
/// Memory: every entry since offset 0 stays in memory (about the log's size on disk plus ~40
/// bytes per entry). A metadata log is small (a record per topic, partition, broker change),
/// but until snapshots let old segments go, it grows without bound with the log.
#[derive(Debug)]
pub struct FileLog {
    dir: PathBuf,
    config: FileLogConfig,
    now_ms: i64,
    entries: Vec<Entry>,
    /// The batch position of each flushed entry; its length is the flushed end.
    locations: Vec<Location>,
    /// Never empty after `open`; the last one is the active segment.
    segments: Vec<Segment>,
    recovery: Recovery,
    /// The latest snapshot the replica handed over. Held in memory only: the controller shard
    /// takes no snapshots yet, so nothing calls `store_snapshot` (snapshot files, Kafka's
    /// `.checkpoint`, are a later slice).
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
            entries: Vec::new(),
            locations: Vec::new(),
            segments: Vec::new(),
            recovery: Recovery::default(),
            snapshot: None,
        };
        let paths = segment_paths(dir)?;
        for (index, (base_offset, path)) in paths.iter().enumerate() {
            if !log.recover_segment(*base_offset, path)? {
                log.delete_segments_after(&paths[index + 1..])?;
                break;
            }
        }
        if log.segments.is_empty() {
            log.roll(0)?;
        }
        assert_eq!(log.locations.len(), log.entries.len());
        Ok(log)
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
            let offset = Offset::from_index(index).0;
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
        assert!(end.0 >= 0, "truncation to a negative offset");
        let end = end.index().min(self.entries.len());
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
        let expected = Offset::from_index(self.entries.len()).0;
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
        let expected = Offset::from_index(self.entries.len()).0;
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
        if epoch < previous {
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
            self.entries.push(Entry { epoch, payload });
            self.locations.push(Location { segment, position });
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
    /// Always offset 0: this log keeps every entry (see `truncate_prefix`).
    fn start(&self) -> OffsetAndEpoch {
        OffsetAndEpoch::default()
    }

    fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }

    fn store_snapshot(&mut self, snapshot: Snapshot) {
        self.snapshot = Some(snapshot);
    }

    /// Keeps the prefix: entries below a snapshot are still served from the log, which is
    /// correct but bounds nothing. Deleting segments below the snapshot comes with snapshot
    /// files.
    fn truncate_prefix(&mut self, _start: Offset) {}

    /// A leader sends a snapshot only to a follower behind its log start, and no sluice log
    /// drops its prefix yet (`truncate_prefix`), so only a foreign leader could get here.
    fn install_snapshot(&mut self, snapshot: Snapshot) {
        panic!(
            "installing a fetched snapshot ({:?}) is not supported by this metadata log yet",
            snapshot.id
        );
    }

    fn end(&self) -> Offset {
        Offset::from_index(self.entries.len())
    }

    fn flushed_end(&self) -> Offset {
        Offset::from_index(self.locations.len())
    }

    fn entry(&self, offset: Offset) -> Option<&Entry> {
        if offset.0 < 0 {
            return None;
        }
        self.entries.get(offset.index())
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

    /// The bytes of a LeaderChange batch are Kafka's: a control batch, key version 0 type 2,
    /// a 19-byte LeaderChangeMessage v0 for one voter (what Kafka 4.4 itself wrote).
    #[test]
    fn leader_change_batch_layout() {
        let mut log = FileLog {
            dir: PathBuf::new(),
            config: config(1),
            now_ms: 5,
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
