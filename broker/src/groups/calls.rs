//! The calls a core sends the coordinator of a group, and their answers.
//!
//! Everything here is plain `Send` data: a [`GroupCall`] crosses the mesh from the core that
//! read the request to the core that owns the group's `__consumer_offsets` partition, and the
//! [`GroupReply`] comes back the same way. Nothing here holds a handle to a core.

use bytes::Bytes;

use super::group::{JoinArgs, JoinResult, SyncResult};

/// One offset to commit.
#[derive(Debug, Clone)]
pub struct CommitEntry {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
}

impl CommitEntry {
    /// One partition of an OffsetCommit or TxnOffsetCommit request (null metadata is "").
    pub fn new(
        topic: String,
        partition: i32,
        (offset, leader_epoch): (i64, i32),
        metadata: Option<&sluice_net::StrBytes>,
    ) -> CommitEntry {
        CommitEntry {
            topic,
            partition,
            offset,
            leader_epoch,
            metadata: metadata.map(|m| m.to_string()).unwrap_or_default(),
        }
    }
}

/// One committed offset as OffsetFetch reports it.
#[derive(Debug, Clone)]
pub struct FetchedOffset {
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub error: i16,
}

/// A member as DescribeGroups reports it.
#[derive(Debug, Clone)]
pub struct DescribedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// A group as DescribeGroups reports it; `found` is false for a group that does not exist.
#[derive(Debug, Clone)]
pub struct Described {
    pub group_id: String,
    pub found: bool,
    pub error: i16,
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<DescribedMember>,
}

/// A group as ListGroups reports it.
#[derive(Debug, Clone)]
pub struct Listed {
    pub group_id: String,
    pub protocol_type: String,
    pub state: &'static str,
}

/// A group request sent to the core that coordinates the group.
#[derive(Debug)]
pub enum GroupCall {
    Join {
        partition: i32,
        group: String,
        args: JoinArgs,
    },
    Sync {
        partition: i32,
        group: String,
        member_id: String,
        instance_id: Option<String>,
        generation: i32,
        protocol_type: Option<String>,
        protocol_name: Option<String>,
        /// v5+: both protocol fields must be given.
        require_protocol: bool,
        assignments: Vec<(String, Bytes)>,
    },
    Heartbeat {
        partition: i32,
        group: String,
        member_id: String,
        instance_id: Option<String>,
        generation: i32,
    },
    Leave {
        partition: i32,
        group: String,
        members: Vec<(String, Option<String>)>,
    },
    Commit {
        partition: i32,
        group: String,
        member_id: String,
        instance_id: Option<String>,
        generation: i32,
        offsets: Vec<CommitEntry>,
        /// OffsetCommit v9 answers GROUP_ID_NOT_FOUND where older versions say
        /// ILLEGAL_GENERATION.
        version: i16,
    },
    /// TxnOffsetCommit: offsets pending in the transaction of `producer` (id, epoch) until its
    /// marker reaches the partition.
    TxnCommit {
        partition: i32,
        group: String,
        producer: (i64, i16),
        member_id: String,
        instance_id: Option<String>,
        generation: i32,
        offsets: Vec<CommitEntry>,
    },
    /// A marker of `producer_id` was written to `partition`: its pending offsets there are
    /// committed or dropped.
    TxnEnded {
        partition: i32,
        producer_id: i64,
        commit: bool,
    },
    FetchOffsets {
        partition: i32,
        group: String,
        /// `None`: every committed offset of the group.
        topics: Option<Vec<(String, Vec<i32>)>>,
        /// OffsetFetch v7+ `RequireStable`: a partition with an offset pending in an open
        /// transaction answers UNSTABLE_OFFSET_COMMIT.
        require_stable: bool,
    },
    Describe {
        groups: Vec<(i32, String)>,
    },
    List,
    Delete {
        groups: Vec<(i32, String)>,
    },
    DeleteOffsets {
        partition: i32,
        group: String,
        partitions: Vec<(String, i32)>,
    },
}

/// The answer to a [`GroupCall`].
#[derive(Debug)]
pub enum GroupReply {
    Join(JoinResult),
    Sync(SyncResult),
    Code(i16),
    /// A top-level error, or one code per member.
    Leave(Result<Vec<i16>, i16>),
    /// A top-level error, or one code per entry.
    Commit(Result<Vec<i16>, i16>),
    Offsets(Result<Vec<(String, Vec<FetchedOffset>)>, i16>),
    Described(Vec<Described>),
    Listed(Vec<Listed>),
    /// One code per group.
    Deleted(Vec<i16>),
    /// A top-level error, or one code per partition.
    OffsetsDeleted(Result<Vec<i16>, i16>),
}
