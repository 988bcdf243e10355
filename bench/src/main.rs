//! `sluice-bench`: load generator and raw-limit measurements.
//!
//! Subcommands:
//! - `produce`, `consume`, `e2e`: load against any Kafka-API broker with the pipelined client in
//!   `kafka.rs` and the actors in `load.rs`; workloads in `workload.rs`; constant rate with
//!   coordinated-omission correction in `rate.rs`; histograms and reports in `stats.rs`.
//! - `disk`, `loopback`: the machine's raw limits (`raw.rs`).
//! - `compare`: raw limits and a broker's figures in one run, as ratios (`compare.rs`); with
//!   `--peer kafka` also the reference Kafka, defaults and fsync per append, and one table of
//!   sluice/Kafka ratios (`peer.rs`); brokers it starts itself are in `broker.rs`. With
//!   `--cluster 3` it starts 3-node clusters instead (sluice's, and Kafka's `start-cluster`)
//!   and the topic has replication factor 3 and min.insync.replicas=2.
//! - `plot`: SVG latency-by-percentile plot of JSON reports (`plot.rs`).
//! - `storage`: the shard's append and cold-read throughput on one pinned core, next to this
//!   machine's raw O_DIRECT limit for the same I/O pattern (`storage.rs`).

mod broker;
mod compare;
mod kafka;
mod load;
mod peer;
mod plot;
mod rate;
mod raw;
mod report;
mod stats;
mod storage;
mod workload;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::load::{Pinning, StartAt};
use crate::workload::WorkloadArgs;

#[derive(Parser, Debug)]
#[command(
    name = "sluice-bench",
    about = "sluice load generator and raw-limit benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Produce load against a broker: throughput and ack latency.
    Produce(LoadArgs),
    /// Consume a topic's partitions (no group): throughput and fetch latency.
    Consume(LoadArgs),
    /// Produce and consume together: latency from intended send time to consumer receipt.
    E2e(LoadArgs),
    /// Raw disk limits: O_DIRECT write, write + fdatasync 4 KiB..1 MiB, O_DIRECT read.
    Disk(raw::DiskArgs),
    /// Raw TCP loopback bandwidth and round-trip latency between two pinned threads.
    Loopback(raw::LoopbackArgs),
    /// Disk, loopback, then the workload against a broker, as ratios of the raw limits; with
    /// --peer kafka against sluice and Kafka, as one table of ratios.
    Compare(compare::CompareArgs),
    /// SVG latency percentile plot from JSON reports.
    Plot(plot::PlotArgs),
    /// Append and cold-read throughput of one partition vs raw O_DIRECT + fdatasync.
    Storage(storage::StorageArgs),
}

#[derive(clap::Args, Debug, Clone)]
struct LoadArgs {
    /// Bootstrap brokers, `host:port[,host:port...]`; requests go to each partition's leader.
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Where `consume` starts.
    #[arg(long, value_enum, default_value_t = StartAt::Earliest)]
    from: StartAt,
    /// Do not create the topic (it exists with the workload's partition count).
    #[arg(long)]
    no_create: bool,
    /// CPUs to pin client threads to, e.g. 2,3 (default: not pinned).
    #[arg(long, value_delimiter = ',')]
    client_cpus: Vec<usize>,
    #[arg(long)]
    json: Option<PathBuf>,
    #[arg(long)]
    hgrm: Option<PathBuf>,
    #[arg(long)]
    plot: Option<PathBuf>,
    #[command(flatten)]
    workload: WorkloadArgs,
}

fn run_load(kind: &str, a: &LoadArgs) -> anyhow::Result<()> {
    let w = a.workload.resolve()?;
    let topic = a.workload.topic();
    let boot = kafka::Bootstrap::parse(&a.bootstrap)?;
    let pin = Pinning {
        cpus: a.client_cpus.clone(),
    };
    let n = report::cpus().len();
    let cores_line = format!("cores: machine {n}, client {}", pin.describe());
    println!("{cores_line}");
    if !a.no_create {
        kafka::create_topic(&boot, &topic, w.partitions, w.replication_factor)?;
    }
    println!(
        "{kind} on {} topic {topic}: workload {} ({} partitions, RF {}, {}p/{}c, {} B records, acks {}, rate {})",
        a.bootstrap,
        w.name,
        w.partitions,
        w.replication_factor,
        w.producers,
        w.consumers,
        w.record_bytes,
        w.acks,
        w.rate.map_or("max".to_owned(), |r| format!("{r:.0}/s"))
    );
    let phases = match kind {
        "produce" => vec![load::produce_phase(
            &boot, &topic, &w, a.seconds, w.rate, &pin,
        )?],
        "consume" => vec![load::consume_phase(
            &boot, &topic, &w, a.seconds, a.from, false, &pin,
        )?],
        _ => {
            let r = load::e2e_phase(&boot, &topic, &w, a.seconds, w.rate, &pin)?;
            vec![r.produced, r.from_send, r.e2e]
        }
    };
    load::print_table_header();
    for p in &phases {
        p.print();
    }
    println!("{cores_line}");
    let main = phases.last().context("no phase")?;
    if let Some(path) = &a.hgrm
        && let Some(h) = &main.histogram
    {
        std::fs::write(path, stats::hgrm(h))
            .with_context(|| format!("write {}", path.display()))?;
    }
    let j = serde_json::json!({
        "command": kind,
        "broker": a.bootstrap,
        "date": report::date_utc(),
        "commit": report::commit(),
        "machine": report::machine(),
        "cores": {"machine": n, "client_pinned_cpus": pin.cpus},
        "topic": topic,
        "workload": w,
        "mb_s": main.mb_s,
        "records_s": main.records_s,
        "latency": main.latency,
        "phases": phases,
    });
    if let Some(path) = &a.json {
        std::fs::write(path, serde_json::to_string_pretty(&j)?)
            .with_context(|| format!("write {}", path.display()))?;
    }
    if let Some(path) = &a.plot {
        std::fs::write(path, plot::svg(&plot::series_of(&j, &a.bootstrap)))
            .with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}

fn write_json(path: Option<&PathBuf>, v: &impl serde::Serialize) -> anyhow::Result<()> {
    if let Some(path) = path {
        std::fs::write(path, serde_json::to_string_pretty(v)?)
            .with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Produce(a) => run_load("produce", &a),
        Command::Consume(a) => run_load("consume", &a),
        Command::E2e(a) => run_load("e2e", &a),
        Command::Disk(a) => {
            let d = raw::disk(&a.dir, a.seconds, a.cpu)?;
            d.print();
            write_json(a.json.as_ref(), &d)
        }
        Command::Loopback(a) => {
            let l = raw::loopback(a.seconds)?;
            l.print();
            write_json(a.json.as_ref(), &l)
        }
        Command::Compare(a) if a.peer.is_some() => peer::run(a),
        Command::Compare(a) => compare::run(a),
        Command::Plot(a) => plot::run(&a),
        Command::Storage(args) => storage::run(args),
    }
}
