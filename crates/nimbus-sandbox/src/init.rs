//! The init process of namespace slots.
//!
//! [`crate::NamespaceBackend`] starts `init_program init_args_prefix... --control-fd 3`
//! with the control socket at descriptor 3 and the slot's stdout and stderr pipes.
//! That program must call [`init_main`] with the arguments after the prefix before
//! it starts any thread. Three processes follow:
//!
//! 1. The outer init reads the [`InitSpec`], joins the slot's cgroups, unshares the
//!    namespaces and forks the supervisor. It reports the supervisor's pid (and a
//!    pidfd) and waits for it.
//! 2. The supervisor is PID 1 of the slot's PID namespace. It builds the root
//!    filesystem, brings up loopback, binds the Runtime API listener, forks the
//!    runtime, sends the listener to the backend, reaps zombies and reports the
//!    runtime's exit. Its own exit makes the kernel kill everything left in the
//!    namespace.
//! 3. The runtime child drops to the unprivileged user, loses every capability, sets
//!    `no_new_privs`, installs the seccomp filter and executes the runtime.
//!
//! In bare mode (no namespaces) the same processes run without unsharing anything.

use std::convert::Infallible;
use std::ffi::CString;
use std::io::Read;
use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::MsgFlags;
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Gid, Pid, Uid};
use seccompiler::BpfProgram;

use crate::protocol::{receive_message, send_message, InitIsolation, InitMessage, InitSpec, CONTROL_FD, KILL_REQUEST};
use crate::{rootfs, seccomp, SlotExit};

/// Port of the Runtime API listener inside a slot's network namespace.
pub(crate) const RUNTIME_API_PORT: u16 = 9001;

/// Exit code of the init process when it fails before it can report over the
/// control socket.
const EXIT_INIT_FAILED: i32 = 111;

/// Runs the init process of a namespace slot and never returns.
///
/// `args` are the arguments after the program and the backend's prefix; the backend
/// passes `--control-fd 3`. Call it first thing in `main`: it forks, so the process
/// must still be single-threaded.
pub fn init_main(args: Vec<String>) -> ! {
    match run_outer_init(&args) {
        Ok(never) => match never {},
        Err(message) => {
            eprintln!("nimbus sandbox init: {message}");
            std::process::exit(EXIT_INIT_FAILED);
        }
    }
}

fn run_outer_init(args: &[String]) -> Result<Infallible, String> {
    let expected = ["--control-fd".to_string(), CONTROL_FD.to_string()];
    if args != expected {
        return Err(format!(
            "invalid arguments {args:?}: expected \"--control-fd {CONTROL_FD}\"; this command is started by the Nimbus server, not by hand"
        ));
    }
    let threads = std::fs::read_dir("/proc/self/task").map(|dir| dir.count()).unwrap_or(1);
    if threads != 1 {
        return Err(format!(
            "init must run before the program starts threads, found {threads}"
        ));
    }
    // SAFETY: fcntl on an integer descriptor touches no memory; it fails with EBADF
    // if the backend did not place a descriptor there.
    if unsafe { libc::fcntl(CONTROL_FD, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        return Err(format!(
            "control socket at descriptor {CONTROL_FD} is not open: {}",
            Errno::last()
        ));
    }
    // SAFETY: the backend placed the control socket at CONTROL_FD (checked open
    // above), and nothing else in this process refers to that descriptor.
    let control = unsafe { OwnedFd::from_raw_fd(CONTROL_FD) };

    let received = receive_message(control.as_fd(), MsgFlags::empty())
        .map_err(|errno| format!("failed to receive the slot spec: {errno}"))?;
    if received.bytes.is_empty() {
        return Err("the backend closed the control socket before sending the slot spec".to_string());
    }
    let spec = InitSpec::decode(&received.bytes).map_err(|error| format!("invalid slot spec: {error}"))?;

    match start_supervisor(&spec, control.as_fd()) {
        Ok(supervisor) => {
            drop(control);
            wait_for_supervisor(supervisor)
        }
        Err(message) => {
            report(
                control.as_fd(),
                &InitMessage::Failed {
                    message: message.clone(),
                },
                None,
            );
            Err(message)
        }
    }
}

/// Joins the cgroups, unshares the namespaces and forks the supervisor. Returns in
/// the outer init only, after reporting the supervisor's pid.
fn start_supervisor(spec: &InitSpec, control: BorrowedFd<'_>) -> Result<Pid, String> {
    // Writing 0 to cgroup.procs moves the writing process; every process forked
    // afterwards starts in the same cgroups.
    for procs in &spec.cgroup_procs {
        std::fs::write(procs, "0").map_err(|error| format!("failed to join cgroup {}: {error}", procs.display()))?;
    }

    if let InitIsolation::Namespaces { user_namespace } = spec.isolation {
        let mut flags = CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWNET
            | CloneFlags::CLONE_NEWIPC
            | CloneFlags::CLONE_NEWUTS
            | CloneFlags::CLONE_NEWPID;
        if user_namespace {
            flags |= CloneFlags::CLONE_NEWUSER;
        }
        nix::sched::unshare(flags).map_err(|errno| format!("failed to create namespaces: {errno}"))?;
        if user_namespace {
            // Root of the new user namespace is the backend's own user, the only
            // mapping an unprivileged process may write.
            write_id_maps(&format!("0 {} 1", spec.host_uid), &format!("0 {} 1", spec.host_gid))?;
        }
    }

    // The supervisor waits on this pipe until the Started report is sent, so that
    // report always precedes the supervisor's own messages on the shared socket.
    let (go_read, go_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|errno| format!("failed to create a pipe: {errno}"))?;
    // SAFETY: the init process checked at start that it has a single thread, so the
    // child may use any function, not only async-signal-safe ones.
    match unsafe { nix::unistd::fork() } {
        Err(errno) => Err(format!("failed to fork the slot supervisor: {errno}")),
        Ok(ForkResult::Child) => {
            drop(go_write);
            supervisor_main(spec, control, go_read)
        }
        Ok(ForkResult::Parent { child }) => {
            drop(go_read);
            let pidfd = pidfd_open(child);
            let fd = pidfd.as_ref().map(|fd| fd.as_raw_fd());
            report(control, &InitMessage::Started { pid: child.as_raw() }, fd);
            drop(pidfd);
            nix::unistd::write(&go_write, b"1").map_err(|errno| format!("failed to start the supervisor: {errno}"))?;
            Ok(child)
        }
    }
}

/// Waits for the supervisor and exits with its status, so a signal shows as 128 plus
/// its number as a shell would report it.
fn wait_for_supervisor(supervisor: Pid) -> Result<Infallible, String> {
    // The slot's stdout and stderr must reach end of file when the runtime ends,
    // so the outer init keeps no copy of them.
    redirect_stdio_to_null();
    loop {
        match waitpid(supervisor, None) {
            Ok(WaitStatus::Exited(_, code)) => std::process::exit(code),
            Ok(WaitStatus::Signaled(_, signal, _)) => std::process::exit(128 + signal as i32),
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(errno) => return Err(format!("failed to wait for the slot supervisor: {errno}")),
        }
    }
}

fn supervisor_main(spec: &InitSpec, control: BorrowedFd<'_>, go: OwnedFd) -> ! {
    // The outer init is single-threaded, so the death signal cannot fire early
    // because some other thread of it exited.
    // SAFETY: prctl with integer arguments touches no memory.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) };
    let mut go_byte = [0u8; 1];
    if !matches!(std::fs::File::from(go).read(&mut go_byte), Ok(1)) {
        // The outer init died before reporting this process.
        std::process::exit(EXIT_INIT_FAILED);
    }
    match start_runtime(spec) {
        Ok(started) => {
            let listener_fd = started.listener.as_ref().map(|listener| listener.as_raw_fd());
            report(control, &InitMessage::Ready, listener_fd);
            drop(started.listener);
            redirect_stdio_to_null();
            supervise(spec.isolation, started.runtime, control)
        }
        Err(message) => {
            report(control, &InitMessage::Failed { message }, None);
            std::process::exit(EXIT_INIT_FAILED);
        }
    }
}

struct StartedRuntime {
    runtime: Pid,
    /// The Runtime API listener in namespace mode; in bare mode the backend binds it.
    listener: Option<TcpListener>,
}

fn start_runtime(spec: &InitSpec) -> Result<StartedRuntime, String> {
    // SIGCHLD stays blocked so that `supervise` receives it through a signalfd; the
    // runtime child unblocks it again.
    let mut sigchld = SigSet::empty();
    sigchld.add(Signal::SIGCHLD);
    sigchld
        .thread_block()
        .map_err(|errno| format!("failed to block SIGCHLD: {errno}"))?;

    let listener = match spec.isolation {
        InitIsolation::Namespaces { .. } => {
            rootfs::enter_new_root(spec)?;
            nix::unistd::sethostname(rootfs::HOSTNAME)
                .map_err(|errno| format!("failed to set the hostname: {errno}"))?;
            rootfs::bring_up_loopback()?;
            let listener = TcpListener::bind(("127.0.0.1", RUNTIME_API_PORT))
                .map_err(|error| format!("failed to bind the Runtime API at 127.0.0.1:{RUNTIME_API_PORT}: {error}"))?;
            Some(listener)
        }
        InitIsolation::Bare => {
            // Orphaned descendants of the runtime are reparented here and reaped.
            // SAFETY: prctl with integer arguments touches no memory.
            unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
            None
        }
    };

    let plan = ExecPlan::new(spec)?;
    let filters = seccomp::runtime_filters()?;
    // Keeps the runtime (same host uid in a user namespace) from reading this
    // process's memory or descriptors through /proc.
    // SAFETY: prctl with integer arguments touches no memory.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };

    let (error_read, error_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|errno| format!("failed to create a pipe: {errno}"))?;
    // SAFETY: the supervisor is single-threaded (forked from the single-threaded
    // outer init).
    match unsafe { nix::unistd::fork() } {
        Err(errno) => Err(format!("failed to fork the runtime: {errno}")),
        Ok(ForkResult::Child) => {
            drop(error_read);
            let message = exec_runtime(spec, &plan, &filters);
            let _ = nix::unistd::write(&error_write, message.as_bytes());
            // SAFETY: _exit ends the process at once, skipping the parent's atexit
            // handlers and buffered output that this copy must not run or flush.
            unsafe { libc::_exit(127) }
        }
        Ok(ForkResult::Parent { child }) => {
            drop(error_write);
            // The close-on-exec pipe reaches end of file when execve succeeds; before
            // that the child writes why it failed.
            let mut message = String::new();
            let _ = std::fs::File::from(error_read).read_to_string(&mut message);
            if message.is_empty() {
                Ok(StartedRuntime {
                    runtime: child,
                    listener,
                })
            } else {
                let _ = waitpid(child, None);
                Err(format!("failed to start the runtime {}: {message}", spec.argv[0]))
            }
        }
    }
}

/// Everything the runtime child needs, prepared before the fork.
struct ExecPlan {
    program: CString,
    argv: Vec<CString>,
    env: Vec<CString>,
    working_dir: CString,
    last_capability: u32,
}

impl ExecPlan {
    fn new(spec: &InitSpec) -> Result<Self, String> {
        let cstring = |value: &[u8], what: &str| {
            CString::new(value).map_err(|_| format!("{what} contains a NUL byte: {}", String::from_utf8_lossy(value)))
        };
        let argv = spec
            .argv
            .iter()
            .map(|arg| cstring(arg.as_bytes(), "argument"))
            .collect::<Result<Vec<_>, _>>()?;
        let program = argv.first().cloned().ok_or("argv is empty")?;
        let env = spec
            .env
            .iter()
            .map(|(name, value)| cstring(format!("{name}={value}").as_bytes(), "environment variable"))
            .collect::<Result<Vec<_>, _>>()?;
        let working_dir = cstring(spec.working_dir.as_os_str().as_bytes(), "working directory")?;
        // Highest capability number of the running kernel (40, CAP_CHECKPOINT_RESTORE,
        // since Linux 5.9). Without the file every number up to 63 is tried, and
        // drop_bounding_set skips the unknown ones.
        let last_capability = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(63);
        Ok(ExecPlan {
            program,
            argv,
            env,
            working_dir,
            last_capability,
        })
    }
}

/// Drops every privilege and executes the runtime. Returns only on failure, with the
/// reason.
fn exec_runtime(spec: &InitSpec, plan: &ExecPlan, filters: &[BpfProgram]) -> String {
    reset_signals();
    if let Err(errno) = nix::unistd::setsid() {
        return format!("setsid failed: {errno}");
    }

    if spec.isolation == InitIsolation::Bare {
        // Without a PID namespace nothing else ends the runtime with the supervisor.
        // SAFETY: prctl with integer arguments touches no memory.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) };
    }
    if let Err(message) = drop_identity(spec, plan.last_capability) {
        return message;
    }

    // SAFETY: `working_dir` is a NUL-terminated string that outlives the call.
    if unsafe { libc::chdir(plan.working_dir.as_ptr()) } < 0 {
        return format!("failed to enter {}: {}", spec.working_dir.display(), Errno::last());
    }
    // Descriptors other than stdin, stdout and stderr must not reach the runtime;
    // the error pipe closes on exec as well.
    // SAFETY: close_range only changes descriptor flags of this process.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) };

    // SAFETY: prctl with integer arguments touches no memory.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } < 0 {
        return format!("failed to set no_new_privs: {}", Errno::last());
    }
    for filter in filters {
        if let Err(error) = seccompiler::apply_filter(filter) {
            return format!("failed to install the seccomp filter: {error}");
        }
    }

    match nix::unistd::execve(&plan.program, &plan.argv, &plan.env) {
        Ok(never) => match never {},
        Err(errno) => format!("execve failed: {errno}"),
    }
}

/// Switches to the runtime's user and clears every capability set.
fn drop_identity(spec: &InitSpec, last_capability: u32) -> Result<(), String> {
    let is_root = Uid::effective().is_root();
    match spec.isolation {
        InitIsolation::Namespaces { user_namespace: true } => {
            // A nested user namespace gives the runtime a non-zero uid although the
            // outer one maps a single id. Its /proc/self files must belong to this
            // process to write the maps, which needs it dumpable.
            // SAFETY: prctl with integer arguments touches no memory.
            unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) };
            nix::sched::unshare(CloneFlags::CLONE_NEWUSER)
                .map_err(|errno| format!("failed to create the runtime's user namespace: {errno}"))?;
            write_id_maps(
                &format!("{} 0 1", spec.runtime_uid),
                &format!("{} 0 1", spec.runtime_gid),
            )?;
            drop_bounding_set(last_capability)?;
        }
        _ if is_root => {
            // The bounding set needs CAP_SETPCAP, which setresuid below takes away.
            drop_bounding_set(last_capability)?;
            nix::unistd::setgroups(&[]).map_err(|errno| format!("failed to clear supplementary groups: {errno}"))?;
            let gid = Gid::from_raw(spec.runtime_gid);
            let uid = Uid::from_raw(spec.runtime_uid);
            nix::unistd::setresgid(gid, gid, gid).map_err(|errno| format!("failed to switch to gid {gid}: {errno}"))?;
            nix::unistd::setresuid(uid, uid, uid).map_err(|errno| format!("failed to switch to uid {uid}: {errno}"))?;
        }
        // Bare mode as an ordinary user: the runtime keeps the backend's user.
        _ => {}
    }
    // SAFETY: prctl with integer arguments touches no memory. Kernels before 4.3
    // have no ambient set and return EINVAL, which leaves nothing to clear.
    unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) };
    clear_capabilities()
}

fn drop_bounding_set(last_capability: u32) -> Result<(), String> {
    for capability in 0..=last_capability {
        // SAFETY: prctl with integer arguments touches no memory.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, capability as libc::c_ulong, 0, 0, 0) } < 0 {
            let errno = Errno::last();
            // EINVAL: the kernel has no capability with this number.
            if errno != Errno::EINVAL {
                return Err(format!(
                    "failed to drop capability {capability} from the bounding set: {errno}"
                ));
            }
        }
    }
    Ok(())
}

/// Empties the permitted, effective and inheritable capability sets with capset(2).
fn clear_capabilities() -> Result<(), String> {
    #[repr(C)]
    struct CapHeader {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct CapData {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: version 3 of capset reads one header and two data structs, which both
    // live until the call returns.
    let result = unsafe { libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) };
    if result < 0 {
        return Err(format!("failed to clear capabilities: {}", Errno::last()));
    }
    Ok(())
}

/// Unblocks every signal and restores default dispositions, because both survive
/// execve and the Rust runtime ignores SIGPIPE.
fn reset_signals() {
    let _ = SigSet::empty().thread_set_mask();
    for signal in Signal::iterator() {
        if signal == Signal::SIGKILL || signal == Signal::SIGSTOP {
            continue;
        }
        // SAFETY: restoring the default disposition installs no handler code.
        let _ = unsafe { nix::sys::signal::signal(signal, nix::sys::signal::SigHandler::SigDfl) };
    }
}

/// Writes the calling process's uid and gid maps, denying setgroups first as the
/// kernel requires of an unprivileged writer.
fn write_id_maps(uid_map: &str, gid_map: &str) -> Result<(), String> {
    match std::fs::write("/proc/self/setgroups", "deny") {
        Ok(()) => {}
        // Kernels before 3.19 have no setgroups file.
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(format!("failed to deny setgroups: {error}")),
    }
    std::fs::write("/proc/self/uid_map", uid_map)
        .map_err(|error| format!("failed to write uid map {uid_map:?}: {error}"))?;
    std::fs::write("/proc/self/gid_map", gid_map)
        .map_err(|error| format!("failed to write gid map {gid_map:?}: {error}"))
}

/// Reaps children until the runtime exits, or the backend requests the end or goes
/// away, then exits. In namespace mode that exit kills every process left in the
/// slot's PID namespace.
fn supervise(isolation: InitIsolation, runtime: Pid, control: BorrowedFd<'_>) -> ! {
    let mut sigchld = SigSet::empty();
    sigchld.add(Signal::SIGCHLD);
    let signals = match SignalFd::with_flags(&sigchld, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC) {
        Ok(signals) => signals,
        Err(errno) => {
            report(
                control,
                &InitMessage::Failed {
                    message: format!("failed to create a signalfd: {errno}"),
                },
                None,
            );
            end_slot(isolation, runtime)
        }
    };
    loop {
        let mut fds = [
            libc::pollfd {
                fd: signals.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: control.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a valid array of two pollfd structs for the whole call.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if ready < 0 {
            if Errno::last() == Errno::EINTR {
                continue;
            }
            end_slot(isolation, runtime);
        }
        if fds[0].revents != 0 {
            while let Ok(Some(_)) = signals.read_signal() {}
            if let Some(exit) = reap_children(isolation, runtime) {
                report(control, &InitMessage::Exited(exit), None);
                end_slot(isolation, runtime);
            }
        }
        if fds[1].revents != 0 {
            match receive_message(control, MsgFlags::MSG_DONTWAIT) {
                Err(Errno::EAGAIN) | Err(Errno::EINTR) => {}
                // End of stream (the backend dropped the slot or died), a kill
                // request or a broken socket all end the slot.
                Ok(received) if !received.bytes.is_empty() && received.bytes != KILL_REQUEST => {}
                _ => end_slot(isolation, runtime),
            }
        }
    }
}

/// Reaps every child that has exited and returns the runtime's status if it was
/// among them.
fn reap_children(isolation: InitIsolation, runtime: Pid) -> Option<SlotExit> {
    let mut runtime_exit = None;
    loop {
        // WNOWAIT leaves the child a zombie, so its pid (and in bare mode the
        // runtime's process group id) cannot be reused until the reap below.
        let status = match waitid(
            Id::All,
            WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT,
        ) {
            Ok(WaitStatus::StillAlive) | Err(_) => return runtime_exit,
            Ok(status) => status,
        };
        let Some(pid) = status.pid() else { return runtime_exit };
        if pid == runtime {
            if isolation == InitIsolation::Bare {
                let _ = nix::sys::signal::killpg(runtime, Signal::SIGKILL);
            }
            runtime_exit = match status {
                WaitStatus::Exited(_, code) => Some(SlotExit::Code(code)),
                WaitStatus::Signaled(_, signal, _) => Some(SlotExit::Signal(signal as i32)),
                _ => runtime_exit,
            };
        }
        let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
    }
}

fn end_slot(isolation: InitIsolation, runtime: Pid) -> ! {
    if isolation == InitIsolation::Bare {
        // NOTE: a descendant that started its own session or process group escapes
        // this kill, because only a PID namespace or cgroup could reach it.
        let _ = nix::sys::signal::killpg(runtime, Signal::SIGKILL);
        reap_remaining_children(Duration::from_secs(2));
    }
    std::process::exit(0)
}

/// Reaps children until none is left or `limit` has passed. As a subreaper, the
/// bare-mode supervisor inherits the killed runtime's descendants, and reaping them
/// here means they are gone when the backend sees this process exit.
fn reap_remaining_children(limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => std::thread::sleep(Duration::from_millis(1)),
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

/// Sends a report to the backend. A failure means the backend is gone, which the
/// supervisor notices on its next read of the socket.
fn report(control: BorrowedFd<'_>, message: &InitMessage, fd: Option<RawFd>) {
    let fds: Vec<RawFd> = fd.into_iter().collect();
    let _ = send_message(control, &message.encode(), &fds, MsgFlags::empty());
}

fn redirect_stdio_to_null() {
    let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(Path::new("/dev/null"))
    else {
        return;
    };
    for target in 0..=2 {
        let _ = nix::unistd::dup2(null.as_raw_fd(), target);
    }
}

/// Opens a pidfd for `pid` (Linux 5.3 and later).
fn pidfd_open(pid: Pid) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes two integers and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    Some(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}
