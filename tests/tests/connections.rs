//! The per-core connection limit (`core_connections_max`): a core holding that many
//! connections closes each new one as soon as it is accepted (the client reads EOF) while the
//! ones it holds are served on; every refusal is counted in `sluice_connections_refused_total`,
//! and closing a connection makes room for a new one. One core, so every connection lands on
//! the core whose limit is tested.

use std::io::Write;
use std::time::{Duration, Instant};

use sluice_net::messages::ApiVersionsRequest;
use sluice_net::{ApiKey, Request, Response};
use sluice_tests::{Broker, RawConn, external_bootstrap, free_port, http_get, metric_samples};

/// Whether `c` answers an ApiVersions v3 request properly.
fn serves(c: &mut RawConn) -> bool {
    let req = Request::ApiVersions(ApiVersionsRequest {
        client_software_name: "sluice-tests".into(),
        client_software_version: "1.0".into(),
        ..Default::default()
    });
    let body = sluice_tests::encode_request(ApiKey::ApiVersions, 3, 7, &req);
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    // A write to a connection the broker already closed may fail: that is "not served".
    if c.stream.write_all(&frame).is_err() {
        return false;
    }
    let Some(frame) = c.recv_frame() else {
        return false;
    };
    match sluice_tests::decode_response(ApiKey::ApiVersions, 3, 7, frame) {
        Response::ApiVersions(r) => r.error_code == 0,
        other => panic!("unexpected {other:?}"),
    }
}

/// The value of the core-0 series `name` on the metrics port.
fn core0(port: u16, name: &str) -> f64 {
    let (status, body) = http_get(port, "/metrics");
    assert!(status.contains("200"), "{status}");
    metric_samples(&body)
        .into_iter()
        .find(|(n, l, _)| n == name && l.iter().any(|(k, v)| k == "core" && v == "0"))
        .map_or_else(|| panic!("no {name} for core 0 in\n{body}"), |(_, _, v)| v)
}

/// Proves the limit: with `core_connections_max=2`, two connections are served, the third
/// and fourth are closed by the broker without an answer and counted as refused, the first two
/// still answer, and once one of them closes a new connection is served.
#[test]
fn connections_past_the_per_core_limit_are_closed_and_counted() {
    if external_bootstrap().is_some() {
        // The limit is a setting of the broker this test starts.
        return;
    }
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let b = Broker::start(&[
        "--cores",
        "1",
        "--metrics-listen",
        &listen,
        "--set",
        "core_connections_max=2",
    ]);
    let mut first = RawConn::connect(b.addr);
    let mut second = RawConn::connect(b.addr);
    // An answer on each means the broker has accepted and counted both.
    assert!(serves(&mut first), "first connection served");
    assert!(serves(&mut second), "second connection served");
    assert_eq!(core0(port, "sluice_connections_refused_total"), 0.0);

    for extra in ["third", "fourth"] {
        let mut c = RawConn::connect(b.addr);
        assert!(
            c.is_closed_by_peer(),
            "{extra} connection closed by the broker"
        );
    }
    assert!(serves(&mut first), "first connection still served");
    assert!(serves(&mut second), "second connection still served");
    assert_eq!(core0(port, "sluice_connections_refused_total"), 2.0);
    assert_eq!(core0(port, "sluice_connections_open"), 2.0);

    // The broker sees the close on its next read; until then a new connection is still refused.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut next = loop {
        let mut c = RawConn::connect(b.addr);
        if serves(&mut c) {
            break c;
        }
        assert!(
            Instant::now() < deadline,
            "no room after a connection closed"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(serves(&mut next), "new connection served on");
    assert!(serves(&mut second), "second connection served on");
    assert_eq!(core0(port, "sluice_connections_open"), 2.0);
}
