//! The boot GDT and the segment registers loaded from it.
//!
//! Descriptor format: Intel SDM vol. 3A §3.4.5 "Segment Descriptors".
//! The table serves every boot path:
//!
//! | selector | descriptor                   | used by                          |
//! |----------|------------------------------|----------------------------------|
//! | 0x00     | null                         |                                  |
//! | 0x08     | 64-bit code, flat            | Linux 64-bit entry (CS)          |
//! | 0x10     | 32-bit code, flat, 4 GiB     | Linux 32-bit (`__BOOT_CS`), PVH  |
//! | 0x18     | data, flat, 4 GiB            | every data segment (`__BOOT_DS`) |

use kvm_bindings::kvm_segment;

use crate::vmm::layout::{BOOT_GDT_START, BOOT_IDT_START};

// Access byte (descriptor bits 40..48).
const ACCESS_PRESENT: u8 = 1 << 7;
/// S = 1: code or data (not a system segment).
const ACCESS_CODE_DATA: u8 = 1 << 4;
/// Type for code: execute/read, accessed (SDM Table 3-1, type 0xB).
const TYPE_CODE_EXEC_READ: u8 = 0xb;
/// Type for data: read/write, accessed (SDM Table 3-1, type 0x3).
const TYPE_DATA_READ_WRITE: u8 = 0x3;
/// System type of a busy 32/64-bit TSS (SDM Table 3-2, type 0xB).
const TYPE_TSS_BUSY: u8 = 0xb;

// Flags nibble (descriptor bits 52..56).
const FLAG_GRANULARITY_4K: u8 = 1 << 3;
const FLAG_DEFAULT_32: u8 = 1 << 2;
const FLAG_LONG_MODE: u8 = 1 << 1;
const FLAG_AVL: u8 = 1 << 0;

/// Limit field of a flat segment: 0xFFFFF pages of 4 KiB = 4 GiB.
const FLAT_LIMIT: u32 = 0xf_ffff;

/// Encode a segment descriptor.
pub const fn descriptor(access: u8, flags: u8, base: u32, limit: u32) -> u64 {
    let base = base as u64;
    let limit = limit as u64;
    (limit & 0xffff)
        | ((base & 0xff_ffff) << 16)
        | ((access as u64) << 40)
        | (((limit >> 16) & 0xf) << 48)
        | (((flags as u64) & 0xf) << 52)
        | (((base >> 24) & 0xff) << 56)
}

pub const NULL_DESCRIPTOR: u64 = 0;
pub const CODE64_DESCRIPTOR: u64 = descriptor(
    ACCESS_PRESENT | ACCESS_CODE_DATA | TYPE_CODE_EXEC_READ,
    FLAG_GRANULARITY_4K | FLAG_LONG_MODE,
    0,
    FLAT_LIMIT,
);
pub const CODE32_DESCRIPTOR: u64 = descriptor(
    ACCESS_PRESENT | ACCESS_CODE_DATA | TYPE_CODE_EXEC_READ,
    FLAG_GRANULARITY_4K | FLAG_DEFAULT_32,
    0,
    FLAT_LIMIT,
);
pub const DATA_DESCRIPTOR: u64 = descriptor(
    ACCESS_PRESENT | ACCESS_CODE_DATA | TYPE_DATA_READ_WRITE,
    FLAG_GRANULARITY_4K | FLAG_DEFAULT_32,
    0,
    FLAT_LIMIT,
);

/// The boot GDT, written at `BOOT_GDT_START`.
pub const BOOT_GDT: [u64; 4] = [
    NULL_DESCRIPTOR,
    CODE64_DESCRIPTOR,
    CODE32_DESCRIPTOR,
    DATA_DESCRIPTOR,
];
/// Selector of the 64-bit code segment.
pub const CODE64_SELECTOR: u16 = 0x08;
/// Selector of the 32-bit code segment (Linux `__BOOT_CS`).
pub const CODE32_SELECTOR: u16 = 0x10;
/// Selector of the data segment (Linux `__BOOT_DS`).
pub const DATA_SELECTOR: u16 = 0x18;

/// GDTR limit: size of the table minus one.
pub const BOOT_GDT_LIMIT: u16 = (BOOT_GDT.len() * 8 - 1) as u16;
/// The boot IDT is one null gate: any interrupt or exception before the
/// kernel loads its own IDT shuts the vCPU down instead of running garbage.
pub const BOOT_IDT_LIMIT: u16 = 8 - 1;

// The GDT must fit below the IDT in the layout.
const _: () = assert!(BOOT_GDT_START + BOOT_GDT.len() as u64 * 8 <= BOOT_IDT_START);
const _: () = assert!(BOOT_GDT[(CODE32_SELECTOR >> 3) as usize] == CODE32_DESCRIPTOR);
const _: () = assert!(BOOT_GDT[(DATA_SELECTOR >> 3) as usize] == DATA_DESCRIPTOR);
const _: () = assert!(BOOT_GDT[(CODE64_SELECTOR >> 3) as usize] == CODE64_DESCRIPTOR);

/// The hidden (cached) state of a segment register loaded with `selector`,
/// which refers to `entry` in the GDT.
pub fn segment(entry: u64, selector: u16) -> kvm_segment {
    let access = ((entry >> 40) & 0xff) as u8;
    let flags = ((entry >> 52) & 0xf) as u8;
    let raw_limit = ((entry & 0xffff) | (((entry >> 48) & 0xf) << 16)) as u32;
    let granular = flags & FLAG_GRANULARITY_4K != 0;
    kvm_segment {
        base: ((entry >> 16) & 0xff_ffff) | (((entry >> 56) & 0xff) << 24),
        limit: if granular {
            (raw_limit << 12) | 0xfff
        } else {
            raw_limit
        },
        selector,
        type_: access & 0xf,
        present: u8::from(access & ACCESS_PRESENT != 0),
        dpl: (access >> 5) & 0x3,
        db: u8::from(flags & FLAG_DEFAULT_32 != 0),
        s: u8::from(access & ACCESS_CODE_DATA != 0),
        l: u8::from(flags & FLAG_LONG_MODE != 0),
        g: u8::from(granular),
        avl: u8::from(flags & FLAG_AVL != 0),
        unusable: 0,
        padding: 0,
    }
}

/// Task register state. No TSS is used before the kernel installs its own,
/// but VM entry requires TR to hold a present, busy TSS (SDM vol. 3C
/// §27.3.1.2), so give it one covering nothing in particular.
pub fn task_register() -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0x67, // the minimum 32/64-bit TSS size minus one (SDM §8.2.1)
        selector: 0,
        type_: TYPE_TSS_BUSY,
        present: 1,
        dpl: 0,
        db: 0,
        s: 0,
        l: 0,
        g: 0,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_match_the_well_known_encodings() {
        // Values as in Linux's GDT_ENTRY_INIT for its boot GDTs.
        assert_eq!(CODE64_DESCRIPTOR, 0x00af_9b00_0000_ffff);
        assert_eq!(CODE32_DESCRIPTOR, 0x00cf_9b00_0000_ffff);
        assert_eq!(DATA_DESCRIPTOR, 0x00cf_9300_0000_ffff);
    }

    #[test]
    fn base_and_limit_round_trip() {
        let d = descriptor(0x93, FLAG_AVL, 0x1234_5678, 0xa_bcde);
        let s = segment(d, 0x28);
        assert_eq!(s.base, 0x1234_5678);
        assert_eq!(s.limit, 0xa_bcde);
        assert_eq!(s.g, 0);
        assert_eq!(s.avl, 1);
        assert_eq!(s.selector, 0x28);
    }

    #[test]
    fn flat_segments_decode_as_4g() {
        let code = segment(CODE32_DESCRIPTOR, CODE32_SELECTOR);
        assert_eq!((code.base, code.limit), (0, 0xffff_ffff));
        assert_eq!((code.type_, code.s, code.present, code.dpl), (0xb, 1, 1, 0));
        assert_eq!((code.db, code.l, code.g), (1, 0, 1));

        let code64 = segment(CODE64_DESCRIPTOR, CODE64_SELECTOR);
        assert_eq!((code64.db, code64.l), (0, 1));

        let data = segment(DATA_DESCRIPTOR, DATA_SELECTOR);
        assert_eq!((data.type_, data.s, data.db, data.l), (0x3, 1, 1, 0));
    }

    #[test]
    fn linux_boot_selectors() {
        // Documentation/arch/x86/boot.rst, 32-bit boot protocol.
        assert_eq!(CODE32_SELECTOR, 0x10);
        assert_eq!(DATA_SELECTOR, 0x18);
    }
}
