//! Round trips: for every API, every schema version, requests and responses (and every
//! metadata-log record in its frame),
//! `decode(encode(x)) == x` on seeded random values, and re-encoding gives the same bytes.
//! The seeds come from proptest, so a failure prints the seed that reproduces it.

use bytes::Bytes;
use proptest::prelude::*;
use sluice_net::messages::{MetadataRecord, MetadataRecordType};
use sluice_net::metadata_record::VersionedRecord;
use sluice_net::{ApiKey, Encoder, Request, Response, Rng};

fn encode_request(m: &Request, version: i16) -> Bytes {
    let mut e = Encoder::new();
    m.encode(&mut e, version);
    e.finish_contiguous()
}

fn encode_response(m: &Response, version: i16) -> Bytes {
    let mut e = Encoder::new();
    m.encode(&mut e, version);
    e.finish_contiguous()
}

/// Checks one seed over every API and version; panics with the API and version on mismatch.
fn check_seed(seed: u64) {
    let mut r = Rng::new(seed);
    for &key in ApiKey::ALL {
        for version in key.valid_versions() {
            let req = Request::random(key, version, &mut r);
            let bytes = encode_request(&req, version);
            let back = Request::decode(key, version, bytes.clone())
                .unwrap_or_else(|e| panic!("{key:?} v{version} request: {e}\n{req:?}"));
            assert_eq!(back, req, "{key:?} v{version} request");
            assert_eq!(
                encode_request(&back, version),
                bytes,
                "{key:?} v{version} request bytes"
            );

            let resp = Response::random(key, version, &mut r);
            let bytes = encode_response(&resp, version);
            let back = Response::decode(key, version, bytes.clone())
                .unwrap_or_else(|e| panic!("{key:?} v{version} response: {e}\n{resp:?}"));
            assert_eq!(back, resp, "{key:?} v{version} response");
            assert_eq!(
                encode_response(&back, version),
                bytes,
                "{key:?} v{version} response bytes"
            );
        }
    }
}

/// A framed encoding is the 4-byte size then exactly the unframed bytes, whatever the chunking
/// (every non-empty `records` value becomes a chunk of its own, shared, not copied).
fn check_framed(seed: u64) {
    let mut r = Rng::new(seed);
    for &key in ApiKey::ALL {
        for version in key.valid_versions() {
            let resp = Response::random(key, version, &mut r);
            let plain = encode_response(&resp, version);
            let mut e = Encoder::framed();
            resp.encode(&mut e, version);
            assert_eq!(e.encoded_len(), plain.len() + 4);
            let chunks = e.finish();
            assert!(
                chunks.iter().skip(1).all(|c| !c.is_empty()),
                "no empty chunks"
            );
            let joined: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
            assert_eq!(joined[..4], (plain.len() as u32).to_be_bytes());
            assert_eq!(joined[4..], plain[..], "{key:?} v{version}");
        }
    }
}

/// Every metadata-log record type at every version survives its frame (frame version, type,
/// version, body) and re-encodes to the same bytes.
fn check_metadata_records(seed: u64) {
    let mut r = Rng::new(seed);
    for &ty in MetadataRecordType::ALL {
        for version in ty.valid_versions() {
            let rec = VersionedRecord {
                version,
                record: MetadataRecord::random(ty, version, &mut r),
            };
            let bytes = rec.encode();
            let back = VersionedRecord::decode(bytes.clone())
                .unwrap_or_else(|e| panic!("{ty:?} v{version}: {e}\n{rec:?}"));
            assert_eq!(back, rec, "{ty:?} v{version}");
            assert_eq!(back.encode(), bytes, "{ty:?} v{version} bytes");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn every_api_every_version_round_trips(seed in any::<u64>()) {
        check_seed(seed);
    }

    #[test]
    fn framed_encoding_is_size_then_body(seed in any::<u64>()) {
        check_framed(seed);
    }

    #[test]
    fn every_metadata_record_round_trips(seed in any::<u64>()) {
        check_metadata_records(seed);
    }
}
