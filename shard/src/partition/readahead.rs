//! Read-ahead for consumers reading from disk (issue 22).
//!
//! A consumer behind the cache fetches a window of each partition, then sends the next Fetch
//! only after the answer has crossed the network and been handed to its application. Without
//! read-ahead the disk sits idle for all that time, and the next Fetch waits for a whole
//! direct read again (Kafka gets this overlap from the kernel's page-cache read-ahead). So
//! after a read that came from disk, the broker calls [`Partition::read_ahead`] in a task of
//! its own: it reads the next window, from exactly where the last read stopped, into one slot
//! per partition, and the next read that starts there takes it instead of reading. The bytes
//! are only a faster copy of the file: every batch taken from the slot goes through the same
//! checks as one read from disk (CRC, offsets, leader epochs). The CRCs are checked by the
//! read-ahead itself, right after its read while the bytes are still in the CPU's cache (a
//! consume profile had the check at 9-12% of the broker's samples when it ran on a window
//! read ahead long before, out of memory); the reader then checks the rest on the same bytes.
//!
//! Bounds: one slot per partition, at most one window (the last read's budget), and all slots
//! of a core together at most a quarter of the core's batch cache (`BatchCache::
//! readahead_max`); past that no read-ahead starts. The slot is keyed by segment id and
//! position, so a compaction swap or a removed segment makes it miss; a truncation, which
//! keeps the segment id, empties it (and a read then in flight finds its ticket gone).

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use bytes::Bytes;
use sluice_net::record_batch::{RecordBatch, peek_batch_size};

use super::Partition;
use crate::io::{Storage, StorageFile};
use crate::notify::Notify;

/// Where a disk read stopped: the next read of a consumer going on in order asks for
/// `offset`, whose batch (or the first batch after it) starts at `pos` of segment `seg_base`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReadEnd {
    pub(crate) seg_base: i64,
    pub(crate) seg_id: u64,
    pub(crate) pos: u64,
    pub(crate) offset: i64,
    /// The segment's written bytes when the read ran: no read-ahead past them.
    pub(crate) limit: u64,
    /// The read's byte budget: the read-ahead window.
    pub(crate) window: usize,
}

/// A window read ahead: the bytes of segment `end.seg_base` from `end.pos`, and how many of
/// them, from the start, are whole batches whose CRC held; `None` while the read is in flight.
struct Slot {
    ticket: u64,
    end: ReadEnd,
    data: Option<(Bytes, usize)>,
    /// Reads elsewhere in the log since the window was read: another reader's, or its own
    /// reader's that moved on. At [`SLOT_MISSES_MAX`] it is dropped.
    misses: u32,
    _reserved: Reserved,
}

/// Reads elsewhere that a window read ahead survives. Two consumers of one partition at
/// different places alternate their reads: the first one's window survives the second one's
/// read between its own (which gets no read-ahead meanwhile, so neither reads twice); a
/// window whose reader went away is dropped after a few reads of the others.
const SLOT_MISSES_MAX: u32 = 4;

/// Bytes counted against the core's read-ahead bound until dropped.
struct Reserved {
    in_use: Rc<Cell<usize>>,
    bytes: usize,
}

impl Drop for Reserved {
    fn drop(&mut self) {
        self.in_use.set(self.in_use.get() - self.bytes);
    }
}

/// A partition's read-ahead state.
#[derive(Default)]
pub(crate) struct ReadAhead {
    state: RefCell<ReadAheadState>,
    /// Fires when a read-ahead finishes or is dropped.
    done: Notify,
}

#[derive(Default)]
struct ReadAheadState {
    /// Where the last disk read stopped; taken by the next read-ahead.
    end: Option<ReadEnd>,
    slot: Option<Slot>,
    next_ticket: u64,
}

impl ReadAhead {
    /// A disk read stopped at `end`.
    pub(crate) fn note_end(&self, end: ReadEnd) {
        self.state.borrow_mut().end = Some(end);
    }

    /// A read began: where an earlier one stopped no longer matters (a read served from
    /// memory must not start a read-ahead).
    pub(crate) fn reset_end(&self) {
        self.state.borrow_mut().end = None;
    }

    /// Whether a read-ahead would start now: a disk read stopped before its segment's
    /// written end, and no read-ahead is waiting to be taken.
    pub(crate) fn wanted(&self) -> bool {
        let st = self.state.borrow();
        st.slot.is_none() && st.end.is_some_and(|e| e.pos < e.limit)
    }

    /// Forgets everything read ahead (the log was truncated); a read in flight finds its
    /// ticket gone and drops what it read.
    pub(crate) fn clear(&self) {
        let mut st = self.state.borrow_mut();
        st.end = None;
        st.slot = None;
        drop(st);
        self.done.notify_all();
    }

    /// Where a read of segment `seg_base` (id `seg_id`) for `offset` starts when a window was
    /// read ahead for it: the position the last read stopped at, rather than the index entry
    /// before it (which would miss the window).
    pub(crate) fn start_for(&self, seg_base: i64, seg_id: u64, offset: i64) -> Option<u64> {
        let st = self.state.borrow();
        let e = st.slot.as_ref()?.end;
        (e.seg_base == seg_base && e.seg_id == seg_id && e.offset == offset).then_some(e.pos)
    }

    /// The window read ahead at `pos` of segment `seg_base` (id `seg_id`), if one was, and
    /// if it holds at least `need` bytes, with the length of its CRC-checked prefix; waits
    /// for one in flight. Takes it out of the slot. A finished window for another place
    /// counts a miss (see [`SLOT_MISSES_MAX`]).
    pub(crate) async fn take(
        &self,
        seg_base: i64,
        seg_id: u64,
        pos: u64,
        need: usize,
    ) -> Option<(Bytes, usize)> {
        loop {
            let seen = self.done.generation();
            {
                let mut st = self.state.borrow_mut();
                let slot = st.slot.as_ref()?;
                let here = slot.end.seg_base == seg_base
                    && slot.end.seg_id == seg_id
                    && slot.end.pos == pos;
                match (&slot.data, here) {
                    (Some(data), true) => {
                        let data = data.clone();
                        st.slot = None;
                        return (data.0.len() >= need).then_some(data);
                    }
                    (Some(_), false) => {
                        if let Some(s) = st.slot.as_mut() {
                            s.misses += 1;
                            if s.misses >= SLOT_MISSES_MAX {
                                st.slot = None;
                            }
                        }
                        return None;
                    }
                    (None, false) => return None,
                    (None, true) => {}
                }
            }
            self.done.wait(seen).await;
        }
    }

    /// Claims the slot for a read-ahead from the last read's end, within the core's bound
    /// (`in_use` of `max` bytes). `None` if there is nothing to read ahead, the slot is taken
    /// or the bound is reached.
    fn claim(&self, in_use: &Rc<Cell<usize>>, max: usize) -> Option<(u64, ReadEnd, usize)> {
        let mut st = self.state.borrow_mut();
        if st.slot.is_some() {
            return None;
        }
        let end = st.end.take()?;
        let len = usize::try_from(end.limit.saturating_sub(end.pos))
            .unwrap_or(usize::MAX)
            .min(end.window);
        if len == 0 || in_use.get() + len > max {
            return None;
        }
        in_use.set(in_use.get() + len);
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        st.slot = Some(Slot {
            ticket,
            end,
            data: None,
            misses: 0,
            _reserved: Reserved {
                in_use: in_use.clone(),
                bytes: len,
            },
        });
        Some((ticket, end, len))
    }

    /// The read-ahead `ticket` finished with `data` (`None`: it failed, and the next read
    /// reads for itself).
    fn finish(&self, ticket: u64, data: Option<(Bytes, usize)>) {
        let mut st = self.state.borrow_mut();
        if st.slot.as_ref().is_some_and(|s| s.ticket == ticket) {
            match data {
                Some(d) => {
                    if let Some(s) = st.slot.as_mut() {
                        s.data = Some(d);
                    }
                }
                None => st.slot = None,
            }
        }
        drop(st);
        self.done.notify_all();
    }
}

/// Ends a read-ahead that is dropped before it finished (its task was cancelled), so no
/// reader waits for it.
struct Finish<'a> {
    ahead: &'a ReadAhead,
    ticket: u64,
    data: Option<(Bytes, usize)>,
}

impl Drop for Finish<'_> {
    fn drop(&mut self) {
        self.ahead.finish(self.ticket, self.data.take());
    }
}

impl<S: Storage> Partition<S> {
    /// Whether the last read came from disk and stopped before the written end, so a
    /// [`Partition::read_ahead`] would read the next window.
    pub fn read_ahead_wanted(&self) -> bool {
        self.inner.readahead.wanted()
    }

    /// Reads the next window after the last disk read into the partition's read-ahead slot
    /// (see the module docs). Does nothing if there is nothing to read ahead or the core's
    /// read-ahead bound is reached. Meant to run in a task of its own, beside the answer.
    pub async fn read_ahead(&self) {
        let inner = &*self.inner;
        let (in_use, max) = {
            let cache = inner.cache.borrow();
            (cache.readahead_in_use.clone(), cache.readahead_max())
        };
        let Some((ticket, end, len)) = inner.readahead.claim(&in_use, max) else {
            return;
        };
        let mut finish = Finish {
            ahead: &inner.readahead,
            ticket,
            data: None,
        };
        let Ok(Some(file)) = self.segment_handle(end.seg_base).await else {
            return;
        };
        let same = inner
            .state
            .borrow()
            .segments
            .get(&end.seg_base)
            .is_some_and(|s| s.id == end.seg_id);
        if !same {
            return;
        }
        finish.data = file.read_at(end.pos, len).await.ok().map(|d| {
            let checked = crc_checked_prefix(&d);
            (d, checked)
        });
    }
}

/// Bytes at the start of `window` that are whole batches with a good magic and CRC. The first
/// batch that is cut off by the window's end or fails stops it: the reader checks it in full
/// (and reports it if it is corrupt).
fn crc_checked_prefix(window: &Bytes) -> usize {
    let mut at = 0;
    while let Ok(Some(size)) = peek_batch_size(&window[at..]) {
        if at + size > window.len() {
            break;
        }
        let good = RecordBatch::new(window.slice(at..at + size))
            .is_ok_and(|b| b.validate_stored().is_ok());
        if !good {
            break;
        }
        at += size;
    }
    at
}
