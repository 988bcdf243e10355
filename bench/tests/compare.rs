//! Runs a 2-second `sluice-bench compare` against a real sluice (the release `sluice` next to
//! the `sluice-bench` under test, or `$SLUICE_BIN`) and checks that the JSON report has every
//! field the issue names, with sane values: non-zero throughputs and raw limits, ratios that
//! match their parts, percentiles ordered from p50 to max, the core counts, commit and date.
//! Takes about 15 s (disk 2 s, loopback 1 s, three 2-second broker phases, start and stop).
//! Then the same against a 3-node sluice cluster (`--cluster 3`): the topic has replication
//! factor 3, every node runs on its own CPU list, the load reaches every partition's leader
//! with no error. About 20 s more.

use std::path::PathBuf;
use std::process::Command;

fn sluice_bin(bench: &std::path::Path) -> PathBuf {
    if let Ok(p) = std::env::var("SLUICE_BIN") {
        return PathBuf::from(p);
    }
    bench.with_file_name("sluice")
}

/// One compare at a time: each measures the machine, and two at once would measure each other.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `sluice-bench compare --seconds 2` with `extra` arguments; its JSON report and what it
/// printed.
fn compare(extra: &[&str]) -> (serde_json::Value, std::process::Output) {
    let _one = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_sluice-bench"));
    let sluice = sluice_bin(&bench);
    assert!(
        sluice.exists(),
        "no sluice binary at {} (cargo build --release --bins, or set SLUICE_BIN)",
        sluice.display()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("out.json");
    let out = Command::new(&bench)
        .args(["compare", "--seconds", "2", "--json"])
        .arg(&json)
        .arg("--sluice-bin")
        .arg(&sluice)
        .arg("--dir")
        .arg(std::env::var("SLUICE_BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into()))
        .args(extra)
        .output()
        .expect("run sluice-bench");
    assert!(
        out.status.success(),
        "compare failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let j = serde_json::from_str(&std::fs::read_to_string(&json).expect("json written"))
        .expect("valid json");
    (j, out)
}

#[test]
fn compare_two_seconds_writes_every_field() {
    let (j, out) = compare(&[]);
    let num = |k: &str| {
        j[k].as_f64()
            .unwrap_or_else(|| panic!("{k} missing or not a number in {j:#}"))
    };
    for k in [
        "produce_mb_s",
        "consume_mb_s",
        "raw_fsync_write_mb_s",
        "loopback_mb_s",
        "produce_ratio",
        "consume_ratio",
        "produce_p99_99_us",
        "raw_fsync_p99_99_us",
        "raw_seq_write_mb_s",
        "raw_read_mb_s",
    ] {
        assert!(num(k) > 0.0, "{k} = {}", num(k));
    }
    assert_eq!(
        num("errors"),
        0.0,
        "errors counted; the bench printed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * a.abs().max(1.0);
    assert!(close(
        num("produce_ratio"),
        num("produce_mb_s") / num("raw_fsync_write_mb_s")
    ));
    assert!(close(
        num("consume_ratio"),
        num("consume_mb_s") / num("loopback_mb_s")
    ));
    let p = |k: &str| num(&format!("produce_{k}_us"));
    let ordered = ["p50", "p90", "p99", "p99_9", "p99_99", "max"].map(p);
    assert!(
        ordered.windows(2).all(|w| w[0] <= w[1]),
        "produce percentiles not ordered: {ordered:?}"
    );
    for phase in j["phases"].as_array().expect("phases") {
        let l = &phase["latency"];
        let v = [
            "p50_us",
            "p90_us",
            "p99_us",
            "p99_9_us",
            "p99_99_us",
            "max_us",
        ]
        .map(|k| l[k].as_u64().expect(k));
        assert!(v.windows(2).all(|w| w[0] <= w[1]), "{phase:#}");
        assert!(phase["records"].as_u64().expect("records") > 0, "{phase:#}");
    }
    for row in j["disk"]["fsync"].as_array().expect("disk rows") {
        let l = &row["latency"];
        let v = [
            "p50_us",
            "p90_us",
            "p99_us",
            "p99_9_us",
            "p99_99_us",
            "max_us",
        ]
        .map(|k| l[k].as_u64().expect(k));
        assert!(v.windows(2).all(|w| w[0] <= w[1]), "{row:#}");
    }
    assert!(j["cores"]["machine"].as_u64().expect("machine cores") >= 1);
    assert!(j["cores"]["broker"].as_u64().expect("broker cores") >= 1);
    assert!(j["cores"]["client"].as_u64().expect("client cores") >= 1);
    assert!(!j["commit"].as_str().expect("commit").is_empty());
    let date = j["date"].as_str().expect("date");
    assert_eq!(date.len(), 10, "{date}");
}

#[test]
fn compare_against_a_three_node_cluster() {
    let (j, out) = compare(&["--cluster", "3"]);
    let printed = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(j["workload"]["replication_factor"], 3, "{printed}");
    let nodes = j["cores"]["cluster_node_cpus"]
        .as_array()
        .expect("node cpus");
    assert_eq!(nodes.len(), 3, "{printed}");
    assert!(
        nodes
            .iter()
            .all(|n| n.as_array().is_some_and(|c| !c.is_empty()))
    );
    assert_eq!(j["errors"], 0, "{printed}");
    let bootstrap = j["bootstrap"].as_str().expect("bootstrap");
    assert_eq!(bootstrap.split(',').count(), 3, "{bootstrap}");
    for k in ["produce_mb_s", "consume_mb_s", "produce_p99_99_us"] {
        assert!(j[k].as_f64().is_some_and(|v| v > 0.0), "{k}: {printed}");
    }
    assert!(printed.contains("RF 3, min.insync.replicas 2"), "{printed}");
}
