//! AlterPartition on the controller (`alter_partition.rs`): each of Kafka's refusals, ISR
//! shrink and expand with their records and answers, ELR below `min.insync.replicas`, the
//! leader recovery state, and a request that changes nothing.

#[cfg(test)]
use super::*;
use sluice_net::messages::alter_partition_request::{BrokerState, PartitionData, TopicData};
use sluice_net::messages::create_topics_request::CreatableTopicConfig;
use sluice_net::messages::{AlterPartitionRequest, AlterPartitionResponse, PartitionChangeRecord};

/// Three live brokers and topic "t" (one partition, three replicas).
struct Setup {
    c: Cluster,
    topic: Uuid,
    /// Broker epochs of brokers 1, 2, 3.
    epochs: Vec<i64>,
}

impl Setup {
    fn new(min_isr: Option<&str>) -> Setup {
        let mut c = Cluster::new(1);
        let epochs = c.live_brokers(0, &[1, 2, 3]);
        let mut t = topic("t", 1, 3);
        if let Some(v) = min_isr {
            t.configs.push(CreatableTopicConfig {
                name: "min.insync.replicas".into(),
                value: Some(v.into()),
                ..Default::default()
            });
        }
        let req = CreateTopicsRequest {
            topics: vec![t],
            ..Default::default()
        };
        assert_eq!(run!(c, create_topics(&req)).topics[0].error_code, 0);
        let topic = c.committed.topic_by_name("t").unwrap().id;
        Setup { c, topic, epochs }
    }

    fn partition(&self) -> PartitionRegistration {
        self.c.partitions("t")[0].clone()
    }

    fn epoch(&self, broker: i32) -> i64 {
        self.epochs[broker as usize - 1]
    }

    /// The current leader's v3 request for the new ISR `isr` (with registered epochs).
    fn shrink_to(&self, isr: &[i32]) -> PartitionData {
        let p = self.partition();
        PartitionData {
            partition_index: 0,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            new_isr_with_epochs: isr.iter().map(|&b| member(b, self.epoch(b))).collect(),
            leader_recovery_state: p.leader_recovery_state,
            ..Default::default()
        }
    }

    /// Sends `data` as the partition's leader at version 3; the answer and records written.
    fn send(&mut self, data: PartitionData) -> (AlterPartitionResponse, usize) {
        let leader = self.partition().leader;
        self.send_as(3, leader, self.epoch(leader), data)
    }

    fn send_as(
        &mut self,
        version: i16,
        broker: i32,
        broker_epoch: i64,
        data: PartitionData,
    ) -> (AlterPartitionResponse, usize) {
        let req = AlterPartitionRequest {
            broker_id: broker.into(),
            broker_epoch,
            topics: vec![TopicData {
                topic_id: self.topic,
                partitions: vec![data],
                ..Default::default()
            }],
            ..Default::default()
        };
        let before = self.c.log.len();
        let reply = run!(self.c, alter_partition(version, &req));
        (reply, self.c.log.len() - before)
    }

    /// The one partition answer's error code, checking nothing was written when refused.
    fn refusal(&mut self, data: PartitionData) -> i16 {
        let (reply, written) = self.send(data);
        let code = reply.topics[0].partitions[0].error_code;
        if code != 0 {
            assert_eq!(written, 0, "a refusal writes nothing");
        }
        code
    }

    fn last_change(&self) -> PartitionChangeRecord {
        match &self.c.log.last().unwrap().record {
            MetadataRecord::PartitionChange(r) => r.clone(),
            other => panic!("not a partition change: {other:?}"),
        }
    }
}

fn member(broker: i32, epoch: i64) -> BrokerState {
    BrokerState {
        broker_id: broker.into(),
        broker_epoch: epoch,
        ..Default::default()
    }
}

/// The other two replicas of the partition, in replica order.
fn followers(p: &PartitionRegistration) -> (i32, i32) {
    let others: Vec<i32> = p
        .replicas
        .iter()
        .copied()
        .filter(|&r| r != p.leader)
        .collect();
    (others[0], others[1])
}

fn ids(v: &[sluice_net::BrokerId]) -> Vec<i32> {
    v.iter().map(|b| b.get()).collect()
}

/// A shrink writes one PartitionChangeRecord with the new ISR only (the leader and its epoch
/// unchanged), the image bumps the partition epoch, and the answer is the new state; an
/// expand back (version 3, registered epochs) does the same.
#[test]
fn shrink_and_expand_write_the_isr_and_answer_the_new_state() {
    let mut s = Setup::new(None);
    let before = s.partition();
    let (f1, f2) = followers(&before);
    let (reply, written) = s.send(s.shrink_to(&[before.leader, f1]));
    assert_eq!((reply.error_code, written), (0, 1));
    let record = s.last_change();
    assert_eq!(ids(record.isr.as_ref().unwrap()), vec![before.leader, f1]);
    assert_eq!(
        record.leader.get(),
        -2,
        "an ISR change leaves the leader alone"
    );
    assert!(record.eligible_leader_replicas.is_none() && record.leader_recovery_state == -1);
    let after = s.partition();
    assert_eq!(after.isr, vec![before.leader, f1]);
    assert_eq!(after.leader_epoch, before.leader_epoch);
    assert_eq!(after.partition_epoch, before.partition_epoch + 1);
    let answer = &reply.topics[0].partitions[0];
    assert_eq!(reply.topics[0].topic_id, s.topic);
    assert_eq!(answer.leader_id.get(), before.leader);
    assert_eq!(ids(&answer.isr), after.isr);
    assert_eq!(answer.leader_epoch, after.leader_epoch);
    assert_eq!(answer.partition_epoch, after.partition_epoch);
    let (reply, written) = s.send(s.shrink_to(&[before.leader, f1, f2]));
    assert_eq!((reply.topics[0].partitions[0].error_code, written), (0, 1));
    assert_eq!(s.partition().isr, vec![before.leader, f1, f2]);
    assert_eq!(s.partition().partition_epoch, before.partition_epoch + 2);
}

/// Asking for the ISR the partition has writes nothing and answers the current state.
#[test]
fn the_same_isr_writes_nothing() {
    let mut s = Setup::new(None);
    let p = s.partition();
    let (reply, written) = s.send(s.shrink_to(&p.isr));
    assert_eq!(written, 0);
    let answer = &reply.topics[0].partitions[0];
    assert_eq!(answer.error_code, 0);
    assert_eq!(
        (ids(&answer.isr), answer.partition_epoch),
        (p.isr, p.partition_epoch)
    );
}

/// A broker epoch that is not the sender's registered one refuses the whole request.
#[test]
fn a_stale_broker_epoch_refuses_the_request() {
    let mut s = Setup::new(None);
    let p = s.partition();
    let data = s.shrink_to(&[p.leader]);
    let (reply, written) = s.send_as(3, p.leader, s.epoch(p.leader) + 1, data.clone());
    assert_eq!(reply.error_code, ErrorCode::STALE_BROKER_EPOCH.code());
    assert!(reply.topics.is_empty() && written == 0);
    let (reply, _) = s.send_as(3, 9, 0, data);
    assert_eq!(reply.error_code, ErrorCode::STALE_BROKER_EPOCH.code());
}

/// Unknown topic id and unknown partition.
#[test]
fn unknown_topic_and_partition() {
    let mut s = Setup::new(None);
    let p = s.partition();
    let mut data = s.shrink_to(&[p.leader]);
    data.partition_index = 5;
    assert_eq!(
        s.refusal(data),
        ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code()
    );
    s.topic = Uuid([9; 16]);
    let data = s.shrink_to(&[p.leader]);
    assert_eq!(s.refusal(data), ErrorCode::UNKNOWN_TOPIC_ID.code());
}

/// Epochs ahead of the controller's: NOT_CONTROLLER; an older leader epoch:
/// FENCED_LEADER_EPOCH; an older partition epoch: INVALID_UPDATE_VERSION; a sender that is
/// not the leader: INVALID_REQUEST.
#[test]
fn epochs_and_sender_are_checked_in_kafkas_order() {
    let mut s = Setup::new(None);
    let p = s.partition();
    let (f1, _) = followers(&p);
    let good = s.shrink_to(&[p.leader, f1]);
    let with = |f: &dyn Fn(&mut PartitionData)| {
        let mut d = good.clone();
        f(&mut d);
        d
    };
    let code = |e: ErrorCode| e.code();
    let ahead = with(&|d| d.leader_epoch += 1);
    assert_eq!(s.refusal(ahead), code(ErrorCode::NOT_CONTROLLER));
    let ahead = with(&|d| d.partition_epoch += 1);
    assert_eq!(s.refusal(ahead), code(ErrorCode::NOT_CONTROLLER));
    let stale_both = with(&|d| {
        d.leader_epoch -= 1;
        d.partition_epoch -= 1;
    });
    assert_eq!(s.refusal(stale_both), code(ErrorCode::FENCED_LEADER_EPOCH));
    let old = with(&|d| d.partition_epoch -= 1);
    assert_eq!(s.refusal(old), code(ErrorCode::INVALID_UPDATE_VERSION));
    let (reply, written) = s.send_as(3, f1, s.epoch(f1), good.clone());
    let partition_code = reply.topics[0].partitions[0].error_code;
    assert_eq!(
        (partition_code, written),
        (code(ErrorCode::INVALID_REQUEST), 0)
    );
    assert_eq!(s.refusal(good), 0);
}

/// The new ISR must be distinct replicas and hold the leader.
#[test]
fn an_invalid_isr_is_refused() {
    let mut s = Setup::new(None);
    let p = s.partition();
    let (f1, _) = followers(&p);
    let invalid = ErrorCode::INVALID_REQUEST.code();
    assert_eq!(s.refusal(s.shrink_to(&[f1])), invalid, "without the leader");
    assert_eq!(s.refusal(s.shrink_to(&[])), invalid, "empty");
    let mut dup = s.shrink_to(&[p.leader]);
    dup.new_isr_with_epochs
        .push(member(p.leader, s.epoch(p.leader)));
    assert_eq!(s.refusal(dup), invalid, "duplicate");
    let mut stranger = s.shrink_to(&[p.leader]);
    stranger.new_isr_with_epochs.push(member(4, -1));
    assert_eq!(s.refusal(stranger), invalid, "not a replica");
    assert_eq!(s.partition(), p);
}

/// KIP-903: a new ISR member whose broker epoch is not its registered one, a fenced member
/// and a member in controlled shutdown are ineligible; epoch -1 (and version 2) skip the
/// epoch check.
#[test]
fn ineligible_members_are_refused() {
    let mut s = Setup::new(None);
    let p = s.partition();
    let (f1, f2) = followers(&p);
    let ineligible = ErrorCode::INELIGIBLE_REPLICA.code();
    let mut wrong_epoch = s.shrink_to(&[p.leader, f1]);
    wrong_epoch.new_isr_with_epochs[1].broker_epoch += 1;
    assert_eq!(s.refusal(wrong_epoch), ineligible);
    let mut unchecked = s.shrink_to(&[p.leader]);
    unchecked.new_isr_with_epochs.push(member(f1, -1));
    assert_eq!(s.refusal(unchecked), 0);
    // A broker that leads something stays in controlled shutdown while it moves leaders.
    assert_eq!(s.c.create("u", 3, 3).0, 0);
    let want_shut_down = BrokerHeartbeatRequest {
        broker_id: f1.into(),
        broker_epoch: s.epoch(f1),
        current_metadata_offset: s.c.log.len() as i64,
        want_shut_down: true,
        ..Default::default()
    };
    run!(s.c, broker_heartbeat(1, &want_shut_down));
    assert!(s.c.committed.broker(f1).unwrap().in_controlled_shutdown);
    assert_eq!(s.refusal(s.shrink_to(&[p.leader, f1])), ineligible);
    let fence = BrokerHeartbeatRequest {
        broker_id: f2.into(),
        broker_epoch: s.epoch(f2),
        want_fence: true,
        ..Default::default()
    };
    run!(s.c, broker_heartbeat(2, &fence));
    assert!(s.c.committed.broker(f2).unwrap().fenced);
    let leader = s.partition().leader;
    let v2 = PartitionData {
        new_isr: vec![leader.into(), f2.into()],
        ..s.shrink_to(&[])
    };
    let (reply, _) = s.send_as(2, leader, s.epoch(leader), v2);
    assert_eq!(reply.topics[0].partitions[0].error_code, ineligible);
}

/// Version 2 names the new ISR by id alone.
#[test]
fn version_2_takes_the_isr_by_id() {
    let mut s = Setup::new(None);
    let p = s.partition();
    let data = PartitionData {
        new_isr: vec![p.leader.into()],
        ..s.shrink_to(&[])
    };
    let (reply, written) = s.send_as(2, p.leader, s.epoch(p.leader), data);
    assert_eq!((reply.topics[0].partitions[0].error_code, written), (0, 1));
    assert_eq!(s.partition().isr, vec![p.leader]);
}

/// KIP-966: below `min.insync.replicas` the members leaving the ISR become eligible leaders;
/// back at it, the ELR is cleared.
#[test]
fn below_min_isr_leavers_become_eligible_leaders() {
    let mut s = Setup::new(Some("2"));
    let p = s.partition();
    let (f1, f2) = followers(&p);
    assert_eq!(s.refusal(s.shrink_to(&[p.leader, f1])), 0);
    assert!(s.partition().elr.is_empty(), "at min ISR no ELR");
    assert_eq!(s.refusal(s.shrink_to(&[p.leader])), 0);
    assert_eq!(
        s.partition().elr,
        vec![f1],
        "the old ISR and ELR, less the new ISR"
    );
    assert_eq!(s.refusal(s.shrink_to(&[p.leader, f2])), 0);
    assert!(s.partition().elr.is_empty());
    assert_eq!(s.last_change().eligible_leader_replicas, Some(Vec::new()));
}

/// A recovering leader (after an unclean election) may not grow the ISR beyond itself, a
/// recovered one may not ask to recover, and a recovering leader alone in the ISR marks the
/// partition recovered with a record although the ISR is the same.
#[test]
fn leader_recovery_state_rules() {
    let mut s = Setup::new(None);
    let p = s.partition();
    let (f1, _) = followers(&p);
    let mut recover = s.shrink_to(&[p.leader]);
    recover.leader_recovery_state = 1;
    let invalid = ErrorCode::INVALID_REQUEST.code();
    assert_eq!(
        s.refusal(recover.clone()),
        invalid,
        "recovered cannot become recovering"
    );
    let mark = PartitionChangeRecord {
        topic_id: s.topic,
        partition_id: 0,
        isr: Some(vec![p.leader.into()]),
        leader_recovery_state: 1,
        ..Default::default()
    };
    let version = crate::bootstrap::PARTITION_CHANGE_RECORD_VERSION;
    let record = versioned(version, MetadataRecord::PartitionChange(mark));
    let proposal = s.c.controller.propose(vec![record], ());
    s.c.commit(proposal);
    assert_eq!(s.partition().leader_recovery_state, 1);
    let mut grow = s.shrink_to(&[p.leader, f1]);
    grow.leader_recovery_state = 1;
    assert_eq!(
        s.refusal(grow),
        invalid,
        "recovering with more than the leader"
    );
    let mut done = s.shrink_to(&[p.leader]);
    done.leader_recovery_state = 0;
    let (reply, written) = s.send(done);
    assert_eq!((reply.topics[0].partitions[0].error_code, written), (0, 1));
    assert_eq!(s.last_change().leader_recovery_state, 0);
    assert!(s.last_change().isr.is_none());
    assert_eq!(s.partition().leader_recovery_state, 0);
    assert_eq!(reply.topics[0].partitions[0].leader_recovery_state, 0);
}

/// A leader recovery state that is neither 0 nor 1 refuses the request as a whole.
#[test]
fn an_unknown_leader_recovery_state_refuses_the_request() {
    let mut s = Setup::new(None);
    let p = s.partition();
    let mut data = s.shrink_to(&[p.leader]);
    data.leader_recovery_state = 7;
    let (reply, written) = s.send(data);
    assert_eq!(reply.error_code, ErrorCode::UNKNOWN_SERVER_ERROR.code());
    assert_eq!(written, 0);
}
