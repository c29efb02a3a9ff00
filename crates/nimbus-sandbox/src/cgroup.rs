//! Cgroup limits of namespace slots.
//!
//! Each slot gets a cgroup named after its id below a parent (default `nimbus`) at
//! the root of each hierarchy. Cgroup v1 controllers are used where mounted, as on
//! hybrid hosts, where the v2 tree usually has no controllers; otherwise the v2
//! hierarchy is used. The mount points come from `/proc/self/mountinfo`.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Lambda gives one vCPU per 1,769 MB of memory; CPU weight follows the same ratio.
const MEMORY_MB_PER_VCPU: u64 = 1769;

/// Tasks of the init process that also count against `pids.max`: the outer init
/// process and the supervisor.
const INIT_TASKS: u32 = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Hierarchy {
    /// Directory of the slots' parent cgroup in each mounted v1 controller.
    V1 {
        memory: Option<PathBuf>,
        pids: Option<PathBuf>,
        cpu: Option<PathBuf>,
    },
    /// Directory of the slots' parent cgroup in the v2 tree, and which controllers it
    /// delegates to its children.
    V2 {
        parent: PathBuf,
        memory: bool,
        pids: bool,
        cpu: bool,
    },
    None,
}

/// Cgroup hierarchy and controllers available for slots, detected once at construction.
#[derive(Debug, Clone)]
pub(crate) struct CgroupManager {
    hierarchy: Hierarchy,
}

/// Limits of one slot.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SlotLimits {
    pub memory_mb: u32,
    pub pids_max: u32,
}

/// The cgroups of one slot.
#[derive(Debug)]
pub(crate) struct SlotCgroup {
    /// Leaf directories to remove on destroy, one per v1 hierarchy or one in v2.
    dirs: Vec<PathBuf>,
    /// Directory with the memory controller files, if memory is limited.
    memory_dir: Option<PathBuf>,
    version2: bool,
    /// The peak memory file, opened at the first read and read again with pread:
    /// each invocation's REPORT reads it, and a path lookup in cgroupfs per read
    /// cost more than the read.
    peak_file: std::sync::OnceLock<Option<std::fs::File>>,
}

impl CgroupManager {
    /// Finds the hierarchies and creates the parent cgroup `parent_name` in each.
    /// Controllers whose parent cannot be created (no permission, read-only
    /// cgroupfs) are left out and logged.
    pub(crate) fn detect(parent_name: &str) -> Self {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mounts = parse_cgroup_mounts(&mountinfo);
        let hierarchy = if mounts.v1.iter().any(|(controllers, _)| has_any_controller(controllers)) {
            let create = |controller: &str| {
                let (_, mount) = mounts
                    .v1
                    .iter()
                    .find(|(controllers, _)| controllers.iter().any(|c| c == controller))?;
                create_parent(&mount.join(parent_name), controller)
            };
            Hierarchy::V1 {
                memory: create("memory"),
                pids: create("pids"),
                cpu: create("cpu"),
            }
        } else if let Some(mount) = mounts.v2 {
            detect_v2(&mount, parent_name)
        } else {
            Hierarchy::None
        };
        tracing::debug!(?hierarchy, "detected cgroup hierarchy for slots");
        CgroupManager { hierarchy }
    }

    /// Returns whether memory, process and CPU limits can be applied, in that order.
    pub(crate) fn available(&self) -> (bool, bool, bool) {
        match &self.hierarchy {
            Hierarchy::V1 { memory, pids, cpu } => (memory.is_some(), pids.is_some(), cpu.is_some()),
            Hierarchy::V2 { memory, pids, cpu, .. } => (*memory, *pids, *cpu),
            Hierarchy::None => (false, false, false),
        }
    }

    /// Creates the slot's cgroups and applies `limits`. Returns `None` when no
    /// controller is available.
    pub(crate) fn create(&self, slot_id: &str, limits: SlotLimits) -> io::Result<Option<SlotCgroup>> {
        let memory_bytes = u64::from(limits.memory_mb) * 1024 * 1024;
        let pids_max = limits.pids_max.saturating_add(INIT_TASKS);
        match &self.hierarchy {
            Hierarchy::None => Ok(None),
            Hierarchy::V1 { memory, pids, cpu } => {
                let mut cgroup = SlotCgroup {
                    dirs: Vec::new(),
                    memory_dir: None,
                    version2: false,
                    peak_file: std::sync::OnceLock::new(),
                };
                // On error, dropping `cgroup` removes the directories created so far.
                if let Some(parent) = memory {
                    let dir = cgroup.add_dir(parent.join(slot_id))?;
                    write_value(&dir, "memory.limit_in_bytes", memory_bytes)?;
                    // Without swap accounting (`swapaccount=0`) the memsw files are
                    // missing and swap is not limited.
                    if dir.join("memory.memsw.limit_in_bytes").exists() {
                        write_value(&dir, "memory.memsw.limit_in_bytes", memory_bytes)?;
                    }
                    cgroup.memory_dir = Some(dir);
                }
                if let Some(parent) = pids {
                    let dir = cgroup.add_dir(parent.join(slot_id))?;
                    write_value(&dir, "pids.max", u64::from(pids_max))?;
                }
                if let Some(parent) = cpu {
                    let dir = cgroup.add_dir(parent.join(slot_id))?;
                    write_value(&dir, "cpu.shares", cpu_shares(limits.memory_mb))?;
                }
                Ok(Some(cgroup))
            }
            Hierarchy::V2 {
                parent,
                memory,
                pids,
                cpu,
            } => {
                if !(*memory || *pids || *cpu) {
                    return Ok(None);
                }
                let mut cgroup = SlotCgroup {
                    dirs: Vec::new(),
                    memory_dir: None,
                    version2: true,
                    peak_file: std::sync::OnceLock::new(),
                };
                let dir = cgroup.add_dir(parent.join(slot_id))?;
                if *memory {
                    write_value(&dir, "memory.max", memory_bytes)?;
                    if dir.join("memory.swap.max").exists() {
                        write_value(&dir, "memory.swap.max", 0)?;
                    }
                    cgroup.memory_dir = Some(dir.clone());
                }
                if *pids {
                    write_value(&dir, "pids.max", u64::from(pids_max))?;
                }
                if *cpu {
                    write_value(&dir, "cpu.weight", cpu_weight(limits.memory_mb))?;
                }
                Ok(Some(cgroup))
            }
        }
    }
}

impl SlotCgroup {
    fn add_dir(&mut self, dir: PathBuf) -> io::Result<PathBuf> {
        // Controllers mounted together in one v1 hierarchy share the directory.
        if self.dirs.contains(&dir) {
            return Ok(dir);
        }
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            // A leftover of a slot with the same id whose cleanup did not finish:
            // reuse it only if it is empty, which rmdir checks.
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                std::fs::remove_dir(&dir)?;
                std::fs::create_dir(&dir)?;
            }
            Err(error) => return Err(error),
        }
        self.dirs.push(dir.clone());
        Ok(dir)
    }

    /// `cgroup.procs` files the slot's init process moves itself into.
    pub(crate) fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|dir| dir.join("cgroup.procs")).collect()
    }

    /// Peak memory use in bytes: v1 `memory.max_usage_in_bytes` or v2 `memory.peak`
    /// (Linux 5.19 and later).
    pub(crate) fn memory_peak_bytes(&self) -> Option<u64> {
        use std::os::unix::fs::FileExt;
        let file = self
            .peak_file
            .get_or_init(|| {
                let dir = self.memory_dir.as_ref()?;
                let name = if self.version2 {
                    "memory.peak"
                } else {
                    "memory.max_usage_in_bytes"
                };
                std::fs::File::open(dir.join(name)).ok()
            })
            .as_ref()?;
        // cgroupfs renders the value afresh for every read from offset 0.
        let mut buffer = [0u8; 32];
        let length = file.read_at(&mut buffer, 0).ok()?;
        std::str::from_utf8(&buffer[..length]).ok()?.trim().parse().ok()
    }

    /// Returns whether the kernel OOM killer killed a process of this cgroup: the `oom_kill`
    /// counter of v1 `memory.oom_control` (Linux 4.13 and later) or v2 `memory.events`.
    pub(crate) fn out_of_memory(&self) -> bool {
        let Some(dir) = self.memory_dir.as_ref() else {
            return false;
        };
        let file = if self.version2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        let Ok(text) = std::fs::read_to_string(dir.join(file)) else {
            return false;
        };
        text.lines()
            .filter_map(|line| line.strip_prefix("oom_kill "))
            .any(|count| count.trim().parse::<u64>().map(|count| count > 0).unwrap_or(false))
    }

    /// Removes the cgroups, waiting up to about a second each for processes that are
    /// still exiting.
    pub(crate) async fn remove(mut self) {
        for dir in std::mem::take(&mut self.dirs) {
            let mut attempts = 0;
            while let Err(error) = remove_empty_dir(&dir) {
                if attempts >= REMOVE_ATTEMPTS || error.raw_os_error() != Some(libc::EBUSY) {
                    tracing::warn!(path = %dir.display(), %error, "failed to remove slot cgroup");
                    break;
                }
                tokio::time::sleep(remove_backoff(attempts)).await;
                attempts += 1;
            }
        }
    }

    /// Blocking form of [`SlotCgroup::remove`], for the error path of a spawn.
    pub(crate) fn remove_blocking(mut self) {
        for dir in std::mem::take(&mut self.dirs) {
            let mut attempts = 0;
            while let Err(error) = remove_empty_dir(&dir) {
                if attempts >= REMOVE_ATTEMPTS || error.raw_os_error() != Some(libc::EBUSY) {
                    tracing::warn!(path = %dir.display(), %error, "failed to remove slot cgroup");
                    break;
                }
                std::thread::sleep(remove_backoff(attempts));
                attempts += 1;
            }
        }
    }
}

impl Drop for SlotCgroup {
    fn drop(&mut self) {
        // Only a `create` that failed halfway gets here with directories left, because
        // both remove methods take them first.
        for dir in self.dirs.drain(..).rev() {
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

/// Tries to remove a busy cgroup this many times, about a second in all.
const REMOVE_ATTEMPTS: u32 = 105;

/// Wait before removal attempt `attempt + 1` of a cgroup that was busy. A killed
/// slot's processes usually leave it within a millisecond, so the first waits are
/// short: 0.25, 0.5, 1, 2, 4, 8 ms, then 10 ms.
fn remove_backoff(attempt: u32) -> Duration {
    Duration::from_micros((250u64 << attempt.min(6)).min(10_000))
}

/// Removes a cgroup directory; a missing one counts as removed. Fails with `EBUSY`
/// while the cgroup still has processes.
fn remove_empty_dir(dir: &Path) -> io::Result<()> {
    match std::fs::remove_dir(dir) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// v1 `cpu.shares`: 1,024 (the kernel default) per vCPU, at least the kernel minimum of 2.
pub(crate) fn cpu_shares(memory_mb: u32) -> u64 {
    (u64::from(memory_mb) * 1024 / MEMORY_MB_PER_VCPU).max(2)
}

/// v2 `cpu.weight`: 100 (the kernel default) per vCPU, within the kernel range 1–10,000.
pub(crate) fn cpu_weight(memory_mb: u32) -> u64 {
    (u64::from(memory_mb) * 100 / MEMORY_MB_PER_VCPU).clamp(1, 10_000)
}

fn write_value(dir: &Path, file: &str, value: u64) -> io::Result<()> {
    std::fs::write(dir.join(file), value.to_string()).map_err(|error| {
        io::Error::new(
            error.kind(),
            format!("failed to write {value} to {}: {error}", dir.join(file).display()),
        )
    })
}

fn has_any_controller(controllers: &[String]) -> bool {
    controllers.iter().any(|c| c == "memory" || c == "pids" || c == "cpu")
}

fn create_parent(dir: &Path, controller: &str) -> Option<PathBuf> {
    match create_writable_dir(dir) {
        Ok(()) => Some(dir.to_path_buf()),
        Err(error) => {
            tracing::info!(controller, path = %dir.display(), %error, "cgroup controller unavailable for slots");
            None
        }
    }
}

/// Slot cgroups left empty for longer than this are removed when a server starts,
/// because a server that was killed cannot remove its own. The age keeps a starting
/// server from removing a cgroup that another live server has just created but not
/// yet moved its slot into.
const STALE_CGROUP_AGE: std::time::Duration = std::time::Duration::from_secs(60);

/// Removes empty slot cgroups under `parent` older than [`STALE_CGROUP_AGE`].
fn remove_stale_cgroups(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    let mut removed = 0;
    for entry in entries.flatten() {
        let dir = entry.path();
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|modified| modified.elapsed().ok())
            .is_some_and(|age| age > STALE_CGROUP_AGE);
        let empty = std::fs::read_to_string(dir.join("cgroup.procs")).is_ok_and(|procs| procs.trim().is_empty());
        // rmdir of a cgroup fails while it has processes or children, so a busy
        // cgroup is never removed.
        if dir.is_dir() && old && empty && std::fs::remove_dir(&dir).is_ok() {
            removed += 1;
        }
    }
    if removed > 0 {
        tracing::info!(parent = %parent.display(), removed, "removed stale slot cgroups");
    }
}

/// Creates `dir` if needed and checks that this process may create cgroups in it,
/// because another user (root) may have created it before. Stale slot cgroups in it
/// are removed.
fn create_writable_dir(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK)
        .map_err(io::Error::from)?;
    remove_stale_cgroups(dir);
    Ok(())
}

// NOTE: only unit-tested; the integration tests run on a hybrid host, where the v1
// controllers take precedence, so this pure cgroup v2 path has not run end to end.
fn detect_v2(mount: &Path, parent_name: &str) -> Hierarchy {
    let parent = mount.join(parent_name);
    if let Err(error) = create_writable_dir(&parent) {
        tracing::info!(path = %parent.display(), %error, "cgroup v2 tree unavailable for slots");
        return Hierarchy::None;
    }
    // A v2 controller reaches a cgroup only if every ancestor lists it in
    // cgroup.subtree_control, so enable each one at the root and at the parent.
    let enable = |controller: &str| -> bool {
        let available = std::fs::read_to_string(mount.join("cgroup.controllers")).unwrap_or_default();
        if !available.split_whitespace().any(|c| c == controller) {
            return false;
        }
        for dir in [mount, parent.as_path()] {
            let enabled = std::fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
            if enabled.split_whitespace().any(|c| c == controller) {
                continue;
            }
            if let Err(error) = std::fs::write(dir.join("cgroup.subtree_control"), format!("+{controller}")) {
                tracing::info!(controller, path = %dir.display(), %error, "failed to enable cgroup v2 controller");
                return false;
            }
        }
        true
    };
    Hierarchy::V2 {
        memory: enable("memory"),
        pids: enable("pids"),
        cpu: enable("cpu"),
        parent,
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
struct CgroupMounts {
    /// Controllers and mount point of each v1 hierarchy.
    v1: Vec<(Vec<String>, PathBuf)>,
    v2: Option<PathBuf>,
}

/// Finds cgroup mounts in mountinfo text (format in proc(5)). Only mounts of a
/// hierarchy's root count, because a cgroup namespace or a bind mount of a subtree
/// would hide the paths the backend writes.
fn parse_cgroup_mounts(mountinfo: &str) -> CgroupMounts {
    let mut mounts = CgroupMounts::default();
    for line in mountinfo.lines() {
        let Some((before, after)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = before.split(' ').collect();
        let tail: Vec<&str> = after.split(' ').collect();
        if fields.len() < 5 || tail.len() < 3 || fields[3] != "/" {
            continue;
        }
        let mount_point = PathBuf::from(unescape_mountinfo(fields[4]));
        match tail[0] {
            "cgroup" => {
                let controllers = tail[2].split(',').map(str::to_string).collect();
                mounts.v1.push((controllers, mount_point));
            }
            "cgroup2" if mounts.v2.is_none() => mounts.v2 = Some(mount_point),
            _ => {}
        }
    }
    mounts
}

/// Decodes the octal escapes (`\040` for a space) that mountinfo uses in paths.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            let value = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(value);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_share_follows_memory() {
        assert_eq!(cpu_shares(1769), 1024);
        assert_eq!(cpu_shares(128), 74);
        assert_eq!(cpu_shares(1), 2);
        assert_eq!(cpu_shares(10240), 5927);
        assert_eq!(cpu_weight(1769), 100);
        assert_eq!(cpu_weight(128), 7);
        assert_eq!(cpu_weight(1), 1);
    }

    #[test]
    fn remove_backoff_grows_to_ten_ms() {
        assert_eq!(remove_backoff(0), Duration::from_micros(250));
        assert_eq!(remove_backoff(5), Duration::from_millis(8));
        assert_eq!(remove_backoff(6), Duration::from_millis(10));
        assert_eq!(remove_backoff(50), Duration::from_millis(10));
        let total: Duration = (0..REMOVE_ATTEMPTS).map(remove_backoff).sum();
        assert!(
            total > Duration::from_millis(900) && total < Duration::from_millis(1100),
            "{total:?}"
        );
    }

    #[test]
    fn mountinfo_hybrid_layout() {
        let text = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:1 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 /docker/abc /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
        let mounts = parse_cgroup_mounts(text);
        assert_eq!(
            mounts.v1,
            vec![
                (
                    vec!["rw".to_string(), "cpu".to_string(), "cpuacct".to_string()],
                    PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")
                ),
                (
                    vec!["rw".to_string(), "memory".to_string()],
                    PathBuf::from("/sys/fs/cgroup/memory")
                ),
            ]
        );
        assert_eq!(mounts.v2, Some(PathBuf::from("/sys/fs/cgroup/unified")));
    }

    #[test]
    fn mountinfo_escaped_path() {
        let text = "41 31 0:38 / /mnt/cgroup\\040two rw - cgroup2 cgroup2 rw\n";
        assert_eq!(parse_cgroup_mounts(text).v2, Some(PathBuf::from("/mnt/cgroup two")));
    }
}
