//! The controller listener's requests: ApiVersions, the quorum's own (Vote, BeginQuorumEpoch,
//! EndQuorumEpoch, Fetch of `__cluster_metadata-0`) and DescribeQuorum, which
//! `kafka-metadata-quorum --bootstrap-controller` sends. Anything else closes the connection, as
//! Kafka's controller listener does for APIs it does not serve.

use std::cell::RefCell;
use std::rc::Rc;

use bytes::Bytes;
use sluice_controller::wire::{METADATA_TOPIC, Refusal, Wire};
use sluice_net::error_code::code;
use sluice_net::messages::api_versions_response::ApiVersion;
use sluice_net::messages::{
    ApiVersionsResponse, BeginQuorumEpochResponse, DescribeQuorumResponse, FetchResponse,
    VoteResponse, describe_quorum_response as dq,
};
use sluice_net::{ApiKey, BrokerId, Request, Response, decode_request, response_frame};
use sluice_quorum::{Log, RoleKind};

use super::node::Node;
use crate::connection::Outcome;

/// The APIs the controller listener answers, with the versions it accepts.
const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Fetch, 13, 17),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::Vote, 0, 2),
    (ApiKey::BeginQuorumEpoch, 0, 1),
    (ApiKey::EndQuorumEpoch, 0, 1),
    (ApiKey::DescribeQuorum, 0, 2),
];

/// What a controller connection needs.
pub struct Served<L: Log> {
    pub node: Rc<RefCell<Node<L>>>,
    pub wire: Rc<Wire>,
    pub clock: Rc<dyn Fn() -> u64>,
}

impl<L: Log> Served<L> {
    /// Answers one request frame.
    pub fn handle(&self, frame: Bytes) -> Outcome {
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
            Request::EndQuorumEpoch(_) => self.quorum(api, &request).map(|_| {
                sluice_controller::wire::Wire::end_quorum_epoch_response()
            }),
            _ => self
                .quorum(api, &request)
                .and_then(|answer| answer.ok_or(code::UNKNOWN_SERVER_ERROR)),
        };
        let response = match response {
            Ok(response) => response,
            Err(error) => refusal(api, error),
        };
        Outcome::Respond(response_frame(
            api,
            version,
            header.correlation_id,
            |e| response.encode(e, version),
        ))
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

    /// The quorum as this node sees it. Only the leader knows the voters' positions; a
    /// non-leader answers NOT_LEADER_OR_FOLLOWER, as Kafka's does.
    fn describe_quorum(&self) -> Response {
        let node = self.node.borrow();
        let replica = &node.replica;
        if replica.role() != RoleKind::Leader {
            return refusal(ApiKey::DescribeQuorum, code::NOT_LEADER_OR_FOLLOWER);
        }
        let voters = self
            .wire
            .voters
            .iter()
            .map(|v| dq::ReplicaState {
                replica_id: BrokerId(v.0),
                log_end_offset: -1,
                last_fetch_timestamp: -1,
                last_caught_up_timestamp: -1,
                ..Default::default()
            })
            .collect();
        Response::DescribeQuorum(DescribeQuorumResponse {
            topics: vec![dq::TopicData {
                topic_name: METADATA_TOPIC.into(),
                partitions: vec![dq::PartitionData {
                    partition_index: 0,
                    leader_id: BrokerId(replica.id().0),
                    leader_epoch: replica.epoch().0,
                    high_watermark: replica.high_watermark().0,
                    current_voters: voters,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        })
    }
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
        _ => sluice_controller::wire::Wire::end_quorum_epoch_response(),
    }
}
