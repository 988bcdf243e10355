//! [`Shard`]: the partitions one core owns, their shared batch cache and config.
//!
//! Lives on one core and is never sent to another; other cores reach a partition through the
//! broker's cross-core channels. The partition map is only borrowed between awaits.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::cache::BatchCache;
use crate::config::{LogConfig, ShardConfig};
use crate::error::{Result, ShardError, io_err};
use crate::files::FileCache;
use crate::io::Storage;
use crate::partition::Partition;

/// One core's storage: a data directory's partitions (those this core owns).
pub struct Shard<S: Storage = crate::DmaStorage> {
    storage: S,
    dir: PathBuf,
    config: ShardConfig,
    cache: Rc<RefCell<BatchCache>>,
    /// Open files of closed segments, bounded by `ShardConfig::open_segment_files_max`.
    files: Rc<RefCell<FileCache<S::File>>>,
    partitions: RefCell<HashMap<(String, i32), Partition<S>>>,
    next_id: Cell<u64>,
}

impl<S: Storage> std::fmt::Debug for Shard<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Shard({})", self.dir.display())
    }
}

impl<S: Storage> Shard<S> {
    /// Opens a shard rooted at `dir` (created if missing). Partitions are opened one by one
    /// with [`Shard::create_partition`] (which also opens existing ones), since only the
    /// broker knows which partitions this core owns.
    pub async fn open(storage: S, dir: &Path, config: ShardConfig) -> Result<Self> {
        storage
            .create_dir_all(dir)
            .await
            .map_err(io_err("create dir", dir))?;
        Ok(Self {
            storage,
            dir: dir.to_path_buf(),
            cache: Rc::new(RefCell::new(BatchCache::new(config.cache_bytes_max))),
            files: Rc::new(RefCell::new(FileCache::new(config.open_segment_files_max))),
            config,
            partitions: RefCell::new(HashMap::new()),
            next_id: Cell::new(1),
        })
    }

    /// Opens partition `topic`-`partition` under the shard's directory, creating it if it does
    /// not exist and recovering it if it does. Error if it is already open here.
    pub async fn create_partition(
        &self,
        topic: &str,
        partition: i32,
        config: LogConfig,
    ) -> Result<Partition<S>> {
        let key = (topic.to_owned(), partition);
        if self.partitions.borrow().contains_key(&key) {
            return Err(ShardError::PartitionExists {
                topic: topic.to_owned(),
                partition,
            });
        }
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let p = Partition::open(
            self.storage.clone(),
            &self.dir,
            topic,
            partition,
            id,
            config,
            self.config.clone(),
            self.cache.clone(),
            self.files.clone(),
        )
        .await?;
        let mut map = self.partitions.borrow_mut();
        if map.contains_key(&key) {
            return Err(ShardError::PartitionExists {
                topic: topic.to_owned(),
                partition,
            });
        }
        map.insert(key, p.clone());
        Ok(p)
    }

    /// The open partition, if this shard has it.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<Partition<S>> {
        self.partitions
            .borrow()
            .get(&(topic.to_owned(), partition))
            .cloned()
    }

    /// Every open partition.
    pub fn partitions(&self) -> Vec<Partition<S>> {
        self.partitions.borrow().values().cloned().collect()
    }

    /// Closes one partition cleanly and forgets it.
    pub async fn close_partition(&self, topic: &str, partition: i32) -> Result<()> {
        let p = self
            .partitions
            .borrow_mut()
            .remove(&(topic.to_owned(), partition))
            .ok_or_else(|| ShardError::UnknownPartition {
                topic: topic.to_owned(),
                partition,
            })?;
        p.close().await
    }

    /// Flushes partitions in `FlushInterval` mode whose interval has passed. The owner calls
    /// this from a timer task at least as often as the smallest interval.
    pub async fn flush_due(&self) -> Result<()> {
        for p in self.partitions() {
            p.flush_if_due().await?;
        }
        Ok(())
    }

    /// Applies retention to every partition and expires its idle producers
    /// (`LogConfig::producer_id_expiration_ms`); returns the number of segments deleted.
    pub async fn enforce_retention(&self) -> Result<usize> {
        let mut n = 0;
        for p in self.partitions() {
            n += p.enforce_retention().await?;
        }
        Ok(n)
    }

    /// Runs a compaction pass on every compacted partition that has one due (cheap when none
    /// has: the check is in memory). Partitions are done one after another; an error on one
    /// does not stop the others, and the first error is returned after all were tried.
    pub async fn compact_due(&self, now_ms: i64) -> Result<crate::CompactionStats> {
        let mut total = crate::CompactionStats::default();
        let mut first_err = None;
        for p in self.partitions() {
            if !p.compaction_due(now_ms) {
                continue;
            }
            match p.compact(now_ms).await {
                Ok(s) => total.add(&s),
                Err(e) => {
                    tracing::warn!(partition = ?p, error = %e, "compaction failed");
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(total), Err)
    }

    /// Storage counters of this core: cache hits and misses, fdatasync latency.
    pub fn stats(&self) -> crate::cache::ShardStats {
        self.cache.borrow().stats.clone()
    }

    /// Closed-segment files the core holds open now (at most
    /// `ShardConfig::open_segment_files_max`, not counting reads in flight) and how many
    /// times one had to be opened because it was not.
    pub fn segment_files(&self) -> (usize, u64) {
        let f = self.files.borrow();
        (f.len(), f.opens)
    }

    /// Bytes currently held by the batch cache.
    pub fn cache_bytes(&self) -> usize {
        self.cache.borrow().bytes()
    }

    /// Closes every partition cleanly (flush, index files, recovery point).
    pub async fn close(&self) -> Result<()> {
        let all: Vec<_> = self
            .partitions
            .borrow_mut()
            .drain()
            .map(|(_, p)| p)
            .collect();
        let mut first_err = None;
        for p in all {
            if let Err(e) = p.close().await {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}
