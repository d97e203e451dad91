//! PLACEHOLDER with the contract: disk images (sparse create, resize, sizes)
//! and booting the kernel installed on a disk. Owned by the ISO/disk work.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not implemented yet")]
    NotImplemented,
}

/// Create a sparse raw image of `size` bytes; refuses to overwrite.
pub fn create_sparse(_path: &Path, _size: u64) -> Result<(), Error> {
    Err(Error::NotImplemented)
}

/// Apparent and allocated size of an image, in bytes.
pub fn usage(_path: &Path) -> Result<(u64, u64), Error> {
    Err(Error::NotImplemented)
}

/// The kernel installed on a disk (`[boot] kernel = disk:auto`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskBoot {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    /// `root=UUID=...` for the command line.
    pub root_arg: String,
}

/// Find the newest kernel on `disk` and copy it (and its initrd) into `dest`.
pub fn resolve_disk_boot(_disk: &Path, _dest: &Path) -> Result<DiskBoot, Error> {
    Err(Error::NotImplemented)
}

/// `disk create|resize|info` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum DiskCommand {
    /// Create a sparse raw disk image.
    Create { path: PathBuf, size: String },
}

pub fn run(_command: &DiskCommand) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("disk is not implemented yet")
}
