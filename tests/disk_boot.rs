//! `kernel = disk:auto`: the newest kernel installed on a fixture disk
//! (whole-disk filesystem, MBR with logical partitions, GPT with a
//! separate /boot), its initrd, and `root=UUID=` of the root filesystem.

mod disk_support;

use std::path::Path;

use disk_support::{bytes, filesystem, junk, partitioned, place};
use xhyve_manager::manager::disk::{self, DiskBoot, Error};

const ROOT_UUID: &str = "0b8e5b3c-1f4e-4f6e-9c1a-2d3e4f5a6b7c";
const BOOT_UUID: &str = "7d1c2b3a-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
/// 16 MiB filesystems in 16 MiB partitions.
const FS_MIB: u64 = 16;
const PART_SECTORS: u64 = FS_MIB << 11;

/// Debian's /boot: three kernels, numbered so that mtime order, text order
/// and version order all differ; the newest by version is 6.1.0-10.
/// Files to put in a filesystem: (path, contents).
type Files = Vec<(&'static str, Vec<u8>)>;

fn debian_root() -> (Files, Vec<u8>, Vec<u8>) {
    let newest_kernel = bytes(10, 300_000);
    let newest_initrd = bytes(11, 700_000);
    let files = vec![
        ("/etc/fstab", b"UUID=... / ext4 defaults 0 1\n".to_vec()),
        ("/boot/vmlinuz-6.1.0-9-amd64", bytes(9, 290_000)),
        ("/boot/initrd.img-6.1.0-9-amd64", bytes(19, 600_000)),
        ("/boot/vmlinuz-6.1.0-10-amd64", newest_kernel.clone()),
        ("/boot/initrd.img-6.1.0-10-amd64", newest_initrd.clone()),
        ("/boot/vmlinuz-5.10.0-28-amd64", bytes(5, 280_000)),
        ("/boot/initrd.img-5.10.0-28-amd64", bytes(15, 500_000)),
        ("/boot/config-6.1.0-10-amd64", b"CONFIG_X=y\n".to_vec()),
        ("/usr/bin/true", bytes(1, 100)),
    ];
    (files, newest_kernel, newest_initrd)
}

/// Debian also keeps /vmlinuz symlinks at the root; they are not kernels
/// to pick, and neither is a symlink with a tempting version in /boot.
const DEBIAN_LINKS: &[(&str, &str)] = &[
    ("/vmlinuz", "boot/vmlinuz-6.1.0-10-amd64"),
    ("/initrd.img", "boot/initrd.img-6.1.0-10-amd64"),
    ("/boot/vmlinuz-99-link", "vmlinuz-6.1.0-9-amd64"),
];

fn assert_boot(boot: &DiskBoot, dest: &Path, kernel: &[u8], initrd: Option<&[u8]>, uuid: &str) {
    assert_eq!(boot.kernel, dest.join(disk::BOOT_KERNEL_NAME));
    assert_eq!(std::fs::read(&boot.kernel).unwrap(), kernel);
    match initrd {
        Some(initrd) => assert_eq!(
            std::fs::read(boot.initrd.as_ref().unwrap()).unwrap(),
            initrd
        ),
        None => assert_eq!(boot.initrd, None),
    }
    assert_eq!(boot.root_arg, format!("root=UUID={uuid}"));
}

#[test]
fn whole_disk_ext4_newest_version_wins() {
    let dir = tempfile::tempdir().unwrap();
    let (files, kernel, initrd) = debian_root();
    let disk = filesystem(
        dir.path(),
        "root",
        "ext4",
        FS_MIB,
        ROOT_UUID,
        &files,
        DEBIAN_LINKS,
    );
    let found = disk::find_disk_kernel(&disk).unwrap();
    assert_eq!(found.kernel, "/boot/vmlinuz-6.1.0-10-amd64");
    assert_eq!(
        found.initrd.as_deref(),
        Some("/boot/initrd.img-6.1.0-10-amd64")
    );
    assert_eq!(found.version, "6.1.0-10-amd64");
    assert_eq!(found.volume, "whole disk");
    let dest = dir.path().join("vm/.boot");
    let boot = disk::resolve_disk_boot(&disk, &dest).unwrap();
    assert_boot(&boot, &dest, &kernel, Some(&initrd), ROOT_UUID);
    // Resolving again (as every `start` does) replaces the copies cleanly.
    let again = disk::resolve_disk_boot(&disk, &dest).unwrap();
    assert_eq!(again, boot);
    assert_eq!(std::fs::read_dir(&dest).unwrap().count(), 2);
}

#[test]
fn mbr_logical_partition_holds_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let (files, kernel, initrd) = debian_root();
    let fs = filesystem(
        dir.path(),
        "root",
        "ext4",
        FS_MIB,
        ROOT_UUID,
        &files,
        DEBIAN_LINKS,
    );
    let disk = dir.path().join("mbr.img");
    // p1 swap (junk), p2 extended holding p5 (root).
    let script = format!(
        "label: dos\nstart=2048, size={PART_SECTORS}, type=82\nstart={}, size={}, type=5\nstart={}, size={PART_SECTORS}, type=83\n",
        2048 + PART_SECTORS,
        PART_SECTORS + 4096,
        2048 + PART_SECTORS + 2048
    );
    partitioned(&disk, 64, &script);
    junk(&disk, 2048, 1 << 20, 3);
    place(&disk, 2048 + PART_SECTORS + 2048, &fs);
    let found = disk::find_disk_kernel(&disk).unwrap();
    assert_eq!(
        (found.volume.as_str(), found.root_source.as_str()),
        ("partition 5", "partition 5")
    );
    let dest = dir.path().join("out");
    let boot = disk::resolve_disk_boot(&disk, &dest).unwrap();
    assert_boot(&boot, &dest, &kernel, Some(&initrd), ROOT_UUID);
}

#[test]
fn gpt_with_a_separate_boot_partition() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = bytes(41, 400_000);
    let initrd = bytes(42, 900_000);
    // Fedora names: 6.5.12 is newer than 6.5.6 (not by text order), and
    // the rescue kernel ("0-rescue-...") is the oldest.
    let boot_files = vec![
        ("/vmlinuz-6.5.6-300.fc39.x86_64", bytes(39, 100)),
        ("/initramfs-6.5.6-300.fc39.x86_64.img", bytes(40, 100)),
        ("/vmlinuz-6.5.12-300.fc39.x86_64", kernel.clone()),
        ("/initramfs-6.5.12-300.fc39.x86_64.img", initrd.clone()),
        ("/vmlinuz-0-rescue-4f3c2b1a", bytes(43, 100)),
        ("/initramfs-0-rescue-4f3c2b1a.img", bytes(44, 100)),
        ("/loader/entries/x.conf", b"title Fedora\n".to_vec()),
    ];
    let boot_fs = filesystem(
        dir.path(),
        "boot",
        "ext4",
        FS_MIB,
        BOOT_UUID,
        &boot_files,
        &[],
    );
    let root_files = vec![("/etc/fstab", b"/\n".to_vec()), ("/boot/.keep", Vec::new())];
    let root_fs = filesystem(
        dir.path(),
        "root",
        "ext4",
        FS_MIB,
        ROOT_UUID,
        &root_files,
        &[],
    );
    let disk = dir.path().join("gpt.img");
    let p2 = 2048 + 2048;
    let p3 = p2 + PART_SECTORS;
    let script = format!(
        "label: gpt\n\
         start=2048, size=2048, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=EFI\n\
         start={p2}, size={PART_SECTORS}, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=boot\n\
         start={p3}, size={PART_SECTORS}, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=root\n"
    );
    partitioned(&disk, 64, &script);
    junk(&disk, 2048, 2048 * 512, 4);
    place(&disk, p2, &boot_fs);
    place(&disk, p3, &root_fs);
    let found = disk::find_disk_kernel(&disk).unwrap();
    assert_eq!(found.kernel, "/vmlinuz-6.5.12-300.fc39.x86_64");
    assert_eq!(
        found.initrd.as_deref(),
        Some("/initramfs-6.5.12-300.fc39.x86_64.img")
    );
    assert_eq!(
        (found.volume.as_str(), found.root_source.as_str()),
        ("partition 2", "partition 3")
    );
    assert_eq!(found.root_arg, format!("root=UUID={ROOT_UUID}"));
    let dest = dir.path().join("out");
    let boot = disk::resolve_disk_boot(&disk, &dest).unwrap();
    assert_boot(&boot, &dest, &kernel, Some(&initrd), ROOT_UUID);
    // The table as `disk info` reads it.
    let file = std::fs::File::open(&disk).unwrap();
    let (kind, parts) = disk::partition::read(&file, 64 << 20).unwrap().unwrap();
    assert_eq!(kind, disk::partition::TableKind::Gpt);
    let names: Vec<_> = parts
        .iter()
        .map(|p| (p.number, p.name.as_str(), p.start))
        .collect();
    assert_eq!(
        names,
        [
            (1, "EFI", 2048 * 512),
            (2, "boot", p2 * 512),
            (3, "root", p3 * 512)
        ]
    );
    assert_eq!(parts[1].kind, "0FC63DAF-8483-4772-8E79-3D69D8477DE4");
}

#[test]
fn ext2_with_arch_names_and_no_initrd_case() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = bytes(50, 123_456);
    let initrd = bytes(51, 654_321);
    let files = vec![
        ("/etc/os-release", b"ID=arch\n".to_vec()),
        ("/boot/vmlinuz-linux", kernel.clone()),
        ("/boot/initramfs-linux.img", initrd.clone()),
        ("/boot/initramfs-linux-fallback.img", bytes(52, 100)),
    ];
    let disk = filesystem(dir.path(), "arch", "ext2", FS_MIB, ROOT_UUID, &files, &[]);
    let dest = dir.path().join("out");
    let boot = disk::resolve_disk_boot(&disk, &dest).unwrap();
    assert_boot(&boot, &dest, &kernel, Some(&initrd), ROOT_UUID);

    // A kernel without initrd: none is reported and the stale copy goes.
    let files = vec![
        ("/etc/hostname", b"x\n".to_vec()),
        ("/boot/vmlinuz-6.6.0", kernel.clone()),
    ];
    let disk = filesystem(
        dir.path(),
        "noinitrd",
        "ext3",
        FS_MIB,
        ROOT_UUID,
        &files,
        &[],
    );
    let boot = disk::resolve_disk_boot(&disk, &dest).unwrap();
    assert_boot(&boot, &dest, &kernel, None, ROOT_UUID);
    assert!(!dest.join(disk::BOOT_INITRD_NAME).exists());
}

#[test]
fn disks_without_kernels_or_filesystems_say_what_they_saw() {
    let dir = tempfile::tempdir().unwrap();
    let files = vec![
        ("/etc/fstab", b"/\n".to_vec()),
        ("/boot/grub/grub.cfg", b"\n".to_vec()),
    ];
    let disk = filesystem(
        dir.path(),
        "nokernel",
        "ext4",
        FS_MIB,
        ROOT_UUID,
        &files,
        &[],
    );
    let err = disk::resolve_disk_boot(&disk, &dir.path().join("out")).unwrap_err();
    assert!(matches!(err, Error::NoKernel { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("whole disk: ext filesystem without vmlinuz-*"),
        "{err}"
    );

    let blank = dir.path().join("blank.img");
    disk::create_sparse(&blank, 8 << 20).unwrap();
    let err = disk::find_disk_kernel(&blank).unwrap_err();
    assert!(matches!(err, Error::NoFilesystem(_)), "{err}");
    assert!(
        !dir.path().join("out").exists(),
        "nothing is created on failure"
    );
}

#[test]
fn a_corrupted_superblock_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (files, _, _) = debian_root();
    let disk = filesystem(dir.path(), "root", "ext4", FS_MIB, ROOT_UUID, &files, &[]);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&disk)
        .unwrap();
    // s_log_block_size (superblock offset 24) = 200: an absurd block size.
    std::os::unix::fs::FileExt::write_all_at(&file, &200u32.to_le_bytes(), 1024 + 24).unwrap();
    let err = disk::find_disk_kernel(&disk).unwrap_err();
    assert!(
        matches!(&err, Error::Ext4 { volume, .. } if volume == "whole disk"),
        "{err}"
    );
    let chain = format!("{:#}", anyhow::Error::from(err));
    assert!(
        chain.contains("corrupt") || chain.contains("checksum") || chain.contains("incompatible"),
        "{chain}"
    );
}

#[test]
fn qcow2_and_broken_gpt_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let qcow = dir.path().join("disk.qcow2");
    let mut header = b"QFI\xfb\x00\x00\x00\x03".to_vec();
    header.resize(4096, 0);
    std::fs::write(&qcow, &header).unwrap();
    let err = disk::resolve_disk_boot(&qcow, dir.path()).unwrap_err();
    assert!(err.to_string().contains("qcow2"), "{err}");
    assert!(err.to_string().contains("only raw images"), "{err}");

    let disk = dir.path().join("gpt.img");
    partitioned(
        &disk,
        8,
        "label: gpt\nstart=2048, size=4096, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n",
    );
    // Flip a byte of the first partition entry: the array checksum fails.
    junk(&disk, 2, 1, 9);
    let err = disk::find_disk_kernel(&disk).unwrap_err();
    let chain = format!("{:#}", anyhow::Error::from(err));
    assert!(chain.contains("checksum"), "{chain}");
}

/// xorshift64 with a fixed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn random_metadata_mutations_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let (files, _, _) = debian_root();
    let fs = filesystem(dir.path(), "root", "ext4", FS_MIB, ROOT_UUID, &files, &[]);
    let original = std::fs::read(&fs).unwrap();
    let disk = dir.path().join("mutant.img");
    let dest = dir.path().join("out");
    let mut rng = Rng(0xD15C_0000_0000_0001);
    let mut ok = 0;
    for _ in 0..150 {
        let mut data = original.clone();
        for _ in 0..1 + rng.next() % 8 {
            // Superblock, group descriptors, bitmaps and inode tables lie
            // in the first 2 MiB of this small filesystem.
            let at = (rng.next() % (2 << 20)) as usize;
            data[at] = rng.next() as u8;
        }
        std::fs::write(&disk, &data).unwrap();
        if disk::resolve_disk_boot(&disk, &dest).is_ok() {
            ok += 1;
        }
    }
    assert!(
        ok > 0,
        "no mutant booted at all: the mutations are too coarse"
    );
}

/// A GPT disk: partition 1 an ext4 /boot built from `boot_files`,
/// partition 2 a root this tool cannot read (junk standing in for LVM).
fn boot_plus_unreadable_root(dir: &Path, boot_files: &Files) -> std::path::PathBuf {
    let boot_fs = filesystem(dir, "boot", "ext4", FS_MIB, BOOT_UUID, boot_files, &[]);
    let disk = dir.join("lvm.img");
    let p1 = 2048;
    let p2 = p1 + PART_SECTORS;
    let script = format!(
        "label: gpt\n\
         start={p1}, size={PART_SECTORS}, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n\
         start={p2}, size={PART_SECTORS}, type=E6D6D379-F507-44C2-A23C-238F2A3DF928\n"
    );
    partitioned(&disk, 48, &script);
    place(&disk, p1, &boot_fs);
    junk(&disk, p2, 1 << 20, 8);
    disk
}

#[test]
fn root_on_lvm_comes_from_grub_cfg() {
    let dir = tempfile::tempdir().unwrap();
    let grub = "menuentry 'Ubuntu, 5.15.0-88' {\n\tlinux /vmlinuz-5.15.0-88-generic root=/dev/mapper/old ro\n}\n\
                menuentry 'Ubuntu, 5.15.0-91' {\n\tlinux\t/vmlinuz-5.15.0-91-generic root=/dev/mapper/ubuntu--vg-ubuntu--lv ro quiet splash\n\tinitrd /initrd.img-5.15.0-91-generic\n}\n";
    let files = vec![
        ("/vmlinuz-5.15.0-88-generic", bytes(60, 100)),
        ("/initrd.img-5.15.0-88-generic", bytes(61, 100)),
        ("/vmlinuz-5.15.0-91-generic", bytes(62, 100)),
        ("/initrd.img-5.15.0-91-generic", bytes(63, 100)),
        ("/grub/grub.cfg", grub.as_bytes().to_vec()),
    ];
    let disk = boot_plus_unreadable_root(dir.path(), &files);
    let found = disk::find_disk_kernel(&disk).unwrap();
    assert_eq!(found.kernel, "/vmlinuz-5.15.0-91-generic");
    assert_eq!(found.root_arg, "root=/dev/mapper/ubuntu--vg-ubuntu--lv");
    assert_eq!(found.root_source, "partition 1:/grub/grub.cfg");
}

#[test]
fn root_on_btrfs_comes_from_boot_loader_spec_entries() {
    let dir = tempfile::tempdir().unwrap();
    let entry = "title Fedora Linux (6.5.6-300.fc39.x86_64)\nversion 6.5.6-300.fc39.x86_64\n\
                 linux /vmlinuz-6.5.6-300.fc39.x86_64\ninitrd /initramfs-6.5.6-300.fc39.x86_64.img\n\
                 options root=UUID=11111111-2222-3333-4444-555555555555 ro rootflags=subvol=root rhgb quiet\n";
    let files = vec![
        ("/vmlinuz-6.5.6-300.fc39.x86_64", bytes(70, 100)),
        ("/initramfs-6.5.6-300.fc39.x86_64.img", bytes(71, 100)),
        (
            "/loader/entries/abc-6.5.6-300.fc39.x86_64.conf",
            entry.as_bytes().to_vec(),
        ),
    ];
    let disk = boot_plus_unreadable_root(dir.path(), &files);
    let dest = dir.path().join("out");
    let boot = disk::resolve_disk_boot(&disk, &dest).unwrap();
    assert_eq!(
        boot.root_arg,
        "root=UUID=11111111-2222-3333-4444-555555555555 rootflags=subvol=root"
    );
    assert_eq!(std::fs::read(&boot.kernel).unwrap(), bytes(70, 100));

    // Without any bootloader configuration the root cannot be named.
    let dir = tempfile::tempdir().unwrap();
    let files = vec![("/vmlinuz-6.5.6", bytes(70, 100))];
    let disk = boot_plus_unreadable_root(dir.path(), &files);
    let err = disk::find_disk_kernel(&disk).unwrap_err();
    assert!(matches!(err, Error::NoRoot { .. }), "{err}");
}

#[test]
fn with_two_systems_the_newest_kernel_brings_its_own_root() {
    let dir = tempfile::tempdir().unwrap();
    let old = vec![
        ("/etc/fstab", b"/\n".to_vec()),
        ("/boot/vmlinuz-5.10.0", bytes(80, 100)),
    ];
    let new = vec![
        ("/etc/fstab", b"/\n".to_vec()),
        ("/boot/vmlinuz-6.1.0", bytes(81, 100)),
    ];
    let old_fs = filesystem(dir.path(), "old", "ext4", FS_MIB, BOOT_UUID, &old, &[]);
    let new_fs = filesystem(dir.path(), "new", "ext4", FS_MIB, ROOT_UUID, &new, &[]);
    let disk = dir.path().join("two.img");
    let p2 = 2048 + PART_SECTORS;
    let script = format!(
        "label: dos\nstart=2048, size={PART_SECTORS}, type=83\nstart={p2}, size={PART_SECTORS}, type=83\n"
    );
    partitioned(&disk, 40, &script);
    place(&disk, 2048, &old_fs);
    place(&disk, p2, &new_fs);
    let found = disk::find_disk_kernel(&disk).unwrap();
    assert_eq!(
        (found.kernel.as_str(), found.volume.as_str()),
        ("/boot/vmlinuz-6.1.0", "partition 2")
    );
    assert_eq!(found.root_arg, format!("root=UUID={ROOT_UUID}"));
    assert_eq!(found.initrd, None);
}
