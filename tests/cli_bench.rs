//! `bench NAME` through the real binary: it boots the guest the asked number
//! of times and reports each run's end. Times are printed, never asserted.

mod common;

use std::process::Command;

fn xhyve(home: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xhyve-manager"));
    cmd.arg("--home").arg(home);
    cmd
}

#[test]
fn bench_boots_each_run_and_reports_how_it_ended() {
    common::host_kind();
    let home = common::temp_dir();
    let created = xhyve(home.path())
        .args(["create", "pw", "--memory", "128M", "--cmdline", "bench"])
        .arg("--kernel")
        .arg(common::guest("poweroff"))
        .output()
        .unwrap();
    assert!(created.status.success(), "{created:?}");

    let out = xhyve(home.path())
        .args(["bench", "pw", "--runs", "2", "--timeout", "60"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(out.status.success(), "{out:?}");
    let runs: Vec<&str> = stdout
        .lines()
        .filter(|l| l.trim_start().starts_with(['1', '2']) && l.ends_with("poweroff"))
        .collect();
    assert_eq!(runs.len(), 2, "two runs ending in poweroff: {stdout}");
    assert!(stdout.contains("build: min"), "{stdout}");
}

#[test]
fn bench_stops_at_the_marker() {
    common::host_kind();
    let home = common::temp_dir();
    let created = xhyve(home.path())
        .args(["create", "ct", "--memory", "128M"])
        .arg("--kernel")
        .arg(common::guest("counter"))
        .output()
        .unwrap();
    assert!(created.status.success(), "{created:?}");
    let out = xhyve(home.path())
        .args([
            "bench",
            "ct",
            "--runs",
            "1",
            "--until",
            "count=3",
            "--timeout",
            "60",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("marker seen, stopped"), "{stdout}");
    assert!(stdout.contains("marker: min"), "{stdout}");
}

#[test]
fn bench_of_an_unknown_vm_names_it() {
    let home = common::temp_dir();
    let out = xhyve(home.path()).args(["bench", "nope"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
}
