//! The one place that decides where a cross-core call runs: in place when it is for this core,
//! over the mesh otherwise.
//!
//! Every service that needs another core (partition work, group calls, registry changes,
//! producer ids, metrics) goes through [`Router::call`], so there is one code path for local
//! and remote work: a call to this core runs the same `serve` function the mesh's receive loop
//! runs, in the caller's task, without a message.

use std::cell::OnceCell;
use std::rc::Rc;

use futures_lite::future::BoxedLocal;

use crate::image::TopicImage;
use crate::mesh::{Mesh, MeshError};
use crate::messages::{Addressed, CoreReply, CoreRequest, PartError, PartitionOpResult};

/// The core that owns the single-writer services of a node: the topic registry and the
/// producer id block (the controller shard of the cluster design takes these over).
pub const CONTROL_CORE: usize = 0;

/// Answers a request addressed to this core: `(from core, request)`.
pub type Serve = Rc<dyn Fn(usize, CoreRequest) -> BoxedLocal<CoreReply>>;

/// This core's way to every core, itself included.
pub struct Router {
    mesh: Rc<Mesh<CoreRequest, CoreReply>>,
    local: OnceCell<Serve>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router").field("me", &self.me()).finish()
    }
}

impl Router {
    pub fn new(mesh: Rc<Mesh<CoreRequest, CoreReply>>) -> Router {
        Router {
            mesh,
            local: OnceCell::new(),
        }
    }

    /// Installs the function that answers calls to this core (once, when the core is built).
    pub fn set_local(&self, serve: Serve) {
        assert!(
            self.local.set(serve).is_ok(),
            "a router's local serve is set once"
        );
    }

    /// This core's index.
    pub fn me(&self) -> usize {
        self.mesh.me()
    }

    /// Number of cores.
    pub fn cores(&self) -> usize {
        self.mesh.cores()
    }

    /// Runs `request` on `core`: in place for this core, over the mesh for another.
    pub async fn call(&self, core: usize, request: CoreRequest) -> Result<CoreReply, MeshError> {
        if core == self.me() {
            let serve = self.local.get().cloned().ok_or(MeshError::PeerGone(core))?;
            return Ok(serve(core, request).await);
        }
        self.mesh.call(core, request).await
    }

    /// Runs `ops` on their owning cores (as `image` places them), concurrently, one call per
    /// owning core (batched, never one message per partition); an op on a partition this node
    /// does not serve fails without a message, with [`TopicImage::not_served`]'s reason.
    /// Results in the order of `ops`.
    pub async fn partitions(
        self: &Rc<Self>,
        image: &TopicImage,
        ops: Vec<Addressed>,
    ) -> Vec<PartitionOpResult> {
        let n = ops.len();
        let mut out: Vec<Option<PartitionOpResult>> = (0..n).map(|_| None).collect();
        let mut by_core: Vec<(usize, Vec<usize>, Vec<Addressed>)> = Vec::new();
        for (i, op) in ops.into_iter().enumerate() {
            let Some(owner) = image.core_for(&op.topic, op.partition) else {
                out[i] = Some(op.op.failure()(image.not_served(&op.topic, op.partition)));
                continue;
            };
            match by_core.iter_mut().find(|(o, _, _)| *o == owner) {
                Some((_, slots, ops)) => {
                    slots.push(i);
                    ops.push(op);
                }
                None => by_core.push((owner, vec![i], vec![op])),
            }
        }
        let tasks: Vec<_> = by_core
            .into_iter()
            .map(|(owner, slots, ops)| {
                let failures: Vec<_> = ops.iter().map(|a| a.op.failure()).collect();
                let router = Rc::clone(self);
                let task = glommio::spawn_local(async move {
                    match router.call(owner, CoreRequest::Partitions(ops)).await {
                        Ok(CoreReply::Partitions(results)) => results,
                        _ => failures
                            .into_iter()
                            .map(|f| f(PartError::CoreGone(owner)))
                            .collect(),
                    }
                });
                (slots, task)
            })
            .collect();
        for (slots, task) in tasks {
            for (slot, result) in slots.into_iter().zip(task.await) {
                out[slot] = Some(result);
            }
        }
        out.into_iter()
            .map(|r| r.expect("every op has a result"))
            .collect()
    }

    /// Sends `make(core)` to every core but this one, one after the other; the replies in core
    /// order (a core that did not answer is left out).
    pub async fn to_peers(&self, make: impl Fn(usize) -> CoreRequest) -> Vec<(usize, CoreReply)> {
        let mut out = Vec::new();
        for peer in (0..self.cores()).filter(|&p| p != self.me()) {
            if let Ok(reply) = self.mesh.call(peer, make(peer)).await {
                out.push((peer, reply));
            }
        }
        out
    }
}
