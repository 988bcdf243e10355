//! AddPartitionsToTxn and AddOffsetsToTxn (both make the transaction Ongoing with more
//! partitions), and the verification of KIP-890 part 1 (AddPartitionsToTxn v4+ with
//! `verify_only`, sent by a partition leader before it accepts a transactional produce).
//!
//! Checks, in Kafka 4.4's order: empty id INVALID_REQUEST, not served here
//! (NOT_COORDINATOR / COORDINATOR_LOAD_IN_PROGRESS), unknown id INVALID_PRODUCER_ID_MAPPING,
//! pending transition CONCURRENT_TRANSACTIONS, producer id INVALID_PRODUCER_ID_MAPPING, epoch
//! PRODUCER_FENCED, PrepareCommit/PrepareAbort CONCURRENT_TRANSACTIONS; partitions already in
//! an Ongoing transaction are answered NONE with nothing written.

use std::collections::BTreeSet;

use sluice_net::ErrorCode;

use crate::coordinator::{Coordinator, Op, OpKind, add_answer};
use crate::effect::{AddOffsets, AddPartitions, Effect};
use crate::partition::CONSUMER_OFFSETS_TOPIC;
use crate::types::{RequestId, TopicPartition, TxnState, TxnVersion};

/// The partitions and who asks, for both Add requests.
struct AddCall<'a> {
    transactional_id: &'a str,
    producer_id: i64,
    producer_epoch: i16,
    partitions: BTreeSet<TopicPartition>,
    client_version: TxnVersion,
    offsets: bool,
}

impl Coordinator {
    /// AddPartitionsToTxn for one transaction; answered by an `Answer::AddPartitions`.
    pub fn add_partitions(
        &mut self,
        request: RequestId,
        r: &AddPartitions,
        now_ms: i64,
    ) -> Vec<Effect> {
        let call = AddCall {
            transactional_id: &r.transactional_id,
            producer_id: r.producer_id,
            producer_epoch: r.producer_epoch,
            partitions: r.partitions.iter().cloned().collect(),
            client_version: r.client_version,
            offsets: false,
        };
        self.add(request, call, now_ms)
    }

    /// AddOffsetsToTxn: adds the group's `__consumer_offsets` partition (as TV0, as Kafka
    /// does for this request at every version); answered by an `Answer::AddOffsets`.
    pub fn add_offsets(&mut self, request: RequestId, r: &AddOffsets, now_ms: i64) -> Vec<Effect> {
        let partition = TopicPartition::new(CONSUMER_OFFSETS_TOPIC, r.offsets_partition);
        let call = AddCall {
            transactional_id: &r.transactional_id,
            producer_id: r.producer_id,
            producer_epoch: r.producer_epoch,
            partitions: [partition].into_iter().collect(),
            client_version: TxnVersion::TV0,
            offsets: true,
        };
        self.add(request, call, now_ms)
    }

    fn add(&mut self, request: RequestId, call: AddCall<'_>, now_ms: i64) -> Vec<Effect> {
        let id = call.transactional_id;
        let effect = match self.add_transit(&call, now_ms) {
            Ok((coordinator_epoch, transit)) => {
                let op = Op {
                    transactional_id: id.to_string(),
                    coordinator_epoch,
                    transit,
                    kind: OpKind::Add {
                        request,
                        offsets: call.offsets,
                    },
                };
                self.start_append(op, now_ms)
            }
            Err(e) => add_answer(request, call.offsets, e),
        };
        vec![effect]
    }

    /// The transition to write, or the answer (NONE when nothing needs writing).
    fn add_transit(
        &mut self,
        call: &AddCall<'_>,
        now_ms: i64,
    ) -> Result<(i32, crate::metadata::TxnTransit), ErrorCode> {
        let id = call.transactional_id;
        if id.is_empty() {
            return Err(ErrorCode::INVALID_REQUEST);
        }
        let coordinator_epoch = self.serving_epoch(id)?;
        let meta = self
            .txns
            .get_mut(id)
            .ok_or(ErrorCode::INVALID_PRODUCER_ID_MAPPING)?;
        if meta.pending_state.is_some() {
            return Err(ErrorCode::CONCURRENT_TRANSACTIONS);
        }
        if meta.producer_id != call.producer_id {
            return Err(ErrorCode::INVALID_PRODUCER_ID_MAPPING);
        }
        if meta.producer_epoch != call.producer_epoch {
            return Err(ErrorCode::PRODUCER_FENCED);
        }
        if meta.state.is_prepare() {
            return Err(ErrorCode::CONCURRENT_TRANSACTIONS);
        }
        if meta.state == TxnState::Ongoing && call.partitions.is_subset(&meta.partitions) {
            return Err(ErrorCode::NONE);
        }
        let transit = meta.prepare_add_partitions(&call.partitions, now_ms, call.client_version)?;
        Ok((coordinator_epoch, transit))
    }

    /// AddPartitionsToTxn v4+ with `verify_only`: whether each partition is in the ongoing
    /// transaction (NONE) or not (TRANSACTION_ABORTABLE); nothing is written. One error for
    /// every partition when the transaction itself does not check out.
    pub fn verify_partitions(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[TopicPartition],
    ) -> Vec<(TopicPartition, ErrorCode)> {
        let check = || -> Result<_, ErrorCode> {
            if transactional_id.is_empty() {
                return Err(ErrorCode::INVALID_REQUEST);
            }
            self.serving_epoch(transactional_id)?;
            let meta = self
                .txns
                .get(transactional_id)
                .ok_or(ErrorCode::INVALID_PRODUCER_ID_MAPPING)?;
            if meta.producer_id != producer_id {
                return Err(ErrorCode::INVALID_PRODUCER_ID_MAPPING);
            }
            if meta.producer_epoch != producer_epoch {
                return Err(ErrorCode::PRODUCER_FENCED);
            }
            if meta.state.is_prepare() {
                return Err(ErrorCode::CONCURRENT_TRANSACTIONS);
            }
            Ok(meta)
        };
        match check() {
            Err(e) => partitions.iter().map(|p| (p.clone(), e)).collect(),
            Ok(meta) => partitions
                .iter()
                .map(|p| {
                    let e = if meta.partitions.contains(p) {
                        ErrorCode::NONE
                    } else {
                        ErrorCode::TRANSACTION_ABORTABLE
                    };
                    (p.clone(), e)
                })
                .collect(),
        }
    }
}
