//! Fixture builders shared by the ISO tests: directory trees with
//! deterministic contents turned into ISO images by xorriso.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

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

/// Write `files` (path inside the tree, contents) under `root`.
pub fn tree(root: &Path, files: &[(&str, Vec<u8>)]) {
    for (path, data) in files {
        let full = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, data).unwrap();
    }
}

/// How xorriso names the files.
#[derive(Clone, Copy, Debug)]
pub enum Names {
    /// Rock Ridge and Joliet (what real distribution ISOs carry).
    RockRidgeJoliet,
    /// Joliet only.
    Joliet,
    /// Plain ISO 9660 level 1 names (upper case 8.3).
    Plain,
}

/// Build `out` from the folder `src` with volume label `label`.
pub fn xorriso(src: &Path, out: &Path, label: &str, names: Names) {
    let mut cmd = Command::new("xorriso");
    cmd.args(["-as", "mkisofs", "-quiet", "-V", label, "-o"])
        .arg(out);
    match names {
        Names::RockRidgeJoliet => cmd.args(["-R", "-J", "-joliet-long"]),
        Names::Joliet => cmd.args(["--norock", "-J"]),
        Names::Plain => cmd.args(["--norock"]),
    };
    let output = cmd
        .arg(src)
        .output()
        .expect("xorriso runs (scripts/apt-packages.txt lists it)");
    assert!(
        output.status.success(),
        "xorriso failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// An ISO holding `files`, in a fresh folder inside `dir`.
pub fn iso(
    dir: &Path,
    name: &str,
    label: &str,
    names: Names,
    files: &[(&str, Vec<u8>)],
) -> PathBuf {
    let src = dir.join(format!("{name}.tree"));
    tree(&src, files);
    let out = dir.join(format!("{name}.iso"));
    xorriso(&src, &out, label, names);
    out
}
