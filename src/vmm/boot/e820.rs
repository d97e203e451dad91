//! The guest's physical memory map, as the kernel is told about it.
//!
//! One map, derived from [`memory::ram_regions`], feeds both the Linux
//! zero page (`boot_params.e820_table`) and the PVH memory map
//! (`hvm_memmap_table_entry`), so the two boot paths cannot disagree.

use linux_loader::loader::bootparam::boot_e820_entry;
use linux_loader::loader::elf::start_info::{
    XEN_HVM_MEMMAP_TYPE_RAM, XEN_HVM_MEMMAP_TYPE_RESERVED, hvm_memmap_table_entry,
};

use crate::vmm::layout::{BIOS_AREA_END, EBDA_START, HIMEM_START};
use crate::vmm::memory;

/// e820 type of usable RAM (ACPI 6.5 §15, Table 15.312 "AddressRangeMemory").
pub const E820_RAM: u32 = 1;
/// e820 type of reserved memory (ACPI 6.5 §15, "AddressRangeReserved").
pub const E820_RESERVED: u32 = 2;

// The PVH memory map uses the e820 numbering (start_info.h says so).
const _: () = assert!(XEN_HVM_MEMMAP_TYPE_RAM == E820_RAM);
const _: () = assert!(XEN_HVM_MEMMAP_TYPE_RESERVED == E820_RESERVED);

/// What a range of guest-physical memory is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Ram,
    Reserved,
}

impl Kind {
    fn e820_type(self) -> u32 {
        match self {
            Kind::Ram => E820_RAM,
            Kind::Reserved => E820_RESERVED,
        }
    }
}

/// One range of the map: `[addr, addr + size)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub addr: u64,
    pub size: u64,
    pub kind: Kind,
}

impl Range {
    #[cfg(test)]
    pub fn end(&self) -> u64 {
        self.addr + self.size
    }
}

/// The memory map of a guest with `memory_mib` MiB of RAM:
/// RAM below the EBDA; the EBDA, VGA hole and BIOS area (where the ACPI
/// tables live) reserved; RAM from 1 MiB to the end of low RAM; RAM above
/// 4 GiB when the guest has more than the MMIO hole leaves below it.
pub fn memory_map(memory_mib: u64) -> Vec<Range> {
    let mut map = vec![
        Range {
            addr: 0,
            size: EBDA_START,
            kind: Kind::Ram,
        },
        Range {
            addr: EBDA_START,
            size: BIOS_AREA_END - EBDA_START,
            kind: Kind::Reserved,
        },
    ];
    for (start, len) in memory::ram_regions(memory_mib) {
        let start = start.0;
        let end = start + len;
        // The first region starts at 0; what lies below 1 MiB is described above.
        let start = start.max(HIMEM_START);
        if end > start {
            map.push(Range {
                addr: start,
                size: end - start,
                kind: Kind::Ram,
            });
        }
    }
    map
}

/// End (exclusive) of the RAM that starts at 1 MiB, the "low" RAM a 32-bit
/// boot path can reach.
pub fn low_ram_end(memory_mib: u64) -> u64 {
    memory::ram_regions(memory_mib)
        .first()
        .map_or(0, |(start, len)| start.0 + len)
}

/// The map as zero-page e820 entries.
pub fn to_e820(map: &[Range]) -> Vec<boot_e820_entry> {
    map.iter()
        .map(|r| boot_e820_entry {
            addr: r.addr,
            size: r.size,
            r#type: r.kind.e820_type(),
        })
        .collect()
}

/// The map as PVH `hvm_memmap_table_entry`s.
pub fn to_pvh(map: &[Range]) -> Vec<hvm_memmap_table_entry> {
    map.iter()
        .map(|r| hvm_memmap_table_entry {
            addr: r.addr,
            size: r.size,
            type_: r.kind.e820_type(),
            reserved: 0,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::layout::{GIB, HIGH_RAM_START, MIB, MMIO_HOLE_START};

    fn ram_total(map: &[Range]) -> u64 {
        map.iter()
            .filter(|r| r.kind == Kind::Ram)
            .map(|r| r.size)
            .sum()
    }

    #[test]
    fn small_guest_has_low_ram_and_the_bios_hole() {
        let map = memory_map(64);
        assert_eq!(map.len(), 3);
        assert_eq!(
            map[0],
            Range {
                addr: 0,
                size: EBDA_START,
                kind: Kind::Ram
            }
        );
        assert_eq!(map[1].addr, EBDA_START);
        assert_eq!(map[1].end(), BIOS_AREA_END);
        assert_eq!(map[1].kind, Kind::Reserved);
        assert_eq!(
            map[2],
            Range {
                addr: HIMEM_START,
                size: 63 * MIB,
                kind: Kind::Ram
            }
        );
        // RAM = configured memory minus the hole between the EBDA and 1 MiB.
        assert_eq!(ram_total(&map), 64 * MIB - (HIMEM_START - EBDA_START));
        assert_eq!(low_ram_end(64), 64 * MIB);
    }

    #[test]
    fn large_guest_continues_above_4g() {
        let map = memory_map(6 * 1024);
        assert_eq!(map.len(), 4);
        assert_eq!(map[2].end(), MMIO_HOLE_START);
        assert_eq!(map[3].addr, HIGH_RAM_START);
        assert_eq!(map[3].size, 6 * GIB - MMIO_HOLE_START);
        assert_eq!(ram_total(&map), 6 * GIB - (HIMEM_START - EBDA_START));
        assert_eq!(low_ram_end(6 * 1024), MMIO_HOLE_START);
    }

    #[test]
    fn ranges_are_sorted_and_disjoint() {
        for mib in [16, 512, 3072, 4096, 8192] {
            let map = memory_map(mib);
            for pair in map.windows(2) {
                assert!(pair[0].end() <= pair[1].addr, "{mib} MiB: {pair:?}");
            }
        }
    }

    #[test]
    fn both_encodings_carry_the_same_ranges() {
        let map = memory_map(512);
        let e820 = to_e820(&map);
        let pvh = to_pvh(&map);
        assert_eq!(e820.len(), map.len());
        for ((r, e), p) in map.iter().zip(&e820).zip(&pvh) {
            let (addr, size, ty) = (e.addr, e.size, e.r#type);
            assert_eq!((addr, size), (r.addr, r.size));
            assert_eq!((p.addr, p.size), (r.addr, r.size));
            assert_eq!(ty, p.type_);
        }
        let ty = e820[1].r#type;
        assert_eq!(ty, E820_RESERVED);
        assert_eq!(pvh[2].type_, E820_RAM);
    }
}
