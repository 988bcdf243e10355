//! The brokers `compare` starts itself, each stopped when its handle is dropped: the release
//! `sluice` (a child process, stopped by its PID: SIGTERM, then SIGKILL after 10 s) and the
//! reference Apache Kafka of `tests/kafka-ref` (started with its `start` script, stopped with
//! its `stop DIR --rm`, which signals the PID in `DIR/kafka.pid` and never a process by name).
//! Both keep their data in a fresh directory under the disk under test, removed on stop.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A broker started for the run.
pub enum Running {
    Sluice(Sluice),
    Kafka(Kafka),
}

impl Running {
    /// Its bootstrap address, `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        match self {
            Running::Sluice(s) => &s.addr,
            Running::Kafka(k) => &k.addr,
        }
    }
}

/// A sluice started for the run; stopped by PID (SIGTERM, then SIGKILL) when dropped.
pub struct Sluice {
    child: Child,
    dir: PathBuf,
    addr: String,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Sluice {
    /// Starts `bin` on a free loopback port with `cores` executors and its data under `parent`,
    /// and waits (up to 30 s) for it to print the address it listens on.
    pub fn start(bin: &Path, parent: &Path, cores: usize) -> anyhow::Result<Sluice> {
        if !bin.exists() {
            bail!(
                "no sluice binary at {} (build it: cargo build --release --bins, or pass \
                 --sluice-bin / --bootstrap)",
                bin.display()
            );
        }
        let dir = parent.join(format!("sluice-bench-broker-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let mut child = Command::new(bin)
            .arg("start")
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", free_port()?))
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--cores")
            .arg(cores.to_string())
            .args(["--metrics-listen", "off"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("spawn {}", bin.display()))?;
        let stdout = child.stdout.take().context("broker stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("sluice: listening on ") {
                    let addr = rest.split_whitespace().next().unwrap_or_default();
                    let _ = tx.send(addr.to_owned());
                }
            }
        });
        let mut s = Sluice {
            child,
            dir,
            addr: String::new(),
        };
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => s.addr = a,
            Err(_) => bail!("sluice did not report listening within 30 s"),
        }
        Ok(s)
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill on our own child's PID, which we have not reaped yet.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A reference Kafka started with `tests/kafka-ref/start --dir DIR`; dropped, it runs
/// `tests/kafka-ref/stop DIR --rm` (SIGTERM to the PID in `DIR/kafka.pid` if that process is
/// the Kafka of DIR, SIGKILL after 30 s, then DIR is removed).
pub struct Kafka {
    kref: PathBuf,
    dir: PathBuf,
    addr: String,
}

impl Kafka {
    /// Runs `install` (idempotent, offline once done), then `start` with `sets` as `--set`
    /// server.properties overrides, under `taskset -c cpus` when `cpus` is not empty; returns
    /// once Kafka answers Metadata (the script waits up to 90 s).
    pub fn start(
        kref: &Path,
        parent: &Path,
        name: &str,
        sets: &[&str],
        cpus: &[usize],
    ) -> anyhow::Result<Kafka> {
        let install = Command::new(kref.join("install"))
            .stdout(Stdio::null())
            .status()
            .with_context(|| format!("run {}/install", kref.display()))?;
        anyhow::ensure!(install.success(), "{}/install failed", kref.display());
        let dir = parent.join(format!("sluice-bench-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // From here on, dropping the handle stops whatever `start` left running.
        let mut k = Kafka {
            kref: kref.to_owned(),
            dir,
            addr: String::new(),
        };
        let mut cmd = if cpus.is_empty() {
            Command::new(kref.join("start"))
        } else {
            let list: Vec<String> = cpus.iter().map(ToString::to_string).collect();
            let mut c = Command::new("taskset");
            c.args(["-c", &list.join(",")]).arg(kref.join("start"));
            c
        };
        cmd.arg("--dir").arg(&k.dir);
        for s in sets {
            cmd.args(["--set", s]);
        }
        let out = cmd
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("run {}/start", kref.display()))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let addr = stdout.lines().last().unwrap_or_default().trim();
        if !out.status.success() || !addr.starts_with("127.0.0.1:") {
            bail!("{}/start failed ({}): {stdout}", kref.display(), out.status);
        }
        k.addr = addr.to_owned();
        Ok(k)
    }
}

impl Drop for Kafka {
    fn drop(&mut self) {
        let stopped = Command::new(self.kref.join("stop"))
            .arg(&self.dir)
            .arg("--rm")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !matches!(stopped, Ok(s) if s.success()) {
            eprintln!(
                "kafka-ref/stop {} did not succeed: {stopped:?}",
                self.dir.display()
            );
        }
    }
}

/// The `tests/kafka-ref` directory: `given`, or the first `tests/kafka-ref` with a `start`
/// script above this binary (`target/release/sluice-bench` sits two levels under the root),
/// then above the current directory.
pub fn find_kafka_ref(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(d) = given {
        anyhow::ensure!(
            d.join("start").exists(),
            "--kafka-ref {}: no start script there",
            d.display()
        );
        return Ok(d.to_owned());
    }
    let exe = std::env::current_exe().ok();
    let cwd = std::env::current_dir().ok();
    exe.iter()
        .chain(cwd.iter())
        .flat_map(|p| p.ancestors())
        .map(|p| p.join("tests").join("kafka-ref"))
        .find(|d| d.join("start").exists())
        .context(
            "no tests/kafka-ref above this binary or the current directory: pass --kafka-ref DIR",
        )
}
