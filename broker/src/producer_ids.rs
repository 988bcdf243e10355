//! Producer ids for idempotent producers, unique across restarts.
//!
//! The control core hands them out. It reserves them in blocks: before giving out an id past the reserved
//! end it durably records a new end `PRODUCER_ID_BLOCK` further on, so after a crash it resumes
//! past every id it may have given out (skipping the unused rest of the block, as Kafka does).
//!
//! On a cluster node the blocks come from the active controller instead (Kafka's
//! AllocateProducerIds, forwarded through the controller shard over [`ControllerLink`]): the
//! controller commits each block to the metadata log before handing it out, so no two brokers,
//! and no broker before and after a restart, ever give out the same id.

use std::cell::Cell;
use std::path::{Path, PathBuf};

use std::rc::Rc;

use glommio::sync::Semaphore;
use sluice_net::error_code::code;
use sluice_net::messages::AllocateProducerIdsRequest;
use sluice_net::{Request, Response};

use crate::forward::ControllerLink;

use crate::limits::PRODUCER_ID_BLOCK;

/// Where blocks come from.
enum Source {
    /// This node's own file (a single-node broker).
    File(PathBuf),
    /// The active controller (a cluster node).
    Controller(Rc<ControllerLink>),
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
    pub fn from_controller(link: Rc<ControllerLink>) -> ProducerIds {
        ProducerIds {
            next: Cell::new(0),
            reserved_end: Cell::new(0),
            source: Source::Controller(link),
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
                Source::Controller(link) => {
                    let (start, len) = next_block(link).await.ok_or_else(|| {
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

/// A block from the active controller: (first id, how many). The shard fills in this
/// broker's id and epoch.
async fn next_block(link: &ControllerLink) -> Option<(i64, i32)> {
    let request = Request::AllocateProducerIds(AllocateProducerIdsRequest::default());
    match link.call(request).await {
        Ok(Response::AllocateProducerIds(r)) if r.error_code == code::NONE => {
            Some((r.producer_id_start.into(), r.producer_id_len))
        }
        _ => None,
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
