//! Producer-id blocks for this broker's control core, from the active controller (Kafka's
//! AllocateProducerIds): the control core asks over a shared channel when its block runs out,
//! and this task asks the active controller, which commits the block to the metadata log
//! (a ProducerIdsRecord) before answering, so no two brokers ever get the same ids.
//!
//! A broker not registered yet, or a controller that cannot be reached, answers the control
//! core with an error after a few tries; InitProducerId then answers a retriable error and
//! the client asks again.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use glommio::channels::shared_channel::{SharedReceiver, SharedSender};
use sluice_net::error_code::code;
use sluice_net::messages::AllocateProducerIdsRequest;
use sluice_net::{BrokerId, Request, Response};
use sluice_quorum::Log;

use super::lifecycle::{Link, connect};
use super::node::{Node, Stamped};
use crate::producer_ids::Block;

/// Tries per block before the control core is told no.
const TRIES: usize = 10;
/// Between tries (the broker may be registering, or a new controller being elected).
const RETRY: Duration = Duration::from_millis(100);

/// The task answering the control core's block requests.
pub struct ProducerBlocks<L: Log> {
    pub node: Rc<RefCell<Node<L>>>,
    pub broker_id: i32,
    pub epoch: Rc<Cell<Option<i64>>>,
    pub controllers: HashMap<i32, SocketAddr>,
    pub timeout: Duration,
}

impl<L: Log + Stamped + 'static> ProducerBlocks<L> {
    /// Answers each request until the control core's end closes.
    pub async fn run(self, requests: SharedReceiver<()>, replies: SharedSender<Block>) {
        let requests = requests.connect().await;
        let replies = replies.connect().await;
        let mut link = None;
        while requests.recv().await.is_some() {
            let block = self.block(&mut link).await;
            if let Ok((start, len)) = block {
                tracing::info!(broker = self.broker_id, start, len, "producer id block");
            }
            if replies.send(block).await.is_err() {
                return;
            }
        }
    }

    async fn block(&self, link: &mut Option<Link>) -> Block {
        for _ in 0..TRIES {
            if let Some(block) = self.try_block(link).await {
                return Ok(block);
            }
            glommio::timer::sleep(RETRY).await;
        }
        Err(())
    }

    /// One AllocateProducerIds to the active controller; `None` to try again.
    async fn try_block(&self, link: &mut Option<Link>) -> Option<(i64, i32)> {
        let Some(epoch) = self.epoch.get() else {
            tracing::debug!("producer id block: not registered yet");
            return None;
        };
        let leader = self.node.borrow().replica.leader()?;
        let l = connect(link, leader, &self.controllers, self.timeout).await?;
        let request = Request::AllocateProducerIds(AllocateProducerIdsRequest {
            broker_id: BrokerId(self.broker_id),
            broker_epoch: epoch,
            ..Default::default()
        });
        match l.call(self.broker_id, 0, request, self.timeout).await {
            Ok(Response::AllocateProducerIds(r)) if r.error_code == code::NONE => {
                Some((r.producer_id_start.into(), r.producer_id_len))
            }
            Ok(other) => {
                tracing::debug!(answer = ?other, "no producer id block yet");
                None
            }
            Err(e) => {
                tracing::debug!(error = %e, "producer id block: controller link lost");
                *link = None;
                None
            }
        }
    }
}
