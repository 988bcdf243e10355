//! The coordinator: one core's share of the consumer groups, and how it answers a
//! [`GroupCall`].
//!
//! A [`Coordinator`] lives on one core for the life of the broker and owns the groups of the
//! `__consumer_offsets` partitions that core owns, which of those partitions it has replayed,
//! and the group limits from the config. It holds no handle to the core: each call brings its
//! inputs ([`Inputs`]: the shard, the topic table, which partitions this core owns, the stop
//! signal and the clock).
//!
//! Each call is split into deciding and doing. The deciding steps (`*_now`, `commit_prepare`,
//! `commit_applied`, ...) are synchronous, take the time as an argument and return the reply
//! and the records to write, so unit tests drive them without an executor. The async shell
//! around them replays a partition before its first use, appends records (an OffsetCommit is
//! answered only once its record is durable; group metadata is written in the background) and
//! awaits the answers the group state machine leaves for later.
//!
//! Concurrency: no `RefCell` borrow spans an `.await`; a request that must wait (a JoinGroup
//! until the rebalance completes) holds a one-shot receiver instead.

use std::cell::{Cell, RefCell};
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::Bytes;
use glommio::sync::Semaphore;
use sluice_shard::Shard;

use super::calls::{
    CommitEntry, Described, DescribedMember, FetchedOffset, GroupCall, GroupReply, Listed,
};
use super::group::{
    Committed, Group, JoinArgs, JoinResult, Limits, Reply, State, SyncArgs, SyncResult,
};
use super::journal::{self, Record, Write};
use super::records::{self, OffsetValue};
use super::{offsets_partitions, partition_for};
use crate::config::BrokerConfig;
use crate::metadata::TopicTable;
use crate::stop::StopSignal;
use sluice_net::error_code::code;

/// What one call needs from the core it runs on, narrowed to what the coordinator reads.
pub struct Inputs<'a> {
    /// This core's partitions: the coordinator reads and appends `__consumer_offsets`.
    pub shard: &'a Shard,
    /// The topic table as the call found it (commits and offset deletes are checked against
    /// it; topics deleted meanwhile are caught by [`Coordinator::topics_deleted`]).
    pub topics: &'a TopicTable,
    /// Whether this core owns partition `p` of `__consumer_offsets` (ListGroups loads them all).
    pub owns: &'a dyn Fn(i32) -> bool,
    /// Ends the wait of a member mid-rebalance when the broker stops.
    pub stop: &'a StopSignal,
    /// The wall clock in ms, read after each await so deadlines set after a replay are fresh.
    pub now_ms: fn() -> i64,
}

/// The member a Heartbeat or an OffsetCommit comes from.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub member_id: &'a str,
    pub instance_id: Option<&'a str>,
    pub generation: i32,
}

impl<'a> Caller<'a> {
    pub fn new(member_id: &'a str, instance_id: Option<&'a str>, generation: i32) -> Self {
        Caller {
            member_id,
            instance_id,
            generation,
        }
    }
}

/// What an OffsetCommit will do once validated: one code per entry, the records to append,
/// and (entry index, value) for each record, to apply once the records are durable.
#[derive(Debug, Default)]
pub struct CommitPlan {
    pub codes: Vec<i16>,
    pub records: Vec<Record>,
    pub written: Vec<(usize, OffsetValue)>,
}

/// One core's share of the coordinator: the groups of the `__consumer_offsets` partitions
/// this core owns. Lives on one core; shared by its tasks through the core.
pub struct Coordinator {
    pub(super) groups: RefCell<HashMap<String, Group>>,
    /// `__consumer_offsets` partitions replayed into `groups`.
    pub(super) loaded: RefCell<HashSet<i32>>,
    /// One replay at a time.
    load_lock: Semaphore,
    /// While a partition replays: the topics deleted meanwhile. `topics_deleted` reaches only
    /// loaded partitions, so the replay forgets these itself when it ends.
    pub(super) deleted_while_loading: RefCell<Option<Vec<String>>>,
    pub(super) limits: Limits,
    pub(super) retention_ms: i64,
    pub(super) retention_check_ms: i64,
    metadata_max_bytes: usize,
    pub(super) last_retention_check: Cell<i64>,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("groups", &self.groups.borrow().len())
            .finish()
    }
}

impl Coordinator {
    /// An empty coordinator with the config's limits; the first retention check is
    /// `offsets.retention.check.interval.ms` after `now_ms`.
    pub fn new(config: &BrokerConfig, now_ms: i64) -> Coordinator {
        Coordinator {
            groups: RefCell::new(HashMap::new()),
            loaded: RefCell::new(HashSet::new()),
            load_lock: Semaphore::new(1),
            deleted_while_loading: RefCell::new(None),
            limits: Limits {
                min_session_timeout_ms: config.group_min_session_timeout_ms,
                max_session_timeout_ms: config.group_max_session_timeout_ms,
                initial_rebalance_delay_ms: config.group_initial_rebalance_delay_ms.max(0),
                max_size: usize::try_from(config.group_max_size).unwrap_or(usize::MAX),
            },
            retention_ms: config.offsets_retention_minutes.saturating_mul(60_000),
            retention_check_ms: config.offsets_retention_check_interval_ms.max(1000),
            metadata_max_bytes: config.offset_metadata_max_bytes,
            last_retention_check: Cell::new(now_ms),
        }
    }

    /// Forgets the `__consumer_offsets` partitions loaded here that this core no longer leads
    /// (their leadership moved: another broker's coordinator replays them) and their groups;
    /// requests waiting on those groups get COORDINATOR_NOT_AVAILABLE and look again. A
    /// partition led here again later is replayed afresh, with what it followed meanwhile.
    pub fn unload(&self, owns: &dyn Fn(i32) -> bool, offsets_partitions: i32) {
        let gone: Vec<i32> = self
            .loaded
            .borrow()
            .iter()
            .copied()
            .filter(|&p| !owns(p))
            .collect();
        if gone.is_empty() {
            return;
        }
        self.loaded.borrow_mut().retain(|p| !gone.contains(p));
        self.groups
            .borrow_mut()
            .retain(|id, _| !gone.contains(&super::partition_for(id, offsets_partitions)));
        tracing::info!(partitions = ?gone, "unloaded __consumer_offsets partitions led elsewhere");
    }

    /// Groups by state name, for metrics.
    pub fn count_by_state(&self) -> Vec<(String, u64)> {
        let mut by: BTreeMap<&'static str, u64> = BTreeMap::new();
        for g in self.groups.borrow().values() {
            *by.entry(g.state.name()).or_default() += 1;
        }
        by.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    /// Answers a group request on the coordinating core.
    pub async fn serve(&self, inp: &Inputs<'_>, call: GroupCall) -> GroupReply {
        match call {
            GroupCall::Join {
                partition,
                group,
                args,
            } => GroupReply::Join(self.join(inp, partition, &group, args).await),
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
                let args = SyncArgs {
                    member_id,
                    instance_id,
                    generation,
                    protocol_type,
                    protocol_name,
                    require_protocol,
                    assignments,
                };
                GroupReply::Sync(self.sync(inp, partition, &group, args).await)
            }
            GroupCall::Heartbeat {
                partition,
                group,
                member_id,
                instance_id,
                generation,
            } => {
                let who = Caller::new(&member_id, instance_id.as_deref(), generation);
                GroupReply::Code(self.heartbeat(inp, partition, &group, who).await)
            }
            GroupCall::Leave {
                partition,
                group,
                members,
            } => GroupReply::Leave(self.leave(inp, partition, &group, &members).await),
            GroupCall::Commit {
                partition,
                group,
                member_id,
                instance_id,
                generation,
                offsets,
                version,
            } => {
                let who = Caller::new(&member_id, instance_id.as_deref(), generation);
                let r = self.commit(inp, partition, &group, who, &offsets, version);
                GroupReply::Commit(r.await)
            }
            call @ (GroupCall::FetchOffsets { .. }
            | GroupCall::TxnCommit { .. }
            | GroupCall::TxnEnded { .. }) => self.serve_offsets(inp, call).await,
            GroupCall::Describe { groups } => {
                GroupReply::Described(self.describe(inp, groups).await)
            }
            GroupCall::List => GroupReply::Listed(self.list(inp).await),
            GroupCall::Delete { groups } => GroupReply::Deleted(self.delete(inp, groups).await),
            GroupCall::DeleteOffsets {
                partition,
                group,
                partitions,
            } => {
                let r = self.delete_offsets(inp, partition, &group, &partitions);
                GroupReply::OffsetsDeleted(r.await)
            }
        }
    }

    /// Replays partition `p` of `__consumer_offsets` into memory once, before its first use,
    /// then forgets (with tombstones) offsets of topics deleted while it was not loaded.
    pub(super) async fn ensure_loaded(&self, inp: &Inputs<'_>, p: i32) -> Result<(), i16> {
        if self.loaded.borrow().contains(&p) {
            return Ok(());
        }
        let _permit = self
            .load_lock
            .acquire_permit(1)
            .await
            .map_err(|_| code::COORDINATOR_NOT_AVAILABLE)?;
        if self.loaded.borrow().contains(&p) {
            return Ok(());
        }
        let started = std::time::Instant::now();
        *self.deleted_while_loading.borrow_mut() = Some(Vec::new());
        let n = offsets_partitions(inp.topics);
        let in_partition = |g: &str| partition_for(g, n) == p;
        let replayed = journal::replay(inp.shard, p, &mut |r, at| {
            let mut groups = self.groups.borrow_mut();
            journal::apply_replayed(&mut groups, r, (at, (inp.now_ms)()), &in_partition);
        })
        .await;
        let deleted = self.deleted_while_loading.borrow_mut().take();
        let applied = replayed?;
        self.loaded.borrow_mut().insert(p);
        let deleted = deleted.unwrap_or_default();
        let gone = |t: &str| !inp.topics.topics.contains_key(t) || deleted.iter().any(|d| d == t);
        let stale = self.forget_topics(&gone, p, offsets_partitions(inp.topics));
        if !stale.is_empty()
            && let Err(e) = journal::append(inp.shard, p, &stale, (inp.now_ms)()).await
        {
            tracing::warn!(
                partition = p,
                error = e,
                "cannot delete offsets of deleted topics"
            );
        }
        tracing::info!(
            partition = p,
            records = applied,
            ms = started.elapsed().as_millis() as u64,
            "loaded __consumer_offsets partition"
        );
        Ok(())
    }

    /// Runs `f` on the group (or `None`); group metadata to write if `f` changed it.
    pub(super) fn with_group<R>(
        &self,
        partition: i32,
        group: &str,
        f: impl FnOnce(Option<&mut Group>) -> R,
    ) -> (R, Option<Write>) {
        let mut groups = self.groups.borrow_mut();
        let r = f(groups.get_mut(group));
        let write = groups
            .get_mut(group)
            .and_then(|g| metadata_write(g, partition));
        (r, write)
    }

    /// [`Self::with_group`], then the metadata write started in the background.
    fn on_group<R>(
        &self,
        inp: &Inputs<'_>,
        partition: i32,
        group: &str,
        f: impl FnOnce(Option<&mut Group>) -> R,
    ) -> R {
        let (r, write) = self.with_group(partition, group, f);
        if let Some(write) = write {
            journal::spawn_write(inp.shard, write, (inp.now_ms)());
        }
        r
    }

    async fn join(
        &self,
        inp: &Inputs<'_>,
        partition: i32,
        group_id: &str,
        args: JoinArgs,
    ) -> JoinResult {
        if let Err(e) = self.join_check(group_id, &args) {
            return JoinResult::error(e, &args.member_id);
        }
        if let Err(e) = self.ensure_loaded(inp, partition).await {
            return JoinResult::error(e, &args.member_id);
        }
        let member = args.member_id.clone();
        let (reply, write) = self.join_now(partition, group_id, args, (inp.now_ms)());
        if let Some(write) = write {
            journal::spawn_write(inp.shard, write, (inp.now_ms)());
        }
        wait(inp.stop, reply)
            .await
            .unwrap_or_else(|| JoinResult::error(code::COORDINATOR_NOT_AVAILABLE, &member))
    }

    /// The checks a JoinGroup passes before its partition is loaded.
    pub(super) fn join_check(&self, group_id: &str, args: &JoinArgs) -> Result<(), i16> {
        if group_id.is_empty() {
            return Err(code::INVALID_GROUP_ID);
        }
        if args.session_timeout_ms < self.limits.min_session_timeout_ms
            || args.session_timeout_ms > self.limits.max_session_timeout_ms
        {
            return Err(code::INVALID_SESSION_TIMEOUT);
        }
        Ok(())
    }

    /// JoinGroup on a loaded partition: a new group is made for a member without an id; a
    /// group the join leaves vacant (a member that got MEMBER_ID_REQUIRED) is dropped.
    pub(super) fn join_now(
        &self,
        partition: i32,
        group_id: &str,
        args: JoinArgs,
        now: i64,
    ) -> (Reply<JoinResult>, Option<Write>) {
        let mut groups = self.groups.borrow_mut();
        let g = match groups.entry(group_id.to_owned()) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) if args.member_id.is_empty() => e.insert(Group::new(group_id, now)),
            Entry::Vacant(_) => {
                let r = JoinResult::error(code::UNKNOWN_MEMBER_ID, &args.member_id);
                return (Reply::Now(r), None);
            }
        };
        let reply = g.join(args, &self.limits, now, &new_member_id);
        let write = metadata_write(g, partition);
        if g.is_vacant() {
            groups.remove(group_id);
        }
        (reply, write)
    }

    async fn sync(
        &self,
        inp: &Inputs<'_>,
        partition: i32,
        group_id: &str,
        args: SyncArgs,
    ) -> SyncResult {
        let reply = match self.ensure_loaded(inp, partition).await {
            Err(e) => Reply::Now(SyncResult::error(e)),
            Ok(()) => {
                let now = (inp.now_ms)();
                self.on_group(inp, partition, group_id, |g| match g {
                    None => Reply::Now(SyncResult::error(code::UNKNOWN_MEMBER_ID)),
                    Some(g) => g.sync(args, now),
                })
            }
        };
        wait(inp.stop, reply)
            .await
            .unwrap_or_else(|| SyncResult::error(code::COORDINATOR_NOT_AVAILABLE))
    }

    async fn heartbeat(
        &self,
        inp: &Inputs<'_>,
        partition: i32,
        group_id: &str,
        who: Caller<'_>,
    ) -> i16 {
        if let Err(e) = self.ensure_loaded(inp, partition).await {
            return e;
        }
        let now = (inp.now_ms)();
        self.on_group(inp, partition, group_id, |g| match g {
            None => code::UNKNOWN_MEMBER_ID,
            Some(g) => g.heartbeat(who.member_id, who.instance_id, who.generation, now),
        })
    }

    async fn leave(
        &self,
        inp: &Inputs<'_>,
        partition: i32,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<i16>, i16> {
        self.ensure_loaded(inp, partition).await?;
        let now = (inp.now_ms)();
        let limits = self.limits;
        Ok(self.on_group(inp, partition, group_id, |g| match g {
            None => vec![code::UNKNOWN_MEMBER_ID; members.len()],
            Some(g) => members
                .iter()
                .map(|(m, i)| g.leave(m, i.as_deref(), &limits, now))
                .collect(),
        }))
    }

    /// OffsetCommit: validated, written durably, then applied in memory.
    async fn commit(
        &self,
        inp: &Inputs<'_>,
        partition: i32,
        group_id: &str,
        who: Caller<'_>,
        offsets: &[CommitEntry],
        version: i16,
    ) -> Result<Vec<i16>, i16> {
        self.ensure_loaded(inp, partition).await?;
        let now = (inp.now_ms)();
        let plan = self.commit_prepare(group_id, who, offsets, version, inp.topics, now)?;
        let CommitPlan {
            mut codes,
            records,
            written,
        } = plan;
        if records.is_empty() {
            return Ok(codes);
        }
        match journal::append(inp.shard, partition, &records, (inp.now_ms)()).await {
            Ok(base) => self.commit_applied(group_id, offsets, written, base, now),
            Err(c) => {
                for (i, _) in written {
                    codes[i] = c;
                }
            }
        }
        Ok(codes)
    }

    /// Validates an OffsetCommit (Kafka's order of checks) and builds its records. A commit
    /// without a generation (`< 0`) to an unknown group creates the group, as in Kafka.
    pub(super) fn commit_prepare(
        &self,
        group_id: &str,
        who: Caller<'_>,
        offsets: &[CommitEntry],
        version: i16,
        topics: &TopicTable,
        now: i64,
    ) -> Result<CommitPlan, i16> {
        {
            let mut groups = self.groups.borrow_mut();
            match groups.get_mut(group_id) {
                None if who.generation < 0 => {
                    groups.insert(group_id.to_owned(), Group::new(group_id, now));
                }
                None if version >= 9 => return Err(code::GROUP_ID_NOT_FOUND),
                None => return Err(code::ILLEGAL_GENERATION),
                Some(g) => {
                    g.validate_commit(who.member_id, who.instance_id, who.generation, now)?;
                }
            }
        }
        let mut plan = CommitPlan::default();
        for (i, e) in offsets.iter().enumerate() {
            let c = if !has_partition(topics, &e.topic, e.partition) {
                code::UNKNOWN_TOPIC_OR_PARTITION
            } else if e.metadata.len() > self.metadata_max_bytes {
                code::OFFSET_METADATA_TOO_LARGE
            } else {
                let value = OffsetValue {
                    offset: e.offset,
                    leader_epoch: e.leader_epoch,
                    metadata: e.metadata.clone(),
                    commit_timestamp_ms: now,
                };
                plan.records.push((
                    records::offset_key(group_id, &e.topic, e.partition),
                    Some(records::offset_value(&value)),
                ));
                plan.written.push((i, value));
                code::NONE
            };
            plan.codes.push(c);
        }
        Ok(plan)
    }

    /// Applies a commit whose records are durable from log offset `base` on. An offset is
    /// replaced only by a record later in the log, so a commit whose append finished after a
    /// newer one's does not undo it. The group is made again if it was deleted meanwhile.
    pub(super) fn commit_applied(
        &self,
        group_id: &str,
        offsets: &[CommitEntry],
        written: Vec<(usize, OffsetValue)>,
        base: i64,
        now: i64,
    ) {
        let mut groups = self.groups.borrow_mut();
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
                    Committed {
                        value,
                        record_offset: at,
                    },
                );
            }
        }
    }

    /// OffsetFetch and the transactional calls: TxnOffsetCommit, and a marker reaching a
    /// partition.
    async fn serve_offsets(&self, inp: &Inputs<'_>, call: GroupCall) -> GroupReply {
        match call {
            GroupCall::FetchOffsets {
                partition,
                group,
                topics,
                require_stable,
            } => {
                let r = self.fetch_offsets(inp, partition, &group, topics).await;
                GroupReply::Offsets(r.map(|t| self.unstable(&group, t, require_stable)))
            }
            GroupCall::TxnCommit {
                partition,
                group,
                producer,
                member_id,
                instance_id,
                generation,
                offsets,
            } => {
                let who = Caller::new(&member_id, instance_id.as_deref(), generation);
                let r = self.txn_commit(inp, (partition, &group), who, producer, &offsets);
                GroupReply::Commit(r.await)
            }
            GroupCall::TxnEnded {
                partition,
                producer_id,
                commit,
            } => {
                if self.loaded.borrow().contains(&partition) {
                    let n = offsets_partitions(inp.topics);
                    let mut groups = self.groups.borrow_mut();
                    let mine = groups
                        .values_mut()
                        .filter(|g| partition_for(&g.id, n) == partition);
                    journal::end_txn(mine, producer_id, commit);
                }
                GroupReply::Code(code::NONE)
            }
            other => unreachable!("not an offsets call: {other:?}"),
        }
    }

    /// TxnOffsetCommit: validated as an OffsetCommit (a generation below 0 skips the member
    /// checks and creates an unknown group), written as a transactional batch of the producer,
    /// and kept pending in the group until the producer's marker commits or aborts it.
    async fn txn_commit(
        &self,
        inp: &Inputs<'_>,
        (partition, group_id): (i32, &str),
        who: Caller<'_>,
        producer: (i64, i16),
        offsets: &[CommitEntry],
    ) -> Result<Vec<i16>, i16> {
        self.ensure_loaded(inp, partition).await?;
        let now = (inp.now_ms)();
        // Version 8 rules: an unknown group with a generation is ILLEGAL_GENERATION.
        let plan = self.commit_prepare(group_id, who, offsets, 8, inp.topics, now)?;
        let CommitPlan {
            mut codes,
            records,
            written,
        } = plan;
        if records.is_empty() {
            return Ok(codes);
        }
        let appended =
            journal::append_txn(inp.shard, partition, &records, producer, (inp.now_ms)()).await;
        match appended {
            Ok(base) => {
                let mut groups = self.groups.borrow_mut();
                let g = groups
                    .entry(group_id.to_owned())
                    .or_insert_with(|| Group::new(group_id, now));
                let pending = g.pending_txn.entry(producer.0).or_default();
                for (n, (i, value)) in written.into_iter().enumerate() {
                    let key = (offsets[i].topic.clone(), offsets[i].partition);
                    let record_offset = base + n as i64;
                    pending.insert(
                        key,
                        Committed {
                            value,
                            record_offset,
                        },
                    );
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

    /// With `require_stable`, marks UNSTABLE_OFFSET_COMMIT on the partitions of `found` that
    /// have an offset pending in an open transaction (Kafka's answer to a read_committed
    /// consumer, which retries).
    fn unstable(
        &self,
        group_id: &str,
        mut found: Vec<(String, Vec<FetchedOffset>)>,
        require_stable: bool,
    ) -> Vec<(String, Vec<FetchedOffset>)> {
        if !require_stable {
            return found;
        }
        let groups = self.groups.borrow();
        let Some(g) = groups.get(group_id) else {
            return found;
        };
        for (topic, list) in &mut found {
            for f in list.iter_mut() {
                let key = (topic.clone(), f.partition);
                if g.pending_txn.values().any(|p| p.contains_key(&key)) {
                    f.offset = -1;
                    f.leader_epoch = -1;
                    f.metadata = String::new();
                    f.error = code::UNSTABLE_OFFSET_COMMIT;
                }
            }
        }
        found
    }

    async fn fetch_offsets(
        &self,
        inp: &Inputs<'_>,
        partition: i32,
        group_id: &str,
        topics: Option<Vec<(String, Vec<i32>)>>,
    ) -> Result<Vec<(String, Vec<FetchedOffset>)>, i16> {
        self.ensure_loaded(inp, partition).await?;
        Ok(self.committed_offsets(group_id, topics))
    }

    /// OffsetFetch on a loaded partition: the listed partitions (offset -1 where nothing is
    /// committed), or with `None` every committed offset, by topic name and partition.
    pub(super) fn committed_offsets(
        &self,
        group_id: &str,
        topics: Option<Vec<(String, Vec<i32>)>>,
    ) -> Vec<(String, Vec<FetchedOffset>)> {
        let groups = self.groups.borrow();
        let g = groups.get(group_id);
        let found = |topic: &str, p: i32| {
            let c = g.and_then(|g| g.offsets.get(&(topic.to_owned(), p)));
            FetchedOffset {
                partition: p,
                offset: c.map_or(-1, |c| c.value.offset),
                leader_epoch: c.map_or(-1, |c| c.value.leader_epoch),
                metadata: c.map(|c| c.value.metadata.clone()).unwrap_or_default(),
                error: code::NONE,
            }
        };
        let topics = topics.unwrap_or_else(|| {
            let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
            for (t, p) in g.iter().flat_map(|g| g.offsets.keys()) {
                by_topic.entry(t.clone()).or_default().push(*p);
            }
            for ps in by_topic.values_mut() {
                ps.sort_unstable();
            }
            by_topic.into_iter().collect()
        });
        topics
            .into_iter()
            .map(|(t, ps)| {
                let list = ps.iter().map(|&p| found(&t, p)).collect();
                (t, list)
            })
            .collect()
    }

    async fn describe(&self, inp: &Inputs<'_>, wanted: Vec<(i32, String)>) -> Vec<Described> {
        let mut out = Vec::with_capacity(wanted.len());
        for (p, id) in wanted {
            out.push(match self.ensure_loaded(inp, p).await {
                Err(e) => Described {
                    error: e,
                    ..not_found(id)
                },
                Ok(()) => self.describe_now(id),
            });
        }
        out
    }

    /// DescribeGroups for one group of a loaded partition; protocol and member metadata only
    /// for a `Stable` group, as Kafka answers.
    pub(super) fn describe_now(&self, id: String) -> Described {
        let groups = self.groups.borrow();
        let Some(g) = groups.get(&id).filter(|g| g.state != State::Dead) else {
            return not_found(id);
        };
        let stable = g.state == State::Stable;
        let protocol = g.protocol.clone().unwrap_or_default();
        let members = g
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
        Described {
            found: true,
            state: g.state.name(),
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol: if stable { protocol } else { String::new() },
            members,
            ..not_found(id)
        }
    }

    async fn list(&self, inp: &Inputs<'_>) -> Vec<Listed> {
        let owned: Vec<i32> = match inp.topics.topics.get(super::OFFSETS_TOPIC) {
            Some(t) => (0..t.partitions).filter(|&p| (inp.owns)(p)).collect(),
            None => Vec::new(),
        };
        for p in owned {
            if let Err(e) = self.ensure_loaded(inp, p).await {
                tracing::warn!(
                    partition = p,
                    error = e,
                    "ListGroups skips a partition that cannot load"
                );
            }
        }
        self.list_now()
    }

    /// ListGroups over the loaded groups, by group id.
    pub(super) fn list_now(&self) -> Vec<Listed> {
        let groups = self.groups.borrow();
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

    async fn delete(&self, inp: &Inputs<'_>, wanted: Vec<(i32, String)>) -> Vec<i16> {
        let mut out = Vec::with_capacity(wanted.len());
        for (p, id) in wanted {
            if let Err(e) = self.ensure_loaded(inp, p).await {
                out.push(e);
                continue;
            }
            let result = match self.delete_now(&id, (inp.now_ms)()) {
                Err(c) => Err(c),
                Ok(recs) => journal::append(inp.shard, p, &recs, (inp.now_ms)()).await,
            };
            out.push(result.map_or_else(|c| c, |_| code::NONE));
        }
        out
    }

    /// DeleteGroups for one group of a loaded partition: only an `Empty` group goes; the
    /// tombstones for its offsets and its metadata.
    pub(super) fn delete_now(&self, id: &str, now: i64) -> Result<Vec<Record>, i16> {
        let mut groups = self.groups.borrow_mut();
        let g = match groups.get_mut(id) {
            None => return Err(code::GROUP_ID_NOT_FOUND),
            Some(g) if g.state == State::Dead => return Err(code::GROUP_ID_NOT_FOUND),
            Some(g) if g.state != State::Empty => return Err(code::NON_EMPTY_GROUP),
            Some(g) => g,
        };
        let recs = tombstones(g, None, true);
        g.kill(now);
        groups.remove(id);
        Ok(recs)
    }

    async fn delete_offsets(
        &self,
        inp: &Inputs<'_>,
        partition: i32,
        group_id: &str,
        partitions: &[(String, i32)],
    ) -> Result<Vec<i16>, i16> {
        self.ensure_loaded(inp, partition).await?;
        let (codes, recs) = self.delete_offsets_now(group_id, partitions, inp.topics)?;
        if !recs.is_empty() {
            journal::append(inp.shard, partition, &recs, (inp.now_ms)()).await?;
        }
        Ok(codes)
    }

    /// OffsetDelete on a loaded partition: one code per partition, and the tombstones. Offsets
    /// of topics a member of a `consumer` group subscribes to stay; other protocol types may
    /// delete offsets only when the group is `Empty`.
    pub(super) fn delete_offsets_now(
        &self,
        group_id: &str,
        partitions: &[(String, i32)],
        topics: &TopicTable,
    ) -> Result<(Vec<i16>, Vec<Record>), i16> {
        let mut groups = self.groups.borrow_mut();
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
        for (t, p) in partitions {
            codes.push(if !has_partition(topics, t, *p) {
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
        Ok((codes, recs))
    }
}

/// The answer, now or when the group gives it; `None` (COORDINATOR_NOT_AVAILABLE to the
/// client) if the broker stops first, so a member mid-rebalance does not hold up a stop.
async fn wait<T>(stop: &StopSignal, r: Reply<T>) -> Option<T> {
    match r {
        Reply::Now(v) => Some(v),
        Reply::Wait(rx) => {
            futures_lite::future::or(rx.recv(), async {
                stop.stopped().await;
                None
            })
            .await
        }
    }
}

/// The group's metadata record if the group changed since it was last written (clearing the
/// mark). The partition is the group's, passed in by the caller that knows it.
pub(super) fn metadata_write(g: &mut Group, partition: i32) -> Option<Write> {
    std::mem::take(&mut g.dirty).then(|| Write {
        partition,
        records: vec![(
            records::group_key(&g.id),
            Some(records::group_value(&g.stored())),
        )],
    })
}

/// [`metadata_write`] for a group whose partition follows from its id (the timers, which
/// see every group at once).
pub(super) fn metadata_write_placed(g: &mut Group, offsets_partitions: i32) -> Option<Write> {
    let partition = partition_for(&g.id, offsets_partitions);
    metadata_write(g, partition)
}

/// Tombstones for a group's offsets (all, or the listed ones) and, with `whole`, its metadata.
pub(super) fn tombstones(g: &Group, only: Option<&[(String, i32)]>, whole: bool) -> Vec<Record> {
    let mut recs: Vec<Record> = g
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

fn has_partition(table: &TopicTable, topic: &str, partition: i32) -> bool {
    table
        .topics
        .get(topic)
        .is_some_and(|t| (0..t.partitions).contains(&partition))
}

/// A group as DescribeGroups reports one it does not know.
fn not_found(group_id: String) -> Described {
    Described {
        group_id,
        found: false,
        error: code::NONE,
        state: State::Dead.name(),
        protocol_type: String::new(),
        protocol: String::new(),
        members: Vec::new(),
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

#[cfg(test)]
mod tests {
    use glommio::channels::local_channel::LocalReceiver;

    use super::*;
    use crate::groups::timers;
    use crate::metadata::TopicMeta;

    const OFFSETS_PARTITIONS: i32 = 50;

    /// A commit outside any generation (a standalone consumer or an admin tool).
    const SIMPLE: Caller<'static> = Caller {
        member_id: "",
        instance_id: None,
        generation: -1,
    };

    fn coordinator() -> Coordinator {
        let config = BrokerConfig {
            group_initial_rebalance_delay_ms: 0,
            ..BrokerConfig::default()
        };
        Coordinator::new(&config, 0)
    }

    fn table(topics: &[(&str, i32)]) -> TopicTable {
        let mut table = TopicTable::default();
        for &(name, partitions) in topics {
            let meta = TopicMeta {
                name: name.to_owned(),
                id: [1; 16],
                partitions,
                configs: BTreeMap::new(),
                created_ms: 0,
            };
            table.topics.insert(name.to_owned(), meta);
        }
        table
    }

    fn entry(topic: &str, partition: i32, offset: i64, metadata: &str) -> CommitEntry {
        CommitEntry {
            topic: topic.to_owned(),
            partition,
            offset,
            leader_epoch: -1,
            metadata: metadata.to_owned(),
        }
    }

    fn join_args(member_id: &str) -> JoinArgs {
        JoinArgs {
            member_id: member_id.to_owned(),
            group_instance_id: None,
            client_id: "client".to_owned(),
            client_host: "/127.0.0.1".to_owned(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            protocol_type: "consumer".to_owned(),
            protocols: vec![("range".to_owned(), subscription_to_u())],
            require_known_member_id: false,
            supports_skip_assignment: true,
        }
    }

    /// A consumer protocol subscription (version 0) to topic `u`.
    fn subscription_to_u() -> Bytes {
        Bytes::from_static(&[0, 0, 0, 0, 0, 1, 0, 1, b'u'])
    }

    fn ready<T>(rx: &LocalReceiver<T>) -> Option<T> {
        futures_lite::future::block_on(futures_lite::future::poll_once(rx.recv())).flatten()
    }

    /// Commits `offsets` outside any generation, as if their records landed at `base..`.
    fn commit(c: &Coordinator, group: &str, offsets: &[CommitEntry], base: i64, now: i64) {
        commit_as(c, SIMPLE, group, offsets, base, now);
    }

    fn commit_as(
        c: &Coordinator,
        who: Caller<'_>,
        group: &str,
        offsets: &[CommitEntry],
        base: i64,
        now: i64,
    ) {
        let topics = table(&[("t", 2), ("u", 1)]);
        let plan = c
            .commit_prepare(group, who, offsets, 9, &topics, now)
            .expect("the commit is accepted");
        assert!(plan.codes.iter().all(|&c| c == code::NONE));
        c.commit_applied(group, offsets, plan.written, base, now);
    }

    fn offset_of(c: &Coordinator, group: &str, topic: &str, partition: i32) -> i64 {
        let asked = Some(vec![(topic.to_owned(), vec![partition])]);
        c.committed_offsets(group, asked)[0].1[0].offset
    }

    /// A member joins a new group and, as leader, syncs: the group is Stable with one member.
    /// Returns the member id and the metadata write the sync produced.
    fn stable_group(c: &Coordinator, group: &str, now: i64) -> (String, Option<Write>) {
        let p = partition_for(group, OFFSETS_PARTITIONS);
        let (reply, _) = c.join_now(p, group, join_args(""), now);
        let Reply::Wait(rx) = reply else {
            panic!("a join waits for the rebalance");
        };
        let joined = ready(&rx).expect("with no initial delay the join completes at once");
        assert_eq!(joined.error, code::NONE);
        let args = SyncArgs {
            member_id: joined.member_id.clone(),
            instance_id: None,
            generation: joined.generation,
            protocol_type: None,
            protocol_name: None,
            require_protocol: false,
            assignments: vec![(joined.member_id.clone(), Bytes::from_static(b"a"))],
        };
        let (_, write) = c.with_group(p, group, |g| g.map(|g| g.sync(args, now)));
        (joined.member_id, write)
    }

    /// An OffsetCommit with a generation to a group the coordinator does not know is refused
    /// as Kafka refuses it (GROUP_ID_NOT_FOUND from v9, ILLEGAL_GENERATION before), and no
    /// group is made; without a generation the group is made.
    #[test]
    fn commit_to_an_unknown_group() {
        let c = coordinator();
        let topics = table(&[("t", 1)]);
        let offsets = [entry("t", 0, 5, "")];
        let member = Caller {
            member_id: "m",
            instance_id: None,
            generation: 1,
        };
        let v9 = c.commit_prepare("g", member, &offsets, 9, &topics, 0);
        assert_eq!(v9.err(), Some(code::GROUP_ID_NOT_FOUND));
        let v8 = c.commit_prepare("g", member, &offsets, 8, &topics, 0);
        assert_eq!(v8.err(), Some(code::ILLEGAL_GENERATION));
        assert!(c.groups.borrow().is_empty());
        assert!(
            c.commit_prepare("g", SIMPLE, &offsets, 9, &topics, 0)
                .is_ok()
        );
        assert_eq!(c.groups.borrow()["g"].state, State::Empty);
    }

    /// Each entry of a commit gets its own code; only the valid ones become records, in
    /// order, with the index of their entry.
    #[test]
    fn commit_validates_each_entry() {
        let c = coordinator();
        let topics = table(&[("t", 2)]);
        let too_long = "x".repeat(BrokerConfig::default().offset_metadata_max_bytes + 1);
        let offsets = [
            entry("t", 0, 5, "m"),
            entry("missing", 0, 5, ""),
            entry("t", 2, 5, ""),
            entry("t", 1, 5, &too_long),
            entry("t", 1, 6, ""),
        ];
        let plan = c
            .commit_prepare("g", SIMPLE, &offsets, 9, &topics, 77)
            .expect("accepted");
        assert_eq!(
            plan.codes,
            [
                code::NONE,
                code::UNKNOWN_TOPIC_OR_PARTITION,
                code::UNKNOWN_TOPIC_OR_PARTITION,
                code::OFFSET_METADATA_TOO_LARGE,
                code::NONE,
            ]
        );
        assert_eq!(plan.records.len(), 2);
        assert_eq!(plan.records[0].0, records::offset_key("g", "t", 0));
        let indexes: Vec<usize> = plan.written.iter().map(|(i, _)| *i).collect();
        assert_eq!(indexes, [0, 4]);
        assert_eq!(plan.written[0].1.commit_timestamp_ms, 77);
        // Nothing is applied before the records are durable.
        assert!(c.groups.borrow()["g"].offsets.is_empty());
    }

    /// A commit whose append finished after a newer one's (an older record offset) does not
    /// undo it: the record's place in the log decides, as on replay.
    #[test]
    fn commit_applied_keeps_the_later_record() {
        let c = coordinator();
        commit(&c, "g", &[entry("t", 0, 5, "")], 10, 0);
        assert_eq!(offset_of(&c, "g", "t", 0), 5);
        commit(&c, "g", &[entry("t", 0, 3, "")], 7, 0);
        assert_eq!(offset_of(&c, "g", "t", 0), 5);
        commit(
            &c,
            "g",
            &[entry("t", 0, 9, ""), entry("t", 1, 1, "")],
            12,
            0,
        );
        assert_eq!(offset_of(&c, "g", "t", 0), 9);
        assert_eq!(
            c.groups.borrow()["g"].offsets[&("t".to_owned(), 1)].record_offset,
            13
        );
        // Unknown partitions answer -1; `None` lists every committed offset, sorted.
        assert_eq!(offset_of(&c, "g", "u", 0), -1);
        let all = c.committed_offsets("g", None);
        assert_eq!(all.len(), 1);
        let partitions: Vec<i32> = all[0].1.iter().map(|o| o.partition).collect();
        assert_eq!(partitions, [0, 1]);
    }

    /// An empty group's offsets expire `retention` after the group became empty, and the
    /// group goes with them: tombstones for each offset and for the group, in one write to
    /// the group's partition.
    #[test]
    fn empty_groups_expire_with_their_offsets() {
        let c = coordinator();
        commit(&c, "g", &[entry("t", 0, 5, ""), entry("t", 1, 6, "")], 0, 0);
        assert!(
            c.expire_offsets(c.retention_ms - 1, OFFSETS_PARTITIONS)
                .is_empty()
        );
        assert_eq!(c.groups.borrow()["g"].offsets.len(), 2);

        let writes = c.expire_offsets(c.retention_ms, OFFSETS_PARTITIONS);
        assert_eq!(writes.len(), 1);
        assert_eq!(writes[0].partition, partition_for("g", OFFSETS_PARTITIONS));
        let mut keys: Vec<Bytes> = writes[0].records.iter().map(|(k, _)| k.clone()).collect();
        keys.sort();
        let mut expected = vec![
            records::offset_key("g", "t", 0),
            records::offset_key("g", "t", 1),
            records::group_key("g"),
        ];
        expected.sort();
        assert_eq!(keys, expected);
        assert!(writes[0].records.iter().all(|(_, v)| v.is_none()));
        assert!(c.groups.borrow().is_empty());
    }

    /// In a group with members, only offsets of topics no member subscribes to expire (its
    /// member subscribes to `u`), `retention` after their commit; the group stays.
    #[test]
    fn active_groups_keep_subscribed_offsets_only() {
        let c = coordinator();
        let (member_id, _) = stable_group(&c, "g", 0);
        let member = Caller {
            member_id: &member_id,
            instance_id: None,
            generation: 1,
        };
        let offsets = [entry("t", 0, 5, ""), entry("u", 0, 6, "")];
        commit_as(&c, member, "g", &offsets, 0, 1000);
        assert!(
            c.expire_offsets(c.retention_ms, OFFSETS_PARTITIONS)
                .is_empty()
        );
        let writes = c.expire_offsets(c.retention_ms + 1000, OFFSETS_PARTITIONS);
        assert_eq!(writes.len(), 1);
        assert_eq!(
            writes[0].records,
            [(records::offset_key("g", "t", 0), None)]
        );
        assert_eq!(offset_of(&c, "g", "u", 0), 6);
        assert_eq!(c.groups.borrow()["g"].state, State::Stable);
    }

    /// The retention check runs once per interval.
    #[test]
    fn retention_check_is_periodic() {
        let c = coordinator();
        let interval = c.retention_check_ms;
        assert!(!c.retention_due(interval - 1));
        assert!(c.retention_due(interval));
        assert!(!c.retention_due(interval + 1));
        assert!(c.retention_due(2 * interval));
    }

    /// Forgetting a deleted topic touches only the groups of the named partition and only the
    /// offsets of that topic, and returns their tombstones.
    #[test]
    fn forgetting_deleted_topics() {
        let c = coordinator();
        let (a, b) = ("group-a", "group-b");
        let (pa, pb) = (
            partition_for(a, OFFSETS_PARTITIONS),
            partition_for(b, OFFSETS_PARTITIONS),
        );
        assert_ne!(pa, pb, "the test needs groups in two partitions");
        for g in [a, b] {
            commit(&c, g, &[entry("t", 0, 1, ""), entry("u", 0, 2, "")], 0, 0);
        }
        let recs = c.forget_topics(&|t| t == "t", pa, OFFSETS_PARTITIONS);
        assert_eq!(recs, [(records::offset_key(a, "t", 0), None)]);
        assert_eq!(offset_of(&c, a, "t", 0), -1);
        assert_eq!(offset_of(&c, a, "u", 0), 2);
        assert_eq!(offset_of(&c, b, "t", 0), 1);
        assert!(
            c.forget_topics(&|t| t == "t", pa, OFFSETS_PARTITIONS)
                .is_empty()
        );
    }

    /// DeleteGroups removes only an Empty group, with tombstones for its offsets and
    /// metadata.
    #[test]
    fn delete_only_empty_groups() {
        let c = coordinator();
        assert_eq!(
            c.delete_now("nope", 0).err(),
            Some(code::GROUP_ID_NOT_FOUND)
        );
        stable_group(&c, "busy", 0);
        assert_eq!(c.delete_now("busy", 0).err(), Some(code::NON_EMPTY_GROUP));
        commit(&c, "idle", &[entry("t", 0, 1, "")], 0, 0);
        let recs = c.delete_now("idle", 0).expect("an empty group is deleted");
        assert_eq!(
            recs,
            [
                (records::offset_key("idle", "t", 0), None),
                (records::group_key("idle"), None),
            ]
        );
        assert!(c.describe_now("idle".to_owned()).error == code::NONE);
        assert!(!c.describe_now("idle".to_owned()).found);
        let listed: Vec<String> = c.list_now().into_iter().map(|l| l.group_id).collect();
        assert_eq!(listed, ["busy"]);
    }

    /// OffsetDelete refuses offsets of subscribed topics and unknown partitions and deletes
    /// the rest; a group of another protocol type that is not empty refuses outright.
    #[test]
    fn delete_offsets_of_an_empty_group() {
        let c = coordinator();
        let topics = table(&[("t", 2)]);
        commit(&c, "g", &[entry("t", 0, 1, ""), entry("t", 1, 2, "")], 0, 0);
        let asked = [("t".to_owned(), 0), ("t".to_owned(), 5)];
        let (codes, recs) = c
            .delete_offsets_now("g", &asked, &topics)
            .expect("empty group");
        assert_eq!(codes, [code::NONE, code::UNKNOWN_TOPIC_OR_PARTITION]);
        assert_eq!(recs, [(records::offset_key("g", "t", 0), None)]);
        assert_eq!(offset_of(&c, "g", "t", 0), -1);
        assert_eq!(offset_of(&c, "g", "t", 1), 2);
        let none = c.delete_offsets_now("none", &asked, &topics);
        assert_eq!(none.err(), Some(code::GROUP_ID_NOT_FOUND));
    }

    /// The checks a JoinGroup passes before its partition loads.
    #[test]
    fn join_checks() {
        let c = coordinator();
        assert_eq!(
            c.join_check("", &join_args("")),
            Err(code::INVALID_GROUP_ID)
        );
        let mut short = join_args("");
        short.session_timeout_ms = c.limits.min_session_timeout_ms - 1;
        assert_eq!(
            c.join_check("g", &short),
            Err(code::INVALID_SESSION_TIMEOUT)
        );
        assert_eq!(c.join_check("g", &join_args("")), Ok(()));
        // A member id the coordinator never gave out, for a group it does not know.
        let (reply, write) = c.join_now(0, "g", join_args("stranger"), 0);
        let Reply::Now(r) = reply else {
            panic!("answered at once");
        };
        assert_eq!(r.error, code::UNKNOWN_MEMBER_ID);
        assert!(write.is_none());
        assert!(c.groups.borrow().is_empty());
    }

    /// Group metadata is written when a rebalance completes (to the group's partition), and
    /// again when the timers expire the last member's session and the group becomes empty.
    #[test]
    fn metadata_writes_follow_state_changes() {
        let c = coordinator();
        let p = partition_for("g", OFFSETS_PARTITIONS);
        let (_, write) = stable_group(&c, "g", 0);
        let write = write.expect("a completed rebalance writes the group");
        assert_eq!(write.partition, p);
        assert_eq!(write.records[0].0, records::group_key("g"));
        assert!(c.tick(5_000, OFFSETS_PARTITIONS).is_empty());
        let writes = c.tick(10_001, OFFSETS_PARTITIONS);
        assert_eq!(writes.len(), 1);
        assert_eq!(writes[0].partition, p);
        assert_eq!(c.groups.borrow()["g"].state, State::Empty);
        assert!(
            c.tick(10_001 + timers::TICK.as_millis() as i64, OFFSETS_PARTITIONS)
                .is_empty()
        );
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
