//! PLACEHOLDER with the contract: ACPI tables (RSDP, XSDT, FADT, DSDT, MADT)
//! written into guest memory at `layout::RSDP_START` / `ACPI_TABLES_START`.

use vm_memory::GuestAddress;

use super::memory::GuestMemoryMmap;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not implemented yet")]
    NotImplemented,
}

/// What the tables describe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcpiConfig {
    /// One LAPIC entry per vCPU in the MADT, APIC IDs 0..num_cpus.
    pub num_cpus: u8,
    /// Describe COM2 in the DSDT too.
    pub com2: bool,
}

/// Write all tables; returns the RSDP address.
pub fn create_acpi_tables(
    _mem: &GuestMemoryMmap,
    _config: &AcpiConfig,
) -> Result<GuestAddress, Error> {
    Err(Error::NotImplemented)
}
