//! Transaction verification guards (KIP-890 part 1), in memory as in Kafka.
//!
//! A client's transactional batch may open a transaction on a partition only if the
//! transaction coordinator knows the partition is in that transaction. The leader checks this
//! with the coordinator before the first such append: it asks the partition for a guard
//! ([`Verifications::start`]), asks the coordinator, and appends with the guard. The guard
//! must still be the producer's when the append runs: a marker written meanwhile (the
//! transaction ended, perhaps timed out and was aborted) or a transaction opened by another
//! append withdraws it, so a late append cannot open a transaction the coordinator will never
//! end (a "hanging transaction"). Once a transaction is open on the partition its further
//! batches need no guard.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Guards are numbered process-wide, as Kafka's, so a guard taken from a partition that was
/// deleted and created again never matches the new one's.
static LAST_GUARD: AtomicU64 = AtomicU64::new(0);

/// A producer's pending verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pending {
    guard: u64,
    epoch: i16,
    /// Asked for a producer of transaction version 2, whose markers bump the epoch (as first
    /// asked, as Kafka keeps it).
    epoch_bump: bool,
    /// When it was last asked for, to forget it with idle producers.
    at_ms: i64,
    /// The lowest first sequence of the batches it was asked for (Kafka's
    /// `VerificationStateEntry.lowestSequence`): a batch with a higher one may not open the
    /// transaction, so batches sent together cannot land out of order while verified.
    lowest_sequence: i32,
}

/// The pending verifications of one partition, by producer id.
#[derive(Debug, Default)]
pub struct Verifications {
    pending: HashMap<i64, Pending>,
}

impl Verifications {
    /// The guard for `producer_id` at `epoch`, for a batch starting at `first_sequence`: the
    /// pending one (reused, as Kafka reuses its `VerificationStateEntry`, keeping the higher
    /// epoch and the lowest sequence) or a new one. `epoch_bump`: the producer is of
    /// transaction version 2.
    pub fn start(
        &mut self,
        (producer_id, epoch): (i64, i16),
        first_sequence: i32,
        epoch_bump: bool,
        now_ms: i64,
    ) -> u64 {
        if let Some(p) = self.pending.get_mut(&producer_id) {
            p.epoch = p.epoch.max(epoch);
            p.lowest_sequence = p.lowest_sequence.min(first_sequence);
            p.at_ms = now_ms;
            return p.guard;
        }
        let guard = LAST_GUARD.fetch_add(1, Ordering::Relaxed) + 1;
        let pending = Pending {
            guard,
            epoch,
            epoch_bump,
            at_ms: now_ms,
            lowest_sequence: first_sequence,
        };
        self.pending.insert(producer_id, pending);
        guard
    }

    /// Forgets the guards last asked for `expiration_ms` or more before `now_ms` (Kafka's
    /// `producer.id.expiration.ms`): verifications that never led to an append.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.pending.len();
        self.pending
            .retain(|_, p| now_ms.saturating_sub(p.at_ms) < expiration_ms);
        before - self.pending.len()
    }

    /// The lowest first sequence asked for by `producer_id`'s pending verification.
    pub fn lowest_sequence(&self, producer_id: i64) -> Option<i32> {
        self.pending.get(&producer_id).map(|p| p.lowest_sequence)
    }

    /// Whether `guard` is `producer_id`'s pending guard.
    pub fn holds(&self, producer_id: i64, guard: Option<u64>) -> bool {
        guard.is_some_and(|g| self.pending.get(&producer_id).is_some_and(|p| p.guard == g))
    }

    /// A transactional batch of `producer_id` at `epoch` was appended (a marker if
    /// `control`): its transaction opened or ended here, so a pending guard is withdrawn;
    /// except, as in Kafka, a transaction version 2 guard taken at the epoch of the marker
    /// (the producer's next transaction, verified before the marker of the last one landed).
    pub fn appended(&mut self, producer_id: i64, epoch: i16, control: bool) {
        let keep = self
            .pending
            .get(&producer_id)
            .is_some_and(|p| p.epoch_bump && control && p.epoch == epoch);
        if !keep {
            self.pending.remove(&producer_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves a guard is reused while pending, holds only for its producer, and a cleared
    /// guard never holds again, even when the producer starts over.
    #[test]
    fn guards() {
        let mut v = Verifications::default();
        let g = v.start((7, 0), 0, false, 0);
        assert_eq!(v.start((7, 1), 0, false, 0), g, "reused while pending");
        assert!(v.holds(7, Some(g)));
        assert!(!v.holds(7, None));
        assert!(!v.holds(8, Some(g)));
        v.appended(7, 1, true);
        assert!(
            !v.holds(7, Some(g)),
            "a marker withdraws a guard of version 0/1"
        );
        let g2 = v.start((7, 1), 0, false, 0);
        assert_ne!(g2, g, "a new guard after a clear");
        assert!(!v.holds(7, Some(g)), "the old guard stays withdrawn");
        assert_eq!(v.pending.len(), 1);
        assert_eq!(v.expire(10, 20), 0);
        assert_eq!(v.expire(20, 20), 1, "idle for the expiration");
        assert!(!v.holds(7, Some(g2)));
    }

    /// Proves a transaction version 2 guard survives the marker at its own epoch (the last
    /// transaction's, bumped) but not a data batch or a marker at another epoch.
    #[test]
    fn version_2_guards_survive_their_marker() {
        let mut v = Verifications::default();
        let g = v.start((3, 5), 0, true, 0);
        v.appended(3, 5, true);
        assert!(v.holds(3, Some(g)));
        v.appended(3, 4, true);
        assert!(!v.holds(3, Some(g)));
        let g = v.start((3, 5), 0, true, 0);
        v.appended(3, 5, false);
        assert!(!v.holds(3, Some(g)), "the transaction opened");
    }
}
