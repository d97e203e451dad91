//! Bus 0, device 0: the host bridge.
//!
//! Identity: vendor 0x1B36 / device 0x0008, the ID Red Hat registered for
//! QEMU's generic "PCIe host bridge". It is a purely virtual bridge, so no
//! guest driver binds to it and Linux has no chipset quirks for it; class
//! 06/00/00 (bridge, host bridge) is all a guest needs to see.

use super::config_io::PciDevice;
use super::configuration::{PciConfiguration, PciHeader};

/// Red Hat, Inc. (PCI-SIG vendor ID).
pub const HOST_BRIDGE_VENDOR_ID: u16 = 0x1b36;
/// Red Hat's ID for a generic virtual host bridge.
pub const HOST_BRIDGE_DEVICE_ID: u16 = 0x0008;
/// Base class 06h "bridge device", sub-class 00h "host bridge".
pub const CLASS_BRIDGE: u8 = 0x06;
pub const SUBCLASS_HOST_BRIDGE: u8 = 0x00;

/// A host bridge with no BARs and no capabilities.
pub struct HostBridge {
    cfg: PciConfiguration,
}

impl HostBridge {
    pub fn new() -> Self {
        HostBridge {
            cfg: PciConfiguration::new(&PciHeader {
                vendor_id: HOST_BRIDGE_VENDOR_ID,
                device_id: HOST_BRIDGE_DEVICE_ID,
                revision_id: 0,
                class: CLASS_BRIDGE,
                subclass: SUBCLASS_HOST_BRIDGE,
                prog_if: 0,
                subsystem_vendor_id: 0,
                subsystem_id: 0,
            }),
        }
    }
}

impl Default for HostBridge {
    fn default() -> Self {
        Self::new()
    }
}

impl PciDevice for HostBridge {
    fn read_config(&mut self, reg: usize) -> u32 {
        self.cfg.read_reg(reg)
    }

    fn write_config(&mut self, reg: usize, offset: usize, data: &[u8]) {
        self.cfg.write_reg(reg, offset, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifies_as_a_host_bridge_without_interrupts() {
        let mut hb = HostBridge::new();
        assert_eq!(hb.read_config(0), 0x0008_1b36);
        assert_eq!(hb.read_config(2) >> 8, 0x06_00_00);
        assert_eq!(hb.read_config(0x3c / 4) >> 8 & 0xff, 0);
        assert_eq!(hb.bar0_window(), None);
    }
}
