//! InitProducerId: for an idempotent producer, a fresh producer id at epoch 0 from the control
//! core; with a transactional id, the transaction coordinator's answer (`handlers::txn`).

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
    version: i16,
) -> InitProducerIdResponse {
    let mut r = InitProducerIdResponse {
        producer_id: ProducerId(-1),
        producer_epoch: -1,
        ongoing_txn_producer_id: ProducerId(-1),
        ongoing_txn_producer_epoch: -1,
        ..Default::default()
    };
    if request.transactional_id.is_some() {
        super::txn::init_producer_id(core, &request, version, &mut r).await;
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
