//! The per-core cache of open segment files: closed (sealed, non-active) segments of every
//! partition on the core keep their file open only while it is in here, and at most
//! `ShardConfig::open_segment_files_max` files are, evicted least recently used first.
//!
//! Why: each open segment costs a file descriptor, and a broker with many partitions, each
//! with many segments, would run out of them. The active segment of each partition is not in
//! here: the partition pins it (it is written on every append). Index files hold no
//! descriptor (indexes live in memory; their files are opened only to load or write them).
//!
//! Handles are `Rc`s: a read that took a handle keeps reading it even if the cache evicts it
//! meanwhile; the file is closed when the last user drops it. So the number of open closed-
//! segment files is at most the bound plus the reads in flight.
//!
//! Entries are keyed by (partition id, segment id); a segment id is unique on the core for
//! its whole life (see `Segment::id`), so a removed segment's entry can never be mistaken for
//! a later segment at the same base offset. Only used on its own core, never borrowed across
//! an `.await`.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use crate::io::StorageFile;

/// Closes handles the file cache let go of, unless a reader still holds one (then it is
/// closed when that reader drops it). A failed close loses nothing: the file was synced
/// when its segment was sealed.
pub(crate) async fn close_evicted<F: StorageFile>(evicted: Vec<Rc<F>>) {
    for f in evicted {
        if let Ok(f) = Rc::try_unwrap(f)
            && let Err(e) = f.close().await
        {
            tracing::warn!(error = %e, "closing a segment file failed");
        }
    }
}

pub(crate) struct FileCache<F> {
    files_max: usize,
    /// Uses so far; the tick of an entry's last use orders eviction.
    tick: u64,
    files: HashMap<(u64, u64), (Rc<F>, u64)>,
    /// Last-use tick -> key, oldest first.
    lru: BTreeMap<u64, (u64, u64)>,
    /// Files opened because they were not here (for metrics and tests).
    pub(crate) opens: u64,
}

impl<F> FileCache<F> {
    pub(crate) fn new(files_max: usize) -> Self {
        Self {
            files_max,
            tick: 0,
            files: HashMap::new(),
            lru: BTreeMap::new(),
            opens: 0,
        }
    }

    /// Files held now (never more than the bound).
    pub(crate) fn len(&self) -> usize {
        self.files.len()
    }

    /// The cached handle of segment `segment` of partition `part`, marked as just used.
    pub(crate) fn get(&mut self, part: u64, segment: u64) -> Option<Rc<F>> {
        let key = (part, segment);
        let (file, used) = self.files.get_mut(&key)?;
        self.tick += 1;
        let old = std::mem::replace(used, self.tick);
        let file = file.clone();
        assert!(
            self.lru.remove(&old) == Some(key),
            "file cache order lost a key"
        );
        self.lru.insert(self.tick, key);
        Some(file)
    }

    /// Caches a freshly opened handle; returns the handles evicted to make room (the caller
    /// closes those it holds the last reference to). With a bound of 0 nothing is kept and
    /// `file` itself comes back.
    pub(crate) fn insert(&mut self, part: u64, segment: u64, file: Rc<F>) -> Vec<Rc<F>> {
        let mut evicted = Vec::new();
        if let Some(old) = self.remove(part, segment) {
            evicted.push(old);
        }
        if self.files_max == 0 {
            evicted.push(file);
            return evicted;
        }
        while self.files.len() >= self.files_max {
            let Some((_, key)) = self.lru.pop_first() else {
                break;
            };
            let (f, _) = self.files.remove(&key).expect("lru keys are cached");
            evicted.push(f);
        }
        self.tick += 1;
        self.files.insert((part, segment), (file, self.tick));
        self.lru.insert(self.tick, (part, segment));
        assert!(self.files.len() <= self.files_max);
        assert!(self.files.len() == self.lru.len());
        evicted
    }

    /// Forgets one segment's handle (the segment was removed or is pinned again).
    pub(crate) fn remove(&mut self, part: u64, segment: u64) -> Option<Rc<F>> {
        let (f, used) = self.files.remove(&(part, segment))?;
        assert!(
            self.lru.remove(&used).is_some(),
            "file cache order lost a key"
        );
        Some(f)
    }

    /// Forgets every handle of a partition (it closed).
    pub(crate) fn remove_partition(&mut self, part: u64) -> Vec<Rc<F>> {
        let keys: Vec<(u64, u64)> = self.files.keys().filter(|k| k.0 == part).copied().collect();
        keys.into_iter()
            .filter_map(|(p, s)| self.remove(p, s))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The least recently used entry goes first; a `get` refreshes an entry; a bound of 0
    /// keeps nothing; removing a partition removes only its entries.
    #[test]
    fn lru_order_and_bound() {
        let mut c = FileCache::new(2);
        assert!(c.insert(1, 10, Rc::new("a")).is_empty());
        assert!(c.insert(1, 11, Rc::new("b")).is_empty());
        assert_eq!(c.get(1, 10).as_deref(), Some(&"a"));
        let ev = c.insert(2, 10, Rc::new("c"));
        assert_eq!(ev.iter().map(|f| **f).collect::<Vec<_>>(), ["b"]);
        assert!(c.get(1, 11).is_none());
        assert_eq!(c.len(), 2);
        let ev = c.insert(2, 10, Rc::new("d"));
        assert_eq!(ev.iter().map(|f| **f).collect::<Vec<_>>(), ["c"]);
        assert_eq!(c.get(2, 10).as_deref(), Some(&"d"));
        assert_eq!(c.remove_partition(1).len(), 1);
        assert_eq!(c.len(), 1);
        let mut z = FileCache::new(0);
        assert_eq!(z.insert(1, 1, Rc::new("x")).len(), 1);
        assert_eq!(z.len(), 0);
        assert!(z.get(1, 1).is_none());
    }
}
