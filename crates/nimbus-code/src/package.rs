//! Validation of uploaded code packages (zip files).
//!
//! A package is accepted only if every entry would extract inside the package root:
//! no absolute names, no `..` components, and no symlink that resolves outside the root.
//! The unzipped size is measured by decompressing every entry, so a zip whose headers
//! understate the sizes is still caught.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{self, Cursor, Read};

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use zip::ZipArchive;

/// File type bits of a unix mode (`S_IFMT`) and the values for directories and symlinks.
const S_IFMT: u32 = 0o170_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFLNK: u32 = 0o120_000;

/// Maximum number of symlinks followed while resolving one symlink target, the same
/// as Linux's `MAXSYMLINKS`. A chain longer than this fails to resolve on Linux (ELOOP),
/// so it cannot reach outside the package either.
const MAX_SYMLINK_HOPS: usize = 40;

/// Size limits for code packages, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackageLimits {
    /// Maximum size of a zip uploaded inline (base64 in the request body).
    pub max_zipped_bytes: u64,
    /// Maximum total size of all entries after decompression.
    pub max_unzipped_bytes: u64,
}

impl Default for PackageLimits {
    /// Returns the AWS Lambda limits: 50 MiB zipped for inline uploads, 250 MiB unzipped.
    fn default() -> Self {
        PackageLimits {
            max_zipped_bytes: 50 * 1024 * 1024,
            max_unzipped_bytes: 250 * 1024 * 1024,
        }
    }
}

/// A zip file that passed [`validate_zip`], with its digest and file list.
#[derive(Debug, Clone)]
pub struct ValidatedPackage {
    /// The zip as uploaded.
    pub bytes: Bytes,
    /// Lowercase hex SHA-256 of the zip bytes.
    pub sha256: String,
    /// Zip size in bytes.
    pub size: u64,
    /// Total size in bytes of all entries after decompression, symlink targets included.
    pub unzipped_size: u64,
    /// Normalized relative paths of regular files and symlinks: '/' separated, without
    /// a leading "./" and without empty or "." components.
    pub files: BTreeSet<String>,
}

impl ValidatedPackage {
    /// Returns whether the package has a regular file or symlink at `path`.
    ///
    /// `path` is compared after the same normalization as the entry names, so "./a/b.py"
    /// and "a//b.py" both match the entry "a/b.py".
    pub fn contains_file(&self, path: &str) -> bool {
        match split_relative_path(path) {
            Some(components) => self.files.contains(&components.join("/")),
            None => false,
        }
    }
}

/// Reasons a code package is rejected.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("code package is not valid base64 ({reason}); encode the zip file with standard base64")]
    NotBase64 { reason: String },

    #[error("code package is not a valid zip file: {reason}")]
    NotZip { reason: String },

    #[error("code package contains no files, only directories or nothing; add at least one file to the zip")]
    Empty,

    #[error(
        "code package entry '{}' escapes the package root; entries must be relative paths without '..'",
        entry.escape_debug()
    )]
    EntryEscapes { entry: String },

    #[error(
        "code package symlink '{}' points to '{}', outside the package root; symlink targets must be relative paths that stay inside the package",
        entry.escape_debug(),
        target.escape_debug()
    )]
    SymlinkEscapes { entry: String, target: String },

    #[error(
        "code package is {size} bytes zipped, over the {limit}-byte limit for inline uploads; upload it with PUT /code-objects/{{bucket}}/{{key}} and reference it with s3_bucket and s3_key"
    )]
    TooLargeZipped { size: u64, limit: u64 },

    #[error(
        "code package is more than {limit} bytes unzipped, over the {limit}-byte limit for unzipped code; remove files from the package to make it smaller"
    )]
    TooLargeUnzipped { limit: u64 },
}

impl PackageError {
    /// Returns whether the package was rejected for its size (HTTP 413) rather than its
    /// content (HTTP 400).
    pub fn is_too_large(&self) -> bool {
        matches!(
            self,
            PackageError::TooLargeZipped { .. } | PackageError::TooLargeUnzipped { .. }
        )
    }
}

/// Decodes an inline zip upload from standard base64.
///
/// Padding is optional and ASCII whitespace anywhere is ignored, so the wrapped output
/// of the `base64` tool is accepted. The decoded size is checked against
/// `limits.max_zipped_bytes` before anything is decoded.
pub fn decode_base64_zip(encoded: &str, limits: &PackageLimits) -> Result<Bytes, PackageError> {
    let compact: Vec<u8> = encoded.bytes().filter(|byte| !byte.is_ascii_whitespace()).collect();

    let size = decoded_base64_len(&compact);
    if size > limits.max_zipped_bytes {
        return Err(PackageError::TooLargeZipped {
            size,
            limit: limits.max_zipped_bytes,
        });
    }

    let engine = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let decoded = engine.decode(&compact).map_err(|err| PackageError::NotBase64 {
        reason: err.to_string(),
    })?;
    Ok(Bytes::from(decoded))
}

/// Returns the number of bytes that `compact` (base64 without whitespace) decodes to.
/// For invalid input the result is only an estimate, and decoding reports the error.
fn decoded_base64_len(compact: &[u8]) -> u64 {
    let unpadded = compact.len() - compact.iter().rev().take_while(|&&b| b == b'=').count();
    let unpadded = unpadded as u64;
    let tail = match unpadded % 4 {
        2 => 1,
        3 => 2,
        _ => 0,
    };
    unpadded / 4 * 3 + tail
}

/// The kind of a zip entry, from its unix mode or, without one, its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EntryKind {
    Directory,
    Symlink,
    File,
}

/// Validates a zip file and returns it with its SHA-256 and file list.
///
/// `limits.max_zipped_bytes` is not applied here because packages uploaded as code
/// objects may be larger than the inline limit. Every entry is decompressed, so the
/// unzipped limit applies to the real sizes and a corrupt entry (bad CRC or deflate
/// stream) is reported as [`PackageError::NotZip`].
pub fn validate_zip(bytes: Bytes, limits: &PackageLimits) -> Result<ValidatedPackage, PackageError> {
    let mut archive = ZipArchive::new(Cursor::new(bytes.clone())).map_err(|err| PackageError::NotZip {
        reason: err.to_string(),
    })?;

    let mut files = BTreeSet::new();
    // Normalized symlink path -> target as stored in the zip.
    let mut symlinks: BTreeMap<String, String> = BTreeMap::new();
    let mut unzipped_size: u64 = 0;

    for index in 0..archive.len() {
        let mut entry = archive.by_index(index).map_err(|err| PackageError::NotZip {
            reason: format!("failed to read entry {index}: {err}"),
        })?;
        let name = entry.name().to_owned();
        let components =
            split_relative_path(&name).ok_or_else(|| PackageError::EntryEscapes { entry: name.clone() })?;

        let kind = match entry.unix_mode().map(|mode| mode & S_IFMT) {
            Some(S_IFLNK) => EntryKind::Symlink,
            Some(S_IFDIR) => EntryKind::Directory,
            _ if entry.is_dir() => EntryKind::Directory,
            _ => EntryKind::File,
        };

        let remaining = limits.max_unzipped_bytes - unzipped_size;
        let mut limited = (&mut entry).take(remaining.saturating_add(1));
        let read_result = match kind {
            EntryKind::Symlink => {
                let mut target = Vec::new();
                limited.read_to_end(&mut target).map(|size| (size as u64, Some(target)))
            }
            EntryKind::Directory | EntryKind::File => io::copy(&mut limited, &mut io::sink()).map(|size| (size, None)),
        };
        let (entry_size, target) = read_result.map_err(|err| PackageError::NotZip {
            reason: format!("failed to decompress entry '{}': {err}", name.escape_debug()),
        })?;
        if entry_size > remaining {
            return Err(PackageError::TooLargeUnzipped {
                limit: limits.max_unzipped_bytes,
            });
        }
        unzipped_size += entry_size;

        if kind == EntryKind::Directory {
            continue;
        }
        if components.is_empty() {
            return Err(PackageError::NotZip {
                reason: format!("entry {index} is a file with an empty name '{}'", name.escape_debug()),
            });
        }

        let path = components.join("/");
        if let Some(target) = target {
            let target = String::from_utf8(target).map_err(|_| PackageError::NotZip {
                reason: format!("symlink entry '{}' has a target that is not UTF-8", name.escape_debug()),
            })?;
            symlinks.insert(path.clone(), target);
        }
        files.insert(path);
    }

    if files.is_empty() {
        return Err(PackageError::Empty);
    }
    for (path, target) in &symlinks {
        if !symlink_stays_inside(path, target, &symlinks) {
            return Err(PackageError::SymlinkEscapes {
                entry: path.clone(),
                target: target.clone(),
            });
        }
    }

    let sha256 = hex::encode(Sha256::digest(&bytes));
    Ok(ValidatedPackage {
        size: bytes.len() as u64,
        bytes,
        sha256,
        unzipped_size,
        files,
    })
}

/// Splits a relative path into its normal components, dropping empty and "." ones.
///
/// Returns `None` for a path that is absolute (`/x`, `\x`, `C:\x`, `C:x`), contains a
/// `..` component or contains NUL. Both '/' and '\' count as separators because some
/// extractors convert '\' to '/', among them `mangled_name` of the zip crate.
fn split_relative_path(path: &str) -> Option<Vec<&str>> {
    if path.contains('\0') || is_absolute(path) {
        return None;
    }

    let mut components = Vec::new();
    for component in path.split(['/', '\\']) {
        match component {
            "" | "." => {}
            ".." => return None,
            normal => components.push(normal),
        }
    }
    Some(components)
}

/// Returns whether `path` is absolute on unix or Windows, including drive-relative
/// Windows paths such as `C:x`.
fn is_absolute(path: &str) -> bool {
    let bytes = path.as_bytes();
    let rooted = matches!(bytes.first(), Some(b'/' | b'\\'));
    let drive = bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':';
    rooted || drive
}

/// Returns whether the symlink at `path` resolves to a location inside the package root.
///
/// The target is resolved relative to the symlink's own directory, the way the kernel
/// resolves it after extraction. Symlinks inside the package are followed, because a
/// target such as `up/../x` escapes when `up` is itself a symlink to a parent directory
/// even though it looks contained as text.
fn symlink_stays_inside(path: &str, target: &str, symlinks: &BTreeMap<String, String>) -> bool {
    // Components of the location resolved so far, starting at the symlink's directory.
    let mut resolved: Vec<String> = path.split('/').map(str::to_owned).collect();
    resolved.pop();

    let mut pending: VecDeque<String> = VecDeque::new();
    if !push_target_components(&mut pending, target) {
        return false;
    }

    let mut hops = 0;
    while let Some(component) = pending.pop_front() {
        match component.as_str() {
            "" | "." => continue,
            ".." => {
                if resolved.pop().is_none() {
                    return false;
                }
                continue;
            }
            _ => resolved.push(component),
        }

        let Some(link_target) = symlinks.get(&resolved.join("/")) else {
            continue;
        };
        hops += 1;
        if hops > MAX_SYMLINK_HOPS {
            // The kernel gives up here with ELOOP, so the path never resolves.
            return true;
        }
        resolved.pop();
        let mut rest = VecDeque::new();
        if !push_target_components(&mut rest, link_target) {
            return false;
        }
        rest.extend(pending.drain(..));
        pending = rest;
    }
    true
}

/// Appends the components of a symlink target to `pending`. Returns false for an
/// absolute target or one that contains NUL, which always counts as escaping.
fn push_target_components(pending: &mut VecDeque<String>, target: &str) -> bool {
    if target.contains('\0') || is_absolute(target) {
        return false;
    }
    pending.extend(target.split(['/', '\\']).map(str::to_owned));
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use zip::write::SimpleFileOptions;
    use zip::ZipWriter;

    /// One entry of a test zip.
    enum Entry<'a> {
        File(&'a str, &'a [u8]),
        Dir(&'a str),
        Symlink(&'a str, &'a str),
    }

    /// Builds a deflated zip from `entries`.
    ///
    /// `start_file` and `add_symlink` in zip 2.6 write names verbatim without checking
    /// them, so this also builds zips with "../x", "/x" and NUL in a name.
    fn build_zip(entries: &[Entry]) -> Bytes {
        let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
        let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for entry in entries {
            match entry {
                Entry::File(name, content) => {
                    writer.start_file(*name, options).unwrap();
                    writer.write_all(content).unwrap();
                }
                Entry::Dir(name) => writer.add_directory(*name, options).unwrap(),
                Entry::Symlink(name, target) => writer.add_symlink(*name, *target, options).unwrap(),
            }
        }
        Bytes::from(writer.finish().unwrap().into_inner())
    }

    fn small_limits() -> PackageLimits {
        PackageLimits {
            max_zipped_bytes: 1024,
            max_unzipped_bytes: 1024,
        }
    }

    #[test]
    fn default_limits_match_lambda() {
        let limits = PackageLimits::default();

        assert_eq!(limits.max_zipped_bytes, 52_428_800);
        assert_eq!(limits.max_unzipped_bytes, 262_144_000);
    }

    #[test]
    fn decode_base64_rejects_invalid_text() {
        let err = decode_base64_zip("not*base64!", &PackageLimits::default()).unwrap_err();

        assert!(matches!(err, PackageError::NotBase64 { .. }), "{err:?}");
        assert!(!err.is_too_large());
        assert!(err.to_string().contains("not valid base64"), "{err}");
    }

    #[test]
    fn decode_base64_accepts_padding_and_whitespace() {
        let limits = PackageLimits::default();
        let zip = build_zip(&[Entry::File("index.py", b"print('hi')")]);
        let padded = base64::engine::general_purpose::STANDARD.encode(&zip);
        let unpadded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&zip);
        let wrapped: String = padded
            .as_bytes()
            .chunks(76)
            .map(|line| format!("{}\n", std::str::from_utf8(line).unwrap()))
            .collect();

        assert_eq!(decode_base64_zip(&padded, &limits).unwrap(), zip);
        assert_eq!(decode_base64_zip(&unpadded, &limits).unwrap(), zip);
        assert_eq!(decode_base64_zip(&format!("  \n{wrapped}\r\n"), &limits).unwrap(), zip);
    }

    #[test]
    fn decode_base64_rejects_over_inline_limit() {
        let limits = small_limits();
        let encoded = base64::engine::general_purpose::STANDARD.encode(vec![7u8; 1025]);

        let err = decode_base64_zip(&encoded, &limits).unwrap_err();

        assert!(
            matches!(
                err,
                PackageError::TooLargeZipped {
                    size: 1025,
                    limit: 1024
                }
            ),
            "{err:?}"
        );
        assert!(err.is_too_large());
        let message = err.to_string();
        assert!(message.contains("1025 bytes zipped"), "{message}");
        assert!(message.contains("1024-byte limit"), "{message}");
        assert!(message.contains("PUT /code-objects/{bucket}/{key}"), "{message}");
    }

    #[test]
    fn decode_base64_accepts_exactly_the_limit() {
        let limits = small_limits();
        let encoded = base64::engine::general_purpose::STANDARD.encode(vec![7u8; 1024]);

        assert_eq!(decode_base64_zip(&encoded, &limits).unwrap().len(), 1024);
    }

    #[test]
    fn validate_rejects_non_zip() {
        let err = validate_zip(Bytes::from_static(b"hello, not a zip"), &small_limits()).unwrap_err();

        assert!(matches!(err, PackageError::NotZip { .. }), "{err:?}");
        assert!(!err.is_too_large());
        assert!(
            err.to_string().starts_with("code package is not a valid zip file: "),
            "{err}"
        );
    }

    #[test]
    fn validate_rejects_corrupt_entry_data() {
        let mut zip = build_zip(&[Entry::File("index.py", &[b'x'; 200])]).to_vec();
        // The deflated data of the only entry starts right after its 30-byte local
        // header and 8-byte name. Flipping a byte there breaks the stream or the CRC.
        zip[30 + 8] ^= 0xff;

        let err = validate_zip(Bytes::from(zip), &small_limits()).unwrap_err();

        assert!(matches!(err, PackageError::NotZip { .. }), "{err:?}");
        assert!(err.to_string().contains("'index.py'"), "{err}");
    }

    #[test]
    fn validate_rejects_empty_zip() {
        let zip = build_zip(&[]);

        let err = validate_zip(zip, &small_limits()).unwrap_err();

        assert!(matches!(err, PackageError::Empty), "{err:?}");
        assert!(err.to_string().contains("contains no files"), "{err}");
    }

    #[test]
    fn validate_rejects_directory_only_zip() {
        let zip = build_zip(&[Entry::Dir("lib/"), Entry::Dir("lib/python/")]);

        let err = validate_zip(zip, &small_limits()).unwrap_err();

        assert!(matches!(err, PackageError::Empty), "{err:?}");
    }

    #[test]
    fn validate_rejects_parent_dir_entry() {
        let zip = build_zip(&[
            Entry::File("index.py", b"ok"),
            Entry::File("../etc/passwd", b"root::0:0"),
        ]);

        let err = validate_zip(zip, &small_limits()).unwrap_err();

        assert!(
            matches!(&err, PackageError::EntryEscapes { entry } if entry == "../etc/passwd"),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "code package entry '../etc/passwd' escapes the package root; entries must be relative paths without '..'"
        );
    }

    #[test]
    fn validate_rejects_inner_parent_dir_entry() {
        // "a/../b" stays inside the root, but entries with '..' are rejected outright.
        let zip = build_zip(&[Entry::File("a/../b.txt", b"x")]);

        let err = validate_zip(zip, &small_limits()).unwrap_err();

        assert!(
            matches!(&err, PackageError::EntryEscapes { entry } if entry == "a/../b.txt"),
            "{err:?}"
        );
    }

    #[test]
    fn validate_rejects_absolute_entries() {
        for name in ["/etc/passwd", "C:\\Windows\\x.dll", "\\x", "..\\x"] {
            let zip = build_zip(&[Entry::File(name, b"x")]);

            let err = validate_zip(zip, &small_limits()).unwrap_err();

            assert!(
                matches!(&err, PackageError::EntryEscapes { entry } if entry == name),
                "{name}: {err:?}"
            );
            assert!(err.to_string().contains(&name.escape_debug().to_string()), "{err}");
        }
    }

    #[test]
    fn validate_rejects_nul_in_entry_name() {
        let zip = build_zip(&[Entry::File("index.py\0.txt", b"x")]);

        let err = validate_zip(zip, &small_limits()).unwrap_err();

        assert!(
            matches!(&err, PackageError::EntryEscapes { entry } if entry == "index.py\0.txt"),
            "{err:?}"
        );
        assert!(err.to_string().contains("'index.py\\0.txt'"), "{err}");
    }

    #[test]
    fn validate_rejects_absolute_symlink() {
        let zip = build_zip(&[Entry::File("index.py", b"x"), Entry::Symlink("passwd", "/etc/passwd")]);

        let err = validate_zip(zip, &small_limits()).unwrap_err();

        assert!(
            matches!(&err, PackageError::SymlinkEscapes { entry, target } if entry == "passwd" && target == "/etc/passwd"),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(message.contains("'passwd'"), "{message}");
        assert!(message.contains("'/etc/passwd'"), "{message}");
    }

    #[test]
    fn validate_rejects_escaping_relative_symlink() {
        let zip = build_zip(&[Entry::File("x", b"x"), Entry::Symlink("a/link", "../../x")]);

        let err = validate_zip(zip, &small_limits()).unwrap_err();

        assert!(
            matches!(&err, PackageError::SymlinkEscapes { entry, target } if entry == "a/link" && target == "../../x"),
            "{err:?}"
        );
        assert!(err.to_string().contains("'a/link' points to '../../x'"), "{err}");
    }

    #[test]
    fn validate_accepts_contained_relative_symlink() {
        let zip = build_zip(&[Entry::File("b.txt", b"b"), Entry::Symlink("a/link", "../b.txt")]);

        let package = validate_zip(zip, &small_limits()).unwrap();

        assert!(package.contains_file("a/link"));
        assert!(package.contains_file("b.txt"));
    }

    #[test]
    fn validate_rejects_symlink_escaping_through_symlink() {
        // "a/b/up" resolves to the root, so "a/b/up/../x" is one level above it although
        // the text "up/../x" stays inside "a/b".
        let zip = build_zip(&[
            Entry::File("x", b"x"),
            Entry::Symlink("a/b/up", "../.."),
            Entry::Symlink("a/b/t", "up/../x"),
        ]);

        let err = validate_zip(zip, &small_limits()).unwrap_err();

        assert!(
            matches!(&err, PackageError::SymlinkEscapes { entry, target } if entry == "a/b/t" && target == "up/../x"),
            "{err:?}"
        );
    }

    #[test]
    fn validate_accepts_symlink_loop() {
        // A loop never resolves (ELOOP), so it cannot reach outside the package.
        let zip = build_zip(&[Entry::Symlink("a", "b"), Entry::Symlink("b", "a")]);

        let package = validate_zip(zip, &small_limits()).unwrap();

        assert_eq!(package.files.len(), 2);
    }

    #[test]
    fn validate_rejects_over_unzipped_limit() {
        // 2 KiB of one byte deflates to a few bytes, so only the unzipped size is over.
        let zip = build_zip(&[Entry::File("big.txt", &[b'a'; 2048])]);
        assert!(zip.len() < 1024);

        let err = validate_zip(zip, &small_limits()).unwrap_err();

        assert!(matches!(err, PackageError::TooLargeUnzipped { limit: 1024 }), "{err:?}");
        assert!(err.is_too_large());
        assert!(err.to_string().contains("more than 1024 bytes unzipped"), "{err}");
    }

    #[test]
    fn validate_counts_unzipped_size_across_entries() {
        let zip = build_zip(&[Entry::File("a.txt", &[b'a'; 600]), Entry::File("b.txt", &[b'b'; 600])]);

        let err = validate_zip(zip, &small_limits()).unwrap_err();

        assert!(matches!(err, PackageError::TooLargeUnzipped { limit: 1024 }), "{err:?}");
    }

    #[test]
    fn validate_ignores_inline_zipped_limit() {
        let limits = PackageLimits {
            max_zipped_bytes: 10,
            max_unzipped_bytes: 1024,
        };
        let zip = build_zip(&[Entry::File("index.py", b"print('hi')")]);
        assert!(zip.len() > 10);

        assert!(validate_zip(zip, &limits).is_ok());
    }

    #[test]
    fn validate_accepts_nested_package() {
        let zip = build_zip(&[
            Entry::Dir("lib/"),
            Entry::File("index.py", b"import lib.util\n"),
            Entry::File("lib/__init__.py", b""),
            Entry::File("./lib/util.py", b"def f(): return 1\n"),
            Entry::File("lib/data/config.json", b"{}"),
            Entry::Symlink("current", "lib/util.py"),
        ]);
        let mut hasher = Sha256::new();
        hasher.update(&zip);
        let expected_sha256: String = hasher.finalize().iter().map(|byte| format!("{byte:02x}")).collect();

        let package = validate_zip(zip.clone(), &small_limits()).unwrap();

        let expected_files: BTreeSet<String> = [
            "current",
            "index.py",
            "lib/__init__.py",
            "lib/data/config.json",
            "lib/util.py",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        assert_eq!(package.files, expected_files);
        assert_eq!(package.sha256, expected_sha256);
        assert_eq!(package.size, zip.len() as u64);
        assert_eq!(package.bytes, zip);
        let content_size = "import lib.util\n".len() + "def f(): return 1\n".len() + "{}".len() + "lib/util.py".len();
        assert_eq!(package.unzipped_size, content_size as u64);
        assert!(package.contains_file("lib/util.py"));
        assert!(package.contains_file("./lib//util.py"));
        assert!(!package.contains_file("lib"));
        assert!(!package.contains_file("../index.py"));
    }
}
