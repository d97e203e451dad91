//! Installer ISOs in each distribution's layout, built with xorriso:
//! `inspect` must find the distribution, paths and command line, and
//! `extract` must copy kernel and initrd byte for byte.

mod iso_support;

use std::path::Path;

use iso_support::{Names, bytes, iso};
use xhyve_manager::manager::cli::{ExtractArgs, run_extract};
use xhyve_manager::manager::iso::{self, Error, IsoBoot};

struct Case {
    name: &'static str,
    label: &'static str,
    kernel: &'static str,
    initrd: &'static str,
    distro: &'static str,
    cmdline: &'static str,
    /// Other files that make the layout realistic (and must not confuse it).
    extra: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        name: "arch",
        label: "ARCH_202401",
        kernel: "/arch/boot/x86_64/vmlinuz-linux",
        initrd: "/arch/boot/x86_64/initramfs-linux.img",
        distro: "arch",
        cmdline: "archisobasedir=arch archisolabel=ARCH_202401 console=ttyS0",
        extra: &[
            "/arch/boot/intel-ucode.img",
            "/arch/x86_64/airootfs.sfs",
            "/syslinux/syslinux.cfg",
        ],
    },
    Case {
        name: "arch-old",
        label: "ARCH_201801",
        kernel: "/arch/boot/x86_64/vmlinuz",
        initrd: "/arch/boot/x86_64/archiso.img",
        distro: "arch",
        cmdline: "archisobasedir=arch archisolabel=ARCH_201801 console=ttyS0",
        extra: &["/arch/boot/i686/vmlinuz", "/arch/boot/i686/archiso.img"],
    },
    Case {
        name: "fedora",
        label: "Fedora-S-dvd-x86_64-39",
        kernel: "/images/pxeboot/vmlinuz",
        initrd: "/images/pxeboot/initrd.img",
        distro: "fedora",
        cmdline: "inst.stage2=hd:LABEL=Fedora-S-dvd-x86_64-39 console=ttyS0",
        extra: &["/images/install.img", "/EFI/BOOT/grub.cfg"],
    },
    Case {
        name: "centos",
        label: "CentOS-7-x86_64-Minimal-2009",
        kernel: "/isolinux/vmlinuz",
        initrd: "/isolinux/initrd.img",
        distro: "centos",
        cmdline: "inst.stage2=hd:LABEL=CentOS-7-x86_64-Minimal-2009 console=ttyS0",
        extra: &[
            "/isolinux/isolinux.cfg",
            "/images/pxeboot/vmlinuz",
            "/images/pxeboot/initrd.img",
        ],
    },
    Case {
        name: "rocky",
        label: "Rocky-9-3-x86_64-dvd",
        kernel: "/images/pxeboot/vmlinuz",
        initrd: "/images/pxeboot/initrd.img",
        distro: "rocky",
        cmdline: "inst.stage2=hd:LABEL=Rocky-9-3-x86_64-dvd console=ttyS0",
        extra: &["/BaseOS/repodata/repomd.xml"],
    },
    Case {
        name: "ubuntu-live",
        label: "Ubuntu-Server 22.04.3 LTS amd64",
        kernel: "/casper/vmlinuz",
        initrd: "/casper/initrd",
        distro: "ubuntu",
        cmdline: "boot=casper console=ttyS0",
        extra: &[
            "/casper/ubuntu-server-minimal.squashfs",
            "/boot/grub/grub.cfg",
            "/.disk/info",
        ],
    },
    Case {
        name: "ubuntu-alternate",
        label: "Ubuntu-Server 18.04.6 LTS amd64",
        kernel: "/install/vmlinuz",
        initrd: "/install/initrd.gz",
        distro: "ubuntu",
        cmdline: "console=ttyS0",
        extra: &["/install/netboot/pxelinux.0", "/isolinux/txt.cfg"],
    },
    Case {
        name: "debian",
        label: "Debian 12.4.0 amd64 n",
        kernel: "/install.amd/vmlinuz",
        initrd: "/install.amd/initrd.gz",
        distro: "debian",
        cmdline: "console=ttyS0",
        extra: &[
            "/install.amd/gtk/vmlinuz",
            "/install.amd/gtk/initrd.gz",
            "/isolinux/isolinux.cfg",
        ],
    },
    Case {
        name: "alpine",
        label: "alpine-std 3.19.0 x86_64",
        kernel: "/boot/vmlinuz-lts",
        initrd: "/boot/initramfs-lts",
        distro: "alpine",
        cmdline: "modules=loop,squashfs,sd-mod,usb-storage console=ttyS0",
        extra: &["/boot/modloop-lts", "/apks/x86_64/APKINDEX.tar.gz"],
    },
    Case {
        name: "opensuse",
        label: "openSUSE-Leap-15.5-DVD-x86_6419",
        kernel: "/boot/x86_64/loader/linux",
        initrd: "/boot/x86_64/loader/initrd",
        distro: "opensuse",
        cmdline: "console=ttyS0",
        extra: &["/boot/x86_64/loader/isolinux.cfg", "/media.1/products"],
    },
];

fn build(
    dir: &Path,
    case: &Case,
    seed: u64,
    names: Names,
) -> (std::path::PathBuf, Vec<u8>, Vec<u8>) {
    let kernel = bytes(seed, 100_000 + seed as usize);
    let initrd = bytes(seed + 1000, 300_000 + seed as usize);
    let mut files = vec![(case.kernel, kernel.clone()), (case.initrd, initrd.clone())];
    for (i, extra) in case.extra.iter().enumerate() {
        files.push((*extra, bytes(seed * 100 + i as u64, 1000)));
    }
    (
        iso(dir, case.name, case.label, names, &files),
        kernel,
        initrd,
    )
}

fn check_extract(iso_path: &Path, boot: &IsoBoot, dest: &Path, kernel: &[u8], initrd: &[u8]) {
    std::fs::create_dir_all(dest).unwrap();
    let (k, i) = iso::extract(iso_path, boot, dest).unwrap();
    assert_eq!(std::fs::read(&k).unwrap(), kernel, "{}", k.display());
    assert_eq!(std::fs::read(&i).unwrap(), initrd, "{}", i.display());
    // Nothing else (no temporary files) is left in the folder.
    assert_eq!(std::fs::read_dir(dest).unwrap().count(), 2);
}

#[test]
fn every_distribution_layout_is_detected_and_extracted() {
    let dir = tempfile::tempdir().unwrap();
    for (seed, case) in CASES.iter().enumerate() {
        let (path, kernel, initrd) =
            build(dir.path(), case, seed as u64 + 1, Names::RockRidgeJoliet);
        let boot = iso::inspect(&path).unwrap_or_else(|e| panic!("{}: {e:#?}", case.name));
        assert_eq!(
            boot,
            IsoBoot {
                distro: case.distro.into(),
                kernel: case.kernel.into(),
                initrd: case.initrd.into(),
                cmdline: case.cmdline.into(),
            },
            "{}",
            case.name
        );
        check_extract(
            &path,
            &boot,
            &dir.path().join(format!("{}.out", case.name)),
            &kernel,
            &initrd,
        );
    }
}

#[test]
fn joliet_only_images_are_read_with_their_long_names() {
    let dir = tempfile::tempdir().unwrap();
    for (seed, case) in CASES
        .iter()
        .enumerate()
        .filter(|(_, c)| ["arch", "alpine", "debian"].contains(&c.name))
    {
        let (path, kernel, initrd) = build(dir.path(), case, seed as u64 + 50, Names::Joliet);
        let image = iso::reader::IsoImage::open(&path).unwrap();
        assert_eq!(image.naming(), iso::reader::Naming::Joliet);
        let boot = iso::inspect(&path).unwrap_or_else(|e| panic!("{}: {e:#?}", case.name));
        assert_eq!(
            (boot.distro.as_str(), boot.kernel.as_str()),
            (case.distro, case.kernel)
        );
        check_extract(
            &path,
            &boot,
            &dir.path().join(format!("{}.joliet", case.name)),
            &kernel,
            &initrd,
        );
    }
}

#[test]
fn plain_iso9660_names_match_ignoring_case() {
    let dir = tempfile::tempdir().unwrap();
    // CentOS's names fit ISO 9660 level 1 (8.3, upper case).
    let case = CASES.iter().find(|c| c.name == "centos").unwrap();
    let (path, kernel, initrd) = build(dir.path(), case, 77, Names::Plain);
    let image = iso::reader::IsoImage::open(&path).unwrap();
    assert_eq!(image.naming(), iso::reader::Naming::Plain);
    let boot = iso::inspect(&path).unwrap();
    assert_eq!(boot.distro, "centos");
    check_extract(&path, &boot, &dir.path().join("out"), &kernel, &initrd);
    // The copies carry the names as the image stores them.
    assert!(dir.path().join("out/VMLINUZ").exists());
}

#[test]
fn red_hat_family_without_a_known_label_is_generic() {
    let dir = tempfile::tempdir().unwrap();
    let files = [
        ("/isolinux/vmlinuz", bytes(1, 10)),
        ("/isolinux/initrd.img", bytes(2, 10)),
    ];
    let path = iso(
        dir.path(),
        "rh",
        "SomeRebuild-9",
        Names::RockRidgeJoliet,
        &files,
    );
    let boot = iso::inspect(&path).unwrap();
    assert_eq!(boot.distro, "redhat");
    assert_eq!(
        boot.cmdline,
        "inst.stage2=hd:LABEL=SomeRebuild-9 console=ttyS0"
    );
}

#[test]
fn debian_live_picks_the_newest_versioned_kernel() {
    let dir = tempfile::tempdir().unwrap();
    let files = [
        ("/live/vmlinuz-6.1.0-9-amd64", bytes(1, 1000)),
        ("/live/initrd.img-6.1.0-9-amd64", bytes(2, 1000)),
        ("/live/vmlinuz-6.1.0-10-amd64", bytes(3, 1000)),
        ("/live/initrd.img-6.1.0-10-amd64", bytes(4, 1000)),
        // Newest, but without an initrd: not bootable this way.
        ("/live/vmlinuz-6.2.0-1-amd64", bytes(5, 1000)),
        ("/live/filesystem.squashfs", bytes(6, 1000)),
    ];
    let path = iso(
        dir.path(),
        "live",
        "d-live 12.4.0 st amd64",
        Names::RockRidgeJoliet,
        &files,
    );
    let boot = iso::inspect(&path).unwrap();
    assert_eq!(boot.distro, "debian-live");
    assert_eq!(boot.kernel, "/live/vmlinuz-6.1.0-10-amd64");
    assert_eq!(boot.initrd, "/live/initrd.img-6.1.0-10-amd64");
    assert_eq!(boot.cmdline, "boot=live components console=ttyS0");
}

#[test]
fn large_files_and_long_rock_ridge_names_survive() {
    let dir = tempfile::tempdir().unwrap();
    let long_name = format!("/docs/{}", "a-very-long-file-name-".repeat(10));
    let kernel = bytes(11, 9 << 20);
    let initrd = bytes(12, (20 << 20) + 12345);
    let files = [
        ("/boot/vmlinuz-lts", kernel.clone()),
        ("/boot/initramfs-lts", initrd.clone()),
        (long_name.as_str(), bytes(13, 10)),
    ];
    let path = iso(
        dir.path(),
        "big",
        "alpine-big",
        Names::RockRidgeJoliet,
        &files,
    );
    let boot = iso::inspect(&path).unwrap();
    check_extract(&path, &boot, &dir.path().join("out"), &kernel, &initrd);
    let mut image = iso::reader::IsoImage::open(&path).unwrap();
    assert_eq!(image.naming(), iso::reader::Naming::RockRidge);
    let files = image.walk_files().unwrap();
    assert!(
        files.iter().any(|(p, size)| *p == long_name && *size == 10),
        "{files:?}"
    );
}

#[test]
fn rock_ridge_symlinks_are_followed_in_lookups() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("tree");
    iso_support::tree(
        &src,
        &[
            ("/casper/vmlinuz", bytes(1, 100)),
            ("/casper/initrd", bytes(2, 100)),
        ],
    );
    // Ubuntu ISOs carry "ubuntu -> ." at the root; add a link to a file too.
    std::os::unix::fs::symlink(".", src.join("ubuntu")).unwrap();
    std::os::unix::fs::symlink("../casper/vmlinuz", src.join("casper/../kernel-link")).unwrap();
    let path = dir.path().join("links.iso");
    iso_support::xorriso(&src, &path, "Ubuntu 24.04", Names::RockRidgeJoliet);
    let mut image = iso::reader::IsoImage::open(&path).unwrap();
    let via_dir = image.lookup("/ubuntu/ubuntu/casper/vmlinuz").unwrap();
    assert_eq!(via_dir.size(), 100);
    assert_eq!(image.lookup("/kernel-link").unwrap(), via_dir);
    // The walk does not follow links, so the "." loop costs nothing.
    assert_eq!(image.walk_files().unwrap().len(), 2);
    assert_eq!(iso::inspect(&path).unwrap().distro, "ubuntu");
}

#[test]
fn unknown_layouts_list_candidates_and_accept_a_manual_pick() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = bytes(21, 5000);
    let initrd = bytes(22, 7000);
    let files = [
        ("/mydistro/kernel/vmlinuz-custom", kernel.clone()),
        ("/mydistro/kernel/initramfs-custom.gz", initrd.clone()),
        ("/README", bytes(23, 10)),
    ];
    let path = iso(
        dir.path(),
        "unknown",
        "MYDISTRO_1",
        Names::RockRidgeJoliet,
        &files,
    );
    let err = iso::inspect(&path).unwrap_err();
    match &err {
        Error::UnknownLayout {
            kernels,
            initrds,
            label,
            ..
        } => {
            assert_eq!(kernels, &["/mydistro/kernel/vmlinuz-custom"]);
            assert_eq!(initrds, &["/mydistro/kernel/initramfs-custom.gz"]);
            assert_eq!(label, "MYDISTRO_1");
        }
        other => panic!("expected UnknownLayout, got {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains("--kernel PATH --initrd PATH"), "{message}");
    assert!(
        message.contains("/mydistro/kernel/vmlinuz-custom"),
        "{message}"
    );

    let boot = iso::choose(
        &path,
        "mydistro/kernel/vmlinuz-custom",
        "/mydistro/kernel/initramfs-custom.gz",
    )
    .unwrap();
    assert_eq!(boot.distro, "custom");
    assert_eq!(boot.kernel, "/mydistro/kernel/vmlinuz-custom");
    check_extract(&path, &boot, &dir.path().join("out"), &kernel, &initrd);
    let err = iso::choose(&path, "/README", "/nope").unwrap_err();
    assert!(err.to_string().contains("/nope"), "{err}");
}

#[test]
fn run_extract_copies_into_the_folder_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let case = CASES.iter().find(|c| c.name == "debian").unwrap();
    let (path, kernel, initrd) = build(dir.path(), case, 99, Names::RockRidgeJoliet);
    let to = dir.path().join("new/folder");
    let args = ExtractArgs {
        iso: path,
        to: Some(to.clone()),
        kernel: None,
        initrd: None,
    };
    run_extract(&args).unwrap();
    assert_eq!(std::fs::read(to.join("vmlinuz")).unwrap(), kernel);
    assert_eq!(std::fs::read(to.join("initrd.gz")).unwrap(), initrd);
}

#[test]
fn extract_arguments_parse_as_a_cli() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ExtractArgs,
    }
    let cli = Cli::try_parse_from([
        "x", "a.iso", "--to", "d", "--kernel", "/k", "--initrd", "/i",
    ])
    .unwrap();
    assert_eq!(cli.args.kernel.as_deref(), Some("/k"));
    assert_eq!(cli.args.to.as_deref(), Some(Path::new("d")));
    assert!(Cli::try_parse_from(["x", "a.iso", "--kernel", "/k"]).is_err());
}

#[test]
#[ignore = "writes a 4.3 GiB ISO (xorriso splits files over 4 GiB into several extents)"]
fn real_multi_extent_file_from_xorriso() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("tree");
    iso_support::tree(
        &src,
        &[
            ("/boot/vmlinuz-lts", bytes(1, 100)),
            ("/boot/initramfs-lts", bytes(2, 100)),
        ],
    );
    let huge = src.join("huge.bin");
    let len: u64 = (4 << 30) + (200 << 20);
    let file = std::fs::File::create(&huge).unwrap();
    file.set_len(len).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, b"tail-marker", len - 11).unwrap();
    let path = dir.path().join("multi.iso");
    let status = std::process::Command::new("xorriso")
        .args([
            "-as",
            "mkisofs",
            "-quiet",
            "-iso-level",
            "3",
            "-R",
            "-V",
            "MULTI",
            "-o",
        ])
        .arg(&path)
        .arg(&src)
        .status()
        .unwrap();
    assert!(status.success());
    let mut image = iso::reader::IsoImage::open(&path).unwrap();
    let entry = image.lookup("/huge.bin").unwrap();
    assert!(entry.extents.len() >= 2, "{:?}", entry.extents);
    assert_eq!(entry.size(), len);
    let last = entry.extents.last().unwrap();
    let mut tail = [0u8; 11];
    std::os::unix::fs::FileExt::read_exact_at(
        &std::fs::File::open(&path).unwrap(),
        &mut tail,
        last.start + last.len - 11,
    )
    .unwrap();
    assert_eq!(&tail, b"tail-marker");
}

#[test]
fn relocated_deep_directories_are_found_at_their_place() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("tree");
    let deep = "/a/b/c/d/e/f/g/h/i/j/file.txt";
    iso_support::tree(&src, &[(deep, bytes(7, 3000))]);
    let path = dir.path().join("deep.iso");
    // Strict ISO 9660 depth (no "deep_paths"): xorriso relocates the
    // deepest directory and leaves Rock Ridge CL/RE/PL entries behind.
    let output = std::process::Command::new("xorriso")
        .args(["-outdev"])
        .arg(&path)
        .args([
            "-compliance",
            "clear:only_iso_version:long_paths",
            "-rockridge",
            "on",
            "-map",
        ])
        .arg(&src)
        .args(["/", "-commit"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut image = iso::reader::IsoImage::open(&path).unwrap();
    assert_eq!(image.read(deep, 1 << 20).unwrap(), bytes(7, 3000));
    let files = image.walk_files().unwrap();
    assert_eq!(files, vec![(deep.to_string(), 3000)]);
}
