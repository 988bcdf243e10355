//! One core's ISR task (issue 21): sends the ISR changes its led partitions need to the
//! active controller as AlterPartition (Kafka 4.4, v3: each new member with its broker epoch,
//! KIP-903), through the control core's link, and hands each answer back to the partition's
//! `LeaderReplicas` (`Replication::change_answered`). Expansions come from follower Fetches as
//! they happen (`Replication::follower_fetched`); shrinks and resends of unanswered requests
//! from a tick every [`CHECK_PERIOD`]. An accepted change takes effect at once, as in Kafka;
//! the controller's record then reaches this core in the metadata image too.

use std::rc::Rc;
use std::time::Duration;

use sluice_net::messages::alter_partition_request::{BrokerState, PartitionData, TopicData};
use sluice_net::messages::{AlterPartitionRequest, AlterPartitionResponse};
use sluice_net::{BrokerId, Request, Response, Uuid};

use crate::cluster_topics::Cluster;
use crate::core::Core;
use crate::errors::code;
use crate::replication::{IsrAnswer, IsrChange, now_ms};
use sluice_replication::{AlterPartitionError, IsrMember};
use std::collections::{BTreeMap, HashMap};

/// How often led partitions are checked for followers that lag (Kafka checks every half
/// `replica.lag.time.max.ms`; this is finer so the time out of sync is close to the setting).
const CHECK_PERIOD: Duration = Duration::from_millis(500);

/// The most changes one AlterPartition carries: every change waiting when a request is sent
/// goes in it (Kafka's `AlterPartitionManager` batches its pending changes too), so a broker
/// that returns to a thousand ISRs waits for a few controller commits, not a thousand.
const BATCH_MAX: usize = 1_000;

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
        if let Some(first) = woken {
            let mut batch = vec![first];
            while batch.len() < BATCH_MAX {
                match futures_lite::future::poll_once(changes.recv()).await {
                    Some(Some(change)) => batch.push(change),
                    _ => break,
                }
            }
            let answers = send(&core, &batch).await;
            for (change, answer) in batch.iter().zip(answers) {
                let p = core.shard.partition(&change.topic, change.partition);
                replication.change_answered(change, answer, p, now_ms());
            }
        }
        // Every led partition is visited once a period, not after every change.
        if std::time::Instant::now() >= next_tick {
            replication.tick(now_ms(), |t, p| core.shard.partition(t, p));
            next_tick = std::time::Instant::now() + CHECK_PERIOD;
        }
    }
}

/// A partition of an AlterPartition: its topic id and index.
type PartitionKey = ([u8; 16], i32);

/// Sends `batch` in one AlterPartition and returns the controller's answer to each change, in
/// order. Of two changes of one partition only the later is sent (the earlier is answered
/// `None`, as if lost).
async fn send(core: &Core, batch: &[IsrChange]) -> Vec<IsrAnswer> {
    let mut latest: HashMap<PartitionKey, usize> = HashMap::new();
    for (i, change) in batch.iter().enumerate() {
        latest.insert((change.topic_id, change.partition), i);
    }
    let sent = |i: usize, c: &IsrChange| latest.get(&(c.topic_id, c.partition)) == Some(&i);
    let kept: Vec<&IsrChange> = (0..)
        .zip(batch)
        .filter(|(i, c)| sent(*i, c))
        .map(|(_, c)| c)
        .collect();
    let request = alter_partition(core, &kept);
    let answers = match core.forward(Request::AlterPartition(request)).await {
        Ok(Response::AlterPartition(r)) if r.error_code == code::NONE => answers_of(r),
        // A top-level error (NOT_CONTROLLER, STALE_BROKER_EPOCH) or no answer: each change is
        // sent again after the retry time.
        _ => HashMap::new(),
    };
    (0..)
        .zip(batch)
        .map(|(i, change)| {
            let answer = if sent(i, change) {
                answers
                    .get(&(change.topic_id, change.partition))
                    .cloned()
                    .flatten()
            } else {
                None
            };
            log_answer(change, &answer);
            answer
        })
        .collect()
}

/// The AlterPartition for `changes` (one partition each), grouped by topic.
fn alter_partition(core: &Core, changes: &[&IsrChange]) -> AlterPartitionRequest {
    let image = core.topics();
    let epochs = image
        .cluster()
        .map(|c| c.epochs.clone())
        .unwrap_or_default();
    let node = core.config.node_id;
    let mut topics: BTreeMap<[u8; 16], Vec<PartitionData>> = BTreeMap::new();
    for change in changes {
        let request = &change.request;
        tracing::debug!(topic = %change.topic, partition = change.partition,
            isr = ?request.new_isr, "proposing an ISR change");
        topics
            .entry(change.topic_id)
            .or_default()
            .push(PartitionData {
                partition_index: change.partition,
                leader_epoch: request.leader_epoch.0,
                new_isr_with_epochs: request
                    .new_isr
                    .iter()
                    .map(|m| BrokerState {
                        broker_id: BrokerId(m.replica_id.0),
                        broker_epoch: member_epoch(m, node, &epochs),
                        ..Default::default()
                    })
                    .collect(),
                leader_recovery_state: 0,
                partition_epoch: request.partition_epoch.0,
                ..Default::default()
            });
    }
    AlterPartitionRequest {
        broker_id: BrokerId(node),
        broker_epoch: epochs.get(&node).copied().unwrap_or(-1),
        topics: topics
            .into_iter()
            .map(|(id, partitions)| TopicData {
                topic_id: Uuid(id),
                partitions,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// Each answered partition's answer. A partition-level NOT_CONTROLLER is sent again after
/// the retry time rather than at once (`None`): the controller's image is behind this
/// leader's (it has just taken over), so give it time.
fn answers_of(r: AlterPartitionResponse) -> HashMap<PartitionKey, IsrAnswer> {
    let mut answers = HashMap::new();
    for t in r.topics {
        for p in t.partitions {
            let answer = match error_of(p.error_code) {
                None => Some(Ok((p.leader_epoch, p.partition_epoch, ids(&p.isr)))),
                Some(AlterPartitionError::NotController) => None,
                Some(e) => Some(Err(e)),
            };
            answers.insert((t.topic_id.0, p.partition_index), answer);
        }
    }
    answers
}

fn log_answer(change: &IsrChange, answer: &IsrAnswer) {
    match answer {
        Some(Ok((_, _, now))) => {
            tracing::info!(topic = %change.topic, partition = change.partition, isr = ?now,
                "ISR changed");
        }
        // INELIGIBLE_REPLICA until a restarted follower is unfenced: proposed again on its
        // next Fetch.
        other => tracing::debug!(topic = %change.topic, partition = change.partition,
            answer = ?other, "ISR change refused or unanswered"),
    }
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
