//! Forgetting committed offsets: offsets retention (Kafka's KIP-211 rule) and the offsets of
//! deleted topics.
//!
//! Each step is a synchronous decision over the coordinator's groups that removes the
//! offsets from memory and returns their tombstones, so they stay gone after a restart; the
//! caller writes them ([`Coordinator::topics_deleted`] durably, the timers in the background).

use std::collections::HashMap;

use sluice_shard::Shard;

use super::coordinator::{Coordinator, tombstones};
use super::group::{Group, State};
use super::journal::{self, Record, Write};
use super::{offsets_partitions, partition_for};
use crate::metadata::TopicTable;

impl Coordinator {
    /// A topic was deleted: its committed offsets go from every group this core coordinates,
    /// as in Kafka (tombstones, written before this returns). `topics` is the table without
    /// them; a partition replaying meanwhile forgets them when its replay ends.
    pub async fn topics_deleted(
        &self,
        shard: &Shard,
        topics: &TopicTable,
        names: &[String],
        now_ms: i64,
    ) {
        if let Some(pending) = self.deleted_while_loading.borrow_mut().as_mut() {
            pending.extend(names.iter().cloned());
        }
        let n = offsets_partitions(topics);
        let loaded: Vec<i32> = self.loaded.borrow().iter().copied().collect();
        for p in loaded {
            let recs = self.forget_topics(&|t| names.iter().any(|n| n == t), p, n);
            if !recs.is_empty()
                && let Err(e) = journal::append(shard, p, &recs, now_ms).await
            {
                tracing::warn!(
                    partition = p,
                    error = e,
                    "cannot delete offsets of a deleted topic"
                );
            }
        }
    }

    /// Removes committed offsets of topics `gone(topic)` from the loaded groups of partition
    /// `p` (`partitions` = the partition count of `__consumer_offsets`); their tombstones.
    pub(super) fn forget_topics(
        &self,
        gone: &dyn Fn(&str) -> bool,
        p: i32,
        partitions: i32,
    ) -> Vec<Record> {
        let mut recs = Vec::new();
        let mut groups = self.groups.borrow_mut();
        for g in groups.values_mut() {
            if partition_for(&g.id, partitions) != p {
                continue;
            }
            let doomed: Vec<(String, i32)> =
                g.offsets.keys().filter(|(t, _)| gone(t)).cloned().collect();
            if doomed.is_empty() {
                continue;
            }
            recs.extend(tombstones(g, Some(&doomed), false));
            for k in &doomed {
                g.offsets.remove(k);
            }
        }
        recs
    }

    /// Whether the periodic retention check is due at `now` (and if so, it counts as run).
    pub fn retention_due(&self, now: i64) -> bool {
        if now - self.last_retention_check.get() < self.retention_check_ms {
            return false;
        }
        self.last_retention_check.set(now);
        true
    }

    /// Offsets retention (Kafka's KIP-211 rule): an empty group's offsets go `retention` after
    /// it became empty; a consumer group's offsets for topics no member subscribes to go
    /// `retention` after their commit. An empty group left without offsets is deleted. The
    /// tombstones, one write per `__consumer_offsets` partition.
    pub fn expire_offsets(&self, now: i64, partitions: i32) -> Vec<Write> {
        let mut writes: HashMap<i32, Vec<Record>> = HashMap::new();
        let mut groups = self.groups.borrow_mut();
        let mut dead = Vec::new();
        for g in groups.values_mut() {
            let expired = expired_offsets(g, now, self.retention_ms);
            let delete_group = g.state == State::Empty && g.offsets.len() == expired.len();
            if expired.is_empty() && !delete_group {
                continue;
            }
            let recs = tombstones(g, Some(&expired), delete_group);
            for k in &expired {
                g.offsets.remove(k);
            }
            tracing::info!(
                group = %g.id,
                offsets = expired.len(),
                deleted = delete_group,
                "offsets expired"
            );
            if delete_group {
                g.kill(now);
                dead.push(g.id.clone());
            }
            writes
                .entry(partition_for(&g.id, partitions))
                .or_default()
                .extend(recs);
        }
        for id in dead {
            groups.remove(&id);
        }
        writes
            .into_iter()
            .map(|(partition, records)| Write { partition, records })
            .collect()
    }
}

/// The offsets of `g` past retention at `now`.
fn expired_offsets(g: &Group, now: i64, retention_ms: i64) -> Vec<(String, i32)> {
    if g.state == State::Empty {
        if now >= g.state_since_ms.saturating_add(retention_ms) {
            return g.offsets.keys().cloned().collect();
        }
        return Vec::new();
    }
    let Some(subscribed) = g.subscribed_topics() else {
        return Vec::new();
    };
    g.offsets
        .iter()
        .filter(|((t, _), c)| {
            !subscribed.contains(t)
                && now >= c.value.commit_timestamp_ms.saturating_add(retention_ms)
        })
        .map(|(k, _)| k.clone())
        .collect()
}
