//! Unit tests of the tables' bytes: checksums, placement, the fields the
//! guest relies on, and the MADT parsed back. The independent check with
//! ACPICA's tools is in tests/acpi_tables.rs.

use super::*;
use crate::vmm::devices::legacy::{PM_TIMER_IS_32_BIT, SLP_TYP_S5};
use crate::vmm::layout::{
    ACPI_PM_TMR_PORT, ACPI_PM1A_CNT_PORT, ACPI_PM1A_EVT_PORT, ACPI_SCI_IRQ, IOAPIC_START,
    LAPIC_START, MAX_VCPUS, RESET_CONTROL_PORT,
};
use crate::vmm::memory::create_guest_memory;

fn sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b))
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes(b[off..off + 2].try_into().unwrap())
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

fn config(num_cpus: u8, com2: bool) -> AcpiConfig {
    AcpiConfig { num_cpus, com2 }
}

fn table<'a>(tables: &'a [Placed], name: &str) -> &'a Placed {
    tables.iter().find(|t| t.name == name).unwrap()
}

#[test]
fn every_table_checksums_to_zero() {
    let tables = build_tables(&config(4, true)).unwrap();
    for t in &tables {
        match t.name {
            // The FACS has no checksum.
            "FACS" => assert_eq!(&t.bytes[..4], b"FACS"),
            "RSDP" => {
                assert_eq!(sum(&t.bytes[..20]), 0, "RSDP checksum");
                assert_eq!(sum(&t.bytes), 0, "RSDP extended checksum");
            }
            name => {
                assert_eq!(&t.bytes[..4], name.as_bytes());
                assert_eq!(u32_at(&t.bytes, 4) as usize, t.bytes.len(), "{name} length");
                assert_eq!(sum(&t.bytes), 0, "{name} checksum");
            }
        }
    }
}

#[test]
fn rsdp_points_at_the_xsdt_which_lists_fadt_and_madt() {
    let tables = build_tables(&config(1, false)).unwrap();
    let rsdp = table(&tables, "RSDP");
    assert_eq!(rsdp.addr, RSDP_START);
    assert_eq!(&rsdp.bytes[..8], b"RSD PTR ");
    assert_eq!(rsdp.bytes[15], 2, "revision");
    assert_eq!(u32_at(&rsdp.bytes, 20), RSDP_SIZE as u32);
    let xsdt = table(&tables, "XSDT");
    assert_eq!(u64_at(&rsdp.bytes, 24), xsdt.addr);
    let entries: Vec<u64> = xsdt.bytes[36..].chunks(8).map(|c| u64_at(c, 0)).collect();
    assert_eq!(
        entries,
        vec![table(&tables, "FACP").addr, table(&tables, "APIC").addr]
    );
}

#[test]
fn tables_fit_in_the_bios_area_without_overlap() {
    let tables = build_tables(&config(MAX_VCPUS, true)).unwrap();
    let mut ranges: Vec<(u64, u64)> = tables
        .iter()
        .map(|t| (t.addr, t.addr + t.bytes.len() as u64))
        .collect();
    ranges.sort();
    for pair in ranges.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "{pair:x?} overlap");
    }
    assert!(ranges[0].0 >= RSDP_START);
    assert!(ranges.last().unwrap().1 <= BIOS_AREA_END);
    for t in tables.iter().filter(|t| t.name != "RSDP") {
        assert!(t.addr >= ACPI_TABLES_START, "{} at {:#x}", t.name, t.addr);
    }
    assert_eq!(table(&tables, "FACS").addr % FACS_ALIGN, 0);
}

#[test]
fn fadt_describes_the_fixed_hardware() {
    let tables = build_tables(&config(2, false)).unwrap();
    let f = &table(&tables, "FACP").bytes;
    // Offsets: ACPI 6.5 table 5.9.
    assert_eq!(f.len(), 276);
    assert_eq!(f[8], 6, "major revision");
    assert_eq!(f[131], 5, "minor revision");
    assert_eq!(u32_at(f, 36), 0, "FIRMWARE_CTRL unused");
    assert_eq!(u32_at(f, 40), 0, "DSDT unused");
    assert_eq!(u16_at(f, 46), ACPI_SCI_IRQ as u16);
    assert_eq!(u32_at(f, 48), 0, "SMI_CMD: always in ACPI mode");
    assert_eq!(u32_at(f, 56), u32::from(ACPI_PM1A_EVT_PORT));
    assert_eq!(u32_at(f, 64), u32::from(ACPI_PM1A_CNT_PORT));
    assert_eq!(u32_at(f, 76), u32::from(ACPI_PM_TMR_PORT));
    assert_eq!(
        &f[88..92],
        &[4, 2, 0, 4],
        "PM1_EVT/PM1_CNT/PM2_CNT/PM_TMR lengths"
    );
    assert_eq!(f[108], 0x32, "century register");
    let boot_arch = u16_at(f, 109);
    assert_ne!(boot_arch & IAPC_8042_FOR_TEST, 0, "8042 present");
    assert_eq!(
        boot_arch & IAPC_MSI_NOT_SUPPORTED,
        0,
        "MSI must stay usable"
    );
    let flags = u32_at(f, 112);
    let expected_flags = FADT_WBINVD
        | FADT_PROC_C1
        | FADT_SLP_BUTTON
        | FADT_FIX_RTC
        | FADT_RESET_REG_SUP
        | if PM_TIMER_IS_32_BIT {
            FADT_TMR_VAL_EXT
        } else {
            0
        };
    assert_eq!(flags, expected_flags);
    // RESET_REG: system I/O, 8 bits, byte access, at RST_CNT; value 6.
    assert_eq!(&f[116..120], &[1, 8, 0, 1]);
    assert_eq!(u64_at(f, 120), u64::from(RESET_CONTROL_PORT));
    assert_eq!(f[128], 0x06);
    assert_eq!(u64_at(f, 132), table(&tables, "FACS").addr);
    assert_eq!(u64_at(f, 140), table(&tables, "DSDT").addr);
    // X_PM1a_EVT_BLK, X_PM1a_CNT_BLK, X_PM_TMR_BLK: system I/O, same widths.
    for (off, port, bits) in [
        (148, ACPI_PM1A_EVT_PORT, 32),
        (172, ACPI_PM1A_CNT_PORT, 16),
        (208, ACPI_PM_TMR_PORT, 32),
    ] {
        assert_eq!(&f[off..off + 2], &[1, bits], "GAS at {off}");
        assert_eq!(u64_at(f, off + 4), u64::from(port));
    }
}

// FADT flag and boot-architecture bits, restated from ACPI 6.5 tables
// 5.10/5.11 independently of the crate's enum.
const FADT_WBINVD: u32 = 1 << 0;
const FADT_PROC_C1: u32 = 1 << 2;
const FADT_SLP_BUTTON: u32 = 1 << 5;
const FADT_FIX_RTC: u32 = 1 << 6;
const FADT_TMR_VAL_EXT: u32 = 1 << 8;
const FADT_RESET_REG_SUP: u32 = 1 << 10;
const IAPC_8042_FOR_TEST: u16 = 1 << 1;
const IAPC_MSI_NOT_SUPPORTED: u16 = 1 << 3;

/// What the MADT says, parsed back the way an OS walks it.
#[derive(Debug, Default)]
struct ParsedMadt {
    lapic_address: u32,
    flags: u32,
    /// (processor UID, APIC ID, flags)
    lapics: Vec<(u8, u8, u32)>,
    /// (ID, address, GSI base)
    ioapics: Vec<(u8, u32, u32)>,
    /// (bus, source, GSI, flags)
    overrides: Vec<(u8, u8, u32, u16)>,
    /// (UID, flags, LINT)
    nmis: Vec<(u8, u16, u8)>,
}

fn parse_madt(b: &[u8]) -> ParsedMadt {
    assert_eq!(&b[..4], b"APIC");
    let mut m = ParsedMadt {
        lapic_address: u32_at(b, 36),
        flags: u32_at(b, 40),
        ..Default::default()
    };
    let mut off = 44;
    while off < b.len() {
        let (kind, len) = (b[off], usize::from(b[off + 1]));
        assert!(len >= 2 && off + len <= b.len(), "bad entry at {off}");
        let e = &b[off..off + len];
        match (kind, len) {
            (0, 8) => m.lapics.push((e[2], e[3], u32_at(e, 4))),
            (1, 12) => m.ioapics.push((e[2], u32_at(e, 4), u32_at(e, 8))),
            (2, 10) => m.overrides.push((e[2], e[3], u32_at(e, 4), u16_at(e, 8))),
            (4, 6) => m.nmis.push((e[2], u16_at(e, 3), e[5])),
            other => panic!("unexpected MADT entry {other:?}"),
        }
        off += len;
    }
    assert_eq!(off, b.len());
    m
}

#[test]
fn madt_lists_every_cpu_and_the_ioapic() {
    for num_cpus in [1u8, 2, 7, MAX_VCPUS] {
        let tables = build_tables(&config(num_cpus, false)).unwrap();
        let m = parse_madt(&table(&tables, "APIC").bytes);
        assert_eq!(m.lapic_address, LAPIC_START as u32);
        assert_eq!(m.flags & 1, 1, "PCAT_COMPAT");
        assert_eq!(m.lapics.len(), usize::from(num_cpus));
        for (i, &(uid, apic_id, flags)) in m.lapics.iter().enumerate() {
            assert_eq!((uid as usize, apic_id as usize), (i, i));
            assert_eq!(flags & 1, 1, "enabled");
        }
        assert_eq!(m.ioapics, vec![(num_cpus, IOAPIC_START as u32, 0)]);
        assert_eq!(
            m.overrides,
            vec![
                // No IRQ0 override: the PIT is on GSI 0 = IOAPIC pin 0.
                // SCI: edge (bits 2-3 = 01), active high (bits 0-1 = 01).
                (0, ACPI_SCI_IRQ as u8, ACPI_SCI_IRQ, 0b0101)
            ]
        );
        assert_eq!(m.nmis, vec![(0xff, 0, 1)]);
    }
}

#[test]
fn tables_past_their_area_are_refused() {
    let fits = build_tables(&config(MAX_VCPUS, true)).unwrap();
    let end = fits
        .iter()
        .map(|t| t.addr + t.bytes.len() as u64)
        .max()
        .unwrap();
    assert!(build_tables_in(&config(MAX_VCPUS, true), ACPI_TABLES_START, end).is_ok());
    let err = build_tables_in(&config(MAX_VCPUS, true), ACPI_TABLES_START, end - 1);
    assert!(matches!(err, Err(Error::TooLarge { end: e, limit }) if e == end && limit == end - 1));
}

/// The AML of `Name(_S5, Package(4) {S5, S5, 0, 0})`.
fn s5_object() -> Vec<u8> {
    const NAME_OP: u8 = 0x08;
    const PACKAGE_OP: u8 = 0x12;
    const BYTE_PREFIX: u8 = 0x0a;
    const ZERO_OP: u8 = 0x00;
    let elements = [
        BYTE_PREFIX,
        SLP_TYP_S5,
        BYTE_PREFIX,
        SLP_TYP_S5,
        ZERO_OP,
        ZERO_OP,
    ];
    let mut aml = vec![NAME_OP, b'_', b'S', b'5', b'_', PACKAGE_OP];
    // PkgLength (one byte: itself + NumElements + elements), NumElements.
    aml.push((1 + 1 + elements.len()) as u8);
    aml.push(4);
    aml.extend_from_slice(&elements);
    aml
}

#[test]
fn dsdt_has_s5_matching_the_pm_device() {
    let tables = build_tables(&config(1, false)).unwrap();
    let dsdt = &table(&tables, "DSDT").bytes;
    assert_eq!(dsdt[8], 2, "revision 2: 64-bit integers");
    let s5 = s5_object();
    assert!(dsdt.windows(s5.len()).any(|w| w == s5.as_slice()));
}

#[test]
fn dsdt_describes_com2_only_when_configured() {
    let has = |bytes: &[u8], name: &[u8]| bytes.windows(name.len()).any(|w| w == name);
    let without = build_tables(&config(1, false)).unwrap();
    let with = build_tables(&config(1, true)).unwrap();
    let without = &table(&without, "DSDT").bytes;
    let with = &table(&with, "DSDT").bytes;
    for name in [b"PCI0", b"COM1", b"KBD_", b"RTC_"] {
        assert!(has(without, name) && has(with, name));
    }
    assert!(!has(without, b"COM2"));
    assert!(has(with, b"COM2"));
}

#[test]
fn zero_cpus_is_refused() {
    assert!(matches!(
        build_tables(&config(0, false)),
        Err(Error::NoCpus)
    ));
    let mem = create_guest_memory(16).unwrap();
    assert!(matches!(
        create_acpi_tables(&mem, &config(0, false)),
        Err(Error::NoCpus)
    ));
}

#[test]
fn writes_the_tables_into_guest_memory() {
    let mem = create_guest_memory(16).unwrap();
    let cfg = config(3, true);
    assert_eq!(
        create_acpi_tables(&mem, &cfg).unwrap(),
        GuestAddress(RSDP_START)
    );
    for t in build_tables(&cfg).unwrap() {
        let mut back = vec![0u8; t.bytes.len()];
        mem.read_slice(&mut back, GuestAddress(t.addr)).unwrap();
        assert_eq!(back, t.bytes, "{} at {:#x}", t.name, t.addr);
    }
}

#[test]
fn memory_without_the_bios_area_is_an_error_and_untouched() {
    // RAM only from 1 MiB: the BIOS area is not backed.
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0x10_0000), 0x10_0000)]).unwrap();
    let err = create_acpi_tables(&mem, &config(1, false)).unwrap_err();
    assert!(matches!(err, Error::NotInGuestMemory { start, .. } if start == RSDP_START));
    // RAM that ends inside the table area: refused before anything is written.
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0xe0200)]).unwrap();
    let err = create_acpi_tables(&mem, &config(1, false)).unwrap_err();
    assert!(matches!(err, Error::NotInGuestMemory { .. }), "{err}");
    let mut rsdp = [0u8; 8];
    mem.read_slice(&mut rsdp, GuestAddress(RSDP_START)).unwrap();
    assert_eq!(rsdp, [0; 8]);
}
