//! Direct reads handed out as `Bytes` without a copy (issue 22: the copy out of glommio's read
//! buffer was 14-16% of the broker's samples in a consume from disk).
//!
//! glommio's read buffer (`ReadResult`) belongs to its core: it is counted with `Rc` and gives
//! its memory back to its executor's allocator when dropped. The bytes of a fetch answer may
//! cross cores, so they cannot own it. Instead the buffer stays in a list on its own thread,
//! and the `Bytes` own a pointer into it plus a token (`Arc<()>`). When every clone of the
//! token is gone (the answer was sent, on whatever core), the thread drops the buffer at its
//! next sweep. The thread never writes to a lent buffer, so other threads only ever read
//! memory that stays valid and unchanged while they hold a token.
//!
//! Sweeps run when a read is lent: once the list has doubled since the last sweep, or when
//! [`SWEEP_BYTES`] were lent since it. So buffers already released wait at most that long, and
//! a sweep's cost (one check per buffer) is spread over the reads that made the list grow.

use std::cell::RefCell;
use std::sync::Arc;

use bytes::Bytes;
use glommio::io::ReadResult;

/// Bytes lent since the last sweep that make the next read sweep.
const SWEEP_BYTES: usize = 32 << 20;

/// Buffers in the list that make the next read sweep, at least.
const SWEEP_ITEMS_MIN: usize = 64;

struct Loan {
    token: Arc<()>,
    buf: ReadResult,
    /// The executor that read it: a buffer of another (one that ran earlier on this thread and
    /// has ended) is never dropped here, only forgotten, as its allocator may be gone.
    executor: usize,
}

#[derive(Default)]
struct Loans {
    items: Vec<Loan>,
    /// Buffers left by the last sweep.
    kept: usize,
    /// Bytes lent since the last sweep.
    lent_bytes: usize,
}

impl Loans {
    fn sweep_due(&self) -> bool {
        self.items.len() >= (2 * self.kept).max(SWEEP_ITEMS_MIN) || self.lent_bytes >= SWEEP_BYTES
    }

    /// Drops every buffer whose token is no longer held elsewhere.
    fn sweep(&mut self, executor: usize) {
        let mut i = 0;
        while i < self.items.len() {
            let item = &mut self.items[i];
            if item.executor != executor {
                let gone = self.items.swap_remove(i);
                std::mem::forget(gone.buf);
            } else if Arc::get_mut(&mut item.token).is_some() {
                // `get_mut` is an acquire of the other holders' releases: their reads of the
                // buffer happened before it is dropped here.
                self.items.swap_remove(i);
            } else {
                i += 1;
            }
        }
        self.kept = self.items.len();
        self.lent_bytes = 0;
    }
}

impl Drop for Loans {
    fn drop(&mut self) {
        // The thread is ending, and other threads may still read these bytes: leak them (a
        // forgotten buffer also keeps its allocator alive).
        for item in self.items.drain(..) {
            std::mem::forget(item.buf);
        }
    }
}

thread_local! {
    static LOANS: RefCell<Loans> = RefCell::default();
}

/// The owner of lent bytes: where they are, and the token that keeps their buffer.
struct Lent {
    ptr: *const u8,
    len: usize,
    _token: Arc<()>,
}

// SAFETY: `ptr..ptr + len` lies in a `ReadResult` that its thread keeps in `LOANS`, and never
// writes to, until `_token` is the last clone of its token (see `Loans::sweep`); this owner
// only reads it.
unsafe impl Send for Lent {}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: see `unsafe impl Send for Lent`: the range is valid and unchanging while
        // `self` lives.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// `buf[skip..skip + len]` as `Bytes`, without a copy. Must be called on the executor that
/// read `buf`. Panics if the range is outside `buf`.
pub(crate) fn lend(buf: ReadResult, skip: usize, len: usize) -> Bytes {
    let range = &buf[skip..skip + len];
    let token = Arc::new(());
    let owner = Lent {
        ptr: range.as_ptr(),
        len,
        _token: token.clone(),
    };
    let executor = glommio::executor().id();
    LOANS.with(|loans| {
        let mut loans = loans.borrow_mut();
        if loans.sweep_due() {
            loans.sweep(executor);
        }
        loans.lent_bytes += buf.len();
        loans.items.push(Loan {
            token,
            buf,
            executor,
        });
    });
    Bytes::from_owner(owner)
}

/// Read buffers this thread still keeps for bytes lent out (released ones included until the
/// next sweep); for tests.
pub fn lent_buffers() -> usize {
    LOANS.with(|loans| loans.borrow().items.len())
}

/// Drops every buffer this thread keeps whose bytes are no longer held anywhere; for tests
/// (reads sweep on their own). Must be called on an executor.
pub fn sweep_lent() {
    let executor = glommio::executor().id();
    LOANS.with(|loans| loans.borrow_mut().sweep(executor));
}
