//! One core's transaction coordinator: the `sluice_txn::Coordinator` of the
//! `__transaction_state` partitions this core leads, and the I/O its effects ask for.
//!
//! A call ([`TxnHost::serve`]) first makes sure its partition is loaded in the partition's
//! current leader epoch (the coordinator epoch): the records are read from the log start to
//! the log end and replayed (`finish_load`), and transactions left in Prepare resume their
//! markers. Then the coordinator decides; its effects are carried out here: `Answer` wakes the
//! request waiting for it, `Append` appends one record to the partition and waits until the
//! in-sync replicas have it (acks=all) before reporting back, `WriteMarkers` writes the control
//! batches ([`super::markers`]). Follow-up effects are carried out the same way.
//!
//! Producer ids: the coordinator needs one at once (InitProducerId, a TV2 epoch overflow), so
//! the host keeps a few taken from the control core beforehand.
//!
//! Concurrency: the coordinator sits in a `RefCell` borrowed only between awaits; a request
//! waits on a one-slot channel for its answer, which the coordinator guarantees exactly once.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use glommio::channels::local_channel::{self, LocalSender};
use glommio::sync::Semaphore;
use sluice_net::ErrorCode;
use sluice_net::record_batch::RecordBatch;
use sluice_shard::Shard;
use sluice_txn::{
    Answer, Append, Config, Coordinator, Effect, ListFilter, ProducerIdSource, RequestId,
};

use super::TXN_TOPIC;
use super::calls::{TxnCall, TxnReply};
use crate::image::TopicImage;
use crate::limits::OFFSETS_REPLAY_READ_BYTES;
use crate::messages::{CoreReply, CoreRequest};
use crate::router::{CONTROL_CORE, Router};

/// Producer ids kept at hand.
const IDS_AT_HAND: usize = 2;
/// How often timed-out transactions are aborted (Kafka's
/// `transaction.abort.timed.out.transaction.cleanup.interval.ms`).
const ABORT_TIMED_OUT_EVERY: Duration = Duration::from_secs(10);
/// How often idle transactional ids are expired (Kafka's
/// `transaction.remove.expired.transaction.cleanup.interval.ms`).
const EXPIRE_IDS_EVERY: Duration = Duration::from_secs(3600);
/// How often the host checks that it still leads what it loaded.
const TICK: Duration = Duration::from_secs(1);

/// What the coordinator's work needs of the core it runs on, as handles (spawned appends and
/// marker writes keep a copy), so this module does not depend on the core itself.
#[derive(Clone)]
pub struct Env {
    /// This core's index.
    pub id: usize,
    pub node_id: i32,
    pub txn: Rc<TxnHost>,
    pub shard: Rc<Shard>,
    pub router: Rc<Router>,
    /// The core's topic image now.
    pub image: Rc<dyn Fn() -> Rc<TopicImage>>,
    /// Whether the broker is stopping.
    pub is_stopping: Rc<dyn Fn() -> bool>,
}

impl Env {
    pub fn topics(&self) -> Rc<TopicImage> {
        (self.image)()
    }

    fn stopping(&self) -> bool {
        (self.is_stopping)()
    }
}

/// Producer ids taken from the control core ahead of need.
struct Ids<'a>(&'a RefCell<VecDeque<i64>>);

impl ProducerIdSource for Ids<'_> {
    fn next_producer_id(&mut self) -> Result<i64, ErrorCode> {
        self.0
            .borrow_mut()
            .pop_front()
            .ok_or(ErrorCode::COORDINATOR_LOAD_IN_PROGRESS)
    }
}

/// One core's transaction coordinator (see the module docs).
pub struct TxnHost {
    coordinator: RefCell<Coordinator>,
    /// Requests waiting for their answer, by request id.
    waiting: RefCell<HashMap<u64, LocalSender<Answer>>>,
    next_request: Cell<u64>,
    /// `__transaction_state` partitions loaded (or loading) here, with their coordinator epoch.
    loaded: RefCell<HashMap<i32, i32>>,
    /// One load at a time.
    load_lock: Semaphore,
    ids: RefCell<VecDeque<i64>>,
}

impl std::fmt::Debug for TxnHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxnHost")
            .field("loaded", &self.loaded.borrow().len())
            .finish()
    }
}

fn now_ms() -> i64 {
    crate::registry::now_ms()
}

impl TxnHost {
    pub fn new(config: Config) -> TxnHost {
        TxnHost {
            coordinator: RefCell::new(Coordinator::new(config)),
            waiting: RefCell::new(HashMap::new()),
            next_request: Cell::new(1),
            loaded: RefCell::new(HashMap::new()),
            load_lock: Semaphore::new(1),
            ids: RefCell::new(VecDeque::new()),
        }
    }

    /// Answers `call` for an id of `partition` on this core.
    pub async fn serve(core: &Env, partition: i32, call: TxnCall) -> TxnReply {
        let host = &core.txn;
        host.drop_lost(core);
        if partition >= 0
            && let Err(e) = host.ensure_loaded(core, partition).await
        {
            return TxnReply::Failed(e);
        }
        let now = now_ms();
        match call {
            TxnCall::Verify {
                transactional_id,
                producer_id,
                producer_epoch,
                partitions,
            } => TxnReply::Verified(host.coordinator.borrow().verify_partitions(
                &transactional_id,
                producer_id,
                producer_epoch,
                &partitions,
            )),
            TxnCall::Describe(id) => TxnReply::Described(host.coordinator.borrow().describe(&id)),
            TxnCall::List {
                states,
                producer_ids,
                duration_ms,
                pattern,
            } => {
                let pattern = super::calls::id_pattern(pattern.as_deref()).ok().flatten();
                let matches = |id: &str| pattern.as_ref().is_none_or(|p| p.is_match(id));
                let filter = ListFilter {
                    states,
                    producer_ids: producer_ids.into_iter().collect::<BTreeSet<i64>>(),
                    duration_ms,
                    id_matches: Some(&matches),
                };
                TxnReply::Listed(host.coordinator.borrow().list(&filter, now))
            }
            call => match host.request(core, call).await {
                Some(answer) => TxnReply::Answer(answer),
                None => TxnReply::Failed(ErrorCode::COORDINATOR_NOT_AVAILABLE),
            },
        }
    }

    /// Hands a state-changing call to the coordinator and waits for its answer.
    async fn request(&self, core: &Env, call: TxnCall) -> Option<Answer> {
        self.top_up_ids(core).await;
        let id = self.next_request.get();
        self.next_request.set(id + 1);
        let (tx, rx) = local_channel::new_bounded(1);
        self.waiting.borrow_mut().insert(id, tx);
        let request = RequestId(id);
        let now = now_ms();
        let effects = {
            let mut c = self.coordinator.borrow_mut();
            let mut ids = Ids(&self.ids);
            match &call {
                TxnCall::Init(r) => c.init_producer_id(request, r, now, &mut ids),
                TxnCall::Add(r) => c.add_partitions(request, r, now),
                TxnCall::AddOffsets(r) => c.add_offsets(request, r, now),
                TxnCall::End(r) => c.end_txn(request, r, now, &mut ids),
                _ => unreachable!("answered at once by serve"),
            }
        };
        run_effects(core, effects);
        let answer = rx.recv().await;
        self.waiting.borrow_mut().remove(&id);
        answer
    }

    /// Takes producer ids from the control core until [`IDS_AT_HAND`] are at hand.
    async fn top_up_ids(&self, core: &Env) {
        while self.ids.borrow().len() < IDS_AT_HAND {
            match core
                .router
                .call(CONTROL_CORE, CoreRequest::AllocateProducerId)
                .await
            {
                Ok(CoreReply::ProducerId(Ok(id))) => self.ids.borrow_mut().push_back(id),
                _ => return,
            }
        }
    }

    /// The leader epoch of `partition` if this core leads it now.
    fn led_epoch(core: &Env, partition: i32) -> Option<i32> {
        let table = core.topics();
        if table.core_for(TXN_TOPIC, partition) != Some(core.id) {
            return None;
        }
        table
            .partition(TXN_TOPIC, partition)
            .map(|s| s.leader_epoch)
    }

    /// Forgets loaded partitions this core no longer leads in the epoch they were loaded in.
    fn drop_lost(&self, core: &Env) {
        let lost: Vec<(i32, i32)> = self
            .loaded
            .borrow()
            .iter()
            .filter(|&(&p, &epoch)| Self::led_epoch(core, p) != Some(epoch))
            .map(|(&p, &e)| (p, e))
            .collect();
        for (p, epoch) in lost {
            tracing::info!(
                partition = p,
                epoch,
                "__transaction_state partition unloaded"
            );
            self.loaded.borrow_mut().remove(&p);
            self.coordinator.borrow_mut().unload(p, Some(epoch));
        }
    }

    /// Loads every `__transaction_state` partition this core leads and has not loaded in its
    /// current leader epoch, as Kafka's coordinator does on becoming leader: transactions
    /// left in Prepare finish and open ones time out without waiting for a request.
    async fn load_led(&self, core: &Env) {
        let count = core
            .topics()
            .topics()
            .get(TXN_TOPIC)
            .map_or(0, |t| t.partitions);
        for p in 0..count {
            let due = Self::led_epoch(core, p)
                .is_some_and(|epoch| self.loaded.borrow().get(&p) != Some(&epoch));
            if due {
                let _ = self.ensure_loaded(core, p).await;
            }
        }
    }

    /// Loads `partition` in its current leader epoch unless it is loaded in it already.
    async fn ensure_loaded(&self, core: &Env, partition: i32) -> Result<(), ErrorCode> {
        let epoch = Self::led_epoch(core, partition).ok_or(ErrorCode::NOT_COORDINATOR)?;
        if self.loaded.borrow().get(&partition) == Some(&epoch) {
            return Ok(());
        }
        let _turn = self
            .load_lock
            .acquire_permit(1)
            .await
            .map_err(|_| ErrorCode::COORDINATOR_NOT_AVAILABLE)?;
        if self.loaded.borrow().get(&partition) == Some(&epoch) {
            return Ok(());
        }
        self.coordinator.borrow_mut().begin_load(partition, epoch);
        self.loaded.borrow_mut().insert(partition, epoch);
        let records = match read_records(core, partition).await {
            Ok(r) => r,
            Err(e) => {
                self.loaded.borrow_mut().remove(&partition);
                self.coordinator.borrow_mut().unload(partition, Some(epoch));
                return Err(e);
            }
        };
        let refs = records.iter().map(|(k, v)| (&k[..], v.as_deref()));
        let loaded = self
            .coordinator
            .borrow_mut()
            .finish_load(partition, epoch, refs, now_ms());
        match loaded {
            Ok(effects) => {
                tracing::info!(
                    partition,
                    epoch,
                    records = records.len(),
                    "__transaction_state partition loaded"
                );
                run_effects(core, effects);
                Ok(())
            }
            Err(e) => {
                tracing::error!(partition, error = ?e, "cannot load __transaction_state");
                self.loaded.borrow_mut().remove(&partition);
                self.coordinator.borrow_mut().unload(partition, Some(epoch));
                Err(ErrorCode::COORDINATOR_NOT_AVAILABLE)
            }
        }
    }

    /// The periodic work: drop what is no longer led, abort timed-out transactions (every
    /// 10 s) and expire idle ids (hourly). Runs until the broker stops.
    pub async fn run_timers(core: Env) {
        let host = &core.txn;
        let mut last_abort = std::time::Instant::now();
        let mut last_expire = std::time::Instant::now();
        while !core.stopping() {
            glommio::timer::sleep(TICK).await;
            host.drop_lost(&core);
            host.load_led(&core).await;
            if host.loaded.borrow().is_empty() {
                continue;
            }
            if last_abort.elapsed() >= ABORT_TIMED_OUT_EVERY {
                last_abort = std::time::Instant::now();
                host.top_up_ids(&core).await;
                let effects = {
                    let mut ids = Ids(&host.ids);
                    host.coordinator
                        .borrow_mut()
                        .abort_timed_out(now_ms(), &mut ids)
                };
                run_effects(&core, effects);
            }
            if last_expire.elapsed() >= EXPIRE_IDS_EVERY {
                last_expire = std::time::Instant::now();
                let effects = host
                    .coordinator
                    .borrow_mut()
                    .expire_transactional_ids(now_ms());
                run_effects(&core, effects);
            }
        }
    }
}

/// Carries out the coordinator's effects (see the module docs).
pub fn run_effects(core: &Env, effects: Vec<Effect>) {
    for effect in effects {
        match effect {
            Effect::Answer { request, answer } => {
                if let Some(tx) = core.txn.waiting.borrow_mut().remove(&request.0) {
                    let _ = tx.try_send(answer);
                }
            }
            Effect::Append(a) => {
                let core = core.clone();
                glommio::spawn_local(async move { append(&core, a).await }).detach();
            }
            Effect::WriteMarkers(m) => {
                let core = core.clone();
                glommio::spawn_local(async move {
                    let from = super::markers::From {
                        router: &core.router,
                        node_id: core.node_id,
                    };
                    let results = super::markers::write(&from, &core.topics(), &m).await;
                    markers_done(&core, &m.transactional_id, m.coordinator_epoch, &results);
                })
                .detach();
            }
        }
    }
}

/// Appends one coordinator record (acks=all) and reports the outcome to the coordinator.
async fn append(core: &Env, a: Append) {
    let led = TxnHost::led_epoch(core, a.partition) == Some(a.coordinator_epoch);
    let result = match core.shard.partition(TXN_TOPIC, a.partition) {
        Some(log) if led => {
            let record = (Bytes::from(a.key), a.value.map(Bytes::from));
            crate::groups::journal::append_records(&log, TXN_TOPIC, &[record], a.timestamp_ms)
                .await
                .map(|_| ())
                .map_err(|c| ErrorCode::from_code(c).unwrap_or(ErrorCode::UNKNOWN_SERVER_ERROR))
        }
        _ => Err(ErrorCode::NOT_LEADER_OR_FOLLOWER),
    };
    if let Err(e) = result {
        tracing::warn!(partition = a.partition, error = %e, "__transaction_state append failed");
    }
    let effects = core
        .txn
        .coordinator
        .borrow_mut()
        .append_done(a.write, result, now_ms());
    run_effects(core, effects);
}

/// Reports how markers went to the coordinator.
fn markers_done(
    core: &Env,
    transactional_id: &str,
    coordinator_epoch: i32,
    results: &[(sluice_txn::TopicPartition, sluice_txn::MarkerResult)],
) {
    let effects = core.txn.coordinator.borrow_mut().markers_written(
        transactional_id,
        coordinator_epoch,
        results,
        now_ms(),
    );
    run_effects(core, effects);
}

/// Every record of `partition`, from its log start to its log end (a new leader's high
/// watermark may still be below records its predecessor acknowledged, as for groups).
async fn read_records(
    core: &Env,
    partition: i32,
) -> Result<Vec<(Bytes, Option<Bytes>)>, ErrorCode> {
    let log = core
        .shard
        .partition(TXN_TOPIC, partition)
        .ok_or(ErrorCode::NOT_COORDINATOR)?;
    let mut next = log.offsets().log_start_offset;
    let mut out = Vec::new();
    let failed = |e: &dyn std::fmt::Display| {
        tracing::error!(partition, error = %e, "reading __transaction_state failed");
        ErrorCode::COORDINATOR_NOT_AVAILABLE
    };
    loop {
        let read = log
            .read_to_log_end(next, OFFSETS_REPLAY_READ_BYTES)
            .await
            .map_err(|e| failed(&e))?;
        if read.batches.is_empty() {
            return Ok(out);
        }
        for raw in read.batches {
            let batch = RecordBatch::new(raw).map_err(|e| failed(&e))?;
            next = batch.last_offset() + 1;
            if batch.is_control() {
                continue;
            }
            for record in batch.records().map_err(|e| failed(&e))? {
                let record = record.map_err(|e| failed(&e))?;
                if let Some(key) = record.key {
                    out.push((key, record.value));
                }
            }
        }
        glommio::yield_if_needed().await;
    }
}
