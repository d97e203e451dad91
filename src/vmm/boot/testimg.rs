//! Synthetic kernel images for the loader tests: a bzImage with a real
//! setup header and ELF32/ELF64 executables with optional PVH notes.

use std::io::Write;
use std::path::PathBuf;

/// Builds a bzImage: setup sectors holding a setup header, then a payload.
pub struct BzBuilder {
    setup_sects: u8,
    version: u16,
    loadflags: u8,
    xloadflags: u16,
    code32_start: u32,
    initrd_addr_max: u32,
    cmdline_size: u32,
    pref_address: u64,
    init_size: Option<u32>,
    payload: Vec<u8>,
}

/// Byte pattern used to recognise a payload in guest memory.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

impl BzBuilder {
    pub fn new() -> Self {
        BzBuilder {
            setup_sects: 3,
            version: 0x020f,
            loadflags: 0x01,  // LOADED_HIGH
            xloadflags: 0x03, // XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G
            code32_start: 0x10_0000,
            initrd_addr_max: 0x7fff_ffff,
            cmdline_size: 2047,
            pref_address: 0x10_0000,
            init_size: None,
            payload: pattern(8192, 7),
        }
    }
    pub fn version(mut self, v: u16) -> Self {
        self.version = v;
        self
    }
    pub fn loadflags(mut self, v: u8) -> Self {
        self.loadflags = v;
        self
    }
    pub fn xloadflags(mut self, v: u16) -> Self {
        self.xloadflags = v;
        self
    }
    pub fn initrd_addr_max(mut self, v: u32) -> Self {
        self.initrd_addr_max = v;
        self
    }
    pub fn cmdline_size(mut self, v: u32) -> Self {
        self.cmdline_size = v;
        self
    }
    pub fn pref_address(mut self, v: u64) -> Self {
        self.pref_address = v;
        self
    }
    pub fn init_size(mut self, v: u32) -> Self {
        self.init_size = Some(v);
        self
    }
    pub fn payload(mut self, v: Vec<u8>) -> Self {
        self.payload = v;
        self
    }

    pub fn build(&self) -> Vec<u8> {
        let setup_len = (usize::from(self.setup_sects) + 1) * 512;
        let mut img = vec![0u8; setup_len];
        let put = |img: &mut Vec<u8>, off: usize, bytes: &[u8]| {
            img[off..off + bytes.len()].copy_from_slice(bytes)
        };
        put(&mut img, 0x1f1, &[self.setup_sects]);
        let syssize = self.payload.len().div_ceil(16) as u32;
        put(&mut img, 0x1f4, &syssize.to_le_bytes());
        put(&mut img, 0x1fe, &0xaa55u16.to_le_bytes());
        put(&mut img, 0x200, &[0xeb, 0x66]); // jmp to the end of the header
        put(&mut img, 0x202, b"HdrS");
        put(&mut img, 0x206, &self.version.to_le_bytes());
        put(&mut img, 0x211, &[self.loadflags]);
        put(&mut img, 0x214, &self.code32_start.to_le_bytes());
        put(&mut img, 0x22c, &self.initrd_addr_max.to_le_bytes());
        put(&mut img, 0x230, &0x20_0000u32.to_le_bytes()); // kernel_alignment
        put(&mut img, 0x234, &[1]); // relocatable_kernel
        put(&mut img, 0x236, &self.xloadflags.to_le_bytes());
        put(&mut img, 0x238, &self.cmdline_size.to_le_bytes());
        put(&mut img, 0x258, &self.pref_address.to_le_bytes());
        let init_size = self.init_size.unwrap_or(self.payload.len() as u32);
        put(&mut img, 0x260, &init_size.to_le_bytes());
        img.extend_from_slice(&self.payload);
        img
    }
}

/// A loadable segment of a test ELF.
pub struct Seg {
    pub paddr: u64,
    pub data: Vec<u8>,
    pub memsz: u64,
}

/// Builds an ELF executable (little-endian, ET_EXEC).
pub struct ElfBuilder {
    class64: bool,
    machine: u16,
    e_type: u16,
    entry: u64,
    segments: Vec<Seg>,
    notes: Vec<(Vec<u8>, u32, Vec<u8>)>,
}

pub const EM_386: u16 = 3;
pub const EM_X86_64: u16 = 62;
pub const EM_AARCH64: u16 = 183;
pub const PVH_NOTE: u32 = 18;

impl ElfBuilder {
    pub fn new64() -> Self {
        ElfBuilder {
            class64: true,
            machine: EM_X86_64,
            e_type: 2,
            entry: 0x10_0000,
            segments: Vec::new(),
            notes: Vec::new(),
        }
    }
    pub fn new32() -> Self {
        ElfBuilder {
            class64: false,
            machine: EM_386,
            ..Self::new64()
        }
    }
    pub fn machine(mut self, m: u16) -> Self {
        self.machine = m;
        self
    }
    pub fn entry(mut self, e: u64) -> Self {
        self.entry = e;
        self
    }
    pub fn segment(mut self, paddr: u64, data: Vec<u8>, memsz: u64) -> Self {
        self.segments.push(Seg { paddr, data, memsz });
        self
    }
    pub fn note(mut self, name: &[u8], n_type: u32, desc: &[u8]) -> Self {
        self.notes.push((name.to_vec(), n_type, desc.to_vec()));
        self
    }
    /// The XEN_ELFNOTE_PHYS32_ENTRY note with a 32-bit entry.
    pub fn pvh_entry(self, entry: u32) -> Self {
        self.note(b"Xen\0", PVH_NOTE, &entry.to_le_bytes())
    }

    pub fn build(&self) -> Vec<u8> {
        let (ehsize, phentsize) = if self.class64 { (64, 56) } else { (52, 32) };
        let phnum = self.segments.len() + usize::from(!self.notes.is_empty());
        let mut notes = Vec::new();
        for (name, ty, desc) in &self.notes {
            notes.extend_from_slice(&(name.len() as u32).to_le_bytes());
            notes.extend_from_slice(&(desc.len() as u32).to_le_bytes());
            notes.extend_from_slice(&ty.to_le_bytes());
            notes.extend_from_slice(name);
            notes.resize(notes.len().next_multiple_of(4), 0);
            notes.extend_from_slice(desc);
            notes.resize(notes.len().next_multiple_of(4), 0);
        }
        let notes_off = ehsize + phnum * phentsize;
        let mut data_off = (notes_off + notes.len()).next_multiple_of(16);
        // (type, offset, paddr, filesz, memsz, align)
        let mut phdrs = Vec::new();
        let mut body = Vec::new();
        for s in &self.segments {
            phdrs.push((
                1u32,
                data_off as u64,
                s.paddr,
                s.data.len() as u64,
                s.memsz,
                16u64,
            ));
            body.push((data_off, &s.data));
            data_off = (data_off + s.data.len()).next_multiple_of(16);
        }
        if !notes.is_empty() {
            phdrs.push((
                4,
                notes_off as u64,
                0,
                notes.len() as u64,
                notes.len() as u64,
                4,
            ));
        }

        let mut img = vec![0u8; data_off];
        img[..4].copy_from_slice(b"\x7fELF");
        img[4] = if self.class64 { 2 } else { 1 };
        img[5] = 1; // ELFDATA2LSB
        img[6] = 1; // EV_CURRENT
        let mut w = Writer { img: &mut img };
        w.u16(16, self.e_type);
        w.u16(18, self.machine);
        w.u32(20, 1);
        if self.class64 {
            w.u64(24, self.entry);
            w.u64(32, ehsize as u64);
            w.u16(52, ehsize as u16);
            w.u16(54, phentsize as u16);
            w.u16(56, phnum as u16);
        } else {
            w.u32(24, self.entry as u32);
            w.u32(28, ehsize as u32);
            w.u16(40, ehsize as u16);
            w.u16(42, phentsize as u16);
            w.u16(44, phnum as u16);
        }
        for (i, (ty, off, paddr, filesz, memsz, align)) in phdrs.into_iter().enumerate() {
            let p = ehsize + i * phentsize;
            w.u32(p, ty);
            if self.class64 {
                w.u32(p + 4, 7);
                w.u64(p + 8, off);
                w.u64(p + 16, paddr | 0xffff_ffff_8000_0000); // a kernel-style vaddr
                w.u64(p + 24, paddr);
                w.u64(p + 32, filesz);
                w.u64(p + 40, memsz);
                w.u64(p + 48, align);
            } else {
                w.u32(p + 4, off as u32);
                w.u32(p + 8, paddr as u32 | 0xc000_0000);
                w.u32(p + 12, paddr as u32);
                w.u32(p + 16, filesz as u32);
                w.u32(p + 20, memsz as u32);
                w.u32(p + 24, 7);
                w.u32(p + 28, align as u32);
            }
        }
        img[notes_off..notes_off + notes.len()].copy_from_slice(&notes);
        for (off, data) in body {
            img[off..off + data.len()].copy_from_slice(data);
        }
        img
    }
}

struct Writer<'a> {
    img: &'a mut Vec<u8>,
}

impl Writer<'_> {
    fn u16(&mut self, off: usize, v: u16) {
        self.img[off..off + 2].copy_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, off: usize, v: u32) {
        self.img[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, off: usize, v: u64) {
        self.img[off..off + 8].copy_from_slice(&v.to_le_bytes());
    }
}

/// Write `bytes` to `name` in `dir` and return the path.
pub fn write_file(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(bytes).unwrap();
    path
}
