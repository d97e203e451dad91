//! Kernel loaders (bzImage with its 64- or 32-bit entry, PVH ELF), the boot
//! structures they need (zero page, `hvm_start_info`, e820), and the boot
//! vCPU's initial registers.
//!
//! [`load`] validates everything it is given before it writes a byte of
//! guest memory; [`setup_boot_vcpu`] is the only part that needs KVM.

mod bzimage;
mod e820;
mod elf;
mod gdt;
#[cfg(test)]
mod kvm_tests;
mod paging;
mod pvh;
mod regs;
#[cfg(test)]
mod testimg;
#[cfg(test)]
mod tests;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use kvm_ioctls::VcpuFd;
use linux_loader::cmdline::Cmdline;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use super::config::BootProtocol;
use super::layout::{CMDLINE_MAX_SIZE, CMDLINE_START, PAGE_SIZE, PVH_INFO_START, ZERO_PAGE_START};
use super::memory::{self, GuestMemoryMmap};
use bzimage::BzImage;
use elf::ElfKernel;

pub use e820::{E820_RAM, E820_RESERVED};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open kernel {path}")]
    KernelOpen {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read kernel {path}")]
    KernelRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("kernel {path} is not a regular file")]
    KernelNotAFile { path: PathBuf },
    #[error("kernel {path} is truncated: {what}")]
    KernelTruncated { path: PathBuf, what: String },
    #[error(
        "{path} is not a kernel: neither a bzImage (no \"HdrS\" setup header at 0x202) nor an ELF file"
    )]
    NotAKernel { path: PathBuf },
    #[error("kernel {path} cannot be booted: {reason}")]
    UnsupportedKernel { path: PathBuf, reason: String },
    #[error(
        "kernel {path} has no 64-bit entry point (boot protocol {version}, needs 2.12 with XLF_KERNEL_64); use the linux32 boot protocol"
    )]
    No64BitEntry { path: PathBuf, version: String },
    #[error("kernel {path} cannot boot through PVH: {reason}")]
    NotPvh { path: PathBuf, reason: String },
    #[error(
        "kernel {path} is an ELF file; the Linux boot protocol ({protocol:?}) needs a bzImage (ELF kernels boot through PVH)"
    )]
    ElfNeedsPvh {
        path: PathBuf,
        protocol: BootProtocol,
    },
    #[error(
        "kernel {path} is a {bits}-bit ELF for {name} (e_machine {machine}), not x86-64 or i386"
    )]
    ElfMachine {
        path: PathBuf,
        machine: u16,
        name: &'static str,
        bits: u8,
    },
    #[error("kernel {path} is not a usable ELF: {reason}")]
    InvalidElf { path: PathBuf, reason: String },
    #[error("kernel {path} does not fit in guest RAM: {reason}")]
    KernelTooLarge { path: PathBuf, reason: String },
    #[error("cannot load kernel {path}")]
    LoadKernel {
        path: PathBuf,
        #[source]
        source: linux_loader::loader::Error,
    },
    #[error("cannot open initrd {path}")]
    InitrdOpen {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read initrd {path}")]
    InitrdRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("initrd {path} is empty")]
    InitrdEmpty { path: PathBuf },
    #[error(
        "initrd {path} ({size} bytes) is too large: {available} bytes are free between the kernel ({lowest:#x}) and {ceiling:#x}"
    )]
    InitrdTooLarge {
        path: PathBuf,
        size: u64,
        available: u64,
        lowest: u64,
        ceiling: u64,
    },
    #[error("kernel command line is {len} bytes, longer than the {max} bytes {limit_from} accepts")]
    CmdlineTooLong {
        len: usize,
        max: u64,
        limit_from: String,
    },
    #[error("cannot write the kernel command line")]
    CmdlineWrite(#[source] linux_loader::loader::Error),
    #[error("kernel command line is invalid: {0}")]
    CmdlineInvalid(String),
    #[error("guest memory does not match the configured {memory_mib} MiB")]
    MemoryMismatch { memory_mib: u64 },
    #[error("cannot write the boot parameters")]
    BootParams(#[source] linux_loader::configurator::Error),
    #[error("cannot write to guest memory")]
    GuestMemory(#[source] vm_memory::GuestMemoryError),
    #[error("cannot {what} of the boot vCPU")]
    Vcpu {
        what: &'static str,
        #[source]
        source: kvm_ioctls::Error,
    },
}

/// What to load.
#[derive(Clone, Copy, Debug)]
pub struct KernelSpec<'a> {
    pub kernel: &'a Path,
    pub initrd: Option<&'a Path>,
    pub cmdline: &'a str,
    pub protocol: BootProtocol,
    /// Guest RAM in MiB (the e820 / PVH memory map is derived from
    /// `memory::ram_regions(memory_mib)`).
    pub memory_mib: u64,
}

/// How the boot vCPU enters the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryPoint {
    /// 64-bit long mode, paging on (identity map), RSI = boot_params.
    Linux64 { rip: u64, boot_params: u64 },
    /// 32-bit protected mode, paging off, ESI = boot_params.
    Linux32 { eip: u64, boot_params: u64 },
    /// 32-bit protected mode, paging off, EBX = hvm_start_info.
    Pvh { eip: u64, start_info: u64 },
}

/// Result of loading: where to enter, and what was placed where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootSetup {
    pub entry: EntryPoint,
    /// Guest-physical address and size of the initrd, if any.
    pub initrd: Option<(GuestAddress, u64)>,
}

/// How many bytes of the kernel file are read to tell the formats apart.
const PROBE_SIZE: u64 = 4096;

enum Image {
    Bz(BzImage),
    Elf(ElfKernel),
}

/// Everything decided before guest memory is written.
struct Plan {
    image: Image,
    entry: EntryPoint,
    /// End of the kernel's memory footprint; the initrd goes above it.
    kernel_end: u64,
    /// End (exclusive) of where the initrd may be placed.
    initrd_ceiling: u64,
    /// Longest command line, without the NUL, and who says so.
    cmdline_limit: (u64, String),
}

/// Load kernel, initrd and command line into guest memory and write the
/// boot structures. Validates everything before touching guest memory;
/// nothing runs yet.
pub fn load(mem: &GuestMemoryMmap, spec: &KernelSpec) -> Result<BootSetup, Error> {
    let expected_end = memory::ram_regions(spec.memory_mib)
        .last()
        .map(|(start, len)| start.0 + len);
    if Some(mem.last_addr().0 + 1) != expected_end {
        return Err(Error::MemoryMismatch {
            memory_mib: spec.memory_mib,
        });
    }
    let map = e820::memory_map(spec.memory_mib);
    let ram_end = e820::low_ram_end(spec.memory_mib);

    let (mut kernel_file, kernel_len) = open_regular(spec.kernel)?;
    let plan = plan(spec, &mut kernel_file, kernel_len, ram_end)?;
    if plan.kernel_end > ram_end {
        return Err(Error::KernelTooLarge {
            path: spec.kernel.to_path_buf(),
            reason: format!(
                "it needs memory up to {:#x}, RAM below the MMIO hole ends at {ram_end:#x} ({} MiB configured)",
                plan.kernel_end, spec.memory_mib
            ),
        });
    }
    let cmdline = build_cmdline(spec.cmdline, &plan.cmdline_limit)?;
    let initrd = match spec.initrd {
        Some(path) => {
            let (file, size) = open_initrd(path)?;
            let lowest = plan.kernel_end.next_multiple_of(PAGE_SIZE);
            let ceiling = plan.initrd_ceiling.min(ram_end);
            let addr = place_initrd(size, lowest, ceiling).ok_or(Error::InitrdTooLarge {
                path: path.to_path_buf(),
                size,
                available: ceiling.saturating_sub(lowest),
                lowest,
                ceiling,
            })?;
            Some((file, path, addr, size))
        }
        None => None,
    };

    // Everything is known to fit: write guest memory.
    match &plan.image {
        Image::Bz(bz) => bz.load_kernel(mem, &mut kernel_file)?,
        Image::Elf(elf) => elf.load(mem, &mut kernel_file)?,
    }
    let placed = match initrd {
        Some((mut file, path, addr, size)) => {
            mem.read_exact_volatile_from(GuestAddress(addr), &mut file, size as usize)
                .map_err(|e| match e {
                    vm_memory::GuestMemoryError::IOError(source) => Error::InitrdRead {
                        path: path.to_path_buf(),
                        source,
                    },
                    other => Error::GuestMemory(other),
                })?;
            Some((addr, size))
        }
        None => None,
    };
    linux_loader::loader::load_cmdline(mem, GuestAddress(CMDLINE_START), &cmdline)
        .map_err(Error::CmdlineWrite)?;
    match &plan.image {
        Image::Bz(bz) => bz.write_boot_params(mem, placed, &map)?,
        Image::Elf(_) => pvh::write(mem, placed, &map)?,
    }
    Ok(BootSetup {
        entry: plan.entry,
        initrd: placed.map(|(addr, size)| (GuestAddress(addr), size)),
    })
}

/// Recognise the kernel format and decide the entry point.
fn plan(spec: &KernelSpec, file: &mut File, len: u64, ram_end: u64) -> Result<Plan, Error> {
    let path = spec.kernel;
    let mut head = Vec::new();
    file.by_ref()
        .take(PROBE_SIZE)
        .read_to_end(&mut head)
        .and_then(|_| file.seek(SeekFrom::Start(0)))
        .map_err(|source| Error::KernelRead {
            path: path.to_path_buf(),
            source,
        })?;

    if head.starts_with(&elf::ELF_MAGIC) {
        if let BootProtocol::Linux64 | BootProtocol::Linux32 = spec.protocol {
            return Err(Error::ElfNeedsPvh {
                path: path.to_path_buf(),
                protocol: spec.protocol,
            });
        }
        let kernel = ElfKernel::parse(path, file, len, ram_end)?;
        let eip = kernel.pvh_entry.ok_or_else(|| Error::NotPvh {
            path: path.to_path_buf(),
            reason: "the ELF has no XEN_ELFNOTE_PHYS32_ENTRY note".into(),
        })?;
        return Ok(Plan {
            entry: EntryPoint::Pvh {
                eip,
                start_info: PVH_INFO_START,
            },
            kernel_end: kernel.footprint_end(),
            initrd_ceiling: u64::MAX,
            cmdline_limit: (CMDLINE_MAX_SIZE as u64 - 1, "the VMM".into()),
            image: Image::Elf(kernel),
        });
    }

    if head.get(bzimage::HDRS_OFFSET..bzimage::HDRS_OFFSET + 4) == Some(b"HdrS".as_slice()) {
        let bz = BzImage::parse(path, &head, len)?;
        let boot_params = ZERO_PAGE_START;
        let entry = match spec.protocol {
            BootProtocol::Pvh => {
                return Err(Error::NotPvh {
                    path: path.to_path_buf(),
                    reason: "it is a bzImage; PVH boots an ELF kernel (vmlinux)".into(),
                });
            }
            BootProtocol::Linux32 => EntryPoint::Linux32 {
                eip: bz.entry_32(),
                boot_params,
            },
            BootProtocol::Linux64 if !bz.has_64bit_entry() => {
                return Err(Error::No64BitEntry {
                    path: path.to_path_buf(),
                    version: bzimage::fmt_version(bz.version()),
                });
            }
            BootProtocol::Linux64 | BootProtocol::Auto if bz.has_64bit_entry() => {
                EntryPoint::Linux64 {
                    rip: bz.entry_64(),
                    boot_params,
                }
            }
            BootProtocol::Linux64 | BootProtocol::Auto => EntryPoint::Linux32 {
                eip: bz.entry_32(),
                boot_params,
            },
        };
        return Ok(Plan {
            entry,
            kernel_end: bz.footprint_end(),
            initrd_ceiling: bz.initrd_ceiling(),
            cmdline_limit: (
                bz.cmdline_limit(),
                format!(
                    "the kernel (setup header cmdline_size of {})",
                    path.display()
                ),
            ),
            image: Image::Bz(bz),
        });
    }

    // A boot sector signature without a complete setup header: a bzImage
    // cut short.
    let boot_flag = head.get(bzimage::BOOT_FLAG_OFFSET..bzimage::BOOT_FLAG_OFFSET + 2);
    if boot_flag == Some(bzimage::BOOT_FLAG_MAGIC.to_le_bytes().as_slice())
        && head.len() < bzimage::SETUP_HEADER_END
    {
        return Err(Error::KernelTruncated {
            path: path.to_path_buf(),
            what: format!(
                "it ends at {len} bytes, inside the setup header (which ends at {:#x})",
                bzimage::SETUP_HEADER_END
            ),
        });
    }
    Err(Error::NotAKernel {
        path: path.to_path_buf(),
    })
}

fn open_regular(path: &Path) -> Result<(File, u64), Error> {
    let file = File::open(path).map_err(|source| Error::KernelOpen {
        path: path.to_path_buf(),
        source,
    })?;
    let meta = file.metadata().map_err(|source| Error::KernelRead {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.is_file() {
        return Err(Error::KernelNotAFile {
            path: path.to_path_buf(),
        });
    }
    Ok((file, meta.len()))
}

fn open_initrd(path: &Path) -> Result<(File, u64), Error> {
    let file = File::open(path).map_err(|source| Error::InitrdOpen {
        path: path.to_path_buf(),
        source,
    })?;
    let meta = file.metadata().map_err(|source| Error::InitrdRead {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.is_file() {
        return Err(Error::InitrdRead {
            path: path.to_path_buf(),
            source: std::io::Error::other("not a regular file"),
        });
    }
    if meta.len() == 0 {
        return Err(Error::InitrdEmpty {
            path: path.to_path_buf(),
        });
    }
    Ok((file, meta.len()))
}

/// The highest page-aligned address at which `size` bytes end by
/// `ceiling` and start at or above `lowest` (boot.rst: "as high as
/// possible" below initrd_addr_max).
fn place_initrd(size: u64, lowest: u64, ceiling: u64) -> Option<u64> {
    let start = ceiling.checked_sub(size)? & !(PAGE_SIZE - 1);
    (start >= lowest).then_some(start)
}

fn build_cmdline(cmdline: &str, (limit, limit_from): &(u64, String)) -> Result<Cmdline, Error> {
    if let Some(c) = cmdline.chars().find(|c| !(' '..='~').contains(c)) {
        return Err(Error::CmdlineInvalid(format!(
            "character {c:?} is not printable ASCII"
        )));
    }
    let trimmed = cmdline.trim();
    let max = (*limit).min(CMDLINE_MAX_SIZE as u64 - 1);
    if trimmed.len() as u64 > max {
        let limit_from = if max < *limit {
            "the VMM".to_string()
        } else {
            limit_from.clone()
        };
        return Err(Error::CmdlineTooLong {
            len: trimmed.len(),
            max,
            limit_from,
        });
    }
    Cmdline::try_from(trimmed, max as usize + 1).map_err(|e| Error::CmdlineInvalid(e.to_string()))
}

/// Set the boot vCPU's general and special registers (GDT, segments,
/// paging) for `setup.entry`. CPUID, MSRs, FPU and LAPIC are the caller's.
pub fn setup_boot_vcpu(
    vcpu: &VcpuFd,
    mem: &GuestMemoryMmap,
    setup: &BootSetup,
) -> Result<(), Error> {
    regs::write_boot_tables(mem, &setup.entry).map_err(Error::GuestMemory)?;
    let current = vcpu.get_sregs().map_err(|source| Error::Vcpu {
        what: "read the special registers",
        source,
    })?;
    vcpu.set_sregs(&regs::boot_sregs(&current, &setup.entry))
        .map_err(|source| Error::Vcpu {
            what: "set the special registers",
            source,
        })?;
    vcpu.set_regs(&regs::boot_regs(&setup.entry))
        .map_err(|source| Error::Vcpu {
            what: "set the general registers",
            source,
        })
}
