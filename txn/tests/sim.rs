//! A seeded simulator: random producers (TV0 and TV2, current and stale epochs) send
//! InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn and EndTxn for three transactional ids
//! while appends complete late, out of order or fail, markers fail and are retried, time
//! passes (timeouts, expiry) and the coordinator of a partition fails over (reloaded from
//! its durable records, in-flight appends of the old epoch failing NOT_LEADER_OR_FOLLOWER).
//!
//! Checked at every step: replaying the durable records gives the coordinator's state of
//! every id with nothing pending; for one producer id the persisted epoch never goes down;
//! a PrepareCommit record is followed by CompleteCommit (and abort by abort) for the same
//! producer; markers match the Prepare record's result, producer id, epoch and partitions;
//! no answer is UNKNOWN_SERVER_ERROR. At the end (everything delivered) every request was
//! answered exactly once and no transaction is left in Prepare or pending.
//!
//! `cargo test -p sluice-txn --test sim` runs 200 seeds; `SEEDS=n FIRST=m` sweeps others.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{H, Record};
use sluice_net::ErrorCode as E;
use sluice_txn::{
    AddOffsets, AddPartitions, Answer, Append, Config, EndTxn, InitProducerId, LogRecord,
    MarkerResult, Markers, RequestId, TopicPartition, TxnLogValue, TxnResult, TxnState, TxnVersion,
    decode_record, replay,
};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

const IDS: [&str; 3] = ["alpha", "beta", "gamma"];

/// A producer's view: its transactional id, producer id and epoch, and its version.
#[derive(Clone, Copy)]
struct Client {
    id: usize,
    pid: i64,
    epoch: i16,
    tv2: bool,
}

struct Sim {
    rng: Rng,
    h: H,
    clients: Vec<Client>,
    /// Requests sent, not yet answered: which client asked.
    outstanding: BTreeMap<RequestId, usize>,
    answered: BTreeSet<RequestId>,
    epochs: BTreeMap<i32, i32>,
    trace: Vec<String>,
}

fn run(seed: u64, steps: usize, config: Config) {
    let mut s = Sim {
        rng: Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
        h: H::new(config),
        clients: Vec::new(),
        outstanding: BTreeMap::new(),
        answered: BTreeSet::new(),
        epochs: BTreeMap::new(),
        trace: Vec::new(),
    };
    s.h.auto = false;
    for i in 0..4 {
        s.clients.push(Client {
            id: i % IDS.len(),
            pid: -1,
            epoch: -1,
            tv2: i % 2 == 0,
        });
    }
    for step in 0..steps {
        s.step();
        if let Err(e) = s.check() {
            panic!("seed {seed} step {step}: {e}\n{}", s.trace.join("\n"));
        }
    }
    s.drain();
    if let Err(e) = s.check().and_then(|_| s.check_end()) {
        panic!("seed {seed} at the end: {e}\n{}", s.trace.join("\n"));
    }
}

impl Sim {
    fn step(&mut self) {
        match self.rng.below(100) {
            0..=39 => self.client_request(),
            40..=64 => self.complete_append(),
            65..=84 => self.complete_markers(),
            85..=92 => {
                self.h.now += self.rng.below(40_000) as i64;
                let e = self.h.c.abort_timed_out(self.h.now, &mut self.h.ids);
                self.deliver(e);
            }
            93..=95 => {
                self.h.now += self.rng.below(8 * 24 * 3600 * 1000) as i64;
                let e = self.h.c.expire_transactional_ids(self.h.now);
                self.deliver(e);
            }
            _ => self.failover(),
        }
    }

    fn client_request(&mut self) {
        let ci = self.rng.below(self.clients.len() as u64) as usize;
        let c = self.clients[ci];
        let id = IDS[c.id].to_string();
        let req = self.h.request();
        self.outstanding.insert(req, ci);
        let (pid, epoch) = if self.rng.chance(5) {
            (c.pid, c.epoch.wrapping_add(1 + self.rng.below(2) as i16))
        } else {
            (c.pid, c.epoch)
        };
        let now = self.h.now;
        let tv = if c.tv2 {
            TxnVersion::TV2
        } else {
            TxnVersion::TV0
        };
        let effects = match self.rng.below(10) {
            0 => {
                let (p, e) = if self.rng.chance(50) {
                    (pid, epoch)
                } else {
                    (-1, -1)
                };
                let (p, e) = if p < 0 || e < 0 { (-1, -1) } else { (p, e) };
                let r = InitProducerId {
                    transactional_id: id,
                    timeout_ms: 30_000,
                    producer_id: p,
                    producer_epoch: e,
                    enable_two_phase_commit: false,
                    keep_prepared_txn: false,
                };
                self.trace.push(format!("{req:?} client {ci} init {r:?}"));
                self.h.c.init_producer_id(req, &r, now, &mut self.h.ids)
            }
            1..=4 => {
                let n = 1 + self.rng.below(2);
                let partitions = (0..n)
                    .map(|_| {
                        TopicPartition::new(
                            ["x", "y"][self.rng.below(2) as usize],
                            self.rng.below(3) as i32,
                        )
                    })
                    .collect();
                let r = AddPartitions {
                    transactional_id: id,
                    producer_id: pid,
                    producer_epoch: epoch,
                    partitions,
                    client_version: tv,
                };
                self.trace.push(format!("{req:?} client {ci} add {r:?}"));
                self.h.c.add_partitions(req, &r, now)
            }
            5 => {
                let r = AddOffsets {
                    transactional_id: id,
                    producer_id: pid,
                    producer_epoch: epoch,
                    offsets_partition: self.rng.below(2) as i32,
                };
                self.trace
                    .push(format!("{req:?} client {ci} add offsets {r:?}"));
                self.h.c.add_offsets(req, &r, now)
            }
            _ => {
                let result = if self.rng.chance(75) {
                    TxnResult::Commit
                } else {
                    TxnResult::Abort
                };
                let r = EndTxn {
                    transactional_id: id,
                    producer_id: pid,
                    producer_epoch: epoch,
                    result,
                    client_version: tv,
                };
                self.trace.push(format!("{req:?} client {ci} end {r:?}"));
                self.h.c.end_txn(req, &r, now, &mut self.h.ids)
            }
        };
        self.deliver(effects);
    }

    /// Takes answers (updating clients) and holds appends and markers, checking markers.
    fn deliver(&mut self, effects: Vec<sluice_txn::Effect>) {
        for e in effects {
            match e {
                sluice_txn::Effect::Answer { request, answer } => self.answer(request, answer),
                sluice_txn::Effect::Append(a) => {
                    self.trace
                        .push(format!("append {:?} {}", a.write, a.transactional_id));
                    self.h.held.appends.push(a)
                }
                sluice_txn::Effect::WriteMarkers(m) => {
                    self.trace.push(format!("markers {m:?}"));
                    if let Err(err) = self.check_markers(&m) {
                        panic!("bad markers: {err}\n{}", self.trace.join("\n"));
                    }
                    self.h.held.markers.push(m)
                }
            }
        }
    }

    fn answer(&mut self, request: RequestId, answer: Answer) {
        self.trace.push(format!("answer {request:?} {answer:?}"));
        assert!(self.answered.insert(request), "answered twice: {request:?}");
        let Some(ci) = self.outstanding.remove(&request) else {
            panic!("answer to an unknown request {request:?}");
        };
        let (error, pe) = match answer {
            Answer::InitProducerId {
                error,
                producer_id,
                producer_epoch,
            }
            | Answer::EndTxn {
                error,
                producer_id,
                producer_epoch,
            } => (error, Some((producer_id, producer_epoch))),
            Answer::AddPartitions { error } | Answer::AddOffsets { error } => (error, None),
        };
        assert_ne!(error, E::UNKNOWN_SERVER_ERROR, "{}", self.trace.join("\n"));
        if error == E::NONE
            && let Some((p, e)) = pe
            && p >= 0
        {
            self.clients[ci].pid = p;
            self.clients[ci].epoch = e;
        }
    }

    fn complete_append(&mut self) {
        if self.h.held.appends.is_empty() {
            return;
        }
        let i = self.rng.below(self.h.held.appends.len() as u64) as usize;
        let a = self.h.held.appends.remove(i);
        let result = if self.rng.chance(85) {
            Ok(())
        } else {
            // NOT_LEADER_OR_FOLLOWER comes only with a failover (a leader that lost its
            // partition): alone it would leave Kafka's coordinator waiting for an unload.
            Err([E::NOT_ENOUGH_REPLICAS, E::REQUEST_TIMED_OUT][self.rng.below(2) as usize])
        };
        self.finish(a, result);
    }

    fn finish(&mut self, a: Append, result: Result<(), E>) {
        self.trace
            .push(format!("append done {:?} {result:?}", a.write));
        if result.is_ok() {
            self.h
                .log
                .entry(a.partition)
                .or_default()
                .push((a.key.clone(), a.value.clone()));
        }
        let e = self.h.c.append_done(a.write, result, self.h.now);
        self.deliver(e);
    }

    fn complete_markers(&mut self) {
        if self.h.held.markers.is_empty() {
            return;
        }
        let i = self.rng.below(self.h.held.markers.len() as u64) as usize;
        let m = self.h.held.markers.remove(i);
        let results: Vec<_> = m
            .partitions
            .iter()
            .map(|p| {
                let r = if self.rng.chance(85) {
                    MarkerResult::Written
                } else {
                    MarkerResult::Failed(E::NOT_LEADER_OR_FOLLOWER)
                };
                (p.clone(), r)
            })
            .collect();
        self.trace
            .push(format!("markers done {} {results:?}", m.transactional_id));
        let e = self.h.c.markers_written(
            &m.transactional_id,
            m.coordinator_epoch,
            &results,
            self.h.now,
        );
        self.deliver(e);
    }

    /// The partition of a random id moves to a new coordinator epoch: appends in flight for it
    /// fail, markers in flight are lost, and the new coordinator loads the durable records.
    fn failover(&mut self) {
        let id = IDS[self.rng.below(3) as usize];
        let p = self.h.c.partition_for(id);
        let epoch = self.epochs.entry(p).or_insert(1);
        *epoch += 1;
        let epoch = *epoch;
        self.trace
            .push(format!("failover partition {p} to epoch {epoch}"));
        self.h.c.begin_load(p, epoch);
        let (stale, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.h.held.appends)
            .into_iter()
            .partition(|a| a.partition == p);
        self.h.held.appends = keep;
        for a in stale {
            self.finish(a, Err(E::NOT_LEADER_OR_FOLLOWER));
        }
        self.h
            .held
            .markers
            .retain(|m| self.h.c.partition_for(&m.transactional_id) != p);
        let records: Vec<Record> = self.h.log.get(&p).cloned().unwrap_or_default();
        let recs = records.iter().map(|(k, v)| (k.as_slice(), v.as_deref()));
        let e = self
            .h
            .c
            .finish_load(p, epoch, recs, self.h.now)
            .expect("load");
        self.deliver(e);
    }

    /// Delivers everything held, successfully, until nothing is left.
    fn drain(&mut self) {
        for _ in 0..10_000 {
            if let Some(a) = self.h.held.appends.pop() {
                self.finish(a, Ok(()));
            } else if let Some(m) = self.h.held.markers.pop() {
                let results: Vec<_> = m
                    .partitions
                    .iter()
                    .map(|p| (p.clone(), MarkerResult::Written))
                    .collect();
                let e = self.h.c.markers_written(
                    &m.transactional_id,
                    m.coordinator_epoch,
                    &results,
                    self.h.now,
                );
                self.deliver(e);
            } else {
                return;
            }
        }
        panic!("drain does not end");
    }

    fn records(&self, id: &str) -> Vec<Option<TxnLogValue>> {
        self.h.records_of(id)
    }

    fn check_markers(&self, m: &Markers) -> Result<(), String> {
        let recs = self.records(&m.transactional_id);
        let Some(Some(last)) = recs.last() else {
            return Err(format!("markers with no record: {m:?}"));
        };
        let want = match m.result {
            TxnResult::Commit => TxnState::PrepareCommit,
            TxnResult::Abort => TxnState::PrepareAbort,
        };
        if last.status != want.id() {
            return Err(format!("markers {m:?} after record {last:?}"));
        }
        if (last.producer_id, last.producer_epoch) != (m.producer_id, m.producer_epoch) {
            return Err(format!("markers {m:?} for another producer than {last:?}"));
        }
        let parts: BTreeSet<(String, i32)> = last
            .partitions
            .iter()
            .flatten()
            .flat_map(|t| t.partition_ids.iter().map(|p| (t.topic.clone(), *p)))
            .collect();
        for p in &m.partitions {
            if !parts.contains(&(p.topic.clone(), p.partition)) {
                return Err(format!("marker for {p:?} not in {last:?}"));
            }
        }
        Ok(())
    }

    fn check(&self) -> Result<(), String> {
        for id in IDS {
            self.check_records(id)?;
        }
        self.check_replay()
    }

    /// Epochs never go down for a producer id; Prepare is followed by the matching Complete.
    fn check_records(&self, id: &str) -> Result<(), String> {
        let recs = self.records(id);
        let mut last_epoch: BTreeMap<i64, i16> = BTreeMap::new();
        let mut prev: Option<&TxnLogValue> = None;
        for r in &recs {
            let Some(v) = r else {
                prev = None;
                continue;
            };
            if let Some(&e) = last_epoch.get(&v.producer_id)
                && v.producer_epoch < e
            {
                return Err(format!("{id}: epoch went down to {v:?}"));
            }
            last_epoch.insert(v.producer_id, v.producer_epoch);
            if let Some(p) = prev {
                let follow = match p.status {
                    2 => Some(4),
                    3 => Some(5),
                    _ => None,
                };
                if let Some(want) = follow {
                    let same = (p.producer_id, p.producer_epoch)
                        == (v.producer_id, v.producer_epoch)
                        || (v.producer_epoch == 0 && v.producer_id == p.next_producer_id);
                    if v.status != want || !same {
                        return Err(format!("{id}: {p:?} followed by {v:?}"));
                    }
                }
            }
            prev = Some(v);
        }
        Ok(())
    }

    /// Replaying the durable records gives the coordinator's state of every settled id.
    fn check_replay(&self) -> Result<(), String> {
        for (p, recs) in &self.h.log {
            let replayed = replay(recs.iter().map(|(k, v)| (k.as_slice(), v.as_deref())))
                .map_err(|e| e.to_string())?;
            for meta in self.h.c.all_metadata() {
                if self.h.c.partition_for(&meta.transactional_id) != *p
                    || meta.pending_state.is_some()
                    || meta.has_failed_epoch_fence
                {
                    continue;
                }
                let mut live = meta.clone();
                live.last_producer_epoch = -1;
                match replayed.get(&meta.transactional_id) {
                    Some(r) if *r == live => {}
                    None if meta.producer_epoch == -1 => {} // its first append failed
                    other => {
                        return Err(format!("replay gives {other:?}, coordinator has {live:?}"));
                    }
                }
            }
        }
        Ok(())
    }

    fn check_end(&self) -> Result<(), String> {
        if !self.outstanding.is_empty() {
            return Err(format!("never answered: {:?}", self.outstanding.keys()));
        }
        for meta in self.h.c.all_metadata() {
            if meta.pending_state.is_some() || meta.state.is_prepare() {
                return Err(format!("left unfinished: {meta:?}"));
            }
        }
        if std::env::var("STATS").is_ok() {
            let mut by_status = [0usize; 8];
            for id in IDS {
                for v in self.records(id).into_iter().flatten() {
                    by_status[v.status as usize % 8] += 1;
                }
            }
            let answers = self.answered.len();
            eprintln!("records by status {by_status:?}, {answers} answers");
        }
        // Every record decodes (the codec round-trips what the coordinator wrote).
        for recs in self.h.log.values() {
            for (k, v) in recs {
                match decode_record(k, v.as_deref()) {
                    Ok(LogRecord::Value { .. } | LogRecord::Tombstone { .. }) => {}
                    other => return Err(format!("record reads as {other:?}")),
                }
            }
        }
        Ok(())
    }
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// 200 seeds on a TV2 cluster (Kafka 4.x's default), 300 steps each.
#[test]
fn seeds_tv2_cluster() {
    let first = env("FIRST", 1);
    for seed in first..first + env("SEEDS", 200) {
        run(seed, env("STEPS", 300) as usize, Config::default());
    }
}

/// 100 seeds on a TV1 cluster (fences and timeouts abort without the TV2 bump).
#[test]
fn seeds_tv1_cluster() {
    let first = env("FIRST", 1);
    let config = Config {
        cluster_version: TxnVersion::TV1,
        ..Config::default()
    };
    for seed in first..first + env("SEEDS", 100) {
        run(seed, env("STEPS", 300) as usize, config.clone());
    }
}

/// The same seed gives the same trace.
#[test]
fn same_seed_same_run() {
    let a = std::panic::catch_unwind(|| run(7, 200, Config::default()));
    let b = std::panic::catch_unwind(|| run(7, 200, Config::default()));
    assert_eq!(a.is_ok(), b.is_ok());
}
