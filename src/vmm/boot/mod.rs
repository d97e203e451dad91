//! PLACEHOLDER with the contract: kernel loaders (bzImage 64/32-bit entry,
//! PVH ELF), boot_params / hvm_start_info, e820, and the boot vCPU's
//! initial registers. Owned by the boot work; bodies to be filled in.

use std::path::Path;

use kvm_ioctls::VcpuFd;
use vm_memory::GuestAddress;

use super::config::BootProtocol;
use super::memory::GuestMemoryMmap;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not implemented yet")]
    NotImplemented,
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

/// Load kernel, initrd and command line into guest memory and write the
/// boot structures. Validates everything before touching guest memory;
/// nothing runs yet.
pub fn load(_mem: &GuestMemoryMmap, _spec: &KernelSpec) -> Result<BootSetup, Error> {
    Err(Error::NotImplemented)
}

/// Set the boot vCPU's general and special registers (GDT, segments,
/// paging) for `setup.entry`. CPUID, MSRs, FPU and LAPIC are the caller's.
pub fn setup_boot_vcpu(
    _vcpu: &VcpuFd,
    _mem: &GuestMemoryMmap,
    _setup: &BootSetup,
) -> Result<(), Error> {
    Err(Error::NotImplemented)
}
