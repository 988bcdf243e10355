//! Which `__transaction_state` partition owns a transactional id (and which
//! `__consumer_offsets` partition owns a group): Kafka's `Utils.abs(id.hashCode()) % n`, with
//! Java's `String.hashCode` over UTF-16 code units and `Utils.abs` mapping `i32::MIN` to 0.
//!
//! What must stay true: the same id lands on the same partition as on Kafka, or clients
//! (which ask FindCoordinator) and the coordinator disagree about the owner.

/// Kafka's default `transaction.state.log.num.partitions`.
pub const TRANSACTION_STATE_PARTITIONS: i32 = 50;

/// The transaction state topic.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

/// The committed offsets topic (AddOffsetsToTxn adds one of its partitions).
pub const CONSUMER_OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Java's `String.hashCode()`.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// Kafka's `Utils.abs`: the absolute value, with `i32::MIN` (which has none) mapped to 0.
pub fn kafka_abs(n: i32) -> i32 {
    if n == i32::MIN { 0 } else { n.abs() }
}

/// The partition of `id` among `partitions` (at least 1).
pub fn partition_for(id: &str, partitions: i32) -> i32 {
    kafka_abs(java_string_hash(id)) % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values computed with Java's `"...".hashCode()`: the empty string, ASCII, a string whose
    /// hash is negative, and one outside the BMP (two UTF-16 code units).
    #[test]
    fn hash_matches_java() {
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("hello"), 99_162_322);
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        assert_eq!(java_string_hash("\u{1F600}"), 0xD83D * 31 + 0xDE00);
    }

    /// Utils.abs differs from `& 0x7fffffff` for negative hashes and maps i32::MIN to 0
    /// (Java: "my-txn-0".hashCode() is -1894316500, which lands on 0, not 48).
    #[test]
    fn partition_uses_kafka_abs() {
        assert_eq!(java_string_hash("my-txn-0"), -1_894_316_500);
        assert_eq!(partition_for("my-txn-0", 50), 0);
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        assert_eq!(partition_for("transactional-id-with-a-long-name", 50), 43);
        assert_eq!(partition_for("hello", 50), 22);
        assert_eq!(kafka_abs(-7), 7);
        assert_eq!(partition_for("x", 0), 0);
    }
}
