//! ELF kernels for PVH: Linux `vmlinux`, FreeBSD >= 14 `kernel`.
//!
//! The program headers are parsed here (ELF32 and ELF64; System V gABI,
//! "Program Header") so everything can be checked before guest memory is
//! touched: machine, truncation, every PT_LOAD inside RAM above 1 MiB, and
//! the PVH entry from the `XEN_ELFNOTE_PHYS32_ENTRY` note
//! (xen/include/public/elfnote.h). Segments go to their physical address
//! `p_paddr` (FreeBSD links at 2 MiB, Linux at 16 MiB).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use linux_loader::loader::KernelLoader;
use vm_memory::{Bytes, GuestAddress};

use super::Error;
use crate::vmm::layout::HIMEM_START;
use crate::vmm::memory::GuestMemoryMmap;

pub const ELF_MAGIC: [u8; 4] = *b"\x7fELF";
const EI_CLASS: usize = 4;
const EI_DATA: usize = 5;
const ELFCLASS32: u8 = 1;
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const ET_EXEC: u16 = 2;
pub const EM_386: u16 = 3;
pub const EM_X86_64: u16 = 62;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const EHDR32_SIZE: usize = 52;
const EHDR64_SIZE: usize = 64;
const PHDR32_SIZE: usize = 32;
const PHDR64_SIZE: usize = 56;
/// Note type of the 32-bit physical PVH entry point.
pub const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
const XEN_NOTE_NAME: &[u8] = b"Xen\0";
/// Largest note segment we read; kernels' are a few hundred bytes.
const MAX_NOTE_SEGMENT: u64 = 1 << 20;
/// Largest program header table we read.
const MAX_PHNUM: usize = 512;

/// One PT_LOAD segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub offset: u64,
    pub paddr: u64,
    pub filesz: u64,
    pub memsz: u64,
}

/// A validated ELF kernel.
#[derive(Clone, Debug)]
pub struct ElfKernel {
    path: PathBuf,
    class64: bool,
    pub segments: Vec<Segment>,
    /// Entry from the XEN_ELFNOTE_PHYS32_ENTRY note, if any.
    pub pvh_entry: Option<u64>,
}

fn field(b: &[u8], off: usize, len: usize) -> u64 {
    b[off..off + len]
        .iter()
        .rev()
        .fold(0u64, |acc, &x| (acc << 8) | u64::from(x))
}

fn machine_name(machine: u16) -> &'static str {
    match machine {
        EM_386 => "i386",
        EM_X86_64 => "x86-64",
        40 => "ARM",
        183 => "AArch64",
        243 => "RISC-V",
        20 => "PowerPC",
        21 => "PowerPC64",
        8 => "MIPS",
        22 => "S/390",
        _ => "unknown",
    }
}

impl ElfKernel {
    /// Parse and validate the ELF in `file`; segments must end by `ram_end`.
    pub fn parse(path: &Path, file: &mut File, file_len: u64, ram_end: u64) -> Result<Self, Error> {
        let invalid = |reason: String| Error::InvalidElf {
            path: path.to_path_buf(),
            reason,
        };
        let truncated = |what: String| Error::KernelTruncated {
            path: path.to_path_buf(),
            what,
        };
        let read_at = |file: &mut File, off: u64, len: usize| -> Result<Vec<u8>, Error> {
            if off.checked_add(len as u64).is_none_or(|end| end > file_len) {
                return Err(Error::KernelTruncated {
                    path: path.to_path_buf(),
                    what: format!(
                        "{len} bytes at offset {off:#x} are past the end of the file ({file_len} bytes)"
                    ),
                });
            }
            let mut buf = vec![0u8; len];
            file.seek(SeekFrom::Start(off))
                .and_then(|_| file.read_exact(&mut buf))
                .map_err(|source| Error::KernelRead {
                    path: path.to_path_buf(),
                    source,
                })?;
            Ok(buf)
        };

        let ident = read_at(file, 0, 16)?;
        if ident[..4] != ELF_MAGIC {
            return Err(Error::NotAKernel {
                path: path.to_path_buf(),
            });
        }
        let class64 = match ident[EI_CLASS] {
            ELFCLASS64 => true,
            ELFCLASS32 => false,
            c => return Err(invalid(format!("unknown ELF class {c}"))),
        };
        if ident[EI_DATA] != ELFDATA2LSB {
            return Err(invalid(
                "big-endian ELF; x86 kernels are little-endian".into(),
            ));
        }
        let ehsize = if class64 { EHDR64_SIZE } else { EHDR32_SIZE };
        let ehdr = read_at(file, 0, ehsize).map_err(|_| {
            truncated(format!(
                "the ELF header needs {ehsize} bytes, the file has {file_len}"
            ))
        })?;
        let machine = field(&ehdr, 18, 2) as u16;
        let expected = if class64 { EM_X86_64 } else { EM_386 };
        if machine != expected {
            return Err(Error::ElfMachine {
                path: path.to_path_buf(),
                machine,
                name: machine_name(machine),
                bits: if class64 { 64 } else { 32 },
            });
        }
        let e_type = field(&ehdr, 16, 2) as u16;
        if e_type != ET_EXEC {
            return Err(invalid(format!(
                "ELF type {e_type} is not an executable (ET_EXEC)"
            )));
        }
        let (phoff, phentsize, phnum) = if class64 {
            (
                field(&ehdr, 32, 8),
                field(&ehdr, 54, 2) as usize,
                field(&ehdr, 56, 2) as usize,
            )
        } else {
            (
                field(&ehdr, 28, 4),
                field(&ehdr, 42, 2) as usize,
                field(&ehdr, 44, 2) as usize,
            )
        };
        let want_phentsize = if class64 { PHDR64_SIZE } else { PHDR32_SIZE };
        if phentsize != want_phentsize {
            return Err(invalid(format!(
                "program header entries are {phentsize} bytes, expected {want_phentsize}"
            )));
        }
        if phnum == 0 || phnum > MAX_PHNUM {
            return Err(invalid(format!("{phnum} program headers")));
        }
        let table = read_at(file, phoff, phnum * phentsize)?;

        let mut segments = Vec::new();
        let mut notes = Vec::new();
        for ph in table.chunks_exact(phentsize) {
            let p_type = field(ph, 0, 4) as u32;
            let (offset, paddr, filesz, memsz) = if class64 {
                (
                    field(ph, 8, 8),
                    field(ph, 24, 8),
                    field(ph, 32, 8),
                    field(ph, 40, 8),
                )
            } else {
                (
                    field(ph, 4, 4),
                    field(ph, 12, 4),
                    field(ph, 16, 4),
                    field(ph, 20, 4),
                )
            };
            if offset.checked_add(filesz).is_none_or(|end| end > file_len) {
                return Err(truncated(format!(
                    "a segment's {filesz} bytes at offset {offset:#x} are past the end of the file ({file_len} bytes)"
                )));
            }
            match p_type {
                PT_LOAD if memsz > 0 => {
                    if filesz > memsz {
                        return Err(invalid(format!(
                            "segment at {paddr:#x} has more file bytes ({filesz}) than memory ({memsz})"
                        )));
                    }
                    let end = paddr.checked_add(memsz);
                    if paddr < HIMEM_START || end.is_none_or(|end| end > ram_end) {
                        return Err(Error::KernelTooLarge {
                            path: path.to_path_buf(),
                            reason: format!(
                                "segment [{paddr:#x}, {:#x}) is outside the RAM kernels may use, [{HIMEM_START:#x}, {ram_end:#x})",
                                paddr.saturating_add(memsz)
                            ),
                        });
                    }
                    segments.push(Segment {
                        offset,
                        paddr,
                        filesz,
                        memsz,
                    });
                }
                PT_NOTE if filesz > 0 => notes.push((offset, filesz.min(MAX_NOTE_SEGMENT))),
                _ => {}
            }
        }
        if segments.is_empty() {
            return Err(invalid("no loadable segment".into()));
        }
        for pair in sorted(&segments).windows(2) {
            if pair[0].paddr + pair[0].memsz > pair[1].paddr {
                return Err(invalid(format!(
                    "segments at {:#x} and {:#x} overlap",
                    pair[0].paddr, pair[1].paddr
                )));
            }
        }

        let mut pvh_entry = None;
        for (offset, len) in notes {
            let bytes = read_at(file, offset, len as usize)?;
            if let Some(entry) = find_pvh_entry(&bytes).map_err(invalid)? {
                pvh_entry = Some(entry);
                break;
            }
        }
        if let Some(entry) = pvh_entry {
            let inside = segments
                .iter()
                .any(|s| entry >= s.paddr && entry < s.paddr + s.filesz);
            if !inside {
                return Err(invalid(format!(
                    "the PVH entry point {entry:#x} is outside every loadable segment"
                )));
            }
        }
        Ok(ElfKernel {
            path: path.to_path_buf(),
            class64,
            segments,
            pvh_entry,
        })
    }

    /// End (exclusive) of the highest segment.
    pub fn footprint_end(&self) -> u64 {
        self.segments
            .iter()
            .map(|s| s.paddr + s.memsz)
            .max()
            .unwrap_or(HIMEM_START)
    }

    /// Copy the segments to their physical addresses and zero their
    /// bss parts (guest memory is not fresh after a reset).
    pub fn load(&self, mem: &GuestMemoryMmap, file: &mut File) -> Result<(), Error> {
        let read_err = |source| Error::KernelRead {
            path: self.path.clone(),
            source,
        };
        if self.class64 {
            // linux-loader reads ELF64 (and loads at p_paddr without an offset).
            linux_loader::loader::elf::Elf::load(mem, None, file, None).map_err(|source| {
                Error::LoadKernel {
                    path: self.path.clone(),
                    source,
                }
            })?;
        } else {
            for s in &self.segments {
                file.seek(SeekFrom::Start(s.offset)).map_err(read_err)?;
                mem.read_exact_volatile_from(GuestAddress(s.paddr), file, s.filesz as usize)
                    .map_err(Error::GuestMemory)?;
            }
        }
        for s in &self.segments {
            zero(mem, s.paddr + s.filesz, s.memsz - s.filesz)?;
        }
        Ok(())
    }
}

fn sorted(segments: &[Segment]) -> Vec<Segment> {
    let mut v = segments.to_vec();
    v.sort_by_key(|s| s.paddr);
    v
}

fn zero(mem: &GuestMemoryMmap, mut addr: u64, mut len: u64) -> Result<(), Error> {
    const CHUNK: u64 = 1 << 16;
    let zeros = [0u8; CHUNK as usize];
    while len > 0 {
        let n = len.min(CHUNK);
        mem.write_slice(&zeros[..n as usize], GuestAddress(addr))
            .map_err(Error::GuestMemory)?;
        addr += n;
        len -= n;
    }
    Ok(())
}

/// Walk the notes of one PT_NOTE segment (gABI "Note Section": namesz,
/// descsz, type, then name and desc each padded to 4 bytes).
fn find_pvh_entry(notes: &[u8]) -> Result<Option<u64>, String> {
    const HEADER: usize = 12;
    let mut pos = 0;
    while pos + HEADER <= notes.len() {
        let namesz = field(notes, pos, 4) as usize;
        let descsz = field(notes, pos + 4, 4) as usize;
        let n_type = field(notes, pos + 8, 4) as u32;
        let name_at = pos + HEADER;
        let desc_at = name_at + namesz.next_multiple_of(4);
        let next = desc_at + descsz.next_multiple_of(4);
        if next > notes.len() {
            return Err(format!("note at offset {pos:#x} runs past its segment"));
        }
        if n_type == XEN_ELFNOTE_PHYS32_ENTRY && &notes[name_at..name_at + namesz] == XEN_NOTE_NAME
        {
            return match descsz {
                4 | 8 => {
                    let entry = field(notes, desc_at, descsz);
                    if entry > u64::from(u32::MAX) {
                        Err(format!("PVH entry point {entry:#x} is above 4 GiB"))
                    } else {
                        Ok(Some(entry))
                    }
                }
                n => Err(format!("PVH note has a {n}-byte descriptor, expected 4")),
            };
        }
        pos = next;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::boot::testimg::{self, ElfBuilder, pattern};
    use crate::vmm::layout::MIB;

    fn parse(img: &[u8]) -> Result<ElfKernel, Error> {
        let dir = tempfile::tempdir().unwrap();
        let path = testimg::write_file(&dir, "vmlinux", img);
        let mut f = File::open(&path).unwrap();
        ElfKernel::parse(&path, &mut f, img.len() as u64, 64 * MIB)
    }

    #[test]
    fn finds_the_pvh_note_among_others() {
        let img = ElfBuilder::new64()
            .segment(0x20_0000, pattern(256, 1), 0x1000)
            .note(b"GNU\0", 3, &[1, 2, 3, 4, 5, 6, 7, 8])
            .note(b"Xen\0", 6, b"linux\0")
            .pvh_entry(0x20_0040)
            .build();
        let k = parse(&img).unwrap();
        assert_eq!(k.pvh_entry, Some(0x20_0040));
        assert_eq!(k.footprint_end(), 0x20_1000);
    }

    #[test]
    fn elf_without_the_note_has_no_pvh_entry() {
        let img = ElfBuilder::new64()
            .segment(0x10_0000, pattern(64, 1), 64)
            .note(b"Xen\0", 6, b"linux\0")
            .build();
        assert_eq!(parse(&img).unwrap().pvh_entry, None);
    }

    #[test]
    fn i386_elf_is_accepted() {
        let img = ElfBuilder::new32()
            .segment(0x40_0000, pattern(64, 1), 64)
            .pvh_entry(0x40_0000)
            .build();
        assert_eq!(parse(&img).unwrap().pvh_entry, Some(0x40_0000));
    }

    #[test]
    fn foreign_machines_are_named() {
        let img = ElfBuilder::new64()
            .machine(testimg::EM_AARCH64)
            .segment(0x10_0000, pattern(64, 1), 64)
            .build();
        let e = parse(&img).unwrap_err();
        assert!(matches!(e, Error::ElfMachine { machine: 183, .. }), "{e}");
        assert!(e.to_string().contains("AArch64"), "{e}");
        // x86-64 code in an ELF32 container (x32) is not a kernel either.
        let img = ElfBuilder::new32()
            .machine(EM_X86_64)
            .segment(0x10_0000, pattern(64, 1), 64)
            .build();
        assert!(matches!(parse(&img), Err(Error::ElfMachine { .. })));
    }

    #[test]
    fn segments_must_fit_above_1m_in_ram() {
        let low = ElfBuilder::new64()
            .segment(0x8_0000, pattern(64, 1), 64)
            .build();
        assert!(matches!(parse(&low), Err(Error::KernelTooLarge { .. })));
        let high = ElfBuilder::new64()
            .segment(63 * MIB, pattern(64, 1), 2 * MIB)
            .build();
        let e = parse(&high).unwrap_err();
        assert!(matches!(e, Error::KernelTooLarge { .. }), "{e}");
        assert!(e.to_string().contains("vmlinux"), "{e}");
    }

    #[test]
    fn truncated_segment_is_reported() {
        let mut img = ElfBuilder::new64()
            .segment(0x10_0000, pattern(4096, 1), 4096)
            .build();
        img.truncate(img.len() - 10);
        assert!(matches!(parse(&img), Err(Error::KernelTruncated { .. })));
        assert!(matches!(
            parse(&img[..40]),
            Err(Error::KernelTruncated { .. })
        ));
    }

    #[test]
    fn entry_outside_segments_is_invalid() {
        let img = ElfBuilder::new64()
            .segment(0x10_0000, pattern(64, 1), 64)
            .pvh_entry(0x90_0000)
            .build();
        assert!(matches!(parse(&img), Err(Error::InvalidElf { .. })));
    }

    #[test]
    fn loads_at_paddr_and_zeroes_bss() {
        for builder in [ElfBuilder::new64(), ElfBuilder::new32()] {
            let img = builder
                .segment(0x20_0000, pattern(300, 9), 0x2000)
                .segment(0x30_0000, pattern(100, 3), 100)
                .pvh_entry(0x20_0000)
                .build();
            let dir = tempfile::tempdir().unwrap();
            let path = testimg::write_file(&dir, "kernel", &img);
            let mut f = File::open(&path).unwrap();
            let k = ElfKernel::parse(&path, &mut f, img.len() as u64, 64 * MIB).unwrap();
            let mem = crate::vmm::memory::create_guest_memory(64).unwrap();
            mem.write_slice(&[0xaa; 0x2000], GuestAddress(0x20_0000))
                .unwrap();
            k.load(&mem, &mut f).unwrap();
            let mut got = vec![0u8; 0x2000];
            mem.read_slice(&mut got, GuestAddress(0x20_0000)).unwrap();
            assert_eq!(&got[..300], &pattern(300, 9)[..]);
            assert!(got[300..].iter().all(|&b| b == 0));
            let mut got = vec![0u8; 100];
            mem.read_slice(&mut got, GuestAddress(0x30_0000)).unwrap();
            assert_eq!(got, pattern(100, 3));
        }
    }
}
