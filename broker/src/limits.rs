//! Fixed bounds of the broker in bytes and counts: limits set by Kafka's protocol or by the
//! kernel, and sizes of internal queues and buffers that are not worth a setting. Every bound an
//! operator may tune is a field of `BrokerConfig` instead (`config.rs`); layout sizes of a file
//! format stay beside the code that encodes it. Related bounds are tied together by `const`
//! assertions at the bottom.

/// Longest topic name, as Kafka (249 characters).
pub const TOPIC_NAME_BYTES_MAX: usize = 249;

/// Envelopes queued per core pair on the mesh before a sender waits.
pub const MESH_CHANNEL_MAX: usize = 1024;

/// Connections the kernel queues on each core's listening socket before one is accepted (the
/// kernel caps it at `net.core.somaxconn`).
pub const LISTEN_BACKLOG_MAX: i32 = 1024;

/// Initial capacity of a connection's receive buffer.
pub const CONNECTION_BUFFER_BYTES: usize = 64 << 10;

/// Least a connection's receive buffer grows by at once (fewer, larger reallocations).
pub const CONNECTION_RESERVE_BYTES_MIN: usize = 16 << 10;

/// Most a connection's receive buffer grows by at once: a large frame is read in steps, so an
/// announced size is never allocated before its bytes arrive.
pub const CONNECTION_RESERVE_BYTES_MAX: usize = 1 << 20;

/// Least bytes one socket read asks for when the buffer has room, so small frames that follow
/// each other are read together.
pub const CONNECTION_READ_BYTES_MIN: usize = 64 << 10;

/// Chunks handed to one `sendmsg`.
pub const SENDMSG_CHUNKS_MAX: usize = 512;

/// The kernel's limit on chunks per `sendmsg` (`UIO_MAXIOV`).
const UIO_MAXIOV: usize = 1024;

/// Bytes of a malformed request shown (in hex) in its debug log line.
pub const MALFORMED_LOG_BYTES_MAX: usize = 512;

/// `segment.bytes` of `__consumer_offsets` when the broker creates it: Kafka's
/// `offsets.topic.segment.bytes` default, 100 MiB.
pub const OFFSETS_SEGMENT_BYTES: u64 = 100 << 20;

/// Disk reserved ahead (fallocate) per `__consumer_offsets` partition: its 50 partitions hold
/// small records, so the 64 MiB of other topics would waste disk.
pub const OFFSETS_PREALLOCATE_BYTES: u64 = 1 << 20;

/// Largest batch of records one write to `__consumer_offsets` carries (a big commit is split;
/// a batch goes past this by at most one record).
pub const OFFSETS_WRITE_BATCH_BYTES: usize = 512 << 10;

/// Bytes one read of `__consumer_offsets` asks for while replaying it.
pub const OFFSETS_REPLAY_READ_BYTES: usize = 1 << 20;

/// How long a transaction marker waits for the in-sync replicas before its write fails
/// (REQUEST_TIMED_OUT: the coordinator retries it). Kafka's `request.timeout.ms` of the
/// marker channel.
pub const MARKER_REPLICATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Bytes read per step while scanning a partition for its largest timestamp (ListOffsets with
/// timestamp -3).
pub const MAX_TIMESTAMP_READ_BYTES: usize = 1 << 20;

/// Producer ids the control core reserves per durable write of its allocator file.
pub const PRODUCER_ID_BLOCK: i64 = 1000;

/// Largest HTTP request head read from a metrics scraper.
pub const METRICS_HEAD_BYTES_MAX: usize = 8192;

/// Bytes one socket read of a metrics scraper's request asks for.
pub const METRICS_READ_BYTES: usize = 1024;

/// Locked memory per executor beyond its registered buffers, for the io_uring rings themselves
/// (see `startup::memlock_needed`).
pub const MEMLOCK_RING_BYTES: u64 = 2 << 20;

/// Bytes a fetch session is counted for besides its partitions: the session itself, its `Rc`
/// cell and its entry in the core's cache (`fetch_sessions.rs` asserts the struct fits).
pub const FETCH_SESSION_BYTES: usize = 512;

/// Bytes each partition of a fetch session is counted for, besides its topic name: its entries in
/// the session's hash map (about 80 bytes, at most 8/7 of it with the table's spare slots) and
/// order map (about 48 bytes, up to twice that in half-full B-tree nodes), rounded up
/// (`fetch_sessions.rs` asserts the entries fit).
pub const FETCH_SESSION_PARTITION_BYTES: usize = 224;

/// The fetch session slots of core `core` out of `slots` for the whole broker: an even split,
/// the remainder going to the first cores, so the cores' slots add up to `slots` exactly.
pub const fn fetch_session_slots_of_core(slots: usize, cores: usize, core: usize) -> usize {
    let cores = if cores == 0 { 1 } else { cores };
    slots / cores + if core < slots % cores { 1 } else { 0 }
}

/// How often a handler looks at its core's topic image while waiting for a change the
/// controller committed to reach it (it does within a few milliseconds on loopback).
pub const IMAGE_POLL: std::time::Duration = std::time::Duration::from_millis(5);
/// After a committed topic change reached the answering broker's image, how much longer the
/// answer waits so that the other brokers have it too: they learn a commit on their next
/// metadata fetch, at most one fetch interval (20 ms) and one controller tick (10 ms) after
/// this broker did (no long-poll fetch yet). Without it a client that asked another broker at
/// once could get UNKNOWN_TOPIC_OR_PARTITION (seen in the cluster diff run with kcat -L).
pub const IMAGE_PROPAGATION_GRACE: std::time::Duration = std::time::Duration::from_millis(100);
/// How long a handler waits for that (beyond it, the client gets its answer anyway).
pub const IMAGE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

const _: () = assert!(CONNECTION_RESERVE_BYTES_MIN <= CONNECTION_RESERVE_BYTES_MAX);
// The first read of a connection fits the buffer it starts with.
const _: () = assert!(CONNECTION_READ_BYTES_MIN <= CONNECTION_BUFFER_BYTES);
const _: () = assert!(SENDMSG_CHUNKS_MAX <= UIO_MAXIOV);
const _: () = assert!(OFFSETS_PREALLOCATE_BYTES <= OFFSETS_SEGMENT_BYTES);
// A replay read takes in at least one batch of the usual size the journal writes (a larger one
// comes whole all the same, as the first batch of any read does), so replay is not one read per
// batch.
const _: () = assert!(OFFSETS_WRITE_BATCH_BYTES <= OFFSETS_REPLAY_READ_BYTES);
const _: () = assert!(OFFSETS_WRITE_BATCH_BYTES as u64 <= OFFSETS_SEGMENT_BYTES);
const _: () = assert!(METRICS_READ_BYTES <= METRICS_HEAD_BYTES_MAX);
// Kafka's 1000 slots over two cores: 500 each, all of them used.
const _: () = assert!(
    fetch_session_slots_of_core(1000, 2, 0) + fetch_session_slots_of_core(1000, 2, 1) == 1000
);
const _: () = assert!(
    fetch_session_slots_of_core(1000, 3, 0)
        + fetch_session_slots_of_core(1000, 3, 1)
        + fetch_session_slots_of_core(1000, 3, 2)
        == 1000
);
// A session's fixed part costs more than one partition: the bytes bound counts both.
const _: () = assert!(FETCH_SESSION_PARTITION_BYTES < FETCH_SESSION_BYTES);
