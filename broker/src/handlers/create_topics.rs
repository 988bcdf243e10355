//! CreateTopics: validates names, partition counts, replication factors, assignments and
//! configs as Kafka does, then creates the valid topics through the control core in one registry change.

use std::collections::{BTreeMap, HashSet};
use std::rc::Rc;

use sluice_net::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use sluice_net::messages::{CreateTopicsRequest, CreateTopicsResponse};
use sluice_net::{StrBytes, Uuid};

use crate::core::Core;
use crate::errors::{self, code};
use crate::registry::TopicChange;
use crate::topic_config::{self, Inherited, TOPIC_CONFIGS};

pub async fn handle(
    core: &Rc<Core>,
    request: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    if core.config.is_cluster() {
        return on_cluster(core, request, version).await;
    }
    let brokers = 1;
    let inherited = core.inherited(core.topics().registry());
    let mut results: Vec<CreatableTopicResult> = Vec::with_capacity(request.topics.len());
    let mut changes = Vec::new();
    let mut pending = Vec::new(); // index into results for each change
    let mut seen = HashSet::new();
    let duplicates: HashSet<String> = request
        .topics
        .iter()
        .filter(|t| !seen.insert(t.name.to_string()))
        .map(|t| t.name.to_string())
        .collect();
    for t in &request.topics {
        let name = t.name.to_string();
        let mut result = CreatableTopicResult {
            name: t.name.clone(),
            topic_id: Uuid::default(),
            error_code: code::NONE,
            error_message: None,
            topic_config_error_code: code::NONE,
            num_partitions: -1,
            replication_factor: -1,
            configs: None,
            ..Default::default()
        };
        let fail = |r: &mut CreatableTopicResult, c: i16, m: String| {
            r.error_code = c;
            r.error_message = Some(StrBytes::from(m));
        };
        if duplicates.contains(&name) {
            fail(
                &mut result,
                code::INVALID_REQUEST,
                format!("Create topics request from client contains a duplicate topic: {name}"),
            );
            results.push(result);
            continue;
        }
        let partitions = if t.num_partitions == -1 && t.assignments.is_empty() {
            core.config.default_partitions
        } else if !t.assignments.is_empty() {
            t.assignments.len() as i32
        } else {
            t.num_partitions
        };
        let replication = if t.replication_factor == -1 {
            1
        } else {
            t.replication_factor
        };
        if !t.assignments.is_empty() && (t.num_partitions != -1 || t.replication_factor != -1) {
            fail(&mut result, code::INVALID_REQUEST, "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.".into());
            results.push(result);
            continue;
        }
        if partitions <= 0 {
            fail(
                &mut result,
                code::INVALID_PARTITIONS,
                "Number of partitions was set to an invalid non-positive value.".into(),
            );
            results.push(result);
            continue;
        }
        if replication <= 0 {
            fail(
                &mut result,
                code::INVALID_REPLICATION_FACTOR,
                "Replication factor must be larger than 0, or -1 to use the default value.".into(),
            );
            results.push(result);
            continue;
        }
        if i32::from(replication) > brokers {
            fail(
                &mut result,
                code::INVALID_REPLICATION_FACTOR,
                format!(
                    "Unable to replicate the partition {replication} time(s): The target replication factor of {replication} cannot be reached because only {brokers} broker(s) are registered."
                ),
            );
            results.push(result);
            continue;
        }
        if let Some(bad) = t.assignments.iter().find(|a| {
            a.broker_ids.iter().any(|&b| b != core.config.node_id) || a.broker_ids.is_empty()
        }) {
            fail(
                &mut result,
                code::INVALID_REPLICA_ASSIGNMENT,
                format!(
                    "The manual partition assignment includes a partition with an unknown or empty broker list (partition {}).",
                    bad.partition_index
                ),
            );
            results.push(result);
            continue;
        }
        let mut configs = BTreeMap::new();
        let mut config_error = None;
        for c in &t.configs {
            match &c.value {
                Some(v) => {
                    configs.insert(c.name.to_string(), v.to_string());
                }
                None => {
                    config_error = Some(format!(
                        "Null value not supported for topic configs: {}",
                        c.name
                    ))
                }
            }
        }
        if let Some(m) = config_error {
            fail(&mut result, code::INVALID_CONFIG, m);
            results.push(result);
            continue;
        }
        result.num_partitions = partitions;
        result.replication_factor = replication;
        if version >= 5 {
            result.configs = Some(described_configs(&configs, &inherited));
        }
        pending.push(results.len());
        results.push(result);
        changes.push(TopicChange::Create {
            name,
            partitions,
            configs,
            dry_run: request.validate_only,
        });
    }
    if !changes.is_empty() {
        let outcomes = core.change_topics(changes).await;
        let table = core.topics();
        for (i, outcome) in pending.into_iter().zip(outcomes) {
            let r = &mut results[i];
            match outcome {
                Ok(()) => {
                    if let Some(t) = table.topics().get(r.name.as_str()) {
                        r.topic_id = Uuid(t.id);
                    }
                }
                Err(e) => {
                    let (c, m) = errors::topic_change(&e);
                    r.error_code = c;
                    r.error_message = Some(StrBytes::from(m));
                    r.num_partitions = -1;
                    r.replication_factor = -1;
                    r.configs = None;
                }
            }
        }
    }
    CreateTopicsResponse {
        topics: results,
        ..Default::default()
    }
}

/// CreateTopics on a cluster node: config values are checked here (the controller takes them
/// as given), the rest goes to the active controller, and each created topic's answer carries
/// every config with its source (v5+), as on one node. Answers keep the request's order.
async fn on_cluster(
    core: &Rc<Core>,
    mut request: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let order: Vec<String> = request.topics.iter().map(|t| t.name.to_string()).collect();
    let given: BTreeMap<String, BTreeMap<String, String>> = request
        .topics
        .iter()
        .map(|t| {
            let configs = t.configs.iter().filter_map(|c| {
                let value = c.value.as_ref()?;
                Some((c.name.to_string(), value.to_string()))
            });
            (t.name.to_string(), configs.collect())
        })
        .collect();
    let mut refused = Vec::new();
    request.topics.retain(|t| match config_error(t) {
        None => true,
        Some(message) => {
            refused.push(CreatableTopicResult {
                name: t.name.clone(),
                error_code: code::INVALID_CONFIG,
                error_message: Some(StrBytes::from(message)),
                num_partitions: -1,
                replication_factor: -1,
                ..Default::default()
            });
            false
        }
    });
    let mut response = if request.topics.is_empty() {
        CreateTopicsResponse::default()
    } else {
        crate::cluster_topics::create_topics(core.as_ref(), request).await
    };
    let inherited = core.inherited(core.topics().registry());
    for r in &mut response.topics {
        if version >= 5 && r.error_code == code::NONE {
            let overrides = given.get(r.name.as_str()).cloned().unwrap_or_default();
            r.configs = Some(described_configs(&overrides, &inherited));
        }
    }
    response.topics.extend(refused);
    let at = |name: &str| order.iter().position(|n| n == name).unwrap_or(usize::MAX);
    response.topics.sort_by_key(|r| at(r.name.as_str()));
    response
}

/// Why a topic's configs are refused (a null value, or one Kafka's checks refuse), if they are.
fn config_error(t: &sluice_net::messages::create_topics_request::CreatableTopic) -> Option<String> {
    t.configs.iter().find_map(|c| match &c.value {
        None => Some(format!(
            "Null value not supported for topic configs: {}",
            c.name
        )),
        Some(v) => topic_config::validate(c.name.as_str(), v.as_str()).err(),
    })
}

/// Every topic config with its effective value and source (the broker-level values it would
/// inherit included), as CreateTopics v5+ returns them.
pub fn described_configs(
    overrides: &BTreeMap<String, String>,
    inherited: &Inherited,
) -> Vec<CreatableTopicConfigs> {
    TOPIC_CONFIGS
        .iter()
        .map(|d| {
            let (value, source) = topic_config::effective(d, overrides, inherited);
            CreatableTopicConfigs {
                name: StrBytes::from(d.name),
                value: Some(StrBytes::from(value)),
                read_only: false,
                config_source: source,
                is_sensitive: false,
                ..Default::default()
            }
        })
        .collect()
}
