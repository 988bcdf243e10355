//! The follower side of one partition (Kafka's `Partition` while it follows, and its share of
//! the `ReplicaFetcherThread`): one Fetch in flight to the leader of the current leader epoch,
//! from the log end with the last record's epoch; an answer's batches are appended as they are
//! (the leader's offsets and epochs kept); the high watermark is learned as the smaller of the
//! leader's and the own log end, and the log start follows the leader's (up to the high
//! watermark); a `DivergingEpoch` answer truncates the log where it leaves the leader's, as
//! Kafka's fetcher does.
//!
//! The follower syncs its log before each Fetch, so the fetch offset the leader counts toward
//! the high watermark is durable here (sluice's fdatasync default; Kafka counts what is in the
//! page cache).
//!
//! What must stay true: only an answer to the Fetch in flight (same leader epoch, same fetch
//! offset) is applied; truncation never goes below the high watermark this replica has
//! learned (asserted: with the controller electing from the ISR only, a record below any
//! replica's high watermark is on every later leader).

use crate::divergence::truncation_offset;
use crate::log::{Log, RecordBatch};
use crate::message::{FetchError, FetchRequest, FetchResponse};
use crate::types::{Config, Epoch, EpochEndOffset, LeaderAndIsr, Offset, ReplicaId};

/// The follower of one partition in one leader epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionFollower {
    config: Config,
    leader: Option<ReplicaId>,
    leader_epoch: Epoch,
    high_watermark: Offset,
    /// The Fetch in flight: its position (fetch offset, last fetched epoch) and send time.
    in_flight: Option<(Offset, Option<Epoch>, u64)>,
    next_fetch_ms: u64,
    /// Told FENCED_LEADER_EPOCH: no Fetch until the metadata brings a newer leader epoch.
    fenced: bool,
}

/// What applying a Fetch answer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FetchOutcome {
    /// Not an answer to the Fetch in flight: dropped.
    Ignored,
    /// Batches appended (possibly none); the high watermark as now known.
    Appended {
        batches: usize,
        high_watermark: Offset,
    },
    /// The log was cut to end at this offset; fetch again from there.
    Truncated { to: Offset },
    /// An error; the next Fetch waits for the backoff (or, when fenced, for new metadata).
    Failed(FetchError),
}

impl PartitionFollower {
    /// This replica follows `state`'s leader (Kafka's `makeFollower`), with the high watermark
    /// it knew. It fetches from its log end; truncation, if needed, comes with the answer.
    pub fn new<L: Log>(
        config: Config,
        state: &LeaderAndIsr,
        log: &L,
        high_watermark: Offset,
    ) -> PartitionFollower {
        assert_ne!(
            state.leader,
            Some(config.replica_id),
            "the leader of {state:?}"
        );
        PartitionFollower {
            config,
            leader: state.leader,
            leader_epoch: state.leader_epoch,
            high_watermark: high_watermark.min(log.log_end()),
            in_flight: None,
            next_fetch_ms: 0,
            fenced: false,
        }
    }

    /// The leader this replica fetches from (None: the partition has no leader).
    pub fn leader(&self) -> Option<ReplicaId> {
        self.leader
    }

    /// The leader epoch this replica follows in.
    pub fn leader_epoch(&self) -> Epoch {
        self.leader_epoch
    }

    /// The high watermark as learned from the leader.
    pub fn high_watermark(&self) -> Offset {
        self.high_watermark
    }

    /// The Fetch to send now, if one is due: none in flight (or the one in flight timed
    /// out), the backoff over, a leader known, not fenced. Syncs the log first.
    pub fn poll_fetch<L: Log>(&mut self, now_ms: u64, log: &mut L) -> Option<FetchRequest> {
        let timed_out = self
            .in_flight
            .is_none_or(|(_, _, sent)| now_ms >= sent + self.config.fetch_timeout_ms);
        if self.fenced || self.leader.is_none() || !timed_out || now_ms < self.next_fetch_ms {
            return None;
        }
        log.sync();
        let fetch_offset = log.log_end();
        let last_fetched_epoch = log.epochs().latest_epoch();
        self.in_flight = Some((fetch_offset, last_fetched_epoch, now_ms));
        Some(FetchRequest {
            replica_id: self.config.replica_id,
            replica_epoch: self.config.broker_epoch,
            current_leader_epoch: self.leader_epoch,
            fetch_offset,
            last_fetched_epoch,
            log_start_offset: log.log_start(),
        })
    }

    /// Applies the leader's answer to the Fetch in flight.
    pub fn handle_fetch_response<L: Log>(
        &mut self,
        now_ms: u64,
        log: &mut L,
        response: FetchResponse<L::Batch>,
    ) -> FetchOutcome {
        // The position must be the one in flight and still this log's: a duplicate or late
        // answer to an earlier Fetch at the same offset but another last epoch (the log was
        // truncated and refilled since) would otherwise truncate again, below what the
        // follower has learned is committed (found by the simulator, seed 199).
        let position = (response.fetch_offset, response.last_fetched_epoch);
        let current = self.in_flight.map(|(o, e, _)| (o, e)) == Some(position)
            && position == (log.log_end(), log.epochs().latest_epoch())
            && response.current_leader_epoch == self.leader_epoch;
        if !current {
            return FetchOutcome::Ignored;
        }
        self.in_flight = None;
        if let Some(error) = response.error {
            return self.fetch_failed(now_ms, log, error, response.log_start_offset);
        }
        if let Some(diverging) = response.diverging_epoch {
            let to = self.truncate_diverging(log, diverging);
            return FetchOutcome::Truncated { to };
        }
        let batches = response.batches.len();
        for batch in response.batches {
            self.append(log, batch);
        }
        let learned = response.high_watermark.min(log.log_end());
        self.high_watermark = self.high_watermark.max(learned);
        // Kafka's follower follows the leader's log start (retention, DeleteRecords), never
        // past its own high watermark.
        if response.log_start_offset <= self.high_watermark {
            log.advance_log_start(response.log_start_offset);
        }
        if batches == 0 {
            self.next_fetch_ms = now_ms + self.config.fetch_backoff_ms;
        }
        FetchOutcome::Appended {
            batches,
            high_watermark: self.high_watermark,
        }
    }

    /// Appends one batch as the leader wrote it (a batch starting before the log end, the
    /// leader's whole batch around the fetch offset, is cut to start there by `Log::read_from`
    /// or refused here).
    fn append<L: Log>(&mut self, log: &mut L, batch: L::Batch) {
        assert!(
            batch.epoch() <= self.leader_epoch,
            "a batch of epoch {:?} from the leader of epoch {:?}",
            batch.epoch(),
            self.leader_epoch
        );
        assert_eq!(
            batch.base_offset(),
            log.log_end(),
            "a batch not at the log end"
        );
        log.append_as_follower(batch);
    }

    /// Kafka's fetcher on errors: FENCED_LEADER_EPOCH stops fetching until new metadata;
    /// OFFSET_OUT_OF_RANGE below the leader's log start starts the log afresh there (Kafka's
    /// `fetchOffsetAndTruncate`; past the leader's end happens only after an unclean election,
    /// which this crate does not do: it just retries); the rest retry after the backoff.
    fn fetch_failed<L: Log>(
        &mut self,
        now_ms: u64,
        log: &mut L,
        error: FetchError,
        leader_log_start: Offset,
    ) -> FetchOutcome {
        match error {
            FetchError::FencedLeaderEpoch => self.fenced = true,
            FetchError::OffsetOutOfRange if log.log_end() < leader_log_start => {
                log.truncate_fully_and_start_at(leader_log_start);
                self.high_watermark = self.high_watermark.max(leader_log_start);
            }
            _ => {}
        }
        self.next_fetch_ms = now_ms + self.config.fetch_backoff_ms;
        FetchOutcome::Failed(error)
    }

    /// Kafka's `getOffsetTruncationState`: where the leader says the follower's last fetched
    /// epoch ends. When this log has that epoch, cut at the smaller of the two ends; when it
    /// does not (its largest epoch below is older), cut at the end of that older epoch here and
    /// ask again with it; when it knows no epoch that old, cut at the leader's end. Never past
    /// the own log end.
    pub(crate) fn truncate_diverging<L: Log>(
        &mut self,
        log: &mut L,
        leader: EpochEndOffset,
    ) -> Offset {
        let log_end = log.log_end();
        let local = log.epochs().end_offset_for(leader.epoch, log_end);
        let to = truncation_offset(leader, local, log_end);
        assert!(
            to >= self.high_watermark,
            "replica {:?} would truncate to {to:?}, below its high watermark {:?}",
            self.config.replica_id,
            self.high_watermark
        );
        log.truncate_to(to.max(log.log_start()));
        to
    }
}
