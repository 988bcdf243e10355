//! The machine's raw limits, measured in the same run as the broker so ratios hold on a noisy
//! machine.
//!
//! `disk`: on the device of the given directory, through glommio's io_uring DMA files on one
//! pinned core (the I/O path the broker uses): sequential 1 MiB O_DIRECT writes without sync,
//! sequential O_DIRECT writes each followed by fdatasync at 4 KiB … 1 MiB (the bound for a log
//! that acknowledges only synced records), and sequential 1 MiB O_DIRECT reads. The write
//! phases are `storage.rs`'s, reused.
//!
//! `loopback`: TCP over 127.0.0.1 between two threads pinned to two cores: one-way bandwidth
//! with 1 MiB writes, then round-trip latency of a 64-byte ping-pong.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use glommio::{LocalExecutorBuilder, Placement};
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::stats::Percentiles;
use crate::storage::{raise_memlock, raw_read, raw_write_phase};

pub const FSYNC_SIZES: [usize; 5] = [4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20];

#[derive(Debug, Clone, Serialize)]
pub struct FsyncRow {
    pub bytes: usize,
    pub mb_s: f64,
    pub latency: Percentiles,
}

#[derive(Debug, Clone, Serialize)]
pub struct DiskResult {
    pub dir: PathBuf,
    pub seq_write_mb_s: f64,
    pub fsync: Vec<FsyncRow>,
    pub read_mb_s: f64,
}

impl DiskResult {
    /// The write+fdatasync row nearest `bytes` (by ratio).
    pub fn fsync_near(&self, bytes: usize) -> Option<&FsyncRow> {
        self.fsync.iter().min_by(|a, b| {
            let d = |r: &FsyncRow| (r.bytes as f64 / bytes.max(1) as f64).ln().abs();
            d(a).total_cmp(&d(b))
        })
    }

    pub fn fsync_at(&self, bytes: usize) -> Option<&FsyncRow> {
        self.fsync.iter().find(|r| r.bytes == bytes)
    }

    pub fn print(&self) {
        println!("disk ({}):", self.dir.display());
        println!(
            "  O_DIRECT sequential write 1 MiB, no sync: {:>8.1} MB/s",
            self.seq_write_mb_s
        );
        println!(
            "  O_DIRECT sequential read 1 MiB:           {:>8.1} MB/s",
            self.read_mb_s
        );
        println!("  write + fdatasync   MB/s | {}", Percentiles::HEADER);
        for r in &self.fsync {
            println!(
                "  {:>7} KiB {:>9.1} | {}",
                r.bytes >> 10,
                r.mb_s,
                r.latency.row()
            );
        }
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct DiskArgs {
    /// Total seconds, split over the phases.
    #[arg(long, default_value_t = 7.0)]
    pub seconds: f64,
    /// A directory on the disk to measure (not tmpfs); a scratch subdirectory is made and removed.
    #[arg(long, default_value = "/var/tmp")]
    pub dir: PathBuf,
    /// CPU for the I/O executor.
    #[arg(long, default_value_t = 0)]
    pub cpu: usize,
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Measures the raw disk limits under `dir`.
pub fn disk(dir: &Path, seconds: f64, cpu: usize) -> anyhow::Result<DiskResult> {
    raise_memlock();
    let scratch = dir.join(format!("sluice-bench-disk-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).with_context(|| format!("create {}", scratch.display()))?;
    let phases = FSYNC_SIZES.len() + 2;
    let phase = Duration::from_secs_f64((seconds / phases as f64).max(0.25));
    let d = scratch.clone();
    let r = LocalExecutorBuilder::new(Placement::Fixed(cpu))
        .name("bench-disk")
        .spawn(move || async move {
            // The executor's first DMA file must be a non-empty one, or glommio's polled-I/O
            // probe wrongly succeeds and every later O_DIRECT read fails (DESIGN.md).
            sluice_shard::probe_dma_polling(&d).await?;
            // The sequential write leaves its file for the read phase, which goes next (the
            // 1 MiB fsync phase reuses the file name).
            let (seq_write_mb_s, _, _) = raw_write_phase(&d, 1 << 20, phase, false, true).await?;
            let file = d.join(format!("raw-{}.dat", 1 << 20));
            let read_mb_s = raw_read(&file, u64::MAX, phase).await?;
            std::fs::remove_file(&file)?;
            let mut fsync = Vec::new();
            for size in FSYNC_SIZES {
                let (mb_s, h, _) = raw_write_phase(&d, size, phase, true, false).await?;
                fsync.push(FsyncRow {
                    bytes: size,
                    mb_s,
                    latency: Percentiles::of(&h),
                });
            }
            anyhow::Ok((seq_write_mb_s, fsync, read_mb_s))
        })
        .map_err(|e| anyhow::anyhow!("disk executor start failed: {e}"))?
        .join()
        .map_err(|e| anyhow::anyhow!("disk executor failed: {e}"))?;
    let _ = std::fs::remove_dir_all(&scratch);
    let (seq_write_mb_s, fsync, read_mb_s) = r?;
    Ok(DiskResult {
        dir: dir.to_owned(),
        seq_write_mb_s,
        fsync,
        read_mb_s,
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct LoopbackResult {
    pub mb_s: f64,
    pub rtt_p50_us: f64,
    pub rtt_p99_us: f64,
    pub rtt_p99_9_us: f64,
    pub rtt_p99_99_us: f64,
    pub rtt_max_us: f64,
    pub cpus: (usize, usize),
}

impl LoopbackResult {
    pub fn print(&self) {
        println!(
            "loopback (cpus {} -> {}): {:.1} MB/s one way; 64 B round trip p50 {:.1} us p99 {:.1} us p99.9 {:.1} us p99.99 {:.1} us max {:.1} us",
            self.cpus.0,
            self.cpus.1,
            self.mb_s,
            self.rtt_p50_us,
            self.rtt_p99_us,
            self.rtt_p99_9_us,
            self.rtt_p99_99_us,
            self.rtt_max_us
        );
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct LoopbackArgs {
    /// Total seconds, half bandwidth, half round trips.
    #[arg(long, default_value_t = 4.0)]
    pub seconds: f64,
    #[arg(long)]
    pub json: Option<PathBuf>,
}

fn pin(cpu: usize) {
    let _ = core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
}

/// Two CPUs to pin the two ends to: the first two this process may use (one if only one).
pub fn two_cpus() -> (usize, usize) {
    let ids: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    match ids.as_slice() {
        [] => (0, 0),
        [a] => (*a, *a),
        [a, b, ..] => (*a, *b),
    }
}

pub fn loopback(seconds: f64) -> anyhow::Result<LoopbackResult> {
    let (ca, cb) = two_cpus();
    let all_cpus = crate::report::cpus();
    let half = Duration::from_secs_f64((seconds / 2.0).max(0.25));

    // Bandwidth: the sender writes 1 MiB buffers until time is up, then closes; the receiver
    // counts bytes until EOF.
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let receiver = std::thread::spawn(move || -> anyhow::Result<(u64, Instant)> {
        pin(cb);
        let (mut s, _) = listener.accept()?;
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0u64;
        loop {
            let k = s.read(&mut buf)?;
            if k == 0 {
                return Ok((n, Instant::now()));
            }
            n += k as u64;
        }
    });
    pin(ca);
    let mut s = TcpStream::connect(addr)?;
    let buf = vec![0x5au8; 1 << 20];
    let start = Instant::now();
    while start.elapsed() < half {
        s.write_all(&buf)?;
    }
    drop(s);
    let (bytes, end) = receiver
        .join()
        .map_err(|_| anyhow::anyhow!("receiver panicked"))??;
    let mb_s = bytes as f64 / (end - start).as_secs_f64() / 1e6;

    // Round trips: 64 bytes there and back, one at a time.
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let echo = std::thread::spawn(move || -> anyhow::Result<()> {
        pin(cb);
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut b = [0u8; 64];
        loop {
            if s.read_exact(&mut b).is_err() {
                return Ok(());
            }
            s.write_all(&b)?;
        }
    });
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    let mut b = [7u8; 64];
    let start = Instant::now();
    while start.elapsed() < half {
        let t = Instant::now();
        s.write_all(&b)?;
        s.read_exact(&mut b)?;
        h.saturating_record(t.elapsed().as_nanos() as u64);
    }
    drop(s);
    echo.join()
        .map_err(|_| anyhow::anyhow!("echo panicked"))??;
    unpin(&all_cpus);
    let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    Ok(LoopbackResult {
        mb_s,
        rtt_p50_us: us(0.5),
        rtt_p99_us: us(0.99),
        rtt_p99_9_us: us(0.999),
        rtt_p99_99_us: us(0.9999),
        rtt_max_us: h.max() as f64 / 1000.0,
        cpus: (ca, cb),
    })
}

/// Lets the calling thread run on `cpus` again (the loopback sender pinned it; read the list
/// before pinning, since the affinity mask is what later reads of it return).
fn unpin(cpus: &[usize]) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes bits inside it, and
    // sched_setaffinity reads the set we pass for the calling thread (pid 0).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in cpus.iter().filter(|&&c| c < libc::CPU_SETSIZE as usize) {
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}
