//! The leader's waiting acks=all produces (one partition's share of Kafka's produce purgatory,
//! `DelayedProduce`): each waits for the high watermark to pass its batch, and is answered
//! then, at its deadline, or when the replica stops leading. Bounded: a produce that would
//! exceed the bound is refused before it is appended.
//!
//! What must stay true: a produce is answered exactly once; success only once the high
//! watermark is past its last offset.

use std::collections::BTreeMap;

use crate::message::{Effect, ProduceError, ProduceToken};
use crate::types::Offset;

/// One waiting produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Waiting {
    base_offset: Offset,
    deadline_ms: u64,
}

/// The waiting produces of one partition, ordered by the offset they need.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct WaitingProduces {
    /// (the high watermark that releases it: its last offset + 1, token) -> the produce.
    by_offset: BTreeMap<(Offset, ProduceToken), Waiting>,
    count_max: usize,
}

impl WaitingProduces {
    pub(crate) fn new(count_max: usize) -> WaitingProduces {
        WaitingProduces {
            by_offset: BTreeMap::new(),
            count_max,
        }
    }

    pub(crate) fn is_full(&self) -> bool {
        self.by_offset.len() >= self.count_max
    }

    pub(crate) fn len(&self) -> usize {
        self.by_offset.len()
    }

    /// Waits for the high watermark to reach `required_offset`.
    pub(crate) fn add(
        &mut self,
        token: ProduceToken,
        base_offset: Offset,
        required_offset: Offset,
        deadline_ms: u64,
    ) {
        assert!(!self.is_full(), "a produce past the waiting bound");
        let waiting = Waiting {
            base_offset,
            deadline_ms,
        };
        let previous = self.by_offset.insert((required_offset, token), waiting);
        assert!(previous.is_none(), "produce token {token:?} waiting twice");
    }

    /// Answers every produce the high watermark has passed (Kafka's
    /// `checkEnoughReplicasReachOffset`): success when the maximal ISR still has
    /// `min.insync.replicas` members, else NOT_ENOUGH_REPLICAS_AFTER_APPEND.
    pub(crate) fn release(
        &mut self,
        high_watermark: Offset,
        enough_replicas: bool,
        out: &mut Vec<Effect>,
    ) {
        while let Some(entry) = self.by_offset.first_entry() {
            if entry.key().0 > high_watermark {
                break;
            }
            let ((_, token), waiting) = entry.remove_entry();
            let result = if enough_replicas {
                Ok(())
            } else {
                Err(ProduceError::NotEnoughReplicasAfterAppend)
            };
            out.push(done(token, waiting, result));
        }
    }

    /// Answers REQUEST_TIMED_OUT to every produce whose deadline has come.
    pub(crate) fn expire(&mut self, now_ms: u64, out: &mut Vec<Effect>) {
        let due: Vec<(Offset, ProduceToken)> = self
            .by_offset
            .iter()
            .filter(|(_, w)| w.deadline_ms <= now_ms)
            .map(|(k, _)| *k)
            .collect();
        for key in due {
            if let Some(waiting) = self.by_offset.remove(&key) {
                out.push(done(key.1, waiting, Err(ProduceError::RequestTimedOut)));
            }
        }
    }

    /// Answers every produce with `error` (the replica stops leading).
    pub(crate) fn fail_all(&mut self, error: ProduceError, out: &mut Vec<Effect>) {
        for ((_, token), waiting) in std::mem::take(&mut self.by_offset) {
            out.push(done(token, waiting, Err(error)));
        }
    }
}

fn done(token: ProduceToken, waiting: Waiting, result: Result<(), ProduceError>) -> Effect {
    Effect::ProduceDone {
        token,
        base_offset: waiting.base_offset,
        result,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(effects: &[Effect]) -> Vec<(u64, Result<(), ProduceError>)> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::ProduceDone { token, result, .. } => Some((token.0, *result)),
                _ => None,
            })
            .collect()
    }

    /// Produces are released in offset order once the high watermark reaches the offset after
    /// their last record, not before; with too few replicas they fail after append.
    #[test]
    fn released_by_high_watermark() {
        let mut w = WaitingProduces::new(4);
        w.add(ProduceToken(1), Offset(0), Offset(3), 100);
        w.add(ProduceToken(2), Offset(3), Offset(5), 100);
        let mut out = Vec::new();
        w.release(Offset(2), true, &mut out);
        assert!(out.is_empty());
        w.release(Offset(3), true, &mut out);
        assert_eq!(tokens(&out), vec![(1, Ok(()))]);
        w.release(Offset(9), false, &mut out);
        let after = Err(ProduceError::NotEnoughReplicasAfterAppend);
        assert_eq!(tokens(&out)[1], (2, after));
        assert_eq!(w.len(), 0);
    }

    /// A deadline answers REQUEST_TIMED_OUT; the bound refuses more; losing leadership answers
    /// every waiting produce.
    #[test]
    fn timeouts_bound_and_fail_all() {
        let mut w = WaitingProduces::new(2);
        w.add(ProduceToken(1), Offset(0), Offset(1), 10);
        w.add(ProduceToken(2), Offset(1), Offset(2), 20);
        assert!(w.is_full());
        let mut out = Vec::new();
        w.expire(15, &mut out);
        assert_eq!(tokens(&out), vec![(1, Err(ProduceError::RequestTimedOut))]);
        w.fail_all(ProduceError::NotLeaderOrFollower, &mut out);
        assert_eq!(tokens(&out)[1], (2, Err(ProduceError::NotLeaderOrFollower)));
        assert_eq!(w.len(), 0);
    }
}
