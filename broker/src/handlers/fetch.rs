//! Fetch: reads each partition on its owning core, returns whole batches as stored, and long
//! polls: when fewer than `min_bytes` are ready it waits for an append to any of the requested
//! partitions (woken by the append, not by polling) or for `max_wait_ms`.
//!
//! Fetch sessions (KIP-227) are not kept: every answer has session id 0, which tells the client
//! that no session was created, so it keeps sending full fetch requests.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use glommio::channels::local_channel;
use sluice_net::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use sluice_net::messages::{FetchRequest, FetchResponse};
use sluice_net::{BrokerId, Records, TopicName};
use sluice_shard::ReadResult;

use crate::core::Core;
use crate::errors::code;
use crate::partitions::{self, Addressed, PartitionOp, PartitionOpResult};

/// One requested partition that exists here.
struct Wanted {
    topic_index: usize,
    partition_index: usize,
    topic: String,
    partition: i32,
    offset: i64,
    max_bytes: usize,
}

pub async fn handle(core: &Rc<Core>, request: FetchRequest, version: i16) -> FetchResponse {
    let table = core.topics();
    let mut responses: Vec<FetchableTopicResponse> = Vec::with_capacity(request.topics.len());
    let mut wanted = Vec::new();
    for (ti, t) in request.topics.iter().enumerate() {
        let meta = if version >= 13 {
            table.by_id(&t.topic_id.0)
        } else {
            table.topics.get(t.topic.as_str())
        };
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for (pi, p) in t.partitions.iter().enumerate() {
            let mut data = empty_partition(p.partition);
            match meta {
                Some(m) if p.partition >= 0 && p.partition < m.partitions => wanted.push(Wanted {
                    topic_index: ti,
                    partition_index: pi,
                    topic: m.name.clone(),
                    partition: p.partition,
                    offset: p.fetch_offset,
                    max_bytes: usize::try_from(p.partition_max_bytes.max(0)).unwrap_or(0),
                }),
                _ => {
                    data.error_code = if version >= 13 {
                        code::UNKNOWN_TOPIC_ID
                    } else {
                        code::UNKNOWN_TOPIC_OR_PARTITION
                    }
                }
            }
            partitions.push(data);
        }
        responses.push(FetchableTopicResponse {
            topic: if version >= 13 {
                TopicName::default()
            } else {
                t.topic.clone()
            },
            topic_id: t.topic_id,
            partitions,
            ..Default::default()
        });
    }

    let min_bytes = usize::try_from(request.min_bytes.max(0)).unwrap_or(0);
    let max_bytes = usize::try_from(request.max_bytes.max(0)).unwrap_or(0);
    let deadline = Instant::now()
        + Duration::from_millis(u64::try_from(request.max_wait_ms.max(0)).unwrap_or(0));
    loop {
        let reads = read_all(core, &wanted).await;
        let ready: usize = reads
            .iter()
            .map(|r| {
                r.as_ref()
                    .map_or(0, |rr| rr.batches.iter().map(Bytes::len).sum())
            })
            .sum();
        let errors = reads.iter().any(|r| r.is_err());
        let now = Instant::now();
        if ready >= min_bytes
            || errors
            || now >= deadline
            || wanted.is_empty()
            || core.stop.is_stopping()
        {
            fill(core, &mut responses, &wanted, reads, max_bytes);
            break;
        }
        wait_any(core, &wanted, &reads, deadline - now).await;
    }
    FetchResponse {
        error_code: code::NONE,
        session_id: 0,
        responses,
        ..Default::default()
    }
}

fn empty_partition(partition: i32) -> PartitionData {
    PartitionData {
        partition_index: partition,
        error_code: code::NONE,
        high_watermark: -1,
        last_stable_offset: -1,
        log_start_offset: -1,
        aborted_transactions: None,
        preferred_read_replica: BrokerId(-1),
        // librdkafka rejects a null records field: empty means zero bytes.
        records: Some(Records::new()),
        ..Default::default()
    }
}

async fn read_all(
    core: &Rc<Core>,
    wanted: &[Wanted],
) -> Vec<Result<ReadResult, (i16, ReadResult)>> {
    let ops = wanted
        .iter()
        .map(|w| Addressed {
            topic: w.topic.clone(),
            partition: w.partition,
            op: PartitionOp::Read {
                offset: w.offset,
                max_bytes: w.max_bytes,
            },
        })
        .collect();
    let mut out = Vec::with_capacity(wanted.len());
    let results = partitions::run(core, ops).await;
    // Offsets for out-of-range answers, which must carry the log start and high watermark.
    let mut need_offsets = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        match r {
            PartitionOpResult::Read(Ok(rr)) => out.push(Ok(rr)),
            PartitionOpResult::Read(Err(e)) => {
                if e.code == code::OFFSET_OUT_OF_RANGE {
                    need_offsets.push(i);
                }
                out.push(Err((e.code, ReadResult::default())));
            }
            other => unreachable!("read answered with {other:?}"),
        }
    }
    if !need_offsets.is_empty() {
        let ops = need_offsets
            .iter()
            .map(|&i| Addressed {
                topic: wanted[i].topic.clone(),
                partition: wanted[i].partition,
                op: PartitionOp::Offsets,
            })
            .collect();
        for (&i, r) in need_offsets.iter().zip(partitions::run(core, ops).await) {
            if let (PartitionOpResult::Offsets(Ok(o)), Err((_, rr))) = (r, &mut out[i]) {
                rr.high_watermark = o.high_watermark;
                rr.log_start_offset = o.log_start_offset;
                rr.log_end_offset = o.log_end_offset;
            }
        }
    }
    out
}

/// Waits until any wanted partition's high watermark passes what was read, or `timeout`.
async fn wait_any(
    core: &Rc<Core>,
    wanted: &[Wanted],
    reads: &[Result<ReadResult, (i16, ReadResult)>],
    timeout: Duration,
) {
    let (tx, rx) = local_channel::new_bounded::<()>(wanted.len().max(1));
    let tx = Rc::new(tx);
    for (w, r) in wanted.iter().zip(reads) {
        // `wait_for_append(x)` returns once offset x exists (high watermark > x): wait for the
        // first offset this fetch has not seen. (Waiting for one below it returned at once, so
        // an idle long poll re-read its partitions in a loop until max_wait_ms: a busy core.)
        let after = match r {
            Ok(rr) => rr.high_watermark.max(w.offset),
            Err(_) => continue,
        };
        let op = Addressed {
            topic: w.topic.clone(),
            partition: w.partition,
            op: PartitionOp::WaitForAppend { after, timeout },
        };
        let core = Rc::clone(core);
        let tx = Rc::clone(&tx);
        glommio::spawn_local(async move {
            partitions::run(&core, vec![op]).await;
            let _ = tx.try_send(());
        })
        .detach();
    }
    drop(tx);
    futures_lite::future::or(
        futures_lite::future::or(
            async {
                let _ = rx.recv().await;
            },
            glommio::timer::sleep(timeout),
        ),
        core.stop.stopped(),
    )
    .await;
}

/// Puts read batches into the response, stopping at the request's `max_bytes` (but always
/// including the first batch found, as Kafka does, so a large batch cannot stall a consumer).
fn fill(
    core: &Core,
    responses: &mut [FetchableTopicResponse],
    wanted: &[Wanted],
    reads: Vec<Result<ReadResult, (i16, ReadResult)>>,
    max_bytes: usize,
) {
    let mut total = 0usize;
    for (w, r) in wanted.iter().zip(reads) {
        let data = &mut responses[w.topic_index].partitions[w.partition_index];
        let (rr, error) = match r {
            Ok(rr) => (rr, code::NONE),
            Err((c, rr)) => (rr, c),
        };
        data.error_code = error;
        data.high_watermark = rr.high_watermark;
        data.last_stable_offset = rr.high_watermark;
        data.log_start_offset = rr.log_start_offset;
        let mut chosen = Vec::new();
        for b in rr.batches {
            if total > 0 && total + b.len() > max_bytes {
                break;
            }
            total += b.len();
            chosen.push(b);
        }
        if !chosen.is_empty() {
            let bytes: usize = chosen.iter().map(Bytes::len).sum();
            let records: u64 = chosen.iter().map(|b| record_count(b)).sum();
            core.metrics.fetched(&w.topic, bytes as u64, records);
        }
        data.records = Some(chosen.into_iter().collect());
    }
}

/// Records in a stored batch (its header's count; 0 for a short buffer).
fn record_count(batch: &[u8]) -> u64 {
    batch.get(57..61).map_or(0, |c| {
        u64::try_from(i32::from_be_bytes([c[0], c[1], c[2], c[3]])).unwrap_or(0)
    })
}
