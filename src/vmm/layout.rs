//! The guest-physical and I/O-port map of an xhyve-manager VM.
//!
//! Every address, port and interrupt line that more than one module needs is
//! named here, with the document it comes from. Nothing else in `vmm` should
//! write a bare guest address.

// ---------------------------------------------------------------------------
// Guest-physical memory (x86 PC conventions; Linux boot protocol,
// Documentation/arch/x86/boot.rst; PVH: xen/include/public/arch-x86/hvm/start_info.h)
// ---------------------------------------------------------------------------

/// 4 KiB, the x86 base page size.
pub const PAGE_SIZE: u64 = 0x1000;
/// 1 MiB.
pub const MIB: u64 = 1 << 20;
/// 1 GiB.
pub const GIB: u64 = 1 << 30;

/// GDT used for the initial protected/long-mode entry.
pub const BOOT_GDT_START: u64 = 0x500;
/// IDT (empty) used for the initial entry.
pub const BOOT_IDT_START: u64 = 0x520;
/// PVH `hvm_start_info` structure.
pub const PVH_INFO_START: u64 = 0x6000;
/// PVH module list (`hvm_modlist_entry`), right after the start info.
pub const PVH_MODLIST_START: u64 = 0x6040;
/// PVH memory map (`hvm_memmap_table_entry` array).
pub const PVH_MEMMAP_START: u64 = 0x6100;
/// Linux "zero page" (`struct boot_params`).
pub const ZERO_PAGE_START: u64 = 0x7000;
/// Stack pointer handed to the boot CPU.
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// Identity-mapped page tables for the 64-bit entry: PML4, PDPT, PD.
pub const PML4_START: u64 = 0x9000;
pub const PDPTE_START: u64 = 0xa000;
pub const PDE_START: u64 = 0xb000;
/// Kernel command line (Linux `cmd_line_ptr`, PVH `cmdline_paddr`).
pub const CMDLINE_START: u64 = 0x20000;
/// Longest command line we accept, including the terminating NUL.
pub const CMDLINE_MAX_SIZE: usize = 0x10000;

/// Start of the Extended BIOS Data Area; RAM below it is usable (e820 type 1).
pub const EBDA_START: u64 = 0x9fc00;
/// The legacy BIOS area 0xE0000..0x100000 where the guest searches for the
/// ACPI RSDP (ACPI 6.5 §5.2.5.1). Reserved in e820.
pub const BIOS_AREA_START: u64 = 0xe0000;
/// Where the RSDP is written (16-byte aligned, inside the BIOS area).
pub const RSDP_START: u64 = 0xe0000;
/// Where the other ACPI tables (XSDT, FADT, DSDT, MADT, ...) are written.
pub const ACPI_TABLES_START: u64 = 0xe0100;
/// End (exclusive) of the legacy BIOS area.
pub const BIOS_AREA_END: u64 = 0x100000;

/// Where kernels are loaded: 1 MiB ("HIGH_MEMORY" in the boot protocol).
pub const HIMEM_START: u64 = 0x100000;

/// Start of the 32-bit MMIO hole: RAM stops here and resumes at 4 GiB.
pub const MMIO_HOLE_START: u64 = 0xc000_0000;
/// End (exclusive) of the 32-bit MMIO hole.
pub const MMIO_HOLE_END: u64 = 0x1_0000_0000;
/// RAM beyond `MMIO_HOLE_START` bytes is placed from here.
pub const HIGH_RAM_START: u64 = MMIO_HOLE_END;

/// Window for 32-bit PCI BARs, inside the MMIO hole.
pub const PCI_MMIO_START: u64 = 0xc000_0000;
pub const PCI_MMIO_SIZE: u64 = 0x3ec0_0000; // up to the IOAPIC
/// IOAPIC registers (Intel 82093AA datasheet; default base).
pub const IOAPIC_START: u64 = 0xfec0_0000;
/// Local APIC registers (Intel SDM vol. 3 §11.4.1; default base).
pub const LAPIC_START: u64 = 0xfee0_0000;
/// KVM's TSS (KVM_SET_TSS_ADDR, three pages) and identity map page
/// (KVM_SET_IDENTITY_MAP_ADDR), at the top of the hole below the BIOS ROM.
pub const KVM_TSS_ADDRESS: u64 = 0xfffb_d000;
pub const KVM_IDENTITY_MAP_ADDRESS: u64 = 0xfffb_c000;

// ---------------------------------------------------------------------------
// I/O ports (IBM PC/AT conventions)
// ---------------------------------------------------------------------------

/// 16550 UART COM1 / COM2 (8 registers each).
pub const COM1_PORT: u16 = 0x3f8;
pub const COM2_PORT: u16 = 0x2f8;
pub const UART_PORT_SIZE: u16 = 8;
/// i8042 keyboard controller: data and command/status ports.
pub const I8042_DATA_PORT: u16 = 0x60;
pub const I8042_COMMAND_PORT: u16 = 0x64;
/// CMOS RTC index/data ports (MC146818).
pub const RTC_INDEX_PORT: u16 = 0x70;
pub const RTC_DATA_PORT: u16 = 0x71;
/// Test port: a write of value `v` ends the VM with `ExitReason::DebugExit(v)`.
/// Same port as QEMU's isa-debug-exit default, so test guests run on both.
pub const DEBUG_EXIT_PORT: u16 = 0xf4;
/// Reset Control Register (Intel ICH "RST_CNT"); also the FADT reset register.
pub const RESET_CONTROL_PORT: u16 = 0xcf9;
/// PCI configuration mechanism #1 (PCI Local Bus spec 3.0 §3.2.2.3.2).
pub const PCI_CONFIG_ADDRESS_PORT: u16 = 0xcf8;
pub const PCI_CONFIG_DATA_PORT: u16 = 0xcfc;
/// ACPI fixed hardware (ACPI 6.5 §4.8): PM1a event block (status + enable),
/// PM1a control block, PM timer. Described in the FADT.
pub const ACPI_PM1A_EVT_PORT: u16 = 0x600;
pub const ACPI_PM1_EVT_LEN: u8 = 4;
pub const ACPI_PM1A_CNT_PORT: u16 = 0x604;
pub const ACPI_PM1_CNT_LEN: u8 = 2;
pub const ACPI_PM_TMR_PORT: u16 = 0x608;
pub const ACPI_PM_TMR_LEN: u8 = 4;

// ---------------------------------------------------------------------------
// Interrupt lines (ISA IRQs as GSIs on the IOAPIC; identity-mapped)
// ---------------------------------------------------------------------------

pub const I8042_KBD_IRQ: u32 = 1;
pub const COM2_IRQ: u32 = 3;
pub const COM1_IRQ: u32 = 4;
pub const RTC_IRQ: u32 = 8;
/// ACPI System Control Interrupt (FADT SCI_INT; edge, active high via the MADT
/// interrupt source override: an irqfd pulse, see `acpi::madt`).
pub const ACPI_SCI_IRQ: u32 = 9;
/// Number of IOAPIC pins KVM's in-kernel IOAPIC has.
pub const IOAPIC_NUM_PINS: u32 = 24;
/// First GSI free for MSI routes (after the IOAPIC pins).
pub const MSI_GSI_START: u32 = IOAPIC_NUM_PINS;

/// Upper bound on vCPUs (an 8-bit APIC ID without x2APIC).
pub const MAX_VCPUS: u8 = 255;
