//! One partition's log: segments, appends with group commit, reads, truncation, retention,
//! recovery. Lives on one core; a [`Partition`] handle is `Rc`-shared by tasks on that core.
//!
//! Concurrency rule: the state sits in a `RefCell` that is only borrowed between awaits. All
//! file I/O is done under `io_lock` (one I/O operation at a time per partition), with file
//! handles cloned out of the state as `Rc`s, so appends can keep adding to memory while a
//! flush is on the disk. Unwritten batches wait in `unwritten`; a flush writes them in order.
//!
//! One file per concern, each an `impl Partition` block: `open.rs` (open and recovery),
//! `append.rs`, `flush.rs` (group commit), `roll.rs` (new segments, sealing, close),
//! `read.rs`, `truncate.rs` (truncation, full reset, delete-records), `retention.rs`,
//! `snapshots.rs` (producer snapshots), `replica.rs` (follower appends and the replication
//! bound of the high watermark), `compaction.rs` (drives `crate::compact`) and
//! `transactions.rs` (markers, the last stable offset, transaction index files). This file
//! holds the handle, the state and the small accessors.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;

use crate::cache::{BatchCache, CachedBatch};
use crate::cleaner_checkpoint::CleanerState;
use crate::config::{Durability, LogConfig, ShardConfig};
use crate::error::{Result, ShardError, io_err};
use crate::files::{FileCache, close_evicted};
use crate::io::{OpenMode, Storage, write_file_atomic};
use crate::meta::{self, META_FILE, PartitionMeta};
use crate::notify::{AsyncLock, Notify};
use crate::producer_state::ProducerTable;
use crate::segment::{Segment, SegmentFile, segment_file};
use crate::transactions::{AbortedTxn, Transactions};
pub(crate) use ends::LogEnds;

mod append;
mod compaction;
mod coordinator;
mod ends;
mod flush;
mod open;
mod read;
mod readahead;
mod replica;
mod retention;
mod roll;
mod snapshots;
mod transactions;
mod truncate;

/// How [`Partition::append_checked`] checks transactional batches (KIP-890 part 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnCheck {
    /// No check: a transactional batch may open a transaction (tools, tests; Kafka's
    /// `transaction.partition.verification.enable=false`).
    Unchecked,
    /// A batch that would open a transaction needs this guard to be its producer's pending
    /// one ([`Partition::start_verification`]); `None` when no verification was done.
    Guard(Option<u64>),
}

/// What an append did. All offsets are Kafka offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset given to the first record of the first batch.
    pub base_offset: i64,
    /// Offset of the last record of the last batch.
    pub last_offset: i64,
    /// Append time stamped for LogAppendTime topics; -1 (CreateTime) here.
    pub log_append_time_ms: i64,
    /// Log start offset after the append.
    pub log_start_offset: i64,
}

/// Batches served by a read, plus the offsets a Fetch response carries.
#[derive(Debug, Clone, Default)]
pub struct ReadResult {
    /// Whole batches, in order, starting with the batch holding the requested offset.
    pub batches: Vec<Bytes>,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    /// The last stable offset (read_committed consumers read below it), filled by every read.
    pub last_stable_offset: i64,
    /// The aborted transactions the returned batches overlap (Fetch's
    /// `AbortedTransactions`); only [`Partition::read_committed`] fills it.
    pub aborted: Vec<AbortedTxn>,
}

/// One producer as the partition knows it: what Kafka's DescribeProducers answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerStateInfo {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// Sequence of its newest batch in this epoch, -1 if none.
    pub last_sequence: i32,
    /// Timestamp of its newest batch or marker, -1 if none.
    pub last_timestamp: i64,
    /// Coordinator epoch of its newest marker, -1 if none.
    pub coordinator_epoch: i32,
    /// First offset of its open transaction, -1 if none.
    pub current_txn_start_offset: i64,
}

/// Offsets of a partition at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offsets {
    pub log_start_offset: i64,
    pub high_watermark: i64,
    pub log_end_offset: i64,
}

/// The batches of `records`, each whole and passing its CRC (`InvalidBatch` names the first
/// that does not): what a follower's and a coordinator's appends take as they are.
fn whole_batches(records: Bytes) -> Result<Vec<sluice_net::record_batch::RecordBatch>> {
    let mut batches = Vec::new();
    for (index, b) in sluice_net::record_batch::Batches::new(records).enumerate() {
        let b = b.map_err(|source| ShardError::InvalidBatch { index, source })?;
        b.validate()
            .map_err(|source| ShardError::InvalidBatch { index, source })?;
        batches.push(b);
    }
    Ok(batches)
}

pub(crate) struct LogState<F> {
    /// Keyed by base offset. Segments cover contiguous offset ranges: a segment covers
    /// `[base, next_offset)`, and `next_offset` is the next segment's base. After compaction
    /// a segment may hold no batch for parts of its range (gaps), even at its end.
    pub(crate) segments: BTreeMap<i64, Segment<F>>,
    pub(crate) log_start_offset: i64,
    /// Log end, written end, durable end and high watermark, with their rules.
    pub(crate) ends: LogEnds,
    /// Appended batches not yet handed to the kernel, in offset order, and for each the base
    /// offset of the segment it belongs to.
    unwritten: VecDeque<CachedBatch>,
    unwritten_segment: VecDeque<i64>,
    unwritten_bytes: usize,
    /// Set while `truncate_to` or `truncate_fully_and_start_at` runs; appends wait for it to
    /// clear.
    truncating: bool,
    append_seq: u64,
    durable_seq: u64,
    recovery_point: i64,
    leader_epochs: Vec<(i32, i64)>,
    leader_epoch: i32,
    /// The most the high watermark may reach from this log alone: `i64::MAX` for a log with
    /// no other replica; on a replicated partition the smallest log end of the other in-sync
    /// replicas (a leader) or the leader's high watermark (a follower), set by the broker.
    hw_bound: i64,
    pub(crate) producers: ProducerTable,
    /// Open, unstable and aborted transactions (issue 23), fed with every batch the
    /// producer table is fed with; told whenever the high watermark moves.
    pub(crate) txns: Transactions,
    /// Pending transaction verifications (KIP-890), in memory only.
    pub(crate) verifications: crate::verification::Verifications,
    /// Producer snapshots taken when a segment rolled in memory, as (offset, file bytes);
    /// written when that segment's file is created, once everything below is durable.
    pending_snapshots: Vec<(i64, Vec<u8>)>,
    pub(crate) poisoned: Option<String>,
    pub(crate) closed: bool,
    last_flush_ms: i64,
    /// What compaction has cleaned (persisted in `cleaner.checkpoint`).
    pub(crate) cleaner: CleanerState,
}

impl<F> LogState<F> {
    /// Moves the high watermark up to what this log's own `durability` commits (its durable
    /// end, or with `FlushInterval` its log end), no further than the replication bound;
    /// never back.
    pub(crate) fn advance_committed(&mut self, durability: &Durability) {
        let committed = match durability {
            Durability::SyncEachAppend => self.ends.durable_end(),
            Durability::FlushInterval { .. } => self.ends.log_end(),
        };
        let to = committed.min(self.hw_bound);
        if to > self.ends.high_watermark() {
            self.ends.advance_high_watermark(to);
            self.txns.high_watermark_moved(to);
        }
    }

    /// The last stable offset: below the first unstable transaction and the high watermark.
    pub(crate) fn last_stable_offset(&self) -> i64 {
        self.txns.last_stable_offset(self.ends.high_watermark())
    }

    /// Not closed and not failed.
    fn usable(&self) -> bool {
        !self.closed && self.poisoned.is_none()
    }

    /// Marks the partition failed by `r`'s error, if it is one; the first cause is kept.
    pub(crate) fn poison_on_err<T>(&mut self, r: &Result<T>) {
        if let Err(e) = r
            && self.poisoned.is_none()
        {
            self.poisoned = Some(e.to_string());
        }
    }
}

pub(crate) struct PartitionInner<S: Storage> {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) id: u64,
    pub(crate) dir: PathBuf,
    pub(crate) storage: S,
    pub(crate) config: LogConfig,
    pub(crate) shard_config: ShardConfig,
    pub(crate) cache: Rc<RefCell<BatchCache>>,
    /// Open files of closed segments, shared by the core's partitions.
    pub(crate) files: Rc<RefCell<FileCache<S::File>>>,
    pub(crate) state: RefCell<LogState<S::File>>,
    pub(crate) io_lock: AsyncLock,
    /// Set while a compaction pass runs (one at a time per partition).
    pub(crate) compacting: std::cell::Cell<bool>,
    /// Fires when a flush finishes (success or failure).
    synced: Notify,
    /// Fires when the high watermark or log end moves (or the partition closes).
    appended: Notify,
    /// The window read ahead of the next fetch (issue 22).
    pub(crate) readahead: readahead::ReadAhead,
}

/// A handle on one partition of a [`crate::Shard`]; clones share the partition.
///
/// Lives on the core that opened it. Any number of tasks on that core may call it at once:
/// appends are ordered by the order their calls start; I/O is serialized inside.
///
/// Durability: with [`Durability::SyncEachAppend`] (default), when `append` returns `Ok` the
/// batches are written and fdatasync'ed, so they survive a crash; appends running at the same
/// time share one fdatasync. With `FlushInterval`, `append` returns once the batches are in
/// memory (readable), and `flush` returning `Ok` means every earlier append is durable. After
/// any write or sync error the partition refuses appends (`Poisoned`) until reopened, since
/// the kernel may have dropped the data that failed.
pub struct Partition<S: Storage> {
    pub(crate) inner: Rc<PartitionInner<S>>,
}

impl<S: Storage> Clone for Partition<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<S: Storage> std::fmt::Debug for Partition<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Partition({}-{})",
            self.inner.topic, self.inner.partition
        )
    }
}

fn corrupt(path: &Path, position: u64, detail: impl Into<String>) -> ShardError {
    ShardError::Corrupt {
        path: path.to_path_buf(),
        position,
        detail: detail.into(),
    }
}

impl<S: Storage> Partition<S> {
    pub(crate) fn poisoned_err(&self, cause: String) -> ShardError {
        ShardError::Poisoned {
            topic: self.inner.topic.clone(),
            partition: self.inner.partition,
            cause,
        }
    }

    pub(crate) fn check_usable(&self) -> Result<()> {
        let st = self.inner.state.borrow();
        if st.closed {
            return Err(ShardError::Closed {
                topic: self.inner.topic.clone(),
                partition: self.inner.partition,
            });
        }
        if let Some(c) = &st.poisoned {
            return Err(self.poisoned_err(c.clone()));
        }
        Ok(())
    }

    /// The open file of segment `base`: its pinned handle, or the shard's cached one, opened
    /// and cached if needed. `None` if the segment is gone or has no file yet. The handle
    /// stays usable however long the caller holds it, even if the cache evicts it.
    pub(crate) async fn segment_handle(&self, base: i64) -> Result<Option<Rc<S::File>>> {
        let inner = &*self.inner;
        loop {
            let id = {
                let st = inner.state.borrow();
                let Some(seg) = st.segments.get(&base) else {
                    return Ok(None);
                };
                match &seg.file {
                    SegmentFile::Missing => return Ok(None),
                    SegmentFile::Pinned(f) => return Ok(Some(f.clone())),
                    SegmentFile::Cached => seg.id,
                }
            };
            if let Some(f) = inner.files.borrow_mut().get(inner.id, id) {
                return Ok(Some(f));
            }
            let path = segment_file(&inner.dir, base, "log");
            let opened = inner.storage.open(&path, OpenMode::Existing).await;
            // While the file was opening, the segment may have been removed, replaced (a new
            // segment at the same base) or pinned for a compaction swap that renames files:
            // then what was opened may not be this segment's file. Look again.
            let unchanged = inner
                .state
                .borrow()
                .segments
                .get(&base)
                .is_some_and(|s| s.id == id && matches!(s.file, SegmentFile::Cached));
            match opened {
                Ok(f) if unchanged => {
                    let f = Rc::new(f);
                    let evicted = {
                        let mut files = inner.files.borrow_mut();
                        files.opens += 1;
                        files.insert(inner.id, id, f.clone())
                    };
                    close_evicted(evicted).await;
                    return Ok(Some(f));
                }
                Ok(f) => close_evicted(vec![Rc::new(f)]).await,
                Err(_) if !unchanged => {}
                Err(e) => return Err(io_err("open segment", &path)(e)),
            }
        }
    }

    /// Makes segment `base` hold its file open itself (it becomes the active segment, or a
    /// compaction swap is about to rename files under it). No-op if it has no file.
    pub(crate) async fn pin_segment(&self, base: i64) -> Result<Option<Rc<S::File>>> {
        let Some(f) = self.segment_handle(base).await? else {
            return Ok(None);
        };
        let inner = &*self.inner;
        let mut st = inner.state.borrow_mut();
        if let Some(seg) = st.segments.get_mut(&base)
            && matches!(seg.file, SegmentFile::Cached)
        {
            inner.files.borrow_mut().remove(inner.id, seg.id);
            seg.file = SegmentFile::Pinned(f.clone());
        }
        Ok(Some(f))
    }

    /// Forgets a segment's cached handle as the segment leaves the log (the caller removes
    /// it from the map). Readers holding the handle keep reading the unlinked file.
    pub(crate) fn forget_segment_file(&self, seg: &Segment<S::File>) {
        let inner = &*self.inner;
        inner.files.borrow_mut().remove(inner.id, seg.id);
    }

    /// Topic name.
    pub fn topic(&self) -> &str {
        &self.inner.topic
    }
    /// Partition index.
    pub fn partition(&self) -> i32 {
        self.inner.partition
    }

    /// Log start, high watermark and log end offsets.
    pub fn offsets(&self) -> Offsets {
        let st = self.inner.state.borrow();
        Offsets {
            log_start_offset: st.log_start_offset,
            high_watermark: st.ends.high_watermark(),
            log_end_offset: st.ends.log_end(),
        }
    }

    /// Sets the leader epoch stamped into batches appended from now on; recorded in the
    /// leader epoch cache with the first offset appended in it. Epochs only go up.
    pub fn set_leader_epoch(&self, epoch: i32) {
        let mut st = self.inner.state.borrow_mut();
        assert!(epoch >= st.leader_epoch, "leader epoch went backwards");
        st.leader_epoch = epoch;
    }

    /// Raises the leader epoch stamped into batches appended from now on to `epoch` (a
    /// partition this broker now leads); a lower or equal one changes nothing.
    pub fn raise_leader_epoch(&self, epoch: i32) {
        let mut st = self.inner.state.borrow_mut();
        st.leader_epoch = st.leader_epoch.max(epoch);
    }

    /// The leader epoch cache: (epoch, first offset of that epoch), increasing.
    pub fn leader_epochs(&self) -> Vec<(i32, i64)> {
        self.inner.state.borrow().leader_epochs.clone()
    }

    pub(crate) async fn write_meta(&self) -> Result<()> {
        let inner = &*self.inner;
        let m = {
            let st = inner.state.borrow();
            PartitionMeta {
                version: 1,
                log_start_offset: st.log_start_offset,
                recovery_point: st.recovery_point,
                leader_epochs: st.leader_epochs.clone(),
            }
        };
        let path = inner.dir.join(META_FILE);
        write_file_atomic(&inner.storage, &path, &meta::encode(&m))
            .await
            .map_err(io_err("write meta", &path))
    }

    /// Waits until the high watermark moves past `after_offset` (or the partition closes or
    /// fails). Returns at once if it already has. No polling: woken by appends and syncs.
    pub async fn wait_for_append(&self, after_offset: i64) {
        self.wait_until(|st| st.ends.high_watermark() > after_offset || !st.usable())
            .await;
    }

    /// Waits until `done` holds of the state, checked again whenever the high watermark or
    /// log end moves, the partition closes or fails, or waiters are woken. No polling.
    pub(crate) async fn wait_until(&self, done: impl Fn(&LogState<S::File>) -> bool) {
        loop {
            let seen = self.inner.appended.generation();
            if done(&self.inner.state.borrow()) {
                return;
            }
            self.inner.appended.wait(seen).await;
        }
    }

    /// Bytes this partition holds on disk (sum of its segments' logical sizes).
    pub fn size_bytes(&self) -> u64 {
        self.inner
            .state
            .borrow()
            .segments
            .values()
            .map(|s| s.size_bytes)
            .sum()
    }

    /// Number of segments.
    pub fn segment_count(&self) -> usize {
        self.inner.state.borrow().segments.len()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use futures_lite::future::{block_on, poll_once};
    use sluice_net::record_batch::build::{BatchSpec, batch};

    use crate::{FakeDisk, Faults, LogConfig, Shard, ShardConfig};

    /// An acks append that finds the partition's I/O lock held by work that does not flush
    /// (compaction's swap, retention) completes once the lock is released; it used to wait
    /// for a flush that never came on an idle partition.
    #[test]
    fn append_behind_a_holder_that_does_not_flush_completes() {
        let disk = FakeDisk::new(7, Faults::default(), 1_000_000);
        block_on(async {
            let s = Shard::open(disk.clone(), Path::new("/d"), ShardConfig::default())
                .await
                .expect("shard");
            let p = s
                .create_partition("t", 0, LogConfig::default())
                .await
                .expect("partition");
            let guard = p.inner.io_lock.try_lock().expect("free");
            let mut append = Box::pin(p.append(batch(
                &BatchSpec::default(),
                &[(None, Some(b"v".as_slice()))],
            )));
            assert!(poll_once(&mut append).await.is_none(), "waits for the lock");
            drop(guard);
            for _ in 0..1000 {
                if let Some(r) = poll_once(&mut append).await {
                    assert_eq!(r.expect("appended").base_offset, 0);
                    return;
                }
            }
            panic!("the append never completed after the lock was released");
        });
    }
}
