//! What a leader knows of each follower (Kafka's `ReplicaState`): its log end and start as of
//! its last valid Fetch, when that was, and the last time it was caught up, which decides ISR
//! membership.
//!
//! `last_caught_up_ms` is the largest time t such that the follower's fetch offset reached the
//! leader's log end as it was at t (Kafka's `updateFetchStateOrThrow`): a fetch at the current
//! log end makes it now; a fetch at least at the log end the previous fetch saw makes it the
//! time of that previous fetch (so a follower can stay in sync under a steady trickle of
//! produces, always one fetch behind). It never goes backwards.

use crate::types::{BrokerEpoch, Offset};

/// A follower as the leader sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FollowerProgress {
    /// None until the follower's first valid Fetch to this leader (Kafka's -1).
    pub(crate) log_end: Option<Offset>,
    pub(crate) log_start: Option<Offset>,
    /// The leader's log end when the last Fetch was served (None: unknown).
    pub(crate) last_fetch_leader_end: Option<Offset>,
    pub(crate) last_fetch_ms: u64,
    pub(crate) last_caught_up_ms: u64,
    /// The broker epoch of the last Fetch (KIP-903); None until one arrives.
    pub(crate) broker_epoch: Option<BrokerEpoch>,
}

impl FollowerProgress {
    /// A replica that has just become leader knows nothing of its followers; an ISR member
    /// counts as caught up now (so it is not dropped at once), others never (so they do not
    /// hold the high watermark back). Kafka's `resetReplicaState` with `isNewLeader`.
    pub(crate) fn for_new_leader(now_ms: u64, in_isr: bool) -> FollowerProgress {
        FollowerProgress {
            log_end: None,
            log_start: None,
            last_fetch_leader_end: None,
            last_fetch_ms: 0,
            last_caught_up_ms: if in_isr { now_ms } else { 0 },
            broker_epoch: None,
        }
    }

    /// The same replica leads again in a newer epoch: it keeps what it knew of the follower's
    /// log, and restarts the clocks (Kafka's `resetReplicaState` without `isNewLeader`).
    pub(crate) fn reelected(&mut self, now_ms: u64, leader_end: Offset, in_isr: bool) {
        self.last_fetch_leader_end = Some(leader_end);
        self.last_fetch_ms = if in_isr { now_ms } else { 0 };
        self.last_caught_up_ms = if in_isr { now_ms } else { 0 };
    }

    /// A valid Fetch at `fetch_offset`, served when the leader's log ended at `leader_end`.
    pub(crate) fn record_fetch(
        &mut self,
        fetch_offset: Offset,
        log_start: Offset,
        now_ms: u64,
        leader_end: Offset,
        broker_epoch: BrokerEpoch,
    ) {
        let previous_end = self.last_fetch_leader_end.unwrap_or(Offset(-1));
        if fetch_offset >= leader_end {
            self.last_caught_up_ms = self.last_caught_up_ms.max(now_ms);
        } else if fetch_offset >= previous_end {
            self.last_caught_up_ms = self.last_caught_up_ms.max(self.last_fetch_ms);
        }
        self.log_end = Some(fetch_offset);
        self.log_start = Some(log_start);
        self.last_fetch_leader_end = Some(leader_end.max(previous_end));
        self.last_fetch_ms = now_ms;
        self.broker_epoch = Some(broker_epoch);
    }

    /// Kafka's `isCaughtUp`: at the leader's log end, or caught up within the last
    /// `lag_max_ms`.
    pub(crate) fn is_caught_up(&self, leader_end: Offset, now_ms: u64, lag_max_ms: u64) -> bool {
        self.log_end == Some(leader_end)
            || now_ms.saturating_sub(self.last_caught_up_ms) <= lag_max_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPOCH: BrokerEpoch = BrokerEpoch(1);

    /// A fetch at the leader's log end is caught up now; one short of it but past the end the
    /// previous fetch saw is caught up as of that previous fetch; one behind both is not.
    #[test]
    fn last_caught_up_rules() {
        let mut p = FollowerProgress::for_new_leader(0, false);
        p.record_fetch(Offset(10), Offset(0), 100, Offset(10), EPOCH);
        assert_eq!(p.last_caught_up_ms, 100);
        // The leader appended to 15; the follower fetches at 12 (>= 10 seen last time).
        p.record_fetch(Offset(12), Offset(0), 200, Offset(15), EPOCH);
        assert_eq!(p.last_caught_up_ms, 100, "as of the previous fetch, at 100");
        // At 15, the end the fetch at 200 saw: caught up as of 200.
        p.record_fetch(Offset(15), Offset(0), 300, Offset(20), EPOCH);
        assert_eq!(p.last_caught_up_ms, 200);
    }

    /// The previous-fetch rule needs the offset the previous fetch saw as the leader's end.
    #[test]
    fn behind_both_ends_is_not_caught_up() {
        let mut p = FollowerProgress::for_new_leader(0, false);
        p.record_fetch(Offset(10), Offset(0), 100, Offset(10), EPOCH);
        p.record_fetch(Offset(10), Offset(0), 200, Offset(15), EPOCH);
        p.record_fetch(Offset(12), Offset(0), 300, Offset(20), EPOCH);
        assert_eq!(p.last_caught_up_ms, 100);
        assert!(!p.is_caught_up(Offset(20), 401, 300));
        assert!(p.is_caught_up(Offset(20), 400, 300));
        assert!(p.is_caught_up(Offset(12), 10_000, 300), "at the log end");
    }

    /// A new leader counts its ISR members as caught up now and others never; a re-elected
    /// one keeps the follower's log end.
    #[test]
    fn resets() {
        let p = FollowerProgress::for_new_leader(50, true);
        assert!(p.is_caught_up(Offset(9), 350, 300));
        assert!(!FollowerProgress::for_new_leader(50, false).is_caught_up(Offset(9), 350, 300));
        let mut q = p;
        q.record_fetch(Offset(7), Offset(0), 60, Offset(9), EPOCH);
        q.reelected(500, Offset(9), false);
        assert_eq!((q.log_end, q.last_caught_up_ms), (Some(Offset(7)), 0));
    }
}
