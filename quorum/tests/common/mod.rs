//! What the simulator and the model check share: the safety checker. It watches every node
//! and records what was committed; a violation is a message naming the offset, the nodes and
//! the entries involved.
//!
//! Properties: at most one leader per epoch, over the whole run; a committed entry (applied by
//! any node, i.e. below its high watermark) is the same on every node that applies that offset;
//! every leader's log holds every entry committed in its epoch or earlier (so a committed entry
//! is never lost: it reaches every later leader and, from there, everyone; below a leader's log
//! start, its start epoch must match the committed entry there and its snapshot covers the
//! rest); and, where the caller models a state machine, every node's state at an offset (loaded
//! from a snapshot, or built by applying entries) is the same.

use std::collections::BTreeMap;

use sluice_quorum::{Entry, Epoch, Log, NodeId, Offset, Replica, RoleKind};

/// One committed entry as first seen.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Committed {
    pub entry: Entry,
    /// The epoch of the node that applied it first (the commit happened in it or earlier).
    pub epoch: Epoch,
}

/// The checker's record of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Checker {
    /// The leader of each epoch, as first seen.
    pub leaders: BTreeMap<Epoch, NodeId>,
    /// Every committed entry by offset.
    pub committed: BTreeMap<Offset, Committed>,
    /// The state machine's state after applying every entry below each offset, as first seen.
    pub states: BTreeMap<Offset, u64>,
}

impl Checker {
    /// Node `node`, in `epoch`, applies `entry` at `offset`.
    pub fn apply(
        &mut self,
        node: NodeId,
        epoch: Epoch,
        offset: Offset,
        entry: &Entry,
    ) -> Result<bool, String> {
        match self.committed.get(&offset) {
            Some(c) if c.entry != *entry => Err(format!(
                "node {} applied {:?} at offset {} where {:?} was committed",
                node.0, entry, offset.0, c.entry
            )),
            Some(_) => Ok(false),
            None => {
                self.committed.insert(
                    offset,
                    Committed {
                        entry: entry.clone(),
                        epoch,
                    },
                );
                Ok(true)
            }
        }
    }

    /// Node `node`'s state machine, having applied everything below `offset` (by entries or
    /// from a snapshot), is `state`: the same as every other node's there. (Only the
    /// simulator models a state machine; the model check has no snapshots.)
    #[allow(dead_code)]
    pub fn state_at(&mut self, node: NodeId, offset: Offset, state: u64) -> Result<(), String> {
        match self.states.get(&offset) {
            Some(&first) if first != state => Err(format!(
                "node {} has state {state:#x} below offset {} where another had {first:#x}",
                node.0, offset.0
            )),
            Some(_) => Ok(()),
            None => {
                self.states.insert(offset, state);
                Ok(())
            }
        }
    }

    /// Checks one replica's leadership: one leader per epoch, and a new leader holds every
    /// entry committed in its epoch or before. Call after every step, for every live node.
    pub fn observe<L: Log>(&mut self, replica: &Replica<L>) -> Result<(), String> {
        if replica.role() != RoleKind::Leader {
            return Ok(());
        }
        let (me, epoch) = (replica.id(), replica.epoch());
        match self.leaders.get(&epoch) {
            Some(&other) if other != me => {
                return Err(format!(
                    "two leaders in epoch {}: nodes {} and {}",
                    epoch.0, other.0, me.0
                ));
            }
            Some(_) => return Ok(()),
            None => {
                self.leaders.insert(epoch, me);
            }
        }
        let offsets: Vec<Offset> = self.committed.keys().copied().collect();
        for offset in offsets {
            self.leader_holds(replica, offset)?;
        }
        Ok(())
    }

    /// A new commit at `offset` must already be in every live leader's log whose epoch is at
    /// least the commit's.
    pub fn leader_holds<L: Log>(&self, replica: &Replica<L>, offset: Offset) -> Result<(), String> {
        let Some(c) = self.committed.get(&offset) else {
            return Ok(());
        };
        if replica.role() != RoleKind::Leader || replica.epoch() < c.epoch {
            return Ok(());
        }
        let start = replica.log().start();
        if offset < start.offset {
            // Dropped below its snapshot; the entry before the start must still be this one.
            if offset.next() == start.offset && start.epoch != c.entry.epoch {
                return Err(format!(
                    "leader {} starts its log at {:?}, where {:?} was committed",
                    replica.id().0,
                    start,
                    c.entry
                ));
            }
            return Ok(());
        }
        match replica.log().entry(offset) {
            Some(entry) if *entry == c.entry => Ok(()),
            other => Err(format!(
                "leader {} of epoch {} has {:?} at offset {}, where {:?} was committed in epoch {}",
                replica.id().0,
                replica.epoch().0,
                other,
                offset.0,
                c.entry,
                c.epoch.0
            )),
        }
    }
}
