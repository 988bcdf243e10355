//! What replication (issue 21) asks of a partition's log: appending a leader's batches on a
//! follower byte for byte (offsets, timestamps and leader epochs as the leader wrote them),
//! bounding the high watermark by the other replicas, waiting on the log end (a leader's
//! long-polling followers), and the leader epoch cache's end offset for an epoch
//! (OffsetForLeaderEpoch and a follower Fetch's divergence check).

use bytes::Bytes;
use sluice_net::record_batch::RecordBatch;

use super::{AppendInfo, Partition};
use crate::cleaner_checkpoint;
use crate::config::Durability;
use crate::error::{Result, ShardError};
use crate::io::Storage;

impl<S: Storage> Partition<S> {
    /// Appends batches a leader sent (a follower's Fetch answer) as they are: each must be
    /// whole and pass its CRC, and the first one not already held must start at or past the
    /// log end, each next one past the previous one's end; batches wholly below the log end (a
    /// repeated answer) are skipped. A batch past the end leaves a gap, as the leader's
    /// compaction left it (Kafka's followers take such gaps too): before it is appended, the
    /// cleaner checkpoint's `cleaned_upto` is raised past the gap and saved, since that is
    /// the bound below which recovery accepts offset gaps (this replica's cleaner then takes
    /// the region below as cleaned, which the leader's copy of it is). Producer state is
    /// recorded without sequence checks (the leader made them), so a new leader still detects
    /// duplicates, and each new leader epoch enters
    /// the epoch cache, saved before the batches are synced. Returns per the partition's
    /// durability, with the offsets appended, or `None` when nothing was new.
    pub async fn append_replicated(&self, records: Bytes) -> Result<Option<AppendInfo>> {
        self.check_usable()?;
        let batches = super::whole_batches(records)?;
        self.wait_while_truncating().await;
        self.check_usable()?;
        let gap_end = {
            let st = self.inner.state.borrow();
            last_gap_end(&batches, st.ends.log_end()).filter(|&e| e > st.cleaner.cleaned_upto)
        };
        if let Some(end) = gap_end {
            self.accept_gaps_below(end).await?;
            self.wait_while_truncating().await;
            self.check_usable()?;
        }
        let Some((info, seq, new_epoch)) = self.replicate_in_memory(&batches)? else {
            return Ok(None);
        };
        self.inner.appended.notify_all();
        if new_epoch {
            self.save_leader_epochs().await?;
        }
        if let Durability::SyncEachAppend = self.inner.config.durability {
            self.sync_to(seq).await?;
        }
        Ok(Some(info))
    }

    /// Raises the cleaner checkpoint's `cleaned_upto` to `end` and saves it, under the I/O
    /// lock as the cleaner does: recovery then accepts offset gaps below `end`.
    async fn accept_gaps_below(&self, end: i64) -> Result<()> {
        let inner = &*self.inner;
        let _io = inner.io_lock.lock().await;
        let c = {
            let mut st = inner.state.borrow_mut();
            let now = inner.storage.now_ms();
            st.cleaner
                .advance(end, now, inner.config.delete_retention_ms);
            st.cleaner.clone()
        };
        tracing::info!(topic = %inner.topic, partition = inner.partition, end,
            "the leader's log has an offset gap here (compaction): accepting gaps below");
        cleaner_checkpoint::save(&inner.storage, &inner.dir, &c).await
    }

    /// Waits while a truncation runs (appends may not interleave with one).
    pub(super) async fn wait_while_truncating(&self) {
        self.wait_until(|st| !st.truncating).await;
    }

    fn replicate_in_memory(
        &self,
        batches: &[RecordBatch],
    ) -> Result<Option<(AppendInfo, u64, bool)>> {
        let inner = &*self.inner;
        let now = inner.storage.now_ms();
        let mut st = inner.state.borrow_mut();
        let st = &mut *st;
        let log_end = st.ends.log_end();
        let fresh: Vec<&RecordBatch> = batches
            .iter()
            .filter(|b| b.last_offset() >= log_end)
            .collect();
        let Some(first) = fresh.first() else {
            return Ok(None);
        };
        let mut expected = log_end;
        let gaps_below = st.cleaner.cleaned_upto;
        for b in &fresh {
            let gap_ok = b.base_offset() > expected && b.base_offset() <= gaps_below;
            if b.base_offset() != expected && !gap_ok {
                return Err(ShardError::NotContiguous {
                    topic: inner.topic.clone(),
                    partition: inner.partition,
                    base_offset: b.base_offset(),
                    log_end: expected,
                });
            }
            expected = b.last_offset() + 1;
        }
        let base_offset = first.base_offset();
        let mut new_epoch = false;
        st.append_seq += 1;
        let seq = st.append_seq;
        let mut cache = inner.cache.borrow_mut();
        for b in fresh {
            let epoch = b.partition_leader_epoch();
            if st.leader_epochs.last().is_none_or(|e| e.0 < epoch) {
                st.leader_epochs.push((epoch, b.base_offset()));
                st.leader_epoch = st.leader_epoch.max(epoch);
                new_epoch = true;
            }
            let at = (b, b.base_offset());
            self.append_batch(
                st,
                &mut cache,
                at,
                b.bytes().clone(),
                b.max_timestamp(),
                now,
            );
        }
        if let Durability::FlushInterval { .. } = inner.config.durability {
            st.advance_committed(&inner.config.durability);
        }
        let info = AppendInfo {
            base_offset,
            last_offset: st.ends.log_end() - 1,
            log_append_time_ms: -1,
            log_start_offset: st.log_start_offset,
        };
        Ok(Some((info, seq, new_epoch)))
    }

    /// Saves the leader epoch cache (with the partition's other metadata) under the I/O lock:
    /// a read checks every batch's epoch against the cache, so a new epoch must be on disk
    /// before batches of it are.
    /// A failure poisons the partition, as a failed write does: the batches of the new epoch
    /// are in memory and must not become durable (and acknowledged) with a later append.
    pub(super) async fn save_leader_epochs(&self) -> Result<()> {
        let _io = self.inner.io_lock.lock().await;
        let saved = self.write_meta().await;
        if let Err(e) = &saved {
            self.inner.state.borrow_mut().poisoned = Some(e.to_string());
            self.inner.synced.notify_all();
        }
        saved
    }

    /// Sets the replication bound of the high watermark (see `LogState::hw_bound`): on a
    /// leader the smallest log end of the other in-sync replicas, on a follower the leader's
    /// high watermark, `i64::MAX` with no other replica. The high watermark moves up to what
    /// the bound and this log's durability allow at once; it never moves back.
    pub fn set_high_watermark_bound(&self, bound: i64) {
        let moved = {
            let mut st = self.inner.state.borrow_mut();
            st.hw_bound = bound;
            let before = st.ends.high_watermark();
            st.advance_committed(&self.inner.config.durability);
            st.ends.high_watermark() != before
        };
        if moved {
            self.inner.appended.notify_all();
        }
    }

    /// Wakes every task waiting on this partition's ends (a leader that lost its leadership
    /// ends its produces waiting for the high watermark).
    pub fn wake_waiters(&self) {
        self.inner.appended.notify_all();
    }

    /// Whether the partition is open and usable (not closed, not failed).
    pub fn is_open(&self) -> bool {
        self.check_usable().is_ok()
    }

    /// Waits until the log end moves past `after_offset` (or the partition closes or fails):
    /// a leader's long poll for its followers, which read past the high watermark.
    pub async fn wait_for_log_end(&self, after_offset: i64) {
        self.wait_until(|st| st.ends.log_end() > after_offset || !st.usable())
            .await;
    }

    /// Kafka's `endOffsetFor`: the largest epoch at or below `epoch` in the leader epoch
    /// cache, with its end offset (the next epoch's start, or the log end for the last one).
    /// An epoch below the cache's first answers `(epoch, first start)`, as Kafka's cache
    /// does; an empty cache or a negative epoch `None` (UNDEFINED_EPOCH).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        let st = self.inner.state.borrow();
        end_offset_for_epoch(&st.leader_epochs, st.ends.log_end(), epoch)
    }
}

/// See [`Partition::end_offset_for_epoch`].
fn end_offset_for_epoch(cache: &[(i32, i64)], log_end: i64, epoch: i32) -> Option<(i32, i64)> {
    if epoch < 0 {
        return None;
    }
    let first = cache.first()?;
    if epoch < first.0 {
        return Some((epoch, first.1));
    }
    let i = cache.partition_point(|e| e.0 <= epoch);
    let found = cache[i - 1].0;
    let end = cache.get(i).map_or(log_end, |next| next.1);
    Some((found, end))
}

/// The start of the last batch of `batches` that would leave an offset gap after `log_end`
/// (it starts past the end of what comes before it), if any.
fn last_gap_end(batches: &[RecordBatch], log_end: i64) -> Option<i64> {
    let mut expected = log_end;
    let mut gap_end = None;
    for b in batches.iter().filter(|b| b.last_offset() >= log_end) {
        if b.base_offset() > expected {
            gap_end = Some(b.base_offset());
        }
        expected = b.last_offset() + 1;
    }
    gap_end
}

#[cfg(test)]
mod tests {
    use super::end_offset_for_epoch;

    #[test]
    fn end_offset_for_an_epoch_is_the_next_epochs_start() {
        let cache = [(1, 0), (3, 10), (4, 25)];
        assert_eq!(end_offset_for_epoch(&cache, 40, 1), Some((1, 10)));
        assert_eq!(end_offset_for_epoch(&cache, 40, 2), Some((1, 10)));
        assert_eq!(end_offset_for_epoch(&cache, 40, 3), Some((3, 25)));
        assert_eq!(end_offset_for_epoch(&cache, 40, 4), Some((4, 40)));
        assert_eq!(end_offset_for_epoch(&cache, 40, 9), Some((4, 40)));
        assert_eq!(end_offset_for_epoch(&cache, 40, 0), Some((0, 0)));
        assert_eq!(end_offset_for_epoch(&cache, 40, -1), None);
        assert_eq!(end_offset_for_epoch(&[], 40, 2), None);
    }
}
