//! Requests the control core forwards to the active controller (Kafka's broker-to-controller
//! channel): AllocateProducerIds for producer-id blocks, and on a cluster CreateTopics,
//! CreatePartitions, DeleteTopics and topic IncrementalAlterConfigs, which only the active
//! controller decides. This task
//! finds the active controller (the quorum leader this node's replica knows), sends the
//! request, and tries again while there is none, the link fails, or the answer is
//! NOT_CONTROLLER (an election under way). The active controller commits the request's
//! records before it answers.
//!
//! A broker not registered yet, or a controller that cannot be reached for [`TRIES`] rounds,
//! answers the control core with `Err(())`; the handler then answers a retriable error.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use glommio::channels::shared_channel::{SharedReceiver, SharedSender};
use sluice_net::error_code::code;
use sluice_net::{ApiKey, BrokerId, Request, Response};
use sluice_quorum::Log;

use super::lifecycle::{Link, connect};
use super::node::{Node, Stamped};
use crate::forward::Forwarded;

/// Rounds per request before the control core is told no (a new controller is elected well
/// within them).
const TRIES: usize = 40;
/// Between rounds.
const RETRY: Duration = Duration::from_millis(100);

/// The task answering the control core's forwarded requests.
pub struct Forwarder<L: Log> {
    pub node: Rc<RefCell<Node<L>>>,
    pub broker_id: i32,
    pub epoch: Rc<Cell<Option<i64>>>,
    pub controllers: HashMap<i32, SocketAddr>,
    pub timeout: Duration,
}

impl<L: Log + Stamped + 'static> Forwarder<L> {
    /// Answers each request until the control core's end closes.
    pub async fn run(self, requests: SharedReceiver<Request>, replies: SharedSender<Forwarded>) {
        let requests = requests.connect().await;
        let replies = replies.connect().await;
        let mut link = None;
        while let Some(request) = requests.recv().await {
            let answer = self.forward(&mut link, request).await;
            if replies.send(answer).await.is_err() {
                return;
            }
        }
    }

    async fn forward(&self, link: &mut Option<Link>, request: Request) -> Forwarded {
        let api = request.api_key();
        let mut sent_before = false;
        for _ in 0..TRIES {
            match self.try_once(link, &request).await {
                Ok(answer) if sent_before => return Ok(settle_retry(answer)),
                Ok(answer) => return Ok(answer),
                Err(sent) => sent_before |= sent,
            }
            glommio::timer::sleep(RETRY).await;
        }
        tracing::warn!(?api, "no active controller answered a forwarded request");
        Err(())
    }

    /// One try at the active controller: its answer, or whether the request may have reached
    /// one (it was sent, and the answer was NOT_CONTROLLER or did not come) before trying again.
    async fn try_once(&self, link: &mut Option<Link>, request: &Request) -> Result<Response, bool> {
        let mut request = request.clone();
        if let Request::AllocateProducerIds(r) = &mut request {
            let Some(epoch) = self.epoch.get() else {
                tracing::debug!("producer id block: not registered yet");
                return Err(false);
            };
            r.broker_id = BrokerId(self.broker_id);
            r.broker_epoch = epoch;
        }
        let version = version_of(request.api_key()).ok_or(false)?;
        let leader = self.node.borrow().replica.leader().ok_or(false)?;
        let l = connect(link, leader, &self.controllers, self.timeout)
            .await
            .ok_or(false)?;
        match l.call(self.broker_id, version, request, self.timeout).await {
            Ok(answer) if !retriable(&answer) => {
                if let Response::AllocateProducerIds(r) = &answer {
                    let (start, len) = (i64::from(r.producer_id_start), r.producer_id_len);
                    tracing::info!(broker = self.broker_id, start, len, "producer id block");
                }
                Ok(answer)
            }
            Ok(other) => {
                tracing::debug!(answer = ?other, "controller not ready; trying again");
                Err(true)
            }
            Err(e) => {
                tracing::debug!(error = %e, "controller link lost; trying again");
                *link = None;
                Err(true)
            }
        }
    }
}

/// The answer to a request sent again after an earlier send may have been committed (a
/// controller that lost its quorum answers NOT_CONTROLLER, yet the records it had written may
/// be committed by the next one): a create that finds its topic already there, or a delete
/// that finds it gone, did what was asked, so it is answered as done.
fn settle_retry(mut answer: Response) -> Response {
    match &mut answer {
        Response::CreateTopics(r) => {
            for t in r.topics.iter_mut() {
                if t.error_code == code::TOPIC_ALREADY_EXISTS {
                    t.error_code = code::NONE;
                    t.error_message = None;
                }
            }
        }
        Response::DeleteTopics(r) => {
            for t in r.responses.iter_mut() {
                if t.error_code == code::UNKNOWN_TOPIC_OR_PARTITION {
                    t.error_code = code::NONE;
                    t.error_message = None;
                }
            }
        }
        _ => {}
    }
    answer
}

/// The version each forwarded API is sent at (the newest the controller listener serves).
fn version_of(api: ApiKey) -> Option<i16> {
    match api {
        ApiKey::AllocateProducerIds => Some(0),
        ApiKey::CreateTopics => Some(7),
        ApiKey::CreatePartitions => Some(3),
        ApiKey::DeleteTopics => Some(6),
        ApiKey::IncrementalAlterConfigs => Some(1),
        _ => None,
    }
}

/// Whether an answer says "not the active controller" (or, for a producer-id block, any
/// error): the request goes again, to the controller the quorum elects.
fn retriable(answer: &Response) -> bool {
    let not_controller = |c: i16| c == code::NOT_CONTROLLER;
    match answer {
        Response::AllocateProducerIds(r) => r.error_code != code::NONE,
        Response::CreateTopics(r) => r.topics.iter().any(|t| not_controller(t.error_code)),
        Response::CreatePartitions(r) => r.results.iter().any(|t| not_controller(t.error_code)),
        Response::DeleteTopics(r) => r.responses.iter().any(|t| not_controller(t.error_code)),
        Response::IncrementalAlterConfigs(r) => {
            r.responses.iter().any(|t| not_controller(t.error_code))
        }
        _ => false,
    }
}
