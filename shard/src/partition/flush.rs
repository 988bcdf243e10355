//! Writing and syncing: unwritten batches go to their segment files in aligned DMA writes
//! (the partial tail block rewritten each time), then one fdatasync covers every append in
//! flight (group commit). A write or sync error poisons the partition.

use std::rc::Rc;

use super::Partition;
use crate::config::Durability;
use crate::error::{Result, io_err};
use crate::io::{Storage, StorageFile};
use crate::segment::{SegmentFile, segment_file};
impl<S: Storage> Partition<S> {
    /// Waits until append number `seq` is durable, flushing if no one else is (group commit:
    /// whoever flushes writes and syncs every unwritten batch, covering all waiters).
    /// Proved by `tests::append_behind_a_holder_that_does_not_flush_completes`.
    pub(super) async fn sync_to(&self, seq: u64) -> Result<()> {
        loop {
            let seen = self.inner.synced.generation();
            {
                let st = self.inner.state.borrow();
                if st.durable_seq >= seq {
                    return Ok(());
                }
                self.check_usable()?;
            }
            if let Some(guard) = self.inner.io_lock.try_lock() {
                let r = self.flush_locked().await;
                drop(guard);
                r?;
            } else {
                // The holder may be a flush (it notifies `synced`) or other work that does not
                // flush (compaction's swap, retention, truncation): then its release is the
                // moment to try again, or an append on an idle partition waited for the next
                // append.
                futures_lite::future::or(
                    self.inner.synced.wait(seen),
                    self.inner.io_lock.released(),
                )
                .await;
            }
        }
    }

    /// Writes and fdatasyncs every batch appended so far. When it returns `Ok`, all earlier
    /// appends are durable.
    pub async fn flush(&self) -> Result<()> {
        self.check_usable()?;
        let _g = self.inner.io_lock.lock().await;
        self.flush_locked().await
    }

    /// Flushes if the partition is in `FlushInterval` mode and its interval has passed.
    pub(crate) async fn flush_if_due(&self) -> Result<()> {
        let Durability::FlushInterval { interval_ms } = self.inner.config.durability else {
            return Ok(());
        };
        let due = {
            let st = self.inner.state.borrow();
            !st.unwritten.is_empty()
                && self.inner.storage.now_ms() - st.last_flush_ms >= interval_ms as i64
        };
        if due { self.flush().await } else { Ok(()) }
    }

    pub(super) async fn flush_locked(&self) -> Result<()> {
        let r = self.flush_locked_inner().await;
        self.inner.state.borrow_mut().poison_on_err(&r);
        self.inner.synced.notify_all();
        self.inner.appended.notify_all();
        r
    }

    async fn flush_locked_inner(&self) -> Result<()> {
        let inner = &*self.inner;
        if let Some(c) = &inner.state.borrow().poisoned {
            return Err(self.poisoned_err(c.clone()));
        }
        // Appends up to this sequence number are covered by the fdatasync below: every one
        // that was in memory when the write loop found nothing left to write.
        let covered_seq: u64;
        let mut synced_file: Option<(Rc<S::File>, i64)> = None;
        loop {
            let Some(plan) = self.plan_write() else {
                covered_seq = inner.state.borrow().append_seq;
                break;
            };
            let file = match plan.file.clone() {
                Some(f) => f,
                None => self.open_new_segment(plan.seg_base).await?,
            };
            // An earlier file written in this flush was sealed (synced) by open_new_segment, so
            // only the last file written needs the fdatasync below.
            self.write_planned(&file, &plan).await?;
            synced_file = Some((file, plan.seg_base));
        }
        if let Some((file, base)) = synced_file {
            let path = segment_file(&inner.dir, base, "log");
            let started = std::time::Instant::now();
            file.fdatasync().await.map_err(io_err("fdatasync", &path))?;
            inner.cache.borrow_mut().stats.fsync(started.elapsed());
        }
        self.mark_synced(covered_seq);
        Ok(())
    }

    /// Plans one write: the unwritten batches of the first segment that has some, up to
    /// `write_bytes_max` (at least one batch). `None` when nothing is left to write.
    fn plan_write(&self) -> Option<WritePlan<S::File>> {
        let inner = &*self.inner;
        let st = inner.state.borrow();
        let &seg_base = st.unwritten_segment.front()?;
        let mut count = 0usize;
        let mut bytes = 0usize;
        for (u, &sb) in st.unwritten.iter().zip(st.unwritten_segment.iter()) {
            if sb != seg_base
                || (count > 0 && bytes + u.bytes.len() > inner.shard_config.write_bytes_max)
            {
                break;
            }
            count += 1;
            bytes += u.bytes.len();
        }
        let seg = &st.segments[&seg_base];
        let file = match &seg.file {
            SegmentFile::Missing => None,
            SegmentFile::Pinned(f) => Some(f.clone()),
            SegmentFile::Cached => panic!("a segment with unwritten batches is sealed"),
        };
        Some(WritePlan {
            seg_base,
            count,
            bytes,
            file,
        })
    }

    /// Writes the planned batches after the segment's kept tail block, in one aligned write
    /// (preallocating first if the file is too short), then marks them written.
    async fn write_planned(&self, file: &Rc<S::File>, plan: &WritePlan<S::File>) -> Result<()> {
        let inner = &*self.inner;
        let path = segment_file(&inner.dir, plan.seg_base, "log");
        let align = file.alignment();
        let (pos, buf_len, new_written) = {
            let st = inner.state.borrow();
            let seg = &st.segments[&plan.seg_base];
            let start = seg.written_bytes / align * align;
            assert!(seg.tail.len() as u64 == seg.written_bytes - start);
            let end = seg.written_bytes + plan.bytes as u64;
            (start, (end.div_ceil(align) * align - start) as usize, end)
        };
        let mut buf = file.alloc_buf(buf_len);
        self.fill_write_buf(&mut buf, plan);
        let new_tail_start = new_written / align * align;
        let new_tail = buf[(new_tail_start - pos) as usize..(new_written - pos) as usize].to_vec();
        self.preallocate(file, plan.seg_base, pos + buf_len as u64)
            .await?;
        assert!(pos.is_multiple_of(align), "unaligned write position {pos}");
        assert!(
            (buf_len as u64).is_multiple_of(align),
            "unaligned write length {buf_len}"
        );
        file.write_at(buf, pos)
            .await
            .map_err(io_err("write", &path))?;
        self.mark_written(plan, new_written, new_tail);
        Ok(())
    }

    /// Fills a write buffer: the segment's tail block as written so far, the planned
    /// batches, zeros up to the alignment.
    fn fill_write_buf(&self, buf: &mut [u8], plan: &WritePlan<S::File>) {
        let st = self.inner.state.borrow();
        let seg = &st.segments[&plan.seg_base];
        let tail_keep = seg.tail.len();
        buf[..tail_keep].copy_from_slice(&seg.tail);
        let mut at = tail_keep;
        for u in st.unwritten.iter().take(plan.count) {
            let b = &u.bytes;
            buf[at..at + b.len()].copy_from_slice(b);
            at += b.len();
        }
        assert!(at == tail_keep + plan.bytes);
        buf[at..].fill(0);
    }

    /// Grows segment `seg_base`'s file when a write would end past what is allocated: by
    /// [`preallocate_step`], so a segment's allocation doubles from a small start up to steps
    /// of `preallocate_bytes`.
    async fn preallocate(&self, file: &Rc<S::File>, seg_base: i64, write_end: u64) -> Result<()> {
        let inner = &*self.inner;
        let allocated = inner.state.borrow().segments[&seg_base].allocated_bytes;
        if write_end <= allocated {
            return Ok(());
        }
        let step = preallocate_step(allocated, inner.config.preallocate_bytes);
        let target = (allocated + step).max(write_end);
        let path = segment_file(&inner.dir, seg_base, "log");
        file.allocate(target)
            .await
            .map_err(io_err("fallocate", &path))?;
        let mut st = inner.state.borrow_mut();
        if let Some(seg) = st.segments.get_mut(&seg_base) {
            seg.allocated_bytes = target;
        }
        Ok(())
    }

    /// The planned batches are with the kernel: they leave the unwritten queue and the
    /// written end moves past them.
    fn mark_written(&self, plan: &WritePlan<S::File>, new_written: u64, new_tail: Vec<u8>) {
        let mut st = self.inner.state.borrow_mut();
        let st = &mut *st;
        let seg = st
            .segments
            .get_mut(&plan.seg_base)
            .expect("segments are not removed during a flush");
        seg.written_bytes = new_written;
        seg.tail = new_tail;
        let mut last = st.ends.written_end() - 1;
        for _ in 0..plan.count {
            let u = st
                .unwritten
                .pop_front()
                .expect("planned batches are unwritten");
            st.unwritten_segment.pop_front();
            // Contiguous, but for the gaps a follower copies from a compacted leader.
            assert!(u.base_offset > last, "written offsets increase");
            last = u.last_offset;
            st.unwritten_bytes -= u.bytes.len();
        }
        st.ends.advance_written_end(last + 1);
    }

    /// Everything written is synced: the durable end and the high watermark move up, and
    /// appends up to `covered_seq` are durable.
    fn mark_synced(&self, covered_seq: u64) {
        let inner = &*self.inner;
        let mut st = inner.state.borrow_mut();
        let written = st.ends.written_end();
        st.ends.advance_durable_end(written);
        st.durable_seq = st.durable_seq.max(covered_seq);
        st.advance_committed(&inner.config.durability);
        st.last_flush_ms = inner.storage.now_ms();
    }
}

/// One write of a flush: the first `count` unwritten batches (`bytes` long), all of segment
/// `seg_base`, whose file is `file` (`None`: not created yet).
struct WritePlan<F> {
    seg_base: i64,
    count: usize,
    bytes: usize,
    file: Option<Rc<F>>,
}

/// The first fallocate step of a segment file; each next one doubles what is allocated, up to
/// `preallocate_bytes` a step.
pub(crate) const PREALLOCATE_FIRST_STEP: u64 = 128 << 10;

/// How much a segment file with `allocated` bytes grows by next: as much again as it has,
/// between [`PREALLOCATE_FIRST_STEP`] and `max_step`. A fixed 64 MiB first step reserved 64 MiB
/// of disk for every partition written to at all: 1,000 partitions receiving a few records
/// each on three replicas filled 60 GB. Doubling costs a segment about ten fallocates (each
/// makes the next fdatasync write metadata) before its steps reach `max_step`.
pub(crate) fn preallocate_step(allocated: u64, max_step: u64) -> u64 {
    allocated.clamp(PREALLOCATE_FIRST_STEP.min(max_step), max_step.max(1))
}

#[cfg(test)]
mod preallocate_tests {
    use super::*;

    #[test]
    fn steps_double_from_the_first_up_to_the_configured_step() {
        let max = 64 << 20;
        let mut allocated = 0;
        let mut steps = Vec::new();
        while allocated < 256 << 20 {
            let step = preallocate_step(allocated, max);
            steps.push(step);
            allocated += step;
        }
        assert_eq!(steps[0], 128 << 10);
        assert_eq!(steps[1], 128 << 10);
        assert_eq!(steps[2], 256 << 10);
        assert!(steps.windows(2).all(|w| w[1] >= w[0] && w[1] <= max));
        assert_eq!(*steps.last().expect("steps"), max);
        // A configured step below the first one is used as is (tests use 4 KiB).
        assert_eq!(preallocate_step(0, 4096), 4096);
        assert_eq!(preallocate_step(1 << 20, 4096), 4096);
    }
}
