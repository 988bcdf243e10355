//! `/metrics` serves Prometheus text that parses, and its counters move with the traffic.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use sluice_net::messages::metadata_request::MetadataRequestTopic;
use sluice_net::messages::produce_request::{PartitionProduceData, TopicProduceData};
use sluice_net::messages::{MetadataRequest, ProduceRequest};
use sluice_net::record_batch::build::{BatchSpec, batch};
use sluice_net::{ApiKey, Request, Response};
use sluice_tests::{Broker, RawConn};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// GET `path`: (status line, body).
fn http_get(port: u16, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("metrics port answers");
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").expect("request sent");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("response read");
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    (
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    )
}

/// Parses the text format strictly enough to catch a broken exposition: every sample line is
/// `name{label="value",...} number` and belongs to a family announced by `# TYPE`.
fn samples(body: &str) -> Vec<(String, Vec<(String, String)>, f64)> {
    let mut families = Vec::new();
    let mut out = Vec::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            families.push(rest.split(' ').next().expect("family name").to_owned());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line}"));
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => {
                let l = l.strip_suffix('}').expect("closing brace");
                let labels = l
                    .split("\",")
                    .filter(|kv| !kv.is_empty())
                    .map(|kv| {
                        let (k, v) = kv.split_once("=\"").expect("label=\"value\"");
                        (k.to_owned(), v.trim_end_matches('"').to_owned())
                    })
                    .collect();
                (n.to_owned(), labels)
            }
            None => (series.to_owned(), Vec::new()),
        };
        assert!(
            families.iter().any(|f| name.starts_with(f.as_str())),
            "sample {name} has no # TYPE"
        );
        out.push((name, labels, value));
    }
    out
}

fn sum(samples: &[(String, Vec<(String, String)>, f64)], name: &str, topic: &str) -> f64 {
    samples
        .iter()
        .filter(|(n, l, _)| n == name && l.iter().any(|(k, v)| k == "topic" && v == topic))
        .map(|(_, _, v)| v)
        .sum()
}

#[test]
fn metrics_parse_and_move_after_a_produce() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let b = Broker::start(&["--metrics-listen", &listen]);
    let (status, _) = http_get(port, "/nope");
    assert!(status.contains("404"), "{status}");
    let topic = "metered";
    let mut c = RawConn::connect(b.addr);
    let req = Request::Metadata(MetadataRequest {
        topics: Some(vec![MetadataRequestTopic {
            name: Some(topic.into()),
            ..Default::default()
        }]),
        allow_auto_topic_creation: true,
        ..Default::default()
    });
    assert!(matches!(
        c.call(ApiKey::Metadata, 12, 1, &req),
        Response::Metadata(_)
    ));
    let (_, before) = http_get(port, "/metrics");
    let before = samples(&before);
    assert_eq!(sum(&before, "sluice_topic_records_in_total", topic), 0.0);
    let records = batch(
        &BatchSpec::default(),
        &[
            (Some(b"k1"), Some(b"v1")),
            (None, Some(b"v2")),
            (None, Some(b"v3")),
        ],
    );
    let bytes = records.len() as f64;
    let req = Request::Produce(ProduceRequest {
        acks: -1,
        timeout_ms: 5000,
        topic_data: vec![TopicProduceData {
            name: topic.into(),
            partition_data: vec![PartitionProduceData {
                index: 0,
                records: Some(records.into()),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    });
    match c.call(ApiKey::Produce, 9, 2, &req) {
        Response::Produce(r) => assert_eq!(r.responses[0].partition_responses[0].error_code, 0),
        other => panic!("unexpected {other:?}"),
    }
    let (status, after) = http_get(port, "/metrics");
    assert!(status.contains("200"), "{status}");
    assert!(after.trim_end().ends_with("# EOF"), "ends with # EOF");
    let after = samples(&after);
    assert_eq!(sum(&after, "sluice_topic_records_in_total", topic), 3.0);
    assert_eq!(sum(&after, "sluice_topic_bytes_in_total", topic), bytes);
    let produced: f64 = after
        .iter()
        .filter(|(n, l, _)| {
            n == "sluice_requests_count" && l.iter().any(|(k, v)| k == "api" && v == "Produce")
        })
        .map(|(_, _, v)| v)
        .sum();
    assert_eq!(produced, 1.0);
    // acks=all with the default durability: the append was fdatasync'ed, and timed.
    let fsyncs: f64 = after
        .iter()
        .filter(|(n, _, _)| n == "sluice_fsync_seconds_count")
        .map(|(_, _, v)| v)
        .sum();
    assert!(fsyncs >= 1.0, "an acknowledged append was synced: {fsyncs}");
    let cores = after
        .iter()
        .filter(|(n, _, _)| n == "sluice_partitions")
        .count();
    assert!(cores >= 1, "one sluice_partitions series per core");
}
