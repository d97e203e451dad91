//! Identity-mapped page tables for the 64-bit Linux entry.
//!
//! The 64-bit boot protocol (Documentation/arch/x86/boot.rst) enters
//! `startup_64` with paging on and "the range with setup_header.init_size
//! from start address of loaded kernel and zero page and command line
//! buffer" identity mapped. We map the whole first 4 GiB with 2 MiB pages
//! (no 1 GiB pages: not every CPU has them): one PML4, one PDPT and four
//! page directories (Intel SDM vol. 3A §4.5, 4-level paging).

use vm_memory::{Bytes, GuestAddress, GuestMemoryError};

use crate::vmm::layout::{CMDLINE_START, PAGE_SIZE, PDE_START, PDPTE_START, PML4_START};
use crate::vmm::memory::GuestMemoryMmap;

/// Entry flags (SDM Table 4-15..4-18).
const PAGE_PRESENT: u64 = 1 << 0;
const PAGE_WRITABLE: u64 = 1 << 1;
/// PS: this directory entry maps a 2 MiB page.
const PAGE_SIZE_2M: u64 = 1 << 7;

const ENTRIES_PER_TABLE: u64 = 512;
const LARGE_PAGE_SIZE: u64 = 2 << 20;
/// Page directories, each mapping 1 GiB; they occupy
/// `[PDE_START, PDE_START + PAGE_DIRECTORIES * PAGE_SIZE)`.
pub const PAGE_DIRECTORIES: u64 = 4;
/// Bytes the identity map covers.
pub const IDENTITY_MAPPED: u64 = PAGE_DIRECTORIES * ENTRIES_PER_TABLE * LARGE_PAGE_SIZE;

// The directories must not run into the command line that follows them.
const _: () = assert!(PDE_START + PAGE_DIRECTORIES * PAGE_SIZE <= CMDLINE_START);
const _: () = assert!(PML4_START + PAGE_SIZE <= PDPTE_START);
const _: () = assert!(PDPTE_START + PAGE_SIZE <= PDE_START);
const _: () = assert!(IDENTITY_MAPPED == 1 << 32);

/// Write the PML4, PDPT and page directories; CR3 is `PML4_START`.
pub fn write_identity_map(mem: &GuestMemoryMmap) -> Result<(), GuestMemoryError> {
    mem.write_obj(
        PDPTE_START | PAGE_PRESENT | PAGE_WRITABLE,
        GuestAddress(PML4_START),
    )?;
    for dir in 0..PAGE_DIRECTORIES {
        let table = PDE_START + dir * PAGE_SIZE;
        mem.write_obj(
            table | PAGE_PRESENT | PAGE_WRITABLE,
            GuestAddress(PDPTE_START + dir * 8),
        )?;
        let mut entries = Vec::with_capacity((ENTRIES_PER_TABLE * 8) as usize);
        for i in 0..ENTRIES_PER_TABLE {
            let phys = (dir * ENTRIES_PER_TABLE + i) * LARGE_PAGE_SIZE;
            entries.extend_from_slice(
                &(phys | PAGE_PRESENT | PAGE_WRITABLE | PAGE_SIZE_2M).to_le_bytes(),
            );
        }
        mem.write_slice(&entries, GuestAddress(table))?;
    }
    Ok(())
}

/// Walk the tables in guest memory the way the MMU would, for `virt`.
/// Returns the physical address, or `None` if it is not mapped.
#[cfg(test)]
pub fn translate(mem: &GuestMemoryMmap, virt: u64) -> Option<u64> {
    const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
    let read = |table: u64, index: u64| -> Option<u64> {
        let e: u64 = mem.read_obj(GuestAddress(table + index * 8)).ok()?;
        (e & PAGE_PRESENT != 0).then_some(e)
    };
    let pml4e = read(PML4_START, (virt >> 39) & 0x1ff)?;
    let pdpte = read(pml4e & ADDR_MASK, (virt >> 30) & 0x1ff)?;
    let pde = read(pdpte & ADDR_MASK, (virt >> 21) & 0x1ff)?;
    if pde & PAGE_SIZE_2M == 0 {
        return None; // we only ever build 2 MiB mappings
    }
    Some((pde & ADDR_MASK & !(LARGE_PAGE_SIZE - 1)) | (virt & (LARGE_PAGE_SIZE - 1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::memory::create_guest_memory;

    #[test]
    fn first_4g_is_identity_mapped() {
        let mem = create_guest_memory(64).unwrap();
        write_identity_map(&mem).unwrap();
        for addr in [
            0,
            0x1000,
            0x20_0000,
            0x100_0000 + 0x234,
            0x3fff_ffff,
            0x4000_0000,
            0xfee0_0000,
            0xffff_ffff,
        ] {
            assert_eq!(translate(&mem, addr), Some(addr), "{addr:#x}");
        }
        assert_eq!(translate(&mem, 1 << 32), None);
    }

    #[test]
    fn entries_are_writable_large_pages() {
        let mem = create_guest_memory(64).unwrap();
        write_identity_map(&mem).unwrap();
        let pde: u64 = mem.read_obj(GuestAddress(PDE_START + 8)).unwrap();
        assert_eq!(
            pde,
            LARGE_PAGE_SIZE | PAGE_PRESENT | PAGE_WRITABLE | PAGE_SIZE_2M
        );
        let last: u64 = mem
            .read_obj(GuestAddress(PDE_START + 3 * PAGE_SIZE + 511 * 8))
            .unwrap();
        assert_eq!(last & !0xfff, 0xffe0_0000);
    }
}
