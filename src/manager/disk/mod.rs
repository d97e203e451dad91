//! Disk images: sparse raw creation, growing, apparent/allocated sizes,
//! and booting the kernel installed on a disk (`[boot] kernel = disk:auto`)
//! by reading its partition table and ext2/3/4 filesystems in-process.

pub mod boot;
mod bootloader;
pub mod image;
pub mod partition;
pub mod version;

use std::path::{Path, PathBuf};

use crate::manager::iso::{output, progress::Progress};

pub use boot::{DiskKernel, find as find_disk_kernel};
pub use image::{create_sparse, resize, usage};

/// File names of the copies `resolve_disk_boot` makes in its dest folder.
pub const BOOT_KERNEL_NAME: &str = "vmlinuz";
pub const BOOT_INITRD_NAME: &str = "initrd.img";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot access {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} already exists; not overwriting it", .0.display())]
    Exists(PathBuf),
    #[error("{}: a disk image cannot be 0 bytes", .0.display())]
    ZeroSize(PathBuf),
    #[error(
        "{}: shrinking from {old} to {new} bytes would destroy data; pass --allow-shrink to do it anyway",
        .path.display()
    )]
    Shrink { path: PathBuf, old: u64, new: u64 },
    #[error("{} is a {format} image; only raw images are supported (convert with `qemu-img convert -O raw`)", .path.display())]
    NotRaw { path: PathBuf, format: &'static str },
    #[error("cannot read the partition table of {}", .path.display())]
    Partition {
        path: PathBuf,
        #[source]
        source: partition::Error,
    },
    #[error("{} has neither a partition table nor an ext2/3/4 filesystem", .0.display())]
    NoFilesystem(PathBuf),
    #[error("cannot read the ext2/3/4 filesystem on {volume} of {}", .path.display())]
    Ext4 {
        path: PathBuf,
        volume: String,
        #[source]
        source: ext4_view::Ext4Error,
    },
    #[error("no vmlinuz-* kernel found on {} ({looked})", .path.display())]
    NoKernel { path: PathBuf, looked: String },
    #[error(
        "{}: the kernel is on {kernel_volume}, but neither an ext root filesystem (one with /etc) \
         nor a bootloader configuration giving root= was found",
        .path.display()
    )]
    NoRoot {
        path: PathBuf,
        kernel_volume: String,
    },
    #[error("{file} on {} claims {size} bytes, more than a kernel or initrd can be", .path.display())]
    TooLarge {
        path: PathBuf,
        file: String,
        size: u64,
    },
}

impl Error {
    fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The kernel installed on a disk (`[boot] kernel = disk:auto`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskBoot {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    /// `root=UUID=...` for the command line.
    pub root_arg: String,
}

/// Find the newest kernel on `disk` and copy it (and its initrd) into
/// `dest` (created if missing) as `vmlinuz` and `initrd.img`; a stale
/// `initrd.img` is removed when the kernel has none.
pub fn resolve_disk_boot(disk: &Path, dest: &Path) -> Result<DiskBoot, Error> {
    let found = boot::find(disk)?;
    std::fs::create_dir_all(dest).map_err(|e| Error::io(dest, e))?;
    let total = found.kernel_size + found.initrd_size.unwrap_or(0);
    let progress = Progress::bytes(total, "kernel");
    let kernel = dest.join(BOOT_KERNEL_NAME);
    copy_out(disk, &found.volume, &found.kernel, &kernel, &mut |n| {
        progress.set(n)
    })?;
    let initrd_path = dest.join(BOOT_INITRD_NAME);
    let initrd = match &found.initrd {
        Some(path) => {
            progress.set_message("initrd");
            copy_out(disk, &found.volume, path, &initrd_path, &mut |n| {
                progress.set(found.kernel_size + n)
            })?;
            Some(initrd_path)
        }
        None => {
            match std::fs::remove_file(&initrd_path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&initrd_path, e)),
            }
            None
        }
    };
    progress.finish();
    Ok(DiskBoot {
        kernel,
        initrd,
        root_arg: found.root_arg,
    })
}

fn copy_out(
    disk: &Path,
    volume: &str,
    path: &str,
    to: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<(), Error> {
    // The closure must report the disk error, so carry it out of the io::Error.
    let mut failure = None;
    let written = output::write_atomically(to, |out| {
        boot::copy_file(disk, volume, path, out, progress).map_err(|e| {
            failure = Some(e);
            std::io::Error::other("copy failed")
        })
    });
    match (written, failure) {
        (_, Some(e)) => Err(e),
        (Err(e), None) => Err(Error::io(to, e)),
        (Ok(()), None) => Ok(()),
    }
}
