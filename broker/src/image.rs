//! The topic image: an immutable, versioned view of every topic and where each partition lives.
//!
//! Built from the topic registry (names, ids, partition counts, configs) plus each partition's
//! placement: its replicas, leader, leader epoch and in-sync replicas. On one node every
//! partition has one replica, this node, which leads at epoch 0; the controller's metadata log
//! will produce the same image for a cluster. Metadata, admin and the handlers read leaders and
//! epochs from here only, and [`TopicImage::core_for`] is the one answer to "which core of this
//! node owns this partition", including "none: not hosted here".
//!
//! A core swaps in a new image whole (`Rc`) and never mutates one.

use std::collections::{BTreeMap, HashMap};

use crate::metadata::{TopicMeta, TopicTable, shard_for};

/// Where one partition lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    /// Broker ids holding a replica, the preferred leader first.
    pub replicas: Vec<i32>,
    /// The leading broker, or -1 when there is none.
    pub leader: i32,
    /// Bumped on every leader change.
    pub leader_epoch: i32,
    /// Replicas caught up with the leader (the leader included).
    pub isr: Vec<i32>,
}

/// Every topic and partition as this broker knows them, at one registry version.
#[derive(Debug, Default)]
pub struct TopicImage {
    registry: TopicTable,
    partitions: HashMap<String, Vec<PartitionState>>,
    by_id: HashMap<[u8; 16], String>,
    /// This broker's id.
    node: i32,
    /// Cores of this broker: a hosted partition's core is `shard_for` over them.
    cores: usize,
}

impl TopicImage {
    /// The image of a single-node broker: every partition has one replica, `node`, leading at
    /// epoch 0.
    pub fn single_node(registry: TopicTable, node: i32, cores: usize) -> TopicImage {
        assert!(cores > 0, "a broker has at least one core");
        let partitions = registry
            .topics
            .values()
            .map(|t| {
                let one = PartitionState {
                    replicas: vec![node],
                    leader: node,
                    leader_epoch: 0,
                    isr: vec![node],
                };
                let count = usize::try_from(t.partitions).unwrap_or(0);
                (t.name.clone(), vec![one; count])
            })
            .collect();
        let by_id = registry
            .topics
            .values()
            .map(|t| (t.id, t.name.clone()))
            .collect();
        TopicImage {
            registry,
            partitions,
            by_id,
            node,
            cores,
        }
    }

    /// The registry version this image was built from; a newer one replaces it.
    pub fn version(&self) -> u64 {
        self.registry.version
    }

    /// The registry: topics with their configs, and the stored broker, group and
    /// client-metrics configs.
    pub fn registry(&self) -> &TopicTable {
        &self.registry
    }

    /// Every topic, by name.
    pub fn topics(&self) -> &BTreeMap<String, TopicMeta> {
        &self.registry.topics
    }

    /// The topic with this id, if any.
    pub fn by_id(&self, id: &[u8; 16]) -> Option<&TopicMeta> {
        self.by_id
            .get(id)
            .and_then(|name| self.registry.topics.get(name))
    }

    /// One partition's placement; `None` for an unknown topic or partition.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionState> {
        let i = usize::try_from(partition).ok()?;
        self.partitions.get(topic)?.get(i)
    }

    /// The core of this broker that owns `partition` of `topic`, or `None` when this broker
    /// holds no replica of it (or it does not exist).
    pub fn core_for(&self, topic: &str, partition: i32) -> Option<usize> {
        self.partition(topic, partition)?
            .replicas
            .contains(&self.node)
            .then(|| shard_for(topic, partition, self.cores))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(topics: &[(&str, i32)]) -> TopicTable {
        let mut t = TopicTable::default();
        for (i, (name, partitions)) in topics.iter().enumerate() {
            t.topics.insert(
                (*name).to_owned(),
                TopicMeta {
                    name: (*name).to_owned(),
                    id: [u8::try_from(i + 1).unwrap_or(0); 16],
                    partitions: *partitions,
                    configs: BTreeMap::new(),
                    created_ms: 0,
                },
            );
        }
        t.version = 7;
        t
    }

    #[test]
    fn single_node_image_leads_every_partition_at_epoch_0() {
        let image = TopicImage::single_node(table(&[("a", 3), ("b", 1)]), 5, 2);
        assert_eq!(image.version(), 7);
        for p in 0..3 {
            let s = image.partition("a", p).expect("partition");
            assert_eq!(s.leader, 5);
            assert_eq!(s.leader_epoch, 0);
            assert_eq!(s.replicas, vec![5]);
            assert_eq!(s.isr, vec![5]);
            assert_eq!(image.core_for("a", p), Some(shard_for("a", p, 2)));
        }
        assert!(image.partition("a", 3).is_none());
        assert!(image.partition("a", -1).is_none());
        assert_eq!(image.core_for("missing", 0), None);
        assert_eq!(image.by_id(&[2; 16]).map(|t| t.name.as_str()), Some("b"));
        assert!(image.by_id(&[9; 16]).is_none());
    }

    #[test]
    fn a_partition_without_a_replica_here_is_not_hosted() {
        let mut image = TopicImage::single_node(table(&[("a", 2)]), 1, 2);
        if let Some(parts) = image.partitions.get_mut("a") {
            parts[1] = PartitionState {
                replicas: vec![2, 3],
                leader: 2,
                leader_epoch: 4,
                isr: vec![2, 3],
            };
        }
        assert!(image.core_for("a", 0).is_some());
        assert_eq!(image.core_for("a", 1), None);
    }
}
