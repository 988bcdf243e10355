//! Single-core wake-ups without polling: a generation counter plus parked wakers, and an
//! async lock built on it. Never `Send`; never held across cores.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Wakes every waiter when the generation moves past the one it saw. A waiter that is dropped
/// before it is woken (a long poll that timed out) takes its waker out again, so an idle
/// partition polled for hours holds no more wakers than it has waiters now.
#[derive(Default)]
pub(crate) struct Notify {
    generation: Cell<u64>,
    next_key: Cell<u64>,
    waiters: RefCell<Vec<(u64, Waker)>>,
}

impl Notify {
    pub(crate) fn generation(&self) -> u64 {
        self.generation.get()
    }
    pub(crate) fn notify_all(&self) {
        self.generation.set(self.generation.get() + 1);
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for (_, w) in waiters {
            w.wake();
        }
    }
    /// Resolves once `notify_all` has run after generation `seen` was read.
    pub(crate) fn wait(&self, seen: u64) -> Wait<'_> {
        Wait {
            notify: self,
            seen,
            key: None,
        }
    }
    #[cfg(test)]
    fn parked(&self) -> usize {
        self.waiters.borrow().len()
    }
}

pub(crate) struct Wait<'a> {
    notify: &'a Notify,
    seen: u64,
    /// This waiter's entry in `waiters`, once it has parked.
    key: Option<u64>,
}

impl Future for Wait<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let notify = this.notify;
        if notify.generation.get() != this.seen {
            return Poll::Ready(());
        }
        let mut waiters = notify.waiters.borrow_mut();
        match this
            .key
            .and_then(|k| waiters.iter_mut().find(|(key, _)| *key == k))
        {
            Some((_, w)) => {
                if !w.will_wake(cx.waker()) {
                    *w = cx.waker().clone();
                }
            }
            None => {
                let key = notify.next_key.get();
                notify.next_key.set(key + 1);
                waiters.push((key, cx.waker().clone()));
                this.key = Some(key);
            }
        }
        Poll::Pending
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            self.notify.waiters.borrow_mut().retain(|(k, _)| *k != key);
        }
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
    /// Resolves when the lock is next released (call it only while the lock is held).
    pub(crate) fn released(&self) -> Wait<'_> {
        self.released.wait(self.released.generation())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves a waiter that gives up takes its waker with it, and a woken one is gone too.
    #[test]
    fn dropped_waiters_leave_no_waker() {
        let n = Notify::default();
        let waker = futures_lite::future::block_on(futures_lite::future::poll_fn(|cx| {
            Poll::Ready(cx.waker().clone())
        }));
        let mut cx = Context::from_waker(&waker);
        for _ in 0..1000 {
            let mut w = n.wait(n.generation());
            assert!(Pin::new(&mut w).poll(&mut cx).is_pending());
            assert!(Pin::new(&mut w).poll(&mut cx).is_pending());
            assert_eq!(n.parked(), 1, "one entry per waiter, however often polled");
        }
        assert_eq!(n.parked(), 0, "timed-out waiters removed themselves");
        let mut w = n.wait(n.generation());
        assert!(Pin::new(&mut w).poll(&mut cx).is_pending());
        n.notify_all();
        assert!(Pin::new(&mut w).poll(&mut cx).is_ready());
        drop(w);
        assert_eq!(n.parked(), 0);
    }
}
