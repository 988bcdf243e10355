//! `sluice-shard`: one core's partitions.
//!
//! Owns segment files (direct I/O), sparse offset and time indexes, recovery, retention and the
//! per-core batch cache. It knows nothing of Kafka's wire protocol or of sockets.
