//! Incremental fetch sessions (KIP-227) over raw Fetch v12 and v13 frames against the real
//! binary: a full fetch at epoch 0 opens a session, incremental fetches answer only partitions
//! with news (also after a long poll), session errors are top-level codes with no partitions,
//! forgotten partitions leave the session, and epoch -1 stays sessionless.
//!
//! Each test makes its own uniquely named topic, so with `SLUICE_TEST_BOOTSTRAP` the file runs
//! against any broker, the reference Kafka 4.4 included, to compare the answers.

use std::time::{Duration, Instant};

use sluice_net::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use sluice_net::messages::{FetchRequest, FetchResponse};
use sluice_net::record_batch::build::{BatchSpec, batch};
use sluice_net::{ApiKey, Request, Uuid};
use sluice_tests::{
    Broker, RawConn, call, create_topic_raw, decode_response, encode_request, expect, produce, uniq,
};

const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;
const INVALID_FETCH_SESSION_EPOCH: i16 = 71;
const FETCH_SESSION_TOPIC_ID_ERROR: i16 = 106;

/// A topic of a fetch request: by name (v12) or by id (v13+), partitions with their offsets.
fn topic(name: &str, id: Uuid, offsets: &[(i32, i64)]) -> FetchTopic {
    FetchTopic {
        topic: name.into(),
        topic_id: id,
        partitions: offsets
            .iter()
            .map(|&(partition, fetch_offset)| FetchPartition {
                partition,
                fetch_offset,
                current_leader_epoch: -1,
                last_fetched_epoch: -1,
                log_start_offset: -1,
                partition_max_bytes: 1 << 20,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// One fetch's session fields and contents.
struct Fetch {
    version: i16,
    session_id: i32,
    epoch: i32,
    topics: Vec<FetchTopic>,
    forgotten: Vec<ForgottenTopic>,
    max_wait_ms: i32,
}

impl Fetch {
    fn new(session_id: i32, epoch: i32, topics: Vec<FetchTopic>) -> Fetch {
        Fetch {
            version: 12,
            session_id,
            epoch,
            topics,
            forgotten: Vec::new(),
            max_wait_ms: 0,
        }
    }

    fn request(self) -> Request {
        Request::Fetch(FetchRequest {
            replica_id: (-1).into(),
            max_wait_ms: self.max_wait_ms,
            min_bytes: 1,
            max_bytes: 1 << 20,
            session_id: self.session_id,
            session_epoch: self.epoch,
            topics: self.topics,
            forgotten_topics_data: self.forgotten,
            ..Default::default()
        })
    }

    fn send(self, c: &mut RawConn) -> FetchResponse {
        let version = self.version;
        expect!(call(c, ApiKey::Fetch, version, self.request()), Fetch)
    }
}

/// The (partition, record bytes) of every partition a response names, in order.
fn answered(r: &FetchResponse) -> Vec<(i32, usize)> {
    r.responses
        .iter()
        .flat_map(|t| &t.partitions)
        .map(|p| {
            (
                p.partition_index,
                p.records.as_ref().map_or(0, |rs| rs.len()),
            )
        })
        .collect()
}

fn one_record(value: &[u8]) -> bytes::Bytes {
    batch(&BatchSpec::default(), &[(None, Some(value))])
}

/// Fetches `name` sessionless until partition 0 answers without error (a reference Kafka may
/// need a moment after CreateTopics before it leads the partition).
fn wait_until_fetchable(c: &mut RawConn, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = Fetch::new(0, -1, vec![topic(name, Uuid::default(), &[(0, 0)])]).send(c);
        if r.error_code == 0 && r.responses[0].partitions[0].error_code == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "never fetchable: {r:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Proves the session's life over Fetch v12: epoch 0 opens it and answers every partition; an
/// incremental fetch with nothing new answers none, at once or after waiting out its long
/// poll; after a produce it answers that partition only; a long poll woken by a produce answers
/// that partition only; a replayed epoch and an unknown id get their top-level errors with no
/// partitions; forgotten partitions are no longer read, and forgetting the last closes the
/// session (id 0), after which its id is unknown; epoch -1 answers everything with id 0.
#[test]
fn session_life_over_fetch_v12() {
    let b = Broker::start(&[]);
    let mut c = RawConn::connect(b.addr);
    let name = uniq("sessions");
    create_topic_raw(&mut c, &name, 2);
    wait_until_fetchable(&mut c, &name);
    assert_eq!(produce(&mut c, &name, one_record(b"first")).0, 0);
    let both = |o0, o1| vec![topic(&name, Uuid::default(), &[(0, o0), (1, o1)])];
    let p0 = |o| vec![topic(&name, Uuid::default(), &[(0, o)])];

    let full = Fetch::new(0, 0, both(0, 0)).send(&mut c);
    assert_eq!(full.error_code, 0);
    let id = full.session_id;
    assert_ne!(id, 0, "epoch 0 opens a session");
    let got = answered(&full);
    assert_eq!(
        got.len(),
        2,
        "a full fetch answers every partition: {full:?}"
    );
    assert!(got[0].1 > 0 && got[1].1 == 0, "{got:?}");

    // The client moved partition 0 past the record it got: nothing is new.
    let quiet = Fetch::new(id, 1, p0(1)).send(&mut c);
    assert_eq!((quiet.error_code, quiet.session_id), (0, id));
    assert!(answered(&quiet).is_empty(), "nothing new: {quiet:?}");

    let mut waited = Fetch::new(id, 2, vec![]);
    waited.max_wait_ms = 500;
    let started = Instant::now();
    let waited = waited.send(&mut c);
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "the long poll waited"
    );
    assert_eq!((waited.error_code, waited.session_id), (0, id));
    assert!(answered(&waited).is_empty(), "{waited:?}");

    assert_eq!(produce(&mut c, &name, one_record(b"second")).0, 0);
    let news = Fetch::new(id, 3, vec![]).send(&mut c);
    let got = answered(&news);
    assert_eq!(got.len(), 1, "only partition 0 has news: {news:?}");
    assert!(got[0].0 == 0 && got[0].1 > 0, "{got:?}");
    assert_eq!(
        news.responses[0].topic.as_str(),
        name,
        "v12 names the topic"
    );

    // A long poll woken by an append (from another connection) answers that partition only.
    // The poll goes on the session's own connection: sessions live on its core.
    let mut poll = Fetch::new(id, 4, p0(2));
    poll.max_wait_ms = 20_000;
    c.send_frame(&encode_request(ApiKey::Fetch, 12, 77, &poll.request()));
    std::thread::sleep(Duration::from_millis(300));
    let mut producer = RawConn::connect(b.addr);
    let started = Instant::now();
    assert_eq!(produce(&mut producer, &name, one_record(b"third")).0, 0);
    let frame = c.recv_frame().expect("the long poll answered");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "woken by the append"
    );
    let woken = expect!(decode_response(ApiKey::Fetch, 12, 77, frame), Fetch);
    assert_eq!((woken.error_code, woken.session_id), (0, id));
    let got = answered(&woken);
    assert!(got.len() == 1 && got[0].0 == 0 && got[0].1 > 0, "{woken:?}");

    let replayed = Fetch::new(id, 4, vec![]).send(&mut c);
    assert_eq!(replayed.error_code, INVALID_FETCH_SESSION_EPOCH);
    assert_eq!(replayed.session_id, 0);
    assert!(replayed.responses.is_empty(), "{replayed:?}");
    let unknown = Fetch::new(id ^ 0x0010_0000, 5, vec![]).send(&mut c);
    assert_eq!(unknown.error_code, FETCH_SESSION_ID_NOT_FOUND);
    assert_eq!(unknown.session_id, 0);
    assert!(unknown.responses.is_empty(), "{unknown:?}");

    // Forget partition 0, then append to it: the session does not read it any more.
    let mut forget = Fetch::new(id, 5, vec![]);
    forget.forgotten = vec![ForgottenTopic {
        topic: name.as_str().into(),
        partitions: vec![0],
        ..Default::default()
    }];
    let forgot = forget.send(&mut c);
    assert_eq!((forgot.error_code, forgot.session_id), (0, id));
    assert_eq!(produce(&mut c, &name, one_record(b"fourth")).0, 0);
    let after = Fetch::new(id, 6, vec![]).send(&mut c);
    assert!(
        answered(&after).is_empty(),
        "partition 0 was forgotten: {after:?}"
    );

    let mut forget = Fetch::new(id, 7, vec![]);
    forget.forgotten = vec![ForgottenTopic {
        topic: name.as_str().into(),
        partitions: vec![1],
        ..Default::default()
    }];
    let closed = forget.send(&mut c);
    assert_eq!((closed.error_code, closed.session_id), (0, 0), "{closed:?}");
    assert!(answered(&closed).is_empty());
    let gone = Fetch::new(id, 8, vec![]).send(&mut c);
    assert_eq!(gone.error_code, FETCH_SESSION_ID_NOT_FOUND);

    let sessionless = Fetch::new(0, -1, both(0, 0)).send(&mut c);
    assert_eq!((sessionless.error_code, sessionless.session_id), (0, 0));
    assert_eq!(answered(&sessionless).len(), 2);
}

/// Proves a v13 session keys topics by id (answers carry the id, not the name), a v12 request
/// on it gets FETCH_SESSION_TOPIC_ID_ERROR, and a full fetch at epoch 0 naming the session
/// closes it and opens a new one.
#[test]
fn topic_id_sessions() {
    let b = Broker::start(&[]);
    let mut c = RawConn::connect(b.addr);
    let name = uniq("id-sessions");
    let id = create_topic_raw(&mut c, &name, 1);
    wait_until_fetchable(&mut c, &name);
    assert_eq!(produce(&mut c, &name, one_record(b"by-id")).0, 0);

    let mut full = Fetch::new(0, 0, vec![topic("", id, &[(0, 0)])]);
    full.version = 13;
    let full = full.send(&mut c);
    assert_eq!(full.error_code, 0, "{full:?}");
    let session = full.session_id;
    assert_ne!(session, 0);
    assert_eq!(full.responses[0].topic_id, id);
    assert!(answered(&full)[0].1 > 0);

    let by_name = Fetch::new(session, 1, vec![]).send(&mut c);
    assert_eq!(
        by_name.error_code, FETCH_SESSION_TOPIC_ID_ERROR,
        "{by_name:?}"
    );
    assert!(by_name.responses.is_empty());

    let mut quiet = Fetch::new(session, 1, vec![topic("", id, &[(0, 1)])]);
    quiet.version = 13;
    let quiet = quiet.send(&mut c);
    assert_eq!((quiet.error_code, quiet.session_id), (0, session));
    assert!(answered(&quiet).is_empty(), "{quiet:?}");

    let mut reopen = Fetch::new(session, 0, vec![topic("", id, &[(0, 1)])]);
    reopen.version = 13;
    let reopened = reopen.send(&mut c);
    assert_eq!(reopened.error_code, 0);
    assert_ne!(reopened.session_id, 0);
    assert_ne!(
        reopened.session_id, session,
        "a new session replaces the old one"
    );
    let mut old = Fetch::new(session, 2, vec![]);
    old.version = 13;
    assert_eq!(old.send(&mut c).error_code, FETCH_SESSION_ID_NOT_FOUND);
}
