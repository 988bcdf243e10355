//! `sluice consume`: fetches a topic's partitions (all of them, or with `--group` those the
//! group assigns, starting at the committed offsets and committing as it goes) and prints each
//! record (`output`), until `--count` records or, with `--exit`, the end of every partition.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use sluice_net::messages::fetch_request::{FetchPartition, FetchTopic};
use sluice_net::messages::fetch_response::PartitionData;
use sluice_net::messages::offset_fetch_request::OffsetFetchRequestTopic;
use sluice_net::messages::{FetchRequest, FetchResponse, OffsetFetchRequest};
use sluice_net::record_batch::{Batches, RecordBatch, TimestampType};
use sluice_net::{BrokerId, Records, Request, Response};

use super::cluster::{Cluster, EARLIEST, LATEST, check, s};
use super::group::commit;
use super::member::Member;
use super::output::{Printed, print_record};
use super::{ConsumeArgs, Target};

/// An offset to commit: topic, partition, next offset to read.
type Commit = (String, i32, i64);

pub fn consume(target: &Target, args: ConsumeArgs) -> anyhow::Result<()> {
    let mut c = Cluster::connect(target)?;
    let all = c.partitions(&args.topic)?;
    let start = StartAt::parse(&args.from)?;
    let mut member = None;
    let mut mine: Vec<i32> = all.iter().map(|(p, _)| *p).collect();
    if let Some(g) = &args.group {
        let (m, parts) = Member::join(&mut c, g, &args.topic)?;
        member = Some(m);
        mine = parts;
    }
    let mut consumer = Consumer {
        c,
        args: &args,
        leaders: all.iter().copied().collect(),
        start,
        member,
        positions: BTreeMap::new(),
        at_end: HashMap::new(),
        printed: 0,
    };
    consumer.positions = consumer.start_positions(&mine)?;
    consumer.run()
}

/// Where `--from` starts a partition without a committed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StartAt {
    /// A ListOffsets timestamp: [`EARLIEST`] or [`LATEST`].
    Timestamp(i64),
    /// This offset in every partition.
    Offset(i64),
}

impl StartAt {
    fn parse(from: &str) -> anyhow::Result<StartAt> {
        Ok(match from {
            "beginning" | "earliest" => StartAt::Timestamp(EARLIEST),
            "end" | "latest" => StartAt::Timestamp(LATEST),
            _ => StartAt::Offset(
                from.parse()
                    .map_err(|_| anyhow!("--from is beginning, end or an offset, not {from}"))?,
            ),
        })
    }
}

/// A running `sluice consume`.
struct Consumer<'a> {
    c: Cluster,
    args: &'a ConsumeArgs,
    /// Partition → leader.
    leaders: HashMap<i32, i32>,
    start: StartAt,
    member: Option<Member>,
    /// Next offset to read, per partition this consumer reads.
    positions: BTreeMap<i32, i64>,
    /// Whether a partition's position had reached its high watermark at the last fetch.
    at_end: HashMap<i32, bool>,
    printed: u64,
}

impl Consumer<'_> {
    /// Fetches and prints until done; leaves the group at the end.
    fn run(&mut self) -> anyhow::Result<()> {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        loop {
            if self.count_reached() {
                break;
            }
            if let Some(m) = self.member.as_mut()
                && m.heartbeat()?
            {
                let mine = m.rejoin(&mut self.c, &self.args.topic)?;
                self.positions = self.start_positions(&mine)?;
                self.at_end.clear();
            }
            if self.args.exit
                && !self.positions.is_empty()
                && self
                    .positions
                    .keys()
                    .all(|p| self.at_end.get(p) == Some(&true))
            {
                break;
            }
            if self.positions.is_empty() {
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
            let commits = self.fetch_round(&mut out)?;
            out.flush()?;
            self.commit(&commits);
        }
        if let Some(m) = self.member.as_mut() {
            m.leave();
        }
        Ok(())
    }

    fn count_reached(&self) -> bool {
        self.args.count.is_some_and(|n| self.printed >= n)
    }

    /// Where each of `mine` starts: the group's committed offset, else `--from`.
    fn start_positions(&mut self, mine: &[i32]) -> anyhow::Result<BTreeMap<i32, i64>> {
        let args = self.args;
        let topic = &args.topic;
        let parts: Vec<(i32, i32)> = mine
            .iter()
            .map(|p| (*p, self.leaders.get(p).copied().unwrap_or(-1)))
            .collect();
        let mut positions: BTreeMap<i32, i64> = match self.start {
            StartAt::Timestamp(ts) => self.c.list_offsets(topic, &parts, ts)?,
            StartAt::Offset(o) => mine.iter().map(|p| (*p, o)).collect(),
        };
        if let Some(m) = self.member.as_mut() {
            let req = Request::OffsetFetch(OffsetFetchRequest {
                group_id: s(&m.group),
                topics: Some(vec![OffsetFetchRequestTopic {
                    name: s(topic),
                    partition_indexes: mine.to_vec(),
                    ..Default::default()
                }]),
                ..Default::default()
            });
            let Response::OffsetFetch(r) = m.coord.call(7, &req)?.1 else {
                bail!("unexpected answer to OffsetFetch");
            };
            for t in r.topics {
                for p in t.partitions {
                    if p.committed_offset >= 0 {
                        positions.insert(p.partition_index, p.committed_offset);
                    }
                }
            }
        }
        Ok(positions)
    }

    /// One Fetch to each leader for its partitions; prints what came back and returns the
    /// offsets to commit (partitions whose position moved).
    fn fetch_round(&mut self, out: &mut impl Write) -> anyhow::Result<Vec<Commit>> {
        let mut by_leader: BTreeMap<i32, Vec<(i32, i64)>> = BTreeMap::new();
        for (p, o) in &self.positions {
            by_leader
                .entry(self.leaders.get(p).copied().unwrap_or(-1))
                .or_default()
                .push((*p, *o));
        }
        let mut commits = Vec::new();
        for (leader, ps) in by_leader {
            let r = self.fetch(leader, &ps)?;
            for t in r.responses {
                for pd in t.partitions {
                    commits.extend(self.take_partition(out, pd)?);
                }
            }
        }
        Ok(commits)
    }

    /// Fetches (partition, offset) pairs from `leader`.
    fn fetch(&mut self, leader: i32, ps: &[(i32, i64)]) -> anyhow::Result<FetchResponse> {
        let req = Request::Fetch(FetchRequest {
            replica_id: BrokerId(-1),
            max_wait_ms: 500,
            min_bytes: 1,
            max_bytes: 8 << 20,
            session_epoch: -1,
            topics: vec![FetchTopic {
                topic: s(&self.args.topic),
                partitions: ps
                    .iter()
                    .map(|(p, o)| FetchPartition {
                        partition: *p,
                        current_leader_epoch: -1,
                        fetch_offset: *o,
                        last_fetched_epoch: -1,
                        log_start_offset: -1,
                        partition_max_bytes: 1 << 20,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        });
        let Response::Fetch(r) = self.c.broker(leader)?.call(12, &req)?.1 else {
            bail!("unexpected answer to Fetch");
        };
        check(r.error_code, "fetch", None)?;
        Ok(r)
    }

    /// Prints one partition's fetched batches and moves its position; the offset to commit
    /// when it moved.
    fn take_partition(
        &mut self,
        out: &mut impl Write,
        pd: PartitionData,
    ) -> anyhow::Result<Option<Commit>> {
        let args = self.args;
        let topic = &args.topic;
        let p = pd.partition_index;
        check(pd.error_code, &format!("fetch {topic}-{p}"), None)?;
        let before = self.positions.get(&p).copied().unwrap_or(0);
        let mut next = before;
        for batch in Batches::new(pd.records.map(Records::into_bytes).unwrap_or_default()) {
            let batch = batch.map_err(|e| anyhow!("bad batch in {topic}-{p}: {e}"))?;
            self.print_batch(out, p, &batch, &mut next)?;
        }
        let moved = (next != before).then(|| (topic.clone(), p, next));
        self.positions.insert(p, next);
        self.at_end.insert(p, next >= pd.high_watermark);
        Ok(moved)
    }

    /// Prints the records of `batch` at or after `next` (stopping at `--count`) and moves
    /// `next` past them; past the whole batch unless `--count` stopped it midway. Control
    /// batches and batches wholly before `next` are skipped.
    fn print_batch(
        &mut self,
        out: &mut impl Write,
        p: i32,
        batch: &RecordBatch,
        next: &mut i64,
    ) -> anyhow::Result<()> {
        let args = self.args;
        let topic = &args.topic;
        if batch.last_offset() < *next || batch.is_control() {
            *next = (*next).max(batch.last_offset() + 1);
            return Ok(());
        }
        let log_append = batch.timestamp_type() == TimestampType::LogAppendTime;
        let records = sluice_shard::batch_records(batch, 64 << 20).map_err(|e| {
            anyhow!(
                "cannot read a batch of {topic}-{p} ({:?}): {e}",
                batch.compression()
            )
        })?;
        for rec in records {
            let rec = rec.map_err(|e| anyhow!("{e}"))?;
            let offset = batch.base_offset() + i64::from(rec.offset_delta);
            if offset < *next {
                continue;
            }
            if self.count_reached() {
                break;
            }
            let timestamp = if log_append {
                batch.max_timestamp()
            } else {
                batch.base_timestamp() + rec.timestamp_delta
            };
            let printed = Printed {
                partition: p,
                offset,
                timestamp,
                key: rec.key.as_deref(),
                value: rec.value.as_deref(),
            };
            print_record(out, &args.format, &printed)?;
            self.printed += 1;
            *next = offset + 1;
        }
        if !self.count_reached() {
            *next = (*next).max(batch.last_offset() + 1);
        }
        Ok(())
    }

    /// Commits the moved positions as the group member; a failure is reported and makes the
    /// next loop rejoin (by making a heartbeat due).
    fn commit(&mut self, commits: &[Commit]) {
        if let Some(m) = self.member.as_mut()
            && !commits.is_empty()
        {
            let (generation, id) = (m.generation, m.member_id.clone());
            if let Err(e) = commit(&mut m.coord, &m.group, generation, &id, commits) {
                eprintln!("commit failed (will rejoin): {e}");
                m.last_heartbeat = Instant::now() - Duration::from_secs(10);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--from` takes Kafka's words for both ends, or an offset; anything else fails.
    #[test]
    fn from_parses_ends_and_offsets() {
        assert_eq!(
            StartAt::parse("beginning").expect("b"),
            StartAt::Timestamp(-2)
        );
        assert_eq!(
            StartAt::parse("earliest").expect("e"),
            StartAt::Timestamp(-2)
        );
        assert_eq!(StartAt::parse("end").expect("e"), StartAt::Timestamp(-1));
        assert_eq!(StartAt::parse("latest").expect("l"), StartAt::Timestamp(-1));
        assert_eq!(StartAt::parse("42").expect("42"), StartAt::Offset(42));
        assert_eq!(StartAt::parse("0").expect("0"), StartAt::Offset(0));
        let e = StartAt::parse("middle").expect_err("not a place");
        assert_eq!(
            e.to_string(),
            "--from is beginning, end or an offset, not middle"
        );
        assert!(StartAt::parse("BEGINNING").is_err());
    }
}
