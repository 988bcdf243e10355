//! `/metrics` serves Prometheus text that parses, and its counters move with the traffic.

use sluice_net::messages::MetadataRequest;
use sluice_net::messages::metadata_request::MetadataRequestTopic;
use sluice_net::record_batch::build::{BatchSpec, batch};
use sluice_net::{ApiKey, Request, Response};
use sluice_tests::{Broker, RawConn, free_port, http_get, metric_samples as samples, produce};

fn sum(samples: &[sluice_tests::Sample], name: &str, topic: &str) -> f64 {
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
    assert_eq!(produce(&mut c, topic, records).0, 0);
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
