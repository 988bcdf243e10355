//! Corruption tests: damage the files of a cleanly closed log (truncate, flip bits, garbage
//! index, garbage meta, trailing garbage) and reopen. Opening must not panic; it may truncate,
//! rebuild or return a typed error; and whatever is served must be exactly what was written
//! (or a typed `Corrupt` error), never different bytes.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use common::*;
use futures_lite::future::block_on;
use sluice_shard::*;

fn cfg() -> LogConfig {
    LogConfig {
        segment_bytes: 8 << 10,
        index_interval_bytes: 512,
        preallocate_bytes: 16 << 10,
        ..LogConfig::default()
    }
}

const DIR: &str = "/data";

/// Writes a log of a few segments and returns the disk plus every batch by base offset.
fn build(seed: u64) -> (FakeDisk, BTreeMap<i64, Bytes>) {
    let disk = FakeDisk::new(seed, Faults::default(), 1_000_000);
    let batches = block_on(async {
        let shard = Shard::open(disk.clone(), Path::new(DIR), ShardConfig::default())
            .await
            .unwrap();
        let p = shard.create_partition("c", 0, cfg()).await.unwrap();
        for i in 0..60u64 {
            p.append(make_batch(
                i,
                1 + (i % 4) as usize,
                80 + (i % 9) as usize * 40,
                i as i64,
            ))
            .await
            .unwrap();
        }
        let mut all = BTreeMap::new();
        let r = p.read(0, 1 << 30).await.unwrap();
        for b in r.batches {
            all.insert(i64::from_be_bytes(b[..8].try_into().unwrap()), b);
        }
        shard.close().await.unwrap();
        all
    });
    (disk, batches)
}

/// Reopens and reads everything; asserts served bytes match the original batches.
fn check(disk: &FakeDisk, original: &BTreeMap<i64, Bytes>, what: &str) -> &'static str {
    block_on(async {
        let shard = Shard::open(disk.clone(), Path::new(DIR), ShardConfig::default())
            .await
            .unwrap();
        let p = match shard.create_partition("c", 0, cfg()).await {
            Ok(p) => p,
            Err(ShardError::BadMeta { .. }) => return "bad-meta",
            Err(ShardError::Corrupt { .. }) => return "corrupt-on-open",
            Err(e) => panic!("{what}: unexpected error on open: {e}"),
        };
        let o = p.offsets();
        let mut off = o.log_start_offset;
        while off < o.high_watermark {
            match p.read(off, 4096).await {
                Ok(r) => {
                    assert!(!r.batches.is_empty(), "{what}: nothing at {off}");
                    for b in r.batches {
                        let base = i64::from_be_bytes(b[..8].try_into().unwrap());
                        let want = original
                            .get(&base)
                            .unwrap_or_else(|| panic!("{what}: invented batch at {base}"));
                        assert!(*want == b, "{what}: wrong bytes served at {base}");
                        off =
                            base + 1 + i64::from(i32::from_be_bytes(b[23..27].try_into().unwrap()));
                    }
                }
                Err(ShardError::Corrupt { .. }) => return "corrupt-on-read",
                Err(e) => panic!("{what}: unexpected read error {e}"),
            }
        }
        // The log still accepts appends after recovery.
        p.append(make_batch(999, 1, 10, 0)).await.unwrap();
        "ok"
    })
}

fn files(disk: &FakeDisk, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<_> = disk
        .paths()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

fn rng(seed: &mut u64) -> u64 {
    *seed = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *seed >> 33
}

/// Truncations and bit flips anywhere in any segment, many seeds.
#[test]
fn damaged_segments() {
    let mut outcomes = BTreeMap::new();
    for seed in 0..400u64 {
        let (disk, original) = build(seed);
        let mut r = seed + 1;
        let logs = files(&disk, "log");
        assert!(logs.len() >= 3);
        let victim = &logs[(rng(&mut r) as usize) % logs.len()];
        let mut data = disk.file_bytes(victim).unwrap();
        if data.is_empty() {
            continue;
        }
        let kind = match rng(&mut r) % 3 {
            0 => {
                data.truncate((rng(&mut r) as usize) % data.len());
                "truncate"
            }
            1 => {
                let i = (rng(&mut r) as usize) % data.len();
                data[i] ^= 1 << (rng(&mut r) % 8);
                "flip"
            }
            _ => {
                data.extend((0..(rng(&mut r) % 3000)).map(|i| i as u8));
                "trailing garbage"
            }
        };
        disk.set_file_bytes(victim, data);
        let what = format!("seed {seed}: {kind} in {}", victim.display());
        let o = check(&disk, &original, &what);
        *outcomes.entry(o).or_insert(0) += 1;
    }
    eprintln!("outcomes: {outcomes:?}");
    assert!(outcomes.contains_key("ok"));
}

/// Garbage index files are ignored and rebuilt; data is served correctly.
#[test]
fn garbage_indexes() {
    for seed in 0..20u64 {
        let (disk, original) = build(seed);
        let mut r = seed;
        for p in files(&disk, "index")
            .into_iter()
            .chain(files(&disk, "timeindex"))
        {
            let mut d = disk.file_bytes(&p).unwrap();
            match rng(&mut r) % 3 {
                0 => d = (0..rng(&mut r) % 200).map(|_| rng(&mut r) as u8).collect(),
                1 => {
                    if !d.is_empty() {
                        let i = (rng(&mut r) as usize) % d.len();
                        d[i] ^= 0x80;
                    }
                }
                _ => d.truncate(d.len() / 2),
            }
            disk.set_file_bytes(&p, d);
        }
        assert_eq!(
            check(&disk, &original, &format!("seed {seed}: garbage index")),
            "ok"
        );
    }
}

/// A garbage partition.meta is a typed error, never a panic or wrong data.
#[test]
fn garbage_meta() {
    for seed in 0..30u64 {
        let (disk, original) = build(seed);
        let meta = PathBuf::from(DIR).join("c-0/partition.meta");
        let mut d = disk.file_bytes(&meta).unwrap();
        let mut r = seed;
        match seed % 3 {
            0 => d = (0..rng(&mut r) % 100).map(|_| rng(&mut r) as u8).collect(),
            1 => {
                let i = (rng(&mut r) as usize) % d.len();
                d[i] ^= 0x04;
            }
            _ => d.truncate((rng(&mut r) as usize) % d.len()),
        }
        disk.set_file_bytes(&meta, d);
        assert_eq!(
            check(&disk, &original, &format!("seed {seed}: garbage meta")),
            "bad-meta"
        );
    }
}

/// Missing index files (deleted) are rebuilt from the segments.
#[test]
fn missing_indexes_and_meta() {
    let (disk, original) = build(7);
    block_on(async {
        for p in files(&disk, "index")
            .into_iter()
            .chain(files(&disk, "timeindex"))
        {
            disk.remove(&p).await.unwrap();
        }
        disk.remove(&PathBuf::from(DIR).join("c-0/partition.meta"))
            .await
            .unwrap();
    });
    assert_eq!(check(&disk, &original, "missing indexes and meta"), "ok");
}
