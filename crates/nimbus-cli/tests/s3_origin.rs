//! The real `nimbus server` with its origin store on an S3-compatible server: moto's
//! `moto_server`, started on a free loopback port for the duration of the test.
//!
//! The test fails, and never skips, when `moto_server` cannot be started. Install it
//! with `pip install 'moto[server]'`.

mod common;

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::{python_zip, Reply, Server, API_KEY};
use serde_json::json;

const INSTALL_HINT: &str = "install it with: pip install 'moto[server]'";
const BUCKET: &str = "nimbus-origin";

/// Maximum time to wait for moto_server to accept connections. It usually starts in a
/// few seconds, but a loaded machine can take much longer to import moto.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `moto_server` process, killed by its PID when dropped.
struct MotoServer {
    child: Child,
    port: u16,
}

impl MotoServer {
    fn start() -> MotoServer {
        let port = free_loopback_port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("failed to start moto_server ({error}); {INSTALL_HINT}"));
        let mut server = MotoServer { child, port };
        server.wait_until_listening();
        server
    }

    fn wait_until_listening(&mut self) {
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let started = Instant::now();
        loop {
            if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                return;
            }
            if let Some(status) = self.child.try_wait().expect("failed to poll the moto_server process") {
                panic!("moto_server exited with {status} before accepting connections; {INSTALL_HINT}");
            }
            if started.elapsed() > STARTUP_TIMEOUT {
                panic!(
                    "moto_server did not accept connections on port {} within {STARTUP_TIMEOUT:?}; {INSTALL_HINT}",
                    self.port
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        // Child::kill sends SIGKILL to this child's PID only.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Returns a loopback port that was free a moment ago. Another process may take it
/// before moto_server binds it, which makes the startup wait fail.
fn free_loopback_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("failed to bind a loopback port");
    listener.local_addr().unwrap().port()
}

#[track_caller]
fn assert_status(reply: &Reply, status: u16) {
    assert_eq!(reply.status, status, "unexpected status; body: {}", reply.body);
}

fn create_inline(zip: &[u8]) -> serde_json::Value {
    let encoded = base64::engine::general_purpose::STANDARD.encode(zip);
    json!({"runtime": "python3.12", "handler": "app.handler", "code": {"zip_file": encoded}})
}

fn create_from_object(key: &str, version_id: Option<&str>) -> serde_json::Value {
    let mut code = json!({"s3_bucket": "code", "s3_key": key});
    if let Some(version_id) = version_id {
        code["s3_object_version"] = json!(version_id);
    }
    json!({"runtime": "python3.12", "handler": "app.handler", "code": code})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_origin_functions_survive_restart() {
    let moto = MotoServer::start();

    // moto does not check signatures, so a plain request creates the bucket.
    let created = reqwest::Client::new()
        .put(format!("{}/{BUCKET}", moto.url()))
        .send()
        .await
        .expect("failed to reach moto_server to create the bucket");
    assert!(
        created.status().is_success(),
        "creating the bucket returned {}",
        created.status()
    );

    let endpoint = moto.url();
    let envs = [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ];
    let origin_url = format!("s3://{BUCKET}/prefix");
    let args = ["--api-key", API_KEY, "--origin-url", &origin_url];
    let data = tempfile::tempdir().unwrap();

    let server = Server::start_in(data.path(), &args, &envs);
    let api = server.api();

    let inline = api
        .put("/functions/inline", &create_inline(&python_zip("inline")))
        .await;
    assert_status(&inline, 201);

    let object = api.put_object("code", "dir/app.zip", python_zip("object")).await;
    assert_status(&object, 201);
    let from_object = api
        .put("/functions/from-object", &create_from_object("dir/app.zip", None))
        .await;
    assert_status(&from_object, 201);
    assert_eq!(from_object.body["code_sha256"], object.body["sha256"]);

    let new_code = base64::engine::general_purpose::STANDARD.encode(python_zip("updated"));
    let updated = api
        .put(
            "/functions/inline/code",
            &json!({"zip_file": new_code, "publish": true}),
        )
        .await;
    assert_status(&updated, 200);
    assert_eq!(updated.body["version"], json!("1"));
    assert_ne!(updated.body["code_sha256"], inline.body["code_sha256"]);

    // Packages and objects live in the bucket, not in the data directory.
    assert!(
        !data.path().join("origin").exists(),
        "the local origin directory should not exist"
    );
    server.stop();

    let server = Server::start_in(data.path(), &args, &envs);
    let api = server.api();

    let latest = api.get("/functions/inline").await;
    assert_status(&latest, 200);
    assert_eq!(latest.body["code_sha256"], updated.body["code_sha256"]);
    let version = api.get("/functions/inline?qualifier=1").await;
    assert_status(&version, 200);
    assert_eq!(version.body["code_sha256"], updated.body["code_sha256"]);
    let read_object_function = api.get("/functions/from-object").await;
    assert_eq!(read_object_function.body["code_sha256"], object.body["sha256"]);

    // A handler change reads the stored package back from the bucket to check it.
    let handler = api
        .put("/functions/from-object/configuration", &json!({"handler": "app.main"}))
        .await;
    assert_status(&handler, 200);
    assert_eq!(handler.body["handler"], json!("app.main"));

    // The code object is still in the bucket after the restart.
    let pinned = api
        .put(
            "/functions/pinned",
            &create_from_object("dir/app.zip", Some(object.text("version_id"))),
        )
        .await;
    assert_status(&pinned, 201);
    assert_eq!(pinned.body["code_sha256"], object.body["sha256"]);

    let missing = api
        .put("/functions/missing", &create_from_object("absent.zip", None))
        .await;
    assert_status(&missing, 400);
    assert_eq!(missing.text("type"), "InvalidParameterValueException");
    assert!(
        missing
            .text("message")
            .contains("code object 'absent.zip' in bucket 'code' not found"),
        "{}",
        missing.body
    );

    server.stop();
    drop(moto);
}
