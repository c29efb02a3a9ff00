//! Origin store against a real S3-compatible server: moto's `moto_server`, started on a
//! free loopback port for the duration of the test.
//!
//! The test fails, and never skips, when `moto_server` cannot be started. Install it
//! with `pip install 'moto[server]'`.

use std::io::{Cursor, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use nimbus_code::{validate_zip, OriginError, OriginStore, PackageLimits, ValidatedPackage};
use object_store::aws::AmazonS3Builder;
use object_store::ObjectStore;
use zip::write::SimpleFileOptions;
use zip::ZipWriter;

const INSTALL_HINT: &str = "install it with: pip install 'moto[server]'";
const BUCKET: &str = "nimbus-origin-test";
const ACCOUNT: &str = "123456789012";

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
            .unwrap_or_else(|err| panic!("failed to start moto_server ({err}); {INSTALL_HINT}"));
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
                    "moto_server did not accept connections on port {} within {:?}; {INSTALL_HINT}",
                    self.port, STARTUP_TIMEOUT
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

fn sample_package(content: &[u8]) -> ValidatedPackage {
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    writer.start_file("index.py", SimpleFileOptions::default()).unwrap();
    writer.write_all(content).unwrap();
    let zip = Bytes::from(writer.finish().unwrap().into_inner());
    validate_zip(zip, &PackageLimits::default()).unwrap()
}

/// Sets the S3 environment for `OriginStore::from_url`. The test binary runs only this
/// test, so no other thread reads the environment meanwhile.
fn set_s3_env(endpoint: &str, allow_http: bool) {
    std::env::set_var("AWS_ENDPOINT_URL", endpoint);
    std::env::set_var("AWS_ACCESS_KEY_ID", "test");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
    std::env::set_var("AWS_REGION", "us-east-1");
    std::env::remove_var("AWS_ENDPOINT");
    std::env::remove_var("AWS_SESSION_TOKEN");
    if allow_http {
        std::env::set_var("AWS_ALLOW_HTTP", "true");
    } else {
        std::env::remove_var("AWS_ALLOW_HTTP");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_origin_round_trip_and_versions() {
    let server = MotoServer::start();
    let http = reqwest::Client::new();

    // moto does not check signatures, so a plain request creates the bucket.
    let created = http
        .put(format!("{}/{BUCKET}", server.url()))
        .send()
        .await
        .expect("failed to reach moto_server to create the bucket");
    assert!(
        created.status().is_success(),
        "creating the bucket returned {}",
        created.status()
    );

    // An http:// endpoint must work without AWS_ALLOW_HTTP.
    set_s3_env(&server.url(), false);
    let store = OriginStore::from_url(&format!("s3://{BUCKET}/prefix")).unwrap();
    assert!(
        store.describe().starts_with(&format!("s3://{BUCKET}/prefix")),
        "{}",
        store.describe()
    );

    let package = sample_package(b"print('hello from s3')");
    let location = store.put_package(&package).await.unwrap();
    assert_eq!(location, format!("packages/{}.zip", package.sha256));
    assert_eq!(store.get_package(&package.sha256).await.unwrap(), package.bytes);

    // The package is a real object in the bucket, under the prefix. moto rejects
    // unsigned reads, so this uses a signed client without the prefix.
    let raw_client = AmazonS3Builder::from_env()
        .with_bucket_name(BUCKET)
        .with_allow_http(true)
        .build()
        .unwrap();
    let raw_path = object_store::path::Path::from(format!("prefix/{location}"));
    let raw = raw_client.get(&raw_path).await.unwrap().bytes().await.unwrap();
    assert_eq!(raw, package.bytes);

    set_s3_env(&server.url(), true);
    let store = OriginStore::from_url(&format!("s3://{BUCKET}/prefix")).unwrap();

    assert_eq!(store.put_package(&package).await.unwrap(), location);
    let missing = store.get_package(&"0".repeat(64)).await.unwrap_err();
    assert!(matches!(missing, OriginError::PackageNotFound { .. }), "{missing:?}");

    let first = store
        .put_object(ACCOUNT, "code", "dir/app.zip", Bytes::from_static(b"one"))
        .await
        .unwrap();
    let second = store
        .put_object(ACCOUNT, "code", "dir/app.zip", Bytes::from_static(b"two"))
        .await
        .unwrap();
    assert!(first.version_id < second.version_id);

    let (latest, latest_bytes) = store.get_object(ACCOUNT, "code", "dir/app.zip", None).await.unwrap();
    assert_eq!(latest, second);
    assert_eq!(latest_bytes, Bytes::from_static(b"two"));

    let (old, old_bytes) = store
        .get_object(ACCOUNT, "code", "dir/app.zip", Some(&first.version_id))
        .await
        .unwrap();
    assert_eq!(old, first);
    assert_eq!(old_bytes, Bytes::from_static(b"one"));

    // "dir" is a prefix of "dir/app.zip" as text, but a separate key.
    let absent = store.get_object(ACCOUNT, "code", "dir", None).await.unwrap_err();
    assert!(matches!(absent, OriginError::ObjectNotFound { .. }), "{absent:?}");
    store
        .put_object(ACCOUNT, "code", "dir", Bytes::from_static(b"dir"))
        .await
        .unwrap();
    let (_, dir_bytes) = store.get_object(ACCOUNT, "code", "dir", None).await.unwrap();
    assert_eq!(dir_bytes, Bytes::from_static(b"dir"));
    let (_, app_bytes) = store.get_object(ACCOUNT, "code", "dir/app.zip", None).await.unwrap();
    assert_eq!(app_bytes, Bytes::from_static(b"two"));

    let long_key = "%".repeat(1024);
    let long = store
        .put_object(ACCOUNT, "code", &long_key, Bytes::from_static(b"long"))
        .await
        .unwrap();
    let (long_got, _) = store.get_object(ACCOUNT, "code", &long_key, None).await.unwrap();
    assert_eq!(long_got, long);

    let unknown_version = format!("{}ffffffff", &first.version_id[..16]);
    let err = store
        .get_object(ACCOUNT, "code", "dir/app.zip", Some(&unknown_version))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, OriginError::ObjectNotFound { version_id: Some(v), .. } if *v == unknown_version),
        "{err:?}"
    );
    assert!(err.to_string().contains("PUT /code-objects/code/dir/app.zip"), "{err}");

    drop(server);
}
