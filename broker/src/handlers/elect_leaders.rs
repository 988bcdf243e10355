//! ElectLeaders (KIP-460: `kafka-leader-election`, `Admin.electLeaders`), versions 0 to 2.
//!
//! On a cluster the request goes to the active controller, which decides every partition
//! (preferred: the first replica leads again if it is in the ISR and active; unclean: a
//! leaderless partition takes any live replica) and answers once its records are committed;
//! this broker relays the answer. Without an answer from a controller every partition asked
//! gets REQUEST_TIMED_OUT (all partitions: a top-level error), as a Kafka broker whose
//! forwarding times out.
//!
//! A single-node broker leads every partition it has with its one replica, so, as Kafka 4.4
//! answers on one node: each partition asked gets ELECTION_NOT_NEEDED, an unknown topic or
//! partition UNKNOWN_TOPIC_OR_PARTITION ("No such topic as T" / "No such partition as T-P"),
//! and "every partition" (null) an empty list, since nothing was elected.

use std::rc::Rc;

use sluice_net::StrBytes;
use sluice_net::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use sluice_net::messages::{ElectLeadersRequest, ElectLeadersResponse};
use sluice_net::{Request, Response};

use crate::cluster_topics::Cluster;
use crate::core::Core;
use crate::errors::code;

pub async fn handle(core: &Rc<Core>, request: ElectLeadersRequest) -> ElectLeadersResponse {
    if core.config.is_cluster() {
        let asked = request.topic_partitions.clone();
        return match core.forward(Request::ElectLeaders(request)).await {
            Ok(Response::ElectLeaders(answer)) => answer,
            _ => unanswered(asked.as_deref()),
        };
    }
    let image = core.topics();
    let results = request
        .topic_partitions
        .unwrap_or_default()
        .into_iter()
        .map(|t| {
            let partition_result = t
                .partitions
                .iter()
                .map(|&p| {
                    let (error_code, message) = match image.partition(t.topic.as_str(), p) {
                        Some(_) => (code::ELECTION_NOT_NEEDED, None),
                        None if image.topics().contains_key(t.topic.as_str()) => (
                            code::UNKNOWN_TOPIC_OR_PARTITION,
                            Some(format!("No such partition as {}-{p}", t.topic.as_str())),
                        ),
                        None => (
                            code::UNKNOWN_TOPIC_OR_PARTITION,
                            Some(format!("No such topic as {}", t.topic.as_str())),
                        ),
                    };
                    result(p, error_code, message)
                })
                .collect();
            ReplicaElectionResult {
                topic: t.topic,
                partition_result,
                ..Default::default()
            }
        })
        .collect();
    ElectLeadersResponse {
        replica_election_results: results,
        ..Default::default()
    }
}

/// The answer when no controller answered: REQUEST_TIMED_OUT for each partition asked, or
/// as the top-level error when every partition was asked.
fn unanswered(
    asked: Option<&[sluice_net::messages::elect_leaders_request::TopicPartitions]>,
) -> ElectLeadersResponse {
    let Some(asked) = asked else {
        return ElectLeadersResponse {
            error_code: code::REQUEST_TIMED_OUT,
            ..Default::default()
        };
    };
    let results = asked
        .iter()
        .map(|t| ReplicaElectionResult {
            topic: t.topic.clone(),
            partition_result: t
                .partitions
                .iter()
                .map(|&p| result(p, code::REQUEST_TIMED_OUT, None))
                .collect(),
            ..Default::default()
        })
        .collect();
    ElectLeadersResponse {
        replica_election_results: results,
        ..Default::default()
    }
}

fn result(partition_id: i32, error_code: i16, message: Option<String>) -> PartitionResult {
    PartitionResult {
        partition_id,
        error_code,
        error_message: message.map(StrBytes::from),
        ..Default::default()
    }
}
