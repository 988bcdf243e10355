//! Developer tasks.
//!
//! `cargo xtask codegen` resolves `org.apache.kafka:kafka-clients` with Maven, reads Kafka's
//! message schemas (`common/message/*.json`) out of the jar and writes the Rust codec into
//! `net/src/generated/`. `cargo xtask codegen --check` regenerates into a temporary directory and
//! fails if the committed files differ. `cargo xtask crosscheck [seeds]` has Kafka's own Java
//! classes parse and re-serialize random encodings from sluice's encoder, and compares `net`'s
//! error-code table with Kafka's `Errors` enum. Only these commands need Java and Maven;
//! `cargo build` never does. `cargo xtask simulate [--seeds N] [--steps N] [--first N]` runs
//! the quorum simulator's long sweep in release. `cargo xtask metalog` has Kafka's
//! `kafka-dump-log` read a metadata log sluice wrote, and sluice read one Kafka wrote.

mod generate;
mod metalog;
mod schema;

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Kafka release whose schemas are generated; the reference broker runs the same version.
pub const KAFKA_VERSION: &str = "4.4.0";

/// The slf4j that kafka-clients 4.4.0 declares as its runtime dependency (its pom): Kafka's
/// `Errors` class logs, so the crosscheck's error-code comparison cannot load it without one.
const SLF4J_VERSION: &str = "1.7.36";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("codegen") => {
            let check = match args.get(1).map(String::as_str) {
                None => false,
                Some("--check") => true,
                Some(other) => bail!("unknown codegen flag {other:?} (expected --check)"),
            };
            codegen(check)
        }
        Some("crosscheck") => {
            let seeds = match args.get(1) {
                None => 16,
                Some(n) => n.parse().context("crosscheck takes a seed count")?,
            };
            crosscheck(seeds)
        }
        Some("simulate") => simulate(&args[1..]),
        Some("metalog") => metalog::metalog(&repo_root()),
        _ => {
            eprintln!(
                "usage: cargo xtask codegen [--check] | cargo xtask crosscheck [seeds] | \
                 cargo xtask simulate [--seeds N] [--steps N] [--first N] | cargo xtask metalog"
            );
            std::process::exit(2);
        }
    }
}

/// The quorum simulator's long sweep: `--seeds` seeds (default 10,000) of `--steps` steps
/// (default 5,000) from seed `--first` (default 1,000, past the fixed CI seeds), in release;
/// it prints its figures and fails on the first seed that breaks a checker, naming the replay.
fn simulate(args: &[String]) -> Result<()> {
    let mut env = vec![
        ("SLUICE_SIM_SEEDS", "10000".to_owned()),
        ("SLUICE_SIM_STEPS", "5000".to_owned()),
        ("SLUICE_SIM_FIRST", "1000".to_owned()),
    ];
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let key = match flag.as_str() {
            "--seeds" => "SLUICE_SIM_SEEDS",
            "--steps" => "SLUICE_SIM_STEPS",
            "--first" => "SLUICE_SIM_FIRST",
            other => bail!("unknown simulate flag {other:?}"),
        };
        let value = it.next().context("a simulate flag takes a number")?;
        value
            .parse::<u64>()
            .context("a simulate flag takes a number")?;
        if let Some(slot) = env.iter_mut().find(|(k, _)| *k == key) {
            slot.1 = value.clone();
        }
    }
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(repo_root())
        .args([
            "test",
            "-p",
            "sluice-quorum",
            "--release",
            "--test",
            "sim",
            "long_run",
        ])
        .args(["--", "--ignored", "--nocapture"])
        .envs(env)
        .status()
        .context("run cargo test")?;
    if !status.success() {
        bail!("the simulator found a violation (or failed to build): see above");
    }
    Ok(())
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the repo root")
        .to_path_buf()
}

fn codegen(check: bool) -> Result<()> {
    let root = repo_root();
    let work = std::env::temp_dir().join(format!("sluice-codegen-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let result = codegen_in(&root, &work, check);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn codegen_in(root: &Path, work: &Path, check: bool) -> Result<()> {
    let schemas = read_schemas(work)?;
    let files = generate::generate(&schemas)?;
    let target = root.join("net/src/generated");
    let out = if check {
        work.join("generated")
    } else {
        target.clone()
    };
    if out.exists() {
        std::fs::remove_dir_all(&out)?;
    }
    std::fs::create_dir_all(&out)?;
    let mut paths = Vec::new();
    for (name, text) in &files {
        let p = out.join(name);
        std::fs::write(&p, text)?;
        paths.push(p);
    }
    rustfmt(&paths)?;
    if check {
        let status = Command::new("diff")
            .arg("-r")
            .arg("-q")
            .arg(&target)
            .arg(&out)
            .status()
            .context("running diff")?;
        if !status.success() {
            bail!("net/src/generated is stale: run `cargo xtask codegen` and commit the result");
        }
        eprintln!(
            "codegen: net/src/generated matches Kafka {KAFKA_VERSION} ({} files)",
            files.len()
        );
    } else {
        eprintln!("codegen: wrote {} files to {}", files.len(), out.display());
    }
    Ok(())
}

/// Has Kafka's own Java message classes parse and re-serialize seeded random encodings of every
/// request, response and header, and (through Kafka's `MetadataRecordSerde`) of every
/// metadata-log record type at every version, from sluice's encoder
/// (`net/examples/dump_vectors.rs`, `net/crosscheck/CrossCheck.java`); fails unless Kafka reads every byte and writes the same
/// bytes back. Then compares `net`'s whole error-code table (`net/examples/dump_error_codes.rs`)
/// with Kafka's `Errors.values()`: every code on both sides, same name, same retriable flag.
/// Needs Maven and Java 17+, like codegen.
fn crosscheck(seeds: u64) -> Result<()> {
    let root = repo_root();
    let work = std::env::temp_dir().join(format!("sluice-crosscheck-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let result = (|| {
        let mut classpath = vec![fetch_jar(&work)?];
        // MetadataRecordSerde (kafka-metadata) and its base class and ApiMessageAndVersion
        // (kafka-server-common), for the metadata-record vectors.
        for artifact in ["kafka-metadata", "kafka-server-common"] {
            classpath.push(fetch_artifact(
                &work,
                "org.apache.kafka",
                artifact,
                KAFKA_VERSION,
            )?);
        }
        // slf4j-nop only keeps slf4j from warning that it has no binding.
        for artifact in ["slf4j-api", "slf4j-nop"] {
            classpath.push(fetch_artifact(&work, "org.slf4j", artifact, SLF4J_VERSION)?);
        }
        let vectors = work.join("vectors.txt");
        let seeds = seeds.to_string();
        let args = [
            "--features",
            "testgen",
            "--example",
            "dump_vectors",
            "--",
            &seeds,
        ];
        std::fs::write(&vectors, run_net_example(&root, &args)?)?;
        let errors = work.join("errors.txt");
        std::fs::write(
            &errors,
            run_net_example(&root, &["--example", "dump_error_codes"])?,
        )?;
        let classpath = std::env::join_paths(&classpath).context("jar paths")?;
        let status = Command::new("java")
            .arg("-cp")
            .arg(classpath)
            .arg(root.join("net/crosscheck/CrossCheck.java"))
            .arg(&vectors)
            .arg(&errors)
            .status()
            .context("running java (17+ needed for the crosscheck)")?;
        if !status.success() {
            bail!(
                "Kafka's classes rejected or changed some of sluice's encodings, or net's \
                 error-code table differs from Kafka's Errors (see above)"
            );
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&work);
    result
}

/// Runs one of `sluice-net`'s examples (`args` after `cargo run -q -p sluice-net`) and returns
/// its standard output.
fn run_net_example(root: &Path, args: &[&str]) -> Result<Vec<u8>> {
    let out = Command::new(env!("CARGO"))
        .current_dir(root)
        .args(["run", "-q", "-p", "sluice-net"])
        .args(args)
        .output()
        .with_context(|| format!("running sluice-net {args:?}"))?;
    if !out.status.success() {
        bail!(
            "sluice-net {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out.stdout)
}

fn fetch_jar(work: &Path) -> Result<PathBuf> {
    fetch_artifact(work, "org.apache.kafka", "kafka-clients", KAFKA_VERSION)
}

/// Copies `group:artifact:version`'s jar into `work/jar` with Maven and returns its path.
fn fetch_artifact(work: &Path, group: &str, artifact: &str, version: &str) -> Result<PathBuf> {
    let dir = work.join("jar");
    std::fs::create_dir_all(&dir)?;
    let status = Command::new("mvn")
        .arg("-q")
        .arg("dependency:copy")
        .arg(format!("-Dartifact={group}:{artifact}:{version}"))
        .arg(format!("-DoutputDirectory={}", dir.display()))
        .status()
        .context("running mvn (Maven is needed only for `cargo xtask codegen` and `crosscheck`)")?;
    if !status.success() {
        bail!("mvn dependency:copy failed for {group}:{artifact}:{version}");
    }
    let jar = dir.join(format!("{artifact}-{version}.jar"));
    if !jar.exists() {
        bail!("mvn did not produce {}", jar.display());
    }
    Ok(jar)
}

/// Returns (file name, contents) of every generated schema, sorted by file name: the
/// requests, responses and headers and KRaft's control records of kafka-clients
/// (`common/message`), and the metadata-log records of kafka-metadata (`common/metadata`).
fn read_schemas(work: &Path) -> Result<Vec<(String, String)>> {
    let clients = fetch_jar(work)?;
    let metadata = fetch_artifact(work, "org.apache.kafka", "kafka-metadata", KAFKA_VERSION)?;
    let mut out = Vec::new();
    for (jar, dir) in [(&clients, "common/message"), (&metadata, "common/metadata")] {
        out.extend(read_schema_dir(jar, dir, work)?);
    }
    out.sort();
    Ok(out)
}

/// The wanted schemas in `dir` of `jar`.
fn read_schema_dir(jar: &Path, dir: &str, work: &Path) -> Result<Vec<(String, String)>> {
    let into = work.join("schemas");
    let status = Command::new("unzip")
        .arg("-q")
        .arg("-o")
        .arg(jar)
        .arg(format!("{dir}/*.json"))
        .arg("-d")
        .arg(&into)
        .status()
        .context("running unzip")?;
    if !status.success() {
        bail!("unzip of {} failed", jar.display());
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(into.join(dir))? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .context("schema file name")?
            .to_string();
        let text = std::fs::read_to_string(&path)?;
        if schema::is_wanted(&text).with_context(|| name.clone())? {
            out.push((name, text));
        }
    }
    if out.is_empty() {
        bail!("no wanted schemas in {dir} of {}", jar.display());
    }
    Ok(out)
}

fn rustfmt(paths: &[PathBuf]) -> Result<()> {
    let status = Command::new("rustfmt")
        .arg("--edition")
        .arg("2024")
        .args(paths)
        .status()
        .context("running rustfmt")?;
    if !status.success() {
        bail!("rustfmt failed on generated code");
    }
    Ok(())
}
