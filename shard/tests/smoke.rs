//! End-to-end smoke tests of the public API on the fake disk and on real files.

mod common;

use bytes::Bytes;
use common::*;
use futures_lite::future::block_on;
use sluice_shard::*;

/// Appends, reads back byte-identical with rewritten offsets, reopens and reads again.
async fn append_read_reopen<S: Storage>(storage: S, dir: std::path::PathBuf) {
    let shard = Shard::open(storage.clone(), &dir, ShardConfig::default())
        .await
        .unwrap();
    let cfg = LogConfig {
        segment_bytes: 8 << 10,
        ..LogConfig::default()
    };
    let p = shard.create_partition("t", 0, cfg.clone()).await.unwrap();
    let mut sent = Vec::new();
    for i in 0..50u64 {
        let b = make_batch(i, 3, 100, 1000 + i as i64);
        let info = p.append(b.clone()).await.unwrap();
        assert_eq!(info.base_offset, i as i64 * 3);
        assert_eq!(info.last_offset, i as i64 * 3 + 2);
        sent.push(b);
    }
    assert!(p.segment_count() > 1);
    let check = |batches: &[bytes::Bytes], from: usize| {
        for (k, got) in batches.iter().enumerate() {
            let want = &sent[from + k];
            assert_eq!(got.len(), want.len());
            assert_eq!(&got[8..12], &want[8..12]);
            assert_eq!(&got[16..], &want[16..]);
            assert_eq!(
                i64::from_be_bytes(got[..8].try_into().unwrap()),
                (from + k) as i64 * 3
            );
        }
    };
    let r = p.read(31, 1 << 20).await.unwrap();
    assert_eq!(r.high_watermark, 150);
    check(&r.batches, 10);
    shard.close().await.unwrap();
    let shard = Shard::open(storage, &dir, ShardConfig::default())
        .await
        .unwrap();
    let p = shard.create_partition("t", 0, cfg).await.unwrap();
    assert_eq!(p.offsets().log_end_offset, 150);
    let r = p.read(0, 1).await.unwrap();
    assert_eq!(r.batches.len(), 1);
    check(&r.batches, 0);
    let r = p.read(100, 1 << 20).await.unwrap();
    check(&r.batches, 33);
    assert_eq!(
        p.offset_for_timestamp(1020).await.unwrap(),
        Some((56, 1020))
    );
    assert_eq!(
        p.offset_for_timestamp(1021).await.unwrap(),
        Some((59, 1021))
    );
    assert_eq!(p.offset_for_timestamp(99_999).await.unwrap(), None);
    shard.close().await.unwrap();
}

/// The smoke scenario on the in-memory disk.
#[test]
fn smoke_fake() {
    let disk = FakeDisk::new(1, Faults::default(), 1_000_000);
    block_on(append_read_reopen(disk, "/data".into()));
}

/// The smoke scenario on real files through glommio DMA.
#[test]
fn smoke_real() {
    let dir = real_dir("smoke");
    let d2 = dir.clone();
    run_glommio(move || async move {
        probe_dma_polling(&d2).await.unwrap();
        append_read_reopen(DmaStorage, d2).await;
    });
    let _ = std::fs::remove_dir_all(dir);
}

/// A long-poll waiter parks until an append moves the high watermark past its offset, and
/// is woken by the append itself (no polling): it must not finish before the append.
#[test]
fn wait_for_append_wakes_on_append() {
    let dir = real_dir("wait");
    let d2 = dir.clone();
    run_glommio(move || async move {
        probe_dma_polling(&d2).await.unwrap();
        let shard = Shard::open(DmaStorage, &d2, ShardConfig::default())
            .await
            .unwrap();
        let p = shard
            .create_partition("w", 0, LogConfig::default())
            .await
            .unwrap();
        p.append(make_batch(1, 2, 10, 0)).await.unwrap();
        // Already past: returns at once.
        p.wait_for_append(0).await;
        let done = std::rc::Rc::new(std::cell::Cell::new(false));
        let waiter = {
            let p = p.clone();
            let done = done.clone();
            glommio::spawn_local(async move {
                // A fetch at offset 2 (the log end) waits for offset 2 to exist.
                p.wait_for_append(2).await;
                done.set(true);
                p.offsets().high_watermark
            })
        };
        glommio::timer::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!done.get(), "waiter returned before any append");
        p.append(make_batch(2, 1, 10, 0)).await.unwrap();
        let hw = waiter.await;
        assert_eq!(hw, 3);
        shard.close().await.unwrap();
    });
    let _ = std::fs::remove_dir_all(dir);
}

/// A new partition's first segment file made ahead (`prepare_active_segment`, as the broker
/// does right after opening a partition): the file is durable before any append, a crash
/// then leaves an empty log that opens and takes appends, and the first append does less
/// disk work than the first append of a partition without it (no file, directory sync or
/// meta to write). Doing it again, on a log that has its file, or on a closed partition does
/// nothing.
#[test]
fn first_segment_made_ahead() {
    let disk = FakeDisk::new(3, Faults::default(), 1_000_000);
    block_on(async {
        let shard = shard_on(&disk).await;
        let logs = |d: &FakeDisk, part: &str| {
            d.paths()
                .iter()
                .filter(|f| f.starts_with(format!("/d/{part}")))
                .filter(|f| f.extension().is_some_and(|e| e == "log"))
                .count()
        };
        let cfg = LogConfig::default();
        let ahead = shard.create_partition("a", 0, cfg.clone()).await.unwrap();
        let lazy = shard.create_partition("b", 0, cfg.clone()).await.unwrap();
        assert_eq!((logs(&disk, "a-0"), logs(&disk, "b-0")), (0, 0));
        ahead.prepare_active_segment().await.unwrap();
        assert_eq!(logs(&disk, "a-0"), 1);
        let ops = disk.ops();
        ahead.prepare_active_segment().await.unwrap();
        assert_eq!(disk.ops(), ops, "a second call does nothing");
        let cost = |p: Partition<FakeDisk>, tag: u64| {
            let disk = disk.clone();
            async move {
                let before = disk.ops();
                p.append(make_batch(tag, 3, 100, 1000)).await.unwrap();
                disk.ops() - before
            }
        };
        let (first_ahead, first_lazy) = (cost(ahead, 1).await, cost(lazy, 2).await);
        assert!(
            first_ahead < first_lazy,
            "first append: {first_ahead} disk ops with the file made ahead, {first_lazy} without"
        );
        drop(shard);
        // A partition whose file was made ahead, then the machine crashed before any append.
        let c = shard_on(&disk).await;
        let p = c.create_partition("c", 0, cfg.clone()).await.unwrap();
        p.prepare_active_segment().await.unwrap();
        drop(c);
        disk.crash();
        let c = shard_on(&disk).await;
        let p = c.create_partition("c", 0, cfg).await.unwrap();
        assert_eq!(logs(&disk, "c-0"), 1, "the file is durable");
        assert_eq!(p.offsets().log_end_offset, 0);
        p.prepare_active_segment().await.unwrap();
        assert_eq!(
            p.append(make_batch(3, 3, 100, 1000))
                .await
                .unwrap()
                .base_offset,
            0
        );
        // Closed before it ran (a topic deleted right after its creation): nothing, no error.
        let d = c
            .create_partition("d", 0, LogConfig::default())
            .await
            .unwrap();
        d.close().await.unwrap();
        d.prepare_active_segment().await.unwrap();
        assert_eq!(logs(&disk, "d-0"), 0);
    });
}

async fn shard_on(disk: &FakeDisk) -> Shard<FakeDisk> {
    Shard::open(disk.clone(), "/d".as_ref(), ShardConfig::default())
        .await
        .unwrap()
}

/// Batches read from disk are lent out of glommio's read buffer, not copied: the buffer stays
/// on its core while any of the bytes are held, also by another thread, and reading them there
/// gives what was appended; once the last holder drops them (on that other thread), the
/// core's next sweep frees the buffer.
#[test]
fn reads_from_disk_are_lent_without_a_copy() {
    let dir = real_dir("lent");
    let d2 = dir.clone();
    run_glommio(move || async move {
        probe_dma_polling(&d2).await.unwrap();
        let shard_cfg = ShardConfig {
            cache_bytes_max: 0, // every read goes to disk
            ..ShardConfig::default()
        };
        let shard = Shard::open(DmaStorage, &d2, shard_cfg).await.unwrap();
        let p = shard
            .create_partition("t", 0, LogConfig::default())
            .await
            .unwrap();
        let appended: Vec<Bytes> = (0..20).map(|tag| make_batch(tag, 3, 100, 1000)).collect();
        for b in &appended {
            p.append(b.clone()).await.unwrap();
        }
        sweep_lent();
        let before = lent_buffers();
        let read = p.read(0, 1 << 20).await.unwrap().batches;
        assert_eq!(read.len(), appended.len());
        assert_eq!(lent_buffers(), before + 1, "one disk read, one buffer lent");
        let want: Vec<Vec<u8>> = read.iter().map(|b| b.to_vec()).collect();
        // Everything after the base offset and leader epoch is what was appended.
        for (r, a) in want.iter().zip(&appended) {
            assert_eq!(r[16..], a[16..]);
        }
        let kept = read[7].clone();
        let elsewhere = std::thread::spawn(move || {
            let same = read.iter().zip(&want).all(|(r, w)| r[..] == w[..]);
            drop(read);
            (same, want)
        });
        let (same, want) = elsewhere.join().unwrap();
        assert!(same, "another thread reads the bytes the core read");
        sweep_lent();
        assert_eq!(
            lent_buffers(),
            before + 1,
            "one batch still held: the buffer stays"
        );
        assert_eq!(&kept[..], &want[7][..]);
        drop(kept);
        sweep_lent();
        assert_eq!(lent_buffers(), before, "no bytes held: the buffer is freed");
        shard.close().await.unwrap();
    });
    let _ = std::fs::remove_dir_all(dir);
}
