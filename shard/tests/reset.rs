//! `Partition::truncate_fully_and_start_at` (Kafka's `truncateFullyAndStartAt`): the whole log
//! replaced by an empty one at an offset above or below its end, on the fake disk and on real
//! files. The new state survives a clean close and a crash; a crash or an I/O error at any
//! step leaves the old log whole or the new one (never a mix), and an error poisons the
//! partition. Also: a follower follows the leader's log start with `delete_records_before`, and
//! takes the offset gaps a compacted leader's log has.

mod common;

use std::path::Path;

use bytes::{Bytes, BytesMut};
use common::*;
use futures_lite::future::{block_on, poll_once};
use sluice_net::record_batch::build::{BatchSpec, batch};
use sluice_net::record_batch::{set_base_offset, set_partition_leader_epoch};
use sluice_shard::*;

/// Small segments, so a few appends span several (and small preallocation steps, so the
/// fake disk's files stay small).
fn cfg() -> LogConfig {
    LogConfig {
        segment_bytes: 2 << 10,
        index_interval_bytes: 256,
        preallocate_bytes: 4 << 10,
        ..LogConfig::default()
    }
}

/// A leader's batch as a follower receives it: `count` records from `base`, written in leader
/// epoch `epoch`.
fn leader_batch(base: i64, epoch: i32, count: usize) -> Bytes {
    let mut buf = BytesMut::from(&make_batch(base as u64, count, 50, 1_000)[..]);
    set_base_offset(&mut buf, base);
    set_partition_leader_epoch(&mut buf, epoch);
    buf.freeze()
}

/// An idempotent producer's batch of `count` records from sequence `seq`.
fn pbatch(pid: i64, seq: i32, count: usize) -> Bytes {
    let v = [7u8; 20];
    let recs: Vec<_> = (0..count).map(|_| (None::<&[u8]>, Some(&v[..]))).collect();
    batch(
        &BatchSpec {
            producer_id: pid,
            producer_epoch: 0,
            base_sequence: seq,
            ..BatchSpec::default()
        },
        &recs,
    )
}

async fn open<S: Storage>(storage: &S, dir: &Path) -> (Shard<S>, Partition<S>) {
    let s = Shard::open(storage.clone(), dir, ShardConfig::default())
        .await
        .expect("shard");
    let p = s.create_partition("t", 0, cfg()).await.expect("partition");
    (s, p)
}

/// Fills a log over several segments in leader epochs 2 and 3, with idempotent producer 7
/// (sequences 0..6) among the batches and a roll's producer snapshot on disk. Returns the
/// log end.
async fn fill<S: Storage>(p: &Partition<S>) -> i64 {
    p.set_leader_epoch(2);
    for i in 0..12u64 {
        p.append(make_batch(i, 3, 150, 1_000))
            .await
            .expect("append");
        if i % 4 == 0 {
            p.append(pbatch(7, (i / 4 * 2) as i32, 2))
                .await
                .expect("producer append");
        }
    }
    p.roll().await.expect("roll");
    p.set_leader_epoch(3);
    p.append(make_batch(99, 2, 150, 1_000))
        .await
        .expect("append");
    assert!(p.segment_count() > 3, "the log spans several segments");
    p.offsets().log_end_offset
}

/// Everything a partition serves, from its log start.
async fn read_all<S: Storage>(p: &Partition<S>) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut off = p.offsets().log_start_offset;
    while off < p.offsets().high_watermark {
        let r = p.read(off, 1 << 20).await.expect("read");
        let last = r.batches.last().expect("a batch");
        off = i64::from_be_bytes(last[..8].try_into().expect("8 bytes"))
            + i64::from(i32::from_be_bytes(
                last[23..27].try_into().expect("4 bytes"),
            ))
            + 1;
        out.extend(r.batches);
    }
    out
}

/// The partition is an empty log at `at`: every offset there, nothing below, no leader epoch,
/// no producer, one empty segment.
async fn assert_empty_at<S: Storage>(p: &Partition<S>, at: i64) {
    let o = p.offsets();
    assert_eq!(
        (o.log_start_offset, o.high_watermark, o.log_end_offset),
        (at, at, at)
    );
    assert!(p.leader_epochs().is_empty(), "{:?}", p.leader_epochs());
    assert_eq!(p.end_offset_for_epoch(3), None);
    assert_eq!(p.producer_count(), 0);
    assert_eq!((p.segment_count(), p.size_bytes()), (1, 0));
    for below in [0, at - 1] {
        if below >= 0 && below < at {
            match p.read(below, 1 << 20).await {
                Err(ShardError::OffsetOutOfRange { .. }) => {}
                other => panic!("read at {below} below the new start {at}: {other:?}"),
            }
        }
    }
    let r = p.read(at, 1 << 20).await.expect("read at the start");
    assert!(r.batches.is_empty());
    assert_eq!((r.log_start_offset, r.high_watermark), (at, at));
}

/// Reset above the end, a follower's batch and a leader's append at the new start, then the
/// same state after a clean close and after a crash (`crash` drops what was not synced).
async fn reset_above_the_end<S: Storage>(storage: S, dir: &Path, crash: impl Fn()) {
    let (s, p) = open(&storage, dir).await;
    let end = fill(&p).await;
    let at = end + 1_000;
    p.truncate_fully_and_start_at(at).await.expect("reset");
    assert_empty_at(&p, at).await;
    let info = p
        .append_replicated(leader_batch(at, 5, 3))
        .await
        .expect("replicated append")
        .expect("new batches");
    assert_eq!((info.base_offset, info.last_offset), (at, at + 2));
    p.raise_leader_epoch(6);
    let info = p.append(make_batch(7, 2, 50, 1_000)).await.expect("append");
    assert_eq!(info.base_offset, at + 3);
    let epochs = vec![(5, at), (6, at + 3)];
    assert_eq!(p.leader_epochs(), epochs);
    let want = read_all(&p).await;
    assert_eq!(want.len(), 2);
    let offsets = p.offsets();
    assert_eq!(offsets.high_watermark, at + 5);
    s.close().await.expect("close");
    for crashed in [false, true] {
        let (s, p) = open(&storage, dir).await;
        assert_eq!(p.offsets(), offsets, "crashed={crashed}");
        assert_eq!(p.leader_epochs(), epochs);
        assert_eq!(read_all(&p).await, want);
        if crashed {
            s.close().await.expect("close");
        } else {
            drop(p);
            drop(s);
            crash();
        }
    }
    let (s, p) = open(&storage, dir).await;
    let info = p.append(make_batch(8, 1, 50, 1_000)).await.expect("append");
    assert_eq!(info.base_offset, at + 5);
    s.close().await.expect("close");
}

#[test]
fn reset_above_the_end_fake() {
    let disk = FakeDisk::new(3, Faults::default(), 1_000_000);
    let d = disk.clone();
    block_on(reset_above_the_end(disk, Path::new("/d"), move || {
        d.crash()
    }));
}

#[test]
fn reset_above_the_end_real() {
    let dir = real_dir("reset");
    let d2 = dir.clone();
    run_glommio(move || async move {
        probe_dma_polling(&d2).await.expect("dma");
        // Dropping without a close is what a real crash leaves, minus unsynced writes.
        reset_above_the_end(DmaStorage, &d2, || {}).await;
    });
    let _ = std::fs::remove_dir_all(dir);
}

/// The base offset of the first batch a read of `p` at `at` returns.
async fn base_at<S: Storage>(p: &Partition<S>, at: i64) -> i64 {
    let r = p.read(at, 1).await.expect("read");
    let first = r.batches.first().expect("a batch").clone();
    i64::from_be_bytes(first[..8].try_into().expect("8 bytes"))
}

/// A follower copies a leader whose compaction removed whole batches: the batches it gets
/// leave offset gaps (one call's first batch past the log end, and one inside a call), over
/// several segments. Reads inside a gap get the next batch; the log, its offsets and reads
/// are the same after a clean close and after a crash; a batch overlapping the log end is
/// still refused; the leader's own appends after it continue at the log end.
async fn follower_takes_gaps<S: Storage>(storage: S, dir: &Path, crash: impl Fn()) {
    let (s, p) = open(&storage, dir).await;
    p.set_high_watermark_bound(0);
    let mut gapped = BytesMut::new();
    gapped.extend_from_slice(&leader_batch(50, 1, 10));
    gapped.extend_from_slice(&leader_batch(60, 1, 10));
    gapped.extend_from_slice(&leader_batch(80, 2, 10));
    let answers = [
        leader_batch(0, 1, 10),
        leader_batch(10, 1, 10),
        leader_batch(30, 1, 10),
        gapped.freeze(),
    ];
    for answer in answers {
        p.append_replicated(answer)
            .await
            .expect("replicated append with a gap")
            .expect("new batches");
    }
    p.set_high_watermark_bound(90);
    let offsets = p.offsets();
    assert_eq!((offsets.log_end_offset, offsets.high_watermark), (90, 90));
    assert_eq!(base_at(&p, 25).await, 30, "a read in the first gap");
    assert_eq!(base_at(&p, 75).await, 80, "a read in the second gap");
    let want = read_all(&p).await;
    assert_eq!(want.len(), 6);
    assert!(p.segment_count() > 1, "the gaps span segments");
    let overlapping = p.append_replicated(leader_batch(85, 2, 10)).await;
    assert!(
        matches!(overlapping, Err(ShardError::NotContiguous { .. })),
        "{overlapping:?}"
    );
    s.close().await.expect("close");
    for crashed in [false, true] {
        let (s, p) = open(&storage, dir).await;
        p.set_high_watermark_bound(90);
        assert_eq!(p.offsets(), offsets, "crashed={crashed}");
        assert_eq!(read_all(&p).await, want, "crashed={crashed}");
        assert_eq!(base_at(&p, 42).await, 50);
        if crashed {
            s.close().await.expect("close");
        } else {
            drop(p);
            drop(s);
            crash();
        }
    }
    let (s, p) = open(&storage, dir).await;
    p.raise_leader_epoch(3);
    let info = p.append(make_batch(9, 2, 50, 1_000)).await.expect("append");
    assert_eq!(info.base_offset, 90);
    s.close().await.expect("close");
}

#[test]
fn follower_takes_gaps_fake() {
    let disk = FakeDisk::new(5, Faults::default(), 1_000_000);
    let d = disk.clone();
    block_on(follower_takes_gaps(disk, Path::new("/d"), move || {
        d.crash()
    }));
}

#[test]
fn follower_takes_gaps_real() {
    let dir = real_dir("gaps");
    let d2 = dir.clone();
    run_glommio(move || async move {
        probe_dma_polling(&d2).await.expect("dma");
        follower_takes_gaps(DmaStorage, &d2, || {}).await;
    });
    let _ = std::fs::remove_dir_all(dir);
}

/// The files of partition `t-0` on the fake disk, by name.
fn files(disk: &FakeDisk) -> Vec<String> {
    let dir = Path::new("/d/t-0");
    let mut v: Vec<String> = disk
        .paths()
        .iter()
        .filter(|p| p.parent() == Some(dir))
        .filter_map(|p| Some(p.file_name()?.to_str()?.to_owned()))
        .collect();
    v.sort();
    v
}

/// What a reset to `at` leaves on disk: the new segment and the meta, nothing else.
fn assert_files_after_reset(disk: &FakeDisk, at: i64) {
    assert_eq!(
        files(disk),
        vec![format!("{at:020}.log"), "partition.meta".to_owned()]
    );
}

/// Reset below the log start, then to the base of the active segment (its file is replaced),
/// with waiters woken and appends continuing at the new start; survives a crash.
#[test]
fn reset_below_the_end() {
    let disk = FakeDisk::new(4, Faults::default(), 1_000_000);
    block_on(async {
        let (s, p) = open(&disk, Path::new("/d")).await;
        let end = fill(&p).await;
        assert_eq!(p.delete_records_before(20).await.expect("delete"), 20);
        let mut waiter = Box::pin(p.wait_for_log_end(end));
        assert!(poll_once(&mut waiter).await.is_none());
        p.truncate_fully_and_start_at(4).await.expect("reset");
        assert!(poll_once(&mut waiter).await.is_none(), "the end went back");
        drop(waiter);
        assert_empty_at(&p, 4).await;
        assert_files_after_reset(&disk, 4);
        let mut waiter = Box::pin(p.wait_for_log_end(4));
        assert!(poll_once(&mut waiter).await.is_none());
        assert_eq!(
            p.append(make_batch(1, 2, 50, 0))
                .await
                .expect("append")
                .base_offset,
            4
        );
        assert!(
            poll_once(&mut waiter).await.is_some(),
            "woken by the append"
        );
        drop(waiter);
        assert_eq!(p.leader_epochs(), vec![(3, 4)]);
        // Again, at the active segment's own base.
        p.truncate_fully_and_start_at(4).await.expect("reset again");
        assert_empty_at(&p, 4).await;
        assert_files_after_reset(&disk, 4);
        drop(p);
        drop(s);
        disk.crash();
        let (s, p) = open(&disk, Path::new("/d")).await;
        assert_empty_at(&p, 4).await;
        assert_eq!(
            p.append(make_batch(2, 1, 50, 0))
                .await
                .expect("append")
                .base_offset,
            4
        );
        s.close().await.expect("close");
    });
}

async fn expect_duplicate(p: &Partition<FakeDisk>, b: Bytes, base: i64) {
    match p.append(b).await {
        Err(ShardError::DuplicateSequence { base_offset, .. }) if base_offset == base => {}
        other => panic!("expected a duplicate at {base}, got {other:?}"),
    }
}

/// A reset forgets idempotent producers (and their snapshots): a producer's sequence starts
/// fresh, and after a crash its state is rebuilt from the new log only.
#[test]
fn reset_forgets_producers() {
    let disk = FakeDisk::new(5, Faults::default(), 1_000_000);
    block_on(async {
        let (s, p) = open(&disk, Path::new("/d")).await;
        let end = fill(&p).await;
        let first = read_all(&p).await;
        let first_pbatch = first
            .iter()
            .find(|b| i64::from_be_bytes(b[43..51].try_into().expect("8 bytes")) == 7)
            .expect("a producer batch");
        let base = i64::from_be_bytes(first_pbatch[..8].try_into().expect("8 bytes"));
        expect_duplicate(&p, pbatch(7, 0, 2), base).await;
        assert!(files(&disk).iter().any(|f| f.ends_with(".snapshot")));
        let at = end + 10;
        p.truncate_fully_and_start_at(at).await.expect("reset");
        assert_files_after_reset(&disk, at);
        // Sequence 0 again: new to the partition now.
        let info = p.append(pbatch(7, 0, 2)).await.expect("a fresh sequence");
        assert_eq!(info.base_offset, at);
        drop(p);
        drop(s);
        disk.crash();
        let (s, p) = open(&disk, Path::new("/d")).await;
        assert_eq!(p.producer_count(), 1);
        expect_duplicate(&p, pbatch(7, 0, 2), at).await;
        let info = p.append(pbatch(7, 2, 1)).await.expect("next sequence");
        assert_eq!(info.base_offset, at + 2);
        s.close().await.expect("close");
    });
}

/// Cuts the reset after each of its mutating disk calls in turn (every later call fails with
/// EIO, as if the machine stopped there): the failed reset poisons the partition; after a
/// crash the log opens as the old one, whole, or as the new one; a second reset then
/// finishes. Both above and below the log end.
#[test]
fn crash_or_eio_at_every_step_of_the_reset() {
    for above in [true, false] {
        let mut n = 0u64;
        loop {
            let disk = FakeDisk::new(6, Faults::default(), 1_000_000);
            let dir = Path::new("/d");
            let finished = block_on(async {
                let (s, p) = open(&disk, dir).await;
                let end = fill(&p).await;
                s.close().await.expect("close");
                let at = if above { end + 100 } else { 5 };
                let (s, p) = open(&disk, dir).await;
                let (offsets, epochs, log) = (p.offsets(), p.leader_epochs(), read_all(&p).await);
                disk.fail_after(Some(n));
                let r = p.truncate_fully_and_start_at(at).await;
                eprintln!("above={above} n={n}: {r:?}");
                if r.is_err() {
                    assert!(!p.is_open(), "a failed reset poisons the partition");
                    match p.append(make_batch(1, 1, 10, 0)).await {
                        Err(ShardError::Poisoned { .. }) => {}
                        other => panic!("append after a failed reset: {other:?}"),
                    }
                }
                drop(p);
                drop(s);
                disk.crash();
                disk.fail_after(None);
                let (s, p) = open(&disk, dir).await;
                let old = p.offsets() == offsets;
                if old && r.is_err() {
                    assert_eq!(p.leader_epochs(), epochs);
                    assert_eq!(read_all(&p).await, log);
                } else {
                    assert_empty_at(&p, at).await;
                    assert_files_after_reset(&disk, at);
                }
                p.truncate_fully_and_start_at(at)
                    .await
                    .expect("reset after");
                assert_empty_at(&p, at).await;
                assert_eq!(
                    p.append(make_batch(1, 1, 10, 0))
                        .await
                        .expect("append")
                        .base_offset,
                    at
                );
                s.close().await.expect("close");
                let (s, p) = open(&disk, dir).await;
                assert_eq!(p.offsets().log_end_offset, at + 1);
                s.close().await.expect("close");
                r.is_ok()
            });
            if finished {
                assert!(n > 5, "the reset should take several disk calls");
                break;
            }
            n += 1;
            assert!(n < 200, "the reset never finished");
        }
    }
}

/// A follower follows the leader's log start with `delete_records_before`: up to its high
/// watermark (bounded by the leader's), without touching the disk when nothing moves, and
/// refusing a start past what it holds: then its next fetch is out of range and it resets.
#[test]
fn follower_follows_the_leader_log_start() {
    let disk = FakeDisk::new(7, Faults::default(), 1_000_000);
    block_on(async {
        let (s, p) = open(&disk, Path::new("/d")).await;
        p.set_high_watermark_bound(0);
        for i in 0..20 {
            p.append_replicated(leader_batch(i * 3, 1, 3))
                .await
                .expect("replicated append");
        }
        // The leader's answer: high watermark 45, log start 30.
        p.set_high_watermark_bound(45);
        assert_eq!(p.offsets().high_watermark, 45);
        let segments = p.segment_count();
        assert_eq!(p.delete_records_before(30).await.expect("follow"), 30);
        assert!(p.segment_count() < segments);
        assert!(matches!(
            p.read(29, 1 << 20).await,
            Err(ShardError::OffsetOutOfRange { .. })
        ));
        let ops = disk.ops();
        assert_eq!(p.delete_records_before(30).await.expect("same start"), 30);
        assert_eq!(p.delete_records_before(12).await.expect("lower start"), 30);
        assert_eq!(disk.ops(), ops, "nothing moved, nothing written");
        // A log start past this replica's high watermark is refused and changes nothing.
        assert!(matches!(
            p.delete_records_before(50).await,
            Err(ShardError::OffsetOutOfRange { .. })
        ));
        assert_eq!(p.offsets().log_start_offset, 30);
        // A meta write that fails leaves the log start where the disk has it.
        disk.fail_after(Some(0));
        assert!(p.delete_records_before(40).await.is_err());
        disk.fail_after(None);
        assert_eq!(p.offsets().log_start_offset, 30);
        assert_eq!(p.delete_records_before(40).await.expect("retry"), 40);
        // The leader deleted past this replica's log end (60): out of range, so it resets.
        p.truncate_fully_and_start_at(100).await.expect("reset");
        p.append_replicated(leader_batch(100, 2, 3))
            .await
            .expect("replicated append");
        p.set_high_watermark_bound(103);
        assert_eq!(p.delete_records_before(101).await.expect("follow"), 101);
        drop(p);
        drop(s);
        disk.crash();
        let (s, p) = open(&disk, Path::new("/d")).await;
        let o = p.offsets();
        assert_eq!((o.log_start_offset, o.log_end_offset), (101, 103));
        assert_eq!(p.leader_epochs(), vec![(2, 100)]);
        s.close().await.expect("close");
    });
}
