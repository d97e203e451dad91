//! PLACEHOLDER with the contract: ISO 9660 reading and distribution
//! detection. Owned by the ISO/disk work, which replaces the bodies.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not implemented yet")]
    NotImplemented,
}

/// What boots an installer ISO.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IsoBoot {
    /// Distribution name from the detection table ("debian", "arch", ...).
    pub distro: String,
    /// Paths inside the ISO.
    pub kernel: String,
    pub initrd: String,
    /// Kernel command line the installer needs (console on ttyS0, media label...).
    pub cmdline: String,
}

/// Detect what boots `iso`.
pub fn inspect(_iso: &Path) -> Result<IsoBoot, Error> {
    Err(Error::NotImplemented)
}

/// Copy kernel and initrd of `boot` out of `iso` into `dest`; returns their paths.
pub fn extract(_iso: &Path, _boot: &IsoBoot, _dest: &Path) -> Result<(PathBuf, PathBuf), Error> {
    Err(Error::NotImplemented)
}

/// `extract ISO [--to DIR]` arguments.
#[derive(Debug, clap::Args)]
pub struct ExtractArgs {
    pub iso: PathBuf,
    #[arg(long)]
    pub to: Option<PathBuf>,
}

pub fn run_extract(_args: &ExtractArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("extract is not implemented yet")
}
