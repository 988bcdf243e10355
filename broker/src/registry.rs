//! Changes to the topic registry. Only the control core runs [`Registry::apply`]: it validates
//! each change against the current table and persists the new table durably; the caller then
//! sends it to every core and waits for each to adopt it, so that when a CreateTopics answer
//! reaches the client, every core routes the new topic.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::metadata::{self, TopicMeta, TopicTable};
use crate::{client_metrics, group_config, topic_config};

/// The config resources that are only stored and described: their configs configure
/// protocols sluice does not run (see `group_config` and `client_metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredResource {
    /// ConfigResource type 32, by group id.
    Group,
    /// ConfigResource type 16, by subscription name.
    ClientMetrics,
}

/// One requested change.
#[derive(Debug, Clone)]
pub enum TopicChange {
    Create {
        name: String,
        partitions: i32,
        configs: BTreeMap<String, String>,
        /// Validate only (CreateTopics `validate_only`).
        dry_run: bool,
    },
    Delete {
        name: String,
    },
    AddPartitions {
        name: String,
        total: i32,
        dry_run: bool,
    },
    /// Replace (`incremental == false`) or merge the config overrides; `None` values delete.
    AlterConfigs {
        name: String,
        set: Vec<(String, Option<String>)>,
        incremental: bool,
        dry_run: bool,
    },
    /// Dynamic broker configs of `entity` (`""` for the cluster-wide defaults, or a node id):
    /// replace (`incremental == false`) or merge; `None` values delete. Values were checked by
    /// the handler, which answers with Kafka's INVALID_REQUEST texts.
    AlterBrokerConfigs {
        entity: String,
        set: Vec<(String, Option<String>)>,
        incremental: bool,
        dry_run: bool,
    },
    /// The configs of a group or client-metrics subscription: replace (`incremental ==
    /// false`) or merge; `None` values delete. The whole resulting set is checked here, as
    /// Kafka's controller checks it.
    AlterStoredConfigs {
        resource: StoredResource,
        name: String,
        set: Vec<(String, Option<String>)>,
        incremental: bool,
        dry_run: bool,
    },
}

/// Why a change was refused; each maps to a Kafka error code in `errors.rs`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TopicChangeError {
    #[error("Topic '{0}' already exists.")]
    AlreadyExists(String),
    #[error("This server does not host this topic-partition.")]
    UnknownTopic(String),
    #[error("{0}")]
    InvalidName(String),
    #[error("{0}")]
    InvalidPartitions(String),
    #[error("{0}")]
    InvalidConfig(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("the topic registry could not be written: {0}")]
    Storage(String),
    #[error("the controller core is unavailable")]
    Unavailable,
    /// The cluster's active controller refused the change, with Kafka's code and message.
    #[error("{message}")]
    Controller { code: i16, message: String },
}

/// The registry's single writer (on the control core): serializes changes and stores each
/// new table durably. Publishing the stored table to every core is the caller's job.
#[derive(Debug)]
pub struct Registry {
    /// One change batch at a time: each starts from the table the previous one published, or
    /// two concurrent creates would each store a table without the other's topic (seen in the
    /// differential suite: a created topic vanished, a second create of it succeeded).
    serial: glommio::sync::Semaphore,
    data_dir: PathBuf,
}

/// What [`Registry::apply`] did: one result per change, and the new table if it changed and
/// was stored (to publish while `_serial` is held).
pub struct Applied<'a> {
    pub results: Vec<Result<(), TopicChangeError>>,
    pub stored: Option<TopicTable>,
    pub serial: Option<glommio::sync::Permit<'a>>,
}

impl Registry {
    pub fn new(data_dir: PathBuf) -> Registry {
        Registry {
            serial: glommio::sync::Semaphore::new(1),
            data_dir,
        }
    }

    /// Applies `changes` in order to `current()` (read once the previous batch is published)
    /// and stores the result. One persisted write covers the whole batch.
    pub async fn apply(
        &self,
        current: impl FnOnce() -> TopicTable,
        changes: Vec<TopicChange>,
    ) -> Applied<'_> {
        let Ok(serial) = self.serial.acquire_permit(1).await else {
            return Applied {
                results: changes
                    .iter()
                    .map(|_| Err(TopicChangeError::Unavailable))
                    .collect(),
                stored: None,
                serial: None,
            };
        };
        let mut table = current();
        let mut changed = false;
        let mut results: Vec<_> = changes
            .into_iter()
            .map(|change| apply_one(&mut table, change, &mut changed))
            .collect();
        if !changed {
            return Applied {
                results,
                stored: None,
                serial: Some(serial),
            };
        }
        table.version += 1;
        let dir = self.data_dir.clone();
        let to_store = table.clone();
        let stored = glommio::executor()
            .spawn_blocking(move || to_store.store(&dir))
            .await;
        if let Err(e) = stored {
            tracing::error!(error = %e, "topic registry write failed; changes not applied");
            let msg = e.to_string();
            results = results
                .into_iter()
                .map(|r| r.and(Err(TopicChangeError::Storage(msg.clone()))))
                .collect();
            return Applied {
                results,
                stored: None,
                serial: Some(serial),
            };
        }
        Applied {
            results,
            stored: Some(table),
            serial: Some(serial),
        }
    }
}

fn apply_one(
    table: &mut TopicTable,
    change: TopicChange,
    changed: &mut bool,
) -> Result<(), TopicChangeError> {
    match change {
        TopicChange::Create {
            name,
            partitions,
            configs,
            dry_run,
        } => {
            if let Some(why) = metadata::topic_name_error(&name) {
                return Err(TopicChangeError::InvalidName(why.to_owned()));
            }
            if table.topics.contains_key(&name) {
                return Err(TopicChangeError::AlreadyExists(name));
            }
            if partitions < 1 {
                return Err(TopicChangeError::InvalidPartitions(
                    "Number of partitions must be larger than 0.".into(),
                ));
            }
            for (k, v) in &configs {
                topic_config::validate(k, v).map_err(TopicChangeError::InvalidConfig)?;
            }
            if dry_run {
                return Ok(());
            }
            let meta = TopicMeta {
                name: name.clone(),
                id: metadata::new_topic_id(),
                partitions,
                configs,
                created_ms: now_ms(),
            };
            table.topics.insert(name, meta);
            *changed = true;
            Ok(())
        }
        TopicChange::Delete { name } => {
            if table.topics.remove(&name).is_none() {
                return Err(TopicChangeError::UnknownTopic(name));
            }
            *changed = true;
            Ok(())
        }
        TopicChange::AddPartitions {
            name,
            total,
            dry_run,
        } => {
            let Some(t) = table.topics.get_mut(&name) else {
                return Err(TopicChangeError::UnknownTopic(name));
            };
            if total < t.partitions {
                return Err(TopicChangeError::InvalidPartitions(format!(
                    "Topic currently has {} partitions, which is higher than the requested {}.",
                    t.partitions, total
                )));
            }
            if total == t.partitions {
                return Err(TopicChangeError::InvalidPartitions(format!(
                    "Topic already has {} partitions.",
                    t.partitions
                )));
            }
            if !dry_run {
                t.partitions = total;
                *changed = true;
            }
            Ok(())
        }
        TopicChange::AlterConfigs {
            name,
            set,
            incremental,
            dry_run,
        } => {
            let Some(t) = table.topics.get_mut(&name) else {
                return Err(TopicChangeError::UnknownTopic(name));
            };
            let mut next = if incremental {
                t.configs.clone()
            } else {
                BTreeMap::new()
            };
            for (k, v) in set {
                match v {
                    Some(v) => {
                        topic_config::validate(&k, &v).map_err(TopicChangeError::InvalidConfig)?;
                        next.insert(k, v);
                    }
                    None => {
                        if topic_config::def(&k).is_none() {
                            return Err(TopicChangeError::InvalidConfig(format!(
                                "Unknown topic config name: {k}"
                            )));
                        }
                        next.remove(&k);
                    }
                }
            }
            if !dry_run && next != t.configs {
                t.configs = next;
                *changed = true;
            }
            Ok(())
        }
        TopicChange::AlterBrokerConfigs {
            entity,
            set,
            incremental,
            dry_run,
        } => {
            let current = table.broker_configs.get(&entity);
            let mut next = match (incremental, current) {
                (true, Some(c)) => c.clone(),
                _ => BTreeMap::new(),
            };
            let names_min_insync = set.iter().any(|(k, _)| k == MIN_INSYNC_REPLICAS);
            for (k, v) in set {
                match v {
                    Some(v) => next.insert(k, v),
                    None => next.remove(&k),
                };
            }
            // min.insync.replicas is a cluster-level setting from the first start on
            // (`metadata::BOOTSTRAP_CLUSTER_CONFIGS`); Kafka 4.4, with eligible leader replicas
            // on, refuses to remove it or to set it per broker (validate-only too).
            if entity.is_empty() && !next.contains_key(MIN_INSYNC_REPLICAS) {
                return Err(TopicChangeError::InvalidConfig(
                    "Cluster-level min.insync.replicas cannot be removed while ELR is enabled."
                        .into(),
                ));
            }
            if !entity.is_empty() && names_min_insync {
                return Err(TopicChangeError::InvalidConfig(
                    "Broker-level min.insync.replicas cannot be altered while ELR is enabled."
                        .into(),
                ));
            }
            if !dry_run && Some(&next) != current && !(next.is_empty() && current.is_none()) {
                if next.is_empty() {
                    table.broker_configs.remove(&entity);
                } else {
                    table.broker_configs.insert(entity, next);
                }
                *changed = true;
            }
            Ok(())
        }
        TopicChange::AlterStoredConfigs {
            resource,
            name,
            set,
            incremental,
            dry_run,
        } => alter_stored_configs(table, resource, name, set, incremental, dry_run, changed),
    }
}

/// The one broker config whose place Kafka 4.4 fixes at the cluster level.
const MIN_INSYNC_REPLICAS: &str = "min.insync.replicas";

/// Applies a change to a group's or client-metrics subscription's configs to `table`.
fn alter_stored_configs(
    table: &mut TopicTable,
    resource: StoredResource,
    name: String,
    set: Vec<(String, Option<String>)>,
    incremental: bool,
    dry_run: bool,
    changed: &mut bool,
) -> Result<(), TopicChangeError> {
    let stored = match resource {
        StoredResource::Group => &mut table.group_configs,
        StoredResource::ClientMetrics => &mut table.client_metrics,
    };
    let current = stored.get(&name);
    let mut next = match (incremental, current) {
        (true, Some(c)) => c.clone(),
        _ => BTreeMap::new(),
    };
    for (k, v) in set {
        match v {
            Some(v) => next.insert(k, v),
            None => next.remove(&k),
        };
    }
    let next = match resource {
        StoredResource::Group => {
            group_config::validate(&next).map_err(TopicChangeError::InvalidConfig)?
        }
        StoredResource::ClientMetrics => client_metrics::validate(&next).map_err(|r| match r {
            client_metrics::Refused::Request(m) => TopicChangeError::InvalidRequest(m),
            client_metrics::Refused::Config(m) => TopicChangeError::InvalidConfig(m),
        })?,
    };
    if dry_run || Some(&next) == current || (next.is_empty() && current.is_none()) {
        return Ok(());
    }
    if next.is_empty() {
        stored.remove(&name);
    } else {
        stored.insert(name, next);
    }
    *changed = true;
    Ok(())
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
