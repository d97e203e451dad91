//! `load` end to end on synthetic images in a 64 MiB guest (no KVM).

use std::path::{Path, PathBuf};

use linux_loader::loader::bootparam::boot_params;
use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use vm_memory::{Bytes, GuestAddress};

use super::testimg::{BzBuilder, ElfBuilder, pattern, write_file};
use super::*;
use crate::vmm::layout::{
    BIOS_AREA_END, EBDA_START, HIMEM_START, MIB, PVH_MEMMAP_START, PVH_MODLIST_START, RSDP_START,
};
use crate::vmm::memory::create_guest_memory;

const MEM_MIB: u64 = 64;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        write_file(&self.dir, name, bytes)
    }
}

fn spec<'a>(kernel: &'a Path, initrd: Option<&'a Path>, cmdline: &'a str) -> KernelSpec<'a> {
    KernelSpec {
        kernel,
        initrd,
        cmdline,
        protocol: BootProtocol::Auto,
        memory_mib: MEM_MIB,
    }
}

fn read_bytes(mem: &GuestMemoryMmap, addr: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    mem.read_slice(&mut buf, GuestAddress(addr)).unwrap();
    buf
}

fn assert_cmdline(mem: &GuestMemoryMmap, expected: &str) {
    let got = read_bytes(mem, CMDLINE_START, expected.len() + 1);
    assert_eq!(&got[..expected.len()], expected.as_bytes());
    assert_eq!(got[expected.len()], 0);
}

#[test]
fn bzimage_auto_boots_64bit_with_zero_page_initrd_and_cmdline() {
    let fx = Fixture::new();
    let payload = pattern(20_000, 3);
    let kernel = fx.file(
        "bzImage",
        &BzBuilder::new().payload(payload.clone()).build(),
    );
    let initrd_bytes = pattern(10_000, 77);
    let initrd = fx.file("initrd", &initrd_bytes);
    let cmdline = "console=ttyS0 earlyprintk=serial root=/dev/vda";
    let mem = create_guest_memory(MEM_MIB).unwrap();

    let setup = load(&mem, &spec(&kernel, Some(&initrd), cmdline)).unwrap();

    assert_eq!(
        setup.entry,
        EntryPoint::Linux64 {
            rip: HIMEM_START + 0x200,
            boot_params: ZERO_PAGE_START
        }
    );
    assert_eq!(read_bytes(&mem, HIMEM_START, payload.len()), payload);
    assert_cmdline(&mem, cmdline);

    // The initrd: page-aligned, above the kernel, as high as RAM allows.
    let (GuestAddress(addr), size) = setup.initrd.unwrap();
    assert_eq!(size, initrd_bytes.len() as u64);
    assert_eq!(addr % PAGE_SIZE, 0);
    assert!(addr >= HIMEM_START + payload.len() as u64);
    assert!(addr + size <= MEM_MIB * MIB);
    assert!(MEM_MIB * MIB - (addr + size) < PAGE_SIZE);
    assert_eq!(read_bytes(&mem, addr, initrd_bytes.len()), initrd_bytes);

    let params: boot_params = mem.read_obj(GuestAddress(ZERO_PAGE_START)).unwrap();
    let hdr = params.hdr;
    let (magic, loader, flags, code32) = (
        hdr.header,
        hdr.type_of_loader,
        hdr.loadflags,
        hdr.code32_start,
    );
    assert_eq!(magic, 0x5372_6448);
    assert_eq!(loader, 0xff);
    assert_eq!(flags & 0x81, 0x81, "LOADED_HIGH | CAN_USE_HEAP");
    assert_eq!(code32, HIMEM_START as u32);
    let (cmd, rd, rds, rsdp) = (
        hdr.cmd_line_ptr,
        hdr.ramdisk_image,
        hdr.ramdisk_size,
        params.acpi_rsdp_addr,
    );
    assert_eq!(cmd, CMDLINE_START as u32);
    assert_eq!((u64::from(rd), u64::from(rds)), (addr, size));
    assert_eq!(rsdp, RSDP_START);

    // e820: RAM below the EBDA, the BIOS area reserved, RAM from 1 MiB.
    let entries: Vec<(u64, u64, u32)> = params.e820_table[..params.e820_entries as usize]
        .iter()
        .map(|e| (e.addr, e.size, e.r#type))
        .collect();
    assert_eq!(
        entries,
        vec![
            (0, EBDA_START, E820_RAM),
            (EBDA_START, BIOS_AREA_END - EBDA_START, E820_RESERVED),
            (HIMEM_START, MEM_MIB * MIB - HIMEM_START, E820_RAM),
        ]
    );
    let ram: u64 = entries
        .iter()
        .filter(|e| e.2 == E820_RAM)
        .map(|e| e.1)
        .sum();
    assert_eq!(ram, MEM_MIB * MIB - (HIMEM_START - EBDA_START));
}

#[test]
fn initrd_stays_below_initrd_addr_max() {
    let fx = Fixture::new();
    let kernel = fx.file(
        "bzImage",
        &BzBuilder::new().initrd_addr_max(0x1ff_ffff).build(),
    );
    let initrd = fx.file("initrd", &pattern(5000, 1));
    let mem = create_guest_memory(MEM_MIB).unwrap();
    let setup = load(&mem, &spec(&kernel, Some(&initrd), "")).unwrap();
    let (GuestAddress(addr), size) = setup.initrd.unwrap();
    assert!(addr + size <= 0x200_0000);
    assert!(0x200_0000 - (addr + size) < PAGE_SIZE);
}

#[test]
fn initrd_goes_above_the_decompression_area() {
    let fx = Fixture::new();
    // A kernel that decompresses into [16 MiB, 16 MiB + 40 MiB): only 8 MiB left.
    let kernel = fx.file(
        "bzImage",
        &BzBuilder::new()
            .pref_address(0x100_0000)
            .init_size(40 << 20)
            .build(),
    );
    let fits = fx.file("small", &pattern(4 << 20, 1));
    let mem = create_guest_memory(MEM_MIB).unwrap();
    let setup = load(&mem, &spec(&kernel, Some(&fits), "")).unwrap();
    assert!(setup.initrd.unwrap().0.0 >= 56 * MIB);

    let too_big = fx.file("big", &vec![1u8; 9 << 20]);
    let mem = create_guest_memory(MEM_MIB).unwrap();
    let e = load(&mem, &spec(&kernel, Some(&too_big), "")).unwrap_err();
    assert!(matches!(e, Error::InitrdTooLarge { .. }), "{e}");
}

#[test]
fn entry_choice_for_bzimages() {
    let fx = Fixture::new();
    let k64 = fx.file("k64", &BzBuilder::new().build());
    let k32 = fx.file("k32", &BzBuilder::new().xloadflags(0).build());
    let old = fx.file("old", &BzBuilder::new().version(0x020b).build());
    let run = |kernel: &Path, protocol| {
        let mem = create_guest_memory(MEM_MIB).unwrap();
        load(
            &mem,
            &KernelSpec {
                protocol,
                ..spec(kernel, None, "")
            },
        )
        .map(|s| s.entry)
    };
    let l32 = EntryPoint::Linux32 {
        eip: HIMEM_START,
        boot_params: ZERO_PAGE_START,
    };
    assert!(matches!(
        run(&k64, BootProtocol::Linux64),
        Ok(EntryPoint::Linux64 { .. })
    ));
    assert_eq!(run(&k64, BootProtocol::Linux32).unwrap(), l32);
    assert_eq!(run(&k32, BootProtocol::Auto).unwrap(), l32);
    assert_eq!(run(&old, BootProtocol::Auto).unwrap(), l32);
    let e = run(&k32, BootProtocol::Linux64).unwrap_err();
    assert!(matches!(e, Error::No64BitEntry { .. }), "{e}");
    assert!(e.to_string().contains("k32"), "{e}");
    let e = run(&k64, BootProtocol::Pvh).unwrap_err();
    assert!(matches!(e, Error::NotPvh { .. }), "{e}");
}

fn pvh_kernel() -> (Vec<u8>, Vec<u8>) {
    let text = pattern(3000, 5);
    let img = ElfBuilder::new64()
        .entry(0x100_0000)
        .segment(0x100_0000, text.clone(), 0x4000)
        .note(b"Xen\0", 6, b"linux\0")
        .pvh_entry(0x100_0010)
        .build();
    (img, text)
}

#[test]
fn pvh_elf_gets_start_info_modules_and_memmap() {
    let fx = Fixture::new();
    let (img, text) = pvh_kernel();
    let kernel = fx.file("vmlinux", &img);
    let initrd_bytes = pattern(7000, 9);
    let initrd = fx.file("initrd", &initrd_bytes);
    let cmdline = "console=ttyS0 -- init-arg";
    for protocol in [BootProtocol::Auto, BootProtocol::Pvh] {
        let mem = create_guest_memory(MEM_MIB).unwrap();
        let setup = load(
            &mem,
            &KernelSpec {
                protocol,
                ..spec(&kernel, Some(&initrd), cmdline)
            },
        )
        .unwrap();
        assert_eq!(
            setup.entry,
            EntryPoint::Pvh {
                eip: 0x100_0010,
                start_info: PVH_INFO_START
            }
        );
        assert_eq!(read_bytes(&mem, 0x100_0000, text.len()), text);
        assert_cmdline(&mem, cmdline);

        let info: hvm_start_info = mem.read_obj(GuestAddress(PVH_INFO_START)).unwrap();
        assert_eq!((info.magic, info.version), (0x336e_c578, 1));
        assert_eq!(info.cmdline_paddr, CMDLINE_START);
        assert_eq!(info.rsdp_paddr, RSDP_START);
        assert_eq!(
            (info.nr_modules, info.modlist_paddr),
            (1, PVH_MODLIST_START)
        );
        let module: hvm_modlist_entry = mem.read_obj(GuestAddress(PVH_MODLIST_START)).unwrap();
        let (GuestAddress(addr), size) = setup.initrd.unwrap();
        assert_eq!((module.paddr, module.size), (addr, size));
        assert!(addr >= 0x100_4000 && addr % PAGE_SIZE == 0);
        assert_eq!(read_bytes(&mem, addr, initrd_bytes.len()), initrd_bytes);

        assert_eq!(info.memmap_paddr, PVH_MEMMAP_START);
        let map = e820::memory_map(MEM_MIB);
        assert_eq!(info.memmap_entries as usize, map.len());
        for (i, r) in map.iter().enumerate() {
            let at = PVH_MEMMAP_START + (i * std::mem::size_of::<hvm_memmap_table_entry>()) as u64;
            let e: hvm_memmap_table_entry = mem.read_obj(GuestAddress(at)).unwrap();
            let ty = if r.kind == e820::Kind::Ram {
                E820_RAM
            } else {
                E820_RESERVED
            };
            assert_eq!((e.addr, e.size, e.type_), (r.addr, r.size, ty));
        }
    }
}

#[test]
fn freebsd_style_elf_loads_at_its_physical_address() {
    // FreeBSD/amd64 links at virtual 0xffffffff80200000, physical 2 MiB,
    // and its e_entry is virtual; the PVH note gives the physical entry.
    let fx = Fixture::new();
    let text = pattern(512, 11);
    let img = ElfBuilder::new64()
        .entry(0xffff_ffff_8020_0100)
        .segment(0x20_0000, text.clone(), 0x1000)
        .pvh_entry(0x20_0100)
        .build();
    let kernel = fx.file("kernel", &img);
    let mem = create_guest_memory(MEM_MIB).unwrap();
    let setup = load(
        &mem,
        &KernelSpec {
            protocol: BootProtocol::Pvh,
            ..spec(&kernel, None, "")
        },
    )
    .unwrap();
    assert_eq!(
        setup.entry,
        EntryPoint::Pvh {
            eip: 0x20_0100,
            start_info: PVH_INFO_START
        }
    );
    assert_eq!(read_bytes(&mem, 0x20_0000, text.len()), text);
    let info: hvm_start_info = mem.read_obj(GuestAddress(PVH_INFO_START)).unwrap();
    assert_eq!((info.nr_modules, info.modlist_paddr), (0, 0));
}

#[test]
fn elf_errors() {
    let fx = Fixture::new();
    let no_note = fx.file(
        "plain.elf",
        &ElfBuilder::new64()
            .segment(0x10_0000, pattern(64, 1), 64)
            .build(),
    );
    let mem = create_guest_memory(MEM_MIB).unwrap();
    let e = load(&mem, &spec(&no_note, None, "")).unwrap_err();
    assert!(matches!(e, Error::NotPvh { .. }), "{e}");
    assert!(e.to_string().contains("plain.elf"), "{e}");
    assert!(e.to_string().contains("XEN_ELFNOTE_PHYS32_ENTRY"), "{e}");

    let (img, _) = pvh_kernel();
    let vmlinux = fx.file("vmlinux", &img);
    let e = load(
        &mem,
        &KernelSpec {
            protocol: BootProtocol::Linux64,
            ..spec(&vmlinux, None, "")
        },
    )
    .unwrap_err();
    assert!(matches!(e, Error::ElfNeedsPvh { .. }), "{e}");
}

#[test]
fn kernel_file_errors_name_the_file() {
    let fx = Fixture::new();
    let mem = create_guest_memory(MEM_MIB).unwrap();
    let check = |path: &Path, ok: fn(&Error) -> bool| {
        let e = load(&mem, &spec(path, None, "")).unwrap_err();
        assert!(ok(&e), "{path:?}: {e:?}");
        assert!(e.to_string().contains(&*path.to_string_lossy()), "{e}");
    };
    check(&fx.dir.path().join("missing"), |e| {
        matches!(e, Error::KernelOpen { .. })
    });
    check(fx.dir.path(), |e| matches!(e, Error::KernelNotAFile { .. }));
    let full = BzBuilder::new().build();
    check(&fx.file("cut-in-header", &full[..0x210]), |e| {
        matches!(e, Error::KernelTruncated { .. })
    });
    check(&fx.file("cut-before-hdrs", &full[..0x201]), |e| {
        matches!(e, Error::KernelTruncated { .. })
    });
    check(&fx.file("random", &pattern(100_000, 42)), |e| {
        matches!(e, Error::NotAKernel { .. })
    });
    check(&fx.file("empty", &[]), |e| {
        matches!(e, Error::NotAKernel { .. })
    });
    check(
        &fx.file("huge-init", &BzBuilder::new().init_size(80 << 20).build()),
        |e| matches!(e, Error::KernelTooLarge { .. }),
    );
}

#[test]
fn initrd_errors_name_the_file_and_write_nothing() {
    let fx = Fixture::new();
    let payload = pattern(4096, 1);
    let kernel = fx.file("bzImage", &BzBuilder::new().payload(payload).build());
    let big = fx.file("big.cpio", &vec![0x55u8; (MEM_MIB * MIB) as usize]);
    let mem = create_guest_memory(MEM_MIB).unwrap();
    let e = load(&mem, &spec(&kernel, Some(&big), "")).unwrap_err();
    assert!(matches!(e, Error::InitrdTooLarge { .. }), "{e}");
    assert!(e.to_string().contains("big.cpio"), "{e}");
    // Validation failed before anything was copied.
    assert!(read_bytes(&mem, HIMEM_START, 4096).iter().all(|&b| b == 0));
    assert!(
        read_bytes(&mem, ZERO_PAGE_START, 4096)
            .iter()
            .all(|&b| b == 0)
    );

    let missing = fx.dir.path().join("nope.img");
    let e = load(&mem, &spec(&kernel, Some(&missing), "")).unwrap_err();
    assert!(matches!(e, Error::InitrdOpen { .. }), "{e}");
    assert!(e.to_string().contains("nope.img"), "{e}");

    let empty = fx.file("empty.img", &[]);
    let e = load(&mem, &spec(&kernel, Some(&empty), "")).unwrap_err();
    assert!(matches!(e, Error::InitrdEmpty { .. }), "{e}");
}

#[test]
fn cmdline_limits() {
    let fx = Fixture::new();
    let kernel = fx.file("bzImage", &BzBuilder::new().cmdline_size(64).build());
    let mem = create_guest_memory(MEM_MIB).unwrap();
    let fits = "x".repeat(64);
    load(&mem, &spec(&kernel, None, &fits)).unwrap();
    assert_cmdline(&mem, &fits);

    let long = "x".repeat(65);
    let e = load(&mem, &spec(&kernel, None, &long)).unwrap_err();
    assert!(
        matches!(
            e,
            Error::CmdlineTooLong {
                len: 65,
                max: 64,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("bzImage"), "{e}");

    let e = load(&mem, &spec(&kernel, None, "console=ttyS0\nquiet")).unwrap_err();
    assert!(matches!(e, Error::CmdlineInvalid(_)), "{e}");

    // The VMM's own bound applies even when the kernel allows more.
    let (img, _) = pvh_kernel();
    let vmlinux = fx.file("vmlinux", &img);
    let e = load(&mem, &spec(&vmlinux, None, &"y".repeat(CMDLINE_MAX_SIZE))).unwrap_err();
    assert!(matches!(e, Error::CmdlineTooLong { .. }), "{e}");
}

#[test]
fn memory_must_match_the_spec() {
    let fx = Fixture::new();
    let kernel = fx.file("bzImage", &BzBuilder::new().build());
    let mem = create_guest_memory(32).unwrap();
    let e = load(&mem, &spec(&kernel, None, "")).unwrap_err();
    assert!(matches!(e, Error::MemoryMismatch { memory_mib: 64 }), "{e}");
}
