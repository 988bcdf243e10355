//! Tidy checks on the crate's own source (`src/` and its subfolders): every file opens with a
//! `//!` module doc, no `unwrap()` appears outside unit-test modules (storage code asserts
//! invariants with a message or returns typed errors instead), no line is longer than 100
//! characters, no function outside unit-test modules is longer than 80 lines, and the
//! compactor does not reach into the partition (the dependency goes one way).

use std::path::{Path, PathBuf};

/// Longest function, from its `fn` line to its closing brace.
const FN_LINES_MAX: usize = 80;

/// Functions allowed to be longer, as `(file under src/, fn name, reason)`.
const LONG_FNS_ALLOWED: &[(&str, &str, &str)] = &[];

/// Every `.rs` file under `dir`, subfolders included, in a stable order.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// The code of a file before its unit-test module.
fn code_of(text: &str) -> &str {
    text.split("#[cfg(test)]").next().unwrap_or("")
}

/// Brace depth change of one line, ignoring comments, strings and char literals.
fn brace_delta(line: &str) -> i64 {
    let line = line.trim_start();
    if line.starts_with("//") {
        return 0;
    }
    let mut delta = 0;
    let mut chars = line.chars().peekable();
    let mut in_str = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' if in_str => {
                chars.next();
            }
            '"' => in_str = !in_str,
            '\'' if !in_str => {
                // A char literal ('{', '\'', 'x') or a lifetime ('a): skip a literal whole.
                let rest: String = chars.clone().take(3).collect();
                if rest.starts_with('\\') {
                    chars.nth(2);
                } else if rest.chars().nth(1) == Some('\'') {
                    chars.nth(1);
                }
            }
            '/' if !in_str && chars.peek() == Some(&'/') => break,
            '{' if !in_str => delta += 1,
            '}' if !in_str => delta -= 1,
            _ => {}
        }
    }
    delta
}

/// `(name, first line, line count)` of every function in `code`, nested ones included.
fn functions(code: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = code.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let l = line.trim_start();
        if l.starts_with("//") {
            continue;
        }
        // `fn` preceded only by qualifiers (`pub(crate) async fn`, `const fn`, ...).
        let Some(at) = l.find("fn ").filter(|&at| {
            l[..at].split_whitespace().all(|w| {
                w.starts_with("pub") || ["async", "const", "unsafe", "extern"].contains(&w)
            })
        }) else {
            continue;
        };
        let name: String = l[at + 3..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() {
            continue;
        }
        // From the `fn` line: the body opens at the first `{` and ends back at depth 0.
        let mut depth = 0i64;
        let mut opened = false;
        for (j, body_line) in lines.iter().enumerate().skip(i) {
            let d = brace_delta(body_line);
            if !opened && body_line.split("//").next().unwrap_or("").contains('{') {
                opened = true;
            }
            if !opened && body_line.trim_end().ends_with(';') {
                break; // a declaration without a body (trait method)
            }
            depth += d;
            if opened && depth <= 0 {
                out.push((name.clone(), i + 1, j - i + 1));
                break;
            }
        }
    }
    out
}

#[test]
fn module_docs_and_no_stray_unwrap() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut checked = 0;
    for path in rust_files(&src) {
        let text = std::fs::read_to_string(&path).expect("read file");
        assert!(
            text.starts_with("//!"),
            "{} must open with a //! module doc",
            path.display()
        );
        for (i, line) in code_of(&text).lines().enumerate() {
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
    assert!(checked >= 20, "found only {checked} source files");
}

#[test]
fn no_long_functions() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut long = Vec::new();
    let mut allowed_seen = 0;
    for path in rust_files(&src) {
        let text = std::fs::read_to_string(&path).expect("read file");
        let rel = path
            .strip_prefix(&src)
            .expect("under src")
            .to_string_lossy();
        let rel = rel.replace('\\', "/");
        for (name, line, count) in functions(code_of(&text)) {
            if count <= FN_LINES_MAX {
                continue;
            }
            if LONG_FNS_ALLOWED
                .iter()
                .any(|(f, n, _)| *f == rel && *n == name)
            {
                allowed_seen += 1;
                continue;
            }
            long.push(format!("src/{rel}:{line}: fn {name} is {count} lines"));
        }
    }
    assert!(
        long.is_empty(),
        "functions longer than {FN_LINES_MAX} lines (split them into named steps):\n{}",
        long.join("\n")
    );
    assert_eq!(
        allowed_seen,
        LONG_FNS_ALLOWED.len(),
        "an allowed long function is gone or short now: drop it from LONG_FNS_ALLOWED"
    );
}

/// The scanner counts a function from its `fn` line to its closing brace, skipping braces
/// in strings, chars and comments, and nested functions on their own.
#[test]
fn function_scanner() {
    let code = concat!(
        "pub(crate) async fn a() {\n",
        "    let s = \"{\";\n",
        "    let c = '{';\n",
        "    // {\n",
        "    fn b() -> u8 {\n",
        "        1\n",
        "    }\n",
        "}\n",
        "fn c();\n",
    );
    let f = functions(code);
    assert_eq!(
        f,
        vec![("a".to_owned(), 1, 8), ("b".to_owned(), 5, 3)],
        "{f:?}"
    );
}

#[test]
fn compaction_does_not_reach_into_the_partition() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let text = std::fs::read_to_string(src.join("compact.rs")).expect("read compact.rs");
    for (i, line) in code_of(&text).lines().enumerate() {
        assert!(
            !line.contains("crate::partition") && !line.contains("Partition<"),
            "src/compact.rs:{}: compact.rs must not use the partition (it is called by it)",
            i + 1
        );
    }
}
