//! PCI configuration mechanism #1 (PCI Local Bus 3.0 §3.2.2.3.2) on ports
//! 0xCF8..0xD00, plus the Reset Control Register at 0xCF9.
//!
//! CONFIG_ADDRESS (0xCF8, dword accesses only) selects bus/device/function/
//! register; CONFIG_DATA (0xCFC..0xCFF) reads or writes that dword with
//! byte, word or dword accesses at any offset that stays inside it. Only
//! bus 0, function 0 exists; everything else reads all-ones. A byte write to
//! 0xCF9 is Intel's RST_CNT (ICH9 datasheet §13.7.5): setting RST_CPU
//! (bit 2) resets the system.

use std::sync::{Arc, Mutex};

use crossbeam_channel::Sender;

use crate::vmm::devices::bus::SharedDevice;
use crate::vmm::devices::{Bus, BusDevice, VmEvent};
use crate::vmm::layout::{PCI_CONFIG_ADDRESS_PORT, PCI_CONFIG_DATA_PORT, RESET_CONTROL_PORT};

/// Ports covered by this device: CONFIG_ADDRESS and CONFIG_DATA.
pub const PCI_CONFIG_IO_SIZE: u64 = 8;
/// Offset of CONFIG_DATA within the range.
const DATA_OFFSET: u64 = (PCI_CONFIG_DATA_PORT - PCI_CONFIG_ADDRESS_PORT) as u64;
/// Offset of RST_CNT within the range.
const RESET_CONTROL_OFFSET: u64 = (RESET_CONTROL_PORT - PCI_CONFIG_ADDRESS_PORT) as u64;
/// RST_CNT bit 2, RST_CPU: a 0 -> 1 transition resets the system.
pub const RST_CNT_RST_CPU: u8 = 1 << 2;
/// RST_CNT bits software may read back (bit 1 SYS_RST, bit 3 FULL_RST).
const RST_CNT_STORED: u8 = 0b1010;

/// CONFIG_ADDRESS fields.
const CONFIG_ADDRESS_ENABLE: u32 = 1 << 31;
const CONFIG_ADDRESS_BUS_SHIFT: u32 = 16;
const CONFIG_ADDRESS_DEVICE_SHIFT: u32 = 11;
const CONFIG_ADDRESS_FUNCTION_SHIFT: u32 = 8;
/// Bits 7:2 select the dword; bits 1:0 read as zero.
const CONFIG_ADDRESS_REGISTER_MASK: u32 = 0xfc;
/// Devices per bus (5-bit device number).
pub const MAX_PCI_DEVICES: usize = 32;

/// A PCI function as seen through configuration space.
pub trait PciDevice: Send {
    /// The dword `reg` (0..64) of configuration space.
    fn read_config(&mut self, reg: usize) -> u32;
    /// Write 1, 2 or 4 bytes at byte `offset` of dword `reg`.
    fn write_config(&mut self, reg: usize, offset: usize, data: &[u8]);
    /// The guest-physical range BAR 0 decodes now (`None` when the function
    /// has no BAR or memory decode is off in its command register).
    fn bar0_window(&self) -> Option<(u64, u64)> {
        None
    }
}

/// One device number on bus 0.
struct Slot {
    device: Arc<Mutex<dyn PciDevice>>,
    /// The same device as it sits on the MMIO bus, when it has a BAR.
    bar_device: Option<SharedDevice>,
    /// Where its BAR is mapped on the MMIO bus now.
    mapped: Option<(u64, u64)>,
}

/// Bus 0: its devices, and the MMIO bus their BARs live on.
pub struct PciRoot {
    slots: Vec<Slot>,
    mmio_bus: Arc<Bus>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("PCI bus 0 is full ({MAX_PCI_DEVICES} devices)")]
    BusFull,
    #[error("cannot map BAR at {addr:#x}+{size:#x}")]
    MapBar {
        addr: u64,
        size: u64,
        #[source]
        source: crate::vmm::devices::BusError,
    },
}

impl PciRoot {
    pub fn new(mmio_bus: Arc<Bus>) -> Self {
        PciRoot {
            slots: Vec::new(),
            mmio_bus,
        }
    }

    /// Put `device` at the next free device number, which is returned.
    /// `bar_device` is the same object as a bus device, for BAR mapping.
    pub fn add_device(
        &mut self,
        device: Arc<Mutex<dyn PciDevice>>,
        bar_device: Option<SharedDevice>,
    ) -> Result<usize, Error> {
        if self.slots.len() >= MAX_PCI_DEVICES {
            return Err(Error::BusFull);
        }
        let mut slot = Slot {
            device,
            bar_device,
            mapped: None,
        };
        sync_bar(&self.mmio_bus, &mut slot)?;
        self.slots.push(slot);
        Ok(self.slots.len() - 1)
    }

    fn read(&self, device: usize, reg: usize) -> u32 {
        match self.slots.get(device) {
            Some(slot) => slot
                .device
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .read_config(reg),
            None => u32::MAX,
        }
    }

    fn write(&mut self, device: usize, reg: usize, offset: usize, data: &[u8]) {
        let Some(slot) = self.slots.get_mut(device) else {
            return;
        };
        slot.device
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write_config(reg, offset, data);
        if let Err(e) = sync_bar(&self.mmio_bus, slot) {
            // The guest placed a BAR over something else; it stays unmapped
            // until the guest moves it somewhere free.
            log::warn!("PCI device {device}: {e}");
        }
    }
}

/// Make the MMIO bus match where the slot's BAR decodes now.
fn sync_bar(mmio_bus: &Bus, slot: &mut Slot) -> Result<(), Error> {
    let Some(bus_device) = &slot.bar_device else {
        return Ok(());
    };
    let wanted = slot
        .device
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .bar0_window();
    if wanted == slot.mapped {
        return Ok(());
    }
    if let Some((old, _)) = slot.mapped.take() {
        // We inserted it at `old`; a failure means it is gone already.
        let _ = mmio_bus.remove(old);
    }
    if let Some((addr, size)) = wanted {
        mmio_bus
            .insert(bus_device.clone(), addr, size)
            .map_err(|source| Error::MapBar { addr, size, source })?;
        slot.mapped = Some((addr, size));
    }
    Ok(())
}

/// The BusDevice on ports 0xCF8..0xD00.
pub struct PciConfigIo {
    address: u32,
    reset_control: u8,
    root: PciRoot,
    events: Sender<VmEvent>,
}

impl PciConfigIo {
    pub fn new(root: PciRoot, events: Sender<VmEvent>) -> Self {
        PciConfigIo {
            address: 0,
            reset_control: 0,
            root,
            events,
        }
    }

    /// The (device, dword) CONFIG_ADDRESS selects, if it selects something
    /// that can exist (enabled, bus 0, function 0).
    fn target(&self) -> Option<(usize, usize)> {
        let a = self.address;
        let bus = (a >> CONFIG_ADDRESS_BUS_SHIFT) & 0xff;
        let device = (a >> CONFIG_ADDRESS_DEVICE_SHIFT) & 0x1f;
        let function = (a >> CONFIG_ADDRESS_FUNCTION_SHIFT) & 0x7;
        let reg = (a & CONFIG_ADDRESS_REGISTER_MASK) >> 2;
        (a & CONFIG_ADDRESS_ENABLE != 0 && bus == 0 && function == 0)
            .then_some((device as usize, reg as usize))
    }
}

impl BusDevice for PciConfigIo {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        match (offset, data.len()) {
            (0, 4) => data.copy_from_slice(&self.address.to_le_bytes()),
            (RESET_CONTROL_OFFSET, 1) => data[0] = self.reset_control,
            (o, len) if o >= DATA_OFFSET && (o - DATA_OFFSET) as usize + len <= 4 => {
                let Some((device, reg)) = self.target() else {
                    return;
                };
                let value = self.root.read(device, reg).to_le_bytes();
                let start = (o - DATA_OFFSET) as usize;
                data.copy_from_slice(&value[start..start + len]);
            }
            _ => {}
        }
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        match (offset, data.len()) {
            (0, 4) => {
                let mut bytes = [0u8; 4];
                bytes.copy_from_slice(data);
                self.address = u32::from_le_bytes(bytes) & !0x3;
            }
            (RESET_CONTROL_OFFSET, 1) => {
                self.reset_control = data[0] & RST_CNT_STORED;
                if data[0] & RST_CNT_RST_CPU != 0 {
                    // The receiver is gone only while the VM is shutting down.
                    let _ = self.events.send(VmEvent::Reset);
                }
            }
            (o, len) if o >= DATA_OFFSET && (o - DATA_OFFSET) as usize + len <= 4 => {
                if let Some((device, reg)) = self.target() {
                    self.root
                        .write(device, reg, (o - DATA_OFFSET) as usize, data);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::vmm::devices::pci::configuration::{PciConfiguration, PciHeader};

    /// A function with a 4 KiB BAR that counts MMIO writes.
    pub struct TestFunction {
        pub cfg: PciConfiguration,
        pub mmio_writes: usize,
    }

    impl TestFunction {
        pub fn new() -> Self {
            let mut cfg = PciConfiguration::new(&PciHeader {
                vendor_id: 0x1234,
                device_id: 0x5678,
                revision_id: 0,
                class: 0xff,
                subclass: 0,
                prog_if: 0,
                subsystem_vendor_id: 0,
                subsystem_id: 0,
            });
            cfg.add_bar0_mem32(0xc000_0000, 0x1000).unwrap();
            TestFunction {
                cfg,
                mmio_writes: 0,
            }
        }
    }

    impl PciDevice for TestFunction {
        fn read_config(&mut self, reg: usize) -> u32 {
            self.cfg.read_reg(reg)
        }
        fn write_config(&mut self, reg: usize, offset: usize, data: &[u8]) {
            self.cfg.write_reg(reg, offset, data)
        }
        fn bar0_window(&self) -> Option<(u64, u64)> {
            self.cfg.bar0_window()
        }
    }

    impl BusDevice for TestFunction {
        fn read(&mut self, _base: u64, _offset: u64, data: &mut [u8]) {
            data.fill(0x5a);
        }
        fn write(&mut self, _base: u64, _offset: u64, _data: &[u8]) {
            self.mmio_writes += 1;
        }
    }

    fn address(device: u32, reg: u32) -> u32 {
        CONFIG_ADDRESS_ENABLE | device << 11 | reg << 2
    }

    fn setup() -> (
        PciConfigIo,
        Arc<Bus>,
        crossbeam_channel::Receiver<VmEvent>,
        Arc<Mutex<TestFunction>>,
    ) {
        let mmio = Arc::new(Bus::new());
        let mut root = PciRoot::new(mmio.clone());
        let f = Arc::new(Mutex::new(TestFunction::new()));
        root.add_device(f.clone(), Some(f.clone())).unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
        (PciConfigIo::new(root, tx), mmio, rx, f)
    }

    fn read32(io: &mut PciConfigIo, addr: u32) -> u32 {
        io.write(0, 0, &addr.to_le_bytes());
        let mut d = [0u8; 4];
        io.read(0, DATA_OFFSET, &mut d);
        u32::from_le_bytes(d)
    }

    #[test]
    fn address_and_data_protocol() {
        let (mut io, _, _, _) = setup();
        io.write(0, 0, &address(0, 0).to_le_bytes());
        let mut d = [0u8; 4];
        io.read(0, 0, &mut d);
        assert_eq!(u32::from_le_bytes(d), address(0, 0));
        assert_eq!(read32(&mut io, address(0, 0)), 0x5678_1234);
        // Word and byte reads at every offset of the data window.
        let mut w = [0u8; 2];
        io.read(0, DATA_OFFSET + 2, &mut w);
        assert_eq!(u16::from_le_bytes(w), 0x5678);
        let mut b = [0u8; 1];
        io.read(0, DATA_OFFSET + 3, &mut b);
        assert_eq!(b[0], 0x56);
        // A word read that would cross the dword is refused.
        io.read(0, DATA_OFFSET + 3, &mut w);
        assert_eq!(w, [0xff, 0xff]);
        // Byte write to the interrupt line register at offset 0x3c.
        io.write(0, 0, &address(0, 0x3c >> 2).to_le_bytes());
        io.write(0, DATA_OFFSET, &[0x0a]);
        assert_eq!(read32(&mut io, address(0, 0x3c >> 2)) & 0xff, 0x0a);
    }

    #[test]
    fn absent_functions_read_all_ones() {
        let (mut io, _, _, _) = setup();
        assert_eq!(read32(&mut io, address(1, 0)), u32::MAX);
        assert_eq!(read32(&mut io, address(31, 0)), u32::MAX);
        assert_eq!(read32(&mut io, address(0, 0) | 1 << 8), u32::MAX); // function 1
        assert_eq!(read32(&mut io, address(0, 0) | 1 << 16), u32::MAX); // bus 1
        assert_eq!(
            read32(&mut io, address(0, 0) & !CONFIG_ADDRESS_ENABLE),
            u32::MAX
        );
        // Writes to absent functions go nowhere and do not panic.
        io.write(0, 0, &address(7, 4).to_le_bytes());
        io.write(0, DATA_OFFSET, &[1, 2, 3, 4]);
    }

    #[test]
    fn reset_control_byte_sends_reset() {
        let (mut io, _, rx, _) = setup();
        io.write(0, RESET_CONTROL_OFFSET, &[0x02]);
        assert!(rx.try_recv().is_err());
        let mut b = [0u8; 1];
        io.read(0, RESET_CONTROL_OFFSET, &mut b);
        assert_eq!(b[0], 0x02);
        io.write(0, RESET_CONTROL_OFFSET, &[0x06]);
        assert_eq!(rx.try_recv(), Ok(VmEvent::Reset));
        // A dword write at 0xCF8 is CONFIG_ADDRESS, never a reset.
        io.write(0, 0, &0xffff_ffffu32.to_le_bytes());
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn bar_follows_memory_decode_and_moves() {
        let (mut io, mmio, _, f) = setup();
        let mut d = [0u8; 4];
        // Decode off: nothing on the MMIO bus.
        assert!(!mmio.read(0xc000_0000, &mut d));
        io.write(0, 0, &address(0, 1).to_le_bytes());
        io.write(0, DATA_OFFSET, &[0x02, 0x00]);
        assert!(mmio.read(0xc000_0000, &mut d));
        assert_eq!(d, [0x5a; 4]);
        // Sizing then moving the BAR.
        io.write(0, 0, &address(0, 4).to_le_bytes());
        io.write(0, DATA_OFFSET, &u32::MAX.to_le_bytes());
        assert_eq!(read32(&mut io, address(0, 4)), 0xffff_f000);
        io.write(0, DATA_OFFSET, &0xd000_0000u32.to_le_bytes());
        assert!(!mmio.read(0xc000_0000, &mut d));
        assert!(mmio.write(0xd000_0010, &[1]));
        assert_eq!(f.lock().unwrap().mmio_writes, 1);
        // Decode off unmaps.
        io.write(0, 0, &address(0, 1).to_le_bytes());
        io.write(0, DATA_OFFSET, &[0x00]);
        assert!(!mmio.write(0xd000_0010, &[1]));
    }
}
