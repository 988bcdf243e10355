//! Replication's state on one core (issue 21): for each partition this broker leads, its
//! leader epoch, in-sync replicas and each follower's log end and last caught-up time as its
//! Fetches report them; for each partition it follows, the leader's high watermark as last
//! learned. Both bound the partition's high watermark (`Partition::set_high_watermark_bound`):
//! a leader's is the smallest log end over the other ISR members (its own log counts up to its
//! durable end, in the storage engine), a follower's the leader's; with no other replica
//! there is no bound.
//!
//! Kafka's rules are kept: the high watermark of a replicated partition does not move while
//! its ISR is smaller than `min.insync.replicas` (KIP-966); a follower's log end starts
//! unknown in each leader epoch, so a new leader's high watermark waits for every ISR member to
//! fetch once; a follower joins the ISR once it has fetched up to the high watermark and the
//! start of the leader's epoch, and leaves it when it has not caught up with the log end for
//! `replica_lag_time_max_ms`. Each such change is an [`IsrChange`] for the active controller
//! (AlterPartition), one in flight per partition; a member being added counts toward the
//! high watermark from the moment it is proposed (Kafka's "maximal ISR"), so the controller
//! committing it never makes a member of an ISR that lacks a record below the high watermark.
//! Only the core that hosts a partition touches its entry.

use std::cell::RefCell;
use std::collections::HashMap;

use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use sluice_shard::DmaStorage;

use crate::image::PartitionState;

type Partition = sluice_shard::Partition<DmaStorage>;
type Key = (String, i32);

/// What a leader knows of one follower in the current leader epoch.
#[derive(Debug, Clone, Copy)]
struct Progress {
    log_end: i64,
    /// Kafka's `lastCaughtUpTimeMs`.
    caught_up_ms: u64,
    /// The leader's log end and the time at this follower's previous Fetch.
    last_fetch_leader_end: i64,
    last_fetch_ms: u64,
}

/// A partition this broker leads.
#[derive(Debug)]
struct Led {
    topic_id: [u8; 16],
    epoch: i32,
    partition_epoch: i32,
    /// This broker's log end when it became leader in `epoch`: a follower joins the ISR only
    /// once past it.
    epoch_start: i64,
    /// When this broker became leader in `epoch` (followers count as caught up then).
    since_ms: u64,
    replicas: Vec<i32>,
    isr: Vec<i32>,
    min_isr: usize,
    followers: HashMap<i32, Progress>,
    /// An AlterPartition is in flight; a member it adds counts toward the high watermark.
    in_flight: bool,
    adding: Option<i32>,
}

/// A change of a led partition's ISR for the active controller (AlterPartition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrChange {
    pub topic: String,
    pub topic_id: [u8; 16],
    pub partition: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub new_isr: Vec<i32>,
}

/// Why a follower's Fetch is not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotFollowed {
    /// This broker does not lead the partition (any more).
    NotLeader,
    /// The fetching broker holds no replica of it.
    NotAReplica,
}

/// One core's replication state (see the module docs).
pub struct Replication {
    node: i32,
    led: RefCell<HashMap<Key, Led>>,
    /// Partitions followed here, with the leader's high watermark last learned (`None`
    /// before the first answer).
    followed: RefCell<HashMap<Key, Option<i64>>>,
    /// ISR expansions proposed by follower Fetches, for the core's ISR task.
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

    /// The ISR expansions proposed by follower Fetches (taken once, by the core's ISR task).
    pub fn take_changes(&self) -> Option<LocalReceiver<IsrChange>> {
        self.changes_out.borrow_mut().take()
    }

    /// Brings one hosted partition in line with its state in a new image: leading it (at a
    /// new epoch: every follower's end unknown again; the epoch stamped from now on) or
    /// following it, and sets its high watermark bound. Called after every image and reopen.
    pub fn apply(
        &self,
        p: &Partition,
        topic_id: [u8; 16],
        state: &PartitionState,
        min_isr: i32,
        now_ms: u64,
    ) {
        let key = (p.topic().to_owned(), p.partition());
        if state.leader != self.node {
            if self.led.borrow_mut().remove(&key).is_some() {
                // Produces waiting for the high watermark learn they lost the leadership.
                p.wake_waiters();
            }
            let learned = *self.followed.borrow_mut().entry(key).or_insert(None);
            p.set_high_watermark_bound(learned.unwrap_or_else(|| p.offsets().high_watermark));
            return;
        }
        self.followed.borrow_mut().remove(&key);
        p.raise_leader_epoch(state.leader_epoch);
        let mut led = self.led.borrow_mut();
        let entry = led.entry(key).or_insert_with(|| Led {
            topic_id,
            epoch: -1,
            partition_epoch: state.partition_epoch,
            epoch_start: 0,
            since_ms: now_ms,
            replicas: Vec::new(),
            isr: Vec::new(),
            min_isr: 1,
            followers: HashMap::new(),
            in_flight: false,
            adding: None,
        });
        if entry.epoch != state.leader_epoch {
            entry.epoch = state.leader_epoch;
            entry.epoch_start = p.offsets().log_end_offset;
            entry.since_ms = now_ms;
            entry.followers.clear();
            entry.in_flight = false;
            entry.adding = None;
            p.wake_waiters();
        }
        if entry.partition_epoch != state.partition_epoch {
            // The controller committed a change (ours or its own): what was in flight is
            // settled.
            entry.partition_epoch = state.partition_epoch;
            entry.in_flight = false;
            entry.adding = None;
        }
        entry.topic_id = topic_id;
        entry.replicas.clone_from(&state.replicas);
        entry.isr.clone_from(&state.isr);
        entry.min_isr = usize::try_from(min_isr.max(1)).unwrap_or(1);
        p.set_high_watermark_bound(self.bound(entry));
    }

    /// Forgets partitions no longer hosted on this core.
    pub fn retain(&self, hosted: impl Fn(&str, i32) -> bool) {
        self.led.borrow_mut().retain(|(t, p), _| hosted(t, *p));
        self.followed.borrow_mut().retain(|(t, p), _| hosted(t, *p));
    }

    /// A follower's Fetch at `fetch_offset` (its log end) in `p`, which this broker leads:
    /// records it, moves the high watermark bound, and proposes the follower's return to the
    /// ISR once it has caught up.
    pub fn follower_fetched(
        &self,
        p: &Partition,
        replica: i32,
        fetch_offset: i64,
        now_ms: u64,
    ) -> Result<(), NotFollowed> {
        let key = (p.topic().to_owned(), p.partition());
        let mut led = self.led.borrow_mut();
        let entry = led.get_mut(&key).ok_or(NotFollowed::NotLeader)?;
        if replica == self.node || !entry.replicas.contains(&replica) {
            return Err(NotFollowed::NotAReplica);
        }
        let offsets = p.offsets();
        let since = entry.since_ms;
        let before = entry.followers.get(&replica).copied().unwrap_or(Progress {
            log_end: -1,
            caught_up_ms: since,
            last_fetch_leader_end: -1,
            last_fetch_ms: since,
        });
        let caught_up_ms = if fetch_offset >= offsets.log_end_offset {
            now_ms
        } else if fetch_offset >= before.last_fetch_leader_end {
            before.last_fetch_ms.max(before.caught_up_ms)
        } else {
            before.caught_up_ms
        };
        entry.followers.insert(
            replica,
            Progress {
                log_end: fetch_offset,
                caught_up_ms,
                last_fetch_leader_end: offsets.log_end_offset,
                last_fetch_ms: now_ms,
            },
        );
        if !entry.isr.contains(&replica)
            && !entry.in_flight
            && fetch_offset >= offsets.high_watermark
            && fetch_offset >= entry.epoch_start
        {
            let mut new_isr = entry.isr.clone();
            new_isr.push(replica);
            entry.in_flight = true;
            entry.adding = Some(replica);
            let _ = self.changes.try_send(change(&key, entry, new_isr));
        }
        p.set_high_watermark_bound(self.bound(entry));
        Ok(())
    }

    /// The ISR shrinks due now: for each led partition with nothing in flight, the members
    /// that have not caught up for `lag_max_ms` leave it (the leader stays).
    pub fn lagging(&self, now_ms: u64, lag_max_ms: u64) -> Vec<IsrChange> {
        let mut out = Vec::new();
        for (key, entry) in self.led.borrow_mut().iter_mut() {
            if entry.in_flight {
                continue;
            }
            let since = entry.since_ms;
            let lagging = |r: &i32| {
                let caught_up = entry.followers.get(r).map_or(since, |f| f.caught_up_ms);
                *r != self.node && now_ms.saturating_sub(caught_up) > lag_max_ms
            };
            if !entry.isr.iter().any(lagging) {
                continue;
            }
            let new_isr: Vec<i32> = entry.isr.iter().copied().filter(|r| !lagging(r)).collect();
            entry.in_flight = true;
            out.push(change(key, entry, new_isr));
        }
        out
    }

    /// The controller answered a proposed change: on success the new ISR arrives with the
    /// image (which settles it); on refusal the partition may propose again.
    pub fn change_answered(&self, change: &IsrChange, accepted: bool) {
        if accepted {
            return;
        }
        let key = (change.topic.clone(), change.partition);
        if let Some(entry) = self.led.borrow_mut().get_mut(&key)
            && entry.partition_epoch == change.partition_epoch
        {
            entry.in_flight = false;
            entry.adding = None;
        }
    }

    /// The leader's high watermark as a follower learned it from a Fetch answer.
    pub fn leader_high_watermark(&self, p: &Partition, high_watermark: i64) {
        let key = (p.topic().to_owned(), p.partition());
        if let Some(learned) = self.followed.borrow_mut().get_mut(&key) {
            *learned = Some(high_watermark);
            p.set_high_watermark_bound(high_watermark);
        }
    }

    /// The leader epoch of a partition this core leads; `None` when it does not lead it.
    pub fn epoch_of(&self, topic: &str, partition: i32) -> Option<i32> {
        let led = self.led.borrow();
        led.get(&(topic.to_owned(), partition)).map(|l| l.epoch)
    }

    /// The in-sync replicas and `min.insync.replicas` of a partition this core leads.
    pub fn isr_of(&self, topic: &str, partition: i32) -> Option<(usize, usize)> {
        let led = self.led.borrow();
        let entry = led.get(&(topic.to_owned(), partition))?;
        Some((entry.isr.len(), entry.min_isr))
    }

    /// The high watermark bound of a led partition (see the module docs).
    fn bound(&self, led: &Led) -> i64 {
        if led.replicas.len() > 1 && led.isr.len() < led.min_isr {
            return i64::MIN;
        }
        led.isr
            .iter()
            .chain(led.adding.iter())
            .filter(|&&r| r != self.node)
            .map(|r| led.followers.get(r).map_or(-1, |f| f.log_end))
            .min()
            .unwrap_or(i64::MAX)
    }
}

fn change(key: &Key, led: &Led, new_isr: Vec<i32>) -> IsrChange {
    IsrChange {
        topic: key.0.clone(),
        topic_id: led.topic_id,
        partition: key.1,
        leader_epoch: led.epoch,
        partition_epoch: led.partition_epoch,
        new_isr,
    }
}

/// Milliseconds on a monotonic clock (since the first call), for lag times.
pub fn now_ms() -> u64 {
    use std::sync::OnceLock;
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    let start = START.get_or_init(std::time::Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}
