//! Moving the log's ends: `truncate_to` (the log end and the high watermark back to a
//! batch boundary), `truncate_fully_and_start_at` (the whole log replaced by an empty one at
//! any offset, Kafka's `truncateFullyAndStartAt`: a follower that fell below the leader's log
//! start) and `delete_records_before` (the log start forward, also how a follower follows the
//! leader's log start), with the removal of whole segments they share with retention.

use std::collections::BTreeMap;

use sluice_net::record_batch::{self, peek_batch_size};

use super::open::scan_segment;
use super::{Partition, corrupt};
use crate::cleaner_checkpoint::CleanerState;
use crate::error::{Result, ShardError, io_err};
use crate::files::close_evicted;
use crate::io::{Storage, StorageFile};
use crate::limits::SCAN_READ_BYTES;
use crate::log_reset;
use crate::producer_state::ProducerTable;
use crate::segment::{Segment, SegmentFile, segment_file};
use crate::transactions::Transactions;
use crate::txn_index::TXN_INDEX_EXT;
impl<S: Storage> Partition<S> {
    /// Removes every batch whose last offset is at or after `offset` (a batch is never split):
    /// afterwards the log end offset is the base of the first removed batch, or `offset` if it
    /// was the log end. Durable when it returns. `offset` below the log start is an error.
    pub async fn truncate_to(&self, offset: i64) -> Result<()> {
        self.check_usable()?;
        let _g = self.inner.io_lock.lock().await;
        let _t = TruncatingGuard::new(self);
        self.flush_locked().await?;
        if !self.truncation_needed(offset)? {
            return Ok(());
        }
        let keep_base = self.remove_segments_after(offset).await?;
        // The kept segment is the active one from here on: it holds its file open.
        let file = self.pin_segment(keep_base).await?;
        let (cut_pos, new_end) = match &file {
            None => (0, keep_base),
            Some(file) => self.find_cut(file, keep_base, offset).await?,
        };
        assert!(
            new_end <= offset,
            "truncation to {offset} would keep the log up to {new_end}"
        );
        if let Some(file) = &file {
            self.cut_segment_file(file, keep_base, cut_pos).await?;
        }
        self.truncate_state(keep_base, cut_pos, new_end);
        if let Some(file) = &file {
            self.rescan_cut_segment(file, keep_base, cut_pos, new_end)
                .await?;
        }
        self.write_meta().await?;
        self.write_cleaner_checkpoint().await?;
        // Snapshots above the new end describe batches that are gone.
        self.prune_snapshots(new_end).await?;
        // The kept segment's aborted transactions above the cut are gone too.
        self.write_txn_index(keep_base, new_end).await?;
        self.reload_producers().await?;
        self.inner.appended.notify_all();
        Ok(())
    }

    /// Kafka's `UnifiedLog.truncateFullyAndStartAt`: drops the whole log and starts it again,
    /// empty, at `offset`: above the log end (a follower whose log ends below the leader's log
    /// start, answered OFFSET_OUT_OF_RANGE) or at or below it. Afterwards log start, log end
    /// and high watermark are all `offset` (whatever the replication bound: a leader's log
    /// start is at most its high watermark); the leader epoch cache is empty (and saved so),
    /// idempotent producers, their snapshots and the cleaner's state are forgotten, the
    /// recovery point is `offset`, and the first append (leader or replicated) lands at
    /// `offset`. Appends wait meanwhile; waiters are woken. Durable when it returns.
    ///
    /// Crash safety (`log_reset.rs`): a marker naming `offset` is made durable before anything
    /// is removed and removed last, and an open that finds it finishes the reset, so a crash
    /// at any point opens as the old log, whole, or as the new one. An I/O error poisons the
    /// partition; reopening it likewise finds one or the other.
    pub async fn truncate_fully_and_start_at(&self, offset: i64) -> Result<()> {
        self.check_usable()?;
        if offset < 0 {
            let st = self.inner.state.borrow();
            return Err(ShardError::OffsetOutOfRange {
                offset,
                log_start_offset: st.log_start_offset,
                log_end_offset: st.ends.log_end(),
            });
        }
        let _g = self.inner.io_lock.lock().await;
        let _t = TruncatingGuard::new(self);
        // Closed while this waited for the lock?
        self.check_usable()?;
        // Appends in flight are acknowledged by their sync: they are written, then dropped.
        self.flush_locked().await?;
        let r = self.reset_locked(offset).await;
        self.inner.state.borrow_mut().poison_on_err(&r);
        self.inner.synced.notify_all();
        r
    }

    /// The reset's steps on disk, in their crash-safe order; the state is the new log's from
    /// the moment the marker is durable.
    async fn reset_locked(&self, offset: i64) -> Result<()> {
        let inner = &*self.inner;
        log_reset::write_marker(&inner.storage, &inner.dir, offset).await?;
        let old = self.reset_state(offset);
        let mut pinned = Vec::new();
        for seg in old.into_values() {
            self.forget_segment_file(&seg);
            if let SegmentFile::Pinned(f) = seg.file {
                pinned.push(f);
            }
        }
        close_evicted(pinned).await;
        log_reset::remove_log_files(&inner.storage, &inner.dir).await?;
        // Creates `<offset>.log` (directory synced) and writes the meta: log start and
        // recovery point `offset`, no leader epochs.
        self.open_new_segment(offset).await?;
        log_reset::remove_marker(&inner.storage, &inner.dir).await
    }

    /// The state of an empty log at `offset` (one empty segment, every end, the log start and
    /// the recovery point at `offset`, nothing remembered of the old log); returns the old
    /// segments. Called flushed, under the I/O lock, with appends held off.
    fn reset_state(&self, offset: i64) -> BTreeMap<i64, Segment<S::File>> {
        let inner = &*self.inner;
        let now = inner.storage.now_ms();
        let mut st = inner.state.borrow_mut();
        let st = &mut *st;
        assert!(
            st.unwritten.is_empty(),
            "a reset starts with everything written"
        );
        let fresh = BTreeMap::from([(offset, Segment::new(offset, now))]);
        let old = std::mem::replace(&mut st.segments, fresh);
        st.ends.reset(offset);
        st.log_start_offset = offset;
        st.recovery_point = offset;
        st.leader_epochs.clear();
        st.producers = ProducerTable::default();
        st.txns = Transactions::default();
        st.pending_snapshots.clear();
        st.cleaner = CleanerState::default();
        inner.cache.borrow_mut().remove_partition(inner.id);
        old
    }

    /// Whether truncating to `offset` removes anything; an error if `offset` is outside
    /// `[log start, log end]`.
    fn truncation_needed(&self, offset: i64) -> Result<bool> {
        let st = self.inner.state.borrow();
        if offset < st.log_start_offset || offset > st.ends.log_end() {
            return Err(ShardError::OffsetOutOfRange {
                offset,
                log_start_offset: st.log_start_offset,
                log_end_offset: st.ends.log_end(),
            });
        }
        Ok(offset != st.ends.log_end())
    }

    /// Removes the whole segments after the one that holds `offset`, newest first; returns
    /// the base of the kept one.
    async fn remove_segments_after(&self, offset: i64) -> Result<i64> {
        let inner = &*self.inner;
        let (keep_base, doomed): (i64, Vec<i64>) = {
            let st = inner.state.borrow();
            let first = *st.segments.keys().next().expect("segment");
            let keep = st
                .segments
                .range(..=offset)
                .next_back()
                .map_or(first, |(b, _)| *b);
            let doomed = st.segments.range(keep + 1..).map(|(b, _)| *b).collect();
            (keep, doomed)
        };
        for b in doomed.into_iter().rev() {
            if let Some(seg) = inner.state.borrow().segments.get(&b) {
                self.forget_segment_file(seg);
            }
            self.remove_segment_files(b).await?;
            inner.state.borrow_mut().segments.remove(&b);
        }
        Ok(keep_base)
    }

    /// Where to cut segment `keep_base` so that no batch whose last offset is at or after
    /// `offset` stays: (byte position, new log end). A batch is never split.
    async fn find_cut(&self, file: &S::File, keep_base: i64, offset: i64) -> Result<(u64, i64)> {
        let inner = &*self.inner;
        let path = segment_file(&inner.dir, keep_base, "log");
        let (mut p, size, mut end) = {
            let st = inner.state.borrow();
            let seg = &st.segments[&keep_base];
            let rel = (offset - keep_base).clamp(0, i64::from(u32::MAX)) as u32;
            let pos0 = u64::from(seg.index.position_for(rel));
            (pos0, seg.size_bytes, seg.next_offset)
        };
        let mut found = None;
        while p < size {
            let hdr = file
                .read_at(p, record_batch::HEADER_BYTES)
                .await
                .map_err(io_err("read", &path))?;
            let n = peek_batch_size(&hdr)
                .ok()
                .flatten()
                .filter(|&n| hdr.len() == record_batch::HEADER_BYTES && p + n as u64 <= size)
                .ok_or_else(|| corrupt(&path, p, "bad batch header during truncation"))?;
            let mut b8 = [0u8; 8];
            b8.copy_from_slice(&hdr[..8]);
            let base = i64::from_be_bytes(b8);
            let mut d4 = [0u8; 4];
            d4.copy_from_slice(&hdr[23..27]);
            let last = base + i64::from(i32::from_be_bytes(d4));
            if last >= offset {
                found = Some(p);
                end = base;
                break;
            }
            p += n as u64;
        }
        // No batch reaches `offset`: it lies in a compaction gap (or at the end), so the log
        // ends at `offset` itself.
        Ok(match found {
            Some(p) => (p, end),
            None => (size, end.min(offset)),
        })
    }

    /// Cuts segment `keep_base`'s file at `cut_pos` and syncs it; keeps its new tail block.
    async fn cut_segment_file(&self, file: &S::File, keep_base: i64, cut_pos: u64) -> Result<()> {
        let inner = &*self.inner;
        let path = segment_file(&inner.dir, keep_base, "log");
        file.truncate(cut_pos)
            .await
            .map_err(io_err("truncate", &path))?;
        let align = file.alignment();
        let ts = cut_pos / align * align;
        let tail = file
            .read_at(ts, (cut_pos - ts) as usize)
            .await
            .map_err(io_err("read tail", &path))?;
        file.fdatasync().await.map_err(io_err("fdatasync", &path))?;
        let mut st = inner.state.borrow_mut();
        let seg = st.segments.get_mut(&keep_base).expect("kept segment");
        seg.tail = tail.to_vec();
        Ok(())
    }

    /// The log now ends at `new_end` (segment `keep_base` cut at `cut_pos`, durable): the
    /// ends go back (the one place they may), and everything that described the removed
    /// batches forgets them.
    fn truncate_state(&self, keep_base: i64, cut_pos: u64, new_end: i64) {
        let inner = &*self.inner;
        let mut st = inner.state.borrow_mut();
        let st = &mut *st;
        inner.readahead.clear();
        let seg = st.segments.get_mut(&keep_base).expect("kept segment");
        seg.size_bytes = cut_pos;
        seg.written_bytes = cut_pos;
        seg.allocated_bytes = cut_pos;
        seg.next_offset = new_end;
        seg.index.truncate_at(cut_pos as u32);
        seg.index_dirty = true;
        seg.max_timestamp = seg.index.times.last().map_or(-1, |t| t.0);
        st.ends.truncate(new_end);
        st.recovery_point = st.recovery_point.min(keep_base);
        st.leader_epochs.retain(|e| e.1 < new_end);
        // Both tables are reloaded by the caller (a replay); until then the transactions are
        // cut as a replay would leave them (exact for a cut at or above the high watermark,
        // and for the aborted index at any cut, which the kept segment's index file needs).
        st.txns.truncate(new_end);
        st.pending_snapshots.retain(|(o, _)| *o <= new_end);
        st.cleaner.truncate(new_end);
        if st.log_start_offset > new_end {
            st.log_start_offset = new_end;
        }
        inner.cache.borrow_mut().truncate(inner.id, new_end);
    }

    /// The index max timestamp after truncation is approximate; rescans the cut segment to
    /// make it exact (and its index with it).
    async fn rescan_cut_segment(
        &self,
        file: &S::File,
        keep_base: i64,
        cut_pos: u64,
        new_end: i64,
    ) -> Result<()> {
        let inner = &*self.inner;
        let path = segment_file(&inner.dir, keep_base, "log");
        let gaps = keep_base < inner.state.borrow().cleaner.cleaned_upto;
        let scan = scan_segment(
            file,
            keep_base,
            cut_pos,
            inner.config.index_interval_bytes,
            SCAN_READ_BYTES,
            gaps,
        )
        .await
        .map_err(io_err("scan segment", &path))?;
        let mut st = inner.state.borrow_mut();
        let seg = st.segments.get_mut(&keep_base).expect("kept segment");
        assert!(
            scan.valid_bytes == cut_pos,
            "truncated segment must scan clean"
        );
        assert!(scan.next_offset <= new_end || cut_pos == 0);
        seg.max_timestamp = scan.max_timestamp;
        seg.index = scan.index;
        Ok(())
    }

    async fn remove_segment_files(&self, base: i64) -> Result<()> {
        let inner = &*self.inner;
        for ext in ["log", "index", "timeindex", TXN_INDEX_EXT] {
            let p = segment_file(&inner.dir, base, ext);
            match inner.storage.remove(&p).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("remove", &p)(e)),
            }
        }
        inner
            .storage
            .sync_dir(&inner.dir)
            .await
            .map_err(io_err("sync dir", &inner.dir))
    }

    /// Moves the log start offset to `offset` (capped at the high watermark) and deletes the
    /// segments wholly below it. Returns the new log start offset; durable when it returns.
    ///
    /// A follower follows the leader's log start with it (Kafka's
    /// `maybeIncrementLogStartOffset`, same cap): after appending a Fetch answer's batches and
    /// bounding the high watermark by the answer's, it passes the answer's `log_start_offset`.
    /// The leader's log start is at most the leader's high watermark, so it is at most this
    /// replica's as soon as the replica holds the leader's log up to there; if it does not
    /// (the leader deleted past what this replica holds) the answer is `OffsetOutOfRange`,
    /// and the next Fetch is out of range too: that is `truncate_fully_and_start_at`'s case.
    /// An offset at or below the log start changes nothing and touches no file (a follower
    /// passes one with every answer).
    pub async fn delete_records_before(&self, offset: i64) -> Result<i64> {
        self.check_usable()?;
        let _g = self.inner.io_lock.lock().await;
        {
            let st = self.inner.state.borrow();
            if (0..=st.log_start_offset).contains(&offset) {
                return Ok(st.log_start_offset);
            }
        }
        self.flush_locked().await?;
        let inner = &*self.inner;
        let (old_start, new_start) = {
            let mut st = inner.state.borrow_mut();
            if offset < 0 || offset > st.ends.high_watermark() {
                return Err(ShardError::OffsetOutOfRange {
                    offset,
                    log_start_offset: st.log_start_offset,
                    log_end_offset: st.ends.high_watermark(),
                });
            }
            let old = st.log_start_offset;
            st.log_start_offset = old.max(offset);
            (old, st.log_start_offset)
        };
        if let Err(e) = self.write_meta().await {
            // Not durable: the log start stays where the disk has it, so a later call that
            // finds nothing to move does not answer for an offset that was never saved.
            inner.state.borrow_mut().log_start_offset = old_start;
            return Err(e);
        }
        inner.state.borrow_mut().txns.delete_before(new_start);
        self.remove_segments_below(new_start).await?;
        inner.cache.borrow_mut().remove_before(inner.id, new_start);
        Ok(new_start)
    }

    /// Deletes closed segments whose offsets are all below `offset`.
    pub(super) async fn remove_segments_below(&self, offset: i64) -> Result<()> {
        let doomed: Vec<i64> = {
            let st = self.inner.state.borrow();
            let active = *st.segments.keys().next_back().expect("segment");
            st.segments
                .iter()
                .filter(|(b, s)| **b != active && s.next_offset <= offset)
                .map(|(b, _)| *b)
                .collect()
        };
        for b in doomed {
            let seg = self.inner.state.borrow_mut().segments.remove(&b);
            if let Some(seg) = seg {
                self.forget_segment_file(&seg);
            }
            self.remove_segment_files(b).await?;
        }
        Ok(())
    }
}

/// Holds appends off while a truncation or a reset rewrites the log end; clears (and wakes
/// the waiters) on every exit path.
struct TruncatingGuard<'a, S: Storage> {
    p: &'a Partition<S>,
}

impl<'a, S: Storage> TruncatingGuard<'a, S> {
    fn new(p: &'a Partition<S>) -> Self {
        p.inner.state.borrow_mut().truncating = true;
        Self { p }
    }
}

impl<S: Storage> Drop for TruncatingGuard<'_, S> {
    fn drop(&mut self) {
        self.p.inner.state.borrow_mut().truncating = false;
        self.p.inner.appended.notify_all();
    }
}
