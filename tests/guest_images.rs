//! The test guests build, and their images have the formats the loaders
//! expect (checked on the files; needs no KVM).

mod common;

use std::fs;

const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
const LOAD_ADDRESS: u32 = 0x10_0000;

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes(b[off..off + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

/// The PVH entry from the ELF's PT_NOTE segments, if any.
fn pvh_entry(elf: &[u8]) -> Option<u32> {
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF");
    assert_eq!(elf[4], 2, "not ELF64");
    let (phoff, phentsize, phnum) = (
        u64_at(elf, 0x20) as usize,
        u16_at(elf, 0x36) as usize,
        u16_at(elf, 0x38) as usize,
    );
    for i in 0..phnum {
        let ph = &elf[phoff + i * phentsize..];
        if u32_at(ph, 0) != 4 {
            continue; // not PT_NOTE
        }
        let (off, size) = (u64_at(ph, 8) as usize, u64_at(ph, 32) as usize);
        let mut n = &elf[off..off + size];
        while n.len() >= 12 {
            let (namesz, descsz, ty) = (u32_at(n, 0) as usize, u32_at(n, 4) as usize, u32_at(n, 8));
            let name_end = 12 + namesz.next_multiple_of(4);
            if ty == XEN_ELFNOTE_PHYS32_ENTRY && &n[12..12 + namesz] == b"Xen\0" {
                return Some(u32_at(n, name_end));
            }
            n = &n[name_end + descsz.next_multiple_of(4)..];
        }
    }
    None
}

#[test]
fn every_guest_is_a_pvh_elf_except_the_bzimages() {
    for name in common::GUESTS {
        let image = fs::read(common::guest(name)).unwrap();
        if name.starts_with("bzimage") {
            continue;
        }
        let entry = pvh_entry(&image).unwrap_or_else(|| panic!("{name}: no PVH note"));
        assert!(
            entry > LOAD_ADDRESS,
            "{name}: PVH entry {entry:#x} below the image"
        );
        assert!(
            entry < LOAD_ADDRESS + 0x20_0000,
            "{name}: PVH entry {entry:#x} outside the image"
        );
    }
}

#[test]
fn bzimages_have_a_protocol_2_15_setup_header() {
    for (name, xloadflags) in [("bzimage64", 1u16), ("bzimage32", 0)] {
        let b = fs::read(common::guest(name)).unwrap();
        let setup_sects = usize::from(b[0x1f1]);
        assert_eq!(u16_at(&b, 0x1fe), 0xaa55, "{name}: boot_flag");
        assert_eq!(&b[0x202..0x206], b"HdrS", "{name}: header magic");
        assert_eq!(u16_at(&b, 0x206), 0x020f, "{name}: protocol version");
        assert_eq!(b[0x211] & 1, 1, "{name}: LOADED_HIGH");
        assert_eq!(u32_at(&b, 0x214), LOAD_ADDRESS, "{name}: code32_start");
        assert_eq!(u16_at(&b, 0x236), xloadflags, "{name}: xloadflags");
        assert!(u32_at(&b, 0x238) >= 255, "{name}: cmdline_size");
        assert!(u32_at(&b, 0x22c) >= 0x0800_0000, "{name}: initrd_addr_max");
        assert_eq!(
            u64_at(&b, 0x258),
            u64::from(LOAD_ADDRESS),
            "{name}: pref_address"
        );
        let payload = &b[(setup_sects + 1) * 512..];
        let syssize = u32_at(&b, 0x1f4) as usize * 16;
        assert!(
            syssize >= payload.len() && syssize < payload.len() + 16,
            "{name}: syssize"
        );
        assert!(
            u32_at(&b, 0x260) as usize >= payload.len(),
            "{name}: init_size"
        );
        // The payload is the pvh guest's loadable bytes: 32-bit entry at 0, 64-bit at 0x200.
        assert_eq!(
            &payload[..3],
            [0xfa, 0xfc, 0xbf],
            "{name}: 32-bit entry (cli; cld; mov edi)"
        );
        assert_eq!(
            &payload[0x200..0x202],
            [0xfa, 0xfc],
            "{name}: 64-bit entry (cli; cld)"
        );
    }
}

#[test]
fn fnv1a32_matches_the_reference_vectors() {
    // Published FNV-1a 32-bit test vectors.
    assert_eq!(common::fnv1a32(b""), 0x811c_9dc5);
    assert_eq!(common::fnv1a32(b"a"), 0xe40c_292c);
    assert_eq!(common::fnv1a32(b"foobar"), 0xbf9c_f968);
}

#[test]
fn serial_values_are_parsed_per_key() {
    let serial = "E820=0x0,0x9fc00,1\nE820_RAM_TOTAL=0x7f9fc00\r\nE820=0x100000,0x7f00000,1\n";
    assert_eq!(
        common::values(serial, "E820"),
        ["0x0,0x9fc00,1", "0x100000,0x7f00000,1"]
    );
    assert_eq!(common::values(serial, "E820_RAM_TOTAL"), ["0x7f9fc00"]);
    assert_eq!(common::parse_num("0x7f9fc00"), 0x7f9fc00);
    assert_eq!(common::parse_num("42"), 42);
}
