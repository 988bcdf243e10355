//! One core's ISR task (issue 21): sends the ISR changes its led partitions need to the
//! active controller as AlterPartition (Kafka 4.4, v3: each new member with its broker epoch,
//! KIP-903), through the control core's link, and hands each answer back to the partition's
//! `LeaderReplicas` (`Replication::change_answered`). Expansions come from follower Fetches as
//! they happen (`Replication::follower_fetched`); shrinks and resends of unanswered requests
//! from a tick every [`CHECK_PERIOD`]. An accepted change takes effect at once, as in Kafka;
//! the controller's record then reaches this core in the metadata image too.

use std::rc::Rc;
use std::time::Duration;

use sluice_net::messages::AlterPartitionRequest;
use sluice_net::messages::alter_partition_request::{BrokerState, PartitionData, TopicData};
use sluice_net::{BrokerId, Request, Response, Uuid};

use crate::cluster_topics::Cluster;
use crate::core::Core;
use crate::errors::code;
use crate::replication::{IsrAnswer, IsrChange, now_ms};
use sluice_replication::{AlterPartitionError, IsrMember};
use std::collections::BTreeMap;

/// How often led partitions are checked for followers that lag (Kafka checks every half
/// `replica.lag.time.max.ms`; this is finer so the time out of sync is close to the setting).
const CHECK_PERIOD: Duration = Duration::from_millis(500);

/// Runs until the broker stops.
pub async fn run(core: Rc<Core>) {
    let Some(changes) = core.partitions.replication.take_changes() else {
        return;
    };
    let replication = &core.partitions.replication;
    let mut next_tick = std::time::Instant::now();
    while !core.stop.is_stopping() {
        let woken = futures_lite::future::or(async { changes.recv().await }, async {
            futures_lite::future::or(glommio::timer::sleep(CHECK_PERIOD), core.stop.stopped())
                .await;
            None
        })
        .await;
        if let Some(change) = woken {
            let answer = send(&core, &change).await;
            let p = core.shard.partition(&change.topic, change.partition);
            replication.change_answered(&change, answer, p, now_ms());
        }
        // Every led partition is visited once a period, not after every change.
        if std::time::Instant::now() >= next_tick {
            replication.tick(now_ms(), |t, p| core.shard.partition(t, p));
            next_tick = std::time::Instant::now() + CHECK_PERIOD;
        }
    }
}

/// Sends one change and returns the controller's answer.
async fn send(core: &Core, change: &IsrChange) -> IsrAnswer {
    let image = core.topics();
    let epochs = image
        .cluster()
        .map(|c| c.epochs.clone())
        .unwrap_or_default();
    let broker_epoch = epochs.get(&core.config.node_id).copied().unwrap_or(-1);
    let request = &change.request;
    let isr: Vec<i32> = request.new_isr.iter().map(|m| m.replica_id.0).collect();
    let alter = AlterPartitionRequest {
        broker_id: BrokerId(core.config.node_id),
        broker_epoch,
        topics: vec![TopicData {
            topic_id: Uuid(change.topic_id),
            partitions: vec![PartitionData {
                partition_index: change.partition,
                leader_epoch: request.leader_epoch.0,
                new_isr_with_epochs: request
                    .new_isr
                    .iter()
                    .map(|m| BrokerState {
                        broker_id: BrokerId(m.replica_id.0),
                        broker_epoch: member_epoch(m, core.config.node_id, &epochs),
                        ..Default::default()
                    })
                    .collect(),
                leader_recovery_state: 0,
                partition_epoch: request.partition_epoch.0,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    tracing::debug!(topic = %change.topic, partition = change.partition, ?isr,
        "proposing an ISR change");
    let answer = match core.forward(Request::AlterPartition(alter)).await {
        Ok(Response::AlterPartition(r)) if r.error_code == code::NONE => r
            .topics
            .into_iter()
            .flat_map(|t| t.partitions)
            .next()
            .and_then(|p| match error_of(p.error_code) {
                None => Some(Ok((p.leader_epoch, p.partition_epoch, ids(&p.isr)))),
                // Sent again after the retry time rather than at once: the controller's image
                // is behind this leader's (it has just taken over), so give it time.
                Some(AlterPartitionError::NotController) => None,
                Some(e) => Some(Err(e)),
            }),
        // A top-level error (NOT_CONTROLLER, STALE_BROKER_EPOCH) or no answer: sent again
        // after the retry time.
        _ => None,
    };
    match &answer {
        Some(Ok((_, _, now))) => {
            tracing::info!(topic = %change.topic, partition = change.partition, isr = ?now,
                "ISR changed");
        }
        // INELIGIBLE_REPLICA until a restarted follower is unfenced: proposed again on its
        // next Fetch.
        other => tracing::debug!(topic = %change.topic, partition = change.partition,
            answer = ?other, "ISR change refused or unanswered"),
    }
    answer
}

/// A member's broker epoch in the request: this broker's own from the image, a follower's as
/// its last Fetch gave it (KIP-903), else the image's (-1 when unknown: the controller then
/// skips the check, as Kafka's).
fn member_epoch(m: &IsrMember, node: i32, epochs: &BTreeMap<i32, i64>) -> i64 {
    let from_image = epochs.get(&m.replica_id.0).copied().unwrap_or(-1);
    match m.broker_epoch {
        Some(e) if m.replica_id.0 != node && e.0 >= 0 => e.0,
        _ => from_image,
    }
}

/// An AlterPartition partition error as the leader's state takes it (`None`: no error).
/// Errors of a partition the controller no longer has this broker lead (or no longer has)
/// wait for the metadata, as INVALID_REQUEST does.
fn error_of(code: i16) -> Option<AlterPartitionError> {
    Some(match code {
        code::NONE => return None,
        code::INVALID_UPDATE_VERSION => AlterPartitionError::InvalidUpdateVersion,
        code::FENCED_LEADER_EPOCH => AlterPartitionError::FencedLeaderEpoch,
        code::INELIGIBLE_REPLICA => AlterPartitionError::IneligibleReplica,
        code::OPERATION_NOT_ATTEMPTED => AlterPartitionError::OperationNotAttempted,
        code::NOT_CONTROLLER => AlterPartitionError::NotController,
        _ => AlterPartitionError::InvalidRequest,
    })
}

fn ids(brokers: &[BrokerId]) -> Vec<i32> {
    brokers.iter().map(|b| b.0).collect()
}
