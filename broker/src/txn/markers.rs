//! Writing a transaction's commit or abort markers (Kafka's `TransactionMarkerChannelManager`):
//! a control batch to every partition of the transaction, through this broker's partition
//! service for the partitions it leads and through WriteTxnMarkers to the leaders of the others;
//! then each partition's outcome goes back to the coordinator, which retries what failed.
//!
//! A marker on a `__consumer_offsets` partition also settles the transaction's offset commits
//! there (TxnOffsetCommit), which the group coordinator of that partition applies or drops.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use sluice_net::messages::write_txn_markers_request::{WritableTxnMarker, WritableTxnMarkerTopic};
use sluice_net::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};
use sluice_net::{ErrorCode, Request, Response};
use sluice_shard::Marker;
use sluice_txn::{MarkerResult, Markers, TopicPartition, TxnResult};

use crate::image::TopicImage;
use crate::messages::{Addressed, PartitionOp, PartitionOpResult};
use crate::router::Router;

/// How long a marker that failed waits before the coordinator retries it.
const RETRY_BACKOFF: Duration = Duration::from_millis(100);
/// How long a leader has to answer a WriteTxnMarkers.
const REMOTE_TIMEOUT: Duration = Duration::from_secs(30);
/// WriteTxnMarkers version sent to other brokers (v2 carries the transaction version).
const WRITE_TXN_MARKERS_VERSION: i16 = 2;

/// Where markers go from: this core's way to the others, and this broker's id.
pub struct From<'a> {
    pub router: &'a Rc<Router>,
    pub node_id: i32,
}

/// Writes `m`'s markers as `image` places the partitions; each partition's outcome (failures
/// after a short backoff, so the coordinator's retry does not spin).
pub async fn write(
    core: &From<'_>,
    image: &TopicImage,
    m: &Markers,
) -> Vec<(TopicPartition, MarkerResult)> {
    let marker = Marker {
        commit: m.result == TxnResult::Commit,
        coordinator_epoch: m.coordinator_epoch,
    };
    let mut results: Vec<(TopicPartition, MarkerResult)> = Vec::new();
    let mut local = Vec::new();
    let mut remote: BTreeMap<i32, Vec<TopicPartition>> = BTreeMap::new();
    for tp in &m.partitions {
        match image.partition(&tp.topic, tp.partition) {
            None if !image.topics().contains_key(&tp.topic) => {
                results.push((tp.clone(), MarkerResult::TopicDeleted));
            }
            None => results.push((
                tp.clone(),
                MarkerResult::Failed(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION),
            )),
            Some(_) if image.core_for(&tp.topic, tp.partition).is_some() => local.push(tp.clone()),
            Some(s) if s.leader >= 0 => remote.entry(s.leader).or_default().push(tp.clone()),
            Some(_) => results.push((
                tp.clone(),
                MarkerResult::Failed(ErrorCode::NOT_LEADER_OR_FOLLOWER),
            )),
        }
    }
    results.extend(write_local(core, image, m, marker, local).await);
    for (leader, partitions) in remote {
        results.extend(write_remote(core, image, leader, m, partitions).await);
    }
    if results
        .iter()
        .any(|(_, r)| matches!(r, MarkerResult::Failed(_)))
    {
        glommio::timer::sleep(RETRY_BACKOFF).await;
    }
    results
}

/// Writes the marker to partitions this broker leads.
async fn write_local(
    core: &From<'_>,
    image: &TopicImage,
    m: &Markers,
    marker: Marker,
    partitions: Vec<TopicPartition>,
) -> Vec<(TopicPartition, MarkerResult)> {
    if partitions.is_empty() {
        return Vec::new();
    }
    let ops = partitions
        .iter()
        .map(|tp| Addressed {
            topic: tp.topic.clone(),
            partition: tp.partition,
            op: PartitionOp::WriteMarker {
                producer_id: m.producer_id,
                producer_epoch: m.producer_epoch,
                marker,
                transaction_version: i8::try_from(m.transaction_version).unwrap_or(0),
            },
        })
        .collect();
    let answers = core.router.partitions(image, ops).await;
    let offsets_written: Vec<i32> = partitions
        .iter()
        .zip(&answers)
        .filter(|(tp, r)| {
            tp.topic == crate::groups::OFFSETS_TOPIC
                && matches!(r, PartitionOpResult::MarkerWritten(Ok(_)))
        })
        .map(|(tp, _)| tp.partition)
        .collect();
    settle_offsets(
        core.router,
        image,
        &offsets_written,
        (m.producer_id, marker.commit),
    )
    .await;
    partitions
        .into_iter()
        .zip(answers)
        .map(|(tp, answer)| {
            let result = match answer {
                PartitionOpResult::MarkerWritten(Ok(_)) => MarkerResult::Written,
                PartitionOpResult::MarkerWritten(Err(e)) => {
                    let code = crate::errors::part(e).code;
                    MarkerResult::Failed(
                        ErrorCode::from_code(code).unwrap_or(ErrorCode::UNKNOWN_SERVER_ERROR),
                    )
                }
                other => unreachable!("a marker op answered {other:?}"),
            };
            (tp, result)
        })
        .collect()
}

/// Sends WriteTxnMarkers for `partitions` to broker `leader`; every partition fails with
/// NOT_LEADER_OR_FOLLOWER (retried) when the leader cannot be reached.
async fn write_remote(
    core: &From<'_>,
    image: &TopicImage,
    leader: i32,
    m: &Markers,
    partitions: Vec<TopicPartition>,
) -> Vec<(TopicPartition, MarkerResult)> {
    let unreachable = |partitions: &[TopicPartition]| {
        partitions
            .iter()
            .map(|tp| {
                (
                    tp.clone(),
                    MarkerResult::Failed(ErrorCode::NOT_LEADER_OR_FOLLOWER),
                )
            })
            .collect::<Vec<_>>()
    };
    let endpoint = image.cluster().and_then(|c| c.live.get(&leader)).cloned();
    let Some(endpoint) = endpoint else {
        return unreachable(&partitions);
    };
    let request = WriteTxnMarkersRequest {
        markers: vec![marker_request(m, &partitions)],
        ..Default::default()
    };
    let client_id = format!("sluice-txn-markers-{}", core.node_id);
    let answer = crate::peer_calls::call(
        (&endpoint.host, endpoint.port),
        &client_id,
        WRITE_TXN_MARKERS_VERSION,
        &Request::WriteTxnMarkers(request),
        REMOTE_TIMEOUT,
    )
    .await;
    match answer {
        Some(Response::WriteTxnMarkers(r)) => remote_results(&r, &partitions),
        _ => unreachable(&partitions),
    }
}

/// One WriteTxnMarkers entry for `m` over `partitions`, grouped by topic.
fn marker_request(m: &Markers, partitions: &[TopicPartition]) -> WritableTxnMarker {
    let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for tp in partitions {
        topics.entry(&tp.topic).or_default().push(tp.partition);
    }
    WritableTxnMarker {
        producer_id: m.producer_id.into(),
        producer_epoch: m.producer_epoch,
        transaction_result: m.result == TxnResult::Commit,
        topics: topics
            .into_iter()
            .map(|(name, partition_indexes)| WritableTxnMarkerTopic {
                name: name.to_owned().into(),
                partition_indexes,
                ..Default::default()
            })
            .collect(),
        coordinator_epoch: m.coordinator_epoch,
        transaction_version: i8::try_from(m.transaction_version).unwrap_or(0),
        ..Default::default()
    }
}

/// Each partition's outcome in a WriteTxnMarkers answer (missing: retried).
fn remote_results(
    r: &WriteTxnMarkersResponse,
    partitions: &[TopicPartition],
) -> Vec<(TopicPartition, MarkerResult)> {
    partitions
        .iter()
        .map(|tp| {
            let code = r
                .markers
                .iter()
                .flat_map(|m| &m.topics)
                .filter(|t| t.name.as_str() == tp.topic)
                .flat_map(|t| &t.partitions)
                .find(|p| p.partition_index == tp.partition)
                .map_or(ErrorCode::NOT_LEADER_OR_FOLLOWER.code(), |p| p.error_code);
            let result = match ErrorCode::from_code(code) {
                Some(ErrorCode::NONE) => MarkerResult::Written,
                Some(e) => MarkerResult::Failed(e),
                None => MarkerResult::Failed(ErrorCode::UNKNOWN_SERVER_ERROR),
            };
            (tp.clone(), result)
        })
        .collect()
}

/// A marker of `producer_id` is written to these `__consumer_offsets` partitions: their group
/// coordinators commit or drop the offsets the transaction left pending there.
pub async fn settle_offsets(
    router: &Rc<Router>,
    image: &TopicImage,
    partitions: &[i32],
    (producer_id, commit): (i64, bool),
) {
    for &partition in partitions {
        let Some(owner) = image.core_for(crate::groups::OFFSETS_TOPIC, partition) else {
            continue;
        };
        let call = crate::groups::GroupCall::TxnEnded {
            partition,
            producer_id,
            commit,
        };
        let _ = router
            .call(owner, crate::messages::CoreRequest::Group(call))
            .await;
    }
}
