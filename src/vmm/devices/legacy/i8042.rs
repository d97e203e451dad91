//! Intel 8042 keyboard controller with a minimal PS/2 keyboard behind it.
//!
//! Enough for Linux's i8042 and atkbd drivers to probe the controller and
//! bind the keyboard, for the controller's CPU-reset line (command 0xFE, or
//! bit 0 of the output port cleared through 0xD1) and for injecting
//! Ctrl-Alt-Del. There is no AUX (mouse) port: its interface test fails
//! and AUX loopback (0xD3) is ignored. The DSDT lists no PS/2 mouse
//! (PNP0F13), so Linux's i8042 PNP probe sets `noaux` and does not try it.
//!
//! Sources: IBM PS/2 Hardware Interface Technical Reference, "Keyboard/
//! Auxiliary Device Controller"; Linux drivers/input/serio/i8042.h and
//! drivers/input/keyboard/atkbd.c for what a driver expects.

use std::collections::VecDeque;

use crossbeam_channel::Sender;
use vmm_sys_util::eventfd::EventFd;

use super::{raise_irq, read_byte_register, send_event};
use crate::vmm::devices::{BusDevice, VmEvent};
use crate::vmm::layout::{I8042_COMMAND_PORT, I8042_DATA_PORT};

// Status register (read from the command port).
/// Output buffer full: a byte is waiting at the data port.
const STATUS_OBF: u8 = 0x01;
/// System flag: set once the controller passed its self-test.
const STATUS_SYS: u8 = 0x04;
/// The last write went to the command port (A2 line high).
const STATUS_CMD: u8 = 0x08;
/// Keyboard not inhibited (the "keylock" switch is open).
const STATUS_UNLOCKED: u8 = 0x10;

// Controller command byte ("CTR" in Linux).
/// Raise IRQ 1 when keyboard data is in the output buffer.
const CTR_KBD_INT: u8 = 0x01;
/// System flag (copied into the status register).
const CTR_SYS: u8 = 0x04;
/// Keyboard interface disabled.
const CTR_KBD_DISABLE: u8 = 0x10;
/// AUX interface disabled.
const CTR_AUX_DISABLE: u8 = 0x20;
/// Translate scancode set 2 to set 1.
const CTR_XLATE: u8 = 0x40;
/// What the command byte holds at power-on (as PC firmware leaves it).
const CTR_DEFAULT: u8 = CTR_KBD_INT | CTR_SYS | CTR_AUX_DISABLE | CTR_XLATE;

// Controller commands (written to the command port).
const CMD_READ_CTR: u8 = 0x20;
const CMD_WRITE_CTR: u8 = 0x60;
const CMD_AUX_DISABLE: u8 = 0xa7;
const CMD_AUX_ENABLE: u8 = 0xa8;
const CMD_AUX_TEST: u8 = 0xa9;
const CMD_SELF_TEST: u8 = 0xaa;
const CMD_KBD_TEST: u8 = 0xab;
const CMD_KBD_DISABLE: u8 = 0xad;
const CMD_KBD_ENABLE: u8 = 0xae;
const CMD_READ_OUTPUT_PORT: u8 = 0xd0;
const CMD_WRITE_OUTPUT_PORT: u8 = 0xd1;
const CMD_WRITE_KBD_OUTPUT: u8 = 0xd2;
/// 0xF0..=0xFF pulse the output-port bits whose bit is clear in the low nibble.
const CMD_PULSE_FIRST: u8 = 0xf0;

// Replies.
const SELF_TEST_OK: u8 = 0x55;
const INTERFACE_TEST_OK: u8 = 0x00;
/// Interface test result "clock line stuck high": what a controller reports
/// for a port with nothing behind it.
const INTERFACE_TEST_NO_DEVICE: u8 = 0x02;

// Output port bits.
/// System reset line; the CPU is reset while it is low.
const OUTPUT_PORT_RESET: u8 = 0x01;
/// A20 gate.
const OUTPUT_PORT_A20: u8 = 0x02;

// Keyboard (PS/2 device) commands and replies.
const KBD_SET_LEDS: u8 = 0xed;
const KBD_SCANCODE_SET: u8 = 0xf0;
const KBD_GET_ID: u8 = 0xf2;
const KBD_SET_TYPEMATIC: u8 = 0xf3;
const KBD_RESET: u8 = 0xff;
const KBD_ACK: u8 = 0xfa;
const KBD_BAT_OK: u8 = 0xaa;
/// MF2 keyboard ID; the second byte reads 0x41 through the translator.
const KBD_ID: [u8; 2] = [0xab, 0x83];
const KBD_ID_TRANSLATED: [u8; 2] = [0xab, 0x41];
/// The keyboard always speaks scancode set 2 (0x41 once translated).
const KBD_SET_2: u8 = 0x02;
const KBD_SET_2_TRANSLATED: u8 = 0x41;

/// Ctrl, Alt, Delete pressed then released, in scancode set 1 (what the
/// guest sees with translation on): make LCtrl, LAlt, E0 Delete; break
/// E0 Delete, LAlt, LCtrl.
const CTRL_ALT_DEL_SET1: &[u8] = &[0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d];
/// The same keys in scancode set 2 (translation off): breaks are F0-prefixed.
const CTRL_ALT_DEL_SET2: &[u8] = &[
    0x14, 0x11, 0xe0, 0x71, 0xe0, 0xf0, 0x71, 0xf0, 0x11, 0xf0, 0x14,
];

/// What a data-port write means, decided by the previous command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pending {
    None,
    /// Controller command waiting for its parameter byte.
    Controller(u8),
    /// Keyboard command waiting for its parameter byte.
    Keyboard(u8),
}

/// i8042 keyboard controller: reset line (0xFE to the command port) and
/// Ctrl-Alt-Del injection.
pub struct I8042 {
    events: Sender<VmEvent>,
    kbd_irq: EventFd,
    ctr: u8,
    status: u8,
    output_port: u8,
    pending: Pending,
    /// Bytes for the guest; the front one is in the output buffer.
    out: VecDeque<u8>,
}

impl I8042 {
    pub fn new(events: Sender<VmEvent>, kbd_irq: EventFd) -> Self {
        I8042 {
            events,
            kbd_irq,
            ctr: CTR_DEFAULT,
            status: STATUS_UNLOCKED,
            output_port: OUTPUT_PORT_RESET | OUTPUT_PORT_A20,
            pending: Pending::None,
            out: VecDeque::new(),
        }
    }

    /// Inject the Ctrl-Alt-Del scancode sequence (asks the guest to reboot).
    /// The keys are pressed then released, in set 1 when the command byte's
    /// translation bit is on and in set 2 otherwise; IRQ 1 is raised for each
    /// byte as it reaches the output buffer.
    pub fn trigger_ctrl_alt_del(&mut self) {
        let codes = if self.ctr & CTR_XLATE != 0 {
            CTRL_ALT_DEL_SET1
        } else {
            CTRL_ALT_DEL_SET2
        };
        self.push_bytes(codes);
    }

    fn push_bytes(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.push(*b);
        }
    }

    /// Queue a byte for the guest; if the output buffer was empty it is
    /// filled now and the interrupt raised.
    fn push(&mut self, byte: u8) {
        self.out.push_back(byte);
        if self.out.len() == 1 {
            self.output_buffer_filled();
        }
    }

    fn output_buffer_filled(&self) {
        if self.ctr & CTR_KBD_INT != 0 {
            raise_irq(&self.kbd_irq, "i8042");
        }
    }

    /// The guest read the data port: hand out the buffered byte and move the
    /// next one in.
    fn read_data(&mut self) -> u8 {
        let byte = self.out.pop_front().unwrap_or(0);
        if !self.out.is_empty() {
            self.output_buffer_filled();
        }
        byte
    }

    fn read_status(&self) -> u8 {
        let obf = if self.out.is_empty() { 0 } else { STATUS_OBF };
        self.status | obf
    }

    fn reset(&self) {
        send_event(&self.events, VmEvent::Reset, "i8042");
    }

    fn write_command(&mut self, cmd: u8) {
        self.status |= STATUS_CMD;
        self.pending = Pending::None;
        match cmd {
            CMD_READ_CTR => self.push(self.ctr),
            CMD_WRITE_CTR | CMD_WRITE_OUTPUT_PORT | CMD_WRITE_KBD_OUTPUT => {
                self.pending = Pending::Controller(cmd)
            }
            CMD_AUX_DISABLE => self.ctr |= CTR_AUX_DISABLE,
            CMD_AUX_ENABLE => self.ctr &= !CTR_AUX_DISABLE,
            CMD_AUX_TEST => self.push(INTERFACE_TEST_NO_DEVICE),
            CMD_SELF_TEST => {
                self.status |= STATUS_SYS;
                self.push(SELF_TEST_OK);
            }
            CMD_KBD_TEST => self.push(INTERFACE_TEST_OK),
            CMD_KBD_DISABLE => self.ctr |= CTR_KBD_DISABLE,
            CMD_KBD_ENABLE => self.ctr &= !CTR_KBD_DISABLE,
            CMD_READ_OUTPUT_PORT => self.push(self.output_port),
            CMD_PULSE_FIRST..=0xff => {
                // Low nibble bit clear = pulse that output-port line low.
                if cmd & OUTPUT_PORT_RESET == 0 {
                    self.reset();
                }
            }
            _ => log::debug!("i8042: ignoring controller command {cmd:#04x}"),
        }
    }

    fn write_data(&mut self, byte: u8) {
        self.status &= !STATUS_CMD;
        match std::mem::replace(&mut self.pending, Pending::None) {
            Pending::Controller(CMD_WRITE_CTR) => {
                self.ctr = byte;
                self.status = (self.status & !STATUS_SYS) | (byte & CTR_SYS);
            }
            Pending::Controller(CMD_WRITE_OUTPUT_PORT) => {
                self.output_port = byte;
                if byte & OUTPUT_PORT_RESET == 0 {
                    self.reset();
                }
            }
            Pending::Controller(_) => self.push(byte), // CMD_WRITE_KBD_OUTPUT
            Pending::Keyboard(cmd) => self.keyboard_parameter(cmd, byte),
            Pending::None => self.keyboard_command(byte),
        }
    }

    /// A byte sent to the keyboard itself.
    fn keyboard_command(&mut self, cmd: u8) {
        self.push(KBD_ACK);
        match cmd {
            KBD_RESET => self.push(KBD_BAT_OK),
            KBD_GET_ID => {
                let id = if self.ctr & CTR_XLATE != 0 {
                    KBD_ID_TRANSLATED
                } else {
                    KBD_ID
                };
                self.push_bytes(&id);
            }
            KBD_SET_LEDS | KBD_SCANCODE_SET | KBD_SET_TYPEMATIC => {
                self.pending = Pending::Keyboard(cmd)
            }
            _ => {}
        }
    }

    fn keyboard_parameter(&mut self, cmd: u8, param: u8) {
        self.push(KBD_ACK);
        if cmd == KBD_SCANCODE_SET && param == 0 {
            let set = if self.ctr & CTR_XLATE != 0 {
                KBD_SET_2_TRANSLATED
            } else {
                KBD_SET_2
            };
            self.push(set);
        }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, base: u64, offset: u64, data: &mut [u8]) {
        let port = base + offset;
        let value = if port == u64::from(I8042_DATA_PORT) {
            self.read_data()
        } else if port == u64::from(I8042_COMMAND_PORT) {
            self.read_status()
        } else {
            0
        };
        read_byte_register(data, value);
    }

    fn write(&mut self, base: u64, offset: u64, data: &[u8]) {
        let Some(&byte) = data.first() else { return };
        let port = base + offset;
        if port == u64::from(I8042_DATA_PORT) {
            self.write_data(byte);
        } else if port == u64::from(I8042_COMMAND_PORT) {
            self.write_command(byte);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::{Receiver, unbounded};

    const DATA: u64 = I8042_DATA_PORT as u64;
    const CMD: u64 = I8042_COMMAND_PORT as u64;

    fn device() -> (I8042, Receiver<VmEvent>, EventFd) {
        let (tx, rx) = unbounded();
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        (I8042::new(tx, irq.try_clone().unwrap()), rx, irq)
    }

    fn inb(dev: &mut I8042, port: u64) -> u8 {
        let mut b = [0u8];
        dev.read(port, 0, &mut b);
        b[0]
    }

    fn command(dev: &mut I8042, cmd: u8) {
        dev.write(CMD, 0, &[cmd]);
    }

    /// Everything the guest can read right now.
    fn drain(dev: &mut I8042) -> Vec<u8> {
        let mut bytes = Vec::new();
        while inb(dev, CMD) & STATUS_OBF != 0 {
            bytes.push(inb(dev, DATA));
        }
        bytes
    }

    #[test]
    fn self_test_and_interface_tests() {
        let (mut dev, _rx, _irq) = device();
        assert_eq!(inb(&mut dev, CMD) & STATUS_OBF, 0);
        command(&mut dev, CMD_SELF_TEST);
        assert_eq!(drain(&mut dev), vec![SELF_TEST_OK]);
        assert_ne!(inb(&mut dev, CMD) & STATUS_SYS, 0);
        command(&mut dev, CMD_KBD_TEST);
        assert_eq!(drain(&mut dev), vec![INTERFACE_TEST_OK]);
        command(&mut dev, CMD_AUX_TEST);
        assert_eq!(drain(&mut dev), vec![INTERFACE_TEST_NO_DEVICE]);
    }

    #[test]
    fn command_byte_reads_back_what_was_written() {
        let (mut dev, _rx, _irq) = device();
        command(&mut dev, CMD_READ_CTR);
        assert_eq!(drain(&mut dev), vec![CTR_DEFAULT]);
        command(&mut dev, CMD_WRITE_CTR);
        assert_ne!(inb(&mut dev, CMD) & STATUS_CMD, 0);
        dev.write(DATA, 0, &[0x30]);
        assert_eq!(inb(&mut dev, CMD) & STATUS_CMD, 0);
        command(&mut dev, CMD_READ_CTR);
        assert_eq!(drain(&mut dev), vec![0x30]);
        command(&mut dev, CMD_KBD_ENABLE);
        command(&mut dev, CMD_AUX_ENABLE);
        command(&mut dev, CMD_READ_CTR);
        assert_eq!(drain(&mut dev), vec![0x00]);
        command(&mut dev, CMD_KBD_DISABLE);
        command(&mut dev, CMD_AUX_DISABLE);
        command(&mut dev, CMD_READ_CTR);
        assert_eq!(drain(&mut dev), vec![CTR_KBD_DISABLE | CTR_AUX_DISABLE]);
    }

    #[test]
    fn pulse_reset_asks_for_a_vm_reset() {
        let (mut dev, rx, _irq) = device();
        command(&mut dev, 0xff); // pulses nothing
        assert!(rx.try_recv().is_err());
        command(&mut dev, 0xfe);
        assert_eq!(rx.try_recv(), Ok(VmEvent::Reset));
    }

    #[test]
    fn output_port_write_with_reset_low_resets() {
        let (mut dev, rx, _irq) = device();
        command(&mut dev, CMD_READ_OUTPUT_PORT);
        assert_eq!(drain(&mut dev), vec![OUTPUT_PORT_RESET | OUTPUT_PORT_A20]);
        command(&mut dev, CMD_WRITE_OUTPUT_PORT);
        dev.write(DATA, 0, &[OUTPUT_PORT_RESET | OUTPUT_PORT_A20]);
        assert!(rx.try_recv().is_err());
        command(&mut dev, CMD_WRITE_OUTPUT_PORT);
        dev.write(DATA, 0, &[OUTPUT_PORT_A20]);
        assert_eq!(rx.try_recv(), Ok(VmEvent::Reset));
    }

    #[test]
    fn keyboard_answers_like_an_mf2_keyboard() {
        let (mut dev, _rx, _irq) = device();
        dev.write(DATA, 0, &[KBD_RESET]);
        assert_eq!(drain(&mut dev), vec![KBD_ACK, KBD_BAT_OK]);
        dev.write(DATA, 0, &[KBD_GET_ID]);
        assert_eq!(drain(&mut dev), vec![KBD_ACK, 0xab, 0x41]);
        dev.write(DATA, 0, &[KBD_SET_LEDS]);
        dev.write(DATA, 0, &[0x07]);
        assert_eq!(drain(&mut dev), vec![KBD_ACK, KBD_ACK]);
        dev.write(DATA, 0, &[KBD_SCANCODE_SET]);
        dev.write(DATA, 0, &[0]);
        assert_eq!(drain(&mut dev), vec![KBD_ACK, KBD_ACK, 0x41]);
        // Without translation the raw set-2 answers come through.
        command(&mut dev, CMD_WRITE_CTR);
        dev.write(DATA, 0, &[CTR_KBD_INT]);
        dev.write(DATA, 0, &[KBD_GET_ID]);
        assert_eq!(drain(&mut dev), vec![KBD_ACK, 0xab, 0x83]);
        dev.write(DATA, 0, &[0xf4]); // enable scanning
        assert_eq!(drain(&mut dev), vec![KBD_ACK]);
    }

    #[test]
    fn write_keyboard_output_echoes_the_byte() {
        let (mut dev, _rx, _irq) = device();
        command(&mut dev, CMD_WRITE_KBD_OUTPUT);
        dev.write(DATA, 0, &[0x5a]);
        assert_eq!(drain(&mut dev), vec![0x5a]);
    }

    #[test]
    fn ctrl_alt_del_in_set_1_raises_one_irq_per_byte() {
        let (mut dev, _rx, irq) = device();
        dev.trigger_ctrl_alt_del();
        let mut got = Vec::new();
        while inb(&mut dev, CMD) & STATUS_OBF != 0 {
            // One interrupt for the byte now in the output buffer.
            assert_eq!(irq.read().unwrap(), 1);
            got.push(inb(&mut dev, DATA));
        }
        assert!(irq.read().is_err());
        assert_eq!(got, vec![0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d]);
    }

    #[test]
    fn ctrl_alt_del_in_set_2_without_translation_or_irq() {
        let (mut dev, _rx, irq) = device();
        command(&mut dev, CMD_WRITE_CTR);
        dev.write(DATA, 0, &[CTR_SYS]);
        dev.trigger_ctrl_alt_del();
        assert_eq!(
            drain(&mut dev),
            vec![
                0x14, 0x11, 0xe0, 0x71, 0xe0, 0xf0, 0x71, 0xf0, 0x11, 0xf0, 0x14
            ]
        );
        assert!(
            irq.read().is_err(),
            "interrupts are off in the command byte"
        );
    }

    #[test]
    fn empty_and_odd_accesses_do_not_panic() {
        let (mut dev, _rx, _irq) = device();
        assert_eq!(inb(&mut dev, DATA), 0);
        dev.write(DATA, 0, &[]);
        let mut buf = [0xffu8; 2];
        dev.read(CMD, 0, &mut buf);
        assert_eq!(buf[1], 0);
        dev.read(0x61, 0, &mut buf);
        assert_eq!(buf, [0, 0]);
    }
}
