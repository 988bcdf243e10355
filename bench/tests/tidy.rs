//! Tidy checks on this crate's own source (`src/`, subfolders included), through
//! `sluice-tidy`: every file opens with a `//!` module doc, no `.unwrap()` outside unit-test
//! modules, lines of at most 100 characters and functions of at most 80 lines (the listed
//! exceptions are a ratchet: each names why, and the test fails when one is gone or grows),
//! and no loop in the graph of which file uses which.

/// A reason an exception below is allowed.
const BENCH_DRIVER: &str = "a benchmark driver, not broker code; to split";

/// A reason an exception below is allowed.
const TEXTS: &str = "table formats and texts rustfmt cannot break";

/// Functions allowed over 80 lines: (file under src/, fn, why).
const LONG_FNS: &[(&str, &str, &str)] = &[
    ("plot.rs", "svg", BENCH_DRIVER),
    ("storage.rs", "run", BENCH_DRIVER),
];

/// Files allowed some lines over 100 characters, at most that many: (file, count, why).
const LONG_LINES: &[(&str, usize, &str)] = &[
    ("main.rs", 1, TEXTS),
    ("plot.rs", 1, TEXTS),
    ("raw.rs", 1, TEXTS),
    ("storage.rs", 3, TEXTS),
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
