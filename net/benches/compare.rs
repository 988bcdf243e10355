//! The same two measurements as `codec.rs`, for sluice's codec and the kafka-protocol crate
//! (0.18.0, the one this codec replaces) on the same bytes in the same run: decode of a Produce
//! request body with a 1 MiB batch, and encode of a Fetch response with 10 x 64 KiB batches.
//! Bodies only (no headers), since the crates frame differently.
//!
//! Run: `cargo bench -p sluice-net --features compare-kafka-protocol --bench compare`.

use bytes::{Bytes, BytesMut};
use kafka_protocol::protocol::{Decodable, Encodable};
use sluice_net::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use sluice_net::messages::produce_request::{PartitionProduceData, TopicProduceData};
use sluice_net::messages::{FetchResponse, ProduceRequest};
use sluice_net::{Decoder, Encoder};
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

fn produce_body(version: i16) -> Bytes {
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
    req.encode(&mut e, version);
    e.finish_contiguous()
}

fn fetch_body(version: i16) -> (FetchResponse, Bytes) {
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
    let resp = FetchResponse {
        responses: vec![FetchableTopicResponse {
            topic: "bench-topic".into(),
            partitions,
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut e = Encoder::new();
    resp.encode(&mut e, version);
    (resp, e.finish_contiguous())
}

fn main() {
    for version in [3, 9, 12] {
        let body = produce_body(version);
        let ours = best_of(5, 20_000, || {
            let mut d = Decoder::new(black_box(body.clone()));
            black_box(ProduceRequest::decode(&mut d, version).expect("valid"));
        });
        let theirs = best_of(5, 20_000, || {
            let mut b = black_box(body.clone());
            black_box(
                kafka_protocol::messages::ProduceRequest::decode(&mut b, version).expect("valid"),
            );
        });
        println!(
            "decode Produce v{version}, 1 MiB batch: sluice {} ns, kafka-protocol {} ns",
            ours.as_nanos(),
            theirs.as_nanos()
        );
    }
    for version in [4, 12] {
        let (resp, body) = fetch_body(version);
        let theirs_resp =
            kafka_protocol::messages::FetchResponse::decode(&mut body.clone(), version)
                .expect("kafka-protocol reads sluice's encoding");
        let ours = best_of(5, 2_000, || {
            let mut e = Encoder::new();
            black_box(&resp).encode(&mut e, version);
            black_box(e.finish());
        });
        let theirs = best_of(5, 2_000, || {
            let mut b = BytesMut::new();
            black_box(&theirs_resp)
                .encode(&mut b, version)
                .expect("encodes");
            black_box(b);
        });
        let mut b = BytesMut::new();
        theirs_resp.encode(&mut b, version).expect("encodes");
        assert_eq!(b.freeze(), body, "both crates produce the same bytes");
        println!(
            "encode Fetch v{version}, 10 x 64 KiB batches: sluice {} ns (batches not copied), \
             kafka-protocol {} ns (copies {} bytes)",
            ours.as_nanos(),
            theirs.as_nanos(),
            body.len()
        );
    }
}
