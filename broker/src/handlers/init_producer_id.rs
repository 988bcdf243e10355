//! InitProducerId for idempotent producers: a fresh producer id at epoch 0 from the control core.
//! Transactions are not built: a transactional id gets TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
//! a fatal error in every client, so a transactional producer fails at once and clearly
//! instead of retrying forever.

use std::rc::Rc;

use sluice_net::ProducerId;
use sluice_net::messages::{InitProducerIdRequest, InitProducerIdResponse};

use crate::core::Core;
use crate::errors::code;
use crate::messages::{CoreReply, CoreRequest};
use crate::router::CONTROL_CORE;

pub async fn handle(
    core: &Rc<Core>,
    request: InitProducerIdRequest,
    _version: i16,
) -> InitProducerIdResponse {
    let mut r = InitProducerIdResponse {
        producer_id: ProducerId(-1),
        producer_epoch: -1,
        ongoing_txn_producer_id: ProducerId(-1),
        ongoing_txn_producer_epoch: -1,
        ..Default::default()
    };
    if request.transactional_id.is_some() {
        r.error_code = code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
        return r;
    }
    let id = match core
        .router
        .call(CONTROL_CORE, CoreRequest::AllocateProducerId)
        .await
    {
        Ok(CoreReply::ProducerId(id)) => id,
        _ => Err(()),
    };
    match id {
        Ok(id) => {
            r.producer_id = id.into();
            r.producer_epoch = 0;
        }
        Err(()) => r.error_code = code::COORDINATOR_NOT_AVAILABLE,
    }
    r
}
