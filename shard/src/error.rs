//! The one error type of the crate. Bugs are asserts, not variants.

use std::path::PathBuf;

use sluice_net::record_batch::BatchError;

/// One refused record of a batch: its 0-based position in the batch and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    pub batch_index: i32,
    pub message: String,
}

/// Kafka's partition-level message for refused records (its `RecordValidationException`).
fn record_errors_message(timestamp: bool, errors: &[RecordError]) -> String {
    if timestamp {
        return "One or more records have been rejected due to invalid timestamp".to_owned();
    }
    let shown: Vec<String> = errors
        .iter()
        .take(3)
        .map(|e| {
            format!(
                "RecordError(batchIndex={}, message='{}')",
                e.batch_index, e.message
            )
        })
        .collect();
    format!(
        "One or more records have been rejected due to {} record errors in total, and only \
         showing the first three errors at most: [{}]",
        errors.len(),
        shown.join(", ")
    )
}

/// What went wrong in a shard operation; the text says what to check.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error("I/O error during {op} on {path}: {source} (check the disk and its free space)")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("record batch {index} of the request is invalid: {source}")]
    InvalidBatch {
        index: usize,
        #[source]
        source: BatchError,
    },
    /// Records of a batch failed Kafka's per-record checks (`validate`): the batch is refused
    /// and each bad record named. Kafka's INVALID_TIMESTAMP (32) when a timestamp check failed,
    /// else INVALID_RECORD (87); the text is Kafka's partition-level error message.
    #[error("{}", record_errors_message(*timestamp, errors))]
    RecordErrors {
        timestamp: bool,
        errors: Vec<RecordError>,
    },
    #[error("record batch of {size} bytes exceeds the limit of {max} bytes")]
    BatchTooLarge { size: usize, max: usize },
    #[error("offset {offset} is out of range [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },
    #[error("corrupt data in {path} at byte {position}: {detail}")]
    Corrupt {
        path: PathBuf,
        position: u64,
        detail: String,
    },
    #[error("partition metadata {path} is unreadable: {detail} (restore or remove it)")]
    BadMeta { path: PathBuf, detail: String },
    #[error("partition {topic}-{partition} failed an earlier write and is read-only: {cause}")]
    Poisoned {
        topic: String,
        partition: i32,
        cause: String,
    },
    #[error("duplicate batch from producer {producer_id} at offsets {base_offset}..={last_offset}")]
    DuplicateSequence {
        producer_id: i64,
        base_offset: i64,
        last_offset: i64,
    },
    #[error("producer {producer_id} sent sequence {received}, expected {expected}")]
    OutOfOrderSequence {
        producer_id: i64,
        expected: i32,
        received: i32,
    },
    #[error("producer {producer_id} epoch {epoch} is fenced by epoch {current_epoch}")]
    InvalidProducerEpoch {
        producer_id: i64,
        epoch: i16,
        current_epoch: i16,
    },
    /// A transaction marker from a coordinator older than the one the producer's last marker
    /// came from (Kafka's TRANSACTION_COORDINATOR_FENCED).
    #[error(
        "transaction marker for producer {producer_id} from coordinator epoch \
         {coordinator_epoch} is fenced by coordinator epoch {current_coordinator_epoch}"
    )]
    TransactionCoordinatorFenced {
        producer_id: i64,
        coordinator_epoch: i32,
        current_coordinator_epoch: i32,
    },
    /// A non-transactional batch from a producer with an open transaction here (Kafka's
    /// INVALID_TXN_STATE).
    #[error("producer {producer_id} sent a non-transactional batch during its open transaction")]
    InvalidTxnState { producer_id: i64 },
    /// A transactional batch that would start a transaction here without the partition
    /// having been verified as part of it (KIP-890: the verification guard the broker got
    /// from [`crate::Partition::start_verification`] is missing or stale; INVALID_TXN_STATE).
    #[error("Record was not part of an ongoing transaction")]
    NotInTransaction { producer_id: i64 },
    #[error("partition {topic}-{partition} is not on this shard")]
    UnknownPartition { topic: String, partition: i32 },
    #[error("partition {topic}-{partition} already exists on this shard")]
    PartitionExists { topic: String, partition: i32 },
    #[error("partition {topic}-{partition} is closed")]
    Closed { topic: String, partition: i32 },
    /// A follower was sent a batch that does not start at its log end (a gap, as a compacted
    /// leader log has, or an overlap): it refuses it rather than leave a hole.
    #[error(
        "replicated batch at offset {base_offset} does not continue the log of \
         {topic}-{partition}, which ends at {log_end}"
    )]
    NotContiguous {
        topic: String,
        partition: i32,
        base_offset: i64,
        log_end: i64,
    },
}

pub type Result<T, E = ShardError> = std::result::Result<T, E>;

pub(crate) fn io_err(
    op: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> ShardError {
    let path = path.into();
    move |source| ShardError::Io { op, path, source }
}
