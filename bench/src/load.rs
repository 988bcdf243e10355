//! The actors: producers and consumers on plain threads with blocking sockets, and the phases
//! that run them (produce, consume, end to end) with a live progress line.
//!
//! Every phase first asks Metadata where the topic's partitions are led (`kafka::Leaders`) and
//! sends each partition's requests to its leader, one connection per leader broker, as Kafka's
//! clients do: one broker for a single node, the three of a cluster. A leader that moves during
//! the phase fails it (NOT_LEADER_OR_FOLLOWER: `kafka::leader_moved`); it is not followed.
//!
//! Producer: one writer thread that makes records, batches them per partition (sticky
//! round-robin, or murmur2 of a key as the Java client places keys) and writes produce requests
//! to each partition's leader; per leader, one connection and one reader thread that matches
//! answers to requests in order and records latencies. At most `in_flight` requests are
//! unanswered per connection; a full window holds that leader's batches, and in constant-rate
//! mode the records that could not be sent on time carry that wait in their latency (see
//! `rate.rs`). Every record's value starts with its intended send time (CLOCK_MONOTONIC ns,
//! little-endian), so a consumer on this machine measures end to end.
//!
//! Consumer: per leader of its partitions, a thread with one connection and one fetch in flight
//! (as Kafka's consumer per broker), every assigned partition of that leader in each fetch,
//! every batch CRC-checked and every record parsed, as a real consumer does. Throughput counts
//! record value bytes (payload), as Kafka's perf tools do.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use hdrhistogram::Histogram;
use serde::Serialize;
use sluice_net::record_batch::Batches;
use sluice_net::record_batch::build::{BatchSpec, batch};
use sluice_net::{ApiKey, Response};

use crate::kafka::{self, Bootstrap, Conn, Leaders};
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
/// Writes the time a batch leaves the producer into bytes 8..16 of each of its values (after
/// the intended send time in bytes 0..8), so a consumer can tell the producer's wait (linger,
/// closed windows) from the time the broker and the fetch took. Values under 16 bytes carry
/// the intended time only.
fn stamp_sent(values: &mut [u8], record_bytes: usize, sent_ns: u64) {
    if record_bytes < 16 {
        return;
    }
    for v in values.chunks_exact_mut(record_bytes) {
        v[8..16].copy_from_slice(&sent_ns.to_le_bytes());
    }
}

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

impl ProducerOut {
    /// Adds another connection's counts and latencies to these.
    fn merge(&mut self, o: ProducerOut) {
        match (&mut self.h, o.h) {
            (Some(h), Some(oh)) => {
                h.add(&oh).ok();
            }
            (h @ None, oh) => *h = oh,
            _ => {}
        }
        self.records += o.records;
        self.bytes += o.bytes;
        self.errors += o.errors;
        self.last_ack = self.last_ack.max(o.last_ack);
    }
}

/// Where a phase sends each partition's requests: the leaders Metadata named at its start, and
/// the bootstrap brokers to ask again when one answers NOT_LEADER_OR_FOLLOWER.
#[derive(Debug, Clone)]
struct Route {
    boot: Bootstrap,
    leaders: Arc<Leaders>,
}

impl Route {
    fn fetch(boot: &Bootstrap, topic: &str, partitions: i32) -> anyhow::Result<Route> {
        Ok(Route {
            boot: boot.clone(),
            leaders: Arc::new(Leaders::fetch(boot, topic, partitions)?),
        })
    }
}

struct ProducerSpec {
    id: usize,
    route: Route,
    topic: String,
    w: Workload,
    /// Records per second for this producer; `None` is as fast as the window allows.
    rate: Option<f64>,
    end: Instant,
    live: Arc<Live>,
}

/// A producer's connection to one leader broker: its own window of unanswered requests and,
/// unless acks is 0, its own reader thread, as Kafka's producer keeps a connection and an
/// in-flight window per broker.
struct Link {
    conn: Conn,
    in_flight: Arc<AtomicUsize>,
    /// To the reader, each request written, in order; `None` with acks 0 (no answers).
    tx: Option<Sender<InFlight>>,
    reader: Option<JoinHandle<anyhow::Result<ProducerOut>>>,
    /// The partition the next request to this leader starts from (Kafka's `drainIndex`): a
    /// request that cannot take every ready batch takes them in turn, so none starves.
    drain_from: usize,
}

impl Link {
    /// Connects to `addr` and starts the reader of its answers (the caller is the writer it
    /// wakes).
    fn connect(
        addr: SocketAddr,
        spec: &ProducerSpec,
        failed: &Arc<AtomicBool>,
    ) -> anyhow::Result<Link> {
        let conn = Conn::connect(addr)?;
        let in_flight = Arc::new(AtomicUsize::new(0));
        if spec.w.acks == 0 {
            return Ok(Link {
                conn,
                in_flight,
                tx: None,
                reader: None,
                drain_from: 0,
            });
        }
        let (tx, rx) = channel::<InFlight>();
        let r = ReaderSpec {
            conn: conn.try_clone()?,
            rx,
            in_flight: in_flight.clone(),
            writer: std::thread::current(),
            live: spec.live.clone(),
            failed: failed.clone(),
            boot: spec.route.boot.clone(),
        };
        let reader = std::thread::spawn(move || read_answers(r));
        Ok(Link {
            conn,
            in_flight,
            tx: Some(tx),
            reader: Some(reader),
            drain_from: 0,
        })
    }

    /// Whether another request may be written: fewer than `window` unanswered.
    fn open(&self, window: usize) -> bool {
        self.tx.is_none() || self.in_flight.load(Ordering::Acquire) < window
    }
}

/// What a link's reader works with.
struct ReaderSpec {
    conn: Conn,
    rx: Receiver<InFlight>,
    in_flight: Arc<AtomicUsize>,
    writer: std::thread::Thread,
    live: Arc<Live>,
    /// Set when this reader fails, so that the writer stops at once.
    failed: Arc<AtomicBool>,
    boot: Bootstrap,
}

/// Matches a link's answers to its requests in order and records each record's latency. A
/// NOT_LEADER_OR_FOLLOWER fails it with the leader a fresh Metadata names
/// (`kafka::leader_moved`); any failure also stops the producer's writer.
fn read_answers(r: ReaderSpec) -> anyhow::Result<ProducerOut> {
    let (failed, writer) = (r.failed.clone(), r.writer.clone());
    let out = read_loop(r);
    if out.is_err() {
        failed.store(true, Ordering::Release);
        writer.unpark();
    }
    out
}

fn read_loop(r: ReaderSpec) -> anyhow::Result<ProducerOut> {
    let ReaderSpec {
        mut conn,
        rx,
        in_flight,
        writer,
        live,
        boot,
        ..
    } = r;
    let mut rec = Recorder::default();
    let mut all = stats::histogram();
    let mut out = ProducerOut::default();
    let mut expected_id = 1i32;
    while let Ok(f) = rx.recv() {
        let frame = conn.recv_frame()?;
        let done = mono_ns();
        in_flight.fetch_sub(1, Ordering::Release);
        writer.unpark();
        let v = kafka::PRODUCE_VERSION;
        let r = kafka::decode_response(ApiKey::Produce, v, expected_id, frame)?;
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
                if q.error_code == kafka::NOT_LEADER_OR_FOLLOWER {
                    return Err(kafka::leader_moved(&boot, &t.name, q.index, conn.addr));
                }
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
}

/// One connection per leader broker of the topic; and, for each partition, its leader's link.
fn connect_links(
    spec: &ProducerSpec,
    failed: &Arc<AtomicBool>,
) -> anyhow::Result<(Vec<Link>, Vec<usize>)> {
    let all: Vec<i32> = (0..spec.w.partitions).collect();
    let groups = spec.route.leaders.by_broker(&all);
    let routed: usize = groups.iter().map(|(_, _, ps)| ps.len()).sum();
    anyhow::ensure!(
        routed == all.len(),
        "{}: {} of {} partitions have a leader",
        spec.topic,
        routed,
        all.len()
    );
    let mut link_of = vec![0; all.len()];
    let mut links = Vec::with_capacity(groups.len());
    for (i, (_, addr, parts)) in groups.into_iter().enumerate() {
        for p in parts {
            link_of[p as usize] = i;
        }
        links.push(Link::connect(addr, spec, failed)?);
    }
    Ok((links, link_of))
}

/// A producer's writer: makes records, batches them per partition, and writes each leader's
/// ready batches to that leader's link.
struct Writer {
    topic: String,
    w: Workload,
    record_bytes: usize,
    records_per_batch: usize,
    linger_ns: u64,
    /// Bytes of pending values the writer holds at most (the client's buffer).
    buffer_max: usize,
    /// A value that does not compress; each record's first 8 bytes are its send time.
    template: Vec<u8>,
    pending: Vec<Pending>,
    sticky: i32,
    key_state: u64,
    links: Vec<Link>,
    /// Partition to the link of its leader.
    link_of: Vec<usize>,
    /// With acks 0 the writer records the latencies (there is no answer).
    acks0: (Recorder, Histogram<u64>, ProducerOut),
    live: Arc<Live>,
}

impl Writer {
    fn new(spec: ProducerSpec, failed: &Arc<AtomicBool>) -> anyhow::Result<Writer> {
        let (links, link_of) = connect_links(&spec, failed)?;
        let ProducerSpec {
            id, topic, w, live, ..
        } = spec;
        let record_bytes = w.record_bytes.max(8);
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
        Ok(Writer {
            record_bytes,
            records_per_batch: (w.batch_bytes / (record_bytes + 24)).max(1),
            linger_ns: (w.linger_ms * 1e6) as u64,
            buffer_max: (w.partitions as usize * w.batch_bytes).min(32 << 20),
            template,
            pending: (0..w.partitions).map(|_| Pending::default()).collect(),
            sticky: (id as i32) % w.partitions,
            key_state: 0x2545_f491_4f6c_dd1du64 ^ ((id as u64) << 32),
            links,
            link_of,
            acks0: (
                Recorder::default(),
                stats::histogram(),
                ProducerOut::default(),
            ),
            topic,
            w,
            live,
        })
    }

    /// Adds one record sent at `t` to its partition's pending batch; returns the partition.
    fn add(&mut self, t: u64) -> usize {
        let partitions = self.w.partitions;
        let p = if let Some(keys) = self.w.keys {
            self.key_state ^= self.key_state << 13;
            self.key_state ^= self.key_state >> 7;
            self.key_state ^= self.key_state << 17;
            let key = (self.key_state % keys.max(1)).to_be_bytes();
            let p = partition_for_key(&key, partitions) as usize;
            self.pending[p].keys.push_back(key);
            p
        } else {
            let p = self.sticky as usize;
            if self.pending[p].times_ns.len() + 1 >= self.records_per_batch {
                self.sticky = (self.sticky + 1) % partitions;
            }
            p
        };
        let b = &mut self.pending[p];
        if b.times_ns.is_empty() {
            b.first_ns = t;
        }
        b.times_ns.push_back(t);
        b.values.extend(&t.to_le_bytes());
        b.values.extend(&self.template[8..]);
        p
    }

    fn pending_bytes(&self) -> usize {
        self.pending.iter().map(|b| b.values.len()).sum()
    }

    fn fill(&mut self, schedule: Option<&mut Schedule>, now: u64) {
        let mut bytes = self.pending_bytes();
        match schedule {
            Some(s) => {
                // Records due are made only while the client's buffer has room (as the Java
                // client's send blocks at buffer.memory); the rest keep their intended send
                // times in the schedule, so their wait still counts in the latency. Made
                // unbounded, a producer that fell behind spent its CPU growing its queues and
                // fell further behind.
                while bytes < self.buffer_max {
                    let Some(t) = s.take_due(now) else { break };
                    self.add(t);
                    bytes += self.record_bytes;
                }
            }
            None => {
                // As fast as possible: make records until a batch is full and its leader's
                // window is open, and while windows are closed keep filling the other
                // partitions' batches, up to the client's buffer.
                let mut any_full = false;
                while !any_full && bytes < self.buffer_max {
                    bytes += self.record_bytes;
                    let p = self.add(mono_ns());
                    any_full = self.pending[p].times_ns.len() >= self.records_per_batch
                        && self.links[self.link_of[p]].open(self.w.in_flight);
                }
            }
        }
    }

    /// Partitions with a batch to send (full, or lingered long enough) whose leader's window is
    /// open; and whether another such batch waits for a closed window.
    fn ready(&self, now: u64) -> (Vec<usize>, bool) {
        let mut ready = Vec::new();
        let mut blocked = false;
        for (p, b) in self.pending.iter().enumerate() {
            let due = !b.times_ns.is_empty()
                && (b.times_ns.len() >= self.records_per_batch
                    || b.first_ns + self.linger_ns <= now);
            if !due {
                continue;
            }
            if self.links[self.link_of[p]].open(self.w.in_flight) {
                ready.push(p);
            } else {
                blocked = true;
            }
        }
        (ready, blocked)
    }

    /// Nothing to send: sleeps to the next record's time or the first linger deadline on an
    /// open window (at most 1 ms); when a batch waits for a window, parks instead, so that an
    /// answer (the reader unparks the writer) ends the wait.
    fn wait(&self, schedule: Option<&Schedule>, now: u64, end_ns: u64, blocked: bool) {
        let next_linger = self
            .pending
            .iter()
            .enumerate()
            .filter(|(p, b)| {
                !b.times_ns.is_empty() && self.links[self.link_of[*p]].open(self.w.in_flight)
            })
            .map(|(_, b)| b.first_ns + self.linger_ns)
            .min()
            .unwrap_or(u64::MAX);
        let next = schedule
            .map_or(u64::MAX, Schedule::peek)
            .min(next_linger)
            .min(end_ns);
        let wait = Duration::from_nanos(next.saturating_sub(now).min(1_000_000));
        if blocked {
            // Records already due wait for an answer too (nothing can be sent before one).
            let wait = if wait.is_zero() {
                Duration::from_millis(1)
            } else {
                wait
            };
            std::thread::park_timeout(wait);
        } else if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }

    /// Writes the ready batches, one request per leader; false when a reader has failed (the
    /// error comes out of `finish`).
    fn send(&mut self, ready: Vec<usize>) -> anyhow::Result<bool> {
        let mut by_link: Vec<Vec<usize>> = vec![Vec::new(); self.links.len()];
        for p in ready {
            by_link[self.link_of[p]].push(p);
        }
        for (link, parts) in by_link.into_iter().enumerate() {
            if !parts.is_empty() && !self.send_to(link, parts)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// One produce request of `ready`'s batches (at most 1 MiB of them, as Kafka's
    /// max.request.size; the rest wait) to one leader, taken as the Java client drains: from
    /// where the last request to this leader stopped, round the partitions, until one does
    /// not fit (it starts the next request).
    fn send_to(&mut self, link: usize, mut ready: Vec<usize>) -> anyhow::Result<bool> {
        let n = self.pending.len();
        let from = self.links[link].drain_from;
        ready.sort_by_key(|&p| (p + n - from) % n);
        let batch_max = self.records_per_batch * self.record_bytes;
        let mut request_bytes = 0;
        let taken = ready
            .iter()
            .take_while(|&&p| {
                let size = self.pending[p].values.len().min(batch_max);
                let fits = request_bytes == 0 || request_bytes + size <= 1 << 20;
                if fits {
                    request_bytes += size;
                }
                fits
            })
            .count();
        self.links[link].drain_from = ready.get(taken).map_or(from, |&p| p);
        ready.truncate(taken);
        let (batches, times, payload) = self.take(&ready);
        let req = kafka::produce_request(&self.topic, self.w.acks, batches);
        let l = &mut self.links[link];
        let Some(tx) = &l.tx else {
            l.conn.send(kafka::PRODUCE_VERSION, &req)?;
            let done = mono_ns();
            let (rec, all, out) = &mut self.acks0;
            for t in &times {
                let us = corrected_latency_ns(*t, done) / 1000;
                rec.record_us(us);
                all.saturating_record(us.max(1));
            }
            out.records += times.len() as u64;
            out.bytes += payload;
            self.live.add(times.len() as u64, payload);
            rec.maybe_flush(&self.live);
            return Ok(true);
        };
        l.in_flight.fetch_add(1, Ordering::AcqRel);
        let f = InFlight {
            times_ns: times,
            payload_bytes: payload,
        };
        if tx.send(f).is_err() {
            return Ok(false);
        }
        l.conn.send(kafka::PRODUCE_VERSION, &req)?;
        Ok(true)
    }

    /// Takes a batch off each of `partitions`: the encoded batches, their records' intended
    /// send times, their value bytes.
    fn take(&mut self, partitions: &[usize]) -> (Vec<(i32, Bytes)>, Vec<u64>, u64) {
        let mut batches = Vec::with_capacity(partitions.len());
        let mut times = Vec::new();
        let mut payload = 0u64;
        let sent = mono_ns();
        for &p in partitions {
            let mut b = take_batch(
                &mut self.pending[p],
                self.records_per_batch,
                self.record_bytes,
            );
            stamp_sent(&mut b.values, self.record_bytes, sent);
            let recs: Vec<KeyValue<'_>> = b
                .values
                .chunks_exact(self.record_bytes)
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
        (batches, times, payload)
    }

    /// Closes the windows, waits for every reader and adds up what they counted.
    fn finish(self) -> anyhow::Result<ProducerOut> {
        let mut out = ProducerOut::default();
        let mut failure = None;
        for l in self.links {
            drop(l.tx);
            let Some(reader) = l.reader else { continue };
            let joined = reader
                .join()
                .map_err(|_| anyhow::anyhow!("producer reader panicked"))
                .and_then(|r| r);
            match joined {
                Ok(o) => out.merge(o),
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        if self.w.acks == 0 {
            let (mut rec, all, mut o) = self.acks0;
            rec.flush(&self.live);
            o.h = Some(all);
            o.last_ack = Some(Instant::now());
            out.merge(o);
        }
        Ok(out)
    }
}

fn producer(spec: ProducerSpec) -> anyhow::Result<ProducerOut> {
    let failed = Arc::new(AtomicBool::new(false));
    let (rate, end) = (spec.rate, spec.end);
    let mut wr = Writer::new(spec, &failed)?;
    let mut schedule = rate.map(|r| Schedule::new(mono_ns(), r));
    let end_ns = mono_ns() + end.saturating_duration_since(Instant::now()).as_nanos() as u64;
    loop {
        let now = mono_ns();
        if now >= end_ns || failed.load(Ordering::Acquire) {
            break;
        }
        wr.fill(schedule.as_mut(), now);
        let now = mono_ns();
        let (ready, blocked) = wr.ready(now);
        if ready.is_empty() {
            wr.wait(schedule.as_ref(), now, end_ns, blocked);
            continue;
        }
        if !wr.send(ready)? {
            break;
        }
    }
    wr.finish()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StartAt {
    Earliest,
    Latest,
}

struct ConsumerSpec {
    /// The leader of `partitions`.
    addr: SocketAddr,
    /// Asked again when the leader answers NOT_LEADER_OR_FOLLOWER, for the error.
    boot: Bootstrap,
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
    /// End to end from the time each record's batch left the producer (e2e runs only).
    from_send: Histogram<u64>,
    records: u64,
    bytes: u64,
    errors: u64,
    last: Instant,
}

impl ConsumerOut {
    fn new(last: Instant) -> ConsumerOut {
        ConsumerOut {
            h: stats::histogram(),
            from_send: stats::histogram(),
            records: 0,
            bytes: 0,
            errors: 0,
            last,
        }
    }

    /// One record received at `now`: its latency from its intended send time, and from its
    /// batch's send when the value carries it.
    fn record_e2e(&mut self, rec: &mut Recorder, intended: u64, sent: Option<u64>, now: u64) {
        let us = corrected_latency_ns(intended, now) / 1000;
        rec.record_us(us);
        self.h.saturating_record(us.max(1));
        if let Some(sent) = sent {
            let us = corrected_latency_ns(sent, now) / 1000;
            self.from_send.saturating_record(us.max(1));
        }
    }
}

fn consumer(spec: ConsumerSpec) -> anyhow::Result<ConsumerOut> {
    let mut conn = Conn::connect(spec.addr)?;
    let mut offsets = spec.start.clone();
    let mut rec = Recorder::default();
    let mut out = ConsumerOut::new(Instant::now());
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
                if p.error_code == kafka::NOT_LEADER_OR_FOLLOWER {
                    let at = conn.addr;
                    return Err(kafka::leader_moved(
                        &spec.boot,
                        &t.topic,
                        p.partition_index,
                        at,
                    ));
                }
                if p.error_code != 0 {
                    report_error("fetch", &t.topic, p.partition_index, p.error_code);
                    out.errors += 1;
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
                let (n, bytes, next) = consume_batches(records, slot.1, |ts, sent| {
                    if spec.e2e {
                        out.record_e2e(&mut rec, ts, sent, now);
                    }
                })?;
                if n > 0 {
                    got_any = true;
                    slot.1 = next;
                    out.records += n;
                    out.bytes += bytes;
                    spec.live.add(n, bytes);
                    out.last = Instant::now();
                }
            }
        }
        if !spec.e2e && got_any {
            let us = (now - sent) / 1000;
            rec.record_us(us);
            out.h.saturating_record(us.max(1));
        }
        rec.maybe_flush(&spec.live);
    }
    rec.flush(&spec.live);
    Ok(out)
}

/// Walks the batches of one partition's fetch answer from `from`: checks each batch's CRC,
/// parses every record at or past `from`, hands each value's leading timestamps to `on_record`:
/// the intended send time, and the time its batch was sent when the value has one.
/// Returns (records, value bytes, next offset). A partial trailing batch is left for the next
/// fetch, as Kafka's consumer does.
pub fn consume_batches(
    records: Bytes,
    from: i64,
    mut on_record: impl FnMut(u64, Option<u64>),
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
                    let sent = match v.get(8..16) {
                        Some(b) => Some(u64::from_le_bytes(b.try_into()?)),
                        None => None,
                    };
                    on_record(u64::from_le_bytes(v[..8].try_into()?), sent);
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
    boot: &Bootstrap,
    topic: &str,
    w: &Workload,
    seconds: f64,
    rate: Option<f64>,
    pin: &Pinning,
) -> anyhow::Result<PhaseResult> {
    let route = Route::fetch(boot, topic, w.partitions)?;
    let live = Arc::new(Live::default());
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(seconds);
    let handles: Vec<_> = (0..w.producers.max(1))
        .map(|id| {
            let spec = ProducerSpec {
                id,
                route: route.clone(),
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
    // Until the end, or until every producer is done (one that failed ends the phase early).
    progress(start, end, &[("produce", &live)], &|| {
        handles.iter().all(JoinHandle::is_finished)
    });
    let label = if rate.is_some() {
        "produce@rate"
    } else {
        "produce"
    };
    join_producers(handles, label, start)
}

/// Every producer's counts and ack latencies, as one phase's result.
fn join_producers(
    handles: Vec<JoinHandle<anyhow::Result<ProducerOut>>>,
    label: &str,
    start: Instant,
) -> anyhow::Result<PhaseResult> {
    let mut all = ProducerOut::default();
    for t in handles {
        all.merge(
            t.join()
                .map_err(|_| anyhow::anyhow!("producer panicked"))??,
        );
    }
    let last = all.last_ack.unwrap_or(start).max(start);
    let h = all.h.unwrap_or_else(stats::histogram);
    Ok(PhaseResult::new(
        label,
        last - start,
        all.records,
        all.bytes,
        all.errors,
        h,
    ))
}

/// Reads every partition of `topic` from `start_at`; with `catch_up` it stops once the end
/// offsets seen at the start are reached (a hot read of what was just produced), else at
/// `seconds`.
pub fn consume_phase(
    boot: &Bootstrap,
    topic: &str,
    w: &Workload,
    seconds: f64,
    start_at: StartAt,
    catch_up: bool,
    pin: &Pinning,
) -> anyhow::Result<PhaseResult> {
    let all: Vec<i32> = (0..w.partitions).collect();
    let route = Route::fetch(boot, topic, w.partitions)?;
    let ts = if start_at == StartAt::Earliest {
        -2
    } else {
        -1
    };
    let start_offsets = kafka::list_offsets(&route.leaders, topic, &all, ts)?;
    let end_offsets = if catch_up {
        Some(kafka::list_offsets(&route.leaders, topic, &all, -1)?)
    } else {
        None
    };
    let live = Arc::new(Live::default());
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(seconds);
    let handles = spawn_consumers(
        &route,
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
    let c = join_consumers(watch, start)?;
    Ok(PhaseResult::new(
        "consume",
        c.last - start,
        c.records,
        c.bytes,
        c.errors,
        c.h,
    ))
}

type ConsumerHandle = std::thread::JoinHandle<anyhow::Result<ConsumerOut>>;

/// Each consumer's partitions (round-robin over `w.consumers`), and for each consumer a thread
/// per leader of its partitions.
#[allow(clippy::too_many_arguments)]
fn spawn_consumers(
    route: &Route,
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
        .flat_map(|(i, parts)| {
            route
                .leaders
                .by_broker(&parts)
                .into_iter()
                .map(move |(_, addr, parts)| (i, addr, parts))
        })
        .map(|(i, addr, parts)| {
            let spec = ConsumerSpec {
                addr,
                boot: route.boot.clone(),
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

/// Every consumer's counts and latencies, added up.
fn join_consumers(
    handles: Vec<std::thread::JoinHandle<std::thread::Result<anyhow::Result<ConsumerOut>>>>,
    start: Instant,
) -> anyhow::Result<ConsumerOut> {
    let mut all = ConsumerOut::new(start);
    for t in handles {
        let o = t
            .join()
            .map_err(|_| anyhow::anyhow!("consumer watcher panicked"))?
            .map_err(|_| anyhow::anyhow!("consumer panicked"))??;
        all.h.add(&o.h).ok();
        all.from_send.add(&o.from_send).ok();
        all.records += o.records;
        all.bytes += o.bytes;
        all.errors += o.errors;
        all.last = all.last.max(o.last);
    }
    Ok(all)
}

/// Producers and consumers together; latency is from each record's intended send time to its
/// receipt by a consumer. Consumers start at the latest offsets, then producers start.
pub fn e2e_phase(
    boot: &Bootstrap,
    topic: &str,
    w: &Workload,
    seconds: f64,
    rate: Option<f64>,
    pin: &Pinning,
) -> anyhow::Result<E2e> {
    let all: Vec<i32> = (0..w.partitions).collect();
    let route = Route::fetch(boot, topic, w.partitions)?;
    let start_offsets = kafka::list_offsets(&route.leaders, topic, &all, -1)?;
    let clive = Arc::new(Live::default());
    let start = Instant::now();
    // Consumers run a little longer to drain what the producers sent last.
    let cend = start + Duration::from_secs_f64(seconds + 1.0);
    let handles = spawn_consumers(
        &route,
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
                route: route.clone(),
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
    let produced = join_producers(producers, "produce", start)?;
    let watch: Vec<_> = handles
        .into_iter()
        .map(|h| std::thread::spawn(move || h.join()))
        .collect();
    let c = join_consumers(watch, start)?;
    let took = c.last - start;
    let from_send = PhaseResult::new("e2e-sent", took, c.records, c.bytes, c.errors, c.from_send);
    let e2e = PhaseResult::new("e2e", took, c.records, c.bytes, c.errors, c.h);
    Ok(E2e {
        produced,
        from_send,
        e2e,
    })
}

/// What an end-to-end phase measured.
pub struct E2e {
    /// The producers' acks, from each record's intended send time.
    pub produced: PhaseResult,
    /// Consumer receipt, from the time each record's batch left the producer: the broker's
    /// and the fetch's share, without the producer's linger and window waits.
    pub from_send: PhaseResult,
    /// Consumer receipt, from each record's intended send time.
    pub e2e: PhaseResult,
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
        let (n, bytes, next) = consume_batches(Bytes::from(all), 12, |t, _| seen.push(t)).unwrap();
        assert_eq!(n, 2);
        assert_eq!(bytes, 64);
        assert_eq!(next, 14);
        assert_eq!(seen, vec![102, 103]);
    }

    /// The send time stamped into each value (after its intended time) reaches the consumer
    /// beside the intended time; values too short for it carry the intended time only.
    #[test]
    fn send_time_travels_with_each_value() {
        let mut values = Vec::new();
        for t in [5u64, 6] {
            values.extend_from_slice(&t.to_le_bytes());
            values.extend_from_slice(&[9; 16]);
        }
        stamp_sent(&mut values, 24, 77);
        let recs: Vec<KeyValue<'_>> = values.chunks(24).map(|v| (None, Some(v))).collect();
        let b = batch(&BatchSpec::default(), &recs);
        let mut seen = Vec::new();
        consume_batches(b, 0, |t, sent| seen.push((t, sent))).unwrap();
        assert_eq!(seen, vec![(5, Some(77)), (6, Some(77))]);
        let mut short = 8u64.to_le_bytes().to_vec();
        stamp_sent(&mut short, 8, 77);
        let b = batch(&BatchSpec::default(), &[(None, Some(&short[..]))]);
        seen.clear();
        consume_batches(b, 0, |t, sent| seen.push((t, sent))).unwrap();
        assert_eq!(seen, vec![(8, None)]);
    }

    #[test]
    fn partitions_split_round_robin() {
        assert_eq!(split_partitions(5, 2), vec![vec![0, 2, 4], vec![1, 3]]);
        assert_eq!(split_partitions(2, 4), vec![vec![0], vec![1]]);
    }

    /// A fake cluster on loopback for routing tests: `n` brokers (ids 1..=n), each answering
    /// Metadata with all of them and partition p led by broker (p + epoch) % n + 1, and Produce
    /// by noting (broker, partition) and answering NOT_LEADER_OR_FOLLOWER for a partition it
    /// does not lead at the current epoch. After `move_after` produce requests in all the epoch
    /// goes up by one: every leader moves.
    struct Fake {
        addrs: Vec<SocketAddr>,
        got: Arc<std::sync::Mutex<Vec<(i32, i32)>>>,
    }

    struct FakeState {
        n: i32,
        addrs: Vec<SocketAddr>,
        epoch: AtomicUsize,
        requests: AtomicUsize,
        move_after: usize,
        got: Arc<std::sync::Mutex<Vec<(i32, i32)>>>,
    }

    impl FakeState {
        fn leader(&self, p: i32) -> i32 {
            (p + self.epoch.load(Ordering::SeqCst) as i32) % self.n + 1
        }
    }

    impl Fake {
        fn start(n: usize, move_after: usize) -> Fake {
            let listeners: Vec<std::net::TcpListener> = (0..n)
                .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
                .collect();
            let addrs: Vec<SocketAddr> =
                listeners.iter().map(|l| l.local_addr().unwrap()).collect();
            let got = Arc::new(std::sync::Mutex::new(Vec::new()));
            let state = Arc::new(FakeState {
                n: n as i32,
                addrs: addrs.clone(),
                epoch: AtomicUsize::new(0),
                requests: AtomicUsize::new(0),
                move_after,
                got: got.clone(),
            });
            for (i, l) in listeners.into_iter().enumerate() {
                let state = state.clone();
                std::thread::spawn(move || {
                    for s in l.incoming() {
                        let state = state.clone();
                        let s = s.unwrap();
                        std::thread::spawn(move || serve(&state, i as i32 + 1, s));
                    }
                });
            }
            Fake { addrs, got }
        }
    }

    /// One connection of fake broker `id`: answers until the client closes it.
    fn serve(state: &FakeState, id: i32, mut s: std::net::TcpStream) {
        use sluice_net::messages::metadata_response::{
            MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
        };
        use sluice_net::messages::produce_response::{
            PartitionProduceResponse, TopicProduceResponse,
        };
        use sluice_net::messages::{MetadataResponse, ProduceResponse};
        use std::io::{Read, Write};
        loop {
            let mut len = [0u8; 4];
            if s.read_exact(&mut len).is_err() {
                return;
            }
            let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
            s.read_exact(&mut body).unwrap();
            let (h, req) = sluice_net::decode_request(Bytes::from(body)).unwrap();
            let (v, cid) = (h.request_api_version, h.correlation_id);
            let chunks = match req {
                sluice_net::Request::Metadata(m) => {
                    let topic = m.topics.unwrap()[0].name.clone().unwrap();
                    let partitions = (0..6)
                        .map(|p| MetadataResponsePartition {
                            partition_index: p,
                            leader_id: state.leader(p).into(),
                            isr_nodes: (1..=state.n).map(Into::into).collect(),
                            ..Default::default()
                        })
                        .collect();
                    let r = MetadataResponse {
                        brokers: (state.addrs.iter().enumerate())
                            .map(|(i, a)| MetadataResponseBroker {
                                node_id: (i as i32 + 1).into(),
                                host: "127.0.0.1".into(),
                                port: i32::from(a.port()),
                                ..Default::default()
                            })
                            .collect(),
                        topics: vec![MetadataResponseTopic {
                            name: Some(topic),
                            partitions,
                            ..Default::default()
                        }],
                        ..Default::default()
                    };
                    sluice_net::response_frame(ApiKey::Metadata, v, cid, |e| r.encode(e, v))
                }
                sluice_net::Request::Produce(p) => {
                    let responses = (p.topic_data.iter())
                        .map(|t| TopicProduceResponse {
                            name: t.name.clone(),
                            partition_responses: (t.partition_data.iter())
                                .map(|d| {
                                    let leads = state.leader(d.index) == id;
                                    if leads {
                                        state.got.lock().unwrap().push((id, d.index));
                                    }
                                    PartitionProduceResponse {
                                        index: d.index,
                                        error_code: if leads { 0 } else { 6 },
                                        ..Default::default()
                                    }
                                })
                                .collect(),
                            ..Default::default()
                        })
                        .collect();
                    if state.requests.fetch_add(1, Ordering::SeqCst) + 1 == state.move_after {
                        state.epoch.fetch_add(1, Ordering::SeqCst);
                    }
                    let r = ProduceResponse {
                        responses,
                        ..Default::default()
                    };
                    sluice_net::response_frame(ApiKey::Produce, v, cid, |e| r.encode(e, v))
                }
                other => panic!("fake broker: unexpected {:?}", other.api_key()),
            };
            for c in chunks {
                s.write_all(&c).unwrap();
            }
        }
    }

    fn six_partitions() -> Workload {
        let mut w = Workload::named("max-rate-1-topic-16-partitions-1kb").unwrap();
        w.partitions = 6;
        w.linger_ms = 1.0;
        w
    }

    /// Bootstrapped from one broker of three, a producer learns the others from Metadata and
    /// sends every partition's batches to its leader only (a broker answers
    /// NOT_LEADER_OR_FOLLOWER for the others, which would fail the phase); every broker and
    /// every partition gets some.
    #[test]
    fn produce_goes_to_each_partitions_leader() {
        let fake = Fake::start(3, usize::MAX);
        let boot = Bootstrap::parse(&fake.addrs[1].to_string()).unwrap();
        let w = six_partitions();
        let r = produce_phase(&boot, "t", &w, 0.5, None, &Pinning::default()).unwrap();
        assert!(r.records > 0, "{r:?}");
        assert_eq!(r.errors, 0);
        let got = fake.got.lock().unwrap();
        let brokers: std::collections::BTreeSet<i32> = got.iter().map(|g| g.0).collect();
        let partitions: std::collections::BTreeSet<i32> = got.iter().map(|g| g.1).collect();
        assert_eq!(brokers.into_iter().collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(
            partitions.into_iter().collect::<Vec<_>>(),
            (0..6).collect::<Vec<_>>()
        );
        assert!(got.iter().all(|&(b, p)| p % 3 + 1 == b), "{got:?}");
    }

    /// Leaders that move in the middle of a phase fail it soon, not at its end, with an error
    /// that names NOT_LEADER_OR_FOLLOWER and the leader a fresh Metadata gives.
    #[test]
    fn a_leader_change_fails_the_phase_with_the_new_leader() {
        let fake = Fake::start(3, 20);
        let boot = Bootstrap::parse(&fake.addrs[0].to_string()).unwrap();
        let w = six_partitions();
        let t = Instant::now();
        let e = produce_phase(&boot, "t", &w, 20.0, None, &Pinning::default()).unwrap_err();
        let msg = format!("{e:#}");
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "took {:?}",
            t.elapsed()
        );
        assert!(
            msg.contains("NOT_LEADER_OR_FOLLOWER from 127.0.0.1:"),
            "{msg}"
        );
        assert!(msg.contains("Metadata now names broker "), "{msg}");
    }
}
