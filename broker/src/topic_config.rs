//! Topic-level configs: every key Kafka 4.4 describes for a topic, with its default, type and
//! broker-level synonym, and validation with Kafka's own bounds and messages.
//!
//! The table and the bounds were read off the reference Kafka 4.4.0 on this machine
//! (`kafka-configs --describe --all`, and `kafka-topics --create --config` with values at and
//! past each bound). Keys sluice stores but does not act on (tiered storage, throttles) are
//! accepted and described like Kafka so tools that set them keep working.

use std::collections::BTreeMap;

/// Kafka's DescribeConfigs config types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i8)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
    Double = 6,
    List = 7,
}

/// How a value is checked.
#[derive(Debug, Clone, Copy)]
enum Check {
    Long(i64),
    Int(i32),
    Bool,
    OneOf(&'static [&'static str]),
    ListOf(&'static [&'static str]),
    Ratio,
    Any,
}

/// One topic config key.
#[derive(Debug)]
pub struct ConfigDef {
    pub name: &'static str,
    pub default: &'static str,
    pub kind: ConfigType,
    /// The broker-level config whose default the topic inherits (a DEFAULT_CONFIG synonym).
    pub synonym: Option<&'static str>,
    check: Check,
}

const LONG_MAX: &str = "9223372036854775807";

macro_rules! def {
    ($name:expr, $default:expr, $kind:ident, $syn:expr, $check:expr) => {
        ConfigDef {
            name: $name,
            default: $default,
            kind: ConfigType::$kind,
            synonym: $syn,
            check: $check,
        }
    };
}

/// Every topic config Kafka 4.4 describes, sorted by name (as Kafka lists them).
pub static TOPIC_CONFIGS: &[ConfigDef] = &[
    def!(
        "cleanup.policy",
        "delete",
        List,
        Some("log.cleanup.policy"),
        Check::ListOf(&["compact", "delete"])
    ),
    def!(
        "compression.gzip.level",
        "-1",
        Int,
        Some("compression.gzip.level"),
        Check::Int(-1)
    ),
    def!(
        "compression.lz4.level",
        "9",
        Int,
        Some("compression.lz4.level"),
        Check::Int(1)
    ),
    def!(
        "compression.type",
        "producer",
        String,
        Some("compression.type"),
        Check::OneOf(&["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"])
    ),
    def!(
        "compression.zstd.level",
        "3",
        Int,
        Some("compression.zstd.level"),
        Check::Int(-131072)
    ),
    def!(
        "delete.retention.ms",
        "86400000",
        Long,
        Some("log.cleaner.delete.retention.ms"),
        Check::Long(0)
    ),
    def!(
        "errors.deadletterqueue.group.enable",
        "false",
        Boolean,
        None,
        Check::Bool
    ),
    def!(
        "file.delete.delay.ms",
        "60000",
        Long,
        Some("log.segment.delete.delay.ms"),
        Check::Long(0)
    ),
    def!(
        "flush.messages",
        LONG_MAX,
        Long,
        Some("log.flush.interval.messages"),
        Check::Long(1)
    ),
    def!("flush.ms", LONG_MAX, Long, None, Check::Long(0)),
    def!(
        "follower.replication.throttled.replicas",
        "",
        List,
        None,
        Check::Any
    ),
    def!(
        "index.interval.bytes",
        "4096",
        Int,
        Some("log.index.interval.bytes"),
        Check::Int(0)
    ),
    def!(
        "leader.replication.throttled.replicas",
        "",
        List,
        None,
        Check::Any
    ),
    def!(
        "local.retention.bytes",
        "-2",
        Long,
        Some("log.local.retention.bytes"),
        Check::Long(-2)
    ),
    def!(
        "local.retention.ms",
        "-2",
        Long,
        Some("log.local.retention.ms"),
        Check::Long(-2)
    ),
    def!(
        "max.compaction.lag.ms",
        LONG_MAX,
        Long,
        Some("log.cleaner.max.compaction.lag.ms"),
        Check::Long(1)
    ),
    def!(
        "max.decompressed.message.bytes",
        "2147483639",
        Int,
        Some("max.decompressed.message.bytes"),
        Check::Int(0)
    ),
    def!(
        "max.message.bytes",
        "1048588",
        Int,
        Some("message.max.bytes"),
        Check::Int(0)
    ),
    def!(
        "message.timestamp.after.max.ms",
        "3600000",
        Long,
        Some("log.message.timestamp.after.max.ms"),
        Check::Long(0)
    ),
    def!(
        "message.timestamp.before.max.ms",
        LONG_MAX,
        Long,
        Some("log.message.timestamp.before.max.ms"),
        Check::Long(0)
    ),
    def!(
        "message.timestamp.type",
        "CreateTime",
        String,
        Some("log.message.timestamp.type"),
        Check::OneOf(&["CreateTime", "LogAppendTime"])
    ),
    def!(
        "min.cleanable.dirty.ratio",
        "0.5",
        Double,
        Some("log.cleaner.min.cleanable.ratio"),
        Check::Ratio
    ),
    def!(
        "min.compaction.lag.ms",
        "0",
        Long,
        Some("log.cleaner.min.compaction.lag.ms"),
        Check::Long(0)
    ),
    def!(
        "min.insync.replicas",
        "1",
        Int,
        Some("min.insync.replicas"),
        Check::Int(1)
    ),
    def!(
        "preallocate",
        "false",
        Boolean,
        Some("log.preallocate"),
        Check::Bool
    ),
    def!(
        "remote.copy.lag.bytes",
        "-1",
        Long,
        Some("log.remote.copy.lag.bytes"),
        Check::Long(-1)
    ),
    def!(
        "remote.copy.lag.ms",
        "0",
        Long,
        Some("log.remote.copy.lag.ms"),
        Check::Long(0)
    ),
    def!(
        "remote.log.copy.disable",
        "false",
        Boolean,
        None,
        Check::Bool
    ),
    def!(
        "remote.log.delete.on.disable",
        "false",
        Boolean,
        None,
        Check::Bool
    ),
    def!("remote.storage.enable", "false", Boolean, None, Check::Bool),
    def!(
        "retention.bytes",
        "-1",
        Long,
        Some("log.retention.bytes"),
        Check::Long(i64::MIN)
    ),
    def!("retention.ms", "604800000", Long, None, Check::Long(-1)),
    def!(
        "segment.bytes",
        "1073741824",
        Int,
        Some("log.segment.bytes"),
        Check::Int(1_048_576)
    ),
    def!(
        "segment.index.bytes",
        "10485760",
        Int,
        Some("log.index.size.max.bytes"),
        Check::Int(4)
    ),
    def!("segment.jitter.ms", "0", Long, None, Check::Long(0)),
    def!("segment.ms", "604800000", Long, None, Check::Long(1)),
    def!(
        "unclean.leader.election.enable",
        "false",
        Boolean,
        Some("unclean.leader.election.enable"),
        Check::Bool
    ),
];

/// The definition of `name`, if it is a topic config.
pub fn def(name: &str) -> Option<&'static ConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// DescribeConfigs config sources.
pub mod source {
    pub const TOPIC: i8 = 1;
    pub const DYNAMIC_BROKER: i8 = 2;
    pub const DYNAMIC_DEFAULT_BROKER: i8 = 3;
    pub const STATIC_BROKER: i8 = 4;
    pub const DEFAULT: i8 = 5;
}

/// The broker config whose value a topic key takes when the topic does not override it: its
/// synonym, or for the millisecond keys Kafka also spells in hours, the `.ms` broker key.
pub fn broker_key(topic_key: &str) -> Option<&'static str> {
    match topic_key {
        "retention.ms" => Some("log.retention.ms"),
        "segment.ms" => Some("log.roll.ms"),
        "flush.ms" => Some("log.flush.interval.ms"),
        k => def(k)?.synonym,
    }
}

/// The topic key whose default a broker config sets, if it is one (these are the broker
/// configs that can be changed at runtime, as in Kafka's dynamic log configs).
pub fn topic_key_of(broker: &str) -> Option<&'static str> {
    TOPIC_CONFIGS
        .iter()
        .find(|d| broker_key(d.name) == Some(broker))
        .map(|d| d.name)
}

/// Checks a value for a dynamic broker config; the text is Kafka's. Keys that are not the
/// broker default of a topic config are custom settings, stored as given (Kafka does too).
pub fn validate_broker(broker: &str, value: &str) -> Result<(), String> {
    match topic_key_of(broker) {
        Some(topic_key) => validate(topic_key, value).map_err(|m| {
            m.replacen(
                &format!("configuration {topic_key}:"),
                &format!("configuration {broker}:"),
                1,
            )
        }),
        None => Ok(()),
    }
}

/// Broker-level values topics inherit, by broker config name, most specific layer first:
/// this broker's dynamic configs, the cluster-wide dynamic defaults, then what sluice's own
/// config file set (only values that differ from Kafka's defaults).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inherited {
    layers: Vec<(i8, BTreeMap<String, String>)>,
}

impl Inherited {
    pub fn new(
        node: Option<&BTreeMap<String, String>>,
        cluster: Option<&BTreeMap<String, String>>,
        static_config: BTreeMap<String, String>,
    ) -> Inherited {
        let mut layers = Vec::new();
        if let Some(n) = node.filter(|n| !n.is_empty()) {
            layers.push((source::DYNAMIC_BROKER, n.clone()));
        }
        if let Some(c) = cluster.filter(|c| !c.is_empty()) {
            layers.push((source::DYNAMIC_DEFAULT_BROKER, c.clone()));
        }
        if !static_config.is_empty() {
            layers.push((source::STATIC_BROKER, static_config));
        }
        Inherited { layers }
    }

    /// The value a broker config has, and its source, if any layer sets it.
    pub fn lookup(&self, broker: &str) -> Option<(&str, i8)> {
        self.layers
            .iter()
            .find_map(|(src, m)| m.get(broker).map(|v| (v.as_str(), *src)))
    }

    /// Every layer's value of a broker config, most specific first (DescribeConfigs synonyms).
    pub fn all<'a>(&'a self, broker: &'a str) -> impl Iterator<Item = (&'a str, i8)> + 'a {
        self.layers
            .iter()
            .filter_map(move |(src, m)| m.get(broker).map(|v| (v.as_str(), *src)))
    }
}

/// A topic config's effective value and its source, as DescribeConfigs and CreateTopics report
/// it: the topic's own value, else the most specific broker layer that sets its broker config,
/// else Kafka's default.
pub fn effective<'a>(
    d: &'a ConfigDef,
    overrides: &'a BTreeMap<String, String>,
    inherited: &'a Inherited,
) -> (&'a str, i8) {
    if let Some(v) = overrides.get(d.name) {
        return (v.as_str(), source::TOPIC);
    }
    broker_key(d.name)
        .and_then(|k| inherited.lookup(k))
        .unwrap_or((d.default, source::DEFAULT))
}

/// Checks one key and value; the error text is Kafka's, for INVALID_CONFIG responses.
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    let Some(d) = def(name) else {
        return Err(format!("Unknown topic config name: {name}"));
    };
    let invalid = |why: String| {
        Err(format!(
            "Invalid value {value} for configuration {name}: {why}"
        ))
    };
    match d.check {
        Check::Long(min) => match value.trim().parse::<i64>() {
            Ok(v) if v >= min => Ok(()),
            Ok(_) => invalid(format!("Value must be at least {min}")),
            Err(_) => invalid("Not a number of type LONG".into()),
        },
        Check::Int(min) => match value.trim().parse::<i32>() {
            Ok(v) if v >= min => Ok(()),
            Ok(_) => invalid(format!("Value must be at least {min}")),
            Err(_) => invalid("Not a number of type INT".into()),
        },
        Check::Bool => match value.trim().to_ascii_lowercase().as_str() {
            "true" | "false" => Ok(()),
            _ => invalid("Expected value to be either true or false".into()),
        },
        Check::OneOf(allowed) => {
            if allowed.contains(&value) {
                Ok(())
            } else {
                invalid(format!("String must be one of: {}", allowed.join(", ")))
            }
        }
        Check::ListOf(allowed) => {
            if value
                .split(',')
                .map(str::trim)
                .all(|v| allowed.contains(&v))
            {
                Ok(())
            } else {
                invalid(format!("String must be one of: {}", allowed.join(", ")))
            }
        }
        Check::Ratio => match value.trim().parse::<f64>() {
            Ok(v) if (0.0..=1.0).contains(&v) => Ok(()),
            Ok(_) => invalid("Value must be between 0 and 1".into()),
            Err(_) => invalid("Not a number of type DOUBLE".into()),
        },
        Check::Any => Ok(()),
    }
}

/// A topic's effective settings as the storage engine and handlers use them.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicSettings {
    pub compact: bool,
    pub delete: bool,
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub segment_bytes: u64,
    pub segment_ms: i64,
    pub max_message_bytes: i32,
    pub log_append_time: bool,
    pub timestamp_before_max_ms: i64,
    pub timestamp_after_max_ms: i64,
    pub index_interval_bytes: u32,
    pub flush_messages: i64,
    pub flush_ms: i64,
    pub delete_retention_ms: i64,
    pub min_compaction_lag_ms: i64,
    pub max_compaction_lag_ms: i64,
    pub min_cleanable_dirty_ratio: f64,
    /// acks=all needs this many in-sync replicas (and a replicated partition's high watermark
    /// waits for them).
    pub min_insync_replicas: i32,
}

impl TopicSettings {
    /// Resolves a topic's overrides over the broker-level values and Kafka's defaults.
    /// `overrides` and the inherited values were validated when stored.
    pub fn resolve(overrides: &BTreeMap<String, String>, inherited: &Inherited) -> TopicSettings {
        let get = |k: &str| {
            overrides
                .get(k)
                .map(String::as_str)
                .or_else(|| inherited.lookup(broker_key(k)?).map(|(v, _)| v))
                .or_else(|| def(k).map(|d| d.default))
                .unwrap_or("")
        };
        let long = |k: &str| get(k).trim().parse::<i64>().unwrap_or(i64::MAX);
        let policy = get("cleanup.policy");
        TopicSettings {
            compact: policy.split(',').any(|p| p.trim() == "compact"),
            delete: policy.split(',').any(|p| p.trim() == "delete"),
            retention_ms: long("retention.ms"),
            retention_bytes: long("retention.bytes"),
            segment_bytes: u64::try_from(long("segment.bytes")).unwrap_or(1 << 30),
            segment_ms: long("segment.ms"),
            max_message_bytes: i32::try_from(long("max.message.bytes")).unwrap_or(i32::MAX),
            log_append_time: get("message.timestamp.type") == "LogAppendTime",
            timestamp_before_max_ms: long("message.timestamp.before.max.ms"),
            timestamp_after_max_ms: long("message.timestamp.after.max.ms"),
            index_interval_bytes: u32::try_from(long("index.interval.bytes")).unwrap_or(4096),
            flush_messages: long("flush.messages"),
            flush_ms: long("flush.ms"),
            delete_retention_ms: long("delete.retention.ms"),
            min_compaction_lag_ms: long("min.compaction.lag.ms"),
            max_compaction_lag_ms: long("max.compaction.lag.ms"),
            min_cleanable_dirty_ratio: get("min.cleanable.dirty.ratio")
                .trim()
                .parse::<f64>()
                .unwrap_or(0.5),
            min_insync_replicas: i32::try_from(long("min.insync.replicas")).unwrap_or(1),
        }
    }
}

impl TopicSettings {
    /// The storage engine's settings for a partition of this topic.
    pub fn log_config(&self) -> sluice_shard::LogConfig {
        let durability = if self.flush_messages == 1 || self.flush_ms == i64::MAX {
            // Kafka's default flush settings mean "leave it to the OS"; sluice's default is
            // stronger: every acknowledged append is on disk (group-committed).
            sluice_shard::Durability::SyncEachAppend
        } else {
            sluice_shard::Durability::FlushInterval {
                interval_ms: u64::try_from(self.flush_ms.max(1)).unwrap_or(u64::MAX),
            }
        };
        sluice_shard::LogConfig {
            segment_bytes: self.segment_bytes,
            segment_ms: self.segment_ms,
            index_interval_bytes: u64::from(self.index_interval_bytes.max(1)),
            retention_ms: (self.delete && self.retention_ms >= 0).then_some(self.retention_ms),
            retention_bytes: if self.delete && self.retention_bytes >= 0 {
                Some(self.retention_bytes as u64)
            } else {
                None
            },
            durability,
            batch_bytes_max: usize::try_from(self.max_message_bytes).unwrap_or(0),
            log_append_time: self.log_append_time,
            timestamp_before_max_ms: self.timestamp_before_max_ms,
            timestamp_after_max_ms: self.timestamp_after_max_ms,
            compact: self.compact,
            delete_retention_ms: self.delete_retention_ms,
            min_compaction_lag_ms: self.min_compaction_lag_ms,
            max_compaction_lag_ms: self.max_compaction_lag_ms,
            min_cleanable_dirty_ratio: self.min_cleanable_dirty_ratio,
            ..sluice_shard::LogConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves the bounds and messages observed on Kafka 4.4.0.
    #[test]
    fn kafka_bounds() {
        let check = |k, v, ok: bool| assert_eq!(validate(k, v).is_ok(), ok, "{k}={v}");
        check("segment.bytes", "1000", false);
        check("segment.bytes", "1048576", true);
        check("retention.ms", "-2", false);
        check("retention.ms", "-1", true);
        check("cleanup.policy", "compact,delete", true);
        check("cleanup.policy", "bogus", false);
        check("max.message.bytes", "-1", false);
        check("message.timestamp.type", "LogAppendTime", true);
        check("segment.ms", "0", false);
        check("retention.bytes", "-5", true);
        check("min.insync.replicas", "0", false);
        assert_eq!(
            validate("bogus.key", "1").unwrap_err(),
            "Unknown topic config name: bogus.key"
        );
        assert_eq!(
            validate("segment.bytes", "1000").unwrap_err(),
            "Invalid value 1000 for configuration segment.bytes: Value must be at least 1048576"
        );
    }

    /// Proves the table is sorted and every default passes its own check.
    #[test]
    fn table_is_sorted_and_defaults_valid() {
        for w in TOPIC_CONFIGS.windows(2) {
            assert!(w[0].name < w[1].name, "{} before {}", w[0].name, w[1].name);
        }
        for d in TOPIC_CONFIGS {
            assert!(validate(d.name, d.default).is_ok(), "default of {}", d.name);
        }
    }

    /// Proves overrides win over defaults when settings are resolved.
    #[test]
    fn resolve_overrides() {
        let s = TopicSettings::resolve(
            &BTreeMap::from([
                ("cleanup.policy".into(), "compact".into()),
                ("retention.ms".into(), "1000".into()),
            ]),
            &Inherited::default(),
        );
        assert!(s.compact && !s.delete);
        assert_eq!(s.retention_ms, 1000);
        assert_eq!(s.segment_bytes, 1 << 30);
        assert_eq!(s.max_message_bytes, 1_048_588);
    }

    /// Proves the layers: topic override, then this broker's dynamic value, then the
    /// cluster-wide dynamic default, then the static config, then Kafka's default.
    #[test]
    fn resolve_inherits_broker_layers() {
        let node = BTreeMap::from([("log.retention.ms".to_owned(), "5000".to_owned())]);
        let cluster = BTreeMap::from([
            ("log.retention.ms".to_owned(), "7000".to_owned()),
            ("log.segment.bytes".to_owned(), "2000000".to_owned()),
        ]);
        let static_config = BTreeMap::from([
            ("log.segment.bytes".to_owned(), "3000000".to_owned()),
            ("message.max.bytes".to_owned(), "4000".to_owned()),
        ]);
        let inh = Inherited::new(Some(&node), Some(&cluster), static_config);
        let s = TopicSettings::resolve(&BTreeMap::new(), &inh);
        assert_eq!(s.retention_ms, 5000);
        assert_eq!(s.segment_bytes, 2_000_000);
        assert_eq!(s.max_message_bytes, 4000);
        assert_eq!(s.retention_bytes, -1);
        let own = BTreeMap::from([("retention.ms".to_owned(), "10".to_owned())]);
        assert_eq!(TopicSettings::resolve(&own, &inh).retention_ms, 10);
        assert_eq!(
            inh.all("log.retention.ms").collect::<Vec<_>>(),
            [
                ("5000", source::DYNAMIC_BROKER),
                ("7000", source::DYNAMIC_DEFAULT_BROKER)
            ]
        );
    }

    /// Proves broker-level validation uses the topic rule with the broker key in the text.
    #[test]
    fn broker_values_are_checked_like_their_topic_key() {
        assert_eq!(topic_key_of("log.retention.ms"), Some("retention.ms"));
        assert_eq!(topic_key_of("log.cleanup.policy"), Some("cleanup.policy"));
        assert_eq!(topic_key_of("num.partitions"), None);
        assert_eq!(
            validate_broker("log.segment.bytes", "100").unwrap_err(),
            "Invalid value 100 for configuration log.segment.bytes: Value must be at least 1048576"
        );
        assert!(validate_broker("log.retention.ms", "abc").is_err());
        assert!(validate_broker("foo.bar", "anything").is_ok());
    }
}
