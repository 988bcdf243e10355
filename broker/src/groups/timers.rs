//! The group timers: one task per core that, every [`TICK`], moves groups whose deadlines
//! passed (sessions, rebalance and sync deadlines, the initial rebalance delay) and, every
//! `offsets.retention.check.interval.ms`, expires offsets.
//!
//! The task borrows what it needs and is spawned by the caller, which owns the core; the
//! metadata records the tick produces are written in the background, in order.

use std::time::Duration;

use sluice_shard::Shard;

use super::coordinator::{Coordinator, metadata_write_placed};
use super::journal::{self, Write};
use crate::stop::StopSignal;

/// How often group timers (sessions, rebalance and sync deadlines, the initial delay) run.
pub const TICK: Duration = Duration::from_millis(20);

/// Runs this core's group timers until the broker stops. `offsets_partitions` reads the
/// current partition count of `__consumer_offsets` (1 before the topic exists).
pub async fn run(
    coordinator: &Coordinator,
    shard: &Shard,
    stop: &StopSignal,
    offsets_partitions: &dyn Fn() -> i32,
    now_ms: fn() -> i64,
) {
    loop {
        glommio::timer::sleep(TICK).await;
        if stop.is_stopping() {
            return;
        }
        let now = now_ms();
        let n = offsets_partitions();
        for write in coordinator.tick(now, n) {
            journal::spawn_write(shard, write, now);
        }
        if coordinator.retention_due(now) {
            for write in coordinator.expire_offsets(now, n) {
                journal::spawn_write(shard, write, now);
            }
        }
    }
}

impl Coordinator {
    /// One tick at `now` over the groups with a deadline; the metadata of those that changed
    /// (`partitions` = the partition count of `__consumer_offsets`).
    pub fn tick(&self, now: i64, partitions: i32) -> Vec<Write> {
        let limits = self.limits;
        let mut groups = self.groups.borrow_mut();
        groups
            .values_mut()
            .filter(|g| g.has_timers())
            .filter_map(|g| {
                g.tick(&limits, now);
                metadata_write_placed(g, partitions)
            })
            .collect()
    }
}
