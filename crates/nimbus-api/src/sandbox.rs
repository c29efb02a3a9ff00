//! Choosing the sandbox backend for the in-process worker.

use std::path::Path;
use std::sync::Arc;

use nimbus_sandbox::{ProcessBackend, SandboxBackend};

use crate::server::{SandboxChoice, ServerError};

pub fn backend(choice: SandboxChoice, data_dir: &Path) -> Result<Arc<dyn SandboxBackend>, ServerError> {
    let work_dir = data_dir.join("slots");
    match choice {
        SandboxChoice::Process => Ok(Arc::new(ProcessBackend::new(&work_dir))),
        // TODO: use the namespace backend once it is wired in.
        SandboxChoice::Auto | SandboxChoice::Namespace => Ok(Arc::new(ProcessBackend::new(&work_dir))),
    }
}
