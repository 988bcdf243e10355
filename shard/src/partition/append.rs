//! The append path: validating a Produce request's batches, checking idempotent-producer
//! sequences, assigning offsets and stamping the leader epoch in memory (rolling to a new
//! segment when the active one is full or old), then waiting for durability per the topic's
//! `Durability`.

use bytes::{Bytes, BytesMut};
use sluice_net::record_batch::{self, Batches, RecordBatch};

use super::{AppendInfo, LogState, Partition, TxnCheck};
use crate::cache::{BatchCache, CachedBatch};
use crate::config::Durability;
use crate::error::{Result, ShardError};
use crate::io::Storage;
use crate::producer_state::{
    ProducerBatch, ProducerEntry, ProducerEvent, ProducerTable, SeqCheck, last_sequence,
};
use crate::segment::Segment;
impl<S: Storage> Partition<S> {
    /// Appends one or more concatenated v2 batches (a Produce `records` field). Every batch is
    /// validated before anything is written; a bad batch rejects the whole call. Offsets are
    /// assigned by rewriting `baseOffset`; the current leader epoch is stamped. Returns per
    /// the partition's [`Durability`] (see [`Partition`]).
    pub async fn append(&self, records: Bytes) -> Result<AppendInfo> {
        self.append_checked(records, TxnCheck::Unchecked).await
    }

    /// [`Partition::append`] of a client's records with Kafka's transaction verification
    /// (`check`): a transactional batch that would open a transaction here must carry the
    /// producer's guard from [`Partition::start_verification`], else `NotInTransaction`.
    pub async fn append_checked(&self, records: Bytes, check: TxnCheck) -> Result<AppendInfo> {
        self.check_usable()?;
        let config = &self.inner.config;
        let rules = crate::validate::Rules {
            compact: config.compact,
            create_time: !config.log_append_time,
            before_max_ms: config.timestamp_before_max_ms,
            after_max_ms: config.timestamp_after_max_ms,
            decompressed_max: self.inner.shard_config.decompressed_batch_bytes_max,
        };
        let now_ms = self.inner.storage.now_ms();
        let mut batches = Vec::new();
        for (index, b) in Batches::new(records).enumerate() {
            let b = b.map_err(|source| ShardError::InvalidBatch { index, source })?;
            if b.size_bytes() > self.inner.config.batch_bytes_max {
                return Err(ShardError::BatchTooLarge {
                    size: b.size_bytes(),
                    max: self.inner.config.batch_bytes_max,
                });
            }
            b.validate()
                .map_err(|source| ShardError::InvalidBatch { index, source })?;
            crate::validate::check_shape(&b, index)?;
            crate::validate::check_records(
                &b,
                index,
                &rules,
                now_ms,
                &self.inner.topic,
                self.inner.partition,
            )?;
            batches.push(b);
        }
        if batches.is_empty() {
            return Err(ShardError::InvalidBatch {
                index: 0,
                source: record_batch::BatchError::Truncated {
                    needed: record_batch::HEADER_BYTES,
                    available: 0,
                },
            });
        }
        if let Durability::FlushInterval { .. } = self.inner.config.durability {
            // Bound memory: wait for room before adding more unwritten bytes.
            while self.inner.state.borrow().unwritten_bytes
                > self.inner.shard_config.unflushed_bytes_max
            {
                self.flush().await?;
            }
        }
        self.wait_while_truncating().await;
        self.check_usable()?;
        let appended =
            self.append_in_memory(&batches, |st| Self::check_producers(st, &batches, check))?;
        self.finish_append(appended).await
    }

    /// Starts the verification of `producer_id`'s transactional append (KIP-890): `None` when
    /// the producer has a transaction open here already at this epoch (its batches need no
    /// guard), else the guard to append with once the coordinator confirms the partition is
    /// in the transaction. An epoch below the producer's is refused (`InvalidProducerEpoch`).
    /// `first_sequence`: the batch's; while the verification is pending, a batch above the
    /// lowest one asked for is refused as out of order (Kafka's rule), so the producer's
    /// batches sent together open the transaction in their order. `epoch_bump`: the producer
    /// is of transaction version 2.
    pub fn start_verification(
        &self,
        (producer_id, producer_epoch): (i64, i16),
        first_sequence: i32,
        epoch_bump: bool,
    ) -> Result<Option<u64>> {
        let now = self.inner.storage.now_ms();
        let mut st = self.inner.state.borrow_mut();
        let current = st.producers.get(producer_id).map(|e| e.epoch);
        if let Some(current_epoch) = current.filter(|&e| producer_epoch < e) {
            return Err(ShardError::InvalidProducerEpoch {
                producer_id,
                epoch: producer_epoch,
                current_epoch,
            });
        }
        if st.txns.is_open(producer_id) && current == Some(producer_epoch) {
            return Ok(None);
        }
        let guard = st.verifications.start(
            (producer_id, producer_epoch),
            first_sequence,
            epoch_bump,
            now,
        );
        Ok(Some(guard))
    }

    /// After an append in memory (`(info, append number, new leader epoch)`): wakes readers,
    /// saves a new leader epoch, and waits for durability per the partition's [`Durability`].
    pub(super) async fn finish_append(
        &self,
        (info, seq, new_epoch): (AppendInfo, u64, bool),
    ) -> Result<AppendInfo> {
        self.inner.appended.notify_all();
        if new_epoch {
            self.save_leader_epochs().await?;
        }
        match self.inner.config.durability {
            Durability::SyncEachAppend => self.sync_to(seq).await?,
            Durability::FlushInterval { .. } => {}
        }
        Ok(info)
    }

    /// Checks idempotent-producer sequences for the whole request without changing anything
    /// (the caller records the batches one by one as it assigns their offsets), and Kafka's
    /// transaction rule: a producer with an open transaction may send transactional batches
    /// only (`InvalidTxnState`).
    fn check_producers(
        st: &LogState<S::File>,
        batches: &[RecordBatch],
        check: TxnCheck,
    ) -> Result<()> {
        // (producer id, entry as the request leaves it, open transaction after it).
        let mut touched: Vec<(i64, ProducerEntry, bool)> = Vec::new();
        let mut next = st.ends.log_end();
        for b in batches {
            let base = next;
            next = base + i64::from(b.last_offset_delta()) + 1;
            let pid = b.producer_id();
            if pid < 0 {
                continue;
            }
            let epoch = b.producer_epoch();
            let first_seq = b.base_sequence();
            let last_seq = last_sequence(first_seq, b.last_offset_delta());
            let i = match touched.iter().position(|(p, ..)| *p == pid) {
                Some(i) => i,
                None => {
                    let entry = st.producers.get(pid).cloned().unwrap_or_default();
                    touched.push((pid, entry, st.txns.is_open(pid)));
                    touched.len() - 1
                }
            };
            let known = st.producers.get(pid).is_some() || !touched[i].1.batches.is_empty();
            let entry = known.then_some(&touched[i].1);
            let seq = ProducerTable::check(entry, epoch, first_seq, last_seq);
            // Kafka's order: a duplicate, an older epoch, the verification guard, then the
            // sequence.
            if !matches!(seq, SeqCheck::OutOfOrder { .. }) {
                seq_result(seq, pid, epoch, first_seq)?;
            }
            if let TxnCheck::Guard(guard) = check
                && b.is_transactional()
                && !touched[i].2
                && !st.verifications.holds(pid, guard)
            {
                return Err(ShardError::NotInTransaction { producer_id: pid });
            }
            // Kafka's `checkSequence`: while a verification is pending, a batch above the
            // lowest sequence it was asked for is out of order (the lower one comes first).
            if let Some(lowest) = st.verifications.lowest_sequence(pid)
                && first_seq > lowest
                && !touched[i].2
            {
                return Err(ShardError::OutOfOrderSequence {
                    producer_id: pid,
                    expected: lowest,
                    received: first_seq,
                });
            }
            seq_result(seq, pid, epoch, first_seq)?;
            // Kafka's `appendDataBatch`: checked after the sequence.
            if touched[i].2 && !b.is_transactional() {
                return Err(ShardError::InvalidTxnState { producer_id: pid });
            }
            touched[i].2 |= b.is_transactional();
            ProducerTable::record(
                &mut touched[i].1,
                epoch,
                ProducerBatch {
                    first_seq,
                    last_seq,
                    base_offset: base,
                    last_offset: next - 1,
                    max_timestamp: b.max_timestamp(),
                },
            );
        }
        Ok(())
    }

    /// Appends batches in memory at the log end once `check` passes on the state as it is
    /// then; with the append's number and whether it opened a new leader epoch in the cache.
    pub(super) fn append_in_memory(
        &self,
        batches: &[RecordBatch],
        check: impl FnOnce(&LogState<S::File>) -> Result<()>,
    ) -> Result<(AppendInfo, u64, bool)> {
        let inner = &*self.inner;
        let now = inner.storage.now_ms();
        let mut st = inner.state.borrow_mut();
        let st = &mut *st;
        check(st)?;
        let base_offset = st.ends.log_end();
        let epoch = st.leader_epoch;
        let new_epoch = st.leader_epochs.last().is_none_or(|e| e.0 < epoch);
        if new_epoch {
            st.leader_epochs.push((epoch, base_offset));
        }
        st.append_seq += 1;
        let seq = st.append_seq;
        let mut cache = inner.cache.borrow_mut();
        for b in batches {
            let base = st.ends.log_end();
            let (bytes, max_timestamp) = self.stamp_batch(b, base, epoch, now);
            self.append_batch(st, &mut cache, (b, base), bytes, max_timestamp, now);
        }
        if let Durability::FlushInterval { .. } = inner.config.durability {
            st.advance_committed(&inner.config.durability);
        }
        let info = AppendInfo {
            base_offset,
            last_offset: st.ends.log_end() - 1,
            log_append_time_ms: if inner.config.log_append_time {
                now
            } else {
                -1
            },
            log_start_offset: st.log_start_offset,
        };
        Ok((info, seq, new_epoch))
    }

    /// Adds one checked batch at offset `base`, in memory, as `bytes` (the batch as stored,
    /// with its `max_timestamp`): in a new segment if the active one is due to roll, recorded
    /// for its producer and its transaction, indexed, cached and queued for the next flush. `base` is the log end,
    /// or past it on a follower copying a leader whose compaction left a gap there
    /// (`append_replicated`, which has made recovery accept the gap first): the active
    /// segment then covers the gap, as a compacted segment covers the offsets it lost.
    pub(super) fn append_batch(
        &self,
        st: &mut LogState<S::File>,
        cache: &mut BatchCache,
        (b, base): (&RecordBatch, i64),
        bytes: Bytes,
        max_timestamp: i64,
        now: i64,
    ) {
        let inner = &*self.inner;
        assert!(base >= st.ends.log_end(), "offsets must increase");
        if base > st.ends.log_end() {
            let (_, active) = st.segments.iter_mut().next_back().expect("segment");
            active.next_offset = base;
            st.ends.advance_log_end(base);
        }
        let last = base + i64::from(b.last_offset_delta());
        assert!(last >= base, "offset range must not be empty");
        let size = b.size_bytes() as u64;
        if self.roll_due(st, b, base, now) {
            // The producer state as of the new segment's base: every batch below it is
            // recorded, none at or above. Written when the segment's file is created.
            let snapshot = st.producers.encode_snapshot(base, &st.txns);
            st.pending_snapshots.push((base, snapshot));
            st.segments.insert(base, Segment::new(base, now));
        }
        if let Some(event) = ProducerEvent::of(b, base, max_timestamp) {
            st.producers.apply(&event);
            event.apply_to_transactions(&mut st.txns);
            if b.is_transactional() {
                let control = b.is_control();
                st.verifications
                    .appended(b.producer_id(), b.producer_epoch(), control);
            }
        }
        let (&seg_base, active) = st.segments.iter_mut().next_back().expect("segment");
        assert!(active.next_offset == base, "offsets must be contiguous");
        let position = active.size_bytes;
        active.max_timestamp = active.max_timestamp.max(max_timestamp);
        active.index.on_batch(
            (base - seg_base) as u32,
            position as u32,
            size,
            active.max_timestamp,
            inner.config.index_interval_bytes,
        );
        active.index_dirty = true;
        active.size_bytes += size;
        active.next_offset = last + 1;
        let cached = CachedBatch {
            base_offset: base,
            last_offset: last,
            bytes,
        };
        cache.insert(inner.id, cached.clone());
        st.unwritten_bytes += size as usize;
        st.unwritten.push_back(cached);
        st.unwritten_segment.push_back(seg_base);
        st.ends.advance_log_end(last + 1);
    }

    /// The batch as stored: `baseOffset` and the leader epoch rewritten, and on LogAppendTime
    /// topics the append time stamped; with its `maxTimestamp`.
    fn stamp_batch(&self, b: &RecordBatch, base: i64, epoch: i32, now: i64) -> (Bytes, i64) {
        let mut buf = BytesMut::from(&b.bytes()[..]);
        record_batch::set_base_offset(&mut buf, base);
        record_batch::set_partition_leader_epoch(&mut buf, epoch);
        let max_timestamp = if self.inner.config.log_append_time {
            record_batch::set_log_append_time(&mut buf, now);
            now
        } else {
            b.max_timestamp()
        };
        (buf.freeze(), max_timestamp)
    }

    /// Whether batch `b`, to be appended at `base`, starts a new segment: the active one is
    /// not empty and would pass `segment.bytes`, is `segment.ms` old, or its 32-bit relative
    /// offsets or positions would overflow.
    fn roll_due(&self, st: &LogState<S::File>, b: &RecordBatch, base: i64, now: i64) -> bool {
        let config = &self.inner.config;
        let size = b.size_bytes() as u64;
        let (_, active) = st.segments.iter().next_back().expect("a log has a segment");
        active.size_bytes > 0
            && (active.size_bytes + size > config.segment_bytes
                || now - active.created_ms >= config.segment_ms
                || base - active.base_offset + i64::from(b.last_offset_delta())
                    > i64::from(u32::MAX)
                || active.size_bytes + size > u64::from(u32::MAX))
    }
}

/// A sequence check's outcome as the append's error.
fn seq_result(seq: SeqCheck, producer_id: i64, epoch: i16, first_seq: i32) -> Result<()> {
    match seq {
        SeqCheck::Accept => Ok(()),
        SeqCheck::Duplicate {
            base_offset,
            last_offset,
        } => Err(ShardError::DuplicateSequence {
            producer_id,
            base_offset,
            last_offset,
        }),
        SeqCheck::OutOfOrder { expected } => Err(ShardError::OutOfOrderSequence {
            producer_id,
            expected,
            received: first_seq,
        }),
        SeqCheck::Fenced { current_epoch } => Err(ShardError::InvalidProducerEpoch {
            producer_id,
            epoch,
            current_epoch,
        }),
    }
}
