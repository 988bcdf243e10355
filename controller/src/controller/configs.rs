//! Topic config changes (Kafka's `ConfigurationControlManager`, the part a sluice cluster
//! uses): a forwarded IncrementalAlterConfigs of SET and DELETE operations on topics becomes
//! one `ConfigRecord` per key (a null value deletes). The forwarding broker has already checked
//! the values against Kafka's rules and resolved APPEND and SUBTRACT into SETs; broker, group
//! and client-metrics configs are not handled here (a sluice cluster refuses them for now).

use super::{Controller, Proposal, versioned};
use crate::image::RESOURCE_TOPIC;
use sluice_net::ErrorCode;
use sluice_net::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use sluice_net::messages::{
    ConfigRecord, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, MetadataRecord,
};
use sluice_net::metadata_record::VersionedRecord;

/// `AlterConfigOp.OpType` ids.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;

impl Controller {
    /// Handles a (forwarded) IncrementalAlterConfigs on topics.
    pub fn incremental_alter_configs(
        &mut self,
        request: &IncrementalAlterConfigsRequest,
    ) -> Proposal<IncrementalAlterConfigsResponse> {
        let mut records = Vec::new();
        let mut responses = Vec::new();
        for resource in &request.resources {
            let outcome = self.topic_config_records(resource);
            let (code, message) = match outcome {
                Ok(resource_records) => {
                    if !request.validate_only {
                        records.extend(resource_records);
                    }
                    (ErrorCode::NONE, None)
                }
                Err((code, message)) => (code, Some(message.into())),
            };
            responses.push(AlterConfigsResourceResponse {
                error_code: code.code(),
                error_message: message,
                resource_type: resource.resource_type,
                resource_name: resource.resource_name.clone(),
                ..Default::default()
            });
        }
        let reply = IncrementalAlterConfigsResponse {
            responses,
            ..Default::default()
        };
        self.propose(records, reply)
    }

    fn topic_config_records(
        &self,
        resource: &sluice_net::messages::incremental_alter_configs_request::AlterConfigsResource,
    ) -> Result<Vec<VersionedRecord>, (ErrorCode, String)> {
        let name = resource.resource_name.to_string();
        if resource.resource_type != RESOURCE_TOPIC {
            return Err((
                ErrorCode::INVALID_REQUEST,
                "Changing configs is not supported on a sluice cluster yet.".to_owned(),
            ));
        }
        if self.image.topic_by_name(&name).is_none() {
            return Err((
                ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                format!("The topic '{name}' does not exist."),
            ));
        }
        let mut records = Vec::new();
        for c in &resource.configs {
            let value = match c.config_operation {
                OP_SET => c.value.clone(),
                OP_DELETE => None,
                other => {
                    return Err((
                        ErrorCode::INVALID_REQUEST,
                        format!("Config operation {other} is resolved by the broker, not here"),
                    ));
                }
            };
            let record = ConfigRecord {
                resource_type: RESOURCE_TOPIC,
                resource_name: name.as_str().into(),
                name: c.name.clone(),
                value,
                ..Default::default()
            };
            records.push(versioned(0, MetadataRecord::Config(record)));
        }
        Ok(records)
    }
}
