//! Guest RAM: where it lives in guest-physical space and how it is created.
//!
//! RAM starts at 0. When the guest has more than `MMIO_HOLE_START` bytes,
//! the rest is placed from `HIGH_RAM_START` (4 GiB), leaving the 32-bit MMIO
//! hole for PCI BARs, the IOAPIC and the LAPIC. The e820 map, the PVH memory
//! map and the MADT are all derived from [`ram_regions`].

use vm_memory::GuestAddress;

use super::layout::{HIGH_RAM_START, MIB, MMIO_HOLE_START};

/// The guest memory type used throughout `vmm`.
pub type GuestMemoryMmap = vm_memory::GuestMemoryMmap<()>;

/// Smallest guest we build: enough for the boot structures, the BIOS area
/// and a kernel loaded at 1 MiB.
pub const MIN_MEMORY_MIB: u64 = 16;
/// Largest guest we build (1 TiB); a sanity bound on config values.
pub const MAX_MEMORY_MIB: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("guest memory of {0} MiB is outside {MIN_MEMORY_MIB}..={MAX_MEMORY_MIB} MiB")]
    InvalidSize(u64),
    #[error("cannot map {0} MiB of guest memory")]
    Mmap(u64, #[source] vm_memory::mmap::FromRangesError),
}

/// The guest-physical RAM ranges for `memory_mib` MiB of RAM.
pub fn ram_regions(memory_mib: u64) -> Vec<(GuestAddress, u64)> {
    let total = memory_mib * MIB;
    if total <= MMIO_HOLE_START {
        vec![(GuestAddress(0), total)]
    } else {
        vec![
            (GuestAddress(0), MMIO_HOLE_START),
            (GuestAddress(HIGH_RAM_START), total - MMIO_HOLE_START),
        ]
    }
}

/// Map anonymous memory for the guest's RAM.
pub fn create_guest_memory(memory_mib: u64) -> Result<GuestMemoryMmap, Error> {
    if !(MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&memory_mib) {
        return Err(Error::InvalidSize(memory_mib));
    }
    let ranges: Vec<(GuestAddress, usize)> = ram_regions(memory_mib)
        .into_iter()
        .map(|(addr, len)| (addr, len as usize))
        .collect();
    GuestMemoryMmap::from_ranges(&ranges).map_err(|e| Error::Mmap(memory_mib, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryBackend;

    #[test]
    fn small_guest_is_one_region() {
        assert_eq!(ram_regions(512), vec![(GuestAddress(0), 512 * MIB)]);
    }

    #[test]
    fn large_guest_skips_the_mmio_hole() {
        let regions = ram_regions(4096);
        assert_eq!(regions[0], (GuestAddress(0), MMIO_HOLE_START));
        assert_eq!(
            regions[1],
            (GuestAddress(HIGH_RAM_START), 4096 * MIB - MMIO_HOLE_START)
        );
    }

    #[test]
    fn creates_memory_of_the_asked_size() {
        let mem = create_guest_memory(64).unwrap();
        assert_eq!(mem.last_addr(), GuestAddress(64 * MIB - 1));
        assert!(matches!(create_guest_memory(1), Err(Error::InvalidSize(1))));
    }
}
