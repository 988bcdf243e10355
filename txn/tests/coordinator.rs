//! The coordinator's transitions and error paths, one Kafka 4.4 rule per test, driven through
//! the public API with the harness of `common/` (appends succeed and markers are written
//! unless a test holds them).

mod common;

use common::{H, err, pid_epoch};
use sluice_net::ErrorCode as E;
use sluice_txn::{
    Answer, Config, InitProducerId, ListFilter, MarkerResult, TopicPartition, TxnResult::*,
    TxnState, TxnVersion,
};

const TV0: TxnVersion = TxnVersion::TV0;
const TV2: TxnVersion = TxnVersion::TV2;

/// A new id gets producer id 1000 at epoch 0 and an Empty record; InitProducerId again bumps
/// the epoch; the record is v1 (TV2 cluster) and decodes back.
#[test]
fn init_new_id_and_bump() {
    let mut h = H::default_config();
    assert_eq!(h.init_ok("t"), (1000, 0));
    assert_eq!(h.init_ok("t"), (1000, 1));
    assert_eq!(h.states_of("t"), vec![0, 0]);
    let d = h.c.describe("t");
    assert_eq!(
        (d.state, d.producer_id, d.producer_epoch),
        ("Empty", 1000, 1)
    );
    assert_eq!(d.start_ms, -1);
    let p = h.c.partition_for("t");
    assert_eq!(h.log[&p][0].1.as_ref().map(|v| v[1]), Some(1), "value v1");
}

/// KIP-360: the current id and epoch bump; a retry with the previous epoch gets the same
/// epoch; an older epoch or another producer id is PRODUCER_FENCED.
#[test]
fn init_with_expected_producer() {
    let mut h = H::default_config();
    h.init_ok("t");
    let a = h.init_with("t", 1000, 0);
    assert_eq!((err(&a), pid_epoch(&a)), (E::NONE, (1000, 1)));
    let a = h.init_with("t", 1000, 0);
    assert_eq!(
        (err(&a), pid_epoch(&a)),
        (E::NONE, (1000, 1)),
        "retry of the last bump"
    );
    h.init_ok("t");
    assert_eq!(err(&h.init_with("t", 1000, 0)), E::PRODUCER_FENCED);
    assert_eq!(err(&h.init_with("t", 5, 2)), E::PRODUCER_FENCED);
    // A producer that lost its id (UNKNOWN_PRODUCER_ID) on a new id gets the new one.
    let a = h.init_with("u", 77, 3);
    assert_eq!((err(&a), pid_epoch(&a)), (E::NONE, (1001, 0)));
}

/// The request checks, in Kafka's order.
#[test]
fn init_request_errors() {
    let mut h = H::default_config();
    assert_eq!(err(&h.init("")), E::INVALID_REQUEST);
    assert_eq!(err(&h.init_with("t", -1, 3)), E::INVALID_REQUEST);
    assert_eq!(err(&h.init_with("t", 5, -1)), E::INVALID_REQUEST);
    let mut r = InitProducerId {
        transactional_id: "t".into(),
        timeout_ms: 0,
        producer_id: -1,
        producer_epoch: -1,
        enable_two_phase_commit: false,
        keep_prepared_txn: false,
    };
    let ask = |h: &mut H, r: &InitProducerId| {
        let req = h.request();
        let e = h.c.init_producer_id(req, r, h.now, &mut h.ids);
        err(&h.one(e))
    };
    assert_eq!(ask(&mut h, &r), E::INVALID_TRANSACTION_TIMEOUT);
    r.timeout_ms = 900_001;
    assert_eq!(ask(&mut h, &r), E::INVALID_TRANSACTION_TIMEOUT);
    r.timeout_ms = 900_000;
    r.keep_prepared_txn = true;
    assert_eq!(ask(&mut h, &r), E::UNSUPPORTED_VERSION);
    r.enable_two_phase_commit = true;
    assert_eq!(ask(&mut h, &r), E::TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
    h.ids.error = Some(E::COORDINATOR_LOAD_IN_PROGRESS);
    r.enable_two_phase_commit = false;
    r.keep_prepared_txn = false;
    assert_eq!(ask(&mut h, &r), E::COORDINATOR_LOAD_IN_PROGRESS);
    assert!(h.c.metadata("t").is_none(), "no id without a producer id");
}

/// With `transaction.two.phase.commit.enable`, Enable2Pc sets an infinite timeout, which the
/// timeout abort skips.
#[test]
fn two_phase_commit_enabled() {
    let mut h = H::new(Config {
        two_phase_commit_enable: true,
        ..Config::default()
    });
    let r = InitProducerId {
        transactional_id: "t".into(),
        timeout_ms: -5,
        producer_id: -1,
        producer_epoch: -1,
        enable_two_phase_commit: true,
        keep_prepared_txn: false,
    };
    let req = h.request();
    let e = h.c.init_producer_id(req, &r, h.now, &mut h.ids);
    let a = h.one(e);
    assert_eq!(err(&a), E::NONE);
    assert_eq!(h.c.metadata("t").map(|m| m.timeout_ms), Some(i32::MAX));
    h.add("t", pid_epoch(&a), &[("a", 0)], TV0);
    h.now += 1_000_000_000;
    let e = h.c.abort_timed_out(h.now, &mut h.ids);
    assert!(e.is_empty());
}

/// Requests for ids of partitions not led here, or still loading.
#[test]
fn not_coordinator_and_loading() {
    let mut h = H::default_config();
    let p = h.c.partition_for("t");
    h.c.unload(p, None);
    assert_eq!(err(&h.init("t")), E::NOT_COORDINATOR);
    h.c.begin_load(p, 2);
    assert_eq!(err(&h.init("t")), E::COORDINATOR_LOAD_IN_PROGRESS);
    assert_eq!(h.c.describe("t").error, E::COORDINATOR_LOAD_IN_PROGRESS);
    let l = h.c.list(&filter(&[]), h.now);
    assert_eq!(l.error, E::COORDINATOR_LOAD_IN_PROGRESS);
    let pe = (1000, 0);
    assert_eq!(
        err(&h.add("t", pe, &[("a", 0)], TV0)),
        E::COORDINATOR_LOAD_IN_PROGRESS
    );
    assert_eq!(
        err(&h.end("t", pe, Commit, TV2)),
        E::COORDINATOR_LOAD_IN_PROGRESS
    );
}

fn filter(states: &[&str]) -> ListFilter<'static> {
    ListFilter {
        states: states.iter().map(|s| s.to_string()).collect(),
        producer_ids: Default::default(),
        duration_ms: -1,
        id_matches: None,
    }
}

/// A TV0 client (AddPartitionsToTxn v3, AddOffsetsToTxn, EndTxn v3): Ongoing records as
/// partitions are added, PrepareCommit, commit markers to every partition with the
/// transaction's epoch, CompleteCommit; EndTxn answers -1/-1.
#[test]
fn tv0_commit() {
    let mut h = H::default_config();
    let pe = h.init_ok("t");
    assert_eq!(err(&h.add("t", pe, &[("a", 0), ("a", 1)], TV0)), E::NONE);
    assert_eq!(h.c.describe("t").start_ms, h.now);
    h.now += 5;
    assert_eq!(err(&h.add_offsets("t", pe, 7)), E::NONE);
    assert_eq!(h.c.describe("t").start_ms, h.now - 5, "start stays");
    let a = h.end("t", pe, Commit, TV0);
    assert_eq!((err(&a), pid_epoch(&a)), (E::NONE, (-1, -1)));
    assert_eq!(h.states_of("t"), vec![0, 1, 1, 2, 4]);
    let m = &h.held.markers[0];
    assert_eq!(
        (m.producer_id, m.producer_epoch, m.result),
        (1000, 0, Commit)
    );
    assert_eq!(m.transaction_version, 0);
    assert_eq!(m.coordinator_epoch, 1);
    let want: Vec<_> = [("__consumer_offsets", 7), ("a", 0), ("a", 1)]
        .iter()
        .map(|(t, p)| TopicPartition::new(t, *p))
        .collect();
    assert_eq!(m.partitions, want);
    let meta = h.c.metadata("t").cloned().expect("held");
    assert_eq!(
        (meta.state, meta.producer_epoch),
        (TxnState::CompleteCommit, 0)
    );
    assert!(meta.partitions.is_empty());
    // A retried EndTxn of the completed commit is NONE; an abort of it is INVALID_TXN_STATE.
    assert_eq!(pid_epoch(&h.end("t", pe, Commit, TV0)), (-1, -1));
    assert_eq!(err(&h.end("t", pe, Commit, TV0)), E::NONE);
    assert_eq!(err(&h.end("t", pe, Abort, TV0)), E::INVALID_TXN_STATE);
}

/// A TV2 client (partitions added by the leader's AddPartitionsToTxn v5, EndTxn v5): the
/// epoch is bumped at PrepareCommit, markers carry the bumped epoch and TV2, EndTxn answers
/// the epoch to use next; its retry (epoch one below) is NONE with the same answer.
#[test]
fn tv2_commit_and_retry() {
    let mut h = H::default_config();
    let pe = h.init_ok("t");
    assert_eq!(err(&h.add("t", pe, &[("a", 0)], TV2)), E::NONE);
    let a = h.end("t", pe, Commit, TV2);
    assert_eq!((err(&a), pid_epoch(&a)), (E::NONE, (1000, 1)));
    let m = &h.held.markers[0];
    assert_eq!((m.producer_epoch, m.transaction_version), (1, 2));
    let recs = h.records_of("t");
    let prep = recs[2].clone().expect("value");
    assert_eq!(
        (
            prep.status,
            prep.producer_epoch,
            prep.client_transaction_version
        ),
        (2, 1, 2)
    );
    let retry = h.end("t", pe, Commit, TV2);
    assert_eq!((err(&retry), pid_epoch(&retry)), (E::NONE, (1000, 1)));
    assert_eq!(
        err(&h.end("t", pe, Abort, TV2)),
        E::INVALID_TXN_STATE,
        "abort retry"
    );
    // The next transaction uses epoch 1; an abort of the completed commit at epoch 1 bumps.
    let a = h.end("t", (1000, 1), Abort, TV2);
    assert_eq!((err(&a), pid_epoch(&a)), (E::NONE, (1000, 2)));
    assert_eq!(h.states_of("t"), vec![0, 1, 2, 4, 3, 5]);
}

/// TV2 aborts with no partitions from Empty go straight to CompleteAbort (no markers); a
/// commit from Empty is INVALID_TXN_STATE; a retried abort is NONE; an epoch two below is
/// PRODUCER_FENCED.
#[test]
fn tv2_empty_abort() {
    let mut h = H::default_config();
    let pe = h.init_ok("t");
    assert_eq!(err(&h.end("t", pe, Commit, TV2)), E::INVALID_TXN_STATE);
    let a = h.end("t", pe, Abort, TV2);
    assert_eq!((err(&a), pid_epoch(&a)), (E::NONE, (1000, 1)));
    assert!(h.held.markers.is_empty());
    assert_eq!(h.states_of("t"), vec![0, 3, 5]);
    assert_eq!(h.c.describe("t").start_ms, h.now, "start is the abort time");
    assert_eq!(pid_epoch(&h.end("t", pe, Abort, TV2)), (1000, 1), "retry");
    assert_eq!(err(&h.end("t", pe, Commit, TV2)), E::INVALID_TXN_STATE);
    h.end("t", (1000, 1), Abort, TV2);
    assert_eq!(err(&h.end("t", pe, Abort, TV2)), E::PRODUCER_FENCED);
}

/// EndTxn's errors: unknown id and producer id INVALID_PRODUCER_ID_MAPPING, epoch
/// PRODUCER_FENCED, TV0 end of an Empty id INVALID_TXN_STATE, empty id INVALID_REQUEST.
#[test]
fn end_errors() {
    let mut h = H::default_config();
    assert_eq!(
        err(&h.end("t", (1, 0), Commit, TV0)),
        E::INVALID_PRODUCER_ID_MAPPING
    );
    let pe = h.init_ok("t");
    assert_eq!(
        err(&h.end("t", (1, 0), Commit, TV0)),
        E::INVALID_PRODUCER_ID_MAPPING
    );
    assert_eq!(err(&h.end("t", (1000, 3), Commit, TV0)), E::PRODUCER_FENCED);
    assert_eq!(err(&h.end("t", (1000, 3), Commit, TV2)), E::PRODUCER_FENCED);
    assert_eq!(err(&h.end("t", pe, Commit, TV0)), E::INVALID_TXN_STATE);
    assert_eq!(err(&h.end("t", pe, Abort, TV0)), E::INVALID_TXN_STATE);
    assert_eq!(err(&h.end("", pe, Abort, TV0)), E::INVALID_REQUEST);
}

/// While markers are being written every request on the id is CONCURRENT_TRANSACTIONS (an
/// EndTxn with the other result INVALID_TXN_STATE in TV0, the pending check first in TV2).
#[test]
fn concurrent_while_markers_pending() {
    let mut h = H::default_config();
    let pe = h.init_ok("t");
    h.add("t", pe, &[("a", 0)], TV0);
    h.auto = false;
    let req = h.request();
    let r = sluice_txn::EndTxn {
        transactional_id: "t".into(),
        producer_id: pe.0,
        producer_epoch: pe.1,
        result: Commit,
        client_version: TV0,
    };
    let e = h.c.end_txn(req, &r, h.now, &mut h.ids);
    assert!(h.run(e).is_empty());
    let append = h.held.appends.pop().expect("prepare append");
    // Before the Prepare record is durable: pending.
    assert_eq!(
        err(&h.add("t", pe, &[("b", 0)], TV0)),
        E::CONCURRENT_TRANSACTIONS
    );
    assert_eq!(
        err(&h.end("t", pe, Commit, TV0)),
        E::CONCURRENT_TRANSACTIONS
    );
    let answers = h.finish_append(&append, Ok(()));
    assert_eq!(answers.len(), 1);
    assert_eq!(h.held.markers.len(), 1);
    assert_eq!(
        h.c.metadata("t").map(|m| m.state),
        Some(TxnState::PrepareCommit)
    );
    assert_eq!(err(&h.init("t")), E::CONCURRENT_TRANSACTIONS);
    assert_eq!(
        err(&h.add("t", pe, &[("b", 0)], TV0)),
        E::CONCURRENT_TRANSACTIONS
    );
    assert_eq!(
        err(&h.end("t", pe, Commit, TV0)),
        E::CONCURRENT_TRANSACTIONS
    );
    assert_eq!(err(&h.end("t", pe, Abort, TV2)), E::CONCURRENT_TRANSACTIONS);
    let v =
        h.c.verify_partitions("t", pe.0, pe.1, &[TopicPartition::new("a", 0)]);
    assert_eq!(v[0].1, E::CONCURRENT_TRANSACTIONS);
}

/// AddPartitionsToTxn's errors and the no-write answer for partitions already added.
#[test]
fn add_errors() {
    let mut h = H::default_config();
    assert_eq!(
        err(&h.add("", (1, 0), &[("a", 0)], TV0)),
        E::INVALID_REQUEST
    );
    assert_eq!(
        err(&h.add("t", (1, 0), &[("a", 0)], TV0)),
        E::INVALID_PRODUCER_ID_MAPPING
    );
    let pe = h.init_ok("t");
    assert_eq!(
        err(&h.add("t", (9, 0), &[("a", 0)], TV0)),
        E::INVALID_PRODUCER_ID_MAPPING
    );
    assert_eq!(
        err(&h.add("t", (1000, 4), &[("a", 0)], TV0)),
        E::PRODUCER_FENCED
    );
    assert_eq!(err(&h.add_offsets("t", (1000, 4), 0)), E::PRODUCER_FENCED);
    h.add("t", pe, &[("a", 0), ("a", 1)], TV0);
    let before = h.held.appends.len();
    assert_eq!(err(&h.add("t", pe, &[("a", 1)], TV0)), E::NONE);
    assert_eq!(h.held.appends.len(), before, "nothing written");
}

/// KIP-890 part 1 verification: partitions in the transaction are NONE, others
/// TRANSACTION_ABORTABLE; a wrong epoch fails every partition; nothing is written.
#[test]
fn verify_only() {
    let mut h = H::default_config();
    let pe = h.init_ok("t");
    h.add("t", pe, &[("a", 0)], TV0);
    let parts = [TopicPartition::new("a", 0), TopicPartition::new("a", 1)];
    let v = h.c.verify_partitions("t", pe.0, pe.1, &parts);
    assert_eq!(
        v.iter().map(|x| x.1).collect::<Vec<_>>(),
        [E::NONE, E::TRANSACTION_ABORTABLE]
    );
    let v = h.c.verify_partitions("t", pe.0, 9, &parts);
    assert!(v.iter().all(|x| x.1 == E::PRODUCER_FENCED));
    let v = h.c.verify_partitions("x", 1, 0, &parts);
    assert!(v.iter().all(|x| x.1 == E::INVALID_PRODUCER_ID_MAPPING));
    let v = h.c.verify_partitions("", 1, 0, &parts);
    assert!(v.iter().all(|x| x.1 == E::INVALID_REQUEST));
}

/// A new producer fencing an ongoing transaction on a TV2 cluster: CONCURRENT_TRANSACTIONS
/// once the PrepareAbort (epoch + 1) is durable, abort markers at that epoch, CompleteAbort;
/// the retry gets epoch + 2; the old producer is fenced.
#[test]
fn init_fences_ongoing_tv2_cluster() {
    let mut h = H::default_config();
    let old = h.init_ok("t");
    h.add("t", old, &[("a", 0)], TV0);
    let a = h.init("t");
    assert_eq!(err(&a), E::CONCURRENT_TRANSACTIONS);
    let m = &h.held.markers[0];
    assert_eq!((m.result, m.producer_epoch), (Abort, 1));
    let prep = h.records_of("t")[2].clone().expect("value");
    assert_eq!(
        (
            prep.status,
            prep.producer_epoch,
            prep.client_transaction_version
        ),
        (3, 1, 2)
    );
    assert_eq!(
        h.c.metadata("t").map(|m| m.state),
        Some(TxnState::CompleteAbort)
    );
    assert_eq!(h.init_ok("t"), (1000, 2));
    assert_eq!(err(&h.end("t", old, Commit, TV0)), E::PRODUCER_FENCED);
    assert_eq!(err(&h.add("t", old, &[("a", 0)], TV0)), E::PRODUCER_FENCED);
}

/// The same on a TV1 cluster: the fencing epoch is applied before the write, the abort keeps
/// it (TV0 abort) and the last epoch is forgotten.
#[test]
fn init_fences_ongoing_tv1_cluster() {
    let mut h = H::new(Config {
        cluster_version: TxnVersion::TV1,
        ..Config::default()
    });
    let old = h.init_ok("t");
    h.add("t", old, &[("a", 0)], TV0);
    assert_eq!(err(&h.init("t")), E::CONCURRENT_TRANSACTIONS);
    let prep = h.records_of("t")[2].clone().expect("value");
    assert_eq!(
        (
            prep.status,
            prep.producer_epoch,
            prep.client_transaction_version
        ),
        (3, 1, 0)
    );
    assert_eq!(h.held.markers[0].producer_epoch, 1);
    assert_eq!(h.init_ok("t"), (1000, 2));
}

/// A fence whose PrepareAbort append fails: the client hears the mapped error, the epoch
/// is not bumped again by the next fence (TV1: it stays bumped in memory, as in Kafka).
#[test]
fn failed_fence_is_not_bumped_twice() {
    let mut h = H::new(Config {
        cluster_version: TxnVersion::TV1,
        ..Config::default()
    });
    let old = h.init_ok("t");
    h.add("t", old, &[("a", 0)], TV0);
    h.auto = false;
    let req = h.request();
    let r = InitProducerId {
        transactional_id: "t".into(),
        timeout_ms: 60_000,
        producer_id: -1,
        producer_epoch: -1,
        enable_two_phase_commit: false,
        keep_prepared_txn: false,
    };
    let e = h.c.init_producer_id(req, &r, h.now, &mut h.ids);
    assert!(h.run(e).is_empty());
    let append = h.held.appends.pop().expect("append");
    let a = h.finish_append(&append, Err(E::NOT_ENOUGH_REPLICAS));
    assert_eq!(err(&a[0].1), E::COORDINATOR_NOT_AVAILABLE);
    let meta = h.c.metadata("t").cloned().expect("held");
    assert!(meta.has_failed_epoch_fence);
    assert_eq!(
        (meta.state, meta.producer_epoch, meta.pending_state),
        (TxnState::Ongoing, 1, None)
    );
    h.auto = true;
    assert_eq!(err(&h.init("t")), E::CONCURRENT_TRANSACTIONS);
    assert_eq!(h.held.markers.last().map(|m| m.producer_epoch), Some(1));
}

/// Epoch exhaustion: InitProducerId rotates to a new producer id at epoch 0 (recording the
/// last epoch for a KIP-360 retry with the old id); a TV2 commit at MAX-1 answers the next
/// producer id at epoch 0 and its retry (old id, MAX-1) is NONE.
#[test]
fn epoch_exhaustion() {
    let mut h = H::default_config();
    h.init_ok("t");
    h.c.begin_load(h.c.partition_for("t"), 2);
    // Rebuild the id at epoch MAX-1 through a replayed record.
    let mut meta = sluice_txn::TxnMetadata::new("t", 1000, 60_000, 0);
    meta.producer_epoch = i16::MAX - 1;
    let value = sluice_txn::encode_value(&meta.snapshot().to_log_value(1), 1);
    let key = sluice_txn::encode_key("t");
    let p = h.c.partition_for("t");
    let recs = [(key.as_slice(), Some(value.as_slice()))];
    assert_eq!(h.c.finish_load(p, 2, recs, h.now), Ok(Vec::new()));
    let a = h.init_with("t", 1000, i16::MAX - 1);
    assert_eq!(pid_epoch(&a), (1000, 0).into_with_new_id());
    let pe = pid_epoch(&a);
    assert_eq!(
        h.c.metadata("t").map(|m| m.last_producer_epoch),
        Some(i16::MAX - 1)
    );
    // A retry with the old id and the exhausted epoch is not fenced: the same answer again.
    assert_eq!(pid_epoch(&h.init_with("t", 1000, i16::MAX - 1)), pe);
    // TV2 commit at MAX-1.
    let mut meta = sluice_txn::TxnMetadata::new("u", 2000, 60_000, 0);
    meta.producer_epoch = i16::MAX - 1;
    meta.state = TxnState::Ongoing;
    meta.start_ms = 5;
    meta.partitions.insert(TopicPartition::new("a", 0));
    let value = sluice_txn::encode_value(&meta.snapshot().to_log_value(1), 1);
    let key = sluice_txn::encode_key("u");
    let q = h.c.partition_for("u");
    h.c.begin_load(q, 3);
    let recs = [(key.as_slice(), Some(value.as_slice()))];
    assert_eq!(h.c.finish_load(q, 3, recs, h.now), Ok(Vec::new()));
    let a = h.end("u", (2000, i16::MAX - 1), Commit, TV2);
    let next = pid_epoch(&a);
    assert_eq!((err(&a), next.1), (E::NONE, 0));
    assert_ne!(next.0, 2000);
    assert_eq!(
        h.held.markers.last().map(|m| m.producer_epoch),
        Some(i16::MAX)
    );
    let retry = h.end("u", (2000, i16::MAX - 1), Commit, TV2);
    assert_eq!((err(&retry), pid_epoch(&retry)), (E::NONE, next));
}

trait NewId {
    fn into_with_new_id(self) -> (i64, i16);
}

impl NewId for (i64, i16) {
    /// The first id the harness hands out after 1000.
    fn into_with_new_id(self) -> (i64, i16) {
        (1001, self.1)
    }
}

/// A transaction older than its timeout is aborted with a fence; nobody is answered; it
/// ends CompleteAbort at epoch + 2 on a TV2 cluster (fence, then the TV2 bump).
#[test]
fn timeout_aborts() {
    let mut h = H::default_config();
    let pe = h.init_ok("t");
    h.add("t", pe, &[("a", 0)], TV0);
    h.now += 60_000;
    assert!(h.c.abort_timed_out(h.now, &mut h.ids).is_empty(), "not yet");
    h.now += 1;
    let e = h.c.abort_timed_out(h.now, &mut h.ids);
    assert!(h.run(e).is_empty());
    assert_eq!(h.states_of("t"), vec![0, 1, 3, 5]);
    assert_eq!(h.held.markers[0].producer_epoch, 1);
    assert_eq!(err(&h.end("t", pe, Commit, TV0)), E::PRODUCER_FENCED);
}

/// Idle ids expire: a tombstone, then gone (TRANSACTIONAL_ID_NOT_FOUND); an id that moved
/// while its tombstone was in flight stays; a failed tombstone leaves it.
#[test]
fn expiry() {
    let mut h = H::default_config();
    h.init_ok("t");
    h.init_ok("u");
    let week = 7 * 24 * 3600 * 1000;
    h.now += week - 1;
    assert!(h.c.expire_transactional_ids(h.now).is_empty());
    h.now += 1;
    h.auto = false;
    let e = h.c.expire_transactional_ids(h.now);
    assert_eq!(e.len(), 2);
    h.run(e);
    let tu = h.held.appends.pop().expect("u");
    let tt = h.held.appends.pop().expect("t");
    assert_eq!(tt.value, None);
    assert_eq!(err(&h.init("t")), E::CONCURRENT_TRANSACTIONS);
    h.finish_append(&tt, Ok(()));
    assert_eq!(h.c.describe("t").error, E::TRANSACTIONAL_ID_NOT_FOUND);
    assert_eq!(h.states_of("t"), vec![0, -1]);
    h.finish_append(&tu, Err(E::REQUEST_TIMED_OUT));
    assert_eq!(h.c.describe("u").state, "Empty");
    assert!(!h.c.is_pending("u"));
}

/// Append failures map to coordinator errors and clear the pending state; an append that
/// completes after the partition moved away is NOT_COORDINATOR and changes nothing.
#[test]
fn append_failures_and_unload() {
    let mut h = H::default_config();
    h.auto = false;
    let req = h.request();
    let r = InitProducerId {
        transactional_id: "t".into(),
        timeout_ms: 60_000,
        producer_id: -1,
        producer_epoch: -1,
        enable_two_phase_commit: false,
        keep_prepared_txn: false,
    };
    let e = h.c.init_producer_id(req, &r, h.now, &mut h.ids);
    h.run(e);
    let a = h.held.appends.pop().expect("append");
    let ans = h.finish_append(&a, Err(E::NOT_LEADER_OR_FOLLOWER));
    assert_eq!(err(&ans[0].1), E::NOT_COORDINATOR);
    assert!(!h.c.is_pending("t"));
    let e = h.c.init_producer_id(req, &r, h.now, &mut h.ids);
    h.run(e);
    let a = h.held.appends.pop().expect("append");
    h.c.unload(h.c.partition_for("t"), Some(1));
    let ans = h.finish_append(&a, Ok(()));
    assert_eq!(err(&ans[0].1), E::NOT_COORDINATOR);
}

/// Loading a partition whose log ends in PrepareCommit re-sends the commit markers and
/// writes CompleteCommit; replaying the log gives the coordinator's state.
#[test]
fn reload_resumes_prepared() {
    let mut h = H::default_config();
    let pe = h.init_ok("t");
    h.add("t", pe, &[("a", 0), ("b", 3)], TV2);
    h.auto = false;
    let req = h.request();
    let r = sluice_txn::EndTxn {
        transactional_id: "t".into(),
        producer_id: pe.0,
        producer_epoch: pe.1,
        result: Commit,
        client_version: TV2,
    };
    let e = h.c.end_txn(req, &r, h.now, &mut h.ids);
    h.run(e);
    let a = h.held.appends.pop().expect("prepare");
    h.finish_append(&a, Ok(()));
    assert_eq!(h.held.markers.len(), 1);
    // The broker dies before the markers are written; a new leader loads the log.
    let p = h.c.partition_for("t");
    let records = h.log[&p].clone();
    let mut fresh = H::default_config();
    fresh.c.begin_load(p, 2);
    let recs = records.iter().map(|(k, v)| (k.as_slice(), v.as_deref()));
    let effects = fresh.c.finish_load(p, 2, recs, h.now).expect("load");
    fresh.log.insert(p, records.clone());
    assert!(fresh.run(effects).is_empty());
    let m = &fresh.held.markers[0];
    assert_eq!(
        (m.result, m.producer_epoch, m.coordinator_epoch),
        (Commit, 1, 2)
    );
    assert_eq!(m.partitions.len(), 2);
    assert_eq!(fresh.states_of("t"), vec![0, 1, 2, 4]);
    let all = fresh.log[&p]
        .iter()
        .map(|(k, v)| (k.as_slice(), v.as_deref()));
    let replayed = sluice_txn::replay(all).expect("replay");
    let mut live = fresh.c.metadata("t").cloned().expect("held");
    live.last_producer_epoch = -1;
    assert_eq!(replayed.get("t"), Some(&live));
}

/// Marker outcomes: a retriable error re-sends that partition only; a deleted topic counts
/// as done; INVALID_PRODUCER_EPOCH stops the sending and the id stays pending.
#[test]
fn marker_outcomes() {
    let mut h = H::default_config();
    let pe = h.init_ok("t");
    h.add("t", pe, &[("a", 0), ("b", 0), ("c", 0)], TV0);
    h.auto = false;
    let req = h.request();
    let r = sluice_txn::EndTxn {
        transactional_id: "t".into(),
        producer_id: pe.0,
        producer_epoch: pe.1,
        result: Abort,
        client_version: TV0,
    };
    let e = h.c.end_txn(req, &r, h.now, &mut h.ids);
    h.run(e);
    let a = h.held.appends.pop().expect("prepare");
    h.finish_append(&a, Ok(()));
    let m = h.held.markers.pop().expect("markers");
    let tp = |t: &str| TopicPartition::new(t, 0);
    let results = [
        (tp("a"), MarkerResult::Written),
        (tp("b"), MarkerResult::Failed(E::NOT_LEADER_OR_FOLLOWER)),
        (tp("c"), MarkerResult::TopicDeleted),
    ];
    let e =
        h.c.markers_written("t", m.coordinator_epoch, &results, h.now);
    h.run(e);
    let again = h.held.markers.pop().expect("retry");
    assert_eq!(again.partitions, vec![tp("b")]);
    let stop = [(tp("b"), MarkerResult::Failed(E::INVALID_PRODUCER_EPOCH))];
    let e = h.c.markers_written("t", m.coordinator_epoch, &stop, h.now);
    assert!(e.is_empty());
    assert!(h.c.is_pending("t"));
    assert_eq!(h.c.pending_markers(), Vec::new());
}

/// A Complete append that fails with COORDINATOR_NOT_AVAILABLE is retried as a new append.
#[test]
fn complete_append_retried() {
    let mut h = H::default_config();
    let pe = h.init_ok("t");
    h.auto = false;
    let req = h.request();
    let r = sluice_txn::EndTxn {
        transactional_id: "t".into(),
        producer_id: pe.0,
        producer_epoch: pe.1,
        result: Abort,
        client_version: TV2,
    };
    let e = h.c.end_txn(req, &r, h.now, &mut h.ids);
    h.run(e);
    let prep = h.held.appends.pop().expect("prepare");
    h.finish_append(&prep, Ok(()));
    let complete = h.held.appends.pop().expect("complete");
    assert!(
        h.finish_append(&complete, Err(E::REQUEST_TIMED_OUT))
            .is_empty()
    );
    let again = h.held.appends.pop().expect("retried");
    assert_ne!(again.write, complete.write);
    h.finish_append(&again, Ok(()));
    assert_eq!(
        h.c.metadata("t").map(|m| m.state),
        Some(TxnState::CompleteAbort)
    );
}

/// DescribeTransactions and ListTransactions: state names, partitions by topic, the filters
/// and unknown state names.
#[test]
fn describe_and_list() {
    let mut h = H::default_config();
    let pe = h.init_ok("t");
    h.init_ok("u");
    h.add("t", pe, &[("b", 1), ("a", 2), ("a", 0)], TV0);
    let d = h.c.describe("t");
    assert_eq!(
        (d.error, d.state, d.timeout_ms),
        (E::NONE, "Ongoing", 60_000)
    );
    assert_eq!(
        d.topics,
        vec![("a".into(), vec![0, 2]), ("b".into(), vec![1])]
    );
    assert_eq!(h.c.describe("nope").error, E::TRANSACTIONAL_ID_NOT_FOUND);
    assert_eq!(h.c.describe("").error, E::INVALID_REQUEST);
    let l = h.c.list(&filter(&["Ongoing", "Bogus"]), h.now);
    assert_eq!(l.unknown_state_filters, vec!["Bogus".to_string()]);
    assert_eq!(l.transactions.len(), 1);
    assert_eq!(l.transactions[0].state, "Ongoing");
    assert_eq!(h.c.list(&filter(&[]), h.now).transactions.len(), 2);
    let mut f = filter(&[]);
    f.producer_ids.insert(1001);
    assert_eq!(h.c.list(&f, h.now).transactions[0].transactional_id, "u");
    let mut f = filter(&[]);
    f.duration_ms = 10;
    h.now += 10;
    let ids: Vec<_> =
        h.c.list(&f, h.now)
            .transactions
            .into_iter()
            .map(|t| t.transactional_id)
            .collect();
    assert_eq!(
        ids,
        vec!["u".to_string()],
        "t runs 10 ms, not more; u has start -1"
    );
    let only_t = |s: &str| s == "t";
    let mut f = filter(&[]);
    f.id_matches = Some(&only_t);
    assert_eq!(h.c.list(&f, h.now).transactions.len(), 1);
    let _ = Answer::AddOffsets { error: E::NONE };
}
