//! DescribeTransactions and ListTransactions answers (what `kafka-transactions` shows), as
//! Kafka 4.4's coordinator builds them: state names as `TxnState::name`, Dead ids hidden,
//! ListTransactions filtered by state names (unknown names reported back), producer ids,
//! minimum running time (`now - start > duration`, so an Empty id with start -1 passes) and
//! a transactional id pattern the broker compiles (Kafka: RE2J, full match; an invalid
//! pattern is the broker's INVALID_REGULAR_EXPRESSION before asking us).

use std::collections::BTreeSet;

use sluice_net::ErrorCode;

use crate::coordinator::Coordinator;
use crate::metadata::group_partitions;
use crate::types::TxnState;

/// One DescribeTransactions entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    pub error: ErrorCode,
    pub transactional_id: String,
    pub state: &'static str,
    pub timeout_ms: i32,
    pub start_ms: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// Topics and their partitions, ascending.
    pub topics: Vec<(String, Vec<i32>)>,
}

/// ListTransactions' filters (empty: no filter; `duration_ms` < 0: no filter).
pub struct ListFilter<'a> {
    pub states: Vec<String>,
    pub producer_ids: BTreeSet<i64>,
    pub duration_ms: i64,
    pub id_matches: Option<&'a dyn Fn(&str) -> bool>,
}

impl std::fmt::Debug for ListFilter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListFilter")
            .field("states", &self.states)
            .field("producer_ids", &self.producer_ids)
            .field("duration_ms", &self.duration_ms)
            .field("id_matches", &self.id_matches.is_some())
            .finish()
    }
}

/// One ListTransactions entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub transactional_id: String,
    pub producer_id: i64,
    pub state: &'static str,
}

/// The ListTransactions answer of this coordinator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListAnswer {
    pub error: ErrorCode,
    pub unknown_state_filters: Vec<String>,
    pub transactions: Vec<Listed>,
}

impl Coordinator {
    /// DescribeTransactions for one id.
    pub fn describe(&self, transactional_id: &str) -> Described {
        let mut d = Described {
            error: ErrorCode::NONE,
            transactional_id: transactional_id.to_string(),
            state: "",
            timeout_ms: 0,
            start_ms: -1,
            producer_id: -1,
            producer_epoch: -1,
            topics: Vec::new(),
        };
        if transactional_id.is_empty() {
            d.error = ErrorCode::INVALID_REQUEST;
            return d;
        }
        if let Err(e) = self.serving_epoch(transactional_id) {
            d.error = e;
            return d;
        }
        match self.txns.get(transactional_id) {
            Some(m) if m.state != TxnState::Dead => {
                d.state = m.state.name();
                d.timeout_ms = m.timeout_ms;
                d.start_ms = m.start_ms;
                d.producer_id = m.producer_id;
                d.producer_epoch = m.producer_epoch;
                d.topics = group_partitions(&m.partitions)
                    .into_iter()
                    .map(|t| (t.topic, t.partition_ids))
                    .collect();
            }
            _ => d.error = ErrorCode::TRANSACTIONAL_ID_NOT_FOUND,
        }
        d
    }

    /// ListTransactions over every id this coordinator serves.
    pub fn list(&self, filter: &ListFilter<'_>, now_ms: i64) -> ListAnswer {
        if self.owned.values().any(|o| o.loading) {
            return ListAnswer {
                error: ErrorCode::COORDINATOR_LOAD_IN_PROGRESS,
                unknown_state_filters: Vec::new(),
                transactions: Vec::new(),
            };
        }
        let mut states = BTreeSet::new();
        let mut unknown_state_filters = Vec::new();
        for name in &filter.states {
            match TxnState::from_name(name) {
                Some(s) => {
                    states.insert(s);
                }
                None => unknown_state_filters.push(name.clone()),
            }
        }
        let transactions = self
            .txns
            .values()
            .filter(|m| m.state != TxnState::Dead)
            .filter(|m| {
                filter.producer_ids.is_empty() || filter.producer_ids.contains(&m.producer_id)
            })
            .filter(|m| filter.states.is_empty() || states.contains(&m.state))
            .filter(|m| filter.duration_ms < 0 || now_ms - m.start_ms > filter.duration_ms)
            .filter(|m| filter.id_matches.is_none_or(|f| f(&m.transactional_id)))
            .map(|m| Listed {
                transactional_id: m.transactional_id.clone(),
                producer_id: m.producer_id,
                state: m.state.name(),
            })
            .collect();
        ListAnswer {
            error: ErrorCode::NONE,
            unknown_state_filters,
            transactions,
        }
    }
}
