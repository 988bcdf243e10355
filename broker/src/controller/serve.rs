//! The controller listener's requests: ApiVersions, the quorum's own (Vote, BeginQuorumEpoch,
//! EndQuorumEpoch, Fetch of `__cluster_metadata-0`) and DescribeQuorum, which
//! `kafka-metadata-quorum --bootstrap-controller` sends, and the brokers' BrokerRegistration,
//! BrokerHeartbeat, AllocateProducerIds and AlterPartition (a leader's ISR change), decided by
//! the active controller and answered once their records commit. Anything else closes the
//! connection, as Kafka's controller listener does for APIs it does not serve.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;

use bytes::Bytes;
use sluice_controller::wire::{METADATA_TOPIC, Refusal, Wire};
use sluice_controller::{Controller, Proposal};
use sluice_net::error_code::code;
use sluice_net::messages::api_versions_response::ApiVersion;
use sluice_net::messages::{
    AllocateProducerIdsResponse, AlterPartitionReassignmentsResponse, AlterPartitionResponse,
    ApiVersionsResponse, BeginQuorumEpochResponse, BrokerHeartbeatResponse,
    BrokerRegistrationResponse, DescribeClusterResponse, DescribeQuorumResponse,
    ElectLeadersResponse, FetchResponse, FetchSnapshotResponse, ListPartitionReassignmentsResponse,
    VoteResponse, describe_cluster_response::DescribeClusterBroker, describe_quorum_response as dq,
};
use sluice_net::{ApiKey, BrokerId, Request, Response, decode_request, response_frame};
use sluice_quorum::{Log, ReplicaDescription};

use super::node::{Node, Stamped};
use crate::connection::Outcome;

/// The APIs the controller listener answers, with the versions it accepts.
const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Fetch, 13, 17),
    (ApiKey::ApiVersions, 0, 5),
    (ApiKey::Vote, 0, 2),
    (ApiKey::BeginQuorumEpoch, 0, 1),
    (ApiKey::EndQuorumEpoch, 0, 1),
    (ApiKey::DescribeQuorum, 0, 2),
    (ApiKey::FetchSnapshot, 0, 1),
    (ApiKey::DescribeCluster, 1, 2),
    (ApiKey::BrokerRegistration, 0, 4),
    (ApiKey::BrokerHeartbeat, 0, 2),
    (ApiKey::AllocateProducerIds, 0, 0),
    (ApiKey::AlterPartition, 2, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::AlterPartitionReassignments, 0, 1),
    (ApiKey::ListPartitionReassignments, 0, 0),
];

/// The listener name controllers advertise (Kafka's default `CONTROLLER`).
const LISTENER: &str = "CONTROLLER";
/// The answer to a DescribeCluster for broker endpoints sent to a controller.
const WRONG_ENDPOINT_TYPE: &str = concat!(
    "The request was sent to an endpoint of type CONTROLLER, ",
    "but we wanted an endpoint of type BROKER"
);
/// DescribeCluster's endpoint type for controllers (KIP-919).
const CONTROLLER_ENDPOINTS: i8 = 2;

/// What a controller connection needs.
pub struct Served<L: Log> {
    pub node: Rc<RefCell<Node<L>>>,
    pub wire: Rc<Wire>,
    pub clock: Rc<dyn Fn() -> u64>,
    /// Every voter's controller address.
    pub endpoints: Vec<(i32, SocketAddr)>,
}

impl<L: Log + Stamped> Served<L> {
    /// Answers one request frame.
    pub async fn handle(&self, frame: Bytes) -> Outcome {
        let (header, request) = match decode_request(frame) {
            Ok(decoded) => decoded,
            Err(e) => return Outcome::Close(format!("controller listener: {e}")),
        };
        let api = request.api_key();
        let version = header.request_api_version;
        let supported = SUPPORTED
            .iter()
            .any(|&(k, lo, hi)| k == api && (lo..=hi).contains(&version));
        if !supported {
            return Outcome::Close(format!(
                "controller listener does not serve {api:?} v{version}"
            ));
        }
        let response = match &request {
            Request::ApiVersions(_) => Ok(api_versions()),
            Request::DescribeQuorum(_) => Ok(self.describe_quorum()),
            Request::DescribeCluster(r) => Ok(self.describe_cluster(r.endpoint_type)),
            Request::EndQuorumEpoch(_) => self
                .quorum(api, &request)
                .map(|_| sluice_controller::wire::Wire::end_quorum_epoch_response()),
            _ => match self.decision(version, &request).await {
                Some(response) => Ok(response),
                None => self
                    .quorum(api, &request)
                    .and_then(|answer| answer.ok_or(code::UNKNOWN_SERVER_ERROR)),
            },
        };
        let response = match response {
            Ok(response) => response,
            Err(error) => refusal(api, error),
        };
        Outcome::Respond(response_frame(api, version, header.correlation_id, |e| {
            response.encode(e, version)
        }))
    }

    /// A request the active controller decides (a broker's, or a forwarded topic change):
    /// its answer once committed; `None` for any other request.
    async fn decision(&self, version: i16, request: &Request) -> Option<Response> {
        let api = request.api_key();
        let response = match request {
            Request::BrokerRegistration(r) => {
                self.decide(
                    api,
                    |c, now| c.register_broker(now, r),
                    Response::BrokerRegistration,
                )
                .await
            }
            Request::BrokerHeartbeat(r) => {
                self.decide(
                    api,
                    |c, now| c.broker_heartbeat(now, r),
                    Response::BrokerHeartbeat,
                )
                .await
            }
            Request::AllocateProducerIds(r) => {
                self.decide(
                    api,
                    |c, _| c.allocate_producer_ids(r),
                    Response::AllocateProducerIds,
                )
                .await
            }
            Request::AlterPartition(r) => {
                self.decide(
                    api,
                    |c, _| c.alter_partition(version, r),
                    Response::AlterPartition,
                )
                .await
            }
            Request::CreateTopics(r) => {
                self.decide_for(request, |c, _| c.create_topics(r), Response::CreateTopics)
                    .await
            }
            Request::CreatePartitions(r) => {
                self.decide_for(
                    request,
                    |c, _| c.create_partitions(r),
                    Response::CreatePartitions,
                )
                .await
            }
            Request::DeleteTopics(r) => {
                self.decide_for(request, |c, _| c.delete_topics(r), Response::DeleteTopics)
                    .await
            }
            Request::IncrementalAlterConfigs(r) => {
                self.decide_for(
                    request,
                    |c, _| c.incremental_alter_configs(r),
                    Response::IncrementalAlterConfigs,
                )
                .await
            }
            Request::ElectLeaders(r) => {
                self.decide(api, |c, _| c.elect_leaders(r), Response::ElectLeaders)
                    .await
            }
            _ => return self.reassignment(request).await,
        };
        Some(response)
    }

    /// AlterPartitionReassignments and ListPartitionReassignments; `None` for other requests.
    async fn reassignment(&self, request: &Request) -> Option<Response> {
        let api = request.api_key();
        let response = match request {
            Request::AlterPartitionReassignments(r) => {
                self.decide(
                    api,
                    |c, _| c.alter_partition_reassignments(r),
                    Response::AlterPartitionReassignments,
                )
                .await
            }
            // Answered from the speculative image once everything proposed is committed, so
            // it is the committed state, as Kafka answers it.
            Request::ListPartitionReassignments(r) => {
                let list = |c: &mut Controller, _| Proposal {
                    first_offset: c.next_offset(),
                    records: Vec::new(),
                    reply: c.list_partition_reassignments(r),
                };
                self.decide(api, list, Response::ListPartitionReassignments)
                    .await
            }
            _ => return None,
        };
        Some(response)
    }

    /// A decision of the active controller: its records are proposed, and its answer sent once
    /// they are committed. NOT_CONTROLLER when this node is not (or stops being) the active
    /// controller, so the broker looks for the new one.
    async fn decide<T>(
        &self,
        api: ApiKey,
        decide: impl FnOnce(&mut Controller, u64) -> Proposal<T>,
        wrap: impl FnOnce(T) -> Response,
    ) -> Response {
        self.decide_or(|error| refusal(api, error), decide, wrap)
            .await
    }

    /// [`Served::decide`] for a request whose refusal is per topic (a forwarded topic change).
    async fn decide_for<T>(
        &self,
        request: &Request,
        decide: impl FnOnce(&mut Controller, u64) -> Proposal<T>,
        wrap: impl FnOnce(T) -> Response,
    ) -> Response {
        self.decide_or(|error| topics_refusal(request, error), decide, wrap)
            .await
    }

    async fn decide_or<T>(
        &self,
        refuse: impl Fn(i16) -> Response,
        decide: impl FnOnce(&mut Controller, u64) -> Proposal<T>,
        wrap: impl FnOnce(T) -> Response,
    ) -> Response {
        let now = (self.clock)();
        let (committed, reply) = {
            let mut node = self.node.borrow_mut();
            let Some(controller) = node.controller.as_mut() else {
                return refuse(code::NOT_CONTROLLER);
            };
            let proposal = decide(controller, now);
            (node.propose(&proposal), proposal.reply)
        };
        match committed {
            Some(rx) if rx.recv().await.is_some() => wrap(reply),
            _ => refuse(code::NOT_CONTROLLER),
        }
    }

    /// Hands a quorum request to the node; its answer, if the replica gave one.
    fn quorum(&self, api: ApiKey, request: &Request) -> Result<Option<Response>, i16> {
        let (from, message) = match self.wire.from_request(request) {
            Ok(decoded) => decoded,
            Err(Refusal::Error(error)) => return Err(error),
            Err(Refusal::NotQuorum) => return Err(code::INVALID_REQUEST),
        };
        let now = (self.clock)();
        let answer = self
            .node
            .borrow_mut()
            .receive(now, from, message, Some(api))
            .map_err(|e| {
                tracing::error!(error = %e, "cannot persist the quorum state");
                code::KAFKA_STORAGE_ERROR
            })?;
        let now_ms = i64::try_from(now).unwrap_or(0);
        Ok(answer.and_then(|m| self.wire.response(api, &m, now_ms)))
    }

    /// The quorum as the leader sees it (KIP-595's DescribeQuorum; v2 adds the voters'
    /// endpoints). A non-leader answers NOT_LEADER_OR_FOLLOWER on the partition, as Kafka's
    /// does.
    fn describe_quorum(&self) -> Response {
        let Some(d) = self.node.borrow().replica.describe() else {
            // As Kafka: no top-level error, the partition's says this node does not lead.
            return Response::DescribeQuorum(DescribeQuorumResponse {
                topics: vec![dq::TopicData {
                    topic_name: METADATA_TOPIC.into(),
                    partitions: vec![dq::PartitionData {
                        partition_index: 0,
                        error_code: code::NOT_LEADER_OR_FOLLOWER,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            });
        };
        let now = (self.clock)();
        let state = |r: &ReplicaDescription| dq::ReplicaState {
            replica_id: BrokerId(r.id.0),
            log_end_offset: r.log_end_offset.map_or(-1, |o| o.0),
            last_fetch_timestamp: r.last_fetch_ms.map_or(-1, |t| wall_ms(now, t)),
            last_caught_up_timestamp: r.last_caught_up_ms.map_or(-1, |t| wall_ms(now, t)),
            ..Default::default()
        };
        let nodes = self
            .endpoints
            .iter()
            .map(|(id, addr)| dq::Node {
                node_id: BrokerId(*id),
                listeners: vec![dq::Listener {
                    name: LISTENER.into(),
                    host: addr.ip().to_string().into(),
                    port: addr.port(),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect();
        Response::DescribeQuorum(DescribeQuorumResponse {
            topics: vec![dq::TopicData {
                topic_name: METADATA_TOPIC.into(),
                partitions: vec![dq::PartitionData {
                    partition_index: 0,
                    leader_id: BrokerId(d.leader.0),
                    leader_epoch: d.epoch.0,
                    high_watermark: d.high_watermark.0,
                    current_voters: d.voters.iter().map(state).collect(),
                    observers: d.observers.iter().map(state).collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            nodes,
            ..Default::default()
        })
    }

    /// The controllers, for a client bootstrapped with `--bootstrap-controller` (KIP-919): the
    /// voters with their controller addresses and the active controller (-1 while none is
    /// known). Asked for brokers, a controller answers MISMATCHED_ENDPOINT_TYPE.
    fn describe_cluster(&self, endpoint_type: i8) -> Response {
        if endpoint_type != CONTROLLER_ENDPOINTS {
            return Response::DescribeCluster(DescribeClusterResponse {
                error_code: code::MISMATCHED_ENDPOINT_TYPE,
                error_message: Some(WRONG_ENDPOINT_TYPE.into()),
                endpoint_type: CONTROLLER_ENDPOINTS,
                ..Default::default()
            });
        }
        let leader = self.node.borrow().replica.leader().map_or(-1, |n| n.0);
        Response::DescribeCluster(DescribeClusterResponse {
            endpoint_type: CONTROLLER_ENDPOINTS,
            cluster_id: self.wire.cluster_id.as_str().into(),
            controller_id: BrokerId(leader),
            brokers: self
                .endpoints
                .iter()
                .map(|(id, addr)| DescribeClusterBroker {
                    broker_id: BrokerId(*id),
                    host: addr.ip().to_string().into(),
                    port: i32::from(addr.port()),
                    ..Default::default()
                })
                .collect(),
            cluster_authorized_operations: i32::MIN,
            ..Default::default()
        })
    }
}

/// Wall-clock milliseconds of shard-clock time `at_ms`, given the shard clock reads `now_ms`.
fn wall_ms(now_ms: u64, at_ms: u64) -> i64 {
    crate::registry::now_ms() - i64::try_from(now_ms.saturating_sub(at_ms)).unwrap_or(0)
}

fn api_versions() -> Response {
    Response::ApiVersions(ApiVersionsResponse {
        api_keys: SUPPORTED
            .iter()
            .map(|&(k, lo, hi)| ApiVersion {
                api_key: k.key(),
                min_version: lo,
                max_version: hi,
                ..ApiVersion::default()
            })
            .collect(),
        ..ApiVersionsResponse::default()
    })
}

/// The answer to a topic change this node cannot decide: `error` on every topic named.
fn topics_refusal(request: &Request, error: i16) -> Response {
    use sluice_net::messages::DeleteTopicsResponse;
    use sluice_net::messages::create_partitions_response::CreatePartitionsTopicResult;
    use sluice_net::messages::create_topics_response::CreatableTopicResult;
    use sluice_net::messages::delete_topics_response::DeletableTopicResult;
    use sluice_net::messages::{CreatePartitionsResponse, CreateTopicsResponse};
    // Kafka's text for NOT_CONTROLLER, the one refusal this listener gives a topic change.
    let message = (error == code::NOT_CONTROLLER).then(|| {
        sluice_net::StrBytes::from("This is not the correct controller for this cluster.")
    });
    match request {
        Request::CreateTopics(r) => Response::CreateTopics(CreateTopicsResponse {
            topics: r
                .topics
                .iter()
                .map(|t| CreatableTopicResult {
                    name: t.name.clone(),
                    error_code: error,
                    error_message: message.clone(),
                    num_partitions: -1,
                    replication_factor: -1,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        Request::CreatePartitions(r) => Response::CreatePartitions(CreatePartitionsResponse {
            results: r
                .topics
                .iter()
                .map(|t| CreatePartitionsTopicResult {
                    name: t.name.clone(),
                    error_code: error,
                    error_message: message.clone(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        Request::DeleteTopics(r) => {
            let names = r.topic_names.iter().cloned().map(Some);
            let named = r.topics.iter().map(|t| t.name.clone());
            Response::DeleteTopics(DeleteTopicsResponse {
                responses: names
                    .chain(named)
                    .map(|name| DeletableTopicResult {
                        name,
                        error_code: error,
                        error_message: message.clone(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
        }
        Request::IncrementalAlterConfigs(r) => {
            use sluice_net::messages::IncrementalAlterConfigsResponse;
            use sluice_net::messages::incremental_alter_configs_response as iac;
            Response::IncrementalAlterConfigs(IncrementalAlterConfigsResponse {
                responses: r
                    .resources
                    .iter()
                    .map(|x| iac::AlterConfigsResourceResponse {
                        error_code: error,
                        error_message: message.clone(),
                        resource_type: x.resource_type,
                        resource_name: x.resource_name.clone(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
        }
        other => refusal(other.api_key(), error),
    }
}

/// A response of `api` carrying only a top-level error.
fn refusal(api: ApiKey, error: i16) -> Response {
    match api {
        ApiKey::Vote => Response::Vote(VoteResponse {
            error_code: error,
            ..Default::default()
        }),
        ApiKey::BeginQuorumEpoch => Response::BeginQuorumEpoch(BeginQuorumEpochResponse {
            error_code: error,
            ..Default::default()
        }),
        ApiKey::Fetch => Response::Fetch(FetchResponse {
            error_code: error,
            ..Default::default()
        }),
        ApiKey::DescribeQuorum => Response::DescribeQuorum(DescribeQuorumResponse {
            error_code: error,
            ..Default::default()
        }),
        ApiKey::FetchSnapshot => Response::FetchSnapshot(FetchSnapshotResponse {
            error_code: error,
            ..Default::default()
        }),
        ApiKey::BrokerRegistration => Response::BrokerRegistration(BrokerRegistrationResponse {
            error_code: error,
            broker_epoch: -1,
            ..Default::default()
        }),
        ApiKey::BrokerHeartbeat => Response::BrokerHeartbeat(BrokerHeartbeatResponse {
            error_code: error,
            is_fenced: true,
            ..Default::default()
        }),
        ApiKey::AllocateProducerIds => Response::AllocateProducerIds(AllocateProducerIdsResponse {
            error_code: error,
            producer_id_start: (-1).into(),
            ..Default::default()
        }),
        ApiKey::AlterPartition => Response::AlterPartition(AlterPartitionResponse {
            error_code: error,
            ..Default::default()
        }),
        ApiKey::ElectLeaders => Response::ElectLeaders(ElectLeadersResponse {
            error_code: error,
            ..Default::default()
        }),
        ApiKey::AlterPartitionReassignments => {
            Response::AlterPartitionReassignments(AlterPartitionReassignmentsResponse {
                error_code: error,
                ..Default::default()
            })
        }
        ApiKey::ListPartitionReassignments => {
            Response::ListPartitionReassignments(ListPartitionReassignmentsResponse {
                error_code: error,
                ..Default::default()
            })
        }
        _ => sluice_controller::wire::Wire::end_quorum_epoch_response(),
    }
}
