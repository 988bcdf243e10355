//! Helpers for the integration tests: start the real `sluice` binary on a free loopback port
//! with a fresh data dir, talk to it with raw frames, and stop it by PID (never by name).
//!
//! The binary is `$SLUICE_BIN`, or `sluice` in `$SLUICE_TEST_BIN_DIR`, or the workspace's
//! `target/release/sluice`, then `target/debug/sluice`.
//!
//! External mode: when `SLUICE_TEST_BOOTSTRAP=host:port` is set, [`Broker::start`] spawns nothing
//! and connects to the broker already running there (e.g. the reference Kafka from
//! `tests/kafka-ref/start`), so the same test file can be run against Kafka. The extra args are
//! ignored then; `pid`, `stop` and `restart_after_kill` panic, `kill` does nothing. Tests that
//! use this mode must create their own uniquely named topics and groups.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod cluster;
pub mod netns;

/// Where the `sluice` binary under test is.
pub fn sluice_bin() -> PathBuf {
    if let Ok(p) = std::env::var("SLUICE_BIN") {
        return PathBuf::from(p);
    }
    if let Ok(dir) = std::env::var("SLUICE_TEST_BIN_DIR") {
        return Path::new(&dir).join("sluice");
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned();
    for profile in ["release", "debug"] {
        let p = root.join("target").join(profile).join("sluice");
        if p.exists() {
            return p;
        }
    }
    panic!("no sluice binary: run `cargo build --release --bins` first or set SLUICE_BIN");
}

/// A running broker, killed with SIGKILL when dropped (tests that check a clean stop call
/// [`Broker::stop`]).
#[derive(Debug)]
pub struct Broker {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    extra_args: Vec<String>,
    /// Started by someone else (`SLUICE_TEST_BOOTSTRAP`): never spawned, never killed.
    external: bool,
    /// The file its stderr is also appended to, by every start (see [`Broker::start_logged`]).
    stderr_log: Option<PathBuf>,
}

/// The bootstrap of an already-running broker to test instead of spawning one
/// (`SLUICE_TEST_BOOTSTRAP`, e.g. `127.0.0.1:9092`), if set and non-empty.
pub fn external_bootstrap() -> Option<SocketAddr> {
    use std::net::ToSocketAddrs;
    let v = std::env::var("SLUICE_TEST_BOOTSTRAP").ok()?;
    let v = v.trim();
    if v.is_empty() {
        return None;
    }
    let addr = v
        .to_socket_addrs()
        .unwrap_or_else(|e| panic!("SLUICE_TEST_BOOTSTRAP={v}: {e}"))
        .next()
        .unwrap_or_else(|| panic!("SLUICE_TEST_BOOTSTRAP={v}: no address"));
    Some(addr)
}

impl Broker {
    /// Starts a broker on a free port with a fresh data dir under the system temp dir; or, with
    /// `SLUICE_TEST_BOOTSTRAP` set, stands for the broker already running there (see the module
    /// docs).
    pub fn start(extra_args: &[&str]) -> Broker {
        if let Some(addr) = external_bootstrap() {
            return Broker {
                child: None,
                addr,
                data_dir: PathBuf::new(),
                _tmp: None,
                extra_args: extra_args.iter().map(|s| (*s).to_owned()).collect(),
                external: true,
                stderr_log: None,
            };
        }
        let tmp = tempfile::Builder::new()
            .prefix("sluice-test-")
            .tempdir()
            .expect("tempdir");
        let data_dir = tmp.path().join("data");
        let mut b = Broker::start_in(&data_dir, "127.0.0.1:0".parse().expect("addr"), extra_args);
        b._tmp = Some(tmp);
        b
    }

    /// Starts a broker on `listen` with `data_dir` (which may hold data from an earlier run).
    pub fn start_in(data_dir: &Path, listen: SocketAddr, extra_args: &[&str]) -> Broker {
        Broker::start_logged(data_dir, listen, extra_args, None)
    }

    /// [`Broker::start_in`], and with `stderr_log` every line the broker writes to stderr (its
    /// log) is also appended to that file, for the test to search; restarts append too.
    pub fn start_logged(
        data_dir: &Path,
        listen: SocketAddr,
        extra_args: &[&str],
        stderr_log: Option<&Path>,
    ) -> Broker {
        let extra_args: Vec<String> = extra_args.iter().map(|s| (*s).to_owned()).collect();
        let mut child = Command::new(sluice_bin())
            .arg("start")
            .arg("--listen")
            .arg(listen.to_string())
            .arg("--data-dir")
            .arg(data_dir)
            .args(&extra_args)
            .stdout(Stdio::piped())
            .stderr(if stderr_log.is_some() {
                Stdio::piped()
            } else {
                Stdio::inherit()
            })
            .spawn()
            .expect("spawn sluice");
        if let Some(path) = stderr_log {
            tee_stderr(&mut child, path);
        }
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let mut sent = false;
            while let Some(Ok(line)) = lines.next() {
                if !sent && let Some(rest) = line.strip_prefix("sluice: listening on ") {
                    let addr = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    let _ = tx.send(addr);
                    sent = true;
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a.parse().expect("listening address"),
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().ok();
                let sockets = Command::new("ss")
                    .args(["-tanp", &format!("sport = :{}", listen.port())])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default();
                panic!(
                    "sluice did not report listening within 30 s (exit: {status:?}); sockets on the port:\n{sockets}"
                );
            }
        };
        Broker {
            child: Some(child),
            addr,
            data_dir: data_dir.to_owned(),
            _tmp: None,
            extra_args,
            external: false,
            stderr_log: stderr_log.map(Path::to_owned),
        }
    }

    /// Whether this stands for an external broker (`SLUICE_TEST_BOOTSTRAP`).
    pub fn is_external(&self) -> bool {
        self.external
    }

    fn not_external(&self, what: &str) {
        assert!(
            !self.external,
            "{what} is not possible with an external broker (SLUICE_TEST_BOOTSTRAP)"
        );
    }

    /// The bootstrap string for clients.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// Process id, for signals.
    pub fn pid(&self) -> u32 {
        self.not_external("pid");
        self.child.as_ref().expect("running").id()
    }

    /// Sends SIGTERM and waits for the exit status (at most 30 s).
    pub fn stop(&mut self) -> std::process::ExitStatus {
        self.not_external("stop");
        let mut child = self.child.take().expect("running");
        // SAFETY: kill with a pid we spawned and a valid signal number.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("sluice did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills (SIGKILL) and starts again on the same port and data dir.
    pub fn restart_after_kill(&mut self) {
        self.not_external("restart_after_kill");
        self.kill();
        let args: Vec<&str> = self.extra_args.iter().map(String::as_str).collect();
        let log = self.stderr_log.clone();
        let next = Broker::start_logged(&self.data_dir, self.addr, &args, log.as_deref());
        self.child = next.child_take();
    }

    fn child_take(mut self) -> Option<Child> {
        self.child.take()
    }

    /// Whether the process is still alive.
    pub fn is_running(&mut self) -> bool {
        if self.external {
            return true;
        }
        match self.child.as_mut() {
            Some(c) => c.try_wait().expect("wait").is_none(),
            None => false,
        }
    }
}

/// Copies `child`'s piped stderr, line by line, to the test's stderr (shown when a test fails)
/// and to the end of the file `path`.
fn tee_stderr(child: &mut Child, path: &Path) {
    let stderr = child.stderr.take().expect("piped stderr");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            eprintln!("{line}");
            let _ = writeln!(file, "{line}");
        }
    });
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A raw Kafka connection: sends frames, reads size-prefixed responses.
#[derive(Debug)]
pub struct RawConn {
    pub stream: TcpStream,
}

impl RawConn {
    pub fn connect(addr: SocketAddr) -> RawConn {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        stream.set_nodelay(true).expect("nodelay");
        RawConn { stream }
    }

    /// Sends `body` with its 4-byte size prefix.
    pub fn send_frame(&mut self, body: &[u8]) {
        let mut f = (body.len() as i32).to_be_bytes().to_vec();
        f.extend_from_slice(body);
        self.stream.write_all(&f).expect("write");
    }

    /// Reads one response frame body; `None` when the broker closed the connection.
    pub fn recv_frame(&mut self) -> Option<Vec<u8>> {
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).ok()?;
        let size = i32::from_be_bytes(size);
        assert!(size >= 0, "negative response size");
        let mut body = vec![0u8; size as usize];
        self.stream.read_exact(&mut body).ok()?;
        Some(body)
    }

    /// Whether the broker has closed the connection (reads until EOF or 5 s).
    pub fn is_closed_by_peer(&mut self) -> bool {
        self.stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut buf = [0u8; 1024];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }
}

/// Encodes a request frame body (header + body, no size prefix) with the generated codec.
pub fn encode_request(
    api: sluice_net::ApiKey,
    version: i16,
    correlation_id: i32,
    request: &sluice_net::Request,
) -> Vec<u8> {
    let mut e = sluice_net::Encoder::new();
    let header = sluice_net::RequestHeader {
        request_api_key: api.key(),
        request_api_version: version,
        correlation_id,
        client_id: Some("sluice-tests".into()),
        ..Default::default()
    };
    header.encode(&mut e, api.request_header_version(version));
    request.encode(&mut e, version);
    e.finish_contiguous().to_vec()
}

/// Decodes a response frame body: checks the correlation id, returns the response.
pub fn decode_response(
    api: sluice_net::ApiKey,
    version: i16,
    correlation_id: i32,
    frame: Vec<u8>,
) -> sluice_net::Response {
    let mut d = sluice_net::Decoder::new(bytes::Bytes::from(frame));
    let header = sluice_net::ResponseHeader::decode(&mut d, api.response_header_version(version))
        .expect("response header decodes");
    assert_eq!(
        header.correlation_id, correlation_id,
        "correlation id echoed"
    );
    sluice_net::Response::decode(api, version, d.into_rest()).expect("response body decodes")
}

impl RawConn {
    /// Sends `request` and returns the decoded response.
    pub fn call(
        &mut self,
        api: sluice_net::ApiKey,
        version: i16,
        correlation_id: i32,
        request: &sluice_net::Request,
    ) -> sluice_net::Response {
        self.send_frame(&encode_request(api, version, correlation_id, request));
        let frame = self.recv_frame().expect("broker answered");
        decode_response(api, version, correlation_id, frame)
    }
}

static NEXT_CORRELATION: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(1);
static NEXT_NAME: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A name no other test (nor an earlier run against the same external broker) uses.
pub fn uniq(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000_000,
        NEXT_NAME.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// Sends `req` with a fresh correlation id and decodes the answer.
pub fn call(
    c: &mut RawConn,
    api: sluice_net::ApiKey,
    v: i16,
    req: sluice_net::Request,
) -> sluice_net::Response {
    let corr = NEXT_CORRELATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    c.call(api, v, corr, &req)
}

/// The body of a `Response` of the given variant; panics on any other answer.
#[macro_export]
macro_rules! expect {
    ($resp:expr, $variant:ident) => {
        match $resp {
            sluice_net::Response::$variant(r) => r,
            other => panic!("expected {} response, got {other:?}", stringify!($variant)),
        }
    };
}

/// One Prometheus sample: name, labels, value.
pub type Sample = (String, Vec<(String, String)>, f64);

/// A free loopback port (for a listener the test passes to the broker).
///
/// The port comes from 20000..32000, below Linux's ephemeral range (32768..60999 by default):
/// a port the kernel hands out for `bind(:0)` is also one it may give the next outgoing
/// connection, and under load a cluster test's outgoing connections took a port between the
/// test picking it and the broker binding it (EADDRINUSE). Each port is handed out once per
/// test process; random starting points keep concurrent test processes apart.
pub fn free_port() -> u16 {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    let mut x = seed();
    for _ in 0..SPAN {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let port = u16::try_from(FIRST + x % SPAN).expect("port below 32000");
        if !given.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + SPAN)
}

/// A seed that differs between processes and calls (pid and clock), never zero.
fn seed() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos ^ std::process::id().rotate_left(16)) | 1
}

/// GET `path`: (status line, body).
pub fn http_get(port: u16, path: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics port answers");
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").expect("request sent");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("response read");
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    (
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    )
}

/// Parses the text format strictly enough to catch a broken exposition: every sample line is
/// `name{label="value",...} number` and belongs to a family announced by `# TYPE`.
pub fn metric_samples(body: &str) -> Vec<Sample> {
    let mut families = Vec::new();
    let mut out = Vec::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            families.push(rest.split(' ').next().expect("family name").to_owned());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line}"));
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => {
                let l = l.strip_suffix('}').expect("closing brace");
                let labels = l
                    .split("\",")
                    .filter(|kv| !kv.is_empty())
                    .map(|kv| {
                        let (k, v) = kv.split_once("=\"").expect("label=\"value\"");
                        (k.to_owned(), v.trim_end_matches('"').to_owned())
                    })
                    .collect();
                (n.to_owned(), labels)
            }
            None => (series.to_owned(), Vec::new()),
        };
        assert!(
            families.iter().any(|f| name.starts_with(f.as_str())),
            "sample {name} has no # TYPE"
        );
        out.push((name, labels, value));
    }
    out
}

/// Appends `records` (one v2 batch) to partition 0 of `topic` with acks=all (Produce v9):
/// the partition's error code and base offset.
pub fn produce(conn: &mut RawConn, topic: &str, records: bytes::Bytes) -> (i16, i64) {
    produce_to(conn, topic, &[0], records)[0]
}

/// Appends the same `records` (one v2 batch) to each of `partitions` of `topic` in one
/// Produce (v9, acks=all): each partition's error code and base offset, in request order.
pub fn produce_to(
    conn: &mut RawConn,
    topic: &str,
    partitions: &[i32],
    records: bytes::Bytes,
) -> Vec<(i16, i64)> {
    use sluice_net::messages::produce_request::{PartitionProduceData, TopicProduceData};
    let req = sluice_net::Request::Produce(sluice_net::messages::ProduceRequest {
        acks: -1,
        timeout_ms: 5000,
        topic_data: vec![TopicProduceData {
            name: topic.into(),
            partition_data: partitions
                .iter()
                .map(|&index| PartitionProduceData {
                    index,
                    records: Some(records.clone().into()),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    });
    match conn.call(sluice_net::ApiKey::Produce, 9, 5, &req) {
        sluice_net::Response::Produce(r) => r.responses[0]
            .partition_responses
            .iter()
            .map(|p| (p.error_code, p.base_offset))
            .collect(),
        other => panic!("unexpected {other:?}"),
    }
}

/// A CreateTopics request for one topic `name` of `partitions`, replication factor 1.
fn create_topic_request(name: &str, partitions: i32, timeout_ms: i32) -> sluice_net::Request {
    use sluice_net::messages::{CreateTopicsRequest, create_topics_request::CreatableTopic};
    sluice_net::Request::CreateTopics(CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: name.into(),
            num_partitions: partitions,
            replication_factor: 1,
            ..Default::default()
        }],
        timeout_ms,
        ..Default::default()
    })
}

/// CreateTopics (v7) of `name` with `partitions` (replication factor 1) on a raw connection;
/// asserts it succeeded and returns the topic id.
pub fn create_topic_raw(conn: &mut RawConn, name: &str, partitions: i32) -> sluice_net::Uuid {
    let req = create_topic_request(name, partitions, 10_000);
    let correlation = NEXT_CORRELATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    match conn.call(sluice_net::ApiKey::CreateTopics, 7, correlation, &req) {
        sluice_net::Response::CreateTopics(r) => {
            assert_eq!(r.topics[0].error_code, 0, "{r:?}");
            r.topics[0].topic_id
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// Polls until `found` gives a value, for at most `within`.
pub fn wait_for<T>(within: Duration, what: &str, mut found: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = found() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `probe` until `done` holds for what it saw, for at most `within`; the failure names
/// `what` and shows the last thing seen.
pub fn wait_for_state<S: std::fmt::Debug>(
    within: Duration,
    what: &str,
    mut probe: impl FnMut() -> S,
    done: impl Fn(&S) -> bool,
) -> S {
    let deadline = Instant::now() + within;
    loop {
        let seen = probe();
        if done(&seen) {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; last seen: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// CreateTopics of `name` with `partitions` (replication factor 1) through a broker; its error.
pub fn create_topic(broker: &str, name: &str, partitions: i32) -> i16 {
    let mut client = sluice_net::client::Client::connect(broker, "test", Duration::from_secs(5))
        .expect("connect");
    let request = create_topic_request(name, partitions, 30_000);
    match client.call(7, &request) {
        Ok((_, sluice_net::Response::CreateTopics(r))) => r.topics[0].error_code,
        other => panic!("CreateTopics: {other:?}"),
    }
}

/// One Fetch (v12, no wait, 1 MiB) of `topic`-`partition` from `offset`, as a consumer sends
/// it; `None` when the answer is not a Fetch response.
pub fn fetch_at(
    client: &mut sluice_net::client::Client,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Option<sluice_net::messages::FetchResponse> {
    use sluice_net::messages::{FetchRequest, fetch_request};
    let request = sluice_net::Request::Fetch(FetchRequest {
        max_wait_ms: 0,
        max_bytes: 1 << 20,
        session_epoch: -1,
        topics: vec![fetch_request::FetchTopic {
            topic: topic.into(),
            partitions: vec![fetch_request::FetchPartition {
                partition,
                fetch_offset: offset,
                partition_max_bytes: 1 << 20,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    });
    match client.call(12, &request) {
        Ok((_, sluice_net::Response::Fetch(f))) => Some(f),
        _ => None,
    }
}

/// A broker's Metadata answer for `topic`.
pub fn metadata_of(broker: &str, topic: &str) -> Option<sluice_net::messages::MetadataResponse> {
    use sluice_net::messages::{MetadataRequest, metadata_request::MetadataRequestTopic};
    let mut client =
        sluice_net::client::Client::connect(broker, "test", Duration::from_secs(5)).ok()?;
    let request = sluice_net::Request::Metadata(MetadataRequest {
        topics: Some(vec![MetadataRequestTopic {
            name: Some(topic.into()),
            ..Default::default()
        }]),
        allow_auto_topic_creation: false,
        ..Default::default()
    });
    match client.call(12, &request).ok()? {
        (_, sluice_net::Response::Metadata(r)) => Some(r),
        _ => None,
    }
}

/// How many partitions a broker's Metadata gives `topic`, if it knows it.
pub fn partition_count(broker: &str, topic: &str) -> Option<usize> {
    let r = metadata_of(broker, topic)?;
    let t = r.topics.first()?;
    (t.error_code == sluice_net::error_code::code::NONE).then_some(t.partitions.len())
}

/// The directory `name` somewhere under `root` (a partition's, `<topic>-<partition>`).
pub fn find_dir(root: &std::path::Path, name: &str, depth: u32) -> Option<std::path::PathBuf> {
    let entries = std::fs::read_dir(root).ok()?;
    let dirs: Vec<std::path::PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    if let Some(d) = dirs
        .iter()
        .find(|d| d.file_name().is_some_and(|n| n == name))
    {
        return Some(d.clone());
    }
    if depth == 0 {
        return None;
    }
    dirs.iter().find_map(|d| find_dir(d, name, depth - 1))
}

/// The logical content of one replica's log of `topic`-`partition` in a node's data dir, and
/// its next offset: the batches of its `.log` segments in offset order. A segment file may be
/// longer than its batches (fallocate steps, zero padding to the direct-I/O block:
/// `shard/src/segment.rs`), and a live one may be mid-write, so each file is read up to the
/// first bytes that are not a whole, CRC-valid batch continuing the offsets. No directory yet
/// is an empty log.
pub fn replica_log(node_dir: &std::path::Path, topic: &str, partition: i32) -> (Vec<u8>, i64) {
    let Some(dir) = find_dir(node_dir, &format!("{topic}-{partition}"), 2) else {
        return (Vec::new(), 0);
    };
    let mut segments: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    segments.retain(|p| p.extension().is_some_and(|e| e == "log"));
    segments.sort();
    let (mut bytes, mut next) = (Vec::new(), None);
    for segment in segments {
        let Ok(content) = std::fs::read(&segment) else {
            continue;
        };
        for batch in sluice_net::record_batch::Batches::new(bytes::Bytes::from(content)) {
            let Ok(batch) = batch else { break };
            let continues = next.is_none_or(|n| batch.base_offset() == n);
            if batch.validate_stored().is_err() || !continues {
                break;
            }
            bytes.extend_from_slice(batch.bytes());
            next = Some(batch.last_offset() + 1);
        }
    }
    (bytes, next.unwrap_or(0))
}
