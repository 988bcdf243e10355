//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topics, brokers, groups and
//! client-metrics subscriptions, and ListConfigResources.
//!
//! Topic changes and dynamic broker configs go through the control core's registry, which persists them;
//! the owning cores then reopen the partitions whose effective settings changed. As in Kafka,
//! the broker configs that can change at runtime are the broker-level defaults of topic
//! configs (`log.retention.ms`, `log.segment.bytes`, `message.max.bytes`,
//! `log.cleanup.policy`, …), set for the whole cluster (resource name `""`) or for this broker
//! (its node id); a topic without its own value takes this broker's, then the cluster's, then
//! the static config's, then Kafka's default. Other known broker configs are read-only
//! (INVALID_REQUEST, "Cannot update these configs dynamically"); unknown names are stored as
//! custom settings and described with a hidden value, as Kafka does.
//!
//! Group configs (type 32, `crate::group_config`) and client-metrics subscriptions (type 16,
//! `crate::client_metrics`) are stored in the registry too, checked as a whole set on the control core
//! as Kafka's controller checks them, and described with Kafka's sources (GROUP_CONFIG 8,
//! CLIENT_METRICS_CONFIG 7, else DEFAULT_CONFIG 5); nothing else in sluice reads them.
//!
//! Not built: broker-logger resources (ListConfigResources lists this broker's, as Kafka does,
//! but DescribeConfigs refuses them).

use std::rc::Rc;

use sluice_net::StrBytes;
use sluice_net::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use sluice_net::messages::list_config_resources_response::ConfigResource;
use sluice_net::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, ListConfigResourcesRequest,
    ListConfigResourcesResponse,
};

use crate::client_metrics::CLIENT_METRICS_CONFIGS;
use crate::core::Core;
use crate::errors::code;
use crate::group_config::GROUP_CONFIGS;
use crate::metadata::TopicTable;
use crate::registry::{StoredResource, TopicChange};
use crate::topic_config::source::{
    DEFAULT as SOURCE_DEFAULT, DYNAMIC_DEFAULT_BROKER as SOURCE_DYNAMIC_DEFAULT_BROKER,
    STATIC_BROKER as SOURCE_STATIC_BROKER, TOPIC as SOURCE_TOPIC,
};
use crate::topic_config::{self, ConfigType, Inherited, TOPIC_CONFIGS};

pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;
pub const RESOURCE_BROKER_LOGGER: i8 = 8;
pub const RESOURCE_CLIENT_METRICS: i8 = 16;
pub const RESOURCE_GROUP: i8 = 32;

/// DescribeConfigs sources of the stored-only resources.
const SOURCE_CLIENT_METRICS: i8 = 7;
const SOURCE_GROUP: i8 = 8;

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

pub async fn describe(
    core: &Rc<Core>,
    request: DescribeConfigsRequest,
    _version: i16,
) -> DescribeConfigsResponse {
    let image = core.topics();
    let table = image.registry();
    let inherited = core.inherited(table);
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
                                let broker_key = topic_config::broker_key(d.name);
                                let (value, source) =
                                    topic_config::effective(d, &t.configs, &inherited);
                                let mut synonyms = Vec::new();
                                if request.include_synonyms {
                                    if let Some(v) = overridden {
                                        synonyms.push(synonym(d.name, Some(v), SOURCE_TOPIC));
                                    }
                                    if let Some(k) = broker_key {
                                        for (v, src) in inherited.all(k) {
                                            synonyms.push(synonym(k, Some(v), src));
                                        }
                                    }
                                    if let Some(s) = d.synonym {
                                        synonyms.push(synonym(s, Some(d.default), SOURCE_DEFAULT));
                                    }
                                }
                                entry(d.name, Some(value), source, false, d.kind, synonyms)
                            })
                            .collect();
                    }
                    None => {
                        result.error_code = code::UNKNOWN_TOPIC_OR_PARTITION;
                        result.error_message =
                            Some("This server does not host this topic-partition.".into());
                    }
                },
                RESOURCE_BROKER => match broker_entity(core, res.resource_name.as_str()) {
                    Err(message) => {
                        result.error_code = code::INVALID_REQUEST;
                        result.error_message = Some(message.into());
                    }
                    Ok(entity) => {
                        result.configs = describe_broker(core, table, &entity, &inherited)
                            .into_iter()
                            .filter(|(n, ..)| wanted(n))
                            .map(|(n, v, source, kind, read_only, layers)| {
                                let synonyms = if request.include_synonyms {
                                    layers
                                        .iter()
                                        .map(|(v, src)| synonym(&n, v.as_deref(), *src))
                                        .collect()
                                } else {
                                    Vec::new()
                                };
                                entry(&n, v.as_deref(), source, read_only, kind, synonyms)
                            })
                            .collect();
                    }
                },
                RESOURCE_GROUP | RESOURCE_CLIENT_METRICS => {
                    match describe_stored(table, res.resource_type, res.resource_name.as_str()) {
                        Err(message) => {
                            result.error_code = code::INVALID_REQUEST;
                            result.error_message = Some(message.into());
                        }
                        Ok(described) => {
                            result.configs = described
                                .into_iter()
                                .filter(|c| wanted(&c.name))
                                .map(|c| {
                                    let synonyms = if request.include_synonyms {
                                        c.synonyms
                                            .iter()
                                            .map(|(n, v, src)| synonym(n, Some(v), *src))
                                            .collect()
                                    } else {
                                        Vec::new()
                                    };
                                    let mut e = entry(
                                        &c.name,
                                        Some(&c.value),
                                        c.source,
                                        false,
                                        c.kind,
                                        synonyms,
                                    );
                                    if request.include_documentation {
                                        e.documentation = Some(c.doc.into());
                                    }
                                    e
                                })
                                .collect();
                        }
                    }
                }
                other => {
                    result.error_code = code::INVALID_REQUEST;
                    result.error_message =
                        Some(format!("Unsupported resource type {other}").into());
                }
            }
            if result.error_code == code::NONE {
                // Kafka answers an empty message, not null, for a described resource.
                result.error_message = Some(StrBytes::from_static(""));
            }
            result
        })
        .collect();
    DescribeConfigsResponse {
        results,
        ..Default::default()
    }
}

/// One described config of a group or client-metrics subscription.
#[derive(Debug)]
struct StoredEntry {
    name: String,
    value: String,
    source: i8,
    kind: ConfigType,
    doc: &'static str,
    /// (name, value, source), most specific first.
    synonyms: Vec<(String, String, i8)>,
}

/// The configs a group or client-metrics subscription describes, sorted by name: every
/// public key (a group's internal keys only when set), with the stored value or the default.
/// A group or subscription need not exist; an empty name is refused with Kafka's text.
fn describe_stored(
    table: &TopicTable,
    resource_type: i8,
    name: &str,
) -> Result<Vec<StoredEntry>, &'static str> {
    let mut out = Vec::new();
    if resource_type == RESOURCE_GROUP {
        if name.is_empty() {
            return Err("Group name must not be empty");
        }
        let stored = table.group_configs.get(name);
        for d in GROUP_CONFIGS {
            let own = stored.and_then(|s| s.get(d.name));
            if d.internal && own.is_none() {
                continue;
            }
            let mut synonyms = Vec::with_capacity(2);
            if let Some(v) = own {
                synonyms.push((d.name.to_owned(), v.clone(), SOURCE_GROUP));
            }
            // The broker config it falls back to (or the key itself where Kafka has none).
            synonyms.push((d.synonym.to_owned(), d.default.to_owned(), SOURCE_DEFAULT));
            out.push(StoredEntry {
                name: d.name.to_owned(),
                value: own.map_or(d.default, String::as_str).to_owned(),
                source: if own.is_some() {
                    SOURCE_GROUP
                } else {
                    SOURCE_DEFAULT
                },
                kind: d.kind,
                doc: d.doc,
                synonyms,
            });
        }
    } else {
        if name.is_empty() {
            return Err("Client metrics subscription name must not be empty");
        }
        let stored = table.client_metrics.get(name);
        for &(n, default, kind, doc) in CLIENT_METRICS_CONFIGS {
            let own = stored.and_then(|s| s.get(n));
            // Unlike a group's, a subscription's default has no synonym.
            out.push(StoredEntry {
                name: n.to_owned(),
                value: own.map_or(default, String::as_str).to_owned(),
                source: if own.is_some() {
                    SOURCE_CLIENT_METRICS
                } else {
                    SOURCE_DEFAULT
                },
                kind,
                doc,
                synonyms: own
                    .map(|v| (n.to_owned(), v.clone(), SOURCE_CLIENT_METRICS))
                    .into_iter()
                    .collect(),
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn synonym(name: &str, value: Option<&str>, source: i8) -> DescribeConfigsSynonym {
    DescribeConfigsSynonym {
        name: name.into(),
        value: value.map(Into::into),
        source,
        ..Default::default()
    }
}

fn entry(
    name: &str,
    value: Option<&str>,
    source: i8,
    read_only: bool,
    kind: ConfigType,
    synonyms: Vec<DescribeConfigsSynonym>,
) -> DescribeConfigsResourceResult {
    DescribeConfigsResourceResult {
        name: name.into(),
        value: value.map(Into::into),
        read_only,
        config_source: source,
        // Kafka hides the value of a config it does not know (it cannot tell whether it is a
        // secret); sluice does the same for custom broker configs.
        is_sensitive: value.is_none(),
        synonyms,
        config_type: kind as i8,
        documentation: None,
        ..Default::default()
    }
}

/// Which dynamic broker config entity a resource name means: `""` (the cluster-wide
/// defaults) or this broker's node id. Another id is refused with Kafka's text.
fn broker_entity(core: &Core, name: &str) -> Result<String, String> {
    let me = core.config.node_id.to_string();
    if name.is_empty() || name == me {
        Ok(name.to_owned())
    } else {
        Err(format!(
            "Unexpected broker id, expected {me} but received {name}"
        ))
    }
}

/// One described broker config: name, value (`None` hidden), source, type, read-only, and
/// the value of every layer that sets it, most specific first (the synonyms).
type BrokerEntry = (
    String,
    Option<String>,
    i8,
    ConfigType,
    bool,
    Vec<(Option<String>, i8)>,
);

/// The configs a broker resource describes. For the cluster entity (`""`), only its dynamic
/// values, as Kafka; for this broker, every config sluice knows with its effective value.
fn describe_broker(
    core: &Core,
    table: &TopicTable,
    entity: &str,
    inherited: &Inherited,
) -> Vec<BrokerEntry> {
    let kind_of = |name: &str| {
        topic_config::topic_key_of(name)
            .and_then(topic_config::def)
            .map_or(ConfigType::String, |d| d.kind)
    };
    let custom = |name: &str| {
        topic_config::topic_key_of(name).is_none()
            && !broker_configs(core).iter().any(|(n, ..)| *n == name)
    };
    if entity.is_empty() {
        return table
            .broker_configs
            .get("")
            .into_iter()
            .flatten()
            .map(|(n, v)| {
                let v = (!custom(n)).then(|| v.clone());
                let layers = vec![(v.clone(), SOURCE_DYNAMIC_DEFAULT_BROKER)];
                (
                    n.clone(),
                    v,
                    SOURCE_DYNAMIC_DEFAULT_BROKER,
                    kind_of(n),
                    false,
                    layers,
                )
            })
            .collect();
    }
    // (name, base value, base source, type, read-only)
    let mut base: Vec<(String, String, i8, ConfigType, bool)> = broker_configs(core)
        .into_iter()
        .map(|(n, v, kind, _)| {
            let dynamic = topic_config::topic_key_of(n).is_some();
            (n.to_owned(), v, SOURCE_STATIC_BROKER, kind, !dynamic)
        })
        .collect();
    for d in TOPIC_CONFIGS {
        if let Some(k) = topic_config::broker_key(d.name)
            && !base.iter().any(|(n, ..)| n == k)
        {
            base.push((
                k.to_owned(),
                d.default.to_owned(),
                SOURCE_DEFAULT,
                d.kind,
                false,
            ));
        }
    }
    for layer in [
        table.broker_configs.get(entity),
        table.broker_configs.get(""),
    ] {
        for n in layer.into_iter().flat_map(|m| m.keys()) {
            if !base.iter().any(|(b, ..)| b == n) {
                base.push((
                    n.clone(),
                    String::new(),
                    SOURCE_DEFAULT,
                    ConfigType::String,
                    false,
                ));
            }
        }
    }
    base.sort_by(|a, b| a.0.cmp(&b.0));
    base.into_iter()
        .filter_map(|(n, base_value, base_source, kind, read_only)| {
            let hidden = custom(&n);
            let show = |v: &str| (!hidden).then(|| v.to_owned());
            let mut layers: Vec<(Option<String>, i8)> = inherited
                .all(&n)
                .filter(|(_, src)| *src != SOURCE_STATIC_BROKER)
                .map(|(v, src)| (show(v), src))
                .collect();
            if !hidden {
                layers.push((Some(base_value), base_source));
            }
            let (value, source) = layers.first().cloned()?;
            Some((n, value, source, kind, read_only, layers))
        })
        .collect()
}

/// Broker configs Kafka has but cannot change at runtime, beyond those sluice describes.
const READ_ONLY_BROKER_CONFIGS: &[&str] = &[
    "controller.listener.names",
    "controller.quorum.bootstrap.servers",
    "controller.quorum.voters",
    "log.dir",
    "log.retention.hours",
    "log.retention.minutes",
    "log.roll.hours",
    "log.roll.jitter.hours",
    "process.roles",
];

/// Checks a change to broker configs and turns it into the values to store (`None`
/// deletes). `ops` are (name, operation, value); AlterConfigs sends every entry as a set.
fn plan_broker_change(
    core: &Core,
    table: &TopicTable,
    entity: &str,
    ops: Vec<(String, i8, Option<String>)>,
) -> Result<Vec<(String, Option<String>)>, String> {
    let read_only: Vec<&str> = ops
        .iter()
        .map(|(n, ..)| n.as_str())
        .filter(|n| {
            topic_config::topic_key_of(n).is_none()
                && (READ_ONLY_BROKER_CONFIGS.contains(n)
                    || broker_configs(core).iter().any(|(b, ..)| b == n))
        })
        .collect();
    if !read_only.is_empty() {
        return Err(format!(
            "Cannot update these configs dynamically: [{}]",
            read_only.join(", ")
        ));
    }
    let current = table.broker_configs.get(entity);
    let mut set = Vec::with_capacity(ops.len());
    for (name, op, value) in ops {
        let list = |name: &str| -> Vec<String> {
            let def = topic_config::topic_key_of(name).and_then(topic_config::def);
            current
                .and_then(|c| c.get(name))
                .map(String::as_str)
                .or(def.map(|d| d.default))
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let given = || -> Vec<String> {
            value
                .as_deref()
                .unwrap_or("")
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        };
        let is_list = topic_config::topic_key_of(&name)
            .and_then(topic_config::def)
            .is_some_and(|d| d.kind == ConfigType::List);
        let next = match op {
            OP_SET => value.clone(),
            OP_DELETE => None,
            OP_APPEND | OP_SUBTRACT if !is_list => {
                return Err(format!(
                    "Config value append is not allowed for config key: {name}"
                ));
            }
            OP_APPEND => {
                let mut items = list(&name);
                for v in given() {
                    if !items.contains(&v) {
                        items.push(v);
                    }
                }
                Some(items.join(","))
            }
            OP_SUBTRACT => {
                let drop = given();
                let items: Vec<String> = list(&name)
                    .into_iter()
                    .filter(|i| !drop.contains(i))
                    .collect();
                Some(items.join(","))
            }
            other => return Err(format!("Unknown config operation {other}")),
        };
        if let Some(v) = &next {
            topic_config::validate_broker(&name, v)?;
        }
        set.push((name, next));
    }
    Ok(set)
}

/// Plans a broker resource's change for AlterConfigs / IncrementalAlterConfigs.
fn broker_change(
    core: &Core,
    table: &TopicTable,
    name: &str,
    ops: Vec<(String, i8, Option<String>)>,
    incremental: bool,
    dry_run: bool,
) -> Result<TopicChange, (i16, Option<String>)> {
    let invalid = |m: String| (code::INVALID_REQUEST, Some(m));
    let entity = broker_entity(core, name).map_err(invalid)?;
    let set = plan_broker_change(core, table, &entity, ops).map_err(invalid)?;
    Ok(TopicChange::AlterBrokerConfigs {
        entity,
        set,
        incremental,
        dry_run,
    })
}

/// Config-file settings that are Kafka topic-config defaults, listed only when set away from
/// Kafka's default (as the topics' inherited layer); otherwise they are described as Kafka
/// describes them, as defaults.
fn changed_defaults(c: &crate::config::BrokerConfig) -> Option<BrokerConfigEntry> {
    let on = "true".to_owned();
    let entry = (
        "unclean.leader.election.enable",
        on,
        ConfigType::Boolean,
        true,
    );
    c.unclean_leader_election_enable.then_some(entry)
}

/// (name, value, type, read-only at runtime) of a broker config sluice describes.
type BrokerConfigEntry = (&'static str, String, ConfigType, bool);

/// The broker settings sluice has, under Kafka's names.
fn broker_configs(core: &Core) -> Vec<BrokerConfigEntry> {
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
    v.extend(changed_defaults(&core.config));
    v.sort_by(|a, b| a.0.cmp(b.0));
    v
}

pub async fn alter(
    core: &Rc<Core>,
    request: AlterConfigsRequest,
    _version: i16,
) -> AlterConfigsResponse {
    let image = core.topics();
    let table = image.registry();
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
        if res.resource_type == RESOURCE_BROKER {
            let ops = res
                .configs
                .iter()
                .map(|c| {
                    let v = c.value.as_ref().map(|v| v.to_string());
                    (
                        c.name.to_string(),
                        if v.is_some() { OP_SET } else { OP_DELETE },
                        v,
                    )
                })
                .collect();
            let name = res.resource_name.as_str();
            let planned = broker_change(core, table, name, ops, false, request.validate_only);
            if let Some((c, m)) = queue(planned, responses.len(), &mut slots, &mut changes) {
                r.error_code = c;
                r.error_message = m.map(Into::into);
            }
            responses.push(r);
            continue;
        }
        if let Some(resource) = stored_resource(res.resource_type) {
            // The whole set replaces the stored one; a null value is refused, not a delete.
            let ops = res
                .configs
                .iter()
                .map(|c| {
                    let v = c.value.as_ref().map(|v| v.to_string());
                    (c.name.to_string(), OP_SET, v)
                })
                .collect();
            let name = res.resource_name.as_str();
            let planned = stored_change(resource, name, ops, false, request.validate_only);
            if let Some((c, m)) = queue(planned, responses.len(), &mut slots, &mut changes) {
                r.error_code = c;
                r.error_message = m.map(Into::into);
            }
            responses.push(r);
            continue;
        }
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
    let image = core.topics();
    let table = image.registry();
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
        if res.resource_type == RESOURCE_BROKER {
            let ops = res
                .configs
                .iter()
                .map(|c| {
                    let v = c.value.as_ref().map(|v| v.to_string());
                    (c.name.to_string(), c.config_operation, v)
                })
                .collect();
            let name = res.resource_name.as_str();
            let planned = broker_change(core, table, name, ops, true, request.validate_only);
            if let Some((c, m)) = queue(planned, responses.len(), &mut slots, &mut changes) {
                r.error_code = c;
                r.error_message = m.map(Into::into);
            }
            responses.push(r);
            continue;
        }
        if let Some(resource) = stored_resource(res.resource_type) {
            let ops = res
                .configs
                .iter()
                .map(|c| {
                    let v = c.value.as_ref().map(|v| v.to_string());
                    (c.name.to_string(), c.config_operation, v)
                })
                .collect();
            let name = res.resource_name.as_str();
            let planned = stored_change(resource, name, ops, true, request.validate_only);
            if let Some((c, m)) = queue(planned, responses.len(), &mut slots, &mut changes) {
                r.error_code = c;
                r.error_message = m.map(Into::into);
            }
            responses.push(r);
            continue;
        }
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

/// The stored-only resource a config resource type names, if it is one.
fn stored_resource(resource_type: i8) -> Option<StoredResource> {
    match resource_type {
        RESOURCE_GROUP => Some(StoredResource::Group),
        RESOURCE_CLIENT_METRICS => Some(StoredResource::ClientMetrics),
        _ => None,
    }
}

/// Plans a change to a group's or client-metrics subscription's configs (`ops`: name,
/// operation, value), answering as Kafka's broker does for what it refuses before its
/// controller checks the resulting set: an empty name, a key named twice, a SET without a
/// value, APPEND or SUBTRACT (Kafka 4.4 refuses both for these resources, even on a LIST key),
/// and an unknown operation (UNKNOWN_SERVER_ERROR without a message).
fn stored_change(
    resource: StoredResource,
    name: &str,
    ops: Vec<(String, i8, Option<String>)>,
    incremental: bool,
    dry_run: bool,
) -> Result<TopicChange, (i16, Option<String>)> {
    let request = |m: String| (code::INVALID_REQUEST, Some(m));
    if name.is_empty() {
        return Err(request(match resource {
            StoredResource::Group => "Default group resources are not allowed.".to_owned(),
            StoredResource::ClientMetrics => "Subscription name can't be empty".to_owned(),
        }));
    }
    for (i, (key, ..)) in ops.iter().enumerate() {
        if ops[..i].iter().any(|(k, ..)| k == key) {
            return Err(request("Error due to duplicate config keys".to_owned()));
        }
    }
    let mut set = Vec::with_capacity(ops.len());
    for (key, op, value) in ops {
        match op {
            OP_SET if value.is_none() => {
                return Err(request(format!("Null value not supported for : {key}")));
            }
            OP_SET => set.push((key, value)),
            OP_DELETE => set.push((key, None)),
            OP_APPEND | OP_SUBTRACT => {
                let verb = if op == OP_APPEND {
                    "APPEND"
                } else {
                    "SUBTRACT"
                };
                return Err((
                    code::INVALID_CONFIG,
                    Some(format!(
                        "Can't {verb} to key {key} because its type is not LIST."
                    )),
                ));
            }
            _ => return Err((code::UNKNOWN_SERVER_ERROR, None)),
        }
    }
    Ok(TopicChange::AlterStoredConfigs {
        resource,
        name: name.to_owned(),
        set,
        incremental,
        dry_run,
    })
}

/// ListConfigResources (KIP-1142; v0 is KIP-714's ListClientMetricsResources): the config
/// resources of the requested types, as Kafka 4.4 lists them on one node: groups that have
/// configs, client-metrics subscriptions, this broker as a broker-logger and as a broker,
/// then every topic (internal ones too). v0 lists only subscriptions; an empty type list
/// means every type the version knows, and a type outside them is UNSUPPORTED_VERSION.
pub fn list_resources(
    core: &Rc<Core>,
    request: &ListConfigResourcesRequest,
    version: i16,
) -> ListConfigResourcesResponse {
    const V0: &[i8] = &[RESOURCE_CLIENT_METRICS];
    // In the order Kafka lists them, whatever order the request names them in.
    const V1: &[i8] = &[
        RESOURCE_GROUP,
        RESOURCE_CLIENT_METRICS,
        RESOURCE_BROKER_LOGGER,
        RESOURCE_BROKER,
        RESOURCE_TOPIC,
    ];
    let known = if version == 0 { V0 } else { V1 };
    let asked = &request.resource_types;
    if asked.iter().any(|t| !known.contains(t)) {
        return ListConfigResourcesResponse {
            error_code: code::UNSUPPORTED_VERSION,
            ..Default::default()
        };
    }
    let image = core.topics();
    let table = image.registry();
    let node = core.config.node_id.to_string();
    let mut config_resources = Vec::new();
    let mut push = |name: &str, resource_type: i8| {
        config_resources.push(ConfigResource {
            resource_name: name.into(),
            resource_type,
            ..Default::default()
        });
    };
    for &kind in known {
        if version > 0 && !asked.is_empty() && !asked.contains(&kind) {
            continue;
        }
        match kind {
            RESOURCE_GROUP => table.group_configs.keys().for_each(|g| push(g, kind)),
            RESOURCE_CLIENT_METRICS => table.client_metrics.keys().for_each(|m| push(m, kind)),
            RESOURCE_BROKER_LOGGER | RESOURCE_BROKER => push(&node, kind),
            _ => table.topics.keys().for_each(|t| push(t, kind)),
        }
    }
    ListConfigResourcesResponse {
        error_code: code::NONE,
        config_resources,
        ..Default::default()
    }
}

/// Queues a planned change for the resource answered at `slot`, or hands back its refusal.
fn queue(
    planned: Result<TopicChange, (i16, Option<String>)>,
    slot: usize,
    slots: &mut Vec<usize>,
    changes: &mut Vec<TopicChange>,
) -> Option<(i16, Option<String>)> {
    match planned {
        Ok(change) => {
            slots.push(slot);
            changes.push(change);
            None
        }
        Err(refused) => Some(refused),
    }
}

/// Topic resources; broker resources are handled before this check.
fn resource_check(_core: &Core, resource_type: i8) -> Result<(), (i16, String)> {
    match resource_type {
        RESOURCE_TOPIC => Ok(()),
        other => Err((
            code::INVALID_REQUEST,
            format!("Unsupported resource type {other}"),
        )),
    }
}
