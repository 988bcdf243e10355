//! Prints seeded random encodings of every request, response and header, one per line as
//! `<MessageName> <version> <hex>`, for `cargo xtask crosscheck`, which has Apache Kafka's own
//! generated Java classes parse and re-serialize each one. Metadata-log records come as
//! `MetadataRecord:<Type> <version> <hex>`, the hex being the whole framed value
//! (`VersionedRecord::encode`), which Kafka's `MetadataRecordSerde` reads and writes back. That catches mistakes that a
//! Rust-only round trip cannot: an encoder and decoder that agree with each other but not with
//! Kafka.
//!
//! Usage: `cargo run -p sluice-net --features testgen --example dump_vectors -- [seeds]`.

use sluice_net::messages::{MetadataRecord, MetadataRecordType};
use sluice_net::metadata_record::VersionedRecord;
use sluice_net::{ApiKey, Encoder, Request, RequestHeader, Response, ResponseHeader, Rng};
use std::fmt::Write as _;
use std::io::Write as _;

fn hex(e: Encoder) -> String {
    let bytes = e.finish_contiguous();
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes.iter() {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn hex_bytes(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Every metadata record type at every version, framed as a metadata-log record value.
fn metadata_records(out: &mut impl std::io::Write, r: &mut Rng) {
    for &ty in MetadataRecordType::ALL {
        for version in ty.valid_versions() {
            let record = VersionedRecord {
                version,
                record: MetadataRecord::random(ty, version, r),
            };
            let bytes = record.encode();
            let _ = writeln!(out, "MetadataRecord:{ty:?} {version} {}", hex_bytes(&bytes));
        }
    }
}

fn main() {
    let seeds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for seed in 0..seeds {
        let mut r = Rng::new(seed);
        for version in 1..=2 {
            let mut e = Encoder::new();
            RequestHeader::random(&mut r, version).encode(&mut e, version);
            let _ = writeln!(out, "RequestHeader {version} {}", hex(e));
        }
        for version in 0..=1 {
            let mut e = Encoder::new();
            ResponseHeader::random(&mut r, version).encode(&mut e, version);
            let _ = writeln!(out, "ResponseHeader {version} {}", hex(e));
        }
        for &key in ApiKey::ALL {
            for version in key.valid_versions() {
                let req = Request::random(key, version, &mut r);
                let mut e = Encoder::new();
                req.encode(&mut e, version);
                let _ = writeln!(out, "{}Request {version} {}", key.name(), hex(e));
                let resp = Response::random(key, version, &mut r);
                let mut e = Encoder::new();
                resp.encode(&mut e, version);
                let _ = writeln!(out, "{}Response {version} {}", key.name(), hex(e));
            }
        }
        metadata_records(&mut out, &mut r);
    }
}
