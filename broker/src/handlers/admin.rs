//! Cluster and partition administration: CreatePartitions, DeleteRecords, DescribeCluster,
//! DescribeLogDirs, OffsetForLeaderEpoch. On one node the leader epoch of every partition is 0.

use std::rc::Rc;

use sluice_net::messages::create_partitions_response::CreatePartitionsTopicResult;
use sluice_net::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use sluice_net::messages::describe_cluster_response::DescribeClusterBroker;
use sluice_net::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use sluice_net::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use sluice_net::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, DeleteRecordsRequest, DeleteRecordsResponse,
    DescribeClusterRequest, DescribeClusterResponse, DescribeLogDirsRequest,
    DescribeLogDirsResponse, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse,
};

use crate::core::Core;
use crate::errors::{self, code};
use crate::messages::{Addressed, PartitionOp, PartitionOpResult};
use crate::registry::TopicChange;

pub async fn create_partitions(
    core: &Rc<Core>,
    request: CreatePartitionsRequest,
    _version: i16,
) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    let mut changes = Vec::new();
    let mut slots = Vec::new();
    for t in &request.topics {
        let mut r = CreatePartitionsTopicResult {
            name: t.name.clone(),
            error_code: code::NONE,
            error_message: None,
            ..Default::default()
        };
        // On a cluster the controller checks assignments (and, until it takes them, the
        // placement is its own).
        let single = !core.config.is_cluster();
        let bad_assignment = single
            && t.assignments.as_ref().is_some_and(|a| {
                a.iter().any(|x| {
                    x.broker_ids.is_empty()
                        || x.broker_ids.iter().any(|&b| b != core.config.node_id)
                })
            });
        if bad_assignment {
            r.error_code = code::INVALID_REPLICA_ASSIGNMENT;
            r.error_message = Some(
                "The manual partition assignment includes an unknown or empty broker list.".into(),
            );
        } else {
            slots.push(results.len());
            changes.push(TopicChange::AddPartitions {
                name: t.name.to_string(),
                total: t.count,
                dry_run: request.validate_only,
            });
        }
        results.push(r);
    }
    super::apply_topic_changes(core, slots, changes, |slot, code, message| {
        results[slot].error_code = code;
        results[slot].error_message = Some(message.into());
    })
    .await;
    CreatePartitionsResponse {
        results,
        ..Default::default()
    }
}

pub async fn delete_records(
    core: &Rc<Core>,
    request: DeleteRecordsRequest,
    _version: i16,
) -> DeleteRecordsResponse {
    let table = core.topics();
    let mut topics = Vec::with_capacity(request.topics.len());
    let mut ops = Vec::new();
    let mut slots = Vec::new();
    for (ti, t) in request.topics.iter().enumerate() {
        let meta = table.topics().get(t.name.as_str());
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for (pi, p) in t.partitions.iter().enumerate() {
            let mut r = DeleteRecordsPartitionResult {
                partition_index: p.partition_index,
                low_watermark: -1,
                error_code: code::NONE,
                ..Default::default()
            };
            match meta {
                Some(m) if p.partition_index >= 0 && p.partition_index < m.partitions => {
                    slots.push((ti, pi));
                    ops.push(Addressed {
                        topic: m.name.clone(),
                        partition: p.partition_index,
                        op: PartitionOp::DeleteRecordsBefore { offset: p.offset },
                    });
                }
                _ => r.error_code = code::UNKNOWN_TOPIC_OR_PARTITION,
            }
            partitions.push(r);
        }
        topics.push(DeleteRecordsTopicResult {
            name: t.name.clone(),
            partitions,
            ..Default::default()
        });
    }
    for ((ti, pi), result) in slots
        .into_iter()
        .zip(core.router.partitions(&core.topics(), ops).await)
    {
        let r = &mut topics[ti].partitions[pi];
        match result {
            PartitionOpResult::DeletedRecords(Ok(low)) => r.low_watermark = low,
            PartitionOpResult::DeletedRecords(Err(e)) => r.error_code = errors::part(e).code,
            other => unreachable!("delete records answered with {other:?}"),
        }
    }
    DeleteRecordsResponse {
        topics,
        ..Default::default()
    }
}

pub fn describe_cluster(
    core: &Rc<Core>,
    request: &DescribeClusterRequest,
    _version: i16,
) -> DescribeClusterResponse {
    let image = core.topics();
    DescribeClusterResponse {
        error_code: code::NONE,
        error_message: None,
        endpoint_type: request.endpoint_type,
        cluster_id: core.cluster_id.as_str().into(),
        controller_id: core.controller_id(&image).into(),
        brokers: core
            .brokers(&image)
            .into_iter()
            .map(|b| DescribeClusterBroker {
                broker_id: b.id.into(),
                host: b.host.into(),
                port: b.port,
                rack: b.rack.map(Into::into),
                is_fenced: false,
                ..Default::default()
            })
            .collect(),
        cluster_authorized_operations: super::authorized::when(
            request.include_cluster_authorized_operations,
            super::authorized::CLUSTER,
        ),
        ..Default::default()
    }
}

pub async fn describe_log_dirs(
    core: &Rc<Core>,
    request: DescribeLogDirsRequest,
    _version: i16,
) -> DescribeLogDirsResponse {
    let table = core.topics();
    let wanted: Vec<(String, i32)> = match &request.topics {
        None => table
            .topics()
            .values()
            .flat_map(|t| (0..t.partitions).map(move |p| (t.name.clone(), p)))
            .collect(),
        Some(ts) => ts
            .iter()
            .filter_map(|t| table.topics().get(t.topic.as_str()).map(|m| (m, t)))
            .flat_map(|(m, t)| {
                t.partitions
                    .iter()
                    .filter(|&&p| p >= 0 && p < m.partitions)
                    .map(move |&p| (m.name.clone(), p))
            })
            .collect(),
    };
    let ops = wanted
        .iter()
        .map(|(t, p)| Addressed {
            topic: t.clone(),
            partition: *p,
            op: PartitionOp::Describe,
        })
        .collect();
    let mut topics: Vec<DescribeLogDirsTopic> = Vec::new();
    for ((topic, partition), result) in wanted
        .into_iter()
        .zip(core.router.partitions(&core.topics(), ops).await)
    {
        let PartitionOpResult::Described(Ok((_, size))) = result else {
            continue;
        };
        let entry = DescribeLogDirsPartition {
            partition_index: partition,
            partition_size: size as i64,
            offset_lag: 0,
            is_future_key: false,
            ..Default::default()
        };
        match topics.iter_mut().find(|t| t.name.as_str() == topic) {
            Some(t) => t.partitions.push(entry),
            None => topics.push(DescribeLogDirsTopic {
                name: topic.into(),
                partitions: vec![entry],
                ..Default::default()
            }),
        }
    }
    let (total_bytes, usable_bytes) = disk_space(&core.config.data_dir);
    let dir = std::fs::canonicalize(&core.config.data_dir)
        .unwrap_or_else(|_| core.config.data_dir.clone());
    DescribeLogDirsResponse {
        error_code: code::NONE,
        results: vec![DescribeLogDirsResult {
            error_code: code::NONE,
            log_dir: dir.display().to_string().into(),
            topics,
            total_bytes,
            usable_bytes,
            is_cordoned: false,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Total and available bytes of the file system holding `dir` (-1 if unknown).
fn disk_space(dir: &std::path::Path) -> (i64, i64) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return (-1, -1);
    };
    // SAFETY: statvfs writes into the zeroed struct we own; the path is NUL-terminated.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return (-1, -1);
    }
    let frag = s.f_frsize as i64;
    (s.f_blocks as i64 * frag, s.f_bavail as i64 * frag)
}

pub async fn offset_for_leader_epoch(
    core: &Rc<Core>,
    request: OffsetForLeaderEpochRequest,
    _version: i16,
) -> OffsetForLeaderEpochResponse {
    let table = core.topics();
    let mut topics = Vec::with_capacity(request.topics.len());
    let mut ops = Vec::new();
    let mut slots = Vec::new();
    for (ti, t) in request.topics.iter().enumerate() {
        let meta = table.topics().get(t.topic.as_str());
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for (pi, p) in t.partitions.iter().enumerate() {
            let mut r = EpochEndOffset {
                error_code: code::NONE,
                partition: p.partition,
                leader_epoch: -1,
                end_offset: -1,
                ..Default::default()
            };
            let state = meta.and_then(|m| table.partition(&m.name, p.partition));
            match (meta, state) {
                (Some(m), Some(state)) => {
                    let epoch = state.leader_epoch;
                    if let Some(error) = errors::stale_epoch(p.current_leader_epoch, epoch) {
                        r.error_code = error;
                    } else if (0..=epoch).contains(&p.leader_epoch) {
                        slots.push((ti, pi, epoch));
                        let op = if p.leader_epoch == epoch {
                            PartitionOp::Offsets
                        } else {
                            PartitionOp::EpochEnd {
                                epoch: p.leader_epoch,
                            }
                        };
                        ops.push(Addressed {
                            topic: m.name.clone(),
                            partition: p.partition,
                            op,
                        });
                    }
                    // A newer epoch than ours, or none: UNDEFINED_EPOCH / -1, as Kafka.
                }
                _ => r.error_code = code::UNKNOWN_TOPIC_OR_PARTITION,
            }
            partitions.push(r);
        }
        topics.push(OffsetForLeaderTopicResult {
            topic: t.topic.clone(),
            partitions,
            ..Default::default()
        });
    }
    let results = core.router.partitions(&core.topics(), ops).await;
    fill_epoch_ends(&mut topics, slots, results);
    OffsetForLeaderEpochResponse {
        topics,
        ..Default::default()
    }
}

/// Puts each partition's answer (`slots`: topic index, partition index, current epoch) into
/// the response: the log end for the current epoch, where an older one ended otherwise.
fn fill_epoch_ends(
    topics: &mut [OffsetForLeaderTopicResult],
    slots: Vec<(usize, usize, i32)>,
    results: Vec<PartitionOpResult>,
) {
    for ((ti, pi, epoch), result) in slots.into_iter().zip(results) {
        let r = &mut topics[ti].partitions[pi];
        match result {
            PartitionOpResult::Offsets(Ok(o)) => {
                r.leader_epoch = epoch;
                r.end_offset = o.log_end_offset;
            }
            // An older epoch: where it ended in this log (Kafka's leader epoch cache), so a
            // consumer validating its position after a leader change keeps it.
            PartitionOpResult::EpochEnd(Ok(found)) => {
                if let Some((epoch, end)) = found {
                    r.leader_epoch = epoch;
                    r.end_offset = end;
                }
            }
            PartitionOpResult::Offsets(Err(e)) | PartitionOpResult::EpochEnd(Err(e)) => {
                r.error_code = errors::part(e).code;
            }
            other => unreachable!("offsets answered with {other:?}"),
        }
    }
}
