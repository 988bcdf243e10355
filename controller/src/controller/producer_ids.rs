//! Producer-id blocks (Kafka's `ProducerIdControlManager`): a broker asks for a block, gets
//! the next 1000 ids, and the `ProducerIdsRecord` moves the next id past them. Because the
//! next id lives in the log (and the image), no two blocks overlap, across brokers and across
//! controller failovers. A request with a stale broker epoch is refused.

use super::{Controller, Proposal, versioned};
use sluice_net::ErrorCode;
use sluice_net::messages::{
    AllocateProducerIdsRequest, AllocateProducerIdsResponse, MetadataRecord, ProducerIdsRecord,
};

/// Kafka's `ProducerIdsBlock.PRODUCER_ID_BLOCK_SIZE`.
pub const PRODUCER_ID_BLOCK_SIZE: i32 = 1000;

impl Controller {
    /// Handles an AllocateProducerIds request: the reply is the block, valid once committed.
    pub fn allocate_producer_ids(
        &mut self,
        request: &AllocateProducerIdsRequest,
    ) -> Proposal<AllocateProducerIdsResponse> {
        let id = request.broker_id.get();
        let current = self.image.broker(id).map(|b| b.epoch);
        if current != Some(request.broker_epoch) {
            let reply = AllocateProducerIdsResponse {
                error_code: ErrorCode::STALE_BROKER_EPOCH.code(),
                producer_id_start: (-1).into(),
                ..Default::default()
            };
            return self.propose(Vec::new(), reply);
        }
        let first = self.image.next_producer_id();
        let Some(next) = first
            .checked_add(i64::from(PRODUCER_ID_BLOCK_SIZE))
            .filter(|n| *n < i64::MAX)
        else {
            let reply = AllocateProducerIdsResponse {
                error_code: ErrorCode::UNKNOWN_SERVER_ERROR.code(),
                producer_id_start: (-1).into(),
                ..Default::default()
            };
            return self.propose(Vec::new(), reply);
        };
        let record = ProducerIdsRecord {
            broker_id: request.broker_id,
            broker_epoch: request.broker_epoch,
            next_producer_id: next,
            ..Default::default()
        };
        let reply = AllocateProducerIdsResponse {
            producer_id_start: first.into(),
            producer_id_len: PRODUCER_ID_BLOCK_SIZE,
            ..Default::default()
        };
        self.propose(
            vec![versioned(0, MetadataRecord::ProducerIds(record))],
            reply,
        )
    }
}
