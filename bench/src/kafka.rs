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
//! One broker is assumed (every partition's leader is the bootstrap broker): both brokers this
//! tool compares run as one node here.

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
    ProduceRequest, ProduceResponse,
};
use sluice_net::record_batch::build::{BatchSpec, KeyValue, batch};
use sluice_net::{ApiKey, Decoder, Encoder, Request, RequestHeader, Response, ResponseHeader};

pub const PRODUCE_VERSION: i16 = 9;
pub const FETCH_VERSION: i16 = 12;
const METADATA_VERSION: i16 = 12;
const LIST_OFFSETS_VERSION: i16 = 7;
const CREATE_TOPICS_VERSION: i16 = 7;
/// Largest response frame accepted (a fetch answer is bounded by its `max_bytes`).
const RESPONSE_BYTES_MAX: usize = 256 << 20;
const CLIENT_ID: &str = "sluice-bench";

/// Kafka error code TOPIC_ALREADY_EXISTS.
const TOPIC_ALREADY_EXISTS: i16 = 36;

/// Resolves `host:port` to its first address.
pub fn resolve(bootstrap: &str) -> anyhow::Result<SocketAddr> {
    bootstrap
        .to_socket_addrs()
        .with_context(|| format!("resolve {bootstrap}"))?
        .next()
        .with_context(|| format!("{bootstrap}: no address"))
}

/// One connection to the broker. Lives on one thread (or two, after `try_clone`: one writes,
/// one reads).
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    next_correlation_id: i32,
}

impl Conn {
    pub fn connect(addr: SocketAddr) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .with_context(|| format!("connect to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: BytesMut::with_capacity(1 << 20),
            next_correlation_id: 1,
        })
    }

    /// A second handle on the same socket, for a reader thread.
    pub fn try_clone(&self) -> anyhow::Result<Conn> {
        Ok(Conn {
            stream: self.stream.try_clone()?,
            buf: BytesMut::with_capacity(1 << 20),
            next_correlation_id: 1,
        })
    }

    /// Encodes and writes one request; returns its correlation id.
    pub fn send(&mut self, version: i16, request: &Request) -> anyhow::Result<i32> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let chunks = encode_request(version, correlation_id, request);
        write_all_vectored(&mut self.stream, &chunks)?;
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
                let n = self.stream.read(spare)?;
                self.buf.set_len(len + n);
                n
            };
            if n == 0 {
                bail!("broker closed the connection");
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

/// Creates `topic` with `partitions` partitions (replication 1); an existing topic is fine.
/// Then waits until Metadata shows a leader for every partition.
pub fn create_topic(
    addr: SocketAddr,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> anyhow::Result<()> {
    let mut c = Conn::connect(addr)?;
    let req = Request::CreateTopics(CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: topic.into(),
            num_partitions: partitions,
            replication_factor: 1,
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
        if t.error_code != 0 && t.error_code != TOPIC_ALREADY_EXISTS {
            bail!(
                "CreateTopics {topic}: error {} {:?}",
                t.error_code,
                t.error_message.as_ref().map(|m| m.as_str().to_owned())
            );
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let req = Request::Metadata(MetadataRequest {
            topics: Some(vec![MetadataRequestTopic {
                name: Some(topic.into()),
                ..Default::default()
            }]),
            allow_auto_topic_creation: false,
            ..Default::default()
        });
        if let Response::Metadata(m) = c.call(METADATA_VERSION, &req)? {
            let ready = m.topics.iter().any(|t| {
                t.error_code == 0
                    && t.partitions.len() == partitions as usize
                    && t.partitions
                        .iter()
                        .all(|p| p.error_code == 0 && p.leader_id >= 0)
            });
            if ready {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("topic {topic}: partitions have no leader after 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Produces one record with a null value to every partition of `topic` (acks all), again
/// every 100 ms until an answer has no partition error, for at most 30 s. Metadata can show a
/// leader before the broker takes writes: Kafka answers NOT_LEADER_OR_FOLLOWER for a moment
/// after a create, until its broker has applied the new leadership; a measured phase should
/// not start before that. The probe records carry no value bytes.
pub fn wait_writable(addr: SocketAddr, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let mut c = Conn::connect(addr)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let record: [KeyValue<'_>; 1] = [(None, None)];
    loop {
        let spec = BatchSpec {
            base_timestamp: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
            ..BatchSpec::default()
        };
        let batches = (0..partitions)
            .map(|p| (p, batch(&spec, &record)))
            .collect();
        let req = produce_request(topic, -1, batches);
        let Response::Produce(r) = c.call(PRODUCE_VERSION, &req)? else {
            bail!("Produce: unexpected answer");
        };
        if produce_errors(&r) == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("topic {topic}: partitions still refuse writes after 30 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Earliest (-2) or latest (-1) offsets of `partitions` of `topic`.
pub fn list_offsets(
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
                    "ListOffsets {topic}-{}: error {}",
                    p.partition_index,
                    p.error_code
                );
            }
            out.push((p.partition_index, p.offset));
        }
    }
    out.sort_unstable();
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
}
