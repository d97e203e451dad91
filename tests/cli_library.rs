//! create → list → info → edit → delete through the real binary.

mod cli_support;

use std::fs;

use cli_support::{Env, entries};

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn create_list_info_edit_delete() {
    let env = Env::new();
    let kernel = env.file("vmlinuz-test", "kernel bytes");
    let initrd = env.file("initrd-test", "initrd bytes");
    let out = env.ok(&[
        "create",
        "web",
        "--cpus",
        "2",
        "--memory",
        "768M",
        "--kernel",
        kernel.to_str().unwrap(),
        "--initrd",
        initrd.to_str().unwrap(),
        "--cmdline",
        "console=ttyS0 quiet",
        "--tap",
        "tap9",
        "--uuid",
        "0b6f9c1e-3a47-4b6e-8d0c-5f8e2a1b9c7d",
    ]);
    assert!(out.contains("Created VM 'web'"), "{out}");
    assert!(out.contains("copied into the VM folder"), "{out}");
    let dir = env.vm_dir("web");
    assert_eq!(
        fs::read_to_string(dir.join("vmlinuz-test")).unwrap(),
        "kernel bytes"
    );
    assert_eq!(
        fs::read_to_string(dir.join("initrd-test")).unwrap(),
        "initrd bytes"
    );
    // Nothing but the VM folder in the library (no staging leftovers).
    assert_eq!(entries(&env.lib()), vec!["web.xhyvm"]);

    // list, text and JSON
    let out = env.ok(&["list"]);
    let line = out.lines().find(|l| l.starts_with("web ")).expect(&out);
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        &words[..5],
        &["web", "linux", "2", "768M", "stopped"],
        "{out}"
    );
    let list = json(&env.ok(&["list", "--json"]));
    assert_eq!(list[0]["name"], "web");
    assert_eq!(list[0]["cpus"], 2);
    assert_eq!(list[0]["memory_mib"], 768);
    assert_eq!(list[0]["type"], "linux");
    assert_eq!(list[0]["state"], "stopped");

    // info, text and JSON
    let out = env.ok(&["info", "web"]);
    assert!(out.contains("cpus = 2"), "{out}");
    assert!(out.contains("options = console=ttyS0 quiet"), "{out}");
    assert!(
        out.contains(&format!("{} (exists)", dir.join("vmlinuz-test").display())),
        "{out}"
    );
    assert!(out.contains("tap = tap9"), "{out}");
    assert!(out.contains("accepted and ignored"), "{out}");
    let info = json(&env.ok(&["info", "web", "--json"]));
    assert_eq!(info["effective"]["cpus"], 2);
    assert_eq!(info["effective"]["memory_mib"], 768);
    assert_eq!(
        info["effective"]["uuid"],
        "0b6f9c1e-3a47-4b6e-8d0c-5f8e2a1b9c7d"
    );
    assert_eq!(info["effective"]["networking"]["tap"], "tap9");
    assert_eq!(info["mac"], "02:5f:8e:2a:1b:9c");
    let files = info["files"].as_array().unwrap();
    let kernel_ref = files.iter().find(|f| f["key"] == "kernel").unwrap();
    assert_eq!(kernel_ref["exists"], true);
    assert_eq!(kernel_ref["inside_vm_folder"], true);

    // edit with a scripted editor: valid change is saved
    let config = dir.join("config.ini");
    let editor = env.script("set-cpus-4.sh", "sed -i 's/^cpus = .*/cpus = 4/' \"$1\"");
    let out = env.ok_with_editor(&["edit", "web"], &editor);
    assert!(out.contains("Saved"), "{out}");
    let text = fs::read_to_string(&config).unwrap();
    assert!(text.contains("\ncpus = 4\n"), "{text}");
    assert!(text.contains("options = console=ttyS0 quiet"), "{text}");
    assert_eq!(json(&env.ok(&["list", "--json"]))[0]["cpus"], 4);

    // edit: invalid result, no terminal → previous file kept, command fails
    let before = fs::read(&config).unwrap();
    let bad = env.script("set-cpus-0.sh", "sed -i 's/^cpus = .*/cpus = 0/' \"$1\"");
    let err = env.fail_with_editor(&["edit", "web"], &bad, 1);
    assert!(err.starts_with("xhyve-manager: error: "), "{err}");
    assert!(err.contains("[processor] cpus = \"0\""), "{err}");
    assert!(err.contains("1 to 255"), "{err}");
    assert!(err.contains(&config.display().to_string()), "{err}");
    assert_eq!(fs::read(&config).unwrap(), before);
    // No working copy left in the VM folder.
    assert!(
        entries(&dir).iter().all(|e| !e.starts_with('.')),
        "{:?}",
        entries(&dir)
    );

    // edit: editor exits with an error → nothing changes
    let failing = env.script("fail.sh", "echo junk > \"$1\"; exit 3");
    env.fail_with_editor(&["edit", "web"], &failing, 1);
    assert_eq!(fs::read(&config).unwrap(), before);

    // edit: no change
    let noop = env.script("noop.sh", "true");
    let out = env.ok_with_editor(&["edit", "web"], &noop);
    assert!(out.contains("No changes"), "{out}");

    // delete without --yes and without a terminal refuses
    let err = env.fail(&["delete", "web"], 1);
    assert!(err.contains("--yes"), "{err}");
    assert!(dir.is_dir());
    // kernel/initrd sources were copies: untouched by delete
    env.ok(&["delete", "web", "--yes"]);
    assert!(!dir.exists());
    assert!(kernel.is_file() && initrd.is_file());
    assert!(env.ok(&["list"]).contains("No VMs"));
    assert_eq!(json(&env.ok(&["list", "--json"])), serde_json::json!([]));
}

#[test]
fn visual_wins_over_editor_and_commands_with_arguments_work() {
    let env = Env::new();
    env.ok(&["create", "a"]);
    let marker = env.path("marker");
    let editor = env.script(
        "ed.sh",
        &format!(
            "echo \"$1\" > {}; sed -i 's/^size = .*/size = 2G/' \"$2\"",
            marker.display()
        ),
    );
    let mut cmd = env.lib_cmd(&["edit", "a"]);
    cmd.env("VISUAL", format!("{} first-arg", editor.display()))
        .env("EDITOR", "/bin/false");
    cli_support::expect_ok(cmd.output().unwrap(), &["edit"]);
    assert_eq!(fs::read_to_string(&marker).unwrap(), "first-arg\n");
    let info = json(&env.ok(&["info", "a", "--json"]));
    assert_eq!(info["effective"]["memory_mib"], 2048);
}

#[test]
fn no_copy_references_files_and_delete_keeps_external_storage() {
    let env = Env::new();
    let kernel = env.file("k", "k");
    let disk = env.file("shared.img", "disk");
    env.ok(&[
        "create",
        "ref",
        "--no-copy",
        "--kernel",
        kernel.to_str().unwrap(),
        "--disk-path",
        disk.to_str().unwrap(),
    ]);
    let dir = env.vm_dir("ref");
    assert_eq!(entries(&dir), vec!["config.ini"]);
    let text = fs::read_to_string(dir.join("config.ini")).unwrap();
    assert!(
        text.contains(&format!("kernel = {}", kernel.display())),
        "{text}"
    );
    assert!(
        text.contains(&format!("configinfo = {}", disk.display())),
        "{text}"
    );
    let info = json(&env.ok(&["info", "ref", "--json"]));
    let files = info["files"].as_array().unwrap();
    assert!(
        files.iter().all(|f| f["inside_vm_folder"] == false),
        "{files:?}"
    );

    let out = env.ok(&["delete", "ref", "--yes"]);
    assert!(out.contains("Left in place"), "{out}");
    assert!(disk.is_file() && kernel.is_file());

    env.ok(&["create", "ref2", "--disk-path", disk.to_str().unwrap()]);
    let out = env.ok(&["delete", "ref2", "--yes", "--with-external"]);
    assert!(
        out.contains(&format!("Deleted {}", disk.display())),
        "{out}"
    );
    assert!(!disk.exists());
}

#[test]
fn default_library_is_under_home_and_env_overrides_it() {
    let env = Env::new();
    let out = cli_support::expect_ok(env.cmd(&["create", "d"]).output().unwrap(), &["create"]);
    let default = env
        .home()
        .join(".local/share/xhyve-manager/machines/d.xhyvm");
    assert!(default.join("config.ini").is_file(), "{out}");

    let mut cmd = env.cmd(&["list", "--json"]);
    cmd.env("XHYVE_HOME", env.path("other"));
    let list = json(&cli_support::expect_ok(cmd.output().unwrap(), &["list"]));
    assert_eq!(list, serde_json::json!([]));

    let mut cmd = env.cmd(&["create", "e"]);
    cmd.env("XHYVE_HOME", env.path("other"));
    cli_support::expect_ok(cmd.output().unwrap(), &["create"]);
    assert!(env.path("other/e.xhyvm/config.ini").is_file());
}

#[test]
fn completions_and_man_page_come_from_the_cli_definition() {
    let env = Env::new();
    let bash = env.ok(&["completions", "bash"]);
    assert!(bash.contains("xhyve-manager"), "{bash}");
    assert!(bash.contains("create") && bash.contains("--with-external"));
    let zsh = env.ok(&["completions", "zsh"]);
    assert!(zsh.contains("#compdef xhyve-manager"));
    let man = env.ok(&["man"]);
    assert!(
        man.contains(".TH xhyve-manager"),
        "{}",
        &man[..200.min(man.len())]
    );
    assert!(man.contains("completions"));
}

#[test]
fn disk_auto_kernel_is_written_and_explained() {
    let env = Env::new();
    let disk = env.file("installed.img", "disk");
    env.ok(&[
        "create",
        "da",
        "--kernel",
        "disk:auto",
        "--disk-path",
        disk.to_str().unwrap(),
        "--type",
        "linux",
    ]);
    let text = fs::read_to_string(env.vm_dir("da").join("config.ini")).unwrap();
    assert!(text.contains("\nkernel = disk:auto\ninitrd =\n"), "{text}");
    let out = env.ok(&["info", "da"]);
    assert!(
        out.contains("read from the internal disk at start"),
        "{out}"
    );
    let info = json(&env.ok(&["info", "da", "--json"]));
    // No kernel file to check: it comes from the disk.
    assert!(
        info["files"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["section"] != "boot")
    );
}
