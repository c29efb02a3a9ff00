//! Starts the real `nimbus` binary for end-to-end tests.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

pub const API_KEY: &str = "test-key-0123456789abcdef0123456789";

/// A running `nimbus server` on a free loopback port with its own data directory.
/// Dropping it kills the process.
pub struct Server {
    pub url: String,
    pub api_key: String,
    pub data_dir: PathBuf,
    child: Child,
    /// Every line the server printed so far, stderr and stdout interleaved.
    log: Arc<Mutex<Vec<String>>>,
    _temp: Option<tempfile::TempDir>,
}

pub fn nimbus_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_nimbus"))
}

impl Server {
    /// Starts a server with a fresh data directory and the API key [`API_KEY`].
    pub fn start() -> Server {
        let temp = tempfile::tempdir().expect("create data dir");
        let data_dir = temp.path().to_path_buf();
        let mut server = Server::start_in(&data_dir, &["--api-key", API_KEY], &[]);
        server._temp = Some(temp);
        server
    }

    /// Starts a server like [`Server::start`], with extra server arguments.
    pub fn start_with_args(extra: &[&str]) -> Server {
        let temp = tempfile::tempdir().expect("create data dir");
        let data_dir = temp.path().to_path_buf();
        let mut args = vec!["--api-key", API_KEY];
        args.extend_from_slice(extra);
        let mut server = Server::start_in(&data_dir, &args, &[]);
        server._temp = Some(temp);
        server
    }

    /// Starts a server on `data_dir` with extra arguments and environment variables.
    /// The data directory is not removed when the server stops.
    pub fn start_in(data_dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Server {
        Server::start_with(Command::new(nimbus_binary()), data_dir, args, envs)
    }

    /// Like [`Server::start_in`], but runs `command` in place of the `nimbus` binary,
    /// with the server arguments appended to its own. `command` must replace itself
    /// with the server by exec (as `setpriv ... -- nimbus` does), because stopping the
    /// server signals the process that `command` started.
    pub fn start_with(mut command: Command, data_dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Server {
        command
            .arg("server")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .env("RUST_LOG", "info")
            .env_remove("NIMBUS_API_KEY")
            .env_remove("NIMBUS_ENDPOINT")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in envs {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("start nimbus server");

        // The server logs "listening on http://ADDR" once it accepts connections.
        let (sender, receiver) = mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        for stream in [Box::new(stderr) as Box<dyn std::io::Read + Send>, Box::new(stdout)] {
            let sender = sender.clone();
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    eprintln!("[nimbus] {line}");
                    log.lock().expect("server log lock").push(line.clone());
                    if let Some(at) = line.find("listening on http://") {
                        let address = line[at + "listening on ".len()..]
                            .split_whitespace()
                            .next()
                            .unwrap_or_default()
                            .to_string();
                        let _ = sender.send(address);
                    }
                }
            });
        }
        let url = match receiver.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!("nimbus server did not log its address within 60 s");
            }
        };
        let api_key = args
            .iter()
            .position(|a| *a == "--api-key")
            .map(|i| args[i + 1].to_string())
            .unwrap_or_default();
        Server {
            url,
            api_key,
            data_dir: data_dir.to_path_buf(),
            child,
            log,
            _temp: None,
        }
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the server with SIGTERM, so that it destroys its execution slots, and
    /// kills it if it has not exited within 10 s.
    pub fn stop_gracefully(mut self) {
        self.terminate(Duration::from_secs(10));
    }

    /// Sends SIGTERM so the server destroys its slots and their cgroups, and kills
    /// it if it has not exited within `grace`.
    fn terminate(&mut self, grace: Duration) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let pid = self.child.id().to_string();
        let signalled = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .is_ok_and(|status| status.success());
        let deadline = Instant::now() + grace;
        while signalled && Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Returns the pid of the server process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Returns the lines the server printed so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().expect("server log lock").clone()
    }

    /// Returns the runtime ids of the server's "runtimes offered" log line, such as
    /// `python3.11` or `nodejs20.x`.
    pub fn offered_runtimes(&self) -> Vec<String> {
        let lines = self.log_lines();
        let line = lines
            .iter()
            .find(|line| line.contains("runtimes offered"))
            .unwrap_or_else(|| panic!("the server logged no 'runtimes offered' line:\n{}", lines.join("\n")));
        let list = line.split_once("runtimes=").map_or("", |(_, list)| list);
        list.split(", ")
            .filter_map(|entry| entry.split_whitespace().next())
            .map(str::to_string)
            .collect()
    }

    /// Returns the first Python runtime id that the server offers, such as
    /// `python3.11`.
    pub fn python_runtime(&self) -> String {
        let offered = self.offered_runtimes();
        offered
            .iter()
            .find(|id| id.starts_with("python3."))
            .unwrap_or_else(|| panic!("the server offers no Python runtime ({offered:?}); install python3"))
            .clone()
    }

    /// Runs `nimbus admin --data-dir DIR ARGS` on this server's data directory and
    /// returns its output.
    pub fn admin(&self, args: &[&str]) -> std::process::Output {
        Command::new(nimbus_binary())
            .arg("admin")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(args)
            .output()
            .unwrap_or_else(|error| panic!("run nimbus admin {args:?}: {error}"))
    }

    /// Builds a `nimbus` client command pointed at this server.
    pub fn cli(&self) -> Command {
        let mut command = Command::new(nimbus_binary());
        command
            .env("NIMBUS_ENDPOINT", &self.url)
            .env("NIMBUS_API_KEY", &self.api_key);
        command
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.terminate(Duration::from_secs(2));
    }
}

/// Status and JSON body of one API response. The body is `Null` when the response has
/// none.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: serde_json::Value,
}

impl Reply {
    /// Returns the string field `key` of the body, or "" when it is absent.
    pub fn text(&self, key: &str) -> &str {
        self.body[key].as_str().unwrap_or_default()
    }
}

/// An HTTP client for one server's API that sends `Authorization: Bearer KEY`, or no
/// such header when the key is empty.
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub url: String,
    pub key: String,
}

impl Server {
    /// Returns an API client that sends this server's key.
    pub fn api(&self) -> Api {
        // A server that stops responding fails the test instead of hanging the suite.
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .expect("build the HTTP client");
        Api {
            http,
            url: self.url.clone(),
            key: self.api_key.clone(),
        }
    }
}

impl Api {
    /// Returns this client with another API key. With "", it sends no Authorization
    /// header.
    pub fn with_key(&self, key: &str) -> Api {
        Api {
            http: self.http.clone(),
            url: self.url.clone(),
            key: key.to_string(),
        }
    }

    /// Sends a request with an optional raw body and Content-Type.
    pub async fn send_raw(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Reply {
        let mut request = self.http.request(method.clone(), format!("{}{path}", self.url));
        if !self.key.is_empty() {
            request = request.bearer_auth(&self.key);
        }
        if let Some(content_type) = content_type {
            request = request.header(reqwest::header::CONTENT_TYPE, content_type);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|error| panic!("{method} {path} failed to reach the server: {error}"));
        let status = response.status().as_u16();
        let bytes = response.bytes().await.expect("read the response body");
        let body = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|error| {
                panic!(
                    "{method} {path} returned {status} with a body that is not JSON ({error}): {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        Reply { status, body }
    }

    /// Sends a request with a JSON body, or with no body for `None`.
    pub async fn send(&self, method: reqwest::Method, path: &str, body: Option<&serde_json::Value>) -> Reply {
        match body {
            Some(body) => {
                let bytes = serde_json::to_vec(body).expect("serialize the request body");
                self.send_raw(method, path, Some("application/json"), Some(bytes)).await
            }
            None => self.send_raw(method, path, None, None).await,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(reqwest::Method::GET, path, None).await
    }

    pub async fn put(&self, path: &str, body: &serde_json::Value) -> Reply {
        self.send(reqwest::Method::PUT, path, Some(body)).await
    }

    pub async fn post(&self, path: &str, body: &serde_json::Value) -> Reply {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send(reqwest::Method::DELETE, path, None).await
    }

    /// Uploads a zip with `PUT /code-objects/{bucket}/{key}`.
    pub async fn put_object(&self, bucket: &str, key: &str, zip: Vec<u8>) -> Reply {
        self.send_raw(
            reqwest::Method::PUT,
            &format!("/code-objects/{bucket}/{key}"),
            Some("application/zip"),
            Some(zip),
        )
        .await
    }
}

/// Returns a zip file with the given files, deflated.
pub fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    use std::io::Write;

    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().unix_permissions(0o644);
    for (name, contents) in files {
        writer.start_file(*name, options).expect("start a zip entry");
        writer.write_all(contents).expect("write a zip entry");
    }
    writer.finish().expect("finish the zip").into_inner()
}

/// Returns a zip of every file under `root`, named by its path relative to `root`,
/// with its unix permissions, so executables such as `bootstrap` stay executable.
pub fn zip_dir(root: &Path) -> Vec<u8> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for entry in walkdir::WalkDir::new(root).sort_by_file_name() {
        let entry = entry.unwrap_or_else(|error| panic!("list {}: {error}", root.display()));
        if !entry.file_type().is_file() {
            continue;
        }
        let name = entry
            .path()
            .strip_prefix(root)
            .expect("walked paths are under the root")
            .to_string_lossy()
            .into_owned();
        let mode = entry.metadata().expect("stat a file to zip").permissions().mode() & 0o777;
        let options = zip::write::SimpleFileOptions::default().unix_permissions(mode);
        let contents =
            std::fs::read(entry.path()).unwrap_or_else(|error| panic!("read {}: {error}", entry.path().display()));
        writer.start_file(name, options).expect("start a zip entry");
        writer.write_all(&contents).expect("write a zip entry");
    }
    writer.finish().expect("finish the zip").into_inner()
}

/// Returns a zip with `app.py`, whose `handler` returns `tag`.
pub fn python_zip(tag: &str) -> Vec<u8> {
    let source = format!("def handler(event, context):\n    return {tag:?}\n");
    zip_of(&[("app.py", source.as_bytes())])
}

/// Runs `nimbus admin --data-dir DIR account create NAME` and returns the API key it
/// prints.
pub fn create_account(data_dir: &Path, name: &str) -> String {
    let output = Command::new(nimbus_binary())
        .arg("admin")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["account", "create", name])
        .output()
        .expect("run nimbus admin account create");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "nimbus admin account create {name} failed with {}\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("api_key:"))
        .map(|key| key.trim().to_string())
        .unwrap_or_else(|| panic!("nimbus admin account create printed no api_key line: {stdout}"))
}
