//! The leader's view of the ISR (Kafka's `PartitionState`): committed, or with one
//! AlterPartition in flight. While an expansion is in flight the high watermark already waits
//! for the new member (the maximal ISR, KIP-497: a larger ISR only makes the high watermark
//! stricter, so assuming it is safe); while a shrink is in flight it still waits for the
//! members being removed (assuming the shrink would be unsafe if the controller refused it).
//!
//! What must stay true: at most one AlterPartition in flight; the maximal ISR contains the
//! committed one; ISRs are kept sorted, so equal sets compare equal.

use crate::message::AlterPartitionRequest;
use crate::types::ReplicaId;

/// The ISR as the leader holds it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum IsrState {
    Committed {
        isr: Vec<ReplicaId>,
    },
    /// Kafka's `PendingExpandIsr`.
    PendingExpand {
        committed: Vec<ReplicaId>,
        new_member: ReplicaId,
        sent: AlterPartitionRequest,
    },
    /// Kafka's `PendingShrinkIsr`.
    PendingShrink {
        committed: Vec<ReplicaId>,
        sent: AlterPartitionRequest,
    },
}

impl IsrState {
    /// A committed ISR (sorted here).
    pub(crate) fn committed(mut isr: Vec<ReplicaId>) -> IsrState {
        isr.sort();
        isr.dedup();
        IsrState::Committed { isr }
    }

    /// The last committed ISR: what `min.insync.replicas` is checked against.
    pub(crate) fn isr(&self) -> &[ReplicaId] {
        match self {
            IsrState::Committed { isr } => isr,
            IsrState::PendingExpand { committed, .. }
            | IsrState::PendingShrink { committed, .. } => committed,
        }
    }

    /// The ISR the high watermark waits for: the committed one plus a member being added.
    pub(crate) fn maximal_isr(&self) -> Vec<ReplicaId> {
        let mut isr = self.isr().to_vec();
        if let IsrState::PendingExpand { new_member, .. } = self {
            isr.push(*new_member);
            isr.sort();
        }
        isr
    }

    /// Whether `replica` is in the maximal ISR (without building it).
    pub(crate) fn in_maximal_isr(&self, replica: ReplicaId) -> bool {
        self.isr().contains(&replica)
            || matches!(self, IsrState::PendingExpand { new_member, .. } if *new_member == replica)
    }

    /// The AlterPartition in flight, if any.
    pub(crate) fn in_flight(&self) -> Option<&AlterPartitionRequest> {
        match self {
            IsrState::Committed { .. } => None,
            IsrState::PendingExpand { sent, .. } | IsrState::PendingShrink { sent, .. } => {
                Some(sent)
            }
        }
    }

    /// The AlterPartition in flight, to send again.
    pub(crate) fn in_flight_mut(&mut self) -> Option<&mut AlterPartitionRequest> {
        match self {
            IsrState::Committed { .. } => None,
            IsrState::PendingExpand { sent, .. } | IsrState::PendingShrink { sent, .. } => {
                Some(sent)
            }
        }
    }

    /// Back to the last committed ISR (the controller said it applied nothing).
    pub(crate) fn revert(&mut self) {
        *self = IsrState::committed(self.isr().to_vec());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Epoch, PartitionEpoch};

    fn ids(list: &[i32]) -> Vec<ReplicaId> {
        list.iter().map(|&i| ReplicaId(i)).collect()
    }

    fn request() -> AlterPartitionRequest {
        AlterPartitionRequest {
            leader: ReplicaId(1),
            leader_epoch: Epoch(1),
            partition_epoch: PartitionEpoch(0),
            new_isr: Vec::new(),
            attempt: 1,
        }
    }

    /// The maximal ISR adds a member being added, and keeps a member being removed.
    #[test]
    fn maximal_isr() {
        let expand = IsrState::PendingExpand {
            committed: ids(&[1, 3]),
            new_member: ReplicaId(2),
            sent: request(),
        };
        assert_eq!(expand.isr(), ids(&[1, 3]).as_slice());
        assert_eq!(expand.maximal_isr(), ids(&[1, 2, 3]));
        let mut shrink = IsrState::PendingShrink {
            committed: ids(&[1, 2, 3]),
            sent: request(),
        };
        assert_eq!(shrink.maximal_isr(), ids(&[1, 2, 3]));
        assert!(shrink.in_flight().is_some());
        shrink.revert();
        assert_eq!(shrink, IsrState::committed(ids(&[3, 2, 1])));
        assert!(shrink.in_flight().is_none());
    }
}
