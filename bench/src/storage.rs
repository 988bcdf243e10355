//! `sluice-bench storage`: one partition on one pinned glommio core.
//!
//! For each batch size (1 KiB records, 16 KiB to 1 MiB per batch) it appends with sync on
//! (each append waits for its fdatasync) and then measures the raw limit of the same pattern:
//! sequential O_DIRECT writes of the same size, each followed by fdatasync, through glommio's
//! io_uring DMA file directly. Then it reads the log back cold (a fresh shard, so the batch
//! cache is empty; O_DIRECT bypasses the page cache) and compares with raw sequential 1 MiB
//! O_DIRECT reads of the same segment file. The JSON figures are for 256 KiB batches (the
//! size the goals name); the table shows every size.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use glommio::io::{DmaFile, OpenOptions};
use glommio::{LocalExecutorBuilder, Placement};
use hdrhistogram::Histogram;
use sluice_net::record_batch::build::{BatchSpec, batch};
use sluice_shard::{DmaStorage, LogConfig, Shard, ShardConfig, probe_dma_polling};

#[derive(clap::Args, Debug)]
pub struct StorageArgs {
    /// Total run time in seconds, split across the phases.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Directory on the disk to measure (not tmpfs). Removed afterwards.
    #[arg(long, default_value = "/var/tmp/sluice-bench-storage")]
    dir: PathBuf,
    /// Write the summary figures as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// CPU to pin the executor to.
    #[arg(long, default_value_t = 0)]
    cpu: usize,
}

const SIZES: [usize; 4] = [16 << 10, 64 << 10, 256 << 10, 1 << 20];
const REFERENCE_SIZE: usize = 256 << 10;
const RECORD_BYTES: usize = 1024;

#[derive(Debug, Clone, Default)]
struct Figures {
    size: usize,
    append_mb_s: f64,
    append_p50_us: u64,
    append_p99_us: u64,
    append_p999_us: u64,
    append_p9999_us: u64,
    raw_mb_s: f64,
    raw_p50_us: u64,
    raw_p99_us: u64,
    raw_p999_us: u64,
    raw_p9999_us: u64,
    /// Executor-thread CPU time per operation.
    append_cpu_us: u64,
    raw_cpu_us: u64,
}

fn make_batch(batch_bytes: usize) -> Bytes {
    // 1 KiB records: value sized so a record is about RECORD_BYTES on the wire.
    let value = vec![0xabu8; RECORD_BYTES - 8];
    let mut n = (batch_bytes - 61) / RECORD_BYTES;
    loop {
        let recs: Vec<sluice_net::record_batch::build::KeyValue<'_>> = (0..n.max(1))
            .map(|_| (None, Some(value.as_slice())))
            .collect();
        let b = batch(&BatchSpec::default(), &recs);
        if b.len() <= batch_bytes || n <= 1 {
            return b;
        }
        n -= 1;
    }
}

/// glommio errors are not `Sync`; go through `std::io::Error` to reach anyhow.
pub(crate) trait G<T> {
    fn g(self) -> anyhow::Result<T>;
}
impl<T> G<T> for Result<T, glommio::GlommioError<()>> {
    fn g(self) -> anyhow::Result<T> {
        self.map_err(|e| anyhow::Error::from(std::io::Error::from(e)))
    }
}

fn hist() -> Histogram<u64> {
    Histogram::new(3).expect("histogram")
}

/// CPU time of the calling thread, in microseconds.
fn thread_cpu_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the valid timespec we pass.
    unsafe {
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts);
    }
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}

fn mb_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

async fn append_phase(
    dir: &Path,
    size: usize,
    dur: Duration,
) -> anyhow::Result<(f64, Histogram<u64>, u64)> {
    let shard = Shard::open(DmaStorage, dir, ShardConfig::default()).await?;
    let p = shard
        .create_partition(&format!("bench{size}"), 0, LogConfig::default())
        .await?;
    let b = make_batch(size);
    let mut h = hist();
    let mut bytes = 0u64;
    let cpu0 = thread_cpu_us();
    let start = Instant::now();
    while start.elapsed() < dur {
        let t = Instant::now();
        p.append(b.clone()).await?;
        h.record(t.elapsed().as_micros() as u64)?;
        bytes += b.len() as u64;
    }
    let took = start.elapsed();
    let cpu = (thread_cpu_us() - cpu0) / h.len().max(1);
    shard.close().await?;
    Ok((mb_s(bytes, took), h, cpu))
}

/// Sequential O_DIRECT writes of `size` bytes for `dur`, each followed by fdatasync when `sync`
/// (the raw limit an appending log can reach); latencies in µs. With `keep` the file stays as
/// `raw-<size>.dat` for a read phase to use.
pub(crate) async fn raw_write_phase(
    dir: &Path,
    size: usize,
    dur: Duration,
    sync: bool,
    keep: bool,
) -> anyhow::Result<(f64, Histogram<u64>, u64)> {
    let path = dir.join(format!("raw-{size}.dat"));
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .dma_open(&path)
        .await
        .g()?;
    // Same write granularity as the log (the device's physical block), the best case.
    let align = sluice_shard::write_alignment(&f) as usize;
    let len = size.div_ceil(align) * align;
    let prealloc = 64u64 << 20;
    let mut allocated = 0u64;
    let mut pos = 0u64;
    let mut h = hist();
    let cpu0 = thread_cpu_us();
    let start = Instant::now();
    while start.elapsed() < dur {
        let t = Instant::now();
        if pos + len as u64 > allocated {
            allocated += prealloc.max(len as u64);
            f.pre_allocate(allocated, false).await.g()?;
        }
        let mut buf = f.alloc_dma_buffer(len);
        buf.as_bytes_mut().fill(0xab);
        f.write_at(buf, pos).await.g()?;
        if sync {
            f.fdatasync().await.g()?;
        }
        h.record(t.elapsed().as_micros() as u64)?;
        pos += len as u64;
    }
    let took = start.elapsed();
    let cpu = (thread_cpu_us() - cpu0) / h.len().max(1);
    f.close().await.g()?;
    if !keep {
        let _ = std::fs::remove_file(&path);
    }
    Ok((mb_s(pos, took), h, cpu))
}

async fn cold_read(dir: &Path, topic: &str, dur: Duration) -> anyhow::Result<(f64, u64)> {
    let shard = Shard::open(DmaStorage, dir, ShardConfig::default()).await?;
    let p = shard
        .create_partition(topic, 0, LogConfig::default())
        .await?;
    let o = p.offsets();
    let mut off = o.log_start_offset;
    let mut bytes = 0u64;
    let mut reads = 0u64;
    let cpu0 = thread_cpu_us();
    let start = Instant::now();
    while off < o.high_watermark && start.elapsed() < dur {
        reads += 1;
        let r = p.read(off, 1 << 20).await?;
        let Some(last) = r.batches.last() else { break };
        let base = i64::from_be_bytes(last[..8].try_into()?);
        let delta = i64::from(i32::from_be_bytes(last[23..27].try_into()?));
        off = base + delta + 1;
        bytes += r.batches.iter().map(|b| b.len() as u64).sum::<u64>();
    }
    let took = start.elapsed();
    eprintln!(
        "cold read: {reads} fetches, {} us CPU per fetch",
        (thread_cpu_us() - cpu0) / reads.max(1)
    );
    shard.close().await?;
    Ok((mb_s(bytes, took), bytes))
}

/// Sequential 1 MiB O_DIRECT reads of `path` (at most `limit` bytes) for up to `dur`.
pub(crate) async fn raw_read(path: &Path, limit: u64, dur: Duration) -> anyhow::Result<f64> {
    let f = DmaFile::open(path).await.g()?;
    let size = f.file_size().await.g()?.min(limit.max(1 << 20));
    let chunk = 1usize << 20;
    let mut pos = 0u64;
    let cpu0 = thread_cpu_us();
    let start = Instant::now();
    while pos < size && start.elapsed() < dur {
        let r = f.read_at_aligned(pos, chunk).await.g()?;
        if r.is_empty() {
            break;
        }
        pos += r.len() as u64;
    }
    let took = start.elapsed();
    eprintln!(
        "raw read: {} us CPU per 1 MiB read",
        (thread_cpu_us() - cpu0) / (pos >> 20).max(1)
    );
    f.close().await.g()?;
    Ok(mb_s(pos, took))
}

pub(crate) fn raise_memlock() {
    let lim = libc::rlimit {
        rlim_cur: 1 << 30,
        rlim_max: 1 << 30,
    };
    // SAFETY: setrlimit reads a valid, initialized struct. Failure (non-root) is reported by
    // glommio at executor start.
    unsafe {
        libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim);
    }
}

pub fn run(args: StorageArgs) -> anyhow::Result<()> {
    raise_memlock();
    let _ = std::fs::remove_dir_all(&args.dir);
    std::fs::create_dir_all(&args.dir).with_context(|| format!("create {}", args.dir.display()))?;
    let phases = SIZES.len() as u64 * 2 + 2;
    let phase = Duration::from_millis((args.seconds * 1000 / phases).max(200));
    let dir = args.dir.clone();
    let result = LocalExecutorBuilder::new(Placement::Fixed(args.cpu))
        .name("bench-storage")
        .spawn(move || async move {
            probe_dma_polling(&dir).await?;
            let mut rows = Vec::new();
            for size in SIZES {
                let (append_mb_s, ah, append_cpu_us) = append_phase(&dir, size, phase).await?;
                let (raw_mb_s, rh, raw_cpu_us) =
                    raw_write_phase(&dir, size, phase, true, false).await?;
                rows.push(Figures {
                    size,
                    append_mb_s,
                    append_p50_us: ah.value_at_quantile(0.5),
                    append_p99_us: ah.value_at_quantile(0.99),
                    append_p999_us: ah.value_at_quantile(0.999),
                    append_p9999_us: ah.value_at_quantile(0.9999),
                    raw_mb_s,
                    raw_p50_us: rh.value_at_quantile(0.5),
                    raw_p99_us: rh.value_at_quantile(0.99),
                    raw_p999_us: rh.value_at_quantile(0.999),
                    raw_p9999_us: rh.value_at_quantile(0.9999),
                    append_cpu_us,
                    raw_cpu_us,
                });
            }
            let topic = format!("bench{}", 1 << 20);
            let (read_mb_s, read_bytes) = cold_read(&dir, &topic, phase).await?;
            let seg = dir
                .join(format!("{topic}-0"))
                .join(format!("{:020}.log", 0));
            let raw_read_mb_s = raw_read(&seg, read_bytes, phase).await?;
            anyhow::Ok((rows, read_mb_s, raw_read_mb_s, read_bytes))
        })
        .map_err(|e| anyhow::anyhow!("executor start failed: {e}"))?
        .join()
        .map_err(|e| anyhow::anyhow!("executor failed: {e}"))??;
    let (rows, read_mb_s, raw_read_mb_s, read_bytes) = result;
    let _ = std::fs::remove_dir_all(&args.dir);

    println!(
        "{:>8} | {:>10} {:>7} {:>7} {:>8} {:>9} | {:>10} {:>7} {:>7} {:>8} {:>9} | {:>5} | cpu us/op append/raw",
        "batch",
        "append MB/s",
        "p50us",
        "p99us",
        "p99.9us",
        "p99.99us",
        "raw MB/s",
        "p50us",
        "p99us",
        "p99.9us",
        "p99.99us",
        "ratio",
    );
    for r in &rows {
        println!(
            "{:>7}K | {:>11.1} {:>7} {:>7} {:>8} {:>9} | {:>10.1} {:>7} {:>7} {:>8} {:>9} | {:>5.2} | {}/{}",
            r.size >> 10,
            r.append_mb_s,
            r.append_p50_us,
            r.append_p99_us,
            r.append_p999_us,
            r.append_p9999_us,
            r.raw_mb_s,
            r.raw_p50_us,
            r.raw_p99_us,
            r.raw_p999_us,
            r.raw_p9999_us,
            r.append_mb_s / r.raw_mb_s,
            r.append_cpu_us,
            r.raw_cpu_us
        );
    }
    println!(
        "cold read: {read_mb_s:.1} MB/s vs raw O_DIRECT {raw_read_mb_s:.1} MB/s (ratio {:.2}) over {} MiB",
        read_mb_s / raw_read_mb_s,
        read_bytes >> 20
    );
    let reference = rows
        .iter()
        .find(|r| r.size == REFERENCE_SIZE)
        .cloned()
        .unwrap_or_default();
    if let Some(path) = args.json {
        let j = serde_json::json!({
            "append_mb_s": reference.append_mb_s,
            "raw_write_mb_s": reference.raw_mb_s,
            "append_ratio": reference.append_mb_s / reference.raw_mb_s,
            "append_p99_99_us": reference.append_p9999_us,
            "raw_fsync_p99_99_us": reference.raw_p9999_us,
            "read_mb_s": read_mb_s,
            "raw_read_mb_s": raw_read_mb_s,
            "read_ratio": read_mb_s / raw_read_mb_s,
            "batch_bytes": REFERENCE_SIZE,
            "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        });
        std::fs::write(&path, serde_json::to_string_pretty(&j)?)
            .with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}
