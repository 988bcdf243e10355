//! The leader's side of a follower's Fetch (Kafka's `Partition.fetchRecords` for a follower
//! and `readRecords`): check the follower's leader epoch and identity, check that its position
//! (fetch offset and last fetched epoch) lies on the leader's log, else answer where its last
//! epoch ends here (`DivergingEpoch`); then read, note the follower's progress, maybe add it to
//! the ISR, maybe move the high watermark.
//!
//! What must stay true: a follower's progress is noted only for a position on the leader's
//! log (never with a diverging answer), so the high watermark counts only records the follower
//! holds as the leader does.

use crate::divergence::diverging_epoch;
use crate::leader::PartitionLeader;
use crate::log::Log;
use crate::message::{FetchError, FetchRequest, FetchResponse};
use crate::types::{EpochEndOffset, Offset};

impl PartitionLeader {
    /// Answers a follower's Fetch, at `now_ms`.
    pub fn handle_fetch<L: Log>(
        &mut self,
        now_ms: u64,
        log: &L,
        request: &FetchRequest,
    ) -> FetchResponse<L::Batch> {
        let mut response = FetchResponse {
            current_leader_epoch: request.current_leader_epoch,
            fetch_offset: request.fetch_offset,
            last_fetched_epoch: request.last_fetched_epoch,
            error: None,
            high_watermark: self.high_watermark,
            log_start_offset: log.log_start(),
            diverging_epoch: None,
            batches: Vec::new(),
        };
        if let Err(error) = self.check_follower(request) {
            response.error = Some(error);
            return response;
        }
        match check_position(log, request) {
            Err(error) => response.error = Some(error),
            Ok(Some(diverging)) => response.diverging_epoch = Some(diverging),
            Ok(None) => {
                // The log end before the read: appends after it do not keep the follower from
                // counting as caught up (Kafka reads `initialLogEndOffset` first).
                let leader_end = log.log_end();
                response.batches = log.read_from(
                    request.fetch_offset,
                    self.replicas.config().fetch_batches_max,
                );
                self.record_follower_fetch(now_ms, log, request, leader_end);
                response.high_watermark = self.high_watermark;
            }
        }
        response
    }

    /// Kafka's `checkCurrentLeaderEpoch`, `followerReplicaOrThrow` and the broker epoch fence
    /// of `updateFetchStateOrThrow`.
    fn check_follower(&self, request: &FetchRequest) -> Result<(), FetchError> {
        let leader_epoch = self.replicas.leader_epoch();
        if request.current_leader_epoch < leader_epoch {
            return Err(FetchError::FencedLeaderEpoch);
        }
        if request.current_leader_epoch > leader_epoch {
            return Err(FetchError::UnknownLeaderEpoch);
        }
        // A replica not (yet) in the assignment: UNKNOWN_LEADER_EPOCH makes it retry.
        if !self.replicas.is_follower(request.replica_id) {
            return Err(FetchError::UnknownLeaderEpoch);
        }
        if self
            .replicas
            .follower_broker_epoch(request.replica_id)
            .is_some_and(|known| request.replica_epoch < known)
        {
            return Err(FetchError::NotLeaderOrFollower);
        }
        Ok(())
    }

    /// Notes the follower's new position, then maybe expands the ISR and moves the high
    /// watermark (Kafka's `updateFollowerFetchState`).
    fn record_follower_fetch<L: Log>(
        &mut self,
        now_ms: u64,
        log: &L,
        request: &FetchRequest,
        leader_end: Offset,
    ) {
        let moved = self.replicas.record_fetch(
            now_ms,
            request.replica_id,
            (request.fetch_offset, request.log_start_offset),
            leader_end,
            request.replica_epoch,
            self.high_watermark,
        );
        self.send_alter_partitions();
        if moved == Some(true) {
            self.maybe_increment_high_watermark(now_ms, log);
        }
    }
}

/// Kafka's `readRecords` checks: with a last fetched epoch, that epoch must be known here
/// (else OFFSET_OUT_OF_RANGE), and the follower diverges when the leader's log has no such
/// epoch or it ends before the fetch offset; the fetch offset must lie within the log.
fn check_position<L: Log>(
    log: &L,
    request: &FetchRequest,
) -> Result<Option<EpochEndOffset>, FetchError> {
    let fetch_offset = request.fetch_offset;
    if let Some(fetched_epoch) = request.last_fetched_epoch {
        let end = log
            .epochs()
            .end_offset_for(fetched_epoch, log.log_end())
            .ok_or(FetchError::OffsetOutOfRange)?;
        if fetch_offset < log.log_start() {
            return Err(FetchError::OffsetOutOfRange);
        }
        if let Some(diverging) = diverging_epoch(fetched_epoch, fetch_offset, end) {
            return Ok(Some(diverging));
        }
    }
    if fetch_offset < log.log_start() || fetch_offset > log.log_end() {
        return Err(FetchError::OffsetOutOfRange);
    }
    Ok(None)
}
