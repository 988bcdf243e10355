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
