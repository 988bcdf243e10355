//! `sluice tune`: reads the kernel and machine settings that matter for a thread-per-core io_uring
//! broker, judges each against what sluice needs, and (with `--apply`) sets the ones that can be
//! set at runtime. `tuning/README.md` explains every setting.
//!
//! Every read and write goes through a [`Root`], so tests point the whole check at a fake
//! `/proc` + `/sys` tree: nothing here calls getrlimit or geteuid, it reads `/proc/self/limits`
//! and `/proc/self/status` under the root instead (the same numbers for the real root).
//! What must stay true: a check never writes; `apply` writes only the files the check planned,
//! only under the root, and only for settings that are not already fine.

mod apply;
mod checks;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use apply::{ApplyOutcome, apply};
pub use checks::{CAP_IPC_LOCK, Identity, io_uring_allowed};

/// The directory standing for `/`: the real root in production, a fake tree in tests.
#[derive(Debug, Clone)]
pub struct Root(PathBuf);

impl Root {
    pub fn new(dir: impl Into<PathBuf>) -> Root {
        Root(dir.into())
    }

    /// Where the absolute path `abs` (e.g. `/proc/sys/vm/swappiness`) is under this root.
    pub fn path(&self, abs: impl AsRef<Path>) -> PathBuf {
        let abs = abs.as_ref();
        self.0.join(abs.strip_prefix("/").unwrap_or(abs))
    }

    /// The trimmed content of `abs`, or `None` when it cannot be read (absent on this kernel,
    /// not permitted, not a VM's business).
    pub fn read(&self, abs: impl AsRef<Path>) -> Option<String> {
        std::fs::read_to_string(self.path(abs))
            .ok()
            .map(|s| s.trim().to_owned())
    }

    /// Whether this is the machine's own `/`.
    pub fn is_system(&self) -> bool {
        self.0 == Path::new("/")
    }
}

/// How a setting compares with what sluice wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// As recommended, or good enough.
    Ok,
    /// sluice runs, but slower or with latency spikes.
    Warn,
    /// sluice cannot start.
    Fail,
    /// Not present on this host (no cpufreq in a VM, no block device under the data dir).
    #[serde(rename = "n/a")]
    Skip,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
            Status::Skip => "n/a",
        }
    }
}

/// One file write `--apply` would make: `value` into `path` (absolute, under the root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub path: PathBuf,
    pub value: String,
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub setting: String,
    pub value: String,
    pub recommended: String,
    pub status: Status,
    /// What to do about it; empty when the row is ok.
    pub fix: String,
    /// What `--apply` writes for this row (empty when it cannot be set at runtime, or is ok).
    #[serde(skip)]
    pub writes: Vec<Write>,
}

impl Row {
    fn new(setting: impl Into<String>, value: impl Into<String>) -> Row {
        Row {
            setting: setting.into(),
            value: value.into(),
            recommended: String::new(),
            status: Status::Ok,
            fix: String::new(),
            writes: Vec::new(),
        }
    }

    fn recommend(mut self, recommended: impl Into<String>) -> Row {
        self.recommended = recommended.into();
        self
    }

    fn status(mut self, status: Status, fix: impl Into<String>) -> Row {
        self.status = status;
        self.fix = if status == Status::Ok {
            String::new()
        } else {
            fix.into()
        };
        self
    }

    /// A remark shown in the fix column of a row that is ok only thanks to something the
    /// operator should know (sluice raising its own limit, say).
    fn note(mut self, note: &str) -> Row {
        if self.status == Status::Ok {
            self.fix = note.to_owned();
        }
        self
    }

    fn writes(mut self, writes: Vec<Write>) -> Row {
        if self.status == Status::Warn {
            self.writes = writes;
        }
        self
    }
}

/// What the broker that will run needs: the cores it runs and where its data lives.
#[derive(Debug, Clone)]
pub struct Target {
    pub cores: usize,
    pub io_memory_bytes: usize,
    /// The data dir as the broker will see it (made absolute by the caller).
    pub data_dir: PathBuf,
}

impl Target {
    /// The target of the broker `config` describes: its core count (as `start` computes it) and
    /// its data dir made absolute (symlinks resolved when checking the real root).
    pub fn for_config(root: &Root, config: &crate::config::BrokerConfig) -> Target {
        Target {
            cores: config.core_count(),
            io_memory_bytes: config.io_memory_bytes,
            data_dir: resolve_data_dir(root, &config.data_dir),
        }
    }

    /// Locked memory the broker needs: see [`memlock_needed`].
    pub fn memlock_bytes(&self) -> u64 {
        memlock_needed(self.io_memory_bytes, self.cores)
    }
}

/// Bytes of locked memory glommio needs per executor: `io_memory` registered in three rings,
/// plus slack for the rings themselves (DESIGN.md, "Measured here").
pub fn memlock_needed(io_memory_bytes: usize, cores: usize) -> u64 {
    (3 * io_memory_bytes as u64 + crate::limits::MEMLOCK_RING_BYTES) * cores as u64
}

/// `dir` made absolute against the working directory. On the real root, the deepest existing
/// ancestor is canonicalized (the data dir may not exist yet, or sit behind a symlink) so its
/// mount is found; under a fake root the path is taken as it is.
pub fn resolve_data_dir(root: &Root, dir: &Path) -> PathBuf {
    let abs = if dir.is_absolute() {
        dir.to_owned()
    } else {
        std::env::current_dir()
            .unwrap_or_else(|_| PathBuf::from("/"))
            .join(dir)
    };
    if !root.is_system() {
        return abs;
    }
    let mut existing = abs.clone();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(&existing) {
            return rest
                .iter()
                .rev()
                .fold(real, |p: PathBuf, name| p.join(name));
        }
        match (existing.file_name(), existing.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name.to_owned());
                existing = parent.to_owned();
            }
            _ => return abs,
        }
    }
}

/// Reads and judges every setting. Never writes.
pub fn check(root: &Root, target: &Target) -> Vec<Row> {
    checks::all(root, target)
}

/// Whether any row stops sluice from starting.
pub fn blocking(rows: &[Row]) -> bool {
    rows.iter().any(|r| r.status == Status::Fail)
}

/// The report as a fixed-width table, one row per setting, then a one-line summary.
pub fn render_table(rows: &[Row]) -> String {
    let headers = ["SETTING", "VALUE", "RECOMMENDED", "STATUS", "FIX"];
    let cells: Vec<[&str; 5]> = rows
        .iter()
        .map(|r| {
            [
                r.setting.as_str(),
                r.value.as_str(),
                r.recommended.as_str(),
                r.status.label(),
                r.fix.as_str(),
            ]
        })
        .collect();
    let mut widths = headers.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cols: [&str; 5]| {
        let mut l = String::new();
        for (i, (c, w)) in cols.iter().zip(widths).enumerate() {
            if i == cols.len() - 1 {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:<w$}  ");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(headers);
    for row in cells {
        line(row);
    }
    let count = |s| rows.iter().filter(|r| r.status == s).count();
    let (warn, fail) = (count(Status::Warn), count(Status::Fail));
    let _ = writeln!(
        out,
        "\n{} ok, {warn} warn, {fail} fail: {}",
        count(Status::Ok),
        if fail > 0 {
            "sluice cannot start until the FAIL rows are fixed"
        } else if warn > 0 {
            "sluice can start; the warn rows cost performance (`sluice tune --apply` as root sets \
             what can be set at runtime)"
        } else {
            "this host is tuned for sluice"
        }
    );
    out
}

/// The report as JSON: `{"blocking": bool, "checks": [{setting, value, recommended, status,
/// fix}, ...]}`.
pub fn render_json(rows: &[Row]) -> String {
    #[derive(Serialize)]
    struct Report<'a> {
        blocking: bool,
        checks: &'a [Row],
    }
    serde_json::to_string_pretty(&Report {
        blocking: blocking(rows),
        checks: rows,
    })
    .expect("a report always serializes")
}

/// Bytes in the largest unit that divides them exactly (B, KiB, MiB, GiB).
pub fn fmt_bytes(bytes: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (name, size) in UNITS {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{} {name}", bytes / size);
        }
    }
    if bytes >= 1 << 20 {
        return format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20));
    }
    format!("{bytes} B")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves paths are joined under the root, whatever the leading slash.
    #[test]
    fn root_joins_absolute_paths() {
        let root = Root::new("/tmp/fake");
        assert_eq!(
            root.path("/proc/sys/vm/swappiness"),
            Path::new("/tmp/fake/proc/sys/vm/swappiness")
        );
        assert!(Root::new("/").is_system());
        assert!(!root.is_system());
    }

    /// Proves byte counts print in the largest exact unit.
    #[test]
    fn bytes_format() {
        assert_eq!(fmt_bytes(26 << 20), "26 MiB");
        assert_eq!(fmt_bytes(512 << 10), "512 KiB");
        assert_eq!(fmt_bytes(1 << 30), "1 GiB");
        assert_eq!(fmt_bytes(100), "100 B");
        assert_eq!(fmt_bytes((1 << 20) + 1), "1.0 MiB");
    }

    /// Proves the table has a header, one line per row, and a summary that names the blocker,
    /// and that the JSON carries the same rows and the blocking flag.
    #[test]
    fn table_and_json() {
        let rows = vec![
            Row::new("vm.swappiness", "60")
                .recommend("1")
                .status(Status::Warn, "sysctl -w vm.swappiness=1"),
            Row::new("kernel.io_uring_disabled", "2")
                .recommend("0")
                .status(Status::Fail, "sysctl -w kernel.io_uring_disabled=0"),
        ];
        let table = render_table(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("SETTING"));
        assert!(lines[1].starts_with("vm.swappiness "));
        assert!(lines[1].contains(" warn "));
        assert!(lines[2].contains(" FAIL "));
        assert!(table.contains("0 ok, 1 warn, 1 fail: sluice cannot start"));
        let json: serde_json::Value = serde_json::from_str(&render_json(&rows)).expect("json");
        assert_eq!(json["blocking"], true);
        assert_eq!(json["checks"][0]["setting"], "vm.swappiness");
        assert_eq!(json["checks"][1]["status"], "fail");
    }
}
