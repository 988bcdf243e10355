//! Where a follower's log leaves its leader's, as two pure rules shared by the leader and
//! follower of this crate and by sluice's broker (which keeps its epochs in its storage
//! engine): the leader's check of a follower's position (Kafka's `readRecords` divergence
//! check, answered as a Fetch's `DivergingEpoch`), and the follower's truncation point from
//! that answer (Kafka's `getOffsetTruncationState`).

use crate::types::{Epoch, EpochEndOffset, Offset};

/// The leader's answer to a follower at `fetch_offset` whose last record has epoch
/// `fetched_epoch`, given where that epoch ends on the leader's log (`leader_end`: the largest
/// epoch at most `fetched_epoch` there, and the first offset past it): `Some(leader_end)`,
/// the `DivergingEpoch`, when the leader's log has no such epoch or it ends before the fetch
/// offset; `None` when the position lies on the leader's log.
pub fn diverging_epoch(
    fetched_epoch: Epoch,
    fetch_offset: Offset,
    leader_end: EpochEndOffset,
) -> Option<EpochEndOffset> {
    (leader_end.epoch < fetched_epoch || leader_end.end_offset < fetch_offset).then_some(leader_end)
}

/// Where a follower cuts its log on the leader's `DivergingEpoch` `leader`, given where that
/// epoch ends on its own log (`local`, as `diverging_epoch`'s `leader_end`) and its log end:
/// when it has that epoch, at the smaller of the two ends; when its largest epoch below is
/// older, at the end of that older epoch here (the next Fetch asks again with it); when it
/// knows no epoch that old, at the leader's end. Never past its own log end.
pub fn truncation_offset(
    leader: EpochEndOffset,
    local: Option<EpochEndOffset>,
    log_end: Offset,
) -> Offset {
    match local {
        Some(local) if local.epoch == leader.epoch => local.end_offset.min(leader.end_offset),
        Some(local) => local.end_offset,
        None => leader.end_offset,
    }
    .min(log_end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(epoch: i32, end_offset: i64) -> EpochEndOffset {
        EpochEndOffset {
            epoch: Epoch(epoch),
            end_offset: Offset(end_offset),
        }
    }

    /// A position on the leader's log is not diverging; an epoch the leader lacks, or one
    /// that ends before the fetch offset there, is.
    #[test]
    fn diverging_positions() {
        assert_eq!(diverging_epoch(Epoch(3), Offset(10), end(3, 12)), None);
        assert_eq!(diverging_epoch(Epoch(3), Offset(12), end(3, 12)), None);
        assert_eq!(
            diverging_epoch(Epoch(3), Offset(13), end(3, 12)),
            Some(end(3, 12))
        );
        assert_eq!(
            diverging_epoch(Epoch(4), Offset(10), end(3, 12)),
            Some(end(3, 12))
        );
    }

    /// The same epoch cuts at the smaller end; an older local epoch at its own end; no local
    /// epoch at the leader's end; never past the log end.
    #[test]
    fn truncation_points() {
        assert_eq!(
            truncation_offset(end(3, 12), Some(end(3, 15)), Offset(20)),
            Offset(12)
        );
        assert_eq!(
            truncation_offset(end(3, 12), Some(end(3, 9)), Offset(20)),
            Offset(9)
        );
        assert_eq!(
            truncation_offset(end(3, 12), Some(end(2, 14)), Offset(20)),
            Offset(14)
        );
        assert_eq!(truncation_offset(end(3, 12), None, Offset(20)), Offset(12));
        assert_eq!(truncation_offset(end(3, 12), None, Offset(7)), Offset(7));
    }
}
