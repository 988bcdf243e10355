//! The log-reset marker, `reset.offset` in a partition directory, which makes
//! `Partition::truncate_fully_and_start_at` all or nothing across a crash. The reset writes it
//! (atomically) before it removes anything of the old log and removes it last, once the new
//! empty log and its `partition.meta` are in place. An open that finds it (after finishing
//! any compaction swap, before reading anything else) finishes the reset the same way: every
//! file of the old log goes (segments, index files, producer snapshots, cleaner checkpoint),
//! an empty segment is created at the marker's offset, and `partition.meta` says the log
//! starts there, with no leader epochs. So a crash leaves the old log whole (marker not yet
//! durable) or a directory that opens as the new one, never a mix of the two.
//!
//! Format: magic `SLRS`, the offset (i64, BE), CRC-32C of the offset's 8 bytes (u32, BE).
//! A damaged marker (which an atomic write never leaves) is a typed error on open, as a
//! damaged `partition.meta` is: which log it meant cannot be known.

use std::path::Path;

use crate::cleaner_checkpoint::CHECKPOINT_FILE;
use crate::error::{Result, ShardError, io_err};
use crate::io::{OpenMode, Storage, StorageFile, read_file, write_file_atomic};
use crate::meta::{self, META_FILE, PartitionMeta};
use crate::producer_state::parse_snapshot_name;
use crate::segment::segment_file;

/// The marker's name in a partition directory (its temp file is `reset.tmp`).
pub(crate) const RESET_FILE: &str = "reset.offset";
const MAGIC: &[u8; 4] = b"SLRS";

fn encode(offset: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&offset.to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&offset.to_be_bytes()).to_be_bytes());
    out
}

fn decode(data: &[u8]) -> Option<i64> {
    if data.len() != 16 || &data[..4] != MAGIC {
        return None;
    }
    let mut o = [0u8; 8];
    o.copy_from_slice(&data[4..12]);
    let mut c = [0u8; 4];
    c.copy_from_slice(&data[12..16]);
    let offset = i64::from_be_bytes(o);
    (crc32c::crc32c(&o) == u32::from_be_bytes(c) && offset >= 0).then_some(offset)
}

/// Writes the marker for a reset to `offset` in partition directory `dir`, durably.
pub(crate) async fn write_marker<S: Storage>(storage: &S, dir: &Path, offset: i64) -> Result<()> {
    let path = dir.join(RESET_FILE);
    write_file_atomic(storage, &path, &encode(offset))
        .await
        .map_err(io_err("write reset marker", &path))
}

/// Removes the marker (the reset is complete on disk), durably.
pub(crate) async fn remove_marker<S: Storage>(storage: &S, dir: &Path) -> Result<()> {
    let path = dir.join(RESET_FILE);
    match storage.remove(&path).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("remove reset marker", &path)(e)),
    }
    storage.sync_dir(dir).await.map_err(io_err("sync dir", dir))
}

/// Whether `name` is a file of the log a reset drops: a segment (`<20 digits>.log`) or its
/// index files (transaction index too), a producer snapshot, the cleaner checkpoint.
fn belongs_to_old_log(name: &str) -> bool {
    let segment = [".log", ".index", ".timeindex", ".txnindex"]
        .iter()
        .any(|ext| {
            name.strip_suffix(ext)
                .is_some_and(|d| d.len() == 20 && d.bytes().all(|b| b.is_ascii_digit()))
        });
    segment || parse_snapshot_name(name).is_some() || name == CHECKPOINT_FILE
}

/// Removes every file of the old log from `dir` (see [`belongs_to_old_log`]), oldest segment
/// first, then syncs the directory. Leaves `partition.meta` (the caller rewrites it) and
/// the marker.
pub(crate) async fn remove_log_files<S: Storage>(storage: &S, dir: &Path) -> Result<()> {
    let mut names = storage
        .list_dir(dir)
        .await
        .map_err(io_err("list dir", dir))?;
    names.retain(|n| belongs_to_old_log(n));
    names.sort_unstable();
    for n in &names {
        let path = dir.join(n);
        match storage.remove(&path).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("remove", &path)(e)),
        }
    }
    storage.sync_dir(dir).await.map_err(io_err("sync dir", dir))
}

/// Finishes a reset a crash interrupted, if `dir` holds a marker: removes the old log's
/// files, creates the empty segment at the marker's offset, writes `partition.meta` for an
/// empty log there (log start and recovery point, no leader epochs), then removes the
/// marker. Called by `Partition::open` before it lists the segments, which then finds just
/// the empty one.
pub(crate) async fn finish_interrupted<S: Storage>(storage: &S, dir: &Path) -> Result<()> {
    let names = storage
        .list_dir(dir)
        .await
        .map_err(io_err("list dir", dir))?;
    if !names.iter().any(|n| n == RESET_FILE) {
        return Ok(());
    }
    let path = dir.join(RESET_FILE);
    let data = read_file(storage, &path)
        .await
        .map_err(io_err("read reset marker", &path))?;
    let offset = decode(&data).ok_or_else(|| ShardError::BadMeta {
        path: path.clone(),
        detail: "damaged log reset marker".into(),
    })?;
    tracing::warn!(dir = %dir.display(), offset, "finishing an interrupted log reset");
    remove_log_files(storage, dir).await?;
    // The new log's empty active segment, as the reset itself leaves it.
    let seg = segment_file(dir, offset, "log");
    let file = storage
        .open(&seg, OpenMode::CreateTruncate)
        .await
        .map_err(io_err("create segment", &seg))?;
    file.close().await.map_err(io_err("close segment", &seg))?;
    storage
        .sync_dir(dir)
        .await
        .map_err(io_err("sync dir", dir))?;
    let m = PartitionMeta {
        version: 1,
        log_start_offset: offset,
        recovery_point: offset,
        leader_epochs: Vec::new(),
    };
    let meta_path = dir.join(META_FILE);
    write_file_atomic(storage, &meta_path, &meta::encode(&m))
        .await
        .map_err(io_err("write meta", &meta_path))?;
    remove_marker(storage, dir).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The marker round-trips; any flipped byte or truncation is refused, not misread.
    #[test]
    fn marker_roundtrip_and_damage() {
        let e = encode(1_234_567);
        assert_eq!(decode(&e), Some(1_234_567));
        for i in 0..e.len() {
            let mut x = e.clone();
            x[i] ^= 0x10;
            assert_eq!(decode(&x), None, "{i}");
            assert_eq!(decode(&e[..i]), None);
        }
        assert_eq!(decode(&encode(-1)), None);
    }

    #[test]
    fn old_log_files() {
        for n in [
            "00000000000000000042.log",
            "00000000000000000042.index",
            "00000000000000000042.timeindex",
            "00000000000000000042.snapshot",
            "cleaner.checkpoint",
        ] {
            assert!(belongs_to_old_log(n), "{n}");
        }
        for n in [
            "partition.meta",
            "reset.offset",
            "42.log",
            "x.log",
            "reset.tmp",
        ] {
            assert!(!belongs_to_old_log(n), "{n}");
        }
    }
}
