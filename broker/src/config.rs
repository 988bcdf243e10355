//! Broker configuration: one struct, read from an optional TOML file, then overridden by flags.
//!
//! Only `broker` reads config files and the environment. Every bound in bytes or counts an
//! operator may tune is a field here, with its default documented next to it; the fixed ones
//! (protocol limits, internal buffer sizes) are in `limits.rs`. A renamed setting keeps its old
//! key as a deprecated alias (`RENAMED`), accepted with a warning.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Everything `sluice start` can be told. Field names match the TOML keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// Address every core accepts on (SO_REUSEPORT). Default `127.0.0.1:9092`.
    pub listen: SocketAddr,
    /// `host:port` put in Metadata responses; defaults to the bound listen address.
    pub advertise: Option<String>,
    /// Where partitions and metadata live. Default `./sluice-data`.
    pub data_dir: PathBuf,
    /// Executors (one per core). Default: every available core.
    pub cores: Option<usize>,
    /// Node id this broker reports in Metadata (Kafka's `node.id`). Default 0.
    pub node_id: i32,
    /// Kafka's `process.roles`: `broker,controller` (the default), `broker` or `controller`.
    /// Matters only with `controller_voters`.
    pub process_roles: String,
    /// Kafka's `controller.quorum.voters`: `id@host:port,...`, every voter of the controller
    /// quorum with its controller address. Empty (the default): a single-node broker, no
    /// controller quorum.
    pub controller_voters: String,
    /// Where this node's controller accepts the other voters (and `kafka-metadata-quorum
    /// --bootstrap-controller`); required when this node is a voter. Default: its address in
    /// `controller_voters`.
    pub controller_listen: Option<SocketAddr>,
    /// The cluster id every node of a cluster shares; requests carrying another are refused
    /// (INCONSISTENT_CLUSTER_ID). Default for a cluster: derived from `controller_voters`, so
    /// nodes started with the same voters agree without a format step.
    pub cluster_id: Option<String>,
    /// `broker.heartbeat.interval.ms`: how often a broker heartbeats to the active controller.
    /// 500 ms (Kafka: 2 s).
    pub broker_heartbeat_interval_ms: u64,
    /// `broker.session.timeout.ms`: a broker the active controller has not heard from for this
    /// long is fenced (leaves Metadata; its partitions go offline). 3 s (Kafka: 9 s): six missed
    /// heartbeats, so a dead broker is out within about 3 s, while a heartbeat delayed by a
    /// loaded core (a long GC is not a risk here; a stalled executor is, for at most its 1 ms
    /// preemption slices) has five more chances. Must exceed the heartbeat interval.
    pub broker_session_timeout_ms: u64,
    /// `replica.lag.time.max.ms`: a follower that has not caught up with its leader's log end
    /// for this long leaves the ISR (the leader's AlterPartition), so acks=all stops waiting
    /// for it. 10 s (Kafka: 30 s): a follower cut off from its leader but not from the
    /// controller stalls acks=all for this long, and a dead broker is fenced by its session
    /// (3 s) first anyway. Must exceed the session timeout, so a broker that dies is fenced
    /// (and its partitions elect from the ISR) rather than shrunk out of every ISR.
    pub replica_lag_time_max_ms: u64,
    /// `controller.quorum.fetch.timeout.ms`: a voter that has not heard from its leader this
    /// long starts a (pre-)vote, and a leader that a majority has not fetched from this long
    /// resigns. 1 s (Kafka: 2 s), so a dead leader is replaced in about 1 s. 200 ms replaced
    /// one in 0.2 s on an idle machine, but with a build running beside a 3-node cluster on
    /// this 2-core machine the voters' threads stalled past it and the quorum went through 18
    /// elections in 30 s (each one a NOT_CONTROLLER for requests in flight); Kafka's own
    /// controllers, under the same load, stayed in one epoch.
    pub controller_quorum_fetch_timeout_ms: u64,
    /// `controller.quorum.election.timeout.ms`: the base of each election round's timeout (a
    /// random amount up to the same again is added). 500 ms (Kafka: 1 s), half the fetch
    /// timeout as in Kafka.
    pub controller_quorum_election_timeout_ms: u64,
    /// `metadata.log.max.record.bytes.between.snapshots`: the controller snapshots its metadata
    /// image once this many bytes of records were committed since the last snapshot, and drops
    /// the log below it. 20 MiB, as Kafka.
    pub metadata_log_max_record_bytes_between_snapshots: u64,
    /// Partitions of an auto-created topic. Default 1.
    pub default_partitions: i32,
    /// Create a topic on first Metadata/Produce for it. Default on.
    pub auto_create_topics: bool,
    /// `socket.request.max.bytes`: a request frame above this closes the connection. 100 MiB.
    pub request_bytes_max: usize,
    /// Per-core memory budget for requests being read or processed; when spent, the core stops
    /// reading sockets (TCP back-pressure). 256 MiB.
    pub core_request_memory_bytes: usize,
    /// Requests read ahead per connection while an earlier one is processed. 16.
    pub connection_inflight_max: usize,
    /// Client connections each core holds open; a core at the limit closes each new connection
    /// as soon as it is accepted, logging a warning (at most once a second, with the count
    /// refused) and counting it in `sluice_connections_refused_total`. Each connection is a
    /// file descriptor, so `RLIMIT_NOFILE` should cover cores x (this +
    /// `core_open_segment_files_max`) + partitions; start-up raises the soft limit up to the
    /// hard one and warns when that is short. 8192 (two cores fit under 20,000 descriptors).
    pub core_connections_max: usize,
    /// Per-core cache of recent batches, in bytes (the storage engine's
    /// `ShardConfig::cache_bytes_max`). 256 MiB. Formerly `core_cache_bytes`, still accepted.
    /// A larger cache serves hot consumers from memory (3 GiB per core doubled a hot consume
    /// here), but with such a cache filled, the broker acked ~90,000 of 200,000 records/s
    /// offered where 256 MiB kept up (bench/profiles/README.md): not the default until the
    /// cost of a multi-GB cache is found.
    pub core_cache_bytes_max: usize,
    /// Largest single write a core hands the kernel; bigger flushes are split. 8 MiB.
    pub core_write_bytes_max: usize,
    /// Bytes a core reads from disk at least per fetch that misses its cache. 64 KiB.
    pub core_read_bytes_min: usize,
    /// With a flush interval (not fsync per append), an append waits for a flush once this
    /// many bytes of one partition are unwritten. 32 MiB.
    pub partition_unflushed_bytes_max: usize,
    /// Distinct keys one compaction pass holds in memory (about 40 bytes each). 1 Mi keys.
    pub compaction_keys_max: usize,
    /// Largest records section a compressed batch may decompress to when the broker looks
    /// inside it (compaction, keyed-record check); a larger one is kept whole. 64 MiB.
    pub decompressed_batch_bytes_max: usize,
    /// Closed segment files each core keeps open (least recently used are closed); the
    /// active segment of each partition is always open and not counted. 1024.
    pub core_open_segment_files_max: usize,
    /// glommio `io_memory` per executor (registered buffers). 8 MiB.
    pub io_memory_bytes: usize,
    /// Default `segment.bytes` for new topics. 1 GiB.
    pub segment_bytes: u64,
    /// Default `retention.ms` for new topics; -1 keeps forever. 7 days.
    pub retention_ms: i64,
    /// Default `retention.bytes` for new topics; -1 has no size limit.
    pub retention_bytes: i64,
    /// Default `max.message.bytes` (largest record batch accepted). 1 MiB + 12 bytes, as Kafka.
    pub message_bytes_max: i32,
    /// Where the control core serves Prometheus metrics at `/metrics`: `host:port`, or `off`.
    /// Default `127.0.0.1:9644`. A port that cannot be bound is logged and the broker runs on.
    pub metrics_listen: String,
    /// How long a SIGTERM/SIGINT stop may take before the connections still busy are closed
    /// (their requests unanswered); then every partition is closed cleanly all the same. Idle
    /// connections close, long-poll fetches answer and group waits end at once on the signal,
    /// so a stop normally takes far less. 10 s.
    pub shutdown_timeout_ms: u64,
    /// On a cluster broker, how long SIGTERM/SIGINT waits for the controlled shutdown (Kafka's
    /// KRaft broker: leaderships move to other in-sync replicas and the broker leaves every
    /// ISR before it stops serving) before the stop above starts anyway. It normally takes
    /// about a second; a broker that cannot reach a controller for a whole session stops at
    /// once (it is fenced by then). 15 s.
    pub controlled_shutdown_timeout_ms: u64,
    /// `auto.leader.rebalance.enable`: the active controller makes each partition's preferred
    /// replica (the first of its assignment) its leader again, when it is in the ISR, every
    /// `leader_imbalance_check_interval_ms` (at most 1,000 elections a round, as Kafka 4.4's
    /// controller). Leadership moves away from a broker that stops or fails; this brings it
    /// back once the broker has caught up. On, as Kafka.
    pub auto_leader_rebalance_enable: bool,
    /// `leader.imbalance.check.interval.seconds`, in milliseconds: 300 s, as Kafka.
    pub leader_imbalance_check_interval_ms: u64,
    /// `unclean.leader.election.enable` for topics that do not set it: off, as Kafka. When on,
    /// a partition whose in-sync replicas are all gone is led by any live replica (what that
    /// replica had not copied is lost) instead of waiting for an in-sync one to return.
    pub unclean_leader_election_enable: bool,
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of an empty group waits
    /// for more members (extended while members keep arriving, up to the rebalance timeout).
    /// 300 ms, lower than Kafka's 3 s, so a lone new consumer gets its partitions fast.
    pub group_initial_rebalance_delay_ms: i64,
    /// `group.min.session.timeout.ms` / `group.max.session.timeout.ms`: a JoinGroup outside
    /// gets INVALID_SESSION_TIMEOUT. 6 s and 30 min, as Kafka.
    pub group_min_session_timeout_ms: i32,
    pub group_max_session_timeout_ms: i32,
    /// `group.max.size`: members per group. Unlimited, as Kafka.
    pub group_max_size: i32,
    /// `offsets.topic.num.partitions`: partitions of `__consumer_offsets` when it is created
    /// (on the first FindCoordinator). 50, as Kafka.
    pub offsets_topic_partitions: i32,
    /// `transaction.state.log.num.partitions`: partitions of `__transaction_state` when it is
    /// created (on the first FindCoordinator for a transactional id). 50, as Kafka.
    pub transaction_state_partitions: i32,
    /// `transaction.max.timeout.ms`: an InitProducerId asking for a longer transaction timeout
    /// gets INVALID_TRANSACTION_TIMEOUT. 15 minutes, as Kafka.
    pub transaction_max_timeout_ms: i32,
    /// `transactional.id.expiration.ms`: a transactional id idle this long is forgotten.
    /// 7 days, as Kafka.
    pub transactional_id_expiration_ms: i64,
    /// `offsets.retention.minutes`: committed offsets of an empty group are deleted this long
    /// after it became empty. 7 days, as Kafka.
    pub offsets_retention_minutes: i64,
    /// `offsets.retention.check.interval.ms`. 10 minutes, as Kafka.
    pub offsets_retention_check_interval_ms: i64,
    /// `offset.metadata.max.bytes`: longer commit metadata gets OFFSET_METADATA_TOO_LARGE. 4096.
    pub offset_metadata_max_bytes: usize,
    /// `max.incremental.fetch.session.cache.slots`: incremental fetch sessions (KIP-227) the
    /// broker keeps, split evenly over the cores (each core keeps the sessions of its own
    /// connections); 0 keeps none, so every client sends full fetches. 1000, as Kafka.
    pub fetch_session_cache_slots: usize,
    /// `min.incremental.fetch.session.eviction.ms`: a session unused this long may be evicted
    /// for a new one, and a session younger than this is never evicted for a larger one.
    /// 120 s, as Kafka.
    pub fetch_session_eviction_ms: u64,
    /// Memory each core may spend on its fetch sessions, counted per session and per partition
    /// (`limits::FETCH_SESSION_BYTES`, `limits::FETCH_SESSION_PARTITION_BYTES`, plus topic
    /// names); a session that does not fit evicts others by the slot rules or is not opened.
    /// 64 MiB (about 290,000 partitions kept).
    pub core_fetch_session_bytes_max: usize,
    /// `log.cleaner.backoff.ms`: how often each core looks for compacted partitions with a
    /// compaction pass due. Checked on the 500 ms housekeeping tick. Kafka's default, 15 s.
    pub log_cleaner_backoff_ms: u64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        let shard = sluice_shard::ShardConfig::default();
        BrokerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9092)),
            advertise: None,
            data_dir: PathBuf::from("./sluice-data"),
            cores: None,
            node_id: 0,
            process_roles: "broker,controller".to_owned(),
            controller_voters: String::new(),
            controller_listen: None,
            cluster_id: None,
            broker_heartbeat_interval_ms: 500,
            broker_session_timeout_ms: 3000,
            replica_lag_time_max_ms: 10_000,
            controller_quorum_fetch_timeout_ms: 1000,
            controller_quorum_election_timeout_ms: 500,
            metadata_log_max_record_bytes_between_snapshots: 20 * 1024 * 1024,
            default_partitions: 1,
            auto_create_topics: true,
            request_bytes_max: 100 * 1024 * 1024,
            core_request_memory_bytes: 256 * 1024 * 1024,
            connection_inflight_max: 16,
            core_connections_max: 8192,
            core_cache_bytes_max: shard.cache_bytes_max,
            core_write_bytes_max: shard.write_bytes_max,
            core_read_bytes_min: shard.read_bytes_min,
            partition_unflushed_bytes_max: shard.unflushed_bytes_max,
            compaction_keys_max: shard.compaction_keys_max,
            decompressed_batch_bytes_max: shard.decompressed_batch_bytes_max,
            core_open_segment_files_max: shard.open_segment_files_max,
            io_memory_bytes: 8 * 1024 * 1024,
            segment_bytes: 1 << 30,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            message_bytes_max: 1024 * 1024 + 12,
            metrics_listen: "127.0.0.1:9644".to_owned(),
            shutdown_timeout_ms: 10_000,
            controlled_shutdown_timeout_ms: 15_000,
            auto_leader_rebalance_enable: true,
            leader_imbalance_check_interval_ms: 300_000,
            unclean_leader_election_enable: false,
            group_initial_rebalance_delay_ms: 300,
            group_min_session_timeout_ms: 6000,
            group_max_session_timeout_ms: 1_800_000,
            group_max_size: i32::MAX,
            offsets_topic_partitions: 50,
            transaction_state_partitions: 50,
            transaction_max_timeout_ms: 900_000,
            transactional_id_expiration_ms: 7 * 24 * 60 * 60 * 1000,
            offsets_retention_minutes: 7 * 24 * 60,
            offsets_retention_check_interval_ms: 600_000,
            offset_metadata_max_bytes: 4096,
            log_cleaner_backoff_ms: 15_000,
            fetch_session_cache_slots: 1000,
            fetch_session_eviction_ms: 120_000,
            core_fetch_session_bytes_max: 64 << 20,
        }
    }
}

/// The checked cluster settings of a node that is part of a controller quorum's cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// Serves clients (Kafka's broker role).
    pub broker: bool,
    /// Is a voter of the controller quorum (Kafka's controller role).
    pub controller: bool,
    /// Every voter with its controller address, in the order given.
    pub voters: Vec<(i32, SocketAddr)>,
    /// Where this node's controller listens (a voter's own address by default).
    pub controller_listen: Option<SocketAddr>,
    pub cluster_id: String,
}

/// Parses `id@host:port,...`: ids distinct and non-negative, addresses IP:port.
fn parse_voters(text: &str) -> Result<Vec<(i32, SocketAddr)>, String> {
    let mut voters: Vec<(i32, SocketAddr)> = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((id, addr)) = item.split_once('@') else {
            return Err(format!("`{item}` is not id@host:port"));
        };
        let id: i32 = id
            .parse()
            .ok()
            .filter(|id| *id >= 0)
            .ok_or_else(|| format!("`{id}` is not a node id"))?;
        let addr: SocketAddr = addr
            .parse()
            .map_err(|_| format!("`{addr}` is not an IP address and port"))?;
        if voters.iter().any(|(v, _)| *v == id) {
            return Err(format!("node {id} is listed twice"));
        }
        voters.push((id, addr));
    }
    Ok(voters)
}

/// A cluster id derived from the voters (Kafka's 22-character form), so every node started
/// with the same voters agrees on it without a format step.
fn cluster_id_of(voters: &[(i32, SocketAddr)]) -> String {
    let text: Vec<String> = voters.iter().map(|(id, a)| format!("{id}@{a}")).collect();
    crate::metadata::id_text(crate::metadata::fingerprint(&[], &text.join(",")))
}

/// A configuration that cannot be used, with what to change.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid setting {key}: {message}")]
    Invalid { key: &'static str, message: String },
}

/// Settings renamed since they were first accepted: (old key, new key). The old key still works
/// (with a warning); giving both in one file is an error.
const RENAMED: &[(&str, &str)] = &[("core_cache_bytes", "core_cache_bytes_max")];

/// The current name of setting `key`, warning when `key` is a deprecated one.
fn current_name(key: &str) -> &str {
    match RENAMED.iter().find(|(old, _)| *old == key) {
        Some((old, new)) => {
            tracing::warn!("setting `{old}` is deprecated; it is now called `{new}`");
            new
        }
        None => key,
    }
}

/// Moves every deprecated key of a config file's `table` to its new name.
fn rename_deprecated(table: &mut toml::Table, path: &Path) -> Result<(), ConfigError> {
    for (old, new) in RENAMED {
        let Some(value) = table.remove(*old) else {
            continue;
        };
        if table.contains_key(*new) {
            return Err(ConfigError::Parse {
                path: path.to_owned(),
                message: format!("`{old}` is the old name of `{new}`; give only `{new}`"),
            });
        }
        table.insert(current_name(old).to_owned(), value);
    }
    Ok(())
}

impl BrokerConfig {
    /// The per-core storage settings these give.
    pub fn shard_config(&self) -> sluice_shard::ShardConfig {
        sluice_shard::ShardConfig {
            cache_bytes_max: self.core_cache_bytes_max,
            write_bytes_max: self.core_write_bytes_max,
            read_bytes_min: self.core_read_bytes_min,
            unflushed_bytes_max: self.partition_unflushed_bytes_max,
            compaction_keys_max: self.compaction_keys_max,
            decompressed_batch_bytes_max: self.decompressed_batch_bytes_max,
            open_segment_files_max: self.core_open_segment_files_max,
        }
    }

    /// Reads the optional TOML file, then applies `key=value` settings over it (a value that is
    /// not valid TOML is taken as a string), so every setting can be given on the command line.
    pub fn from_file_and_settings(
        path: Option<&Path>,
        settings: &[String],
    ) -> Result<Self, ConfigError> {
        let origin = path.map_or_else(|| PathBuf::from("--set"), Path::to_owned);
        let mut table: toml::Table = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                let mut table = text
                    .parse()
                    .map_err(|e: toml::de::Error| ConfigError::Parse {
                        path: path.to_owned(),
                        message: e.to_string(),
                    })?;
                rename_deprecated(&mut table, path)?;
                table
            }
            None => toml::Table::new(),
        };
        for s in settings {
            let Some((key, value)) = s.split_once('=') else {
                return Err(ConfigError::Parse {
                    path: origin,
                    message: format!("`{s}` is not key=value"),
                });
            };
            let value = format!("v = {value}")
                .parse::<toml::Table>()
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| toml::Value::String(value.to_owned()));
            table.insert(current_name(key.trim()).to_owned(), value);
        }
        toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse {
                path: origin,
                message: e.to_string(),
            })
    }

    /// Checks the relationships between settings that serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| {
            Err(ConfigError::Invalid {
                key,
                message: message.to_owned(),
            })
        };
        if self.default_partitions < 1 {
            return invalid("default_partitions", "must be at least 1");
        }
        if self.cores == Some(0) {
            return invalid("cores", "must be at least 1");
        }
        if self.request_bytes_max < 64 {
            return invalid("request_bytes_max", "must be at least 64 bytes");
        }
        if self.core_request_memory_bytes < self.request_bytes_max {
            return invalid(
                "core_request_memory_bytes",
                "must be at least request_bytes_max, or a maximal request could never be admitted",
            );
        }
        if self.connection_inflight_max == 0 {
            return invalid("connection_inflight_max", "must be at least 1");
        }
        if self.core_connections_max == 0 {
            return invalid("core_connections_max", "must be at least 1");
        }
        if self.metrics_listen != "off" && self.metrics_listen.parse::<SocketAddr>().is_err() {
            return invalid("metrics_listen", "must be host:port (an IP address) or off");
        }
        if self.shutdown_timeout_ms == 0 {
            return invalid("shutdown_timeout_ms", "must be at least 1");
        }
        if self.leader_imbalance_check_interval_ms == 0 {
            return invalid("leader_imbalance_check_interval_ms", "must be at least 1");
        }
        if self.transaction_state_partitions < 1 {
            return invalid("transaction_state_partitions", "must be at least 1");
        }
        if self.transaction_max_timeout_ms < 1 {
            return invalid("transaction_max_timeout_ms", "must be at least 1");
        }
        if self.offsets_topic_partitions < 1 {
            return invalid("offsets_topic_partitions", "must be at least 1");
        }
        if self.group_min_session_timeout_ms > self.group_max_session_timeout_ms {
            return invalid(
                "group_min_session_timeout_ms",
                "must not exceed group_max_session_timeout_ms",
            );
        }
        if self.group_max_size < 1 {
            return invalid("group_max_size", "must be at least 1");
        }
        if self.core_write_bytes_max < 4096 {
            return invalid("core_write_bytes_max", "must be at least 4096 bytes");
        }
        if self.core_read_bytes_min < 512 {
            return invalid("core_read_bytes_min", "must be at least 512 bytes");
        }
        if self.partition_unflushed_bytes_max == 0 {
            return invalid("partition_unflushed_bytes_max", "must be at least 1 byte");
        }
        if self.compaction_keys_max == 0 {
            return invalid("compaction_keys_max", "must be at least 1");
        }
        if self.fetch_session_eviction_ms > i64::MAX as u64 {
            return invalid(
                "fetch_session_eviction_ms",
                "must fit a signed 64-bit number",
            );
        }
        if self.message_bytes_max < 0 {
            return invalid("message_bytes_max", "must not be negative");
        }
        self.cluster().map(|_| ())
    }

    /// The cluster settings, checked: `None` for a single-node broker (no voters).
    /// Whether this node is part of a cluster (a controller quorum is configured): topics and
    /// brokers then come from the controller's metadata image.
    pub fn is_cluster(&self) -> bool {
        !self.controller_voters.trim().is_empty()
    }

    pub fn cluster(&self) -> Result<Option<ClusterSettings>, ConfigError> {
        let invalid = |key, message: String| Err(ConfigError::Invalid { key, message });
        let roles = match self.process_roles.replace(' ', "").as_str() {
            "broker,controller" | "controller,broker" => (true, true),
            "broker" => (true, false),
            "controller" => (false, true),
            other => {
                return invalid(
                    "process_roles",
                    format!("`{other}`: must be broker, controller or broker,controller"),
                );
            }
        };
        if self.controller_voters.trim().is_empty() {
            return Ok(None);
        }
        let voters = match parse_voters(&self.controller_voters) {
            Ok(voters) => voters,
            Err(message) => return invalid("controller_voters", message),
        };
        let mine = voters
            .iter()
            .find(|(id, _)| *id == self.node_id)
            .map(|v| v.1);
        let controller_listen = self.controller_listen.or(mine);
        if roles.1 && mine.is_none() {
            let message = format!(
                "node {} has the controller role but is not a voter",
                self.node_id
            );
            return invalid("controller_voters", message);
        }
        if self.node_id < 0 {
            return invalid("node_id", "must not be negative in a cluster".to_owned());
        }
        if self.controller_quorum_election_timeout_ms == 0
            || self.controller_quorum_fetch_timeout_ms <= self.controller_quorum_election_timeout_ms
        {
            let message = "must exceed controller_quorum_election_timeout_ms (> 0)".to_owned();
            return invalid("controller_quorum_fetch_timeout_ms", message);
        }
        if self.metadata_log_max_record_bytes_between_snapshots == 0 {
            let key = "metadata_log_max_record_bytes_between_snapshots";
            return invalid(key, "must be positive".to_owned());
        }
        if self.broker_session_timeout_ms <= self.broker_heartbeat_interval_ms {
            let message = "must exceed broker_heartbeat_interval_ms".to_owned();
            return invalid("broker_session_timeout_ms", message);
        }
        if self.replica_lag_time_max_ms <= self.broker_session_timeout_ms {
            let message = "must exceed broker_session_timeout_ms".to_owned();
            return invalid("replica_lag_time_max_ms", message);
        }
        let cluster_id = self
            .cluster_id
            .clone()
            .unwrap_or_else(|| cluster_id_of(&voters));
        Ok(Some(ClusterSettings {
            broker: roles.0,
            controller: roles.1,
            voters,
            controller_listen,
            cluster_id,
        }))
    }

    /// Number of executors: `cores` or every core this process may run on.
    pub fn core_count(&self) -> usize {
        self.cores.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cluster id derived from the voters is stable (what nodes started before derived)
    /// and changes with them.
    #[test]
    fn cluster_id_follows_the_voters() {
        let voters = parse_voters("1@127.0.0.1:19101,2@127.0.0.1:19102,3@127.0.0.1:19103").unwrap();
        assert_eq!(cluster_id_of(&voters), "AC093HCD5rbhcIsJUd5QY8");
        assert_ne!(cluster_id_of(&voters[..2]), cluster_id_of(&voters));
    }

    /// Proves the defaults are self-consistent and a partial TOML file keeps the other defaults.
    #[test]
    fn defaults_validate_and_partial_file_keeps_defaults() {
        BrokerConfig::default()
            .validate()
            .expect("defaults are valid");
        let c: BrokerConfig =
            toml::from_str("default_partitions = 3\nlisten = \"127.0.0.1:19092\"").expect("parses");
        assert_eq!(c.default_partitions, 3);
        assert_eq!(c.listen.port(), 19092);
        assert_eq!(c.request_bytes_max, 100 * 1024 * 1024);
    }

    /// Proves `--set` values override the file's and unknown keys are refused there too.
    #[test]
    fn settings_override() {
        let c = BrokerConfig::from_file_and_settings(
            None,
            &[
                "group_initial_rebalance_delay_ms=0".into(),
                "listen=127.0.0.1:19093".into(),
            ],
        )
        .expect("valid settings");
        assert_eq!(c.group_initial_rebalance_delay_ms, 0);
        assert_eq!(c.listen.port(), 19093);
        assert!(BrokerConfig::from_file_and_settings(None, &["nope=1".into()]).is_err());
        assert!(BrokerConfig::from_file_and_settings(None, &["novalue".into()]).is_err());
    }

    /// Proves the old name of `core_cache_bytes_max` still works, in a file and as `--set`, that
    /// a later `--set` of the new name overrides a file's old one, and that one file giving both
    /// names is refused.
    #[test]
    fn deprecated_cache_key_is_accepted() {
        let c = BrokerConfig::from_file_and_settings(None, &["core_cache_bytes=1024".into()])
            .expect("old name as --set");
        assert_eq!(c.core_cache_bytes_max, 1024);
        assert_eq!(c.shard_config().cache_bytes_max, 1024);
        let dir = std::env::temp_dir().join(format!("sluice-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("old.toml");
        std::fs::write(&file, "core_cache_bytes = 2048\n").expect("write");
        let c = BrokerConfig::from_file_and_settings(Some(&file), &[]).expect("old name in file");
        assert_eq!(c.core_cache_bytes_max, 2048);
        let c = BrokerConfig::from_file_and_settings(
            Some(&file),
            &["core_cache_bytes_max=4096".into()],
        )
        .expect("--set over the file");
        assert_eq!(c.core_cache_bytes_max, 4096);
        std::fs::write(&file, "core_cache_bytes = 1\ncore_cache_bytes_max = 2\n").expect("write");
        assert!(BrokerConfig::from_file_and_settings(Some(&file), &[]).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Proves the fetch session settings default to Kafka's (1000 slots, 120 s) and that 0 slots
    /// (no sessions at all) is a valid setting.
    #[test]
    fn fetch_session_defaults_are_kafkas() {
        let c = BrokerConfig::default();
        assert_eq!(c.fetch_session_cache_slots, 1000);
        assert_eq!(c.fetch_session_eviction_ms, 120_000);
        let none =
            BrokerConfig::from_file_and_settings(None, &["fetch_session_cache_slots=0".into()])
                .expect("valid settings");
        assert_eq!(none.fetch_session_cache_slots, 0);
        none.validate().expect("no sessions is valid");
    }

    /// Proves a connection limit of 0 (no client could ever connect) is refused.
    #[test]
    fn zero_connection_limit_is_rejected() {
        let c = BrokerConfig {
            core_connections_max: 0,
            ..BrokerConfig::default()
        };
        assert!(c.validate().is_err());
    }

    /// Proves an unknown key is an error, not silently ignored (a typo must not go unnoticed).
    #[test]
    fn unknown_key_is_rejected() {
        assert!(toml::from_str::<BrokerConfig>("no_such_setting = 1").is_err());
    }

    /// Proves a request budget smaller than one maximal request is refused.
    #[test]
    fn budget_below_request_max_is_rejected() {
        let c = BrokerConfig {
            core_request_memory_bytes: 1024,
            ..BrokerConfig::default()
        };
        assert!(c.validate().is_err());
    }
}
