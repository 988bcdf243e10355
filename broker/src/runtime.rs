//! Start-up and shutdown: checks, one pinned glommio executor per core, every core accepting on
//! the same port, and an orderly stop on SIGTERM/SIGINT.
//!
//! Shutdown (`shutdown.rs`): the signal sets a flag that each core polls every 50 ms; the core
//! stops accepting, wakes every wait that would hold the stop up (idle connections close, long
//! polls answer, group waits end), lets the requests in hand finish until
//! `shutdown_timeout_ms`, then cancels the connections still busy; once every core has drained,
//! each closes its partitions cleanly and returns, and the process exits 0. The main thread
//! gives up (exit 1, saying which cores did not stop) if that takes far longer than the timeout.
//! A core that fails ends the whole process with exit code 1, so the broker is never half
//! alive.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use glommio::channels::shared_channel::{SharedReceiver, SharedSender};
use glommio::net::TcpListener;
use glommio::{LocalExecutorBuilder, Placement};
use sluice_controller::MetadataImage;
use sluice_net::Request;

use crate::config::BrokerConfig;
use crate::connection::{self, Limits};
use crate::core::{Control, Core, CoreParts};
use crate::forward::{ControllerLink, Forwarded};
use crate::limits::{LISTEN_BACKLOG_MAX, MESH_CHANNEL_MAX};
use crate::mesh::{self, Mesh};
use crate::messages::{CoreReply, CoreRequest};
use crate::metadata::TopicTable;
use crate::producer_ids::ProducerIds;
use crate::registry::Registry;
use crate::router::{CONTROL_CORE, Router};
use crate::startup;

const STOP_POLL: Duration = Duration::from_millis(50);
const MESH_JOIN_TIMEOUT: Duration = Duration::from_secs(20);
/// Metadata images waiting for the control core; when full, the shard sends a later one.
const METADATA_IMAGES_QUEUED: usize = 4;

/// What each core reports to the main thread.
enum CoreEvent {
    /// The core's executor thread, for [`crate::shutdown::kick`].
    Thread(usize, libc::pthread_t),
    Listening,
    Stopped(usize),
    Failed(usize, String),
    /// The core's executor thread has ended (sent from a drop guard, so also when the executor
    /// could not be built or the core panicked).
    Gone(usize),
}

/// How often a core whose executor could not be built is started (the executor is built inside
/// the core's new thread, which ends with the error; the main thread learns it from `join`).
const CORE_START_ATTEMPTS: u32 = 3;
const CORE_START_RETRY: Duration = Duration::from_millis(200);

/// The control core's ends of the controller shard's channels (images in, forwarded requests
/// out and their answers in).
type ControlEnds = (
    SharedReceiver<MetadataImage>,
    (SharedSender<Request>, SharedReceiver<Forwarded>),
);

/// A core's thread; it ends with the executor's build error, if it could not be built.
type CoreThread = std::thread::JoinHandle<Result<(), String>>;

/// The builder of the mesh every core joins.
type CoreMesh = glommio::channels::channel_mesh::MeshBuilder<
    mesh::Envelope<CoreRequest, CoreReply>,
    glommio::channels::channel_mesh::Full,
>;

/// Everything a core's executor is started from, kept so that a core whose executor could not
/// be built can be started again.
struct CoreSpawner {
    /// The CPUs this process may run on; core `id` is pinned to the `id`-th (none: unpinned).
    cpus: Vec<usize>,
    config: BrokerConfig,
    addr: SocketAddr,
    mesh_builder: CoreMesh,
    stop: Arc<AtomicBool>,
    drained: Arc<std::sync::atomic::AtomicUsize>,
    events: mpsc::Sender<CoreEvent>,
    topics: TopicTable,
    cluster_id: String,
    /// Taken by the control core once its executor runs; still here if it could not be built.
    control_ends: Arc<std::sync::Mutex<Option<ControlEnds>>>,
}

/// Reports [`CoreEvent::Gone`] when the executor thread lets go of the core's start-up closure.
struct GoneGuard {
    id: usize,
    events: mpsc::Sender<CoreEvent>,
}

impl Drop for GoneGuard {
    fn drop(&mut self) {
        let _ = self.events.send(CoreEvent::Gone(self.id));
    }
}

impl CoreSpawner {
    /// Starts core `id`'s pinned executor.
    fn spawn(&self, id: usize) -> anyhow::Result<CoreThread> {
        let placement = if self.cpus.is_empty() {
            Placement::Unbound
        } else {
            Placement::Fixed(self.cpus[id % self.cpus.len()])
        };
        let config = self.config.clone();
        let addr = self.addr;
        let mesh_builder = self.mesh_builder.clone();
        let stop = Arc::clone(&self.stop);
        let drained = Arc::clone(&self.drained);
        let events = self.events.clone();
        let guard = GoneGuard {
            id,
            events: self.events.clone(),
        };
        let topics = self.topics.clone();
        let cluster_id = self.cluster_id.clone();
        let control_ends = Arc::clone(&self.control_ends);
        let builder = LocalExecutorBuilder::new(placement)
            .io_memory(config.io_memory_bytes)
            // The default 100 ms preemption timer let a 5 ms timer fire 100-300 ms late behind
            // CPU-heavy work (DESIGN.md, "Measured here").
            .preempt_timer(Duration::from_millis(1));
        // Our own thread rather than `LocalExecutorBuilder::spawn`, which calls the future's
        // maker only inside the executor's first poll: the main thread must learn the thread
        // before that, because glommio can sleep before its first poll (a preemption already
        // pending when its run loop starts, under load) with no timer to end the sleep; the
        // main thread's kicks (`shutdown::kick`) end it, if it knows whom to kick.
        // glommio numbers executors as they are built, and the mesh orders its peers by that
        // number: core `id` must be built before core `id + 1`, so this waits for the build.
        let (built_tx, built_rx) = mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name(format!("sluice-core-{id}"))
            .spawn(move || -> Result<(), String> {
                let _guard = guard;
                let executor = builder.make().map_err(|e| e.to_string());
                let _ = built_tx.send(());
                let executor = executor?;
                // SAFETY: pthread_self has no preconditions.
                let _ = events.send(CoreEvent::Thread(id, unsafe { libc::pthread_self() }));
                executor.run(async move {
                    let ends = if id == CONTROL_CORE {
                        control_ends.lock().ok().and_then(|mut ends| ends.take())
                    } else {
                        None
                    };
                    let (images, forwarded) = ends.unzip();
                    let boot = Boot {
                        id,
                        config,
                        addr,
                        topics,
                        cluster_id,
                        images,
                        forwarded,
                    };
                    let result = core_main(boot, mesh_builder, stop, drained, events.clone()).await;
                    let _ = events.send(match result {
                        Ok(()) => CoreEvent::Stopped(id),
                        Err(e) => CoreEvent::Failed(id, format!("{e:#}")),
                    });
                });
                Ok(())
            })
            .map_err(|e| anyhow::anyhow!("cannot start the thread of core {id}: {e}"))?;
        // Err only if the thread ended without building (it panicked): the supervisor sees that.
        let _ = built_rx.recv();
        Ok(thread)
    }
}

/// Runs the broker until SIGTERM/SIGINT. Returns the process exit code.
pub fn run(config: BrokerConfig) -> anyhow::Result<i32> {
    startup::keep_freed_memory();
    config.validate()?;
    startup::check_io_uring_allowed(std::path::Path::new("/proc/sys/kernel/io_uring_disabled"))?;
    let cluster = config.cluster()?;
    if let Some(cluster) = cluster.as_ref().filter(|c| !c.broker) {
        return run_controller_only(&config, cluster);
    }
    let cores = config.core_count();
    startup::ensure_memlock(
        crate::tune::memlock_needed(config.io_memory_bytes, cores),
        cores,
    )?;
    let _data_lock = startup::lock_data_dir(&config.data_dir)?;
    let (addr, _port_lock) = startup::claim_port(config.listen)?;
    let mut topics = TopicTable::load(&config.data_dir)?;
    if topics.add_bootstrap_configs() {
        // Stored before any core starts, so the cluster-level defaults are on disk from the
        // first start on.
        topics.store(&config.data_dir)?;
    }
    let cluster_id = match &cluster {
        Some(c) => c.cluster_id.clone(),
        None => startup::cluster_id(&config.data_dir)?,
    };

    let stop = Arc::new(AtomicBool::new(false));
    // The signal, and the stop it leads to: on a cluster broker only once the controlled
    // shutdown is over (`Leaving`), meanwhile every core serves as before.
    let signalled = Arc::new(AtomicBool::new(false));
    let drained = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&signalled))?;
    }
    let leaving = Arc::new(crate::stop::Leaving::default());
    // The controller shard publishes each new metadata image to the control core, which hands
    // it to every core over the mesh.
    let (images_tx, images_rx) =
        glommio::channels::shared_channel::new_bounded::<MetadataImage>(METADATA_IMAGES_QUEUED);
    // And the control core forwards requests through it to the active controller.
    let (forward_tx, forward_rx) = glommio::channels::shared_channel::new_bounded(1);
    let (answers_tx, answers_rx) = glommio::channels::shared_channel::new_bounded(1);
    let shard_ends = ShardEnds {
        images: images_tx,
        forwarded: (forward_rx, answers_tx),
    };
    let ends = Some((shard_ends, Arc::clone(&leaving)));
    let controller = start_controller(&config, cluster.as_ref(), addr, ends, &stop)?;
    let leaving = controller.is_some().then_some(leaving);
    let images_rx = controller.is_some().then_some(images_rx);
    let forwarded = controller.is_some().then_some((forward_tx, answers_rx));

    let (events, inbox) = mpsc::channel::<CoreEvent>();
    let spawner = CoreSpawner {
        cpus: core_affinity::get_core_ids()
            .map(|ids| ids.into_iter().map(|c| c.id).collect())
            .unwrap_or_default(),
        config: config.clone(),
        addr,
        mesh_builder: mesh::builder::<CoreRequest, CoreReply>(cores, MESH_CHANNEL_MAX),
        stop: Arc::clone(&stop),
        drained: Arc::clone(&drained),
        events,
        topics,
        cluster_id,
        control_ends: Arc::new(std::sync::Mutex::new(images_rx.zip(forwarded))),
    };
    let mut threads = Vec::with_capacity(cores);
    for id in 0..cores {
        threads.push(Some(spawner.spawn(id)?));
    }
    let mut attempts = vec![1; cores];

    crate::shutdown::install_kick_handler()?;
    let mut listening = 0;
    let mut threads_of: Vec<Option<libc::pthread_t>> = vec![None; cores];
    let mut stopped = vec![false; cores];
    let mut give_up: Option<std::time::Instant> = None;
    let mut leave_by: Option<Instant> = None;
    while stopped.iter().any(|s| !s) {
        if signalled.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
            let leave_by = *leave_by.get_or_insert_with(|| {
                Instant::now() + Duration::from_millis(config.controlled_shutdown_timeout_ms)
            });
            if !still_leaving(leaving.as_deref(), leave_by) {
                stop.store(true, Ordering::Relaxed);
            }
        }
        if give_up.is_none() && stop.load(Ordering::Relaxed) {
            give_up = Some(
                std::time::Instant::now()
                    + Duration::from_millis(config.shutdown_timeout_ms)
                    + crate::shutdown::CLOSE_MARGIN,
            );
        }
        for (core, thread) in threads_of.iter().enumerate() {
            if let (false, Some(thread)) = (stopped[core], thread) {
                crate::shutdown::kick(*thread);
            }
        }
        if give_up.is_some_and(|t| std::time::Instant::now() > t) {
            let waiting: Vec<usize> = (0..cores).filter(|&c| !stopped[c]).collect();
            eprintln!(
                "sluice: cores {waiting:?} did not stop within shutdown_timeout_ms ({} ms) + {} s; \
                 exiting without them (acknowledged records are on disk)",
                config.shutdown_timeout_ms,
                crate::shutdown::CLOSE_MARGIN.as_secs()
            );
            return Ok(1);
        }
        let wait = if give_up.is_some() {
            crate::shutdown::KICK_PERIOD_STOPPING
        } else {
            crate::shutdown::KICK_PERIOD
        };
        match inbox.recv_timeout(wait) {
            Ok(CoreEvent::Thread(id, thread)) => threads_of[id] = Some(thread),
            Ok(CoreEvent::Listening) => {
                listening += 1;
                if listening == cores {
                    println!(
                        "sluice: listening on {addr} ({cores} cores, data dir {})",
                        config.data_dir.display()
                    );
                    tracing::info!(%addr, cores, "listening");
                }
            }
            Ok(CoreEvent::Stopped(id)) => {
                stopped[id] = true;
            }
            Ok(CoreEvent::Failed(id, message)) => {
                eprintln!("sluice: core {id} failed: {message}");
                return Ok(1);
            }
            Ok(CoreEvent::Gone(id)) if !stopped[id] => {
                let error = match threads[id].take().map(|handle| handle.join()) {
                    Some(Ok(Err(e))) => e,
                    Some(Err(_)) => "it panicked".to_string(),
                    _ => "it ended without reporting".to_string(),
                };
                // An executor that could not be built (its thread ended before the core ran)
                // is tried again: the other cores wait for it at the mesh join.
                if threads_of[id].is_none() && attempts[id] < CORE_START_ATTEMPTS {
                    eprintln!("sluice: core {id} could not start ({error}); trying again");
                    std::thread::sleep(CORE_START_RETRY);
                    attempts[id] += 1;
                    threads[id] = Some(spawner.spawn(id)?);
                    continue;
                }
                eprintln!("sluice: core {id} failed: {error}");
                return Ok(1);
            }
            Ok(CoreEvent::Gone(_)) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                eprintln!("sluice: a core ended without reporting (panic?)");
                return Ok(1);
            }
        }
    }
    for handle in threads.into_iter().flatten() {
        let _ = handle.join();
    }
    if let Some(handle) = controller {
        stop.store(true, Ordering::Relaxed);
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("sluice: the controller failed: {e:#}"),
            Err(_) => eprintln!("sluice: the controller thread panicked"),
        }
    }
    tracing::info!("stopped");
    Ok(0)
}

/// Whether a cluster broker's controlled shutdown still holds the stop (asking for it first):
/// until the lifecycle task releases it, or `leave_by`. `None`: not a cluster broker.
fn still_leaving(leaving: Option<&crate::stop::Leaving>, leave_by: Instant) -> bool {
    let Some(leaving) = leaving else {
        return false;
    };
    if !leaving.is_requested() {
        leaving.request();
        println!("sluice: controlled shutdown: moving leaderships to other replicas");
        tracing::info!("controlled shutdown requested");
    }
    if leaving.is_released() {
        return false;
    }
    if Instant::now() >= leave_by {
        tracing::warn!(
            "controlled shutdown: not released within controlled_shutdown_timeout_ms; stopping"
        );
        return false;
    }
    true
}

/// Starts the controller shard when this node is a voter of a controller quorum.
fn start_controller(
    config: &BrokerConfig,
    cluster: Option<&crate::config::ClusterSettings>,
    bound: SocketAddr,
    ends: Option<(ShardEnds, Arc<crate::stop::Leaving>)>,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<Option<crate::controller::ControllerThread>> {
    let Some(cluster) = cluster else {
        return Ok(None);
    };
    let listen = match (cluster.controller, cluster.controller_listen) {
        (true, Some(listen)) => Some(listen),
        (true, None) => anyhow::bail!("a controller needs controller_listen"),
        (false, _) => None,
    };
    let settings = crate::controller::ControllerSettings {
        node_id: config.node_id,
        voters: cluster.voters.clone(),
        listen,
        cluster_id: cluster.cluster_id.clone(),
        data_dir: config.data_dir.clone(),
        broker_listener: cluster.broker.then(|| {
            let (host, port) = advertised(config, bound);
            (host, u16::try_from(port).unwrap_or(0))
        }),
        heartbeat_interval_ms: config.broker_heartbeat_interval_ms,
        session_timeout_ms: config.broker_session_timeout_ms,
        quorum_fetch_timeout_ms: config.controller_quorum_fetch_timeout_ms,
        snapshot_bytes_max: config.metadata_log_max_record_bytes_between_snapshots,
        quorum_election_timeout_ms: config.controller_quorum_election_timeout_ms,
        forwarded: None,
        auto_leader_rebalance: config.auto_leader_rebalance_enable,
        leader_imbalance_check_interval_ms: config.leader_imbalance_check_interval_ms,
        unclean_leader_election: config.unclean_leader_election_enable,
        leaving: Arc::default(),
    };
    let (images, forwarded, leaving) = match ends {
        Some((ends, leaving)) if cluster.broker => {
            (Some(ends.images), Some(ends.forwarded), leaving)
        }
        _ => (None, None, Arc::default()),
    };
    let settings = crate::controller::ControllerSettings {
        forwarded,
        leaving,
        ..settings
    };
    crate::controller::spawn(settings, images, Arc::clone(stop)).map(Some)
}

/// A node with the controller role only (Kafka's `process.roles=controller`): the controller
/// shard and no data cores, until SIGTERM/SIGINT.
fn run_controller_only(
    config: &BrokerConfig,
    cluster: &crate::config::ClusterSettings,
) -> anyhow::Result<i32> {
    let _data_lock = startup::lock_data_dir(&config.data_dir)?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop))?;
    }
    let unused = SocketAddr::from(([127, 0, 0, 1], 0));
    let Some(handle) = start_controller(config, Some(cluster), unused, None, &stop)? else {
        return Ok(1);
    };
    println!(
        "sluice: listening on {} (controller {} only, data dir {})",
        cluster
            .controller_listen
            .map_or_else(String::new, |a| a.to_string()),
        config.node_id,
        config.data_dir.display()
    );
    match handle.join() {
        Ok(Ok(())) => Ok(0),
        Ok(Err(e)) => {
            eprintln!("sluice: the controller failed: {e:#}");
            Ok(1)
        }
        Err(_) => {
            eprintln!("sluice: the controller thread panicked");
            Ok(1)
        }
    }
}

/// On the control core: every metadata image the controller shard publishes goes to every
/// core of this node (this one in place), in order.
fn spawn_image_fanout(core: &Rc<Core>, images: SharedReceiver<MetadataImage>) {
    let core = Rc::clone(core);
    glommio::spawn_local(async move {
        let images = images.connect().await;
        while let Some(image) = images.recv().await {
            for peer in 0..core.router.cores() {
                let request = CoreRequest::MetadataImage(image.clone());
                if let Err(e) = core.router.call(peer, request).await {
                    tracing::warn!(core = peer, error = %e, "metadata image not delivered");
                }
            }
        }
    })
    .detach();
}

/// What a core starts from.
struct Boot {
    id: usize,
    config: BrokerConfig,
    addr: SocketAddr,
    topics: TopicTable,
    cluster_id: String,
    /// On the control core of a cluster node: the controller shard's metadata images.
    images: Option<SharedReceiver<MetadataImage>>,
    /// On the control core of a cluster node: requests forwarded through the shard to the
    /// active controller.
    forwarded: Option<(SharedSender<Request>, SharedReceiver<Forwarded>)>,
}

/// The controller shard's ends of its channels to the control core.
struct ShardEnds {
    images: SharedSender<MetadataImage>,
    forwarded: (SharedReceiver<Request>, SharedSender<Forwarded>),
}

async fn core_main(
    boot: Boot,
    mesh_builder: CoreMesh,
    stop: Arc<AtomicBool>,
    drained: Arc<std::sync::atomic::AtomicUsize>,
    events: mpsc::Sender<CoreEvent>,
) -> anyhow::Result<()> {
    let Boot {
        id,
        config,
        addr,
        topics,
        cluster_id,
        images,
        forwarded,
    } = boot;
    // The core is shared with the mesh's serve closure, which exists before the core does.
    let slot: Rc<std::cell::OnceCell<Rc<Core>>> = Rc::new(std::cell::OnceCell::new());
    let serve_slot = Rc::clone(&slot);
    let mesh = Mesh::join(mesh_builder, MESH_JOIN_TIMEOUT, move |from, request| {
        let core = serve_slot.get().cloned();
        async move {
            match core {
                Some(core) => core.serve(from, request).await,
                None => CoreReply::Pong,
            }
        }
    })
    .await?;
    assert_eq!(mesh.me(), id, "mesh peer ids follow executor ids");
    // First DmaFile of this executor: an existing non-empty file, so glommio's polled-I/O probe
    // does not wrongly enable polling (DESIGN.md, "Measured here", glommio #605/#670).
    sluice_shard::probe_dma_polling(&config.data_dir)
        .await
        .map_err(|e| anyhow::anyhow!("core {id}: data dir {}: {e}", config.data_dir.display()))?;
    let shard = sluice_shard::Shard::open(
        sluice_shard::DmaStorage,
        &config.data_dir,
        config.shard_config(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("core {id}: {e}"))?;
    let control = if id == CONTROL_CORE {
        let controller =
            forwarded.map(|(requests, answers)| Rc::new(ControllerLink::new(requests, answers)));
        if let Some(link) = &controller {
            link.connect_in_background();
        }
        let producer_ids = match &controller {
            Some(link) => ProducerIds::from_controller(Rc::clone(link)),
            None => ProducerIds::load(&config.data_dir)
                .map_err(|e| anyhow::anyhow!("producer ids: {e}"))?,
        };
        Some(Control {
            registry: Registry::new(config.data_dir.clone()),
            producer_ids,
            controller,
        })
    } else {
        None
    };
    let (advertised_host, advertised_port) = advertised(&config, addr);
    let core = Core::new(CoreParts {
        config,
        advertised_host,
        advertised_port,
        router: Rc::new(Router::new(mesh)),
        topics,
        cluster_id,
        shard,
        control,
    });
    let table = core.topics();
    core.open_owned_partitions(&table).await;
    spawn_housekeeping(&core);
    spawn_group_timers(&core);
    glommio::spawn_local(crate::txn::host::TxnHost::run_timers(core.txn_env())).detach();
    if core.config.is_cluster() {
        glommio::spawn_local(crate::fetcher::run(Rc::clone(&core))).detach();
        glommio::spawn_local(crate::isr::run(Rc::clone(&core))).detach();
    }
    if let Some(images) = images {
        spawn_image_fanout(&core, images);
    }
    if id == CONTROL_CORE
        && let Ok(addr) = core.config.metrics_listen.parse::<SocketAddr>()
    {
        let (stopping, gathering) = (Rc::clone(&core), Rc::clone(&core));
        crate::metrics::spawn_server(
            addr,
            Rc::new(move || stopping.stop.is_stopping()),
            move || {
                let core = Rc::clone(&gathering);
                async move { core.gather_metrics().await }
            },
        );
    }
    let _ = slot.set(Rc::clone(&core));
    // Every peer answers before this core accepts clients: a core that cannot reach the others
    // must not take connections it could only half serve.
    for peer in (0..core.router.cores()).filter(|&p| p != id) {
        core.router.call(peer, CoreRequest::Ping).await?;
    }

    let listener =
        listen(addr).map_err(|e| anyhow::anyhow!("core {id} cannot listen on {addr}: {e}"))?;
    let _ = events.send(CoreEvent::Listening);

    let stop_wait = async {
        while !stop.load(Ordering::Relaxed) {
            glommio::timer::sleep(STOP_POLL).await;
        }
    };
    let accept_loop = async {
        let mut refusals = Refusals::default();
        loop {
            match listener.accept().await {
                Ok(stream) if core.connections.get() >= core.config.core_connections_max => {
                    refuse_connection(&core, stream, &mut refusals);
                }
                Ok(stream) => {
                    spawn_connection(&core, stream);
                }
                Err(e) => {
                    tracing::warn!(core = id, error = %e, "accept failed");
                    glommio::timer::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    };
    futures_lite::future::or(stop_wait, accept_loop).await;
    drop(listener);
    crate::shutdown::drain_and_close(&core, &drained).await
}

/// Runs this core's group timers (`groups::timers`) until the broker stops.
fn spawn_group_timers(core: &Rc<Core>) {
    let core = Rc::clone(core);
    glommio::spawn_local(async move {
        let partitions = || crate::groups::offsets_partitions(core.topics().registry());
        let (groups, shard, stop) = (&core.groups, &core.shard, &core.stop);
        crate::groups::timers::run(groups, shard, stop, &partitions, crate::registry::now_ms).await;
    })
    .detach();
}

/// How often retention and interval flushes run.
const HOUSEKEEPING_PERIOD: Duration = Duration::from_millis(500);

/// Background work in its own task queue, at a lower share than request handling: flushes for
/// topics with a flush interval, retention, and compaction of `cleanup.policy=compact` topics
/// every `log_cleaner_backoff_ms` (the shard yields between batches, so a pass does not stall
/// the reactor).
fn spawn_housekeeping(core: &Rc<Core>) {
    let queue = glommio::executor().create_task_queue(
        glommio::Shares::Static(100),
        glommio::Latency::NotImportant,
        "housekeeping",
    );
    let core = Rc::clone(core);
    let task = glommio::spawn_local_into(
        async move {
            let mut ticks: u64 = 0;
            let mut last_compaction = std::time::Instant::now();
            let cleaner_backoff = Duration::from_millis(core.config.log_cleaner_backoff_ms);
            loop {
                glommio::timer::sleep(HOUSEKEEPING_PERIOD).await;
                if core.stop.is_stopping() {
                    return;
                }
                if let Err(e) = core.shard.flush_due().await {
                    tracing::error!(core = core.id, error = %e, "interval flush failed");
                }
                ticks += 1;
                // Retention every 5 s.
                if ticks.is_multiple_of(10)
                    && let Err(e) = core.shard.enforce_retention().await
                {
                    tracing::error!(core = core.id, error = %e, "retention failed");
                }
                if last_compaction.elapsed() >= cleaner_backoff {
                    last_compaction = std::time::Instant::now();
                    let now_ms = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as i64);
                    match core.shard.compact_due(now_ms).await {
                        Ok(s) if s.passes > 0 => tracing::info!(
                            core = core.id,
                            passes = s.passes,
                            segments = s.segments_cleaned,
                            bytes_before = s.bytes_before,
                            bytes_after = s.bytes_after,
                            records_dropped = s.records_dropped,
                            "compacted"
                        ),
                        Ok(_) => {}
                        Err(e) => tracing::error!(core = core.id, error = %e, "compaction failed"),
                    }
                }
            }
        },
        queue,
    );
    if let Ok(task) = task {
        task.detach();
    }
}

/// How often a core at `core_connections_max` may log that it refuses connections.
const REFUSAL_WARNING_PERIOD: Duration = Duration::from_secs(1);

/// Rate-limits the warning of a core refusing connections at `core_connections_max`: one line
/// at most every [`REFUSAL_WARNING_PERIOD`], carrying the count refused since the last one.
/// Lives in the core's accept loop.
#[derive(Debug, Default)]
struct Refusals {
    /// Refused since the last warning.
    unlogged: u64,
    last_warning: Option<Instant>,
}

impl Refusals {
    /// Counts one refusal at `now`; the count to log when a warning is due.
    fn refused(&mut self, now: Instant) -> Option<u64> {
        self.unlogged += 1;
        let due = self
            .last_warning
            .is_none_or(|last| now.duration_since(last) >= REFUSAL_WARNING_PERIOD);
        if !due {
            return None;
        }
        self.last_warning = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}

/// Closes a connection just accepted by a core at `core_connections_max` (the client reads
/// EOF), counts it, and warns at most once a second.
fn refuse_connection(core: &Rc<Core>, stream: glommio::net::TcpStream, refusals: &mut Refusals) {
    // Dropping the stream closes its descriptor at once: no task, no read, no buffer.
    drop(stream);
    core.metrics.connection_refused();
    if let Some(refused) = refusals.refused(Instant::now()) {
        tracing::warn!(
            core = core.id,
            open = core.connections.get(),
            "connection limit reached: this core holds core_connections_max ({}) connections \
             and closes new ones at once; {refused} refused since the last warning",
            core.config.core_connections_max
        );
    }
}

fn spawn_connection(core: &Rc<Core>, stream: glommio::net::TcpStream) {
    let limits = Limits {
        request_bytes_max: core.config.request_bytes_max,
        inflight_max: core.config.connection_inflight_max,
    };
    let id = core.next_connection.get();
    core.next_connection.set(id + 1);
    let task_core = Rc::clone(core);
    let peer_ip: Rc<str> = stream
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default()
        .into();
    // Counted from the accept on, not from when the task first runs, so a burst of accepts
    // cannot pass `core_connections_max`.
    let open = crate::shutdown::Counted::connection(core);
    let handle = glommio::spawn_local(async move {
        let core = task_core;
        let _open = open;
        core.metrics.connection_accepted();
        let handler_core = Rc::clone(&core);
        let stopping_core = Rc::clone(&core);
        connection::serve(
            stream,
            Rc::clone(&core.budget),
            limits,
            move |frame| {
                let core = Rc::clone(&handler_core);
                let peer_ip = Rc::clone(&peer_ip);
                async move {
                    let _busy = crate::shutdown::Counted::request(&core);
                    crate::handlers::handle(&core, frame, &peer_ip).await
                }
            },
            move || stopping_core.stop.is_stopping(),
            core.stop.stopped(),
        )
        .await;
        core.connection_tasks.borrow_mut().remove(&id);
    })
    .detach();
    core.connection_tasks.borrow_mut().insert(id, handle);
}

/// A listening socket shared by every core (SO_REUSEPORT), also with SO_REUSEADDR so a
/// restart can bind while the previous run's connections sit in TIME_WAIT.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    use std::os::fd::{FromRawFd, IntoRawFd};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG_MAX)?;
    // SAFETY: the fd is a listening TCP socket we own and hand over exactly once.
    Ok(unsafe { TcpListener::from_raw_fd(socket.into_raw_fd()) })
}

/// The host and port put in Metadata: `--advertise` or the bound address.
fn advertised(config: &BrokerConfig, bound: SocketAddr) -> (String, i32) {
    if let Some(adv) = &config.advertise
        && let Some((host, port)) = adv.rsplit_once(':')
        && let Ok(port) = port.parse::<i32>()
    {
        return (host.trim_matches(['[', ']']).to_owned(), port);
    }
    (bound.ip().to_string(), i32::from(bound.port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves the refusal warning comes at most once a period and carries every refusal since
    /// the previous one: the first refusal warns at once, the ones within the period are only
    /// counted, and the first after it reports them all.
    #[test]
    fn refusal_warnings_are_rate_limited_and_count_the_refused() {
        let start = Instant::now();
        let mut r = Refusals::default();
        assert_eq!(r.refused(start), Some(1));
        for ms in [1, 500, 999] {
            assert_eq!(r.refused(start + Duration::from_millis(ms)), None);
        }
        assert_eq!(r.refused(start + REFUSAL_WARNING_PERIOD), Some(4));
        assert_eq!(r.refused(start + REFUSAL_WARNING_PERIOD), None);
        assert_eq!(r.refused(start + 3 * REFUSAL_WARNING_PERIOD), Some(2));
    }
}
