//! Bad input: precise errors, exit codes, and files left intact.

mod cli_support;

use std::fs;

use cli_support::{Env, entries};

#[test]
fn names_that_escape_the_library_are_refused() {
    let env = Env::new();
    for bad in ["../x", "/", "a/b", ".hidden", "..", "x y", "_x"] {
        let err = env.fail(&["create", bad], 1);
        assert!(err.starts_with("xhyve-manager: error: "), "{err}");
        assert!(err.contains("not a usable VM name"), "{bad}: {err}");
    }
    let err = env.fail(&["create", ""], 1);
    assert!(err.contains("it is empty"), "{err}");
    for bad in ["../x", "a/b"] {
        let err = env.fail(&["info", bad], 1);
        assert!(err.contains("not a usable VM name"), "{err}");
    }
    assert!(!env.path("x.xhyvm").exists());
    assert!(entries(&env.lib()).is_empty(), "{:?}", entries(&env.lib()));
}

#[test]
fn bad_values_are_usage_errors_naming_the_flag() {
    let env = Env::new();
    for (flag, value, allowed) in [
        ("--cpus", "0", "1 to 255"),
        ("--cpus", "256", "1 to 255"),
        ("--memory", "1X", "512M or 2G"),
        ("--memory", "8M", "512M or 2G"),
        ("--disk", "lots", "not a size"),
        ("--type", "windows", "linux"),
        ("--mac", "01:00:00:00:00:00", "unicast"),
        ("--tap", "way-too-long-interface", "15"),
        ("--uuid", "nope", "invalid"),
    ] {
        let err = env.fail(&["create", "v", flag, value], 2);
        assert!(err.contains(flag), "{flag}: {err}");
        assert!(err.contains(allowed), "{flag} {value}: {err}");
    }
    assert!(entries(&env.lib()).is_empty());
}

#[test]
fn duplicate_create_is_refused_and_leaves_the_vm_alone() {
    let env = Env::new();
    env.ok(&["create", "dup", "--cpus", "3"]);
    let config = env.vm_dir("dup").join("config.ini");
    let before = fs::read(&config).unwrap();
    let err = env.fail(&["create", "dup", "--cpus", "5"], 1);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(fs::read(&config).unwrap(), before);
    assert_eq!(entries(&env.lib()), vec!["dup.xhyvm"]);
}

#[test]
fn failed_create_leaves_nothing_behind() {
    let env = Env::new();
    let kernel = env.file("k", "k");
    // Missing kernel.
    let err = env.fail(&["create", "f", "--kernel", "/no/such/kernel"], 1);
    assert!(
        err.contains("--kernel /no/such/kernel: no such file"),
        "{err}"
    );
    // Missing ISO.
    let err = env.fail(&["create", "f", "--iso", "/no/such.iso"], 1);
    assert!(err.contains("--iso"), "{err}");
    // A disk that cannot be created (its folder does not exist), after the
    // kernel was already copied into the staging folder.
    let err = env.fail(
        &[
            "create",
            "f",
            "--kernel",
            kernel.to_str().unwrap(),
            "--disk",
            "1G",
            "--disk-path",
            "/no/such/dir/d.img",
        ],
        1,
    );
    assert!(err.contains("/no/such/dir/d.img"), "{err}");
    // disk:auto without a disk.
    let err = env.fail(&["create", "f", "--kernel", "disk:auto"], 1);
    assert!(err.contains("disk:auto"), "{err}");
    // --disk must not overwrite an existing file.
    let existing = env.file("existing.img", "precious");
    let err = env.fail(
        &[
            "create",
            "f",
            "--disk",
            "1G",
            "--disk-path",
            existing.to_str().unwrap(),
        ],
        1,
    );
    assert!(err.contains("overwrite"), "{err}");
    assert_eq!(fs::read_to_string(&existing).unwrap(), "precious");
    // Nothing at all in the library: no VM, no staging folder.
    assert!(entries(&env.lib()).is_empty(), "{:?}", entries(&env.lib()));
}

#[test]
fn unknown_vm_and_conflicting_flags() {
    let env = Env::new();
    let err = env.fail(&["info", "ghost"], 1);
    assert!(err.contains("no VM named 'ghost'"), "{err}");
    assert!(err.contains(&env.lib().display().to_string()), "{err}");
    env.fail(&["delete", "ghost", "--yes"], 1);
    env.fail(&["edit", "ghost"], 1);
    let err = env.fail(&["create", "c", "--iso", "x.iso", "--kernel", "k"], 2);
    assert!(err.contains("cannot be used with"), "{err}");
    let err = env.fail(&["create", "c", "--initrd", "i"], 2);
    assert!(err.contains("--kernel"), "{err}");
    let initrd = env.file("i", "i");
    let err = env.fail(
        &[
            "create",
            "c",
            "--kernel",
            "disk:auto",
            "--disk-path",
            initrd.to_str().unwrap(),
            "--initrd",
            initrd.to_str().unwrap(),
        ],
        1,
    );
    assert!(err.contains("the initrd comes from the disk"), "{err}");
    assert!(cli_support::entries(&env.lib()).is_empty());
}

#[test]
fn invalid_config_is_listed_as_invalid_and_info_names_file_section_key() {
    let env = Env::new();
    env.ok(&["create", "good"]);
    env.ok(&["create", "bad"]);
    let config = env.vm_dir("bad").join("config.ini");
    let text = fs::read_to_string(&config)
        .unwrap()
        .replace("size = 1G", "size = 12 parsecs");
    fs::write(&config, &text).unwrap();

    let output = env.lib_cmd(&["list"]).output().unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    let bad_line = stdout.lines().find(|l| l.starts_with("bad ")).unwrap();
    assert!(bad_line.contains("invalid"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("good ") && l.contains("stopped"))
    );
    assert!(
        stderr.contains("[memory] size = \"12 parsecs\""),
        "{stderr}"
    );

    let list: serde_json::Value = serde_json::from_str(&env.ok(&["list", "--json"])).unwrap();
    let bad = list
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "bad")
        .unwrap();
    assert!(bad["error"].as_str().unwrap().contains("[memory] size"));

    let err = env.fail(&["info", "bad"], 1);
    assert!(err.contains(&config.display().to_string()), "{err}");
    assert!(
        err.contains("[memory] size = \"12 parsecs\" is not allowed"),
        "{err}"
    );
    // An invalid config can still be fixed with edit, and deleted.
    let fix = env.script("fix.sh", "sed -i 's/^size = .*/size = 2G/' \"$1\"");
    env.ok_with_editor(&["edit", "bad"], &fix);
    env.ok(&["info", "bad"]);
    assert_eq!(
        text.lines().count(),
        fs::read_to_string(&config).unwrap().lines().count()
    );
}

#[test]
fn syntax_errors_name_the_line() {
    let env = Env::new();
    env.ok(&["create", "s"]);
    let config = env.vm_dir("s").join("config.ini");
    fs::write(&config, "[machine]\nthis line is wrong\n").unwrap();
    let err = env.fail(&["info", "s"], 1);
    assert!(err.contains("is not valid INI: line 2"), "{err}");
    env.ok(&["create", "t"]);
    let config = env.vm_dir("t").join("config.ini");
    let garble = env.script("garble.sh", "echo '[broken' >> \"$1\"");
    let before = fs::read(&config).unwrap();
    let err = env.fail_with_editor(&["edit", "t"], &garble, 1);
    assert!(err.contains("no closing ']'"), "{err}");
    assert_eq!(fs::read(&config).unwrap(), before);
}
