//! `sluice consume --group`'s membership of a classic consumer group: join and sync (assigning
//! ranges when this member leads), heartbeats, leave. Blocking, one coordinator connection.

use std::time::{Duration, Instant};

use anyhow::bail;
use sluice_net::client::Client;
use sluice_net::error_code::code;
use sluice_net::messages::join_group_request::JoinGroupRequestProtocol;
use sluice_net::messages::sync_group_request::SyncGroupRequestAssignment;
use sluice_net::messages::{
    HeartbeatRequest, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, SyncGroupRequest,
};
use sluice_net::{Request, Response};

use super::cluster::{Cluster, check, s};
use super::consumer_protocol::{decode_assignment, encode_assignment, range_assign, subscription};
use super::group::coordinator;

/// A group membership held by `sluice consume --group`.
pub(super) struct Member {
    pub(super) coord: Client,
    pub(super) group: String,
    pub(super) member_id: String,
    pub(super) generation: i32,
    pub(super) last_heartbeat: Instant,
}

impl Member {
    /// Joins (range-assigning as leader) and returns the partitions of `topic` this member got.
    pub(super) fn join(
        c: &mut Cluster,
        group: &str,
        topic: &str,
    ) -> anyhow::Result<(Member, Vec<i32>)> {
        let coord = coordinator(c, group)?;
        let mut m = Member {
            coord,
            group: group.to_owned(),
            member_id: String::new(),
            generation: -1,
            last_heartbeat: Instant::now(),
        };
        let parts = m.rejoin(c, topic)?;
        Ok((m, parts))
    }

    /// Joins and syncs until the group is stable, and returns this member's partitions of
    /// `topic`.
    pub(super) fn rejoin(&mut self, c: &mut Cluster, topic: &str) -> anyhow::Result<Vec<i32>> {
        loop {
            let j = self.join_group(topic)?;
            if j.error_code == code::MEMBER_ID_REQUIRED {
                self.member_id = j.member_id.to_string();
                continue;
            }
            if j.error_code == code::UNKNOWN_MEMBER_ID {
                self.member_id.clear();
                continue;
            }
            check(j.error_code, &format!("join {}", self.group), None)?;
            self.member_id = j.member_id.to_string();
            self.generation = j.generation_id;
            let assignments = if j.leader == j.member_id {
                let parts = c.partitions(topic)?;
                let members: Vec<String> =
                    j.members.iter().map(|m| m.member_id.to_string()).collect();
                range_assign(&parts, &members)
                    .into_iter()
                    .map(|(m, mine)| SyncGroupRequestAssignment {
                        member_id: s(&m),
                        assignment: encode_assignment(&[(topic.to_owned(), mine)]),
                        ..Default::default()
                    })
                    .collect()
            } else {
                Vec::new()
            };
            if let Some(parts) = self.sync_group(topic, assignments)? {
                return Ok(parts);
            }
        }
    }

    fn join_group(&mut self, topic: &str) -> anyhow::Result<JoinGroupResponse> {
        let req = Request::JoinGroup(JoinGroupRequest {
            group_id: s(&self.group),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            member_id: s(&self.member_id),
            protocol_type: s("consumer"),
            protocols: vec![JoinGroupRequestProtocol {
                name: s("range"),
                metadata: subscription(&[topic]),
                ..Default::default()
            }],
            ..Default::default()
        });
        let Response::JoinGroup(j) = self.coord.call(7, &req)?.1 else {
            bail!("unexpected answer to JoinGroup");
        };
        Ok(j)
    }

    /// SyncGroup; `None` when the group rebalances meanwhile (the caller joins again).
    fn sync_group(
        &mut self,
        topic: &str,
        assignments: Vec<SyncGroupRequestAssignment>,
    ) -> anyhow::Result<Option<Vec<i32>>> {
        let req = Request::SyncGroup(SyncGroupRequest {
            group_id: s(&self.group),
            generation_id: self.generation,
            member_id: s(&self.member_id),
            protocol_type: Some(s("consumer")),
            protocol_name: Some(s("range")),
            assignments,
            ..Default::default()
        });
        let Response::SyncGroup(sy) = self.coord.call(5, &req)?.1 else {
            bail!("unexpected answer to SyncGroup");
        };
        if sy.error_code == code::REBALANCE_IN_PROGRESS {
            return Ok(None);
        }
        check(sy.error_code, &format!("sync {}", self.group), None)?;
        self.last_heartbeat = Instant::now();
        Ok(Some(
            decode_assignment(sy.assignment)
                .into_iter()
                .filter(|(t, _)| t == topic)
                .flat_map(|(_, ps)| ps)
                .collect(),
        ))
    }

    /// Heartbeats when due; `true` when the group rebalances (the caller rejoins).
    pub(super) fn heartbeat(&mut self) -> anyhow::Result<bool> {
        if self.last_heartbeat.elapsed() < Duration::from_secs(3) {
            return Ok(false);
        }
        self.last_heartbeat = Instant::now();
        let req = Request::Heartbeat(HeartbeatRequest {
            group_id: s(&self.group),
            generation_id: self.generation,
            member_id: s(&self.member_id),
            ..Default::default()
        });
        let Response::Heartbeat(h) = self.coord.call(4, &req)?.1 else {
            bail!("unexpected answer to Heartbeat");
        };
        match h.error_code {
            code::NONE => Ok(false),
            code::ILLEGAL_GENERATION | code::UNKNOWN_MEMBER_ID | code::REBALANCE_IN_PROGRESS => {
                Ok(true)
            }
            e => {
                check(e, "heartbeat", None)?;
                Ok(false)
            }
        }
    }

    /// Leaves the group, ignoring any failure (the session times out anyway).
    pub(super) fn leave(&mut self) {
        let req = Request::LeaveGroup(LeaveGroupRequest {
            group_id: s(&self.group),
            member_id: s(&self.member_id),
            ..Default::default()
        });
        let _ = self.coord.call(2, &req);
    }
}
