//! The unisolated backend: the runtime is a plain child process in its own process
//! group. It enforces no limits, so it is only for hosts that offer nothing better.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::{
    BoxFuture, Protections, SandboxBackend, SandboxError, SlotControl, SlotExit, SlotLayout, SlotProcess, SlotSpec,
};

pub struct ProcessBackend {
    /// Directory for each slot's `/tmp` replacement.
    work_dir: PathBuf,
}

impl ProcessBackend {
    pub fn new(work_dir: &Path) -> Self {
        ProcessBackend {
            work_dir: work_dir.to_path_buf(),
        }
    }

    fn slot_dir(&self, slot_id: &str) -> PathBuf {
        self.work_dir.join(slot_id)
    }
}

fn io_error(slot_id: &str) -> impl Fn(std::io::Error) -> SandboxError + '_ {
    move |source| SandboxError::Io {
        slot_id: slot_id.to_string(),
        source,
    }
}

impl SandboxBackend for ProcessBackend {
    fn name(&self) -> &'static str {
        "process"
    }

    fn protections(&self) -> Protections {
        Protections::default()
    }

    fn layout(&self, spec: &SlotSpec) -> SlotLayout {
        SlotLayout {
            task_root: spec.code_dir.clone(),
            runtime_root: spec.runtime_dir.clone(),
            tmp_dir: self.slot_dir(&spec.slot_id).join("tmp"),
        }
    }

    fn spawn(&self, spec: &SlotSpec) -> Result<SlotProcess, SandboxError> {
        let slot_id = spec.slot_id.as_str();
        let layout = self.layout(spec);
        std::fs::create_dir_all(&layout.tmp_dir).map_err(io_error(slot_id))?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(io_error(slot_id))?;
        let address = listener.local_addr().map_err(io_error(slot_id))?.to_string();

        let (stdout_read, stdout_write) = nix::unistd::pipe().map_err(|e| io_error(slot_id)(e.into()))?;
        let (stderr_read, stderr_write) = nix::unistd::pipe().map_err(|e| io_error(slot_id)(e.into()))?;
        let Some((program, args)) = spec.argv.split_first() else {
            return Err(SandboxError::Spawn {
                slot_id: slot_id.to_string(),
                reason: "argv is empty".to_string(),
            });
        };
        let mut command = tokio::process::Command::new(program);
        command
            .args(args)
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("AWS_LAMBDA_RUNTIME_API", &address)
            .env("TMPDIR", &layout.tmp_dir)
            .current_dir(&layout.task_root)
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout_write))
            .stderr(Stdio::from(stderr_write))
            .process_group(0)
            .kill_on_drop(true);
        let child = command.spawn().map_err(|e| SandboxError::Spawn {
            slot_id: slot_id.to_string(),
            reason: format!("{program}: {e}"),
        })?;
        let pid = child.id().unwrap_or_default();
        Ok(SlotProcess {
            runtime_api: listener,
            runtime_api_address: address,
            stdout: std::fs::File::from(stdout_read),
            stderr: std::fs::File::from(stderr_read),
            control: Box::new(ProcessSlot {
                pid,
                child: tokio::sync::Mutex::new(child),
                exit: std::sync::OnceLock::new(),
                slot_dir: self.slot_dir(slot_id),
            }),
        })
    }
}

struct ProcessSlot {
    pid: u32,
    child: tokio::sync::Mutex<tokio::process::Child>,
    exit: std::sync::OnceLock<SlotExit>,
    slot_dir: PathBuf,
}

impl SlotControl for ProcessSlot {
    fn pid(&self) -> u32 {
        self.pid
    }

    fn wait(&self) -> BoxFuture<'_, SlotExit> {
        Box::pin(async move {
            use std::os::unix::process::ExitStatusExt;
            if let Some(exit) = self.exit.get() {
                return *exit;
            }
            let mut child = self.child.lock().await;
            if let Some(exit) = self.exit.get() {
                return *exit;
            }
            let exit = match child.wait().await {
                Ok(status) => match (status.code(), status.signal()) {
                    (Some(code), _) => SlotExit::Code(code),
                    (None, Some(signal)) => SlotExit::Signal(signal),
                    (None, None) => SlotExit::Code(-1),
                },
                Err(error) => {
                    tracing::warn!(pid = self.pid, %error, "waiting for a slot process failed");
                    SlotExit::Code(-1)
                }
            };
            *self.exit.get_or_init(|| exit)
        })
    }

    fn kill(&self) {
        // The group id is the child's pid because it was started with process_group(0).
        let _ = killpg(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
    }

    fn memory_peak_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
        let kilobytes: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kilobytes * 1024)
    }

    fn out_of_memory(&self) -> bool {
        false
    }

    fn destroy(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.kill();
            self.wait().await;
            let _ = tokio::fs::remove_dir_all(&self.slot_dir).await;
        })
    }
}
