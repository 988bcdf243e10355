//! Three real `sluice` processes form a KRaft controller quorum on loopback (issue 20): one
//! leader, found and described over Kafka's own DescribeQuorum and DescribeCluster on the
//! controller listeners; kill -9 of the leader elects another in a later epoch; the killed node
//! restarts from its `__cluster_metadata-0` files and catches up as a follower. The first
//! active controller writes Kafka's bootstrap records.
//!
//! Brokers register and heartbeat: each node's metadata log (read from its Kafka-format
//! segment) shows every broker registered and unfenced; kill -9 of a broker fences it within
//! its session timeout; restarted, it registers a new incarnation and is unfenced again. The
//! image those records build reaches every data core, and producer ids come from the
//! controller in blocks.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use sluice_net::client::Client;
use sluice_net::error_code::code;
use sluice_net::messages::MetadataRecord;
use sluice_net::messages::{
    DescribeClusterRequest, DescribeQuorumRequest, InitProducerIdRequest,
    describe_quorum_request as dq,
};
use sluice_net::metadata_record::VersionedRecord;
use sluice_net::record_batch::Batches;
use sluice_net::{Request, Response};
use sluice_tests::cluster::{
    COMBINED, NodeArgs, Voters, addr_of, node_dir, placements, produce_request,
    start_cluster_with_voters, start_node, start_voters,
};
use sluice_tests::{
    Broker, create_topic, free_port, http_get, metadata_of, metric_samples, partition_count,
    wait_for, wait_for_state,
};

/// What a leader reports: its id, epoch, high watermark and each voter's and observer's log
/// end.
#[derive(Debug, Clone, PartialEq)]
struct Quorum {
    leader: i32,
    epoch: i32,
    high_watermark: i64,
    voters: Vec<(i32, i64)>,
    observers: Vec<(i32, i64)>,
}

/// DescribeQuorum to one controller: `Some` from the leader, `None` from a non-leader (which
/// answers NOT_LEADER_OR_FOLLOWER on the partition, as Kafka does) or a node that does not
/// answer.
fn describe(controller: SocketAddr) -> Option<Quorum> {
    let mut client =
        Client::connect(&controller.to_string(), "test", Duration::from_secs(2)).ok()?;
    let request = Request::DescribeQuorum(DescribeQuorumRequest {
        topics: vec![dq::TopicData {
            topic_name: "__cluster_metadata".into(),
            partitions: vec![dq::PartitionData {
                partition_index: 0,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    });
    let (_, Response::DescribeQuorum(r)) = client.call(2, &request).ok()? else {
        return None;
    };
    assert_eq!(r.error_code, code::NONE, "{r:?}");
    let p = &r.topics[0].partitions[0];
    if p.error_code == code::NOT_LEADER_OR_FOLLOWER {
        return None;
    }
    assert_eq!(p.error_code, code::NONE, "{r:?}");
    Some(Quorum {
        leader: p.leader_id.0,
        epoch: p.leader_epoch,
        high_watermark: p.high_watermark,
        voters: p
            .current_voters
            .iter()
            .map(|v| (v.replica_id.0, v.log_end_offset))
            .collect(),
        observers: p
            .observers
            .iter()
            .map(|v| (v.replica_id.0, v.log_end_offset))
            .collect(),
    })
}

/// The active controller a node names in DescribeCluster (controller endpoints, KIP-919).
fn named_controller(controller: SocketAddr) -> Option<i32> {
    let mut client =
        Client::connect(&controller.to_string(), "test", Duration::from_secs(2)).ok()?;
    let request = Request::DescribeCluster(DescribeClusterRequest {
        endpoint_type: 2,
        ..Default::default()
    });
    let (_, Response::DescribeCluster(r)) = client.call(2, &request).ok()? else {
        return None;
    };
    assert_eq!(r.brokers.len(), 3, "every voter listed: {r:?}");
    (r.controller_id.0 >= 0).then_some(r.controller_id.0)
}

/// The one leader among `controllers` (every other answers NOT_LEADER_OR_FOLLOWER), with all
/// voters caught up to its high watermark.
fn settled_leader(controllers: &[(i32, SocketAddr)], alive: &[i32]) -> Quorum {
    let leaders = wait_for_state(
        Duration::from_secs(20),
        "one caught-up leader (the leaders' DescribeQuorum)",
        || -> Vec<Quorum> {
            controllers
                .iter()
                .filter(|(id, _)| alive.contains(id))
                .filter_map(|(_, addr)| describe(*addr))
                .collect()
        },
        |leaders| match leaders.as_slice() {
            [q] => q
                .voters
                .iter()
                .filter(|(id, _)| alive.contains(id))
                .all(|(_, end)| *end == q.high_watermark && *end > 0),
            _ => false,
        },
    );
    leaders[0].clone()
}

/// Three combined nodes (broker and controller), every broker registered and unfenced: the
/// voters' controller listeners and the nodes.
fn start_cluster(tmp: &Path) -> (Vec<(i32, SocketAddr)>, Vec<Broker>) {
    let (nodes, voters) = start_cluster_with_voters(tmp, 3, &[]);
    (voters.listeners().to_vec(), nodes)
}

/// `--process-roles controller` on three nodes and `broker` on a fourth: the broker's replica
/// is an observer of the metadata log (listed by DescribeQuorum, never a voter), and it
/// registers and is unfenced like any broker.
#[test]
fn controller_only_voters_and_a_broker_only_observer() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let voters = Voters::new(3);
    let controllers = voters.listeners();
    let _nodes = start_voters(tmp.path(), &voters, |_| NodeArgs::new("controller"));
    let _broker = start_node(tmp.path(), 4, &voters, &NodeArgs::new("broker"));
    let leader = settled_leader(controllers, &[1, 2, 3]);
    let with_observer = wait_for(Duration::from_secs(15), "the observer caught up", || {
        describe(controllers[(leader.leader - 1) as usize].1)
            .filter(|q| q.observers.len() == 1 && q.observers[0] == (4, q.high_watermark))
    });
    assert_eq!(with_observer.voters.len(), 3, "{with_observer:?}");
    let log_dir = tmp.path().join(format!("node-{}", leader.leader));
    wait_for_state(
        Duration::from_secs(15),
        "broker 4 unfenced (registrations, fenced)",
        || broker_states(&metadata_records(&log_dir)),
        |s| s.len() == 1 && s.get(&4) == Some(&(1, false)),
    );
}

/// The metadata records in a node's log so far (a live segment: reading stops at a batch
/// still being written).
fn metadata_records(node_dir: &Path) -> Vec<MetadataRecord> {
    let segment = node_dir.join("__cluster_metadata-0/00000000000000000000.log");
    let Ok(bytes) = std::fs::read(&segment) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for batch in Batches::new(bytes::Bytes::from(bytes)) {
        let Ok(batch) = batch else { break };
        let Ok(payloads) = sluice_controller::batch::batch_payloads(&batch) else {
            break;
        };
        for payload in payloads {
            if let sluice_quorum::Payload::Data(value) = payload {
                let record = VersionedRecord::decode(bytes::Bytes::from(value)).expect("record");
                out.push(record.record);
            }
        }
    }
    out
}

/// Per broker: (registrations seen, fenced now), from the log.
fn broker_states(records: &[MetadataRecord]) -> BTreeMap<i32, (usize, bool)> {
    let mut out = BTreeMap::new();
    for record in records {
        match record {
            MetadataRecord::RegisterBroker(r) => {
                let e = out.entry(r.broker_id.0).or_insert((0, true));
                *e = (e.0 + 1, r.fenced);
            }
            MetadataRecord::BrokerRegistrationChange(r) if r.fenced != 0 => {
                let e = out.entry(r.broker_id.0).or_insert((0, true));
                e.1 = r.fenced == 1;
            }
            _ => {}
        }
    }
    out
}

/// Every core of a node gets the metadata image the controller shard builds: each core's
/// `sluice_metadata_end` reaches the quorum's high watermark, and follows it when brokers
/// register.
#[test]
fn the_metadata_image_reaches_every_core() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let voters = Voters::new(3);
    let controllers = voters.listeners();
    // Node 1 on two cores, with `/metrics`.
    let _nodes = start_voters(tmp.path(), &voters, |id| NodeArgs {
        cores: if id == 1 { 2 } else { 1 },
        metrics_port: (id == 1).then_some(port),
        ..NodeArgs::new(COMBINED)
    });
    let leader = settled_leader(controllers, &[1, 2, 3]);
    let log_dir = tmp.path().join(format!("node-{}", leader.leader));
    wait_for(Duration::from_secs(15), "three unfenced brokers", || {
        let s = broker_states(&metadata_records(&log_dir));
        (s.len() == 3 && s.values().all(|&(_, fenced)| !fenced)).then_some(())
    });
    let settled = settled_leader(controllers, &[1, 2, 3]);
    wait_for(
        Duration::from_secs(10),
        "every core at the high watermark",
        || {
            let (_, body) = http_get(port, "/metrics");
            let ends: Vec<f64> = metric_samples(&body)
                .into_iter()
                .filter(|(name, _, _)| name == "sluice_metadata_end")
                .map(|(_, _, v)| v)
                .collect();
            (ends.len() == 2 && ends.iter().all(|&e| e >= settled.high_watermark as f64))
                .then_some(())
        },
    );
}

/// A fresh producer id from one broker.
fn init_producer_id(broker: &Broker) -> i64 {
    let mut client = Client::connect(&broker.bootstrap(), "test", Duration::from_secs(5))
        .expect("connect to the broker");
    let request = Request::InitProducerId(InitProducerIdRequest {
        transactional_id: None,
        transaction_timeout_ms: 60_000,
        ..Default::default()
    });
    let (_, Response::InitProducerId(r)) = client.call(4, &request).expect("InitProducerId") else {
        panic!("not an InitProducerId answer");
    };
    assert_eq!(r.error_code, code::NONE, "{r:?}");
    r.producer_id.into()
}

/// Producer ids come from the active controller in blocks of 1,000 (AllocateProducerIds): each
/// broker gets its own block, recorded in the metadata log, so no two brokers hand out the
/// same id, and a broker's ids follow one another within its block.
#[test]
fn producer_id_blocks_come_from_the_controller() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (controllers, nodes) = start_cluster(tmp.path());
    let leader = settled_leader(&controllers, &[1, 2, 3]);
    let log_dir = tmp.path().join(format!("node-{}", leader.leader));
    wait_for(Duration::from_secs(15), "three unfenced brokers", || {
        let s = broker_states(&metadata_records(&log_dir));
        (s.len() == 3 && s.values().all(|&(_, fenced)| !fenced)).then_some(())
    });
    let mut firsts = Vec::new();
    for node in &nodes {
        let first = init_producer_id(node);
        assert_eq!(
            init_producer_id(node),
            first + 1,
            "the next id of the same block"
        );
        firsts.push(first / 1000);
    }
    firsts.sort_unstable();
    firsts.dedup();
    assert_eq!(firsts.len(), 3, "three different blocks: {firsts:?}");
    let blocks = metadata_records(&log_dir)
        .into_iter()
        .filter(|r| matches!(r, MetadataRecord::ProducerIds(_)))
        .count();
    assert_eq!(blocks, 3, "one ProducerIdsRecord per block");
}

#[test]
fn brokers_register_are_fenced_when_killed_and_come_back() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (controllers, mut nodes) = start_cluster(tmp.path());
    let first = settled_leader(&controllers, &[1, 2, 3]);
    let victim = if first.leader == 3 { 2 } else { 3 };
    let log_dir = tmp.path().join(format!("node-{}", first.leader));
    let states = || broker_states(&metadata_records(&log_dir));
    wait_for_state(
        Duration::from_secs(15),
        "three unfenced brokers (registrations, fenced)",
        states,
        |s| s.len() == 3 && s.values().all(|&(n, fenced)| n == 1 && !fenced),
    );

    let killed_at = Instant::now();
    nodes[(victim - 1) as usize].kill();
    wait_for(Duration::from_secs(10), "the killed broker fenced", || {
        states().get(&victim).is_some_and(|s| s.1).then_some(())
    });
    let fenced_after = killed_at.elapsed();
    eprintln!("broker {victim} fenced {fenced_after:?} after kill -9 (session timeout 3 s)");
    assert!(fenced_after < Duration::from_secs(6), "{fenced_after:?}");
    assert!(
        states()
            .iter()
            .filter(|(id, _)| **id != victim)
            .all(|(_, s)| !s.1)
    );

    nodes[(victim - 1) as usize].restart_after_kill();
    wait_for(
        Duration::from_secs(15),
        "the restarted broker unfenced",
        || {
            let s = states();
            s.get(&victim)
                .is_some_and(|&(n, fenced)| n == 2 && !fenced)
                .then_some(())
        },
    );
}

#[test]
fn three_nodes_elect_fail_over_and_rejoin() {
    let ids = [1, 2, 3];
    let tmp = tempfile::tempdir().expect("tempdir");
    let (controllers, mut nodes) = start_cluster(tmp.path());

    let first = settled_leader(&controllers, &ids);
    assert_eq!(first.voters.len(), 3, "{first:?}");
    assert!(first.epoch >= 1);
    // The leader change, then Kafka 4.4's nine bootstrap records (metadata.version and the
    // other features, the cluster's min.insync.replicas, in a metadata transaction).
    let first = wait_for(Duration::from_secs(10), "the bootstrap records", || {
        describe(controllers[(first.leader - 1) as usize].1).filter(|q| q.high_watermark >= 10)
    });
    for (_, addr) in &controllers {
        let named = wait_for(Duration::from_secs(10), "a named controller", || {
            named_controller(*addr)
        });
        assert_eq!(named, first.leader, "every node names the leader");
    }

    // kill -9 the leader: a CreateTopics sent at once to a surviving broker succeeds (the
    // broker forwards it to whichever controller the quorum elects), and another leader is
    // elected in a later epoch.
    let killed = first.leader;
    nodes[(killed - 1) as usize].kill();
    let alive: Vec<i32> = ids.iter().copied().filter(|&id| id != killed).collect();
    let survivor = &nodes[(alive[0] - 1) as usize];
    let started = Instant::now();
    assert_eq!(
        create_topic(&survivor.bootstrap(), "after-failover", 3),
        code::NONE
    );
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "CreateTopics took {took:?}");
    // The broker asked has it at once; the other when the metadata log reaches it.
    let asked = survivor.bootstrap();
    assert_eq!(partition_count(&asked, "after-failover"), Some(3));
    for id in &alive {
        let b = nodes[(*id - 1) as usize].bootstrap();
        wait_for(Duration::from_secs(10), "every survivor routes it", || {
            (partition_count(&b, "after-failover") == Some(3)).then_some(())
        });
    }
    let second = settled_leader(&controllers, &alive);
    assert_ne!(second.leader, killed);
    assert!(second.epoch > first.epoch, "{first:?} then {second:?}");
    assert!(
        second.high_watermark > first.high_watermark,
        "a new leader's entry committed"
    );

    // The killed node restarts from its files and catches up as a follower.
    nodes[(killed - 1) as usize].restart_after_kill();
    let third = settled_leader(&controllers, &ids);
    assert!(third.epoch >= second.epoch);
    assert!(
        third
            .voters
            .iter()
            .all(|(_, end)| *end == third.high_watermark)
    );
    let quorum_state = tmp
        .path()
        .join(format!("node-{killed}"))
        .join("__cluster_metadata-0/quorum-state");
    let text = std::fs::read_to_string(&quorum_state).expect("quorum-state file");
    assert!(text.contains("\"leaderEpoch\""), "Kafka's layout: {text}");
}

/// A Produce or Fetch sent to a broker that does not lead the partition gets
/// NOT_LEADER_OR_FOLLOWER with the current leader and its epoch, and the leader's endpoint
/// (KIP-951: Produce v10+, Fetch v12+ and v16+ for endpoints); the leader itself accepts it.
#[test]
fn a_broker_that_does_not_lead_names_the_leader() {
    use sluice_tests::fetch_at;
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_controllers, nodes) = start_cluster(tmp.path());
    assert_eq!(create_topic(&nodes[0].bootstrap(), "led", 3), code::NONE);
    // Another broker learns of the topic when the metadata log reaches it.
    let placed = wait_for(Duration::from_secs(10), "broker 2 knows the topic", || {
        let placed = placements(&nodes[1].bootstrap(), "led");
        (placed.len() == 3).then_some(placed)
    });
    let (leader, epoch) = (placed[&0].leader, placed[&0].epoch);
    let leader_port = i32::from(nodes[(leader - 1) as usize].addr.port());
    let other = addr_of(&nodes, if leader == 1 { 2 } else { 1 });
    let produce = produce_request("led", 0, (-1, 5000), &[b"x"]);
    let mut client = Client::connect(&other, "test", Duration::from_secs(5)).expect("connect");
    let Ok((_, Response::Produce(r))) = client.call(11, &produce) else {
        panic!("no Produce answer");
    };
    let p = &r.responses[0].partition_responses[0];
    assert_eq!(p.error_code, code::NOT_LEADER_OR_FOLLOWER, "{r:?}");
    assert_eq!(
        (p.current_leader.leader_id.0, p.current_leader.leader_epoch),
        (leader, epoch)
    );
    assert_eq!(r.node_endpoints.len(), 1, "{r:?}");
    assert_eq!(r.node_endpoints[0].port, leader_port);
    let Some(f) = fetch_at(&mut client, "led", 0, 0) else {
        panic!("no Fetch answer");
    };
    let fp = &f.responses[0].partitions[0];
    assert_eq!(fp.error_code, code::NOT_LEADER_OR_FOLLOWER, "{f:?}");
    assert_eq!(
        (
            fp.current_leader.leader_id.0,
            fp.current_leader.leader_epoch
        ),
        (leader, epoch)
    );
    let leader_addr = addr_of(&nodes, leader);
    let mut at_leader = Client::connect(&leader_addr, "test", Duration::from_secs(5)).expect("c");
    // The leader accepts it once the topic has reached its own image.
    wait_for(
        Duration::from_secs(10),
        "the leader to accept the produce",
        || {
            let Ok((_, Response::Produce(r))) = at_leader.call(11, &produce) else {
                panic!("no Produce answer from the leader");
            };
            (r.responses[0].partition_responses[0].error_code == code::NONE).then_some(())
        },
    );
}

/// A data dir a single-node broker wrote joins a cluster unchanged: started as the only voter
/// of a quorum of one, the node bootstraps the metadata log and its topics become the first
/// metadata records (same topic ids), placed on it; it leads them again once unfenced, and
/// the records it held are still there (the next append continues their offsets).
#[test]
fn a_single_node_data_dir_becomes_the_first_topics_of_a_cluster() {
    use sluice_net::record_batch::build::{BatchSpec, batch};
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = node_dir(tmp.path(), 1);
    let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let mut alone = Broker::start_in(&dir, any, &["--cores", "1"]);
    assert_eq!(create_topic(&alone.bootstrap(), "kept", 2), code::NONE);
    let id_before = metadata_of(&alone.bootstrap(), "kept")
        .expect("metadata")
        .topics[0]
        .topic_id;
    let mut conn = sluice_tests::RawConn::connect(alone.bootstrap().parse().expect("addr"));
    let record = || batch(&BatchSpec::default(), &[(None, Some(b"v".as_slice()))]);
    for expected in 0..3 {
        assert_eq!(
            sluice_tests::produce(&mut conn, "kept", record()),
            (0, expected)
        );
    }
    drop(conn);
    assert!(alone.stop().success());

    let node = start_node(tmp.path(), 1, &Voters::new(1), &NodeArgs::new(COMBINED));
    let topic = wait_for(Duration::from_secs(20), "the imported topic led", || {
        let r = metadata_of(&node.bootstrap(), "kept")?;
        let t = r.topics.first()?.clone();
        (t.error_code == code::NONE && t.partitions.iter().all(|p| p.leader_id.0 == 1)).then_some(t)
    });
    assert_eq!(topic.topic_id, id_before, "the topic keeps its id");
    assert_eq!(topic.partitions.len(), 2);
    let mut conn = sluice_tests::RawConn::connect(node.bootstrap().parse().expect("addr"));
    assert_eq!(sluice_tests::produce(&mut conn, "kept", record()), (0, 3));
}

/// One partition as the log has it so far: topic id, replicas, leader, leader epoch, partition
/// epoch and ISR (its `PartitionRecord`, then each `PartitionChangeRecord` applied).
#[derive(Debug, Clone, PartialEq)]
struct PartitionState {
    topic_id: sluice_net::Uuid,
    replicas: Vec<i32>,
    leader: i32,
    leader_epoch: i32,
    partition_epoch: i32,
    isr: Vec<i32>,
}

fn partition_state(records: &[MetadataRecord], topic: &str) -> Option<PartitionState> {
    partition_states(records, topic).pop()
}

/// Every state partition 0 of `topic` had in the log, oldest first.
fn partition_states(records: &[MetadataRecord], topic: &str) -> Vec<PartitionState> {
    let ids = |v: &[sluice_net::BrokerId]| v.iter().map(|b| b.0).collect::<Vec<i32>>();
    let topic_id = records.iter().find_map(|r| match r {
        MetadataRecord::Topic(t) if t.name.as_str() == topic => Some(t.topic_id),
        _ => None,
    });
    let Some(topic_id) = topic_id else {
        return Vec::new();
    };
    let mut states: Vec<PartitionState> = Vec::new();
    for record in records {
        match record {
            MetadataRecord::Partition(p) if p.topic_id == topic_id && p.partition_id == 0 => {
                states.push(PartitionState {
                    topic_id,
                    replicas: ids(&p.replicas),
                    leader: p.leader.0,
                    leader_epoch: p.leader_epoch,
                    partition_epoch: p.partition_epoch,
                    isr: p.isr.clone(),
                });
            }
            MetadataRecord::PartitionChange(c) if c.topic_id == topic_id => {
                let Some(mut s) = states.last().cloned() else {
                    continue;
                };
                if let Some(isr) = &c.isr {
                    s.isr = ids(isr);
                }
                if c.leader.0 != -2 {
                    s.leader = c.leader.0;
                    s.leader_epoch += 1;
                }
                s.partition_epoch += 1;
                states.push(s);
            }
            _ => {}
        }
    }
    states
}

/// Each broker's epoch (the offset of its latest registration), from the log.
fn broker_epochs(records: &[MetadataRecord]) -> BTreeMap<i32, i64> {
    let registrations = records.iter().filter_map(|r| match r {
        MetadataRecord::RegisterBroker(b) => Some((b.broker_id.0, b.broker_epoch)),
        _ => None,
    });
    registrations.collect()
}

/// AlterPartition, a partition leader's ISR change (KIP-497, broker epochs of KIP-903), on the
/// controller listener: a controller that is not the active one answers NOT_CONTROLLER; the
/// active one answers once its PartitionChangeRecord is committed, with the new ISR and the
/// partition epoch bumped, and the record is in the log.
#[test]
fn alter_partition_is_decided_by_the_active_controller() {
    use sluice_net::messages::alter_partition_request as ap;
    use sluice_net::messages::{
        AlterPartitionRequest, CreateTopicsRequest, create_topics_request::CreatableTopic,
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let (controllers, nodes) = start_cluster(tmp.path());
    let quorum = settled_leader(&controllers, &[1, 2, 3]);
    let log_dir = tmp.path().join(format!("node-{}", quorum.leader));
    wait_for(Duration::from_secs(15), "three unfenced brokers", || {
        let s = broker_states(&metadata_records(&log_dir));
        (s.len() == 3 && s.values().all(|&(_, fenced)| !fenced)).then_some(())
    });
    let mut client = Client::connect(&nodes[0].bootstrap(), "test", Duration::from_secs(5))
        .expect("connect to a broker");
    let create = Request::CreateTopics(CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: "isr".into(),
            num_partitions: 1,
            replication_factor: 3,
            ..Default::default()
        }],
        timeout_ms: 30_000,
        ..Default::default()
    });
    let (_, answer) = client.call(7, &create).expect("CreateTopics");
    assert!(matches!(&answer, Response::CreateTopics(r) if r.topics[0].error_code == 0));
    let before = wait_for(Duration::from_secs(15), "the partition in the log", || {
        partition_state(&metadata_records(&log_dir), "isr").filter(|p| p.leader >= 0)
    });
    let epochs = broker_epochs(&metadata_records(&log_dir));
    let follower = before
        .replicas
        .iter()
        .copied()
        .find(|&r| r != before.leader);
    let follower = follower.expect("three replicas");
    let member = |b: i32| ap::BrokerState {
        broker_id: b.into(),
        broker_epoch: epochs[&b],
        ..Default::default()
    };
    let request = Request::AlterPartition(AlterPartitionRequest {
        broker_id: before.leader.into(),
        broker_epoch: epochs[&before.leader],
        topics: vec![ap::TopicData {
            topic_id: before.topic_id,
            partitions: vec![ap::PartitionData {
                partition_index: 0,
                leader_epoch: before.leader_epoch,
                partition_epoch: before.partition_epoch,
                new_isr_with_epochs: vec![member(before.leader), member(follower)],
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    });
    let call = |addr: SocketAddr| {
        let mut c = Client::connect(&addr.to_string(), "test", Duration::from_secs(5)).ok()?;
        match c.call(3, &request).ok()? {
            (_, Response::AlterPartition(r)) => Some(r),
            other => panic!("not an AlterPartition answer: {other:?}"),
        }
    };
    let (_, other) = *controllers
        .iter()
        .find(|(id, _)| *id != quorum.leader)
        .expect("3");
    let refused = call(other).expect("an answer");
    assert_eq!(refused.error_code, code::NOT_CONTROLLER, "{refused:?}");
    let active = controllers
        .iter()
        .find(|(id, _)| *id == quorum.leader)
        .expect("leader");
    let r = wait_for(
        Duration::from_secs(10),
        "the active controller's answer",
        || call(active.1).filter(|r| r.error_code != code::NOT_CONTROLLER),
    );
    assert_eq!(r.error_code, code::NONE, "{r:?}");
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, code::NONE, "{r:?}");
    let isr: Vec<i32> = p.isr.iter().map(|b| b.0).collect();
    assert_eq!(isr, vec![before.leader, follower]);
    assert_eq!(
        (p.leader_id.0, p.leader_epoch, p.partition_epoch),
        (
            before.leader,
            before.leader_epoch,
            before.partition_epoch + 1
        )
    );
    // The leader itself adds the dropped replica back once it fetches: the state this
    // change made is the one at the next partition epoch, not necessarily the last. The
    // answer came once a majority held the record; the active controller's own file may
    // show it a moment later.
    let after = wait_for(Duration::from_secs(10), "the change in the log", || {
        let states = partition_states(&metadata_records(&log_dir), "isr");
        states
            .into_iter()
            .find(|s| s.partition_epoch == before.partition_epoch + 1)
    });
    assert_eq!(after.isr, isr);
}
