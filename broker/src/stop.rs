//! The broker's stop signal, as one core sees it: a flag to poll and a wait to race.
//!
//! A leaf module (it imports nothing of the crate), so every service can take a `&StopSignal`
//! without reaching for the whole core.

use std::cell::Cell;

use glommio::sync::Semaphore;

/// Set once, when the broker starts stopping; never reset.
#[derive(Debug)]
pub struct StopSignal {
    stopping: Cell<bool>,
    /// Never holds a permit; closed at stop, which ends every wait in [`StopSignal::stopped`].
    gate: Semaphore,
}

impl Default for StopSignal {
    fn default() -> Self {
        StopSignal {
            stopping: Cell::new(false),
            gate: Semaphore::new(0),
        }
    }
}

impl StopSignal {
    /// Whether the broker is stopping.
    pub fn is_stopping(&self) -> bool {
        self.stopping.get()
    }

    /// Starts the stop: [`Self::is_stopping`] turns true and every [`Self::stopped`] wait ends.
    pub fn stop(&self) {
        self.stopping.set(true);
        self.gate.close();
    }

    /// Resolves once the broker is stopping (at once if it already is).
    pub async fn stopped(&self) {
        // Only `close` ever ends this wait: nothing signals permits.
        let _ = self.gate.acquire(1).await;
    }
}

/// A broker's controlled shutdown (Kafka's `beginControlledShutdown`), shared by the main
/// thread and the controller shard's lifecycle task. On SIGTERM/SIGINT the main thread asks
/// for it and keeps every core serving; the lifecycle task then heartbeats `want_shut_down`,
/// the active controller moves this broker's leaderships to other in-sync replicas and takes
/// it out of every ISR, and answers `should_shut_down` once the other brokers have seen that;
/// the task then releases the broker and the main thread starts the stop proper. The main
/// thread stops anyway once `controlled_shutdown_timeout_ms` has passed.
#[derive(Debug, Default)]
pub struct Leaving {
    requested: std::sync::atomic::AtomicBool,
    released: std::sync::atomic::AtomicBool,
}

impl Leaving {
    /// Asks for the controlled shutdown (from the main thread, on the signal).
    pub fn request(&self) {
        self.requested
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn is_requested(&self) -> bool {
        self.requested.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Nothing holds the stop any longer: the controller answered `should_shut_down`, or this
    /// broker has nothing a controller could move (never registered, or no controller heard
    /// from for a whole session, after which it has been fenced anyway).
    pub fn release(&self) {
        self.released
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn is_released(&self) -> bool {
        self.released.load(std::sync::atomic::Ordering::Relaxed)
    }
}
