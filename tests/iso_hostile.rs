//! Hostile ISO images: truncated, with directory loops, absurd extents,
//! files larger than the image, and thousands of random mutations of a
//! real image. Each must end in a clear error, never a panic or a hang.

mod iso_support;

use std::io::Cursor;
use std::path::Path;

use iso_support::{Names, bytes, iso};
use xhyve_manager::manager::iso::reader::{IsoImage, ReadError, SECTOR_SIZE};
use xhyve_manager::manager::iso::{self, Error};

const KERNEL: &str = "/arch/boot/x86_64/vmlinuz-linux";
const INITRD: &str = "/arch/boot/x86_64/initramfs-linux.img";

/// A small Arch-layout ISO with Rock Ridge and Joliet, as bytes.
fn arch_image(dir: &Path) -> Vec<u8> {
    arch_image_named(dir, Names::RockRidgeJoliet)
}

fn arch_image_named(dir: &Path, names: Names) -> Vec<u8> {
    let files = [
        (KERNEL, bytes(1, 50_000)),
        (INITRD, bytes(2, 70_000)),
        ("/arch/boot/intel-ucode.img", bytes(3, 100)),
        ("/syslinux/syslinux.cfg", bytes(4, 100)),
        ("/EFI/BOOT/BOOTx64.EFI", bytes(5, 100)),
    ];
    let path = iso(
        dir,
        &format!("arch-{names:?}"),
        "ARCH_202401",
        names,
        &files,
    );
    std::fs::read(path).unwrap()
}

fn open(data: Vec<u8>) -> Result<IsoImage<Cursor<Vec<u8>>>, ReadError> {
    IsoImage::from_source(Cursor::new(data), Path::new("hostile.iso"))
}

fn detect(data: Vec<u8>) -> Result<iso::IsoBoot, Error> {
    let mut image = open(data).map_err(|source| Error::Read {
        iso: "hostile.iso".into(),
        source,
    })?;
    iso::detect(&mut image, Path::new("hostile.iso"))
}

/// The ISO 9660 record cause of `err`, whatever wraps it.
fn read_error(err: &Error) -> &ReadError {
    match err {
        Error::Read { source, .. } => source,
        other => panic!("expected a read error, got {other:?}"),
    }
}

/// Rewrite every directory record that points at (`lba`, `len`) — one per
/// tree (ISO 9660 and Joliet) — to point at (`new_lba`, `new_len`).
fn patch_records(data: &mut [u8], lba: u32, len: u32, new_lba: u32, new_len: u32) -> usize {
    let mut pattern = Vec::new();
    pattern.extend_from_slice(&lba.to_le_bytes());
    pattern.extend_from_slice(&lba.to_be_bytes());
    pattern.extend_from_slice(&len.to_le_bytes());
    pattern.extend_from_slice(&len.to_be_bytes());
    let mut replacement = Vec::new();
    replacement.extend_from_slice(&new_lba.to_le_bytes());
    replacement.extend_from_slice(&new_lba.to_be_bytes());
    replacement.extend_from_slice(&new_len.to_le_bytes());
    replacement.extend_from_slice(&new_len.to_be_bytes());
    let mut count = 0;
    let mut at = 0;
    while let Some(pos) = data[at..]
        .windows(pattern.len())
        .position(|w| w == pattern.as_slice())
    {
        let start = at + pos;
        data[start..start + pattern.len()].copy_from_slice(&replacement);
        count += 1;
        at = start + pattern.len();
    }
    count
}

fn location(data: &[u8], path: &str) -> (u32, u32) {
    let mut image = open(data.to_vec()).unwrap();
    let entry = image.lookup(path).unwrap();
    let extent = entry.extents[0];
    ((extent.start / SECTOR_SIZE) as u32, extent.len as u32)
}

#[test]
fn the_unmodified_image_is_fine() {
    let dir = tempfile::tempdir().unwrap();
    let boot = detect(arch_image(dir.path())).unwrap();
    assert_eq!(boot.kernel, KERNEL);
}

#[test]
fn truncated_images_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let data = arch_image(dir.path());
    let (kernel_lba, _) = location(&data, KERNEL);
    let cut_in_kernel = kernel_lba as usize * SECTOR_SIZE as usize + 100;
    let err = detect(data[..cut_in_kernel].to_vec()).unwrap_err();
    let message = format!("{}", read_error(&err));
    assert!(message.contains("past the end"), "{message}");
    for len in [0, 1000, 16 * 2048, 17 * 2048 - 1] {
        let err = detect(data[..len].to_vec()).unwrap_err();
        assert!(
            matches!(read_error(&err), ReadError::NotIso(_)),
            "{len}: {err}"
        );
    }
    let (initrd_lba, initrd_len) = location(&data, INITRD);
    let initrd_end = initrd_lba as usize * SECTOR_SIZE as usize + initrd_len as usize;
    for len in [17 * 2048, 19 * 2048, initrd_end - 1] {
        assert!(
            detect(data[..len].to_vec()).is_err(),
            "truncated to {len} bytes"
        );
    }
}

#[test]
fn a_file_larger_than_the_image_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut data = arch_image(dir.path());
    let (lba, len) = location(&data, KERNEL);
    assert!(patch_records(&mut data, lba, len, lba, u32::MAX - 1) >= 1);
    let err = detect(data).unwrap_err();
    match read_error(&err) {
        ReadError::BeyondImage { path, size, .. } => {
            assert_eq!(path, "/arch/boot/x86_64", "the directory holding the file");
            assert_eq!(*size, u64::from(u32::MAX - 1));
        }
        other => panic!("expected BeyondImage, got {other:?}"),
    }
}

#[test]
fn an_absurd_extent_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut data = arch_image(dir.path());
    let (lba, len) = location(&data, INITRD);
    assert!(patch_records(&mut data, lba, len, 0xFFFF_FF00, len) >= 1);
    let err = detect(data).unwrap_err();
    assert!(
        matches!(read_error(&err), ReadError::BeyondImage { .. }),
        "{err}"
    );
}

#[test]
fn a_directory_pointing_at_the_root_is_a_loop() {
    let dir = tempfile::tempdir().unwrap();
    let mut data = arch_image(dir.path());
    let (root_lba, root_len) = location(&data, "/");
    let (lba, len) = location(&data, "/arch/boot/x86_64");
    assert!(patch_records(&mut data, lba, len, root_lba, root_len) >= 1);
    // The kernel is gone, so detection walks the tree and meets the loop.
    let err = detect(data).unwrap_err();
    assert!(
        matches!(read_error(&err), ReadError::DirectoryLoop(p) if p == "/arch/boot/x86_64"),
        "{err}"
    );
}

/// xorshift64: fixed seed, so every run mutates the same way.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Everything a caller may do with an image; errors are fine, panics not.
fn exercise(data: Vec<u8>) -> usize {
    let Ok(mut image) = open(data) else { return 0 };
    let mut ok = 0;
    if iso::detect(&mut image, Path::new("fuzz.iso")).is_ok() {
        ok += 1;
    }
    if image.walk_files().is_ok() {
        ok += 1;
    }
    for path in [KERNEL, INITRD, "/syslinux/syslinux.cfg", "/EFI/BOOT"] {
        if image.read(path, 1 << 20).is_ok() {
            ok += 1;
        }
    }
    ok
}

/// Mutate `original` `iterations` times from `seed` and exercise each result.
fn fuzz(original: &[u8], seed: u64, iterations: usize) -> usize {
    let mut image = open(original.to_vec()).unwrap();
    let first_data = image
        .walk_files()
        .unwrap()
        .iter()
        .map(|(path, _)| image.lookup(path).unwrap().extents[0].start as usize)
        .min()
        .unwrap();
    // Metadata (descriptors, path tables, directories, continuation
    // areas) lies before the first file's data; most mutations go there.
    let metadata = 16 * SECTOR_SIZE as usize..first_data;
    let mut rng = Rng(seed);
    let mut survived = 0;
    for _ in 0..iterations {
        let mut data = original.to_vec();
        for _ in 0..1 + rng.below(12) {
            let at = if rng.below(10) < 9 {
                metadata.start + rng.below(metadata.len())
            } else {
                rng.below(data.len())
            };
            data[at] = match rng.below(4) {
                0 => 0,
                1 => 0xFF,
                2 => data[at] ^ (1 << rng.below(8)),
                _ => rng.next() as u8,
            };
        }
        if rng.below(20) == 0 {
            let len = rng.below(data.len());
            data.truncate(len);
        }
        survived += exercise(data);
    }
    survived
}

#[test]
fn random_mutations_never_panic() {
    const ITERATIONS: usize = 5000;
    let dir = tempfile::tempdir().unwrap();
    let survived = fuzz(&arch_image(dir.path()), 0x5EED_1234_ABCD_0001, ITERATIONS);
    // The mutations are not all fatal: many images still read.
    assert!(
        survived > ITERATIONS,
        "only {survived} successful operations"
    );
}

#[test]
fn random_mutations_of_joliet_and_plain_images_never_panic() {
    const ITERATIONS: usize = 1500;
    let dir = tempfile::tempdir().unwrap();
    for (seed, names) in [(7, Names::Joliet), (8, Names::Plain)] {
        let image = arch_image_named(dir.path(), names);
        let survived = fuzz(&image, seed, ITERATIONS);
        assert!(
            survived > ITERATIONS / 2,
            "{names:?}: only {survived} successful operations"
        );
    }
}
