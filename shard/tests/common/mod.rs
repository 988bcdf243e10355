//! Helpers shared by the shard tests: batch builders, a glommio runner for real files.
#![allow(dead_code)]

use std::path::PathBuf;

use bytes::Bytes;
use sluice_net::record_batch::build::{BatchSpec, batch};

/// A batch of `count` records whose values encode `tag` and the record index, with
/// timestamps starting at `ts`.
pub fn make_batch(tag: u64, count: usize, value_bytes: usize, ts: i64) -> Bytes {
    let vals: Vec<Vec<u8>> = (0..count)
        .map(|i| {
            let mut v = format!("{tag}:{i}:").into_bytes();
            v.resize(value_bytes.max(v.len()), b'x' + (tag % 3) as u8);
            v
        })
        .collect();
    let recs: Vec<_> = vals
        .iter()
        .map(|v| (None::<&[u8]>, Some(v.as_slice())))
        .collect();
    batch(
        &BatchSpec {
            base_timestamp: ts,
            ..BatchSpec::default()
        },
        &recs,
    )
}

/// A fresh directory on a real disk (never tmpfs): under the workspace's `target/`.
pub fn real_dir(name: &str) -> PathBuf {
    let base = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/shard-test-data")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).expect("create test dir");
    base
}

/// Raises RLIMIT_MEMLOCK so glommio can register its buffers (root only; harmless otherwise).
pub fn raise_memlock() {
    let lim = libc::rlimit {
        rlim_cur: 512 << 20,
        rlim_max: 512 << 20,
    };
    // SAFETY: setrlimit reads a valid, initialized struct.
    unsafe {
        libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim);
    }
}

/// Runs `f` on a fresh glommio executor with a small io_memory.
pub fn run_glommio<F, Fut, T>(f: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + 'static,
    T: Send + 'static,
{
    raise_memlock();
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(2 << 20)
        .spawn(f)
        .expect("spawn executor")
        .join()
        .expect("executor thread")
}
