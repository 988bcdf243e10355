//! Kafka error codes, and the one place where sluice's internal errors become them.

use sluice_net::record_batch::BatchError;
use sluice_shard::{Offsets, RecordError, ShardError};

use crate::messages::PartError;
use crate::registry::TopicChangeError;

/// Kafka's numeric error codes (the subset sluice answers with), named as in Kafka's `Errors`.
#[allow(dead_code)]
pub mod code {
    pub const NONE: i16 = 0;
    pub const UNKNOWN_SERVER_ERROR: i16 = -1;
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const CORRUPT_MESSAGE: i16 = 2;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const INVALID_FETCH_SIZE: i16 = 4;
    pub const LEADER_NOT_AVAILABLE: i16 = 5;
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    pub const REQUEST_TIMED_OUT: i16 = 7;
    pub const MESSAGE_TOO_LARGE: i16 = 10;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const NOT_COORDINATOR: i16 = 16;
    pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
    pub const RECORD_LIST_TOO_LARGE: i16 = 18;
    pub const NOT_ENOUGH_REPLICAS: i16 = 19;
    pub const INVALID_REQUIRED_ACKS: i16 = 21;
    pub const ILLEGAL_GENERATION: i16 = 22;
    pub const INVALID_TIMESTAMP: i16 = 32;
    pub const UNSUPPORTED_VERSION: i16 = 35;
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
    pub const INVALID_PARTITIONS: i16 = 37;
    pub const INVALID_REPLICATION_FACTOR: i16 = 38;
    pub const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
    pub const INVALID_CONFIG: i16 = 40;
    pub const INVALID_REQUEST: i16 = 42;
    pub const POLICY_VIOLATION: i16 = 44;
    pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
    pub const DUPLICATE_SEQUENCE_NUMBER: i16 = 46;
    pub const INVALID_PRODUCER_EPOCH: i16 = 47;
    pub const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
    pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
    pub const KAFKA_STORAGE_ERROR: i16 = 56;
    pub const UNKNOWN_PRODUCER_ID: i16 = 59;
    pub const UNKNOWN_TOPIC_ID: i16 = 100;
    pub const INVALID_RECORD: i16 = 87;
    pub const FENCED_LEADER_EPOCH: i16 = 74;
    pub const UNKNOWN_LEADER_EPOCH: i16 = 75;
    pub const OFFSET_NOT_AVAILABLE: i16 = 78;
    pub const INCONSISTENT_TOPIC_ID: i16 = 103;
    pub const INVALID_TXN_STATE: i16 = 48;
    pub const UNSUPPORTED_FOR_MESSAGE_FORMAT: i16 = 43;
    pub const OFFSET_METADATA_TOO_LARGE: i16 = 12;
    pub const INVALID_COMMIT_OFFSET_SIZE: i16 = 28;
    pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
    pub const INVALID_GROUP_ID: i16 = 24;
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    pub const INVALID_SESSION_TIMEOUT: i16 = 26;
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    pub const NON_EMPTY_GROUP: i16 = 68;
    pub const GROUP_ID_NOT_FOUND: i16 = 69;
    pub const MEMBER_ID_REQUIRED: i16 = 79;
    pub const GROUP_MAX_SIZE_REACHED: i16 = 81;
    pub const FENCED_INSTANCE_ID: i16 = 82;
    pub const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;
    pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    pub const REBOOTSTRAP_REQUIRED: i16 = 129;
}

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
    let (code, message) = match &e {
        PartError::Storage { error, .. } => (shard_code(error), error.to_string()),
        PartError::NotHosted => (
            code::UNKNOWN_TOPIC_OR_PARTITION,
            "This server does not host this topic-partition.".to_owned(),
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
    };
    match e {
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
        ShardError::OffsetOutOfRange { .. } => code::OFFSET_OUT_OF_RANGE,
        ShardError::UnknownPartition { .. } | ShardError::Closed { .. } => {
            code::NOT_LEADER_OR_FOLLOWER
        }
        ShardError::PartitionExists { .. } => code::UNKNOWN_SERVER_ERROR,
        ShardError::Io { .. }
        | ShardError::Corrupt { .. }
        | ShardError::BadMeta { .. }
        | ShardError::Poisoned { .. } => code::KAFKA_STORAGE_ERROR,
    }
}
