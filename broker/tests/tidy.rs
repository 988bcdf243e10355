//! Tidy checks on this crate's own source (`src/`, subfolders included), through
//! `sluice-tidy`: every file opens with a `//!` module doc, no `.unwrap()` outside unit-test
//! modules, lines of at most 100 characters and functions of at most 80 lines (the listed
//! exceptions are a ratchet: each names why, and the test fails when one is gone or grows),
//! and no loop in the graph of which file uses which.

/// A reason an exception below is allowed.
const CONTROL_PATH: &str = "an admin or control-plane handler, not on the produce or fetch path; to split into named steps";

/// A reason an exception below is allowed.
const TEXTS: &str = "log and error texts (Kafka's own wording) rustfmt cannot break";

/// Functions allowed over 80 lines: (file under src/, fn, why).
const LONG_FNS: &[(&str, &str, &str)] = &[
    ("handlers/configs.rs", "describe", CONTROL_PATH),
    ("handlers/configs.rs", "describe_broker", CONTROL_PATH),
    ("handlers/configs.rs", "plan_broker_change", CONTROL_PATH),
    ("handlers/configs.rs", "alter", CONTROL_PATH),
    ("handlers/configs.rs", "incremental_alter", CONTROL_PATH),
    ("handlers/create_topics.rs", "handle", CONTROL_PATH),
    ("handlers/groups.rs", "offset_fetch", CONTROL_PATH),
    ("handlers/list_offsets.rs", "handle", CONTROL_PATH),
    (
        "handlers/metadata.rs",
        "describe_topic_partitions",
        CONTROL_PATH,
    ),
    ("metrics.rs", "encode", CONTROL_PATH),
    ("registry.rs", "apply_one", CONTROL_PATH),
    ("runtime.rs", "run", CONTROL_PATH),
    ("runtime.rs", "core_main", CONTROL_PATH),
    ("tune/checks.rs", "irq_affinity", CONTROL_PATH),
];

/// Files allowed some lines over 100 characters, at most that many: (file, count, why).
const LONG_LINES: &[(&str, usize, &str)] = &[
    ("client_metrics.rs", 1, TEXTS),
    ("connection.rs", 1, TEXTS),
    ("core.rs", 2, TEXTS),
    ("group_config.rs", 12, TEXTS),
    ("handlers/configs.rs", 1, TEXTS),
    ("handlers/create_topics.rs", 3, TEXTS),
    ("handlers/groups.rs", 1, TEXTS),
    ("metadata.rs", 2, TEXTS),
    ("metrics.rs", 3, TEXTS),
    ("startup.rs", 3, TEXTS),
];

#[test]
fn source_is_tidy() {
    let rules = sluice_tidy::Rules {
        long_fns_allowed: LONG_FNS,
        long_lines_allowed: LONG_LINES,
        ..Default::default()
    };
    sluice_tidy::assert_tidy(env!("CARGO_MANIFEST_DIR"), &rules);
}

#[test]
fn no_import_loops() {
    sluice_tidy::assert_no_import_loops(env!("CARGO_MANIFEST_DIR"));
}
