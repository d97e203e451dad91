//! Drives the real binary in a temporary HOME and library.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_xhyve-manager");
/// The 2016-format config.ini fixture.
pub const ORIGINAL_CONFIG: &str = include_str!("../fixtures/config-2016.ini");

pub struct Env {
    pub tmp: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        let env = Env {
            tmp: tempfile::tempdir().unwrap(),
        };
        fs::create_dir(env.home()).unwrap();
        env
    }

    /// $HOME for the binary.
    pub fn home(&self) -> PathBuf {
        self.tmp.path().join("home")
    }

    /// The library passed with --home by `lib_cmd`.
    pub fn lib(&self) -> PathBuf {
        self.tmp.path().join("lib")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    pub fn vm_dir(&self, name: &str) -> PathBuf {
        self.lib().join(format!("{name}.xhyvm"))
    }

    /// The binary with a clean environment and no terminal on stdin.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .current_dir(self.tmp.path())
            .env("HOME", self.home())
            .stdin(Stdio::null());
        for var in [
            "XHYVE_HOME",
            "XDG_DATA_HOME",
            "VISUAL",
            "EDITOR",
            "SUDO_UID",
            "SUDO_GID",
            "SUDO_USER",
        ] {
            cmd.env_remove(var);
        }
        cmd
    }

    /// The binary with `--home <lib>`.
    pub fn lib_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = self.cmd(args);
        cmd.arg("--home").arg(self.lib());
        cmd
    }

    /// Run with `--home <lib>`, expect success, return stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        expect_ok(self.lib_cmd(args).output().unwrap(), args)
    }

    /// Run with `--home <lib>`, expect exit code `code`, return stderr.
    pub fn fail(&self, args: &[&str], code: i32) -> String {
        expect_fail(self.lib_cmd(args).output().unwrap(), args, code)
    }

    /// A small executable shell script.
    pub fn script(&self, name: &str, body: &str) -> PathBuf {
        let path = self.path(name);
        fs::write(&path, format!("#!/bin/sh\nset -e\n{body}\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// A file with some bytes.
    pub fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path(name);
        fs::write(&path, contents).unwrap();
        path
    }
}

pub fn expect_ok(output: Output, args: &[&str]) -> String {
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        output.status.success(),
        "{args:?} failed: {stderr}\n{stdout}"
    );
    stdout
}

pub fn expect_fail(output: Output, args: &[&str], code: i32) -> String {
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(
        output.status.code(),
        Some(code),
        "{args:?}: {stderr}\n{stdout}"
    );
    stderr
}

/// Every entry of `dir`, hidden ones included, sorted.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

impl Env {
    /// `ok` with $EDITOR set to `editor`.
    pub fn ok_with_editor(&self, args: &[&str], editor: &Path) -> String {
        let mut cmd = self.lib_cmd(args);
        cmd.env("EDITOR", editor);
        expect_ok(cmd.output().unwrap(), args)
    }

    /// `fail` with $EDITOR set to `editor`.
    pub fn fail_with_editor(&self, args: &[&str], editor: &Path, code: i32) -> String {
        let mut cmd = self.lib_cmd(args);
        cmd.env("EDITOR", editor);
        expect_fail(cmd.output().unwrap(), args, code)
    }
}
