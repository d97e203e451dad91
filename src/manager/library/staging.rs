//! Creating a VM without leaving anything behind on failure.
//!
//! Everything is built in a hidden staging folder next to the final one;
//! `commit` renames it into place. Until then, dropping the `Staging`
//! removes the staging folder and any file it was told we created outside.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::fsutil::{self, temp_path};
use super::{Error, Library, Owner, VmEntry};
use crate::manager::config::{CONFIG_FILE, ConfigFile, ini::Document};

pub struct Staging {
    name: String,
    dir: PathBuf,
    final_dir: PathBuf,
    owner: Option<Owner>,
    created_outside: Vec<PathBuf>,
    committed: bool,
}

impl Staging {
    pub(super) fn new(library: &Library, name: &str, final_dir: PathBuf) -> Result<Staging, Error> {
        let dir = temp_path(&library.root, &format!("{name}.creating"));
        fs::create_dir(&dir).map_err(Error::io("create", &dir))?;
        Ok(Staging {
            name: name.to_string(),
            dir,
            final_dir,
            owner: library.owner,
            created_outside: Vec::new(),
            committed: false,
        })
    }

    /// The folder to put the VM's files in now.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the VM will live once committed.
    pub fn final_dir(&self) -> &Path {
        &self.final_dir
    }

    /// Map a path inside the staging folder to where it will be.
    pub fn final_path(&self, staged: &Path) -> PathBuf {
        staged
            .strip_prefix(&self.dir)
            .map(|rest| self.final_dir.join(rest))
            .unwrap_or_else(|_| staged.to_path_buf())
    }

    /// A file we made outside the VM folder: removed if creation fails.
    pub fn created_outside(&mut self, path: PathBuf) {
        self.created_outside.push(path);
    }

    /// Validate and write `document` as config.ini, then move the folder
    /// into place. Refuses if the VM appeared meanwhile.
    pub fn commit(mut self, document: &Document) -> Result<VmEntry, Error> {
        let config_path = self.final_dir.join(CONFIG_FILE);
        let config =
            ConfigFile::from_document(&config_path, document.clone()).map_err(|source| {
                Error::Config {
                    name: self.name.clone(),
                    source,
                }
            })?;
        let staged_config = self.dir.join(CONFIG_FILE);
        fsutil::write_atomic(&staged_config, config.text().as_bytes(), self.owner)
            .map_err(Error::io("write", &staged_config))?;
        fsutil::chown_tree(&self.dir, self.owner).map_err(Error::io("chown", &self.dir))?;
        for path in &self.created_outside {
            fsutil::chown(path, self.owner).map_err(Error::io("chown", path))?;
        }
        // mkdir is the atomic "does it exist" check; renaming a folder onto
        // an empty folder then replaces it.
        match fs::create_dir(&self.final_dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(Error::AlreadyExists {
                    name: self.name.clone(),
                    dir: self.final_dir.clone(),
                });
            }
            Err(e) => return Err(Error::io("create", &self.final_dir)(e)),
        }
        if let Err(e) = fs::rename(&self.dir, &self.final_dir) {
            let _ = fs::remove_dir(&self.final_dir);
            return Err(Error::io("move into place", &self.final_dir)(e));
        }
        self.committed = true;
        if let Some(root) = self.final_dir.parent() {
            let _ = fsutil::sync_dir(root);
        }
        Ok(VmEntry {
            name: self.name.clone(),
            dir: self.final_dir.clone(),
            config,
        })
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        let _ = fs::remove_dir_all(&self.dir);
        for path in &self.created_outside {
            let _ = fs::remove_file(path);
        }
    }
}
