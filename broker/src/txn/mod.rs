//! The transaction coordinator on a broker (issue 23): where a transactional id lives, the
//! calls that cross cores to reach it, and `__transaction_state`.
//!
//! The coordinator of transactional id `t` is the leader of `__transaction_state` partition
//! `Utils.abs(t.hashCode()) % 50` (Kafka's rule, `sluice_txn::partition_for`). That partition
//! lives on one core of its leader, and every request for the id is answered there by that
//! core's [`host::TxnHost`], which drives the sans-IO `sluice_txn::Coordinator`: other cores
//! forward it over the mesh as a [`TxnCall`]. The host loads a partition (replays its records)
//! the first time a request needs it in a leader epoch (the coordinator epoch), and drops it
//! once another core or broker leads it.
//!
//! `__transaction_state` is created by the first FindCoordinator(TRANSACTION) or transactional
//! InitProducerId, compacted, with `transaction.state.log.num.partitions` partitions.

pub mod calls;
pub mod host;
pub mod markers;
pub mod verify;

pub use calls::{TxnCall, TxnReply};

use std::collections::BTreeMap;
use std::rc::Rc;

use sluice_net::ErrorCode;

use crate::core::Core;
use crate::image::{BrokerEndpoint, TopicImage};
use crate::messages::{CoreReply, CoreRequest};
use crate::registry::{TopicChange, TopicChangeError};

/// The internal topic holding the transaction coordinator's state.
pub const TXN_TOPIC: &str = sluice_txn::TRANSACTION_STATE_TOPIC;

/// The `__transaction_state` partition of `transactional_id` and the core of this broker that
/// owns it: COORDINATOR_NOT_AVAILABLE while the topic does not exist or the partition has no
/// leader, NOT_COORDINATOR when another broker leads it.
pub fn locate(core: &Rc<Core>, transactional_id: &str) -> Result<(i32, usize), ErrorCode> {
    let table = core.topics();
    let t = table
        .topics()
        .get(TXN_TOPIC)
        .ok_or(ErrorCode::COORDINATOR_NOT_AVAILABLE)?;
    let p = sluice_txn::partition_for(transactional_id, t.partitions);
    match table.core_for(TXN_TOPIC, p) {
        Some(owner) => Ok((p, owner)),
        None if coordinator_of(core, &table, transactional_id).is_some() => {
            Err(ErrorCode::NOT_COORDINATOR)
        }
        None => Err(ErrorCode::COORDINATOR_NOT_AVAILABLE),
    }
}

/// The live broker that coordinates `transactional_id` (the leader of its
/// `__transaction_state` partition), if there is one.
pub fn coordinator_of(
    core: &Rc<Core>,
    table: &TopicImage,
    transactional_id: &str,
) -> Option<BrokerEndpoint> {
    let t = table.topics().get(TXN_TOPIC)?;
    let p = sluice_txn::partition_for(transactional_id, t.partitions);
    let leader = table.partition(TXN_TOPIC, p)?.leader;
    core.brokers(table).into_iter().find(|b| b.id == leader)
}

/// Creates `__transaction_state` if it does not exist yet (compacted, as Kafka's defaults for
/// it: `transaction.state.log.segment.bytes` 100 MiB).
pub async fn ensure_topic(core: &Rc<Core>) -> Result<(), ErrorCode> {
    if core.topics().topics().contains_key(TXN_TOPIC) {
        return Ok(());
    }
    let configs = BTreeMap::from([
        ("cleanup.policy".to_owned(), "compact".to_owned()),
        (
            "segment.bytes".to_owned(),
            crate::limits::OFFSETS_SEGMENT_BYTES.to_string(),
        ),
    ]);
    let partitions = core.config.transaction_state_partitions;
    let change = TopicChange::Create {
        name: TXN_TOPIC.to_owned(),
        partitions,
        configs,
        dry_run: false,
    };
    match core.change_topics(vec![change]).await.pop() {
        Some(Ok(())) => {
            tracing::info!(partitions, "created __transaction_state");
            Ok(())
        }
        Some(Err(TopicChangeError::AlreadyExists(_))) => Ok(()),
        other => {
            tracing::warn!(outcome = ?other, "cannot create __transaction_state");
            Err(ErrorCode::COORDINATOR_NOT_AVAILABLE)
        }
    }
}

/// Sends `call` for `transactional_id` to its coordinating core (creating the topic first
/// when `create`), and waits for the answer.
pub async fn call(
    core: &Rc<Core>,
    transactional_id: &str,
    create: bool,
    call: TxnCall,
) -> TxnReply {
    if create && let Err(e) = ensure_topic(core).await {
        return TxnReply::Failed(e);
    }
    let (partition, owner) = match locate(core, transactional_id) {
        Ok(found) => found,
        Err(e) => return TxnReply::Failed(e),
    };
    match core
        .router
        .call(owner, CoreRequest::Txn { partition, call })
        .await
    {
        Ok(CoreReply::Txn(reply)) => reply,
        _ => TxnReply::Failed(ErrorCode::COORDINATOR_NOT_AVAILABLE),
    }
}
