//! Metrics: each core counts in plain cells of its own (no atomics, no locks on the request
//! path); a scrape of `/metrics` (served by the control core) gathers every core's [`Snapshot`] over the
//! mesh and encodes them in Prometheus' text format with `prometheus-client`, each series
//! labelled with its `core`.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::limits::{METRICS_HEAD_BYTES_MAX, METRICS_READ_BYTES};

/// Upper bounds (seconds) of the latency histograms: 50 µs … 10 s.
pub const LATENCY_BOUNDS_S: [f64; 17] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// A latency histogram over [`LATENCY_BOUNDS_S`] (plus +Inf).
#[derive(Debug, Clone, Default)]
pub struct Hist {
    /// Non-cumulative counts, one per bound plus the +Inf bucket.
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl Hist {
    pub fn observe(&mut self, d: Duration) {
        if self.counts.is_empty() {
            self.counts = vec![0; LATENCY_BOUNDS_S.len() + 1];
        }
        let s = d.as_secs_f64();
        let i = LATENCY_BOUNDS_S
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(LATENCY_BOUNDS_S.len());
        self.counts[i] += 1;
        self.sum += s;
        self.count += 1;
    }

    fn buckets(&self) -> Vec<(f64, u64)> {
        LATENCY_BOUNDS_S
            .iter()
            .copied()
            .chain(std::iter::once(f64::MAX))
            .enumerate()
            .map(|(i, b)| (b, self.counts.get(i).copied().unwrap_or(0)))
            .collect()
    }
}

/// Bytes and records in and out of one topic on one core.
#[derive(Debug, Clone, Copy, Default)]
pub struct TopicIo {
    pub bytes_in: u64,
    pub records_in: u64,
    pub bytes_out: u64,
    pub records_out: u64,
}

/// One core's counters.
#[derive(Debug, Default)]
pub struct CoreMetrics {
    requests: RefCell<BTreeMap<&'static str, Hist>>,
    topics: RefCell<BTreeMap<String, TopicIo>>,
    rejected: RefCell<BTreeMap<&'static str, u64>>,
    connections_accepted: Cell<u64>,
    connections_refused: Cell<u64>,
}

impl CoreMetrics {
    /// A request of `api` was answered after `elapsed`.
    pub fn request(&self, api: &'static str, elapsed: Duration) {
        self.requests
            .borrow_mut()
            .entry(api)
            .or_default()
            .observe(elapsed);
    }

    /// A request was refused (the connection closed) for `reason`.
    pub fn rejected(&self, reason: &'static str) {
        *self.rejected.borrow_mut().entry(reason).or_default() += 1;
    }

    pub fn connection_accepted(&self) {
        self.connections_accepted
            .set(self.connections_accepted.get() + 1);
    }

    /// A connection was closed as soon as it was accepted: the core held
    /// `core_connections_max` connections.
    pub fn connection_refused(&self) {
        self.connections_refused
            .set(self.connections_refused.get() + 1);
    }

    fn topic(&self, topic: &str, f: impl FnOnce(&mut TopicIo)) {
        let mut topics = self.topics.borrow_mut();
        match topics.get_mut(topic) {
            Some(io) => f(io),
            None => f(topics.entry(topic.to_owned()).or_default()),
        }
    }

    pub fn produced(&self, topic: &str, bytes: u64, records: u64) {
        self.topic(topic, |io| {
            io.bytes_in += bytes;
            io.records_in += records;
        });
    }

    pub fn fetched(&self, topic: &str, bytes: u64, records: u64) {
        self.topic(topic, |io| {
            io.bytes_out += bytes;
            io.records_out += records;
        });
    }
}

/// What one core reports on a scrape (plain data: it crosses cores).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub core: usize,
    pub requests: Vec<(String, Hist)>,
    pub topics: Vec<(String, TopicIo)>,
    pub rejected: Vec<(String, u64)>,
    pub connections_open: u64,
    pub connections_accepted: u64,
    pub connections_refused: u64,
    pub requests_in_flight: u64,
    pub cache_bytes: u64,
    pub partitions: u64,
    pub groups_by_state: Vec<(String, u64)>,
    pub storage: sluice_shard::ShardStats,
    /// Fetch long polls parked on this core's partitions right now.
    pub fetch_waits: u64,
    /// This core's fetch sessions (KIP-227).
    pub fetch_sessions: crate::fetch_sessions::SessionStats,
    /// The offset after the last metadata record in this core's image (0: none; a
    /// single-node broker has none).
    pub metadata_end: u64,
}

impl CoreMetrics {
    /// This core's counters now; the caller fills the gauges of other services.
    pub fn snapshot(&self, core: usize) -> Snapshot {
        Snapshot {
            core,
            requests: self
                .requests
                .borrow()
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            topics: self
                .topics
                .borrow()
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            rejected: self
                .rejected
                .borrow()
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
            connections_accepted: self.connections_accepted.get(),
            connections_refused: self.connections_refused.get(),
            ..Snapshot::default()
        }
    }
}

/// Every core's snapshot encoded as one Prometheus text exposition.
#[derive(Debug)]
struct Gathered(Vec<Snapshot>);

fn family<F>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    mut each: F,
) -> Result<(), std::fmt::Error>
where
    F: FnMut(
        &mut dyn FnMut(Vec<(&str, String)>, Value) -> Result<(), std::fmt::Error>,
    ) -> Result<(), std::fmt::Error>,
{
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    each(&mut |labels, value| {
        let m = metric.encode_family(&labels)?;
        match value {
            Value::Counter(v) => ConstCounter::new(v).encode(m),
            Value::Gauge(v) => ConstGauge::new(v).encode(m),
            Value::Hist(sum, count, buckets) => {
                let mut m = m;
                m.encode_histogram::<Vec<(&str, String)>>(sum, count, &buckets, None)
            }
        }
    })
}

/// A value of one series.
enum Value {
    Counter(u64),
    Gauge(i64),
    /// Sum, count and non-cumulative (upper bound, count) buckets, the last one +Inf.
    Hist(f64, u64, Vec<(f64, u64)>),
}

impl Collector for Gathered {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let cores = &self.0;
        let core = |s: &Snapshot| ("core", s.core.to_string());
        family(
            &mut e,
            "sluice_requests",
            "Requests answered, by API, with their handling time in seconds.",
            MetricType::Histogram,
            |put| {
                for s in cores {
                    for (api, h) in &s.requests {
                        put(
                            vec![core(s), ("api", api.clone())],
                            Value::Hist(h.sum, h.count, h.buckets()),
                        )?;
                    }
                }
                Ok(())
            },
        )?;
        type Field = fn(&TopicIo) -> u64;
        let topic_fields: [(&str, &str, Field); 4] = [
            (
                "sluice_topic_bytes_in",
                "Record batch bytes appended, by topic.",
                |t| t.bytes_in,
            ),
            (
                "sluice_topic_records_in",
                "Records appended, by topic.",
                |t| t.records_in,
            ),
            (
                "sluice_topic_bytes_out",
                "Record batch bytes served by Fetch, by topic.",
                |t| t.bytes_out,
            ),
            (
                "sluice_topic_records_out",
                "Records served by Fetch, by topic.",
                |t| t.records_out,
            ),
        ];
        for (name, help, field) in topic_fields {
            family(&mut e, name, help, MetricType::Counter, |put| {
                for s in cores {
                    for (topic, io) in &s.topics {
                        put(
                            vec![core(s), ("topic", topic.clone())],
                            Value::Counter(field(io)),
                        )?;
                    }
                }
                Ok(())
            })?;
        }
        family(
            &mut e,
            "sluice_requests_rejected",
            "Requests refused with the connection closed, by reason.",
            MetricType::Counter,
            |put| {
                for s in cores {
                    for (reason, n) in &s.rejected {
                        put(
                            vec![core(s), ("reason", reason.clone())],
                            Value::Counter(*n),
                        )?;
                    }
                }
                Ok(())
            },
        )?;
        type Scalar = fn(&Snapshot) -> u64;
        family(
            &mut e,
            "sluice_fsync_seconds",
            "fdatasync latency of partition appends (one per group commit).",
            MetricType::Histogram,
            |put| {
                for s in cores {
                    let st = &s.storage;
                    let buckets: Vec<(f64, u64)> = sluice_shard::FSYNC_BOUNDS_US
                        .iter()
                        .map(|b| *b as f64 / 1e6)
                        .chain(std::iter::once(f64::MAX))
                        .enumerate()
                        .map(|(i, b)| (b, st.fsync_buckets.get(i).copied().unwrap_or(0)))
                        .collect();
                    put(
                        vec![core(s)],
                        Value::Hist(st.fsync_sum_us as f64 / 1e6, st.fsync_count, buckets),
                    )?;
                }
                Ok(())
            },
        )?;
        let counters: [(&str, &str, Scalar); 6] = [
            (
                "sluice_fetch_session_evictions",
                "Fetch sessions evicted for new ones (or grown past core_fetch_session_bytes_max).",
                |s| s.fetch_sessions.evictions,
            ),
            (
                "sluice_incremental_fetches",
                "Incremental fetches served through a fetch session (KIP-227).",
                |s| s.fetch_sessions.incremental_fetches,
            ),
            (
                "sluice_connections_accepted",
                "Client connections accepted.",
                |s| s.connections_accepted,
            ),
            (
                "sluice_connections_refused",
                "Client connections closed as soon as accepted: the core held \
                 core_connections_max connections.",
                |s| s.connections_refused,
            ),
            (
                "sluice_cache_hits",
                "Partition reads answered from memory (the batch cache or unwritten batches).",
                |s| s.storage.cache_hits,
            ),
            (
                "sluice_cache_misses",
                "Partition reads that went to disk.",
                |s| s.storage.cache_misses,
            ),
        ];
        for (name, help, field) in counters {
            family(&mut e, name, help, MetricType::Counter, |put| {
                for s in cores {
                    put(vec![core(s)], Value::Counter(field(s)))?;
                }
                Ok(())
            })?;
        }
        let gauges: [(&str, &str, Scalar); 9] = [
            (
                "sluice_fetch_sessions",
                "Incremental fetch sessions (KIP-227) the core keeps for its connections.",
                |s| s.fetch_sessions.sessions,
            ),
            (
                "sluice_fetch_session_partitions",
                "Partitions kept in the core's fetch sessions.",
                |s| s.fetch_sessions.partitions,
            ),
            (
                "sluice_fetch_session_bytes",
                "Memory counted for the core's fetch sessions.",
                |s| s.fetch_sessions.bytes,
            ),
            ("sluice_connections_open", "Client connections open.", |s| {
                s.connections_open
            }),
            (
                "sluice_requests_in_flight",
                "Requests being handled.",
                |s| s.requests_in_flight,
            ),
            (
                "sluice_fetch_waits",
                "Fetch long polls parked on the core's partitions.",
                |s| s.fetch_waits,
            ),
            (
                "sluice_metadata_end",
                "Offset after the last metadata record in the core's image (0: none).",
                |s| s.metadata_end,
            ),
            (
                "sluice_cache_bytes",
                "Bytes of record batches in the core's cache.",
                |s| s.cache_bytes,
            ),
            ("sluice_partitions", "Partitions the core owns.", |s| {
                s.partitions
            }),
        ];
        for (name, help, field) in gauges {
            family(&mut e, name, help, MetricType::Gauge, |put| {
                for s in cores {
                    put(
                        vec![core(s)],
                        Value::Gauge(i64::try_from(field(s)).unwrap_or(i64::MAX)),
                    )?;
                }
                Ok(())
            })?;
        }
        family(
            &mut e,
            "sluice_consumer_groups",
            "Consumer groups the core coordinates, by state.",
            MetricType::Gauge,
            |put| {
                for s in cores {
                    for (state, n) in &s.groups_by_state {
                        put(
                            vec![core(s), ("state", state.clone())],
                            Value::Gauge(i64::try_from(*n).unwrap_or(i64::MAX)),
                        )?;
                    }
                }
                Ok(())
            },
        )
    }
}

/// Encodes snapshots as Prometheus text.
pub fn encode(snapshots: Vec<Snapshot>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Gathered(snapshots)));
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

/// Serves `GET /metrics` on `addr` until the broker stops (the control core runs it). A port that cannot
/// be bound is logged and metrics are off: the broker itself runs on.
pub fn spawn_server<F, Fut>(addr: SocketAddr, stop: Rc<dyn Fn() -> bool>, gather: F)
where
    F: Fn() -> Fut + 'static,
    Fut: std::future::Future<Output = Vec<Snapshot>> + 'static,
{
    let gather = Rc::new(gather);
    let listener = match crate::connection::listen_exclusive(addr) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(%addr, error = %e, "cannot serve metrics on this address; metrics are off");
            return;
        }
    };
    let bound = listener.local_addr().unwrap_or(addr);
    println!("sluice: metrics on http://{bound}/metrics");
    tracing::info!(addr = %bound, "serving Prometheus metrics at /metrics");
    glommio::spawn_local(async move {
        loop {
            let Ok(mut stream) = listener.accept().await else {
                continue;
            };
            if stop() {
                return;
            }
            let gather = Rc::clone(&gather);
            glommio::spawn_local(async move {
                let mut head = Vec::with_capacity(METRICS_READ_BYTES);
                let mut buf = [0u8; METRICS_READ_BYTES];
                let ended = |head: &[u8]| head.windows(4).any(|w| w == b"\r\n\r\n");
                while !ended(&head) && head.len() < METRICS_HEAD_BYTES_MAX {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
                let (status, body) = if line.starts_with(b"GET /metrics ") || line == b"GET /metrics" {
                    ("200 OK", encode(gather().await))
                } else {
                    ("404 Not Found", "only /metrics is served here\n".to_owned())
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.close().await;
            })
            .detach();
        }
    })
    .detach();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves the exposition is Prometheus text with the expected series and labels.
    #[test]
    fn encodes_series_with_core_labels() {
        let mut h = Hist::default();
        h.observe(Duration::from_micros(70));
        h.observe(Duration::from_secs(20));
        let s = Snapshot {
            core: 1,
            requests: vec![("Produce".into(), h)],
            topics: vec![(
                "t".into(),
                TopicIo {
                    bytes_in: 10,
                    records_in: 2,
                    ..TopicIo::default()
                },
            )],
            connections_open: 3,
            connections_refused: 2,
            groups_by_state: vec![("Stable".into(), 1)],
            fetch_sessions: crate::fetch_sessions::SessionStats {
                sessions: 4,
                incremental_fetches: 9,
                ..Default::default()
            },
            ..Snapshot::default()
        };
        let text = encode(vec![s]);
        assert!(text.contains("# TYPE sluice_requests histogram"), "{text}");
        assert!(
            text.contains(r#"sluice_requests_bucket{le="0.0001",core="1",api="Produce"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"sluice_requests_bucket{le="+Inf",core="1",api="Produce"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"sluice_requests_count{core="1",api="Produce"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"sluice_topic_bytes_in_total{core="1",topic="t"} 10"#),
            "{text}"
        );
        assert!(
            text.contains(r#"sluice_connections_open{core="1"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"sluice_connections_refused_total{core="1"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"sluice_consumer_groups{core="1",state="Stable"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"sluice_fetch_sessions{core="1"} 4"#),
            "{text}"
        );
        assert!(
            text.contains(r#"sluice_incremental_fetches_total{core="1"} 9"#),
            "{text}"
        );
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
    }
}
