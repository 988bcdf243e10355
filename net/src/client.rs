//! A small blocking Kafka client over one TCP connection: ApiVersions negotiation, then one
//! request at a time. For tools (the `sluice` CLI, tests), not for load: `sluice-bench` has its
//! own pipelined client.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::Bytes;

use crate::messages::ApiVersionsRequest;
use crate::{ApiKey, Decoder, Encoder, Request, RequestHeader, Response, ResponseHeader};

/// What can go wrong talking to a broker.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("connection to the broker failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the broker does not support {0} (or any version this client speaks)")]
    Unsupported(&'static str),
    #[error("undecodable answer to {api} v{version}: {message}")]
    Decode {
        api: &'static str,
        version: i16,
        message: String,
    },
    #[error("answer of {got} bytes is larger than the {max}-byte limit")]
    TooLarge { got: usize, max: usize },
}

/// Largest response frame accepted.
const RESPONSE_BYTES_MAX: usize = 256 << 20;

/// One connection to one broker.
#[derive(Debug)]
pub struct Client {
    stream: TcpStream,
    addr: SocketAddr,
    client_id: String,
    next_correlation: i32,
    /// (api key, min, max) the broker advertised.
    versions: Vec<(i16, i16, i16)>,
}

impl Client {
    /// Connects to `addr` (`host:port`) and asks which versions the broker speaks.
    pub fn connect(addr: &str, client_id: &str, timeout: Duration) -> Result<Client, ClientError> {
        let connect_err = |source| ClientError::Connect {
            addr: addr.to_owned(),
            source,
        };
        let resolved = addr
            .to_socket_addrs()
            .map_err(connect_err)?
            .next()
            .ok_or_else(|| {
                connect_err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no address",
                ))
            })?;
        let stream = TcpStream::connect_timeout(&resolved, timeout).map_err(connect_err)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout.max(Duration::from_secs(1)) * 4))?;
        let mut c = Client {
            stream,
            addr: resolved,
            client_id: client_id.to_owned(),
            next_correlation: 1,
            versions: Vec::new(),
        };
        let r = c.send_at(
            ApiKey::ApiVersions,
            0,
            &Request::ApiVersions(ApiVersionsRequest::default()),
        )?;
        let Response::ApiVersions(v) = r else {
            return Err(ClientError::Unsupported("ApiVersions"));
        };
        c.versions = v
            .api_keys
            .iter()
            .map(|k| (k.api_key, k.min_version, k.max_version))
            .collect();
        Ok(c)
    }

    /// The broker's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The version to use for `api`: the highest both sides speak, at most `preferred`.
    pub fn version(&self, api: ApiKey, preferred: i16) -> Result<i16, ClientError> {
        let (_, lo, hi) = self
            .versions
            .iter()
            .find(|(k, _, _)| *k == api.key())
            .copied()
            .ok_or(ClientError::Unsupported(api.name()))?;
        let v = preferred.min(hi);
        if v < lo {
            return Err(ClientError::Unsupported(api.name()));
        }
        Ok(v)
    }

    /// Sends `request` at the best version up to `preferred` and returns (version, response).
    pub fn call(
        &mut self,
        preferred: i16,
        request: &Request,
    ) -> Result<(i16, Response), ClientError> {
        let api = request.api_key();
        let version = self.version(api, preferred)?;
        Ok((version, self.send_at(api, version, request)?))
    }

    fn send_at(
        &mut self,
        api: ApiKey,
        version: i16,
        request: &Request,
    ) -> Result<Response, ClientError> {
        let correlation_id = self.next_correlation;
        self.next_correlation = self.next_correlation.wrapping_add(1);
        let mut e = Encoder::framed();
        RequestHeader {
            request_api_key: api.key(),
            request_api_version: version,
            correlation_id,
            client_id: Some(self.client_id.as_str().into()),
            ..RequestHeader::default()
        }
        .encode(&mut e, api.request_header_version(version));
        request.encode(&mut e, version);
        for chunk in e.finish() {
            self.stream.write_all(&chunk)?;
        }
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size)?;
        let size = usize::try_from(i32::from_be_bytes(size)).unwrap_or(usize::MAX);
        if size > RESPONSE_BYTES_MAX {
            return Err(ClientError::TooLarge {
                got: size,
                max: RESPONSE_BYTES_MAX,
            });
        }
        let mut frame = vec![0u8; size];
        self.stream.read_exact(&mut frame)?;
        let decode_err = |message: String| ClientError::Decode {
            api: api.name(),
            version,
            message,
        };
        let mut d = Decoder::new(Bytes::from(frame));
        let header = ResponseHeader::decode(&mut d, api.response_header_version(version))
            .map_err(|e| decode_err(e.to_string()))?;
        if header.correlation_id != correlation_id {
            return Err(decode_err(format!(
                "correlation id {} answers request {correlation_id}",
                header.correlation_id
            )));
        }
        Response::decode(api, version, d.into_rest()).map_err(|e| decode_err(e.to_string()))
    }
}

/// Kafka's murmur2 hash (the Java client's `Utils.murmur2`), over a key's bytes.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() == 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition the Java client's default partitioner gives a non-null key.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values of Kafka's `Utils.murmur2` from its own unit tests.
    #[test]
    fn murmur2_matches_java() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (input, want) in cases {
            assert_eq!(murmur2(input), want, "{}", String::from_utf8_lossy(input));
        }
    }
}
