//! One core's ISR task (issue 21): sends the ISR changes its led partitions need to the
//! active controller as AlterPartition (Kafka 4.4, v3: each new member with its broker epoch,
//! KIP-903), through the control core's link. Expansions come from follower Fetches as they
//! happen (`Replication::follower_fetched`); shrinks from a check of lag every
//! [`CHECK_PERIOD`]. The new ISR takes effect when the controller's record reaches this core
//! in the metadata image; a refused change may be proposed again.

use std::rc::Rc;
use std::time::Duration;

use sluice_net::messages::AlterPartitionRequest;
use sluice_net::messages::alter_partition_request::{BrokerState, PartitionData, TopicData};
use sluice_net::{BrokerId, Request, Response, Uuid};

use crate::cluster_topics::Cluster;
use crate::core::Core;
use crate::errors::code;
use crate::replication::{IsrChange, now_ms};

/// How often led partitions are checked for followers that lag (Kafka checks every half
/// `replica.lag.time.max.ms`; this is finer so the time out of sync is close to the setting).
const CHECK_PERIOD: Duration = Duration::from_millis(500);

/// Runs until the broker stops.
pub async fn run(core: Rc<Core>) {
    let Some(expansions) = core.partitions.replication.take_changes() else {
        return;
    };
    while !core.stop.is_stopping() {
        let woken = futures_lite::future::or(async { expansions.recv().await }, async {
            futures_lite::future::or(glommio::timer::sleep(CHECK_PERIOD), core.stop.stopped())
                .await;
            None
        })
        .await;
        let mut changes: Vec<IsrChange> = woken.into_iter().collect();
        let lag_max = core.config.replica_lag_time_max_ms;
        changes.extend(core.partitions.replication.lagging(now_ms(), lag_max));
        for change in changes {
            let accepted = send(&core, &change).await;
            core.partitions
                .replication
                .change_answered(&change, accepted);
        }
    }
}

/// Sends one change; whether the controller accepted it.
async fn send(core: &Core, change: &IsrChange) -> bool {
    let image = core.topics();
    let epochs = image
        .cluster()
        .map(|c| c.epochs.clone())
        .unwrap_or_default();
    let broker_epoch = epochs.get(&core.config.node_id).copied().unwrap_or(-1);
    let request = AlterPartitionRequest {
        broker_id: BrokerId(core.config.node_id),
        broker_epoch,
        topics: vec![TopicData {
            topic_id: Uuid(change.topic_id),
            partitions: vec![PartitionData {
                partition_index: change.partition,
                leader_epoch: change.leader_epoch,
                new_isr_with_epochs: change
                    .new_isr
                    .iter()
                    .map(|&b| BrokerState {
                        broker_id: BrokerId(b),
                        broker_epoch: epochs.get(&b).copied().unwrap_or(-1),
                        ..Default::default()
                    })
                    .collect(),
                leader_recovery_state: 0,
                partition_epoch: change.partition_epoch,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    tracing::debug!(topic = %change.topic, partition = change.partition,
        isr = ?change.new_isr, "proposing an ISR change");
    let answer = core.forward(Request::AlterPartition(request)).await;
    let error = match &answer {
        Ok(Response::AlterPartition(r)) if r.error_code != code::NONE => r.error_code,
        Ok(Response::AlterPartition(r)) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .map(|p| p.error_code)
            .next()
            .unwrap_or(code::UNKNOWN_SERVER_ERROR),
        _ => code::UNKNOWN_SERVER_ERROR,
    };
    if error == code::NONE {
        tracing::info!(topic = %change.topic, partition = change.partition,
            isr = ?change.new_isr, "ISR changed");
    } else {
        // INELIGIBLE_REPLICA until a restarted follower is unfenced: proposed again on its
        // next Fetch.
        tracing::debug!(topic = %change.topic, partition = change.partition, error,
            "ISR change refused");
    }
    error == code::NONE
}
