//! Idempotent-producer snapshots of a partition: loading the newest valid one on open (with
//! the transaction index files below it) and replaying the log after it into the producer
//! table and the transactions, reloading the table after a truncation, writing the snapshots a roll took once what they describe is
//! durable, and pruning (all but the newest `SNAPSHOTS_KEPT`, and any above the log end).

use std::path::Path;

use bytes::Bytes;
use sluice_net::record_batch::{self, RecordBatch, peek_batch_size};

use super::open::Scanned;
use super::{Partition, corrupt};
use crate::error::{Result, io_err};
use crate::io::{Storage, StorageFile, read_file, write_file_atomic};
use crate::limits::{SCAN_READ_BYTES, SNAPSHOTS_KEPT};
use crate::producer_state::{
    DecodedSnapshot, ProducerBatch, ProducerEvent, ProducerTable, last_sequence,
    parse_snapshot_name, snapshot_name,
};
use crate::segment::segment_file;
use crate::transactions::Transactions;

/// The producer batches and transaction markers of a segment from byte `pos` (a batch start)
/// to `limit`, for replaying the log into the producer table and the transactions on open:
/// data batches from their headers only, markers (control batches: small, never compressed)
/// read whole for their control record's type. The segment was checked by recovery, so
/// anything unparseable is corruption.
async fn read_producer_batches<F: StorageFile>(
    file: &F,
    path: &Path,
    mut pos: u64,
    limit: u64,
    chunk: usize,
) -> Result<Vec<ProducerEvent>> {
    let be = |b: &[u8], at: usize, n: usize| -> i64 {
        b[at..at + n]
            .iter()
            .fold(0i64, |acc, &x| (acc << 8) | i64::from(x))
    };
    let mut out = Vec::new();
    let mut buf = Bytes::new();
    let mut buf_pos = pos;
    while pos < limit {
        let at = (pos - buf_pos) as usize;
        if buf.len() < at + record_batch::HEADER_BYTES {
            let want = chunk
                .max(record_batch::HEADER_BYTES)
                .min((limit - pos) as usize);
            buf = file
                .read_at(pos, want)
                .await
                .map_err(io_err("read", path))?;
            buf_pos = pos;
            if buf.len() < record_batch::HEADER_BYTES {
                return Err(corrupt(path, pos, "short batch header"));
            }
            continue;
        }
        let h = &buf[at..at + record_batch::HEADER_BYTES];
        let size = match peek_batch_size(h) {
            Ok(Some(n)) if pos + n as u64 <= limit => n,
            _ => return Err(corrupt(path, pos, "bad batch header in producer replay")),
        };
        let base = be(h, 0, 8);
        let delta = be(h, 23, 4) as i32;
        let attributes = be(h, 21, 2);
        let pid = be(h, 43, 8);
        if pid >= 0 && attributes & 0x20 != 0 {
            let whole = if buf.len() >= at + size {
                buf.slice(at..at + size)
            } else {
                file.read_at(pos, size)
                    .await
                    .map_err(io_err("read", path))?
            };
            let b = RecordBatch::new(whole)
                .map_err(|e| corrupt(path, pos, format!("control batch: {e}")))?;
            out.extend(ProducerEvent::of(&b, base, b.max_timestamp()));
        } else if pid >= 0 && delta >= 0 {
            let first_seq = be(h, 53, 4) as i32;
            out.push(ProducerEvent::Data {
                pid,
                epoch: be(h, 51, 2) as i16,
                batch: ProducerBatch {
                    first_seq,
                    last_seq: last_sequence(first_seq, delta),
                    base_offset: base,
                    last_offset: base + i64::from(delta),
                    max_timestamp: be(h, 35, 8),
                },
                transactional: attributes & 0x10 != 0,
            });
        }
        pos += size as u64;
    }
    Ok(out)
}

impl<S: Storage> Partition<S> {
    /// Rebuilds the producer table and the transactions on open: the newest valid snapshot
    /// at or below the log end (with its open transactions) and the `.txnindex` files of the
    /// segments below it, then every batch and marker from its offset to the log end (all of
    /// the log if no snapshot is usable). Snapshots above the log end or failing their checks
    /// are removed with a warning. `scanned` holds the producer batches of segments recovery
    /// just read.
    pub(super) async fn load_producers(&self, names: &[String], scanned: &Scanned) -> Result<()> {
        let (from, table, mut txns) = self.rebuild_producers(names, scanned).await?;
        let aborted = self.load_txn_indexes(names, from).await?;
        let mut st = self.inner.state.borrow_mut();
        let st = &mut *st;
        for a in aborted.into_values() {
            txns.insert_aborted(a);
        }
        txns.high_watermark_moved(st.ends.high_watermark());
        txns.delete_before(st.log_start_offset);
        st.producers = table;
        st.txns = txns;
        Ok(())
    }

    /// The producer table and the transactions rebuilt as on open (newest snapshot at or
    /// below the log end, index files below it, the log after it), after a truncation (Kafka's
    /// `truncateAndReload`): a marker or a batch cut away may have changed an epoch or a
    /// coordinator epoch that only a replay restores, and a cut below the high watermark may
    /// reopen a transaction that `Transactions::truncate` no longer knows was unstable.
    pub(super) async fn reload_producers(&self) -> Result<()> {
        let inner = &*self.inner;
        let names = inner
            .storage
            .list_dir(&inner.dir)
            .await
            .map_err(io_err("list dir", &inner.dir))?;
        self.load_producers(&names, &Scanned::new()).await
    }

    /// The newest usable snapshot's offset (`i64::MIN` without one), and the producer table
    /// and transactions (open ones and those ended after it; no aborted ones from index
    /// files) it and the log after it give; producers expired at now are left out.
    async fn rebuild_producers(
        &self,
        names: &[String],
        scanned: &Scanned,
    ) -> Result<(i64, ProducerTable, Transactions)> {
        let inner = &*self.inner;
        let loaded = self.newest_snapshot(names).await?;
        let (from, mut table, open) =
            loaded.unwrap_or((i64::MIN, ProducerTable::default(), Vec::new()));
        let mut txns = Transactions::restored(open);
        // Expired producers are not loaded (as Kafka): dropped before the replay, so a later
        // batch of theirs in the log starts a fresh entry, and again after it.
        let now = inner.storage.now_ms();
        let expiration = inner.config.producer_id_expiration_ms;
        let mut expired = table.expire(now, expiration, &txns);
        for (base, pos, limit) in self.replay_segments(from) {
            let read;
            let events = match scanned.get(&base) {
                Some(list) => list,
                None => {
                    let Some(file) = self.segment_handle(base).await? else {
                        continue;
                    };
                    let path = segment_file(&inner.dir, base, "log");
                    let chunk = inner.shard_config.read_bytes_min.max(SCAN_READ_BYTES);
                    read = read_producer_batches(&*file, &path, pos, limit, chunk).await?;
                    &read
                }
            };
            for event in events.iter().filter(|e| e.offset() >= from) {
                table.replay_event(event);
                event.apply_to_transactions(&mut txns);
            }
        }
        expired += table.expire(now, expiration, &txns);
        tracing::debug!(
            partition = ?self,
            snapshot = from,
            producers = table.len(),
            expired,
            "producer state loaded"
        );
        Ok((from, table, txns))
    }

    /// Segments holding offsets at or after `from`, and where in each a replay starts and
    /// ends (bytes).
    fn replay_segments(&self, from: i64) -> Vec<(i64, u64, u64)> {
        let st = self.inner.state.borrow();
        st.segments
            .iter()
            .filter(|(_, s)| s.next_offset > from && s.file.exists() && s.written_bytes > 0)
            .map(|(&b, s)| {
                let rel = (from.max(b) - b).min(i64::from(u32::MAX)) as u32;
                (b, u64::from(s.index.position_for(rel)), s.written_bytes)
            })
            .collect()
    }

    /// The newest valid producer snapshot at or below the log end, as (offset, table, open
    /// transactions). Snapshots above the log end or failing their checks are removed with a
    /// warning; an unreadable one is skipped.
    async fn newest_snapshot(&self, names: &[String]) -> Result<Option<DecodedSnapshot>> {
        let inner = &*self.inner;
        let end = inner.state.borrow().ends.log_end();
        let mut offsets: Vec<i64> = names
            .iter()
            .filter_map(|n| parse_snapshot_name(n))
            .collect();
        offsets.sort_unstable_by(|a, b| b.cmp(a));
        let mut loaded = None;
        let mut doomed = Vec::new();
        for off in offsets {
            let path = inner.dir.join(snapshot_name(off));
            if off > end {
                tracing::warn!(
                    path = %path.display(),
                    log_end_offset = end,
                    "producer snapshot above the log end; removed"
                );
                doomed.push(path);
                continue;
            }
            let data = match read_file(&inner.storage, &path).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e,
                        "unreadable producer snapshot; trying an older one");
                    continue;
                }
            };
            match ProducerTable::decode_snapshot(&data) {
                Ok((o, table, open)) if o == off => {
                    loaded = Some((o, table, open));
                    break;
                }
                Ok((o, ..)) => {
                    tracing::warn!(path = %path.display(), offset = o,
                        "producer snapshot holds another offset than its name; removed");
                    doomed.push(path);
                }
                Err(detail) => {
                    tracing::warn!(path = %path.display(), %detail,
                        "corrupt producer snapshot; removed, trying an older one");
                    doomed.push(path);
                }
            }
        }
        for path in &doomed {
            match inner.storage.remove(path).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("remove snapshot", path)(e)),
            }
        }
        if !doomed.is_empty() {
            inner
                .storage
                .sync_dir(&inner.dir)
                .await
                .map_err(io_err("sync dir", &inner.dir))?;
        }
        Ok(loaded)
    }

    /// Writes the producer snapshots taken by rolls at or below `upto`, then prunes.
    pub(super) async fn write_pending_snapshots(&self, upto: i64) -> Result<()> {
        let inner = &*self.inner;
        let due: Vec<(i64, Vec<u8>)> = {
            let mut st = inner.state.borrow_mut();
            let (due, later) = std::mem::take(&mut st.pending_snapshots)
                .into_iter()
                .partition(|(o, _)| *o <= upto);
            st.pending_snapshots = later;
            due
        };
        if due.is_empty() {
            return Ok(());
        }
        for (offset, data) in due {
            self.write_snapshot(offset, &data).await?;
        }
        self.prune_snapshots(i64::MAX).await
    }

    pub(super) async fn write_snapshot(&self, offset: i64, data: &[u8]) -> Result<()> {
        let inner = &*self.inner;
        let path = inner.dir.join(snapshot_name(offset));
        write_file_atomic(&inner.storage, &path, data)
            .await
            .map_err(io_err("write producer snapshot", &path))
    }

    /// Removes producer snapshots above `above` and all but the newest [`SNAPSHOTS_KEPT`].
    pub(super) async fn prune_snapshots(&self, above: i64) -> Result<()> {
        let mut kept = 0;
        self.remove_snapshots(|off| {
            let keep = off <= above && kept < SNAPSHOTS_KEPT;
            kept += usize::from(keep);
            !keep
        })
        .await
    }

    /// Removes the producer snapshots, written or pending, at or below `offset` (compaction
    /// removed a transaction marker there: such a snapshot may hold its transaction open).
    pub(super) async fn drop_snapshots_through(&self, offset: i64) -> Result<()> {
        self.inner
            .state
            .borrow_mut()
            .pending_snapshots
            .retain(|(o, _)| *o > offset);
        self.remove_snapshots(|off| off <= offset).await
    }

    /// Removes the snapshot files for which `doomed` (called newest first) says so.
    async fn remove_snapshots(&self, mut doomed: impl FnMut(i64) -> bool) -> Result<()> {
        let inner = &*self.inner;
        let names = inner
            .storage
            .list_dir(&inner.dir)
            .await
            .map_err(io_err("list dir", &inner.dir))?;
        let mut offsets: Vec<i64> = names
            .iter()
            .filter_map(|n| parse_snapshot_name(n))
            .collect();
        offsets.sort_unstable_by(|a, b| b.cmp(a));
        let mut removed = false;
        for off in offsets {
            if !doomed(off) {
                continue;
            }
            let path = inner.dir.join(snapshot_name(off));
            match inner.storage.remove(&path).await {
                Ok(()) => removed = true,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("remove snapshot", &path)(e)),
            }
        }
        if removed {
            inner
                .storage
                .sync_dir(&inner.dir)
                .await
                .map_err(io_err("sync dir", &inner.dir))?;
        }
        Ok(())
    }
}
