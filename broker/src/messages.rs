//! What cores send each other: plain `Send` data, one enum each way.
//!
//! Every cross-core call is a [`CoreRequest`] answered by a [`CoreReply`], carried by
//! [`crate::router::Router`] (which runs a call to this core in place and sends the others over
//! the mesh). Nothing here holds an `Rc`, a `RefCell` or a DMA buffer, and errors travel typed
//! ([`PartError`]), to be turned into Kafka codes only at the response edge (`errors.rs`).

use std::time::Duration;

use bytes::Bytes;
use sluice_shard::{AppendInfo, Offsets, ReadResult, ShardError};

use crate::metadata::TopicTable;
use crate::registry::{TopicChange, TopicChangeError};

/// A request one core sends another (or itself, through the router).
#[derive(Debug)]
pub enum CoreRequest {
    /// Start-up check that the peer's receive loop runs.
    Ping,
    /// To the control core: change the topic registry (only that core writes it).
    ChangeTopics(Vec<TopicChange>),
    /// From the control core: the registry changed; adopt this table (and open or drop
    /// partitions).
    TopicsChanged(TopicTable),
    /// Operations on partitions the receiving core owns.
    Partitions(Vec<Addressed>),
    /// Fetch's read-or-wait on the receiving core's partitions.
    Fetch(FetchOnCore),
    /// End a parked [`CoreRequest::Fetch`] wait now (its fetch has answered or was dropped).
    CancelWait(WaitId),
    /// To the control core: a fresh producer id.
    AllocateProducerId,
    /// To the core that coordinates a group.
    Group(crate::groups::GroupCall),
    /// This core's metrics, for a scrape.
    Metrics,
    /// To the core that coordinates a transactional id (`partition`: its
    /// `__transaction_state` partition; -1 for a ListTransactions of the whole core).
    Txn {
        partition: i32,
        call: crate::txn::calls::TxnCall,
    },
    /// From the control core: the controller shard published a newer metadata image.
    MetadataImage(sluice_controller::MetadataImage),
    /// To the control core of a cluster node: send this request to the active controller.
    Forward(Box<sluice_net::Request>),
}

/// The answer to a [`CoreRequest`].
#[derive(Debug)]
pub enum CoreReply {
    Pong,
    /// One result per requested change, in order.
    TopicsChangedResult(Vec<Result<(), TopicChangeError>>),
    Ack,
    /// The active controller's answer to a [`CoreRequest::Forward`].
    Forwarded(crate::forward::Forwarded),
    Partitions(Vec<PartitionOpResult>),
    /// One result per read of the [`FetchOnCore`], in order.
    Fetched(Vec<Result<ReadResult, PartError>>),
    ProducerId(Result<i64, ()>),
    Group(crate::groups::GroupReply),
    Txn(crate::txn::calls::TxnReply),
    Metrics(crate::metrics::Snapshot),
}

/// Why an operation on a partition failed, with the context the Kafka answer needs.
#[derive(Debug)]
pub enum PartError {
    /// The storage engine refused or failed; `offsets` are the partition's at that moment
    /// (Produce answers the log start offset, Fetch the offsets of an out-of-range read).
    Storage { error: ShardError, offsets: Offsets },
    /// No partition of that name and number exists (as far as this broker's image knows).
    NotHosted,
    /// Another broker leads the partition (a cluster node): the client should ask it.
    NotLeader,
    /// The partition has no leader now: its only replicas are fenced (a cluster node).
    NoLeader,
    /// The partition is this broker's but failed to open: why.
    Unopened(String),
    /// DeleteRecords past the high watermark.
    DeleteBeyondHighWatermark {
        topic: String,
        partition: i32,
        target: i64,
        high_watermark: i64,
    },
    /// The owning core did not answer (it is stopping, or gone).
    CoreGone(usize),
    /// A follower's Fetch whose log left the leader's: its last fetched epoch ends at
    /// `end_offset` in the leader's log (`epoch` the largest at or below it there). Answered
    /// as Fetch's `diverging_epoch`, with no error.
    Diverging {
        epoch: i32,
        end_offset: i64,
        offsets: Offsets,
    },
    /// acks=all: the in-sync replicas are fewer than `min.insync.replicas`, nothing appended.
    NotEnoughReplicas {
        topic: String,
        partition: i32,
        isr: usize,
        min_isr: usize,
    },
    /// acks=all: appended, but the high watermark did not reach the batch in the request's
    /// timeout.
    TimedOut,
    /// acks=all: appended and passed by the high watermark, but the ISR shrank below
    /// `min.insync.replicas` meanwhile.
    NotEnoughReplicasAfterAppend,
}

/// How a Produce append treats a transactional batch that would open a transaction on the
/// partition (KIP-890; Kafka's `transaction.partition.verification.enable`, always on here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnAppend {
    /// Not appended if `producer` (the id and epoch of a transactional batch, read by the
    /// produce handler) has no transaction open here: the answer is then
    /// `PartitionOpResult::Verify`. `epoch_bump`: the producer is of transaction version 2
    /// (Produce v12+).
    Start {
        producer: Option<(i64, i16)>,
        /// The first sequence of the request's first batch.
        first_sequence: i32,
        epoch_bump: bool,
    },
    /// The coordinator confirmed the partition (or was not asked: `None`, which a batch
    /// opening a transaction fails). `leader_epoch`: the replication epoch the guard was
    /// taken in (`None` off a cluster); the append is refused as NOT_LEADER_OR_FOLLOWER if
    /// leadership moved meanwhile.
    Verified {
        guard: Option<u64>,
        leader_epoch: Option<i32>,
    },
}

/// What to do to one partition.
#[derive(Debug)]
pub enum PartitionOp {
    /// Append one or more v2 batches (a Produce `records` field); with acks=all, answer once
    /// the high watermark passes them or after the timeout.
    Append {
        records: Bytes,
        acks_all: Option<std::time::Duration>,
        txn: TxnAppend,
    },
    /// Log start, high watermark, log end.
    Offsets,
    /// First offset whose timestamp is at or after this one.
    OffsetForTimestamp { timestamp_ms: i64 },
    /// DeleteRecords: move the log start offset up to `offset` (-1: the high watermark).
    DeleteRecordsBefore { offset: i64 },
    /// Offsets and bytes on disk (DescribeLogDirs).
    Describe,
    /// Offset and timestamp of the first record with the largest timestamp (ListOffsets -3).
    MaxTimestamp,
    /// Offsets and the last stable offset (ListOffsets with read_committed).
    StableOffsets,
    /// Where leader epoch `epoch` ends in the log (OffsetForLeaderEpoch for an older epoch).
    EpochEnd { epoch: i32 },
    /// A transaction marker from the transaction coordinator (WriteTxnMarkers).
    WriteMarker {
        producer_id: i64,
        producer_epoch: i16,
        marker: sluice_shard::Marker,
        /// The transaction's version (WriteTxnMarkers v2): from 2 the marker carries the
        /// bumped epoch.
        transaction_version: i8,
    },
}

/// The result of a [`PartitionOp`], in the same variant order.
#[derive(Debug)]
pub enum PartitionOpResult {
    Appended(Result<AppendInfo, PartError>),
    /// Nothing appended: the batch would open a transaction, which the coordinator must
    /// confirm first (KIP-890); append it again with `TxnAppend::Verified`.
    Verify {
        guard: u64,
        producer_id: i64,
        producer_epoch: i16,
        leader_epoch: Option<i32>,
    },
    Offsets(Result<Offsets, PartError>),
    OffsetForTimestamp(Result<Option<(i64, i64)>, PartError>),
    DeletedRecords(Result<i64, PartError>),
    Described(Result<(Offsets, u64), PartError>),
    MaxTimestamp(Result<Option<(i64, i64)>, PartError>),
    StableOffsets(Result<(Offsets, i64), PartError>),
    EpochEnd(Result<Option<(i32, i64)>, PartError>),
    MarkerWritten(Result<AppendInfo, PartError>),
}

impl PartitionOp {
    /// How this op fails: kept before the op is handed away, and called only if it does fail,
    /// so the request path builds no error it does not send.
    pub fn failure(&self) -> fn(PartError) -> PartitionOpResult {
        match self {
            PartitionOp::Append { .. } => |e| PartitionOpResult::Appended(Err(e)),
            PartitionOp::Offsets => |e| PartitionOpResult::Offsets(Err(e)),
            PartitionOp::OffsetForTimestamp { .. } => {
                |e| PartitionOpResult::OffsetForTimestamp(Err(e))
            }
            PartitionOp::DeleteRecordsBefore { .. } => {
                |e| PartitionOpResult::DeletedRecords(Err(e))
            }
            PartitionOp::Describe => |e| PartitionOpResult::Described(Err(e)),
            PartitionOp::MaxTimestamp => |e| PartitionOpResult::MaxTimestamp(Err(e)),
            PartitionOp::StableOffsets => |e| PartitionOpResult::StableOffsets(Err(e)),
            PartitionOp::EpochEnd { .. } => |e| PartitionOpResult::EpochEnd(Err(e)),
            PartitionOp::WriteMarker { .. } => |e| PartitionOpResult::MarkerWritten(Err(e)),
        }
    }
}

/// One op addressed to a partition.
#[derive(Debug)]
pub struct Addressed {
    pub topic: String,
    pub partition: i32,
    pub op: PartitionOp,
}

/// One partition read of a fetch.
#[derive(Debug, Clone)]
pub struct FetchRead {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub max_bytes: usize,
    /// A follower's read: up to the log end, after the divergence check.
    pub replica: Option<ReplicaRead>,
    /// A read_committed consumer's read: up to the last stable offset, with the aborted
    /// transactions the batches overlap.
    pub committed: bool,
}

/// Who reads for a follower (its id and broker epoch, -1 when not given), the epoch of its
/// log's last batch (-1: none or not given) and its log start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaRead {
    pub replica: i32,
    pub broker_epoch: i64,
    pub last_fetched_epoch: i32,
    pub log_start_offset: i64,
}

/// Names one parked fetch wait: the asking core and its serial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WaitId {
    pub core: usize,
    pub serial: u64,
}

/// A fetch's reads on one core: answered at once when `wait` is `None`, when the reads found
/// `min_bytes` or an error, or when the broker stops; otherwise the owning core parks one wait
/// for an append past what it read on any of these partitions, until `wait`'s timeout or a
/// [`CoreRequest::CancelWait`], then reads again and answers.
#[derive(Debug)]
pub struct FetchOnCore {
    pub reads: Vec<FetchRead>,
    pub min_bytes: usize,
    /// The fetch's `max_bytes`: the reads on this core stay within it, in request order.
    pub max_bytes: usize,
    pub wait: Option<(WaitId, Duration)>,
}
