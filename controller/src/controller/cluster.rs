//! Broker registration, heartbeats and session expiry (Kafka's `ClusterControlManager`,
//! `BrokerHeartbeatManager` and the heartbeat half of `ReplicationControlManager`).
//!
//! Rules, as Kafka 4.4: the broker epoch is the offset of the `RegisterBrokerRecord` that
//! registers a new incarnation; the same incarnation registering again keeps its epoch and
//! fencing state; another incarnation is refused with DUPLICATE_BROKER_REGISTRATION while the
//! registered one is unfenced with a live session. Brokers register fenced and are unfenced by
//! a heartbeat whose `current_metadata_offset` reaches their latest registration record. Fence
//! and unfence are `BrokerRegistrationChangeRecord`s v0 (Kafka stopped writing Fence/Unfence
//! records at 3.4), controlled shutdown one at v1.

use super::change::Election;
use super::{Controller, Proposal, Session, versioned};
use crate::bootstrap::REGISTER_BROKER_RECORD_VERSION;
use sluice_net::ErrorCode;
use sluice_net::messages::broker_registration_request::Feature;
use sluice_net::messages::register_broker_record::{BrokerEndpoint, BrokerFeature};
use sluice_net::messages::{
    BrokerHeartbeatRequest, BrokerHeartbeatResponse, BrokerRegistrationChangeRecord,
    BrokerRegistrationRequest, BrokerRegistrationResponse, MetadataRecord, RegisterBrokerRecord,
};
use sluice_net::metadata_record::VersionedRecord;

/// Kafka's `BrokerControlState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BrokerState {
    Fenced,
    Unfenced,
    ControlledShutdown,
    ShutdownNow,
}

impl BrokerState {
    fn fenced(self) -> bool {
        matches!(self, BrokerState::Fenced | BrokerState::ShutdownNow)
    }
}

impl Controller {
    /// Handles a BrokerRegistration request. The reply carries the broker epoch.
    pub fn register_broker(
        &mut self,
        now_ms: u64,
        request: &BrokerRegistrationRequest,
    ) -> Proposal<BrokerRegistrationResponse> {
        let record = match self.registration_record(now_ms, request) {
            Ok(record) => record,
            Err(code) => {
                let reply = BrokerRegistrationResponse {
                    error_code: code.code(),
                    broker_epoch: -1,
                    ..Default::default()
                };
                return self.propose(Vec::new(), reply);
            }
        };
        let id = record.broker_id.get();
        let broker_epoch = record.broker_epoch;
        let previous = self.image.broker(id);
        let new_incarnation = previous.is_none_or(|b| b.incarnation_id != record.incarnation_id);
        let mut records = Vec::new();
        if let Some(b) = previous.filter(|_| new_incarnation) {
            let clean = request.previous_broker_epoch == b.epoch;
            records = self.shutdown_records(id, clean);
        }
        let version = REGISTER_BROKER_RECORD_VERSION;
        records.push(versioned(version, MetadataRecord::RegisterBroker(record)));
        if new_incarnation {
            self.sessions.insert(id, Session::fresh(now_ms));
        } else if let Some(session) = self.sessions.get_mut(&id) {
            session.last_contact_ms = now_ms;
        }
        let reply = BrokerRegistrationResponse {
            broker_epoch,
            ..Default::default()
        };
        self.propose(records, reply)
    }

    fn registration_record(
        &self,
        now_ms: u64,
        request: &BrokerRegistrationRequest,
    ) -> Result<RegisterBrokerRecord, ErrorCode> {
        if request.cluster_id.as_str() != self.config.cluster_id {
            return Err(ErrorCode::INCONSISTENT_CLUSTER_ID);
        }
        let id = request.broker_id.get();
        let existing = self.image.broker(id);
        if let Some(b) = existing
            && self.has_valid_session(now_ms, id)
            && b.incarnation_id != request.incarnation_id
        {
            return Err(ErrorCode::DUPLICATE_BROKER_REGISTRATION);
        }
        if request.is_migrating_zk_broker {
            return Err(ErrorCode::BROKER_ID_NOT_REGISTERED);
        }
        self.check_log_dirs(request)?;
        let features = self.registration_features(&request.features)?;
        let mut record = RegisterBrokerRecord {
            broker_id: request.broker_id,
            incarnation_id: request.incarnation_id,
            broker_epoch: self.next_offset,
            end_points: endpoints(request),
            features,
            rack: request.rack.clone(),
            fenced: true,
            in_controlled_shutdown: false,
            log_dirs: request.log_dirs.clone(),
            ..Default::default()
        };
        if let Some(b) = existing.filter(|b| b.incarnation_id == request.incarnation_id) {
            record.broker_epoch = b.epoch;
            record.fenced = b.fenced;
            record.in_controlled_shutdown = b.in_controlled_shutdown;
        }
        Ok(record)
    }

    /// Kafka's directory rules at metadata.version >= 3.7-IV2: at least one, none reserved
    /// (below 100), no duplicates, none owned by another broker.
    fn check_log_dirs(&self, request: &BrokerRegistrationRequest) -> Result<(), ErrorCode> {
        let dirs = &request.log_dirs;
        let reserved = |d: &sluice_net::Uuid| d.0[..15].iter().all(|&b| b == 0) && d.0[15] < 100;
        let mut sorted = dirs.clone();
        sorted.sort();
        sorted.dedup();
        let owned_elsewhere = self.image.brokers().values().any(|b| {
            b.id != request.broker_id.get() && b.log_dirs.iter().any(|d| dirs.contains(d))
        });
        if dirs.is_empty() || dirs.iter().any(reserved) || sorted.len() != dirs.len() {
            return Err(ErrorCode::INVALID_REGISTRATION);
        }
        if owned_elsewhere {
            return Err(ErrorCode::INVALID_REGISTRATION);
        }
        Ok(())
    }

    /// The broker's feature ranges for the record; every finalized feature must be in range
    /// (a feature the broker does not list counts as 0..=0; `metadata.version` as 7..=7).
    fn registration_features(&self, offered: &[Feature]) -> Result<Vec<BrokerFeature>, ErrorCode> {
        let mut out: Vec<BrokerFeature> = offered
            .iter()
            .map(|f| BrokerFeature {
                name: f.name.clone(),
                min_supported_version: f.min_supported_version,
                max_supported_version: f.max_supported_version,
                ..Default::default()
            })
            .collect();
        if !out
            .iter()
            .any(|f| f.name.as_str() == crate::image::METADATA_VERSION)
        {
            out.push(BrokerFeature {
                name: crate::image::METADATA_VERSION.into(),
                min_supported_version: 7,
                max_supported_version: 7,
                ..Default::default()
            });
        }
        for (name, &level) in self.image.features() {
            let range = out.iter().find(|f| f.name.as_str() == name);
            let (min, max) = range.map_or((0, 0), |f| {
                (f.min_supported_version, f.max_supported_version)
            });
            if level != 0 && !(min..=max).contains(&level) {
                return Err(ErrorCode::UNSUPPORTED_VERSION);
            }
        }
        Ok(out)
    }

    /// Kafka's `hasValidSession`: unfenced and heard from within the session timeout.
    fn has_valid_session(&self, now_ms: u64, broker: i32) -> bool {
        let unfenced = self.image.broker(broker).is_some_and(|b| !b.fenced);
        let timeout = self.config.session_timeout_ms;
        let alive = self
            .sessions
            .get(&broker)
            .is_some_and(|s| s.last_contact_ms.saturating_add(timeout) >= now_ms);
        unfenced && alive
    }

    /// Handles a BrokerHeartbeat request.
    pub fn broker_heartbeat(
        &mut self,
        now_ms: u64,
        request: &BrokerHeartbeatRequest,
    ) -> Proposal<BrokerHeartbeatResponse> {
        let id = request.broker_id.get();
        let Some(registration) = self.image.broker(id).cloned() else {
            return self.heartbeat_error(ErrorCode::STALE_BROKER_EPOCH);
        };
        if registration.epoch != request.broker_epoch {
            return self.heartbeat_error(ErrorCode::STALE_BROKER_EPOCH);
        }
        let session = self
            .sessions
            .entry(id)
            .or_insert_with(|| Session::fresh(now_ms));
        let current = if registration.fenced {
            BrokerState::Fenced
        } else if session.controlled_shutdown_offset < 0 {
            BrokerState::Unfenced
        } else {
            BrokerState::ControlledShutdown
        };
        let next = self.next_state(id, current, request, registration.registered_offset);
        let records = if current == next {
            Vec::new()
        } else {
            self.transition_records(id, registration.epoch, next)
        };
        let reply = BrokerHeartbeatResponse {
            is_caught_up: request.current_metadata_offset >= registration.registered_offset,
            is_fenced: next.fenced(),
            should_shut_down: next == BrokerState::ShutdownNow,
            ..Default::default()
        };
        let proposal = self.propose(records, reply);
        if let Some(session) = self.sessions.get_mut(&id) {
            session.last_contact_ms = now_ms;
            session.metadata_offset = request.current_metadata_offset;
            if next.fenced() {
                session.controlled_shutdown_offset = -1;
            } else if next == BrokerState::ControlledShutdown
                && session.controlled_shutdown_offset < 0
            {
                session.controlled_shutdown_offset = proposal.commit_offset();
            }
        }
        proposal
    }

    fn heartbeat_error(&mut self, code: ErrorCode) -> Proposal<BrokerHeartbeatResponse> {
        let reply = BrokerHeartbeatResponse {
            error_code: code.code(),
            ..Default::default()
        };
        self.propose(Vec::new(), reply)
    }

    /// Kafka's `calculateNextBrokerState`.
    fn next_state(
        &self,
        id: i32,
        current: BrokerState,
        request: &BrokerHeartbeatRequest,
        registered_offset: i64,
    ) -> BrokerState {
        let leads = || self.has_leaderships(id);
        match current {
            BrokerState::Fenced if request.want_shut_down => BrokerState::ShutdownNow,
            BrokerState::Fenced
                if !request.want_fence && request.current_metadata_offset >= registered_offset =>
            {
                BrokerState::Unfenced
            }
            BrokerState::Fenced => BrokerState::Fenced,
            BrokerState::Unfenced if request.want_fence && request.want_shut_down => {
                BrokerState::ShutdownNow
            }
            BrokerState::Unfenced if request.want_fence => BrokerState::Fenced,
            BrokerState::Unfenced if request.want_shut_down && leads() => {
                BrokerState::ControlledShutdown
            }
            BrokerState::Unfenced if request.want_shut_down => BrokerState::ShutdownNow,
            BrokerState::Unfenced => BrokerState::Unfenced,
            BrokerState::ControlledShutdown if leads() => BrokerState::ControlledShutdown,
            BrokerState::ControlledShutdown => {
                let offset = self
                    .sessions
                    .get(&id)
                    .map_or(-1, |s| s.controlled_shutdown_offset);
                if offset <= self.lowest_active_offset() {
                    BrokerState::ShutdownNow
                } else {
                    BrokerState::ControlledShutdown
                }
            }
            BrokerState::ShutdownNow => BrokerState::ShutdownNow,
        }
    }

    fn has_leaderships(&self, broker: i32) -> bool {
        let topics = self.image.topics().values();
        topics
            .flat_map(|t| t.partitions.values())
            .any(|p| p.leader == broker)
    }

    /// The lowest metadata offset reported by an unfenced broker not shutting down.
    fn lowest_active_offset(&self) -> i64 {
        self.sessions
            .iter()
            .filter(|(id, s)| {
                s.controlled_shutdown_offset < 0
                    && self.image.broker(**id).is_some_and(|b| !b.fenced)
            })
            .map(|(_, s)| s.metadata_offset)
            .min()
            .unwrap_or(i64::MAX)
    }

    fn transition_records(&self, id: i32, epoch: i64, next: BrokerState) -> Vec<VersionedRecord> {
        match next {
            BrokerState::Fenced | BrokerState::ShutdownNow => self.fence_records(id, epoch),
            BrokerState::Unfenced => {
                let mut records = vec![registration_change(id, epoch, -1, 0)];
                let election = Election {
                    remove: -1,
                    add: id,
                    unclean: -1,
                };
                records.extend(self.leader_and_isr_updates(election, |p| p.leader == -1));
                records
            }
            BrokerState::ControlledShutdown => {
                let mut records = Vec::new();
                if self
                    .image
                    .broker(id)
                    .is_some_and(|b| !b.in_controlled_shutdown)
                {
                    records.push(registration_change(id, epoch, 0, 1));
                }
                let election = Election {
                    remove: id,
                    add: -1,
                    unclean: -1,
                };
                records.extend(self.leader_and_isr_updates(election, |p| p.isr.contains(&id)));
                records
            }
        }
    }

    /// Kafka's `handleBrokerShutdown`, written before a new incarnation's registration: the
    /// old incarnation leaves every ISR and leadership; after an unclean shutdown (the new
    /// incarnation does not present the old epoch) with ELR on it also leaves every ELR.
    /// Kafka makes this two passes over the same state; one pass here has the same result.
    fn shutdown_records(&self, id: i32, clean: bool) -> Vec<VersionedRecord> {
        let elr = self.image.feature_level(crate::image::ELR_VERSION) >= 1;
        let unclean = if elr && !clean { id } else { -1 };
        let election = Election {
            remove: id,
            add: -1,
            unclean,
        };
        self.leader_and_isr_updates(election, |p| p.isr.contains(&id) || p.elr.contains(&id))
    }

    /// Kafka's `handleBrokerFenced`: leadership and ISR membership move away, then the fence.
    fn fence_records(&self, id: i32, epoch: i64) -> Vec<VersionedRecord> {
        let election = Election {
            remove: id,
            add: -1,
            unclean: -1,
        };
        let mut records = self.leader_and_isr_updates(election, |p| p.isr.contains(&id));
        records.push(registration_change(id, epoch, 1, 0));
        records
    }

    /// Fences every unfenced broker whose session expired, one after the other (Kafka fences
    /// one per event and reschedules at once). The reply lists the brokers fenced.
    pub fn tick(&mut self, now_ms: u64) -> Proposal<Vec<i32>> {
        let first_offset = self.next_offset;
        let mut records = Vec::new();
        let mut fenced = Vec::new();
        while let Some(id) = self.one_stale_broker(now_ms) {
            let epoch = self.image.broker(id).map_or(-1, |b| b.epoch);
            let proposal = self.propose(self.fence_records(id, epoch), ());
            records.extend(proposal.records);
            if let Some(s) = self.sessions.get_mut(&id) {
                s.controlled_shutdown_offset = -1;
            }
            fenced.push(id);
        }
        Proposal {
            first_offset,
            records,
            reply: fenced,
        }
    }

    /// The unfenced broker heard from longest ago, if its session expired.
    fn one_stale_broker(&self, now_ms: u64) -> Option<i32> {
        let unfenced = self.image.brokers().values().filter(|b| !b.fenced);
        let oldest = unfenced.min_by_key(|b| {
            let last = self.sessions.get(&b.id).map_or(0, |s| s.last_contact_ms);
            (last, b.id)
        })?;
        (!self.has_valid_session(now_ms, oldest.id)).then_some(oldest.id)
    }
}

fn registration_change(id: i32, epoch: i64, fenced: i8, shutdown: i8) -> VersionedRecord {
    let version = if shutdown != 0 { 1 } else { 0 };
    let record = BrokerRegistrationChangeRecord {
        broker_id: id.into(),
        broker_epoch: epoch,
        fenced,
        in_controlled_shutdown: shutdown,
        ..Default::default()
    };
    versioned(version, MetadataRecord::BrokerRegistrationChange(record))
}

fn endpoints(request: &BrokerRegistrationRequest) -> Vec<BrokerEndpoint> {
    request
        .listeners
        .iter()
        .map(|l| BrokerEndpoint {
            name: l.name.clone(),
            host: l.host.clone(),
            port: l.port,
            security_protocol: l.security_protocol,
            ..Default::default()
        })
        .collect()
}
