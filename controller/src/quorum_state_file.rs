//! `QuorumStateFile`: the replica's persisted `QuorumState` as Kafka's `quorum-state` file in
//! the metadata log's directory, the JSON of Kafka's `QuorumStateData`, so either side can
//! read the other's.
//!
//! Kafka 4.4 with static voters (`controller.quorum.voters`, kraft.version 0) writes version 0,
//! in this field order (checked against a file a real Kafka 4.4.0 wrote):
//! `{"clusterId":"","leaderId":1,"leaderEpoch":1,"votedId":-1,"appliedOffset":0,`
//! `"currentVoters":[{"voterId":1}],"data_version":0}`. sluice writes the same, byte for byte.
//! Version 1 (dynamic voters: no clusterId/appliedOffset/currentVoters, a `votedDirectoryId`)
//! is read too; its directory id is ignored, as sluice has no directory ids yet.
//!
//! Mapping: `leaderEpoch` is the epoch (Kafka's default -1, "none yet", reads as epoch 0);
//! `leaderId` and `votedId` of -1 are `None`.
//!
//! Writes are atomic and durable: a temporary file, fsync, rename over the old file, fsync of
//! the directory. A crash leaves either the old state or the new one, never a mix.

use crate::log_file::sync_dir;
use crate::storage_error::StorageError;
use sluice_quorum::{Epoch, NodeId, QuorumState};
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The file name Kafka uses, inside the metadata log's directory.
pub const QUORUM_STATE_FILE: &str = "quorum-state";

/// The `QuorumStateData` version written (Kafka's, for static voters).
const DATA_VERSION_WRITTEN: i16 = 0;

/// The `quorum-state` file of one node. Used on the controller's thread (blocking `std::fs`);
/// one writer at a time.
#[derive(Debug, Clone)]
pub struct QuorumStateFile {
    path: PathBuf,
    voters: Vec<NodeId>,
}

/// `QuorumStateData` version 0 in Kafka's field order (serde writes fields as declared).
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Written<'a> {
    cluster_id: &'a str,
    leader_id: i32,
    leader_epoch: i32,
    voted_id: i32,
    applied_offset: i64,
    current_voters: Vec<WrittenVoter>,
    #[serde(rename = "data_version")]
    data_version: i16,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct WrittenVoter {
    voter_id: i32,
}

/// `QuorumStateData` of any version, as read (fields of other versions are optional).
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Read {
    leader_id: Option<i32>,
    leader_epoch: Option<i32>,
    voted_id: Option<i32>,
    #[serde(rename = "data_version")]
    data_version: i16,
}

impl QuorumStateFile {
    /// The `quorum-state` file in `dir` (the metadata log's directory); `voters` go into the
    /// `currentVoters` field Kafka's version 0 carries.
    pub fn new(dir: &Path, voters: Vec<NodeId>) -> QuorumStateFile {
        QuorumStateFile {
            path: dir.join(QUORUM_STATE_FILE),
            voters,
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The state last written, or `None` if the file does not exist (a new node).
    pub fn read(&self) -> Result<Option<QuorumState>, StorageError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageError::io("read", &self.path)(e)),
        };
        decode(&text)
            .map(Some)
            .map_err(|what| StorageError::BadQuorumState {
                path: self.path.clone(),
                what,
            })
    }

    /// Replaces the file with `state`, durably, before returning.
    pub fn write(&self, state: &QuorumState) -> Result<(), StorageError> {
        let text = encode(state, &self.voters);
        let tmp = self.path.with_extension("tmp");
        let mut file = std::fs::File::create(&tmp).map_err(StorageError::io("create", &tmp))?;
        file.write_all(text.as_bytes())
            .map_err(StorageError::io("write", &tmp))?;
        file.sync_all().map_err(StorageError::io("fsync", &tmp))?;
        drop(file);
        std::fs::rename(&tmp, &self.path).map_err(StorageError::io("rename", &tmp))?;
        match self.path.parent() {
            Some(dir) => sync_dir(dir),
            None => Ok(()),
        }
    }
}

/// The JSON text Kafka 4.4 writes for `state` with static `voters`.
fn encode(state: &QuorumState, voters: &[NodeId]) -> String {
    let written = Written {
        cluster_id: "",
        leader_id: state.leader.map_or(-1, |n| n.0),
        leader_epoch: state.epoch.0,
        voted_id: state.voted_for.map_or(-1, |n| n.0),
        applied_offset: 0,
        current_voters: voters
            .iter()
            .map(|v| WrittenVoter { voter_id: v.0 })
            .collect(),
        data_version: DATA_VERSION_WRITTEN,
    };
    // Serializing a struct of integers and strings to a String cannot fail.
    serde_json::to_string(&written).unwrap_or_default()
}

/// Reads Kafka's JSON (version 0 or 1) into a `QuorumState`.
fn decode(text: &str) -> Result<QuorumState, String> {
    let read: Read = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if !(0..=1).contains(&read.data_version) {
        return Err(format!(
            "data_version {} (0 and 1 are known)",
            read.data_version
        ));
    }
    let node = |id: Option<i32>| id.filter(|&id| id >= 0).map(NodeId);
    Ok(QuorumState {
        epoch: Epoch(read.leader_epoch.unwrap_or(-1).max(0)),
        voted_for: node(read.voted_id),
        leader: node(read.leader_id),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a real Kafka 4.4.0 (single node, static voters) wrote after electing itself.
    const KAFKA_FILE: &str = "{\"clusterId\":\"\",\"leaderId\":1,\"leaderEpoch\":1,\
        \"votedId\":-1,\"appliedOffset\":0,\"currentVoters\":[{\"voterId\":1}],\
        \"data_version\":0}";

    /// Kafka's own file reads as leader 1 in epoch 1, and writing that state back gives
    /// Kafka's bytes exactly.
    #[test]
    fn kafka_file_reads_and_writes_back_identically() {
        let state = decode(KAFKA_FILE).unwrap();
        let expected = QuorumState {
            epoch: Epoch(1),
            voted_for: None,
            leader: Some(NodeId(1)),
        };
        assert_eq!(state, expected);
        assert_eq!(encode(&state, &[NodeId(1)]), KAFKA_FILE);
    }

    /// Version 1 (dynamic voters) is read; an unknown version and bad JSON are refused.
    #[test]
    fn version_one_reads_and_unknown_versions_fail() {
        let v1 = "{\"leaderId\":-1,\"leaderEpoch\":7,\"votedId\":3,\
            \"votedDirectoryId\":\"AAAAAAAAAAAAAAAAAAAAAA\",\"data_version\":1}";
        let state = decode(v1).unwrap();
        assert_eq!(state.epoch, Epoch(7));
        assert_eq!(state.voted_for, Some(NodeId(3)));
        assert_eq!(state.leader, None);
        assert!(decode("{\"leaderEpoch\":1,\"data_version\":2}").is_err());
        assert!(decode("{\"leaderEpoch\":1,").is_err());
    }

    /// Write then read through the file gives the state back; a missing file reads as None;
    /// no temporary file is left behind.
    #[test]
    fn file_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let file = QuorumStateFile::new(dir.path(), vec![NodeId(1), NodeId(2), NodeId(3)]);
        assert_eq!(file.read().unwrap(), None);
        for state in [
            QuorumState {
                epoch: Epoch(4),
                voted_for: Some(NodeId(2)),
                leader: None,
            },
            QuorumState {
                epoch: Epoch(5),
                voted_for: Some(NodeId(2)),
                leader: Some(NodeId(2)),
            },
        ] {
            file.write(&state).unwrap();
            assert_eq!(file.read().unwrap(), Some(state));
        }
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(QUORUM_STATE_FILE)]);
    }
}
