//! A Fetch of many partitions stays within its `max_bytes` as Kafka's does (request order,
//! the first batch whole, nothing for the partitions past the budget but their offsets), and
//! the broker reads no more partitions than the budget lets it answer from (issue 22: with
//! 1,000 partitions, reading a window of each and dropping all but 50 MiB made the consume
//! four times slower and the broker's memory balloon). The reads are counted on `/metrics`
//! (`sluice_cache_hits` + `sluice_cache_misses`: one per partition read).

use sluice_net::messages::fetch_request::{FetchPartition, FetchTopic};
use sluice_net::messages::{FetchRequest, FetchResponse};
use sluice_net::record_batch::build::{BatchSpec, batch};
use sluice_net::{ApiKey, Request};
use sluice_tests::{
    Broker, RawConn, call, create_topic_raw, expect, free_port, http_get, metric_samples,
    produce_to,
};

const PARTITIONS: i32 = 8;
const BATCHES: usize = 4;
const RECORDS: usize = 10;
const VALUE_BYTES: usize = 1000;

fn reads_so_far(port: u16) -> f64 {
    let (_, body) = http_get(port, "/metrics");
    metric_samples(&body)
        .iter()
        .filter(|(n, _, _)| n == "sluice_cache_hits_total" || n == "sluice_cache_misses_total")
        .map(|(_, _, v)| v)
        .sum()
}

fn fetch(topic: &str, offsets: &[i64], order: &[i32], max_bytes: i32) -> Request {
    Request::Fetch(FetchRequest {
        max_wait_ms: 0,
        min_bytes: 1,
        max_bytes,
        session_epoch: -1,
        topics: vec![FetchTopic {
            topic: topic.into(),
            partitions: order
                .iter()
                .map(|&p| FetchPartition {
                    partition: p,
                    fetch_offset: offsets[p as usize],
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

/// Batches answered per partition, in the response's order: (partition, bytes, batches).
fn answered(r: &FetchResponse) -> Vec<(i32, usize, Vec<bytes::Bytes>)> {
    r.responses[0]
        .partitions
        .iter()
        .map(|p| {
            assert_eq!(p.error_code, 0);
            assert_eq!(p.high_watermark, (BATCHES * RECORDS) as i64);
            let raw = p
                .records
                .as_ref()
                .map_or(bytes::Bytes::new(), |r| r.to_bytes());
            let batches = sluice_net::record_batch::Batches::new(raw.clone())
                .map(|b| b.expect("a whole batch").into_bytes())
                .collect();
            (p.partition_index, raw.len(), batches)
        })
        .collect()
}

#[test]
fn a_fetch_reads_and_answers_within_its_max_bytes() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let b = Broker::start(&["--metrics-listen", &listen]);
    let topic = "budget";
    let mut conn = RawConn::connect(b.addr);
    create_topic_raw(&mut conn, topic, PARTITIONS);
    let value = vec![b'v'; VALUE_BYTES];
    let records: Vec<_> = (0..RECORDS)
        .map(|_| (None, Some(value.as_slice())))
        .collect();
    let one = batch(&BatchSpec::default(), &records);
    let all: Vec<i32> = (0..PARTITIONS).collect();
    for _ in 0..BATCHES {
        let produced = produce_to(&mut conn, topic, &all, one.clone());
        assert!(produced.iter().all(|p| p.0 == 0), "{produced:?}");
    }

    // Two and a half batches' worth: partition 0 answers two, the rest only their offsets.
    let max_bytes = (one.len() * 5 / 2) as i32;
    let order: Vec<i32> = (0..PARTITIONS).collect();
    let before = reads_so_far(port);
    let r = expect!(
        call(
            &mut conn,
            ApiKey::Fetch,
            12,
            fetch(topic, &[0; 8], &order, max_bytes)
        ),
        Fetch
    );
    let reads = reads_so_far(port) - before;
    let got = answered(&r);
    assert_eq!(got[0].2.len(), 2, "partition 0 answers two whole batches");
    assert!(
        got[1..].iter().all(|g| g.1 == 0),
        "{:?}",
        got.iter().map(|g| g.1).collect::<Vec<_>>()
    );
    // Each core reads its partitions within the whole budget: at most two reads each (its
    // first partition's, and one more whose first batch goes past the budget), not eight.
    assert!(
        reads <= 4.0,
        "{reads} partition reads for a fetch that answers from one"
    );

    // Going on as a consumer does (each partition from where it stopped, the ones that
    // answered moved to the end), every record comes once, in order.
    let mut offsets = vec![0i64; PARTITIONS as usize];
    let mut order = order;
    let mut seen = vec![0usize; PARTITIONS as usize];
    for _ in 0..100 {
        if offsets.iter().all(|&o| o == (BATCHES * RECORDS) as i64) {
            break;
        }
        let r = expect!(
            call(
                &mut conn,
                ApiKey::Fetch,
                12,
                fetch(topic, &offsets, &order, max_bytes)
            ),
            Fetch
        );
        let mut moved = Vec::new();
        for (p, bytes, batches) in answered(&r) {
            assert!(bytes <= max_bytes as usize || batches.len() == 1);
            for bt in &batches {
                let base = i64::from_be_bytes(bt[..8].try_into().unwrap());
                assert_eq!(
                    base, offsets[p as usize],
                    "partition {p} skipped or repeated"
                );
                offsets[p as usize] += RECORDS as i64;
                seen[p as usize] += 1;
            }
            if !batches.is_empty() {
                moved.push(p);
            }
        }
        order.retain(|p| !moved.contains(p));
        order.extend(moved);
    }
    assert_eq!(seen, vec![BATCHES; PARTITIONS as usize]);
}
