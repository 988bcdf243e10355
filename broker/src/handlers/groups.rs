//! The consumer-group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
//! OffsetCommit, OffsetFetch, ListGroups, DescribeGroups, DeleteGroups, OffsetDelete.
//!
//! Each request is turned into a [`GroupCall`] and answered by the core that coordinates the
//! group (see `crate::groups`): directly when that is this core, else over the mesh. Requests
//! naming several groups are split per group and the answers merged in request order.
//! `__consumer_offsets` is created by the first FindCoordinator, JoinGroup or OffsetCommit;
//! before it exists, read-only requests answer as for unknown groups.

use std::collections::BTreeMap;
use std::rc::Rc;

use sluice_net::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use sluice_net::messages::find_coordinator_response::Coordinator;
use sluice_net::messages::join_group_response::JoinGroupResponseMember;
use sluice_net::messages::leave_group_response::MemberResponse;
use sluice_net::messages::list_groups_response::ListedGroup;
use sluice_net::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use sluice_net::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use sluice_net::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use sluice_net::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    FindCoordinatorRequest, FindCoordinatorResponse, HeartbeatRequest, HeartbeatResponse,
    JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest,
    ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest,
    OffsetDeleteResponse, OffsetFetchRequest, OffsetFetchResponse, SyncGroupRequest,
    SyncGroupResponse,
};
use sluice_net::{BrokerId, GroupId, StrBytes, TopicName, Uuid};

use crate::core::Core;
use crate::errors::code;
use crate::groups::group::JoinArgs;
use crate::groups::{self, CommitEntry, FetchedOffset, GroupCall, GroupReply, OFFSETS_TOPIC};
use crate::messages::{CoreReply, CoreRequest};
use crate::registry::{TopicChange, TopicChangeError};

/// Kafka's text for INVALID_REQUEST.
const INVALID_REQUEST_MESSAGE: &str = "This most likely occurs because of a request being malformed by the client library or the message was sent to an incompatible broker. See the broker logs for more details.";

/// Who sent the request: JoinGroup records it for DescribeGroups.
#[derive(Debug, Clone, Default)]
pub struct Client {
    pub client_id: String,
    /// Kafka's form: `/127.0.0.1`.
    pub host: String,
}

fn opt(s: &Option<StrBytes>) -> Option<String> {
    s.as_ref().map(|s| s.to_string())
}

/// The `__consumer_offsets` partition of `group` and the core of this broker that owns it:
/// COORDINATOR_NOT_AVAILABLE while the topic does not exist or the partition has no leader,
/// NOT_COORDINATOR when another broker leads it.
fn locate(core: &Rc<Core>, group: &str) -> Result<(i32, usize), i16> {
    let table = core.topics();
    let t = table
        .topics()
        .get(OFFSETS_TOPIC)
        .ok_or(code::COORDINATOR_NOT_AVAILABLE)?;
    let p = groups::partition_for(group, t.partitions);
    match table.core_for(OFFSETS_TOPIC, p) {
        Some(owner) => Ok((p, owner)),
        None if coordinator_of(core, &table, group).is_some() => Err(code::NOT_COORDINATOR),
        None => Err(code::COORDINATOR_NOT_AVAILABLE),
    }
}

/// The live broker that coordinates `group` (the leader of its `__consumer_offsets`
/// partition), if there is one.
fn coordinator_of(
    core: &Rc<Core>,
    table: &crate::image::TopicImage,
    group: &str,
) -> Option<crate::image::BrokerEndpoint> {
    let t = table.topics().get(OFFSETS_TOPIC)?;
    let p = groups::partition_for(group, t.partitions);
    let leader = table.partition(OFFSETS_TOPIC, p)?.leader;
    core.brokers(table).into_iter().find(|b| b.id == leader)
}

/// Creates `__consumer_offsets` if it does not exist yet (compacted, 100 MiB segments, as
/// Kafka's defaults for it).
async fn ensure_offsets_topic(core: &Rc<Core>) -> Result<(), i16> {
    if core.topics().topics().contains_key(OFFSETS_TOPIC) {
        return Ok(());
    }
    let configs = BTreeMap::from([
        ("cleanup.policy".to_owned(), "compact".to_owned()),
        (
            "segment.bytes".to_owned(),
            crate::limits::OFFSETS_SEGMENT_BYTES.to_string(),
        ),
    ]);
    let change = TopicChange::Create {
        name: OFFSETS_TOPIC.to_owned(),
        partitions: core.config.offsets_topic_partitions,
        configs,
        dry_run: false,
    };
    match core.change_topics(vec![change]).await.pop() {
        Some(Ok(())) => {
            tracing::info!(
                partitions = core.config.offsets_topic_partitions,
                "created __consumer_offsets"
            );
            Ok(())
        }
        // Another request created it first.
        Some(Err(TopicChangeError::AlreadyExists(_))) => Ok(()),
        other => {
            tracing::warn!(outcome = ?other, "cannot create __consumer_offsets");
            Err(code::COORDINATOR_NOT_AVAILABLE)
        }
    }
}

/// Sends `call` to the coordinating core (or runs it here).
pub(super) async fn route(core: &Rc<Core>, target: usize, call: GroupCall) -> Option<GroupReply> {
    match core.router.call(target, CoreRequest::Group(call)).await {
        Ok(CoreReply::Group(r)) => Some(r),
        _ => None,
    }
}

/// Locates `group`'s coordinator, creating `__consumer_offsets` first when `create`.
pub(super) async fn coordinator(
    core: &Rc<Core>,
    group: &str,
    create: bool,
) -> Result<(i32, usize), i16> {
    if create {
        ensure_offsets_topic(core).await?;
    }
    locate(core, group)
}

pub async fn find_coordinator(
    core: &Rc<Core>,
    request: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let keys = if version >= 4 {
        request.coordinator_keys
    } else {
        vec![request.key]
    };
    let mut coordinators = Vec::with_capacity(keys.len());
    for key in keys {
        let (error, found) = match request.key_type {
            1 => match crate::txn::ensure_topic(core).await {
                Ok(()) => match crate::txn::coordinator_of(core, &core.topics(), key.as_str()) {
                    Some(b) => (code::NONE, Some(b)),
                    None => (code::COORDINATOR_NOT_AVAILABLE, None),
                },
                Err(e) => (e.code(), None),
            },
            0 => match ensure_offsets_topic(core).await {
                Ok(()) => match coordinator_of(core, &core.topics(), key.as_str()) {
                    Some(b) => (code::NONE, Some(b)),
                    None => (code::COORDINATOR_NOT_AVAILABLE, None),
                },
                Err(e) => (e, None),
            },
            _ => (code::INVALID_REQUEST, None),
        };
        let ok = error == code::NONE;
        coordinators.push(Coordinator {
            key,
            node_id: BrokerId(found.as_ref().map_or(-1, |b| b.id)),
            host: found
                .as_ref()
                .map_or_else(StrBytes::default, |b| b.host.as_str().into()),
            port: found.as_ref().map_or(-1, |b| b.port),
            error_code: error,
            // Kafka: "NONE" on success in v1-3 and "" in every v4+ entry.
            error_message: Some(if version >= 4 {
                StrBytes::default()
            } else if ok {
                StrBytes::from_static("NONE")
            } else {
                StrBytes::from(error_message(error))
            }),
            ..Default::default()
        });
    }
    let mut r = FindCoordinatorResponse::default();
    if version < 4 {
        if let Some(c) = coordinators.pop() {
            r.error_code = c.error_code;
            r.error_message = c.error_message;
            r.node_id = c.node_id;
            r.host = c.host;
            r.port = c.port;
        }
    } else {
        r.coordinators = coordinators;
    }
    r
}

fn error_message(c: i16) -> &'static str {
    match c {
        code::INVALID_REQUEST => INVALID_REQUEST_MESSAGE,
        code::COORDINATOR_NOT_AVAILABLE => "The coordinator is not available.",
        _ => "",
    }
}

pub async fn join_group(
    core: &Rc<Core>,
    request: JoinGroupRequest,
    version: i16,
    client: &Client,
) -> JoinGroupResponse {
    let args = JoinArgs {
        member_id: request.member_id.to_string(),
        group_instance_id: opt(&request.group_instance_id),
        client_id: client.client_id.clone(),
        client_host: client.host.clone(),
        session_timeout_ms: request.session_timeout_ms,
        rebalance_timeout_ms: if version == 0 {
            request.session_timeout_ms
        } else {
            request.rebalance_timeout_ms
        },
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), p.metadata))
            .collect(),
        require_known_member_id: version >= 4,
        supports_skip_assignment: version >= 9,
    };
    let group = request.group_id.to_string();
    let result = match coordinator(core, &group, true).await {
        Err(e) => Err(e),
        Ok((partition, target)) => match route(
            core,
            target,
            GroupCall::Join {
                partition,
                group,
                args,
            },
        )
        .await
        {
            Some(GroupReply::Join(j)) => Ok(j),
            _ => Err(code::COORDINATOR_NOT_AVAILABLE),
        },
    };
    let j = result.unwrap_or_else(|e| groups::group::JoinResult {
        error: e,
        generation: -1,
        member_id: request.member_id.to_string(),
        ..Default::default()
    });
    JoinGroupResponse {
        error_code: j.error,
        generation_id: j.generation,
        protocol_type: j.protocol_type.map(StrBytes::from),
        // Non-nullable before v7.
        protocol_name: if version >= 7 {
            j.protocol_name.map(StrBytes::from)
        } else {
            Some(StrBytes::from(j.protocol_name.unwrap_or_default()))
        },
        leader: j.leader.into(),
        skip_assignment: j.skip_assignment,
        member_id: j.member_id.into(),
        members: j
            .members
            .into_iter()
            .map(|(member_id, instance, metadata)| JoinGroupResponseMember {
                member_id: member_id.into(),
                group_instance_id: instance.map(StrBytes::from),
                metadata,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

pub async fn sync_group(
    core: &Rc<Core>,
    request: SyncGroupRequest,
    version: i16,
) -> SyncGroupResponse {
    let group = request.group_id.to_string();
    if group.is_empty() {
        return SyncGroupResponse {
            error_code: code::INVALID_GROUP_ID,
            ..Default::default()
        };
    }
    let reply = match locate(core, &group) {
        Err(code::NOT_COORDINATOR) => {
            return SyncGroupResponse {
                error_code: code::NOT_COORDINATOR,
                ..Default::default()
            };
        }
        Err(_) => None,
        Ok((partition, target)) => {
            route(
                core,
                target,
                GroupCall::Sync {
                    partition,
                    group,
                    member_id: request.member_id.to_string(),
                    instance_id: opt(&request.group_instance_id),
                    generation: request.generation_id,
                    protocol_type: opt(&request.protocol_type),
                    protocol_name: opt(&request.protocol_name),
                    require_protocol: version >= 5,
                    assignments: request
                        .assignments
                        .into_iter()
                        .map(|a| (a.member_id.to_string(), a.assignment))
                        .collect(),
                },
            )
            .await
        }
    };
    match reply {
        Some(GroupReply::Sync(s)) => SyncGroupResponse {
            error_code: s.error,
            protocol_type: s.protocol_type.map(StrBytes::from),
            protocol_name: s.protocol_name.map(StrBytes::from),
            assignment: s.assignment,
            ..Default::default()
        },
        _ => SyncGroupResponse {
            error_code: code::UNKNOWN_MEMBER_ID,
            ..Default::default()
        },
    }
}

pub async fn heartbeat(
    core: &Rc<Core>,
    request: HeartbeatRequest,
    _version: i16,
) -> HeartbeatResponse {
    let group = request.group_id.to_string();
    let error = match locate(core, &group) {
        _ if group.is_empty() => code::INVALID_GROUP_ID,
        Err(code::NOT_COORDINATOR) => code::NOT_COORDINATOR,
        Err(_) => code::UNKNOWN_MEMBER_ID,
        Ok((partition, target)) => match route(
            core,
            target,
            GroupCall::Heartbeat {
                partition,
                group,
                member_id: request.member_id.to_string(),
                instance_id: opt(&request.group_instance_id),
                generation: request.generation_id,
            },
        )
        .await
        {
            Some(GroupReply::Code(c)) => c,
            _ => code::COORDINATOR_NOT_AVAILABLE,
        },
    };
    HeartbeatResponse {
        error_code: error,
        ..Default::default()
    }
}

pub async fn leave_group(
    core: &Rc<Core>,
    request: LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        request
            .members
            .iter()
            .map(|m| (m.member_id.to_string(), opt(&m.group_instance_id)))
            .collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    let group = request.group_id.to_string();
    let outcome = match locate(core, &group) {
        _ if group.is_empty() => Err(code::INVALID_GROUP_ID),
        Err(code::NOT_COORDINATOR) => Err(code::NOT_COORDINATOR),
        Err(_) => Ok(vec![code::UNKNOWN_MEMBER_ID; members.len()]),
        Ok((partition, target)) => match route(
            core,
            target,
            GroupCall::Leave {
                partition,
                group,
                members: members.clone(),
            },
        )
        .await
        {
            Some(GroupReply::Leave(r)) => r,
            _ => Err(code::COORDINATOR_NOT_AVAILABLE),
        },
    };
    let mut r = LeaveGroupResponse::default();
    match outcome {
        Err(e) => r.error_code = e,
        Ok(codes) if version < 3 => r.error_code = codes.first().copied().unwrap_or(code::NONE),
        Ok(codes) => {
            r.members = members
                .into_iter()
                .zip(codes)
                .map(|((member_id, instance), error_code)| MemberResponse {
                    member_id: member_id.into(),
                    group_instance_id: instance.map(StrBytes::from),
                    error_code,
                    ..Default::default()
                })
                .collect();
        }
    }
    r
}

/// The topic names of a request's topics: by name before v10 of OffsetCommit/OffsetFetch, by
/// topic id from v10 (KIP-848), `None` for an id no topic has (UNKNOWN_TOPIC_ID, answered
/// before the coordinator is asked, as Kafka does).
pub(super) fn topic_names<'a>(
    core: &Core,
    by_id: bool,
    topics: impl Iterator<Item = (&'a TopicName, &'a Uuid)>,
) -> Vec<Option<String>> {
    let table = core.topics();
    topics
        .map(|(name, id)| {
            if by_id {
                table.by_id(&id.0).map(|m| m.name.clone())
            } else {
                Some(name.to_string())
            }
        })
        .collect()
}

/// The entries of an OffsetCommit or TxnOffsetCommit: each partition (made an entry by
/// `entry`) of every topic that `names` could name, in request order.
pub(super) fn named_entries<'a, P: 'a>(
    topics: impl Iterator<Item = &'a [P]>,
    names: &[Option<String>],
    entry: impl Fn(String, &P) -> CommitEntry,
) -> Vec<CommitEntry> {
    topics
        .zip(names)
        .filter_map(|(partitions, name)| Some((partitions, name.as_ref()?)))
        .flat_map(|(partitions, name)| partitions.iter().map(|p| entry(name.clone(), p)))
        .collect()
}

pub async fn offset_commit(
    core: &Rc<Core>,
    request: OffsetCommitRequest,
    version: i16,
) -> OffsetCommitResponse {
    let names = topic_names(
        core,
        version >= 10,
        request.topics.iter().map(|t| (&t.name, &t.topic_id)),
    );
    let topics = request.topics.iter().map(|t| &t.partitions[..]);
    let offsets = named_entries(topics, &names, |name, p| {
        let at = (p.committed_offset, p.committed_leader_epoch);
        CommitEntry::new(name, p.partition_index, at, p.committed_metadata.as_ref())
    });
    let group = request.group_id.to_string();
    let outcome = if offsets.is_empty() && !request.topics.is_empty() {
        Ok(Vec::new())
    } else {
        match coordinator(core, &group, true).await {
            Err(e) => Err(e),
            Ok((partition, target)) => match route(
                core,
                target,
                GroupCall::Commit {
                    partition,
                    group,
                    member_id: request.member_id.to_string(),
                    instance_id: opt(&request.group_instance_id),
                    generation: request.generation_id_or_member_epoch,
                    offsets,
                    version,
                },
            )
            .await
            {
                Some(GroupReply::Commit(r)) => r,
                _ => Err(code::COORDINATOR_NOT_AVAILABLE),
            },
        }
    };
    let mut codes = outcome.as_ref().ok().map(|c| c.iter().copied());
    let top = outcome.as_ref().err().copied();
    let topics = request
        .topics
        .into_iter()
        .zip(names)
        .map(|(t, name)| OffsetCommitResponseTopic {
            name: t.name,
            topic_id: t.topic_id,
            partitions: t
                .partitions
                .iter()
                .map(|p| OffsetCommitResponsePartition {
                    partition_index: p.partition_index,
                    error_code: if name.is_none() {
                        code::UNKNOWN_TOPIC_ID
                    } else {
                        top.or_else(|| codes.as_mut().and_then(Iterator::next))
                            .unwrap_or(code::UNKNOWN_SERVER_ERROR)
                    },
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    OffsetCommitResponse {
        topics,
        ..Default::default()
    }
}

/// Committed offsets of one group (the v8+ shape; older versions are shaped from it).
async fn fetch_group(
    core: &Rc<Core>,
    group: String,
    topics: Option<Vec<(String, Vec<i32>)>>,
    require_stable: bool,
) -> Result<Vec<(String, Vec<FetchedOffset>)>, i16> {
    let unknown = |topics: Option<Vec<(String, Vec<i32>)>>| {
        topics
            .unwrap_or_default()
            .into_iter()
            .map(|(t, ps)| {
                let list = ps
                    .into_iter()
                    .map(|p| FetchedOffset {
                        partition: p,
                        offset: -1,
                        leader_epoch: -1,
                        metadata: String::new(),
                        error: code::NONE,
                    })
                    .collect();
                (t, list)
            })
            .collect()
    };
    let (partition, target) = match locate(core, &group) {
        Ok(found) => found,
        Err(code::NOT_COORDINATOR) => return Err(code::NOT_COORDINATOR),
        Err(_) => return Ok(unknown(topics)),
    };
    match route(
        core,
        target,
        GroupCall::FetchOffsets {
            partition,
            group,
            topics,
            require_stable,
        },
    )
    .await
    {
        Some(GroupReply::Offsets(r)) => r,
        _ => Err(code::COORDINATOR_NOT_AVAILABLE),
    }
}

/// Committed offsets per topic as one of OffsetFetch's two response shapes (v8+ groups, or
/// v1-7): the same fields in differently named generated types.
macro_rules! offset_topics {
    ($list:expr, $topic:ident, $partition:ident) => {
        $list
            .into_iter()
            .map(|(t, ps): (String, Vec<FetchedOffset>)| $topic {
                name: t.into(),
                partitions: ps
                    .into_iter()
                    .map(|p| $partition {
                        partition_index: p.partition,
                        committed_offset: p.offset,
                        committed_leader_epoch: p.leader_epoch,
                        metadata: Some(p.metadata.into()),
                        error_code: p.error,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
            .collect()
    };
}

pub async fn offset_fetch(
    core: &Rc<Core>,
    request: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    let mut r = OffsetFetchResponse::default();
    if version >= 8 {
        let by_id = version >= 10;
        for g in request.groups {
            // v10 names topics by id: unknown ids are answered UNKNOWN_TOPIC_ID per partition
            // without asking the coordinator, the others by their names.
            let mut unknown_ids = Vec::new();
            let topics = g.topics.map(|ts| {
                let names = topic_names(core, by_id, ts.iter().map(|t| (&t.name, &t.topic_id)));
                ts.into_iter()
                    .zip(names)
                    .filter_map(|(t, name)| match name {
                        Some(name) => Some((name, t.partition_indexes)),
                        None => {
                            unknown_ids.push((t.topic_id, t.partition_indexes));
                            None
                        }
                    })
                    .collect::<Vec<_>>()
            });
            let group_id = g.group_id.clone();
            let mut out = OffsetFetchResponseGroup {
                group_id,
                ..Default::default()
            };
            let asked_none = topics.as_ref().is_some_and(Vec::is_empty) && !unknown_ids.is_empty();
            let fetched = if asked_none {
                Ok(Vec::new())
            } else {
                fetch_group(core, g.group_id.to_string(), topics, request.require_stable).await
            };
            match fetched {
                Err(e) => out.error_code = e,
                Ok(list) => {
                    out.topics = offset_topics!(
                        list,
                        OffsetFetchResponseTopics,
                        OffsetFetchResponsePartitions
                    );
                    if by_id {
                        let table = core.topics();
                        for t in &mut out.topics {
                            if let Some(m) = table.topics().get(t.name.as_str()) {
                                t.topic_id = Uuid(m.id);
                            }
                        }
                    }
                    out.topics
                        .extend(unknown_ids.into_iter().map(|(id, partitions)| {
                            OffsetFetchResponseTopics {
                                topic_id: id,
                                partitions: partitions
                                    .into_iter()
                                    .map(|p| OffsetFetchResponsePartitions {
                                        partition_index: p,
                                        committed_offset: -1,
                                        committed_leader_epoch: -1,
                                        metadata: Some(StrBytes::from_static("")),
                                        error_code: code::UNKNOWN_TOPIC_ID,
                                        ..Default::default()
                                    })
                                    .collect(),
                                ..Default::default()
                            }
                        }));
                }
            }
            r.groups.push(out);
        }
        return r;
    }
    let topics = request.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.to_string(), t.partition_indexes))
            .collect()
    });
    let stable = version >= 7 && request.require_stable;
    match fetch_group(core, request.group_id.to_string(), topics, stable).await {
        Err(e) => r.error_code = e,
        Ok(list) => {
            r.topics = offset_topics!(list, OffsetFetchResponseTopic, OffsetFetchResponsePartition);
        }
    }
    r
}

pub async fn list_groups(
    core: &Rc<Core>,
    request: ListGroupsRequest,
    version: i16,
) -> ListGroupsResponse {
    let mut all = Vec::new();
    for target in 0..core.router.cores() {
        match route(core, target, GroupCall::List).await {
            Some(GroupReply::Listed(l)) => all.extend(l),
            _ => {
                return ListGroupsResponse {
                    error_code: code::COORDINATOR_NOT_AVAILABLE,
                    ..Default::default()
                };
            }
        }
    }
    let states: Vec<String> = request
        .states_filter
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let types: Vec<String> = request
        .types_filter
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    all.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    ListGroupsResponse {
        groups: all
            .into_iter()
            .filter(|g| {
                version < 4 || states.is_empty() || states.contains(&g.state.to_ascii_lowercase())
            })
            .filter(|_| version < 5 || types.is_empty() || types.iter().any(|t| t == "classic"))
            .map(|g| ListedGroup {
                group_id: g.group_id.into(),
                protocol_type: g.protocol_type.into(),
                group_state: g.state.into(),
                group_type: StrBytes::from_static("classic"),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// Splits `names` by coordinating core; each core's list keeps the request's order index.
fn by_core(core: &Rc<Core>, names: &[GroupId]) -> BTreeMap<usize, Vec<(usize, i32, String)>> {
    let mut per: BTreeMap<usize, Vec<(usize, i32, String)>> = BTreeMap::new();
    for (i, n) in names.iter().enumerate() {
        if let Ok((p, target)) = locate(core, n) {
            per.entry(target).or_default().push((i, p, n.to_string()));
        }
    }
    per
}

pub async fn describe_groups(
    core: &Rc<Core>,
    request: DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    let ops = super::authorized::when(
        request.include_authorized_operations,
        super::authorized::GROUP,
    );
    let not_found = |name: &GroupId| {
        let mut d = DescribedGroup {
            group_id: name.clone(),
            group_state: StrBytes::from_static("Dead"),
            authorized_operations: ops,
            ..Default::default()
        };
        if version >= 6 {
            d.authorized_operations = super::authorized::OMITTED;
            d.error_code = code::GROUP_ID_NOT_FOUND;
            d.error_message = Some(format!("Group {} not found.", name.as_str()).into());
        }
        d
    };
    let mut out: Vec<DescribedGroup> = request.groups.iter().map(not_found).collect();
    for (target, list) in by_core(core, &request.groups) {
        let call = GroupCall::Describe {
            groups: list.iter().map(|(_, p, g)| (*p, g.clone())).collect(),
        };
        let described = match route(core, target, call).await {
            Some(GroupReply::Described(d)) => d,
            _ => {
                for (i, _, _) in &list {
                    out[*i].error_code = code::COORDINATOR_NOT_AVAILABLE;
                }
                continue;
            }
        };
        for ((i, _, _), d) in list.iter().zip(described) {
            if !d.found && d.error == code::NONE {
                continue;
            }
            out[*i] = DescribedGroup {
                error_code: d.error,
                group_id: d.group_id.into(),
                group_state: d.state.into(),
                protocol_type: d.protocol_type.into(),
                protocol_data: d.protocol.into(),
                members: d
                    .members
                    .into_iter()
                    .map(|m| DescribedGroupMember {
                        member_id: m.member_id.into(),
                        group_instance_id: m.group_instance_id.map(StrBytes::from),
                        client_id: m.client_id.into(),
                        client_host: m.client_host.into(),
                        member_metadata: m.metadata,
                        member_assignment: m.assignment,
                        ..Default::default()
                    })
                    .collect(),
                authorized_operations: ops,
                ..Default::default()
            };
        }
    }
    DescribeGroupsResponse {
        groups: out,
        ..Default::default()
    }
}

pub async fn delete_groups(
    core: &Rc<Core>,
    request: DeleteGroupsRequest,
    _version: i16,
) -> DeleteGroupsResponse {
    let mut codes = vec![code::GROUP_ID_NOT_FOUND; request.groups_names.len()];
    for (target, list) in by_core(core, &request.groups_names) {
        let call = GroupCall::Delete {
            groups: list.iter().map(|(_, p, g)| (*p, g.clone())).collect(),
        };
        match route(core, target, call).await {
            Some(GroupReply::Deleted(d)) => {
                for ((i, _, _), c) in list.iter().zip(d) {
                    codes[*i] = c;
                }
            }
            _ => {
                for (i, _, _) in &list {
                    codes[*i] = code::COORDINATOR_NOT_AVAILABLE;
                }
            }
        }
    }
    DeleteGroupsResponse {
        results: request
            .groups_names
            .into_iter()
            .zip(codes)
            .map(|(group_id, error_code)| {
                sluice_net::messages::delete_groups_response::DeletableGroupResult {
                    group_id,
                    error_code,
                    ..Default::default()
                }
            })
            .collect(),
        ..Default::default()
    }
}

pub async fn offset_delete(
    core: &Rc<Core>,
    request: OffsetDeleteRequest,
    _version: i16,
) -> OffsetDeleteResponse {
    let group = request.group_id.to_string();
    let partitions: Vec<(String, i32)> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.name.to_string(), p.partition_index))
        })
        .collect();
    let outcome = match locate(core, &group) {
        _ if group.is_empty() => Err(code::INVALID_GROUP_ID),
        Err(code::NOT_COORDINATOR) => Err(code::NOT_COORDINATOR),
        Err(_) => Err(code::GROUP_ID_NOT_FOUND),
        Ok((partition, target)) => match route(
            core,
            target,
            GroupCall::DeleteOffsets {
                partition,
                group,
                partitions,
            },
        )
        .await
        {
            Some(GroupReply::OffsetsDeleted(r)) => r,
            _ => Err(code::COORDINATOR_NOT_AVAILABLE),
        },
    };
    match outcome {
        Err(e) => OffsetDeleteResponse {
            error_code: e,
            ..Default::default()
        },
        Ok(codes) => {
            let mut codes = codes.into_iter();
            OffsetDeleteResponse {
                topics: request
                    .topics
                    .into_iter()
                    .map(|t| OffsetDeleteResponseTopic {
                        name: t.name,
                        partitions: t
                            .partitions
                            .iter()
                            .map(|p| OffsetDeleteResponsePartition {
                                partition_index: p.partition_index,
                                error_code: codes.next().unwrap_or(code::UNKNOWN_SERVER_ERROR),
                            })
                            .collect(),
                    })
                    .collect(),
                ..Default::default()
            }
        }
    }
}
