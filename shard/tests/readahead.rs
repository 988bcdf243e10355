//! Read-ahead for consumers behind the cache (issue 22): a read that went to disk lets the
//! next window be read ahead, the next read in order takes it instead of reading, and what it
//! returns is exactly what a read without read-ahead returns, also after a truncation
//! rewrote the bytes the window held.

mod common;

use bytes::Bytes;
use common::*;
use futures_lite::future::block_on;
use sluice_shard::*;

fn configs() -> (LogConfig, ShardConfig) {
    let cfg = LogConfig {
        segment_bytes: 1 << 20,
        index_interval_bytes: 1024,
        ..LogConfig::default()
    };
    let shard_cfg = ShardConfig {
        // Small enough that most of the log is read from disk; a quarter of it (4 KiB) bounds
        // the read-ahead, more than one window of the 2 KiB reads below.
        cache_bytes_max: 16 << 10,
        read_bytes_min: 512,
        ..ShardConfig::default()
    };
    (cfg, shard_cfg)
}

const READ_BYTES: usize = 2 << 10;

/// Appends 100 batches of three 100-byte records (tags 100..200).
async fn fill<S: Storage>(p: &Partition<S>) {
    for tag in 100..200u64 {
        p.append(make_batch(tag, 3, 100, 1000)).await.unwrap();
    }
}

/// A shard on `storage` at `dir` with partition t-0 filled (see `fill`).
async fn filled<S: Storage>(storage: S, dir: &std::path::Path) -> (Shard<S>, Partition<S>) {
    let (cfg, shard_cfg) = configs();
    let shard = Shard::open(storage, dir, shard_cfg).await.unwrap();
    let p = shard.create_partition("t", 0, cfg).await.unwrap();
    fill(&p).await;
    (shard, p)
}

/// Reads the whole log in order, `READ_BYTES` at a time; with `ahead`, a read-ahead runs
/// after each read that wants one (inline: the next read finds it finished).
async fn read_all<S: Storage>(p: &Partition<S>, ahead: bool) -> (Vec<Bytes>, usize) {
    let mut out = Vec::new();
    let mut offset = 0;
    let mut aheads = 0;
    while offset < p.offsets().high_watermark {
        let r = p.read(offset, READ_BYTES).await.unwrap();
        let last = r
            .batches
            .last()
            .expect("a read below the high watermark returns a batch");
        offset = i64::from_be_bytes(last[..8].try_into().unwrap())
            + i64::from(i32::from_be_bytes(last[23..27].try_into().unwrap()))
            + 1;
        out.extend(r.batches);
        if ahead && p.read_ahead_wanted() {
            p.read_ahead().await;
            aheads += 1;
        }
    }
    (out, aheads)
}

/// Reading in order with read-ahead returns the same batches as without, and the reads
/// themselves go to the disk far less often: the window was read ahead.
#[test]
fn reads_in_order_take_the_window_read_ahead() {
    let disk = FakeDisk::new(7, Faults::default(), 1_000_000);
    block_on(async {
        let (shard, p) = filled(disk.clone(), "/d".as_ref()).await;
        let before = disk.reads();
        let (plain, none) = read_all(&p, false).await;
        let plain_reads = disk.reads() - before;
        assert_eq!(none, 0);
        // Reads, counting the read-ahead's own separately.
        let mut got = Vec::new();
        let (mut offset, mut foreground, mut aheads) = (0, 0, 0);
        while offset < p.offsets().high_watermark {
            let before = disk.reads();
            let r = p.read(offset, READ_BYTES).await.unwrap();
            foreground += disk.reads() - before;
            offset = next_offset(&r.batches);
            got.extend(r.batches);
            if p.read_ahead_wanted() {
                p.read_ahead().await;
                aheads += 1;
            }
        }
        assert_eq!(got, plain, "read-ahead changed what reads return");
        assert!(
            plain_reads >= 10,
            "the log is mostly read from disk ({plain_reads} reads)"
        );
        assert!(aheads >= 10, "{aheads} read-aheads");
        // Only the first read from disk reads for itself; the others find their window.
        assert!(
            foreground <= 2,
            "{foreground} reads went to disk with read-ahead, {plain_reads} without"
        );
        shard.close().await.unwrap();
    });
}

/// A truncation that cuts the log where a read stopped, followed by appends of other batches
/// of the same sizes at the same positions, must not let the window read ahead before it
/// serve the old bytes (they are valid batches, with the same offsets: only the read-ahead
/// state can tell).
#[test]
fn truncation_drops_the_window_read_ahead() {
    let disk = FakeDisk::new(8, Faults::default(), 1_000_000);
    block_on(async {
        let (shard, p) = filled(disk.clone(), "/d".as_ref()).await;
        let r = p.read(30, READ_BYTES).await.unwrap();
        let end = next_offset(&r.batches);
        assert!(p.read_ahead_wanted());
        p.read_ahead().await;
        assert!(!p.read_ahead_wanted(), "the window waits in its slot");
        p.truncate_to(end).await.unwrap();
        // Other contents, same sizes (same digit count and fill), so the same positions; and
        // enough of them that the first ones are out of the cache again.
        let mut replaced = Vec::new();
        for k in 0..(100 - end as u64 / 3) {
            let b = make_batch(100 + end as u64 / 3 + k + 3, 3, 100, 1000);
            replaced.push(b.clone());
            p.append(b).await.unwrap();
        }
        let before = disk.reads();
        let r = p.read(end, READ_BYTES).await.unwrap();
        assert!(disk.reads() > before, "the read went to disk");
        assert!(!r.batches.is_empty());
        for (got, want) in r.batches.iter().zip(&replaced) {
            assert_eq!(
                &got[16..],
                &want[16..],
                "a batch from before the truncation"
            );
        }
        shard.close().await.unwrap();
    });
}

/// The read-ahead checks the CRCs of its window and the reader skips that check for them:
/// a batch corrupted on disk inside the window must still fail the read, as without
/// read-ahead.
#[test]
fn a_corrupt_batch_in_the_window_read_ahead_fails_the_read() {
    let disk = FakeDisk::new(9, Faults::default(), 1_000_000);
    block_on(async {
        let (shard, p) = filled(disk.clone(), "/d".as_ref()).await;
        let r = p.read(30, READ_BYTES).await.unwrap();
        let end = next_offset(&r.batches);
        let size = r.batches[0].len();
        assert!(r.batches.iter().all(|b| b.len() == size), "equal batches");
        assert!(p.read_ahead_wanted());
        // Flip a value byte of the second batch of the window about to be read ahead.
        let log = disk
            .paths()
            .into_iter()
            .find(|f| f.extension().is_some_and(|e| e == "log"))
            .unwrap();
        let mut data = disk.file_bytes(&log).unwrap();
        let victim = (end as usize / 3 + 1) * size;
        data[victim + size / 2] ^= 0x10;
        disk.set_file_bytes(&log, data);
        p.read_ahead().await;
        let before = disk.reads();
        let err = p.read(end, READ_BYTES).await.unwrap_err();
        assert_eq!(disk.reads(), before, "the read took the window");
        assert!(err.to_string().contains("CRC"), "{err}");
        shard.close().await.unwrap();
    });
}

/// On real files, with the read-ahead in a task of its own as the broker runs it: the next
/// read waits for the window in flight instead of reading it again, and returns the same.
#[test]
fn a_read_waits_for_the_window_in_flight() {
    let dir = real_dir("readahead");
    let d2 = dir.clone();
    run_glommio(move || async move {
        probe_dma_polling(&d2).await.unwrap();
        let (shard, p) = filled(DmaStorage, &d2).await;
        let (plain, _) = read_all(&p, false).await;
        let mut got = Vec::new();
        let mut offset = 0;
        let mut spawned = 0;
        while offset < p.offsets().high_watermark {
            let r = p.read(offset, READ_BYTES).await.unwrap();
            offset = next_offset(&r.batches);
            got.extend(r.batches);
            if p.read_ahead_wanted() {
                let q = p.clone();
                glommio::spawn_local(async move { q.read_ahead().await }).detach();
                spawned += 1;
            }
        }
        assert_eq!(got, plain);
        assert!(spawned >= 10, "{spawned} read-aheads");
        shard.close().await.unwrap();
    });
    let _ = std::fs::remove_dir_all(dir);
}

/// Next offset after the last batch of a read.
fn next_offset(batches: &[Bytes]) -> i64 {
    let last = batches
        .last()
        .expect("a read below the high watermark returns a batch");
    i64::from_be_bytes(last[..8].try_into().unwrap())
        + i64::from(i32::from_be_bytes(last[23..27].try_into().unwrap()))
        + 1
}

/// Two consumers of one partition at different places, reads alternating, each running the
/// read-ahead the broker would: the first one's window survives the other's reads, and
/// nothing is read twice (before, each one's read dropped the other's window, so every read
/// went to disk and every read-ahead was wasted).
#[test]
fn two_readers_at_different_places_do_not_read_twice() {
    let disk = FakeDisk::new(9, Faults::default(), 1_000_000);
    block_on(async {
        let (shard, p) = filled(disk.clone(), "/d".as_ref()).await;
        let (plain, _) = read_all(&p, false).await;
        let end = p.offsets().high_watermark;
        let before = disk.reads();
        let (mut a, mut b) = (0i64, 45i64);
        let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
        let mut a_foreground = 0;
        while a < end || b < end {
            if a < end {
                let r0 = disk.reads();
                let r = p.read(a, READ_BYTES).await.unwrap();
                a_foreground += disk.reads() - r0;
                a = next_offset(&r.batches);
                got_a.extend(r.batches);
                if p.read_ahead_wanted() {
                    p.read_ahead().await;
                }
            }
            if b < end {
                let r = p.read(b, READ_BYTES).await.unwrap();
                b = next_offset(&r.batches);
                got_b.extend(r.batches);
                if p.read_ahead_wanted() {
                    p.read_ahead().await;
                }
            }
        }
        assert_eq!(got_a, plain);
        let from_b = plain
            .iter()
            .position(|x| next_offset(std::slice::from_ref(x)) > 45);
        assert_eq!(got_b, plain[from_b.unwrap()..]);
        assert!(
            a_foreground <= 2,
            "{a_foreground} of the first reader's reads went to disk"
        );
        // Without read-ahead the two readers read about 12 + 7 windows; each window is read
        // once here, by its reader or ahead of it.
        let total = disk.reads() - before;
        assert!(total <= 22, "{total} disk reads for both readers");
        shard.close().await.unwrap();
    });
}
