//! One core's broker state: its mesh endpoint, memory budget, and connection bookkeeping.
//!
//! A [`Core`] lives on exactly one executor thread for the life of the broker and is shared by
//! that core's tasks through `Rc`. Nothing here is `Send`; other cores reach it only through
//! [`crate::mesh::Mesh`] requests.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

use glommio::sync::Semaphore;

use crate::config::BrokerConfig;
use crate::mesh::Mesh;
use crate::metadata::{TopicTable, shard_for};
use crate::partitions::{self, Addressed, PartitionOpResult};
use crate::producer_ids::ProducerIds;
use crate::registry::{self, TopicChange, TopicChangeError};
use crate::topic_config::{Inherited, TopicSettings};

/// A request one core sends another.
#[derive(Debug)]
pub enum CoreRequest {
    /// Start-up check that the peer's receive loop runs.
    Ping,
    /// To core 0: change the topic registry (only core 0 writes it).
    ChangeTopics(Vec<TopicChange>),
    /// From core 0: the registry changed; adopt this table (and open or drop partitions).
    TopicsChanged(TopicTable),
    /// Operations on partitions this core owns.
    Partitions(Vec<Addressed>),
    /// To core 0: a fresh producer id.
    AllocateProducerId,
    /// To the core that coordinates a group.
    Group(crate::groups::GroupCall),
    /// This core's metrics, for a scrape.
    Metrics,
}

/// The answer to a [`CoreRequest`].
#[derive(Debug)]
pub enum CoreReply {
    Pong,
    /// One result per requested change, in order.
    TopicsChangedResult(Vec<Result<(), TopicChangeError>>),
    Ack,
    Partitions(Vec<PartitionOpResult>),
    ProducerId(Result<i64, ()>),
    Group(crate::groups::GroupReply),
    Metrics(crate::metrics::Snapshot),
}

/// One core's broker state.
pub struct Core {
    pub id: usize,
    pub config: BrokerConfig,
    /// `host:port` this broker puts in Metadata.
    pub advertised_host: String,
    pub advertised_port: i32,
    pub mesh: Rc<Mesh<CoreRequest, CoreReply>>,
    /// Bytes of requests admitted and not yet answered on this core.
    pub budget: Rc<Semaphore>,
    /// Set when the broker is stopping: connections finish the request in hand and close,
    /// and every wait raced with it (idle connections, long polls, group joins and syncs) ends.
    pub stop: crate::stop::StopSignal,
    /// Requests being handled right now (shutdown waits for zero).
    pub busy: Cell<usize>,
    pub connections: Cell<usize>,
    /// This core's connection tasks, by a per-core serial: shutdown cancels those still busy
    /// at `shutdown_timeout_ms`.
    pub connection_tasks: RefCell<std::collections::HashMap<u64, glommio::task::JoinHandle<()>>>,
    pub next_connection: Cell<u64>,
    /// This core's copy of the topic registry (core 0 holds the authoritative one).
    pub topics: RefCell<Rc<TopicTable>>,
    /// Kafka cluster id, persisted in the data dir.
    pub cluster_id: String,
    /// The partitions this core owns.
    pub shard: sluice_shard::Shard,
    /// Partitions this core owns that failed to open, with the storage error: requests for them
    /// get KAFKA_STORAGE_ERROR with that text instead of a retriable "not hosted here".
    pub unopened: RefCell<std::collections::HashMap<(String, i32), String>>,
    /// Core 0: serializes topic registry changes (a one-permit semaphore).
    pub registry_serial: Semaphore,
    /// Core 0 only: the producer id allocator.
    pub producer_ids: Option<ProducerIds>,
    /// The consumer groups this core coordinates.
    pub groups: crate::groups::Coordinator,
    /// This core's counters.
    pub metrics: crate::metrics::CoreMetrics,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core").field("id", &self.id).finish()
    }
}

impl Core {
    /// Answers a request from another core.
    pub async fn serve_peer(self: Rc<Self>, _from: usize, request: CoreRequest) -> CoreReply {
        match request {
            CoreRequest::Ping => CoreReply::Pong,
            CoreRequest::ChangeTopics(changes) => {
                CoreReply::TopicsChangedResult(registry::apply(&self, changes).await)
            }
            CoreRequest::TopicsChanged(table) => {
                self.adopt_topics(table).await;
                CoreReply::Ack
            }
            CoreRequest::Partitions(ops) => {
                CoreReply::Partitions(partitions::run_local(&self, ops).await)
            }
            CoreRequest::AllocateProducerId => {
                CoreReply::ProducerId(self.allocate_producer_id().await)
            }
            CoreRequest::Group(call) => CoreReply::Group(self.serve_group(call).await),
            CoreRequest::Metrics => CoreReply::Metrics(self.metrics_snapshot()),
        }
    }

    /// Answers a group call on this core (the coordinator of the call's group), with the
    /// inputs the coordinator takes from the core.
    pub async fn serve_group(&self, call: crate::groups::GroupCall) -> crate::groups::GroupReply {
        let topics = self.topics();
        let cores = self.mesh.cores();
        let owns = |p: i32| shard_for(crate::groups::OFFSETS_TOPIC, p, cores) == self.id;
        let inputs = crate::groups::Inputs {
            shard: &self.shard,
            topics: &topics,
            owns: &owns,
            stop: &self.stop,
            now_ms: registry::now_ms,
        };
        self.groups.serve(&inputs, call).await
    }

    /// The broker-level config values topics inherit under `table`'s dynamic broker configs.
    pub fn inherited(&self, table: &TopicTable) -> Inherited {
        let c = &self.config;
        let mut static_config = BTreeMap::new();
        for (key, value) in [
            ("log.retention.ms", c.retention_ms.to_string()),
            ("log.retention.bytes", c.retention_bytes.to_string()),
            ("log.segment.bytes", c.segment_bytes.to_string()),
            ("message.max.bytes", c.message_bytes_max.to_string()),
        ] {
            let default = crate::topic_config::topic_key_of(key)
                .and_then(crate::topic_config::def)
                .map(|d| d.default);
            if default != Some(value.as_str()) {
                static_config.insert(key.to_owned(), value);
            }
        }
        Inherited::new(
            table.broker_configs.get(&c.node_id.to_string()),
            table.broker_configs.get(""),
            static_config,
        )
    }

    /// Installs a newer topic table on this core and brings its shard in line: opens (creating
    /// where new) the partitions this core owns, closes and deletes those of deleted topics.
    /// Older tables (a reordered message) are ignored.
    pub async fn adopt_topics(&self, table: TopicTable) {
        let old = self.topics();
        if table.version <= old.version {
            return;
        }
        let table = Rc::new(table);
        *self.topics.borrow_mut() = Rc::clone(&table);
        for gone in old
            .topics
            .values()
            .filter(|t| table.topics.get(&t.name).is_none_or(|n| n.id != t.id))
        {
            for p in 0..gone.partitions {
                if self.shard.partition(&gone.name, p).is_some() {
                    if let Err(e) = self.shard.close_partition(&gone.name, p).await {
                        tracing::warn!(topic = %gone.name, partition = p, error = %e, "closing a deleted partition failed");
                    }
                    let dir = self.config.data_dir.join(format!("{}-{p}", gone.name));
                    let removed = glommio::executor()
                        .spawn_blocking(move || std::fs::remove_dir_all(&dir))
                        .await;
                    if let Err(e) = removed {
                        tracing::warn!(topic = %gone.name, partition = p, error = %e, "removing a deleted partition's files failed");
                    }
                }
            }
        }
        let deleted: Vec<String> = old
            .topics
            .values()
            .filter(|t| table.topics.get(&t.name).is_none_or(|n| n.id != t.id))
            .map(|t| t.name.clone())
            .collect();
        self.unopened
            .borrow_mut()
            .retain(|(topic, _), _| table.topics.contains_key(topic));
        if !deleted.is_empty() {
            let now = registry::now_ms();
            self.groups
                .topics_deleted(&self.shard, &table, &deleted, now)
                .await;
        }
        let (old_inherited, new_inherited) = (self.inherited(&old), self.inherited(&table));
        // Changed configs (the topic's own or the broker-level ones it inherits): reopen this
        // core's partitions of the topic with the new settings
        // (the storage engine takes its settings at open).
        for t in table.topics.values() {
            let Some(before) = old.topics.get(&t.name) else {
                continue;
            };
            if before.id != t.id
                || TopicSettings::resolve(&before.configs, &old_inherited)
                    == TopicSettings::resolve(&t.configs, &new_inherited)
            {
                continue;
            }
            for p in 0..before.partitions {
                if self.shard.partition(&t.name, p).is_some()
                    && let Err(e) = self.shard.close_partition(&t.name, p).await
                {
                    tracing::warn!(topic = %t.name, partition = p, error = %e, "closing a partition to apply new configs failed");
                }
            }
        }
        self.open_owned_partitions(&table).await;
    }

    /// Opens every partition of `table` this core owns and has not opened yet.
    pub async fn open_owned_partitions(&self, table: &TopicTable) {
        let cores = self.mesh.cores();
        let inherited = self.inherited(table);
        for t in table.topics.values() {
            let settings = TopicSettings::resolve(&t.configs, &inherited);
            let mut log_config = settings.log_config();
            if t.name == crate::groups::OFFSETS_TOPIC {
                // 50 partitions of small records: do not reserve 64 MiB of disk for each.
                log_config.preallocate_bytes = 1 << 20;
            }
            for p in 0..t.partitions {
                if shard_for(&t.name, p, cores) != self.id
                    || self.shard.partition(&t.name, p).is_some()
                {
                    continue;
                }
                match self
                    .shard
                    .create_partition(&t.name, p, log_config.clone())
                    .await
                {
                    Ok(_) => {
                        self.unopened.borrow_mut().remove(&(t.name.clone(), p));
                    }
                    Err(e) => {
                        tracing::error!(topic = %t.name, partition = p, error = %e, "cannot open partition");
                        self.unopened.borrow_mut().insert(
                            (t.name.clone(), p),
                            format!(
                                "Log for partition {}-{p} is not available on broker {}: {e}",
                                t.name, self.config.node_id
                            ),
                        );
                    }
                }
            }
        }
    }

    /// A fresh producer id (core 0 only).
    pub async fn allocate_producer_id(&self) -> Result<i64, ()> {
        let ids = self
            .producer_ids
            .as_ref()
            .expect("only core 0 allocates producer ids");
        ids.allocate().await.map_err(|e| {
            tracing::error!(error = %e, "cannot reserve producer ids");
        })
    }

    /// The current topic table (a cheap `Rc` clone; never hold a `RefCell` borrow across await).
    pub fn topics(&self) -> Rc<TopicTable> {
        Rc::clone(&self.topics.borrow())
    }

    /// Applies topic changes through core 0, from any core.
    pub async fn change_topics(
        self: &Rc<Self>,
        changes: Vec<TopicChange>,
    ) -> Vec<Result<(), TopicChangeError>> {
        if self.id == 0 {
            return registry::apply(self, changes).await;
        }
        let n = changes.len();
        match self.mesh.call(0, CoreRequest::ChangeTopics(changes)).await {
            Ok(CoreReply::TopicsChangedResult(r)) => r,
            _ => (0..n).map(|_| Err(TopicChangeError::Unavailable)).collect(),
        }
    }
}
