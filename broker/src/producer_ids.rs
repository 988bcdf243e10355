//! Producer ids for idempotent producers, unique across restarts.
//!
//! The control core hands them out. It reserves them in blocks: before giving out an id past the reserved
//! end it durably records a new end `PRODUCER_ID_BLOCK` further on, so after a crash it resumes
//! past every id it may have given out (skipping the unused rest of the block, as Kafka does).

use std::cell::Cell;
use std::path::{Path, PathBuf};

use glommio::sync::Semaphore;

use crate::limits::PRODUCER_ID_BLOCK;

/// Core 0's allocator.
pub struct ProducerIds {
    next: Cell<i64>,
    reserved_end: Cell<i64>,
    path: PathBuf,
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
            path,
            write: Semaphore::new(1),
        })
    }

    /// A fresh producer id.
    pub async fn allocate(&self) -> std::io::Result<i64> {
        let _permit = self
            .write
            .acquire_permit(1)
            .await
            .map_err(|_| std::io::Error::other("allocator closed"))?;
        let id = self.next.get();
        if id >= self.reserved_end.get() {
            let end = id + PRODUCER_ID_BLOCK;
            let path = self.path.clone();
            glommio::executor()
                .spawn_blocking(move || write_durably(&path, end))
                .await?;
            self.reserved_end.set(end);
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
