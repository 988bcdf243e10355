//! One core's broker state: its services, router, memory budget, and connection bookkeeping.
//!
//! A [`Core`] lives on exactly one executor thread for the life of the broker and is shared by
//! that core's tasks through `Rc`. Nothing here is `Send`; other cores reach it only through
//! [`crate::router::Router`] calls, which [`Core::serve`] answers by handing each request to
//! the service that owns it. Services never import this module: they take narrow inputs.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

use glommio::sync::Semaphore;

use crate::config::BrokerConfig;
use crate::fetch_sessions::{CacheBounds, FetchSessionCache};
use crate::image::TopicImage;
use crate::messages::{CoreReply, CoreRequest};
use crate::metadata::TopicTable;
use crate::partitions::LocalPartitions;
use crate::producer_ids::ProducerIds;
use crate::registry::{self, Applied, Registry, TopicChange, TopicChangeError};
use crate::replication::LeaderSettings;
use crate::router::{CONTROL_CORE, Router};
use crate::topic_config::{Inherited, TopicSettings};

/// The node-wide single-writer services, on the control core only ([`CONTROL_CORE`]).
#[derive(Debug)]
pub struct Control {
    pub registry: Registry,
    pub producer_ids: ProducerIds,
    /// On a cluster node: the way to the active controller, through the controller shard.
    pub controller: Option<Rc<crate::forward::ControllerLink>>,
}

/// One core's broker state.
pub struct Core {
    pub id: usize,
    pub config: BrokerConfig,
    /// `host:port` this broker puts in Metadata.
    pub advertised_host: String,
    pub advertised_port: i32,
    /// The way to every core (this one included).
    pub router: Rc<Router>,
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
    /// Serial of this core's fetch waits (see `messages::WaitId`).
    next_wait: Cell<u64>,
    /// This core's copy of the topic registry (the control core holds the authoritative one).
    pub topics: RefCell<Rc<TopicImage>>,
    /// Kafka cluster id, persisted in the data dir.
    pub cluster_id: String,
    /// The partitions this core owns.
    pub shard: Rc<sluice_shard::Shard>,
    /// The partition service over `shard`: what other cores (and this one) ask of it.
    pub partitions: Rc<LocalPartitions>,
    /// The registry writer and producer ids: `Some` on the control core only.
    pub control: Option<Control>,
    /// The consumer groups this core coordinates.
    pub groups: crate::groups::Coordinator,
    /// The transactional ids this core coordinates.
    pub txn: Rc<crate::txn::host::TxnHost>,
    /// This core's counters.
    pub metrics: crate::metrics::CoreMetrics,
    /// The fetch sessions (KIP-227) of this core's connections; never borrowed across an await.
    pub fetch_sessions: RefCell<FetchSessionCache>,
    /// The cluster's metadata image as the controller shard last published it (a cluster
    /// node only); the topic image is built from it.
    pub metadata: RefCell<Option<sluice_controller::MetadataImage>>,
    /// Held while a new topic image is brought in (partitions opened, closed, deleted), so
    /// two adoptions never open the same partition at once.
    adopting: Semaphore,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core").field("id", &self.id).finish()
    }
}

/// What a core is built from.
pub struct CoreParts {
    pub config: BrokerConfig,
    pub advertised_host: String,
    pub advertised_port: i32,
    pub router: Rc<Router>,
    pub topics: TopicTable,
    pub cluster_id: String,
    pub shard: sluice_shard::Shard,
    pub control: Option<Control>,
}

impl Core {
    /// Builds a core and installs it as its router's local end.
    pub fn new(parts: CoreParts) -> Rc<Core> {
        let id = parts.router.me();
        let shard = Rc::new(parts.shard);
        let (node, cores) = (parts.config.node_id, parts.router.cores());
        let image = if parts.config.is_cluster() {
            let empty = sluice_controller::MetadataImage::empty();
            TopicImage::clustered(parts.topics, &empty, node, cores)
        } else {
            TopicImage::single_node(parts.topics, node, cores)
        };
        let cores = parts.router.cores();
        let c = &parts.config;
        let session_bounds = CacheBounds {
            slots: crate::limits::fetch_session_slots_of_core(
                c.fetch_session_cache_slots,
                cores,
                id,
            ),
            bytes_max: c.core_fetch_session_bytes_max,
            eviction_ms: i64::try_from(c.fetch_session_eviction_ms).unwrap_or(i64::MAX),
        };
        let core = Rc::new(Core {
            id,
            fetch_sessions: RefCell::new(FetchSessionCache::new(session_bounds, id, cores)),
            metadata: RefCell::new(None),
            adopting: Semaphore::new(1),
            budget: Rc::new(Semaphore::new(
                parts.config.core_request_memory_bytes as u64,
            )),
            groups: crate::groups::Coordinator::new(&parts.config, registry::now_ms()),
            txn: Rc::new(crate::txn::host::TxnHost::new(sluice_txn::Config {
                state_log_partitions: parts.config.transaction_state_partitions,
                max_timeout_ms: parts.config.transaction_max_timeout_ms,
                id_expiration_ms: parts.config.transactional_id_expiration_ms,
                ..sluice_txn::Config::default()
            })),
            config: parts.config,
            advertised_host: parts.advertised_host,
            advertised_port: parts.advertised_port,
            router: Rc::clone(&parts.router),
            stop: crate::stop::StopSignal::default(),
            busy: Cell::new(0),
            connections: Cell::new(0),
            connection_tasks: RefCell::new(std::collections::HashMap::new()),
            next_connection: Cell::new(0),
            next_wait: Cell::new(0),
            topics: RefCell::new(Rc::new(image)),
            cluster_id: parts.cluster_id,
            partitions: Rc::new(LocalPartitions::new(id, node, Rc::clone(&shard))),
            shard,
            control: parts.control,
            metrics: crate::metrics::CoreMetrics::default(),
        });
        // The router holds the core weakly: the core owns the router.
        let weak = Rc::downgrade(&core);
        parts.router.set_local(Rc::new(move |from, request| {
            let core = weak.upgrade();
            Box::pin(async move {
                match core {
                    Some(core) => core.serve(from, request).await,
                    None => CoreReply::Ack,
                }
            })
        }));
        core
    }

    /// A fresh serial for a fetch wait of this core.
    pub fn next_wait_serial(&self) -> u64 {
        let n = self.next_wait.get();
        self.next_wait.set(n.wrapping_add(1));
        n
    }

    /// Answers a request addressed to this core, from another core or (through the router)
    /// from this one.
    pub async fn serve(self: Rc<Self>, _from: usize, request: CoreRequest) -> CoreReply {
        match request {
            CoreRequest::Ping => CoreReply::Pong,
            CoreRequest::ChangeTopics(changes) => {
                CoreReply::TopicsChangedResult(self.apply_topic_changes(changes).await)
            }
            CoreRequest::TopicsChanged(table) => {
                self.adopt_topics(table).await;
                CoreReply::Ack
            }
            CoreRequest::Partitions(ops) => CoreReply::Partitions(self.partitions.run(ops).await),
            CoreRequest::Fetch(fetch) => {
                CoreReply::Fetched(self.partitions.fetch(fetch, &self.stop).await)
            }
            CoreRequest::CancelWait(id) => {
                self.partitions.cancel_wait(id);
                CoreReply::Ack
            }
            CoreRequest::AllocateProducerId => {
                CoreReply::ProducerId(self.allocate_producer_id().await)
            }
            CoreRequest::Group(call) => CoreReply::Group(self.serve_group(call).await),
            CoreRequest::Txn { partition, call } => CoreReply::Txn(
                crate::txn::host::TxnHost::serve(&self.txn_env(), partition, call).await,
            ),
            CoreRequest::Metrics => CoreReply::Metrics(self.metrics_snapshot()),
            CoreRequest::MetadataImage(image) => {
                self.adopt_metadata(image).await;
                CoreReply::Ack
            }
            CoreRequest::Forward(request) => {
                use crate::cluster_topics::Cluster as _;
                CoreReply::Forwarded(self.forward(*request).await)
            }
        }
    }

    /// Answers a group call on this core (the coordinator of the call's group), with the
    /// inputs the coordinator takes from the core.
    pub async fn serve_group(&self, call: crate::groups::GroupCall) -> crate::groups::GroupReply {
        let topics = self.topics();
        let owns = |p: i32| topics.core_for(crate::groups::OFFSETS_TOPIC, p) == Some(self.id);
        let inputs = crate::groups::Inputs {
            shard: &self.shard,
            topics: topics.registry(),
            owns: &owns,
            stop: &self.stop,
            now_ms: registry::now_ms,
        };
        self.groups.serve(&inputs, call).await
    }

    /// The handles this core's transaction coordinator works with.
    pub fn txn_env(self: &Rc<Self>) -> crate::txn::host::Env {
        let (image, stopping) = (Rc::clone(self), Rc::clone(self));
        crate::txn::host::Env {
            id: self.id,
            node_id: self.config.node_id,
            txn: Rc::clone(&self.txn),
            shard: Rc::clone(&self.shard),
            router: Rc::clone(&self.router),
            image: Rc::new(move || image.topics()),
            is_stopping: Rc::new(move || stopping.stop.is_stopping()),
        }
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
            (
                "unclean.leader.election.enable",
                c.unclean_leader_election_enable.to_string(),
            ),
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
        let Ok(_turn) = self.adopting.acquire_permit(1).await else {
            return;
        };
        let old = self.topics();
        if table.version <= old.version() {
            return;
        }
        self.adopt_image(old, Rc::new(self.image_of(table))).await;
    }

    /// Keeps `image` if it is newer than the one this core has (messages may be reordered)
    /// and, on a cluster node, brings in the topic image built from it.
    pub async fn adopt_metadata(&self, image: sluice_controller::MetadataImage) {
        let Ok(_turn) = self.adopting.acquire_permit(1).await else {
            return;
        };
        {
            let mut current = self.metadata.borrow_mut();
            if current
                .as_ref()
                .is_some_and(|m| m.offset() >= image.offset())
            {
                return;
            }
            *current = Some(image);
        }
        if self.config.is_cluster() {
            let old = self.topics();
            let new = self.image_of(old.registry().clone());
            self.adopt_image(old, Rc::new(new)).await;
        }
    }

    /// Installs `table` in place of `old` and brings the shard in line with it (the caller
    /// holds `adopting`).
    async fn adopt_image(&self, old: Rc<TopicImage>, table: Rc<TopicImage>) {
        *self.topics.borrow_mut() = Rc::clone(&table);
        for gone in old
            .topics()
            .values()
            .filter(|t| table.topics().get(&t.name).is_none_or(|n| n.id != t.id))
        {
            for p in 0..gone.partitions {
                self.remove_replica(&gone.name, p, "deleted").await;
            }
        }
        // A replica moved off this broker (a reassignment): its log goes, as Kafka's broker
        // deletes the log of a partition it no longer hosts.
        if table.cluster().is_some() {
            for t in table.topics().values() {
                for p in 0..t.partitions {
                    let placed = table.partition(&t.name, p).is_some();
                    if placed && table.replica_core_for(&t.name, p) != Some(self.id) {
                        self.remove_replica(&t.name, p, "moved away").await;
                    }
                }
            }
        }
        let deleted: Vec<String> = old
            .topics()
            .values()
            .filter(|t| table.topics().get(&t.name).is_none_or(|n| n.id != t.id))
            .map(|t| t.name.clone())
            .collect();
        self.partitions
            .unopened
            .borrow_mut()
            .retain(|(topic, _), _| table.topics().contains_key(topic));
        if !deleted.is_empty() {
            let now = registry::now_ms();
            self.groups
                .topics_deleted(&self.shard, table.registry(), &deleted, now)
                .await;
        }
        let (old_inherited, new_inherited) = (
            self.inherited(old.registry()),
            self.inherited(table.registry()),
        );
        // Changed configs (the topic's own or the broker-level ones it inherits): reopen this
        // core's partitions of the topic with the new settings
        // (the storage engine takes its settings at open).
        for t in table.topics().values() {
            let Some(before) = old.topics().get(&t.name) else {
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
        self.apply_replication(&table);
        let owns = |p: i32| table.core_for(crate::groups::OFFSETS_TOPIC, p) == Some(self.id);
        let partitions = crate::groups::offsets_partitions(table.registry());
        self.groups.unload(&owns, partitions);
    }

    /// Closes this core's replica of `topic`-`partition`, if it has one, and deletes its files.
    async fn remove_replica(&self, topic: &str, partition: i32, why: &str) {
        if self.shard.partition(topic, partition).is_none() {
            return;
        }
        tracing::info!(topic, partition, why, "removing a partition replica");
        if let Err(e) = self.shard.close_partition(topic, partition).await {
            tracing::warn!(topic, partition, error = %e, "closing a removed partition failed");
        }
        let dir = self.config.data_dir.join(format!("{topic}-{partition}"));
        let removed = glommio::executor()
            .spawn_blocking(move || std::fs::remove_dir_all(&dir))
            .await;
        if let Err(e) = removed {
            tracing::warn!(topic, partition, error = %e, "removing a partition's files failed");
        }
    }

    /// Brings every partition this core hosts in line with its leader, epoch and ISR in
    /// `table` (see `replication.rs`), and forgets the ones it no longer hosts.
    fn apply_replication(&self, table: &TopicImage) {
        let replication = &self.partitions.replication;
        replication.retain(|t, p| table.replica_core_for(t, p) == Some(self.id));
        let inherited = self.inherited(table.registry());
        for t in table.topics().values() {
            let min_isr = TopicSettings::resolve(&t.configs, &inherited).min_insync_replicas;
            for p in 0..t.partitions {
                if table.replica_core_for(&t.name, p) != Some(self.id) {
                    continue;
                }
                if let (Some(part), Some(state)) = (
                    self.shard.partition(&t.name, p),
                    table.partition(&t.name, p),
                ) {
                    let settings = LeaderSettings {
                        min_isr,
                        lag_max_ms: self.config.replica_lag_time_max_ms,
                        ineligible: table.cluster().map_or_else(Vec::new, |c| {
                            let eligible = |b: &&i32| c.isr_eligible.contains(b);
                            state
                                .replicas
                                .iter()
                                .filter(|b| !eligible(b))
                                .copied()
                                .collect()
                        }),
                    };
                    let now = crate::replication::now_ms();
                    replication.apply(&part, t.id, state, &settings, now);
                }
            }
        }
    }

    /// Opens every partition of `table` this core owns and has not opened yet.
    pub async fn open_owned_partitions(&self, table: &TopicImage) {
        let inherited = self.inherited(table.registry());
        for t in table.topics().values() {
            let settings = TopicSettings::resolve(&t.configs, &inherited);
            let mut log_config = settings.log_config();
            if t.name == crate::groups::OFFSETS_TOPIC {
                // 50 partitions of small records: do not reserve 64 MiB of disk for each.
                log_config.preallocate_bytes = crate::limits::OFFSETS_PREALLOCATE_BYTES;
            }
            for p in 0..t.partitions {
                if table.replica_core_for(&t.name, p) != Some(self.id)
                    || self.shard.partition(&t.name, p).is_some()
                {
                    continue;
                }
                match self
                    .shard
                    .create_partition(&t.name, p, log_config.clone())
                    .await
                {
                    Ok(opened) => {
                        self.partitions
                            .unopened
                            .borrow_mut()
                            .remove(&(t.name.clone(), p));
                        // A new partition's first segment file, made now rather than by its
                        // first produce.
                        glommio::spawn_local(async move {
                            if let Err(e) = opened.prepare_active_segment().await {
                                tracing::error!(error = %e, "cannot create the first segment");
                            }
                        })
                        .detach();
                    }
                    Err(e) => {
                        tracing::error!(topic = %t.name, partition = p, error = %e, "cannot open partition");
                        self.partitions.unopened.borrow_mut().insert(
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

    /// A fresh producer id (the control core only).
    pub async fn allocate_producer_id(&self) -> Result<i64, ()> {
        let control = self
            .control
            .as_ref()
            .expect("only the control core allocates producer ids");
        control.producer_ids.allocate().await.map_err(|e| {
            tracing::error!(error = %e, "cannot reserve producer ids");
        })
    }

    /// The image this node builds from a registry table (and, on a cluster node, the
    /// metadata image it has).
    pub fn image_of(&self, table: TopicTable) -> TopicImage {
        let (node, cores) = (self.config.node_id, self.router.cores());
        if !self.config.is_cluster() {
            return TopicImage::single_node(table, node, cores);
        }
        match self.metadata.borrow().as_ref() {
            Some(m) if registered_now(m, node) => TopicImage::clustered(table, m, node, cores),
            Some(m) => TopicImage::clustered(table, m, node, cores).not_leading(node),
            None => TopicImage::clustered(
                table,
                &sluice_controller::MetadataImage::empty(),
                node,
                cores,
            ),
        }
    }

    /// The brokers Metadata and DescribeCluster list: the live ones on a cluster node (by
    /// id), this broker alone otherwise.
    pub fn brokers(&self, image: &TopicImage) -> Vec<crate::image::BrokerEndpoint> {
        match image.cluster() {
            Some(c) => c.live.values().cloned().collect(),
            None => vec![crate::image::BrokerEndpoint {
                id: self.config.node_id,
                host: self.advertised_host.clone(),
                port: self.advertised_port,
                rack: None,
            }],
        }
    }

    /// The id Metadata and DescribeCluster give as the controller. Clients cannot reach a
    /// KRaft controller, so Kafka names a live broker there (a random one; here the lowest
    /// id, so that answers do not flap); -1 when none is live.
    pub fn controller_id(&self, image: &TopicImage) -> i32 {
        match image.cluster() {
            Some(c) => c.live.keys().next().copied().unwrap_or(-1),
            None => self.config.node_id,
        }
    }

    /// The current topic image (a cheap `Rc` clone; never hold a `RefCell` borrow across await).
    pub fn topics(&self) -> Rc<TopicImage> {
        Rc::clone(&self.topics.borrow())
    }

    /// Applies topic changes through the control core, from any core.
    pub async fn change_topics(
        &self,
        changes: Vec<TopicChange>,
    ) -> Vec<Result<(), TopicChangeError>> {
        if self.config.is_cluster() {
            return crate::cluster_topics::change(self, changes).await;
        }
        let n = changes.len();
        match self
            .router
            .call(CONTROL_CORE, CoreRequest::ChangeTopics(changes))
            .await
        {
            Ok(CoreReply::TopicsChangedResult(r)) => r,
            _ => (0..n).map(|_| Err(TopicChangeError::Unavailable)).collect(),
        }
    }

    /// On the control core: applies and stores `changes`, then publishes the new table to
    /// every core (this one last) before answering, so every core routes a created topic by
    /// the time its creator hears back.
    async fn apply_topic_changes(
        &self,
        changes: Vec<TopicChange>,
    ) -> Vec<Result<(), TopicChangeError>> {
        let control = self
            .control
            .as_ref()
            .expect("only the control core changes the topic registry");
        let Applied {
            results,
            stored,
            serial: _serial,
        } = control
            .registry
            .apply(|| self.topics().registry().clone(), changes)
            .await;
        // Published while `_serial` is held, so the next batch starts from this table.
        if let Some(table) = stored {
            // A core that cannot be reached is a dead core: the runtime stops the broker.
            self.router
                .to_peers(|_| CoreRequest::TopicsChanged(table.clone()))
                .await;
            self.adopt_topics(table).await;
        }
        results
    }

    /// Every core's metrics snapshot, in core order.
    pub async fn gather_metrics(&self) -> Vec<crate::metrics::Snapshot> {
        let mut all = vec![self.metrics_snapshot()];
        for (_, reply) in self.router.to_peers(|_| CoreRequest::Metrics).await {
            if let CoreReply::Metrics(s) = reply {
                all.push(s);
            }
        }
        all.sort_by_key(|s| s.core);
        all
    }

    /// This core's metrics now.
    pub fn metrics_snapshot(&self) -> crate::metrics::Snapshot {
        let mut s = self.metrics.snapshot(self.id);
        s.connections_open = self.connections.get() as u64;
        s.requests_in_flight = self.busy.get() as u64;
        s.cache_bytes = self.shard.cache_bytes() as u64;
        s.partitions = self.shard.partitions().len() as u64;
        s.groups_by_state = self.groups.count_by_state();
        s.storage = self.shard.stats();
        s.fetch_waits = self.partitions.parked_waits() as u64;
        s.fetch_sessions = self.fetch_sessions.borrow().stats();
        s.metadata_end = self
            .metadata
            .borrow()
            .as_ref()
            .map_or(0, |m| u64::try_from(m.offset() + 1).unwrap_or(0));
        s
    }
}

impl crate::cluster_topics::Cluster for Core {
    fn image(&self) -> Rc<TopicImage> {
        self.topics()
    }

    /// Sends `request` to the active controller (a cluster node), through the control core.
    async fn forward(&self, request: sluice_net::Request) -> crate::forward::Forwarded {
        if let Some(control) = &self.control {
            return match &control.controller {
                Some(link) => link.call(request).await,
                None => Err(()),
            };
        }
        match self
            .router
            .call(CONTROL_CORE, CoreRequest::Forward(Box::new(request)))
            .await
        {
            Ok(CoreReply::Forwarded(answer)) => answer,
            _ => Err(()),
        }
    }

    /// Waits until this core's topic image satisfies `done`, for at most `timeout`; whether
    /// it did. (A forwarded change is committed before the controller answers; this core
    /// sees it a moment later, when the image reaches it.)
    async fn await_image(
        &self,
        done: impl Fn(&TopicImage) -> bool,
        timeout: std::time::Duration,
    ) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if done(&self.topics()) {
                return true;
            }
            if std::time::Instant::now() >= deadline || self.stop.is_stopping() {
                return false;
            }
            glommio::timer::sleep(crate::limits::IMAGE_POLL).await;
        }
    }
}

/// Whether `metadata` shows this process (its incarnation) registered as broker `node` and
/// unfenced: only then does the broker lead what the metadata says it leads.
fn registered_now(metadata: &sluice_controller::MetadataImage, node: i32) -> bool {
    metadata
        .broker(node)
        .is_some_and(|b| !b.fenced && b.incarnation_id.0 == crate::metadata::incarnation())
}
