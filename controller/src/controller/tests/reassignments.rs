//! Partition reassignments on the controller (`reassignments.rs`, `change.rs`): a reassignment
//! started and completed by the leader's ISR expansion, a removed leader replaced (with
//! NEW_LEADER_ELECTED), a target already in sync, cancel, replace, Kafka's refusals, the list,
//! and elections during a reassignment.

#[cfg(test)]
use super::*;
use sluice_net::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use sluice_net::messages::alter_partition_request::{BrokerState, PartitionData, TopicData};
use sluice_net::messages::alter_partition_response as altered;
use sluice_net::messages::elect_leaders_request::TopicPartitions;
use sluice_net::messages::list_partition_reassignments_request::ListPartitionReassignmentsTopics;
use sluice_net::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, AlterPartitionRequest,
    ElectLeadersRequest, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
    PartitionChangeRecord,
};

/// One partition to reassign: topic, partition, target replicas (`None` cancels).
type Target<'a> = (&'a str, i32, Option<&'a [i32]>);

/// Live brokers `brokers` and topic "t": one partition of replicas `replicas`, led by the first.
fn setup(brokers: &[i32], replicas: &[i32]) -> (Cluster, Vec<i64>) {
    let mut c = Cluster::new(1);
    let epochs = c.live_brokers(0, brokers);
    create_manual(&mut c, "t", &[replicas]);
    assert_eq!(partition(&c, "t", 0).leader, replicas[0]);
    (c, epochs)
}

/// Creates `name` with one partition per replica list.
fn create_manual(c: &mut Cluster, name: &str, partitions: &[&[i32]]) {
    let assignment = |(index, replicas): (i32, &&[i32])| CreatableReplicaAssignment {
        partition_index: index,
        broker_ids: replicas.iter().map(|&b| b.into()).collect(),
        ..Default::default()
    };
    let req = CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: name.into(),
            num_partitions: -1,
            replication_factor: -1,
            assignments: (0..).zip(partitions).map(assignment).collect(),
            ..Default::default()
        }],
        ..Default::default()
    };
    assert_eq!(run!(c, create_topics(&req)).topics[0].error_code, 0);
}

fn partition(c: &Cluster, name: &str, index: i32) -> PartitionRegistration {
    c.committed.topic_by_name(name).unwrap().partitions[&index].clone()
}

/// A broker's log directory (the test registration's).
fn dir(broker: i32) -> Uuid {
    let mut dir = [7u8; 16];
    dir[0] = broker as u8;
    Uuid(dir)
}

fn ids(v: &[sluice_net::BrokerId]) -> Vec<i32> {
    v.iter().map(|b| b.get()).collect()
}

fn request(targets: &[Target<'_>], allow_rf_change: bool) -> AlterPartitionReassignmentsRequest {
    let mut topics: Vec<ReassignableTopic> = Vec::new();
    for &(name, index, replicas) in targets {
        let partition = ReassignablePartition {
            partition_index: index,
            replicas: replicas.map(|r| r.iter().map(|&b| b.into()).collect()),
            ..Default::default()
        };
        match topics.iter_mut().find(|t| t.name.as_str() == name) {
            Some(t) => t.partitions.push(partition),
            None => topics.push(ReassignableTopic {
                name: name.into(),
                partitions: vec![partition],
                ..Default::default()
            }),
        }
    }
    AlterPartitionReassignmentsRequest {
        allow_replication_factor_change: allow_rf_change,
        topics,
        ..Default::default()
    }
}

/// Sends the reassignments; the answer and the number of records written.
fn reassign(
    c: &mut Cluster,
    targets: &[Target<'_>],
    allow_rf_change: bool,
) -> (AlterPartitionReassignmentsResponse, usize) {
    let before = c.log.len();
    let reply = run!(
        c,
        alter_partition_reassignments(&request(targets, allow_rf_change))
    );
    (reply, c.log.len() - before)
}

/// Every partition's (error code, message), in the answer's order.
fn outcomes(reply: &AlterPartitionReassignmentsResponse) -> Vec<(i16, Option<String>)> {
    let partitions = reply.responses.iter().flat_map(|t| &t.partitions);
    partitions
        .map(|p| {
            (
                p.error_code,
                p.error_message.as_ref().map(|m| m.to_string()),
            )
        })
        .collect()
}

/// Reassigns "t"-0 to `target`: answered NONE, no message.
fn reassign_t(c: &mut Cluster, target: Option<&[i32]>) -> usize {
    let (reply, written) = reassign(c, &[("t", 0, target)], true);
    assert_eq!(outcomes(&reply), vec![(0, None)]);
    written
}

fn last_change(c: &Cluster) -> PartitionChangeRecord {
    match &c.log.last().unwrap().record {
        MetadataRecord::PartitionChange(r) => r.clone(),
        other => panic!("not a partition change: {other:?}"),
    }
}

/// The leader of "t"-0 asks for ISR `isr` (AlterPartition v3); its answer.
fn alter_isr(c: &mut Cluster, epochs: &[i64], isr: &[i32]) -> altered::PartitionData {
    let topic = c.committed.topic_by_name("t").unwrap();
    let p = &topic.partitions[&0];
    let member = |&b: &i32| BrokerState {
        broker_id: b.into(),
        broker_epoch: epochs[b as usize - 1],
        ..Default::default()
    };
    let req = AlterPartitionRequest {
        broker_id: p.leader.into(),
        broker_epoch: epochs[p.leader as usize - 1],
        topics: vec![TopicData {
            topic_id: topic.id,
            partitions: vec![PartitionData {
                partition_index: 0,
                leader_epoch: p.leader_epoch,
                partition_epoch: p.partition_epoch,
                new_isr_with_epochs: isr.iter().map(member).collect(),
                leader_recovery_state: p.leader_recovery_state,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let reply = run!(c, alter_partition(3, &req));
    reply.topics[0].partitions[0].clone()
}

/// The leader of "t"-0 adds `broker` to its ISR.
fn expand_isr(c: &mut Cluster, epochs: &[i64], broker: i32) -> altered::PartitionData {
    let mut isr = partition(c, "t", 0).isr;
    isr.push(broker);
    alter_isr(c, epochs, &isr)
}

/// Broker 1's session expires while the others heartbeat: it is fenced.
fn fence_broker_1(c: &mut Cluster, epochs: &[i64]) {
    for (id, &epoch) in (2..).zip(&epochs[1..]) {
        c.heartbeat(5_000, id, epoch, 0);
    }
    assert_eq!(run!(c, tick(TIMEOUT + 1)), vec![1]);
}

fn list(c: &Cluster, topics: Option<&[(&str, &[i32])]>) -> ListPartitionReassignmentsResponse {
    let topics = topics.map(|topics| {
        let topic = |&(name, indexes): &(&str, &[i32])| ListPartitionReassignmentsTopics {
            name: name.into(),
            partition_indexes: indexes.to_vec(),
            ..Default::default()
        };
        topics.iter().map(topic).collect()
    });
    let req = ListPartitionReassignmentsRequest {
        topics,
        ..Default::default()
    };
    let reply = c.controller.list_partition_reassignments(&req);
    assert_eq!(list_partition_reassignments(&c.committed, &req), reply);
    reply
}

/// Listed reassignments: (topic, partition, replicas, adding, removing).
type Listed = (String, i32, Vec<i32>, Vec<i32>, Vec<i32>);

fn listed(reply: &ListPartitionReassignmentsResponse) -> Vec<Listed> {
    let mut out = Vec::new();
    for t in &reply.topics {
        for p in &t.partitions {
            out.push((
                t.name.to_string(),
                p.partition_index,
                ids(&p.replicas),
                ids(&p.adding_replicas),
                ids(&p.removing_replicas),
            ));
        }
    }
    out
}

/// [1, 2, 3] to [1, 2, 4]: the first record adds 4 (replicas [1, 2, 4, 3], adding [4], removing
/// [3], the ISR and leader epoch as they were); the leader's ISR expansion with 4 completes it in
/// its record: 3 leaves the replicas and the ISR, the leader epoch is bumped, adding and removing
/// cleared; the leader gets the new state.
#[test]
fn reassignment_starts_then_completes_when_the_new_replica_joins_the_isr() {
    let (mut c, epochs) = setup(&[1, 2, 3, 4], &[1, 2, 3]);
    let before = partition(&c, "t", 0);
    assert_eq!(reassign_t(&mut c, Some(&[1, 2, 4])), 1);
    let record = last_change(&c);
    assert_eq!(record.replicas.as_deref().map(ids), Some(vec![1, 2, 4, 3]));
    assert_eq!(record.adding_replicas.as_deref().map(ids), Some(vec![4]));
    assert_eq!(record.removing_replicas.as_deref().map(ids), Some(vec![3]));
    assert_eq!(
        record.directories,
        Some(vec![dir(1), dir(2), dir(4), dir(3)])
    );
    assert_eq!((record.leader.get(), record.isr.is_none()), (-2, true));
    let p = partition(&c, "t", 0);
    assert_eq!((p.leader, p.leader_epoch), (1, before.leader_epoch));
    assert_eq!(p.partition_epoch, before.partition_epoch + 1);
    assert_eq!(p.isr, vec![1, 2, 3]);
    let listing = listed(&list(&c, None));
    let t = "t".to_string();
    assert_eq!(listing, vec![(t, 0, vec![1, 2, 4, 3], vec![4], vec![3])]);

    let answer = expand_isr(&mut c, &epochs, 4);
    assert_eq!(answer.error_code, 0);
    let record = last_change(&c);
    assert_eq!(record.replicas.as_deref().map(ids), Some(vec![1, 2, 4]));
    assert_eq!(record.isr.as_deref().map(ids), Some(vec![1, 2, 4]));
    assert_eq!(record.adding_replicas.as_deref().map(ids), Some(vec![]));
    assert_eq!(record.removing_replicas.as_deref().map(ids), Some(vec![]));
    assert_eq!(record.directories, Some(vec![dir(1), dir(2), dir(4)]));
    assert_eq!(record.leader.get(), 1, "the leader epoch is bumped");
    let p = partition(&c, "t", 0);
    assert_eq!(
        (p.replicas.clone(), p.isr.clone()),
        (vec![1, 2, 4], vec![1, 2, 4])
    );
    assert!(p.adding_replicas.is_empty() && p.removing_replicas.is_empty());
    assert_eq!((p.leader, p.leader_epoch), (1, before.leader_epoch + 1));
    assert_eq!(
        (answer.leader_id.get(), answer.leader_epoch),
        (1, p.leader_epoch)
    );
    assert_eq!(ids(&answer.isr), vec![1, 2, 4]);
    assert_eq!(answer.partition_epoch, p.partition_epoch);
    assert!(list(&c, None).topics.is_empty());
}

/// [1, 2, 3] to [4, 2, 3], led by 1: 1 leads until the ISR expansion with 4 completes the
/// reassignment; then 4 (the first replica of the target in the new ISR) is elected, and 1's
/// AlterPartition is answered NEW_LEADER_ELECTED, its record written all the same.
#[test]
fn completion_removing_the_leader_elects_a_new_one() {
    let (mut c, epochs) = setup(&[1, 2, 3, 4], &[1, 2, 3]);
    reassign_t(&mut c, Some(&[4, 2, 3]));
    let p = partition(&c, "t", 0);
    assert_eq!((p.replicas.clone(), p.leader), (vec![4, 2, 3, 1], 1));
    let before = c.log.len();
    let answer = expand_isr(&mut c, &epochs, 4);
    assert_eq!(answer.error_code, ErrorCode::NEW_LEADER_ELECTED.code());
    assert_eq!(c.log.len(), before + 1);
    let record = last_change(&c);
    assert_eq!(record.leader.get(), 4);
    assert_eq!(record.isr.as_deref().map(ids), Some(vec![2, 3, 4]));
    let after = partition(&c, "t", 0);
    assert_eq!(
        (after.replicas.clone(), after.isr.clone()),
        (vec![4, 2, 3], vec![2, 3, 4])
    );
    assert_eq!((after.leader, after.leader_epoch), (4, p.leader_epoch + 1));
}

/// A target the ISR already allows completes in the first record: a shrink to in-sync
/// replicas (the leader removed: the first target replica in sync leads), and a reordering
/// (the leader and its epoch stay).
#[test]
fn a_target_already_in_sync_completes_at_once() {
    let (mut c, _) = setup(&[1, 2, 3], &[1, 2, 3]);
    assert_eq!(reassign_t(&mut c, Some(&[3, 2])), 1);
    let record = last_change(&c);
    assert_eq!(record.replicas.as_deref().map(ids), Some(vec![3, 2]));
    assert_eq!(record.isr.as_deref().map(ids), Some(vec![2, 3]));
    assert_eq!(record.leader.get(), 3);
    assert!(record.adding_replicas.is_none() && record.removing_replicas.is_none());
    assert_eq!(record.directories, Some(vec![dir(3), dir(2)]));
    let p = partition(&c, "t", 0);
    assert_eq!(
        (p.replicas.clone(), p.isr.clone(), p.leader),
        (vec![3, 2], vec![2, 3], 3)
    );

    let (mut c, _) = setup(&[1, 2, 3], &[1, 2, 3]);
    assert_eq!(reassign_t(&mut c, Some(&[2, 3, 1])), 1);
    let record = last_change(&c);
    assert_eq!(record.replicas.as_deref().map(ids), Some(vec![2, 3, 1]));
    assert_eq!((record.leader.get(), record.isr.is_none()), (-2, true));
    let p = partition(&c, "t", 0);
    assert_eq!((p.leader, p.leader_epoch), (1, 0));
    assert!(list(&c, None).topics.is_empty());
    assert_eq!(reassign_t(&mut c, Some(&[2, 3, 1])), 0, "nothing to change");
}

/// Cancelling reverts to the original replicas (those not being added) and clears adding and
/// removing, bumping the leader epoch as a replica leaves; a second cancel finds nothing.
#[test]
fn cancel_reverts_to_the_original_replicas() {
    let (mut c, _) = setup(&[1, 2, 3, 4], &[1, 2, 3]);
    reassign_t(&mut c, Some(&[1, 2, 4]));
    let p = partition(&c, "t", 0);
    assert_eq!(reassign_t(&mut c, None), 1);
    let record = last_change(&c);
    assert_eq!(record.replicas.as_deref().map(ids), Some(vec![1, 2, 3]));
    assert_eq!(record.adding_replicas.as_deref().map(ids), Some(vec![]));
    assert_eq!(record.removing_replicas.as_deref().map(ids), Some(vec![]));
    assert_eq!(record.directories, Some(vec![dir(1), dir(2), dir(3)]));
    assert_eq!((record.leader.get(), record.isr.is_none()), (1, true));
    let after = partition(&c, "t", 0);
    assert_eq!(
        (after.replicas.clone(), after.isr.clone()),
        (vec![1, 2, 3], vec![1, 2, 3])
    );
    assert_eq!(after.leader_epoch, p.leader_epoch + 1);
    let (reply, written) = reassign(&mut c, &[("t", 0, None)], true);
    let none = ErrorCode::NO_REASSIGNMENT_IN_PROGRESS.code();
    assert_eq!((outcomes(&reply), written), (vec![(none, None)], 0));
}

/// [1, 2] to [3, 4]; 3 joins the ISR, 2 leaves it, 1 is fenced: the ISR is [3], all being
/// added. The revert needs an unclean election: refused unless the topic allows one; then the
/// original replicas come back, the first live one (2) leading alone, recovering.
#[test]
fn cancel_needing_an_unclean_election_is_refused_unless_enabled() {
    let (mut c, epochs) = setup(&[1, 2, 3, 4], &[1, 2]);
    reassign_t(&mut c, Some(&[3, 4]));
    assert_eq!(expand_isr(&mut c, &epochs, 3).error_code, 0);
    assert_eq!(alter_isr(&mut c, &epochs, &[1, 3]).error_code, 0);
    fence_broker_1(&mut c, &epochs);
    let p = partition(&c, "t", 0);
    assert_eq!(
        (p.replicas.clone(), p.isr.clone(), p.leader),
        (vec![3, 4, 1, 2], vec![3], 3)
    );
    let (reply, written) = reassign(&mut c, &[("t", 0, None)], true);
    let message = "Unable to revert partition assignment for t:0 because it would require an \
                   unclean leader election.";
    let invalid = ErrorCode::INVALID_REPLICA_ASSIGNMENT.code();
    assert_eq!(outcomes(&reply), vec![(invalid, Some(message.to_string()))]);
    assert_eq!(written, 0);
    allow_unclean(&mut c);
    assert_eq!(reassign_t(&mut c, None), 1);
    let p = partition(&c, "t", 0);
    assert_eq!(
        (p.replicas.clone(), p.isr.clone(), p.leader),
        (vec![1, 2], vec![2], 2)
    );
    assert!(p.adding_replicas.is_empty() && p.removing_replicas.is_empty());
    assert_eq!(p.leader_recovery_state, 1);
}

/// `unclean.leader.election.enable` on "t" (a topic config record).
fn allow_unclean(c: &mut Cluster) {
    let config = VersionedRecord {
        version: 0,
        record: MetadataRecord::Config(sluice_net::messages::ConfigRecord {
            resource_type: crate::image::RESOURCE_TOPIC,
            resource_name: "t".into(),
            name: "unclean.leader.election.enable".into(),
            value: Some("true".into()),
            ..Default::default()
        }),
    };
    run!(c, propose(vec![config], ()));
}

/// `unclean.leader.election.enable` (Kafka 3.9+ in KRaft, KAFKA-12670): when the broker of the
/// last in-sync replica is fenced, a topic that allows it is led at once by a live replica
/// outside the ISR (alone in the ISR, its log recovering); without it the partition stays
/// leaderless, until the setting is turned on and the next leader rebalance elects one.
#[test]
fn unclean_leader_election_enable_elects_an_out_of_sync_replica() {
    for allowed_before in [true, false] {
        let (mut c, epochs) = setup(&[1, 2], &[1, 2]);
        assert_eq!(alter_isr(&mut c, &epochs, &[1]).error_code, 0);
        if allowed_before {
            allow_unclean(&mut c);
        }
        fence_broker_1(&mut c, &epochs);
        let p = partition(&c, "t", 0);
        if !allowed_before {
            assert_eq!(
                (p.leader, p.isr.clone(), p.elr.clone()),
                (-1, vec![], vec![1])
            );
            allow_unclean(&mut c);
            let interval = c.controller.config.leader_imbalance_check_interval_ms;
            assert_eq!(run!(c, rebalance_leaders(interval)), 1);
        }
        let p = partition(&c, "t", 0);
        assert_eq!(
            (p.leader, p.isr.clone(), p.leader_recovery_state),
            (2, vec![2], 1),
            "allowed before the fence: {allowed_before}"
        );
    }
}

/// [1, 2] to [1, 3], replaced by [1, 4]: against the current [1, 3, 2], 4 is added and 2 and 3
/// removed; the ISR expansion with 4 completes it.
#[test]
fn a_new_target_replaces_the_reassignment_in_progress() {
    let (mut c, epochs) = setup(&[1, 2, 3, 4], &[1, 2]);
    reassign_t(&mut c, Some(&[1, 3]));
    reassign_t(&mut c, Some(&[1, 4]));
    let record = last_change(&c);
    assert_eq!(record.replicas.as_deref().map(ids), Some(vec![1, 4, 2, 3]));
    assert_eq!(record.adding_replicas.as_deref().map(ids), Some(vec![4]));
    assert_eq!(
        record.removing_replicas.as_deref().map(ids),
        Some(vec![2, 3])
    );
    assert_eq!(
        record.directories,
        Some(vec![dir(1), dir(4), dir(2), dir(3)])
    );
    assert_eq!(partition(&c, "t", 0).isr, vec![1, 2]);
    assert_eq!(expand_isr(&mut c, &epochs, 4).error_code, 0);
    let p = partition(&c, "t", 0);
    assert_eq!(
        (p.replicas.clone(), p.isr.clone()),
        (vec![1, 4], vec![1, 4])
    );
    assert!(p.adding_replicas.is_empty() && p.removing_replicas.is_empty());
}

/// Kafka's quirk, kept: a new target that adds nothing leaves the adding replicas of the
/// reassignment it replaces. [1, 2] to [1, 3], then back to [1, 2]: adding stays [3] while 3 is
/// also removed, so no ISR completes it; a cancel does.
#[test]
fn a_new_target_adding_nothing_keeps_the_adding_replicas() {
    let (mut c, epochs) = setup(&[1, 2, 3], &[1, 2]);
    reassign_t(&mut c, Some(&[1, 3]));
    reassign_t(&mut c, Some(&[1, 2]));
    let p = partition(&c, "t", 0);
    assert_eq!(
        (p.replicas.clone(), p.adding_replicas.clone()),
        (vec![1, 2, 3], vec![3])
    );
    assert_eq!(p.removing_replicas, vec![3]);
    assert_eq!(expand_isr(&mut c, &epochs, 3).error_code, 0);
    assert_eq!(partition(&c, "t", 0).replicas, vec![1, 2, 3]);
    reassign_t(&mut c, None);
    let p = partition(&c, "t", 0);
    assert_eq!(
        (p.replicas.clone(), p.isr.clone()),
        (vec![1, 2], vec![1, 2])
    );
}

/// Kafka's refusals, each with its message, writing nothing; the others in the same request
/// stand.
#[test]
fn refusals_as_kafka() {
    let (mut c, _) = setup(&[1, 2, 3, 4], &[1, 2, 3]);
    let targets: &[Target<'_>] = &[
        ("nope", 0, Some(&[1])),
        ("t", 7, Some(&[1])),
        ("t", 0, Some(&[])),
        ("t", 0, Some(&[1, 9])),
        ("t", 0, Some(&[2, 1, 2])),
        ("t", 0, None),
    ];
    let (reply, written) = reassign(&mut c, targets, true);
    assert_eq!(written, 0);
    assert_eq!(reply.error_message, None);
    assert!(reply.allow_replication_factor_change);
    let unknown = ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code();
    let invalid = ErrorCode::INVALID_REPLICA_ASSIGNMENT.code();
    let some = |m: &str| Some(m.to_string());
    let expected = vec![
        (unknown, some("Unable to find a topic named nope.")),
        (unknown, some("Unable to find partition t:7.")),
        (
            invalid,
            some("The manual partition assignment includes an empty replica list."),
        ),
        (
            invalid,
            some(
                "The manual partition assignment includes broker 9, but no such broker is \
                 registered.",
            ),
        ),
        (
            invalid,
            some("The manual partition assignment includes the broker 2 more than once."),
        ),
        (ErrorCode::NO_REASSIGNMENT_IN_PROGRESS.code(), None),
    ];
    assert_eq!(outcomes(&reply), expected);
    let names: Vec<String> = reply.responses.iter().map(|t| t.name.to_string()).collect();
    assert_eq!(names, vec!["nope", "t"]);
    let empty = run!(c, alter_partition_reassignments(&request(&[], false)));
    assert_eq!(empty, AlterPartitionReassignmentsResponse::default());
}

/// Without `allow_replication_factor_change` the target keeps the replication factor (that of
/// the reassignment in progress: replicas and adding without removing); the answer echoes it.
#[test]
fn replication_factor_change_refused_unless_allowed() {
    let (mut c, _) = setup(&[1, 2, 3, 4], &[1, 2, 3]);
    let (reply, written) = reassign(&mut c, &[("t", 0, Some(&[1, 2]))], false);
    let message = Some("The replication factor is changed from 3 to 2".to_string());
    let code = ErrorCode::INVALID_REPLICATION_FACTOR.code();
    assert_eq!((outcomes(&reply), written), (vec![(code, message)], 0));
    assert!(!reply.allow_replication_factor_change);
    let (reply, written) = reassign(&mut c, &[("t", 0, Some(&[1, 2, 4]))], false);
    assert_eq!((outcomes(&reply), written), (vec![(0, None)], 1));
    let (reply, _) = reassign(&mut c, &[("t", 0, Some(&[4, 3, 2, 1]))], false);
    let message = Some("The replication factor is changed from 3 to 4".to_string());
    assert_eq!(outcomes(&reply), vec![(code, message)]);
    let (reply, written) = reassign(&mut c, &[("t", 0, Some(&[4, 3, 2]))], false);
    assert_eq!((outcomes(&reply), written), (vec![(0, None)], 1));
}

/// The list: every reassignment (topics by name, partitions by index) for a null list; the
/// named ones for a list (unknown topics and partitions, and idle ones, left out); Kafka's
/// default answer for an empty list.
#[test]
fn list_shows_reassignments_in_progress() {
    let (mut c, _) = setup(&[1, 2, 3, 4], &[1, 2]);
    create_manual(&mut c, "a", &[&[1, 2], &[2, 3]]);
    let targets: &[Target<'_>] = &[("t", 0, Some(&[3, 4])), ("a", 1, Some(&[4, 3]))];
    let (reply, written) = reassign(&mut c, targets, true);
    assert_eq!((outcomes(&reply).len(), written), (2, 2));
    let all = list(&c, None);
    assert_eq!(all.error_message, None);
    let expected = vec![
        ("a".to_string(), 1, vec![4, 3, 2], vec![4], vec![2]),
        ("t".to_string(), 0, vec![3, 4, 1, 2], vec![3, 4], vec![1, 2]),
    ];
    assert_eq!(listed(&all), expected);
    let asked: &[(&str, &[i32])] = &[("t", &[5, 0]), ("nope", &[0]), ("a", &[0])];
    let some = list(&c, Some(asked));
    assert_eq!(listed(&some), expected[1..].to_vec());
    assert_eq!(
        list(&c, Some(&[])),
        ListPartitionReassignmentsResponse::default()
    );
}

/// During [1, 2, 3] to [4, 3, 2] the removed replica 1 leads; once fenced, the election walks
/// the target order [4, 3, 2, 1] (3, not 2, leads); the preferred replica 4 cannot lead before
/// it is in sync; its ISR expansion completes the reassignment and then it can.
#[test]
fn elections_during_a_reassignment_follow_the_target_order() {
    let (mut c, epochs) = setup(&[1, 2, 3, 4], &[1, 2, 3]);
    reassign_t(&mut c, Some(&[4, 3, 2]));
    assert_eq!(partition(&c, "t", 0).leader, 1);
    fence_broker_1(&mut c, &epochs);
    let p = partition(&c, "t", 0);
    assert_eq!((p.leader, p.isr.clone()), (3, vec![2, 3]));
    let elect = |c: &mut Cluster| {
        let req = ElectLeadersRequest {
            election_type: 0,
            topic_partitions: Some(vec![TopicPartitions {
                topic: "t".into(),
                partitions: vec![0],
                ..Default::default()
            }]),
            ..Default::default()
        };
        let reply = run!(c, elect_leaders(&req));
        reply.replica_election_results[0].partition_result[0].error_code
    };
    assert_eq!(
        elect(&mut c),
        ErrorCode::PREFERRED_LEADER_NOT_AVAILABLE.code()
    );
    let answer = expand_isr(&mut c, &epochs, 4);
    assert_eq!((answer.error_code, answer.leader_id.get()), (0, 3));
    let p = partition(&c, "t", 0);
    assert_eq!(
        (p.replicas.clone(), p.isr.clone()),
        (vec![4, 3, 2], vec![2, 3, 4])
    );
    assert_eq!(elect(&mut c), 0);
    assert_eq!(partition(&c, "t", 0).leader, 4);
}
