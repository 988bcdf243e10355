//! Sparse offset and time index of one segment, in memory and in its `.index`/`.timeindex`
//! files.
//!
//! An offset entry `(relative base offset, position)` points at the start of a batch; entries
//! are added for the first batch of the segment and then every `index_interval_bytes`. A time
//! entry `(running max timestamp, relative offset, position)` is added with an offset entry
//! when the running max timestamp grew. Both vectors are strictly increasing in every field.
//!
//! File format (big-endian): a 16-byte header — magic (4), entry count (4), CRC-32C of the
//! entries (4), entry size (4) — then the entries. A file whose header, CRC or ordering is off,
//! or whose positions point past the segment, is ignored and the index rebuilt by scanning.

use bytes::{BufMut, BytesMut};

const OFFSET_MAGIC: &[u8; 4] = b"SLXO";
const TIME_MAGIC: &[u8; 4] = b"SLXT";
const HEADER_BYTES: usize = 16;
const OFFSET_ENTRY_BYTES: usize = 8;
const TIME_ENTRY_BYTES: usize = 16;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SparseIndex {
    /// (offset - segment base, byte position of the batch).
    pub(crate) offsets: Vec<(u32, u32)>,
    /// (max timestamp of all batches up to this one, offset - segment base, position).
    pub(crate) times: Vec<(i64, u32, u32)>,
    pub(crate) bytes_since_entry: u64,
}

impl SparseIndex {
    /// Records a batch appended at `position`; `rel` is its base offset minus the segment base.
    pub(crate) fn on_batch(
        &mut self,
        rel: u32,
        position: u32,
        size: u64,
        max_ts_so_far: i64,
        interval: u64,
    ) {
        if self.offsets.is_empty() || self.bytes_since_entry >= interval {
            if let Some(&(last_rel, last_pos)) = self.offsets.last() {
                assert!(rel > last_rel, "index offsets must increase");
                assert!(position > last_pos, "index positions must increase");
            }
            self.offsets.push((rel, position));
            if self.times.last().is_none_or(|t| max_ts_so_far > t.0) {
                self.times.push((max_ts_so_far, rel, position));
            }
            self.bytes_since_entry = 0;
        }
        self.bytes_since_entry += size;
    }

    /// The last entry whose base is at or before `rel`, as (rel, position); (0, 0) if none.
    pub(crate) fn entry_for(&self, rel: u32) -> (u32, u32) {
        let i = self.offsets.partition_point(|e| e.0 <= rel);
        if i == 0 { (0, 0) } else { self.offsets[i - 1] }
    }

    /// Position of the last indexed batch whose base is at or before `rel` (0 if none).
    pub(crate) fn position_for(&self, rel: u32) -> u32 {
        let i = self.offsets.partition_point(|e| e.0 <= rel);
        if i == 0 { 0 } else { self.offsets[i - 1].1 }
    }

    /// Position from which a scan finds the first batch with a timestamp >= `ts`: the last
    /// entry whose running max is still below `ts` (every batch up to it is older).
    pub(crate) fn position_for_time(&self, ts: i64) -> u32 {
        let i = self.times.partition_point(|e| e.0 < ts);
        if i == 0 { 0 } else { self.times[i - 1].2 }
    }

    /// Drops entries at or after `position` (after a truncation).
    pub(crate) fn truncate_at(&mut self, position: u32) {
        self.offsets.retain(|e| e.1 < position);
        self.times.retain(|e| e.2 < position);
        self.bytes_since_entry = u64::MAX / 2;
    }

    pub(crate) fn encode_offsets(&self) -> Vec<u8> {
        let mut body = BytesMut::with_capacity(self.offsets.len() * OFFSET_ENTRY_BYTES);
        for &(r, p) in &self.offsets {
            body.put_u32(r);
            body.put_u32(p);
        }
        frame(OFFSET_MAGIC, self.offsets.len(), &body, OFFSET_ENTRY_BYTES)
    }

    pub(crate) fn encode_times(&self) -> Vec<u8> {
        let mut body = BytesMut::with_capacity(self.times.len() * TIME_ENTRY_BYTES);
        for &(t, r, p) in &self.times {
            body.put_i64(t);
            body.put_u32(r);
            body.put_u32(p);
        }
        frame(TIME_MAGIC, self.times.len(), &body, TIME_ENTRY_BYTES)
    }

    /// Decodes both files; `None` if either is malformed or points past `segment_bytes`.
    pub(crate) fn decode(offsets: &[u8], times: &[u8], segment_bytes: u64) -> Option<Self> {
        let ob = unframe(OFFSET_MAGIC, offsets, OFFSET_ENTRY_BYTES)?;
        let tb = unframe(TIME_MAGIC, times, TIME_ENTRY_BYTES)?;
        let mut idx = SparseIndex::default();
        for e in ob.chunks_exact(OFFSET_ENTRY_BYTES) {
            let r = u32::from_be_bytes([e[0], e[1], e[2], e[3]]);
            let p = u32::from_be_bytes([e[4], e[5], e[6], e[7]]);
            if let Some(&(lr, lp)) = idx.offsets.last() {
                if r <= lr || p <= lp {
                    return None;
                }
            } else if p != 0 {
                // The first batch is at position 0; after compaction its offset may be past the
                // segment base (`r > 0`).
                return None;
            }
            if u64::from(p) >= segment_bytes {
                return None;
            }
            idx.offsets.push((r, p));
        }
        for e in tb.chunks_exact(TIME_ENTRY_BYTES) {
            let mut t = [0u8; 8];
            t.copy_from_slice(&e[..8]);
            let t = i64::from_be_bytes(t);
            let r = u32::from_be_bytes([e[8], e[9], e[10], e[11]]);
            let p = u32::from_be_bytes([e[12], e[13], e[14], e[15]]);
            if let Some(&(lt, lr, lp)) = idx.times.last()
                && (t <= lt || r <= lr || p <= lp)
            {
                return None;
            }
            if u64::from(p) >= segment_bytes || idx.offsets.binary_search(&(r, p)).is_err() {
                return None;
            }
            idx.times.push((t, r, p));
        }
        if idx.offsets.is_empty() != (segment_bytes == 0) {
            return None;
        }
        // Unknown distance to the next entry: force one on the next append.
        idx.bytes_since_entry = u64::MAX / 2;
        Some(idx)
    }
}

fn frame(magic: &[u8; 4], count: usize, body: &[u8], entry: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + body.len());
    out.extend_from_slice(magic);
    out.extend_from_slice(&(count as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(body).to_be_bytes());
    out.extend_from_slice(&(entry as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn unframe<'a>(magic: &[u8; 4], data: &'a [u8], entry: usize) -> Option<&'a [u8]> {
    if data.len() < HEADER_BYTES || &data[..4] != magic {
        return None;
    }
    let word = |i: usize| u32::from_be_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);
    let count = word(4) as usize;
    if word(12) as usize != entry || data.len() != HEADER_BYTES + count.checked_mul(entry)? {
        return None;
    }
    let body = &data[HEADER_BYTES..];
    (crc32c::crc32c(body) == word(8)).then_some(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entries round-trip through the file format; flipped bytes and bad bounds are refused.
    #[test]
    fn roundtrip_and_reject_garbage() {
        let mut idx = SparseIndex::default();
        let mut pos = 0u32;
        for i in 0..100u32 {
            idx.on_batch(i * 3, pos, 1000, i64::from(i) * 10, 4096);
            pos += 1000;
        }
        let o = idx.encode_offsets();
        let t = idx.encode_times();
        let back = SparseIndex::decode(&o, &t, u64::from(pos)).unwrap();
        assert_eq!(back.offsets, idx.offsets);
        assert_eq!(back.times, idx.times);
        assert_eq!(idx.position_for(0), 0);
        assert_eq!(idx.position_for(14), 0);
        assert_eq!(idx.position_for(15), 5000);
        assert_eq!(idx.position_for_time(0), 0);
        assert_eq!(idx.position_for_time(55), 5000);
        assert!(SparseIndex::decode(&o, &t, 5000).is_none());
        for i in 0..o.len() {
            let mut m = o.clone();
            m[i] ^= 0x40;
            assert!(SparseIndex::decode(&m, &t, u64::from(pos)).is_none(), "{i}");
        }
        assert!(SparseIndex::decode(b"garbage", &t, 10).is_none());
        assert!(SparseIndex::decode(&[], &[], 10).is_none());
    }
}
