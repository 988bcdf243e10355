//! Requests the control core forwards to the active controller (Kafka's broker-to-controller
//! channel): AllocateProducerIds for producer-id blocks, AlterPartition for a partition
//! leader's ISR changes, and on a cluster CreateTopics, CreatePartitions, DeleteTopics and
//! topic IncrementalAlterConfigs, ElectLeaders and partition reassignments, which only the
//! active controller decides. This task
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
        let version = stamp(&mut request, self.broker_id, self.epoch.get()).ok_or(false)?;
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

/// Makes `request` ready to send: a request that speaks for this broker (AllocateProducerIds,
/// AlterPartition) gets its id and current epoch, as Kafka's broker fills them in when it
/// sends. The version to send it at, or `None` when it cannot go (not registered yet, or an
/// API this channel does not carry).
fn stamp(request: &mut Request, broker_id: i32, epoch: Option<i64>) -> Option<i16> {
    let ids = match request {
        Request::AllocateProducerIds(r) => Some((&mut r.broker_id, &mut r.broker_epoch)),
        Request::AlterPartition(r) => Some((&mut r.broker_id, &mut r.broker_epoch)),
        _ => None,
    };
    if let Some((id, broker_epoch)) = ids {
        let Some(epoch) = epoch else {
            tracing::debug!(api = ?request.api_key(), "not registered yet");
            return None;
        };
        *id = BrokerId(broker_id);
        *broker_epoch = epoch;
    }
    version_of(request.api_key())
}

/// The version each forwarded API is sent at (the newest the controller listener serves).
fn version_of(api: ApiKey) -> Option<i16> {
    match api {
        ApiKey::AllocateProducerIds => Some(0),
        ApiKey::AlterPartition => Some(3),
        ApiKey::CreateTopics => Some(7),
        ApiKey::CreatePartitions => Some(3),
        ApiKey::DeleteTopics => Some(6),
        ApiKey::IncrementalAlterConfigs => Some(1),
        ApiKey::ElectLeaders => Some(2),
        ApiKey::AlterPartitionReassignments => Some(1),
        ApiKey::ListPartitionReassignments => Some(0),
        _ => None,
    }
}

/// Whether an answer says "not the active controller" (or, for a producer-id block or an
/// AlterPartition, any top-level error, as Kafka's `AlterPartitionManager` retries them): the
/// request goes again, to the controller the quorum elects. An AlterPartition's partition
/// errors are its sender's to handle.
fn retriable(answer: &Response) -> bool {
    let not_controller = |c: i16| c == code::NOT_CONTROLLER;
    match answer {
        Response::AllocateProducerIds(r) => r.error_code != code::NONE,
        Response::AlterPartition(r) => r.error_code != code::NONE,
        Response::CreateTopics(r) => r.topics.iter().any(|t| not_controller(t.error_code)),
        Response::CreatePartitions(r) => r.results.iter().any(|t| not_controller(t.error_code)),
        Response::DeleteTopics(r) => r.responses.iter().any(|t| not_controller(t.error_code)),
        Response::IncrementalAlterConfigs(r) => {
            r.responses.iter().any(|t| not_controller(t.error_code))
        }
        Response::ElectLeaders(r) => not_controller(r.error_code),
        Response::AlterPartitionReassignments(r) => not_controller(r.error_code),
        Response::ListPartitionReassignments(r) => not_controller(r.error_code),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_net::messages::{AlterPartitionRequest, AlterPartitionResponse, MetadataRequest};

    /// An AlterPartition goes at version 3 with this broker's id and current epoch, and waits
    /// (is not sent) until the broker is registered; an API the channel does not carry never
    /// goes.
    #[test]
    fn alter_partition_is_stamped_with_this_broker() {
        let mut request = Request::AlterPartition(AlterPartitionRequest {
            broker_id: BrokerId(9),
            broker_epoch: 1,
            ..Default::default()
        });
        assert_eq!(stamp(&mut request, 2, None), None);
        assert_eq!(stamp(&mut request, 2, Some(41)), Some(3));
        let Request::AlterPartition(r) = &request else {
            panic!("not an AlterPartition");
        };
        assert_eq!((r.broker_id, r.broker_epoch), (BrokerId(2), 41));
        let version = version_of(ApiKey::AlterPartition).unwrap();
        assert!(
            (2..=3).contains(&version),
            "the controller listener serves 2..=3"
        );
        let mut other = Request::Metadata(MetadataRequest::default());
        assert_eq!(stamp(&mut other, 2, Some(41)), None);
    }

    /// A top-level error (NOT_CONTROLLER from a controller that is not, or no longer, the
    /// active one) sends the request again; partition errors are the leader's.
    #[test]
    fn alter_partition_retries_top_level_errors_only() {
        use sluice_net::messages::alter_partition_response::{PartitionData, TopicData};
        let answer = |top: i16, partition: i16| {
            Response::AlterPartition(AlterPartitionResponse {
                error_code: top,
                topics: vec![TopicData {
                    partitions: vec![PartitionData {
                        error_code: partition,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            })
        };
        assert!(retriable(&answer(code::NOT_CONTROLLER, 0)));
        assert!(!retriable(&answer(code::NONE, code::NOT_CONTROLLER)));
        assert!(!retriable(&answer(
            code::NONE,
            code::INVALID_UPDATE_VERSION
        )));
    }
}
