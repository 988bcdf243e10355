//! Requests from a data core to another broker's client listener (KIP-890 verification with
//! a remote transaction coordinator, WriteTxnMarkers to a remote leader): one request at a
//! time per connection, and connections kept per core and destination for the next call, as
//! Kafka's inter-broker senders keep one per node, instead of a connection per call.
//!
//! A kept connection may have been closed by the other side since (it restarted, or closed it
//! idle): a call that fails on one before any answer came (end of stream, reset, broken pipe)
//! is sent once more on a new connection. A call that timed out is not: its connection is
//! dropped and the caller's own retry decides.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::ErrorKind;
use std::time::Duration;

use glommio::net::TcpStream;
use sluice_net::{Request, Response};

use crate::controller::client;

/// Idle connections kept per destination (calls in flight at once beyond this open more).
const IDLE_PER_PEER: usize = 4;

thread_local! {
    /// This core's idle connections, by destination (host, port).
    static IDLE: RefCell<HashMap<(String, i32), Vec<TcpStream>>> = RefCell::new(HashMap::new());
}

/// Sends `request` at `version` to `host:port` and waits up to `timeout` for its answer;
/// `None` if it could not be sent or answered.
pub async fn call(
    (host, port): (&str, i32),
    client_id: &str,
    version: i16,
    request: &Request,
    timeout: Duration,
) -> Option<Response> {
    let key = (host.to_owned(), port);
    if let Some(mut stream) = IDLE.with(|idle| idle.borrow_mut().get_mut(&key)?.pop()) {
        match client::call(&mut stream, 1, client_id, version, request, timeout).await {
            Ok(answer) => {
                keep(key, stream);
                return Some(answer);
            }
            Err(e) if !closed_before_answer(e.kind()) => return None,
            Err(_) => {}
        }
    }
    let mut stream = client::connect(host, port).await?;
    let answer = client::call(&mut stream, 1, client_id, version, request, timeout).await;
    let answer = answer.ok()?;
    keep(key, stream);
    Some(answer)
}

/// Whether a call's error means the connection was gone when it was sent (a kept connection
/// the other side closed), so sending again on a new one is safe.
fn closed_before_answer(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::UnexpectedEof
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::BrokenPipe
    )
}

fn keep(key: (String, i32), stream: TcpStream) {
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let kept = idle.entry(key).or_default();
        if kept.len() < IDLE_PER_PEER {
            kept.push(stream);
        }
    });
}
