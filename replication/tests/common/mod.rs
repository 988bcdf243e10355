//! The simulator's safety checker. It watches every live replica after every step and keeps,
//! per partition, every record that has been below some replica's high watermark (the
//! committed record) and every acknowledged acks=all record; a violation is a message naming
//! the partition, offset, replicas and records involved.
//!
//! Properties:
//! - nothing below a high watermark is ever changed: a replica's record below its high
//!   watermark equals the committed record there (so no two replicas disagree below the
//!   smaller of their high watermarks; `agree_below_high_watermarks` also compares pairs
//!   directly);
//! - nothing committed is ever lost: a leader of an epoch at least the one a record was
//!   committed in holds it, unless it is below the leader's log start (deleted by retention)
//!   (checked when a replica is first seen leading an epoch, when a record is committed, and
//!   in full every so often);
//! - every acknowledged record is committed, with the same offset, epoch and bytes;
//! - at most one leader per (partition, leader epoch), over the whole run;
//! - a leader's high watermark never moves backwards within its leader epoch.

use std::collections::BTreeMap;

use sluice_replication::{Epoch, Log, MemLog, Offset, PartitionReplica, ReplicaId};

/// A committed record: its batch's epoch and bytes, and the leader epoch of the replica that
/// first showed it below its high watermark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub epoch: Epoch,
    pub bytes: Vec<u8>,
    pub committed_in: Epoch,
}

/// The checker's record of one partition.
#[derive(Debug, Clone, Default)]
pub struct PartitionRecord {
    pub committed: BTreeMap<Offset, Committed>,
    pub acked: BTreeMap<Offset, (Epoch, Vec<u8>)>,
    pub leaders: BTreeMap<Epoch, ReplicaId>,
    /// The last high watermark each (leader epoch) leader showed.
    pub leader_high_watermarks: BTreeMap<Epoch, Offset>,
}

/// The checker.
#[derive(Debug, Clone, Default)]
pub struct Checker {
    pub partitions: Vec<PartitionRecord>,
}

impl Checker {
    pub fn new(partition_count: usize) -> Checker {
        Checker {
            partitions: vec![PartitionRecord::default(); partition_count],
        }
    }

    /// Checks one live replica; `checked` is how far below its high watermark it was already
    /// compared (reset to 0 by the caller when the replica restarts).
    pub fn observe(
        &mut self,
        partition: usize,
        node: ReplicaId,
        replica: &PartitionReplica<MemLog>,
        checked: &mut Offset,
    ) -> Result<Vec<Offset>, String> {
        if let Some(leader) = replica.leader() {
            self.observe_leader(partition, node, replica, leader.leader_epoch())?;
        }
        let high_watermark = replica.high_watermark();
        let epoch = replica.leader_epoch().unwrap_or_default();
        let mut fresh = Vec::new();
        // Below the log start, records are deleted (retention), not lost.
        *checked = (*checked).max(replica.log().log_start());
        while *checked < high_watermark {
            let offset = *checked;
            let Some((record_epoch, bytes)) = replica.log().record(offset) else {
                return Err(format!(
                    "p{partition}: replica {} has high watermark {} but no record at {}",
                    node.0, high_watermark.0, offset.0
                ));
            };
            let record = Committed {
                epoch: record_epoch,
                bytes: bytes.to_vec(),
                committed_in: epoch,
            };
            if self.commit(partition, node, offset, record)? {
                fresh.push(offset);
            }
            *checked = offset.next();
        }
        Ok(fresh)
    }

    fn commit(
        &mut self,
        partition: usize,
        node: ReplicaId,
        offset: Offset,
        record: Committed,
    ) -> Result<bool, String> {
        let committed = &mut self.partitions[partition].committed;
        match committed.get(&offset) {
            Some(c) if (c.epoch, &c.bytes) != (record.epoch, &record.bytes) => Err(format!(
                "p{partition}: replica {} has {:?} below its high watermark at {}, where {:?} \
                 was committed",
                node.0, record, offset.0, c
            )),
            Some(_) => Ok(false),
            None => {
                committed.insert(offset, record);
                Ok(true)
            }
        }
    }

    /// One leader per epoch; a new leader holds everything committed; its high watermark
    /// never goes back.
    fn observe_leader(
        &mut self,
        partition: usize,
        node: ReplicaId,
        replica: &PartitionReplica<MemLog>,
        epoch: Epoch,
    ) -> Result<(), String> {
        let record = &mut self.partitions[partition];
        match record.leaders.get(&epoch) {
            Some(&other) if other != node => {
                return Err(format!(
                    "p{partition}: two leaders in epoch {}: {} and {}",
                    epoch.0, other.0, node.0
                ));
            }
            Some(_) => {}
            None => {
                record.leaders.insert(epoch, node);
                self.leader_holds_all(partition, node, replica)?;
            }
        }
        let high_watermark = replica.high_watermark();
        let last = self.partitions[partition]
            .leader_high_watermarks
            .entry(epoch)
            .or_insert(high_watermark);
        if high_watermark < *last {
            return Err(format!(
                "p{partition}: leader {} of epoch {} moved its high watermark back from {} to {}",
                node.0, epoch.0, last.0, high_watermark.0
            ));
        }
        *last = high_watermark;
        Ok(())
    }

    /// A leader (of an epoch at least the commit's) holds every committed record.
    pub fn leader_holds_all(
        &self,
        partition: usize,
        node: ReplicaId,
        replica: &PartitionReplica<MemLog>,
    ) -> Result<(), String> {
        let offsets: Vec<Offset> = self.partitions[partition]
            .committed
            .keys()
            .copied()
            .collect();
        for offset in offsets {
            self.leader_holds(partition, node, replica, offset)?;
        }
        Ok(())
    }

    /// `leader_holds_all` for one offset.
    pub fn leader_holds(
        &self,
        partition: usize,
        node: ReplicaId,
        replica: &PartitionReplica<MemLog>,
        offset: Offset,
    ) -> Result<(), String> {
        let Some(epoch) = replica.leader().map(|l| l.leader_epoch()) else {
            return Ok(());
        };
        let Some(c) = self.partitions[partition].committed.get(&offset) else {
            return Ok(());
        };
        if epoch < c.committed_in || offset < replica.log().log_start() {
            return Ok(());
        }
        match replica.log().record(offset) {
            Some((e, bytes)) if e == c.epoch && bytes == c.bytes.as_slice() => Ok(()),
            other => Err(format!(
                "p{partition}: leader {} of epoch {} has {:?} at {}, where {:?} was committed \
                 (committed record lost)",
                node.0, epoch.0, other, offset.0, c
            )),
        }
    }

    /// An acks=all produce was acknowledged by `node` leading in `epoch`: its records must be
    /// on that leader's log below its high watermark, as produced.
    pub fn acknowledged(
        &mut self,
        partition: usize,
        replica: &PartitionReplica<MemLog>,
        base_offset: Offset,
        records: &[Vec<u8>],
    ) -> Result<(), String> {
        let epoch = replica
            .leader()
            .map(|l| l.leader_epoch())
            .unwrap_or_default();
        for (i, bytes) in records.iter().enumerate() {
            let offset = base_offset.plus(i);
            let on_log = replica.log().record(offset);
            if on_log != Some((epoch, bytes.as_slice())) || offset >= replica.high_watermark() {
                return Err(format!(
                    "p{partition}: acknowledged {:?} at {} (epoch {}), but the leader has {:?} \
                     and high watermark {}",
                    bytes,
                    offset.0,
                    epoch.0,
                    on_log,
                    replica.high_watermark().0
                ));
            }
            self.partitions[partition]
                .acked
                .insert(offset, (epoch, bytes.clone()));
            // Below the leader's high watermark: committed now, whether or not the checker
            // sees that high watermark before the leader crashes.
            let record = Committed {
                epoch,
                bytes: bytes.clone(),
                committed_in: epoch,
            };
            self.commit(partition, replica.config().replica_id, offset, record)?;
        }
        Ok(())
    }

    /// Every acknowledged record is committed as acknowledged.
    pub fn acked_are_committed(&self) -> Result<(), String> {
        for (p, record) in self.partitions.iter().enumerate() {
            for (offset, (epoch, bytes)) in &record.acked {
                match record.committed.get(offset) {
                    Some(c) if c.epoch == *epoch && c.bytes == *bytes => {}
                    other => {
                        return Err(format!(
                            "p{p}: acknowledged {bytes:?} (epoch {}) at {}, committed {other:?}",
                            epoch.0, offset.0
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// No two live replicas disagree on any offset below the smaller of their high watermarks.
pub fn agree_below_high_watermarks(
    partition: usize,
    replicas: &[(ReplicaId, &PartitionReplica<MemLog>)],
) -> Result<(), String> {
    for (i, (a, ra)) in replicas.iter().enumerate() {
        for (b, rb) in &replicas[i + 1..] {
            let below = ra.high_watermark().min(rb.high_watermark());
            let mut offset = ra.log().log_start().max(rb.log().log_start());
            while offset < below {
                let (x, y) = (ra.log().record(offset), rb.log().record(offset));
                if x != y {
                    return Err(format!(
                        "p{partition}: replicas {} and {} disagree at {} below {}: {x:?} vs {y:?}",
                        a.0, b.0, offset.0, below.0
                    ));
                }
                offset = offset.next();
            }
        }
    }
    Ok(())
}
