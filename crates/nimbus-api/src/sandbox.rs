//! Choosing the sandbox backend for the in-process worker.

use std::path::Path;
use std::sync::Arc;

use nimbus_sandbox::{IsolationMode, NamespaceBackend, NamespaceOptions, ProcessBackend, SandboxBackend};

use crate::server::{SandboxChoice, ServerError};

/// Argument that makes the `nimbus` binary run as a slot's init process.
pub const SANDBOX_INIT_COMMAND: &str = nimbus_sandbox::INIT_SUBCOMMAND;

pub fn backend(choice: SandboxChoice, data_dir: &Path) -> Result<Arc<dyn SandboxBackend>, ServerError> {
    let work_dir = data_dir.join("slots");
    if choice == SandboxChoice::Process {
        return Ok(Arc::new(ProcessBackend::new(&work_dir)));
    }
    let nimbus = std::env::current_exe()
        .map_err(|e| ServerError::Sandbox(format!("failed to find the nimbus executable for slot init: {e}")))?;
    let (program, prefix) = nimbus_sandbox::init_program(&nimbus);
    tracing::debug!(init = %program.display(), "slot init program");
    let backend = NamespaceBackend::new(program, prefix, work_dir, NamespaceOptions::default())
        .map_err(|e| ServerError::Sandbox(format!("failed to set up the namespace sandbox: {e}")))?;
    if choice == SandboxChoice::Namespace && backend.isolation() == IsolationMode::Bare {
        return Err(ServerError::Sandbox(
            "this host allows no namespaces for this user, so --sandbox namespace cannot run; use --sandbox auto or process"
                .to_string(),
        ));
    }
    tracing::info!(isolation = ?backend.isolation(), "namespace sandbox ready");
    Ok(Arc::new(backend))
}
