//! The ACPI tables as the guest finds them in memory, checked by an
//! independent implementation: ACPICA's `iasl -d` disassembler and
//! `acpiexec` AML interpreter (Debian `acpica-tools`, installed by
//! scripts/test.sh). These tests fail when the tools are missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use vm_memory::{Bytes, GuestAddress};
use xhyve_manager::vmm::acpi::{AcpiConfig, create_acpi_tables};
use xhyve_manager::vmm::devices::legacy::SLP_TYP_S5;
use xhyve_manager::vmm::layout::{IOAPIC_START, LAPIC_START, RSDP_START};
use xhyve_manager::vmm::memory::{GuestMemoryMmap, create_guest_memory};

/// A table read back from guest memory.
struct Table {
    signature: String,
    bytes: Vec<u8>,
}

fn read_u32(mem: &GuestMemoryMmap, addr: u64) -> u32 {
    mem.read_obj(GuestAddress(addr)).unwrap()
}

fn read_table(mem: &GuestMemoryMmap, addr: u64) -> Table {
    let mut signature = [0u8; 4];
    mem.read_slice(&mut signature, GuestAddress(addr)).unwrap();
    let len = read_u32(mem, addr + 4) as usize;
    assert!((36..0x10000).contains(&len), "table length {len}");
    let mut bytes = vec![0u8; len];
    mem.read_slice(&mut bytes, GuestAddress(addr)).unwrap();
    Table {
        signature: String::from_utf8_lossy(&signature).into_owned(),
        bytes,
    }
}

/// Follow RSDP -> XSDT -> FADT -> DSDT/FACS the way an OS does.
fn tables_from_memory(mem: &GuestMemoryMmap) -> Vec<Table> {
    let mut rsdp = vec![0u8; 36];
    mem.read_slice(&mut rsdp, GuestAddress(RSDP_START)).unwrap();
    assert_eq!(&rsdp[..8], b"RSD PTR ");
    let xsdt_addr = u64::from_le_bytes(rsdp[24..32].try_into().unwrap());
    let xsdt = read_table(mem, xsdt_addr);
    assert_eq!(xsdt.signature, "XSDT");
    let mut tables = Vec::new();
    for entry in xsdt.bytes[36..].chunks(8) {
        let table = read_table(mem, u64::from_le_bytes(entry.try_into().unwrap()));
        if table.signature == "FACP" {
            let facs = u64::from_le_bytes(table.bytes[132..140].try_into().unwrap());
            let dsdt = u64::from_le_bytes(table.bytes[140..148].try_into().unwrap());
            tables.push(read_table(mem, dsdt));
            tables.push(read_table(mem, facs));
        }
        tables.push(table);
    }
    tables.push(xsdt);
    tables
}

fn guest_with_tables(num_cpus: u8, com2: bool) -> (GuestMemoryMmap, Vec<Table>) {
    let mem = create_guest_memory(64).unwrap();
    let rsdp = create_acpi_tables(&mem, &AcpiConfig { num_cpus, com2 }).unwrap();
    assert_eq!(rsdp, GuestAddress(RSDP_START));
    let tables = tables_from_memory(&mem);
    (mem, tables)
}

/// Write each table to `dir/<signature>.dat`.
fn dump(tables: &[Table], dir: &Path) -> Vec<PathBuf> {
    tables
        .iter()
        .map(|t| {
            let path = dir.join(format!("{}.dat", t.signature.to_lowercase()));
            std::fs::write(&path, &t.bytes).unwrap();
            path
        })
        .collect()
}

/// Longest a tool may run before the test fails.
const TOOL_TIMEOUT_SECS: &str = "60";
/// `timeout`'s exit status when the command was not found.
const COMMAND_NOT_FOUND: i32 = 127;

/// Run an ACPICA tool in `dir` (with a timeout); returns its exit success
/// and its output. Panics, failing the test, if the tool is missing.
fn run(tool: &str, args: &[&str], dir: &Path) -> (bool, String) {
    let out = Command::new("timeout")
        .arg(TOOL_TIMEOUT_SECS)
        .arg(tool)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run timeout {tool}: {e}"));
    assert_ne!(
        out.status.code(),
        Some(COMMAND_NOT_FOUND),
        "{tool} is missing: install acpica-tools (scripts/install-deps.sh)"
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Words ACPICA uses when it finds something wrong with a table.
fn complaints(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| {
            let l = l.to_lowercase();
            ["warning", "error", "incorrect", "invalid"]
                .iter()
                .any(|w| l.contains(w))
        })
        .collect()
}

/// `text` with runs of whitespace collapsed, for matching disassembly lines.
fn squeeze(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn dump_to_tempdir(num_cpus: u8, com2: bool) -> tempfile::TempDir {
    let (_mem, tables) = guest_with_tables(num_cpus, com2);
    let dir = tempfile::tempdir().unwrap();
    let files = dump(&tables, dir.path());
    let names: Vec<_> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["dsdt.dat", "facs.dat", "facp.dat", "apic.dat", "xsdt.dat"]
    );
    dir
}

#[test]
fn iasl_disassembles_every_table_without_complaint() {
    let dir = dump_to_tempdir(4, true);
    for table in ["dsdt", "facs", "facp", "apic", "xsdt"] {
        let (ok, out) = run("iasl", &["-d", &format!("{table}.dat")], dir.path());
        assert!(ok, "iasl -d {table}.dat failed:\n{out}");
        assert_eq!(complaints(&out), Vec::<&str>::new(), "iasl on {table}");
        let dsl = std::fs::read_to_string(dir.path().join(format!("{table}.dsl"))).unwrap();
        assert_eq!(complaints(&dsl), Vec::<&str>::new(), "{table}.dsl");
    }

    let dsdt = squeeze(&std::fs::read_to_string(dir.path().join("dsdt.dsl")).unwrap());
    for expected in [
        "Name (_S5, Package (0x04) // _S5_: S5 System State { 0x05, 0x05, Zero, Zero })",
        "Scope (\\_SB) { Device (PCI0) { Name (_HID, EisaId (\"PNP0A03\")",
        "Name (_SEG, Zero)",
        "Name (_BBN, Zero)",
        "WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode, 0x0000, // Granularity 0x0000, // Range Minimum 0x0000, // Range Maximum",
        "IO (Decode16, 0x0CF8, // Range Minimum 0x0CF8, // Range Maximum 0x01, // Alignment 0x08, // Length",
        "0x0000, // Range Minimum 0x0CF7, // Range Maximum",
        "0x0D00, // Range Minimum 0xFFFF, // Range Maximum",
        "0xC0000000, // Range Minimum 0xFEBFFFFF, // Range Maximum",
        "Device (COM1) { Name (_HID, EisaId (\"PNP0501\")",
        "0x03F8, // Range Minimum",
        "Device (COM2) { Name (_HID, EisaId (\"PNP0501\")",
        "0x02F8, // Range Minimum",
        "Device (KBD) { Name (_HID, EisaId (\"PNP0303\")",
        "0x0060, // Range Minimum",
        "0x0064, // Range Minimum",
        "Device (RTC) { Name (_HID, EisaId (\"PNP0B00\")",
        "0x0070, // Range Minimum 0x0070, // Range Maximum 0x01, // Alignment 0x02, // Length",
    ] {
        assert!(dsdt.contains(expected), "DSDT lacks {expected:?}:\n{dsdt}");
    }
    assert!(!dsdt.contains("_PRT"), "PCI devices use MSI-X only");
    // One IRQ per ISA device: COM1 4, COM2 3, keyboard 1, RTC 8.
    for irq in ["0x00000004", "0x00000003", "0x00000001", "0x00000008"] {
        let irq =
            format!("Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, ) {{ {irq}, }}");
        assert!(dsdt.contains(&irq), "DSDT lacks {irq:?}");
    }

    let apic = squeeze(&std::fs::read_to_string(dir.path().join("apic.dsl")).unwrap());
    assert_eq!(
        apic.matches("Subtable Type : 00 [Processor Local APIC]")
            .count(),
        4
    );
    assert!(apic.contains(&format!("Local Apic Address : {LAPIC_START:08X}")));
    assert!(apic.contains("PC-AT Compatibility : 1"));
    assert!(apic.contains(&format!(
        "I/O Apic ID : 04 [04Fh 0079 1] Reserved : 00 [050h 0080 4] Address : {IOAPIC_START:08X} [054h 0084 4] Interrupt : 00000000"
    )));
    // Only the SCI is overridden (the PIT stays on GSI 0, see madt.rs).
    assert_eq!(apic.matches("[Interrupt Source Override]").count(), 1);
    assert!(apic.contains("Source : 09 [05Ch 0092 4] Interrupt : 00000009 [060h 0096 2] Flags (decoded below) : 0005 Polarity : 1 Trigger Mode : 1"));
    assert!(apic.contains("Subtable Type : 04 [Local APIC NMI]"));

    let facp = squeeze(&std::fs::read_to_string(dir.path().join("facp.dsl")).unwrap());
    for expected in [
        "SCI Interrupt : 0009",
        "SMI Command Port : 00000000",
        "PM1A Event Block Address : 00000600",
        "PM1A Control Block Address : 00000604",
        "PM Timer Block Address : 00000608",
        "8042 Present on ports 60/64 (V2) : 1",
        "Reset Register Supported (V2) : 1",
        "Address : 0000000000000CF9 [080h 0128 1] Value to cause reset : 06",
        "32-bit PM Timer (V1) : 1",
        "Hardware Reduced (V5) : 0",
    ] {
        assert!(facp.contains(expected), "FADT lacks {expected:?}");
    }
}

/// The bytes of a buffer that acpiexec printed after `header`.
fn hex_dump_after(text: &str, header: &str) -> Vec<u8> {
    let start = text
        .find(header)
        .unwrap_or_else(|| panic!("no {header:?} in:\n{text}"));
    let mut bytes = Vec::new();
    for line in text[start..].lines().skip(2) {
        // "    0000: 88 0D 00 ...  // ascii"
        let Some((offset, rest)) = line.trim().split_once(": ") else {
            break;
        };
        if u32::from_str_radix(offset, 16).is_err() {
            break;
        }
        let hex = rest.split("//").next().unwrap_or("");
        bytes.extend(
            hex.split_whitespace()
                .map(|b| u8::from_str_radix(b, 16).unwrap()),
        );
    }
    bytes
}

#[test]
fn acpiexec_evaluates_s5_and_the_host_bridge_resources() {
    let dir = dump_to_tempdir(2, false);
    let (ok, out) = run(
        "acpiexec",
        &["-b", "evaluate \\_S5; evaluate \\_SB.PCI0._CRS", "dsdt.dat"],
        dir.path(),
    );
    assert!(ok, "acpiexec failed:\n{out}");
    let s5 = format!("[Integer] = {:016X}", SLP_TYP_S5);
    let s5_section = &out[out.find("Evaluating \\_S5").expect("\\_S5 evaluated")..];
    assert!(
        s5_section.contains("[Package] Contains 4 Elements:"),
        "{out}"
    );
    assert_eq!(s5_section.matches(&s5).count(), 2, "{out}");

    let crs = hex_dump_after(&out, "Evaluation of \\_SB.PCI0._CRS returned");
    let contains = |needle: &[u8]| crs.windows(needle.len()).any(|w| w == needle);
    // IO(Decode16, 0xCF8, 0xCF8, 1, 8)
    assert!(
        contains(&[0x47, 0x01, 0xf8, 0x0c, 0xf8, 0x0c, 0x01, 0x08]),
        "{crs:02x?}"
    );
    // DWordMemory min 0xC0000000, max 0xFEBFFFFF (little endian).
    assert!(
        contains(&[0x00, 0x00, 0x00, 0xc0, 0xff, 0xff, 0xbf, 0xfe]),
        "{crs:02x?}"
    );
    // WordIO windows: min/max 0x0000..0x0CF7 and 0x0D00..0xFFFF.
    assert!(contains(&[0x00, 0x00, 0xf7, 0x0c]), "{crs:02x?}");
    assert!(contains(&[0x00, 0x0d, 0xff, 0xff]), "{crs:02x?}");
    // End tag.
    assert_eq!(&crs[crs.len() - 2..], &[0x79, 0x00]);
}

#[test]
fn acpica_loads_all_tables_without_firmware_warnings() {
    let dir = dump_to_tempdir(8, true);
    let (ok, out) = run(
        "acpiexec",
        &[
            "-b",
            "evaluate \\_SB.COM2._CRS",
            "facp.dat",
            "dsdt.dat",
            "apic.dat",
            "facs.dat",
        ],
        dir.path(),
    );
    assert!(ok, "acpiexec failed:\n{out}");
    // ACPICA checks checksums and the FADT's 32/64-bit consistency on load
    // and reports problems as "Firmware Warning (ACPI)" / "ACPI Error".
    let firmware: Vec<&str> = out
        .lines()
        .filter(|l| {
            l.contains("(ACPI)") || l.starts_with("ACPI Error") || l.starts_with("ACPI Warning")
        })
        .collect();
    assert_eq!(firmware, Vec::<&str>::new(), "{out}");
    assert!(out.contains("ACPI: FACP"), "{out}");
    assert!(out.contains("ACPI: APIC"), "{out}");
    assert!(
        out.contains("Evaluation of \\_SB.COM2._CRS returned"),
        "{out}"
    );
}
