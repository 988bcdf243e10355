//! The group coordinator: classic consumer groups and their committed offsets.
//!
//! The coordinator of group `g` is the owner of `__consumer_offsets` partition
//! `(javaHashCode(g) & 0x7fffffff) % partitions`, exactly Kafka's rule (so Kafka's tools and
//! sluice agree on where a group lives). That partition lives on one core (`shard_for`), and
//! every request for the group is answered there: other cores forward it over the mesh
//! ([`GroupCall`]). The groups of a partition are kept in memory on that core and rebuilt by
//! replaying the partition the first time it is needed after start-up.
//!
//! Committed offsets and group metadata are records in that partition (layout in
//! [`records`]), appended through the normal log, so an OffsetCommit is answered only after
//! its record is on disk. Group metadata (members, generation, assignment) is written when a
//! rebalance completes, when the group becomes empty, and when a static member is replaced;
//! those writes are ordered behind the state change and not awaited by the request, because a
//! lost group-metadata record costs only a rebalance after a crash, never an offset.

pub mod group;
pub mod records;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use glommio::sync::Semaphore;
use sluice_net::record_batch::{RecordBatch, build};

use self::group::{Group, JoinArgs, JoinResult, Limits, Reply, State, SyncResult};
use self::records::{Decoded, OffsetValue};
use crate::config::BrokerConfig;
use crate::core::Core;
use crate::errors::code;
use crate::metadata::shard_for;
use crate::registry::now_ms;

/// The internal topic holding committed offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// How often group timers (sessions, rebalance and sync deadlines, the initial delay) run.
const TICK: Duration = Duration::from_millis(20);

/// Largest batch of records one write to `__consumer_offsets` carries (a big commit is split).
const WRITE_BATCH_BYTES: usize = 512 * 1024;

/// Kafka's `String.hashCode()` of a group id (over UTF-16 code units).
pub fn java_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// The `__consumer_offsets` partition of a group (Kafka's `Utils.abs(hash) % partitions`).
pub fn partition_for(group: &str, partitions: i32) -> i32 {
    (java_hash(group) & 0x7fff_ffff) % partitions.max(1)
}

/// One offset to commit.
#[derive(Debug, Clone)]
pub struct CommitEntry {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
}

/// One committed offset as OffsetFetch reports it.
#[derive(Debug, Clone)]
pub struct FetchedOffset {
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub error: i16,
}

/// A member as DescribeGroups reports it.
#[derive(Debug, Clone)]
pub struct DescribedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// A group as DescribeGroups reports it; `found` is false for a group that does not exist.
#[derive(Debug, Clone)]
pub struct Described {
    pub group_id: String,
    pub found: bool,
    pub error: i16,
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<DescribedMember>,
}

/// A group as ListGroups reports it.
#[derive(Debug, Clone)]
pub struct Listed {
    pub group_id: String,
    pub protocol_type: String,
    pub state: &'static str,
}

/// A group request sent to the core that coordinates the group.
#[derive(Debug)]
pub enum GroupCall {
    Join {
        partition: i32,
        group: String,
        args: JoinArgs,
    },
    Sync {
        partition: i32,
        group: String,
        member_id: String,
        instance_id: Option<String>,
        generation: i32,
        protocol_type: Option<String>,
        protocol_name: Option<String>,
        /// v5+: both protocol fields must be given.
        require_protocol: bool,
        assignments: Vec<(String, Bytes)>,
    },
    Heartbeat {
        partition: i32,
        group: String,
        member_id: String,
        instance_id: Option<String>,
        generation: i32,
    },
    Leave {
        partition: i32,
        group: String,
        members: Vec<(String, Option<String>)>,
    },
    Commit {
        partition: i32,
        group: String,
        member_id: String,
        instance_id: Option<String>,
        generation: i32,
        offsets: Vec<CommitEntry>,
        /// OffsetCommit v9 answers GROUP_ID_NOT_FOUND where older versions say
        /// ILLEGAL_GENERATION.
        version: i16,
    },
    FetchOffsets {
        partition: i32,
        group: String,
        /// `None`: every committed offset of the group.
        topics: Option<Vec<(String, Vec<i32>)>>,
    },
    Describe {
        groups: Vec<(i32, String)>,
    },
    List,
    Delete {
        groups: Vec<(i32, String)>,
    },
    DeleteOffsets {
        partition: i32,
        group: String,
        partitions: Vec<(String, i32)>,
    },
}

/// The answer to a [`GroupCall`].
#[derive(Debug)]
pub enum GroupReply {
    Join(JoinResult),
    Sync(SyncResult),
    Code(i16),
    /// A top-level error, or one code per member.
    Leave(Result<Vec<i16>, i16>),
    /// A top-level error, or one code per entry.
    Commit(Result<Vec<i16>, i16>),
    Offsets(Result<Vec<(String, Vec<FetchedOffset>)>, i16>),
    Described(Vec<Described>),
    Listed(Vec<Listed>),
    /// One code per group.
    Deleted(Vec<i16>),
    /// A top-level error, or one code per partition.
    OffsetsDeleted(Result<Vec<i16>, i16>),
}

/// One core's share of the coordinator: the groups of the `__consumer_offsets` partitions
/// this core owns.
pub struct Coordinator {
    groups: RefCell<HashMap<String, Group>>,
    /// `__consumer_offsets` partitions replayed into `groups`.
    loaded: RefCell<HashSet<i32>>,
    load_lock: Semaphore,
    limits: Limits,
    retention_ms: i64,
    retention_check_ms: i64,
    metadata_max_bytes: usize,
    last_retention_check: Cell<i64>,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("groups", &self.groups.borrow().len())
            .finish()
    }
}

impl Coordinator {
    pub fn new(config: &BrokerConfig) -> Coordinator {
        Coordinator {
            groups: RefCell::new(HashMap::new()),
            loaded: RefCell::new(HashSet::new()),
            load_lock: Semaphore::new(1),
            limits: Limits {
                min_session_timeout_ms: config.group_min_session_timeout_ms,
                max_session_timeout_ms: config.group_max_session_timeout_ms,
                initial_rebalance_delay_ms: config.group_initial_rebalance_delay_ms.max(0),
                max_size: usize::try_from(config.group_max_size).unwrap_or(usize::MAX),
            },
            retention_ms: config.offsets_retention_minutes.saturating_mul(60_000),
            retention_check_ms: config.offsets_retention_check_interval_ms.max(1000),
            metadata_max_bytes: config.offset_metadata_max_bytes,
            last_retention_check: Cell::new(now_ms()),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Groups by state name, for metrics.
    pub fn count_by_state(&self) -> Vec<(String, u64)> {
        let mut by: BTreeMap<&'static str, u64> = BTreeMap::new();
        for g in self.groups.borrow().values() {
            *by.entry(g.state.name()).or_default() += 1;
        }
        by.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }
}

/// A fresh member id: `prefix-` and a random UUID, as Kafka makes them.
fn new_member_id(prefix: &str) -> String {
    let id = crate::metadata::new_topic_id();
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{prefix}-{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Answers a group request on the coordinating core.
pub async fn serve(core: &Rc<Core>, call: GroupCall) -> GroupReply {
    match call {
        GroupCall::Join {
            partition,
            group,
            args,
        } => GroupReply::Join(join(core, partition, &group, args).await),
        GroupCall::Sync {
            partition,
            group,
            member_id,
            instance_id,
            generation,
            protocol_type,
            protocol_name,
            require_protocol,
            assignments,
        } => {
            let r = match ensure_loaded(core, partition).await {
                Err(e) => Reply::Now(SyncResult {
                    error: e,
                    ..SyncResult::default()
                }),
                Ok(()) => with_group(core, partition, &group, |g| match g {
                    None => Reply::Now(SyncResult {
                        error: code::UNKNOWN_MEMBER_ID,
                        ..SyncResult::default()
                    }),
                    Some(g) => g.sync(
                        &member_id,
                        instance_id.as_deref(),
                        generation,
                        protocol_type.as_deref(),
                        protocol_name.as_deref(),
                        require_protocol,
                        assignments,
                        now_ms(),
                    ),
                }),
            };
            GroupReply::Sync(wait(core, r).await.unwrap_or_else(|| SyncResult {
                error: code::COORDINATOR_NOT_AVAILABLE,
                ..SyncResult::default()
            }))
        }
        GroupCall::Heartbeat {
            partition,
            group,
            member_id,
            instance_id,
            generation,
        } => {
            if let Err(e) = ensure_loaded(core, partition).await {
                return GroupReply::Code(e);
            }
            GroupReply::Code(with_group(core, partition, &group, |g| match g {
                None => code::UNKNOWN_MEMBER_ID,
                Some(g) => g.heartbeat(&member_id, instance_id.as_deref(), generation, now_ms()),
            }))
        }
        GroupCall::Leave {
            partition,
            group,
            members,
        } => {
            if let Err(e) = ensure_loaded(core, partition).await {
                return GroupReply::Leave(Err(e));
            }
            let limits = *core.groups.limits();
            GroupReply::Leave(with_group(core, partition, &group, |g| match g {
                None => Ok(vec![code::UNKNOWN_MEMBER_ID; members.len()]),
                Some(g) => Ok(members
                    .iter()
                    .map(|(m, i)| g.leave(m, i.as_deref(), &limits, now_ms()))
                    .collect()),
            }))
        }
        GroupCall::Commit {
            partition,
            group,
            member_id,
            instance_id,
            generation,
            offsets,
            version,
        } => GroupReply::Commit(
            commit(
                core,
                partition,
                &group,
                (&member_id, instance_id.as_deref(), generation),
                offsets,
                version,
            )
            .await,
        ),
        GroupCall::FetchOffsets {
            partition,
            group,
            topics,
        } => GroupReply::Offsets(fetch_offsets(core, partition, &group, topics).await),
        GroupCall::Describe { groups } => GroupReply::Described(describe(core, groups).await),
        GroupCall::List => GroupReply::Listed(list(core).await),
        GroupCall::Delete { groups } => GroupReply::Deleted(delete(core, groups).await),
        GroupCall::DeleteOffsets {
            partition,
            group,
            partitions,
        } => GroupReply::OffsetsDeleted(delete_offsets(core, partition, &group, partitions).await),
    }
}

/// The answer, now or when the group gives it; `None` (COORDINATOR_NOT_AVAILABLE to the
/// client) if the broker stops first, so a member mid-rebalance does not hold up a stop.
async fn wait<T>(core: &Core, r: Reply<T>) -> Option<T> {
    match r {
        Reply::Now(v) => Some(v),
        Reply::Wait(rx) => {
            futures_lite::future::or(rx.recv(), async {
                core.stop.stopped().await;
                None
            })
            .await
        }
    }
}

/// Runs `f` on the group (or `None`) and then writes its metadata if `f` changed it.
fn with_group<R>(
    core: &Rc<Core>,
    partition: i32,
    group: &str,
    f: impl FnOnce(Option<&mut Group>) -> R,
) -> R {
    let (r, dirty) = {
        let mut groups = core.groups.groups.borrow_mut();
        let g = groups.get_mut(group);
        let r = f(g);
        let dirty = groups.get_mut(group).and_then(|g| {
            std::mem::take(&mut g.dirty).then(|| (records::group_key(group), g.stored()))
        });
        (r, dirty)
    };
    if let Some((key, value)) = dirty {
        spawn_write(
            core,
            partition,
            vec![(key, Some(records::group_value(&value)))],
        );
    }
    r
}

/// Writes records to `__consumer_offsets` in the background (ordered: tasks start in spawn
/// order and the log orders appends as they start).
fn spawn_write(core: &Rc<Core>, partition: i32, recs: Vec<(Bytes, Option<Bytes>)>) {
    let core = Rc::clone(core);
    glommio::spawn_local(async move {
        if let Err(e) = append(&core, partition, &recs).await {
            tracing::warn!(
                partition,
                error = e,
                "writing group metadata to __consumer_offsets failed"
            );
        }
    })
    .detach();
}

/// Appends records (key, value-or-tombstone) durably; the offset of the first one.
async fn append(core: &Core, partition: i32, recs: &[(Bytes, Option<Bytes>)]) -> Result<i64, i16> {
    let Some(log) = core.shard.partition(OFFSETS_TOPIC, partition) else {
        return Err(code::NOT_COORDINATOR);
    };
    let mut first = None;
    let mut start = 0;
    while start < recs.len() {
        let mut end = start;
        let mut bytes = 0;
        while end < recs.len() && (end == start || bytes < WRITE_BATCH_BYTES) {
            bytes += recs[end].0.len() + recs[end].1.as_ref().map_or(0, Bytes::len) + 24;
            end += 1;
        }
        let refs: Vec<(Option<&[u8]>, Option<&[u8]>)> = recs[start..end]
            .iter()
            .map(|(k, v)| (Some(k.as_ref()), v.as_deref()))
            .collect();
        let batch = build::batch(
            &build::BatchSpec {
                base_timestamp: now_ms(),
                ..build::BatchSpec::default()
            },
            &refs,
        );
        match log.append(batch).await {
            Ok(info) => {
                first.get_or_insert(info.base_offset);
            }
            Err(e) => {
                tracing::warn!(partition, error = %e, "append to __consumer_offsets failed");
                let c = crate::errors::shard_code(&e);
                return Err(match c {
                    code::MESSAGE_TOO_LARGE | code::RECORD_LIST_TOO_LARGE => {
                        code::INVALID_COMMIT_OFFSET_SIZE
                    }
                    _ => code::NOT_COORDINATOR,
                });
            }
        }
        start = end;
    }
    first.ok_or(code::UNKNOWN_SERVER_ERROR)
}

/// Replays partition `p` of `__consumer_offsets` into memory once, before its first use.
async fn ensure_loaded(core: &Rc<Core>, p: i32) -> Result<(), i16> {
    if core.groups.loaded.borrow().contains(&p) {
        return Ok(());
    }
    let _permit = core
        .groups
        .load_lock
        .acquire_permit(1)
        .await
        .map_err(|_| code::COORDINATOR_NOT_AVAILABLE)?;
    if core.groups.loaded.borrow().contains(&p) {
        return Ok(());
    }
    let Some(log) = core.shard.partition(OFFSETS_TOPIC, p) else {
        return Err(code::NOT_COORDINATOR);
    };
    let started = std::time::Instant::now();
    let mut next = log.offsets().log_start_offset;
    let mut applied = 0usize;
    loop {
        let read = log.read(next, 1 << 20).await.map_err(|e| {
            tracing::error!(partition = p, error = %e, "replaying __consumer_offsets failed");
            code::COORDINATOR_NOT_AVAILABLE
        })?;
        if read.batches.is_empty() {
            break;
        }
        let now = now_ms();
        for raw in read.batches {
            let batch = match RecordBatch::new(raw) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(partition = p, error = %e, "unreadable batch in __consumer_offsets");
                    return Err(code::COORDINATOR_NOT_AVAILABLE);
                }
            };
            next = batch.last_offset() + 1;
            if batch.is_control() {
                continue;
            }
            let records = match batch.records() {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(partition = p, error = %e, "skipping a batch of __consumer_offsets sluice cannot read");
                    continue;
                }
            };
            let mut groups = core.groups.groups.borrow_mut();
            for record in records {
                let Ok(record) = record else {
                    tracing::warn!(
                        partition = p,
                        "skipping a malformed record in __consumer_offsets"
                    );
                    break;
                };
                let at = batch.base_offset() + i64::from(record.offset_delta);
                match records::decode(record.key, record.value) {
                    Ok(d) => {
                        apply(&mut groups, d, at, now);
                        applied += 1;
                    }
                    Err(e) => {
                        tracing::warn!(partition = p, offset = at, error = %e, "skipping record")
                    }
                }
            }
        }
        glommio::yield_if_needed().await;
    }
    core.groups.loaded.borrow_mut().insert(p);
    // Offsets of topics deleted while this partition was not loaded (or before a crash
    // finished their tombstones) go now.
    let table = core.topics();
    let stale = forget_topics(
        &core.groups,
        &|t| !table.topics().contains_key(t),
        p,
        offsets_partitions(core),
    );
    if !stale.is_empty() {
        if let Err(e) = append(core, p, &stale).await {
            tracing::warn!(
                partition = p,
                error = e,
                "cannot delete offsets of deleted topics"
            );
        }
    }
    tracing::info!(
        partition = p,
        records = applied,
        ms = started.elapsed().as_millis() as u64,
        "loaded __consumer_offsets partition"
    );
    Ok(())
}

fn apply(groups: &mut HashMap<String, Group>, d: Decoded, at: i64, now: i64) {
    match d {
        Decoded::Offset {
            group,
            topic,
            partition,
            value,
        } => {
            let g = groups
                .entry(group.clone())
                .or_insert_with(|| Group::new(&group, now));
            match value {
                Some(value) => {
                    g.offsets.insert(
                        (topic, partition),
                        group::Committed {
                            value,
                            record_offset: at,
                        },
                    );
                }
                None => {
                    g.offsets.remove(&(topic, partition));
                }
            }
        }
        Decoded::Group { group, value } => match value {
            Some(v) => groups
                .entry(group.clone())
                .or_insert_with(|| Group::new(&group, now))
                .restore(v, now),
            None => {
                groups.remove(&group);
            }
        },
        Decoded::Unknown => {}
    }
}

async fn join(core: &Rc<Core>, partition: i32, group_id: &str, args: JoinArgs) -> JoinResult {
    let limits = *core.groups.limits();
    let fail = |error: i16, member: &str| JoinResult {
        error,
        generation: -1,
        member_id: member.to_owned(),
        ..JoinResult::default()
    };
    if group_id.is_empty() {
        return fail(code::INVALID_GROUP_ID, &args.member_id);
    }
    if args.session_timeout_ms < limits.min_session_timeout_ms
        || args.session_timeout_ms > limits.max_session_timeout_ms
    {
        return fail(code::INVALID_SESSION_TIMEOUT, &args.member_id);
    }
    if let Err(e) = ensure_loaded(core, partition).await {
        return fail(e, &args.member_id);
    }
    let member = args.member_id.clone();
    let reply = {
        let exists = core.groups.groups.borrow().contains_key(group_id);
        if !exists {
            if !args.member_id.is_empty() {
                return fail(code::UNKNOWN_MEMBER_ID, &args.member_id);
            }
            core.groups
                .groups
                .borrow_mut()
                .insert(group_id.to_owned(), Group::new(group_id, now_ms()));
        }
        let r = with_group(core, partition, group_id, |g| {
            g.expect("present")
                .join(args, &limits, now_ms(), &new_member_id)
        });
        let mut groups = core.groups.groups.borrow_mut();
        if groups.get(group_id).is_some_and(Group::is_vacant) {
            groups.remove(group_id);
        }
        r
    };
    wait(core, reply)
        .await
        .unwrap_or_else(|| fail(code::COORDINATOR_NOT_AVAILABLE, &member))
}

fn has_partition(table: &crate::metadata::TopicTable, topic: &str, partition: i32) -> bool {
    table
        .topics
        .get(topic)
        .is_some_and(|t| (0..t.partitions).contains(&partition))
}

/// OffsetCommit; `who` is (member id, instance id, generation).
async fn commit(
    core: &Rc<Core>,
    partition: i32,
    group_id: &str,
    who: (&str, Option<&str>, i32),
    offsets: Vec<CommitEntry>,
    version: i16,
) -> Result<Vec<i16>, i16> {
    let (member_id, instance_id, generation) = who;
    ensure_loaded(core, partition).await?;
    let now = now_ms();
    {
        let mut groups = core.groups.groups.borrow_mut();
        match groups.get_mut(group_id) {
            None if generation < 0 => {
                groups.insert(group_id.to_owned(), Group::new(group_id, now));
            }
            None if version >= 9 => return Err(code::GROUP_ID_NOT_FOUND),
            None => return Err(code::ILLEGAL_GENERATION),
            Some(g) => g.validate_commit(member_id, instance_id, generation, now)?,
        }
    }
    let table = core.topics();
    let mut codes = Vec::with_capacity(offsets.len());
    let mut recs = Vec::new();
    let mut written = Vec::new();
    for (i, e) in offsets.iter().enumerate() {
        let c = if !has_partition(table.registry(), &e.topic, e.partition) {
            code::UNKNOWN_TOPIC_OR_PARTITION
        } else if e.metadata.len() > core.groups.metadata_max_bytes {
            code::OFFSET_METADATA_TOO_LARGE
        } else {
            let value = OffsetValue {
                offset: e.offset,
                leader_epoch: e.leader_epoch,
                metadata: e.metadata.clone(),
                commit_timestamp_ms: now,
            };
            recs.push((
                records::offset_key(group_id, &e.topic, e.partition),
                Some(records::offset_value(&value)),
            ));
            written.push((i, value));
            code::NONE
        };
        codes.push(c);
    }
    if recs.is_empty() {
        return Ok(codes);
    }
    match append(core, partition, &recs).await {
        Ok(base) => {
            let mut groups = core.groups.groups.borrow_mut();
            let g = groups
                .entry(group_id.to_owned())
                .or_insert_with(|| Group::new(group_id, now));
            for (n, (i, value)) in written.into_iter().enumerate() {
                let at = base + n as i64;
                let key = (offsets[i].topic.clone(), offsets[i].partition);
                let newer = g.offsets.get(&key).is_none_or(|c| c.record_offset < at);
                if newer {
                    g.offsets.insert(
                        key,
                        group::Committed {
                            value,
                            record_offset: at,
                        },
                    );
                }
            }
        }
        Err(c) => {
            for (i, _) in written {
                codes[i] = c;
            }
        }
    }
    Ok(codes)
}

async fn fetch_offsets(
    core: &Rc<Core>,
    partition: i32,
    group_id: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
) -> Result<Vec<(String, Vec<FetchedOffset>)>, i16> {
    ensure_loaded(core, partition).await?;
    let groups = core.groups.groups.borrow();
    let g = groups.get(group_id);
    let found = |topic: &str, p: i32| match g.and_then(|g| g.offsets.get(&(topic.to_owned(), p))) {
        Some(c) => FetchedOffset {
            partition: p,
            offset: c.value.offset,
            leader_epoch: c.value.leader_epoch,
            metadata: c.value.metadata.clone(),
            error: code::NONE,
        },
        None => FetchedOffset {
            partition: p,
            offset: -1,
            leader_epoch: -1,
            metadata: String::new(),
            error: code::NONE,
        },
    };
    Ok(match topics {
        Some(topics) => topics
            .into_iter()
            .map(|(t, ps)| {
                let list = ps.iter().map(|&p| found(&t, p)).collect();
                (t, list)
            })
            .collect(),
        None => {
            let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
            if let Some(g) = g {
                for (t, p) in g.offsets.keys() {
                    by_topic.entry(t.clone()).or_default().push(*p);
                }
            }
            by_topic
                .into_iter()
                .map(|(t, mut ps)| {
                    ps.sort_unstable();
                    let list = ps.iter().map(|&p| found(&t, p)).collect();
                    (t, list)
                })
                .collect()
        }
    })
}

async fn describe(core: &Rc<Core>, wanted: Vec<(i32, String)>) -> Vec<Described> {
    let mut out = Vec::with_capacity(wanted.len());
    for (p, id) in wanted {
        let mut d = Described {
            group_id: id.clone(),
            found: false,
            error: code::NONE,
            state: State::Dead.name(),
            protocol_type: String::new(),
            protocol: String::new(),
            members: Vec::new(),
        };
        if let Err(e) = ensure_loaded(core, p).await {
            d.error = e;
            out.push(d);
            continue;
        }
        let groups = core.groups.groups.borrow();
        if let Some(g) = groups.get(&id).filter(|g| g.state != State::Dead) {
            let stable = g.state == State::Stable;
            let protocol = g.protocol.clone().unwrap_or_default();
            d.found = true;
            d.state = g.state.name();
            d.protocol_type = g.protocol_type.clone().unwrap_or_default();
            d.protocol = if stable {
                protocol.clone()
            } else {
                String::new()
            };
            d.members = g
                .members_in_order()
                .map(|m| DescribedMember {
                    member_id: m.id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if stable {
                        m.metadata(&protocol)
                    } else {
                        Bytes::new()
                    },
                    assignment: if stable {
                        m.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                })
                .collect();
        }
        out.push(d);
    }
    out
}

/// The `__consumer_offsets` partitions this core owns (none before the topic exists).
fn owned_partitions(core: &Rc<Core>) -> Vec<i32> {
    let table = core.topics();
    let Some(t) = table.topics().get(OFFSETS_TOPIC) else {
        return Vec::new();
    };
    let cores = core.router.cores();
    (0..t.partitions)
        .filter(|&p| shard_for(OFFSETS_TOPIC, p, cores) == core.id)
        .collect()
}

async fn list(core: &Rc<Core>) -> Vec<Listed> {
    for p in owned_partitions(core) {
        if let Err(e) = ensure_loaded(core, p).await {
            tracing::warn!(
                partition = p,
                error = e,
                "ListGroups skips a partition that cannot load"
            );
        }
    }
    let groups = core.groups.groups.borrow();
    let mut out: Vec<Listed> = groups
        .values()
        .filter(|g| g.state != State::Dead)
        .map(|g| Listed {
            group_id: g.id.clone(),
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            state: g.state.name(),
        })
        .collect();
    out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    out
}

/// Tombstones for a group's offsets (all, or the listed ones) and, with `whole`, its metadata.
fn tombstones(
    g: &Group,
    only: Option<&[(String, i32)]>,
    whole: bool,
) -> Vec<(Bytes, Option<Bytes>)> {
    let mut recs: Vec<(Bytes, Option<Bytes>)> = g
        .offsets
        .keys()
        .filter(|k| only.is_none_or(|o| o.contains(k)))
        .map(|(t, p)| (records::offset_key(&g.id, t, *p), None))
        .collect();
    if whole {
        recs.push((records::group_key(&g.id), None));
    }
    recs
}

async fn delete(core: &Rc<Core>, wanted: Vec<(i32, String)>) -> Vec<i16> {
    let mut out = Vec::with_capacity(wanted.len());
    for (p, id) in wanted {
        if let Err(e) = ensure_loaded(core, p).await {
            out.push(e);
            continue;
        }
        let recs = {
            let mut groups = core.groups.groups.borrow_mut();
            match groups.get_mut(&id) {
                None => Err(code::GROUP_ID_NOT_FOUND),
                Some(g) if g.state == State::Dead => Err(code::GROUP_ID_NOT_FOUND),
                Some(g) if g.state != State::Empty => Err(code::NON_EMPTY_GROUP),
                Some(g) => {
                    let recs = tombstones(g, None, true);
                    g.kill(now_ms());
                    groups.remove(&id);
                    Ok(recs)
                }
            }
        };
        out.push(match recs {
            Err(c) => c,
            Ok(recs) => match append(core, p, &recs).await {
                Ok(_) => code::NONE,
                Err(c) => c,
            },
        });
    }
    out
}

async fn delete_offsets(
    core: &Rc<Core>,
    partition: i32,
    group_id: &str,
    partitions: Vec<(String, i32)>,
) -> Result<Vec<i16>, i16> {
    ensure_loaded(core, partition).await?;
    let table = core.topics();
    let (codes, recs) = {
        let mut groups = core.groups.groups.borrow_mut();
        let Some(g) = groups.get_mut(group_id).filter(|g| g.state != State::Dead) else {
            return Err(code::GROUP_ID_NOT_FOUND);
        };
        let subscribed = if g.state == State::Empty {
            Some(HashSet::new())
        } else if g.protocol_type.as_deref() == Some("consumer") {
            g.subscribed_topics()
        } else {
            None
        };
        let Some(subscribed) = subscribed else {
            return Err(code::NON_EMPTY_GROUP);
        };
        let mut codes = Vec::with_capacity(partitions.len());
        let mut doomed = Vec::new();
        for (t, p) in &partitions {
            codes.push(if !has_partition(table.registry(), t, *p) {
                code::UNKNOWN_TOPIC_OR_PARTITION
            } else if subscribed.contains(t) {
                code::GROUP_SUBSCRIBED_TO_TOPIC
            } else {
                doomed.push((t.clone(), *p));
                code::NONE
            });
        }
        let recs = tombstones(g, Some(&doomed), false);
        for k in &doomed {
            g.offsets.remove(k);
        }
        (codes, recs)
    };
    if !recs.is_empty() {
        append(core, partition, &recs).await?;
    }
    Ok(codes)
}

/// Removes committed offsets of topics `gone(topic)` from the loaded groups of partition `p`
/// (`partitions` = the partition count of `__consumer_offsets`), returning their tombstones.
fn forget_topics(
    coordinator: &Coordinator,
    gone: &dyn Fn(&str) -> bool,
    p: i32,
    partitions: i32,
) -> Vec<(Bytes, Option<Bytes>)> {
    let mut recs = Vec::new();
    let mut groups = coordinator.groups.borrow_mut();
    for g in groups.values_mut() {
        if partition_for(&g.id, partitions) != p {
            continue;
        }
        let doomed: Vec<(String, i32)> =
            g.offsets.keys().filter(|(t, _)| gone(t)).cloned().collect();
        if doomed.is_empty() {
            continue;
        }
        recs.extend(tombstones(g, Some(&doomed), false));
        for k in &doomed {
            g.offsets.remove(k);
        }
    }
    recs
}

/// A topic was deleted: its committed offsets go from every group this core coordinates, as
/// in Kafka (tombstones, so they stay gone after a restart).
pub async fn topics_deleted(core: &Core, names: &[String]) {
    let n = offsets_partitions(core);
    let loaded: Vec<i32> = core.groups.loaded.borrow().iter().copied().collect();
    for p in loaded {
        let recs = forget_topics(&core.groups, &|t| names.iter().any(|n| n == t), p, n);
        if !recs.is_empty()
            && let Err(e) = append(core, p, &recs).await
        {
            tracing::warn!(
                partition = p,
                error = e,
                "cannot delete offsets of a deleted topic"
            );
        }
    }
}

/// Runs this core's group timers until the broker stops: sessions, rebalance deadlines, and
/// the periodic expiry of offsets of empty groups.
pub fn spawn_timers(core: &Rc<Core>) {
    let core = Rc::clone(core);
    glommio::spawn_local(async move {
        loop {
            glommio::timer::sleep(TICK).await;
            if core.stop.is_stopping() {
                return;
            }
            tick(&core);
            let now = now_ms();
            if now - core.groups.last_retention_check.get() >= core.groups.retention_check_ms {
                core.groups.last_retention_check.set(now);
                expire_offsets(&core, now);
            }
        }
    })
    .detach();
}

fn offsets_partitions(core: &Core) -> i32 {
    core.topics()
        .topics()
        .get(OFFSETS_TOPIC)
        .map_or(1, |t| t.partitions)
}

fn tick(core: &Rc<Core>) {
    let now = now_ms();
    let limits = *core.groups.limits();
    let n = offsets_partitions(core);
    let mut writes: Vec<(i32, Bytes, Bytes)> = Vec::new();
    {
        let mut groups = core.groups.groups.borrow_mut();
        for g in groups.values_mut().filter(|g| g.has_timers()) {
            g.tick(&limits, now);
            if std::mem::take(&mut g.dirty) {
                writes.push((
                    partition_for(&g.id, n),
                    records::group_key(&g.id),
                    records::group_value(&g.stored()),
                ));
            }
        }
    }
    for (p, k, v) in writes {
        spawn_write(core, p, vec![(k, Some(v))]);
    }
}

/// Offsets retention (Kafka's KIP-211 rule): an empty group's offsets go `retention` after it
/// became empty; a consumer group's offsets for topics no member subscribes to go `retention`
/// after their commit. An empty group left without offsets is deleted.
fn expire_offsets(core: &Rc<Core>, now: i64) {
    let retention = core.groups.retention_ms;
    let n = offsets_partitions(core);
    let mut writes: HashMap<i32, Vec<(Bytes, Option<Bytes>)>> = HashMap::new();
    {
        let mut groups = core.groups.groups.borrow_mut();
        let mut dead = Vec::new();
        for g in groups.values_mut() {
            let expired: Vec<(String, i32)> = if g.state == State::Empty {
                if now >= g.state_since_ms.saturating_add(retention) {
                    g.offsets.keys().cloned().collect()
                } else {
                    Vec::new()
                }
            } else if let Some(subscribed) = g.subscribed_topics() {
                g.offsets
                    .iter()
                    .filter(|((t, _), c)| {
                        !subscribed.contains(t)
                            && now >= c.value.commit_timestamp_ms.saturating_add(retention)
                    })
                    .map(|(k, _)| k.clone())
                    .collect()
            } else {
                Vec::new()
            };
            let delete_group = g.state == State::Empty && g.offsets.len() == expired.len();
            if expired.is_empty() && !delete_group {
                continue;
            }
            let recs = tombstones(g, Some(&expired), delete_group);
            for k in &expired {
                g.offsets.remove(k);
            }
            tracing::info!(group = %g.id, offsets = expired.len(), deleted = delete_group, "offsets expired");
            if delete_group {
                g.kill(now);
                dead.push(g.id.clone());
            }
            writes
                .entry(partition_for(&g.id, n))
                .or_default()
                .extend(recs);
        }
        for id in dead {
            groups.remove(&id);
        }
    }
    for (p, recs) in writes {
        spawn_write(core, p, recs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's partition for a few group ids (Java `"…".hashCode()` by hand).
    #[test]
    fn partition_matches_java() {
        assert_eq!(java_hash(""), 0);
        assert_eq!(java_hash("a"), 97);
        assert_eq!(java_hash("ab"), 97 * 31 + 98);
        // "polygenelubricants".hashCode() == Integer.MIN_VALUE in Java.
        assert_eq!(java_hash("polygenelubricants"), i32::MIN);
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        assert_eq!(partition_for("console-consumer-1", 50), {
            let h = java_hash("console-consumer-1") & 0x7fff_ffff;
            h % 50
        });
    }

    #[test]
    fn member_ids_are_unique_and_prefixed() {
        let a = new_member_id("client");
        let b = new_member_id("client");
        assert!(a.starts_with("client-"));
        assert_eq!(a.len(), "client-".len() + 36);
        assert_ne!(a, b);
    }
}
