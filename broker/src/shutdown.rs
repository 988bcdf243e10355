//! A core's stop, bounded: what `core_main` does once SIGTERM/SIGINT is seen.
//!
//! 1. Stop accepting (the caller drops the listener), call `Core::stop.stop()`,
//!    which ends every wait raced with [`Core::stopped`]: connections waiting for their next
//!    request close (idle and half-open ones included), long-poll fetches answer with what they
//!    have, and JoinGroup/SyncGroup waiters get COORDINATOR_NOT_AVAILABLE, so clients move on.
//! 2. Drain: wait until no request is being handled, logging each second what is left, at most
//!    until `shutdown_timeout_ms` after the signal; then cancel the connection tasks still busy
//!    (their partition work runs in tasks of its own and is not cut short, see
//!    `partitions::run_local`; only the answers are lost).
//! 3. Wait until every core has drained (a core still draining may send this core partition
//!    work over the mesh), then close the partitions: each is flushed, its indexes sealed.
//!
//! Why the main thread kicks the cores while they stop: glommio 0.9 can park a core while a
//! task is runnable (its run loop leaves `run_task_queues` on a pending preemption before
//! running any queue, then sleeps until the next timer or I/O; likely with the 1 ms preemption
//! timer sluice sets and a busy machine). The timer whose expiry woke the task is spent by then,
//! so a core whose only timers are its own waits sleeps until unrelated I/O arrives, or
//! forever: brokers were still running 40 minutes after SIGTERM (issue 18). While serving,
//! other timers (group ticks, housekeeping, long polls) usually end such a sleep within
//! milliseconds; at start-up (joining the mesh) and during a stop there may be none. So the
//! main thread sends each core thread a signal every [`KICK_PERIOD`], and every
//! [`KICK_PERIOD_STOPPING`] once stopping; its no-op handler has no `SA_RESTART`, so a core
//! asleep in `io_uring_enter` gets EINTR, which glommio takes as a wake-up and runs its queues
//! again. A kick costs an idle core one wake-up; core threads make no blocking call a signal
//! could cut short (file I/O on local disks is not interruptible; sockets go through the
//! reactor). The same sleep can come before an executor's first poll: a core thread reports
//! itself to the main thread before its executor runs (`runtime::CoreSpawner`), because one
//! node in about 600 started under load slept there, unkicked, for minutes; the controller
//! shard's thread is kicked by a [`Kicker`] of its own.

use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::core::Core;

/// How often the main thread kicks each core (see the module docs).
pub const KICK_PERIOD: Duration = Duration::from_millis(100);
/// How often once the broker is stopping.
pub const KICK_PERIOD_STOPPING: Duration = Duration::from_millis(20);
/// The signal that kicks a core; nothing else in sluice uses it.
const KICK_SIGNAL: libc::c_int = libc::SIGUSR2;
/// How often a draining core checks (and logs, every second) what is left.
const DRAIN_POLL: Duration = Duration::from_millis(5);
/// After `shutdown_timeout_ms`, how long closing the partitions may take before the main thread
/// stops waiting for a core.
pub const CLOSE_MARGIN: Duration = Duration::from_secs(30);

extern "C" fn ignore_kick(_: libc::c_int) {}

/// Installs the kick signal's no-op handler, without `SA_RESTART` (see the module docs).
pub fn install_kick_handler() -> std::io::Result<()> {
    // SAFETY: a zeroed sigaction is valid; the handler is async-signal-safe (it does nothing).
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = ignore_kick as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(KICK_SIGNAL, &action, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Interrupts whatever `thread` (a core's executor thread, not yet joined) sleeps in.
pub fn kick(thread: libc::pthread_t) {
    // SAFETY: the thread is joinable and not joined yet, so its id is valid (an exited one
    // answers ESRCH); the signal's handler is installed by `install_kick_handler`.
    unsafe {
        libc::pthread_kill(thread, KICK_SIGNAL);
    }
}

/// Kicks one executor thread every [`KICK_PERIOD`] from a thread of its own, for as long as it
/// lives (for the controller shard, which the main thread's loop does not kick). Made on the
/// executor's thread before the executor runs; dropped there when it has run, and the drop
/// waits for the kicking thread, so no kick reaches the thread after that.
pub struct Kicker {
    done: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Kicker {
    /// Starts kicking the calling thread. `install_kick_handler` must have run.
    pub fn start_for_this_thread() -> std::io::Result<Self> {
        // SAFETY: pthread_self has no preconditions.
        let target = unsafe { libc::pthread_self() };
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&done);
        let thread = std::thread::Builder::new()
            .name("sluice-kicker".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    kick(target);
                    std::thread::sleep(KICK_PERIOD);
                }
            })?;
        Ok(Self {
            done,
            thread: Some(thread),
        })
    }
}

impl Drop for Kicker {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Counts an open connection or a request being handled for as long as it lives, also when
/// its task is cancelled.
pub struct Counted {
    core: Rc<Core>,
    request: bool,
}

impl Counted {
    pub fn connection(core: &Rc<Core>) -> Counted {
        core.connections.set(core.connections.get() + 1);
        Counted {
            core: Rc::clone(core),
            request: false,
        }
    }

    pub fn request(core: &Rc<Core>) -> Counted {
        core.busy.set(core.busy.get() + 1);
        Counted {
            core: Rc::clone(core),
            request: true,
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let counter = if self.request {
            &self.core.busy
        } else {
            &self.core.connections
        };
        counter.set(counter.get() - 1);
    }
}

/// Steps 1 to 3 of the module docs. `drained` counts the cores done draining.
pub async fn drain_and_close(core: &Rc<Core>, drained: &Arc<AtomicUsize>) -> anyhow::Result<()> {
    let started = Instant::now();
    let timeout = Duration::from_millis(core.config.shutdown_timeout_ms);
    let deadline = started + timeout;
    core.stop.stop();
    tracing::info!(
        core = core.id,
        connections = core.connections.get(),
        requests = core.busy.get(),
        "stopping: closing idle connections, answering long polls and group waits"
    );
    let mut next_report = started + Duration::from_secs(1);
    while core.busy.get() > 0 && Instant::now() < deadline {
        glommio::timer::sleep(DRAIN_POLL).await;
        if Instant::now() >= next_report {
            next_report += Duration::from_secs(1);
            tracing::info!(
                core = core.id,
                connections = core.connections.get(),
                requests = core.busy.get(),
                "stopping: waiting for requests in hand"
            );
        }
    }
    let busy = core.busy.get();
    if busy > 0 {
        let tasks: Vec<_> = core.connection_tasks.borrow_mut().drain().collect();
        tracing::warn!(
            core = core.id,
            requests = busy,
            connections = tasks.len(),
            timeout_ms = core.config.shutdown_timeout_ms,
            "shutdown_timeout_ms passed: closing the connections with requests still in hand"
        );
        for (_, task) in tasks {
            task.cancel();
        }
    }
    drained.fetch_add(1, Ordering::SeqCst);
    let cores = core.router.cores();
    let barrier = deadline.max(Instant::now()) + Duration::from_secs(5);
    while drained.load(Ordering::SeqCst) < cores && Instant::now() < barrier {
        glommio::timer::sleep(DRAIN_POLL).await;
    }
    let partitions = core.shard.partitions().len();
    let closing = Instant::now();
    core.shard
        .close()
        .await
        .map_err(|e| anyhow::anyhow!("core {}: closing partitions: {e}", core.id))?;
    tracing::info!(
        core = core.id,
        partitions,
        close_ms = closing.elapsed().as_millis() as u64,
        total_ms = started.elapsed().as_millis() as u64,
        "core stopped"
    );
    Ok(())
}
