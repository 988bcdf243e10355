//! The calls that cross cores to reach a transactional id's coordinator, and their answers:
//! plain `Send` data, with no handle to a core.

use sluice_net::ErrorCode;
use sluice_txn::{
    AddOffsets, AddPartitions, Answer, Described, EndTxn, InitProducerId, ListAnswer,
    TopicPartition,
};

/// A transaction request sent to the core that coordinates its transactional id.
#[derive(Debug)]
pub enum TxnCall {
    Init(InitProducerId),
    Add(AddPartitions),
    AddOffsets(AddOffsets),
    End(EndTxn),
    /// AddPartitionsToTxn v4+ with `verify_only`: which partitions are in the transaction.
    Verify {
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        partitions: Vec<TopicPartition>,
    },
    Describe(String),
    /// ListTransactions over the partitions this core coordinates.
    List {
        states: Vec<String>,
        producer_ids: Vec<i64>,
        duration_ms: i64,
        /// v2's `TransactionalIdPattern`, checked to compile (`id_pattern`).
        pattern: Option<String>,
    },
}

/// The answer to a [`TxnCall`].
#[derive(Debug)]
pub enum TxnReply {
    Answer(Answer),
    Verified(Vec<(TopicPartition, ErrorCode)>),
    Described(Described),
    Listed(ListAnswer),
    /// The call did not reach a loaded coordinator: NOT_COORDINATOR,
    /// COORDINATOR_LOAD_IN_PROGRESS or COORDINATOR_NOT_AVAILABLE.
    Failed(ErrorCode),
}

/// ListTransactions' `TransactionalIdPattern` as a regex that must match a whole id (Java's
/// `Pattern.matcher(id).matches()`): `None` for no pattern (null or empty), `Err` when it does
/// not compile (INVALID_REGULAR_EXPRESSION).
pub fn id_pattern(pattern: Option<&str>) -> Result<Option<regex::Regex>, ErrorCode> {
    match pattern {
        None | Some("") => Ok(None),
        Some(p) => regex::Regex::new(&format!("^(?:{p})$"))
            .map(Some)
            .map_err(|_| ErrorCode::INVALID_REGULAR_EXPRESSION),
    }
}
