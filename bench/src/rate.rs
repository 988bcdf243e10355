//! Constant-rate pacing with coordinated-omission correction.
//!
//! A client that waits for the system before sending its next request stops sending while the
//! system stalls, so the stall shows up in one sample only ("coordinated omission"). Here every
//! record has an *intended* send time, fixed in advance by the rate (`start + i / rate`),
//! whatever the system does; latency is counted from that intended time. A record that could
//! not be sent on time because the client was blocked behind a stall carries the wait in its
//! latency, so a stall shows up in the percentiles as it would for a real, independent user.
//! In max-throughput mode there is no schedule: a record's intended time is when it was made.

/// Hands out intended send times, in nanoseconds on the caller's clock.
#[derive(Debug, Clone)]
pub struct Schedule {
    start_ns: u64,
    interval_ns: f64,
    sent: u64,
}

impl Schedule {
    /// `rate` records per second starting at `start_ns`.
    pub fn new(start_ns: u64, rate: f64) -> Schedule {
        assert!(rate > 0.0, "rate must be positive");
        Schedule {
            start_ns,
            interval_ns: 1e9 / rate,
            sent: 0,
        }
    }

    /// The intended time of the next record, without taking it.
    pub fn peek(&self) -> u64 {
        self.start_ns + (self.sent as f64 * self.interval_ns) as u64
    }

    /// Takes the next record's intended time if it is due at `now_ns`.
    pub fn take_due(&mut self, now_ns: u64) -> Option<u64> {
        let t = self.peek();
        if t <= now_ns {
            self.sent += 1;
            Some(t)
        } else {
            None
        }
    }
}

/// Latency of one record: from its intended send time (corrected) to `done_ns`.
pub fn corrected_latency_ns(intended_ns: u64, done_ns: u64) -> u64 {
    done_ns.saturating_sub(intended_ns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdrhistogram::Histogram;

    /// Records come due exactly at `start + i / rate`, never early, and a late caller gets every
    /// missed record at once (catch-up) with its original intended time.
    #[test]
    fn schedule_spacing_and_catch_up() {
        let mut s = Schedule::new(1_000, 1000.0); // 1 ms apart
        assert_eq!(s.take_due(999), None);
        assert_eq!(s.take_due(1_000), Some(1_000));
        assert_eq!(s.take_due(1_000), None);
        // 5.5 ms later: records 1..=5 are all due, with their own times.
        let now = 1_000 + 5_500_000;
        let due: Vec<u64> = std::iter::from_fn(|| s.take_due(now)).collect();
        assert_eq!(
            due,
            (1..=5).map(|i| 1_000 + i * 1_000_000).collect::<Vec<_>>()
        );
        // Over a long run the count sent matches the rate.
        let mut s = Schedule::new(0, 50_000.0);
        let n = std::iter::from_fn(|| s.take_due(1_000_000_000)).count();
        assert_eq!(n, 50_001);
    }

    /// A simulated synchronous client at 1000 records/s with 100 µs service time, and one stall
    /// of 1 s. Counted from the actual send time (uncorrected) the stall is a single sample and
    /// p99 stays at 100 µs; counted from the intended time (corrected) the ~1000 records that
    /// queued behind the stall carry their wait, so p99 and p99.9 show the stall.
    #[test]
    fn stall_shows_in_corrected_percentiles() {
        let mut corrected = Histogram::<u64>::new(3).unwrap();
        let mut naive = Histogram::<u64>::new(3).unwrap();
        let mut s = Schedule::new(0, 1000.0);
        let mut now = 0u64;
        for i in 0..10_000u64 {
            let intended = s.peek();
            now = now.max(intended);
            let _ = s.take_due(now).expect("due");
            let service = if i == 5_000 { 1_000_000_000 } else { 100_000 };
            let sent = now;
            now += service;
            corrected
                .record(corrected_latency_ns(intended, now) / 1000)
                .unwrap();
            naive.record((now - sent) / 1000).unwrap();
        }
        assert!(
            naive.value_at_quantile(0.99) <= 101,
            "naive p99 {}",
            naive.value_at_quantile(0.99)
        );
        assert!(
            corrected.value_at_quantile(0.99) > 500_000,
            "corrected p99 {} us",
            corrected.value_at_quantile(0.99)
        );
        assert!(corrected.value_at_quantile(0.9) > 50_000);
        assert!(corrected.max() >= 1_000_000);
        // Everything before the stall is unaffected.
        assert!(corrected.value_at_quantile(0.5) <= 101);
    }
}
