//! The VM library on disk: a folder of `NAME.xhyvm/` folders, each with a
//! config.ini (the 2016 xhyve-manager layout).
//!
//! Where the library is: `--home DIR`, else `$XHYVE_HOME`, else
//! `$XDG_DATA_HOME/xhyve-manager/machines`, else
//! `~/.local/share/xhyve-manager/machines`. With the default library, the
//! 2016 tool's folders (`/usr/local/Library/xhyve/machines`,
//! `~/Xhyve Virtual Machines`) are searched too. Under sudo, `~` is the
//! invoking user's home and files we create belong to that user.

mod fsutil;
mod staging;
mod user;
mod vmm_config;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub use fsutil::{chown, chown_tree, temp_path, write_atomic};
pub use staging::Staging;
pub use user::{Owner, UserContext};

use super::config::{self, CONFIG_FILE, ConfigFile};
use super::disk;

/// Extension of a VM folder.
pub const VM_EXTENSION: &str = "xhyvm";
/// Environment variable choosing the library.
pub const HOME_ENV: &str = "XHYVE_HOME";
/// The default library, below the user's data folder.
pub const DEFAULT_DATA_SUBDIR: &str = "xhyve-manager/machines";
/// The 2016 tool's system-wide library.
pub const LEGACY_SYSTEM_ROOT: &str = "/usr/local/Library/xhyve/machines";
/// The 2016 tool's per-user library, below the home folder.
pub const LEGACY_HOME_SUBDIR: &str = "Xhyve Virtual Machines";
/// Longest name `create` accepts.
pub const MAX_NAME_LEN: usize = 64;
/// Where `kernel = disk:auto` puts the kernel it copies off the disk.
pub const DISK_BOOT_DIR: &str = ".boot";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "cannot find your home folder; set HOME, or choose a library with --home or ${HOME_ENV}"
    )]
    NoHome,
    #[error("'{name}' is not a usable VM name: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("no VM named '{name}' (looked in {searched})")]
    NotFound { name: String, searched: String },
    #[error("a VM named '{name}' already exists at {}", dir.display())]
    AlreadyExists { name: String, dir: PathBuf },
    #[error("VM '{name}' has no {}", dir.join(CONFIG_FILE).display())]
    NoConfig { name: String, dir: PathBuf },
    #[error("VM '{name}' has an invalid config")]
    Config {
        name: String,
        #[source]
        source: config::Error,
    },
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("VM '{name}' is running; stop it first")]
    Running { name: String },
    #[error(
        "{}: [machine] type = bsd boots with [boot] kernel = userboot.so, xhyve's FreeBSD loader, which this VMM does not have; point kernel at a FreeBSD >= 14 kernel (it boots through PVH) instead",
        config.display()
    )]
    Userboot { config: PathBuf },
    #[error("{}: [{section}] {key} = \"{value}\": {} does not exist", config.display(), resolved.display())]
    MissingFile {
        config: PathBuf,
        section: &'static str,
        key: &'static str,
        value: String,
        resolved: PathBuf,
    },
    #[error(
        "{}: [boot] kernel = disk:auto needs a disk image in [internal_storage] configinfo",
        config.display()
    )]
    DiskAutoWithoutDisk { config: PathBuf },
    #[error("cannot boot the kernel installed on {}", disk.display())]
    DiskBoot {
        disk: PathBuf,
        #[source]
        source: disk::Error,
    },
}

impl Error {
    fn io(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Error + use<> {
        let path = path.to_path_buf();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }
}

/// The folder holding `NAME.xhyvm/` VM folders.
#[derive(Clone, Debug)]
pub struct Library {
    /// Where new VMs go and names are looked up first.
    pub root: PathBuf,
    /// The 2016 tool's folders, searched after `root` (default library only).
    pub legacy_roots: Vec<PathBuf>,
    /// Under sudo: the user our new files belong to.
    pub owner: Option<Owner>,
}

/// One VM of the library.
#[derive(Clone, Debug)]
pub struct VmEntry {
    pub name: String,
    /// The `NAME.xhyvm` folder.
    pub dir: PathBuf,
    /// Its config.ini, validated.
    pub config: ConfigFile,
}

/// A VM folder found by `list`, whether or not its config is valid.
#[derive(Debug)]
pub struct Listed {
    pub name: String,
    pub dir: PathBuf,
    pub config: Result<ConfigFile, config::Error>,
}

impl Library {
    /// The library at `home`, or the default one (see the module docs).
    pub fn open(home: Option<&Path>) -> Result<Library, Error> {
        let user = UserContext::detect();
        let from_env = std::env::var_os(HOME_ENV).filter(|v| !v.is_empty());
        let explicit = home.map(Path::to_path_buf).or(from_env.map(PathBuf::from));
        if let Some(root) = explicit {
            let root = std::path::absolute(&root).map_err(Error::io("resolve", &root))?;
            return Ok(Library {
                root,
                legacy_roots: Vec::new(),
                owner: user.owner,
            });
        }
        let home = user.home.ok_or(Error::NoHome)?;
        let data = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .filter(|d| d.is_absolute() && user.owner.is_none())
            .unwrap_or_else(|| home.join(".local/share"));
        Ok(Library {
            root: data.join(DEFAULT_DATA_SUBDIR),
            legacy_roots: vec![
                PathBuf::from(LEGACY_SYSTEM_ROOT),
                home.join(LEGACY_HOME_SUBDIR),
            ],
            owner: user.owner,
        })
    }

    /// Every root searched, in order (legacy ones only when they exist).
    pub fn roots(&self) -> Vec<&Path> {
        let mut roots = vec![self.root.as_path()];
        roots.extend(
            self.legacy_roots
                .iter()
                .filter(|r| r.is_dir() && **r != self.root)
                .map(PathBuf::as_path),
        );
        roots
    }

    /// Where a VM called `name` lives in the main root.
    pub fn vm_dir(&self, name: &str) -> PathBuf {
        self.root.join(format!("{name}.{VM_EXTENSION}"))
    }

    /// The folder of the existing VM `name` (main root first).
    pub fn find(&self, name: &str) -> Result<PathBuf, Error> {
        check_lookup_name(name)?;
        let file_name = format!("{name}.{VM_EXTENSION}");
        let roots = self.roots();
        roots
            .iter()
            .map(|root| root.join(&file_name))
            .find(|dir| dir.is_dir())
            .ok_or_else(|| Error::NotFound {
                name: name.to_string(),
                searched: roots
                    .iter()
                    .map(|r| r.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Load the VM called `name` (its config.ini validated).
    pub fn load(&self, name: &str) -> Result<VmEntry, Error> {
        let dir = self.find(name)?;
        let path = dir.join(CONFIG_FILE);
        if !path.is_file() {
            return Err(Error::NoConfig {
                name: name.to_string(),
                dir,
            });
        }
        let config = ConfigFile::load(&path).map_err(|source| Error::Config {
            name: name.to_string(),
            source,
        })?;
        Ok(VmEntry {
            name: name.to_string(),
            dir,
            config,
        })
    }

    /// Every VM folder in every root, sorted by root then name. A folder
    /// without config.ini is not a VM (e.g. one being created).
    pub fn list(&self) -> Result<Vec<Listed>, Error> {
        let mut out = Vec::new();
        for root in self.roots() {
            let entries = match fs::read_dir(root) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("read the library", root)(e)),
            };
            let mut found = Vec::new();
            for entry in entries {
                let dir = entry.map_err(Error::io("read the library", root))?.path();
                let Some(name) = vm_name_of(&dir) else {
                    continue;
                };
                let path = dir.join(CONFIG_FILE);
                if dir.is_dir() && path.is_file() {
                    found.push(Listed {
                        name,
                        config: ConfigFile::load(&path),
                        dir,
                    });
                }
            }
            found.sort_by(|a, b| a.name.cmp(&b.name));
            out.extend(found);
        }
        Ok(out)
    }

    /// Start creating VM `name`: a staging folder that becomes `NAME.xhyvm`
    /// on [`Staging::commit`] and vanishes if dropped before.
    pub fn stage(&self, name: &str) -> Result<Staging, Error> {
        check_new_name(name)?;
        let dir = self.vm_dir(name);
        // Also refuse a name a 2016 folder already has: it would be shadowed.
        let existing = fs::symlink_metadata(&dir)
            .is_ok()
            .then(|| dir.clone())
            .or_else(|| self.find(name).ok());
        if let Some(dir) = existing {
            return Err(Error::AlreadyExists {
                name: name.to_string(),
                dir,
            });
        }
        fsutil::create_dir_all_owned(&self.root, self.owner)
            .map_err(Error::io("create the library folder", &self.root))?;
        Staging::new(self, name, dir)
    }

    /// Remove the folder `dir` of VM `name`, and the files `external`.
    /// Refuses while the VM runs.
    pub fn delete(&self, name: &str, dir: &Path, external: &[PathBuf]) -> Result<(), Error> {
        if super::run::is_running(dir) {
            return Err(Error::Running {
                name: name.to_string(),
            });
        }
        for path in external {
            match fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove", path)(e)),
            }
        }
        fs::remove_dir_all(dir).map_err(Error::io("remove", dir))?;
        if let Some(parent) = dir.parent() {
            let _ = fsutil::sync_dir(parent);
        }
        Ok(())
    }
}

impl VmEntry {
    /// A path from config.ini, relative ones taken from the VM folder.
    pub fn resolve(&self, value: &str) -> PathBuf {
        resolve_in(&self.dir, value)
    }

    /// Is `path` inside the VM folder (so deleting the VM removes it)?
    pub fn contains(&self, path: &Path) -> bool {
        let dir = fs::canonicalize(&self.dir).unwrap_or_else(|_| self.dir.clone());
        let target = path
            .parent()
            .and_then(|p| fs::canonicalize(p).ok())
            .map(|p| p.join(path.file_name().unwrap_or_default()))
            .unwrap_or_else(|| path.to_path_buf());
        target.starts_with(&dir)
    }

    /// Storage files (disk image, ISO) the config references outside the
    /// VM folder: `delete` leaves them unless asked.
    pub fn external_storage_files(&self) -> Vec<PathBuf> {
        let s = &self.config.settings;
        [&s.internal_storage.path, &s.external_storage.path]
            .into_iter()
            .filter(|p| !p.is_empty())
            .map(|p| self.resolve(p))
            .filter(|p| !self.contains(p))
            .collect()
    }

    /// Write `text` as the new config.ini (validated first), atomically.
    pub fn save_config(&mut self, text: &str, owner: Option<Owner>) -> Result<(), Error> {
        let config =
            ConfigFile::parse(&self.config.path, text).map_err(|source| Error::Config {
                name: self.name.clone(),
                source,
            })?;
        write_atomic(&config.path, text.as_bytes(), owner)
            .map_err(Error::io("write", &config.path))?;
        self.config = config;
        Ok(())
    }
}

/// `value` relative to `dir` unless absolute.
pub fn resolve_in(dir: &Path, value: &str) -> PathBuf {
    let path = Path::new(value);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        dir.join(path)
    }
}

/// The VM name of a `NAME.xhyvm` path (hidden folders are not VMs).
fn vm_name_of(dir: &Path) -> Option<String> {
    let file_name = dir.file_name()?.to_str()?;
    let name = file_name.strip_suffix(&format!(".{VM_EXTENSION}"))?;
    (!name.is_empty() && !name.starts_with('.')).then(|| name.to_string())
}

fn invalid(name: &str, reason: impl Into<String>) -> Error {
    Error::InvalidName {
        name: name.to_string(),
        reason: reason.into(),
    }
}

/// A name to look up: anything that stays inside the library.
pub fn check_lookup_name(name: &str) -> Result<(), Error> {
    if name.is_empty() {
        return Err(invalid(name, "it is empty"));
    }
    if name.contains(['/', '\0']) {
        return Err(invalid(name, "it must not contain '/' or NUL"));
    }
    if name.starts_with('.') {
        return Err(invalid(name, "it must not start with '.'"));
    }
    Ok(())
}

/// A name for a new VM: letters, digits, '-', '_', '.', starting with a
/// letter or digit, at most `MAX_NAME_LEN` characters.
pub fn check_new_name(name: &str) -> Result<(), Error> {
    check_lookup_name(name)?;
    let allowed = format!(
        "use 1 to {MAX_NAME_LEN} letters, digits, '-', '_' or '.', starting with a letter or digit"
    );
    let first_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !first_ok || !rest_ok || name.len() > MAX_NAME_LEN {
        return Err(invalid(name, allowed));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_escape_are_refused() {
        for bad in ["", "../x", "/", "a/b", ".", "..", ".hidden", "a\0b"] {
            assert!(check_lookup_name(bad).is_err(), "{bad:?}");
            assert!(check_new_name(bad).is_err(), "{bad:?}");
        }
        for bad in ["-x", "a b", "é", &"x".repeat(MAX_NAME_LEN + 1)] {
            assert!(check_new_name(bad).is_err(), "{bad:?}");
        }
        for good in ["Foo", "debian-12", "a.b_c", "9"] {
            check_new_name(good).unwrap();
        }
        check_lookup_name("Old Machine").unwrap();
    }

    #[test]
    fn vm_folder_names() {
        assert_eq!(vm_name_of(Path::new("/l/Foo.xhyvm")), Some("Foo".into()));
        assert_eq!(vm_name_of(Path::new("/l/.x.xhyvm")), None);
        assert_eq!(vm_name_of(Path::new("/l/Foo")), None);
        assert_eq!(vm_name_of(Path::new("/l/.xhyvm")), None);
    }

    #[test]
    fn explicit_home_has_no_legacy_roots() {
        let lib = Library::open(Some(Path::new("/tmp/lib"))).unwrap();
        assert_eq!(lib.root, PathBuf::from("/tmp/lib"));
        assert!(lib.legacy_roots.is_empty());
        assert_eq!(lib.vm_dir("a"), PathBuf::from("/tmp/lib/a.xhyvm"));
    }

    #[test]
    fn relative_paths_resolve_in_the_vm_folder() {
        assert_eq!(
            resolve_in(Path::new("/v"), "disk.img"),
            PathBuf::from("/v/disk.img")
        );
        assert_eq!(
            resolve_in(Path::new("/v"), "/abs/x.iso"),
            PathBuf::from("/abs/x.iso")
        );
    }
}
