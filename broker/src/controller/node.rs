//! The controller shard's quorum node: the sans-IO replica with what carries out its effects.
//!
//! Everything here runs on the controller shard's one thread, so the node sits in an
//! `Rc<RefCell<_>>` and every borrow ends before an `.await`. An input (a tick, an inbound
//! request, an answer from a peer) goes in with [`Node::tick`] or [`Node::receive`]; the effects
//! it causes are carried out at once and in order: the quorum state is written (before any
//! message that depends on it leaves), requests go to the peers' queues, and the answer to the
//! inbound request, if any, is handed back to the connection that brought it.
//!
//! Snapshots (KIP-630): once the committed metadata records applied since the last snapshot
//! pass `snapshot_bytes_max` bytes, the node snapshots its image at the applied offset
//! (`sluice_controller::snapshot::encode_snapshot`), hands it to the replica
//! (`Replica::snapshot_taken`, which has the log keep it as a `.checkpoint` file) and drops
//! the log below it (`Replica::delete_before_snapshot`). `Effect::LoadSnapshot` (at start-up
//! from the newest checkpoint, or after a follower installs one fetched from the leader)
//! replaces the image with the snapshot's; the entries after it are applied as usual.

use std::collections::HashMap;

use bytes::Bytes;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::channels::shared_channel::ConnectedSender;
use sluice_controller::snapshot::{encode_snapshot, load_image};
use sluice_controller::{Controller, ControllerConfig, MetadataImage, Proposal};
use sluice_net::ApiKey;
use sluice_net::metadata_record::VersionedRecord;
use sluice_quorum::{
    Effect, Epoch, Log, Message, NodeId, Offset, OffsetAndEpoch, Payload, QuorumState, Replica,
    RoleKind,
};

/// What persists the quorum state (the `quorum-state` file); it must be durable when it
/// returns, since a vote may leave right after.
pub type Persist = Box<dyn FnMut(&QuorumState) -> std::io::Result<()>>;

/// A log that stamps its batches with wall-clock time (Kafka's CreateTime), set before each
/// input since the replica passes only its own monotonic clock.
pub trait Stamped {
    fn set_now_ms(&mut self, now_ms: i64);
}

impl Stamped for sluice_controller::FileLog {
    fn set_now_ms(&mut self, now_ms: i64) {
        sluice_controller::FileLog::set_now_ms(self, now_ms);
    }
}

/// One voter of the controller quorum, with its outbound queues.
pub struct Node<L: Log> {
    pub replica: Replica<L>,
    /// Requests to each other voter, sent by its peer task.
    pub peers: HashMap<NodeId, LocalSender<Message>>,
    persist: Persist,
    /// Entries below this are committed and were handed to the state machine.
    pub applied: Offset,
    /// Requests dropped because a peer's queue was full (the protocol resends).
    pub dropped: u64,
    /// The role, epoch and leader last logged.
    seen: (RoleKind, Epoch, Option<NodeId>),
    /// What the committed records built, up to `image_end`.
    pub image: MetadataImage,
    /// The next log offset to apply to the image.
    image_end: Offset,
    /// The active controller's decisions, while this node leads and has applied everything
    /// committed before its epoch.
    pub controller: Option<Controller>,
    controller_config: ControllerConfig,
    seed: u64,
    now_ms: u64,
    /// Answers waiting for their records to commit: (offset that must commit, whom to tell).
    /// Dropped (closing each receiver) when this node stops being the active controller.
    waits: Vec<(i64, LocalSender<()>)>,
    /// Where new images go (to the control core of this node's data cores), if anywhere.
    pub publish: Option<ConnectedSender<MetadataImage>>,
    /// The image changed since it was last published.
    pub unpublished: bool,
    /// A snapshot is taken once the records applied since the last one pass this many bytes
    /// (Kafka's `metadata.log.max.record.bytes.between.snapshots`).
    pub snapshot_bytes_max: u64,
    /// Bytes of the records applied to the image since the last snapshot (or start-up).
    bytes_since_snapshot: u64,
}

impl<L: Log + Stamped> Node<L> {
    /// A node around `replica`; `persist` writes the quorum state.
    pub fn new(
        replica: Replica<L>,
        persist: Persist,
        controller_config: ControllerConfig,
        seed: u64,
    ) -> Node<L> {
        Node {
            image: MetadataImage::empty(),
            image_end: Offset(0),
            controller: None,
            controller_config,
            seed,
            now_ms: 0,
            waits: Vec::new(),
            publish: None,
            unpublished: false,
            snapshot_bytes_max: super::SNAPSHOT_BYTES_MAX_DEFAULT,
            bytes_since_snapshot: 0,
            replica,
            peers: HashMap::new(),
            persist,
            applied: Offset(0),
            dropped: 0,
            seen: (RoleKind::Unattached, Epoch(-1), None),
        }
    }

    /// Advances the clock; carries out what it causes.
    pub fn tick(&mut self, now_ms: u64) -> std::io::Result<()> {
        self.now_ms = now_ms;
        self.set_log_clock();
        self.replica.tick(now_ms);
        self.carry_out(None)?;
        // Sessions expire on the active controller's clock: fence the silent brokers.
        if let Some(controller) = self.controller.as_mut() {
            let fenced = controller.tick(now_ms);
            if !fenced.reply.is_empty() {
                tracing::info!(brokers = ?fenced.reply, "fencing brokers whose session expired");
            }
            if self.propose_records(&fenced.records)
                && let Some(controller) = self.controller.as_mut()
            {
                // Kafka's periodic `electPreferred`: empty until due.
                let rebalance = controller.rebalance_leaders(now_ms);
                if rebalance.reply > 0 {
                    let elected = rebalance.reply;
                    tracing::info!(elected, "leader rebalance: preferred replicas lead again");
                }
                self.propose_records(&rebalance.records);
            }
        }
        self.carry_out(None).map(|_| ())
    }

    /// Proposes a decision's records in order and returns what resolves once they (or, with
    /// none, everything proposed before) are committed; `None`, or a receiver that closes,
    /// when this node is not or stops being the active controller.
    pub fn propose<T>(&mut self, proposal: &Proposal<T>) -> Option<LocalReceiver<()>> {
        if !self.propose_records(&proposal.records) {
            return None;
        }
        let (tx, rx) = local_channel::new_bounded(1);
        self.waits.push((proposal.commit_offset(), tx));
        if let Err(e) = self.carry_out(None) {
            tracing::error!(error = %e, "cannot persist the quorum state");
        }
        self.release_waits();
        Some(rx)
    }

    /// Appends records to the leader's log; false (and no longer active) if it does not lead.
    fn propose_records(&mut self, records: &[VersionedRecord]) -> bool {
        for record in records {
            if self
                .replica
                .propose(self.now_ms, record.encode().to_vec())
                .is_err()
            {
                self.controller = None;
                self.waits.clear();
                return false;
            }
        }
        true
    }

    /// Tells the answers whose records are now committed.
    fn release_waits(&mut self) {
        let applied = self.applied.0;
        self.waits.retain(|(offset, tx)| {
            let done = *offset < applied;
            if done {
                let _ = tx.try_send(());
            }
            !done
        });
    }

    /// Delivers `message` from `from`. When it came as a request of `api` on an inbound
    /// connection, the replica's answer to it is returned for that connection.
    pub fn receive(
        &mut self,
        now_ms: u64,
        from: NodeId,
        message: Message,
        api: Option<ApiKey>,
    ) -> std::io::Result<Option<Message>> {
        self.now_ms = now_ms;
        self.set_log_clock();
        self.replica.receive(now_ms, from, message);
        self.carry_out(api.map(|api| (from, api)))
    }

    /// Carries out the drained effects in order; returns the answer to `inbound`, if any.
    fn carry_out(&mut self, inbound: Option<(NodeId, ApiKey)>) -> std::io::Result<Option<Message>> {
        let mut answer = None;
        for effect in self.replica.drain_effects() {
            match effect {
                Effect::Persist(state) => (self.persist)(&state)?,
                Effect::Send { to, message } => {
                    if let Some((from, api)) = inbound
                        && to == from
                        && answer.is_none()
                        && answers(api, &message)
                    {
                        answer = Some(message);
                        continue;
                    }
                    self.send(to, message);
                }
                Effect::HighWatermark(hw) => self.applied = self.applied.max(hw),
                Effect::LoadSnapshot(id) => self.load_snapshot(id),
            }
        }
        self.log_changes();
        self.apply_committed();
        self.maybe_snapshot();
        self.lead();
        self.release_waits();
        self.publish_image();
        Ok(answer)
    }

    /// Replaces the image with the log's snapshot `id` (everything below `id.offset`). A
    /// snapshot that does not load is a bug or a corrupt file that passed its CRCs: the node
    /// cannot know its state, so it stops.
    fn load_snapshot(&mut self, id: OffsetAndEpoch) {
        let Some(snapshot) = self.replica.log().snapshot().filter(|s| s.id == id) else {
            panic!("the replica asked to load snapshot {id:?}, which its log does not hold");
        };
        let image = match load_image(snapshot) {
            Ok(image) => image,
            Err(e) => panic!("metadata snapshot {id:?} does not load: {e}"),
        };
        tracing::info!(
            end_offset = id.offset.0,
            epoch = id.epoch.0,
            brokers = image.brokers().len(),
            topics = image.topics().len(),
            "metadata image loaded from a snapshot"
        );
        self.image = image;
        self.image_end = id.offset;
        self.applied = self.applied.max(id.offset);
        self.bytes_since_snapshot = 0;
        self.unpublished = true;
        // An active controller decided from the image it had; a new one starts from this.
        self.controller = None;
        self.waits.clear();
    }

    /// Snapshots the image once enough records were applied since the last snapshot, then
    /// drops the log below it.
    fn maybe_snapshot(&mut self) {
        if self.bytes_since_snapshot < self.snapshot_bytes_max {
            return;
        }
        let offset = self.image_end;
        let Some(id) = self.replica.log().offset_and_epoch(offset) else {
            return;
        };
        let data = encode_snapshot(&self.image, id, crate::registry::now_ms());
        let size = data.len();
        match self.replica.snapshot_taken(offset, data) {
            Ok(id) => {
                self.bytes_since_snapshot = 0;
                let start = self.replica.delete_before_snapshot();
                tracing::info!(
                    end_offset = id.offset.0,
                    epoch = id.epoch.0,
                    bytes = size,
                    log_start = start.0,
                    "metadata snapshot taken"
                );
            }
            Err(e) => tracing::warn!(error = %e, "metadata snapshot not taken"),
        }
    }

    /// Sends the image to the data cores if it changed; a full queue keeps it for the next
    /// input (every later image includes this one's records).
    fn publish_image(&mut self) {
        if !self.unpublished {
            return;
        }
        match &self.publish {
            Some(tx) => self.unpublished = tx.try_send(self.image.clone()).is_err(),
            None => self.unpublished = false,
        }
    }

    /// Applies the newly committed records to the image, in log order. A record the image
    /// refuses is logged and skipped: the log is the truth, and every node skips the same one.
    fn apply_committed(&mut self) {
        while self.image_end < self.applied {
            let offset = self.image_end;
            self.image_end = offset.next();
            let Some(entry) = self.replica.log().entry(offset) else {
                continue;
            };
            let Payload::Data(bytes) = &entry.payload else {
                continue;
            };
            self.unpublished = true;
            self.bytes_since_snapshot += bytes.len() as u64;
            let (at, epoch) = (offset.0, entry.epoch.0);
            match VersionedRecord::decode(Bytes::from(bytes.clone())) {
                Ok(record) => {
                    if let Err(e) = self.image.apply(at, epoch, &record) {
                        tracing::warn!(offset = at, error = ?e, "metadata record not applied");
                    }
                }
                Err(e) => {
                    tracing::warn!(offset = at, error = %e, "undecodable metadata record")
                }
            }
        }
    }

    /// Starts or ends this node's term as active controller. A new leader becomes active once
    /// everything in its log is committed and applied (its own LeaderChange included), so its
    /// decisions start from every earlier epoch's records; it then writes the bootstrap records
    /// if the log has none.
    fn lead(&mut self) {
        if self.replica.role() != RoleKind::Leader {
            self.controller = None;
            self.waits.clear();
            return;
        }
        let end = self.replica.log().end();
        if self.controller.is_some() || self.image_end < end {
            return;
        }
        let now = self.now_ms;
        let mut controller = Controller::activate(
            self.controller_config.clone(),
            self.image.clone(),
            self.replica.epoch().0,
            end.0,
            now,
            self.seed ^ end.0 as u64,
        );
        tracing::info!(
            epoch = self.replica.epoch().0,
            at = end.0,
            "active controller"
        );
        if let Some(bootstrap) = controller.bootstrap_if_empty() {
            for record in &bootstrap.records {
                if self.replica.propose(now, record.encode().to_vec()).is_err() {
                    return;
                }
            }
        }
        self.controller = Some(controller);
    }

    fn set_log_clock(&mut self) {
        self.replica.log_mut().set_now_ms(crate::registry::now_ms());
    }

    /// Logs a change of role, epoch or leader (elections are rare and worth a line each).
    fn log_changes(&mut self) {
        let r = &self.replica;
        let now = (r.role(), r.epoch(), r.leader());
        if now != self.seen {
            self.seen = now;
            tracing::info!(
                node = r.id().0,
                role = ?now.0,
                epoch = now.1.0,
                leader = now.2.map_or(-1, |n| n.0),
                "controller quorum"
            );
        }
    }

    /// Queues a request for `to`; an answer-kind message with no inbound request to go with is
    /// dropped (its request came on a connection that has moved on).
    fn send(&mut self, to: NodeId, message: Message) {
        if is_answer(&message) {
            return;
        }
        if let Some(peer) = self.peers.get(&to)
            && peer.try_send(message).is_err()
        {
            self.dropped += 1;
        }
    }
}

/// Whether `message` answers a request of `api`.
fn answers(api: ApiKey, message: &Message) -> bool {
    matches!(
        (api, message),
        (ApiKey::Vote, Message::VoteResponse { .. })
            | (
                ApiKey::BeginQuorumEpoch,
                Message::BeginQuorumEpochResponse { .. }
            )
            | (ApiKey::Fetch, Message::FetchResponse(_))
            | (ApiKey::FetchSnapshot, Message::FetchSnapshotResponse(_))
    )
}

/// Whether `message` is an answer rather than a request.
fn is_answer(message: &Message) -> bool {
    matches!(
        message,
        Message::VoteResponse { .. }
            | Message::BeginQuorumEpochResponse { .. }
            | Message::FetchResponse(_)
            | Message::FetchSnapshotResponse(_)
    )
}
