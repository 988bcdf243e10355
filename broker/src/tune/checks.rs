//! Every setting `sluice tune` knows: a reader that parses what the kernel shows under the
//! [`Root`], and a verdict that judges the parsed value. Verdicts are plain functions of values,
//! unit-tested without files; the readers are tested against fake trees (here and in
//! `tests/tests/tune.rs`). Why each setting matters is in `tuning/README.md`.
//!
//! A setting the host does not have (no cpufreq in a VM, a data dir on tmpfs) is `Skip`, never a
//! failure: only io_uring being refused, locked memory that cannot cover the configured cores,
//! and a kernel older than glommio's minimum stop sluice.

use std::path::{Path, PathBuf};

use super::{Root, Row, Status, Target, Write, fmt_bytes};

/// Linux capability numbers (include/uapi/linux/capability.h).
pub const CAP_IPC_LOCK: u32 = 14;
const CAP_SYS_RESOURCE: u32 = 24;
const CAP_SYS_ADMIN: u32 = 21;

/// Where the persistent sysctl file goes (a copy of `tuning/60-sluice.conf`).
const SYSCTL_FILE: &str = "/etc/sysctl.d/60-sluice.conf";

/// glommio 0.9's minimum kernel (its README, "Supported Linux kernels").
const KERNEL_MIN: (u32, u32) = (5, 8);
/// Open files below this soft limit warn: connections, three files per segment, io_uring.
const NOFILE_MIN: u64 = 65_536;
const NOFILE_RECOMMENDED: u64 = 1_048_576;
/// Largest TCP autotuned buffer wanted: 16 MiB covers 10 Gb/s at 13 ms RTT.
const TCP_BUFFER_MAX_MIN: u64 = 16 << 20;
/// Each core listens with a backlog of `LISTEN_BACKLOG_MAX` (1024); `somaxconn` silently caps it.
const SOMAXCONN_MIN: u64 = 1024;
const SOMAXCONN_RECOMMENDED: u64 = 4096;
// The least somaxconn the check passes does not cut the backlog each core listens with.
const _: () = assert!(crate::limits::LISTEN_BACKLOG_MAX as u64 <= SOMAXCONN_MIN);
const SWAPPINESS_MAX: u64 = 10;
const AIO_MAX_NR_MIN: u64 = 65_536;

/// Who the checked process is, from `/proc/self/status` under the root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// Effective uid; `None` when unknown (treated as not root).
    pub euid: Option<u32>,
    /// Effective gid and supplementary groups.
    pub groups: Vec<u32>,
    /// Effective capability mask.
    pub cap_eff: u64,
}

impl Identity {
    pub fn read(root: &Root) -> Identity {
        Identity::parse(&root.read("/proc/self/status").unwrap_or_default())
    }

    fn parse(status: &str) -> Identity {
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(str::trim)
        };
        let ids = |name: &str| -> Vec<u32> {
            field(name)
                .map(|v| {
                    v.split_whitespace()
                        .filter_map(|n| n.parse().ok())
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut groups = ids("Groups:");
        if let Some(&egid) = ids("Gid:").get(1) {
            groups.push(egid);
        }
        Identity {
            euid: ids("Uid:").get(1).copied(),
            groups,
            cap_eff: field("CapEff:")
                .and_then(|hex| u64::from_str_radix(hex, 16).ok())
                .unwrap_or(0),
        }
    }

    pub fn has_cap(&self, cap: u32) -> bool {
        self.cap_eff & (1u64 << cap) != 0
    }

    pub fn is_root(&self) -> bool {
        self.euid == Some(0)
    }
}

/// Whether the kernel lets this process create io_uring instances (io_uring/io_uring.c,
/// `io_uring_allowed`): 0 allows everyone, 2 no one, 1 only CAP_SYS_ADMIN or members of
/// `kernel.io_uring_group` (-1: no group).
pub fn io_uring_allowed(disabled: &str, group: Option<i64>, id: &Identity) -> bool {
    match disabled {
        "0" => true,
        "1" => {
            id.has_cap(CAP_SYS_ADMIN)
                || group
                    .and_then(|g| u32::try_from(g).ok())
                    .is_some_and(|g| id.groups.contains(&g))
        }
        _ => false,
    }
}

/// All rows, in the order the table prints them.
pub fn all(root: &Root, target: &Target) -> Vec<Row> {
    let id = Identity::read(root);
    let limits = root.read("/proc/self/limits").unwrap_or_default();
    let online = online_cpus(root);
    let mut rows = vec![
        kernel(root),
        io_uring(root, &id),
        memlock(&limits, target, &id),
        nofile(&limits),
        sysctl_at_least(
            root,
            "fs.aio-max-nr",
            AIO_MAX_NR_MIN,
            AIO_MAX_NR_MIN.to_string(),
        ),
        governor(root),
        clocksource(root),
        thp(root, "enabled", &["madvise", "never"], "madvise"),
        thp(
            root,
            "defrag",
            &["madvise", "defer+madvise", "defer", "never"],
            "madvise",
        ),
        swappiness(root),
    ];
    let disk = data_disk(root, &target.data_dir);
    rows.extend(disk_rows(root, &disk));
    let irqbalance = irqbalance_pid(root);
    rows.push(irqbalance_row(irqbalance));
    let mut devices: Vec<(String, PathBuf)> = nics(root)
        .into_iter()
        .map(|nic| {
            let dev = root.path(format!("/sys/class/net/{nic}/device"));
            (nic, dev)
        })
        .collect();
    if let DataDisk::Block { disk, .. } = &disk {
        devices.push((disk.clone(), root.path(format!("/sys/block/{disk}/device"))));
    }
    for (name, dev) in devices {
        if let Some(row) = irq_affinity(root, &name, &dev, &online, irqbalance.is_some()) {
            rows.push(row);
        }
    }
    rows.push(socket_buffer_cap(root, "net.core.rmem_max"));
    rows.push(socket_buffer_cap(root, "net.core.wmem_max"));
    rows.push(sysctl_at_least(
        root,
        "net.core.somaxconn",
        SOMAXCONN_MIN,
        SOMAXCONN_RECOMMENDED.to_string(),
    ));
    rows.push(tcp_mem(root, "net.ipv4.tcp_rmem"));
    rows.push(tcp_mem(root, "net.ipv4.tcp_wmem"));
    rows
}

fn sysctl_path(name: &str) -> String {
    format!("/proc/sys/{}", name.replace('.', "/"))
}

fn sysctl_fix(name: &str, value: &str) -> String {
    format!("sysctl -w {name}='{value}'; persist in {SYSCTL_FILE}")
}

fn absent(setting: &str, why: &str) -> Row {
    Row::new(setting, "absent").status(Status::Skip, why)
}

/// Parses `major.minor` from a release string such as `6.8.0-45-generic`.
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

fn kernel(root: &Root) -> Row {
    let setting = "kernel";
    let Some(release) = root.read("/proc/sys/kernel/osrelease") else {
        return absent(setting, "cannot read /proc/sys/kernel/osrelease");
    };
    let row = Row::new(setting, &release).recommend(format!(
        ">= {}.{} (glommio's minimum)",
        KERNEL_MIN.0, KERNEL_MIN.1
    ));
    match kernel_version(&release) {
        Some(v) if v >= KERNEL_MIN => row.status(Status::Ok, ""),
        Some(_) => row.status(
            Status::Fail,
            "upgrade the kernel: glommio's io_uring probes need 5.8 or newer",
        ),
        None => row.status(Status::Skip, "cannot parse the kernel release"),
    }
}

fn io_uring(root: &Root, id: &Identity) -> Row {
    let setting = "kernel.io_uring_disabled";
    let Some(value) = root.read(sysctl_path(setting)) else {
        // Kernels before 6.6 have no switch: io_uring is always allowed.
        return Row::new(setting, "absent (kernel < 6.6)")
            .recommend("0")
            .status(Status::Ok, "");
    };
    let group = root
        .read("/proc/sys/kernel/io_uring_group")
        .and_then(|g| g.parse().ok());
    let row = Row::new(setting, &value).recommend("0");
    if io_uring_allowed(&value, group, id) {
        return row.status(Status::Ok, "");
    }
    let fix = if value == "1" {
        match group.filter(|&g| g >= 0) {
            Some(g) => format!(
                "add the sluice user to group {g} (kernel.io_uring_group), or sysctl -w {setting}=0"
            ),
            None => format!(
                "sysctl -w {setting}=0, or set kernel.io_uring_group to a group of the sluice user"
            ),
        }
    } else {
        format!("sysctl -w {setting}=0 (2 forbids io_uring to everyone; sluice needs it)")
    };
    row.status(Status::Fail, fix)
}

/// A resource limit from `/proc/self/limits`: soft and hard, `None` for unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

impl Limit {
    /// Finds the line starting with `name` (e.g. "Max locked memory").
    fn parse(limits: &str, name: &str) -> Option<Limit> {
        let rest = limits.lines().find_map(|l| l.strip_prefix(name))?;
        let mut fields = rest.split_whitespace();
        let value = |f: Option<&str>| -> Option<Option<u64>> {
            match f? {
                "unlimited" => Some(None),
                n => n.parse().ok().map(Some),
            }
        };
        Some(Limit {
            soft: value(fields.next())?,
            hard: value(fields.next())?,
        })
    }

    fn covers(limit: Option<u64>, need: u64) -> bool {
        limit.is_none_or(|l| l >= need)
    }
}

fn fmt_limit(limit: Option<u64>, bytes: bool) -> String {
    match limit {
        None => "unlimited".into(),
        Some(n) if bytes => fmt_bytes(n),
        Some(n) => n.to_string(),
    }
}

/// Whether a process with `limit` and `id` can lock `need` bytes for io_uring, and why.
/// Mirrors `startup::ensure_memlock`: the soft limit suffices; or CAP_IPC_LOCK, under which
/// io_uring does not charge registered buffers; or sluice raises its soft limit at start (to the
/// hard limit, or beyond it with CAP_SYS_RESOURCE).
pub fn memlock_verdict(limit: Limit, need: u64, id: &Identity) -> (Status, &'static str) {
    if Limit::covers(limit.soft, need) {
        (Status::Ok, "")
    } else if id.has_cap(CAP_IPC_LOCK) {
        (
            Status::Ok,
            "CAP_IPC_LOCK: registered buffers are not charged",
        )
    } else if Limit::covers(limit.hard, need) {
        (Status::Ok, "sluice raises its soft limit at start")
    } else if id.has_cap(CAP_SYS_RESOURCE) {
        (
            Status::Ok,
            "sluice raises its limit at start (CAP_SYS_RESOURCE)",
        )
    } else {
        (Status::Fail, "")
    }
}

fn memlock(limits: &str, target: &Target, id: &Identity) -> Row {
    let setting = "RLIMIT_MEMLOCK";
    let Some(limit) = Limit::parse(limits, "Max locked memory") else {
        return absent(setting, "cannot read /proc/self/limits");
    };
    let need = target.memlock_bytes();
    let row = Row::new(
        setting,
        format!(
            "soft {}, hard {}",
            fmt_limit(limit.soft, true),
            fmt_limit(limit.hard, true)
        ),
    )
    .recommend(format!(
        ">= {} ({} cores x {})",
        fmt_bytes(need),
        target.cores,
        fmt_bytes(need / target.cores.max(1) as u64)
    ));
    match memlock_verdict(limit, need, id) {
        (Status::Fail, _) => row.status(
            Status::Fail,
            format!(
                "memlock {} KiB in /etc/security/limits.conf, LimitMEMLOCK={need} in the \
                 systemd unit, or run with CAP_IPC_LOCK",
                need.div_ceil(1024)
            ),
        ),
        (status, note) => row.status(status, "").note(note),
    }
}

fn nofile(limits: &str) -> Row {
    let setting = "RLIMIT_NOFILE";
    let Some(limit) = Limit::parse(limits, "Max open files") else {
        return absent(setting, "cannot read /proc/self/limits");
    };
    let row = Row::new(
        setting,
        format!(
            "soft {}, hard {}",
            fmt_limit(limit.soft, false),
            fmt_limit(limit.hard, false)
        ),
    )
    .recommend(format!(">= {NOFILE_RECOMMENDED}"));
    if Limit::covers(limit.soft, NOFILE_MIN) {
        row.status(Status::Ok, "")
    } else {
        row.status(
            Status::Warn,
            format!(
                "nofile {NOFILE_RECOMMENDED} in /etc/security/limits.conf, or \
                 LimitNOFILE={NOFILE_RECOMMENDED} in the systemd unit"
            ),
        )
    }
}

/// A single-number sysctl that should be at least `min`; `--apply` writes `recommended`.
fn sysctl_at_least(root: &Root, name: &str, min: u64, recommended: String) -> Row {
    let Some(value) = root.read(sysctl_path(name)) else {
        return absent(name, "not on this kernel");
    };
    let row = Row::new(name, &value).recommend(format!(">= {recommended}"));
    match value.parse::<u64>() {
        Ok(v) if v >= min => row.status(Status::Ok, ""),
        _ => row
            .status(Status::Warn, sysctl_fix(name, &recommended))
            .writes(vec![Write {
                path: sysctl_path(name).into(),
                value: recommended,
            }]),
    }
}

/// `net.core.rmem_max` / `wmem_max` cap only explicit SO_RCVBUF/SO_SNDBUF; sluice leaves its
/// sockets to autotuning (bounded by `tcp_rmem`/`tcp_wmem`), so a low cap costs sluice nothing:
/// shown for the operator, always ok.
fn socket_buffer_cap(root: &Root, name: &str) -> Row {
    let Some(value) = root.read(sysctl_path(name)) else {
        return absent(name, "not on this kernel");
    };
    let value = match value.parse::<u64>() {
        Ok(v) => format!("{value} ({})", fmt_bytes(v)),
        Err(_) => value,
    };
    Row::new(name, value)
        .recommend(format!(
            ">= {} (caps explicit socket buffers only)",
            fmt_bytes(TCP_BUFFER_MAX_MIN)
        ))
        .status(Status::Ok, "")
}

/// `tcp_rmem`/`tcp_wmem` (`min default max`): the max bounds autotuning of every connection.
fn tcp_mem(root: &Root, name: &str) -> Row {
    let Some(value) = root.read(sysctl_path(name)) else {
        return absent(name, "not on this kernel");
    };
    let fields: Vec<u64> = value
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    let shown = value.split_whitespace().collect::<Vec<_>>().join(" ");
    let row = Row::new(name, &shown).recommend(format!(
        "max >= {} ({})",
        TCP_BUFFER_MAX_MIN,
        fmt_bytes(TCP_BUFFER_MAX_MIN)
    ));
    match fields.as_slice() {
        [_, _, max] if *max >= TCP_BUFFER_MAX_MIN => row.status(Status::Ok, ""),
        [min, default, _] => {
            let wanted = format!("{min} {default} {TCP_BUFFER_MAX_MIN}");
            row.status(Status::Warn, sysctl_fix(name, &wanted))
                .writes(vec![Write {
                    path: sysctl_path(name).into(),
                    value: wanted,
                }])
        }
        _ => row.status(Status::Skip, "cannot parse"),
    }
}

fn swappiness(root: &Root) -> Row {
    let name = "vm.swappiness";
    let Some(value) = root.read(sysctl_path(name)) else {
        return absent(name, "not on this kernel");
    };
    // /proc/swaps has a header line, then one line per active swap area.
    let swap_on = root
        .read("/proc/swaps")
        .is_some_and(|s| s.lines().count() > 1);
    let row = Row::new(
        name,
        if swap_on {
            value.clone()
        } else {
            format!("{value} (no swap in use)")
        },
    )
    .recommend(format!("<= {SWAPPINESS_MAX} (1)"));
    match value.parse::<u64>() {
        Ok(v) if v <= SWAPPINESS_MAX || !swap_on => row.status(Status::Ok, ""),
        _ => row
            .status(Status::Warn, sysctl_fix(name, "1"))
            .writes(vec![Write {
                path: sysctl_path(name).into(),
                value: "1".into(),
            }]),
    }
}

/// The selected word of a sysfs multiple choice such as `always [madvise] never`.
pub fn selected(choices: &str) -> Option<&str> {
    let start = choices.find('[')?;
    let end = choices[start..].find(']')? + start;
    Some(&choices[start + 1..end])
}

/// The selected word, or the only word of a file that holds just one (a device with a single
/// scheduler shows `none`).
fn selected_or_only(text: &str) -> Option<&str> {
    selected(text).or_else(|| {
        let mut words = text.split_whitespace();
        let only = words.next()?;
        words.next().is_none().then_some(only)
    })
}

/// The words of a sysfs multiple choice, brackets removed.
fn choices(text: &str) -> Vec<&str> {
    text.split_whitespace()
        .map(|w| w.trim_start_matches('[').trim_end_matches(']'))
        .collect()
}

fn thp(root: &Root, knob: &str, good: &[&str], recommended: &str) -> Row {
    let setting = format!("transparent_hugepage/{knob}");
    let path = format!("/sys/kernel/mm/transparent_hugepage/{knob}");
    let Some(text) = root.read(&path) else {
        return absent(&setting, "kernel built without THP");
    };
    let Some(value) = selected_or_only(&text).map(str::to_owned) else {
        return Row::new(&setting, text).status(Status::Skip, "cannot parse");
    };
    let row = Row::new(&setting, &value).recommend(recommended);
    if good.contains(&value.as_str()) {
        row.status(Status::Ok, "")
    } else {
        row.status(
            Status::Warn,
            format!(
                "echo {recommended} > {path}; persist with transparent_hugepage={recommended} \
                 on the kernel command line"
            ),
        )
        .writes(vec![Write {
            path: path.into(),
            value: recommended.into(),
        }])
    }
}

/// The online CPUs, from `/sys/devices/system/cpu/online` (a cpu list such as `0-3,8`).
fn online_cpus(root: &Root) -> Vec<u32> {
    root.read("/sys/devices/system/cpu/online")
        .map(|s| parse_cpu_list(&s))
        .unwrap_or_default()
}

/// Parses a kernel cpu list (`0-3,8,10-11`).
pub fn parse_cpu_list(list: &str) -> Vec<u32> {
    let mut cpus = Vec::new();
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                    cpus.extend(a..=b);
                }
            }
            None => cpus.extend(part.parse::<u32>().ok()),
        }
    }
    cpus
}

fn governor(root: &Root) -> Row {
    let setting = "cpu frequency governor";
    let mut governors: Vec<(u32, String, bool)> = Vec::new();
    for cpu in online_cpus(root) {
        let dir = format!("/sys/devices/system/cpu/cpu{cpu}/cpufreq");
        if let Some(g) = root.read(format!("{dir}/scaling_governor")) {
            let has_performance = root
                .read(format!("{dir}/scaling_available_governors"))
                .is_none_or(|a| choices(&a).contains(&"performance"));
            governors.push((cpu, g, has_performance));
        }
    }
    if governors.is_empty() {
        return Row::new(setting, "no cpufreq")
            .recommend("performance")
            .status(Status::Skip, "fixed frequency, or set by the hypervisor");
    }
    let mut distinct: Vec<&str> = governors.iter().map(|(_, g, _)| g.as_str()).collect();
    distinct.sort_unstable();
    distinct.dedup();
    let row = Row::new(setting, distinct.join(",")).recommend("performance");
    if distinct == ["performance"] {
        return row.status(Status::Ok, "");
    }
    let writes = governors
        .iter()
        .filter(|(_, g, has)| g != "performance" && *has)
        .map(|(cpu, _, _)| Write {
            path: format!("/sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor").into(),
            value: "performance".into(),
        })
        .collect();
    row.status(
        Status::Warn,
        "cpupower frequency-set -g performance (persist: cpupower.service or a tuned profile)",
    )
    .writes(writes)
}

/// Clock sources whose reads stay in the vDSO (no system call per timestamp).
const FAST_CLOCKSOURCES: [&str; 4] = [
    "tsc",
    "arch_sys_counter",
    "kvm-clock",
    "hyperv_clocksource_tsc_page",
];

fn clocksource(root: &Root) -> Row {
    let setting = "clocksource";
    let dir = "/sys/devices/system/clocksource/clocksource0";
    let Some(current) = root.read(format!("{dir}/current_clocksource")) else {
        return absent(setting, "no clocksource in sysfs");
    };
    let available = root
        .read(format!("{dir}/available_clocksource"))
        .unwrap_or_default();
    let tsc_available = choices(&available).contains(&"tsc");
    let recommended = if tsc_available {
        "tsc"
    } else {
        "tsc, arch_sys_counter or kvm-clock"
    };
    let row = Row::new(setting, &current).recommend(recommended);
    let fast = if tsc_available {
        current == "tsc"
    } else {
        FAST_CLOCKSOURCES.contains(&current.as_str())
    };
    if fast {
        return row.status(Status::Ok, "");
    }
    if !tsc_available {
        return row.status(
            Status::Warn,
            "this clock source costs a system call per timestamp; use a VM type with a stable TSC",
        );
    }
    row.status(
        Status::Warn,
        format!(
            "echo tsc > {dir}/current_clocksource; persist with clocksource=tsc on the kernel \
             command line"
        ),
    )
    .writes(vec![Write {
        path: format!("{dir}/current_clocksource").into(),
        value: "tsc".into(),
    }])
}

/// Where the data dir lives, from `/proc/self/mountinfo` and `/sys/dev/block`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataDisk {
    /// No mount covers the path (or mountinfo is unreadable).
    Unknown,
    /// A file system without a single block device (tmpfs, overlay, btrfs, NFS).
    NoBlock { fs: String, mount: String },
    /// A whole disk (the parent of the partition the data dir is on).
    Block {
        fs: String,
        mount: String,
        disk: String,
    },
}

/// Unescapes a mountinfo path (`\040` for a space, and so on).
fn unescape_mount(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|_| bytes[i] == b'\\')
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| u8::from_str_radix(d, 8).ok());
        match octal {
            Some(c) => {
                out.push(c);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount that holds `path` (longest mount point prefix, the last one mounted wins):
/// `(mount point, major:minor, fs type)`.
pub fn mount_of(mountinfo: &str, path: &Path) -> Option<(String, String, String)> {
    let mut best: Option<(String, String, String)> = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let (Some(dev), Some(point), Some(fs)) =
            (fields.get(2), fields.get(4), fields.get(sep + 1))
        else {
            continue;
        };
        let point = unescape_mount(point);
        if !path.starts_with(&point) {
            continue;
        }
        if best.as_ref().is_none_or(|(b, _, _)| point.len() >= b.len()) {
            best = Some((point, (*dev).to_owned(), (*fs).to_owned()));
        }
    }
    best
}

/// The whole disk behind `major:minor`: the last name in its `/sys/dev/block` link, or for a
/// partition (which has a `partition` file) the one before it
/// (`../../devices/pci0000:00/0000:00:04.0/nvme/nvme0/nvme0n1/nvme0n1p1` gives `nvme0n1`,
/// `../../devices/pci0000:00/0000:00:02.0/virtio1/block/vda` gives `vda`).
fn disk_of(root: &Root, dev: &str) -> Option<String> {
    let link = std::fs::read_link(root.path(format!("/sys/dev/block/{dev}"))).ok()?;
    let mut names = link
        .components()
        .rev()
        .map(|c| c.as_os_str().to_string_lossy().into_owned());
    let last = names.next()?;
    if root
        .path(format!("/sys/dev/block/{dev}/partition"))
        .exists()
    {
        names.next()
    } else {
        Some(last)
    }
}

pub fn data_disk(root: &Root, data_dir: &Path) -> DataDisk {
    let Some(mountinfo) = root.read("/proc/self/mountinfo") else {
        return DataDisk::Unknown;
    };
    let Some((mount, dev, fs)) = mount_of(&mountinfo, data_dir) else {
        return DataDisk::Unknown;
    };
    if dev.starts_with("0:") {
        return DataDisk::NoBlock { fs, mount };
    }
    match disk_of(root, &dev) {
        Some(disk) => DataDisk::Block { fs, mount, disk },
        None => DataDisk::NoBlock { fs, mount },
    }
}

/// File systems sluice's O_DIRECT segment files are known to work well on.
const GOOD_FILE_SYSTEMS: [&str; 2] = ["xfs", "ext4"];

fn disk_rows(root: &Root, disk: &DataDisk) -> Vec<Row> {
    let (fs, mount) = match disk {
        DataDisk::Unknown => {
            return vec![absent(
                "data dir file system",
                "no mount found for the data dir",
            )];
        }
        DataDisk::NoBlock { fs, mount } | DataDisk::Block { fs, mount, .. } => (fs, mount),
    };
    let fs_row = Row::new("data dir file system", format!("{fs} on {mount}"))
        .recommend(GOOD_FILE_SYSTEMS.join(" or "));
    let fs_row = if GOOD_FILE_SYSTEMS.contains(&fs.as_str()) {
        fs_row.status(Status::Ok, "")
    } else {
        fs_row.status(
            Status::Warn,
            "put --data-dir on xfs or ext4 on a local disk (tmpfs has no O_DIRECT)",
        )
    };
    let DataDisk::Block { disk, .. } = disk else {
        return vec![fs_row];
    };
    vec![fs_row, scheduler(root, disk), write_cache(root, disk)]
}

/// The recommended I/O scheduler: `none` for flash (the device queues are deep and fast; a
/// scheduler only adds latency), `mq-deadline` for spinning disks.
pub fn scheduler_recommended(rotational: bool) -> &'static str {
    if rotational { "mq-deadline" } else { "none" }
}

fn scheduler(root: &Root, disk: &str) -> Row {
    let setting = format!("{disk} I/O scheduler");
    let path = format!("/sys/block/{disk}/queue/scheduler");
    let Some(text) = root.read(&path) else {
        return absent(&setting, "no queue/scheduler");
    };
    let current = selected_or_only(&text).unwrap_or(text.as_str()).to_owned();
    let rotational = root
        .read(format!("/sys/block/{disk}/queue/rotational"))
        .is_some_and(|r| r == "1");
    let recommended = scheduler_recommended(rotational);
    let row = Row::new(
        &setting,
        format!(
            "{current} ({})",
            if rotational { "rotational" } else { "flash" }
        ),
    )
    .recommend(recommended);
    let available = choices(&text);
    if current == recommended || !available.contains(&recommended) {
        return row.status(Status::Ok, "");
    }
    row.status(
        Status::Warn,
        format!(
            "echo {recommended} > {path}; persist with a udev rule (tuning/60-sluice-disk.rules)"
        ),
    )
    .writes(vec![Write {
        path: path.into(),
        value: recommended.into(),
    }])
}

/// Shown, never changed: `write through` on a disk with a volatile cache loses acknowledged
/// records on power loss, and only the operator knows whether the cache is protected.
fn write_cache(root: &Root, disk: &str) -> Row {
    let setting = format!("{disk} write cache");
    let Some(value) = root.read(format!("/sys/block/{disk}/queue/write_cache")) else {
        return absent(&setting, "no queue/write_cache");
    };
    Row::new(&setting, value)
        .recommend("as the device reports (see tuning/README.md)")
        .status(Status::Ok, "")
}

/// The pid of a running irqbalance, found by `comm` under `/proc`.
fn irqbalance_pid(root: &Root) -> Option<u32> {
    let entries = std::fs::read_dir(root.path("/proc")).ok()?;
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| root.read(format!("/proc/{pid}/comm")).as_deref() == Some("irqbalance"))
}

fn irqbalance_row(pid: Option<u32>) -> Row {
    let row = Row::new(
        "irqbalance",
        pid.map_or_else(
            || "not running".to_owned(),
            |p| format!("running (pid {p})"),
        ),
    )
    .recommend("not running");
    match pid {
        None => row.status(Status::Ok, ""),
        Some(_) => row.status(
            Status::Warn,
            "systemctl disable --now irqbalance (it moves interrupts onto the cores sluice \
             pins), then sluice tune --apply",
        ),
    }
}

/// Physical network interfaces: those with a `device` link that is not a virtual device.
fn nics(root: &Root) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(root.path("/sys/class/net")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| {
            std::fs::canonicalize(root.path(format!("/sys/class/net/{name}/device")))
                .is_ok_and(|p| !p.components().any(|c| c.as_os_str() == "virtual"))
        })
        .collect();
    names.sort();
    names
}

/// The interrupts of a device: the `msi_irqs` of the nearest ancestor (in `/sys/devices`) that
/// has them, which for a virtio or NVMe block device is its PCI function.
fn device_irqs(root: &Root, device: &Path) -> Vec<u32> {
    let Ok(mut dir) = std::fs::canonicalize(device) else {
        return Vec::new();
    };
    let top = std::fs::canonicalize(root.path("/sys/devices")).unwrap_or_default();
    while dir.starts_with(&top) && dir != top {
        if let Ok(entries) = std::fs::read_dir(dir.join("msi_irqs")) {
            let mut irqs: Vec<u32> = entries
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect();
            irqs.sort_unstable();
            return irqs;
        }
        if !dir.pop() {
            break;
        }
    }
    Vec::new()
}

/// Interrupt counts summed over CPUs, by IRQ number, from `/proc/interrupts`.
pub fn interrupt_counts(text: &str) -> std::collections::HashMap<u32, u64> {
    let mut lines = text.lines();
    let cpus = lines.next().map_or(0, |h| h.split_whitespace().count());
    lines
        .filter_map(|line| {
            let (irq, rest) = line.split_once(':')?;
            let irq = irq.trim().parse().ok()?;
            let total = rest
                .split_whitespace()
                .take(cpus)
                .map_while(|n| n.parse::<u64>().ok())
                .sum();
            Some((irq, total))
        })
        .collect()
}

/// Whether interrupts landing on `cpus_used` distinct CPUs are spread well enough: each of
/// `irq_count` interrupts (up to the online CPU count) should have a core of its own, or one
/// core takes every completion of the device.
pub fn irqs_spread(irq_count: usize, cpus_used: usize, online: usize) -> bool {
    cpus_used >= irq_count.min(online).max(1)
}

fn irq_affinity(
    root: &Root,
    name: &str,
    device: &Path,
    online: &[u32],
    irqbalance: bool,
) -> Option<Row> {
    let all = device_irqs(root, device);
    if all.is_empty() {
        return None;
    }
    // Only interrupts that carry completions need a core of their own: a virtio device's
    // config interrupt fires once or never, so an interrupt with under 1 % of the busiest one's
    // count is left out.
    let counts = root
        .read("/proc/interrupts")
        .map(|t| interrupt_counts(&t))
        .unwrap_or_default();
    let count = |irq: &u32| counts.get(irq).copied().unwrap_or(0);
    let busiest = all.iter().map(count).max().unwrap_or(0);
    let active: Vec<u32> = all
        .iter()
        .copied()
        .filter(|irq| count(irq) > 0 && count(irq) * 100 >= busiest)
        .collect();
    let irqs = if active.is_empty() {
        all.clone()
    } else {
        active
    };
    let mut used: Vec<u32> = Vec::new();
    for irq in &irqs {
        let list = root
            .read(format!("/proc/irq/{irq}/effective_affinity_list"))
            .or_else(|| root.read(format!("/proc/irq/{irq}/smp_affinity_list")))
            .unwrap_or_default();
        used.extend(parse_cpu_list(&list));
    }
    used.sort_unstable();
    used.dedup();
    let shown: Vec<String> = used.iter().map(u32::to_string).collect();
    let row = Row::new(
        format!("{name} IRQ affinity"),
        if irqs.len() == all.len() {
            format!("{} IRQs on CPU {}", irqs.len(), shown.join(","))
        } else {
            format!(
                "{} IRQs ({} active) on CPU {}",
                all.len(),
                irqs.len(),
                shown.join(",")
            )
        },
    )
    .recommend("spread, one CPU per IRQ");
    if online.is_empty() || irqs_spread(irqs.len(), used.len(), online.len()) {
        return Some(row.status(Status::Ok, ""));
    }
    if irqbalance {
        return Some(row.status(
            Status::Warn,
            "stop irqbalance, then sluice tune --apply spreads them",
        ));
    }
    let writes = irqs
        .iter()
        .zip(online.iter().cycle())
        .map(|(irq, cpu)| Write {
            path: format!("/proc/irq/{irq}/smp_affinity_list").into(),
            value: cpu.to_string(),
        })
        .collect();
    Some(
        row.status(
            Status::Warn,
            "sluice tune --apply spreads them (round robin over the online CPUs); \
             redo after each boot",
        )
        .writes(writes),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(euid: u32, groups: &[u32], caps: &[u32]) -> Identity {
        Identity {
            euid: Some(euid),
            groups: groups.to_vec(),
            cap_eff: caps.iter().fold(0, |m, c| m | (1u64 << c)),
        }
    }

    /// Proves uid, groups and capabilities come from the right fields of /proc/self/status.
    #[test]
    fn identity_parses_status() {
        let status = "Name:\tsluice\nUid:\t1000\t1001\t1000\t1000\nGid:\t100\t101\t100\t100\n\
                      Groups:\t4 27 \nCapEff:\t0000000000004000\n";
        let id = Identity::parse(status);
        assert_eq!(id.euid, Some(1001));
        assert_eq!(id.groups, vec![4, 27, 101]);
        assert!(id.has_cap(CAP_IPC_LOCK));
        assert!(!id.has_cap(CAP_SYS_ADMIN));
        assert!(!id.is_root());
        assert_eq!(Identity::parse("").euid, None);
    }

    /// Proves the io_uring switch follows the kernel's rule: 0 everyone, 2 no one, 1 only
    /// CAP_SYS_ADMIN or members of io_uring_group.
    #[test]
    fn io_uring_switch() {
        let user = id(1000, &[1000, 50], &[]);
        let admin = id(0, &[0], &[CAP_SYS_ADMIN]);
        assert!(io_uring_allowed("0", None, &user));
        assert!(!io_uring_allowed("2", None, &admin));
        assert!(io_uring_allowed("1", Some(-1), &admin));
        assert!(!io_uring_allowed("1", Some(-1), &user));
        assert!(io_uring_allowed("1", Some(50), &user));
        assert!(!io_uring_allowed("1", Some(51), &user));
    }

    /// Proves memlock is ok when the soft limit covers the need, or sluice may raise it, or
    /// CAP_IPC_LOCK exempts it, and fails otherwise.
    #[test]
    fn memlock_verdicts() {
        let need = 52 << 20;
        let user = id(1000, &[], &[]);
        let low = Limit {
            soft: Some(8 << 20),
            hard: Some(8 << 20),
        };
        assert_eq!(memlock_verdict(low, need, &user).0, Status::Fail);
        let enough = Limit {
            soft: Some(need),
            hard: Some(need),
        };
        assert_eq!(memlock_verdict(enough, need, &user).0, Status::Ok);
        let unlimited = Limit {
            soft: None,
            hard: None,
        };
        assert_eq!(memlock_verdict(unlimited, need, &user).0, Status::Ok);
        let raisable = Limit {
            soft: Some(8 << 20),
            hard: None,
        };
        assert_eq!(memlock_verdict(raisable, need, &user).0, Status::Ok);
        let ipc = id(1000, &[], &[CAP_IPC_LOCK]);
        assert_eq!(memlock_verdict(low, need, &ipc).0, Status::Ok);
        let resource = id(0, &[], &[CAP_SYS_RESOURCE]);
        assert_eq!(memlock_verdict(low, need, &resource).0, Status::Ok);
    }

    /// Proves /proc/self/limits lines parse, including "unlimited".
    #[test]
    fn limits_parse() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            20000                1048576              files\n\
                      Max locked memory         8388608              unlimited            bytes\n";
        assert_eq!(
            Limit::parse(limits, "Max open files"),
            Some(Limit {
                soft: Some(20000),
                hard: Some(1_048_576)
            })
        );
        assert_eq!(
            Limit::parse(limits, "Max locked memory"),
            Some(Limit {
                soft: Some(8 << 20),
                hard: None
            })
        );
        assert_eq!(Limit::parse(limits, "Max processes"), None);
    }

    /// Proves kernel releases parse to (major, minor) and compare with glommio's minimum.
    #[test]
    fn kernel_release() {
        assert_eq!(kernel_version("6.18.44-fc-v782"), Some((6, 18)));
        assert_eq!(kernel_version("5.4.0-150-generic"), Some((5, 4)));
        assert!(kernel_version("5.4.0").expect("parses") < KERNEL_MIN);
        assert!(kernel_version("5.10.1").expect("parses") >= KERNEL_MIN);
        assert_eq!(kernel_version("weird"), None);
    }

    /// Proves cpu lists and bracketed sysfs choices parse.
    #[test]
    fn sysfs_formats() {
        assert_eq!(parse_cpu_list("0-3,8,10-11\n"), vec![0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(parse_cpu_list(""), Vec::<u32>::new());
        assert_eq!(selected("always [madvise] never"), Some("madvise"));
        assert_eq!(selected("[none] mq-deadline kyber"), Some("none"));
        assert_eq!(selected("none"), None);
        assert_eq!(selected_or_only("none"), Some("none"));
        assert_eq!(selected_or_only("none kyber"), None);
        assert_eq!(
            choices("none [mq-deadline] kyber"),
            vec!["none", "mq-deadline", "kyber"]
        );
    }

    /// Proves the data dir's mount is the longest matching mount point, path-component-wise,
    /// and that escaped spaces in mount points are understood.
    #[test]
    fn mount_lookup() {
        let mountinfo = "22 27 0:21 / /proc rw - proc proc rw\n\
                         27 1 254:0 / / rw - ext4 /dev/vda rw\n\
                         40 27 259:1 / /var/lib/sluice rw - xfs /dev/nvme0n1p1 rw\n\
                         41 27 0:30 / /var/lib/slu rw - tmpfs tmpfs rw\n\
                         42 27 259:2 / /mnt/my\\040disk rw - xfs /dev/nvme1n1 rw\n";
        let m = |p: &str| mount_of(mountinfo, Path::new(p));
        assert_eq!(
            m("/var/lib/sluice/data"),
            Some(("/var/lib/sluice".into(), "259:1".into(), "xfs".into()))
        );
        assert_eq!(
            m("/var/lib/sluicex"),
            Some(("/".into(), "254:0".into(), "ext4".into()))
        );
        assert_eq!(m("/mnt/my disk/d").map(|x| x.1), Some("259:2".into()));
    }

    /// Proves /proc/interrupts rows sum over the CPU columns and named rows are skipped.
    #[test]
    fn interrupts_parse() {
        let text = "           CPU0       CPU1\n \
                    35:          0          0 PCI-MSIX-0000:00:02.0   0-edge      virtio1-config\n \
                    36:          5    1879508 PCI-MSIX-0000:00:02.0   1-edge      virtio1-req.0\n\
                    NMI:          0          0   Non-maskable interrupts\n";
        let counts = interrupt_counts(text);
        assert_eq!(counts.get(&35), Some(&0));
        assert_eq!(counts.get(&36), Some(&1_879_513));
        assert_eq!(counts.len(), 2);
    }

    /// Proves the scheduler recommendation follows the disk kind, and that interrupts count as
    /// spread when each gets its own CPU (up to the CPUs there are).
    #[test]
    fn scheduler_and_irq_verdicts() {
        assert_eq!(scheduler_recommended(false), "none");
        assert_eq!(scheduler_recommended(true), "mq-deadline");
        assert!(irqs_spread(1, 1, 8));
        assert!(irqs_spread(4, 4, 8));
        assert!(!irqs_spread(4, 1, 8));
        assert!(irqs_spread(16, 8, 8));
        assert!(!irqs_spread(16, 7, 8));
        assert!(irqs_spread(4, 1, 1));
    }
}
