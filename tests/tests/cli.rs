//! The operator CLI (`sluice topic|group|produce|consume`) round-trips against a real broker.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use sluice_tests::{Broker, sluice_bin};

fn sluice(bootstrap: &str, args: &[&str], stdin: Option<&str>) -> Output {
    // `--bootstrap` last, as users type it (`sluice topic create orders ... --bootstrap X`);
    // `bootstrap_anywhere_on_the_command_line` checks the other places.
    let mut cmd = Command::new(sluice_bin());
    cmd.args(args).args(["--bootstrap", bootstrap]);
    run(cmd, stdin)
}

fn run(mut cmd: Command, stdin: Option<&str>) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sluice runs");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("stdin written");
    } else {
        drop(child.stdin.take());
    }
    child.wait_with_output().expect("sluice finishes")
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn topic_produce_consume_group_round_trip() {
    let b = Broker::start(&["--set", "group_initial_rebalance_delay_ms=0"]);
    let bs = b.bootstrap();
    let bs = bs.as_str();
    ok(&sluice(
        bs,
        &[
            "topic",
            "create",
            "cli-t",
            "--partitions",
            "3",
            "--config",
            "retention.ms=3600000",
        ],
        None,
    ));
    let again = sluice(bs, &["topic", "create", "cli-t"], None);
    assert!(!again.status.success(), "creating twice fails");
    assert!(String::from_utf8_lossy(&again.stderr).contains("TOPIC_ALREADY_EXISTS"));
    assert!(
        ok(&sluice(bs, &["topic", "list"], None))
            .lines()
            .any(|l| l == "cli-t")
    );
    let lines: String = (0..30)
        .map(|i| format!("key{}:value{i}\n", i % 5))
        .collect();
    ok(&sluice(
        bs,
        &["produce", "cli-t", "--key-separator", ":"],
        Some(&lines),
    ));
    let described = ok(&sluice(bs, &["topic", "describe", "cli-t"], None));
    assert!(described.contains("retention.ms=3600000"), "{described}");
    // Keys land where the Java client's murmur2 puts them: same key, same partition.
    let all = ok(&sluice(
        bs,
        &["consume", "cli-t", "--exit", "--format", "json"],
        None,
    ));
    let records: Vec<&str> = all.lines().collect();
    assert_eq!(records.len(), 30, "{all}");
    for k in 0..5 {
        let parts: std::collections::BTreeSet<&str> = records
            .iter()
            .filter(|r| r.contains(&format!("\"key\":\"key{k}\"")))
            .map(|r| r.split(',').next().unwrap_or(""))
            .collect();
        assert_eq!(parts.len(), 1, "key{k} in one partition: {parts:?}");
    }
    // A group consumes everything once, commits, and is described with zero lag.
    let got = ok(&sluice(
        bs,
        &["consume", "cli-t", "--group", "cli-g", "--count", "30"],
        None,
    ));
    assert_eq!(got.lines().count(), 30);
    let listed = ok(&sluice(bs, &["group", "list"], None));
    assert!(
        listed.lines().any(|l| l.starts_with("cli-g\tEmpty")),
        "{listed}"
    );
    let described = ok(&sluice(bs, &["group", "describe", "cli-g"], None));
    let lags: Vec<&str> = described
        .lines()
        .filter(|l| l.starts_with("cli-t"))
        .map(|l| l.split_whitespace().nth(4).unwrap_or("?"))
        .collect();
    assert_eq!(lags.len(), 3, "{described}");
    assert!(lags.iter().all(|l| *l == "0"), "{described}");
    // Reset to earliest and the group reads everything again.
    ok(&sluice(
        bs,
        &[
            "group",
            "reset-offsets",
            "cli-g",
            "--topic",
            "cli-t",
            "--to-earliest",
            "--execute",
        ],
        None,
    ));
    let again = ok(&sluice(
        bs,
        &["consume", "cli-t", "--group", "cli-g", "--count", "30"],
        None,
    ));
    assert_eq!(again.lines().count(), 30);
    ok(&sluice(bs, &["group", "delete", "cli-g"], None));
    ok(&sluice(bs, &["topic", "delete", "cli-t"], None));
    assert!(
        !ok(&sluice(bs, &["topic", "list"], None))
            .lines()
            .any(|l| l == "cli-t")
    );
}

/// `--bootstrap` (or Kafka's spelling, `--bootstrap-server`) is accepted before the subcommand,
/// between it and its action, and after everything (issue 18: `sluice topic create orders
/// --partitions 3 --bootstrap HOST:PORT` was refused).
#[test]
fn bootstrap_anywhere_on_the_command_line() {
    let b = Broker::start(&[]);
    let bs = b.bootstrap();
    let bs = bs.as_str();
    let placements: [&[&str]; 4] = [
        &[
            "topic",
            "create",
            "bs-a",
            "--partitions",
            "3",
            "--bootstrap",
            bs,
        ],
        &[
            "topic",
            "--bootstrap",
            bs,
            "create",
            "bs-b",
            "--partitions",
            "2",
        ],
        &["--bootstrap", bs, "topic", "create", "bs-c"],
        &["topic", "create", "bs-d", "--bootstrap-server", bs],
    ];
    for args in placements {
        let mut cmd = Command::new(sluice_bin());
        cmd.args(args);
        ok(&run(cmd, None));
    }
    let mut cmd = Command::new(sluice_bin());
    cmd.args(["topic", "list", "--bootstrap", bs]);
    let listed = ok(&run(cmd, None));
    for t in ["bs-a", "bs-b", "bs-c", "bs-d"] {
        assert!(listed.lines().any(|l| l.trim() == t), "{t} not in {listed}");
    }
    let mut cmd = Command::new(sluice_bin());
    cmd.args(["topic", "describe", "bs-a", "--bootstrap", bs]);
    let described = ok(&run(cmd, None));
    assert!(
        described.contains("3"),
        "bs-a has 3 partitions: {described}"
    );
}
