//! Tidy checks on this crate's own source (`src/`, subfolders included), through
//! `sluice-tidy`: every file opens with a `//!` module doc, no `.unwrap()` outside unit-test
//! modules, lines of at most 100 characters and functions of at most 80 lines (the listed
//! exceptions are a ratchet: each names why, and the test fails when one is gone or grows),
//! and no loop in the graph of which file uses which.

/// Functions allowed over 80 lines: (file under src/, fn, why).
const LONG_FNS: &[(&str, &str, &str)] = &[];

/// Files allowed some lines over 100 characters, at most that many: (file, count, why).
const LONG_LINES: &[(&str, usize, &str)] = &[];

#[test]
fn source_is_tidy() {
    let rules = sluice_tidy::Rules {
        long_fns_allowed: LONG_FNS,
        long_lines_allowed: LONG_LINES,
        ..Default::default()
    };
    let problems = sluice_tidy::check(env!("CARGO_MANIFEST_DIR"), &rules);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn no_import_loops() {
    let loops = sluice_tidy::import_loops(env!("CARGO_MANIFEST_DIR"));
    let shown: Vec<String> = loops.iter().map(|l| l.join(" -> ")).collect();
    assert!(
        loops.is_empty(),
        "files that use each other in a loop:\n{}",
        shown.join("\n")
    );
}
