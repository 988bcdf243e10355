//! Codec cost on the two hot paths: ns per decode of a Produce request carrying a 1 MiB record
//! batch, and ns per encode of a Fetch response carrying 10 x 64 KiB batches, with the bytes the
//! encoder copies (which should be the headers only: batches are chunks of their own).
//!
//! Run: `cargo bench -p sluice-net --bench codec`. Plain `Instant` timing, best of 5 rounds.

use bytes::Bytes;
use sluice_net::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use sluice_net::messages::produce_request::{PartitionProduceData, TopicProduceData};
use sluice_net::messages::{FetchResponse, ProduceRequest};
use sluice_net::{ApiKey, Encoder, Request, RequestHeader, decode_request, response_frame};
use std::hint::black_box;
use std::time::{Duration, Instant};

fn best_of(rounds: usize, iterations: u32, mut f: impl FnMut()) -> Duration {
    (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iterations {
                f();
            }
            start.elapsed() / iterations
        })
        .min()
        .unwrap_or_default()
}

fn produce_frame_body(version: i16) -> Bytes {
    let header = RequestHeader {
        request_api_key: ApiKey::Produce.key(),
        request_api_version: version,
        correlation_id: 1,
        client_id: Some("bench".into()),
        ..Default::default()
    };
    let req = ProduceRequest {
        acks: -1,
        timeout_ms: 30_000,
        topic_data: vec![TopicProduceData {
            name: "bench-topic".into(),
            partition_data: vec![PartitionProduceData {
                index: 0,
                records: Some(Bytes::from(vec![0x5a; 1 << 20]).into()),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut e = Encoder::new();
    header.encode(&mut e, ApiKey::Produce.request_header_version(version));
    req.encode(&mut e, version);
    e.finish_contiguous()
}

fn fetch_response() -> FetchResponse {
    let partitions = (0..10)
        .map(|i| PartitionData {
            partition_index: i,
            high_watermark: 1_000_000,
            last_stable_offset: 1_000_000,
            log_start_offset: 0,
            records: Some(Bytes::from(vec![i as u8; 64 << 10]).into()),
            ..Default::default()
        })
        .collect();
    FetchResponse {
        responses: vec![FetchableTopicResponse {
            topic: "bench-topic".into(),
            partitions,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn main() {
    for version in [3, 9, 12] {
        let body = produce_frame_body(version);
        let t = best_of(5, 20_000, || {
            let (_, req) = decode_request(black_box(body.clone())).expect("valid");
            let Request::Produce(p) = req else {
                unreachable!("produce")
            };
            black_box(p);
        });
        println!(
            "decode Produce v{version} request, 1 MiB batch ({} byte frame body): {} ns",
            body.len(),
            t.as_nanos()
        );
    }
    let resp = fetch_response();
    for version in [4, 12, 16] {
        let key = ApiKey::Fetch;
        let chunks = response_frame(key, version, 1, |e| resp.encode(e, version));
        let total: usize = chunks.iter().map(Bytes::len).sum();
        let records: usize = 10 * (64 << 10);
        let t = best_of(5, 20_000, || {
            let chunks = response_frame(key, version, 1, |e| black_box(&resp).encode(e, version));
            black_box(chunks);
        });
        println!(
            "encode Fetch v{version} response, 10 x 64 KiB batches: {} ns, {} chunks, \
             {} bytes total, {} bytes copied (headers only)",
            t.as_nanos(),
            chunks.len(),
            total,
            total - records
        );
    }
}
