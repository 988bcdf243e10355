//! Fixed bounds of the storage engine in bytes and counts: chunk sizes of scans and writes,
//! and counts fixed by a file format or by Kafka. Every bound an operator may tune is a field
//! of `ShardConfig` or `LogConfig` instead (`config.rs`). Layout sizes of a file format (header
//! and entry bytes) stay beside the code that encodes them. Related bounds are tied together by
//! `const` assertions at the bottom.

/// Bytes one step of a sequential scan reads from a segment file: recovery of a segment without
/// a valid index, truncation, rebuilding producer state, compaction and the time-index search.
/// Scans that also serve fetches read at least `ShardConfig::read_bytes_min`.
pub(crate) const SCAN_READ_BYTES: usize = 1 << 20;

/// Output bytes compaction gathers before one write of a cleaned segment.
pub(crate) const COMPACTION_WRITE_BYTES: usize = 1 << 20;

/// Regions the cleaner checkpoint remembers for tombstone ages; older ones merge (keeping
/// tombstones longer).
pub(crate) const CLEANER_REGIONS_MAX: usize = 64;

/// Producer state snapshots kept per partition (the newest ones at or below the log end), so a
/// damaged newest one falls back to an older one rather than to a replay of the whole log.
pub(crate) const SNAPSHOTS_KEPT: usize = 3;

/// Batches remembered per idempotent producer for duplicate detection: Kafka's
/// `ProducerStateEntry.NUM_BATCHES_TO_RETAIN`, matching the client's cap of 5 requests in
/// flight with idempotence on.
pub(crate) const PRODUCER_BATCHES_MAX: usize = 5;

/// Uncompressed bytes per block of snappy-java's xerial framing (its default block).
pub(crate) const XERIAL_BLOCK_BYTES: usize = 32 << 10;

/// The client's cap on requests in flight with idempotence on (`max.in.flight.requests.per.
/// connection`); every one of them must be recognizable as a duplicate on retry.
const IDEMPOTENT_IN_FLIGHT_MAX: usize = 5;

const _: () = assert!(PRODUCER_BATCHES_MAX >= IDEMPOTENT_IN_FLIGHT_MAX);
// An older snapshot to fall back to exists only when more than one is kept.
const _: () = assert!(SNAPSHOTS_KEPT >= 2);
// The newest region, which says when the latest cleaned part was cleaned, always stays.
const _: () = assert!(CLEANER_REGIONS_MAX >= 1);
