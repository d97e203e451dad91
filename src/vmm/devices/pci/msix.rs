//! MSI-X (PCI Local Bus 3.0 §6.8.2): the capability, the vector table and
//! the pending bit array, with delivery through per-vector irqfds.
//!
//! Masking is done here, not in KVM: all interrupts originate in the VMM,
//! so a vector that is masked (per vector, or by the function mask) simply
//! sets its PBA bit instead of writing the irqfd, and is delivered when it
//! is unmasked. Routes are pushed to the router when an unmasked entry's
//! message changes, or when an entry is unmasked with a new message.

use std::sync::Arc;

use vmm_sys_util::eventfd::EventFd;

use super::msi_routing::{self, MsiMessage, MsiRouter, MsiVector};

/// Capability ID of MSI-X (PCI Code and ID Assignment spec).
pub const MSIX_CAPABILITY_ID: u8 = 0x11;
/// Bytes in the MSI-X capability.
pub const MSIX_CAPABILITY_SIZE: usize = 12;
/// Offset of Message Control inside the capability.
pub const MSIX_MESSAGE_CONTROL_OFFSET: usize = 2;
/// Message Control: MSI-X Enable.
pub const MSIX_ENABLE: u16 = 1 << 15;
/// Message Control: Function Mask.
pub const MSIX_FUNCTION_MASK: u16 = 1 << 14;
/// Bytes per vector table entry.
pub const MSIX_TABLE_ENTRY_SIZE: u64 = 16;
/// Vector Control: Mask Bit.
const VECTOR_CONTROL_MASKED: u32 = 1;
/// Most vectors a function may have (Table Size is 11 bits, N-1 encoded).
pub const MSIX_MAX_VECTORS: u16 = 2048;

/// One vector table entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsixEntry {
    pub address_lo: u32,
    pub address_hi: u32,
    pub data: u32,
    pub vector_control: u32,
}

impl Default for MsixEntry {
    /// Entries come up masked (PCI 3.0 §6.8.2.9).
    fn default() -> Self {
        MsixEntry {
            address_lo: 0,
            address_hi: 0,
            data: 0,
            vector_control: VECTOR_CONTROL_MASKED,
        }
    }
}

impl MsixEntry {
    fn masked(&self) -> bool {
        self.vector_control & VECTOR_CONTROL_MASKED != 0
    }

    fn message(&self) -> MsiMessage {
        MsiMessage {
            address: u64::from(self.address_hi) << 32 | u64::from(self.address_lo),
            data: self.data,
        }
    }

    fn field(&mut self, index: u64) -> &mut u32 {
        match index {
            0 => &mut self.address_lo,
            1 => &mut self.address_hi,
            2 => &mut self.data,
            _ => &mut self.vector_control,
        }
    }
}

/// The capability body for `num_vectors` vectors whose table and PBA sit at
/// `table_offset` / `pba_offset` of BAR `bir`.
pub fn capability(num_vectors: u16, bir: u8, table_offset: u32, pba_offset: u32) -> Vec<u8> {
    let mut cap = vec![MSIX_CAPABILITY_ID, 0];
    cap.extend_from_slice(&(num_vectors - 1).to_le_bytes());
    cap.extend_from_slice(&(table_offset | u32::from(bir)).to_le_bytes());
    cap.extend_from_slice(&(pba_offset | u32::from(bir)).to_le_bytes());
    cap
}

/// Bytes the PBA of `num_vectors` vectors takes (whole qwords).
pub fn pba_size(num_vectors: u16) -> u64 {
    u64::from(num_vectors).div_ceil(64) * 8
}

/// MSI-X state of one function.
pub struct Msix {
    entries: Vec<MsixEntry>,
    pending: Vec<bool>,
    /// What the router has for each vector's GSI.
    installed: Vec<Option<MsiMessage>>,
    vectors: Vec<MsiVector>,
    enabled: bool,
    function_masked: bool,
    router: Arc<dyn MsiRouter>,
}

impl Msix {
    pub fn new(num_vectors: u16, router: Arc<dyn MsiRouter>) -> Result<Self, msi_routing::Error> {
        let n = usize::from(num_vectors.clamp(1, MSIX_MAX_VECTORS));
        let vectors = (0..n)
            .map(|_| router.allocate_vector())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Msix {
            entries: vec![MsixEntry::default(); n],
            pending: vec![false; n],
            installed: vec![None; n],
            vectors,
            enabled: false,
            function_masked: false,
            router,
        })
    }

    pub fn num_vectors(&self) -> u16 {
        self.entries.len() as u16
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The GSI that vector `v` raises.
    pub fn gsi(&self, v: u16) -> Option<u32> {
        self.vectors.get(usize::from(v)).map(|v| v.gsi)
    }

    /// The irqfd that raises vector `v`.
    pub fn irqfd(&self, v: u16) -> Option<&EventFd> {
        self.vectors.get(usize::from(v)).map(|v| &v.irqfd)
    }

    /// The guest wrote Message Control.
    pub fn set_message_control(&mut self, control: u16) {
        self.enabled = control & MSIX_ENABLE != 0;
        self.function_masked = control & MSIX_FUNCTION_MASK != 0;
        for v in 0..self.entries.len() {
            self.deliver_if_pending(v);
        }
    }

    fn deliverable(&self, v: usize) -> bool {
        self.enabled && !self.function_masked && !self.entries[v].masked()
    }

    /// Push vector `v`'s message to the router if it is unmasked and new.
    fn sync_route(&mut self, v: usize) {
        let entry = self.entries[v];
        if entry.masked() || self.installed[v] == Some(entry.message()) {
            return;
        }
        match self.router.set_route(self.vectors[v].gsi, entry.message()) {
            Ok(()) => self.installed[v] = Some(entry.message()),
            Err(e) => log::error!("MSI-X vector {v}: {e}"),
        }
    }

    fn fire(&mut self, v: usize) {
        self.sync_route(v);
        if let Err(e) = self.vectors[v].irqfd.write(1) {
            log::error!("MSI-X vector {v}: irqfd write: {e}");
        }
    }

    fn deliver_if_pending(&mut self, v: usize) {
        if self.pending[v] && self.deliverable(v) {
            self.pending[v] = false;
            self.fire(v);
        }
    }

    /// Raise vector `v`: deliver it, or mark it pending while masked.
    /// Nothing happens while MSI-X is disabled (this function has no INTx).
    pub fn trigger(&mut self, v: u16) {
        let v = usize::from(v);
        if v >= self.entries.len() || !self.enabled {
            return;
        }
        if self.deliverable(v) {
            self.fire(v);
        } else {
            self.pending[v] = true;
        }
    }

    /// A read of the vector table (dword or qword accesses).
    pub fn read_table(&self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if !matches!(data.len(), 4 | 8) || !offset.is_multiple_of(4) {
            return;
        }
        for (i, chunk) in data.chunks_mut(4).enumerate() {
            let at = offset + 4 * i as u64;
            let Some(entry) = self.entries.get((at / MSIX_TABLE_ENTRY_SIZE) as usize) else {
                return;
            };
            let mut entry = *entry;
            chunk.copy_from_slice(&entry.field((at % MSIX_TABLE_ENTRY_SIZE) / 4).to_le_bytes());
        }
    }

    /// A write to the vector table (dword or qword accesses).
    pub fn write_table(&mut self, offset: u64, data: &[u8]) {
        if !matches!(data.len(), 4 | 8) || !offset.is_multiple_of(4) {
            return;
        }
        for (i, chunk) in data.chunks(4).enumerate() {
            let at = offset + 4 * i as u64;
            let v = (at / MSIX_TABLE_ENTRY_SIZE) as usize;
            let Some(entry) = self.entries.get_mut(v) else {
                return;
            };
            let mut bytes = [0u8; 4];
            bytes.copy_from_slice(chunk);
            let mut value = u32::from_le_bytes(bytes);
            let field = (at % MSIX_TABLE_ENTRY_SIZE) / 4;
            if field == 3 {
                // Only the mask bit of Vector Control is defined.
                value &= VECTOR_CONTROL_MASKED;
            }
            *entry.field(field) = value;
            self.sync_route(v);
            self.deliver_if_pending(v);
        }
    }

    /// A read of the pending bit array; writes to it are ignored.
    pub fn read_pba(&self, offset: u64, data: &mut [u8]) {
        for (i, byte) in data.iter_mut().enumerate() {
            let first = (offset as usize + i) * 8;
            *byte = (0..8)
                .filter(|b| self.pending.get(first + b).copied().unwrap_or(false))
                .fold(0u8, |acc, b| acc | 1 << b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::devices::pci::msi_routing::tests::RecordingRouter;
    use crate::vmm::layout::MSI_GSI_START;

    fn write_entry(msix: &mut Msix, v: u64, addr: u64, data: u32, masked: bool) {
        let base = v * MSIX_TABLE_ENTRY_SIZE;
        msix.write_table(base, &addr.to_le_bytes());
        msix.write_table(base + 8, &data.to_le_bytes());
        msix.write_table(base + 12, &u32::from(masked).to_le_bytes());
    }

    fn fired(msix: &Msix, v: usize) -> bool {
        msix.vectors[v].irqfd.read().is_ok()
    }

    #[test]
    fn capability_layout() {
        let cap = capability(3, 0, 0x4000, 0x5000);
        assert_eq!(cap, [0x11, 0, 2, 0, 0x00, 0x40, 0, 0, 0x00, 0x50, 0, 0]);
        assert_eq!(cap.len(), MSIX_CAPABILITY_SIZE);
        assert_eq!(pba_size(3), 8);
        assert_eq!(pba_size(65), 16);
    }

    #[test]
    fn table_writes_become_routes_when_unmasked() {
        let router = Arc::new(RecordingRouter::default());
        let mut msix = Msix::new(2, router.clone()).unwrap();
        assert_eq!(msix.gsi(1), Some(MSI_GSI_START + 1));
        write_entry(&mut msix, 1, 0xfee0_2000, 0x31, true);
        // Masked entries are not routed yet.
        assert!(router.routes.lock().unwrap().is_empty());
        let mut back = [0u8; 8];
        msix.read_table(16, &mut back);
        assert_eq!(u64::from_le_bytes(back), 0xfee0_2000);
        msix.write_table(16 + 12, &0u32.to_le_bytes());
        assert_eq!(
            router.routes.lock().unwrap().get(&(MSI_GSI_START + 1)),
            Some(&MsiMessage {
                address: 0xfee0_2000,
                data: 0x31
            })
        );
        // Rewriting the data of an unmasked entry updates its route.
        msix.write_table(16 + 8, &0x32u32.to_le_bytes());
        assert_eq!(
            router.routes.lock().unwrap()[&(MSI_GSI_START + 1)].data,
            0x32
        );
        // The same message again is not pushed twice.
        let updates = *router.updates.lock().unwrap();
        msix.write_table(16 + 8, &0x32u32.to_le_bytes());
        assert_eq!(*router.updates.lock().unwrap(), updates);
    }

    #[test]
    fn masking_defers_delivery_into_the_pba() {
        let router = Arc::new(RecordingRouter::default());
        let mut msix = Msix::new(2, router).unwrap();
        write_entry(&mut msix, 0, 0xfee0_0000, 0x40, false);
        // Disabled: nothing at all.
        msix.trigger(0);
        assert!(!fired(&msix, 0));
        msix.set_message_control(MSIX_ENABLE);
        msix.trigger(0);
        assert!(fired(&msix, 0));
        // Function mask: pending, then delivered on unmask.
        msix.set_message_control(MSIX_ENABLE | MSIX_FUNCTION_MASK);
        msix.trigger(0);
        assert!(!fired(&msix, 0));
        let mut pba = [0u8; 8];
        msix.read_pba(0, &mut pba);
        assert_eq!(pba[0], 1);
        msix.set_message_control(MSIX_ENABLE);
        assert!(fired(&msix, 0));
        msix.read_pba(0, &mut pba);
        assert_eq!(pba[0], 0);
        // Vector mask: same through Vector Control.
        msix.write_table(12, &1u32.to_le_bytes());
        msix.trigger(0);
        msix.trigger(1);
        msix.read_pba(0, &mut pba);
        assert_eq!(pba[0], 0b11);
        msix.write_table(12, &0u32.to_le_bytes());
        assert!(fired(&msix, 0));
        assert!(!fired(&msix, 1));
        msix.read_pba(0, &mut pba);
        assert_eq!(pba[0], 0b10);
        // Out-of-range vectors and odd accesses are ignored.
        msix.trigger(7);
        msix.write_table(3, &[1]);
        msix.write_table(0x1000, &0u32.to_le_bytes());
    }
}
