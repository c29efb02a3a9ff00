//! Processes under test: started in their own process group with output to a log
//! file, and stopped with the whole group when dropped.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// A running process group.
pub struct Service {
    pub name: String,
    child: Child,
}

impl Service {
    /// Starts `command` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Result<Service> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("open log file {}", log.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0)
            .spawn()
            .with_context(|| format!("start {name}: {command:?}"))?;
        Ok(Service {
            name: name.to_string(),
            child,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails when the process has exited.
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited with {status}; see its log", self.name);
        }
        Ok(())
    }

    /// Waits until `address` accepts TCP connections, polling every 100 µs.
    pub fn wait_for_port(&mut self, address: SocketAddr, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if TcpStream::connect(address).is_ok() {
                return Ok(());
            }
            self.check_running()?;
            if Instant::now() > deadline {
                bail!("{} did not listen on {address} within {timeout:?}", self.name);
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    /// Stops the process group: SIGTERM, then SIGKILL after `grace`.
    pub fn stop(mut self, grace: Duration) {
        self.terminate(grace);
    }

    fn terminate(&mut self, grace: Duration) {
        let group = Pid::from_raw(self.child.id() as i32);
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = killpg(group, Signal::SIGTERM);
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        // Children of the leader may outlive it; the group id stays theirs.
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.terminate(Duration::from_secs(5));
    }
}

/// Returns a loopback address with a port that was free a moment ago.
pub fn free_address() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

/// Waits until a line of the log file contains `needle` and returns that line.
pub fn wait_for_line(service: &mut Service, log: &Path, needle: &str, timeout: Duration) -> Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let file = File::open(log).with_context(|| format!("open {}", log.display()))?;
        if let Some(line) = BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .find(|line| line.contains(needle))
        {
            return Ok(line);
        }
        service.check_running()?;
        if Instant::now() > deadline {
            bail!(
                "{} printed no line with {needle:?} within {timeout:?}; see {}",
                service.name,
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
