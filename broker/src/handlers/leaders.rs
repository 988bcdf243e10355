//! The current leader of a partition this broker does not lead (KIP-951): Produce (v10+) and
//! Fetch (v12+) answers NOT_LEADER_OR_FOLLOWER with the leader and its epoch per partition,
//! and the leaders' endpoints once per answer (Produce v10+, Fetch v16+), so a client can go
//! to the new leader without a Metadata round trip first. The codecs leave the fields out of
//! older versions.

use std::collections::BTreeSet;

use crate::core::Core;
use crate::image::{BrokerEndpoint, TopicImage};

/// Leaders named so far in one answer.
pub struct Leaders<'a> {
    image: &'a TopicImage,
    named: BTreeSet<i32>,
}

impl<'a> Leaders<'a> {
    pub fn new(image: &'a TopicImage) -> Leaders<'a> {
        Leaders {
            image,
            named: BTreeSet::new(),
        }
    }

    /// The leader and leader epoch of `partition` of `topic` as this broker's image has them
    /// (leader -1 while it has none); `None` for a partition the image does not know.
    pub fn of(&mut self, topic: &str, partition: i32) -> Option<(i32, i32)> {
        let state = self.image.partition(topic, partition)?;
        if state.leader >= 0 {
            self.named.insert(state.leader);
        }
        Some((state.leader, state.leader_epoch))
    }

    /// The topic name of a topic id, for answers keyed by id.
    pub fn name_of(&self, id: &[u8; 16]) -> Option<String> {
        self.image.by_id(id).map(|t| t.name.clone())
    }

    /// The endpoints of the live leaders named.
    pub fn endpoints(&self, core: &Core) -> Vec<BrokerEndpoint> {
        let mut all = core.brokers(self.image);
        all.retain(|b| self.named.contains(&b.id));
        all
    }
}
