//! An exhaustive model check of elections and commits, on the same `Replica` code the
//! simulator and (later) the broker run: every interleaving of message deliveries, drops,
//! duplicate deliveries, resends, timeouts, proposals, graceful resignations and crashes (each
//! keeping any prefix of the unflushed entries) over 3 voters, within bounds on epochs, log
//! length and messages in flight.
//!
//! Time is abstracted: every input happens at time 0, and a timeout is an explicit action
//! (`Replica::expire_timers`) that may fire at any point, which allows more schedules than real
//! clocks do (safety must hold under any timing). Timeouts are fixed (no jitter), so replica
//! state stays finite.
//!
//! Checked in every reachable state (`common::Checker`): one leader per epoch, committed entries
//! never changed, and every leader holding every entry committed in its epoch or before.
//! Visited states are kept as 64-bit fingerprints (a collision could hide a state; at a few
//! million states the chance is below 1e-6).

mod common;

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::time::Instant;

use common::Checker;
use sluice_quorum::{
    Config, Effect, Epoch, Log, MemLog, Message, NodeId, Offset, QuorumState, Replica, RoleKind,
};

/// Bounds of one search.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    voters: i32,
    epoch_max: i32,
    log_max: i64,
    in_flight_max: usize,
    proposals_max: u8,
    crashes_max: u8,
    /// Timeouts (`Expire` actions) over the whole run: elections and check-quorum
    /// resignations need them, and they are where the search branches most.
    timeouts_max: u8,
    duplicates: bool,
    /// Whether a tick resends unanswered requests (else only a timeout does).
    resend_on_tick: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Node {
    replica: Replica<MemLog>,
    disk: QuorumState,
    applied: Offset,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct State {
    nodes: Vec<Node>,
    /// Messages in flight as a multiset: (from, to, message) -> copies.
    network: BTreeMap<(NodeId, NodeId, Message), u8>,
    checker: Checker,
    proposals: u8,
    crashes: u8,
    timeouts: u8,
}

/// One step a state can take.
#[derive(Debug, Clone)]
enum Action {
    Deliver {
        key: (NodeId, NodeId, Message),
        keep_copy: bool,
    },
    Drop((NodeId, NodeId, Message)),
    Tick(usize),
    Expire(usize),
    Propose(usize),
    Resign(usize),
    Crash {
        node: usize,
        unflushed_kept: usize,
    },
}

fn config(id: NodeId, bounds: &Bounds) -> Config {
    let mut config = Config::new(id, (1..=bounds.voters).map(NodeId).collect());
    config.election_jitter_ms = 0;
    // A tick is "a little time passes": an idle follower fetches again, and unanswered
    // requests go again if `resend_on_tick` (else only when a timeout fires).
    config.request_timeout_ms = if bounds.resend_on_tick { 0 } else { 1_000_000 };
    config.fetch_interval_ms = 0;
    config
}

fn initial(bounds: &Bounds) -> State {
    let nodes = (1..=bounds.voters)
        .map(|id| Node {
            replica: Replica::new(
                config(NodeId(id), bounds),
                MemLog::new(),
                QuorumState::default(),
                0,
                0,
            ),
            disk: QuorumState::default(),
            applied: Offset(0),
        })
        .collect();
    State {
        nodes,
        network: BTreeMap::new(),
        checker: Checker::default(),
        proposals: 0,
        crashes: 0,
        timeouts: 0,
    }
}

fn actions(state: &State, bounds: &Bounds) -> Vec<Action> {
    let mut actions = Vec::new();
    for key in state.network.keys() {
        actions.push(Action::Deliver {
            key: key.clone(),
            keep_copy: false,
        });
        if bounds.duplicates {
            actions.push(Action::Deliver {
                key: key.clone(),
                keep_copy: true,
            });
        }
        actions.push(Action::Drop(key.clone()));
    }
    for (index, node) in state.nodes.iter().enumerate() {
        actions.push(Action::Tick(index));
        if state.timeouts < bounds.timeouts_max {
            actions.push(Action::Expire(index));
        }
        let leads = node.replica.role() == RoleKind::Leader;
        if leads && state.proposals < bounds.proposals_max {
            actions.push(Action::Propose(index));
        }
        if leads {
            actions.push(Action::Resign(index));
        }
        if state.crashes < bounds.crashes_max {
            for unflushed_kept in 0..=node.replica.log().unflushed_count() {
                actions.push(Action::Crash {
                    node: index,
                    unflushed_kept,
                });
            }
        }
    }
    actions
}

/// The successor of `state` under `action`, or the violation it reaches.
fn next(state: &State, action: &Action, bounds: &Bounds) -> Result<State, String> {
    let mut s = state.clone();
    let index = match action {
        Action::Deliver { key, keep_copy } => {
            if !keep_copy {
                remove_one(&mut s.network, key);
            }
            let (from, to, message) = key.clone();
            let index = (to.0 - 1) as usize;
            s.nodes[index].replica.receive(0, from, message);
            index
        }
        Action::Drop(key) => {
            remove_one(&mut s.network, key);
            return Ok(s);
        }
        Action::Tick(index) => {
            s.nodes[*index].replica.tick(0);
            *index
        }
        Action::Expire(index) => {
            s.timeouts += 1;
            s.nodes[*index].replica.expire_timers();
            s.nodes[*index].replica.tick(0);
            *index
        }
        Action::Propose(index) => {
            s.proposals += 1;
            let data = vec![s.proposals];
            s.nodes[*index]
                .replica
                .propose(0, data)
                .map_err(|e| format!("{e:?}"))?;
            *index
        }
        Action::Resign(index) => {
            s.nodes[*index].replica.resign(0);
            *index
        }
        Action::Crash {
            node,
            unflushed_kept,
        } => {
            s.crashes += 1;
            let n = &mut s.nodes[*node];
            let log = n.replica.log().crash(*unflushed_kept);
            let config = config(n.replica.id(), bounds);
            n.replica = Replica::new(config, log, n.disk, 0, 0);
            n.applied = Offset(0);
            *node
        }
    };
    carry_out(&mut s, index, bounds)?;
    for node in &s.nodes {
        s.checker.observe(&node.replica)?;
    }
    Ok(s)
}

fn remove_one(
    network: &mut BTreeMap<(NodeId, NodeId, Message), u8>,
    key: &(NodeId, NodeId, Message),
) {
    if let Some(copies) = network.get_mut(key) {
        *copies -= 1;
        if *copies == 0 {
            network.remove(key);
        }
    }
}

fn carry_out(s: &mut State, index: usize, bounds: &Bounds) -> Result<(), String> {
    let from = s.nodes[index].replica.id();
    for effect in s.nodes[index].replica.drain_effects() {
        match effect {
            Effect::Persist(state) => s.nodes[index].disk = state,
            Effect::Send { to, message } => {
                let in_flight: usize = s.network.values().map(|&c| usize::from(c)).sum();
                // A full network loses the message, which the protocol must survive anyway.
                if in_flight < bounds.in_flight_max {
                    *s.network.entry((from, to, message)).or_insert(0) += 1;
                }
            }
            Effect::HighWatermark(high_watermark) => apply(s, index, high_watermark)?,
            Effect::LoadSnapshot(id) => return Err(format!("no snapshot is taken here: {id:?}")),
        }
    }
    Ok(())
}

fn apply(s: &mut State, index: usize, high_watermark: Offset) -> Result<(), String> {
    let mut fresh = Vec::new();
    let node = &mut s.nodes[index];
    while node.applied < high_watermark {
        let entry = node
            .replica
            .log()
            .entry(node.applied)
            .ok_or_else(|| "a high watermark past the log end".to_string())?;
        if s.checker
            .apply(node.replica.id(), node.replica.epoch(), node.applied, entry)?
        {
            fresh.push(node.applied);
        }
        node.applied = node.applied.next();
    }
    for offset in fresh {
        for other in &s.nodes {
            s.checker.leader_holds(&other.replica, offset)?;
        }
    }
    Ok(())
}

fn within(state: &State, bounds: &Bounds) -> bool {
    state.nodes.iter().all(|n| {
        n.replica.epoch() <= Epoch(bounds.epoch_max) && n.replica.log().end().0 <= bounds.log_max
    })
}

fn fingerprint(state: &State) -> u64 {
    let mut hasher = DefaultHasher::new();
    state.hash(&mut hasher);
    hasher.finish()
}

/// What a search found.
#[derive(Debug)]
struct Report {
    states: usize,
    transitions: usize,
    max_depth: usize,
    max_committed: usize,
    /// False when `states_max` cut the search short.
    complete: bool,
    violation: Option<String>,
}

/// Breadth-first over every reachable state within `bounds` (at most `states_max`); stops at
/// the first violation and prints the actions that lead to it.
fn search(bounds: Bounds, states_max: usize) -> Report {
    let start = initial(&bounds);
    let mut seen = HashSet::new();
    seen.insert(fingerprint(&start));
    // How each queued state was reached: (parent's index here, action); the root has none.
    let mut parents: Vec<Option<(usize, Action)>> = vec![None];
    let mut queue: VecDeque<(State, usize, usize)> = VecDeque::new();
    queue.push_back((start, 0, 0));
    let mut report = Report {
        states: 1,
        transitions: 0,
        max_depth: 0,
        max_committed: 0,
        complete: true,
        violation: None,
    };
    while let Some((state, depth, at)) = queue.pop_front() {
        report.max_depth = report.max_depth.max(depth);
        report.max_committed = report.max_committed.max(state.checker.committed.len());
        for action in actions(&state, &bounds) {
            report.transitions += 1;
            match next(&state, &action, &bounds) {
                Err(violation) => {
                    let mut path = vec![format!("{action:?}")];
                    let mut cursor = at;
                    while let Some((parent, action)) = &parents[cursor] {
                        path.push(format!("{action:?}"));
                        cursor = *parent;
                    }
                    path.reverse();
                    report.violation = Some(format!("{violation}\npath:\n  {}", path.join("\n  ")));
                    return report;
                }
                Ok(successor) => {
                    if !within(&successor, &bounds) || !seen.insert(fingerprint(&successor)) {
                        continue;
                    }
                    if seen.len() > states_max {
                        report.complete = false;
                        continue;
                    }
                    report.states += 1;
                    parents.push(Some((at, action)));
                    queue.push_back((successor, depth + 1, parents.len() - 1));
                }
            }
        }
    }
    report
}

/// Complete: two epochs, logs of up to 2 entries (LeaderChange records count), one proposal,
/// one crash (with or without its unflushed entries), two timeouts, one message in flight
/// (delivered, dropped or delivered twice). About 250,000 states.
#[test]
fn two_epochs_with_a_crash() {
    let report = run(Bounds {
        voters: 3,
        epoch_max: 2,
        log_max: 2,
        in_flight_max: 1,
        proposals_max: 1,
        crashes_max: 1,
        timeouts_max: 2,
        duplicates: true,
        resend_on_tick: false,
    });
    assert!(
        report.violation.is_none(),
        "{}",
        report.violation.unwrap_or_default()
    );
    assert!(report.complete, "the search was cut short: {report:?}");
    assert!(
        report.max_committed == 2,
        "no run committed both entries: {report:?}"
    );
}

/// Complete: three epochs, logs of up to 2 entries, one proposal, three timeouts, one message in
/// flight (no crash, no duplicates). About 500,000 states.
#[test]
fn three_epochs() {
    let report = run(Bounds {
        voters: 3,
        epoch_max: 3,
        log_max: 2,
        in_flight_max: 1,
        proposals_max: 1,
        crashes_max: 0,
        timeouts_max: 3,
        duplicates: false,
        resend_on_tick: false,
    });
    assert!(
        report.violation.is_none(),
        "{}",
        report.violation.unwrap_or_default()
    );
    assert!(report.complete, "the search was cut short: {report:?}");
}

/// Complete: two epochs, elections only (logs of 1 entry), two timeouts and two messages in
/// flight, so two candidates can stand in one epoch at once. About 1.5 million states, the
/// slowest (~35 s in debug on an idle core, so not in the default run); it is the search that
/// catches a voter granting two votes in one epoch (the simulator catches that too).
/// `cargo test -p sluice-quorum --test model -- --ignored two_candidates_at_once`.
#[test]
#[ignore]
fn two_candidates_at_once() {
    let report = run(Bounds {
        voters: 3,
        epoch_max: 2,
        log_max: 1,
        in_flight_max: 2,
        proposals_max: 0,
        crashes_max: 0,
        timeouts_max: 2,
        duplicates: false,
        resend_on_tick: false,
    });
    assert!(
        report.violation.is_none(),
        "{}",
        report.violation.unwrap_or_default()
    );
    assert!(report.complete, "the search was cut short: {report:?}");
}

fn run(bounds: Bounds) -> Report {
    let started = Instant::now();
    let report = search(bounds, env_usize("SLUICE_MODEL_STATES", 3_000_000));
    eprintln!("model {bounds:?}: {report:?} in {:.1?}", started.elapsed());
    report
}

/// Explore with bounds from the environment: `SLUICE_MODEL=epoch,log,in_flight,proposals,
/// crashes,timeouts,duplicates(0/1),resend(0/1)`.
#[test]
#[ignore]
fn custom() {
    let v: Vec<i64> = std::env::var("SLUICE_MODEL")
        .unwrap_or_default()
        .split(',')
        .filter_map(|x| x.parse().ok())
        .collect();
    let report = run(Bounds {
        voters: 3,
        epoch_max: v[0] as i32,
        log_max: v[1],
        in_flight_max: v[2] as usize,
        proposals_max: v[3] as u8,
        crashes_max: v[4] as u8,
        timeouts_max: v[5] as u8,
        duplicates: v[6] == 1,
        resend_on_tick: v[7] == 1,
    });
    assert!(
        report.violation.is_none(),
        "{}",
        report.violation.unwrap_or_default()
    );
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
