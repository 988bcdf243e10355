//! `cargo xtask metalog`: Apache Kafka as the oracle for the controller's metadata log on disk
//! (`sluice_controller::FileLog`), both ways.
//!
//! 1. sluice writes, Kafka reads: `controller/examples/metalog_oracle.rs write` writes a
//!    segment (a LeaderChange and one record of every metadata record type at its highest
//!    version) and prints what each offset must decode to; Kafka's `kafka-dump-log
//!    --cluster-metadata-decoder` must dump it without error, every batch valid, and print
//!    for each offset JSON containing what was expected (type, version, key fields).
//! 2. Kafka writes, sluice reads: the reference broker (`tests/kafka-ref`) starts, a topic is
//!    created, the broker stops; `metalog_oracle read` must read every record of its
//!    `__cluster_metadata-0` segments, and its list of (offset, type, version) must equal the
//!    one Kafka's own dump of the same files prints.
//!
//! 3. sluice snapshots, Kafka reads: `metalog_oracle checkpoint` stores a snapshot of an image
//!    as a `.checkpoint` file; `kafka-dump-log --cluster-metadata-decoder` must dump it
//!    without error (header, records, footer), each record with the expected type and version.
//!
//! Needs Java 17+ and Maven (`tests/kafka-ref/install`), like `crosscheck`.

use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs both directions; the work directory is removed afterwards.
pub fn metalog(root: &Path) -> Result<()> {
    let work = std::env::temp_dir().join(format!("sluice-metalog-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let result = (|| {
        run(root, &root.join("tests/kafka-ref/install"), &[])?;
        sluice_writes_kafka_reads(root, &work)?;
        sluice_snapshots_kafka_reads(root, &work)?;
        kafka_writes_sluice_reads(root, &work)
    })();
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn sluice_writes_kafka_reads(root: &Path, work: &Path) -> Result<()> {
    let dir = work.join("sluice");
    let expected = example(root, "write", &dir)?;
    let dumped = dump(root, &dir, "log")?;
    compare(&expected, &dumped, "FileLog's segment")?;
    println!(
        "metalog: Kafka's kafka-dump-log decoded all {} records sluice wrote",
        dumped.len()
    );
    Ok(())
}

fn sluice_snapshots_kafka_reads(root: &Path, work: &Path) -> Result<()> {
    let dir = work.join("snapshot");
    let expected = example(root, "checkpoint", &dir)?;
    let dumped = dump(root, &dir, "checkpoint")?;
    compare(&expected, &dumped, "FileLog's checkpoint")?;
    println!(
        "metalog: Kafka's kafka-dump-log decoded the snapshot sluice wrote ({} records)",
        dumped.len()
    );
    Ok(())
}

/// Checks each `<offset> <json>` expectation against Kafka's dump, and that it has no more.
fn compare(expected: &str, dumped: &BTreeMap<i64, Value>, what: &str) -> Result<()> {
    let mut problems = Vec::new();
    let mut count = 0;
    for line in expected.lines() {
        let (offset, want) = line.split_once(' ').context("expectation line")?;
        let offset: i64 = offset.parse()?;
        let want: Value = serde_json::from_str(want)?;
        match dumped.get(&offset) {
            None => problems.push(format!("offset {offset}: not in Kafka's dump")),
            Some(got) if !contains(got, &want) => {
                problems.push(format!(
                    "offset {offset}: Kafka decoded {got}, expected {want}"
                ));
            }
            Some(_) => count += 1,
        }
    }
    if dumped.len() != count || !problems.is_empty() {
        bail!(
            "kafka-dump-log disagrees with {what} ({} records dumped, {count} matched):\n{}",
            dumped.len(),
            problems.join("\n")
        );
    }
    Ok(())
}

fn kafka_writes_sluice_reads(root: &Path, work: &Path) -> Result<()> {
    let broker = work.join("kafka");
    let started = Command::new(root.join("tests/kafka-ref/start"))
        .arg("--dir")
        .arg(&broker)
        .output()
        .context("starting the reference Kafka")?;
    let made = (|| {
        if !started.status.success() {
            bail!(
                "tests/kafka-ref/start failed: {}",
                String::from_utf8_lossy(&started.stderr)
            );
        }
        let bootstrap = String::from_utf8(started.stdout.clone())?.trim().to_owned();
        let args = [
            "kafka-topics",
            "--bootstrap-server",
            &bootstrap,
            "--create",
            "--topic",
        ];
        let tool = root.join("tests/kafka-ref/kafka-tool");
        run(
            root,
            &tool,
            &[&args[..], &["orders", "--partitions", "3"]].concat(),
        )
    })();
    let stopped = run(
        root,
        &root.join("tests/kafka-ref/stop"),
        &[&broker.to_string_lossy()],
    );
    made?;
    stopped?;
    let copy = work.join("kafka-log");
    std::fs::create_dir_all(&copy)?;
    for path in std::fs::read_dir(broker.join("data/__cluster_metadata-0"))? {
        let path = path?.path();
        if path.extension().is_some_and(|e| e == "log") {
            std::fs::copy(&path, copy.join(path.file_name().context("file name")?))?;
        }
    }
    let dumped = dump(root, &copy, "log")?;
    let read = example(root, "read", &copy)?;
    let theirs: Vec<String> = dumped.iter().map(|(o, v)| summary(*o, v)).collect();
    let ours: Vec<&str> = read.lines().collect();
    if ours != theirs {
        bail!(
            "FileLog read Kafka's log as\n{}\nKafka dumps it as\n{}",
            read,
            theirs.join("\n")
        );
    }
    println!(
        "metalog: FileLog read all {} records Kafka wrote, as Kafka dumps them",
        ours.len()
    );
    Ok(())
}

/// `<offset> <TYPE> <version>` or `<offset> LeaderChange <leader>`, as `metalog_oracle read`
/// prints.
fn summary(offset: i64, v: &Value) -> String {
    match v.get("LeaderChange") {
        Some(lc) => format!("{offset} LeaderChange {}", lc["leaderId"]),
        None => format!(
            "{offset} {} {}",
            v["type"].as_str().unwrap_or("?"),
            v["version"]
        ),
    }
}

/// Is every field of `want` in `got` with the same value (objects recursively)?
fn contains(got: &Value, want: &Value) -> bool {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => w
            .iter()
            .all(|(k, wv)| g.get(k).is_some_and(|gv| contains(gv, wv))),
        _ => got == want,
    }
}

/// Runs `metalog_oracle MODE DIR` and returns its output.
fn example(root: &Path, mode: &str, dir: &Path) -> Result<String> {
    let out = Command::new(env!("CARGO"))
        .current_dir(root)
        .args([
            "run",
            "-q",
            "-p",
            "sluice-controller",
            "--example",
            "metalog_oracle",
            "--",
        ])
        .arg(mode)
        .arg(dir)
        .output()
        .context("running metalog_oracle")?;
    if !out.status.success() {
        bail!(
            "metalog_oracle {mode} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// Kafka's `kafka-dump-log --cluster-metadata-decoder` over every `.{ext}` file in `dir`: each
/// record's decoded JSON by offset (a LeaderChange as `{"LeaderChange": ..}`; a snapshot's
/// header and footer are left out). Fails if the tool fails, prints an error, or calls a
/// batch invalid.
fn dump(root: &Path, dir: &Path, ext: &str) -> Result<BTreeMap<i64, Value>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.retain(|p| p.extension().is_some_and(|e| e == ext));
    files.sort();
    let mut args = vec![
        "kafka-dump-log".to_owned(),
        "--cluster-metadata-decoder".to_owned(),
    ];
    args.push("--files".to_owned());
    args.push(
        files
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(","),
    );
    let out = Command::new(root.join("tests/kafka-ref/kafka-tool"))
        .args(&args)
        .output()
        .context("running kafka-dump-log")?;
    let text = String::from_utf8(out.stdout)?;
    let bad = text
        .lines()
        .find(|l| l.contains("isvalid: false") || l.contains("Exception") || l.contains("Error"));
    if !out.status.success() || bad.is_some() {
        bail!(
            "kafka-dump-log failed on {}: {}\n{}",
            dir.display(),
            bad.unwrap_or(""),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut records = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("| offset: ")) {
        let offset: i64 = line["| offset: ".len()..]
            .split(' ')
            .next()
            .unwrap_or("")
            .parse()
            .with_context(|| format!("offset in {line}"))?;
        let value = if let Some((_, json)) = line.split_once(" payload: ") {
            serde_json::from_str(json)?
        } else if line.contains(" SnapshotHeader {") || line.contains(" SnapshotFooter {") {
            continue;
        } else if let Some((_, json)) = line.split_once(" LeaderChange: ") {
            serde_json::json!({ "LeaderChange": serde_json::from_str::<Value>(json)? })
        } else {
            bail!("kafka-dump-log printed a record it did not decode: {line}");
        };
        records.insert(offset, value);
    }
    Ok(records)
}

/// Runs `program args` from `root`, failing with its stderr.
fn run(root: &Path, program: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new(program)
        .current_dir(root)
        .args(args)
        .output()
        .with_context(|| format!("running {}", program.display()))?;
    if !out.status.success() {
        bail!(
            "{} {args:?} failed: {}",
            program.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
