//! Emulated devices and the buses that dispatch guest I/O to them.

pub mod bus;
pub mod legacy;
pub mod pci;
pub mod virtio;

pub use bus::{Bus, BusDevice, BusError};

/// Something a device asks of the whole VM. Devices hold a
/// `crossbeam_channel::Sender<VmEvent>` and the VM's controller acts on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmEvent {
    /// Guest requested a reset (i8042 pulse, RST_CNT, ACPI reset register).
    Reset,
    /// Guest entered ACPI S5.
    PowerOff,
    /// Guest wrote a value to `layout::DEBUG_EXIT_PORT`.
    DebugExit(u32),
}
