//! Kafka's error codes: every code of `org.apache.kafka.common.protocol.Errors` in Kafka 4.4.0,
//! with the enum's name and whether Kafka's exception for it is retriable.
//!
//! The table below is the only list: [`ErrorCode`]'s constants, the plain-`i16` constants in
//! [`code`] (the generated messages hold error codes as `i16`), [`ErrorCode::name`],
//! [`ErrorCode::is_retriable`] and [`ErrorCode::from_code`] are all generated from it by one
//! macro invocation. It is not trusted by hand: `cargo xtask crosscheck` prints it
//! (`net/examples/dump_error_codes.rs`) and compares it with Kafka's own `Errors.values()`
//! (`net/crosscheck/CrossCheck.java`), failing on any code missing on either side or any
//! difference in name or retriable flag.
//!
//! Invariants: codes are listed in strictly ascending order, each once (checked at compile time);
//! an `ErrorCode` value is always one of the table's codes (the field is private), so `name` and
//! `is_retriable` are total.

use std::fmt;

/// One of Kafka's error codes, as the wire carries it (an `i16`; `NONE` is 0).
///
/// Only the table's codes can be represented: build one from a constant such as
/// [`ErrorCode::UNKNOWN_TOPIC_OR_PARTITION`] or check a wire value with [`ErrorCode::from_code`].
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ErrorCode(i16);

macro_rules! error_codes {
    ($($code:literal $name:ident $retriable:literal,)*) => {
        impl ErrorCode {
            $(
                #[doc = concat!("Kafka's `", stringify!($name), "` (", stringify!($code), ").")]
                pub const $name: ErrorCode = ErrorCode($code);
            )*

            /// Every error code Kafka 4.4.0 defines, in ascending order of code.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name),*];

            /// The code for `code`, if Kafka defines it.
            pub const fn from_code(code: i16) -> Option<ErrorCode> {
                match code {
                    $($code => Some(ErrorCode::$name),)*
                    _ => None,
                }
            }

            /// Kafka's name for it (the `Errors` enum constant), e.g. `"NOT_COORDINATOR"`.
            pub const fn name(self) -> &'static str {
                match self.0 {
                    $($code => stringify!($name),)*
                    // Unreachable: every value comes from the table (the field is private).
                    _ => "UNKNOWN",
                }
            }

            /// Whether Kafka's exception for it is a `RetriableException`: a client may retry
            /// the same request and expect it to succeed.
            pub const fn is_retriable(self) -> bool {
                match self.0 {
                    $($code => $retriable,)*
                    _ => false,
                }
            }
        }

        /// The same codes as plain `i16` constants, for the generated messages' `error_code`
        /// fields (`code::NOT_COORDINATOR == ErrorCode::NOT_COORDINATOR.code()`).
        pub mod code {
            $(
                #[doc = concat!("Kafka's `", stringify!($name), "`.")]
                pub const $name: i16 = $code;
            )*
        }
    };
}

// Kafka 4.4.0's `Errors.values()`: code, name, retriable. Checked against Kafka by
// `cargo xtask crosscheck`.
error_codes! {
    -1 UNKNOWN_SERVER_ERROR false,
    0 NONE false,
    1 OFFSET_OUT_OF_RANGE false,
    2 CORRUPT_MESSAGE true,
    3 UNKNOWN_TOPIC_OR_PARTITION true,
    4 INVALID_FETCH_SIZE false,
    5 LEADER_NOT_AVAILABLE true,
    6 NOT_LEADER_OR_FOLLOWER true,
    7 REQUEST_TIMED_OUT true,
    8 BROKER_NOT_AVAILABLE false,
    9 REPLICA_NOT_AVAILABLE true,
    10 MESSAGE_TOO_LARGE false,
    11 STALE_CONTROLLER_EPOCH false,
    12 OFFSET_METADATA_TOO_LARGE false,
    13 NETWORK_EXCEPTION true,
    14 COORDINATOR_LOAD_IN_PROGRESS true,
    15 COORDINATOR_NOT_AVAILABLE true,
    16 NOT_COORDINATOR true,
    17 INVALID_TOPIC_EXCEPTION false,
    18 RECORD_LIST_TOO_LARGE false,
    19 NOT_ENOUGH_REPLICAS true,
    20 NOT_ENOUGH_REPLICAS_AFTER_APPEND true,
    21 INVALID_REQUIRED_ACKS false,
    22 ILLEGAL_GENERATION false,
    23 INCONSISTENT_GROUP_PROTOCOL false,
    24 INVALID_GROUP_ID false,
    25 UNKNOWN_MEMBER_ID false,
    26 INVALID_SESSION_TIMEOUT false,
    27 REBALANCE_IN_PROGRESS false,
    28 INVALID_COMMIT_OFFSET_SIZE false,
    29 TOPIC_AUTHORIZATION_FAILED false,
    30 GROUP_AUTHORIZATION_FAILED false,
    31 CLUSTER_AUTHORIZATION_FAILED false,
    32 INVALID_TIMESTAMP false,
    33 UNSUPPORTED_SASL_MECHANISM false,
    34 ILLEGAL_SASL_STATE false,
    35 UNSUPPORTED_VERSION false,
    36 TOPIC_ALREADY_EXISTS false,
    37 INVALID_PARTITIONS false,
    38 INVALID_REPLICATION_FACTOR false,
    39 INVALID_REPLICA_ASSIGNMENT false,
    40 INVALID_CONFIG false,
    41 NOT_CONTROLLER true,
    42 INVALID_REQUEST false,
    43 UNSUPPORTED_FOR_MESSAGE_FORMAT false,
    44 POLICY_VIOLATION false,
    45 OUT_OF_ORDER_SEQUENCE_NUMBER false,
    46 DUPLICATE_SEQUENCE_NUMBER false,
    47 INVALID_PRODUCER_EPOCH false,
    48 INVALID_TXN_STATE false,
    49 INVALID_PRODUCER_ID_MAPPING false,
    50 INVALID_TRANSACTION_TIMEOUT false,
    51 CONCURRENT_TRANSACTIONS true,
    52 TRANSACTION_COORDINATOR_FENCED false,
    53 TRANSACTIONAL_ID_AUTHORIZATION_FAILED false,
    54 SECURITY_DISABLED false,
    55 OPERATION_NOT_ATTEMPTED false,
    56 KAFKA_STORAGE_ERROR true,
    57 LOG_DIR_NOT_FOUND false,
    58 SASL_AUTHENTICATION_FAILED false,
    59 UNKNOWN_PRODUCER_ID false,
    60 REASSIGNMENT_IN_PROGRESS false,
    61 DELEGATION_TOKEN_AUTH_DISABLED false,
    62 DELEGATION_TOKEN_NOT_FOUND false,
    63 DELEGATION_TOKEN_OWNER_MISMATCH false,
    64 DELEGATION_TOKEN_REQUEST_NOT_ALLOWED false,
    65 DELEGATION_TOKEN_AUTHORIZATION_FAILED false,
    66 DELEGATION_TOKEN_EXPIRED false,
    67 INVALID_PRINCIPAL_TYPE false,
    68 NON_EMPTY_GROUP false,
    69 GROUP_ID_NOT_FOUND false,
    70 FETCH_SESSION_ID_NOT_FOUND true,
    71 INVALID_FETCH_SESSION_EPOCH true,
    72 LISTENER_NOT_FOUND true,
    73 TOPIC_DELETION_DISABLED false,
    74 FENCED_LEADER_EPOCH true,
    75 UNKNOWN_LEADER_EPOCH true,
    76 UNSUPPORTED_COMPRESSION_TYPE false,
    77 STALE_BROKER_EPOCH false,
    78 OFFSET_NOT_AVAILABLE true,
    79 MEMBER_ID_REQUIRED false,
    80 PREFERRED_LEADER_NOT_AVAILABLE true,
    81 GROUP_MAX_SIZE_REACHED false,
    82 FENCED_INSTANCE_ID false,
    83 ELIGIBLE_LEADERS_NOT_AVAILABLE true,
    84 ELECTION_NOT_NEEDED true,
    85 NO_REASSIGNMENT_IN_PROGRESS false,
    86 GROUP_SUBSCRIBED_TO_TOPIC false,
    87 INVALID_RECORD false,
    88 UNSTABLE_OFFSET_COMMIT true,
    89 THROTTLING_QUOTA_EXCEEDED true,
    90 PRODUCER_FENCED false,
    91 RESOURCE_NOT_FOUND false,
    92 DUPLICATE_RESOURCE false,
    93 UNACCEPTABLE_CREDENTIAL false,
    94 INCONSISTENT_VOTER_SET false,
    95 INVALID_UPDATE_VERSION false,
    96 FEATURE_UPDATE_FAILED false,
    97 PRINCIPAL_DESERIALIZATION_FAILURE false,
    98 SNAPSHOT_NOT_FOUND false,
    99 POSITION_OUT_OF_RANGE false,
    100 UNKNOWN_TOPIC_ID true,
    101 DUPLICATE_BROKER_REGISTRATION false,
    102 BROKER_ID_NOT_REGISTERED false,
    103 INCONSISTENT_TOPIC_ID true,
    104 INCONSISTENT_CLUSTER_ID false,
    105 TRANSACTIONAL_ID_NOT_FOUND false,
    106 FETCH_SESSION_TOPIC_ID_ERROR true,
    107 INELIGIBLE_REPLICA false,
    108 NEW_LEADER_ELECTED false,
    109 OFFSET_MOVED_TO_TIERED_STORAGE false,
    110 FENCED_MEMBER_EPOCH false,
    111 UNRELEASED_INSTANCE_ID false,
    112 UNSUPPORTED_ASSIGNOR false,
    113 STALE_MEMBER_EPOCH false,
    114 MISMATCHED_ENDPOINT_TYPE false,
    115 UNSUPPORTED_ENDPOINT_TYPE false,
    116 UNKNOWN_CONTROLLER_ID false,
    117 UNKNOWN_SUBSCRIPTION_ID false,
    118 TELEMETRY_TOO_LARGE false,
    119 INVALID_REGISTRATION false,
    120 TRANSACTION_ABORTABLE false,
    121 INVALID_RECORD_STATE false,
    122 SHARE_SESSION_NOT_FOUND true,
    123 INVALID_SHARE_SESSION_EPOCH true,
    124 FENCED_STATE_EPOCH false,
    125 INVALID_VOTER_KEY false,
    126 DUPLICATE_VOTER false,
    127 VOTER_NOT_FOUND false,
    128 INVALID_REGULAR_EXPRESSION false,
    129 REBOOTSTRAP_REQUIRED false,
    130 STREAMS_INVALID_TOPOLOGY false,
    131 STREAMS_INVALID_TOPOLOGY_EPOCH false,
    132 STREAMS_TOPOLOGY_FENCED false,
    133 SHARE_SESSION_LIMIT_REACHED true,
    134 GROUP_DELETION_FAILED false,
    135 STREAMS_TOPOLOGY_DESCRIPTION_UPDATE_FAILED false,
    136 CONTROLLER_ID_NOT_REGISTERED false,
}

// Ascending and unique: a code listed twice fails the build (a name listed twice already does).
const _: () = {
    let mut i = 1;
    while i < ErrorCode::ALL.len() {
        assert!(ErrorCode::ALL[i - 1].0 < ErrorCode::ALL[i].0);
        i += 1;
    }
};

impl ErrorCode {
    /// The wire value.
    pub const fn code(self) -> i16 {
        self.0
    }
}

impl From<ErrorCode> for i16 {
    fn from(e: ErrorCode) -> i16 {
        e.0
    }
}

/// `NAME (code)`, e.g. `UNKNOWN_TOPIC_OR_PARTITION (3)`.
impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Every code survives `from_code(code())`, and nothing outside the table does.
    #[test]
    fn from_code_round_trips_every_code_and_only_those() {
        for &e in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_code(e.code()), Some(e));
            assert_eq!(i16::from(e), e.code());
        }
        let known: HashSet<i16> = ErrorCode::ALL.iter().map(|e| e.code()).collect();
        for c in i16::MIN..=i16::MAX {
            assert_eq!(
                ErrorCode::from_code(c).is_some(),
                known.contains(&c),
                "code {c}"
            );
        }
    }

    /// No code and no name appears twice, and no name is the fallback.
    #[test]
    fn codes_and_names_are_unique() {
        let codes: HashSet<i16> = ErrorCode::ALL.iter().map(|e| e.code()).collect();
        let names: HashSet<&str> = ErrorCode::ALL.iter().map(|e| e.name()).collect();
        assert_eq!(codes.len(), ErrorCode::ALL.len());
        assert_eq!(names.len(), ErrorCode::ALL.len());
        assert!(!names.contains("UNKNOWN"));
    }

    /// Kafka 4.4.0 numbers its errors -1..=136 without gaps.
    #[test]
    fn the_table_is_kafka_4_4s_range() {
        assert_eq!(
            ErrorCode::ALL.first(),
            Some(&ErrorCode::UNKNOWN_SERVER_ERROR)
        );
        assert_eq!(ErrorCode::ALL.last().map(|e| e.code()), Some(136));
        assert_eq!(ErrorCode::ALL.len(), 138);
    }

    /// A few well-known entries, their plain `code` twins, and the Display form.
    #[test]
    fn known_entries() {
        assert_eq!(ErrorCode::NONE.code(), 0);
        assert_eq!(ErrorCode::UNKNOWN_SERVER_ERROR.code(), -1);
        assert_eq!(ErrorCode::OFFSET_OUT_OF_RANGE.code(), 1);
        assert_eq!(code::UNKNOWN_TOPIC_OR_PARTITION, 3);
        assert_eq!(code::NOT_COORDINATOR, ErrorCode::NOT_COORDINATOR.code());
        assert_eq!(ErrorCode::NOT_COORDINATOR.name(), "NOT_COORDINATOR");
        assert!(ErrorCode::NOT_COORDINATOR.is_retriable());
        assert!(!ErrorCode::TOPIC_ALREADY_EXISTS.is_retriable());
        assert!(!ErrorCode::NONE.is_retriable());
        assert_eq!(
            ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.to_string(),
            "UNKNOWN_TOPIC_OR_PARTITION (3)"
        );
    }
}
