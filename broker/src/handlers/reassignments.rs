//! AlterPartitionReassignments (v0-1) and ListPartitionReassignments (v0), KIP-455, as
//! `kafka-reassign-partitions` and `Admin.alterPartitionReassignments` use them.
//!
//! On a cluster both go to the active controller, as a Kafka 4.4 broker forwards them: it
//! starts, replaces or cancels each reassignment (the partition's replicas become the target
//! plus the replicas leaving; the new ones fetch like any follower, and once the ISR holds
//! the target the controller completes it: the leaving replicas are dropped, and a broker
//! dropped deletes its replica) and lists those in progress. Without an answer from a
//! controller: REQUEST_TIMED_OUT.
//!
//! A single-node broker has one possible assignment per partition, itself: that target is
//! accepted (there is nothing to move), another broker is not registered
//! (INVALID_REPLICA_ASSIGNMENT, Kafka's message), a cancel finds nothing in progress
//! (NO_REASSIGNMENT_IN_PROGRESS), and the list is empty.

use std::rc::Rc;

use sluice_net::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use sluice_net::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
};
use sluice_net::{Request, Response, StrBytes};

use crate::cluster_topics::Cluster;
use crate::core::Core;
use crate::errors::code;

pub async fn alter(
    core: &Rc<Core>,
    request: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    if core.config.is_cluster() {
        let allow = request.allow_replication_factor_change;
        return match core
            .forward(Request::AlterPartitionReassignments(request))
            .await
        {
            Ok(Response::AlterPartitionReassignments(answer)) => answer,
            _ => AlterPartitionReassignmentsResponse {
                error_code: code::REQUEST_TIMED_OUT,
                allow_replication_factor_change: allow,
                ..Default::default()
            },
        };
    }
    let image = core.topics();
    let me = core.config.node_id;
    let responses = request
        .topics
        .iter()
        .map(|t| ReassignableTopicResponse {
            name: t.name.clone(),
            partitions: t
                .partitions
                .iter()
                .map(|p| {
                    let name = t.name.as_str();
                    let index = p.partition_index;
                    let outcome = if !image.topics().contains_key(name) {
                        Err((
                            code::UNKNOWN_TOPIC_OR_PARTITION,
                            Some(format!("Unable to find a topic named {name}.")),
                        ))
                    } else if image.partition(name, index).is_none() {
                        Err((
                            code::UNKNOWN_TOPIC_OR_PARTITION,
                            Some(format!("Unable to find partition {name}:{index}.")),
                        ))
                    } else {
                        single_node_target(me, p.replicas.as_deref())
                    };
                    partition_answer(index, outcome)
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    AlterPartitionReassignmentsResponse {
        allow_replication_factor_change: request.allow_replication_factor_change,
        responses,
        ..Default::default()
    }
}

/// A single node's answer to a target: itself alone is its assignment already.
fn single_node_target(
    me: i32,
    target: Option<&[sluice_net::BrokerId]>,
) -> Result<(), (i16, Option<String>)> {
    let Some(target) = target else {
        return Err((code::NO_REASSIGNMENT_IN_PROGRESS, None));
    };
    if target.is_empty() {
        let message = "The manual partition assignment includes an empty replica list.";
        return Err((code::INVALID_REPLICA_ASSIGNMENT, Some(message.into())));
    }
    let mut sorted: Vec<i32> = target.iter().map(|b| b.0).collect();
    sorted.sort_unstable();
    for (i, &b) in sorted.iter().enumerate() {
        if b != me {
            let message = format!(
                "The manual partition assignment includes broker {b}, but no such broker is \
                 registered."
            );
            return Err((code::INVALID_REPLICA_ASSIGNMENT, Some(message)));
        }
        if i > 0 && sorted[i - 1] == b {
            let message =
                format!("The manual partition assignment includes the broker {b} more than once.");
            return Err((code::INVALID_REPLICA_ASSIGNMENT, Some(message)));
        }
    }
    Ok(())
}

fn partition_answer(
    partition_index: i32,
    outcome: Result<(), (i16, Option<String>)>,
) -> ReassignablePartitionResponse {
    let (error_code, message) = outcome.err().unwrap_or((code::NONE, None));
    ReassignablePartitionResponse {
        partition_index,
        error_code,
        error_message: message.map(StrBytes::from),
        ..Default::default()
    }
}

pub async fn list(
    core: &Rc<Core>,
    request: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    if !core.config.is_cluster() {
        return ListPartitionReassignmentsResponse::default();
    }
    match core
        .forward(Request::ListPartitionReassignments(request))
        .await
    {
        Ok(Response::ListPartitionReassignments(answer)) => answer,
        _ => ListPartitionReassignmentsResponse {
            error_code: code::REQUEST_TIMED_OUT,
            ..Default::default()
        },
    }
}
