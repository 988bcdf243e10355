//! Request/reply between cores over glommio's channel mesh.
//!
//! Every core joins one full mesh of bounded channels carrying [`Envelope`]s. A core that needs a
//! partition owned by another core sends a request and awaits the reply; the reply comes back on
//! the mesh and is handed to the waiting task through a per-request local channel.
//!
//! Deadlock freedom: each core runs one receive loop per peer that never blocks. A request is
//! handed to a freshly spawned task (which may wait to send its reply); a reply is delivered with
//! a non-blocking send into a channel of capacity one that nobody else writes to. So a full
//! channel is always being drained by its receiver.
//!
//! Payloads must be `Send` (`Bytes`, owned strings), never `Rc` or `DmaBuffer`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use glommio::channels::channel_mesh::{MeshBuilder, Receivers, Senders};
use glommio::channels::local_channel::{self, LocalSender};

/// How often a pending mesh join is polled.
const JOIN_TICK: Duration = Duration::from_millis(5);

/// What travels between cores.
#[derive(Debug)]
pub enum Envelope<Req, Rep> {
    Request { from: usize, id: u64, request: Req },
    Reply { id: u64, reply: Rep },
}

/// The mesh could not be joined or a peer has gone: both mean a core died, so the broker stops.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    #[error("cores did not all join the mesh within {0:?}: a core failed to start")]
    JoinTimeout(Duration),
    #[error("joining the mesh failed: {0}")]
    Join(String),
    #[error("core {0} is gone")]
    PeerGone(usize),
}

/// This core's end of the mesh. Lives on one core; not `Send`.
pub struct Mesh<Req: Send + 'static, Rep: Send + 'static> {
    me: usize,
    senders: Senders<Envelope<Req, Rep>>,
    pending: RefCell<HashMap<u64, LocalSender<Rep>>>,
    next_id: Cell<u64>,
}

impl<Req: Send + 'static, Rep: Send + 'static> std::fmt::Debug for Mesh<Req, Rep> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mesh").field("me", &self.me).finish()
    }
}

/// Builds the mesh shared by `cores` executors; clone it into each executor's closure.
pub fn builder<Req: Send + 'static, Rep: Send + 'static>(
    cores: usize,
    channel_size: usize,
) -> MeshBuilder<Envelope<Req, Rep>, glommio::channels::channel_mesh::Full> {
    MeshBuilder::full(cores, channel_size)
}

impl<Req: Send + 'static, Rep: Send + 'static> Mesh<Req, Rep> {
    /// Joins the mesh (waiting at most `timeout` for every peer: glommio's join waits forever
    /// for a peer that never comes) and starts one receive loop per peer. `serve` answers the
    /// requests other cores send to this one.
    pub async fn join<F, Fut>(
        builder: MeshBuilder<Envelope<Req, Rep>, glommio::channels::channel_mesh::Full>,
        timeout: Duration,
        serve: F,
    ) -> Result<Rc<Self>, MeshError>
    where
        F: Fn(usize, Req) -> Fut + 'static,
        Fut: Future<Output = Rep> + 'static,
    {
        // glommio's join can miss the wake-up from a peer that joins while this executor is
        // parked (seen here: start-up stalled until the timeout fired, then joined at once), so
        // poll it on a short tick instead of waiting for one wake-up.
        let mut join = std::pin::pin!(builder.join());
        let deadline = std::time::Instant::now() + timeout;
        let (senders, receivers) = loop {
            let tick = futures_lite::future::or(async { Some((&mut join).await) }, async {
                glommio::timer::sleep(JOIN_TICK).await;
                None
            })
            .await;
            match tick {
                Some(Ok(pair)) => break pair,
                Some(Err(e)) => return Err(MeshError::Join(e.to_string())),
                None if std::time::Instant::now() >= deadline => {
                    return Err(MeshError::JoinTimeout(timeout));
                }
                None => {}
            }
        };
        let mesh = Rc::new(Mesh {
            me: senders.peer_id(),
            senders,
            pending: RefCell::new(HashMap::new()),
            next_id: Cell::new(0),
        });
        Self::spawn_receivers(&mesh, receivers, Rc::new(serve));
        Ok(mesh)
    }

    fn spawn_receivers<F, Fut>(
        mesh: &Rc<Self>,
        mut receivers: Receivers<Envelope<Req, Rep>>,
        serve: Rc<F>,
    ) where
        F: Fn(usize, Req) -> Fut + 'static,
        Fut: Future<Output = Rep> + 'static,
    {
        for (peer, receiver) in receivers.streams() {
            let mesh = Rc::clone(mesh);
            let serve = Rc::clone(&serve);
            glommio::spawn_local(async move {
                while let Some(envelope) = receiver.recv().await {
                    match envelope {
                        Envelope::Request { from, id, request } => {
                            let mesh = Rc::clone(&mesh);
                            let serve = Rc::clone(&serve);
                            glommio::spawn_local(async move {
                                let reply = serve(from, request).await;
                                // A send fails only when the peer has gone, which ends the broker.
                                let _ = mesh
                                    .senders
                                    .send_to(from, Envelope::Reply { id, reply })
                                    .await;
                            })
                            .detach();
                        }
                        Envelope::Reply { id, reply } => {
                            let waiter = mesh.pending.borrow_mut().remove(&id);
                            if let Some(waiter) = waiter {
                                // Capacity one, one reply per id: never full; an error only
                                // means the asking task was dropped.
                                let _ = waiter.try_send(reply);
                            }
                        }
                    }
                }
                let _ = peer;
            })
            .detach();
        }
    }

    /// This core's index.
    pub fn me(&self) -> usize {
        self.me
    }

    /// Number of cores in the mesh.
    pub fn cores(&self) -> usize {
        self.senders.nr_consumers()
    }

    /// Sends `request` to `core` and awaits its reply. Must not be called for this core itself:
    /// the caller handles local work directly.
    pub async fn call(&self, core: usize, request: Req) -> Result<Rep, MeshError> {
        assert_ne!(core, self.me, "a core never sends a mesh request to itself");
        let id = self.next_id.get();
        self.next_id.set(id.wrapping_add(1));
        let (tx, rx) = local_channel::new_bounded(1);
        self.pending.borrow_mut().insert(id, tx);
        let sent = self
            .senders
            .send_to(
                core,
                Envelope::Request {
                    from: self.me,
                    id,
                    request,
                },
            )
            .await;
        if sent.is_err() {
            self.pending.borrow_mut().remove(&id);
            return Err(MeshError::PeerGone(core));
        }
        rx.recv().await.ok_or(MeshError::PeerGone(core))
    }
}
