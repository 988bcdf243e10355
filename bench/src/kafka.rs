//! A small blocking Kafka client on `sluice-net`'s codec: one TCP connection, requests framed
//! and written with one vectored write, responses read as whole frames and matched to their
//! request by correlation id, in order (Kafka answers a connection's requests in order).
//!
//! Pipelining is the caller's: a [`Conn`] can be split with [`Conn::try_clone`] into a writer
//! that sends many requests and a reader that collects their answers, so a producer keeps many
//! requests in flight on one connection. Admin helpers (create a topic, wait for its leaders,
//! wait until it takes writes, list offsets) are plain request/answer calls.
//!
//! Versions are fixed ones that both sluice and Apache Kafka 4.4 accept and that still address
//! topics by name: Produce v9, Fetch v12, Metadata v12, ListOffsets v7, CreateTopics v7.
//!
//! Clusters: `--bootstrap` is a list ([`Bootstrap`]); Metadata from any of them gives each
//! partition's leader and each broker's address ([`Leaders`]), and produce, fetch and list
//! offsets go to the leader of their partitions, one connection per leader broker, as Kafka's
//! clients do. A leader change within a phase is not followed: NOT_LEADER_OR_FOLLOWER fails the
//! phase with the leader a fresh Metadata names ([`leader_moved`]); the next phase asks
//! Metadata again. Every socket read and write gives up after [`IO_TIMEOUT`], so a broker that
//! stops answering fails the phase instead of hanging it.

use std::collections::BTreeMap;
use std::io::{IoSlice, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::{Bytes, BytesMut};
use sluice_net::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use sluice_net::messages::fetch_request::{FetchPartition, FetchTopic};
use sluice_net::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use sluice_net::messages::metadata_request::MetadataRequestTopic;
use sluice_net::messages::produce_request::{PartitionProduceData, TopicProduceData};
use sluice_net::messages::{
    CreateTopicsRequest, FetchRequest, FetchResponse, ListOffsetsRequest, MetadataRequest,
    MetadataResponse, ProduceRequest, ProduceResponse,
};
use sluice_net::record_batch::build::{BatchSpec, KeyValue, batch};
use sluice_net::{
    ApiKey, Decoder, Encoder, ErrorCode, Request, RequestHeader, Response, ResponseHeader,
};

pub const PRODUCE_VERSION: i16 = 9;
pub const FETCH_VERSION: i16 = 12;
const METADATA_VERSION: i16 = 12;
const LIST_OFFSETS_VERSION: i16 = 7;
const CREATE_TOPICS_VERSION: i16 = 7;
/// Largest response frame accepted (a fetch answer is bounded by its `max_bytes`).
const RESPONSE_BYTES_MAX: usize = 256 << 20;
const CLIENT_ID: &str = "sluice-bench";

/// Longest wait for a socket read or write: past it the phase fails ("no answer from ...")
/// rather than hang. Above the produce request's 30 s timeout, after which a broker answers
/// REQUEST_TIMED_OUT itself.
pub const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// Resolves `host:port` to its first address.
pub fn resolve(bootstrap: &str) -> anyhow::Result<SocketAddr> {
    bootstrap
        .to_socket_addrs()
        .with_context(|| format!("resolve {bootstrap}"))?
        .next()
        .with_context(|| format!("{bootstrap}: no address"))
}

/// The brokers a run starts from: `host:port[,host:port...]`, as Kafka's `bootstrap.servers`.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    pub addrs: Vec<SocketAddr>,
    text: String,
}

impl Bootstrap {
    pub fn parse(list: &str) -> anyhow::Result<Bootstrap> {
        let addrs = list
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(resolve)
            .collect::<anyhow::Result<Vec<_>>>()?;
        anyhow::ensure!(!addrs.is_empty(), "--bootstrap {list:?}: no address");
        Ok(Bootstrap {
            addrs,
            text: list.to_owned(),
        })
    }

    /// A connection to the first bootstrap broker that takes one.
    pub fn connect(&self) -> anyhow::Result<Conn> {
        let mut failed = Vec::new();
        for &a in &self.addrs {
            match Conn::connect(a) {
                Ok(c) => return Ok(c),
                Err(e) => failed.push(format!("{e:#}")),
            }
        }
        bail!("no bootstrap broker answers: {}", failed.join("; "))
    }
}

impl std::fmt::Display for Bootstrap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// One connection to a broker. Lives on one thread (or two, after `try_clone`: one writes,
/// one reads).
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    next_correlation_id: i32,
    /// The broker's address.
    pub addr: SocketAddr,
}

impl Conn {
    pub fn connect(addr: SocketAddr) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .with_context(|| format!("connect to {addr}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(Conn {
            stream,
            buf: BytesMut::with_capacity(1 << 20),
            next_correlation_id: 1,
            addr,
        })
    }

    /// A second handle on the same socket, for a reader thread.
    pub fn try_clone(&self) -> anyhow::Result<Conn> {
        Ok(Conn {
            stream: self.stream.try_clone()?,
            buf: BytesMut::with_capacity(1 << 20),
            next_correlation_id: 1,
            addr: self.addr,
        })
    }

    /// Encodes and writes one request; returns its correlation id.
    pub fn send(&mut self, version: i16, request: &Request) -> anyhow::Result<i32> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let chunks = encode_request(version, correlation_id, request);
        write_all_vectored(&mut self.stream, &chunks)
            .map_err(|e| timed_out(e, self.addr, "write to"))?;
        Ok(correlation_id)
    }

    /// Reads one whole response frame body (header + message).
    pub fn recv_frame(&mut self) -> anyhow::Result<Bytes> {
        loop {
            if let Some(body) = sluice_net::split_frame(&mut self.buf, RESPONSE_BYTES_MAX)? {
                return Ok(body);
            }
            if let Some(len) = sluice_net::read_frame_len(&self.buf, RESPONSE_BYTES_MAX)? {
                self.buf.reserve(len + 4 - self.buf.len().min(len + 4));
            }
            if self.buf.capacity() - self.buf.len() < 64 << 10 {
                self.buf.reserve(256 << 10);
            }
            let len = self.buf.len();
            let cap = self.buf.capacity();
            // SAFETY: the bytes between len and cap are reserved; `read` writes at most that
            // many and we only extend `len` by what it reports written.
            let n = unsafe {
                let spare =
                    std::slice::from_raw_parts_mut(self.buf.as_mut_ptr().add(len), cap - len);
                let n = self
                    .stream
                    .read(spare)
                    .map_err(|e| timed_out(e.into(), self.addr, "read from"))?;
                self.buf.set_len(len + n);
                n
            };
            if n == 0 {
                bail!("broker {} closed the connection", self.addr);
            }
        }
    }

    /// Reads one response, checks its correlation id and decodes it.
    pub fn recv(
        &mut self,
        api: ApiKey,
        version: i16,
        correlation_id: i32,
    ) -> anyhow::Result<Response> {
        let frame = self.recv_frame()?;
        decode_response(api, version, correlation_id, frame)
    }

    /// One request, one answer.
    pub fn call(&mut self, version: i16, request: &Request) -> anyhow::Result<Response> {
        let id = self.send(version, request)?;
        self.recv(request.api_key(), version, id)
    }
}

/// A socket error, said plainly when it is [`IO_TIMEOUT`] running out.
fn timed_out(e: anyhow::Error, addr: SocketAddr, what: &str) -> anyhow::Error {
    let timeout = e.downcast_ref::<std::io::Error>().is_some_and(|io| {
        matches!(
            io.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        )
    });
    if timeout {
        anyhow::anyhow!(
            "{what} broker {addr}: no progress within {} s",
            IO_TIMEOUT.as_secs()
        )
    } else {
        e.context(format!("{what} broker {addr}"))
    }
}

/// Encodes a whole request frame (size, header, body) as chunks for a vectored write; each
/// record batch stays its own chunk.
pub fn encode_request(version: i16, correlation_id: i32, request: &Request) -> Vec<Bytes> {
    let api = request.api_key();
    let mut e = Encoder::framed();
    let header = RequestHeader {
        request_api_key: api.key(),
        request_api_version: version,
        correlation_id,
        client_id: Some(CLIENT_ID.into()),
        ..Default::default()
    };
    header.encode(&mut e, api.request_header_version(version));
    request.encode(&mut e, version);
    e.finish()
}

/// Decodes a response frame body, checking the correlation id.
pub fn decode_response(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    frame: Bytes,
) -> anyhow::Result<Response> {
    let mut d = Decoder::new(frame);
    let header = ResponseHeader::decode(&mut d, api.response_header_version(version))?;
    if header.correlation_id != correlation_id {
        bail!(
            "{}: correlation id {} where {correlation_id} was expected",
            api.name(),
            header.correlation_id
        );
    }
    Ok(Response::decode(api, version, d.into_rest())?)
}

fn write_all_vectored(stream: &mut TcpStream, chunks: &[Bytes]) -> anyhow::Result<()> {
    let mut index = 0;
    let mut skip = 0;
    while index < chunks.len() {
        let slices: Vec<IoSlice<'_>> = std::iter::once(&chunks[index][skip..])
            .chain(chunks[index + 1..].iter().map(|c| &c[..]))
            .map(IoSlice::new)
            .collect();
        let mut n = stream.write_vectored(&slices)?;
        if n == 0 {
            bail!("broker closed the connection");
        }
        while index < chunks.len() && n >= chunks[index].len() - skip {
            n -= chunks[index].len() - skip;
            skip = 0;
            index += 1;
        }
        skip += n;
    }
    Ok(())
}

/// A produce request for one topic: `(partition, batch)` pairs.
pub fn produce_request(topic: &str, acks: i16, batches: Vec<(i32, Bytes)>) -> Request {
    Request::Produce(ProduceRequest {
        acks,
        timeout_ms: 30_000,
        topic_data: vec![TopicProduceData {
            name: topic.into(),
            partition_data: batches
                .into_iter()
                .map(|(index, records)| PartitionProduceData {
                    index,
                    records: Some(records.into()),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    })
}

/// Counts the partitions of a produce answer that carry an error.
pub fn produce_errors(r: &ProduceResponse) -> u64 {
    r.responses
        .iter()
        .flat_map(|t| &t.partition_responses)
        .filter(|p| p.error_code != 0)
        .count() as u64
}

/// A fetch of `(partition, offset)` pairs of one topic.
pub fn fetch_request(
    topic: &str,
    offsets: &[(i32, i64)],
    partition_max_bytes: i32,
    max_wait_ms: i32,
) -> Request {
    Request::Fetch(FetchRequest {
        max_wait_ms,
        min_bytes: 1,
        max_bytes: 64 << 20,
        topics: vec![FetchTopic {
            topic: topic.into(),
            partitions: offsets
                .iter()
                .map(|&(partition, fetch_offset)| FetchPartition {
                    partition,
                    fetch_offset,
                    partition_max_bytes,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    })
}

pub fn expect_fetch(r: Response) -> anyhow::Result<FetchResponse> {
    match r {
        Response::Fetch(f) => Ok(f),
        other => bail!("expected a Fetch answer, got {:?}", other.api_key()),
    }
}

/// Kafka's NOT_LEADER_OR_FOLLOWER: the broker asked does not lead that partition (any more).
pub const NOT_LEADER_OR_FOLLOWER: i16 = ErrorCode::NOT_LEADER_OR_FOLLOWER.code();

/// An error code as Kafka names it, e.g. `NOT_ENOUGH_REPLICAS (19)`.
pub fn error_name(code: i16) -> String {
    ErrorCode::from_code(code).map_or(format!("error {code}"), |e| e.to_string())
}

fn metadata_request(topic: Option<&str>) -> Request {
    Request::Metadata(MetadataRequest {
        topics: topic.map(|t| {
            vec![MetadataRequestTopic {
                name: Some(t.into()),
                ..Default::default()
            }]
        }),
        allow_auto_topic_creation: false,
        ..Default::default()
    })
}

/// Metadata of `topic` (`None`: of the brokers only).
pub fn metadata(c: &mut Conn, topic: Option<&str>) -> anyhow::Result<MetadataResponse> {
    match c.call(METADATA_VERSION, &metadata_request(topic))? {
        Response::Metadata(m) => Ok(m),
        other => bail!("expected a Metadata answer, got {:?}", other.api_key()),
    }
}

/// Where a topic's partitions are led, from one Metadata answer: each partition's leader and
/// each broker's address (as the brokers advertise it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaders {
    /// Node id to address, every broker of the answer.
    pub brokers: BTreeMap<i32, SocketAddr>,
    /// Partition to its leader's node id, every partition of the topic.
    pub leader: BTreeMap<i32, i32>,
}

impl Leaders {
    /// Reads `topic`'s leaders out of a Metadata answer; an error unless every one of its
    /// `partitions` partitions has a leader among the answer's brokers.
    pub fn from_metadata(
        m: &MetadataResponse,
        topic: &str,
        partitions: i32,
    ) -> anyhow::Result<Leaders> {
        let mut brokers = BTreeMap::new();
        for b in &m.brokers {
            let (host, port) = (b.host.as_str(), b.port);
            let addr = (host, u16::try_from(port)?)
                .to_socket_addrs()
                .with_context(|| format!("broker {}: resolve {host}:{port}", b.node_id))?
                .next()
                .with_context(|| format!("broker {}: {host}:{port} has no address", b.node_id))?;
            brokers.insert(b.node_id.get(), addr);
        }
        let t = m
            .topics
            .iter()
            .find(|t| t.name.as_deref() == Some(topic))
            .with_context(|| format!("Metadata has no topic {topic}"))?;
        anyhow::ensure!(
            t.error_code == 0,
            "Metadata of {topic}: {}",
            error_name(t.error_code)
        );
        let mut leader = BTreeMap::new();
        for p in &t.partitions {
            let (index, id) = (p.partition_index, p.leader_id.get());
            anyhow::ensure!(
                p.error_code == 0,
                "{topic}-{index}: {}",
                error_name(p.error_code)
            );
            anyhow::ensure!(id >= 0, "{topic}-{index} has no leader");
            anyhow::ensure!(
                brokers.contains_key(&id),
                "{topic}-{index}: leader {id} is not among the brokers of the answer"
            );
            leader.insert(index, id);
        }
        anyhow::ensure!(
            leader.len() == partitions as usize
                && leader.keys().all(|p| (0..partitions).contains(p)),
            "{topic}: Metadata lists partitions {:?}, {partitions} expected",
            leader.keys().collect::<Vec<_>>()
        );
        Ok(Leaders { brokers, leader })
    }

    /// Asks a bootstrap broker.
    pub fn fetch(boot: &Bootstrap, topic: &str, partitions: i32) -> anyhow::Result<Leaders> {
        let mut c = boot.connect()?;
        let m = metadata(&mut c, Some(topic))?;
        Leaders::from_metadata(&m, topic, partitions)
            .with_context(|| format!("Metadata from {}", c.addr))
    }

    /// `partitions` grouped by leader, in node id order: (node id, its address, its partitions
    /// in the order given). A partition without a leader here is left out.
    pub fn by_broker(&self, partitions: &[i32]) -> Vec<(i32, SocketAddr, Vec<i32>)> {
        let mut groups: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for p in partitions {
            if let Some(&id) = self.leader.get(p) {
                groups.entry(id).or_default().push(*p);
            }
        }
        groups
            .into_iter()
            .filter_map(|(id, ps)| Some((id, *self.brokers.get(&id)?, ps)))
            .collect()
    }
}

/// The error a phase fails with when `from` answers NOT_LEADER_OR_FOLLOWER for `partition`:
/// names the leader a fresh Metadata gives for it.
pub fn leader_moved(
    boot: &Bootstrap,
    topic: &str,
    partition: i32,
    from: SocketAddr,
) -> anyhow::Error {
    let now = boot
        .connect()
        .and_then(|mut c| metadata(&mut c, Some(topic)))
        .map(|m| {
            let leader = m
                .topics
                .iter()
                .filter(|t| t.name.as_deref() == Some(topic))
                .flat_map(|t| &t.partitions)
                .find(|p| p.partition_index == partition)
                .map_or(-1, |p| p.leader_id.get());
            match m.brokers.iter().find(|b| b.node_id == leader) {
                Some(b) => format!("broker {leader} at {}:{}", b.host.as_str(), b.port),
                None => format!("no live leader (leader id {leader})"),
            }
        })
        .unwrap_or_else(|e| format!("nothing (Metadata failed: {e:#})"));
    anyhow::anyhow!(
        "{topic}-{partition}: NOT_LEADER_OR_FOLLOWER from {from}; Metadata now names {now} as its \
         leader. The leader changed during the phase; the bench routes by the leaders Metadata \
         named when the phase started and does not follow a change within a phase: phase failed"
    )
}

/// Waits (up to `within`) until every bootstrap broker answers Metadata listing at least `n`
/// brokers: a cluster's nodes have registered.
pub fn wait_brokers(boot: &Bootstrap, n: usize, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let counts: Vec<anyhow::Result<usize>> = boot
            .addrs
            .iter()
            .map(|&a| Ok(metadata(&mut Conn::connect(a)?, None)?.brokers.len()))
            .collect();
        if counts.iter().all(|c| matches!(c, Ok(k) if *k >= n)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            let seen: Vec<String> = counts
                .iter()
                .map(|c| match c {
                    Ok(k) => k.to_string(),
                    Err(e) => format!("{e:#}"),
                })
                .collect();
            bail!("{boot}: {n} brokers not in Metadata within {within:?} (saw {seen:?})");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Creates `topic` with `partitions` partitions and `replication` replicas, with
/// min.insync.replicas=2 when there are 3 replicas or more (the cluster workload: RF 3, acks=all
/// waits for the ISR, and 2 of them must be in it); an existing topic is fine. Then waits until
/// Metadata shows a leader and a full ISR for every partition.
pub fn create_topic(
    boot: &Bootstrap,
    topic: &str,
    partitions: i32,
    replication: i16,
) -> anyhow::Result<()> {
    let mut c = boot.connect()?;
    let configs: &[(&str, &str)] = if replication >= 3 {
        &[("min.insync.replicas", "2")]
    } else {
        &[]
    };
    let req = Request::CreateTopics(CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: topic.into(),
            num_partitions: partitions,
            replication_factor: replication,
            configs: configs
                .iter()
                .map(|(k, v)| CreatableTopicConfig {
                    name: (*k).into(),
                    value: Some((*v).into()),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        timeout_ms: 30_000,
        ..Default::default()
    });
    let Response::CreateTopics(r) = c.call(CREATE_TOPICS_VERSION, &req)? else {
        bail!("CreateTopics: unexpected answer");
    };
    for t in &r.topics {
        if t.error_code != 0 && t.error_code != ErrorCode::TOPIC_ALREADY_EXISTS.code() {
            bail!(
                "CreateTopics {topic}: {} {:?}",
                error_name(t.error_code),
                t.error_message.as_ref().map(|m| m.as_str().to_owned())
            );
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let m = metadata(&mut c, Some(topic))?;
        let ready = m.topics.iter().any(|t| {
            t.error_code == 0
                && t.partitions.len() == partitions as usize
                && t.partitions.iter().all(|p| {
                    p.error_code == 0
                        && p.leader_id >= 0
                        && p.isr_nodes.len() >= replication.max(1) as usize
                })
        });
        if ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("topic {topic}: not every partition has a leader and a full ISR after 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Produces one record with a null value to every partition of `topic` (acks all), at each
/// partition's leader, again every 100 ms until no answer has a partition error, for at most
/// 30 s. Metadata can show a leader before the broker takes writes: Kafka answers
/// NOT_LEADER_OR_FOLLOWER for a moment after a create, until its broker has applied the new
/// leadership; a measured phase should not start before that. The probe records carry no
/// value bytes.
pub fn wait_writable(boot: &Bootstrap, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let last = match probe_writes(boot, topic, partitions) {
            Ok(errors) if errors.is_empty() => return Ok(()),
            Ok(errors) => errors.join(", "),
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() > deadline {
            bail!("topic {topic}: partitions still refuse writes after 30 s ({last})");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One probe record to every partition at its leader; the partition errors of the answers.
fn probe_writes(boot: &Bootstrap, topic: &str, partitions: i32) -> anyhow::Result<Vec<String>> {
    let leaders = Leaders::fetch(boot, topic, partitions)?;
    let all: Vec<i32> = (0..partitions).collect();
    let record: [KeyValue<'_>; 1] = [(None, None)];
    let mut errors = Vec::new();
    for (_, addr, parts) in leaders.by_broker(&all) {
        let spec = BatchSpec {
            base_timestamp: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
            ..BatchSpec::default()
        };
        let batches = parts.iter().map(|&p| (p, batch(&spec, &record))).collect();
        let req = produce_request(topic, -1, batches);
        let Response::Produce(r) = Conn::connect(addr)?.call(PRODUCE_VERSION, &req)? else {
            bail!("Produce: unexpected answer");
        };
        let failed = r.responses.iter().flat_map(|t| &t.partition_responses);
        for p in failed.filter(|p| p.error_code != 0) {
            errors.push(format!("{topic}-{}: {}", p.index, error_name(p.error_code)));
        }
    }
    Ok(errors)
}

/// Earliest (-2) or latest (-1) offsets of `partitions` of `topic`, each asked of its leader.
pub fn list_offsets(
    leaders: &Leaders,
    topic: &str,
    partitions: &[i32],
    timestamp: i64,
) -> anyhow::Result<Vec<(i32, i64)>> {
    let mut out = Vec::new();
    for (_, addr, parts) in leaders.by_broker(partitions) {
        out.extend(list_offsets_at(
            &mut Conn::connect(addr)?,
            topic,
            &parts,
            timestamp,
        )?);
    }
    out.sort_unstable();
    Ok(out)
}

fn list_offsets_at(
    conn: &mut Conn,
    topic: &str,
    partitions: &[i32],
    timestamp: i64,
) -> anyhow::Result<Vec<(i32, i64)>> {
    let req = Request::ListOffsets(ListOffsetsRequest {
        topics: vec![ListOffsetsTopic {
            name: topic.into(),
            partitions: partitions
                .iter()
                .map(|&partition_index| ListOffsetsPartition {
                    partition_index,
                    timestamp,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    });
    let Response::ListOffsets(r) = conn.call(LIST_OFFSETS_VERSION, &req)? else {
        bail!("ListOffsets: unexpected answer");
    };
    let mut out = Vec::new();
    for t in &r.topics {
        for p in &t.partitions {
            if p.error_code != 0 {
                bail!(
                    "ListOffsets {topic}-{} at {}: {}",
                    p.partition_index,
                    conn.addr,
                    error_name(p.error_code)
                );
            }
            out.push((p.partition_index, p.offset));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_net::record_batch::Batches;
    use sluice_net::record_batch::build::{BatchSpec, batch};

    /// A produce request encodes as one frame whose size prefix matches its length, whose
    /// header carries our correlation id and client id, and whose batch is its own chunk that
    /// decodes back to the same records: what the broker's decoder will see.
    #[test]
    fn produce_request_round_trips() {
        let b = batch(&BatchSpec::default(), &[(Some(b"k"), Some(b"value"))]);
        let req = produce_request("t", -1, vec![(3, b.clone())]);
        let chunks = encode_request(PRODUCE_VERSION, 42, &req);
        assert!(chunks.iter().any(|c| c == &b), "batch is its own chunk");
        let mut frame = BytesMut::new();
        for c in &chunks {
            frame.extend_from_slice(c);
        }
        let body = sluice_net::split_frame(&mut frame, 1 << 20)
            .unwrap()
            .unwrap();
        assert!(frame.is_empty());
        let (header, decoded) = sluice_net::decode_request(body).unwrap();
        assert_eq!(header.correlation_id, 42);
        assert_eq!(
            header.client_id.as_ref().map(|c| c.as_str()),
            Some(CLIENT_ID)
        );
        let Request::Produce(p) = decoded else {
            panic!("not a produce")
        };
        assert_eq!(p.acks, -1);
        let part = &p.topic_data[0].partition_data[0];
        assert_eq!(part.index, 3);
        let batches: Vec<_> = Batches::new(part.records.clone().unwrap().into_bytes()).collect();
        assert_eq!(batches.len(), 1);
        let rb = batches[0].as_ref().unwrap();
        rb.validate().unwrap();
        let recs: Vec<_> = rb.records().unwrap().map(Result::unwrap).collect();
        assert_eq!(recs[0].value.as_deref(), Some(&b"value"[..]));
    }

    /// A fetch request carries each partition's offset and the byte bounds we asked for.
    #[test]
    fn fetch_request_round_trips() {
        let req = fetch_request("t", &[(0, 5), (1, 7)], 1 << 20, 100);
        let chunks = encode_request(FETCH_VERSION, 9, &req);
        let mut frame = BytesMut::new();
        for c in &chunks {
            frame.extend_from_slice(c);
        }
        let body = sluice_net::split_frame(&mut frame, 1 << 20)
            .unwrap()
            .unwrap();
        let (_, decoded) = sluice_net::decode_request(body).unwrap();
        let Request::Fetch(f) = decoded else {
            panic!("not a fetch")
        };
        assert_eq!(f.max_wait_ms, 100);
        let parts: Vec<_> = f.topics[0]
            .partitions
            .iter()
            .map(|p| (p.partition, p.fetch_offset))
            .collect();
        assert_eq!(parts, vec![(0, 5), (1, 7)]);
    }

    fn fake_metadata(leaders: &[i32]) -> MetadataResponse {
        use sluice_net::messages::metadata_response::{
            MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
        };
        MetadataResponse {
            brokers: (1..=3)
                .map(|id| MetadataResponseBroker {
                    node_id: id.into(),
                    host: "127.0.0.1".into(),
                    port: 9090 + id,
                    ..Default::default()
                })
                .collect(),
            topics: vec![MetadataResponseTopic {
                name: Some("t".into()),
                partitions: (leaders.iter().enumerate())
                    .map(|(p, &l)| MetadataResponsePartition {
                        partition_index: p as i32,
                        leader_id: l.into(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    /// A Metadata answer of a 3-node cluster gives each partition's leader and address, and
    /// the partitions group by leader (node id order), keeping the order they were given in.
    #[test]
    fn leaders_from_a_cluster_metadata_answer() {
        let m = fake_metadata(&[2, 3, 1, 2, 2]);
        let l = Leaders::from_metadata(&m, "t", 5).unwrap();
        let at = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        assert_eq!(l.brokers.get(&3), Some(&at(9093)));
        assert_eq!(
            l.by_broker(&[4, 0, 1, 2, 3]),
            vec![
                (1, at(9091), vec![2]),
                (2, at(9092), vec![4, 0, 3]),
                (3, at(9093), vec![1]),
            ]
        );
        assert_eq!(l.by_broker(&[1]), vec![(3, at(9093), vec![1])]);
        // One broker: every partition on it, as the single-node runs have it.
        let one = Leaders::from_metadata(&fake_metadata(&[1, 1]), "t", 2).unwrap();
        assert_eq!(one.by_broker(&[0, 1]), vec![(1, at(9091), vec![0, 1])]);
    }

    /// No leader, a leader that is not among the brokers, a partition count other than the
    /// workload's, or another topic: an error naming it, never a guess.
    #[test]
    fn leaders_refuse_an_incomplete_answer() {
        let err = |m: &MetadataResponse, topic: &str, n: i32| {
            format!("{:#}", Leaders::from_metadata(m, topic, n).unwrap_err())
        };
        assert!(err(&fake_metadata(&[1, -1]), "t", 2).contains("t-1 has no leader"));
        assert!(err(&fake_metadata(&[1, 7]), "t", 2).contains("leader 7 is not among"));
        assert!(err(&fake_metadata(&[1, 2]), "t", 3).contains("3 expected"));
        assert!(err(&fake_metadata(&[1]), "u", 1).contains("no topic u"));
        let mut m = fake_metadata(&[1]);
        m.topics[0].partitions[0].error_code = NOT_LEADER_OR_FOLLOWER;
        assert!(err(&m, "t", 1).contains("NOT_LEADER_OR_FOLLOWER (6)"));
    }

    /// A comma-separated bootstrap list keeps every address, in order.
    #[test]
    fn bootstrap_lists() {
        let b = Bootstrap::parse("127.0.0.1:1, 127.0.0.1:2,127.0.0.1:3").unwrap();
        assert_eq!(
            b.addrs.iter().map(SocketAddr::port).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert!(Bootstrap::parse(" , ").is_err());
    }
}
