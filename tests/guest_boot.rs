//! The loaders hand the guest what the boot protocols promise: PVH
//! (hvm_start_info) and bzImage through its 64-bit and 32-bit entries
//! (boot_params). The guests print what they find; the expected values are
//! computed here from the VM config and the files the test wrote.

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::{GuestRun, parse_num};
use xhyve_manager::vmm::layout::{EBDA_START, HIMEM_START, RSDP_START};
use xhyve_manager::vmm::memory::ram_regions;
use xhyve_manager::vmm::{BootProtocol, VmConfig};

const TIMEOUT: Duration = Duration::from_secs(120);
const E820_RAM: u64 = 1;

/// RAM the e820 / PVH map must report: every RAM region, minus the EBDA,
/// VGA hole and BIOS area between `EBDA_START` and 1 MiB (reserved).
fn expected_ram_total(memory_mib: u64) -> u64 {
    let ram: u64 = ram_regions(memory_mib).iter().map(|(_, len)| len).sum();
    ram - (HIMEM_START - EBDA_START)
}

fn write_initrd(dir: &Path, len: usize) -> (std::path::PathBuf, Vec<u8>) {
    let bytes = common::pattern_bytes(0x1234_5678, len);
    let path = dir.join("initrd.img");
    fs::write(&path, &bytes).unwrap();
    (path, bytes)
}

struct Expect<'a> {
    entry: &'a str,
    paging: bool,
    memory_mib: u64,
    cmdline: &'a str,
    initrd: Option<&'a [u8]>,
}

fn check(run: &GuestRun, want: &Expect) {
    run.assert_ok();
    let s = &run.serial;
    assert_eq!(run.value("ENTRY"), want.entry, "entry point; serial:\n{s}");
    assert_eq!(
        run.value("ENTRY_PAGING"),
        if want.paging { "1" } else { "0" },
        "{s}"
    );
    assert_eq!(
        parse_num(&run.value("E820_RAM_TOTAL")),
        expected_ram_total(want.memory_mib),
        "RAM in the memory map; serial:\n{s}"
    );
    // The map has RAM from 1 MiB and reserves the RSDP's BIOS area.
    let map: Vec<(u64, u64, u64)> = run
        .values("E820")
        .iter()
        .map(|e| {
            let f: Vec<u64> = e.split(',').map(parse_num).collect();
            (f[0], f[1], f[2])
        })
        .collect();
    assert!(
        map.iter()
            .any(|&(a, _, t)| a == HIMEM_START && t == E820_RAM),
        "no RAM entry at 1 MiB; serial:\n{s}"
    );
    assert!(
        map.iter()
            .any(|&(a, l, t)| t != E820_RAM && a <= RSDP_START && RSDP_START < a + l),
        "the RSDP area is not reserved; serial:\n{s}"
    );
    assert_eq!(run.value("CMDLINE"), want.cmdline, "{s}");
    match want.initrd {
        None => assert_eq!(run.value("INITRD"), "none", "{s}"),
        Some(bytes) => {
            let f: Vec<u64> = run.value("INITRD").split(',').map(parse_num).collect();
            let (addr, size, sum) = (f[0], f[1], f[2]);
            assert_eq!(size, bytes.len() as u64, "initrd size; serial:\n{s}");
            assert_eq!(
                sum,
                u64::from(common::fnv1a32(bytes)),
                "initrd checksum; serial:\n{s}"
            );
            assert!(addr >= HIMEM_START, "initrd at {addr:#x}");
            assert_eq!(addr % 4096, 0, "initrd at {addr:#x} is not page aligned");
            assert!(
                map.iter()
                    .any(|&(a, l, t)| t == E820_RAM && a <= addr && addr + size <= a + l),
                "initrd {addr:#x}+{size:#x} is not inside RAM; serial:\n{s}"
            );
        }
    }
    assert_eq!(parse_num(&run.value("RSDP")), RSDP_START, "{s}");
    assert!(s.contains("BOOT_DONE"), "{s}");
}

fn config(name: &str, guest: &str, memory_mib: u64) -> VmConfig {
    let mut c = common::vm_config(name, guest);
    c.memory_mib = memory_mib;
    c
}

#[test]
fn pvh_guest_sees_start_info_memmap_cmdline_and_initrd() {
    common::host_kind();
    let dir = common::temp_dir();
    let (initrd, bytes) = write_initrd(dir.path(), 40_000);
    let mut c = config("pvh", "pvh", 128);
    c.initrd = Some(initrd);
    c.cmdline = "console=ttyS0 pvh=yes some.long.option=0123456789abcdef".into();
    let run = common::run_guest(c.clone(), TIMEOUT);
    check(
        &run,
        &Expect {
            entry: "pvh",
            paging: false,
            memory_mib: 128,
            cmdline: &c.cmdline,
            initrd: Some(&bytes),
        },
    );
    assert_eq!(parse_num(&run.value("PVH_MAGIC")), 0x336e_c578);
}

#[test]
fn pvh_guest_memory_map_skips_the_mmio_hole() {
    let c = config("pvh-4g", "pvh", 4096);
    let run = common::run_guest(c.clone(), TIMEOUT);
    check(
        &run,
        &Expect {
            entry: "pvh",
            paging: false,
            memory_mib: 4096,
            cmdline: &c.cmdline,
            initrd: None,
        },
    );
    // RAM resumes at 4 GiB.
    let (high, len) = ram_regions(4096)[1];
    assert!(
        run.values("E820")
            .contains(&format!("{:#x},{len:#x},1", high.0)),
        "no RAM entry above 4 GiB; serial:\n{}",
        run.serial
    );
}

#[test]
fn bzimage64_enters_at_the_64_bit_entry_with_boot_params() {
    let dir = common::temp_dir();
    let (initrd, bytes) = write_initrd(dir.path(), 12_345);
    let mut c = config("bz64", "bzimage64", 256);
    c.initrd = Some(initrd);
    c.cmdline = "console=ttyS0 root=/dev/vda rw quiet".into();
    let run = common::run_guest(c.clone(), TIMEOUT);
    check(
        &run,
        &Expect {
            entry: "64",
            paging: true,
            memory_mib: 256,
            cmdline: &c.cmdline,
            initrd: Some(&bytes),
        },
    );
    assert_eq!(parse_num(&run.value("BOOT_PROTOCOL")), 0x20f);
}

#[test]
fn bzimage32_enters_at_code32_start_in_protected_mode() {
    let dir = common::temp_dir();
    let (initrd, bytes) = write_initrd(dir.path(), 5000);
    let mut c = config("bz32", "bzimage32", 128);
    c.initrd = Some(initrd);
    c.cmdline = "linux32 entry".into();
    let run = common::run_guest(c.clone(), TIMEOUT);
    check(
        &run,
        &Expect {
            entry: "32",
            paging: false,
            memory_mib: 128,
            cmdline: &c.cmdline,
            initrd: Some(&bytes),
        },
    );
}

#[test]
fn bzimage64_can_be_forced_through_the_32_bit_entry() {
    let mut c = config("bz64-as-32", "bzimage64", 64);
    c.boot_protocol = BootProtocol::Linux32;
    let run = common::run_guest(c.clone(), TIMEOUT);
    check(
        &run,
        &Expect {
            entry: "32",
            paging: false,
            memory_mib: 64,
            cmdline: &c.cmdline,
            initrd: None,
        },
    );
}

#[test]
fn bzimage32_cannot_be_booted_through_the_64_bit_entry() {
    // Without XLF_KERNEL_64 the image has no 64-bit entry to promise.
    let mut c = config("bz32-as-64", "bzimage32", 64);
    c.boot_protocol = BootProtocol::Linux64;
    let Err(err) = xhyve_manager::vmm::build(c, Box::new(std::io::sink())) else {
        panic!("building a Linux64 VM from a kernel without XLF_KERNEL_64 succeeded");
    };
    let chain = common::error_chain(&err);
    assert!(chain.contains("64-bit"), "error does not say why: {chain}");
}

/// `cmdline_size` in the bzImage header (tests/guests/bzimage.S).
const BZIMAGE_CMDLINE_SIZE: usize = 2047;

#[test]
fn bzimage_command_line_up_to_cmdline_size_arrives_whole() {
    let mut c = config("bz-long-cmdline", "bzimage64", 64);
    let filler: String = (0..BZIMAGE_CMDLINE_SIZE)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    c.cmdline = format!("long={}", &filler[5..]);
    assert_eq!(c.cmdline.len(), BZIMAGE_CMDLINE_SIZE);
    let run = common::run_guest(c.clone(), TIMEOUT);
    run.assert_ok();
    assert_eq!(run.value("CMDLINE"), c.cmdline);

    c.cmdline.push('z');
    let Err(err) = xhyve_manager::vmm::build(c, Box::new(std::io::sink())) else {
        panic!("a command line longer than the header's cmdline_size was accepted");
    };
    let chain = common::error_chain(&err);
    assert!(
        chain.contains("command line"),
        "error does not say why: {chain}"
    );
}
