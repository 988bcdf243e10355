//! One Kafka request and its answer over an open connection, for the controller shard's own
//! outbound traffic (to the other voters, and the broker's registration and heartbeats to the
//! active controller).

use std::net::ToSocketAddrs;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use sluice_net::{Decoder, Encoder, Request, RequestHeader, Response, ResponseHeader};

/// Largest answer accepted (a metadata Fetch answer holds at most 8 MiB of records).
const ANSWER_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Sends `request` at `version` and reads its answer within `timeout`.
pub async fn call(
    stream: &mut TcpStream,
    correlation: i32,
    client_id: &str,
    version: i16,
    request: &Request,
    timeout: Duration,
) -> std::io::Result<Response> {
    let api = request.api_key();
    let mut e = Encoder::framed();
    RequestHeader {
        request_api_key: api.key(),
        request_api_version: version,
        correlation_id: correlation,
        client_id: Some(client_id.into()),
        ..RequestHeader::default()
    }
    .encode(&mut e, api.request_header_version(version));
    request.encode(&mut e, version);
    stream.write_all(&e.finish_contiguous()).await?;
    let body = glommio::timer::timeout(timeout, async { Ok(read_frame(stream).await) })
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer"))??;
    let mut d = Decoder::new(body);
    let header =
        ResponseHeader::decode(&mut d, api.response_header_version(version)).map_err(invalid)?;
    if header.correlation_id != correlation {
        return Err(invalid("answer to another request"));
    }
    Response::decode(api, version, d.into_rest()).map_err(invalid)
}

/// Reads one whole frame body (without its 4-byte size).
async fn read_frame(stream: &mut TcpStream) -> std::io::Result<Bytes> {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).await?;
    let size = u32::from_be_bytes(size) as usize;
    if size > ANSWER_BYTES_MAX {
        return Err(invalid("answer too large"));
    }
    let mut body = BytesMut::zeroed(size);
    stream.read_exact(&mut body).await?;
    Ok(body.freeze())
}

fn invalid(e: impl ToString) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
}

/// A connection to `host:port` (2 s to connect, no delay on writes), or `None`.
pub async fn connect(host: &str, port: i32) -> Option<TcpStream> {
    let port = u16::try_from(port).ok()?;
    let addr = (host, port).to_socket_addrs().ok()?.next()?;
    let connected = glommio::timer::timeout(Duration::from_secs(2), async {
        Ok(TcpStream::connect(addr).await)
    })
    .await
    .ok()?
    .ok()?;
    let _ = connected.set_nodelay(true);
    Some(connected)
}
