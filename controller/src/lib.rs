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

pub mod bootstrap;
pub mod controller;
pub mod image;

pub use bootstrap::{LegacyTopic, bootstrap_records, legacy_topic_records};
pub use controller::{Controller, ControllerConfig, Proposal};
pub use image::{BrokerRegistration, ImageError, MetadataImage, PartitionRegistration, TopicImage};
