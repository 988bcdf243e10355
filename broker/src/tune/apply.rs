//! `sluice tune --apply`: makes the writes the check planned for its `warn` rows, through the
//! same [`Root`], and reports each one with the value before and after.
//!
//! What must stay true: nothing is written unless `/proc/self/status` under the root says the
//! process is root; only files that already exist are written (never created), so a fake tree
//! gets exactly the files the test laid out; settings that cannot be set at runtime
//! (rlimits, io_uring policy, the write cache, the kernel) are reported, never touched.

use std::io::Write as _;
use std::path::PathBuf;

use super::{Identity, Root, Row, Status};

/// One write `--apply` made or tried.
#[derive(Debug, Clone)]
pub struct Change {
    pub setting: String,
    /// Absolute path on the target system (under the root).
    pub path: PathBuf,
    pub before: String,
    pub after: String,
    /// Why the write failed, if it did.
    pub error: Option<String>,
}

#[derive(Debug)]
pub enum ApplyOutcome {
    /// Not root: nothing was written.
    NotRoot,
    Applied {
        changes: Vec<Change>,
        /// Rows still not ok that `--apply` cannot fix: `(setting, fix)`.
        manual: Vec<(String, String)>,
    },
}

impl ApplyOutcome {
    /// Whether everything `--apply` tried worked.
    pub fn succeeded(&self) -> bool {
        match self {
            ApplyOutcome::NotRoot => false,
            ApplyOutcome::Applied { changes, .. } => changes.iter().all(|c| c.error.is_none()),
        }
    }

    /// What happened, one line per change, for the operator.
    pub fn render(&self) -> String {
        let mut out = String::new();
        match self {
            ApplyOutcome::NotRoot => out.push_str(
                "sluice tune --apply changes kernel settings and needs root; run it with sudo. \
                 Nothing was changed.\n",
            ),
            ApplyOutcome::Applied { changes, manual } => {
                if changes.is_empty() {
                    out.push_str("nothing to change at runtime\n");
                }
                for c in changes {
                    let line = match &c.error {
                        None => format!(
                            "changed {}: {} -> {} ({})\n",
                            c.setting,
                            c.before,
                            c.after,
                            c.path.display()
                        ),
                        Some(e) => format!(
                            "FAILED  {}: {} -> {} ({}): {e}\n",
                            c.setting,
                            c.before,
                            c.after,
                            c.path.display()
                        ),
                    };
                    out.push_str(&line);
                }
                for (setting, fix) in manual {
                    out.push_str(&format!("left for you: {setting}: {fix}\n"));
                }
                if changes.iter().any(|c| c.error.is_none()) {
                    out.push_str(
                        "runtime changes are lost at reboot; tuning/README.md says how to persist \
                         each one\n",
                    );
                }
            }
        }
        out
    }
}

/// Writes what `rows` planned, if the process is root (as seen under `root`).
pub fn apply(root: &Root, rows: &[Row]) -> ApplyOutcome {
    if !Identity::read(root).is_root() {
        return ApplyOutcome::NotRoot;
    }
    let mut changes = Vec::new();
    let mut manual = Vec::new();
    for row in rows.iter().filter(|r| r.status != Status::Ok) {
        if row.writes.is_empty() {
            if row.status != Status::Skip {
                manual.push((row.setting.clone(), row.fix.clone()));
            }
            continue;
        }
        for w in &row.writes {
            let before = root.read(&w.path).unwrap_or_default();
            let error = write_existing(root, w).err().map(|e| e.to_string());
            changes.push(Change {
                setting: row.setting.clone(),
                path: w.path.clone(),
                before,
                after: w.value.clone(),
                error,
            });
        }
    }
    ApplyOutcome::Applied { changes, manual }
}

/// Writes `value` and a newline into an existing file (sysfs and procfs take one write).
fn write_existing(root: &Root, w: &super::Write) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(root.path(&w.path))?;
    file.write_all(format!("{}\n", w.value).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::super::{Row, Write};
    use super::*;

    fn fake(uid: u32) -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = Root::new(dir.path());
        std::fs::create_dir_all(root.path("/proc/self")).expect("mkdir");
        std::fs::create_dir_all(root.path("/proc/sys/vm")).expect("mkdir");
        std::fs::write(
            root.path("/proc/self/status"),
            format!("Uid:\t{uid}\t{uid}\t{uid}\t{uid}\n"),
        )
        .expect("write");
        std::fs::write(root.path("/proc/sys/vm/swappiness"), "60\n").expect("write");
        (dir, root)
    }

    fn swappiness_row() -> Row {
        let mut row = Row::new("vm.swappiness", "60").status(Status::Warn, "sysctl");
        row.writes = vec![Write {
            path: "/proc/sys/vm/swappiness".into(),
            value: "1".into(),
        }];
        row
    }

    /// Proves a non-root process changes nothing and is told why.
    #[test]
    fn refuses_without_root() {
        let (_dir, root) = fake(1000);
        let outcome = apply(&root, &[swappiness_row()]);
        assert!(matches!(outcome, ApplyOutcome::NotRoot));
        assert!(outcome.render().contains("needs root"));
        assert_eq!(root.read("/proc/sys/vm/swappiness").as_deref(), Some("60"));
    }

    /// Proves root writes the planned value, reports before and after, lists what it cannot
    /// fix, and never creates a file that is not there.
    #[test]
    fn writes_planned_values_only_into_existing_files() {
        let (_dir, root) = fake(0);
        let mut missing = swappiness_row();
        missing.setting = "missing".into();
        missing.writes[0].path = "/proc/sys/vm/not_there".into();
        let manual = Row::new("RLIMIT_NOFILE", "soft 1024").status(Status::Warn, "limits.conf");
        let outcome = apply(&root, &[swappiness_row(), missing, manual]);
        assert_eq!(root.read("/proc/sys/vm/swappiness").as_deref(), Some("1"));
        assert!(!root.path("/proc/sys/vm/not_there").exists());
        assert!(!outcome.succeeded());
        let text = outcome.render();
        assert!(text.contains("changed vm.swappiness: 60 -> 1 (/proc/sys/vm/swappiness)"));
        assert!(text.contains("FAILED  missing"));
        assert!(text.contains("left for you: RLIMIT_NOFILE: limits.conf"));
    }
}
