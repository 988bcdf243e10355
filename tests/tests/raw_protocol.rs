//! The real broker against raw bytes: malformed and hostile input closes only the offending
//! connection (or gets Kafka's error answer), never crashes the broker, and never damages
//! stored data. Each test ends by checking that a well-behaved client is still served.

use std::io::Write;

use sluice_net::messages::metadata_request::MetadataRequestTopic;
use sluice_net::messages::produce_request::{PartitionProduceData, TopicProduceData};
use sluice_net::messages::{ApiVersionsRequest, MetadataRequest, ProduceRequest};
use sluice_net::record_batch::build::{BatchSpec, batch};
use sluice_net::{ApiKey, BrokerId, Request, Response};
use sluice_tests::{Broker, RawConn, produce};

/// A well-behaved ApiVersions v3 exchange; panics if the broker does not answer properly.
fn assert_serving(broker: &Broker) {
    let mut c = RawConn::connect(broker.addr);
    let req = Request::ApiVersions(ApiVersionsRequest {
        client_software_name: "sluice-tests".into(),
        client_software_version: "1.0".into(),
        ..Default::default()
    });
    match c.call(ApiKey::ApiVersions, 3, 77, &req) {
        Response::ApiVersions(r) => {
            assert_eq!(r.error_code, 0);
            assert!(
                r.api_keys
                    .iter()
                    .any(|k| k.api_key == ApiKey::Produce.key())
            );
        }
        other => panic!("unexpected {other:?}"),
    }
}

fn create_topic(conn: &mut RawConn, topic: &str) {
    let req = Request::Metadata(MetadataRequest {
        topics: Some(vec![MetadataRequestTopic {
            name: Some(topic.into()),
            ..Default::default()
        }]),
        allow_auto_topic_creation: true,
        ..Default::default()
    });
    match conn.call(ApiKey::Metadata, 12, 3, &req) {
        Response::Metadata(r) => assert_eq!(r.topics[0].error_code, 0, "auto-created"),
        other => panic!("unexpected {other:?}"),
    }
}

/// Proves each kind of garbage closes its connection and leaves the broker serving.
#[test]
fn hostile_frames_close_only_their_connection() {
    let broker = Broker::start(&["--cores", "2"]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "size above the limit",
            (200 * 1024 * 1024i32).to_be_bytes().to_vec(),
        ),
        ("negative size", (-5i32).to_be_bytes().to_vec()),
        (
            "frame shorter than a header",
            [0, 0, 0, 3, 0, 18, 0].to_vec(),
        ),
        (
            "unknown api key",
            [
                &12i32.to_be_bytes()[..],
                &[0x7f, 0x00, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0, 0],
            ]
            .concat(),
        ),
        (
            "metadata v12 5-byte body",
            [
                &15i32.to_be_bytes()[..],
                &[0, 3, 0, 12, 0, 0, 0, 9, 0xff, 0xff, 0],
                &[0xff, 0xff, 0xff, 0xff, 0x0f],
            ]
            .concat(),
        ),
        (
            "huge array count",
            [
                &20i32.to_be_bytes()[..],
                &[0, 3, 0, 4, 0, 0, 0, 9, 0xff, 0xff],
                &0x7fff_ffffi32.to_be_bytes(),
                &[0, 0, 0, 0, 0, 0],
            ]
            .concat(),
        ),
        (
            "negative string length",
            [
                &16i32.to_be_bytes()[..],
                &[0, 3, 0, 4, 0, 0, 0, 9, 0xff, 0xff, 0, 0, 0, 1, 0x80, 0x00],
            ]
            .concat(),
        ),
    ];
    for (what, bytes) in cases {
        let mut c = RawConn::connect(broker.addr);
        c.stream.write_all(&bytes).expect("write");
        assert!(c.is_closed_by_peer(), "{what}: connection should be closed");
        assert_serving(&broker);
    }
    // Random bytes, seeded.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..50 {
        let mut c = RawConn::connect(broker.addr);
        let mut bytes = Vec::new();
        for _ in 0..64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            bytes.push(x as u8);
        }
        let _ = c.stream.write_all(&bytes);
        drop(c);
    }
    assert_serving(&broker);
}

/// Proves a truncated frame (the client goes away mid-request) does not disturb the broker.
#[test]
fn truncated_frame_then_disconnect() {
    let broker = Broker::start(&[]);
    let mut c = RawConn::connect(broker.addr);
    c.stream.write_all(&100i32.to_be_bytes()).expect("write");
    c.stream.write_all(&[0, 18, 0, 3]).expect("write");
    drop(c);
    assert_serving(&broker);
}

/// Proves KIP-511: ApiVersions of an unknown version gets error 35, a v0 body, and our ranges.
#[test]
fn unknown_api_versions_version_gets_kip511_answer() {
    let broker = Broker::start(&[]);
    let mut c = RawConn::connect(broker.addr);
    // ApiVersions v99, header v2 (client id, empty tagged fields), empty body.
    c.send_frame(&[0, 18, 0, 99, 0, 0, 0, 42, 0, 1, b'x', 0]);
    let frame = c.recv_frame().expect("answer");
    assert_eq!(&frame[..4], &42i32.to_be_bytes(), "correlation id");
    assert_eq!(&frame[4..6], &35i16.to_be_bytes(), "UNSUPPORTED_VERSION");
    match sluice_net::Response::decode(
        ApiKey::ApiVersions,
        0,
        bytes::Bytes::from(frame[4..].to_vec()),
    ) {
        Ok(Response::ApiVersions(r)) => {
            let av = r
                .api_keys
                .iter()
                .find(|k| k.api_key == 18)
                .expect("ApiVersions listed");
            assert_eq!(av.min_version, 0);
            assert!(av.max_version >= 3);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_serving(&broker);
}

/// Proves a batch with a bad CRC is refused with CORRUPT_MESSAGE and nothing is stored, while
/// good batches before and after are stored at contiguous offsets.
#[test]
fn bad_crc_is_refused_and_log_stays_intact() {
    let broker = Broker::start(&["--cores", "2"]);
    let mut c = RawConn::connect(broker.addr);
    create_topic(&mut c, "crc");
    let good = batch(
        &BatchSpec::default(),
        &[(Some(b"k"), Some(b"v1")), (None, Some(b"v2"))],
    );
    assert_eq!(produce(&mut c, "crc", good.clone()), (0, 0));
    let mut bad = good.to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0x55;
    let (code, _) = produce(&mut c, "crc", bytes::Bytes::from(bad));
    assert_eq!(code, 2, "CORRUPT_MESSAGE");
    assert_eq!(
        produce(&mut c, "crc", good),
        (0, 2),
        "offsets stay contiguous"
    );
}

/// Proves bytes after a request body are ignored, as Kafka ignores them: this is the exact
/// Metadata v13 frame librdkafka 2.16's admin client sends (3 bytes after the message), which
/// closed the connection ("broker transport failure") until sluice matched Kafka.
#[test]
fn bytes_after_a_request_body_are_ignored_like_kafka() {
    let broker = Broker::start(&[]);
    let mut c = RawConn::connect(broker.addr);
    let frame: Vec<u8> = [
        &[0x00, 0x03, 0x00, 0x0d, 0x00, 0x00, 0x00, 0x04, 0x00, 0x07][..],
        b"rdkafka",
        &[0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00],
    ]
    .concat();
    c.send_frame(&frame);
    let answer = c.recv_frame().expect("answered, not closed");
    match sluice_tests::decode_response(ApiKey::Metadata, 13, 4, answer) {
        Response::Metadata(r) => assert_eq!(r.brokers.len(), 1),
        other => panic!("unexpected {other:?}"),
    }
}

/// A Fetch v4+ body for partition 0 of `topic` from `offset`, waiting up to `max_wait_ms`.
fn fetch_request(topic: &str, offset: i64, max_wait_ms: i32) -> Request {
    use sluice_net::messages::FetchRequest;
    use sluice_net::messages::fetch_request::{FetchPartition, FetchTopic};
    Request::Fetch(FetchRequest {
        replica_id: BrokerId(-1),
        max_wait_ms,
        min_bytes: 1,
        max_bytes: 1 << 20,
        session_epoch: -1,
        topics: vec![FetchTopic {
            topic: topic.into(),
            partitions: vec![FetchPartition {
                partition: 0,
                current_leader_epoch: -1,
                fetch_offset: offset,
                last_fetched_epoch: -1,
                log_start_offset: -1,
                partition_max_bytes: 1 << 20,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    })
}

/// CPU seconds (user + system) the process has used, from /proc/PID/stat.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("proc stat");
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks / hz
}

/// Proves a Fetch long poll at the log end waits without burning CPU (it once re-read its
/// partitions in a loop until max_wait_ms, costing a whole core per idle consumer).
#[test]
fn idle_long_poll_waits_without_spinning() {
    let broker = Broker::start(&["--cores", "2"]);
    let mut c = RawConn::connect(broker.addr);
    create_topic(&mut c, "idle-poll");
    let (err, _) = produce(
        &mut c,
        "idle-poll",
        batch(&BatchSpec::default(), &[(None, Some(b"x"))]),
    );
    assert_eq!(err, 0);
    let fetch = fetch_request("idle-poll", 1, 3000);
    let before = cpu_seconds(broker.pid());
    let started = std::time::Instant::now();
    match c.call(ApiKey::Fetch, 12, 9, &fetch) {
        Response::Fetch(r) => {
            let p = &r.responses[0].partitions[0];
            assert_eq!((p.error_code, p.high_watermark), (0, 1));
            assert!(p.records.as_ref().is_none_or(|b| b.is_empty()));
        }
        other => panic!("unexpected {other:?}"),
    }
    let waited = started.elapsed();
    let used = cpu_seconds(broker.pid()) - before;
    assert!(
        waited >= std::time::Duration::from_millis(2900),
        "answered after {waited:?}"
    );
    assert!(
        used < 0.5,
        "the broker used {used:.2} CPU-s during a 3 s idle long poll"
    );
}

/// Proves a `message.timestamp.type=LogAppendTime` topic stamps each batch with the append
/// time: the produce answer carries it, and the stored batch has the LogAppendTime attribute,
/// `maxTimestamp` = that time, and a valid CRC; a CreateTime topic keeps the producer's time.
#[test]
fn log_append_time_topics_stamp_batches() {
    use sluice_net::messages::CreateTopicsRequest;
    use sluice_net::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
    use sluice_net::record_batch::{RecordBatch, TimestampType};
    let broker = Broker::start(&[]);
    let mut c = RawConn::connect(broker.addr);
    let create = Request::CreateTopics(CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: "lat".into(),
            num_partitions: 1,
            replication_factor: 1,
            configs: vec![CreatableTopicConfig {
                name: "message.timestamp.type".into(),
                value: Some("LogAppendTime".into()),
                ..Default::default()
            }],
            ..Default::default()
        }],
        timeout_ms: 10_000,
        ..Default::default()
    });
    match c.call(ApiKey::CreateTopics, 7, 1, &create) {
        Response::CreateTopics(r) => assert_eq!(r.topics[0].error_code, 0, "{r:?}"),
        other => panic!("unexpected {other:?}"),
    }
    create_topic(&mut c, "ct");
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as i64
    };
    let sent = |base_timestamp| {
        batch(
            &BatchSpec {
                base_timestamp,
                ..BatchSpec::default()
            },
            &[(None, Some(b"a")), (None, Some(b"b"))],
        )
    };
    let before = now();
    let req = Request::Produce(ProduceRequest {
        acks: -1,
        timeout_ms: 5000,
        topic_data: vec![TopicProduceData {
            name: "lat".into(),
            partition_data: vec![PartitionProduceData {
                index: 0,
                records: Some(sent(1000).into()),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    });
    let stamped = match c.call(ApiKey::Produce, 9, 2, &req) {
        Response::Produce(r) => {
            let p = &r.responses[0].partition_responses[0];
            assert_eq!(p.error_code, 0);
            p.log_append_time_ms
        }
        other => panic!("unexpected {other:?}"),
    };
    assert!((before..=now()).contains(&stamped), "append time {stamped}");
    assert_eq!(produce(&mut c, "ct", sent(1000)).0, 0);
    let fetch = |c: &mut RawConn, topic: &str| {
        let req = fetch_request(topic, 0, 0);
        match c.call(ApiKey::Fetch, 12, 3, &req) {
            Response::Fetch(r) => RecordBatch::new(
                r.responses[0].partitions[0]
                    .records
                    .clone()
                    .expect("records")
                    .into_bytes(),
            )
            .expect("one batch"),
            other => panic!("unexpected {other:?}"),
        }
    };
    let b = fetch(&mut c, "lat");
    b.validate().expect("CRC valid after stamping");
    assert_eq!(b.timestamp_type(), TimestampType::LogAppendTime);
    assert_eq!(b.max_timestamp(), stamped);
    let b = fetch(&mut c, "ct");
    assert_eq!(b.timestamp_type(), TimestampType::CreateTime);
    assert_eq!(b.max_timestamp(), 1001);
}

/// A partition whose files cannot be opened (here: a plain file sits where its directory goes)
/// answers KAFKA_STORAGE_ERROR with the storage error, instead of a retriable "not hosted here"
/// that clients retry until their timeout (issue 18); the broker's other partitions are served.
#[test]
fn unopenable_partition_answers_storage_error() {
    let broker = Broker::start(&[]);
    std::fs::write(broker.data_dir.join("blocked-0"), b"not a directory").expect("blocker");
    let mut c = RawConn::connect(broker.addr);
    create_topic(&mut c, "blocked");
    let (code, _) = produce(
        &mut c,
        "blocked",
        batch(&BatchSpec::default(), &[(None, Some(b"x"))]),
    );
    assert_eq!(
        code, 56,
        "KAFKA_STORAGE_ERROR for the partition that did not open"
    );
    create_topic(&mut c, "fine");
    let (code, offset) = produce(
        &mut c,
        "fine",
        batch(&BatchSpec::default(), &[(None, Some(b"x"))]),
    );
    assert_eq!((code, offset), (0, 0), "other partitions are served");
    assert_serving(&broker);
}
