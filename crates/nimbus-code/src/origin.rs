//! The origin store: the durable copy of every code package and uploaded code object.
//!
//! Layout under the store's base prefix:
//! - `packages/{sha256}.zip`: validated packages, addressed by the SHA-256 of the zip.
//! - `objects/{namespace}/{bucket}/{key}/{version_id}`: code objects uploaded with
//!   `PUT /code-objects/{bucket}/{key}`, kept as an S3-style versioned bucket.

use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::{Path, PathPart};
use object_store::{ObjectStore, PutPayload};
use sha2::{Digest, Sha256};
use url::Url;

use crate::package::ValidatedPackage;

/// Maximum length in bytes of a percent-encoded key used as a path part. Longer keys
/// are stored under a digest of the key, because ext4 and most other file systems
/// allow at most 255 bytes per file name, and percent-encoding can triple a
/// 1024-byte key.
const MAX_ENCODED_KEY_PART: usize = 200;

/// Maximum length in bytes of a namespace (account id), which is one path part.
const MAX_NAMESPACE_LEN: usize = 128;

/// Length of a version id: 16 hex digits of nanoseconds and 8 random hex digits.
const VERSION_ID_LEN: usize = 24;

/// Nanosecond timestamp of the last version id made by this process, so that ids made
/// here increase even if the system clock steps back.
static LAST_VERSION_NANOS: AtomicU64 = AtomicU64::new(0);

/// One stored version of a code object.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ObjectVersion {
    pub bucket: String,
    pub key: String,
    /// Time-ordered id: the lexicographically greatest id of a key is its latest version.
    pub version_id: String,
    /// Object size in bytes.
    pub size: u64,
    /// Lowercase hex SHA-256 of the object bytes.
    pub sha256: String,
}

/// Errors from the origin store.
#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    #[error(
        "invalid bucket name '{}': {reason}; bucket names are 3 to 63 characters of lowercase letters, digits, '.' and '-', starting and ending with a letter or digit",
        bucket.escape_debug()
    )]
    InvalidBucket { bucket: String, reason: String },

    #[error(
        "invalid object key '{}': {reason}; keys are 1 to 1024 bytes of UTF-8 without control characters",
        key.escape_debug()
    )]
    InvalidKey { key: String, reason: String },

    #[error("invalid namespace '{}': {reason}", namespace.escape_debug())]
    InvalidNamespace { namespace: String, reason: String },

    #[error("invalid origin store URL '{url}': {reason}; use file:///absolute/dir or s3://bucket[/prefix]")]
    InvalidUrl { url: String, reason: String },

    #[error("failed to create origin store directory '{}': {source}", path.display())]
    LocalDirectory { path: PathBuf, source: std::io::Error },

    #[error("{}", object_not_found_message(bucket, key, version_id.as_deref()))]
    ObjectNotFound {
        bucket: String,
        key: String,
        version_id: Option<String>,
    },

    #[error("code package with sha256 '{}' not found in the origin store", sha256.escape_debug())]
    PackageNotFound { sha256: String },

    #[error("origin store object '{location}' is corrupt: its sha256 is {actual_sha256}, expected {expected_sha256}")]
    CorruptPackage {
        location: String,
        expected_sha256: String,
        actual_sha256: String,
    },

    #[error("origin store request failed: {0}")]
    Backend(#[from] object_store::Error),
}

impl OriginError {
    /// Returns whether the requested package, object or version does not exist (HTTP 404).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            OriginError::ObjectNotFound { .. } | OriginError::PackageNotFound { .. }
        )
    }

    /// Returns whether the caller passed an invalid bucket, key, namespace or URL
    /// (HTTP 400). The remaining errors are server faults.
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            OriginError::InvalidBucket { .. }
                | OriginError::InvalidKey { .. }
                | OriginError::InvalidNamespace { .. }
                | OriginError::InvalidUrl { .. }
        )
    }
}

fn object_not_found_message(bucket: &str, key: &str, version_id: Option<&str>) -> String {
    let bucket = bucket.escape_debug();
    let key = key.escape_debug();
    match version_id {
        Some(version_id) => format!(
            "version '{}' of code object '{key}' in bucket '{bucket}' not found; upload it first with PUT /code-objects/{bucket}/{key} and use the version_id it returns",
            version_id.escape_debug()
        ),
        None => format!(
            "code object '{key}' in bucket '{bucket}' not found; upload it first with PUT /code-objects/{bucket}/{key}"
        ),
    }
}

/// Checks a bucket name against the S3 naming rules: 3 to 63 characters of lowercase
/// letters, digits, '.' and '-', starting and ending with a letter or digit.
pub fn validate_bucket_name(bucket: &str) -> Result<(), OriginError> {
    let invalid = |reason: &str| {
        Err(OriginError::InvalidBucket {
            bucket: bucket.to_owned(),
            reason: reason.to_owned(),
        })
    };

    if !(3..=63).contains(&bucket.len()) {
        return invalid(&format!("it is {} characters long", bucket.len()));
    }
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-';
    if !bucket.chars().all(allowed) {
        return invalid("it contains a character other than a lowercase letter, digit, '.' or '-'");
    }
    let alphanumeric = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !alphanumeric(bucket.chars().next()) || !alphanumeric(bucket.chars().last()) {
        return invalid("it must start and end with a letter or digit");
    }
    Ok(())
}

/// Checks an object key: 1 to 1024 bytes of UTF-8 without control characters.
pub fn validate_object_key(key: &str) -> Result<(), OriginError> {
    let invalid = |reason: &str| {
        Err(OriginError::InvalidKey {
            key: key.to_owned(),
            reason: reason.to_owned(),
        })
    };

    if key.is_empty() {
        return invalid("it is empty");
    }
    if key.len() > 1024 {
        return invalid(&format!("it is {} bytes long", key.len()));
    }
    if key.chars().any(char::is_control) {
        return invalid("it contains a control character");
    }
    Ok(())
}

fn validate_namespace(namespace: &str) -> Result<(), OriginError> {
    let invalid = |reason: &str| {
        Err(OriginError::InvalidNamespace {
            namespace: namespace.to_owned(),
            reason: reason.to_owned(),
        })
    };

    if namespace.is_empty() {
        return invalid("it is empty");
    }
    if namespace.len() > MAX_NAMESPACE_LEN {
        return invalid(&format!(
            "it is {} bytes long, over the {MAX_NAMESPACE_LEN}-byte limit",
            namespace.len()
        ));
    }
    if namespace.chars().any(char::is_control) {
        return invalid("it contains a control character");
    }
    Ok(())
}

/// Returns whether `sha256` has the form of a lowercase hex SHA-256 digest.
fn is_sha256_hex(sha256: &str) -> bool {
    sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn is_version_id(version_id: &str) -> bool {
    version_id.len() == VERSION_ID_LEN
        && version_id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Makes a new version id: 16 hex digits of nanoseconds since the Unix epoch and 8
/// random hex digits.
///
/// NOTE: ids only increase within one process. Two processes writing the same key
/// rely on their clocks, and a later write from a process whose clock is behind sorts
/// as the older version.
fn new_version_id() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos() as u64)
        .unwrap_or(0);
    let previous = LAST_VERSION_NANOS
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| Some(now.max(last + 1)))
        .expect("the update closure always returns Some");
    let nanos = now.max(previous + 1);
    format!("{nanos:016x}{:08x}", rand::random::<u32>())
}

/// Object storage for code packages and code objects, backed by a local directory or
/// an S3-compatible service.
#[derive(Debug, Clone)]
pub struct OriginStore {
    store: Arc<dyn ObjectStore>,
    /// Path prefix of every object, empty for the local backend.
    prefix: Path,
    description: String,
}

impl OriginStore {
    /// Opens a store in the local directory `dir`, creating it if it does not exist.
    pub fn local(dir: &FsPath) -> Result<Self, OriginError> {
        std::fs::create_dir_all(dir).map_err(|source| OriginError::LocalDirectory {
            path: dir.to_owned(),
            source,
        })?;
        let store = LocalFileSystem::new_with_prefix(dir)?;
        let shown_dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
        Ok(OriginStore {
            store: Arc::new(store),
            prefix: Path::default(),
            description: format!("local directory {}", shown_dir.display()),
        })
    }

    /// Opens a store from a URL: `file:///absolute/dir` or `s3://bucket[/prefix]`.
    ///
    /// S3 settings come from the environment through [`AmazonS3Builder::from_env`]:
    /// `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT`), `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_REGION` and `AWS_ALLOW_HTTP`. An endpoint that
    /// starts with `http://` allows plain HTTP without `AWS_ALLOW_HTTP`.
    pub fn from_url(url: &str) -> Result<Self, OriginError> {
        let invalid = |reason: String| OriginError::InvalidUrl {
            url: url.to_owned(),
            reason,
        };
        let parsed = Url::parse(url).map_err(|err| invalid(err.to_string()))?;

        match parsed.scheme() {
            "file" => {
                let dir = parsed
                    .to_file_path()
                    .map_err(|()| invalid("it is not an absolute local path".to_owned()))?;
                OriginStore::local(&dir)
            }
            "s3" => {
                let bucket = parsed
                    .host_str()
                    .filter(|host| !host.is_empty())
                    .ok_or_else(|| invalid("it has no bucket name".to_owned()))?;
                validate_bucket_name(bucket).map_err(|err| invalid(err.to_string()))?;
                let prefix_text = parsed.path().trim_matches('/');
                let prefix = Path::parse(prefix_text).map_err(|err| invalid(err.to_string()))?;
                Self::s3(bucket, prefix)
            }
            other => Err(invalid(format!("unsupported scheme '{other}'"))),
        }
    }

    fn s3(bucket: &str, prefix: Path) -> Result<Self, OriginError> {
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        let endpoint = builder.get_config_value(&AmazonS3ConfigKey::Endpoint);
        if endpoint
            .as_deref()
            .is_some_and(|endpoint| endpoint.starts_with("http://"))
        {
            builder = builder.with_allow_http(true);
        }
        let store = builder.build()?;

        let mut description = format!("s3://{bucket}");
        if !prefix.as_ref().is_empty() {
            description = format!("{description}/{prefix}");
        }
        if let Some(endpoint) = endpoint {
            description = format!("{description} at endpoint {endpoint}");
        }
        Ok(OriginStore {
            store: Arc::new(store),
            prefix,
            description,
        })
    }

    /// Returns where the store keeps its data, such as "local directory /x/origin" or
    /// "s3://bucket/prefix", for the startup log.
    pub fn describe(&self) -> String {
        self.description.clone()
    }

    fn package_path(&self, sha256: &str) -> Path {
        self.prefix.child("packages").child(format!("{sha256}.zip"))
    }

    /// Path of the directory that contains every version of one object.
    ///
    /// The key is percent-encoded into one path part, so '/' in a key never creates a
    /// directory and keys "a" and "a/b" never collide. A key whose encoding is longer
    /// than [`MAX_ENCODED_KEY_PART`] is stored under '~' followed by the SHA-256 of the
    /// key instead. `PathPart::from` in object_store 0.12 always percent-encodes '~', so
    /// the two forms cannot collide.
    fn object_dir(&self, namespace: &str, bucket: &str, key: &str) -> Path {
        let bucket_dir = self.prefix.child("objects").child(namespace).child(bucket);

        let encoded = PathPart::from(key);
        if encoded.as_ref().len() <= MAX_ENCODED_KEY_PART {
            return bucket_dir.child(encoded);
        }
        let digest_name = format!("~{}", hex::encode(Sha256::digest(key.as_bytes())));
        let digest_part = PathPart::parse(&digest_name).expect("'~' and hex digits form a valid path part");
        bucket_dir.child(digest_part)
    }

    /// Stores a validated package at `packages/{sha256}.zip` and returns that location,
    /// relative to the store's base prefix.
    ///
    /// The write is skipped when the package is already stored. Two concurrent writes of
    /// the same package are harmless because both write the same bytes.
    pub async fn put_package(&self, package: &ValidatedPackage) -> Result<String, OriginError> {
        let location = format!("packages/{}.zip", package.sha256);
        let path = self.package_path(&package.sha256);

        match self.store.head(&path).await {
            Ok(_) => {
                tracing::debug!(sha256 = %package.sha256, "code package already in the origin store");
                return Ok(location);
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(err) => return Err(err.into()),
        }

        self.store
            .put(&path, PutPayload::from_bytes(package.bytes.clone()))
            .await?;
        tracing::info!(sha256 = %package.sha256, size = package.size, "stored code package in the origin store");
        Ok(location)
    }

    /// Reads the package with the given SHA-256 and checks that its bytes match it.
    pub async fn get_package(&self, sha256: &str) -> Result<Bytes, OriginError> {
        let not_found = || OriginError::PackageNotFound {
            sha256: sha256.to_owned(),
        };
        if !is_sha256_hex(sha256) {
            return Err(not_found());
        }

        let path = self.package_path(sha256);
        let bytes = match self.store.get(&path).await {
            Ok(result) => result.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => return Err(not_found()),
            Err(err) => return Err(err.into()),
        };

        let actual_sha256 = hex::encode(Sha256::digest(&bytes));
        if actual_sha256 != sha256 {
            return Err(OriginError::CorruptPackage {
                location: path.to_string(),
                expected_sha256: sha256.to_owned(),
                actual_sha256,
            });
        }
        Ok(bytes)
    }

    /// Stores `bytes` as a new version of `key` in `bucket` of account `namespace`.
    pub async fn put_object(
        &self,
        namespace: &str,
        bucket: &str,
        key: &str,
        bytes: Bytes,
    ) -> Result<ObjectVersion, OriginError> {
        validate_namespace(namespace)?;
        validate_bucket_name(bucket)?;
        validate_object_key(key)?;

        let version_id = new_version_id();
        let path = self.object_dir(namespace, bucket, key).child(version_id.as_str());
        let version = ObjectVersion {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            version_id,
            size: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(&bytes)),
        };

        self.store.put(&path, PutPayload::from_bytes(bytes)).await?;
        tracing::info!(
            namespace,
            bucket,
            key,
            version_id = %version.version_id,
            size = version.size,
            "stored code object in the origin store"
        );
        Ok(version)
    }

    /// Reads one version of an object, the latest when `version_id` is `None`.
    pub async fn get_object(
        &self,
        namespace: &str,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<(ObjectVersion, Bytes), OriginError> {
        validate_namespace(namespace)?;
        validate_bucket_name(bucket)?;
        validate_object_key(key)?;
        let not_found = || OriginError::ObjectNotFound {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            version_id: version_id.map(str::to_owned),
        };

        let dir = self.object_dir(namespace, bucket, key);
        let version_id = match version_id {
            Some(version_id) if is_version_id(version_id) => version_id.to_owned(),
            // An id of another form was never issued by `put_object`.
            Some(_) => return Err(not_found()),
            None => self.latest_version_id(&dir).await?.ok_or_else(not_found)?,
        };

        let bytes = match self.store.get(&dir.child(version_id.as_str())).await {
            Ok(result) => result.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => return Err(not_found()),
            Err(err) => return Err(err.into()),
        };
        let version = ObjectVersion {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            version_id,
            size: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(&bytes)),
        };
        Ok((version, bytes))
    }

    /// Returns the greatest version id stored under `dir`, or `None` if there is none.
    async fn latest_version_id(&self, dir: &Path) -> Result<Option<String>, OriginError> {
        let mut listing = self.store.list(Some(dir));
        let mut latest: Option<String> = None;
        while let Some(meta) = listing.try_next().await? {
            // Only direct children named like a version id count. This skips anything
            // else a backend may list, such as temporary files of unfinished writes.
            let Some(name) = meta.location.prefix_match(dir).and_then(|mut rest| {
                let first = rest.next()?;
                rest.next().is_none().then_some(first)
            }) else {
                continue;
            };
            let name = name.as_ref();
            let is_newer = match latest.as_deref() {
                Some(current) => name > current,
                None => true,
            };
            if is_version_id(name) && is_newer {
                latest = Some(name.to_owned());
            }
        }
        Ok(latest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::{validate_zip, PackageLimits};
    use std::io::{Cursor, Write};
    use zip::write::SimpleFileOptions;
    use zip::ZipWriter;

    const ACCOUNT: &str = "123456789012";

    fn sample_package(content: &[u8]) -> ValidatedPackage {
        let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
        writer.start_file("index.py", SimpleFileOptions::default()).unwrap();
        writer.write_all(content).unwrap();
        let zip = Bytes::from(writer.finish().unwrap().into_inner());
        validate_zip(zip, &PackageLimits::default()).unwrap()
    }

    fn local_store() -> (tempfile::TempDir, OriginStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = OriginStore::local(&dir.path().join("origin")).unwrap();
        (dir, store)
    }

    #[test]
    fn bucket_names_follow_s3_rules() {
        for good in ["abc", "my-bucket.2024", "0bucket9", &"a".repeat(63)] {
            assert!(validate_bucket_name(good).is_ok(), "{good}");
        }
        for bad in [
            "ab",
            &"a".repeat(64),
            "My-Bucket",
            "my_bucket",
            "-bucket",
            "bucket.",
            "buck et",
        ] {
            let err = validate_bucket_name(bad).unwrap_err();
            assert!(
                matches!(&err, OriginError::InvalidBucket { bucket, .. } if bucket == bad),
                "{bad}: {err:?}"
            );
            assert!(err.is_invalid_input());
            assert!(err.to_string().contains(&format!("'{bad}'")), "{err}");
        }
    }

    #[test]
    fn object_keys_are_checked() {
        for good in ["a", "dir/file.zip", "ünïcode/ключ", &"k".repeat(1024)] {
            assert!(validate_object_key(good).is_ok(), "{good}");
        }
        for bad in ["", "a\nb", "tab\there", &"k".repeat(1025)] {
            let err = validate_object_key(bad).unwrap_err();
            assert!(
                matches!(&err, OriginError::InvalidKey { key, .. } if key == bad),
                "{bad:?}: {err:?}"
            );
            assert!(err.is_invalid_input());
        }
    }

    #[test]
    fn version_ids_increase() {
        let ids: Vec<String> = (0..1000).map(|_| new_version_id()).collect();

        for pair in ids.windows(2) {
            assert!(pair[0] < pair[1], "{} !< {}", pair[0], pair[1]);
        }
        assert!(ids.iter().all(|id| is_version_id(id)), "{ids:?}");
    }

    #[test]
    fn from_url_rejects_bad_urls() {
        for url in [
            "not a url",
            "http://example.com/x",
            "s3:///prefix",
            "s3://Bad_Bucket/x",
            "s3://bucket/a//b",
        ] {
            let err = OriginStore::from_url(url).unwrap_err();
            assert!(
                matches!(&err, OriginError::InvalidUrl { url: shown, .. } if shown == url),
                "{url}: {err:?}"
            );
            assert!(err.to_string().contains(url), "{err}");
        }
    }

    #[test]
    fn from_url_opens_file_url() {
        let dir = tempfile::tempdir().unwrap();
        let url = Url::from_directory_path(dir.path().join("origin")).unwrap();

        let store = OriginStore::from_url(url.as_str()).unwrap();

        assert!(dir.path().join("origin").is_dir());
        assert!(
            store.describe().starts_with("local directory /"),
            "{}",
            store.describe()
        );
    }

    #[tokio::test]
    async fn package_round_trip() {
        let (_dir, store) = local_store();
        let package = sample_package(b"print('hello')");

        let location = store.put_package(&package).await.unwrap();
        let bytes = store.get_package(&package.sha256).await.unwrap();

        assert_eq!(location, format!("packages/{}.zip", package.sha256));
        assert_eq!(bytes, package.bytes);
    }

    #[tokio::test]
    async fn put_package_twice_is_idempotent() {
        let (dir, store) = local_store();
        let package = sample_package(b"print('hello')");

        let first = store.put_package(&package).await.unwrap();
        let second = store.put_package(&package).await.unwrap();

        assert_eq!(first, second);
        let stored: Vec<_> = std::fs::read_dir(dir.path().join("origin/packages")).unwrap().collect();
        assert_eq!(stored.len(), 1);
        assert_eq!(store.get_package(&package.sha256).await.unwrap(), package.bytes);
    }

    #[tokio::test]
    async fn get_package_unknown_is_not_found() {
        let (_dir, store) = local_store();
        let missing = "0".repeat(64);

        for sha256 in [missing.as_str(), "../../etc/passwd"] {
            let err = store.get_package(sha256).await.unwrap_err();
            assert!(
                matches!(&err, OriginError::PackageNotFound { sha256: shown } if shown == sha256),
                "{err:?}"
            );
            assert!(err.is_not_found());
            assert!(err.to_string().contains(sha256), "{err}");
        }
    }

    #[tokio::test]
    async fn get_package_detects_corruption() {
        let (dir, store) = local_store();
        let package = sample_package(b"print('hello')");
        store.put_package(&package).await.unwrap();
        let file = dir.path().join(format!("origin/packages/{}.zip", package.sha256));
        std::fs::write(&file, b"tampered").unwrap();

        let err = store.get_package(&package.sha256).await.unwrap_err();

        assert!(matches!(err, OriginError::CorruptPackage { .. }), "{err:?}");
        assert!(!err.is_not_found());
        assert!(!err.is_invalid_input());
    }

    #[tokio::test]
    async fn object_versions_keep_history() {
        let (_dir, store) = local_store();

        let first = store
            .put_object(ACCOUNT, "code", "app.zip", Bytes::from_static(b"one"))
            .await
            .unwrap();
        let second = store
            .put_object(ACCOUNT, "code", "app.zip", Bytes::from_static(b"two"))
            .await
            .unwrap();
        let (latest, latest_bytes) = store.get_object(ACCOUNT, "code", "app.zip", None).await.unwrap();
        let (old, old_bytes) = store
            .get_object(ACCOUNT, "code", "app.zip", Some(&first.version_id))
            .await
            .unwrap();

        assert!(first.version_id < second.version_id);
        assert_eq!(latest, second);
        assert_eq!(latest_bytes, Bytes::from_static(b"two"));
        assert_eq!(old, first);
        assert_eq!(old_bytes, Bytes::from_static(b"one"));
        assert_eq!(first.size, 3);
        assert_eq!(first.sha256, hex::encode(Sha256::digest(b"one")));
    }

    #[tokio::test]
    async fn object_keys_with_slash_do_not_collide() {
        let (_dir, store) = local_store();

        store
            .put_object(ACCOUNT, "code", "a", Bytes::from_static(b"a"))
            .await
            .unwrap();
        store
            .put_object(ACCOUNT, "code", "a/b", Bytes::from_static(b"a/b"))
            .await
            .unwrap();
        store
            .put_object(ACCOUNT, "code", "a%2Fb", Bytes::from_static(b"a%2Fb"))
            .await
            .unwrap();

        for key in ["a", "a/b", "a%2Fb"] {
            let (version, bytes) = store.get_object(ACCOUNT, "code", key, None).await.unwrap();
            assert_eq!(version.key, key);
            assert_eq!(bytes, Bytes::from(key.to_owned()), "{key}");
        }
    }

    #[tokio::test]
    async fn object_namespaces_are_separate() {
        let (_dir, store) = local_store();
        store
            .put_object(ACCOUNT, "code", "app.zip", Bytes::from_static(b"x"))
            .await
            .unwrap();

        let err = store
            .get_object("999999999999", "code", "app.zip", None)
            .await
            .unwrap_err();

        assert!(matches!(err, OriginError::ObjectNotFound { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn object_long_key_round_trip() {
        let (_dir, store) = local_store();
        // Every '%' encodes to three bytes, so this key is far over the file name limit.
        let key = "%".repeat(1024);

        // The name the long key is stored under, used here as a short key.
        let digest_key = format!("~{}", hex::encode(Sha256::digest(key.as_bytes())));

        let put = store
            .put_object(ACCOUNT, "code", &key, Bytes::from_static(b"long"))
            .await
            .unwrap();
        store
            .put_object(ACCOUNT, "code", &digest_key, Bytes::from_static(b"digest"))
            .await
            .unwrap();
        let (got, bytes) = store.get_object(ACCOUNT, "code", &key, None).await.unwrap();
        let (_, digest_bytes) = store.get_object(ACCOUNT, "code", &digest_key, None).await.unwrap();

        assert_eq!(got, put);
        assert_eq!(bytes, Bytes::from_static(b"long"));
        assert_eq!(digest_bytes, Bytes::from_static(b"digest"));
    }

    #[tokio::test]
    async fn get_object_unknown_is_not_found() {
        let (_dir, store) = local_store();
        let put = store
            .put_object(ACCOUNT, "code", "app.zip", Bytes::from_static(b"x"))
            .await
            .unwrap();
        let unknown_version = format!("{}{}", &put.version_id[..16], "ffffffff");

        let cases = [
            ("other-bucket", "app.zip", None),
            ("code", "missing.zip", None),
            ("code", "app.zip", Some(unknown_version.as_str())),
            ("code", "app.zip", Some("../../../etc/passwd")),
        ];
        for (bucket, key, version_id) in cases {
            let err = store.get_object(ACCOUNT, bucket, key, version_id).await.unwrap_err();

            assert!(
                matches!(&err, OriginError::ObjectNotFound { bucket: b, key: k, version_id: v }
                    if b == bucket && k == key && v.as_deref() == version_id),
                "{err:?}"
            );
            assert!(err.is_not_found());
            let message = err.to_string();
            assert!(message.contains(&format!("'{bucket}'")), "{message}");
            assert!(message.contains(&format!("'{key}'")), "{message}");
            assert!(
                message.contains(&format!("PUT /code-objects/{bucket}/{key}")),
                "{message}"
            );
            if let Some(version_id) = version_id {
                assert!(message.contains(version_id), "{message}");
            }
        }
    }

    #[tokio::test]
    async fn put_object_rejects_invalid_input() {
        let (_dir, store) = local_store();

        let bad_bucket = store.put_object(ACCOUNT, "B", "k", Bytes::new()).await.unwrap_err();
        let bad_key = store.put_object(ACCOUNT, "code", "", Bytes::new()).await.unwrap_err();
        let bad_namespace = store.put_object("", "code", "k", Bytes::new()).await.unwrap_err();

        assert!(
            matches!(bad_bucket, OriginError::InvalidBucket { .. }),
            "{bad_bucket:?}"
        );
        assert!(matches!(bad_key, OriginError::InvalidKey { .. }), "{bad_key:?}");
        assert!(
            matches!(bad_namespace, OriginError::InvalidNamespace { .. }),
            "{bad_namespace:?}"
        );
    }
}
