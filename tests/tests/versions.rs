//! Kafka 4.4's newest versions of the APIs sluice serves, over raw frames (issue 18 item 4):
//! Produce v13 and OffsetCommit/OffsetFetch v10 address topics by id, ListOffsets v9-v11 know
//! the tiered-storage timestamps, and each answer is the one Kafka 4.4 gives (observed on the
//! reference broker; `tests/diff` compares the client-visible side).

use sluice_net::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use sluice_net::messages::metadata_request::MetadataRequestTopic;
use sluice_net::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use sluice_net::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use sluice_net::messages::produce_request::{PartitionProduceData, TopicProduceData};
use sluice_net::messages::{
    ListOffsetsRequest, MetadataRequest, OffsetCommitRequest, OffsetFetchRequest, ProduceRequest,
};
use sluice_net::record_batch::build::{BatchSpec, batch};
use sluice_net::{ApiKey, Request, Response, Uuid};
use sluice_tests::{Broker, RawConn};

const UNKNOWN_TOPIC_ID: i16 = 100;
const UNSUPPORTED_VERSION: i16 = 35;

/// Creates `topic` (auto-create through Metadata) and returns its topic id.
fn topic_id(conn: &mut RawConn, topic: &str) -> Uuid {
    let req = Request::Metadata(MetadataRequest {
        topics: Some(vec![MetadataRequestTopic {
            name: Some(topic.into()),
            ..Default::default()
        }]),
        allow_auto_topic_creation: true,
        ..Default::default()
    });
    match conn.call(ApiKey::Metadata, 12, 1, &req) {
        Response::Metadata(r) => {
            assert_eq!(r.topics[0].error_code, 0);
            r.topics[0].topic_id
        }
        other => panic!("unexpected {other:?}"),
    }
}

fn produce_v13(conn: &mut RawConn, id: Uuid) -> (Uuid, i16, i64) {
    let req = Request::Produce(ProduceRequest {
        acks: -1,
        timeout_ms: 5000,
        topic_data: vec![TopicProduceData {
            topic_id: id,
            partition_data: vec![PartitionProduceData {
                index: 0,
                records: Some(
                    batch(
                        &BatchSpec {
                            base_timestamp: 1_000,
                            ..BatchSpec::default()
                        },
                        &[(None, Some(b"a")), (None, Some(b"b"))],
                    )
                    .into(),
                ),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    });
    match conn.call(ApiKey::Produce, 13, 2, &req) {
        Response::Produce(r) => {
            let t = &r.responses[0];
            let p = &t.partition_responses[0];
            (t.topic_id, p.error_code, p.base_offset)
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn produce_v13_addresses_topics_by_id() {
    let broker = Broker::start(&[]);
    let mut c = RawConn::connect(broker.addr);
    let id = topic_id(&mut c, "by-id");
    assert_eq!(produce_v13(&mut c, id), (id, 0, 0), "echoes the id");
    assert_eq!(produce_v13(&mut c, id), (id, 0, 2));
    let stranger = Uuid([7; 16]);
    assert_eq!(
        produce_v13(&mut c, stranger),
        (stranger, UNKNOWN_TOPIC_ID, -1)
    );
    assert_eq!(
        produce_v13(&mut c, Uuid::ZERO),
        (Uuid::ZERO, UNKNOWN_TOPIC_ID, -1)
    );
}

#[test]
fn offset_commit_and_fetch_v10_address_topics_by_id() {
    let broker = Broker::start(&["--set", "group_initial_rebalance_delay_ms=0"]);
    let mut c = RawConn::connect(broker.addr);
    let id = topic_id(&mut c, "committed");
    let stranger = Uuid([9; 16]);
    let commit = Request::OffsetCommit(OffsetCommitRequest {
        group_id: "g10".into(),
        generation_id_or_member_epoch: -1,
        topics: vec![
            OffsetCommitRequestTopic {
                topic_id: id,
                partitions: vec![OffsetCommitRequestPartition {
                    partition_index: 0,
                    committed_offset: 42,
                    committed_leader_epoch: -1,
                    committed_metadata: Some("m".into()),
                    ..Default::default()
                }],
                ..Default::default()
            },
            OffsetCommitRequestTopic {
                topic_id: stranger,
                partitions: vec![OffsetCommitRequestPartition {
                    partition_index: 0,
                    committed_offset: 1,
                    ..Default::default()
                }],
                ..Default::default()
            },
        ],
        ..Default::default()
    });
    // The coordinator may still be loading right after the offsets topic is created.
    let mut answer = Vec::new();
    for attempt in 0..100 {
        match c.call(ApiKey::OffsetCommit, 10, 10 + attempt, &commit) {
            Response::OffsetCommit(r) => {
                answer = r
                    .topics
                    .iter()
                    .map(|t| (t.topic_id, t.partitions[0].error_code))
                    .collect();
            }
            other => panic!("unexpected {other:?}"),
        }
        if answer.iter().all(|&(_, e)| e == 0 || e == UNKNOWN_TOPIC_ID) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(answer, vec![(id, 0), (stranger, UNKNOWN_TOPIC_ID)]);

    let fetch = |topics: Option<Vec<Uuid>>| {
        Request::OffsetFetch(OffsetFetchRequest {
            groups: vec![OffsetFetchRequestGroup {
                group_id: "g10".into(),
                topics: topics.map(|ids| {
                    ids.into_iter()
                        .map(|topic_id| OffsetFetchRequestTopics {
                            topic_id,
                            partition_indexes: vec![0],
                            ..Default::default()
                        })
                        .collect()
                }),
                ..Default::default()
            }],
            ..Default::default()
        })
    };
    let fetched = |r: Response| match r {
        Response::OffsetFetch(r) => {
            assert_eq!(r.groups[0].error_code, 0);
            r.groups[0]
                .topics
                .iter()
                .map(|t| {
                    let p = &t.partitions[0];
                    (t.topic_id, p.committed_offset, p.error_code)
                })
                .collect::<Vec<_>>()
        }
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(
        fetched(c.call(
            ApiKey::OffsetFetch,
            10,
            200,
            &fetch(Some(vec![id, stranger]))
        )),
        vec![(id, 42, 0), (stranger, -1, UNKNOWN_TOPIC_ID)]
    );
    assert_eq!(
        fetched(c.call(ApiKey::OffsetFetch, 10, 201, &fetch(None))),
        vec![(id, 42, 0)],
        "all topics, each by its id"
    );
}

#[test]
fn list_offsets_special_timestamps_by_version() {
    let broker = Broker::start(&[]);
    let mut c = RawConn::connect(broker.addr);
    let id = topic_id(&mut c, "lo");
    produce_v13(&mut c, id);
    let ask = |c: &mut RawConn, version: i16, timestamp: i64| {
        let req = Request::ListOffsets(ListOffsetsRequest {
            replica_id: (-1).into(),
            timeout_ms: 1000,
            topics: vec![ListOffsetsTopic {
                name: "lo".into(),
                partitions: vec![ListOffsetsPartition {
                    partition_index: 0,
                    timestamp,
                    current_leader_epoch: -1,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        });
        match c.call(ApiKey::ListOffsets, version, 300, &req) {
            Response::ListOffsets(r) => {
                let p = &r.topics[0].partitions[0];
                (p.error_code, p.offset, p.timestamp, p.leader_epoch)
            }
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(ask(&mut c, 11, -1), (0, 2, -1, 0), "latest");
    assert_eq!(ask(&mut c, 11, -2), (0, 0, -1, 0), "earliest");
    assert_eq!(
        ask(&mut c, 11, -4),
        (0, 0, -1, 0),
        "earliest local = earliest"
    );
    assert_eq!(ask(&mut c, 11, -5), (0, -1, -1, -1), "latest tiered: none");
    assert_eq!(
        ask(&mut c, 11, -6),
        (0, -1, -1, -1),
        "earliest pending upload"
    );
    assert_eq!(ask(&mut c, 10, -6).0, UNSUPPORTED_VERSION, "-6 needs v11");
    assert_eq!(ask(&mut c, 8, -5).0, UNSUPPORTED_VERSION, "-5 needs v9");
    assert_eq!(ask(&mut c, 7, -4).0, UNSUPPORTED_VERSION, "-4 needs v8");
    assert_eq!(ask(&mut c, 11, -7), (UNSUPPORTED_VERSION, -1, -1, -1));
    assert_eq!(ask(&mut c, 9, -3).1, 1, "max timestamp: the second record");
}
