//! Compaction as seen from the partition: when a pass is due, which segments it may read
//! (through the shard's file cache, refusing any replaced since the plan), and the swap under
//! the I/O lock that checks the log did not change underneath before the cleaned segment
//! takes the group's place. The cleaning itself (plan, offset map, record filter, file steps)
//! is `crate::compact`, which never sees the partition.

use std::rc::Rc;

use super::Partition;
use crate::cleaner_checkpoint::{self, CleanerState};
use crate::compact::{
    self, AbortedRanges, Cleaned, Cleaner, CompactionStats, Filter, MarkerSweep, OffsetMap, Plan,
    SegWriter, Src,
};
use crate::error::{Result, io_err};
use crate::io::{Storage, write_file_atomic};
use crate::limits::SCAN_READ_BYTES;
use crate::segment::{Segment, SegmentFile};
use crate::txn_index;

/// What every group of a pass shares: the cleaner state it started from, the offset map,
/// the aborted transactions and the marker sweep.
type Pass<'a> = (
    &'a CleanerState,
    &'a OffsetMap,
    &'a AbortedRanges,
    &'a std::cell::RefCell<MarkerSweep>,
);

/// Clears the partition's "compacting" flag on every exit path.
struct Running<'a>(&'a std::cell::Cell<bool>);
impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

impl<S: Storage> Partition<S> {
    /// Whether [`Partition::compact`] would do work now (cheap: memory only).
    pub fn compaction_due(&self, now_ms: i64) -> bool {
        self.inner.config.compact && !self.inner.compacting.get() && self.plan(now_ms).is_some()
    }

    /// Runs one compaction pass if one is due (see the module docs of `compact.rs`): the
    /// closed segments are rewritten keeping the last record per key; the active segment is
    /// never touched. Returns what it did (`passes == 0` when nothing was due, the topic is
    /// not compacted, or another pass is running). Appends and reads go on meanwhile; only
    /// the file swaps hold the partition's I/O lock. An I/O error during a swap makes the
    /// partition read-only (`Poisoned`) until it is reopened.
    pub async fn compact(&self, now_ms: i64) -> Result<crate::CompactionStats> {
        let inner = &*self.inner;
        let mut stats = CompactionStats::default();
        if !inner.config.compact || inner.compacting.get() {
            return Ok(stats);
        }
        self.check_usable()?;
        inner.compacting.set(true);
        let _running = Running(&inner.compacting);
        let Some(mut plan) = self.plan(now_ms) else {
            return Ok(stats);
        };
        stats.passes = 1;
        let aborted = self.aborted_ranges();
        let map = self
            .build_offset_map(&mut plan, &aborted, &mut stats)
            .await?;
        let sweep = std::cell::RefCell::new(MarkerSweep::default());
        for g in compact::groups(&plan.segs, inner.config.segment_bytes) {
            let pass = (&plan.cleaner, &map, &aborted, &sweep);
            let swapped = self
                .clean_group(&plan.segs[g], pass, now_ms, &mut stats)
                .await?;
            if !swapped {
                break;
            }
        }
        Ok(stats)
    }

    fn plan(&self, now_ms: i64) -> Option<Plan> {
        let inner = &*self.inner;
        let st = inner.state.borrow();
        if st.closed || st.poisoned.is_some() {
            return None;
        }
        let active = *st.segments.keys().next_back()?;
        let closed = st.segments.range(..active).map(|(_, s)| s);
        compact::plan(
            closed,
            st.ends.durable_end().min(st.last_stable_offset()),
            &st.cleaner,
            &inner.config,
            now_ms,
        )
    }

    /// The file side of a pass on this partition's directory.
    fn cleaner(&self) -> Cleaner<'_, S> {
        let inner = &*self.inner;
        Cleaner {
            storage: &inner.storage,
            dir: &inner.dir,
            chunk: inner.shard_config.read_bytes_min.max(SCAN_READ_BYTES),
            decompressed_max: inner.shard_config.decompressed_batch_bytes_max,
            index_interval_bytes: inner.config.index_interval_bytes,
        }
    }

    /// The aborted transactions of the log as the cleaner looks them up.
    fn aborted_ranges(&self) -> AbortedRanges {
        let st = self.inner.state.borrow();
        AbortedRanges::new(
            st.txns
                .aborted()
                .map(|a| (a.producer_id, a.first_offset, a.last_offset)),
        )
    }

    /// Reads the dirty segments into the offset map; stops (shortening the plan) at the
    /// segment where the map passes `compaction_keys_max` keys.
    async fn build_offset_map(
        &self,
        plan: &mut Plan,
        aborted: &AbortedRanges,
        stats: &mut CompactionStats,
    ) -> Result<OffsetMap> {
        let cleaner = self.cleaner();
        let mut map = OffsetMap::default();
        let cu = plan.cleaner.cleaned_upto;
        let mut end = plan.segs.len();
        for i in plan.dirty_from..plan.segs.len() {
            let s = &plan.segs[i];
            let Some(file) = self.src_file(s).await? else {
                // Removed underneath (retention, truncation): clean what comes before.
                end = i;
                break;
            };
            cleaner
                .map_segment(&mut map, (&file, s), cu, aborted, stats)
                .await?;
            if map.key_count() > self.inner.shard_config.compaction_keys_max {
                end = i + 1;
                break;
            }
        }
        plan.segs.truncate(end);
        Ok(map)
    }

    /// The file of a segment in the plan; `None` if that segment left the log or was
    /// replaced since the plan was made.
    async fn src_file(&self, s: &Src) -> Result<Option<Rc<S::File>>> {
        let Some(f) = self.segment_handle(s.base).await? else {
            return Ok(None);
        };
        let same = self
            .inner
            .state
            .borrow()
            .segments
            .get(&s.base)
            .map(Segment::id)
            == Some(s.id);
        Ok(same.then_some(f))
    }

    /// Cleans one group of segments into a new file and swaps it in. `Ok(false)` if the log
    /// changed underneath (retention, truncation, close) and the pass should stop.
    async fn clean_group(
        &self,
        group: &[Src],
        (cleaner, map, aborted, sweep): Pass<'_>,
        now_ms: i64,
        stats: &mut CompactionStats,
    ) -> Result<bool> {
        let base = group[0].base;
        let mut w = self.cleaner().create_output(base).await?;
        let mut local = CompactionStats::default();
        let filter = Filter {
            map,
            cleaner,
            now_ms,
            delete_retention_ms: self.inner.config.delete_retention_ms,
            decompressed_max: self.inner.shard_config.decompressed_batch_bytes_max,
            remembered: self.inner.state.borrow().producers.batch_bases().collect(),
            aborted,
            sweep,
        };
        let r = self.filter_group(group, &filter, &mut w, &mut local).await;
        let removed = sweep.borrow_mut().take_removed();
        let (changed, cleaned) = match r {
            Ok(changed) => match w.finish().await {
                Ok(cleaned) => (changed, cleaned),
                Err(e) => {
                    let _ = self.cleaner().discard_output(base).await;
                    return Err(e);
                }
            },
            Err(e) => {
                drop(w);
                let _ = self.cleaner().discard_output(base).await;
                return Err(e);
            }
        };
        stats.bytes_read += local.bytes_read;
        if !changed && group.len() == 1 {
            // Nothing to gain: leave the segment in place, but count it as cleaned.
            drop(cleaned);
            self.cleaner().discard_output(base).await?;
            self.mark_cleaned(&group[0], now_ms).await?;
            return Ok(true);
        }
        let size = cleaned.size;
        let swapped = self
            .swap(group, (cleaner, &removed), cleaned, now_ms)
            .await?;
        if swapped {
            local.bytes_read = 0;
            stats.add(&local);
            stats.segments_cleaned += group.len() as u64;
            stats.segments_written += 1;
            stats.bytes_written += size;
            stats.bytes_before += group.iter().map(|s| s.size).sum::<u64>();
            stats.bytes_after += size;
        } else {
            self.cleaner().discard_output(base).await?;
        }
        Ok(swapped)
    }

    /// Streams the group's batches through the filter into `w`; true if anything changed.
    async fn filter_group(
        &self,
        group: &[Src],
        filter: &Filter<'_>,
        w: &mut SegWriter<S::File>,
        stats: &mut CompactionStats,
    ) -> Result<bool> {
        let cleaner = self.cleaner();
        let mut changed = false;
        for s in group {
            let Some(file) = self.src_file(s).await? else {
                // Removed underneath: the swap sees the change and drops this output.
                continue;
            };
            changed |= cleaner.filter_segment(filter, &file, s, w, stats).await?;
        }
        Ok(changed)
    }

    /// Records that the log below `s.end` is cleaned without rewriting it (a lone segment the
    /// filter would leave as it is), unless segment `s` changed since the plan (a truncation
    /// cut it, a reset dropped the log): then the offsets below `s.end` are not what was read.
    async fn mark_cleaned(&self, s: &Src, now_ms: i64) -> Result<()> {
        let inner = &*self.inner;
        let _g = inner.io_lock.lock().await;
        let c = {
            let mut st = inner.state.borrow_mut();
            let unchanged = st
                .segments
                .get(&s.base)
                .is_some_and(|g| (g.id, g.next_offset, g.size_bytes) == (s.id, s.end, s.size));
            if st.closed || st.poisoned.is_some() || !unchanged || st.cleaner.cleaned_upto >= s.end
            {
                return Ok(());
            }
            st.cleaner
                .advance(s.end, now_ms, inner.config.delete_retention_ms);
            st.cleaner.clone()
        };
        cleaner_checkpoint::save(&inner.storage, &inner.dir, &c).await
    }

    /// Swaps a cleaned file in for `group` under the I/O lock (see "Crash safety" in
    /// `compact.rs`). `Ok(false)` if the log changed since the plan.
    /// `removed`: the transaction markers the group's rewrite left out (offset, ABORT).
    async fn swap(
        &self,
        group: &[Src],
        (cleaner, removed): (&CleanerState, &[(i64, bool)]),
        cleaned: Cleaned<S::File>,
        now_ms: i64,
    ) -> Result<bool> {
        let inner = &*self.inner;
        let base = group[0].base;
        let end = group[group.len() - 1].end;
        let _g = inner.io_lock.lock().await;
        let Some(new_cleaner) = self.swap_cleaner_state(group, cleaner, now_ms) else {
            return Ok(false);
        };
        cleaner_checkpoint::save(&inner.storage, &inner.dir, &new_cleaner).await?;
        inner.state.borrow_mut().cleaner = new_cleaner;
        if let Some(&(last, _)) = removed.last() {
            // A snapshot at or below a removed marker may hold its transaction open: a
            // restart from it would never see the transaction end.
            self.drop_snapshots_through(last).await?;
        }
        let txn_cleaned = self.write_group_txn_index(group, removed).await?;
        // The swap renames files over these segments' paths: from here until they leave the
        // map, readers must use the files they have, never open the paths again.
        let mut r = Ok(());
        for s in group {
            if let Err(e) = self.pin_segment(s.base).await {
                r = Err(e);
                break;
            }
        }
        if r.is_ok() {
            r = self
                .cleaner()
                .swap_files(group, (base, end), txn_cleaned)
                .await;
        }
        inner.state.borrow_mut().poison_on_err(&r);
        r?;
        let file = Rc::new(cleaned.file);
        {
            let mut st = inner.state.borrow_mut();
            for s in group {
                if let Some(old) = st.segments.remove(&s.base) {
                    self.forget_segment_file(&old);
                }
            }
            for &(offset, _) in removed.iter().filter(|r| r.1) {
                st.txns.forget_aborted(offset);
            }
            let mut seg = Segment::new(base, now_ms);
            seg.txn_index = txn_cleaned == Some(false);
            // Pinned until sealed below, which hands it to the file cache.
            seg.file = SegmentFile::Pinned(file.clone());
            seg.size_bytes = cleaned.size;
            seg.written_bytes = cleaned.size;
            seg.allocated_bytes = cleaned.size;
            seg.next_offset = end;
            seg.max_timestamp = cleaned.max_timestamp;
            seg.index = cleaned.index;
            seg.index_dirty = true;
            st.segments.insert(base, seg);
            inner.cache.borrow_mut().remove_before(inner.id, end);
        }
        self.seal_segment(&file, base).await?;
        Ok(true)
    }

    /// Writes the aborted transactions of `group` (less the ABORT markers in `removed`) to
    /// the group's cleaned transaction index, which the swap puts in place: `Some(empty)` if
    /// written, `None` when the group neither has nor had any.
    async fn write_group_txn_index(
        &self,
        group: &[Src],
        removed: &[(i64, bool)],
    ) -> Result<Option<bool>> {
        let inner = &*self.inner;
        let base = group[0].base;
        let end = group[group.len() - 1].end;
        let (entries, had) = {
            let st = inner.state.borrow();
            let mut entries = st.txns.aborted_in(base..end);
            entries.retain(|a| !removed.contains(&(a.last_offset, true)));
            let had = group
                .iter()
                .any(|s| st.segments.get(&s.base).is_some_and(|g| g.txn_index));
            (entries, had)
        };
        if entries.is_empty() && !had {
            return Ok(None);
        }
        let path = compact::txn_cleaned_path(&inner.dir, base);
        write_file_atomic(&inner.storage, &path, &txn_index::encode(base, &entries))
            .await
            .map_err(io_err("write transaction index", &path))?;
        Ok(Some(entries.is_empty()))
    }

    /// The cleaner state once `group` is swapped in, or `None` if the log changed since the
    /// plan (the group's segments are not those it read, or the group reaches the active
    /// segment, or a truncation lowered the state below what the pass started from).
    fn swap_cleaner_state(
        &self,
        group: &[Src],
        cleaner: &CleanerState,
        now_ms: i64,
    ) -> Option<CleanerState> {
        let inner = &*self.inner;
        let base = group[0].base;
        let end = group[group.len() - 1].end;
        let st = inner.state.borrow();
        if st.closed || st.poisoned.is_some() {
            return None;
        }
        let active = st.segments.keys().next_back().copied().unwrap_or(i64::MIN);
        let now: Vec<(i64, i64, u64, u64)> = st
            .segments
            .range(base..end)
            .map(|(b, s)| (*b, s.next_offset, s.size_bytes, s.id))
            .collect();
        let then: Vec<(i64, i64, u64, u64)> = group
            .iter()
            .map(|s| (s.base, s.end, s.size, s.id))
            .collect();
        if now != then || end > active {
            return None;
        }
        // Continue from the state as it is now (a truncation may have lowered it), and
        // never lower it below what this pass started from.
        let mut c = st.cleaner.clone();
        if c.cleaned_upto < cleaner.cleaned_upto.min(base) {
            return None;
        }
        c.advance(end, now_ms, inner.config.delete_retention_ms);
        Some(c)
    }

    /// Writes `cleaner.checkpoint` if the cleaner has any state (after a truncation).
    pub(super) async fn write_cleaner_checkpoint(&self) -> Result<()> {
        let inner = &*self.inner;
        let c = {
            let st = inner.state.borrow();
            if st.cleaner == CleanerState::default() {
                return Ok(());
            }
            st.cleaner.clone()
        };
        cleaner_checkpoint::save(&inner.storage, &inner.dir, &c).await
    }
}
