//! Tidy checks on the crate's own source (`src/` and its subfolders): every file opens with a
//! `//!` module doc, no `unwrap()` appears outside unit-test modules (storage code asserts
//! invariants with a message or returns typed errors instead), no line is longer than 100
//! characters, no function outside unit-test modules is longer than 80 lines, and the
//! compactor does not reach into the partition (the dependency goes one way).

use std::path::Path;

#[test]
fn source_is_tidy() {
    let rules = sluice_tidy::Rules {
        files_min: 20,
        ..Default::default()
    };
    sluice_tidy::assert_tidy(env!("CARGO_MANIFEST_DIR"), &rules);
}

#[test]
fn no_import_loops() {
    sluice_tidy::assert_no_import_loops(env!("CARGO_MANIFEST_DIR"));
}

#[test]
fn compaction_does_not_reach_into_the_partition() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let text = std::fs::read_to_string(src.join("compact.rs")).expect("read compact.rs");
    for (i, line) in sluice_tidy::code_of(&text).lines().enumerate() {
        assert!(
            !line.contains("crate::partition") && !line.contains("Partition<"),
            "src/compact.rs:{}: compact.rs must not use the partition (it is called by it)",
            i + 1
        );
    }
}
