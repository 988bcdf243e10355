//! The coordinator's timers, as Kafka's: every `transaction.abort.timed.out.transaction.
//! cleanup.interval.ms` (10 s) abort the Ongoing transactions older than their timeout, with a
//! fencing epoch bump (`abortTimedOutTransactions`; on a TV2 cluster the abort bumps once
//! more, as any TV2 end); every `transaction.remove.expired.transaction.cleanup.interval.ms`
//! (1 h) write tombstones for ids idle (Empty, CompleteCommit, CompleteAbort) longer than
//! `transactional.id.expiration.ms`.
//!
//! Neither touches an id with a transition pending, nor a KIP-939 transaction (no timeout).

use crate::coordinator::{Coordinator, EndReply, Op, OpKind};
use crate::effect::{Effect, ProducerIdSource};
use crate::end_txn::EndCall;
use crate::types::{TxnResult, TxnState};

impl Coordinator {
    /// Aborts timed-out transactions; returns their appends (nobody is answered).
    pub fn abort_timed_out(&mut self, now_ms: i64, ids: &mut dyn ProducerIdSource) -> Vec<Effect> {
        let timed_out: Vec<String> = self
            .txns
            .values()
            .filter(|m| m.pending_state.is_none() && m.state == TxnState::Ongoing)
            .filter(|m| !m.is_two_phase_commit())
            .filter(|m| m.start_ms.saturating_add(i64::from(m.timeout_ms)) < now_ms)
            .map(|m| m.transactional_id.clone())
            .filter(|id| self.serving_epoch(id).is_ok())
            .collect();
        let mut effects = Vec::new();
        for id in timed_out {
            let Some(meta) = self.txns.get_mut(&id) else {
                continue;
            };
            let Ok(fence) = meta.prepare_fence_epoch() else {
                continue;
            };
            let call = EndCall {
                producer_id: fence.producer_id,
                producer_epoch: fence.producer_epoch,
                result: TxnResult::Abort,
                from_client: false,
                version: self.config.cluster_version,
                reply: EndReply::Timeout,
            };
            effects.extend(self.end_transaction(&id, call, now_ms, ids));
        }
        effects
    }

    /// Starts the expiry of idle ids: one tombstone append each; the id is forgotten when it
    /// is durable (and its state did not move meanwhile).
    pub fn expire_transactional_ids(&mut self, now_ms: i64) -> Vec<Effect> {
        let horizon = now_ms.saturating_sub(self.config.id_expiration_ms);
        let expired: Vec<(String, i32)> = self
            .txns
            .values()
            .filter(|m| m.pending_state.is_none() && m.state.expiration_allowed())
            .filter(|m| m.last_update_ms <= horizon)
            .filter_map(|m| {
                let epoch = self.serving_epoch(&m.transactional_id).ok()?;
                Some((m.transactional_id.clone(), epoch))
            })
            .collect();
        let mut effects = Vec::new();
        for (id, coordinator_epoch) in expired {
            let Some(meta) = self.txns.get_mut(&id) else {
                continue;
            };
            let Ok(transit) = meta.prepare_dead() else {
                continue;
            };
            let op = Op {
                transactional_id: id,
                coordinator_epoch,
                transit,
                kind: OpKind::Expire,
            };
            effects.push(self.start_append(op, now_ms));
        }
        effects
    }
}
