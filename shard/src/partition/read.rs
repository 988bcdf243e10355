//! The fetch path: committed batches from the per-core cache, the unwritten queue, or the
//! segment files (aligned DMA reads, every batch CRC-checked and its offset and leader epoch
//! checked against the index and the leader epoch cache); and the timestamp search behind
//! ListOffsets.

use bytes::Bytes;
use sluice_net::record_batch::{self, Batches, Compression, RecordBatch, peek_batch_size};

use super::{Partition, ReadResult, corrupt};
use crate::cache::collect_run;
use crate::error::{Result, ShardError, io_err};
use crate::io::{Storage, StorageFile};
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

    /// Like [`Partition::read`] but up to the log end offset (for follower fetches).
    pub async fn read_to_log_end(&self, offset: i64, max_bytes: usize) -> Result<ReadResult> {
        let upto = self.inner.state.borrow().ends.log_end();
        self.read_upto(offset, max_bytes, upto).await
    }

    async fn read_upto(&self, offset: i64, max_bytes: usize, upto: i64) -> Result<ReadResult> {
        let inner = &*self.inner;
        let (mut result, from_memory) = {
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
            let result = ReadResult {
                batches: Vec::new(),
                high_watermark: st.ends.high_watermark(),
                log_start_offset: st.log_start_offset,
                log_end_offset: st.ends.log_end(),
            };
            if offset >= upto {
                return Ok(result);
            }
            let mem = inner
                .cache
                .borrow()
                .read(inner.id, offset, max_bytes, upto)
                .or_else(|| {
                    if offset >= st.ends.written_end() {
                        collect_run(&st.unwritten, offset, max_bytes, upto)
                    } else {
                        None
                    }
                });
            (result, mem)
        };
        let mut last_from_disk = from_memory.is_none();
        {
            let mut cache = inner.cache.borrow_mut();
            if last_from_disk {
                cache.stats.cache_misses += 1;
            } else {
                cache.stats.cache_hits += 1;
            }
        }
        let mut out = match from_memory {
            Some(b) => b,
            None => self.read_disk(offset, max_bytes, upto, true).await?,
        };
        // A read may span disk, the cache and the unwritten queue: continue where the first
        // source stopped until the budget or the visible end is reached.
        loop {
            let total: usize = out.iter().map(Bytes::len).sum();
            let Some(last) = out.last() else { break };
            let next = batch_next_offset(last);
            if next >= upto || total >= max_bytes {
                break;
            }
            let more = {
                let st = inner.state.borrow();
                inner
                    .cache
                    .borrow()
                    .read(inner.id, next, max_bytes - total, upto)
                    .or_else(|| {
                        (next >= st.ends.written_end())
                            .then(|| collect_run(&st.unwritten, next, max_bytes - total, upto))
                            .flatten()
                    })
            };
            let more = match more {
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
        result.batches = out;
        Ok(result)
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
        let inner = &*self.inner;
        let mut out: Vec<Bytes> = Vec::new();
        let mut total = 0usize;
        let mut cur = offset;
        loop {
            let (base, id, mut pos, limit, next_offset, mut expect, epochs) = {
                let st = inner.state.borrow();
                // Segments are contiguous, so the last one starting at or before `cur` holds
                // it, unless `cur` is at the log end.
                let Some((&base, seg)) = st.segments.range(..=cur).next_back() else {
                    return Ok(out);
                };
                if cur >= seg.next_offset || cur >= st.ends.written_end() {
                    return Ok(out);
                }
                if !seg.file.exists() {
                    return Ok(out);
                }
                let rel = (cur - base).clamp(0, i64::from(u32::MAX)) as u32;
                let (entry_rel, pos) = seg.index.entry_for(rel);
                (
                    base,
                    seg.id,
                    u64::from(pos),
                    seg.written_bytes,
                    seg.next_offset,
                    base + i64::from(entry_rel),
                    st.leader_epochs.clone(),
                )
            };
            let Some(file) = self.segment_handle(base).await? else {
                return Ok(out);
            };
            // The segment may have been replaced while its file was opening (a compaction
            // swap): the positions above belong to the old one, so look it up again.
            if self.inner.state.borrow().segments.get(&base).map(|s| s.id) != Some(id) {
                continue;
            }
            let path = segment_file(&inner.dir, base, "log");
            let mut data = Bytes::new();
            let mut data_pos = pos;
            while pos < limit {
                let window = max_bytes
                    .saturating_sub(total)
                    .max(inner.shard_config.read_bytes_min)
                    .saturating_add(inner.config.index_interval_bytes as usize);
                let at = (pos - data_pos) as usize;
                let size = match peek_batch_size(data.get(at..).unwrap_or(&[])) {
                    Ok(Some(s)) => Some(s),
                    Ok(None) => None,
                    Err(e) => return Err(corrupt(&path, pos, e.to_string())),
                };
                let have = data.len().saturating_sub(at);
                // Stop before reading a batch that cannot be returned anyway.
                if let Some(sz) = size {
                    if (!out.is_empty() || !first_whole) && total + sz > max_bytes {
                        let mut hdr_base = [0u8; 8];
                        hdr_base.copy_from_slice(&data[at..at + 8]);
                        if i64::from_be_bytes(hdr_base) >= offset || !out.is_empty() {
                            return Ok(out);
                        }
                    }
                }
                if size.is_none_or(|s| s > have) {
                    let need = size.unwrap_or(record_batch::HEADER_BYTES);
                    if pos + need as u64 > limit {
                        return Err(corrupt(&path, pos, "batch runs past the segment end"));
                    }
                    let want = need.max(window).min((limit - pos) as usize);
                    data = file
                        .read_at(pos, want)
                        .await
                        .map_err(io_err("read", &path))?;
                    data_pos = pos;
                    if data.len() < need {
                        return Err(corrupt(&path, pos, "short read inside the segment"));
                    }
                    continue;
                }
                let size = size.unwrap_or(0);
                let batch = RecordBatch::new(data.slice(at..at + size))
                    .map_err(|e| corrupt(&path, pos, e.to_string()))?;
                batch
                    .validate_stored()
                    .map_err(|e| corrupt(&path, pos, e.to_string()))?;
                // baseOffset and partitionLeaderEpoch are outside the CRC: check them against
                // what the index and the leader epoch cache say. Offsets increase; compaction
                // may have left gaps between batches.
                if batch.base_offset() < expect || batch.last_offset() >= next_offset {
                    return Err(corrupt(
                        &path,
                        pos,
                        format!(
                            "batch base offset {} where {expect} was expected",
                            batch.base_offset()
                        ),
                    ));
                }
                let i = epochs.partition_point(|e| e.1 <= batch.base_offset());
                if i > 0 && epochs[i - 1].0 != batch.partition_leader_epoch() {
                    return Err(corrupt(
                        &path,
                        pos,
                        format!(
                            "batch leader epoch {} where {} was expected",
                            batch.partition_leader_epoch(),
                            epochs[i - 1].0
                        ),
                    ));
                }
                expect = batch.last_offset() + 1;
                pos += size as u64;
                if batch.last_offset() < offset {
                    continue;
                }
                if batch.base_offset() >= upto || (!out.is_empty() && total + size > max_bytes) {
                    return Ok(out);
                }
                total += size;
                out.push(batch.into_bytes());
            }
            cur = next_offset;
        }
    }

    /// The first offset whose record timestamp is at or after `timestamp_ms`, with that
    /// timestamp, among committed records; `None` if there is none (ListOffsets answers the
    /// log end then). Flushes first so the search sees the disk only.
    pub async fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Option<(i64, i64)>> {
        self.check_usable()?;
        let _g = self.inner.io_lock.lock().await;
        self.flush_locked().await?;
        let inner = &*self.inner;
        let (start_offset, hw, cands) = {
            let st = inner.state.borrow();
            let cands: Vec<(i64, u64)> = st
                .segments
                .iter()
                .filter(|(_, s)| {
                    s.max_timestamp >= timestamp_ms && s.next_offset > st.log_start_offset
                })
                .map(|(b, s)| (*b, u64::from(s.index.position_for_time(timestamp_ms))))
                .collect();
            (st.log_start_offset, st.ends.high_watermark(), cands)
        };
        for (base, pos) in cands {
            let mut cursor = pos;
            let Some(file) = self.segment_handle(base).await? else {
                continue;
            };
            loop {
                let limit = {
                    let st = inner.state.borrow();
                    let Some(seg) = st.segments.get(&base) else {
                        break;
                    };
                    seg.written_bytes
                };
                if cursor >= limit {
                    break;
                }
                let path = segment_file(&inner.dir, base, "log");
                let want = (limit - cursor).min(1 << 20) as usize;
                let data = file
                    .read_at(cursor, want)
                    .await
                    .map_err(io_err("read", &path))?;
                let mut progressed = 0usize;
                for b in Batches::new(data.clone()) {
                    let Ok(b) = b else { break };
                    b.validate_stored()
                        .map_err(|e| corrupt(&path, cursor + progressed as u64, e.to_string()))?;
                    progressed += b.size_bytes();
                    if b.base_offset() >= hw {
                        return Ok(None);
                    }
                    if b.max_timestamp() < timestamp_ms || b.last_offset() < start_offset {
                        continue;
                    }
                    if b.compression() == Ok(Compression::None) {
                        if let Ok(records) = b.records() {
                            for r in records.flatten() {
                                let o = b.base_offset() + i64::from(r.offset_delta);
                                let ts = b.base_timestamp() + r.timestamp_delta;
                                if ts >= timestamp_ms && o >= start_offset && o < hw {
                                    return Ok(Some((o, ts)));
                                }
                            }
                            continue;
                        }
                    }
                    return Ok(Some((b.base_offset().max(start_offset), b.max_timestamp())));
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
                    let b =
                        RecordBatch::new(d).map_err(|e| corrupt(&path, cursor, e.to_string()))?;
                    b.validate_stored()
                        .map_err(|e| corrupt(&path, cursor, e.to_string()))?;
                    if b.base_offset() >= hw {
                        return Ok(None);
                    }
                    if b.max_timestamp() >= timestamp_ms && b.last_offset() >= start_offset {
                        return Ok(Some((b.base_offset().max(start_offset), b.max_timestamp())));
                    }
                    progressed = need;
                }
                cursor += progressed as u64;
            }
        }
        Ok(None)
    }
}
