//! Topic registry behaviour through the real broker.

use sluice_net::messages::create_topics_request::CreatableTopic;
use sluice_net::messages::{CreateTopicsRequest, MetadataRequest};
use sluice_net::{ApiKey, Request, Response};
use sluice_tests::{Broker, RawConn};

fn create(conn: &mut RawConn, names: &[String]) -> Vec<i16> {
    let req = Request::CreateTopics(CreateTopicsRequest {
        topics: names
            .iter()
            .map(|n| CreatableTopic {
                name: n.as_str().into(),
                num_partitions: 2,
                replication_factor: 1,
                ..Default::default()
            })
            .collect(),
        timeout_ms: 10_000,
        ..Default::default()
    });
    match conn.call(ApiKey::CreateTopics, 7, 1, &req) {
        Response::CreateTopics(r) => r.topics.iter().map(|t| t.error_code).collect(),
        other => panic!("unexpected {other:?}"),
    }
}

fn all_topics(conn: &mut RawConn) -> Vec<String> {
    let req = Request::Metadata(MetadataRequest {
        topics: None,
        allow_auto_topic_creation: false,
        ..Default::default()
    });
    match conn.call(ApiKey::Metadata, 12, 2, &req) {
        Response::Metadata(r) => {
            let mut names: Vec<String> = r
                .topics
                .iter()
                .filter_map(|t| t.name.as_ref().map(|n| n.to_string()))
                .collect();
            names.sort();
            names
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// Proves concurrent CreateTopics from many connections (landing on both cores) all take
/// effect and survive a restart: registry changes are serialized on core 0, so none is lost.
#[test]
fn concurrent_creates_are_all_kept() {
    let mut broker = Broker::start(&["--cores", "2"]);
    let addr = broker.addr;
    let threads: Vec<_> = (0..8)
        .map(|t| {
            std::thread::spawn(move || {
                let mut c = RawConn::connect(addr);
                for i in 0..5 {
                    let codes = create(&mut c, &[format!("t{t}-{i}")]);
                    assert_eq!(codes, vec![0], "create t{t}-{i}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("creator thread");
    }
    let mut expected: Vec<String> = (0..8)
        .flat_map(|t| (0..5).map(move |i| format!("t{t}-{i}")))
        .collect();
    expected.sort();
    let mut c = RawConn::connect(addr);
    assert_eq!(all_topics(&mut c), expected);
    assert_eq!(
        create(&mut c, &["t0-0".to_owned()]),
        vec![36],
        "TOPIC_ALREADY_EXISTS"
    );
    broker.restart_after_kill();
    let mut c = RawConn::connect(broker.addr);
    assert_eq!(all_topics(&mut c), expected, "after SIGKILL and restart");
}
