//! Topic creation, partition addition and topic deletion (the topic half of Kafka's
//! `ReplicationControlManager`), with Kafka's validation order and error messages.
//!
//! A created topic is one `TopicRecord`, then a `ConfigRecord` per config given, then a
//! `PartitionRecord` per partition (leader = first replica in the ISR; the ISR = the replicas
//! that are active). Errors are per topic; `validate_only` answers without records.

use super::placement::{self, UsableBroker};
use super::{Controller, Proposal, versioned};
use crate::bootstrap::new_partition_record;
use crate::image::RESOURCE_TOPIC;
use sluice_net::messages::create_partitions_response::CreatePartitionsTopicResult;
use sluice_net::messages::create_topics_request::CreatableTopic;
use sluice_net::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use sluice_net::messages::delete_topics_response::DeletableTopicResult;
use sluice_net::messages::{
    ConfigRecord, CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest,
    CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse, MetadataRecord,
    RemoveTopicRecord, TopicRecord,
};
use sluice_net::metadata_record::VersionedRecord;
use sluice_net::{ErrorCode, Uuid};

/// A per-topic failure: Kafka's `ApiError`.
pub(super) type ApiError = (ErrorCode, String);

/// Kafka's longest topic name.
const TOPIC_NAME_LENGTH_MAX: usize = 249;

impl Controller {
    /// Handles a (forwarded) CreateTopics request.
    pub fn create_topics(
        &mut self,
        request: &CreateTopicsRequest,
    ) -> Proposal<CreateTopicsResponse> {
        let mut records = Vec::new();
        let mut results = Vec::new();
        for topic in &request.topics {
            let duplicate = request
                .topics
                .iter()
                .filter(|t| t.name == topic.name)
                .count()
                > 1;
            let outcome = if duplicate {
                Err((
                    ErrorCode::INVALID_REQUEST,
                    "Duplicate topic name.".to_owned(),
                ))
            } else {
                self.create_topic(topic)
            };
            match outcome {
                Ok((result, topic_records)) => {
                    results.push(result);
                    records.extend(topic_records);
                }
                Err((code, message)) => results.push(CreatableTopicResult {
                    name: topic.name.clone(),
                    error_code: code.code(),
                    error_message: Some(message.into()),
                    num_partitions: -1,
                    replication_factor: -1,
                    ..Default::default()
                }),
            }
        }
        if request.validate_only {
            records.clear();
        }
        let reply = CreateTopicsResponse {
            topics: results,
            ..Default::default()
        };
        self.propose(records, reply)
    }

    fn create_topic(
        &mut self,
        topic: &CreatableTopic,
    ) -> Result<(CreatableTopicResult, Vec<VersionedRecord>), ApiError> {
        validate_topic_name(topic.name.as_str())?;
        if self.image.topic_by_name(topic.name.as_str()).is_some() {
            let message = format!("Topic '{}' already exists.", topic.name);
            return Err((ErrorCode::TOPIC_ALREADY_EXISTS, message));
        }
        if let Some(c) = topic.configs.iter().find(|c| c.value.is_none()) {
            let message = format!("Null value not supported for topic configs: {}", c.name);
            return Err((ErrorCode::INVALID_CONFIG, message));
        }
        let assignments = if topic.assignments.is_empty() {
            self.placed_assignments(topic)?
        } else {
            self.manual_assignments(topic)?
        };
        let topic_id = self.random_topic_id();
        let mut records = vec![versioned(
            0,
            MetadataRecord::Topic(TopicRecord {
                name: topic.name.clone(),
                topic_id,
                ..Default::default()
            }),
        )];
        for c in &topic.configs {
            records.push(versioned(
                0,
                MetadataRecord::Config(ConfigRecord {
                    resource_type: RESOURCE_TOPIC,
                    resource_name: topic.name.clone().into_inner(),
                    name: c.name.clone(),
                    value: c.value.clone(),
                    ..Default::default()
                }),
            ));
        }
        for (partition_id, replicas) in (0..).zip(&assignments) {
            records.push(self.partition_record(topic_id, partition_id, replicas));
        }
        let result = CreatableTopicResult {
            name: topic.name.clone(),
            topic_id,
            num_partitions: assignments.len() as i32,
            replication_factor: assignments.first().map_or(0, |r| r.len() as i16),
            configs: Some(given_configs(topic)),
            ..Default::default()
        };
        Ok((result, records))
    }

    /// A new partition: the active replicas are the ISR, the first of them leads.
    fn partition_record(
        &self,
        topic_id: Uuid,
        partition_id: i32,
        replicas: &[i32],
    ) -> VersionedRecord {
        let isr: Vec<i32> = replicas
            .iter()
            .copied()
            .filter(|&r| self.is_active(r))
            .collect();
        let leader = isr.first().copied().unwrap_or(-1);
        let dirs: Vec<Uuid> = replicas.iter().map(|&r| self.default_dir(r)).collect();
        new_partition_record(topic_id, partition_id, replicas, &isr, leader, &dirs)
    }

    /// Kafka's `defaultDir`: the broker's only log dir, else UNASSIGNED (zero).
    pub(super) fn default_dir(&self, broker: i32) -> Uuid {
        match self.image.broker(broker).map(|b| b.log_dirs.as_slice()) {
            Some([only]) => *only,
            _ => Uuid::ZERO,
        }
    }

    fn placed_assignments(&mut self, topic: &CreatableTopic) -> Result<Vec<Vec<i32>>, ApiError> {
        if topic.replication_factor < -1 || topic.replication_factor == 0 {
            let message = "Replication factor must be larger than 0, or -1 to use the default \
                           value.";
            return Err((ErrorCode::INVALID_REPLICATION_FACTOR, message.to_owned()));
        }
        if topic.num_partitions < -1 || topic.num_partitions == 0 {
            let message = "Number of partitions was set to an invalid non-positive value.";
            return Err((ErrorCode::INVALID_PARTITIONS, message.to_owned()));
        }
        let partitions = if topic.num_partitions == -1 {
            self.config.default_num_partitions
        } else {
            topic.num_partitions
        };
        let rf = if topic.replication_factor == -1 {
            self.config.default_replication_factor
        } else {
            topic.replication_factor
        };
        self.place(partitions, rf)
    }

    /// Placement for `partitions` new partitions, or Kafka's INVALID_REPLICATION_FACTOR.
    fn place(&mut self, partitions: i32, rf: i16) -> Result<Vec<Vec<i32>>, ApiError> {
        let brokers = self.usable_brokers();
        let count = usize::try_from(partitions).unwrap_or(0);
        let placed = placement::place(&mut self.rng, &brokers, count, i32::from(rf));
        let assignments = placed.map_err(|e| {
            let message = format!("Unable to replicate the partition {rf} time(s): {}", e.0);
            (ErrorCode::INVALID_REPLICATION_FACTOR, message)
        })?;
        if assignments
            .iter()
            .any(|r| !r.iter().any(|&b| self.is_active(b)))
        {
            let message = format!(
                "Unable to replicate the partition {rf} time(s): All brokers are currently \
                 fenced or in controlled shutdown."
            );
            return Err((ErrorCode::INVALID_REPLICATION_FACTOR, message));
        }
        Ok(assignments)
    }

    /// Registered brokers not in controlled shutdown (Kafka's `usableBrokers`).
    fn usable_brokers(&self) -> Vec<UsableBroker> {
        let brokers = self.image.brokers().values();
        let usable = brokers.filter(|b| !b.in_controlled_shutdown);
        usable
            .map(|b| UsableBroker {
                id: b.id,
                rack: b.rack.clone(),
                fenced: b.fenced,
            })
            .collect()
    }

    fn manual_assignments(&self, topic: &CreatableTopic) -> Result<Vec<Vec<i32>>, ApiError> {
        if topic.replication_factor != -1 {
            let message = "A manual partition assignment was specified, but replication factor \
                           was not set to -1.";
            return Err((ErrorCode::INVALID_REQUEST, message.to_owned()));
        }
        if topic.num_partitions != -1 {
            let message = "A manual partition assignment was specified, but numPartitions was \
                           not set to -1.";
            return Err((ErrorCode::INVALID_REQUEST, message.to_owned()));
        }
        let mut parts: std::collections::BTreeMap<i32, Vec<i32>> = Default::default();
        let mut rf = None;
        for a in &topic.assignments {
            let index = a.partition_index;
            if parts.contains_key(&index) {
                let message =
                    format!("Found multiple manual partition assignments for partition {index}");
                return Err((ErrorCode::INVALID_REPLICA_ASSIGNMENT, message));
            }
            let replicas: Vec<i32> = a.broker_ids.iter().map(|b| b.get()).collect();
            self.validate_manual(&replicas, rf, index)?;
            rf = Some(replicas.len());
            parts.insert(index, replicas);
        }
        if parts.keys().copied().ne(0..parts.len() as i32) {
            let message = "partitions should be a consecutive 0-based integer sequence";
            return Err((ErrorCode::INVALID_REPLICA_ASSIGNMENT, message.to_owned()));
        }
        Ok(parts.into_values().collect())
    }

    /// Kafka's `validateManualPartitionAssignment`, plus the "all fenced" check of a new
    /// partition.
    fn validate_manual(
        &self,
        replicas: &[i32],
        rf: Option<usize>,
        index: i32,
    ) -> Result<(), ApiError> {
        self.check_manual_assignment(replicas, rf)?;
        if !replicas.iter().any(|&b| self.is_active(b)) {
            let message = format!(
                "All brokers specified in the manual partition assignment for partition {index} \
                 are fenced or in controlled shutdown."
            );
            return Err((ErrorCode::INVALID_REPLICA_ASSIGNMENT, message));
        }
        Ok(())
    }

    /// Kafka's `validateManualPartitionAssignment`: not empty, every broker registered, none
    /// twice (in ascending order of broker id), `rf` replicas when given.
    pub(super) fn check_manual_assignment(
        &self,
        replicas: &[i32],
        rf: Option<usize>,
    ) -> Result<(), ApiError> {
        let invalid = |m: String| Err((ErrorCode::INVALID_REPLICA_ASSIGNMENT, m));
        if replicas.is_empty() {
            return invalid(
                "The manual partition assignment includes an empty replica list.".into(),
            );
        }
        let mut sorted = replicas.to_vec();
        sorted.sort_unstable();
        for (i, &b) in sorted.iter().enumerate() {
            if self.image.broker(b).is_none() {
                return invalid(format!(
                    "The manual partition assignment includes broker {b}, but no such broker is \
                     registered."
                ));
            }
            if i > 0 && sorted[i - 1] == b {
                return invalid(format!(
                    "The manual partition assignment includes the broker {b} more than once."
                ));
            }
        }
        if let Some(rf) = rf.filter(|&rf| rf != sorted.len()) {
            return invalid(format!(
                "The manual partition assignment includes a partition with {} replica(s), but \
                 this is not consistent with previous partitions, which have {rf} replica(s).",
                sorted.len()
            ));
        }
        Ok(())
    }

    /// A random version-4 UUID whose base64 form does not start with '-' (Kafka's rule).
    fn random_topic_id(&mut self) -> Uuid {
        loop {
            let mut bytes = [0u8; 16];
            bytes[..8].copy_from_slice(&self.rng.next_u64().to_be_bytes());
            bytes[8..].copy_from_slice(&self.rng.next_u64().to_be_bytes());
            bytes[6] = (bytes[6] & 0x0f) | 0x40;
            bytes[8] = (bytes[8] & 0x3f) | 0x80;
            let id = Uuid(bytes);
            let dash_first = bytes[0] >> 2 == 62;
            if !dash_first && self.image.topic(&id).is_none() {
                return id;
            }
        }
    }

    /// Handles a (forwarded) CreatePartitions request.
    pub fn create_partitions(
        &mut self,
        request: &CreatePartitionsRequest,
    ) -> Proposal<CreatePartitionsResponse> {
        let mut records = Vec::new();
        let mut results = Vec::new();
        for topic in &request.topics {
            let (code, message) = match self.add_partitions(topic) {
                Ok(topic_records) => {
                    records.extend(topic_records);
                    (ErrorCode::NONE, None)
                }
                Err((code, message)) => (code, Some(message.into())),
            };
            results.push(CreatePartitionsTopicResult {
                name: topic.name.clone(),
                error_code: code.code(),
                error_message: message,
                ..Default::default()
            });
        }
        if request.validate_only {
            records.clear();
        }
        let reply = CreatePartitionsResponse {
            results,
            ..Default::default()
        };
        self.propose(records, reply)
    }

    fn add_partitions(
        &mut self,
        topic: &sluice_net::messages::create_partitions_request::CreatePartitionsTopic,
    ) -> Result<Vec<VersionedRecord>, ApiError> {
        let unknown = (
            ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
            "This server does not host this topic-partition.".to_owned(),
        );
        let existing = self
            .image
            .topic_by_name(topic.name.as_str())
            .ok_or(unknown)?;
        let (topic_id, current) = (existing.id, existing.partitions.len() as i32);
        let rf = existing
            .partitions
            .values()
            .next()
            .map_or(0, |p| p.replicas.len());
        if topic.count == current {
            let message = format!("Topic already has {current} partition(s).");
            return Err((ErrorCode::INVALID_PARTITIONS, message));
        }
        if topic.count < current {
            let message = format!(
                "The topic {} currently has {current} partition(s); {} would not be an increase.",
                topic.name, topic.count
            );
            return Err((ErrorCode::INVALID_PARTITIONS, message));
        }
        let additional = topic.count - current;
        let assignments = match &topic.assignments {
            Some(given) => {
                if given.len() as i32 != additional {
                    let message = format!(
                        "Attempted to add {additional} additional partition(s), but only {} \
                         assignment(s) were specified.",
                        given.len()
                    );
                    return Err((ErrorCode::INVALID_REPLICA_ASSIGNMENT, message));
                }
                let mut out = Vec::new();
                for (i, a) in (current..).zip(given) {
                    let replicas: Vec<i32> = a.broker_ids.iter().map(|b| b.get()).collect();
                    self.validate_manual(&replicas, Some(rf), i)?;
                    out.push(replicas);
                }
                out
            }
            None => self.place(additional, rf as i16)?,
        };
        let records = (current..)
            .zip(&assignments)
            .map(|(id, replicas)| self.partition_record(topic_id, id, replicas))
            .collect();
        Ok(records)
    }

    /// Handles a (forwarded) DeleteTopics request, by name (v1-5) or by id (v6).
    pub fn delete_topics(
        &mut self,
        request: &DeleteTopicsRequest,
    ) -> Proposal<DeleteTopicsResponse> {
        let mut wanted: Vec<(Option<String>, Uuid)> = Vec::new();
        for name in &request.topic_names {
            wanted.push((Some(name.to_string()), Uuid::ZERO));
        }
        for t in &request.topics {
            wanted.push((t.name.as_ref().map(|n| n.to_string()), t.topic_id));
        }
        let mut records = Vec::new();
        let mut responses = Vec::new();
        for (name, id) in wanted {
            let found = match &name {
                Some(n) if id == Uuid::ZERO => self.image.topic_by_name(n),
                _ => self.image.topic(&id),
            };
            let mut result = DeletableTopicResult {
                name: name.clone().map(Into::into),
                topic_id: id,
                ..Default::default()
            };
            match found.map(|t| (t.id, t.name.clone())) {
                Some((id, name)) if !records.iter().any(|r| removes(r, &id)) => {
                    result.topic_id = id;
                    result.name = Some(name.into());
                    let record = RemoveTopicRecord {
                        topic_id: id,
                        ..Default::default()
                    };
                    records.push(versioned(0, MetadataRecord::RemoveTopic(record)));
                }
                Some(_) => {}
                None if name.is_some() && id == Uuid::ZERO => {
                    result.error_code = ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code();
                }
                None => result.error_code = ErrorCode::UNKNOWN_TOPIC_ID.code(),
            }
            responses.push(result);
        }
        let reply = DeleteTopicsResponse {
            responses,
            ..Default::default()
        };
        self.propose(records, reply)
    }
}

fn removes(record: &VersionedRecord, id: &Uuid) -> bool {
    matches!(&record.record, MetadataRecord::RemoveTopic(r) if r.topic_id == *id)
}

/// The configs given, as a CreateTopics answer lists them (source DYNAMIC_TOPIC_CONFIG).
fn given_configs(topic: &CreatableTopic) -> Vec<CreatableTopicConfigs> {
    topic
        .configs
        .iter()
        .map(|c| CreatableTopicConfigs {
            name: c.name.clone(),
            value: c.value.clone(),
            config_source: 1,
            ..Default::default()
        })
        .collect()
}

/// Kafka's `Topic.validate`, with its messages.
fn validate_topic_name(name: &str) -> Result<(), ApiError> {
    let reason = if name.is_empty() {
        Some("the empty string is not allowed".to_owned())
    } else if name == "." || name == ".." {
        Some(format!("'{name}' is not allowed"))
    } else if name.len() > TOPIC_NAME_LENGTH_MAX {
        Some(format!(
            "the length of '{name}' is longer than the max allowed length {TOPIC_NAME_LENGTH_MAX}"
        ))
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        Some(format!(
            "'{name}' contains one or more characters other than ASCII alphanumerics, '.', '_' \
             and '-'"
        ))
    } else {
        None
    };
    match reason {
        Some(r) => Err((
            ErrorCode::INVALID_TOPIC_EXCEPTION,
            format!("Topic name is invalid: {r}"),
        )),
        None => Ok(()),
    }
}
