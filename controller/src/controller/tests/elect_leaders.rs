//! ElectLeaders and the leader rebalance on the controller (`elect_leaders.rs`): the preferred
//! replica leads again once back in the ISR, each of Kafka's per-partition answers, a null list
//! of partitions, the unclean election of a leaderless partition, the whole-request refusals,
//! and the rebalance's switch, interval and bound.

#[cfg(test)]
use super::*;
use crate::controller::elect_leaders::MAX_ELECTIONS_PER_IMBALANCE;
use sluice_net::messages::alter_partition_request::{BrokerState, PartitionData, TopicData};
use sluice_net::messages::elect_leaders_request::TopicPartitions;
use sluice_net::messages::{
    AlterPartitionRequest, BrokerRegistrationChangeRecord, ElectLeadersRequest,
    ElectLeadersResponse, PartitionChangeRecord,
};

const PREFERRED: i8 = 0;
const UNCLEAN: i8 = 1;
const INTERVAL: u64 = 300_000;

/// Elects with `election_type` over `asked` (`None`: every partition); the answer and the
/// number of records written.
fn elect(
    c: &mut Cluster,
    election_type: i8,
    asked: Option<&[(&str, &[i32])]>,
) -> (ElectLeadersResponse, usize) {
    let topic_partitions = asked.map(|topics| {
        let topic = |&(name, partitions): &(&str, &[i32])| TopicPartitions {
            topic: name.into(),
            partitions: partitions.to_vec(),
            ..Default::default()
        };
        topics.iter().map(topic).collect()
    });
    let req = ElectLeadersRequest {
        election_type,
        topic_partitions,
        ..Default::default()
    };
    let before = c.log.len();
    let reply = run!(c, elect_leaders(&req));
    (reply, c.log.len() - before)
}

/// The one partition's answer (error code, message) of a one-partition request.
fn elect_one(c: &mut Cluster, election_type: i8, name: &str, index: i32) -> (i16, Option<String>) {
    let (reply, written) = elect(c, election_type, Some(&[(name, &[index])]));
    assert_eq!(reply.error_code, 0);
    let p = &reply.replica_election_results[0].partition_result[0];
    assert_eq!(p.partition_id, index);
    if p.error_code != 0 {
        assert_eq!(written, 0, "a refused election writes nothing");
    }
    (
        p.error_code,
        p.error_message.as_ref().map(|m| m.to_string()),
    )
}

fn code(e: ErrorCode) -> i16 {
    e.code()
}

fn last_change(c: &Cluster) -> PartitionChangeRecord {
    match &c.log.last().unwrap().record {
        MetadataRecord::PartitionChange(r) => r.clone(),
        other => panic!("not a partition change: {other:?}"),
    }
}

/// Three live brokers and `topics` (name, partitions), each of replication factor 3.
fn three_brokers(topics: &[(&str, i32)]) -> (Cluster, Vec<i64>) {
    let mut c = Cluster::new(1);
    let epochs = c.live_brokers(0, &[1, 2, 3]);
    for &(name, partitions) in topics {
        assert_eq!(c.create(name, partitions, 3).0, 0);
    }
    (c, epochs)
}

/// Broker 1's session expires (2 and 3 heartbeat): it is fenced and leaves every ISR; then it
/// heartbeats again and is unfenced, outside the ISRs.
fn bounce_broker_1(c: &mut Cluster, epochs: &[i64]) {
    c.heartbeat(5_000, 2, epochs[1], 0);
    c.heartbeat(5_000, 3, epochs[2], 0);
    assert_eq!(run!(c, tick(TIMEOUT + 1)), vec![1]);
    let offset = c.log.len() as i64;
    assert!(!c.heartbeat(TIMEOUT + 2, 1, epochs[0], offset).2);
}

/// The leader of `name`-`index` adds `broker` back to the ISR (AlterPartition v3): accepted.
fn rejoin_isr(c: &mut Cluster, epochs: &[i64], name: &str, indexes: &[i32], broker: i32) {
    let reply = send_rejoin(c, epochs, name, indexes, broker);
    let partitions = &reply.topics[0].partitions;
    assert!(partitions.iter().all(|p| p.error_code == 0), "{reply:?}");
}

/// The leader of `name`-`index` asks to add `broker` back to the ISR (AlterPartition v3).
fn send_rejoin(
    c: &mut Cluster,
    epochs: &[i64],
    name: &str,
    indexes: &[i32],
    broker: i32,
) -> sluice_net::messages::AlterPartitionResponse {
    let topic = c.committed.topic_by_name(name).unwrap();
    let mut leaders = Vec::new();
    let mut partitions = Vec::new();
    for &index in indexes {
        let p = &topic.partitions[&index];
        let mut isr = p.isr.clone();
        isr.push(broker);
        let member = |b: i32| BrokerState {
            broker_id: b.into(),
            broker_epoch: epochs[b as usize - 1],
            ..Default::default()
        };
        partitions.push(PartitionData {
            partition_index: index,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            new_isr_with_epochs: isr.into_iter().map(member).collect(),
            ..Default::default()
        });
        leaders.push(p.leader);
    }
    leaders.dedup();
    assert_eq!(leaders.len(), 1, "one leader sends the request");
    let req = AlterPartitionRequest {
        broker_id: leaders[0].into(),
        broker_epoch: epochs[leaders[0] as usize - 1],
        topics: vec![TopicData {
            topic_id: topic.id,
            partitions,
            ..Default::default()
        }],
        ..Default::default()
    };
    run!(c, alter_partition(3, &req))
}

/// Topic "t" (one partition of replicas [1, ..]) led by another broker, with 1 back in the ISR
/// when `rejoined`.
fn led_away_from_1(rejoined: bool) -> (Cluster, Vec<i64>) {
    let (mut c, epochs) = three_brokers(&[]);
    let req = CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: "t".into(),
            num_partitions: -1,
            replication_factor: -1,
            assignments: vec![CreatableReplicaAssignment {
                partition_index: 0,
                broker_ids: vec![1.into(), 2.into(), 3.into()],
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    assert_eq!(run!(c, create_topics(&req)).topics[0].error_code, 0);
    assert_eq!(c.partitions("t")[0].leader, 1);
    bounce_broker_1(&mut c, &epochs);
    let p = &c.partitions("t")[0];
    assert_eq!((p.leader, p.isr.clone()), (2, vec![2, 3]));
    if rejoined {
        rejoin_isr(&mut c, &epochs, "t", &[0], 1);
        assert_eq!(c.partitions("t")[0].isr, vec![2, 3, 1]);
    }
    (c, epochs)
}

/// The preferred replica fenced and back: not available while outside the ISR; once the leader
/// adds it back, the election moves leadership to it with one record, bumping the leader epoch
/// (in the image the controller applied); then the election is not needed.
#[test]
fn preferred_election_moves_leadership_back_once_in_the_isr() {
    let (mut c, epochs) = led_away_from_1(false);
    let not_available = Some("The preferred leader was not available.".to_string());
    let answer = elect_one(&mut c, PREFERRED, "t", 0);
    assert_eq!(
        answer,
        (
            code(ErrorCode::PREFERRED_LEADER_NOT_AVAILABLE),
            not_available
        )
    );
    rejoin_isr(&mut c, &epochs, "t", &[0], 1);
    let before = c.partitions("t")[0].clone();
    let (reply, written) = elect(&mut c, PREFERRED, Some(&[("t", &[0])]));
    assert_eq!(written, 1);
    let result = &reply.replica_election_results[0];
    assert_eq!(result.topic.as_str(), "t");
    let p = &result.partition_result[0];
    assert_eq!(
        (p.partition_id, p.error_code, p.error_message.clone()),
        (0, 0, None)
    );
    let record = last_change(&c);
    assert_eq!(record.leader.get(), 1);
    assert!(record.isr.is_none() && record.eligible_leader_replicas.is_none());
    let after = &c.controller.image().topic_by_name("t").unwrap().partitions[&0];
    assert_eq!(after.leader, 1);
    assert_eq!(after.leader_epoch, before.leader_epoch + 1);
    assert_eq!(after.partition_epoch, before.partition_epoch + 1);
    assert_eq!(after.isr, before.isr);
    let not_needed = Some("Leader election not needed for topic partition.".to_string());
    let answer = elect_one(&mut c, PREFERRED, "t", 0);
    assert_eq!(answer, (code(ErrorCode::ELECTION_NOT_NEEDED), not_needed));
}

/// A broker state change written as is (fenced: 1 fence, -1 unfence; shutdown: 1 or 0).
fn change_broker(c: &mut Cluster, id: i32, epoch: i64, fenced: i8, shutdown: i8) {
    let record = BrokerRegistrationChangeRecord {
        broker_id: id.into(),
        broker_epoch: epoch,
        fenced,
        in_controlled_shutdown: shutdown,
        ..Default::default()
    };
    let record = VersionedRecord {
        version: 1,
        record: MetadataRecord::BrokerRegistrationChange(record),
    };
    run!(c, propose(vec![record], ()));
}

/// The preferred replica in the ISR but fenced, or in controlled shutdown, cannot lead.
#[test]
fn preferred_replica_fenced_or_shutting_down_is_not_available() {
    let (mut c, epochs) = led_away_from_1(true);
    let not_available = code(ErrorCode::PREFERRED_LEADER_NOT_AVAILABLE);
    change_broker(&mut c, 1, epochs[0], 1, 0);
    assert_eq!(elect_one(&mut c, PREFERRED, "t", 0).0, not_available);
    change_broker(&mut c, 1, epochs[0], -1, 1);
    assert!(c.committed.broker(1).unwrap().in_controlled_shutdown);
    assert_eq!(elect_one(&mut c, PREFERRED, "t", 0).0, not_available);
    assert_eq!(c.partitions("t")[0].leader, 2);
}

/// An unknown topic or partition, with Kafka's messages; the other partitions of the request
/// are still elected.
#[test]
fn unknown_topic_and_partition() {
    let (mut c, _) = led_away_from_1(true);
    let asked: &[(&str, &[i32])] = &[("nope", &[0]), ("t", &[7, 0])];
    let (reply, written) = elect(&mut c, PREFERRED, Some(asked));
    assert_eq!(written, 1);
    let results = &reply.replica_election_results;
    assert_eq!(results.len(), 2);
    let unknown = code(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION);
    let answer = |t: usize, i: usize| {
        let p = &results[t].partition_result[i];
        let message = p.error_message.as_ref().map(|m| m.to_string());
        (p.partition_id, p.error_code, message)
    };
    let no_topic = Some("No such topic as nope".to_string());
    assert_eq!(answer(0, 0), (0, unknown, no_topic));
    let no_partition = Some("No such partition as t-7".to_string());
    assert_eq!(answer(1, 0), (7, unknown, no_partition));
    assert_eq!(answer(1, 1), (0, 0, None));
    assert_eq!(c.partitions("t")[0].leader, 1);
}

/// A null list elects every partition: every topic is answered, by name, and only its
/// partitions that needed an election (elected, or not available).
#[test]
fn null_partitions_mean_every_partition() {
    let (mut c, epochs) = three_brokers(&[("b", 3), ("a", 3), ("c", 1)]);
    bounce_broker_1(&mut c, &epochs);
    let led_away = |c: &Cluster, name: &str| -> Vec<i32> {
        let t = c.committed.topic_by_name(name).unwrap();
        let away = t
            .partitions
            .iter()
            .filter(|(_, p)| p.leader != p.replicas[0]);
        away.map(|(&i, _)| i).collect()
    };
    let (away_a, away_b) = (led_away(&c, "a"), led_away(&c, "b"));
    assert!(
        !away_a.is_empty() && !away_b.is_empty(),
        "placement left 1 no lead"
    );
    rejoin_isr(&mut c, &epochs, "a", &away_a[..1], 1);
    let (reply, written) = elect(&mut c, PREFERRED, None);
    assert_eq!(written, 1);
    let answered: Vec<(String, Vec<(i32, i16)>)> = reply
        .replica_election_results
        .iter()
        .map(|t| {
            let partitions = t.partition_result.iter();
            let partitions = partitions.map(|p| (p.partition_id, p.error_code)).collect();
            (t.topic.to_string(), partitions)
        })
        .collect();
    let not_available = code(ErrorCode::PREFERRED_LEADER_NOT_AVAILABLE);
    let mut expected_a = vec![(away_a[0], 0)];
    expected_a.extend(away_a[1..].iter().map(|&i| (i, not_available)));
    let expected_b = away_b.iter().map(|&i| (i, not_available)).collect();
    let expected_c = led_away(&c, "c")
        .iter()
        .map(|&i| (i, not_available))
        .collect();
    let expected = vec![
        ("a".to_string(), expected_a),
        ("b".to_string(), expected_b),
        ("c".to_string(), expected_c),
    ];
    assert_eq!(answered, expected);
    let elected = &c.partitions("a")[away_a[0] as usize];
    assert_eq!(elected.leader, 1);
}

/// Two brokers, topic "t" (one partition, replicas [p, q]): q's session expires, then p's
/// (ELR on: the ISR empties into the ELR, p the last known leader), then q comes back: the
/// partition stays leaderless (q was in neither ISR nor ELR). Returns (p, q).
fn leaderless() -> (Cluster, i32, i32) {
    let mut c = Cluster::new(1);
    let epochs = c.live_brokers(0, &[1, 2]);
    assert_eq!(c.create("t", 1, 2).0, 0);
    let replicas = c.partitions("t")[0].replicas.clone();
    let (p, q) = (replicas[0], replicas[1]);
    c.heartbeat(5_000, p, epochs[p as usize - 1], 0);
    assert_eq!(run!(c, tick(TIMEOUT + 1)), vec![q]);
    assert_eq!(run!(c, tick(5_000 + TIMEOUT + 1)), vec![p]);
    let part = c.partitions("t")[0].clone();
    assert_eq!((part.leader, part.isr.clone()), (-1, vec![]));
    assert_eq!(
        (part.elr.clone(), part.last_known_elr.clone()),
        (vec![p], vec![p])
    );
    let offset = c.log.len() as i64;
    let unclean = elect_one(&mut c, UNCLEAN, "t", 0);
    let no_live = "Eligible topic partition leaders are not available.".to_string();
    assert_eq!(
        unclean,
        (
            code(ErrorCode::ELIGIBLE_LEADERS_NOT_AVAILABLE),
            Some(no_live)
        )
    );
    assert!(
        !c.heartbeat(5_000 + TIMEOUT + 2, q, epochs[q as usize - 1], offset)
            .2
    );
    assert_eq!(c.partitions("t")[0].leader, -1);
    (c, p, q)
}

/// The unclean election of a leaderless partition elects the live replica: it alone in the
/// ISR, the ELR and last known leader cleared, its log recovering, the leader epoch bumped;
/// the preferred election cannot (the preferred replica is fenced); an unclean election of a
/// led partition is not needed.
#[test]
fn unclean_election_of_a_leaderless_partition() {
    let (mut c, _, q) = leaderless();
    let preferred = elect_one(&mut c, PREFERRED, "t", 0).0;
    assert_eq!(preferred, code(ErrorCode::PREFERRED_LEADER_NOT_AVAILABLE));
    let before = c.partitions("t")[0].clone();
    assert_eq!(elect_one(&mut c, UNCLEAN, "t", 0), (0, None));
    let record = last_change(&c);
    assert_eq!(record.leader.get(), q);
    assert_eq!(record.isr.as_ref().map(|v| v.len()), Some(1));
    assert_eq!(record.leader_recovery_state, 1);
    let after = &c.controller.image().topic_by_name("t").unwrap().partitions[&0];
    assert_eq!((after.leader, after.isr.clone()), (q, vec![q]));
    assert!(after.elr.is_empty() && after.last_known_elr.is_empty());
    assert_eq!(after.leader_recovery_state, 1);
    assert_eq!(after.leader_epoch, before.leader_epoch + 1);
    let again = elect_one(&mut c, UNCLEAN, "t", 0).0;
    assert_eq!(again, code(ErrorCode::ELECTION_NOT_NEEDED));
}

/// An unknown election type refuses the whole request (every partition asked answered with
/// it); an empty list is answered empty before anything is checked.
#[test]
fn unknown_election_type_and_empty_list() {
    let (mut c, _) = led_away_from_1(true);
    let (reply, written) = elect(&mut c, 2, Some(&[("t", &[0, 3])]));
    assert_eq!(
        (reply.error_code, written),
        (code(ErrorCode::INVALID_REQUEST), 0)
    );
    let partitions = &reply.replica_election_results[0].partition_result;
    assert_eq!(partitions.len(), 2);
    for p in partitions {
        assert_eq!(p.error_code, code(ErrorCode::INVALID_REQUEST));
        let message = p.error_message.as_ref().map(|m| m.to_string());
        assert_eq!(message.as_deref(), Some("Unknown election type 2"));
    }
    let (reply, _) = elect(&mut c, -1, None);
    assert_eq!(reply.error_code, code(ErrorCode::INVALID_REQUEST));
    assert!(reply.replica_election_results.is_empty());
    let (reply, written) = elect(&mut c, 5, Some(&[]));
    assert_eq!((reply, written), (ElectLeadersResponse::default(), 0));
}

/// The rebalance is first due one interval after activation, then one interval after each
/// run; a due run elects the preferred leader.
#[test]
fn rebalance_respects_its_interval() {
    let (mut c, _) = led_away_from_1(true);
    assert_eq!(c.controller.next_rebalance_ms(), Some(INTERVAL));
    assert_eq!(run!(c, rebalance_leaders(INTERVAL - 1)), 0);
    assert_eq!(c.partitions("t")[0].leader, 2);
    let epoch = c.partitions("t")[0].leader_epoch;
    assert_eq!(run!(c, rebalance_leaders(INTERVAL)), 1);
    let p = &c.partitions("t")[0];
    assert_eq!((p.leader, p.leader_epoch), (1, epoch + 1));
    assert_eq!(c.controller.next_rebalance_ms(), Some(2 * INTERVAL));
    assert_eq!(run!(c, rebalance_leaders(2 * INTERVAL - 1)), 0);
    assert_eq!(run!(c, rebalance_leaders(2 * INTERVAL)), 0);
    assert_eq!(c.controller.next_rebalance_ms(), Some(3 * INTERVAL));
    c.failover(2 * INTERVAL + 5, 2);
    assert_eq!(c.controller.next_rebalance_ms(), Some(3 * INTERVAL + 5));
}

/// With `auto.leader.rebalance.enable` off nothing is ever due or elected.
#[test]
fn rebalance_disabled_does_nothing() {
    let (mut c, _) = led_away_from_1(true);
    c.controller.config.auto_leader_rebalance = false;
    assert_eq!(c.controller.next_rebalance_ms(), None);
    assert_eq!(run!(c, rebalance_leaders(100 * INTERVAL)), 0);
    assert_eq!(c.partitions("t")[0].leader, 2);
}

/// A run writes at most 1,000 elections and is due again 10 ms later; the next run elects the
/// rest and waits an interval again.
#[test]
fn rebalance_is_bounded_per_run() {
    let mut c = Cluster::new(1);
    let epochs = c.live_brokers(0, &[1, 2]);
    assert_eq!(c.create("t", 2_100, 2).0, 0);
    c.heartbeat(5_000, 2, epochs[1], 0);
    assert_eq!(run!(c, tick(TIMEOUT + 1)), vec![1]);
    let offset = c.log.len() as i64;
    assert!(!c.heartbeat(TIMEOUT + 2, 1, epochs[0], offset).2);
    let led_away: Vec<i32> = c
        .partitions("t")
        .iter()
        .enumerate()
        .filter(|(_, p)| p.replicas[0] == 1)
        .map(|(i, _)| i as i32)
        .collect();
    assert!(
        led_away.len() > MAX_ELECTIONS_PER_IMBALANCE,
        "{}",
        led_away.len()
    );
    rejoin_isr(&mut c, &epochs, "t", &led_away, 1);
    let first = run!(c, rebalance_leaders(INTERVAL));
    assert_eq!(first, MAX_ELECTIONS_PER_IMBALANCE);
    assert_eq!(c.controller.next_rebalance_ms(), Some(INTERVAL + 10));
    assert_eq!(run!(c, rebalance_leaders(INTERVAL + 9)), 0);
    let rest = run!(c, rebalance_leaders(INTERVAL + 10));
    assert_eq!(first + rest, led_away.len());
    assert_eq!(c.controller.next_rebalance_ms(), Some(2 * INTERVAL + 10));
    assert!(c.partitions("t").iter().all(|p| p.leader == p.replicas[0]));
}

/// Random requests, ticks, elections of both kinds and rebalances keep the invariants: every
/// leader is a replica in the ISR and unfenced, and replaying the log gives the same image.
#[test]
fn random_elections_keep_invariants() {
    let mut elected = [0; 3];
    for seed in 0..20u64 {
        let mut rng = Rng::new(seed);
        let mut c = Cluster::new(seed);
        let mut epochs: BTreeMap<i32, i64> = BTreeMap::new();
        let mut now = 0;
        for step in 0..300 {
            now += rng.below(5_000);
            match rng.below(8) {
                0 => {
                    let election_type = rng.below(2) as i8;
                    let (_, written) = elect(&mut c, election_type, None);
                    elected[election_type as usize] += written;
                }
                1 => elected[2] += run!(c, rebalance_leaders(now)),
                2 => catch_up_one(&mut c, rng.below(1_000) as usize),
                _ => random_step(&mut c, &mut rng, &mut epochs, now, step),
            }
            check_invariants(&c, seed);
        }
        c.failover(now, seed + 1);
    }
    assert!(
        elected.iter().all(|&n| n > 0),
        "preferred, unclean, rebalance: {elected:?}"
    );
}

/// The `pick`-th led partition with an unfenced replica outside its ISR: its leader adds that
/// replica back (a follower caught up).
fn catch_up_one(c: &mut Cluster, pick: usize) {
    let image = &c.committed;
    let unfenced = |b: i32| image.broker(b).is_some_and(|b| !b.fenced);
    let mut candidates = Vec::new();
    for t in image.topics().values() {
        for (&i, p) in &t.partitions {
            let outside = p
                .replicas
                .iter()
                .find(|r| !p.isr.contains(r) && unfenced(**r));
            if let Some(&r) = outside.filter(|_| p.leader >= 0) {
                candidates.push((t.name.clone(), i, r));
            }
        }
    }
    if candidates.is_empty() {
        return;
    }
    let (name, index, replica) = candidates[pick % candidates.len()].clone();
    let epochs: Vec<i64> = (1..=4)
        .map(|b| image.broker(b).map_or(-1, |b| b.epoch))
        .collect();
    // An expansion completing a reassignment that removes the leader elects another one.
    let reply = send_rejoin(c, &epochs, &name, &[index], replica);
    let code = reply.topics[0].partitions[0].error_code;
    assert!(
        code == 0 || code == ErrorCode::NEW_LEADER_ELECTED.code(),
        "{reply:?}"
    );
}
