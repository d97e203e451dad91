//! Fixture builders for the disk tests: ext2/3/4 images made by
//! `mke2fs -d` from folders, and partitioned images made by sfdisk.
#![allow(dead_code)]

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const SECTOR: u64 = 512;

/// Deterministic pseudo-random bytes (xorshift64*), distinct per seed.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Write `files` (path, contents) under `root`; `links` are (path, target).
pub fn tree(root: &Path, files: &[(&str, Vec<u8>)], links: &[(&str, &str)]) {
    std::fs::create_dir_all(root).unwrap();
    for (path, data) in files {
        let full = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, data).unwrap();
    }
    for (path, target) in links {
        let full = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, full).unwrap();
    }
}

/// `mke2fs -t KIND -d SRC` into a new `size_mib` image with a fixed UUID.
pub fn mkfs(src: &Path, out: &Path, kind: &str, size_mib: u64, uuid: &str) {
    let output = Command::new("mke2fs")
        .args(["-q", "-F", "-t", kind, "-U", uuid, "-d"])
        .arg(src)
        .arg(out)
        .arg(format!("{size_mib}M"))
        .output()
        .expect("mke2fs runs (e2fsprogs is in scripts/apt-packages.txt)");
    assert!(
        output.status.success(),
        "mke2fs: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A filesystem image built from `files` in a fresh folder under `dir`.
pub fn filesystem(
    dir: &Path,
    name: &str,
    kind: &str,
    size_mib: u64,
    uuid: &str,
    files: &[(&str, Vec<u8>)],
    links: &[(&str, &str)],
) -> PathBuf {
    let src = dir.join(format!("{name}.tree"));
    tree(&src, files, links);
    let out = dir.join(format!("{name}.fs"));
    mkfs(&src, &out, kind, size_mib, uuid);
    out
}

/// A sparse `size_mib` disk partitioned by `script` (sfdisk input).
pub fn partitioned(path: &Path, size_mib: u64, script: &str) {
    let file = std::fs::File::create(path).unwrap();
    file.set_len(size_mib << 20).unwrap();
    drop(file);
    let mut child = Command::new("sfdisk")
        .args(["-q", "--no-reread", "--no-tell-kernel"])
        .arg(path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sfdisk runs (fdisk is in scripts/apt-packages.txt)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "sfdisk: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Copy `fs` into `disk` at sector `start` (like dd conv=notrunc).
pub fn place(disk: &Path, start_sector: u64, fs: &Path) {
    let data = std::fs::read(fs).unwrap();
    let disk = std::fs::OpenOptions::new().write(true).open(disk).unwrap();
    disk.write_all_at(&data, start_sector * SECTOR).unwrap();
}

/// Fill `disk` at sector `start` with `len` bytes of junk (a non-ext partition).
pub fn junk(disk: &Path, start_sector: u64, len: usize, seed: u64) {
    let disk = std::fs::OpenOptions::new().write(true).open(disk).unwrap();
    disk.write_all_at(&bytes(seed, len), start_sector * SECTOR)
        .unwrap();
}
