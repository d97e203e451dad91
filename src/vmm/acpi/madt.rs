//! MADT (ACPI 6.5 §5.2.12): one enabled local APIC per vCPU, the IOAPIC,
//! the ISA interrupt overrides and the LINT1 NMI.
//!
//! Interrupt Source Overrides:
//! - None for IRQ 0: KVM's in-kernel PIT raises GSI 0, and KVM's default
//!   routing (which the PCI module keeps when it adds MSI routes) sends GSI 0
//!   to IOAPIC pin 0, so the identity mapping is already right. (QEMU wires
//!   the PIT to pin 2 with its own route and therefore declares IRQ0->GSI2.)
//! - SCI (IRQ 9 -> GSI 9): **edge-triggered, active-high**. The ACPI default
//!   for the SCI is level/active-low, but our SCI is an irqfd that KVM
//!   delivers as a pulse (assert then deassert) and KVM's IOAPIC does not
//!   invert polarity: as a level interrupt a pulse arriving while the
//!   previous one is still in service (remote IRR set) would be lost; as an
//!   edge every pulse is delivered. `AcpiPm` raises the SCI whenever an
//!   enabled status bit becomes pending, which is what an edge needs. Linux
//!   honours the override's flags for the SCI (arch/x86/kernel/acpi/boot.c).

use acpi_tables::madt::{EnabledStatus, IoApic, ProcessorLocalApic};
use acpi_tables::sdt::Sdt;

use super::{OEM_ID, OEM_REVISION, OEM_TABLE_ID, to_bytes};
use crate::vmm::layout::{ACPI_SCI_IRQ, IOAPIC_START, LAPIC_START};

/// MADT revision of ACPI 6.3/6.4 (the newest that ACPICA's iasl 2020 knows).
const MADT_REVISION: u8 = 5;
/// Header (36) + Local Interrupt Controller Address (4) + Flags (4).
const MADT_HEADER_LEN: u32 = 44;
const LAPIC_ADDRESS_OFFSET: usize = 36;
const FLAGS_OFFSET: usize = 40;
/// MADT flag: the system also has dual 8259 PICs (ACPI 6.5 table 5.20).
const PCAT_COMPAT: u32 = 1;

/// Interrupt Controller Structure types (ACPI 6.5 table 5.21).
const TYPE_INTERRUPT_SOURCE_OVERRIDE: u8 = 2;
const TYPE_LOCAL_APIC_NMI: u8 = 4;
const ISO_LEN: u8 = 10;
const LAPIC_NMI_LEN: u8 = 6;

/// MPS INTI flags (ACPI 6.5 table 5.26): polarity bits 0-1, trigger 2-3.
const MPS_INTI_CONFORMS: u16 = 0;
const MPS_INTI_ACTIVE_HIGH: u16 = 0b01;
const MPS_INTI_EDGE: u16 = 0b01 << 2;
/// The SCI's flags; see the module documentation.
const SCI_INTI_FLAGS: u16 = MPS_INTI_ACTIVE_HIGH | MPS_INTI_EDGE;

/// ISA bus (the only "Bus" value ACPI defines for overrides).
const ISA_BUS: u8 = 0;
/// ACPI Processor UID 0xFF means "all processors".
const ALL_PROCESSORS: u8 = 0xff;
/// Local APIC input the NMI is connected to.
const NMI_LINT: u8 = 1;
/// First GSI of the IOAPIC.
const IOAPIC_GSI_BASE: u32 = 0;

fn interrupt_source_override(source: u8, gsi: u32, flags: u16) -> Vec<u8> {
    let mut e = vec![TYPE_INTERRUPT_SOURCE_OVERRIDE, ISO_LEN, ISA_BUS, source];
    e.extend_from_slice(&gsi.to_le_bytes());
    e.extend_from_slice(&flags.to_le_bytes());
    e
}

fn local_apic_nmi(uid: u8, flags: u16, lint: u8) -> Vec<u8> {
    let mut e = vec![TYPE_LOCAL_APIC_NMI, LAPIC_NMI_LEN, uid];
    e.extend_from_slice(&flags.to_le_bytes());
    e.push(lint);
    e
}

/// The MADT for `num_cpus` vCPUs with APIC IDs (and ACPI processor UIDs)
/// 0..num_cpus. The IOAPIC gets the next ID, after the CPUs.
pub fn build(num_cpus: u8) -> Vec<u8> {
    let mut madt = Sdt::new(
        *b"APIC",
        MADT_HEADER_LEN,
        MADT_REVISION,
        OEM_ID,
        OEM_TABLE_ID,
        OEM_REVISION,
    );
    madt.write_u32(LAPIC_ADDRESS_OFFSET, LAPIC_START as u32);
    madt.write_u32(FLAGS_OFFSET, PCAT_COMPAT);
    for cpu in 0..num_cpus {
        madt.append_slice(&to_bytes(&ProcessorLocalApic::new(
            cpu,
            cpu,
            EnabledStatus::Enabled,
        )));
    }
    let ioapic_id = num_cpus;
    madt.append_slice(&to_bytes(&IoApic::new(
        ioapic_id,
        IOAPIC_START as u32,
        IOAPIC_GSI_BASE,
    )));
    madt.append_slice(&interrupt_source_override(
        ACPI_SCI_IRQ as u8,
        ACPI_SCI_IRQ,
        SCI_INTI_FLAGS,
    ));
    madt.append_slice(&local_apic_nmi(ALL_PROCESSORS, MPS_INTI_CONFORMS, NMI_LINT));
    madt.as_slice().to_vec()
}
