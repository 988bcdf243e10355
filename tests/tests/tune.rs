//! `sluice tune` against fake `/proc` + `/sys` trees: the table, the JSON and the exit code of
//! `--check` for a well-tuned host, a badly tuned one and the edges of the two blocking settings,
//! and what `--apply` writes.
//!
//! Every run passes `--root` with a temp dir (the `tune` helper adds it), so nothing here reads
//! from, let alone writes to, the machine the tests run on.

use std::path::{Path, PathBuf};
use std::process::Command;

use sluice_tests::sluice_bin;

/// A fake root: files and relative symlinks laid out like the kernel's.
struct Tree {
    dir: tempfile::TempDir,
}

const NVME_PCI: &str = "/sys/devices/pci0000:00/0000:00:04.0";
const NIC_PCI: &str = "/sys/devices/pci0000:00/0000:00:03.0";
const NIC_IRQS: [u32; 4] = [30, 31, 32, 33];
const DISK_IRQS: [u32; 4] = [40, 41, 42, 43];

impl Tree {
    fn path(&self, abs: &str) -> PathBuf {
        self.dir.path().join(abs.trim_start_matches('/'))
    }

    fn write(&self, abs: &str, content: &str) {
        let path = self.path(abs);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, format!("{content}\n")).expect("write");
    }

    fn remove(&self, abs: &str) {
        std::fs::remove_file(self.path(abs)).expect("remove");
    }

    fn read(&self, abs: &str) -> String {
        std::fs::read_to_string(self.path(abs))
            .expect("read")
            .trim()
            .to_owned()
    }

    fn link(&self, abs: &str, target: &str) {
        let path = self.path(abs);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::os::unix::fs::symlink(target, path).expect("symlink");
    }

    fn status(&self, uid: u32, groups: &str, cap_eff: &str) {
        self.write(
            "/proc/self/status",
            &format!(
                "Name:\tsluice\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nGid:\t{uid}\t{uid}\t{uid}\t{uid}\n\
                 Groups:\t{groups}\nCapEff:\t{cap_eff}"
            ),
        );
    }

    fn limits(&self, memlock: &str, nofile: &str) {
        self.write(
            "/proc/self/limits",
            &format!(
                "Limit                     Soft Limit           Hard Limit           Units\n\
                 Max open files            {nofile:<20} {nofile:<20} files\n\
                 Max locked memory         {memlock:<20} {memlock:<20} bytes"
            ),
        );
    }

    /// Affinity of every device interrupt: `cpu_of(index)` for the i-th of each device.
    fn irq_affinity(&self, cpu_of: impl Fn(usize) -> u32, effective: bool) {
        for irqs in [NIC_IRQS, DISK_IRQS] {
            for (i, irq) in irqs.iter().enumerate() {
                let cpu = cpu_of(i).to_string();
                self.write(&format!("/proc/irq/{irq}/smp_affinity_list"), "0-3");
                if effective {
                    self.write(&format!("/proc/irq/{irq}/effective_affinity_list"), &cpu);
                } else {
                    self.write(&format!("/proc/irq/{irq}/smp_affinity_list"), &cpu);
                }
            }
        }
    }

    /// A 4-CPU host tuned as tuning/README.md recommends, with the data dir on an xfs
    /// partition of an NVMe disk and one physical NIC.
    fn good() -> Tree {
        let t = Tree {
            dir: tempfile::Builder::new()
                .prefix("sluice-tune-")
                .tempdir()
                .expect("tempdir"),
        };
        t.write("/proc/sys/kernel/osrelease", "6.8.0-45-generic");
        t.write("/proc/sys/kernel/io_uring_disabled", "0");
        t.write("/proc/sys/kernel/io_uring_group", "-1");
        t.status(1000, "1000", "0000000000000000");
        t.limits("unlimited", "1048576");
        t.write("/proc/sys/fs/aio-max-nr", "1048576");
        t.write("/sys/devices/system/cpu/online", "0-3");
        for cpu in 0..4 {
            let dir = format!("/sys/devices/system/cpu/cpu{cpu}/cpufreq");
            t.write(&format!("{dir}/scaling_governor"), "performance");
            t.write(
                &format!("{dir}/scaling_available_governors"),
                "performance powersave",
            );
        }
        let cs = "/sys/devices/system/clocksource/clocksource0";
        t.write(&format!("{cs}/current_clocksource"), "tsc");
        t.write(&format!("{cs}/available_clocksource"), "tsc hpet acpi_pm");
        t.write(
            "/sys/kernel/mm/transparent_hugepage/enabled",
            "always [madvise] never",
        );
        t.write(
            "/sys/kernel/mm/transparent_hugepage/defrag",
            "always defer defer+madvise [madvise] never",
        );
        t.write("/proc/sys/vm/swappiness", "1");
        t.write(
            "/proc/swaps",
            "Filename\tType\tSize\tUsed\tPriority\n/swap.img file 4194300 0 -2",
        );
        t.write(
            "/proc/self/mountinfo",
            "22 27 0:21 / /proc rw - proc proc rw\n\
             27 1 259:2 / / rw,relatime - ext4 /dev/nvme0n1p2 rw\n\
             40 27 259:1 / /var/lib/sluice rw,noatime - xfs /dev/nvme0n1p1 rw",
        );
        // The data disk: /sys/dev/block links to the partition, whose parent is the disk.
        t.link(
            "/sys/dev/block/259:1",
            "../../devices/pci0000:00/0000:00:04.0/nvme/nvme0/nvme0n1/nvme0n1p1",
        );
        t.write(
            &format!("{NVME_PCI}/nvme/nvme0/nvme0n1/nvme0n1p1/partition"),
            "1",
        );
        t.write(
            "/sys/block/nvme0n1/queue/scheduler",
            "[none] mq-deadline kyber",
        );
        t.write("/sys/block/nvme0n1/queue/rotational", "0");
        t.write("/sys/block/nvme0n1/queue/write_cache", "write through");
        t.link(
            "/sys/block/nvme0n1/device",
            "../../devices/pci0000:00/0000:00:04.0/nvme/nvme0",
        );
        // One physical NIC (its interrupts on the virtio device's PCI parent), and loopback.
        std::fs::create_dir_all(t.path(&format!("{NIC_PCI}/virtio2"))).expect("mkdir");
        t.link(
            "/sys/class/net/eth0/device",
            "../../../devices/pci0000:00/0000:00:03.0/virtio2",
        );
        std::fs::create_dir_all(t.path("/sys/class/net/lo")).expect("mkdir");
        for irq in NIC_IRQS {
            t.write(&format!("{NIC_PCI}/msi_irqs/{irq}"), "msix");
        }
        for irq in DISK_IRQS {
            t.write(&format!("{NVME_PCI}/msi_irqs/{irq}"), "msix");
        }
        let mut interrupts = String::from("           CPU0       CPU1       CPU2       CPU3\n");
        for irq in NIC_IRQS.iter().chain(&DISK_IRQS) {
            interrupts.push_str(&format!(
                "{irq:>4}:       1000       1000       1000       1000  PCI-MSIX  q\n"
            ));
        }
        t.write("/proc/interrupts", &interrupts);
        t.irq_affinity(|i| i as u32, true);
        t.write("/proc/1/comm", "systemd");
        t.write("/proc/sys/net/core/rmem_max", "16777216");
        t.write("/proc/sys/net/core/wmem_max", "16777216");
        t.write("/proc/sys/net/core/somaxconn", "4096");
        t.write("/proc/sys/net/ipv4/tcp_rmem", "4096\t131072\t16777216");
        t.write("/proc/sys/net/ipv4/tcp_wmem", "4096\t16384\t16777216");
        t
    }

    /// The good host with every runtime setting off (nothing blocking): what `--apply` fixes.
    fn untuned() -> Tree {
        let t = Tree::good();
        t.limits("unlimited", "1024");
        for cpu in 0..4 {
            t.write(
                &format!("/sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor"),
                "powersave",
            );
        }
        t.write(
            "/sys/devices/system/clocksource/clocksource0/current_clocksource",
            "hpet",
        );
        t.write(
            "/sys/kernel/mm/transparent_hugepage/enabled",
            "[always] madvise never",
        );
        t.write(
            "/sys/kernel/mm/transparent_hugepage/defrag",
            "[always] defer defer+madvise madvise never",
        );
        t.write("/proc/sys/vm/swappiness", "60");
        t.write(
            "/sys/block/nvme0n1/queue/scheduler",
            "none [mq-deadline] kyber",
        );
        for irq in NIC_IRQS.iter().chain(&DISK_IRQS) {
            t.remove(&format!("/proc/irq/{irq}/effective_affinity_list"));
        }
        t.irq_affinity(|_| 0, false);
        t.write("/proc/sys/net/core/somaxconn", "128");
        t.write("/proc/sys/net/ipv4/tcp_wmem", "4096\t16384\t4194304");
        t
    }

    /// `sluice tune --root <this tree> args...`: exit code, stdout and stderr. The root is always
    /// passed, so `--apply` can only ever write into the temp dir.
    fn tune(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(sluice_bin())
            .arg("tune")
            .arg("--root")
            .arg(self.dir.path())
            .args(["--data-dir", "/var/lib/sluice/data"])
            .args(args)
            .output()
            .expect("run sluice tune");
        (
            out.status.code().expect("exit code"),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `--check --json`: exit code and each setting's status, in order.
    fn statuses(&self, args: &[&str]) -> (i32, Vec<(String, String)>) {
        let mut all = vec!["--check", "--json"];
        all.extend_from_slice(args);
        let (code, stdout, stderr) = self.tune(&all);
        let json: serde_json::Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("JSON ({e}): {stdout}\nstderr: {stderr}"));
        assert_eq!(
            json["blocking"],
            code == 1,
            "blocking flag matches the exit code"
        );
        let rows = json["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .map(|r| {
                (
                    r["setting"].as_str().expect("setting").to_owned(),
                    r["status"].as_str().expect("status").to_owned(),
                )
            })
            .collect();
        (code, rows)
    }
}

fn status_of<'a>(rows: &'a [(String, String)], setting: &str) -> &'a str {
    rows.iter()
        .find(|(s, _)| s == setting)
        .map(|(_, st)| st.as_str())
        .unwrap_or_else(|| panic!("no row {setting} in {rows:?}"))
}

/// The settings of the fake host, in the order the report lists them.
const SETTINGS: [&str; 21] = [
    "kernel",
    "kernel.io_uring_disabled",
    "RLIMIT_MEMLOCK",
    "RLIMIT_NOFILE",
    "fs.aio-max-nr",
    "cpu frequency governor",
    "clocksource",
    "transparent_hugepage/enabled",
    "transparent_hugepage/defrag",
    "vm.swappiness",
    "data dir file system",
    "nvme0n1 I/O scheduler",
    "nvme0n1 write cache",
    "irqbalance",
    "eth0 IRQ affinity",
    "nvme0n1 IRQ affinity",
    "net.core.rmem_max",
    "net.core.wmem_max",
    "net.core.somaxconn",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
];

/// Proves a well-tuned host gets every setting ok in the table and the JSON, finds the data
/// dir's disk through mountinfo and /sys/dev/block, and exits 0.
#[test]
fn tuned_host_is_all_ok() {
    let tree = Tree::good();
    let (code, stdout, stderr) = tree.tune(&["--check", "--cores", "4"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("SETTING") && lines[0].ends_with("FIX"));
    assert!(stdout.contains("21 ok, 0 warn, 0 fail: this host is tuned for sluice"));
    for setting in SETTINGS {
        let line = lines
            .iter()
            .find(|l| l.starts_with(&format!("{setting} ")))
            .unwrap_or_else(|| panic!("no line for {setting}:\n{stdout}"));
        assert!(line.contains(" ok"), "{line}");
    }
    let line = |prefix: &str| {
        *lines
            .iter()
            .find(|l| l.starts_with(prefix))
            .expect("line present")
    };
    assert!(line("data dir file system").contains("xfs on /var/lib/sluice"));
    assert!(line("nvme0n1 I/O scheduler").contains("none (flash)"));
    assert!(line("eth0 IRQ affinity").contains("4 IRQs on CPU 0,1,2,3"));
    assert!(line("RLIMIT_MEMLOCK").contains(">= 104 MiB (4 cores x 26 MiB)"));
    let (code, rows) = tree.statuses(&["--cores", "4"]);
    assert_eq!(code, 0);
    let names: Vec<&str> = rows.iter().map(|(s, _)| s.as_str()).collect();
    // Loopback has no device link, so it gets no IRQ row.
    assert_eq!(names, SETTINGS);
    assert!(rows.iter().all(|(_, st)| st == "ok"), "{rows:?}");
}

/// Proves a host with io_uring forbidden and too little locked memory for a non-root user
/// fails (exit 1) naming both, and every runtime setting that costs performance is a warn
/// with its fix.
#[test]
fn untuned_and_blocked_host_fails() {
    let tree = Tree::untuned();
    tree.write("/proc/sys/kernel/io_uring_disabled", "2");
    tree.limits("65536", "1024");
    let (code, rows) = tree.statuses(&["--cores", "4"]);
    assert_eq!(code, 1);
    assert_eq!(status_of(&rows, "kernel.io_uring_disabled"), "fail");
    assert_eq!(status_of(&rows, "RLIMIT_MEMLOCK"), "fail");
    for warn in [
        "RLIMIT_NOFILE",
        "cpu frequency governor",
        "clocksource",
        "transparent_hugepage/enabled",
        "transparent_hugepage/defrag",
        "vm.swappiness",
        "nvme0n1 I/O scheduler",
        "eth0 IRQ affinity",
        "nvme0n1 IRQ affinity",
        "net.core.somaxconn",
        "net.ipv4.tcp_wmem",
    ] {
        assert_eq!(status_of(&rows, warn), "warn", "{warn}");
    }
    let (code, stdout, _) = tree.tune(&["--cores", "4"]);
    assert_eq!(code, 1);
    assert!(stdout.contains("sluice cannot start until the FAIL rows are fixed"));
    let memlock = stdout
        .lines()
        .find(|l| l.starts_with("RLIMIT_MEMLOCK"))
        .expect("memlock row");
    assert!(memlock.contains("FAIL"), "{memlock}");
    assert!(memlock.contains("memlock 106496 KiB"), "{memlock}");
    assert!(stdout.contains("sysctl -w net.ipv4.tcp_wmem='4096 16384 16777216'"));
}

/// Proves the memlock need follows the configuration that will run (cores, `--set`,
/// `--config`), and that a raisable hard limit or CAP_IPC_LOCK makes a low soft limit fine.
#[test]
fn memlock_follows_the_configuration() {
    let tree = Tree::good();
    let mib = 1u64 << 20;
    tree.limits(&(30 * mib).to_string(), "1048576");
    let memlock = |args: &[&str]| {
        let (code, rows) = tree.statuses(args);
        (code, status_of(&rows, "RLIMIT_MEMLOCK").to_owned())
    };
    assert_eq!(memlock(&["--cores", "1"]), (0, "ok".into()));
    assert_eq!(memlock(&["--cores", "2"]), (1, "fail".into()));
    // 2 x (3 x 4 MiB + 2 MiB) = 28 MiB fits in 30 MiB.
    let small_io = format!("io_memory_bytes={}", 4 * mib);
    assert_eq!(
        memlock(&["--cores", "2", "--set", &small_io]),
        (0, "ok".into())
    );
    let config = tree.path("/etc/sluice.toml");
    std::fs::create_dir_all(config.parent().expect("parent")).expect("mkdir");
    std::fs::write(&config, "cores = 2\nio_memory_bytes = 4194304\n").expect("write");
    let config = config.to_str().expect("utf-8 path");
    assert_eq!(memlock(&["--config", config]), (0, "ok".into()));
    assert_eq!(
        memlock(&["--config", config, "--set", "cores=3"]),
        (1, "fail".into())
    );
    tree.status(1000, "1000", "0000000000004000"); // CAP_IPC_LOCK
    assert_eq!(memlock(&["--cores", "2"]), (0, "ok".into()));
    tree.status(1000, "1000", "0000000000000000");
    tree.write(
        "/proc/self/limits",
        &format!(
            "Limit                     Soft Limit           Hard Limit           Units\n\
             Max open files            1048576              1048576              files\n\
             Max locked memory         {}             unlimited            bytes",
            30 * mib
        ),
    );
    assert_eq!(memlock(&["--cores", "8"]), (0, "ok".into()));
}

/// Proves `kernel.io_uring_disabled = 1` lets members of `kernel.io_uring_group` and
/// CAP_SYS_ADMIN through and stops everyone else, and that a kernel without the switch passes.
#[test]
fn io_uring_group_rule() {
    let tree = Tree::good();
    tree.write("/proc/sys/kernel/io_uring_disabled", "1");
    let io_uring = |tree: &Tree| {
        let (code, rows) = tree.statuses(&["--cores", "1"]);
        (
            code,
            status_of(&rows, "kernel.io_uring_disabled").to_owned(),
        )
    };
    assert_eq!(io_uring(&tree), (1, "fail".into()));
    tree.write("/proc/sys/kernel/io_uring_group", "27");
    tree.status(1000, "4 27", "0000000000000000");
    assert_eq!(io_uring(&tree), (0, "ok".into()));
    tree.status(1000, "4", "0000000000200000"); // CAP_SYS_ADMIN
    assert_eq!(io_uring(&tree), (0, "ok".into()));
    tree.remove("/proc/sys/kernel/io_uring_disabled");
    tree.status(1000, "4", "0000000000000000");
    assert_eq!(io_uring(&tree), (0, "ok".into()));
}

/// Proves `--apply` as root writes exactly the recommended values into the fake tree, says
/// what it changed and what it left, and that the check that follows is clean apart from what
/// cannot be set at runtime.
#[test]
fn apply_writes_the_fake_tree() {
    let tree = Tree::untuned();
    tree.status(0, "0", "000001ffffffffff");
    let (code, stdout, stderr) = tree.tune(&["--apply", "--cores", "4"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("changed vm.swappiness: 60 -> 1 (/proc/sys/vm/swappiness)"));
    assert!(stdout.contains("left for you: RLIMIT_NOFILE"));
    assert_eq!(tree.read("/proc/sys/vm/swappiness"), "1");
    for cpu in 0..4 {
        assert_eq!(
            tree.read(&format!(
                "/sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor"
            )),
            "performance"
        );
    }
    assert_eq!(
        tree.read("/sys/devices/system/clocksource/clocksource0/current_clocksource"),
        "tsc"
    );
    assert_eq!(
        tree.read("/sys/kernel/mm/transparent_hugepage/enabled"),
        "madvise"
    );
    assert_eq!(
        tree.read("/sys/kernel/mm/transparent_hugepage/defrag"),
        "madvise"
    );
    assert_eq!(tree.read("/sys/block/nvme0n1/queue/scheduler"), "none");
    for irqs in [NIC_IRQS, DISK_IRQS] {
        for (i, irq) in irqs.iter().enumerate() {
            assert_eq!(
                tree.read(&format!("/proc/irq/{irq}/smp_affinity_list")),
                i.to_string()
            );
        }
    }
    assert_eq!(tree.read("/proc/sys/net/core/somaxconn"), "4096");
    assert_eq!(
        tree.read("/proc/sys/net/ipv4/tcp_wmem"),
        "4096 16384 16777216"
    );
    // Untouched: already fine, or not settable at runtime.
    assert_eq!(tree.read("/proc/sys/net/core/rmem_max"), "16777216");
    assert_eq!(
        tree.read("/sys/block/nvme0n1/queue/write_cache"),
        "write through"
    );
    assert!(stdout.contains("20 ok, 1 warn, 0 fail"), "{stdout}");
    let (_, rows) = tree.statuses(&["--cores", "4"]);
    let not_ok: Vec<&str> = rows
        .iter()
        .filter(|(_, st)| st != "ok")
        .map(|(s, _)| s.as_str())
        .collect();
    assert_eq!(not_ok, ["RLIMIT_NOFILE"]);
}

/// Proves `--apply` by a non-root user refuses politely, changes no file, and exits 1; and that
/// `--apply` leaves blocking settings alone and still exits 1 while they block.
#[test]
fn apply_refuses_without_root_and_never_touches_blockers() {
    let tree = Tree::untuned();
    let before = snapshot(tree.dir.path());
    let (code, stdout, _) = tree.tune(&["--apply", "--cores", "4"]);
    assert_eq!(code, 1);
    assert!(stdout.contains("needs root"), "{stdout}");
    assert!(stdout.contains("Nothing was changed"), "{stdout}");
    assert_eq!(snapshot(tree.dir.path()), before);

    tree.status(0, "0", "0000000000000000");
    tree.write("/proc/sys/kernel/io_uring_disabled", "2");
    let (code, stdout, _) = tree.tune(&["--apply", "--cores", "4"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("left for you: kernel.io_uring_disabled"));
    assert_eq!(tree.read("/proc/sys/kernel/io_uring_disabled"), "2");
    assert_eq!(tree.read("/proc/sys/vm/swappiness"), "1");
}

/// Every file under `dir` with its content, sorted.
fn snapshot(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            let meta = std::fs::symlink_metadata(&p).expect("metadata");
            if meta.is_dir() {
                stack.push(p);
            } else if meta.is_file() {
                out.push((p.clone(), std::fs::read_to_string(&p).expect("read")));
            }
        }
    }
    out.sort();
    out
}
