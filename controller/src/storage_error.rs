//! `StorageError`: what can go wrong reading or writing the controller's files (the metadata
//! log's segments and the `quorum-state` file). Every variant names the file, and the text
//! says what to check. A torn tail is not an error: the log's recovery truncates it and
//! reports it in `Recovery`; these are the cases recovery must not paper over.

use std::path::PathBuf;

/// An operating error (I/O) or a file whose contents sluice refuses to guess about.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A system call failed on `path`.
    #[error("{op} {path}: {source} (check the disk, free space and permissions)")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A `.log` file whose name is not `{base_offset:020}.log`.
    #[error("{path}: not a segment name (expected 20 digits of base offset, then .log)")]
    BadSegmentName { path: PathBuf },
    /// A valid batch (its CRC checks) whose offsets do not continue the log: not a torn
    /// write but a misplaced one, or a file from another log.
    #[error(
        "{path} at byte {position}: batch starts at offset {found}, expected {expected} \
         (a segment from another log, or a misdirected write; move the directory aside)"
    )]
    OffsetGap {
        path: PathBuf,
        position: u64,
        expected: i64,
        found: i64,
    },
    /// A valid batch whose partition leader epoch is below the one before it.
    #[error(
        "{path}: offset {offset} has leader epoch {epoch}, below the previous {previous} \
         (epochs never decrease along a KRaft log)"
    )]
    EpochDecreased {
        path: PathBuf,
        offset: i64,
        epoch: i32,
        previous: i32,
    },
    /// A batch with a valid CRC whose records this log cannot turn into entries (compressed,
    /// malformed, a null value, a control record type other than LeaderChange).
    #[error("{path}: batch at offset {offset}: {what}")]
    BadBatch {
        path: PathBuf,
        offset: i64,
        what: String,
    },
    /// A `quorum-state` file that is not the JSON Kafka writes.
    #[error("{path}: not a quorum-state file Kafka 4.4 writes: {what}")]
    BadQuorumState { path: PathBuf, what: String },
}

impl StorageError {
    /// Wraps an I/O error with the operation and the file it happened on.
    pub(crate) fn io(
        op: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| StorageError::Io { op, path, source }
    }
}
