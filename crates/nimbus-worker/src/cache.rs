//! The code cache tiers of a worker. L1 is the worker's own disk: packages unpacked
//! and ready to mount, bounded in bytes, least recently used first out. L2 is the
//! server's memory: zips shared by all of its workers, also bounded in bytes. L3 is
//! the origin store. Concurrent cold starts of one package fetch it once per tier.

use std::collections::HashMap;
use std::io::Cursor;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use nimbus_code::OriginStore;

use crate::WorkerError;

pub const DEFAULT_L1_BYTES: u64 = 2 * 1024 * 1024 * 1024;
pub const DEFAULT_L2_BYTES: u64 = 512 * 1024 * 1024;

/// The tier that served a package on a cold start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheTier {
    /// Already unpacked on this worker.
    L1,
    /// In the server's shared memory cache.
    L2,
    /// Fetched from the origin store.
    Origin,
}

impl CacheTier {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheTier::L1 => "L1",
            CacheTier::L2 => "L2",
            CacheTier::Origin => "L3",
        }
    }
}

/// Lookups of each cache tier since the server started. L1 counts are per worker;
/// L2 and L3 counts belong to the cache that all workers share.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheCounts {
    pub l1_hits: u64,
    pub l1_misses: u64,
    pub l2_hits: u64,
    pub l2_misses: u64,
    pub origin_hits: u64,
    pub origin_misses: u64,
}

/// One fetch at a time per package: later callers wait for the first.
#[derive(Default)]
struct SingleFlight {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl SingleFlight {
    fn lock_for(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().expect("single-flight lock");
        locks.entry(key.to_string()).or_default().clone()
    }

    fn done(&self, key: &str) {
        self.locks.lock().expect("single-flight lock").remove(key);
    }
}

#[derive(Default)]
struct PackageLru {
    /// Zip bytes and the tick of their last use.
    entries: HashMap<String, (Bytes, u64)>,
    bytes: u64,
    tick: u64,
}

/// The L2 tier: zips in memory, shared by the workers of one server.
pub struct PackageCache {
    origin: Arc<OriginStore>,
    capacity_bytes: u64,
    lru: Mutex<PackageLru>,
    fetches: SingleFlight,
    hits: AtomicU64,
    misses: AtomicU64,
    origin_failures: AtomicU64,
}

impl PackageCache {
    pub fn new(origin: Arc<OriginStore>, capacity_bytes: u64) -> PackageCache {
        PackageCache {
            origin,
            capacity_bytes,
            lru: Mutex::new(PackageLru::default()),
            fetches: SingleFlight::default(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            origin_failures: AtomicU64::new(0),
        }
    }

    fn lookup(&self, sha256: &str) -> Option<Bytes> {
        let mut lru = self.lru.lock().expect("package cache lock");
        lru.tick += 1;
        let tick = lru.tick;
        let (bytes, last_used) = lru.entries.get_mut(sha256)?;
        *last_used = tick;
        Some(bytes.clone())
    }

    /// Keeps a zip, evicting the least recently used ones to stay within capacity.
    /// A zip larger than the whole capacity is not kept.
    fn insert(&self, sha256: &str, bytes: Bytes) {
        let size = bytes.len() as u64;
        if size > self.capacity_bytes {
            return;
        }
        let mut lru = self.lru.lock().expect("package cache lock");
        while lru.bytes + size > self.capacity_bytes {
            let Some(oldest) = lru
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(key, _)| key.clone())
            else {
                break;
            };
            if let Some((evicted, _)) = lru.entries.remove(&oldest) {
                lru.bytes -= evicted.len() as u64;
            }
        }
        lru.tick += 1;
        let tick = lru.tick;
        if lru.entries.insert(sha256.to_string(), (bytes, tick)).is_none() {
            lru.bytes += size;
        }
    }

    /// Returns a package's zip from memory, or from the origin store.
    pub async fn get(&self, sha256: &str) -> Result<(Bytes, CacheTier), WorkerError> {
        if let Some(bytes) = self.lookup(sha256) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok((bytes, CacheTier::L2));
        }
        let lock = self.fetches.lock_for(sha256);
        let _guard = lock.lock().await;
        if let Some(bytes) = self.lookup(sha256) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok((bytes, CacheTier::L2));
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let fetched = self.origin.get_package(sha256).await;
        self.fetches.done(sha256);
        let bytes = fetched.map_err(|e| {
            self.origin_failures.fetch_add(1, Ordering::Relaxed);
            WorkerError::Code(format!("failed to fetch code package {sha256}: {e}"))
        })?;
        self.insert(sha256, bytes.clone());
        Ok((bytes, CacheTier::Origin))
    }

    /// Bytes of zips held in memory.
    pub fn size_bytes(&self) -> u64 {
        self.lru.lock().expect("package cache lock").bytes
    }
}

/// An unpacked package held by a slot. While a lease exists, L1 does not evict the
/// package, because a running slot has it mounted.
#[derive(Debug, Clone)]
pub struct CodeLease {
    path: PathBuf,
    _users: Arc<()>,
}

impl CodeLease {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

struct L1Entry {
    /// Unpacked size in bytes.
    size: u64,
    last_used: u64,
    /// Cloned into every lease; a count of 1 means no slot uses the package.
    users: Arc<()>,
}

#[derive(Default)]
struct L1Index {
    entries: HashMap<String, L1Entry>,
    bytes: u64,
    tick: u64,
}

/// The L1 tier of one worker: unpacked packages on local disk, keyed by sha256.
pub struct CodeCache {
    dir: PathBuf,
    packages: Arc<PackageCache>,
    capacity_bytes: u64,
    index: Mutex<L1Index>,
    fetches: SingleFlight,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl CodeCache {
    /// Opens the cache in `dir`. Packages left there by an earlier run are removed,
    /// because their sizes and uses are not known.
    pub fn new(dir: &Path, packages: Arc<PackageCache>, capacity_bytes: u64) -> Result<Self, WorkerError> {
        if dir.exists() {
            std::fs::remove_dir_all(dir)
                .map_err(|e| WorkerError::Io(format!("failed to clear {}: {e}", dir.display())))?;
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| WorkerError::Io(format!("failed to create {}: {e}", dir.display())))?;
        Ok(CodeCache {
            dir: dir.to_path_buf(),
            packages,
            capacity_bytes,
            index: Mutex::new(L1Index::default()),
            fetches: SingleFlight::default(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    /// Returns the hits and misses of each tier: L1 of this worker, L2 and L3 of the
    /// cache shared by every worker of the server.
    pub fn counts(&self) -> CacheCounts {
        let l2_misses = self.packages.misses.load(Ordering::Relaxed);
        let origin_misses = self.packages.origin_failures.load(Ordering::Relaxed);
        CacheCounts {
            l1_hits: self.hits.load(Ordering::Relaxed),
            l1_misses: self.misses.load(Ordering::Relaxed),
            l2_hits: self.packages.hits.load(Ordering::Relaxed),
            l2_misses,
            origin_hits: l2_misses.saturating_sub(origin_misses),
            origin_misses,
        }
    }

    /// Lists the sha256 of every package unpacked in this cache.
    pub fn cached_packages(&self) -> std::collections::HashSet<String> {
        self.index
            .lock()
            .expect("L1 index lock")
            .entries
            .keys()
            .cloned()
            .collect()
    }

    /// Bytes of unpacked packages on disk.
    pub fn size_bytes(&self) -> u64 {
        self.index.lock().expect("L1 index lock").bytes
    }

    fn lease(&self, sha256: &str) -> Option<CodeLease> {
        let mut index = self.index.lock().expect("L1 index lock");
        index.tick += 1;
        let tick = index.tick;
        let entry = index.entries.get_mut(sha256)?;
        entry.last_used = tick;
        Some(CodeLease {
            path: self.dir.join(sha256),
            _users: entry.users.clone(),
        })
    }

    /// Returns a lease on the unpacked package, fetching it from L2 or the origin
    /// store if this worker lacks it.
    pub async fn ensure(&self, sha256: &str) -> Result<(CodeLease, CacheTier), WorkerError> {
        if !sha256.chars().all(|c| c.is_ascii_hexdigit()) || sha256.len() != 64 {
            return Err(WorkerError::Io(format!("code sha256 '{sha256}' is not 64 hex digits")));
        }
        if let Some(lease) = self.lease(sha256) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok((lease, CacheTier::L1));
        }
        let lock = self.fetches.lock_for(sha256);
        let _guard = lock.lock().await;
        if let Some(lease) = self.lease(sha256) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok((lease, CacheTier::L1));
        }

        self.misses.fetch_add(1, Ordering::Relaxed);
        let result = self.fetch_and_unpack(sha256).await;
        self.fetches.done(sha256);
        let (size, tier) = result?;

        let users = Arc::new(());
        let lease = CodeLease {
            path: self.dir.join(sha256),
            _users: users.clone(),
        };
        let evicted = {
            let mut index = self.index.lock().expect("L1 index lock");
            index.tick += 1;
            let tick = index.tick;
            index.entries.insert(
                sha256.to_string(),
                L1Entry {
                    size,
                    last_used: tick,
                    users,
                },
            );
            index.bytes += size;
            evict_unused(&mut index, self.capacity_bytes)
        };
        for key in evicted {
            let path = self.dir.join(&key);
            tracing::debug!(sha256 = %key, "evicting an unpacked package from L1");
            tokio::task::spawn_blocking(move || std::fs::remove_dir_all(path));
        }
        Ok((lease, tier))
    }

    async fn fetch_and_unpack(&self, sha256: &str) -> Result<(u64, CacheTier), WorkerError> {
        let (bytes, tier) = self.packages.get(sha256).await?;
        let staging = self.dir.join(format!(".{sha256}.{}", uuid::Uuid::new_v4().simple()));
        let target = self.dir.join(sha256);
        let size = tokio::task::spawn_blocking(move || unpack(&bytes, &staging, &target))
            .await
            .map_err(|e| WorkerError::Io(format!("unpacking failed: {e}")))??;
        Ok((size, tier))
    }
}

/// Removes least recently used packages that no slot uses until the index fits in
/// `capacity`, and returns their keys. Packages in use stay even over capacity.
fn evict_unused(index: &mut L1Index, capacity: u64) -> Vec<String> {
    let mut evicted = Vec::new();
    while index.bytes > capacity {
        let candidate = index
            .entries
            .iter()
            .filter(|(_, entry)| Arc::strong_count(&entry.users) == 1)
            .min_by_key(|(_, entry)| entry.last_used)
            .map(|(key, _)| key.clone());
        let Some(key) = candidate else { break };
        if let Some(entry) = index.entries.remove(&key) {
            index.bytes -= entry.size;
        }
        evicted.push(key);
    }
    evicted
}

/// Unpacks into `staging`, makes everything readable by the slot's unprivileged user,
/// then renames it into place so a half-unpacked package is never used. Returns the
/// unpacked size in bytes.
fn unpack(bytes: &[u8], staging: &Path, target: &Path) -> Result<u64, WorkerError> {
    let io = |what: &str, e: std::io::Error| WorkerError::Io(format!("{what} {}: {e}", staging.display()));
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| WorkerError::Code(format!("stored code package is not a valid zip: {e}")))?;
    archive
        .extract(staging)
        .map_err(|e| WorkerError::Code(format!("failed to unpack the code package: {e}")))?;
    let mut size = 0;
    for entry in walk(staging).map_err(|e| io("failed to list", e))? {
        let metadata = std::fs::symlink_metadata(&entry).map_err(|e| io("failed to stat", e))?;
        if metadata.file_type().is_symlink() {
            continue;
        }
        size += metadata.len();
        let mode = metadata.permissions().mode();
        let readable = if metadata.is_dir() { mode | 0o755 } else { mode | 0o444 };
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(readable & 0o7777 & !0o022))
            .map_err(|e| io("failed to set permissions in", e))?;
    }
    std::fs::set_permissions(staging, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| io("failed to set permissions on", e))?;
    match std::fs::rename(staging, target) {
        Ok(()) => Ok(size),
        // Another process unpacked the same package first; its copy is identical.
        Err(_) if target.is_dir() => {
            let _ = std::fs::remove_dir_all(staging);
            Ok(size)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(size: u64, last_used: u64) -> L1Entry {
        L1Entry {
            size,
            last_used,
            users: Arc::new(()),
        }
    }

    #[test]
    fn eviction_takes_least_recently_used() {
        let mut index = L1Index::default();
        index.entries.insert("old".into(), entry(60, 1));
        index.entries.insert("new".into(), entry(60, 2));
        index.bytes = 120;
        assert_eq!(evict_unused(&mut index, 100), ["old"]);
        assert_eq!(index.bytes, 60);
        assert!(index.entries.contains_key("new"));
    }

    #[test]
    fn eviction_skips_packages_in_use() {
        let mut index = L1Index::default();
        let in_use = entry(60, 1);
        let _lease = in_use.users.clone();
        index.entries.insert("busy".into(), in_use);
        index.entries.insert("idle".into(), entry(60, 2));
        index.bytes = 120;
        assert_eq!(evict_unused(&mut index, 100), ["idle"]);
        assert!(index.entries.contains_key("busy"));
    }

    #[test]
    fn eviction_stops_when_all_in_use() {
        let mut index = L1Index::default();
        let busy = entry(200, 1);
        let _lease = busy.users.clone();
        index.entries.insert("busy".into(), busy);
        index.bytes = 200;
        assert!(evict_unused(&mut index, 100).is_empty());
        assert_eq!(index.bytes, 200);
    }

    #[tokio::test]
    async fn l2_serves_second_fetch_and_evicts_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let origin = Arc::new(OriginStore::local(dir.path()).unwrap());
        let cache = PackageCache::new(origin, 10);
        cache.insert("a", Bytes::from_static(b"123456"));
        cache.insert("b", Bytes::from_static(b"7890"));
        assert_eq!(cache.size_bytes(), 10);
        assert!(cache.lookup("a").is_some());
        cache.insert("c", Bytes::from_static(b"xyz"));
        assert!(cache.lookup("b").is_none(), "b was least recently used");
        assert!(cache.lookup("a").is_some());
        assert!(cache.lookup("c").is_some());
        cache.insert("huge", Bytes::from(vec![0u8; 11]));
        assert!(cache.lookup("huge").is_none(), "a zip over capacity is not kept");
    }
}
