//! The quorum's messages on Kafka's wire: `sluice_quorum::Message` to and from Kafka's Vote,
//! BeginQuorumEpoch, EndQuorumEpoch and Fetch requests and responses for partition 0 of
//! `__cluster_metadata`, as KRaft sends them between controllers (KIP-595, KIP-996).
//!
//! A response on the wire does not repeat its request, so decoding one takes the message that
//! was sent (`Wire::from_response`): a Vote answer learns whether it answers a pre-vote, a Fetch
//! answer the position it answers. Requests carry the sender (`VoterId`/`CandidateId`,
//! `LeaderId`, `ReplicaState.ReplicaId`) and the cluster id; a request from another cluster is
//! answered `INCONSISTENT_CLUSTER_ID` and never reaches the replica.

use bytes::Bytes;
use sluice_net::error_code::code;
use sluice_net::messages::{
    BeginQuorumEpochRequest, BeginQuorumEpochResponse, EndQuorumEpochRequest,
    EndQuorumEpochResponse, FetchRequest, FetchResponse, FetchSnapshotRequest,
    FetchSnapshotResponse, VoteRequest, VoteResponse, begin_quorum_epoch_request as bqe_req,
    begin_quorum_epoch_response as bqe_resp, end_quorum_epoch_request as eqe_req,
    fetch_request as fetch_req, fetch_response as fetch_resp, fetch_snapshot_request as snap_req,
    fetch_snapshot_response as snap_resp, vote_request as vote_req, vote_response as vote_resp,
};
use sluice_net::{ApiKey, BrokerId, Records, Request, Response, Uuid};
use sluice_quorum::{
    Entry, Epoch, FetchError, FetchResponse as QuorumFetchResponse,
    FetchSnapshotResponse as QuorumSnapshotResponse, Message, NodeId, Offset, OffsetAndEpoch,
};

use crate::batch::{decode_entries, encode_entry};

/// The metadata log's topic.
pub const METADATA_TOPIC: &str = "__cluster_metadata";
/// Its fixed topic id (Kafka's `Uuid.METADATA_TOPIC_ID`, 0 then 1).
pub const METADATA_TOPIC_ID: Uuid = Uuid([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);

/// Versions sent: Vote 2 carries the pre-vote flag; Fetch 17 the replica state and directory.
pub const VOTE_VERSION: i16 = 2;
pub const BEGIN_QUORUM_EPOCH_VERSION: i16 = 1;
pub const END_QUORUM_EPOCH_VERSION: i16 = 1;
pub const FETCH_VERSION: i16 = 17;
pub const FETCH_SNAPSHOT_VERSION: i16 = 1;

/// Bytes a Fetch asks for at most (Kafka's default for the metadata log, 8 MiB).
const FETCH_BYTES_MAX: i32 = 8 * 1024 * 1024;

/// What a request could not be turned into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Answer with this error code (top level).
    Error(i16),
    /// Not a quorum request.
    NotQuorum,
}

/// One node's view of the wire: its cluster id, its id and the voters (for leader changes).
#[derive(Debug, Clone)]
pub struct Wire {
    pub cluster_id: String,
    pub me: NodeId,
    pub voters: Vec<NodeId>,
}

impl Wire {
    /// The request for a request-kind message to `to`, with its API and version; `None` for a
    /// response-kind message.
    pub fn request(&self, to: NodeId, message: &Message) -> Option<(i16, Request)> {
        let cluster_id = Some(self.cluster_id.as_str().into());
        Some(match message {
            Message::Vote {
                epoch,
                last,
                pre_vote,
            } => (VOTE_VERSION, self.vote(to, *epoch, *last, *pre_vote)),
            Message::BeginQuorumEpoch { epoch } => (
                BEGIN_QUORUM_EPOCH_VERSION,
                Request::BeginQuorumEpoch(BeginQuorumEpochRequest {
                    cluster_id,
                    voter_id: BrokerId(to.0),
                    topics: vec![bqe_req::TopicData {
                        topic_name: METADATA_TOPIC.into(),
                        partitions: vec![bqe_req::PartitionData {
                            leader_id: BrokerId(self.me.0),
                            leader_epoch: epoch.0,
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            ),
            Message::EndQuorumEpoch {
                epoch,
                preferred_successors,
            } => (
                END_QUORUM_EPOCH_VERSION,
                self.end_quorum_epoch(*epoch, preferred_successors),
            ),
            Message::Fetch {
                epoch,
                fetch_offset,
                last_fetched_epoch,
            } => (
                FETCH_VERSION,
                self.fetch(*epoch, *fetch_offset, *last_fetched_epoch),
            ),
            Message::FetchSnapshot { epoch, snapshot } => (
                FETCH_SNAPSHOT_VERSION,
                self.fetch_snapshot(*epoch, *snapshot),
            ),
            _ => return None,
        })
    }

    fn fetch_snapshot(&self, epoch: Epoch, snapshot: OffsetAndEpoch) -> Request {
        Request::FetchSnapshot(FetchSnapshotRequest {
            cluster_id: Some(self.cluster_id.as_str().into()),
            replica_id: BrokerId(self.me.0),
            max_bytes: i32::MAX,
            topics: vec![snap_req::TopicSnapshot {
                name: METADATA_TOPIC.into(),
                partitions: vec![snap_req::PartitionSnapshot {
                    partition: 0,
                    current_leader_epoch: epoch.0,
                    snapshot_id: snap_req::SnapshotId {
                        end_offset: snapshot.offset.0,
                        epoch: snapshot.epoch.0,
                        ..Default::default()
                    },
                    position: 0,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        })
    }

    fn vote(&self, to: NodeId, epoch: Epoch, last: OffsetAndEpoch, pre_vote: bool) -> Request {
        Request::Vote(VoteRequest {
            cluster_id: Some(self.cluster_id.as_str().into()),
            voter_id: BrokerId(to.0),
            topics: vec![vote_req::TopicData {
                topic_name: METADATA_TOPIC.into(),
                partitions: vec![vote_req::PartitionData {
                    replica_epoch: epoch.0,
                    replica_id: BrokerId(self.me.0),
                    last_offset_epoch: last.epoch.0,
                    last_offset: last.offset.0,
                    pre_vote,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        })
    }

    fn end_quorum_epoch(&self, epoch: Epoch, successors: &[NodeId]) -> Request {
        let candidates = successors
            .iter()
            .map(|n| eqe_req::ReplicaInfo {
                candidate_id: BrokerId(n.0),
                ..Default::default()
            })
            .collect();
        Request::EndQuorumEpoch(EndQuorumEpochRequest {
            cluster_id: Some(self.cluster_id.as_str().into()),
            topics: vec![eqe_req::TopicData {
                topic_name: METADATA_TOPIC.into(),
                partitions: vec![eqe_req::PartitionData {
                    leader_id: BrokerId(self.me.0),
                    leader_epoch: epoch.0,
                    preferred_successors: successors.iter().map(|n| n.0).collect(),
                    preferred_candidates: candidates,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        })
    }

    fn fetch(&self, epoch: Epoch, fetch_offset: Offset, last_fetched_epoch: Epoch) -> Request {
        Request::Fetch(FetchRequest {
            cluster_id: Some(self.cluster_id.as_str().into()),
            replica_id: BrokerId(-1),
            replica_state: fetch_req::ReplicaState {
                replica_id: BrokerId(self.me.0),
                replica_epoch: -1,
                ..Default::default()
            },
            max_wait_ms: 0,
            min_bytes: 0,
            max_bytes: FETCH_BYTES_MAX,
            session_epoch: -1,
            topics: vec![fetch_req::FetchTopic {
                topic: METADATA_TOPIC.into(),
                topic_id: METADATA_TOPIC_ID,
                partitions: vec![fetch_req::FetchPartition {
                    partition: 0,
                    current_leader_epoch: epoch.0,
                    fetch_offset: fetch_offset.0,
                    last_fetched_epoch: last_fetched_epoch.0,
                    log_start_offset: -1,
                    partition_max_bytes: FETCH_BYTES_MAX,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        })
    }

    /// The sender and the quorum message of an inbound request.
    pub fn from_request(&self, request: &Request) -> Result<(NodeId, Message), Refusal> {
        let cluster = match request {
            Request::Vote(r) => &r.cluster_id,
            Request::BeginQuorumEpoch(r) => &r.cluster_id,
            Request::EndQuorumEpoch(r) => &r.cluster_id,
            Request::Fetch(r) => &r.cluster_id,
            Request::FetchSnapshot(r) => &r.cluster_id,
            _ => return Err(Refusal::NotQuorum),
        };
        if cluster
            .as_ref()
            .is_some_and(|c| c.as_str() != self.cluster_id)
        {
            return Err(Refusal::Error(code::INCONSISTENT_CLUSTER_ID));
        }
        let bad = Refusal::Error(code::INVALID_REQUEST);
        match request {
            Request::Vote(r) => {
                let p = one(&r.topics, |t| &t.partitions).ok_or(bad)?;
                Ok((
                    NodeId(p.replica_id.0),
                    Message::Vote {
                        epoch: Epoch(p.replica_epoch),
                        last: OffsetAndEpoch {
                            offset: Offset(p.last_offset),
                            epoch: Epoch(p.last_offset_epoch),
                        },
                        pre_vote: p.pre_vote,
                    },
                ))
            }
            Request::BeginQuorumEpoch(r) => {
                let p = one(&r.topics, |t| &t.partitions).ok_or(bad)?;
                Ok((
                    NodeId(p.leader_id.0),
                    Message::BeginQuorumEpoch {
                        epoch: Epoch(p.leader_epoch),
                    },
                ))
            }
            Request::EndQuorumEpoch(r) => {
                let p = one(&r.topics, |t| &t.partitions).ok_or(bad)?;
                let mut successors: Vec<NodeId> =
                    p.preferred_successors.iter().map(|&n| NodeId(n)).collect();
                successors.extend(
                    p.preferred_candidates
                        .iter()
                        .map(|c| NodeId(c.candidate_id.0)),
                );
                successors.dedup();
                Ok((
                    NodeId(p.leader_id.0),
                    Message::EndQuorumEpoch {
                        epoch: Epoch(p.leader_epoch),
                        preferred_successors: successors,
                    },
                ))
            }
            Request::Fetch(r) => fetch_message(r).ok_or(bad),
            Request::FetchSnapshot(r) => {
                let p = one(&r.topics, |t| &t.partitions).ok_or(bad)?;
                Ok((
                    NodeId(r.replica_id.0),
                    Message::FetchSnapshot {
                        epoch: Epoch(p.current_leader_epoch),
                        snapshot: OffsetAndEpoch {
                            offset: Offset(p.snapshot_id.end_offset),
                            epoch: Epoch(p.snapshot_id.epoch),
                        },
                    },
                ))
            }
            _ => Err(Refusal::NotQuorum),
        }
    }

    /// The wire response for a response-kind message answering a request of `api`; `None`
    /// when the message is not an answer to that API.
    pub fn response(&self, api: ApiKey, message: &Message, now_ms: i64) -> Option<Response> {
        Some(match (api, message) {
            (
                ApiKey::Vote,
                Message::VoteResponse {
                    epoch,
                    leader,
                    granted,
                    ..
                },
            ) => Response::Vote(VoteResponse {
                topics: vec![vote_resp::TopicData {
                    topic_name: METADATA_TOPIC.into(),
                    partitions: vec![vote_resp::PartitionData {
                        leader_id: leader_id(*leader),
                        leader_epoch: epoch.0,
                        vote_granted: *granted,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }),
            (ApiKey::BeginQuorumEpoch, Message::BeginQuorumEpochResponse { epoch, leader }) => {
                Response::BeginQuorumEpoch(BeginQuorumEpochResponse {
                    topics: vec![bqe_resp::TopicData {
                        topic_name: METADATA_TOPIC.into(),
                        partitions: vec![bqe_resp::PartitionData {
                            leader_id: leader_id(*leader),
                            leader_epoch: epoch.0,
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                })
            }
            (ApiKey::Fetch, Message::FetchResponse(f)) => {
                Response::Fetch(self.fetch_response(f, now_ms))
            }
            (ApiKey::FetchSnapshot, Message::FetchSnapshotResponse(f)) => {
                Response::FetchSnapshot(snapshot_response(f))
            }
            _ => return None,
        })
    }

    /// The answer to an EndQuorumEpoch (the replica sends none: the resigning leader does not
    /// wait for one).
    pub fn end_quorum_epoch_response() -> Response {
        Response::EndQuorumEpoch(EndQuorumEpochResponse::default())
    }

    fn fetch_response(&self, f: &QuorumFetchResponse, now_ms: i64) -> FetchResponse {
        let mut records = Records::new();
        for (i, entry) in f.entries.iter().enumerate() {
            let offset = Offset(f.fetch_offset.0 + i as i64);
            records.push(encode_entry(offset, entry, &self.voters, now_ms));
        }
        let diverging = f
            .diverging
            .map_or_else(Default::default, |d| fetch_resp::EpochEndOffset {
                epoch: d.epoch.0,
                end_offset: d.offset.0,
                ..Default::default()
            });
        let partition = fetch_resp::PartitionData {
            partition_index: 0,
            error_code: f.error.map_or(code::NONE, fetch_error_code),
            high_watermark: f.high_watermark.0,
            last_stable_offset: f.high_watermark.0,
            log_start_offset: 0,
            diverging_epoch: diverging,
            current_leader: fetch_resp::LeaderIdAndEpoch {
                leader_id: leader_id(f.leader),
                leader_epoch: f.epoch.0,
                ..Default::default()
            },
            snapshot_id: f
                .snapshot
                .map_or_else(Default::default, |s| fetch_resp::SnapshotId {
                    end_offset: s.offset.0,
                    epoch: s.epoch.0,
                    ..Default::default()
                }),
            records: Some(records),
            ..Default::default()
        };
        FetchResponse {
            responses: vec![fetch_resp::FetchableTopicResponse {
                topic: METADATA_TOPIC.into(),
                topic_id: METADATA_TOPIC_ID,
                partitions: vec![partition],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    /// The quorum message a wire response to `sent` carries; `None` when it carries none (an
    /// error, or an answer the replica does not take, such as EndQuorumEpoch's).
    pub fn from_response(&self, sent: &Message, response: Response) -> Option<Message> {
        match (sent, response) {
            (Message::Vote { pre_vote, .. }, Response::Vote(r)) => {
                let p = one(&r.topics, |t| &t.partitions)?;
                (r.error_code == code::NONE && p.error_code == code::NONE).then(|| {
                    Message::VoteResponse {
                        epoch: Epoch(p.leader_epoch),
                        leader: node(p.leader_id),
                        granted: p.vote_granted,
                        pre_vote: *pre_vote,
                    }
                })
            }
            (Message::BeginQuorumEpoch { .. }, Response::BeginQuorumEpoch(r)) => {
                let p = one(&r.topics, |t| &t.partitions)?;
                (r.error_code == code::NONE && p.error_code == code::NONE).then(|| {
                    Message::BeginQuorumEpochResponse {
                        epoch: Epoch(p.leader_epoch),
                        leader: node(p.leader_id),
                    }
                })
            }
            (
                Message::Fetch {
                    fetch_offset,
                    last_fetched_epoch,
                    ..
                },
                Response::Fetch(r),
            ) => fetch_answer(*fetch_offset, *last_fetched_epoch, r),
            (Message::FetchSnapshot { .. }, Response::FetchSnapshot(r)) => snapshot_answer(r),
            _ => None,
        }
    }
}

/// The only partition of the only topic, as every quorum request and answer has.
fn one<T, P>(topics: &[T], partitions: impl Fn(&T) -> &Vec<P>) -> Option<&P> {
    match topics {
        [t] => match partitions(t).as_slice() {
            [p] => Some(p),
            _ => None,
        },
        _ => None,
    }
}

fn leader_id(leader: Option<NodeId>) -> BrokerId {
    BrokerId(leader.map_or(-1, |n| n.0))
}

fn node(id: BrokerId) -> Option<NodeId> {
    (id.0 >= 0).then_some(NodeId(id.0))
}

fn fetch_error_code(e: FetchError) -> i16 {
    match e {
        FetchError::FencedLeaderEpoch => code::FENCED_LEADER_EPOCH,
        FetchError::UnknownLeaderEpoch => code::UNKNOWN_LEADER_EPOCH,
        FetchError::NotLeader => code::NOT_LEADER_OR_FOLLOWER,
        FetchError::SnapshotNotFound => code::SNAPSHOT_NOT_FOUND,
    }
}

fn fetch_error(error_code: i16) -> Result<Option<FetchError>, ()> {
    Ok(match error_code {
        code::NONE => None,
        code::FENCED_LEADER_EPOCH => Some(FetchError::FencedLeaderEpoch),
        code::UNKNOWN_LEADER_EPOCH => Some(FetchError::UnknownLeaderEpoch),
        code::NOT_LEADER_OR_FOLLOWER => Some(FetchError::NotLeader),
        code::SNAPSHOT_NOT_FOUND => Some(FetchError::SnapshotNotFound),
        _ => return Err(()),
    })
}

fn snapshot_response(f: &QuorumSnapshotResponse) -> FetchSnapshotResponse {
    let mut records = Records::new();
    if !f.data.is_empty() {
        records.push(Bytes::from(f.data.clone()));
    }
    FetchSnapshotResponse {
        topics: vec![snap_resp::TopicSnapshot {
            name: METADATA_TOPIC.into(),
            partitions: vec![snap_resp::PartitionSnapshot {
                index: 0,
                error_code: f.error.map_or(code::NONE, fetch_error_code),
                snapshot_id: snap_resp::SnapshotId {
                    end_offset: f.snapshot.offset.0,
                    epoch: f.snapshot.epoch.0,
                    ..Default::default()
                },
                current_leader: snap_resp::LeaderIdAndEpoch {
                    leader_id: leader_id(f.leader),
                    leader_epoch: f.epoch.0,
                    ..Default::default()
                },
                size: f.data.len() as i64,
                position: 0,
                unaligned_records: Some(records),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A FetchSnapshot answer as the quorum message; only whole snapshots (position 0, size =
/// bytes) are taken: this quorum sends them in one chunk.
fn snapshot_answer(r: FetchSnapshotResponse) -> Option<Message> {
    if r.error_code != code::NONE {
        return None;
    }
    let p = one(&r.topics, |t| &t.partitions)?;
    let error = fetch_error(p.error_code).ok()?;
    let data = p
        .unaligned_records
        .as_ref()
        .map_or_else(Vec::new, |r| r.to_bytes().to_vec());
    if error.is_none() && (p.position != 0 || p.size != data.len() as i64) {
        return None;
    }
    Some(Message::FetchSnapshotResponse(QuorumSnapshotResponse {
        epoch: Epoch(p.current_leader.leader_epoch),
        leader: node(p.current_leader.leader_id),
        error,
        snapshot: OffsetAndEpoch {
            offset: Offset(p.snapshot_id.end_offset),
            epoch: Epoch(p.snapshot_id.epoch),
        },
        data,
    }))
}

fn fetch_message(r: &FetchRequest) -> Option<(NodeId, Message)> {
    let p = one(&r.topics, |t| &t.partitions)?;
    let from = if r.replica_state.replica_id.0 >= 0 {
        r.replica_state.replica_id.0
    } else {
        r.replica_id.0
    };
    Some((
        NodeId(from),
        Message::Fetch {
            epoch: Epoch(p.current_leader_epoch),
            fetch_offset: Offset(p.fetch_offset),
            last_fetched_epoch: Epoch(p.last_fetched_epoch),
        },
    ))
}

fn fetch_answer(
    fetch_offset: Offset,
    last_fetched_epoch: Epoch,
    r: FetchResponse,
) -> Option<Message> {
    if r.error_code != code::NONE {
        return None;
    }
    let p = one(&r.responses, |t| &t.partitions)?;
    let error = fetch_error(p.error_code).ok()?;
    let diverging = (p.diverging_epoch.epoch >= 0 && p.diverging_epoch.end_offset >= 0).then_some(
        OffsetAndEpoch {
            offset: Offset(p.diverging_epoch.end_offset),
            epoch: Epoch(p.diverging_epoch.epoch),
        },
    );
    let bytes = p
        .records
        .as_ref()
        .map_or_else(Bytes::new, Records::to_bytes);
    let entries: Vec<Entry> = decode_entries(bytes, fetch_offset)
        .ok()?
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    Some(Message::FetchResponse(QuorumFetchResponse {
        epoch: Epoch(p.current_leader.leader_epoch),
        leader: node(p.current_leader.leader_id),
        error,
        fetch_offset,
        last_fetched_epoch,
        high_watermark: Offset(p.high_watermark),
        diverging,
        snapshot: (p.snapshot_id.end_offset >= 0 && p.snapshot_id.epoch >= 0).then_some(
            OffsetAndEpoch {
                offset: Offset(p.snapshot_id.end_offset),
                epoch: Epoch(p.snapshot_id.epoch),
            },
        ),
        entries,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_net::Encoder;
    use sluice_quorum::Payload;

    fn wire(me: i32) -> Wire {
        Wire {
            cluster_id: "c1".into(),
            me: NodeId(me),
            voters: vec![NodeId(1), NodeId(2), NodeId(3)],
        }
    }

    /// Through real encoded bytes, as on a socket.
    fn over_the_wire(api: ApiKey, version: i16, request: &Request) -> Request {
        let mut e = Encoder::new();
        request.encode(&mut e, version);
        Request::decode(api, version, e.finish_contiguous()).unwrap()
    }

    fn response_over_the_wire(api: ApiKey, version: i16, response: &Response) -> Response {
        let mut e = Encoder::new();
        response.encode(&mut e, version);
        Response::decode(api, version, e.finish_contiguous()).unwrap()
    }

    fn requests() -> Vec<Message> {
        vec![
            Message::Vote {
                epoch: Epoch(4),
                last: OffsetAndEpoch {
                    offset: Offset(9),
                    epoch: Epoch(3),
                },
                pre_vote: true,
            },
            Message::BeginQuorumEpoch { epoch: Epoch(4) },
            Message::EndQuorumEpoch {
                epoch: Epoch(4),
                preferred_successors: vec![NodeId(3), NodeId(1)],
            },
            Message::Fetch {
                epoch: Epoch(4),
                fetch_offset: Offset(7),
                last_fetched_epoch: Epoch(2),
            },
            Message::FetchSnapshot {
                epoch: Epoch(4),
                snapshot: OffsetAndEpoch {
                    offset: Offset(40),
                    epoch: Epoch(3),
                },
            },
        ]
    }

    /// Every request message reaches the other side as the same message from the sender.
    #[test]
    fn requests_round_trip() {
        let (sender, receiver) = (wire(2), wire(1));
        for message in requests() {
            let (version, request) = sender.request(NodeId(1), &message).unwrap();
            let back = over_the_wire(request.api_key(), version, &request);
            assert_eq!(
                receiver.from_request(&back),
                Ok((NodeId(2), message.clone()))
            );
        }
    }

    /// Answers come back as the same messages, given what was sent.
    #[test]
    fn responses_round_trip() {
        let (asker, answerer) = (wire(2), wire(1));
        let fetch = QuorumFetchResponse {
            epoch: Epoch(4),
            leader: Some(NodeId(1)),
            error: None,
            fetch_offset: Offset(7),
            last_fetched_epoch: Epoch(2),
            high_watermark: Offset(8),
            diverging: None,
            snapshot: None,
            entries: vec![
                Entry {
                    epoch: Epoch(4),
                    payload: Payload::LeaderChange { leader: NodeId(1) },
                },
                Entry {
                    epoch: Epoch(4),
                    payload: Payload::Data(vec![1, 2, 3]),
                },
            ],
        };
        let diverged = QuorumFetchResponse {
            error: Some(FetchError::FencedLeaderEpoch),
            diverging: Some(OffsetAndEpoch {
                offset: Offset(5),
                epoch: Epoch(1),
            }),
            entries: Vec::new(),
            ..fetch.clone()
        };
        let snapshot = OffsetAndEpoch {
            offset: Offset(40),
            epoch: Epoch(3),
        };
        let below_start = QuorumFetchResponse {
            snapshot: Some(snapshot),
            entries: Vec::new(),
            ..fetch.clone()
        };
        let fetch_snapshot = Message::FetchSnapshot {
            epoch: Epoch(4),
            snapshot,
        };
        let snapshot_answer = QuorumSnapshotResponse {
            epoch: Epoch(4),
            leader: Some(NodeId(1)),
            error: None,
            snapshot,
            data: vec![9; 100],
        };
        let cases = [
            (
                requests()[0].clone(),
                Message::VoteResponse {
                    epoch: Epoch(4),
                    leader: None,
                    granted: true,
                    pre_vote: true,
                },
            ),
            (
                requests()[1].clone(),
                Message::BeginQuorumEpochResponse {
                    epoch: Epoch(4),
                    leader: Some(NodeId(2)),
                },
            ),
            (requests()[3].clone(), Message::FetchResponse(fetch)),
            (requests()[3].clone(), Message::FetchResponse(diverged)),
            (requests()[3].clone(), Message::FetchResponse(below_start)),
            (
                fetch_snapshot,
                Message::FetchSnapshotResponse(snapshot_answer),
            ),
        ];
        for (sent, answer) in cases {
            let (version, request) = asker.request(NodeId(1), &sent).unwrap();
            let api = request.api_key();
            let response = answerer.response(api, &answer, 0).unwrap();
            let back = response_over_the_wire(api, version, &response);
            assert_eq!(asker.from_response(&sent, back), Some(answer));
        }
    }

    /// A request from another cluster is refused before the replica sees it.
    #[test]
    fn other_clusters_are_refused() {
        let (version, request) = wire(2).request(NodeId(1), &requests()[1]).unwrap();
        let back = over_the_wire(request.api_key(), version, &request);
        let other = Wire {
            cluster_id: "c2".into(),
            ..wire(1)
        };
        assert_eq!(
            other.from_request(&back),
            Err(Refusal::Error(code::INCONSISTENT_CLUSTER_ID))
        );
    }
}
