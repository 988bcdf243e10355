//! `sluice-shard`: one core's partitions.
//!
//! Owns segment files (direct I/O), sparse offset and time indexes, recovery, retention,
//! compaction (`cleanup.policy=compact`, see `compact.rs`) and the per-core batch cache. It
//! knows nothing of sockets; of Kafka it knows the record batch v2 framing (through
//! `sluice_net::record_batch`) and, for compaction only, records and their codecs.
//!
//! # Use
//! ```text
//! probe_dma_polling(dir).await?;                       // first thing on the executor
//! let shard = Shard::open(DmaStorage, dir, ShardConfig::default()).await?;
//! let p = shard.create_partition("orders", 0, LogConfig::default()).await?;
//! let info = p.append(records).await?;                 // durable when it returns (default)
//! let r = p.read(info.base_offset, 1 << 20).await?;    // whole batches as `Bytes`
//! p.wait_for_append(r.high_watermark).await;           // long-poll: until that offset exists
//! ```
//! Errors are one enum, [`ShardError`]; the broker maps it to Kafka error codes in one place
//! (`InvalidBatch`/`BatchTooLarge` -> CORRUPT_MESSAGE/MESSAGE_TOO_LARGE, `OffsetOutOfRange`,
//! `DuplicateSequence` -> success with the original offsets, `OutOfOrderSequence`,
//! `InvalidProducerEpoch`, `TransactionCoordinatorFenced`, `InvalidTxnState`, `RecordErrors` -> INVALID_RECORD or INVALID_TIMESTAMP with each bad record, `Io`/`Poisoned`/`Corrupt` ->
//! KAFKA_STORAGE_ERROR).
//!
//! Memory lock: glommio registers its I/O buffers; a process needs RLIMIT_MEMLOCK of at least
//! 3 x `io_memory` per executor (tests and the bench raise it with setrlimit as root).
//!
//! Replication (the broker drives it): `append_replicated` keeps a leader's offsets and
//! epochs, `truncate_to` cuts a diverged tail, `truncate_fully_and_start_at` restarts a log
//! that fell below the leader's log start, `delete_records_before` follows the leader's log
//! start.
//!
//! Transactions (issue 23; Kafka's producer state, transaction index and LSO): every batch
//! appended, replicated or replayed feeds the producer table and [`Transactions`];
//! `append_marker` writes the coordinator's COMMIT/ABORT markers with Kafka's epoch and
//! coordinator-epoch fencing (`TransactionCoordinatorFenced`), a non-transactional batch
//! during an open transaction is `InvalidTxnState`, `last_stable_offset` and
//! `read_committed` (with the aborted transactions a read overlaps) serve read_committed
//! consumers, and `producer_states` answers DescribeProducers. Open transactions live in the
//! producer snapshot (version 3), aborted ones in `<base>.txnindex` files (`txn_index.rs`).
//!
//! # On disk
//! `<dir>/<topic>-<partition>/` holds `<20-digit base offset>.log` (batches byte for byte),
//! `.index` and `.timeindex` (sparse, written when a segment is sealed), and `partition.meta`
//! (log start offset, recovery point, leader epoch cache; rkyv + CRC-32C). Compacted partitions
//! also have `cleaner.checkpoint` (what was cleaned and when; offset gaps are accepted below
//! it), and briefly `<base>.log.cleaned` / `<base>.<end>.swap` during a swap, or
//! `reset.offset` during `truncate_fully_and_start_at` (an open that finds it finishes the
//! reset; see `log_reset.rs`).
//! `<base>.txnindex` holds the aborted transactions whose marker is in that segment.
//! `<20-digit offset>.snapshot` files hold the idempotent-producer table as of that offset
//! (written at each segment roll and on clean close, newest three kept; see
//! `producer_state.rs`), so producer state outlives the segments that held its batches.
//! Producers idle for `LogConfig::producer_id_expiration_ms` (default 1 day, Kafka's
//! `producer.id.expiration.ms`) are dropped by each retention pass and when the state is
//! loaded, so the table and its snapshots hold only recently active producers.
//!
//! # Open files
//! The active segment of each partition holds its file open. Closed segments' files are
//! opened on demand (reads, index checks, compaction) through a per-core cache
//! (`files.rs`) that keeps at most `ShardConfig::open_segment_files_max` of them open and
//! closes the least recently used; a read holding an evicted handle keeps it until it is
//! done (`Rc`). Index files are read into memory and hold no descriptor.
//!
//! # Invariants
//! - Only the owning core touches a partition; no `Mutex`, no `Arc`. `RefCell` borrows never
//!   span an `.await`.
//! - Offsets are contiguous across batches and segments, but below the cleaner checkpoint's
//!   `cleaned_upto` (compaction's gaps, and on a follower the gaps of a compacted leader's log
//!   it copied, `append_replicated`); checked on append and on recovery.
//! - Every batch is CRC-checked before it is written and again when read from disk.
//! - The high watermark never passes what is durable (in the default sync mode), and no end
//!   offset moves back except through `truncate_to` and `truncate_fully_and_start_at`
//!   (asserted, `partition/ends.rs`).
//! - Idempotent producers: per producer id, the epoch and last five sequence ranges are
//!   checked on append (`DuplicateSequence`, `OutOfOrderSequence`, `InvalidProducerEpoch`).
//!   A producer snapshot at offset N holds every batch below N and none above; none exists
//!   above the log end (truncation and recovery remove them).
//! - Opening never panics on file content: a torn tail is truncated, a bad index rebuilt, a
//!   bad `partition.meta` or an offset gap between segments is a typed error.

mod cache;
mod cleaner_checkpoint;
mod codec;
mod compact;
mod config;
mod dma;
mod error;
mod fake;
mod files;
mod index;
mod io;
mod lent;
mod limits;
mod log_reset;
mod meta;
mod notify;
mod partition;
mod producer_state;
mod segment;
mod shard;
mod transactions;
mod txn_index;
mod validate;
mod verification;

pub use cache::{FSYNC_BOUNDS_US, ShardStats};
pub use codec::batch_records;
pub use compact::CompactionStats;
pub use config::{Durability, LogConfig, ShardConfig};
pub use dma::{DMA_PROBE_FILE, DmaStorage, probe_dma_polling, write_alignment};
pub use error::{RecordError, Result, ShardError};
pub use fake::{FakeDisk, Faults};
pub use io::{OpenMode, Storage, StorageFile};
pub use lent::{lent_buffers, sweep_lent};
pub use partition::{AppendInfo, Offsets, Partition, ProducerStateInfo, ReadResult, TxnCheck};
pub use shard::Shard;
pub use transactions::{
    AbortedTxn, MARKER_ATTRIBUTES, Marker, Transactions, marker_batch, marker_of,
};
