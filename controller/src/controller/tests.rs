//! Unit tests of the controller: each drives a `Controller` through a `Cluster` harness that
//! commits every proposal at once into a committed image and a record log (the quorum is
//! instant here), then checks records, replies and the image.

#[cfg(test)]
use super::*;
use crate::image::{METADATA_VERSION, PartitionRegistration, RESOURCE_BROKER};
use sluice_net::ErrorCode;
use sluice_net::Uuid;
use sluice_net::messages::broker_registration_request::{Feature, Listener};
use sluice_net::messages::create_topics_request::{CreatableReplicaAssignment, CreatableTopic};
use sluice_net::messages::{
    AllocateProducerIdsRequest, BrokerHeartbeatRequest, BrokerRegistrationRequest,
    CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest, MetadataRecord,
};

const TIMEOUT: u64 = 9_000;

/// Decides with the controller, then commits the proposal: `run!(c, tick(now))`.
macro_rules! run {
    ($c:expr, $($call:tt)*) => {{
        let p = $c.controller.$($call)*;
        $c.commit(p)
    }};
}

struct Cluster {
    controller: Controller,
    committed: MetadataImage,
    log: Vec<VersionedRecord>,
}

fn config() -> ControllerConfig {
    ControllerConfig {
        cluster_id: "c1".into(),
        session_timeout_ms: TIMEOUT,
        ..Default::default()
    }
}

impl Cluster {
    fn new(seed: u64) -> Cluster {
        let controller = Controller::activate(config(), MetadataImage::empty(), 1, 0, 0, seed);
        let mut c = Cluster {
            controller,
            committed: MetadataImage::empty(),
            log: Vec::new(),
        };
        let p = c.controller.bootstrap_if_empty().unwrap();
        c.commit(p);
        c
    }

    fn commit<T>(&mut self, p: Proposal<T>) -> T {
        for (i, r) in p.records.iter().enumerate() {
            let offset = p.first_offset + i as i64;
            assert_eq!(offset, self.log.len() as i64);
            self.committed.apply(offset, 1, r).unwrap();
            self.log.push(r.clone());
        }
        assert_eq!(&self.committed, self.controller.image());
        p.reply
    }

    /// Fails over: a fresh controller over an image rebuilt from the log.
    fn failover(&mut self, now_ms: u64, seed: u64) {
        let mut image = MetadataImage::empty();
        for (i, r) in self.log.iter().enumerate() {
            image.apply(i as i64, 1, r).unwrap();
        }
        assert_eq!(image, self.committed);
        let next = self.log.len() as i64;
        self.controller = Controller::activate(config(), image, 1, next, now_ms, seed);
    }

    fn register(&mut self, now: u64, id: i32, incarnation: u8) -> (i16, i64) {
        let req = registration(id, incarnation);
        let reply = run!(self, register_broker(now, &req));
        (reply.error_code, reply.broker_epoch)
    }

    fn heartbeat(&mut self, now: u64, id: i32, epoch: i64, offset: i64) -> HeartbeatReply {
        let req = BrokerHeartbeatRequest {
            broker_id: id.into(),
            broker_epoch: epoch,
            current_metadata_offset: offset,
            want_fence: false,
            ..Default::default()
        };
        let r = run!(self, broker_heartbeat(now, &req));
        (
            r.error_code,
            r.is_caught_up,
            r.is_fenced,
            r.should_shut_down,
        )
    }

    /// Registers and unfences brokers `ids`; returns their epochs.
    fn live_brokers(&mut self, now: u64, ids: &[i32]) -> Vec<i64> {
        let epochs: Vec<i64> = ids.iter().map(|&id| self.register(now, id, 1).1).collect();
        for (&id, &epoch) in ids.iter().zip(&epochs) {
            let offset = self.log.len() as i64;
            assert!(!self.heartbeat(now, id, epoch, offset).2);
        }
        epochs
    }

    fn create(&mut self, name: &str, partitions: i32, rf: i16) -> (i16, Option<String>) {
        let req = CreateTopicsRequest {
            topics: vec![topic(name, partitions, rf)],
            ..Default::default()
        };
        let reply = run!(self, create_topics(&req));
        let t = &reply.topics[0];
        (
            t.error_code,
            t.error_message.as_ref().map(|m| m.to_string()),
        )
    }

    fn partitions(&self, name: &str) -> Vec<PartitionRegistration> {
        let t = self.committed.topic_by_name(name).unwrap();
        t.partitions.values().cloned().collect()
    }
}

type HeartbeatReply = (i16, bool, bool, bool);

fn registration(id: i32, incarnation: u8) -> BrokerRegistrationRequest {
    let mut dir = [7u8; 16];
    dir[0] = id as u8;
    BrokerRegistrationRequest {
        broker_id: id.into(),
        cluster_id: "c1".into(),
        incarnation_id: Uuid([incarnation; 16]),
        listeners: vec![Listener {
            name: "PLAINTEXT".into(),
            host: "127.0.0.1".into(),
            port: 9000 + id as u16,
            security_protocol: 0,
            ..Default::default()
        }],
        features: vec![Feature {
            name: METADATA_VERSION.into(),
            min_supported_version: 7,
            max_supported_version: 33,
            ..Default::default()
        }]
        .into_iter()
        .chain(
            crate::bootstrap::BOOTSTRAP_FEATURES
                .iter()
                .map(|&(n, l)| Feature {
                    name: n.into(),
                    min_supported_version: 0,
                    max_supported_version: l,
                    ..Default::default()
                }),
        )
        .collect(),
        log_dirs: vec![Uuid(dir)],
        ..Default::default()
    }
}

fn topic(name: &str, partitions: i32, rf: i16) -> CreatableTopic {
    CreatableTopic {
        name: name.into(),
        num_partitions: partitions,
        replication_factor: rf,
        ..Default::default()
    }
}

/// Bootstrap writes Kafka 4.4's records: a transaction around metadata.version 33, the five
/// production features and the cluster min.insync.replicas.
#[test]
fn bootstrap_writes_kafka_4_4_records() {
    let c = Cluster::new(1);
    assert_eq!(c.log.len(), 9);
    assert!(matches!(
        c.log[0].record,
        MetadataRecord::BeginTransaction(_)
    ));
    assert!(matches!(c.log[8].record, MetadataRecord::EndTransaction(_)));
    assert_eq!(c.committed.metadata_version(), Some(33));
    assert_eq!(c.committed.feature_level("share.version"), 2);
    assert_eq!(
        c.committed
            .config(RESOURCE_BROKER, "", "min.insync.replicas"),
        Some("1")
    );
    let mut again = c.controller.clone();
    assert!(again.bootstrap_if_empty().is_none());
}

/// A broker registers fenced; its epoch is its RegisterBrokerRecord's offset.
#[test]
fn registration_epoch_is_record_offset_and_fenced() {
    let mut c = Cluster::new(1);
    let offset = c.log.len() as i64;
    let (code, epoch) = c.register(0, 1, 1);
    assert_eq!((code, epoch), (0, offset));
    assert_eq!(c.log[offset as usize].version, 4);
    let b = c.committed.broker(1).unwrap();
    assert!(b.fenced);
    assert_eq!(b.endpoints[0].port, 9001);
}

/// The same incarnation registering again keeps its epoch and its unfenced state.
#[test]
fn re_registration_same_incarnation_is_idempotent() {
    let mut c = Cluster::new(1);
    let epoch = c.live_brokers(0, &[1])[0];
    let (code, again) = c.register(100, 1, 1);
    assert_eq!((code, again), (0, epoch));
    assert!(!c.committed.broker(1).unwrap().fenced);
}

/// Another incarnation while the old one is unfenced and alive is a duplicate; once the old
/// session expired (and the broker got fenced) the new one registers with a new epoch.
#[test]
fn duplicate_registration_refused_while_session_alive() {
    let mut c = Cluster::new(1);
    let epoch = c.live_brokers(0, &[1])[0];
    let (code, _) = c.register(1_000, 1, 2);
    assert_eq!(code, ErrorCode::DUPLICATE_BROKER_REGISTRATION.code());
    run!(c, tick(TIMEOUT + 1));
    let (code, new_epoch) = c.register(TIMEOUT + 2, 1, 2);
    assert_eq!(code, 0);
    assert!(new_epoch > epoch);
}

/// Unfencing waits until the broker reports the offset of its registration record.
#[test]
fn heartbeat_unfences_after_catch_up() {
    let mut c = Cluster::new(1);
    let (_, epoch) = c.register(0, 1, 1);
    assert_eq!(
        c.heartbeat(10, 1, epoch, epoch - 1),
        (0, false, true, false)
    );
    assert!(c.committed.broker(1).unwrap().fenced);
    assert_eq!(c.heartbeat(20, 1, epoch, epoch), (0, true, false, false));
    assert!(!c.committed.broker(1).unwrap().fenced);
    let code = c.heartbeat(30, 1, epoch + 1, epoch).0;
    assert_eq!(code, ErrorCode::STALE_BROKER_EPOCH.code());
    assert_eq!(
        c.heartbeat(30, 9, 0, 0).0,
        ErrorCode::STALE_BROKER_EPOCH.code()
    );
}

/// A silent broker is fenced after the session timeout, not before; its RF-1 partitions go
/// offline (ELR on, as Kafka 4.4: the ISR empties into the ELR) and come back with a bumped
/// leader epoch when it is unfenced.
#[test]
fn session_expiry_fences_and_partitions_come_back() {
    let mut c = Cluster::new(1);
    let epochs = c.live_brokers(0, &[1, 2]);
    assert_eq!(c.create("t", 4, 1).0, 0);
    c.heartbeat(5_000, 2, epochs[1], 0);
    assert!(run!(c, tick(TIMEOUT)).is_empty());
    assert_eq!(run!(c, tick(TIMEOUT + 1)), vec![1]);
    assert!(c.committed.broker(1).unwrap().fenced);
    for p in c.partitions("t") {
        if p.replicas == [1] {
            assert_eq!((p.leader, p.leader_epoch), (-1, 1));
            assert!(p.isr.is_empty());
            assert_eq!(p.elr, vec![1]);
        } else {
            assert_eq!((p.leader, p.leader_epoch), (2, 0));
        }
    }
    let offset = c.log.len() as i64;
    assert!(!c.heartbeat(TIMEOUT + 2, 1, epochs[0], offset).2);
    for p in c.partitions("t") {
        let expected_epoch = if p.replicas == [1] { 2 } else { 0 };
        assert_eq!(p.leader, p.replicas[0]);
        assert_eq!(p.isr, p.replicas);
        assert_eq!(p.leader_epoch, expected_epoch);
    }
}

/// kill -9 and restart of the only replica's broker (as Kafka 4.4 answers, checked against a
/// 3-node Kafka): fenced, the partition remembers its last leader; the new incarnation's
/// unclean registration drops it from the ELR; once unfenced it is elected again from the
/// last known leader, alone in the ISR and marked recovering.
#[test]
fn unclean_restart_of_the_only_replica_brings_it_back() {
    let mut c = Cluster::new(1);
    let epochs = c.live_brokers(0, &[1, 2]);
    assert_eq!(c.create("t", 4, 1).0, 0);
    c.heartbeat(5_000, 2, epochs[1], 0);
    assert_eq!(run!(c, tick(TIMEOUT + 1)), vec![1]);
    let on_1 = |c: &Cluster| -> Vec<PartitionRegistration> {
        let all = c.partitions("t");
        all.into_iter().filter(|p| p.replicas == [1]).collect()
    };
    for p in on_1(&c) {
        assert_eq!(
            (p.leader, p.isr.clone(), p.elr.clone()),
            (-1, vec![], vec![1])
        );
        assert_eq!(p.last_known_elr, vec![1]);
    }
    let (error, epoch) = c.register(TIMEOUT + 2, 1, 2);
    assert_eq!(error, 0);
    for p in on_1(&c) {
        assert_eq!(
            (p.leader, p.elr.clone(), p.last_known_elr.clone()),
            (-1, vec![], vec![1])
        );
    }
    let offset = c.log.len() as i64;
    assert!(!c.heartbeat(TIMEOUT + 3, 1, epoch, offset).2);
    let back = on_1(&c);
    assert!(!back.is_empty());
    for p in back {
        assert_eq!((p.leader, p.isr.clone()), (1, vec![1]));
        assert!(p.elr.is_empty() && p.last_known_elr.is_empty());
        assert_eq!(p.leader_recovery_state, 1);
    }
}

/// Without ELR (feature level 0) a fenced RF-1 partition keeps its last ISR member.
#[test]
fn without_elr_fenced_partition_keeps_last_isr_member() {
    let mut c = Cluster::new(1);
    let record = VersionedRecord {
        version: 0,
        record: MetadataRecord::FeatureLevel(sluice_net::messages::FeatureLevelRecord {
            name: crate::image::ELR_VERSION.into(),
            feature_level: 0,
            ..Default::default()
        }),
    };
    run!(c, propose(vec![record], ()));
    c.live_brokers(0, &[1]);
    c.create("t", 1, 1);
    run!(c, tick(TIMEOUT + 1));
    let p = &c.partitions("t")[0];
    assert_eq!((p.leader, p.isr.clone(), p.leader_epoch), (-1, vec![1], 1));
}

/// 12 partitions of RF 1 over 3 brokers: 4 each. RF 3: every broker in every partition and
/// leaders spread 4 / 4 / 4.
#[test]
fn placement_spreads_partitions_and_leaders() {
    for seed in 0..20 {
        let mut c = Cluster::new(seed);
        c.live_brokers(0, &[1, 2, 3]);
        assert_eq!(c.create("a", 12, 1).0, 0);
        assert_eq!(c.create("b", 12, 3).0, 0);
        for name in ["a", "b"] {
            let mut leaders = [0; 4];
            for p in c.partitions(name) {
                leaders[p.leader as usize] += 1;
                assert_eq!(p.leader, p.replicas[0]);
                let mut r = p.replicas.clone();
                r.sort();
                r.dedup();
                assert_eq!(r.len(), p.replicas.len());
            }
            assert_eq!(leaders, [0, 4, 4, 4], "seed {seed} topic {name}");
        }
    }
}

/// Racks: with RF 2 over two racks every partition has one replica in each rack.
#[test]
fn placement_honors_racks() {
    let mut c = Cluster::new(3);
    for id in 1..=4 {
        let mut req = registration(id, 1);
        req.rack = Some(if id <= 2 { "r1" } else { "r2" }.into());
        let epoch = run!(c, register_broker(0, &req)).broker_epoch;
        let offset = c.log.len() as i64;
        c.heartbeat(0, id, epoch, offset);
    }
    c.create("t", 8, 2);
    for p in c.partitions("t") {
        assert_eq!(p.replicas.iter().filter(|&&b| b <= 2).count(), 1, "{p:?}");
    }
}

/// Kafka's INVALID_REPLICATION_FACTOR answers, messages included.
#[test]
fn invalid_replication_factor_messages() {
    let mut c = Cluster::new(1);
    let (code, msg) = c.create("t", 1, 1);
    assert_eq!(code, ErrorCode::INVALID_REPLICATION_FACTOR.code());
    assert_eq!(
        msg.unwrap(),
        "Unable to replicate the partition 1 time(s): All brokers are currently fenced."
    );
    c.live_brokers(0, &[1, 2]);
    let (code, msg) = c.create("t", 3, 3);
    assert_eq!(code, ErrorCode::INVALID_REPLICATION_FACTOR.code());
    assert_eq!(
        msg.unwrap(),
        "Unable to replicate the partition 3 time(s): The target replication factor of 3 cannot \
         be reached because only 2 broker(s) are registered."
    );
    assert!(c.committed.topic_by_name("t").is_none());
    let (code, _) = c.create("t", 1, 0);
    assert_eq!(code, ErrorCode::INVALID_REPLICATION_FACTOR.code());
}

/// Names, counts, duplicates, validate_only, explicit assignments and configs.
#[test]
fn create_topics_validation() {
    let mut c = Cluster::new(1);
    c.live_brokers(0, &[1, 2]);
    assert_eq!(
        c.create("bad name", 1, 1).0,
        ErrorCode::INVALID_TOPIC_EXCEPTION.code()
    );
    assert_eq!(
        c.create("..", 1, 1).0,
        ErrorCode::INVALID_TOPIC_EXCEPTION.code()
    );
    assert_eq!(c.create("t", 0, 1).0, ErrorCode::INVALID_PARTITIONS.code());
    assert_eq!(c.create("t", -1, -1).0, 0);
    let (code, msg) = c.create("t", 1, 1);
    assert_eq!(code, ErrorCode::TOPIC_ALREADY_EXISTS.code());
    assert_eq!(msg.unwrap(), "Topic 't' already exists.");
    let before = c.log.len();
    let mut req = CreateTopicsRequest {
        topics: vec![topic("v", 2, 1)],
        validate_only: true,
        ..Default::default()
    };
    assert_eq!(run!(c, create_topics(&req)).topics[0].error_code, 0);
    assert_eq!(c.log.len(), before);
    let mut manual = topic("m", -1, -1);
    manual.assignments = vec![CreatableReplicaAssignment {
        partition_index: 0,
        broker_ids: vec![2.into(), 1.into()],
        ..Default::default()
    }];
    manual.configs = vec![
        sluice_net::messages::create_topics_request::CreatableTopicConfig {
            name: "cleanup.policy".into(),
            value: Some("compact".into()),
            ..Default::default()
        },
    ];
    req.topics = vec![manual];
    req.validate_only = false;
    assert_eq!(run!(c, create_topics(&req)).topics[0].error_code, 0);
    assert_eq!(c.partitions("m")[0].replicas, vec![2, 1]);
    assert_eq!(c.partitions("m")[0].leader, 2);
    assert_eq!(
        c.committed.config(2, "m", "cleanup.policy"),
        Some("compact")
    );
}

/// CreatePartitions adds partitions; DeleteTopics removes the topic and its configs.
#[test]
fn create_partitions_and_delete_topics() {
    let mut c = Cluster::new(1);
    c.live_brokers(0, &[1, 2]);
    c.create("t", 2, 2);
    let mut req = CreatePartitionsRequest::default();
    req.topics.push(
        sluice_net::messages::create_partitions_request::CreatePartitionsTopic {
            name: "t".into(),
            count: 5,
            assignments: None,
            ..Default::default()
        },
    );
    let reply = run!(c, create_partitions(&req));
    assert_eq!(reply.results[0].error_code, 0);
    assert_eq!(c.partitions("t").len(), 5);
    assert!(c.partitions("t").iter().all(|p| p.replicas.len() == 2));
    let reply = run!(c, create_partitions(&req));
    assert_eq!(
        reply.results[0].error_code,
        ErrorCode::INVALID_PARTITIONS.code()
    );
    let del = DeleteTopicsRequest {
        topic_names: vec!["t".into(), "nope".into()],
        ..Default::default()
    };
    let reply = run!(c, delete_topics(&del));
    assert_eq!(reply.responses[0].error_code, 0);
    assert_eq!(
        reply.responses[1].error_code,
        ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code()
    );
    assert!(c.committed.topic_by_name("t").is_none());
    assert!(c.committed.topics().is_empty());
}

/// Producer-id blocks never overlap, across brokers and across a controller failover; a
/// stale broker epoch is refused.
#[test]
fn producer_id_blocks_never_overlap() {
    let mut c = Cluster::new(1);
    let epochs = c.live_brokers(0, &[1, 2]);
    let mut blocks = Vec::new();
    for round in 0..6 {
        if round == 3 {
            c.failover(10, 99);
        }
        for (i, &epoch) in epochs.iter().enumerate() {
            let req = AllocateProducerIdsRequest {
                broker_id: (i as i32 + 1).into(),
                broker_epoch: epoch,
                ..Default::default()
            };
            let r = run!(c, allocate_producer_ids(&req));
            assert_eq!(r.error_code, 0);
            blocks.push((r.producer_id_start.get(), r.producer_id_len));
        }
    }
    blocks.sort();
    assert_eq!(blocks[0], (0, 1000));
    for w in blocks.windows(2) {
        assert!(w[0].0 + i64::from(w[0].1) <= w[1].0, "{w:?}");
    }
    let req = AllocateProducerIdsRequest {
        broker_id: 1.into(),
        broker_epoch: epochs[0] + 100,
        ..Default::default()
    };
    let r = run!(c, allocate_producer_ids(&req));
    assert_eq!(r.error_code, ErrorCode::STALE_BROKER_EPOCH.code());
}

/// After a failover every session restarts: a broker silent since before it is not fenced
/// until a full timeout after activation.
#[test]
fn failover_restarts_sessions() {
    let mut c = Cluster::new(1);
    c.live_brokers(0, &[1]);
    c.failover(TIMEOUT * 5, 2);
    assert!(run!(c, tick(TIMEOUT * 6)).is_empty());
    assert_eq!(run!(c, tick(TIMEOUT * 6 + 1)), vec![1]);
}

/// Controlled shutdown: leadership moves away, then the broker is told to shut down.
#[test]
fn controlled_shutdown_moves_leaders_then_shuts_down() {
    let mut c = Cluster::new(1);
    let epochs = c.live_brokers(0, &[1, 2]);
    c.create("t", 4, 2);
    let req = BrokerHeartbeatRequest {
        broker_id: 1.into(),
        broker_epoch: epochs[0],
        current_metadata_offset: c.log.len() as i64,
        want_shut_down: true,
        ..Default::default()
    };
    let r = run!(c, broker_heartbeat(1, &req));
    assert!(!r.should_shut_down);
    assert!(
        c.partitions("t")
            .iter()
            .all(|p| p.leader == 2 && p.isr == [2])
    );
    c.heartbeat(2, 2, epochs[1], c.log.len() as i64);
    let r = run!(c, broker_heartbeat(3, &req));
    assert!(r.should_shut_down && r.is_fenced);
}

/// The legacy import makes an old data dir's topics the first topics; the owner leads them
/// once it registers and catches up.
#[test]
fn legacy_topics_become_records() {
    let mut c = Cluster::new(1);
    let legacy = crate::bootstrap::LegacyTopic {
        name: "old".into(),
        id: Uuid([5; 16]),
        partition_count: 3,
        configs: vec![("retention.ms".into(), "1000".into())],
    };
    let records = crate::bootstrap::legacy_topic_records(&[legacy], 1);
    run!(c, propose(records, ()));
    assert_eq!(c.committed.topic_by_name("old").unwrap().id, Uuid([5; 16]));
    assert!(c.partitions("old").iter().all(|p| p.leader == -1));
    c.live_brokers(0, &[1]);
    assert!(
        c.partitions("old")
            .iter()
            .all(|p| p.leader == 1 && p.leader_epoch == 1)
    );
    assert_eq!(c.committed.config(2, "old", "retention.ms"), Some("1000"));
}

/// Random requests and ticks (reassignments and leaders' ISR expansions included), committed
/// in order: replicas are distinct, each with a directory; the ISR, adding and removing are
/// replicas; every leader is a replica in the ISR (or -1), no fenced broker leads, broker epochs
/// only grow, and replaying the log gives the same image.
#[test]
fn random_operations_keep_invariants() {
    let mut reassignments = [0; 2];
    for seed in 0..30u64 {
        let mut rng = Rng::new(seed);
        let mut c = Cluster::new(seed);
        let mut epochs: BTreeMap<i32, i64> = BTreeMap::new();
        let mut now = 0;
        for step in 0..300 {
            now += rng.below(2_000);
            random_step(&mut c, &mut rng, &mut epochs, now, step);
            check_invariants(&c, seed);
        }
        c.failover(now, seed + 1);
        for record in &c.log {
            if let MetadataRecord::PartitionChange(r) = &record.record {
                let adding = r.adding_replicas.as_ref().map(Vec::is_empty);
                reassignments[0] += usize::from(adding == Some(false));
                reassignments[1] += usize::from(adding == Some(true));
            }
        }
    }
    assert!(
        reassignments.iter().all(|&n| n >= 10),
        "started, ended: {reassignments:?}"
    );
}

fn random_step(
    c: &mut Cluster,
    rng: &mut Rng,
    epochs: &mut BTreeMap<i32, i64>,
    now: u64,
    step: u32,
) {
    let id = rng.below(4) as i32 + 1;
    match rng.below(7) {
        6 if rng.below(2) == 0 => random_reassignment(c, rng),
        6 => random_isr_expansion(c, rng),
        0 => {
            let (code, epoch) = c.register(now, id, rng.below(2) as u8 + 1);
            if code == 0 {
                let old = epochs.insert(id, epoch).unwrap_or(-1);
                assert!(epoch >= old, "broker epoch went back");
            }
        }
        1 | 2 => {
            let epoch = epochs.get(&id).copied().unwrap_or(0);
            let lag = rng.below(3) as i64;
            c.heartbeat(now, id, epoch, c.log.len() as i64 - lag);
        }
        3 => {
            run!(c, tick(now));
        }
        4 => {
            let rf = rng.below(3) as i16 + 1;
            c.create(&format!("t{step}"), rng.below(5) as i32 + 1, rf);
        }
        _ => {
            let req = AllocateProducerIdsRequest {
                broker_id: id.into(),
                broker_epoch: epochs.get(&id).copied().unwrap_or(0),
                ..Default::default()
            };
            run!(c, allocate_producer_ids(&req));
        }
    }
}

/// A random partition of a random topic, if any.
fn random_partition<'a>(
    c: &'a Cluster,
    rng: &mut Rng,
) -> Option<(&'a str, i32, &'a PartitionRegistration)> {
    let topics: Vec<_> = c.committed.topics().values().collect();
    let topic = topics.get(rng.below(topics.len().max(1) as u64) as usize)?;
    let partitions: Vec<_> = topic.partitions.iter().collect();
    let &(&index, p) = partitions.get(rng.below(partitions.len().max(1) as u64) as usize)?;
    Some((&*topic.name, index, p))
}

/// Reassigns a random partition to 1 to 3 random brokers of 1 to 5 (5 never registers), or
/// cancels its reassignment.
fn random_reassignment(c: &mut Cluster, rng: &mut Rng) {
    use sluice_net::messages::AlterPartitionReassignmentsRequest;
    use sluice_net::messages::alter_partition_reassignments_request as reassign;
    let Some((name, index, _)) = random_partition(c, rng) else {
        return;
    };
    let replicas = (rng.below(4) != 0).then(|| {
        let mut brokers: Vec<i32> = Vec::new();
        for _ in 0..=rng.below(3) {
            let b = rng.below(5) as i32 + 1;
            if !brokers.contains(&b) || rng.below(10) == 0 {
                brokers.push(b);
            }
        }
        brokers.into_iter().map(Into::into).collect()
    });
    let req = AlterPartitionReassignmentsRequest {
        allow_replication_factor_change: rng.below(4) != 0,
        topics: vec![reassign::ReassignableTopic {
            name: name.into(),
            partitions: vec![reassign::ReassignablePartition {
                partition_index: index,
                replicas,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    run!(c, alter_partition_reassignments(&req));
}

/// A random led partition's leader adds one of its live replicas outside the ISR (a follower
/// caught up, the leader's log recovered; AlterPartition v3 with the registered broker epochs).
fn random_isr_expansion(c: &mut Cluster, rng: &mut Rng) {
    use sluice_net::messages::AlterPartitionRequest;
    use sluice_net::messages::alter_partition_request::{BrokerState, PartitionData, TopicData};
    let image = &c.committed;
    let live = |b: &i32| {
        image
            .broker(*b)
            .is_some_and(|b| !b.fenced && !b.in_controlled_shutdown)
    };
    let mut candidates = Vec::new();
    for t in image.topics().values() {
        for (&index, p) in t.partitions.iter().filter(|(_, p)| p.leader >= 0) {
            let outside = p.replicas.iter().filter(|r| !p.isr.contains(r) && live(r));
            candidates.extend(outside.map(|&r| (t.id, index, p, r)));
        }
    }
    let Some(&(topic_id, index, p, joining)) =
        candidates.get(rng.below(candidates.len().max(1) as u64) as usize)
    else {
        return;
    };
    let epoch = |b: i32| image.broker(b).map_or(-1, |b| b.epoch);
    let member = |&b: &i32| BrokerState {
        broker_id: b.into(),
        broker_epoch: epoch(b),
        ..Default::default()
    };
    let isr: Vec<i32> = p.isr.iter().copied().chain([joining]).collect();
    let req = AlterPartitionRequest {
        broker_id: p.leader.into(),
        broker_epoch: epoch(p.leader),
        topics: vec![TopicData {
            topic_id,
            partitions: vec![PartitionData {
                partition_index: index,
                leader_epoch: p.leader_epoch,
                partition_epoch: p.partition_epoch,
                new_isr_with_epochs: isr.iter().map(member).collect(),
                leader_recovery_state: 0,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let reply = run!(c, alter_partition(3, &req));
    let code = reply.topics[0].partitions[0].error_code;
    let new_leader = ErrorCode::NEW_LEADER_ELECTED.code();
    assert!(code == 0 || code == new_leader, "{reply:?}");
}

fn check_invariants(c: &Cluster, seed: u64) {
    for t in c.committed.topics().values() {
        for p in t.partitions.values() {
            let mut unique = p.replicas.clone();
            unique.sort_unstable();
            unique.dedup();
            assert_eq!(unique.len(), p.replicas.len(), "seed {seed}: {p:?}");
            assert_eq!(p.directories.len(), p.replicas.len(), "seed {seed}: {p:?}");
            let all_replicas = |v: &[i32]| v.iter().all(|r| p.replicas.contains(r));
            assert!(all_replicas(&p.isr), "seed {seed}: {p:?}");
            assert!(all_replicas(&p.adding_replicas), "seed {seed}: {p:?}");
            assert!(all_replicas(&p.removing_replicas), "seed {seed}: {p:?}");
            if p.leader == -1 {
                continue;
            }
            assert!(p.replicas.contains(&p.leader), "seed {seed}: {p:?}");
            assert!(p.isr.contains(&p.leader), "seed {seed}: {p:?}");
            let b = c.committed.broker(p.leader).unwrap();
            assert!(!b.fenced, "seed {seed}: fenced leader {p:?}");
        }
    }
}

/// A snapshot of the committed image (its records, as the snapshot's batches) rebuilds it
/// exactly after random operations, except each broker's `registered_offset` (the snapshot's
/// last offset, see `image::records`) and the image's offset and epoch (the snapshot id's).
#[test]
fn snapshot_records_rebuild_the_image() {
    for seed in 0..20u64 {
        let mut rng = Rng::new(seed);
        let mut c = Cluster::new(seed);
        let mut epochs: BTreeMap<i32, i64> = BTreeMap::new();
        let mut now = 0;
        let mut with_partitions = 0;
        for step in 0..200 {
            now += rng.below(2_000);
            random_step(&mut c, &mut rng, &mut epochs, now, step);
            if step % 50 == 49 {
                check_snapshot(&c.committed, c.log.len() as i64, seed);
                let mut topics = c.committed.topics().values();
                with_partitions += usize::from(topics.any(|t| !t.partitions.is_empty()));
            }
        }
        assert!(
            with_partitions >= 2,
            "seed {seed}: too few partitions checked"
        );
    }
}

fn check_snapshot(image: &MetadataImage, end: i64, seed: u64) {
    let id = sluice_quorum::OffsetAndEpoch {
        offset: sluice_quorum::Offset(end),
        epoch: sluice_quorum::Epoch(3),
    };
    let data = crate::snapshot::encode_snapshot(image, id, 1_000);
    let snapshot = sluice_quorum::Snapshot { id, data };
    let loaded = crate::snapshot::load_image(&snapshot).unwrap();
    assert_eq!(
        (loaded.offset(), loaded.epoch()),
        (end - 1, 3),
        "seed {seed}"
    );
    assert_eq!(loaded.features(), image.features(), "seed {seed}");
    assert_eq!(loaded.topics(), image.topics(), "seed {seed}");
    assert_eq!(loaded.configs(), image.configs(), "seed {seed}");
    assert_eq!(
        loaded.next_producer_id(),
        image.next_producer_id(),
        "seed {seed}"
    );
    assert_eq!(loaded.brokers().len(), image.brokers().len(), "seed {seed}");
    for (id, broker) in image.brokers() {
        let mut expected = broker.as_ref().clone();
        expected.registered_offset = end - 1;
        assert_eq!(loaded.broker(*id), Some(&expected), "seed {seed}");
    }
}

/// A forwarded IncrementalAlterConfigs on a topic: SET and DELETE become ConfigRecords the
/// image applies; validate-only writes nothing; an unknown topic and a non-topic resource are
/// refused per resource.
#[test]
fn topic_config_changes_become_config_records() {
    use sluice_net::messages::IncrementalAlterConfigsRequest;
    use sluice_net::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig,
    };
    let mut c = Cluster::new(1);
    c.live_brokers(0, &[1]);
    assert_eq!(c.create("t", 1, 1).0, 0);
    let op = |name: &str, operation: i8, value: Option<&str>| AlterableConfig {
        name: name.into(),
        config_operation: operation,
        value: value.map(Into::into),
        ..Default::default()
    };
    let resource = |kind: i8, name: &str, configs: Vec<AlterableConfig>| AlterConfigsResource {
        resource_type: kind,
        resource_name: name.into(),
        configs,
        ..Default::default()
    };
    let request = |validate_only: bool, resources| IncrementalAlterConfigsRequest {
        resources,
        validate_only,
        ..Default::default()
    };
    let value = |c: &Cluster, key: &str| c.committed.config(2, "t", key).map(str::to_owned);
    let set = vec![resource(2, "t", vec![op("retention.ms", 0, Some("1000"))])];
    let before = c.log.len();
    let r = run!(c, incremental_alter_configs(&request(true, set.clone())));
    assert_eq!(r.responses[0].error_code, 0);
    assert_eq!(c.log.len(), before, "validate-only writes nothing");
    run!(c, incremental_alter_configs(&request(false, set)));
    assert_eq!(value(&c, "retention.ms").as_deref(), Some("1000"));
    let delete = vec![resource(2, "t", vec![op("retention.ms", 1, None)])];
    run!(c, incremental_alter_configs(&request(false, delete)));
    assert_eq!(value(&c, "retention.ms"), None);
    let refused = vec![
        resource(2, "missing", vec![op("retention.ms", 0, Some("1"))]),
        resource(4, "", vec![op("log.retention.ms", 0, Some("1"))]),
    ];
    let r = run!(c, incremental_alter_configs(&request(false, refused)));
    let codes: Vec<i16> = r.responses.iter().map(|x| x.error_code).collect();
    assert_eq!(codes, vec![3, 42]);
}

mod alter_partition;
mod elect_leaders;
mod reassignments;
