//! `sluice-bench compare`: the machine's raw limits and a broker's figures in one run, each
//! broker figure printed as a ratio of the raw limit it is bounded by.
//!
//! Order: `disk` (before any broker runs, on the device of the data dir), `loopback`, then the
//! workload against a broker: max-throughput produce (acks from the workload, default all),
//! a hot consume of everything just produced (from the earliest offset until the end offsets
//! seen at its start), and a constant-rate produce at half the measured max rate (the latency
//! figure the goals name). Without `--bootstrap` it starts the release `sluice` next to this
//! binary on a free loopback port with a temp data dir and stops it by PID.
//!
//! Ratios: produce MB/s over raw write+fdatasync MB/s at 1 MiB; consume MB/s over loopback
//! MB/s; produce p99.99 at half rate over raw fdatasync p99.99 at the write size nearest the
//! workload's batch size. Broker throughput counts record values (payload) only, so a ratio
//! of 1.0 would mean the broker's framing and batch headers cost nothing.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;

use crate::load::{self, Pinning, StartAt};
use crate::raw;
use crate::report;
use crate::workload::WorkloadArgs;

#[derive(clap::Args, Debug, Clone)]
pub struct CompareArgs {
    /// Seconds per broker phase; disk takes about this long in all, loopback half.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Measure this already-running Kafka-API broker instead of starting sluice.
    #[arg(long)]
    pub bootstrap: Option<String>,
    /// Name of the broker in the output (default: sluice, or the bootstrap).
    #[arg(long)]
    pub label: Option<String>,
    /// Cores for the started sluice (default: half the machine's when it has 4 or more, so
    /// clients get the other half; else all, shared with the clients).
    #[arg(long)]
    pub broker_cores: Option<usize>,
    /// Directory on the disk under test: raw disk scratch files and the started broker's data.
    #[arg(long, default_value = "/var/tmp")]
    pub dir: PathBuf,
    /// Path of the `sluice` binary (default: next to this one).
    #[arg(long)]
    pub sluice_bin: Option<PathBuf>,
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// HdrHistogram percentile text of the half-rate produce latency.
    #[arg(long)]
    pub hgrm: Option<PathBuf>,
    /// SVG latency percentile plot of the broker phases.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    #[command(flatten)]
    pub workload: WorkloadArgs,
}

/// A sluice started for the run; stopped by PID (SIGTERM, then SIGKILL) when dropped.
struct Started {
    child: Child,
    dir: PathBuf,
    addr: String,
}

impl Started {
    fn start(
        bin: &std::path::Path,
        parent: &std::path::Path,
        cores: usize,
    ) -> anyhow::Result<Started> {
        if !bin.exists() {
            bail!(
                "no sluice binary at {} (build it: cargo build --release --bins, or pass --sluice-bin / --bootstrap)",
                bin.display()
            );
        }
        let dir = parent.join(format!("sluice-bench-broker-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut child = Command::new(bin)
            .arg("start")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--cores")
            .arg(cores.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("spawn {}", bin.display()))?;
        let stdout = child.stdout.take().context("broker stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("sluice: listening on ") {
                    let _ = tx.send(
                        rest.split_whitespace()
                            .next()
                            .unwrap_or_default()
                            .to_owned(),
                    );
                }
            }
        });
        let mut s = Started {
            child,
            dir,
            addr: String::new(),
        };
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => s.addr = a,
            Err(_) => bail!("sluice did not report listening within 30 s"),
        }
        Ok(s)
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill on our own child's PID, which we have not reaped yet.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn run(a: CompareArgs) -> anyhow::Result<()> {
    let w = a.workload.resolve()?;
    let cpus = report::cpus();
    let n = cpus.len().max(1);
    let external = a.bootstrap.is_some();
    let broker_cores = if external {
        0
    } else {
        a.broker_cores
            .unwrap_or(if n >= 4 { n / 2 } else { n })
            .clamp(1, n)
    };
    // The broker pins its executors to the first `broker_cores` CPUs; clients get the rest.
    let pin = if !external && broker_cores < n {
        Pinning {
            cpus: cpus[broker_cores..].to_vec(),
        }
    } else {
        Pinning::default()
    };
    let client_cores = if pin.cpus.is_empty() {
        n
    } else {
        pin.cpus.len()
    };
    let cores_line = format!(
        "cores: machine {n}, broker {}, client {client_cores} ({})",
        if external {
            "external (not pinned by us)".to_owned()
        } else {
            broker_cores.to_string()
        },
        pin.describe()
    );
    println!("{cores_line}");

    let disk = raw::disk(&a.dir, a.seconds, *cpus.last().unwrap_or(&0))?;
    disk.print();
    let lo = raw::loopback(a.seconds / 2.0)?;
    lo.print();

    let started = if external {
        None
    } else {
        let bin = match &a.sluice_bin {
            Some(b) => b.clone(),
            None => std::env::current_exe()?.with_file_name("sluice"),
        };
        Some(Started::start(&bin, &a.dir, broker_cores)?)
    };
    let bootstrap = match (&a.bootstrap, &started) {
        (Some(b), _) => b.clone(),
        (None, Some(s)) => s.addr.clone(),
        (None, None) => unreachable!("started when no bootstrap"),
    };
    let label = a.label.clone().unwrap_or_else(|| {
        if external {
            bootstrap.clone()
        } else {
            "sluice".to_owned()
        }
    });
    let addr = crate::kafka::resolve(&bootstrap)?;
    let topic = a.workload.topic();
    crate::kafka::create_topic(addr, &topic, w.partitions, &[])?;
    println!(
        "broker {label} at {bootstrap}, topic {topic}, workload {} ({} partitions, {}p/{}c, {} B records, acks {})",
        w.name, w.partitions, w.producers, w.consumers, w.record_bytes, w.acks
    );

    let produced = load::produce_phase(addr, &topic, &w, a.seconds, None, &pin)?;
    let consumed = load::consume_phase(addr, &topic, &w, a.seconds, StartAt::Earliest, true, &pin)?;
    let half_rate = (produced.records_s / 2.0).max(1.0);
    let paced = load::produce_phase(addr, &topic, &w, a.seconds, Some(half_rate), &pin)?;
    drop(started);

    let raw_fsync_1m = disk.fsync_at(1 << 20).map_or(0.0, |r| r.mb_s);
    let reference = disk.fsync_near(w.batch_bytes).cloned();
    let raw_p9999 = reference.as_ref().map_or(0, |r| r.latency.p99_99_us);
    let produce_ratio = produced.mb_s / raw_fsync_1m.max(1e-9);
    let consume_ratio = consumed.mb_s / lo.mb_s.max(1e-9);
    let latency_ratio = paced.latency.p99_99_us as f64 / raw_p9999.max(1) as f64;

    println!();
    load::print_table_header();
    for p in [&produced, &consumed, &paced] {
        p.print();
    }
    println!();
    println!("ratios to this machine's raw limits, measured in the same run:");
    println!(
        "  produce  {:>8.1} MB/s / raw write+fdatasync 1 MiB {:>8.1} MB/s = {produce_ratio:.2}  (goal >= 0.6)",
        produced.mb_s, raw_fsync_1m
    );
    println!(
        "  consume  {:>8.1} MB/s / loopback {:>8.1} MB/s = {consume_ratio:.2}  (goal >= 0.7)",
        consumed.mb_s, lo.mb_s
    );
    println!(
        "  produce p99.99 at half max rate {:.3} ms / raw fdatasync p99.99 at {} KiB {:.3} ms = {latency_ratio:.2}  (goal <= 3)",
        paced.latency.p99_99_us as f64 / 1000.0,
        reference.as_ref().map_or(0, |r| r.bytes >> 10),
        raw_p9999 as f64 / 1000.0
    );
    println!("{cores_line}");

    let phases = vec![produced.clone(), consumed.clone(), paced.clone()];
    if let Some(path) = &a.hgrm
        && let Some(h) = &paced.histogram
    {
        std::fs::write(path, crate::stats::hgrm(h))
            .with_context(|| format!("write {}", path.display()))?;
    }
    let j = json!({
        "command": "compare",
        "broker": label,
        "bootstrap": bootstrap,
        "date": report::date_utc(),
        "commit": report::commit(),
        "machine": report::machine(),
        "cores": {
            "machine": n,
            "broker": if external { serde_json::Value::Null } else { json!(broker_cores) },
            "client": client_cores,
            "client_pinned_cpus": pin.cpus,
        },
        "seconds": a.seconds,
        "workload": w,
        "produce_mb_s": produced.mb_s,
        "produce_records_s": produced.records_s,
        "produce_max_rate_p99_us": produced.latency.p99_us,
        "produce_max_rate_p99_99_us": produced.latency.p99_99_us,
        "consume_mb_s": consumed.mb_s,
        "consume_records_s": consumed.records_s,
        "produce_half_rate_records_s": half_rate,
        "produce_p50_us": paced.latency.p50_us,
        "produce_p90_us": paced.latency.p90_us,
        "produce_p99_us": paced.latency.p99_us,
        "produce_p99_9_us": paced.latency.p99_9_us,
        "produce_p99_99_us": paced.latency.p99_99_us,
        "produce_max_us": paced.latency.max_us,
        "errors": produced.errors + consumed.errors + paced.errors,
        "raw_fsync_write_mb_s": raw_fsync_1m,
        "raw_seq_write_mb_s": disk.seq_write_mb_s,
        "raw_read_mb_s": disk.read_mb_s,
        "raw_fsync_p99_99_us": raw_p9999,
        "raw_fsync_ref_bytes": reference.as_ref().map_or(0, |r| r.bytes),
        "loopback_mb_s": lo.mb_s,
        "loopback_rtt_p99_99_us": lo.rtt_p99_99_us,
        "produce_ratio": produce_ratio,
        "consume_ratio": consume_ratio,
        "produce_p99_99_ratio": latency_ratio,
        "disk": disk,
        "loopback": lo,
        "phases": phases,
    });
    if let Some(path) = &a.json {
        std::fs::write(path, serde_json::to_string_pretty(&j)?)
            .with_context(|| format!("write {}", path.display()))?;
    }
    if let Some(path) = &a.plot {
        let series = crate::plot::series_of(&j, &label);
        std::fs::write(path, crate::plot::svg(&series))
            .with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}
