//! The partitions this core owns, as a service: partition ops and fetch's read-or-wait.
//!
//! [`LocalPartitions`] runs what other cores (and this one, through the router) ask of the
//! partitions this core owns. It takes the shard and the stop signal, nothing more, and answers
//! with plain data; failures stay typed ([`PartError`]) until the response edge.
//!
//! A fetch's long poll is one [`FetchOnCore`] per owning core: it reads, and when the reads
//! found too little, parks one wait for an append past what it read on any of its partitions,
//! its timeout, the broker's stop or a cancel; then it reads again and answers. Nothing stays
//! parked after it answers, and the asking fetch cancels the waits it no longer needs.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use glommio::channels::local_channel::{self, LocalSender};
use sluice_net::record_batch::{RecordBatch, TimestampType};
use sluice_shard::{AppendInfo, DmaStorage, ReadResult, Shard, ShardError};

use crate::messages::{
    Addressed, FetchOnCore, FetchRead, PartError, PartitionOp, PartitionOpResult, ReplicaRead,
    TxnAppend, WaitId,
};
use crate::replication::{FollowerFetch, Replication, epoch_end};
use crate::stop::StopSignal;

type Partition = sluice_shard::Partition<DmaStorage>;

/// This core's partitions and the fetch waits parked on them.
pub struct LocalPartitions {
    core: usize,
    pub shard: Rc<Shard>,
    /// Partitions this core owns that failed to open, with the storage error: requests for
    /// them get KAFKA_STORAGE_ERROR with that text instead of a retriable "not hosted here".
    pub unopened: RefCell<HashMap<(String, i32), String>>,
    /// Parked fetch waits, by id: a send ends the wait.
    waits: RefCell<HashMap<WaitId, LocalSender<()>>>,
    /// Fetch waits parked right now (a gauge).
    parked: Cell<usize>,
    /// Leaders' and followers' replication state of this core's partitions.
    pub replication: Replication,
}

impl std::fmt::Debug for LocalPartitions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalPartitions")
            .field("core", &self.core)
            .finish()
    }
}

/// The error for a partition the storage engine failed on, with its offsets now.
fn storage(p: &Partition, error: ShardError) -> PartError {
    PartError::Storage {
        error,
        offsets: p.offsets(),
    }
}

impl LocalPartitions {
    pub fn new(core: usize, node: i32, shard: Rc<Shard>) -> LocalPartitions {
        LocalPartitions {
            core,
            shard,
            unopened: RefCell::new(HashMap::new()),
            waits: RefCell::new(HashMap::new()),
            parked: Cell::new(0),
            replication: Replication::new(node),
        }
    }

    /// Fetch waits parked on this core right now.
    pub fn parked_waits(&self) -> usize {
        self.parked.get()
    }

    fn partition(&self, topic: &str, partition: i32) -> Result<Partition, PartError> {
        self.shard.partition(topic, partition).ok_or_else(|| {
            match self.unopened.borrow().get(&(topic.to_owned(), partition)) {
                Some(why) => PartError::Unopened(why.clone()),
                None => PartError::NotHosted,
            }
        })
    }

    /// Runs ops on partitions this core owns, concurrently; results in the order of `ops`.
    /// Each op is a detached task, so it runs to its end even when the request waiting for it
    /// is dropped (a connection cancelled by a bounded shutdown): storage work is never cut
    /// off half way.
    pub async fn run(self: &Rc<Self>, ops: Vec<Addressed>) -> Vec<PartitionOpResult> {
        let tasks: Vec<_> = ops
            .into_iter()
            .map(|a| {
                let failed = a.op.failure();
                let this = Rc::clone(self);
                let task = glommio::spawn_local(async move { this.run_one(a).await }).detach();
                (task, failed)
            })
            .collect();
        let mut out = Vec::with_capacity(tasks.len());
        for (task, failed) in tasks {
            out.push(
                task.await
                    .unwrap_or_else(|| failed(PartError::CoreGone(self.core))),
            );
        }
        out
    }

    /// The verification guard a Produce append goes with (KIP-890), or the answer instead of
    /// appending: the guard to ask the coordinator about, or a refusal.
    fn txn_guard(&self, p: &Partition, txn: TxnAppend) -> Result<Option<u64>, PartitionOpResult> {
        let leader_epoch = self.replication.epoch_of(p.topic(), p.partition());
        match txn {
            TxnAppend::Start { producer: None, .. } => Ok(None),
            TxnAppend::Start {
                producer: Some((producer_id, producer_epoch)),
                first_sequence,
                epoch_bump,
            } => {
                let producer = (producer_id, producer_epoch);
                match p.start_verification(producer, first_sequence, epoch_bump) {
                    Ok(Some(guard)) => Err(PartitionOpResult::Verify {
                        guard,
                        producer_id,
                        producer_epoch,
                        leader_epoch,
                    }),
                    Ok(None) => Ok(None),
                    Err(e) => Err(PartitionOpResult::Appended(Err(storage(p, e)))),
                }
            }
            // Leadership moved while the coordinator was asked.
            TxnAppend::Verified {
                leader_epoch: then, ..
            } if then != leader_epoch => {
                Err(PartitionOpResult::Appended(Err(PartError::NotLeader)))
            }
            TxnAppend::Verified { guard, .. } => Ok(guard),
        }
    }

    async fn run_one(&self, a: Addressed) -> PartitionOpResult {
        let p = match self.partition(&a.topic, a.partition) {
            Ok(p) => p,
            Err(e) => return a.op.failure()(e),
        };
        match a.op {
            PartitionOp::Append {
                records,
                acks_all,
                txn,
            } => {
                let guard = match self.txn_guard(&p, txn) {
                    Ok(guard) => guard,
                    Err(answer) => return answer,
                };
                PartitionOpResult::Appended(self.append(&p, records, acks_all, guard).await)
            }
            PartitionOp::Offsets => PartitionOpResult::Offsets(Ok(p.offsets())),
            PartitionOp::Describe => {
                PartitionOpResult::Described(Ok((p.offsets(), p.size_bytes())))
            }
            PartitionOp::MaxTimestamp => PartitionOpResult::MaxTimestamp(max_timestamp(&p).await),
            PartitionOp::OffsetForTimestamp { timestamp_ms } => {
                PartitionOpResult::OffsetForTimestamp(
                    p.offset_for_timestamp(timestamp_ms)
                        .await
                        .map_err(|e| storage(&p, e)),
                )
            }
            PartitionOp::DeleteRecordsBefore { offset } => {
                PartitionOpResult::DeletedRecords(delete_records(&p, &a.topic, offset).await)
            }
            PartitionOp::EpochEnd { epoch } => {
                PartitionOpResult::EpochEnd(Ok(p.end_offset_for_epoch(epoch)))
            }
            PartitionOp::StableOffsets => {
                PartitionOpResult::StableOffsets(Ok((p.offsets(), p.last_stable_offset())))
            }
            PartitionOp::WriteMarker {
                producer_id,
                producer_epoch,
                marker,
                transaction_version,
            } => PartitionOpResult::MarkerWritten(
                self.write_marker(
                    &p,
                    (producer_id, producer_epoch),
                    marker,
                    transaction_version,
                )
                .await,
            ),
        }
    }

    /// Fetch's reads on this core, and its wait when they found too little (see the module
    /// docs). The wait is registered before the first await, so a cancel sent after this
    /// request always finds it.
    pub async fn fetch(
        self: &Rc<Self>,
        request: FetchOnCore,
        stop: &StopSignal,
    ) -> Vec<Result<ReadResult, PartError>> {
        let Some((id, timeout)) = request.wait else {
            return self.read_all(&request.reads, request.max_bytes).await;
        };
        let (tx, rx) = local_channel::new_bounded::<()>(1);
        self.waits.borrow_mut().insert(id, tx);
        let _registered = Registered {
            partitions: self,
            id,
        };
        let reads = self.read_all(&request.reads, request.max_bytes).await;
        let found: usize = reads
            .iter()
            .map(|r| {
                r.as_ref()
                    .map_or(0, |rr| rr.batches.iter().map(Bytes::len).sum())
            })
            .sum();
        if found >= request.min_bytes.max(1)
            || reads.iter().any(Result::is_err)
            || stop.is_stopping()
        {
            return reads;
        }
        let waits: Vec<_> = request
            .reads
            .iter()
            .zip(&reads)
            .filter_map(|(want, read)| {
                let read = read.as_ref().ok()?;
                let p = self.shard.partition(&want.topic, want.partition)?;
                // `wait_for_append(x)` returns once offset x exists: wait for the first offset
                // this fetch has not seen (a follower reads to the log end).
                Some(if want.replica.is_some() {
                    let after = read.log_end_offset.max(want.offset);
                    Box::pin(async move { p.wait_for_log_end(after).await })
                        as Pin<Box<dyn Future<Output = ()>>>
                } else if want.committed {
                    let after = read.last_stable_offset.max(want.offset);
                    Box::pin(async move { p.wait_for_stable(after).await })
                        as Pin<Box<dyn Future<Output = ()>>>
                } else {
                    let after = read.high_watermark.max(want.offset);
                    Box::pin(async move { p.wait_for_append(after).await })
                })
            })
            .collect();
        self.parked.set(self.parked.get() + 1);
        futures_lite::future::or(
            futures_lite::future::or(AnyOf(waits), glommio::timer::sleep(timeout)),
            futures_lite::future::or(
                async {
                    let _ = rx.recv().await;
                },
                stop.stopped(),
            ),
        )
        .await;
        self.parked.set(self.parked.get() - 1);
        self.read_all(&request.reads, request.max_bytes).await
    }

    /// Ends a parked fetch wait (no-op if it has answered already).
    pub fn cancel_wait(&self, id: WaitId) {
        if let Some(tx) = self.waits.borrow_mut().remove(&id) {
            let _ = tx.try_send(());
        }
    }

    /// Reads each partition within the fetch's `max_bytes` as Kafka does: in request order,
    /// each consumer read at most its own limit and what the reads before it left (the first
    /// batch of the first read is whole). The reads run concurrently a wave at a time: the next
    /// reads whose limits fit in what is left. Consumer reads past the budget answer their
    /// offsets only, so a fetch of many partitions does not read a window of each from disk
    /// just to drop it. Follower reads always run (each records the follower's position).
    /// Results in the order of `reads`.
    async fn read_all(
        self: &Rc<Self>,
        reads: &[FetchRead],
        max_bytes: usize,
    ) -> Vec<Result<ReadResult, PartError>> {
        let mut out = Vec::with_capacity(reads.len());
        let mut left = max_bytes.max(1);
        while out.len() < reads.len() {
            let start = out.len();
            let (mut end, mut sum) = (start, 0usize);
            let mut wave = Vec::new();
            while let Some(r) = reads.get(end) {
                let mut r = r.clone();
                if r.replica.is_none() {
                    let limit = r.max_bytes.min(left);
                    if end > start && sum + limit > left {
                        break;
                    }
                    sum += limit;
                    // 0 only past the budget (a partition limit of 0 still takes the first
                    // batch, as a read always does).
                    r.max_bytes = if left == 0 { 0 } else { limit.max(1) };
                }
                end += 1;
                wave.push(r);
            }
            for res in self.read_wave(&wave).await {
                if let Ok(rr) = &res {
                    let got: usize = rr.batches.iter().map(Bytes::len).sum();
                    left = left.saturating_sub(got);
                }
                out.push(res);
            }
        }
        out
    }

    /// One wave of [`LocalPartitions::read_all`], concurrently; results in the order of
    /// `reads`. Reads change nothing, so they run in tasks that are cancelled with their
    /// caller.
    async fn read_wave(self: &Rc<Self>, reads: &[FetchRead]) -> Vec<Result<ReadResult, PartError>> {
        if let [one] = reads {
            return vec![self.read(one).await];
        }
        let tasks: Vec<_> = reads
            .iter()
            .map(|r| {
                let this = Rc::clone(self);
                let r = r.clone();
                glommio::spawn_local(async move { this.read(&r).await })
            })
            .collect();
        let mut out = Vec::with_capacity(tasks.len());
        for task in tasks {
            out.push(task.await);
        }
        out
    }

    async fn read(&self, r: &FetchRead) -> Result<ReadResult, PartError> {
        let p = self.partition(&r.topic, r.partition)?;
        let Some(replica) = r.replica else {
            if r.max_bytes == 0 {
                // Past the fetch's budget: the partition's offsets, no batches.
                return p.position(r.offset).map_err(|e| storage(&p, e));
            }
            let read = if r.committed {
                p.read_committed(r.offset, r.max_bytes).await
            } else {
                p.read(r.offset, r.max_bytes).await
            };
            // A consumer behind the cache: read its next window while this answer travels.
            if p.read_ahead_wanted() {
                let p = p.clone();
                glommio::spawn_local(async move { p.read_ahead().await }).detach();
            }
            return read.map_err(|e| storage(&p, e));
        };
        self.follower_read(&p, r.offset, r.max_bytes, replica).await
    }

    /// A follower's Fetch of `p` at `offset` (its log end), which this broker leads, as
    /// Kafka's leader answers it: `Diverging` when the follower's last fetched epoch ends
    /// before `offset` in this log (or is not in it), else its position is recorded (moving
    /// the high watermark) and the batches from `offset` up to the log end are read.
    async fn follower_read(
        &self,
        p: &Partition,
        offset: i64,
        max_bytes: usize,
        replica: ReplicaRead,
    ) -> Result<ReadResult, PartError> {
        if replica.last_fetched_epoch >= 0
            && let Some((epoch, end_offset)) = p.end_offset_for_epoch(replica.last_fetched_epoch)
            && let Some(diverging) = sluice_replication::diverging_epoch(
                sluice_replication::Epoch(replica.last_fetched_epoch),
                sluice_replication::Offset(offset),
                epoch_end(epoch, end_offset),
            )
        {
            return Err(PartError::Diverging {
                epoch: diverging.epoch.0,
                end_offset: diverging.end_offset.0,
                offsets: p.offsets(),
            });
        }
        let offsets = p.offsets();
        if offset < offsets.log_start_offset || offset > offsets.log_end_offset {
            return Err(storage(
                p,
                ShardError::OffsetOutOfRange {
                    offset,
                    log_start_offset: offsets.log_start_offset,
                    log_end_offset: offsets.log_end_offset,
                },
            ));
        }
        let fetch = FollowerFetch {
            replica: replica.replica,
            broker_epoch: replica.broker_epoch,
            fetch_offset: offset,
            log_start_offset: replica.log_start_offset,
        };
        self.replication
            .follower_fetched(p, fetch, crate::replication::now_ms())
            .map_err(|_| PartError::NotLeader)?;
        p.read_to_log_end(offset, max_bytes)
            .await
            .map_err(|e| storage(p, e))
    }

    /// Appends a produce to `p`; with acks=all, refuses it first when the ISR is below
    /// `min.insync.replicas` (NOT_ENOUGH_REPLICAS) and answers once the high watermark passes
    /// it, or REQUEST_TIMED_OUT after `acks_all` (the request's timeout).
    async fn append(
        &self,
        p: &Partition,
        records: Bytes,
        acks_all: Option<Duration>,
        guard: Option<u64>,
    ) -> Result<AppendInfo, PartError> {
        let Some(timeout) = acks_all else {
            return append(p, records, guard).await;
        };
        if let Some((isr, min_isr)) = self.replication.isr_of(p.topic(), p.partition())
            && isr < min_isr
        {
            return Err(PartError::NotEnoughReplicas {
                topic: p.topic().to_owned(),
                partition: p.partition(),
                isr,
                min_isr,
            });
        }
        let epoch = self.replication.epoch_of(p.topic(), p.partition());
        let info = append(p, records, guard).await?;
        self.replicated(p, info, epoch, timeout).await
    }

    /// Appends a transaction marker for the coordinator and answers once the in-sync
    /// replicas have it (Kafka writes markers with acks=all).
    async fn write_marker(
        &self,
        p: &Partition,
        (producer_id, producer_epoch): (i64, i16),
        marker: sluice_shard::Marker,
        transaction_version: i8,
    ) -> Result<AppendInfo, PartError> {
        let epoch = self.replication.epoch_of(p.topic(), p.partition());
        let info = p
            .append_marker_versioned(producer_id, producer_epoch, marker, transaction_version)
            .await
            .map_err(|e| storage(p, e))?;
        self.replicated(p, info, epoch, crate::limits::MARKER_REPLICATION_TIMEOUT)
            .await
    }

    /// Waits until the high watermark passes `info` (appended as leader in replication epoch
    /// `epoch`), as acks=all: NOT_LEADER_OR_FOLLOWER if leadership moved or the record left
    /// the log meanwhile, NOT_ENOUGH_REPLICAS_AFTER_APPEND if the ISR shrank below
    /// `min.insync.replicas`, REQUEST_TIMED_OUT after `timeout`.
    async fn replicated(
        &self,
        p: &Partition,
        info: AppendInfo,
        epoch: Option<i32>,
        timeout: Duration,
    ) -> Result<AppendInfo, PartError> {
        let stamped = p.leader_epochs().last().map_or(-1, |e| e.0);
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let woken = futures_lite::future::or(
                async {
                    p.wait_for_append(info.last_offset).await;
                    true
                },
                async {
                    glommio::timer::sleep(left).await;
                    false
                },
            )
            .await;
            // Leadership moved, or the partition closed: checked before the high watermark,
            // which may now be another leader's (this replica may have truncated the record
            // where its log left the new leader's and fetched other records there).
            if !p.is_open() || self.replication.epoch_of(p.topic(), p.partition()) != epoch {
                return Err(PartError::NotLeader);
            }
            if p.offsets().high_watermark > info.last_offset {
                // And the record is still this log's, in the epoch it was written in.
                let kept = p
                    .end_offset_for_epoch(stamped)
                    .is_some_and(|(e, end)| e == stamped && end > info.last_offset);
                if !kept {
                    return Err(PartError::NotLeader);
                }
                // Kafka's `checkEnoughReplicasReachOffset`: the high watermark passed the
                // batch, but a shrink since left the maximal ISR under min.insync.replicas.
                let enough = self.replication.enough_replicas(p.topic(), p.partition());
                return if enough == Some(false) {
                    Err(PartError::NotEnoughReplicasAfterAppend)
                } else {
                    Ok(info)
                };
            }
            if !woken {
                return Err(PartError::TimedOut);
            }
        }
    }
}

/// Removes a fetch wait from the registry however its request ends.
struct Registered<'a> {
    partitions: &'a LocalPartitions,
    id: WaitId,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.partitions.waits.borrow_mut().remove(&self.id);
    }
}

/// Resolves when any of its futures does (never, when it has none).
struct AnyOf(Vec<Pin<Box<dyn Future<Output = ()>>>>);

impl Future for AnyOf {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        for f in &mut self.0 {
            if f.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    }
}

/// Appends a client's records, checked as KIP-890 asks (`guard`: see [`TxnAppend`]).
async fn append(
    p: &Partition,
    records: Bytes,
    guard: Option<u64>,
) -> Result<AppendInfo, PartError> {
    match p
        .append_checked(records, sluice_shard::TxnCheck::Guard(guard))
        .await
    {
        Ok(info) => Ok(info),
        // A retried batch the log already has: Kafka answers success with the offsets the
        // first attempt got, so the producer moves on without a duplicate.
        Err(ShardError::DuplicateSequence {
            base_offset,
            last_offset,
            ..
        }) => Ok(AppendInfo {
            base_offset,
            last_offset,
            log_append_time_ms: -1,
            log_start_offset: p.offsets().log_start_offset,
        }),
        Err(e) => Err(storage(p, e)),
    }
}

async fn delete_records(p: &Partition, topic: &str, offset: i64) -> Result<i64, PartError> {
    let high_watermark = p.offsets().high_watermark;
    let target = if offset == -1 { high_watermark } else { offset };
    if target < 0 || target > high_watermark {
        return Err(PartError::DeleteBeyondHighWatermark {
            topic: topic.to_owned(),
            partition: p.partition(),
            target,
            high_watermark,
        });
    }
    p.delete_records_before(target)
        .await
        .map_err(|e| storage(p, e))
}

/// The first record holding the partition's largest timestamp, found by reading every batch
/// header from the log start (the storage engine keeps no per-segment maximum yet, so this
/// costs a read of the whole log). Within the winning batch the records are walked to find the
/// first one with that timestamp; a compressed batch answers its base offset, since sluice
/// does not decompress batches.
async fn max_timestamp(p: &Partition) -> Result<Option<(i64, i64)>, PartError> {
    let mut offset = p.offsets().log_start_offset;
    let mut best: Option<(i64, Bytes)> = None;
    loop {
        let read = p
            .read(offset, crate::limits::MAX_TIMESTAMP_READ_BYTES)
            .await
            .map_err(|error| storage(p, error))?;
        if read.batches.is_empty() {
            break;
        }
        for b in read.batches {
            let Ok(batch) = RecordBatch::new(b.clone()) else {
                continue;
            };
            if best
                .as_ref()
                .is_none_or(|(ts, _)| batch.max_timestamp() > *ts)
            {
                best = Some((batch.max_timestamp(), b));
            }
            offset = batch.last_offset() + 1;
        }
    }
    let Some((ts, bytes)) = best else {
        return Ok(None);
    };
    let Ok(batch) = RecordBatch::new(bytes) else {
        return Ok(None);
    };
    if batch.timestamp_type() == TimestampType::LogAppendTime {
        return Ok(Some((batch.base_offset(), ts)));
    }
    if let Ok(records) = batch.records() {
        for r in records.flatten() {
            if batch.base_timestamp() + r.timestamp_delta == ts {
                return Ok(Some((batch.base_offset() + i64::from(r.offset_delta), ts)));
            }
        }
    }
    Ok(Some((batch.base_offset(), ts)))
}
