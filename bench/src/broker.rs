//! The brokers `compare` starts itself, each stopped when its handle is dropped: the release
//! `sluice` (a child process, stopped by its PID: SIGTERM, then SIGKILL after 10 s), a cluster of
//! them (`--cluster N`: N combined broker+controller nodes as in README "Run a cluster", each on
//! its own CPUs through `taskset`, stopped by their PIDs with SIGKILL: the data is thrown away),
//! and the reference Apache Kafka of `tests/kafka-ref` (started with its `start` or
//! `start-cluster` script, stopped with `stop DIR --rm` or `stop-cluster DIR --rm`, which signal
//! the PIDs in the `kafka.pid` files and never a process by name). All keep their data in a fresh
//! directory under the disk under test, removed on stop.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::kafka;

/// A broker (or cluster) started for the run.
pub enum Running {
    Sluice(Sluice),
    SluiceCluster(SluiceCluster),
    Kafka(Kafka),
}

impl Running {
    /// Its bootstrap addresses, `127.0.0.1:PORT[,127.0.0.1:PORT...]`.
    pub fn addr(&self) -> &str {
        match self {
            Running::Sluice(s) => &s.addr,
            Running::SluiceCluster(c) => &c.bootstrap,
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

/// `n` distinct free loopback ports.
fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let mut ports: Vec<u16> = Vec::with_capacity(n);
    while ports.len() < n {
        let p = free_port()?;
        if !ports.contains(&p) {
            ports.push(p);
        }
    }
    Ok(ports)
}

fn check_bin(bin: &Path) -> anyhow::Result<()> {
    if !bin.exists() {
        bail!(
            "no sluice binary at {} (build it: cargo build --release --bins, or pass \
             --sluice-bin / --bootstrap)",
            bin.display()
        );
    }
    Ok(())
}

/// A cluster node's place: its node id, the voters, its CPUs.
struct NodeOf<'a> {
    id: usize,
    voters: &'a str,
    cpus: &'a [usize],
}

impl Sluice {
    /// Starts `bin` on a free loopback port with `cores` executors and its data under `parent`,
    /// and waits (up to 30 s) for it to print the address it listens on.
    pub fn start(bin: &Path, parent: &Path, cores: usize) -> anyhow::Result<Sluice> {
        check_bin(bin)?;
        let dir = parent.join(format!("sluice-bench-broker-{}", std::process::id()));
        let (mut s, rx) = Sluice::spawn(bin, dir, free_port()?, cores, None)?;
        s.wait_listening(&rx)?;
        Ok(s)
    }

    /// Spawns `bin start` with its data in `dir` (made afresh) on `port`; the receiver gets the
    /// address it prints once listening. A cluster node runs under `taskset -c` its CPUs.
    fn spawn(
        bin: &Path,
        dir: PathBuf,
        port: u16,
        cores: usize,
        node: Option<NodeOf<'_>>,
    ) -> anyhow::Result<(Sluice, Receiver<String>)> {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let mut cmd = match &node {
            Some(n) => {
                let list: Vec<String> = n.cpus.iter().map(ToString::to_string).collect();
                let mut c = Command::new("taskset");
                c.args(["-c", &list.join(",")]).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        cmd.arg("start")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--cores")
            .arg(cores.to_string())
            .args(["--metrics-listen", "off"]);
        if let Some(n) = &node {
            cmd.args([
                "--node-id",
                &n.id.to_string(),
                "--controller-voters",
                n.voters,
            ]);
        }
        let mut child = cmd
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
        let s = Sluice {
            child,
            dir,
            addr: String::new(),
        };
        Ok((s, rx))
    }

    fn wait_listening(&mut self, rx: &Receiver<String>) -> anyhow::Result<()> {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => {
                self.addr = a;
                Ok(())
            }
            Err(_) => bail!("sluice did not report listening within 30 s"),
        }
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill on our own child's PID, which we have not reaped yet.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, signal);
        }
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        self.signal(libc::SIGTERM);
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

/// A sluice cluster started for the run: one process per node, every node a broker and a
/// controller voter. Dropped, it kills every node by its PID (SIGKILL: the cluster and its data
/// are thrown away, and a graceful stop of a whole cluster waits out its controlled shutdowns)
/// and removes its directory.
pub struct SluiceCluster {
    nodes: Vec<Sluice>,
    dir: PathBuf,
    bootstrap: String,
}

impl SluiceCluster {
    /// Starts `nodes.len()` nodes, node `i + 1` with `--cores nodes[i].len()` under
    /// `taskset -c nodes[i]`, client and controller ports free on loopback, data under
    /// `parent`; returns once every node listens and Metadata lists all of them (60 s at most).
    pub fn start(bin: &Path, parent: &Path, nodes: &[Vec<usize>]) -> anyhow::Result<SluiceCluster> {
        check_bin(bin)?;
        let n = nodes.len();
        let dir = parent.join(format!("sluice-bench-cluster-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ports = free_ports(2 * n)?;
        let voters: Vec<String> = (0..n)
            .map(|i| format!("{}@127.0.0.1:{}", i + 1, ports[n + i]))
            .collect();
        let voters = voters.join(",");
        let mut c = SluiceCluster {
            nodes: Vec::with_capacity(n),
            dir,
            bootstrap: String::new(),
        };
        let mut listening = Vec::with_capacity(n);
        for (i, cpus) in nodes.iter().enumerate() {
            let node = NodeOf {
                id: i + 1,
                voters: &voters,
                cpus,
            };
            let node_dir = c.dir.join(format!("node{}", i + 1));
            let cores = cpus.len().max(1);
            let (s, rx) = Sluice::spawn(bin, node_dir, ports[i], cores, Some(node))?;
            c.nodes.push(s);
            listening.push(rx);
        }
        for (i, rx) in listening.iter().enumerate() {
            c.nodes[i]
                .wait_listening(rx)
                .with_context(|| format!("cluster node {}", i + 1))?;
        }
        let addrs: Vec<&str> = c.nodes.iter().map(|s| s.addr.as_str()).collect();
        c.bootstrap = addrs.join(",");
        let boot = kafka::Bootstrap::parse(&c.bootstrap)?;
        kafka::wait_brokers(&boot, n, Duration::from_secs(60))?;
        Ok(c)
    }
}

impl Drop for SluiceCluster {
    fn drop(&mut self) {
        for s in &mut self.nodes {
            let _ = s.child.kill();
            let _ = s.child.wait();
        }
        // Each node's Drop finds its process reaped and removes its directory.
        self.nodes.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A reference Kafka started with `tests/kafka-ref/start --dir DIR` (or `start-cluster`, for a
/// cluster); dropped, it runs `tests/kafka-ref/stop DIR --rm` (or `stop-cluster DIR --rm`:
/// SIGTERM to the PID in each `kafka.pid` if that process is the Kafka of that dir, SIGKILL
/// after 30 s, then DIR is removed).
pub struct Kafka {
    kref: PathBuf,
    dir: PathBuf,
    addr: String,
    cluster: bool,
}

impl Kafka {
    /// Runs `install` (idempotent, offline once done), then `start` (`nodes` 1) or
    /// `start-cluster --nodes N` (its defaults: RF min(N, 3) and min.insync.replicas min(N, 2)
    /// for new topics) with `sets` as `--set` server.properties overrides, under
    /// `taskset -c cpus` when `cpus` is not empty; returns once Kafka answers Metadata (listing
    /// every node).
    pub fn start(
        kref: &Path,
        parent: &Path,
        name: &str,
        sets: &[&str],
        cpus: &[usize],
        nodes: usize,
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
            cluster: nodes > 1,
        };
        let script = kref.join(if k.cluster { "start-cluster" } else { "start" });
        let mut cmd = if cpus.is_empty() {
            Command::new(&script)
        } else {
            let list: Vec<String> = cpus.iter().map(ToString::to_string).collect();
            let mut c = Command::new("taskset");
            c.args(["-c", &list.join(",")]).arg(&script);
            c
        };
        cmd.arg("--dir").arg(&k.dir);
        if k.cluster {
            cmd.args(["--nodes", &nodes.to_string()]);
        }
        for s in sets {
            cmd.args(["--set", s]);
        }
        let out = cmd
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("run {}", script.display()))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        // `start` prints the address last; `start-cluster` the bootstrap list, then the voters.
        let mut lines = stdout.lines();
        let addr = if k.cluster {
            lines.next()
        } else {
            lines.last()
        };
        let addr = addr.unwrap_or_default().trim();
        if !out.status.success() || !addr.starts_with("127.0.0.1:") {
            bail!("{} failed ({}): {stdout}", script.display(), out.status);
        }
        k.addr = addr.to_owned();
        Ok(k)
    }
}

impl Drop for Kafka {
    fn drop(&mut self) {
        let script = if self.cluster { "stop-cluster" } else { "stop" };
        let stopped = Command::new(self.kref.join(script))
            .arg(&self.dir)
            .arg("--rm")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !matches!(stopped, Ok(s) if s.success()) {
            eprintln!(
                "kafka-ref/{script} {} did not succeed: {stopped:?}",
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
