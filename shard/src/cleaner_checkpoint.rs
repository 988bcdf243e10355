//! The cleaner checkpoint (`cleaner.checkpoint` in a partition directory): below which offset
//! the log was compacted (and so may have offset gaps, which recovery accepts there) and when
//! each cleaned region was first cleaned (for tombstone retention, `delete.retention.ms`).
//!
//! Format: magic `SLCC`, region count u32, CRC-32C of the body u32, version 1 u32, then the
//! body: `cleaned_upto` i64 and `(end, first cleaned at ms)` i64 pairs, all big-endian.
//! Written atomically (temp file, fsync, rename); an unreadable file makes the cleaner start
//! over, which is always safe.

use std::path::Path;

use crate::error::{Result, io_err};
use crate::io::{Storage, read_file, write_file_atomic};
use crate::limits::CLEANER_REGIONS_MAX;

/// The cleaner's checkpoint file in a partition directory.
pub(crate) const CHECKPOINT_FILE: &str = "cleaner.checkpoint";
const CHECKPOINT_MAGIC: &[u8; 4] = b"SLCC";

/// The cleaner's memory of what it cleaned and when (the checkpoint file's content).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CleanerState {
    /// Offsets below this were cleaned at least once; at and above is the dirty part.
    pub(crate) cleaned_upto: i64,
    /// `(end, first cleaned at ms)`: offsets below `end` (and at or above the previous
    /// entry's `end`) were first cleaned then. Both fields increase.
    pub(crate) regions: Vec<(i64, i64)>,
}

impl CleanerState {
    /// When the region holding `offset` was first cleaned; `None` if it is dirty.
    pub(crate) fn cleaned_at(&self, offset: i64) -> Option<i64> {
        if offset >= self.cleaned_upto {
            return None;
        }
        let i = self.regions.partition_point(|r| r.0 <= offset);
        self.regions.get(i).map(|r| r.1)
    }

    /// Records that everything below `end` is cleaned, the new part at `now_ms`.
    pub(crate) fn advance(&mut self, end: i64, now_ms: i64, delete_retention_ms: i64) {
        if end <= self.cleaned_upto {
            return;
        }
        self.cleaned_upto = end;
        let at = self.regions.last().map_or(now_ms, |r| r.1.max(now_ms));
        match self.regions.last_mut() {
            Some(last) if last.1 == at => last.0 = end,
            _ => self.regions.push((end, at)),
        }
        // Regions old enough that their tombstones may all go are merged into one.
        let expired = self
            .regions
            .partition_point(|r| now_ms.saturating_sub(r.1) > delete_retention_ms);
        if expired > 1 {
            self.regions.drain(..expired - 1);
        }
        while self.regions.len() > CLEANER_REGIONS_MAX {
            // Its offsets take the next region's (later) time: tombstones stay longer.
            self.regions.remove(0);
        }
    }

    /// Forgets cleaning at or after `offset` (after a truncation).
    pub(crate) fn truncate(&mut self, offset: i64) {
        if self.cleaned_upto <= offset {
            return;
        }
        self.cleaned_upto = offset;
        let i = self.regions.partition_point(|r| r.0 < offset);
        if i < self.regions.len() {
            self.regions[i].0 = offset;
            self.regions.truncate(i + 1);
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(8 + 16 * self.regions.len());
        body.extend_from_slice(&self.cleaned_upto.to_be_bytes());
        for (end, at) in &self.regions {
            body.extend_from_slice(&end.to_be_bytes());
            body.extend_from_slice(&at.to_be_bytes());
        }
        let mut out = Vec::with_capacity(16 + body.len());
        out.extend_from_slice(CHECKPOINT_MAGIC);
        out.extend_from_slice(&(self.regions.len() as u32).to_be_bytes());
        out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        out.extend_from_slice(&1u32.to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    fn decode(data: &[u8]) -> Option<Self> {
        if data.len() < 24 || &data[..4] != CHECKPOINT_MAGIC {
            return None;
        }
        let word = |i: usize| u32::from_be_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);
        let long = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&data[i..i + 8]);
            i64::from_be_bytes(a)
        };
        let count = word(4) as usize;
        if word(12) != 1 || data.len() != 24 + count.checked_mul(16)? {
            return None;
        }
        if crc32c::crc32c(&data[16..]) != word(8) {
            return None;
        }
        let mut s = CleanerState {
            cleaned_upto: long(16),
            regions: Vec::with_capacity(count),
        };
        for i in 0..count {
            let r = (long(24 + 16 * i), long(32 + 16 * i));
            if s.regions.last().is_some_and(|p| r.0 <= p.0 || r.1 < p.1) {
                return None;
            }
            s.regions.push(r);
        }
        if s.cleaned_upto < 0 || s.regions.last().is_some_and(|r| r.0 > s.cleaned_upto) {
            return None;
        }
        Some(s)
    }
}

/// Reads the cleaner checkpoint of a partition directory. Returns the state and the offset
/// below which segments may have compaction gaps: `cleaned_upto`, or every offset if the file
/// exists but is unreadable (then the cleaner starts over, which is always safe).
pub(crate) async fn load<S: Storage>(
    storage: &S,
    dir: &Path,
    names: &[String],
) -> (CleanerState, i64) {
    if !names.iter().any(|n| n == CHECKPOINT_FILE) {
        return (CleanerState::default(), 0);
    }
    let path = dir.join(CHECKPOINT_FILE);
    match read_file(storage, &path)
        .await
        .ok()
        .and_then(|d| CleanerState::decode(&d))
    {
        Some(s) => {
            let below = s.cleaned_upto;
            (s, below)
        }
        None => {
            tracing::warn!(path = %path.display(), "unreadable cleaner checkpoint; recleaning");
            (CleanerState::default(), i64::MAX)
        }
    }
}

/// Writes `state` as the checkpoint of partition directory `dir` (atomic).
pub(crate) async fn save<S: Storage>(storage: &S, dir: &Path, state: &CleanerState) -> Result<()> {
    let path = dir.join(CHECKPOINT_FILE);
    write_file_atomic(storage, &path, &state.encode())
        .await
        .map_err(io_err("write cleaner checkpoint", &path))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tombstone ages follow the regions; old regions merge; truncation lowers the state;
    /// the file format round-trips and refuses damage.
    #[test]
    fn cleaner_state() {
        let mut c = CleanerState::default();
        assert_eq!(c.cleaned_at(0), None);
        c.advance(100, 1_000, 500);
        c.advance(200, 1_200, 500);
        assert_eq!(c.cleaned_at(50), Some(1_000));
        assert_eq!(c.cleaned_at(150), Some(1_200));
        assert_eq!(c.cleaned_at(200), None);
        c.advance(300, 2_000, 500);
        assert_eq!(c.regions, vec![(200, 1_200), (300, 2_000)]);
        assert_eq!(c.cleaned_at(50), Some(1_200));
        let e = c.encode();
        assert_eq!(CleanerState::decode(&e), Some(c.clone()));
        for i in 0..e.len() {
            let mut m = e.clone();
            m[i] ^= 0x20;
            assert!(CleanerState::decode(&m).is_none(), "{i}");
            assert!(CleanerState::decode(&e[..i]).is_none());
        }
        c.truncate(250);
        assert_eq!(c.cleaned_upto, 250);
        assert_eq!(c.regions, vec![(200, 1_200), (250, 2_000)]);
        for i in 0..100 {
            c.advance(300 + i, 3_000 + i, 1 << 40);
        }
        assert!(c.regions.len() <= CLEANER_REGIONS_MAX);
    }
}
