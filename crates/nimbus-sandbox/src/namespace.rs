//! The namespace backend: each slot is a process tree in its own PID, mount, IPC,
//! UTS and network namespaces with cgroup limits, running as an unprivileged user
//! without capabilities, with `no_new_privs` and a seccomp filter.
//!
//! The backend only forks to execute its init program (see [`crate::init_main`]),
//! and between that fork and exec it calls nothing but `dup2` and `fcntl`, so it is
//! safe in a multi-threaded server. All namespace and mount work happens in the
//! single-threaded init process.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::socket::{socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::cgroup::{CgroupManager, SlotCgroup, SlotLimits};
use crate::init::RUNTIME_API_PORT;
use crate::protocol::{
    receive_message, send_message, InitIsolation, InitMessage, InitSpec, CONTROL_FD, KILL_REQUEST, MAX_MESSAGE_BYTES,
};
use crate::{
    rootfs, seccomp, BoxFuture, Protections, SandboxBackend, SandboxError, SlotControl, SlotExit, SlotLayout,
    SlotProcess, SlotSpec,
};

/// Isolation of slots, chosen at construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsolationMode {
    /// As root: new namespaces, and the runtime runs as the configured sandbox user.
    Namespaces,
    /// Without root: the same namespaces inside a user namespace that maps only the
    /// server's own uid and gid. The runtime keeps that host uid.
    UserNamespaces,
    /// No namespaces, for hosts that allow none: the runtime shares the host's
    /// filesystem and network and gets only `no_new_privs`, seccomp and, where
    /// writable, cgroup limits.
    Bare,
}

/// Settings of a [`NamespaceBackend`].
#[derive(Debug, Clone)]
pub struct NamespaceOptions {
    /// Name of the parent cgroup of all slots, created at the root of each cgroup
    /// hierarchy (for example `/sys/fs/cgroup/memory/nimbus`).
    pub cgroup_parent: String,
    /// Host uid and gid of runtimes when the server runs as root. The default 65534
    /// (`nobody`) should own no file of the host.
    pub sandbox_uid: u32,
    pub sandbox_gid: u32,
    /// How long `spawn` waits for the init process to report the runtime started.
    pub startup_timeout: Duration,
    /// Isolation to use; `None` picks the strongest one the host allows.
    pub isolation: Option<IsolationMode>,
}

impl Default for NamespaceOptions {
    fn default() -> Self {
        NamespaceOptions {
            cgroup_parent: "nimbus".to_string(),
            sandbox_uid: 65534,
            sandbox_gid: 65534,
            startup_timeout: Duration::from_secs(10),
            isolation: None,
        }
    }
}

pub struct NamespaceBackend {
    init_program: PathBuf,
    init_args_prefix: Vec<String>,
    /// Parent of each slot's directory, which contains the mount point of its root.
    work_dir: PathBuf,
    options: NamespaceOptions,
    mode: IsolationMode,
    cgroups: CgroupManager,
    seccomp_available: bool,
    host_uid: u32,
    host_gid: u32,
}

impl NamespaceBackend {
    /// Creates a backend that starts `init_program init_args_prefix... --control-fd 3`
    /// for each slot. That program must call [`crate::init_main`] with the arguments
    /// after the prefix. Probes which namespaces the host allows (by forking a child
    /// that only calls `unshare`) and creates the cgroup parents.
    ///
    /// Fails if `work_dir` cannot be created, `options.cgroup_parent` is not a plain
    /// name, or the requested `options.isolation` is not available.
    pub fn new(
        init_program: PathBuf,
        init_args_prefix: Vec<String>,
        work_dir: PathBuf,
        options: NamespaceOptions,
    ) -> io::Result<Self> {
        if !is_plain_name(&options.cgroup_parent) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "invalid cgroup parent {:?}: use a single directory name",
                    options.cgroup_parent
                ),
            ));
        }
        std::fs::create_dir_all(&work_dir).map_err(|error| {
            io::Error::new(
                error.kind(),
                format!(
                    "failed to create sandbox work directory {}: {error}",
                    work_dir.display()
                ),
            )
        })?;

        let host_uid = nix::unistd::geteuid().as_raw();
        let host_gid = nix::unistd::getegid().as_raw();
        let available = available_modes(host_uid == 0);
        let mode = match options.isolation {
            Some(requested) if available.contains(&requested) => requested,
            Some(requested) => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("isolation {requested:?} is not available on this host (available: {available:?})"),
                ));
            }
            None => available[0],
        };
        let cgroups = CgroupManager::detect(&options.cgroup_parent);
        let backend = NamespaceBackend {
            init_program,
            init_args_prefix,
            work_dir,
            options,
            mode,
            cgroups,
            seccomp_available: seccomp::available(),
            host_uid,
            host_gid,
        };
        let disabled = backend.protections().disabled();
        tracing::info!(mode = ?backend.mode, ?disabled, "namespace sandbox backend ready");
        Ok(backend)
    }

    /// Returns the isolation this backend uses.
    pub fn isolation(&self) -> IsolationMode {
        self.mode
    }

    fn slot_dir(&self, slot_id: &str) -> PathBuf {
        self.work_dir.join(slot_id)
    }

    fn init_spec(&self, spec: &SlotSpec, layout: &SlotLayout, runtime_api_address: &str) -> InitSpec {
        let (isolation, runtime_uid, runtime_gid) = match self.mode {
            IsolationMode::Namespaces => (
                InitIsolation::Namespaces { user_namespace: false },
                self.options.sandbox_uid,
                self.options.sandbox_gid,
            ),
            // In its nested user namespace the runtime has the server's uid, unless
            // that is root, which it must not appear to be.
            IsolationMode::UserNamespaces if self.host_uid == 0 => (
                InitIsolation::Namespaces { user_namespace: true },
                self.options.sandbox_uid,
                self.options.sandbox_gid,
            ),
            IsolationMode::UserNamespaces => (
                InitIsolation::Namespaces { user_namespace: true },
                self.host_uid,
                self.host_gid,
            ),
            IsolationMode::Bare => (InitIsolation::Bare, self.options.sandbox_uid, self.options.sandbox_gid),
        };
        let mut env: Vec<(String, String)> = spec
            .env
            .iter()
            .filter(|(name, _)| name != "AWS_LAMBDA_RUNTIME_API")
            .cloned()
            .collect();
        env.push(("AWS_LAMBDA_RUNTIME_API".to_string(), runtime_api_address.to_string()));
        if self.mode == IsolationMode::Bare {
            env.retain(|(name, _)| name != "TMPDIR");
            env.push(("TMPDIR".to_string(), layout.tmp_dir.display().to_string()));
        }
        InitSpec {
            slot_id: spec.slot_id.clone(),
            isolation,
            host_uid: self.host_uid,
            host_gid: self.host_gid,
            runtime_uid,
            runtime_gid,
            cgroup_procs: Vec::new(),
            root_dir: self.slot_dir(&spec.slot_id).join("root"),
            code_dir: spec.code_dir.clone(),
            runtime_dir: spec.runtime_dir.clone(),
            tmp_mb: spec.tmp_mb,
            hostname: rootfs::HOSTNAME.to_string(),
            working_dir: layout.task_root.clone(),
            argv: spec.argv.clone(),
            env,
        }
    }

    /// Warns when the runtime user probably cannot read the code, which a bind mount
    /// shows with its host owner and mode.
    fn check_readable(&self, spec: &SlotSpec) {
        if self.mode == IsolationMode::UserNamespaces || (self.mode == IsolationMode::Bare && self.host_uid != 0) {
            return;
        }
        for dir in [&spec.code_dir, &spec.runtime_dir] {
            if let Ok(metadata) = std::fs::metadata(dir) {
                if metadata.uid() != self.options.sandbox_uid && metadata.mode() & 0o005 != 0o005 {
                    tracing::warn!(
                        slot_id = %spec.slot_id,
                        path = %dir.display(),
                        mode = format!("{:o}", metadata.mode() & 0o7777),
                        uid = self.options.sandbox_uid,
                        "slot directory is not readable by the sandbox user; make it world-readable"
                    );
                }
            }
        }
    }
}

impl SandboxBackend for NamespaceBackend {
    fn name(&self) -> &'static str {
        "namespace"
    }

    fn protections(&self) -> Protections {
        let namespaces = self.mode != IsolationMode::Bare;
        let (memory, pids, cpu) = self.cgroups.available();
        Protections {
            pid_mount_ipc_uts_namespaces: namespaces,
            network_namespace: namespaces,
            read_only_root: namespaces,
            memory_limit: memory,
            pids_limit: pids,
            cpu_weight: cpu,
            // In bare mode without root the runtime runs as the server's own user.
            unprivileged_user: namespaces || self.host_uid == 0,
            no_new_privs: true,
            seccomp: self.seccomp_available,
        }
    }

    fn layout(&self, spec: &SlotSpec) -> SlotLayout {
        match self.mode {
            IsolationMode::Bare => SlotLayout {
                task_root: spec.code_dir.clone(),
                runtime_root: spec.runtime_dir.clone(),
                tmp_dir: self.slot_dir(&spec.slot_id).join("tmp"),
            },
            IsolationMode::Namespaces | IsolationMode::UserNamespaces => SlotLayout {
                task_root: PathBuf::from(rootfs::TASK_ROOT),
                runtime_root: PathBuf::from(rootfs::RUNTIME_ROOT),
                tmp_dir: PathBuf::from(rootfs::TMP_DIR),
            },
        }
    }

    fn spawn(&self, spec: &SlotSpec) -> Result<SlotProcess, SandboxError> {
        let slot_id = spec.slot_id.as_str();
        let spawn_error = |reason: String| SandboxError::Spawn {
            slot_id: slot_id.to_string(),
            reason,
        };
        let io_error = |source: io::Error| SandboxError::Io {
            slot_id: slot_id.to_string(),
            source,
        };
        if !is_plain_name(slot_id) {
            return Err(spawn_error(
                "invalid slot id: use letters, digits, '.', '_' and '-'".to_string(),
            ));
        }
        match spec.argv.first() {
            None => return Err(spawn_error("argv is empty".to_string())),
            Some(program) if !program.starts_with('/') => {
                return Err(spawn_error(format!("argv[0] {program:?} is not an absolute path")));
            }
            Some(_) => {}
        }
        self.check_readable(spec);

        let layout = self.layout(spec);
        let slot_dir = self.slot_dir(slot_id);
        let mut cleanup = SpawnCleanup {
            slot_dir: Some(slot_dir.clone()),
            cgroup: None,
        };
        // As root, a bare runtime runs as the sandbox user and needs its own /tmp.
        // NOTE: that user also needs search permission on every parent of the work
        // directory and of the code directory, which bare mode does not check.
        let tmp_owner = (self.host_uid == 0).then_some((self.options.sandbox_uid, self.options.sandbox_gid));
        prepare_slot_dir(&slot_dir, self.mode, tmp_owner).map_err(io_error)?;
        let limits = SlotLimits {
            memory_mb: spec.memory_mb,
            pids_max: spec.pids_max,
        };
        let cgroup = self.cgroups.create(slot_id, limits).map_err(io_error)?;

        // In bare mode the runtime shares the host's network, so the backend binds a
        // free port itself. In a namespace the supervisor binds the fixed port.
        let bare_listener = match self.mode {
            IsolationMode::Bare => Some(std::net::TcpListener::bind("127.0.0.1:0").map_err(io_error)?),
            _ => None,
        };
        let runtime_api_address = match &bare_listener {
            Some(listener) => listener.local_addr().map_err(io_error)?.to_string(),
            None => format!("127.0.0.1:{RUNTIME_API_PORT}"),
        };
        let mut init_spec = self.init_spec(spec, &layout, &runtime_api_address);
        init_spec.cgroup_procs = cgroup.as_ref().map(SlotCgroup::procs_files).unwrap_or_default();
        cleanup.cgroup = cgroup;
        let message = init_spec.encode();
        if message.len() > MAX_MESSAGE_BYTES {
            return Err(spawn_error(format!(
                "argv and environment take {} bytes, more than the limit of {MAX_MESSAGE_BYTES}",
                message.len()
            )));
        }

        let (control, init_control) =
            socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
                .map_err(|errno| io_error(errno.into()))?;
        send_message(control.as_fd(), &message, &[], MsgFlags::empty()).map_err(|errno| io_error(errno.into()))?;
        let (stdout_read, stdout_write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|errno| io_error(errno.into()))?;
        let (stderr_read, stderr_write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|errno| io_error(errno.into()))?;

        let mut command = tokio::process::Command::new(&self.init_program);
        command
            .args(&self.init_args_prefix)
            .args(["--control-fd", &CONTROL_FD.to_string()])
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout_write))
            .stderr(Stdio::from(stderr_write))
            // Its own process group keeps terminal signals meant for the server away.
            .process_group(0)
            .kill_on_drop(true);
        let init_control_fd = init_control.as_raw_fd();
        // SAFETY: the closure runs between fork and exec in the child, and calls only
        // dup2 and fcntl, which are async-signal-safe.
        unsafe {
            command.pre_exec(move || place_control_socket(init_control_fd));
        }
        let child = command.spawn().map_err(|error| {
            spawn_error(format!(
                "failed to start the init program {}: {error}",
                self.init_program.display()
            ))
        })?;
        // The Command owns the pipes' write ends. They must close here so the reader
        // gets end of file once the slot's processes are gone.
        drop(command);
        drop(init_control);

        let mut handshake = Handshake::default();
        let result = handshake.run(&control, self.options.startup_timeout);
        let mut child = child;
        let listener_fd = match result {
            Ok(listener_fd) => listener_fd,
            Err(reason) => {
                handshake.kill();
                stop_init(&mut child);
                let output = read_available(&stderr_read);
                let reason = if output.is_empty() {
                    reason
                } else {
                    format!("{reason}; init stderr: {output}")
                };
                return Err(spawn_error(reason));
            }
        };
        let runtime_api = match (bare_listener, listener_fd) {
            (Some(listener), _) => listener,
            (None, Some(fd)) => std::net::TcpListener::from(fd),
            (None, None) => {
                handshake.kill();
                stop_init(&mut child);
                return Err(spawn_error("the init process sent no Runtime API listener".to_string()));
            }
        };
        let (Some(pid), pidfd) = (handshake.pid, handshake.pidfd.take()) else {
            handshake.kill();
            stop_init(&mut child);
            return Err(spawn_error(
                "the init process did not report its supervisor".to_string(),
            ));
        };
        let init = InitProcess {
            child,
            slot_dir: cleanup.slot_dir.take().unwrap_or_default(),
        };
        tracing::debug!(slot_id, pid, mode = ?self.mode, "slot started");
        Ok(SlotProcess {
            runtime_api,
            runtime_api_address,
            stdout: std::fs::File::from(stdout_read),
            stderr: std::fs::File::from(stderr_read),
            control: Box::new(NamespaceSlot {
                slot_id: slot_id.to_string(),
                mode: self.mode,
                pid,
                pidfd,
                control: Arc::new(control),
                reader: tokio::sync::Mutex::new(None),
                exit: OnceLock::new(),
                cgroup: std::sync::Mutex::new(cleanup.cgroup.take()),
                init: tokio::sync::Mutex::new(Some(init)),
            }),
        })
    }
}

/// Moves the init end of the control socket to [`CONTROL_FD`] without close-on-exec.
/// Runs between fork and exec, so it calls only async-signal-safe functions.
fn place_control_socket(fd: RawFd) -> io::Result<()> {
    // SAFETY: dup2 and fcntl act on integer descriptors and touch no memory.
    let result = unsafe {
        if fd == CONTROL_FD {
            // dup2 onto itself would keep close-on-exec set.
            libc::fcntl(fd, libc::F_SETFD, 0)
        } else {
            libc::dup2(fd, CONTROL_FD)
        }
    };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Returns the isolation modes the host allows, strongest first; `Bare` is always last.
fn available_modes(is_root: bool) -> Vec<IsolationMode> {
    let namespaces =
        libc::CLONE_NEWNS | libc::CLONE_NEWNET | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS | libc::CLONE_NEWPID;
    let mut modes = Vec::new();
    if is_root && probe_unshare(namespaces) {
        modes.push(IsolationMode::Namespaces);
    }
    if probe_unshare(libc::CLONE_NEWUSER | namespaces) {
        modes.push(IsolationMode::UserNamespaces);
    }
    modes.push(IsolationMode::Bare);
    modes
}

/// Returns whether a child process may unshare `flags`.
fn probe_unshare(flags: libc::c_int) -> bool {
    // SAFETY: the child calls only unshare and _exit, which are async-signal-safe,
    // so forking is sound even though the server has other threads.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: see above; _exit never returns.
        unsafe {
            let code = if libc::unshare(flags) == 0 { 0 } else { 1 };
            libc::_exit(code);
        }
    }
    if pid < 0 {
        return false;
    }
    matches!(
        nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None),
        Ok(nix::sys::wait::WaitStatus::Exited(_, 0))
    )
}

/// Returns whether `name` is a single path component without special meaning.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Creates the slot's directory with an empty `root` (namespace mode) or `tmp` (bare
/// mode), first removing a leftover of an earlier slot with the same id. A bare
/// slot's `tmp` belongs to `tmp_owner` when given.
fn prepare_slot_dir(slot_dir: &Path, mode: IsolationMode, tmp_owner: Option<(u32, u32)>) -> io::Result<()> {
    match std::fs::remove_dir_all(slot_dir) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    if mode != IsolationMode::Bare {
        return std::fs::create_dir_all(slot_dir.join("root"));
    }
    let tmp = slot_dir.join("tmp");
    std::fs::create_dir_all(&tmp)?;
    if let Some((uid, gid)) = tmp_owner {
        std::os::unix::fs::chown(&tmp, Some(uid), Some(gid))?;
    }
    Ok(())
}

/// Removes what a failed spawn created.
struct SpawnCleanup {
    slot_dir: Option<PathBuf>,
    cgroup: Option<SlotCgroup>,
}

impl Drop for SpawnCleanup {
    fn drop(&mut self) {
        if let Some(cgroup) = self.cgroup.take() {
            cgroup.remove_blocking();
        }
        if let Some(dir) = self.slot_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Kills the init process and waits up to two seconds for it, so its cgroups can go.
fn stop_init(child: &mut tokio::process::Child) {
    let _ = child.start_kill();
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Reads what a pipe contains right now, for error messages.
fn read_available(pipe: &OwnedFd) -> String {
    let _ = nix::fcntl::fcntl(
        pipe.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    );
    let mut buffer = vec![0u8; 4096];
    let length = nix::unistd::read(pipe.as_raw_fd(), &mut buffer).unwrap_or(0);
    String::from_utf8_lossy(&buffer[..length]).trim().to_string()
}

/// Reports of the init process received while the slot starts.
#[derive(Default)]
struct Handshake {
    pid: Option<u32>,
    pidfd: Option<OwnedFd>,
}

impl Handshake {
    /// Reads reports until the runtime is running. Returns the Runtime API listener
    /// the supervisor sent, if any.
    fn run(&mut self, control: &OwnedFd, timeout: Duration) -> Result<Option<OwnedFd>, String> {
        let timeout_value = nix::sys::time::TimeVal::new(
            timeout.as_secs() as libc::time_t,
            timeout.subsec_micros() as libc::suseconds_t,
        );
        nix::sys::socket::setsockopt(control, nix::sys::socket::sockopt::ReceiveTimeout, &timeout_value)
            .map_err(|errno| format!("failed to set the startup timeout: {errno}"))?;
        loop {
            let mut received = match receive_message(control.as_fd(), MsgFlags::empty()) {
                Ok(received) => received,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(nix::errno::Errno::EAGAIN) => {
                    return Err(format!("timed out after {timeout:?} waiting for the slot to start"));
                }
                Err(errno) => return Err(format!("failed to read from the init process: {errno}")),
            };
            if received.bytes.is_empty() {
                return Err("the init process exited before the slot was ready".to_string());
            }
            match InitMessage::decode(&received.bytes)? {
                InitMessage::Started { pid } => {
                    self.pid = Some(pid as u32);
                    self.pidfd = received.fds.pop();
                }
                InitMessage::Ready => return Ok(received.fds.pop()),
                InitMessage::Failed { message } => return Err(message),
                InitMessage::Exited(exit) => {
                    return Err(format!("the runtime ended ({exit:?}) before the slot was ready"))
                }
            }
        }
    }

    fn kill(&self) {
        if let Some(pid) = self.pid {
            send_sigkill(self.pidfd.as_ref(), pid);
        }
    }
}

/// Sends SIGKILL through the pidfd, which cannot hit a recycled pid, or by pid on
/// kernels before 5.3.
fn send_sigkill(pidfd: Option<&OwnedFd>, pid: u32) {
    match pidfd {
        Some(pidfd) => {
            // SAFETY: pidfd_send_signal takes a descriptor, a signal number, a null
            // siginfo pointer (the kernel fills in defaults) and flags.
            unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    pidfd.as_raw_fd(),
                    libc::SIGKILL,
                    std::ptr::null::<libc::siginfo_t>(),
                    0u32,
                )
            };
        }
        // NOTE: without a pidfd a supervisor that has already been reaped could have
        // its pid reused before this kill.
        None => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// The outer init process and the slot directory, released by `destroy`.
struct InitProcess {
    child: tokio::process::Child,
    slot_dir: PathBuf,
}

struct NamespaceSlot {
    slot_id: String,
    mode: IsolationMode,
    /// Host pid of the supervisor (the slot's PID 1 in namespace mode).
    pid: u32,
    pidfd: Option<OwnedFd>,
    /// Blocking socket. Every later read and write passes MSG_DONTWAIT instead, so
    /// `kill` never blocks and the reactor registration works.
    control: Arc<OwnedFd>,
    /// Registration of `control` with the tokio reactor, made by the first `wait`.
    /// The lock lets one caller read at a time.
    reader: tokio::sync::Mutex<Option<AsyncFd<Arc<OwnedFd>>>>,
    exit: OnceLock<SlotExit>,
    /// Taken by `destroy` after the slot's processes are gone.
    cgroup: std::sync::Mutex<Option<SlotCgroup>>,
    /// Taken by `destroy`, or by `Drop` when the slot was never destroyed.
    init: tokio::sync::Mutex<Option<InitProcess>>,
}

impl NamespaceSlot {
    async fn read_exit(&self, reader: &mut Option<AsyncFd<Arc<OwnedFd>>>) -> SlotExit {
        if reader.is_none() {
            // SAFETY: the AsyncFd holds a clone of the Arc, so the descriptor stays
            // open and unchanged for as long as the registration exists.
            match unsafe { AsyncFd::register_with_interest(self.control.clone(), Interest::READABLE) } {
                Ok(registered) => *reader = Some(registered),
                Err(error) => {
                    tracing::warn!(slot_id = %self.slot_id, %error, "failed to watch the slot's control socket");
                    return SlotExit::Code(-1);
                }
            }
        }
        let Some(reader) = reader.as_ref() else {
            return SlotExit::Code(-1);
        };
        loop {
            let mut guard = match reader.readable().await {
                Ok(guard) => guard,
                Err(error) => {
                    tracing::warn!(slot_id = %self.slot_id, %error, "failed to watch the slot's control socket");
                    return SlotExit::Code(-1);
                }
            };
            let result = guard.try_io(|control| {
                receive_message(control.get_ref().as_fd(), MsgFlags::MSG_DONTWAIT).map_err(io::Error::from)
            });
            match result {
                Err(_would_block) => continue,
                // The supervisor reports the runtime's exit before it exits itself.
                // End of stream without that report means the supervisor was
                // killed (by `kill` or the OOM killer), which takes the runtime with
                // it by SIGKILL.
                Ok(Ok(received)) if received.bytes.is_empty() => return SlotExit::Signal(libc::SIGKILL),
                Ok(Ok(received)) => match InitMessage::decode(&received.bytes) {
                    Ok(InitMessage::Exited(exit)) => return exit,
                    Ok(other) => tracing::debug!(slot_id = %self.slot_id, ?other, "ignored slot report"),
                    Err(error) => tracing::warn!(slot_id = %self.slot_id, %error, "invalid slot report"),
                },
                Ok(Err(error)) => {
                    tracing::warn!(slot_id = %self.slot_id, %error, "failed to read the slot's control socket");
                    return SlotExit::Signal(libc::SIGKILL);
                }
            }
        }
    }

    fn cgroup(&self) -> std::sync::MutexGuard<'_, Option<SlotCgroup>> {
        self.cgroup.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl SlotControl for NamespaceSlot {
    fn pid(&self) -> u32 {
        self.pid
    }

    fn wait(&self) -> BoxFuture<'_, SlotExit> {
        Box::pin(async move {
            if let Some(exit) = self.exit.get() {
                return *exit;
            }
            let mut reader = self.reader.lock().await;
            if let Some(exit) = self.exit.get() {
                return *exit;
            }
            let exit = self.read_exit(&mut reader).await;
            *self.exit.get_or_init(|| exit)
        })
    }

    fn kill(&self) {
        match self.mode {
            // Without a PID namespace the supervisor kills the runtime's process group,
            // because as its parent it can keep the group id from being reused.
            IsolationMode::Bare => {
                let _ = send_message(self.control.as_fd(), KILL_REQUEST, &[], MsgFlags::MSG_DONTWAIT);
            }
            // SIGKILL of a PID namespace's init makes the kernel kill every process
            // in the namespace.
            IsolationMode::Namespaces | IsolationMode::UserNamespaces => send_sigkill(self.pidfd.as_ref(), self.pid),
        }
    }

    fn memory_peak_bytes(&self) -> Option<u64> {
        self.cgroup().as_ref()?.memory_peak_bytes()
    }

    fn out_of_memory(&self) -> bool {
        self.cgroup().as_ref().is_some_and(SlotCgroup::out_of_memory)
    }

    fn destroy(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.kill();
            // A second caller waits here until the first has released everything.
            let mut init = self.init.lock().await;
            let Some(process) = init.take() else { return };
            release(&self.slot_id, process, || self.cgroup().take()).await;
            self.wait().await;
        })
    }
}

/// Waits for the (already killed) init process, then removes the cgroups and the
/// slot directory.
async fn release(slot_id: &str, mut process: InitProcess, take_cgroup: impl FnOnce() -> Option<SlotCgroup>) {
    if tokio::time::timeout(Duration::from_secs(10), process.child.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            slot_id,
            "slot init process did not exit 10 s after SIGKILL of its supervisor"
        );
        let _ = process.child.kill().await;
    }
    if let Some(cgroup) = take_cgroup() {
        cgroup.remove().await;
    }
    match tokio::fs::remove_dir_all(&process.slot_dir).await {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => {
            tracing::warn!(slot_id, path = %process.slot_dir.display(), %error, "failed to remove slot directory");
        }
    }
}

impl Drop for NamespaceSlot {
    fn drop(&mut self) {
        let Some(process) = self.init.get_mut().take() else {
            return;
        };
        self.kill();
        let cgroup = self
            .cgroup
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                let slot_id = self.slot_id.clone();
                handle.spawn(async move { release(&slot_id, process, || cgroup).await });
            }
            Err(_) => {
                // Dropping the tokio Child kills the init process; the cgroups and
                // the slot directory stay until a slot with the same id replaces them.
                tracing::warn!(slot_id = %self.slot_id, "slot dropped outside a tokio runtime; its cgroups stay");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names() {
        assert!(is_plain_name("slot-1_a.b"));
        assert!(!is_plain_name(""));
        assert!(!is_plain_name(".."));
        assert!(!is_plain_name("a/b"));
        assert!(!is_plain_name("a b"));
        assert!(!is_plain_name(&"x".repeat(129)));
    }
}
