//! A user of the 2016 tool: `~/Xhyve Virtual Machines/Foo.xhyvm/config.ini`
//! is found by `list` and shown by `info`, and stays byte for byte unchanged.

mod cli_support;

use std::fs;

use cli_support::{Env, ORIGINAL_CONFIG, expect_ok};

fn setup() -> (Env, std::path::PathBuf) {
    let env = Env::new();
    let dir = env.home().join("Xhyve Virtual Machines/Foo.xhyvm");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("config.ini"), ORIGINAL_CONFIG).unwrap();
    fs::write(dir.join("vmlinuz"), "k").unwrap();
    fs::write(dir.join("hdd.img"), "d").unwrap();
    (env, dir)
}

#[test]
fn original_folder_is_listed_and_shown_unchanged() {
    let (env, dir) = setup();
    let list = expect_ok(env.cmd(&["list"]).output().unwrap(), &["list"]);
    let line = list.lines().find(|l| l.starts_with("Foo ")).expect(&list);
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        &words[..5],
        &["Foo", "linux", "2", "2G", "stopped"],
        "{list}"
    );
    assert!(line.contains("Xhyve Virtual Machines/Foo.xhyvm"), "{line}");

    let info = expect_ok(env.cmd(&["info", "Foo"]).output().unwrap(), &["info"]);
    for expected in [
        "name = Foo",
        "uuid = 6B1AB1F4-0B39-4C2E-9E0E-33B2A9A5F63C",
        "options = earlyprintk=serial console=ttyS0 acpi=off root=/dev/vda1",
        "size = 2G",
        "protocol = auto  (default)",
        "enabled = false  (default)", // [rng]
        "[lpc] configinfo = com1,stdio",
        "no [networking] tap configured",
    ] {
        assert!(info.contains(expected), "missing {expected:?} in\n{info}");
    }
    assert!(
        info.contains(&format!("{} (exists", dir.join("hdd.img").display())),
        "{info}"
    );
    assert!(
        info.contains(&format!("{} (missing)", dir.join("initrd.gz").display())),
        "{info}"
    );

    let json: serde_json::Value = serde_json::from_str(&expect_ok(
        env.cmd(&["info", "Foo", "--json"]).output().unwrap(),
        &["info"],
    ))
    .unwrap();
    assert_eq!(json["effective"]["cpus"], 2);
    assert_eq!(json["effective"]["memory_mib"], 2048);
    assert_eq!(json["effective"]["internal_storage"]["path"], "hdd.img");
    assert_eq!(json["unknown_keys"][0]["key"], "configinfo");

    assert_eq!(
        fs::read_to_string(dir.join("config.ini")).unwrap(),
        ORIGINAL_CONFIG
    );
    // Only what we put there: list/info wrote nothing.
    assert_eq!(
        cli_support::entries(&dir),
        vec!["config.ini", "hdd.img", "vmlinuz"]
    );
}

#[test]
fn editing_an_original_file_changes_only_the_edited_line() {
    let (env, dir) = setup();
    let editor = env.script("ed.sh", "sed -i 's/^cpus = 2$/cpus = 3/' \"$1\"");
    let mut cmd = env.cmd(&["edit", "Foo"]);
    cmd.env("EDITOR", &editor);
    expect_ok(cmd.output().unwrap(), &["edit"]);
    let text = fs::read_to_string(dir.join("config.ini")).unwrap();
    assert_eq!(text, ORIGINAL_CONFIG.replace("cpus = 2\n", "cpus = 3\n"));
}

#[test]
fn new_vms_and_original_ones_are_listed_together() {
    let (env, _) = setup();
    expect_ok(env.cmd(&["create", "new"]).output().unwrap(), &["create"]);
    let list = expect_ok(env.cmd(&["list", "--json"]).output().unwrap(), &["list"]);
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["new", "Foo"]);
    // A new VM may not shadow an original one.
    let err = cli_support::expect_fail(
        env.cmd(&["create", "Foo"]).output().unwrap(),
        &["create"],
        1,
    );
    assert!(
        err.contains("already exists") && err.contains("Xhyve Virtual Machines"),
        "{err}"
    );
    // An explicit library does not search the 2016 folders.
    let list = env.ok(&["list", "--json"]);
    assert_eq!(list.trim(), "[]");
}
