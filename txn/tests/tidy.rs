//! Tidy checks on this crate's own source (`src/`, subfolders included), through
//! `sluice-tidy`: every file opens with a `//!` module doc, no `.unwrap()` outside unit-test
//! modules, lines of at most 100 characters and functions of at most 80 lines (no exceptions),
//! and no loop in the graph of which file uses which.

#[test]
fn source_is_tidy() {
    sluice_tidy::assert_tidy(env!("CARGO_MANIFEST_DIR"), &sluice_tidy::Rules::default());
}

#[test]
fn no_import_loops() {
    sluice_tidy::assert_no_import_loops(env!("CARGO_MANIFEST_DIR"));
}
