//! The kernel installed on a raw disk image: find the ext2/3/4 volumes
//! (whole disk, MBR or GPT partitions), the newest `vmlinuz-*` on a boot
//! partition or in the root filesystem's /boot, its initrd, and the root
//! filesystem's UUID for `root=UUID=...`.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use ext4_view::{Ext4, Ext4Read, FileType};

use super::bootloader;
use super::partition::{self, TableKind};
use super::version::compare_versions;
use super::{Error, image};

/// ext2/3/4 superblock: 1024 bytes in, magic 0xEF53 at offset 56 (LE).
const EXT_SUPERBLOCK_OFFSET: u64 = 1024;
const EXT_MAGIC_OFFSET: u64 = EXT_SUPERBLOCK_OFFSET + 56;
const EXT_MAGIC: [u8; 2] = [0x53, 0xEF];
/// Kernel file names on Debian, Ubuntu, Fedora, Arch...
const KERNEL_PREFIX: &str = "vmlinuz-";
/// Initrd names for kernel version `{}`, in the order distributions use them.
const INITRD_NAMES: &[(&str, &str)] = &[
    ("initrd.img-", ""),
    ("initramfs-", ".img"),
    ("initrd-", ""),
    ("initramfs-", ""),
    ("initrd-", ".img"),
];
/// A directory whose presence marks a root filesystem.
const ROOT_MARKER: &str = "/etc";
/// Kernels and initrds larger than this are not believed.
pub const MAX_BOOT_FILE: u64 = 1 << 30;

/// One place a filesystem may live on the disk.
#[derive(Clone, Debug)]
struct Volume {
    /// "partition 2" or "whole disk".
    name: String,
    start: u64,
    size: u64,
}

/// What `disk:auto` would boot, as found on the disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskKernel {
    /// Where the kernel lives ("partition 1", "whole disk").
    pub volume: String,
    /// Paths inside that filesystem.
    pub kernel: String,
    pub initrd: Option<String>,
    /// The version part of the kernel's name.
    pub version: String,
    pub kernel_size: u64,
    pub initrd_size: Option<u64>,
    /// `root=UUID=...` of the root filesystem (one with /etc); for roots
    /// this tool cannot read (LVM, btrfs), the root parameters of the
    /// bootloader configuration next to the kernel.
    pub root_arg: String,
    /// Where `root_arg` came from ("partition 3", "partition 2:/grub/grub.cfg").
    pub root_source: String,
}

/// `Ext4Read` over one partition of a disk image file; reads outside the
/// partition fail instead of wandering into its neighbours.
struct PartitionReader {
    file: File,
    start: u64,
    size: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("read of {len} bytes at {offset} is outside the {size}-byte volume")]
struct OutOfVolume {
    offset: u64,
    len: usize,
    size: u64,
}

impl Ext4Read for PartitionReader {
    fn read(
        &mut self,
        start_byte: u64,
        dst: &mut [u8],
    ) -> Result<(), Box<dyn core::error::Error + Send + Sync + 'static>> {
        let end = start_byte.checked_add(dst.len() as u64);
        if end.is_none_or(|end| end > self.size) {
            return Err(Box::new(OutOfVolume {
                offset: start_byte,
                len: dst.len(),
                size: self.size,
            }));
        }
        self.file.read_exact_at(dst, self.start + start_byte)?;
        Ok(())
    }
}

/// A kernel candidate in one filesystem.
struct Candidate {
    volume: usize,
    dir: &'static str,
    name: String,
    version: String,
}

/// Find what `disk:auto` boots on `disk`, without copying anything.
pub fn find(disk: &Path) -> Result<DiskKernel, Error> {
    let (filesystems, notes) = open_filesystems(disk)?;
    let mut candidates = Vec::new();
    let mut roots = Vec::new();
    for (index, (_, fs)) in filesystems.iter().enumerate() {
        if fs.exists(ROOT_MARKER).unwrap_or(false) {
            roots.push(index);
        }
        for dir in ["/boot", "/"] {
            candidates.extend(
                kernels_in(fs, dir)
                    .into_iter()
                    .map(|(name, version)| Candidate {
                        volume: index,
                        dir,
                        name,
                        version,
                    }),
            );
        }
    }
    candidates.sort_by(|a, b| compare_versions(&b.version, &a.version));
    let Some(best) = candidates.first() else {
        return Err(Error::NoKernel {
            path: disk.to_path_buf(),
            looked: notes.join("; "),
        });
    };
    let (volume, fs) = &filesystems[best.volume];
    let ext_root = match roots.first() {
        // The kernel's own filesystem, when it is a root (several systems on one disk).
        Some(_) if roots.contains(&best.volume) => Some(best.volume),
        Some(&index) => Some(index),
        // No /etc anywhere: a filesystem whose own /boot holds the kernel is its root.
        None if best.dir == "/boot" => Some(best.volume),
        None => None,
    };
    let (root_arg, root_source) = match ext_root {
        Some(index) => {
            let (root_volume, root_fs) = &filesystems[index];
            (
                format!("root=UUID={}", root_fs.uuid()),
                root_volume.name.clone(),
            )
        }
        None => match bootloader::root_params(fs, &best.name) {
            Some((params, file)) => (params, format!("{}:{file}", volume.name)),
            None => {
                return Err(Error::NoRoot {
                    path: disk.to_path_buf(),
                    kernel_volume: volume.name.clone(),
                });
            }
        },
    };
    let join = |name: &str| {
        if best.dir == "/" {
            format!("/{name}")
        } else {
            format!("{}/{name}", best.dir)
        }
    };
    let kernel = join(&best.name);
    let kernel_size = file_size(fs, &kernel).map_err(|source| Error::Ext4 {
        path: disk.to_path_buf(),
        volume: volume.name.clone(),
        source,
    })?;
    let initrd = INITRD_NAMES
        .iter()
        .map(|(prefix, suffix)| join(&format!("{prefix}{}{suffix}", best.version)))
        .find_map(|path| file_size(fs, &path).ok().map(|size| (path, size)));
    Ok(DiskKernel {
        volume: volume.name.clone(),
        kernel,
        initrd: initrd.as_ref().map(|(p, _)| p.clone()),
        version: best.version.clone(),
        kernel_size,
        initrd_size: initrd.map(|(_, s)| s),
        root_arg,
        root_source,
    })
}

/// Open every ext2/3/4 filesystem on `disk`; the notes say what each other
/// volume was (for the "no kernel found" error).
/// The ext filesystems of a disk, each with the volume it lives on.
type Filesystems = Vec<(Volume, Ext4)>;

fn open_filesystems(disk: &Path) -> Result<(Filesystems, Vec<String>), Error> {
    let file = image::open_raw(disk)?;
    let len = file.metadata().map_err(|e| Error::io(disk, e))?.len();
    let volumes = volumes(&file, disk, len)?;
    let mut filesystems = Vec::new();
    let mut notes = Vec::new();
    let mut failures = Vec::new();
    for volume in volumes {
        if !has_ext_magic(&file, volume.start, volume.size) {
            notes.push(format!("{}: not ext2/3/4", volume.name));
            continue;
        }
        let reader = PartitionReader {
            file: file.try_clone().map_err(|e| Error::io(disk, e))?,
            start: volume.start,
            size: volume.size,
        };
        match Ext4::load(Box::new(reader)) {
            Ok(fs) => {
                notes.push(format!(
                    "{}: ext filesystem without vmlinuz-* in / or /boot",
                    volume.name
                ));
                filesystems.push((volume, fs));
            }
            Err(source) => {
                notes.push(format!(
                    "{}: unreadable ext filesystem ({source})",
                    volume.name
                ));
                failures.push((volume, source));
            }
        }
    }
    // Every ext filesystem failed: that failure is the error, cause kept.
    if filesystems.is_empty()
        && let Some((volume, source)) = failures.into_iter().next()
    {
        return Err(Error::Ext4 {
            path: disk.to_path_buf(),
            volume: volume.name,
            source,
        });
    }
    Ok((filesystems, notes))
}

fn volumes(file: &File, disk: &Path, len: u64) -> Result<Vec<Volume>, Error> {
    if has_ext_magic(file, 0, len) {
        return Ok(vec![Volume {
            name: "whole disk".to_string(),
            start: 0,
            size: len,
        }]);
    }
    let table = partition::read(file, len).map_err(|source| Error::Partition {
        path: disk.to_path_buf(),
        source,
    })?;
    let Some((_, parts)) = table else {
        return Err(Error::NoFilesystem(disk.to_path_buf()));
    };
    Ok(parts
        .into_iter()
        .map(|p| Volume {
            name: format!("partition {}", p.number),
            start: p.start,
            size: p.size,
        })
        .collect())
}

fn has_ext_magic(file: &File, start: u64, size: u64) -> bool {
    let mut magic = [0u8; 2];
    size >= EXT_MAGIC_OFFSET + 2
        && file
            .read_exact_at(&mut magic, start + EXT_MAGIC_OFFSET)
            .is_ok()
        && magic == EXT_MAGIC
}

/// `(file name, version)` of the regular `vmlinuz-*` files in `dir`.
fn kernels_in(fs: &Ext4, dir: &str) -> Vec<(String, String)> {
    let Ok(entries) = fs.read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| matches!(e.file_type(), Ok(FileType::Regular)))
        .filter_map(|e| {
            let name = e.file_name().as_str().ok()?.to_string();
            let version = name.strip_prefix(KERNEL_PREFIX)?.to_string();
            (!version.is_empty()).then_some((name, version))
        })
        .collect()
}

fn file_size(fs: &Ext4, path: &str) -> Result<u64, ext4_view::Ext4Error> {
    let meta = fs.metadata(path)?;
    if meta.file_type() != FileType::Regular {
        return Err(ext4_view::Ext4Error::IsASpecialFile);
    }
    Ok(meta.len())
}

/// Copy `path` from the volume named `volume` of `disk` into `out`.
pub fn copy_file(
    disk: &Path,
    volume: &str,
    path: &str,
    out: &mut dyn std::io::Write,
    progress: &mut dyn FnMut(u64),
) -> Result<(), Error> {
    let (filesystems, _) = open_filesystems(disk)?;
    let (_, fs) = filesystems
        .iter()
        .find(|(v, _)| v.name == volume)
        .ok_or_else(|| Error::NoFilesystem(disk.to_path_buf()))?;
    let ext4_err = |source| Error::Ext4 {
        path: disk.to_path_buf(),
        volume: volume.to_string(),
        source,
    };
    let mut file = fs.open(path).map_err(ext4_err)?;
    let size = file.metadata().len();
    if size > MAX_BOOT_FILE {
        return Err(Error::TooLarge {
            path: disk.to_path_buf(),
            file: path.to_string(),
            size,
        });
    }
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    loop {
        let n = file.read_bytes(&mut buf).map_err(ext4_err)?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n]).map_err(|e| Error::io(disk, e))?;
        done += n as u64;
        progress(done);
    }
    Ok(())
}

/// For `disk info`: the partition table kind, if any.
pub fn table_kind(
    file: &File,
    len: u64,
) -> Result<Option<(TableKind, Vec<partition::Partition>)>, partition::Error> {
    partition::read(file, len)
}
