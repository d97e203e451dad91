//! PLACEHOLDER with the contract: legacy PC devices on the port I/O bus.
//! Each type implements `BusDevice`; ports and IRQs are in `layout`.

use std::io::Write;

use crossbeam_channel::Sender;
use vmm_sys_util::eventfd::EventFd;

use super::{BusDevice, VmEvent};

/// 16550A UART (vm-superio) at COM1/COM2; `irq` is an irqfd-registered EventFd.
pub struct Serial {}

impl Serial {
    pub fn new(_irq: EventFd, _out: Box<dyn Write + Send>) -> Self {
        Serial {}
    }

    /// Queue input bytes for the guest; returns how many were accepted
    /// (the receive FIFO may be full) and raises the IRQ if enabled.
    pub fn enqueue_input(&mut self, _bytes: &[u8]) -> usize {
        0
    }
}

impl BusDevice for Serial {
    fn read(&mut self, _base: u64, _offset: u64, _data: &mut [u8]) {}
    fn write(&mut self, _base: u64, _offset: u64, _data: &[u8]) {}
}

/// i8042 keyboard controller: reset line (0xFE to the command port) and
/// Ctrl-Alt-Del injection.
pub struct I8042 {}

impl I8042 {
    pub fn new(_events: Sender<VmEvent>, _kbd_irq: EventFd) -> Self {
        I8042 {}
    }

    /// Inject the Ctrl-Alt-Del scancode sequence (asks the guest to reboot).
    pub fn trigger_ctrl_alt_del(&mut self) {}
}

impl BusDevice for I8042 {
    fn read(&mut self, _base: u64, _offset: u64, _data: &mut [u8]) {}
    fn write(&mut self, _base: u64, _offset: u64, _data: &[u8]) {}
}

/// MC146818 CMOS RTC with the host's wall clock (ports 0x70/0x71).
pub struct Rtc {}

impl Rtc {
    pub fn new() -> Self {
        Rtc {}
    }
}

impl Default for Rtc {
    fn default() -> Self {
        Self::new()
    }
}

impl BusDevice for Rtc {
    fn read(&mut self, _base: u64, _offset: u64, _data: &mut [u8]) {}
    fn write(&mut self, _base: u64, _offset: u64, _data: &[u8]) {}
}

/// ACPI fixed hardware: PM1a event block, PM1a control (S5 -> PowerOff),
/// PM timer. Insert it once per block (`base` tells which).
pub struct AcpiPm {}

impl AcpiPm {
    pub fn new(_events: Sender<VmEvent>, _sci: EventFd) -> Self {
        AcpiPm {}
    }

    /// Set PWRBTN_STS and raise the SCI if the guest enabled it.
    pub fn press_power_button(&mut self) {}
}

impl BusDevice for AcpiPm {
    fn read(&mut self, _base: u64, _offset: u64, _data: &mut [u8]) {}
    fn write(&mut self, _base: u64, _offset: u64, _data: &[u8]) {}
}

/// Test port (`layout::DEBUG_EXIT_PORT`): a write ends the VM.
pub struct DebugExit {}

impl DebugExit {
    pub fn new(_events: Sender<VmEvent>) -> Self {
        DebugExit {}
    }
}

impl BusDevice for DebugExit {
    fn read(&mut self, _base: u64, _offset: u64, _data: &mut [u8]) {}
    fn write(&mut self, _base: u64, _offset: u64, _data: &[u8]) {}
}
