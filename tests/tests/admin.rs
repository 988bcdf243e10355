//! Admin answers pinned to Apache Kafka 4.4.0 through raw requests (issue 18 item 5):
//! authorized operations, group configs (resource type 32), client-metrics subscriptions
//! (type 16), ListConfigResources (API 74) and min.insync.replicas as a cluster-level default.
//!
//! The tests that do not restart the broker also run against the reference Kafka:
//! `SLUICE_TEST_BOOTSTRAP=$(cat DIR/bootstrap) cargo test -p sluice-tests --test admin`
//! (each makes its own groups, topics and subscriptions). Kafka applies a config change a
//! moment after acknowledging it, so reads after writes poll (`until`).

use std::time::{Duration, Instant};

use sluice_net::messages::alter_configs_request::{
    AlterConfigsResource as LegacyResource, AlterableConfig as LegacyConfig,
};
use sluice_net::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use sluice_net::messages::describe_configs_request::DescribeConfigsResource;
use sluice_net::messages::describe_configs_response::DescribeConfigsResult;
use sluice_net::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use sluice_net::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use sluice_net::messages::*;
use sluice_net::{ApiKey, Request};
use sluice_tests::{Broker, RawConn, call, expect, uniq};

const NONE: i16 = 0;
const UNKNOWN_SERVER_ERROR: i16 = -1;
const UNSUPPORTED_VERSION: i16 = 35;
const INVALID_CONFIG: i16 = 40;
const INVALID_REQUEST: i16 = 42;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const BROKER_LOGGER: i8 = 8;
const CLIENT_METRICS: i8 = 16;
const GROUP: i8 = 32;

const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;

/// One incremental config change: (key, operation, value).
type AlterOp<'a> = (&'a str, i8, Option<&'a str>);

/// An expected answer: error code and message.
type Expected = (i16, Option<String>);

fn start() -> Broker {
    Broker::start(&["--metrics-listen", "off"])
}

/// Polls `f` until it gives `Some`, for at most 15 s.
fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within 15 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// This broker's node id, as Metadata reports it.
fn node_id(c: &mut RawConn) -> String {
    let r = expect!(
        call(
            c,
            ApiKey::Metadata,
            12,
            Request::Metadata(MetadataRequest {
                topics: Some(vec![]),
                ..Default::default()
            })
        ),
        Metadata
    );
    r.brokers[0].node_id.0.to_string()
}

fn create_topic(c: &mut RawConn, name: &str, configs: &[(&str, &str)]) -> CreateTopicsResponse {
    let r = expect!(
        call(
            c,
            ApiKey::CreateTopics,
            7,
            Request::CreateTopics(CreateTopicsRequest {
                topics: vec![CreatableTopic {
                    name: name.into(),
                    num_partitions: 1,
                    replication_factor: 1,
                    configs: configs
                        .iter()
                        .map(|(k, v)| CreatableTopicConfig {
                            name: (*k).into(),
                            value: Some((*v).into()),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                timeout_ms: 10_000,
                ..Default::default()
            })
        ),
        CreateTopics
    );
    assert_eq!(r.topics[0].error_code, NONE, "create {name}: {r:?}");
    r
}

fn describe(
    c: &mut RawConn,
    resource_type: i8,
    name: &str,
    documentation: bool,
) -> DescribeConfigsResult {
    let r = expect!(
        call(
            c,
            ApiKey::DescribeConfigs,
            4,
            Request::DescribeConfigs(DescribeConfigsRequest {
                resources: vec![DescribeConfigsResource {
                    resource_type,
                    resource_name: name.into(),
                    configuration_keys: None,
                    ..Default::default()
                }],
                include_synonyms: true,
                include_documentation: documentation,
                ..Default::default()
            })
        ),
        DescribeConfigs
    );
    r.results.into_iter().next().expect("one result")
}

/// A topic's DescribeConfigs result, once the broker has it (Kafka: a moment after the
/// CreateTopics answer).
fn described_topic(c: &mut RawConn, topic: &str) -> DescribeConfigsResult {
    until("the topic described", || {
        let r = describe(c, TOPIC, topic, false);
        (r.error_code == NONE).then_some(r)
    })
}

/// (value, source, synonyms as (name, value, source)) of `key` in a described resource.
type Described = (String, i8, Vec<(String, String, i8)>);

fn entry(r: &DescribeConfigsResult, key: &str) -> Option<Described> {
    r.configs.iter().find(|c| c.name.as_str() == key).map(|c| {
        (
            c.value.as_ref().map(|v| v.to_string()).unwrap_or_default(),
            c.config_source,
            c.synonyms
                .iter()
                .map(|s| {
                    (
                        s.name.to_string(),
                        s.value.as_ref().map(|v| v.to_string()).unwrap_or_default(),
                        s.source,
                    )
                })
                .collect(),
        )
    })
}

fn syn(name: &str, value: &str, source: i8) -> (String, String, i8) {
    (name.to_owned(), value.to_owned(), source)
}

/// IncrementalAlterConfigs on one resource; `ops`: (name, operation, value).
fn alter(
    c: &mut RawConn,
    resource_type: i8,
    name: &str,
    ops: &[(&str, i8, Option<&str>)],
    validate_only: bool,
) -> (i16, Option<String>) {
    let r = expect!(
        call(
            c,
            ApiKey::IncrementalAlterConfigs,
            1,
            Request::IncrementalAlterConfigs(IncrementalAlterConfigsRequest {
                resources: vec![AlterConfigsResource {
                    resource_type,
                    resource_name: name.into(),
                    configs: ops
                        .iter()
                        .map(|(k, op, v)| AlterableConfig {
                            name: (*k).into(),
                            config_operation: *op,
                            value: v.map(Into::into),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                validate_only,
                ..Default::default()
            })
        ),
        IncrementalAlterConfigs
    );
    let x = &r.responses[0];
    (
        x.error_code,
        x.error_message.as_ref().map(|m| m.to_string()),
    )
}

/// Legacy AlterConfigs on one resource (replaces its whole set).
fn alter_legacy(
    c: &mut RawConn,
    resource_type: i8,
    name: &str,
    configs: &[(&str, Option<&str>)],
    validate_only: bool,
) -> (i16, Option<String>) {
    let r = expect!(
        call(
            c,
            ApiKey::AlterConfigs,
            2,
            Request::AlterConfigs(AlterConfigsRequest {
                resources: vec![LegacyResource {
                    resource_type,
                    resource_name: name.into(),
                    configs: configs
                        .iter()
                        .map(|(k, v)| LegacyConfig {
                            name: (*k).into(),
                            value: v.map(Into::into),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                validate_only,
                ..Default::default()
            })
        ),
        AlterConfigs
    );
    let x = &r.responses[0];
    (
        x.error_code,
        x.error_message.as_ref().map(|m| m.to_string()),
    )
}

fn list_resources(c: &mut RawConn, v: i16, types: &[i8]) -> (i16, Vec<(String, i8)>) {
    let r = expect!(
        call(
            c,
            ApiKey::ListConfigResources,
            v,
            Request::ListConfigResources(ListConfigResourcesRequest {
                resource_types: types.to_vec(),
                ..Default::default()
            })
        ),
        ListConfigResources
    );
    let listed = r
        .config_resources
        .iter()
        .map(|x| (x.resource_name.to_string(), x.resource_type))
        .collect();
    (r.error_code, listed)
}

/// A classic group that exists only through a committed offset (state Empty).
fn commit_group(c: &mut RawConn, group: &str, topic: &str) {
    until("offset commit", || {
        let r = expect!(
            call(
                c,
                ApiKey::OffsetCommit,
                8,
                Request::OffsetCommit(OffsetCommitRequest {
                    group_id: group.into(),
                    generation_id_or_member_epoch: -1,
                    member_id: "".into(),
                    topics: vec![OffsetCommitRequestTopic {
                        name: topic.into(),
                        partitions: vec![OffsetCommitRequestPartition {
                            partition_index: 0,
                            committed_offset: 0,
                            committed_leader_epoch: -1,
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                })
            ),
            OffsetCommit
        );
        // Kafka answers COORDINATOR_NOT_AVAILABLE / LOAD_IN_PROGRESS until its offsets topic
        // is ready.
        (r.topics[0].partitions[0].error_code == NONE).then_some(())
    });
}

// ---------------------------------------------------------------------------------------------

/// Proves Metadata v8-10 answers the cluster's authorized operations when asked (8096, the
/// field librdkafka's describe_cluster reads) and i32::MIN when not, as DescribeCluster v0-2
/// does, and that topics answer 3576 (an unknown topic too). sluice answered i32::MIN in
/// Metadata before.
#[test]
fn authorized_operations() {
    let b = start();
    let mut c = RawConn::connect(b.addr);
    let topic = uniq("ops");
    create_topic(&mut c, &topic, &[]);
    for v in 8..=10 {
        for asked in [true, false] {
            let r = expect!(
                call(
                    &mut c,
                    ApiKey::Metadata,
                    v,
                    Request::Metadata(MetadataRequest {
                        topics: Some(vec![
                            metadata_request::MetadataRequestTopic {
                                name: Some(topic.as_str().into()),
                                ..Default::default()
                            },
                            metadata_request::MetadataRequestTopic {
                                name: Some(uniq("unknown").as_str().into()),
                                ..Default::default()
                            },
                        ]),
                        allow_auto_topic_creation: false,
                        include_cluster_authorized_operations: asked,
                        include_topic_authorized_operations: asked,
                        ..Default::default()
                    })
                ),
                Metadata
            );
            let (cluster, topics) = if asked {
                (8096, 3576)
            } else {
                (i32::MIN, i32::MIN)
            };
            assert_eq!(
                r.cluster_authorized_operations, cluster,
                "Metadata v{v} asked={asked}"
            );
            for t in &r.topics {
                assert_eq!(t.topic_authorized_operations, topics, "v{v} {:?}", t.name);
            }
        }
    }
    for v in 0..=2 {
        for asked in [true, false] {
            let r = expect!(
                call(
                    &mut c,
                    ApiKey::DescribeCluster,
                    v,
                    Request::DescribeCluster(DescribeClusterRequest {
                        include_cluster_authorized_operations: asked,
                        endpoint_type: 1,
                        ..Default::default()
                    })
                ),
                DescribeCluster
            );
            let want = if asked { 8096 } else { i32::MIN };
            assert_eq!(
                r.cluster_authorized_operations, want,
                "DescribeCluster v{v}"
            );
        }
    }
}

/// Proves DescribeConfigs on a group that was never seen lists Kafka 4.4's 21 group configs
/// with their defaults, types, DEFAULT_CONFIG source, broker synonyms and documentation; an
/// empty group name is INVALID_REQUEST with Kafka's text. sluice refused type 32 before.
#[test]
fn group_configs_describe_defaults() {
    let b = start();
    let mut c = RawConn::connect(b.addr);
    let r = describe(&mut c, GROUP, &uniq("never-seen"), true);
    assert_eq!(r.error_code, NONE, "{r:?}");
    assert_eq!(
        r.error_message.as_deref(),
        Some(""),
        "Kafka's empty message"
    );
    let mut names: Vec<String> = r.configs.iter().map(|x| x.name.to_string()).collect();
    names.sort();
    assert_eq!(names.len(), 21, "{names:?}");
    assert!(
        r.configs
            .iter()
            .all(|x| x.config_source == 5 && !x.read_only && !x.is_sensitive)
    );
    assert_eq!(
        entry(&r, "consumer.session.timeout.ms"),
        Some((
            "45000".into(),
            5,
            vec![syn("group.consumer.session.timeout.ms", "45000", 5)]
        ))
    );
    assert_eq!(
        entry(&r, "streams.assignor.name"),
        Some((
            "sticky".into(),
            5,
            vec![syn("group.streams.assignors", "sticky", 5)]
        ))
    );
    assert_eq!(
        entry(&r, "share.auto.offset.reset"),
        Some((
            "latest".into(),
            5,
            vec![syn("share.auto.offset.reset", "latest", 5)]
        ))
    );
    let types: Vec<(String, i8)> = r
        .configs
        .iter()
        .filter(|x| {
            [
                "consumer.heartbeat.interval.ms",
                "errors.deadletterqueue.topic.name",
                "share.renew.acknowledge.enable",
                "streams.rack.aware.assignment.tags",
            ]
            .contains(&x.name.as_str())
        })
        .map(|x| (x.name.to_string(), x.config_type))
        .collect();
    assert_eq!(types.len(), 4);
    for (n, t) in types {
        let want = match n.as_str() {
            "consumer.heartbeat.interval.ms" => 3,
            "errors.deadletterqueue.topic.name" => 2,
            "share.renew.acknowledge.enable" => 1,
            _ => 7,
        };
        assert_eq!(t, want, "{n}");
    }
    let doc = r
        .configs
        .iter()
        .find(|x| x.name.as_str() == "share.delivery.count.limit")
        .and_then(|x| x.documentation.as_ref().map(|d| d.to_string()));
    assert_eq!(
        doc.as_deref(),
        Some("The maximum number of delivery attempts for a record delivered to a share group.")
    );
    let empty = describe(&mut c, GROUP, "", false);
    assert_eq!(
        (empty.error_code, empty.error_message.as_deref()),
        (INVALID_REQUEST, Some("Group name must not be empty"))
    );
}

/// Proves IncrementalAlterConfigs and AlterConfigs on groups as Kafka 4.4 answers them: SET on
/// an existing and on a never-seen group (described as GROUP_CONFIG with the broker synonym
/// after it), each refusal with Kafka's code and text, DELETE, internal keys described only
/// when set, and the legacy AlterConfigs replacing the group's whole set.
#[test]
fn group_configs_alter() {
    let b = start();
    let mut c = RawConn::connect(b.addr);
    let topic = uniq("gc");
    create_topic(&mut c, &topic, &[]);
    let group = uniq("gc-group");
    commit_group(&mut c, &group, &topic);
    let ok = (NONE, None);
    assert_eq!(
        alter(
            &mut c,
            GROUP,
            &group,
            &[("consumer.session.timeout.ms", SET, Some("60000"))],
            true
        ),
        ok
    );
    assert_eq!(
        alter(
            &mut c,
            GROUP,
            &group,
            &[
                ("consumer.session.timeout.ms", SET, Some("50000")),
                ("consumer.heartbeat.interval.ms", SET, Some("6000")),
            ],
            false
        ),
        ok
    );
    let r = until("the set values", || {
        let r = describe(&mut c, GROUP, &group, false);
        (entry(&r, "consumer.heartbeat.interval.ms").map(|e| e.1) == Some(8)).then_some(r)
    });
    assert_eq!(
        entry(&r, "consumer.session.timeout.ms"),
        Some((
            "50000".into(),
            8,
            vec![
                syn("consumer.session.timeout.ms", "50000", 8),
                syn("group.consumer.session.timeout.ms", "45000", 5)
            ]
        ))
    );
    let config = |m: &str| (INVALID_CONFIG, Some(m.to_owned()));
    let request = |m: &str| (INVALID_REQUEST, Some(m.to_owned()));
    let cases: &[(&[AlterOp], Expected)] = &[
        (
            &[("consumer.session.timeout.ms", SET, Some("1000"))],
            config("consumer.session.timeout.ms must be in the range 45000 to 60000 inclusive."),
        ),
        (
            &[("consumer.heartbeat.interval.ms", SET, Some("50000"))],
            config("consumer.heartbeat.interval.ms must be in the range 5000 to 15000 inclusive."),
        ),
        (
            &[("consumer.session.timeout.ms", SET, Some("abc"))],
            config(
                "Invalid value abc for configuration consumer.session.timeout.ms: Not a number of type INT",
            ),
        ),
        (
            &[("no.such.group.config", SET, Some("1"))],
            config("Unknown group config name: no.such.group.config"),
        ),
        (
            &[("consumer.session.timeout.ms", APPEND, Some("1"))],
            config("Can't APPEND to key consumer.session.timeout.ms because its type is not LIST."),
        ),
        (
            &[("streams.rack.aware.assignment.tags", APPEND, Some("a"))],
            config(
                "Can't APPEND to key streams.rack.aware.assignment.tags because its type is not LIST.",
            ),
        ),
        (
            &[("consumer.session.timeout.ms", SET, None)],
            request("Null value not supported for : consumer.session.timeout.ms"),
        ),
        (
            &[
                ("consumer.session.timeout.ms", SET, Some("50000")),
                ("consumer.session.timeout.ms", SET, Some("51000")),
            ],
            request("Error due to duplicate config keys"),
        ),
        (
            &[("streams.num.standby.replicas", SET, Some("3"))],
            config("streams.num.standby.replicas must be less than or equal to 2"),
        ),
        (
            &[("consumer.session.timeout.ms", 7, Some("1"))],
            (UNKNOWN_SERVER_ERROR, None),
        ),
    ];
    for (ops, want) in cases {
        assert_eq!(&alter(&mut c, GROUP, &group, ops, false), want, "{ops:?}");
    }
    assert_eq!(
        alter(
            &mut c,
            GROUP,
            "",
            &[("consumer.session.timeout.ms", SET, Some("50000"))],
            false
        ),
        request("Default group resources are not allowed.")
    );
    // An internal key is described only once the group sets it.
    assert!(
        entry(
            &describe(&mut c, GROUP, &group, false),
            "streams.num.warmup.replicas"
        )
        .is_none()
    );
    assert_eq!(
        alter(
            &mut c,
            GROUP,
            &group,
            &[
                ("consumer.session.timeout.ms", DELETE, None),
                ("streams.num.warmup.replicas", SET, Some("3")),
                ("bogus.never.set", DELETE, None),
            ],
            false
        ),
        ok
    );
    let r = until("the delete", || {
        let r = describe(&mut c, GROUP, &group, false);
        (entry(&r, "consumer.session.timeout.ms").map(|e| e.1) == Some(5)).then_some(r)
    });
    assert_eq!(
        entry(&r, "streams.num.warmup.replicas"),
        Some((
            "3".into(),
            8,
            vec![
                syn("streams.num.warmup.replicas", "3", 8),
                syn("group.streams.num.warmup.replicas", "2", 5)
            ]
        ))
    );
    assert_eq!(r.configs.len(), 22);
    // Legacy AlterConfigs: the named set replaces the group's (heartbeat and warmup go back).
    assert_eq!(
        alter_legacy(
            &mut c,
            GROUP,
            &group,
            &[("consumer.session.timeout.ms", Some("46000"))],
            false
        ),
        ok
    );
    let r = until("the legacy alter", || {
        let r = describe(&mut c, GROUP, &group, false);
        (entry(&r, "consumer.heartbeat.interval.ms").map(|e| e.1) == Some(5)).then_some(r)
    });
    assert_eq!(
        entry(&r, "consumer.session.timeout.ms").map(|e| (e.0, e.1)),
        Some(("46000".into(), 8))
    );
    assert!(entry(&r, "streams.num.warmup.replicas").is_none());
    assert_eq!(
        alter_legacy(
            &mut c,
            GROUP,
            &group,
            &[("consumer.session.timeout.ms", None)],
            false
        ),
        request("Null value not supported for : consumer.session.timeout.ms")
    );
    assert_eq!(
        alter_legacy(
            &mut c,
            GROUP,
            &group,
            &[("consumer.session.timeout.ms", Some("5"))],
            false
        ),
        config("consumer.session.timeout.ms must be in the range 45000 to 60000 inclusive.")
    );
    // A group that does not exist takes configs too.
    let other = uniq("gc-config-only");
    assert_eq!(
        alter(
            &mut c,
            GROUP,
            &other,
            &[("share.auto.offset.reset", SET, Some("by_duration:PT1H"))],
            false
        ),
        ok
    );
    until("the config-only group", || {
        let r = describe(&mut c, GROUP, &other, false);
        (entry(&r, "share.auto.offset.reset").map(|e| e.0) == Some("by_duration:PT1H".into()))
            .then_some(())
    });
}

/// Proves group configs outlive DeleteGroups, as in Kafka 4.4 (they live beside the group,
/// not in it; the group coordinator does not touch them) and that ListConfigResources lists a
/// group exactly while it has configs.
#[test]
fn group_configs_outlive_delete_groups() {
    let b = start();
    let mut c = RawConn::connect(b.addr);
    let topic = uniq("gd");
    create_topic(&mut c, &topic, &[]);
    let group = uniq("gd-group");
    commit_group(&mut c, &group, &topic);
    assert_eq!(
        alter(
            &mut c,
            GROUP,
            &group,
            &[("consumer.session.timeout.ms", SET, Some("50000"))],
            false
        ),
        (NONE, None)
    );
    let listed = |c: &mut RawConn| {
        list_resources(c, 1, &[GROUP])
            .1
            .contains(&(group.clone(), GROUP))
    };
    until("the group listed", || listed(&mut c).then_some(()));
    let r = expect!(
        call(
            &mut c,
            ApiKey::DeleteGroups,
            2,
            Request::DeleteGroups(DeleteGroupsRequest {
                groups_names: vec![group.as_str().into()],
                ..Default::default()
            })
        ),
        DeleteGroups
    );
    assert_eq!(r.results[0].error_code, NONE, "{r:?}");
    let d = describe(&mut c, GROUP, &group, false);
    assert_eq!(
        entry(&d, "consumer.session.timeout.ms").map(|e| (e.0, e.1)),
        Some(("50000".into(), 8))
    );
    assert!(listed(&mut c), "still listed after DeleteGroups");
    assert_eq!(
        alter(
            &mut c,
            GROUP,
            &group,
            &[("consumer.session.timeout.ms", DELETE, None)],
            false
        ),
        (NONE, None)
    );
    until("the group no longer listed", || {
        (!listed(&mut c)).then_some(())
    });
}

/// Proves group configs and client-metrics subscriptions survive a crash and restart (they
/// are in the topic registry file, written durably before the answer) and that a restarted
/// broker still has the cluster-level min.insync.replicas.
#[test]
fn stored_configs_survive_restart() {
    let mut b = start();
    if b.is_external() {
        return;
    }
    let mut c = RawConn::connect(b.addr);
    let group = uniq("restart-group");
    let sub = uniq("restart-sub");
    assert_eq!(
        alter(
            &mut c,
            GROUP,
            &group,
            &[("consumer.heartbeat.interval.ms", SET, Some("7000"))],
            false
        ),
        (NONE, None)
    );
    assert_eq!(
        alter(
            &mut c,
            CLIENT_METRICS,
            &sub,
            &[("interval.ms", SET, Some("60000"))],
            false
        ),
        (NONE, None)
    );
    drop(c);
    // SIGKILL: an acknowledged change is already on disk.
    b.restart_after_kill();
    let mut c = RawConn::connect(b.addr);
    assert_eq!(
        entry(
            &describe(&mut c, GROUP, &group, false),
            "consumer.heartbeat.interval.ms"
        )
        .map(|e| (e.0, e.1)),
        Some(("7000".into(), 8))
    );
    assert_eq!(
        entry(
            &describe(&mut c, CLIENT_METRICS, &sub, false),
            "interval.ms"
        )
        .map(|e| (e.0, e.1)),
        Some(("60000".into(), 7))
    );
    let cluster = describe(&mut c, BROKER, "", false);
    assert_eq!(
        entry(&cluster, "min.insync.replicas").map(|e| (e.0, e.1)),
        Some(("1".into(), 3))
    );
}

/// Proves client-metrics subscriptions as Kafka 4.4 keeps them: a subscription that does not
/// exist describes the three defaults (no synonyms), SET is described as
/// CLIENT_METRICS_CONFIG, refusals carry Kafka's codes and texts, ListConfigResources v0 and
/// v1 list it, and deleting every config removes it.
#[test]
fn client_metrics_subscriptions() {
    let b = start();
    let mut c = RawConn::connect(b.addr);
    let sub = uniq("sub");
    let r = describe(&mut c, CLIENT_METRICS, &sub, false);
    assert_eq!(r.error_code, NONE);
    assert_eq!(
        r.configs
            .iter()
            .map(|x| (
                x.name.to_string(),
                x.value.as_ref().map(|v| v.to_string()),
                x.config_source,
                x.synonyms.len()
            ))
            .collect::<Vec<_>>(),
        vec![
            ("interval.ms".to_owned(), Some("300000".to_owned()), 5, 0),
            ("match".to_owned(), Some(String::new()), 5, 0),
            ("metrics".to_owned(), Some(String::new()), 5, 0),
        ]
    );
    let empty = describe(&mut c, CLIENT_METRICS, "", false);
    assert_eq!(
        (empty.error_code, empty.error_message.as_deref()),
        (
            INVALID_REQUEST,
            Some("Client metrics subscription name must not be empty")
        )
    );
    let refusals: &[(&[AlterOp], i16, &str)] = &[
        (
            &[("bogus", SET, Some("1"))],
            INVALID_REQUEST,
            "Unknown client metrics configuration: bogus",
        ),
        (
            &[("interval.ms", SET, Some("10"))],
            INVALID_REQUEST,
            "Invalid value 10 for interval.ms, interval must be between 100 and 3600000 (1 hour)",
        ),
        (
            &[("match", SET, Some("bogus=1"))],
            INVALID_CONFIG,
            "Illegal client matching pattern: bogus=1",
        ),
        (
            &[("metrics", APPEND, Some("a."))],
            INVALID_CONFIG,
            "Can't APPEND to key metrics because its type is not LIST.",
        ),
    ];
    for (ops, code, text) in refusals {
        assert_eq!(
            alter(&mut c, CLIENT_METRICS, &sub, ops, false),
            (*code, Some((*text).to_owned())),
            "{ops:?}"
        );
    }
    assert_eq!(
        alter(
            &mut c,
            CLIENT_METRICS,
            "",
            &[("interval.ms", SET, Some("1000"))],
            false
        ),
        (
            INVALID_REQUEST,
            Some("Subscription name can't be empty".to_owned())
        )
    );
    assert_eq!(
        alter(
            &mut c,
            CLIENT_METRICS,
            &sub,
            &[
                ("metrics", SET, Some("org.apache.kafka.producer.")),
                ("interval.ms", SET, Some("60000")),
                ("match", SET, Some("client_id=nobody-\\d+")),
            ],
            false
        ),
        (NONE, None)
    );
    let r = until("the subscription", || {
        let r = describe(&mut c, CLIENT_METRICS, &sub, false);
        (entry(&r, "interval.ms").map(|e| e.1) == Some(7)).then_some(r)
    });
    assert_eq!(
        entry(&r, "metrics"),
        Some((
            "org.apache.kafka.producer.".into(),
            7,
            vec![syn("metrics", "org.apache.kafka.producer.", 7)]
        ))
    );
    let (code, v0) = list_resources(&mut c, 0, &[]);
    assert_eq!(code, NONE);
    assert!(v0.iter().any(|(n, _)| *n == sub), "{v0:?}");
    let (_, v1) = list_resources(&mut c, 1, &[CLIENT_METRICS]);
    assert!(v1.contains(&(sub.clone(), CLIENT_METRICS)), "{v1:?}");
    assert!(v1.iter().all(|(_, t)| *t == CLIENT_METRICS));
    assert_eq!(
        alter(
            &mut c,
            CLIENT_METRICS,
            &sub,
            &[
                ("metrics", DELETE, None),
                ("interval.ms", DELETE, None),
                ("match", DELETE, None)
            ],
            false
        ),
        (NONE, None)
    );
    until("the subscription gone", || {
        (!list_resources(&mut c, 0, &[])
            .1
            .iter()
            .any(|(n, _)| *n == sub))
        .then_some(())
    });
}

/// Proves ListConfigResources v1 lists, in Kafka's order, groups with configs, this broker as
/// a broker-logger and a broker, then every topic (internal ones too), filters by type in that
/// same order whatever order the request names them in, and answers UNSUPPORTED_VERSION with
/// nothing for a type it does not list. The API was not advertised before.
#[test]
fn list_config_resources() {
    let b = start();
    let mut c = RawConn::connect(b.addr);
    let node = node_id(&mut c);
    let topic = uniq("lcr");
    create_topic(&mut c, &topic, &[]);
    let group = uniq("lcr-group");
    commit_group(&mut c, &group, &topic);
    let ok = (NONE, None);
    assert_eq!(
        alter(
            &mut c,
            GROUP,
            &group,
            &[("consumer.heartbeat.interval.ms", SET, Some("7000"))],
            false
        ),
        ok
    );
    let all = until("the group listed", || {
        let (code, all) = list_resources(&mut c, 1, &[]);
        assert_eq!(code, NONE);
        all.contains(&(group.clone(), GROUP)).then_some(all)
    });
    let kinds: Vec<i8> = all.iter().map(|(_, t)| *t).collect();
    let mut sorted = kinds.clone();
    sorted.sort_by_key(|t| std::cmp::Reverse(*t));
    assert_eq!(
        kinds, sorted,
        "groups, client metrics, broker loggers, brokers, topics: {all:?}"
    );
    assert!(all.contains(&(node.clone(), BROKER_LOGGER)), "{all:?}");
    assert!(all.contains(&(node.clone(), BROKER)), "{all:?}");
    assert!(all.contains(&(topic.clone(), TOPIC)), "{all:?}");
    assert!(
        all.contains(&("__consumer_offsets".to_owned(), TOPIC)),
        "{all:?}"
    );
    let (_, some) = list_resources(&mut c, 1, &[TOPIC, BROKER]);
    assert_eq!(some[0], (node.clone(), BROKER), "{some:?}");
    assert!(some[1..].iter().all(|(_, t)| *t == TOPIC), "{some:?}");
    for bad in [&[0i8][..], &[TOPIC, 1], &[3], &[99]] {
        assert_eq!(
            list_resources(&mut c, 1, bad),
            (UNSUPPORTED_VERSION, vec![]),
            "{bad:?}"
        );
    }
}

/// Proves min.insync.replicas is a cluster-level dynamic default from the first start, as
/// Kafka 4.4's controller bootstraps it: topics (in DescribeConfigs and in the CreateTopics
/// answer) and this broker report source DYNAMIC_DEFAULT_BROKER_CONFIG with the cluster value
/// before Kafka's default in the synonyms, the cluster resource lists exactly that entry, and
/// removing it or altering it per broker is INVALID_CONFIG with Kafka's text (validate-only
/// too; legacy AlterConfigs of the cluster resource without it removes it). Before, sluice
/// answered DEFAULT_CONFIG and accepted the per-broker changes.
#[test]
fn min_insync_replicas_is_a_cluster_default() {
    let b = start();
    let mut c = RawConn::connect(b.addr);
    let node = node_id(&mut c);
    let topic = uniq("mir");
    let created = create_topic(&mut c, &topic, &[]);
    let from_create = created.topics[0]
        .configs
        .as_ref()
        .and_then(|cs| cs.iter().find(|x| x.name.as_str() == "min.insync.replicas"))
        .map(|x| (x.value.as_ref().map(|v| v.to_string()), x.config_source));
    assert_eq!(from_create, Some((Some("1".to_owned()), 3)));
    let cluster_then_default = vec![
        syn("min.insync.replicas", "1", 3),
        syn("min.insync.replicas", "1", 5),
    ];
    let t = described_topic(&mut c, &topic);
    assert_eq!(
        entry(&t, "min.insync.replicas"),
        Some(("1".into(), 3, cluster_then_default.clone()))
    );
    let own = uniq("mir-own");
    create_topic(&mut c, &own, &[("min.insync.replicas", "1")]);
    let t = described_topic(&mut c, &own);
    let mut with_own = vec![syn("min.insync.replicas", "1", 1)];
    with_own.extend(cluster_then_default.clone());
    assert_eq!(
        entry(&t, "min.insync.replicas"),
        Some(("1".into(), 1, with_own))
    );
    let me = describe(&mut c, BROKER, &node, false);
    assert_eq!(
        entry(&me, "min.insync.replicas"),
        Some(("1".into(), 3, cluster_then_default))
    );
    let cluster = describe(&mut c, BROKER, "", false);
    let mine: Vec<&str> = cluster
        .configs
        .iter()
        .map(|x| x.name.as_str())
        .filter(|n| *n == "min.insync.replicas")
        .collect();
    assert_eq!(mine.len(), 1, "{cluster:?}");
    assert_eq!(
        entry(&cluster, "min.insync.replicas"),
        Some(("1".into(), 3, vec![syn("min.insync.replicas", "1", 3)]))
    );
    let cluster_text = "Cluster-level min.insync.replicas cannot be removed while ELR is enabled.";
    let broker_text = "Broker-level min.insync.replicas cannot be altered while ELR is enabled.";
    let refused = |t: &str| (INVALID_CONFIG, Some(t.to_owned()));
    assert_eq!(
        alter(
            &mut c,
            BROKER,
            "",
            &[("min.insync.replicas", DELETE, None)],
            true
        ),
        refused(cluster_text)
    );
    assert_eq!(
        alter_legacy(
            &mut c,
            BROKER,
            "",
            &[("log.retention.ms", Some("100000"))],
            true
        ),
        refused(cluster_text)
    );
    for (op, value) in [(SET, Some("1")), (DELETE, None)] {
        for validate_only in [true, false] {
            assert_eq!(
                alter(
                    &mut c,
                    BROKER,
                    &node,
                    &[("min.insync.replicas", op, value)],
                    validate_only
                ),
                refused(broker_text)
            );
        }
    }
    assert_eq!(
        alter(
            &mut c,
            BROKER,
            "",
            &[("min.insync.replicas", SET, Some("0"))],
            true
        ),
        (
            INVALID_REQUEST,
            Some(
                "Invalid value 0 for configuration min.insync.replicas: Value must be at least 1"
                    .to_owned()
            )
        )
    );
    assert_eq!(
        alter(
            &mut c,
            BROKER,
            "",
            &[("min.insync.replicas", SET, Some("2"))],
            true
        ),
        (NONE, None)
    );
}
