//! The topic registry: names, ids, partition counts and configs of every topic, and which core
//! owns each partition.
//!
//! The control core owns the registry: it alone creates, alters and deletes topics, persists the registry
//! and sends the new table to every other core, each of which keeps its own copy for routing.
//! The file is an rkyv archive behind a magic and a CRC-32C, written to a temp file, fsynced,
//! renamed over the old one, and the directory fsynced; it is read with rkyv's checked access,
//! so a damaged file is an error, never undefined behaviour.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use rkyv::{Archive, Deserialize, Serialize};

use crate::limits::TOPIC_NAME_BYTES_MAX;

/// One topic.
#[derive(Debug, Clone, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct TopicMeta {
    pub name: String,
    /// Kafka topic id (a UUID), random at creation, never all zeroes.
    pub id: [u8; 16],
    pub partitions: i32,
    /// Topic-level config overrides (`retention.ms` …); absent keys take the broker default.
    pub configs: BTreeMap<String, String>,
    pub created_ms: i64,
}

/// Every topic, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct TopicTable {
    pub topics: BTreeMap<String, TopicMeta>,
    /// Bumped on every change; a core ignores a table older than the one it has.
    pub version: u64,
    /// Dynamic broker configs set through AlterConfigs / IncrementalAlterConfigs, by entity:
    /// `""` holds the cluster-wide defaults, a node id that broker's own values.
    pub broker_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// Group configs (resource type 32) by group id, as described (see `group_config`); a
    /// group whose configs are all deleted has no entry.
    pub group_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// Client-metrics subscriptions (resource type 16) by name, as described (see
    /// `client_metrics`); a subscription whose configs are all deleted has no entry.
    pub client_metrics: BTreeMap<String, BTreeMap<String, String>>,
}

/// The registry as format version 1 stored it (before dynamic broker configs).
#[derive(Debug, Archive, Serialize, Deserialize)]
struct TopicTableV1 {
    topics: BTreeMap<String, TopicMeta>,
    version: u64,
}

/// The registry as format version 2 stored it (before group and client-metrics configs).
#[derive(Debug, Archive, Serialize, Deserialize)]
struct TopicTableV2 {
    topics: BTreeMap<String, TopicMeta>,
    version: u64,
    broker_configs: BTreeMap<String, BTreeMap<String, String>>,
}

/// Cluster-level dynamic broker configs every registry holds from its first start. Kafka 4.4's
/// controller writes exactly this one when it bootstraps a new cluster (with eligible leader
/// replicas on, the default since 4.1: `ConfigRecord{BROKER, "", min.insync.replicas}` from
/// the static value, 1 by default), so a topic's min.insync.replicas is a dynamic cluster
/// default (source DYNAMIC_DEFAULT_BROKER_CONFIG), not Kafka's built-in default.
pub const BOOTSTRAP_CLUSTER_CONFIGS: &[(&str, &str)] = &[("min.insync.replicas", "1")];

const MAGIC: &[u8; 8] = b"SLUICEMT";
const FORMAT_VERSION: u32 = 3;
const HEADER_BYTES: usize = 8 + 4 + 4 + 8;

/// The registry file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("topic registry {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "topic registry {path} is damaged ({what}); restore it from a backup or move it away to start empty"
    )]
    Damaged { path: PathBuf, what: &'static str },
}

impl TopicTable {
    /// Where the registry lives under a data dir.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("cluster").join("topics.meta")
    }

    /// Loads the registry; a missing file is an empty registry.
    pub fn load(data_dir: &Path) -> Result<Self, MetadataError> {
        let path = Self::path(data_dir);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => return Err(MetadataError::Io { path, source }),
        };
        Self::decode(&bytes).map_err(|what| MetadataError::Damaged { path, what })
    }

    fn decode(bytes: &[u8]) -> Result<Self, &'static str> {
        if bytes.len() < HEADER_BYTES || &bytes[..8] != MAGIC {
            return Err("bad magic");
        }
        let word = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let format = word(8);
        if !(1..=FORMAT_VERSION).contains(&format) {
            return Err("unknown format version");
        }
        let crc = word(12);
        let mut len_bytes = [0u8; 8];
        len_bytes.copy_from_slice(&bytes[16..24]);
        let len = u64::from_le_bytes(len_bytes);
        let body = &bytes[HEADER_BYTES..];
        if body.len() as u64 != len {
            return Err("length mismatch");
        }
        if crc32c::crc32c(body) != crc {
            return Err("checksum mismatch");
        }
        // rkyv needs an aligned buffer; copy into one (the file is small and read once).
        let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(body.len());
        aligned.extend_from_slice(body);
        if format == 1 {
            let v1 = rkyv::from_bytes::<TopicTableV1, rkyv::rancor::Error>(&aligned)
                .map_err(|_| "archive invalid")?;
            return Ok(TopicTable {
                topics: v1.topics,
                version: v1.version,
                ..TopicTable::default()
            });
        }
        if format == 2 {
            let v2 = rkyv::from_bytes::<TopicTableV2, rkyv::rancor::Error>(&aligned)
                .map_err(|_| "archive invalid")?;
            return Ok(TopicTable {
                topics: v2.topics,
                version: v2.version,
                broker_configs: v2.broker_configs,
                ..TopicTable::default()
            });
        }
        rkyv::from_bytes::<TopicTable, rkyv::rancor::Error>(&aligned).map_err(|_| "archive invalid")
    }

    fn encode(&self) -> Vec<u8> {
        let body = rkyv::to_bytes::<rkyv::rancor::Error>(self)
            .expect("serializing owned data into memory cannot fail");
        let mut out = Vec::with_capacity(HEADER_BYTES + body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
        out.extend_from_slice(&(body.len() as u64).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Writes the registry durably: temp file, fsync, rename, directory fsync. Blocking: call it
    /// from a blocking thread, not on a reactor.
    pub fn store(&self, data_dir: &Path) -> Result<(), MetadataError> {
        let path = Self::path(data_dir);
        let io = |source| MetadataError::Io {
            path: path.clone(),
            source,
        };
        let dir = path.parent().expect("registry path has a parent");
        std::fs::create_dir_all(dir).map_err(io)?;
        let tmp = path.with_extension("meta.tmp");
        {
            let mut f = std::fs::File::create(&tmp).map_err(io)?;
            f.write_all(&self.encode()).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, &path).map_err(io)?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        Ok(())
    }

    /// Adds the [`BOOTSTRAP_CLUSTER_CONFIGS`] this registry lacks (a new data dir, or one
    /// written before they existed); true if it added any, so the caller stores the registry.
    pub fn add_bootstrap_configs(&mut self) -> bool {
        let cluster = self.broker_configs.entry(String::new()).or_default();
        let mut added = false;
        for (name, value) in BOOTSTRAP_CLUSTER_CONFIGS {
            if !cluster.contains_key(*name) {
                cluster.insert((*name).to_owned(), (*value).to_owned());
                added = true;
            }
        }
        added
    }

    /// The topic with this id, if any.
    pub fn by_id(&self, id: &[u8; 16]) -> Option<&TopicMeta> {
        self.topics.values().find(|t| &t.id == id)
    }
}

/// The core that owns partition `partition` of `topic`: the one function that answers "who
/// owns this". Stable across restarts with the same core count; spreads a topic's partitions
/// over consecutive cores.
pub fn shard_for(topic: &str, partition: i32, cores: usize) -> usize {
    assert!(cores > 0, "a broker has at least one core");
    assert!(partition >= 0, "partition ids are never negative");
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325; // FNV-1a
    for b in topic.as_bytes() {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    ((hash % cores as u64 + partition as u64) % cores as u64) as usize
}

/// Kafka's rule for a legal topic name: 1..=249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn topic_name_error(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("Topic name is illegal, it can't be empty");
    }
    if name == "." || name == ".." {
        return Some("Topic name cannot be \".\" or \"..\"");
    }
    if name.len() > TOPIC_NAME_BYTES_MAX {
        return Some("Topic name is illegal, it can't be longer than 249 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return Some(
            "Topic name is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'",
        );
    }
    None
}

/// A fresh random topic id (UUID v4 layout), never all zeroes.
/// A 16-byte id as Kafka prints one (`Uuid.toString`): 22 characters of URL-safe base64.
pub fn id_text(raw: [u8; 16]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bits: u128 = u128::from_be_bytes(raw);
    // 22 base64 digits cover 132 bits; the first digit holds the top 2 bits of 128.
    let mut digits = [0u8; 22];
    for d in digits.iter_mut().rev() {
        *d = ALPHABET[(bits & 63) as usize];
        bits >>= 6;
    }
    digits.iter().map(|&b| b as char).collect()
}

/// A stable 128-bit fingerprint of `text` (not a secret: derived ids only tell things apart):
/// four CRC32Cs of it, the `i`-th seeded with `[i]` followed by `salt`.
pub fn fingerprint(salt: &[u8], text: &str) -> [u8; 16] {
    let mut raw = [0u8; 16];
    for (i, part) in raw.chunks_mut(4).enumerate() {
        let seed = crc32c::crc32c_append(crc32c::crc32c(&[i as u8]), salt);
        let crc = crc32c::crc32c_append(seed, text.as_bytes());
        part.copy_from_slice(&crc.to_be_bytes());
    }
    raw
}

/// This process's broker incarnation id (BrokerRegistration), made once per process start.
pub fn incarnation() -> [u8; 16] {
    static INCARNATION: std::sync::OnceLock<[u8; 16]> = std::sync::OnceLock::new();
    *INCARNATION.get_or_init(new_topic_id)
}

pub fn new_topic_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    // SAFETY: getrandom writes at most `len` bytes into the buffer we own.
    let n = unsafe { libc::getrandom(id.as_mut_ptr().cast(), id.len(), 0) };
    assert_eq!(n, 16, "getrandom returned too few bytes");
    id[6] = (id[6] & 0x0f) | 0x40;
    id[8] = (id[8] & 0x3f) | 0x80;
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TopicTable {
        let mut t = TopicTable {
            version: 3,
            ..TopicTable::default()
        };
        t.topics.insert(
            "orders".into(),
            TopicMeta {
                name: "orders".into(),
                id: new_topic_id(),
                partitions: 3,
                configs: BTreeMap::from([("retention.ms".into(), "1000".into())]),
                created_ms: 1,
            },
        );
        t.broker_configs.insert(
            String::new(),
            BTreeMap::from([("log.retention.ms".into(), "60000".into())]),
        );
        t.group_configs.insert(
            "payments".into(),
            BTreeMap::from([("consumer.session.timeout.ms".into(), "50000".into())]),
        );
        t.client_metrics.insert(
            "producers".into(),
            BTreeMap::from([("interval.ms".into(), "60000".into())]),
        );
        t
    }

    /// A registry file of format `format` holding `body`.
    fn file_of(format: u32, body: &[u8]) -> Vec<u8> {
        let mut file = Vec::new();
        file.extend_from_slice(MAGIC);
        file.extend_from_slice(&format.to_le_bytes());
        file.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
        file.extend_from_slice(&(body.len() as u64).to_le_bytes());
        file.extend_from_slice(body);
        file
    }

    /// Proves a registry written by format version 2 (broker configs, no group or
    /// client-metrics configs) still loads, with its broker configs.
    #[test]
    fn format_2_files_load() {
        let t = sample();
        let v2 = TopicTableV2 {
            topics: t.topics.clone(),
            version: t.version,
            broker_configs: t.broker_configs.clone(),
        };
        let body = rkyv::to_bytes::<rkyv::rancor::Error>(&v2).expect("serialize");
        let back = TopicTable::decode(&file_of(2, &body)).expect("a version 2 file loads");
        assert_eq!(back.topics, t.topics);
        assert_eq!(back.version, t.version);
        assert_eq!(back.broker_configs, t.broker_configs);
        assert!(back.group_configs.is_empty());
        assert!(back.client_metrics.is_empty());
    }

    /// Proves a registry without the cluster-level min.insync.replicas (a new data dir, or one
    /// from before it existed) gets it once, beside the cluster configs it already has, and that
    /// an existing value is kept.
    #[test]
    fn bootstrap_configs_are_added_once() {
        let mut empty = TopicTable::default();
        assert!(empty.add_bootstrap_configs());
        assert_eq!(
            empty.broker_configs[""],
            BTreeMap::from([("min.insync.replicas".to_owned(), "1".to_owned())])
        );
        assert!(!empty.add_bootstrap_configs());
        let mut old = sample();
        assert!(old.add_bootstrap_configs());
        assert_eq!(old.broker_configs[""]["log.retention.ms"], "60000");
        assert_eq!(old.broker_configs[""]["min.insync.replicas"], "1");
        old.broker_configs
            .get_mut("")
            .expect("cluster configs")
            .insert("min.insync.replicas".into(), "2".into());
        assert!(!old.add_bootstrap_configs());
        assert_eq!(old.broker_configs[""]["min.insync.replicas"], "2");
    }

    /// Proves a registry written by format version 1 (no broker configs) still loads.
    #[test]
    fn format_1_files_load() {
        let t = sample();
        let v1 = TopicTableV1 {
            topics: t.topics.clone(),
            version: t.version,
        };
        let body = rkyv::to_bytes::<rkyv::rancor::Error>(&v1).expect("serialize");
        let back = TopicTable::decode(&file_of(1, &body)).expect("a version 1 file loads");
        assert_eq!(back.topics, t.topics);
        assert_eq!(back.version, t.version);
        assert!(back.broker_configs.is_empty());
        assert!(back.group_configs.is_empty());
    }

    /// Proves the registry survives a store/load round trip.
    #[test]
    fn store_then_load_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = sample();
        t.store(dir.path()).expect("store");
        assert_eq!(TopicTable::load(dir.path()).expect("load"), t);
    }

    /// Proves every single-bit flip and every truncation of the file is reported as damage,
    /// never a panic or a wrong table.
    #[test]
    fn damaged_files_are_errors() {
        let bytes = sample().encode();
        for i in 0..bytes.len() {
            for bit in [0x01u8, 0x80] {
                let mut b = bytes.clone();
                b[i] ^= bit;
                assert!(TopicTable::decode(&b).is_err(), "flip at byte {i}");
            }
        }
        for len in 0..bytes.len() {
            assert!(
                TopicTable::decode(&bytes[..len]).is_err(),
                "truncated to {len}"
            );
        }
    }

    /// Proves partitions of one topic spread over all cores and the answer is stable.
    #[test]
    fn shard_for_spreads_and_is_stable() {
        let owners: Vec<usize> = (0..4).map(|p| shard_for("orders", p, 2)).collect();
        assert!(owners.contains(&0) && owners.contains(&1));
        assert_eq!(shard_for("orders", 1, 2), owners[1]);
        assert_eq!(shard_for("x", 5, 1), 0);
    }

    /// Proves Kafka's topic name rules.
    #[test]
    fn topic_names() {
        assert!(topic_name_error("orders.v1_a-b").is_none());
        assert!(topic_name_error("").is_some());
        assert!(topic_name_error("..").is_some());
        assert!(topic_name_error("a b").is_some());
        assert!(topic_name_error(&"a".repeat(250)).is_some());
        assert!(topic_name_error(&"a".repeat(249)).is_none());
    }
}
