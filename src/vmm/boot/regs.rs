//! The boot vCPU's registers for each entry protocol.
//!
//! - Linux 64-bit (boot.rst "64-bit BOOT PROTOCOL"): long mode, paging on
//!   with an identity map, flat 64-bit CS, `__BOOT_DS` data, RSI = zero page.
//! - Linux 32-bit (boot.rst "32-bit BOOT PROTOCOL"): protected mode, paging
//!   off, CS = `__BOOT_CS` (0x10), DS/ES/SS = `__BOOT_DS` (0x18), ESI = zero
//!   page, EBP/EDI/EBX = 0, interrupts off.
//! - PVH (docs/misc/pvh.pandoc): protected mode, paging off, flat 32-bit
//!   CS and data segments, EBX = `hvm_start_info`.
//!
//! The pure functions build the register files and write the descriptor
//! tables; [`setup_boot_vcpu`](super::setup_boot_vcpu) only adds the ioctls.

use kvm_bindings::{kvm_regs, kvm_sregs};
use vm_memory::{Bytes, GuestAddress, GuestMemoryError};

use super::EntryPoint;
use super::gdt::{
    self, BOOT_GDT, BOOT_GDT_LIMIT, BOOT_IDT_LIMIT, CODE32_DESCRIPTOR, CODE32_SELECTOR,
    CODE64_DESCRIPTOR, CODE64_SELECTOR, DATA_DESCRIPTOR, DATA_SELECTOR,
};
use super::paging;
use crate::vmm::layout::{BOOT_GDT_START, BOOT_IDT_START, BOOT_STACK_POINTER, PML4_START};
use crate::vmm::memory::GuestMemoryMmap;

// Control register and EFER bits (Intel SDM vol. 3A §2.5, §2.2.1).
pub const CR0_PE: u64 = 1 << 0;
/// Extension type; hard-wired to 1 since the i486.
pub const CR0_ET: u64 = 1 << 4;
pub const CR0_PG: u64 = 1 << 31;
pub const CR4_PAE: u64 = 1 << 5;
pub const EFER_LME: u64 = 1 << 8;
pub const EFER_LMA: u64 = 1 << 10;
/// RFLAGS bit 1 is reserved and always 1; IF (bit 9) stays clear.
pub const RFLAGS_RESERVED: u64 = 1 << 1;

/// Write the GDT and IDT, and for the 64-bit entry the page tables.
pub fn write_boot_tables(
    mem: &GuestMemoryMmap,
    entry: &EntryPoint,
) -> Result<(), GuestMemoryError> {
    let gdt: Vec<u8> = BOOT_GDT.iter().flat_map(|d| d.to_le_bytes()).collect();
    mem.write_slice(&gdt, GuestAddress(BOOT_GDT_START))?;
    mem.write_obj(0u64, GuestAddress(BOOT_IDT_START))?;
    if let EntryPoint::Linux64 { .. } = entry {
        paging::write_identity_map(mem)?;
    }
    Ok(())
}

/// General-purpose registers at the entry.
pub fn boot_regs(entry: &EntryPoint) -> kvm_regs {
    let mut regs = kvm_regs {
        rflags: RFLAGS_RESERVED,
        rsp: BOOT_STACK_POINTER,
        ..Default::default()
    };
    match *entry {
        EntryPoint::Linux64 { rip, boot_params } => {
            regs.rip = rip;
            regs.rsi = boot_params;
        }
        EntryPoint::Linux32 { eip, boot_params } => {
            regs.rip = eip;
            regs.rsi = boot_params;
        }
        EntryPoint::Pvh { eip, start_info } => {
            regs.rip = eip;
            regs.rbx = start_info;
        }
    }
    regs
}

/// Special registers at the entry, starting from the vCPU's current ones
/// (which keep what we do not set: LDT, APIC base, interrupt bitmap).
pub fn boot_sregs(current: &kvm_sregs, entry: &EntryPoint) -> kvm_sregs {
    let mut sregs = *current;
    let (code, data) = match entry {
        EntryPoint::Linux64 { .. } => (
            gdt::segment(CODE64_DESCRIPTOR, CODE64_SELECTOR),
            gdt::segment(DATA_DESCRIPTOR, DATA_SELECTOR),
        ),
        EntryPoint::Linux32 { .. } | EntryPoint::Pvh { .. } => (
            gdt::segment(CODE32_DESCRIPTOR, CODE32_SELECTOR),
            gdt::segment(DATA_DESCRIPTOR, DATA_SELECTOR),
        ),
    };
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = gdt::task_register();
    sregs.gdt.base = BOOT_GDT_START;
    sregs.gdt.limit = BOOT_GDT_LIMIT;
    sregs.idt.base = BOOT_IDT_START;
    sregs.idt.limit = BOOT_IDT_LIMIT;
    sregs.cr2 = 0;
    match entry {
        EntryPoint::Linux64 { .. } => {
            sregs.cr0 = CR0_PE | CR0_ET | CR0_PG;
            sregs.cr3 = PML4_START;
            sregs.cr4 = CR4_PAE;
            sregs.efer = EFER_LME | EFER_LMA;
        }
        EntryPoint::Linux32 { .. } | EntryPoint::Pvh { .. } => {
            sregs.cr0 = CR0_PE | CR0_ET;
            sregs.cr3 = 0;
            sregs.cr4 = 0;
            sregs.efer = 0;
        }
    }
    sregs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::layout::{PVH_INFO_START, ZERO_PAGE_START};
    use crate::vmm::memory::create_guest_memory;

    const L64: EntryPoint = EntryPoint::Linux64 {
        rip: 0x10_0200,
        boot_params: ZERO_PAGE_START,
    };
    const L32: EntryPoint = EntryPoint::Linux32 {
        eip: 0x10_0000,
        boot_params: ZERO_PAGE_START,
    };
    const PVH: EntryPoint = EntryPoint::Pvh {
        eip: 0x100_0000,
        start_info: PVH_INFO_START,
    };

    #[test]
    fn linux64_is_long_mode() {
        let s = boot_sregs(&kvm_sregs::default(), &L64);
        assert_eq!(s.cr0 & (CR0_PE | CR0_PG), CR0_PE | CR0_PG);
        assert_eq!(s.cr4 & CR4_PAE, CR4_PAE);
        assert_eq!(s.efer & (EFER_LME | EFER_LMA), EFER_LME | EFER_LMA);
        assert_eq!(s.cr3, PML4_START);
        assert_eq!((s.cs.l, s.cs.db, s.cs.selector), (1, 0, CODE64_SELECTOR));
        assert_eq!(s.ss.selector, DATA_SELECTOR);
        let r = boot_regs(&L64);
        assert_eq!(
            (r.rip, r.rsi, r.rsp, r.rflags),
            (0x10_0200, ZERO_PAGE_START, BOOT_STACK_POINTER, 2)
        );
    }

    #[test]
    fn linux32_is_protected_mode_with_boot_selectors() {
        let s = boot_sregs(&kvm_sregs::default(), &L32);
        assert_eq!(s.cr0 & (CR0_PE | CR0_PG), CR0_PE);
        assert_eq!((s.cr4, s.efer), (0, 0));
        assert_eq!((s.cs.selector, s.cs.db, s.cs.l), (0x10, 1, 0));
        for seg in [s.ds, s.es, s.ss] {
            assert_eq!((seg.selector, seg.base, seg.limit), (0x18, 0, 0xffff_ffff));
        }
        let r = boot_regs(&L32);
        assert_eq!((r.rip, r.rsi), (0x10_0000, ZERO_PAGE_START));
        assert_eq!((r.rbx, r.rdi, r.rbp), (0, 0, 0));
        assert_eq!(r.rflags & (1 << 9), 0, "interrupts must be off");
    }

    #[test]
    fn pvh_passes_start_info_in_ebx() {
        let s = boot_sregs(&kvm_sregs::default(), &PVH);
        assert_eq!(s.cr0 & (CR0_PE | CR0_PG), CR0_PE);
        assert_eq!(s.cs.db, 1);
        let r = boot_regs(&PVH);
        assert_eq!((r.rip, r.rbx, r.rflags), (0x100_0000, PVH_INFO_START, 2));
    }

    #[test]
    fn tables_land_in_guest_memory() {
        let mem = create_guest_memory(16).unwrap();
        write_boot_tables(&mem, &L64).unwrap();
        for (i, d) in BOOT_GDT.iter().enumerate() {
            let got: u64 = mem
                .read_obj(GuestAddress(BOOT_GDT_START + i as u64 * 8))
                .unwrap();
            assert_eq!(got, *d);
        }
        assert_eq!(paging::translate(&mem, 0x7654_3210), Some(0x7654_3210));
    }
}
