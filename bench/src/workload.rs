//! Workloads: the shape of the load (partitions, producers, consumers, record and batch sizes,
//! acks, rate), named after the OpenMessaging Benchmark files users know and scaled to a small
//! machine, and the command-line flags that pick one and override its fields.
//!
//! OMB's `1-topic-16-partitions-1kb` runs 1 producer and 1 consumer at 50,000 records/s of
//! 1 KiB; `1-topic-100-partitions-1kb-4p-4c` runs 4 and 4 on 100 partitions. On a 2-core machine
//! shared with the broker we keep the shapes and set the rates to 20,000 records/s (about
//! 20 MB/s, well under what the disk syncs); the `max-rate-*` variants drop the rate.

use serde::Serialize;

/// One topic's load.
#[derive(Debug, Clone, Serialize)]
pub struct Workload {
    pub name: String,
    pub partitions: i32,
    pub producers: usize,
    pub consumers: usize,
    /// Value bytes per record (the first 8 carry the send time).
    pub record_bytes: usize,
    /// Records are batched per partition up to about this many bytes.
    pub batch_bytes: usize,
    /// A partly filled batch is sent after this long.
    pub linger_ms: f64,
    /// 0, 1 or -1 (all).
    pub acks: i16,
    /// Unanswered produce requests allowed per connection.
    pub in_flight: usize,
    /// `Some(n)`: keyed records, keys drawn from n values, placed by murmur2 as the Java client
    /// does; `None`: sticky round-robin (a batch per partition in turn).
    pub keys: Option<u64>,
    /// Records per second over all producers; `None` is max throughput.
    pub rate: Option<f64>,
    /// Replicas of each partition when the bench creates the topic; with 3 or more the topic
    /// gets min.insync.replicas=2 (`kafka::create_topic`).
    pub replication_factor: i16,
}

pub const NAMES: [&str; 4] = [
    "1-topic-16-partitions-1kb",
    "1-topic-100-partitions-1kb-4p-4c",
    "max-rate-1-topic-16-partitions-1kb",
    "max-rate-1-topic-100-partitions-1kb-4p-4c",
];

impl Workload {
    pub fn named(name: &str) -> anyhow::Result<Workload> {
        let base = Workload {
            name: name.to_owned(),
            partitions: 16,
            producers: 1,
            consumers: 1,
            record_bytes: 1024,
            batch_bytes: 64 << 10,
            linger_ms: 5.0,
            acks: -1,
            in_flight: 8,
            keys: None,
            rate: Some(20_000.0),
            replication_factor: 1,
        };
        let w = match name {
            "1-topic-16-partitions-1kb" => base,
            "1-topic-100-partitions-1kb-4p-4c" => Workload {
                partitions: 100,
                producers: 4,
                consumers: 4,
                ..base
            },
            "max-rate-1-topic-16-partitions-1kb" => Workload { rate: None, ..base },
            "max-rate-1-topic-100-partitions-1kb-4p-4c" => Workload {
                partitions: 100,
                producers: 4,
                consumers: 4,
                rate: None,
                ..base
            },
            other => anyhow::bail!("unknown workload {other:?}; known: {}", NAMES.join(", ")),
        };
        Ok(w)
    }
}

/// Flags shared by `produce`, `consume`, `e2e` and `compare`. Each set flag overrides the
/// workload's field.
#[derive(clap::Args, Debug, Clone)]
pub struct WorkloadArgs {
    /// Named workload (OpenMessaging Benchmark shapes): 1-topic-16-partitions-1kb,
    /// 1-topic-100-partitions-1kb-4p-4c, max-rate-1-topic-16-partitions-1kb,
    /// max-rate-1-topic-100-partitions-1kb-4p-4c.
    #[arg(long, default_value = "1-topic-16-partitions-1kb")]
    pub workload: String,
    /// Topic to use (default: a new one per run, bench-<pid>-<time>).
    #[arg(long)]
    pub topic: Option<String>,
    #[arg(long)]
    pub partitions: Option<i32>,
    #[arg(long)]
    pub producers: Option<usize>,
    #[arg(long)]
    pub consumers: Option<usize>,
    /// Value bytes per record.
    #[arg(long)]
    pub record_bytes: Option<usize>,
    #[arg(long)]
    pub batch_bytes: Option<usize>,
    #[arg(long)]
    pub linger_ms: Option<f64>,
    /// all, 1 or 0.
    #[arg(long)]
    pub acks: Option<String>,
    /// Unanswered produce requests per connection.
    #[arg(long)]
    pub in_flight: Option<usize>,
    /// Keyed records from this many keys (murmur2 placement); default round-robin.
    #[arg(long)]
    pub keys: Option<u64>,
    /// Records per second over all producers (constant rate, coordinated-omission corrected);
    /// 0 means max throughput.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Replicas per partition of the topic the bench creates (default 1; `compare --cluster N`:
    /// min(N, 3)); 3 or more also sets the topic's min.insync.replicas=2.
    #[arg(long)]
    pub replication_factor: Option<i16>,
}

impl WorkloadArgs {
    pub fn resolve(&self) -> anyhow::Result<Workload> {
        let mut w = Workload::named(&self.workload)?;
        if let Some(v) = self.partitions {
            w.partitions = v.max(1);
        }
        if let Some(v) = self.producers {
            w.producers = v.max(1);
        }
        if let Some(v) = self.consumers {
            w.consumers = v.max(1);
        }
        if let Some(v) = self.record_bytes {
            anyhow::ensure!(
                v >= 8,
                "--record-bytes must be at least 8 (the send timestamp)"
            );
            w.record_bytes = v;
        }
        if let Some(v) = self.batch_bytes {
            w.batch_bytes = v;
        }
        if let Some(v) = self.linger_ms {
            w.linger_ms = v;
        }
        if let Some(v) = &self.acks {
            w.acks = match v.as_str() {
                "all" | "-1" => -1,
                "1" => 1,
                "0" => 0,
                other => anyhow::bail!("--acks {other}: use all, 1 or 0"),
            };
        }
        if let Some(v) = self.in_flight {
            w.in_flight = v.max(1);
        }
        if self.keys.is_some() {
            w.keys = self.keys;
        }
        if let Some(r) = self.rate {
            w.rate = (r > 0.0).then_some(r);
        }
        if let Some(n) = self.replication_factor {
            anyhow::ensure!(n >= 1, "--replication-factor must be at least 1");
            w.replication_factor = n;
        }
        Ok(w)
    }

    pub fn topic(&self) -> String {
        self.topic.clone().unwrap_or_else(|| {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            format!("bench-{}-{t}", std::process::id())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every advertised name resolves, flags override the named fields, and `--rate 0` means
    /// max throughput.
    #[test]
    fn names_and_overrides() {
        for n in NAMES {
            Workload::named(n).unwrap();
        }
        let w = Workload::named("1-topic-100-partitions-1kb-4p-4c").unwrap();
        assert_eq!((w.partitions, w.producers, w.consumers), (100, 4, 4));
        assert!(
            Workload::named("max-rate-1-topic-16-partitions-1kb")
                .unwrap()
                .rate
                .is_none()
        );
        let a = WorkloadArgs {
            workload: "1-topic-16-partitions-1kb".into(),
            topic: None,
            partitions: Some(3),
            producers: None,
            consumers: None,
            record_bytes: Some(100),
            batch_bytes: None,
            linger_ms: None,
            acks: Some("1".into()),
            in_flight: None,
            keys: Some(10),
            rate: Some(0.0),
            replication_factor: Some(3),
        };
        let w = a.resolve().unwrap();
        assert_eq!(
            (w.partitions, w.record_bytes, w.acks, w.keys, w.rate),
            (3, 100, 1, Some(10), None)
        );
        assert_eq!(w.replication_factor, 3);
        assert!(Workload::named("nope").is_err());
    }
}
