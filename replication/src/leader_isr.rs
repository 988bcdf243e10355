//! ISR changes on the leader (Kafka's `maybeExpandIsr`, `maybeShrinkIsr`, `submitAlterPartition`
//! and its answer handlers): a follower that reaches the high watermark (and the start of this
//! leader epoch) is proposed for the ISR; ISR members not caught up within
//! `replica_lag_time_max_ms` are proposed for removal; both as an AlterPartition to the
//! controller, one at a time, based on the partition epoch the leader knows. The controller's
//! answer (or a newer partition state from the metadata) commits the change.
//!
//! What must stay true: the ISR the high watermark uses never shrinks before the controller
//! has committed the shrink; an answer to anything but the request in flight is ignored.

use crate::isr::IsrState;
use crate::leader_replicas::LeaderReplicas;
use crate::message::{AlterPartitionAnswer, AlterPartitionError, AlterPartitionRequest, IsrMember};
use crate::types::{Offset, ReplicaId};

impl LeaderReplicas {
    /// After a follower's fetch: propose it for the ISR when it is in sync (Kafka's
    /// `isFollowerInSync`: its log end at least the high watermark and the leader epoch's start)
    /// and eligible (its broker epoch known from a Fetch, KIP-903).
    pub(crate) fn maybe_expand_isr(
        &mut self,
        now_ms: u64,
        follower: ReplicaId,
        high_watermark: Offset,
    ) {
        if self.isr.in_flight().is_some() || self.isr.isr().contains(&follower) {
            return;
        }
        let Some(progress) = self.followers.get(&follower) else {
            return;
        };
        let in_sync = progress
            .log_end
            .is_some_and(|end| end >= high_watermark && end >= self.epoch_start_offset);
        if !in_sync || !self.is_eligible(follower) {
            return;
        }
        let committed = self.isr.isr().to_vec();
        let mut proposed = committed.clone();
        proposed.push(follower);
        let sent = self.alter_partition_request(proposed);
        self.send_alter_partition(sent.clone(), now_ms);
        self.isr = IsrState::PendingExpand {
            committed,
            new_member: follower,
            sent,
        };
    }

    /// Proposes removing the ISR members that are not caught up (Kafka's
    /// `getOutOfSyncReplicas`: not at the leader's log end, and not caught up within
    /// `replica_lag_time_max_ms`); nothing while an AlterPartition is in flight.
    pub fn maybe_shrink_isr(&mut self, now_ms: u64, leader_end: Offset) {
        if self.isr.in_flight().is_some() {
            return;
        }
        let lag_max_ms = self.config.replica_lag_time_max_ms;
        let me = self.config.replica_id;
        let out_of_sync = |id: &ReplicaId| {
            *id != me
                && !self
                    .followers
                    .get(id)
                    .is_some_and(|p| p.is_caught_up(leader_end, now_ms, lag_max_ms))
        };
        // Checked before anything is built: this runs for every led partition every tick.
        if !self.isr.isr().iter().any(out_of_sync) {
            return;
        }
        let committed = self.isr.isr().to_vec();
        let (keep, out): (Vec<ReplicaId>, Vec<ReplicaId>) = committed.iter().partition(|&&id| {
            id == me
                || self
                    .followers
                    .get(&id)
                    .is_some_and(|p| p.is_caught_up(leader_end, now_ms, lag_max_ms))
        });
        if out.is_empty() {
            return;
        }
        let sent = self.alter_partition_request(keep);
        self.send_alter_partition(sent.clone(), now_ms);
        self.isr = IsrState::PendingShrink { committed, sent };
    }

    fn send_alter_partition(&mut self, request: AlterPartitionRequest, now_ms: u64) {
        self.alter_partition_retry_at = Some(now_ms + self.config.alter_partition_retry_ms);
        self.outbox.push(request);
    }

    /// Sends the AlterPartition in flight again when unanswered for
    /// `alter_partition_retry_ms` (a lost request or answer; the controller refuses a repeat
    /// of one it applied with INVALID_UPDATE_VERSION, and the metadata then commits it).
    pub fn maybe_resend_alter_partition(&mut self, now_ms: u64) {
        if self.alter_partition_retry_at.is_some_and(|at| now_ms >= at) {
            self.resend_alter_partition(now_ms);
        }
    }

    /// Sends the AlterPartition in flight again, as a new attempt.
    fn resend_alter_partition(&mut self, now_ms: u64) {
        if let Some(request) = self.isr.in_flight_mut() {
            request.attempt += 1;
            let request = request.clone();
            self.send_alter_partition(request, now_ms);
        }
    }

    /// An AlterPartition for `isr`, with each member's broker epoch as last seen (None when no
    /// Fetch came yet: the controller then skips the check, as Kafka's -1).
    fn alter_partition_request(&self, mut isr: Vec<ReplicaId>) -> AlterPartitionRequest {
        isr.sort();
        let new_isr = isr
            .iter()
            .map(|&replica_id| IsrMember {
                replica_id,
                broker_epoch: if replica_id == self.config.replica_id {
                    Some(self.config.broker_epoch)
                } else {
                    self.followers.get(&replica_id).and_then(|p| p.broker_epoch)
                },
            })
            .collect();
        AlterPartitionRequest {
            leader: self.config.replica_id,
            leader_epoch: self.leader_epoch,
            partition_epoch: self.partition_epoch,
            new_isr,
            attempt: 1,
        }
    }

    /// The controller answered an AlterPartition (Kafka's `handleAlterPartitionUpdate` and
    /// `handleAlterPartitionError`). An answer to anything but the latest send of the request in
    /// flight is ignored, as
    /// is an accepted state of another leader epoch or an older partition epoch (the metadata
    /// will bring the truth). INELIGIBLE_REPLICA and OPERATION_NOT_ATTEMPTED go back to the
    /// committed ISR (the controller applied nothing); NOT_CONTROLLER sends the request
    /// again; other errors leave the request in flight until the metadata brings a newer
    /// partition state. Returns whether a new ISR was committed (the high watermark may move,
    /// and waiting produces may need their answer).
    pub fn handle_alter_partition_answer(
        &mut self,
        now_ms: u64,
        answer: &AlterPartitionAnswer,
    ) -> bool {
        if self.isr.in_flight() != Some(&answer.request) {
            return false;
        }
        self.alter_partition_retry_at = None;
        match &answer.result {
            Ok(state) => {
                if state.leader_epoch != self.leader_epoch
                    || state.partition_epoch < self.partition_epoch
                {
                    return false;
                }
                self.partition_epoch = state.partition_epoch;
                self.isr = IsrState::committed(state.isr.clone());
                return true;
            }
            Err(
                AlterPartitionError::IneligibleReplica | AlterPartitionError::OperationNotAttempted,
            ) => {
                self.isr.revert();
            }
            Err(AlterPartitionError::NotController) => self.resend_alter_partition(now_ms),
            Err(_) => {}
        }
        false
    }
}
