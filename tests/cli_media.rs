//! `create --disk` (sparse image) and `create --iso` (installer kernel and
//! initrd extracted, ISO attached), through the real binary.

mod cli_support;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

use cli_support::{Env, entries};

const MIB: u64 = 1 << 20;

#[test]
fn create_disk_makes_a_sparse_image_shown_by_info() {
    let env = Env::new();
    let out = env.ok(&["create", "d", "--disk", "64M"]);
    assert!(out.contains("64M (sparse)"), "{out}");
    let image = env.vm_dir("d").join("disk.img");
    let meta = fs::metadata(&image).unwrap();
    assert_eq!(meta.len(), 64 * MIB);
    // Sparse: far less allocated than its size (st_blocks counts 512-byte units).
    assert!(
        meta.blocks() * 512 < MIB,
        "{} bytes allocated",
        meta.blocks() * 512
    );
    let text = fs::read_to_string(env.vm_dir("d").join("config.ini")).unwrap();
    assert!(text.contains("configinfo = disk.img"), "{text}");

    let info: serde_json::Value = serde_json::from_str(&env.ok(&["info", "d", "--json"])).unwrap();
    let disk = info["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["section"] == "internal_storage")
        .unwrap()
        .clone();
    assert_eq!(disk["apparent_size"], 64 * MIB);
    assert_eq!(disk["allocated_size"], meta.blocks() * 512);
    assert_eq!(disk["inside_vm_folder"], true);
    let out = env.ok(&["info", "d"]);
    assert!(out.contains("64M apparent"), "{out}");

    // A disk at an explicit path outside the folder.
    let outside = env.path("big.img");
    env.ok(&[
        "create",
        "e",
        "--disk",
        "8",
        "--disk-path",
        outside.to_str().unwrap(),
    ]);
    assert_eq!(fs::metadata(&outside).unwrap().len(), 8 * MIB);
    env.ok(&["delete", "e", "--yes"]);
    assert!(outside.is_file(), "a disk outside the folder stays");
}

#[test]
fn failed_create_removes_a_disk_it_made_outside() {
    let env = Env::new();
    let outside = env.path("made.img");
    // The command line is checked when the config is validated, after the
    // disk was made: too long for the VMM's command line area.
    let long = "x".repeat(70_000);
    let err = env.fail(
        &[
            "create",
            "x",
            "--disk",
            "8M",
            "--disk-path",
            outside.to_str().unwrap(),
            "--cmdline",
            &long,
        ],
        1,
    );
    assert!(
        err.contains("[boot] options"),
        "{}",
        &err[..300.min(err.len())]
    );
    assert!(
        !outside.exists(),
        "the disk made for the failed VM is removed"
    );
    assert!(entries(&env.lib()).is_empty(), "{:?}", entries(&env.lib()));
}

fn build_iso(env: &Env) -> std::path::PathBuf {
    let root = env.path("isoroot");
    fs::create_dir_all(root.join("casper")).unwrap();
    fs::write(root.join("casper/vmlinuz"), "ubuntu kernel").unwrap();
    fs::write(root.join("casper/initrd"), "ubuntu initrd").unwrap();
    let iso = env.path("ubuntu.iso");
    let status = Command::new("xorriso")
        .args([
            "-as",
            "mkisofs",
            "-quiet",
            "-R",
            "-J",
            "-V",
            "UBUNTU_TEST",
            "-o",
        ])
        .arg(&iso)
        .arg(&root)
        .status()
        .expect("xorriso (scripts/apt-packages.txt) is needed to build the ISO fixture");
    assert!(status.success());
    iso
}

#[test]
fn create_iso_extracts_kernel_and_attaches_the_iso() {
    let env = Env::new();
    let iso = build_iso(&env);
    let out = env.ok(&[
        "create",
        "inst",
        "--iso",
        iso.to_str().unwrap(),
        "--memory",
        "2G",
    ]);
    assert!(out.contains("ubuntu installer"), "{out}");
    let dir = env.vm_dir("inst");
    let info: serde_json::Value =
        serde_json::from_str(&env.ok(&["info", "inst", "--json"])).unwrap();
    let eff = &info["effective"];
    assert_eq!(eff["external_storage"]["path"], iso.to_str().unwrap());
    assert_eq!(eff["external_storage"]["readonly"], true);
    assert!(
        eff["cmdline"].as_str().unwrap().contains("boot=casper"),
        "{eff}"
    );
    let kernel = dir.join(eff["kernel"].as_str().unwrap());
    let initrd = dir.join(eff["initrd"].as_str().unwrap());
    assert_eq!(fs::read_to_string(kernel).unwrap(), "ubuntu kernel");
    assert_eq!(fs::read_to_string(initrd).unwrap(), "ubuntu initrd");
    let out = env.ok(&["info", "inst"]);
    assert!(out.contains("read-only virtio-blk disk"), "{out}");
    env.ok(&["delete", "inst", "--yes"]);
    assert!(iso.is_file(), "the ISO is referenced, not owned");
}

#[test]
fn create_with_an_unbootable_iso_leaves_nothing() {
    let env = Env::new();
    let not_iso = env.file("junk.iso", &"x".repeat(100_000));
    let err = env.fail(&["create", "j", "--iso", not_iso.to_str().unwrap()], 1);
    assert!(err.contains("junk.iso"), "{err}");
    assert!(entries(&env.lib()).is_empty(), "{:?}", entries(&env.lib()));
}

#[test]
fn disk_and_extract_subcommands_are_wired() {
    let env = Env::new();
    let image = env.path("sub.img");
    env.ok(&["disk", "create", image.to_str().unwrap(), "16M"]);
    assert_eq!(fs::metadata(&image).unwrap().len(), 16 * MIB);
    let iso = build_iso(&env);
    let to = env.path("out");
    fs::create_dir(&to).unwrap();
    env.ok(&[
        "extract",
        iso.to_str().unwrap(),
        "--to",
        to.to_str().unwrap(),
    ]);
    assert!(!entries(&to).is_empty());
}
