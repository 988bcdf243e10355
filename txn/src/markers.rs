//! After a PrepareCommit or PrepareAbort record is durable: answer the client, prepare the
//! Complete transition (pending, so every other request gets CONCURRENT_TRANSACTIONS), write a
//! marker to every partition of the transaction, and once all are written append the
//! CompleteCommit / CompleteAbort record (Kafka's `TransactionMarkerChannelManager` and
//! `TransactionMarkerRequestCompletionHandler`).
//!
//! Markers carry the producer id and epoch of the Prepare record (TV2: the bumped epoch), the
//! coordinator epoch, and the transaction's client version. Per partition outcome: written or
//! topic deleted, the partition is done; NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION,
//! NOT_ENOUGH_REPLICAS(_AFTER_APPEND), REQUEST_TIMED_OUT, KAFKA_STORAGE_ERROR are retried;
//! UNSUPPORTED_FOR_MESSAGE_FORMAT / UNSUPPORTED_VERSION drop the partition; INVALID_PRODUCER_EPOCH
//! and TRANSACTION_COORDINATOR_FENCED stop the sending (a newer coordinator or producer owns
//! it; the id stays pending until its partition is loaded again), and so does any other code
//! (Kafka fails the sending thread on those).

use sluice_net::ErrorCode;

use crate::coordinator::{
    AwaitingMarkers, Coordinator, EndReply, Op, OpKind, end_answer, end_failure, init_answer,
};
use crate::effect::{Effect, MarkerResult, Markers};
use crate::types::{NO_PRODUCER_EPOCH, NO_PRODUCER_ID, TopicPartition, TxnResult};

impl Coordinator {
    /// The Prepare record of `id` is durable and applied.
    pub(crate) fn prepare_written(
        &mut self,
        id: &str,
        coordinator_epoch: i32,
        result: TxnResult,
        reply: EndReply,
        now_ms: i64,
    ) -> Vec<Effect> {
        let Some(meta) = self.txns.get_mut(id) else {
            return end_failure(reply, ErrorCode::NOT_COORDINATOR);
        };
        let complete = match meta.prepare_complete(now_ms) {
            Ok(t) => t,
            Err(e) => return end_failure(reply, e),
        };
        let mut effects = match reply {
            EndReply::Client { request, version } => {
                let (pid, epoch) = if version.supports_epoch_bump() {
                    (complete.producer_id, complete.producer_epoch)
                } else {
                    (NO_PRODUCER_ID, NO_PRODUCER_EPOCH)
                };
                vec![end_answer(request, ErrorCode::NONE, pid, epoch)]
            }
            EndReply::FenceForInit(request) => vec![init_answer(
                request,
                ErrorCode::CONCURRENT_TRANSACTIONS,
                NO_PRODUCER_ID,
                NO_PRODUCER_EPOCH,
            )],
            EndReply::Timeout => Vec::new(),
        };
        let awaiting = AwaitingMarkers {
            coordinator_epoch,
            result,
            complete,
        };
        effects.extend(self.send_markers(id, awaiting, now_ms));
        effects
    }

    /// Markers for every partition of `id`'s Prepare state, or the Complete append at once
    /// when it has none.
    pub(crate) fn send_markers(
        &mut self,
        id: &str,
        awaiting: AwaitingMarkers,
        now_ms: i64,
    ) -> Vec<Effect> {
        let Some(meta) = self.txns.get(id) else {
            return Vec::new();
        };
        if meta.partitions.is_empty() {
            return vec![self.append_complete(id, awaiting, now_ms)];
        }
        let partitions: Vec<TopicPartition> = meta.partitions.iter().cloned().collect();
        let markers = self.markers_for(id, &awaiting, partitions);
        self.awaiting.insert(id.to_string(), awaiting);
        markers.into_iter().map(Effect::WriteMarkers).collect()
    }

    fn markers_for(
        &self,
        id: &str,
        awaiting: &AwaitingMarkers,
        partitions: Vec<TopicPartition>,
    ) -> Option<Markers> {
        let meta = self.txns.get(id)?;
        Some(Markers {
            transactional_id: id.to_string(),
            coordinator_epoch: awaiting.coordinator_epoch,
            producer_id: meta.producer_id,
            producer_epoch: meta.producer_epoch,
            result: awaiting.result,
            transaction_version: meta.client_version.0,
            partitions,
        })
    }

    fn append_complete(&mut self, id: &str, awaiting: AwaitingMarkers, now_ms: i64) -> Effect {
        let op = Op {
            transactional_id: id.to_string(),
            coordinator_epoch: awaiting.coordinator_epoch,
            transit: awaiting.complete,
            kind: OpKind::Complete,
        };
        self.start_append(op, now_ms)
    }

    /// How the markers of an `Effect::WriteMarkers` went, partition by partition (any subset,
    /// as leaders answer). Returns markers to retry or the Complete append.
    pub fn markers_written(
        &mut self,
        transactional_id: &str,
        coordinator_epoch: i32,
        results: &[(TopicPartition, MarkerResult)],
        now_ms: i64,
    ) -> Vec<Effect> {
        let id = transactional_id;
        if self.serving_epoch(id) != Ok(coordinator_epoch) {
            return Vec::new();
        }
        let Some(awaiting) = self.awaiting.get(id) else {
            return Vec::new();
        };
        if awaiting.coordinator_epoch != coordinator_epoch {
            return Vec::new();
        }
        let Some(meta) = self.txns.get_mut(id) else {
            return Vec::new();
        };
        let mut retry = Vec::new();
        for (partition, result) in results {
            match marker_outcome(*result) {
                Outcome::Done => {
                    meta.partitions.remove(partition);
                }
                Outcome::Retry => retry.push(partition.clone()),
                Outcome::Stop => {
                    self.awaiting.remove(id);
                    return Vec::new();
                }
            }
        }
        if !retry.is_empty() {
            let awaiting = awaiting.clone();
            let markers = self.markers_for(id, &awaiting, retry);
            return markers.into_iter().map(Effect::WriteMarkers).collect();
        }
        if !meta.partitions.is_empty() {
            return Vec::new();
        }
        match self.awaiting.remove(id) {
            Some(awaiting) => vec![self.append_complete(id, awaiting, now_ms)],
            None => Vec::new(),
        }
    }

    /// The transactional ids whose markers are being written, with the partitions left.
    pub fn pending_markers(&self) -> Vec<(String, Vec<TopicPartition>)> {
        self.awaiting
            .keys()
            .filter_map(|id| {
                let meta = self.txns.get(id)?;
                Some((id.clone(), meta.partitions.iter().cloned().collect()))
            })
            .collect()
    }
}

enum Outcome {
    Done,
    Retry,
    Stop,
}

fn marker_outcome(result: MarkerResult) -> Outcome {
    match result {
        MarkerResult::Written | MarkerResult::TopicDeleted => Outcome::Done,
        MarkerResult::Failed(
            ErrorCode::UNKNOWN_TOPIC_OR_PARTITION
            | ErrorCode::NOT_LEADER_OR_FOLLOWER
            | ErrorCode::NOT_ENOUGH_REPLICAS
            | ErrorCode::NOT_ENOUGH_REPLICAS_AFTER_APPEND
            | ErrorCode::REQUEST_TIMED_OUT
            | ErrorCode::KAFKA_STORAGE_ERROR,
        ) => Outcome::Retry,
        MarkerResult::Failed(
            ErrorCode::UNSUPPORTED_FOR_MESSAGE_FORMAT | ErrorCode::UNSUPPORTED_VERSION,
        ) => Outcome::Done,
        MarkerResult::Failed(_) => Outcome::Stop,
    }
}
