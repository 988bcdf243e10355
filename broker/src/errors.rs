//! Kafka error codes, and the one place where sluice's internal errors become them.

use sluice_net::record_batch::BatchError;
use sluice_shard::ShardError;

use crate::partitions::PartError;
use crate::registry::TopicChangeError;

/// Kafka's numeric error codes; they live in the leaf module `error_code`.
pub(crate) use crate::error_code as code;

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
    };
    (c, e.to_string())
}

/// The Kafka error for a storage error: the one mapping from `shard` to the wire.
pub fn shard(e: &ShardError) -> PartError {
    if let ShardError::RecordErrors { timestamp, errors } = e {
        let c = if *timestamp {
            code::INVALID_TIMESTAMP
        } else {
            code::INVALID_RECORD
        };
        let mut error = PartError::new(c, e.to_string());
        error.record_errors = errors.clone();
        return error;
    }
    let c = match e {
        ShardError::InvalidBatch { source, .. } => match source {
            BatchError::BadCrc { .. }
            | BatchError::Truncated { .. }
            | BatchError::BadLength { .. } => code::CORRUPT_MESSAGE,
            BatchError::BadMagic { .. } => code::UNSUPPORTED_FOR_MESSAGE_FORMAT,
            _ => code::INVALID_RECORD,
        },
        ShardError::BatchTooLarge { .. } => code::MESSAGE_TOO_LARGE,
        ShardError::RecordErrors { .. } => unreachable!("answered above"),
        ShardError::DuplicateSequence { .. } => code::DUPLICATE_SEQUENCE_NUMBER,
        ShardError::OutOfOrderSequence { .. } => code::OUT_OF_ORDER_SEQUENCE_NUMBER,
        ShardError::InvalidProducerEpoch { .. } => code::INVALID_PRODUCER_EPOCH,
        ShardError::OffsetOutOfRange { .. } => code::OFFSET_OUT_OF_RANGE,
        ShardError::UnknownPartition { .. } | ShardError::Closed { .. } => {
            code::NOT_LEADER_OR_FOLLOWER
        }
        ShardError::PartitionExists { .. } => code::UNKNOWN_SERVER_ERROR,
        ShardError::Io { .. }
        | ShardError::Corrupt { .. }
        | ShardError::BadMeta { .. }
        | ShardError::Poisoned { .. } => code::KAFKA_STORAGE_ERROR,
    };
    PartError::new(c, e.to_string())
}
