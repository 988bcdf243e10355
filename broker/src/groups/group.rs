//! One consumer group under the classic protocol: members, generations and the rebalance state
//! machine, as Kafka's coordinator runs it.
//!
//! States: `Empty` (no members; may hold committed offsets), `PreparingRebalance` (waiting for
//! every member to (re)join), `CompletingRebalance` (joined; waiting for the leader's
//! assignment in SyncGroup), `Stable`, and `Dead` (deleted or expired).
//!
//! Everything here is synchronous and runs on the coordinator's core: a request that must wait
//! (a JoinGroup until the rebalance completes, a follower's SyncGroup until the leader's
//! assignment arrives) leaves a one-shot sender in its member and the caller awaits the
//! receiver outside any borrow. Time is passed in (`now` in ms), so tests drive it.

use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::Bytes;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};

use super::records::{GroupValue, OffsetValue, StoredMember};
use sluice_net::error_code::code;

/// How long a new member that joined (after MEMBER_ID_REQUIRED or as a v0–3 client) may wait in
/// a rebalance before it is dropped (Kafka's `NewMemberJoinTimeoutMs`).
const NEW_MEMBER_JOIN_TIMEOUT_MS: i64 = 5 * 60 * 1000;

/// Bounds and delays from the broker config.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    pub initial_rebalance_delay_ms: i64,
    pub max_size: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl State {
    /// The name Kafka puts in DescribeGroups and ListGroups.
    pub fn name(self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::PreparingRebalance => "PreparingRebalance",
            State::CompletingRebalance => "CompletingRebalance",
            State::Stable => "Stable",
            State::Dead => "Dead",
        }
    }
}

/// What a JoinGroup gets back (the handler shapes it per version).
#[derive(Debug, Clone, Default)]
pub struct JoinResult {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// The members and their metadata: for the leader only.
    pub members: Vec<(String, Option<String>, Bytes)>,
    pub skip_assignment: bool,
}

impl JoinResult {
    /// A failed JoinGroup: the code, generation -1, and the member id as sent.
    pub fn error(error: i16, member_id: &str) -> JoinResult {
        JoinResult {
            error,
            generation: -1,
            member_id: member_id.to_owned(),
            ..JoinResult::default()
        }
    }
}

/// What a SyncGroup gets back.
#[derive(Debug, Clone, Default)]
pub struct SyncResult {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    /// A failed SyncGroup: the code alone.
    pub fn error(error: i16) -> SyncResult {
        SyncResult {
            error,
            ..SyncResult::default()
        }
    }
}

/// An answer now, or a receiver that gets it when the group moves on.
pub enum Reply<T> {
    Now(T),
    Wait(LocalReceiver<T>),
}

fn waiter<T>() -> (LocalSender<T>, LocalReceiver<T>) {
    local_channel::new_bounded(1)
}

fn send<T>(tx: LocalSender<T>, value: T) {
    // Capacity one and one value per sender: never full. An error means the request was
    // dropped (its connection closed), and then nobody waits for the answer.
    let _ = tx.try_send(value);
}

/// A SyncGroup's arguments.
#[derive(Debug, Clone)]
pub struct SyncArgs {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// v5+: both protocol fields must be given.
    pub require_protocol: bool,
    /// The leader's assignment: member id → assignment bytes (empty from followers).
    pub assignments: Vec<(String, Bytes)>,
}

/// A JoinGroup's arguments.
#[derive(Debug, Clone)]
pub struct JoinArgs {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// v4+: a member without an id first gets MEMBER_ID_REQUIRED.
    pub require_known_member_id: bool,
    /// v9+: a static leader that rejoins a stable group keeps its assignment.
    pub supports_skip_assignment: bool,
}

#[derive(Debug)]
pub struct Member {
    pub id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    awaiting_join: Option<LocalSender<JoinResult>>,
    awaiting_sync: Option<LocalSender<SyncResult>>,
    heartbeat_deadline_ms: i64,
    joined_at_ms: i64,
    is_new: bool,
    /// Order of arrival, so the first member becomes leader as in Kafka.
    seq: u64,
}

impl Member {
    /// The member's metadata for protocol `name`.
    pub fn metadata(&self, name: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    fn keep_alive(&self, now: i64) -> bool {
        if self.awaiting_join.is_some() {
            !self.is_new || now < self.joined_at_ms + NEW_MEMBER_JOIN_TIMEOUT_MS
        } else if self.awaiting_sync.is_some() {
            true
        } else {
            now < self.heartbeat_deadline_ms
        }
    }

    fn touch(&mut self, now: i64) {
        self.heartbeat_deadline_ms = now + i64::from(self.session_timeout_ms);
    }
}

/// A committed offset with the log position of the record that wrote it.
#[derive(Debug, Clone)]
pub struct Committed {
    pub value: OffsetValue,
    pub record_offset: i64,
}

#[derive(Debug)]
pub struct Group {
    pub id: String,
    pub state: State,
    pub state_since_ms: i64,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// `group.instance.id` → member id.
    static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, not yet joined → expiry.
    pending_members: HashMap<String, i64>,
    /// Members that got a JoinGroup answer and owe a SyncGroup.
    pending_sync: HashSet<String>,
    join_deadline_ms: Option<i64>,
    sync_deadline_ms: Option<i64>,
    /// The initial rebalance delay of a group that was empty.
    initial_delay_until_ms: Option<i64>,
    initial_delay_left_ms: i64,
    new_member_added: bool,
    next_seq: u64,
    pub offsets: HashMap<(String, i32), Committed>,
    /// Offsets of open transactions (TxnOffsetCommit), by producer id: committed by the
    /// producer's COMMIT marker on this group's `__consumer_offsets` partition, dropped by ABORT.
    pub pending_txn: HashMap<i64, HashMap<(String, i32), Committed>>,
    /// The stored group metadata no longer matches: the coordinator writes a new record.
    pub dirty: bool,
}

impl Group {
    pub fn new(id: &str, now: i64) -> Group {
        Group {
            id: id.to_owned(),
            state: State::Empty,
            state_since_ms: now,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending_members: HashMap::new(),
            pending_sync: HashSet::new(),
            join_deadline_ms: None,
            sync_deadline_ms: None,
            initial_delay_until_ms: None,
            initial_delay_left_ms: 0,
            new_member_added: false,
            next_seq: 0,
            offsets: HashMap::new(),
            pending_txn: HashMap::new(),
            dirty: false,
        }
    }

    /// A group as its stored metadata describes it: `Stable` with its members (whose sessions
    /// start now) or `Empty`.
    pub fn restore(&mut self, v: GroupValue, now: i64) {
        self.generation = v.generation;
        self.protocol_type = (!v.protocol_type.is_empty()).then_some(v.protocol_type);
        self.protocol = v.protocol;
        self.members.clear();
        self.static_members.clear();
        for m in v.members {
            if let Some(i) = &m.group_instance_id {
                self.static_members.insert(i.clone(), m.member_id.clone());
            }
            let protocols = match &self.protocol {
                Some(p) => vec![(p.clone(), m.subscription.clone())],
                None => Vec::new(),
            };
            let seq = self.next_seq;
            self.next_seq += 1;
            self.members.insert(
                m.member_id.clone(),
                Member {
                    id: m.member_id,
                    group_instance_id: m.group_instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    session_timeout_ms: m.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    protocols,
                    assignment: m.assignment,
                    awaiting_join: None,
                    awaiting_sync: None,
                    heartbeat_deadline_ms: now + i64::from(m.session_timeout_ms),
                    joined_at_ms: now,
                    is_new: false,
                    seq,
                },
            );
        }
        self.leader = v.leader.filter(|l| self.members.contains_key(l));
        self.state = if self.members.is_empty() {
            State::Empty
        } else {
            State::Stable
        };
        self.state_since_ms = if v.current_state_timestamp_ms > 0 {
            v.current_state_timestamp_ms
        } else {
            now
        };
    }

    /// The metadata record of this group as it is now.
    pub fn stored(&self) -> GroupValue {
        let protocol = self.protocol.clone().unwrap_or_default();
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            current_state_timestamp_ms: self.state_since_ms,
            members: self
                .members_in_order()
                .map(|m| StoredMember {
                    member_id: m.id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata(&protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// Members in the order they joined.
    pub fn members_in_order(&self) -> impl Iterator<Item = &Member> {
        let mut v: Vec<&Member> = self.members.values().collect();
        v.sort_by_key(|m| m.seq);
        v.into_iter()
    }

    fn set_state(&mut self, state: State, now: i64) {
        self.state = state;
        self.state_since_ms = now;
    }

    /// Whether the group is a plain holder of offsets nobody uses (dropped after a failed join).
    pub fn is_vacant(&self) -> bool {
        self.state == State::Empty
            && self.members.is_empty()
            && self.offsets.is_empty()
            && self.pending_members.is_empty()
            && self.generation == 0
            && self.protocol_type.is_none()
    }

    fn max_rebalance_timeout(&self) -> i64 {
        self.members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }

    /// Kafka's check that a joining member can be in this group.
    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        protocols.iter().any(|(name, _)| {
            self.members
                .values()
                .all(|m| m.protocols.iter().any(|(n, _)| n == name))
        })
    }

    /// The protocol every member supports that most members prefer (Kafka's vote).
    fn select_protocol(&self) -> Option<String> {
        let candidates: Vec<&str> = self
            .members_in_order()
            .next()?
            .protocols
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|name| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == name))
            })
            .collect();
        let mut votes: Vec<(usize, &str)> = candidates.iter().map(|c| (0, *c)).collect();
        for m in self.members_in_order() {
            if let Some((n, _)) = m
                .protocols
                .iter()
                .find(|(n, _)| candidates.contains(&n.as_str()))
                && let Some(v) = votes.iter_mut().find(|(_, c)| c == n)
            {
                v.0 += 1;
            }
        }
        // Most votes; ties go to the earlier candidate.
        let mut best: Option<(usize, &str)> = None;
        for v in votes {
            if best.is_none_or(|b| v.0 > b.0) {
                best = Some(v);
            }
        }
        best.map(|(_, n)| n.to_owned())
    }

    fn current_members(&self) -> Vec<(String, Option<String>, Bytes)> {
        let protocol = self.protocol.clone().unwrap_or_default();
        self.members_in_order()
            .map(|m| {
                (
                    m.id.clone(),
                    m.group_instance_id.clone(),
                    m.metadata(&protocol),
                )
            })
            .collect()
    }

    fn join_result(&self, member_id: &str, with_members: bool) -> JoinResult {
        JoinResult {
            error: code::NONE,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_owned(),
            members: if with_members {
                self.current_members()
            } else {
                Vec::new()
            },
            skip_assignment: false,
        }
    }

    /// Checks that `member_id` (and `instance_id`, if given) name a current member.
    pub fn validate_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), i16> {
        if let Some(instance) = instance_id {
            return match self.static_members.get(instance) {
                Some(id) if id == member_id => Ok(()),
                Some(_) => Err(code::FENCED_INSTANCE_ID),
                None => Err(code::UNKNOWN_MEMBER_ID),
            };
        }
        if self.members.contains_key(member_id) {
            Ok(())
        } else {
            Err(code::UNKNOWN_MEMBER_ID)
        }
    }

    /// JoinGroup. `new_member_id` makes a fresh member id (`prefix-uuid`).
    pub fn join(
        &mut self,
        args: JoinArgs,
        limits: &Limits,
        now: i64,
        new_member_id: &dyn Fn(&str) -> String,
    ) -> Reply<JoinResult> {
        if self.state == State::Dead {
            return Reply::Now(JoinResult::error(
                code::COORDINATOR_NOT_AVAILABLE,
                &args.member_id,
            ));
        }
        if !self.supports(&args.protocol_type, &args.protocols) {
            return Reply::Now(JoinResult::error(
                code::INCONSISTENT_GROUP_PROTOCOL,
                &args.member_id,
            ));
        }
        if args.member_id.is_empty() {
            return self.join_unknown_member(args, limits, now, new_member_id);
        }
        if self.pending_members.remove(&args.member_id).is_some() {
            if self.members.len() >= limits.max_size {
                return Reply::Now(JoinResult::error(
                    code::GROUP_MAX_SIZE_REACHED,
                    &args.member_id,
                ));
            }
            let id = args.member_id.clone();
            return self.add_member_and_rebalance(id, args, limits, now);
        }
        if let Err(e) = self.validate_member(&args.member_id, args.group_instance_id.as_deref()) {
            return Reply::Now(JoinResult::error(e, &args.member_id));
        }
        let id = args.member_id.clone();
        match self.state {
            State::PreparingRebalance => self.update_member_and_wait(&id, args, now),
            State::CompletingRebalance => {
                let same = self.members[&id].protocols == args.protocols;
                if same {
                    // A duplicate JoinGroup (the answer was lost): answer it again.
                    let leader = self.leader.as_deref() == Some(id.as_str());
                    self.members.get_mut(&id).expect("validated").touch(now);
                    Reply::Now(self.join_result(&id, leader))
                } else {
                    let r = self.update_member_and_wait(&id, args, now);
                    self.prepare_rebalance(limits, now);
                    r
                }
            }
            State::Stable => {
                let leader = self.leader.as_deref() == Some(id.as_str());
                let same = self.members[&id].protocols == args.protocols;
                if leader || !same {
                    let r = self.update_member_and_wait(&id, args, now);
                    self.prepare_rebalance(limits, now);
                    r
                } else {
                    self.members.get_mut(&id).expect("validated").touch(now);
                    Reply::Now(self.join_result(&id, false))
                }
            }
            State::Empty | State::Dead => {
                Reply::Now(JoinResult::error(code::UNKNOWN_MEMBER_ID, &args.member_id))
            }
        }
    }

    fn join_unknown_member(
        &mut self,
        args: JoinArgs,
        limits: &Limits,
        now: i64,
        new_member_id: &dyn Fn(&str) -> String,
    ) -> Reply<JoinResult> {
        if let Some(instance) = args.group_instance_id.clone() {
            let new_id = new_member_id(&instance);
            if let Some(old_id) = self.static_members.get(&instance).cloned() {
                return self.replace_static_member(&old_id, new_id, args, limits, now);
            }
            if self.members.len() >= limits.max_size {
                return Reply::Now(JoinResult::error(code::GROUP_MAX_SIZE_REACHED, ""));
            }
            return self.add_member_and_rebalance(new_id, args, limits, now);
        }
        let new_id = new_member_id(&args.client_id);
        if self.members.len() + self.pending_members.len() >= limits.max_size {
            return Reply::Now(JoinResult::error(code::GROUP_MAX_SIZE_REACHED, ""));
        }
        if args.require_known_member_id {
            self.pending_members
                .insert(new_id.clone(), now + i64::from(args.session_timeout_ms));
            return Reply::Now(JoinResult::error(code::MEMBER_ID_REQUIRED, &new_id));
        }
        self.add_member_and_rebalance(new_id, args, limits, now)
    }

    /// A static member came back with a new process (no member id): it takes over the old
    /// member's place, and the old member id is fenced.
    fn replace_static_member(
        &mut self,
        old_id: &str,
        new_id: String,
        args: JoinArgs,
        limits: &Limits,
        now: i64,
    ) -> Reply<JoinResult> {
        let Some(mut m) = self.members.remove(old_id) else {
            return Reply::Now(JoinResult::error(code::UNKNOWN_MEMBER_ID, ""));
        };
        if let Some(tx) = m.awaiting_join.take() {
            send(tx, JoinResult::error(code::FENCED_INSTANCE_ID, old_id));
        }
        if let Some(tx) = m.awaiting_sync.take() {
            send(tx, SyncResult::error(code::FENCED_INSTANCE_ID));
        }
        let same = m.protocols == args.protocols;
        m.id = new_id.clone();
        m.client_id = args.client_id.clone();
        m.client_host = args.client_host.clone();
        m.session_timeout_ms = args.session_timeout_ms;
        m.rebalance_timeout_ms = args.rebalance_timeout_ms;
        m.protocols = args.protocols.clone();
        m.touch(now);
        self.members.insert(new_id.clone(), m);
        if let Some(instance) = &args.group_instance_id {
            self.static_members.insert(instance.clone(), new_id.clone());
        }
        if self.pending_sync.remove(old_id) {
            self.pending_sync.insert(new_id.clone());
        }
        if self.leader.as_deref() == Some(old_id) {
            self.leader = Some(new_id.clone());
        }
        match self.state {
            State::Stable if same => {
                // No rebalance: the member keeps its assignment (SyncGroup hands it back).
                // Like Kafka, a pre-v9 client is answered as a follower (the old leader id, no
                // members) so it does not compute an assignment nobody would use; v9 is told
                // it leads and to skip the assignment.
                self.dirty = true;
                let leader = self.leader.as_deref() == Some(new_id.as_str());
                let r = if args.supports_skip_assignment {
                    let mut r = self.join_result(&new_id, leader);
                    r.skip_assignment = leader;
                    r
                } else {
                    let mut r = self.join_result(&new_id, false);
                    if leader {
                        r.leader = old_id.to_owned();
                    }
                    r
                };
                Reply::Now(r)
            }
            State::PreparingRebalance => self.update_member_and_wait(&new_id, args, now),
            _ => {
                let r = self.update_member_and_wait(&new_id, args, now);
                self.prepare_rebalance(limits, now);
                r
            }
        }
    }

    fn add_member_and_rebalance(
        &mut self,
        id: String,
        args: JoinArgs,
        limits: &Limits,
        now: i64,
    ) -> Reply<JoinResult> {
        let (tx, rx) = waiter();
        if self.members.is_empty() {
            self.protocol_type = Some(args.protocol_type.clone());
        }
        if let Some(instance) = &args.group_instance_id {
            self.static_members.insert(instance.clone(), id.clone());
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.members.insert(
            id.clone(),
            Member {
                id: id.clone(),
                group_instance_id: args.group_instance_id,
                client_id: args.client_id,
                client_host: args.client_host,
                session_timeout_ms: args.session_timeout_ms,
                rebalance_timeout_ms: args.rebalance_timeout_ms,
                protocols: args.protocols,
                assignment: Bytes::new(),
                awaiting_join: Some(tx),
                awaiting_sync: None,
                heartbeat_deadline_ms: now + i64::from(args.session_timeout_ms),
                joined_at_ms: now,
                is_new: true,
                seq,
            },
        );
        if self.leader.is_none() {
            self.leader = Some(id);
        }
        if self.state == State::PreparingRebalance && self.initial_delay_until_ms.is_some() {
            self.new_member_added = true;
        }
        if matches!(
            self.state,
            State::Empty | State::Stable | State::CompletingRebalance
        ) {
            self.prepare_rebalance(limits, now);
        }
        self.try_complete_join(now);
        Reply::Wait(rx)
    }

    fn update_member_and_wait(&mut self, id: &str, args: JoinArgs, now: i64) -> Reply<JoinResult> {
        let (tx, rx) = waiter();
        let m = self.members.get_mut(id).expect("caller checked the member");
        if let Some(old) = m.awaiting_join.replace(tx) {
            send(old, JoinResult::error(code::REBALANCE_IN_PROGRESS, id));
        }
        m.client_id = args.client_id;
        m.client_host = args.client_host;
        m.session_timeout_ms = args.session_timeout_ms;
        m.rebalance_timeout_ms = args.rebalance_timeout_ms;
        m.protocols = args.protocols;
        m.touch(now);
        self.try_complete_join(now);
        Reply::Wait(rx)
    }

    /// Starts a rebalance: every member must rejoin within the rebalance timeout.
    pub fn prepare_rebalance(&mut self, limits: &Limits, now: i64) {
        if self.state == State::CompletingRebalance {
            for m in self.members.values_mut() {
                m.assignment = Bytes::new();
                if let Some(tx) = m.awaiting_sync.take() {
                    send(tx, SyncResult::error(code::REBALANCE_IN_PROGRESS));
                }
            }
            self.pending_sync.clear();
            self.sync_deadline_ms = None;
        }
        let was_empty = self.state == State::Empty;
        self.set_state(State::PreparingRebalance, now);
        let timeout = self.max_rebalance_timeout();
        self.join_deadline_ms = Some(now + timeout);
        if was_empty && limits.initial_rebalance_delay_ms > 0 {
            let delay = limits.initial_rebalance_delay_ms;
            self.initial_delay_until_ms = Some(now + delay);
            self.initial_delay_left_ms = (timeout - delay).max(0);
            self.new_member_added = false;
        }
    }

    /// Finishes the join phase if every member is in (and no initial delay is running).
    fn try_complete_join(&mut self, now: i64) {
        if self.state != State::PreparingRebalance || self.initial_delay_until_ms.is_some() {
            return;
        }
        let all_joined = self.members.values().all(|m| m.awaiting_join.is_some())
            && self.pending_members.is_empty();
        if all_joined || self.join_deadline_ms.is_some_and(|d| now >= d) {
            self.complete_join(now);
        }
    }

    fn complete_join(&mut self, now: i64) {
        self.join_deadline_ms = None;
        self.initial_delay_until_ms = None;
        // Dynamic members that did not rejoin in time are out; static ones keep their place.
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none() && m.group_instance_id.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            self.remove_member(&id);
        }
        if self.members.is_empty() {
            self.generation += 1;
            self.protocol = None;
            self.leader = None;
            self.pending_members.clear();
            self.set_state(State::Empty, now);
            self.dirty = true;
            return;
        }
        let leader_joined = self
            .leader
            .as_ref()
            .and_then(|l| self.members.get(l))
            .is_some_and(|m| m.awaiting_join.is_some());
        if !leader_joined {
            let first_joined = self
                .members_in_order()
                .find(|m| m.awaiting_join.is_some())
                .map(|m| m.id.clone());
            match first_joined {
                Some(id) => self.leader = Some(id),
                None => {
                    // Only static members that have not rejoined: wait another round.
                    self.join_deadline_ms = Some(now + self.max_rebalance_timeout());
                    return;
                }
            }
        }
        self.generation += 1;
        self.protocol = self.select_protocol();
        self.set_state(State::CompletingRebalance, now);
        self.pending_sync.clear();
        let leader = self.leader.clone().unwrap_or_default();
        let members = self.current_members();
        let base = self.join_result("", false);
        for m in self.members.values_mut() {
            let Some(tx) = m.awaiting_join.take() else {
                continue;
            };
            let mut r = base.clone();
            r.member_id = m.id.clone();
            if m.id == leader {
                r.members = members.clone();
            }
            m.is_new = false;
            m.touch(now);
            self.pending_sync.insert(m.id.clone());
            send(tx, r);
        }
        self.sync_deadline_ms = Some(now + self.max_rebalance_timeout());
    }

    /// Takes a member out (no state change; the caller decides on a rebalance).
    fn remove_member(&mut self, id: &str) {
        let Some(mut m) = self.members.remove(id) else {
            return;
        };
        if let Some(tx) = m.awaiting_join.take() {
            send(tx, JoinResult::error(code::UNKNOWN_MEMBER_ID, id));
        }
        if let Some(tx) = m.awaiting_sync.take() {
            send(tx, SyncResult::error(code::UNKNOWN_MEMBER_ID));
        }
        if let Some(instance) = &m.group_instance_id
            && self.static_members.get(instance).map(String::as_str) == Some(id)
        {
            self.static_members.remove(instance);
        }
        self.pending_sync.remove(id);
        if self.leader.as_deref() == Some(id) {
            let next = self.members_in_order().next().map(|m| m.id.clone());
            self.leader = next;
        }
    }

    /// A member left or its session expired.
    fn member_gone(&mut self, id: &str, limits: &Limits, now: i64) {
        self.remove_member(id);
        match self.state {
            State::Stable | State::CompletingRebalance => {
                self.prepare_rebalance(limits, now);
                // With no members left the join completes at once (the group becomes Empty).
                self.try_complete_join(now);
            }
            State::PreparingRebalance => self.try_complete_join(now),
            State::Empty | State::Dead => {}
        }
    }

    /// SyncGroup.
    pub fn sync(&mut self, args: SyncArgs, now: i64) -> Reply<SyncResult> {
        let SyncArgs {
            member_id,
            instance_id,
            generation,
            protocol_type,
            protocol_name,
            require_protocol,
            assignments,
        } = args;
        let (member_id, instance_id) = (member_id.as_str(), instance_id.as_deref());
        let (protocol_type, protocol_name) = (protocol_type.as_deref(), protocol_name.as_deref());
        if self.state == State::Dead {
            return Reply::Now(SyncResult::error(code::COORDINATOR_NOT_AVAILABLE));
        }
        if let Err(e) = self.validate_member(member_id, instance_id) {
            return Reply::Now(SyncResult::error(e));
        }
        if generation != self.generation {
            return Reply::Now(SyncResult::error(code::ILLEGAL_GENERATION));
        }
        if require_protocol && (protocol_type.is_none() || protocol_name.is_none())
            || protocol_type.is_some_and(|t| self.protocol_type.as_deref() != Some(t))
            || protocol_name.is_some_and(|n| self.protocol.as_deref() != Some(n))
        {
            return Reply::Now(SyncResult::error(code::INCONSISTENT_GROUP_PROTOCOL));
        }
        match self.state {
            State::Empty => Reply::Now(SyncResult::error(code::UNKNOWN_MEMBER_ID)),
            State::PreparingRebalance => Reply::Now(SyncResult::error(code::REBALANCE_IN_PROGRESS)),
            State::Stable => {
                self.pending_sync.remove(member_id);
                let m = self.members.get_mut(member_id).expect("validated");
                m.touch(now);
                Reply::Now(SyncResult {
                    error: code::NONE,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: self.protocol.clone(),
                    assignment: m.assignment.clone(),
                })
            }
            State::CompletingRebalance => {
                let (tx, rx) = waiter();
                self.pending_sync.remove(member_id);
                let m = self.members.get_mut(member_id).expect("validated");
                m.touch(now);
                if let Some(old) = m.awaiting_sync.replace(tx) {
                    send(old, SyncResult::error(code::REBALANCE_IN_PROGRESS));
                }
                if self.leader.as_deref() == Some(member_id) {
                    let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
                    for m in self.members.values_mut() {
                        m.assignment = given.remove(&m.id).unwrap_or_default();
                    }
                    self.set_state(State::Stable, now);
                    self.sync_deadline_ms = None;
                    self.pending_sync.clear();
                    self.dirty = true;
                    let (pt, pn) = (self.protocol_type.clone(), self.protocol.clone());
                    for m in self.members.values_mut() {
                        if let Some(tx) = m.awaiting_sync.take() {
                            send(
                                tx,
                                SyncResult {
                                    error: code::NONE,
                                    protocol_type: pt.clone(),
                                    protocol_name: pn.clone(),
                                    assignment: m.assignment.clone(),
                                },
                            );
                        }
                    }
                }
                Reply::Wait(rx)
            }
            State::Dead => unreachable!("checked above"),
        }
    }

    /// Heartbeat: the error code.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: i64,
    ) -> i16 {
        if self.state == State::Dead {
            return code::COORDINATOR_NOT_AVAILABLE;
        }
        if let Err(e) = self.validate_member(member_id, instance_id) {
            return e;
        }
        if generation != self.generation {
            return code::ILLEGAL_GENERATION;
        }
        match self.state {
            State::Empty => code::UNKNOWN_MEMBER_ID,
            State::PreparingRebalance => {
                self.members
                    .get_mut(member_id)
                    .expect("validated")
                    .touch(now);
                code::REBALANCE_IN_PROGRESS
            }
            State::CompletingRebalance | State::Stable => {
                self.members
                    .get_mut(member_id)
                    .expect("validated")
                    .touch(now);
                code::NONE
            }
            State::Dead => unreachable!("checked above"),
        }
    }

    /// LeaveGroup for one member identity: the error code.
    pub fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        limits: &Limits,
        now: i64,
    ) -> i16 {
        if self.state == State::Dead {
            return code::COORDINATOR_NOT_AVAILABLE;
        }
        let id = match instance_id {
            Some(instance) => match self.static_members.get(instance) {
                None => return code::UNKNOWN_MEMBER_ID,
                Some(id) if !member_id.is_empty() && id != member_id => {
                    return code::FENCED_INSTANCE_ID;
                }
                Some(id) => id.clone(),
            },
            None => {
                if self.pending_members.remove(member_id).is_some() {
                    self.try_complete_join(now);
                    return code::NONE;
                }
                if !self.members.contains_key(member_id) {
                    return code::UNKNOWN_MEMBER_ID;
                }
                member_id.to_owned()
            }
        };
        self.member_gone(&id, limits, now);
        code::NONE
    }

    /// Whether an OffsetCommit from this member and generation may write (Kafka's order of
    /// checks for classic groups).
    pub fn validate_commit(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: i64,
    ) -> Result<(), i16> {
        if self.state == State::Dead {
            return Err(code::COORDINATOR_NOT_AVAILABLE);
        }
        if generation < 0 && self.state == State::Empty {
            return Ok(());
        }
        if let Some(instance) = instance_id
            && self
                .static_members
                .get(instance)
                .is_some_and(|id| id != member_id)
        {
            return Err(code::FENCED_INSTANCE_ID);
        }
        if !self.members.contains_key(member_id) {
            return Err(code::UNKNOWN_MEMBER_ID);
        }
        if generation != self.generation {
            return Err(code::ILLEGAL_GENERATION);
        }
        // Commits of the current generation are taken while members rejoin
        // (PreparingRebalance), but not between the join and the new assignment.
        if self.state == State::CompletingRebalance {
            return Err(code::REBALANCE_IN_PROGRESS);
        }
        self.members.get_mut(member_id).expect("checked").touch(now);
        Ok(())
    }

    /// The topics any member subscribes to, for `consumer` groups (`None` otherwise).
    pub fn subscribed_topics(&self) -> Option<HashSet<String>> {
        if self.protocol_type.as_deref() != Some("consumer") || self.members.is_empty() {
            return None;
        }
        let protocol = self.protocol.clone()?;
        let mut all = HashSet::new();
        for m in self.members.values() {
            all.extend(super::records::subscribed_topics(&m.metadata(&protocol))?);
        }
        Some(all)
    }

    /// Advances timers: the initial delay, join and sync deadlines, expired sessions and
    /// pending member ids.
    pub fn tick(&mut self, limits: &Limits, now: i64) {
        self.pending_members.retain(|_, deadline| now < *deadline);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| !m.keep_alive(now))
            .map(|m| m.id.clone())
            .collect();
        for id in expired {
            tracing::debug!(group = %self.id, member = %id, "session expired");
            self.member_gone(&id, limits, now);
        }
        if let Some(until) = self.initial_delay_until_ms
            && now >= until
        {
            if self.new_member_added && self.initial_delay_left_ms > 0 {
                let step = limits
                    .initial_rebalance_delay_ms
                    .min(self.initial_delay_left_ms);
                self.initial_delay_left_ms -= step;
                self.initial_delay_until_ms = Some(now + step);
                self.new_member_added = false;
            } else {
                self.initial_delay_until_ms = None;
                if self.state == State::PreparingRebalance {
                    self.complete_join(now);
                }
            }
        }
        if self.state == State::PreparingRebalance {
            self.try_complete_join(now);
        }
        if self.state == State::CompletingRebalance
            && self.sync_deadline_ms.is_some_and(|d| now >= d)
        {
            let late: Vec<String> = self.pending_sync.iter().cloned().collect();
            self.sync_deadline_ms = None;
            if !late.is_empty() {
                for id in late {
                    self.remove_member(&id);
                }
                self.prepare_rebalance(limits, now);
                self.try_complete_join(now);
            }
        }
    }

    /// Whether anything here waits on time (so the coordinator keeps ticking it).
    pub fn has_timers(&self) -> bool {
        !self.members.is_empty() || !self.pending_members.is_empty()
    }

    /// Marks the group deleted: every waiting request is told to find the coordinator again.
    pub fn kill(&mut self, now: i64) {
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            if let Some(m) = self.members.get_mut(&id) {
                if let Some(tx) = m.awaiting_join.take() {
                    send(tx, JoinResult::error(code::COORDINATOR_NOT_AVAILABLE, &id));
                }
                if let Some(tx) = m.awaiting_sync.take() {
                    send(tx, SyncResult::error(code::COORDINATOR_NOT_AVAILABLE));
                }
            }
        }
        self.members.clear();
        self.static_members.clear();
        self.pending_members.clear();
        self.set_state(State::Dead, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        min_session_timeout_ms: 6000,
        max_session_timeout_ms: 1_800_000,
        initial_rebalance_delay_ms: 0,
        max_size: usize::MAX,
    };

    fn args(member: &str, client: &str) -> JoinArgs {
        JoinArgs {
            member_id: member.into(),
            group_instance_id: None,
            client_id: client.into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"m"))],
            require_known_member_id: true,
            supports_skip_assignment: true,
        }
    }

    /// A SyncGroup without protocol fields (as v0–4 clients send it).
    fn sync_args(
        member: &str,
        instance: Option<&str>,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
    ) -> SyncArgs {
        SyncArgs {
            member_id: member.into(),
            instance_id: instance.map(str::to_owned),
            generation,
            protocol_type: None,
            protocol_name: None,
            require_protocol: false,
            assignments,
        }
    }

    fn ids() -> impl Fn(&str) -> String {
        let n = std::cell::Cell::new(0);
        move |p: &str| {
            n.set(n.get() + 1);
            format!("{p}-{}", n.get())
        }
    }

    fn now_value<T>(r: Reply<T>) -> T {
        match r {
            Reply::Now(v) => v,
            Reply::Wait(_) => panic!("expected an immediate answer"),
        }
    }

    fn ready<T>(rx: &LocalReceiver<T>) -> Option<T> {
        futures_lite::future::block_on(futures_lite::future::poll_once(rx.recv())).flatten()
    }

    fn join_one(
        g: &mut Group,
        client: &str,
        now: i64,
        mk: &dyn Fn(&str) -> String,
    ) -> Reply<JoinResult> {
        let first = now_value(g.join(args("", client), &LIMITS, now, mk));
        assert_eq!(first.error, code::MEMBER_ID_REQUIRED);
        g.join(args(&first.member_id, client), &LIMITS, now, mk)
    }

    #[test]
    fn single_member_round_trip() {
        let mk = ids();
        let mut g = Group::new("g", 0);
        let Reply::Wait(rx) = join_one(&mut g, "c", 0, &mk) else {
            panic!()
        };
        let j = ready(&rx).expect("join completes at once with no delay");
        assert_eq!((j.error, j.generation), (code::NONE, 1));
        assert_eq!(j.leader, j.member_id);
        assert_eq!(j.members.len(), 1);
        assert_eq!(g.state, State::CompletingRebalance);
        let s = now_value_or_ready(g.sync(
            sync_args(
                &j.member_id,
                None,
                1,
                vec![(j.member_id.clone(), Bytes::from_static(b"a"))],
            ),
            1,
        ));
        assert_eq!(s.assignment, Bytes::from_static(b"a"));
        assert_eq!(g.state, State::Stable);
        assert_eq!(g.heartbeat(&j.member_id, None, 1, 2), code::NONE);
        assert_eq!(
            g.heartbeat(&j.member_id, None, 0, 2),
            code::ILLEGAL_GENERATION
        );
        assert_eq!(g.heartbeat("nobody", None, 1, 2), code::UNKNOWN_MEMBER_ID);
    }

    fn now_value_or_ready<T>(r: Reply<T>) -> T {
        match r {
            Reply::Now(v) => v,
            Reply::Wait(rx) => ready(&rx).expect("answered"),
        }
    }

    #[test]
    fn second_member_triggers_rebalance_and_session_expiry_removes() {
        let mk = ids();
        let mut g = Group::new("g", 0);
        let Reply::Wait(rx) = join_one(&mut g, "a", 0, &mk) else {
            panic!()
        };
        let a = ready(&rx).unwrap();
        now_value_or_ready(g.sync(sync_args(&a.member_id, None, 1, vec![]), 0));
        // b joins: a is told to rejoin by its heartbeat.
        let Reply::Wait(rx_b) = join_one(&mut g, "b", 10, &mk) else {
            panic!()
        };
        assert_eq!(g.state, State::PreparingRebalance);
        assert_eq!(
            g.heartbeat(&a.member_id, None, 1, 20),
            code::REBALANCE_IN_PROGRESS
        );
        let Reply::Wait(rx_a) = g.join(args(&a.member_id, "a"), &LIMITS, 30, &mk) else {
            panic!()
        };
        let (ja, jb) = (ready(&rx_a).unwrap(), ready(&rx_b).unwrap());
        assert_eq!((ja.generation, jb.generation), (2, 2));
        assert_eq!(ja.members.len(), 2, "a stays leader");
        assert!(jb.members.is_empty());
        // b syncs first and waits for the leader.
        let Reply::Wait(sb) = g.sync(sync_args(&jb.member_id, None, 2, vec![]), 40) else {
            panic!()
        };
        assert!(ready(&sb).is_none());
        now_value_or_ready(g.sync(
            sync_args(
                &ja.member_id,
                None,
                2,
                vec![(jb.member_id.clone(), Bytes::from_static(b"B"))],
            ),
            50,
        ));
        assert_eq!(ready(&sb).unwrap().assignment, Bytes::from_static(b"B"));
        // a stops heartbeating; b keeps on.
        assert_eq!(g.heartbeat(&jb.member_id, None, 2, 9_000), code::NONE);
        g.tick(&LIMITS, 10_100);
        assert!(!g.members.contains_key(&ja.member_id));
        assert_eq!(g.state, State::PreparingRebalance);
        assert_eq!(g.leader.as_deref(), Some(jb.member_id.as_str()));
    }

    #[test]
    fn static_member_rejoins_without_rebalance() {
        let mk = ids();
        let mut g = Group::new("g", 0);
        let mut a = args("", "c");
        a.group_instance_id = Some("i".into());
        let Reply::Wait(rx) = g.join(a.clone(), &LIMITS, 0, &mk) else {
            panic!()
        };
        let j = ready(&rx).unwrap();
        now_value_or_ready(g.sync(
            sync_args(
                &j.member_id,
                Some("i"),
                1,
                vec![(j.member_id.clone(), Bytes::from_static(b"x"))],
            ),
            0,
        ));
        let r = now_value(g.join(a, &LIMITS, 5, &mk));
        assert_eq!((r.error, r.generation), (code::NONE, 1));
        assert_ne!(r.member_id, j.member_id);
        assert!(r.skip_assignment);
        assert_eq!(g.state, State::Stable);
        assert_eq!(
            g.heartbeat(&j.member_id, Some("i"), 1, 6),
            code::FENCED_INSTANCE_ID
        );
        let s = now_value(g.sync(sync_args(&r.member_id, Some("i"), 1, vec![]), 7));
        assert_eq!(s.assignment, Bytes::from_static(b"x"));
    }

    #[test]
    fn commit_checks() {
        let mk = ids();
        let mut g = Group::new("g", 0);
        assert_eq!(g.validate_commit("", None, -1, 0), Ok(()));
        let Reply::Wait(rx) = join_one(&mut g, "c", 0, &mk) else {
            panic!()
        };
        let j = ready(&rx).unwrap();
        assert_eq!(
            g.validate_commit(&j.member_id, None, 1, 0),
            Err(code::REBALANCE_IN_PROGRESS)
        );
        now_value_or_ready(g.sync(sync_args(&j.member_id, None, 1, vec![]), 0));
        assert_eq!(g.validate_commit(&j.member_id, None, 1, 0), Ok(()));
        assert_eq!(
            g.validate_commit(&j.member_id, None, 0, 0),
            Err(code::ILLEGAL_GENERATION)
        );
        assert_eq!(
            g.validate_commit("x", None, 1, 0),
            Err(code::UNKNOWN_MEMBER_ID)
        );
        assert_eq!(g.leave(&j.member_id, None, &LIMITS, 1), code::NONE);
        assert_eq!(g.state, State::Empty);
        assert_eq!(g.generation, 2);
        assert_eq!(g.validate_commit("", None, -1, 2), Ok(()));
    }

    #[test]
    fn initial_delay_collects_members() {
        let limits = Limits {
            initial_rebalance_delay_ms: 100,
            ..LIMITS
        };
        let mk = ids();
        let mut g = Group::new("g", 0);
        let first = now_value(g.join(args("", "a"), &limits, 0, &mk));
        let Reply::Wait(ra) = g.join(args(&first.member_id, "a"), &limits, 0, &mk) else {
            panic!()
        };
        let second = now_value(g.join(args("", "b"), &limits, 50, &mk));
        let Reply::Wait(rb) = g.join(args(&second.member_id, "b"), &limits, 50, &mk) else {
            panic!()
        };
        g.tick(&limits, 99);
        assert!(ready(&ra).is_none());
        g.tick(&limits, 100);
        assert!(
            ready(&ra).is_none(),
            "a member arrived during the delay: extend"
        );
        g.tick(&limits, 200);
        let (ja, jb) = (ready(&ra).unwrap(), ready(&rb).unwrap());
        assert_eq!((ja.generation, jb.generation), (1, 1));
    }

    #[test]
    fn stored_round_trip_restores_stable() {
        let mk = ids();
        let mut g = Group::new("g", 0);
        let Reply::Wait(rx) = join_one(&mut g, "c", 0, &mk) else {
            panic!()
        };
        let j = ready(&rx).unwrap();
        now_value_or_ready(g.sync(
            sync_args(
                &j.member_id,
                None,
                1,
                vec![(j.member_id.clone(), Bytes::from_static(b"q"))],
            ),
            0,
        ));
        let mut h = Group::new("g", 0);
        h.restore(g.stored(), 100);
        assert_eq!(h.state, State::Stable);
        assert_eq!(h.generation, 1);
        assert_eq!(h.heartbeat(&j.member_id, None, 1, 101), code::NONE);
        let s = now_value(h.sync(sync_args(&j.member_id, None, 1, vec![]), 102));
        assert_eq!(s.assignment, Bytes::from_static(b"q"));
    }
}
