//! `sluice-controller`: the state of a KRaft controller (issue 20), below the controller shard
//! that runs it.
//!
//! - The metadata log holds Kafka's own metadata records (`sluice_net::messages::MetadataRecord`
//!   in `sluice_net::metadata_record`'s frame), one record per quorum entry, in a Kafka-format
//!   `__cluster_metadata-0` directory.
//! - The metadata image is what those records build: brokers, topics, partitions, configs,
//!   features, producer-id blocks; immutable and versioned by the offset it reflects.
//! - The controller decides (registrations, heartbeats and fencing, topic placement, producer
//!   id blocks) by proposing records; it does no I/O: time and requests are passed in.
//!
//! Files here: `log_file` (the metadata log, `FileLog`, in Kafka's `__cluster_metadata-0`
//! layout, with its `.checkpoint` snapshot files) and `quorum_state_file` (Kafka's
//! `quorum-state` JSON), both blocking `std::fs` on the controller's own thread;
//! `storage_error` (their one error type); `batch` (an entry as a record batch), `snapshot`
//! (the image as a KRaft snapshot's batches) and `wire` (the quorum's messages as Kafka
//! requests); `image`, `controller` and `bootstrap` (the state and the decisions, sans-IO).

mod log_file;
mod quorum_state_file;
mod storage_error;

pub use log_file::{FileLog, FileLogConfig, METADATA_LOG_DIR, Recovery, SEGMENT_BYTES_MAX_DEFAULT};
pub use quorum_state_file::{QUORUM_STATE_FILE, QuorumStateFile};
pub use storage_error::StorageError;

pub mod batch;
pub mod snapshot;
pub mod wire;

pub mod bootstrap;
pub mod controller;
pub mod image;

pub use bootstrap::{LegacyTopic, bootstrap_records, legacy_topic_records};
pub use controller::{Controller, ControllerConfig, Proposal};
pub use image::{BrokerRegistration, ImageError, MetadataImage, PartitionRegistration, TopicImage};
