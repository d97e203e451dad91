//! The virtio-pci modern transport (virtio 1.2 §4.1).
//!
//! One 32-bit memory BAR (BAR 0, 32 KiB) holds every structure, each in its
//! own 4 KiB page:
//!
//! | offset | structure |
//! |---|---|
//! | 0x0000 | common configuration (`virtio_pci_common_cfg`) |
//! | 0x1000 | ISR status (read clears) |
//! | 0x2000 | device-specific configuration |
//! | 0x3000 | notifications: queue n at n * 4 (`notify_off_multiplier` 4) |
//! | 0x4000 | MSI-X table (one vector per queue, plus one for config) |
//! | 0x5000 | MSI-X pending bit array |
//!
//! The function has no INTx (interrupt pin 0; the ACPI tables carry no
//! `_PRT`), so a driver must enable MSI-X, which Linux does by default.
//! While MSI-X is off the ISR still records interrupts but none is raised.

use std::sync::atomic::{AtomicU8, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use virtio_bindings::virtio_config;
use virtio_queue::{Queue, QueueT};

use super::{Activation, InterruptKind, VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX};
use super::{VirtioDevice, VirtioInterrupt};
use crate::vmm::devices::BusDevice;
use crate::vmm::devices::pci::config_io::PciDevice;
use crate::vmm::devices::pci::configuration::{self, PciConfiguration, PciHeader};
use crate::vmm::devices::pci::msi_routing::{self, MsiRouter};
use crate::vmm::devices::pci::msix::{self, MSIX_MESSAGE_CONTROL_OFFSET, Msix};
use crate::vmm::memory::GuestMemoryMmap;

// virtio-bindings 0.2.7 has no `virtio_pci` module (linux/virtio_pci.h):
// the PCI IDs, capability, common-config, ISR and MSI-X constants below are
// our own; the device status bits come from its `virtio_config`.

/// Red Hat, Inc., the virtio vendor ID (virtio 1.2 §4.1.2).
pub const VIRTIO_PCI_VENDOR_ID: u16 = 0x1af4;
/// Modern device IDs are 0x1040 + the virtio device ID.
pub const VIRTIO_PCI_DEVICE_ID_BASE: u16 = 0x1040;
/// Non-transitional devices: revision 1, subsystem ID >= 0x40.
pub const VIRTIO_PCI_REVISION: u8 = 1;
pub const VIRTIO_PCI_SUBSYSTEM_ID: u16 = 0x40;

/// Vendor-specific capability ID carrying virtio structures.
pub const PCI_CAP_ID_VENDOR: u8 = 0x09;
/// `cfg_type` values (virtio 1.2 §4.1.4).
pub const VIRTIO_PCI_CAP_COMMON_CFG: u8 = 1;
pub const VIRTIO_PCI_CAP_NOTIFY_CFG: u8 = 2;
pub const VIRTIO_PCI_CAP_ISR_CFG: u8 = 3;
pub const VIRTIO_PCI_CAP_DEVICE_CFG: u8 = 4;
pub const VIRTIO_PCI_CAP_PCI_CFG: u8 = 5;
/// Field offsets inside `struct virtio_pci_cap` and `virtio_pci_cfg_cap`.
const CAP_BAR: usize = 4;
const CAP_OFFSET: usize = 8;
const CAP_LENGTH: usize = 12;
const PCI_CFG_CAP_DATA: usize = 16;
/// Bytes of `struct virtio_pci_cap`, and of the notify / pci_cfg variants.
const VIRTIO_PCI_CAP_LEN: u8 = 16;
const VIRTIO_PCI_CAP_EXT_LEN: u8 = 20;

/// BAR 0 layout (see the module docs).
pub const BAR_SIZE: u64 = 0x8000;
pub const COMMON_CFG_OFFSET: u64 = 0x0000;
pub const COMMON_CFG_SIZE: u64 = 0x38;
pub const ISR_OFFSET: u64 = 0x1000;
pub const ISR_SIZE: u64 = 1;
pub const DEVICE_CFG_OFFSET: u64 = 0x2000;
pub const DEVICE_CFG_SIZE: u64 = 0x1000;
pub const NOTIFY_OFFSET: u64 = 0x3000;
pub const NOTIFY_OFF_MULTIPLIER: u32 = 4;
pub const MSIX_TABLE_OFFSET: u64 = 0x4000;
pub const MSIX_PBA_OFFSET: u64 = 0x5000;
const REGION_SIZE: u64 = 0x1000;

/// Device status bits (virtio 1.2 §2.1), as the `u8` `device_status` holds.
pub const STATUS_ACKNOWLEDGE: u8 = virtio_config::VIRTIO_CONFIG_S_ACKNOWLEDGE as u8;
pub const STATUS_DRIVER: u8 = virtio_config::VIRTIO_CONFIG_S_DRIVER as u8;
pub const STATUS_DRIVER_OK: u8 = virtio_config::VIRTIO_CONFIG_S_DRIVER_OK as u8;
pub const STATUS_FEATURES_OK: u8 = virtio_config::VIRTIO_CONFIG_S_FEATURES_OK as u8;
pub const STATUS_DEVICE_NEEDS_RESET: u8 = virtio_config::VIRTIO_CONFIG_S_NEEDS_RESET as u8;
pub const STATUS_FAILED: u8 = virtio_config::VIRTIO_CONFIG_S_FAILED as u8;
/// "No MSI-X vector" (virtio 1.2 §4.1.5.1.2).
pub const VIRTIO_MSI_NO_VECTOR: u16 = 0xffff;
/// ISR bits (virtio 1.2 §4.1.4.5).
pub const ISR_QUEUE: u8 = 1;
pub const ISR_CONFIG: u8 = 2;

/// `virtio_pci_common_cfg` field offsets (virtio 1.2 §4.1.4.3).
mod common {
    pub const DEVICE_FEATURE_SELECT: u64 = 0x00;
    pub const DEVICE_FEATURE: u64 = 0x04;
    pub const DRIVER_FEATURE_SELECT: u64 = 0x08;
    pub const DRIVER_FEATURE: u64 = 0x0c;
    pub const CONFIG_MSIX_VECTOR: u64 = 0x10;
    pub const NUM_QUEUES: u64 = 0x12;
    pub const DEVICE_STATUS: u64 = 0x14;
    pub const CONFIG_GENERATION: u64 = 0x15;
    pub const QUEUE_SELECT: u64 = 0x16;
    pub const QUEUE_SIZE: u64 = 0x18;
    pub const QUEUE_MSIX_VECTOR: u64 = 0x1a;
    pub const QUEUE_ENABLE: u64 = 0x1c;
    pub const QUEUE_NOTIFY_OFF: u64 = 0x1e;
    pub const QUEUE_DESC: u64 = 0x20;
    pub const QUEUE_DESC_HI: u64 = 0x24;
    pub const QUEUE_DRIVER: u64 = 0x28;
    pub const QUEUE_DRIVER_HI: u64 = 0x2c;
    pub const QUEUE_DEVICE: u64 = 0x30;
    pub const QUEUE_DEVICE_HI: u64 = 0x34;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot set up MSI-X vectors")]
    Msix(#[source] msi_routing::Error),
    #[error("invalid PCI configuration")]
    Config(#[source] configuration::Error),
    #[error("device declares an invalid queue size")]
    Queue(#[source] virtio_queue::Error),
}

/// Delivers a device's interrupts through its MSI-X vectors.
pub struct PciInterrupt {
    msix: Mutex<Msix>,
    isr: AtomicU8,
    config_vector: AtomicU16,
    queue_vectors: Vec<AtomicU16>,
}

impl PciInterrupt {
    fn msix(&self) -> std::sync::MutexGuard<'_, Msix> {
        self.msix.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn vector_slot(&self, kind: InterruptKind) -> Option<&AtomicU16> {
        match kind {
            InterruptKind::Config => Some(&self.config_vector),
            InterruptKind::Queue(q) => self.queue_vectors.get(usize::from(q)),
        }
    }
}

impl VirtioInterrupt for PciInterrupt {
    fn trigger(&self, kind: InterruptKind) {
        let bit = match kind {
            InterruptKind::Queue(_) => ISR_QUEUE,
            InterruptKind::Config => ISR_CONFIG,
        };
        self.isr.fetch_or(bit, Ordering::SeqCst);
        if let Some(slot) = self.vector_slot(kind) {
            let vector = slot.load(Ordering::SeqCst);
            if vector != VIRTIO_MSI_NO_VECTOR {
                self.msix().trigger(vector);
            }
        }
    }
}

/// The PCI side of one virtio device.
pub struct VirtioPciDevice {
    cfg: PciConfiguration,
    device: Box<dyn VirtioDevice>,
    mem: GuestMemoryMmap,
    interrupt: Arc<PciInterrupt>,
    msix_cap: usize,
    pci_cfg_cap: usize,
    device_feature_select: u32,
    driver_feature_select: u32,
    driver_features: u64,
    status: u8,
    queue_select: u16,
    queues: Vec<Queue>,
}

impl VirtioPciDevice {
    /// Wrap `device`, with BAR 0 initially at `bar_addr` (decode off).
    pub fn new(
        device: Box<dyn VirtioDevice>,
        mem: GuestMemoryMmap,
        router: Arc<dyn MsiRouter>,
        bar_addr: u32,
    ) -> Result<Self, Error> {
        let queues = device
            .queue_max_sizes()
            .iter()
            .map(|&size| Queue::new(size))
            .collect::<Result<Vec<_>, _>>()
            .map_err(Error::Queue)?;
        let num_vectors = queues.len() as u16 + 1;
        let msix = Msix::new(num_vectors, router).map_err(Error::Msix)?;
        let interrupt = Arc::new(PciInterrupt {
            msix: Mutex::new(msix),
            isr: AtomicU8::new(0),
            config_vector: AtomicU16::new(VIRTIO_MSI_NO_VECTOR),
            queue_vectors: (0..queues.len())
                .map(|_| AtomicU16::new(VIRTIO_MSI_NO_VECTOR))
                .collect(),
        });
        let (class, subclass) = class_of(device.device_type());
        let mut cfg = PciConfiguration::new(&PciHeader {
            vendor_id: VIRTIO_PCI_VENDOR_ID,
            device_id: VIRTIO_PCI_DEVICE_ID_BASE + device.device_type(),
            revision_id: VIRTIO_PCI_REVISION,
            class,
            subclass,
            prog_if: 0,
            subsystem_vendor_id: VIRTIO_PCI_VENDOR_ID,
            subsystem_id: VIRTIO_PCI_SUBSYSTEM_ID,
        });
        cfg.add_bar0_mem32(bar_addr, BAR_SIZE)
            .map_err(Error::Config)?;
        let (msix_cap, pci_cfg_cap) =
            Self::add_capabilities(&mut cfg, num_vectors).map_err(Error::Config)?;
        Ok(VirtioPciDevice {
            cfg,
            device,
            mem,
            interrupt,
            msix_cap,
            pci_cfg_cap,
            device_feature_select: 0,
            driver_feature_select: 0,
            driver_features: 0,
            status: 0,
            queue_select: 0,
            queues,
        })
    }

    fn add_capabilities(
        cfg: &mut PciConfiguration,
        num_vectors: u16,
    ) -> Result<(usize, usize), configuration::Error> {
        let vendor_cap = |cfg_type: u8, offset: u64, length: u64, extra: Option<u32>| {
            let len = if extra.is_some() {
                VIRTIO_PCI_CAP_EXT_LEN
            } else {
                VIRTIO_PCI_CAP_LEN
            };
            let mut cap = vec![PCI_CAP_ID_VENDOR, 0, len, cfg_type, 0, 0, 0, 0];
            cap.extend_from_slice(&(offset as u32).to_le_bytes());
            cap.extend_from_slice(&(length as u32).to_le_bytes());
            if let Some(extra) = extra {
                cap.extend_from_slice(&extra.to_le_bytes());
            }
            cap
        };
        cfg.add_capability(&vendor_cap(
            VIRTIO_PCI_CAP_COMMON_CFG,
            COMMON_CFG_OFFSET,
            COMMON_CFG_SIZE,
            None,
        ))?;
        cfg.add_capability(&vendor_cap(
            VIRTIO_PCI_CAP_NOTIFY_CFG,
            NOTIFY_OFFSET,
            REGION_SIZE,
            Some(NOTIFY_OFF_MULTIPLIER),
        ))?;
        cfg.add_capability(&vendor_cap(
            VIRTIO_PCI_CAP_ISR_CFG,
            ISR_OFFSET,
            ISR_SIZE,
            None,
        ))?;
        cfg.add_capability(&vendor_cap(
            VIRTIO_PCI_CAP_DEVICE_CFG,
            DEVICE_CFG_OFFSET,
            DEVICE_CFG_SIZE,
            None,
        ))?;
        // The PCI configuration access capability: bar, offset, length and
        // the data window are the driver's to write (virtio 1.2 §4.1.4.9).
        let pci_cfg_cap = cfg.add_capability(&vendor_cap(VIRTIO_PCI_CAP_PCI_CFG, 0, 0, Some(0)))?;
        cfg.set_writable(pci_cfg_cap + CAP_BAR, 0xff);
        cfg.set_writable(pci_cfg_cap + CAP_OFFSET, u32::MAX);
        cfg.set_writable(pci_cfg_cap + CAP_LENGTH, u32::MAX);
        cfg.set_writable(pci_cfg_cap + PCI_CFG_CAP_DATA, u32::MAX);
        let msix_cap = cfg.add_capability(&msix::capability(
            num_vectors,
            0,
            MSIX_TABLE_OFFSET as u32,
            MSIX_PBA_OFFSET as u32,
        ))?;
        cfg.set_writable(
            msix_cap + MSIX_MESSAGE_CONTROL_OFFSET,
            u32::from(msix::MSIX_ENABLE | msix::MSIX_FUNCTION_MASK),
        );
        Ok((msix_cap, pci_cfg_cap))
    }

    /// The interrupt object devices signal through (tests use it directly).
    pub fn interrupt(&self) -> Arc<PciInterrupt> {
        self.interrupt.clone()
    }

    pub fn status(&self) -> u8 {
        self.status
    }

    /// The VM is going away: stop the device and its threads.
    pub fn shutdown(&mut self) {
        self.reset();
    }

    fn selected_queue(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(usize::from(self.queue_select))
    }

    fn read_common(&self, offset: u64, data: &mut [u8]) {
        let queue = self.queues.get(usize::from(self.queue_select));
        let queue_vector = || {
            self.interrupt
                .queue_vectors
                .get(usize::from(self.queue_select))
                .map_or(VIRTIO_MSI_NO_VECTOR, |v| v.load(Ordering::SeqCst))
        };
        let feature_word = |features: u64, select: u32| match select {
            0 => features as u32,
            1 => (features >> 32) as u32,
            _ => 0,
        };
        use common::*;
        let value: u64 = match offset {
            DEVICE_FEATURE_SELECT => self.device_feature_select.into(),
            DEVICE_FEATURE => {
                feature_word(self.device.features(), self.device_feature_select).into()
            }
            DRIVER_FEATURE_SELECT => self.driver_feature_select.into(),
            DRIVER_FEATURE => feature_word(self.driver_features, self.driver_feature_select).into(),
            CONFIG_MSIX_VECTOR => self.interrupt.config_vector.load(Ordering::SeqCst).into(),
            NUM_QUEUES => self.queues.len() as u64,
            DEVICE_STATUS => self.status.into(),
            // The device configuration never changes while the driver runs.
            CONFIG_GENERATION => 0,
            QUEUE_SELECT => self.queue_select.into(),
            QUEUE_SIZE => queue.map_or(0, |q| q.size()).into(),
            QUEUE_MSIX_VECTOR => queue_vector().into(),
            QUEUE_ENABLE => queue.is_some_and(|q| q.ready()).into(),
            QUEUE_NOTIFY_OFF => self.queue_select.into(),
            QUEUE_DESC => queue.map_or(0, |q| q.desc_table()),
            QUEUE_DESC_HI => queue.map_or(0, |q| q.desc_table() >> 32),
            QUEUE_DRIVER => queue.map_or(0, |q| q.avail_ring()),
            QUEUE_DRIVER_HI => queue.map_or(0, |q| q.avail_ring() >> 32),
            QUEUE_DEVICE => queue.map_or(0, |q| q.used_ring()),
            QUEUE_DEVICE_HI => queue.map_or(0, |q| q.used_ring() >> 32),
            _ => 0,
        };
        let bytes = value.to_le_bytes();
        let n = data.len().min(8);
        data[..n].copy_from_slice(&bytes[..n]);
    }

    fn write_common(&mut self, offset: u64, data: &[u8]) {
        let mut bytes = [0u8; 8];
        let n = data.len().min(8);
        bytes[..n].copy_from_slice(&data[..n]);
        let value = u64::from_le_bytes(bytes);
        let (lo, hi) = (value as u32, (value >> 32) as u32);
        let queue_writable = self.status & STATUS_DRIVER_OK == 0;
        let num_vectors = self.interrupt.msix().num_vectors();
        let vector = |v: u64| {
            let v = v as u16;
            if v < num_vectors {
                v
            } else {
                VIRTIO_MSI_NO_VECTOR
            }
        };
        use common::*;
        match offset {
            DEVICE_FEATURE_SELECT => self.device_feature_select = lo,
            DRIVER_FEATURE_SELECT => self.driver_feature_select = lo,
            DRIVER_FEATURE if self.status & STATUS_FEATURES_OK == 0 => {
                match self.driver_feature_select {
                    0 => {
                        self.driver_features = (self.driver_features & !0xffff_ffff) | u64::from(lo)
                    }
                    1 => {
                        self.driver_features =
                            (self.driver_features & 0xffff_ffff) | u64::from(lo) << 32
                    }
                    _ => {}
                }
            }
            CONFIG_MSIX_VECTOR => self
                .interrupt
                .config_vector
                .store(vector(value), Ordering::SeqCst),
            DEVICE_STATUS => self.set_status(lo as u8),
            QUEUE_SELECT => self.queue_select = lo as u16,
            QUEUE_MSIX_VECTOR => {
                if let Some(slot) = self
                    .interrupt
                    .queue_vectors
                    .get(usize::from(self.queue_select))
                {
                    slot.store(vector(value), Ordering::SeqCst);
                }
            }
            _ if !queue_writable => {}
            QUEUE_SIZE => {
                if let Some(q) = self.selected_queue().filter(|q| !q.ready()) {
                    // An invalid size is refused; the old one stays visible.
                    let _ = q.try_set_size(lo as u16);
                }
            }
            QUEUE_ENABLE if lo & 1 == 1 => {
                if let Some(q) = self.selected_queue() {
                    q.set_ready(true);
                }
            }
            QUEUE_DESC | QUEUE_DESC_HI | QUEUE_DRIVER | QUEUE_DRIVER_HI | QUEUE_DEVICE
            | QUEUE_DEVICE_HI => {
                let Some(q) = self.selected_queue().filter(|q| !q.ready()) else {
                    return;
                };
                // 64-bit fields take one qword or two dword writes.
                let (low, high) = match (offset % 8, data.len()) {
                    (0, 8) => (Some(lo), Some(hi)),
                    (0, _) => (Some(lo), None),
                    (_, _) => (None, Some(lo)),
                };
                match offset & !7 {
                    QUEUE_DESC => q.set_desc_table_address(low, high),
                    QUEUE_DRIVER => q.set_avail_ring_address(low, high),
                    _ => q.set_used_ring_address(low, high),
                }
            }
            _ => {}
        }
    }

    /// Device status state machine (virtio 1.2 §2.1, §3.1.1).
    fn set_status(&mut self, value: u8) {
        if value == 0 {
            self.reset();
            return;
        }
        let old = self.status;
        if value & old != old {
            log::warn!(
                "virtio: driver cleared status bits ({old:#x} -> {value:#x}) without a reset"
            );
            return;
        }
        let mut new = value;
        let added = value & !old;
        if added & STATUS_FEATURES_OK != 0 && !self.features_acceptable() {
            // The driver re-reads the status and sees FEATURES_OK missing.
            new &= !STATUS_FEATURES_OK;
        }
        if added & STATUS_DRIVER_OK != 0 {
            if new & STATUS_FEATURES_OK == 0 {
                new &= !STATUS_DRIVER_OK;
            } else if let Err(e) = self.activate() {
                log::error!("virtio device type {}: {e}", self.device.device_type());
                new |= STATUS_DEVICE_NEEDS_RESET;
                self.status = new;
                self.interrupt.trigger(InterruptKind::Config);
                return;
            }
        }
        self.status = new;
    }

    /// Only features the device offered, and always VIRTIO_F_VERSION_1.
    fn features_acceptable(&self) -> bool {
        self.driver_features & !self.device.features() == 0
            && self.driver_features & 1 << VIRTIO_F_VERSION_1 != 0
    }

    fn activate(&mut self) -> Result<(), ActivateFailure> {
        let event_idx = self.driver_features & 1 << VIRTIO_RING_F_EVENT_IDX != 0;
        let mut queues = Vec::with_capacity(self.queues.len());
        for (index, queue) in self.queues.iter_mut().enumerate() {
            if !queue.ready() {
                queues.push(None);
                continue;
            }
            if !queue.is_valid(&self.mem) {
                return Err(ActivateFailure::InvalidQueue(index));
            }
            queue.set_event_idx(event_idx);
            let copy =
                Queue::try_from(queue.state()).map_err(|_| ActivateFailure::InvalidQueue(index))?;
            queues.push(Some(copy));
        }
        self.device
            .activate(Activation {
                mem: self.mem.clone(),
                interrupt: self.interrupt.clone(),
                queues,
                acked_features: self.driver_features,
            })
            .map_err(ActivateFailure::Device)
    }

    /// Device reset: forget the driver's configuration (MSI-X, being PCI
    /// function state, stays as the guest programmed it).
    fn reset(&mut self) {
        self.device.reset();
        self.status = 0;
        self.device_feature_select = 0;
        self.driver_feature_select = 0;
        self.driver_features = 0;
        self.queue_select = 0;
        for queue in &mut self.queues {
            queue.reset();
        }
        self.interrupt
            .config_vector
            .store(VIRTIO_MSI_NO_VECTOR, Ordering::SeqCst);
        for v in &self.interrupt.queue_vectors {
            v.store(VIRTIO_MSI_NO_VECTOR, Ordering::SeqCst);
        }
        self.interrupt.isr.store(0, Ordering::SeqCst);
    }

    fn bar_read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        match offset {
            o if o < COMMON_CFG_OFFSET + COMMON_CFG_SIZE => self.read_common(o, data),
            o if (ISR_OFFSET..ISR_OFFSET + ISR_SIZE).contains(&o) => {
                data[0] = self.interrupt.isr.swap(0, Ordering::SeqCst);
            }
            o if (DEVICE_CFG_OFFSET..DEVICE_CFG_OFFSET + DEVICE_CFG_SIZE).contains(&o) => {
                self.device.read_config(o - DEVICE_CFG_OFFSET, data)
            }
            o if (MSIX_TABLE_OFFSET..MSIX_TABLE_OFFSET + REGION_SIZE).contains(&o) => self
                .interrupt
                .msix()
                .read_table(o - MSIX_TABLE_OFFSET, data),
            o if (MSIX_PBA_OFFSET..MSIX_PBA_OFFSET + REGION_SIZE).contains(&o) => {
                self.interrupt.msix().read_pba(o - MSIX_PBA_OFFSET, data)
            }
            _ => {}
        }
    }

    fn bar_write(&mut self, offset: u64, data: &[u8]) {
        match offset {
            o if o < COMMON_CFG_OFFSET + COMMON_CFG_SIZE => self.write_common(o, data),
            o if (DEVICE_CFG_OFFSET..DEVICE_CFG_OFFSET + DEVICE_CFG_SIZE).contains(&o) => {
                self.device.write_config(o - DEVICE_CFG_OFFSET, data)
            }
            o if (NOTIFY_OFFSET..NOTIFY_OFFSET + REGION_SIZE).contains(&o) => {
                let index = (o - NOTIFY_OFFSET) / u64::from(NOTIFY_OFF_MULTIPLIER);
                if self.status & STATUS_DRIVER_OK != 0 && (index as usize) < self.queues.len() {
                    self.device.queue_notify(index as u16);
                }
            }
            o if (MSIX_TABLE_OFFSET..MSIX_TABLE_OFFSET + REGION_SIZE).contains(&o) => self
                .interrupt
                .msix()
                .write_table(o - MSIX_TABLE_OFFSET, data),
            _ => {}
        }
    }

    /// The BAR window of the PCI configuration access capability:
    /// (offset, length) when it names BAR 0 and a 1, 2 or 4-byte access.
    fn pci_cfg_window(&self) -> Option<(u64, usize)> {
        let bar = self.cfg.read_u8(self.pci_cfg_cap + CAP_BAR);
        let offset = self.cfg.read_u32(self.pci_cfg_cap + CAP_OFFSET);
        let length = self.cfg.read_u32(self.pci_cfg_cap + CAP_LENGTH) as usize;
        (bar == 0 && matches!(length, 1 | 2 | 4) && u64::from(offset) < BAR_SIZE)
            .then_some((u64::from(offset), length))
    }
}

#[derive(Debug, thiserror::Error)]
enum ActivateFailure {
    #[error("queue {0} is enabled with an invalid layout")]
    InvalidQueue(usize),
    #[error(transparent)]
    Device(super::ActivateError),
}

/// PCI class of each device type (PCI Code and ID Assignment spec).
fn class_of(device_type: u16) -> (u8, u8) {
    match device_type {
        super::VIRTIO_ID_NET => (0x02, 0x00),   // network, Ethernet
        super::VIRTIO_ID_BLOCK => (0x01, 0x80), // mass storage, other
        _ => (0xff, 0x00),                      // unassigned class
    }
}

impl PciDevice for VirtioPciDevice {
    fn read_config(&mut self, reg: usize) -> u32 {
        if reg == (self.pci_cfg_cap + PCI_CFG_CAP_DATA) / 4 {
            let mut value = [0u8; 4];
            if let Some((offset, len)) = self.pci_cfg_window() {
                self.bar_read(offset, &mut value[..len]);
            }
            return u32::from_le_bytes(value);
        }
        self.cfg.read_reg(reg)
    }

    fn write_config(&mut self, reg: usize, offset: usize, data: &[u8]) {
        if reg == (self.pci_cfg_cap + PCI_CFG_CAP_DATA) / 4 {
            if let Some((bar_offset, len)) = self.pci_cfg_window()
                && offset == 0
                && data.len() >= len
            {
                self.bar_write(bar_offset, &data[..len]);
            }
            return;
        }
        self.cfg.write_reg(reg, offset, data);
        if reg == (self.msix_cap + MSIX_MESSAGE_CONTROL_OFFSET) / 4 {
            let control = self
                .cfg
                .read_u16(self.msix_cap + MSIX_MESSAGE_CONTROL_OFFSET);
            self.interrupt.msix().set_message_control(control);
        }
    }

    fn bar0_window(&self) -> Option<(u64, u64)> {
        self.cfg.bar0_window()
    }
}

impl BusDevice for VirtioPciDevice {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        self.bar_read(offset, data);
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        self.bar_write(offset, data);
    }
}

#[cfg(test)]
#[path = "pci_tests.rs"]
mod tests;
