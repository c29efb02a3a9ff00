//! The worker's L1 code cache: packages unpacked on local disk, keyed by sha256.
//! Concurrent cold starts of one package fetch and unpack it once.

use std::collections::HashMap;
use std::io::Cursor;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use nimbus_code::OriginStore;

use crate::WorkerError;

/// The tier that served a package on a cold start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheTier {
    /// Already unpacked on this worker.
    L1,
    /// Fetched from the origin store.
    Origin,
}

impl CacheTier {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheTier::L1 => "L1",
            CacheTier::Origin => "L3",
        }
    }
}

pub struct CodeCache {
    dir: PathBuf,
    origin: Arc<OriginStore>,
    /// One lock per package being fetched, so concurrent cold starts wait for the
    /// first fetch instead of repeating it.
    fetches: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Packages found unpacked on this worker (L1 hits).
    pub hits: AtomicU64,
    /// Packages fetched from the origin store because L1 lacked them (L1 misses).
    pub misses: AtomicU64,
    /// Fetches from the origin store that failed (L3 misses).
    pub origin_failures: AtomicU64,
}

/// Lookups of each cache tier since the worker started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheCounts {
    pub l1_hits: u64,
    pub l1_misses: u64,
    pub origin_hits: u64,
    pub origin_misses: u64,
}

impl CodeCache {
    pub fn new(dir: &Path, origin: Arc<OriginStore>) -> Result<Self, WorkerError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| WorkerError::Io(format!("failed to create {}: {e}", dir.display())))?;
        Ok(CodeCache {
            dir: dir.to_path_buf(),
            origin,
            fetches: Mutex::new(HashMap::new()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            origin_failures: AtomicU64::new(0),
        })
    }

    /// Returns the hits and misses of each tier. Every L1 miss is one origin lookup.
    pub fn counts(&self) -> CacheCounts {
        let l1_misses = self.misses.load(Ordering::Relaxed);
        let origin_misses = self.origin_failures.load(Ordering::Relaxed);
        CacheCounts {
            l1_hits: self.hits.load(Ordering::Relaxed),
            l1_misses,
            origin_hits: l1_misses.saturating_sub(origin_misses),
            origin_misses,
        }
    }

    /// Lists the sha256 of every package unpacked in this cache.
    pub fn cached_packages(&self) -> std::collections::HashSet<String> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Default::default();
        };
        entries
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| !name.starts_with('.'))
            .collect()
    }

    /// Returns the directory with the unpacked package, fetching it if needed.
    pub async fn ensure(&self, sha256: &str) -> Result<(PathBuf, CacheTier), WorkerError> {
        if !sha256.chars().all(|c| c.is_ascii_hexdigit()) || sha256.len() != 64 {
            return Err(WorkerError::Io(format!("code sha256 '{sha256}' is not 64 hex digits")));
        }
        let target = self.dir.join(sha256);
        if target.is_dir() {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok((target, CacheTier::L1));
        }

        let lock = {
            let mut fetches = self.fetches.lock().expect("cache lock is not poisoned");
            fetches.entry(sha256.to_string()).or_default().clone()
        };
        let _guard = lock.lock().await;
        if target.is_dir() {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok((target, CacheTier::L1));
        }

        self.misses.fetch_add(1, Ordering::Relaxed);
        let bytes = self.origin.get_package(sha256).await.map_err(|e| {
            self.origin_failures.fetch_add(1, Ordering::Relaxed);
            WorkerError::Code(format!("failed to fetch code package {sha256}: {e}"))
        })?;
        let staging = self.dir.join(format!(".{sha256}.{}", uuid::Uuid::new_v4().simple()));
        let final_dir = target.clone();
        tokio::task::spawn_blocking(move || unpack(&bytes, &staging, &final_dir))
            .await
            .map_err(|e| WorkerError::Io(format!("unpacking failed: {e}")))??;
        self.fetches.lock().expect("cache lock is not poisoned").remove(sha256);
        Ok((target, CacheTier::Origin))
    }
}

/// Unpacks into `staging`, makes everything readable by the slot's unprivileged user,
/// then renames it into place so a half-unpacked package is never used.
fn unpack(bytes: &[u8], staging: &Path, target: &Path) -> Result<(), WorkerError> {
    let io = |what: &str, e: std::io::Error| WorkerError::Io(format!("{what} {}: {e}", staging.display()));
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| WorkerError::Code(format!("stored code package is not a valid zip: {e}")))?;
    archive
        .extract(staging)
        .map_err(|e| WorkerError::Code(format!("failed to unpack the code package: {e}")))?;
    for entry in walk(staging).map_err(|e| io("failed to list", e))? {
        let metadata = std::fs::symlink_metadata(&entry).map_err(|e| io("failed to stat", e))?;
        if metadata.file_type().is_symlink() {
            continue;
        }
        let mode = metadata.permissions().mode();
        let readable = if metadata.is_dir() { mode | 0o755 } else { mode | 0o444 };
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(readable & 0o7777 & !0o022))
            .map_err(|e| io("failed to set permissions in", e))?;
    }
    std::fs::set_permissions(staging, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| io("failed to set permissions on", e))?;
    match std::fs::rename(staging, target) {
        Ok(()) => Ok(()),
        // Another process unpacked the same package first; its copy is identical.
        Err(_) if target.is_dir() => {
            let _ = std::fs::remove_dir_all(staging);
            Ok(())
        }
        Err(e) => Err(io("failed to move", e)),
    }
}

fn walk(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if std::fs::symlink_metadata(&path)?.is_dir() {
                pending.push(path.clone());
            }
            found.push(path);
        }
    }
    Ok(found)
}
