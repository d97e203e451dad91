//! Under sudo (root with SUDO_UID/SUDO_GID), the library is the invoking
//! user's and the files created belong to that user. Needs root.

mod cli_support;

use std::fs;
use std::os::unix::fs::MetadataExt;

use cli_support::{Env, expect_ok};

const USER: u32 = 4242;
const GROUP: u32 = 4243;

fn running_as_root(env: &Env) -> bool {
    let probe = env.file("probe", "");
    fs::metadata(probe).unwrap().uid() == 0
}

#[test]
fn created_files_belong_to_the_sudo_user() {
    let env = Env::new();
    if !running_as_root(&env) {
        eprintln!("skipped: needs root");
        return;
    }
    let kernel = env.file("k", "k");
    let lib = env.path("deep/lib");
    let mut cmd = env.cmd(&["create", "s", "--kernel", kernel.to_str().unwrap()]);
    cmd.arg("--home")
        .arg(&lib)
        .env("SUDO_UID", USER.to_string())
        .env("SUDO_GID", GROUP.to_string());
    expect_ok(cmd.output().unwrap(), &["create"]);
    let dir = lib.join("s.xhyvm");
    for path in [
        env.path("deep"),
        lib.clone(),
        dir.clone(),
        dir.join("config.ini"),
        dir.join("k"),
    ] {
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid()),
            (USER, GROUP),
            "{}",
            path.display()
        );
    }

    // An edit as root keeps the file the user's.
    let editor = env.script("ed.sh", "sed -i 's/^cpus = .*/cpus = 2/' \"$1\"");
    let mut cmd = env.cmd(&["edit", "s"]);
    cmd.arg("--home").arg(&lib).env("EDITOR", &editor);
    expect_ok(cmd.output().unwrap(), &["edit"]);
    let meta = fs::metadata(dir.join("config.ini")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (USER, GROUP));
    assert!(
        fs::read_to_string(dir.join("config.ini"))
            .unwrap()
            .contains("cpus = 2")
    );
}

#[test]
fn default_library_is_the_sudo_users() {
    let env = Env::new();
    if !running_as_root(&env) {
        eprintln!("skipped: needs root");
        return;
    }
    // nobody (65534) has the home /nonexistent in Debian's passwd.
    let nobody_home = fs::read_to_string("/etc/passwd")
        .unwrap()
        .lines()
        .find(|l| l.split(':').nth(2) == Some("65534"))
        .and_then(|l| l.split(':').nth(5).map(str::to_string))
        .expect("a user with uid 65534");
    let mut cmd = env.cmd(&["list"]);
    cmd.env("SUDO_UID", "65534").env("SUDO_GID", "65534");
    let out = expect_ok(cmd.output().unwrap(), &["list"]);
    assert!(
        out.contains(&format!(
            "{nobody_home}/.local/share/xhyve-manager/machines"
        )),
        "{out}"
    );
}
