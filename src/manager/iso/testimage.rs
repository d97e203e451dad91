//! Hand-built ISO 9660 images for tests that need layouts xorriso will not
//! produce: small multi-extent files, directory loops, absurd extents.

use super::reader::SECTOR_SIZE;

const SECTOR: usize = SECTOR_SIZE as usize;
pub const ROOT_LBA: u32 = 18;

/// A directory record (ECMA-119 §9.1) with both-endian fields.
pub fn record(name: &[u8], lba: u32, len: u32, flags: u8) -> Vec<u8> {
    let mut r = vec![0u8; 33 + name.len() + usize::from(name.len().is_multiple_of(2))];
    r[0] = r.len() as u8;
    r[2..6].copy_from_slice(&lba.to_le_bytes());
    r[6..10].copy_from_slice(&lba.to_be_bytes());
    r[10..14].copy_from_slice(&len.to_le_bytes());
    r[14..18].copy_from_slice(&len.to_be_bytes());
    r[25] = flags;
    r[28] = 1; // volume sequence number (both-endian 1)
    r[31] = 1;
    r[32] = name.len() as u8;
    r[33..33 + name.len()].copy_from_slice(name);
    r
}

/// An image of `sectors` sectors whose root directory (at `ROOT_LBA`, one
/// sector) holds `root_records` after "." and "..".
pub fn image(sectors: usize, label: &str, root_records: &[Vec<u8>]) -> Vec<u8> {
    let mut data = vec![0u8; sectors * SECTOR];
    let pvd = &mut data[16 * SECTOR..17 * SECTOR];
    pvd[0] = 1;
    pvd[1..6].copy_from_slice(b"CD001");
    pvd[6] = 1;
    pvd[40..72].fill(b' ');
    pvd[40..40 + label.len()].copy_from_slice(label.as_bytes());
    pvd[128..130].copy_from_slice(&(SECTOR as u16).to_le_bytes());
    pvd[130..132].copy_from_slice(&(SECTOR as u16).to_be_bytes());
    let root = record(&[0], ROOT_LBA, SECTOR as u32, 2);
    pvd[156..156 + 34].copy_from_slice(&root[..34]);
    let term = &mut data[17 * SECTOR..18 * SECTOR];
    term[0] = 255;
    term[1..6].copy_from_slice(b"CD001");
    let mut records = vec![
        record(&[0], ROOT_LBA, SECTOR as u32, 2),
        record(&[1], ROOT_LBA, SECTOR as u32, 2),
    ];
    records.extend_from_slice(root_records);
    write_dir(&mut data, ROOT_LBA, &records);
    data
}

/// Write directory records into sector `lba`.
pub fn write_dir(data: &mut [u8], lba: u32, records: &[Vec<u8>]) {
    let mut at = lba as usize * SECTOR;
    for r in records {
        data[at..at + r.len()].copy_from_slice(r);
        at += r.len();
    }
}
