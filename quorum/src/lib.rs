//! `sluice-quorum`: one replica (a voter, or a non-voting observer) of a KRaft controller
//! quorum (Kafka's KIP-595 Raft, with KIP-996 pre-vote and KIP-630 snapshots) as a sans-IO
//! state machine, the consensus core of issue 20.
//!
//! A `Replica` is a plain struct on one thread. The caller passes time in (`tick`, and the
//! clock on every input), delivers messages (`receive`), proposes entries on the leader
//! (`propose`), and carries out the `Effect`s it drains, in order: write the `QuorumState`
//! durably, send a `Message`, apply entries below a new high watermark, reset the state machine
//! from a snapshot. The log is the one thing the replica calls directly, through the `Log`
//! trait (`MemLog` in memory, for tests).
//! Randomness (election timeouts) comes from a seed.
//!
//! Roles: Unattached, Prospective (pre-vote, KIP-996), Candidate, Leader, Follower, Resigned.
//! Followers pull with Fetch and truncate on `DivergingEpoch`; the leader moves the high
//! watermark when a majority holds an entry of its epoch; a new leader announces itself with
//! BeginQuorumEpoch and a resigning one with EndQuorumEpoch; a leader that a majority stops
//! fetching from resigns (check quorum). Observers (a `Config::id` not among the voters,
//! Kafka's broker-only nodes) ask a random voter who leads, follow that leader with Fetch like a
//! follower and learn the high watermark from it; they never vote, stand, nor count. A leader
//! reports every voter's and observer's log end, last fetch and last caught-up time for
//! DescribeQuorum (`Replica::describe`).
//!
//! Snapshots (KIP-630): the caller snapshots its state at a committed offset
//! (`Replica::snapshot_taken`, kept by the `Log`) and may drop the log below it
//! (`Replica::delete_before_snapshot`); a leader answers a Fetch below its log start with the
//! snapshot's id, the follower or observer downloads it whole (`Message::FetchSnapshot`, one
//! chunk), installs it as its new log start and is told to load it (`Effect::LoadSnapshot`, also
//! the first effect after a restart from a log with a snapshot).
//!
//! Elsewhere: the mapping of `Message` onto Kafka's wire types and the disk-backed `Log`
//! (`sluice_controller::FileLog`, snapshots as Kafka `.checkpoint` files) live in
//! `sluice-controller`, which keeps this crate sans-IO.
//!
//! Not here yet: voter changes (KIP-853), chunked snapshot transfer (one message carries the
//! whole snapshot; fine for a metadata image of a few MB, not beyond), Kafka's long-poll Fetch,
//! and observers and snapshots in the exhaustive model check (the simulator covers both).
//!
//! Verified by `tests/sim.rs` (a seeded simulator with loss, delay, reordering, duplication,
//! crashes, torn writes, observers and snapshots, also checking that every node's state at an
//! offset is the same and that observers never pass the voters' commit point),
//! `tests/model.rs` (an exhaustive search over small voter-only configurations), both checking
//! one leader per epoch and that committed entries are never lost or changed, and
//! `tests/cluster.rs` (scenarios: observers, DescribeQuorum, catching up by snapshot).

mod describe;
mod election;
mod log;
mod message;
mod replica;
mod replication;
mod rng;
mod snapshot;
mod state;
mod types;

pub use describe::{QuorumDescription, ReplicaDescription};
pub use log::{Log, MemLog};
pub use message::{FetchError, FetchResponse, FetchSnapshotResponse, Message};
pub use replica::{Effect, NotLeader, Replica};
pub use rng::Rng;
pub use snapshot::SnapshotError;
pub use state::RoleKind;
pub use types::{
    Config, Entry, Epoch, NodeId, Offset, OffsetAndEpoch, Payload, QuorumState, Snapshot,
};
