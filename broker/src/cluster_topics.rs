//! Topic changes on a cluster node: the active controller decides them. A change a handler
//! asks for (a create, an added partition count, a delete) becomes the Kafka request a broker
//! forwards to the controller (CreateTopics, CreatePartitions, DeleteTopics); the controller
//! commits its records before it answers; the answer is then held until this core's topic
//! image shows the change, so the client that hears "created" can produce to the topic
//! through this broker at once.
//!
//! A topic's config change (AlterConfigs, IncrementalAlterConfigs) is worked out and checked
//! here and goes to the controller as an IncrementalAlterConfigs of SETs and DELETEs. Broker,
//! group and client-metrics config changes are not forwarded yet: they are refused on a
//! cluster rather than applied to one node only.

use std::collections::BTreeMap;

use sluice_net::error_code::code;
use sluice_net::messages::create_partitions_request::CreatePartitionsTopic;
use sluice_net::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use sluice_net::messages::delete_topics_request::DeleteTopicState;
use sluice_net::messages::{
    CreatePartitionsRequest, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest,
};
use sluice_net::{Request, Response, StrBytes, Uuid};

use crate::forward::Forwarded;
use crate::image::TopicImage;
use crate::limits::IMAGE_WAIT;
use crate::registry::{TopicChange, TopicChangeError};

/// What these steps need of a core: the way to the active controller, and a wait on the
/// core's topic image.
pub trait Cluster {
    /// The core's current topic image.
    fn image(&self) -> std::rc::Rc<TopicImage>;
    /// Sends `request` to the active controller.
    async fn forward(&self, request: Request) -> Forwarded;
    /// Waits until the topic image satisfies `done` (at most `timeout`); whether it did.
    async fn await_image(
        &self,
        done: impl Fn(&TopicImage) -> bool,
        timeout: std::time::Duration,
    ) -> bool;
}

/// How long the controller may take over one forwarded change (Kafka's request timeout).
const CONTROLLER_TIMEOUT_MS: i32 = 30_000;

/// What a topic has to look like in the image for a change to have reached this core.
enum Awaited {
    Created {
        name: String,
        id: Uuid,
    },
    Partitions {
        name: String,
        at_least: i32,
    },
    Deleted {
        name: String,
    },
    Configs {
        name: String,
        configs: BTreeMap<String, String>,
    },
    Nothing,
}

/// Applies `changes` through the active controller, one forwarded request each, in order.
pub async fn change(
    core: &impl Cluster,
    changes: Vec<TopicChange>,
) -> Vec<Result<(), TopicChangeError>> {
    let mut out = Vec::with_capacity(changes.len());
    for change in changes {
        out.push(change_one(core, change).await);
    }
    out
}

async fn change_one(core: &impl Cluster, change: TopicChange) -> Result<(), TopicChangeError> {
    let mut total_wanted = 0;
    let (request, name) = match change {
        TopicChange::Create {
            name,
            partitions,
            configs,
            dry_run,
        } => {
            let mut configs = configs;
            let replicas = internal_replication(&core.image(), &name, &mut configs);
            let request = create_request(&name, partitions, replicas, &configs, dry_run);
            (request, name)
        }
        TopicChange::AddPartitions {
            name,
            total,
            dry_run,
        } => (
            {
                total_wanted = if dry_run { 0 } else { total };
                Request::CreatePartitions(CreatePartitionsRequest {
                    topics: vec![CreatePartitionsTopic {
                        name: name.as_str().into(),
                        count: total,
                        assignments: None,
                        ..Default::default()
                    }],
                    timeout_ms: CONTROLLER_TIMEOUT_MS,
                    validate_only: dry_run,
                    ..Default::default()
                })
            },
            name,
        ),
        TopicChange::Delete { name } => (
            Request::DeleteTopics(DeleteTopicsRequest {
                topics: vec![DeleteTopicState {
                    name: Some(name.as_str().into()),
                    topic_id: Uuid::default(),
                    ..Default::default()
                }],
                timeout_ms: CONTROLLER_TIMEOUT_MS,
                ..Default::default()
            }),
            name,
        ),
        TopicChange::AlterConfigs {
            name,
            set,
            incremental,
            dry_run,
        } => return alter_configs(core, name, set, incremental, dry_run).await,
        // Deleting dynamic broker configs that are not set changes nothing, so it is answered
        // as done (as Kafka does): `kafka-reassign-partitions --verify` clears the replication
        // throttles of every broker that way.
        TopicChange::AlterBrokerConfigs {
            entity,
            set,
            incremental: true,
            ..
        } if deletes_nothing_set(core, &entity, &set) => return Ok(()),
        _ => {
            return Err(TopicChangeError::InvalidRequest(
                "Changing configs is not supported on a sluice cluster yet.".to_owned(),
            ));
        }
    };
    let answer = core
        .forward(request)
        .await
        .map_err(|()| TopicChangeError::Unavailable)?;
    let awaited = outcome(&answer, name, total_wanted)?;
    wait_for(core, &awaited).await;
    Ok(())
}

/// Whether every operation deletes a dynamic broker config of `entity` that is not set.
fn deletes_nothing_set(
    core: &impl Cluster,
    entity: &str,
    set: &[(String, Option<String>)],
) -> bool {
    let image = core.image();
    let current = image.registry().broker_configs.get(entity);
    set.iter()
        .all(|(key, value)| value.is_none() && current.is_none_or(|c| !c.contains_key(key)))
}

/// A topic's config change: the resulting overrides are worked out and checked here, as on
/// one node (the current ones from the image; `incremental == false` replaces them all), and
/// the difference goes to the active controller as SET and DELETE operations.
async fn alter_configs(
    core: &impl Cluster,
    name: String,
    set: Vec<(String, Option<String>)>,
    incremental: bool,
    dry_run: bool,
) -> Result<(), TopicChangeError> {
    use sluice_net::messages::IncrementalAlterConfigsRequest;
    use sluice_net::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig,
    };
    let current = match core.image().topics().get(&name) {
        Some(t) => t.configs.clone(),
        None => return Err(TopicChangeError::UnknownTopic(name)),
    };
    let next = target_configs(&current, set, incremental)?;
    let keys: std::collections::BTreeSet<&String> = current.keys().chain(next.keys()).collect();
    let ops: Vec<AlterableConfig> = keys
        .into_iter()
        .filter(|k| current.get(*k) != next.get(*k))
        .map(|k| AlterableConfig {
            name: k.as_str().into(),
            config_operation: if next.contains_key(k) { 0 } else { 1 },
            value: next.get(k).map(|v| v.as_str().into()),
            ..Default::default()
        })
        .collect();
    if ops.is_empty() {
        return Ok(());
    }
    let request = Request::IncrementalAlterConfigs(IncrementalAlterConfigsRequest {
        resources: vec![AlterConfigsResource {
            resource_type: sluice_controller::image::RESOURCE_TOPIC,
            resource_name: name.as_str().into(),
            configs: ops,
            ..Default::default()
        }],
        validate_only: dry_run,
        ..Default::default()
    });
    let answer = core
        .forward(request)
        .await
        .map_err(|()| TopicChangeError::Unavailable)?;
    let Response::IncrementalAlterConfigs(r) = answer else {
        return Err(TopicChangeError::Unavailable);
    };
    let result = r.responses.first().ok_or(TopicChangeError::Unavailable)?;
    match result.error_code {
        code::NONE => {}
        code::UNKNOWN_TOPIC_OR_PARTITION => return Err(TopicChangeError::UnknownTopic(name)),
        c => {
            return Err(TopicChangeError::Controller {
                code: c,
                message: result
                    .error_message
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_default(),
            });
        }
    }
    if !dry_run {
        wait_for(
            core,
            &Awaited::Configs {
                name,
                configs: next,
            },
        )
        .await;
    }
    Ok(())
}

/// The overrides after `set` (`None` deletes a key), each checked as Kafka checks it.
fn target_configs(
    current: &BTreeMap<String, String>,
    set: Vec<(String, Option<String>)>,
    incremental: bool,
) -> Result<BTreeMap<String, String>, TopicChangeError> {
    let mut next = if incremental {
        current.clone()
    } else {
        BTreeMap::new()
    };
    for (k, v) in set {
        match v {
            Some(v) => {
                crate::topic_config::validate(&k, &v).map_err(TopicChangeError::InvalidConfig)?;
                next.insert(k, v);
            }
            None => {
                if crate::topic_config::def(&k).is_none() {
                    return Err(TopicChangeError::InvalidConfig(format!(
                        "Unknown topic config name: {k}"
                    )));
                }
                next.remove(&k);
            }
        }
    }
    Ok(next)
}

/// `__consumer_offsets`'s (and `__transaction_state`'s) replication factor: Kafka's
/// `offsets.topic.replication.factor` (3),
/// or every live broker when fewer are up (Kafka refuses to create it then; a smaller test
/// cluster would have no coordinator at all).
fn offsets_replication(image: &TopicImage) -> i16 {
    let live = image.cluster().map_or(1, |c| c.live.len());
    i16::try_from(live.clamp(1, OFFSETS_REPLICATION_FACTOR)).unwrap_or(1)
}

/// The replication factor to create topic `name` with (-1: the controller's default): the
/// internal topics' own, as Kafka's `offsets.topic.replication.factor` and
/// `transaction.state.log.replication.factor` (3) with `transaction.state.log.min.isr` (2)
/// for `__transaction_state`, bounded by the live brokers (with 2, one may fail: Kafka would
/// not create the topic at all there).
fn internal_replication(
    image: &TopicImage,
    name: &str,
    configs: &mut BTreeMap<String, String>,
) -> i16 {
    if name == crate::groups::OFFSETS_TOPIC {
        offsets_replication(image)
    } else if name == sluice_txn::TRANSACTION_STATE_TOPIC {
        let replicas = offsets_replication(image);
        configs
            .entry("min.insync.replicas".to_owned())
            .or_insert_with(|| (replicas - 1).clamp(1, TXN_STATE_MIN_ISR).to_string());
        replicas
    } else {
        -1
    }
}

const OFFSETS_REPLICATION_FACTOR: usize = 3;
/// Kafka's `transaction.state.log.min.isr`.
const TXN_STATE_MIN_ISR: i16 = 2;

/// A CreateTopics request for one topic with `replication_factor` replicas (-1: the
/// controller's default).
fn create_request(
    name: &str,
    partitions: i32,
    replication_factor: i16,
    configs: &BTreeMap<String, String>,
    dry_run: bool,
) -> Request {
    Request::CreateTopics(CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: name.into(),
            num_partitions: partitions,
            replication_factor,
            configs: configs
                .iter()
                .map(|(k, v)| CreatableTopicConfig {
                    name: k.as_str().into(),
                    value: Some(v.as_str().into()),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        timeout_ms: CONTROLLER_TIMEOUT_MS,
        validate_only: dry_run,
        ..Default::default()
    })
}

/// The change's result from the controller's answer, and what to wait for.
fn outcome(answer: &Response, name: String, total: i32) -> Result<Awaited, TopicChangeError> {
    let refused = |c: i16, m: &Option<StrBytes>| TopicChangeError::Controller {
        code: c,
        message: m.as_ref().map(|m| m.to_string()).unwrap_or_default(),
    };
    match answer {
        Response::CreateTopics(r) => {
            let t = r.topics.first().ok_or(TopicChangeError::Unavailable)?;
            match t.error_code {
                code::NONE if t.topic_id == Uuid::default() => Ok(Awaited::Nothing),
                code::NONE => Ok(Awaited::Created {
                    name,
                    id: t.topic_id,
                }),
                code::TOPIC_ALREADY_EXISTS => Err(TopicChangeError::AlreadyExists(name)),
                c => Err(refused(c, &t.error_message)),
            }
        }
        Response::CreatePartitions(r) => {
            let t = r.results.first().ok_or(TopicChangeError::Unavailable)?;
            match t.error_code {
                code::NONE => Ok(Awaited::Partitions {
                    name,
                    at_least: total,
                }),
                c => Err(refused(c, &t.error_message)),
            }
        }
        Response::DeleteTopics(r) => {
            let t = r.responses.first().ok_or(TopicChangeError::Unavailable)?;
            match t.error_code {
                code::NONE => Ok(Awaited::Deleted { name }),
                code::UNKNOWN_TOPIC_OR_PARTITION => Err(TopicChangeError::UnknownTopic(name)),
                c => Err(refused(c, &t.error_message)),
            }
        }
        _ => Err(TopicChangeError::Unavailable),
    }
}

/// Holds the answer until this core's image shows `awaited` (or [`IMAGE_WAIT`] passes).
async fn wait_for(core: &impl Cluster, awaited: &Awaited) {
    let seen = core
        .await_image(
            |image| match awaited {
                // A zero id: a create settled after a retry, whose answer has no id.
                Awaited::Created { name, id } => image
                    .topics()
                    .get(name)
                    .is_some_and(|t| *id == Uuid::default() || t.id == id.0),
                Awaited::Partitions { name, at_least } => image
                    .topics()
                    .get(name)
                    .is_some_and(|t| t.partitions >= *at_least),
                Awaited::Deleted { name } => !image.topics().contains_key(name),
                Awaited::Configs { name, configs } => image
                    .topics()
                    .get(name)
                    .is_none_or(|t| t.configs == *configs),
                Awaited::Nothing => true,
            },
            IMAGE_WAIT,
        )
        .await;
    if !seen {
        tracing::warn!("a committed topic change did not reach this core's image in time");
    } else if !matches!(awaited, Awaited::Nothing) {
        glommio::timer::sleep(crate::limits::IMAGE_PROPAGATION_GRACE).await;
    }
}

/// CreateTopics on a cluster node: the whole request goes to the active controller (which
/// validates and places it as Kafka's does), and the answer waits until every created topic
/// is in this core's image.
pub async fn create_topics(
    core: &impl Cluster,
    request: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let validate_only = request.validate_only;
    let names: Vec<_> = request.topics.iter().map(|t| t.name.clone()).collect();
    match core.forward(Request::CreateTopics(request)).await {
        Ok(Response::CreateTopics(r)) => {
            if !validate_only {
                for t in r.topics.iter().filter(|t| t.error_code == code::NONE) {
                    let awaited = Awaited::Created {
                        name: t.name.to_string(),
                        id: t.topic_id,
                    };
                    wait_for(core, &awaited).await;
                }
            }
            r
        }
        _ => unavailable(names),
    }
}

/// Every topic answered REQUEST_TIMED_OUT: no controller could be reached.
fn unavailable(names: Vec<sluice_net::TopicName>) -> CreateTopicsResponse {
    use sluice_net::messages::create_topics_response::CreatableTopicResult;
    CreateTopicsResponse {
        topics: names
            .into_iter()
            .map(|name| CreatableTopicResult {
                name,
                error_code: code::REQUEST_TIMED_OUT,
                error_message: Some("No active controller answered in time.".into()),
                num_partitions: -1,
                replication_factor: -1,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}
