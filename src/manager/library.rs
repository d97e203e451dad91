//! PLACEHOLDER with the contract: the VM library on disk. Owned by the
//! manager work, which replaces the bodies (and may add much more).

use std::path::{Path, PathBuf};

use crate::vmm::VmConfig;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not implemented yet")]
    NotImplemented,
}

/// The folder holding `NAME.xhyvm/` VM folders.
pub struct Library {
    pub root: PathBuf,
}

/// One VM of the library.
pub struct VmEntry {
    pub name: String,
    /// The `NAME.xhyvm` folder.
    pub dir: PathBuf,
}

impl Library {
    /// The library at `home`, or the default one (see README).
    pub fn open(home: Option<&Path>) -> Result<Library, Error> {
        Ok(Library {
            root: home.map(Path::to_path_buf).unwrap_or_default(),
        })
    }

    /// Load the VM called `name` (its config.ini validated).
    pub fn load(&self, _name: &str) -> Result<VmEntry, Error> {
        Err(Error::NotImplemented)
    }
}

impl VmEntry {
    /// The plain-data config the VMM runs; relative paths resolved against
    /// `dir`, `disk:auto` boot resolved (kernel/initrd read from the disk).
    pub fn vmm_config(&self) -> Result<VmConfig, Error> {
        Err(Error::NotImplemented)
    }
}
