//! Reader tests on hand-built images (see `testimage`).

use super::*;

#[test]
fn plain_and_joliet_names_lose_their_version() {
    assert_eq!(plain_name(b"VMLINUZ.;1"), "VMLINUZ");
    assert_eq!(plain_name(b"INITRD.IMG;1"), "INITRD.IMG");
    assert_eq!(plain_name(b"ISOLINUX"), "ISOLINUX");
    let raw: Vec<u8> = "vmlinuz-lts;1"
        .encode_utf16()
        .flat_map(u16::to_be_bytes)
        .collect();
    assert_eq!(joliet_name(&raw), "vmlinuz-lts");
}

use super::super::testimage::{ROOT_LBA, image, record, write_dir};

fn open(data: Vec<u8>) -> IsoImage<io::Cursor<Vec<u8>>> {
    IsoImage::from_source(io::Cursor::new(data), Path::new("t.iso")).expect("opens")
}

#[test]
fn multi_extent_file_joins_its_pieces_in_order() {
    const S: usize = SECTOR_SIZE as usize;
    let mut data = image(
        48,
        "MULTI",
        &[
            record(b"BIG.BIN;1", 30, S as u32, FLAG_MULTI_EXTENT),
            record(b"BIG.BIN;1", 25, S as u32, FLAG_MULTI_EXTENT),
            record(b"BIG.BIN;1", 40, 100, 0),
            record(b"SMALL.TXT;1", 45, 3, 0),
        ],
    );
    data[30 * S..31 * S].fill(b'a');
    data[25 * S..26 * S].fill(b'b');
    data[40 * S..40 * S + 100].fill(b'c');
    data[45 * S..45 * S + 3].copy_from_slice(b"hey");
    let mut iso = open(data);
    assert_eq!(iso.label(), "MULTI");
    assert_eq!(iso.naming(), Naming::Plain);
    let big = iso.lookup("/big.bin").unwrap();
    assert_eq!(big.extents.len(), 3);
    let bytes = iso.read("/BIG.BIN", 1 << 20).unwrap();
    assert_eq!(bytes.len(), 2 * S + 100);
    assert!(bytes[..S].iter().all(|&b| b == b'a'));
    assert!(bytes[S..2 * S].iter().all(|&b| b == b'b'));
    assert!(bytes[2 * S..].iter().all(|&b| b == b'c'));
    assert_eq!(iso.read("/small.txt", 10).unwrap(), b"hey");
    let files = iso.walk_files().unwrap();
    assert_eq!(
        files,
        vec![
            ("/BIG.BIN".to_string(), 2 * S as u64 + 100),
            ("/SMALL.TXT".to_string(), 3)
        ]
    );
}

#[test]
fn unfinished_multi_extent_is_corrupt() {
    let data = image(24, "X", &[record(b"A;1", 20, 10, FLAG_MULTI_EXTENT)]);
    let err = open(data).walk_files().unwrap_err();
    assert!(matches!(err, ReadError::Corrupt(_)), "{err}");
}

#[test]
fn directory_loops_are_reported_not_followed() {
    const S: u32 = SECTOR_SIZE as u32;
    // /A is a directory at sector 20 whose child B points back at /A.
    let mut data = image(24, "LOOP", &[record(b"A", 20, S, FLAG_DIRECTORY)]);
    write_dir(
        &mut data,
        20,
        &[
            record(&[0], 20, S, 2),
            record(&[1], ROOT_LBA, S, 2),
            record(b"B", 20, S, FLAG_DIRECTORY),
        ],
    );
    let mut iso = open(data.clone());
    let err = iso.walk_files().unwrap_err();
    assert!(
        matches!(&err, ReadError::DirectoryLoop(p) if p == "/A/B"),
        "{err}"
    );
    // A lookup walks a bounded path, loop or not.
    assert!(iso.lookup("/A/B/B/B/B").unwrap().is_dir);
    let deep = "/A".to_string() + &"/B".repeat(100);
    assert!(matches!(iso.lookup(&deep), Err(ReadError::TooLarge(_))));
    // The root containing itself.
    let data = image(24, "LOOP", &[record(b"R", ROOT_LBA, S, FLAG_DIRECTORY)]);
    assert!(matches!(
        open(data).walk_files(),
        Err(ReadError::DirectoryLoop(_))
    ));
}

#[test]
fn absurd_extents_and_sizes_are_errors() {
    let data = image(24, "X", &[record(b"F;1", 0xFFFF_FFF0, 10, 0)]);
    let err = open(data).lookup("/F").unwrap_err();
    assert!(matches!(err, ReadError::BeyondImage { .. }), "{err}");
    let data = image(24, "X", &[record(b"F;1", 20, 0xFFFF_FFFF, 0)]);
    let err = open(data).walk_files().unwrap_err();
    assert!(err.to_string().contains("past the end"), "{err}");
    let data = image(24, "X", &[record(b"D", 20, 0xFFFF_0000, FLAG_DIRECTORY)]);
    assert!(open(data).walk_files().is_err());
}

#[test]
fn records_overflowing_their_directory_are_corrupt() {
    // /D holds 100 bytes: ".", "..", then a record claiming 255 bytes.
    let mut data = image(24, "X", &[record(b"D", 20, 100, FLAG_DIRECTORY)]);
    write_dir(
        &mut data,
        20,
        &[record(&[0], 20, 100, 2), record(&[1], ROOT_LBA, 2048, 2)],
    );
    data[20 * SECTOR_SIZE as usize + 68] = 255;
    let err = open(data).walk_files().unwrap_err();
    assert!(matches!(err, ReadError::Corrupt(_)), "{err}");
}

#[test]
fn empty_and_tiny_sources_are_not_iso() {
    for len in [0usize, 100, 32768, 34816] {
        let err = IsoImage::from_source(io::Cursor::new(vec![0u8; len]), Path::new("x.iso"))
            .err()
            .expect("must fail");
        assert!(matches!(err, ReadError::NotIso(_)), "{len}: {err}");
    }
}
