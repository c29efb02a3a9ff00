//! Starts the real `nimbus` binary for end-to-end tests.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub const API_KEY: &str = "test-key-0123456789abcdef0123456789";

/// A running `nimbus server` on a free loopback port with its own data directory.
/// Dropping it kills the process.
pub struct Server {
    pub url: String,
    pub api_key: String,
    pub data_dir: PathBuf,
    child: Child,
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

    /// Starts a server on `data_dir` with extra arguments and environment variables.
    /// The data directory is not removed when the server stops.
    pub fn start_in(data_dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Server {
        let mut command = Command::new(nimbus_binary());
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
        let stderr = child.stderr.take().expect("stderr is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        for stream in [Box::new(stderr) as Box<dyn std::io::Read + Send>, Box::new(stdout)] {
            let sender = sender.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    eprintln!("[nimbus] {line}");
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
        Server { url, api_key, data_dir: data_dir.to_path_buf(), child, _temp: None }
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A `nimbus` client command pointed at this server.
    pub fn cli(&self) -> Command {
        let mut command = Command::new(nimbus_binary());
        command.env("NIMBUS_ENDPOINT", &self.url).env("NIMBUS_API_KEY", &self.api_key);
        command
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
