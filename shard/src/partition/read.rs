//! The fetch path: committed batches from the per-core cache, the unwritten queue, or the
//! segment files (aligned DMA reads, every batch CRC-checked and its offset and leader epoch
//! checked against the index and the leader epoch cache); and the timestamp search behind
//! ListOffsets.

use std::path::Path;

use bytes::Bytes;
use sluice_net::record_batch::{self, Batches, Compression, RecordBatch, peek_batch_size};

use super::readahead::ReadEnd;
use super::{Partition, ReadResult, corrupt};
use crate::cache::collect_run;
use crate::error::{Result, ShardError, io_err};
use crate::io::{Storage, StorageFile};
use crate::limits::SCAN_READ_BYTES;
use crate::segment::segment_file;

/// `baseOffset + lastOffsetDelta + 1` of a stored batch (its header was checked).
fn batch_next_offset(b: &[u8]) -> i64 {
    let mut base = [0u8; 8];
    base.copy_from_slice(&b[..8]);
    let mut delta = [0u8; 4];
    delta.copy_from_slice(&b[23..27]);
    i64::from_be_bytes(base) + i64::from(i32::from_be_bytes(delta)) + 1
}

impl<S: Storage> Partition<S> {
    /// Reads committed batches (below the high watermark) starting at the batch that holds
    /// `offset`; whole batches up to `max_bytes`, but the first batch is returned whole even
    /// if larger. Served from memory when the data is recent; otherwise one DMA read.
    /// `offset == high watermark` returns no batches; outside `[log start, log end]` is
    /// `OffsetOutOfRange`.
    pub async fn read(&self, offset: i64, max_bytes: usize) -> Result<ReadResult> {
        let upto = self.inner.state.borrow().ends.high_watermark();
        self.read_upto(offset, max_bytes, upto).await
    }

    /// Like [`Partition::read`] but up to the last stable offset (a read_committed Fetch),
    /// with `aborted` the aborted transactions the returned batches overlap: those whose
    /// ABORT marker is at or past `offset` and whose first offset is before the end of the
    /// last batch returned (Kafka's `collectAbortedTransactions`); none when no batch is
    /// returned (`offset` at the last stable offset).
    pub async fn read_committed(&self, offset: i64, max_bytes: usize) -> Result<ReadResult> {
        let upto = self.inner.state.borrow().last_stable_offset();
        let mut r = self.read_upto(offset, max_bytes, upto).await?;
        if let Some(last) = r.batches.last() {
            let end = batch_next_offset(last);
            r.aborted = self.inner.state.borrow().txns.aborted_between(offset, end);
        }
        Ok(r)
    }

    /// Like [`Partition::read`] but up to the log end offset (for follower fetches).
    pub async fn read_to_log_end(&self, offset: i64, max_bytes: usize) -> Result<ReadResult> {
        let upto = self.inner.state.borrow().ends.log_end();
        self.read_upto(offset, max_bytes, upto).await
    }

    /// What a read at `offset` answers without its batches: the offsets, after the same
    /// checks (open, `offset` in `[log start, log end]`). For a fetch whose byte budget the
    /// partitions before this one used up.
    pub fn position(&self, offset: i64) -> Result<ReadResult> {
        self.read_offsets(offset)
    }

    async fn read_upto(&self, offset: i64, max_bytes: usize, upto: i64) -> Result<ReadResult> {
        let mut result = self.read_offsets(offset)?;
        self.inner.readahead.reset_end();
        if offset >= upto {
            return Ok(result);
        }
        let from_memory = self.read_memory(offset, max_bytes, upto);
        let from_disk = from_memory.is_none();
        {
            let mut cache = self.inner.cache.borrow_mut();
            if from_disk {
                cache.stats.cache_misses += 1;
            } else {
                cache.stats.cache_hits += 1;
            }
        }
        let mut out = match from_memory {
            Some(b) => b,
            None => self.read_disk(offset, max_bytes, upto, true).await?,
        };
        self.read_rest(&mut out, max_bytes, upto, from_disk).await?;
        result.batches = out;
        Ok(result)
    }

    /// The offsets a read answers with (no batches yet), after checking that the partition
    /// is open and `offset` lies in `[log start, log end]`.
    fn read_offsets(&self, offset: i64) -> Result<ReadResult> {
        let inner = &*self.inner;
        let st = inner.state.borrow();
        if st.closed {
            return Err(ShardError::Closed {
                topic: inner.topic.clone(),
                partition: inner.partition,
            });
        }
        if offset < st.log_start_offset || offset > st.ends.log_end() {
            return Err(ShardError::OffsetOutOfRange {
                offset,
                log_start_offset: st.log_start_offset,
                log_end_offset: st.ends.log_end(),
            });
        }
        Ok(ReadResult {
            batches: Vec::new(),
            high_watermark: st.ends.high_watermark(),
            log_start_offset: st.log_start_offset,
            log_end_offset: st.ends.log_end(),
            last_stable_offset: st.last_stable_offset(),
            aborted: Vec::new(),
        })
    }

    /// Batches from `offset` served from memory: the per-core cache, or the unwritten queue
    /// when `offset` is not written yet. `None` if neither has the batch holding `offset`.
    fn read_memory(&self, offset: i64, max_bytes: usize, upto: i64) -> Option<Vec<Bytes>> {
        let inner = &*self.inner;
        let st = inner.state.borrow();
        inner
            .cache
            .borrow()
            .read(inner.id, offset, max_bytes, upto)
            .or_else(|| {
                (offset >= st.ends.written_end())
                    .then(|| collect_run(&st.unwritten, offset, max_bytes, upto))
                    .flatten()
            })
    }

    /// A read may span disk, the cache and the unwritten queue: continues `out` where the
    /// first source stopped until the budget or the visible end is reached.
    async fn read_rest(
        &self,
        out: &mut Vec<Bytes>,
        max_bytes: usize,
        upto: i64,
        mut last_from_disk: bool,
    ) -> Result<()> {
        loop {
            let total: usize = out.iter().map(Bytes::len).sum();
            let Some(last) = out.last() else { break };
            let next = batch_next_offset(last);
            if next >= upto || total >= max_bytes {
                break;
            }
            let more = match self.read_memory(next, max_bytes - total, upto) {
                Some(m) => {
                    last_from_disk = false;
                    m
                }
                // A disk read already went as far as the budget and the segments allow; a
                // second one would only re-read the header it stopped at.
                None if last_from_disk => break,
                None => {
                    last_from_disk = true;
                    self.read_disk(next, max_bytes - total, upto, false).await?
                }
            };
            let mut added = false;
            let mut t = total;
            for b in more {
                if t + b.len() > max_bytes {
                    break;
                }
                t += b.len();
                out.push(b);
                added = true;
            }
            if !added {
                break;
            }
        }
        Ok(())
    }

    /// Reads batches from the segment files. With `first_whole`, the first batch is returned
    /// even if larger than `max_bytes` (Kafka's rule for the first batch of a fetch);
    /// without it every batch must fit (used to continue a read begun elsewhere).
    async fn read_disk(
        &self,
        offset: i64,
        max_bytes: usize,
        upto: i64,
        first_whole: bool,
    ) -> Result<Vec<Bytes>> {
        let mut read = DiskRead {
            offset,
            max_bytes,
            upto,
            first_whole,
            out: Vec::new(),
            total: 0,
            end: None,
            window: 0,
        };
        let mut cur = offset;
        loop {
            let Some(mut c) = self.disk_cursor(cur) else {
                return Ok(read.out);
            };
            let Some(file) = self.segment_handle(c.base).await? else {
                return Ok(read.out);
            };
            // The segment may have been replaced while its file was opening (a compaction
            // swap): the positions above belong to the old one, so look it up again.
            if self
                .inner
                .state
                .borrow()
                .segments
                .get(&c.base)
                .map(|s| s.id)
                != Some(c.id)
            {
                continue;
            }
            let done = self.read_segment(&file, &mut c, &mut read).await?;
            if let Some(end) = read.end {
                self.inner.readahead.note_end(end);
            }
            if done {
                return Ok(read.out);
            }
            cur = c.next_offset;
        }
    }

    /// Where on disk the batch holding `cur` starts (at or before it, by the sparse index),
    /// or `None` if it is not on disk yet (or at the log end).
    fn disk_cursor(&self, cur: i64) -> Option<SegmentCursor> {
        let st = self.inner.state.borrow();
        // Segments are contiguous, so the last one starting at or before `cur` holds it,
        // unless `cur` is at the log end.
        let (&base, seg) = st.segments.range(..=cur).next_back()?;
        if cur >= seg.next_offset || cur >= st.ends.written_end() || !seg.file.exists() {
            return None;
        }
        let rel = (cur - base).clamp(0, i64::from(u32::MAX)) as u32;
        let (entry_rel, pos) = seg.index.entry_for(rel);
        // A read going on where the last one stopped starts there, not at the index entry.
        let (pos, expect) = match self.inner.readahead.start_for(base, seg.id, cur) {
            Some(p) => (p, cur),
            None => (u64::from(pos), base + i64::from(entry_rel)),
        };
        Some(SegmentCursor {
            base,
            id: seg.id,
            pos,
            limit: seg.written_bytes,
            next_offset: seg.next_offset,
            expect,
            leader_epochs: st.leader_epochs.clone(),
        })
    }

    /// Reads batches of one segment from `c` into `r`, in windows. `Ok(true)` when the read is
    /// done (budget or visible end reached), `Ok(false)` when it should go on in the next
    /// segment.
    async fn read_segment(
        &self,
        file: &S::File,
        c: &mut SegmentCursor,
        r: &mut DiskRead,
    ) -> Result<bool> {
        let inner = &*self.inner;
        let path = segment_file(&inner.dir, c.base, "log");
        let mut data = Bytes::new();
        let mut data_pos = c.pos;
        // The window's batches before this position had their CRC checked when read ahead.
        let mut crc_checked_to = c.pos;
        while c.pos < c.limit {
            let at = (c.pos - data_pos) as usize;
            let size = match peek_batch_size(data.get(at..).unwrap_or(&[])) {
                Ok(Some(s)) => Some(s),
                Ok(None) => None,
                Err(e) => return Err(corrupt(&path, c.pos, e.to_string())),
            };
            let have = data.len().saturating_sub(at);
            // Stop before reading a batch that cannot be returned anyway.
            if let Some(sz) = size
                && r.stops_before(sz, &data[at..at + 8])
            {
                return Ok(true);
            }
            if size.is_none_or(|s| s > have) {
                let need = size.unwrap_or(record_batch::HEADER_BYTES);
                if c.pos + need as u64 > c.limit {
                    return Err(corrupt(&path, c.pos, "batch runs past the segment end"));
                }
                let window = r
                    .max_bytes
                    .saturating_sub(r.total)
                    .max(inner.shard_config.read_bytes_min)
                    .saturating_add(inner.config.index_interval_bytes as usize);
                r.window = r.window.max(window);
                let want = need.max(window).min((c.limit - c.pos) as usize);
                (data, crc_checked_to) = match inner.readahead.take(c.base, c.id, c.pos, need).await
                {
                    Some((ahead, checked)) => (ahead, c.pos + checked as u64),
                    None => {
                        let read = file.read_at(c.pos, want).await;
                        (read.map_err(io_err("read", &path))?, c.pos)
                    }
                };
                data_pos = c.pos;
                if data.len() < need {
                    return Err(corrupt(&path, c.pos, "short read inside the segment"));
                }
                continue;
            }
            let size = size.unwrap_or(0);
            let batch = RecordBatch::new(data.slice(at..at + size))
                .map_err(|e| corrupt(&path, c.pos, e.to_string()))?;
            c.check_stored(&path, &batch, c.pos + size as u64 <= crc_checked_to)?;
            c.expect = batch.last_offset() + 1;
            c.pos += size as u64;
            if batch.last_offset() < r.offset {
                continue;
            }
            if batch.base_offset() >= r.upto || (!r.out.is_empty() && r.total + size > r.max_bytes)
            {
                return Ok(true);
            }
            r.total += size;
            r.out.push(batch.into_bytes());
            r.end = Some(ReadEnd {
                seg_base: c.base,
                seg_id: c.id,
                pos: c.pos,
                offset: c.expect,
                limit: c.limit,
                window: r.window,
            });
        }
        Ok(false)
    }

    /// The first offset whose record timestamp is at or after `timestamp_ms`, with that
    /// timestamp, among committed records; `None` if there is none (ListOffsets answers the
    /// log end then). Flushes first so the search sees the disk only.
    pub async fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Option<(i64, i64)>> {
        self.check_usable()?;
        let _g = self.inner.io_lock.lock().await;
        self.flush_locked().await?;
        let inner = &*self.inner;
        let (q, cands) = {
            let st = inner.state.borrow();
            let cands: Vec<(i64, u64)> = st
                .segments
                .iter()
                .filter(|(_, s)| {
                    s.max_timestamp >= timestamp_ms && s.next_offset > st.log_start_offset
                })
                .map(|(b, s)| (*b, u64::from(s.index.position_for_time(timestamp_ms))))
                .collect();
            let q = TimeQuery {
                timestamp_ms,
                start_offset: st.log_start_offset,
                high_watermark: st.ends.high_watermark(),
            };
            (q, cands)
        };
        for (base, pos) in cands {
            let Some(file) = self.segment_handle(base).await? else {
                continue;
            };
            match self.search_segment(&file, base, pos, &q).await? {
                TimeSearch::Found(offset, ts) => return Ok(Some((offset, ts))),
                TimeSearch::End => return Ok(None),
                TimeSearch::NotHere => {}
            }
        }
        Ok(None)
    }

    /// Searches segment `base` from byte `pos` for the first record at or after the query's
    /// timestamp, a window at a time.
    async fn search_segment(
        &self,
        file: &S::File,
        base: i64,
        pos: u64,
        q: &TimeQuery,
    ) -> Result<TimeSearch> {
        let inner = &*self.inner;
        let mut cursor = pos;
        loop {
            let limit = {
                let st = inner.state.borrow();
                let Some(seg) = st.segments.get(&base) else {
                    return Ok(TimeSearch::NotHere);
                };
                seg.written_bytes
            };
            if cursor >= limit {
                return Ok(TimeSearch::NotHere);
            }
            let path = segment_file(&inner.dir, base, "log");
            let want = (limit - cursor).min(SCAN_READ_BYTES as u64) as usize;
            let data = file
                .read_at(cursor, want)
                .await
                .map_err(io_err("read", &path))?;
            let (found, mut progressed) = q.search_window(&data, &path, cursor)?;
            if let Some(found) = found {
                return Ok(found);
            }
            if progressed == 0 {
                let need = peek_batch_size(&data).ok().flatten().unwrap_or(0);
                if need == 0 || need as u64 > limit - cursor {
                    return Err(corrupt(&path, cursor, "unparseable batch"));
                }
                // A batch larger than the window: read it alone next time.
                let d = file
                    .read_at(cursor, need)
                    .await
                    .map_err(io_err("read", &path))?;
                let b = RecordBatch::new(d).map_err(|e| corrupt(&path, cursor, e.to_string()))?;
                b.validate_stored()
                    .map_err(|e| corrupt(&path, cursor, e.to_string()))?;
                if b.base_offset() >= q.high_watermark {
                    return Ok(TimeSearch::End);
                }
                if b.max_timestamp() >= q.timestamp_ms && b.last_offset() >= q.start_offset {
                    let offset = b.base_offset().max(q.start_offset);
                    return Ok(TimeSearch::Found(offset, b.max_timestamp()));
                }
                progressed = need;
            }
            cursor += progressed as u64;
        }
    }
}

/// What a disk read has gathered so far, and its bounds.
struct DiskRead {
    /// The offset the read asked for.
    offset: i64,
    max_bytes: usize,
    /// The visible end (high watermark or log end).
    upto: i64,
    /// Whether the first batch is returned even if larger than `max_bytes`.
    first_whole: bool,
    out: Vec<Bytes>,
    total: usize,
    /// Where the read stopped: after the last batch it returned.
    end: Option<ReadEnd>,
    /// The largest window it read: what a read-ahead for the next read reads.
    window: usize,
}

impl DiskRead {
    /// Whether a batch of `size` bytes (its header starting with `base_offset_bytes`) cannot
    /// be returned: over the budget, and not the first batch of a read that takes it whole.
    fn stops_before(&self, size: usize, base_offset_bytes: &[u8]) -> bool {
        if (self.out.is_empty() && self.first_whole) || self.total + size <= self.max_bytes {
            return false;
        }
        let mut hdr_base = [0u8; 8];
        hdr_base.copy_from_slice(base_offset_bytes);
        i64::from_be_bytes(hdr_base) >= self.offset || !self.out.is_empty()
    }
}

/// Where a disk read is in one segment.
struct SegmentCursor {
    base: i64,
    /// `Segment::id` when the cursor was made (a compaction swap may replace the segment).
    id: u64,
    /// Position of the next batch to read.
    pos: u64,
    /// Bytes of the segment written so far.
    limit: u64,
    next_offset: i64,
    /// The next batch's base offset is at least this.
    expect: i64,
    leader_epochs: Vec<(i32, i64)>,
}

impl SegmentCursor {
    /// Checks a batch read back at `self.pos`: framing and CRC, then `baseOffset` and
    /// `partitionLeaderEpoch`, which are outside the CRC, against what the index and the
    /// leader epoch cache say. Offsets increase; compaction may have left gaps between
    /// batches. With `crc_checked` the CRC is not computed again: it was checked on these very
    /// bytes when they were read ahead.
    fn check_stored(&self, path: &Path, batch: &RecordBatch, crc_checked: bool) -> Result<()> {
        let valid = if crc_checked {
            batch.validate_magic()
        } else {
            batch.validate_stored()
        };
        valid.map_err(|e| corrupt(path, self.pos, e.to_string()))?;
        if batch.base_offset() < self.expect || batch.last_offset() >= self.next_offset {
            return Err(corrupt(
                path,
                self.pos,
                format!(
                    "batch base offset {} where {} was expected",
                    batch.base_offset(),
                    self.expect
                ),
            ));
        }
        let epochs = &self.leader_epochs;
        let i = epochs.partition_point(|e| e.1 <= batch.base_offset());
        if i > 0 && epochs[i - 1].0 != batch.partition_leader_epoch() {
            return Err(corrupt(
                path,
                self.pos,
                format!(
                    "batch leader epoch {} where {} was expected",
                    batch.partition_leader_epoch(),
                    epochs[i - 1].0
                ),
            ));
        }
        Ok(())
    }
}

/// What `offset_for_timestamp` looks for: the first committed record at or after
/// `timestamp_ms`, at or after the log start.
struct TimeQuery {
    timestamp_ms: i64,
    start_offset: i64,
    high_watermark: i64,
}

/// How a timestamp search in one segment ended.
enum TimeSearch {
    /// The record's offset and timestamp.
    Found(i64, i64),
    /// The high watermark was reached: no committed record qualifies.
    End,
    /// Not in this segment: go on with the next candidate.
    NotHere,
}

impl TimeQuery {
    /// Searches the whole batches in `data` (read at `cursor`); returns how the search ended,
    /// if it did, and the bytes of whole batches looked at.
    fn search_window(
        &self,
        data: &Bytes,
        path: &Path,
        cursor: u64,
    ) -> Result<(Option<TimeSearch>, usize)> {
        let mut progressed = 0usize;
        for b in Batches::new(data.clone()) {
            let Ok(b) = b else { break };
            b.validate_stored()
                .map_err(|e| corrupt(path, cursor + progressed as u64, e.to_string()))?;
            progressed += b.size_bytes();
            if b.base_offset() >= self.high_watermark {
                return Ok((Some(TimeSearch::End), progressed));
            }
            if b.max_timestamp() < self.timestamp_ms || b.last_offset() < self.start_offset {
                continue;
            }
            if b.compression() == Ok(Compression::None)
                && let Ok(records) = b.records()
            {
                for r in records.flatten() {
                    let o = b.base_offset() + i64::from(r.offset_delta);
                    let ts = b.base_timestamp() + r.timestamp_delta;
                    if ts >= self.timestamp_ms && o >= self.start_offset && o < self.high_watermark
                    {
                        return Ok((Some(TimeSearch::Found(o, ts)), progressed));
                    }
                }
                continue;
            }
            let offset = b.base_offset().max(self.start_offset);
            return Ok((
                Some(TimeSearch::Found(offset, b.max_timestamp())),
                progressed,
            ));
        }
        Ok((None, progressed))
    }
}
