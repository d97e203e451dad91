//! ACPI tables (ACPI 6.5) written into the guest's legacy BIOS area: the
//! RSDP at `layout::RSDP_START`, then DSDT, FACS, FADT, MADT and XSDT from
//! `layout::ACPI_TABLES_START`, all below `layout::BIOS_AREA_END` (reserved
//! in e820). Debian/Ubuntu kernels find CPUs and the IOAPIC only through the
//! MADT and the PCI host bridge only through the DSDT.
//!
//! Table encoding (headers, checksums, AML) comes from the rust-vmm
//! `acpi_tables` crate; this module decides the content.

mod dsdt;
mod fadt;
mod madt;

use acpi_tables::Aml;
use acpi_tables::rsdp::Rsdp;
use acpi_tables::xsdt::XSDT;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use super::layout::{ACPI_TABLES_START, BIOS_AREA_END, RSDP_START};
use super::memory::GuestMemoryMmap;

/// OEM ID in every table header.
const OEM_ID: [u8; 6] = *b"XHYVEM";
/// OEM table ID in every table header.
const OEM_TABLE_ID: [u8; 8] = *b"XHYVEMGR";
const OEM_REVISION: u32 = 1;

/// Table alignment in the BIOS area (64-bit fields stay naturally aligned).
const TABLE_ALIGN: u64 = 8;
/// The FACS must be 64-byte aligned (ACPI 6.5 §5.2.10).
const FACS_ALIGN: u64 = 64;
/// ACPI 2.0+ RSDP size (ACPI 6.5 §5.2.5.3).
const RSDP_SIZE: u64 = 36;
const _: () = assert!(RSDP_START + RSDP_SIZE <= ACPI_TABLES_START);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("ACPI tables need at least one vCPU")]
    NoCpus,
    #[error("ACPI tables would end at {end:#x}, past the end of their area {limit:#x}")]
    TooLarge { end: u64, limit: u64 },
    #[error("guest memory does not cover the ACPI area {start:#x}..{end:#x}")]
    NotInGuestMemory { start: u64, end: u64 },
    #[error("cannot write the ACPI {table} table at {addr:#x}")]
    Write {
        table: &'static str,
        addr: u64,
        #[source]
        source: vm_memory::GuestMemoryError,
    },
}

/// What the tables describe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcpiConfig {
    /// One LAPIC entry per vCPU in the MADT, APIC IDs 0..num_cpus.
    pub num_cpus: u8,
    /// Describe COM2 in the DSDT too.
    pub com2: bool,
}

/// Serialize an `acpi_tables` object.
fn to_bytes(aml: &dyn Aml) -> Vec<u8> {
    let mut bytes = Vec::new();
    aml.to_aml_bytes(&mut bytes);
    bytes
}

/// Hands out addresses for the tables, one after another.
struct Placer {
    next: u64,
}

impl Placer {
    fn place(&mut self, len: usize, align: u64) -> u64 {
        let addr = self.next.next_multiple_of(align);
        self.next = addr + len as u64;
        addr
    }
}

/// One table and where it goes.
struct Placed {
    name: &'static str,
    addr: u64,
    bytes: Vec<u8>,
}

/// Build every table with its address, RSDP first.
fn build_tables(config: &AcpiConfig) -> Result<Vec<Placed>, Error> {
    build_tables_in(config, ACPI_TABLES_START, BIOS_AREA_END)
}

/// Build the tables, placing them from `start`; they must end by `limit`.
fn build_tables_in(config: &AcpiConfig, start: u64, limit: u64) -> Result<Vec<Placed>, Error> {
    if config.num_cpus == 0 {
        return Err(Error::NoCpus);
    }
    let mut placer = Placer { next: start };
    let mut tables = Vec::new();
    let mut put = |name, bytes: Vec<u8>, align| {
        let addr = placer.place(bytes.len(), align);
        tables.push(Placed { name, addr, bytes });
        addr
    };

    let dsdt_addr = put("DSDT", dsdt::build(config), TABLE_ALIGN);
    let facs_addr = put("FACS", fadt::build_facs(), FACS_ALIGN);
    let fadt_addr = put("FACP", fadt::build(dsdt_addr, facs_addr), TABLE_ALIGN);
    let madt_addr = put("APIC", madt::build(config.num_cpus), TABLE_ALIGN);
    let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    xsdt.add_entry(fadt_addr);
    xsdt.add_entry(madt_addr);
    let xsdt_addr = put("XSDT", to_bytes(&xsdt), TABLE_ALIGN);

    let end = placer.next;
    if end > limit {
        return Err(Error::TooLarge { end, limit });
    }
    let rsdp = Placed {
        name: "RSDP",
        addr: RSDP_START,
        bytes: to_bytes(&Rsdp::new(OEM_ID, xsdt_addr)),
    };
    tables.insert(0, rsdp);
    Ok(tables)
}

/// Write all tables; returns the RSDP address.
pub fn create_acpi_tables(
    mem: &GuestMemoryMmap,
    config: &AcpiConfig,
) -> Result<GuestAddress, Error> {
    let tables = build_tables(config)?;
    let end = tables
        .iter()
        .map(|t| t.addr + t.bytes.len() as u64)
        .max()
        .unwrap_or(RSDP_START);
    // Check the whole area first so that nothing is half-written.
    if !mem.check_range(GuestAddress(RSDP_START), (end - RSDP_START) as usize) {
        return Err(Error::NotInGuestMemory {
            start: RSDP_START,
            end,
        });
    }
    for t in &tables {
        mem.write_slice(&t.bytes, GuestAddress(t.addr))
            .map_err(|source| Error::Write {
                table: t.name,
                addr: t.addr,
                source,
            })?;
    }
    Ok(GuestAddress(RSDP_START))
}

#[cfg(test)]
mod tests;
