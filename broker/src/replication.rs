//! Replication's state on one core (issue 21): for each partition this broker leads, the
//! `sluice_replication::LeaderReplicas` of that crate (the same code its deterministic
//! simulator runs under crashes, partitions and lost messages): leader epoch and partition
//! epoch, in-sync replicas, each follower's log end and last caught-up time as its Fetches
//! report them, and the AlterPartition requests to send; for each partition it follows, the
//! leader's high watermark as last learned. Both bound the partition's high watermark
//! (`Partition::set_high_watermark_bound`; the storage engine takes the smaller of the bound
//! and its durable end, and never moves it back): a leader's is
//! `LeaderReplicas::high_watermark_bound`, a follower's the leader's.
//!
//! Kafka's rules, kept by that crate: the high watermark of a replicated partition does not
//! move while its ISR is smaller than `min.insync.replicas`; a new leader's high watermark
//! waits for every ISR member to fetch once; a follower joins the ISR once it has fetched up
//! to the high watermark and the start of the leader's epoch, and leaves it when it has not
//! caught up with the log end for `replica_lag_time_max_ms`; each change is an AlterPartition
//! for the active controller ([`IsrChange`], one in flight per partition), committed by the
//! controller's answer or by a newer partition state in the metadata; a member being added
//! counts toward the high watermark from the moment it is proposed (the maximal ISR).
//! Only the core that hosts a partition touches its entry.

use std::cell::RefCell;
use std::collections::HashMap;
use std::collections::hash_map::Entry;

use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use sluice_replication::{
    AlterPartitionAnswer, AlterPartitionError, AlterPartitionRequest, BrokerEpoch, Config, Epoch,
    EpochEndOffset, LeaderAndIsr, LeaderReplicas, Offset, PartitionEpoch, ReplicaId,
};
use sluice_shard::DmaStorage;

use crate::image::PartitionState;

type Partition = sluice_shard::Partition<DmaStorage>;
type Key = (String, i32);

/// An AlterPartition in flight and unanswered this long is sent again (Kafka's
/// `AlterPartitionManager` retries until the controller answers).
const ALTER_PARTITION_RETRY_MS: u64 = 2_000;

/// A partition this broker leads.
#[derive(Debug)]
struct Led {
    topic_id: [u8; 16],
    replicas: LeaderReplicas,
    /// An AlterPartition of this partition waits in the ISR task's queue or for its answer:
    /// no resend until it is answered (the task sends one request at a time for the whole
    /// core, so a timer started when a request was queued says nothing of its answer).
    queued: bool,
}

/// A partition followed here: its topic id, and the leader's high watermark last learned.
type Followed = ([u8; 16], Option<i64>);

/// A change of a led partition's ISR for the active controller (AlterPartition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrChange {
    pub topic: String,
    pub topic_id: [u8; 16],
    pub partition: i32,
    /// The request as the leader's state sent it (its answer goes back with it).
    pub request: AlterPartitionRequest,
}

/// A follower's Fetch of one partition as the leader records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerFetch {
    pub replica: i32,
    /// The follower's broker epoch (KIP-903), -1 when not sent.
    pub broker_epoch: i64,
    /// Its log end, where it fetches from.
    pub fetch_offset: i64,
    pub log_start_offset: i64,
}

/// What the controller answered to an [`IsrChange`]: the committed leader epoch, partition
/// epoch and ISR, or the partition's error; `None` when no answer came (the link failed, or a
/// top-level error such as STALE_BROKER_EPOCH).
pub type IsrAnswer = Option<Result<(i32, i32, Vec<i32>), AlterPartitionError>>;

/// A led partition's settings from the broker's configuration and metadata image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderSettings {
    /// The topic's `min.insync.replicas`.
    pub min_isr: i32,
    /// `replica_lag_time_max_ms`.
    pub lag_max_ms: u64,
    /// Replicas whose broker may not join the ISR now (fenced, in controlled shutdown).
    pub ineligible: Vec<i32>,
}

/// Why a follower's Fetch is not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotFollowed {
    /// This broker does not lead the partition (any more).
    NotLeader,
    /// The fetching broker holds no replica of it, or fetches with an older broker epoch than
    /// an earlier Fetch of its (a replica from before a restart).
    NotAReplica,
}

/// One core's replication state (see the module docs).
pub struct Replication {
    node: i32,
    led: RefCell<HashMap<Key, Led>>,
    /// Partitions followed here: the topic id, and the leader's high watermark last learned
    /// (`None` before the first answer).
    followed: RefCell<HashMap<Key, Followed>>,
    /// ISR changes proposed by follower Fetches and answers, for the core's ISR task.
    changes: LocalSender<IsrChange>,
    changes_out: RefCell<Option<LocalReceiver<IsrChange>>>,
}

impl std::fmt::Debug for Replication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replication")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl Replication {
    pub fn new(node: i32) -> Replication {
        let (changes, out) = local_channel::new_unbounded();
        Replication {
            node,
            led: RefCell::new(HashMap::new()),
            followed: RefCell::new(HashMap::new()),
            changes,
            changes_out: RefCell::new(Some(out)),
        }
    }

    /// The ISR changes proposed by follower Fetches (taken once, by the core's ISR task).
    pub fn take_changes(&self) -> Option<LocalReceiver<IsrChange>> {
        self.changes_out.borrow_mut().take()
    }

    /// Brings one hosted partition in line with its state in a new image: leading it (in a
    /// new leader epoch the epoch is stamped from now on, and each follower's clocks restart)
    /// or following it, and sets its high watermark bound. Called after every image and
    /// reopen.
    pub fn apply(
        &self,
        p: &Partition,
        topic_id: [u8; 16],
        state: &PartitionState,
        settings: &LeaderSettings,
        now_ms: u64,
    ) {
        let key = (p.topic().to_owned(), p.partition());
        if state.leader != self.node {
            if self.led.borrow_mut().remove(&key).is_some() {
                // Produces waiting for the high watermark learn they lost the leadership.
                p.wake_waiters();
            }
            let mut followed = self.followed.borrow_mut();
            let entry = followed.entry(key).or_insert((topic_id, None));
            if entry.0 != topic_id {
                // The topic was deleted and created again under its name.
                *entry = (topic_id, None);
            }
            let learned = entry.1;
            p.set_high_watermark_bound(learned.unwrap_or_else(|| p.offsets().high_watermark));
            return;
        }
        self.followed.borrow_mut().remove(&key);
        p.raise_leader_epoch(state.leader_epoch);
        let log_end = Offset(p.offsets().log_end_offset);
        let las = leader_and_isr(state);
        let min_isr = usize::try_from(settings.min_isr.max(1)).unwrap_or(1);
        let mut led = self.led.borrow_mut();
        let fresh = || Led {
            topic_id,
            replicas: LeaderReplicas::new(
                self.config(min_isr, settings.lag_max_ms),
                &las,
                now_ms,
                log_end,
            ),
            queued: false,
        };
        let entry = match led.entry(key) {
            Entry::Vacant(v) => {
                p.wake_waiters();
                v.insert(fresh())
            }
            Entry::Occupied(o) => {
                let entry = o.into_mut();
                // The topic was deleted and created again under its name (its epochs start
                // over): nothing of the old one's replicas holds.
                if entry.topic_id != topic_id || las.leader_epoch < entry.replicas.leader_epoch() {
                    *entry = fresh();
                    p.wake_waiters();
                }
                entry
            }
        };
        let r = &mut entry.replicas;
        if las.leader_epoch > r.leader_epoch() {
            r.reelect(&las, now_ms, log_end);
            p.wake_waiters();
        } else if las.leader_epoch == r.leader_epoch() {
            r.update_partition_state(now_ms, &las);
        }
        r.set_min_insync_replicas(min_isr);
        r.set_ineligible(settings.ineligible.iter().copied().map(ReplicaId));
        p.set_high_watermark_bound(bound(entry, p, now_ms));
    }

    /// A leader's settings: only this broker's id, `replica_lag_time_max_ms`,
    /// `min.insync.replicas` and the AlterPartition retry count here (the broker epochs of
    /// AlterPartition come from the metadata image, `isr.rs`).
    fn config(&self, min_isr: usize, lag_max_ms: u64) -> Config {
        let mut config = Config::new(ReplicaId(self.node), BrokerEpoch(-1));
        config.replica_lag_time_max_ms = lag_max_ms;
        config.min_insync_replicas = min_isr;
        config.alter_partition_retry_ms = ALTER_PARTITION_RETRY_MS;
        config
    }

    /// Forgets partitions no longer hosted on this core.
    pub fn retain(&self, hosted: impl Fn(&str, i32) -> bool) {
        self.led.borrow_mut().retain(|(t, p), _| hosted(t, *p));
        self.followed.borrow_mut().retain(|(t, p), _| hosted(t, *p));
    }

    /// A follower's Fetch of `p`, which this broker leads, whose position lies on this log:
    /// records it (Kafka's `updateFollowerFetchState`), moves the high watermark bound, and
    /// proposes the follower's return to the ISR once it is in sync.
    pub fn follower_fetched(
        &self,
        p: &Partition,
        fetch: FollowerFetch,
        now_ms: u64,
    ) -> Result<(), NotFollowed> {
        let key = (p.topic().to_owned(), p.partition());
        let mut led = self.led.borrow_mut();
        let entry = led.get_mut(&key).ok_or(NotFollowed::NotLeader)?;
        let replica = ReplicaId(fetch.replica);
        let r = &mut entry.replicas;
        let known = r.follower_broker_epoch(replica);
        // A Fetch without a broker epoch (-1) is not checked, as in Kafka, and keeps the one
        // known.
        let stale = fetch.broker_epoch >= 0 && known.is_some_and(|k| fetch.broker_epoch < k.0);
        if fetch.replica == self.node || !r.is_follower(replica) || stale {
            return Err(NotFollowed::NotAReplica);
        }
        let broker_epoch = match known {
            Some(k) if fetch.broker_epoch < 0 => k,
            _ => BrokerEpoch(fetch.broker_epoch),
        };
        let offsets = p.offsets();
        r.record_fetch(
            now_ms,
            replica,
            (Offset(fetch.fetch_offset), Offset(fetch.log_start_offset)),
            Offset(offsets.log_end_offset),
            broker_epoch,
            Offset(offsets.high_watermark),
        );
        self.send_changes(&key, entry);
        p.set_high_watermark_bound(bound(entry, p, now_ms));
        Ok(())
    }

    /// Time passes for every led partition: an unanswered AlterPartition is sent again, ISR
    /// members that have not caught up for `replica_lag_time_max_ms` are proposed for removal
    /// (the leader stays), and the high watermark bound follows (a follower eligible to join
    /// counts toward it only while caught up). Returns the changes to send.
    pub fn tick(&self, now_ms: u64, partition: impl Fn(&str, i32) -> Option<Partition>) {
        for (key, entry) in self.led.borrow_mut().iter_mut() {
            let Some(p) = partition(&key.0, key.1) else {
                continue;
            };
            let leader_end = Offset(p.offsets().log_end_offset);
            if !entry.queued {
                entry.replicas.maybe_resend_alter_partition(now_ms);
            }
            entry.replicas.maybe_shrink_isr(now_ms, leader_end);
            self.send_changes(key, entry);
            p.set_high_watermark_bound(bound(entry, &p, now_ms));
        }
    }

    /// The controller's answer to a change this core proposed (`None`: no answer came, the
    /// request is sent again later): a committed ISR takes effect at once, a refusal goes
    /// back to the committed ISR or waits for the metadata, as Kafka's leader does.
    pub fn change_answered(
        &self,
        change: &IsrChange,
        answer: IsrAnswer,
        p: Option<Partition>,
        now_ms: u64,
    ) {
        let key = (change.topic.clone(), change.partition);
        let mut led = self.led.borrow_mut();
        let Some(entry) = led.get_mut(&key) else {
            return;
        };
        entry.queued = false;
        let Some(answer) = answer else {
            return;
        };
        let result = answer.map(|(leader_epoch, partition_epoch, isr)| LeaderAndIsr {
            leader: Some(ReplicaId(self.node)),
            leader_epoch: Epoch(leader_epoch),
            partition_epoch: PartitionEpoch(partition_epoch),
            replicas: entry.replicas.replicas().to_vec(),
            isr: isr.into_iter().map(ReplicaId).collect(),
        });
        let answer = AlterPartitionAnswer {
            request: change.request.clone(),
            result,
        };
        entry
            .replicas
            .handle_alter_partition_answer(now_ms, &answer);
        self.send_changes(&key, entry);
        if let Some(p) = p {
            p.set_high_watermark_bound(bound(entry, &p, now_ms));
        }
    }

    /// Hands the AlterPartition requests a led partition produced to the ISR task.
    fn send_changes(&self, key: &Key, entry: &mut Led) {
        for request in entry.replicas.take_alter_partition_requests() {
            entry.queued = true;
            let _ = self.changes.try_send(IsrChange {
                topic: key.0.clone(),
                topic_id: entry.topic_id,
                partition: key.1,
                request,
            });
        }
    }

    /// The leader's high watermark as a follower learned it from a Fetch answer.
    pub fn leader_high_watermark(&self, p: &Partition, high_watermark: i64) {
        let key = (p.topic().to_owned(), p.partition());
        if let Some((_, learned)) = self.followed.borrow_mut().get_mut(&key) {
            *learned = Some(high_watermark);
            p.set_high_watermark_bound(high_watermark);
        }
    }

    /// The leader epoch of a partition this core leads; `None` when it does not lead it.
    pub fn epoch_of(&self, topic: &str, partition: i32) -> Option<i32> {
        let led = self.led.borrow();
        led.get(&(topic.to_owned(), partition))
            .map(|l| l.replicas.leader_epoch().0)
    }

    /// Whether the maximal ISR of a partition this core leads still has `min.insync.replicas`
    /// members (`None`: not led here).
    pub fn enough_replicas(&self, topic: &str, partition: i32) -> Option<bool> {
        let led = self.led.borrow();
        Some(
            led.get(&(topic.to_owned(), partition))?
                .replicas
                .enough_replicas(),
        )
    }

    /// The committed ISR's size and the effective `min.insync.replicas` of a partition this
    /// core leads.
    pub fn isr_of(&self, topic: &str, partition: i32) -> Option<(usize, usize)> {
        let led = self.led.borrow();
        let r = &led.get(&(topic.to_owned(), partition))?.replicas;
        Some((r.isr().len(), r.effective_min_isr()))
    }
}

/// The high watermark bound of a led partition (see the module docs): `i64::MIN` while the
/// ISR is below `min.insync.replicas`.
fn bound(led: &Led, p: &Partition, now_ms: u64) -> i64 {
    let leader_end = Offset(p.offsets().log_end_offset);
    led.replicas
        .high_watermark_bound(now_ms, leader_end)
        .map_or(i64::MIN, |b| b.0)
}

/// Where an epoch ends on a log (the storage engine's `end_offset_for_epoch`), in the
/// replication crate's words.
pub fn epoch_end(epoch: i32, end_offset: i64) -> EpochEndOffset {
    EpochEndOffset {
        epoch: Epoch(epoch),
        end_offset: Offset(end_offset),
    }
}

/// The image's partition state in the replication crate's words.
fn leader_and_isr(state: &PartitionState) -> LeaderAndIsr {
    LeaderAndIsr {
        leader: (state.leader >= 0).then_some(ReplicaId(state.leader)),
        leader_epoch: Epoch(state.leader_epoch),
        partition_epoch: PartitionEpoch(state.partition_epoch),
        replicas: state.replicas.iter().copied().map(ReplicaId).collect(),
        isr: state.isr.iter().copied().map(ReplicaId).collect(),
    }
}

/// Milliseconds on a monotonic clock (since the first call), for lag times.
pub fn now_ms() -> u64 {
    use std::sync::OnceLock;
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    let start = START.get_or_init(std::time::Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}
