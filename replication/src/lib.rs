//! `sluice-replication`: Kafka's ISR replication of one partition as a sans-IO core, the data
//! plane half of issue 21 (the controller that elects leaders is `sluice-controller`'s).
//!
//! Each broker holds, per partition replica, a `PartitionReplica`: the partition's log (behind
//! the `Log` trait; `MemLog` in memory for tests) and its role, which the controller's partition
//! state (`LeaderAndIsr`, from the metadata image) decides:
//!
//! - `PartitionLeader` appends produces in its leader epoch, serves followers' Fetches (records
//!   from their position, or `DivergingEpoch` when their log leaves its own, or
//!   FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH / OFFSET_OUT_OF_RANGE), tracks each
//!   follower's log end and last caught-up time, moves the high watermark (the smallest log end
//!   in the ISR, never backwards, not while the ISR is below `min.insync.replicas`), proposes
//!   ISR shrinks and expansions to the controller as AlterPartition requests with Kafka's
//!   partition epochs and broker epochs (KIP-903), and answers acks=all produces once the
//!   high watermark passes them (NOT_ENOUGH_REPLICAS before appending, REQUEST_TIMED_OUT;
//!   NOT_ENOUGH_REPLICAS_AFTER_APPEND through `check_enough_replicas_reach_offset`, for a
//!   broker purgatory re-checking a produce to several partitions, the only way Kafka still
//!   reaches it now that the high watermark stops under `min.insync.replicas`).
//! - `PartitionFollower` fetches from its log end with the epoch of its last record, appends
//!   what the leader sends as it is, learns the high watermark, follows the leader's log
//!   start, and truncates on `DivergingEpoch` exactly as Kafka's fetcher does.
//! - `LeaderEpochCache` answers OffsetForLeaderEpoch.
//!
//! - `LeaderReplicas`, the leader's replica tracking without its log (replica set, ISR, epochs,
//!   follower progress, AlterPartition requests, the high watermark bound): what sluice's
//!   broker runs for each partition it leads, beside its own storage; `PartitionLeader` wraps
//!   it here with the high watermark and waiting produces over a `Log`. The broker's follower
//!   takes its two decisions from `diverging_epoch` and `truncation_offset`.
//!
//! Nothing here does I/O, reads a clock or starts a thread: the caller passes `now_ms` in,
//! sends the `FetchRequest`s and `Effect`s out, and brings answers back. Durability follows
//! sluice's fdatasync default: the leader counts its own log toward the high watermark up to
//! its durable end, and a follower syncs before each Fetch, so an acknowledged record is on
//! the disk of every ISR member.
//!
//! Where this differs from Kafka, on purpose: the leader counts its own log only up to its
//! durable end and followers sync before each Fetch (above); a partition state with the
//! partition epoch an in-flight AlterPartition is based on does not reset that request (Kafka's
//! `makeLeader` does, which lost committed records in the simulator); an AlterPartition
//! carries an attempt number and only the answer to the latest send counts (Kafka gets the same
//! from its one ordered connection); a Fetch answer echoes the follower's position (the broker
//! fills it in from the request it matched). As in Kafka, the high watermark may advance over
//! records of earlier leader epochs (what waits for the current epoch is ListOffsets,
//! `PartitionLeader::offsets_available`, and ISR expansion), and OffsetForLeaderEpoch for an
//! epoch older than the cache's first answers that epoch with the first entry's start offset.
//!
//! Not here: the unclean election path (a follower whose log end is past its leader's only
//! retries), reassignment (adding/removing replicas, beyond accepting a new replica set),
//! tiered storage, the broker's metadata cache checks of a follower's broker epoch (the
//! leader only fences a Fetch with an older broker epoch than the last it saw; the controller
//! refuses ineligible ISR members), and the mapping onto Kafka's wire messages.
//!
//! Verified by unit tests per rule (`src/*`, `tests/rules.rs`) and by `tests/sim.rs`, a seeded
//! deterministic simulator: 3 to 5 brokers, one to three partitions, an in-memory controller
//! electing from the ISR, a network that loses, delays, reorders and duplicates, crashes that
//! keep only each log's durable prefix (torn), isolations from the controller, retention, and
//! acks=all producers; its checkers are listed in its module doc. `cargo test -p sluice-replication`
//! runs the fixed seeds; `SEEDS=1000 cargo test -p sluice-replication --release --test sim
//! long_run -- --ignored --nocapture` sweeps more (`FIRST`, `STEPS` too); `SEED=n cargo test
//! -p sluice-replication --test sim replay -- --ignored --nocapture` replays one with its trace.

mod acks;
mod divergence;
mod epoch_cache;
mod follower;
mod isr;
mod leader;
mod leader_fetch;
mod leader_isr;
mod leader_replicas;
mod log;
mod message;
mod progress;
mod replica;
mod rng;
mod types;

pub use divergence::{diverging_epoch, truncation_offset};
pub use epoch_cache::{EpochEntry, LeaderEpochCache};
pub use follower::{FetchOutcome, PartitionFollower};
pub use leader::PartitionLeader;
pub use leader_replicas::LeaderReplicas;
pub use log::{Log, MemBatch, MemLog, RecordBatch};
pub use message::{
    Acks, AlterPartitionAnswer, AlterPartitionError, AlterPartitionRequest, Effect, FetchError,
    FetchRequest, FetchResponse, IsrMember, ProduceError, ProduceToken,
};
pub use replica::{PartitionReplica, Role};
pub use rng::Rng;
pub use types::{
    BrokerEpoch, Config, Epoch, EpochEndOffset, LeaderAndIsr, Offset, PartitionEpoch, ReplicaId,
};
