//! Metadata-log snapshots (KIP-630) on three real `sluice` processes: with the snapshot bound
//! lowered (`metadata_log_max_record_bytes_between_snapshots`), the controllers write Kafka
//! `.checkpoint` files as topics are created; a node killed while many records are committed
//! restarts behind the leader's log start, downloads the leader's snapshot (FetchSnapshot),
//! installs it (its old segments go) and serves every topic; restarted again it rebuilds its
//! image from its own checkpoint plus the log after it. Then the leader is killed: topics are
//! still created under the next one, and the old leader restarts from its checkpoint.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use sluice_net::client::Client;
use sluice_net::error_code::code;
use sluice_net::messages::{DescribeQuorumRequest, describe_quorum_request as dq};
use sluice_net::{Request, Response};
use sluice_tests::{Broker, free_port, partition_count, wait_for};

/// Snapshot bound for the test: a few topics' records.
const SNAPSHOT_BYTES: &str = "metadata_log_max_record_bytes_between_snapshots=2000";
/// Topics created while the victim is down.
const TOPICS: usize = 40;

/// A leader's view: its id, its high watermark and each voter's (id, log end).
type QuorumView = (i32, i64, Vec<(i32, i64)>);

/// DescribeQuorum to one controller: the leader's view from the leader, `None` elsewhere.
fn describe(controller: SocketAddr) -> Option<QuorumView> {
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
    let p = r.topics.first()?.partitions.first()?;
    if p.error_code != code::NONE {
        return None;
    }
    let voters = p
        .current_voters
        .iter()
        .map(|v| (v.replica_id.0, v.log_end_offset))
        .collect();
    Some((p.leader_id.0, p.high_watermark, voters))
}

/// CreateTopics of `name` (2 partitions, replication factor 1) through a broker; its error,
/// with TOPIC_ALREADY_EXISTS counted as NONE: on this shared test machine a stalled controller
/// can lose its leadership (its quorum fetch timeout), and the forwarding broker then retries a
/// CreateTopics the old leader had already committed.
fn create_topic(broker: &str, name: &str) -> i16 {
    match sluice_tests::create_topic(broker, name, 2) {
        code::TOPIC_ALREADY_EXISTS => code::NONE,
        other => other,
    }
}

/// The `(end offset, epoch)` of each `.checkpoint` file and the base offset of each `.log`
/// segment in a node's metadata log directory.
fn files(node_dir: &Path) -> (Vec<(i64, i32)>, Vec<i64>) {
    let dir = node_dir.join("__cluster_metadata-0");
    let (mut checkpoints, mut segments) = (Vec::new(), Vec::new());
    for item in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let name = item.file_name().to_string_lossy().into_owned();
        if let Some((offset, epoch)) = name
            .strip_suffix(".checkpoint")
            .and_then(|s| s.split_once('-'))
        {
            checkpoints.push((
                offset.parse().expect("offset"),
                epoch.parse().expect("epoch"),
            ));
        } else if let Some(base) = name.strip_suffix(".log") {
            segments.push(base.parse().expect("base offset"));
        }
    }
    checkpoints.sort();
    segments.sort();
    (checkpoints, segments)
}

fn start_nodes(tmp: &Path) -> (Vec<(i32, SocketAddr)>, Vec<Broker>) {
    let controllers: Vec<(i32, SocketAddr)> = [1, 2, 3]
        .iter()
        .map(|&id| (id, SocketAddr::from(([127, 0, 0, 1], free_port()))))
        .collect();
    let voters: Vec<String> = controllers
        .iter()
        .map(|(id, a)| format!("{id}@{a}"))
        .collect();
    let voters = voters.join(",");
    let nodes = controllers
        .iter()
        .map(|(id, _)| {
            let node_id = id.to_string();
            let args = [
                "--node-id",
                node_id.as_str(),
                "--controller-voters",
                voters.as_str(),
                "--cores",
                "1",
                "--metrics-listen",
                "off",
                "--set",
                SNAPSHOT_BYTES,
            ];
            let dir = tmp.join(format!("node-{id}"));
            Broker::start_in(&dir, "127.0.0.1:0".parse().expect("addr"), &args)
        })
        .collect();
    (controllers, nodes)
}

/// The leader's quorum view once every live voter has caught up to its high watermark.
fn settled(controllers: &[(i32, SocketAddr)], alive: &[i32]) -> (i32, i64) {
    wait_for(Duration::from_secs(30), "a caught-up leader", || {
        let (leader, hw, voters) = controllers
            .iter()
            .filter(|(id, _)| alive.contains(id))
            .find_map(|(_, addr)| describe(*addr))?;
        let caught_up = voters
            .iter()
            .filter(|(id, _)| alive.contains(id))
            .all(|&(_, end)| end == hw && end > 0);
        caught_up.then_some((leader, hw))
    })
}

#[test]
fn a_restarted_node_catches_up_from_a_snapshot() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (controllers, mut nodes) = start_nodes(tmp.path());
    let (leader, _) = settled(&controllers, &[1, 2, 3]);
    let victim = [1, 2, 3]
        .into_iter()
        .find(|&id| id != leader)
        .expect("a follower");
    let survivor = [1, 2, 3]
        .into_iter()
        .find(|&id| id != leader && id != victim)
        .expect("another follower");
    let (_, victim_end) = settled(&controllers, &[1, 2, 3]);
    nodes[(victim - 1) as usize].kill();
    let through = nodes[(survivor - 1) as usize].bootstrap();
    // Brokers register once the quorum has a leader: until then there is no broker to place on.
    wait_for(Duration::from_secs(20), "a broker to place on", || {
        (create_topic(&through, "first") == code::NONE).then_some(())
    });
    for i in 0..TOPICS {
        let name = format!("snap-{i}");
        assert_eq!(create_topic(&through, &name), code::NONE, "{name}");
    }
    let (leader, hw) = settled(&controllers, &[leader, survivor]);
    let leader_dir = tmp.path().join(format!("node-{leader}"));
    let (checkpoints, _) = files(&leader_dir);
    let latest = checkpoints
        .last()
        .copied()
        .expect("the leader took a snapshot");
    assert!(
        latest.0 > victim_end,
        "snapshot {latest:?} past the victim's end {victim_end}"
    );
    eprintln!("leader {leader}: checkpoints {checkpoints:?}, high watermark {hw}");

    // The victim restarts behind the leader's log start: it installs a snapshot.
    nodes[(victim - 1) as usize].restart_after_kill();
    settled(&controllers, &[1, 2, 3]);
    let victim_dir = tmp.path().join(format!("node-{victim}"));
    let (checkpoints, segments) = files(&victim_dir);
    eprintln!("victim {victim}: checkpoints {checkpoints:?}, segments {segments:?}");
    assert!(!checkpoints.is_empty(), "the victim holds a snapshot");
    assert!(
        segments.first().is_some_and(|&base| base > victim_end),
        "the victim's old segments were replaced by the installed snapshot: {segments:?}"
    );
    let victim_broker = nodes[(victim - 1) as usize].bootstrap();
    for i in 0..TOPICS {
        let name = format!("snap-{i}");
        wait_for(Duration::from_secs(10), &name, || {
            (partition_count(&victim_broker, &name) == Some(2)).then_some(())
        });
    }

    // Restarted again, it rebuilds its image from its own checkpoint and the log after it.
    nodes[(victim - 1) as usize].restart_after_kill();
    assert_eq!(create_topic(&through, "after-restart"), code::NONE);
    settled(&controllers, &[1, 2, 3]);
    for name in ["snap-0", "snap-39", "after-restart"] {
        wait_for(Duration::from_secs(10), name, || {
            (partition_count(&victim_broker, name) == Some(2)).then_some(())
        });
    }

    // kill -9 of the leader: a node whose image came from snapshots may lead next; topics can
    // still be created, and the old leader restarts from its checkpoint and catches up.
    let (leader, _) = settled(&controllers, &[1, 2, 3]);
    nodes[(leader - 1) as usize].kill();
    let alive: Vec<i32> = [1, 2, 3].into_iter().filter(|&id| id != leader).collect();
    let through = nodes[(alive[0] - 1) as usize].bootstrap();
    wait_for(
        Duration::from_secs(20),
        "a topic created after failover",
        || (create_topic(&through, "after-failover") == code::NONE).then_some(()),
    );
    nodes[(leader - 1) as usize].restart_after_kill();
    settled(&controllers, &[1, 2, 3]);
    let old_leader = nodes[(leader - 1) as usize].bootstrap();
    for name in ["snap-1", "after-failover"] {
        wait_for(Duration::from_secs(10), name, || {
            (partition_count(&old_leader, name) == Some(2)).then_some(())
        });
    }
}
