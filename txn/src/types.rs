//! The words of transactions: transaction states (with the ids the log stores and the names
//! DescribeTransactions prints), transaction versions (KIP-890's TV0/TV1/TV2), topic
//! partitions, commit/abort, and the "no producer" sentinels.
//!
//! What must stay true: a state's `id` and `name` are Kafka's, since both reach the disk or
//! the wire; the table of allowed previous states is Kafka 4.4's `TransactionState`.

/// Kafka's `RecordBatch.NO_PRODUCER_ID`.
pub const NO_PRODUCER_ID: i64 = -1;
/// Kafka's `RecordBatch.NO_PRODUCER_EPOCH`.
pub const NO_PRODUCER_EPOCH: i16 = -1;

/// The state of a transactional id, as Kafka 4.4's `TransactionState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TxnState {
    /// No transaction (after InitProducerId).
    Empty,
    /// Partitions were added; records may be written.
    Ongoing,
    /// EndTxn(commit) is durable; commit markers are being written.
    PrepareCommit,
    /// EndTxn(abort), a fence or a timeout is durable; abort markers are being written.
    PrepareAbort,
    /// Every commit marker is written.
    CompleteCommit,
    /// Every abort marker is written.
    CompleteAbort,
    /// The id expired; its tombstone is being written. Never persisted.
    Dead,
    /// A newer producer fences an ongoing transaction. Never persisted: only a pending state.
    PrepareEpochFence,
}

impl TxnState {
    /// Every state, in id order.
    pub const ALL: [TxnState; 8] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
        TxnState::Dead,
        TxnState::PrepareEpochFence,
    ];

    /// The `TransactionStatus` byte of a `TransactionLogValue`.
    pub fn id(self) -> i8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
            TxnState::Dead => 6,
            TxnState::PrepareEpochFence => 7,
        }
    }

    /// The state with this status byte.
    pub fn from_id(id: i8) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|s| s.id() == id)
    }

    /// The name DescribeTransactions and ListTransactions print (and ListTransactions filters).
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    /// The state with this name (case-sensitive, as Kafka's).
    pub fn from_name(name: &str) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether a transactional id in this state may expire.
    pub fn expiration_allowed(self) -> bool {
        matches!(
            self,
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
        )
    }

    /// The states a transition into this one may start from.
    pub fn valid_previous(self) -> &'static [TxnState] {
        use TxnState::*;
        match self {
            Empty => &[Empty, CompleteCommit, CompleteAbort],
            Ongoing => &[Ongoing, Empty, CompleteCommit, CompleteAbort],
            PrepareCommit => &[Ongoing],
            PrepareAbort => &[
                Ongoing,
                PrepareEpochFence,
                Empty,
                CompleteCommit,
                CompleteAbort,
            ],
            CompleteCommit => &[PrepareCommit],
            CompleteAbort => &[PrepareAbort],
            Dead => &[Empty, CompleteAbort, CompleteCommit],
            PrepareEpochFence => &[Ongoing],
        }
    }

    /// PrepareCommit or PrepareAbort.
    pub fn is_prepare(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }

    /// CompleteCommit or CompleteAbort.
    pub fn is_complete(self) -> bool {
        matches!(self, TxnState::CompleteCommit | TxnState::CompleteAbort)
    }
}

/// A transaction version: the level of Kafka's `transaction.version` feature, and the version
/// a client's requests imply (KIP-890 part 2: TV2 bumps the epoch at every EndTxn and adds
/// partitions implicitly). Unknown levels read from the log are kept as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TxnVersion(pub i16);

impl TxnVersion {
    /// Before KIP-890.
    pub const TV0: TxnVersion = TxnVersion(0);
    /// Flexible `TransactionLogValue` (v1) records; no epoch bump.
    pub const TV1: TxnVersion = TxnVersion(1);
    /// Epoch bump per transaction (KIP-890 part 2).
    pub const TV2: TxnVersion = TxnVersion(2);

    /// Whether EndTxn bumps the producer epoch.
    pub fn supports_epoch_bump(self) -> bool {
        self.0 >= 2
    }

    /// The `TransactionLogValue` version the coordinator writes at this (cluster) level.
    pub fn log_value_version(self) -> i16 {
        if self.0 >= 1 { 1 } else { 0 }
    }

    /// The client's version implied by an AddPartitionsToTxn request version: v4+ come from
    /// brokers adding partitions for TV2 clients.
    pub fn for_add_partitions(request_version: i16) -> TxnVersion {
        if request_version > 3 {
            TxnVersion::TV2
        } else {
            TxnVersion::TV0
        }
    }

    /// The client's version implied by an EndTxn request version (v5 is TV2).
    pub fn for_end_txn(request_version: i16) -> TxnVersion {
        if request_version > 4 {
            TxnVersion::TV2
        } else {
            TxnVersion::TV0
        }
    }
}

/// A topic partition of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: &str, partition: i32) -> TopicPartition {
        TopicPartition {
            topic: topic.to_string(),
            partition,
        }
    }
}

/// How a transaction ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxnResult {
    Commit,
    Abort,
}

impl TxnResult {
    /// The Prepare state that writes this result's markers.
    pub fn prepare_state(self) -> TxnState {
        match self {
            TxnResult::Commit => TxnState::PrepareCommit,
            TxnResult::Abort => TxnState::PrepareAbort,
        }
    }
}

/// A caller's handle on a request whose answer may come later, as an `Effect::Answer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// Names one append to `__transaction_state`: hand it back to `Coordinator::append_done`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WriteId(pub u64);

/// Whether the epoch is too close to `i16::MAX` to hand out: Kafka keeps the last value so the
/// coordinator can always fence.
pub fn epoch_exhausted(epoch: i16) -> bool {
    epoch >= i16::MAX - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ids and names are Kafka's and round-trip; Dead and PrepareEpochFence only come from
    /// the allowed-previous table entries Kafka has.
    #[test]
    fn ids_and_names_round_trip() {
        for s in TxnState::ALL {
            assert_eq!(TxnState::from_id(s.id()), Some(s));
            assert_eq!(TxnState::from_name(s.name()), Some(s));
        }
        assert_eq!(TxnState::from_id(8), None);
        assert_eq!(TxnState::from_name("ongoing"), None);
        assert_eq!(TxnState::CompleteAbort.id(), 5);
        assert_eq!(TxnState::PrepareEpochFence.name(), "PrepareEpochFence");
    }

    /// The request versions that imply TV2 are AddPartitionsToTxn v4+ and EndTxn v5.
    #[test]
    fn client_versions_from_request_versions() {
        assert_eq!(TxnVersion::for_add_partitions(3), TxnVersion::TV0);
        assert_eq!(TxnVersion::for_add_partitions(5), TxnVersion::TV2);
        assert_eq!(TxnVersion::for_end_txn(4), TxnVersion::TV0);
        assert_eq!(TxnVersion::for_end_txn(5), TxnVersion::TV2);
        assert_eq!(TxnVersion::TV0.log_value_version(), 0);
        assert_eq!(TxnVersion::TV1.log_value_version(), 1);
        assert!(!TxnVersion::TV1.supports_epoch_bump());
        assert!(epoch_exhausted(32766));
        assert!(!epoch_exhausted(32765));
    }
}
