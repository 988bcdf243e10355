//! The topic image: an immutable, versioned view of every topic and where each partition lives.
//!
//! Built from the topic registry (names, ids, partition counts, configs) plus each partition's
//! placement: its replicas, leader, leader epoch and in-sync replicas. On one node every
//! partition has one replica, this node, which leads at epoch 0; the controller's metadata log
//! will produce the same image for a cluster. Metadata, admin and the handlers read leaders and
//! epochs from here only, and [`TopicImage::core_for`] is the one answer to "which core of this
//! node owns this partition", including "none: not hosted here".
//!
//! On a cluster node the topics, their configs and placements, and the live brokers come from
//! the controller's metadata image instead ([`TopicImage::clustered`]); the node's own
//! registry then holds only what is still per node (dynamic broker, group and client-metrics
//! configs).
//!
//! A core swaps in a new image whole (`Rc`) and never mutates one.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use sluice_controller::MetadataImage;
use sluice_controller::image::{ConfigResource, RESOURCE_TOPIC};

use crate::messages::PartError;
use crate::metadata::{TopicMeta, TopicTable, shard_for};

/// The listener whose endpoint brokers register and Metadata answers with.
pub const CLIENT_LISTENER: &str = "PLAINTEXT";

/// A live broker's client endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerEndpoint {
    pub id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

/// What only a cluster node's image has: the live brokers.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    /// Registered, unfenced brokers by id: the ones Metadata lists.
    pub live: BTreeMap<i32, BrokerEndpoint>,
    /// Every registered broker's epoch (AlterPartition names each ISR member's, KIP-903).
    pub epochs: BTreeMap<i32, i64>,
    /// Registered brokers that may join an ISR: unfenced and not in controlled shutdown
    /// (Kafka's `isReplicaIsrEligible`).
    pub isr_eligible: BTreeSet<i32>,
}

impl ClusterView {
    /// The brokers as the controller's `metadata` registers them.
    fn of(metadata: &MetadataImage) -> ClusterView {
        let live = metadata
            .brokers()
            .values()
            .filter(|b| !b.fenced)
            .filter_map(|b| {
                let e = b
                    .endpoints
                    .iter()
                    .find(|e| e.name == CLIENT_LISTENER)
                    .or(b.endpoints.first())?;
                let endpoint = BrokerEndpoint {
                    id: b.id,
                    host: e.host.clone(),
                    port: i32::from(e.port),
                    rack: b.rack.clone(),
                };
                Some((b.id, endpoint))
            })
            .collect();
        let brokers = || metadata.brokers().values();
        ClusterView {
            live,
            epochs: brokers().map(|b| (b.id, b.epoch)).collect(),
            isr_eligible: brokers()
                .filter(|b| !b.fenced && !b.in_controlled_shutdown)
                .map(|b| b.id)
                .collect(),
        }
    }
}

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
    /// Bumped on every change of the partition's state (AlterPartition names the one it
    /// changes).
    pub partition_epoch: i32,
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
    /// `Some` on a cluster node.
    cluster: Option<ClusterView>,
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
                    partition_epoch: 0,
                };
                let count = usize::try_from(t.partitions).unwrap_or(0);
                (t.name.clone(), vec![one; count])
            })
            .collect();
        let by_id = ids_of(&registry);
        TopicImage {
            registry,
            partitions,
            by_id,
            node,
            cores,
            cluster: None,
        }
    }

    /// The image of a cluster node: topics, configs, placements and live brokers from the
    /// controller's `metadata`; the per-node stored configs (and the version that orders
    /// them) from `registry`, whose own topics are ignored.
    pub fn clustered(
        mut registry: TopicTable,
        metadata: &MetadataImage,
        node: i32,
        cores: usize,
    ) -> TopicImage {
        assert!(cores > 0, "a broker has at least one core");
        let mut partitions = HashMap::new();
        registry.topics = BTreeMap::new();
        for t in metadata.topics().values() {
            let states: Vec<PartitionState> = t
                .partitions
                .values()
                .map(|p| PartitionState {
                    replicas: p.replicas.clone(),
                    leader: p.leader,
                    leader_epoch: p.leader_epoch,
                    isr: p.isr.clone(),
                    partition_epoch: p.partition_epoch,
                })
                .collect();
            let resource = ConfigResource {
                resource_type: RESOURCE_TOPIC,
                name: t.name.clone(),
            };
            let configs = metadata
                .configs()
                .get(&resource)
                .map(|c| c.as_ref().clone())
                .unwrap_or_default();
            let meta = TopicMeta {
                name: t.name.clone(),
                id: t.id.0,
                partitions: i32::try_from(states.len()).unwrap_or(i32::MAX),
                configs,
                created_ms: 0,
            };
            registry.topics.insert(t.name.clone(), meta);
            partitions.insert(t.name.clone(), states);
        }
        let by_id = ids_of(&registry);
        TopicImage {
            registry,
            partitions,
            by_id,
            node,
            cores,
            cluster: Some(ClusterView::of(metadata)),
        }
    }

    /// The cluster's live brokers; `None` on a single-node broker.
    pub fn cluster(&self) -> Option<&ClusterView> {
        self.cluster.as_ref()
    }

    /// Whether `broker` is live (a single-node broker: only itself).
    pub fn is_live(&self, broker: i32) -> bool {
        match &self.cluster {
            Some(c) => c.live.contains_key(&broker),
            None => broker == self.node,
        }
    }

    /// Replicas of a partition whose broker is not live (Metadata's `offline_replicas`).
    pub fn offline_replicas(&self, state: &PartitionState) -> Vec<i32> {
        state
            .replicas
            .iter()
            .copied()
            .filter(|&b| !self.is_live(b))
            .collect()
    }

    /// Why this broker does not serve `partition` of `topic` to clients: it leads it
    /// elsewhere (NOT_LEADER_OR_FOLLOWER, with the leader), it has no leader
    /// (LEADER_NOT_AVAILABLE), or it does not exist.
    pub fn not_served(&self, topic: &str, partition: i32) -> PartError {
        match self.partition(topic, partition) {
            None => PartError::NotHosted,
            Some(s) if s.leader < 0 => PartError::NoLeader,
            Some(_) => PartError::NotLeader,
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
    /// This image with no partition led by `node`: what a broker acts on until the metadata
    /// shows its current process registered and unfenced. The metadata it stored before a
    /// crash still names it leader in the old epoch; leading from it before the controller
    /// moved those leaderships away (a new incarnation's registration does) let a restarted
    /// leader append different records at offsets its followers already held from the same
    /// epoch, and acknowledge them (found by tests/tests/jepsen.rs).
    pub fn not_leading(mut self, node: i32) -> TopicImage {
        for states in self.partitions.values_mut() {
            for state in states.iter_mut().filter(|s| s.leader == node) {
                state.leader = -1;
            }
        }
        self
    }

    pub fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionState> {
        let i = usize::try_from(partition).ok()?;
        self.partitions.get(topic)?.get(i)
    }

    /// The core of this broker that serves `partition` of `topic` to clients, or `None` when
    /// this broker does not lead it (or it does not exist). Until followers exist (issue 21)
    /// only the leader serves.
    pub fn core_for(&self, topic: &str, partition: i32) -> Option<usize> {
        (self.partition(topic, partition)?.leader == self.node)
            .then(|| shard_for(topic, partition, self.cores))
    }

    /// The core of this broker that holds a replica of `partition` of `topic` (its files are
    /// opened there even while it does not lead), or `None`.
    pub fn replica_core_for(&self, topic: &str, partition: i32) -> Option<usize> {
        self.partition(topic, partition)?
            .replicas
            .contains(&self.node)
            .then(|| shard_for(topic, partition, self.cores))
    }
}

/// Topic names by topic id.
fn ids_of(registry: &TopicTable) -> HashMap<[u8; 16], String> {
    registry
        .topics
        .values()
        .map(|t| (t.id, t.name.clone()))
        .collect()
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
                partition_epoch: 6,
            };
        }
        assert!(image.core_for("a", 0).is_some());
        assert_eq!(image.core_for("a", 1), None);
    }
}
