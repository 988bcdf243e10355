//! The one place where sluice's internal errors become Kafka error codes (at the response
//! edge).

use sluice_net::record_batch::BatchError;
use sluice_shard::{Offsets, RecordError, ShardError};

use crate::messages::PartError;
use crate::registry::TopicChangeError;

/// Kafka's error codes, every one Kafka 4.4 defines, named as in Kafka's `Errors` (the table
/// lives in `net` and is checked against Kafka's own enum by `cargo xtask crosscheck`).
pub use sluice_net::error_code::code;

/// The Kafka error code and message for a refused topic change.
pub fn topic_change(e: &TopicChangeError) -> (i16, String) {
    let c = match e {
        TopicChangeError::AlreadyExists(_) => code::TOPIC_ALREADY_EXISTS,
        TopicChangeError::UnknownTopic(_) => code::UNKNOWN_TOPIC_OR_PARTITION,
        TopicChangeError::InvalidName(_) => code::INVALID_TOPIC_EXCEPTION,
        TopicChangeError::InvalidPartitions(_) => code::INVALID_PARTITIONS,
        TopicChangeError::InvalidConfig(_) => code::INVALID_CONFIG,
        TopicChangeError::InvalidRequest(_) => code::INVALID_REQUEST,
        TopicChangeError::Storage(_) => code::KAFKA_STORAGE_ERROR,
        TopicChangeError::Unavailable => code::REQUEST_TIMED_OUT,
        TopicChangeError::Controller { code, .. } => *code,
    };
    (c, e.to_string())
}

/// A failed partition op as the Kafka answer carries it.
#[derive(Debug)]
pub struct PartAnswer {
    pub code: i16,
    pub message: String,
    /// Refused records of a batch (Produce's `record_errors`): (index in the batch, why). When
    /// present, `message` is Kafka's custom partition message for them.
    pub record_errors: Vec<RecordError>,
    /// The partition's offsets when the storage engine failed (Produce answers the log start
    /// offset, Fetch the offsets of an out-of-range read); `None` for a partition not here.
    pub offsets: Option<Offsets>,
}

impl PartAnswer {
    /// The log start offset Produce reports with a refused append: every error but a missing
    /// partition, a too-large or corrupt batch, or a storage error; -1 for those.
    pub fn produce_log_start_offset(&self) -> i64 {
        match (self.code, self.offsets) {
            (code::MESSAGE_TOO_LARGE | code::CORRUPT_MESSAGE | code::KAFKA_STORAGE_ERROR, _)
            | (_, None) => -1,
            (_, Some(o)) => o.log_start_offset,
        }
    }
}

/// The Kafka answer for a failed partition op: the one mapping from `shard` and the partition
/// service to the wire, applied at the response edge.
pub fn part(e: PartError) -> PartAnswer {
    let (code, message) = code_and_message(&e);
    match e {
        PartError::Diverging { offsets, .. } => PartAnswer {
            code,
            message,
            record_errors: Vec::new(),
            offsets: Some(offsets),
        },
        PartError::Storage { error, offsets } => PartAnswer {
            code,
            message,
            record_errors: match error {
                ShardError::RecordErrors { errors, .. } => errors,
                _ => Vec::new(),
            },
            offsets: Some(offsets),
        },
        _ => PartAnswer {
            code,
            message,
            record_errors: Vec::new(),
            offsets: None,
        },
    }
}

/// A failed partition op's Kafka error code and message.
fn code_and_message(e: &PartError) -> (i16, String) {
    match e {
        PartError::Storage { error, .. } => (shard_code(error), error.to_string()),
        PartError::NotHosted => (
            code::UNKNOWN_TOPIC_OR_PARTITION,
            "This server does not host this topic-partition.".to_owned(),
        ),
        PartError::NotLeader => (
            code::NOT_LEADER_OR_FOLLOWER,
            "For requests intended only for the leader, this error indicates that the broker is \
             not the current leader. For requests intended for any replica, this error indicates \
             that the broker is not a replica of the topic partition."
                .to_owned(),
        ),
        PartError::NoLeader => (
            code::LEADER_NOT_AVAILABLE,
            "There is no leader for this topic-partition as we are in the middle of a leadership \
             election."
                .to_owned(),
        ),
        PartError::Unopened(why) => (code::KAFKA_STORAGE_ERROR, why.clone()),
        PartError::DeleteBeyondHighWatermark {
            topic,
            partition,
            target,
            high_watermark,
        } => (
            code::OFFSET_OUT_OF_RANGE,
            format!(
                "Cannot increment the log start offset to {target} of partition \
                 {topic}-{partition} since it is larger than the high watermark {high_watermark}"
            ),
        ),
        PartError::CoreGone(core) => (
            code::KAFKA_STORAGE_ERROR,
            format!("core {core} did not answer"),
        ),
        PartError::Diverging { .. } => (code::NONE, String::new()),
        PartError::NotEnoughReplicas {
            topic,
            partition,
            isr,
            min_isr,
        } => (
            code::NOT_ENOUGH_REPLICAS,
            format!(
                "The size of the current ISR {isr} is insufficient to satisfy the min.isr \
                 requirement of {min_isr} for partition {topic}-{partition}"
            ),
        ),
        PartError::NotEnoughReplicasAfterAppend => (
            code::NOT_ENOUGH_REPLICAS_AFTER_APPEND,
            "Messages are written to the log, but to fewer in-sync replicas than required."
                .to_owned(),
        ),
        PartError::TimedOut => (
            code::REQUEST_TIMED_OUT,
            "The request timed out waiting for the in-sync replicas.".to_owned(),
        ),
    }
}

/// The Kafka error code for a storage error.
pub fn shard_code(e: &ShardError) -> i16 {
    match e {
        ShardError::RecordErrors { timestamp, .. } => {
            if *timestamp {
                code::INVALID_TIMESTAMP
            } else {
                code::INVALID_RECORD
            }
        }
        ShardError::InvalidBatch { source, .. } => match source {
            BatchError::BadCrc { .. }
            | BatchError::Truncated { .. }
            | BatchError::BadLength { .. } => code::CORRUPT_MESSAGE,
            BatchError::BadMagic { .. } => code::UNSUPPORTED_FOR_MESSAGE_FORMAT,
            _ => code::INVALID_RECORD,
        },
        ShardError::BatchTooLarge { .. } => code::MESSAGE_TOO_LARGE,
        ShardError::DuplicateSequence { .. } => code::DUPLICATE_SEQUENCE_NUMBER,
        ShardError::OutOfOrderSequence { .. } => code::OUT_OF_ORDER_SEQUENCE_NUMBER,
        ShardError::InvalidProducerEpoch { .. } => code::INVALID_PRODUCER_EPOCH,
        ShardError::TransactionCoordinatorFenced { .. } => code::TRANSACTION_COORDINATOR_FENCED,
        ShardError::InvalidTxnState { .. } | ShardError::NotInTransaction { .. } => {
            code::INVALID_TXN_STATE
        }
        ShardError::OffsetOutOfRange { .. } => code::OFFSET_OUT_OF_RANGE,
        ShardError::UnknownPartition { .. } | ShardError::Closed { .. } => {
            code::NOT_LEADER_OR_FOLLOWER
        }
        ShardError::PartitionExists { .. } | ShardError::NotContiguous { .. } => {
            code::UNKNOWN_SERVER_ERROR
        }
        ShardError::Io { .. }
        | ShardError::Corrupt { .. }
        | ShardError::BadMeta { .. }
        | ShardError::Poisoned { .. } => code::KAFKA_STORAGE_ERROR,
    }
}

/// Kafka's check of a request's `current_leader_epoch` (-1: not given) against the partition's
/// leader epoch: a newer one is UNKNOWN_LEADER_EPOCH (this broker is behind), an older one
/// FENCED_LEADER_EPOCH (the client is).
pub fn stale_epoch(current: i32, leader: i32) -> Option<i16> {
    if current > leader {
        Some(code::UNKNOWN_LEADER_EPOCH)
    } else if current >= 0 && current < leader {
        Some(code::FENCED_LEADER_EPOCH)
    } else {
        None
    }
}
