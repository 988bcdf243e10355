//! The bound on open segment files (`ShardConfig::open_segment_files_max`), on real files
//! through glommio: with a bound of 4 and many partitions x segments, reads at random offsets
//! of every segment, from several tasks at once and again after a reopen, return the bytes
//! that were appended, while the process's descriptor count (`/proc/self/fd`) never passes
//! the count before any partition was opened + the bound + one active segment per partition
//! + the reads in flight + a little slack (directory syncs, glommio's deferred closes).

mod common;

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;
use common::*;
use sluice_shard::*;

const PARTITIONS: i32 = 6;
const BOUND: usize = 4;
const READERS: usize = 6;
const SLACK: usize = 4;

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n.max(1)
    }
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

/// What one partition holds: (base, last, bytes as stored), in offset order.
type Log = Vec<(i64, i64, Bytes)>;

fn expected(log: &Log, offset: i64, max_bytes: usize) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut total = 0;
    for (_, _, b) in log.iter().filter(|(_, last, _)| *last >= offset) {
        if !out.is_empty() && total + b.len() > max_bytes {
            break;
        }
        total += b.len();
        out.push(b.clone());
    }
    out
}

fn configs() -> (LogConfig, ShardConfig) {
    let cfg = LogConfig {
        segment_bytes: 16 << 10,
        index_interval_bytes: 1024,
        retention_ms: None,
        preallocate_bytes: 16 << 10,
        ..LogConfig::default()
    };
    let shard_cfg = ShardConfig {
        // Nothing served from memory: every read goes to the segment files.
        cache_bytes_max: 0,
        read_bytes_min: 4 << 10,
        open_segment_files_max: BOUND,
        ..ShardConfig::default()
    };
    (cfg, shard_cfg)
}

async fn open_all(dir: &Path) -> (Shard, Vec<Partition<DmaStorage>>) {
    let (cfg, shard_cfg) = configs();
    let shard = Shard::open(DmaStorage, dir, shard_cfg)
        .await
        .expect("open shard");
    let mut parts = Vec::new();
    for i in 0..PARTITIONS {
        parts.push(
            shard
                .create_partition("bound", i, cfg.clone())
                .await
                .expect("open partition"),
        );
    }
    (shard, parts)
}

/// `READERS` tasks read at random offsets of random partitions; each read is compared with
/// the model and the descriptor count is sampled after it.
async fn random_reads(
    parts: &[Partition<DmaStorage>],
    logs: &Rc<Vec<Log>>,
    seed: u64,
    reads_per_task: usize,
    limit: usize,
) -> usize {
    let peak = Rc::new(Cell::new(0usize));
    let mut tasks = Vec::new();
    for t in 0..READERS {
        let parts = parts.to_vec();
        let logs = logs.clone();
        let peak = peak.clone();
        tasks.push(glommio::spawn_local(async move {
            let mut rng = Rng(seed ^ (t as u64 * 7919));
            for _ in 0..reads_per_task {
                let i = rng.below(PARTITIONS as u64) as usize;
                let log = &logs[i];
                let leo = log.last().map_or(0, |b| b.1 + 1);
                let offset = rng.below(leo as u64) as i64;
                let max_bytes = 1 + rng.below(12_000) as usize;
                let r = parts[i].read(offset, max_bytes).await.expect("read");
                let want = expected(log, offset, max_bytes);
                assert_eq!(r.batches.len(), want.len(), "partition {i} offset {offset}");
                for (g, w) in r.batches.iter().zip(&want) {
                    assert!(g == w, "partition {i} offset {offset}: different bytes");
                }
                let n = open_fds();
                peak.set(peak.get().max(n));
                assert!(n <= limit, "{n} descriptors open, limit {limit}");
            }
        }));
    }
    for t in tasks {
        t.await;
    }
    peak.get()
}

/// See the module docs.
#[test]
fn reads_stay_correct_under_a_small_open_file_bound() {
    let dir = real_dir("open-files");
    let d: PathBuf = dir.clone();
    run_glommio(move || async move {
        probe_dma_polling(&d).await.expect("probe");
        let baseline = open_fds();
        let limit = baseline + BOUND + PARTITIONS as usize + READERS + SLACK;
        let (shard, parts) = open_all(&d).await;
        let logs: Rc<RefCell<Vec<Log>>> =
            Rc::new(RefCell::new(vec![Vec::new(); PARTITIONS as usize]));
        let mut tag = 0u64;
        let mut peak = 0;
        for round in 0..120 {
            for (i, p) in parts.iter().enumerate() {
                tag += 1;
                let count = 1 + (tag % 3) as usize;
                let raw = make_batch(tag, count, 200 + (tag % 5) as usize * 150, tag as i64);
                let info = p.append(raw.clone()).await.expect("append");
                let mut v = raw.to_vec();
                v[..8].copy_from_slice(&info.base_offset.to_be_bytes());
                v[12..16].copy_from_slice(&0i32.to_be_bytes());
                logs.borrow_mut()[i].push((info.base_offset, info.last_offset, Bytes::from(v)));
            }
            let n = open_fds();
            peak = peak.max(n);
            assert!(
                n <= limit,
                "round {round}: {n} descriptors open, limit {limit}"
            );
        }
        let segments: usize = parts.iter().map(Partition::segment_count).sum();
        assert!(
            segments >= PARTITIONS as usize * 6,
            "want many closed segments, got {segments}"
        );
        let logs = Rc::new(logs.borrow().clone());
        peak = peak.max(random_reads(&parts, &logs, 11, 150, limit).await);
        let (cached, opens) = shard.segment_files();
        assert!(cached <= BOUND, "{cached} files cached");
        assert!(opens > 0, "closed segments were opened on demand");
        shard.close().await.expect("close");
        drop(parts);

        // After a reopen every closed segment starts closed; recovery itself stays bounded.
        let (shard, parts) = open_all(&d).await;
        peak = peak.max(open_fds());
        assert!(open_fds() <= limit);
        peak = peak.max(random_reads(&parts, &logs, 12, 150, limit).await);
        shard.close().await.expect("close");
        eprintln!(
            "{segments} segments in {PARTITIONS} partitions, bound {BOUND}: \
             peak {peak} descriptors, baseline {baseline}, limit {limit}"
        );
    });
    let _ = std::fs::remove_dir_all(dir);
}
