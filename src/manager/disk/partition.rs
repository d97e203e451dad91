//! MBR and GPT partition tables, read defensively: every partition must
//! lie inside the disk, GPT checksums must match, and the extended-MBR
//! chain is bounded.
//!
//! Spec: UEFI 2.10 §5.2 (legacy MBR) and §5.3 (GPT header and entries).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// MBR: boot signature at bytes 510..512 of sector 0 (UEFI §5.2.1).
const MBR_SIGNATURE: [u8; 2] = [0x55, 0xAA];
const MBR_SIGNATURE_OFFSET: usize = 510;
const MBR_ENTRIES_OFFSET: usize = 446;
const MBR_ENTRY_LEN: usize = 16;
const MBR_PRIMARY_ENTRIES: usize = 4;
const MBR_TYPE: usize = 4;
const MBR_START_LBA: usize = 8;
const MBR_SECTORS: usize = 12;
/// Partition types: GPT protective, and the three extended-partition kinds.
const MBR_TYPE_EMPTY: u8 = 0x00;
const MBR_TYPE_GPT_PROTECTIVE: u8 = 0xEE;
const MBR_TYPES_EXTENDED: [u8; 3] = [0x05, 0x0F, 0x85];
/// Logical partitions number from 5 like Linux's /dev/sda5.
const FIRST_LOGICAL: u32 = 5;
const MAX_LOGICAL: usize = 128;
/// MBR tables address 512-byte sectors.
const MBR_SECTOR: u64 = 512;

/// GPT header (UEFI §5.3.2), at LBA 1 of the disk's logical block size.
const GPT_SIGNATURE: &[u8; 8] = b"EFI PART";
const GPT_SECTOR_SIZES: [u64; 2] = [512, 4096];
const GPT_MIN_HEADER: usize = 92;
const GPT_HEADER_SIZE: usize = 12;
const GPT_HEADER_CRC: usize = 16;
const GPT_ENTRIES_LBA: usize = 72;
const GPT_ENTRY_COUNT: usize = 80;
const GPT_ENTRY_SIZE: usize = 84;
const GPT_ENTRIES_CRC: usize = 88;
/// GPT partition entry fields (UEFI §5.3.3).
const GPT_ENTRY_MIN: u32 = 128;
const GPT_ENTRY_FIRST_LBA: usize = 32;
const GPT_ENTRY_LAST_LBA: usize = 40;
const GPT_ENTRY_NAME: usize = 56;
const GPT_ENTRY_NAME_END: usize = 128;
/// Refuse entry arrays larger than this (the usual one is 16 KiB).
const GPT_MAX_ENTRY_BYTES: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the partition table")]
    Io(#[source] io::Error),
    #[error("corrupt partition table: {0}")]
    Corrupt(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableKind {
    Mbr,
    Gpt,
}

/// One partition, located in bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    /// 1-based number, as Linux numbers them (logical MBR ones from 5).
    pub number: u32,
    pub start: u64,
    pub size: u64,
    /// MBR type byte as hex ("83"), or the GPT type GUID.
    pub kind: String,
    /// GPT partition name (empty for MBR).
    pub name: String,
}

/// The partition table of a `disk_len`-byte disk, or `None` when sector 0
/// carries no MBR signature.
pub fn read(file: &File, disk_len: u64) -> Result<Option<(TableKind, Vec<Partition>)>, Error> {
    let mut mbr = [0u8; MBR_SECTOR as usize];
    if disk_len < MBR_SECTOR {
        return Ok(None);
    }
    file.read_exact_at(&mut mbr, 0).map_err(Error::Io)?;
    if mbr[MBR_SIGNATURE_OFFSET..MBR_SIGNATURE_OFFSET + 2] != MBR_SIGNATURE {
        return Ok(None);
    }
    let entries = mbr_entries(&mbr);
    if entries.iter().any(|e| e.kind == MBR_TYPE_GPT_PROTECTIVE) {
        return read_gpt(file, disk_len).map(|parts| Some((TableKind::Gpt, parts)));
    }
    let mut parts = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        if entry.kind == MBR_TYPE_EMPTY || entry.sectors == 0 {
            continue;
        }
        let part = locate(i as u32 + 1, entry, 0, disk_len)?;
        if MBR_TYPES_EXTENDED.contains(&entry.kind) {
            read_logical(file, disk_len, &part, &mut parts)?;
        } else {
            parts.push(part);
        }
    }
    Ok(Some((TableKind::Mbr, parts)))
}

struct MbrEntry {
    kind: u8,
    start_lba: u64,
    sectors: u64,
}

fn mbr_entries(sector: &[u8]) -> Vec<MbrEntry> {
    (0..MBR_PRIMARY_ENTRIES)
        .map(|i| {
            let e = &sector[MBR_ENTRIES_OFFSET + i * MBR_ENTRY_LEN..][..MBR_ENTRY_LEN];
            MbrEntry {
                kind: e[MBR_TYPE],
                start_lba: u64::from(le32(e, MBR_START_LBA)),
                sectors: u64::from(le32(e, MBR_SECTORS)),
            }
        })
        .collect()
}

fn locate(number: u32, entry: &MbrEntry, base_lba: u64, disk_len: u64) -> Result<Partition, Error> {
    let start = (base_lba + entry.start_lba) * MBR_SECTOR;
    let size = entry.sectors * MBR_SECTOR;
    check_inside(number, start, size, disk_len)?;
    Ok(Partition {
        number,
        start,
        size,
        kind: format!("{:02x}", entry.kind),
        name: String::new(),
    })
}

fn check_inside(number: u32, start: u64, size: u64, disk_len: u64) -> Result<(), Error> {
    if start.checked_add(size).is_none_or(|end| end > disk_len) {
        return Err(Error::Corrupt(format!(
            "partition {number} ({size} bytes at byte {start}) extends past the end of the {disk_len}-byte disk"
        )));
    }
    Ok(())
}

/// UEFI §5.2.1 / the classic EBR chain: each extended boot record holds a
/// logical partition (relative to itself) and a link to the next record
/// (relative to the extended partition).
fn read_logical(
    file: &File,
    disk_len: u64,
    extended: &Partition,
    parts: &mut Vec<Partition>,
) -> Result<(), Error> {
    let ext_lba = extended.start / MBR_SECTOR;
    let mut ebr_lba = ext_lba;
    let mut number = FIRST_LOGICAL;
    for _ in 0..MAX_LOGICAL {
        let mut sector = [0u8; MBR_SECTOR as usize];
        file.read_exact_at(&mut sector, ebr_lba * MBR_SECTOR)
            .map_err(Error::Io)?;
        if sector[MBR_SIGNATURE_OFFSET..MBR_SIGNATURE_OFFSET + 2] != MBR_SIGNATURE {
            return Err(Error::Corrupt(format!(
                "extended boot record at sector {ebr_lba} has no signature"
            )));
        }
        let entries = mbr_entries(&sector);
        if entries[0].kind != MBR_TYPE_EMPTY && entries[0].sectors != 0 {
            parts.push(locate(number, &entries[0], ebr_lba, disk_len)?);
            number += 1;
        }
        let link = &entries[1];
        if link.kind == MBR_TYPE_EMPTY || link.sectors == 0 {
            return Ok(());
        }
        let next = ext_lba + link.start_lba;
        if next <= ebr_lba || next * MBR_SECTOR >= extended.start + extended.size {
            return Err(Error::Corrupt(format!(
                "extended boot record chain loops or leaves its partition at sector {next}"
            )));
        }
        ebr_lba = next;
    }
    Err(Error::Corrupt(format!(
        "more than {MAX_LOGICAL} logical partitions"
    )))
}

fn read_gpt(file: &File, disk_len: u64) -> Result<Vec<Partition>, Error> {
    for sector_size in GPT_SECTOR_SIZES {
        if disk_len < 2 * sector_size {
            continue;
        }
        let mut header = vec![0u8; sector_size as usize];
        file.read_exact_at(&mut header, sector_size)
            .map_err(Error::Io)?;
        if &header[..8] == GPT_SIGNATURE {
            return read_gpt_entries(file, disk_len, sector_size, &header);
        }
    }
    Err(Error::Corrupt(
        "protective MBR but no GPT header ('EFI PART') at LBA 1".into(),
    ))
}

fn read_gpt_entries(
    file: &File,
    disk_len: u64,
    sector_size: u64,
    header: &[u8],
) -> Result<Vec<Partition>, Error> {
    let header_size = le32(header, GPT_HEADER_SIZE) as usize;
    if !(GPT_MIN_HEADER..=header.len()).contains(&header_size) {
        return Err(Error::Corrupt(format!("GPT header size {header_size}")));
    }
    let mut copy = header[..header_size].to_vec();
    copy[GPT_HEADER_CRC..GPT_HEADER_CRC + 4].fill(0);
    if crc32(&copy) != le32(header, GPT_HEADER_CRC) {
        return Err(Error::Corrupt("GPT header checksum mismatch".into()));
    }
    let entries_lba = le64(header, GPT_ENTRIES_LBA);
    let count = le32(header, GPT_ENTRY_COUNT);
    let entry_size = le32(header, GPT_ENTRY_SIZE);
    if entry_size < GPT_ENTRY_MIN || !entry_size.is_power_of_two() {
        return Err(Error::Corrupt(format!("GPT entry size {entry_size}")));
    }
    let bytes = u64::from(count) * u64::from(entry_size);
    let start = entries_lba.checked_mul(sector_size);
    if bytes > GPT_MAX_ENTRY_BYTES
        || start.is_none_or(|s| s.checked_add(bytes).is_none_or(|e| e > disk_len))
    {
        return Err(Error::Corrupt(format!(
            "GPT entry array of {count} x {entry_size} bytes at LBA {entries_lba}"
        )));
    }
    let mut array = vec![0u8; bytes as usize];
    file.read_exact_at(&mut array, entries_lba * sector_size)
        .map_err(Error::Io)?;
    if crc32(&array) != le32(header, GPT_ENTRIES_CRC) {
        return Err(Error::Corrupt(
            "GPT partition entry array checksum mismatch".into(),
        ));
    }
    let mut parts = Vec::new();
    for (i, entry) in array.chunks_exact(entry_size as usize).enumerate() {
        let type_guid = &entry[..16];
        if type_guid.iter().all(|&b| b == 0) {
            continue;
        }
        let number = i as u32 + 1;
        let first = le64(entry, GPT_ENTRY_FIRST_LBA);
        let last = le64(entry, GPT_ENTRY_LAST_LBA);
        if last < first {
            return Err(Error::Corrupt(format!(
                "GPT partition {number} ends before it starts"
            )));
        }
        let start = first.checked_mul(sector_size);
        let size = (last - first + 1).checked_mul(sector_size);
        let (Some(start), Some(size)) = (start, size) else {
            return Err(Error::Corrupt(format!(
                "GPT partition {number} is out of range"
            )));
        };
        check_inside(number, start, size, disk_len)?;
        let name: Vec<u16> = entry[GPT_ENTRY_NAME..GPT_ENTRY_NAME_END]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&u| u != 0)
            .collect();
        parts.push(Partition {
            number,
            start,
            size,
            kind: guid_string(type_guid),
            name: String::from_utf16_lossy(&name),
        });
    }
    Ok(parts)
}

/// UEFI Appendix A: the first three GUID fields are little endian.
fn guid_string(g: &[u8]) -> String {
    format!(
        "{:08X}-{:04X}-{:04X}-{:02X}{:02X}-{}",
        le32(g, 0),
        u16::from_le_bytes([g[4], g[5]]),
        u16::from_le_bytes([g[6], g[7]]),
        g[8],
        g[9],
        g[10..16]
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<String>()
    )
}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320) as GPT uses it.
fn crc32(data: &[u8]) -> u32 {
    const POLY: u32 = 0xEDB8_8320;
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ POLY
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn le32(d: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]])
}

fn le64(d: &[u8], at: usize) -> u64 {
    u64::from(le32(d, at)) | (u64::from(le32(d, at + 4)) << 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn guid_mixed_endian_formatting() {
        // Linux filesystem data, as stored on disk.
        let raw = [
            0xAF, 0x3D, 0xC6, 0x0F, 0x83, 0x84, 0x72, 0x47, 0x8E, 0x79, 0x3D, 0x69, 0xD8, 0x47,
            0x7D, 0xE4,
        ];
        assert_eq!(guid_string(&raw), "0FC63DAF-8483-4772-8E79-3D69D8477DE4");
    }

    fn disk_with_mbr(entries: &[(u8, u32, u32)], len: u64) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut mbr = [0u8; 512];
        for (i, &(kind, start, sectors)) in entries.iter().enumerate() {
            let e = &mut mbr[MBR_ENTRIES_OFFSET + i * MBR_ENTRY_LEN..][..MBR_ENTRY_LEN];
            e[MBR_TYPE] = kind;
            e[MBR_START_LBA..MBR_START_LBA + 4].copy_from_slice(&start.to_le_bytes());
            e[MBR_SECTORS..MBR_SECTORS + 4].copy_from_slice(&sectors.to_le_bytes());
        }
        mbr[510] = 0x55;
        mbr[511] = 0xAA;
        file.as_file().set_len(len).unwrap();
        file.as_file().write_all_at(&mbr, 0).unwrap();
        file
    }

    #[test]
    fn mbr_primary_partitions_in_bytes() {
        let disk = disk_with_mbr(&[(0x83, 2048, 100), (0, 0, 0), (0x82, 4096, 8)], 8 << 20);
        let (kind, parts) = read(disk.as_file(), 8 << 20).unwrap().unwrap();
        assert_eq!(kind, TableKind::Mbr);
        assert_eq!(parts.len(), 2);
        assert_eq!(
            (parts[0].number, parts[0].start, parts[0].size),
            (1, 1 << 20, 51200)
        );
        assert_eq!((parts[1].number, parts[1].kind.as_str()), (3, "82"));
    }

    #[test]
    fn mbr_partition_past_the_end_is_an_error() {
        let disk = disk_with_mbr(&[(0x83, 2048, u32::MAX)], 8 << 20);
        let err = read(disk.as_file(), 8 << 20).unwrap_err();
        assert!(err.to_string().contains("past the end"), "{err}");
    }

    #[test]
    fn self_linking_extended_chain_is_an_error() {
        let disk = disk_with_mbr(&[(0x05, 2048, 8192)], 8 << 20);
        // EBR at sector 2048 whose "next" link points back at itself.
        let mut ebr = [0u8; 512];
        let link = &mut ebr[MBR_ENTRIES_OFFSET + MBR_ENTRY_LEN..][..MBR_ENTRY_LEN];
        link[MBR_TYPE] = 0x05;
        link[MBR_START_LBA..MBR_START_LBA + 4].copy_from_slice(&0u32.to_le_bytes());
        link[MBR_SECTORS..MBR_SECTORS + 4].copy_from_slice(&16u32.to_le_bytes());
        ebr[510] = 0x55;
        ebr[511] = 0xAA;
        disk.as_file().write_all_at(&ebr, 2048 * 512).unwrap();
        let err = read(disk.as_file(), 8 << 20).unwrap_err();
        assert!(err.to_string().contains("loops"), "{err}");
    }

    #[test]
    fn no_signature_means_no_table() {
        let file = tempfile::tempfile().unwrap();
        file.set_len(4096).unwrap();
        assert!(read(&file, 4096).unwrap().is_none());
    }
}
