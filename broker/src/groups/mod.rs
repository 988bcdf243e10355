//! The group coordinator: classic consumer groups and their committed offsets.
//!
//! The coordinator of group `g` is the owner of `__consumer_offsets` partition
//! `(javaHashCode(g) & 0x7fffffff) % partitions`, exactly Kafka's rule (so Kafka's tools and
//! sluice agree on where a group lives). That partition lives on one core (`shard_for`), and
//! every request for the group is answered there: other cores forward it over the mesh
//! ([`GroupCall`]). The groups of a partition are kept in memory on that core and rebuilt by
//! replaying the partition the first time it is needed after start-up.
//!
//! Committed offsets and group metadata are records in that partition (layout in
//! [`records`]), appended through the normal log, so an OffsetCommit is answered only after
//! its record is on disk. Group metadata (members, generation, assignment) is written when a
//! rebalance completes, when the group becomes empty, and when a static member is replaced;
//! those writes are ordered behind the state change and not awaited by the request, because a
//! lost group-metadata record costs only a rebalance after a crash, never an offset.
//!
//! The modules, by concept: [`calls`] (what crosses cores: plain `Send` data),
//! [`coordinator`] (the groups a core owns, and how a call is answered), [`group`] (one
//! group's state machine), [`journal`] (appending records, replaying a partition),
//! [`expiry`] (offsets retention, offsets of deleted topics), [`timers`] (the tick task) and
//! [`records`] (the byte layout). Nothing here imports the core: every input comes in as an
//! argument (see [`coordinator::Inputs`]).

pub mod calls;
pub mod coordinator;
pub mod expiry;
pub mod group;
pub mod journal;
pub mod records;
pub mod timers;

pub use self::calls::{CommitEntry, FetchedOffset, GroupCall, GroupReply};
pub use self::coordinator::{Coordinator, Inputs};

use crate::metadata::TopicTable;

/// The internal topic holding committed offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Kafka's `String.hashCode()` of a group id (over UTF-16 code units).
pub fn java_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// The `__consumer_offsets` partition of a group (Kafka's `Utils.abs(hash) % partitions`).
pub fn partition_for(group: &str, partitions: i32) -> i32 {
    (java_hash(group) & 0x7fff_ffff) % partitions.max(1)
}

/// The partition count of `__consumer_offsets` in `topics` (1 before the topic exists).
pub fn offsets_partitions(topics: &TopicTable) -> i32 {
    topics.topics.get(OFFSETS_TOPIC).map_or(1, |t| t.partitions)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's partition for a few group ids (Java `"…".hashCode()` by hand).
    #[test]
    fn partition_matches_java() {
        assert_eq!(java_hash(""), 0);
        assert_eq!(java_hash("a"), 97);
        assert_eq!(java_hash("ab"), 97 * 31 + 98);
        // "polygenelubricants".hashCode() == Integer.MIN_VALUE in Java.
        assert_eq!(java_hash("polygenelubricants"), i32::MIN);
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        assert_eq!(partition_for("console-consumer-1", 50), {
            let h = java_hash("console-consumer-1") & 0x7fff_ffff;
            h % 50
        });
    }
}
