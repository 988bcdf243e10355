//! Every bound and knob of the storage engine, with its default, in one place.

/// When an append counts as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `append` returns after the batch is written and fdatasync'ed. Concurrent appends on the
    /// core share one fdatasync (group commit). The default.
    SyncEachAppend,
    /// `append` returns once the batch is in memory; it is written and fdatasync'ed by the next
    /// `Partition::flush`/`Shard::flush_due`, which the owner must call at least every
    /// `interval_ms`. A crash may lose up to that window.
    FlushInterval { interval_ms: u64 },
}

/// Per-partition settings (Kafka's topic configs).
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Roll the active segment when an append would take it past this size. Default 1 GiB.
    pub segment_bytes: u64,
    /// Roll the active segment when it is older than this. Default 7 days.
    pub segment_ms: i64,
    /// Bytes of batches between two sparse index entries. Default 4096.
    pub index_interval_bytes: u64,
    /// Delete closed segments whose newest timestamp is older than this. `None` keeps them.
    /// Default 7 days.
    pub retention_ms: Option<i64>,
    /// Delete the oldest closed segments while the log is larger than this. Default `None`.
    pub retention_bytes: Option<u64>,
    /// Default `SyncEachAppend`.
    pub durability: Durability,
    /// The active segment file grows by fallocate in steps of this many bytes. Default 64 MiB.
    pub preallocate_bytes: u64,
    /// Largest accepted batch (Kafka's `max.message.bytes`). Default 1 MiB + 12 bytes.
    pub batch_bytes_max: usize,
    /// `message.timestamp.type=LogAppendTime`: each batch is stamped with the append time
    /// (timestamp type attribute and `maxTimestamp`, CRC recomputed). Default false.
    pub log_append_time: bool,
    /// `message.timestamp.before.max.ms`: on a CreateTime topic, a record more than this much
    /// older than the append is refused (INVALID_TIMESTAMP). Default `i64::MAX` (no bound).
    pub timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`: on a CreateTime topic, a record more than this much
    /// newer than the append is refused. Default 1 hour, as Kafka 4's.
    pub timestamp_after_max_ms: i64,
    /// `cleanup.policy` includes `compact`: closed segments are compacted (last record per
    /// key kept) and appends of records without a key are refused. Default false.
    pub compact: bool,
    /// `delete.retention.ms`: a tombstone (null value) is dropped once it has been in the
    /// cleaned part of the log this long. Default 1 day.
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`: a segment is compacted only once its newest record is this
    /// old. Default 0.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: the dirty part is compacted, whatever its ratio, once its
    /// first closed segment's newest record is this old. Default `i64::MAX` (never forced).
    pub max_compaction_lag_ms: i64,
    /// `min.cleanable.dirty.ratio`: compact when dirty bytes / cleanable bytes reach this.
    /// Default 0.5.
    pub min_cleanable_dirty_ratio: f64,
    /// Kafka's `producer.id.expiration.ms` (a broker setting there, per partition here): an
    /// idempotent producer whose newest batch's `maxTimestamp` is this old or older is
    /// forgotten, by each retention pass (`Partition::enforce_retention`) and when the
    /// producer state is loaded on open; its next batch is then accepted at any sequence.
    /// Bounds the producer table by the producers active within this window. Default 1 day.
    pub producer_id_expiration_ms: i64,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            index_interval_bytes: 4096,
            retention_ms: Some(7 * 24 * 3600 * 1000),
            retention_bytes: None,
            durability: Durability::SyncEachAppend,
            preallocate_bytes: 64 << 20,
            batch_bytes_max: (1 << 20) + 12,
            log_append_time: false,
            timestamp_before_max_ms: i64::MAX,
            timestamp_after_max_ms: 3_600_000,
            compact: false,
            delete_retention_ms: 86_400_000,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            min_cleanable_dirty_ratio: 0.5,
            producer_id_expiration_ms: 86_400_000,
        }
    }
}

/// Per-core settings.
#[derive(Debug, Clone)]
pub struct ShardConfig {
    /// Bytes of recent batches kept in memory across all partitions of the core, so tailing
    /// consumers never touch the disk. Default 256 MiB.
    pub cache_bytes_max: usize,
    /// Largest single write handed to the kernel (bigger flushes are split). Default 8 MiB.
    pub write_bytes_max: usize,
    /// Bytes read from disk at least per fetch that misses the cache. Default 64 KiB.
    pub read_bytes_min: usize,
    /// In `FlushInterval` mode, an append waits for a flush once this many bytes are unwritten
    /// in one partition, so memory stays bounded. Default 32 MiB.
    pub unflushed_bytes_max: usize,
    /// Distinct keys one compaction pass holds in its offset map (about 40 bytes each); a
    /// pass stops at the segment where the map passes this. Default 1 Mi keys.
    pub compaction_keys_max: usize,
    /// Largest records section a compressed batch may decompress to when compaction (or the
    /// keyed-record check of a compacted topic) looks inside it; a larger one is kept whole.
    /// Default 64 MiB.
    pub decompressed_batch_bytes_max: usize,
    /// Closed (non-active) segment files kept open across all partitions of the core; more
    /// are opened on demand for reads and closed least recently used first. The active
    /// segment of each partition is always open and not counted. Default 1024: a process
    /// then needs about cores x 1024 + partitions + connections descriptors, well inside the
    /// 65536 RLIMIT_NOFILE `sluice tune` asks for on a 32-core machine; and a miss costs one
    /// `openat` (tens of µs), small beside the cold DMA read (64 KiB or more) it serves, so
    /// a larger cache buys little. 0 keeps none open (every cold read opens its file).
    pub open_segment_files_max: usize,
}

impl Default for ShardConfig {
    fn default() -> Self {
        Self {
            cache_bytes_max: 256 << 20,
            write_bytes_max: 8 << 20,
            read_bytes_min: 64 << 10,
            unflushed_bytes_max: 32 << 20,
            compaction_keys_max: 1 << 20,
            decompressed_batch_bytes_max: 64 << 20,
            open_segment_files_max: 1024,
        }
    }
}
