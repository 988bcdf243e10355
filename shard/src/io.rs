//! The I/O seam: the only way the log touches a disk or a clock.
//!
//! The log is generic over [`Storage`]. Production uses [`crate::DmaStorage`] (glommio
//! `DmaFile`, O_DIRECT through io_uring); tests also use [`crate::FakeDisk`], an in-memory disk
//! with seeded fault injection. Everything runs on one core, so nothing here is `Send`.
//!
//! Contract every implementation keeps:
//! - `write_at` takes a buffer from `alloc_buf` whose length is a multiple of `alignment()`, at
//!   a position that is a multiple of `alignment()`. Callers assert this before the call.
//! - `read_at` accepts any position and length and returns fewer bytes only at end of file.
//! - Nothing written is durable until `fdatasync` returns `Ok`. Namespace changes (create,
//!   rename, remove) are durable once `sync_dir` on the parent returns `Ok`.

use std::io;
use std::ops::DerefMut;
use std::path::{Path, PathBuf};

use bytes::Bytes;

/// How [`Storage::open`] treats a missing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Fail with `NotFound` if the file does not exist.
    Existing,
    /// Create an empty file if missing; keep the contents otherwise.
    CreateOrOpen,
    /// Create, truncating any existing file to zero bytes.
    CreateTruncate,
}

/// A file opened for direct I/O.
#[allow(async_fn_in_trait)]
pub trait StorageFile: 'static {
    /// An aligned buffer for `write_at`.
    type Buf: DerefMut<Target = [u8]>;
    /// Direct-I/O alignment for positions and lengths, in bytes (512 or 4096 typically).
    fn alignment(&self) -> u64;
    /// A buffer of `len` bytes with unspecified contents; the caller fills all of it.
    /// `len` must be a multiple of `alignment()`.
    fn alloc_buf(&self, len: usize) -> Self::Buf;
    /// Writes the whole buffer at `pos`. Both must be aligned.
    async fn write_at(&self, buf: Self::Buf, pos: u64) -> io::Result<()>;
    /// Reads up to `len` bytes at `pos` (any alignment); short only at end of file.
    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes>;
    /// Makes every completed write durable.
    async fn fdatasync(&self) -> io::Result<()>;
    /// Extends the file with zeroed, allocated space up to at least `len` bytes.
    async fn allocate(&self, len: u64) -> io::Result<()>;
    /// Sets the file size to `len` bytes.
    async fn truncate(&self, len: u64) -> io::Result<()>;
    /// Current file size in bytes.
    async fn size(&self) -> io::Result<u64>;
    /// Closes the file.
    async fn close(self) -> io::Result<()>;
}

/// A file system plus a clock, as seen from one core.
#[allow(async_fn_in_trait)]
pub trait Storage: Clone + 'static {
    type File: StorageFile;
    async fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Self::File>;
    async fn remove(&self, path: &Path) -> io::Result<()>;
    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Creates `dir` and its parents if missing.
    async fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// File and directory names (not paths) directly inside `dir`.
    async fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Makes creates, renames and removes inside `dir` durable.
    async fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Wall-clock time in milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
    /// Lets other tasks on the core run if this one has used its time slice. Long CPU work
    /// (compaction) calls it between batches so the reactor is never stalled for long.
    async fn yield_if_needed(&self) {}
}

/// Writes `data` as the whole content of `path`, durably and atomically: a temp file, written,
/// sized and fdatasync'ed, renamed over `path`, then the directory synced.
pub(crate) async fn write_file_atomic<S: Storage>(
    storage: &S,
    path: &Path,
    data: &[u8],
) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = PathBuf::from(path);
    tmp.set_extension("tmp");
    let file = storage.open(&tmp, OpenMode::CreateTruncate).await?;
    let align = file.alignment();
    let padded = data.len().div_ceil(align as usize) * align as usize;
    if padded > 0 {
        let mut buf = file.alloc_buf(padded);
        buf[..data.len()].copy_from_slice(data);
        buf[data.len()..].fill(0);
        file.write_at(buf, 0).await?;
    }
    file.truncate(data.len() as u64).await?;
    file.fdatasync().await?;
    file.close().await?;
    storage.rename(&tmp, path).await?;
    storage.sync_dir(dir).await
}

/// Reads the whole content of `path`.
pub(crate) async fn read_file<S: Storage>(storage: &S, path: &Path) -> io::Result<Bytes> {
    let file = storage.open(path, OpenMode::Existing).await?;
    let size = file.size().await?;
    let data = file.read_at(0, size as usize).await;
    file.close().await?;
    data
}
