//! What the simulator and the model check share: the safety checker. It watches every node
//! and records what was committed; a violation is a message naming the offset, the nodes and
//! the entries involved.
//!
//! Properties: at most one leader per epoch, over the whole run; a committed entry (applied by
//! any node, i.e. below its high watermark) is the same on every node that applies that offset;
//! every leader's log holds every entry committed in its epoch or earlier (so a committed entry
//! is never lost: it reaches every later leader and, from there, everyone).

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
