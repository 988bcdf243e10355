//! Golden bytes for the requests and responses real clients exchange, written by hand from the
//! Kafka protocol guide (field by field, with comments), plus the hostile inputs the codec must
//! refuse with a typed error. Each `check_*` helper decodes the bytes, compares them with the
//! expected value, and re-encodes to the exact same bytes.

use bytes::Bytes;
use sluice_net::messages::fetch_request::{FetchPartition, FetchTopic};
use sluice_net::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use sluice_net::messages::metadata_request::MetadataRequestTopic;
use sluice_net::messages::produce_request::{PartitionProduceData, TopicProduceData};
use sluice_net::messages::*;
use sluice_net::*;

/// Hex bytes separated by spaces; a token in double quotes is taken as ASCII.
fn hex(s: &str) -> Bytes {
    let mut out = Vec::new();
    for tok in s.split_whitespace() {
        if let Some(ascii) = tok.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
            out.extend_from_slice(ascii.as_bytes());
        } else {
            out.push(u8::from_str_radix(tok, 16).expect("hex byte"));
        }
    }
    out.into()
}

fn header(key: ApiKey, version: i16, correlation_id: i32) -> RequestHeader {
    RequestHeader {
        request_api_key: key.key(),
        request_api_version: version,
        correlation_id,
        client_id: Some("rdkafka".into()),
        ..RequestHeader::default()
    }
}

/// Decodes a request frame body, compares with `expected`, and re-encodes it byte for byte.
fn check_request(bytes: &str, expected_header: RequestHeader, expected: Request) {
    let body = hex(bytes);
    let (h, req) = decode_request(body.clone()).expect("golden request decodes");
    assert_eq!(h, expected_header);
    assert_eq!(req, expected);
    let key = req.api_key();
    let v = h.request_api_version;
    let mut e = Encoder::new();
    h.encode(&mut e, key.request_header_version(v));
    req.encode(&mut e, v);
    assert_eq!(
        e.finish_contiguous(),
        body,
        "{key:?} v{v} re-encodes to the golden bytes"
    );
}

/// Encodes a response frame, compares with the golden bytes (after the size prefix), checks
/// the size prefix and the chunk count, then decodes the body back.
fn check_response(bytes: &str, key: ApiKey, version: i16, resp: Response, chunks: usize) {
    let golden = hex(bytes);
    let out = response_frame(key, version, 5, |e| resp.encode(e, version));
    assert_eq!(
        out.len(),
        chunks,
        "record batches travel as their own chunks"
    );
    let frame: Vec<u8> = out.iter().flat_map(|c| c.iter().copied()).collect();
    assert_eq!(frame[..4], ((frame.len() - 4) as u32).to_be_bytes());
    assert_eq!(Bytes::copy_from_slice(&frame[4..]), golden);
    let mut d = Decoder::new(golden);
    let h = ResponseHeader::decode(&mut d, key.response_header_version(version)).unwrap();
    assert_eq!(h.correlation_id, 5);
    let back = Response::decode(key, version, d.into_rest()).unwrap();
    assert_eq!(back, resp);
}

/// librdkafka 2.x opens every connection with ApiVersions v3 and request header v2, whose
/// client id keeps the old int16 length even though the header is flexible.
#[test]
fn api_versions_v3_request_from_librdkafka() {
    check_request(
        r#"00 12  00 03  00 00 00 01  00 07 "rdkafka"  00
           0b "librdkafka"  06 "2.3.0"  00"#,
        header(ApiKey::ApiVersions, 3, 1),
        Request::ApiVersions(ApiVersionsRequest {
            client_software_name: "librdkafka".into(),
            client_software_version: "2.3.0".into(),
            ..Default::default()
        }),
    );
}

/// Metadata v4 (classic encoding) and v12 (compact, topic ids, tagged fields).
#[test]
fn metadata_requests() {
    check_request(
        r#"00 03  00 04  00 00 00 07  00 07 "rdkafka"
           00 00 00 01  00 05 "topic"  01"#,
        header(ApiKey::Metadata, 4, 7),
        Request::Metadata(MetadataRequest {
            topics: Some(vec![MetadataRequestTopic {
                name: Some("topic".into()),
                ..Default::default()
            }]),
            allow_auto_topic_creation: true,
            ..Default::default()
        }),
    );
    check_request(
        r#"00 03  00 0c  00 00 00 07  00 07 "rdkafka"  00
           02  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  06 "topic"  00
           01  00  00"#,
        header(ApiKey::Metadata, 12, 7),
        Request::Metadata(MetadataRequest {
            topics: Some(vec![MetadataRequestTopic {
                name: Some("topic".into()),
                ..Default::default()
            }]),
            allow_auto_topic_creation: true,
            ..Default::default()
        }),
    );
    // A null topic list (all topics) at v12.
    check_request(
        r#"00 03  00 0c  00 00 00 08  00 07 "rdkafka"  00  00  01  00  00"#,
        header(ApiKey::Metadata, 12, 8),
        Request::Metadata(MetadataRequest {
            topics: None,
            ..Default::default()
        }),
    );
}

fn produce(acks: i16) -> ProduceRequest {
    ProduceRequest {
        transactional_id: None,
        acks,
        timeout_ms: 30_000,
        topic_data: vec![TopicProduceData {
            name: "topic".into(),
            partition_data: vec![PartitionProduceData {
                index: 0,
                records: Some(Bytes::from_static(&[0xaa, 0xbb, 0xcc]).into()),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Produce v3 (the oldest Kafka 4 accepts) and v9 (the first flexible version).
#[test]
fn produce_requests() {
    check_request(
        r#"00 00  00 03  00 00 00 02  00 07 "rdkafka"
           ff ff  ff ff  00 00 75 30
           00 00 00 01  00 05 "topic"
             00 00 00 01  00 00 00 00  00 00 00 03 aa bb cc"#,
        header(ApiKey::Produce, 3, 2),
        Request::Produce(produce(-1)),
    );
    check_request(
        r#"00 00  00 09  00 00 00 03  00 07 "rdkafka"  00
           00  00 01  00 00 75 30
           02  06 "topic"
             02  00 00 00 00  04 aa bb cc  00
           00
           00"#,
        header(ApiKey::Produce, 9, 3),
        Request::Produce(produce(1)),
    );
}

/// The records of a decoded Produce request are a slice of the frame, not a copy.
#[test]
fn produce_records_are_zero_copy() {
    let body = hex(
        r#"00 00  00 03  00 00 00 02  00 07 "rdkafka"  ff ff  ff ff  00 00 75 30
           00 00 00 01  00 05 "topic"  00 00 00 01  00 00 00 00  00 00 00 03 aa bb cc"#,
    );
    let range = body.as_ptr_range();
    let (_, req) = decode_request(body.clone()).unwrap();
    let Request::Produce(p) = req else {
        panic!("not a produce request")
    };
    let records = p.topic_data[0].partition_data[0].records.clone().unwrap();
    assert_eq!(records.chunks().count(), 1);
    assert!(
        range.contains(&records.into_bytes().as_ptr()),
        "records point into the frame"
    );
}

/// Entity fields are typed: a decoded topic name is a `TopicName` viewing the frame (no copy),
/// and a `BrokerId` is the same 4 bytes on the wire as the `i32` it wraps.
#[test]
fn entity_types_view_the_frame_and_round_trip() {
    let in_frame = |body: &Bytes, name: &TopicName| {
        assert_eq!(name, "topic");
        assert!(
            body.as_ptr_range().contains(&name.as_ptr()),
            "the topic name points into the frame"
        );
    };
    let body = hex(r#"00 03  00 0c  00 00 00 07  00 07 "rdkafka"  00
           02  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  06 "topic"  00
           01  00  00"#);
    let Ok((_, Request::Metadata(m))) = decode_request(body.clone()) else {
        panic!("not a metadata request")
    };
    let topics = m.topics.expect("a topic list");
    let name: &TopicName = topics[0].name.as_ref().expect("a topic name");
    in_frame(&body, name);
    let body = hex(
        r#"00 00  00 03  00 00 00 02  00 07 "rdkafka"  ff ff  ff ff  00 00 75 30
           00 00 00 01  00 05 "topic"  00 00 00 01  00 00 00 00  00 00 00 03 aa bb cc"#,
    );
    let Ok((_, Request::Produce(p))) = decode_request(body.clone()) else {
        panic!("not a produce request")
    };
    in_frame(&body, &p.topic_data[0].name);

    use sluice_net::messages::metadata_response::MetadataResponseBroker;
    let resp = MetadataResponse {
        brokers: vec![MetadataResponseBroker {
            node_id: BrokerId(7),
            host: "h".into(),
            port: 9092,
            ..Default::default()
        }],
        controller_id: 7.into(),
        ..Default::default()
    };
    let mut e = Encoder::new();
    resp.encode(&mut e, 12);
    let bytes = e.finish_contiguous();
    // throttle_time_ms, then the compact brokers array (one element) and its node id.
    assert_eq!(&bytes[4..9], &[0x02, 0, 0, 0, 7]);
    let back = MetadataResponse::decode(&mut Decoder::new(bytes), 12).unwrap();
    assert_eq!(back, resp);
    assert_eq!(back.brokers[0].node_id, 7);
    assert_eq!(back.controller_id.get(), 7);
}

fn fetch_request(version: i16) -> FetchRequest {
    let flexible = version >= 12;
    FetchRequest {
        replica_id: BrokerId(-1),
        max_wait_ms: 500,
        min_bytes: 1,
        max_bytes: if flexible { 52_428_800 } else { 1_048_576 },
        isolation_level: if flexible { 1 } else { 0 },
        topics: vec![FetchTopic {
            topic: "topic".into(),
            partitions: vec![FetchPartition {
                partition: 0,
                fetch_offset: 42,
                partition_max_bytes: 1_048_576,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Fetch v4 (the oldest Kafka 4 accepts) and v12 (the first flexible version).
#[test]
fn fetch_requests() {
    check_request(
        r#"00 01  00 04  00 00 00 04  00 07 "rdkafka"
           ff ff ff ff  00 00 01 f4  00 00 00 01  00 10 00 00  00
           00 00 00 01  00 05 "topic"
             00 00 00 01  00 00 00 00  00 00 00 00 00 00 00 2a  00 10 00 00"#,
        header(ApiKey::Fetch, 4, 4),
        Request::Fetch(fetch_request(4)),
    );
    check_request(
        r#"00 01  00 0c  00 00 00 05  00 07 "rdkafka"  00
           ff ff ff ff  00 00 01 f4  00 00 00 01  03 20 00 00  01
           00 00 00 00  ff ff ff ff
           02  06 "topic"
             02  00 00 00 00  ff ff ff ff  00 00 00 00 00 00 00 2a  ff ff ff ff
                 ff ff ff ff ff ff ff ff  00 10 00 00  00
             00
           01  01  00"#,
        header(ApiKey::Fetch, 12, 5),
        Request::Fetch(fetch_request(12)),
    );
}

fn fetch_response(version: i16) -> FetchResponse {
    FetchResponse {
        responses: vec![FetchableTopicResponse {
            topic: "topic".into(),
            partitions: vec![PartitionData {
                high_watermark: 100,
                last_stable_offset: 100,
                log_start_offset: if version >= 5 { 0 } else { -1 },
                aborted_transactions: None,
                records: Some(Bytes::from_static(&[0xaa, 0xbb, 0xcc]).into()),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Fetch responses v4 and v12: the record batch is a chunk of its own in the output.
#[test]
fn fetch_responses() {
    check_response(
        r#"00 00 00 05
           00 00 00 00
           00 00 00 01  00 05 "topic"
             00 00 00 01  00 00 00 00  00 00  00 00 00 00 00 00 00 64  00 00 00 00 00 00 00 64
                 ff ff ff ff  00 00 00 03 aa bb cc"#,
        ApiKey::Fetch,
        4,
        Response::Fetch(fetch_response(4)),
        2,
    );
    check_response(
        r#"00 00 00 05  00
           00 00 00 00  00 00  00 00 00 00
           02  06 "topic"
             02  00 00 00 00  00 00  00 00 00 00 00 00 00 64  00 00 00 00 00 00 00 64
                 00 00 00 00 00 00 00 00  00  ff ff ff ff  04 aa bb cc  00
             00
           00"#,
        ApiKey::Fetch,
        12,
        Response::Fetch(fetch_response(12)),
        3,
    );
}

/// Several batches of one partition (read from different buffers) leave as their own chunks,
/// the very buffers given, with one length in front of them all.
#[test]
fn fetch_response_with_several_batches_copies_none() {
    let batches = [
        Bytes::from(vec![0x11; 300]),
        Bytes::from(vec![0x22; 5]),
        Bytes::from(vec![0x33; 70]),
    ];
    let mut resp = fetch_response(12);
    resp.responses[0].partitions[0].records = Some(batches.iter().cloned().collect());
    let out = response_frame(ApiKey::Fetch, 12, 5, |e| resp.encode(e, 12));
    assert_eq!(out.len(), 5, "head, three batches, tail");
    for (chunk, batch) in out[1..4].iter().zip(&batches) {
        assert_eq!(chunk.as_ptr(), batch.as_ptr(), "a batch is not copied");
        assert_eq!(chunk.len(), batch.len());
    }
    let frame: Vec<u8> = out.iter().flat_map(|c| c.iter().copied()).collect();
    let mut d = Decoder::new(Bytes::copy_from_slice(&frame[4..]));
    ResponseHeader::decode(&mut d, ApiKey::Fetch.response_header_version(12)).unwrap();
    let Response::Fetch(back) = Response::decode(ApiKey::Fetch, 12, d.into_rest()).unwrap() else {
        panic!("not a fetch response")
    };
    let records = back.responses[0].partitions[0].records.clone().unwrap();
    assert_eq!(records.len(), 375);
    assert_eq!(back, resp, "equal contents, however they are chunked");
    let flat = records.into_bytes();
    assert_eq!(&flat[..300], &[0x11; 300][..]);
    assert_eq!(&flat[300..305], &[0x22; 5][..]);
}

/// ApiVersions responses use header v0 at every version, so a client that sent a version the
/// broker lacks can still read the answer.
#[test]
fn api_versions_response_header_is_always_v0() {
    for v in ApiKey::ApiVersions.valid_versions() {
        assert_eq!(ApiKey::ApiVersions.response_header_version(v), 0);
    }
    assert_eq!(ApiKey::ApiVersions.request_header_version(3), 2);
    assert_eq!(ApiKey::ApiVersions.request_header_version(2), 1);
    assert_eq!(ApiKey::Metadata.response_header_version(9), 1);
    assert_eq!(ApiKey::Metadata.response_header_version(8), 0);
}

fn decode_error(key: ApiKey, version: i16, body: &str) -> DecodeError {
    Request::decode(key, version, hex(body)).expect_err("hostile body must not decode")
}

/// The 5-byte Metadata v12 body that made the kafka-protocol crate allocate 309 GB: a compact
/// array count of 2^32 - 2 with nothing behind it.
#[test]
fn metadata_v12_five_bytes() {
    let e = decode_error(ApiKey::Metadata, 12, "ff ff ff ff 0f");
    assert_eq!(e.api_key, 3);
    assert_eq!(e.version, 12);
    assert_eq!(e.field, "MetadataRequest.topics");
    assert_eq!(
        e.kind,
        DecodeErrorKind::LengthTooLarge {
            length: 0xffff_fffe,
            remaining: 0
        }
    );
}

/// A huge classic array count, a negative string length, null where none is allowed, a
/// varint that never ends, bad UTF-8 and trailing bytes each get their own typed error.
#[test]
fn hostile_bodies() {
    let e = decode_error(ApiKey::Metadata, 4, "7f ff ff ff 01");
    assert_eq!(
        e.kind,
        DecodeErrorKind::LengthTooLarge {
            length: 0x7fff_ffff,
            remaining: 1
        }
    );
    let e = decode_error(ApiKey::Metadata, 4, "00 00 00 01 ff fe 01");
    assert_eq!(e.kind, DecodeErrorKind::NegativeLength(-2));
    assert_eq!(e.field, "MetadataRequestTopic.name");
    let e = decode_error(ApiKey::Metadata, 4, "00 00 00 01 ff ff 01");
    assert_eq!(e.kind, DecodeErrorKind::UnexpectedNull);
    let e = decode_error(ApiKey::Metadata, 4, "00 00 00 01 00 05 74 6f 70 69");
    assert_eq!(
        e.kind,
        DecodeErrorKind::UnexpectedEof {
            needed: 5,
            remaining: 4
        }
    );
    let e = decode_error(ApiKey::Metadata, 4, "00 00 00 01 00 02 c3 28 01");
    assert_eq!(e.kind, DecodeErrorKind::InvalidUtf8);
    let e = decode_error(ApiKey::Metadata, 12, "ff ff ff ff ff ff");
    assert_eq!(e.kind, DecodeErrorKind::VarintTooLong);
    let e = decode_error(ApiKey::Metadata, 4, "00 00 00 00 01 99");
    assert_eq!(e.kind, DecodeErrorKind::TrailingBytes(1));
    let e = decode_error(ApiKey::Metadata, 14, "00");
    assert_eq!(e.kind, DecodeErrorKind::UnsupportedVersion);
    // A tagged-field count larger than the bytes left.
    let e = decode_error(ApiKey::Metadata, 12, "01 01 00 ff ff ff ff 07");
    assert_eq!(e.field, "MetadataRequest._tagged_fields");
    assert!(
        matches!(e.kind, DecodeErrorKind::LengthTooLarge { .. }),
        "{e}"
    );
}

/// Frames under 4 bytes wait for more; bodies under the 8-byte header prefix are refused.
#[test]
fn short_frames() {
    assert_eq!(read_frame_len(&[0, 0, 0], 1 << 20), Ok(None));
    assert_eq!(read_frame_len(&[0, 0, 0, 3], 1 << 20), Ok(Some(3)));
    assert_eq!(
        decode_request(hex("00 12 00")),
        Err(RequestError::Frame(FrameError::TooShort {
            size: 3,
            needed: 8
        }))
    );
    assert_eq!(
        decode_request(Bytes::new()).unwrap_err().correlation_id(),
        None
    );
}

/// An unknown API key still yields the correlation id, so the broker can log and close.
#[test]
fn unknown_api_key() {
    let err = decode_request(hex("03 e7 00 00 00 00 00 2a 00 00")).unwrap_err();
    assert_eq!(
        err,
        RequestError::UnknownApiKey(RequestPrefix {
            api_key: 999,
            api_version: 0,
            correlation_id: 42
        })
    );
    assert_eq!(err.correlation_id(), Some(42));
}

/// KIP-511: ApiVersions of a version the broker does not know gets the v0 body with error 35
/// and the broker's ranges, under response header v0.
#[test]
fn unknown_api_versions_version_gets_kip511_answer() {
    let err = decode_request(hex(r#"00 12 00 63 00 00 00 09 00 07 "rdkafka" 00"#)).unwrap_err();
    let RequestError::UnsupportedVersion(prefix) = err else {
        panic!("{err:?}")
    };
    assert_eq!(prefix.api_key, 18);
    let advertised = [AdvertisedVersions {
        api_key: ApiKey::ApiVersions,
        min_version: 0,
        max_version: 4,
    }];
    let answer = api_versions_unsupported_answer(prefix.correlation_id, &advertised);
    let frame: Vec<u8> = answer.iter().flat_map(|c| c.iter().copied()).collect();
    assert_eq!(
        Bytes::from(frame),
        hex("00 00 00 10  00 00 00 09  00 23 00 00 00 01 00 12 00 00 00 04")
    );
}

/// Unknown tagged fields survive a decode and re-encode unchanged.
#[test]
fn unknown_tagged_fields_are_kept() {
    // Metadata v12, null topics, flags, then one tagged field: tag 99, 2 bytes.
    let body = hex("00 01 00 01 63 02 be ef");
    let req = Request::decode(ApiKey::Metadata, 12, body.clone()).unwrap();
    let Request::Metadata(m) = &req else { panic!() };
    assert_eq!(
        m.unknown_tagged_fields,
        vec![(99, Bytes::from_static(&[0xbe, 0xef]))]
    );
    let mut e = Encoder::new();
    req.encode(&mut e, 12);
    assert_eq!(e.finish_contiguous(), body);
}
