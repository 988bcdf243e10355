//! Production [`Storage`]: glommio `DmaFile` (O_DIRECT through io_uring) on the current core.
//!
//! Must be used inside a glommio executor. Call [`probe_dma_polling`] once per data directory
//! at executor start, before any other `DmaFile` is opened (see DESIGN.md, "Measured here":
//! if the first DMA file an executor opens is new or empty, glommio's polled-I/O probe succeeds
//! wrongly and every later O_DIRECT read fails with EOPNOTSUPP).

use std::io;
use std::ops::{Deref, DerefMut};
use std::path::Path;

use bytes::Bytes;
use glommio::io::{DmaBuffer, DmaFile, OpenOptions};

use crate::io::{OpenMode, Storage, StorageFile};

/// glommio-backed storage; cheap to clone.
#[derive(Debug, Clone, Copy, Default)]
pub struct DmaStorage;

/// An aligned glommio buffer.
pub struct DmaBuf(DmaBuffer);

impl Deref for DmaBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}
impl DerefMut for DmaBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.0.as_bytes_mut()
    }
}

/// A `DmaFile` behind the [`StorageFile`] trait.
pub struct DmaStorageFile {
    file: DmaFile,
    /// Write granularity: the larger of the direct-I/O alignment and the device's physical
    /// block size (see [`write_alignment`]).
    align: u64,
}

/// The granularity sluice aligns writes to on `file`'s device: the larger of glommio's
/// direct-I/O alignment (logical block, from statx) and the physical block size from sysfs.
/// Writing less than a physical block makes the device read-modify-write it; measured here
/// (logical 512, physical 4096) that doubled the latency of 1 MiB appends, since the log
/// rewrites its partial tail block on every append.
pub fn write_alignment(file: &DmaFile) -> u64 {
    let logical = file.alignment();
    let dev = format!("/sys/dev/block/{}:{}", file.dev_major(), file.dev_minor());
    let physical = [
        format!("{dev}/queue/physical_block_size"),
        format!("{dev}/../queue/physical_block_size"),
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok())
    .and_then(|s| s.trim().parse::<u64>().ok())
    .filter(|p| p.is_power_of_two() && *p <= 64 << 10)
    .unwrap_or(logical);
    logical.max(physical)
}

fn to_io(e: glommio::GlommioError<()>) -> io::Error {
    io::Error::from(e)
}

impl StorageFile for DmaStorageFile {
    type Buf = DmaBuf;
    fn alignment(&self) -> u64 {
        self.align
    }
    fn alloc_buf(&self, len: usize) -> DmaBuf {
        assert!(
            (len as u64).is_multiple_of(self.alignment()),
            "unaligned buffer length {len}"
        );
        // Not zeroed: callers fill every byte they hand to write_at (padding included).
        DmaBuf(self.file.alloc_dma_buffer(len))
    }
    async fn write_at(&self, buf: DmaBuf, pos: u64) -> io::Result<()> {
        let align = self.alignment();
        assert!(pos.is_multiple_of(align), "unaligned write position {pos}");
        assert!(
            (buf.len() as u64).is_multiple_of(align),
            "unaligned write length"
        );
        let len = buf.len();
        let written = self.file.write_at(buf.0, pos).await.map_err(to_io)?;
        if written != len {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short direct write: {written} of {len} bytes at {pos}"),
            ));
        }
        Ok(())
    }
    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        let align = self.alignment();
        let start = pos / align * align;
        let end = (pos + len as u64).div_ceil(align) * align;
        let r = self
            .file
            .read_at_aligned(start, (end - start) as usize)
            .await
            .map_err(to_io)?;
        let skip = (pos - start) as usize;
        if r.len() <= skip {
            return Ok(Bytes::new());
        }
        let take = (r.len() - skip).min(len);
        Ok(crate::lent::lend(r, skip, take))
    }
    async fn fdatasync(&self) -> io::Result<()> {
        self.file.fdatasync().await.map_err(to_io)
    }
    async fn allocate(&self, len: u64) -> io::Result<()> {
        self.file.pre_allocate(len, false).await.map_err(to_io)
    }
    async fn truncate(&self, len: u64) -> io::Result<()> {
        self.file.truncate(len).await.map_err(to_io)
    }
    async fn size(&self) -> io::Result<u64> {
        self.file.file_size().await.map_err(to_io)
    }
    async fn close(self) -> io::Result<()> {
        self.file.close().await.map_err(to_io)
    }
}

impl Storage for DmaStorage {
    type File = DmaStorageFile;
    async fn open(&self, path: &Path, mode: OpenMode) -> io::Result<DmaStorageFile> {
        let mut o = OpenOptions::new();
        o.read(true).write(true);
        match mode {
            OpenMode::Existing => {}
            OpenMode::CreateOrOpen => {
                o.create(true);
            }
            OpenMode::CreateTruncate => {
                o.create(true).truncate(true);
            }
        }
        let file = o.dma_open(&absolute(path)?).await.map_err(to_io)?;
        let align = write_alignment(&file);
        Ok(DmaStorageFile { file, align })
    }
    async fn remove(&self, path: &Path) -> io::Result<()> {
        glommio::io::remove(absolute(path)?).await.map_err(to_io)
    }
    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        glommio::io::rename(absolute(from)?, absolute(to)?)
            .await
            .map_err(to_io)
    }
    async fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        // Metadata-only and rare (partition creation); a blocking call is acceptable here.
        std::fs::create_dir_all(dir)
    }
    async fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }
    async fn yield_if_needed(&self) {
        glommio::yield_if_needed().await;
    }
    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let d = glommio::io::Directory::open(absolute(dir)?)
            .await
            .map_err(to_io)?;
        d.sync().await.map_err(to_io)?;
        d.close().await.map_err(to_io)
    }
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }
}

/// `path` made absolute against the current directory. glommio opens every file and directory
/// with `openat(-1, path)` rather than `AT_FDCWD`, so a relative path fails with EBADF
/// ("Bad file descriptor"); every path handed to glommio goes through here.
fn absolute(path: &Path) -> io::Result<std::borrow::Cow<'_, Path>> {
    if path.is_absolute() {
        Ok(std::borrow::Cow::Borrowed(path))
    } else {
        std::path::absolute(path).map(std::borrow::Cow::Owned)
    }
}

/// Name of the file [`probe_dma_polling`] keeps in each data directory.
pub const DMA_PROBE_FILE: &str = ".dma-probe";

/// Opens an existing, non-empty file in `dir` as the executor's first `DmaFile`, creating it
/// with ordinary (blocking) I/O if needed, so that glommio's polled-I/O probe for the device
/// sees a real file. Call once per data directory at executor start, before opening a shard.
pub async fn probe_dma_polling(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(DMA_PROBE_FILE);
    let ok = std::fs::metadata(&path)
        .map(|m| m.len() >= 4096)
        .unwrap_or(false);
    if !ok {
        // Every core probes at start: each writes its own temporary file and renames it into
        // place, so no core ever opens a probe file another is still writing (an empty first
        // DmaFile makes glommio's probe wrongly enable polling, and every DMA read of that
        // core then fails with EOPNOTSUPP).
        let tmp = dir.join(format!(
            "{DMA_PROBE_FILE}.{}.{:?}.tmp",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::write(&tmp, vec![0x5au8; 4096])?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &path)?;
    }
    let f = DmaFile::open(&absolute(&path)?).await.map_err(to_io)?;
    let r = f.read_at_aligned(0, 4096).await.map_err(to_io);
    f.close().await.map_err(to_io)?;
    r.map(|_| ())
}
