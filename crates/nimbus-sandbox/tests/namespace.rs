//! Tests of the namespace backend with real sandboxes.
//!
//! As root they exercise `IsolationMode::Namespaces` with cgroup limits. As an
//! ordinary user the backend picks `IsolationMode::UserNamespaces`, and the same
//! tests run that path. The memory and process limit tests then fail, because
//! cgroups are not writable without root.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nimbus_sandbox::{
    IsolationMode, NamespaceBackend, NamespaceOptions, SandboxBackend, SlotExit, SlotLayout, SlotProcess, SlotSpec,
};

const CGROUP_PARENT: &str = "nimbus-test";
const PYTHON: &str = "/usr/bin/python3";
const TIMEOUT: Duration = Duration::from_secs(30);

/// Directories of one test: code and runtime files readable by the sandbox user,
/// and the backend's work directory.
struct Fixture {
    _temp: tempfile::TempDir,
    root: PathBuf,
    code_dir: PathBuf,
    runtime_dir: PathBuf,
    work_dir: PathBuf,
}

fn fixture() -> Fixture {
    let temp = tempfile::tempdir().unwrap();
    let root = temp.path().to_path_buf();
    let code_dir = root.join("code");
    let runtime_dir = root.join("runtime");
    let work_dir = root.join("work");
    std::fs::create_dir_all(&code_dir).unwrap();
    std::fs::create_dir_all(&runtime_dir).unwrap();
    std::fs::write(code_dir.join("handler.txt"), "code of this slot\n").unwrap();
    std::fs::write(runtime_dir.join("bootstrap"), "runtime file\n").unwrap();
    for dir in [&root, &code_dir, &runtime_dir] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    Fixture {
        _temp: temp,
        root,
        code_dir,
        runtime_dir,
        work_dir,
    }
}

fn backend(fixture: &Fixture) -> NamespaceBackend {
    let options = NamespaceOptions {
        cgroup_parent: CGROUP_PARENT.to_string(),
        ..NamespaceOptions::default()
    };
    let init = PathBuf::from(env!("CARGO_BIN_EXE_test-init"));
    let backend = NamespaceBackend::new(init, Vec::new(), fixture.work_dir.clone(), options).unwrap();
    let expected = if is_root() {
        IsolationMode::Namespaces
    } else {
        IsolationMode::UserNamespaces
    };
    assert_eq!(backend.isolation(), expected, "this host should allow namespaces");
    backend
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn unique_id(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

fn spec(fixture: &Fixture, slot_id: &str, argv: &[&str]) -> SlotSpec {
    SlotSpec {
        slot_id: unique_id(slot_id),
        code_dir: fixture.code_dir.clone(),
        runtime_dir: fixture.runtime_dir.clone(),
        memory_mb: 256,
        tmp_mb: 16,
        pids_max: 64,
        argv: argv.iter().map(|arg| arg.to_string()).collect(),
        env: vec![
            ("PATH".to_string(), "/usr/bin:/bin".to_string()),
            ("LANG".to_string(), "C.UTF-8".to_string()),
        ],
    }
}

fn shell(fixture: &Fixture, slot_id: &str, script: &str) -> SlotSpec {
    spec(fixture, slot_id, &["/bin/sh", "-c", script])
}

fn python(fixture: &Fixture, slot_id: &str, program: &str) -> SlotSpec {
    spec(fixture, slot_id, &[PYTHON, "-S", "-c", program])
}

/// Output and exit of a finished slot.
struct Finished {
    exit: SlotExit,
    stdout: String,
    stderr: String,
}

fn read_in_background(mut file: std::fs::File) -> tokio::task::JoinHandle<String> {
    tokio::task::spawn_blocking(move || {
        let mut text = String::new();
        let _ = file.read_to_string(&mut text);
        text
    })
}

/// Waits for the runtime to exit, collects its output and destroys the slot.
async fn finish(slot: SlotProcess) -> Finished {
    let stdout = read_in_background(slot.stdout);
    let stderr = read_in_background(slot.stderr);
    let exit = tokio::time::timeout(TIMEOUT, slot.control.wait())
        .await
        .expect("slot did not exit in time");
    slot.control.destroy().await;
    let stdout = tokio::time::timeout(TIMEOUT, stdout)
        .await
        .expect("stdout stayed open")
        .unwrap();
    let stderr = tokio::time::timeout(TIMEOUT, stderr)
        .await
        .expect("stderr stayed open")
        .unwrap();
    Finished { exit, stdout, stderr }
}

async fn run(backend: &NamespaceBackend, spec: &SlotSpec) -> Finished {
    let slot = backend.spawn(spec).unwrap();
    finish(slot).await
}

/// Paths where a slot's cgroup would be, for cgroup v1 and v2.
fn cgroup_dirs(slot_id: &str) -> Vec<PathBuf> {
    ["memory", "pids", "cpu", ""]
        .iter()
        .map(|controller| {
            Path::new("/sys/fs/cgroup")
                .join(controller)
                .join(CGROUP_PARENT)
                .join(slot_id)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protections_all_on_as_root() {
    let fixture = fixture();
    let protections = backend(&fixture).protections();
    if is_root() {
        assert_eq!(protections.disabled(), Vec::<&str>::new());
    } else {
        assert!(protections.pid_mount_ipc_uts_namespaces);
        assert!(protections.network_namespace);
        assert!(protections.read_only_root);
        assert!(protections.unprivileged_user);
        assert!(protections.no_new_privs);
        assert!(protections.seccomp);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layout_uses_lambda_paths() {
    let fixture = fixture();
    let backend = backend(&fixture);
    let layout = backend.layout(&shell(&fixture, "layout", "true"));
    let expected = SlotLayout {
        task_root: PathBuf::from("/var/task"),
        runtime_root: PathBuf::from("/var/runtime"),
        tmp_dir: PathBuf::from("/tmp"),
    };
    assert_eq!(layout, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pid_namespace_hides_host() {
    let fixture = fixture();
    let backend = backend(&fixture);
    let script = "echo $$; for entry in /proc/[0-9]*; do echo \"${entry#/proc/}\"; done";
    let finished = run(&backend, &shell(&fixture, "pid-namespace", script)).await;
    assert_eq!(finished.exit, SlotExit::Code(0), "stderr: {}", finished.stderr);

    let mut lines = finished.stdout.lines();
    let shell_pid: u32 = lines.next().unwrap().parse().unwrap();
    assert!(shell_pid <= 3, "shell pid inside the slot is {shell_pid}");
    let visible: Vec<u32> = lines.map(|line| line.parse().unwrap()).collect();
    assert!(visible.contains(&1), "PID 1 missing from {visible:?}");
    assert!(visible.len() <= 3, "slot sees processes {visible:?}");
    assert!(
        !visible.contains(&std::process::id()),
        "slot sees the test process in {visible:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostname_is_isolated() {
    let fixture = fixture();
    let backend = backend(&fixture);
    let finished = run(&backend, &shell(&fixture, "hostname", "cat /proc/sys/kernel/hostname")).await;
    assert_eq!(finished.exit, SlotExit::Code(0), "stderr: {}", finished.stderr);
    let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
    assert_eq!(finished.stdout.trim(), "localhost");
    assert_ne!(finished.stdout.trim(), host);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_root_read_only_with_code() {
    let fixture = fixture();
    let backend = backend(&fixture);
    let script = "cat /var/task/handler.txt; cat /var/runtime/bootstrap; pwd; \
                  echo \"api=$AWS_LAMBDA_RUNTIME_API\"; \
                  if touch /var/task/new 2>/dev/null; then echo task-writable; fi; \
                  if touch /var/runtime/new 2>/dev/null; then echo runtime-writable; fi; \
                  if touch /usr/new /etc/new /new 2>/dev/null; then echo root-writable; fi";
    let finished = run(&backend, &shell(&fixture, "read-only", script)).await;
    assert_eq!(finished.exit, SlotExit::Code(0), "stderr: {}", finished.stderr);
    assert_eq!(
        finished.stdout, "code of this slot\nruntime file\n/var/task\napi=127.0.0.1:9001\n",
        "stderr: {}",
        finished.stderr
    );
    assert!(!fixture.code_dir.join("new").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_paths_hidden() {
    let other = fixture();
    let fixture = fixture();
    let backend = backend(&fixture);
    let hidden = [
        "/root".to_string(),
        "/home".to_string(),
        "/work".to_string(),
        other.code_dir.display().to_string(),
        fixture.work_dir.display().to_string(),
        fixture.root.display().to_string(),
        env!("CARGO_MANIFEST_DIR").to_string(),
    ];
    let script = format!(
        "for path in {}; do if [ -e \"$path\" ]; then echo \"visible $path\"; fi; done; ls /tmp",
        hidden.join(" ")
    );
    let finished = run(&backend, &shell(&fixture, "host-paths", &script)).await;
    assert_eq!(finished.exit, SlotExit::Code(0), "stderr: {}", finished.stderr);
    assert_eq!(finished.stdout, "", "host paths or files are visible");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tmp_writable_until_full() {
    let fixture = fixture();
    let backend = backend(&fixture);
    let mut spec = shell(
        &fixture,
        "tmp-size",
        "echo small > /tmp/small && cat /tmp/small; \
         dd if=/dev/zero of=/tmp/big bs=1M count=16 2>&1; echo \"dd=$?\"; \
         wc -c < /tmp/big",
    );
    spec.tmp_mb = 8;
    let finished = run(&backend, &spec).await;
    assert_eq!(finished.exit, SlotExit::Code(0), "stderr: {}", finished.stderr);
    assert!(finished.stdout.starts_with("small\n"), "stdout: {}", finished.stdout);
    assert!(
        finished.stdout.contains("No space left on device"),
        "stdout: {}",
        finished.stdout
    );
    assert!(finished.stdout.contains("dd=1"), "stdout: {}", finished.stdout);
    let written: u64 = finished.stdout.lines().last().unwrap().trim().parse().unwrap();
    assert!(written <= 8 * 1024 * 1024, "wrote {written} bytes into an 8 MB /tmp");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_limit_kills_allocation() {
    let fixture = fixture();
    let backend = backend(&fixture);
    assert!(
        backend.protections().memory_limit,
        "memory limits need writable cgroups (run as root)"
    );
    // Multiplying a bytes object writes every page, unlike a zeroed bytearray.
    let mut spec = python(
        &fixture,
        "memory",
        "data = b'x' * (300 << 20)\nprint('allocated', len(data))",
    );
    spec.memory_mb = 128;
    let slot = backend.spawn(&spec).unwrap();
    let stdout = read_in_background(slot.stdout);
    let exit = tokio::time::timeout(TIMEOUT, slot.control.wait()).await.unwrap();
    let out_of_memory = slot.control.out_of_memory();
    let peak = slot.control.memory_peak_bytes();
    slot.control.destroy().await;

    assert_eq!(exit, SlotExit::Signal(9));
    assert!(out_of_memory, "the slot did not report an OOM kill");
    let peak = peak.expect("no peak memory reading");
    assert!(peak <= 128 * 1024 * 1024, "peak {peak} bytes exceeds the 128 MB limit");
    assert!(
        peak > 64 * 1024 * 1024,
        "peak {peak} bytes is too low for a 300 MB allocation"
    );
    assert_eq!(stdout.await.unwrap(), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pids_limit_stops_fork_bomb() {
    let fixture = fixture();
    let backend = backend(&fixture);
    assert!(
        backend.protections().pids_limit,
        "process limits need writable cgroups (run as root)"
    );
    let program = "\
import os, time
count = 0
error = None
for _ in range(10000):
    try:
        pid = os.fork()
    except OSError as exc:
        error = exc.errno
        break
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    count += 1
print(count, error, flush=True)
time.sleep(60)
";
    let mut spec = python(&fixture, "fork-bomb", program);
    spec.pids_max = 32;
    let slot = backend.spawn(&spec).unwrap();
    let stdout = slot.stdout;
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        line
    });
    let line = tokio::time::timeout(TIMEOUT, line)
        .await
        .expect("fork loop did not finish")
        .unwrap();
    let mut fields = line.split_whitespace();
    let forks: u32 = fields.next().unwrap().parse().unwrap();
    let errno = fields.next().unwrap();
    assert!(forks < 32, "forked {forks} processes with pids_max 32");
    assert_eq!(
        errno,
        libc::EAGAIN.to_string(),
        "fork failed with errno {errno}, expected EAGAIN"
    );

    slot.control.kill();
    let exit = tokio::time::timeout(TIMEOUT, slot.control.wait())
        .await
        .expect("slot survived kill");
    assert_eq!(exit, SlotExit::Signal(9));
    tokio::time::timeout(TIMEOUT, slot.control.destroy())
        .await
        .expect("destroy did not finish");
    for dir in cgroup_dirs(&spec.slot_id) {
        assert!(!dir.exists(), "{} still exists", dir.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_has_no_privileges() {
    let fixture = fixture();
    let backend = backend(&fixture);
    let script = "id -u; grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status";
    let finished = run(&backend, &shell(&fixture, "privileges", script)).await;
    assert_eq!(finished.exit, SlotExit::Code(0), "stderr: {}", finished.stderr);

    let mut lines = finished.stdout.lines();
    let uid: u32 = lines.next().unwrap().parse().unwrap();
    assert_ne!(uid, 0);
    let status: Vec<(&str, &str)> = lines
        .map(|line| line.split_once(':').map(|(k, v)| (k, v.trim())).unwrap())
        .collect();
    let value = |key: &str| {
        status
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .unwrap_or("missing")
    };
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(value(set), "0000000000000000", "{set} is not empty");
    }
    assert_eq!(value("NoNewPrivs"), "1");
    assert_eq!(value("Seccomp"), "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seccomp_rejects_mount_and_unshare() {
    let fixture = fixture();
    let backend = backend(&fixture);
    let program = "\
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
def result(value):
    return f'{value} {ctypes.get_errno()}'
print('mount', result(libc.mount(b'none', b'/tmp', b'tmpfs', 0, None)))
print('unshare', result(libc.unshare(0x04000000)))
print('umount', result(libc.umount2(b'/proc', 2)))
print('getpid', libc.getpid())
";
    let finished = run(&backend, &python(&fixture, "seccomp", program)).await;
    assert_eq!(finished.exit, SlotExit::Code(0), "stderr: {}", finished.stderr);
    let eperm = libc::EPERM;
    let expected = format!("mount -1 {eperm}\nunshare -1 {eperm}\numount -1 {eperm}\ngetpid ");
    assert!(finished.stdout.starts_with(&expected), "stdout: {}", finished.stdout);

    let finished = run(&backend, &shell(&fixture, "mount-command", "mount -t tmpfs none /tmp")).await;
    assert_ne!(finished.exit, SlotExit::Code(0), "mount succeeded: {}", finished.stdout);
}

/// Returns a Python program that sends `message` to the Runtime API, prints the
/// reply, then connects to a host port and prints the outcome.
fn network_probe(message: &str, host_port: u16) -> String {
    format!(
        "\
import socket
api = socket.create_connection(('127.0.0.1', 9001), timeout=5)
api.sendall(b'{message}')
print('reply', api.recv(100).decode(), flush=True)
try:
    socket.create_connection(('127.0.0.1', {host_port}), timeout=2)
    print('host port reachable')
except OSError as exc:
    print('host port unreachable', type(exc).__name__)
"
    )
}

/// Accepts one connection on a slot's Runtime API, reads a message and replies.
async fn answer_once(listener: &tokio::net::TcpListener, reply: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut stream, _) = tokio::time::timeout(TIMEOUT, listener.accept())
        .await
        .expect("no connection")
        .unwrap();
    let mut buffer = [0u8; 100];
    let length = stream.read(&mut buffer).await.unwrap();
    stream.write_all(reply).await.unwrap();
    String::from_utf8_lossy(&buffer[..length]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_reaches_own_api_only() {
    let fixture = fixture();
    let backend = backend(&fixture);
    let host_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    host_listener.set_nonblocking(true).unwrap();
    let host_port = host_listener.local_addr().unwrap().port();

    let first = backend
        .spawn(&python(
            &fixture,
            "network-first",
            &network_probe("from-first", host_port),
        ))
        .unwrap();
    assert_eq!(first.runtime_api_address, "127.0.0.1:9001");
    first.runtime_api.set_nonblocking(true).unwrap();
    let first_api = tokio::net::TcpListener::from_std(first.runtime_api).unwrap();
    let second = backend
        .spawn(&python(
            &fixture,
            "network-second",
            &network_probe("from-second", host_port),
        ))
        .unwrap();
    second.runtime_api.set_nonblocking(true).unwrap();
    let second_api = tokio::net::TcpListener::from_std(second.runtime_api).unwrap();

    // Each runtime connects to 127.0.0.1:9001 and lands on its own slot's listener.
    assert_eq!(answer_once(&first_api, b"to-first").await, "from-first");
    assert_eq!(answer_once(&second_api, b"to-second").await, "from-second");

    let first = finish(SlotProcess {
        runtime_api: first_api.into_std().unwrap(),
        ..first
    })
    .await;
    let second = finish(SlotProcess {
        runtime_api: second_api.into_std().unwrap(),
        ..second
    })
    .await;
    for (finished, reply) in [(&first, "to-first"), (&second, "to-second")] {
        assert_eq!(finished.exit, SlotExit::Code(0), "stderr: {}", finished.stderr);
        assert_eq!(
            finished.stdout,
            format!("reply {reply}\nhost port unreachable ConnectionRefusedError\n"),
            "stderr: {}",
            finished.stderr
        );
    }
    let accepted = host_listener.accept();
    assert!(
        matches!(&accepted, Err(error) if error.kind() == std::io::ErrorKind::WouldBlock),
        "the host listener accepted a connection: {accepted:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_code_and_signal_reported() {
    let fixture = fixture();
    let backend = backend(&fixture);
    let finished = run(&backend, &shell(&fixture, "exit-code", "exit 3")).await;
    assert_eq!(finished.exit, SlotExit::Code(3));
    let finished = run(&backend, &shell(&fixture, "exit-signal", "kill -9 $$")).await;
    assert_eq!(finished.exit, SlotExit::Signal(9));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_pipes_deliver() {
    let fixture = fixture();
    let backend = backend(&fixture);
    let finished = run(
        &backend,
        &shell(&fixture, "output", "echo out; echo err >&2; echo more"),
    )
    .await;
    assert_eq!(finished.exit, SlotExit::Code(0));
    assert_eq!(finished.stdout, "out\nmore\n");
    assert_eq!(finished.stderr, "err\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroy_removes_cgroups_and_dir() {
    let fixture = fixture();
    let backend = backend(&fixture);
    let spec = shell(&fixture, "destroy", "sleep 60 & sleep 60");
    let slot = backend.spawn(&spec).unwrap();
    let slot_dir = fixture.work_dir.join(&spec.slot_id);
    assert!(slot_dir.exists());
    let existing: Vec<PathBuf> = cgroup_dirs(&spec.slot_id)
        .into_iter()
        .filter(|dir| dir.exists())
        .collect();
    if is_root() {
        assert!(!existing.is_empty(), "no cgroup found for the slot");
        let supervisor = slot.control.pid().to_string();
        let procs = std::fs::read_to_string(existing[0].join("cgroup.procs")).unwrap();
        assert!(
            procs.lines().any(|pid| pid == supervisor),
            "supervisor {supervisor} not in cgroup: {procs}"
        );
    }

    tokio::time::timeout(TIMEOUT, slot.control.destroy())
        .await
        .expect("destroy did not finish");
    assert_eq!(slot.control.wait().await, SlotExit::Signal(9));
    // A second destroy finds nothing left to do.
    slot.control.destroy().await;
    assert!(!slot_dir.exists(), "{} still exists", slot_dir.display());
    for dir in existing {
        assert!(!dir.exists(), "{} still exists", dir.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_exec_is_spawn_error() {
    let fixture = fixture();
    let backend = backend(&fixture);
    let spec = spec(&fixture, "missing-program", &["/var/task/missing"]);
    let error = backend
        .spawn(&spec)
        .err()
        .expect("spawn of a missing program succeeded")
        .to_string();
    assert!(error.contains("/var/task/missing"), "error: {error}");
    assert!(error.contains("ENOENT"), "error: {error}");
    assert!(!fixture.work_dir.join(&spec.slot_id).exists());
    for dir in cgroup_dirs(&spec.slot_id) {
        assert!(!dir.exists(), "{} still exists", dir.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_waiters_see_same_exit() {
    let fixture = fixture();
    let backend = backend(&fixture);
    let slot = backend.spawn(&shell(&fixture, "waiters", "sleep 0.2; exit 7")).unwrap();
    let (first, second) = tokio::join!(slot.control.wait(), slot.control.wait());
    assert_eq!(first, SlotExit::Code(7));
    assert_eq!(second, SlotExit::Code(7));
    slot.control.destroy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_mode_keeps_seccomp_and_kills_group() {
    let fixture = fixture();
    let options = NamespaceOptions {
        cgroup_parent: CGROUP_PARENT.to_string(),
        isolation: Some(IsolationMode::Bare),
        ..NamespaceOptions::default()
    };
    let init = PathBuf::from(env!("CARGO_BIN_EXE_test-init"));
    let backend = NamespaceBackend::new(init, Vec::new(), fixture.work_dir.clone(), options).unwrap();
    let protections = backend.protections();
    assert!(!protections.pid_mount_ipc_uts_namespaces);
    assert!(!protections.network_namespace);
    assert!(protections.no_new_privs);
    assert!(protections.seccomp);
    assert_eq!(protections.unprivileged_user, is_root());

    let script = "sleep 60 & echo \"background $!\"; echo \"api $AWS_LAMBDA_RUNTIME_API\"; pwd; \
                  echo x > \"$TMPDIR/file\" && echo tmp-writable; \
                  grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status; id -u; sleep 60";
    let spec = shell(&fixture, "bare", script);
    let layout = backend.layout(&spec);
    assert_eq!(layout.task_root, fixture.code_dir);
    let slot = backend.spawn(&spec).unwrap();
    assert_ne!(slot.runtime_api_address, "127.0.0.1:9001");
    assert_eq!(
        slot.runtime_api.local_addr().unwrap().to_string(),
        slot.runtime_api_address
    );

    let stdout = slot.stdout;
    let lines = tokio::task::spawn_blocking(move || {
        let mut reader = BufReader::new(stdout);
        let mut lines = Vec::new();
        for _ in 0..7 {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            lines.push(line.trim().to_string());
        }
        lines
    });
    let lines = tokio::time::timeout(TIMEOUT, lines)
        .await
        .expect("bare slot printed too little")
        .unwrap();
    let background: i32 = lines[0].strip_prefix("background ").unwrap().parse().unwrap();
    assert_eq!(lines[1], format!("api {}", slot.runtime_api_address));
    assert_eq!(lines[2], fixture.code_dir.display().to_string());
    assert_eq!(lines[3], "tmp-writable");
    assert_eq!(lines[4].split_whitespace().collect::<Vec<_>>(), ["NoNewPrivs:", "1"]);
    assert_eq!(lines[5].split_whitespace().collect::<Vec<_>>(), ["Seccomp:", "2"]);
    let uid: u32 = lines[6].parse().unwrap();
    if is_root() {
        assert_eq!(uid, 65534);
    }

    slot.control.kill();
    let exit = tokio::time::timeout(TIMEOUT, slot.control.wait())
        .await
        .expect("bare slot survived kill");
    assert_eq!(exit, SlotExit::Signal(9));
    tokio::time::timeout(TIMEOUT, slot.control.destroy())
        .await
        .expect("destroy did not finish");
    let background_alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(background), None).is_ok();
    assert!(!background_alive, "background process {background} outlived the slot");
    assert!(!fixture.work_dir.join(&spec.slot_id).exists());
}

/// Prints how long a slot running `/bin/true` takes from spawn to exit. A
/// measurement for the log, not a check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_to_exit_measurement() {
    let fixture = fixture();
    let backend = backend(&fixture);
    let mut samples = Vec::new();
    for round in 0..5 {
        let spec = spec(&fixture, &format!("true-{round}"), &["/bin/true"]);
        let started = Instant::now();
        let slot = backend.spawn(&spec).unwrap();
        let spawned = started.elapsed();
        let exit = slot.control.wait().await;
        let exited = started.elapsed();
        slot.control.destroy().await;
        let destroyed = started.elapsed();
        assert_eq!(exit, SlotExit::Code(0));
        samples.push((spawned, exited, destroyed));
    }
    for (spawned, exited, destroyed) in samples {
        println!("slot /bin/true: spawn {spawned:?}, exit {exited:?}, destroyed {destroyed:?} (from spawn call)");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peak_memory_is_read_afresh_each_time() {
    let fixture = fixture();
    let backend = backend(&fixture);
    // The pause leaves ample time to read the peak before the allocation.
    let spec = python(
        &fixture,
        "peak",
        "import time\nprint('small', flush=True)\ntime.sleep(1)\ndata = b'x' * (64 << 20)\nprint('big', flush=True)\ntime.sleep(30)",
    );
    let slot = backend.spawn(&spec).unwrap();
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    let stdout = slot.stdout;
    tokio::task::spawn_blocking(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    let first = tokio::time::timeout(TIMEOUT, receiver.recv()).await.unwrap();
    let small = slot.control.memory_peak_bytes().expect("no peak memory reading");
    let second = tokio::time::timeout(TIMEOUT, receiver.recv()).await.unwrap();
    let big = slot.control.memory_peak_bytes().expect("no peak memory reading");
    slot.control.destroy().await;
    assert_eq!(first.as_deref(), Some("small"));
    assert_eq!(second.as_deref(), Some("big"));
    assert!(
        big >= small + (60 << 20),
        "the peak went from {small} to {big} bytes across a 64 MB allocation"
    );
}
