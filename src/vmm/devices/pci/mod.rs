//! PCI: the host bridge, configuration mechanism #1 at 0xCF8 (plus the
//! RST_CNT byte at 0xCF9), MSI-X routing, and the virtio-pci devices.
//!
//! Bus 0 holds, in device-number order: the host bridge (device 0), one
//! virtio-blk per disk, one virtio-net per interface, then virtio-rng.
//! Each virtio function has one 32 KiB memory BAR, pre-assigned from
//! `PCI_MMIO_START` upward (memory decode off until the guest enables it;
//! the guest may move it) and MSI-X vectors routed through KVM GSIs from
//! `MSI_GSI_START` (see [`msi_routing`]). There is no INTx.

use std::sync::{Arc, Mutex};

use crossbeam_channel::Sender;
use kvm_ioctls::VmFd;

use super::virtio::net::NetBackend;
use super::virtio::pci::{BAR_SIZE, VirtioPciDevice};
use super::virtio::{Tap, VirtioDevice, block, rng};
use super::{Bus, BusError, VmEvent};
use crate::vmm::config::{DiskConfig, NetConfig};
use crate::vmm::layout::{PCI_CONFIG_ADDRESS_PORT, PCI_MMIO_SIZE, PCI_MMIO_START};
use crate::vmm::memory::GuestMemoryMmap;

pub mod config_io;
pub mod configuration;
pub mod host_bridge;
pub mod msi_routing;
pub mod msix;

use config_io::{PCI_CONFIG_IO_SIZE, PciConfigIo, PciRoot};
use host_bridge::HostBridge;
use msi_routing::{KvmMsiRouter, MsiRouter};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot set up GSI routing for MSI-X")]
    Routing(#[source] msi_routing::Error),
    #[error("virtio-blk")]
    Block(#[source] block::Error),
    #[error("virtio-net")]
    Tap(#[source] super::virtio::tap::Error),
    #[error("virtio-rng")]
    Rng(#[source] rng::Error),
    #[error("virtio-pci transport of device {device}")]
    Transport {
        device: usize,
        #[source]
        source: super::virtio::pci::Error,
    },
    #[error("PCI bus 0")]
    Bus(#[source] config_io::Error),
    #[error("cannot claim the PCI configuration ports")]
    Ports(#[source] BusError),
    #[error("no room left for a {BAR_SIZE:#x}-byte BAR in the PCI MMIO window")]
    OutOfMmio,
}

/// What to put on PCI bus 0 (device 0 is always the host bridge).
pub struct PciConfig<'a> {
    pub disks: &'a [DiskConfig],
    pub nets: &'a [NetConfig],
    pub rng: bool,
}

/// Owns the PCI devices and any worker threads; dropping it stops them.
pub struct PciDevices {
    virtio: Vec<Arc<Mutex<VirtioPciDevice>>>,
    router: Arc<dyn MsiRouter>,
}

impl PciDevices {
    /// Number of virtio functions (bus 0 device numbers 1..=n).
    pub fn virtio_count(&self) -> usize {
        self.virtio.len()
    }

    /// The router, for devices added later or for inspection.
    pub fn router(&self) -> Arc<dyn MsiRouter> {
        self.router.clone()
    }
}

// The VMM may hand the devices to another thread (e.g. its controller).
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<PciDevices>();
};

impl Drop for PciDevices {
    fn drop(&mut self) {
        // The buses still hold the devices; stop their threads explicitly.
        for device in &self.virtio {
            device.lock().unwrap_or_else(|e| e.into_inner()).shutdown();
        }
    }
}

/// Hands out naturally aligned BAR addresses from the PCI MMIO window.
struct BarAllocator {
    next: u64,
}

impl BarAllocator {
    fn allocate(&mut self, size: u64) -> Option<u32> {
        let addr = self.next.next_multiple_of(size);
        let end = addr.checked_add(size)?;
        if end > PCI_MMIO_START + PCI_MMIO_SIZE {
            return None;
        }
        self.next = end;
        u32::try_from(addr).ok()
    }
}

/// Create the host bridge and the virtio devices; insert the config-space
/// ports into `pio_bus` and BARs into `mmio_bus`; set up interrupt routing
/// (the IOAPIC pins 0..24 stay routed as KVM's default has them).
///
/// The VM must already have its in-kernel irqchip (KVM_CREATE_IRQCHIP):
/// the routing table installed here and the MSI irqfds need it. Call this
/// once per VM: the GSI routing table is owned by this module from then on.
pub fn create_pci_devices(
    vm: &Arc<VmFd>,
    mem: &GuestMemoryMmap,
    pio_bus: &Arc<Bus>,
    mmio_bus: &Arc<Bus>,
    events: Sender<VmEvent>,
    config: &PciConfig,
) -> Result<PciDevices, Error> {
    let router: Arc<dyn MsiRouter> =
        Arc::new(KvmMsiRouter::new(vm.clone()).map_err(Error::Routing)?);
    let mut virtio_devices: Vec<Box<dyn VirtioDevice>> = Vec::new();
    for disk in config.disks {
        virtio_devices.push(Box::new(block::Block::new(disk).map_err(Error::Block)?));
    }
    for net in config.nets {
        let tap: Arc<dyn NetBackend> = Arc::new(Tap::open(&net.tap).map_err(Error::Tap)?);
        virtio_devices.push(Box::new(super::virtio::net::Net::new(tap, net.mac)));
    }
    if config.rng {
        virtio_devices.push(Box::new(rng::Rng::new().map_err(Error::Rng)?));
    }
    build_bus(virtio_devices, mem, pio_bus, mmio_bus, events, router)
}

/// Put the host bridge and `virtio_devices` on bus 0 and claim the ports.
fn build_bus(
    virtio_devices: Vec<Box<dyn VirtioDevice>>,
    mem: &GuestMemoryMmap,
    pio_bus: &Arc<Bus>,
    mmio_bus: &Arc<Bus>,
    events: Sender<VmEvent>,
    router: Arc<dyn MsiRouter>,
) -> Result<PciDevices, Error> {
    let mut root = PciRoot::new(mmio_bus.clone());
    root.add_device(Arc::new(Mutex::new(HostBridge::new())), None)
        .map_err(Error::Bus)?;
    let mut bars = BarAllocator {
        next: PCI_MMIO_START,
    };
    let mut virtio = Vec::new();
    for device in virtio_devices {
        let bar = bars.allocate(BAR_SIZE).ok_or(Error::OutOfMmio)?;
        let index = virtio.len() + 1;
        let pci =
            VirtioPciDevice::new(device, mem.clone(), router.clone(), bar).map_err(|source| {
                Error::Transport {
                    device: index,
                    source,
                }
            })?;
        let pci = Arc::new(Mutex::new(pci));
        root.add_device(pci.clone(), Some(pci.clone()))
            .map_err(Error::Bus)?;
        virtio.push(pci);
    }
    let config_io = Arc::new(Mutex::new(PciConfigIo::new(root, events)));
    pio_bus
        .insert(
            config_io,
            u64::from(PCI_CONFIG_ADDRESS_PORT),
            PCI_CONFIG_IO_SIZE,
        )
        .map_err(Error::Ports)?;
    Ok(PciDevices { virtio, router })
}

#[cfg(test)]
mod tests;
