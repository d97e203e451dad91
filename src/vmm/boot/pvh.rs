//! PVH boot information: `hvm_start_info`, its module list and memory map
//! (xen/include/public/arch-x86/hvm/start_info.h, docs/misc/pvh.pandoc).

use linux_loader::configurator::pvh::PvhBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::elf::start_info::{
    XEN_HVM_START_MAGIC_VALUE, hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use vm_memory::GuestAddress;

use super::Error;
use super::e820::{self, Range};
use crate::vmm::layout::{
    CMDLINE_START, PVH_INFO_START, PVH_MEMMAP_START, PVH_MODLIST_START, RSDP_START, ZERO_PAGE_START,
};
use crate::vmm::memory::GuestMemoryMmap;

/// Version 1 adds the memory map fields.
pub const START_INFO_VERSION: u32 = 1;

/// Memory map entries that fit between `PVH_MEMMAP_START` and the zero page.
pub const MAX_MEMMAP_ENTRIES: usize =
    (ZERO_PAGE_START - PVH_MEMMAP_START) as usize / std::mem::size_of::<hvm_memmap_table_entry>();

const _: () =
    assert!(PVH_INFO_START + std::mem::size_of::<hvm_start_info>() as u64 <= PVH_MODLIST_START);
const _: () = assert!(
    PVH_MODLIST_START + std::mem::size_of::<hvm_modlist_entry>() as u64 <= PVH_MEMMAP_START
);

/// The start info for a guest with `map`, the command line at
/// `CMDLINE_START` and, if given, the initrd as module 0.
pub fn start_info(initrd: Option<(u64, u64)>, map: &[Range]) -> hvm_start_info {
    hvm_start_info {
        magic: XEN_HVM_START_MAGIC_VALUE,
        version: START_INFO_VERSION,
        flags: 0,
        nr_modules: u32::from(initrd.is_some()),
        modlist_paddr: if initrd.is_some() {
            PVH_MODLIST_START
        } else {
            0
        },
        cmdline_paddr: CMDLINE_START,
        rsdp_paddr: RSDP_START,
        memmap_paddr: PVH_MEMMAP_START,
        memmap_entries: map.len().min(MAX_MEMMAP_ENTRIES) as u32,
        reserved: 0,
    }
}

/// Write the start info, module list and memory map.
pub fn write(
    mem: &GuestMemoryMmap,
    initrd: Option<(u64, u64)>,
    map: &[Range],
) -> Result<(), Error> {
    let info = start_info(initrd, map);
    let mut params = BootParams::new(&info, GuestAddress(PVH_INFO_START));
    let memmap = e820::to_pvh(map);
    params.set_sections(
        &memmap[..info.memmap_entries as usize],
        GuestAddress(PVH_MEMMAP_START),
    );
    if let Some((paddr, size)) = initrd {
        let module = hvm_modlist_entry {
            paddr,
            size,
            cmdline_paddr: 0,
            reserved: 0,
        };
        params.set_modules(&[module], GuestAddress(PVH_MODLIST_START));
    }
    PvhBootConfigurator::write_bootparams(&params, mem).map_err(Error::BootParams)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::memory::create_guest_memory;
    use vm_memory::Bytes;

    #[test]
    fn start_info_without_initrd_has_no_modules() {
        let info = start_info(None, &e820::memory_map(64));
        assert_eq!(info.magic, 0x336e_c578);
        assert_eq!(info.version, 1);
        assert_eq!((info.nr_modules, info.modlist_paddr), (0, 0));
        assert_eq!(info.memmap_entries, 3);
    }

    #[test]
    fn writes_module_and_memmap() {
        let mem = create_guest_memory(64).unwrap();
        let map = e820::memory_map(64);
        write(&mem, Some((0x300_0000, 0x4242)), &map).unwrap();
        let info: hvm_start_info = mem.read_obj(GuestAddress(PVH_INFO_START)).unwrap();
        assert_eq!(info.nr_modules, 1);
        assert_eq!(info.modlist_paddr, PVH_MODLIST_START);
        assert_eq!(info.cmdline_paddr, CMDLINE_START);
        assert_eq!(info.rsdp_paddr, RSDP_START);
        let module: hvm_modlist_entry = mem.read_obj(GuestAddress(PVH_MODLIST_START)).unwrap();
        assert_eq!((module.paddr, module.size), (0x300_0000, 0x4242));
        for (i, r) in map.iter().enumerate() {
            let addr =
                PVH_MEMMAP_START + (i * std::mem::size_of::<hvm_memmap_table_entry>()) as u64;
            let e: hvm_memmap_table_entry = mem.read_obj(GuestAddress(addr)).unwrap();
            assert_eq!((e.addr, e.size), (r.addr, r.size));
        }
    }
}
