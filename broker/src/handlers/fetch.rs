//! Fetch: reads each partition on its owning core, returns whole batches as stored, and long
//! polls: when fewer than `min_bytes` are ready it waits for an append to any of the requested
//! partitions (woken by the append, not by polling) or for `max_wait_ms`.
//!
//! Fetch sessions (KIP-227) are not kept: every answer has session id 0, which tells the client
//! that no session was created, so it keeps sending full fetch requests.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use glommio::channels::local_channel::{self, LocalSender};
use sluice_net::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use sluice_net::messages::{FetchRequest, FetchResponse};
use sluice_net::{BrokerId, Records, TopicName};
use sluice_shard::ReadResult;

use crate::core::Core;
use crate::errors::{self, code};
use crate::messages::{CoreReply, CoreRequest, FetchOnCore, FetchRead, PartError, WaitId};

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
            table.topics().get(t.topic.as_str())
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
    let max_wait = Duration::from_millis(u64::try_from(request.max_wait_ms.max(0)).unwrap_or(0));
    let reads = long_poll(core, &wanted, min_bytes, max_wait).await;
    fill(core, &mut responses, &wanted, reads, max_bytes);
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

/// The reads of one owning core.
struct OnCore {
    owner: usize,
    /// Indexes into `wanted`.
    slots: Vec<usize>,
    /// The wait parked for this core's reads right now, if any.
    parked: Option<WaitId>,
}

/// Reads every wanted partition, one read-or-wait per owning core, until the reads found
/// `min_bytes` (or an error), `max_wait` passes, or the broker stops. A core answers when its
/// reads find data or its wait ends; a core that answered too little is asked again (it waits
/// for an append past what it read), and when the fetch is done the waits still parked are
/// cancelled, so nothing stays behind. Results in the order of `wanted`.
async fn long_poll(
    core: &Rc<Core>,
    wanted: &[Wanted],
    min_bytes: usize,
    max_wait: Duration,
) -> Vec<Result<ReadResult, PartError>> {
    let deadline = Instant::now() + max_wait;
    let wait = min_bytes > 0 && !max_wait.is_zero();
    let mut cores: Vec<OnCore> = Vec::new();
    let mut results: Vec<Option<Result<ReadResult, PartError>>> =
        wanted.iter().map(|_| None).collect();
    let image = core.topics();
    for (i, w) in wanted.iter().enumerate() {
        let Some(owner) = image.core_for(&w.topic, w.partition) else {
            results[i] = Some(Err(PartError::NotHosted));
            continue;
        };
        match cores.iter_mut().find(|c| c.owner == owner) {
            Some(c) => c.slots.push(i),
            None => cores.push(OnCore {
                owner,
                slots: vec![i],
                parked: None,
            }),
        }
    }
    let (tx, rx) = local_channel::new_unbounded();
    let tx = Rc::new(tx);
    let mut guard = CancelOnDrop {
        core: Rc::clone(core),
        pending: Vec::new(),
        tasks: Vec::new(),
    };
    for (g, on) in cores.iter_mut().enumerate() {
        ask(
            core, wanted, on, g, min_bytes, wait, deadline, &tx, &mut guard,
        );
    }
    let mut done = false;
    while cores.iter().any(|c| c.parked.is_some()) {
        let Some((g, answer)) = rx.recv().await else {
            break;
        };
        let group: &mut OnCore = &mut cores[g];
        if let Some(id) = group.parked.take() {
            guard.pending.retain(|&(_, p)| p != id);
        }
        for (&slot, r) in group.slots.iter().zip(answer) {
            results[slot] = Some(r);
        }
        if !done {
            done = enough(&results, min_bytes)
                || Instant::now() >= deadline
                || core.stop.is_stopping();
            if done {
                // Ask the cores still waiting to answer now, with what they have.
                for c in cores.iter().filter(|c| c.parked.is_some()) {
                    cancel(core, c.owner, c.parked);
                }
            } else {
                ask(
                    core,
                    wanted,
                    &mut cores[g],
                    g,
                    min_bytes,
                    wait,
                    deadline,
                    &tx,
                    &mut guard,
                );
            }
        }
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or(Err(PartError::CoreGone(core.router.me()))))
        .collect()
}

/// Whether the reads so far end the fetch: `min_bytes` found, or an error.
fn enough(results: &[Option<Result<ReadResult, PartError>>], min_bytes: usize) -> bool {
    let mut found = 0;
    for r in results.iter().flatten() {
        match r {
            Ok(rr) => found += rr.batches.iter().map(Bytes::len).sum::<usize>(),
            Err(_) => return true,
        }
    }
    found >= min_bytes
}

type Answer = (usize, Vec<Result<ReadResult, PartError>>);

/// Sends one core its reads (with a wait until `deadline` when `wait`); the answer arrives on
/// `tx` tagged with the core's index `g` in the fetch.
#[allow(clippy::too_many_arguments)]
fn ask(
    core: &Rc<Core>,
    wanted: &[Wanted],
    on: &mut OnCore,
    g: usize,
    min_bytes: usize,
    wait: bool,
    deadline: Instant,
    tx: &Rc<LocalSender<Answer>>,
    guard: &mut CancelOnDrop,
) {
    let id = WaitId {
        core: core.router.me(),
        serial: core.next_wait_serial(),
    };
    let now = Instant::now();
    let request = FetchOnCore {
        reads: on
            .slots
            .iter()
            .map(|&i| FetchRead {
                topic: wanted[i].topic.clone(),
                partition: wanted[i].partition,
                offset: wanted[i].offset,
                max_bytes: wanted[i].max_bytes,
            })
            .collect(),
        min_bytes,
        wait: (wait && now < deadline).then(|| (id, deadline - now)),
    };
    on.parked = Some(id);
    let n = request.reads.len();
    let (router, tx, owner) = (Rc::clone(&core.router), Rc::clone(tx), on.owner);
    let task = glommio::spawn_local(async move {
        let answer = match router.call(owner, CoreRequest::Fetch(request)).await {
            Ok(CoreReply::Fetched(reads)) => reads,
            _ => (0..n).map(|_| Err(PartError::CoreGone(owner))).collect(),
        };
        let _ = tx.try_send((g, answer));
    });
    guard.pending.push((owner, id));
    guard.tasks.push(task);
}

/// Ends a parked wait on `owner` (a detached one-message task: nothing waits for it).
fn cancel(core: &Rc<Core>, owner: usize, id: Option<WaitId>) {
    let Some(id) = id else { return };
    let router = Rc::clone(&core.router);
    glommio::spawn_local(async move {
        let _ = router.call(owner, CoreRequest::CancelWait(id)).await;
    })
    .detach();
}

/// The read-or-wait tasks of a fetch and the waits not answered yet: when the fetch is dropped
/// before they answer (its connection was cancelled), the tasks are cancelled with it and the
/// waits they parked on other cores are cancelled too.
struct CancelOnDrop {
    core: Rc<Core>,
    pending: Vec<(usize, WaitId)>,
    tasks: Vec<glommio::Task<()>>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        for (owner, id) in self.pending.drain(..) {
            cancel(&self.core, owner, Some(id));
        }
    }
}

/// Puts read batches into the response, stopping at the request's `max_bytes` (but always
/// including the first batch found, as Kafka does, so a large batch cannot stall a consumer).
fn fill(
    core: &Core,
    responses: &mut [FetchableTopicResponse],
    wanted: &[Wanted],
    reads: Vec<Result<ReadResult, PartError>>,
    max_bytes: usize,
) {
    let mut total = 0usize;
    for (w, r) in wanted.iter().zip(reads) {
        let data = &mut responses[w.topic_index].partitions[w.partition_index];
        let (rr, error) = match r {
            Ok(rr) => (rr, code::NONE),
            Err(e) => failed_read(e),
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

/// What a fetch answers for a failed read: the code, and for an out-of-range offset the
/// partition's offsets (other errors answer zeroes).
fn failed_read(e: PartError) -> (ReadResult, i16) {
    let answer = errors::part(e);
    let mut rr = ReadResult::default();
    if answer.code == code::OFFSET_OUT_OF_RANGE
        && let Some(o) = answer.offsets
    {
        rr.high_watermark = o.high_watermark;
        rr.log_start_offset = o.log_start_offset;
        rr.log_end_offset = o.log_end_offset;
    }
    (rr, answer.code)
}

/// Records in a stored batch (its header's count; 0 for a short buffer).
fn record_count(batch: &[u8]) -> u64 {
    batch.get(57..61).map_or(0, |c| {
        u64::try_from(i32::from_be_bytes([c[0], c[1], c[2], c[3]])).unwrap_or(0)
    })
}
