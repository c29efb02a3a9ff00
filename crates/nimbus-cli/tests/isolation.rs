//! End-to-end tests of slot isolation. Each test starts a real `nimbus server`, creates
//! Python functions whose handlers probe the sandbox from inside and return what they
//! saw, invokes them over HTTP and checks each protection as a user of the function
//! would observe it.
//!
//! The tests expect to run as root, so that the server picks the namespace sandbox
//! with cgroup limits, and need `/usr/bin/python3.11` for the `python3.11` runtime.
//! The tests of servers without root also need `setpriv` from util-linux, and the
//! bare-mode test runs `python3` to create a user namespace for the server.

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use common::{nimbus_binary, zip_of, Api, Server, API_KEY};
use serde_json::{json, Value};

const RUNTIME: &str = "python3.11";

/// Uid and gid of `nobody`, the server's user in the unprivileged test.
const NOBODY: u32 = 65534;

/// Maximum number of processes and threads of a slot's runtime, as set by
/// `nimbus_worker::DEFAULT_PIDS_MAX`.
const PIDS_MAX: u64 = 1024;

/// Python shared by every probe handler.
const PROBE_HELPERS_PY: &str = r#"
import errno
import os


def error_name(error):
    """Return the errno name of an OSError, such as ENOENT."""
    return errno.errorcode.get(error.errno, str(error.errno))
"#;

/// Reads the files named in the event, the task root's copies of `task_files`, and the
/// same names through `/proc/PID/root` and `/proc/PID/cwd` of every visible process.
const READ_FILES_PY: &str = r#"
def read_result(path):
    try:
        with open(path, "rb") as file:
            return f"read {len(file.read())} bytes"
    except OSError as error:
        return error_name(error)


def handler(event, context):
    task_root = os.environ["LAMBDA_TASK_ROOT"]
    paths = list(event["paths"])
    pids = [entry for entry in os.listdir("/proc") if entry.isdigit()]
    for name in event["task_files"]:
        paths.append(os.path.join(task_root, name))
        for pid in pids:
            paths.append(f"/proc/{pid}/root{task_root}/{name}")
            paths.append(f"/proc/{pid}/cwd/{name}")
    return {
        "task_root": sorted(os.listdir(task_root)),
        "own_code": read_result(os.path.join(task_root, "app.py")),
        "reads": {path: read_result(path) for path in paths},
    }
"#;

/// Returns the `SECRET=` entries of the environment of every visible process and of
/// the pids in the event, or the error that reading it raised.
const READ_ENVIRONMENTS_PY: &str = r#"
def handler(event, context):
    secrets = {}
    visible = [entry for entry in os.listdir("/proc") if entry.isdigit()]
    for pid in sorted(set(visible) | {str(pid) for pid in event["pids"]}):
        try:
            with open(f"/proc/{pid}/environ", "rb") as file:
                variables = file.read().split(b"\0")
        except OSError as error:
            secrets[pid] = error_name(error)
            continue
        secrets[pid] = [v.decode(errors="replace") for v in variables if v.startswith(b"SECRET=")]
    return {"pid": os.getpid(), "secrets": secrets}
"#;

/// Probes the network: the Runtime API at 127.0.0.1:9001, TCP connections to the
/// loopback ports in the event, the interfaces and the listening TCP ports.
const NETWORK_PY: &str = r#"
import http.client
import socket

TCP_LISTEN = "0A"


def connect(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        try:
            sock.connect(("127.0.0.1", port))
        except OSError as error:
            return error_name(error) if error.errno else type(error).__name__
    return "connected"


def request_next_event():
    connection = http.client.HTTPConnection("127.0.0.1", 9001, timeout=2)
    try:
        connection.request("GET", "/2018-06-01/runtime/invocation/next")
        response = connection.getresponse()
        return {"status": response.status, "body": response.read().decode(errors="replace")}
    except OSError as error:
        return {"status": None, "body": f"{type(error).__name__}: {error}"}
    finally:
        connection.close()


def listening_ports():
    ports = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as file:
                rows = file.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == TCP_LISTEN:
                ports.append(int(fields[1].rsplit(":", 1)[1], 16))
    return sorted(ports)


def handler(event, context):
    return {
        "runtime_api": os.environ["AWS_LAMBDA_RUNTIME_API"],
        "next_event": request_next_event(),
        "ports": {str(port): connect(port) for port in event["ports"]},
        "interfaces": sorted(name for _, name in socket.if_nameindex()),
        "listening": listening_ports(),
    }
"#;

/// Allocates and touches `allocate_mb` MiB. `boot_id` is fixed for the lifetime of the
/// runtime process, so a new value means a new slot.
const ALLOCATE_PY: &str = r#"
import uuid

BOOT_ID = uuid.uuid4().hex
MIB = 1024 * 1024


def handler(event, context):
    chunks = [b"\x01" * MIB for _ in range(event["allocate_mb"])]
    return {"boot_id": BOOT_ID, "allocated_mb": len(chunks)}
"#;

/// Forks children that wait, up to `max_forks` or the first error, then kills and reaps
/// them all.
const FORK_PY: &str = r#"
import signal


def handler(event, context):
    children = []
    error = None
    try:
        for _ in range(event["max_forks"]):
            try:
                pid = os.fork()
            except OSError as fork_error:
                error = error_name(fork_error)
                break
            if pid == 0:
                signal.pause()
                os._exit(0)
            children.append(pid)
    finally:
        for pid in children:
            os.kill(pid, signal.SIGKILL)
        for pid in children:
            os.waitpid(pid, 0)
    return {"forked": len(children), "error": error}
"#;

/// Writes `mb` MiB to each file in `files` (under /tmp), one after the other, and
/// removes each file after writing it.
const FILL_TMP_PY: &str = r#"
MIB = 1024 * 1024


def fill(path, mb):
    chunk = b"\x01" * MIB
    written = 0
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while written < mb * MIB:
            written += os.write(descriptor, chunk[: mb * MIB - written])
        return {"written_mb": written / MIB, "error": None}
    except OSError as error:
        return {"written_mb": written / MIB, "error": error_name(error)}
    finally:
        os.close(descriptor)
        os.remove(path)


def handler(event, context):
    stats = os.statvfs("/tmp")
    return {
        "tmp_size_mb": stats.f_blocks * stats.f_frsize // MIB,
        "fills": [fill(path, mb) for path, mb in event["files"]],
    }
"#;

/// Reports the runtime's identity, privileges, namespaces and visible processes, and
/// tries to create or open for writing a file in each part of the filesystem and to
/// mount a tmpfs on a new empty directory (unmounted again if that works).
const IDENTITY_PY: &str = r#"
import ctypes
import socket
import tempfile

NAMESPACES = ["ipc", "mnt", "net", "pid", "user", "uts"]
MNT_DETACH = 2


def status_fields():
    fields = {}
    with open("/proc/self/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            fields[name] = value.strip()
    return fields


def try_create(path):
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as error:
        return error_name(error)
    os.close(descriptor)
    os.remove(path)
    return "ok"


def try_open_for_writing(path):
    try:
        os.close(os.open(path, os.O_WRONLY))
    except OSError as error:
        return error_name(error)
    return "ok"


def try_mount():
    libc = ctypes.CDLL(None, use_errno=True)
    target = tempfile.mkdtemp().encode()
    try:
        if libc.mount(b"tmpfs", target, b"tmpfs", 0, None) == 0:
            libc.umount2(target, MNT_DETACH)
            return "ok"
        return errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))
    finally:
        os.rmdir(target)


def handler(event, context):
    task_root = os.environ["LAMBDA_TASK_ROOT"]
    runtime_root = os.environ["LAMBDA_RUNTIME_DIR"]
    status = status_fields()
    writes = {
        "task_root": try_create(os.path.join(task_root, "new-file")),
        "task_code": try_open_for_writing(os.path.join(task_root, "app.py")),
        "runtime_root": try_create(os.path.join(runtime_root, "new-file")),
        "root": try_create("/new-file"),
        "etc": try_create("/etc/new-file"),
        "usr": try_create("/usr/new-file"),
        "dev": try_create("/dev/new-file"),
        "tmp": try_create(os.path.join(tempfile.gettempdir(), "new-file")),
    }
    with open("/proc/self/cgroup") as file:
        cgroups = file.read()
    return {
        "uid": os.getuid(),
        "euid": os.geteuid(),
        "cap_eff": status["CapEff"],
        "cap_prm": status["CapPrm"],
        "no_new_privs": status["NoNewPrivs"],
        "seccomp": status["Seccomp"],
        "writes": writes,
        "mount": try_mount(),
        "hostname": socket.gethostname(),
        "namespaces": {name: os.readlink(f"/proc/self/ns/{name}") for name in NAMESPACES},
        "cgroups": cgroups,
        "pid": os.getpid(),
        "visible_pids": sorted(int(entry) for entry in os.listdir("/proc") if entry.isdigit()),
    }
"#;

/// Returns the zip of a function whose `app.py` is the probe helpers plus `handler_py`.
fn probe_zip(handler_py: &str) -> Vec<u8> {
    zip_of(&[("app.py", probe_source(handler_py).as_bytes())])
}

fn probe_source(handler_py: &str) -> String {
    format!("{PROBE_HELPERS_PY}\n{handler_py}")
}

/// Returns a string that no other test run uses, for secrets and markers.
fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock is after 1970")
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// Starts a server as [`Server::start`] does and checks that it uses the namespace
/// sandbox as root and offers [`RUNTIME`].
fn start_server() -> Server {
    let server = Server::start();
    let isolation = log_lines_with(&server, "namespace sandbox ready");
    assert!(
        isolation.iter().any(|line| line.contains("isolation=Namespaces")),
        "these tests need the namespace sandbox, so run them as root without NIMBUS_SANDBOX. The server logged {isolation:?}"
    );
    let offered = server.offered_runtimes();
    assert!(
        offered.iter().any(|runtime| runtime == RUNTIME),
        "the server offers no {RUNTIME}, so install /usr/bin/python3.11. It offers {offered:?}"
    );
    server
}

/// Creates a `python3.11` function with handler `app.handler`, a 30 s timeout and the
/// fields of `settings`, and returns its configuration.
async fn create_function(api: &Api, name: &str, zip: Vec<u8>, settings: Value) -> Value {
    let mut body = json!({
        "runtime": RUNTIME,
        "handler": "app.handler",
        "timeout": 30,
        "code": {"zip_file": base64::engine::general_purpose::STANDARD.encode(zip)},
    });
    for (key, value) in settings.as_object().expect("settings are a JSON object") {
        body[key] = value.clone();
    }
    let reply = api.put(&format!("/functions/{name}"), &body).await;
    assert_eq!(reply.status, 201, "creating function {name} failed: {}", reply.body);
    reply.body
}

/// What a client sees of one synchronous invocation.
#[derive(Debug)]
struct Invocation {
    status: u16,
    /// The `X-Function-Error` header.
    function_error: Option<String>,
    /// Whether the response has an `X-Cold-Start` header, which only a new slot sends.
    cold_start: bool,
    body: Value,
}

async fn invoke(api: &Api, function: &str, event: &Value) -> Invocation {
    let response = api
        .http
        .post(format!("{}/functions/{function}/invocations", api.url))
        .bearer_auth(&api.key)
        .json(event)
        .send()
        .await
        .unwrap_or_else(|error| panic!("invoking {function} failed to reach the server: {error}"));
    let status = response.status().as_u16();
    let function_error = response
        .headers()
        .get("x-function-error")
        .map(|value| value.to_str().unwrap_or_default().to_string());
    let cold_start = response.headers().contains_key("x-cold-start");
    let bytes = response.bytes().await.expect("read the invocation response");
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|error| {
        panic!(
            "invoking {function} returned {status} with a body that is not JSON ({error}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    Invocation {
        status,
        function_error,
        cold_start,
        body,
    }
}

/// Asserts that an invocation of `function` returned 200 without a function error.
#[track_caller]
fn assert_succeeded(invocation: &Invocation, function: &str) {
    assert_eq!(
        invocation.status, 200,
        "invoking {function} returned an unexpected status: {invocation:?}"
    );
    assert_eq!(
        invocation.function_error, None,
        "{function} failed: {}",
        invocation.body
    );
}

/// Invokes `function`, asserts that it succeeded and returns its response.
async fn invoke_ok(api: &Api, function: &str, event: &Value) -> Value {
    let invocation = invoke(api, function, event).await;
    assert_succeeded(&invocation, function);
    invocation.body
}

/// Returns the target of the test process's `/proc/self/ns/{name}` link. The test
/// process runs in the host's namespaces.
fn host_namespace(name: &str) -> String {
    let link = std::fs::read_link(format!("/proc/self/ns/{name}")).expect("read a namespace link of the test process");
    link.to_string_lossy().into_owned()
}

/// Returns the host pids of the processes that descend from `root`, found through the
/// parent pid in each `/proc/PID/stat`.
fn descendants(root: u32) -> Vec<u32> {
    let mut parents = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("list /proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The fields after the parenthesized command name are the state, then the parent pid.
        let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        if let Some(parent) = after_name
            .split_whitespace()
            .nth(1)
            .and_then(|field| field.parse::<u32>().ok())
        {
            parents.push((pid, parent));
        }
    }
    let mut found = vec![root];
    let mut index = 0;
    while index < found.len() {
        let parent = found[index];
        found.extend(
            parents
                .iter()
                .filter(|(_, parent_of_pid)| *parent_of_pid == parent)
                .map(|(pid, _)| *pid),
        );
        index += 1;
    }
    found.remove(0);
    found
}

/// Returns the host pids of the server's descendants whose environment contains
/// `variable`, such as `SECRET=...`.
fn server_processes_with_variable(server: &Server, variable: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for pid in descendants(server.pid()) {
        let Ok(environment) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if environment
            .split(|byte| *byte == 0)
            .any(|assignment| assignment == variable.as_bytes())
        {
            pids.push(pid);
        }
    }
    pids
}

#[tokio::test]
async fn other_code_unreadable() {
    let server = start_server();
    let api = server.api();
    let other_zip = zip_of(&[
        ("app.py", b"def handler(event, context):\n    return 'other'\n"),
        ("other_only.py", b"TEXT = 'code of the other function'\n"),
    ]);
    let marker = unique("other-marker");
    let other = create_function(
        &api,
        "other",
        other_zip,
        json!({"environment": {"variables": {"MARKER": marker}}}),
    )
    .await;
    create_function(&api, "prober", probe_zip(READ_FILES_PY), json!({})).await;
    // The first invocation unpacks the other function's code into the worker's cache
    // and leaves its runtime running in a warm slot.
    invoke_ok(&api, "other", &json!({})).await;
    let other_pids = server_processes_with_variable(&server, &format!("MARKER={marker}"));
    assert_eq!(
        other_pids.len(),
        1,
        "the other function's runtime should be one host process"
    );

    let data_dir = server.data_dir.canonicalize().expect("canonicalize the data directory");
    let other_code_dir = data_dir
        .join("worker")
        .join("cache")
        .join(other["code_sha256"].as_str().expect("code_sha256"));
    let other_files = [other_code_dir.join("other_only.py"), other_code_dir.join("app.py")];
    for path in &other_files {
        assert!(
            path.is_file(),
            "the other function's code should be on the host at {}",
            path.display()
        );
    }
    let mut paths: Vec<PathBuf> = other_files.to_vec();
    // The other runtime's host pid is hidden from the prober, but the paths are tried anyway.
    for pid in &other_pids {
        paths.push(PathBuf::from(format!("/proc/{pid}/root/var/task/other_only.py")));
        paths.push(PathBuf::from(format!("/proc/{pid}/cwd/other_only.py")));
    }
    paths.push(data_dir.join("nimbus.db"));
    for entry in walkdir::WalkDir::new(data_dir.join("origin")).into_iter().flatten() {
        if entry.file_type().is_file() {
            paths.push(entry.into_path());
        }
    }

    let event = json!({"paths": paths, "task_files": ["other_only.py"]});
    let seen = invoke_ok(&api, "prober", &event).await;

    assert_eq!(
        seen["task_root"],
        json!(["app.py"]),
        "the prober's /var/task should contain only its own code"
    );
    assert!(
        seen["own_code"].as_str().unwrap_or_default().starts_with("read "),
        "the prober cannot read its own code: {seen}"
    );
    let reads = seen["reads"].as_object().expect("reads is an object");
    assert!(reads.len() > paths.len(), "the prober tried no /proc paths: {seen}");
    for (path, result) in reads {
        let result = result.as_str().unwrap_or_default();
        assert!(!result.starts_with("read "), "the prober read {path}: {result}");
    }
    server.stop_gracefully();
}

#[tokio::test]
async fn other_environment_hidden() {
    let server = start_server();
    let api = server.api();
    let own_secret = unique("prober-secret");
    let other_secret = unique("other-secret");
    let other_zip = zip_of(&[("app.py", b"def handler(event, context):\n    return 'other'\n")]);
    create_function(
        &api,
        "other",
        other_zip,
        json!({"environment": {"variables": {"SECRET": other_secret}}}),
    )
    .await;
    create_function(
        &api,
        "prober",
        probe_zip(READ_ENVIRONMENTS_PY),
        json!({"environment": {"variables": {"SECRET": own_secret}}}),
    )
    .await;
    // The other function's runtime stays alive in its warm slot while the prober looks.
    invoke_ok(&api, "other", &json!({})).await;
    let other_pids = server_processes_with_variable(&server, &format!("SECRET={other_secret}"));
    assert_eq!(
        other_pids.len(),
        1,
        "the other function's runtime should be one host process"
    );

    let seen = invoke_ok(&api, "prober", &json!({"pids": other_pids})).await;

    let own_pid = seen["pid"].to_string();
    assert_eq!(
        seen["secrets"][&own_pid],
        json!([format!("SECRET={own_secret}")]),
        "the prober should read its own secret: {seen}"
    );
    let secrets = seen["secrets"].as_object().expect("secrets is an object");
    for (pid, found) in secrets {
        assert!(
            !found.to_string().contains(&other_secret),
            "the prober read the other function's secret in pid {pid}: {found}"
        );
    }
    server.stop_gracefully();
}

#[tokio::test]
async fn runtime_api_is_own() {
    let server = start_server();
    let api = server.api();
    let other_zip = zip_of(&[("app.py", b"def handler(event, context):\n    return {'other': event}\n")]);
    create_function(&api, "other", other_zip, json!({})).await;
    create_function(&api, "prober", probe_zip(NETWORK_PY), json!({})).await;
    // A warm, idle slot whose Runtime API waits for its next event.
    invoke_ok(&api, "other", &json!({"n": 1})).await;

    let seen = invoke_ok(&api, "prober", &json!({"ports": []})).await;

    assert_eq!(seen["runtime_api"], "127.0.0.1:9001", "{seen}");
    // The prober's own Runtime API is busy with the prober's event, so it rejects
    // another /next at once. The other slot's idle API would hold the request open
    // and hand over that function's next event.
    assert_eq!(seen["next_event"]["status"], 403, "{seen}");
    assert!(
        seen["next_event"]["body"]
            .as_str()
            .unwrap_or_default()
            .contains("InvalidStateTransition"),
        "{seen}"
    );
    assert_eq!(
        seen["listening"],
        json!([9001]),
        "the prober should see only its own Runtime API listening: {seen}"
    );

    let other = invoke(&api, "other", &json!({"n": 2})).await;
    assert_succeeded(&other, "other");
    assert_eq!(other.body, json!({"other": {"n": 2}}));
    assert!(
        !other.cold_start,
        "the other function's warm slot should have survived the probe"
    );
    server.stop_gracefully();
}

#[tokio::test]
async fn host_ports_unreachable() {
    let server = start_server();
    let api = server.api();
    create_function(&api, "prober", probe_zip(NETWORK_PY), json!({})).await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("open a port on the host loopback");
    let test_port = listener.local_addr().expect("local address").port();
    std::net::TcpStream::connect(("127.0.0.1", test_port)).expect("the host itself reaches the test's port");
    let api_port: u16 = server
        .url
        .rsplit(':')
        .next()
        .and_then(|port| port.parse().ok())
        .expect("server URL has a port");

    let seen = invoke_ok(&api, "prober", &json!({"ports": [api_port, test_port]})).await;

    assert_ne!(
        seen["ports"][api_port.to_string()],
        "connected",
        "the prober reached the server's API port: {seen}"
    );
    assert_ne!(
        seen["ports"][test_port.to_string()],
        "connected",
        "the prober reached the test's host port: {seen}"
    );
    assert_eq!(
        seen["interfaces"],
        json!(["lo"]),
        "the prober should have only its own loopback: {seen}"
    );
    server.stop_gracefully();
}

#[tokio::test]
async fn memory_limit_kills_slot() {
    let server = start_server();
    let api = server.api();
    create_function(&api, "hungry", probe_zip(ALLOCATE_PY), json!({"memory_size": 128})).await;
    let first = invoke_ok(&api, "hungry", &json!({"allocate_mb": 64})).await;
    assert_eq!(first["allocated_mb"], 64, "64 MiB should fit in 128 MB: {first}");

    let over = invoke(&api, "hungry", &json!({"allocate_mb": 300})).await;

    assert_eq!(over.status, 200, "{over:?}");
    assert_eq!(over.function_error.as_deref(), Some("Unhandled"), "{over:?}");
    assert_eq!(over.body["errorType"], "Runtime.OutOfMemory", "{over:?}");
    let health = api.get("/health").await;
    assert_eq!(
        health.status, 200,
        "the server should survive the slot's OOM kill: {}",
        health.body
    );

    let next = invoke(&api, "hungry", &json!({"allocate_mb": 0})).await;
    assert_succeeded(&next, "hungry");
    assert!(
        next.cold_start,
        "the invocation after an OOM kill should start a new slot: {next:?}"
    );
    assert_ne!(
        next.body["boot_id"], first["boot_id"],
        "the runtime process should be new"
    );
    server.stop_gracefully();
}

#[tokio::test]
async fn fork_stops_at_pids_limit() {
    let server = start_server();
    let api = server.api();
    // Enough memory that the forked children reach the process limit before the
    // memory limit. At 128 MB the OOM killer ended the slot first.
    create_function(&api, "forker", probe_zip(FORK_PY), json!({"memory_size": 1024})).await;

    let bounded = invoke_ok(&api, "forker", &json!({"max_forks": 5000})).await;

    assert_eq!(
        bounded["error"], "EAGAIN",
        "fork should fail at the process limit: {bounded}"
    );
    let forked = bounded["forked"].as_u64().expect("forked is a number");
    assert!(
        forked < PIDS_MAX,
        "the runtime forked {forked} children, but its limit is {PIDS_MAX} processes including itself"
    );
    assert!(forked > 0, "the runtime could not fork at all: {bounded}");

    let next = invoke_ok(&api, "forker", &json!({"max_forks": 10})).await;
    assert_eq!(
        next,
        json!({"forked": 10, "error": null}),
        "the slot should fork again once its children are gone"
    );
    server.stop_gracefully();
}

#[tokio::test]
async fn tmp_limited_to_storage() {
    let server = start_server();
    let api = server.api();
    // /tmp is a tmpfs whose pages count toward the slot's memory limit (see
    // `tmp_counts_toward_memory`), so the memory must exceed the 600 MB written.
    create_function(
        &api,
        "writer",
        probe_zip(FILL_TMP_PY),
        json!({"memory_size": 2048, "ephemeral_storage": 512}),
    )
    .await;

    let seen = invoke_ok(
        &api,
        "writer",
        &json!({"files": [["/tmp/within", 400], ["/tmp/over", 600]]}),
    )
    .await;

    assert_eq!(seen["tmp_size_mb"], 512, "{seen}");
    assert_eq!(
        seen["fills"][0],
        json!({"written_mb": 400.0, "error": null}),
        "400 MiB should fit in /tmp"
    );
    assert_eq!(seen["fills"][1]["error"], "ENOSPC", "{seen}");
    let written = seen["fills"][1]["written_mb"].as_f64().expect("written_mb is a number");
    assert!(written <= 512.0, "the writer put {written} MiB in a 512 MiB /tmp");
    server.stop_gracefully();
}

/// Documents that data in /tmp counts toward `memory_size`. The slot's /tmp is a
/// tmpfs, and the kernel charges its pages to the memory cgroup of the process that
/// wrote them, so a 128 MB function cannot fill a 512 MB /tmp.
#[tokio::test]
async fn tmp_counts_toward_memory() {
    let server = start_server();
    let api = server.api();
    create_function(
        &api,
        "writer",
        probe_zip(FILL_TMP_PY),
        json!({"memory_size": 128, "ephemeral_storage": 512}),
    )
    .await;

    let over = invoke(&api, "writer", &json!({"files": [["/tmp/data", 300]]})).await;

    assert_eq!(over.function_error.as_deref(), Some("Unhandled"), "{over:?}");
    assert_eq!(over.body["errorType"], "Runtime.OutOfMemory", "{over:?}");
    server.stop_gracefully();
}

#[tokio::test]
async fn filesystem_read_only() {
    let server = start_server();
    let api = server.api();
    create_function(&api, "prober", probe_zip(IDENTITY_PY), json!({})).await;

    let seen = invoke_ok(&api, "prober", &json!({})).await;

    let writes = &seen["writes"];
    assert_eq!(writes["task_root"], "EROFS", "{writes}");
    assert_ne!(
        writes["task_code"], "ok",
        "the runtime opened its own code for writing: {writes}"
    );
    assert_eq!(writes["runtime_root"], "EROFS", "{writes}");
    assert_eq!(writes["root"], "EROFS", "{writes}");
    assert_eq!(writes["etc"], "EROFS", "{writes}");
    assert_eq!(writes["usr"], "EROFS", "{writes}");
    assert_eq!(writes["dev"], "EROFS", "{writes}");
    assert_eq!(writes["tmp"], "ok", "/tmp should be writable: {writes}");
    server.stop_gracefully();
}

#[tokio::test]
async fn runtime_unprivileged() {
    let server = start_server();
    let api = server.api();
    create_function(&api, "prober", probe_zip(IDENTITY_PY), json!({})).await;

    let seen = invoke_ok(&api, "prober", &json!({})).await;

    assert_ne!(seen["uid"], 0, "{seen}");
    assert_ne!(seen["euid"], 0, "{seen}");
    assert_eq!(seen["cap_eff"], "0000000000000000", "{seen}");
    assert_eq!(seen["cap_prm"], "0000000000000000", "{seen}");
    assert_eq!(seen["no_new_privs"], "1", "{seen}");
    // 2 is SECCOMP_MODE_FILTER.
    assert_eq!(seen["seccomp"], "2", "{seen}");
    assert_eq!(seen["mount"], "EPERM", "{seen}");
    server.stop_gracefully();
}

#[tokio::test]
async fn namespaces_hide_host() {
    let server = start_server();
    let api = server.api();
    create_function(&api, "prober", probe_zip(IDENTITY_PY), json!({})).await;

    let seen = invoke_ok(&api, "prober", &json!({})).await;

    for name in ["ipc", "mnt", "net", "pid", "uts"] {
        assert_ne!(
            seen["namespaces"][name],
            host_namespace(name).as_str(),
            "the runtime shares the host's {name} namespace"
        );
    }
    let host_hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("read the host's hostname");
    assert_ne!(seen["hostname"], host_hostname.trim(), "{seen}");
    assert_eq!(seen["hostname"], "localhost", "{seen}");
    // PID 1 is the slot's supervisor. No other process of the host is visible.
    assert_eq!(seen["visible_pids"], json!([1, seen["pid"]]), "{seen}");
    server.stop_gracefully();
}

/// Returns whether every user may execute `path` and search each directory above it.
fn executable_by_everyone(path: &Path) -> bool {
    let mode = |path: &Path| {
        std::fs::metadata(path)
            .map(|metadata| metadata.permissions().mode())
            .unwrap_or(0)
    };
    mode(path) & 0o005 == 0o005 && path.ancestors().skip(1).all(|dir| mode(dir) & 0o001 != 0)
}

/// A data directory that `nobody` owns and a `nimbus` binary that `nobody` can run.
struct UnprivilegedSetup {
    data_dir: tempfile::TempDir,
    binary: PathBuf,
    /// Holds a copy of the binary when `nobody` cannot reach the build's binary.
    _binary_dir: tempfile::TempDir,
}

impl UnprivilegedSetup {
    fn new() -> UnprivilegedSetup {
        let setpriv = Command::new("setpriv").arg("--version").output();
        assert!(
            setpriv.as_ref().is_ok_and(|output| output.status.success()),
            "setpriv (util-linux) is needed to run the server as uid {NOBODY}: {setpriv:?}"
        );
        let data_dir = tempfile::tempdir().expect("create data dir");
        std::os::unix::fs::chown(data_dir.path(), Some(NOBODY), Some(NOBODY)).expect("give the data dir to nobody");
        let binary_dir = tempfile::tempdir().expect("create a directory for the binary");
        let mut binary = nimbus_binary();
        if !executable_by_everyone(&binary) {
            std::fs::set_permissions(binary_dir.path(), std::fs::Permissions::from_mode(0o755))
                .expect("open the binary's directory to everyone");
            let copy = binary_dir.path().join("nimbus");
            std::fs::copy(&binary, &copy).expect("copy the nimbus binary");
            std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).expect("make the copy executable");
            binary = copy;
        }
        UnprivilegedSetup {
            data_dir,
            binary,
            _binary_dir: binary_dir,
        }
    }

    /// Appends the `setpriv` arguments that run the binary as `nobody` without
    /// capabilities or supplementary groups.
    fn add_setpriv_args(&self, command: &mut Command) {
        command
            .arg(format!("--reuid={NOBODY}"))
            .arg(format!("--regid={NOBODY}"))
            .args(["--clear-groups", "--inh-caps=-all", "--"])
            .arg(&self.binary);
    }

    fn start(&self, command: Command) -> Server {
        Server::start_with(command, self.data_dir.path(), &["--api-key", API_KEY], &[])
    }
}

/// Python program that executes its arguments in a new user namespace, which maps
/// uids and gids 0 to 65535 to themselves and allows no nested user namespaces. A
/// server started there finds no namespaces it may create and falls back to bare
/// processes. A forked helper writes the maps, because only a process in the parent
/// namespace may map more than its own uid.
const WITHOUT_USER_NAMESPACES_PY: &str = r#"
import ctypes
import os
import sys

CLONE_NEWUSER = 0x10000000
parent = os.getpid()
ready_read, ready_write = os.pipe()
helper = os.fork()
if helper == 0:
    os.read(ready_read, 1)
    for name in ("uid_map", "gid_map"):
        with open(f"/proc/{parent}/{name}", "w") as file:
            file.write("0 0 65536")
    os._exit(0)
libc = ctypes.CDLL(None, use_errno=True)
if libc.unshare(CLONE_NEWUSER) != 0:
    sys.exit(f"unshare(CLONE_NEWUSER) failed: {os.strerror(ctypes.get_errno())}")
os.write(ready_write, b"1")
_, status = os.waitpid(helper, 0)
if status != 0:
    sys.exit("writing the uid and gid maps failed")
with open("/proc/sys/user/max_user_namespaces", "w") as file:
    file.write("0")
os.execvp(sys.argv[1], sys.argv[1:])
"#;

/// Returns the log lines of `server` that contain `text`.
fn log_lines_with(server: &Server, text: &str) -> Vec<String> {
    server
        .log_lines()
        .into_iter()
        .filter(|line| line.contains(text))
        .collect()
}

/// Returns the isolation mode the server logged, such as `UserNamespaces`.
fn logged_isolation(server: &Server) -> String {
    let ready = log_lines_with(server, "namespace sandbox ready");
    assert_eq!(ready.len(), 1, "the server should log its isolation once: {ready:?}");
    let mode = ready[0]
        .split_once("isolation=")
        .map(|(_, mode)| mode.trim().to_string());
    mode.unwrap_or_else(|| panic!("the isolation line names no mode: {}", ready[0]))
}

/// Returns whether `/proc/self/cgroup` text puts the process in a slot cgroup of
/// `controller`, which the server creates below the parent `nimbus`. With cgroup v2
/// (line `0::PATH`) one slot cgroup carries every controller, so membership counts
/// for each.
fn in_slot_cgroup(cgroups: &str, controller: &str) -> bool {
    let mut unified = None;
    for line in cgroups.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        if controllers.is_empty() {
            unified = Some(path);
        } else if controllers.split(',').any(|name| name == controller) {
            return path.starts_with("/nimbus/");
        }
    }
    unified.is_some_and(|path| path.starts_with("/nimbus/"))
}

/// Checks that `server` logs exactly the protections that a function observes to be
/// off, and that a function invokes successfully.
async fn check_logged_protections(server: &Server) {
    let protections = log_lines_with(server, "sandbox protections");
    assert_eq!(
        protections.len(),
        1,
        "the server should log its protections once: {protections:?}"
    );
    let logged_off: BTreeSet<&str> = match protections[0].split_once("off=") {
        Some((_, list)) => list.split(", ").map(str::trim).collect(),
        None => BTreeSet::new(),
    };

    let api = server.api();
    create_function(&api, "prober", probe_zip(IDENTITY_PY), json!({})).await;
    let seen = invoke_ok(&api, "prober", &json!({})).await;

    let server_namespace = |name: &str| {
        let link = std::fs::read_link(format!("/proc/{}/ns/{name}", server.pid()))
            .expect("read a namespace link of the server");
        link.to_string_lossy().into_owned()
    };
    let namespace_differs = |name: &str| seen["namespaces"][name] != server_namespace(name).as_str();
    let cgroups = seen["cgroups"].as_str().unwrap_or_default();
    let observed_on = [
        (
            "pid/mount/ipc/uts namespaces",
            ["ipc", "mnt", "pid", "uts"].into_iter().all(namespace_differs),
        ),
        ("network namespace", namespace_differs("net")),
        ("read-only root filesystem", seen["writes"]["root"] == "EROFS"),
        ("memory limit", in_slot_cgroup(cgroups, "memory")),
        ("process limit", in_slot_cgroup(cgroups, "pids")),
        ("cpu weight", in_slot_cgroup(cgroups, "cpu")),
        // Off means the runtime runs as the server's own user in the server's user namespace.
        ("unprivileged user", namespace_differs("user") || seen["uid"] != NOBODY),
        ("no_new_privs", seen["no_new_privs"] == "1"),
        ("seccomp filter", seen["seccomp"] == "2"),
    ];
    for (protection, on) in observed_on {
        assert_eq!(
            logged_off.contains(protection),
            !on,
            "the log says {protection} is {}, but the function sees it {}: {}\n{seen}",
            if logged_off.contains(protection) { "off" } else { "on" },
            if on { "on" } else { "off" },
            protections[0]
        );
    }
    for name in &logged_off {
        assert!(
            observed_on.iter().any(|(protection, _)| protection == name),
            "the log names protection {name:?}, which this test does not check: {}",
            protections[0]
        );
    }
}

/// Runs the server as `nobody` without capabilities. It uses user namespaces, or bare
/// processes where the host allows that user none.
#[tokio::test]
async fn unprivileged_server_runs() {
    let setup = UnprivilegedSetup::new();
    let mut command = Command::new("setpriv");
    setup.add_setpriv_args(&mut command);
    let server = setup.start(command);

    let isolation = logged_isolation(&server);
    assert!(
        isolation == "UserNamespaces" || isolation == "Bare",
        "a server without root should use user namespaces or bare processes, not {isolation}"
    );
    check_logged_protections(&server).await;
    server.stop_gracefully();
}

/// Runs the server as `nobody` where user namespaces are not allowed, so it falls back
/// to bare processes.
#[tokio::test]
async fn bare_server_runs() {
    let setup = UnprivilegedSetup::new();
    let mut command = Command::new("python3");
    command.args(["-c", WITHOUT_USER_NAMESPACES_PY, "setpriv"]);
    setup.add_setpriv_args(&mut command);
    let server = setup.start(command);

    assert_eq!(logged_isolation(&server), "Bare");
    check_logged_protections(&server).await;
    server.stop_gracefully();
}
