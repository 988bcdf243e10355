//! Kafka API handlers behind one dispatch on API key and version.
//!
//! [`handle`] reads the API key, version and correlation id straight from the frame, refuses
//! what it cannot answer (an unknown API key or an unsupported version closes the connection,
//! as Kafka does; an ApiVersions request of an unknown version gets the KIP-511 answer), decodes
//! the header and body with the generated codec, runs the API's handler, and encodes the
//! response as `Bytes` chunks ready for one vectored write.
//!
//! [`SUPPORTED`] is the version table sluice advertises. It lists what the handlers implement,
//! never the schema's whole range: a version goes in only with a handler (and tests) for it.

mod admin;
mod api_versions;
mod authorized;
mod configs;
mod create_topics;
mod delete_topics;
mod elect_leaders;
mod fetch;
mod groups;
mod init_producer_id;
mod leaders;
mod list_offsets;
mod metadata;
mod produce;
mod reassignments;
mod txn;

use std::rc::Rc;

use bytes::Bytes;
use sluice_net::messages::ApiVersionsResponse;
use sluice_net::messages::api_versions_response::ApiVersion;
use sluice_net::{
    ApiKey, DecodeErrorKind, Decoder, Encoder, Request, RequestHeader, Response, ResponseHeader,
};

use crate::connection::Outcome;
use crate::core::Core;
use crate::errors::code;

/// (API, lowest version, highest version) that sluice implements and advertises.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 13),
    (ApiKey::Fetch, 4, 18),
    (ApiKey::ListOffsets, 1, 11),
    (ApiKey::Metadata, 0, 13),
    (ApiKey::ApiVersions, 0, 5),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::AddPartitionsToTxn, 0, 5),
    (ApiKey::AddOffsetsToTxn, 0, 4),
    (ApiKey::EndTxn, 0, 5),
    (ApiKey::WriteTxnMarkers, 1, 2),
    (ApiKey::TxnOffsetCommit, 0, 6),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::ListTransactions, 0, 2),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::DescribeCluster, 0, 2),
    (ApiKey::DescribeLogDirs, 1, 5),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::DescribeTopicPartitions, 0, 0),
    (ApiKey::ListConfigResources, 0, 1),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 10),
    (ApiKey::OffsetFetch, 1, 10),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DescribeGroups, 0, 6),
    (ApiKey::DeleteGroups, 0, 3),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::AlterPartitionReassignments, 0, 1),
    (ApiKey::ListPartitionReassignments, 0, 0),
];

/// The advertised version range of `api`, if sluice implements it.
pub fn supported(api: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == api)
        .map(|&(_, lo, hi)| (lo, hi))
}

fn version_table() -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .map(|&(k, lo, hi)| ApiVersion {
            api_key: k.key(),
            min_version: lo,
            max_version: hi,
            ..ApiVersion::default()
        })
        .collect()
}

/// Handles one request frame (without its size prefix) from a client at `peer_ip`.
pub async fn handle(core: &Rc<Core>, frame: Bytes, peer_ip: &str) -> Outcome {
    let (api, version, correlation_id) = match admit(core, &frame) {
        Ok(admitted) => admitted,
        Err(outcome) => return outcome,
    };
    let (header, request) = match decode(core, api, version, frame) {
        Ok(decoded) => decoded,
        Err(outcome) => return outcome,
    };
    let started = std::time::Instant::now();
    let response = match request {
        Request::Produce(r) => match produce::handle(core, r, version).await {
            produce::Produced::Respond(r) => Response::Produce(r),
            produce::Produced::Silent => return Outcome::Silent,
            produce::Produced::Close(reason) => return Outcome::Close(reason),
        },
        Request::Fetch(r) => Response::Fetch(fetch::handle(core, r, version).await),
        other => match dispatch_group(core, other, version, &header, peer_ip).await {
            Ok(response) => response,
            Err(other) => match dispatch_txn(core, other, version).await {
                Ok(response) => response,
                Err(other) => dispatch_admin(core, other, version).await,
            },
        },
    };
    core.metrics.request(api.name(), started.elapsed());
    Outcome::Respond(encode(api, version, correlation_id, &response))
}

/// Reads the API key, version and correlation id straight from the frame and refuses what
/// sluice cannot answer: an unknown API or an unsupported version closes the connection, as
/// Kafka does; an ApiVersions request of an unknown version gets the KIP-511 answer.
fn admit(core: &Core, frame: &Bytes) -> Result<(ApiKey, i16, i32), Outcome> {
    if frame.len() < 8 {
        return Err(Outcome::Close(format!(
            "request of {} bytes is shorter than a header",
            frame.len()
        )));
    }
    let api_raw = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let Some(api) = ApiKey::from_i16(api_raw) else {
        core.metrics.rejected("unknown_api");
        return Err(Outcome::Close(format!("unknown API key {api_raw}")));
    };
    let Some((lo, hi)) = supported(api) else {
        core.metrics.rejected("unsupported_api");
        return Err(Outcome::Close(format!(
            "unsupported API {} ({api_raw})",
            api.name()
        )));
    };
    if version < lo || version > hi {
        if api == ApiKey::ApiVersions {
            return Err(kip511_answer(correlation_id));
        }
        core.metrics.rejected("unsupported_version");
        return Err(Outcome::Close(format!(
            "unsupported version {version} of {} (supported {lo}-{hi})",
            api.name()
        )));
    }
    Ok((api, version, correlation_id))
}

/// Decodes the header and body with the generated codec; a malformed one closes the connection.
fn decode(
    core: &Core,
    api: ApiKey,
    version: i16,
    frame: Bytes,
) -> Result<(RequestHeader, Request), Outcome> {
    let raw = frame.clone();
    let mut d = Decoder::new(frame);
    let header = match RequestHeader::decode(&mut d, api.request_header_version(version)) {
        Ok(h) => h,
        Err(e) => {
            core.metrics.rejected("malformed");
            return Err(Outcome::Close(format!("malformed request header: {e}")));
        }
    };
    let body = d.into_rest();
    let decoded = match Request::decode(api, version, body.clone()) {
        // Kafka does not check that a request body was consumed to its end, and real clients
        // rely on it: librdkafka 2.16's admin Metadata v13 carries 3 bytes after the message.
        // So, like Kafka, decode the message and ignore what follows it.
        Err(e) if matches!(e.kind, DecodeErrorKind::TrailingBytes(n) if n < body.len()) => {
            let DecodeErrorKind::TrailingBytes(n) = e.kind else {
                unreachable!("matched above")
            };
            tracing::debug!(
                api = api.name(),
                version,
                trailing = n,
                "ignoring bytes after a request body, as Kafka does"
            );
            Request::decode(api, version, body.slice(..body.len() - n))
        }
        other => other,
    };
    match decoded {
        Ok(request) => Ok((header, request)),
        Err(e) => {
            tracing::debug!(
                frame = %hex_prefix(&raw, crate::limits::MALFORMED_LOG_BYTES_MAX),
                "malformed request"
            );
            core.metrics.rejected("malformed");
            Err(Outcome::Close(format!(
                "malformed {} v{version} request: {e}",
                api.name()
            )))
        }
    }
}

/// Runs a group API's handler; any other request comes back.
async fn dispatch_group(
    core: &Rc<Core>,
    request: Request,
    version: i16,
    header: &RequestHeader,
    peer_ip: &str,
) -> Result<Response, Request> {
    Ok(match request {
        Request::FindCoordinator(r) => {
            Response::FindCoordinator(groups::find_coordinator(core, r, version).await)
        }
        Request::JoinGroup(r) => {
            let client = groups::Client {
                client_id: header
                    .client_id
                    .as_ref()
                    .map(|c| c.to_string())
                    .unwrap_or_default(),
                host: format!("/{peer_ip}"),
            };
            Response::JoinGroup(groups::join_group(core, r, version, &client).await)
        }
        Request::SyncGroup(r) => Response::SyncGroup(groups::sync_group(core, r, version).await),
        Request::Heartbeat(r) => Response::Heartbeat(groups::heartbeat(core, r, version).await),
        Request::LeaveGroup(r) => Response::LeaveGroup(groups::leave_group(core, r, version).await),
        Request::OffsetCommit(r) => {
            Response::OffsetCommit(groups::offset_commit(core, r, version).await)
        }
        Request::OffsetFetch(r) => {
            Response::OffsetFetch(groups::offset_fetch(core, r, version).await)
        }
        Request::ListGroups(r) => Response::ListGroups(groups::list_groups(core, r, version).await),
        Request::DescribeGroups(r) => {
            Response::DescribeGroups(groups::describe_groups(core, r, version).await)
        }
        Request::DeleteGroups(r) => {
            Response::DeleteGroups(groups::delete_groups(core, r, version).await)
        }
        Request::OffsetDelete(r) => {
            Response::OffsetDelete(groups::offset_delete(core, r, version).await)
        }
        other => return Err(other),
    })
}

/// Runs the handler of a transaction API, or gives the request back.
async fn dispatch_txn(
    core: &Rc<Core>,
    request: Request,
    version: i16,
) -> Result<Response, Request> {
    Ok(match request {
        Request::AddPartitionsToTxn(r) => {
            Response::AddPartitionsToTxn(txn::add_partitions_to_txn(core, r, version).await)
        }
        Request::AddOffsetsToTxn(r) => {
            Response::AddOffsetsToTxn(txn::add_offsets_to_txn(core, r, version).await)
        }
        Request::EndTxn(r) => Response::EndTxn(txn::end_txn(core, r, version).await),
        Request::TxnOffsetCommit(r) => {
            Response::TxnOffsetCommit(txn::txn_offset_commit(core, r, version).await)
        }
        Request::WriteTxnMarkers(r) => {
            Response::WriteTxnMarkers(txn::write_txn_markers(core, r).await)
        }
        Request::DescribeTransactions(r) => {
            Response::DescribeTransactions(txn::describe_transactions(core, r).await)
        }
        Request::ListTransactions(r) => {
            Response::ListTransactions(txn::list_transactions(core, r).await)
        }
        other => return Err(other),
    })
}

/// Runs the handler of every other advertised API (metadata, topics, configs, admin).
async fn dispatch_admin(core: &Rc<Core>, request: Request, version: i16) -> Response {
    match request {
        Request::ListOffsets(r) => {
            Response::ListOffsets(list_offsets::handle(core, r, version).await)
        }
        Request::ApiVersions(r) => Response::ApiVersions(api_versions::handle(
            &r,
            version,
            &api_versions::Identity {
                cluster_id: &core.cluster_id,
                node_id: core.config.node_id,
                features_epoch: i64::try_from(core.topics().version()).unwrap_or(i64::MAX),
            },
        )),
        Request::Metadata(r) => Response::Metadata(metadata::handle(core, r, version).await),
        Request::CreateTopics(r) => {
            Response::CreateTopics(create_topics::handle(core, r, version).await)
        }
        Request::DeleteTopics(r) => {
            Response::DeleteTopics(delete_topics::handle(core, r, version).await)
        }
        Request::InitProducerId(r) => {
            Response::InitProducerId(init_producer_id::handle(core, r, version).await)
        }
        Request::DescribeConfigs(r) => {
            Response::DescribeConfigs(configs::describe(core, r, version).await)
        }
        Request::AlterConfigs(r) => Response::AlterConfigs(configs::alter(core, r, version).await),
        Request::IncrementalAlterConfigs(r) => {
            Response::IncrementalAlterConfigs(configs::incremental_alter(core, r, version).await)
        }
        Request::ListConfigResources(r) => {
            Response::ListConfigResources(configs::list_resources(core, &r, version))
        }
        Request::CreatePartitions(r) => {
            Response::CreatePartitions(admin::create_partitions(core, r, version).await)
        }
        Request::DeleteRecords(r) => {
            Response::DeleteRecords(admin::delete_records(core, r, version).await)
        }
        Request::DescribeCluster(r) => {
            Response::DescribeCluster(admin::describe_cluster(core, &r, version))
        }
        Request::ElectLeaders(r) => Response::ElectLeaders(elect_leaders::handle(core, r).await),
        Request::AlterPartitionReassignments(r) => {
            Response::AlterPartitionReassignments(reassignments::alter(core, r).await)
        }
        Request::ListPartitionReassignments(r) => {
            Response::ListPartitionReassignments(reassignments::list(core, r).await)
        }
        Request::DescribeLogDirs(r) => {
            Response::DescribeLogDirs(admin::describe_log_dirs(core, r, version).await)
        }
        Request::OffsetForLeaderEpoch(r) => {
            Response::OffsetForLeaderEpoch(admin::offset_for_leader_epoch(core, r, version).await)
        }
        Request::DescribeTopicPartitions(r) => {
            Response::DescribeTopicPartitions(metadata::describe_topic_partitions(core, &r))
        }
        other => {
            // SUPPORTED lists only APIs with a match arm here or above; reaching here is a bug.
            unreachable!("advertised API without a handler: {:?}", other.api_key())
        }
    }
}

/// Applies topic registry changes through the control core; `refused(slot, code, message)` is called for
/// each change that was refused, with the slot its response entry has.
pub async fn apply_topic_changes(
    core: &Rc<Core>,
    slots: Vec<usize>,
    changes: Vec<crate::registry::TopicChange>,
    mut refused: impl FnMut(usize, i16, String),
) {
    for (slot, outcome) in slots.into_iter().zip(core.change_topics(changes).await) {
        if let Err(e) = outcome {
            let (code, message) = crate::errors::topic_change(&e);
            refused(slot, code, message);
        }
    }
}

/// The first `max` bytes of a frame in hex, for debug logs of malformed requests.
fn hex_prefix(frame: &[u8], max: usize) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(2 * max.min(frame.len()));
    for b in frame.iter().take(max) {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Encodes a response frame (size prefix, header, body).
pub fn encode(api: ApiKey, version: i16, correlation_id: i32, response: &Response) -> Vec<Bytes> {
    let mut e = Encoder::framed();
    let header = ResponseHeader {
        correlation_id,
        ..ResponseHeader::default()
    };
    header.encode(&mut e, api.response_header_version(version));
    response.encode(&mut e, version);
    e.finish()
}

/// KIP-511: an ApiVersions request of a version we do not know gets a v0 body with
/// UNSUPPORTED_VERSION and our ranges, so the client can retry with a version we share.
fn kip511_answer(correlation_id: i32) -> Outcome {
    let body = ApiVersionsResponse {
        error_code: code::UNSUPPORTED_VERSION,
        api_keys: version_table(),
        ..ApiVersionsResponse::default()
    };
    Outcome::Respond(encode(
        ApiKey::ApiVersions,
        0,
        correlation_id,
        &Response::ApiVersions(body),
    ))
}
