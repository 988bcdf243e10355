//! Tidy checks on the crate's own source: every file opens with a `//!` module doc, and no
//! `unwrap()` appears outside unit-test modules (storage code asserts invariants with a
//! message or returns typed errors instead).

use std::path::Path;

#[test]
fn module_docs_and_no_stray_unwrap() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut checked = 0;
    for entry in std::fs::read_dir(&src).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read file");
        assert!(
            text.starts_with("//!"),
            "{} must open with a //! module doc",
            path.display()
        );
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for (i, line) in code.lines().enumerate() {
            let l = line.trim_start();
            if l.starts_with("//") {
                continue;
            }
            assert!(
                !l.contains(".unwrap()"),
                "{}:{}: stray unwrap()",
                path.display(),
                i + 1
            );
            assert!(
                line.chars().count() <= 100,
                "{}:{}: line longer than 100 characters",
                path.display(),
                i + 1
            );
        }
        checked += 1;
    }
    assert!(checked >= 10, "found only {checked} source files");
}
