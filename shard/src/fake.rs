//! An in-memory [`Storage`] for deterministic tests, with seeded fault injection.
//!
//! # Fault model
//! - Each file keeps two images: `current` (what reads see) and `durable` (what survives a
//!   crash). `fdatasync` copies `current` to `durable`.
//! - Every `write_at` since the last `fdatasync` is remembered. [`FakeDisk::crash`] rebuilds
//!   each file from `durable` and replays those writes, each 512-byte sector independently
//!   applied or dropped by the seeded RNG: writes can be torn at any sector, and later writes
//!   can land while earlier ones are lost (the kernel gives no ordering without a sync).
//! - With [`Faults::eio_per_million`] > 0, `write_at` and `fdatasync` fail with EIO at that
//!   rate; a failed write changes nothing, a failed fdatasync makes nothing durable.
//! - [`FakeDisk::fail_after`] models the machine stopping at a chosen point: after `n` more
//!   mutating calls (write, sync, allocate, truncate, create, rename, remove, dir sync) every
//!   one fails with EIO; a test then calls [`FakeDisk::crash`] and reopens, so each step of a
//!   multi-file protocol can be cut in turn.
//! - Not modelled (stronger than a real disk): `truncate`, `allocate`, create, rename and
//!   remove take effect at once and durably; no misdirected writes; no latency (every call
//!   completes without yielding). Reads never fail.
//! - [`FakeDisk::open_files`] counts open handles, as a real process counts descriptors.
//! - The clock is virtual: it moves only through [`FakeDisk::advance_ms`].

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;

use crate::io::{OpenMode, Storage, StorageFile};

const SECTOR: u64 = 512;

/// Fault rates for a [`FakeDisk`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Chance, per million calls, that `write_at` or `fdatasync` returns EIO.
    pub eio_per_million: u32,
}

#[derive(Default)]
struct FileImage {
    current: Vec<u8>,
    durable: Vec<u8>,
    unsynced: Vec<(u64, Vec<u8>)>,
}

struct DiskState {
    files: BTreeMap<PathBuf, Rc<RefCell<FileImage>>>,
    dirs: BTreeSet<PathBuf>,
    rng: u64,
    faults: Faults,
    now_ms: i64,
    /// Mutating calls left before every one fails (`fail_after`); `None`: no limit.
    budget: Option<u64>,
    /// Mutating calls made so far.
    ops: u64,
    /// `read_at` calls made so far.
    reads: u64,
    /// File handles open now (opened and not yet closed or dropped).
    open_files: usize,
}

impl DiskState {
    fn next_u64(&mut self) -> u64 {
        // splitmix64: tiny, seedable, good enough for fault decisions.
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Counts a mutating call; true if it must fail because the budget is spent.
    fn stopped(&mut self) -> bool {
        self.ops += 1;
        match &mut self.budget {
            Some(0) => true,
            Some(n) => {
                *n -= 1;
                false
            }
            None => false,
        }
    }
    fn eio(&mut self) -> bool {
        if self.stopped() {
            return true;
        }
        let rate = u64::from(self.faults.eio_per_million);
        rate > 0 && self.next_u64() % 1_000_000 < rate
    }
}

/// In-memory disk; clones share the same disk.
#[derive(Clone)]
pub struct FakeDisk {
    state: Rc<RefCell<DiskState>>,
}

impl std::fmt::Debug for FakeDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FakeDisk")
    }
}

impl FakeDisk {
    /// A new empty disk whose fault decisions follow `seed`; the clock starts at `start_ms`.
    pub fn new(seed: u64, faults: Faults, start_ms: i64) -> Self {
        Self {
            state: Rc::new(RefCell::new(DiskState {
                files: BTreeMap::new(),
                dirs: BTreeSet::new(),
                rng: seed,
                faults,
                now_ms: start_ms,
                budget: None,
                ops: 0,
                reads: 0,
                open_files: 0,
            })),
        }
    }
    /// Moves the virtual clock forward.
    pub fn advance_ms(&self, ms: i64) {
        assert!(ms >= 0);
        self.state.borrow_mut().now_ms += ms;
    }
    /// After `n` more mutating calls, every mutating call fails with EIO (`None` lifts it).
    pub fn fail_after(&self, n: Option<u64>) {
        self.state.borrow_mut().budget = n;
    }
    /// Mutating calls made on this disk so far.
    pub fn ops(&self) -> u64 {
        self.state.borrow().ops
    }
    /// Reads of file data (`read_at` calls) made on this disk so far.
    pub fn reads(&self) -> u64 {
        self.state.borrow().reads
    }
    /// File handles open now, like the descriptors of a real process.
    pub fn open_files(&self) -> usize {
        self.state.borrow().open_files
    }
    /// Changes the fault rates from now on.
    pub fn set_faults(&self, faults: Faults) {
        self.state.borrow_mut().faults = faults;
    }
    /// Simulates power loss: every file becomes its durable image plus a seeded, sector-wise
    /// subset of its unsynced writes. Open handles keep working on the new images.
    pub fn crash(&self) {
        let mut st = self.state.borrow_mut();
        let files: Vec<_> = st.files.values().cloned().collect();
        for f in files {
            let mut img = f.borrow_mut();
            let mut data = img.durable.clone();
            let writes = std::mem::take(&mut img.unsynced);
            for (pos, bytes) in writes {
                let mut s = 0u64;
                while s < bytes.len() as u64 {
                    let e = (s + SECTOR).min(bytes.len() as u64);
                    if st.next_u64().is_multiple_of(2) {
                        let at = (pos + s) as usize;
                        if data.len() < at + (e - s) as usize {
                            data.resize(at + (e - s) as usize, 0);
                        }
                        data[at..at + (e - s) as usize]
                            .copy_from_slice(&bytes[s as usize..e as usize]);
                    }
                    s = e;
                }
            }
            img.current = data.clone();
            img.durable = data;
        }
    }
    /// Raw access for corruption tests: the current bytes of `path`, if it exists.
    pub fn file_bytes(&self, path: &Path) -> Option<Vec<u8>> {
        let st = self.state.borrow();
        st.files.get(path).map(|f| f.borrow().current.clone())
    }
    /// Raw access for corruption tests: replaces `path`'s content, durably.
    pub fn set_file_bytes(&self, path: &Path, data: Vec<u8>) {
        let mut st = self.state.borrow_mut();
        let f = st.files.entry(path.to_path_buf()).or_default().clone();
        let mut img = f.borrow_mut();
        img.current = data.clone();
        img.durable = data;
        img.unsynced.clear();
    }
    /// Every file path on the disk.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.state.borrow().files.keys().cloned().collect()
    }
}

/// A heap-allocated buffer (alignment is only checked, never needed in memory).
pub struct FakeBuf(Vec<u8>);
impl Deref for FakeBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}
impl DerefMut for FakeBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

/// A handle on a [`FakeDisk`] file.
pub struct FakeFile {
    disk: FakeDisk,
    image: Rc<RefCell<FileImage>>,
}

impl Drop for FakeFile {
    fn drop(&mut self) {
        self.disk.state.borrow_mut().open_files -= 1;
    }
}

fn eio() -> io::Error {
    io::Error::from_raw_os_error(libc::EIO)
}

impl StorageFile for FakeFile {
    type Buf = FakeBuf;
    fn alignment(&self) -> u64 {
        SECTOR
    }
    fn alloc_buf(&self, len: usize) -> FakeBuf {
        assert!(
            (len as u64).is_multiple_of(SECTOR),
            "unaligned buffer length {len}"
        );
        // Garbage, not zeros: a caller that forgets to fill padding writes visible junk.
        FakeBuf(vec![0xee; len])
    }
    async fn write_at(&self, buf: FakeBuf, pos: u64) -> io::Result<()> {
        assert!(pos.is_multiple_of(SECTOR), "unaligned write position {pos}");
        assert!(
            (buf.len() as u64).is_multiple_of(SECTOR),
            "unaligned write length"
        );
        if self.disk.state.borrow_mut().eio() {
            return Err(eio());
        }
        let mut img = self.image.borrow_mut();
        let end = pos as usize + buf.len();
        if img.current.len() < end {
            img.current.resize(end, 0);
        }
        img.current[pos as usize..end].copy_from_slice(&buf);
        img.unsynced.push((pos, buf.0));
        Ok(())
    }
    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        self.disk.state.borrow_mut().reads += 1;
        let img = self.image.borrow();
        let start = (pos as usize).min(img.current.len());
        let end = (start + len).min(img.current.len());
        Ok(Bytes::copy_from_slice(&img.current[start..end]))
    }
    async fn fdatasync(&self) -> io::Result<()> {
        if self.disk.state.borrow_mut().eio() {
            return Err(eio());
        }
        let mut img = self.image.borrow_mut();
        img.durable = img.current.clone();
        img.unsynced.clear();
        Ok(())
    }
    async fn allocate(&self, len: u64) -> io::Result<()> {
        if self.disk.state.borrow_mut().stopped() {
            return Err(eio());
        }
        let mut img = self.image.borrow_mut();
        if (img.current.len() as u64) < len {
            img.current.resize(len as usize, 0);
        }
        if (img.durable.len() as u64) < len {
            img.durable.resize(len as usize, 0);
        }
        Ok(())
    }
    async fn truncate(&self, len: u64) -> io::Result<()> {
        if self.disk.state.borrow_mut().stopped() {
            return Err(eio());
        }
        let mut img = self.image.borrow_mut();
        img.current.resize(len as usize, 0);
        img.durable.resize(len as usize, 0);
        img.unsynced.retain(|(p, _)| *p < len);
        for (p, b) in &mut img.unsynced {
            let keep = (len - *p).min(b.len() as u64) as usize;
            b.truncate(keep);
        }
        Ok(())
    }
    async fn size(&self) -> io::Result<u64> {
        Ok(self.image.borrow().current.len() as u64)
    }
    async fn close(self) -> io::Result<()> {
        Ok(())
    }
}

fn not_found(p: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} not found", p.display()),
    )
}

impl Storage for FakeDisk {
    type File = FakeFile;
    async fn open(&self, path: &Path, mode: OpenMode) -> io::Result<FakeFile> {
        let mut st = self.state.borrow_mut();
        if mode != OpenMode::Existing && st.stopped() {
            return Err(eio());
        }
        if let Some(parent) = path.parent()
            && !st.dirs.contains(parent)
        {
            return Err(not_found(parent));
        }
        let image = match (mode, st.files.get(path)) {
            (OpenMode::Existing, None) => return Err(not_found(path)),
            (OpenMode::CreateTruncate, Some(f)) => {
                *f.borrow_mut() = FileImage::default();
                f.clone()
            }
            (_, Some(f)) => f.clone(),
            (_, None) => st.files.entry(path.to_path_buf()).or_default().clone(),
        };
        st.open_files += 1;
        Ok(FakeFile {
            disk: self.clone(),
            image,
        })
    }
    async fn remove(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state.borrow_mut();
        if st.stopped() {
            return Err(eio());
        }
        st.files
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| not_found(path))
    }
    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.state.borrow_mut();
        if st.stopped() {
            return Err(eio());
        }
        let f = st.files.remove(from).ok_or_else(|| not_found(from))?;
        st.files.insert(to.to_path_buf(), f);
        Ok(())
    }
    async fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.state.borrow_mut();
        for a in dir.ancestors() {
            st.dirs.insert(a.to_path_buf());
        }
        Ok(())
    }
    async fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let st = self.state.borrow();
        if !st.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        let mut names = Vec::new();
        for p in st.files.keys().chain(st.dirs.iter()) {
            if p.parent() == Some(dir)
                && let Some(n) = p.file_name().and_then(|n| n.to_str())
            {
                names.push(n.to_owned());
            }
        }
        Ok(names)
    }
    async fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        if self.state.borrow_mut().stopped() {
            return Err(eio());
        }
        Ok(())
    }
    fn now_ms(&self) -> i64 {
        self.state.borrow().now_ms
    }
}
