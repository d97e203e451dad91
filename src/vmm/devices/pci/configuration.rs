//! A type-0 PCI configuration space (PCI Local Bus 3.0 §6.1, §6.2.5, §6.7).
//!
//! 256 bytes held as 64 dwords, each with a mask of the bits the guest may
//! write. BAR sizing falls out of the mask: a BAR of `size` bytes has only
//! its address bits above `size - 1` writable, so writing all-ones and
//! reading back yields the size mask. Capabilities are appended to a chain
//! that starts at the Capabilities Pointer (0x34).

/// Dwords in a conventional (non-extended) configuration space.
pub const NUM_CONFIG_REGS: usize = 64;
/// Bytes in a conventional configuration space.
pub const CONFIG_SPACE_SIZE: usize = NUM_CONFIG_REGS * 4;

// Header register offsets (PCI 3.0 Figure 6-1), in bytes.
pub const VENDOR_ID_OFFSET: usize = 0x00;
pub const DEVICE_ID_OFFSET: usize = 0x02;
pub const COMMAND_OFFSET: usize = 0x04;
pub const CACHE_LINE_SIZE_OFFSET: usize = 0x0c;
pub const STATUS_OFFSET: usize = 0x06;
pub const REVISION_ID_OFFSET: usize = 0x08;
pub const CLASS_CODE_OFFSET: usize = 0x09;
pub const HEADER_TYPE_OFFSET: usize = 0x0e;
pub const BAR0_OFFSET: usize = 0x10;
pub const SUBSYSTEM_VENDOR_ID_OFFSET: usize = 0x2c;
pub const SUBSYSTEM_ID_OFFSET: usize = 0x2e;
pub const CAPABILITIES_POINTER_OFFSET: usize = 0x34;
pub const INTERRUPT_LINE_OFFSET: usize = 0x3c;
pub const INTERRUPT_PIN_OFFSET: usize = 0x3d;
/// First byte after the type-0 header: capabilities go from here.
pub const FIRST_CAPABILITY_OFFSET: usize = 0x40;

/// Command register bits (PCI 3.0 §6.2.2).
pub const COMMAND_IO_SPACE: u16 = 1 << 0;
pub const COMMAND_MEMORY_SPACE: u16 = 1 << 1;
pub const COMMAND_BUS_MASTER: u16 = 1 << 2;
pub const COMMAND_INTX_DISABLE: u16 = 1 << 10;
/// Status register: the device has a capabilities list (PCI 3.0 §6.2.3).
pub const STATUS_CAPABILITIES_LIST: u16 = 1 << 4;

/// BAR bits 3:0 for a 32-bit, non-prefetchable memory BAR (PCI 3.0 §6.2.5.1).
const BAR_MEM32_FLAGS_MASK: u32 = 0xf;
/// Smallest memory BAR the spec allows (PCI 3.0 §6.2.5.1: 16 bytes; we use a page).
pub const MIN_BAR_SIZE: u64 = 0x1000;

/// The identity of a function, written once into its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciHeader {
    pub vendor_id: u16,
    pub device_id: u16,
    pub revision_id: u8,
    /// Base class, sub-class and programming interface (PCI Code and ID
    /// Assignment Specification).
    pub class: u8,
    pub subclass: u8,
    pub prog_if: u8,
    pub subsystem_vendor_id: u16,
    pub subsystem_id: u16,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("BAR size {0:#x} is not a power of two of at least {MIN_BAR_SIZE:#x} bytes")]
    BarSize(u64),
    #[error("capability of {0} bytes does not fit in configuration space")]
    CapabilityTooLarge(usize),
}

/// A function's configuration space.
pub struct PciConfiguration {
    regs: [u32; NUM_CONFIG_REGS],
    writable: [u32; NUM_CONFIG_REGS],
    bar0_size: Option<u64>,
    /// Byte offset of the last capability, whose next pointer we patch.
    last_capability: Option<usize>,
    /// Where the next capability goes (dword aligned).
    next_capability: usize,
}

impl PciConfiguration {
    pub fn new(header: &PciHeader) -> Self {
        let mut cfg = PciConfiguration {
            regs: [0; NUM_CONFIG_REGS],
            writable: [0; NUM_CONFIG_REGS],
            bar0_size: None,
            last_capability: None,
            next_capability: FIRST_CAPABILITY_OFFSET,
        };
        cfg.set_u16(VENDOR_ID_OFFSET, header.vendor_id);
        cfg.set_u16(DEVICE_ID_OFFSET, header.device_id);
        cfg.set_u8(REVISION_ID_OFFSET, header.revision_id);
        cfg.set_u8(CLASS_CODE_OFFSET, header.prog_if);
        cfg.set_u8(CLASS_CODE_OFFSET + 1, header.subclass);
        cfg.set_u8(CLASS_CODE_OFFSET + 2, header.class);
        // Header type 0, single function.
        cfg.set_u8(HEADER_TYPE_OFFSET, 0);
        cfg.set_u16(SUBSYSTEM_VENDOR_ID_OFFSET, header.subsystem_vendor_id);
        cfg.set_u16(SUBSYSTEM_ID_OFFSET, header.subsystem_id);
        // No INTx: interrupt pin 0 (PCI 3.0 §6.2.4). The line register is
        // still scratch space software may write.
        cfg.set_u8(INTERRUPT_PIN_OFFSET, 0);
        cfg.set_writable(
            COMMAND_OFFSET,
            u32::from(
                COMMAND_IO_SPACE | COMMAND_MEMORY_SPACE | COMMAND_BUS_MASTER | COMMAND_INTX_DISABLE,
            ),
        );
        cfg.set_writable(INTERRUPT_LINE_OFFSET, 0xff);
        // Software programs the cache line size and reads it back.
        cfg.set_writable(CACHE_LINE_SIZE_OFFSET, 0xff);
        cfg
    }

    /// Give the function BAR 0 as a 32-bit non-prefetchable memory BAR of
    /// `size` bytes at `addr` (memory decode stays off until the guest
    /// sets it in the command register).
    pub fn add_bar0_mem32(&mut self, addr: u32, size: u64) -> Result<(), Error> {
        if !size.is_power_of_two() || !(MIN_BAR_SIZE..=1 << 31).contains(&size) {
            return Err(Error::BarSize(size));
        }
        let mask = !(size as u32 - 1);
        let reg = BAR0_OFFSET / 4;
        self.regs[reg] = addr & mask;
        self.writable[reg] = mask;
        self.bar0_size = Some(size);
        Ok(())
    }

    /// The address BAR 0 is programmed with and its size.
    pub fn bar0(&self) -> Option<(u64, u64)> {
        let size = self.bar0_size?;
        let addr = self.regs[BAR0_OFFSET / 4] & !BAR_MEM32_FLAGS_MASK;
        Some((u64::from(addr), size))
    }

    /// Where BAR 0 decodes now: `None` when memory decode is off.
    pub fn bar0_window(&self) -> Option<(u64, u64)> {
        (self.command() & COMMAND_MEMORY_SPACE != 0)
            .then(|| self.bar0())
            .flatten()
    }

    pub fn command(&self) -> u16 {
        self.read_u16(COMMAND_OFFSET)
    }

    /// Append a capability. `body` starts with the capability ID; its second
    /// byte (the next pointer) is filled in here. Returns its byte offset.
    pub fn add_capability(&mut self, body: &[u8]) -> Result<usize, Error> {
        let offset = self.next_capability;
        if body.len() < 2 || offset + body.len() > CONFIG_SPACE_SIZE {
            return Err(Error::CapabilityTooLarge(body.len()));
        }
        for (i, byte) in body.iter().enumerate() {
            self.set_u8(offset + i, *byte);
        }
        self.set_u8(offset + 1, 0);
        match self.last_capability {
            Some(last) => self.set_u8(last + 1, offset as u8),
            None => {
                self.set_u8(CAPABILITIES_POINTER_OFFSET, offset as u8);
                let status = self.read_u16(STATUS_OFFSET) | STATUS_CAPABILITIES_LIST;
                self.set_u16(STATUS_OFFSET, status);
            }
        }
        self.last_capability = Some(offset);
        self.next_capability = (offset + body.len()).next_multiple_of(4);
        Ok(offset)
    }

    /// Let the guest write the bits of `mask` in the dword holding byte
    /// `offset` (`mask` is shifted to `offset`'s position in that dword).
    pub fn set_writable(&mut self, offset: usize, mask: u32) {
        let shift = (offset % 4) * 8;
        self.writable[offset / 4] |= mask << shift;
    }

    /// A dword of configuration space as the guest reads it.
    pub fn read_reg(&self, reg: usize) -> u32 {
        self.regs.get(reg).copied().unwrap_or(u32::MAX)
    }

    /// A guest write of 1, 2 or 4 bytes at byte `offset` of dword `reg`;
    /// only writable bits change. Malformed accesses are ignored.
    pub fn write_reg(&mut self, reg: usize, offset: usize, data: &[u8]) {
        if reg >= NUM_CONFIG_REGS || !matches!(data.len(), 1 | 2 | 4) || offset + data.len() > 4 {
            return;
        }
        let mut bytes = [0u8; 4];
        bytes[offset..offset + data.len()].copy_from_slice(data);
        let value = u32::from_le_bytes(bytes);
        let width_mask = if data.len() == 4 {
            u32::MAX
        } else {
            ((1u32 << (data.len() * 8)) - 1) << (offset * 8)
        };
        let mask = width_mask & self.writable[reg];
        self.regs[reg] = (self.regs[reg] & !mask) | (value & mask);
    }

    pub fn read_u8(&self, offset: usize) -> u8 {
        (self.regs[offset / 4] >> ((offset % 4) * 8)) as u8
    }

    pub fn read_u16(&self, offset: usize) -> u16 {
        u16::from(self.read_u8(offset)) | u16::from(self.read_u8(offset + 1)) << 8
    }

    pub fn read_u32(&self, offset: usize) -> u32 {
        u32::from(self.read_u16(offset)) | u32::from(self.read_u16(offset + 2)) << 16
    }

    /// Set a byte regardless of the write mask (device-side update).
    pub fn set_u8(&mut self, offset: usize, value: u8) {
        let shift = (offset % 4) * 8;
        let reg = &mut self.regs[offset / 4];
        *reg = (*reg & !(0xff << shift)) | (u32::from(value) << shift);
    }

    pub fn set_u16(&mut self, offset: usize, value: u16) {
        self.set_u8(offset, value as u8);
        self.set_u8(offset + 1, (value >> 8) as u8);
    }

    pub fn set_u32(&mut self, offset: usize, value: u32) {
        self.set_u16(offset, value as u16);
        self.set_u16(offset + 2, (value >> 16) as u16);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> PciHeader {
        PciHeader {
            vendor_id: 0x1af4,
            device_id: 0x1042,
            revision_id: 1,
            class: 0x01,
            subclass: 0x00,
            prog_if: 0x00,
            subsystem_vendor_id: 0x1af4,
            subsystem_id: 0x40,
        }
    }

    #[test]
    fn header_fields_are_where_the_spec_puts_them() {
        let cfg = PciConfiguration::new(&header());
        assert_eq!(cfg.read_reg(0), 0x1042_1af4);
        assert_eq!(cfg.read_reg(2), 0x0100_0001);
        assert_eq!(cfg.read_reg(0x2c / 4), 0x0040_1af4);
        assert_eq!(cfg.read_u8(INTERRUPT_PIN_OFFSET), 0);
        // Read-only fields ignore writes.
        let mut cfg = cfg;
        cfg.write_reg(0, 0, &[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(cfg.read_reg(0), 0x1042_1af4);
    }

    #[test]
    fn bar_sizing_reads_back_the_size_mask() {
        let mut cfg = PciConfiguration::new(&header());
        cfg.add_bar0_mem32(0xc000_0000, 0x8000).unwrap();
        assert_eq!(cfg.read_reg(4), 0xc000_0000);
        cfg.write_reg(4, 0, &u32::MAX.to_le_bytes());
        assert_eq!(cfg.read_reg(4), 0xffff_8000);
        cfg.write_reg(4, 0, &0xd000_0000u32.to_le_bytes());
        assert_eq!(cfg.bar0(), Some((0xd000_0000, 0x8000)));
        // Unimplemented BARs read as zero even after an all-ones write.
        cfg.write_reg(5, 0, &u32::MAX.to_le_bytes());
        assert_eq!(cfg.read_reg(5), 0);
        assert_eq!(cfg.bar0_window(), None);
        cfg.write_reg(1, 0, &[COMMAND_MEMORY_SPACE as u8]);
        assert_eq!(cfg.bar0_window(), Some((0xd000_0000, 0x8000)));
        assert_eq!(cfg.add_bar0_mem32(0, 0x3000), Err(Error::BarSize(0x3000)));
    }

    #[test]
    fn partial_writes_touch_only_their_bytes() {
        let mut cfg = PciConfiguration::new(&header());
        cfg.write_reg(0x3c / 4, 0, &[0x0b]);
        assert_eq!(cfg.read_u8(INTERRUPT_LINE_OFFSET), 0x0b);
        cfg.write_reg(1, 0, &0x0406u16.to_le_bytes());
        assert_eq!(cfg.command(), 0x0406);
        // A write straddling the dword is refused.
        cfg.write_reg(1, 3, &[1, 2]);
        assert_eq!(cfg.command(), 0x0406);
    }

    #[test]
    fn capabilities_form_a_chain_from_0x34() {
        let mut cfg = PciConfiguration::new(&header());
        let a = cfg.add_capability(&[0x09, 0xaa, 16, 1]).unwrap();
        let b = cfg.add_capability(&[0x11, 0xbb, 0, 0, 0, 0]).unwrap();
        assert_eq!(a, 0x40);
        assert_eq!(b, 0x44);
        assert_ne!(cfg.read_u16(STATUS_OFFSET) & STATUS_CAPABILITIES_LIST, 0);
        assert_eq!(cfg.read_u8(CAPABILITIES_POINTER_OFFSET), 0x40);
        assert_eq!(cfg.read_u8(0x41), 0x44);
        assert_eq!(cfg.read_u8(0x45), 0);
        assert_eq!(
            cfg.add_capability(&[0u8; 200]),
            Err(Error::CapabilityTooLarge(200))
        );
    }
}
