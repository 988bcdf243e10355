//! ISR replication (issue 21) end to end on real `sluice` processes: topics with replication
//! factor 3 and `min.insync.replicas=2` on clusters of combined broker and controller nodes.
//!
//! - followers end up with the leader's log byte for byte (the logical content of the `.log`
//!   segments in each node's data dir, offsets and leader epochs included);
//! - an acks=all record acknowledged before or after kill -9 of the leader is read back once, at
//!   its acknowledged offset, from the leader elected out of the ISR; the killed node restarts,
//!   truncates what it held beyond the new leader's log and catches up to the same bytes;
//! - the high watermark waits for every ISR member: with a follower stopped (SIGSTOP) but still
//!   in the ISR an acks=all produce times out and the high watermark stays put; once the
//!   controller fences it the ISR of two (>= min.insync.replicas) answers acks=all again; with
//!   the leader alone in the ISR acks=all is refused with NOT_ENOUGH_REPLICAS;
//! - SIGTERM of a leader is a controlled shutdown: its leadership moves to another in-sync
//!   replica and it leaves the ISR while it still runs, producers see at most
//!   NOT_LEADER_OR_FOLLOWER, nothing acknowledged is lost, and it rejoins after a restart;
//! - the preferred replica leads again after it is back in the ISR: on ElectLeaders, and on its
//!   own with the automatic leader rebalance;
//! - a reassignment moves a replica to a broker added later, which catches up; the old broker
//!   deletes its copy;
//! - `unclean.leader.election.enable`: with every in-sync replica gone, a returning
//!   out-of-sync replica leads a topic that allows it; one that does not stays leaderless;
//! - a replica that fell below the leader's log start (DeleteRecords while it was down) starts
//!   over at the leader's log start;
//! - a follower killed while acks=all producers write, and its active segments then torn at the
//!   tail as a crash can leave them (cut mid-batch, a last sector of zeros or of garbage),
//!   restarts, cuts the torn batch, catches up from the leader and rejoins the ISR, while the
//!   other two replicas acknowledge throughout.
//!
//! Every process is started on free ports and stopped (SIGKILL, by its PID) when its `Broker`
//! drops; SIGSTOP and SIGCONT go to a PID too, never to a name.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_net::client::Client;
use sluice_net::error_code::code;
use sluice_net::messages::create_topics_request::{
    CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
};
use sluice_net::messages::{CreateTopicsRequest, ListOffsetsRequest, list_offsets_request};
use sluice_net::record_batch::Batches;
use sluice_net::{Request, Response};
use sluice_tests::cluster::{
    COMBINED, NodeArgs, Placement, Voters, addr_of, node_dir, placements, produce_request,
    start_cluster, start_cluster_with_voters, start_node, start_voters, wait_brokers,
};
use sluice_tests::{
    Broker, fetch_at, find_dir, metadata_of, replica_log, wait_for, wait_for_state,
};

/// Connect timeout of every client here; reads wait four times as long (`Client::connect`).
const CONNECT: Duration = Duration::from_secs(5);

/// CreateTopics of `topic` with `partitions`, replication factor 3 and min.insync.replicas=2.
fn create_replicated(broker: &str, topic: &str, partitions: i32) {
    create(
        broker,
        CreatableTopic {
            name: topic.into(),
            num_partitions: partitions,
            replication_factor: 3,
            ..Default::default()
        },
        &[],
    );
}

/// CreateTopics of `topic` with one partition per entry of `replicas` (its replicas, the first
/// one its leader), min.insync.replicas=2 and `configs`.
fn create_placed(broker: &str, topic: &str, replicas: &[[i32; 3]], configs: &[(&str, &str)]) {
    let assignments = (0..)
        .zip(replicas)
        .map(|(partition, ids)| CreatableReplicaAssignment {
            partition_index: partition,
            broker_ids: ids.iter().map(|&id| id.into()).collect(),
            ..Default::default()
        })
        .collect();
    let topic = CreatableTopic {
        name: topic.into(),
        num_partitions: -1,
        replication_factor: -1,
        assignments,
        ..Default::default()
    };
    create(broker, topic, configs);
}

/// CreateTopics of `topic` with `configs` and min.insync.replicas=2 unless they set it;
/// asserts success.
fn create(broker: &str, mut topic: CreatableTopic, configs: &[(&str, &str)]) {
    let own_min = configs
        .iter()
        .any(|(name, _)| *name == "min.insync.replicas");
    let default = [("min.insync.replicas", "2")];
    let configs = default[..usize::from(!own_min)].iter().chain(configs);
    topic.configs = configs
        .map(|&(name, value)| CreatableTopicConfig {
            name: name.into(),
            value: Some(value.into()),
            ..Default::default()
        })
        .collect();
    let mut client = Client::connect(broker, "test", CONNECT).expect("connect");
    let request = Request::CreateTopics(CreateTopicsRequest {
        topics: vec![topic],
        timeout_ms: 30_000,
        ..Default::default()
    });
    let Ok((_, Response::CreateTopics(r))) = client.call(7, &request) else {
        panic!("no CreateTopics answer");
    };
    assert_eq!(r.topics[0].error_code, code::NONE, "{r:?}");
}

/// Waits until every node of `live` shows the same `partitions` partitions of `topic`, each
/// with a leader and its three replicas all in the ISR; that view.
fn wait_in_sync(
    nodes: &[Broker],
    live: &[i32],
    topic: &str,
    partitions: usize,
) -> BTreeMap<i32, Placement> {
    let views = wait_for_state(
        Duration::from_secs(45),
        &format!("{topic}: a leader and the full ISR on every partition, as every live node sees"),
        || -> Vec<BTreeMap<i32, Placement>> {
            live.iter()
                .map(|&id| placements(&addr_of(nodes, id), topic))
                .collect()
        },
        |views| {
            views.iter().all(|v| v == &views[0])
                && views[0].len() == partitions
                && views[0]
                    .values()
                    .all(|p| p.leader > 0 && p.replicas.len() == 3 && p.isr == p.replicas)
        },
    );
    views[0].clone()
}

/// Produce of one batch holding `values` to `topic`-`partition` on `broker` with `acks` and
/// `timeout_ms`: the partition's (error code, base offset); `None` without an answer (the broker
/// is down or did not answer within the client's read timeout, 20 s).
fn produce(
    broker: &str,
    topic: &str,
    partition: i32,
    acks_timeout: (i16, i32),
    values: &[&[u8]],
) -> Option<(i16, i64)> {
    let request = produce_request(topic, partition, acks_timeout, values);
    let mut client = Client::connect(broker, "test", CONNECT).ok()?;
    let (_, Response::Produce(r)) = client.call(11, &request).ok()? else {
        panic!("not a Produce answer");
    };
    let p = &r.responses[0].partition_responses[0];
    Some((p.error_code, p.base_offset))
}

/// ListOffsets LATEST as a consumer (replica id -1, read uncommitted): the high watermark.
fn high_watermark(broker: &str, topic: &str, partition: i32) -> i64 {
    list_offset(broker, topic, partition, -1)
}

/// ListOffsets for `timestamp` (-1 latest, -2 earliest) as a consumer.
fn list_offset(broker: &str, topic: &str, partition: i32, timestamp: i64) -> i64 {
    let mut client = Client::connect(broker, "test", CONNECT).expect("connect");
    let request = Request::ListOffsets(ListOffsetsRequest {
        replica_id: sluice_net::BrokerId(-1),
        topics: vec![list_offsets_request::ListOffsetsTopic {
            name: topic.into(),
            partitions: vec![list_offsets_request::ListOffsetsPartition {
                partition_index: partition,
                timestamp,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    });
    let Ok((_, Response::ListOffsets(r))) = client.call(7, &request) else {
        panic!("no ListOffsets answer");
    };
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, code::NONE, "{r:?}");
    p.offset
}

/// Every record of `topic`-`partition` a consumer reads from `broker`, from offset 0 up to the
/// high watermark: (offset, value).
fn read_all(broker: &str, topic: &str, partition: i32) -> Vec<(i64, Vec<u8>)> {
    read_from(broker, topic, partition, 0)
}

/// [`read_all`] from offset `from`.
fn read_from(broker: &str, topic: &str, partition: i32, from: i64) -> Vec<(i64, Vec<u8>)> {
    let mut client = Client::connect(broker, "test", CONNECT).expect("connect");
    let mut out = Vec::new();
    let mut next = from;
    loop {
        let Some(f) = fetch_at(&mut client, topic, partition, next) else {
            panic!("no Fetch answer");
        };
        let p = &f.responses[0].partitions[0];
        assert_eq!(p.error_code, code::NONE, "fetch at {next}: {f:?}");
        let before = next;
        let records = p.records.as_ref().map(|r| r.to_bytes()).unwrap_or_default();
        for batch in Batches::new(records) {
            let Ok(batch) = batch else { break };
            for record in batch.records().expect("uncompressed") {
                let record = record.expect("a whole record");
                let offset = batch.base_offset() + i64::from(record.offset_delta);
                if offset >= next && offset < p.high_watermark {
                    out.push((offset, record.value.map(|v| v.to_vec()).unwrap_or_default()));
                    next = offset + 1;
                }
            }
        }
        if next >= p.high_watermark {
            return out;
        }
        assert!(next > before, "no progress reading at {next}: {p:?}");
    }
}

/// One replica's log as a probe saw it: (node, next offset, logical bytes, same bytes as the
/// leader's).
type ReplicaView = (i32, i64, usize, bool);

/// Waits (at most `within`) until, for each partition, every node of `replicas` holds exactly
/// the bytes of the leader's log and that log reaches at least `min_end`.
fn wait_replicas_equal(
    tmp: &Path,
    topic: &str,
    replicas: &BTreeMap<i32, (i32, Vec<i32>)>,
    min_end: i64,
    within: Duration,
) {
    wait_for_state(
        within,
        &format!(
            "{topic}: every replica's log byte-identical to its leader's, ending at {min_end} or \
             later (partition: (node, next offset, bytes, same as the leader's))"
        ),
        || -> BTreeMap<i32, Vec<ReplicaView>> {
            replicas
                .iter()
                .map(|(&partition, (leader, nodes))| {
                    let log =
                        |id: i32| replica_log(&tmp.join(format!("node-{id}")), topic, partition);
                    let (leader_bytes, _) = log(*leader);
                    let views = nodes
                        .iter()
                        .map(|&id| {
                            let (bytes, end) = log(id);
                            (id, end, bytes.len(), bytes == leader_bytes)
                        })
                        .collect();
                    (partition, views)
                })
                .collect()
        },
        |seen| {
            seen.values()
                .flatten()
                .all(|&(_, end, _, same)| same && end >= min_end)
        },
    );
}

/// Each partition's leader and all its replicas, for [`wait_replicas_equal`].
fn all_replicas(placements: &BTreeMap<i32, Placement>) -> BTreeMap<i32, (i32, Vec<i32>)> {
    placements
        .iter()
        .map(|(&p, pl)| (p, (pl.leader, pl.replicas.clone())))
        .collect()
}

/// N acks=all batches to each of several partitions: every follower's log ends up
/// byte-identical to its leader's (offsets, leader epochs, CRCs: the leader's batches as they
/// are, not re-encoded), and a consumer reads them all back from the leader.
#[test]
fn followers_hold_the_leaders_bytes() {
    const PARTITIONS: i32 = 4;
    const BATCHES: i64 = 5;
    const PER_BATCH: i64 = 3;
    let tmp = tempfile::tempdir().expect("tempdir");
    let nodes = start_cluster(tmp.path(), 3, &[]);
    create_replicated(&nodes[0].bootstrap(), "mirrored", PARTITIONS);
    let placed = wait_in_sync(&nodes, &[1, 2, 3], "mirrored", PARTITIONS as usize);
    for (&partition, p) in &placed {
        let leader = addr_of(&nodes, p.leader);
        for b in 0..BATCHES {
            let values: Vec<String> = (0..PER_BATCH)
                .map(|i| format!("p{partition}-b{b}-r{i}"))
                .collect();
            let values: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
            let answer = produce(&leader, "mirrored", partition, (-1, 10_000), &values);
            assert_eq!(
                answer,
                Some((code::NONE, b * PER_BATCH)),
                "partition {partition} {p:?}"
            );
        }
    }
    wait_replicas_equal(
        tmp.path(),
        "mirrored",
        &all_replicas(&placed),
        BATCHES * PER_BATCH,
        Duration::from_secs(30),
    );
    for (&partition, p) in &placed {
        let read = read_all(&addr_of(&nodes, p.leader), "mirrored", partition);
        assert_eq!(read.len() as i64, BATCHES * PER_BATCH, "{read:?}");
        assert_eq!(read[0].1, format!("p{partition}-b0-r0").into_bytes());
    }
}

/// What a producer thread ([`produce_until_stopped`]) shares with the test: what to write
/// (to partition `partition`, values padded to at least `value_bytes`), every acknowledged
/// (offset, value) and when it was acknowledged, and when to stop.
#[derive(Default)]
struct Producer {
    partition: i32,
    value_bytes: usize,
    acked: Mutex<Vec<(i64, String)>>,
    acked_at: Mutex<Vec<Instant>>,
    stop: AtomicBool,
}

impl Producer {
    fn acked(&self) -> Vec<(i64, String)> {
        self.acked.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The longest time without an acknowledgment between the first and the last one.
    fn longest_gap(&self) -> Duration {
        let at = self.acked_at.lock().unwrap_or_else(|e| e.into_inner());
        at.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default()
    }
}

/// The current leader of `topic`-`partition` per the first of `brokers` that answers
/// Metadata: its address.
fn leader_address(brokers: &[String], topic: &str, partition: i32) -> Option<String> {
    brokers.iter().find_map(|b| {
        let r = metadata_of(b, topic)?;
        let t = r.topics.first()?;
        let p = t
            .partitions
            .iter()
            .find(|p| p.partition_index == partition)?;
        let leader = r.brokers.iter().find(|n| n.node_id == p.leader_id)?;
        Some(format!("{}:{}", leader.host, leader.port))
    })
}

/// Produces one fresh value per attempt (a retried value could land twice), acks=all, to the
/// leader of `topic`-`shared.partition` until told to stop, recording what is acknowledged;
/// an error or no answer is retried after 100 ms against the leader Metadata names then. The
/// error codes seen, for the test to check.
fn produce_until_stopped(brokers: &[String], topic: &str, shared: &Producer) -> Vec<i16> {
    let mut errors = Vec::new();
    let mut attempt = 0u64;
    let partition = shared.partition;
    while !shared.stop.load(Ordering::Relaxed) {
        let mut value = format!("value-{attempt:06}");
        if value.len() < shared.value_bytes {
            value.push('-');
            let pad = shared.value_bytes - value.len();
            value.extend(std::iter::repeat_n('x', pad));
        }
        attempt += 1;
        let answer = leader_address(brokers, topic, partition)
            .and_then(|leader| produce(&leader, topic, partition, (-1, 5000), &[value.as_bytes()]));
        match answer {
            Some((code::NONE, offset)) => {
                let mut acked = shared.acked.lock().unwrap_or_else(|e| e.into_inner());
                acked.push((offset, value));
                let mut at = shared.acked_at.lock().unwrap_or_else(|e| e.into_inner());
                at.push(Instant::now());
            }
            Some((error, _)) => {
                errors.push(error);
                std::thread::sleep(Duration::from_millis(100));
            }
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    errors
}

/// Every acknowledged value is in `log` exactly once, at its acknowledged offset.
fn check_acknowledged(log: &[(i64, Vec<u8>)], acked: &[(i64, String)]) {
    let at: BTreeMap<i64, String> = log
        .iter()
        .map(|(o, v)| (*o, String::from_utf8_lossy(v).into_owned()))
        .collect();
    for (offset, value) in acked {
        assert_eq!(
            at.get(offset),
            Some(value),
            "acknowledged {value} at offset {offset}; the new leader's log (offset: value) up \
             to its high watermark: {at:?}"
        );
        let times = at.values().filter(|v| *v == value).count();
        assert_eq!(
            times, 1,
            "acknowledged {value} is in the log {times} times: {at:?}"
        );
    }
}

/// acks=all records acknowledged before and after kill -9 of the partition leader are all
/// read back from the leader the controller elects out of the ISR, each once at its offset;
/// the killed node restarts, truncates where its log diverged and catches up byte for byte.
#[test]
fn acks_all_survives_leader_kill() {
    const BEFORE: usize = 20;
    const AFTER: usize = 20;
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut nodes = start_cluster(tmp.path(), 3, &[]);
    create_replicated(&nodes[0].bootstrap(), "survive", 1);
    let first = wait_in_sync(&nodes, &[1, 2, 3], "survive", 1)[&0].clone();
    let brokers: Vec<String> = nodes.iter().map(Broker::bootstrap).collect();
    let shared = Arc::new(Producer::default());
    let producer = {
        let shared = Arc::clone(&shared);
        std::thread::spawn(move || produce_until_stopped(&brokers, "survive", &shared))
    };
    wait_for(
        Duration::from_secs(30),
        "records acknowledged before the kill",
        || (shared.acked().len() >= BEFORE).then_some(()),
    );
    let killed = first.leader;
    nodes[(killed - 1) as usize].kill();
    let at_kill = shared.acked().len();
    eprintln!("killed leader {killed} after {at_kill} acknowledged records");
    let enough = wait_for_state(
        Duration::from_secs(60),
        "records acknowledged after the kill (acknowledged so far)",
        || shared.acked().len(),
        |n| *n >= at_kill + AFTER,
    );
    shared.stop.store(true, Ordering::Relaxed);
    let errors = producer.join().expect("the producer thread");
    eprintln!("{enough} acknowledged; errors retried: {errors:?}");
    let retriable = [
        code::LEADER_NOT_AVAILABLE,
        code::NOT_LEADER_OR_FOLLOWER,
        code::REQUEST_TIMED_OUT,
        code::NOT_ENOUGH_REPLICAS,
        code::NOT_ENOUGH_REPLICAS_AFTER_APPEND,
    ];
    assert!(errors.iter().all(|e| retriable.contains(e)), "{errors:?}");
    let survivor = addr_of(&nodes, if killed == 1 { 2 } else { 1 });
    let now = wait_for_state(
        Duration::from_secs(30),
        "a new leader of survive-0",
        || placements(&survivor, "survive").get(&0).cloned(),
        |p| {
            p.as_ref()
                .is_some_and(|p| p.leader > 0 && p.leader != killed)
        },
    )
    .expect("placement");
    assert!(now.epoch > first.epoch, "{first:?} then {now:?}");
    let acked = shared.acked();
    check_acknowledged(
        &read_all(&addr_of(&nodes, now.leader), "survive", 0),
        &acked,
    );

    nodes[(killed - 1) as usize].restart_after_kill();
    let healed = wait_in_sync(&nodes, &[1, 2, 3], "survive", 1);
    let end = acked.iter().map(|(o, _)| o + 1).max().unwrap_or(0);
    wait_replicas_equal(
        tmp.path(),
        "survive",
        &all_replicas(&healed),
        end,
        Duration::from_secs(30),
    );
}

/// SIGTERM of a partition's leader under acks=all load is a controlled shutdown: while the
/// process still runs, another in-sync replica leads the partition and the leaving broker is
/// out of the ISR (the controller moved them on its `want_shut_down` heartbeats); it then exits
/// 0. The producer sees no error but NOT_LEADER_OR_FOLLOWER (no timeout, no NOT_ENOUGH_REPLICAS),
/// every acknowledged record is on the new leader once, and the restarted node rejoins the ISR.
#[test]
fn sigterm_moves_leadership_before_the_broker_exits() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut nodes = start_cluster(tmp.path(), 3, &[]);
    create_replicated(&nodes[0].bootstrap(), "leave", 1);
    let first = wait_in_sync(&nodes, &[1, 2, 3], "leave", 1)[&0].clone();
    let brokers: Vec<String> = nodes.iter().map(Broker::bootstrap).collect();
    let shared = Arc::new(Producer::default());
    let producer = {
        let shared = Arc::clone(&shared);
        std::thread::spawn(move || produce_until_stopped(&brokers, "leave", &shared))
    };
    wait_for(
        Duration::from_secs(30),
        "records acknowledged before the SIGTERM",
        || (shared.acked().len() >= 20).then_some(()),
    );
    let leaving = first.leader;
    let survivor = addr_of(&nodes, if leaving == 1 { 2 } else { 1 });
    signal(&nodes[(leaving - 1) as usize], libc::SIGTERM);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let moved = loop {
        let seen = placements(&survivor, "leave").get(&0).cloned();
        let running = nodes[(leaving - 1) as usize].is_running();
        if let Some(p) = seen.clone().filter(|p| p.leader > 0 && p.leader != leaving) {
            assert!(!p.isr.contains(&leaving), "{p:?}");
            assert!(running, "moved only after the exit? {p:?}");
            break p;
        }
        assert!(
            running,
            "node {leaving} exited while still leading leave-0: {seen:?}"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "no new leader: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(moved.epoch > first.epoch, "{first:?} then {moved:?}");
    let status = nodes[(leaving - 1) as usize].stop();
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
    let at_exit = shared.acked().len();
    wait_for(
        Duration::from_secs(30),
        "records acknowledged by the new leader",
        || (shared.acked().len() >= at_exit + 20).then_some(()),
    );
    shared.stop.store(true, Ordering::Relaxed);
    let errors = producer.join().expect("the producer thread");
    eprintln!("{} acknowledged; errors: {errors:?}", shared.acked().len());
    assert!(
        errors.iter().all(|&e| e == code::NOT_LEADER_OR_FOLLOWER),
        "{errors:?}"
    );
    check_acknowledged(
        &read_all(&addr_of(&nodes, moved.leader), "leave", 0),
        &shared.acked(),
    );
    nodes[(leaving - 1) as usize].restart_after_kill();
    wait_in_sync(&nodes, &[1, 2, 3], "leave", 1);
}

/// DeleteRecords of `topic`-`partition` below `offset` on `broker`: the new log start.
fn delete_records(broker: &str, topic: &str, partition: i32, offset: i64) -> i64 {
    use sluice_net::messages::{DeleteRecordsRequest, delete_records_request as dr};
    let mut client = Client::connect(broker, "test", CONNECT).expect("connect");
    let request = Request::DeleteRecords(DeleteRecordsRequest {
        topics: vec![dr::DeleteRecordsTopic {
            name: topic.into(),
            partitions: vec![dr::DeleteRecordsPartition {
                partition_index: partition,
                offset,
                ..Default::default()
            }],
            ..Default::default()
        }],
        timeout_ms: 10_000,
        ..Default::default()
    });
    let Ok((_, Response::DeleteRecords(r))) = client.call(2, &request) else {
        panic!("no DeleteRecords answer");
    };
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, code::NONE, "{r:?}");
    p.low_watermark
}

/// `count` acks=all records `{prefix}-{i}` to the leader of `topic`-0, each retried until
/// acknowledged: (offset, value) of each.
fn produce_acked(leader: &str, topic: &str, prefix: &str, count: usize) -> Vec<(i64, String)> {
    (0..count)
        .map(|i| {
            let value = format!("{prefix}-{i:03}");
            let offset =
                wait_for(
                    Duration::from_secs(30),
                    "an acknowledged record",
                    || match produce(leader, topic, 0, (-1, 5000), &[value.as_bytes()]) {
                        Some((code::NONE, offset)) => Some(offset),
                        _ => None,
                    },
                );
            (offset, value)
        })
        .collect()
}

/// A replica that was down while the leader deleted records (DeleteRecords) past its log end
/// gets OFFSET_OUT_OF_RANGE when it fetches again: it drops its log, starts empty at the
/// leader's log start and rejoins the ISR. The replica that stayed moved its log start with
/// the leader's. Whichever of the two the controller elects when the leader is then killed,
/// the log starts where the deletion left it and holds every record acknowledged after it.
#[test]
fn a_replica_behind_the_leaders_log_start_starts_over_there() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut nodes = start_cluster(tmp.path(), 3, &[]);
    create_replicated(&nodes[0].bootstrap(), "behind", 1);
    let first = wait_in_sync(&nodes, &[1, 2, 3], "behind", 1)[&0].clone();
    let leader = addr_of(&nodes, first.leader);
    let away = first.followers()[0];
    let stayed = first.followers()[1];
    produce_acked(&leader, "behind", "early", 5);
    nodes[(away - 1) as usize].kill();
    wait_isr(
        &leader,
        "behind",
        &[first.leader, stayed],
        "the killed replica out of the ISR",
    );
    let deleted = produce_acked(&leader, "behind", "gone", 20);
    let start = deleted.last().expect("records").0 + 1;
    wait_for(
        Duration::from_secs(10),
        "the high watermark past them",
        || (high_watermark(&leader, "behind", 0) >= start).then_some(()),
    );
    assert_eq!(delete_records(&leader, "behind", 0, start), start);
    let kept = produce_acked(&leader, "behind", "kept", 10);
    nodes[(away - 1) as usize].restart_after_kill();
    wait_in_sync(&nodes, &[1, 2, 3], "behind", 1);
    let end = kept.last().expect("records").0 + 1;
    wait_replicas_caught_up(tmp.path(), &[away, stayed], end);

    nodes[(first.leader - 1) as usize].kill();
    let survivor = addr_of(&nodes, away);
    let now = wait_for_state(
        Duration::from_secs(30),
        "a new leader of behind-0",
        || placements(&survivor, "behind").get(&0).cloned(),
        |p| {
            p.as_ref()
                .is_some_and(|p| p.leader > 0 && p.leader != first.leader)
        },
    )
    .expect("placement");
    let new_leader = addr_of(&nodes, now.leader);
    eprintln!(
        "new leader {} (the replica that was away: {away})",
        now.leader
    );
    wait_for(
        Duration::from_secs(30),
        "the new leader's high watermark",
        || (high_watermark(&new_leader, "behind", 0) >= end).then_some(()),
    );
    assert_eq!(list_offset(&new_leader, "behind", 0, -2), start);
    let read: Vec<(i64, String)> = read_from(&new_leader, "behind", 0, start)
        .into_iter()
        .map(|(o, v)| (o, String::from_utf8_lossy(&v).into_owned()))
        .collect();
    assert_eq!(read, kept);
}

/// Waits until the logs of `replicas` in their data dirs reach `end`.
fn wait_replicas_caught_up(root: &Path, replicas: &[i32], end: i64) {
    wait_for_state(
        Duration::from_secs(30),
        "the replicas' log ends",
        || -> Vec<i64> {
            replicas
                .iter()
                .map(|id| replica_log(&root.join(format!("node-{id}")), "behind", 0).1)
                .collect()
        },
        |ends| ends.iter().all(|&e| e >= end),
    );
}

/// ElectLeaders (preferred) for `topic`-`partition` on `broker`: the partition's error code.
fn elect_preferred(broker: &str, topic: &str, partition: i32) -> i16 {
    use sluice_net::messages::{ElectLeadersRequest, elect_leaders_request as el};
    let mut client = Client::connect(broker, "test", CONNECT).expect("connect");
    let request = Request::ElectLeaders(ElectLeadersRequest {
        election_type: 0,
        topic_partitions: Some(vec![el::TopicPartitions {
            topic: topic.into(),
            partitions: vec![partition],
            ..Default::default()
        }]),
        timeout_ms: 10_000,
        ..Default::default()
    });
    let Ok((_, Response::ElectLeaders(r))) = client.call(2, &request) else {
        panic!("no ElectLeaders answer");
    };
    assert_eq!(r.error_code, code::NONE, "{r:?}");
    r.replica_election_results[0].partition_result[0].error_code
}

/// Kills the leader of `topic`-0 (its preferred replica, the first of the assignment, as the
/// controller places a new topic's leader), waits for another leader, restarts it and waits
/// until it is back in the ISR: the preferred replica, now a follower.
fn move_leadership_away(nodes: &mut [Broker], topic: &str) -> i32 {
    let preferred = wait_in_sync(nodes, &[1, 2, 3], topic, 1)[&0].leader;
    nodes[(preferred - 1) as usize].kill();
    let other = addr_of(nodes, if preferred == 1 { 2 } else { 1 });
    wait_for_state(
        Duration::from_secs(30),
        "another leader",
        || placements(&other, topic).get(&0).cloned(),
        |p| {
            p.as_ref()
                .is_some_and(|p| p.leader > 0 && p.leader != preferred)
        },
    );
    nodes[(preferred - 1) as usize].restart_after_kill();
    wait_in_sync(nodes, &[1, 2, 3], topic, 1);
    preferred
}

/// Preferred-leader election (ElectLeaders, `kafka-leader-election --election-type
/// preferred`): after its broker restarts and rejoins the ISR, the preferred replica leads
/// again when asked; asked again, the election is not needed. Auto rebalance is off here.
#[test]
fn preferred_leader_election_moves_leadership_back() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let off = ["--set", "auto_leader_rebalance_enable=false"];
    let mut nodes = start_cluster(tmp.path(), 3, &off);
    create_replicated(&nodes[0].bootstrap(), "prefer", 1);
    let preferred = move_leadership_away(&mut nodes, "prefer");
    let any = nodes[0].bootstrap();
    let before = placements(&any, "prefer")[&0].clone();
    assert_ne!(before.leader, preferred, "no election yet: {before:?}");
    assert_eq!(elect_preferred(&any, "prefer", 0), code::NONE);
    wait_for_state(
        Duration::from_secs(30),
        "the preferred replica leading",
        || placements(&any, "prefer").get(&0).cloned(),
        |p| p.as_ref().is_some_and(|p| p.leader == preferred),
    );
    assert_eq!(
        elect_preferred(&any, "prefer", 0),
        code::ELECTION_NOT_NEEDED
    );
    assert_eq!(
        elect_preferred(&any, "nope", 0),
        code::UNKNOWN_TOPIC_OR_PARTITION
    );
}

/// OffsetForLeaderEpoch (v4, as a consumer asks it to detect truncation) on `broker` for
/// `topic`-0 at `epoch`: (error, epoch, end offset).
fn epoch_end(broker: &str, topic: &str, epoch: i32) -> (i16, i32, i64) {
    use sluice_net::messages::OffsetForLeaderEpochRequest;
    use sluice_net::messages::offset_for_leader_epoch_request::{
        OffsetForLeaderPartition, OffsetForLeaderTopic,
    };
    let request = Request::OffsetForLeaderEpoch(OffsetForLeaderEpochRequest {
        replica_id: sluice_net::BrokerId(-1),
        topics: vec![OffsetForLeaderTopic {
            topic: topic.into(),
            partitions: vec![OffsetForLeaderPartition {
                partition: 0,
                current_leader_epoch: -1,
                leader_epoch: epoch,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    });
    let mut client = Client::connect(broker, "test", CONNECT).expect("connect");
    let (_, Response::OffsetForLeaderEpoch(r)) = client.call(4, &request).expect("answer") else {
        panic!("not an OffsetForLeaderEpoch answer");
    };
    let p = &r.topics[0].partitions[0];
    (p.error_code, p.leader_epoch, p.end_offset)
}

/// OffsetForLeaderEpoch for an epoch older than the leader's: it ends where the next epoch of
/// the log began (Kafka's `endOffsetForEpoch`), which a consumer compares with its position
/// after a leader change; the current epoch ends at the log end; an epoch the log never had
/// below the current one answers the next one's start; a future epoch is undefined (-1, -1).
#[test]
fn offset_for_leader_epoch_answers_older_epochs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let off = ["--set", "auto_leader_rebalance_enable=false"];
    let mut nodes = start_cluster(tmp.path(), 3, &off);
    create_replicated(&nodes[0].bootstrap(), "epochs", 1);
    let first = wait_in_sync(&nodes, &[1, 2, 3], "epochs", 1)[&0].clone();
    let acked = produce_acked(&addr_of(&nodes, first.leader), "epochs", "a", 5);
    assert_eq!(acked.last().map(|a| a.0), Some(4));
    move_leadership_away(&mut nodes, "epochs");
    let now = wait_in_sync(&nodes, &[1, 2, 3], "epochs", 1)[&0].clone();
    assert!(now.epoch > first.epoch, "{first:?} then {now:?}");
    let leader = addr_of(&nodes, now.leader);
    let more = produce_acked(&leader, "epochs", "b", 3);
    assert_eq!(more.last().map(|a| a.0), Some(7));
    assert_eq!(
        epoch_end(&leader, "epochs", first.epoch),
        (code::NONE, first.epoch, 5)
    );
    assert_eq!(
        epoch_end(&leader, "epochs", now.epoch),
        (code::NONE, now.epoch, 8)
    );
    assert_eq!(
        epoch_end(&leader, "epochs", now.epoch + 10),
        (code::NONE, -1, -1)
    );
    if now.epoch > first.epoch + 1 {
        // An epoch between the two that appended nothing ends where the next one began.
        let (error, _, end) = epoch_end(&leader, "epochs", first.epoch + 1);
        assert_eq!((error, end), (code::NONE, 5));
    }
}

/// `auto_leader_rebalance_enable` (on by default; every second here): the preferred replica
/// leads again on its own once back in the ISR.
#[test]
fn auto_leader_rebalance_moves_leadership_back() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fast = ["--set", "leader_imbalance_check_interval_ms=1000"];
    let mut nodes = start_cluster(tmp.path(), 3, &fast);
    create_replicated(&nodes[0].bootstrap(), "rebalance", 1);
    let preferred = move_leadership_away(&mut nodes, "rebalance");
    let any = nodes[0].bootstrap();
    wait_for_state(
        Duration::from_secs(30),
        "the preferred replica leading again",
        || placements(&any, "rebalance").get(&0).cloned(),
        |p| p.as_ref().is_some_and(|p| p.leader == preferred),
    );
}

/// AlterPartitionReassignments of `topic`-0 to `target` on `broker`: the partition's error.
fn reassign(broker: &str, topic: &str, target: &[i32]) -> i16 {
    use sluice_net::messages::{
        AlterPartitionReassignmentsRequest, alter_partition_reassignments_request as ar,
    };
    let mut client = Client::connect(broker, "test", CONNECT).expect("connect");
    let request = Request::AlterPartitionReassignments(AlterPartitionReassignmentsRequest {
        timeout_ms: 10_000,
        allow_replication_factor_change: true,
        topics: vec![ar::ReassignableTopic {
            name: topic.into(),
            partitions: vec![ar::ReassignablePartition {
                partition_index: 0,
                replicas: Some(target.iter().map(|&b| b.into()).collect()),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    });
    let Ok((_, Response::AlterPartitionReassignments(r))) = client.call(1, &request) else {
        panic!("no AlterPartitionReassignments answer");
    };
    assert_eq!(r.error_code, code::NONE, "{r:?}");
    r.responses[0].partitions[0].error_code
}

/// The partitions ListPartitionReassignments shows in progress on `broker`.
fn reassignments_in_progress(broker: &str) -> usize {
    use sluice_net::messages::ListPartitionReassignmentsRequest;
    let mut client = Client::connect(broker, "test", CONNECT).expect("connect");
    let request = Request::ListPartitionReassignments(ListPartitionReassignmentsRequest {
        timeout_ms: 10_000,
        topics: None,
        ..Default::default()
    });
    let Ok((_, Response::ListPartitionReassignments(r))) = client.call(0, &request) else {
        panic!("no ListPartitionReassignments answer");
    };
    assert_eq!(r.error_code, code::NONE, "{r:?}");
    r.topics.iter().map(|t| t.partitions.len()).sum()
}

/// `kafka-reassign-partitions` onto a broker added to the cluster: the partition's replicas
/// move from its leader's broker to the new one (AlterPartitionReassignments); the new replica
/// fetches the whole log, the controller completes the reassignment once it is in the ISR
/// (another leader, the old one out of the replicas), the old broker deletes its copy, and
/// every replica, the new one included, holds the leader's bytes.
#[test]
fn reassignment_moves_a_replica_to_a_new_broker() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut nodes, voters) = start_cluster_with_voters(tmp.path(), 3, &[]);
    create_replicated(&nodes[0].bootstrap(), "move", 1);
    let first = wait_in_sync(&nodes, &[1, 2, 3], "move", 1)[&0].clone();
    let early = produce_acked(&addr_of(&nodes, first.leader), "move", "early", 20);
    nodes.push(start_node(tmp.path(), 4, &voters, &NodeArgs::new("broker")));
    let any = nodes[0].bootstrap();
    wait_brokers(&any, 4);
    let mut target = first.followers();
    target.insert(0, 4);
    assert_eq!(reassign(&any, "move", &target), code::NONE);
    let mut sorted = target.clone();
    sorted.sort_unstable();
    let done = wait_for_state(
        Duration::from_secs(45),
        "the reassignment complete (replicas and ISR the target)",
        || placements(&any, "move").get(&0).cloned(),
        |p| {
            p.as_ref()
                .is_some_and(|p| p.replicas == sorted && p.isr == sorted)
        },
    )
    .expect("placement");
    assert_ne!(done.leader, first.leader, "{done:?}");
    assert!(done.epoch > first.epoch, "{first:?} then {done:?}");
    assert_eq!(reassignments_in_progress(&any), 0);
    let old = tmp.path().join(format!("node-{}", first.leader));
    wait_for(Duration::from_secs(30), "the old replica deleted", || {
        find_dir(&old, "move-0", 2).is_none().then_some(())
    });
    let late = produce_acked(&addr_of(&nodes, done.leader), "move", "late", 10);
    let end = late.last().expect("records").0 + 1;
    let mut replicas = BTreeMap::new();
    replicas.insert(0, (done.leader, target.clone()));
    wait_replicas_equal(tmp.path(), "move", &replicas, end, Duration::from_secs(30));
    let read = read_all(&addr_of(&nodes, done.leader), "move", 0);
    let acked: Vec<(i64, String)> = early.into_iter().chain(late).collect();
    check_acknowledged(&read, &acked);
}

/// SIGSTOP or SIGCONT to one process we started (by its PID).
fn signal(node: &Broker, sig: i32) {
    let pid = i32::try_from(node.pid()).expect("pid");
    // SAFETY: kill(2) with the PID of a child we spawned and a valid signal number.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill({pid}, {sig})");
}

/// Waits until the leader's Metadata shows `isr` as the ISR of `topic`-0.
fn wait_isr(leader: &str, topic: &str, isr: &[i32], what: &str) {
    let mut isr = isr.to_vec();
    isr.sort_unstable();
    wait_for_state(
        Duration::from_secs(30),
        what,
        || placements(leader, topic).get(&0).cloned(),
        |p| p.as_ref().is_some_and(|p| p.isr == isr),
    );
}

/// The high watermark waits for every ISR member, and min.insync.replicas guards acks=all.
///
/// Five combined nodes, not three: the test takes both followers of the partition away, and
/// with three controller voters two of them gone would leave no quorum, so no controller to
/// fence the followers or shrink the ISR; five voters keep a quorum of three whichever two are
/// stopped. The followers are stopped with SIGSTOP, not killed: a stopped broker stops fetching
/// and heartbeating but keeps its sockets, so it stays registered and in the ISR until its
/// session (6 s here, to leave room for the first check) runs out, which is the window in which
/// the high watermark must wait. SIGCONT at the end: both unfenced, they catch up and rejoin.
#[test]
fn high_watermark_waits_for_followers() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let session = ["--set", "broker_session_timeout_ms=6000"];
    let nodes = start_cluster(tmp.path(), 5, &session);
    create_replicated(&nodes[0].bootstrap(), "hw", 1);
    let placed = wait_in_sync(&nodes, &[1, 2, 3, 4, 5], "hw", 1);
    let p = placed[&0].clone();
    let (a, b) = (p.followers()[0], p.followers()[1]);
    let leader = addr_of(&nodes, p.leader);
    let acks_all = |value: &[u8], timeout_ms| produce(&leader, "hw", 0, (-1, timeout_ms), &[value]);
    assert_eq!(acks_all(b"three in sync", 10_000), Some((code::NONE, 0)));

    // Follower a stopped but still in the ISR: its log end cannot pass offset 1, so neither can
    // the high watermark, and acks=all times out (the record stays in the leader's log).
    signal(&nodes[(a - 1) as usize], libc::SIGSTOP);
    let answer = acks_all(b"waits for a", 1000);
    let isr_then = placements(&leader, "hw").get(&0).map(|p| p.isr.clone());
    assert!(
        isr_then.as_ref().is_some_and(|isr| isr.contains(&a)),
        "the test's premise: stopped follower {a} still in the ISR when the answer came: \
         {isr_then:?}"
    );
    assert_eq!(
        answer.map(|(error, _)| error),
        Some(code::REQUEST_TIMED_OUT),
        "acks=all with follower {a} stopped but in the ISR {isr_then:?}: {answer:?}"
    );
    assert_eq!(
        high_watermark(&leader, "hw", 0),
        1,
        "the high watermark waits for {a}"
    );

    // The controller fences a: the ISR of two (= min.insync.replicas) moves the high watermark
    // past the waiting record and answers acks=all again.
    let two = [p.leader, b];
    wait_isr(
        &leader,
        "hw",
        &two,
        "stopped follower fenced and out of the ISR",
    );
    assert_eq!(acks_all(b"two in sync", 10_000), Some((code::NONE, 2)));
    assert_eq!(high_watermark(&leader, "hw", 0), 3);
    let pair = BTreeMap::from([(0, (p.leader, vec![p.leader, b]))]);
    wait_replicas_equal(tmp.path(), "hw", &pair, 3, Duration::from_secs(15));

    // b stopped too: the leader alone in the ISR, below min.insync.replicas=2.
    signal(&nodes[(b - 1) as usize], libc::SIGSTOP);
    wait_isr(&leader, "hw", &[p.leader], "the leader alone in the ISR");
    let alone = acks_all(b"alone", 10_000);
    assert_eq!(
        alone.map(|(error, _)| error),
        Some(code::NOT_ENOUGH_REPLICAS),
        "acks=all with leader {} alone in the ISR, below min.insync.replicas=2: {alone:?}",
        p.leader
    );

    signal(&nodes[(a - 1) as usize], libc::SIGCONT);
    signal(&nodes[(b - 1) as usize], libc::SIGCONT);
    let healed = wait_in_sync(&nodes, &[1, 2, 3, 4, 5], "hw", 1);
    assert_eq!(healed[&0].leader, p.leader, "{healed:?}");
    wait_replicas_equal(
        tmp.path(),
        "hw",
        &all_replicas(&healed),
        3,
        Duration::from_secs(30),
    );
}

/// `unclean.leader.election.enable` on real nodes. Both replicas of each topic live on the
/// broker-only nodes 4 and 5 (three combined nodes keep the controller quorum), with
/// min.insync.replicas=1. 5 is killed, 4 alone acknowledges a record (acks=all), then 4 is
/// killed and 5 restarts: on the topic that allows it, 5 leads as soon as it is back, without
/// that acknowledged record (the loss the setting accepts), and takes produce; on the topic
/// that does not, the partition stays without a leader.
#[test]
fn unclean_leader_election_enable_elects_a_returning_out_of_sync_replica() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let session = ["--set", "broker_session_timeout_ms=4000"];
    let (mut nodes, voters) = start_cluster_with_voters(tmp.path(), 3, &session);
    for id in [4, 5] {
        let args = NodeArgs {
            extra: &session,
            ..NodeArgs::new("broker")
        };
        nodes.push(start_node(tmp.path(), id, &voters, &args));
    }
    let any = nodes[0].bootstrap();
    wait_brokers(&any, 5);
    // One in-sync replica is enough to commit: the high watermark does not move while the
    // ISR is smaller than min.insync.replicas (Kafka 4.x).
    let min_one = ("min.insync.replicas", "1");
    let allow = [min_one, ("unclean.leader.election.enable", "true")];
    for (topic, configs) in [("unclean", &allow[..]), ("clean", &[min_one][..])] {
        let topic = CreatableTopic {
            name: topic.into(),
            num_partitions: -1,
            replication_factor: -1,
            assignments: vec![CreatableReplicaAssignment {
                partition_index: 0,
                broker_ids: vec![4.into(), 5.into()],
                ..Default::default()
            }],
            ..Default::default()
        };
        create(&any, topic, configs);
    }
    let four = addr_of(&nodes, 4);
    for topic in ["unclean", "clean"] {
        wait_isr(&four, topic, &[4, 5], "both replicas in sync");
        let first = produce(&four, topic, 0, (-1, 10_000), &[b"on both"]);
        assert_eq!(first, Some((code::NONE, 0)), "{topic}");
    }
    nodes[4].kill();
    for topic in ["unclean", "clean"] {
        wait_isr(&four, topic, &[4], "5 fenced and out of the ISR");
        let second = produce(&four, topic, 0, (-1, 10_000), &[b"only on 4"]);
        assert_eq!(second, Some((code::NONE, 1)), "{topic}");
    }
    nodes[3].kill();
    wait_for_state(
        Duration::from_secs(30),
        "4 fenced: no leader",
        || placements(&any, "clean").get(&0).map(|p| p.leader),
        |leader| *leader == Some(-1),
    );
    nodes[4].restart_after_kill();
    let five = addr_of(&nodes, 5);
    wait_for_state(
        Duration::from_secs(30),
        "5 back and leading the topic that allows an unclean election",
        || placements(&any, "unclean").get(&0).cloned(),
        |p| p.as_ref().is_some_and(|p| p.leader == 5 && p.isr == [5]),
    );
    let clean = placements(&any, "clean").get(&0).cloned();
    assert_eq!(
        clean.map(|p| p.leader),
        Some(-1),
        "no unclean election there"
    );
    let after = wait_for_state(
        Duration::from_secs(15),
        "5 takes produce once recovered",
        || produce(&five, "unclean", 0, (-1, 10_000), &[b"after"]),
        |r| r.is_some_and(|(error, _)| error == code::NONE),
    );
    assert_eq!(after, Some((code::NONE, 1)));
    let values: Vec<Vec<u8>> = read_all(&five, "unclean", 0)
        .into_iter()
        .map(|r| r.1)
        .collect();
    assert_eq!(values, vec![b"on both".to_vec(), b"after".to_vec()]);
}

/// How a crash leaves the last batch of a follower's active segment: one way for each
/// partition of [`a_follower_torn_at_the_tail_truncates_and_catches_up`]'s topic.
///
/// The shard writes segments with O_DIRECT in whole blocks (the partial tail block rewritten,
/// zero-padded, with each write) into a file preallocated in steps (blocks not yet written read
/// as zeros), and seals a segment (exact size, synced, its `.index` and `.timeindex` written
/// to a temporary file and renamed) before it creates the next one. So only the newest, active
/// segment can end torn, and it has no index files yet: recovery loads the sealed segments by
/// their index files and scans the active one, checking each batch's framing and CRC.
#[derive(Debug, Clone, Copy)]
enum Tear {
    /// The file ends in the middle of the batch.
    Cut,
    /// The batch's last sector never reached the disk: it reads as zeros.
    Zeros,
    /// The batch's last sector holds other bytes (old or random content).
    Garbage,
}

/// The disk's sector (its logical block, the direct-I/O alignment): a torn write loses whole
/// sectors.
const SECTOR: usize = 512;

/// The newest `.log` segment of `topic`-`partition` in a node's data dir.
fn newest_segment(node_dir: &Path, topic: &str, partition: i32) -> std::path::PathBuf {
    let dir = find_dir(node_dir, &format!("{topic}-{partition}"), 2).expect("partition dir");
    let mut logs: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
        .expect("list the partition dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs.pop().expect("a segment")
}

/// The segments of `topic`-`partition` in a node's data dir that have their index files (the
/// sealed ones).
fn indexed_segments(node_dir: &Path, topic: &str, partition: i32) -> usize {
    let Some(dir) = find_dir(node_dir, &format!("{topic}-{partition}"), 2) else {
        return 0;
    };
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "index"))
            .count()
    })
}

/// Where a segment's last batch is: its first byte, one past its last byte, its base offset.
type LastBatch = (usize, usize, i64);

/// The last whole, CRC-valid batch of a segment file's bytes read from the start (each batch
/// continuing the offsets): its first byte, one past its last byte, and its base offset.
fn last_batch(segment: &[u8]) -> Option<LastBatch> {
    let (mut pos, mut last, mut next) = (0, None, None);
    for batch in Batches::new(bytes::Bytes::copy_from_slice(segment)) {
        let Ok(batch) = batch else { break };
        let continues = next.is_none_or(|n| batch.base_offset() == n);
        if batch.validate_stored().is_err() || !continues {
            break;
        }
        last = Some((pos, pos + batch.size_bytes(), batch.base_offset()));
        pos += batch.size_bytes();
        next = Some(batch.last_offset() + 1);
    }
    last
}

/// The newest segment of `topic`-`partition` in a node's data dir, its bytes, and its last
/// batch (see [`last_batch`]) if it is the active segment: it has no index files yet and its
/// file is longer than its batches (the padding and preallocation sealing cuts off). `None`
/// while it holds no batch, or while a roll has sealed it but not yet created the next file.
fn active_segment(
    node_dir: &Path,
    topic: &str,
    partition: i32,
) -> Option<(std::path::PathBuf, Vec<u8>, LastBatch)> {
    let path = newest_segment(node_dir, topic, partition);
    if path.with_extension("index").exists() {
        return None;
    }
    let content = std::fs::read(&path).ok()?;
    let last = last_batch(&content).filter(|&(_, end, _)| end < content.len())?;
    Some((path, content, last))
}

/// Tears the last whole batch of `topic`-`partition`'s active segment in a node's data dir as
/// `tear` says: the batch's base offset, where recovery must end that log.
fn tear_last_batch(node_dir: &Path, topic: &str, partition: i32, tear: Tear) -> i64 {
    use std::os::unix::fs::FileExt;
    let (path, content, (start, end, base)) = active_segment(node_dir, topic, partition)
        .unwrap_or_else(|| panic!("partition {partition}: no active segment with a batch"));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open the segment");
    // The sector holding the batch's last byte; the batch's header (offset, length) before it.
    let sector = (end - 1) / SECTOR * SECTOR;
    assert!(sector >= start + 12, "batch {start}..{end} in one sector");
    let torn_sector = |fill: &dyn Fn(usize) -> u8| -> Vec<u8> {
        (sector..content.len().min(sector + SECTOR))
            .map(fill)
            .collect()
    };
    match tear {
        Tear::Cut => file.set_len(((start + end) / 2) as u64).expect("truncate"),
        Tear::Zeros => file
            .write_all_at(&torn_sector(&|_| 0), sector as u64)
            .expect("write zeros"),
        Tear::Garbage => file
            .write_all_at(&torn_sector(&|i| (i * 131 + 7) as u8 | 1), sector as u64)
            .expect("write garbage"),
    }
    file.sync_all().expect("sync the segment");
    eprintln!(
        "{tear:?}: {}: the batch at offset {base} (bytes {start}..{end}) torn",
        path.display()
    );
    base
}

/// Kills `node` (SIGKILL) at a moment when each of `partitions` of `topic` in its data dir
/// `dir` has an active segment holding a whole batch ([`active_segment`]): stopped first
/// (SIGSTOP) and looked at, and if one has none (a crash in the middle of a roll leaves nothing
/// that can be torn) run on (SIGCONT) for a moment and looked at again.
fn kill_holding_batches(node: &mut Broker, dir: &Path, topic: &str, partitions: i32) {
    for _ in 0..100 {
        signal(node, libc::SIGSTOP);
        let ready = (0..partitions).all(|p| active_segment(dir, topic, p).is_some());
        if ready {
            node.kill();
            return;
        }
        eprintln!("a partition without an active segment holding a batch: once more");
        signal(node, libc::SIGCONT);
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no moment found when every active segment of {topic} held a batch");
}

/// The lines of a node's log (its stderr file) after byte `from` that report recovery cutting
/// a torn batch, without ANSI colours.
fn torn_batch_lines(log: &Path, from: usize) -> Vec<String> {
    let text = std::fs::read(log).unwrap_or_default();
    let text = String::from_utf8_lossy(text.get(from..).unwrap_or_default()).into_owned();
    text.lines()
        .map(without_colours)
        .filter(|l| l.contains("truncating a torn batch at the end of the log"))
        .collect()
}

/// `line` without ANSI escape sequences (`ESC [ ... m`).
fn without_colours(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|&c| c == 'm');
        } else {
            out.push(c);
        }
    }
    out
}

/// Waits (at most 60 s) until each producer has `more` acknowledgments beyond its count in
/// `since`; their counts then.
fn wait_acks(producers: &[Arc<Producer>], since: &[usize], more: usize, what: &str) -> Vec<usize> {
    wait_for_state(
        Duration::from_secs(60),
        &format!("{more} more records acknowledged on each partition {what} (counts)"),
        || -> Vec<usize> { producers.iter().map(|p| p.acked().len()).collect() },
        |counts| counts.iter().zip(since).all(|(n, s)| *n >= s + more),
    )
}

/// A producer thread's shared state, and the thread (its answer: the errors it saw).
type ProducerThread = (Arc<Producer>, std::thread::JoinHandle<Vec<i16>>);

/// Starts a producer thread ([`produce_until_stopped`]) on each partition of `topic`, with
/// values of `value_bytes`.
fn start_producers(
    brokers: &[String],
    topic: &'static str,
    partitions: i32,
    value_bytes: usize,
) -> Vec<ProducerThread> {
    (0..partitions)
        .map(|partition| {
            let shared = Arc::new(Producer {
                partition,
                value_bytes,
                ..Default::default()
            });
            let (brokers, mine) = (brokers.to_vec(), Arc::clone(&shared));
            let thread = std::thread::spawn(move || produce_until_stopped(&brokers, topic, &mine));
            (shared, thread)
        })
        .collect()
}

/// A follower's disk torn at the tail (issue 21): kill -9 of a follower while acks=all
/// producers write steadily, then, before it restarts, the last batch of each partition's
/// active segment torn as a crash can leave it ([`Tear`]: the file cut in the middle of the
/// batch, its last sector zeros, its last sector garbage; one way per partition). Segments roll
/// every 2 s, so the follower also has sealed segments with index files for recovery to load.
///
/// The restarted follower must start, log that recovery cut the torn batch at its base offset
/// (so the test cannot pass without a tear recovered), fetch from there, catch up and rejoin
/// the ISR; the leader and the other follower (min.insync.replicas=2) acknowledge throughout;
/// every acknowledged record is read back once from the leader at its offset; and the three
/// replicas' logs end up byte-identical.
#[test]
fn a_follower_torn_at_the_tail_truncates_and_catches_up() {
    const TOPIC: &str = "torn";
    const TEARS: [Tear; 3] = [Tear::Cut, Tear::Zeros, Tear::Garbage];
    let (leader, victim) = (1, 3);
    let tmp = tempfile::tempdir().expect("tempdir");
    let logs: Vec<std::path::PathBuf> = (1..=3)
        .map(|id| tmp.path().join(format!("node-{id}.stderr")))
        .collect();
    let voters = Voters::new(3);
    let mut nodes = start_voters(tmp.path(), &voters, |id| NodeArgs {
        stderr_log: Some(&logs[(id - 1) as usize]),
        ..NodeArgs::new(COMBINED)
    });
    wait_brokers(&nodes[0].bootstrap(), 3);
    // Node 1 leads every partition; node 3 follows each.
    let replicas = [[1, 3, 2], [1, 2, 3], [1, 3, 2]];
    // A new segment every 2 s; no retention, as the test's records have timestamp 0 (1970).
    let configs = [("segment.ms", "2000"), ("retention.ms", "-1")];
    create_placed(&addr_of(&nodes, leader), TOPIC, &replicas, &configs);
    let placed = wait_in_sync(&nodes, &[1, 2, 3], TOPIC, 3);
    assert!(placed.values().all(|p| p.leader == leader), "{placed:?}");
    let brokers: Vec<String> = nodes.iter().map(Broker::bootstrap).collect();
    // Values of 1500 bytes: each batch spans several sectors, so one can be torn in the middle.
    let producers = start_producers(&brokers, TOPIC, 3, 1500);
    let shared: Vec<Arc<Producer>> = producers.iter().map(|(p, _)| Arc::clone(p)).collect();
    let dir = node_dir(tmp.path(), victim);
    wait_for(
        Duration::from_secs(60),
        "sealed segments on the follower",
        || {
            (0..3)
                .all(|p| indexed_segments(&dir, TOPIC, p) >= 2)
                .then_some(())
        },
    );
    let before = wait_acks(&shared, &[0; 3], 20, "before the kill");

    kill_holding_batches(&mut nodes[(victim - 1) as usize], &dir, TOPIC, 3);
    let torn: Vec<i64> = (0..3)
        .map(|p| {
            let (_, end) = replica_log(&dir, TOPIC, p);
            let base = tear_last_batch(&dir, TOPIC, p, TEARS[p as usize]);
            let after = replica_log(&dir, TOPIC, p).1;
            eprintln!("partition {p}: the follower's log ended at {end}, torn at {base}");
            assert_eq!(
                after, base,
                "partition {p}: the log as read here after the tear"
            );
            base
        })
        .collect();
    wait_for(
        Duration::from_secs(30),
        "the follower out of the ISR",
        || {
            let now = placements(&addr_of(&nodes, leader), TOPIC);
            (now.len() == 3 && now.values().all(|p| !p.isr.contains(&victim))).then_some(())
        },
    );
    let down = wait_acks(&shared, &before, 20, "while the follower is down");

    let log = &logs[(victim - 1) as usize];
    let log_from = std::fs::metadata(log).map_or(0, |m| m.len() as usize);
    nodes[(victim - 1) as usize].restart_after_kill();
    check_torn_batches_cut(log, log_from, TOPIC, &torn);
    let healed = wait_in_sync(&nodes, &[1, 2, 3], TOPIC, 3);
    assert!(healed.values().all(|p| p.leader == leader), "{healed:?}");
    wait_acks(&shared, &down, 20, "after the follower is back in the ISR");
    finish_torn(tmp.path(), &nodes, (TOPIC, producers), &healed);
}

/// Waits until the node's log (after byte `from`) reports recovery cutting a torn batch of
/// each partition of `topic`, the log then ending at the torn batch's base offset, `torn[p]`.
fn check_torn_batches_cut(log: &Path, from: usize, topic: &str, torn: &[i64]) {
    let lines = wait_for_state(
        Duration::from_secs(30),
        "recovery logging the torn batch it cut on each partition (lines so far)",
        || torn_batch_lines(log, from),
        |lines| {
            (0..torn.len()).all(|p| lines.iter().any(|l| l.contains(&format!("/{topic}-{p}/"))))
        },
    );
    for (p, base) in torn.iter().enumerate() {
        let line = lines
            .iter()
            .find(|l| l.contains(&format!("/{topic}-{p}/")))
            .expect("a line");
        eprintln!("recovery of partition {p}: {line}");
        assert!(
            line.contains(&format!(" next_offset={base} ")),
            "partition {p} torn at offset {base}, recovered otherwise: {line}"
        );
    }
}

/// The end of [`a_follower_torn_at_the_tail_truncates_and_catches_up`]: the producers stop
/// (having seen no error but timeouts, and no long gap), every acknowledged record is on the
/// leader once at its offset, and every replica holds the leader's bytes.
fn finish_torn(
    tmp: &Path,
    nodes: &[Broker],
    (topic, producers): (&str, Vec<ProducerThread>),
    placed: &BTreeMap<i32, Placement>,
) {
    for (shared, _) in &producers {
        shared.stop.store(true, Ordering::Relaxed);
    }
    let mut ends = Vec::new();
    for (shared, thread) in producers {
        let errors = thread.join().expect("a producer thread");
        let (partition, gap) = (shared.partition, shared.longest_gap());
        let acked = shared.acked();
        eprintln!(
            "partition {partition}: {} acknowledged, longest gap {gap:?}, errors {errors:?}",
            acked.len()
        );
        assert!(
            errors.iter().all(|&e| e == code::REQUEST_TIMED_OUT),
            "{errors:?}"
        );
        assert!(gap < Duration::from_secs(20), "{gap:?} without an ack");
        let leader = addr_of(nodes, placed[&partition].leader);
        check_acknowledged(&read_all(&leader, topic, partition), &acked);
        ends.push(acked.iter().map(|(o, _)| o + 1).max().unwrap_or(0));
    }
    let min_end = ends.into_iter().min().unwrap_or(0);
    wait_replicas_equal(
        tmp,
        topic,
        &all_replicas(placed),
        min_end,
        Duration::from_secs(30),
    );
    // Identical up to the high watermark: it reaches the end of the logs compared.
    for (&partition, p) in placed {
        let (_, end) = replica_log(&node_dir(tmp, p.leader), topic, partition);
        let leader = addr_of(nodes, p.leader);
        wait_for_state(
            Duration::from_secs(10),
            &format!("{topic}-{partition}: the high watermark at the log end, {end}"),
            || high_watermark(&leader, topic, partition),
            |hw| *hw == end,
        );
    }
}

/// One acks=all record `key` = `value` to `topic`-0 on `leader`, retried until acknowledged;
/// its offset.
fn produce_keyed(leader: &str, topic: &str, key: &str, value: &str) -> i64 {
    use sluice_net::messages::{ProduceRequest, produce_request as pr};
    use sluice_net::record_batch::build::{BatchSpec, batch};
    let records = batch(
        &BatchSpec::default(),
        &[(Some(key.as_bytes()), Some(value.as_bytes()))],
    );
    let request = Request::Produce(ProduceRequest {
        acks: -1,
        timeout_ms: 5_000,
        topic_data: vec![pr::TopicProduceData {
            name: topic.into(),
            partition_data: vec![pr::PartitionProduceData {
                index: 0,
                records: Some(records.into()),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    });
    wait_for(
        Duration::from_secs(30),
        "an acknowledged keyed record",
        || {
            let mut client = Client::connect(leader, "test", CONNECT).ok()?;
            let (_, Response::Produce(r)) = client.call(11, &request).ok()? else {
                return None;
            };
            let p = &r.responses[0].partition_responses[0];
            (p.error_code == code::NONE).then_some(p.base_offset)
        },
    )
}

/// The base offset of the first batch a consumer's Fetch of `topic`-0 at `offset` gets from
/// `broker` (`None`: no batch, or no answer).
fn first_batch_at(broker: &str, topic: &str, offset: i64) -> Option<i64> {
    let mut client = Client::connect(broker, "test", CONNECT).ok()?;
    let answer = sluice_tests::fetch_at(&mut client, topic, 0, offset)?;
    let records = answer
        .responses
        .first()?
        .partitions
        .first()?
        .records
        .clone()?;
    let first = Batches::new(records.into_bytes()).next()?.ok()?;
    Some(first.base_offset())
}

/// A follower that was down while its leader compacted the log past the follower's end finds
/// offset gaps where the leader's cleaner removed superseded batches (Kafka's followers take
/// them): it appends across them, rejoins the ISR, and, elected leader when the old leader is
/// killed (it comes before the other follower in the assignment), serves the latest value of
/// every key. (Before followers took gaps it never got back into the ISR.)
#[test]
fn a_follower_behind_a_compacted_region_takes_its_gaps_and_rejoins() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cleaner = ["--set", "log_cleaner_backoff_ms=200"];
    let mut nodes = start_cluster(tmp.path(), 3, &cleaner);
    let compacted = [
        ("cleanup.policy", "compact"),
        ("segment.ms", "200"),
        ("min.cleanable.dirty.ratio", "0.01"),
    ];
    create_placed(&nodes[0].bootstrap(), "squeezed", &[[1, 3, 2]], &compacted);
    wait_in_sync(&nodes, &[1, 2, 3], "squeezed", 1);
    let leader = addr_of(&nodes, 1);
    let keys = ["k0", "k1", "k2", "k3", "k4"];
    for key in keys {
        produce_keyed(&leader, "squeezed", key, "early");
    }
    nodes[2].kill();
    wait_isr(&leader, "squeezed", &[1, 2], "node 3 out of the ISR");
    let mut latest = BTreeMap::new();
    for round in 0..40 {
        for key in keys {
            let value = format!("{key}-round-{round}");
            produce_keyed(&leader, "squeezed", key, &value);
            latest.insert(key.to_owned(), value);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    // The leader's cleaner removed the early batches node 3 holds and the ones after them.
    wait_for(
        Duration::from_secs(30),
        "a gap in the leader's compacted log after node 3's end",
        || first_batch_at(&leader, "squeezed", 5).filter(|&base| base > 5),
    );
    nodes[2].restart_after_kill();
    wait_in_sync(&nodes, &[1, 2, 3], "squeezed", 1);

    // The leader killed, node 3 leads (the first live ISR member in assignment order).
    nodes[0].kill();
    let survivor = addr_of(&nodes, 3);
    wait_for_state(
        Duration::from_secs(30),
        "node 3 leading squeezed-0",
        || placements(&survivor, "squeezed").get(&0).map(|p| p.leader),
        |leader| *leader == Some(3),
    );
    assert_eq!(read_keyed(&survivor, "squeezed"), latest);
}

/// Every record of `topic`-0 on `broker` up to its high watermark, as the latest value of
/// each key.
fn read_keyed(broker: &str, topic: &str) -> BTreeMap<String, String> {
    let mut client = Client::connect(broker, "test", CONNECT).expect("connect");
    let mut latest = BTreeMap::new();
    let mut offset = 0;
    loop {
        let answer = sluice_tests::fetch_at(&mut client, topic, 0, offset).expect("a Fetch answer");
        let p = &answer.responses[0].partitions[0];
        assert_eq!(p.error_code, code::NONE, "{p:?}");
        let Some(records) = p.records.clone().filter(|r| !r.is_empty()) else {
            break;
        };
        for batch in Batches::new(records.into_bytes()) {
            let batch = batch.expect("a batch");
            for record in batch.records().expect("records") {
                let record = record.expect("a record");
                let key = String::from_utf8_lossy(&record.key.expect("a key")).into_owned();
                let value = String::from_utf8_lossy(&record.value.expect("a value")).into_owned();
                latest.insert(key, value);
            }
            offset = batch.last_offset() + 1;
        }
        if offset >= p.high_watermark {
            break;
        }
    }
    latest
}
