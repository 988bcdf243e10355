//! The metadata image: what the committed metadata records build (Kafka's `MetadataImage`,
//! `ClusterImage`, `TopicsImage`, `FeaturesImage`, `ConfigurationsImage`, `ProducerIdsImage`).
//!
//! A `MetadataImage` is built by applying records in log order with [`MetadataImage::apply`].
//! It is cheap to clone and `Send`: every map sits behind an `Arc`, and each topic, broker and
//! config set behind its own `Arc`, so a clone shares everything, and applying a record to a
//! clone copies only the outer map it touches and the one entry it changes (`Arc::make_mut`).
//! The controller shard applies a committed batch to its image, clones it and sends the clone
//! to every data core; the cores only read it.
//!
//! Invariants: `offset` only grows; a record that contradicts the image (a fence for an
//! unknown broker or a stale broker epoch, a partition of an unknown topic) is refused with an
//! [`ImageError`] and leaves the image unchanged; record types the image does not model (ACLs,
//! quotas, SCRAM, delegation tokens, transactions markers, controller registrations) only move
//! `offset`.

mod partition;
mod records;

pub use partition::PartitionRegistration;

use sluice_net::Uuid;
use sluice_net::messages::{
    BrokerRegistrationChangeRecord, ConfigRecord, MetadataRecord, PartitionChangeRecord,
    PartitionRecord, RegisterBrokerRecord, TopicRecord,
};
use sluice_net::metadata_record::VersionedRecord;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// The `metadata.version` feature's name.
pub const METADATA_VERSION: &str = "metadata.version";
/// The `eligible.leader.replicas.version` feature's name (KIP-966).
pub const ELR_VERSION: &str = "eligible.leader.replicas.version";
/// Kafka's `ConfigResource.Type.TOPIC` id.
pub const RESOURCE_TOPIC: i8 = 2;
/// Kafka's `ConfigResource.Type.BROKER` id (name "" is the cluster-wide default).
pub const RESOURCE_BROKER: i8 = 4;

/// One listener a broker registered (Kafka's `Endpoint`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Listener name, e.g. `PLAINTEXT`.
    pub name: String,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: u16,
    /// Kafka's `SecurityProtocol` id (0 PLAINTEXT, 1 SSL, 2 SASL_PLAINTEXT, 3 SASL_SSL).
    pub security_protocol: i16,
}

/// A broker's registration (Kafka's `BrokerRegistration`), plus the offset of the
/// `RegisterBrokerRecord` that made it (Kafka keeps that in `ClusterControlManager`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerRegistration {
    /// Broker id.
    pub id: i32,
    /// The registering process's incarnation id.
    pub incarnation_id: Uuid,
    /// The broker epoch: the offset of the record that registered this incarnation.
    pub epoch: i64,
    /// Offset of the latest `RegisterBrokerRecord` for this broker (an amended registration
    /// keeps `epoch` but moves this): a fenced broker is unfenced once caught up to it.
    pub registered_offset: i64,
    /// Listeners, in registration order.
    pub endpoints: Vec<Endpoint>,
    /// Supported feature ranges: name -> (min, max).
    pub features: BTreeMap<String, (i16, i16)>,
    /// Rack, if configured.
    pub rack: Option<String>,
    /// Fenced brokers lead nothing and are left out of Metadata answers.
    pub fenced: bool,
    /// In controlled shutdown: leadership is being moved away.
    pub in_controlled_shutdown: bool,
    /// Log directory ids the broker reported.
    pub log_dirs: Vec<Uuid>,
}

/// A topic: name, id and partitions by index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicImage {
    /// Topic name.
    pub name: String,
    /// Topic id.
    pub id: Uuid,
    /// Partitions by index.
    pub partitions: BTreeMap<i32, PartitionRegistration>,
}

/// A config resource: Kafka's `ConfigResource` (type id and name).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConfigResource {
    /// [`RESOURCE_TOPIC`], [`RESOURCE_BROKER`], ...
    pub resource_type: i8,
    /// Topic name, broker id as text, or "" for the cluster default.
    pub name: String,
}

/// Why a record could not be applied. The image is unchanged when `apply` returns one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageError {
    /// The record names a broker that is not registered.
    UnknownBroker { offset: i64, broker_id: i32 },
    /// The record carries another broker epoch than the registration's.
    StaleBrokerEpoch {
        offset: i64,
        broker_id: i32,
        expected: i64,
        got: i64,
    },
    /// The record names a topic id that does not exist.
    UnknownTopic { offset: i64, topic_id: Uuid },
    /// A change for a partition that does not exist.
    UnknownPartition {
        offset: i64,
        topic_id: Uuid,
        partition: i32,
    },
    /// A record offset not above the last one applied.
    OffsetNotIncreasing { offset: i64, last: i64 },
    /// A field value Kafka's replay also refuses (e.g. an unknown `fenced` change value).
    InvalidField { offset: i64, field: &'static str },
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "metadata record refused by the image ({self:?}); the metadata log is "
        )?;
        write!(
            f,
            "inconsistent with its own history: check it with kafka-dump-log"
        )
    }
}

impl std::error::Error for ImageError {}

/// Kafka's metadata image at one offset. See the module doc for sharing and invariants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataImage {
    offset: i64,
    epoch: i32,
    features: Arc<BTreeMap<String, i16>>,
    brokers: Arc<BTreeMap<i32, Arc<BrokerRegistration>>>,
    topics: Arc<BTreeMap<Uuid, Arc<TopicImage>>>,
    topic_ids: Arc<BTreeMap<String, Uuid>>,
    configs: Arc<BTreeMap<ConfigResource, Arc<BTreeMap<String, String>>>>,
    next_producer_id: i64,
}

impl Default for MetadataImage {
    fn default() -> Self {
        MetadataImage::empty()
    }
}

impl MetadataImage {
    /// The image of an empty log: nothing applied (offset -1).
    pub fn empty() -> MetadataImage {
        MetadataImage {
            offset: -1,
            epoch: -1,
            features: Arc::default(),
            brokers: Arc::default(),
            topics: Arc::default(),
            topic_ids: Arc::default(),
            configs: Arc::default(),
            next_producer_id: 0,
        }
    }

    /// Offset of the last record applied (-1 for none).
    pub fn offset(&self) -> i64 {
        self.offset
    }

    /// Leader epoch of the batch the last record applied came in (-1 for none).
    pub fn epoch(&self) -> i32 {
        self.epoch
    }

    /// Finalized feature levels by name (`metadata.version` among them once bootstrapped).
    pub fn features(&self) -> &BTreeMap<String, i16> {
        &self.features
    }

    /// A feature's finalized level; 0 when not set (Kafka's "not enabled").
    pub fn feature_level(&self, name: &str) -> i16 {
        self.features.get(name).copied().unwrap_or(0)
    }

    /// The `metadata.version` level, if bootstrapped.
    pub fn metadata_version(&self) -> Option<i16> {
        self.features.get(METADATA_VERSION).copied()
    }

    /// Registered brokers by id.
    pub fn brokers(&self) -> &BTreeMap<i32, Arc<BrokerRegistration>> {
        &self.brokers
    }

    /// One broker's registration.
    pub fn broker(&self, id: i32) -> Option<&BrokerRegistration> {
        self.brokers.get(&id).map(|b| b.as_ref())
    }

    /// Topics by id.
    pub fn topics(&self) -> &BTreeMap<Uuid, Arc<TopicImage>> {
        &self.topics
    }

    /// A topic by id.
    pub fn topic(&self, id: &Uuid) -> Option<&TopicImage> {
        self.topics.get(id).map(|t| t.as_ref())
    }

    /// A topic by name.
    pub fn topic_by_name(&self, name: &str) -> Option<&TopicImage> {
        self.topic_ids.get(name).and_then(|id| self.topic(id))
    }

    /// Configs by resource (only resources with at least one key set).
    pub fn configs(&self) -> &BTreeMap<ConfigResource, Arc<BTreeMap<String, String>>> {
        &self.configs
    }

    /// One config value.
    pub fn config(&self, resource_type: i8, name: &str, key: &str) -> Option<&str> {
        let resource = ConfigResource {
            resource_type,
            name: name.to_owned(),
        };
        self.configs.get(&resource)?.get(key).map(String::as_str)
    }

    /// The first producer id of the next block the controller hands out.
    pub fn next_producer_id(&self) -> i64 {
        self.next_producer_id
    }

    /// Applies one committed record found at `offset` in a batch of leader epoch `epoch`.
    /// Types the image does not model only move the offset. On error nothing changes.
    pub fn apply(
        &mut self,
        offset: i64,
        epoch: i32,
        record: &VersionedRecord,
    ) -> Result<(), ImageError> {
        if offset <= self.offset {
            return Err(ImageError::OffsetNotIncreasing {
                offset,
                last: self.offset,
            });
        }
        self.apply_record(offset, &record.record)?;
        self.offset = offset;
        self.epoch = epoch;
        Ok(())
    }

    fn apply_record(&mut self, offset: i64, record: &MetadataRecord) -> Result<(), ImageError> {
        match record {
            MetadataRecord::FeatureLevel(r) => {
                let features = Arc::make_mut(&mut self.features);
                if r.feature_level == 0 && r.name.as_str() != METADATA_VERSION {
                    features.remove(r.name.as_str());
                } else {
                    features.insert(r.name.to_string(), r.feature_level);
                }
            }
            MetadataRecord::RegisterBroker(r) => self.apply_register(offset, r),
            MetadataRecord::UnregisterBroker(r) => {
                self.check_broker(offset, r.broker_id.get(), r.broker_epoch)?;
                Arc::make_mut(&mut self.brokers).remove(&r.broker_id.get());
            }
            MetadataRecord::FenceBroker(r) => {
                self.change_broker(offset, r.id.get(), r.epoch, Some(true), None)?
            }
            MetadataRecord::UnfenceBroker(r) => {
                self.change_broker(offset, r.id.get(), r.epoch, Some(false), None)?
            }
            MetadataRecord::BrokerRegistrationChange(r) => {
                self.apply_registration_change(offset, r)?
            }
            MetadataRecord::Topic(r) => self.apply_topic(r),
            MetadataRecord::Partition(r) => self.apply_partition(offset, r)?,
            MetadataRecord::PartitionChange(r) => self.apply_partition_change(offset, r)?,
            MetadataRecord::RemoveTopic(r) => self.apply_remove_topic(offset, &r.topic_id)?,
            MetadataRecord::Config(r) => self.apply_config(r),
            MetadataRecord::ProducerIds(r) => self.next_producer_id = r.next_producer_id,
            _ => {}
        }
        Ok(())
    }

    fn apply_register(&mut self, offset: i64, r: &RegisterBrokerRecord) {
        let endpoints = r
            .end_points
            .iter()
            .map(|e| Endpoint {
                name: e.name.to_string(),
                host: e.host.to_string(),
                port: e.port,
                security_protocol: e.security_protocol,
            })
            .collect();
        let features = r
            .features
            .iter()
            .map(|f| {
                let range = (f.min_supported_version, f.max_supported_version);
                (f.name.to_string(), range)
            })
            .collect();
        let registration = BrokerRegistration {
            id: r.broker_id.get(),
            incarnation_id: r.incarnation_id,
            epoch: r.broker_epoch,
            registered_offset: offset,
            endpoints,
            features,
            rack: r.rack.as_ref().map(|s| s.to_string()),
            fenced: r.fenced,
            in_controlled_shutdown: r.in_controlled_shutdown,
            log_dirs: r.log_dirs.clone(),
        };
        Arc::make_mut(&mut self.brokers).insert(registration.id, Arc::new(registration));
    }

    fn check_broker(&self, offset: i64, broker_id: i32, epoch: i64) -> Result<(), ImageError> {
        let Some(b) = self.brokers.get(&broker_id) else {
            return Err(ImageError::UnknownBroker { offset, broker_id });
        };
        if b.epoch != epoch {
            return Err(ImageError::StaleBrokerEpoch {
                offset,
                broker_id,
                expected: b.epoch,
                got: epoch,
            });
        }
        Ok(())
    }

    fn change_broker(
        &mut self,
        offset: i64,
        broker_id: i32,
        epoch: i64,
        fenced: Option<bool>,
        in_controlled_shutdown: Option<bool>,
    ) -> Result<(), ImageError> {
        self.check_broker(offset, broker_id, epoch)?;
        let brokers = Arc::make_mut(&mut self.brokers);
        if let Some(b) = brokers.get_mut(&broker_id) {
            let b = Arc::make_mut(b);
            if let Some(fenced) = fenced {
                b.fenced = fenced;
            }
            if let Some(shutting_down) = in_controlled_shutdown {
                b.in_controlled_shutdown = shutting_down;
            }
        }
        Ok(())
    }

    fn apply_registration_change(
        &mut self,
        offset: i64,
        r: &BrokerRegistrationChangeRecord,
    ) -> Result<(), ImageError> {
        let fenced = match r.fenced {
            -1 => Some(false),
            0 => None,
            1 => Some(true),
            _ => {
                return Err(ImageError::InvalidField {
                    offset,
                    field: "fenced",
                });
            }
        };
        let shutting_down = match r.in_controlled_shutdown {
            0 => None,
            1 => Some(true),
            _ => {
                let field = "in_controlled_shutdown";
                return Err(ImageError::InvalidField { offset, field });
            }
        };
        let id = r.broker_id.get();
        self.change_broker(offset, id, r.broker_epoch, fenced, shutting_down)?;
        if !r.log_dirs.is_empty() {
            let brokers = Arc::make_mut(&mut self.brokers);
            if let Some(b) = brokers.get_mut(&id) {
                Arc::make_mut(b).log_dirs = r.log_dirs.clone();
            }
        }
        Ok(())
    }

    fn apply_topic(&mut self, r: &TopicRecord) {
        let topic = TopicImage {
            name: r.name.to_string(),
            id: r.topic_id,
            partitions: BTreeMap::new(),
        };
        Arc::make_mut(&mut self.topic_ids).insert(topic.name.clone(), topic.id);
        Arc::make_mut(&mut self.topics).insert(topic.id, Arc::new(topic));
    }

    fn topic_mut(&mut self, offset: i64, topic_id: &Uuid) -> Result<&mut TopicImage, ImageError> {
        if !self.topics.contains_key(topic_id) {
            let topic_id = *topic_id;
            return Err(ImageError::UnknownTopic { offset, topic_id });
        }
        let topics = Arc::make_mut(&mut self.topics);
        match topics.get_mut(topic_id) {
            Some(t) => Ok(Arc::make_mut(t)),
            None => Err(ImageError::UnknownTopic {
                offset,
                topic_id: *topic_id,
            }),
        }
    }

    fn apply_partition(&mut self, offset: i64, r: &PartitionRecord) -> Result<(), ImageError> {
        let topic = self.topic_mut(offset, &r.topic_id)?;
        let partition = PartitionRegistration::from_record(r);
        topic.partitions.insert(r.partition_id, partition);
        Ok(())
    }

    fn apply_partition_change(
        &mut self,
        offset: i64,
        r: &PartitionChangeRecord,
    ) -> Result<(), ImageError> {
        let exists = self
            .topics
            .get(&r.topic_id)
            .is_some_and(|t| t.partitions.contains_key(&r.partition_id));
        if !exists {
            self.topic_mut(offset, &r.topic_id)?;
            return Err(ImageError::UnknownPartition {
                offset,
                topic_id: r.topic_id,
                partition: r.partition_id,
            });
        }
        let topic = self.topic_mut(offset, &r.topic_id)?;
        if let Some(p) = topic.partitions.get_mut(&r.partition_id) {
            *p = p.merge(r);
        }
        Ok(())
    }

    fn apply_remove_topic(&mut self, offset: i64, topic_id: &Uuid) -> Result<(), ImageError> {
        let Some(topic) = self.topics.get(topic_id).cloned() else {
            let topic_id = *topic_id;
            return Err(ImageError::UnknownTopic { offset, topic_id });
        };
        Arc::make_mut(&mut self.topics).remove(topic_id);
        Arc::make_mut(&mut self.topic_ids).remove(&topic.name);
        let resource = ConfigResource {
            resource_type: RESOURCE_TOPIC,
            name: topic.name.clone(),
        };
        if self.configs.contains_key(&resource) {
            Arc::make_mut(&mut self.configs).remove(&resource);
        }
        Ok(())
    }

    fn apply_config(&mut self, r: &ConfigRecord) {
        let resource = ConfigResource {
            resource_type: r.resource_type,
            name: r.resource_name.to_string(),
        };
        let configs = Arc::make_mut(&mut self.configs);
        let entry = configs.entry(resource.clone()).or_default();
        let keys = Arc::make_mut(entry);
        match &r.value {
            Some(v) => keys.insert(r.name.to_string(), v.to_string()),
            None => keys.remove(r.name.as_str()),
        };
        if keys.is_empty() {
            configs.remove(&resource);
        }
    }
}

#[cfg(test)]
mod tests;
