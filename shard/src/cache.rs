//! The per-core batch cache: recent batches of every partition on the core, bounded in bytes
//! across all of them, evicted oldest-inserted first.
//!
//! Invariant: for each partition, the cached batches are a contiguous, increasing run of the
//! log ending at its log end offset (appends push at the back, eviction pops at the front,
//! truncation pops at the back). So a read whose offset is inside the run can be served
//! entirely from memory. Only used on its own core, and never borrowed across an `.await`.

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use bytes::Bytes;

#[derive(Debug, Clone)]
pub(crate) struct CachedBatch {
    pub(crate) base_offset: i64,
    pub(crate) last_offset: i64,
    pub(crate) bytes: Bytes,
}

/// Upper bounds (µs) of the fdatasync latency histogram; a last bucket counts the rest.
pub const FSYNC_BOUNDS_US: [u64; 14] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000,
];

/// Counters of one core's storage, for metrics (plain numbers: only its own core touches them).
#[derive(Debug, Clone, Default)]
pub struct ShardStats {
    /// Reads answered from memory (cache or unwritten queue) / from disk.
    pub cache_hits: u64,
    pub cache_misses: u64,
    /// fdatasync latency: counts per [`FSYNC_BOUNDS_US`] bucket (+1 overflow), total µs, count.
    pub fsync_buckets: Vec<u64>,
    pub fsync_sum_us: u64,
    pub fsync_count: u64,
}

impl ShardStats {
    pub(crate) fn fsync(&mut self, took: std::time::Duration) {
        if self.fsync_buckets.is_empty() {
            self.fsync_buckets = vec![0; FSYNC_BOUNDS_US.len() + 1];
        }
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let i = FSYNC_BOUNDS_US
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(FSYNC_BOUNDS_US.len());
        self.fsync_buckets[i] += 1;
        self.fsync_sum_us = self.fsync_sum_us.saturating_add(us);
        self.fsync_count += 1;
    }
}

pub(crate) struct BatchCache {
    /// Counters of the core's storage (kept here: the cache is the one object every partition
    /// of the core shares).
    pub(crate) stats: ShardStats,
    bytes_max: usize,
    bytes: usize,
    parts: HashMap<u64, VecDeque<CachedBatch>>,
    /// Insertion order across partitions, for eviction. May hold stale entries after a
    /// truncation; those are skipped.
    order: VecDeque<(u64, i64)>,
    /// Batches in `parts`, all partitions together.
    batches: usize,
    /// Bytes the core's partitions hold read ahead of their next fetch (issue 22), bounded
    /// by [`BatchCache::readahead_max`].
    pub(crate) readahead_in_use: Rc<Cell<usize>>,
}

impl BatchCache {
    pub(crate) fn new(bytes_max: usize) -> Self {
        Self {
            stats: ShardStats::default(),
            bytes_max,
            bytes: 0,
            parts: HashMap::new(),
            order: VecDeque::new(),
            batches: 0,
            readahead_in_use: Rc::default(),
        }
    }

    /// The most all of the core's partitions may hold read ahead: a quarter of the cache.
    pub(crate) fn readahead_max(&self) -> usize {
        self.bytes_max / 4
    }

    pub(crate) fn insert(&mut self, part: u64, batch: CachedBatch) {
        if batch.bytes.len() > self.bytes_max {
            self.remove_partition(part);
            return;
        }
        let q = self.parts.entry(part).or_default();
        if let Some(b) = q.back() {
            assert!(
                batch.base_offset > b.last_offset,
                "cache must stay increasing"
            );
            if batch.base_offset != b.last_offset + 1 {
                // Not contiguous (a gap after compaction or a truncation): restart the run.
                self.bytes -= q.iter().map(|b| b.bytes.len()).sum::<usize>();
                self.batches -= q.len();
                q.clear();
            }
        }
        self.bytes += batch.bytes.len();
        self.order.push_back((part, batch.base_offset));
        q.push_back(batch);
        self.batches += 1;
        while self.bytes > self.bytes_max {
            let Some((p, base)) = self.order.pop_front() else {
                break;
            };
            if let Some(q) = self.parts.get_mut(&p)
                && q.front().is_some_and(|b| b.base_offset == base)
                && let Some(b) = q.pop_front()
            {
                self.bytes -= b.bytes.len();
                self.batches -= 1;
            }
        }
        // Counted, not summed over the partitions: a core may have thousands.
        if self.order.len() > 4 * self.batches + 1024 {
            self.compact_order();
        }
    }

    fn compact_order(&mut self) {
        let parts = &self.parts;
        self.order.retain(|(p, base)| {
            parts
                .get(p)
                .is_some_and(|q| q.iter().any(|b| b.base_offset == *base))
        });
    }

    /// Batches from the one holding `offset`, whole, until `max_bytes` (the first is always
    /// whole), stopping before any batch whose base is at or past `upto`. `None` if `offset`
    /// is not inside the cached run.
    pub(crate) fn read(
        &self,
        part: u64,
        offset: i64,
        max_bytes: usize,
        upto: i64,
    ) -> Option<Vec<Bytes>> {
        let q = self.parts.get(&part)?;
        collect_run(q, offset, max_bytes, upto)
    }

    /// Drops cached batches whose last offset is at or after `offset`.
    pub(crate) fn truncate(&mut self, part: u64, offset: i64) {
        if let Some(q) = self.parts.get_mut(&part) {
            while q.back().is_some_and(|b| b.last_offset >= offset) {
                if let Some(b) = q.pop_back() {
                    self.bytes -= b.bytes.len();
                    self.batches -= 1;
                }
            }
        }
    }

    /// Drops cached batches entirely below `offset`.
    pub(crate) fn remove_before(&mut self, part: u64, offset: i64) {
        if let Some(q) = self.parts.get_mut(&part) {
            while q.front().is_some_and(|b| b.last_offset < offset) {
                if let Some(b) = q.pop_front() {
                    self.bytes -= b.bytes.len();
                    self.batches -= 1;
                }
            }
        }
    }

    pub(crate) fn remove_partition(&mut self, part: u64) {
        if let Some(q) = self.parts.remove(&part) {
            self.bytes -= q.iter().map(|b| b.bytes.len()).sum::<usize>();
            self.batches -= q.len();
        }
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

/// Shared by the cache and the unwritten-batch queue: serve a read from an increasing run.
pub(crate) fn collect_run(
    q: &VecDeque<CachedBatch>,
    offset: i64,
    max_bytes: usize,
    upto: i64,
) -> Option<Vec<Bytes>> {
    let front = q.front()?;
    if offset < front.base_offset {
        return None;
    }
    let back = q.back()?;
    if offset > back.last_offset {
        return None;
    }
    let start = q.partition_point(|b| b.last_offset < offset);
    let mut out = Vec::new();
    let mut total = 0usize;
    for b in q.iter().skip(start) {
        if b.base_offset >= upto {
            break;
        }
        if !out.is_empty() && total + b.bytes.len() > max_bytes {
            break;
        }
        total += b.bytes.len();
        out.push(b.bytes.clone());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(base: i64, last: i64, len: usize) -> CachedBatch {
        CachedBatch {
            base_offset: base,
            last_offset: last,
            bytes: Bytes::from(vec![0u8; len]),
        }
    }

    /// The byte bound holds across partitions and reads inside the run are served.
    #[test]
    fn bounded_and_contiguous() {
        let mut c = BatchCache::new(1000);
        for i in 0..10 {
            c.insert(1, b(i * 10, i * 10 + 9, 100));
            c.insert(2, b(i * 10, i * 10 + 9, 100));
            assert!(c.bytes() <= 1000);
            assert_eq!(
                c.batches,
                c.parts.values().map(VecDeque::len).sum::<usize>()
            );
        }
        assert!(c.read(1, 0, 1 << 20, i64::MAX).is_none());
        let r = c.read(1, 95, 150, i64::MAX).unwrap();
        assert_eq!(r.len(), 1);
        assert!(c.read(2, 99, 1 << 20, 90).unwrap().is_empty());
        c.truncate(1, 85);
        assert!(c.read(1, 85, 1 << 20, i64::MAX).is_none());
        assert_eq!(
            c.batches,
            c.parts.values().map(VecDeque::len).sum::<usize>()
        );
        c.insert(1, b(80, 80, 10));
        assert_eq!(c.read(1, 80, 1, i64::MAX).unwrap().len(), 1);
    }
}
