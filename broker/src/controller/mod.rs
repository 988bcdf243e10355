//! The controller shard (issue 20): a separate, lightweight executor, not one of the data
//! cores, that is this node's voter in the KRaft controller quorum, or on a broker-only node
//! (`--process-roles broker`) an observer that fetches the metadata log from the voters.
//!
//! It owns the quorum replica (`sluice-quorum`) and its log, listens on the controller address
//! (`--controller-listen`) for the other voters' Vote, BeginQuorumEpoch, EndQuorumEpoch and
//! Fetch requests and for DescribeQuorum, and keeps one outbound connection per other voter
//! ([`peer`]). A 10 ms tick drives the replica's timers. Its thread is not pinned: it does
//! little work and must not steal a data core's CPU.
//!
//! Each time committed records change the image, the shard publishes it to the control core
//! (a cross-executor channel), which hands it to every data core over the mesh: the cores read
//! an immutable image and never wait on the shard.
//!
//! The metadata log is a `FileLog` in `<data-dir>/__cluster_metadata-0` (Kafka's layout and
//! record format) and the quorum state Kafka's `quorum-state` file beside it, both written
//! with blocking calls on this thread, never on a data core.
//! Every `snapshot_bytes_max` bytes of committed records the node snapshots its image into a
//! `.checkpoint` file there and deletes the segments below it (`node`), so the log's size and
//! the replay at start-up stay bounded.
//!
//! Not here yet (issue 20, later slices): running the controller's decisions
//! (`sluice_controller::Controller`) on the leader, applying committed records to the metadata
//! image and publishing it to the data cores, broker registration and heartbeats.

pub(crate) mod client;
mod forward;
mod lifecycle;
mod node;
mod peer;
mod serve;

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use glommio::channels::local_channel;
use glommio::channels::shared_channel::{SharedReceiver, SharedSender};
use glommio::net::TcpListener;
use glommio::sync::Semaphore;
use glommio::{LocalExecutorBuilder, Placement};
use sluice_controller::wire::Wire;
use sluice_controller::{ControllerConfig, FileLog, FileLogConfig, MetadataImage, QuorumStateFile};
use sluice_net::Uuid;
use sluice_quorum::{Config, Log, NodeId, Replica};

use crate::connection::{self, Limits};
use crate::forward::Forwarded;
use crate::stop::StopSignal;
use node::{Node, Persist, Stamped};
use peer::PeerTask;
use serve::Served;

/// How often the replica's timers are driven.
const TICK: Duration = Duration::from_millis(10);
/// Requests queued for one peer before more are dropped.
const PEER_QUEUE_MAX: usize = 64;
/// Bytes of requests the controller listener holds at once (quorum requests are small).
const REQUEST_MEMORY_BYTES: usize = 64 * 1024 * 1024;
/// Largest request frame the controller listener reads.
const REQUEST_BYTES_MAX: usize = 16 * 1024 * 1024;
/// A peer's answer that takes longer closes its connection.
const PEER_TIMEOUT: Duration = Duration::from_millis(500);
/// glommio's registered I/O memory for the controller executor.
const IO_MEMORY_BYTES: usize = 1024 * 1024;
/// Committed metadata record bytes between two snapshots, unless configured
/// (`metadata_log_max_record_bytes_between_snapshots`): Kafka's default for
/// `metadata.log.max.record.bytes.between.snapshots`, 20 MiB. A snapshot is the image's size
/// (a few hundred bytes per partition), so the log kept stays within about this much plus
/// a segment, and a restart replays at most this much after loading the snapshot.
pub const SNAPSHOT_BYTES_MAX_DEFAULT: u64 = 20 * 1024 * 1024;

/// Who this controller is and who the other voters are.
#[derive(Debug)]
pub struct ControllerSettings {
    pub node_id: i32,
    /// Every voter (this node included): id and controller address.
    pub voters: Vec<(i32, SocketAddr)>,
    /// The controller listener of a voter; `None` for a broker-only node, whose replica is an
    /// observer that only fetches the metadata log.
    pub listen: Option<SocketAddr>,
    pub cluster_id: String,
    pub data_dir: PathBuf,
    /// The client listener's advertised host and port when this node is also a broker: it
    /// then registers with the active controller and heartbeats.
    pub broker_listener: Option<(String, u16)>,
    /// `broker.heartbeat.interval.ms` and `broker.session.timeout.ms`.
    pub heartbeat_interval_ms: u64,
    pub session_timeout_ms: u64,
    /// On a broker: the requests the control core forwards to the active controller, and
    /// where the answers go.
    pub forwarded: Option<(SharedReceiver<sluice_net::Request>, SharedSender<Forwarded>)>,
    /// `controller.quorum.fetch.timeout.ms` and `controller.quorum.election.timeout.ms`.
    pub quorum_fetch_timeout_ms: u64,
    pub quorum_election_timeout_ms: u64,
    /// Committed record bytes between two metadata snapshots.
    pub snapshot_bytes_max: u64,
    /// `auto_leader_rebalance_enable` and `leader_imbalance_check_interval_ms`.
    pub auto_leader_rebalance: bool,
    pub leader_imbalance_check_interval_ms: u64,
    /// `unclean_leader_election_enable`.
    pub unclean_leader_election: bool,
    /// A broker's controlled shutdown, asked for by the main thread (unused without a broker).
    pub leaving: Arc<crate::stop::Leaving>,
}

/// The controller shard's thread; it ends with what the shard ended with.
pub type ControllerThread = std::thread::JoinHandle<anyhow::Result<()>>;

/// Starts the controller shard on its own thread. It runs until `stop` is set. The thread is
/// kicked (`shutdown::Kicker`) for as long as the executor runs: glommio can sleep with a
/// preemption pending and no timer armed (see `shutdown`), before its first poll as well.
pub fn spawn(
    settings: ControllerSettings,
    images: Option<SharedSender<MetadataImage>>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<ControllerThread> {
    crate::shutdown::install_kick_handler()?;
    let builder = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(IO_MEMORY_BYTES)
        .preempt_timer(Duration::from_millis(1));
    std::thread::Builder::new()
        .name("sluice-controller".into())
        .spawn(move || {
            let executor = builder
                .make()
                .map_err(|e| anyhow::anyhow!("cannot build the controller executor: {e}"))?;
            let _kicks = crate::shutdown::Kicker::start_for_this_thread()?;
            executor.run(run(settings, images, stop))
        })
        .map_err(|e| anyhow::anyhow!("cannot start the controller thread: {e}"))
}

async fn run(
    mut settings: ControllerSettings,
    images: Option<SharedSender<MetadataImage>>,
    stop_flag: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let clock: Rc<dyn Fn() -> u64> =
        Rc::new(move || u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX));
    let node = Rc::new(RefCell::new(open_node(&settings, clock())?));
    if let Some(images) = images {
        // Connecting waits for the control core's end; in its own task, so the quorum runs
        // meanwhile (and its 10 ms tick keeps this executor polling the connection).
        let node = Rc::clone(&node);
        glommio::spawn_local(async move {
            let connected = images.connect().await;
            let mut node = node.borrow_mut();
            node.publish = Some(connected);
            node.unpublished = true;
        })
        .detach();
    }
    let wire = Rc::new(Wire {
        cluster_id: settings.cluster_id.clone(),
        me: NodeId(settings.node_id),
        voters: settings.voters.iter().map(|&(id, _)| NodeId(id)).collect(),
    });
    let stop = Rc::new(StopSignal::default());
    let listener = match settings.listen {
        Some(addr) => Some(
            connection::listen_exclusive(addr)
                .map_err(|e| anyhow::anyhow!("controller listen {addr}: {e}"))?,
        ),
        None => None,
    };
    tracing::info!(
        node = settings.node_id,
        listen = ?settings.listen,
        data_dir = %settings.data_dir.display(),
        "controller shard started"
    );
    start_peers(&settings, &node, &wire, &clock, &stop);
    start_lifecycle(&mut settings, &node, &stop);
    glommio::spawn_local(tick(
        Rc::clone(&node),
        Rc::clone(&clock),
        Rc::clone(&stop),
        stop_flag,
    ))
    .detach();
    let served = Served {
        node,
        wire,
        clock,
        endpoints: settings.voters.clone(),
    };
    match listener {
        Some(listener) => accept(listener, served, &stop).await,
        // An observer serves nothing: it runs until the process stops.
        None => stop.stopped().await,
    }
    Ok(())
}

/// The quorum node from the files in the data dir: the metadata log, the quorum state.
fn open_node(settings: &ControllerSettings, now_ms: u64) -> anyhow::Result<Node<FileLog>> {
    let voters: Vec<NodeId> = settings.voters.iter().map(|&(id, _)| NodeId(id)).collect();
    let mut config = Config::new(NodeId(settings.node_id), voters.clone());
    config.fetch_timeout_ms = settings.quorum_fetch_timeout_ms;
    config.election_timeout_ms = settings.quorum_election_timeout_ms;
    config.election_jitter_ms = settings.quorum_election_timeout_ms;
    let seed = u64::from(settings.node_id.unsigned_abs()) ^ seed_from_time();
    let dir = FileLog::dir_in(&settings.data_dir);
    let log = FileLog::open(&dir, FileLogConfig::new(voters.clone()))?;
    let recovery = log.recovery();
    if recovery.truncated_bytes > 0 || recovery.ignored_snapshots > 0 {
        tracing::warn!(
            ?recovery,
            "metadata log: a torn tail or snapshot was cut at open"
        );
    }
    let state_file = QuorumStateFile::new(&dir, voters);
    let persisted = state_file.read()?.unwrap_or_default();
    tracing::info!(
        epoch = persisted.epoch.0,
        log_start = log.start().offset.0,
        log_end = log.end().0,
        "metadata log opened"
    );
    let replica = Replica::new(config, log, persisted, seed, now_ms);
    let persist: Persist = Box::new(move |state| {
        state_file
            .write(state)
            .map_err(|e| std::io::Error::other(e.to_string()))
    });
    let controller_config = ControllerConfig {
        cluster_id: settings.cluster_id.clone(),
        session_timeout_ms: settings.session_timeout_ms,
        legacy_topics: legacy_topics(settings)?,
        auto_leader_rebalance: settings.auto_leader_rebalance,
        leader_imbalance_check_interval_ms: settings.leader_imbalance_check_interval_ms,
        unclean_leader_election: settings.unclean_leader_election,
        ..ControllerConfig::default()
    };
    let mut node = Node::new(replica, persist, controller_config, seed);
    node.snapshot_bytes_max = settings.snapshot_bytes_max;
    Ok(node)
}

/// The topics of the single-node registry in this node's data dir (a broker that ran alone
/// before it joined the cluster): imported into the metadata log, placed on this broker, if
/// this node is the controller that bootstraps it. `None` for a controller-only node or an
/// empty registry.
fn legacy_topics(
    settings: &ControllerSettings,
) -> anyhow::Result<Option<(i32, Vec<sluice_controller::LegacyTopic>)>> {
    if settings.broker_listener.is_none() {
        return Ok(None);
    }
    let table = crate::metadata::TopicTable::load(&settings.data_dir)?;
    if table.topics.is_empty() {
        return Ok(None);
    }
    let topics: Vec<_> = table
        .topics
        .values()
        .map(|t| sluice_controller::LegacyTopic {
            name: t.name.clone(),
            id: Uuid(t.id),
            partition_count: t.partitions,
            configs: t
                .configs
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })
        .collect();
    tracing::info!(
        topics = topics.len(),
        "this data dir has single-node topics: they become the cluster's first topics if this \
         node bootstraps the metadata log"
    );
    Ok(Some((settings.node_id, topics)))
}

/// When this node is also a broker: its registration and heartbeats.
fn start_lifecycle<L: Log + Stamped + 'static>(
    settings: &mut ControllerSettings,
    node: &Rc<RefCell<Node<L>>>,
    stop: &Rc<StopSignal>,
) {
    let epoch = Rc::new(Cell::new(None));
    if let Some((requests, replies)) = settings.forwarded.take() {
        let forwarder = forward::Forwarder {
            node: Rc::clone(node),
            broker_id: settings.node_id,
            epoch: Rc::clone(&epoch),
            controllers: settings.voters.iter().copied().collect(),
            timeout: PEER_TIMEOUT * 2,
        };
        glommio::spawn_local(forwarder.run(requests, replies)).detach();
    }
    let Some((host, port)) = settings.broker_listener.clone() else {
        return;
    };
    let me = lifecycle::Identity {
        broker_id: settings.node_id,
        cluster_id: settings.cluster_id.clone(),
        host,
        port,
        incarnation: Uuid(crate::metadata::incarnation()),
        log_dir: log_dir_id(settings),
    };
    let task = lifecycle::Lifecycle {
        node: Rc::clone(node),
        me,
        controllers: settings.voters.iter().copied().collect(),
        heartbeat: Duration::from_millis(settings.heartbeat_interval_ms),
        session: Duration::from_millis(settings.session_timeout_ms),
        timeout: PEER_TIMEOUT * 2,
        stop: Rc::clone(stop),
        leaving: Arc::clone(&settings.leaving),
        epoch,
    };
    glommio::spawn_local(task.run()).detach();
}

/// One peer task per other voter.
fn start_peers<L: Log + Stamped + 'static>(
    settings: &ControllerSettings,
    node: &Rc<RefCell<Node<L>>>,
    wire: &Rc<Wire>,
    clock: &Rc<dyn Fn() -> u64>,
    stop: &Rc<StopSignal>,
) {
    for &(id, addr) in settings
        .voters
        .iter()
        .filter(|(id, _)| *id != settings.node_id)
    {
        let (tx, rx) = local_channel::new_bounded(PEER_QUEUE_MAX);
        node.borrow_mut().peers.insert(NodeId(id), tx);
        let task = PeerTask {
            node: Rc::clone(node),
            wire: Rc::clone(wire),
            to: NodeId(id),
            addr,
            timeout: PEER_TIMEOUT,
            clock: Rc::clone(clock),
            stop: Rc::clone(stop),
        };
        glommio::spawn_local(task.run(rx)).detach();
    }
}

/// Drives the replica's timers until the process stops.
async fn tick<L: Log + Stamped>(
    node: Rc<RefCell<Node<L>>>,
    clock: Rc<dyn Fn() -> u64>,
    stop: Rc<StopSignal>,
    stop_flag: Arc<AtomicBool>,
) {
    while !stop.is_stopping() {
        glommio::timer::sleep(TICK).await;
        if stop_flag.load(Ordering::Relaxed) {
            stop.stop();
            break;
        }
        if let Err(e) = node.borrow_mut().tick(clock()) {
            tracing::error!(error = %e, "cannot persist the quorum state; stopping");
            stop.stop();
        }
    }
}

/// Accepts controller connections until the shard stops.
async fn accept<L: Log + Stamped + 'static>(
    listener: TcpListener,
    served: Served<L>,
    stop: &Rc<StopSignal>,
) {
    let served = Rc::new(served);
    let budget = Rc::new(Semaphore::new(REQUEST_MEMORY_BYTES as u64));
    let limits = Limits {
        request_bytes_max: REQUEST_BYTES_MAX,
        inflight_max: 4,
    };
    loop {
        let next = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            stop.stopped().await;
            None
        })
        .await;
        let Some(accepted) = next else { break };
        let Ok(stream) = accepted else { continue };
        let served = Rc::clone(&served);
        let (stopping, stopped) = (Rc::clone(stop), Rc::clone(stop));
        let budget = Rc::clone(&budget);
        glommio::spawn_local(async move {
            let handle = move |frame| {
                let served = Rc::clone(&served);
                async move { served.handle(frame).await }
            };
            connection::serve(
                stream,
                budget,
                limits,
                handle,
                move || stopping.is_stopping(),
                async move { stopped.stopped().await },
            )
            .await;
        })
        .detach();
    }
}

/// This broker's log directory id, stable across restarts of the same data dir and distinct
/// per node (Kafka keeps a random one in `meta.properties`; ids below 100 are reserved).
fn log_dir_id(settings: &ControllerSettings) -> Uuid {
    let text = format!(
        "{}:{}:{}",
        settings.cluster_id,
        settings.node_id,
        settings.data_dir.display()
    );
    let mut raw = crate::metadata::fingerprint(&[0xd1], &text);
    raw[0] |= 0x80;
    Uuid(raw)
}

/// Entropy for election timeouts, so restarted nodes do not repeat their timeouts.
fn seed_from_time() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
