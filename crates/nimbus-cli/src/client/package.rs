//! Code packages from local paths: a `.zip` file is read as is, and a directory is
//! zipped in memory.

use std::fs;
use std::io::{Cursor, Write};
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

/// The first bytes of a zip file: a local file header, or the end-of-central-directory
/// record of an empty archive.
const ZIP_SIGNATURES: [&[u8; 4]; 2] = [b"PK\x03\x04", b"PK\x05\x06"];

/// Reads the code package at `path`: the bytes of a zip file, or a zip built from a
/// directory by [`zip_directory`].
pub fn read_package(path: &Path) -> anyhow::Result<Vec<u8>> {
    let metadata = match fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            bail!(
                "code path '{}' not found; pass a directory or a .zip file",
                path.display()
            )
        }
        Err(error) => return Err(error).with_context(|| format!("failed to read code path '{}'", path.display())),
    };
    if metadata.is_dir() {
        return zip_directory(path);
    }

    let bytes = fs::read(path).with_context(|| format!("failed to read code path '{}'", path.display()))?;
    if !ZIP_SIGNATURES.iter().any(|signature| bytes.starts_with(*signature)) {
        bail!(
            "code path '{}' is not a zip file; pass a .zip file or the directory that contains the code",
            path.display()
        );
    }
    Ok(bytes)
}

/// Zips the contents of directory `root`, with entry names relative to it and '/'
/// separated.
///
/// The zip is the same for the same files: entries are in sorted order and carry a
/// fixed timestamp (1980-01-01). Unix permissions are kept, so an executable such as
/// `bootstrap` stays executable. A symlink is stored as a symlink with a relative
/// target, and only if it points inside `root`.
pub fn zip_directory(root: &Path) -> anyhow::Result<Vec<u8>> {
    let canonical_root =
        fs::canonicalize(root).with_context(|| format!("failed to resolve code directory '{}'", root.display()))?;
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    let base_options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .last_modified_time(DateTime::default());

    let walker = walkdir::WalkDir::new(root)
        .follow_links(false)
        .sort_by_file_name()
        .min_depth(1);
    for entry in walker {
        let entry = entry.with_context(|| format!("failed to read code directory '{}'", root.display()))?;
        let relative = entry
            .path()
            .strip_prefix(root)
            .expect("walkdir yields paths under its root");
        let name = entry_name(relative)?;
        let metadata = entry
            .path()
            .symlink_metadata()
            .with_context(|| format!("failed to read '{}'", entry.path().display()))?;
        let options = base_options.unix_permissions(unix_mode(&metadata));
        let file_type = metadata.file_type();

        if file_type.is_symlink() {
            let target = symlink_target(root, &canonical_root, entry.path(), relative)?;
            writer.add_symlink(name.as_str(), target, options)?;
        } else if file_type.is_dir() {
            writer.add_directory(name.as_str(), options)?;
        } else if file_type.is_file() {
            let contents =
                fs::read(entry.path()).with_context(|| format!("failed to read '{}'", entry.path().display()))?;
            writer.start_file(name.as_str(), options)?;
            writer.write_all(&contents)?;
        } else {
            bail!(
                "'{}' is not a regular file, directory or symlink, so it cannot go into a code package; remove it or zip the code yourself",
                entry.path().display()
            );
        }
    }
    let cursor = writer.finish().context("failed to finish the zip file")?;
    Ok(cursor.into_inner())
}

/// Returns the zip entry name of a path relative to the package root.
fn entry_name(relative: &Path) -> anyhow::Result<String> {
    let mut parts = Vec::new();
    for component in relative.components() {
        let Component::Normal(part) = component else {
            bail!(
                "'{}' is not a plain relative path inside the code directory",
                relative.display()
            );
        };
        let Some(part) = part.to_str() else {
            bail!(
                "file name '{}' is not valid UTF-8, which zip entry names require; rename it",
                relative.display()
            );
        };
        parts.push(part);
    }
    Ok(parts.join("/"))
}

#[cfg(unix)]
fn unix_mode(metadata: &fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    metadata.permissions().mode()
}

#[cfg(not(unix))]
fn unix_mode(metadata: &fs::Metadata) -> u32 {
    if metadata.is_dir() || metadata.file_type().is_symlink() {
        0o755
    } else if metadata.permissions().readonly() {
        0o444
    } else {
        0o644
    }
}

/// Returns the target to store for the symlink at `link` (`relative` inside the
/// package): its own target if that is relative, or an absolute target rewritten as a
/// path relative to the link's directory. Fails if the target resolves outside the root.
fn symlink_target(root: &Path, canonical_root: &Path, link: &Path, relative: &Path) -> anyhow::Result<String> {
    let target = fs::read_link(link).with_context(|| format!("failed to read symlink '{}'", link.display()))?;
    let escapes = || {
        anyhow::anyhow!(
            "symlink '{}' points to '{}', outside the code directory '{}'; copy the target into the directory or remove the link",
            relative.display(),
            target.display(),
            root.display()
        )
    };

    let link_dir: Vec<String> = component_strings(relative.parent().unwrap_or(Path::new("")))?;
    let stored = if target.is_absolute() {
        let absolute_root = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
        let normalized = normalize_absolute(&target);
        let inside = normalized
            .strip_prefix(canonical_root)
            .or_else(|_| normalized.strip_prefix(&absolute_root))
            .map_err(|_| escapes())?;
        relative_path(&link_dir, &component_strings(inside)?)
    } else {
        target.to_str().map(str::to_string).with_context(|| {
            format!(
                "symlink '{}' has a target that is not valid UTF-8; fix or remove the link",
                relative.display()
            )
        })?
    };

    // Resolve the stored target against the link's directory without touching the disk.
    let mut resolved = link_dir.clone();
    for part in stored.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if resolved.pop().is_none() {
                    return Err(escapes());
                }
            }
            name => resolved.push(name.to_string()),
        }
    }
    // The lexical check misses a target that passes through another symlink, so check
    // where the link really leads when its target exists.
    if let Ok(real) = fs::canonicalize(link) {
        if !real.starts_with(canonical_root) {
            return Err(escapes());
        }
    }
    Ok(stored)
}

fn component_strings(path: &Path) -> anyhow::Result<Vec<String>> {
    path.components()
        .filter_map(|component| match component {
            Component::Normal(part) => Some(
                part.to_str()
                    .map(str::to_string)
                    .with_context(|| format!("path '{}' is not valid UTF-8; rename it", path.display())),
            ),
            _ => None,
        })
        .collect()
}

/// Removes `.` and `..` components of an absolute path without resolving symlinks.
fn normalize_absolute(path: &Path) -> PathBuf {
    let mut normalized = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                normalized.pop();
            }
            Component::CurDir => {}
            other => normalized.push(other),
        }
    }
    normalized
}

/// Returns the '/'-separated path from directory `from` to `to`, both given as
/// components below the package root.
fn relative_path(from: &[String], to: &[String]) -> String {
    let common = from.iter().zip(to).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<&str> = vec![".."; from.len() - common];
    parts.extend(to[common..].iter().map(String::as_str));
    if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use zip::ZipArchive;

    use super::*;

    /// Returns each entry of a zip as (name, unix mode, contents or symlink target).
    fn entries(bytes: &[u8]) -> Vec<(String, u32, String)> {
        let mut archive = ZipArchive::new(Cursor::new(bytes)).unwrap();
        (0..archive.len())
            .map(|index| {
                let mut entry = archive.by_index(index).unwrap();
                let mut contents = String::new();
                entry.read_to_string(&mut contents).unwrap();
                (entry.name().to_string(), entry.unix_mode().unwrap(), contents)
            })
            .collect()
    }

    fn write(path: &Path, contents: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, contents).unwrap();
    }

    #[test]
    fn directory_zip_layout() {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("b.py"), "b");
        write(&dir.path().join("a/inner.py"), "inner");
        write(&dir.path().join("c.txt"), "c");

        let names: Vec<String> = entries(&zip_directory(dir.path()).unwrap())
            .into_iter()
            .map(|e| e.0)
            .collect();
        assert_eq!(names, ["a/", "a/inner.py", "b.py", "c.txt"]);
    }

    #[test]
    fn directory_zip_is_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("app.py"), "def handler(e, c): pass");
        write(&dir.path().join("lib/util.py"), "X = 1");
        let first = zip_directory(dir.path()).unwrap();

        // A later modification time must not change the zip.
        std::thread::sleep(std::time::Duration::from_millis(20));
        write(&dir.path().join("app.py"), "def handler(e, c): pass");
        assert_eq!(zip_directory(dir.path()).unwrap(), first);
    }

    #[cfg(unix)]
    #[test]
    fn directory_zip_keeps_permissions() {
        use std::os::unix::fs::PermissionsExt;

        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("bootstrap"), "#!/bin/sh\n");
        fs::set_permissions(dir.path().join("bootstrap"), fs::Permissions::from_mode(0o755)).unwrap();
        write(&dir.path().join("data.txt"), "x");
        fs::set_permissions(dir.path().join("data.txt"), fs::Permissions::from_mode(0o640)).unwrap();

        let zipped = entries(&zip_directory(dir.path()).unwrap());
        assert_eq!(zipped[0].0, "bootstrap");
        assert_eq!(zipped[0].1, 0o100755);
        assert_eq!(zipped[1].0, "data.txt");
        assert_eq!(zipped[1].1, 0o100640);
    }

    #[cfg(unix)]
    #[test]
    fn symlink_inside_is_kept() {
        use std::os::unix::fs::symlink;

        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("lib/util.py"), "X = 1");
        symlink("lib/util.py", dir.path().join("relative.py")).unwrap();
        symlink(dir.path().join("lib/util.py"), dir.path().join("lib/absolute.py")).unwrap();
        symlink(dir.path().join("lib"), dir.path().join("lib/self")).unwrap();

        let zipped = entries(&zip_directory(dir.path()).unwrap());
        let links: Vec<(&str, u32, &str)> = zipped
            .iter()
            .filter(|(_, mode, _)| mode & 0o170000 == 0o120000)
            .map(|(name, mode, target)| (name.as_str(), mode & 0o170000, target.as_str()))
            .collect();
        assert_eq!(
            links,
            [
                ("lib/absolute.py", 0o120000, "util.py"),
                ("lib/self", 0o120000, "."),
                ("relative.py", 0o120000, "lib/util.py")
            ]
        );
    }

    #[cfg(unix)]
    #[test]
    fn symlink_outside_is_rejected() {
        use std::os::unix::fs::symlink;

        let outside = tempfile::tempdir().unwrap();
        write(&outside.path().join("secret.txt"), "s");
        let cases = [
            outside.path().join("secret.txt"),
            PathBuf::from("../../secret.txt"),
            PathBuf::from("/etc/passwd"),
        ];
        for target in cases {
            let dir = tempfile::tempdir().unwrap();
            write(&dir.path().join("lib/util.py"), "X = 1");
            symlink(&target, dir.path().join("lib/link")).unwrap();
            let error = zip_directory(dir.path()).unwrap_err().to_string();
            assert!(error.contains("symlink 'lib/link' points to"), "{error}");
            assert!(error.contains("outside the code directory"), "{error}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn symlink_through_symlink_is_rejected() {
        use std::os::unix::fs::symlink;

        let parent = tempfile::tempdir().unwrap();
        let root = parent.path().join("code");
        write(&root.join("app.py"), "x");
        write(&parent.path().join("secret.txt"), "s");
        // `up` leads to the parent directory, so `up/secret.txt` escapes although it
        // looks like a path inside the root.
        symlink("..", root.join("up")).unwrap();
        let error = zip_directory(&root).unwrap_err().to_string();
        assert!(error.contains("symlink 'up' points to '..'"), "{error}");
        let _ = fs::remove_file(root.join("up"));

        fs::create_dir(root.join("sub")).unwrap();
        symlink("..", root.join("sub/up")).unwrap();
        symlink("sub/up/../secret.txt", root.join("leak")).unwrap();
        let error = zip_directory(&root).unwrap_err().to_string();
        assert!(error.contains("symlink 'leak' points to"), "{error}");
    }

    #[test]
    fn zip_file_read_as_is() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
        writer.start_file("app.py", SimpleFileOptions::default()).unwrap();
        writer.write_all(b"x").unwrap();
        let bytes = writer.finish().unwrap().into_inner();
        fs::write(dir.path().join("code.zip"), &bytes).unwrap();

        assert_eq!(read_package(&dir.path().join("code.zip")).unwrap(), bytes);
    }

    #[test]
    fn non_zip_file_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.py");
        fs::write(&path, "def handler(e, c): pass").unwrap();
        let error = read_package(&path).unwrap_err().to_string();
        assert!(
            error.contains(&format!("code path '{}' is not a zip file", path.display())),
            "{error}"
        );
    }

    #[test]
    fn missing_path_named() {
        let error = read_package(Path::new("/nonexistent/code")).unwrap_err().to_string();
        assert_eq!(
            error,
            "code path '/nonexistent/code' not found; pass a directory or a .zip file"
        );
    }

    #[test]
    fn relative_paths() {
        let parts =
            |text: &str| -> Vec<String> { text.split('/').filter(|p| !p.is_empty()).map(str::to_string).collect() };
        assert_eq!(relative_path(&parts("lib"), &parts("lib/util.py")), "util.py");
        assert_eq!(relative_path(&parts("a/b"), &parts("c/d")), "../../c/d");
        assert_eq!(relative_path(&parts(""), &parts("x")), "x");
        assert_eq!(relative_path(&parts("lib"), &parts("lib")), ".");
    }
}
