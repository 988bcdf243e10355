//! Producer ids for idempotent producers, unique across restarts.
//!
//! The control core hands them out. It reserves them in blocks: before giving out an id past the reserved
//! end it durably records a new end `PRODUCER_ID_BLOCK` further on, so after a crash it resumes
//! past every id it may have given out (skipping the unused rest of the block, as Kafka does).
//!
//! On a cluster node the blocks come from the active controller instead (Kafka's
//! AllocateProducerIds, asked by the controller shard over [`ControllerBlocks`]): the
//! controller commits each block to the metadata log before handing it out, so no two brokers,
//! and no broker before and after a restart, ever give out the same id.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};

use glommio::channels::shared_channel::{
    ConnectedReceiver, ConnectedSender, SharedReceiver, SharedSender,
};
use glommio::sync::Semaphore;

use crate::limits::PRODUCER_ID_BLOCK;

/// A block of producer ids from the controller: (first id, how many), or why not.
pub type Block = Result<(i64, i32), ()>;

/// The control core's end of the block requests to the controller shard.
pub struct ControllerBlocks {
    unconnected: RefCell<Option<(SharedSender<()>, SharedReceiver<Block>)>>,
    connected: RefCell<Option<(ConnectedSender<()>, ConnectedReceiver<Block>)>>,
}

impl ControllerBlocks {
    /// Over these channels (connected on first use, on the control core).
    pub fn new(requests: SharedSender<()>, replies: SharedReceiver<Block>) -> ControllerBlocks {
        ControllerBlocks {
            unconnected: RefCell::new(Some((requests, replies))),
            connected: RefCell::new(None),
        }
    }

    /// The next block (callers are serialized by [`ProducerIds`]'s write permit).
    async fn next_block(&self) -> Block {
        let pending = self.unconnected.borrow_mut().take();
        if let Some((requests, replies)) = pending {
            let requests = requests.connect().await;
            let replies = replies.connect().await;
            *self.connected.borrow_mut() = Some((requests, replies));
        }
        let link = self.connected.borrow_mut().take();
        let Some((requests, replies)) = link else {
            return Err(());
        };
        let block = match requests.send(()).await {
            Ok(()) => replies.recv().await.unwrap_or(Err(())),
            Err(_) => Err(()),
        };
        *self.connected.borrow_mut() = Some((requests, replies));
        block
    }
}

/// Where blocks come from.
enum Source {
    /// This node's own file (a single-node broker).
    File(PathBuf),
    /// The active controller (a cluster node).
    Controller(ControllerBlocks),
}

/// Core 0's allocator.
pub struct ProducerIds {
    next: Cell<i64>,
    reserved_end: Cell<i64>,
    source: Source,
    write: Semaphore,
}

impl std::fmt::Debug for ProducerIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProducerIds")
            .field("next", &self.next.get())
            .finish()
    }
}

impl ProducerIds {
    /// Loads the reserved end from `<data-dir>/cluster/producer-ids` (blocking; at start-up).
    pub fn load(data_dir: &Path) -> std::io::Result<ProducerIds> {
        let path = data_dir.join("cluster").join("producer-ids");
        let end = match std::fs::read_to_string(&path) {
            Ok(s) => s.trim().parse::<i64>().map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "{} is not a number ({e}); move it away only if no producer is running",
                        path.display()
                    ),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        Ok(ProducerIds {
            next: Cell::new(end),
            reserved_end: Cell::new(end),
            source: Source::File(path),
            write: Semaphore::new(1),
        })
    }

    /// An allocator whose blocks come from the active controller.
    pub fn from_controller(blocks: ControllerBlocks) -> ProducerIds {
        ProducerIds {
            next: Cell::new(0),
            reserved_end: Cell::new(0),
            source: Source::Controller(blocks),
            write: Semaphore::new(1),
        }
    }

    /// A fresh producer id.
    pub async fn allocate(&self) -> std::io::Result<i64> {
        let _permit = self
            .write
            .acquire_permit(1)
            .await
            .map_err(|_| std::io::Error::other("allocator closed"))?;
        let mut id = self.next.get();
        if id >= self.reserved_end.get() {
            match &self.source {
                Source::File(path) => {
                    let end = id + PRODUCER_ID_BLOCK;
                    let path = path.clone();
                    glommio::executor()
                        .spawn_blocking(move || write_durably(&path, end))
                        .await?;
                    self.reserved_end.set(end);
                }
                Source::Controller(blocks) => {
                    let (start, len) = blocks.next_block().await.map_err(|()| {
                        std::io::Error::other("no producer id block from the controller")
                    })?;
                    id = start;
                    self.reserved_end.set(start + i64::from(len));
                }
            }
        }
        self.next.set(id + 1);
        Ok(id)
    }
}

fn write_durably(path: &Path, end: i64) -> std::io::Result<()> {
    let dir = path.parent().expect("has a parent");
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{end}\n"))?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}
