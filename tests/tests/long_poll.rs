//! Fetch long polls leave nothing behind once they answer: a thousand consumers long-polling two
//! partitions (one on each core) park one wait per owning core each, and when a record arrives on
//! one partition every fetch answers and every wait on the other core ends with it, long before
//! `max_wait_ms`. Read through the `sluice_fetch_waits` gauge on `/metrics`.

use std::time::{Duration, Instant};

use sluice_net::messages::FetchRequest;
use sluice_net::messages::fetch_request::{FetchPartition, FetchTopic};
use sluice_net::record_batch::build::{BatchSpec, batch};
use sluice_net::{ApiKey, Request, Response};
use sluice_tests::{
    Broker, RawConn, create_topic_raw, decode_response, encode_request, free_port, http_get,
    metric_samples, produce,
};

/// Long-polling consumers.
const CONSUMERS: usize = 1000;
/// Far longer than the test: a wait that ends did so because its fetch answered.
const MAX_WAIT_MS: i32 = 60_000;
const FETCH_VERSION: i16 = 12;

/// The sum over cores of one gauge.
fn gauge(port: u16, name: &str) -> f64 {
    let (_, body) = http_get(port, "/metrics");
    metric_samples(&body)
        .iter()
        .filter(|(n, _, _)| n == name)
        .map(|(_, _, v)| v)
        .sum()
}

/// Polls `name` until `done` holds or `within` passes; the last value.
fn wait_for(port: u16, name: &str, within: Duration, done: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + within;
    loop {
        let v = gauge(port, name);
        if done(v) || Instant::now() >= deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn fetch(topic: &str) -> Request {
    Request::Fetch(FetchRequest {
        replica_id: (-1).into(),
        max_wait_ms: MAX_WAIT_MS,
        min_bytes: 1,
        max_bytes: 1 << 20,
        session_epoch: -1,
        topics: vec![FetchTopic {
            topic: topic.into(),
            partitions: (0..2)
                .map(|p| FetchPartition {
                    partition: p,
                    fetch_offset: 0,
                    partition_max_bytes: 1 << 20,
                    current_leader_epoch: -1,
                    log_start_offset: -1,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    })
}

#[test]
fn answered_long_polls_leave_no_wait_parked() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let b = Broker::start(&["--metrics-listen", &listen]);
    let topic = "polled";
    let mut admin = RawConn::connect(b.addr);
    create_topic_raw(&mut admin, topic, 2);

    let request = encode_request(ApiKey::Fetch, FETCH_VERSION, 7, &fetch(topic));
    let mut consumers: Vec<RawConn> = (0..CONSUMERS)
        .map(|_| {
            let mut c = RawConn::connect(b.addr);
            c.send_frame(&request);
            c
        })
        .collect();
    // Every fetch parks one wait on each core that owns one of its partitions.
    let parked = wait_for(port, "sluice_fetch_waits", Duration::from_secs(30), |v| {
        v >= CONSUMERS as f64
    });
    assert!(
        parked >= CONSUMERS as f64,
        "{parked} waits parked for {CONSUMERS} idle long polls"
    );

    let records = batch(&BatchSpec::default(), &[(Some(b"k"), Some(b"woken"))]);
    assert_eq!(
        produce(&mut admin, topic, records).0,
        0,
        "the record is appended"
    );

    for c in &mut consumers {
        let frame = c.recv_frame().expect("the long poll answered");
        let Response::Fetch(r) = decode_response(ApiKey::Fetch, FETCH_VERSION, 7, frame) else {
            panic!("not a fetch response");
        };
        let p0 = &r.responses[0].partitions[0];
        assert_eq!(p0.error_code, 0);
        assert!(
            p0.records.as_ref().is_some_and(|rs| !rs.is_empty()),
            "the fetch answered with the new record"
        );
    }
    let left = wait_for(port, "sluice_fetch_waits", Duration::from_secs(10), |v| {
        v == 0.0
    });
    assert_eq!(
        left, 0.0,
        "waits still parked after every fetch answered (max_wait_ms is {MAX_WAIT_MS})"
    );
    assert_eq!(gauge(port, "sluice_requests_in_flight"), 0.0);
}
