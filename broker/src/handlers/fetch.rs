//! Fetch: reads each partition on its owning core, returns whole batches as stored, and long
//! polls: when fewer than `min_bytes` are ready it waits for an append to any of the requested
//! partitions (woken by the append, not by polling) or for `max_wait_ms`.
//!
//! Fetch sessions (KIP-227, `fetch_sessions.rs`): epoch -1 answers the requested partitions
//! without a session; epoch 0 answers them and opens a session of them (its id in the answer, or
//! 0 when the core's cache has no room); an incremental fetch reads every partition of its
//! session, after the request's additions, updates and forgotten partitions, and answers only
//! the partitions with news. A session error is a top-level error code with no partition, sent
//! at once. The long poll is the same in every case: an incremental fetch with nothing new waits
//! for an append to any partition of its session.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use glommio::channels::local_channel::{self, LocalSender};
use sluice_net::messages::fetch_response::{self, FetchableTopicResponse, PartitionData};
use sluice_net::messages::{FetchRequest, FetchResponse};
use sluice_net::{BrokerId, Records, TopicName, Uuid};
use sluice_shard::ReadResult;

use crate::core::Core;
use crate::errors::{self, code};
use crate::fetch_sessions::{
    Answered, CachedPartition, FetchContext, INVALID_SESSION_ID, PartitionKey, Requested,
    SessionRequest, TopicKey,
};
use crate::image::TopicImage;
use crate::messages::{
    CoreReply, CoreRequest, FetchOnCore, FetchRead, PartError, ReplicaRead, WaitId,
};

/// One partition of the answer, in answer order.
struct Slot {
    key: PartitionKey,
    requested: Requested,
    data: PartitionData,
}

/// One partition to read, that exists here.
struct Wanted {
    /// Index into the answer's slots.
    slot: usize,
    topic: String,
    partition: i32,
    offset: i64,
    max_bytes: usize,
    /// A follower's read (Fetch with a replica id).
    replica: Option<ReplicaRead>,
    /// A consumer's read_committed read: up to the last stable offset, with the aborted
    /// transactions it overlaps.
    committed: bool,
}

/// The fetching follower's broker id (ReplicaState from v15, `replica_id` before), or `None`
/// for a consumer.
fn replica_of(request: &FetchRequest, version: i16) -> Option<i32> {
    let id = if version >= 15 {
        request.replica_state.replica_id.0
    } else {
        request.replica_id.0
    };
    (id >= 0).then_some(id)
}

/// A follower's Fetch: each partition's leader epoch is checked against the image as Kafka's
/// leader does (FENCED_LEADER_EPOCH for an older one, UNKNOWN_LEADER_EPOCH for a newer one),
/// and the reads that pass carry the follower's id and last fetched epoch.
fn follower_reads(
    image: &TopicImage,
    request: &FetchRequest,
    replica: i32,
    slots: &mut [Slot],
    wanted: &mut Vec<Wanted>,
) {
    let mut epochs: HashMap<(String, i32), (i32, i32, i64)> = HashMap::new();
    for t in &request.topics {
        let name = match image.by_id(&t.topic_id.0) {
            Some(m) => m.name.clone(),
            None => t.topic.to_string(),
        };
        for p in &t.partitions {
            let e = (
                p.current_leader_epoch,
                p.last_fetched_epoch,
                p.log_start_offset,
            );
            epochs.insert((name.clone(), p.partition), e);
        }
    }
    wanted.retain_mut(|w| {
        let (current, last_fetched, log_start) = epochs
            .get(&(w.topic.clone(), w.partition))
            .copied()
            .unwrap_or((-1, -1, -1));
        let leader_epoch = image
            .partition(&w.topic, w.partition)
            .map_or(-1, |s| s.leader_epoch);
        if let Some(error) = errors::stale_epoch(current, leader_epoch) {
            slots[w.slot].data.error_code = error;
            return false;
        }
        w.replica = Some(ReplicaRead {
            replica,
            broker_epoch: request.replica_state.replica_epoch,
            last_fetched_epoch: last_fetched,
            log_start_offset: log_start,
        });
        true
    });
}

pub async fn handle(core: &Rc<Core>, request: FetchRequest, version: i16) -> FetchResponse {
    let uses_topic_ids = version >= 13;
    let requested = requested(&request, uses_topic_ids);
    let forgotten = forgotten(&request, uses_topic_ids);
    let context = core.fetch_sessions.borrow_mut().new_context(
        crate::registry::now_ms(),
        &SessionRequest {
            session_id: request.session_id,
            epoch: request.session_epoch,
            uses_topic_ids,
            requested: &requested,
            forgotten: &forgotten,
        },
    );
    let list = match &context {
        FetchContext::Error(error) => return session_error(*error, INVALID_SESSION_ID),
        FetchContext::Sessionless | FetchContext::Full => requested,
        FetchContext::Incremental { session, .. } => session
            .borrow()
            .partitions()
            .into_iter()
            .map(|(key, p)| {
                let requested = Requested {
                    fetch_offset: p.fetch_offset,
                    max_bytes: p.max_bytes,
                };
                (key, requested)
            })
            .collect(),
    };
    let image = core.topics();
    let (mut slots, mut wanted) = resolve(&image, list, uses_topic_ids);
    if request.isolation_level == 1 {
        for w in wanted.iter_mut() {
            w.committed = true;
        }
    }
    let replica = replica_of(&request, version);
    if let Some(replica) = replica {
        follower_reads(&image, &request, replica, &mut slots, &mut wanted);
    }
    let min_bytes = usize::try_from(request.min_bytes.max(0)).unwrap_or(0);
    let max_bytes = usize::try_from(request.max_bytes.max(0)).unwrap_or(0);
    let max_wait = Duration::from_millis(u64::try_from(request.max_wait_ms.max(0)).unwrap_or(0));
    let bytes = ByteBounds {
        min: min_bytes,
        max: max_bytes,
    };
    let reads = long_poll(core, &wanted, bytes, max_wait).await;
    fill(core, &mut slots, &wanted, reads, max_bytes);
    answer(core, context, slots, uses_topic_ids, replica.is_some())
}

/// The request's partitions in order, each once (a repeated partition keeps its first place and
/// takes the last values, as Kafka's map of them does).
fn requested(request: &FetchRequest, uses_topic_ids: bool) -> Vec<(PartitionKey, Requested)> {
    let mut out: Vec<(PartitionKey, Requested)> = Vec::new();
    let mut seen: HashMap<PartitionKey, usize> = HashMap::new();
    for t in &request.topics {
        let topic = topic_key(uses_topic_ids, &t.topic_id, t.topic.as_str());
        for p in &t.partitions {
            let key = PartitionKey {
                topic: topic.clone(),
                partition: p.partition,
            };
            let want = Requested {
                fetch_offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes,
            };
            match seen.get(&key) {
                Some(&i) => out[i].1 = want,
                None => {
                    seen.insert(key.clone(), out.len());
                    out.push((key, want));
                }
            }
        }
    }
    out
}

/// The partitions the request drops from its session (`forgotten_topics_data`, Fetch v7+).
fn forgotten(request: &FetchRequest, uses_topic_ids: bool) -> Vec<PartitionKey> {
    request
        .forgotten_topics_data
        .iter()
        .flat_map(|t| {
            let topic = topic_key(uses_topic_ids, &t.topic_id, t.topic.as_str());
            t.partitions.iter().map(move |&partition| PartitionKey {
                topic: topic.clone(),
                partition,
            })
        })
        .collect()
}

fn topic_key(uses_topic_ids: bool, id: &Uuid, name: &str) -> TopicKey {
    if uses_topic_ids {
        TopicKey::Id(id.0)
    } else {
        TopicKey::Name(name.to_owned())
    }
}

/// The answer's slots for `list`, and the reads of the partitions that exist here. A topic
/// unknown here answers UNKNOWN_TOPIC_ID by id (v13+), UNKNOWN_TOPIC_OR_PARTITION by name; a
/// partition a known topic does not have answers UNKNOWN_TOPIC_OR_PARTITION, as in Kafka.
fn resolve(
    image: &TopicImage,
    list: Vec<(PartitionKey, Requested)>,
    uses_topic_ids: bool,
) -> (Vec<Slot>, Vec<Wanted>) {
    let mut slots = Vec::with_capacity(list.len());
    let mut wanted = Vec::with_capacity(list.len());
    for (key, requested) in list {
        let meta = match &key.topic {
            TopicKey::Id(id) => image.by_id(id),
            TopicKey::Name(name) => image.topics().get(name.as_str()),
        };
        let mut data = empty_partition(key.partition);
        match meta {
            Some(m) if key.partition >= 0 && key.partition < m.partitions => {
                wanted.push(Wanted {
                    slot: slots.len(),
                    topic: m.name.clone(),
                    partition: key.partition,
                    offset: requested.fetch_offset,
                    max_bytes: usize::try_from(requested.max_bytes.max(0)).unwrap_or(0),
                    replica: None,
                    committed: false,
                });
            }
            Some(_) => data.error_code = code::UNKNOWN_TOPIC_OR_PARTITION,
            None if uses_topic_ids => data.error_code = code::UNKNOWN_TOPIC_ID,
            None => data.error_code = code::UNKNOWN_TOPIC_OR_PARTITION,
        }
        slots.push(Slot {
            key,
            requested,
            data,
        });
    }
    (slots, wanted)
}

/// The response for a fetch whose reads are in `slots`, by its session context: every slot
/// without a session or when opening one, only the slots with news for an incremental fetch.
fn answer(
    core: &Core,
    context: FetchContext,
    slots: Vec<Slot>,
    uses_topic_ids: bool,
    privileged: bool,
) -> FetchResponse {
    let (session_id, slots) = match context {
        FetchContext::Error(error) => return session_error(error, INVALID_SESSION_ID),
        FetchContext::Sessionless => (INVALID_SESSION_ID, slots),
        FetchContext::Full => {
            let cached = slots
                .iter()
                .map(|s| {
                    (
                        s.key.clone(),
                        CachedPartition::new(s.requested, &answered(s)),
                    )
                })
                .collect();
            // Kafka privileges a follower's session.
            let id = core.fetch_sessions.borrow_mut().maybe_create(
                crate::registry::now_ms(),
                privileged,
                uses_topic_ids,
                cached,
            );
            (id, slots)
        }
        FetchContext::Incremental { session, epoch } => {
            let mut session = session.borrow_mut();
            if session.epoch() != epoch {
                // Another fetch of this session came in while this one waited.
                return session_error(code::INVALID_FETCH_SESSION_EPOCH, session.id);
            }
            let news = slots
                .into_iter()
                .filter(|s| session.answer(&s.key, &answered(s)))
                .collect();
            (session.id, news)
        }
    };
    let mut slots = slots;
    let node_endpoints = name_leaders(core, &mut slots);
    FetchResponse {
        error_code: code::NONE,
        session_id,
        responses: by_topic(slots, uses_topic_ids),
        node_endpoints,
        ..Default::default()
    }
}

/// KIP-951: each NOT_LEADER_OR_FOLLOWER partition gets the current leader and epoch, and the
/// answer the endpoints of the leaders named.
fn name_leaders(core: &Core, slots: &mut [Slot]) -> Vec<fetch_response::NodeEndpoint> {
    use sluice_net::messages::fetch_response::LeaderIdAndEpoch;
    let image = core.topics();
    let mut leaders = super::leaders::Leaders::new(&image);
    for s in slots.iter_mut() {
        if s.data.error_code != code::NOT_LEADER_OR_FOLLOWER {
            continue;
        }
        let name = match &s.key.topic {
            TopicKey::Name(name) => name.clone(),
            TopicKey::Id(id) => leaders.name_of(id).unwrap_or_default(),
        };
        if let Some((leader, epoch)) = leaders.of(&name, s.key.partition) {
            s.data.current_leader = LeaderIdAndEpoch {
                leader_id: BrokerId(leader),
                leader_epoch: epoch,
                ..Default::default()
            };
        }
    }
    leaders
        .endpoints(core)
        .into_iter()
        .map(|b| fetch_response::NodeEndpoint {
            node_id: BrokerId(b.id),
            host: b.host.into(),
            port: b.port,
            rack: b.rack.map(Into::into),
            ..Default::default()
        })
        .collect()
}

/// What a slot's answer says, as a session compares it.
fn answered(s: &Slot) -> Answered {
    Answered {
        has_records: s.data.records.as_ref().is_some_and(|r| !r.is_empty()),
        high_watermark: s.data.high_watermark,
        log_start_offset: s.data.log_start_offset,
        error_code: s.data.error_code,
        preferred_read_replica: s.data.preferred_read_replica.0,
    }
}

/// A top-level session error: no partition at all, as Kafka answers it.
fn session_error(error: i16, session_id: i32) -> FetchResponse {
    FetchResponse {
        error_code: error,
        session_id,
        ..Default::default()
    }
}

/// Slots grouped into topics: consecutive slots of one topic share an entry, as Kafka builds
/// its response from its ordered map of partitions.
fn by_topic(slots: Vec<Slot>, uses_topic_ids: bool) -> Vec<FetchableTopicResponse> {
    let mut out: Vec<FetchableTopicResponse> = Vec::new();
    let mut last: Option<TopicKey> = None;
    for s in slots {
        if last.as_ref() != Some(&s.key.topic) {
            let (topic, topic_id) = match &s.key.topic {
                TopicKey::Id(id) => (TopicName::default(), Uuid(*id)),
                TopicKey::Name(name) => (TopicName::from(name.as_str()), Uuid::default()),
            };
            debug_assert_eq!(uses_topic_ids, matches!(s.key.topic, TopicKey::Id(_)));
            out.push(FetchableTopicResponse {
                topic,
                topic_id,
                ..Default::default()
            });
            last = Some(s.key.topic.clone());
        }
        if let Some(t) = out.last_mut() {
            t.partitions.push(s.data);
        }
    }
    out
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
    bytes: ByteBounds,
    max_wait: Duration,
) -> Vec<Result<ReadResult, PartError>> {
    let deadline = Instant::now() + max_wait;
    let wait = bytes.min > 0 && !max_wait.is_zero();
    let mut cores: Vec<OnCore> = Vec::new();
    let mut results: Vec<Option<Result<ReadResult, PartError>>> =
        wanted.iter().map(|_| None).collect();
    let image = core.topics();
    for (i, w) in wanted.iter().enumerate() {
        let Some(owner) = image.core_for(&w.topic, w.partition) else {
            results[i] = Some(Err(image.not_served(&w.topic, w.partition)));
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
        ask(core, wanted, on, g, bytes, wait, deadline, &tx, &mut guard);
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
            done = enough(&results, bytes.min)
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
                    bytes,
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

/// A fetch's `min_bytes` and `max_bytes`.
#[derive(Clone, Copy)]
struct ByteBounds {
    min: usize,
    max: usize,
}

/// Sends one core its reads (with a wait until `deadline` when `wait`); the answer arrives on
/// `tx` tagged with the core's index `g` in the fetch.
#[allow(clippy::too_many_arguments)]
fn ask(
    core: &Rc<Core>,
    wanted: &[Wanted],
    on: &mut OnCore,
    g: usize,
    bytes: ByteBounds,
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
                replica: wanted[i].replica,
                committed: wanted[i].committed && wanted[i].replica.is_none(),
            })
            .collect(),
        min_bytes: bytes.min,
        max_bytes: bytes.max,
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

/// Puts read batches into the slots, stopping at the request's `max_bytes` (but always
/// including the first batch found, as Kafka does, so a large batch cannot stall a consumer).
fn fill(
    core: &Core,
    slots: &mut [Slot],
    wanted: &[Wanted],
    reads: Vec<Result<ReadResult, PartError>>,
    max_bytes: usize,
) {
    let mut total = 0usize;
    for (w, r) in wanted.iter().zip(reads) {
        let data = &mut slots[w.slot].data;
        let (rr, error) = match r {
            Ok(rr) => (rr, code::NONE),
            Err(PartError::Diverging {
                epoch,
                end_offset,
                offsets,
            }) => {
                data.diverging_epoch = fetch_response::EpochEndOffset {
                    epoch,
                    end_offset,
                    ..Default::default()
                };
                let rr = ReadResult {
                    high_watermark: offsets.high_watermark,
                    log_start_offset: offsets.log_start_offset,
                    log_end_offset: offsets.log_end_offset,
                    ..ReadResult::default()
                };
                (rr, code::NONE)
            }
            Err(e) => failed_read(e),
        };
        data.error_code = error;
        data.high_watermark = rr.high_watermark;
        data.last_stable_offset = rr.last_stable_offset;
        if w.committed && w.replica.is_none() {
            data.aborted_transactions = Some(
                rr.aborted
                    .iter()
                    .map(|a| fetch_response::AbortedTransaction {
                        producer_id: a.producer_id.into(),
                        first_offset: a.first_offset,
                        ..Default::default()
                    })
                    .collect(),
            );
        }
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
