//! PLACEHOLDER with the contract: PCI host bridge, config mechanism #1 at
//! 0xCF8 (plus the RST_CNT byte at 0xCF9), and the virtio-pci devices.

use std::sync::Arc;

use crossbeam_channel::Sender;
use kvm_ioctls::VmFd;

use super::{Bus, VmEvent};
use crate::vmm::config::{DiskConfig, NetConfig};
use crate::vmm::memory::GuestMemoryMmap;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not implemented yet")]
    NotImplemented,
}

/// What to put on PCI bus 0 (device 0 is always the host bridge).
pub struct PciConfig<'a> {
    pub disks: &'a [DiskConfig],
    pub nets: &'a [NetConfig],
    pub rng: bool,
}

/// Owns the PCI devices and any worker threads; dropping it stops them.
pub struct PciDevices {}

/// Create the host bridge and the virtio devices; insert the config-space
/// ports into `pio_bus` and BARs into `mmio_bus`; set up interrupt routing
/// (the IOAPIC pins 0..24 stay routed as KVM's default has them).
pub fn create_pci_devices(
    _vm: &Arc<VmFd>,
    _mem: &GuestMemoryMmap,
    _pio_bus: &Arc<Bus>,
    _mmio_bus: &Arc<Bus>,
    _events: Sender<VmEvent>,
    _config: &PciConfig,
) -> Result<PciDevices, Error> {
    Err(Error::NotImplemented)
}
