//! A harness for driving a `Coordinator` in tests: a producer id source, an in-memory
//! `__transaction_state` log per partition, and helpers that carry effects out (appends
//! succeed, markers are written) or hold them for the test to finish by hand.

#![allow(dead_code)]

use std::collections::BTreeMap;

use sluice_net::ErrorCode;
use sluice_txn::{
    AddOffsets, AddPartitions, Answer, Append, Config, Coordinator, Effect, EndTxn, InitProducerId,
    MarkerResult, Markers, ProducerIdSource, RequestId, TopicPartition, TxnResult, TxnVersion,
};

/// Hands out 1000, 1001, ... or fails with `error` when set.
#[derive(Debug, Default)]
pub struct Ids {
    pub next: i64,
    pub error: Option<ErrorCode>,
}

impl ProducerIdSource for Ids {
    fn next_producer_id(&mut self) -> Result<i64, ErrorCode> {
        if let Some(e) = self.error {
            return Err(e);
        }
        self.next += 1;
        Ok(999 + self.next)
    }
}

/// What the broker saw: answers, appends and markers, in order.
#[derive(Debug, Default)]
pub struct Seen {
    pub answers: Vec<(RequestId, Answer)>,
    pub appends: Vec<Append>,
    pub markers: Vec<Markers>,
}

/// A record as the log keeps it: key and value (`None`: tombstone).
pub type Record = (Vec<u8>, Option<Vec<u8>>);

pub struct H {
    pub c: Coordinator,
    pub ids: Ids,
    pub now: i64,
    /// Durable records per `__transaction_state` partition.
    pub log: BTreeMap<i32, Vec<Record>>,
    pub next_request: u64,
    /// When false, appends and markers are collected in `held` instead of completed.
    pub auto: bool,
    pub held: Seen,
}

impl H {
    pub fn new(config: Config) -> H {
        let mut c = Coordinator::new(config);
        for p in 0..c.config().state_log_partitions {
            c.begin_load(p, 1);
            let none: Vec<(&[u8], Option<&[u8]>)> = Vec::new();
            assert_eq!(c.finish_load(p, 1, none, 0), Ok(Vec::new()));
        }
        H {
            c,
            ids: Ids::default(),
            now: 1_000,
            log: BTreeMap::new(),
            next_request: 0,
            auto: true,
            held: Seen::default(),
        }
    }

    pub fn default_config() -> H {
        H::new(Config::default())
    }

    pub fn request(&mut self) -> RequestId {
        self.next_request += 1;
        RequestId(self.next_request)
    }

    /// Carries out effects: appends succeed (into `log`), markers are written, answers are
    /// returned; with `auto` off, appends and markers are held instead.
    pub fn run(&mut self, effects: Vec<Effect>) -> Vec<(RequestId, Answer)> {
        let mut answers = Vec::new();
        let mut queue: std::collections::VecDeque<Effect> = effects.into();
        while let Some(e) = queue.pop_front() {
            match e {
                Effect::Answer { request, answer } => answers.push((request, answer)),
                Effect::Append(a) if self.auto => {
                    self.log
                        .entry(a.partition)
                        .or_default()
                        .push((a.key.clone(), a.value.clone()));
                    self.held.appends.push(a.clone());
                    queue.extend(self.c.append_done(a.write, Ok(()), self.now));
                }
                Effect::WriteMarkers(m) if self.auto => {
                    let results: Vec<_> = m
                        .partitions
                        .iter()
                        .map(|p| (p.clone(), MarkerResult::Written))
                        .collect();
                    self.held.markers.push(m.clone());
                    queue.extend(self.c.markers_written(
                        &m.transactional_id,
                        m.coordinator_epoch,
                        &results,
                        self.now,
                    ));
                }
                Effect::Append(a) => self.held.appends.push(a),
                Effect::WriteMarkers(m) => self.held.markers.push(m),
            }
        }
        answers
    }

    /// Completes a held append with `result`, recording it in the log on success.
    pub fn finish_append(
        &mut self,
        a: &Append,
        result: Result<(), ErrorCode>,
    ) -> Vec<(RequestId, Answer)> {
        if result.is_ok() {
            self.log
                .entry(a.partition)
                .or_default()
                .push((a.key.clone(), a.value.clone()));
        }
        let effects = self.c.append_done(a.write, result, self.now);
        self.run(effects)
    }

    pub fn one(&mut self, effects: Vec<Effect>) -> Answer {
        let mut answers = self.run(effects);
        assert_eq!(answers.len(), 1, "{answers:?}");
        answers.remove(0).1
    }

    pub fn init(&mut self, id: &str) -> Answer {
        self.init_with(id, -1, -1)
    }

    pub fn init_with(&mut self, id: &str, pid: i64, epoch: i16) -> Answer {
        let r = InitProducerId {
            transactional_id: id.into(),
            timeout_ms: 60_000,
            producer_id: pid,
            producer_epoch: epoch,
            enable_two_phase_commit: false,
            keep_prepared_txn: false,
        };
        let req = self.request();
        let e = self.c.init_producer_id(req, &r, self.now, &mut self.ids);
        self.one(e)
    }

    /// InitProducerId that must succeed: its producer id and epoch.
    pub fn init_ok(&mut self, id: &str) -> (i64, i16) {
        match self.init(id) {
            Answer::InitProducerId {
                error: ErrorCode::NONE,
                producer_id,
                producer_epoch,
            } => (producer_id, producer_epoch),
            other => panic!("init {id}: {other:?}"),
        }
    }

    pub fn add(
        &mut self,
        id: &str,
        pe: (i64, i16),
        parts: &[(&str, i32)],
        v: TxnVersion,
    ) -> Answer {
        let r = AddPartitions {
            transactional_id: id.into(),
            producer_id: pe.0,
            producer_epoch: pe.1,
            partitions: parts
                .iter()
                .map(|(t, p)| TopicPartition::new(t, *p))
                .collect(),
            client_version: v,
        };
        let req = self.request();
        let e = self.c.add_partitions(req, &r, self.now);
        self.one(e)
    }

    pub fn add_offsets(&mut self, id: &str, pe: (i64, i16), offsets_partition: i32) -> Answer {
        let r = AddOffsets {
            transactional_id: id.into(),
            producer_id: pe.0,
            producer_epoch: pe.1,
            offsets_partition,
        };
        let req = self.request();
        let e = self.c.add_offsets(req, &r, self.now);
        self.one(e)
    }

    pub fn end(&mut self, id: &str, pe: (i64, i16), result: TxnResult, v: TxnVersion) -> Answer {
        let r = EndTxn {
            transactional_id: id.into(),
            producer_id: pe.0,
            producer_epoch: pe.1,
            result,
            client_version: v,
        };
        let req = self.request();
        let e = self.c.end_txn(req, &r, self.now, &mut self.ids);
        self.one(e)
    }

    /// The records of the partition of `id`, decoded, for that id only.
    pub fn records_of(&self, id: &str) -> Vec<Option<sluice_txn::TxnLogValue>> {
        let p = self.c.partition_for(id);
        self.log
            .get(&p)
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| match sluice_txn::decode_record(k, v.as_deref()) {
                Ok(sluice_txn::LogRecord::Value {
                    transactional_id,
                    value,
                }) if transactional_id == id => Some(Some(value)),
                Ok(sluice_txn::LogRecord::Tombstone { transactional_id })
                    if transactional_id == id =>
                {
                    Some(None)
                }
                _ => None,
            })
            .collect()
    }

    /// The states `id`'s records went through.
    pub fn states_of(&self, id: &str) -> Vec<i8> {
        self.records_of(id)
            .into_iter()
            .map(|v| v.map_or(-1, |v| v.status))
            .collect()
    }
}

pub fn err(a: &Answer) -> ErrorCode {
    match a {
        Answer::InitProducerId { error, .. }
        | Answer::AddPartitions { error }
        | Answer::AddOffsets { error }
        | Answer::EndTxn { error, .. } => *error,
    }
}

pub fn pid_epoch(a: &Answer) -> (i64, i16) {
    match a {
        Answer::InitProducerId {
            producer_id,
            producer_epoch,
            ..
        }
        | Answer::EndTxn {
            producer_id,
            producer_epoch,
            ..
        } => (*producer_id, *producer_epoch),
        _ => (-1, -1),
    }
}
