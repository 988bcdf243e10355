//! Error codes that depend on who asks: the per-version rewrite Kafka's `KafkaApis` applies
//! to transactional answers, and how a failed `__transaction_state` append becomes a
//! coordinator error (Kafka's `TransactionStateManager.appendTransactionToLog`).

use sluice_net::ErrorCode;

/// The transactional APIs whose answers depend on the request version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnApi {
    InitProducerId,
    AddPartitionsToTxn,
    AddOffsetsToTxn,
    EndTxn,
}

/// The code to send for `code` at `version`: clients older than KIP-588 do not know
/// PRODUCER_FENCED and get INVALID_PRODUCER_EPOCH (InitProducerId below v4, the others below
/// v2).
pub fn error_for_version(api: TxnApi, version: i16, code: ErrorCode) -> ErrorCode {
    let first_with_fenced = match api {
        TxnApi::InitProducerId => 4,
        TxnApi::AddPartitionsToTxn | TxnApi::AddOffsetsToTxn | TxnApi::EndTxn => 2,
    };
    if code == ErrorCode::PRODUCER_FENCED && version < first_with_fenced {
        ErrorCode::INVALID_PRODUCER_EPOCH
    } else {
        code
    }
}

/// What a client hears when the append of its transition failed with `code`.
pub fn append_error_to_coordinator(code: ErrorCode) -> ErrorCode {
    match code {
        ErrorCode::UNKNOWN_TOPIC_OR_PARTITION
        | ErrorCode::NOT_ENOUGH_REPLICAS
        | ErrorCode::NOT_ENOUGH_REPLICAS_AFTER_APPEND
        | ErrorCode::REQUEST_TIMED_OUT => ErrorCode::COORDINATOR_NOT_AVAILABLE,
        ErrorCode::NOT_LEADER_OR_FOLLOWER | ErrorCode::KAFKA_STORAGE_ERROR => {
            ErrorCode::NOT_COORDINATOR
        }
        ErrorCode::MESSAGE_TOO_LARGE | ErrorCode::RECORD_LIST_TOO_LARGE => {
            ErrorCode::UNKNOWN_SERVER_ERROR
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PRODUCER_FENCED is rewritten only below each API's first KIP-588 version.
    #[test]
    fn fenced_by_version() {
        let f = ErrorCode::PRODUCER_FENCED;
        let old = ErrorCode::INVALID_PRODUCER_EPOCH;
        assert_eq!(error_for_version(TxnApi::InitProducerId, 3, f), old);
        assert_eq!(error_for_version(TxnApi::InitProducerId, 4, f), f);
        assert_eq!(error_for_version(TxnApi::EndTxn, 1, f), old);
        assert_eq!(error_for_version(TxnApi::EndTxn, 2, f), f);
        assert_eq!(error_for_version(TxnApi::AddPartitionsToTxn, 1, f), old);
        assert_eq!(error_for_version(TxnApi::AddOffsetsToTxn, 5, f), f);
        let c = ErrorCode::CONCURRENT_TRANSACTIONS;
        assert_eq!(error_for_version(TxnApi::EndTxn, 0, c), c);
    }

    /// Append errors map as Kafka's coordinator maps them.
    #[test]
    fn append_errors() {
        let m = append_error_to_coordinator;
        assert_eq!(
            m(ErrorCode::REQUEST_TIMED_OUT),
            ErrorCode::COORDINATOR_NOT_AVAILABLE
        );
        assert_eq!(
            m(ErrorCode::NOT_LEADER_OR_FOLLOWER),
            ErrorCode::NOT_COORDINATOR
        );
        assert_eq!(
            m(ErrorCode::MESSAGE_TOO_LARGE),
            ErrorCode::UNKNOWN_SERVER_ERROR
        );
        assert_eq!(m(ErrorCode::INVALID_REQUEST), ErrorCode::INVALID_REQUEST);
    }
}
