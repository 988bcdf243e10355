//! Segment lifecycle: rolling to a new segment, creating its file (sealing the previous one
//! first: exact size, fdatasync, index files), and closing a partition cleanly (everything
//! sealed, recovery point at the log end, a producer snapshot at the log end). A segment's
//! `.txnindex` is written when it is sealed, so before any producer snapshot above it.

use std::rc::Rc;

use super::Partition;
use crate::error::{Result, io_err};
use crate::files::close_evicted;
use crate::io::{OpenMode, Storage, StorageFile, write_file_atomic};
use crate::segment::{Segment, SegmentFile, segment_file};
impl<S: Storage> Partition<S> {
    /// Closes the active segment and starts a new one at the log end (if the active one holds
    /// any batch). Durable when it returns.
    pub async fn roll(&self) -> Result<()> {
        self.check_usable()?;
        let _g = self.inner.io_lock.lock().await;
        self.flush_locked().await?;
        let inner = &*self.inner;
        let leo = {
            let mut st = inner.state.borrow_mut();
            let leo = st.ends.log_end();
            let active = st.segments.values().next_back().expect("segment");
            if active.size_bytes == 0 {
                return Ok(());
            }
            let now = inner.storage.now_ms();
            // Flushed and no await since: the table holds exactly the batches below `leo`.
            let snapshot = st.producers.encode_snapshot(leo, &st.txns);
            st.pending_snapshots.push((leo, snapshot));
            st.segments.insert(leo, Segment::new(leo, now));
            leo
        };
        self.open_new_segment(leo).await?;
        Ok(())
    }

    /// Creates the active segment's file if it has none yet. A new partition's first segment
    /// is otherwise created by its first flush: the file, a directory sync and the meta file,
    /// about 4.5 ms on this project's VM, which the first produce to every fresh partition
    /// waited for (and a constant-rate produce to a new topic showed as a p99.99 of 35-48 ms
    /// where a warmed topic had 8-14 ms). Meant to run in a task of its own right after the
    /// partition is opened; a first append meanwhile waits for it, as it would for its own.
    /// Fails as that first flush would: the partition is then poisoned.
    pub async fn prepare_active_segment(&self) -> Result<()> {
        let _g = self.inner.io_lock.lock().await;
        if self.inner.state.borrow().closed {
            // Closed (its topic deleted, the broker stopping) before this ran: nothing to do.
            return Ok(());
        }
        self.check_usable()?;
        let base = {
            let st = self.inner.state.borrow();
            let (&base, active) = st.segments.iter().next_back().expect("a log has a segment");
            if active.file.exists() {
                return Ok(());
            }
            base
        };
        let r = self.open_new_segment(base).await.map(|_| ());
        self.inner.state.borrow_mut().poison_on_err(&r);
        r
    }

    pub(super) async fn open_new_segment(&self, base: i64) -> Result<Rc<S::File>> {
        let inner = &*self.inner;
        // Seal every earlier segment that is not yet sealed (normally just the previous one).
        let prev: Vec<i64> = {
            let st = inner.state.borrow();
            st.segments
                .range(..base)
                .filter(|(_, s)| s.index_dirty && s.file.exists())
                .map(|(b, _)| *b)
                .collect()
        };
        for b in prev {
            if let Some(f) = self.segment_handle(b).await? {
                self.seal_segment(&f, b).await?;
            }
        }
        let path = segment_file(&inner.dir, base, "log");
        let file = inner
            .storage
            .open(&path, OpenMode::CreateTruncate)
            .await
            .map_err(io_err("create segment", &path))?;
        inner
            .storage
            .sync_dir(&inner.dir)
            .await
            .map_err(io_err("sync dir", &inner.dir))?;
        let file = Rc::new(file);
        {
            let mut st = inner.state.borrow_mut();
            st.recovery_point = st.recovery_point.max(base);
            if let Some(seg) = st.segments.get_mut(&base) {
                seg.file = SegmentFile::Pinned(file.clone());
            }
        }
        self.write_meta().await?;
        // Every batch below `base` is durable now (sealed above), so the roll's producer
        // snapshot may say so.
        self.write_pending_snapshots(base).await?;
        Ok(file)
    }

    /// Makes a complete segment durable and exact-sized, and writes its index files (the
    /// transaction index too, when it has aborted transactions).
    pub(crate) async fn seal_segment(&self, file: &Rc<S::File>, base: i64) -> Result<()> {
        let inner = &*self.inner;
        let path = segment_file(&inner.dir, base, "log");
        let (size, offsets, times, end) = {
            let st = inner.state.borrow();
            let Some(seg) = st.segments.get(&base) else {
                return Ok(());
            };
            assert!(
                seg.written_bytes == seg.size_bytes,
                "seal a fully written segment"
            );
            (
                seg.size_bytes,
                seg.index.encode_offsets(),
                seg.index.encode_times(),
                seg.next_offset,
            )
        };
        file.truncate(size)
            .await
            .map_err(io_err("truncate", &path))?;
        file.fdatasync().await.map_err(io_err("fdatasync", &path))?;
        let ip = segment_file(&inner.dir, base, "index");
        write_file_atomic(&inner.storage, &ip, &offsets)
            .await
            .map_err(io_err("write index", &ip))?;
        let tp = segment_file(&inner.dir, base, "timeindex");
        write_file_atomic(&inner.storage, &tp, &times)
            .await
            .map_err(io_err("write time index", &tp))?;
        self.write_txn_index(base, end).await?;
        let evicted = {
            let mut st = inner.state.borrow_mut();
            let last = st.segments.keys().next_back().copied();
            let Some(seg) = st.segments.get_mut(&base) else {
                return Ok(());
            };
            seg.index_dirty = false;
            seg.allocated_bytes = size;
            // A sealed segment that is not the active one gives its file to the shard's
            // cache, which bounds how many such files stay open.
            if last != Some(base) && matches!(seg.file, SegmentFile::Pinned(_)) {
                seg.file = SegmentFile::Cached;
                inner
                    .files
                    .borrow_mut()
                    .insert(inner.id, seg.id, file.clone())
            } else {
                Vec::new()
            }
        };
        close_evicted(evicted).await;
        Ok(())
    }

    /// Flushes, writes the active segment's index files and the metadata with the recovery
    /// point at the log end (so the next open need not scan), and closes the files.
    pub async fn close(&self) -> Result<()> {
        let _g = self.inner.io_lock.lock().await;
        if self.inner.state.borrow().closed {
            return Ok(());
        }
        let r = self.close_locked().await;
        let inner = &*self.inner;
        inner.state.borrow_mut().closed = true;
        inner.cache.borrow_mut().remove_partition(inner.id);
        let cached = inner.files.borrow_mut().remove_partition(inner.id);
        close_evicted(cached).await;
        inner.appended.notify_all();
        inner.synced.notify_all();
        r
    }

    async fn close_locked(&self) -> Result<()> {
        if self.inner.state.borrow().poisoned.is_some() {
            return Ok(());
        }
        // Refuse new appends from here on; the flush below covers every earlier one.
        self.inner.state.borrow_mut().closed = true;
        self.flush_locked().await?;
        let inner = &*self.inner;
        let dirty: Vec<i64> = {
            let st = inner.state.borrow();
            st.segments
                .iter()
                .filter(|(_, s)| s.index_dirty && s.file.exists())
                .map(|(b, _)| *b)
                .collect()
        };
        for b in dirty {
            if let Some(f) = self.segment_handle(b).await? {
                self.seal_segment(&f, b).await?;
            }
        }
        let (leo, snapshot) = {
            let mut st = inner.state.borrow_mut();
            let leo = st.ends.log_end();
            st.recovery_point = leo;
            (leo, st.producers.encode_snapshot(leo, &st.txns))
        };
        self.write_meta().await?;
        // The next open loads this and replays nothing.
        self.write_pending_snapshots(leo).await?;
        self.write_snapshot(leo, &snapshot).await?;
        self.prune_snapshots(i64::MAX).await
    }
}
