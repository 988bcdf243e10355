//! Idempotent producer state: duplicates return the original offsets, gaps and stale epochs
//! are rejected, and the state survives a crash (rebuilt from the log) and a truncation.

mod common;

use std::path::Path;

use bytes::Bytes;
use futures_lite::future::block_on;
use sluice_net::record_batch::build::{BatchSpec, batch};
use sluice_shard::*;

fn pbatch(pid: i64, epoch: i16, seq: i32, count: usize) -> Bytes {
    let v = [7u8; 20];
    let recs: Vec<_> = (0..count).map(|_| (None::<&[u8]>, Some(&v[..]))).collect();
    batch(
        &BatchSpec {
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            ..BatchSpec::default()
        },
        &recs,
    )
}

/// The sequence rules, then the same answers after a crash and reopen.
#[test]
fn sequences_epochs_and_recovery() {
    let disk = FakeDisk::new(5, Faults::default(), 1_000);
    block_on(async {
        let open = || async {
            let s = Shard::open(disk.clone(), Path::new("/d"), ShardConfig::default())
                .await
                .unwrap();
            let p = s
                .create_partition("p", 0, LogConfig::default())
                .await
                .unwrap();
            (s, p)
        };
        let (s, p) = open().await;
        let a = p.append(pbatch(7, 0, 0, 3)).await.unwrap();
        assert_eq!((a.base_offset, a.last_offset), (0, 2));
        let b = p.append(pbatch(7, 0, 3, 2)).await.unwrap();
        assert_eq!((b.base_offset, b.last_offset), (3, 4));
        // A non-idempotent batch in between does not disturb producer 7.
        p.append(pbatch(-1, -1, -1, 1)).await.unwrap();
        let check = |p: Partition<FakeDisk>| async move {
            match p.append(pbatch(7, 0, 0, 3)).await {
                Err(ShardError::DuplicateSequence {
                    base_offset: 0,
                    last_offset: 2,
                    ..
                }) => {}
                other => panic!("expected duplicate, got {other:?}"),
            }
            match p.append(pbatch(7, 0, 10, 1)).await {
                Err(ShardError::OutOfOrderSequence {
                    expected: 5,
                    received: 10,
                    ..
                }) => {}
                other => panic!("expected out of order, got {other:?}"),
            }
            match p.append(pbatch(7, 1, 4, 1)).await {
                Err(ShardError::OutOfOrderSequence { expected: 0, .. }) => {}
                other => panic!("expected out of order for a new epoch, got {other:?}"),
            }
            // Nothing was appended by the rejected calls.
            assert_eq!(p.offsets().log_end_offset, 6);
        };
        check(p.clone()).await;
        drop(p);
        drop(s);
        disk.crash();
        let (s, p) = open().await;
        check(p.clone()).await;
        // A new epoch starts at 0 and fences the old one.
        let c = p.append(pbatch(7, 1, 0, 1)).await.unwrap();
        assert_eq!(c.base_offset, 6);
        match p.append(pbatch(7, 0, 5, 1)).await {
            Err(ShardError::InvalidProducerEpoch {
                epoch: 0,
                current_epoch: 1,
                ..
            }) => {}
            other => panic!("expected fenced, got {other:?}"),
        }
        // After truncating the epoch-1 batch away, epoch 0 continues where it was.
        p.truncate_to(6).await.unwrap();
        let d = p.append(pbatch(7, 0, 5, 1)).await.unwrap();
        assert_eq!(d.base_offset, 6);
        // Two batches of one producer in one request are checked in order.
        let mut two = pbatch(9, 0, 0, 2).to_vec();
        two.extend_from_slice(&pbatch(9, 0, 2, 2));
        let e = p.append(Bytes::from(two)).await.unwrap();
        assert_eq!((e.base_offset, e.last_offset), (7, 10));
        let mut gap = pbatch(11, 0, 0, 1).to_vec();
        gap.extend_from_slice(&pbatch(11, 0, 5, 1));
        assert!(matches!(
            p.append(Bytes::from(gap)).await,
            Err(ShardError::OutOfOrderSequence { .. })
        ));
        assert_eq!(p.offsets().log_end_offset, 11);
        s.close().await.unwrap();
    });
}

/// Snapshot files on the fake disk, by offset.
fn snapshots(disk: &FakeDisk) -> Vec<i64> {
    let mut v: Vec<i64> = disk
        .paths()
        .iter()
        .filter_map(|p| {
            p.file_name()?
                .to_str()?
                .strip_suffix(".snapshot")?
                .parse()
                .ok()
        })
        .collect();
    v.sort_unstable();
    v
}

async fn open_with(disk: &FakeDisk, cfg: LogConfig) -> (Shard<FakeDisk>, Partition<FakeDisk>) {
    let s = Shard::open(disk.clone(), Path::new("/d"), ShardConfig::default())
        .await
        .unwrap();
    let p = s.create_partition("p", 0, cfg).await.unwrap();
    (s, p)
}

async fn expect_duplicate(p: &Partition<FakeDisk>, b: Bytes, base: i64, last: i64) {
    match p.append(b).await {
        Err(ShardError::DuplicateSequence {
            base_offset,
            last_offset,
            ..
        }) if (base_offset, last_offset) == (base, last) => {}
        other => panic!("expected duplicate at {base}..={last}, got {other:?}"),
    }
}

async fn expect_out_of_order(p: &Partition<FakeDisk>, b: Bytes, want: i32) {
    match p.append(b).await {
        Err(ShardError::OutOfOrderSequence { expected, .. }) if expected == want => {}
        other => panic!("expected out of order (expected {want}), got {other:?}"),
    }
}

/// A producer whose batches all sit in older segments, which retention then deletes, is
/// still known after a clean restart and after a crash: its duplicate gets the original
/// offsets and a gap in its sequence is refused. Without the snapshots the restarted
/// partition would not know producer 8 at all and would append the duplicate again.
#[test]
fn producer_state_survives_rolls_restarts_and_retention() {
    for crash in [false, true] {
        let disk = FakeDisk::new(6, Faults::default(), 1_000_000);
        let cfg = LogConfig {
            retention_ms: Some(1_000),
            ..LogConfig::default()
        };
        block_on(async {
            let (s, p) = open_with(&disk, cfg.clone()).await;
            let a = p.append(pbatch(8, 0, 0, 2)).await.unwrap();
            let b = p.append(pbatch(8, 0, 2, 3)).await.unwrap();
            assert_eq!((a.base_offset, b.base_offset, b.last_offset), (0, 2, 4));
            p.roll().await.unwrap();
            for i in 0..4 {
                p.append(pbatch(7, 0, i * 2, 2)).await.unwrap();
                p.append(pbatch(-1, -1, -1, 1)).await.unwrap();
                p.roll().await.unwrap();
            }
            // Every closed segment is too old: retention removes producer 8's segment.
            let deleted = p.enforce_retention().await.unwrap();
            assert_eq!(deleted, 5);
            assert_eq!(p.offsets().log_start_offset, p.offsets().log_end_offset);
            assert!(snapshots(&disk).len() <= 3, "{:?}", snapshots(&disk));
            if crash {
                drop(p);
                drop(s);
                disk.crash();
            } else {
                s.close().await.unwrap();
                drop(p);
            }
            let (s, p) = open_with(&disk, cfg.clone()).await;
            expect_duplicate(&p, pbatch(8, 0, 2, 3), 2, 4).await;
            expect_duplicate(&p, pbatch(8, 0, 0, 2), 0, 1).await;
            expect_out_of_order(&p, pbatch(8, 0, 9, 1), 5).await;
            expect_duplicate(&p, pbatch(7, 0, 6, 2), 14, 15).await;
            expect_out_of_order(&p, pbatch(7, 0, 10, 1), 8).await;
            let leo = p.offsets().log_end_offset;
            let c = p.append(pbatch(8, 0, 5, 1)).await.unwrap();
            assert_eq!(c.base_offset, leo);
            s.close().await.unwrap();
        });
    }
}

/// A corrupt newest snapshot is removed and an older one plus the log after it is used; with
/// every snapshot garbage (and a garbage one above the log end) the whole log is scanned.
/// Opening never panics and the producer state comes out the same.
#[test]
fn corrupt_snapshots_fall_back() {
    let disk = FakeDisk::new(7, Faults::default(), 1_000);
    let cfg = LogConfig::default();
    block_on(async {
        let (s, p) = open_with(&disk, cfg.clone()).await;
        p.append(pbatch(8, 0, 0, 2)).await.unwrap();
        p.append(pbatch(8, 0, 2, 3)).await.unwrap();
        p.roll().await.unwrap();
        for i in 0..3 {
            p.append(pbatch(7, 0, i * 2, 2)).await.unwrap();
            p.roll().await.unwrap();
        }
        p.append(pbatch(7, 0, 6, 1)).await.unwrap();
        s.close().await.unwrap();
        drop(p);
        // Rolls at 5, 7, 9, 11 and the close at 12: the newest three are kept.
        assert_eq!(snapshots(&disk), vec![9, 11, 12]);
        let check = |p: Partition<FakeDisk>| async move {
            expect_duplicate(&p, pbatch(8, 0, 2, 3), 2, 4).await;
            expect_out_of_order(&p, pbatch(8, 0, 7, 1), 5).await;
            expect_duplicate(&p, pbatch(7, 0, 6, 1), 11, 11).await;
            expect_duplicate(&p, pbatch(7, 0, 2, 2), 7, 8).await;
            expect_out_of_order(&p, pbatch(7, 0, 9, 1), 7).await;
        };
        let newest = Path::new("/d/p-0/00000000000000000012.snapshot");
        let mut bytes = disk.file_bytes(newest).unwrap();
        let n = bytes.len();
        bytes[n - 3] ^= 0x20;
        disk.set_file_bytes(newest, bytes);
        let (s, p) = open_with(&disk, cfg.clone()).await;
        // The corrupt one was removed; the state came from the snapshot at 11 plus the log.
        assert_eq!(snapshots(&disk), vec![9, 11]);
        check(p.clone()).await;
        drop(p);
        drop(s);
        disk.crash();
        for off in snapshots(&disk) {
            let path = format!("/d/p-0/{off:020}.snapshot");
            disk.set_file_bytes(Path::new(&path), b"not a snapshot at all".to_vec());
        }
        disk.set_file_bytes(
            Path::new("/d/p-0/00000000000000000999.snapshot"),
            vec![0xff; 100],
        );
        let (s, p) = open_with(&disk, cfg.clone()).await;
        assert!(snapshots(&disk).is_empty(), "{:?}", snapshots(&disk));
        check(p.clone()).await;
        s.close().await.unwrap();
        assert_eq!(snapshots(&disk), vec![12]);
    });
}

/// `truncate_to` below a snapshot removes every snapshot above the new log end, so a
/// restart cannot load a state that includes truncated batches: the truncated sequence is
/// accepted again and, after a crash, its new offsets are the ones a duplicate gets.
#[test]
fn truncation_removes_snapshots_above_the_new_end() {
    let disk = FakeDisk::new(8, Faults::default(), 1_000);
    let cfg = LogConfig::default();
    block_on(async {
        let (s, p) = open_with(&disk, cfg.clone()).await;
        for i in 0..3 {
            p.append(pbatch(7, 0, i * 2, 2)).await.unwrap();
            p.roll().await.unwrap();
        }
        assert_eq!(snapshots(&disk), vec![2, 4, 6]);
        p.truncate_to(3).await.unwrap();
        assert_eq!(p.offsets().log_end_offset, 2);
        assert_eq!(snapshots(&disk), vec![2]);
        // Sequence 2 is gone with its batch: it is appended again, now with a record more.
        let again = p.append(pbatch(7, 0, 2, 3)).await.unwrap();
        assert_eq!((again.base_offset, again.last_offset), (2, 4));
        drop(p);
        drop(s);
        disk.crash();
        let (s, p) = open_with(&disk, cfg.clone()).await;
        expect_duplicate(&p, pbatch(7, 0, 2, 3), 2, 4).await;
        expect_duplicate(&p, pbatch(7, 0, 0, 2), 0, 1).await;
        expect_out_of_order(&p, pbatch(7, 0, 4, 1), 5).await;
        s.close().await.unwrap();
    });
}

/// An idempotent batch whose records are stamped `ts` (so its `maxTimestamp` is `ts` +
/// `count` - 1).
fn pbatch_at(pid: i64, seq: i32, count: usize, ts: i64) -> Bytes {
    let v = [7u8; 20];
    let recs: Vec<_> = (0..count).map(|_| (None::<&[u8]>, Some(&v[..]))).collect();
    batch(
        &BatchSpec {
            producer_id: pid,
            producer_epoch: 0,
            base_sequence: seq,
            base_timestamp: ts,
            ..BatchSpec::default()
        },
        &recs,
    )
}

/// `producer_id_expiration_ms`: the retention pass forgets producers whose last batch is
/// that old (an expired one is then accepted at any sequence), the close snapshot no longer
/// holds them (a reopen that expires nothing still does not know them), and a fresh
/// producer survives all of it with its duplicate window.
#[test]
fn idle_producers_expire_and_stay_out_of_snapshots() {
    let now = 10_000_000;
    let disk = FakeDisk::new(9, Faults::default(), now);
    let cfg = LogConfig {
        producer_id_expiration_ms: 1_000,
        ..LogConfig::default()
    };
    block_on(async {
        let (s, p) = open_with(&disk, cfg.clone()).await;
        p.append(pbatch_at(1, 0, 3, now - 60_000)).await.unwrap();
        p.append(pbatch_at(2, 0, 3, now)).await.unwrap();
        p.append(pbatch_at(3, 0, 2, now - 3_600_000)).await.unwrap();
        p.roll().await.unwrap();
        p.append(pbatch_at(2, 3, 2, now)).await.unwrap();
        assert_eq!(p.producer_count(), 3);
        expect_out_of_order(&p, pbatch_at(1, 9, 1, now), 3).await;
        // The broker's housekeeping calls this; nothing is old enough to delete.
        assert_eq!(p.enforce_retention().await.unwrap(), 0);
        assert_eq!(p.producer_count(), 1);
        assert_eq!(p.expire_producers(), 0);
        // Producer 3 is unknown: a batch at any sequence is appended, and it is known again.
        let leo = p.offsets().log_end_offset;
        let c = p.append(pbatch_at(3, 40, 1, now)).await.unwrap();
        assert_eq!(c.base_offset, leo);
        expect_duplicate(&p, pbatch_at(3, 40, 1, now), leo, leo).await;
        s.close().await.unwrap();
        drop(p);
        let leo = leo + 1;
        assert_eq!(snapshots(&disk).last(), Some(&leo));

        // Reopened with an expiration that forgets nothing: the state comes from the close
        // snapshot at the log end (nothing to replay), and producer 1 is not in it.
        let keep_all = LogConfig {
            producer_id_expiration_ms: i64::MAX,
            ..cfg.clone()
        };
        let (s, p) = open_with(&disk, keep_all).await;
        assert_eq!(p.producer_count(), 2);
        expect_duplicate(&p, pbatch_at(2, 0, 3, now), 3, 5).await;
        expect_duplicate(&p, pbatch_at(2, 3, 2, now), 8, 9).await;
        expect_out_of_order(&p, pbatch_at(2, 9, 1, now), 5).await;
        expect_duplicate(&p, pbatch_at(3, 40, 1, now), leo - 1, leo - 1).await;
        let d = p.append(pbatch_at(1, 17, 1, now)).await.unwrap();
        assert_eq!(d.base_offset, leo);
        s.close().await.unwrap();
    });
}

/// Loading producer state drops expired producers, from a snapshot (clean close) and from a
/// scan of the log (crash before any snapshot): after the clock moves on, the idle producer
/// is unknown on reopen while one whose last batch is recent is still checked.
#[test]
fn expired_producers_are_not_loaded() {
    for crash in [false, true] {
        let now = 10_000_000;
        let disk = FakeDisk::new(10, Faults::default(), now);
        let cfg = LogConfig {
            producer_id_expiration_ms: 1_000,
            ..LogConfig::default()
        };
        block_on(async {
            let (s, p) = open_with(&disk, cfg.clone()).await;
            p.append(pbatch_at(5, 0, 2, now)).await.unwrap();
            p.append(pbatch_at(6, 0, 2, now + 10_000)).await.unwrap();
            assert_eq!(p.producer_count(), 2);
            if crash {
                drop(p);
                drop(s);
                disk.crash();
                assert!(snapshots(&disk).is_empty());
            } else {
                s.close().await.unwrap();
                drop(p);
                // The close snapshot still holds both.
                assert_eq!(snapshots(&disk), vec![4]);
            }
            disk.advance_ms(5_000);
            let (s, p) = open_with(&disk, cfg.clone()).await;
            assert_eq!(p.producer_count(), 1, "crash={crash}");
            expect_duplicate(&p, pbatch_at(6, 0, 2, now), 2, 3).await;
            expect_out_of_order(&p, pbatch_at(6, 5, 1, now), 2).await;
            // Producer 5 is unknown: sequence 9 is accepted.
            let c = p.append(pbatch_at(5, 9, 1, now + 5_000)).await.unwrap();
            assert_eq!(c.base_offset, 4);
            assert_eq!(p.producer_count(), 2);
            s.close().await.unwrap();
        });
    }
}
