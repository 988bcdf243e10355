//! One outbound connection from this controller to another voter: the replica's requests to
//! it go out one at a time, as Kafka request frames, and each answer goes back into the node.
//!
//! One request is in flight per peer: quorum traffic is small (a Fetch every few tens of ms, a
//! Vote per election), and an answer that does not come within the request timeout closes the
//! connection, so a dead or stuck peer costs one timeout, then fast connect failures. Requests
//! that find the connection down are dropped; the replica resends what matters on its own
//! timers, as KRaft does.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::channels::local_channel::LocalReceiver;
use glommio::net::TcpStream;
use sluice_controller::wire::Wire;
use sluice_quorum::{Log, Message, NodeId};

use super::client;
use super::node::{Node, Stamped};
use crate::stop::StopSignal;

/// After a failed connect, requests are dropped without dialling for this long.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(100);

/// What a peer task needs besides its queue.
pub struct PeerTask<L: Log> {
    pub node: Rc<RefCell<Node<L>>>,
    pub wire: Rc<Wire>,
    pub to: NodeId,
    pub addr: SocketAddr,
    pub timeout: Duration,
    pub clock: Rc<dyn Fn() -> u64>,
    pub stop: Rc<StopSignal>,
}

impl<L: Log + Stamped + 'static> PeerTask<L> {
    /// Sends queued requests until the shard stops.
    pub async fn run(self, queue: LocalReceiver<Message>) {
        let mut stream: Option<TcpStream> = None;
        let mut failed_at: Option<Instant> = None;
        let mut correlation = 0i32;
        loop {
            let next = futures_lite::future::or(queue.recv(), async {
                self.stop.stopped().await;
                None
            })
            .await;
            let Some(message) = next else { return };
            if stream.is_none() {
                if failed_at.is_some_and(|t| t.elapsed() < RECONNECT_BACKOFF) {
                    continue;
                }
                match TcpStream::connect_timeout(self.addr, self.timeout).await {
                    Ok(s) => {
                        let _ = s.set_nodelay(true);
                        stream = Some(s);
                        failed_at = None;
                    }
                    Err(_) => {
                        failed_at = Some(Instant::now());
                        continue;
                    }
                }
            }
            correlation = correlation.wrapping_add(1);
            let Some(s) = stream.as_mut() else { continue };
            match self.call(s, correlation, &message).await {
                Ok(Some(answer)) => self.deliver(answer),
                Ok(None) => {}
                Err(e) => {
                    let peer = self.to.0;
                    tracing::debug!(peer, error = %e, "controller peer connection lost");
                    stream = None;
                }
            }
        }
    }

    /// Sends `message` and reads its answer, as the quorum message it carries (if any).
    async fn call(
        &self,
        stream: &mut TcpStream,
        correlation: i32,
        message: &Message,
    ) -> std::io::Result<Option<Message>> {
        let Some((version, request)) = self.wire.request(self.to, message) else {
            return Ok(None);
        };
        let client_id = format!("sluice-controller-{}", self.wire.me.0);
        let response = client::call(
            stream,
            correlation,
            &client_id,
            version,
            &request,
            self.timeout,
        )
        .await?;
        Ok(self.wire.from_response(message, response))
    }

    fn deliver(&self, answer: Message) {
        let now = (self.clock)();
        let result = self.node.borrow_mut().receive(now, self.to, answer, None);
        if let Err(e) = result {
            tracing::error!(error = %e, "cannot persist the quorum state; stopping");
            self.stop.stop();
        }
    }
}
