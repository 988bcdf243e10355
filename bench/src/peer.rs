//! `sluice-bench compare --peer kafka`: the same workload against sluice and the reference
//! Apache Kafka 4.4 of `tests/kafka-ref`, twice (its defaults: acknowledged from the page
//! cache; and `log.flush.interval.messages=1`: an fsync per append, sluice's durability), in
//! one invocation, and one table of the figures the goals name with their ratios.
//!
//! Order, and why:
//! 1. raw disk and loopback, once, before any broker runs;
//! 2. max pass, one broker at a time (sluice, kafka, kafka-flush1): start on a fresh data dir
//!    under `--dir`, create the topic, produce at max rate, hot consume of all of it, stop;
//! 3. the common rate: half the slowest broker's max records/s;
//! 4. paced pass, one broker at a time, each started afresh: produce at the common rate (the
//!    p99.99 compared like for like), end to end at `--e2e-rate` (20,000/s: send time written
//!    in each record, read back by a consumer tailing the log; at the common rate instead when
//!    that is lower, as a rate some broker cannot sustain measures its backlog, not its
//!    latency), and, for a broker whose own
//!    half max rate is more than 5 % above the common one, produce at that rate too (the
//!    one-broker mode's latency figure); stop.
//!
//! After each start the topic is created and probed until every partition takes a write (Kafka
//! answers NOT_LEADER_OR_FOLLOWER for a moment after a create), then `--warmup` seconds (2 by
//! default) of produce at the e2e rate go to a separate topic, unmeasured, so that neither
//! broker is measured while cold (a fresh JVM interprets before it compiles).
//!
//! The paced phase needs every broker's max first, hence two passes. Only one broker runs at
//! a time, so no idle JVM and no other broker's writeback competes with the one measured
//! (stopping removes the data dir, and with it the dirty pages of a Kafka that does not
//! fsync), and each pass starts on an empty log. The cost is two starts per broker (Kafka's
//! take 5–10 s each here). A broker that fails to start or to finish a pass is reported and
//! its figures are left out; the others still run. Brokers are stopped when their handle
//! drops; a run killed by a signal leaves one running: stop it by hand with
//! `tests/kafka-ref/stop DIR --rm` (DIR: `--dir`/sluice-bench-kafka*-PID) or kill the sluice.
//!
//! With `--cluster 3` every broker above is a 3-node cluster started afresh for each pass
//! (sluice's nodes as `broker::SluiceCluster`, Kafka's by `tests/kafka-ref/start-cluster` with
//! its defaults, the second Kafka with `--set log.flush.interval.messages=1` on every node), the
//! topic has replication factor 3 and min.insync.replicas=2, acks=all waits for the ISR, and
//! the load goes to each partition's leader. Stop a leftover Kafka cluster with
//! `tests/kafka-ref/stop-cluster DIR --rm`.

use std::path::PathBuf;

use serde::Serialize;
use serde_json::json;

use crate::broker::{self, Running};
use crate::compare::{self, CompareArgs, Cores, Raw};
use crate::kafka::{self, Bootstrap};
use crate::load::{self, PhaseResult, StartAt};
use crate::plot::Series;
use crate::report;
use crate::workload::Workload;

/// A goal on a figure.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Goal {
    AtLeast(f64),
    AtMost(f64),
}

impl Goal {
    pub fn met(self, x: f64) -> bool {
        match self {
            Goal::AtLeast(g) => x >= g,
            Goal::AtMost(g) => x <= g,
        }
    }

    fn show(self) -> String {
        match self {
            Goal::AtLeast(g) => format!(">= {g}"),
            Goal::AtMost(g) => format!("<= {g}"),
        }
    }
}

/// Goals on sluice / this broker.
#[derive(Debug, Clone, Copy, Default)]
pub struct Goals {
    pub produce: Option<Goal>,
    pub consume: Option<Goal>,
    pub p99_99: Option<Goal>,
}

/// Produce MB/s over raw write+fdatasync of 1 MiB.
const RAW_PRODUCE_GOAL: Goal = Goal::AtLeast(0.7);
/// Produce p99.99 at the common rate over raw fdatasync p99.99.
const RAW_P99_99_GOAL: Goal = Goal::AtMost(5.0);
/// End-to-end p99 at `--e2e-rate`, ms.
const E2E_P99_GOAL_MS: Goal = Goal::AtMost(5.0);

/// A broker of the run.
struct Spec {
    label: &'static str,
    durability: &'static str,
    /// What an acks=all answer means when it runs as a cluster.
    cluster_durability: &'static str,
    /// `None`: sluice; else Kafka with these `--set` server.properties overrides.
    kafka_sets: Option<&'static [&'static str]>,
    goals: Goals,
}

const SPECS: [Spec; 3] = [
    Spec {
        label: "sluice",
        durability: "fdatasync before the ack (group commit)",
        cluster_durability: "acks=all answered once every ISR member fdatasync'ed the records",
        kafka_sets: None,
        goals: Goals {
            produce: None,
            consume: None,
            p99_99: None,
        },
    },
    Spec {
        label: "kafka",
        durability: "Kafka 4.4 defaults: acked from the page cache",
        cluster_durability: "Kafka 4.4 defaults: acks=all answered from the ISR's page cache",
        kafka_sets: Some(&[]),
        goals: Goals {
            produce: Some(Goal::AtLeast(1.0)),
            consume: Some(Goal::AtLeast(1.5)),
            p99_99: Some(Goal::AtMost(0.33)),
        },
    },
    Spec {
        label: "kafka-flush1",
        durability: "Kafka 4.4, log.flush.interval.messages=1: fsync per append",
        cluster_durability: "Kafka 4.4, log.flush.interval.messages=1 on every node",
        kafka_sets: Some(&["log.flush.interval.messages=1"]),
        goals: Goals {
            produce: Some(Goal::AtLeast(2.0)),
            consume: None,
            p99_99: None,
        },
    },
];

/// One broker's figures for the table; `None`: not measured (its pass failed).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Figures {
    pub label: String,
    pub produce_mb_s: Option<f64>,
    pub consume_mb_s: Option<f64>,
    /// Produce p50, p99, p99.9 and p99.99 at the common rate, µs.
    pub paced_p50_us: Option<u64>,
    pub paced_p99_us: Option<u64>,
    pub paced_p99_9_us: Option<u64>,
    pub paced_p99_99_us: Option<u64>,
    /// End-to-end p99 at the e2e rate, µs.
    pub e2e_p99_us: Option<u64>,
    /// The same from the time each batch left the producer (without its linger), µs.
    pub e2e_sent_p99_us: Option<u64>,
}

/// One line of the table: a figure for every broker (sluice first), sluice's ratio, the goal
/// and whether sluice meets it.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub figure: String,
    pub values: Vec<Option<f64>>,
    pub ratio: Option<f64>,
    pub goal: Option<Goal>,
    pub met: Option<bool>,
}

impl Row {
    /// A goal on the ratio.
    fn ratio(
        figure: String,
        values: Vec<Option<f64>>,
        ratio: Option<f64>,
        goal: Option<Goal>,
    ) -> Row {
        let met = goal.zip(ratio).map(|(g, r)| g.met(r));
        Row {
            figure,
            values,
            ratio,
            goal,
            met,
        }
    }

    /// A goal on sluice's own value.
    fn value(figure: String, values: Vec<Option<f64>>, goal: Goal) -> Row {
        let met = values.first().copied().flatten().map(|v| goal.met(v));
        Row {
            figure,
            values,
            ratio: None,
            goal: Some(goal),
            met,
        }
    }
}

fn div(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Half the slowest broker's max records/s: the rate every broker's latency phase runs at.
/// Brokers without a max figure are left out; `None` when none has one.
pub fn common_rate(max_records_s: &[Option<f64>]) -> Option<f64> {
    max_records_s
        .iter()
        .flatten()
        .copied()
        .filter(|r| *r > 0.0)
        .min_by(f64::total_cmp)
        .map(|r| (r / 2.0).max(1.0))
}

/// A broker's own half max rate, when it is more than 5 % above the common rate (else its
/// latency at the common rate is already that figure).
pub fn own_rate(max_records_s: f64, common: f64) -> Option<f64> {
    let own = max_records_s / 2.0;
    (own > common * 1.05).then_some(own)
}

/// `sluice / peer` rows of one figure, one per peer.
fn versus(
    out: &mut Vec<Row>,
    brokers: &[(Figures, Goals)],
    what: &str,
    values: &[Option<f64>],
    goal: fn(&Goals) -> Option<Goal>,
) {
    for (i, (peer, goals)) in brokers.iter().enumerate().skip(1) {
        out.push(Row::ratio(
            format!("{what}, {} / {}", brokers[0].0.label, peer.label),
            values.to_vec(),
            div(values[0], values[i]),
            goal(goals),
        ));
    }
}

/// The table: sluice (first) against each peer and against the raw limits.
pub fn rows(brokers: &[(Figures, Goals)], raw: &Raw, rate: Option<f64>, e2e_rate: f64) -> Vec<Row> {
    if brokers.is_empty() {
        return Vec::new();
    }
    let col = |f: fn(&Figures) -> Option<f64>| brokers.iter().map(|(b, _)| f(b)).collect();
    let produce: Vec<_> = col(|b| b.produce_mb_s);
    let consume: Vec<_> = col(|b| b.consume_mb_s);
    let p99_99: Vec<_> = col(|b| b.paced_p99_99_us.map(ms));
    let lower: [(&str, Vec<_>); 3] = [
        ("p50", col(|b| b.paced_p50_us.map(ms))),
        ("p99", col(|b| b.paced_p99_us.map(ms))),
        ("p99.9", col(|b| b.paced_p99_9_us.map(ms))),
    ];
    let e2e: Vec<_> = col(|b| b.e2e_p99_us.map(ms));
    let e2e_sent: Vec<_> = col(|b| b.e2e_sent_p99_us.map(ms));
    let mut out = Vec::new();
    versus(&mut out, brokers, "produce MB/s", &produce, |g| g.produce);
    out.push(Row::ratio(
        format!(
            "produce MB/s / raw write+fdatasync 1 MiB ({:.1} MB/s)",
            raw.fsync_write_mb_s
        ),
        produce.clone(),
        div(produce[0], Some(raw.fsync_write_mb_s)),
        Some(RAW_PRODUCE_GOAL),
    ));
    versus(&mut out, brokers, "hot consume MB/s", &consume, |g| {
        g.consume
    });
    out.push(Row::ratio(
        format!(
            "hot consume MB/s / loopback ({:.1} MB/s)",
            raw.loopback_mb_s
        ),
        consume.clone(),
        div(consume[0], Some(raw.loopback_mb_s)),
        None,
    ));
    let at = rate.map_or("-".to_owned(), |r| format!("{r:.0}/s"));
    for (q, values) in &lower {
        versus(
            &mut out,
            brokers,
            &format!("produce {q} ms at {at}"),
            values,
            |_| None,
        );
    }
    let what = format!("produce p99.99 ms at {at}");
    versus(&mut out, brokers, &what, &p99_99, |g| g.p99_99);
    out.push(Row::ratio(
        format!(
            "{what} / raw fdatasync p99.99 {} KiB ({:.3} ms)",
            raw.fsync_ref_bytes >> 10,
            ms(raw.fsync_p99_99_us)
        ),
        p99_99.clone(),
        div(p99_99[0], Some(ms(raw.fsync_p99_99_us))),
        Some(RAW_P99_99_GOAL),
    ));
    out.push(Row::value(
        format!("end-to-end p99 ms at {e2e_rate:.0}/s"),
        e2e,
        E2E_P99_GOAL_MS,
    ));
    let what = format!("end-to-end from the batch's send p99 ms at {e2e_rate:.0}/s");
    versus(&mut out, brokers, &what, &e2e_sent, |_| None);
    out
}

fn num(v: Option<f64>) -> String {
    match v {
        None => "-".to_owned(),
        Some(v) if v.abs() >= 100.0 => format!("{v:.1}"),
        Some(v) if v.abs() >= 1.0 => format!("{v:.2}"),
        Some(v) => format!("{v:.3}"),
    }
}

/// The table as text: a column per broker, then ratio, goal, met.
pub fn table(labels: &[&str], rows: &[Row]) -> String {
    let fw = rows
        .iter()
        .map(|r| r.figure.len())
        .max()
        .unwrap_or(6)
        .max(6);
    let vw = labels.iter().map(|l| l.len()).max().unwrap_or(0).max(9);
    let mut o = format!("{:<fw$}", "figure");
    for l in labels {
        o.push_str(&format!(" {l:>vw$}"));
    }
    o.push_str(&format!(" {:>8} {:>8} {:>4}\n", "ratio", "goal", "met"));
    for r in rows {
        o.push_str(&format!("{:<fw$}", r.figure));
        for i in 0..labels.len() {
            o.push_str(&format!(
                " {:>vw$}",
                num(r.values.get(i).copied().flatten())
            ));
        }
        let goal = r.goal.map_or("-".to_owned(), Goal::show);
        let met = r.met.map_or("-", |m| if m { "yes" } else { "no" });
        o.push_str(&format!(" {:>8} {goal:>8} {met:>4}\n", num(r.ratio)));
    }
    o
}

/// What the run needs for every broker.
struct Ctx {
    /// Nodes per broker: 1, or `--cluster`.
    nodes: u16,
    seconds: f64,
    e2e_rate: f64,
    warmup: f64,
    w: Workload,
    topic: String,
    dir: PathBuf,
    cores: Cores,
    kref: PathBuf,
    /// For starting sluice (`compare::start_sluice`).
    args: CompareArgs,
}

impl Ctx {
    /// Starts the broker on a fresh data dir, creates the topic and waits until every
    /// partition takes writes, then warms the broker up (not measured).
    fn start(&self, spec: &Spec) -> anyhow::Result<(Running, Bootstrap)> {
        let running = match spec.kafka_sets {
            None => compare::start_sluice(&self.args, &self.cores)?,
            Some(sets) => Running::Kafka(broker::Kafka::start(
                &self.kref,
                &self.dir,
                spec.label,
                sets,
                &self.cores.broker_cpus,
                usize::from(self.nodes),
            )?),
        };
        let boot = Bootstrap::parse(running.addr())?;
        println!(
            "== {} at {} ({}), topic {}",
            spec.label,
            running.addr(),
            self.durability(spec),
            self.topic
        );
        self.ready(&boot, &self.topic)?;
        if self.warmup > 0.0 {
            let topic = format!("{}-warmup", self.topic);
            self.ready(&boot, &topic)?;
            let rate = Some(self.e2e_rate);
            load::produce_phase(&boot, &topic, &self.w, self.warmup, rate, &self.cores.pin)?;
        }
        Ok((running, boot))
    }

    fn ready(&self, boot: &Bootstrap, topic: &str) -> anyhow::Result<()> {
        let (partitions, rf) = (self.w.partitions, self.w.replication_factor);
        kafka::create_topic(boot, topic, partitions, rf)?;
        kafka::wait_writable(boot, topic, partitions)
    }

    fn durability(&self, spec: &Spec) -> &'static str {
        if self.nodes > 1 {
            spec.cluster_durability
        } else {
            spec.durability
        }
    }
}

/// Everything measured on one broker.
#[derive(Debug, Default)]
struct Measured {
    max: Option<PhaseResult>,
    consume: Option<PhaseResult>,
    paced: Option<PhaseResult>,
    e2e_produce: Option<PhaseResult>,
    e2e_sent: Option<PhaseResult>,
    e2e: Option<PhaseResult>,
    own: Option<PhaseResult>,
    failures: Vec<String>,
}

impl Measured {
    fn phases(&self) -> Vec<&PhaseResult> {
        [
            &self.max,
            &self.consume,
            &self.paced,
            &self.e2e_produce,
            &self.e2e_sent,
            &self.e2e,
            &self.own,
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    fn figures(&self, label: &str) -> Figures {
        Figures {
            label: label.to_owned(),
            produce_mb_s: self.max.as_ref().map(|p| p.mb_s),
            consume_mb_s: self.consume.as_ref().map(|p| p.mb_s),
            paced_p50_us: self.paced.as_ref().map(|p| p.latency.p50_us),
            paced_p99_us: self.paced.as_ref().map(|p| p.latency.p99_us),
            paced_p99_9_us: self.paced.as_ref().map(|p| p.latency.p99_9_us),
            paced_p99_99_us: self.paced.as_ref().map(|p| p.latency.p99_99_us),
            e2e_p99_us: self.e2e.as_ref().map(|p| p.latency.p99_us),
            e2e_sent_p99_us: self.e2e_sent.as_ref().map(|p| p.latency.p99_us),
        }
    }

    fn errors(&self) -> u64 {
        self.phases().iter().map(|p| p.errors).sum()
    }
}

fn named(mut p: PhaseResult, name: &str) -> PhaseResult {
    name.clone_into(&mut p.phase);
    p
}

/// Start, max-rate produce, hot consume, stop.
fn max_pass(ctx: &Ctx, spec: &Spec, m: &mut Measured) -> anyhow::Result<()> {
    let (running, boot) = ctx.start(spec)?;
    let (w, pin) = (&ctx.w, &ctx.cores.pin);
    let p = load::produce_phase(&boot, &ctx.topic, w, ctx.seconds, None, pin)?;
    m.max = Some(named(p, "produce"));
    let c = load::consume_phase(
        &boot,
        &ctx.topic,
        w,
        ctx.seconds,
        StartAt::Earliest,
        true,
        pin,
    )?;
    m.consume = Some(named(c, "consume"));
    drop(running);
    Ok(())
}

/// Start, produce at the common rate, end to end, produce at the broker's own half rate when
/// that differs, stop.
fn paced_pass(ctx: &Ctx, spec: &Spec, rate: f64, m: &mut Measured) -> anyhow::Result<()> {
    let (running, boot) = ctx.start(spec)?;
    let (w, pin) = (&ctx.w, &ctx.cores.pin);
    let p = load::produce_phase(&boot, &ctx.topic, w, ctx.seconds, Some(rate), pin)?;
    m.paced = Some(named(p, "paced"));
    let r = load::e2e_phase(&boot, &ctx.topic, w, ctx.seconds, Some(ctx.e2e_rate), pin)?;
    m.e2e_produce = Some(named(r.produced, "e2e-prod"));
    m.e2e_sent = Some(r.from_send);
    m.e2e = Some(r.e2e);
    if let Some(own) = m.max.as_ref().and_then(|p| own_rate(p.records_s, rate)) {
        let p = load::produce_phase(&boot, &ctx.topic, w, ctx.seconds, Some(own), pin)?;
        m.own = Some(named(p, "paced-own"));
    }
    drop(running);
    Ok(())
}

/// Runs `pass` on one broker; a failure is printed and kept, not fatal.
fn attempt(spec: &Spec, m: &mut Measured, pass: impl FnOnce(&mut Measured) -> anyhow::Result<()>) {
    if let Err(e) = pass(m) {
        eprintln!("{}: {e:#}", spec.label);
        m.failures.push(format!("{e:#}"));
    }
}

pub fn run(a: CompareArgs) -> anyhow::Result<()> {
    let w = compare::workload(&a)?;
    let cores = Cores::of(&a);
    let mut ctx = Ctx {
        nodes: a.cluster.unwrap_or(1),
        args: a.clone(),
        seconds: a.seconds,
        e2e_rate: a.e2e_rate,
        warmup: a.warmup,
        topic: a.workload.topic(),
        dir: a.dir.clone(),
        kref: broker::find_kafka_ref(a.kafka_ref.as_deref())?,
        w,
        cores,
    };
    println!("{}", ctx.cores.line());
    println!(
        "{}, kafka-ref {}",
        compare::describe(&ctx.w),
        ctx.kref.display()
    );
    if ctx.nodes > 1 {
        println!(
            "every broker is a {}-node cluster (combined broker+controller nodes)",
            ctx.nodes
        );
    }
    let (disk, lo) = compare::raw_limits(&a)?;
    let mut all: Vec<Measured> = SPECS.iter().map(|_| Measured::default()).collect();
    for (spec, m) in SPECS.iter().zip(&mut all) {
        attempt(spec, m, |m| max_pass(&ctx, spec, m));
    }
    let maxes: Vec<_> = all
        .iter()
        .map(|m| m.max.as_ref().map(|p| p.records_s))
        .collect();
    let rate = common_rate(&maxes);
    match rate {
        Some(r) => println!("common rate for the latency phases: {r:.0} records/s"),
        None => eprintln!("no broker has a max rate: latency phases skipped"),
    }
    if let Some(r) = rate.filter(|r| *r < ctx.e2e_rate) {
        println!(
            "end to end at the common rate too: --e2e-rate {:.0} is above it",
            ctx.e2e_rate
        );
        ctx.e2e_rate = r;
    }
    for (spec, m) in SPECS.iter().zip(&mut all) {
        if let Some(r) = rate {
            attempt(spec, m, |m| paced_pass(&ctx, spec, r, m));
        }
    }
    let raw = Raw::of(&disk, &lo, ctx.w.batch_bytes);
    let brokers: Vec<(Figures, Goals)> = SPECS
        .iter()
        .zip(&all)
        .map(|(s, m)| (m.figures(s.label), s.goals))
        .collect();
    let rows = rows(&brokers, &raw, rate, ctx.e2e_rate);
    print_all(&ctx, &all, &rows);
    let report = Report {
        a: &a,
        ctx: &ctx,
        all: &all,
        rows: &rows,
        rate,
        raw: &raw,
        disk: &disk,
        lo: &lo,
    };
    report.write()
}

fn print_all(ctx: &Ctx, all: &[Measured], rows: &[Row]) {
    println!();
    for (spec, m) in SPECS.iter().zip(all) {
        println!("{} ({}):", spec.label, ctx.durability(spec));
        load::print_table_header();
        for p in m.phases() {
            p.print();
        }
        for f in &m.failures {
            println!("  failed: {f}");
        }
    }
    println!();
    let labels: Vec<&str> = SPECS.iter().map(|s| s.label).collect();
    print!("{}", table(&labels, rows));
    let errors: Vec<String> = SPECS
        .iter()
        .zip(all)
        .map(|(s, m)| format!("{} {}", s.label, m.errors()))
        .collect();
    println!("errors (records not counted): {}", errors.join(", "));
    println!("{}", ctx.cores.line());
}

/// What `--json`, `--plot` and `--hgrm` are written from.
struct Report<'a> {
    a: &'a CompareArgs,
    ctx: &'a Ctx,
    all: &'a [Measured],
    rows: &'a [Row],
    rate: Option<f64>,
    raw: &'a Raw,
    disk: &'a crate::raw::DiskResult,
    lo: &'a crate::raw::LoopbackResult,
}

impl Report<'_> {
    fn write(&self) -> anyhow::Result<()> {
        let sluice_paced = self.all.first().and_then(|m| m.paced.as_ref());
        compare::write_out(self.a.hgrm.as_ref(), || {
            Ok(sluice_paced
                .and_then(|p| p.histogram.as_ref())
                .map(crate::stats::hgrm)
                .unwrap_or_default())
        })?;
        compare::write_out(self.a.json.as_ref(), || {
            Ok(serde_json::to_string_pretty(&self.json())?)
        })?;
        compare::write_out(self.a.plot.as_ref(), || {
            Ok(crate::plot::svg(&self.series()))
        })
    }

    /// Every broker's constant-rate produce and end-to-end curves.
    fn series(&self) -> Vec<Series> {
        let mut out = Vec::new();
        for (spec, m) in SPECS.iter().zip(self.all) {
            let curves = [(&m.paced, self.rate), (&m.e2e, Some(self.ctx.e2e_rate))];
            for (p, r) in curves {
                if let (Some(p), Some(r)) = (p, r) {
                    out.push(Series {
                        label: format!("{} {} @{r:.0}/s", spec.label, p.phase),
                        points: p.percentiles.clone(),
                    });
                }
            }
        }
        out
    }

    fn json(&self) -> serde_json::Value {
        let brokers: Vec<_> = SPECS
            .iter()
            .zip(self.all)
            .map(|(s, m)| {
                json!({
                    "label": s.label,
                    "durability": self.ctx.durability(s),
                    "kafka_settings": s.kafka_sets,
                    "figures": m.figures(s.label),
                    "max_records_s": m.max.as_ref().map(|p| p.records_s),
                    "own_half_rate_records_s": m.own.as_ref().map(|p| p.records_s),
                    "errors": m.errors(),
                    "failures": m.failures,
                    "phases": m.phases(),
                })
            })
            .collect();
        json!({
            "command": "compare",
            "peer": "kafka",
            "date": report::date_utc(),
            "commit": report::commit(),
            "machine": report::machine(),
            "cores": self.ctx.cores.json(),
            "seconds": self.ctx.seconds,
            "cluster_nodes": self.ctx.nodes,
            "workload": self.ctx.w,
            "topic": self.ctx.topic,
            "common_rate_records_s": self.rate,
            "e2e_rate_records_s": self.ctx.e2e_rate,
            "raw": self.raw,
            "columns": SPECS.iter().map(|s| s.label).collect::<Vec<_>>(),
            "rows": self.rows,
            "brokers": brokers,
            "disk": self.disk,
            "loopback": self.lo,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(label: &str, produce: f64, consume: f64, p99_99_us: u64) -> Figures {
        Figures {
            label: label.into(),
            produce_mb_s: Some(produce),
            consume_mb_s: Some(consume),
            paced_p50_us: Some(p99_99_us / 10),
            paced_p99_us: Some(p99_99_us / 4),
            paced_p99_9_us: Some(p99_99_us / 2),
            paced_p99_99_us: Some(p99_99_us),
            e2e_p99_us: Some(3_000),
            e2e_sent_p99_us: Some(p99_99_us / 20),
        }
    }

    /// The slowest broker sets the common rate; a broker without a max figure is left out.
    #[test]
    fn common_rate_is_half_the_slowest() {
        assert_eq!(
            common_rate(&[Some(80_000.0), Some(50_000.0), Some(20_000.0)]),
            Some(10_000.0)
        );
        assert_eq!(common_rate(&[Some(80_000.0), None]), Some(40_000.0));
        assert_eq!(common_rate(&[None, Some(0.0)]), None);
        assert_eq!(common_rate(&[Some(1.0)]), Some(1.0));
        assert_eq!(own_rate(80_000.0, 10_000.0), Some(40_000.0));
        assert_eq!(own_rate(20_000.0, 10_000.0), None);
        assert_eq!(own_rate(20_500.0, 10_000.0), None);
    }

    /// Ratios are sluice over each peer and over the raw limits, goals are checked on the
    /// ratio (or on sluice's own value for end to end), and a missing figure gives no ratio
    /// and no verdict.
    #[test]
    fn rows_ratios_and_goals() {
        let g = SPECS.map(|s| s.goals);
        let brokers = [
            (figures("sluice", 200.0, 600.0, 20_000), g[0]),
            (figures("kafka", 100.0, 300.0, 100_000), g[1]),
            (
                Figures {
                    label: "kafka-flush1".into(),
                    produce_mb_s: Some(80.0),
                    ..Figures::default()
                },
                g[2],
            ),
        ];
        let raw = Raw {
            fsync_write_mb_s: 250.0,
            fsync_p99_99_us: 2_000,
            fsync_ref_bytes: 64 << 10,
            loopback_mb_s: 3000.0,
        };
        let rows = rows(&brokers, &raw, Some(12_345.0), 20_000.0);
        let find = |s: &str| {
            let mut hits = rows.iter().filter(|r| r.figure.starts_with(s));
            let first = hits
                .next()
                .unwrap_or_else(|| panic!("no row {s}: {rows:#?}"));
            assert!(hits.next().is_none(), "more than one row {s}: {rows:#?}");
            first
        };
        let r = find("produce MB/s, sluice / kafka-flush1");
        assert_eq!(
            (r.ratio, r.goal, r.met),
            (Some(2.5), Some(Goal::AtLeast(2.0)), Some(true))
        );
        assert_eq!(r.values, vec![Some(200.0), Some(100.0), Some(80.0)]);
        let r = &rows[0];
        assert_eq!(r.figure, "produce MB/s, sluice / kafka");
        assert_eq!(
            (r.ratio, r.goal, r.met),
            (Some(2.0), Some(Goal::AtLeast(1.0)), Some(true))
        );
        let r = find("produce MB/s / raw");
        assert_eq!((r.ratio, r.met), (Some(0.8), Some(true)));
        let r = find("hot consume MB/s, sluice / kafka-flush1");
        assert_eq!((r.ratio, r.goal, r.met), (None, None, None));
        let r = find("produce p99.99 ms at 12345/s / raw fdatasync p99.99 64 KiB (2.000 ms)");
        assert_eq!((r.ratio, r.met), (Some(10.0), Some(false)));
        let r = find("end-to-end p99 ms at 20000/s");
        assert_eq!(
            (r.ratio, r.goal, r.met),
            (None, Some(Goal::AtMost(5.0)), Some(true))
        );
        let r = rows
            .iter()
            .find(|r| {
                r.figure == "end-to-end from the batch's send p99 ms at 20000/s, sluice / kafka"
            })
            .expect("end-to-end from send row");
        assert_eq!(
            (r.values[..2].to_vec(), r.ratio),
            (vec![Some(1.0), Some(5.0)], Some(0.2))
        );
        let figures: Vec<&str> = rows.iter().map(|r| r.figure.as_str()).collect();
        assert!(
            figures.contains(&"hot consume MB/s, sluice / kafka"),
            "{figures:?}"
        );
        let r = rows
            .iter()
            .find(|r| r.figure == "hot consume MB/s, sluice / kafka")
            .expect("consume row");
        assert_eq!(
            (r.ratio, r.goal, r.met),
            (Some(2.0), Some(Goal::AtLeast(1.5)), Some(true))
        );
        let r = rows
            .iter()
            .find(|r| r.figure == "produce p99.99 ms at 12345/s, sluice / kafka")
            .expect("p99.99 row");
        assert_eq!(
            (r.ratio, r.goal, r.met),
            (Some(0.2), Some(Goal::AtMost(0.33)), Some(true))
        );
        let r = rows
            .iter()
            .find(|r| r.figure == "produce p99.9 ms at 12345/s, sluice / kafka")
            .expect("p99.9 row");
        assert_eq!((r.ratio, r.goal, r.met), (Some(0.2), None, None));
        assert_eq!(r.values, vec![Some(10.0), Some(50.0), None]);
        let r = find("produce p50 ms at 12345/s, sluice / kafka-flush1");
        assert_eq!((r.ratio, r.values[0]), (None, Some(2.0)));
        assert_eq!(rows.len(), 18);
    }

    /// The text table has a header with every broker and one line per row, "-" for what is
    /// missing.
    #[test]
    fn table_text() {
        let rows = vec![Row::ratio(
            "produce MB/s, sluice / kafka".into(),
            vec![Some(250.0), None],
            None,
            Some(Goal::AtLeast(1.0)),
        )];
        let t = table(&["sluice", "kafka"], &rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2, "{t}");
        assert!(
            lines[0].contains("sluice") && lines[0].contains("kafka"),
            "{t}"
        );
        assert!(
            lines[1].contains("250.0") && lines[1].contains(">= 1"),
            "{t}"
        );
        assert_eq!(
            lines[1].split_whitespace().filter(|w| *w == "-").count(),
            3,
            "{t}"
        );
    }
}
