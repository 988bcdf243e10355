//! `sluice-txn`: Kafka 4.4's transaction coordinator as a sans-IO state machine (issue 23).
//!
//! The broker that leads a `__transaction_state` partition holds a [`Coordinator`] on that
//! partition's core and drives it:
//!
//! 1. Leadership: [`Coordinator::begin_load`], read the partition, [`Coordinator::finish_load`]
//!    with its records (it returns markers for transactions left in Prepare);
//!    [`Coordinator::unload`] when leadership goes.
//! 2. Requests, each with a caller-chosen [`RequestId`]: [`Coordinator::init_producer_id`],
//!    [`Coordinator::add_partitions`], [`Coordinator::add_offsets`], [`Coordinator::end_txn`]
//!    return [`Effect`]s; [`Coordinator::verify_partitions`], [`Coordinator::describe`] and
//!    [`Coordinator::list`] answer at once. Map codes with [`error_for_version`].
//! 3. Effects: `Answer` (send it; exactly one per request), `Append` (append the record to
//!    its `__transaction_state` partition with acks=all, then [`Coordinator::append_done`]),
//!    `WriteMarkers` (write a control batch to each partition, then
//!    [`Coordinator::markers_written`]). Follow-up effects come back from those two calls.
//! 4. Timers: [`Coordinator::abort_timed_out`] (Kafka: every 10 s) and
//!    [`Coordinator::expire_transactional_ids`] (every hour).
//!
//! Nothing here does I/O, reads a clock or allocates producer ids itself: `now_ms` and a
//! [`ProducerIdSource`] are passed in. State is durable only through the appends: a
//! transition applies when its record is, so an answer never promises more than the log has.
//!
//! The record format ([`encode_key`], [`encode_value`], [`decode_record`], [`replay`]) is
//! `TransactionLogKey`/`TransactionLogValue` v0 and v1, read and written as Kafka does, so a
//! `__transaction_state` partition can move between sluice and Kafka tools
//! (`kafka-dump-log --transaction-log-decoder`).
//!
//! Where this differs from Kafka: a record that does not decode stops a load instead of being
//! logged and skipped; marker errors Kafka treats as fatal stop the sending of that
//! transaction's markers instead of failing a thread; a fence that cannot proceed clears its
//! pending state (unreachable in Kafka's flows as well).
//!
//! Not here: the broker's side (authorization, topic existence checks and the per-partition
//! OPERATION_NOT_ATTEMPTED of AddPartitionsToTxn v3, TxnOffsetCommit in the group
//! coordinator, WriteTxnMarkers, the producer state and last stable offset of data partitions,
//! read_committed), and KIP-939's prepared-transaction recovery (Kafka 4.4 does not do it
//! either).

mod add;
mod admin;
mod background;
mod coordinator;
mod effect;
mod end_txn;
mod errors;
mod init_pid;
mod load;
mod log;
mod markers;
mod metadata;
mod partition;
mod types;

pub use admin::{Described, ListAnswer, ListFilter, Listed};
pub use coordinator::Coordinator;
pub use effect::{
    AddOffsets, AddPartitions, Answer, Append, Config, Effect, EndTxn, InitProducerId,
    MarkerResult, Markers, ProducerIdSource,
};
pub use errors::{TxnApi, append_error_to_coordinator, error_for_version};
pub use load::{ReplayError, replay};
pub use log::{
    LogPartitions, LogRecord, TXN_KEY_TYPE, TXN_VALUE_VERSION_MAX, TxnLogValue, decode_record,
    encode_key, encode_value,
};
pub use metadata::{TxnMetadata, TxnTransit};
pub use partition::{
    CONSUMER_OFFSETS_TOPIC, TRANSACTION_STATE_PARTITIONS, TRANSACTION_STATE_TOPIC,
    java_string_hash, kafka_abs, partition_for,
};
pub use types::{
    NO_PRODUCER_EPOCH, NO_PRODUCER_ID, RequestId, TopicPartition, TxnResult, TxnState, TxnVersion,
    WriteId, epoch_exhausted,
};
