//! Seeded mutation test: take valid request and response frames for every API and version,
//! damage them (bit flips, truncations, splices, huge counts, overwritten lengths) and decode
//! them again. Proves that decoding never panics and never allocates out of proportion to the
//! frame: a counting global allocator (this test binary only) records the largest single
//! allocation made while decoding each input.
//!
//! The bound asserted is `AMPLIFICATION_MAX * frame_len + SLACK_BYTES`: a decoded element can
//! legitimately be bigger in memory than on the wire (a struct with many absent fields takes a
//! few wire bytes and a few hundred bytes of memory, and `Vec` rounds capacity up), but nothing
//! may scale with a count read from the wire. An allocation from an unchecked count (the
//! kafka-protocol crate's 309 GB from 5 bytes) breaks this bound by orders of magnitude.
//! The same seed always produces the same inputs; a failure prints the seed and the bytes.

use bytes::Bytes;
use sluice_net::{ApiKey, Encoder, Request, RequestHeader, Response, Rng, decode_request};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

struct CountingAllocator;

static TRACKING: AtomicBool = AtomicBool::new(false);
static LARGEST_BYTES: AtomicUsize = AtomicUsize::new(0);
/// Damaged inputs that still decoded (mutations that kept the frame valid).
static OK_COUNT: AtomicUsize = AtomicUsize::new(0);

fn note(size: usize) {
    if TRACKING.load(Ordering::Relaxed) {
        LARGEST_BYTES.fetch_max(size, Ordering::Relaxed);
    }
}

// SAFETY: forwards every call to the system allocator unchanged; only records sizes.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// In-memory bytes per wire byte a decode may reach in one allocation (see the module doc).
const AMPLIFICATION_MAX: usize = 64;
/// Fixed allowance for the first small allocations (`Vec`'s minimum capacity of 4 elements).
const SLACK_BYTES: usize = 8 * 1024;
/// Valid frames per (API, version, request/response); each is mutated `MUTATIONS` times.
const SEEDS: u64 = 96;
const MUTATIONS: usize = 200;

/// Damages `frame` in one of several ways chosen by `r`.
fn mutate(r: &mut Rng, frame: &mut Vec<u8>, donor: &[u8]) {
    let len = frame.len();
    let at = |r: &mut Rng| r.below(len.max(1) as u64) as usize;
    match r.below(8) {
        0 | 1 => {
            for _ in 0..=r.below(4) {
                if len > 0 {
                    let i = at(r);
                    frame[i] ^= 1 << r.below(8);
                }
            }
        }
        2 => frame.truncate(at(r)),
        3 => {
            // Splice a piece of another valid frame in.
            let i = at(r).min(len);
            let d = r.below(donor.len().max(1) as u64) as usize;
            let n = r.below(32) as usize;
            let piece = &donor[d.min(donor.len())..(d + n).min(donor.len())];
            frame.splice(i..i, piece.iter().copied());
        }
        4 => {
            // A huge classic count or length.
            let huge: &[u8] = match r.below(3) {
                0 => &[0x7f, 0xff, 0xff, 0xff],
                1 => &[0x00, 0xff, 0xff, 0xff],
                _ => &[0x7f, 0xff],
            };
            write_at(frame, at(r), huge);
        }
        5 => {
            // A huge compact count or length (unsigned varint).
            let huge: &[u8] = match r.below(3) {
                0 => &[0xff, 0xff, 0xff, 0xff, 0x0f],
                1 => &[0xff, 0xff, 0x7f],
                _ => &[0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
            };
            write_at(frame, at(r), huge);
        }
        6 => {
            // Negative lengths and nulls.
            let neg: &[u8] = match r.below(3) {
                0 => &[0xff, 0xfe],
                1 => &[0xff, 0xff, 0xff, 0xfe],
                _ => &[0x00],
            };
            write_at(frame, at(r), neg);
        }
        _ => {
            // Random bytes over a random stretch.
            let i = at(r);
            let n = r.below(8) as usize;
            for b in frame.iter_mut().skip(i).take(n) {
                *b = r.u64() as u8;
            }
        }
    }
}

/// A valid input and the decoder to run on its damaged copies.
type Case<'a> = (&'a [u8], &'a dyn Fn(Bytes));

fn write_at(frame: &mut [u8], at: usize, bytes: &[u8]) {
    for (i, b) in bytes.iter().enumerate() {
        if let Some(slot) = frame.get_mut(at + i) {
            *slot = *b;
        }
    }
}

fn request_frame(key: ApiKey, version: i16, r: &mut Rng) -> Vec<u8> {
    let mut e = Encoder::new();
    let header = RequestHeader {
        request_api_key: key.key(),
        request_api_version: version,
        correlation_id: r.u64() as i32,
        client_id: Some("mutation".into()),
        ..RequestHeader::default()
    };
    header.encode(&mut e, key.request_header_version(version));
    Request::random(key, version, r).encode(&mut e, version);
    e.finish_contiguous().to_vec()
}

fn response_body(key: ApiKey, version: i16, r: &mut Rng) -> Vec<u8> {
    let mut e = Encoder::new();
    Response::random(key, version, r).encode(&mut e, version);
    e.finish_contiguous().to_vec()
}

/// Decodes one damaged input with allocation tracking on; returns the largest allocation.
fn decode_tracked(input: &[u8], decode: &dyn Fn(Bytes)) -> Result<usize, String> {
    let bytes = Bytes::copy_from_slice(input);
    LARGEST_BYTES.store(0, Ordering::Relaxed);
    TRACKING.store(true, Ordering::Relaxed);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decode(bytes)));
    TRACKING.store(false, Ordering::Relaxed);
    match outcome {
        Ok(()) => Ok(LARGEST_BYTES.load(Ordering::Relaxed)),
        Err(_) => Err("panicked".to_string()),
    }
}

#[test]
fn mutated_frames_never_panic_or_over_allocate() {
    // The tracker must see allocations made inside the decode closure, or the bound below
    // would prove nothing.
    let seen = decode_tracked(&[], &|_| {
        std::hint::black_box(Vec::<u8>::with_capacity(1 << 20));
    });
    assert_eq!(seen, Ok(1 << 20));

    let started = std::time::Instant::now();
    let mut decodes = 0u64;
    let mut worst_ratio = 0.0f64;
    for &key in ApiKey::ALL {
        for version in key.valid_versions() {
            for seed in 0..SEEDS {
                let mut r = Rng::new(seed ^ ((key.key() as u64) << 32) ^ ((version as u64) << 48));
                let request = request_frame(key, version, &mut r);
                let response = response_body(key, version, &mut r);
                let cases: [Case; 2] = [
                    (&request, &|b| {
                        if decode_request(b).is_ok() {
                            OK_COUNT.fetch_add(1, Ordering::Relaxed);
                        }
                    }),
                    (&response, &|b| {
                        if Response::decode(key, version, b).is_ok() {
                            OK_COUNT.fetch_add(1, Ordering::Relaxed);
                        }
                    }),
                ];
                for (valid, decode) in cases {
                    for m in 0..MUTATIONS {
                        let mut input = valid.to_vec();
                        for _ in 0..=r.below(3) {
                            mutate(
                                &mut r,
                                &mut input,
                                if m % 2 == 0 { &request } else { &response },
                            );
                        }
                        let largest = decode_tracked(&input, decode).unwrap_or_else(|e| {
                            panic!("{key:?} v{version} seed {seed} mutation {m}: {e}\n{input:02x?}")
                        });
                        decodes += 1;
                        let bound = AMPLIFICATION_MAX * input.len() + SLACK_BYTES;
                        assert!(
                            largest <= bound,
                            "{key:?} v{version} seed {seed} mutation {m}: allocated {largest} bytes \
                             at once for a {}-byte frame\n{input:02x?}",
                            input.len()
                        );
                        if input.len() > 64 {
                            worst_ratio = worst_ratio.max(largest as f64 / input.len() as f64);
                        }
                    }
                }
            }
        }
    }
    eprintln!(
        "mutation: {decodes} damaged frames decoded in {:?}, {} still valid; largest \
         allocation per frame byte (frames over 64 bytes): {worst_ratio:.1}",
        started.elapsed(),
        OK_COUNT.load(Ordering::Relaxed)
    );
}
