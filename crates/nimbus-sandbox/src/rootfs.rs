//! The filesystem and network of a namespace slot, set up by its PID 1.
//!
//! The new root is a tmpfs on the slot's empty directory with read-only bind mounts
//! of the host's system directories, the code at `/var/task`, the runtime files at
//! `/var/runtime`, a sized tmpfs `/tmp`, a fresh `/proc` and a minimal `/dev`.
//! Everything else of the host, such as `/home`, `/root` and the data directory, is
//! not mounted and so cannot be reached after `pivot_root`.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::protocol::InitSpec;

/// Host directories shown read-only in every slot. A symlink (as `/bin` is on
/// merged-/usr systems) is recreated as the same symlink; a missing one is skipped.
const SYSTEM_DIRS: &[&str] = &["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc"];

/// Device nodes bound from the host's `/dev`.
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

pub(crate) const TASK_ROOT: &str = "/var/task";
pub(crate) const RUNTIME_ROOT: &str = "/var/runtime";
pub(crate) const TMP_DIR: &str = "/tmp";

/// Hostname of every slot. It resolves through the host's `/etc/hosts` without DNS,
/// which slots do not have.
pub(crate) const HOSTNAME: &str = "localhost";

// Attribute bits of mount_setattr(2), from <linux/mount.h>.
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Builds the slot's root filesystem and switches to it. Runs in the slot's PID 1,
/// which has `CAP_SYS_ADMIN` over the slot's mount namespace.
pub(crate) fn enter_new_root(spec: &InitSpec) -> Result<(), String> {
    // Mounts below must not propagate back to the host's mount namespace.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|errno| format!("failed to make the mount tree private: {errno}"))?;

    let root = spec.root_dir.as_path();
    mount_tmpfs(root, "size=1m,mode=0755", MsFlags::MS_NOSUID | MsFlags::MS_NODEV)?;

    for name in SYSTEM_DIRS {
        let host_path = Path::new("/").join(name);
        let target = root.join(name);
        let Ok(metadata) = std::fs::symlink_metadata(&host_path) else {
            continue;
        };
        if metadata.file_type().is_symlink() {
            let link = std::fs::read_link(&host_path)
                .map_err(|error| format!("failed to read symlink {}: {error}", host_path.display()))?;
            std::os::unix::fs::symlink(&link, &target)
                .map_err(|error| format!("failed to create symlink {}: {error}", target.display()))?;
        } else if metadata.is_dir() {
            create_dir(&target)?;
            bind_read_only(&host_path, &target)?;
        }
    }

    let task_root = root.join(TASK_ROOT.trim_start_matches('/'));
    let runtime_root = root.join(RUNTIME_ROOT.trim_start_matches('/'));
    create_dir(&task_root)?;
    create_dir(&runtime_root)?;
    bind_read_only(&spec.code_dir, &task_root)?;
    bind_read_only(&spec.runtime_dir, &runtime_root)?;

    // NOTE: tmpfs pages are charged to the writer's memory cgroup, so data in /tmp
    // counts against the slot's memory limit, unlike Lambda's disk-backed /tmp.
    let tmp = root.join(TMP_DIR.trim_start_matches('/'));
    create_dir(&tmp)?;
    mount_tmpfs(
        &tmp,
        &format!("size={}m,mode=1777", spec.tmp_mb),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
    )?;

    build_dev(&root.join("dev"))?;

    // procfs shows the PID namespace of the mounting process, which is the slot's.
    let proc_dir = root.join("proc");
    create_dir(&proc_dir)?;
    let proc_flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some("proc"), &proc_dir, Some("proc"), proc_flags, None::<&str>)
        .map_err(|errno| format!("failed to mount /proc: {errno}"))?;

    // pivot_root(".", ".") stacks the old root on top of the new one, so unmounting
    // "." detaches the old root without a directory to park it in.
    std::env::set_current_dir(root).map_err(|error| format!("failed to enter {}: {error}", root.display()))?;
    nix::unistd::pivot_root(".", ".").map_err(|errno| format!("pivot_root failed: {errno}"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|errno| format!("failed to detach the old root: {errno}"))?;
    std::env::set_current_dir("/").map_err(|error| format!("failed to enter the new root: {error}"))?;

    remount_read_only(Path::new("/"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV)?;
    Ok(())
}

/// Creates `/dev` with the usual character devices and `/proc/self/fd` links.
fn build_dev(dev: &Path) -> Result<(), String> {
    create_dir(dev)?;
    mount_tmpfs(dev, "size=64k,mode=0755", MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC)?;
    for name in DEVICES {
        let host_node = Path::new("/dev").join(name);
        if !host_node.exists() {
            continue;
        }
        let node = dev.join(name);
        std::fs::File::create(&node).map_err(|error| format!("failed to create {}: {error}", node.display()))?;
        // A bind mount rather than mknod, because mknod needs CAP_MKNOD in the initial
        // user namespace and a tmpfs mounted in a user namespace ignores device nodes.
        mount(Some(&host_node), &node, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(|errno| format!("failed to bind-mount {}: {errno}", host_node.display()))?;
    }
    let links = [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ];
    for (name, target) in links {
        std::os::unix::fs::symlink(target, dev.join(name))
            .map_err(|error| format!("failed to create /dev/{name}: {error}"))?;
    }
    remount_read_only(dev, MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC)
}

fn create_dir(path: &Path) -> Result<(), String> {
    std::fs::create_dir_all(path).map_err(|error| format!("failed to create {}: {error}", path.display()))
}

fn mount_tmpfs(target: &Path, options: &str, flags: MsFlags) -> Result<(), String> {
    mount(Some("tmpfs"), target, Some("tmpfs"), flags, Some(options))
        .map_err(|errno| format!("failed to mount a tmpfs at {}: {errno}", target.display()))
}

/// Bind-mounts `source` at `target` with everything below it read-only, nosuid and
/// nodev.
fn bind_read_only(source: &Path, target: &Path) -> Result<(), String> {
    mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|errno| {
        format!(
            "failed to bind-mount {} at {}: {errno}",
            source.display(),
            target.display()
        )
    })?;
    match set_attributes_recursively(target, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV) {
        Ok(()) => Ok(()),
        // Kernels before 5.12 lack mount_setattr. Remounting covers only the top
        // mount, so the submounts of a recursive bind would stay writable: replace it
        // with a plain bind, which leaves submounts out.
        Err(Errno::ENOSYS) => {
            umount2(target, MntFlags::MNT_DETACH)
                .map_err(|errno| format!("failed to unmount {}: {errno}", target.display()))?;
            mount(Some(source), target, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(|errno| {
                format!(
                    "failed to bind-mount {} at {}: {errno}",
                    source.display(),
                    target.display()
                )
            })?;
            remount_read_only(target, MsFlags::MS_NOSUID | MsFlags::MS_NODEV)
        }
        Err(errno) => Err(format!("failed to make {} read-only: {errno}", target.display())),
    }
}

/// Sets mount attributes on `target` and every mount below it (mount_setattr(2),
/// Linux 5.12 and later). Unlike a remount, it keeps the flags a user namespace
/// may not clear.
fn set_attributes_recursively(target: &Path, attributes: u64) -> Result<(), Errno> {
    let path = path_cstring(target).map_err(|_| Errno::EINVAL)?;
    let attr = MountAttr {
        attr_set: attributes,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: `path` is a NUL-terminated string and `attr` a live mount_attr of the
    // size passed; the kernel only reads both during the call.
    let result = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::AT_RECURSIVE as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    Errno::result(result).map(drop)
}

/// Remounts the mount at `target` read-only with `extra` flags, keeping the flags it
/// already has, because a user namespace may not clear flags locked by its parent.
fn remount_read_only(target: &Path, extra: MsFlags) -> Result<(), String> {
    let current = nix::sys::statvfs::statvfs(target)
        .map_err(|errno| format!("failed to read the mount flags of {}: {errno}", target.display()))?;
    let mut flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | extra;
    let kept = [
        (nix::sys::statvfs::FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (nix::sys::statvfs::FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (nix::sys::statvfs::FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (nix::sys::statvfs::FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (nix::sys::statvfs::FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (nix::sys::statvfs::FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ];
    for (fs_flag, mount_flag) in kept {
        if current.flags().contains(fs_flag) {
            flags |= mount_flag;
        }
    }
    mount(None::<&str>, target, None::<&str>, flags, None::<&str>)
        .map_err(|errno| format!("failed to remount {} read-only: {errno}", target.display()))
}

fn path_cstring(path: &Path) -> Result<CString, String> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| format!("path {} contains a NUL byte", path.display()))
}

/// Brings up the loopback interface of the slot's network namespace, which starts
/// down in a new namespace.
pub(crate) fn bring_up_loopback() -> Result<(), String> {
    let socket = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|errno| format!("failed to open a socket for interface setup: {errno}"))?;
    // SAFETY: ifreq is a plain C struct for which all zero bytes are a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *slot = *byte as libc::c_char;
    }
    use std::os::fd::AsRawFd;
    // SAFETY: SIOCGIFFLAGS reads the name and writes the flags of `request`, which is
    // a valid ifreq that outlives the call.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) } < 0 {
        return Err(format!("failed to read the flags of lo: {}", Errno::last()));
    }
    // SAFETY: SIOCGIFFLAGS filled the `ifru_flags` member of the union.
    unsafe {
        request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
    }
    // SAFETY: as for SIOCGIFFLAGS; SIOCSIFFLAGS only reads `request`.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &request) } < 0 {
        return Err(format!("failed to bring up lo: {}", Errno::last()));
    }
    Ok(())
}
