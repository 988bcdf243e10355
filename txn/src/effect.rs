//! What goes in and out of the coordinator: its settings, the requests (already decoded and
//! checked for authorization and topic existence by the broker), the answers, and the effects
//! the broker must carry out (append a record, answer a request, write markers).
//!
//! What must stay true: every request handed in with a `RequestId` gets exactly one
//! `Effect::Answer` for it, now or after the append it started completes; an `Append` is
//! answered by exactly one `Coordinator::append_done`.

use sluice_net::ErrorCode;

use crate::types::{RequestId, TopicPartition, TxnResult, TxnVersion, WriteId};

/// The coordinator's settings (Kafka's names in the field docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `transaction.state.log.num.partitions` (50).
    pub state_log_partitions: i32,
    /// `transaction.max.timeout.ms` (900000): larger InitProducerId timeouts are refused.
    pub max_timeout_ms: i32,
    /// `transactional.id.expiration.ms` (7 days): idle ids are forgotten after this.
    pub id_expiration_ms: i64,
    /// `transaction.two.phase.commit.enable` (false): KIP-939 producers are refused without it.
    pub two_phase_commit_enable: bool,
    /// The cluster's finalized `transaction.version` feature (2 on a new Kafka 4.x cluster):
    /// which `TransactionLogValue` version is written, and how timeouts and fences abort.
    pub cluster_version: TxnVersion,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            state_log_partitions: 50,
            max_timeout_ms: 900_000,
            id_expiration_ms: 7 * 24 * 60 * 60 * 1000,
            two_phase_commit_enable: false,
            cluster_version: TxnVersion::TV2,
        }
    }
}

/// Where new producer ids come from (the broker's block of ids from the controller). It must
/// answer at once: an error (COORDINATOR_LOAD_IN_PROGRESS while no block is at hand, as
/// Kafka's `RPCProducerIdManager`) goes back to the client, which retries.
pub trait ProducerIdSource {
    fn next_producer_id(&mut self) -> Result<i64, ErrorCode>;
}

/// InitProducerId with a transactional id (a null id is the idempotent path, not ours).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitProducerId {
    pub transactional_id: String,
    pub timeout_ms: i32,
    /// The producer's current id and epoch (v3+, KIP-360), or -1 and -1.
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// v6 (KIP-939) `Enable2Pc`.
    pub enable_two_phase_commit: bool,
    /// v6 (KIP-939) `KeepPreparedTxn`: Kafka 4.4 answers UNSUPPORTED_VERSION.
    pub keep_prepared_txn: bool,
}

/// AddPartitionsToTxn for one transaction (v3 from a client; v4+ `verify_only: false` from a
/// broker for a TV2 client): `client_version` is `TxnVersion::for_add_partitions(version)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddPartitions {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub partitions: Vec<TopicPartition>,
    pub client_version: TxnVersion,
}

/// AddOffsetsToTxn: `offsets_partition` is the group's `__consumer_offsets` partition, as
/// the group coordinator computes it (Kafka: `Utils.abs(group.hashCode) % partitions`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddOffsets {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub offsets_partition: i32,
}

/// EndTxn: `client_version` is `TxnVersion::for_end_txn(version)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndTxn {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub result: TxnResult,
    pub client_version: TxnVersion,
}

/// An answer, before the per-version mapping of `errors::error_for_version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Producer id and epoch are -1 on an error.
    InitProducerId {
        error: ErrorCode,
        producer_id: i64,
        producer_epoch: i16,
    },
    /// One code for every partition of the transaction (v3: each partition's slot; the broker
    /// answers UNKNOWN_TOPIC_OR_PARTITION / OPERATION_NOT_ATTEMPTED before asking us).
    AddPartitions {
        error: ErrorCode,
    },
    AddOffsets {
        error: ErrorCode,
    },
    /// v5 carries the producer id and epoch to use next (TV2); -1 and -1 otherwise.
    EndTxn {
        error: ErrorCode,
        producer_id: i64,
        producer_epoch: i16,
    },
}

/// Append one record to `__transaction_state` partition `partition` (acks=all, as a leader in
/// `coordinator_epoch`), then call `Coordinator::append_done(write, ..)` with the outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Append {
    pub write: WriteId,
    pub partition: i32,
    pub coordinator_epoch: i32,
    pub transactional_id: String,
    pub key: Vec<u8>,
    /// `None`: a tombstone (the id expired).
    pub value: Option<Vec<u8>>,
    pub timestamp_ms: i64,
}

/// Write a commit or abort marker (a control batch) for the producer to each partition, as
/// WriteTxnMarkers does, then report each partition's outcome through
/// `Coordinator::markers_written`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Markers {
    pub transactional_id: String,
    pub coordinator_epoch: i32,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub result: TxnResult,
    /// WriteTxnMarkers v2's `TransactionVersion` (the transaction's client version).
    pub transaction_version: i16,
    pub partitions: Vec<TopicPartition>,
}

/// How writing one marker went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerResult {
    Written,
    /// The topic no longer exists: no marker is needed (Kafka drops the partition).
    TopicDeleted,
    /// The partition leader's error code from WriteTxnMarkers.
    Failed(ErrorCode),
}

/// Something the broker must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Answer { request: RequestId, answer: Answer },
    Append(Append),
    WriteMarkers(Markers),
}
