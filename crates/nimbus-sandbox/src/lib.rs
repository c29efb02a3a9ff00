//! Execution environments ("slots") for function runtimes, behind the
//! [`SandboxBackend`] trait.
//!
//! A backend starts a runtime process tree and hands back a listening socket for the
//! slot's Runtime API, pipes for its stdout and stderr, and a [`SlotControl`] to
//! watch, measure and kill it. [`ProcessBackend`] runs the runtime as a plain child
//! process with no isolation, which is what an unprivileged host without user
//! namespaces can offer.

mod cgroup;
mod init;
mod namespace;
mod process;
mod protocol;
mod rootfs;
mod seccomp;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

pub use init::init_main;
pub use namespace::{IsolationMode, NamespaceBackend, NamespaceOptions};
pub use process::ProcessBackend;

/// File name of the small init program installed beside `nimbus`.
pub const INIT_PROGRAM_NAME: &str = "nimbus-sandbox-init";

/// Argument that makes the `nimbus` binary itself run as a slot's init process.
pub const INIT_SUBCOMMAND: &str = "sandbox-init";

/// Returns the init program of namespace slots for the `nimbus` executable at
/// `nimbus`, with the arguments that come before the backend's own.
///
/// The small `nimbus-sandbox-init` beside it is preferred: every slot keeps two init
/// processes, and a program of under 1 MB starts faster and keeps less private
/// memory than the whole server binary. Without it, `nimbus sandbox-init` runs the
/// same code.
pub fn init_program(nimbus: &std::path::Path) -> (PathBuf, Vec<String>) {
    use std::os::unix::fs::PermissionsExt;
    let small = nimbus.with_file_name(INIT_PROGRAM_NAME);
    let executable =
        std::fs::metadata(&small).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0);
    if executable {
        (small, Vec::new())
    } else {
        (nimbus.to_path_buf(), vec![INIT_SUBCOMMAND.to_string()])
    }
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What to run in a slot and with which limits. Paths are host paths; the backend
/// decides where the slot sees them (see [`SlotLayout`]).
#[derive(Debug, Clone)]
pub struct SlotSpec {
    /// Unique id, used in cgroup names and logs.
    pub slot_id: String,
    /// Unpacked code package, shown read-only at [`SlotLayout::task_root`].
    pub code_dir: PathBuf,
    /// Runtime files such as bootstraps, shown read-only at [`SlotLayout::runtime_root`].
    pub runtime_dir: PathBuf,
    /// Memory limit of the whole slot in MB.
    pub memory_mb: u32,
    /// Size of the writable `/tmp` in MB.
    pub tmp_mb: u32,
    /// Maximum number of processes and threads in the slot.
    pub pids_max: u32,
    /// Command to start, with paths as the slot sees them; `argv[0]` is absolute.
    pub argv: Vec<String>,
    /// Complete environment of the runtime. The backend adds `AWS_LAMBDA_RUNTIME_API`.
    pub env: Vec<(String, String)>,
}

/// Paths at which a backend shows the slot's files to the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotLayout {
    pub task_root: PathBuf,
    pub runtime_root: PathBuf,
    pub tmp_dir: PathBuf,
}

/// Exit of a slot's runtime process: an exit code or a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotExit {
    Code(i32),
    Signal(i32),
}

/// Isolation that a backend enforces. The server logs the protections that are off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Protections {
    pub pid_mount_ipc_uts_namespaces: bool,
    pub network_namespace: bool,
    pub read_only_root: bool,
    pub memory_limit: bool,
    pub pids_limit: bool,
    pub cpu_weight: bool,
    pub unprivileged_user: bool,
    pub no_new_privs: bool,
    pub seccomp: bool,
}

impl Protections {
    /// Names of the protections that are off.
    pub fn disabled(&self) -> Vec<&'static str> {
        let all = [
            (self.pid_mount_ipc_uts_namespaces, "pid/mount/ipc/uts namespaces"),
            (self.network_namespace, "network namespace"),
            (self.read_only_root, "read-only root filesystem"),
            (self.memory_limit, "memory limit"),
            (self.pids_limit, "process limit"),
            (self.cpu_weight, "cpu weight"),
            (self.unprivileged_user, "unprivileged user"),
            (self.no_new_privs, "no_new_privs"),
            (self.seccomp, "seccomp filter"),
        ];
        all.iter().filter(|(on, _)| !on).map(|(_, name)| *name).collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("failed to start slot {slot_id}: {reason}")]
    Spawn { slot_id: String, reason: String },
    #[error("sandbox I/O failed for slot {slot_id}: {source}")]
    Io { slot_id: String, source: std::io::Error },
}

/// A started slot.
pub struct SlotProcess {
    /// Listening socket of the slot's Runtime API; the runtime reaches it at
    /// [`SlotProcess::runtime_api_address`].
    pub runtime_api: std::net::TcpListener,
    /// The `host:port` the runtime was given in `AWS_LAMBDA_RUNTIME_API`.
    pub runtime_api_address: String,
    pub stdout: std::fs::File,
    pub stderr: std::fs::File,
    pub control: Box<dyn SlotControl>,
}

/// Watching and ending a started slot. Every method takes `&self`, so one slot can
/// be awaited, measured and killed from several tasks at once.
pub trait SlotControl: Send + Sync {
    fn pid(&self) -> u32;
    /// Resolves when the slot's runtime process has exited. Several callers may wait
    /// at once, and waiting again after the exit returns the same result.
    fn wait(&self) -> BoxFuture<'_, SlotExit>;
    /// Kills every process of the slot. Safe to call more than once.
    fn kill(&self);
    /// Peak memory of the slot in bytes, where the backend can measure it.
    fn memory_peak_bytes(&self) -> Option<u64>;
    /// Returns whether the kernel killed a process of the slot for exceeding its memory.
    fn out_of_memory(&self) -> bool;
    /// Kills the slot, waits for it to exit and releases what the backend created for
    /// it. Safe to call more than once.
    fn destroy(&self) -> BoxFuture<'_, ()>;
}

pub trait SandboxBackend: Send + Sync {
    fn name(&self) -> &'static str;
    fn protections(&self) -> Protections;
    fn layout(&self, spec: &SlotSpec) -> SlotLayout;
    fn spawn(&self, spec: &SlotSpec) -> Result<SlotProcess, SandboxError>;
}
