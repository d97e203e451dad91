//! 16550A UART (COM1/COM2) on top of vm-superio's register model.
//!
//! Guest output goes to a writer that is flushed after every byte (vm-superio
//! does this), so a terminal shows it at once. The interrupt line is an
//! `EventFd` the VM builder registers as an irqfd for the port's IRQ.

use std::io::{self, Write};

use vm_superio::serial::NoEvents;
use vmm_sys_util::eventfd::EventFd;

use crate::vmm::devices::BusDevice;
use crate::vmm::layout::UART_PORT_SIZE;

/// vm-superio's interrupt hook backed by an irqfd.
struct IrqTrigger(EventFd);

impl vm_superio::Trigger for IrqTrigger {
    type E = io::Error;

    fn trigger(&self) -> Result<(), io::Error> {
        self.0.write(1)
    }
}

type Uart = vm_superio::Serial<IrqTrigger, NoEvents, Box<dyn Write + Send>>;

/// 16550A UART (vm-superio) at COM1/COM2; `irq` is an irqfd-registered EventFd.
pub struct Serial {
    uart: Uart,
}

impl Serial {
    pub fn new(irq: EventFd, out: Box<dyn Write + Send>) -> Self {
        Serial {
            uart: vm_superio::Serial::new(IrqTrigger(irq), out),
        }
    }

    /// Queue input bytes for the guest; returns how many were accepted
    /// (the receive FIFO may be full) and raises the IRQ if enabled.
    pub fn enqueue_input(&mut self, bytes: &[u8]) -> usize {
        let room_before = self.uart.fifo_capacity();
        if room_before == 0 || bytes.is_empty() {
            return 0;
        }
        if let Err(e) = self.uart.enqueue_raw_bytes(bytes) {
            // The bytes may be queued even when raising the IRQ failed.
            log::warn!("serial: queueing input: {e:?}");
        }
        room_before - self.uart.fifo_capacity()
    }
}

impl BusDevice for Serial {
    /// Wider accesses are split into byte accesses to consecutive registers,
    /// as the ISA bus does for an 8-bit device.
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        for (i, byte) in data.iter_mut().enumerate() {
            let reg = offset + i as u64;
            *byte = if reg < u64::from(UART_PORT_SIZE) {
                self.uart.read(reg as u8)
            } else {
                0
            };
        }
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        for (i, byte) in data.iter().enumerate() {
            let reg = offset + i as u64;
            if reg >= u64::from(UART_PORT_SIZE) {
                break;
            }
            if let Err(e) = self.uart.write(reg as u8, *byte) {
                log::warn!("serial: register {reg} write: {e:?}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Register offsets and bits (National Semiconductor PC16550D datasheet).
    const DATA: u64 = 0;
    const IER: u64 = 1;
    const IIR: u64 = 2;
    const LCR: u64 = 3;
    const LSR: u64 = 5;
    const IER_RDA: u8 = 0x01;
    const LCR_DLAB: u8 = 0x80;
    const LSR_DATA_READY: u8 = 0x01;
    const LSR_THR_EMPTY: u8 = 0x20;
    /// The receive FIFO of a 16550A as vm-superio models it.
    const FIFO_BYTES: usize = 64;

    #[derive(Clone, Default)]
    struct SharedBuf(Arc<Mutex<Vec<u8>>>);

    impl Write for SharedBuf {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn serial() -> (Serial, EventFd, SharedBuf) {
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let out = SharedBuf::default();
        let dev = Serial::new(irq.try_clone().unwrap(), Box::new(out.clone()));
        (dev, irq, out)
    }

    fn read_reg(dev: &mut Serial, reg: u64) -> u8 {
        let mut b = [0u8];
        dev.read(0x3f8, reg, &mut b);
        b[0]
    }

    #[test]
    fn guest_output_reaches_the_writer() {
        let (mut dev, _irq, out) = serial();
        for b in b"hi\n" {
            dev.write(0x3f8, DATA, &[*b]);
        }
        assert_eq!(out.0.lock().unwrap().as_slice(), b"hi\n");
        assert_ne!(read_reg(&mut dev, LSR) & LSR_THR_EMPTY, 0);
    }

    #[test]
    fn input_is_read_back_and_raises_the_irq_when_enabled() {
        let (mut dev, irq, _out) = serial();
        dev.write(0x3f8, IER, &[IER_RDA]);
        assert_eq!(dev.enqueue_input(b"ab"), 2);
        assert_eq!(irq.read().unwrap(), 1);
        assert_ne!(read_reg(&mut dev, LSR) & LSR_DATA_READY, 0);
        // IIR reports "received data available" (0b0100 in bits 1..3).
        assert_eq!(read_reg(&mut dev, IIR) & 0x0f, 0x04);
        assert_eq!(read_reg(&mut dev, DATA), b'a');
        assert_eq!(read_reg(&mut dev, DATA), b'b');
        assert_eq!(read_reg(&mut dev, LSR) & LSR_DATA_READY, 0);
    }

    #[test]
    fn input_without_ier_does_not_interrupt() {
        let (mut dev, irq, _out) = serial();
        assert_eq!(dev.enqueue_input(b"x"), 1);
        assert!(irq.read().is_err(), "no interrupt expected");
    }

    #[test]
    fn enqueue_respects_the_fifo_capacity() {
        let (mut dev, _irq, _out) = serial();
        let input = vec![b'z'; FIFO_BYTES + 10];
        assert_eq!(dev.enqueue_input(&input), FIFO_BYTES);
        assert_eq!(dev.enqueue_input(b"more"), 0);
        read_reg(&mut dev, DATA);
        read_reg(&mut dev, DATA);
        assert_eq!(dev.enqueue_input(b"more"), 2);
        assert_eq!(dev.enqueue_input(b""), 0);
    }

    #[test]
    fn divisor_latch_is_separate_from_data() {
        let (mut dev, _irq, out) = serial();
        dev.write(0x3f8, LCR, &[LCR_DLAB]);
        dev.write(0x3f8, DATA, &[0x0c]);
        dev.write(0x3f8, IER, &[0x00]);
        assert_eq!(read_reg(&mut dev, DATA), 0x0c);
        dev.write(0x3f8, LCR, &[0x03]);
        assert!(out.0.lock().unwrap().is_empty());
    }

    #[test]
    fn wide_and_out_of_range_accesses_do_not_panic() {
        let (mut dev, _irq, _out) = serial();
        let mut buf = [0u8; 4];
        dev.read(0x3f8, 6, &mut buf);
        assert_eq!(&buf[2..], &[0, 0]);
        dev.write(0x3f8, 7, &[1, 2, 3, 4]);
        dev.read(0x3f8, 100, &mut buf);
        assert_eq!(buf, [0; 4]);
    }
}
