//! Transactions on a partition (issue 23): markers from the coordinator (`append_marker`),
//! the last stable offset, read_committed reads with their aborted transactions, the producer
//! rules around markers (sequences, fencing, INVALID_TXN_STATE), persistence (v3 producer
//! snapshots, `.txnindex` files) through clean closes, crashes at any disk call, truncation
//! and retention, and compaction of transactional data.

mod common;

use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use futures_lite::future::block_on;
use sluice_net::record_batch::build::{BatchSpec, batch};
use sluice_net::record_batch::{Batches, RecordBatch};
use sluice_shard::*;

const DIR: &str = "/d/t-0";

/// A batch of producer `pid` (epoch, first sequence), `count` records with key `key`,
/// transactional or not.
fn tbatch(pid: i64, epoch: i16, seq: i32, count: usize, txn: bool, key: &[u8]) -> Bytes {
    let v = [7u8; 20];
    let recs: Vec<_> = (0..count).map(|_| (Some(key), Some(&v[..]))).collect();
    batch(
        &BatchSpec {
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            attributes: if txn { 0x10 } else { 0 },
            base_timestamp: 1_000_000,
            ..BatchSpec::default()
        },
        &recs,
    )
}

fn commit(coordinator_epoch: i32) -> Marker {
    Marker {
        commit: true,
        coordinator_epoch,
    }
}

fn abort(coordinator_epoch: i32) -> Marker {
    Marker {
        commit: false,
        coordinator_epoch,
    }
}

fn cfg() -> LogConfig {
    LogConfig {
        segment_bytes: 1 << 10,
        index_interval_bytes: 256,
        preallocate_bytes: 4 << 10,
        ..LogConfig::default()
    }
}

async fn open(disk: &FakeDisk, cfg: LogConfig) -> (Shard<FakeDisk>, Partition<FakeDisk>) {
    let s = Shard::open(disk.clone(), Path::new("/d"), ShardConfig::default())
        .await
        .expect("shard");
    let p = s.create_partition("t", 0, cfg).await.expect("partition");
    (s, p)
}

/// Every batch of the log from its start to its end.
async fn all_batches(p: &Partition<FakeDisk>) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    let mut off = p.offsets().log_start_offset;
    while off < p.offsets().log_end_offset {
        let r = p.read_to_log_end(off, 1 << 20).await.expect("read");
        if r.batches.is_empty() {
            break;
        }
        for b in r.batches {
            let b = RecordBatch::new(b).expect("batch");
            off = b.last_offset() + 1;
            out.push(b);
        }
    }
    out
}

/// A fresh replay of the kept log into a `Transactions` table at the partition's high
/// watermark: (first unstable offset, LSO, aborted transactions).
async fn replayed(p: &Partition<FakeDisk>) -> (Option<i64>, i64, Vec<AbortedTxn>) {
    let mut t = Transactions::default();
    for b in all_batches(p).await {
        t.batch(&b);
    }
    let hw = p.offsets().high_watermark;
    t.high_watermark_moved(hw);
    (
        t.first_unstable_offset(),
        t.last_stable_offset(hw),
        t.aborted_between(0, i64::MAX),
    )
}

fn files(disk: &FakeDisk, suffix: &str) -> Vec<String> {
    let mut v: Vec<String> = disk
        .paths()
        .iter()
        .filter(|p| p.parent() == Some(Path::new(DIR)))
        .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
        .filter(|n| n.ends_with(suffix))
        .collect();
    v.sort();
    v
}

/// Commit and abort through appends and markers: the LSO holds at an open transaction's
/// first offset, read_committed stops there, a commit frees it, an abort enters the index
/// and read_committed returns it with the batches it overlaps.
#[test]
fn commit_abort_and_the_last_stable_offset() {
    let disk = FakeDisk::new(1, Faults::default(), 1_000_000);
    block_on(async {
        let (s, p) = open(&disk, LogConfig::default()).await;
        p.append(tbatch(-1, -1, -1, 1, false, b"k")).await.unwrap();
        let a = p.append(tbatch(1, 0, 0, 2, true, b"k")).await.unwrap();
        assert_eq!((a.base_offset, p.last_stable_offset()), (1, 1));
        assert_eq!(p.open_transaction(1), Some(1));
        p.append(tbatch(2, 0, 0, 1, true, b"k")).await.unwrap(); // 3
        p.append(tbatch(-1, -1, -1, 1, false, b"k")).await.unwrap(); // 4
        let r = p.read_committed(0, 1 << 20).await.unwrap();
        assert_eq!((r.batches.len(), r.last_stable_offset), (1, 1));
        assert_eq!(r.high_watermark, 5);
        assert!(
            p.read_committed(1, 1 << 20)
                .await
                .unwrap()
                .batches
                .is_empty()
        );
        assert_eq!(p.read(0, 1 << 20).await.unwrap().last_stable_offset, 1);
        let m = p.append_marker(1, 0, commit(3)).await.unwrap();
        assert_eq!((m.base_offset, m.last_offset), (5, 5));
        assert_eq!(p.open_transaction(1), None);
        assert_eq!(p.last_stable_offset(), 3, "producer 2 is still open");
        let m = p.append_marker(2, 0, abort(3)).await.unwrap();
        assert_eq!(m.base_offset, 6);
        assert_eq!(p.last_stable_offset(), 7);
        let r = p.read_committed(0, 1 << 20).await.unwrap();
        assert_eq!(r.batches.len(), 6);
        let want = AbortedTxn {
            producer_id: 2,
            first_offset: 3,
            last_offset: 6,
            last_stable_offset: 7,
        };
        assert_eq!(r.aborted, vec![want]);
        // A read ending before the aborted transaction starts does not get it, nor one
        // starting past its marker, nor a read with nothing to return.
        assert!(p.read_committed(0, 1).await.unwrap().aborted.is_empty());
        assert!(
            p.read_committed(7, 1 << 20)
                .await
                .unwrap()
                .aborted
                .is_empty()
        );
        assert_eq!(
            p.read_committed(6, 1 << 20).await.unwrap().aborted,
            vec![want]
        );
        // `read` never fills the aborted list.
        assert!(p.read(0, 1 << 20).await.unwrap().aborted.is_empty());
        // A marker with no open transaction is no transaction (Kafka): no index entry.
        p.append_marker(1, 0, abort(3)).await.unwrap();
        assert_eq!(p.aborted_transactions(), vec![want]);
        assert_eq!(replayed(&p).await, (None, 8, vec![want]));
        s.close().await.unwrap();
    });
}

/// A marker is not a sequenced batch: after a commit in the same epoch (transaction
/// versions 0 and 1) the producer's sequence goes on; after a marker with a bumped epoch
/// (version 2) it restarts at 0. Also across a crash (state rebuilt from the log).
#[test]
fn sequences_after_markers() {
    let disk = FakeDisk::new(2, Faults::default(), 1_000_000);
    block_on(async {
        let (s, p) = open(&disk, LogConfig::default()).await;
        p.append(tbatch(1, 0, 0, 3, true, b"k")).await.unwrap();
        p.append_marker(1, 0, commit(1)).await.unwrap();
        let check = |p: Partition<FakeDisk>| async move {
            match p.append(tbatch(1, 0, 7, 1, true, b"k")).await {
                Err(ShardError::OutOfOrderSequence { expected: 3, .. }) => {}
                other => panic!("expected out of order at 3, got {other:?}"),
            }
            match p.append(tbatch(1, 0, 0, 3, true, b"k")).await {
                Err(ShardError::DuplicateSequence { base_offset: 0, .. }) => {}
                other => panic!("expected a duplicate, got {other:?}"),
            }
        };
        check(p.clone()).await;
        drop((s, p));
        disk.crash();
        let (s, p) = open(&disk, LogConfig::default()).await;
        check(p.clone()).await;
        let info = p.append(tbatch(1, 0, 3, 2, true, b"k")).await.unwrap();
        assert_eq!(info.base_offset, 4);
        // Transaction version 2: the marker carries the bumped epoch.
        p.append_marker_versioned(1, 1, abort(1), 2).await.unwrap();
        let states = p.producer_states();
        assert_eq!(states.len(), 1);
        let st = states[0];
        assert_eq!((st.producer_epoch, st.last_sequence), (1, -1));
        assert_eq!((st.coordinator_epoch, st.current_txn_start_offset), (1, -1));
        let check = |p: Partition<FakeDisk>| async move {
            match p.append(tbatch(1, 1, 5, 1, true, b"k")).await {
                Err(ShardError::OutOfOrderSequence { expected: 0, .. }) => {}
                other => panic!("expected out of order at 0, got {other:?}"),
            }
            match p.append(tbatch(1, 0, 5, 1, true, b"k")).await {
                Err(ShardError::InvalidProducerEpoch {
                    epoch: 0,
                    current_epoch: 1,
                    ..
                }) => {}
                other => panic!("expected fenced, got {other:?}"),
            }
        };
        check(p.clone()).await;
        drop((s, p));
        disk.crash();
        let (s, p) = open(&disk, LogConfig::default()).await;
        check(p.clone()).await;
        s.close().await.unwrap();
        drop(p);
        // And from the close snapshot (an entry with an epoch and no batch is kept).
        let (s, p) = open(&disk, LogConfig::default()).await;
        check(p.clone()).await;
        assert_eq!(
            p.append(tbatch(1, 1, 0, 1, true, b"k"))
                .await
                .unwrap()
                .base_offset,
            7
        );
        s.close().await.unwrap();
    });
}

/// Fenced markers: an older producer epoch (any version), the current one while a
/// transaction is open (version 2), an older coordinator epoch. INVALID_TXN_STATE: a
/// non-transactional batch from a producer with an open transaction, also within one
/// request. Refused calls append nothing.
#[test]
fn fenced_markers_and_invalid_txn_state() {
    let disk = FakeDisk::new(3, Faults::default(), 1_000_000);
    block_on(async {
        let (s, p) = open(&disk, LogConfig::default()).await;
        p.append(tbatch(1, 2, 0, 1, true, b"k")).await.unwrap();
        p.append_marker(1, 2, commit(5)).await.unwrap();
        p.append(tbatch(1, 2, 1, 1, true, b"k")).await.unwrap();
        let end = p.offsets().log_end_offset;
        match p.append_marker(1, 1, commit(5)).await {
            Err(ShardError::InvalidProducerEpoch {
                epoch: 1,
                current_epoch: 2,
                ..
            }) => {}
            other => panic!("expected fenced epoch, got {other:?}"),
        }
        match p.append_marker_versioned(1, 2, commit(5), 2).await {
            Err(ShardError::InvalidProducerEpoch { epoch: 2, .. }) => {}
            other => panic!("expected fenced epoch (TV2), got {other:?}"),
        }
        match p.append_marker(1, 2, abort(4)).await {
            Err(ShardError::TransactionCoordinatorFenced {
                producer_id: 1,
                coordinator_epoch: 4,
                current_coordinator_epoch: 5,
            }) => {}
            other => panic!("expected a fenced coordinator, got {other:?}"),
        }
        match p.append(tbatch(1, 2, 2, 1, false, b"k")).await {
            Err(ShardError::InvalidTxnState { producer_id: 1 }) => {}
            other => panic!("expected INVALID_TXN_STATE, got {other:?}"),
        }
        let mut two = tbatch(9, 0, 0, 1, true, b"k").to_vec();
        two.extend_from_slice(&tbatch(9, 0, 1, 1, false, b"k"));
        match p.append(Bytes::from(two)).await {
            Err(ShardError::InvalidTxnState { producer_id: 9 }) => {}
            other => panic!("expected INVALID_TXN_STATE in one request, got {other:?}"),
        }
        assert_eq!(p.offsets().log_end_offset, end);
        // A newer coordinator and a bumped epoch pass; an unknown producer is not checked.
        p.append_marker_versioned(1, 3, abort(6), 2).await.unwrap();
        p.append_marker(77, 0, abort(0)).await.unwrap();
        assert_eq!(p.last_stable_offset(), p.offsets().high_watermark);
        s.close().await.unwrap();
    });
}

/// Proves KIP-890's verification guard: a transactional batch opens a transaction only with
/// its producer's pending guard; a marker or another opening append withdraws the guard; a
/// batch of an open transaction needs none; a retried batch is still answered as a duplicate.
#[test]
fn verification_guards() {
    let disk = FakeDisk::new(3, Faults::default(), 1_000_000);
    block_on(async {
        let (s, p) = open(&disk, LogConfig::default()).await;
        let not_in_txn = |r: Result<AppendInfo>| match r {
            Err(ShardError::NotInTransaction { producer_id: 1 }) => {}
            other => panic!("expected NotInTransaction, got {other:?}"),
        };
        not_in_txn(
            p.append_checked(tbatch(1, 0, 0, 1, true, b"k"), TxnCheck::Guard(None))
                .await,
        );
        let g = p
            .start_verification((1, 0), 0, false)
            .unwrap()
            .expect("a guard: nothing open");
        not_in_txn(
            p.append_checked(tbatch(1, 0, 0, 1, true, b"k"), TxnCheck::Guard(Some(g + 1)))
                .await,
        );
        assert_eq!(
            p.start_verification((1, 0), 0, false).unwrap(),
            Some(g),
            "reused"
        );
        let first = tbatch(1, 0, 0, 1, true, b"k");
        p.append_checked(first.clone(), TxnCheck::Guard(Some(g)))
            .await
            .unwrap();
        assert_eq!(
            p.start_verification((1, 0), 0, false).unwrap(),
            None,
            "it is open"
        );
        p.append_checked(tbatch(1, 0, 1, 1, true, b"k"), TxnCheck::Guard(None))
            .await
            .unwrap();
        p.append_marker(1, 0, commit(0)).await.unwrap();
        match p.append_checked(first, TxnCheck::Guard(None)).await {
            Err(ShardError::DuplicateSequence { base_offset: 0, .. }) => {}
            other => panic!("a retry is a duplicate before any guard check: {other:?}"),
        }
        // A guard taken before a marker does not survive it (the late append of a
        // transaction that was aborted meanwhile).
        let g2 = p
            .start_verification((1, 0), 0, false)
            .unwrap()
            .expect("a guard: it ended");
        p.append_marker(1, 0, abort(0)).await.unwrap();
        not_in_txn(
            p.append_checked(tbatch(1, 0, 2, 1, true, b"k"), TxnCheck::Guard(Some(g2)))
                .await,
        );
        match p.start_verification((9, 0), 0, false) {
            Ok(Some(_)) => {}
            other => panic!("an unknown producer may start: {other:?}"),
        }
        p.append_marker(1, 1, abort(0)).await.unwrap();
        match p.start_verification((1, 0), 0, false) {
            Err(ShardError::InvalidProducerEpoch {
                current_epoch: 1, ..
            }) => {}
            other => panic!("an older epoch is fenced: {other:?}"),
        }
        // Unchecked appends and non-transactional batches need no guard.
        p.append_checked(tbatch(2, 0, 0, 1, false, b"k"), TxnCheck::Guard(None))
            .await
            .unwrap();
        p.append(tbatch(3, 0, 0, 1, true, b"k")).await.unwrap();
        s.close().await.unwrap();
    });
}

/// Kafka's `lowestSequence` rule: two batches of a producer with no state here, both being
/// verified, cannot open the transaction out of order: the later one is refused as out of
/// order until the earlier one is in, then appends.
#[test]
fn verified_batches_open_a_transaction_in_sequence_order() {
    let disk = FakeDisk::new(11, Faults::default(), 1_000_000);
    block_on(async {
        let (s, p) = open(&disk, LogConfig::default()).await;
        let g = p
            .start_verification((5, 0), 0, true)
            .unwrap()
            .expect("a guard");
        assert_eq!(p.start_verification((5, 0), 3, true).unwrap(), Some(g));
        let second = tbatch(5, 0, 3, 2, true, b"k");
        match p
            .append_checked(second.clone(), TxnCheck::Guard(Some(g)))
            .await
        {
            Err(ShardError::OutOfOrderSequence {
                producer_id: 5,
                expected: 0,
                received: 3,
            }) => {}
            other => panic!("the later batch first: {other:?}"),
        }
        let first = tbatch(5, 0, 0, 3, true, b"k");
        let info = p
            .append_checked(first, TxnCheck::Guard(Some(g)))
            .await
            .unwrap();
        assert_eq!(info.base_offset, 0);
        let info = p
            .append_checked(second, TxnCheck::Guard(None))
            .await
            .unwrap();
        assert_eq!(info.base_offset, 3);
        s.close().await.unwrap();
    });
}

/// A follower's append takes markers and never refuses a batch for transaction rules.
#[test]
fn follower_appends_feed_transactions() {
    let disk = FakeDisk::new(4, Faults::default(), 1_000_000);
    block_on(async {
        let (s, p) = open(&disk, LogConfig::default()).await;
        let mut log = BytesMut::new();
        let mut at = 0i64;
        let mut push = |b: Bytes| {
            let mut b = BytesMut::from(&b[..]);
            sluice_net::record_batch::set_base_offset(&mut b, at);
            at += i64::from(
                RecordBatch::new(b.clone().freeze())
                    .unwrap()
                    .last_offset_delta(),
            ) + 1;
            log.extend_from_slice(&b);
        };
        push(tbatch(1, 0, 0, 2, true, b"k"));
        push(tbatch(1, 0, 2, 1, false, b"k")); // a leader would refuse it; a follower not
        push(marker_batch(1, 0, abort(2), 1_000_000));
        push(tbatch(2, 0, 0, 1, true, b"k"));
        p.append_replicated(log.freeze()).await.unwrap();
        assert_eq!(p.open_transaction(2), Some(4));
        assert_eq!(p.last_stable_offset(), 4);
        assert_eq!(p.aborted_transactions().len(), 1);
        assert_eq!(replayed(&p).await.2, p.aborted_transactions());
        s.close().await.unwrap();
    });
}

/// Everything the partition says about producers and transactions, to compare two opens.
async fn state(p: &Partition<FakeDisk>) -> (Vec<ProducerStateInfo>, Vec<AbortedTxn>, i64, Offsets) {
    (
        p.producer_states(),
        p.aborted_transactions(),
        p.last_stable_offset(),
        p.offsets(),
    )
}

/// The workload's model of one transactional producer.
#[derive(Clone, Copy, Default)]
struct Prod {
    epoch: i16,
    next_seq: i32,
}

/// A seeded random step of a transactional workload on producers 1..=3 and a plain one.
async fn step(p: &Partition<FakeDisk>, prods: &mut [Prod; 4], rng: &mut u64) -> Result<()> {
    let mut next = |n: u64| {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        *rng % n
    };
    let i = next(4) as usize;
    let pid = i as i64 + 1;
    let pr = &mut prods[i];
    let r = match next(10) {
        0..=4 => {
            let count = 1 + next(3) as usize;
            let txn = i < 3;
            let key = format!("k{}", next(5));
            let r = p.append(tbatch(
                pid,
                pr.epoch,
                pr.next_seq,
                count,
                txn,
                key.as_bytes(),
            ));
            r.await.map(|_| pr.next_seq += count as i32)
        }
        5 | 6 => p.append_marker(pid, pr.epoch, commit(1)).await.map(drop),
        7 => p.append_marker(pid, pr.epoch, abort(1)).await.map(drop),
        8 => {
            let r = p
                .append_marker_versioned(pid, pr.epoch + 1, abort(1), 2)
                .await;
            r.map(|_| {
                pr.epoch += 1;
                pr.next_seq = 0;
            })
        }
        _ => p.roll().await,
    };
    match r {
        Err(ShardError::InvalidTxnState { .. }) => Ok(()),
        other => other,
    }
}

/// The model taken from what the partition says (after a reopen or a truncation).
fn resync(p: &Partition<FakeDisk>, prods: &mut [Prod; 4]) {
    for s in p.producer_states() {
        let i = (s.producer_id - 1) as usize;
        prods[i] = Prod {
            epoch: s.producer_epoch,
            next_seq: s.last_sequence + 1,
        };
    }
}

/// Checks a just opened partition against a fresh replay: the transactions against the
/// public `Transactions` table fed with every batch of the log, and the whole producer and
/// transaction state against an open with every snapshot removed (which replays the whole
/// log). Returns the partition opened the second way.
async fn check_against_replay(
    disk: &FakeDisk,
    s: Shard<FakeDisk>,
    p: Partition<FakeDisk>,
    seed: u64,
) -> (Shard<FakeDisk>, Partition<FakeDisk>) {
    let (first_unstable, lso, aborted) = replayed(&p).await;
    assert_eq!(lso, p.last_stable_offset(), "seed {seed}");
    assert_eq!(aborted, p.aborted_transactions(), "seed {seed}");
    for st in p.producer_states() {
        if st.current_txn_start_offset >= 0 {
            assert!(first_unstable.is_some_and(|f| f <= st.current_txn_start_offset));
        }
    }
    let loaded = state(&p).await;
    drop((s, p));
    // Without snapshots the whole log is replayed (and no index file is read: they all lie
    // below a snapshot). The index files stay: later snapshots vouch for them.
    for name in files(disk, ".snapshot") {
        disk.remove(&PathBuf::from(DIR).join(name)).await.unwrap();
    }
    let (s, p) = open(disk, cfg()).await;
    assert_eq!(state(&p).await, loaded, "seed {seed}");
    (s, p)
}

/// Crashes at random disk calls during a transactional workload (rolls, markers, epoch
/// bumps, truncations, clean closes): after each reopen, the producer state, the
/// transactions, the LSO and the aborted list equal a fresh replay of the kept log.
#[test]
fn crashes_during_a_transactional_workload_recover_to_a_replay() {
    for seed in 1..=200u64 {
        let disk = FakeDisk::new(seed, Faults::default(), 1_000_000);
        let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        block_on(async {
            let (mut s, mut p) = open(&disk, cfg()).await;
            let mut prods = [Prod::default(); 4];
            for round in 0..6 {
                let cut = rng % 120;
                disk.fail_after(Some(cut + 20));
                for i in 0..40 {
                    if step(&p, &mut prods, &mut rng).await.is_err() {
                        break;
                    }
                    let (_, lso, aborted) = replayed(&p).await;
                    let here = (p.last_stable_offset(), p.aborted_transactions());
                    assert_eq!((lso, aborted), here, "seed {seed} round {round} step {i}");
                }
                if round % 3 == 1 && p.is_open() {
                    let end = p.offsets().log_end_offset;
                    let to = end - (rng % 7) as i64;
                    if to >= p.offsets().log_start_offset && p.truncate_to(to).await.is_ok() {
                        resync(&p, &mut prods);
                        let (_, lso, aborted) = replayed(&p).await;
                        assert_eq!(
                            (lso, aborted),
                            (p.last_stable_offset(), p.aborted_transactions()),
                            "seed {seed} after truncation to {to}"
                        );
                    }
                }
                if round % 2 == 0 {
                    let _ = s.close().await;
                }
                drop((s, p));
                disk.crash();
                disk.fail_after(None);
                let (s2, p2) = open(&disk, cfg()).await;
                (s, p) = check_against_replay(&disk, s2, p2, seed).await;
                resync(&p, &mut prods);
            }
            s.close().await.unwrap();
        });
    }
}

/// `.txnindex` files: written for the segments that hold aborted transactions when they
/// are sealed, loaded on open (below the snapshot), removed with their segment by a
/// truncation and by retention, rewritten when a truncation cuts their segment.
#[test]
fn txn_index_files_follow_truncation_and_retention() {
    let disk = FakeDisk::new(5, Faults::default(), 10_000_000);
    let cfg = LogConfig {
        retention_ms: Some(1_000),
        ..LogConfig::default()
    };
    block_on(async {
        let (s, p) = open(&disk, cfg.clone()).await;
        // Segment i: a transaction of producer 1, aborted when i is even, then a roll.
        let mut seq = 0;
        for i in 0..6 {
            p.append(tbatch(1, 0, seq, 2, true, b"k")).await.unwrap();
            p.append(tbatch(2, 0, i, 1, true, b"k")).await.unwrap();
            seq += 2;
            let m = if i % 2 == 0 { abort(1) } else { commit(1) };
            p.append_marker(1, 0, m).await.unwrap();
            p.append_marker(2, 0, m).await.unwrap();
            p.roll().await.unwrap();
        }
        let aborted = p.aborted_transactions();
        assert_eq!(aborted.len(), 6);
        assert_eq!(files(&disk, ".txnindex").len(), 3);
        s.close().await.unwrap();
        drop(p);
        let (s, p) = open(&disk, cfg.clone()).await;
        assert_eq!(p.aborted_transactions(), aborted);
        // Truncate into segment 2 (its base is 10: a segment holds offsets for 3 records
        // and 2 markers).
        p.truncate_to(11).await.unwrap();
        assert_eq!(p.offsets().log_end_offset, 10);
        assert_eq!(p.aborted_transactions(), aborted[..2].to_vec());
        assert_eq!(files(&disk, ".txnindex").len(), 1);
        assert_eq!(p.open_transaction(1), None);
        let (_, lso, replay_aborted) = replayed(&p).await;
        assert_eq!((lso, replay_aborted), (10, aborted[..2].to_vec()));
        drop((s, p));
        disk.crash();
        let (s, p) = open(&disk, cfg.clone()).await;
        assert_eq!(p.aborted_transactions(), aborted[..2].to_vec());
        // Cut inside segment 0's transaction: its marker goes, it is open again.
        p.truncate_to(3).await.unwrap();
        assert_eq!(p.open_transaction(1), Some(0));
        assert_eq!(p.open_transaction(2), Some(2));
        assert!(p.aborted_transactions().is_empty());
        assert!(files(&disk, ".txnindex").is_empty());
        assert_eq!(p.last_stable_offset(), 0);
        p.append_marker(1, 0, abort(1)).await.unwrap();
        p.append_marker(2, 0, commit(1)).await.unwrap();
        p.roll().await.unwrap();
        p.append(tbatch(3, 0, 0, 1, false, b"k")).await.unwrap();
        assert_eq!(files(&disk, ".txnindex").len(), 1);
        // Retention (every closed segment is old): the segment and its index file go.
        disk.advance_ms(10_000_000);
        assert_eq!(p.enforce_retention().await.unwrap(), 1);
        assert!(p.aborted_transactions().is_empty());
        assert!(files(&disk, ".txnindex").is_empty());
        s.close().await.unwrap();
    });
}

/// Compaction keeps every marker, never lets an aborted record shadow a committed one, and
/// removes aborted records; it does not clean past the last stable offset.
#[test]
fn compaction_and_transactions() {
    let disk = FakeDisk::new(6, Faults::default(), 1_000_000);
    let cfg = LogConfig {
        compact: true,
        min_cleanable_dirty_ratio: 0.0,
        segment_bytes: 1 << 20,
        ..LogConfig::default()
    };
    block_on(async {
        let (s, p) = open(&disk, cfg).await;
        p.append(tbatch(1, 0, 0, 1, true, b"a")).await.unwrap(); // 0: committed a
        p.append_marker(1, 0, commit(1)).await.unwrap(); // 1
        p.append(tbatch(1, 0, 1, 1, true, b"a")).await.unwrap(); // 2: aborted a
        p.append(tbatch(1, 0, 2, 1, true, b"b")).await.unwrap(); // 3: aborted b
        p.append_marker(1, 0, abort(1)).await.unwrap(); // 4
        p.append(tbatch(2, 0, 0, 1, true, b"c")).await.unwrap(); // 5: open c
        p.roll().await.unwrap();
        p.append(tbatch(3, 0, 0, 1, false, b"d")).await.unwrap();
        assert_eq!(p.last_stable_offset(), 5);
        let st = p.compact(10_000_000).await.unwrap();
        assert_eq!(
            st.segments_cleaned, 0,
            "the segment reaches past the LSO: {st:?}"
        );
        p.append_marker(2, 0, commit(1)).await.unwrap();
        p.roll().await.unwrap();
        let st = p.compact(10_000_000).await.unwrap();
        assert!(st.segments_cleaned > 0, "{st:?}");
        let mut values = Vec::new();
        let mut markers = 0;
        for b in all_batches(&p).await {
            if b.is_control() {
                markers += 1;
                continue;
            }
            for r in b.records().unwrap() {
                let r = r.unwrap();
                values.push((b.base_offset() + i64::from(r.offset_delta), r.key.unwrap()));
            }
        }
        assert_eq!(markers, 3);
        let keys: Vec<(i64, &[u8])> = values.iter().map(|(o, k)| (*o, &k[..])).collect();
        assert_eq!(keys, vec![(0, &b"a"[..]), (5, b"c"), (6, b"d")]);
        // A read_committed consumer sees the committed records only.
        let r = p.read_committed(0, 1 << 20).await.unwrap();
        let batches: Vec<RecordBatch> = r
            .batches
            .iter()
            .flat_map(|b| Batches::new(b.clone()))
            .map(|b| b.unwrap())
            .collect();
        assert!(batches.iter().any(|b| b.base_offset() == 0));
        s.close().await.unwrap();
    });
}

/// A batch of producer `pid` (epoch 0) from sequence `seq`: one record per key, 150-byte
/// values.
fn keyed(pid: i64, seq: i32, txn: bool, keys: &[&str]) -> Bytes {
    let v = [9u8; 150];
    let recs: Vec<_> = keys
        .iter()
        .map(|k| (Some(k.as_bytes()), Some(&v[..])))
        .collect();
    batch(
        &BatchSpec {
            producer_id: pid,
            producer_epoch: 0,
            base_sequence: seq,
            attributes: if txn { 0x10 } else { 0 },
            base_timestamp: 1_000_000,
            ..BatchSpec::default()
        },
        &recs,
    )
}

/// What a read_committed Java consumer delivers from the log start, as Kafka's `Fetcher`
/// filters: an aborted transaction's producer is skipped from the entry's first offset until
/// that producer's ABORT marker. (offset, key) of each record.
async fn committed_view(p: &Partition<FakeDisk>) -> Vec<(i64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pending: Vec<AbortedTxn> = Vec::new();
    let mut skipping = std::collections::HashSet::new();
    let mut off = p.offsets().log_start_offset;
    while off < p.last_stable_offset() {
        let r = p.read_committed(off, 1 << 20).await.expect("read");
        if r.batches.is_empty() {
            break;
        }
        pending.extend(r.aborted);
        pending.sort_by_key(|a| a.first_offset);
        for b in r.batches.iter().flat_map(|b| Batches::new(b.clone())) {
            let b = b.expect("batch");
            off = b.last_offset() + 1;
            while pending
                .first()
                .is_some_and(|a| a.first_offset <= b.last_offset())
            {
                skipping.insert(pending.remove(0).producer_id);
            }
            if b.is_control() {
                if marker_of(&b).is_some_and(|m| !m.commit) {
                    skipping.remove(&b.producer_id());
                }
                continue;
            }
            if b.is_transactional() && skipping.contains(&b.producer_id()) {
                continue;
            }
            for r in b.records().expect("records") {
                let r = r.expect("record");
                out.push((
                    b.base_offset() + i64::from(r.offset_delta),
                    r.key.unwrap().to_vec(),
                ));
            }
        }
    }
    out
}

/// Offsets of the transaction markers in the log.
async fn marker_offsets(p: &Partition<FakeDisk>) -> Vec<i64> {
    let batches = all_batches(p).await;
    batches
        .iter()
        .filter(|b| b.is_control())
        .map(RecordBatch::base_offset)
        .collect()
}

const RETENTION_MS: i64 = 1_000;
/// The markers of `build_marker_log`, and those left once the removable ones went.
const MARKERS: [i64; 4] = [1, 4, 11, 18];
const MARKERS_KEPT: [i64; 2] = [11, 18];
const FIRST_PASS_MS: i64 = 10_000_000;

fn marker_cfg() -> LogConfig {
    LogConfig {
        compact: true,
        min_cleanable_dirty_ratio: 0.0,
        segment_bytes: 1 << 10,
        delete_retention_ms: RETENTION_MS,
        ..LogConfig::default()
    }
}

/// The log of the marker tests, after a first compaction pass and with new dirty data:
/// segment A holds a committed transaction (its record superseded later), an aborted one and
/// the start of producer 2's (over 1 KiB: a compaction group of its own); segment B holds
/// producer 2's COMMIT and producer 1's later committed record.
async fn build_marker_log(disk: &FakeDisk) {
    let (s, p) = open(disk, marker_cfg()).await;
    p.append(keyed(1, 0, true, &["a"])).await.unwrap(); // 0
    p.append_marker(1, 0, commit(1)).await.unwrap(); // 1
    p.append(keyed(1, 1, true, &["a", "b"])).await.unwrap(); // 2, 3
    p.append_marker(1, 0, abort(1)).await.unwrap(); // 4
    p.append(keyed(2, 0, true, &["c0", "c1", "c2", "c3", "c4", "c5"]))
        .await
        .unwrap(); // 5..=10
    p.roll().await.unwrap();
    p.append_marker(2, 0, commit(1)).await.unwrap(); // 11
    p.append(keyed(1, 3, true, &["a"])).await.unwrap(); // 12
    // Five more batches: the producer table forgets the batches at 0 and 2 (it keeps the
    // last five for duplicates), so they are not kept as empty batches.
    for i in 0..5 {
        let key = format!("f{i}");
        p.append(tbatch(1, 0, 4 + i, 1, true, key.as_bytes()))
            .await
            .unwrap(); // 13..=17
    }
    p.append_marker(1, 0, commit(1)).await.unwrap(); // 18
    p.append(keyed(3, 0, false, &["d"])).await.unwrap(); // 19
    p.roll().await.unwrap();
    let st = p.compact(FIRST_PASS_MS).await.unwrap();
    assert!(st.records_dropped >= 3, "{st:?}");
    assert_eq!(st.markers_dropped, 0, "horizons not reached: {st:?}");
    assert_eq!(marker_offsets(&p).await, MARKERS);
    assert_eq!(p.aborted_transactions().len(), 1);
    p.append(keyed(3, 1, false, &["e"])).await.unwrap(); // 20
    p.roll().await.unwrap();
    s.close().await.unwrap();
}

/// What a consumer reads from the log of `build_marker_log` whatever the cleaner did.
fn marker_log_view() -> Vec<(i64, Vec<u8>)> {
    let mut v: Vec<(i64, Vec<u8>)> = (0..6)
        .map(|i| (5 + i, format!("c{i}").into_bytes()))
        .collect();
    v.push((12, b"a".to_vec()));
    v.extend((0..5).map(|i| (13 + i, format!("f{i}").into_bytes())));
    v.extend([(19, b"d".to_vec()), (20, b"e".to_vec())]);
    v
}

/// After the markers went: only those whose transaction kept a record stay, the aborted
/// list and the index files are empty, a fresh replay agrees, nothing is open.
async fn check_markers_removed(disk: &FakeDisk, p: &Partition<FakeDisk>) {
    assert_eq!(marker_offsets(p).await, MARKERS_KEPT);
    assert!(p.aborted_transactions().is_empty());
    assert!(files(disk, ".txnindex").is_empty(), "{:?}", disk.paths());
    let (first_unstable, lso, aborted) = replayed(p).await;
    assert_eq!((first_unstable, aborted), (None, vec![]));
    assert_eq!(lso, p.offsets().high_watermark);
    assert_eq!(p.last_stable_offset(), p.offsets().high_watermark);
    assert_eq!(committed_view(p).await, marker_log_view());
}

/// Kafka's marker removal: once a transaction has no batch left and its marker's region was
/// first cleaned more than `delete.retention.ms` ago, the marker goes (an ABORT takes its
/// index entry along). A marker whose transaction still has data in an earlier compaction
/// group stays.
#[test]
fn compaction_removes_markers_of_finished_transactions() {
    let disk = FakeDisk::new(8, Faults::default(), 10_000_000);
    block_on(async {
        build_marker_log(&disk).await;
        let (s, p) = open(&disk, marker_cfg()).await;
        assert_eq!(committed_view(&p).await, marker_log_view());
        // Not yet: the horizon of the first pass has not passed.
        let st = p.compact(FIRST_PASS_MS + RETENTION_MS / 2).await.unwrap();
        assert_eq!(st.markers_dropped, 0, "{st:?}");
        assert_eq!(marker_offsets(&p).await, MARKERS);
        p.append(keyed(3, 2, false, &["e"])).await.unwrap(); // 21: dirty again
        p.roll().await.unwrap();
        let st = p.compact(FIRST_PASS_MS + 2 * RETENTION_MS).await.unwrap();
        assert_eq!(st.markers_dropped, 2, "{st:?}");
        let mut view = marker_log_view();
        view.retain(|(_, k)| k != b"e");
        view.push((21, b"e".to_vec()));
        assert_eq!(committed_view(&p).await, view);
        s.close().await.unwrap();
        drop(p);
        let (s, p) = open(&disk, marker_cfg()).await;
        assert_eq!(marker_offsets(&p).await, MARKERS_KEPT);
        assert!(p.aborted_transactions().is_empty());
        assert_eq!(p.last_stable_offset(), p.offsets().high_watermark);
        assert_eq!(committed_view(&p).await, view);
        s.close().await.unwrap();
    });
}

/// The marker-removing pass cut after each of its disk calls in turn, then power loss: the
/// reopened partition serves the same committed records, every aborted entry it lists has its
/// marker in the log, nothing is left open; the next pass finishes the job.
#[test]
fn crash_at_every_step_of_a_marker_removing_pass() {
    let mut n = 0u64;
    loop {
        let disk = FakeDisk::new(9, Faults::default(), 10_000_000);
        let finished = block_on(async {
            build_marker_log(&disk).await;
            let (s, p) = open(&disk, marker_cfg()).await;
            disk.fail_after(Some(n));
            let r = p.compact(FIRST_PASS_MS + 2 * RETENTION_MS).await;
            drop((s, p));
            disk.crash();
            disk.fail_after(None);
            let (s, p) = open(&disk, marker_cfg()).await;
            assert_eq!(committed_view(&p).await, marker_log_view(), "n={n}");
            let markers = marker_offsets(&p).await;
            for a in p.aborted_transactions() {
                assert!(
                    markers.contains(&a.last_offset),
                    "n={n}: {a:?} without marker"
                );
            }
            assert_eq!(p.last_stable_offset(), p.offsets().high_watermark, "n={n}");
            let (_, _, replay_aborted) = replayed(&p).await;
            for a in replay_aborted {
                assert!(p.aborted_transactions().contains(&a), "n={n}: {a:?} lost");
            }
            p.compact(FIRST_PASS_MS + 2 * RETENTION_MS).await.unwrap();
            check_markers_removed(&disk, &p).await;
            s.close().await.unwrap();
            let (_s, p) = open(&disk, marker_cfg()).await;
            check_markers_removed(&disk, &p).await;
            let leftovers: Vec<_> = disk
                .paths()
                .into_iter()
                .filter(|p| p.to_string_lossy().ends_with(".cleaned"))
                .collect();
            assert!(leftovers.is_empty(), "n={n}: {leftovers:?}");
            r.is_ok()
        });
        if finished {
            assert!(n > 5, "the pass should take several disk calls");
            break;
        }
        n += 1;
        assert!(n < 500, "compaction never finished");
    }
}

/// A producer snapshot taken inside a transaction whose ABORT marker compaction later removes
/// holds that transaction open: an open from it would take the producer's next ABORT for the
/// end of a transaction begun there. The pass drops such snapshots, so an open that cannot
/// use the newer ones (damaged) replays the log and agrees with a fresh replay.
#[test]
fn removed_markers_take_older_snapshots_along() {
    let disk = FakeDisk::new(10, Faults::default(), 10_000_000);
    // No roll but the test's own: the snapshot at 1 stays among the newest three.
    let cfg = LogConfig {
        segment_bytes: 1 << 20,
        ..marker_cfg()
    };
    block_on(async {
        let (s, p) = open(&disk, cfg.clone()).await;
        p.append(keyed(1, 0, true, &["a"])).await.unwrap(); // 0: aborted
        p.roll().await.unwrap(); // a snapshot at 1 with that transaction open
        p.append_marker(1, 0, abort(1)).await.unwrap(); // 1
        let mut seq = 1;
        for (prefix, end) in [("b", commit(1)), ("z", abort(1))] {
            for i in 0..5 {
                let key = format!("{prefix}{i}");
                p.append(tbatch(1, 0, seq, 1, true, key.as_bytes()))
                    .await
                    .unwrap(); // 2..=6, 8..=12
                seq += 1;
            }
            p.append_marker(1, 0, end).await.unwrap(); // 7, 13
        }
        // b0..b4 superseded: the committed transaction has no record left.
        p.append(keyed(3, 0, false, &["b0", "b1", "b2", "b3", "b4"]))
            .await
            .unwrap(); // 14..=18
        p.roll().await.unwrap();
        p.compact(FIRST_PASS_MS).await.unwrap();
        p.append(keyed(3, 5, false, &["e"])).await.unwrap(); // 19
        p.roll().await.unwrap();
        let st = p.compact(FIRST_PASS_MS + 2 * RETENTION_MS).await.unwrap();
        assert_eq!(st.markers_dropped, 2, "{st:?}");
        // The last transaction's batches stay (empty): the producer table remembers them.
        assert_eq!(marker_offsets(&p).await, vec![13]);
        let aborted = p.aborted_transactions();
        assert_eq!(aborted.len(), 1);
        assert_eq!((aborted[0].first_offset, aborted[0].last_offset), (8, 13));
        s.close().await.unwrap();
        drop(p);
        // The newer snapshots are lost.
        for name in files(&disk, ".snapshot") {
            if name.trim_end_matches(".snapshot").parse::<i64>().unwrap() > 1 {
                disk.remove(&PathBuf::from(DIR).join(name)).await.unwrap();
            }
        }
        let (s, p) = open(&disk, cfg).await;
        assert_eq!(p.aborted_transactions(), aborted);
        assert_eq!(replayed(&p).await.2, aborted);
        assert_eq!(p.last_stable_offset(), p.offsets().high_watermark);
        let keys: Vec<Vec<u8>> = committed_view(&p).await.into_iter().map(|r| r.1).collect();
        let want: Vec<&[u8]> = vec![b"b0", b"b1", b"b2", b"b3", b"b4", b"e"];
        assert_eq!(keys, want);
        s.close().await.unwrap();
    });
}

/// The model of a compacted transactional log: every record appended (offset, key, producer)
/// and what became of it.
#[derive(Default)]
struct TxnLogModel {
    records: Vec<(i64, Vec<u8>, i64)>,
    /// Per record: `None` while its transaction is open, else committed or not.
    committed: Vec<Option<bool>>,
}

impl TxnLogModel {
    fn appended(&mut self, base: i64, count: usize, key: &[u8], pid: i64, txn: bool) {
        for i in 0..count {
            self.records.push((base + i as i64, key.to_vec(), pid));
            self.committed.push((!txn).then_some(true));
        }
    }

    fn ended(&mut self, pid: i64, commit: bool) {
        for (r, c) in self.records.iter().zip(self.committed.iter_mut()) {
            if r.2 == pid && c.is_none() {
                *c = Some(commit);
            }
        }
    }

    /// A read_committed consumer of the compacted log sees only committed records below the
    /// LSO, and for every key the latest of them.
    async fn check(&self, p: &Partition<FakeDisk>, at: &str) {
        let lso = p.last_stable_offset();
        let committed: std::collections::HashMap<i64, &[u8]> = self
            .records
            .iter()
            .zip(&self.committed)
            .filter(|(r, c)| **c == Some(true) && r.0 < lso)
            .map(|(r, _)| (r.0, &r.1[..]))
            .collect();
        let mut want = std::collections::BTreeMap::new();
        for (o, k) in &committed {
            let e = want.entry(*k).or_insert(*o);
            *e = (*e).max(*o);
        }
        let mut got = std::collections::BTreeMap::new();
        for (o, k) in committed_view(p).await {
            assert_eq!(committed.get(&o).copied(), Some(&k[..]), "{at}: offset {o}");
            got.insert(k, o);
        }
        let got: std::collections::BTreeMap<&[u8], i64> =
            got.iter().map(|(k, o)| (&k[..], *o)).collect();
        assert_eq!(got, want, "{at}");
        let markers = marker_offsets(p).await;
        for a in p.aborted_transactions() {
            assert!(
                markers.contains(&a.last_offset),
                "{at}: {a:?} without marker"
            );
        }
        // A fresh replay finds each aborted transaction the partition lists, from its first
        // batch left (compaction may have removed earlier ones).
        let listed = p.aborted_transactions();
        for a in replayed(p).await.2 {
            let found = listed.iter().any(|l| {
                (l.producer_id, l.last_offset) == (a.producer_id, a.last_offset)
                    && l.first_offset <= a.first_offset
            });
            assert!(found, "{at}: {a:?} missing from {listed:?}");
        }
    }
}

/// One seeded random step of a transactional workload on a compacted partition: appends,
/// commits, aborts (some bumping the epoch), rolls and compaction passes as time goes by.
async fn compacted_step(
    p: &Partition<FakeDisk>,
    (prods, model): (&mut [Prod; 4], &mut TxnLogModel),
    now: &mut i64,
    rng: &mut u64,
) {
    let mut next = |n: u64| {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        *rng % n
    };
    let i = next(4) as usize;
    let pid = i as i64 + 1;
    let pr = &mut prods[i];
    match next(12) {
        0..=4 => {
            let count = 1 + next(2) as usize;
            let key = format!("k{}", next(6));
            let txn = i < 3;
            let b = tbatch(pid, pr.epoch, pr.next_seq, count, txn, key.as_bytes());
            let info = p.append(b).await.expect("append");
            pr.next_seq += count as i32;
            model.appended(info.base_offset, count, key.as_bytes(), pid, txn);
        }
        5 | 6 if i < 3 => {
            p.append_marker(pid, pr.epoch, commit(1))
                .await
                .expect("commit");
            model.ended(pid, true);
        }
        7 if i < 3 => {
            p.append_marker(pid, pr.epoch, abort(1))
                .await
                .expect("abort");
            model.ended(pid, false);
        }
        8 if i < 3 => {
            let r = p.append_marker_versioned(pid, pr.epoch + 1, abort(1), 2);
            r.await.expect("abort with a bump");
            *pr = Prod {
                epoch: pr.epoch + 1,
                next_seq: 0,
            };
            model.ended(pid, false);
        }
        9 => p.roll().await.expect("roll"),
        _ => {
            *now += next(3) as i64 * RETENTION_MS;
            p.compact(*now).await.expect("compact");
        }
    }
}

/// Seeded random transactional workloads on a compacted partition, with passes far enough
/// apart that markers go: a read_committed consumer sees exactly the latest committed record
/// of every key and nothing aborted, every listed aborted transaction has its marker, and a
/// clean reopen serves the same.
#[test]
fn compacted_transactional_workloads_keep_the_committed_view() {
    let mut dropped = 0;
    for seed in 1..=100u64 {
        let disk = FakeDisk::new(seed, Faults::default(), 10_000_000);
        let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        block_on(async {
            let cfg = LogConfig {
                segment_bytes: 600,
                ..marker_cfg()
            };
            let (mut s, mut p) = open(&disk, cfg.clone()).await;
            let (mut prods, mut model) = ([Prod::default(); 4], TxnLogModel::default());
            let mut now = FIRST_PASS_MS;
            for round in 0..4 {
                for step in 0..60 {
                    compacted_step(&p, (&mut prods, &mut model), &mut now, &mut rng).await;
                    if step % 10 == 9 {
                        model
                            .check(&p, &format!("seed {seed} round {round} step {step}"))
                            .await;
                    }
                }
                let st = p.compact(now + 3 * RETENTION_MS).await.expect("compact");
                dropped += st.markers_dropped;
                let before = committed_view(&p).await;
                s.close().await.expect("close");
                drop(p);
                (s, p) = open(&disk, cfg.clone()).await;
                assert_eq!(
                    committed_view(&p).await,
                    before,
                    "seed {seed} round {round}"
                );
                model
                    .check(&p, &format!("seed {seed} after reopen {round}"))
                    .await;
            }
            s.close().await.expect("close");
        });
    }
    assert!(dropped > 100, "markers should go: {dropped}");
}
