//! The runtimes a worker offers, keyed by AWS runtime id (`python3.11`, `nodejs20.x`,
//! `provided.al2023`, …), with the interpreter, command line and environment of each.
//!
//! A worker offers only the runtimes whose interpreter it really has, at the version the
//! id names, so that a function never silently runs on a different language version.

use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PYTHON_BOOTSTRAP: &str = include_str!("../bootstraps/python/bootstrap.py");
const NODE_BOOTSTRAP: &str = include_str!("../bootstraps/node/bootstrap.mjs");

/// Path of each bootstrap that [`install_bootstraps`] writes, relative to the runtime root.
const PYTHON_BOOTSTRAP_PATH: &str = "python/bootstrap.py";
const NODE_BOOTSTRAP_PATH: &str = "node/bootstrap.mjs";

/// Python minor versions probed as `python3.{minor}` by [`RuntimeCatalog::detect`].
const PYTHON_MINORS: std::ops::RangeInclusive<u32> = 8..=13;
/// Oldest Node.js major version offered. The Node bootstrap is tested on Node.js 20.
const MIN_NODE_MAJOR: u32 = 18;
/// Custom runtimes: the function ships its own `bootstrap` executable.
const PROVIDED_IDS: [&str; 3] = ["provided", "provided.al2", "provided.al2023"];

/// Maximum time an interpreter gets to print its version during detection.
const VERSION_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuntimeKind {
    Python,
    Node,
    /// A custom runtime: `bootstrap` in the task root, started directly.
    Provided,
}

/// One runtime that this worker can run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeOffer {
    /// AWS runtime id, for example `python3.11`, `nodejs20.x` or `provided.al2023`.
    pub id: String,
    pub kind: RuntimeKind,
    /// Absolute path of the interpreter, or `None` for provided runtimes.
    pub interpreter: Option<PathBuf>,
    /// Exact interpreter version as it reports itself, for example `3.11.2` or `v20.20.2`.
    pub version: Option<String>,
}

/// The runtimes a worker offers.
#[derive(Debug, Clone, Default)]
pub struct RuntimeCatalog {
    offers: Vec<RuntimeOffer>,
}

impl RuntimeCatalog {
    /// Probes this host's interpreters and returns the runtimes they provide.
    ///
    /// Python: `/usr/bin/python3.{8..=13}`, then `/usr/local/bin/python3.{8..=13}`, then
    /// `/usr/bin/python3`; the first interpreter found for a minor version provides
    /// `python3.{minor}`, and only if its `--version` reports that minor version. Node.js:
    /// `/usr/bin/node`, then `/usr/local/bin/node`, whose major version names
    /// `nodejs{major}.x`. The provided runtimes are always offered.
    ///
    /// Interpreters are probed by absolute path with an empty environment. An interpreter
    /// that resolves into a `shims` directory (pyenv, asdf, nodenv) is skipped, because a
    /// shim picks its version from the environment and adds tens of milliseconds to each
    /// start.
    pub fn detect() -> RuntimeCatalog {
        let mut offers: Vec<RuntimeOffer> = Vec::new();

        let mut python_candidates: Vec<PathBuf> = Vec::new();
        for minor in PYTHON_MINORS {
            python_candidates.push(PathBuf::from(format!("/usr/bin/python3.{minor}")));
            python_candidates.push(PathBuf::from(format!("/usr/local/bin/python3.{minor}")));
        }
        python_candidates.push(PathBuf::from("/usr/bin/python3"));
        for candidate in python_candidates {
            if let Some(offer) = probe_python(&candidate) {
                add_if_new(&mut offers, offer);
            }
        }

        for candidate in ["/usr/bin/node", "/usr/local/bin/node"] {
            if let Some(offer) = probe_node(Path::new(candidate)) {
                add_if_new(&mut offers, offer);
            }
        }

        for id in PROVIDED_IDS {
            offers.push(RuntimeOffer {
                id: id.to_string(),
                kind: RuntimeKind::Provided,
                interpreter: None,
                version: None,
            });
        }

        for offer in &offers {
            tracing::info!(
                runtime = %offer.id,
                interpreter = ?offer.interpreter,
                version = offer.version.as_deref().unwrap_or(""),
                "runtime available"
            );
        }
        RuntimeCatalog { offers }
    }

    pub fn with_offers(offers: Vec<RuntimeOffer>) -> RuntimeCatalog {
        RuntimeCatalog { offers }
    }

    pub fn offers(&self) -> &[RuntimeOffer] {
        &self.offers
    }

    /// Returns the offer for an AWS runtime id such as `python3.11`, if this worker has it.
    pub fn get(&self, runtime_id: &str) -> Option<&RuntimeOffer> {
        self.offers.iter().find(|offer| offer.id == runtime_id)
    }
}

fn add_if_new(offers: &mut Vec<RuntimeOffer>, offer: RuntimeOffer) {
    if offers.iter().all(|existing| existing.id != offer.id) {
        offers.push(offer);
    }
}

fn probe_python(path: &Path) -> Option<RuntimeOffer> {
    let output = probe_version(path)?;
    // Python prints `Python 3.11.2`. Versions before 3.4 printed it to stderr, which is
    // read too.
    let version = output.trim().strip_prefix("Python ")?.to_string();
    let mut parts = version.split('.');
    let major = parts.next()?;
    let minor: u32 = parts.next()?.parse().ok()?;
    if major != "3" || minor < *PYTHON_MINORS.start() {
        return None;
    }

    // A file named python3.X must really be 3.X, or the id would promise the wrong version.
    let name = path.file_name()?.to_str()?;
    if name != "python3" && name != format!("python3.{minor}") {
        tracing::warn!(interpreter = %path.display(), %version, "interpreter reports a different version than its name, skipped");
        return None;
    }

    Some(RuntimeOffer {
        id: format!("python3.{minor}"),
        kind: RuntimeKind::Python,
        interpreter: Some(path.to_path_buf()),
        version: Some(version),
    })
}

fn probe_node(path: &Path) -> Option<RuntimeOffer> {
    let output = probe_version(path)?;
    // Node prints `v20.20.2`.
    let version = output.trim().to_string();
    let major: u32 = version.strip_prefix('v')?.split('.').next()?.parse().ok()?;
    if major < MIN_NODE_MAJOR {
        tracing::info!(interpreter = %path.display(), %version, "Node.js version too old for the bootstrap, skipped");
        return None;
    }
    Some(RuntimeOffer {
        id: format!("nodejs{major}.x"),
        kind: RuntimeKind::Node,
        interpreter: Some(path.to_path_buf()),
        version: Some(version),
    })
}

/// Runs `path --version` with an empty environment and returns what it printed on stdout
/// and stderr, or `None` if it is missing, a shim, fails or times out.
fn probe_version(path: &Path) -> Option<String> {
    let resolved = std::fs::canonicalize(path).ok()?;
    if resolved
        .components()
        .any(|component| component == Component::Normal("shims".as_ref()))
    {
        tracing::info!(interpreter = %path.display(), resolved = %resolved.display(), "interpreter is a version-manager shim, skipped");
        return None;
    }

    let mut child = Command::new(path)
        .arg("--version")
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| tracing::debug!(interpreter = %path.display(), %error, "interpreter failed to start, skipped"))
        .ok()?;

    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < VERSION_PROBE_TIMEOUT => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) | Err(_) => {
                tracing::warn!(interpreter = %path.display(), timeout = ?VERSION_PROBE_TIMEOUT, "interpreter did not print its version in time, skipped");
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    };
    if !status.success() {
        tracing::warn!(interpreter = %path.display(), %status, "interpreter --version failed, skipped");
        return None;
    }

    let mut printed = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        stdout.read_to_string(&mut printed).ok()?;
    }
    if let Some(mut stderr) = child.stderr.take() {
        stderr.read_to_string(&mut printed).ok()?;
    }
    Some(printed)
}

impl RuntimeOffer {
    /// Returns the argv that starts this runtime in a slot, with paths inside the slot.
    ///
    /// Python and Node offers need `interpreter`: without one the argv is empty, which the
    /// sandbox rejects.
    pub fn command(&self, runtime_root: &Path, task_root: &Path) -> Vec<String> {
        match self.kind {
            RuntimeKind::Python => {
                let Some(interpreter) = &self.interpreter else {
                    return Vec::new();
                };
                // -S skips `site`: the host's site-packages stay off sys.path, so a
                // function imports only from the standard library, its task root and its
                // layers, whatever is installed on the worker, and Python starts faster. Lambda
                // puts the task root and layers on sys.path without `site` too, so their
                // `.pth` files are not processed there either. The bootstrap adds those
                // directories itself. -u keeps stdout and stderr unbuffered.
                vec![
                    interpreter.display().to_string(),
                    "-S".to_string(),
                    "-u".to_string(),
                    runtime_root.join(PYTHON_BOOTSTRAP_PATH).display().to_string(),
                ]
            }
            RuntimeKind::Node => {
                let Some(interpreter) = &self.interpreter else {
                    return Vec::new();
                };
                vec![
                    interpreter.display().to_string(),
                    runtime_root.join(NODE_BOOTSTRAP_PATH).display().to_string(),
                ]
            }
            // NOTE: Lambda also accepts /opt/bootstrap from a layer when the task root has
            // none, but this command only looks in the task root.
            RuntimeKind::Provided => vec![task_root.join("bootstrap").display().to_string()],
        }
    }

    /// Returns the environment this runtime needs on top of the function's own variables
    /// and the reserved `AWS_LAMBDA_*` ones, with paths inside the slot.
    pub fn environment(&self, runtime_root: &Path, task_root: &Path) -> Vec<(String, String)> {
        let mut environment = vec![
            ("LAMBDA_TASK_ROOT".to_string(), task_root.display().to_string()),
            ("LAMBDA_RUNTIME_DIR".to_string(), runtime_root.display().to_string()),
        ];
        match self.kind {
            RuntimeKind::Python => {
                environment.push(("AWS_EXECUTION_ENV".to_string(), format!("AWS_Lambda_{}", self.id)));
                environment.push(("PYTHONUNBUFFERED".to_string(), "1".to_string()));
                // The task root is read-only, so writing bytecode would only fail.
                environment.push(("PYTHONDONTWRITEBYTECODE".to_string(), "1".to_string()));
            }
            RuntimeKind::Node => {
                environment.push(("AWS_EXECUTION_ENV".to_string(), format!("AWS_Lambda_{}", self.id)));
                // Lambda's order: layer modules for this major version, all layer
                // modules, then the task root. NODE_PATH applies to require() only.
                let mut node_path = Vec::new();
                if let Some(major) = self.id.strip_prefix("nodejs").and_then(|rest| rest.strip_suffix(".x")) {
                    node_path.push(format!("/opt/nodejs/node{major}/node_modules"));
                }
                node_path.push("/opt/nodejs/node_modules".to_string());
                node_path.push(task_root.display().to_string());
                environment.push(("NODE_PATH".to_string(), node_path.join(":")));
            }
            RuntimeKind::Provided => {}
        }
        environment
    }
}

/// Writes the embedded bootstraps to `dir/python/bootstrap.py` and `dir/node/bootstrap.mjs`.
///
/// A file that already has the right content is left alone. Others are replaced
/// atomically by writing a temporary file and renaming it, so a slot starting at the same
/// time reads either the old or the new bootstrap, never half of one.
pub fn install_bootstraps(dir: &Path) -> std::io::Result<()> {
    write_if_changed(&dir.join(PYTHON_BOOTSTRAP_PATH), PYTHON_BOOTSTRAP)?;
    write_if_changed(&dir.join(NODE_BOOTSTRAP_PATH), NODE_BOOTSTRAP)?;
    Ok(())
}

fn write_if_changed(path: &Path, content: &str) -> std::io::Result<()> {
    if std::fs::read(path).is_ok_and(|existing| existing == content.as_bytes()) {
        return Ok(());
    }
    let Some(parent) = path.parent() else {
        return Err(std::io::Error::other(format!(
            "bootstrap path {} has no parent directory",
            path.display()
        )));
    };
    std::fs::create_dir_all(parent)?;

    let file_name = path.file_name().and_then(|name| name.to_str()).unwrap_or("bootstrap");
    let temporary = parent.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let written = std::fs::File::create(&temporary).and_then(|mut file| {
        file.write_all(content.as_bytes())?;
        file.sync_all()
    });
    if let Err(error) = written.and_then(|()| std::fs::rename(&temporary, path)) {
        let _ = std::fs::remove_file(&temporary);
        return Err(error);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(id: &str, kind: RuntimeKind, interpreter: Option<&str>) -> RuntimeOffer {
        RuntimeOffer {
            id: id.to_string(),
            kind,
            interpreter: interpreter.map(PathBuf::from),
            version: None,
        }
    }

    #[test]
    fn python_command_uses_bootstrap_in_runtime_root() {
        let python = offer("python3.11", RuntimeKind::Python, Some("/usr/bin/python3.11"));
        let argv = python.command(Path::new("/var/runtime"), Path::new("/var/task"));
        assert_eq!(
            argv,
            ["/usr/bin/python3.11", "-S", "-u", "/var/runtime/python/bootstrap.py"]
        );
    }

    #[test]
    fn node_command_uses_bootstrap_in_runtime_root() {
        let node = offer("nodejs20.x", RuntimeKind::Node, Some("/usr/bin/node"));
        let argv = node.command(Path::new("/var/runtime"), Path::new("/var/task"));
        assert_eq!(argv, ["/usr/bin/node", "/var/runtime/node/bootstrap.mjs"]);
    }

    #[test]
    fn provided_command_runs_task_root_bootstrap() {
        let provided = offer("provided.al2023", RuntimeKind::Provided, None);
        let argv = provided.command(Path::new("/var/runtime"), Path::new("/var/task"));
        assert_eq!(argv, ["/var/task/bootstrap"]);
    }

    #[test]
    fn interpreter_missing_gives_empty_command() {
        let python = offer("python3.11", RuntimeKind::Python, None);
        assert!(python
            .command(Path::new("/var/runtime"), Path::new("/var/task"))
            .is_empty());
    }

    #[test]
    fn node_environment_sets_node_path() {
        let node = offer("nodejs20.x", RuntimeKind::Node, Some("/usr/bin/node"));
        let environment = node.environment(Path::new("/var/runtime"), Path::new("/var/task"));
        let node_path = environment
            .iter()
            .find(|(name, _)| name == "NODE_PATH")
            .map(|(_, value)| value.as_str());
        assert_eq!(
            node_path,
            Some("/opt/nodejs/node20/node_modules:/opt/nodejs/node_modules:/var/task")
        );
        assert!(environment.contains(&("LAMBDA_TASK_ROOT".to_string(), "/var/task".to_string())));
        assert!(environment.contains(&("AWS_EXECUTION_ENV".to_string(), "AWS_Lambda_nodejs20.x".to_string())));
    }

    #[test]
    fn python_environment_is_unbuffered() {
        let python = offer("python3.11", RuntimeKind::Python, Some("/usr/bin/python3.11"));
        let environment = python.environment(Path::new("/var/runtime"), Path::new("/var/task"));
        assert!(environment.contains(&("PYTHONUNBUFFERED".to_string(), "1".to_string())));
        assert!(environment.contains(&("PYTHONDONTWRITEBYTECODE".to_string(), "1".to_string())));
        assert!(environment.contains(&("LAMBDA_RUNTIME_DIR".to_string(), "/var/runtime".to_string())));
    }

    #[test]
    fn catalog_get_finds_by_id() {
        let catalog = RuntimeCatalog::with_offers(vec![
            offer("python3.11", RuntimeKind::Python, Some("/usr/bin/python3.11")),
            offer("provided.al2023", RuntimeKind::Provided, None),
        ]);
        assert_eq!(
            catalog.get("provided.al2023").map(|offer| offer.kind),
            Some(RuntimeKind::Provided)
        );
        assert!(catalog.get("python3.12").is_none());
        assert_eq!(catalog.offers().len(), 2);
    }

    #[test]
    fn detect_offers_provided_and_real_interpreters() {
        let catalog = RuntimeCatalog::detect();
        for id in PROVIDED_IDS {
            assert!(catalog.get(id).is_some(), "{id} missing from {:?}", catalog.offers());
        }
        for offer in catalog.offers() {
            if let Some(interpreter) = &offer.interpreter {
                assert!(interpreter.is_absolute(), "{offer:?}");
                assert!(offer.version.is_some(), "{offer:?}");
            }
        }
        // The next two checks apply only where /usr/bin/python3 and /usr/bin/node exist.
        if Path::new("/usr/bin/python3").exists() {
            assert!(
                catalog.offers().iter().any(|offer| offer.kind == RuntimeKind::Python),
                "{:?}",
                catalog.offers()
            );
        }
        if Path::new("/usr/bin/node").exists() {
            assert!(
                catalog.offers().iter().any(|offer| offer.kind == RuntimeKind::Node),
                "{:?}",
                catalog.offers()
            );
        }
    }

    #[test]
    fn detect_names_python_by_reported_version() {
        let catalog = RuntimeCatalog::detect();
        for offer in catalog
            .offers()
            .iter()
            .filter(|offer| offer.kind == RuntimeKind::Python)
        {
            let version = offer.version.as_deref().unwrap_or_default();
            let major_minor: Vec<&str> = version.split('.').take(2).collect();
            assert_eq!(offer.id, format!("python{}", major_minor.join(".")), "{offer:?}");
        }
    }

    #[test]
    fn install_bootstraps_writes_and_repeats() {
        let dir = tempfile::tempdir().expect("create temp dir");
        install_bootstraps(dir.path()).expect("first install");
        let python = std::fs::read_to_string(dir.path().join(PYTHON_BOOTSTRAP_PATH)).expect("read python bootstrap");
        assert_eq!(python, PYTHON_BOOTSTRAP);
        let node = std::fs::read_to_string(dir.path().join(NODE_BOOTSTRAP_PATH)).expect("read node bootstrap");
        assert_eq!(node, NODE_BOOTSTRAP);

        std::fs::write(dir.path().join(NODE_BOOTSTRAP_PATH), "stale").expect("overwrite node bootstrap");
        install_bootstraps(dir.path()).expect("second install");
        let node = std::fs::read_to_string(dir.path().join(NODE_BOOTSTRAP_PATH)).expect("read node bootstrap again");
        assert_eq!(node, NODE_BOOTSTRAP);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("node"))
            .expect("list node dir")
            .filter_map(Result::ok)
            .filter(|entry| entry.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    }
}
