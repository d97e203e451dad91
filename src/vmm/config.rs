//! The plain-data description of a VM that `vmm` runs.
//!
//! The manager turns config.ini into this; `vmm` never sees config.ini.

use std::path::PathBuf;

/// How the kernel image is entered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BootProtocol {
    /// Decide from the image: an ELF with a PVH note boots through PVH; a
    /// bzImage through its 64-bit entry when the setup header advertises
    /// XLF_KERNEL_64, otherwise through the 32-bit protected-mode entry.
    #[default]
    Auto,
    /// Linux boot protocol, 64-bit entry (`startup_64`, code32_start + 0x200).
    Linux64,
    /// Linux boot protocol, 32-bit protected-mode entry (`code32_start`),
    /// the path xhyve's `kexec` always took.
    Linux32,
    /// PVH: ELF kernel with a XEN_ELFNOTE_PHYS32_ENTRY note (Linux vmlinux,
    /// FreeBSD >= 14).
    Pvh,
}

/// A virtio-blk disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskConfig {
    pub path: PathBuf,
    pub read_only: bool,
}

/// A virtio-net interface backed by a host TAP device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetConfig {
    /// Name of an existing TAP interface, or one to create (needs CAP_NET_ADMIN).
    pub tap: String,
    pub mac: [u8; 6],
}

/// Everything `vmm::build` needs to create a VM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmConfig {
    /// Shown in errors and status.
    pub name: String,
    /// Number of vCPUs, 1..=`layout::MAX_VCPUS`.
    pub vcpus: u8,
    /// Guest RAM in MiB.
    pub memory_mib: u64,
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
    pub boot_protocol: BootProtocol,
    /// virtio-blk disks, in PCI slot order.
    pub disks: Vec<DiskConfig>,
    /// virtio-net interfaces.
    pub nets: Vec<NetConfig>,
    /// Attach a virtio-rng device.
    pub rng: bool,
    /// Attach a second UART as COM2 (its output is discarded unless a sink is given).
    pub com2: bool,
}

impl VmConfig {
    /// A config with one vCPU, `memory_mib` of RAM and no devices beyond the
    /// built-in ones. Handy for tests and for the manager to fill in.
    pub fn new(name: impl Into<String>, kernel: impl Into<PathBuf>, memory_mib: u64) -> Self {
        VmConfig {
            name: name.into(),
            vcpus: 1,
            memory_mib,
            kernel: kernel.into(),
            initrd: None,
            cmdline: String::new(),
            boot_protocol: BootProtocol::Auto,
            disks: Vec::new(),
            nets: Vec::new(),
            rng: false,
            com2: false,
        }
    }
}
