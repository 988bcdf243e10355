//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topics, and DescribeConfigs
//! for the broker. Topic changes go through core 0's registry; the owning cores then reopen
//! the topic's partitions with the new settings.
//!
//! Not built: altering broker configs (answered with INVALID_REQUEST and a message saying so),
//! broker-logger resources.

use std::rc::Rc;

use sluice_net::StrBytes;
use sluice_net::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use sluice_net::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};

use crate::core::Core;
use crate::errors::code;
use crate::registry::TopicChange;
use crate::topic_config::{self, ConfigType, TOPIC_CONFIGS};

pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

pub async fn describe(
    core: &Rc<Core>,
    request: DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResponse {
    let table = core.topics();
    let results = request
        .resources
        .iter()
        .map(|res| {
            let keys: Option<Vec<&str>> = res
                .configuration_keys
                .as_ref()
                .map(|k| k.iter().map(StrBytes::as_str).collect());
            let wanted = |name: &str| keys.as_ref().is_none_or(|k| k.contains(&name));
            let mut result = DescribeConfigsResult {
                error_code: code::NONE,
                error_message: None,
                resource_type: res.resource_type,
                resource_name: res.resource_name.clone(),
                configs: Vec::new(),
                ..Default::default()
            };
            match res.resource_type {
                RESOURCE_TOPIC => match table.topics.get(res.resource_name.as_str()) {
                    Some(t) => {
                        result.configs = TOPIC_CONFIGS
                            .iter()
                            .filter(|d| wanted(d.name))
                            .map(|d| {
                                let overridden = t.configs.get(d.name);
                                let mut synonyms = Vec::new();
                                if request.include_synonyms {
                                    if let Some(v) = overridden {
                                        synonyms.push(synonym(d.name, v, SOURCE_TOPIC));
                                    }
                                    if let Some(s) = d.synonym {
                                        synonyms.push(synonym(s, d.default, SOURCE_DEFAULT));
                                    }
                                }
                                entry(
                                    d.name,
                                    overridden.map_or(d.default, String::as_str),
                                    if overridden.is_some() {
                                        SOURCE_TOPIC
                                    } else {
                                        SOURCE_DEFAULT
                                    },
                                    false,
                                    d.kind,
                                    synonyms,
                                    version,
                                )
                            })
                            .collect();
                    }
                    None => {
                        result.error_code = code::UNKNOWN_TOPIC_OR_PARTITION;
                        result.error_message =
                            Some("This server does not host this topic-partition.".into());
                    }
                },
                RESOURCE_BROKER => {
                    let name = res.resource_name.as_str();
                    if !name.is_empty() && name != core.config.node_id.to_string() {
                        result.error_code = code::INVALID_REQUEST;
                        result.error_message = Some(
                            format!(
                                "Unexpected broker id, expected {} but received {name}",
                                core.config.node_id
                            )
                            .into(),
                        );
                    } else {
                        result.configs = broker_configs(core)
                            .into_iter()
                            .filter(|(n, ..)| wanted(n))
                            .map(|(n, v, kind, read_only)| {
                                let synonyms = if request.include_synonyms {
                                    vec![synonym(n, &v, SOURCE_STATIC_BROKER)]
                                } else {
                                    Vec::new()
                                };
                                entry(
                                    n,
                                    &v,
                                    SOURCE_STATIC_BROKER,
                                    read_only,
                                    kind,
                                    synonyms,
                                    version,
                                )
                            })
                            .collect();
                    }
                }
                other => {
                    result.error_code = code::INVALID_REQUEST;
                    result.error_message =
                        Some(format!("Unsupported resource type {other}").into());
                }
            }
            result
        })
        .collect();
    DescribeConfigsResponse {
        results,
        ..Default::default()
    }
}

fn synonym(name: &str, value: &str, source: i8) -> DescribeConfigsSynonym {
    DescribeConfigsSynonym {
        name: name.into(),
        value: Some(value.into()),
        source,
        ..Default::default()
    }
}

fn entry(
    name: &str,
    value: &str,
    source: i8,
    read_only: bool,
    kind: ConfigType,
    synonyms: Vec<DescribeConfigsSynonym>,
    _version: i16,
) -> DescribeConfigsResourceResult {
    DescribeConfigsResourceResult {
        name: name.into(),
        value: Some(value.into()),
        read_only,
        config_source: source,
        is_sensitive: false,
        synonyms,
        config_type: kind as i8,
        documentation: None,
        ..Default::default()
    }
}

/// The broker settings sluice has, under Kafka's names.
fn broker_configs(core: &Core) -> Vec<(&'static str, String, ConfigType, bool)> {
    let c = &core.config;
    let listener = format!("PLAINTEXT://{}", c.listen);
    let advertised = format!(
        "PLAINTEXT://{}:{}",
        core.advertised_host, core.advertised_port
    );
    let mut v = vec![
        ("advertised.listeners", advertised, ConfigType::String, true),
        (
            "auto.create.topics.enable",
            c.auto_create_topics.to_string(),
            ConfigType::Boolean,
            true,
        ),
        ("broker.id", c.node_id.to_string(), ConfigType::Int, true),
        (
            "group.initial.rebalance.delay.ms",
            c.group_initial_rebalance_delay_ms.to_string(),
            ConfigType::Int,
            true,
        ),
        ("listeners", listener, ConfigType::String, true),
        (
            "log.dirs",
            c.data_dir.display().to_string(),
            ConfigType::String,
            true,
        ),
        (
            "log.retention.bytes",
            c.retention_bytes.to_string(),
            ConfigType::Long,
            true,
        ),
        (
            "log.retention.ms",
            c.retention_ms.to_string(),
            ConfigType::Long,
            true,
        ),
        (
            "log.segment.bytes",
            c.segment_bytes.to_string(),
            ConfigType::Int,
            true,
        ),
        (
            "message.max.bytes",
            c.message_bytes_max.to_string(),
            ConfigType::Int,
            true,
        ),
        ("node.id", c.node_id.to_string(), ConfigType::Int, true),
        (
            "num.partitions",
            c.default_partitions.to_string(),
            ConfigType::Int,
            true,
        ),
        (
            "socket.request.max.bytes",
            c.request_bytes_max.to_string(),
            ConfigType::Int,
            true,
        ),
    ];
    v.sort_by(|a, b| a.0.cmp(b.0));
    v
}

pub async fn alter(
    core: &Rc<Core>,
    request: AlterConfigsRequest,
    _version: i16,
) -> AlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    let mut changes = Vec::new();
    let mut slots = Vec::new();
    for res in &request.resources {
        let mut r = sluice_net::messages::alter_configs_response::AlterConfigsResourceResponse {
            error_code: code::NONE,
            error_message: None,
            resource_type: res.resource_type,
            resource_name: res.resource_name.clone(),
            ..Default::default()
        };
        match resource_check(core, res.resource_type) {
            Err((c, m)) => {
                r.error_code = c;
                r.error_message = Some(m.into());
            }
            Ok(()) => {
                slots.push(responses.len());
                changes.push(TopicChange::AlterConfigs {
                    name: res.resource_name.to_string(),
                    set: res
                        .configs
                        .iter()
                        .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
                        .collect(),
                    incremental: false,
                    dry_run: request.validate_only,
                });
            }
        }
        responses.push(r);
    }
    super::apply_topic_changes(core, slots, changes, |slot, code, message| {
        responses[slot].error_code = code;
        responses[slot].error_message = Some(message.into());
    })
    .await;
    AlterConfigsResponse {
        responses,
        ..Default::default()
    }
}

pub async fn incremental_alter(
    core: &Rc<Core>,
    request: IncrementalAlterConfigsRequest,
    _version: i16,
) -> IncrementalAlterConfigsResponse {
    let table = core.topics();
    let mut responses = Vec::with_capacity(request.resources.len());
    let mut changes = Vec::new();
    let mut slots = Vec::new();
    for res in &request.resources {
        let mut r = sluice_net::messages::incremental_alter_configs_response::AlterConfigsResourceResponse {
            error_code: code::NONE,
            error_message: None,
            resource_type: res.resource_type,
            resource_name: res.resource_name.clone(),
            ..Default::default()
        };
        let current = table
            .topics
            .get(res.resource_name.as_str())
            .map(|t| t.configs.clone());
        let planned = resource_check(core, res.resource_type).and_then(|()| {
            let current = current.ok_or((
                code::UNKNOWN_TOPIC_OR_PARTITION,
                "This server does not host this topic-partition.".to_owned(),
            ))?;
            let mut set = Vec::new();
            for c in &res.configs {
                let name = c.name.to_string();
                let def = topic_config::def(&name).ok_or((
                    code::INVALID_CONFIG,
                    format!("Unknown topic config name: {name}"),
                ))?;
                let value = c.value.as_ref().map(|v| v.to_string());
                let list_value =
                    |current: &std::collections::BTreeMap<String, String>| -> Vec<String> {
                        current
                            .get(&name)
                            .map_or(def.default, String::as_str)
                            .split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned)
                            .collect()
                    };
                match c.config_operation {
                    OP_SET => set.push((name, value)),
                    OP_DELETE => set.push((name, None)),
                    OP_APPEND | OP_SUBTRACT if def.kind != ConfigType::List => {
                        return Err((
                            code::INVALID_CONFIG,
                            format!("Config value append is not allowed for config key: {name}"),
                        ));
                    }
                    OP_APPEND => {
                        let mut items = list_value(&current);
                        for v in value
                            .unwrap_or_default()
                            .split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                        {
                            if !items.iter().any(|i| i == v) {
                                items.push(v.to_owned());
                            }
                        }
                        set.push((name, Some(items.join(","))));
                    }
                    OP_SUBTRACT => {
                        let drop: Vec<String> = value
                            .unwrap_or_default()
                            .split(',')
                            .map(|s| s.trim().to_owned())
                            .collect();
                        let items: Vec<String> = list_value(&current)
                            .into_iter()
                            .filter(|i| !drop.contains(i))
                            .collect();
                        set.push((name, Some(items.join(","))));
                    }
                    other => {
                        return Err((
                            code::INVALID_REQUEST,
                            format!("Unknown config operation {other}"),
                        ));
                    }
                }
            }
            Ok(set)
        });
        match planned {
            Err((c, m)) => {
                r.error_code = c;
                r.error_message = Some(m.into());
            }
            Ok(set) => {
                slots.push(responses.len());
                changes.push(TopicChange::AlterConfigs {
                    name: res.resource_name.to_string(),
                    set,
                    incremental: true,
                    dry_run: request.validate_only,
                });
            }
        }
        responses.push(r);
    }
    super::apply_topic_changes(core, slots, changes, |slot, code, message| {
        responses[slot].error_code = code;
        responses[slot].error_message = Some(message.into());
    })
    .await;
    IncrementalAlterConfigsResponse {
        responses,
        ..Default::default()
    }
}

/// Topics can be altered; broker configs are static in sluice for now.
fn resource_check(_core: &Core, resource_type: i8) -> Result<(), (i16, String)> {
    match resource_type {
        RESOURCE_TOPIC => Ok(()),
        RESOURCE_BROKER => Err((
            code::INVALID_REQUEST,
            "sluice does not support altering broker configs at runtime yet: set them in the config file and restart".into(),
        )),
        other => Err((code::INVALID_REQUEST, format!("Unsupported resource type {other}"))),
    }
}
