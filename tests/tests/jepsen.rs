//! A checker in the style of Jepsen's Kafka tests (issue 21): idempotent producers write
//! acks=all to a replicated topic while a nemesis kills nodes and partitions the network at
//! random; at the end every partition is read back and checked against the history of what
//! was sent and what was acknowledged.
//!
//! # The system
//! Three combined broker and controller nodes, each in its own network namespace
//! ([`sluice_tests::netns`]: a router namespace between them, partitions made with `ip rule
//! blackhole` there), and a topic `jepsen` with 4 partitions, replication factor 3 and
//! `min.insync.replicas=2`. The test process (the clients) reaches every node at all times.
//!
//! # The clients: idempotent producers over the raw protocol
//! Three producers, each with a producer id from InitProducerId (asked before the faults
//! start) and one lane (thread) per partition. A lane has at most one batch in flight: it
//! sends a batch of 1 to 5 records (values `p{producer}-k{partition}-b{batch}-r{record}`, all
//! distinct, CreateTime the clock's) stamped with the producer id, epoch and the partition's
//! next sequence, Produce acks=all (timeout 3 s), and sends the next batch 0 to 10 ms after
//! this one is acknowledged; the next sequence then moves past it. What a lane does with an answer, as Kafka's Java client
//! (`enable.idempotence=true`, `max.in.flight.requests.per.connection=1`) would:
//! - acknowledged: done, at the answered base offset;
//! - a retriable error (NOT_LEADER_OR_FOLLOWER, REQUEST_TIMED_OUT, NOT_ENOUGH_REPLICAS, ...;
//!   Kafka's `RetriableException`s), no answer within the client's read timeout (8 s), or a
//!   connection that fails: the leader is looked up again (Metadata from every node; the
//!   highest leader epoch wins, so a cut-off old leader is not believed) and the SAME batch
//!   (same producer id, epoch, sequence, bytes) is sent again after 100 ms, to the new leader.
//!   A broker that already has it answers with its first offsets (a duplicate is not appended
//!   again), which is what makes retries safe;
//! - DUPLICATE_SEQUENCE_NUMBER (old Kafka brokers' answer to a retried batch): success, offset
//!   unknown (the Java client does the same); the check then wants it exactly once anywhere;
//! - OUT_OF_ORDER_SEQUENCE_NUMBER or UNKNOWN_PRODUCER_ID: with one batch in flight this batch
//!   is always the one right after the last acknowledged, so the broker lacks the producer's
//!   last acknowledged batch or its state. The Java client (2.5+, KIP-360) bumps the producer
//!   epoch, restarts the partition's sequence at 0 and retries the batch; sluice's
//!   InitProducerId has no epoch bump (it hands out a new id), so the lane takes a new producer
//!   id for itself at sequence 0 (as older Java clients' `resetProducerId` did) and retries.
//!   This must not happen here, so it is recorded and fails the test;
//! - any other error (INVALID_PRODUCER_EPOCH, ...): the batch fails, as the Java client fails
//!   its send; the lane takes a new producer id (the Java client bumps the epoch after a
//!   failed batch, so the failed batch's sequences are never reused). Recorded and fails the
//!   test: nothing here should cause one;
//! - a batch not acknowledged within 120 s of its first send (Java's `delivery.timeout.ms`)
//!   fails the same way, without failing the test: a record sent but not acknowledged.
//!
//! Every attempt (batch, stamp, node, send and answer times, answer) and every batch (values,
//! stamp, acknowledged offset) goes into the history.
//!
//! # The nemesis
//! From a seed (printed; `SLUICE_JEPSEN_SEED=<n>` replays it), the test's thread loops for
//! `SLUICE_JEPSEN_SECS` seconds (default 75): pick a fault, hold it for a random time, heal,
//! wait 1 to 4 s. The faults:
//! - kill a node: SIGKILL (by PID) of a random node, restarted on its data dir after
//!   0.5 to 6 s;
//! - kill the controller: the same for the active controller (DescribeQuorum);
//! - kill a leader: the same for the leader of a random partition;
//! - isolate a node: blackhole rules cut a random node from both others for 1 to 10 s (long
//!   enough, often, for its broker session to expire and its leaderships to move);
//! - isolate a leader: the same for the leader of a random partition.
//!
//! The seed fixes the schedule (the kinds, the random picks, the times), not the interleaving
//! with the cluster: "the leader of partition 2" is whoever leads it then.
//! `SLUICE_JEPSEN_FAULTS` narrows the kinds picked from (comma-separated: `kill-node`,
//! `kill-controller`, `kill-leader`, `isolate-node`, `isolate-leader`; a seed replays the same
//! schedule only with the same list).
//!
//! # The end, and what is checked
//! The network is healed and every node started; the lanes send no new batch but keep trying
//! to deliver the one they hold (for at most 60 s: a batch still not acknowledged then fails
//! the test, the cluster did not recover); every partition must then show its three replicas
//! in the ISR on every node within 90 s (else it did not recover either), and the three
//! replicas' logs (the logical bytes of their `.log` segments) must become identical and end
//! at the leader's high watermark, past every acknowledged offset (else every offset where
//! they still differ, with each node's record there, is a problem). What did not recover is
//! reported with the rest, after the checks: each partition is still read from its leader
//! (the one with the highest epoch any node names) with Fetch, and:
//! - every acknowledged record is in its partition exactly once, at its acknowledged offset,
//!   with the producer id, epoch and sequence it was acknowledged with (else lost, misplaced or
//!   duplicated);
//! - offsets strictly increase; every record in the log is one a lane sent; no value is in the
//!   log twice (acknowledged or not: a record sent but not acknowledged may be there or not,
//!   but at most once); a batch is whole or absent;
//! - for each producer id and epoch, the sequences in the log run 0, 1, 2, ... without a gap or
//!   a repeat, up to at least the last acknowledged one;
//! - the three replicas' logs are identical up to the high watermark (above).
//!
//! A summary is printed: the faults by kind, batches and records sent, acknowledged, lost,
//! duplicated, the answers by kind, the longest time without an acknowledgement (whole topic
//! and per partition) and the faults around it. A failure prints the seed, the offending
//! records and their batches' histories, writes the whole history to `history.txt` next to
//! the nodes' logs and data dirs and keeps them (the path is printed; after a 600 s run that
//! is about 1 GB, most of it preallocated segment files, to delete by hand).
//! `checker_catches_lost_duplicated_and_gaps` feeds the checker a made-up history with each
//! kind of fault, so the checker itself is tested on every run.
//!
//! # Running it
//! Needs root and iproute2, as `tests/partition.rs`. The CI version (75 s of faults, 82 to
//! 85 s in all on a 2-core machine, about 50,000 batches):
//!
//! ```text
//! cargo test --release -p sluice-tests --test jepsen -- --nocapture
//! ```
//!
//! The long version, and a replay of a seed:
//!
//! ```text
//! SLUICE_JEPSEN_SECS=600 cargo test --release -p sluice-tests --test jepsen -- --nocapture
//! SLUICE_JEPSEN_SEED=1234 cargo test --release -p sluice-tests --test jepsen -- --nocapture
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sluice_net::client::Client;
use sluice_net::error_code::{ErrorCode, code};
use sluice_net::messages::InitProducerIdRequest;
use sluice_net::record_batch::build::{BatchSpec, KeyValue, batch};
use sluice_net::{Request, Response};
use sluice_tests::netns::{
    Cluster, Difference, LogRecord, NODES, active_controller, at, check_acknowledged,
    create_replicated, in_sync_within, logs_identical_within, metadata_within, placements_in,
    produce_on, produce_request, read_all, replica_differences, secs, wait_in_sync,
};
use sluice_tests::wait_for_state;

/// The topic and its partitions.
const TOPIC: &str = "jepsen";
const PARTITIONS: i32 = 4;
/// Producers (each with a lane per partition).
const PRODUCERS: u32 = 3;
/// Seconds of faults unless `SLUICE_JEPSEN_SECS` says otherwise.
const DEFAULT_SECS: u64 = 75;
/// A lane waits up to this long (at random) between two batches: a load that leaves the
/// machine some room.
const PAUSE_MAX_MS: u64 = 10;
/// The acks=all Produce timeout.
const PRODUCE_TIMEOUT_MS: i32 = 3000;
/// The lanes' connect timeout; a read waits four times as long.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a batch may go unacknowledged before it fails (Java's `delivery.timeout.ms`).
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(120);
/// After the final heal, how long the lanes may take to deliver the batch they hold.
const FINISH: Duration = Duration::from_secs(60);
/// How long the final states (ISR whole, logs identical) may take.
const SETTLE: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------------------------------------
// Seeded randomness.

/// SplitMix64: small, seedable, good enough to pick faults.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A duration between `lo` and `hi` milliseconds.
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }

    /// A node id.
    fn node(&mut self) -> i32 {
        NODES[usize::try_from(self.below(NODES.len() as u64)).expect("a small index")]
    }
}

/// The run's seed: `SLUICE_JEPSEN_SEED`, or one from the clock.
fn seed() -> u64 {
    if let Ok(s) = std::env::var("SLUICE_JEPSEN_SEED") {
        return s.trim().parse().expect("SLUICE_JEPSEN_SEED is a number");
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    (now.as_nanos() as u64 ^ u64::from(std::process::id())) % 1_000_000_000
}

/// Seconds of faults: `SLUICE_JEPSEN_SECS` or [`DEFAULT_SECS`].
fn fault_secs() -> u64 {
    std::env::var("SLUICE_JEPSEN_SECS")
        .ok()
        .map(|s| s.trim().parse().expect("SLUICE_JEPSEN_SECS is a number"))
        .unwrap_or(DEFAULT_SECS)
}

// ---------------------------------------------------------------------------------------------
// The history.

/// A batch: which producer and lane sent it, its number in the lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct BatchId {
    producer: u32,
    partition: i32,
    number: u32,
}

/// An idempotent producer's stamp on a batch: producer id, epoch and base sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Stamp {
    producer_id: i64,
    epoch: i16,
    sequence: i32,
}

/// What one Produce attempt got.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Acked(i64),
    Refused(i16),
    NoAnswer(String),
}

/// One Produce attempt of a batch.
#[derive(Debug, Clone)]
struct Attempt {
    batch: BatchId,
    stamp: Stamp,
    node: i32,
    sent: Instant,
    answered: Instant,
    outcome: Outcome,
}

impl std::fmt::Display for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let outcome = match &self.outcome {
            Outcome::Acked(offset) => format!("acknowledged at {offset}"),
            Outcome::Refused(e) => error_name(*e),
            Outcome::NoAnswer(why) => format!("no answer ({why})"),
        };
        write!(
            f,
            "[{:7.2}s] {:?} {:?} to node {}: {outcome} at {:.2}s",
            secs(self.sent),
            self.batch,
            self.stamp,
            self.node,
            secs(self.answered)
        )
    }
}

/// A batch as its lane left it.
#[derive(Debug, Clone)]
struct Batch {
    id: BatchId,
    values: Vec<String>,
    /// The stamp of its last attempt (the acknowledged one, if acknowledged).
    stamp: Stamp,
    /// Acknowledged: the base offset (-1 when answered DUPLICATE_SEQUENCE_NUMBER) and when.
    acked: Option<(i64, Instant)>,
    /// When it was first sent.
    first_sent: Option<Instant>,
    /// Its records' CreateTime (the same in every attempt, so a retry is the same bytes).
    created_ms: i64,
}

impl std::fmt::Display for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} {:?} {:?}", self.id, self.stamp, self.values)?;
        match self.acked {
            Some((offset, t)) => write!(f, " acknowledged at {offset} at {:.2}s", secs(t)),
            None => write!(f, " never acknowledged"),
        }
    }
}

/// Everything the lanes did, and how the test tells them to stop.
#[derive(Default)]
struct History {
    attempts: Mutex<Vec<Attempt>>,
    batches: Mutex<Vec<Batch>>,
    /// What must not happen (OUT_OF_ORDER_SEQUENCE_NUMBER, unexpected errors), as it happened.
    anomalies: Mutex<Vec<String>>,
    /// Set at the end: no new batches.
    stop: AtomicBool,
    /// Set at the end: the lanes give up their batch after this.
    finish_by: Mutex<Option<Instant>>,
}

/// Locks a mutex, poisoned or not (a panicking lane must not hide the history).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `NAME (code)` of an error code.
fn error_name(e: i16) -> String {
    ErrorCode::from_code(e).map_or_else(|| format!("error {e}"), |c| c.to_string())
}

// ---------------------------------------------------------------------------------------------
// The idempotent producer.

/// InitProducerId (not transactional) from any node: (producer id, epoch), trying the nodes in
/// turn until one answers or `give_up` says so.
fn init_producer_id(addrs: &[String], give_up: impl Fn() -> bool) -> Option<(i64, i16)> {
    let request = Request::InitProducerId(InitProducerIdRequest {
        transactional_id: None,
        transaction_timeout_ms: 60_000,
        producer_id: sluice_net::ProducerId(-1),
        producer_epoch: -1,
        ..Default::default()
    });
    for i in 0.. {
        if give_up() {
            return None;
        }
        let addr = &addrs[i % addrs.len()];
        if let Ok(mut c) = Client::connect(addr, "jepsen", CLIENT_TIMEOUT)
            && let Ok((_, Response::InitProducerId(r))) = c.call(4, &request)
            && r.error_code == code::NONE
        {
            return Some((r.producer_id.0, r.producer_epoch));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

/// The leader of `partition` as the nodes' Metadata shows it: the highest leader epoch any
/// node answers with a leader (a cut-off node may still name itself); `None` if none does.
fn find_leader(addrs: &[String], partition: i32) -> Option<i32> {
    addrs
        .iter()
        .filter_map(|a| metadata_within(a, TOPIC, Duration::from_secs(1)))
        .filter_map(|r| placements_in(&r).remove(&partition))
        .filter(|p| p.leader > 0)
        .map(|p| (p.epoch, p.leader))
        .max()
        .map(|(_, leader)| leader)
}

/// One producer's lane for one partition: one batch in flight, retried as the module docs say.
struct Lane {
    producer: u32,
    partition: i32,
    addrs: Vec<String>,
    history: Arc<History>,
    rng: Rng,
    /// One connection per node, made when needed, dropped when it fails.
    conns: BTreeMap<i32, Client>,
    /// The leader believed, until an answer says otherwise.
    leader: Option<i32>,
    producer_id: i64,
    epoch: i16,
    next_sequence: i32,
    next_batch: u32,
}

impl Lane {
    /// Sends batches until told to stop, then delivers the one it holds (or gives up).
    fn run(mut self) {
        while !self.history.stop.load(Ordering::Relaxed) {
            let mut b = self.next_batch();
            self.deliver(&mut b);
            lock(&self.history.batches).push(b);
            std::thread::sleep(Duration::from_millis(self.rng.below(PAUSE_MAX_MS + 1)));
        }
    }

    fn next_batch(&mut self) -> Batch {
        let number = self.next_batch;
        self.next_batch += 1;
        let count = 1 + self.rng.below(5);
        let (p, k) = (self.producer, self.partition);
        Batch {
            id: BatchId {
                producer: p,
                partition: k,
                number,
            },
            values: (0..count)
                .map(|i| format!("p{p}-k{k}-b{number:06}-r{i}"))
                .collect(),
            stamp: self.stamp(),
            acked: None,
            first_sent: None,
            created_ms: now_ms(),
        }
    }

    fn stamp(&self) -> Stamp {
        Stamp {
            producer_id: self.producer_id,
            epoch: self.epoch,
            sequence: self.next_sequence,
        }
    }

    /// Whether to give the batch up: delivery timeout, or the end's deadline passed.
    fn give_up(&self, b: &Batch) -> bool {
        let now = Instant::now();
        let finish = *lock(&self.history.finish_by);
        finish.is_some_and(|t| now > t) || b.first_sent.is_some_and(|t| now > t + DELIVERY_TIMEOUT)
    }

    /// Sends `b` until it is acknowledged or given up.
    fn deliver(&mut self, b: &mut Batch) {
        while !self.give_up(b) {
            let Some(node) = self
                .leader
                .or_else(|| find_leader(&self.addrs, self.partition))
            else {
                std::thread::sleep(Duration::from_millis(200));
                continue;
            };
            self.leader = Some(node);
            b.stamp = self.stamp();
            let attempt = self.send(node, b);
            let outcome = attempt.outcome.clone();
            b.first_sent.get_or_insert(attempt.sent);
            lock(&self.history.attempts).push(attempt);
            match outcome {
                Outcome::Acked(offset) => return self.acknowledged(b, offset),
                Outcome::Refused(code::DUPLICATE_SEQUENCE_NUMBER) => {
                    return self.acknowledged(b, -1);
                }
                Outcome::Refused(
                    e @ (code::OUT_OF_ORDER_SEQUENCE_NUMBER | code::UNKNOWN_PRODUCER_ID),
                ) => {
                    self.anomaly(
                        b,
                        node,
                        e,
                        "a new producer id, the batch retried at sequence 0",
                    );
                    self.reset_producer();
                }
                Outcome::Refused(e)
                    if ErrorCode::from_code(e).is_some_and(|c| c.is_retriable()) =>
                {
                    self.leader = None;
                }
                Outcome::Refused(e) => {
                    self.anomaly(b, node, e, "the batch failed, a new producer id");
                    self.reset_producer();
                    return;
                }
                Outcome::NoAnswer(_) => {
                    self.conns.remove(&node);
                    self.leader = None;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Given up: its sequences may or may not be in the log, so they are not reused.
        self.reset_producer();
    }

    fn acknowledged(&mut self, b: &mut Batch, offset: i64) {
        b.acked = Some((offset, Instant::now()));
        let n = i32::try_from(b.values.len()).expect("a small batch");
        self.next_sequence = self.next_sequence.wrapping_add(n);
    }

    fn anomaly(&self, b: &Batch, node: i32, e: i16, then: &str) {
        let line = format!(
            "{:?} {:?}: node {node} answered {}; {then}",
            b.id,
            b.stamp,
            error_name(e)
        );
        eprintln!("{} ANOMALY {line}", at());
        lock(&self.history.anomalies).push(line);
    }

    /// A new producer id for this lane, its sequence back at 0 (see the module docs).
    fn reset_producer(&mut self) {
        let history = Arc::clone(&self.history);
        let past = || lock(&history.finish_by).is_some_and(|t| Instant::now() > t);
        if let Some((id, epoch)) = init_producer_id(&self.addrs, past) {
            (self.producer_id, self.epoch, self.next_sequence) = (id, epoch, 0);
        }
    }

    /// One Produce of `b` to `node`, as the history records it.
    fn send(&mut self, node: i32, b: &Batch) -> Attempt {
        let spec = BatchSpec {
            producer_id: b.stamp.producer_id,
            producer_epoch: b.stamp.epoch,
            base_sequence: b.stamp.sequence,
            // The clock's time, as a client stamps CreateTime: a broker forgets a producer
            // whose newest batch is older than `producer.id.expiration.ms` (a day) by this
            // timestamp, as Kafka does, and would then take a retried batch as a new one.
            base_timestamp: b.created_ms,
            ..Default::default()
        };
        let records: Vec<KeyValue<'_>> = b
            .values
            .iter()
            .map(|v| (None, Some(v.as_bytes())))
            .collect();
        let request = produce_request(
            TOPIC,
            self.partition,
            batch(&spec, &records),
            PRODUCE_TIMEOUT_MS,
        );
        let sent = Instant::now();
        let addr = &self.addrs[usize::try_from(node - 1).expect("node ids start at 1")];
        let outcome = match self.conns.entry(node) {
            std::collections::btree_map::Entry::Occupied(e) => Ok(e.into_mut()),
            std::collections::btree_map::Entry::Vacant(e) => {
                Client::connect(addr, "jepsen", CLIENT_TIMEOUT)
                    .map(|c| e.insert(c))
                    .map_err(|e| e.to_string())
            }
        }
        .and_then(|c| produce_on(c, &request));
        let outcome = match outcome {
            Ok((code::NONE, offset)) => Outcome::Acked(offset),
            Ok((e, _)) => Outcome::Refused(e),
            Err(why) => Outcome::NoAnswer(why),
        };
        Attempt {
            batch: b.id,
            stamp: b.stamp,
            node,
            sent,
            answered: Instant::now(),
            outcome,
        }
    }
}

/// Milliseconds since 1970, as a client's CreateTime.
fn now_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(now.as_millis()).expect("a time in range")
}

/// The lanes of every producer, running.
struct Producers {
    history: Arc<History>,
    threads: Vec<JoinHandle<()>>,
}

impl Producers {
    /// A producer id per producer, then a lane per producer and partition.
    fn start(cluster: &Cluster, history: &Arc<History>, rng: &mut Rng) -> Producers {
        let addrs = cluster.addrs();
        let mut threads = Vec::new();
        for producer in 1..=PRODUCERS {
            let (producer_id, epoch) = init_producer_id(&addrs, || false).expect("a producer id");
            eprintln!(
                "{} producer {producer}: producer id {producer_id}, epoch {epoch}",
                at()
            );
            for partition in 0..PARTITIONS {
                let lane = Lane {
                    producer,
                    partition,
                    addrs: addrs.clone(),
                    history: Arc::clone(history),
                    rng: Rng(rng.next()),
                    conns: BTreeMap::new(),
                    leader: None,
                    producer_id,
                    epoch,
                    next_sequence: 0,
                    next_batch: 0,
                };
                threads.push(std::thread::spawn(move || lane.run()));
            }
        }
        Producers {
            history: Arc::clone(history),
            threads,
        }
    }

    /// Tells the lanes to send no new batch and to give up the one they hold after `finish`;
    /// waits for them.
    fn stop(&mut self, finish: Duration) {
        *lock(&self.history.finish_by) = Some(Instant::now() + finish);
        self.history.stop.store(true, Ordering::Relaxed);
        for t in std::mem::take(&mut self.threads) {
            t.join().expect("a lane thread");
        }
    }
}

impl Drop for Producers {
    fn drop(&mut self) {
        *lock(&self.history.finish_by) = Some(Instant::now());
        self.history.stop.store(true, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------------------------------------
// The nemesis.

/// The kinds of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    KillNode,
    KillController,
    KillLeader,
    IsolateNode,
    IsolateLeader,
}

/// Every kind, with its name in `SLUICE_JEPSEN_FAULTS`.
const KINDS: [(Kind, &str); 5] = [
    (Kind::KillNode, "kill-node"),
    (Kind::KillController, "kill-controller"),
    (Kind::KillLeader, "kill-leader"),
    (Kind::IsolateNode, "isolate-node"),
    (Kind::IsolateLeader, "isolate-leader"),
];

/// The kinds the nemesis picks from: those `SLUICE_JEPSEN_FAULTS` names (comma-separated), or
/// all.
fn fault_kinds() -> Vec<Kind> {
    let Ok(names) = std::env::var("SLUICE_JEPSEN_FAULTS") else {
        return KINDS.iter().map(|(k, _)| *k).collect();
    };
    names
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| {
            let known = KINDS.iter().find(|(_, name)| *name == n);
            known.map(|(k, _)| *k).unwrap_or_else(|| {
                panic!("SLUICE_JEPSEN_FAULTS: unknown fault {n:?}, known: {KINDS:?}")
            })
        })
        .collect()
}

/// One fault, as it was injected.
#[derive(Debug, Clone)]
struct Fault {
    kind: Kind,
    node: i32,
    /// The partition whose leader was the target.
    partition: Option<i32>,
    start: Instant,
    healed: Instant,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[{:7.2}s..{:7.2}s] {:?} node {}",
            secs(self.start),
            secs(self.healed),
            self.kind,
            self.node
        )?;
        if let Some(p) = self.partition {
            write!(f, " (leader of {TOPIC}-{p})")?;
        }
        Ok(())
    }
}

/// Injects faults for `length`, one at a time (see the module docs).
fn nemesis(cluster: &mut Cluster, rng: &mut Rng, length: Duration, h: &History) -> Vec<Fault> {
    let kinds = fault_kinds();
    assert!(!kinds.is_empty(), "SLUICE_JEPSEN_FAULTS names no fault");
    let until = Instant::now() + length;
    let mut faults = Vec::new();
    while Instant::now() < until {
        // Every draw is made every time, so the seed alone fixes the schedule.
        let kind = kinds[usize::try_from(rng.below(kinds.len() as u64)).expect("an index")];
        let (random_node, partition) = (rng.node(), rng.below(PARTITIONS as u64) as i32);
        let (kill_hold, cut_hold) = (rng.millis(500, 6000), rng.millis(1000, 10_000));
        let pause = rng.millis(1000, 4000);
        let target = match kind {
            Kind::KillController => active_controller(cluster, Duration::from_secs(1)),
            Kind::KillLeader | Kind::IsolateLeader => find_leader(&cluster.addrs(), partition),
            Kind::KillNode | Kind::IsolateNode => Some(random_node),
        };
        let node = target.unwrap_or_else(|| {
            eprintln!(
                "{} nemesis: no target for {kind:?}, node {random_node}",
                at()
            );
            random_node
        });
        let start = Instant::now();
        eprintln!(
            "{} nemesis: {kind:?} node {node} ({} batches acknowledged so far)",
            at(),
            acknowledged_batches(h)
        );
        if matches!(kind, Kind::IsolateNode | Kind::IsolateLeader) {
            cluster.net.isolate(node);
            std::thread::sleep(cut_hold);
            cluster.net.heal();
            eprintln!("{} nemesis: healed", at());
        } else {
            cluster.kill(node);
            std::thread::sleep(kill_hold);
            cluster.restart(node);
        }
        let leader_target = matches!(kind, Kind::KillLeader | Kind::IsolateLeader);
        faults.push(Fault {
            kind,
            node,
            partition: leader_target.then_some(partition),
            start,
            healed: Instant::now(),
        });
        std::thread::sleep(pause);
    }
    faults
}

fn acknowledged_batches(h: &History) -> usize {
    lock(&h.batches)
        .iter()
        .filter(|b| b.acked.is_some())
        .count()
}

// ---------------------------------------------------------------------------------------------
// The checker.

/// What the checker found in one partition.
#[derive(Debug, Default)]
struct Findings {
    /// Every violation, one line each.
    problems: Vec<String>,
    /// The values of the records involved (their batches' histories are shown).
    suspects: Vec<String>,
    lost: usize,
    misplaced: usize,
    duplicated: usize,
    gaps: usize,
    /// Offsets where the replicas differ at the end (up to 50 counted).
    differing: usize,
    /// Batches never acknowledged: in the log, or not.
    unacked_present: usize,
    unacked_absent: usize,
}

/// Checks one partition's log (as read from its leader) against its batches (module docs).
fn check_partition(partition: i32, log: &[LogRecord], batches: &[&Batch]) -> Findings {
    let mut f = Findings::default();
    for w in log.windows(2) {
        if w[1].offset <= w[0].offset {
            f.problems.push(format!(
                "{TOPIC}-{partition}: offset {} follows {}",
                w[1].offset, w[0].offset
            ));
        }
    }
    check_acks(partition, log, batches, &mut f);
    check_values(partition, log, batches, &mut f);
    check_sequences(partition, log, batches, &mut f);
    f
}

/// The replicas of a partition that still differ at the end: a problem per offset.
fn add_differences(partition: i32, differences: &[Difference], f: &mut Findings) {
    f.differing = differences.len();
    for d in differences {
        f.problems
            .push(format!("{TOPIC}-{partition}: the replicas differ at {d}"));
        let values = d.records.iter().filter_map(|(_, r)| r.as_ref());
        f.suspects.extend(values.map(LogRecord::text));
    }
}

/// Every acknowledged record exactly once at its offset, with its stamp.
fn check_acks(partition: i32, log: &[LogRecord], batches: &[&Batch], f: &mut Findings) {
    let mut acked = Vec::new();
    for b in batches {
        let Some((base, _)) = b.acked else { continue };
        for (i, v) in b.values.iter().enumerate() {
            let offset = if base < 0 { -1 } else { base + i as i64 };
            acked.push((
                offset,
                v.clone().into_bytes(),
                b.stamp.sequence + i as i32,
                b,
            ));
        }
    }
    let at_offset: HashMap<i64, &LogRecord> = log.iter().map(|r| (r.offset, r)).collect();
    let mut located = Vec::new();
    for (offset, value, sequence, b) in &acked {
        if *offset < 0 {
            // Answered DUPLICATE_SEQUENCE_NUMBER: anywhere, once (counted with the others).
            if !log.iter().any(|r| r.value == *value) {
                f.lost += 1;
                f.problems.push(format!(
                    "{TOPIC}-{partition}: lost: acknowledged (offset unknown) {}",
                    String::from_utf8_lossy(value)
                ));
                f.suspects.push(String::from_utf8_lossy(value).into_owned());
            }
            continue;
        }
        located.push((*offset, value.clone()));
        let Some(r) = at_offset.get(offset).filter(|r| r.value == *value) else {
            continue;
        };
        let stamp = (r.producer_id, r.producer_epoch, r.sequence);
        let want = (b.stamp.producer_id, b.stamp.epoch, *sequence);
        if stamp != want {
            f.problems.push(format!(
                "{TOPIC}-{partition}: {} at {offset} has (producer id, epoch, sequence) \
                 {stamp:?}, acknowledged with {want:?}",
                r.text()
            ));
            f.suspects.push(r.text());
        }
    }
    let ack = check_acknowledged(log, &located);
    f.lost += ack.lost.len();
    f.misplaced += ack.misplaced.len();
    for line in ack.lines() {
        f.problems.push(format!("{TOPIC}-{partition}: {line}"));
    }
    for a in ack.lost.iter().chain(&ack.misplaced).chain(&ack.repeated) {
        f.suspects
            .push(String::from_utf8_lossy(&a.value).into_owned());
    }
}

/// Every record one a lane sent, none twice, every unacknowledged batch whole or absent.
fn check_values(partition: i32, log: &[LogRecord], batches: &[&Batch], f: &mut Findings) {
    let mut offsets_of: HashMap<&[u8], Vec<i64>> = HashMap::new();
    for r in log {
        offsets_of.entry(&r.value).or_default().push(r.offset);
    }
    let sent: HashMap<&[u8], &Batch> = batches
        .iter()
        .flat_map(|b| b.values.iter().map(move |v| (v.as_bytes(), *b)))
        .collect();
    let mut seen: Vec<(&&[u8], &Vec<i64>)> = offsets_of.iter().collect();
    seen.sort_by_key(|(_, offsets)| offsets[0]);
    for (value, offsets) in seen {
        let text = String::from_utf8_lossy(value).into_owned();
        if !sent.contains_key(*value) {
            f.problems.push(format!(
                "{TOPIC}-{partition}: {text} at {offsets:?} was never sent to this partition"
            ));
        }
        if offsets.len() > 1 {
            f.duplicated += 1;
            f.problems.push(format!(
                "{TOPIC}-{partition}: duplicated: {text} at offsets {offsets:?}"
            ));
            f.suspects.push(text);
        }
    }
    for b in batches.iter().filter(|b| b.acked.is_none()) {
        let present = b
            .values
            .iter()
            .filter(|v| offsets_of.contains_key(v.as_bytes()))
            .count();
        if present == 0 {
            f.unacked_absent += 1;
        } else {
            f.unacked_present += 1;
        }
        if present != 0 && present != b.values.len() {
            f.problems.push(format!(
                "{TOPIC}-{partition}: {present} of the {} records of batch {:?} (never \
                 acknowledged) are in the log",
                b.values.len(),
                b.id
            ));
            f.suspects.push(b.values[0].clone());
        }
    }
}

/// For each producer id and epoch, sequences 0, 1, 2, ... in log order, up to at least the
/// last acknowledged one.
fn check_sequences(partition: i32, log: &[LogRecord], batches: &[&Batch], f: &mut Findings) {
    let mut last: HashMap<(i64, i16), (i32, i64)> = HashMap::new();
    for r in log {
        let key = (r.producer_id, r.producer_epoch);
        let expected = last.get(&key).map_or(0, |(s, _)| s.wrapping_add(1));
        if r.producer_id < 0 || r.sequence != expected {
            let what = if r.sequence > expected {
                "gap"
            } else {
                "sequence repeated or back"
            };
            f.gaps += usize::from(r.sequence > expected);
            let before = last.get(&key).map(|(s, o)| format!("{s} at {o}"));
            f.problems.push(format!(
                "{TOPIC}-{partition}: {what}: producer {key:?} sequence {} at offset {} ({}), \
                 expected {expected}; before it: {before:?}",
                r.sequence,
                r.offset,
                r.text()
            ));
            f.suspects.push(r.text());
        }
        last.insert(key, (r.sequence, r.offset));
    }
    let mut acked_up_to: HashMap<(i64, i16), i32> = HashMap::new();
    for b in batches.iter().filter(|b| b.acked.is_some()) {
        let end = b.stamp.sequence + b.values.len() as i32 - 1;
        let e = acked_up_to
            .entry((b.stamp.producer_id, b.stamp.epoch))
            .or_insert(end);
        *e = (*e).max(end);
    }
    for (key, end) in acked_up_to {
        let in_log = last.get(&key).map(|(s, _)| *s);
        if in_log.is_none_or(|s| s < end) {
            f.problems.push(format!(
                "{TOPIC}-{partition}: producer {key:?}: sequences in the log end at {in_log:?}, \
                 the last acknowledged is {end}"
            ));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The run: settling, the summary, the post-mortem.

/// A run's state, for the end and for a failure's post-mortem: dropped while panicking, it
/// prints the seed, writes the history next to the nodes' logs and keeps them.
struct Run {
    seed: u64,
    cluster: Cluster,
    history: Arc<History>,
    faults: Vec<Fault>,
    /// The lanes' batches and attempts, once moved out of the history ([`Run::collect`]).
    batches: Vec<Batch>,
    attempts: Vec<Attempt>,
    /// Each partition's log as read at the end.
    logs: BTreeMap<i32, Vec<LogRecord>>,
    /// Where the replicas of a partition still differ at the end (the first 50 offsets).
    differences: BTreeMap<i32, Vec<Difference>>,
    /// What did not recover after the final heal (lanes, partitions).
    unrecovered: Vec<String>,
}

impl Run {
    /// Moves the batches and attempts recorded so far out of the history into the run.
    fn collect(&mut self) {
        self.batches.append(&mut lock(&self.history.batches));
        self.attempts.append(&mut lock(&self.history.attempts));
    }

    /// Writes the history (faults, every attempt, every batch, the logs read) to
    /// `history.txt` in the cluster's directory, keeps the directory: its path.
    fn post_mortem(&mut self) -> std::path::PathBuf {
        let mut out = format!("seed {}\n\nfaults:\n", self.seed);
        for fault in &self.faults {
            out += &format!("{fault}\n");
        }
        out += "\nattempts:\n";
        self.collect();
        self.attempts.sort_by_key(|a| a.sent);
        for a in &self.attempts {
            out += &format!("{a}\n");
        }
        out += "\nbatches:\n";
        for b in &self.batches {
            out += &format!("{b}\n");
        }
        for (p, differences) in &self.differences {
            out += &format!("\n{TOPIC}-{p}: the replicas differ:\n");
            for d in differences {
                out += &format!("{d}\n");
            }
        }
        for (p, log) in &self.logs {
            out += &format!("\n{TOPIC}-{p} as read from its leader:\n");
            for r in log {
                let stamp = (r.producer_id, r.producer_epoch, r.sequence);
                let (offset, epoch) = (r.offset, r.leader_epoch);
                out += &format!("{offset} {stamp:?} leader epoch {epoch} {}\n", r.text());
            }
        }
        let path = self.cluster.root().join("history.txt");
        if let Err(e) = std::fs::write(&path, out) {
            eprintln!("writing {}: {e}", path.display());
        }
        self.cluster.keep()
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let dir = self.post_mortem();
            eprintln!(
                "jepsen FAILED with seed {0} (replay: SLUICE_JEPSEN_SEED={0}); the history \
                 (history.txt), the nodes' logs and data dirs are kept in {1}",
                self.seed,
                dir.display()
            );
        }
    }
}

/// Waits until every lane has an acknowledged batch.
fn wait_every_lane_acknowledged(h: &History) {
    wait_for_state(
        Duration::from_secs(60),
        "every lane (producer, partition) with an acknowledged batch",
        || {
            let mut lanes: Vec<(u32, i32)> = lock(&h.batches)
                .iter()
                .filter(|b| b.acked.is_some())
                .map(|b| (b.id.producer, b.id.partition))
                .collect();
            lanes.sort_unstable();
            lanes.dedup();
            lanes.len()
        },
        |n| *n == (PRODUCERS * PARTITIONS as u32) as usize,
    );
}

/// The end (module docs): heal, every node started, the lanes deliver what they hold, every
/// ISR whole, the replicas identical; each partition's log, read from its leader.
fn settle(run: &mut Run, producers: &mut Producers) {
    run.cluster.net.heal();
    for id in NODES {
        run.cluster.restart(id);
    }
    eprintln!(
        "{} healed, every node running; the lanes deliver what they hold",
        at()
    );
    producers.stop(FINISH);
    run.collect();
    let mut last: BTreeMap<(u32, i32), &Batch> = BTreeMap::new();
    for b in &run.batches {
        last.insert((b.id.producer, b.id.partition), b);
    }
    let stuck: Vec<String> = last
        .values()
        .filter(|b| b.acked.is_none())
        .map(|b| format!("{:?} {:?}", b.id, b.stamp))
        .collect();
    if stuck.is_empty() {
        eprintln!("{} every lane delivered its last batch", at());
    } else {
        let line = format!(
            "the cluster did not recover: {} s after the heal these lanes' last batches are \
             still not acknowledged: {stuck:?}",
            FINISH.as_secs()
        );
        eprintln!("{} {line}", at());
        run.unrecovered.push(line);
    }
    for p in 0..PARTITIONS {
        settle_partition(run, p);
    }
}

/// One partition at the end: its ISR whole on every node, its replicas identical (else what
/// differs), its log read from its leader. A partition that does not get there is a problem
/// of the run; its log is still read from the leader with the highest epoch any node names.
fn settle_partition(run: &mut Run, p: i32) {
    let end = run
        .batches
        .iter()
        .filter(|b| b.id.partition == p)
        .filter_map(|b| b.acked.map(|(o, _)| o + b.values.len() as i64))
        .max()
        .unwrap_or(0);
    let (leader, within) = match in_sync_within(&run.cluster, TOPIC, p, SETTLE) {
        Ok(placed) => {
            eprintln!("{} {TOPIC}-{p}: {placed:?}", at());
            (placed.leader, SETTLE)
        }
        Err(views) => {
            let line = format!(
                "{TOPIC}-{p}: the nodes did not show one leader and the full ISR within {} s; \
                 last seen: {views:?}",
                SETTLE.as_secs()
            );
            eprintln!("{} {line}", at());
            run.unrecovered.push(line);
            let named = views.iter().flatten().filter(|v| v.leader > 0);
            let Some(highest) = named.max_by_key(|v| v.epoch) else {
                return;
            };
            (highest.leader, Duration::from_secs(5))
        }
    };
    let topic = (TOPIC, p);
    match logs_identical_within(&run.cluster, topic, leader, end, within) {
        Ok(_) => eprintln!("{} {TOPIC}-{p}: the replicas are identical", at()),
        Err(seen) => {
            eprintln!("{} {TOPIC}-{p}: the replicas DIFFER: {seen:?}", at());
            let differences = replica_differences(&run.cluster, topic, leader, 50);
            run.differences.insert(p, differences);
        }
    }
    let log = read_all(&run.cluster.addr(leader), TOPIC, p);
    eprintln!(
        "{} {TOPIC}-{p}: {} records read from node {leader}",
        at(),
        log.len()
    );
    run.logs.insert(p, log);
}

/// The longest stretch of `times` (sorted) without an acknowledgement within `from..to`:
/// (length, start, end).
fn longest_gap(times: &[Instant], from: Instant, to: Instant) -> (Duration, Instant, Instant) {
    let inside = times.iter().copied().filter(|t| *t >= from && *t <= to);
    let mut points: Vec<Instant> = std::iter::once(from).chain(inside).collect();
    points.push(to);
    points
        .windows(2)
        .map(|w| (w[1] - w[0], w[0], w[1]))
        .max()
        .unwrap_or((Duration::ZERO, from, to))
}

/// Prints the run's figures (module docs).
fn summary(run: &Run, findings: &BTreeMap<i32, Findings>, (from, to): (Instant, Instant)) {
    let (batches, attempts) = (&run.batches, &run.attempts);
    let mut kinds: BTreeMap<Kind, usize> = BTreeMap::new();
    for f in &run.faults {
        *kinds.entry(f.kind).or_insert(0) += 1;
    }
    let records = |acked: bool| -> usize {
        batches
            .iter()
            .filter(|b| b.acked.is_some() == acked)
            .map(|b| b.values.len())
            .sum()
    };
    let sum = |get: fn(&Findings) -> usize| findings.values().map(get).sum::<usize>();
    eprintln!(
        "=== jepsen summary: seed {}, {:.0} s of faults ===",
        run.seed,
        (to - from).as_secs_f64()
    );
    eprintln!("faults injected: {} {kinds:?}", run.faults.len());
    let acked_batches = batches.iter().filter(|b| b.acked.is_some()).count();
    eprintln!(
        "batches sent {}, acknowledged {acked_batches}; records sent {}, acknowledged {}, \
         lost {}, misplaced {}, duplicated {}, sequence gaps {}",
        batches.len(),
        records(true) + records(false),
        records(true),
        sum(|f| f.lost),
        sum(|f| f.misplaced),
        sum(|f| f.duplicated),
        sum(|f| f.gaps),
    );
    eprintln!(
        "batches never acknowledged: {} in the log, {} not",
        sum(|f| f.unacked_present),
        sum(|f| f.unacked_absent)
    );
    let differing: BTreeMap<i32, usize> = findings
        .iter()
        .filter(|(_, f)| f.differing > 0)
        .map(|(p, f)| (*p, f.differing))
        .collect();
    eprintln!("offsets where the replicas differ, by partition: {differing:?}");
    let mut answers: BTreeMap<String, usize> = BTreeMap::new();
    for a in attempts {
        let key = match &a.outcome {
            Outcome::Acked(_) => "acknowledged".to_owned(),
            Outcome::Refused(e) => error_name(*e),
            Outcome::NoAnswer(_) => "no answer".to_owned(),
        };
        *answers.entry(key).or_insert(0) += 1;
    }
    eprintln!("produce attempts {}: {answers:?}", attempts.len());
    eprintln!("anomalies: {:?}", lock(&run.history.anomalies));
    eprintln!("not recovered after the heal: {:?}", run.unrecovered);
    print_gaps(run, (from, to));
}

/// The longest time without an acknowledgement, over the topic and per partition, and the
/// faults around it.
fn print_gaps(run: &Run, (from, to): (Instant, Instant)) {
    let times = |p: Option<i32>| -> Vec<Instant> {
        let mut t: Vec<Instant> = run
            .batches
            .iter()
            .filter(|b| p.is_none_or(|p| b.id.partition == p))
            .filter_map(|b| b.acked.map(|(_, at)| at))
            .collect();
        t.sort_unstable();
        t
    };
    for p in std::iter::once(None).chain((0..PARTITIONS).map(Some)) {
        let (gap, start, end) = longest_gap(&times(p), from, to);
        let around: Vec<String> = run
            .faults
            .iter()
            .filter(|f| f.start <= end && f.healed + Duration::from_secs(10) >= start)
            .map(ToString::to_string)
            .collect();
        let what = p.map_or_else(|| "the topic".to_owned(), |p| format!("{TOPIC}-{p}"));
        eprintln!(
            "longest ack gap, {what}: {:.2} s ({:.2}s..{:.2}s); faults around it: {around:?}",
            gap.as_secs_f64(),
            secs(start),
            secs(end)
        );
    }
}

/// Fails, if anything was found, with the seed, every problem and the suspects' histories.
fn verdict(run: &Run, findings: &BTreeMap<i32, Findings>) {
    let problems: Vec<&String> = findings.values().flat_map(|f| &f.problems).collect();
    let anomalies = lock(&run.history.anomalies).clone();
    if problems.is_empty() && anomalies.is_empty() && run.unrecovered.is_empty() {
        return;
    }
    let mut shown = String::new();
    let mut suspects: Vec<&Batch> = findings
        .values()
        .flat_map(|f| &f.suspects)
        .filter_map(|v| run.batches.iter().find(|b| b.values.contains(v)))
        .collect();
    suspects.sort_by_key(|b| b.id);
    suspects.dedup_by_key(|b| b.id);
    for b in suspects.iter().take(20) {
        shown += &format!("\n{b}:\n");
        for a in run.attempts.iter().filter(|a| a.batch == b.id) {
            shown += &format!("  {a}\n");
        }
    }
    panic!(
        "seed {0} (replay: SLUICE_JEPSEN_SEED={0}): {1} problems, {2} anomalies, {3} not \
         recovered\n{4}\nanomalies: {anomalies:#?}\nnot recovered: {5:#?}\nthe histories of \
         the records involved:{shown}",
        run.seed,
        problems.len(),
        anomalies.len(),
        run.unrecovered.len(),
        problems
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        run.unrecovered,
    );
}

/// Idempotent producers under random kills and partitions: see the module docs.
#[test]
fn idempotent_producers_under_kills_and_partitions() {
    let (seed, length) = (seed(), Duration::from_secs(fault_secs()));
    eprintln!(
        "jepsen: seed {seed} (replay: SLUICE_JEPSEN_SEED={seed}), {} s of faults",
        length.as_secs()
    );
    let mut rng = Rng(seed);
    let mut run = Run {
        seed,
        cluster: Cluster::start("jep"),
        history: Arc::default(),
        faults: Vec::new(),
        batches: Vec::new(),
        attempts: Vec::new(),
        logs: BTreeMap::new(),
        differences: BTreeMap::new(),
        unrecovered: Vec::new(),
    };
    create_replicated(&run.cluster.addr(1), TOPIC, PARTITIONS);
    for p in 0..PARTITIONS {
        let placed = wait_in_sync(&run.cluster, TOPIC, p, SETTLE, "the new topic");
        eprintln!("{} {TOPIC}-{p} placed: {placed:?}", at());
    }
    let mut producers = Producers::start(&run.cluster, &run.history, &mut rng);
    wait_every_lane_acknowledged(&run.history);
    let from = Instant::now();
    eprintln!("{} every lane acknowledged; the nemesis starts", at());
    run.faults = nemesis(&mut run.cluster, &mut rng, length, &run.history);
    let to = Instant::now();
    settle(&mut run, &mut producers);
    let mut findings: BTreeMap<i32, Findings> = run
        .logs
        .iter()
        .map(|(p, log)| {
            let mine: Vec<&Batch> = run
                .batches
                .iter()
                .filter(|b| b.id.partition == *p)
                .collect();
            (*p, check_partition(*p, log, &mine))
        })
        .collect();
    for (p, differences) in &run.differences {
        add_differences(*p, differences, findings.entry(*p).or_default());
    }
    summary(&run, &findings, (from, to));
    verdict(&run, &findings);
    eprintln!("{} done: nothing lost, duplicated or out of order", at());
}

/// The checker on a made-up history: a clean one passes; a lost acknowledged record, a
/// duplicate, a misplaced one, a sequence gap and a partial unacknowledged batch are each found.
#[test]
fn checker_catches_lost_duplicated_and_gaps() {
    let t = Instant::now();
    let stamp = |sequence| Stamp {
        producer_id: 7,
        epoch: 0,
        sequence,
    };
    let made = |number: u32, sequence: i32, n: usize, acked: Option<i64>| Batch {
        id: BatchId {
            producer: 1,
            partition: 0,
            number,
        },
        values: (0..n).map(|i| format!("b{number}-r{i}")).collect(),
        stamp: stamp(sequence),
        acked: acked.map(|o| (o, t)),
        first_sent: Some(t),
        created_ms: 0,
    };
    let batches = [
        made(0, 0, 2, Some(0)),
        made(1, 2, 3, Some(2)),
        made(2, 5, 2, None),
    ];
    let refs: Vec<&Batch> = batches.iter().collect();
    let record = |offset: i64, sequence: i32, value: &str| LogRecord {
        offset,
        leader_epoch: 0,
        producer_id: 7,
        producer_epoch: 0,
        sequence,
        value: value.as_bytes().to_vec(),
    };
    let clean = vec![
        record(0, 0, "b0-r0"),
        record(1, 1, "b0-r1"),
        record(2, 2, "b1-r0"),
        record(3, 3, "b1-r1"),
        record(4, 4, "b1-r2"),
        record(5, 5, "b2-r0"),
        record(6, 6, "b2-r1"),
    ];
    let f = check_partition(0, &clean, &refs);
    assert!(f.problems.is_empty(), "{:?}", f.problems);
    assert_eq!((f.unacked_present, f.unacked_absent), (1, 0));
    assert!(check_partition(0, &clean[..5], &refs).problems.is_empty());

    let mut lost = clean.clone();
    lost.remove(3);
    let f = check_partition(0, &lost, &refs);
    assert_eq!((f.lost, f.gaps), (1, 1), "{:?}", f.problems);
    assert!(f.suspects.contains(&"b1-r1".to_owned()), "{:?}", f.suspects);

    let mut duplicated = clean.clone();
    duplicated.push(record(7, 2, "b1-r0"));
    let f = check_partition(0, &duplicated, &refs);
    assert_eq!(f.duplicated, 1, "{:?}", f.problems);
    assert!(
        f.problems.iter().any(|p| p.contains("repeated")),
        "{:?}",
        f.problems
    );

    let mut moved = clean[..5].to_vec();
    moved.swap(3, 4);
    (moved[3].offset, moved[4].offset) = (3, 4);
    let f = check_partition(0, &moved, &refs);
    assert_eq!(f.misplaced, 2, "{:?}", f.problems);

    let f = check_partition(0, &clean[..6], &refs);
    assert_eq!(f.problems.len(), 1, "{:?}", f.problems);
    assert!(
        f.problems[0].contains("1 of the 2 records"),
        "{:?}",
        f.problems
    );
}
