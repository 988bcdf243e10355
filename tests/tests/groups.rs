//! The classic consumer-group protocol through raw requests, pinned to what Apache Kafka 4.4.0
//! answers (the facts are in `tests/diff/KAFKA-FACTS.md`, "Consumer groups (classic protocol)").
//!
//! Run against the reference Kafka with
//! `SLUICE_TEST_BOOTSTRAP=$(cat DIR/bootstrap) cargo test -p sluice-tests --test groups`
//! (each test makes its own groups and topics, so a running Kafka can be reused).
//!
//! Timing: only `session_expiry_removes_member` waits on a session (6 s). Every first JoinGroup
//! into an Empty group waits group.initial.rebalance.delay.ms (0 in `tests/kafka-ref`, Kafka's
//! default 3 s, sluice's 300 ms); no assertion depends on that delay.

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use sluice_net::messages::create_topics_request::CreatableTopic;
use sluice_net::messages::join_group_request::JoinGroupRequestProtocol;
use sluice_net::messages::join_group_response::JoinGroupResponseMember;
use sluice_net::messages::leave_group_request::MemberIdentity;
use sluice_net::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use sluice_net::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use sluice_net::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use sluice_net::messages::sync_group_request::SyncGroupRequestAssignment;
use sluice_net::messages::*;
use sluice_net::{ApiKey, Request};
use sluice_tests::{Broker, RawConn, call, expect, uniq};

// ---------------------------------------------------------------------------------------------
// Error codes (Kafka's protocol numbers).

const NONE: i16 = 0;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const OFFSET_METADATA_TOO_LARGE: i16 = 12;
const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const NOT_COORDINATOR: i16 = 16;
const ILLEGAL_GENERATION: i16 = 22;
const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
const INVALID_GROUP_ID: i16 = 24;
const UNKNOWN_MEMBER_ID: i16 = 25;
const INVALID_SESSION_TIMEOUT: i16 = 26;
const REBALANCE_IN_PROGRESS: i16 = 27;
const INVALID_REQUEST: i16 = 42;
const NON_EMPTY_GROUP: i16 = 68;
const GROUP_ID_NOT_FOUND: i16 = 69;
const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;
const MEMBER_ID_REQUIRED: i16 = 79;
const FENCED_INSTANCE_ID: i16 = 82;

// ---------------------------------------------------------------------------------------------
// Plumbing.

/// A connection with a long read timeout: JoinGroup answers wait for the rebalance.
fn connect(b: &Broker) -> RawConn {
    let c = RawConn::connect(b.addr);
    c.stream
        .set_read_timeout(Some(Duration::from_secs(40)))
        .expect("timeout");
    c
}

/// A wire string from `x`: a `StrBytes`, or an entity such as `TopicName` or `GroupId`.
fn s<T: for<'a> From<&'a str>>(x: &str) -> T {
    x.into()
}

use sluice_net::{BrokerId, StrBytes};

fn str_of(x: &str) -> String {
    x.to_string()
}

fn opt_str(x: &Option<StrBytes>) -> Option<String> {
    x.as_ref().map(|v| v.to_string())
}

/// Starts the broker under test (or uses `SLUICE_TEST_BOOTSTRAP`) and waits until it
/// coordinates groups: Kafka answers COORDINATOR_NOT_AVAILABLE until its `__consumer_offsets`
/// topic exists (the first FindCoordinator after a fresh start creates it).
fn start() -> Broker {
    let b = Broker::start(&[]);
    let mut c = connect(&b);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = find_coordinator(&mut c, 3, &uniq("probe"), 0);
        if r.error_code == NONE {
            break;
        }
        assert_eq!(
            r.error_code, COORDINATOR_NOT_AVAILABLE,
            "FindCoordinator while starting: {r:?}"
        );
        assert!(
            Instant::now() < deadline,
            "no group coordinator within 30 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Then its offsets partitions load: group requests answer COORDINATOR_LOAD_IN_PROGRESS (14)
    // or NOT_COORDINATOR (16) for a moment.
    loop {
        let d = describe(&mut c, 5, &[&uniq("probe")], false);
        let e = d.groups[0].error_code;
        if e == NONE {
            break;
        }
        assert!(
            [COORDINATOR_LOAD_IN_PROGRESS, NOT_COORDINATOR].contains(&e),
            "DescribeGroups while starting: {d:?}"
        );
        assert!(
            Instant::now() < deadline,
            "group coordinator not loaded within 30 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    b
}

/// Node id, host and port the broker reports for itself in Metadata.
fn self_node(c: &mut RawConn) -> (BrokerId, String, i32) {
    let r = expect!(
        call(
            c,
            ApiKey::Metadata,
            12,
            Request::Metadata(MetadataRequest {
                topics: Some(vec![]),
                allow_auto_topic_creation: false,
                ..Default::default()
            })
        ),
        Metadata
    );
    assert_eq!(r.brokers.len(), 1, "one broker: {r:?}");
    let n = &r.brokers[0];
    (n.node_id, str_of(&n.host), n.port)
}

fn create_topic(c: &mut RawConn, name: &str, partitions: i32) {
    let r = expect!(
        call(
            c,
            ApiKey::CreateTopics,
            7,
            Request::CreateTopics(CreateTopicsRequest {
                topics: vec![CreatableTopic {
                    name: s(name),
                    num_partitions: partitions,
                    replication_factor: 1,
                    ..Default::default()
                }],
                timeout_ms: 10_000,
                ..Default::default()
            })
        ),
        CreateTopics
    );
    assert_eq!(r.topics[0].error_code, NONE, "create {name}: {r:?}");
    // Kafka propagates new topics to its metadata cache asynchronously: wait until Metadata
    // lists every partition, as group requests check topics against that cache.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let m = expect!(
            call(
                c,
                ApiKey::Metadata,
                12,
                Request::Metadata(MetadataRequest {
                    topics: Some(vec![
                        sluice_net::messages::metadata_request::MetadataRequestTopic {
                            name: Some(s(name)),
                            ..Default::default()
                        }
                    ]),
                    allow_auto_topic_creation: false,
                    ..Default::default()
                })
            ),
            Metadata
        );
        let t = &m.topics[0];
        if t.error_code == NONE && t.partitions.len() == partitions as usize {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "topic {name} not in metadata: {m:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

// --- consumer protocol payloads (ConsumerProtocolSubscription / Assignment v0) ---------------

fn put_str(b: &mut BytesMut, x: &str) {
    b.put_i16(x.len() as i16);
    b.put_slice(x.as_bytes());
}

fn subscription(topics: &[&str]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    b.put_i32(topics.len() as i32);
    for t in topics {
        put_str(&mut b, t);
    }
    b.put_i32(-1); // user data: null
    b.freeze()
}

fn assignment(parts: &[(&str, &[i32])]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    b.put_i32(parts.len() as i32);
    for (t, ps) in parts {
        put_str(&mut b, t);
        b.put_i32(ps.len() as i32);
        for p in *ps {
            b.put_i32(*p);
        }
    }
    b.put_i32(-1);
    b.freeze()
}

// --- request helpers ---------------------------------------------------------------------------

fn find_coordinator(c: &mut RawConn, v: i16, key: &str, key_type: i8) -> FindCoordinatorResponse {
    let req = if v >= 4 {
        FindCoordinatorRequest {
            key_type,
            coordinator_keys: vec![s(key)],
            ..Default::default()
        }
    } else {
        FindCoordinatorRequest {
            key: s(key),
            key_type,
            ..Default::default()
        }
    };
    let mut r = expect!(
        call(c, ApiKey::FindCoordinator, v, Request::FindCoordinator(req)),
        FindCoordinator
    );
    if v >= 4 {
        // Fold the batched answer into the v0-3 fields so callers can check either.
        let k = r.coordinators[0].clone();
        r.error_code = k.error_code;
        r.node_id = k.node_id;
        r.host = k.host;
        r.port = k.port;
        r.error_message = k.error_message;
    }
    r
}

/// A JoinGroup request of a "consumer" member subscribing to `topics` with the "range" protocol.
#[derive(Clone, Debug)]
struct Join {
    group: String,
    member: String,
    instance: Option<String>,
    session_ms: i32,
    rebalance_ms: i32,
    protocol_type: String,
    protocols: Vec<(String, Bytes)>,
}

impl Join {
    fn new(group: &str, topics: &[&str]) -> Join {
        Join {
            group: group.to_owned(),
            member: String::new(),
            instance: None,
            session_ms: 6000,
            rebalance_ms: 10_000,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), subscription(topics))],
        }
    }
    fn member(mut self, m: &str) -> Join {
        self.member = m.to_owned();
        self
    }
    fn instance(mut self, i: &str) -> Join {
        self.instance = Some(i.to_owned());
        self
    }
    fn request(&self) -> Request {
        Request::JoinGroup(JoinGroupRequest {
            group_id: s(&self.group),
            session_timeout_ms: self.session_ms,
            rebalance_timeout_ms: self.rebalance_ms,
            member_id: s(&self.member),
            group_instance_id: self.instance.as_deref().map(s),
            protocol_type: s(&self.protocol_type),
            protocols: self
                .protocols
                .iter()
                .map(|(n, m)| JoinGroupRequestProtocol {
                    name: s(n),
                    metadata: m.clone(),
                    ..Default::default()
                })
                .collect(),
            reason: None,
            ..Default::default()
        })
    }
    fn send(&self, c: &mut RawConn, v: i16) -> JoinGroupResponse {
        expect!(call(c, ApiKey::JoinGroup, v, self.request()), JoinGroup)
    }
}

/// Joins a new member the way a v4+ client does (MEMBER_ID_REQUIRED, then again with the id);
/// returns the second answer.
fn join_new(c: &mut RawConn, v: i16, j: &Join) -> JoinGroupResponse {
    let first = j.send(c, v);
    assert_eq!(first.error_code, MEMBER_ID_REQUIRED, "{first:?}");
    let id = str_of(&first.member_id);
    assert!(!id.is_empty());
    j.clone().member(&id).send(c, v)
}

#[allow(clippy::too_many_arguments)]
fn sync(
    c: &mut RawConn,
    v: i16,
    group: &str,
    generation: i32,
    member: &str,
    instance: Option<&str>,
    assignments: &[(&str, Bytes)],
) -> SyncGroupResponse {
    sync_typed(
        c,
        v,
        group,
        generation,
        member,
        instance,
        Some("consumer"),
        Some("range"),
        assignments,
    )
}

#[allow(clippy::too_many_arguments)]
fn sync_typed(
    c: &mut RawConn,
    v: i16,
    group: &str,
    generation: i32,
    member: &str,
    instance: Option<&str>,
    protocol_type: Option<&str>,
    protocol_name: Option<&str>,
    assignments: &[(&str, Bytes)],
) -> SyncGroupResponse {
    expect!(
        call(
            c,
            ApiKey::SyncGroup,
            v,
            Request::SyncGroup(SyncGroupRequest {
                group_id: s(group),
                generation_id: generation,
                member_id: s(member),
                group_instance_id: instance.map(s),
                protocol_type: protocol_type.map(s),
                protocol_name: protocol_name.map(s),
                assignments: assignments
                    .iter()
                    .map(|(m, a)| SyncGroupRequestAssignment {
                        member_id: s(m),
                        assignment: a.clone(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
        ),
        SyncGroup
    )
}

fn heartbeat(
    c: &mut RawConn,
    v: i16,
    group: &str,
    generation: i32,
    member: &str,
    instance: Option<&str>,
) -> i16 {
    expect!(
        call(
            c,
            ApiKey::Heartbeat,
            v,
            Request::Heartbeat(HeartbeatRequest {
                group_id: s(group),
                generation_id: generation,
                member_id: s(member),
                group_instance_id: instance.map(s),
                ..Default::default()
            })
        ),
        Heartbeat
    )
    .error_code
}

/// LeaveGroup v3+: `(member id, instance id)` pairs.
fn leave_batch(
    c: &mut RawConn,
    v: i16,
    group: &str,
    members: &[(&str, Option<&str>)],
) -> LeaveGroupResponse {
    expect!(
        call(
            c,
            ApiKey::LeaveGroup,
            v,
            Request::LeaveGroup(LeaveGroupRequest {
                group_id: s(group),
                members: members
                    .iter()
                    .map(|(m, i)| MemberIdentity {
                        member_id: s(m),
                        group_instance_id: i.map(s),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
        ),
        LeaveGroup
    )
}

fn leave_one(c: &mut RawConn, v: i16, group: &str, member: &str) -> LeaveGroupResponse {
    expect!(
        call(
            c,
            ApiKey::LeaveGroup,
            v,
            Request::LeaveGroup(LeaveGroupRequest {
                group_id: s(group),
                member_id: s(member),
                ..Default::default()
            })
        ),
        LeaveGroup
    )
}

/// OffsetCommit of `(topic, partition, offset, metadata)`; answers `(topic, partition, error)`.
fn commit(
    c: &mut RawConn,
    v: i16,
    group: &str,
    generation: i32,
    member: &str,
    offsets: &[(&str, i32, i64, Option<&str>)],
) -> Vec<(String, i32, i16)> {
    let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
    for (t, p, o, m) in offsets {
        let part = OffsetCommitRequestPartition {
            partition_index: *p,
            committed_offset: *o,
            committed_leader_epoch: -1,
            committed_metadata: m.map(s),
            ..Default::default()
        };
        match topics.iter_mut().find(|x| &*x.name == *t) {
            Some(x) => x.partitions.push(part),
            None => topics.push(OffsetCommitRequestTopic {
                name: s(t),
                partitions: vec![part],
                ..Default::default()
            }),
        }
    }
    let r = expect!(
        call(
            c,
            ApiKey::OffsetCommit,
            v,
            Request::OffsetCommit(OffsetCommitRequest {
                group_id: s(group),
                generation_id_or_member_epoch: generation,
                member_id: s(member),
                topics,
                ..Default::default()
            })
        ),
        OffsetCommit
    );
    r.topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (str_of(&t.name), p.partition_index, p.error_code))
        })
        .collect::<Vec<_>>()
        .tap_sort()
}

/// Sorting in expression position.
trait TapSort {
    fn tap_sort(self) -> Self;
}

impl<T: Ord> TapSort for Vec<T> {
    fn tap_sort(mut self) -> Self {
        self.sort();
        self
    }
}

/// One fetched offset: `(topic, partition, offset, leader epoch, metadata, error)`.
type Fetched = (String, i32, i64, i32, Option<String>, i16);

/// Explicit partitions to fetch: `(topic, partitions)`.
type Wanted<'a> = &'a [(&'a str, &'a [i32])];

/// OffsetFetch v1-7 for one group; `None` topics = all. Answers (top-level error, partitions).
fn fetch_offsets(
    c: &mut RawConn,
    v: i16,
    group: &str,
    topics: Option<Wanted<'_>>,
    require_stable: bool,
) -> (i16, Vec<Fetched>) {
    let r = expect!(
        call(
            c,
            ApiKey::OffsetFetch,
            v,
            Request::OffsetFetch(OffsetFetchRequest {
                group_id: s(group),
                topics: topics.map(|ts| {
                    ts.iter()
                        .map(|(t, ps)| OffsetFetchRequestTopic {
                            name: s(t),
                            partition_indexes: ps.to_vec(),
                            ..Default::default()
                        })
                        .collect()
                }),
                require_stable,
                ..Default::default()
            })
        ),
        OffsetFetch
    );
    let mut parts: Vec<Fetched> = r
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| {
                (
                    str_of(&t.name),
                    p.partition_index,
                    p.committed_offset,
                    p.committed_leader_epoch,
                    opt_str(&p.metadata),
                    p.error_code,
                )
            })
        })
        .collect();
    parts.sort();
    (r.error_code, parts)
}

/// OffsetFetch v8+ for several groups: answers `(group, error, partitions)` as received.
fn fetch_offsets_groups(
    c: &mut RawConn,
    v: i16,
    groups: &[(&str, Option<Wanted<'_>>)],
    require_stable: bool,
) -> Vec<(String, i16, Vec<Fetched>)> {
    let r = expect!(
        call(
            c,
            ApiKey::OffsetFetch,
            v,
            Request::OffsetFetch(OffsetFetchRequest {
                groups: groups
                    .iter()
                    .map(|(g, ts)| OffsetFetchRequestGroup {
                        group_id: s(g),
                        topics: ts.map(|ts| {
                            ts.iter()
                                .map(|(t, ps)| OffsetFetchRequestTopics {
                                    name: s(t),
                                    partition_indexes: ps.to_vec(),
                                    ..Default::default()
                                })
                                .collect()
                        }),
                        ..Default::default()
                    })
                    .collect(),
                require_stable,
                ..Default::default()
            })
        ),
        OffsetFetch
    );
    r.groups
        .iter()
        .map(|g| {
            let mut parts: Vec<Fetched> = g
                .topics
                .iter()
                .flat_map(|t| {
                    t.partitions.iter().map(move |p| {
                        (
                            str_of(&t.name),
                            p.partition_index,
                            p.committed_offset,
                            p.committed_leader_epoch,
                            opt_str(&p.metadata),
                            p.error_code,
                        )
                    })
                })
                .collect();
            parts.sort();
            (str_of(&g.group_id), g.error_code, parts)
        })
        .collect()
}

fn describe(c: &mut RawConn, v: i16, groups: &[&str], ops: bool) -> DescribeGroupsResponse {
    expect!(
        call(
            c,
            ApiKey::DescribeGroups,
            v,
            Request::DescribeGroups(DescribeGroupsRequest {
                groups: groups.iter().map(|g| s(g)).collect(),
                include_authorized_operations: ops,
                ..Default::default()
            })
        ),
        DescribeGroups
    )
}

fn delete_groups(c: &mut RawConn, v: i16, groups: &[&str]) -> Vec<(String, i16)> {
    let r = expect!(
        call(
            c,
            ApiKey::DeleteGroups,
            v,
            Request::DeleteGroups(DeleteGroupsRequest {
                groups_names: groups.iter().map(|g| s(g)).collect(),
                ..Default::default()
            })
        ),
        DeleteGroups
    );
    // Kafka answers grouped by its offsets partition, not in request order: sorted here.
    r.results
        .iter()
        .map(|x| (str_of(&x.group_id), x.error_code))
        .collect::<Vec<_>>()
        .tap_sort()
}

fn list_groups(c: &mut RawConn, v: i16, states: &[&str], types: &[&str]) -> ListGroupsResponse {
    expect!(
        call(
            c,
            ApiKey::ListGroups,
            v,
            Request::ListGroups(ListGroupsRequest {
                states_filter: states.iter().map(|x| s(x)).collect(),
                types_filter: types.iter().map(|x| s(x)).collect(),
                ..Default::default()
            })
        ),
        ListGroups
    )
}

/// OffsetDelete: answers (top-level error, [(topic, partition, error)]).
fn offset_delete(
    c: &mut RawConn,
    group: &str,
    parts: &[(&str, &[i32])],
) -> (i16, Vec<(String, i32, i16)>) {
    let r = expect!(
        call(
            c,
            ApiKey::OffsetDelete,
            0,
            Request::OffsetDelete(OffsetDeleteRequest {
                group_id: s(group),
                topics: parts
                    .iter()
                    .map(|(t, ps)| OffsetDeleteRequestTopic {
                        name: s(t),
                        partitions: ps
                            .iter()
                            .map(|p| OffsetDeleteRequestPartition {
                                partition_index: *p,
                            })
                            .collect(),
                    })
                    .collect(),
            })
        ),
        OffsetDelete
    );
    let mut out: Vec<(String, i32, i16)> = r
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (str_of(&t.name), p.partition_index, p.error_code))
        })
        .collect();
    out.sort();
    (r.error_code, out)
}

/// A one-member Stable group: joins (v5 round trip), syncs with `assign` as its own assignment.
/// Answers the member id and generation.
fn stable_single(c: &mut RawConn, group: &str, topics: &[&str], assign: Bytes) -> (String, i32) {
    let j = join_new(c, 5, &Join::new(group, topics));
    assert_eq!(j.error_code, NONE, "{j:?}");
    let id = str_of(&j.member_id);
    let sy = sync(
        c,
        3,
        group,
        j.generation_id,
        &id,
        None,
        &[(&id, assign.clone())],
    );
    assert_eq!(sy.error_code, NONE, "{sy:?}");
    assert_eq!(sy.assignment, assign);
    (id, j.generation_id)
}

fn group_state(c: &mut RawConn, group: &str) -> String {
    let d = describe(c, 5, &[group], false);
    str_of(&d.groups[0].group_state)
}

fn sorted_members(m: &[JoinGroupResponseMember]) -> Vec<(String, Option<String>, Bytes)> {
    let mut v: Vec<_> = m
        .iter()
        .map(|x| {
            (
                str_of(&x.member_id),
                opt_str(&x.group_instance_id),
                x.metadata.clone(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Sends a JoinGroup on a new connection in a thread (JoinGroup answers wait for the rebalance).
fn spawn_join(
    b: &Broker,
    v: i16,
    j: Join,
) -> std::thread::JoinHandle<(JoinGroupResponse, RawConn)> {
    let mut c = connect(b);
    std::thread::spawn(move || {
        let r = j.send(&mut c, v);
        (r, c)
    })
}

/// Polls Heartbeat until it answers something other than NONE (at most 10 s).
fn heartbeat_until_error(c: &mut RawConn, group: &str, generation: i32, member: &str) -> i16 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let e = heartbeat(c, 3, group, generation, member, None);
        if e != NONE || Instant::now() > deadline {
            return e;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_dynamic_id(id: &str) {
    // Kafka: `<client id>-<UUID>`.
    assert!(
        id.starts_with("sluice-tests-") && id.len() > "sluice-tests-".len(),
        "member id {id:?} is `<client id>-<uuid>`"
    );
}

fn no_protocol_name(v: i16) -> Option<StrBytes> {
    // Error answers: "" where the field is not nullable (v0-6), null in v7+.
    if v >= 7 { None } else { Some(s("")) }
}

// ---------------------------------------------------------------------------------------------
// FindCoordinator

/// Every version answers the broker itself for group keys (also ""), transaction keys, and
/// each key of a batched (v4+) request; the share key type is refused.
#[test]
fn find_coordinator_names_the_broker_itself() {
    let b = start();
    let mut c = connect(&b);
    let (node, host, port) = self_node(&mut c);
    let g = uniq("g");
    for v in 0..=6 {
        for key in [g.as_str(), ""] {
            let r = find_coordinator(&mut c, v, key, 0);
            assert_eq!(
                (r.error_code, r.node_id, str_of(&r.host), r.port),
                (NONE, node, host.clone(), port),
                "v{v} group key {key:?}: {r:?}"
            );
            let msg = if (1..=3).contains(&v) { "NONE" } else { "" };
            assert_eq!(opt_str(&r.error_message).as_deref(), Some(msg), "v{v}");
        }
    }
    // Transactions (Kafka answers COORDINATOR_NOT_AVAILABLE until its transaction topic exists).
    // A broker without transactions (sluice today: no AddPartitionsToTxn in ApiVersions)
    // answers TRANSACTIONAL_ID_AUTHORIZATION_FAILED, fatal in every client, as its
    // InitProducerId does.
    let txn_supported = {
        let r = expect!(
            call(
                &mut c,
                ApiKey::ApiVersions,
                3,
                Request::ApiVersions(Default::default())
            ),
            ApiVersions
        );
        r.api_keys
            .iter()
            .any(|k| k.api_key == ApiKey::AddPartitionsToTxn.key())
    };
    for v in 1..=6 {
        if !txn_supported {
            let r = find_coordinator(&mut c, v, &uniq("txn"), 1);
            assert_eq!(
                (r.error_code, r.node_id, r.port),
                (53, BrokerId(-1), -1),
                "v{v} transaction key without transactions: {r:?}"
            );
            continue;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let r = loop {
            let r = find_coordinator(&mut c, v, &uniq("txn"), 1);
            if r.error_code == COORDINATOR_NOT_AVAILABLE && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
            break r;
        };
        assert_eq!(
            (r.error_code, r.node_id, str_of(&r.host), r.port),
            (NONE, node, host.clone(), port),
            "v{v} transaction key: {r:?}"
        );
    }
    // Share groups are not enabled: INVALID_REQUEST.
    for v in 1..=6 {
        let r = find_coordinator(&mut c, v, &g, 2);
        assert_eq!(
            (r.error_code, r.node_id, str_of(&r.host), r.port),
            (INVALID_REQUEST, BrokerId(-1), String::new(), -1),
            "v{v} share key: {r:?}"
        );
    }
    // Batched: one answer per key, in request order.
    let (k1, k2) = (uniq("g"), uniq("g"));
    for v in 4..=6 {
        let r = expect!(
            call(
                &mut c,
                ApiKey::FindCoordinator,
                v,
                Request::FindCoordinator(FindCoordinatorRequest {
                    key_type: 0,
                    coordinator_keys: vec![s(&k1), s(""), s(&k2)],
                    ..Default::default()
                })
            ),
            FindCoordinator
        );
        let got: Vec<_> = r
            .coordinators
            .iter()
            .map(|k| {
                (
                    str_of(&k.key),
                    k.error_code,
                    k.node_id,
                    str_of(&k.host),
                    k.port,
                    opt_str(&k.error_message),
                )
            })
            .collect();
        let want: Vec<_> = [k1.as_str(), "", k2.as_str()]
            .iter()
            .map(|k| {
                (
                    k.to_string(),
                    NONE,
                    node,
                    host.clone(),
                    port,
                    Some(String::new()),
                )
            })
            .collect();
        assert_eq!(got, want, "v{v} batched");
        let r = expect!(
            call(
                &mut c,
                ApiKey::FindCoordinator,
                v,
                Request::FindCoordinator(FindCoordinatorRequest {
                    key_type: 0,
                    coordinator_keys: vec![],
                    ..Default::default()
                })
            ),
            FindCoordinator
        );
        assert!(r.coordinators.is_empty(), "v{v} no keys: {r:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// JoinGroup

/// v4+: MEMBER_ID_REQUIRED with a new id, then generation 1 with that member as leader;
/// v0-3: generation 1 at once. The response's protocol fields follow the version.
#[test]
fn join_new_member_per_version() {
    let b = start();
    let mut c = connect(&b);
    let topic = uniq("t");
    let sub = subscription(&[&topic]);
    for v in 0..=9i16 {
        let g = uniq("g");
        let j = Join::new(&g, &[&topic]);
        let mut r = j.send(&mut c, v);
        if v >= 4 {
            assert_eq!(r.error_code, MEMBER_ID_REQUIRED, "v{v}: {r:?}");
            assert_dynamic_id(&r.member_id);
            assert_eq!(r.generation_id, -1, "v{v}");
            assert_eq!(str_of(&r.leader), "", "v{v}");
            assert!(r.members.is_empty(), "v{v}");
            assert_eq!(r.protocol_type, None, "v{v}");
            assert_eq!(r.protocol_name, no_protocol_name(v), "v{v}");
            let id = str_of(&r.member_id);
            r = j.clone().member(&id).send(&mut c, v);
            assert_eq!(str_of(&r.member_id), id, "v{v}: the id given is kept");
        }
        assert_eq!(r.error_code, NONE, "v{v}: {r:?}");
        let id = str_of(&r.member_id);
        assert_dynamic_id(&id);
        assert_eq!(r.generation_id, 1, "v{v}");
        assert_eq!(str_of(&r.leader), id, "v{v}: the lone member leads");
        assert_eq!(
            sorted_members(&r.members),
            vec![(id.clone(), None, sub.clone())],
            "v{v}: the leader gets the member list"
        );
        assert_eq!(opt_str(&r.protocol_name).as_deref(), Some("range"), "v{v}");
        let ptype = if v >= 7 { Some("consumer") } else { None };
        assert_eq!(opt_str(&r.protocol_type).as_deref(), ptype, "v{v}");
        assert!(!r.skip_assignment, "v{v}");
        assert_eq!(group_state(&mut c, &g), "CompletingRebalance", "v{v}");
    }
}

/// JoinGroup's refusals, and that they leave an existing group alone.
#[test]
fn join_refusals() {
    let b = start();
    let mut c = connect(&b);
    let topic = uniq("t");
    let g = uniq("g");
    let refused = |r: &JoinGroupResponse, code: i16, member: &str, what: &str| {
        assert_eq!(r.error_code, code, "{what}: {r:?}");
        assert_eq!(str_of(&r.member_id), member, "{what}: member id echoed");
        assert_eq!(r.generation_id, -1, "{what}");
        assert_eq!(str_of(&r.leader), "", "{what}");
        assert!(r.members.is_empty(), "{what}");
    };
    for (ms, code) in [
        (5999, INVALID_SESSION_TIMEOUT),
        (1_800_001, INVALID_SESSION_TIMEOUT),
        (0, INVALID_SESSION_TIMEOUT),
        (6000, MEMBER_ID_REQUIRED),
        (1_800_000, MEMBER_ID_REQUIRED),
    ] {
        let mut j = Join::new(&g, &[&topic]);
        j.session_ms = ms;
        let r = j.send(&mut c, 5);
        assert_eq!(r.error_code, code, "session timeout {ms}: {r:?}");
        if code == INVALID_SESSION_TIMEOUT {
            refused(&r, code, "", "bad session timeout");
            assert_eq!(r.protocol_name, Some(s("")));
        }
    }
    // Empty group id, checked before the session timeout.
    let mut j = Join::new("", &[&topic]);
    refused(&j.send(&mut c, 5), INVALID_GROUP_ID, "", "group id ''");
    j.session_ms = 1;
    refused(
        &j.send(&mut c, 5),
        INVALID_GROUP_ID,
        "",
        "group id '' + bad timeout",
    );
    refused(&j.send(&mut c, 9), INVALID_GROUP_ID, "", "group id '' v9");
    // A member id the group does not know, on a group that does not exist.
    for v in [0, 3, 5, 9] {
        let r = Join::new(&uniq("g"), &[&topic])
            .member("nope")
            .send(&mut c, v);
        refused(
            &r,
            UNKNOWN_MEMBER_ID,
            "nope",
            &format!("unknown member, new group, v{v}"),
        );
        assert_eq!(r.protocol_name, no_protocol_name(v));
    }
    // No protocols / empty protocol type.
    let mut j = Join::new(&uniq("g"), &[&topic]);
    j.protocols.clear();
    refused(
        &j.send(&mut c, 5),
        INCONSISTENT_GROUP_PROTOCOL,
        "",
        "no protocols",
    );
    let mut j = Join::new(&uniq("g"), &[&topic]);
    j.protocol_type = String::new();
    refused(
        &j.send(&mut c, 5),
        INCONSISTENT_GROUP_PROTOCOL,
        "",
        "protocol type ''",
    );

    // Against a Stable "consumer"/"range" group.
    let (id, generation) = stable_single(&mut c, &g, &[&topic], assignment(&[(&topic, &[0])]));
    let mut other_type = Join::new(&g, &[&topic]);
    other_type.protocol_type = "other".into();
    refused(
        &other_type.send(&mut c, 5),
        INCONSISTENT_GROUP_PROTOCOL,
        "",
        "type mismatch, new",
    );
    refused(
        &other_type.clone().member(&id).send(&mut c, 5),
        INCONSISTENT_GROUP_PROTOCOL,
        &id,
        "type mismatch, known member",
    );
    let mut other_name = Join::new(&g, &[&topic]);
    other_name.protocols = vec![("roundrobin".into(), subscription(&[&topic]))];
    for v in [4, 5, 9] {
        // v4+ with an empty member id: the protocol check comes before MEMBER_ID_REQUIRED.
        refused(
            &other_name.send(&mut c, v),
            INCONSISTENT_GROUP_PROTOCOL,
            "",
            &format!("no common protocol v{v}"),
        );
    }
    assert_eq!(group_state(&mut c, &g), "Stable");
    assert_eq!(heartbeat(&mut c, 3, &g, generation, &id, None), NONE);
}

/// A second member: the first one's heartbeat says REBALANCE_IN_PROGRESS, both rejoin into
/// generation 2, the leader's assignment reaches each member, and what each request answers
/// in PreparingRebalance, CompletingRebalance and Stable on the way.
#[test]
fn second_member_rebalance() {
    let b = start();
    let mut c = connect(&b);
    let topic = uniq("t");
    create_topic(&mut c, &topic, 2);
    let g = uniq("g");
    let sub = subscription(&[&topic]);
    let (id1, gen1) = stable_single(&mut c, &g, &[&topic], assignment(&[(&topic, &[0, 1])]));
    assert_eq!(gen1, 1);

    // Member 2 asks for an id, then joins: its JoinGroup waits for member 1 to rejoin.
    let mut c2 = connect(&b);
    let first = Join::new(&g, &[&topic]).send(&mut c2, 5);
    assert_eq!(first.error_code, MEMBER_ID_REQUIRED);
    let id2 = str_of(&first.member_id);
    drop(c2);
    let join2 = spawn_join(&b, 5, Join::new(&g, &[&topic]).member(&id2));

    // PreparingRebalance.
    assert_eq!(
        heartbeat_until_error(&mut c, &g, gen1, &id1),
        REBALANCE_IN_PROGRESS
    );
    assert_eq!(group_state(&mut c, &g), "PreparingRebalance");
    let sy = sync(&mut c, 3, &g, gen1, &id1, None, &[]);
    assert_eq!(
        sy.error_code, REBALANCE_IN_PROGRESS,
        "sync while preparing: {sy:?}"
    );
    assert_eq!(
        commit(&mut c, 7, &g, gen1, &id1, &[(&topic, 0, 5, None)]),
        vec![(topic.clone(), 0, NONE)],
        "a commit of the current generation is accepted while preparing"
    );

    // Member 1 rejoins: both answers come, generation 2, member 1 still leads.
    let r1 = Join::new(&g, &[&topic]).member(&id1).send(&mut c, 5);
    let (r2, mut c2) = join2.join().expect("join thread");
    assert_eq!(
        (r1.error_code, r2.error_code),
        (NONE, NONE),
        "{r1:?} {r2:?}"
    );
    assert_eq!((r1.generation_id, r2.generation_id), (2, 2));
    assert_eq!(str_of(&r1.member_id), id1);
    assert_eq!(str_of(&r2.member_id), id2);
    assert_eq!(str_of(&r1.leader), id1);
    assert_eq!(str_of(&r2.leader), id1);
    let mut want = vec![
        (id1.clone(), None, sub.clone()),
        (id2.clone(), None, sub.clone()),
    ];
    want.sort();
    assert_eq!(
        sorted_members(&r1.members),
        want,
        "the leader gets every member"
    );
    assert!(r2.members.is_empty(), "a follower gets no member list");
    assert_eq!(opt_str(&r2.protocol_name).as_deref(), Some("range"));

    // CompletingRebalance.
    assert_eq!(group_state(&mut c, &g), "CompletingRebalance");
    assert_eq!(heartbeat(&mut c, 3, &g, 2, &id1, None), NONE);
    assert_eq!(heartbeat(&mut c, 3, &g, 1, &id1, None), ILLEGAL_GENERATION);
    assert_eq!(
        commit(&mut c, 7, &g, 2, &id1, &[(&topic, 0, 6, None)]),
        vec![(topic.clone(), 0, REBALANCE_IN_PROGRESS)]
    );
    assert_eq!(
        commit(&mut c, 7, &g, 1, &id1, &[(&topic, 0, 6, None)]),
        vec![(topic.clone(), 0, ILLEGAL_GENERATION)]
    );

    // The follower syncs first and waits; the leader's assignment reaches both.
    let (a1, a2) = (assignment(&[(&topic, &[0])]), assignment(&[(&topic, &[1])]));
    let (g_, id2_) = (g.clone(), id2.clone());
    let follower = std::thread::spawn(move || sync(&mut c2, 3, &g_, 2, &id2_, None, &[]));
    std::thread::sleep(Duration::from_millis(200));
    let s1 = sync(
        &mut c,
        3,
        &g,
        2,
        &id1,
        None,
        &[(&id1, a1.clone()), (&id2, a2.clone())],
    );
    let s2 = follower.join().expect("sync thread");
    assert_eq!((s1.error_code, s1.assignment.clone()), (NONE, a1.clone()));
    assert_eq!((s2.error_code, s2.assignment.clone()), (NONE, a2.clone()));

    // Stable: DescribeGroups shows both with their metadata and assignment.
    let d = describe(&mut c, 5, &[&g], false);
    let dg = &d.groups[0];
    assert_eq!(dg.error_code, NONE);
    assert_eq!(str_of(&dg.group_state), "Stable");
    assert_eq!(str_of(&dg.protocol_type), "consumer");
    assert_eq!(str_of(&dg.protocol_data), "range");
    let mut members: Vec<_> = dg
        .members
        .iter()
        .map(|m| {
            (
                str_of(&m.member_id),
                opt_str(&m.group_instance_id),
                str_of(&m.client_id),
                str_of(&m.client_host),
                m.member_metadata.clone(),
                m.member_assignment.clone(),
            )
        })
        .collect();
    members.sort();
    let host = "/127.0.0.1".to_owned();
    let mut want = vec![
        (
            id1.clone(),
            None,
            "sluice-tests".to_owned(),
            host.clone(),
            sub.clone(),
            a1,
        ),
        (
            id2.clone(),
            None,
            "sluice-tests".to_owned(),
            host,
            sub.clone(),
            a2,
        ),
    ];
    want.sort();
    assert_eq!(members, want);

    // A group with members: its offsets and itself cannot be deleted.
    assert_eq!(
        offset_delete(&mut c, &g, &[(&topic, &[0, 1])]),
        (
            NONE,
            vec![
                (topic.clone(), 0, GROUP_SUBSCRIBED_TO_TOPIC),
                (topic.clone(), 1, GROUP_SUBSCRIBED_TO_TOPIC)
            ]
        )
    );
    assert_eq!(
        delete_groups(&mut c, 2, &[&g]),
        vec![(g.clone(), NON_EMPTY_GROUP)]
    );

    // Member 2 leaves: member 1 is told to rejoin, alone into generation 3.
    let l = leave_batch(&mut c, 3, &g, &[(&id2, None)]);
    assert_eq!(l.error_code, NONE);
    assert_eq!(l.members[0].error_code, NONE);
    assert_eq!(
        heartbeat(&mut c, 3, &g, 2, &id1, None),
        REBALANCE_IN_PROGRESS
    );
    let r = Join::new(&g, &[&topic]).member(&id1).send(&mut c, 5);
    assert_eq!((r.error_code, r.generation_id), (NONE, 3), "{r:?}");
    assert_eq!(sorted_members(&r.members), vec![(id1.clone(), None, sub)]);
}

/// SyncGroup's refusals.
#[test]
fn sync_refusals() {
    let b = start();
    let mut c = connect(&b);
    let topic = uniq("t");
    create_topic(&mut c, &topic, 1);
    let g = uniq("g");
    let a = assignment(&[(&topic, &[0])]);
    let (id, generation) = stable_single(&mut c, &g, &[&topic], a.clone());
    for v in 0..=5 {
        let r = sync(&mut c, v, &g, generation + 1, &id, None, &[]);
        assert_eq!(r.error_code, ILLEGAL_GENERATION, "v{v} generation+1: {r:?}");
        assert!(r.assignment.is_empty());
        assert_eq!(
            (r.protocol_type.clone(), r.protocol_name.clone()),
            (None, None)
        );
        let r = sync(&mut c, v, &g, generation, "nobody", None, &[]);
        assert_eq!(
            r.error_code, UNKNOWN_MEMBER_ID,
            "v{v} unknown member: {r:?}"
        );
        let r = sync(&mut c, v, &uniq("nog"), 1, &id, None, &[]);
        assert_eq!(r.error_code, UNKNOWN_MEMBER_ID, "v{v} unknown group: {r:?}");
        // The leader syncing again in Stable gets its assignment again.
        let r = sync(&mut c, v, &g, generation, &id, None, &[]);
        assert_eq!(
            (r.error_code, r.assignment.clone()),
            (NONE, a.clone()),
            "v{v} again"
        );
        let want = if v >= 5 {
            (Some(s("consumer")), Some(s("range")))
        } else {
            (None, None)
        };
        assert_eq!((r.protocol_type, r.protocol_name), want, "v{v}");
    }
    // v5: type and name must both be given and match.
    for (ty, name) in [
        (Some("other"), Some("range")),
        (Some("consumer"), Some("roundrobin")),
        (None, Some("range")),
        (Some("consumer"), None),
        (None, None),
    ] {
        let r = sync_typed(&mut c, 5, &g, generation, &id, None, ty, name, &[]);
        assert_eq!(
            r.error_code, INCONSISTENT_GROUP_PROTOCOL,
            "v5 {ty:?}/{name:?}: {r:?}"
        );
        assert!(r.assignment.is_empty());
    }
    // A group holding only offsets has no members.
    let ge = uniq("ge");
    assert_eq!(
        commit(&mut c, 8, &ge, -1, "", &[(&topic, 0, 1, None)]),
        vec![(topic.clone(), 0, NONE)]
    );
    let r = sync(&mut c, 3, &ge, 1, "x", None, &[]);
    assert_eq!(r.error_code, UNKNOWN_MEMBER_ID, "offsets-only group: {r:?}");
}

/// Heartbeat's answers in every version.
#[test]
fn heartbeat_refusals() {
    let b = start();
    let mut c = connect(&b);
    let topic = uniq("t");
    create_topic(&mut c, &topic, 1);
    let g = uniq("g");
    let (id, generation) = stable_single(&mut c, &g, &[&topic], assignment(&[(&topic, &[0])]));
    let ge = uniq("ge");
    commit(&mut c, 8, &ge, -1, "", &[(&topic, 0, 1, None)]);
    for v in 0..=4 {
        let hb = |c: &mut RawConn, group: &str, generation: i32, member: &str| {
            heartbeat(c, v, group, generation, member, None)
        };
        assert_eq!(hb(&mut c, &g, generation, &id), NONE, "v{v}");
        assert_eq!(
            hb(&mut c, &uniq("nog"), generation, &id),
            UNKNOWN_MEMBER_ID,
            "v{v}"
        );
        assert_eq!(
            hb(&mut c, &ge, 1, "x"),
            UNKNOWN_MEMBER_ID,
            "v{v} offsets-only"
        );
        assert_eq!(
            hb(&mut c, &g, generation, "nobody"),
            UNKNOWN_MEMBER_ID,
            "v{v}"
        );
        assert_eq!(
            hb(&mut c, &g, generation - 1, &id),
            ILLEGAL_GENERATION,
            "v{v}"
        );
        assert_eq!(
            hb(&mut c, &g, generation + 1, &id),
            ILLEGAL_GENERATION,
            "v{v}"
        );
        assert_eq!(hb(&mut c, &g, -1, &id), ILLEGAL_GENERATION, "v{v}");
        assert_eq!(hb(&mut c, "", generation, &id), INVALID_GROUP_ID, "v{v}");
    }
    // After the member left and the group was deleted.
    assert_eq!(leave_one(&mut c, 1, &g, &id).error_code, NONE);
    assert_eq!(delete_groups(&mut c, 1, &[&g]), vec![(g.clone(), NONE)]);
    for v in 0..=4 {
        assert_eq!(
            heartbeat(&mut c, v, &g, generation, &id, None),
            UNKNOWN_MEMBER_ID,
            "v{v} deleted group"
        );
    }
}

/// A static member that rejoins with an empty member id while the group is Stable replaces
/// its old id without a rebalance; the old id is fenced.
#[test]
fn static_member_replaced_while_stable() {
    let b = start();
    let mut c = connect(&b);
    let topic = uniq("t");
    create_topic(&mut c, &topic, 1);
    let sub = subscription(&[&topic]);
    let a = assignment(&[(&topic, &[0])]);
    for v in [5i16, 9] {
        let g = uniq("g");
        let j = Join::new(&g, &[&topic]).instance("i1");
        // No MEMBER_ID_REQUIRED round trip for a static member.
        let r = j.send(&mut c, v);
        assert_eq!((r.error_code, r.generation_id), (NONE, 1), "v{v}: {r:?}");
        let old = str_of(&r.member_id);
        assert!(
            old.starts_with("i1-") && old.len() > 3,
            "static id {old:?} is `<instance>-<uuid>`"
        );
        assert_eq!(str_of(&r.leader), old);
        assert_eq!(
            sorted_members(&r.members),
            vec![(old.clone(), Some("i1".to_owned()), sub.clone())]
        );
        let sy = sync(&mut c, 3, &g, 1, &old, Some("i1"), &[(&old, a.clone())]);
        assert_eq!(sy.error_code, NONE);
        // The right member id with another instance id is unknown.
        assert_eq!(
            heartbeat(&mut c, 3, &g, 1, &old, Some("i2")),
            UNKNOWN_MEMBER_ID
        );

        // Rejoin with an empty member id: a new id, same generation, still Stable.
        let r = j.send(&mut c, v);
        assert_eq!(
            (r.error_code, r.generation_id),
            (NONE, 1),
            "v{v} rejoin: {r:?}"
        );
        let new = str_of(&r.member_id);
        assert!(new.starts_with("i1-") && new != old, "v{v}: new id {new:?}");
        assert_eq!(group_state(&mut c, &g), "Stable", "v{v}: no rebalance");
        if v >= 9 {
            // KIP-814: the leader is told to skip the assignment.
            assert_eq!(str_of(&r.leader), new, "v{v}");
            assert!(r.skip_assignment, "v{v}");
            assert_eq!(
                sorted_members(&r.members),
                vec![(new.clone(), Some("i1".to_owned()), sub.clone())],
                "v{v}"
            );
        } else {
            // Older clients are told the old id leads, so they act as a follower.
            assert_eq!(str_of(&r.leader), old, "v{v}");
            assert!(r.members.is_empty(), "v{v}");
        }
        let sy = sync(&mut c, 3, &g, 1, &new, Some("i1"), &[]);
        assert_eq!(
            (sy.error_code, sy.assignment),
            (NONE, a.clone()),
            "v{v}: kept assignment"
        );
        assert_eq!(heartbeat(&mut c, 3, &g, 1, &new, Some("i1")), NONE);

        // The old id.
        assert_eq!(
            heartbeat(&mut c, 3, &g, 1, &old, Some("i1")),
            FENCED_INSTANCE_ID
        );
        assert_eq!(heartbeat(&mut c, 3, &g, 1, &old, None), UNKNOWN_MEMBER_ID);
        assert_eq!(
            sync(&mut c, 3, &g, 1, &old, Some("i1"), &[]).error_code,
            FENCED_INSTANCE_ID
        );
        let r = Join::new(&g, &[&topic])
            .instance("i1")
            .member(&old)
            .send(&mut c, v);
        assert_eq!(r.error_code, FENCED_INSTANCE_ID, "{r:?}");
        assert_eq!(str_of(&r.member_id), old);
        assert_eq!(
            commit(&mut c, 7, &g, 1, &old, &[(&topic, 0, 1, None)]),
            vec![(topic.clone(), 0, UNKNOWN_MEMBER_ID)]
        );
        let l = leave_batch(&mut c, 3, &g, &[(&old, Some("i1"))]);
        assert_eq!(l.error_code, NONE);
        assert_eq!(
            (
                str_of(&l.members[0].member_id),
                opt_str(&l.members[0].group_instance_id),
                l.members[0].error_code
            ),
            (old.clone(), Some("i1".to_owned()), FENCED_INSTANCE_ID)
        );
        assert_eq!(group_state(&mut c, &g), "Stable");

        // Leaving by instance id alone.
        let l = leave_batch(&mut c, 3, &g, &[("", Some("i1")), ("", Some("i9"))]);
        assert_eq!(l.error_code, NONE);
        let got: Vec<_> = l
            .members
            .iter()
            .map(|m| {
                (
                    str_of(&m.member_id),
                    opt_str(&m.group_instance_id),
                    m.error_code,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (String::new(), Some("i1".to_owned()), NONE),
                (String::new(), Some("i9".to_owned()), UNKNOWN_MEMBER_ID)
            ]
        );
        assert_eq!(group_state(&mut c, &g), "Empty");
    }
    // A known static member that rejoins with other metadata starts a rebalance.
    let g = uniq("g");
    let j = Join::new(&g, &[&topic]).instance("i1");
    let r = j.send(&mut c, 9);
    let id = str_of(&r.member_id);
    sync(&mut c, 5, &g, 1, &id, Some("i1"), &[(&id, a.clone())]);
    let mut changed = j.clone().member(&id);
    changed.protocols = vec![("range".into(), subscription(&[&topic, "other"]))];
    let r = changed.send(&mut c, 9);
    assert_eq!(
        (r.error_code, r.generation_id, r.skip_assignment),
        (NONE, 2, false),
        "{r:?}"
    );
    assert_eq!(group_state(&mut c, &g), "CompletingRebalance");
}

/// Generations: a lone dynamic member rejoining its Stable group starts a new generation at
/// once; the last member leaving bumps it again; the next member gets the one after.
#[test]
fn generations_advance_on_rejoin_and_leave() {
    let b = start();
    let mut c = connect(&b);
    let topic = uniq("t");
    let g = uniq("g");
    let (id, generation) = stable_single(&mut c, &g, &[&topic], Bytes::new());
    assert_eq!(generation, 1);
    let r = Join::new(&g, &[&topic]).member(&id).send(&mut c, 5);
    assert_eq!(
        (r.error_code, r.generation_id, str_of(&r.leader)),
        (NONE, 2, id.clone())
    );
    assert_eq!(
        sync(&mut c, 3, &g, 2, &id, None, &[(&id, Bytes::new())]).error_code,
        NONE
    );
    assert_eq!(leave_one(&mut c, 2, &g, &id).error_code, NONE);
    assert_eq!(group_state(&mut c, &g), "Empty");
    let r = join_new(&mut c, 5, &Join::new(&g, &[&topic]));
    assert_eq!((r.error_code, r.generation_id), (NONE, 4), "{r:?}");
}

// ---------------------------------------------------------------------------------------------
// LeaveGroup

#[test]
fn leave_group_versions() {
    let b = start();
    let mut c = connect(&b);
    let topic = uniq("t");
    // v0-2: one member, top-level error.
    for v in 0..=2 {
        let g = uniq("g");
        let (id, _) = stable_single(&mut c, &g, &[&topic], Bytes::new());
        let l = leave_one(&mut c, v, &g, "nobody");
        assert_eq!(
            (l.error_code, l.members.len()),
            (UNKNOWN_MEMBER_ID, 0),
            "v{v}"
        );
        let l = leave_one(&mut c, v, &g, &id);
        assert_eq!((l.error_code, l.members.len()), (NONE, 0), "v{v}");
        assert_eq!(group_state(&mut c, &g), "Empty", "v{v}");
        assert_eq!(
            leave_one(&mut c, v, &g, &id).error_code,
            UNKNOWN_MEMBER_ID,
            "v{v} again"
        );
        assert_eq!(
            leave_one(&mut c, v, &uniq("nog"), "x").error_code,
            UNKNOWN_MEMBER_ID,
            "v{v} unknown group"
        );
        assert_eq!(
            leave_one(&mut c, v, "", "x").error_code,
            INVALID_GROUP_ID,
            "v{v}"
        );
    }
    // v3+: per member, in request order.
    for v in 3..=5 {
        let g = uniq("g");
        let (id, _) = stable_single(&mut c, &g, &[&topic], Bytes::new());
        let l = leave_batch(&mut c, v, &g, &[]);
        assert_eq!(
            (l.error_code, l.members.len()),
            (NONE, 0),
            "v{v} empty list"
        );
        let l = leave_batch(&mut c, v, &g, &[(&id, Some("zz"))]);
        assert_eq!(l.error_code, NONE);
        assert_eq!(
            l.members[0].error_code, UNKNOWN_MEMBER_ID,
            "v{v} wrong instance"
        );
        let l = leave_batch(&mut c, v, &g, &[("nobody", None), (&id, None)]);
        assert_eq!(l.error_code, NONE, "v{v}");
        let got: Vec<_> = l
            .members
            .iter()
            .map(|m| {
                (
                    str_of(&m.member_id),
                    opt_str(&m.group_instance_id),
                    m.error_code,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("nobody".to_owned(), None, UNKNOWN_MEMBER_ID),
                (id.clone(), None, NONE)
            ],
            "v{v}"
        );
        assert_eq!(group_state(&mut c, &g), "Empty", "v{v}");
        let l = leave_batch(&mut c, v, &uniq("nog"), &[("x", None)]);
        assert_eq!(l.error_code, NONE, "v{v} unknown group");
        assert_eq!(
            l.members[0].error_code, UNKNOWN_MEMBER_ID,
            "v{v} unknown group"
        );
        let l = leave_batch(&mut c, v, "", &[("x", None)]);
        assert_eq!(
            (l.error_code, l.members.len()),
            (INVALID_GROUP_ID, 0),
            "v{v} group ''"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Offsets

#[test]
fn offset_commit_rules() {
    let b = start();
    let mut c = connect(&b);
    let topic = uniq("t");
    create_topic(&mut c, &topic, 2);
    let t = topic.as_str();
    let missing = uniq("missing");
    // Simple commits (generation -1, member "") create the group, Empty.
    for v in 2..=9 {
        let ge = uniq("ge");
        assert_eq!(
            commit(
                &mut c,
                v,
                &ge,
                -1,
                "",
                &[(t, 0, 1, None), (t, 7, 1, None), (&missing, 0, 1, None)]
            ),
            vec![
                (missing.clone(), 0, UNKNOWN_TOPIC_OR_PARTITION),
                (topic.clone(), 0, NONE),
                (topic.clone(), 7, UNKNOWN_TOPIC_OR_PARTITION)
            ],
            "v{v}"
        );
        let d = describe(&mut c, 5, &[&ge], false);
        assert_eq!(
            (
                str_of(&d.groups[0].group_state),
                str_of(&d.groups[0].protocol_type)
            ),
            ("Empty".to_owned(), String::new()),
            "v{v}"
        );
        // Generation -1 with a member id is a simple commit too.
        assert_eq!(
            commit(&mut c, v, &uniq("ge"), -1, "m", &[(t, 0, 1, None)]),
            vec![(topic.clone(), 0, NONE)]
        );
        // A generation on a group that does not exist: v9 says so.
        let want = if v >= 9 {
            GROUP_ID_NOT_FOUND
        } else {
            ILLEGAL_GENERATION
        };
        assert_eq!(
            commit(&mut c, v, &uniq("nog"), 1, "m", &[(t, 0, 1, None)]),
            vec![(topic.clone(), 0, want)],
            "v{v}"
        );
        assert_eq!(
            commit(&mut c, v, &uniq("nog"), 3, "", &[(t, 0, 1, None)]),
            vec![(topic.clone(), 0, want)],
            "v{v}"
        );
        // An existing Empty group has no members.
        assert_eq!(
            commit(&mut c, v, &ge, 1, "m", &[(t, 0, 1, None)]),
            vec![(topic.clone(), 0, UNKNOWN_MEMBER_ID)],
            "v{v}"
        );
    }
    // Metadata size limit: 4096 bytes.
    let ge = uniq("ge");
    let (big, max) = ("x".repeat(4097), "x".repeat(4096));
    assert_eq!(
        commit(
            &mut c,
            8,
            &ge,
            -1,
            "",
            &[(t, 0, 1, Some(&big)), (t, 1, 2, Some(&max))]
        ),
        vec![
            (topic.clone(), 0, OFFSET_METADATA_TOO_LARGE),
            (topic.clone(), 1, NONE)
        ]
    );
    // Null metadata reads back as ""; negative offsets are kept.
    assert_eq!(
        commit(&mut c, 8, &ge, -1, "", &[(t, 0, -5, None)]),
        vec![(topic.clone(), 0, NONE)]
    );
    assert_eq!(
        fetch_offsets(&mut c, 7, &ge, Some(&[(t, &[0, 1])]), false),
        (
            NONE,
            vec![
                (topic.clone(), 0, -5, -1, Some(String::new()), NONE),
                (topic.clone(), 1, 2, -1, Some(max), NONE)
            ]
        )
    );
    // The group named "".
    assert_eq!(
        commit(&mut c, 8, "", -1, "", &[(t, 0, 11, None)]),
        vec![(topic.clone(), 0, NONE)]
    );
    assert_eq!(
        fetch_offsets(&mut c, 7, "", Some(&[(t, &[0])]), false),
        (
            NONE,
            vec![(topic.clone(), 0, 11, -1, Some(String::new()), NONE)]
        )
    );
    // A Stable group.
    let g = uniq("g");
    let (id, generation) = stable_single(&mut c, &g, &[t], assignment(&[(t, &[0, 1])]));
    for v in [2i16, 5, 8, 9] {
        let one = |c: &mut RawConn, generation: i32, member: &str| {
            commit(c, v, &g, generation, member, &[(t, 0, 3, Some("m"))])[0].2
        };
        assert_eq!(one(&mut c, generation, &id), NONE, "v{v}");
        assert_eq!(one(&mut c, generation - 1, &id), ILLEGAL_GENERATION, "v{v}");
        assert_eq!(one(&mut c, generation + 1, &id), ILLEGAL_GENERATION, "v{v}");
        assert_eq!(one(&mut c, generation, "nobody"), UNKNOWN_MEMBER_ID, "v{v}");
        assert_eq!(
            one(&mut c, -1, ""),
            UNKNOWN_MEMBER_ID,
            "v{v} simple commit into a group with members"
        );
        assert_eq!(one(&mut c, -1, &id), ILLEGAL_GENERATION, "v{v}");
    }
    assert_eq!(
        fetch_offsets(&mut c, 7, &g, None, false),
        (
            NONE,
            vec![(topic.clone(), 0, 3, -1, Some("m".to_owned()), NONE)]
        )
    );
}

#[test]
fn offset_fetch_rules() {
    let b = start();
    let mut c = connect(&b);
    let topic = uniq("t");
    create_topic(&mut c, &topic, 2);
    let t = topic.as_str();
    let missing = uniq("missing");
    let ge = uniq("ge");
    assert_eq!(
        commit(&mut c, 8, &ge, -1, "", &[(t, 0, 42, Some("meta"))]),
        vec![(topic.clone(), 0, NONE)]
    );
    let none = |topic: &str, p: i32| (topic.to_owned(), p, -1i64, -1, Some(String::new()), NONE);
    let committed = (topic.clone(), 0, 42i64, -1, Some("meta".to_owned()), NONE);
    for v in 1..=7 {
        for stable in [false, true] {
            if stable && v < 7 {
                continue;
            }
            let mut want = vec![committed.clone(), none(t, 1), none(t, 5), none(&missing, 0)];
            want.sort();
            assert_eq!(
                fetch_offsets(
                    &mut c,
                    v,
                    &ge,
                    Some(&[(t, &[0, 1, 5]), (&missing, &[0])]),
                    stable
                ),
                (NONE, want),
                "v{v} explicit"
            );
            if v >= 2 {
                // Null topics (all) exist from v2.
                assert_eq!(
                    fetch_offsets(&mut c, v, &ge, None, stable),
                    (NONE, vec![committed.clone()]),
                    "v{v} all"
                );
                assert_eq!(
                    fetch_offsets(&mut c, v, &uniq("nog"), None, stable),
                    (NONE, vec![]),
                    "v{v} unknown group, all"
                );
            }
            assert_eq!(
                fetch_offsets(&mut c, v, &uniq("nog"), Some(&[(t, &[0])]), stable),
                (NONE, vec![none(t, 0)]),
                "v{v} unknown group"
            );
        }
    }
    // v8+: several groups in one request (the same group twice, too).
    let nog = uniq("nog");
    for v in 8..=9 {
        let got = fetch_offsets_groups(
            &mut c,
            v,
            &[(&ge, None), (&nog, None), (&ge, Some(&[(t, &[0, 1])]))],
            v == 9,
        );
        let mut want = vec![
            (ge.clone(), NONE, vec![committed.clone()]),
            (nog.clone(), NONE, vec![]),
            (ge.clone(), NONE, vec![committed.clone(), none(t, 1)]),
        ];
        want.sort();
        assert_eq!(got.tap_sort(), want, "v{v}");
    }
}

// ---------------------------------------------------------------------------------------------
// ListGroups, DescribeGroups, DeleteGroups, OffsetDelete

#[test]
fn list_and_describe_groups() {
    let b = start();
    let mut c = connect(&b);
    let topic = uniq("t");
    create_topic(&mut c, &topic, 1);
    let t = topic.as_str();
    let ge = uniq("ge"); // offsets only
    commit(&mut c, 8, &ge, -1, "", &[(t, 0, 1, None)]);
    let gs = uniq("gs"); // Stable
    let a = assignment(&[(t, &[0])]);
    let (id, _) = stable_single(&mut c, &gs, &[t], a.clone());
    let gl = uniq("gl"); // had a member, left: Empty, keeps its protocol type
    let (lid, _) = stable_single(&mut c, &gl, &[t], Bytes::new());
    leave_one(&mut c, 1, &gl, &lid);
    let mine = [ge.as_str(), gs.as_str(), gl.as_str()];
    let listed = |c: &mut RawConn, v: i16, states: &[&str], types: &[&str]| {
        let r = list_groups(c, v, states, types);
        assert_eq!(r.error_code, NONE, "v{v}");
        let mut got: Vec<_> = r
            .groups
            .iter()
            .filter(|x| mine.contains(&&*x.group_id))
            .map(|x| {
                (
                    str_of(&x.group_id),
                    str_of(&x.protocol_type),
                    str_of(&x.group_state),
                    str_of(&x.group_type),
                )
            })
            .collect();
        got.sort();
        got
    };
    let row = |g: &str, ty: &str, st: &str, gt: &str| {
        (g.to_owned(), ty.to_owned(), st.to_owned(), gt.to_owned())
    };
    for v in 0..=5 {
        // group_state exists from v4, group_type from v5.
        let st = |x: &'static str| if v >= 4 { x } else { "" };
        let gt = |x: &'static str| if v >= 5 { x } else { "" };
        let mut want = vec![
            row(&ge, "", st("Empty"), gt("classic")),
            row(&gs, "consumer", st("Stable"), gt("classic")),
            row(&gl, "consumer", st("Empty"), gt("classic")),
        ];
        want.sort();
        assert_eq!(listed(&mut c, v, &[], &[]), want, "v{v}");
    }
    assert_eq!(
        listed(&mut c, 4, &["Stable"], &[]),
        vec![row(&gs, "consumer", "Stable", "")]
    );
    let mut want = vec![
        row(&ge, "", "Empty", ""),
        row(&gs, "consumer", "Stable", ""),
        row(&gl, "consumer", "Empty", ""),
    ];
    want.sort();
    assert_eq!(
        listed(&mut c, 4, &["stable", "EMPTY"], &[]),
        want,
        "states are case-insensitive"
    );
    assert_eq!(listed(&mut c, 4, &["Bogus"], &[]), vec![]);
    assert_eq!(
        listed(&mut c, 5, &[], &["Classic"]).len(),
        3,
        "types are case-insensitive"
    );
    for ty in ["consumer", "share", "bogus"] {
        assert_eq!(listed(&mut c, 5, &[], &[ty]), vec![], "type {ty}");
    }
    assert_eq!(
        listed(&mut c, 5, &["Stable"], &["classic"]),
        vec![row(&gs, "consumer", "Stable", "classic")]
    );

    // DescribeGroups: unknown, Empty, Stable; authorized operations.
    let nog = uniq("nog");
    const NOT_ASKED: i32 = i32::MIN;
    const GROUP_OPS: i32 = 3400; // READ, DELETE, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS
    for v in 0..=6 {
        for ops in [false, true] {
            if ops && v < 3 {
                continue;
            }
            let d = describe(&mut c, v, &[&nog, &ge, &gs], ops);
            let asked = if ops { GROUP_OPS } else { NOT_ASKED };
            // Answers come grouped by offsets partition, not in request order.
            assert_eq!(d.groups.len(), 3, "v{v}");
            let find = |id: &str| {
                d.groups
                    .iter()
                    .find(|x| &*x.group_id == id)
                    .unwrap_or_else(|| panic!("v{v}: no answer for {id}"))
            };
            let u = find(&nog);
            assert_eq!(str_of(&u.group_id), nog, "v{v}");
            assert_eq!(str_of(&u.group_state), "Dead", "v{v}");
            assert_eq!(
                (str_of(&u.protocol_type), str_of(&u.protocol_data)),
                (String::new(), String::new())
            );
            assert!(u.members.is_empty());
            if v >= 6 {
                assert_eq!(u.error_code, GROUP_ID_NOT_FOUND, "v{v}: {u:?}");
                assert_eq!(
                    opt_str(&u.error_message),
                    Some(format!("Group {nog} not found."))
                );
                assert_eq!(u.authorized_operations, NOT_ASKED, "v{v}");
            } else {
                assert_eq!(u.error_code, NONE, "v{v}: {u:?}");
                if v >= 3 {
                    assert_eq!(u.authorized_operations, asked, "v{v}");
                }
            }
            let e = find(&ge);
            assert_eq!(
                (
                    e.error_code,
                    str_of(&e.group_id),
                    str_of(&e.group_state),
                    str_of(&e.protocol_type),
                    str_of(&e.protocol_data),
                    e.members.len()
                ),
                (
                    NONE,
                    ge.clone(),
                    "Empty".to_owned(),
                    String::new(),
                    String::new(),
                    0
                ),
                "v{v}"
            );
            let st = find(&gs);
            assert_eq!(
                (
                    st.error_code,
                    str_of(&st.group_state),
                    str_of(&st.protocol_type),
                    str_of(&st.protocol_data)
                ),
                (
                    NONE,
                    "Stable".to_owned(),
                    "consumer".to_owned(),
                    "range".to_owned()
                ),
                "v{v}"
            );
            let m = &st.members[0];
            assert_eq!(
                (
                    str_of(&m.member_id),
                    opt_str(&m.group_instance_id),
                    str_of(&m.client_id),
                    str_of(&m.client_host),
                    m.member_metadata.clone(),
                    m.member_assignment.clone()
                ),
                (
                    id.clone(),
                    None,
                    "sluice-tests".to_owned(),
                    "/127.0.0.1".to_owned(),
                    subscription(&[t]),
                    a.clone()
                ),
                "v{v}"
            );
            if v >= 3 {
                assert_eq!(
                    (e.authorized_operations, st.authorized_operations),
                    (asked, asked),
                    "v{v}"
                );
            }
            if v >= 6 {
                assert_eq!(
                    (opt_str(&e.error_message), opt_str(&st.error_message)),
                    (None, None)
                );
            }
        }
    }
}

#[test]
fn delete_groups_and_offsets() {
    let b = start();
    let mut c = connect(&b);
    let topic = uniq("t");
    create_topic(&mut c, &topic, 2);
    let t = topic.as_str();
    let missing = uniq("missing");
    let ge = uniq("ge");
    commit(&mut c, 8, &ge, -1, "", &[(t, 0, 1, None)]);
    let gs = uniq("gs");
    let (id, generation) = stable_single(&mut c, &gs, &[t], assignment(&[(t, &[0, 1])]));
    let nog = uniq("nog");
    for v in 0..=3 {
        // Nothing is deleted in the first round but the unknown group's answer.
        let mut want = vec![
            (nog.clone(), GROUP_ID_NOT_FOUND),
            (gs.clone(), NON_EMPTY_GROUP),
        ];
        want.sort();
        assert_eq!(delete_groups(&mut c, v, &[&nog, &gs]), want, "v{v}");
    }
    let mut want = vec![(ge.clone(), NONE), (nog.clone(), GROUP_ID_NOT_FOUND)];
    want.sort();
    assert_eq!(delete_groups(&mut c, 2, &[&ge, &nog]), want);
    assert_eq!(
        fetch_offsets(&mut c, 7, &ge, None, false),
        (NONE, vec![]),
        "offsets gone"
    );
    assert_eq!(group_state(&mut c, &ge), "Dead");
    assert_eq!(
        delete_groups(&mut c, 2, &[&ge]),
        vec![(ge.clone(), GROUP_ID_NOT_FOUND)],
        "deleted twice"
    );
    // The group can be used again.
    assert_eq!(
        commit(&mut c, 8, &ge, -1, "", &[(t, 1, 9, None)]),
        vec![(topic.clone(), 1, NONE)]
    );
    assert_eq!(
        fetch_offsets(&mut c, 7, &ge, None, false),
        (
            NONE,
            vec![(topic.clone(), 1, 9, -1, Some(String::new()), NONE)]
        )
    );

    // OffsetDelete.
    assert_eq!(
        offset_delete(&mut c, &nog, &[(t, &[0])]),
        (GROUP_ID_NOT_FOUND, vec![])
    );
    assert_eq!(
        offset_delete(&mut c, "", &[(t, &[0])]),
        (INVALID_GROUP_ID, vec![])
    );
    commit(&mut c, 8, &ge, -1, "", &[(t, 0, 8, None)]);
    assert_eq!(
        offset_delete(&mut c, &ge, &[(t, &[0, 7]), (&missing, &[0])]),
        (
            NONE,
            vec![
                (missing.clone(), 0, UNKNOWN_TOPIC_OR_PARTITION),
                (topic.clone(), 0, NONE),
                (topic.clone(), 7, UNKNOWN_TOPIC_OR_PARTITION)
            ]
        )
    );
    assert_eq!(
        fetch_offsets(&mut c, 7, &ge, None, false),
        (
            NONE,
            vec![(topic.clone(), 1, 9, -1, Some(String::new()), NONE)]
        )
    );
    commit(&mut c, 8, &gs, generation, &id, &[(t, 0, 5, None)]);
    assert_eq!(
        offset_delete(&mut c, &gs, &[(t, &[0])]),
        (NONE, vec![(topic.clone(), 0, GROUP_SUBSCRIBED_TO_TOPIC)])
    );
    // Once the member left, the group is Empty and both can go.
    assert_eq!(leave_one(&mut c, 1, &gs, &id).error_code, NONE);
    assert_eq!(
        offset_delete(&mut c, &gs, &[(t, &[0])]),
        (NONE, vec![(topic.clone(), 0, NONE)])
    );
    assert_eq!(fetch_offsets(&mut c, 7, &gs, None, false), (NONE, vec![]));
    assert_eq!(delete_groups(&mut c, 3, &[&gs]), vec![(gs.clone(), NONE)]);
}

// ---------------------------------------------------------------------------------------------
// Timing

/// The only test that waits on a session: a member that stops heartbeating is removed after
/// its session timeout (6 s; Kafka took ~6.1 s), and the group goes Empty. Takes ~6-7 s.
#[test]
fn session_expiry_removes_member() {
    let b = start();
    let mut c = connect(&b);
    let topic = uniq("t");
    create_topic(&mut c, &topic, 1);
    let t = topic.as_str();
    let g = uniq("g");
    let (id, generation) = stable_single(&mut c, &g, &[t], assignment(&[(t, &[0])]));
    let t0 = Instant::now();
    loop {
        let st = group_state(&mut c, &g);
        if st != "Stable" {
            assert_eq!(st, "Empty");
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "member still there after 15 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(5500),
        "expired after only {took:?}"
    );
    assert_eq!(
        heartbeat(&mut c, 3, &g, generation, &id, None),
        UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        sync(&mut c, 3, &g, generation, &id, None, &[]).error_code,
        UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        commit(&mut c, 8, &g, generation, &id, &[(t, 0, 1, None)]),
        vec![(topic.clone(), 0, UNKNOWN_MEMBER_ID)]
    );
    let r = Join::new(&g, &[t]).member(&id).send(&mut c, 5);
    assert_eq!(r.error_code, UNKNOWN_MEMBER_ID, "{r:?}");
}

/// offsets.retention: an empty group's committed offsets are deleted once the group has been
/// empty for the retention time, the group disappears, and the deletion is durable (tombstones
/// in `__consumer_offsets`: a SIGKILL and restart does not bring them back). A group with a
/// live member keeps its offsets. sluice only (it sets broker configs).
#[test]
fn offsets_of_empty_groups_expire_durably() {
    if sluice_tests::external_bootstrap().is_some() {
        eprintln!("skipped: needs broker settings (retention 0, check every second)");
        return;
    }
    let mut b = Broker::start(&[
        "--set",
        "offsets_retention_minutes=0",
        "--set",
        "offsets_retention_check_interval_ms=1000",
        "--set",
        "group_initial_rebalance_delay_ms=0",
    ]);
    let mut c = connect(&b);
    let topic = uniq("ret");
    create_topic(&mut c, &topic, 2);
    let (gone, kept) = (uniq("gone"), uniq("kept"));
    assert_eq!(find_coordinator(&mut c, 3, &gone, 0).error_code, NONE);
    assert_eq!(
        commit(
            &mut c,
            8,
            &gone,
            -1,
            "",
            &[(&topic, 0, 5, None), (&topic, 1, 7, None)]
        ),
        vec![(topic.clone(), 0, NONE), (topic.clone(), 1, NONE)]
    );
    // A member keeps `kept` alive; its offsets stay (it subscribes to the topic).
    let (member, generation) =
        stable_single(&mut c, &kept, &[&topic], assignment(&[(&topic, &[0, 1])]));
    assert_eq!(
        commit(
            &mut c,
            8,
            &kept,
            generation,
            &member,
            &[(&topic, 0, 3, None)]
        ),
        vec![(topic.clone(), 0, NONE)]
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        assert_eq!(heartbeat(&mut c, 4, &kept, generation, &member, None), NONE);
        let (_, parts) = fetch_offsets(&mut c, 7, &gone, None, false);
        if parts.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "offsets of {gone} never expired: {parts:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let listed = list_groups(&mut c, 4, &[], &[]);
    assert!(
        !listed.groups.iter().any(|g| str_of(&g.group_id) == gone),
        "an empty group without offsets is deleted"
    );
    assert_eq!(group_state(&mut c, &kept), "Stable");
    // Durable: after SIGKILL and restart the expired group stays gone, the other's offset stays.
    b.kill();
    b.restart_after_kill();
    let mut c = connect(&b);
    let (_, parts) = fetch_offsets(&mut c, 7, &gone, None, false);
    assert!(
        parts.is_empty(),
        "expired offsets came back after a restart: {parts:?}"
    );
    let (_, parts) = fetch_offsets(&mut c, 7, &kept, None, false);
    assert_eq!(
        parts,
        vec![(topic.clone(), 0, 3, -1, Some(String::new()), NONE)]
    );
}

/// Deleting a topic deletes every group's committed offsets for it (Kafka does the same), and
/// a topic of the same name created again starts with no committed offsets.
#[test]
fn deleting_a_topic_deletes_its_committed_offsets() {
    let b = start();
    let mut c = connect(&b);
    let (doomed, other) = (uniq("doomed"), uniq("other"));
    create_topic(&mut c, &doomed, 1);
    create_topic(&mut c, &other, 1);
    let g = uniq("g");
    assert_eq!(
        commit(
            &mut c,
            8,
            &g,
            -1,
            "",
            &[(&doomed, 0, 4, None), (&other, 0, 9, None)]
        ),
        vec![(doomed.clone(), 0, NONE), (other.clone(), 0, NONE)].tap_sort()
    );
    let r = expect!(
        call(
            &mut c,
            ApiKey::DeleteTopics,
            4,
            Request::DeleteTopics(DeleteTopicsRequest {
                topic_names: vec![s(&doomed)],
                timeout_ms: 30_000,
                ..Default::default()
            })
        ),
        DeleteTopics
    );
    assert_eq!(r.responses[0].error_code, NONE, "{r:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, parts) = fetch_offsets(&mut c, 7, &g, None, false);
        if parts.iter().all(|p| p.0 != doomed) {
            assert_eq!(
                parts,
                vec![(other.clone(), 0, 9, -1, Some(String::new()), NONE)]
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "offsets of a deleted topic stayed: {parts:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    create_topic(&mut c, &doomed, 1);
    let (_, parts) = fetch_offsets(&mut c, 7, &g, Some(&[(&doomed, &[0])]), false);
    assert_eq!(
        parts,
        vec![(doomed.clone(), 0, -1, -1, Some(String::new()), NONE)]
    );
}
