//! Checks made once before any executor starts, each failing with one clear line that says what
//! to change: the host (`check_host`: `sluice tune`'s check, which warns about settings that cost
//! performance and refuses io_uring being forbidden or locked memory the cores cannot get), the
//! data directory (usable, and not used by another sluice), the listen port (free, and not shared
//! through SO_REUSEPORT with another sluice), and locked memory for io_uring (raised when
//! allowed). The io_uring and memlock verdicts live in `tune` alone; the functions here apply
//! them.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::config::BrokerConfig;
use crate::tune;

/// A reason the broker cannot start. `Display` is the one line printed before exiting non-zero.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("data dir {path} is not usable: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "data dir {path} is in use by another sluice (pid {holder}); stop it or pick another --data-dir"
    )]
    DataDirLocked { path: PathBuf, holder: String },
    #[error(
        "cannot listen on {addr}: the port is in use by another process; pick another --listen"
    )]
    PortBusy { addr: SocketAddr },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: another sluice holds its lock file {lock} (pid {holder})")]
    PortLocked {
        addr: SocketAddr,
        lock: PathBuf,
        holder: String,
    },
    #[error(
        "locked memory limit is {have} bytes but {cores} cores need {need} bytes for io_uring; \
         raise RLIMIT_MEMLOCK (ulimit -l, or 'memlock' in /etc/security/limits.conf) to at least {need_kib} KiB"
    )]
    MemLock {
        have: u64,
        need: u64,
        need_kib: u64,
        cores: usize,
    },
    #[error(
        "io_uring is disabled on this host (kernel.io_uring_disabled = {value}); set it to 0 with sysctl"
    )]
    IoUringDisabled { value: String },
    #[error("sluice cannot run on this host: {0}; `sluice tune --check` shows every setting")]
    Host(String),
}

/// Runs `sluice tune --check` against this host for `config`: one warning per setting that costs
/// performance, and an error naming every setting that stops sluice from starting.
pub fn check_host(config: &BrokerConfig) -> Result<(), StartError> {
    check_host_at(&tune::Root::new("/"), config)?;
    warn_if_descriptors_short(config);
    Ok(())
}

/// File descriptors the broker may hold at its bounds, partitions' active segments aside:
/// every core at `core_connections_max` connections and `core_open_segment_files_max` closed
/// segment files.
fn descriptors_needed(config: &BrokerConfig) -> u64 {
    let per_core = config
        .core_connections_max
        .saturating_add(config.core_open_segment_files_max);
    (per_core as u64).saturating_mul(config.core_count() as u64)
}

/// Raises the soft RLIMIT_NOFILE toward what the connection and open-file limits need (up to
/// the hard limit, which needs no privilege), and warns when even that is short: accepts would
/// then fail with EMFILE (logged as `accept failed`) instead of being refused cleanly.
fn warn_if_descriptors_short(config: &BrokerConfig) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return;
    }
    let need = descriptors_needed(config);
    if lim.rlim_cur != libc::RLIM_INFINITY && lim.rlim_cur < need {
        let raised = libc::rlimit {
            rlim_cur: if lim.rlim_max == libc::RLIM_INFINITY {
                need
            } else {
                need.min(lim.rlim_max)
            },
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = raised.rlim_cur;
        }
    }
    if lim.rlim_cur != libc::RLIM_INFINITY && lim.rlim_cur < need {
        tracing::warn!(
            "RLIMIT_NOFILE (soft {}) is below cores x (core_connections_max + \
             core_open_segment_files_max) = {need}: connections may fail with EMFILE before \
             core_connections_max refuses them; raise the limit (ulimit -n, LimitNOFILE=) or \
             lower core_connections_max",
            lim.rlim_cur
        );
    }
}

/// `check_host` with the host's files read under `root` (a fake tree in tests).
fn check_host_at(root: &tune::Root, config: &BrokerConfig) -> Result<(), StartError> {
    let rows = tune::check(root, &tune::Target::for_config(root, config));
    let mut blockers = Vec::new();
    for row in &rows {
        match row.status {
            tune::Status::Warn => tracing::warn!(
                "host setting {} is {} (recommended {}): {}",
                row.setting,
                row.value,
                row.recommended,
                row.fix
            ),
            tune::Status::Fail => blockers.push(format!(
                "{} is {} (needs {}): {}",
                row.setting, row.value, row.recommended, row.fix
            )),
            tune::Status::Ok | tune::Status::Skip => {}
        }
    }
    if blockers.is_empty() {
        Ok(())
    } else {
        Err(StartError::Host(blockers.join("; ")))
    }
}

/// An exclusive `flock` held for the life of the process; released when the process exits,
/// even by SIGKILL, so a stale file never blocks a restart.
#[derive(Debug)]
pub struct LockFile {
    _file: File,
}

/// Takes the lock at `path`, writing our pid into the file. `Err(Some(holder))` when another
/// process holds it.
fn lock_file(path: &Path) -> Result<LockFile, Result<String, std::io::Error>> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(Err)?;
    // SAFETY: flock on a valid, owned fd; no memory is passed.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim().to_owned();
            return Err(Ok(if holder.is_empty() {
                "unknown".into()
            } else {
                holder
            }));
        }
        return Err(Err(err));
    }
    let write_pid = |file: &mut File| -> std::io::Result<()> {
        file.set_len(0)?;
        file.rewind()?;
        writeln!(file, "{}", std::process::id())?;
        file.sync_data()
    };
    write_pid(&mut file).map_err(Err)?;
    Ok(LockFile { _file: file })
}

/// Creates the data dir if needed, checks it is writable, and locks it.
pub fn lock_data_dir(dir: &Path) -> Result<LockFile, StartError> {
    let err = |source| StartError::DataDir {
        path: dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    let probe = dir.join(".write-probe");
    std::fs::write(&probe, b"ok").map_err(err)?;
    std::fs::remove_file(&probe).map_err(err)?;
    lock_file(&dir.join(".lock")).map_err(|e| match e {
        Ok(holder) => StartError::DataDirLocked {
            path: dir.to_owned(),
            holder,
        },
        Err(source) => err(source),
    })
}

/// Checks the port is free and resolves port 0, then locks it against a second sluice.
///
/// glommio binds with SO_REUSEPORT, which lets a second process silently share the port. A plain
/// bind (without SO_REUSEPORT) fails if anyone holds the port, sluice or not; the lock file closes
/// the window between this probe and the executors' binds.
pub fn claim_port(addr: SocketAddr) -> Result<(SocketAddr, LockFile), StartError> {
    // A killed sluice's listening socket can outlive the process for a moment (the kernel tears
    // its io_uring rings down asynchronously, and they hold the socket): seen as EADDRINUSE right
    // after SIGKILL, with nothing on the port a moment later. So retry for a while before
    // calling the port busy.
    let deadline = std::time::Instant::now() + PORT_RETRY;
    let probe = loop {
        match probe_bind(addr) {
            Ok(p) => break p,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                if std::time::Instant::now() >= deadline {
                    return Err(StartError::PortBusy { addr });
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(source) => return Err(StartError::Listen { addr, source }),
        }
    };
    let bound = probe
        .local_addr()
        .map_err(|source| StartError::Listen { addr, source })?;
    let lock = std::env::temp_dir().join(format!("sluice-{}-{}.lock", bound.ip(), bound.port()));
    let held = lock_file(&lock).map_err(|e| match e {
        Ok(holder) => StartError::PortLocked {
            addr: bound,
            lock: lock.clone(),
            holder,
        },
        Err(source) => StartError::Listen {
            addr: bound,
            source,
        },
    })?;
    drop(probe);
    Ok((bound, held))
}

/// How long a busy port is retried at start-up.
const PORT_RETRY: std::time::Duration = std::time::Duration::from_secs(3);

/// Binds (and listens on) `addr` with SO_REUSEADDR but without SO_REUSEPORT: sockets a killed
/// run left in TIME_WAIT or FIN_WAIT do not block it, a live listener (sluice's or anyone's)
/// does.
fn probe_bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1)?;
    Ok(socket.into())
}

/// Raises RLIMIT_MEMLOCK to `need` when allowed (root may raise its hard limit too); fails with
/// the limit to raise otherwise.
pub fn ensure_memlock(need: u64, cores: usize) -> Result<(), StartError> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) };
    if lim.rlim_cur == libc::RLIM_INFINITY || lim.rlim_cur >= need {
        return Ok(());
    }
    let wanted = libc::rlimit {
        rlim_cur: need,
        rlim_max: if lim.rlim_max == libc::RLIM_INFINITY {
            lim.rlim_max
        } else {
            lim.rlim_max.max(need)
        },
    };
    // SAFETY: setrlimit reads the struct we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &wanted) } == 0 {
        return Ok(());
    }
    // With CAP_IPC_LOCK the kernel does not charge io_uring's registered buffers to the limit
    // (containers often grant it while withholding CAP_SYS_RESOURCE, which raising needs).
    if tune::Identity::read(&tune::Root::new("/")).has_cap(tune::CAP_IPC_LOCK) {
        return Ok(());
    }
    Err(StartError::MemLock {
        have: lim.rlim_cur,
        need,
        need_kib: need.div_ceil(1024),
        cores,
    })
}

/// The cluster id, made once (16 random bytes, base64url without padding, as Kafka's) and kept
/// in `<data-dir>/cluster/cluster.id`.
pub fn cluster_id(data_dir: &Path) -> Result<String, StartError> {
    let path = data_dir.join("cluster").join("cluster.id");
    let err = |source| StartError::DataDir {
        path: path.clone(),
        source,
    };
    if let Ok(id) = std::fs::read_to_string(&path) {
        let id = id.trim().to_owned();
        if id.len() == 22 {
            return Ok(id);
        }
    }
    std::fs::create_dir_all(path.parent().expect("has parent")).map_err(err)?;
    let id = crate::metadata::id_text(crate::metadata::new_topic_id());
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, &id).map_err(err)?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(err)?;
    std::fs::rename(&tmp, &path).map_err(err)?;
    Ok(id)
}

/// Largest allocation glibc's malloc serves from its heaps instead of a fresh `mmap` (glibc's
/// ceiling for `M_MMAP_THRESHOLD` on 64-bit).
const MALLOC_MMAP_THRESHOLD: libc::c_int = 32 << 20;
/// Free memory at the top of a malloc heap that glibc keeps instead of returning it to the
/// kernel.
const MALLOC_TRIM_THRESHOLD: libc::c_int = 1 << 30;

/// Makes glibc's malloc keep and reuse the memory of freed large buffers.
///
/// A profile of hot consume (bench/profiles) spent 70% of the broker's time in the kernel's
/// `clear_page_erms`: each fetch read and each copy out of a direct-I/O buffer went into a
/// freshly mapped buffer (glibc maps large allocations one by one and trims freed heap tops), so
/// every page of every read was faulted in and zeroed first. With both thresholds fixed the
/// pages are reused and the zeroing is gone from the profile. The cost: the process keeps up to
/// its peak of buffer memory (bounded by the fetch and produce limits) instead of handing it
/// back between bursts. Must run before any thread starts (it sets process-wide options).
pub fn keep_freed_memory() {
    // SAFETY: mallopt only changes malloc's tuning; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD);
    }
}

/// Refuses to start when the kernel forbids io_uring to this process (`tune::io_uring_allowed`:
/// `kernel.io_uring_disabled` = 2, or 1 for a process without CAP_SYS_ADMIN outside
/// `kernel.io_uring_group`).
pub fn check_io_uring_allowed(sysctl_path: &Path) -> Result<(), StartError> {
    let Ok(value) = std::fs::read_to_string(sysctl_path) else {
        return Ok(()); // older kernels have no such switch
    };
    let value = value.trim().to_owned();
    let root = tune::Root::new("/");
    let group = root
        .read("/proc/sys/kernel/io_uring_group")
        .and_then(|g| g.parse().ok());
    if tune::io_uring_allowed(&value, group, &tune::Identity::read(&root)) {
        Ok(())
    } else {
        Err(StartError::IoUringDisabled { value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves the descriptor estimate is cores x (connections + closed segment files), and
    /// saturates rather than overflowing on absurd settings.
    #[test]
    fn descriptors_needed_cover_every_core_at_its_bounds() {
        let c = BrokerConfig {
            cores: Some(4),
            core_connections_max: 10_000,
            core_open_segment_files_max: 1024,
            ..BrokerConfig::default()
        };
        assert_eq!(descriptors_needed(&c), 4 * 11_024);
        let huge = BrokerConfig {
            core_connections_max: usize::MAX,
            ..c
        };
        assert_eq!(descriptors_needed(&huge), u64::MAX);
    }

    /// Proves a second lock on the same data dir is refused and names the holder's pid.
    #[test]
    fn second_data_dir_lock_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _first = lock_data_dir(dir.path()).expect("first lock");
        // flock locks are per open file description, so a second open in this process conflicts.
        match lock_data_dir(dir.path()) {
            Err(StartError::DataDirLocked { holder, .. }) => {
                assert_eq!(holder, std::process::id().to_string());
            }
            other => panic!("expected DataDirLocked, got {other:?}"),
        }
    }

    /// Proves a port held by a plain listener is reported busy, and port 0 resolves to a real port.
    #[test]
    fn busy_port_is_reported_and_port_zero_resolves() {
        let (bound, _lock) = claim_port("127.0.0.1:0".parse().expect("addr")).expect("free port");
        assert_ne!(bound.port(), 0);
        let holder = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = holder.local_addr().expect("addr");
        assert!(matches!(claim_port(addr), Err(StartError::PortBusy { .. })));
    }

    /// Proves the start-up host check refuses a host that forbids io_uring with a line naming
    /// the setting and its fix, and lets a host through when nothing blocks (settings the fake
    /// tree lacks are not applicable, never blocking).
    #[test]
    fn host_check_blocks_only_on_blockers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = tune::Root::new(dir.path());
        let config = BrokerConfig {
            cores: Some(1),
            ..BrokerConfig::default()
        };
        assert!(check_host_at(&root, &config).is_ok());
        let sysctl = root.path("/proc/sys/kernel/io_uring_disabled");
        std::fs::create_dir_all(sysctl.parent().expect("parent")).expect("mkdir");
        std::fs::write(&sysctl, "0\n").expect("write");
        std::fs::write(root.path("/proc/sys/vm/swappiness"), "60\n").ok();
        assert!(check_host_at(&root, &config).is_ok());
        std::fs::write(&sysctl, "2\n").expect("write");
        let message = check_host_at(&root, &config)
            .expect_err("io_uring forbidden blocks start")
            .to_string();
        assert!(
            message.contains("kernel.io_uring_disabled is 2 (needs 0): sysctl -w"),
            "{message}"
        );
    }

    /// Proves io_uring_disabled = 2 blocks start and 0 allows it.
    #[test]
    fn io_uring_disabled_switch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("io_uring_disabled");
        std::fs::write(&path, "2\n").expect("write");
        assert!(check_io_uring_allowed(&path).is_err());
        std::fs::write(&path, "0\n").expect("write");
        assert!(check_io_uring_allowed(&path).is_ok());
    }
}
