//! `sluice-quorum`: one replica (a voter, or a non-voting observer) of a KRaft controller quorum (Kafka's KIP-595 Raft, with KIP-996
//! pre-vote) as a sans-IO state machine, the consensus core of issue 20.
//!
//! A `Replica` is a plain struct on one thread. The caller passes time in (`tick`, and the
//! clock on every input), delivers messages (`receive`), proposes entries on the leader
//! (`propose`), and carries out the `Effect`s it drains, in order: write the `QuorumState`
//! durably, send a `Message`, apply entries below a new high watermark. The log is the one
//! thing the replica calls directly, through the `Log` trait (`MemLog` in memory, for tests).
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
//! Not here yet: snapshots (KIP-630), voter changes (KIP-853), mapping `Message`
//! onto Kafka's wire types, and a disk-backed `Log`.
//!
//! Verified by `tests/sim.rs` (a seeded simulator with loss, delay, reordering, duplication,
//! crashes and torn writes) and `tests/model.rs` (an exhaustive search over small
//! configurations), both checking one leader per epoch and that committed entries are never
//! lost or changed.

mod describe;
mod election;
mod log;
mod message;
mod replica;
mod replication;
mod rng;
mod state;
mod types;

pub use describe::{QuorumDescription, ReplicaDescription};
pub use log::{Log, MemLog};
pub use message::{FetchError, FetchResponse, Message};
pub use replica::{Effect, NotLeader, Replica};
pub use rng::Rng;
pub use state::RoleKind;
pub use types::{Config, Entry, Epoch, NodeId, Offset, OffsetAndEpoch, Payload, QuorumState};
