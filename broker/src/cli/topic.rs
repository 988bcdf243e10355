//! `sluice topic create|list|describe|delete|alter-config`.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail};
use sluice_net::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use sluice_net::messages::describe_configs_request::DescribeConfigsResource;
use sluice_net::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use sluice_net::messages::{
    CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, MetadataResponse,
};
use sluice_net::{Request, Response};

use super::cluster::{Cluster, EARLIEST, LATEST, check, key_value, s};
use super::{Target, TopicCmd};

/// DescribeConfigs' and IncrementalAlterConfigs' resource type of a topic.
const TOPIC_RESOURCE: i8 = 2;
/// DescribeConfigs' config source of a topic's own override (`DYNAMIC_TOPIC_CONFIG`).
const TOPIC_OVERRIDE: i8 = 1;

pub fn topic(target: &Target, cmd: TopicCmd) -> anyhow::Result<()> {
    let mut c = Cluster::connect(target)?;
    match cmd {
        TopicCmd::Create {
            name,
            partitions,
            configs,
        } => create(&mut c, &name, partitions, &configs),
        TopicCmd::List { internal } => {
            let m = c.metadata(None)?;
            for n in listed_names(&m, internal) {
                println!("{n}");
            }
            Ok(())
        }
        TopicCmd::Describe { name } => describe(&mut c, &name),
        TopicCmd::Delete { name } => delete(&mut c, &name),
        TopicCmd::AlterConfig { name, set, delete } => alter_config(&mut c, &name, &set, &delete),
    }
}

fn create(c: &mut Cluster, name: &str, partitions: i32, configs: &[String]) -> anyhow::Result<()> {
    let req = Request::CreateTopics(CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: s(name),
            num_partitions: partitions,
            replication_factor: -1,
            configs: creatable_configs(configs)?,
            ..Default::default()
        }],
        timeout_ms: 30_000,
        ..Default::default()
    });
    let Response::CreateTopics(r) = c.bootstrap.call(7, &req)?.1 else {
        bail!("unexpected answer to CreateTopics");
    };
    let t = r.topics.first().ok_or_else(|| anyhow!("no result"))?;
    check(
        t.error_code,
        &format!("create {name}"),
        t.error_message.as_ref(),
    )?;
    println!("created topic {name} with {partitions} partitions");
    Ok(())
}

/// `--config key=value` flags as CreateTopics configs.
fn creatable_configs(configs: &[String]) -> anyhow::Result<Vec<CreatableTopicConfig>> {
    configs
        .iter()
        .map(|kv| {
            key_value(kv).map(|(k, v)| CreatableTopicConfig {
                name: k.into(),
                value: Some(v.into()),
                ..Default::default()
            })
        })
        .collect()
}

/// The topics `topic list` prints, sorted: internal ones only with `--internal`.
fn listed_names(m: &MetadataResponse, internal: bool) -> Vec<String> {
    let mut names: Vec<String> = m
        .topics
        .iter()
        .filter(|t| internal || !t.is_internal)
        .filter_map(|t| t.name.as_ref().map(|n| n.to_string()))
        .collect();
    names.sort();
    names
}

fn describe(c: &mut Cluster, name: &str) -> anyhow::Result<()> {
    let parts = c.partitions(name)?;
    let start = c.list_offsets(name, &parts, EARLIEST)?;
    let end = c.list_offsets(name, &parts, LATEST)?;
    let req = Request::DescribeConfigs(DescribeConfigsRequest {
        resources: vec![DescribeConfigsResource {
            resource_type: TOPIC_RESOURCE,
            resource_name: s(name),
            configuration_keys: None,
            ..Default::default()
        }],
        ..Default::default()
    });
    let Response::DescribeConfigs(r) = c.bootstrap.call(4, &req)?.1 else {
        bail!("unexpected answer to DescribeConfigs");
    };
    let offsets = Offsets {
        start: &start,
        end: &end,
    };
    print!("{}", describe_text(name, &parts, &offsets, &overrides(&r)));
    Ok(())
}

/// A topic's `key=value` overrides, in the broker's order.
fn overrides(r: &DescribeConfigsResponse) -> Vec<String> {
    r.results
        .iter()
        .flat_map(|res| res.configs.iter())
        .filter(|cfg| cfg.config_source == TOPIC_OVERRIDE)
        .map(|cfg| {
            format!(
                "{}={}",
                cfg.name.as_str(),
                cfg.value.as_ref().map_or("", |v| v.as_str())
            )
        })
        .collect()
}

/// Each partition's log start and end offsets.
struct Offsets<'a> {
    start: &'a BTreeMap<i32, i64>,
    end: &'a BTreeMap<i32, i64>,
}

/// `topic describe`'s text: a summary line, then one row per (partition, leader), offsets
/// unknown to ListOffsets shown as -1.
fn describe_text(
    name: &str,
    parts: &[(i32, i32)],
    offsets: &Offsets<'_>,
    overrides: &[String],
) -> String {
    let mut out = format!(
        "topic {name}: {} partitions; configs: {}\n",
        parts.len(),
        if overrides.is_empty() {
            "(defaults)".to_owned()
        } else {
            overrides.join(", ")
        }
    );
    out.push_str(&format!(
        "{:>9}  {:>6}  {:>12}  {:>12}\n",
        "PARTITION", "LEADER", "START", "END"
    ));
    for (p, leader) in parts {
        out.push_str(&format!(
            "{p:>9}  {leader:>6}  {:>12}  {:>12}\n",
            offsets.start.get(p).copied().unwrap_or(-1),
            offsets.end.get(p).copied().unwrap_or(-1)
        ));
    }
    out
}

fn delete(c: &mut Cluster, name: &str) -> anyhow::Result<()> {
    let req = Request::DeleteTopics(DeleteTopicsRequest {
        topic_names: vec![s(name)],
        timeout_ms: 30_000,
        ..Default::default()
    });
    let Response::DeleteTopics(r) = c.bootstrap.call(5, &req)?.1 else {
        bail!("unexpected answer to DeleteTopics");
    };
    let t = r.responses.first().ok_or_else(|| anyhow!("no result"))?;
    check(
        t.error_code,
        &format!("delete {name}"),
        t.error_message.as_ref(),
    )?;
    println!("deleted topic {name}");
    Ok(())
}

fn alter_config(
    c: &mut Cluster,
    name: &str,
    set: &[String],
    delete: &[String],
) -> anyhow::Result<()> {
    let req = Request::IncrementalAlterConfigs(IncrementalAlterConfigsRequest {
        resources: vec![AlterConfigsResource {
            resource_type: TOPIC_RESOURCE,
            resource_name: s(name),
            configs: alterable_configs(set, delete)?,
            ..Default::default()
        }],
        ..Default::default()
    });
    let Response::IncrementalAlterConfigs(r) = c.bootstrap.call(1, &req)?.1 else {
        bail!("unexpected answer to IncrementalAlterConfigs");
    };
    let res = r.responses.first().ok_or_else(|| anyhow!("no result"))?;
    check(
        res.error_code,
        &format!("alter {name}"),
        res.error_message.as_ref(),
    )?;
    println!("altered configs of topic {name}");
    Ok(())
}

/// `--set key=value` as SET (operation 0) and `--delete key` as DELETE (operation 1).
fn alterable_configs(set: &[String], delete: &[String]) -> anyhow::Result<Vec<AlterableConfig>> {
    let mut configs = Vec::new();
    for kv in set {
        let (k, v) = key_value(kv)?;
        configs.push(AlterableConfig {
            name: k.into(),
            config_operation: 0,
            value: Some(v.into()),
            ..Default::default()
        });
    }
    for k in delete {
        configs.push(AlterableConfig {
            name: s(k),
            config_operation: 1,
            value: None,
            ..Default::default()
        });
    }
    Ok(configs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_net::messages::describe_configs_response::{
        DescribeConfigsResourceResult, DescribeConfigsResult,
    };
    use sluice_net::messages::metadata_response::MetadataResponseTopic;

    fn strings(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|x| (*x).to_owned()).collect()
    }

    /// `--config` flags become CreateTopics configs; one without `=` fails the command.
    #[test]
    fn creatable_configs_from_flags() {
        let got = creatable_configs(&strings(&["retention.ms=5", "cleanup.policy=compact"]))
            .expect("configs");
        let pairs: Vec<(String, Option<String>)> = got
            .iter()
            .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
            .collect();
        assert_eq!(
            pairs,
            [
                ("retention.ms".to_owned(), Some("5".to_owned())),
                ("cleanup.policy".to_owned(), Some("compact".to_owned()))
            ]
        );
        assert!(creatable_configs(&strings(&["a=1", "oops"])).is_err());
    }

    /// `--set` comes first as operation 0 with a value, `--delete` as operation 1 without.
    #[test]
    fn alterable_configs_from_flags() {
        let got =
            alterable_configs(&strings(&["a=1", "b=x=y"]), &strings(&["c"])).expect("configs");
        let ops: Vec<(String, i8, Option<String>)> = got
            .iter()
            .map(|c| {
                let value = c.value.as_ref().map(|v| v.to_string());
                (c.name.to_string(), c.config_operation, value)
            })
            .collect();
        assert_eq!(
            ops,
            [
                ("a".to_owned(), 0, Some("1".to_owned())),
                ("b".to_owned(), 0, Some("x=y".to_owned())),
                ("c".to_owned(), 1, None)
            ]
        );
        assert!(alterable_configs(&strings(&["bad"]), &[]).is_err());
    }

    /// `topic list` sorts names and hides internal topics unless asked.
    #[test]
    fn listed_names_sorted_and_filtered() {
        let topic = |name: &str, is_internal: bool| MetadataResponseTopic {
            name: Some(s(name)),
            is_internal,
            ..Default::default()
        };
        let m = MetadataResponse {
            topics: vec![
                topic("zeta", false),
                topic("__consumer_offsets", true),
                topic("alpha", false),
            ],
            ..Default::default()
        };
        assert_eq!(listed_names(&m, false), ["alpha", "zeta"]);
        assert_eq!(
            listed_names(&m, true),
            ["__consumer_offsets", "alpha", "zeta"]
        );
    }

    /// Only the topic's own overrides (config source 1) are shown; a null value prints empty.
    #[test]
    fn overrides_are_the_topic_sourced_configs() {
        let cfg =
            |name: &str, value: Option<&str>, config_source: i8| DescribeConfigsResourceResult {
                name: s(name),
                value: value.map(s),
                config_source,
                ..Default::default()
            };
        let r = DescribeConfigsResponse {
            results: vec![DescribeConfigsResult {
                configs: vec![
                    cfg("retention.ms", Some("5"), 1),
                    cfg("segment.bytes", Some("1024"), 5),
                    cfg("x", None, 1),
                ],
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(overrides(&r), ["retention.ms=5", "x="]);
    }

    /// The summary line and the right-aligned table, -1 where an offset is unknown.
    #[test]
    fn describe_text_layout() {
        let start: BTreeMap<i32, i64> = [(0, 0), (1, 3)].into_iter().collect();
        let end: BTreeMap<i32, i64> = [(0, 10)].into_iter().collect();
        let offsets = Offsets {
            start: &start,
            end: &end,
        };
        let text = describe_text("t", &[(0, 1), (1, 1)], &offsets, &strings(&["a=1", "b=2"]));
        assert_eq!(
            text,
            "topic t: 2 partitions; configs: a=1, b=2\n\
             PARTITION  LEADER         START           END\n\
             \x20       0       1             0            10\n\
             \x20       1       1             3            -1\n"
        );
        let text = describe_text("t", &[], &offsets, &[]);
        assert!(text.starts_with("topic t: 0 partitions; configs: (defaults)\n"));
    }
}
