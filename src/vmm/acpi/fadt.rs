//! FADT (ACPI 6.5 §5.2.9, revision 6.5) and FACS (§5.2.10).
//!
//! A hardware-full PC: fixed PM1a event/control blocks and PM timer on I/O
//! ports, always in ACPI mode (SMI_CMD = 0), a fixed-feature power button,
//! no sleep button, reset through the RST_CNT register, an i8042 and a CMOS
//! RTC with a century register.

use acpi_tables::facs::FACS;
use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};

use super::{OEM_ID, OEM_REVISION, OEM_TABLE_ID, to_bytes};
use crate::vmm::devices::legacy::{PM_TIMER_IS_32_BIT, RTC_CENTURY_REGISTER};
use crate::vmm::layout::{
    ACPI_PM_TMR_LEN, ACPI_PM_TMR_PORT, ACPI_PM1_CNT_LEN, ACPI_PM1_EVT_LEN, ACPI_PM1A_CNT_PORT,
    ACPI_PM1A_EVT_PORT, ACPI_SCI_IRQ, RESET_CONTROL_PORT,
};

/// Value written to RST_CNT for a hard reset: SYS_RST | RST_CPU (Intel ICH
/// datasheets, "Reset Control Register").
pub const RESET_VALUE: u8 = 0x06;

/// IA-PC boot architecture flags (ACPI 6.5 table 5.11).
/// LEGACY_DEVICES: ISA devices (UARTs, RTC) that are not PCI.
const IAPC_LEGACY_DEVICES: u16 = 1 << 0;
/// 8042: a PS/2 keyboard controller is present (Linux then probes it).
const IAPC_8042: u16 = 1 << 1;
/// VGA Not Present: there is no VGA to probe.
const IAPC_VGA_NOT_PRESENT: u16 = 1 << 2;
const IAPC_BOOT_ARCH: u16 = IAPC_LEGACY_DEVICES | IAPC_8042 | IAPC_VGA_NOT_PRESENT;

/// P_LVL2_LAT above 100 µs / P_LVL3_LAT above 1000 µs: C2 and C3 are not
/// supported (ACPI 6.5 table 5.9).
const C2_NOT_SUPPORTED: u16 = 101;
const C3_NOT_SUPPORTED: u16 = 1001;

/// A Generic Address Structure for an I/O port register.
fn io_gas(port: u16, len_bytes: u8, access: AccessSize) -> GAS {
    GAS::new(
        AddressSpace::SystemIo,
        len_bytes * 8,
        0,
        access,
        port.into(),
    )
}

/// The FADT, pointing at the DSDT and FACS (64-bit fields only, the 32-bit
/// ones are zero as ACPI 6.5 requires when the X_ fields are used).
pub fn build(dsdt_addr: u64, facs_addr: u64) -> Vec<u8> {
    let mut fadt = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION)
        .dsdt_64(dsdt_addr)
        .firmware_ctrl_64(facs_addr)
        .flag(Flags::Wbinvd)
        .flag(Flags::ProcC1)
        .flag(Flags::SlpButton) // no sleep button
        .flag(Flags::FixRtc) // no RTC wake status in PM1
        .flag(Flags::ResetRegSup);
    if PM_TIMER_IS_32_BIT {
        fadt = fadt.flag(Flags::TmrValExt);
    }

    fadt.sci_int = (ACPI_SCI_IRQ as u16).into();
    fadt.smi_cmd = 0.into(); // no SMM: always in ACPI mode
    fadt.pm1a_evt_blk = u32::from(ACPI_PM1A_EVT_PORT).into();
    fadt.pm1a_cnt_blk = u32::from(ACPI_PM1A_CNT_PORT).into();
    fadt.pm_tmr_blk = u32::from(ACPI_PM_TMR_PORT).into();
    fadt.pm1_evt_len = ACPI_PM1_EVT_LEN;
    fadt.pm1_cnt_len = ACPI_PM1_CNT_LEN;
    fadt.pm_tmr_len = ACPI_PM_TMR_LEN;
    fadt.p_lvl2_lat = C2_NOT_SUPPORTED.into();
    fadt.p_lvl3_lat = C3_NOT_SUPPORTED.into();
    fadt.century = RTC_CENTURY_REGISTER;
    fadt.iapc_boot_arch = IAPC_BOOT_ARCH.into();
    fadt.reset_reg = io_gas(RESET_CONTROL_PORT, 1, AccessSize::ByteAccess);
    fadt.reset_value = RESET_VALUE;
    fadt.x_pm1a_evt_blk = io_gas(ACPI_PM1A_EVT_PORT, ACPI_PM1_EVT_LEN, AccessSize::WordAccess);
    fadt.x_pm1a_cnt_blk = io_gas(ACPI_PM1A_CNT_PORT, ACPI_PM1_CNT_LEN, AccessSize::WordAccess);
    fadt.x_pm_tmr_blk = io_gas(ACPI_PM_TMR_PORT, ACPI_PM_TMR_LEN, AccessSize::DwordAccess);
    to_bytes(&fadt.finalize())
}

/// The FACS (no checksum; 64-byte aligned by the caller).
pub fn build_facs() -> Vec<u8> {
    to_bytes(&FACS::new())
}
