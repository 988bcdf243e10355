//! Incremental fetch sessions (KIP-227): one bounded cache per core, with Kafka's rules.
//!
//! A client opens a session with a full fetch at epoch 0; the broker answers with a session id
//! and keeps each partition of it with the fetch offset and byte limit the client asked for and
//! the high watermark and log start offset it last answered. Then the client sends incremental
//! fetches (its session id and the next epoch) that list only the partitions whose fetch offset
//! or limit changed and the ones it drops (`forgotten_topics_data`), and the answer lists only the
//! partitions with news: records, a changed high watermark or log start offset, or an error.
//! Epoch -1 is a full fetch without a session, answered with session id 0.
//!
//! Where it lives: each core keeps its own [`FetchSessionCache`] for the connections it serves
//! (no lock, no cross-core message). A client whose connection moves to another core (it
//! reconnected) sends a session id that core does not know and gets
//! FETCH_SESSION_ID_NOT_FOUND, then opens a new session with a full fetch: the same answer Kafka
//! gives after evicting a session, so every client handles it. Session ids are random within a
//! range of the id space that belongs to the core (as Kafka's cache shards do), so two cores
//! never hand out the same id.
//!
//! Bounds: at most `slots` sessions per core (`fetch_session_cache_slots` split over the cores)
//! and at most `bytes_max` bytes of them (`core_fetch_session_bytes_max`), counted per session
//! with `limits::FETCH_SESSION_BYTES` plus `limits::FETCH_SESSION_PARTITION_BYTES` and the topic
//! name per partition. A new session that finds no room may evict one, as Kafka's
//! `tryEvict`: the least recently used one if unused for longer than `eviction_ms`; otherwise the
//! smallest session that is older than `eviction_ms` if it is smaller than the new one
//! (privileged sessions, a follower's, are spared by consumers; sluice has no followers yet, so
//! every session is a consumer's and the rule only waits for replication). An incremental fetch
//! that would grow a session past the core's bytes bound ends it and answers
//! FETCH_SESSION_ID_NOT_FOUND, as if it had been evicted just before.
//!
//! Concurrency: a session is an `Rc<RefCell<..>>` so that a fetch can keep it across its long
//! poll without holding a borrow; the epoch is bumped when the fetch starts and checked again
//! when it answers (a second fetch of the same session in between makes the first answer
//! INVALID_FETCH_SESSION_EPOCH, as Kafka does). Eviction scans the core's sessions (at most
//! `slots`, and only when a new session finds the cache full).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use sluice_net::error_code::code;

use crate::limits::{FETCH_SESSION_BYTES, FETCH_SESSION_PARTITION_BYTES};

/// Epoch of a full fetch that wants no session (Kafka's `FINAL_EPOCH`).
pub const FINAL_EPOCH: i32 = -1;
/// Epoch of a full fetch that opens a session (Kafka's `INITIAL_EPOCH`).
pub const INITIAL_EPOCH: i32 = 0;
/// The session id that means "no session".
pub const INVALID_SESSION_ID: i32 = 0;

/// The epoch after `epoch`: wraps from `i32::MAX` to 1, never to 0 or -1 (Kafka's `nextEpoch`).
pub fn next_epoch(epoch: i32) -> i32 {
    if epoch < 0 {
        FINAL_EPOCH
    } else if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

/// How a session names a topic: by id from Fetch v13, by name before.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TopicKey {
    Id([u8; 16]),
    Name(String),
}

impl TopicKey {
    /// Heap bytes this key holds besides its own size.
    fn heap_bytes(&self) -> usize {
        match self {
            TopicKey::Id(_) => 0,
            TopicKey::Name(n) => n.len(),
        }
    }
}

/// One partition of a fetch, as a session names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PartitionKey {
    pub topic: TopicKey,
    pub partition: i32,
}

/// What a fetch request asks of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requested {
    pub fetch_offset: i64,
    pub max_bytes: i32,
}

/// What an answer said of one partition: what decides whether an incremental answer includes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answered {
    pub has_records: bool,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub error_code: i16,
    /// Kafka includes every partition with a preferred read replica; sluice never names one
    /// (-1) until it has followers.
    pub preferred_read_replica: i32,
}

/// A partition kept in a session (Kafka's `CachedPartition`, without the follower-only fields:
/// the fetcher's log start offset and its leader and last fetched epochs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachedPartition {
    pub fetch_offset: i64,
    pub max_bytes: i32,
    /// The high watermark last answered; -1 after an error, so the partition is answered again
    /// once the error is gone.
    pub high_watermark: i64,
    /// The log start offset last answered.
    pub log_start_offset: i64,
}

impl CachedPartition {
    /// A partition as a full fetch asked for it and its first answer.
    pub fn new(requested: Requested, answered: &Answered) -> CachedPartition {
        CachedPartition {
            fetch_offset: requested.fetch_offset,
            max_bytes: requested.max_bytes,
            high_watermark: answered.high_watermark,
            log_start_offset: answered.log_start_offset,
        }
    }

    /// Whether an incremental answer must include the partition given what was read now, and
    /// the cached high watermark and log start offset brought up to it (Kafka's
    /// `maybeUpdateResponseData`).
    fn answer(&mut self, a: &Answered) -> bool {
        let mut respond = a.has_records;
        if self.high_watermark != a.high_watermark {
            respond = true;
            self.high_watermark = a.high_watermark;
        }
        if self.log_start_offset != a.log_start_offset {
            respond = true;
            self.log_start_offset = a.log_start_offset;
        }
        if a.preferred_read_replica >= 0 {
            respond = true;
        }
        if a.error_code != code::NONE {
            self.high_watermark = -1;
            respond = true;
        }
        respond
    }
}

/// The partitions of a session in their answer order: a partition that answers with records
/// moves to the end, so that on the next fetch the others are read first and one busy partition
/// cannot fill every answer's `max_bytes` (Kafka's linked set of `CachedPartition`s).
#[derive(Debug, Default)]
struct Partitions {
    by_key: HashMap<PartitionKey, (u64, CachedPartition)>,
    order: BTreeMap<u64, PartitionKey>,
    next_seq: u64,
}

impl Partitions {
    fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Adds `key` at the end, or updates it in place; whether it was new.
    fn put(&mut self, key: &PartitionKey, p: CachedPartition) -> bool {
        if let Some((_, cached)) = self.by_key.get_mut(key) {
            *cached = p;
            return false;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, key.clone());
        self.by_key.insert(key.clone(), (seq, p));
        true
    }

    fn remove(&mut self, key: &PartitionKey) -> bool {
        match self.by_key.remove(key) {
            Some((seq, _)) => {
                self.order.remove(&seq);
                true
            }
            None => false,
        }
    }

    fn move_to_end(&mut self, key: &PartitionKey) {
        let Some((seq, _)) = self.by_key.get_mut(key) else {
            return;
        };
        let old = *seq;
        *seq = self.next_seq;
        self.next_seq += 1;
        self.order.remove(&old);
        self.order.insert(*seq, key.clone());
    }
}

/// Bytes a partition of `key` costs a session.
fn partition_bytes(key: &PartitionKey) -> usize {
    FETCH_SESSION_PARTITION_BYTES + key.topic.heap_bytes()
}

/// One fetch session, on the core that created it.
#[derive(Debug)]
pub struct FetchSession {
    pub id: i32,
    /// The epoch the next incremental fetch must carry.
    epoch: i32,
    uses_topic_ids: bool,
    privileged: bool,
    created_ms: i64,
    last_used_ms: i64,
    partitions: Partitions,
    /// Memory counted for this session (see the module docs).
    bytes: usize,
    /// Partitions at the last touch: the size eviction compares (Kafka's `cachedSize`).
    touched_size: usize,
    /// Set at each touch, as Kafka files sessions into its evictable sets then.
    evictable_by_all: bool,
    evictable_by_privileged: bool,
}

impl FetchSession {
    /// The epoch the next incremental fetch must carry.
    pub fn epoch(&self) -> i32 {
        self.epoch
    }

    /// The session's partitions in answer order, with what is cached of each.
    pub fn partitions(&self) -> Vec<(PartitionKey, CachedPartition)> {
        self.partitions
            .order
            .values()
            .filter_map(|k| self.partitions.by_key.get(k).map(|(_, p)| (k.clone(), *p)))
            .collect()
    }

    /// Partitions kept.
    pub fn len(&self) -> usize {
        self.partitions.len()
    }

    /// Whether an incremental answer includes `key` after this read (updating what is cached
    /// of it, and moving it to the end of the answer order when it has records).
    pub fn answer(&mut self, key: &PartitionKey, a: &Answered) -> bool {
        let Some((_, cached)) = self.partitions.by_key.get_mut(key) else {
            // Forgotten by a later fetch of this session: nothing to say about it.
            return false;
        };
        let respond = cached.answer(a);
        if respond && a.has_records {
            self.partitions.move_to_end(key);
        }
        respond
    }
}

/// How a fetch request is served (Kafka's `FetchContext` kinds).
#[derive(Debug)]
pub enum FetchContext {
    /// Epoch -1: answer every requested partition, keep no session.
    Sessionless,
    /// Epoch 0: answer every requested partition, then try to open a session of them.
    Full,
    /// A known session at the right epoch, updated with the request: read all its partitions,
    /// answer those with news. `epoch` is what the session's epoch must still be when the
    /// answer is built.
    Incremental {
        session: Rc<RefCell<FetchSession>>,
        epoch: i32,
    },
    /// The request cannot be served: answer this top-level error and no partition.
    Error(i16),
}

/// What the fetch request says about sessions, with its partitions.
#[derive(Debug)]
pub struct SessionRequest<'a> {
    pub session_id: i32,
    pub epoch: i32,
    /// Fetch v13+ (topics by id).
    pub uses_topic_ids: bool,
    pub requested: &'a [(PartitionKey, Requested)],
    pub forgotten: &'a [PartitionKey],
}

/// Counters of a core's cache, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionStats {
    pub sessions: u64,
    pub partitions: u64,
    pub bytes: u64,
    pub evictions: u64,
    pub incremental_fetches: u64,
}

/// One core's fetch sessions (see the module docs). Lives on its core, used by that core's
/// fetches only, never borrowed across an `.await`.
#[derive(Debug)]
pub struct FetchSessionCache {
    slots: usize,
    bytes_max: usize,
    eviction_ms: i64,
    /// The ids this core hands out: `ids.0 <= id < ids.1`, never 0.
    ids: (i32, i32),
    sessions: HashMap<i32, Rc<RefCell<FetchSession>>>,
    bytes: usize,
    evictions: u64,
    incremental_fetches: u64,
    rng: fastrand::Rng,
}

/// The settings of one core's cache.
#[derive(Debug, Clone, Copy)]
pub struct CacheBounds {
    pub slots: usize,
    pub bytes_max: usize,
    pub eviction_ms: i64,
}

impl FetchSessionCache {
    /// The cache of core `core` of `cores`.
    pub fn new(bounds: CacheBounds, core: usize, cores: usize) -> FetchSessionCache {
        let cores = i32::try_from(cores.max(1)).unwrap_or(i32::MAX);
        let core = i32::try_from(core).unwrap_or(0).min(cores - 1);
        let range = i32::MAX / cores;
        FetchSessionCache {
            slots: bounds.slots,
            bytes_max: bounds.bytes_max,
            eviction_ms: bounds.eviction_ms,
            ids: ((core * range).max(1), core * range + range),
            sessions: HashMap::new(),
            bytes: 0,
            evictions: 0,
            incremental_fetches: 0,
            rng: fastrand::Rng::new(),
        }
    }

    /// What is kept now, for metrics.
    pub fn stats(&self) -> SessionStats {
        SessionStats {
            sessions: self.sessions.len() as u64,
            partitions: self
                .sessions
                .values()
                .map(|s| s.borrow().len() as u64)
                .sum(),
            bytes: self.bytes as u64,
            evictions: self.evictions,
            incremental_fetches: self.incremental_fetches,
        }
    }

    /// Decides how a fetch is served and applies its session changes (Kafka's
    /// `FetchManager.newContext`). A full fetch naming a session closes it.
    pub fn new_context(&mut self, now_ms: i64, r: &SessionRequest<'_>) -> FetchContext {
        if r.epoch == INITIAL_EPOCH || r.epoch == FINAL_EPOCH {
            if r.session_id != INVALID_SESSION_ID {
                self.remove(r.session_id);
            }
            return if r.epoch == FINAL_EPOCH {
                FetchContext::Sessionless
            } else {
                FetchContext::Full
            };
        }
        let Some(session) = self.sessions.get(&r.session_id).cloned() else {
            return FetchContext::Error(code::FETCH_SESSION_ID_NOT_FOUND);
        };
        let mut s = session.borrow_mut();
        if s.epoch != r.epoch {
            return FetchContext::Error(code::INVALID_FETCH_SESSION_EPOCH);
        }
        if s.uses_topic_ids != r.uses_topic_ids {
            return FetchContext::Error(code::FETCH_SESSION_TOPIC_ID_ERROR);
        }
        let before = s.bytes;
        update(&mut s, r.requested, r.forgotten);
        self.bytes = self.bytes - before + s.bytes;
        if s.partitions.len() == 0 {
            drop(s);
            self.remove(r.session_id);
            return FetchContext::Sessionless;
        }
        if self.bytes > self.bytes_max {
            drop(s);
            self.remove(r.session_id);
            self.evictions += 1;
            return FetchContext::Error(code::FETCH_SESSION_ID_NOT_FOUND);
        }
        self.touch(&mut s, now_ms);
        s.epoch = next_epoch(s.epoch);
        let epoch = s.epoch;
        drop(s);
        self.incremental_fetches += 1;
        FetchContext::Incremental { session, epoch }
    }

    /// Opens a session of `partitions` (in answer order) if there is room or a session may be
    /// evicted for it (Kafka's `maybeCreateSession`): its id, or 0 when none was opened.
    pub fn maybe_create(
        &mut self,
        now_ms: i64,
        privileged: bool,
        uses_topic_ids: bool,
        partitions: Vec<(PartitionKey, CachedPartition)>,
    ) -> i32 {
        let bytes = FETCH_SESSION_BYTES
            + partitions
                .iter()
                .map(|(k, _)| partition_bytes(k))
                .sum::<usize>();
        if bytes > self.bytes_max || self.slots == 0 {
            return INVALID_SESSION_ID;
        }
        while self.sessions.len() >= self.slots || self.bytes + bytes > self.bytes_max {
            if !self.try_evict(privileged, partitions.len(), now_ms) {
                return INVALID_SESSION_ID;
            }
        }
        let mut kept = Partitions::default();
        for (k, p) in &partitions {
            kept.put(k, *p);
        }
        let id = self.new_session_id();
        let mut session = FetchSession {
            id,
            epoch: next_epoch(INITIAL_EPOCH),
            uses_topic_ids,
            privileged,
            created_ms: now_ms,
            last_used_ms: now_ms,
            bytes: FETCH_SESSION_BYTES + kept.by_key.keys().map(partition_bytes).sum::<usize>(),
            partitions: kept,
            touched_size: 0,
            evictable_by_all: false,
            evictable_by_privileged: false,
        };
        self.touch(&mut session, now_ms);
        self.bytes += session.bytes;
        self.sessions.insert(id, Rc::new(RefCell::new(session)));
        id
    }

    /// A random unused id in this core's range.
    fn new_session_id(&mut self) -> i32 {
        loop {
            let id = self.rng.i32(self.ids.0..self.ids.1);
            if id != INVALID_SESSION_ID && !self.sessions.contains_key(&id) {
                return id;
            }
        }
    }

    /// Marks `s` used now and files it for eviction as Kafka's `touch` does: evictable by a
    /// privileged newcomer unless privileged and young, by any newcomer once older than
    /// `eviction_ms`.
    fn touch(&self, s: &mut FetchSession, now_ms: i64) {
        s.last_used_ms = now_ms;
        s.touched_size = s.partitions.len();
        let old = now_ms - s.created_ms > self.eviction_ms;
        s.evictable_by_privileged = !s.privileged || old;
        s.evictable_by_all = old;
    }

    /// Evicts one session for a newcomer of `size` partitions, if Kafka's rules allow one (see
    /// the module docs); whether one was evicted.
    fn try_evict(&mut self, privileged: bool, size: usize, now_ms: i64) -> bool {
        let lru = self
            .sessions
            .values()
            .map(|s| {
                let s = s.borrow();
                (s.last_used_ms, s.id)
            })
            .min();
        let Some((last_used_ms, lru_id)) = lru else {
            return false;
        };
        let victim = if now_ms - last_used_ms > self.eviction_ms {
            Some(lru_id)
        } else {
            let weakest = self
                .sessions
                .values()
                .filter_map(|s| {
                    let s = s.borrow();
                    let evictable = if privileged {
                        s.evictable_by_privileged
                    } else {
                        s.evictable_by_all
                    };
                    evictable.then_some((s.privileged, s.touched_size, s.id))
                })
                .min();
            weakest
                .filter(|&weak| (privileged, size, 0) >= weak)
                .map(|(_, _, id)| id)
        };
        let Some(id) = victim else {
            return false;
        };
        self.remove(id);
        self.evictions += 1;
        true
    }

    /// Drops a session (a detached one stays usable by a fetch that holds it until it answers).
    fn remove(&mut self, id: i32) -> bool {
        match self.sessions.remove(&id) {
            Some(s) => {
                self.bytes -= s.borrow().bytes;
                true
            }
            None => false,
        }
    }
}

/// Applies an incremental fetch to its session: requested partitions are added at the end or
/// updated in place, then forgotten ones removed (Kafka's `FetchSession.update`).
fn update(
    s: &mut FetchSession,
    requested: &[(PartitionKey, Requested)],
    forgotten: &[PartitionKey],
) {
    for (key, want) in requested {
        match s.partitions.by_key.get_mut(key) {
            Some((_, cached)) => {
                cached.fetch_offset = want.fetch_offset;
                cached.max_bytes = want.max_bytes;
            }
            None => {
                let fresh = CachedPartition {
                    fetch_offset: want.fetch_offset,
                    max_bytes: want.max_bytes,
                    high_watermark: -1,
                    log_start_offset: -1,
                };
                s.partitions.put(key, fresh);
                s.bytes += partition_bytes(key);
            }
        }
    }
    for key in forgotten {
        if s.partitions.remove(key) {
            s.bytes -= partition_bytes(key);
        }
    }
}

// A session's partition is counted at least as large as what its two maps hold for it: the
// key and cached values in the hash map and the key again in the order map (their
// bookkeeping is what the rest of the bound covers).
const _: () = assert!(
    std::mem::size_of::<(PartitionKey, (u64, CachedPartition))>()
        + std::mem::size_of::<(u64, PartitionKey)>()
        <= FETCH_SESSION_PARTITION_BYTES
);
// A session is counted at least as large as its struct, the `Rc` counts and `RefCell` flag
// around it, and its entry in the cache's map.
const _: () = assert!(
    std::mem::size_of::<FetchSession>()
        + 3 * std::mem::size_of::<usize>()
        + std::mem::size_of::<(i32, Rc<RefCell<FetchSession>>)>()
        <= FETCH_SESSION_BYTES
);

#[cfg(test)]
mod tests {
    use super::*;

    const EVICTION_MS: i64 = 120_000;

    fn cache(slots: usize) -> FetchSessionCache {
        let bounds = CacheBounds {
            slots,
            bytes_max: 1 << 20,
            eviction_ms: EVICTION_MS,
        };
        FetchSessionCache::new(bounds, 0, 1)
    }

    fn key(topic: &str, partition: i32) -> PartitionKey {
        PartitionKey {
            topic: TopicKey::Name(topic.to_owned()),
            partition,
        }
    }

    fn want(fetch_offset: i64) -> Requested {
        Requested {
            fetch_offset,
            max_bytes: 1 << 20,
        }
    }

    fn read(high_watermark: i64) -> Answered {
        Answered {
            has_records: false,
            high_watermark,
            log_start_offset: 0,
            error_code: code::NONE,
            preferred_read_replica: -1,
        }
    }

    /// A session of `n` partitions of topic `t` opened at `now`, as a full fetch at epoch 0
    /// would: its id.
    fn open(c: &mut FetchSessionCache, now: i64, t: &str, n: i32) -> i32 {
        let parts = (0..n)
            .map(|p| (key(t, p), CachedPartition::new(want(0), &read(0))))
            .collect();
        c.maybe_create(now, false, false, parts)
    }

    fn context(
        c: &mut FetchSessionCache,
        now: i64,
        session_id: i32,
        epoch: i32,
        requested: &[(PartitionKey, Requested)],
        forgotten: &[PartitionKey],
    ) -> FetchContext {
        c.new_context(
            now,
            &SessionRequest {
                session_id,
                epoch,
                uses_topic_ids: false,
                requested,
                forgotten,
            },
        )
    }

    fn error_of(ctx: &FetchContext) -> Option<i16> {
        match ctx {
            FetchContext::Error(e) => Some(*e),
            _ => None,
        }
    }

    /// Proves the epoch rules: epoch 0 is a full fetch that may open a session (epoch 1 next),
    /// each incremental fetch must carry the session's epoch and moves it on, a repeated epoch
    /// gets INVALID_FETCH_SESSION_EPOCH (and leaves the session), an unknown id
    /// FETCH_SESSION_ID_NOT_FOUND, a by-name session asked by id FETCH_SESSION_TOPIC_ID_ERROR,
    /// and a full fetch naming the session closes it.
    #[test]
    fn epochs_and_session_errors() {
        let mut c = cache(10);
        assert!(matches!(
            context(&mut c, 0, 0, 0, &[], &[]),
            FetchContext::Full
        ));
        let id = open(&mut c, 0, "t", 2);
        assert_ne!(id, INVALID_SESSION_ID);
        match context(&mut c, 1, id, 1, &[], &[]) {
            FetchContext::Incremental { session, epoch } => {
                assert_eq!(epoch, 2);
                assert_eq!(session.borrow().epoch(), 2);
                assert_eq!(session.borrow().len(), 2);
            }
            other => panic!("{other:?}"),
        }
        let again = context(&mut c, 2, id, 1, &[], &[]);
        assert_eq!(error_of(&again), Some(code::INVALID_FETCH_SESSION_EPOCH));
        let unknown = context(&mut c, 2, id ^ 1, 2, &[], &[]);
        assert_eq!(error_of(&unknown), Some(code::FETCH_SESSION_ID_NOT_FOUND));
        let none = context(&mut c, 2, 0, 1, &[], &[]);
        assert_eq!(error_of(&none), Some(code::FETCH_SESSION_ID_NOT_FOUND));
        let by_id = c.new_context(
            2,
            &SessionRequest {
                session_id: id,
                epoch: 2,
                uses_topic_ids: true,
                requested: &[],
                forgotten: &[],
            },
        );
        assert_eq!(error_of(&by_id), Some(code::FETCH_SESSION_TOPIC_ID_ERROR));
        assert!(matches!(
            context(&mut c, 3, id, 2, &[], &[]),
            FetchContext::Incremental { epoch: 3, .. }
        ));
        assert_eq!(c.stats().incremental_fetches, 2);
        assert!(matches!(
            context(&mut c, 4, id, FINAL_EPOCH, &[], &[]),
            FetchContext::Sessionless
        ));
        assert_eq!(c.stats().sessions, 0);
        assert_eq!(c.stats().bytes, 0);
        let gone = context(&mut c, 5, id, 3, &[], &[]);
        assert_eq!(error_of(&gone), Some(code::FETCH_SESSION_ID_NOT_FOUND));
    }

    /// Proves epochs wrap from i32::MAX to 1, never to 0 (a full fetch) or -1.
    #[test]
    fn epoch_wraps_to_one() {
        assert_eq!(next_epoch(0), 1);
        assert_eq!(next_epoch(41), 42);
        assert_eq!(next_epoch(i32::MAX), 1);
        assert_eq!(next_epoch(FINAL_EPOCH), FINAL_EPOCH);
    }

    /// Proves an incremental fetch adds new partitions at the end, updates listed ones in place,
    /// drops forgotten ones, and that forgetting the last partition closes the session.
    #[test]
    fn incremental_updates_and_forgotten_partitions() {
        let mut c = cache(10);
        let id = open(&mut c, 0, "t", 2);
        let requested = [(key("t", 0), want(7)), (key("u", 0), want(3))];
        let FetchContext::Incremental { session, .. } =
            context(&mut c, 1, id, 1, &requested, &[key("t", 1)])
        else {
            panic!("incremental");
        };
        let parts = session.borrow().partitions();
        let keys: Vec<_> = parts.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(keys, vec![key("t", 0), key("u", 0)]);
        assert_eq!(parts[0].1.fetch_offset, 7);
        assert_eq!(
            parts[1].1.high_watermark, -1,
            "a new partition is answered first time"
        );
        assert_eq!(c.stats().partitions, 2);
        let forget = [key("t", 0), key("u", 0)];
        assert!(matches!(
            context(&mut c, 2, id, 2, &[], &forget),
            FetchContext::Sessionless
        ));
        assert_eq!(c.stats().sessions, 0);
    }

    /// Proves an incremental answer includes a partition only with news (records, a moved high
    /// watermark or log start offset, an error, a preferred replica), that an error makes the
    /// next good read news again, and that partitions with records rotate to the end.
    #[test]
    fn answers_only_news_and_rotates_partitions_with_records() {
        let mut c = cache(10);
        let id = open(&mut c, 0, "t", 3);
        let FetchContext::Incremental { session, .. } = context(&mut c, 1, id, 1, &[], &[]) else {
            panic!("incremental");
        };
        let mut s = session.borrow_mut();
        assert!(!s.answer(&key("t", 0), &read(0)), "nothing changed");
        assert!(s.answer(&key("t", 1), &read(5)), "high watermark moved");
        assert!(!s.answer(&key("t", 1), &read(5)), "and is cached");
        let mut start_moved = read(0);
        start_moved.log_start_offset = 2;
        assert!(s.answer(&key("t", 2), &start_moved));
        let mut failed = read(0);
        failed.error_code = code::NOT_LEADER_OR_FOLLOWER;
        assert!(s.answer(&key("t", 0), &failed));
        assert!(
            s.answer(&key("t", 0), &read(0)),
            "news again once the error is gone"
        );
        let mut preferred = read(0);
        preferred.preferred_read_replica = 1;
        assert!(s.answer(&key("t", 0), &preferred));
        let mut records = read(5);
        records.has_records = true;
        assert!(s.answer(&key("t", 1), &records), "records are always news");
        let order: Vec<_> = s.partitions().into_iter().map(|(k, _)| k).collect();
        assert_eq!(order, vec![key("t", 0), key("t", 2), key("t", 1)]);
        assert!(!s.answer(&key("x", 0), &records), "not in the session");
    }

    /// Proves Kafka's eviction rules on a full cache: no room and nothing evictable opens no
    /// session; a session unused for longer than the eviction time goes first; otherwise the
    /// smallest session older than the eviction time goes only for a strictly larger one.
    #[test]
    fn eviction_rules() {
        let mut c = cache(2);
        let a = open(&mut c, 0, "a", 1);
        let b = open(&mut c, 0, "b", 3);
        assert_ne!(a, b);
        assert_eq!(
            open(&mut c, 1_000, "c", 5),
            0,
            "both young and recently used"
        );
        let late = EVICTION_MS + 80_000;
        assert!(matches!(
            context(&mut c, late, b, 1, &[], &[]),
            FetchContext::Incremental { .. }
        ));
        let c1 = open(&mut c, late + 1, "c", 5);
        assert_ne!(c1, 0, "a was unused for longer than the eviction time");
        let a_gone = context(&mut c, late + 1, a, 1, &[], &[]);
        assert_eq!(error_of(&a_gone), Some(code::FETCH_SESSION_ID_NOT_FOUND));
        assert_eq!(
            open(&mut c, late + 2, "d", 2),
            0,
            "b (3) is not smaller than 2"
        );
        assert_eq!(open(&mut c, late + 3, "d", 3), 0, "nor than 3");
        let d = open(&mut c, late + 4, "d", 4);
        assert_ne!(d, 0, "b is old and smaller than 4");
        let b_gone = context(&mut c, late + 5, b, 2, &[], &[]);
        assert_eq!(error_of(&b_gone), Some(code::FETCH_SESSION_ID_NOT_FOUND));
        assert_eq!(c.stats().evictions, 2);
        assert_eq!(c.stats().sessions, 2);
        let mut none = cache(0);
        assert_eq!(open(&mut none, 0, "a", 1), 0, "no slots: no sessions");
    }

    /// Proves the bytes bound: a session that alone exceeds it is not opened, and an incremental
    /// fetch growing a session past it ends the session (FETCH_SESSION_ID_NOT_FOUND, counted as
    /// an eviction); memory is counted back to zero when sessions go.
    #[test]
    fn bytes_bound() {
        let bounds = CacheBounds {
            slots: 10,
            bytes_max: FETCH_SESSION_BYTES + 4 * (FETCH_SESSION_PARTITION_BYTES + 1),
            eviction_ms: EVICTION_MS,
        };
        let mut c = FetchSessionCache::new(bounds, 0, 1);
        assert_eq!(open(&mut c, 0, "t", 5), 0, "too big for the core");
        let id = open(&mut c, 0, "t", 4);
        assert_ne!(id, 0);
        assert_eq!(
            c.stats().bytes as usize,
            FETCH_SESSION_BYTES + 4 * (FETCH_SESSION_PARTITION_BYTES + 1)
        );
        let grow = [(key("t", 9), want(0))];
        let ended = context(&mut c, 1, id, 1, &grow, &[]);
        assert_eq!(error_of(&ended), Some(code::FETCH_SESSION_ID_NOT_FOUND));
        assert_eq!(c.stats().bytes, 0);
        assert_eq!(c.stats().evictions, 1);
    }

    /// Proves each core hands out ids from its own part of the id space, never 0, so a session
    /// id sent to the wrong core is never another client's session.
    #[test]
    fn cores_hand_out_disjoint_ids() {
        let bounds = CacheBounds {
            slots: 100,
            bytes_max: 1 << 20,
            eviction_ms: EVICTION_MS,
        };
        let mut first = FetchSessionCache::new(bounds, 0, 2);
        let mut second = FetchSessionCache::new(bounds, 1, 2);
        for _ in 0..50 {
            let a = open(&mut first, 0, "t", 1);
            let b = open(&mut second, 0, "t", 1);
            assert!(a > 0 && a < i32::MAX / 2, "{a}");
            assert!(b >= i32::MAX / 2, "{b}");
        }
        assert_eq!(first.stats().sessions, 50);
    }
}
