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
//!
//! With `--peer kafka` the same phases also run against the reference Kafka of
//! `tests/kafka-ref` (defaults, and with `log.flush.interval.messages=1`), one table of
//! sluice/Kafka ratios: see `peer.rs`. This file holds what both modes share (arguments, cores,
//! raw limits) and the one-broker mode.
//!
//! With `--cluster N` (N = 3 for the workload) each broker is a cluster: sluice as N
//! combined broker+controller nodes (README "Run a cluster"), Kafka as `tests/kafka-ref`'s
//! `start-cluster`; the topic gets replication factor min(N, 3) (or `--replication-factor`) and
//! min.insync.replicas=2, and the load goes to each partition's leader. sluice pins each data
//! core to a CPU of its process's affinity mask (the first ones), so the nodes are started
//! under `taskset` on CPUs taken in turn from the brokers' share (`Cores::nodes`): on this
//! 2-core machine node 1 on CPU 0, node 2 on CPU 1, node 3 on CPU 0; left alone, all three
//! would pin their core to CPU 0. Kafka's JVMs pin nothing; they get the same share.

use std::path::PathBuf;

use anyhow::Context;
use serde::Serialize;
use serde_json::json;

use crate::broker::{self, Running};
use crate::kafka::{self, Bootstrap};
use crate::load::{self, PhaseResult, Pinning, StartAt};
use crate::raw::{self, DiskResult, LoopbackResult};
use crate::report;
use crate::workload::{Workload, WorkloadArgs};

/// The broker `--peer` compares sluice with.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// Apache Kafka 4.4 from tests/kafka-ref: with its defaults, then with
    /// log.flush.interval.messages=1 (an fsync per append).
    Kafka,
}

#[derive(clap::Args, Debug, Clone)]
pub struct CompareArgs {
    /// Seconds per broker phase; disk takes about this long in all, loopback half.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Measure this already-running Kafka-API broker instead of starting sluice.
    #[arg(long, conflicts_with = "peer")]
    pub bootstrap: Option<String>,
    /// Name of the broker in the output (default: sluice, or the bootstrap).
    #[arg(long)]
    pub label: Option<String>,
    /// Also start this broker (twice: defaults, then an fsync per append) and run the same
    /// phases against it; prints one table of sluice/peer ratios.
    #[arg(long, value_enum)]
    pub peer: Option<Peer>,
    /// The tests/kafka-ref directory for --peer kafka (default: found above this binary or
    /// the current directory).
    #[arg(long)]
    pub kafka_ref: Option<PathBuf>,
    /// Records/s of the end-to-end phase of --peer (producer send time to consumer receipt).
    #[arg(long, default_value_t = 20_000.0)]
    pub e2e_rate: f64,
    /// With --peer: seconds of produce at --e2e-rate to a separate topic after each broker
    /// start, before anything is measured (a fresh JVM runs interpreted code at first); 0: none.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Cores for the started sluice (default: half the machine's when it has 4 or more, so
    /// clients get the other half; else all, shared with the clients). With --cluster: for all
    /// its nodes together, split between them (each node at least 1).
    #[arg(long)]
    pub broker_cores: Option<usize>,
    /// Start clusters of this many nodes instead of single brokers (sluice, and Kafka with
    /// --peer kafka: 3 nodes); the topic gets replication factor min(N, 3) and, with 3 replicas,
    /// min.insync.replicas=2.
    #[arg(long, conflicts_with = "bootstrap", value_parser = clap::value_parser!(u16).range(1..))]
    pub cluster: Option<u16>,
    /// Directory on the disk under test: raw disk scratch files and the started broker's data.
    #[arg(long, default_value = "/var/tmp")]
    pub dir: PathBuf,
    /// Path of the `sluice` binary (default: next to this one).
    #[arg(long)]
    pub sluice_bin: Option<PathBuf>,
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// HdrHistogram percentile text of the half-rate produce latency (sluice's, with --peer).
    #[arg(long)]
    pub hgrm: Option<PathBuf>,
    /// SVG latency percentile plot of the broker phases (with --peer: every broker's
    /// constant-rate produce and end-to-end curves).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    #[command(flatten)]
    pub workload: WorkloadArgs,
}

/// How the run uses the machine's cores: the started broker gets the first `broker` CPUs,
/// the client threads are pinned to the rest (not pinned when the broker has them all).
#[derive(Debug, Clone)]
pub struct Cores {
    pub machine: usize,
    /// `None`: an external broker (`--bootstrap`), not ours to place.
    pub broker: Option<usize>,
    pub broker_cpus: Vec<usize>,
    /// With `--cluster`: each sluice node's CPUs (its `taskset` list; `--cores` is their count).
    pub nodes: Vec<Vec<usize>>,
    pub pin: Pinning,
    pub client: usize,
}

/// Splits `cpus` between `nodes` nodes: each gets `max(1, cpus / nodes)` of them, taken in turn
/// (wrapping), so that with fewer CPUs than nodes they share them round-robin.
pub fn node_cpus(cpus: &[usize], nodes: usize) -> Vec<Vec<usize>> {
    if cpus.is_empty() {
        return vec![Vec::new(); nodes];
    }
    let per = (cpus.len() / nodes.max(1)).max(1);
    (0..nodes)
        .map(|i| (0..per).map(|j| cpus[(i * per + j) % cpus.len()]).collect())
        .collect()
}

impl Cores {
    pub fn of(a: &CompareArgs) -> Cores {
        let cpus = report::cpus();
        let n = cpus.len().max(1);
        let broker = a.bootstrap.is_none().then(|| {
            a.broker_cores
                .unwrap_or(if n >= 4 { n / 2 } else { n })
                .clamp(1, n)
        });
        // The broker pins its executors to the first `broker` CPUs; clients get the rest.
        let (broker_cpus, pin) = match broker {
            Some(b) if b < cpus.len() => (
                cpus[..b].to_vec(),
                Pinning {
                    cpus: cpus[b..].to_vec(),
                },
            ),
            _ => (Vec::new(), Pinning::default()),
        };
        let client = if pin.cpus.is_empty() {
            n
        } else {
            pin.cpus.len()
        };
        let nodes = match (a.cluster, broker) {
            (Some(k), Some(b)) => node_cpus(&cpus[..b.min(cpus.len())], usize::from(k)),
            _ => Vec::new(),
        };
        Cores {
            machine: n,
            broker,
            broker_cpus,
            nodes,
            pin,
            client,
        }
    }

    pub fn line(&self) -> String {
        let broker = self
            .broker
            .map_or("external (not pinned by us)".to_owned(), |b| b.to_string());
        let mut line = format!(
            "cores: machine {}, broker {broker}, client {} ({})",
            self.machine,
            self.client,
            self.pin.describe()
        );
        if !self.nodes.is_empty() {
            let nodes: Vec<String> = (self.nodes.iter().enumerate())
                .map(|(i, c)| format!("node {} --cores {} on cpus {c:?}", i + 1, c.len()))
                .collect();
            let kafka = match self.broker_cpus.as_slice() {
                [] => "not pinned".to_owned(),
                c => format!("under taskset -c {c:?}"),
            };
            line.push_str(&format!(
                "; sluice cluster: {} (taskset); Kafka cluster JVMs: {kafka}",
                nodes.join(", ")
            ));
        }
        line
    }

    pub fn json(&self) -> serde_json::Value {
        json!({
            "machine": self.machine,
            "broker": self.broker,
            "client": self.client,
            "client_pinned_cpus": self.pin.cpus,
            "cluster_node_cpus": self.nodes,
        })
    }
}

/// The raw limits broker figures are divided by.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Raw {
    /// O_DIRECT write + fdatasync of 1 MiB, MB/s.
    pub fsync_write_mb_s: f64,
    /// fdatasync p99.99 at the write size nearest the workload's batch, µs.
    pub fsync_p99_99_us: u64,
    /// That write size.
    pub fsync_ref_bytes: usize,
    pub loopback_mb_s: f64,
}

impl Raw {
    pub fn of(disk: &DiskResult, lo: &LoopbackResult, batch_bytes: usize) -> Raw {
        let reference = disk.fsync_near(batch_bytes);
        Raw {
            fsync_write_mb_s: disk.fsync_at(1 << 20).map_or(0.0, |r| r.mb_s),
            fsync_p99_99_us: reference.map_or(0, |r| r.latency.p99_99_us),
            fsync_ref_bytes: reference.map_or(0, |r| r.bytes),
            loopback_mb_s: lo.mb_s,
        }
    }
}

/// Disk (on `--dir`, on the last CPU), then loopback; both printed.
pub fn raw_limits(a: &CompareArgs) -> anyhow::Result<(DiskResult, LoopbackResult)> {
    let cpu = *report::cpus().last().unwrap_or(&0);
    let disk = raw::disk(&a.dir, a.seconds, cpu)?;
    disk.print();
    let lo = raw::loopback(a.seconds / 2.0)?;
    lo.print();
    Ok((disk, lo))
}

/// The `sluice` binary to start: `--sluice-bin`, else the one next to this binary.
pub fn sluice_bin(a: &CompareArgs) -> anyhow::Result<PathBuf> {
    match &a.sluice_bin {
        Some(b) => Ok(b.clone()),
        None => Ok(std::env::current_exe()?.with_file_name("sluice")),
    }
}

/// Writes `text()` to `path` when one was asked for.
pub fn write_out(
    path: Option<&PathBuf>,
    text: impl FnOnce() -> anyhow::Result<String>,
) -> anyhow::Result<()> {
    if let Some(path) = path {
        std::fs::write(path, text()?).with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}

/// The workload of the run: `--workload` and its overrides; with `--cluster N` and no
/// `--replication-factor`, replication factor min(N, 3).
pub fn workload(a: &CompareArgs) -> anyhow::Result<Workload> {
    let mut w = a.workload.resolve()?;
    if let (Some(n), None) = (a.cluster, a.workload.replication_factor) {
        w.replication_factor = n.min(3) as i16;
    }
    Ok(w)
}

pub fn describe(w: &Workload) -> String {
    let min_isr = if w.replication_factor >= 3 {
        ", min.insync.replicas 2"
    } else {
        ""
    };
    format!(
        "workload {} ({} partitions, RF {}{min_isr}, {}p/{}c, {} B records, acks {})",
        w.name,
        w.partitions,
        w.replication_factor,
        w.producers,
        w.consumers,
        w.record_bytes,
        w.acks
    )
}

/// One broker's three phases: max produce, hot consume, produce at half the max rate.
struct Single {
    produced: PhaseResult,
    consumed: PhaseResult,
    paced: PhaseResult,
    half_rate: f64,
}

fn measure(
    boot: &Bootstrap,
    topic: &str,
    w: &Workload,
    seconds: f64,
    pin: &Pinning,
) -> anyhow::Result<Single> {
    let produced = load::produce_phase(boot, topic, w, seconds, None, pin)?;
    let consumed = load::consume_phase(boot, topic, w, seconds, StartAt::Earliest, true, pin)?;
    let half_rate = (produced.records_s / 2.0).max(1.0);
    let paced = load::produce_phase(boot, topic, w, seconds, Some(half_rate), pin)?;
    Ok(Single {
        produced,
        consumed,
        paced,
        half_rate,
    })
}

/// Starts the sluice of the run: a single broker on `cores.broker` cores, or with `--cluster`
/// a cluster of `cores.nodes`.
pub fn start_sluice(a: &CompareArgs, cores: &Cores) -> anyhow::Result<Running> {
    let bin = sluice_bin(a)?;
    Ok(if cores.nodes.is_empty() {
        let n = cores.broker.unwrap_or(1);
        Running::Sluice(broker::Sluice::start(&bin, &a.dir, n)?)
    } else {
        Running::SluiceCluster(broker::SluiceCluster::start(&bin, &a.dir, &cores.nodes)?)
    })
}

/// The one-broker mode: raw limits, then sluice (started here, a cluster with `--cluster`) or
/// `--bootstrap`.
pub fn run(a: CompareArgs) -> anyhow::Result<()> {
    let w = workload(&a)?;
    let cores = Cores::of(&a);
    println!("{}", cores.line());
    let (disk, lo) = raw_limits(&a)?;
    let started = match (&a.bootstrap, cores.broker) {
        (None, Some(_)) => Some(start_sluice(&a, &cores)?),
        _ => None,
    };
    let bootstrap = match (&a.bootstrap, &started) {
        (Some(b), _) => b.clone(),
        (None, Some(s)) => s.addr().to_owned(),
        (None, None) => anyhow::bail!("no broker: neither --bootstrap nor a started sluice"),
    };
    let label = a.label.clone().unwrap_or_else(|| match &a.bootstrap {
        Some(b) => b.clone(),
        None => match a.cluster {
            Some(n) => format!("sluice ({n}-node cluster)"),
            None => "sluice".to_owned(),
        },
    });
    let boot = Bootstrap::parse(&bootstrap)?;
    let topic = a.workload.topic();
    kafka::create_topic(&boot, &topic, w.partitions, w.replication_factor)?;
    kafka::wait_writable(&boot, &topic, w.partitions)?;
    println!(
        "broker {label} at {bootstrap}, topic {topic}, {}",
        describe(&w)
    );
    let s = measure(&boot, &topic, &w, a.seconds, &cores.pin)?;
    drop(started);

    let raw = Raw::of(&disk, &lo, w.batch_bytes);
    println!();
    load::print_table_header();
    for p in [&s.produced, &s.consumed, &s.paced] {
        p.print();
    }
    print_ratios(&s, &raw);
    println!("{}", cores.line());

    write_out(a.hgrm.as_ref(), || {
        Ok(s.paced
            .histogram
            .as_ref()
            .map(crate::stats::hgrm)
            .unwrap_or_default())
    })?;
    let j = single_json(&a, &w, &cores, (&label, &bootstrap), &s, (&disk, &lo, &raw));
    write_out(a.json.as_ref(), || Ok(serde_json::to_string_pretty(&j)?))?;
    write_out(a.plot.as_ref(), || {
        Ok(crate::plot::svg(&crate::plot::series_of(&j, &label)))
    })
}

fn print_ratios(s: &Single, raw: &Raw) {
    let produce_ratio = s.produced.mb_s / raw.fsync_write_mb_s.max(1e-9);
    let consume_ratio = s.consumed.mb_s / raw.loopback_mb_s.max(1e-9);
    let latency_ratio = s.paced.latency.p99_99_us as f64 / raw.fsync_p99_99_us.max(1) as f64;
    println!();
    println!("ratios to this machine's raw limits, measured in the same run:");
    println!(
        "  produce  {:>8.1} MB/s / raw write+fdatasync 1 MiB {:>8.1} MB/s = {produce_ratio:.2}  \
         (goal >= 0.6)",
        s.produced.mb_s, raw.fsync_write_mb_s
    );
    println!(
        "  consume  {:>8.1} MB/s / loopback {:>8.1} MB/s = {consume_ratio:.2}  (goal >= 0.7)",
        s.consumed.mb_s, raw.loopback_mb_s
    );
    println!(
        "  produce p99.99 at half max rate {:.3} ms / raw fdatasync p99.99 at {} KiB {:.3} ms \
         = {latency_ratio:.2}  (goal <= 3)",
        s.paced.latency.p99_99_us as f64 / 1000.0,
        raw.fsync_ref_bytes >> 10,
        raw.fsync_p99_99_us as f64 / 1000.0
    );
}

fn single_json(
    a: &CompareArgs,
    w: &Workload,
    cores: &Cores,
    (label, bootstrap): (&str, &str),
    s: &Single,
    (disk, lo, raw): (&DiskResult, &LoopbackResult, &Raw),
) -> serde_json::Value {
    let (produced, consumed, paced) = (&s.produced, &s.consumed, &s.paced);
    json!({
        "command": "compare",
        "broker": label,
        "bootstrap": bootstrap,
        "date": report::date_utc(),
        "commit": report::commit(),
        "machine": report::machine(),
        "cores": cores.json(),
        "seconds": a.seconds,
        "workload": w,
        "produce_mb_s": produced.mb_s,
        "produce_records_s": produced.records_s,
        "produce_max_rate_p99_us": produced.latency.p99_us,
        "produce_max_rate_p99_99_us": produced.latency.p99_99_us,
        "consume_mb_s": consumed.mb_s,
        "consume_records_s": consumed.records_s,
        "produce_half_rate_records_s": s.half_rate,
        "produce_p50_us": paced.latency.p50_us,
        "produce_p90_us": paced.latency.p90_us,
        "produce_p99_us": paced.latency.p99_us,
        "produce_p99_9_us": paced.latency.p99_9_us,
        "produce_p99_99_us": paced.latency.p99_99_us,
        "produce_max_us": paced.latency.max_us,
        "errors": produced.errors + consumed.errors + paced.errors,
        "raw_fsync_write_mb_s": raw.fsync_write_mb_s,
        "raw_seq_write_mb_s": disk.seq_write_mb_s,
        "raw_read_mb_s": disk.read_mb_s,
        "raw_fsync_p99_99_us": raw.fsync_p99_99_us,
        "raw_fsync_ref_bytes": raw.fsync_ref_bytes,
        "loopback_mb_s": lo.mb_s,
        "loopback_rtt_p99_99_us": lo.rtt_p99_99_us,
        "produce_ratio": produced.mb_s / raw.fsync_write_mb_s.max(1e-9),
        "consume_ratio": consumed.mb_s / raw.loopback_mb_s.max(1e-9),
        "produce_p99_99_ratio":
            paced.latency.p99_99_us as f64 / raw.fsync_p99_99_us.max(1) as f64,
        "disk": disk,
        "loopback": lo,
        "phases": [produced, consumed, paced],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nodes take the brokers' CPUs in turn: three nodes on two CPUs share them round-robin
    /// (node 3 back on the first), and with enough CPUs each node gets its own share.
    #[test]
    fn node_cpus_in_turn() {
        assert_eq!(node_cpus(&[0, 1], 3), vec![vec![0], vec![1], vec![0]]);
        assert_eq!(node_cpus(&[0, 1, 2, 3], 3), vec![vec![0], vec![1], vec![2]]);
        assert_eq!(
            node_cpus(&[2, 3, 4, 5, 6, 7], 3),
            vec![vec![2, 3], vec![4, 5], vec![6, 7]]
        );
        assert_eq!(node_cpus(&[5], 2), vec![vec![5], vec![5]]);
    }
}
