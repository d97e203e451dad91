//! File operations that never leave a half-written file behind.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use super::user::Owner;

/// Mode of files we create (umask applies).
const FILE_MODE: u32 = 0o644;

static TEMP_COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name in `dir` for a temporary file next to `name`, unique per process.
pub fn temp_path(dir: &Path, name: &str) -> PathBuf {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".{name}.tmp-{}-{n}", std::process::id()))
}

/// Replace `path` with `contents` atomically: a temp file in the same folder,
/// fsync, rename, fsync of the folder. An existing file's mode and (when we
/// may) owner are kept; a new file goes to `owner` if given.
pub fn write_atomic(path: &Path, contents: &[u8], owner: Option<Owner>) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = temp_path(dir, &name);
    let result = write_then_rename(path, &temp, contents, owner);
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

fn write_then_rename(
    path: &Path,
    temp: &Path,
    contents: &[u8],
    owner: Option<Owner>,
) -> io::Result<()> {
    let previous = fs::metadata(path).ok();
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(temp)?;
    file.write_all(contents)?;
    if let Some(meta) = &previous {
        file.set_permissions(fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    }
    let wanted_owner = previous
        .as_ref()
        .map(|m| Owner {
            uid: m.uid(),
            gid: m.gid(),
        })
        .or(owner);
    if let Some(o) = wanted_owner {
        let current = file.metadata()?;
        if current.uid() != o.uid || current.gid() != o.gid {
            std::os::unix::fs::fchown(&file, Some(o.uid), Some(o.gid))?;
        }
    }
    file.sync_all()?;
    drop(file);
    fs::rename(temp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Make a rename or creation in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Give `path` (not following symlinks) to `owner`.
pub fn chown(path: &Path, owner: Option<Owner>) -> io::Result<()> {
    match owner {
        Some(o) => std::os::unix::fs::lchown(path, Some(o.uid), Some(o.gid)),
        None => Ok(()),
    }
}

/// `chown -R` for a tree we created.
pub fn chown_tree(path: &Path, owner: Option<Owner>) -> io::Result<()> {
    if owner.is_none() {
        return Ok(());
    }
    chown(path, owner)?;
    if fs::symlink_metadata(path)?.is_dir() {
        for entry in fs::read_dir(path)? {
            chown_tree(&entry?.path(), owner)?;
        }
    }
    Ok(())
}

/// `mkdir -p` whose newly made folders go to `owner`.
pub fn create_dir_all_owned(path: &Path, owner: Option<Owner>) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut current = Some(path);
    while let Some(dir) = current {
        if dir.as_os_str().is_empty() || dir.exists() {
            break;
        }
        missing.push(dir);
        current = dir.parent();
    }
    for dir in missing.into_iter().rev() {
        match fs::create_dir(dir) {
            Ok(()) => chown(dir, owner)?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_keeps_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.ini");
        write_atomic(&path, b"one", None).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        write_atomic(&path, b"two", None).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        // No temp files left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn failed_write_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub");
        fs::create_dir(&path).unwrap();
        // Renaming a file over a directory fails: nothing may be left over.
        assert!(write_atomic(&path, b"x", None).is_err());
        assert!(path.is_dir());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn creates_nested_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b/c");
        create_dir_all_owned(&deep, None).unwrap();
        assert!(deep.is_dir());
        create_dir_all_owned(&deep, None).unwrap();
    }
}
