//! The follower's side of replication on one core (issue 21): for every partition this core
//! hosts a replica of and another broker leads, a Kafka Fetch with this broker's id as the
//! replica, one connection and one request in flight per (core, leader broker). Each answer's
//! batches are appended as the leader wrote them (`Partition::append_replicated`, synced
//! before the next Fetch reports the new log end, so the leader counts only what is on this
//! disk); a `DivergingEpoch` truncates the log where it left the leader's, as Kafka's fetcher
//! does; the leader's high watermark bounds this replica's (`replication.rs`), and its log
//! start moves this replica's forward. A replica whose log end the leader no longer has
//! (OFFSET_OUT_OF_RANGE below the leader's log start) starts empty at the leader's log start.
//!
//! [`run`] watches the core's image and starts a session per leader; a session ends when
//! this core follows nothing of that leader any more. Errors (no connection, a leader that
//! moved, an epoch not known yet) back off briefly and retry with the newest image.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::rc::Rc;
use std::time::Duration;

use glommio::net::TcpStream;
use sluice_net::messages::fetch_request::{FetchPartition, FetchTopic, ReplicaState};
use sluice_net::messages::fetch_response::PartitionData;
use sluice_net::messages::{FetchRequest, FetchResponse};
use sluice_net::{BrokerId, Request, Response, Uuid};
use sluice_shard::DmaStorage;

use crate::core::Core;
use crate::errors::code;
use crate::image::TopicImage;
use crate::replication::epoch_end;

type Partition = sluice_shard::Partition<DmaStorage>;

/// The Fetch version followers send (topic ids, ReplicaState).
const FETCH_VERSION: i16 = 17;
/// How long the leader may hold a Fetch with nothing new (Kafka's `replica.fetch.wait.max.ms`).
const MAX_WAIT_MS: i32 = 500;
/// Bytes per answer, and per partition (Kafka's `replica.fetch.response.max.bytes` and
/// `replica.fetch.max.bytes`, within the 16 MiB the client accepts).
const RESPONSE_BYTES_MAX: i32 = 10 * 1024 * 1024;
const PARTITION_BYTES_MAX: i32 = 1024 * 1024;
/// Pause after an error before the next try (Kafka's `replica.fetch.backoff.ms`).
const BACKOFF: Duration = Duration::from_millis(100);
/// How often the image is checked for leaders to start fetching from.
const WATCH_PERIOD: Duration = Duration::from_millis(100);

/// A followed partition: its topic, id, number and the leader epoch the image gives it.
struct Followed {
    topic: String,
    topic_id: [u8; 16],
    partition: i32,
    leader_epoch: i32,
}

/// Starts a fetch session for each leader this core follows a partition of, until the
/// broker stops.
pub async fn run(core: Rc<Core>) {
    let active: Rc<RefCell<HashSet<i32>>> = Rc::new(RefCell::new(HashSet::new()));
    while !core.stop.is_stopping() {
        let image = core.topics();
        for leader in followed(&image, &core).into_keys() {
            if active.borrow_mut().insert(leader) {
                let (core, active) = (Rc::clone(&core), Rc::clone(&active));
                glommio::spawn_local(async move {
                    session(&core, leader).await;
                    active.borrow_mut().remove(&leader);
                })
                .detach();
            }
        }
        futures_lite::future::or(glommio::timer::sleep(WATCH_PERIOD), core.stop.stopped()).await;
    }
}

/// The partitions this core follows, by leader.
fn followed(image: &TopicImage, core: &Core) -> BTreeMap<i32, Vec<Followed>> {
    let node = core.config.node_id;
    let mut out: BTreeMap<i32, Vec<Followed>> = BTreeMap::new();
    for t in image.topics().values() {
        for p in 0..t.partitions {
            let Some(state) = image.partition(&t.name, p) else {
                continue;
            };
            if state.leader < 0
                || state.leader == node
                || image.replica_core_for(&t.name, p) != Some(core.id)
            {
                continue;
            }
            out.entry(state.leader).or_default().push(Followed {
                topic: t.name.clone(),
                topic_id: t.id,
                partition: p,
                leader_epoch: state.leader_epoch,
            });
        }
    }
    out
}

/// Fetches from `leader` for as long as this core follows a partition it leads.
async fn session(core: &Rc<Core>, leader: i32) {
    let mut stream: Option<TcpStream> = None;
    let mut correlation = 0i32;
    let client_id = format!("sluice-replica-{}-{}", core.config.node_id, core.id);
    while !core.stop.is_stopping() {
        let image = core.topics();
        let Some(parts) = followed(&image, core).remove(&leader) else {
            return;
        };
        let endpoint = image.cluster().and_then(|c| c.live.get(&leader)).cloned();
        let Some(endpoint) = endpoint else {
            glommio::timer::sleep(BACKOFF).await;
            continue;
        };
        if stream.is_none() {
            stream = crate::controller::client::connect(&endpoint.host, endpoint.port).await;
        }
        let Some(s) = stream.as_mut() else {
            glommio::timer::sleep(BACKOFF).await;
            continue;
        };
        let request = fetch_request(core, &parts);
        correlation = correlation.wrapping_add(1);
        let timeout = Duration::from_millis(u64::from(MAX_WAIT_MS.unsigned_abs()) + 5_000);
        let answer = futures_lite::future::or(
            crate::controller::client::call(
                s,
                correlation,
                &client_id,
                FETCH_VERSION,
                &Request::Fetch(request),
                timeout,
            ),
            async {
                core.stop.stopped().await;
                Err(std::io::Error::other("stopping"))
            },
        )
        .await;
        let clean = match answer {
            Ok(Response::Fetch(r)) => apply(core, &image, &parts, r).await,
            Ok(_) | Err(_) => {
                stream = None;
                false
            }
        };
        if !clean {
            glommio::timer::sleep(BACKOFF).await;
        }
    }
}

/// This broker's epoch as the image has its registration (-1 before it does), sent in each
/// Fetch's ReplicaState so the leader can tell this replica from one before a restart
/// (KIP-903).
fn own_broker_epoch(core: &Core) -> i64 {
    let image = core.topics();
    image
        .cluster()
        .and_then(|c| c.epochs.get(&core.config.node_id).copied())
        .unwrap_or(-1)
}

/// A sessionless Fetch of `parts` from each one's log end, with its last fetched epoch.
fn fetch_request(core: &Core, parts: &[Followed]) -> FetchRequest {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for f in parts {
        let Some(p) = core.shard.partition(&f.topic, f.partition) else {
            continue;
        };
        let offsets = p.offsets();
        let fp = FetchPartition {
            partition: f.partition,
            current_leader_epoch: f.leader_epoch,
            fetch_offset: offsets.log_end_offset,
            last_fetched_epoch: p.leader_epochs().last().map_or(-1, |e| e.0),
            log_start_offset: offsets.log_start_offset,
            partition_max_bytes: PARTITION_BYTES_MAX,
            ..Default::default()
        };
        match topics.last_mut() {
            Some(t) if t.topic_id.0 == f.topic_id => t.partitions.push(fp),
            _ => topics.push(FetchTopic {
                topic_id: Uuid(f.topic_id),
                partitions: vec![fp],
                ..Default::default()
            }),
        }
    }
    FetchRequest {
        replica_id: BrokerId(-1),
        replica_state: ReplicaState {
            replica_id: BrokerId(core.config.node_id),
            replica_epoch: own_broker_epoch(core),
            ..Default::default()
        },
        max_wait_ms: MAX_WAIT_MS,
        min_bytes: 1,
        max_bytes: RESPONSE_BYTES_MAX,
        isolation_level: 0,
        session_id: 0,
        session_epoch: -1,
        topics,
        ..Default::default()
    }
}

/// Applies a Fetch answer to the followed partitions; `false` when something needs a pause
/// before the next Fetch (a top-level or partition error).
async fn apply(
    core: &Rc<Core>,
    image: &TopicImage,
    parts: &[Followed],
    response: FetchResponse,
) -> bool {
    if response.error_code != code::NONE {
        return false;
    }
    let mut clean = true;
    // A set, not a scan of `parts` per answered partition: with thousands of partitions per
    // leader the scan made each answer quadratic (most of a core at 10,000 replicas).
    let asked: HashSet<(&str, i32)> = parts
        .iter()
        .map(|f| (f.topic.as_str(), f.partition))
        .collect();
    // Each partition in a task of its own: an append waits for its fdatasync, and one
    // partition after another made a round over N partitions N syncs long (1.3 s for the
    // ~330 partitions a leader sent at once); together the syncs overlap in the ring.
    let mut applying = Vec::new();
    for t in response.responses {
        let Some(meta) = image.by_id(&t.topic_id.0) else {
            continue;
        };
        for data in t.partitions {
            if !asked.contains(&(meta.name.as_str(), data.partition_index)) {
                continue;
            }
            let Some(p) = core.shard.partition(&meta.name, data.partition_index) else {
                continue;
            };
            let core = Rc::clone(core);
            applying.push(glommio::spawn_local(async move {
                apply_partition(&core, &p, data).await
            }));
        }
    }
    for task in applying {
        clean &= task.await;
    }
    clean
}

/// One partition's answer: truncate on divergence, else append and learn the high watermark
/// and the log start.
async fn apply_partition(core: &Core, p: &Partition, data: PartitionData) -> bool {
    if data.error_code == code::OFFSET_OUT_OF_RANGE {
        return out_of_range(p, data.log_start_offset).await;
    }
    if data.error_code != code::NONE {
        tracing::debug!(
            topic = p.topic(),
            partition = p.partition(),
            code = data.error_code,
            "replica fetch refused"
        );
        return false;
    }
    let diverging = &data.diverging_epoch;
    if diverging.epoch >= 0 || diverging.end_offset >= 0 {
        // Kafka's `getOffsetTruncationState`, the rule the simulator checks.
        let own = p
            .end_offset_for_epoch(diverging.epoch)
            .map(|(epoch, end)| epoch_end(epoch, end));
        let target = sluice_replication::truncation_offset(
            epoch_end(diverging.epoch, diverging.end_offset),
            own,
            sluice_replication::Offset(p.offsets().log_end_offset),
        )
        .0;
        tracing::info!(
            topic = p.topic(),
            partition = p.partition(),
            target,
            epoch = diverging.epoch,
            "truncating a replica where it left the leader's log"
        );
        if let Err(e) = p.truncate_to(target).await {
            tracing::warn!(topic = p.topic(), partition = p.partition(), error = %e,
                "replica truncation failed");
            return false;
        }
        return true;
    }
    if let Some(records) = data.records.filter(|r| !r.is_empty())
        && let Err(e) = p.append_replicated(records.into_bytes()).await
    {
        tracing::warn!(topic = p.topic(), partition = p.partition(), error = %e,
            "replica append failed");
        return false;
    }
    core.partitions
        .replication
        .leader_high_watermark(p, data.high_watermark.min(p.offsets().log_end_offset));
    follow_log_start(p, data.log_start_offset).await;
    true
}

/// The leader's log start moved past this replica's (DeleteRecords, retention): the records
/// below it go here too, as far as this replica's high watermark (Kafka's follower
/// `maybeIncrementLogStartOffset`).
async fn follow_log_start(p: &Partition, leader_start: i64) {
    let offsets = p.offsets();
    let to = leader_start.min(offsets.high_watermark);
    if to <= offsets.log_start_offset {
        return;
    }
    if let Err(e) = p.delete_records_before(to).await {
        tracing::warn!(topic = p.topic(), partition = p.partition(), error = %e,
            "moving a replica's log start failed");
    }
}

/// OFFSET_OUT_OF_RANGE for this replica's log end. When the leader's log starts above it
/// (the leader deleted what this replica still lacks while it was away), the replica drops
/// its whole log and starts empty at the leader's log start, as Kafka's fetcher does
/// (`truncateFullyAndStartAt`); the next Fetch goes from there. `false`: pause first.
async fn out_of_range(p: &Partition, leader_start: i64) -> bool {
    let end = p.offsets().log_end_offset;
    if leader_start <= end {
        tracing::debug!(
            topic = p.topic(),
            partition = p.partition(),
            end,
            leader_start,
            "replica fetch out of range"
        );
        return false;
    }
    tracing::info!(
        topic = p.topic(),
        partition = p.partition(),
        end,
        leader_start,
        "the leader's log starts past this replica's end: starting it empty there"
    );
    if let Err(e) = p.truncate_fully_and_start_at(leader_start).await {
        tracing::warn!(topic = p.topic(), partition = p.partition(), error = %e,
            "resetting a replica's log failed");
        return false;
    }
    true
}
