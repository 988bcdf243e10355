//! The actors: producers and consumers on plain threads with blocking sockets, and the phases
//! that run them (produce, consume, end to end) with a live progress line.
//!
//! Producer: one connection, one writer thread that makes records, batches them per partition
//! (sticky round-robin, or murmur2 of a key as the Java client places keys) and writes produce
//! requests, and one reader thread that matches answers to requests in order and records
//! latencies. At most `in_flight` requests are unanswered per connection; a full window blocks
//! the writer, and in constant-rate mode the records it could not send on time carry that wait
//! in their latency (see `rate.rs`). Every record's value starts with its intended send time
//! (CLOCK_MONOTONIC ns, little-endian), so a consumer on this machine measures end to end.
//!
//! Consumer: one connection, one fetch in flight (as Kafka's consumer per broker), every
//! assigned partition in each fetch, every batch CRC-checked and every record parsed, as a real
//! consumer does. Throughput counts record value bytes (payload), as Kafka's perf tools do.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::atomic::{AtomicU32, AtomicUsize};
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use hdrhistogram::Histogram;
use serde::Serialize;
use sluice_net::record_batch::Batches;
use sluice_net::record_batch::build::{BatchSpec, batch};
use sluice_net::{ApiKey, Response};

use crate::kafka::{self, Conn};
use crate::rate::{Schedule, corrected_latency_ns};
use crate::stats::{self, Live, Percentiles, Recorder};
use crate::workload::Workload;
use sluice_net::client::partition_for_key;

/// CLOCK_MONOTONIC in nanoseconds: one clock for every thread and process on this machine.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the valid timespec we pass.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// CPUs the client threads are pinned to, round-robin; empty means not pinned.
#[derive(Debug, Clone, Default)]
pub struct Pinning {
    pub cpus: Vec<usize>,
}

impl Pinning {
    pub fn pin(&self, thread_index: usize) {
        if self.cpus.is_empty() {
            return;
        }
        let cpu = self.cpus[thread_index % self.cpus.len()];
        let _ = core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
    }

    pub fn describe(&self) -> String {
        if self.cpus.is_empty() {
            "not pinned (shares every core)".to_owned()
        } else {
            format!("pinned to cpus {:?}", self.cpus)
        }
    }
}

/// What one phase measured.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseResult {
    pub phase: String,
    pub seconds: f64,
    pub records: u64,
    pub bytes: u64,
    pub mb_s: f64,
    pub records_s: f64,
    pub errors: u64,
    pub latency: Percentiles,
    /// `(percentile, µs)` points for plots.
    pub percentiles: Vec<(f64, u64)>,
    #[serde(skip)]
    pub histogram: Option<Histogram<u64>>,
}

impl PhaseResult {
    fn new(
        phase: &str,
        took: Duration,
        records: u64,
        bytes: u64,
        errors: u64,
        h: Histogram<u64>,
    ) -> PhaseResult {
        let secs = took.as_secs_f64().max(1e-9);
        PhaseResult {
            phase: phase.to_owned(),
            seconds: secs,
            records,
            bytes,
            mb_s: bytes as f64 / secs / 1e6,
            records_s: records as f64 / secs,
            errors,
            latency: Percentiles::of(&h),
            percentiles: stats::curve(&h),
            histogram: Some(h),
        }
    }

    pub fn print(&self) {
        println!(
            "{:<10} {:>10.0} rec/s {:>8.1} MB/s {:>10} records {:>4} errors | {}",
            self.phase,
            self.records_s,
            self.mb_s,
            self.records,
            self.errors,
            self.latency.row()
        );
    }
}

pub fn print_table_header() {
    println!(
        "{:<10} {:>16} {:>13} {:>18} {:>11} | {}",
        "phase",
        "rate",
        "throughput",
        "count",
        "",
        Percentiles::HEADER
    );
}

/// A record's key and value, as `record_batch::build::batch` takes them.
type KeyValue<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// One request in flight: the intended send time of each of its records.
struct InFlight {
    times_ns: Vec<u64>,
    payload_bytes: u64,
}

/// A partition's records waiting to be sent. Queues, so that taking a batch off the front
/// costs the batch, not the backlog behind it.
#[derive(Default)]
struct Pending {
    /// Concatenated values, `record_bytes` each.
    values: VecDeque<u8>,
    keys: VecDeque<[u8; 8]>,
    times_ns: VecDeque<u64>,
    first_ns: u64,
}

/// Records taken off a partition's queue for one request.
struct Batch {
    values: Vec<u8>,
    keys: Vec<[u8; 8]>,
    times_ns: Vec<u64>,
}

/// Takes at most `max_records` of a partition's pending records as one batch, as a client
/// never builds a batch above its batch size; the rest waits for a later request. (At a fixed
/// rate, records due after a stall pile up in the pending batches: sent whole, they once made a
/// batch over `max.message.bytes` and got MESSAGE_TOO_LARGE. Taken with `split_off`, each batch
/// copied the whole backlog behind it, so a backlog of a second at 200,000 records/s made the
/// producer send ~1,000 records/s and never catch up: the bench, not the broker, collapsed.)
fn take_batch(pending: &mut Pending, max_records: usize, record_bytes: usize) -> Batch {
    let n = pending.times_ns.len().min(max_records);
    let batch = Batch {
        values: pending.values.drain(..n * record_bytes).collect(),
        keys: pending.keys.drain(..n.min(pending.keys.len())).collect(),
        times_ns: pending.times_ns.drain(..n).collect(),
    };
    if let Some(&first) = pending.times_ns.front() {
        pending.first_ns = first;
    }
    batch
}

#[derive(Debug, Default)]
struct ProducerOut {
    h: Option<Histogram<u64>>,
    records: u64,
    bytes: u64,
    errors: u64,
    last_ack: Option<Instant>,
}

struct ProducerSpec {
    id: usize,
    addr: std::net::SocketAddr,
    topic: String,
    w: Workload,
    /// Records per second for this producer; `None` is as fast as the window allows.
    rate: Option<f64>,
    end: Instant,
    live: Arc<Live>,
}

fn producer(spec: ProducerSpec) -> anyhow::Result<ProducerOut> {
    let ProducerSpec {
        id,
        addr,
        topic,
        w,
        rate,
        end,
        live,
    } = spec;
    let partitions = w.partitions;
    let record_bytes = w.record_bytes.max(8);
    let mut conn = Conn::connect(addr)?;
    let acks = w.acks;
    // The window: requests written and not yet answered. The reader lowers it and wakes the
    // writer; while it is full the writer keeps batching (as the Java client does), so the
    // next request carries every partition's ready batch.
    let (tx, rx) = channel::<InFlight>();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let writer = std::thread::current();
    let reader = if acks == 0 {
        drop(rx);
        None
    } else {
        let mut rconn = conn.try_clone()?;
        let live = live.clone();
        let in_flight = in_flight.clone();
        Some(std::thread::spawn(
            move || -> anyhow::Result<ProducerOut> {
                let mut rec = Recorder::default();
                let mut all = stats::histogram();
                let mut out = ProducerOut::default();
                let mut expected_id = 1i32;
                while let Ok(f) = rx.recv() {
                    let frame = rconn.recv_frame()?;
                    let done = mono_ns();
                    in_flight.fetch_sub(1, Ordering::Release);
                    writer.unpark();
                    let r = kafka::decode_response(
                        ApiKey::Produce,
                        kafka::PRODUCE_VERSION,
                        expected_id,
                        frame,
                    )?;
                    expected_id = expected_id.wrapping_add(1);
                    let Response::Produce(p) = r else {
                        bail!("not a produce answer")
                    };
                    let errors = kafka::produce_errors(&p);
                    if errors > 0 {
                        for (t, q) in p
                            .responses
                            .iter()
                            .flat_map(|t| t.partition_responses.iter().map(move |q| (t, q)))
                            .filter(|(_, q)| q.error_code != 0)
                        {
                            report_error("produce", &t.name, q.index, q.error_code);
                        }
                        out.errors += errors;
                        live.errors.fetch_add(errors, Ordering::Relaxed);
                        continue;
                    }
                    for t in &f.times_ns {
                        let us = corrected_latency_ns(*t, done) / 1000;
                        rec.record_us(us);
                        all.saturating_record(us.max(1));
                    }
                    out.records += f.times_ns.len() as u64;
                    out.bytes += f.payload_bytes;
                    live.add(f.times_ns.len() as u64, f.payload_bytes);
                    rec.maybe_flush(&live);
                }
                rec.flush(&live);
                out.last_ack = Some(Instant::now());
                out.h = Some(all);
                Ok(out)
            },
        ))
    };

    // A value template that does not compress: an xorshift stream, fixed per producer.
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (id as u64 + 1);
    let template: Vec<u8> = (0..record_bytes)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let records_per_batch = (w.batch_bytes / (record_bytes + 24)).max(1);
    let linger_ns = (w.linger_ms * 1e6) as u64;
    let mut pending: Vec<Pending> = (0..partitions).map(|_| Pending::default()).collect();
    let buffer_max = (partitions as usize * w.batch_bytes).min(32 << 20);
    let pending_bytes = |pending: &[Pending]| pending.iter().map(|b| b.values.len()).sum::<usize>();
    let mut sticky = (id as i32) % partitions;
    let mut key_state = 0x2545_f491_4f6c_dd1du64 ^ ((id as u64) << 32);
    let mut schedule = rate.map(|r| Schedule::new(mono_ns(), r));
    let mut acks0 = (
        Recorder::default(),
        stats::histogram(),
        ProducerOut::default(),
    );
    let end_ns = mono_ns() + end.saturating_duration_since(Instant::now()).as_nanos() as u64;

    let mut add = |pending: &mut Vec<Pending>, t: u64| -> usize {
        let p = if let Some(keys) = w.keys {
            key_state ^= key_state << 13;
            key_state ^= key_state >> 7;
            key_state ^= key_state << 17;
            let key = (key_state % keys.max(1)).to_be_bytes();
            let p = partition_for_key(&key, partitions) as usize;
            pending[p].keys.push_back(key);
            p
        } else {
            let p = sticky as usize;
            if pending[p].times_ns.len() + 1 >= records_per_batch {
                sticky = (sticky + 1) % partitions;
            }
            p
        };
        let b = &mut pending[p];
        if b.times_ns.is_empty() {
            b.first_ns = t;
        }
        b.times_ns.push_back(t);
        b.values.extend(&t.to_le_bytes());
        b.values.extend(&template[8..]);
        p
    };

    loop {
        let now = mono_ns();
        if now >= end_ns {
            break;
        }
        match schedule.as_mut() {
            Some(s) => {
                // Records due are made only while the client's buffer has room (as the Java
                // client's send blocks at buffer.memory); the rest keep their intended send
                // times in the schedule, so their wait still counts in the latency. Made
                // unbounded, a producer that fell behind spent its CPU growing its queues and
                // fell further behind.
                let mut bytes = pending_bytes(&pending);
                while bytes < buffer_max {
                    let Some(t) = s.take_due(now) else { break };
                    add(&mut pending, t);
                    bytes += record_bytes;
                }
            }
            None => {
                // As fast as possible: make records until a batch is full, and while the
                // window is closed keep filling the other partitions' batches, at most one
                // full batch per partition (the client's buffer).
                let mut any_full = false;
                let mut bytes = pending_bytes(&pending);
                while !any_full && bytes < buffer_max {
                    bytes += record_bytes;
                    let p = add(&mut pending, mono_ns());
                    any_full = pending[p].times_ns.len() >= records_per_batch
                        && (acks == 0 || in_flight.load(Ordering::Acquire) < w.in_flight);
                }
            }
        }
        let now = mono_ns();
        let window_open = acks == 0 || in_flight.load(Ordering::Acquire) < w.in_flight;
        if !window_open {
            // Wait for an answer (the reader unparks us), or for the next record to be due.
            let next = schedule
                .as_ref()
                .map_or(now + 1_000_000, Schedule::peek)
                .min(end_ns);
            // Records already due wait for an answer too (nothing can be sent before one).
            let wait = if next > now { next - now } else { 1_000_000 };
            std::thread::park_timeout(Duration::from_nanos(wait.min(1_000_000)));
            continue;
        }
        let mut ready: Vec<usize> = (0..pending.len())
            .filter(|&p| {
                let b = &pending[p];
                !b.times_ns.is_empty()
                    && (b.times_ns.len() >= records_per_batch || b.first_ns + linger_ns <= now)
            })
            .collect();
        if ready.is_empty() {
            // Nothing to send: sleep to the next record's time or the first linger deadline.
            let next_linger = pending
                .iter()
                .filter(|b| !b.times_ns.is_empty())
                .map(|b| b.first_ns + linger_ns)
                .min()
                .unwrap_or(u64::MAX);
            let next = schedule
                .as_ref()
                .map_or(u64::MAX, Schedule::peek)
                .min(next_linger)
                .min(end_ns);
            if next > now {
                std::thread::sleep(Duration::from_nanos((next - now).min(1_000_000)));
            }
            continue;
        }
        // At most 1 MiB of batches per request, as Kafka's max.request.size.
        let mut request_bytes = 0;
        let batch_max = records_per_batch * record_bytes;
        ready.retain(|&p| {
            let size = pending[p].values.len().min(batch_max);
            let fits = request_bytes == 0 || request_bytes + size <= 1 << 20;
            if fits {
                request_bytes += size;
            }
            fits
        });
        let mut batches = Vec::with_capacity(ready.len());
        let mut times = Vec::new();
        let mut payload = 0u64;
        for p in ready {
            let b = take_batch(&mut pending[p], records_per_batch, record_bytes);
            let recs: Vec<KeyValue<'_>> = b
                .values
                .chunks_exact(record_bytes)
                .enumerate()
                .map(|(i, v)| (b.keys.get(i).map(|k| &k[..]), Some(v)))
                .collect();
            let spec = BatchSpec {
                base_timestamp: wall_ms(),
                ..BatchSpec::default()
            };
            batches.push((p as i32, batch(&spec, &recs)));
            payload += b.values.len() as u64;
            times.extend_from_slice(&b.times_ns);
        }
        let req = kafka::produce_request(&topic, acks, batches);
        if acks == 0 {
            conn.send(kafka::PRODUCE_VERSION, &req)?;
            let done = mono_ns();
            let (rec, all, out) = &mut acks0;
            for t in &times {
                let us = corrected_latency_ns(*t, done) / 1000;
                rec.record_us(us);
                all.saturating_record(us.max(1));
            }
            out.records += times.len() as u64;
            out.bytes += payload;
            live.add(times.len() as u64, payload);
            rec.maybe_flush(&live);
        } else {
            in_flight.fetch_add(1, Ordering::AcqRel);
            if tx
                .send(InFlight {
                    times_ns: times,
                    payload_bytes: payload,
                })
                .is_err()
            {
                break; // the reader failed; its error is reported below
            }
            conn.send(kafka::PRODUCE_VERSION, &req)?;
        }
    }
    drop(tx);
    match reader {
        Some(r) => r
            .join()
            .map_err(|_| anyhow::anyhow!("producer reader panicked"))?,
        None => {
            let (mut rec, all, mut out) = acks0;
            rec.flush(&live);
            out.h = Some(all);
            out.last_ack = Some(Instant::now());
            Ok(out)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StartAt {
    Earliest,
    Latest,
}

struct ConsumerSpec {
    addr: std::net::SocketAddr,
    topic: String,
    partitions: Vec<i32>,
    /// Start offsets per partition.
    start: Vec<(i32, i64)>,
    /// Stop once every partition reached this offset (catch-up reads), else run until `end`.
    stop_at: Option<Vec<(i32, i64)>>,
    end: Instant,
    /// Record end-to-end latency from the producer's timestamp in each value; otherwise record
    /// each fetch's round trip.
    e2e: bool,
    live: Arc<Live>,
}

#[derive(Debug)]
struct ConsumerOut {
    h: Histogram<u64>,
    records: u64,
    bytes: u64,
    errors: u64,
    last: Instant,
}

fn consumer(spec: ConsumerSpec) -> anyhow::Result<ConsumerOut> {
    let mut conn = Conn::connect(spec.addr)?;
    let mut offsets = spec.start.clone();
    let mut rec = Recorder::default();
    let mut all = stats::histogram();
    let mut out_records = 0u64;
    let mut out_bytes = 0u64;
    let mut errors = 0u64;
    let mut last = Instant::now();
    let done = |offsets: &[(i32, i64)]| {
        spec.stop_at.as_ref().is_some_and(|stop| {
            stop.iter()
                .all(|(p, end)| offsets.iter().any(|(q, o)| q == p && o >= end))
        })
    };
    let _ = &spec.partitions;
    while Instant::now() < spec.end && !done(&offsets) {
        let req = kafka::fetch_request(&spec.topic, &offsets, 1 << 20, 100);
        let sent = mono_ns();
        let f = kafka::expect_fetch(conn.call(kafka::FETCH_VERSION, &req)?)?;
        let now = mono_ns();
        let mut got_any = false;
        for t in &f.responses {
            for p in &t.partitions {
                if p.error_code != 0 {
                    report_error("fetch", &t.topic, p.partition_index, p.error_code);
                    errors += 1;
                    spec.live.errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let Some(slot) = offsets.iter_mut().find(|(q, _)| *q == p.partition_index) else {
                    continue;
                };
                let records = p
                    .records
                    .clone()
                    .map(sluice_net::Records::into_bytes)
                    .unwrap_or_default();
                let (n, bytes, next) = consume_batches(records, slot.1, |ts| {
                    if spec.e2e {
                        let us = corrected_latency_ns(ts, now) / 1000;
                        rec.record_us(us);
                        all.saturating_record(us.max(1));
                    }
                })?;
                if n > 0 {
                    got_any = true;
                    slot.1 = next;
                    out_records += n;
                    out_bytes += bytes;
                    spec.live.add(n, bytes);
                    last = Instant::now();
                }
            }
        }
        if !spec.e2e && got_any {
            let us = (now - sent) / 1000;
            rec.record_us(us);
            all.saturating_record(us.max(1));
        }
        rec.maybe_flush(&spec.live);
    }
    rec.flush(&spec.live);
    Ok(ConsumerOut {
        h: all,
        records: out_records,
        bytes: out_bytes,
        errors,
        last,
    })
}

/// Walks the batches of one partition's fetch answer from `from`: checks each batch's CRC,
/// parses every record at or past `from`, hands each value's leading timestamp to `on_record`.
/// Returns (records, value bytes, next offset). A partial trailing batch is left for the next
/// fetch, as Kafka's consumer does.
pub fn consume_batches(
    records: Bytes,
    from: i64,
    mut on_record: impl FnMut(u64),
) -> anyhow::Result<(u64, u64, i64)> {
    let mut n = 0u64;
    let mut bytes = 0u64;
    let mut next = from;
    for b in Batches::new(records) {
        let Ok(b) = b else { break };
        if b.last_offset() < next {
            continue;
        }
        b.validate().context("fetched batch fails its CRC")?;
        let base = b.base_offset();
        for r in b.records()? {
            let r = r?;
            let offset = base + i64::from(r.offset_delta);
            if offset < next {
                continue;
            }
            if let Some(v) = &r.value {
                bytes += v.len() as u64;
                if v.len() >= 8 {
                    on_record(u64::from_le_bytes(v[..8].try_into()?));
                }
            }
            n += 1;
        }
        next = b.last_offset() + 1;
    }
    Ok((n, bytes, next))
}

/// Prints a progress line once a second until `end` or until `stop` says the work is done.
fn progress(start: Instant, end: Instant, lives: &[(&str, &Live)], stop: &dyn Fn() -> bool) {
    let mut prev: Vec<(u64, u64)> = vec![(0, 0); lives.len()];
    let mut tick = start;
    while Instant::now() < end && !stop() {
        let next = tick + Duration::from_secs(1);
        while Instant::now() < next && !stop() {
            std::thread::sleep(Duration::from_millis(20));
        }
        let dt = tick.elapsed().as_secs_f64().max(1e-3);
        tick = Instant::now();
        let mut line = format!("[{:>4.0}s]", start.elapsed().as_secs_f64());
        for (i, (name, live)) in lives.iter().enumerate() {
            let r = live.records.load(Ordering::Relaxed);
            let b = live.bytes.load(Ordering::Relaxed);
            let e = live.errors.load(Ordering::Relaxed);
            line.push_str(&format!(
                " {name}: {:>8.0} rec/s {:>7.1} MB/s p99 {:>8.3} ms{}",
                (r - prev[i].0) as f64 / dt,
                (b - prev[i].1) as f64 / dt / 1e6,
                live.p99_us() as f64 / 1000.0,
                if e > 0 {
                    format!(" errors {e}")
                } else {
                    String::new()
                }
            ));
            prev[i] = (r, b);
        }
        eprintln!("{line}");
    }
}

fn split_partitions(partitions: i32, consumers: usize) -> Vec<Vec<i32>> {
    let mut out = vec![Vec::new(); consumers.max(1)];
    for p in 0..partitions {
        out[p as usize % consumers.max(1)].push(p);
    }
    out.retain(|v| !v.is_empty());
    out
}

/// Runs the producers for `seconds` at `rate` records/s in total (`None`: max throughput).
pub fn produce_phase(
    addr: std::net::SocketAddr,
    topic: &str,
    w: &Workload,
    seconds: f64,
    rate: Option<f64>,
    pin: &Pinning,
) -> anyhow::Result<PhaseResult> {
    let live = Arc::new(Live::default());
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(seconds);
    let handles: Vec<_> = (0..w.producers.max(1))
        .map(|id| {
            let spec = ProducerSpec {
                id,
                addr,
                topic: topic.to_owned(),
                w: w.clone(),
                rate: rate.map(|r| r / w.producers.max(1) as f64),
                end,
                live: live.clone(),
            };
            let pin = pin.clone();
            std::thread::spawn(move || {
                pin.pin(id);
                producer(spec)
            })
        })
        .collect();
    progress(start, end, &[("produce", &live)], &|| false);
    let mut h = stats::histogram();
    let (mut records, mut bytes, mut errors) = (0, 0, 0);
    let mut last = start;
    for t in handles {
        let o = t
            .join()
            .map_err(|_| anyhow::anyhow!("producer panicked"))??;
        if let Some(oh) = &o.h {
            h.add(oh).ok();
        }
        records += o.records;
        bytes += o.bytes;
        errors += o.errors;
        last = last.max(o.last_ack.unwrap_or(last));
    }
    let label = if rate.is_some() {
        "produce@rate"
    } else {
        "produce"
    };
    Ok(PhaseResult::new(
        label,
        last - start,
        records,
        bytes,
        errors,
        h,
    ))
}

/// Reads every partition of `topic` from `start_at`; with `catch_up` it stops once the end
/// offsets seen at the start are reached (a hot read of what was just produced), else at
/// `seconds`.
pub fn consume_phase(
    addr: std::net::SocketAddr,
    topic: &str,
    w: &Workload,
    seconds: f64,
    start_at: StartAt,
    catch_up: bool,
    pin: &Pinning,
) -> anyhow::Result<PhaseResult> {
    let all: Vec<i32> = (0..w.partitions).collect();
    let mut c = Conn::connect(addr)?;
    let ts = if start_at == StartAt::Earliest {
        -2
    } else {
        -1
    };
    let start_offsets = kafka::list_offsets(&mut c, topic, &all, ts)?;
    let end_offsets = if catch_up {
        Some(kafka::list_offsets(&mut c, topic, &all, -1)?)
    } else {
        None
    };
    let live = Arc::new(Live::default());
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(seconds);
    let handles = spawn_consumers(
        addr,
        topic,
        w,
        &start_offsets,
        end_offsets.as_ref(),
        end,
        false,
        &live,
        pin,
    );
    let finished = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let watch: Vec<_> = handles
        .into_iter()
        .map(|h| {
            let f = finished.clone();
            std::thread::spawn(move || {
                let r = h.join();
                f.fetch_add(1, Ordering::Relaxed);
                r
            })
        })
        .collect();
    let n = watch.len();
    progress(start, end, &[("consume", &live)], &|| {
        finished.load(Ordering::Relaxed) == n
    });
    let (h, records, bytes, errors, last) = join_consumers(watch, start)?;
    Ok(PhaseResult::new(
        "consume",
        last - start,
        records,
        bytes,
        errors,
        h,
    ))
}

type ConsumerHandle = std::thread::JoinHandle<anyhow::Result<ConsumerOut>>;

#[allow(clippy::too_many_arguments)]
fn spawn_consumers(
    addr: std::net::SocketAddr,
    topic: &str,
    w: &Workload,
    start_offsets: &[(i32, i64)],
    end_offsets: Option<&Vec<(i32, i64)>>,
    end: Instant,
    e2e: bool,
    live: &Arc<Live>,
    pin: &Pinning,
) -> Vec<ConsumerHandle> {
    split_partitions(w.partitions, w.consumers)
        .into_iter()
        .enumerate()
        .map(|(i, parts)| {
            let spec = ConsumerSpec {
                addr,
                topic: topic.to_owned(),
                start: start_offsets
                    .iter()
                    .filter(|(p, _)| parts.contains(p))
                    .copied()
                    .collect(),
                stop_at: end_offsets.map(|e| {
                    e.iter()
                        .filter(|(p, _)| parts.contains(p))
                        .copied()
                        .collect()
                }),
                partitions: parts,
                end,
                e2e,
                live: live.clone(),
            };
            let pin = pin.clone();
            let index = w.producers + i;
            std::thread::spawn(move || {
                pin.pin(index);
                consumer(spec)
            })
        })
        .collect()
}

type Joined = (Histogram<u64>, u64, u64, u64, Instant);

fn join_consumers(
    handles: Vec<std::thread::JoinHandle<std::thread::Result<anyhow::Result<ConsumerOut>>>>,
    start: Instant,
) -> anyhow::Result<Joined> {
    let mut h = stats::histogram();
    let (mut records, mut bytes, mut errors) = (0, 0, 0);
    let mut last = start;
    for t in handles {
        let o = t
            .join()
            .map_err(|_| anyhow::anyhow!("consumer watcher panicked"))?
            .map_err(|_| anyhow::anyhow!("consumer panicked"))??;
        h.add(&o.h).ok();
        records += o.records;
        bytes += o.bytes;
        errors += o.errors;
        last = last.max(o.last);
    }
    Ok((h, records, bytes, errors, last))
}

/// Producers and consumers together; latency is from each record's intended send time to its
/// receipt by a consumer. Consumers start at the latest offsets, then producers start.
pub fn e2e_phase(
    addr: std::net::SocketAddr,
    topic: &str,
    w: &Workload,
    seconds: f64,
    rate: Option<f64>,
    pin: &Pinning,
) -> anyhow::Result<(PhaseResult, PhaseResult)> {
    let all: Vec<i32> = (0..w.partitions).collect();
    let mut c = Conn::connect(addr)?;
    let start_offsets = kafka::list_offsets(&mut c, topic, &all, -1)?;
    let clive = Arc::new(Live::default());
    let start = Instant::now();
    // Consumers run a little longer to drain what the producers sent last.
    let cend = start + Duration::from_secs_f64(seconds + 1.0);
    let handles = spawn_consumers(
        addr,
        topic,
        w,
        &start_offsets,
        None,
        cend,
        true,
        &clive,
        pin,
    );
    let plive = Arc::new(Live::default());
    let pend = start + Duration::from_secs_f64(seconds);
    let producers: Vec<_> = (0..w.producers.max(1))
        .map(|id| {
            let spec = ProducerSpec {
                id,
                addr,
                topic: topic.to_owned(),
                w: w.clone(),
                rate: rate.map(|r| r / w.producers.max(1) as f64),
                end: pend,
                live: plive.clone(),
            };
            let pin = pin.clone();
            std::thread::spawn(move || {
                pin.pin(id);
                producer(spec)
            })
        })
        .collect();
    progress(
        start,
        cend,
        &[("produce", &plive), ("e2e", &clive)],
        &|| false,
    );
    let mut ph = stats::histogram();
    let (mut records, mut bytes, mut errors) = (0, 0, 0);
    let mut last = start;
    for t in producers {
        let o = t
            .join()
            .map_err(|_| anyhow::anyhow!("producer panicked"))??;
        if let Some(oh) = &o.h {
            ph.add(oh).ok();
        }
        records += o.records;
        bytes += o.bytes;
        errors += o.errors;
        last = last.max(o.last_ack.unwrap_or(last));
    }
    let produced = PhaseResult::new("produce", last - start, records, bytes, errors, ph);
    let watch: Vec<_> = handles
        .into_iter()
        .map(|h| std::thread::spawn(move || h.join()))
        .collect();
    let (h, records, bytes, errors, last) = join_consumers(watch, start)?;
    let e2e = PhaseResult::new("e2e", last - start, records, bytes, errors, h);
    Ok((produced, e2e))
}

/// Prints the first few partition errors of a run to stderr, so a run that counts errors says
/// which (the count alone does not).
fn report_error(what: &str, topic: &str, partition: i32, code: i16) {
    static PRINTED: AtomicU32 = AtomicU32::new(0);
    if PRINTED.fetch_add(1, Ordering::Relaxed) < 10 {
        eprintln!("{what} error: topic {topic} partition {partition}: error code {code}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_net::record_batch::build::{BatchSpec, batch};

    /// A pending batch larger than the batch size (records due after a stall) leaves in
    /// batch-size pieces, oldest first; a small one leaves whole.
    #[test]
    fn take_batch_caps_records_per_batch() {
        let mut p = Pending::default();
        for t in 0..10u64 {
            p.times_ns.push_back(100 + t);
            p.values.extend(&[t as u8; 4]);
            p.keys.push_back(t.to_be_bytes());
        }
        p.first_ns = 100;
        let first = take_batch(&mut p, 4, 4);
        assert_eq!(first.times_ns, [100, 101, 102, 103]);
        assert_eq!(first.values.len(), 16);
        assert_eq!(first.keys.len(), 4);
        assert_eq!((p.times_ns.len(), p.values.len(), p.keys.len()), (6, 24, 6));
        assert_eq!(p.first_ns, 104);
        assert_eq!(p.values[0], 4);
        let second = take_batch(&mut p, 4, 4);
        assert_eq!(second.times_ns, [104, 105, 106, 107]);
        let last = take_batch(&mut p, 4, 4);
        assert_eq!(last.times_ns, [108, 109]);
        assert!(p.times_ns.is_empty() && p.values.is_empty() && p.keys.is_empty());
    }

    /// A fetch answer's batches are consumed from the fetch offset on: records before it (the
    /// start of a batch the offset falls into) are skipped, each value's timestamp is read, and
    /// a partial trailing batch is left for the next fetch.
    #[test]
    fn consume_batches_from_offset() {
        let vals: Vec<Vec<u8>> = (0..4u64)
            .map(|i| {
                let mut v = (100 + i).to_le_bytes().to_vec();
                v.extend_from_slice(&[7; 24]);
                v
            })
            .collect();
        let recs: Vec<KeyValue<'_>> = vals.iter().map(|v| (None, Some(&v[..]))).collect();
        let b1 = batch(
            &BatchSpec {
                base_offset: 10,
                ..BatchSpec::default()
            },
            &recs,
        );
        let b2 = batch(
            &BatchSpec {
                base_offset: 14,
                ..BatchSpec::default()
            },
            &recs,
        );
        let mut all = b1.to_vec();
        all.extend_from_slice(&b2[..b2.len() - 5]); // truncated second batch
        let mut seen = Vec::new();
        let (n, bytes, next) = consume_batches(Bytes::from(all), 12, |t| seen.push(t)).unwrap();
        assert_eq!(n, 2);
        assert_eq!(bytes, 64);
        assert_eq!(next, 14);
        assert_eq!(seen, vec![102, 103]);
    }

    #[test]
    fn partitions_split_round_robin() {
        assert_eq!(split_partitions(5, 2), vec![vec![0, 2, 4], vec![1, 3]]);
        assert_eq!(split_partitions(2, 4), vec![vec![0], vec![1]]);
    }
}
