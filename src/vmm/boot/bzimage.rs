//! bzImage kernels: the Linux x86 boot protocol
//! (Documentation/arch/x86/boot.rst).
//!
//! The real-mode setup code is never run: the protected-mode kernel is
//! copied to 1 MiB and entered directly, either through `startup_64`
//! (load address + 0x200, 64-bit boot protocol) or through `code32_start`
//! (32-bit boot protocol), with a zero page we fill in ourselves.

use std::fs::File;
use std::path::{Path, PathBuf};

use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::KernelLoader;
use linux_loader::loader::bootparam::{
    CAN_USE_HEAP, E820_MAX_ENTRIES_ZEROPAGE, LOADED_HIGH, XLF_KERNEL_64, boot_params, setup_header,
};
use vm_memory::{ByteValued, GuestAddress};

use super::Error;
use super::e820::{self, Range};
use crate::vmm::layout::{CMDLINE_START, HIMEM_START, RSDP_START, ZERO_PAGE_START};
use crate::vmm::memory::GuestMemoryMmap;

/// Offset of `struct setup_header` in the image and in the zero page.
pub const SETUP_HEADER_OFFSET: usize = 0x1f1;
/// Offset of the "HdrS" magic (`setup_header.header`).
pub const HDRS_OFFSET: usize = 0x202;
/// "HdrS", little-endian.
pub const HDRS_MAGIC: u32 = 0x5372_6448;
/// End (exclusive) of the setup header we read (protocol 2.15).
pub const SETUP_HEADER_END: usize = SETUP_HEADER_OFFSET + std::mem::size_of::<setup_header>();
/// Offset and value of the boot-sector signature (`setup_header.boot_flag`).
pub const BOOT_FLAG_OFFSET: usize = 0x1fe;
pub const BOOT_FLAG_MAGIC: u16 = 0xaa55;

/// Oldest protocol we boot: 2.02 introduced `cmd_line_ptr`.
const MIN_VERSION: u16 = 0x0202;
/// 2.03 introduced `initrd_addr_max`; older kernels take initrds below this.
const VERSION_INITRD_ADDR_MAX: u16 = 0x0203;
const DEFAULT_INITRD_ADDR_MAX: u64 = 0x37ff_ffff;
/// 2.04: `syssize` is a full 32-bit size of the protected-mode code.
const VERSION_SYSSIZE_32: u16 = 0x0204;
/// 2.06 introduced `cmdline_size`; older kernels take 255 bytes.
const VERSION_CMDLINE_SIZE: u16 = 0x0206;
const DEFAULT_CMDLINE_SIZE: u64 = 255;
/// 2.10 introduced `pref_address` and `init_size`.
const VERSION_INIT_SIZE: u16 = 0x020a;
/// 2.12 introduced `xloadflags` (and with it XLF_KERNEL_64).
const VERSION_XLOADFLAGS: u16 = 0x020c;
/// `setup_sects` of 0 means 4 (boot.rst, "setup_sects").
const DEFAULT_SETUP_SECTS: u64 = 4;
const SECTOR_SIZE: u64 = 512;
/// `startup_64` is 0x200 bytes into the protected-mode kernel (boot.rst,
/// "64-bit BOOT PROTOCOL").
pub const STARTUP_64_OFFSET: u64 = 0x200;
/// `type_of_loader` for a boot loader without an assigned id.
const LOADER_TYPE_UNDEFINED: u8 = 0xff;
/// `heap_end_ptr`: end of the setup heap relative to the real-mode code
/// minus 0x200, for a full 64 KiB setup segment (boot.rst example).
const HEAP_END_PTR: u16 = 0xfe00;

/// A validated bzImage.
#[derive(Clone, Debug)]
pub struct BzImage {
    path: PathBuf,
    header: setup_header,
    /// Bytes of the protected-mode kernel (the file after the setup code).
    payload_size: u64,
}

impl BzImage {
    /// Parse the setup header from the first bytes of the file (`head`,
    /// at least `SETUP_HEADER_END` bytes) and check the file against it.
    pub fn parse(path: &Path, head: &[u8], file_len: u64) -> Result<Self, Error> {
        let not_bootable = |reason: String| Error::UnsupportedKernel {
            path: path.to_path_buf(),
            reason,
        };
        let bytes = head
            .get(SETUP_HEADER_OFFSET..SETUP_HEADER_END)
            .ok_or_else(|| Error::KernelTruncated {
                path: path.to_path_buf(),
                what: format!(
                    "the setup header ends at {SETUP_HEADER_END:#x}, the file has {file_len} bytes"
                ),
            })?;
        let header = *setup_header::from_slice(bytes).ok_or_else(|| Error::NotAKernel {
            path: path.to_path_buf(),
        })?;
        let magic = header.header;
        if magic != HDRS_MAGIC {
            return Err(Error::NotAKernel {
                path: path.to_path_buf(),
            });
        }
        let version = header.version;
        if version < MIN_VERSION {
            return Err(not_bootable(format!(
                "boot protocol {} is older than {} (no cmd_line_ptr)",
                fmt_version(version),
                fmt_version(MIN_VERSION)
            )));
        }
        if header.loadflags & LOADED_HIGH == 0 {
            return Err(not_bootable(
                "it is a zImage (loads at 0x10000), not a bzImage".to_string(),
            ));
        }
        let sects = match u64::from(header.setup_sects) {
            0 => DEFAULT_SETUP_SECTS,
            n => n,
        };
        let setup_size = (sects + 1) * SECTOR_SIZE;
        let payload_size = file_len.checked_sub(setup_size).filter(|&n| n > 0);
        let Some(payload_size) = payload_size else {
            return Err(Error::KernelTruncated {
                path: path.to_path_buf(),
                what: format!(
                    "{setup_size} bytes of setup code and no protected-mode kernel after them (file has {file_len} bytes)"
                ),
            });
        };
        if version >= VERSION_SYSSIZE_32 {
            let syssize = u64::from(header.syssize) * 16;
            if syssize > payload_size {
                return Err(Error::KernelTruncated {
                    path: path.to_path_buf(),
                    what: format!(
                        "the header announces {syssize} bytes of protected-mode kernel, the file has {payload_size}"
                    ),
                });
            }
        }
        Ok(BzImage {
            path: path.to_path_buf(),
            header,
            payload_size,
        })
    }

    pub fn version(&self) -> u16 {
        self.header.version
    }

    /// Does the kernel have a 64-bit entry point (protocol >= 2.12 and
    /// XLF_KERNEL_64)?
    pub fn has_64bit_entry(&self) -> bool {
        self.version() >= VERSION_XLOADFLAGS && self.header.xloadflags & XLF_KERNEL_64 != 0
    }

    /// Where the protected-mode kernel is loaded.
    pub fn load_address(&self) -> u64 {
        HIMEM_START
    }

    /// The 64-bit entry point (`startup_64`).
    pub fn entry_64(&self) -> u64 {
        self.load_address() + STARTUP_64_OFFSET
    }

    /// The 32-bit entry point (`code32_start`, which we set to the load
    /// address).
    pub fn entry_32(&self) -> u64 {
        self.load_address()
    }

    /// End (exclusive) of the memory the kernel occupies until it has
    /// decompressed itself: the image, and for protocol >= 2.10 `init_size`
    /// bytes from the load address and from `pref_address`, where a
    /// relocatable kernel moves itself.
    pub fn footprint_end(&self) -> u64 {
        let load = self.load_address();
        let mut end = load + self.payload_size;
        if self.version() >= VERSION_INIT_SIZE {
            let init_size = u64::from(self.header.init_size);
            let pref = self.header.pref_address;
            end = end
                .max(load.saturating_add(init_size))
                .max(pref.saturating_add(init_size));
        }
        end
    }

    /// Longest command line the kernel takes, without the terminating NUL.
    pub fn cmdline_limit(&self) -> u64 {
        if self.version() >= VERSION_CMDLINE_SIZE {
            u64::from(self.header.cmdline_size)
        } else {
            DEFAULT_CMDLINE_SIZE
        }
    }

    /// End (exclusive) of where the initrd may lie.
    pub fn initrd_ceiling(&self) -> u64 {
        let max = if self.version() >= VERSION_INITRD_ADDR_MAX {
            u64::from(self.header.initrd_addr_max)
        } else {
            DEFAULT_INITRD_ADDR_MAX
        };
        max + 1
    }

    /// The zero page for this kernel.
    pub fn boot_params(&self, initrd: Option<(u64, u64)>, map: &[Range]) -> boot_params {
        let mut params = boot_params {
            hdr: self.header,
            ..Default::default()
        };
        params.hdr.code32_start = self.load_address() as u32;
        params.hdr.type_of_loader = LOADER_TYPE_UNDEFINED;
        params.hdr.loadflags |= CAN_USE_HEAP;
        params.hdr.heap_end_ptr = HEAP_END_PTR;
        params.hdr.cmd_line_ptr = CMDLINE_START as u32;
        params.ext_cmd_line_ptr = (CMDLINE_START >> 32) as u32;
        if let Some((addr, size)) = initrd {
            params.hdr.ramdisk_image = addr as u32;
            params.hdr.ramdisk_size = size as u32;
            params.ext_ramdisk_image = (addr >> 32) as u32;
            params.ext_ramdisk_size = (size >> 32) as u32;
        }
        params.acpi_rsdp_addr = RSDP_START;
        let entries = e820::to_e820(map);
        let count = entries.len().min(E820_MAX_ENTRIES_ZEROPAGE);
        params.e820_table[..count].copy_from_slice(&entries[..count]);
        params.e820_entries = count as u8;
        params
    }

    /// Copy the protected-mode kernel to its load address.
    pub fn load_kernel(&self, mem: &GuestMemoryMmap, file: &mut File) -> Result<(), Error> {
        linux_loader::loader::bzimage::BzImage::load(
            mem,
            Some(GuestAddress(self.load_address())),
            file,
            None,
        )
        .map_err(|source| Error::LoadKernel {
            path: self.path.clone(),
            source,
        })?;
        Ok(())
    }

    /// Write the zero page at `ZERO_PAGE_START`.
    pub fn write_boot_params(
        &self,
        mem: &GuestMemoryMmap,
        initrd: Option<(u64, u64)>,
        map: &[Range],
    ) -> Result<(), Error> {
        let params = self.boot_params(initrd, map);
        let boot = BootParams::new(&params, GuestAddress(ZERO_PAGE_START));
        LinuxBootConfigurator::write_bootparams(&boot, mem).map_err(Error::BootParams)
    }
}

/// "2.15" for 0x020f.
pub fn fmt_version(version: u16) -> String {
    format!("{}.{:02}", version >> 8, version & 0xff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::boot::testimg::BzBuilder;

    fn parse(img: &[u8]) -> Result<BzImage, Error> {
        BzImage::parse(Path::new("/k/bzImage"), img, img.len() as u64)
    }

    #[test]
    fn modern_kernel_has_a_64bit_entry() {
        let img = parse(&BzBuilder::new().build()).unwrap();
        assert!(img.has_64bit_entry());
        assert_eq!(img.entry_64(), HIMEM_START + 0x200);
        assert_eq!(img.entry_32(), HIMEM_START);
    }

    #[test]
    fn no_64bit_entry_without_xlf_or_before_2_12() {
        let img = parse(&BzBuilder::new().xloadflags(0).build()).unwrap();
        assert!(!img.has_64bit_entry());
        let img = parse(&BzBuilder::new().version(0x020b).build()).unwrap();
        assert!(!img.has_64bit_entry());
    }

    #[test]
    fn limits_come_from_the_header() {
        let img = parse(
            &BzBuilder::new()
                .cmdline_size(0x7ff)
                .initrd_addr_max(0x3fff_ffff)
                .build(),
        )
        .unwrap();
        assert_eq!(img.cmdline_limit(), 0x7ff);
        assert_eq!(img.initrd_ceiling(), 0x4000_0000);
        let old = parse(&BzBuilder::new().version(0x0205).build()).unwrap();
        assert_eq!(old.cmdline_limit(), 255);
    }

    #[test]
    fn footprint_covers_init_size_from_pref_address() {
        let img = parse(
            &BzBuilder::new()
                .pref_address(0x100_0000)
                .init_size(0x20_0000)
                .build(),
        )
        .unwrap();
        assert_eq!(img.footprint_end(), 0x120_0000);
    }

    #[test]
    fn rejects_old_and_low_loading_kernels() {
        let e = parse(&BzBuilder::new().version(0x0201).build()).unwrap_err();
        assert!(matches!(e, Error::UnsupportedKernel { .. }), "{e}");
        assert!(e.to_string().contains("2.01"), "{e}");
        let e = parse(&BzBuilder::new().loadflags(0).build()).unwrap_err();
        assert!(e.to_string().contains("zImage"), "{e}");
    }

    #[test]
    fn short_payload_is_truncation() {
        let mut img = BzBuilder::new().payload(vec![0x90; 4096]).build();
        img.truncate(img.len() - 100);
        let e = parse(&img).unwrap_err();
        assert!(matches!(e, Error::KernelTruncated { .. }), "{e}");
        assert!(e.to_string().contains("/k/bzImage"), "{e}");
    }

    #[test]
    fn zero_page_fields() {
        let img = parse(&BzBuilder::new().build()).unwrap();
        let map = e820::memory_map(64);
        let p = img.boot_params(Some((0x300_0000, 0x1234)), &map);
        let hdr = p.hdr;
        let (loader, flags, cmd, rd, rds, heap) = (
            hdr.type_of_loader,
            hdr.loadflags,
            hdr.cmd_line_ptr,
            hdr.ramdisk_image,
            hdr.ramdisk_size,
            hdr.heap_end_ptr,
        );
        assert_eq!(loader, 0xff);
        assert_eq!(flags, LOADED_HIGH | CAN_USE_HEAP);
        assert_eq!(cmd, CMDLINE_START as u32);
        assert_eq!((rd, rds), (0x300_0000, 0x1234));
        assert_eq!(heap, HEAP_END_PTR);
        let (rsdp, n, magic) = (p.acpi_rsdp_addr, p.e820_entries, hdr.header);
        assert_eq!(rsdp, RSDP_START);
        assert_eq!(n as usize, map.len());
        assert_eq!(magic, HDRS_MAGIC);
    }
}
