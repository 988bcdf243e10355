//! Retention (`retention.ms`, `retention.bytes`): deleting the oldest closed segments and
//! moving the log start past them; and expiring idle idempotent producers.

use super::Partition;
use crate::error::Result;
use crate::io::Storage;
impl<S: Storage> Partition<S> {
    /// Applies `retention_ms` and `retention_bytes`: deletes the oldest closed segments that
    /// are too old or beyond the size budget, moving the log start offset past them. The
    /// active segment is never deleted. Returns the number of segments deleted.
    /// Also expires idle producers ([`Partition::expire_producers`]), so the housekeeping
    /// that drives retention bounds the producer table too.
    pub async fn enforce_retention(&self) -> Result<usize> {
        self.check_usable()?;
        self.expire_producers();
        let _g = self.inner.io_lock.lock().await;
        // Segments about to be deleted must not hold unwritten batches.
        self.flush_locked().await?;
        let inner = &*self.inner;
        let now = inner.storage.now_ms();
        let new_start = {
            let st = inner.state.borrow();
            let mut total: u64 = st.segments.values().map(|s| s.size_bytes).sum();
            let active = *st.segments.keys().next_back().expect("segment");
            let mut new_start = None;
            for (b, s) in &st.segments {
                if *b == active {
                    break;
                }
                let too_old = inner
                    .config
                    .retention_ms
                    .is_some_and(|r| s.max_timestamp < now - r);
                let too_big = inner
                    .config
                    .retention_bytes
                    .is_some_and(|r| total - s.size_bytes >= r);
                if !(too_old || too_big) || s.next_offset > st.ends.high_watermark() {
                    break;
                }
                total -= s.size_bytes;
                new_start = Some(s.next_offset);
            }
            new_start
        };
        let Some(new_start) = new_start else {
            return Ok(0);
        };
        let before = inner.state.borrow().segments.len();
        {
            let mut st = inner.state.borrow_mut();
            st.log_start_offset = st.log_start_offset.max(new_start);
            st.txns.delete_before(new_start);
        }
        self.write_meta().await?;
        self.remove_segments_below(new_start).await?;
        inner.cache.borrow_mut().remove_before(inner.id, new_start);
        Ok(before - inner.state.borrow().segments.len())
    }

    /// Forgets idempotent producers whose newest batch's `maxTimestamp` is
    /// `producer_id_expiration_ms` or more before now (Kafka's `producer.id.expiration.ms`);
    /// their next batch is accepted at any sequence. In memory only: the next snapshot (roll
    /// or close) leaves them out, and loading an older snapshot drops them again. Returns the
    /// number forgotten.
    pub fn expire_producers(&self) -> usize {
        let inner = &*self.inner;
        let now = inner.storage.now_ms();
        let n = {
            let mut st = inner.state.borrow_mut();
            let st = &mut *st;
            let expiration = inner.config.producer_id_expiration_ms;
            st.verifications.expire(now, expiration);
            st.producers.expire(now, expiration, &st.txns)
        };
        if n > 0 {
            tracing::debug!(partition = ?self, expired = n, "idle producers expired");
        }
        n
    }

    /// Idempotent producers the partition remembers now.
    pub fn producer_count(&self) -> usize {
        self.inner.state.borrow().producers.len()
    }
}
