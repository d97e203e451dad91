//! `[boot] kernel = disk:auto` end to end: a GPT disk with an ext4 root
//! filesystem holding two kernels (real test guests) is attached to a VM;
//! `start` must boot the newest one with its initrd and `root=UUID=...`.

mod common;
mod disk_support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use disk_support::{filesystem, partitioned, place};

const ROOT_UUID: &str = "3f1a2b4c-5d6e-4f70-8192-a3b4c5d6e7f8";
const FS_MIB: u64 = 16;
const PART_START: u64 = 2048;
const PART_SECTORS: u64 = FS_MIB * 2048;

#[test]
fn start_boots_the_newest_kernel_installed_on_the_disk() {
    common::host_kind();
    let dir = common::temp_dir();
    let new_kernel = std::fs::read(common::guest("pvh")).unwrap();
    let old_kernel = std::fs::read(common::guest("reset")).unwrap();
    let initrd = common::pattern_bytes(7, 123_457);
    // 6.1.0-10 is newer than 6.1.0-9, although it sorts first as text.
    let files = vec![
        ("/boot/vmlinuz-6.1.0-9-amd64", old_kernel),
        (
            "/boot/initrd.img-6.1.0-9-amd64",
            common::pattern_bytes(8, 1000),
        ),
        ("/boot/vmlinuz-6.1.0-10-amd64", new_kernel),
        ("/boot/initrd.img-6.1.0-10-amd64", initrd.clone()),
        (
            "/etc/fstab",
            b"UUID=3f1a2b4c-5d6e-4f70-8192-a3b4c5d6e7f8 / ext4 defaults 0 1\n".to_vec(),
        ),
    ];
    let fs = filesystem(dir.path(), "root", "ext4", FS_MIB, ROOT_UUID, &files, &[]);
    let disk = dir.path().join("disk.img");
    partitioned(
        &disk,
        32,
        &format!("label: gpt\nstart={PART_START}, size={PART_SECTORS}, type=L\n"),
    );
    place(&disk, PART_START, &fs);

    let home = dir.path().join("lib");
    let bin = env!("CARGO_BIN_EXE_xhyve-manager");
    let created = Command::new(bin)
        .arg("--home")
        .arg(&home)
        .args([
            "create",
            "installed",
            "--memory",
            "128M",
            "--kernel",
            "disk:auto",
        ])
        .args(["--cmdline", "console=ttyS0 quiet"])
        .arg("--disk-path")
        .arg(&disk)
        .output()
        .unwrap();
    assert!(created.status.success(), "create: {created:?}");

    let boot_info = Command::new(bin)
        .args(["disk", "boot-info"])
        .arg(&disk)
        .output()
        .unwrap();
    let boot_info = String::from_utf8_lossy(&boot_info.stdout).into_owned();
    assert!(boot_info.contains("vmlinuz-6.1.0-10-amd64"), "{boot_info}");

    let mut child = Command::new(bin)
        .arg("--home")
        .arg(&home)
        .args(["start", "installed"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the disk:auto guest did not end within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    let serial = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{serial}");
    // The pvh guest ends through the debug port with EXIT_OK: 4 + code.
    assert_eq!(
        status.code(),
        Some(4 + common::EXIT_OK as i32),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = |key: &str| common::values(&serial, key);
    assert_eq!(
        run("ENTRY"),
        vec!["pvh"],
        "the newest kernel (the pvh guest) booted"
    );
    let cmdline = run("CMDLINE").join("");
    assert!(cmdline.starts_with("console=ttyS0 quiet"), "{cmdline}");
    assert!(
        cmdline.contains(&format!("root=UUID={ROOT_UUID}")),
        "{cmdline}"
    );
    let initrd_fact = run("INITRD").join("");
    let fields: Vec<&str> = initrd_fact.split(',').collect();
    assert_eq!(fields.len(), 3, "{initrd_fact}");
    assert_eq!(common::parse_num(fields[1]), initrd.len() as u64);
    assert_eq!(
        common::parse_num(fields[2]),
        u64::from(common::fnv1a32(&initrd))
    );
}
