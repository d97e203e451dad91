//! A guest drives virtio-blk and virtio-rng through virtio-pci (modern) by
//! polling: it reads sectors of an image the test wrote, writes one the test
//! then finds in the file, and reads entropy.

mod common;

use std::fs;
use std::time::Duration;

use xhyve_manager::vmm::DiskConfig;

const TIMEOUT: Duration = Duration::from_secs(180);
const SECTOR: usize = 512;
const DISK_SECTORS: usize = 2048;
/// The sector the guest overwrites, with byte i = i * 13 + 7 (tests/guests/virtio.c).
const WRITE_SECTOR: usize = 1;

fn sector(image: &[u8], n: usize) -> &[u8] {
    &image[n * SECTOR..(n + 1) * SECTOR]
}

#[test]
fn virtio_blk_and_rng_work_from_a_polling_guest() {
    common::host_kind();
    let dir = common::temp_dir();
    let disk = dir.path().join("disk.img");
    let original = common::pattern_bytes(0xd15c, DISK_SECTORS * SECTOR);
    fs::write(&disk, &original).unwrap();

    let mut c = common::vm_config("virtio", "virtio");
    c.disks.push(DiskConfig {
        path: disk.clone(),
        read_only: false,
    });
    c.rng = true;
    let run = common::run_guest(c, TIMEOUT);
    run.assert_ok();
    let s = &run.serial;

    assert_ne!(run.value("VIRTIO_BLK"), "none", "{s}");
    assert_eq!(run.value("BLK_CAPACITY"), DISK_SECTORS.to_string(), "{s}");
    let last = DISK_SECTORS - 1;
    let want = [
        format!("0,{:#x}", common::fnv1a32(sector(&original, 0))),
        format!("{last},{:#x}", common::fnv1a32(sector(&original, last))),
    ];
    assert_eq!(
        run.values("BLK_SECTOR"),
        want,
        "sector checksums; serial:\n{s}"
    );
    assert_eq!(run.value("BLK_READBACK"), "ok", "{s}");
    assert_eq!(run.value("BLK_FLUSH"), "ok", "{s}");

    let written: Vec<u8> = (0..SECTOR).map(|i| (i * 13 + 7) as u8).collect();
    assert_eq!(
        run.value("BLK_WROTE"),
        format!("{WRITE_SECTOR},{:#x}", common::fnv1a32(&written))
    );
    let after = fs::read(&disk).unwrap();
    assert_eq!(after.len(), original.len(), "the image changed size");
    assert_eq!(
        sector(&after, WRITE_SECTOR),
        &written[..],
        "the written sector is not in the file"
    );
    assert_eq!(
        &after[..WRITE_SECTOR * SECTOR],
        &original[..WRITE_SECTOR * SECTOR]
    );
    assert_eq!(
        &after[(WRITE_SECTOR + 1) * SECTOR..],
        &original[(WRITE_SECTOR + 1) * SECTOR..]
    );

    assert_ne!(run.value("VIRTIO_RNG"), "none", "{s}");
    assert_eq!(run.value("RNG_BYTES"), "64", "{s}");
    assert_eq!(run.value("RNG_NONZERO"), "1", "{s}");
    assert!(s.contains("VIRTIO_DONE"), "{s}");
}

#[test]
fn read_only_disk_is_read_but_not_written() {
    let dir = common::temp_dir();
    let disk = dir.path().join("ro.img");
    let original = common::pattern_bytes(0x0bad, 64 * SECTOR);
    fs::write(&disk, &original).unwrap();

    let mut c = common::vm_config("virtio-ro", "virtio");
    c.disks.push(DiskConfig {
        path: disk.clone(),
        read_only: true,
    });
    let run = common::run_guest(c, TIMEOUT);
    run.assert_ok();
    assert_eq!(run.value("BLK_CAPACITY"), "64", "{}", run.serial);
    assert_eq!(run.value("BLK_WROTE"), "readonly", "{}", run.serial);
    assert_eq!(run.value("VIRTIO_RNG"), "none", "{}", run.serial);
    assert_eq!(
        fs::read(&disk).unwrap(),
        original,
        "a read-only image changed"
    );
}
