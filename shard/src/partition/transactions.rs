//! Transactions on the partition (issue 23): transaction markers as the coordinator's
//! WriteTxnMarkers appends them (Kafka's `appendEndTxnMarker` checks), the last stable offset,
//! what DescribeProducers answers, and the `.txnindex` files of the segments (see
//! `txn_index.rs`).

use std::collections::BTreeMap;

use sluice_net::record_batch::RecordBatch;

use super::{AppendInfo, LogState, Partition, ProducerStateInfo};
use crate::error::{Result, ShardError, io_err};
use crate::io::{Storage, read_file, write_file_atomic};
use crate::segment::segment_file;
use crate::transactions::{AbortedTxn, Marker, marker_batch};
use crate::txn_index::{self, TXN_INDEX_EXT, parse_txn_index_name};

impl<S: Storage> Partition<S> {
    /// Appends the transaction marker `marker` of `producer_id` at `producer_epoch` (a control
    /// batch, `marker_batch`), as the transaction coordinator's WriteTxnMarkers does: no
    /// sequence check; refused with `InvalidProducerEpoch` when `producer_epoch` is below the
    /// producer's epoch, and with `TransactionCoordinatorFenced` when the marker's coordinator
    /// epoch is below the one of the producer's last marker. The marker ends the producer's
    /// open transaction (an ABORT enters the transaction index) and updates its entry: a
    /// newer epoch (transaction version 2 bumps it) restarts its sequence at 0, the same
    /// epoch keeps it going. Durable when `append` would be. This is the check of transaction
    /// versions 0 and 1; [`Partition::append_marker_versioned`] takes the version.
    pub async fn append_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        marker: Marker,
    ) -> Result<AppendInfo> {
        self.append_marker_versioned(producer_id, producer_epoch, marker, 0)
            .await
    }

    /// [`Partition::append_marker`] for a marker of transaction version `transaction_version`
    /// (WriteTxnMarkers v2's field, KIP-1228; 0 for older requests). From version 2 the
    /// coordinator sends the bumped epoch, so Kafka 4.4 also refuses a marker at the
    /// producer's current epoch while it has an open transaction (unless the epoch is
    /// `i16::MAX`, which cannot be bumped).
    pub async fn append_marker_versioned(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        marker: Marker,
        transaction_version: i8,
    ) -> Result<AppendInfo> {
        self.check_usable()?;
        assert!(producer_id >= 0, "a marker needs a producer id");
        let now = self.inner.storage.now_ms();
        let bytes = marker_batch(producer_id, producer_epoch, marker, now);
        let batch = match RecordBatch::new(bytes) {
            Ok(b) => b,
            Err(e) => panic!("a marker batch we built does not parse: {e}"),
        };
        self.wait_while_truncating().await;
        self.check_usable()?;
        let check = |st: &LogState<S::File>| {
            check_marker(st, producer_id, producer_epoch, marker, transaction_version)
        };
        let appended = self.append_in_memory(std::slice::from_ref(&batch), check)?;
        self.finish_append(appended).await
    }

    /// The last stable offset: the first offset of the oldest transaction that is open or
    /// whose marker the high watermark has not passed, or the high watermark if smaller.
    pub fn last_stable_offset(&self) -> i64 {
        self.inner.state.borrow().last_stable_offset()
    }

    /// The first offset of `producer_id`'s open transaction here, if it has one.
    pub fn open_transaction(&self, producer_id: i64) -> Option<i64> {
        self.inner
            .state
            .borrow()
            .txns
            .open_first_offset(producer_id)
    }

    /// Every producer the partition remembers, by producer id (Kafka's DescribeProducers).
    pub fn producer_states(&self) -> Vec<ProducerStateInfo> {
        let st = self.inner.state.borrow();
        let mut out: Vec<ProducerStateInfo> = st
            .producers
            .iter()
            .map(|(pid, e)| ProducerStateInfo {
                producer_id: pid,
                producer_epoch: e.epoch,
                last_sequence: e.last_sequence(),
                last_timestamp: e.last_timestamp(),
                coordinator_epoch: e.coordinator_epoch,
                current_txn_start_offset: st.txns.open_first_offset(pid).unwrap_or(-1),
            })
            .collect();
        out.sort_unstable_by_key(|p| p.producer_id);
        out
    }

    /// The aborted transactions of the whole log, oldest marker first (for tests and
    /// checks: what read_committed reads are answered from).
    pub fn aborted_transactions(&self) -> Vec<AbortedTxn> {
        self.inner.state.borrow().txns.aborted().copied().collect()
    }

    /// Writes segment `base`'s `.txnindex` with the aborted transactions whose marker lies in
    /// `[base, end)`, or removes it when there are none (nothing is done when there are none
    /// and it has no file).
    pub(super) async fn write_txn_index(&self, base: i64, end: i64) -> Result<()> {
        let inner = &*self.inner;
        let (entries, had_file) = {
            let st = inner.state.borrow();
            let had = st.segments.get(&base).is_some_and(|s| s.txn_index);
            (st.txns.aborted_in(base..end), had)
        };
        let path = segment_file(&inner.dir, base, TXN_INDEX_EXT);
        if entries.is_empty() {
            if !had_file {
                return Ok(());
            }
            match inner.storage.remove(&path).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("remove transaction index", &path)(e)),
            }
            inner
                .storage
                .sync_dir(&inner.dir)
                .await
                .map_err(io_err("sync dir", &inner.dir))?;
        } else {
            write_file_atomic(&inner.storage, &path, &txn_index::encode(base, &entries))
                .await
                .map_err(io_err("write transaction index", &path))?;
        }
        if let Some(seg) = inner.state.borrow_mut().segments.get_mut(&base) {
            seg.txn_index = !entries.is_empty();
        }
        Ok(())
    }

    /// The aborted transactions the `.txnindex` files in `names` hold with a marker below
    /// `below` and at or past the log start, by marker offset. A damaged file is skipped
    /// with a warning: its entries are then missing from read_committed answers (Kafka
    /// rebuilds a damaged index by recovering its segment; here a fresh replay would, see
    /// the report of issue 23).
    pub(super) async fn load_txn_indexes(
        &self,
        names: &[String],
        below: i64,
    ) -> Result<BTreeMap<i64, AbortedTxn>> {
        let inner = &*self.inner;
        let (log_start, bases) = {
            let st = inner.state.borrow();
            let bases: Vec<i64> = st.segments.keys().copied().collect();
            (st.log_start_offset, bases)
        };
        let mut out = BTreeMap::new();
        for base in names.iter().filter_map(|n| parse_txn_index_name(n)) {
            // Every segment with a file knows it, so a later rewrite removes it when empty.
            if bases.binary_search(&base).is_ok() {
                let mut st = inner.state.borrow_mut();
                if let Some(seg) = st.segments.get_mut(&base) {
                    seg.txn_index = true;
                }
            }
            if base >= below {
                continue;
            }
            let path = segment_file(&inner.dir, base, TXN_INDEX_EXT);
            let data = read_file(&inner.storage, &path)
                .await
                .map_err(io_err("read transaction index", &path))?;
            match txn_index::decode(&data) {
                Ok((_, entries)) => {
                    for a in entries {
                        if a.last_offset < below && a.last_offset >= log_start {
                            out.insert(a.last_offset, a);
                        }
                    }
                }
                Err(detail) => {
                    tracing::warn!(path = %path.display(), %detail,
                        "corrupt transaction index; its entries are ignored");
                }
            }
        }
        Ok(out)
    }
}

/// Kafka's checks of a marker from the coordinator (`checkProducerEpoch` with the transaction
/// version, then `checkCoordinatorEpoch`) against the producer's entry; a producer unknown
/// here is not checked.
fn check_marker<F>(
    st: &LogState<F>,
    producer_id: i64,
    epoch: i16,
    marker: Marker,
    transaction_version: i8,
) -> Result<()> {
    let Some(e) = st.producers.get(producer_id) else {
        return Ok(());
    };
    let fenced = if transaction_version >= 2 {
        epoch < e.epoch || (epoch == e.epoch && st.txns.is_open(producer_id) && epoch != i16::MAX)
    } else {
        epoch < e.epoch
    };
    if fenced {
        return Err(ShardError::InvalidProducerEpoch {
            producer_id,
            epoch,
            current_epoch: e.epoch,
        });
    }
    if marker.coordinator_epoch < e.coordinator_epoch {
        return Err(ShardError::TransactionCoordinatorFenced {
            producer_id,
            coordinator_epoch: marker.coordinator_epoch,
            current_coordinator_epoch: e.coordinator_epoch,
        });
    }
    Ok(())
}
