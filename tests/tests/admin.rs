//! Admin answers pinned to Apache Kafka 4.4.0 through raw requests (issue 18 item 5):
//! authorized operations.
//!
//! The tests that do not restart the broker also run against the reference Kafka:
//! `SLUICE_TEST_BOOTSTRAP=$(cat DIR/bootstrap) cargo test -p sluice-tests --test admin`
//! (each makes its own groups, topics and subscriptions). Kafka applies a config change a
//! moment after acknowledging it, so reads after writes poll (`until`).

use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};

use sluice_net::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use sluice_net::messages::*;
use sluice_net::{ApiKey, Request, Response};
use sluice_tests::{Broker, RawConn};

const NONE: i16 = 0;

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
