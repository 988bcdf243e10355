//! Admin answers pinned to Apache Kafka 4.4.0 through raw requests (issue 18 item 5):
//! authorized operations and min.insync.replicas as a cluster-level default.
//!
//! The tests that do not restart the broker also run against the reference Kafka:
//! `SLUICE_TEST_BOOTSTRAP=$(cat DIR/bootstrap) cargo test -p sluice-tests --test admin`
//! (each makes its own groups, topics and subscriptions). Kafka applies a config change a
//! moment after acknowledging it, so reads after writes poll (`until`).

use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
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
use sluice_net::messages::*;
use sluice_net::{ApiKey, Request, Response};
use sluice_tests::{Broker, RawConn};

const NONE: i16 = 0;
const INVALID_CONFIG: i16 = 40;
const INVALID_REQUEST: i16 = 42;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;

const SET: i8 = 0;
const DELETE: i8 = 1;

static NEXT_CORRELATION: AtomicI32 = AtomicI32::new(1);
static NEXT_NAME: AtomicU32 = AtomicU32::new(0);

/// A name no other test (nor an earlier run against the same external broker) uses.
fn uniq(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000_000,
        NEXT_NAME.fetch_add(1, Ordering::Relaxed)
    )
}

fn start() -> Broker {
    Broker::start(&["--metrics-listen", "off"])
}

fn call(c: &mut RawConn, api: ApiKey, v: i16, req: Request) -> Response {
    let corr = NEXT_CORRELATION.fetch_add(1, Ordering::Relaxed);
    c.call(api, v, corr, &req)
}

macro_rules! expect {
    ($resp:expr, $variant:ident) => {
        match $resp {
            Response::$variant(r) => r,
            other => panic!("expected {} response, got {other:?}", stringify!($variant)),
        }
    };
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
