//! EIO injection on the fake disk: an append either succeeds (and then survives a crash) or
//! fails with a typed error, after which the partition refuses appends (`Poisoned`) instead of
//! acknowledging data the kernel may have dropped. After a crash and reopen, the log is a
//! prefix of what was sent that includes every acknowledged batch, byte for byte.

mod common;

use std::path::Path;

use bytes::Bytes;
use common::*;
use futures_lite::future::block_on;
use sluice_shard::*;

fn cfg() -> LogConfig {
    LogConfig {
        segment_bytes: 16 << 10,
        index_interval_bytes: 1024,
        preallocate_bytes: 16 << 10,
        ..LogConfig::default()
    }
}

#[test]
fn eio_poisons_and_acked_data_survives() {
    let mut failures = 0;
    for seed in 0..60u64 {
        let disk = FakeDisk::new(seed, Faults::default(), 1_000);
        block_on(async {
            let shard = Shard::open(disk.clone(), Path::new("/f"), ShardConfig::default())
                .await
                .unwrap();
            let p = shard.create_partition("f", 0, cfg()).await.unwrap();
            disk.set_faults(Faults {
                eio_per_million: 15_000,
            });
            let mut sent: Vec<(i64, Bytes)> = Vec::new();
            let mut acked = 0usize;
            let mut failed = false;
            for i in 0..150u64 {
                let b = make_batch(seed * 1000 + i, 1 + (i % 3) as usize, 300, i as i64);
                let base = p.offsets().log_end_offset;
                match p.append(b.clone()).await {
                    Ok(info) => {
                        assert!(!failed, "seed {seed}: append acknowledged after a failure");
                        assert_eq!(info.base_offset, base);
                        sent.push((base, b));
                        acked = sent.len();
                    }
                    Err(ShardError::Io { .. }) => {
                        failed = true;
                        sent.push((base, b));
                    }
                    Err(ShardError::Poisoned { .. }) => {
                        assert!(failed, "seed {seed}: poisoned without an earlier failure");
                    }
                    Err(e) => panic!("seed {seed}: unexpected error {e}"),
                }
            }
            if failed {
                failures += 1;
            }
            drop(p);
            drop(shard);
            disk.crash();
            disk.set_faults(Faults::default());
            let shard = Shard::open(disk.clone(), Path::new("/f"), ShardConfig::default())
                .await
                .unwrap();
            let p = shard.create_partition("f", 0, cfg()).await.unwrap();
            let o = p.offsets();
            let mut off = 0;
            let mut k = 0;
            while off < o.high_watermark {
                let r = p.read(off, 1 << 20).await.unwrap();
                for got in r.batches {
                    let (base, raw) = &sent[k];
                    let base_got = i64::from_be_bytes(got[..8].try_into().unwrap());
                    assert_eq!(base_got, *base, "seed {seed}");
                    assert_eq!(
                        &got[16..],
                        &raw[16..],
                        "seed {seed}: bytes differ at {base}"
                    );
                    off = base + 1 + i64::from(i32::from_be_bytes(got[23..27].try_into().unwrap()));
                    k += 1;
                }
            }
            assert!(
                k >= acked,
                "seed {seed}: {k} batches survived, {acked} were acknowledged"
            );
            shard.close().await.unwrap();
        });
    }
    assert!(
        failures > 10,
        "fault injection too rare to test anything ({failures})"
    );
}
