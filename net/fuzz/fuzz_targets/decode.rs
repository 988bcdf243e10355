//! Fuzz target over every decoder: frames, request headers and bodies for every API, and
//! response bodies. Any input must give `Ok` or a typed error, never a panic or an abort.

#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use sluice_net::{ApiKey, Request, Response, decode_request, split_frame};

/// The maximum frame size used here; small so that big sizes take the error path too.
const FRAME_BYTES_MAX: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    // The broker's path: a stream of frames, each a request header and body.
    let mut buf = BytesMut::from(data);
    while let Ok(Some(body)) = split_frame(&mut buf, FRAME_BYTES_MAX) {
        let _ = decode_request(body);
    }
    // A frame body without the size prefix.
    let _ = decode_request(Bytes::copy_from_slice(data));
    // Bodies of every API: the first two bytes choose the API and the version.
    if let [k, v, rest @ ..] = data {
        let key = ApiKey::ALL[usize::from(*k) % ApiKey::ALL.len()];
        let versions = key.valid_versions();
        let span = versions.end() - versions.start() + 1;
        let version = versions.start() + i16::from(*v) % span;
        let body = Bytes::copy_from_slice(rest);
        let _ = Request::decode(key, version, body.clone());
        let _ = Response::decode(key, version, body);
    }
});
