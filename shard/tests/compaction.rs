//! Log compaction: the last value per key stays at its original offset, tombstones go after
//! `delete_retention_ms`, the active segment is untouched, reads skip removed offsets, a crash
//! at every step of the file swap leaves a consistent log, idempotent producers' state
//! survives, and keyless appends are refused. On the fake disk and on real files.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use common::*;
use futures_lite::future::block_on;
use sluice_net::record_batch::RecordBatch;
use sluice_net::record_batch::build::{BatchSpec, batch};
use sluice_shard::*;

type Rec = (i64, Vec<u8>, Option<Vec<u8>>);
type KeyValue<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

fn cfg() -> LogConfig {
    LogConfig {
        compact: true,
        segment_bytes: 2048,
        index_interval_bytes: 256,
        retention_ms: None,
        min_cleanable_dirty_ratio: 0.0,
        delete_retention_ms: 10_000,
        preallocate_bytes: 4096,
        ..LogConfig::default()
    }
}

/// One batch of keyed records (value `None` is a tombstone).
fn kbatch(recs: &[(&str, Option<String>)], spec: &BatchSpec) -> Bytes {
    let owned: Vec<(Vec<u8>, Option<Vec<u8>>)> = recs
        .iter()
        .map(|(k, v)| {
            (
                k.as_bytes().to_vec(),
                v.as_ref().map(|v| v.as_bytes().to_vec()),
            )
        })
        .collect();
    let refs: Vec<KeyValue> = owned
        .iter()
        .map(|(k, v)| (Some(k.as_slice()), v.as_deref()))
        .collect();
    batch(spec, &refs)
}

/// Every record readable from the log start to the high watermark, checking that batch
/// offsets only increase and every batch passes its CRC.
async fn read_all<S: Storage>(p: &Partition<S>) -> Vec<Rec> {
    let o = p.offsets();
    let mut off = o.log_start_offset;
    let mut out = Vec::new();
    let mut last = -1i64;
    while off < o.high_watermark {
        let r = p.read(off, 8 << 10).await.expect("read");
        if r.batches.is_empty() {
            break;
        }
        for b in r.batches {
            let b = RecordBatch::new(b).expect("batch");
            b.validate_stored().expect("crc");
            assert!(b.base_offset() > last, "batch offsets must increase");
            last = b.last_offset();
            for rec in b.records().expect("uncompressed") {
                let rec = rec.expect("record");
                out.push((
                    b.base_offset() + i64::from(rec.offset_delta),
                    rec.key.expect("key").to_vec(),
                    rec.value.map(|v| v.to_vec()),
                ));
            }
            off = b.last_offset() + 1;
        }
    }
    out
}

/// Key -> (offset, value) of the last record per key; tombstones count as absent.
fn latest(recs: &[Rec]) -> BTreeMap<Vec<u8>, (i64, Vec<u8>)> {
    let mut m = BTreeMap::new();
    for (o, k, v) in recs {
        match v {
            Some(v) => m.insert(k.clone(), (*o, v.clone())),
            None => m.remove(k),
        };
    }
    m
}

/// Checks a compacted view against everything ever appended: every record served is one
/// that was appended at that offset, and the last value per key is the same.
fn check_view(served: &[Rec], appended: &[Rec]) {
    let by_offset: BTreeMap<i64, &Rec> = appended.iter().map(|r| (r.0, r)).collect();
    for r in served {
        assert_eq!(by_offset.get(&r.0), Some(&r), "record at {} differs", r.0);
    }
    assert_eq!(
        latest(served),
        latest(appended),
        "last value per key differs"
    );
}

/// Appends `n` batches over `keys` keys; every 7th record is a tombstone.
async fn fill<S: Storage>(p: &Partition<S>, seed: u64, n: usize, keys: u64, log: &mut Vec<Rec>) {
    let prefix = if seed == 2 { "second-" } else { "k" };
    let mut x = seed;
    for i in 0..n {
        let count = 1 + i % 3;
        let mut recs = Vec::new();
        for j in 0..count {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let k = format!("{prefix}{}", (x >> 33) % keys);
            let v = ((i + j) % 7 != 3).then(|| format!("v{seed}-{i}-{j}-{}", "x".repeat(i % 40)));
            recs.push((k, v));
        }
        let refs: Vec<(&str, Option<String>)> =
            recs.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        let info = p
            .append(kbatch(&refs, &BatchSpec::default()))
            .await
            .expect("append");
        for (j, (k, v)) in recs.into_iter().enumerate() {
            log.push((
                info.base_offset + j as i64,
                k.into_bytes(),
                v.map(String::into_bytes),
            ));
        }
    }
}

async fn open<S: Storage>(storage: S, dir: &Path) -> (Shard<S>, Partition<S>) {
    let s = Shard::open(storage, dir, ShardConfig::default())
        .await
        .expect("open shard");
    let p = s.create_partition("c", 0, cfg()).await.expect("partition");
    (s, p)
}

fn active_bytes(disk: &FakeDisk, dir: &Path) -> (PathBuf, Vec<u8>) {
    let mut logs: Vec<PathBuf> = disk
        .paths()
        .into_iter()
        .filter(|p| p.starts_with(dir) && p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    let last = logs.pop().expect("a segment");
    let bytes = disk.file_bytes(&last).expect("bytes");
    (last, bytes)
}

/// The whole story on the fake disk: last value per key at its original offset, the active
/// segment byte-identical, offsets and log start unchanged, removed offsets read as the next
/// batch, merging of small cleaned segments, and tombstones gone after the retention.
#[test]
fn last_value_per_key_offsets_and_tombstones() {
    let disk = FakeDisk::new(1, Faults::default(), 1_000_000);
    let dir = Path::new("/d");
    block_on(async {
        let (s, p) = open(disk.clone(), dir).await;
        let mut log = Vec::new();
        fill(&p, 1, 300, 12, &mut log).await;
        let segs_before = p.segment_count();
        assert!(segs_before > 5);
        let before = p.offsets();
        // A read before compaction fills the cache with batches that compaction drops.
        assert_eq!(read_all(&p).await.len(), log.len());
        let (active_path, active) = active_bytes(&disk, &dir.join("c-0"));
        let st = p.compact(disk_now(&disk)).await.expect("compact");
        assert_eq!(st.passes, 1);
        assert!(
            st.records_dropped > 0 && st.bytes_after < st.bytes_before,
            "{st:?}"
        );
        assert_eq!(p.offsets(), before, "offsets must not move");
        assert_eq!(disk.file_bytes(&active_path).expect("active"), active);
        let served = read_all(&p).await;
        check_view(&served, &log);
        // Every key appears once in the closed segments (duplicates only in the active one).
        let active_base: i64 = active_path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse().ok())
            .expect("base");
        let mut seen = std::collections::HashSet::new();
        for r in served.iter().filter(|r| r.0 < active_base) {
            assert!(
                seen.insert(r.1.clone()),
                "key {:?} twice after compaction",
                r.1
            );
        }
        // An offset that was compacted away reads as the next batch after it.
        let kept: Vec<i64> = served.iter().map(|r| r.0).collect();
        let gone = (0..active_base)
            .find(|o| !kept.contains(o))
            .expect("a removed offset");
        let r = p.read(gone, 1).await.expect("read removed offset");
        let first = RecordBatch::new(r.batches[0].clone()).expect("batch");
        assert!(first.base_offset() > gone || first.last_offset() >= gone);
        let next_kept = *kept.iter().find(|&&o| o > gone).expect("later record");
        assert!(first.base_offset() <= next_kept);
        // Nothing is due right after a pass.
        assert!(!p.compaction_due(disk_now(&disk)));
        assert_eq!(p.compact(disk_now(&disk)).await.expect("idle").passes, 0);

        // Tombstones stay on the first pass and survive a reopen.
        let tombs = served.iter().filter(|r| r.2.is_none()).count();
        assert!(tombs > 0, "the test wants tombstones in the cleaned part");
        s.close().await.expect("close");
        let (s, p) = open(disk.clone(), dir).await;
        assert_eq!(read_all(&p).await, served);

        // More data, then a pass after the retention: tombstones of the cleaned part go, and
        // the small cleaned segments merge.
        fill(&p, 2, 200, 12, &mut log).await;
        p.roll().await.expect("roll");
        disk.advance_ms(cfg().delete_retention_ms + 1);
        let segs_mid = p.segment_count();
        let st = p.compact(disk_now(&disk)).await.expect("compact 2");
        assert!(st.tombstones_dropped > 0, "{st:?}");
        assert!(p.segment_count() < segs_mid, "small cleaned segments merge");
        let served = read_all(&p).await;
        check_view(&served, &log);
        let first_pass_end = active_base;
        assert!(
            served
                .iter()
                .all(|r| r.0 >= first_pass_end || r.2.is_some()),
            "expired tombstones removed"
        );
        s.close().await.expect("close");
        let (_s, p) = open(disk.clone(), dir).await;
        assert_eq!(read_all(&p).await, served);
    });
}

fn disk_now(disk: &FakeDisk) -> i64 {
    disk.now_ms()
}

/// Builds the same log for the crash loop: two fills, the second pass merges segments.
async fn build_for_crash(disk: &FakeDisk, dir: &Path, log: &mut Vec<Rec>, second: bool) {
    let (s, p) = open(disk.clone(), dir).await;
    fill(&p, 3, 150, 8, log).await;
    p.roll().await.expect("roll");
    if second {
        p.compact(disk.now_ms()).await.expect("first pass");
        fill(&p, 4, 100, 8, log).await;
        p.roll().await.expect("roll");
    }
    s.close().await.expect("close");
}

/// Cuts the compaction pass after each of its mutating disk calls in turn (the machine stops
/// there: every later call fails), simulates power loss, reopens: the log must serve the same
/// last value per key at the same offsets, and a second pass must then finish cleanly.
#[test]
fn crash_at_every_step_of_the_swap() {
    for second in [false, true] {
        let mut n = 0u64;
        loop {
            let disk = FakeDisk::new(7, Faults::default(), 1_000_000);
            let dir = Path::new("/d");
            let mut log = Vec::new();
            let finished = block_on(async {
                build_for_crash(&disk, dir, &mut log, second).await;
                let (s, p) = open(disk.clone(), dir).await;
                let before = read_all(&p).await;
                let offsets = p.offsets();
                disk.fail_after(Some(n));
                let r = p.compact(disk.now_ms()).await;
                eprintln!("second={second} n={n}: {r:?}");
                let finished = r.is_ok();
                drop(p);
                drop(s);
                disk.crash();
                disk.fail_after(None);
                let (s, p) = open(disk.clone(), dir).await;
                assert_eq!(p.offsets().log_end_offset, offsets.log_end_offset);
                assert_eq!(p.offsets().log_start_offset, offsets.log_start_offset);
                let after = read_all(&p).await;
                check_view(&after, &log);
                assert_eq!(latest(&after), latest(&before));
                // Finish the job and check again.
                p.compact(disk.now_ms()).await.expect("pass after crash");
                let clean = read_all(&p).await;
                check_view(&clean, &log);
                s.close().await.expect("close");
                let (_s, p) = open(disk.clone(), dir).await;
                assert_eq!(read_all(&p).await, clean);
                let leftovers: Vec<_> = disk
                    .paths()
                    .into_iter()
                    .filter(|p| {
                        let n = p.to_string_lossy();
                        n.ends_with(".cleaned") || n.ends_with(".swap")
                    })
                    .collect();
                assert!(leftovers.is_empty(), "{leftovers:?}");
                finished
            });
            if finished {
                assert!(n > 5, "the pass should take several disk calls");
                break;
            }
            n += 1;
            assert!(n < 500, "compaction never finished");
        }
    }
}

fn pbatch(pid: i64, seq: i32, key: &str, value: &str) -> Bytes {
    kbatch(
        &[(key, Some(value.to_owned()))],
        &BatchSpec {
            producer_id: pid,
            producer_epoch: 0,
            base_sequence: seq,
            ..BatchSpec::default()
        },
    )
}

/// A producer whose last batch lost all its records to compaction keeps that batch (empty),
/// so a rescan after a crash (index files gone) rebuilds the same sequence state.
#[test]
fn idempotent_producer_state_survives() {
    let disk = FakeDisk::new(11, Faults::default(), 1_000_000);
    let dir = Path::new("/d");
    block_on(async {
        let (s, p) = open(disk.clone(), dir).await;
        for seq in 0..20 {
            p.append(pbatch(7, seq, "shared", &format!("p7-{seq}")))
                .await
                .expect("append");
        }
        let last7 = p
            .append(pbatch(7, 20, "shared", "p7-last"))
            .await
            .expect("append");
        // A plain producer supersedes every record of producer 7.
        p.append(pbatch(-1, -1, "shared", "plain"))
            .await
            .expect("append");
        p.roll().await.expect("roll");
        let st = p.compact(disk.now_ms()).await.expect("compact");
        assert!(st.batches_emptied >= 1, "{st:?}");
        let served = read_all(&p).await;
        assert_eq!(served.len(), 1);
        assert_eq!(served[0].2.as_deref(), Some(&b"plain"[..]));
        s.close().await.expect("close");
        // Lose the index files: the reopen rescans every segment for producer state.
        for path in disk.paths() {
            let n = path.to_string_lossy().to_string();
            if n.ends_with(".index") || n.ends_with(".timeindex") {
                disk.remove(&path).await.expect("remove index");
            }
        }
        let (_s, p) = open(disk.clone(), dir).await;
        match p.append(pbatch(7, 20, "shared", "p7-last")).await {
            Err(ShardError::DuplicateSequence { base_offset, .. }) => {
                assert_eq!(base_offset, last7.base_offset);
            }
            other => panic!("expected a duplicate, got {other:?}"),
        }
        p.append(pbatch(7, 21, "shared", "p7-next"))
            .await
            .expect("next sequence accepted");
        match p.append(pbatch(7, 30, "shared", "gap")).await {
            Err(ShardError::OutOfOrderSequence { expected: 22, .. }) => {}
            other => panic!("expected out of order, got {other:?}"),
        }
    });
}

/// Records without a key are refused on a compacted topic (Kafka's INVALID_RECORD), and
/// accepted on others.
#[test]
fn keyless_records_refused_when_compacted() {
    let disk = FakeDisk::new(3, Faults::default(), 1_000_000);
    block_on(async {
        let s = Shard::open(disk.clone(), Path::new("/d"), ShardConfig::default())
            .await
            .expect("shard");
        let c = s.create_partition("c", 0, cfg()).await.expect("c");
        let plain = s
            .create_partition("plain", 0, LogConfig::default())
            .await
            .expect("plain");
        let keyless = make_batch(1, 3, 10, 0);
        match c.append(keyless.clone()).await {
            Err(ShardError::RecordErrors { timestamp, errors }) => {
                assert!(!timestamp);
                assert_eq!(errors.len(), 3, "every keyless record is named: {errors:?}");
                assert_eq!(errors[0].batch_index, 0);
                assert!(errors[0].message.contains("without key"), "{errors:?}");
            }
            other => panic!("expected record errors, got {other:?}"),
        }
        plain
            .append(keyless)
            .await
            .expect("plain topic takes keyless");
        assert_eq!(
            plain.compact(disk.now_ms()).await.expect("noop").passes,
            0,
            "delete-only topics are never compacted"
        );
    });
}

/// The same on real files through glommio DMA, with a reopen.
#[test]
fn real_disk_compaction_and_reopen() {
    let dir = real_dir("compaction");
    let d = dir.clone();
    run_glommio(move || async move {
        probe_dma_polling(&d).await.expect("probe");
        let now = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |t| t.as_millis() as i64)
        };
        let mut log = Vec::new();
        let served = {
            let (s, p) = open(DmaStorage, &d).await;
            fill(&p, 5, 400, 20, &mut log).await;
            p.roll().await.expect("roll");
            let st = p.compact(now()).await.expect("compact");
            assert!(st.segments_cleaned > 0, "{st:?}");
            let served = read_all(&p).await;
            check_view(&served, &log);
            s.close().await.expect("close");
            served
        };
        let (s, p) = open(DmaStorage, &d).await;
        assert_eq!(read_all(&p).await, served);
        fill(&p, 6, 100, 20, &mut log).await;
        p.roll().await.expect("roll");
        p.compact(now()).await.expect("compact again");
        check_view(&read_all(&p).await, &log);
        s.close().await.expect("close");
    });
    let _ = std::fs::remove_dir_all(dir);
}

/// Measurement, not a check (run with `--ignored --nocapture`): compaction throughput on real
/// files. 64 MiB of 1 KiB values over 10,000 keys in 8 MiB segments, one pass.
#[test]
#[ignore]
fn throughput_real_disk() {
    let dir = real_dir("compaction-throughput");
    let d = dir.clone();
    run_glommio(move || async move {
        probe_dma_polling(&d).await.expect("probe");
        let cfg = LogConfig {
            segment_bytes: 8 << 20,
            index_interval_bytes: 4096,
            preallocate_bytes: 8 << 20,
            ..cfg()
        };
        let s = Shard::open(DmaStorage, &d, ShardConfig::default())
            .await
            .expect("shard");
        let p = s.create_partition("t", 0, cfg).await.expect("partition");
        let value = "v".repeat(1000);
        let mut n = 0u64;
        while p.size_bytes() < 64 << 20 {
            let keys: Vec<String> = (0..64)
                .map(|i| format!("key-{}", (n + i) % 10_000))
                .collect();
            let recs: Vec<(&str, Option<String>)> = keys
                .iter()
                .map(|k| (k.as_str(), Some(value.clone())))
                .collect();
            p.append(kbatch(&recs, &BatchSpec::default()))
                .await
                .expect("append");
            n += 64;
        }
        p.roll().await.expect("roll");
        let t = std::time::Instant::now();
        let st = p.compact(i64::MAX / 2).await.expect("compact");
        let secs = t.elapsed().as_secs_f64();
        eprintln!(
            "compaction: read {:.1} MiB, wrote {:.1} MiB, {} -> {} segments, {:.2} s, \
             {:.0} MiB/s read",
            st.bytes_read as f64 / f64::from(1 << 20),
            st.bytes_written as f64 / f64::from(1 << 20),
            st.segments_cleaned,
            st.segments_written,
            secs,
            st.bytes_read as f64 / f64::from(1 << 20) / secs
        );
        s.close().await.expect("close");
    });
    let _ = std::fs::remove_dir_all(dir);
}
