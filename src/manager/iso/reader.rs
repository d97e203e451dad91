//! A small, defensive ISO 9660 reader: volume descriptors, directory
//! records, Rock Ridge names (through `susp`), Joliet names and
//! multi-extent files. Every offset and length read from the image is
//! checked against the image before use; directory walks are bounded in
//! depth, in entries and in bytes, so hostile images end in an error.
//!
//! Spec: ECMA-119 (ISO 9660) 2nd edition; Joliet specification 1995;
//! IEEE P1281 (SUSP) and P1282 (Rock Ridge) 1.12.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::susp::{self, SuspInfo};

/// ECMA-119 §6.1.2: the first 16 sectors are the system area.
const SYSTEM_AREA_SECTORS: u64 = 16;
/// ECMA-119 §6.1.2: volume descriptors are 2048-byte sectors.
pub const SECTOR_SIZE: u64 = 2048;
/// ECMA-119 §8.1: standard identifier "CD001" at offset 1 of every descriptor.
const STANDARD_ID: &[u8; 5] = b"CD001";
/// ECMA-119 §8.1.1: volume descriptor types.
const VD_PRIMARY: u8 = 1;
const VD_SUPPLEMENTARY: u8 = 2;
const VD_TERMINATOR: u8 = 255;
/// Stop looking for the terminator after this many descriptors.
const MAX_VOLUME_DESCRIPTORS: u64 = 64;
/// ECMA-119 §8.4: offsets inside the primary volume descriptor.
const PVD_VOLUME_ID: usize = 40;
const PVD_VOLUME_ID_LEN: usize = 32;
const PVD_BLOCK_SIZE: usize = 128;
const PVD_ROOT_RECORD: usize = 156;
const ROOT_RECORD_LEN: usize = 34;
/// Joliet §2.2: escape sequences for UCS-2 levels 1, 2 and 3.
const JOLIET_ESCAPES: [&[u8; 3]; 3] = [b"%/@", b"%/C", b"%/E"];
const SVD_ESCAPES: usize = 88;

/// ECMA-119 §9.1: directory record field offsets.
const DR_LEN: usize = 0;
const DR_EXT_ATTR_LEN: usize = 1;
const DR_EXTENT: usize = 2;
const DR_DATA_LEN: usize = 10;
const DR_FLAGS: usize = 25;
const DR_UNIT_SIZE: usize = 26;
const DR_GAP_SIZE: usize = 27;
const DR_NAME_LEN: usize = 32;
const DR_NAME: usize = 33;
/// ECMA-119 §9.1.6: file flag bits.
const FLAG_DIRECTORY: u8 = 1 << 1;
const FLAG_MULTI_EXTENT: u8 = 1 << 7;

/// Limits that keep hostile images from costing unbounded time or memory.
const MAX_DIRECTORY_BYTES: u64 = 16 << 20;
const MAX_DEPTH: usize = 32;
const MAX_WALK_ENTRIES: usize = 200_000;
const MAX_EXTENTS_PER_FILE: usize = 4096;
const MAX_SYMLINK_HOPS: usize = 16;
/// Directory bytes one whole-tree walk may read.
const MAX_WALK_BYTES: u64 = 256 << 20;
/// Rock Ridge continuation bytes one directory listing may read.
const MAX_CE_BYTES_PER_LIST: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("not an ISO 9660 image: {0}")]
    NotIso(String),
    #[error("corrupt ISO 9660 image: {0}")]
    Corrupt(String),
    #[error("'{0}' is not in the image")]
    NotFound(String),
    #[error("'{0}' is a directory, not a file")]
    IsDirectory(String),
    #[error("'{0}' is not a directory")]
    NotDirectory(String),
    #[error("directory loop at '{0}' (a directory contains one of its ancestors)")]
    DirectoryLoop(String),
    #[error(
        "'{path}' claims {size} bytes at byte {start}, past the end of the {image_len}-byte image"
    )]
    BeyondImage {
        path: String,
        start: u64,
        size: u64,
        image_len: u64,
    },
    #[error("'{0}' is stored interleaved, which is not supported")]
    Interleaved(String),
    #[error("too much work: {0}")]
    TooLarge(String),
}

/// Names from the tree the image offers: Rock Ridge, Joliet or plain ISO 9660.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Naming {
    RockRidge,
    Joliet,
    Plain,
}

/// One contiguous piece of a file's data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    pub start: u64,
    pub len: u64,
}

/// A directory entry, with multi-extent files merged into one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub is_dir: bool,
    pub extents: Vec<Extent>,
    /// Rock Ridge symbolic link target, if this entry is one.
    pub symlink: Option<String>,
}

impl Entry {
    pub fn size(&self) -> u64 {
        self.extents.iter().map(|e| e.len).sum()
    }
}

/// A random-access byte source the reader works on.
pub trait Source: Read + Seek {}
impl<T: Read + Seek> Source for T {}

pub struct IsoImage<R: Source> {
    source: R,
    len: u64,
    label: String,
    block_size: u64,
    root: Entry,
    naming: Naming,
    susp: SuspInfo,
    /// Where errors say the image came from.
    origin: PathBuf,
    /// Continuation bytes the current listing may still read.
    ce_left: u64,
}

impl IsoImage<File> {
    pub fn open(path: &Path) -> Result<Self, ReadError> {
        let file = File::open(path).map_err(|source| ReadError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_source(file, path)
    }
}

impl<R: Source> IsoImage<R> {
    /// Read the volume descriptors of `source`; `origin` names it in errors.
    pub fn from_source(mut source: R, origin: &Path) -> Result<Self, ReadError> {
        let io = |source| ReadError::Io {
            path: origin.to_path_buf(),
            source,
        };
        let len = source.seek(SeekFrom::End(0)).map_err(io)?;
        let mut primary = None;
        let mut joliet = None;
        for index in 0..MAX_VOLUME_DESCRIPTORS {
            let offset = (SYSTEM_AREA_SECTORS + index) * SECTOR_SIZE;
            if offset + SECTOR_SIZE > len {
                break;
            }
            let mut vd = vec![0u8; SECTOR_SIZE as usize];
            read_exact_at(&mut source, offset, &mut vd).map_err(io)?;
            if &vd[1..6] != STANDARD_ID {
                break;
            }
            match vd[0] {
                VD_PRIMARY if primary.is_none() => primary = Some(vd),
                VD_SUPPLEMENTARY
                    if joliet.is_none()
                        && JOLIET_ESCAPES
                            .iter()
                            .any(|e| &vd[SVD_ESCAPES..SVD_ESCAPES + 3] == *e) =>
                {
                    joliet = Some(vd)
                }
                VD_TERMINATOR => break,
                _ => {}
            }
        }
        let pvd = primary.ok_or_else(|| {
            ReadError::NotIso(format!(
                "{} has no primary volume descriptor at sector {SYSTEM_AREA_SECTORS}",
                origin.display()
            ))
        })?;
        let block_size = u64::from(u16::from_le_bytes([
            pvd[PVD_BLOCK_SIZE],
            pvd[PVD_BLOCK_SIZE + 1],
        ]));
        // ECMA-119 §6.1.2: a logical block is 2^(n+9) bytes, at most a sector.
        if !block_size.is_power_of_two() || !(512..=SECTOR_SIZE).contains(&block_size) {
            return Err(ReadError::Corrupt(format!(
                "logical block size {block_size}"
            )));
        }
        let label = String::from_utf8_lossy(&pvd[PVD_VOLUME_ID..PVD_VOLUME_ID + PVD_VOLUME_ID_LEN])
            .trim_end_matches([' ', '\0'])
            .to_string();
        let mut image = IsoImage {
            source,
            len,
            label,
            block_size,
            root: Entry {
                name: String::new(),
                is_dir: true,
                extents: Vec::new(),
                symlink: None,
            },
            naming: Naming::Plain,
            susp: SuspInfo::default(),
            origin: origin.to_path_buf(),
            ce_left: MAX_CE_BYTES_PER_LIST,
        };
        let primary_root = image.root_record(&pvd)?;
        image.root = primary_root.clone();
        // SUSP §5.3: the SP entry sits in the root's "." record.
        if let Some(info) = image.detect_susp(&primary_root)? {
            image.susp = info;
            image.naming = Naming::RockRidge;
        } else if let Some(svd) = joliet
            && let Ok(root) = image.root_record(&svd)
        {
            image.root = root;
            image.naming = Naming::Joliet;
        }
        Ok(image)
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn naming(&self) -> Naming {
        self.naming
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn root_record(&self, vd: &[u8]) -> Result<Entry, ReadError> {
        let record = &vd[PVD_ROOT_RECORD..PVD_ROOT_RECORD + ROOT_RECORD_LEN];
        let (extent, flags) = self.record_extent(record, "/")?;
        if flags & FLAG_DIRECTORY == 0 {
            return Err(ReadError::Corrupt("root record is not a directory".into()));
        }
        Ok(Entry {
            name: String::new(),
            is_dir: true,
            extents: vec![extent],
            symlink: None,
        })
    }

    /// The data extent of a directory record, checked against the image.
    fn record_extent(&self, record: &[u8], path: &str) -> Result<(Extent, u8), ReadError> {
        if record.len() < DR_NAME || usize::from(record[DR_LEN]) < DR_NAME {
            return Err(ReadError::Corrupt(format!(
                "short directory record for '{path}'"
            )));
        }
        let lba = u64::from(le32(record, DR_EXTENT)) + u64::from(record[DR_EXT_ATTR_LEN]);
        let len = u64::from(le32(record, DR_DATA_LEN));
        let start = lba * self.block_size;
        let flags = record[DR_FLAGS];
        if record[DR_UNIT_SIZE] != 0 || record[DR_GAP_SIZE] != 0 {
            return Err(ReadError::Interleaved(path.to_string()));
        }
        if start.checked_add(len).is_none_or(|end| end > self.len) {
            return Err(ReadError::BeyondImage {
                path: path.to_string(),
                start,
                size: len,
                image_len: self.len,
            });
        }
        Ok((Extent { start, len }, flags))
    }

    fn detect_susp(&mut self, root: &Entry) -> Result<Option<SuspInfo>, ReadError> {
        let data = self.read_directory(root, "/")?;
        let Some(record) = first_record(&data) else {
            return Ok(None);
        };
        let system_use = system_use_area(record);
        Ok(susp::detect(system_use))
    }

    fn read_directory(&mut self, dir: &Entry, path: &str) -> Result<Vec<u8>, ReadError> {
        let size = dir.size();
        if size > MAX_DIRECTORY_BYTES {
            return Err(ReadError::TooLarge(format!(
                "directory '{path}' claims {size} bytes (limit {MAX_DIRECTORY_BYTES})"
            )));
        }
        let mut data = vec![0u8; size as usize];
        let mut at = 0usize;
        for extent in &dir.extents {
            let end = at + extent.len as usize;
            read_exact_at(&mut self.source, extent.start, &mut data[at..end]).map_err(
                |source| ReadError::Io {
                    path: self.origin.clone(),
                    source,
                },
            )?;
            at = end;
        }
        Ok(data)
    }

    /// The entries of directory `dir` (without "." and ".."), in image order.
    pub fn list(&mut self, dir: &Entry, path: &str) -> Result<Vec<Entry>, ReadError> {
        if !dir.is_dir {
            return Err(ReadError::NotDirectory(path.to_string()));
        }
        let data = self.read_directory(dir, path)?;
        let mut entries: Vec<Entry> = Vec::new();
        // The previous record had the multi-extent flag: this one continues it.
        let mut continuing = false;
        let sector = SECTOR_SIZE as usize;
        self.ce_left = MAX_CE_BYTES_PER_LIST;
        let mut offset = 0usize;
        while offset < data.len() {
            let len = usize::from(data[offset]);
            let sector_end = (offset / sector + 1) * sector;
            if len == 0 {
                // ECMA-119 §6.8.1.1: records never cross a sector; zero pads.
                offset = sector_end;
                continue;
            }
            if len < DR_NAME || offset + len > data.len().min(sector_end) {
                return Err(ReadError::Corrupt(format!(
                    "directory record of {len} bytes at offset {offset} in '{path}'"
                )));
            }
            let record = &data[offset..offset + len];
            offset += len;
            let name_len = usize::from(record[DR_NAME_LEN]);
            if DR_NAME + name_len > len {
                return Err(ReadError::Corrupt(format!(
                    "name overflows its record in '{path}'"
                )));
            }
            let raw_name = &record[DR_NAME..DR_NAME + name_len];
            if name_len == 1 && (raw_name[0] == 0 || raw_name[0] == 1) {
                continue; // "." and ".."
            }
            let (mut extent, mut flags) = self.record_extent(record, path)?;
            let rr = if self.naming == Naming::RockRidge {
                let area = system_use_area(record);
                let area = area.get(usize::from(self.susp.skip)..).unwrap_or(&[]);
                Some(self.read_rock_ridge(area, path)?)
            } else {
                None
            };
            if rr.as_ref().is_some_and(|rr| rr.relocated) {
                continue; // RRIP §4.1.5.2: shown at its original place instead.
            }
            if let Some(lba) = rr.as_ref().and_then(|rr| rr.child_link) {
                extent = self.relocated_directory(lba, path)?;
                flags |= FLAG_DIRECTORY;
            }
            let name = match rr.as_ref().and_then(|rr| rr.name.clone()) {
                Some(name) => name,
                None if self.naming == Naming::Joliet => joliet_name(raw_name),
                None => plain_name(raw_name),
            };
            if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                return Err(ReadError::Corrupt(format!(
                    "bad file name {name:?} in '{path}'"
                )));
            }
            if continuing {
                let last = entries
                    .last_mut()
                    .expect("continuing implies a previous entry");
                if last.name != name {
                    return Err(ReadError::Corrupt(format!(
                        "multi-extent file '{}' continued by '{name}' in '{path}'",
                        last.name
                    )));
                }
                if last.extents.len() >= MAX_EXTENTS_PER_FILE {
                    return Err(ReadError::TooLarge(format!(
                        "'{name}' has too many extents"
                    )));
                }
                last.extents.push(extent);
            } else {
                entries.push(Entry {
                    name,
                    is_dir: flags & FLAG_DIRECTORY != 0,
                    extents: vec![extent],
                    symlink: rr.and_then(|rr| rr.symlink),
                });
            }
            continuing = flags & FLAG_MULTI_EXTENT != 0;
        }
        if continuing {
            return Err(ReadError::Corrupt(format!(
                "multi-extent file without its last extent in '{path}'"
            )));
        }
        Ok(entries)
    }

    /// The extent of the directory a CL entry points at, from its "." record.
    fn relocated_directory(&mut self, lba: u64, path: &str) -> Result<Extent, ReadError> {
        let start = lba * self.block_size;
        let mut record = [0u8; DR_NAME + 1];
        if start + record.len() as u64 > self.len {
            return Err(ReadError::BeyondImage {
                path: format!("{path} (relocated directory)"),
                start,
                size: record.len() as u64,
                image_len: self.len,
            });
        }
        read_exact_at(&mut self.source, start, &mut record).map_err(|source| ReadError::Io {
            path: self.origin.clone(),
            source,
        })?;
        let (extent, flags) = self.record_extent(&record, path)?;
        if flags & FLAG_DIRECTORY == 0 || extent.start != start {
            return Err(ReadError::Corrupt(format!(
                "Rock Ridge child link in '{path}' does not point at a directory"
            )));
        }
        Ok(extent)
    }

    fn read_rock_ridge(&mut self, area: &[u8], path: &str) -> Result<susp::RockRidge, ReadError> {
        let origin = self.origin.clone();
        let len = self.len;
        let source = &mut self.source;
        let ce_left = &mut self.ce_left;
        let mut read_ce = |start: u64, out: &mut [u8]| -> Result<(), ReadError> {
            *ce_left = ce_left.checked_sub(out.len() as u64).ok_or_else(|| {
                ReadError::TooLarge(format!("Rock Ridge continuations in '{path}'"))
            })?;
            if start
                .checked_add(out.len() as u64)
                .is_none_or(|end| end > len)
            {
                return Err(ReadError::BeyondImage {
                    path: format!("{path} (Rock Ridge continuation)"),
                    start,
                    size: out.len() as u64,
                    image_len: len,
                });
            }
            read_exact_at(source, start, out).map_err(|source| ReadError::Io {
                path: origin.clone(),
                source,
            })
        };
        susp::parse(area, self.block_size, &mut read_ce).map_err(|e| match e {
            susp::ParseError::Corrupt(what) => {
                ReadError::Corrupt(format!("Rock Ridge data in '{path}': {what}"))
            }
            susp::ParseError::Read(e) => e,
        })
    }

    /// Look up an absolute path; names match exactly, then ignoring case
    /// (plain ISO 9660 names are upper case). Follows Rock Ridge symlinks.
    pub fn lookup(&mut self, path: &str) -> Result<Entry, ReadError> {
        let mut hops = 0;
        let mut pending: Vec<String> = components(path).rev().map(str::to_string).collect();
        let mut stack: Vec<Entry> = vec![self.root.clone()];
        let mut shown = String::new();
        while let Some(part) = pending.pop() {
            if stack.len() > MAX_DEPTH {
                return Err(ReadError::TooLarge(format!("'{path}' is too deep")));
            }
            if part == ".." {
                if stack.len() > 1 {
                    stack.pop();
                }
                continue;
            }
            let dir = stack.last().expect("stack holds the root");
            let shown_dir = if shown.is_empty() {
                "/".to_string()
            } else {
                shown.clone()
            };
            let entries = self.list(&dir.clone(), &shown_dir)?;
            let found = entries
                .iter()
                .find(|e| e.name == part)
                .or_else(|| entries.iter().find(|e| e.name.eq_ignore_ascii_case(&part)))
                .cloned()
                .ok_or_else(|| ReadError::NotFound(format!("{shown}/{part}")))?;
            shown = format!("{shown}/{}", found.name);
            if let Some(target) = &found.symlink {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Err(ReadError::TooLarge(format!(
                        "too many symlinks in '{path}'"
                    )));
                }
                if target.starts_with('/') {
                    stack.truncate(1);
                }
                for part in components(target).rev() {
                    pending.push(part.to_string());
                }
                continue;
            }
            if !pending.is_empty() && !found.is_dir {
                return Err(ReadError::NotDirectory(shown));
            }
            stack.push(found);
        }
        Ok(stack.pop().expect("stack holds the root"))
    }

    /// Whether `path` names a regular file; a missing path is `false`,
    /// a damaged image on the way there an error.
    pub fn file_exists(&mut self, path: &str) -> Result<bool, ReadError> {
        match self.lookup(path) {
            Ok(entry) => Ok(!entry.is_dir),
            Err(ReadError::NotFound(_) | ReadError::NotDirectory(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every regular file's path, walking the whole tree with bounded
    /// depth and work; a directory that is its own ancestor is an error.
    pub fn walk_files(&mut self) -> Result<Vec<(String, u64)>, ReadError> {
        let mut files = Vec::new();
        let mut ancestors = HashSet::new();
        let mut budget = WalkBudget {
            entries: MAX_WALK_ENTRIES,
            bytes: MAX_WALK_BYTES,
        };
        let root = self.root.clone();
        self.walk(&root, "", 0, &mut ancestors, &mut budget, &mut files)?;
        Ok(files)
    }

    fn walk(
        &mut self,
        dir: &Entry,
        path: &str,
        depth: usize,
        ancestors: &mut HashSet<u64>,
        budget: &mut WalkBudget,
        files: &mut Vec<(String, u64)>,
    ) -> Result<(), ReadError> {
        let shown = if path.is_empty() { "/" } else { path };
        if depth > MAX_DEPTH {
            return Err(ReadError::TooLarge(format!(
                "directories nested deeper than {MAX_DEPTH} at '{shown}'"
            )));
        }
        let key = dir.extents.first().map_or(0, |e| e.start);
        if !ancestors.insert(key) {
            return Err(ReadError::DirectoryLoop(shown.to_string()));
        }
        budget.bytes = budget.bytes.checked_sub(dir.size()).ok_or_else(|| {
            ReadError::TooLarge(format!("more than {MAX_WALK_BYTES} bytes of directories"))
        })?;
        for entry in self.list(dir, shown)? {
            budget.entries = budget.entries.checked_sub(1).ok_or_else(|| {
                ReadError::TooLarge(format!("more than {MAX_WALK_ENTRIES} entries"))
            })?;
            let child = format!("{path}/{}", entry.name);
            if entry.symlink.is_some() {
                continue;
            }
            if entry.is_dir {
                self.walk(&entry, &child, depth + 1, ancestors, budget, files)?;
            } else {
                files.push((child, entry.size()));
            }
        }
        ancestors.remove(&key);
        Ok(())
    }

    /// Stream the data of `entry` into `out`, calling `progress` with the
    /// bytes copied so far.
    pub fn copy_to(
        &mut self,
        entry: &Entry,
        out: &mut dyn io::Write,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64, io::Error> {
        const CHUNK: usize = 1 << 20;
        let mut buf = vec![0u8; CHUNK];
        let mut done = 0u64;
        for extent in &entry.extents {
            self.source.seek(SeekFrom::Start(extent.start))?;
            let mut left = extent.len;
            while left > 0 {
                let n = left.min(CHUNK as u64) as usize;
                self.source.read_exact(&mut buf[..n])?;
                out.write_all(&buf[..n])?;
                left -= n as u64;
                done += n as u64;
                progress(done);
            }
        }
        Ok(done)
    }

    /// Read a whole (small) file into memory.
    pub fn read(&mut self, path: &str, limit: u64) -> Result<Vec<u8>, ReadError> {
        let entry = self.lookup(path)?;
        if entry.is_dir {
            return Err(ReadError::IsDirectory(path.to_string()));
        }
        if entry.size() > limit {
            return Err(ReadError::TooLarge(format!(
                "'{path}' is larger than {limit} bytes"
            )));
        }
        let mut out = Vec::new();
        self.copy_to(&entry, &mut out, &mut |_| {})
            .map_err(|source| ReadError::Io {
                path: self.origin.clone(),
                source,
            })?;
        Ok(out)
    }
}

struct WalkBudget {
    entries: usize,
    bytes: u64,
}

fn components(path: &str) -> impl DoubleEndedIterator<Item = &str> {
    path.split('/').filter(|p| !p.is_empty() && *p != ".")
}

fn first_record(data: &[u8]) -> Option<&[u8]> {
    let len = usize::from(*data.first()?);
    (len >= DR_NAME && len <= data.len()).then(|| &data[..len])
}

/// SUSP §5: the system use area follows the name and its padding byte.
fn system_use_area(record: &[u8]) -> &[u8] {
    let name_len = usize::from(record[DR_NAME_LEN]);
    let start = DR_NAME + name_len + usize::from(name_len.is_multiple_of(2));
    record.get(start..).unwrap_or(&[])
}

fn le32(data: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]])
}

fn read_exact_at<R: Read + Seek>(source: &mut R, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    source.seek(SeekFrom::Start(offset))?;
    source.read_exact(buf)
}

/// ECMA-119 §7.5: "NAME.EXT;1" → "NAME.EXT"; "NAME.;1" → "NAME".
fn plain_name(raw: &[u8]) -> String {
    let name = String::from_utf8_lossy(raw);
    let name = name.split(';').next().unwrap_or("");
    name.strip_suffix('.').unwrap_or(name).to_string()
}

/// Joliet §3: names are UCS-2 big endian, with the same ";1" version.
fn joliet_name(raw: &[u8]) -> String {
    let units: Vec<u16> = raw
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    let name = String::from_utf16_lossy(&units);
    let name = name.split(';').next().unwrap_or("");
    name.strip_suffix('.').unwrap_or(name).to_string()
}

#[cfg(test)]
#[path = "reader_tests.rs"]
mod tests;
