//! DSDT (ACPI 6.5 §5.2.11.1) in AML: the `\_S5` sleep object, the PCI host
//! bridge and the legacy ISA devices.
//!
//! PCI devices use MSI-X only (no INTx), so the host bridge has no `_PRT`.

use acpi_tables::aml::{
    self, AddressSpace, AddressSpaceCacheable, Device, EISAName, IO, Interrupt, Name, Package,
    Path, ResourceTemplate, Scope,
};
use acpi_tables::sdt::Sdt;
use acpi_tables::{Aml, AmlSink};

use super::{AcpiConfig, OEM_ID, OEM_REVISION, OEM_TABLE_ID, to_bytes};
use crate::vmm::devices::legacy::SLP_TYP_S5;
use crate::vmm::layout::{
    COM1_IRQ, COM1_PORT, COM2_IRQ, COM2_PORT, I8042_COMMAND_PORT, I8042_DATA_PORT, I8042_KBD_IRQ,
    PCI_CONFIG_ADDRESS_PORT, PCI_MMIO_SIZE, PCI_MMIO_START, RTC_INDEX_PORT, RTC_IRQ,
    UART_PORT_SIZE,
};

/// DSDT revision 2: AML integers are 64 bits wide.
const DSDT_REVISION: u8 = 2;
/// Bytes of the DSDT header.
const HEADER_LEN: u32 = 36;

/// PCI configuration mechanism #1 ports 0xCF8..=0xCFF.
const PCI_CONFIG_PORTS_LEN: u8 = 8;
/// I/O windows the host bridge forwards to PCI: everything but 0xCF8..0xCFF
/// and the 0xD00 alignment gap below it (the PC convention).
const PCI_IO_WINDOW_LOW: (u16, u16) = (0x0000, 0x0cf7);
const PCI_IO_WINDOW_HIGH: (u16, u16) = (0x0d00, 0xffff);
/// The only bus behind the host bridge.
const PCI_BUS: u16 = 0;
const RTC_PORTS_LEN: u8 = 2;

/// Plug and Play IDs.
const PNP_PCI_HOST_BRIDGE: &str = "PNP0A03";
const PNP_16550A: &str = "PNP0501";
const PNP_PS2_KEYBOARD: &str = "PNP0303";
const PNP_CMOS_RTC: &str = "PNP0B00";

/// AML that is already encoded.
struct Encoded(Vec<u8>);

impl Aml for Encoded {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        sink.vec(&self.0);
    }
}

/// `Name(_S5, Package() { S5, S5, 0, 0 })`: the SLP_TYP values for PM1a and
/// PM1b control that `AcpiPm` recognises as soft-off.
fn s5() -> Encoded {
    let zero = aml::ZERO;
    let package = Package::new(vec![&SLP_TYP_S5, &SLP_TYP_S5, &zero, &zero]);
    Encoded(to_bytes(&Name::new(Path::new("_S5_"), &package)))
}

/// `\_SB.PCI0`: the PCI host bridge, bus 0, config ports and the windows.
fn pci_host_bridge() -> Encoded {
    let mmio_min = PCI_MMIO_START as u32;
    let mmio_max = (PCI_MMIO_START + PCI_MMIO_SIZE - 1) as u32;
    let bus = AddressSpace::<u16>::new_bus_number(PCI_BUS, PCI_BUS);
    let config = IO::new(
        PCI_CONFIG_ADDRESS_PORT,
        PCI_CONFIG_ADDRESS_PORT,
        1,
        PCI_CONFIG_PORTS_LEN,
    );
    let io_low = AddressSpace::<u16>::new_io(PCI_IO_WINDOW_LOW.0, PCI_IO_WINDOW_LOW.1, None);
    let io_high = AddressSpace::<u16>::new_io(PCI_IO_WINDOW_HIGH.0, PCI_IO_WINDOW_HIGH.1, None);
    let mmio = AddressSpace::<u32>::new_memory(
        AddressSpaceCacheable::NotCacheable,
        true,
        mmio_min,
        mmio_max,
        None,
    );
    let crs = ResourceTemplate::new(vec![&bus, &config, &io_low, &io_high, &mmio]);
    let hid = EISAName::new(PNP_PCI_HOST_BRIDGE);
    let zero = aml::ZERO;
    // One statement, so that the temporaries live until the encoding.
    Encoded(to_bytes(&Device::new(
        Path::new("PCI0"),
        vec![
            &Name::new(Path::new("_HID"), &hid),
            &Name::new(Path::new("_SEG"), &zero),
            &Name::new(Path::new("_BBN"), &zero),
            &Name::new(Path::new("_UID"), &zero),
            &Name::new(Path::new("_CRS"), &crs),
        ],
    )))
}

/// An ISA device: fixed I/O ranges `(port, len)` and one edge-triggered,
/// active-high, exclusive IRQ.
fn isa_device(name: &str, hid: &str, uid: u8, ios: &[(u16, u8)], irq: u32) -> Encoded {
    let ios: Vec<IO> = ios
        .iter()
        .map(|&(port, len)| IO::new(port, port, 1, len))
        .collect();
    let irq = Interrupt::new(true, true, false, false, irq);
    let mut resources: Vec<&dyn Aml> = ios.iter().map(|io| io as &dyn Aml).collect();
    resources.push(&irq);
    let crs = ResourceTemplate::new(resources);
    let hid = EISAName::new(hid);
    Encoded(to_bytes(&Device::new(
        Path::new(name),
        vec![
            &Name::new(Path::new("_HID"), &hid),
            &Name::new(Path::new("_UID"), &uid),
            &Name::new(Path::new("_CRS"), &crs),
        ],
    )))
}

/// The DSDT for `config`.
pub fn build(config: &AcpiConfig) -> Vec<u8> {
    let mut devices = vec![
        pci_host_bridge(),
        isa_device(
            "COM1",
            PNP_16550A,
            1,
            &[(COM1_PORT, UART_PORT_SIZE as u8)],
            COM1_IRQ,
        ),
    ];
    if config.com2 {
        devices.push(isa_device(
            "COM2",
            PNP_16550A,
            2,
            &[(COM2_PORT, UART_PORT_SIZE as u8)],
            COM2_IRQ,
        ));
    }
    devices.push(isa_device(
        "KBD_",
        PNP_PS2_KEYBOARD,
        0,
        &[(I8042_DATA_PORT, 1), (I8042_COMMAND_PORT, 1)],
        I8042_KBD_IRQ,
    ));
    devices.push(isa_device(
        "RTC_",
        PNP_CMOS_RTC,
        0,
        &[(RTC_INDEX_PORT, RTC_PORTS_LEN)],
        RTC_IRQ,
    ));
    let children: Vec<&dyn Aml> = devices.iter().map(|d| d as &dyn Aml).collect();
    let sb = Scope::new(Path::new("\\_SB_"), children);

    let mut dsdt = Sdt::new(
        *b"DSDT",
        HEADER_LEN,
        DSDT_REVISION,
        OEM_ID,
        OEM_TABLE_ID,
        OEM_REVISION,
    );
    dsdt.append_slice(&s5().0);
    dsdt.append_slice(&to_bytes(&sb));
    dsdt.as_slice().to_vec()
}
