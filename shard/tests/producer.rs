//! Idempotent producer state: duplicates return the original offsets, gaps and stale epochs
//! are rejected, and the state survives a crash (rebuilt from the log) and a truncation.

mod common;

use std::path::Path;

use bytes::Bytes;
use futures_lite::future::block_on;
use sluice_net::record_batch::build::{BatchSpec, batch};
use sluice_shard::*;

fn pbatch(pid: i64, epoch: i16, seq: i32, count: usize) -> Bytes {
    let v = vec![7u8; 20];
    let recs: Vec<(Option<&[u8]>, Option<&[u8]>)> =
        (0..count).map(|_| (None, Some(&v[..]))).collect();
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
