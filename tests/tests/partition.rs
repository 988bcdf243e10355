//! A network partition of one broker (issue 21), made with Linux network namespaces and veth
//! pairs ([`sluice_tests::netns`]: a router namespace, one namespace per node, `ip rule
//! blackhole` partitions): three combined broker and controller nodes, a topic with
//! replication factor 3 and `min.insync.replicas=2`, acks=all producers writing to every node,
//! and the leader of the partition cut off from the two other nodes, then reconnected. The
//! test itself reaches every node, the isolated one included, and sees what it answers.
//!
//! Asserted:
//! 1. the isolated leader acknowledges no acks=all Produce sent to it between the cut and the
//!    heal, whenever it answers: such a record lands past anything its followers fetched before
//!    the cut, so its high watermark cannot reach it while the ISR stays whole (and it cannot
//!    reach a controller to shrink the ISR); by the heal the majority has elected another leader
//!    in a new epoch, so after the heal the record can only be truncated, never committed. What
//!    it answered is printed; every answer of every node must be a retriable refusal
//!    (REQUEST_TIMED_OUT, NOT_ENOUGH_REPLICAS, NOT_LEADER_OR_FOLLOWER, ...) or none;
//! 2. both nodes of the majority show another leader with a higher leader epoch, and acks=all
//!    produces to it are acknowledged;
//! 3. after the heal all three nodes show the partition with its three replicas in the ISR; the
//!    records the isolated leader appended after the cut (never acknowledged) are gone from its
//!    log, truncated where it left the new leader's (DivergingEpoch, in its log);
//! 4. every acknowledged record, by whichever node, is in the final leader's log exactly once at
//!    its acknowledged offset, and the three replicas' logs (the logical bytes of the `.log`
//!    segments in their data dirs) are identical and end at the leader's high watermark.
//!
//! Needs root and iproute2 (`ip netns`, veth); without them the test fails with a message
//! saying so.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_net::client::Client;
use sluice_net::error_code::code;
use sluice_net::record_batch::build::{BatchSpec, KeyValue, batch};
use sluice_tests::netns::{
    CONNECT, Cluster, LogRecord, NODES, Placement, WAIT, at, check_acknowledged, create_replicated,
    log_records, placement, produce_on, produce_request, secs, wait_in_sync, wait_logs_identical,
};
use sluice_tests::wait_for_state;

/// The topic, one partition.
const TOPIC: &str = "split";
/// The acks=all Produce timeout: how long the isolated leader may hold a request.
const PRODUCE_TIMEOUT_MS: i32 = 3000;

/// Produce of one record `value` to partition 0 of [`TOPIC`] on `broker`, acks=all: the
/// partition's (error code, base offset); `None` without an answer (no connection, or none
/// within the client's read timeout, 20 s).
fn produce(broker: &str, value: &str) -> Option<(i16, i64)> {
    let records: Vec<KeyValue<'_>> = vec![(None, Some(value.as_bytes()))];
    let request = produce_request(
        TOPIC,
        0,
        batch(&BatchSpec::default(), &records),
        PRODUCE_TIMEOUT_MS,
    );
    let mut client = Client::connect(broker, "test", CONNECT).ok()?;
    produce_on(&mut client, &request).ok()
}

/// What one Produce got.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    Acked(i64),
    Refused(i16),
    NoAnswer,
}

/// One Produce: to which node, which value, when it was sent and answered, what it got.
#[derive(Clone)]
struct Answer {
    node: i32,
    value: String,
    sent: Instant,
    answered: Instant,
    outcome: Outcome,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} to node {}: sent at {:.2}s, {:?} at {:.2}s",
            self.value,
            self.node,
            secs(self.sent),
            self.outcome,
            secs(self.answered)
        )
    }
}

/// What the producer threads share with the test.
#[derive(Default)]
struct Shared {
    answers: Mutex<Vec<Answer>>,
    stop: AtomicBool,
}

/// One acks=all producer per node, each sending only to its node, so the isolated leader keeps
/// being asked. Every attempt sends a fresh value (`n{node}-{attempt}`; a retried value could
/// land twice); after anything but an acknowledgement it waits 100 ms. Stopped when dropped.
struct Producers {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Producers {
    fn start(cluster: &Cluster) -> Producers {
        let shared = Arc::new(Shared::default());
        let threads = (1..=3)
            .map(|node| {
                let (shared, addr) = (Arc::clone(&shared), cluster.addr(node));
                std::thread::spawn(move || produce_to(node, &addr, &shared))
            })
            .collect();
        Producers { shared, threads }
    }

    fn answers(&self) -> Vec<Answer> {
        self.shared
            .answers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Stops the threads and waits for their last answers: every answer.
    fn stop(&mut self) -> Vec<Answer> {
        self.shared.stop.store(true, Ordering::Relaxed);
        for t in std::mem::take(&mut self.threads) {
            t.join().expect("a producer thread");
        }
        self.answers()
    }

    /// Waits until `node` acknowledged `count` produces sent at or after `since`.
    fn wait_acks(&self, node: i32, since: Instant, count: usize, what: &str) {
        wait_for_state(
            WAIT,
            &format!("{count} records acknowledged by node {node} {what} (so far)"),
            || {
                self.answers()
                    .iter()
                    .filter(|a| a.node == node && a.sent >= since)
                    .filter(|a| matches!(a.outcome, Outcome::Acked(_)))
                    .count()
            },
            |n| *n >= count,
        );
    }
}

impl Drop for Producers {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

fn produce_to(node: i32, addr: &str, shared: &Shared) {
    let mut attempt = 0u32;
    while !shared.stop.load(Ordering::Relaxed) {
        let value = format!("n{node}-{attempt:06}");
        attempt += 1;
        let sent = Instant::now();
        let outcome = match produce(addr, &value) {
            Some((code::NONE, offset)) => Outcome::Acked(offset),
            Some((error, _)) => Outcome::Refused(error),
            None => Outcome::NoAnswer,
        };
        let acked = matches!(outcome, Outcome::Acked(_));
        shared
            .answers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Answer {
                node,
                value,
                sent,
                answered: Instant::now(),
                outcome,
            });
        if !acked {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// How many of `answers` got each outcome (error codes by number).
fn tally<'a>(answers: impl Iterator<Item = &'a Answer>) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for a in answers {
        let key = match a.outcome {
            Outcome::Acked(_) => "acked".to_owned(),
            Outcome::Refused(e) => format!("error {e}"),
            Outcome::NoAnswer => "no answer".to_owned(),
        };
        *out.entry(key).or_insert(0) += 1;
    }
    out
}

/// Errors a producer retries: the leadership moved, or the ISR is short or did not answer.
const RETRIABLE: [i16; 5] = [
    code::LEADER_NOT_AVAILABLE,
    code::NOT_LEADER_OR_FOLLOWER,
    code::REQUEST_TIMED_OUT,
    code::NOT_ENOUGH_REPLICAS,
    code::NOT_ENOUGH_REPLICAS_AFTER_APPEND,
];

/// A network partition of the leader under acks=all load: see the module docs.
#[test]
fn isolated_leader_stops_acknowledging_and_rejoins_after_heal() {
    at();
    let mut cluster = Cluster::start("part");
    create_replicated(&cluster.addr(1), TOPIC, 1);
    let first = wait_in_sync(&cluster, TOPIC, 0, WAIT, "the new topic");
    eprintln!("{} {TOPIC}-0 placed: {first:?}", at());
    let mut producers = Producers::start(&cluster);
    producers.wait_acks(first.leader, Instant::now(), 20, "before the cut");

    let (cut, elected) = cut_off_leader(&mut cluster, &producers, &first);
    let isolated = first.leader;
    let (stranded_log, _) = cluster.replica(isolated, TOPIC, 0);
    let old_view = placement(&cluster.addr(isolated), TOPIC, 0);
    eprintln!(
        "{} the isolated node's own view before the heal: {old_view:?}",
        at()
    );

    cluster.net.heal();
    let healed = Instant::now();
    eprintln!("{} healed: the router's rules deleted", at());
    let last = wait_in_sync(&cluster, TOPIC, 0, WAIT, "after the heal");
    eprintln!("{} all three in sync again: {last:?}", at());
    producers.wait_acks(last.leader, Instant::now(), 10, "after the heal");
    let answers = producers.stop();
    eprintln!("{} producers stopped: {} answers", at(), answers.len());
    report_answers(&answers, isolated, (cut, healed));
    assert!(last.epoch >= elected.epoch, "{elected:?} then {last:?}");

    let acked = acknowledged(&answers);
    let end = acked.iter().map(|(o, _)| o + 1).max().unwrap_or(0);
    let within = Duration::from_secs(30);
    let log = wait_logs_identical(&cluster, (TOPIC, 0), last.leader, end, within);
    eprintln!("{} {} records acknowledged", at(), acked.len());
    check_isolated_answers(&answers, isolated, (cut, healed), &log);
    let findings = check_acknowledged(&log, &acked);
    assert!(findings.is_clean(), "{}", findings.report());
    check_truncated(&cluster, isolated, &stranded_log, &answers, (cut, healed));
    eprintln!("{} done", at());
}

/// Cuts the leader off from the two other nodes; waits until both of them show another leader
/// with a higher epoch, it acknowledged produces, and the isolated leader answered produces sent
/// after that election. When the cut was made, and the majority's placement.
fn cut_off_leader(
    cluster: &mut Cluster,
    producers: &Producers,
    first: &Placement,
) -> (Instant, Placement) {
    let isolated = first.leader;
    let majority: Vec<i32> = NODES.into_iter().filter(|&id| id != isolated).collect();
    cluster.net.isolate(isolated);
    let cut = Instant::now();
    let acked_before = producers
        .answers()
        .iter()
        .filter(|a| matches!(a.outcome, Outcome::Acked(_)))
        .count();
    eprintln!(
        "{} cut: leader {isolated} isolated from {majority:?} ({acked_before} acknowledged so \
         far; the cut at {:.2}s)",
        at(),
        secs(cut)
    );
    let views = wait_for_state(
        WAIT,
        &format!(
            "nodes {majority:?} (the majority) agreeing on a new leader other than {isolated} \
             with an epoch above {}",
            first.epoch
        ),
        || -> Vec<Option<Placement>> {
            majority
                .iter()
                .map(|&id| placement(&cluster.addr(id), TOPIC, 0))
                .collect()
        },
        |views| {
            views.iter().all(|v| v == &views[0])
                && views[0]
                    .as_ref()
                    .is_some_and(|p| p.leader > 0 && p.leader != isolated && p.epoch > first.epoch)
        },
    );
    let elected = views[0].clone().expect("a placement");
    let since = Instant::now();
    eprintln!("{} the majority elected: {elected:?}", at());
    producers.wait_acks(elected.leader, since, 20, "after the election");
    eprintln!("{} the new leader {} acknowledges", at(), elected.leader);
    wait_for_state(
        WAIT,
        &format!("answers of isolated node {isolated} to produces sent after the election"),
        || {
            let answers = producers.answers();
            tally(
                answers
                    .iter()
                    .filter(|a| a.node == isolated && a.sent >= since),
            )
        },
        |t| t.values().sum::<usize>() >= 2,
    );
    (cut, elected)
}

/// Prints what each node answered, and what the isolated one answered to produces sent to it
/// during the partition.
fn report_answers(answers: &[Answer], isolated: i32, (cut, healed): (Instant, Instant)) {
    let during = answers
        .iter()
        .filter(|a| a.node == isolated && a.sent >= cut && a.sent < healed);
    eprintln!(
        "{} isolated leader {isolated}, produces sent to it between the cut ({:.2}s) and the \
         heal ({:.2}s): {:?}",
        at(),
        secs(cut),
        secs(healed),
        tally(during)
    );
    for node in 1..=3 {
        let all = tally(answers.iter().filter(|a| a.node == node));
        eprintln!("{} node {node}, every answer: {all:?}", at());
    }
}

/// Assertion 1: the isolated leader acknowledged no produce sent to it between the cut and
/// the heal (whenever it answered), and every node refused with retriable errors only. `log`
/// (the final leader's) is shown for the offsets of any such acknowledgement.
fn check_isolated_answers(
    answers: &[Answer],
    isolated: i32,
    (cut, healed): (Instant, Instant),
    log: &[LogRecord],
) {
    let acked: Vec<String> = answers
        .iter()
        .filter(|a| a.node == isolated && a.sent >= cut && a.sent < healed)
        .filter_map(|a| match a.outcome {
            Outcome::Acked(offset) => {
                let now = log.iter().find(|r| r.offset == offset).map(LogRecord::text);
                Some(format!("{a:?}; the final log holds {now:?} at {offset}"))
            }
            _ => None,
        })
        .collect();
    assert!(
        acked.is_empty(),
        "isolated leader {isolated} acknowledged acks=all produces sent to it after it was cut \
         off from both followers (cut at {:.2}s, heal at {:.2}s):\n{}",
        secs(cut),
        secs(healed),
        acked.join("\n")
    );
    let odd: Vec<&Answer> = answers
        .iter()
        .filter(|a| matches!(a.outcome, Outcome::Refused(e) if !RETRIABLE.contains(&e)))
        .collect();
    assert!(odd.is_empty(), "errors a producer cannot retry: {odd:?}");
}

/// Every acknowledged (offset, value), by any node.
fn acknowledged(answers: &[Answer]) -> Vec<(i64, Vec<u8>)> {
    answers
        .iter()
        .filter_map(|a| match a.outcome {
            Outcome::Acked(offset) => Some((offset, a.value.clone().into_bytes())),
            _ => None,
        })
        .collect()
}

/// Assertion 3: the records the isolated leader appended from produces sent to it during the
/// partition (never acknowledged) are in no replica's final log, and if there were any, its log
/// says it truncated where it left the new leader's (DivergingEpoch).
fn check_truncated(
    cluster: &Cluster,
    isolated: i32,
    stranded_log: &[u8],
    answers: &[Answer],
    (cut, healed): (Instant, Instant),
) {
    let sent_then: BTreeSet<&str> = answers
        .iter()
        .filter(|a| a.node == isolated && a.sent >= cut && a.sent < healed)
        .map(|a| a.value.as_str())
        .collect();
    let stranded: Vec<(i64, String)> = log_values(stranded_log)
        .into_iter()
        .filter(|(_, v)| sent_then.contains(v.as_str()))
        .collect();
    eprintln!(
        "{} records the isolated leader appended during the partition: {stranded:?}",
        at()
    );
    let (final_log, _) = cluster.replica(isolated, TOPIC, 0);
    let kept: Vec<(i64, String)> = log_values(&final_log)
        .into_iter()
        .filter(|(_, v)| sent_then.contains(v.as_str()))
        .collect();
    assert!(
        kept.is_empty(),
        "records produced to isolated node {isolated} during the partition, never acknowledged, \
         are still in the logs: {kept:?}"
    );
    if stranded.is_empty() {
        eprintln!(
            "{} (nothing to truncate: it appended nothing after the cut)",
            at()
        );
        return;
    }
    let log = std::fs::read_to_string(&cluster.node(isolated).log).unwrap_or_default();
    let truncation = log
        .lines()
        .find(|l| l.contains("truncating a replica where it left the leader's log"));
    eprintln!("{} node {isolated}: {truncation:?}", at());
    assert!(
        truncation.is_some(),
        "node {isolated} dropped the records it appended during the partition but its log has no \
         \"truncating a replica where it left the leader's log\" (DivergingEpoch) line"
    );
}

/// The (offset, value) of every record in a replica's logical log bytes.
fn log_values(log: &[u8]) -> Vec<(i64, String)> {
    log_records(Bytes::copy_from_slice(log), 0, i64::MAX)
        .iter()
        .map(|r| (r.offset, r.text()))
        .collect()
}
