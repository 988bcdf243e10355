//! Latency histograms and what is reported from them: the percentile summary (p50, p90, p99,
//! p99.9, p99.99, max), the percentile curve kept in the JSON for `plot`, HdrHistogram's
//! percentile-distribution text format (`--hgrm`), and the live figures the progress line
//! reads once a second.
//!
//! All latencies are recorded in microseconds. Histograms track 1 µs to 1 hour with 3
//! significant digits; a value beyond that saturates rather than failing the run.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use hdrhistogram::Histogram;
use serde::Serialize;

const HIGHEST_US: u64 = 3_600_000_000;
const SIGFIG: u8 = 3;

/// A latency histogram in microseconds.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_US, SIGFIG).expect("valid histogram bounds")
}

/// The percentiles every report carries, in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct Percentiles {
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p99_9_us: u64,
    pub p99_99_us: u64,
    pub max_us: u64,
    pub count: u64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        Percentiles {
            p50_us: h.value_at_quantile(0.5),
            p90_us: h.value_at_quantile(0.9),
            p99_us: h.value_at_quantile(0.99),
            p99_9_us: h.value_at_quantile(0.999),
            p99_99_us: h.value_at_quantile(0.9999),
            max_us: h.max(),
            count: h.len(),
        }
    }

    #[cfg(test)]
    /// Whether the percentiles never decrease from p50 to max (true of any real histogram).
    pub fn is_ordered(&self) -> bool {
        self.p50_us <= self.p90_us
            && self.p90_us <= self.p99_us
            && self.p99_us <= self.p99_9_us
            && self.p99_9_us <= self.p99_99_us
            && self.p99_99_us <= self.max_us
    }

    /// One table row: `p50 p90 p99 p99.9 p99.99 max`, in milliseconds.
    pub fn row(&self) -> String {
        let ms = |us: u64| us as f64 / 1000.0;
        format!(
            "{:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
            ms(self.p50_us),
            ms(self.p90_us),
            ms(self.p99_us),
            ms(self.p99_9_us),
            ms(self.p99_99_us),
            ms(self.max_us)
        )
    }

    pub const HEADER: &'static str = "   p50 ms    p90 ms    p99 ms  p99.9 ms p99.99 ms    max ms";
}

/// The percentile curve for plots: `(percentile, latency µs)` points, five per halving of the
/// distance to 100 %, as HdrHistogram's own percentile output steps.
pub fn curve(h: &Histogram<u64>) -> Vec<(f64, u64)> {
    if h.is_empty() {
        return Vec::new();
    }
    h.iter_quantiles(5)
        .map(|v| (v.quantile_iterated_to() * 100.0, v.value_iterated_to()))
        .collect()
}

/// HdrHistogram's percentile-distribution text (the `.hgrm` format its plotter reads), with
/// values in milliseconds (recorded µs / 1000).
pub fn hgrm(h: &Histogram<u64>) -> String {
    let scale = 1000.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    for v in h.iter_quantiles(5) {
        total += v.count_since_last_iteration();
        let q = v.quantile_iterated_to();
        let value = v.value_iterated_to() as f64 / scale;
        if q < 1.0 {
            let _ = writeln!(
                out,
                "{value:>12.3} {q:>2.12} {total:>10} {:>14.2}",
                1.0 / (1.0 - q)
            );
        } else {
            let _ = writeln!(out, "{value:>12.3} {q:>2.12} {total:>10}");
        }
    }
    let sub_buckets = (2 * 10u64.pow(u32::from(h.sigfig()))).next_power_of_two();
    let _ = writeln!(
        out,
        "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]",
        h.mean() / scale,
        h.stdev() / scale
    );
    let _ = writeln!(
        out,
        "#[Max     = {:>12.3}, Total count    = {:>12}]",
        h.max() as f64 / scale,
        h.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        h.buckets(),
        sub_buckets
    );
    out
}

/// Figures shared between the worker threads and the progress line. Workers add counts with
/// relaxed atomics and merge their histograms in now and then (every few thousand samples or
/// 100 ms), so the lock is taken rarely.
#[derive(Debug)]
pub struct Live {
    pub records: AtomicU64,
    pub bytes: AtomicU64,
    pub errors: AtomicU64,
    latency: Mutex<Histogram<u64>>,
}

impl Default for Live {
    fn default() -> Self {
        Live {
            records: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency: Mutex::new(histogram()),
        }
    }
}

impl Live {
    pub fn add(&self, records: u64, bytes: u64) {
        self.records.fetch_add(records, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Moves `h`'s samples into the shared histogram and clears `h`.
    pub fn merge(&self, h: &mut Histogram<u64>) {
        if h.is_empty() {
            return;
        }
        if let Ok(mut l) = self.latency.lock() {
            let _ = l.add(&*h);
        }
        h.reset();
    }

    #[cfg(test)]
    pub fn snapshot(&self) -> Histogram<u64> {
        self.latency
            .lock()
            .map(|h| h.clone())
            .unwrap_or_else(|_| histogram())
    }

    pub fn p99_us(&self) -> u64 {
        self.latency
            .lock()
            .map(|h| h.value_at_quantile(0.99))
            .unwrap_or(0)
    }
}

/// A worker's local histogram that flushes into [`Live`] every 100 ms.
#[derive(Debug)]
pub struct Recorder {
    pub h: Histogram<u64>,
    last_flush: Instant,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            h: histogram(),
            last_flush: Instant::now(),
        }
    }
}

impl Recorder {
    pub fn record_us(&mut self, us: u64) {
        self.h.saturating_record(us.max(1));
    }

    pub fn maybe_flush(&mut self, live: &Live) {
        if self.last_flush.elapsed().as_millis() >= 100 {
            live.merge(&mut self.h);
            self.last_flush = Instant::now();
        }
    }

    pub fn flush(&mut self, live: &Live) {
        live.merge(&mut self.h);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Percentiles of a known uniform distribution land where they must and are ordered; the
    /// hgrm text has HdrHistogram's header, one line per iteration step, and the footer with
    /// the count and max, in milliseconds.
    #[test]
    fn percentiles_and_hgrm() {
        let mut h = histogram();
        for us in 1..=10_000u64 {
            h.record(us).unwrap();
        }
        let p = Percentiles::of(&h);
        assert!((4990..=5010).contains(&p.p50_us), "{p:?}");
        assert!((8990..=9010).contains(&p.p90_us), "{p:?}");
        assert!((9890..=9910).contains(&p.p99_us), "{p:?}");
        assert_eq!(p.count, 10_000);
        assert!(p.is_ordered());
        let text = hgrm(&h);
        let mut lines = text.lines();
        let head: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(
            head,
            ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
        );
        assert!(
            text.contains("#[Max     =       10.007, Total count    =        10000]"),
            "{text}"
        );
        assert!(text.contains("SubBuckets     =         2048]"));
        // Data lines: value, percentile, cumulative count, monotone; the last reaches 10000.
        let rows: Vec<Vec<f64>> = text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.contains("Value"))
            .map(|l| l.split_whitespace().map(|x| x.parse().unwrap()).collect())
            .collect();
        assert!(rows.len() > 20);
        assert!(
            rows.windows(2)
                .all(|w| w[0][0] <= w[1][0] && w[0][1] <= w[1][1])
        );
        assert_eq!(rows.last().unwrap()[2], 10_000.0);
        assert_eq!(rows.last().unwrap()[1], 1.0);
        let c = curve(&h);
        assert_eq!(c.len(), rows.len());
    }

    /// Samples merged into `Live` from a worker are visible to the progress line and leave the
    /// worker's histogram empty.
    #[test]
    fn live_merge() {
        let live = Live::default();
        let mut r = Recorder::default();
        r.record_us(0); // clamped to 1 µs, the lowest trackable value
        r.record_us(500);
        r.flush(&live);
        assert!(r.h.is_empty());
        assert_eq!(live.snapshot().len(), 2);
        assert!(live.p99_us() >= 499);
    }
}
