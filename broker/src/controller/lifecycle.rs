//! The broker's side of its life in the cluster (Kafka's `BrokerLifecycleManager`): it
//! registers with the active controller (BrokerRegistration: its listener, the features it
//! supports, its log directory, a fresh incarnation id per process start) and then heartbeats
//! (BrokerHeartbeat) with the metadata offset it has applied, so the controller unfences it
//! once it has caught up and fences it when the heartbeats stop.
//!
//! The active controller is the quorum's leader as this node's replica knows it; a request
//! answered NOT_CONTROLLER, or a connection that fails, sends the broker looking again on the
//! next beat. A stale broker epoch (the controller fenced and forgot this incarnation's
//! session, or a new incarnation replaced it) makes it register again.
//!
//! On SIGTERM/SIGINT (a [`Leaving`] request from the main thread) the heartbeats carry
//! `want_shut_down`, every [`LEAVING_BEAT`]: the controller moves this broker's leaderships to
//! other in-sync replicas and takes it out of every ISR, then answers `should_shut_down`, which
//! releases the stop. A broker that never registered, or has not heard from a controller for a
//! whole session (it is fenced by now, its leaderships already moved), releases it at once.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::net::TcpStream;
use sluice_controller::bootstrap::{BOOTSTRAP_FEATURES, METADATA_VERSION_LEVEL};
use sluice_net::error_code::code;
use sluice_net::messages::{
    BrokerHeartbeatRequest, BrokerRegistrationRequest, broker_registration_request as reg,
};
use sluice_net::{BrokerId, Request, Response, Uuid};
use sluice_quorum::{Log, NodeId};

use super::client;
use super::node::{Node, Stamped};
use crate::stop::{Leaving, StopSignal};

/// The lowest `metadata.version` a sluice broker reads (Kafka 4.x's minimum, 3.3-IV3).
const METADATA_VERSION_MIN: i16 = 7;
/// Versions sent.
const REGISTRATION_VERSION: i16 = 4;
const HEARTBEAT_VERSION: i16 = 1;
/// How often a broker in controlled shutdown heartbeats (at most; its normal interval if less).
const LEAVING_BEAT: Duration = Duration::from_millis(100);

/// Who this broker is, as it registers.
pub struct Identity {
    pub broker_id: i32,
    pub cluster_id: String,
    /// The client listener's advertised host and port.
    pub host: String,
    pub port: u16,
    /// New at every process start: tells a restart from a duplicate.
    pub incarnation: Uuid,
    /// This broker's one log directory.
    pub log_dir: Uuid,
}

/// The lifecycle task.
pub struct Lifecycle<L: Log> {
    pub node: Rc<RefCell<Node<L>>>,
    pub me: Identity,
    /// Every controller's address, by node id.
    pub controllers: HashMap<i32, SocketAddr>,
    pub heartbeat: Duration,
    /// `broker.session.timeout.ms`: how long the controller keeps a silent broker unfenced.
    pub session: Duration,
    pub timeout: Duration,
    pub stop: Rc<StopSignal>,
    /// The controlled shutdown the main thread may ask for.
    pub leaving: Arc<Leaving>,
    /// This incarnation's broker epoch once registered, shared with the producer-id blocks.
    pub epoch: Rc<Cell<Option<i64>>>,
}

/// An open connection to the active controller.
pub struct Link {
    controller: i32,
    stream: TcpStream,
    correlation: i32,
}

impl Link {
    /// Sends `request` at `version` as broker `broker_id` and reads the answer.
    pub async fn call(
        &mut self,
        broker_id: i32,
        version: i16,
        request: Request,
        timeout: Duration,
    ) -> std::io::Result<Response> {
        self.correlation = self.correlation.wrapping_add(1);
        let client_id = format!("sluice-broker-{broker_id}");
        client::call(
            &mut self.stream,
            self.correlation,
            &client_id,
            version,
            &request,
            timeout,
        )
        .await
    }
}

/// The link to `leader` (the active controller), opened (again) if needed.
pub async fn connect<'a>(
    link: &'a mut Option<Link>,
    leader: NodeId,
    controllers: &HashMap<i32, SocketAddr>,
    timeout: Duration,
) -> Option<&'a mut Link> {
    if link.as_ref().is_some_and(|l| l.controller != leader.0) {
        *link = None;
    }
    if link.is_none() {
        let addr = *controllers.get(&leader.0)?;
        let stream = TcpStream::connect_timeout(addr, timeout).await.ok()?;
        let _ = stream.set_nodelay(true);
        *link = Some(Link {
            controller: leader.0,
            stream,
            correlation: 0,
        });
    }
    link.as_mut()
}

impl<L: Log + Stamped + 'static> Lifecycle<L> {
    /// Registers, then heartbeats every `heartbeat`, until the node stops.
    pub async fn run(self) {
        let mut epoch: Option<i64> = None;
        let mut fenced = true;
        let mut link: Option<Link> = None;
        let mut heard = Instant::now();
        while !self.stop.is_stopping() {
            let leaving = self.leaving.is_requested() && !self.leaving.is_released();
            let pause = if leaving {
                self.heartbeat.min(LEAVING_BEAT)
            } else {
                self.heartbeat
            };
            glommio::timer::sleep(pause).await;
            if leaving && (epoch.is_none() || heard.elapsed() > self.session) {
                let registered = epoch.is_some();
                tracing::info!(
                    registered,
                    "controlled shutdown: no controller to ask; stopping"
                );
                self.leaving.release();
                continue;
            }
            let Some(leader) = self.node.borrow().replica.leader() else {
                continue;
            };
            let Some(l) = self.connect(&mut link, leader).await else {
                continue;
            };
            let result = match epoch {
                None => self.register(l).await.map(|e| {
                    tracing::info!(broker = self.me.broker_id, epoch = e, "registered");
                    heard = Instant::now();
                    epoch = Some(e);
                }),
                Some(e) => self.beat(l, e, &mut fenced).await.map(|beat| match beat {
                    Beat::Stale => epoch = None,
                    Beat::Answered => heard = Instant::now(),
                    Beat::Released => {
                        tracing::info!(
                            broker = self.me.broker_id,
                            "controlled shutdown: the controller moved this broker's \
                             leaderships away; stopping"
                        );
                        self.leaving.release();
                    }
                }),
            };
            self.epoch.set(epoch);
            if let Err(e) = result {
                tracing::debug!(error = %e, "controller link lost");
                link = None;
            }
        }
    }

    /// The link to `leader`, opened (again) if needed.
    async fn connect<'a>(
        &self,
        link: &'a mut Option<Link>,
        leader: NodeId,
    ) -> Option<&'a mut Link> {
        if link.as_ref().is_some_and(|l| l.controller != leader.0) {
            *link = None;
        }
        if link.is_none() {
            let addr = *self.controllers.get(&leader.0)?;
            let stream = TcpStream::connect_timeout(addr, self.timeout).await.ok()?;
            let _ = stream.set_nodelay(true);
            *link = Some(Link {
                controller: leader.0,
                stream,
                correlation: 0,
            });
        }
        link.as_mut()
    }

    async fn call(
        &self,
        link: &mut Link,
        version: i16,
        request: Request,
    ) -> std::io::Result<Response> {
        link.correlation = link.correlation.wrapping_add(1);
        let client_id = format!("sluice-broker-{}", self.me.broker_id);
        let response = client::call(
            &mut link.stream,
            link.correlation,
            &client_id,
            version,
            &request,
            self.timeout,
        )
        .await?;
        Ok(response)
    }

    /// Registers; the broker epoch the controller gave.
    async fn register(&self, link: &mut Link) -> std::io::Result<i64> {
        let request = Request::BrokerRegistration(self.registration());
        match self.call(link, REGISTRATION_VERSION, request).await? {
            Response::BrokerRegistration(r) if r.error_code == code::NONE => Ok(r.broker_epoch),
            Response::BrokerRegistration(r) => Err(refused("registration", r.error_code)),
            _ => Err(refused("registration", code::UNKNOWN_SERVER_ERROR)),
        }
    }

    /// One heartbeat, with `want_shut_down` once the controlled shutdown is asked for.
    async fn beat(&self, link: &mut Link, epoch: i64, fenced: &mut bool) -> std::io::Result<Beat> {
        let offset = self.node.borrow().image.offset();
        let leaving = self.leaving.is_requested();
        let request = Request::BrokerHeartbeat(BrokerHeartbeatRequest {
            broker_id: BrokerId(self.me.broker_id),
            broker_epoch: epoch,
            current_metadata_offset: offset,
            want_shut_down: leaving,
            ..Default::default()
        });
        match self.call(link, HEARTBEAT_VERSION, request).await? {
            Response::BrokerHeartbeat(r) if r.error_code == code::NONE => {
                if r.is_fenced != *fenced {
                    *fenced = r.is_fenced;
                    let state = if r.is_fenced { "fenced" } else { "unfenced" };
                    tracing::info!(broker = self.me.broker_id, epoch, state, "broker");
                }
                if leaving && r.should_shut_down {
                    Ok(Beat::Released)
                } else {
                    Ok(Beat::Answered)
                }
            }
            Response::BrokerHeartbeat(r) if r.error_code == code::STALE_BROKER_EPOCH => {
                Ok(Beat::Stale)
            }
            Response::BrokerHeartbeat(r) => Err(refused("heartbeat", r.error_code)),
            _ => Err(refused("heartbeat", code::UNKNOWN_SERVER_ERROR)),
        }
    }

    fn registration(&self) -> BrokerRegistrationRequest {
        let feature = |name: &str, min: i16, max: i16| reg::Feature {
            name: name.into(),
            min_supported_version: min,
            max_supported_version: max,
            ..Default::default()
        };
        let mut features = vec![feature(
            "metadata.version",
            METADATA_VERSION_MIN,
            METADATA_VERSION_LEVEL,
        )];
        features.extend(
            BOOTSTRAP_FEATURES
                .iter()
                .map(|&(n, level)| feature(n, 0, level)),
        );
        BrokerRegistrationRequest {
            broker_id: BrokerId(self.me.broker_id),
            cluster_id: self.me.cluster_id.as_str().into(),
            incarnation_id: self.me.incarnation,
            listeners: vec![reg::Listener {
                name: "PLAINTEXT".into(),
                host: self.me.host.as_str().into(),
                port: self.me.port,
                security_protocol: 0,
                ..Default::default()
            }],
            features,
            rack: None,
            log_dirs: vec![self.me.log_dir],
            previous_broker_epoch: -1,
            ..Default::default()
        }
    }
}

/// What a heartbeat's answer means for the lifecycle.
enum Beat {
    /// The controller no longer knows this broker epoch: register again.
    Stale,
    Answered,
    /// The controlled shutdown asked for may proceed.
    Released,
}

fn refused(what: &str, error: i16) -> std::io::Error {
    std::io::Error::other(format!("{what} refused with error {error}"))
}
