//! Becoming (and ceasing to be) the coordinator of a `__transaction_state` partition: replay
//! its records into the ids' states (the last record of an id wins, a tombstone forgets it,
//! records of other types and unknown value versions are skipped, as Kafka 4.4 does), then
//! finish every transaction found in PrepareCommit / PrepareAbort by writing its markers
//! again and appending its Complete record.
//!
//! Where this differs from Kafka, on purpose: a record that fails to decode stops the load
//! with an error (Kafka logs it and serves the ids read so far), so a damaged log is never
//! served as if it were whole.

use std::collections::BTreeMap;

use sluice_net::DecodeError;

use crate::coordinator::{AwaitingMarkers, Coordinator, Owned};
use crate::effect::Effect;
use crate::log::{LogRecord, decode_record};
use crate::metadata::TxnMetadata;
use crate::partition::partition_for;
use crate::types::TxnResult;

/// Why a partition's records could not be replayed.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplayError {
    /// The record at this position (0-based, in the order given) does not decode.
    Decode { index: usize, error: DecodeError },
    /// A value names a status byte no transaction state has.
    UnknownStatus { index: usize, status: i8 },
}

impl std::fmt::Display for ReplayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplayError::Decode { index, error } => write!(
                f,
                "__transaction_state record {index} does not decode ({error}); check the \
                 partition's segments with kafka-dump-log --transaction-log-decoder"
            ),
            ReplayError::UnknownStatus { index, status } => write!(
                f,
                "__transaction_state record {index} has transaction status {status}, which no \
                 state has; it was not written by Kafka or sluice"
            ),
        }
    }
}

impl std::error::Error for ReplayError {}

/// The ids' states after `records` (key, value or `None` for a tombstone), in log order.
pub fn replay<'a, I>(records: I) -> Result<BTreeMap<String, TxnMetadata>, ReplayError>
where
    I: IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>,
{
    let mut out = BTreeMap::new();
    for (index, (key, value)) in records.into_iter().enumerate() {
        let record =
            decode_record(key, value).map_err(|error| ReplayError::Decode { index, error })?;
        match record {
            LogRecord::Value {
                transactional_id,
                value,
            } => {
                let meta = TxnMetadata::from_log_value(&transactional_id, &value).ok_or(
                    ReplayError::UnknownStatus {
                        index,
                        status: value.status,
                    },
                )?;
                out.insert(transactional_id, meta);
            }
            LogRecord::Tombstone { transactional_id } => {
                out.remove(&transactional_id);
            }
            LogRecord::UnknownKey { .. } | LogRecord::UnknownValueVersion { .. } => {}
        }
    }
    Ok(out)
}

impl Coordinator {
    /// This broker leads `partition` in `coordinator_epoch` and is about to read it: its ids
    /// answer COORDINATOR_LOAD_IN_PROGRESS until `finish_load`. Forgets what it held for it.
    pub fn begin_load(&mut self, partition: i32, coordinator_epoch: i32) {
        self.drop_partition(partition);
        self.owned.insert(
            partition,
            Owned {
                coordinator_epoch,
                loading: true,
            },
        );
    }

    /// The partition's records, read from its log start to its end. Serves its ids from now
    /// on and returns the markers (or Complete appends) of transactions left in Prepare. A
    /// load for another epoch than the latest `begin_load` is ignored.
    pub fn finish_load<'a, I>(
        &mut self,
        partition: i32,
        coordinator_epoch: i32,
        records: I,
        now_ms: i64,
    ) -> Result<Vec<Effect>, ReplayError>
    where
        I: IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>,
    {
        let expected = Owned {
            coordinator_epoch,
            loading: true,
        };
        if self.owned.get(&partition) != Some(&expected) {
            return Ok(Vec::new());
        }
        let loaded = replay(records)?;
        let n = self.config.state_log_partitions;
        for (id, meta) in loaded {
            if partition_for(&id, n) == partition {
                self.txns.insert(id, meta);
            }
        }
        self.owned.insert(
            partition,
            Owned {
                coordinator_epoch,
                loading: false,
            },
        );
        Ok(self.resume_prepared(partition, coordinator_epoch, now_ms))
    }

    fn resume_prepared(
        &mut self,
        partition: i32,
        coordinator_epoch: i32,
        now_ms: i64,
    ) -> Vec<Effect> {
        let n = self.config.state_log_partitions;
        let prepared: Vec<(String, TxnResult)> = self
            .txns
            .values()
            .filter(|m| partition_for(&m.transactional_id, n) == partition)
            .filter_map(|m| match m.state {
                crate::types::TxnState::PrepareCommit => {
                    Some((m.transactional_id.clone(), TxnResult::Commit))
                }
                crate::types::TxnState::PrepareAbort => {
                    Some((m.transactional_id.clone(), TxnResult::Abort))
                }
                _ => None,
            })
            .collect();
        let mut effects = Vec::new();
        for (id, result) in prepared {
            let Some(meta) = self.txns.get_mut(&id) else {
                continue;
            };
            let Ok(complete) = meta.prepare_complete(now_ms) else {
                continue;
            };
            let awaiting = AwaitingMarkers {
                coordinator_epoch,
                result,
                complete,
            };
            effects.extend(self.send_markers(&id, awaiting, now_ms));
        }
        effects
    }

    /// This broker no longer leads `partition` (in `coordinator_epoch`, or at all when
    /// `None`): its ids are forgotten; appends in flight for them end in NOT_COORDINATOR.
    /// An unload for an epoch older than the one held is ignored.
    pub fn unload(&mut self, partition: i32, coordinator_epoch: Option<i32>) {
        let held = self.owned.get(&partition).map(|o| o.coordinator_epoch);
        if let (Some(held), Some(asked)) = (held, coordinator_epoch)
            && held > asked
        {
            return;
        }
        self.owned.remove(&partition);
        self.drop_partition(partition);
    }

    fn drop_partition(&mut self, partition: i32) {
        let n = self.config.state_log_partitions;
        self.txns.retain(|id, _| partition_for(id, n) != partition);
        self.awaiting
            .retain(|id, _| partition_for(id, n) != partition);
    }
}
