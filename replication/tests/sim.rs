//! A seeded deterministic simulator of Kafka's ISR replication: 3 to 5 brokers, one to three
//! partitions (replication factor 3, or 5 on some five-broker seeds), each broker holding a
//! `PartitionReplica` over a `MemLog` per partition it replicates, and an in-memory controller.
//!
//! The controller elects leaders from the ISR only (unclean election off), among unfenced
//! brokers, bumping the leader epoch and the partition epoch; it fences a broker whose
//! session lapses (crashed, or isolated from it) and then drops it from every ISR (keeping a
//! last member, as KIP-841) and moves its leaderships; it unfences a broker that registers
//! again (a new broker epoch after a restart) or whose session resumes, electing it where it
//! is the last ISR member of a leaderless partition; it moves leaderships at random
//! (preferred-leader elections); and it applies AlterPartition requests with Kafka's checks
//! (`ReplicationControlManager.validateAlterPartitionData`: NOT_CONTROLLER,
//! FENCED_LEADER_EPOCH, INVALID_REQUEST, INVALID_UPDATE_VERSION, INELIGIBLE_REPLICA for a
//! fenced member or one of another broker epoch). Partition states reach brokers in order,
//! after a delay, never lost (the metadata log), but not while a broker is isolated.
//!
//! Faults: the network loses, delays and duplicates messages; between brokers (Fetch and its
//! answers) it also reorders them and cuts links one way, while each broker's link with the
//! controller (AlterPartition and its answers) keeps its order, as a TCP connection does; brokers crash
//! (each log keeps its durable prefix and any prefix of the batches after it: torn writes)
//! and restart with a new broker epoch; brokers are isolated from the controller and come
//! back; leaders' logs lose their oldest records to retention (up to the high watermark).
//! Leaders sync their logs at a per-seed interval (group commit); followers sync before each
//! Fetch. Producers send acks=all batches to whichever broker thinks it leads (a stale
//! leader too) and record what was acknowledged.
//!
//! After every step the checker (`common::Checker`) verifies: nothing below any replica's
//! high watermark is ever changed, and every committed record is on every leader of a later
//! (or the same) epoch, i.e. never lost from the current leader's log; every acknowledged
//! record is on its leader below the high watermark when acknowledged, and is committed as
//! acknowledged; at most one leader per leader epoch; a leader's high watermark never goes
//! back within its epoch; and, every 200 steps, that no two live replicas disagree below the
//! smaller of their high watermarks. A panic in the core (an asserted invariant, e.g. a
//! follower truncating below its high watermark) is a violation too. At the end the network
//! heals and every broker comes back: every partition must get its full ISR back and a fresh
//! acks=all record acknowledged and replicated everywhere within a bound.
//!
//! `cargo test -p sluice-replication --test sim` runs the fixed seeds. A longer sweep:
//! `SEEDS=2000 cargo test -p sluice-replication --release --test sim long_run -- --ignored
//! --nocapture` (also `FIRST`, the first seed, and `STEPS`, steps per seed). One seed with
//! its trace: `SEED=17 cargo test -p sluice-replication --test sim replay -- --ignored
//! --nocapture` (`STEPS` too).

mod common;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Instant;

use common::{Checker, agree_below_high_watermarks};
use sluice_replication::{
    Acks, AlterPartitionAnswer, AlterPartitionError, AlterPartitionRequest, BrokerEpoch, Config,
    Effect, FetchError, FetchOutcome, FetchRequest, FetchResponse, LeaderAndIsr, Log, MemBatch,
    MemLog, Offset, PartitionEpoch, PartitionReplica, ProduceToken, ReplicaId, Rng, Role,
};

/// The controller's address on the simulated network.
const CONTROLLER: ReplicaId = ReplicaId(0);
/// The clock starts here, as a real one would be far from 0.
const T0: u64 = 1_000_000;
const PRODUCE_TIMEOUT_MS: u64 = 400;

/// Fault rates and settings for one run, drawn from its seed.
#[derive(Debug, Clone)]
struct Faults {
    loss_per_mille: u64,
    duplicate_per_mille: u64,
    delay_ms_max: u64,
    crash_per_mille: u64,
    isolate_per_mille: u64,
    cut_per_mille: u64,
    heal_per_mille: u64,
    move_leader_per_mille: u64,
    retention_per_mille: u64,
    produce_per_mille: u64,
    sync_interval_ms: u64,
    session_ms: u64,
    fetch_batches_max: usize,
    min_isr: usize,
}

impl Faults {
    fn draw(rng: &mut Rng) -> Faults {
        let mut pick = |choices: &[u64]| choices[rng.below(choices.len() as u64) as usize];
        Faults {
            loss_per_mille: pick(&[0, 20, 100, 250]),
            duplicate_per_mille: pick(&[0, 20, 100]),
            delay_ms_max: pick(&[2, 10, 40, 120]),
            crash_per_mille: pick(&[0, 2, 5, 10]),
            isolate_per_mille: pick(&[0, 2, 5]),
            cut_per_mille: pick(&[0, 3, 10]),
            heal_per_mille: pick(&[5, 20]),
            move_leader_per_mille: pick(&[0, 2, 10]),
            retention_per_mille: pick(&[0, 0, 5, 20]),
            produce_per_mille: pick(&[100, 300, 600]),
            sync_interval_ms: pick(&[0, 5, 30]),
            session_ms: pick(&[60, 150, 300]),
            fetch_batches_max: pick(&[2, 8, 32]) as usize,
            min_isr: pick(&[1, 2, 2, 3]) as usize,
        }
    }
}

/// What travels between brokers, and between a broker and the controller.
#[derive(Debug, Clone)]
enum Message {
    Fetch(usize, FetchRequest),
    FetchResponse(usize, FetchResponse<MemBatch>),
    AlterPartition(usize, AlterPartitionRequest),
    AlterPartitionAnswer(usize, AlterPartitionAnswer),
}

/// One broker: a live replica per partition it holds, or the disks a crash left.
struct Node {
    id: ReplicaId,
    broker_epoch: BrokerEpoch,
    alive: bool,
    replicas: Vec<Option<PartitionReplica<MemLog>>>,
    /// The logs while down (None: not a replica of that partition).
    disks: Vec<Option<MemLog>>,
    /// How far below its high watermark each replica was checked.
    checked: Vec<Offset>,
    restart_at: u64,
    next_sync_at: u64,
    /// Partition states on their way from the controller, in order.
    /// Partition states as published, each with the brokers fenced then (the leader's ISR
    /// eligibility).
    metadata: VecDeque<(u64, usize, LeaderAndIsr, BTreeSet<ReplicaId>)>,
}

/// A broker's registration with the controller.
#[derive(Debug, Clone, Copy)]
struct Registration {
    epoch: BrokerEpoch,
    fenced: bool,
    /// When its session lapses (it crashed or was isolated).
    fence_at: Option<u64>,
}

/// What one run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Stats {
    steps: u64,
    sim_ms: u64,
    leader_epochs: usize,
    committed: usize,
    produced: u64,
    acked_records: u64,
    produce_failed: u64,
    crashes: u64,
    isolations: u64,
    cuts: u64,
    leader_moves: u64,
    truncations: u64,
    out_of_range: u64,
    retentions: u64,
    alter_partitions: u64,
    alter_refused: u64,
    delivered: u64,
    dropped: u64,
}

struct Sim {
    rng: Rng,
    now: u64,
    faults: Faults,
    nodes: Vec<Node>,
    partitions: Vec<LeaderAndIsr>,
    brokers: BTreeMap<ReplicaId, Registration>,
    broker_epochs: i64,
    network: BTreeMap<(u64, u64), (ReplicaId, ReplicaId, Message)>,
    sequence: u64,
    cut: BTreeSet<(ReplicaId, ReplicaId)>,
    isolated: BTreeSet<ReplicaId>,
    /// The last delivery time on each link to or from the controller, which is ordered (a
    /// TCP connection: lossy, but never reordered).
    ordered: BTreeMap<(ReplicaId, ReplicaId), u64>,
    /// Waiting acks=all produces: token -> (partition, records).
    pending: BTreeMap<u64, (usize, Vec<Vec<u8>>)>,
    next_token: u64,
    checker: Checker,
    stats: Stats,
    trace: Option<Vec<String>>,
}

impl Sim {
    fn new(seed: u64, traced: bool) -> Sim {
        let mut rng = Rng::new(seed);
        let faults = Faults::draw(&mut rng);
        let node_count = 3 + rng.below(3) as usize;
        let partition_count = 1 + rng.below(3) as usize;
        let factor = if node_count == 5 && rng.chance(300) {
            5
        } else {
            3
        };
        let mut sim = Sim {
            rng,
            now: T0,
            faults,
            nodes: Vec::new(),
            partitions: Vec::new(),
            brokers: BTreeMap::new(),
            broker_epochs: 0,
            network: BTreeMap::new(),
            sequence: 0,
            cut: BTreeSet::new(),
            isolated: BTreeSet::new(),
            ordered: BTreeMap::new(),
            pending: BTreeMap::new(),
            next_token: 0,
            checker: Checker::new(partition_count),
            stats: Stats::default(),
            trace: traced.then(Vec::new),
        };
        for p in 0..partition_count {
            let replicas: Vec<ReplicaId> = (0..factor)
                .map(|k| ReplicaId(((p + k) % node_count) as i32 + 1))
                .collect();
            sim.partitions.push(LeaderAndIsr {
                leader: Some(replicas[0]),
                leader_epoch: Default::default(),
                partition_epoch: PartitionEpoch(0),
                isr: replicas.clone(),
                replicas,
            });
        }
        for i in 0..node_count {
            let id = ReplicaId(i as i32 + 1);
            let disks = sim
                .partitions
                .iter()
                .map(|s| s.replicas.contains(&id).then(MemLog::new))
                .collect();
            sim.nodes.push(Node {
                id,
                broker_epoch: BrokerEpoch(0),
                alive: false,
                replicas: vec![None; partition_count],
                disks,
                checked: vec![Offset(0); partition_count],
                restart_at: T0,
                next_sync_at: T0,
                metadata: VecDeque::new(),
            });
            sim.start(i);
        }
        sim
    }

    fn note(&mut self, line: impl FnOnce() -> String) {
        if let Some(trace) = &mut self.trace {
            trace.push(format!("{:>8} {}", self.now - T0, line()));
        }
    }

    fn index(&self, id: ReplicaId) -> usize {
        (id.0 - 1) as usize
    }

    fn config(&self, id: ReplicaId, epoch: BrokerEpoch) -> Config {
        let mut config = Config::new(id, epoch);
        config.min_insync_replicas = self.faults.min_isr;
        config.fetch_batches_max = self.faults.fetch_batches_max;
        config
    }

    /// A broker (re)starts from its disks with a new broker epoch, registers and is unfenced;
    /// it gets the whole current metadata image.
    fn start(&mut self, index: usize) {
        self.broker_epochs += 1;
        let epoch = BrokerEpoch(self.broker_epochs);
        let id = self.nodes[index].id;
        let fenced = self.fenced();
        for p in 0..self.partitions.len() {
            if let Some(log) = self.nodes[index].disks[p].take() {
                let config = self.config(id, epoch);
                self.nodes[index].replicas[p] = Some(PartitionReplica::new(config, log, Offset(0)));
            }
            self.nodes[index].checked[p] = Offset(0);
            let state = self.partitions[p].clone();
            let published = (self.now, p, state, fenced.clone());
            self.nodes[index].metadata.push_back(published);
        }
        let node = &mut self.nodes[index];
        node.alive = true;
        node.broker_epoch = epoch;
        node.next_sync_at = self.now;
        let registration = Registration {
            epoch,
            fenced: false,
            fence_at: None,
        };
        self.brokers.insert(id, registration);
        self.unfence(id);
        self.note(|| format!("start broker {} (epoch {})", id.0, epoch.0));
    }

    /// The controller publishes partition `p`'s state to every live broker, in order.
    fn publish(&mut self, p: usize) {
        let state = self.partitions[p].clone();
        let fenced = self.fenced();
        self.note(|| format!("publish p{p} {state:?} fenced {fenced:?}"));
        for index in 0..self.nodes.len() {
            if !self.nodes[index].alive {
                continue;
            }
            let last = self.nodes[index].metadata.back().map_or(0, |m| m.0);
            let at = (self.now + 1 + self.rng.below(self.faults.delay_ms_max)).max(last);
            let published = (at, p, state.clone(), fenced.clone());
            self.nodes[index].metadata.push_back(published);
        }
    }

    /// The brokers fenced now: a leader does not let them join an ISR.
    fn fenced(&self) -> BTreeSet<ReplicaId> {
        self.brokers
            .iter()
            .filter(|(_, b)| b.fenced)
            .map(|(id, _)| *id)
            .collect()
    }

    /// The first unfenced ISR member of `p` in replica order, but `except`.
    fn electable(&self, p: usize, except: Option<ReplicaId>) -> Option<ReplicaId> {
        let state = &self.partitions[p];
        state.replicas.iter().copied().find(|r| {
            state.isr.contains(r)
                && Some(*r) != except
                && self.brokers.get(r).is_some_and(|b| !b.fenced)
        })
    }

    fn set_leader(&mut self, p: usize, leader: Option<ReplicaId>) {
        let state = &mut self.partitions[p];
        state.leader = leader;
        state.leader_epoch = state.leader_epoch.next();
        state.partition_epoch = state.partition_epoch.next();
        self.publish(p);
    }

    /// A broker's session lapsed: out of every ISR (but a last member), its leaderships
    /// moved to another ISR member, or to none.
    fn fence(&mut self, id: ReplicaId) {
        if let Some(registration) = self.brokers.get_mut(&id) {
            registration.fenced = true;
            registration.fence_at = None;
        }
        self.note(|| format!("fence broker {}", id.0));
        for p in 0..self.partitions.len() {
            let state = &mut self.partitions[p];
            if !state.replicas.contains(&id) {
                continue;
            }
            let shrink = state.isr.contains(&id) && state.isr.len() > 1;
            if shrink {
                state.isr.retain(|&r| r != id);
            }
            if state.leader == Some(id) {
                let leader = self.electable(p, Some(id));
                self.set_leader(p, leader);
            } else if shrink {
                self.partitions[p].partition_epoch = self.partitions[p].partition_epoch.next();
                self.publish(p);
            } else {
                // Unchanged, but its leader must learn the broker is no longer eligible.
                self.publish(p);
            }
        }
    }

    /// A broker is unfenced: it leads the leaderless partitions whose ISR holds it.
    fn unfence(&mut self, id: ReplicaId) {
        if let Some(registration) = self.brokers.get_mut(&id) {
            registration.fenced = false;
            registration.fence_at = None;
        }
        for p in 0..self.partitions.len() {
            if self.partitions[p].leader.is_none() && self.partitions[p].isr.contains(&id) {
                self.set_leader(p, Some(id));
            } else if self.partitions[p].replicas.contains(&id) {
                // Its leader learns the broker is eligible again.
                self.publish(p);
            }
        }
    }

    /// Kafka's `validateAlterPartitionData`, then the change.
    fn alter_partition(
        &mut self,
        p: usize,
        request: &AlterPartitionRequest,
    ) -> Result<LeaderAndIsr, AlterPartitionError> {
        let state = &self.partitions[p];
        if request.leader_epoch > state.leader_epoch
            || request.partition_epoch > state.partition_epoch
        {
            return Err(AlterPartitionError::NotController);
        }
        if request.leader_epoch < state.leader_epoch {
            return Err(AlterPartitionError::FencedLeaderEpoch);
        }
        if Some(request.leader) != state.leader {
            return Err(AlterPartitionError::InvalidRequest);
        }
        if request.partition_epoch < state.partition_epoch {
            return Err(AlterPartitionError::InvalidUpdateVersion);
        }
        let isr: Vec<ReplicaId> = request.new_isr.iter().map(|m| m.replica_id).collect();
        if !isr.iter().all(|r| state.replicas.contains(r)) || !isr.contains(&request.leader) {
            return Err(AlterPartitionError::InvalidRequest);
        }
        let ineligible = request.new_isr.iter().any(|m| {
            self.brokers
                .get(&m.replica_id)
                .is_none_or(|b| b.fenced || m.broker_epoch.is_some_and(|e| e != b.epoch))
        });
        if ineligible {
            return Err(AlterPartitionError::IneligibleReplica);
        }
        let mut sorted_isr = state.isr.clone();
        sorted_isr.sort();
        if sorted_isr != isr {
            let state = &mut self.partitions[p];
            state.isr = isr;
            state.partition_epoch = state.partition_epoch.next();
            self.publish(p);
        }
        Ok(self.partitions[p].clone())
    }

    /// Moves `p`'s leadership to another electable ISR member, if any (a preferred-leader
    /// election or a controlled shutdown).
    fn move_leader(&mut self, p: usize) {
        let current = self.partitions[p].leader;
        let candidates: Vec<ReplicaId> = self.partitions[p]
            .isr
            .iter()
            .copied()
            .filter(|r| Some(*r) != current && self.brokers.get(r).is_some_and(|b| !b.fenced))
            .collect();
        if candidates.is_empty() {
            return;
        }
        let leader = candidates[self.rng.below(candidates.len() as u64) as usize];
        self.stats.leader_moves += 1;
        self.set_leader(p, Some(leader));
    }
}

impl Sim {
    fn link_down(&self, from: ReplicaId, to: ReplicaId) -> bool {
        let controller_link = from == CONTROLLER || to == CONTROLLER;
        let broker = if from == CONTROLLER { to } else { from };
        (controller_link && self.isolated.contains(&broker)) || self.cut.contains(&(from, to))
    }

    fn send(&mut self, from: ReplicaId, to: ReplicaId, message: Message) {
        let copies = if self.rng.chance(self.faults.duplicate_per_mille) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            if self.link_down(from, to) || self.rng.chance(self.faults.loss_per_mille) {
                self.stats.dropped += 1;
                continue;
            }
            let mut at = self.now + 1 + self.rng.below(self.faults.delay_ms_max);
            if from == CONTROLLER || to == CONTROLLER {
                let last = self.ordered.entry((from, to)).or_default();
                at = at.max(*last);
                *last = at;
            }
            self.sequence += 1;
            self.network
                .insert((at, self.sequence), (from, to, message.clone()));
        }
    }

    /// Delivers every message and partition state due by now.
    fn deliver(&mut self) -> Result<(), String> {
        while let Some(entry) = self.network.first_entry() {
            if entry.key().0 > self.now {
                break;
            }
            let (from, to, message) = entry.remove();
            self.deliver_one(from, to, message)?;
        }
        for index in 0..self.nodes.len() {
            let id = self.nodes[index].id;
            while self.nodes[index].alive && !self.isolated.contains(&id) {
                match self.nodes[index].metadata.front() {
                    Some(m) if m.0 <= self.now => {}
                    _ => break,
                }
                let Some((_, p, state, fenced)) = self.nodes[index].metadata.pop_front() else {
                    break;
                };
                let now = self.now;
                let effects = match &mut self.nodes[index].replicas[p] {
                    Some(replica) => {
                        let effects = replica.apply_partition_state(now, &state);
                        replica.set_ineligible(&fenced);
                        effects
                    }
                    None => Vec::new(),
                };
                self.carry_out(index, p, effects)?;
            }
        }
        Ok(())
    }

    fn deliver_one(
        &mut self,
        from: ReplicaId,
        to: ReplicaId,
        message: Message,
    ) -> Result<(), String> {
        if self.link_down(from, to) {
            self.stats.dropped += 1;
            return Ok(());
        }
        if to == CONTROLLER {
            if let Message::AlterPartition(p, request) = message {
                let result = self.alter_partition(p, &request);
                self.stats.alter_refused += u64::from(result.is_err());
                self.note(|| format!("alter p{p} {request:?} -> {result:?}"));
                let answer = AlterPartitionAnswer { request, result };
                self.send(CONTROLLER, from, Message::AlterPartitionAnswer(p, answer));
            }
            return Ok(());
        }
        let index = self.index(to);
        if !self.nodes[index].alive {
            self.stats.dropped += 1;
            return Ok(());
        }
        self.stats.delivered += 1;
        let now = self.now;
        let p = match &message {
            Message::Fetch(p, _)
            | Message::FetchResponse(p, _)
            | Message::AlterPartition(p, _)
            | Message::AlterPartitionAnswer(p, _) => *p,
        };
        let Some(replica) = self.nodes[index].replicas[p].as_mut() else {
            return Ok(());
        };
        if let Some(trace) = &mut self.trace {
            trace.push(format!(
                "{:>8} {} -> {} {}",
                now - T0,
                from.0,
                to.0,
                brief(&message)
            ));
        }
        match message {
            Message::Fetch(_, request) => {
                let response = replica.handle_fetch(now, &request);
                self.send(to, from, Message::FetchResponse(p, response));
            }
            Message::FetchResponse(_, response) => {
                let outcome = replica.handle_fetch_response(now, response);
                match outcome {
                    FetchOutcome::Truncated { to: at } => {
                        self.stats.truncations += 1;
                        self.note(|| format!("broker {} p{p} truncates to {}", to.0, at.0));
                    }
                    FetchOutcome::Failed(FetchError::OffsetOutOfRange) => {
                        self.stats.out_of_range += 1;
                    }
                    _ => {}
                }
            }
            Message::AlterPartitionAnswer(_, answer) => {
                replica.handle_alter_partition_answer(now, &answer);
            }
            Message::AlterPartition(..) => {}
        }
        self.carry_out(index, p, Vec::new())
    }

    /// Carries out a replica's effects (and `first`, effects already drained).
    fn carry_out(&mut self, index: usize, p: usize, first: Vec<Effect>) -> Result<(), String> {
        let mut effects = first;
        if let Some(replica) = self.nodes[index].replicas[p].as_mut() {
            effects.extend(replica.drain_effects());
        }
        let id = self.nodes[index].id;
        for effect in effects {
            match effect {
                Effect::AlterPartition(request) => {
                    self.stats.alter_partitions += 1;
                    self.send(id, CONTROLLER, Message::AlterPartition(p, request));
                }
                Effect::HighWatermark(offset) => {
                    let dbg = format!(
                        "{:?}",
                        self.nodes[index].replicas[p]
                            .as_ref()
                            .and_then(|r| r.leader())
                    );
                    self.note(|| format!("broker {} p{p} high watermark {} {dbg}", id.0, offset.0));
                }
                Effect::ProduceDone {
                    token,
                    base_offset,
                    result,
                } => self.produce_done(index, p, token, base_offset, result.is_ok())?,
            }
        }
        Ok(())
    }

    fn produce_done(
        &mut self,
        index: usize,
        p: usize,
        token: ProduceToken,
        base_offset: Offset,
        ok: bool,
    ) -> Result<(), String> {
        let Some((partition, records)) = self.pending.remove(&token.0) else {
            return Err(format!("produce {token:?} answered twice"));
        };
        assert_eq!(partition, p);
        if !ok {
            self.stats.produce_failed += 1;
            return Ok(());
        }
        let Some(replica) = self.nodes[index].replicas[p].as_ref() else {
            return Ok(());
        };
        self.checker
            .acknowledged(p, replica, base_offset, &records)?;
        self.stats.acked_records += records.len() as u64;
        let id = self.nodes[index].id.0;
        self.note(|| {
            format!(
                "ack p{p} {} records at {} by {id}",
                records.len(),
                base_offset.0
            )
        });
        Ok(())
    }

    /// Every live broker: syncs its leaders' logs when due, ticks, sends due Fetches.
    fn run_brokers(&mut self) -> Result<(), String> {
        let now = self.now;
        for index in 0..self.nodes.len() {
            if !self.nodes[index].alive {
                continue;
            }
            let sync = now >= self.nodes[index].next_sync_at;
            if sync {
                self.nodes[index].next_sync_at = now + self.faults.sync_interval_ms;
            }
            let id = self.nodes[index].id;
            for p in 0..self.partitions.len() {
                let Some(replica) = self.nodes[index].replicas[p].as_mut() else {
                    continue;
                };
                if sync {
                    replica.log_mut().sync();
                }
                replica.tick(now);
                let fetch = replica.poll_fetch(now);
                let leader = match replica.role() {
                    Role::Follower(f) => f.leader(),
                    _ => None,
                };
                if let (Some(request), Some(leader)) = (fetch, leader) {
                    self.send(id, leader, Message::Fetch(p, request));
                }
                self.carry_out(index, p, Vec::new())?;
            }
        }
        Ok(())
    }
}

impl Sim {
    /// A broker crashes: each log keeps its durable prefix and any prefix of the rest; its
    /// waiting produces are never answered; the controller fences it when its session lapses.
    fn crash(&mut self, index: usize) {
        if !self.nodes[index].alive {
            return;
        }
        let id = self.nodes[index].id;
        for p in 0..self.partitions.len() {
            let Some(replica) = self.nodes[index].replicas[p].take() else {
                continue;
            };
            let log = replica.log();
            let kept = self.rng.below(log.unsynced_batch_count() as u64 + 1) as usize;
            self.nodes[index].disks[p] = Some(log.crash(kept));
        }
        let node = &mut self.nodes[index];
        node.alive = false;
        node.metadata.clear();
        node.restart_at = self.now + self.faults.session_ms + self.rng.below(300);
        let fence_at = self.session_end();
        if let Some(registration) = self.brokers.get_mut(&id) {
            registration.fence_at = Some(registration.fence_at.unwrap_or(fence_at));
        }
        self.stats.crashes += 1;
        self.note(|| format!("crash broker {}", id.0));
    }

    /// When a broker's session lapses, from now: heartbeats come at their own pace, so two
    /// brokers that stop in one order may be fenced in the other (and a crashed follower may
    /// still be elected before its own fencing).
    fn session_end(&mut self) -> u64 {
        let session_ms = self.faults.session_ms;
        self.now + session_ms / 2 + self.rng.below(session_ms * 3 / 2)
    }

    /// Restarts a crashed broker once the controller has fenced its old incarnation (KRaft
    /// refuses a second registration while the first one's session lasts).
    fn maybe_restart(&mut self, index: usize) {
        let id = self.nodes[index].id;
        let fenced = self.brokers.get(&id).is_some_and(|b| b.fenced);
        if !self.nodes[index].alive && fenced && self.now >= self.nodes[index].restart_at {
            self.start(index);
        }
    }

    /// The controller fences brokers whose session lapsed.
    fn run_controller(&mut self) {
        let due: Vec<ReplicaId> = self
            .brokers
            .iter()
            .filter(|(_, b)| !b.fenced && b.fence_at.is_some_and(|at| at <= self.now))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.fence(id);
        }
    }

    fn strike(&mut self) {
        let n = self.nodes.len() as u64;
        if self.rng.chance(self.faults.crash_per_mille) {
            let index = self.rng.below(n) as usize;
            self.crash(index);
        }
        if self.rng.chance(self.faults.isolate_per_mille) {
            let id = self.nodes[self.rng.below(n) as usize].id;
            if self.isolated.insert(id) {
                self.stats.isolations += 1;
                let fence_at = self.session_end();
                if let Some(registration) = self.brokers.get_mut(&id) {
                    registration.fence_at = Some(registration.fence_at.unwrap_or(fence_at));
                }
                self.note(|| format!("isolate broker {} from the controller", id.0));
            }
        }
        if self.rng.chance(self.faults.cut_per_mille) {
            let a = self.nodes[self.rng.below(n) as usize].id;
            let b = self.nodes[self.rng.below(n) as usize].id;
            self.cut.insert((a, b));
            self.stats.cuts += 1;
            self.note(|| format!("cut {} -> {}", a.0, b.0));
        }
        if self.rng.chance(self.faults.heal_per_mille) {
            self.heal();
        }
        if self.rng.chance(self.faults.move_leader_per_mille) {
            let p = self.rng.below(self.partitions.len() as u64) as usize;
            self.move_leader(p);
        }
        if self.rng.chance(self.faults.retention_per_mille) {
            self.retention();
        }
    }

    /// Retention (or DeleteRecords) on a leader: its log start moves up to at most its high
    /// watermark; followers follow it, and one whose log ends below it starts afresh there.
    fn retention(&mut self) {
        let p = self.rng.below(self.partitions.len() as u64) as usize;
        let index = self.rng.below(self.nodes.len() as u64) as usize;
        let Some(replica) = self.nodes[index].replicas[p].as_mut() else {
            return;
        };
        if replica.leader().is_none() {
            return;
        }
        let start = replica.log().log_start();
        let span = (replica.high_watermark().0 - start.0).max(0) as u64;
        let to = Offset(start.0 + self.rng.below(span + 1) as i64);
        replica.log_mut().advance_log_start(to);
        self.stats.retentions += 1;
        let id = self.nodes[index].id.0;
        self.note(|| format!("retention on {id} p{p}: log start {}", to.0));
    }

    /// Links come back; isolated brokers reach the controller again and are unfenced.
    fn heal(&mut self) {
        self.cut.clear();
        for id in std::mem::take(&mut self.isolated) {
            let alive = self.nodes[self.index(id)].alive;
            let fenced = self.brokers.get(&id).is_some_and(|b| b.fenced);
            if alive && fenced {
                self.unfence(id);
            } else if alive && let Some(registration) = self.brokers.get_mut(&id) {
                registration.fence_at = None;
            }
        }
        self.note(|| "heal".to_string());
    }

    /// A producer sends an acks=all batch to a broker that thinks it leads the partition.
    fn produce(&mut self) -> Result<(), String> {
        let p = self.rng.below(self.partitions.len() as u64) as usize;
        let leaders: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| {
                self.nodes[i].replicas[p]
                    .as_ref()
                    .is_some_and(|r| r.leader().is_some())
            })
            .collect();
        if leaders.is_empty() {
            return Ok(());
        }
        let index = leaders[self.rng.below(leaders.len() as u64) as usize];
        self.next_token += 1;
        let token = self.next_token;
        let count = 1 + self.rng.below(3) as usize;
        let records: Vec<Vec<u8>> = (0..count)
            .map(|i| format!("p{p}-t{token}-r{i}").into_bytes())
            .collect();
        let acks = Acks::All {
            token: ProduceToken(token),
            timeout_ms: PRODUCE_TIMEOUT_MS,
        };
        let now = self.now;
        let Some(replica) = self.nodes[index].replicas[p].as_mut() else {
            return Ok(());
        };
        self.stats.produced += 1;
        match replica.append(now, MemBatch::new(records.clone()), acks) {
            Ok(_) => {
                self.pending.insert(token, (p, records));
            }
            Err(_) => self.stats.produce_failed += 1,
        }
        self.carry_out(index, p, Vec::new())
    }

    /// The checker over every live replica; `full` adds the pairwise and whole-log checks.
    fn check(&mut self, full: bool) -> Result<(), String> {
        for index in 0..self.nodes.len() {
            for p in 0..self.partitions.len() {
                let id = self.nodes[index].id;
                let node = &mut self.nodes[index];
                let Some(replica) = node.replicas[p].as_ref() else {
                    continue;
                };
                let fresh = self.checker.observe(p, id, replica, &mut node.checked[p])?;
                for offset in fresh {
                    for other in &self.nodes {
                        if let Some(r) = other.replicas[p].as_ref() {
                            self.checker.leader_holds(p, other.id, r, offset)?;
                        }
                    }
                }
            }
        }
        if full {
            self.full_check()?;
        }
        Ok(())
    }

    fn full_check(&self) -> Result<(), String> {
        for p in 0..self.partitions.len() {
            let live: Vec<(ReplicaId, &PartitionReplica<MemLog>)> = self
                .nodes
                .iter()
                .filter_map(|n| n.replicas[p].as_ref().map(|r| (n.id, r)))
                .collect();
            agree_below_high_watermarks(p, &live)?;
            for (id, replica) in &live {
                self.checker.leader_holds_all(p, *id, replica)?;
            }
        }
        self.checker.acked_are_committed()
    }

    /// One step: time moves, the controller fences, messages and states arrive, brokers tick
    /// and fetch, faults strike, producers produce, the checker checks.
    fn step(&mut self, faulty: bool) -> Result<(), String> {
        self.now += 1 + self.rng.below(4);
        self.stats.steps += 1;
        self.run_controller();
        self.deliver()?;
        self.run_brokers()?;
        for index in 0..self.nodes.len() {
            self.maybe_restart(index);
        }
        if faulty {
            self.strike();
            if self.rng.chance(self.faults.produce_per_mille) {
                self.produce()?;
            }
        }
        self.check(self.stats.steps.is_multiple_of(200))
    }
}

impl Sim {
    /// Is every partition led by the controller's leader, with the full ISR, every replica
    /// at the leader's log end and high watermark?
    fn converged(&self) -> bool {
        (0..self.partitions.len()).all(|p| {
            let state = &self.partitions[p];
            let Some(leader_id) = state.leader else {
                return false;
            };
            let Some(leader) = self.nodes[self.index(leader_id)].replicas[p].as_ref() else {
                return false;
            };
            let end = leader.log().log_end();
            let leading = leader.leader().is_some_and(|l| {
                l.leader_epoch() == state.leader_epoch && l.isr().len() == state.replicas.len()
            });
            leading
                && state.isr.len() == state.replicas.len()
                && state.replicas.iter().all(|&r| {
                    self.nodes[self.index(r)].replicas[p]
                        .as_ref()
                        .is_some_and(|x| x.log().log_end() == end && x.high_watermark() == end)
                })
        })
    }

    /// Heals everything, brings every broker back, stops the faults, and waits for every
    /// partition to converge, take a fresh acks=all record and converge again.
    fn settle(&mut self, bound_ms: u64) -> Result<u64, String> {
        self.heal();
        self.faults.loss_per_mille = 0;
        self.faults.duplicate_per_mille = 0;
        self.faults.delay_ms_max = self.faults.delay_ms_max.min(10);
        for node in &mut self.nodes {
            node.restart_at = node.restart_at.min(self.now);
        }
        let start = self.now;
        let mut probed_at: Option<u64> = None;
        while self.now < start + bound_ms {
            self.step(false)?;
            if !self.converged() {
                continue;
            }
            let probes_acked = probed_at.is_some() && self.pending.is_empty();
            if probes_acked {
                self.full_check()?;
                return Ok(self.now - start);
            }
            if probed_at.is_none_or(|at| self.now > at + PRODUCE_TIMEOUT_MS) {
                self.pending.clear();
                self.probe()?;
                probed_at = Some(self.now);
            }
        }
        Err(format!(
            "no convergence within {bound_ms} ms after healing: {:?}",
            self.partitions
        ))
    }

    /// One acks=all record to each partition's leader.
    fn probe(&mut self) -> Result<(), String> {
        for p in 0..self.partitions.len() {
            let Some(leader) = self.partitions[p].leader else {
                continue;
            };
            let index = self.index(leader);
            self.next_token += 1;
            let token = self.next_token;
            let records = vec![format!("p{p}-probe{token}").into_bytes()];
            let acks = Acks::All {
                token: ProduceToken(token),
                timeout_ms: PRODUCE_TIMEOUT_MS,
            };
            let now = self.now;
            if let Some(replica) = self.nodes[index].replicas[p].as_mut()
                && replica
                    .append(now, MemBatch::new(records.clone()), acks)
                    .is_ok()
            {
                self.pending.insert(token, (p, records));
            }
            self.carry_out(index, p, Vec::new())?;
        }
        Ok(())
    }
}

/// A message in a trace line.
fn brief(message: &Message) -> String {
    match message {
        Message::Fetch(p, r) => format!(
            "p{p} Fetch e{} at {} last {:?}",
            r.current_leader_epoch.0, r.fetch_offset.0, r.last_fetched_epoch
        ),
        Message::FetchResponse(p, r) => format!(
            "p{p} FetchResponse e{} at {}: {:?} diverging {:?} hw {} batches to {:?}",
            r.current_leader_epoch.0,
            r.fetch_offset.0,
            r.error,
            r.diverging_epoch,
            r.high_watermark.0,
            r.batches
                .last()
                .map(|b| b.base_offset.0 + b.records.len() as i64)
        ),
        other => format!("{other:?}"),
    }
}

/// What one seed did, or its violation, and its trace.
struct Outcome {
    result: Result<Stats, String>,
    trace: Vec<String>,
}

/// Runs one seed for `steps` faulty steps, then heals and checks liveness. A panic in the
/// core (a broken assertion) is a violation too; the trace survives it.
fn run(seed: u64, steps: u64, traced: bool) -> Outcome {
    let mut sim = Sim::new(seed, traced);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        (0..steps)
            .try_for_each(|_| sim.step(true))
            .and_then(|()| sim.settle(30_000))
    }));
    let faults = sim.faults.clone();
    let result = match outcome {
        Ok(Ok(_)) => {
            sim.stats.sim_ms = sim.now - T0;
            let records = &sim.checker.partitions;
            sim.stats.leader_epochs = records.iter().map(|r| r.leaders.len()).sum();
            sim.stats.committed = records.iter().map(|r| r.committed.len()).sum();
            Ok(sim.stats.clone())
        }
        Ok(Err(violation)) => Err(format!("seed {seed}: {violation} ({faults:?})")),
        Err(panic) => {
            let text = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(format!("seed {seed}: panic: {text} ({faults:?})"))
        }
    };
    Outcome {
        result,
        trace: sim.trace.take().unwrap_or_default(),
    }
}

/// Runs `count` seeds from `first`, fails with every violation found, prints totals.
fn sweep(first: u64, count: u64, steps: u64) -> Stats {
    let started = Instant::now();
    let mut total = Stats::default();
    let mut failures = Vec::new();
    for seed in first..first + count {
        match run(seed, steps, false).result {
            Ok(s) => add(&mut total, &s),
            Err(e) => failures.push(e),
        }
    }
    println!(
        "{count} seeds x {steps} steps in {:.1?}: {total:?}",
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} seeds failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    total
}

fn add(total: &mut Stats, s: &Stats) {
    total.steps += s.steps;
    total.sim_ms += s.sim_ms;
    total.leader_epochs += s.leader_epochs;
    total.committed += s.committed;
    total.produced += s.produced;
    total.acked_records += s.acked_records;
    total.produce_failed += s.produce_failed;
    total.crashes += s.crashes;
    total.isolations += s.isolations;
    total.cuts += s.cuts;
    total.leader_moves += s.leader_moves;
    total.truncations += s.truncations;
    total.out_of_range += s.out_of_range;
    total.retentions += s.retentions;
    total.alter_partitions += s.alter_partitions;
    total.alter_refused += s.alter_refused;
    total.delivered += s.delivered;
    total.dropped += s.dropped;
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The fixed seeds: every fault, checked after every step, in well under a minute.
#[test]
fn fixed_seeds() {
    let total = sweep(0, 1000, 3000);
    // The faults really happened (a run without them proves little).
    assert!(total.crashes > 0 && total.isolations > 0 && total.truncations > 0);
    assert!(total.acked_records > 0 && total.leader_epochs > 60);
}

/// The same seed replays the same run.
#[test]
fn same_seed_same_trace() {
    let a = run(7, 800, true);
    let b = run(7, 800, true);
    assert_eq!(a.trace, b.trace);
    assert_eq!(a.result, b.result);
}

/// A longer sweep: `SEEDS=2000 cargo test -p sluice-replication --release --test sim long_run
/// -- --ignored --nocapture` (`FIRST`, `STEPS` too).
#[test]
#[ignore]
fn long_run() {
    sweep(env("FIRST", 1000), env("SEEDS", 1000), env("STEPS", 5000));
}

/// Replays `SEED` and prints the last 400 lines of its trace.
#[test]
#[ignore]
fn replay() {
    let outcome = run(env("SEED", 0), env("STEPS", 3000), true);
    let tail = outcome.trace.len().saturating_sub(400);
    for line in &outcome.trace[tail..] {
        println!("{line}");
    }
    println!("{:?}", outcome.result);
}
