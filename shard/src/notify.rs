//! Single-core wake-ups without polling: a generation counter plus parked wakers, and an
//! async lock built on it. Never `Send`; never held across cores.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Wakes every waiter when the generation moves past the one it saw.
#[derive(Default)]
pub(crate) struct Notify {
    generation: Cell<u64>,
    waiters: RefCell<Vec<Waker>>,
}

impl Notify {
    pub(crate) fn generation(&self) -> u64 {
        self.generation.get()
    }
    pub(crate) fn notify_all(&self) {
        self.generation.set(self.generation.get() + 1);
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for w in waiters {
            w.wake();
        }
    }
    /// Resolves once `notify_all` has run after generation `seen` was read.
    pub(crate) fn wait(&self, seen: u64) -> Wait<'_> {
        Wait { notify: self, seen }
    }
}

pub(crate) struct Wait<'a> {
    notify: &'a Notify,
    seen: u64,
}

impl Future for Wait<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.notify.generation.get() != self.seen {
            return Poll::Ready(());
        }
        let mut w = self.notify.waiters.borrow_mut();
        if !w.iter().any(|x| x.will_wake(cx.waker())) {
            w.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// An async mutual-exclusion flag: one holder at a time, waiters wake on release.
#[derive(Default)]
pub(crate) struct AsyncLock {
    locked: Cell<bool>,
    released: Notify,
}

pub(crate) struct AsyncLockGuard<'a> {
    lock: &'a AsyncLock,
}

impl AsyncLock {
    pub(crate) async fn lock(&self) -> AsyncLockGuard<'_> {
        loop {
            if !self.locked.get() {
                self.locked.set(true);
                return AsyncLockGuard { lock: self };
            }
            let seen = self.released.generation();
            self.released.wait(seen).await;
        }
    }
    pub(crate) fn try_lock(&self) -> Option<AsyncLockGuard<'_>> {
        if self.locked.get() {
            return None;
        }
        self.locked.set(true);
        Some(AsyncLockGuard { lock: self })
    }
}

impl Drop for AsyncLockGuard<'_> {
    fn drop(&mut self) {
        assert!(self.lock.locked.get());
        self.lock.locked.set(false);
        self.lock.released.notify_all();
    }
}
