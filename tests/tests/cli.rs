//! The operator CLI (`sluice topic|group|produce|consume`) round-trips against a real broker:
//! each test runs the real `sluice` binary's client commands against a broker started on a free
//! port and checks what they print (stdout, and stderr with the exit code when they fail).

use std::io::Write;
use std::process::{Command, Output, Stdio};

use sluice_net::client::partition_for_key;
use sluice_tests::{Broker, sluice_bin, uniq};

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

/// The standard error of a command that must fail with exit code 1 (a client command's error).
fn fails(o: &Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(1),
        "should fail: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Each line split at whitespace, for the fixed-width tables.
fn rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
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

/// `topic create|describe|alter-config|list|delete` say what they did, and `describe` shows the
/// partitions, their leader, their start and end offsets and the topic's overrides as they change.
#[test]
fn topic_commands_print_what_they_did() {
    let b = Broker::start(&[]);
    let bs = b.bootstrap();
    let bs = bs.as_str();
    let t = uniq("cli-topic");
    let created = ok(&sluice(
        bs,
        &[
            "topic",
            "create",
            &t,
            "--partitions",
            "3",
            "--config",
            "retention.ms=3600000",
        ],
        None,
    ));
    assert_eq!(created, format!("created topic {t} with 3 partitions\n"));
    let described = ok(&sluice(bs, &["topic", "describe", &t], None));
    let lines: Vec<&str> = described.lines().collect();
    assert_eq!(
        lines[0],
        format!("topic {t}: 3 partitions; configs: retention.ms=3600000")
    );
    let table = rows(&described);
    assert_eq!(table[1], ["PARTITION", "LEADER", "START", "END"]);
    assert_eq!(table.len(), 5, "{described}");
    for (p, row) in table[2..].iter().enumerate() {
        assert_eq!(row[0], p.to_string(), "{described}");
        assert!(row[1].parse::<i32>().is_ok_and(|l| l >= 0), "{described}");
        assert_eq!(row[2..], ["0", "0"], "{described}");
    }
    // Four records into partition 2 move its end offset only.
    ok(&sluice(
        bs,
        &["produce", &t, "--partition", "2"],
        Some("a\nb\nc\nd\n"),
    ));
    let table = rows(&ok(&sluice(bs, &["topic", "describe", &t], None)));
    let ends: Vec<&str> = table[2..].iter().map(|r| r[3].as_str()).collect();
    assert_eq!(ends, ["0", "0", "4"]);
    let altered = ok(&sluice(
        bs,
        &[
            "topic",
            "alter-config",
            &t,
            "--set",
            "segment.ms=100000",
            "--delete",
            "retention.ms",
        ],
        None,
    ));
    assert_eq!(altered, format!("altered configs of topic {t}\n"));
    let described = ok(&sluice(bs, &["topic", "describe", &t], None));
    assert_eq!(
        described.lines().next(),
        Some(format!("topic {t}: 3 partitions; configs: segment.ms=100000").as_str())
    );
    let bad = fails(&sluice(
        bs,
        &["topic", "alter-config", &t, "--set", "x"],
        None,
    ));
    assert_eq!(bad, "sluice: `x` is not key=value\n");
    assert!(
        ok(&sluice(bs, &["topic", "list"], None))
            .lines()
            .any(|l| l == t)
    );
    let deleted = ok(&sluice(bs, &["topic", "delete", &t], None));
    assert_eq!(deleted, format!("deleted topic {t}\n"));
    assert!(
        !ok(&sluice(bs, &["topic", "list"], None))
            .lines()
            .any(|l| l == t)
    );
    let gone = fails(&sluice(bs, &["topic", "describe", &t], None));
    assert_eq!(
        gone,
        format!("sluice: topic {t}: Kafka error 3 UNKNOWN_TOPIC_OR_PARTITION\n")
    );
}

/// Records produced with `--partition` and with keys come back from `consume` in each format,
/// keyed ones in the partition the Java client's murmur2 picks; `--from`, `--count` and
/// `--exit` bound what is printed; bad `--acks` and `--from` values are refused.
#[test]
fn produce_and_consume_keys_partitions_and_formats() {
    let b = Broker::start(&[]);
    let bs = b.bootstrap();
    let bs = bs.as_str();
    let t = uniq("cli-records");
    ok(&sluice(
        bs,
        &["topic", "create", &t, "--partitions", "3"],
        None,
    ));
    let o = sluice(bs, &["produce", &t, "--partition", "1"], Some("a\nb\nc\n"));
    ok(&o);
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        format!("produced 3 records to {t}\n")
    );
    let keyed: String = (0..6).map(|i| format!("k{i}:v{i}\n")).collect();
    ok(&sluice(
        bs,
        &["produce", &t, "--key-separator", ":"],
        Some(&keyed),
    ));

    let json = ok(&sluice(
        bs,
        &["consume", &t, "--exit", "--format", "json"],
        None,
    ));
    let records: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    assert_eq!(records.len(), 9, "{json}");
    let unkeyed: Vec<(i64, i64, &str)> = records
        .iter()
        .filter(|r| r["key"].is_null())
        .map(|r| {
            let p = r["partition"].as_i64().expect("partition");
            let o = r["offset"].as_i64().expect("offset");
            (p, o, r["value"].as_str().expect("value"))
        })
        .collect();
    assert_eq!(unkeyed, [(1, 0, "a"), (1, 1, "b"), (1, 2, "c")]);
    for r in records.iter().filter(|r| !r["key"].is_null()) {
        let key = r["key"].as_str().expect("key");
        let expected = partition_for_key(key.as_bytes(), 3);
        assert_eq!(r["partition"].as_i64(), Some(i64::from(expected)), "{r}");
        assert_eq!(r["value"].as_str(), Some(key.replace('k', "v").as_str()));
        assert!(r["timestamp"].as_i64().is_some_and(|ts| ts > 0), "{r}");
    }

    let mut kv: Vec<String> = ok(&sluice(
        bs,
        &["consume", &t, "--exit", "--format", "kv"],
        None,
    ))
    .lines()
    .map(str::to_owned)
    .collect();
    kv.sort();
    let mut expected: Vec<String> = ["\ta", "\tb", "\tc"].map(str::to_owned).to_vec();
    expected.extend((0..6).map(|i| format!("k{i}\tv{i}")));
    expected.sort();
    assert_eq!(kv, expected);

    let mut text: Vec<String> = ok(&sluice(bs, &["consume", &t, "--exit"], None))
        .lines()
        .map(str::to_owned)
        .collect();
    text.sort();
    let mut values: Vec<String> = ["a", "b", "c"].map(str::to_owned).to_vec();
    values.extend((0..6).map(|i| format!("v{i}")));
    values.sort();
    assert_eq!(text, values);

    let two = ok(&sluice(bs, &["consume", &t, "--count", "2"], None));
    assert_eq!(two.lines().count(), 2, "{two}");
    let none = ok(&sluice(
        bs,
        &["consume", &t, "--from", "end", "--exit"],
        None,
    ));
    assert_eq!(none, "");
    // From offset 1 every non-empty partition skips its first record.
    let later = ok(&sluice(
        bs,
        &["consume", &t, "--from", "1", "--exit", "--format", "json"],
        None,
    ));
    let partitions: std::collections::BTreeSet<i64> = records
        .iter()
        .filter_map(|r| r["partition"].as_i64())
        .collect();
    assert_eq!(later.lines().count(), 9 - partitions.len(), "{later}");
    assert!(!later.contains("\"offset\":0,"), "{later}");

    // No stdin: the command refuses the flag before reading any.
    let bad = fails(&sluice(bs, &["produce", &t, "--acks", "2"], None));
    assert_eq!(bad, "sluice: acks must be 0, 1 or all, not 2\n");
    let bad = fails(&sluice(bs, &["consume", &t, "--from", "middle"], None));
    assert_eq!(
        bad,
        "sluice: --from is beginning, end or an offset, not middle\n"
    );
}

/// After `consume --group` commits, `group list` shows the group Empty and `group describe` its
/// committed offsets, log ends and lag per partition; `reset-offsets` plans (dry run) and then
/// commits new offsets, which the group reads from; `group delete` removes it.
#[test]
fn group_commands_after_a_consumer_commits() {
    let b = Broker::start(&["--set", "group_initial_rebalance_delay_ms=0"]);
    let bs = b.bootstrap();
    let bs = bs.as_str();
    let t = uniq("cli-gt");
    let g = uniq("cli-g");
    ok(&sluice(
        bs,
        &["topic", "create", &t, "--partitions", "2"],
        None,
    ));
    ok(&sluice(
        bs,
        &["produce", &t, "--partition", "0"],
        Some("1\n2\n3\n4\n5\n"),
    ));
    ok(&sluice(
        bs,
        &["produce", &t, "--partition", "1"],
        Some("6\n7\n8\n"),
    ));
    let got = ok(&sluice(
        bs,
        &["consume", &t, "--group", &g, "--count", "8"],
        None,
    ));
    let mut values: Vec<&str> = got.lines().collect();
    values.sort();
    assert_eq!(values, ["1", "2", "3", "4", "5", "6", "7", "8"]);

    let listed = ok(&sluice(bs, &["group", "list"], None));
    assert!(
        listed.lines().any(|l| l == format!("{g}\tEmpty\tconsumer")),
        "{listed}"
    );
    let described = ok(&sluice(bs, &["group", "describe", &g], None));
    assert_eq!(
        described.lines().next(),
        Some(format!("group {g}: state Empty, protocol consumer , 0 members").as_str())
    );
    let table = rows(&described);
    assert_eq!(
        table[1][..5],
        [
            "TOPIC",
            "PARTITION",
            "CURRENT-OFFSET",
            "LOG-END-OFFSET",
            "LAG"
        ]
    );
    assert_eq!(
        table[2..],
        [[&t, "0", "5", "5", "0", "-"], [&t, "1", "3", "3", "0", "-"]]
    );

    // Two more records: partition 0 lags by two.
    ok(&sluice(
        bs,
        &["produce", &t, "--partition", "0"],
        Some("9\n10\n"),
    ));
    let table = rows(&ok(&sluice(bs, &["group", "describe", &g], None)));
    assert_eq!(table[2], [&t, "0", "5", "7", "2", "-"]);

    let plan = ok(&sluice(
        bs,
        &[
            "group",
            "reset-offsets",
            &g,
            "--topic",
            &t,
            "--to-offset",
            "1",
        ],
        None,
    ));
    assert_eq!(
        plan,
        format!("{t}\t0\t1\n{t}\t1\t1\n(dry run: add --execute to commit these offsets)\n")
    );
    let table = rows(&ok(&sluice(bs, &["group", "describe", &g], None)));
    assert_eq!(table[2][2], "5", "a dry run commits nothing");
    let reset = ok(&sluice(
        bs,
        &[
            "group",
            "reset-offsets",
            &g,
            "--topic",
            &t,
            "--to-earliest",
            "--execute",
        ],
        None,
    ));
    assert_eq!(
        reset,
        format!("{t}\t0\t0\n{t}\t1\t0\nreset 2 partitions of {t} for group {g}\n")
    );
    let table = rows(&ok(&sluice(bs, &["group", "describe", &g], None)));
    assert_eq!(
        table[2..],
        [[&t, "0", "0", "7", "7", "-"], [&t, "1", "0", "3", "3", "-"]]
    );
    let again = ok(&sluice(
        bs,
        &["consume", &t, "--group", &g, "--count", "10"],
        None,
    ));
    assert_eq!(again.lines().count(), 10, "{again}");

    assert_eq!(
        ok(&sluice(bs, &["group", "delete", &g], None)),
        format!("deleted group {g}\n")
    );
    let listed = ok(&sluice(bs, &["group", "list"], None));
    assert!(
        !listed.lines().any(|l| l.starts_with(&format!("{g}\t"))),
        "{listed}"
    );
}

/// `start` and `tune` take no `--bootstrap` (clap accepts the global flag; `main` refuses it
/// with exit code 2), and a client command that cannot reach its broker fails with exit 1.
#[test]
fn bootstrap_refused_by_start_and_tune_and_unreachable_brokers_fail() {
    for command in ["start", "tune"] {
        let mut cmd = Command::new(sluice_bin());
        cmd.args([command, "--bootstrap", "127.0.0.1:9"]);
        let o = run(cmd, None);
        assert_eq!(o.status.code(), Some(2), "{command}");
        assert_eq!(
            String::from_utf8_lossy(&o.stderr),
            "sluice: --bootstrap is for the client commands (topic, group, produce, consume); \
             a broker listens with --listen\n",
            "{command}"
        );
        assert!(o.stdout.is_empty(), "{command}");
    }
    // Port 1 on loopback: nothing listens there, the connection is refused at once.
    let err = fails(&sluice("127.0.0.1:1", &["topic", "list"], None));
    assert!(err.starts_with("sluice: "), "{err}");
}
