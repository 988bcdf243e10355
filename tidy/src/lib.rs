//! Source checks each crate's `tests/tidy.rs` runs on that crate's own `src/` (subfolders
//! included): every file opens with a `//!` module doc, no line is longer than 100 characters,
//! optionally no `.unwrap()` outside unit-test modules, no function longer than a limit (with
//! an explicit allow-list, each entry with its reason), and no loop in the graph of which file
//! uses which (`use crate::…`, `crate::…` paths, `super::…`).
//!
//! Scanning is textual (no parser): braces in strings, chars and comments are skipped, and the
//! code after a file's `#[cfg(test)]` is left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What a crate's tidy test checks.
#[derive(Debug, Clone)]
pub struct Rules<'a> {
    /// Longest line, in characters.
    pub line_chars_max: usize,
    /// Refuse `.unwrap()` outside unit-test modules.
    pub no_unwrap: bool,
    /// Longest function, from its `fn` line to its closing brace.
    pub fn_lines_max: usize,
    /// Functions allowed to be longer: `(file under src/, fn name, reason)`.
    pub long_fns_allowed: &'a [(&'a str, &'a str, &'a str)],
    /// Fewer source files than this means the walk went wrong.
    pub files_min: usize,
    /// Folders under src/ not checked (generated code).
    pub skip_dirs: &'a [&'a str],
    /// Files allowed some lines over the limit, at most that many: `(file under src/, count,
    /// reason)`. A ratchet: the test fails when a file has more, and when it has fewer (lower
    /// the count).
    pub long_lines_allowed: &'a [(&'a str, usize, &'a str)],
}

impl Default for Rules<'_> {
    fn default() -> Self {
        Rules {
            line_chars_max: 100,
            no_unwrap: true,
            fn_lines_max: 80,
            long_fns_allowed: &[],
            files_min: 1,
            skip_dirs: &[],
            long_lines_allowed: &[],
        }
    }
}

/// Every rule broken by the crate at `manifest_dir`, one line each (empty: tidy).
pub fn check(manifest_dir: &str, rules: &Rules<'_>) -> Vec<String> {
    let src = Path::new(manifest_dir).join("src");
    let mut problems = Vec::new();
    let files = rust_files(&src);
    if files.len() < rules.files_min {
        problems.push(format!(
            "found only {} source files under {}",
            files.len(),
            src.display()
        ));
    }
    let mut allowed_seen = BTreeSet::new();
    for path in &files {
        let rel = relative(&src, path);
        if rules
            .skip_dirs
            .iter()
            .any(|d| rel.starts_with(&format!("{d}/")))
        {
            continue;
        }
        let text = std::fs::read_to_string(path).expect("read a source file");
        let mut long_lines = Vec::new();
        if !text.starts_with("//!") {
            problems.push(format!("src/{rel}: must open with a //! module doc"));
        }
        for (i, line) in code_of(&text).lines().enumerate() {
            let l = line.trim_start();
            if l.starts_with("//") {
                continue;
            }
            if rules.no_unwrap && l.contains(".unwrap()") {
                problems.push(format!("src/{rel}:{}: stray unwrap()", i + 1));
            }
            if line.chars().count() > rules.line_chars_max {
                long_lines.push(format!(
                    "src/{rel}:{}: line longer than {} characters",
                    i + 1,
                    rules.line_chars_max
                ));
            }
        }
        let allowed = rules
            .long_lines_allowed
            .iter()
            .find(|(f, _, _)| *f == rel)
            .map_or(0, |(_, n, _)| *n);
        if long_lines.len() > allowed {
            problems.extend(long_lines);
        } else if long_lines.len() < allowed {
            problems.push(format!(
                "src/{rel}: {} long lines, fewer than the {allowed} allowed: lower the allowance",
                long_lines.len()
            ));
        }
        for (name, line, count) in functions(code_of(&text)) {
            if count <= rules.fn_lines_max {
                continue;
            }
            if rules
                .long_fns_allowed
                .iter()
                .any(|(f, n, _)| *f == rel && *n == name)
            {
                allowed_seen.insert((rel.clone(), name));
                continue;
            }
            problems.push(format!(
                "src/{rel}:{line}: fn {name} is {count} lines (over {}: split it into named steps)",
                rules.fn_lines_max
            ));
        }
    }
    for (f, n, _) in rules.long_fns_allowed {
        if !allowed_seen.contains(&((*f).to_owned(), (*n).to_owned())) {
            problems.push(format!(
                "allowed long fn {f}::{n} is gone or short now: drop it"
            ));
        }
    }
    problems
}

/// Panics with every broken rule, one per line: a crate's tidy test calls this.
pub fn assert_tidy(manifest_dir: &str, rules: &Rules<'_>) {
    let problems = check(manifest_dir, rules);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Panics with every import loop, one per line: a crate's tidy test calls this.
pub fn assert_no_import_loops(manifest_dir: &str) {
    let shown: Vec<String> = import_loops(manifest_dir)
        .iter()
        .map(|l| l.join(" -> "))
        .collect();
    assert!(
        shown.is_empty(),
        "files that use each other in a loop:\n{}",
        shown.join("\n")
    );
}

/// The loops in the graph of which source file uses which, each as the files around it
/// (empty: no loop). A module folder's files are nodes of their own.
pub fn import_loops(manifest_dir: &str) -> Vec<Vec<String>> {
    let src = Path::new(manifest_dir).join("src");
    let files: Vec<String> = rust_files(&src).iter().map(|p| relative(&src, p)).collect();
    let known: BTreeSet<&str> = files.iter().map(String::as_str).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for rel in &files {
        let text = std::fs::read_to_string(src.join(rel)).expect("read a source file");
        let targets = edges.entry(rel.clone()).or_default();
        for path in paths_used(code_of(&text)) {
            if let Some(target) = resolve(rel, &path, &known)
                && target != *rel
            {
                targets.insert(target);
            }
        }
    }
    loops(&edges)
}

/// `crate::a::b…` and `super::a…` paths in `code`, as segments (`crate`/`super` first),
/// grouped imports (`use crate::{a, b::c}`) expanded one level.
fn paths_used(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for line in code.lines() {
        let l = line.trim_start();
        if l.starts_with("//") {
            continue;
        }
        for root in ["crate::", "super::"] {
            let mut rest = l;
            while let Some(at) = rest.find(root) {
                let before = rest[..at].chars().next_back();
                let tail = &rest[at + root.len()..];
                rest = tail;
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    continue;
                }
                let head = root.trim_end_matches(':').to_owned();
                if let Some(group) = tail.strip_prefix('{') {
                    let inner = group.split('}').next().unwrap_or("");
                    for item in inner.split(',') {
                        let mut segs = vec![head.clone()];
                        segs.extend(segments(item.trim()));
                        out.push(segs);
                    }
                } else {
                    let mut segs = vec![head];
                    segs.extend(segments(tail));
                    out.push(segs);
                }
            }
        }
    }
    out
}

/// The leading `a::b::c` identifiers of a path.
fn segments(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    for seg in path.split("::") {
        let ident: String = seg
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if ident.is_empty() || ident.len() != seg.len() && !seg.starts_with(&ident) {
            break;
        }
        let whole = ident.len() == seg.len();
        out.push(ident);
        if !whole {
            break;
        }
    }
    out
}

/// The file a path used from `from` lands in: the deepest module file that exists.
fn resolve(from: &str, path: &[String], known: &BTreeSet<&str>) -> Option<String> {
    let mut dir: Vec<String> = match path.first().map(String::as_str) {
        Some("crate") => Vec::new(),
        Some("super") => {
            let mut d: Vec<String> = from.split('/').map(str::to_owned).collect();
            d.pop();
            // A file `a/b.rs` is module `a::b`, whose `super` is `a`: its siblings live in
            // `a/`. `a/mod.rs` is module `a`, whose `super` is the folder above.
            if from.ends_with("mod.rs") {
                d.pop();
            }
            d
        }
        _ => return None,
    };
    let mut found = None;
    for seg in &path[1..] {
        if seg == "super" {
            dir.pop();
            continue;
        }
        let base = if dir.is_empty() {
            String::new()
        } else {
            format!("{}/", dir.join("/"))
        };
        let file = format!("{base}{seg}.rs");
        let folder = format!("{base}{seg}/mod.rs");
        if known.contains(file.as_str()) {
            found = Some(file);
        } else if known.contains(folder.as_str()) {
            found = Some(folder);
        } else {
            break;
        }
        dir.push(seg.clone());
    }
    found
}

/// Every elementary loop found by a depth-first walk (one per back edge).
fn loops(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    fn walk(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        out: &mut Vec<Vec<String>>,
    ) {
        stack.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(at) = stack.iter().position(|n| n == next) {
                let mut cycle = stack[at..].to_vec();
                cycle.push(next.clone());
                out.push(cycle);
            } else if !done.contains(next) {
                walk(next, edges, stack, done, out);
            }
        }
        stack.pop();
        done.insert(node.to_owned());
    }
    let mut out = Vec::new();
    let mut done = BTreeSet::new();
    for node in edges.keys() {
        if !done.contains(node) {
            walk(node, edges, &mut Vec::new(), &mut done, &mut out);
        }
    }
    out
}

/// `path` relative to `src`, with `/` separators.
fn relative(src: &Path, path: &Path) -> String {
    path.strip_prefix(src)
        .expect("under src")
        .to_string_lossy()
        .replace('\\', "/")
}

/// Every `.rs` file under `dir`, subfolders included, in a stable order.
pub fn rust_files(dir: &Path) -> Vec<PathBuf> {
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
pub fn code_of(text: &str) -> &str {
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
pub fn functions(code: &str) -> Vec<(String, usize, usize)> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn paths_and_their_files() {
        let code = "use crate::{core::Core, errors::{self, code}};\nuse super::authorized;\n\
                    let x = crate::groups::calls::GroupCall::List;\n";
        let paths = paths_used(code);
        let known: BTreeSet<&str> = [
            "core.rs",
            "errors.rs",
            "groups/mod.rs",
            "groups/calls.rs",
            "handlers/mod.rs",
            "handlers/authorized.rs",
            "handlers/fetch.rs",
        ]
        .into_iter()
        .collect();
        let files: BTreeSet<String> = paths
            .iter()
            .filter_map(|p| resolve("handlers/fetch.rs", p, &known))
            .collect();
        let want: BTreeSet<String> = [
            "core.rs",
            "errors.rs",
            "groups/calls.rs",
            "handlers/authorized.rs",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        assert_eq!(files, want);
    }

    #[test]
    fn a_loop_is_found() {
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut edge = |a: &str, b: &str| {
            edges.entry(a.to_owned()).or_default().insert(b.to_owned());
        };
        edge("a.rs", "b.rs");
        edge("b.rs", "c.rs");
        edge("c.rs", "a.rs");
        edge("c.rs", "d.rs");
        let found = loops(&edges);
        assert_eq!(found, vec![vec!["a.rs", "b.rs", "c.rs", "a.rs"]]);
        edges.get_mut("c.rs").map(|t| t.remove("a.rs"));
        assert!(loops(&edges).is_empty());
    }
}
