//! Legacy PC devices on the port I/O bus: the 16550A UARTs, the i8042
//! keyboard controller, the MC146818 CMOS RTC, the ACPI fixed hardware
//! (PM1 event/control blocks and PM timer) and the test exit port.
//!
//! Each type implements [`BusDevice`](super::BusDevice); its ports and IRQ
//! lines are in [`layout`](crate::vmm::layout). Interrupts are raised by
//! writing to an `EventFd` that the VM builder registers as a KVM irqfd.

mod acpi_pm;
mod debug_exit;
mod i8042;
mod rtc;
mod serial;

pub use acpi_pm::{AcpiPm, PM_TIMER_FREQUENCY_HZ, PM_TIMER_IS_32_BIT, SLP_TYP_S5};
pub use debug_exit::DebugExit;
pub use i8042::I8042;
pub use rtc::{REG_CENTURY as RTC_CENTURY_REGISTER, Rtc};
pub use serial::Serial;

use crossbeam_channel::Sender;
use vmm_sys_util::eventfd::EventFd;

use super::VmEvent;

/// Raise an edge on an irqfd-registered interrupt line.
fn raise_irq(irq: &EventFd, what: &str) {
    if let Err(e) = irq.write(1) {
        log::warn!("{what}: cannot raise interrupt: {e}");
    }
}

/// Tell the VM's controller about `event`.
fn send_event(events: &Sender<VmEvent>, event: VmEvent, what: &str) {
    if events.send(event).is_err() {
        log::warn!("{what}: VM controller gone, dropping {event:?}");
    }
}

/// Answer a read of an 8-bit register: `value` in the first byte, zeros
/// in the rest of a wider access.
fn read_byte_register(data: &mut [u8], value: u8) {
    data.fill(0);
    if let Some(first) = data.first_mut() {
        *first = value;
    }
}

/// Little-endian value of a 1-, 2-, 4- or 8-byte access (`None` for other sizes).
fn le_value(data: &[u8]) -> Option<u64> {
    match data.len() {
        1 | 2 | 4 | 8 => {
            let mut bytes = [0u8; 8];
            bytes[..data.len()].copy_from_slice(data);
            Some(u64::from_le_bytes(bytes))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn le_value_of_access_sizes() {
        assert_eq!(le_value(&[0x12]), Some(0x12));
        assert_eq!(le_value(&[0x34, 0x12]), Some(0x1234));
        assert_eq!(le_value(&[0x78, 0x56, 0x34, 0x12]), Some(0x1234_5678));
        assert_eq!(le_value(&[1, 2, 3]), None);
        assert_eq!(le_value(&[]), None);
    }
}
