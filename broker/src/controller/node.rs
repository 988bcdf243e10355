//! The controller shard's quorum node: the sans-IO replica with what carries out its effects.
//!
//! Everything here runs on the controller shard's one thread, so the node sits in an
//! `Rc<RefCell<_>>` and every borrow ends before an `.await`. An input (a tick, an inbound
//! request, an answer from a peer) goes in with [`Node::tick`] or [`Node::receive`]; the effects
//! it causes are carried out at once and in order: the quorum state is written (before any
//! message that depends on it leaves), requests go to the peers' queues, and the answer to the
//! inbound request, if any, is handed back to the connection that brought it.

use std::collections::HashMap;

use glommio::channels::local_channel::LocalSender;
use sluice_net::ApiKey;
use sluice_quorum::{Effect, Epoch, Log, Message, NodeId, Offset, QuorumState, Replica, RoleKind};

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
}

impl<L: Log + Stamped> Node<L> {
    /// A node around `replica`; `persist` writes the quorum state.
    pub fn new(replica: Replica<L>, persist: Persist) -> Node<L> {
        Node {
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
        self.set_log_clock();
        self.replica.tick(now_ms);
        self.carry_out(None).map(|_| ())
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
                Effect::LoadSnapshot(id) => self.applied = id.offset,
            }
        }
        self.log_changes();
        Ok(answer)
    }

    fn set_log_clock(&mut self) {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        self.replica.log_mut().set_now_ms(wall);
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
