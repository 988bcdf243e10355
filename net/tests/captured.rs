//! Real traffic (issue 13): requests and responses captured between real clients and the
//! reference Apache Kafka 4.4.0 (the differential suite's scenarios run through
//! `tests/capture/proxy.py`). Every captured frame must decode with the generated codec (header
//! and body, nothing left over) and re-encode to exactly the captured bytes.
//!
//! The corpus is `tests/captures/*.bin` (one file per API; `INDEX.txt` lists every entry), a
//! concatenation of entries:
//!
//! ```text
//! u8   kind       b'Q' request (client to broker), b'R' response (broker to client)
//! i16  api key    big-endian; for a response, the key of the request it answers
//! i16  version    the request's API version (a response is read at the same version)
//! u8   n, then n bytes: the client that sent the request (ApiVersions software name and version,
//!                 else its client id), for the reader and for the exceptions below
//! u32  length, then that many bytes: the frame after its 4-byte size (header, then body)
//! ```
//!
//! `refresh_corpus` (ignored; run by `tests/capture/record`) rebuilds the corpus from the
//! proxy's raw streams. The only frames not required to be byte-identical are listed in
//! [`EXCEPTIONS`], each with its reason; they are checked as far as they can be.

use bytes::Bytes;
use sluice_net::messages::*;
use sluice_net::record_batch::{Batches, Compression};
use sluice_net::*;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/captures");

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash)]
enum Kind {
    Request,
    Response,
}

impl Kind {
    fn byte(self) -> u8 {
        match self {
            Kind::Request => b'Q',
            Kind::Response => b'R',
        }
    }
    fn name(self) -> &'static str {
        match self {
            Kind::Request => "request",
            Kind::Response => "response",
        }
    }
}

#[derive(Clone, Debug)]
struct Entry {
    kind: Kind,
    api: i16,
    version: i16,
    client: String,
    frame: Bytes,
}

impl Entry {
    fn api_name(&self) -> String {
        ApiKey::from_i16(self.api)
            .map_or_else(|| format!("key{}", self.api), |k| k.name().to_string())
    }
    fn describe(&self) -> String {
        format!(
            "{} v{} {} from {:?} ({} bytes)",
            self.api_name(),
            self.version,
            self.kind.name(),
            self.client,
            self.frame.len()
        )
    }
}

// ------------------------------------------------------------------ corpus file format

fn read_corpus_file(path: &Path) -> Vec<Entry> {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    let mut p = &data[..];
    let take = |p: &mut &[u8], n: usize| -> Vec<u8> {
        assert!(p.len() >= n, "{}: truncated entry", path.display());
        let (a, b) = p.split_at(n);
        *p = b;
        a.to_vec()
    };
    while !p.is_empty() {
        let kind = match take(&mut p, 1)[0] {
            b'Q' => Kind::Request,
            b'R' => Kind::Response,
            k => panic!("{}: bad entry kind {k}", path.display()),
        };
        let api = i16::from_be_bytes(take(&mut p, 2).try_into().unwrap());
        let version = i16::from_be_bytes(take(&mut p, 2).try_into().unwrap());
        let n = take(&mut p, 1)[0] as usize;
        let client = String::from_utf8(take(&mut p, n)).expect("client label is UTF-8");
        let len = u32::from_be_bytes(take(&mut p, 4).try_into().unwrap()) as usize;
        let frame = Bytes::from(take(&mut p, len));
        out.push(Entry {
            kind,
            api,
            version,
            client,
            frame,
        });
    }
    out
}

fn write_entry(out: &mut Vec<u8>, e: &Entry) {
    out.push(e.kind.byte());
    out.extend_from_slice(&e.api.to_be_bytes());
    out.extend_from_slice(&e.version.to_be_bytes());
    let label = &e.client.as_bytes()[..e.client.len().min(255)];
    out.push(label.len() as u8);
    out.extend_from_slice(label);
    out.extend_from_slice(&(e.frame.len() as u32).to_be_bytes());
    out.extend_from_slice(&e.frame);
}

fn corpus_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|d| d.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "bin"))
        .collect();
    files.sort();
    files
}

// ------------------------------------------------------------------ the check

/// Frames that legitimately do not re-encode to the same bytes: the message decodes, but the
/// client wrote bytes after it that Kafka ignores. Matched on kind, API, version, a prefix of the
/// client label and the exact trailing bytes; the message before them must still re-encode
/// byte for byte.
struct Exception {
    kind: Kind,
    api: ApiKey,
    version: i16,
    client_prefix: &'static str,
    trailing: &'static [u8],
    why: &'static str,
}

const EXCEPTIONS: &[Exception] = &[Exception {
    kind: Kind::Request,
    api: ApiKey::Metadata,
    version: 13,
    client_prefix: "confluent-kafka-python 2.16.1-rdkafka-2.16.0",
    trailing: &[0x01, 0x00, 0x00],
    why: "librdkafka 2.16 asking for all topics (topics null, e.g. the admin client's \
          list_topics) writes 3 bytes 01 00 00 after the message's tagged fields; Kafka 4.4.0's \
          request parser does not look past the message, ignores them and answers normally \
          (the answers are in the corpus and re-encode identically). The message before them \
          re-encodes byte for byte.",
}];

enum Outcome {
    Identical,
    Exception(&'static Exception),
}

/// Re-encodes the header of the frame being checked.
type HeaderEncoder = Box<dyn Fn(&mut Encoder)>;

/// Decodes one frame (header, body) and re-encodes it; `Ok` when the bytes are identical (or
/// identical up to an [`Exception`]'s trailing bytes).
fn check(e: &Entry) -> Result<Outcome, String> {
    let key = ApiKey::from_i16(e.api).ok_or_else(|| format!("unknown api key {}", e.api))?;
    let v = e.version;
    let (rest, encode_header): (Bytes, HeaderEncoder) = match e.kind {
        Kind::Request => {
            let (k, header, rest) =
                decode_request_header(e.frame.clone()).map_err(|err| format!("header: {err}"))?;
            if k != key || header.request_api_version != v {
                return Err(format!(
                    "header says {:?} v{}, the index {key:?} v{v}",
                    k, header.request_api_version
                ));
            }
            let hv = key.request_header_version(v);
            (
                rest,
                Box::new(move |enc: &mut Encoder| header.encode(enc, hv)),
            )
        }
        Kind::Response => {
            let hv = key.response_header_version(v);
            let mut d = Decoder::new(e.frame.clone());
            let header =
                ResponseHeader::decode(&mut d, hv).map_err(|err| format!("header: {err}"))?;
            (
                d.into_rest(),
                Box::new(move |enc: &mut Encoder| header.encode(enc, hv)),
            )
        }
    };
    let body_at = e.frame.len() - rest.len();
    let reencode = |body: Bytes| -> Result<Bytes, DecodeError> {
        let mut enc = Encoder::new();
        encode_header(&mut enc);
        match e.kind {
            Kind::Request => Request::decode(key, v, body)?.encode(&mut enc, v),
            Kind::Response => Response::decode(key, v, body)?.encode(&mut enc, v),
        }
        Ok(enc.finish_contiguous())
    };
    let expect_same = |got: Bytes, want: &[u8]| -> Result<(), String> {
        if got[..] == *want {
            return Ok(());
        }
        let at = got.iter().zip(want).take_while(|(a, b)| a == b).count();
        Err(format!(
            "re-encodes to {} bytes instead of {}; first difference at byte {at} (body starts at {body_at}): \
             got {:02x?}, captured {:02x?}",
            got.len(),
            want.len(),
            &got[at..(at + 16).min(got.len())],
            &want[at..(at + 16).min(want.len())]
        ))
    };
    match reencode(rest.clone()) {
        Ok(got) => expect_same(got, &e.frame).map(|()| Outcome::Identical),
        Err(DecodeError {
            kind: DecodeErrorKind::TrailingBytes(n),
            ..
        }) if n <= rest.len() => {
            let tail = &e.frame[e.frame.len() - n..];
            let Some(x) = EXCEPTIONS.iter().find(|x| {
                x.kind == e.kind
                    && x.api == key
                    && x.version == v
                    && e.client.starts_with(x.client_prefix)
                    && x.trailing == tail
            }) else {
                return Err(format!(
                    "body: {n} bytes after the end of the message: {tail:02x?} (listed in no exception)"
                ));
            };
            let got =
                reencode(rest.slice(..rest.len() - n)).map_err(|err| format!("body: {err}"))?;
            expect_same(got, &e.frame[..e.frame.len() - n]).map(|()| Outcome::Exception(x))
        }
        Err(err) => Err(format!("body: {err}")),
    }
}

/// The compression codecs (and batch kinds) of the record batches a frame carries, for the
/// corpus summary and the codec coverage check.
fn batch_kinds(e: &Entry) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let Some(key) = ApiKey::from_i16(e.api) else {
        return out;
    };
    let mut records: Vec<Bytes> = Vec::new();
    match e.kind {
        Kind::Request => {
            if let Ok((_, Request::Produce(p))) = decode_request(e.frame.clone()) {
                for t in p.topic_data {
                    records.extend(
                        t.partition_data
                            .into_iter()
                            .filter_map(|p| p.records.map(Records::into_bytes)),
                    );
                }
            }
        }
        Kind::Response => {
            let mut d = Decoder::new(e.frame.clone());
            if ResponseHeader::decode(&mut d, key.response_header_version(e.version)).is_err() {
                return out;
            }
            match Response::decode(key, e.version, d.into_rest()) {
                Ok(Response::Fetch(f)) => {
                    for t in f.responses {
                        records.extend(
                            t.partitions
                                .into_iter()
                                .filter_map(|p| p.records.map(Records::into_bytes)),
                        );
                    }
                }
                Ok(Response::ShareFetch(f)) => {
                    for t in f.responses {
                        records.extend(
                            t.partitions
                                .into_iter()
                                .filter_map(|p| p.records.map(Records::into_bytes)),
                        );
                    }
                }
                _ => {}
            }
        }
    }
    for r in records {
        for b in Batches::new(r) {
            let Ok(b) = b else {
                out.insert("partial".to_string());
                break;
            };
            let mut s = match b.compression() {
                Ok(Compression::None) => "none",
                Ok(Compression::Gzip) => "gzip",
                Ok(Compression::Snappy) => "snappy",
                Ok(Compression::Lz4) => "lz4",
                Ok(Compression::Zstd) => "zstd",
                Err(_) => "bad-codec",
            }
            .to_string();
            if b.is_control() {
                s.push_str("+control");
            } else if b.is_transactional() {
                s.push_str("+txn");
            }
            out.insert(s);
        }
    }
    out
}

#[test]
fn captured_frames_reencode_byte_for_byte() {
    let files = corpus_files(Path::new(CORPUS));
    assert!(!files.is_empty(), "no corpus in {CORPUS}");
    let mut failures = Vec::new();
    let mut exceptions: BTreeMap<String, usize> = BTreeMap::new();
    let mut versions: BTreeMap<(String, Kind), BTreeSet<i16>> = BTreeMap::new();
    let mut clients = BTreeSet::new();
    let mut codecs: BTreeMap<Kind, BTreeSet<String>> = BTreeMap::new();
    let (mut frames, mut identical) = (0, 0);
    for f in &files {
        for e in read_corpus_file(f) {
            frames += 1;
            versions
                .entry((e.api_name(), e.kind))
                .or_default()
                .insert(e.version);
            clients.insert(e.client.clone());
            for k in batch_kinds(&e) {
                codecs
                    .entry(e.kind)
                    .or_default()
                    .insert(k.split('+').next().unwrap().to_string());
            }
            match check(&e) {
                Ok(Outcome::Identical) => identical += 1,
                Ok(Outcome::Exception(x)) => {
                    *exceptions
                        .entry(format!("{} ({})", e.describe(), x.why))
                        .or_default() += 1
                }
                Err(err) => failures.push(format!("{}: {}: {err}", f.display(), e.describe())),
            }
        }
    }
    let mut summary = format!(
        "{frames} captured frames: {identical} identical, {} listed exceptions, {} failures; \
         {} clients\n",
        exceptions.values().sum::<usize>(),
        failures.len(),
        clients.len()
    );
    for ((api, kind), vs) in &versions {
        writeln!(summary, "  {api} {}: versions {vs:?}", kind.name()).unwrap();
    }
    for (x, n) in &exceptions {
        writeln!(summary, "  exception x{n}: {x}").unwrap();
    }
    println!("{summary}");
    assert!(
        failures.is_empty(),
        "{} frames do not round-trip:\n{}\n{summary}",
        failures.len(),
        failures.join("\n")
    );
    // The corpus must keep record batches of every codec in both directions.
    for kind in [Kind::Request, Kind::Response] {
        let have = codecs.get(&kind).cloned().unwrap_or_default();
        for c in ["none", "gzip", "snappy", "lz4", "zstd"] {
            assert!(
                have.contains(c),
                "the corpus has no {c} record batch in a {}",
                kind.name()
            );
        }
    }
}

// ------------------------------------------------------------------ refreshing the corpus

/// Splits a raw stream into frames (after their 4-byte size); a cut-off last frame is dropped.
fn split_frames(data: &[u8]) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut p = data;
    while p.len() >= 4 {
        let n = i32::from_be_bytes(p[..4].try_into().unwrap());
        if n < 0 || p.len() - 4 < n as usize {
            break;
        }
        out.push(Bytes::copy_from_slice(&p[4..4 + n as usize]));
        p = &p[4 + n as usize..];
    }
    out
}

fn raw_connections(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for d in rd {
        let p = d.unwrap().path();
        if p.is_dir() {
            raw_connections(&p, out);
        } else if p.extension().is_some_and(|x| x == "c2s") {
            out.push(p);
        }
    }
}

/// The client label of a connection: the software name and version of its ApiVersions request
/// (v3+), else the client id of its first request.
fn client_label(requests: &[Bytes]) -> String {
    for r in requests {
        if let Ok((_, Request::ApiVersions(a))) = decode_request(r.clone())
            && !a.client_software_name.is_empty()
        {
            return format!(
                "{} {}",
                &*a.client_software_name, &*a.client_software_version
            );
        }
    }
    for r in requests {
        if let Ok((_, h, _)) = decode_request_header(r.clone()) {
            return format!("client-id {}", h.client_id.as_deref().unwrap_or("(null)"));
        }
    }
    "unknown".to_string()
}

/// Rebuilds the corpus from raw captures: `SLUICE_CAPTURE_RAW` (a directory searched
/// recursively for the proxy's `NNNNNN.c2s`/`.s2c` pairs) into `SLUICE_CAPTURE_OUT` (default
/// this crate's `tests/captures`). Per request or response, API, version, client and record
/// batch kinds and check outcome (identical, a listed exception, failing) it keeps the smallest
/// frame and the largest one up to `MAX_LARGE` (4 KiB); of exceptions and failures it keeps up to 3.
#[test]
#[ignore = "rebuilds the corpus; run by tests/capture/record"]
fn refresh_corpus() {
    const MAX_LARGE: usize = 4 * 1024;
    let raw = std::env::var("SLUICE_CAPTURE_RAW").expect("SLUICE_CAPTURE_RAW=DIR of raw captures");
    let out_dir =
        PathBuf::from(std::env::var("SLUICE_CAPTURE_OUT").unwrap_or_else(|_| CORPUS.into()));
    let mut conns = Vec::new();
    raw_connections(Path::new(&raw), &mut conns);
    conns.sort();
    assert!(!conns.is_empty(), "no *.c2s under {raw}");

    type Key = (i16, Kind, i16, String, Vec<String>, &'static str);
    let mut groups: BTreeMap<Key, Vec<Entry>> = BTreeMap::new();
    let (mut total, mut unmatched) = (0usize, 0usize);
    for c2s in &conns {
        let requests = split_frames(&std::fs::read(c2s).unwrap());
        let responses = split_frames(&std::fs::read(c2s.with_extension("s2c")).unwrap_or_default());
        let client = client_label(&requests);
        let mut by_corr: HashMap<i32, (i16, i16)> = HashMap::new();
        let mut entries = Vec::new();
        for r in requests {
            let Ok(p) = RequestPrefix::peek(&r) else {
                continue;
            };
            by_corr.insert(p.correlation_id, (p.api_key, p.api_version));
            entries.push(Entry {
                kind: Kind::Request,
                api: p.api_key,
                version: p.api_version,
                client: client.clone(),
                frame: r,
            });
        }
        for r in responses {
            let corr = r
                .get(..4)
                .map(|b| i32::from_be_bytes(b.try_into().unwrap()));
            let Some(&(api, version)) = corr.and_then(|c| by_corr.get(&c)) else {
                unmatched += 1;
                continue;
            };
            entries.push(Entry {
                kind: Kind::Response,
                api,
                version,
                client: client.clone(),
                frame: r,
            });
        }
        for e in entries {
            total += 1;
            let status = match check(&e) {
                Ok(Outcome::Identical) => "ok",
                Ok(Outcome::Exception(_)) => "exception",
                Err(_) => "FAILS",
            };
            let kinds: Vec<String> = batch_kinds(&e).into_iter().collect();
            groups
                .entry((e.api, e.kind, e.version, e.client.clone(), kinds, status))
                .or_default()
                .push(e);
        }
    }

    let mut keep: BTreeMap<i16, Vec<(Key, Entry)>> = BTreeMap::new();
    for (key, mut es) in groups {
        es.sort_by(|a, b| {
            a.frame
                .len()
                .cmp(&b.frame.len())
                .then_with(|| a.frame.cmp(&b.frame))
        });
        let mut picked: Vec<Entry> = Vec::new();
        if key.5 != "ok" {
            picked.extend(es.iter().take(3).cloned());
        } else {
            picked.push(es[0].clone());
            if let Some(big) = es.iter().rev().find(|e| e.frame.len() <= MAX_LARGE)
                && big.frame != es[0].frame
            {
                picked.push(big.clone());
            }
        }
        for e in picked {
            keep.entry(e.api).or_default().push((key.clone(), e));
        }
    }

    std::fs::create_dir_all(&out_dir).unwrap();
    for old in corpus_files(&out_dir) {
        std::fs::remove_file(old).unwrap();
    }
    let mut index = String::from(
        "# file  kind  api  version  client  record-batches  bytes  check\n\
         # written by refresh_corpus (net/tests/captured.rs) from tests/capture/record\n",
    );
    let (mut kept, mut bytes) = (0, 0);
    for (api, es) in &keep {
        let name = format!(
            "{api:02}-{}.bin",
            ApiKey::from_i16(*api).map_or("unknown".to_string(), |k| k.name().to_string())
        );
        let mut buf = Vec::new();
        for (key, e) in es {
            write_entry(&mut buf, e);
            let kinds = if key.4.is_empty() {
                "-".to_string()
            } else {
                key.4.join(",")
            };
            writeln!(
                index,
                "{name}  {}  {}  v{}  {:?}  {kinds}  {}  {}",
                e.kind.name(),
                e.api_name(),
                e.version,
                e.client,
                e.frame.len(),
                key.5
            )
            .unwrap();
            kept += 1;
            bytes += e.frame.len();
        }
        std::fs::write(out_dir.join(name), buf).unwrap();
    }
    std::fs::write(out_dir.join("INDEX.txt"), index).unwrap();
    println!(
        "{} connections, {total} frames ({unmatched} responses without a request); kept {kept} \
         frames, {bytes} bytes, in {}",
        conns.len(),
        out_dir.display()
    );
}
