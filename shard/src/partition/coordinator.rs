//! What the broker's coordinators need of a partition beyond a client's append: appending
//! their own batches (Kafka's `AppendOrigin.COORDINATOR`), and waiting for the last stable
//! offset to move (a read_committed fetch's long poll).

use bytes::Bytes;
use sluice_net::record_batch::RecordBatch;

use super::{AppendInfo, LogState, Partition, whole_batches};
use crate::error::{Result, ShardError};
use crate::io::Storage;

impl<S: Storage> Partition<S> {
    /// Appends batches a coordinator of this broker wrote (the group coordinator's
    /// transactional offset commits in `__consumer_offsets`), as Kafka appends with origin
    /// COORDINATOR: framing and CRC are checked, a producer's epoch is fenced as for any
    /// append, but neither the client's record rules nor sequences apply (the coordinator
    /// writes each TxnOffsetCommit at sequence 0). Transactional batches open their
    /// producer's transaction here like any other. Durable when `append` would be.
    pub async fn append_from_coordinator(&self, records: Bytes) -> Result<AppendInfo> {
        self.check_usable()?;
        let batches = whole_batches(records)?;
        self.wait_while_truncating().await;
        self.check_usable()?;
        let appended = self.append_in_memory(&batches, |st| check_epochs(st, &batches))?;
        self.finish_append(appended).await
    }

    /// Waits until the last stable offset passes `after_offset` (or the partition closes or
    /// fails): a read_committed consumer's long poll. Checked whenever the high watermark or
    /// the log end moves, which is all that moves the last stable offset.
    pub async fn wait_for_stable(&self, after_offset: i64) {
        self.wait_until(|st| st.last_stable_offset() > after_offset || !st.usable())
            .await;
    }
}

/// Kafka's epoch fence for a coordinator's batch: a batch below its producer's epoch is
/// refused.
fn check_epochs<F>(st: &LogState<F>, batches: &[RecordBatch]) -> Result<()> {
    for b in batches.iter().filter(|b| b.producer_id() >= 0) {
        if let Some(e) = st.producers.get(b.producer_id())
            && b.producer_epoch() < e.epoch
        {
            return Err(ShardError::InvalidProducerEpoch {
                producer_id: b.producer_id(),
                epoch: b.producer_epoch(),
                current_epoch: e.epoch,
            });
        }
    }
    Ok(())
}
