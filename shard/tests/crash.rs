//! Crash test on real files: a child process (this binary, re-executed with
//! `SLUICE_CRASH_CHILD=<dir>`) appends with sync on from several tasks at once (group commit)
//! and prints each acknowledged append; the parent SIGKILLs it at a seeded random moment,
//! reopens the log and checks that every acknowledged batch is present and byte-identical and
//! that every batch served is one the child really sent (nothing torn or invented past the
//! valid tail). Repeats over the same directory, so recovered logs are recovered again.
//!
//! `SLUICE_CRASH_SEED=<n>` replays one schedule; `SLUICE_CRASH_ROUNDS` sets the round count.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use sluice_shard::*;

fn log_config() -> LogConfig {
    LogConfig {
        segment_bytes: 512 << 10,
        index_interval_bytes: 4096,
        preallocate_bytes: 1 << 20,
        ..LogConfig::default()
    }
}

/// The batch a given tag stands for; the parent rebuilds it to compare bytes.
fn batch_for(tag: u64) -> Bytes {
    make_batch(
        tag,
        1 + (tag % 7) as usize,
        50 + (tag % 13) as usize * 97,
        tag as i64,
    )
}

fn tag_of(stored: &[u8]) -> Option<u64> {
    // First record: length varint, attributes, ts delta, offset delta, key -1, value length,
    // then the value "tag:0:...".
    let v = &stored[61..];
    let text: Vec<u8> = v.iter().skip(5).take(30).copied().collect();
    let s = String::from_utf8_lossy(&text);
    let start = s.find(|c: char| c.is_ascii_digit())?;
    s[start..].split(':').next()?.parse().ok()
}

fn child(dir: PathBuf) {
    run_glommio(move || async move {
        probe_dma_polling(&dir).await.expect("probe");
        let shard = Shard::open(DmaStorage, &dir, ShardConfig::default())
            .await
            .expect("open shard");
        let p = shard
            .create_partition("crash", 0, log_config())
            .await
            .expect("open partition");
        let salt = std::process::id() as u64 * 1_000_000;
        let out = Rc::new(std::cell::RefCell::new(std::io::stdout()));
        let mut tasks = Vec::new();
        for t in 0..4u64 {
            let p = p.clone();
            let out = out.clone();
            tasks.push(glommio::spawn_local(async move {
                for i in 0.. {
                    let tag = salt + t * 100_000 + i;
                    let info = p.append(batch_for(tag)).await.expect("append");
                    let mut o = out.borrow_mut();
                    writeln!(o, "ack {tag} {}", info.base_offset).expect("stdout");
                    o.flush().expect("flush");
                }
            }));
        }
        for t in tasks {
            t.await;
        }
    });
}

fn stored(raw: &Bytes, base: i64, epoch_bytes: &[u8]) -> Vec<u8> {
    let mut v = raw.to_vec();
    v[..8].copy_from_slice(&base.to_be_bytes());
    v[12..16].copy_from_slice(epoch_bytes);
    v
}

fn verify(dir: &Path, acked: &BTreeMap<i64, u64>) -> usize {
    let dir = dir.to_path_buf();
    let acked = acked.clone();
    run_glommio(move || async move {
        probe_dma_polling(&dir).await.expect("probe");
        let shard = Shard::open(DmaStorage, &dir, ShardConfig::default())
            .await
            .expect("reopen shard");
        let p = shard
            .create_partition("crash", 0, log_config())
            .await
            .expect("reopen partition");
        let o = p.offsets();
        let mut served: BTreeMap<i64, Bytes> = BTreeMap::new();
        let mut off = o.log_start_offset;
        let mut expect_base = off;
        while off < o.high_watermark {
            let r = p.read(off, 256 << 10).await.expect("read after crash");
            assert!(!r.batches.is_empty(), "no batch at {off} below hw");
            for b in r.batches {
                let base = i64::from_be_bytes(b[..8].try_into().unwrap());
                assert_eq!(base, expect_base, "offsets must be contiguous");
                let tag = tag_of(&b).expect("served batch has a tag");
                let want = stored(&batch_for(tag), base, &b[12..16]);
                assert!(
                    b[..] == want[..],
                    "batch at {base} (tag {tag}) differs from sent"
                );
                let delta = i64::from(i32::from_be_bytes(b[23..27].try_into().unwrap()));
                expect_base = base + delta + 1;
                off = expect_base;
                served.insert(base, b);
            }
        }
        for (base, tag) in &acked {
            let b = served
                .get(base)
                .unwrap_or_else(|| panic!("acked batch at {base} (tag {tag}) lost"));
            assert_eq!(tag_of(b), Some(*tag), "acked batch at {base} replaced");
        }
        shard.close().await.expect("close");
        served.len()
    })
}

fn main() {
    if let Ok(dir) = std::env::var("SLUICE_CRASH_CHILD") {
        child(PathBuf::from(dir));
        return;
    }
    // Under `cargo test -- --list` or a name filter that is not ours, do nothing noisy.
    if std::env::args().any(|a| a == "--list") {
        println!("crash: test");
        return;
    }
    let seed: u64 = std::env::var("SLUICE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    let rounds: u64 = std::env::var("SLUICE_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    eprintln!("crash test seed = {seed} (replay: SLUICE_CRASH_SEED={seed})");
    let dir = real_dir("crash");
    let exe = std::env::current_exe().expect("current exe");
    let mut rng = seed;
    let mut acked: BTreeMap<i64, u64> = BTreeMap::new();
    let started = Instant::now();
    for round in 0..rounds {
        rng = rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let kill_after_ms = 150 + (rng >> 33) % 600;
        let mut c = Command::new(&exe)
            .env("SLUICE_CRASH_CHILD", &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn child");
        let stdout = c.stdout.take().expect("child stdout");
        let reader = std::thread::spawn(move || {
            let mut v = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                v.push(line);
            }
            v
        });
        std::thread::sleep(Duration::from_millis(kill_after_ms));
        // SAFETY: plain syscall on the child's pid.
        unsafe {
            libc::kill(c.id() as i32, libc::SIGKILL);
        }
        let status = c.wait().expect("wait child");
        assert!(
            status.code().is_none(),
            "child exited on its own ({status}); seed {seed} round {round}"
        );
        let lines = reader.join().expect("reader");
        let mut new = 0;
        for l in lines {
            let mut it = l.split_whitespace();
            if it.next() != Some("ack") {
                continue;
            }
            let tag: u64 = it.next().and_then(|s| s.parse().ok()).expect("tag");
            let base: i64 = it.next().and_then(|s| s.parse().ok()).expect("base");
            if let Some(old) = acked.insert(base, tag) {
                panic!("offset {base} acknowledged twice (tags {old}, {tag}); seed {seed}");
            }
            new += 1;
        }
        let served = verify(&dir, &acked);
        eprintln!(
            "round {round}: killed after {kill_after_ms} ms, {new} new acks, {} acked, {served} batches served",
            acked.len()
        );
    }
    assert!(!acked.is_empty(), "the child never acknowledged anything");
    eprintln!("crash test passed in {:?}", started.elapsed());
    let _ = std::fs::remove_dir_all(dir);
}
