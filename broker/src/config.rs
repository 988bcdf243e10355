//! Broker configuration: one struct, read from an optional TOML file, then overridden by flags.
//!
//! Only `broker` reads config files and the environment. Every memory bound the broker uses is a
//! field here, in bytes, with its default documented next to it.

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
    /// Node id this broker reports in Metadata. Default 0.
    pub node_id: i32,
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
    /// Per-core cache of recent batches, in bytes. 256 MiB.
    pub core_cache_bytes: usize,
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
    /// Default `group.initial.rebalance.delay.ms`. Lower than Kafka's 3 s.
    pub group_initial_rebalance_delay_ms: i64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9092)),
            advertise: None,
            data_dir: PathBuf::from("./sluice-data"),
            cores: None,
            node_id: 0,
            default_partitions: 1,
            auto_create_topics: true,
            request_bytes_max: 100 * 1024 * 1024,
            core_request_memory_bytes: 256 * 1024 * 1024,
            connection_inflight_max: 16,
            core_cache_bytes: 256 * 1024 * 1024,
            io_memory_bytes: 8 * 1024 * 1024,
            segment_bytes: 1 << 30,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            message_bytes_max: 1024 * 1024 + 12,
            group_initial_rebalance_delay_ms: 300,
        }
    }
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

impl BrokerConfig {
    /// Reads a TOML file; keys not given keep their defaults.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
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
        if self.message_bytes_max < 0 {
            return invalid("message_bytes_max", "must not be negative");
        }
        Ok(())
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
