//! `sluice produce`: lines from stdin as records, batched per partition (a batch goes out at
//! 512 KiB or 1000 records, and at the end), each batch acknowledged before the next.

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use sluice_net::client::partition_for_key;
use sluice_net::messages::metadata_request::MetadataRequestTopic;
use sluice_net::messages::produce_request::{PartitionProduceData, TopicProduceData};
use sluice_net::messages::{MetadataRequest, ProduceRequest};
use sluice_net::record_batch::build;
use sluice_net::{Request, Response};

use super::cluster::{Cluster, check, s};
use super::{ProduceArgs, Target};

/// A record read from stdin: its key (with `--key-separator`) and value.
type Line = (Option<Vec<u8>>, Vec<u8>);
/// Records not yet sent, by partition.
type Pending = BTreeMap<i32, Vec<Line>>;

/// Unsent bytes (values, keys and 16 per record) that trigger a send.
const PENDING_BYTES_MAX: usize = 512 * 1024;
/// Unsent records that trigger a send.
const PENDING_RECORDS_MAX: usize = 1000;

pub fn produce(target: &Target, args: ProduceArgs) -> anyhow::Result<()> {
    let acks = parse_acks(&args.acks)?;
    let mut c = Cluster::connect(target)?;
    // Creates the topic where the broker auto-creates, as producers do.
    let req = Request::Metadata(MetadataRequest {
        topics: Some(vec![MetadataRequestTopic {
            name: Some(s(&args.topic)),
            ..Default::default()
        }]),
        allow_auto_topic_creation: true,
        ..Default::default()
    });
    let _ = c.bootstrap.call(12, &req)?;
    let parts = c.partitions(&args.topic)?;
    if parts.is_empty() {
        bail!("topic {} has no partitions", args.topic);
    }
    let mut producer = Producer {
        leaders: parts.iter().copied().collect(),
        c,
        topic: &args.topic,
        acks,
    };
    let n = parts.len() as i32;
    let mut pending = Pending::new();
    let mut pending_bytes = 0usize;
    let mut sticky = 0i32;
    let mut sent = 0u64;
    for line in std::io::stdin().lock().lines() {
        let line = line.context("reading stdin")?;
        let (key, value) = split_line(&line, args.key_separator.as_deref());
        let p = match (args.partition, &key) {
            (Some(p), _) => p,
            (None, Some(k)) => partition_for_key(k, n),
            (None, None) => parts[(sticky as usize) % parts.len()].0,
        };
        pending_bytes += value.len() + key.as_ref().map_or(0, Vec::len) + 16;
        pending.entry(p).or_default().push((key, value));
        if pending_bytes >= PENDING_BYTES_MAX
            || pending.values().map(Vec::len).sum::<usize>() >= PENDING_RECORDS_MAX
        {
            sent += producer.flush(&mut pending)?;
            pending_bytes = 0;
            sticky = sticky.wrapping_add(1);
        }
    }
    sent += producer.flush(&mut pending)?;
    eprintln!("produced {sent} records to {}", args.topic);
    Ok(())
}

/// `--acks`: `all` (or -1), 1 or 0, as Produce's `acks`.
fn parse_acks(acks: &str) -> anyhow::Result<i16> {
    Ok(match acks {
        "all" | "-1" => -1,
        "1" => 1,
        "0" => 0,
        other => bail!("acks must be 0, 1 or all, not {other}"),
    })
}

/// A line as (key, value): split at the first `sep` when there is one; a line without it is
/// all value, with no key.
fn split_line(line: &str, sep: Option<&str>) -> Line {
    match sep.and_then(|sep| line.split_once(sep)) {
        Some((k, v)) => (Some(k.as_bytes().to_vec()), v.as_bytes().to_vec()),
        None => (None, line.as_bytes().to_vec()),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Sends batches to the partitions' leaders.
struct Producer<'a> {
    c: Cluster,
    topic: &'a str,
    acks: i16,
    /// Partition → leader.
    leaders: HashMap<i32, i32>,
}

impl Producer<'_> {
    /// Sends every pending record, one batch per partition, each acknowledged before the next;
    /// returns how many records were sent.
    fn flush(&mut self, pending: &mut Pending) -> anyhow::Result<u64> {
        let mut count = 0u64;
        for (p, recs) in std::mem::take(pending) {
            let refs: Vec<build::KeyValue<'_>> = recs
                .iter()
                .map(|(k, v)| (k.as_deref(), Some(v.as_slice())))
                .collect();
            let batch = build::batch(
                &build::BatchSpec {
                    base_timestamp: now_ms(),
                    timestamp_step: 0,
                    ..build::BatchSpec::default()
                },
                &refs,
            );
            let req = Request::Produce(ProduceRequest {
                acks: self.acks,
                timeout_ms: 30_000,
                topic_data: vec![TopicProduceData {
                    name: s(self.topic),
                    partition_data: vec![PartitionProduceData {
                        index: p,
                        records: Some(batch.into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            });
            let leader = self.leaders.get(&p).copied().unwrap_or(-1);
            let client = self.c.broker(leader)?;
            if self.acks == 0 {
                bail!("acks=0 is not supported by this tool (no answer to check)");
            }
            let Response::Produce(r) = client.call(9, &req)?.1 else {
                bail!("unexpected answer to Produce");
            };
            for t in &r.responses {
                for pr in &t.partition_responses {
                    check(
                        pr.error_code,
                        &format!("produce to {}-{p}", self.topic),
                        pr.error_message.as_ref(),
                    )?;
                }
            }
            count += recs.len() as u64;
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--acks` takes Kafka's spellings and refuses anything else.
    #[test]
    fn acks_spellings() {
        assert_eq!(parse_acks("all").expect("all"), -1);
        assert_eq!(parse_acks("-1").expect("-1"), -1);
        assert_eq!(parse_acks("1").expect("1"), 1);
        assert_eq!(parse_acks("0").expect("0"), 0);
        let e = parse_acks("2").expect_err("2 is not an acks");
        assert_eq!(e.to_string(), "acks must be 0, 1 or all, not 2");
        assert!(parse_acks("ALL").is_err());
    }

    /// Keys are split off at the first separator only when one is given and present.
    #[test]
    fn lines_split_into_key_and_value() {
        let kv =
            |k: Option<&str>, v: &str| (k.map(|k| k.as_bytes().to_vec()), v.as_bytes().to_vec());
        assert_eq!(split_line("k:v", Some(":")), kv(Some("k"), "v"));
        assert_eq!(split_line("k:v:w", Some(":")), kv(Some("k"), "v:w"));
        assert_eq!(split_line(":v", Some(":")), kv(Some(""), "v"));
        assert_eq!(split_line("k::v", Some("::")), kv(Some("k"), "v"));
        assert_eq!(
            split_line("no separator", Some(":")),
            kv(None, "no separator")
        );
        assert_eq!(split_line("k:v", None), kv(None, "k:v"));
        assert_eq!(split_line("", None), kv(None, ""));
    }
}
