//! `sluice group list|describe|delete|reset-offsets`, and the coordinator calls `consume
//! --group` shares (finding the coordinator, committing offsets).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use sluice_net::client::Client;
use sluice_net::error_code::code;
use sluice_net::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use sluice_net::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use sluice_net::messages::{
    DeleteGroupsRequest, DescribeGroupsRequest, DescribeGroupsResponse, FindCoordinatorRequest,
    ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest, OffsetFetchRequest,
};
use sluice_net::{Request, Response, StrBytes};

use super::cluster::{Cluster, EARLIEST, LATEST, check, connect, s};
use super::consumer_protocol::decode_assignment;
use super::{GroupCmd, TIMEOUT, Target};

/// A topic partition, as the group commands key their tables.
type TopicPartition = (String, i32);
/// Who holds a partition: member id, client host, client id.
type Owner = (String, String, String);

pub fn group(target: &Target, cmd: GroupCmd) -> anyhow::Result<()> {
    let mut c = Cluster::connect(target)?;
    match cmd {
        GroupCmd::List => list(&mut c),
        GroupCmd::Describe { group } => describe(&mut c, &group),
        GroupCmd::Delete { group } => delete(&mut c, &group),
        GroupCmd::ResetOffsets {
            group,
            topic,
            to_earliest,
            to_latest,
            to_offset,
            execute,
        } => {
            let to = ResetTo {
                to_earliest,
                to_latest,
                to_offset,
            };
            reset_offsets(&mut c, &group, &topic, &to, execute)
        }
    }
}

fn list(c: &mut Cluster) -> anyhow::Result<()> {
    let req = Request::ListGroups(ListGroupsRequest::default());
    let Response::ListGroups(r) = c.bootstrap.call(4, &req)?.1 else {
        bail!("unexpected answer to ListGroups");
    };
    check(r.error_code, "list groups", None)?;
    print!("{}", list_text(&r));
    Ok(())
}

/// One line per group, by group id: `id<TAB>state<TAB>protocol type`.
fn list_text(r: &ListGroupsResponse) -> String {
    let mut groups: Vec<_> = r.groups.iter().collect();
    groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    groups
        .iter()
        .map(|g| {
            format!(
                "{}\t{}\t{}\n",
                g.group_id.as_str(),
                g.group_state.as_str(),
                g.protocol_type.as_str()
            )
        })
        .collect()
}

fn describe(c: &mut Cluster, group: &str) -> anyhow::Result<()> {
    let mut coord = coordinator(c, group)?;
    let d = describe_group(&mut coord, group)?;
    let g = d.groups.first().ok_or_else(|| anyhow!("no answer"))?;
    check(
        g.error_code,
        &format!("describe {group}"),
        g.error_message.as_ref(),
    )?;
    println!("{}", group_summary(group, g));
    let owner = owners(&g.members);
    let offsets = committed(&mut coord, group)?;
    let keys = partitions_shown(&offsets, &owner);
    let mut ends: HashMap<TopicPartition, i64> = HashMap::new();
    let topics: BTreeSet<String> = keys.iter().map(|(t, _)| t.clone()).collect();
    for t in topics {
        if let Ok(parts) = c.partitions(&t) {
            for (p, o) in c.list_offsets(&t, &parts, LATEST)? {
                ends.insert((t.clone(), p), o);
            }
        }
    }
    print!("{}", offsets_table(&keys, &offsets, &ends, &owner));
    Ok(())
}

/// `group G: state S, protocol T D, N members`.
fn group_summary(group: &str, g: &DescribedGroup) -> String {
    format!(
        "group {group}: state {}, protocol {} {}, {} members",
        g.group_state.as_str(),
        g.protocol_type.as_str(),
        g.protocol_data.as_str(),
        g.members.len()
    )
}

/// Which member holds each partition, from the members' assignments.
fn owners(members: &[DescribedGroupMember]) -> HashMap<TopicPartition, Owner> {
    let mut owner = HashMap::new();
    for m in members {
        for (t, ps) in decode_assignment(m.member_assignment.clone()) {
            for p in ps {
                owner.insert(
                    (t.clone(), p),
                    (
                        m.member_id.to_string(),
                        m.client_host.to_string(),
                        m.client_id.to_string(),
                    ),
                );
            }
        }
    }
    owner
}

/// The partitions `group describe` shows: those with a committed offset and those assigned,
/// sorted, each once.
fn partitions_shown(
    offsets: &BTreeMap<TopicPartition, i64>,
    owner: &HashMap<TopicPartition, Owner>,
) -> Vec<TopicPartition> {
    let mut keys: Vec<TopicPartition> = offsets.keys().cloned().collect();
    for k in owner.keys() {
        if !offsets.contains_key(k) {
            keys.push(k.clone());
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

/// The header and one row per partition: committed offset, log end, lag, owner (`-` where
/// unknown).
fn offsets_table(
    keys: &[TopicPartition],
    offsets: &BTreeMap<TopicPartition, i64>,
    ends: &HashMap<TopicPartition, i64>,
    owner: &HashMap<TopicPartition, Owner>,
) -> String {
    let mut out = format!(
        "{:<24} {:>9} {:>14} {:>14} {:>8}  CONSUMER-ID / HOST / CLIENT-ID\n",
        "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG"
    );
    for k in keys {
        let cur = offsets.get(k).copied();
        let end = ends.get(k).copied();
        let lag = match (cur, end) {
            (Some(c), Some(e)) => (e - c).to_string(),
            _ => "-".to_owned(),
        };
        let who = owner
            .get(k)
            .map_or("-".to_owned(), |(m, h, c)| format!("{m} / {h} / {c}"));
        out.push_str(&format!(
            "{:<24} {:>9} {:>14} {:>14} {:>8}  {who}\n",
            k.0,
            k.1,
            cur.map_or("-".to_owned(), |c| c.to_string()),
            end.map_or("-".to_owned(), |e| e.to_string()),
            lag
        ));
    }
    out
}

fn delete(c: &mut Cluster, group: &str) -> anyhow::Result<()> {
    let mut coord = coordinator(c, group)?;
    let req = Request::DeleteGroups(DeleteGroupsRequest {
        groups_names: vec![s(group)],
        ..Default::default()
    });
    let Response::DeleteGroups(r) = coord.call(2, &req)?.1 else {
        bail!("unexpected answer to DeleteGroups");
    };
    let res = r.results.first().ok_or_else(|| anyhow!("no result"))?;
    check(
        res.error_code,
        &format!("delete {group}"),
        res.error_message.as_ref(),
    )?;
    println!("deleted group {group}");
    Ok(())
}

/// `reset-offsets`' target flags (clap makes them mutually exclusive).
struct ResetTo {
    to_earliest: bool,
    to_latest: bool,
    to_offset: Option<i64>,
}

fn reset_offsets(
    c: &mut Cluster,
    group: &str,
    topic: &str,
    to: &ResetTo,
    execute: bool,
) -> anyhow::Result<()> {
    let mut coord = coordinator(c, group)?;
    let d = describe_group(&mut coord, group)?;
    if let Some(g) = d.groups.first()
        && !g.members.is_empty()
    {
        bail!(
            "group {group} has {} active members (state {}): stop them first",
            g.members.len(),
            g.group_state.as_str()
        );
    }
    let parts = c.partitions(topic)?;
    let target_offsets: BTreeMap<i32, i64> = if to.to_earliest {
        c.list_offsets(topic, &parts, EARLIEST)?
    } else if to.to_latest {
        c.list_offsets(topic, &parts, LATEST)?
    } else if let Some(o) = to.to_offset {
        parts.iter().map(|(p, _)| (*p, o)).collect()
    } else {
        bail!("say where to: --to-earliest, --to-latest or --to-offset N");
    };
    let plan: Vec<(String, i32, i64)> = target_offsets
        .iter()
        .map(|(p, o)| (topic.to_owned(), *p, *o))
        .collect();
    print!("{}", plan_text(&plan));
    if execute {
        commit(&mut coord, group, -1, "", &plan)?;
        println!(
            "reset {} partitions of {topic} for group {group}",
            plan.len()
        );
    } else {
        println!("(dry run: add --execute to commit these offsets)");
    }
    Ok(())
}

/// One line per partition to reset: `topic<TAB>partition<TAB>offset`.
fn plan_text(plan: &[(String, i32, i64)]) -> String {
    plan.iter()
        .map(|(t, p, o)| format!("{t}\t{p}\t{o}\n"))
        .collect()
}

/// The group's coordinator, connected.
pub(super) fn coordinator(c: &mut Cluster, group: &str) -> anyhow::Result<Client> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let req = Request::FindCoordinator(FindCoordinatorRequest {
            key: s(group),
            key_type: 0,
            ..Default::default()
        });
        let Response::FindCoordinator(r) = c.bootstrap.call(3, &req)?.1 else {
            bail!("unexpected answer to FindCoordinator");
        };
        if r.error_code == code::NONE {
            return connect(&format!("{}:{}", r.host.as_str(), r.port));
        }
        if Instant::now() > deadline {
            check(
                r.error_code,
                &format!("coordinator of {group}"),
                r.error_message.as_ref(),
            )?;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Committed offsets of a group (topic → partition → offset).
fn committed(coord: &mut Client, group: &str) -> anyhow::Result<BTreeMap<TopicPartition, i64>> {
    let req = Request::OffsetFetch(OffsetFetchRequest {
        group_id: s(group),
        topics: None,
        ..Default::default()
    });
    let Response::OffsetFetch(r) = coord.call(7, &req)?.1 else {
        bail!("unexpected answer to OffsetFetch");
    };
    check(r.error_code, &format!("offsets of {group}"), None)?;
    Ok(r.topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .filter(|p| p.committed_offset >= 0)
                .map(move |p| ((t.name.to_string(), p.partition_index), p.committed_offset))
        })
        .collect())
}

fn describe_group(coord: &mut Client, group: &str) -> anyhow::Result<DescribeGroupsResponse> {
    let req = Request::DescribeGroups(DescribeGroupsRequest {
        groups: vec![s(group)],
        ..Default::default()
    });
    let Response::DescribeGroups(r) = coord.call(5, &req)?.1 else {
        bail!("unexpected answer to DescribeGroups");
    };
    Ok(r)
}

/// Commits `offsets` (topic, partition, offset) for `member` of `generation` (-1 and "" for a
/// group without members).
pub(super) fn commit(
    coord: &mut Client,
    group: &str,
    generation: i32,
    member: &str,
    offsets: &[(String, i32, i64)],
) -> anyhow::Result<()> {
    let req = Request::OffsetCommit(OffsetCommitRequest {
        group_id: s(group),
        generation_id_or_member_epoch: generation,
        member_id: s(member),
        topics: commit_topics(offsets),
        ..Default::default()
    });
    let Response::OffsetCommit(r) = coord.call(8, &req)?.1 else {
        bail!("unexpected answer to OffsetCommit");
    };
    for t in &r.topics {
        for p in &t.partitions {
            check(
                p.error_code,
                &format!("commit {}-{}", t.name.as_str(), p.partition_index),
                None,
            )?;
        }
    }
    Ok(())
}

/// OffsetCommit's topics: the offsets grouped by topic, in first-seen order.
fn commit_topics(offsets: &[(String, i32, i64)]) -> Vec<OffsetCommitRequestTopic> {
    let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
    for (t, p, o) in offsets {
        let part = OffsetCommitRequestPartition {
            partition_index: *p,
            committed_offset: *o,
            committed_leader_epoch: -1,
            committed_metadata: Some(StrBytes::default()),
            ..Default::default()
        };
        match topics.iter_mut().find(|x| x.name.as_str() == t) {
            Some(x) => x.partitions.push(part),
            None => topics.push(OffsetCommitRequestTopic {
                name: s(t),
                partitions: vec![part],
                ..Default::default()
            }),
        }
    }
    topics
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::consumer_protocol::encode_assignment;
    use sluice_net::messages::list_groups_response::ListedGroup;

    fn tp(t: &str, p: i32) -> TopicPartition {
        (t.to_owned(), p)
    }

    /// `group list` prints groups sorted by id, tab-separated.
    #[test]
    fn list_text_sorts_by_group_id() {
        let listed = |id: &str, state: &str| ListedGroup {
            group_id: s(id),
            group_state: s(state),
            protocol_type: s("consumer"),
            ..Default::default()
        };
        let r = ListGroupsResponse {
            groups: vec![listed("b", "Stable"), listed("a", "Empty")],
            ..Default::default()
        };
        assert_eq!(list_text(&r), "a\tEmpty\tconsumer\nb\tStable\tconsumer\n");
        assert_eq!(list_text(&ListGroupsResponse::default()), "");
    }

    /// The summary line and the owners taken from the members' assignments.
    #[test]
    fn summary_and_owners() {
        let member = DescribedGroupMember {
            member_id: s("m1"),
            client_id: s("cli"),
            client_host: s("/127.0.0.1"),
            member_assignment: encode_assignment(&[("t".to_owned(), vec![0, 2])]),
            ..Default::default()
        };
        let g = DescribedGroup {
            group_state: s("Stable"),
            protocol_type: s("consumer"),
            protocol_data: s("range"),
            members: vec![member],
            ..Default::default()
        };
        assert_eq!(
            group_summary("g", &g),
            "group g: state Stable, protocol consumer range, 1 members"
        );
        let owner = owners(&g.members);
        assert_eq!(owner.len(), 2);
        let who = ("m1".to_owned(), "/127.0.0.1".to_owned(), "cli".to_owned());
        assert_eq!(owner.get(&tp("t", 2)), Some(&who));
        assert_eq!(owner.get(&tp("t", 1)), None);
    }

    /// Rows for committed and assigned partitions, with lag where both ends are known and `-`
    /// elsewhere.
    #[test]
    fn offsets_table_rows() {
        let offsets: BTreeMap<TopicPartition, i64> =
            [(tp("t", 0), 5), (tp("t", 1), 9)].into_iter().collect();
        let owner: HashMap<TopicPartition, Owner> =
            [(tp("t", 2), ("m".to_owned(), "h".to_owned(), "c".to_owned()))]
                .into_iter()
                .collect();
        let keys = partitions_shown(&offsets, &owner);
        assert_eq!(keys, [tp("t", 0), tp("t", 1), tp("t", 2)]);
        let ends: HashMap<TopicPartition, i64> =
            [(tp("t", 0), 7), (tp("t", 2), 3)].into_iter().collect();
        let table = offsets_table(&keys, &offsets, &ends, &owner);
        let rows: Vec<Vec<&str>> = table
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            rows[0],
            [
                "TOPIC",
                "PARTITION",
                "CURRENT-OFFSET",
                "LOG-END-OFFSET",
                "LAG",
                "CONSUMER-ID",
                "/",
                "HOST",
                "/",
                "CLIENT-ID"
            ]
        );
        assert_eq!(rows[1], ["t", "0", "5", "7", "2", "-"]);
        assert_eq!(rows[2], ["t", "1", "9", "-", "-", "-"]);
        assert_eq!(rows[3], ["t", "2", "-", "3", "-", "m", "/", "h", "/", "c"]);
        assert_eq!(rows.len(), 4);
        // Fixed-width columns: on every line the lag column ends at byte 73, then two spaces.
        for l in table.lines() {
            assert_ne!(&l[72..73], " ", "{table}");
            assert_eq!(&l[73..75], "  ", "{table}");
        }
    }

    /// The reset plan's lines, and the commit grouping offsets by topic in first-seen order.
    #[test]
    fn plan_text_and_commit_topics() {
        let plan = vec![
            ("b".to_owned(), 0, 4),
            ("a".to_owned(), 1, 0),
            ("b".to_owned(), 1, 6),
        ];
        assert_eq!(plan_text(&plan), "b\t0\t4\na\t1\t0\nb\t1\t6\n");
        let topics = commit_topics(&plan);
        let got: Vec<(String, Vec<(i32, i64)>)> = topics
            .iter()
            .map(|t| {
                let ps = t
                    .partitions
                    .iter()
                    .map(|p| (p.partition_index, p.committed_offset))
                    .collect();
                (t.name.to_string(), ps)
            })
            .collect();
        assert_eq!(
            got,
            [
                ("b".to_owned(), vec![(0, 4), (1, 6)]),
                ("a".to_owned(), vec![(1, 0)])
            ]
        );
        let p = &topics[0].partitions[0];
        assert_eq!(p.committed_leader_epoch, -1);
        assert_eq!(p.committed_metadata.as_ref().map(|m| m.as_str()), Some(""));
    }
}
