//! The test exit port (`layout::DEBUG_EXIT_PORT`, QEMU's isa-debug-exit
//! port): a guest writes a value of 1, 2 or 4 bytes and the VM ends with
//! `VmEvent::DebugExit(value)`. Reads return 0.

use crossbeam_channel::Sender;

use super::{le_value, send_event};
use crate::vmm::devices::{BusDevice, VmEvent};

/// Test port: a write ends the VM.
pub struct DebugExit {
    events: Sender<VmEvent>,
}

impl DebugExit {
    pub fn new(events: Sender<VmEvent>) -> Self {
        DebugExit { events }
    }
}

impl BusDevice for DebugExit {
    fn read(&mut self, _base: u64, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        let value = match data.len() {
            1 | 2 | 4 => le_value(data),
            _ => None,
        };
        match value {
            Some(v) if offset == 0 => {
                send_event(&self.events, VmEvent::DebugExit(v as u32), "debug-exit")
            }
            _ => log::warn!(
                "debug-exit: ignoring a {}-byte write at offset {offset}",
                data.len()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::unbounded;

    #[test]
    fn writes_of_each_width_end_the_vm_with_their_value() {
        let (tx, rx) = unbounded();
        let mut dev = DebugExit::new(tx);
        dev.write(0xf4, 0, &[0x31]);
        dev.write(0xf4, 0, &[0x34, 0x12]);
        dev.write(0xf4, 0, &[0x78, 0x56, 0x34, 0x12]);
        assert_eq!(rx.try_recv(), Ok(VmEvent::DebugExit(0x31)));
        assert_eq!(rx.try_recv(), Ok(VmEvent::DebugExit(0x1234)));
        assert_eq!(rx.try_recv(), Ok(VmEvent::DebugExit(0x1234_5678)));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn reads_are_zero_and_odd_writes_are_ignored() {
        let (tx, rx) = unbounded();
        let mut dev = DebugExit::new(tx);
        let mut buf = [0xffu8; 4];
        dev.read(0xf4, 0, &mut buf);
        assert_eq!(buf, [0; 4]);
        dev.write(0xf4, 0, &[1, 2, 3]);
        dev.write(0xf4, 0, &[1; 8]);
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_gone_controller_does_not_panic() {
        let (tx, rx) = unbounded();
        drop(rx);
        DebugExit::new(tx).write(0xf4, 0, &[1]);
    }
}
