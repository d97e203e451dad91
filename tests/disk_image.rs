//! Sparse raw disk images: instant creation without writing data, growing,
//! refusing to shrink or overwrite, apparent vs allocated size; and the
//! `disk` subcommands as a command line parses them.

use std::os::unix::fs::FileExt;

use clap::Parser;
use xhyve_manager::manager::cli::{DiskCommand, run_disk};
use xhyve_manager::manager::disk::{self, Error};

const GIB: u64 = 1 << 30;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: DiskCommand,
}

fn parse(args: &[&str]) -> DiskCommand {
    Cli::try_parse_from(std::iter::once("disk").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
        .command
}

#[test]
fn a_10_gib_image_allocates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.img");
    disk::create_sparse(&path, 10 * GIB).unwrap();
    let (apparent, allocated) = disk::usage(&path).unwrap();
    assert_eq!(apparent, 10 * GIB);
    assert!(allocated < 1 << 20, "allocated {allocated} bytes");
    // Writing one block allocates about one block.
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&[0xAB; 4096], 5 * GIB).unwrap();
    file.sync_all().unwrap();
    let (apparent, allocated) = disk::usage(&path).unwrap();
    assert_eq!(apparent, 10 * GIB);
    assert!(
        (4096..1 << 20).contains(&allocated),
        "allocated {allocated} bytes"
    );
}

#[test]
fn existing_files_are_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.img");
    std::fs::write(&path, b"precious").unwrap();
    let err = disk::create_sparse(&path, GIB).unwrap_err();
    assert!(matches!(err, Error::Exists(_)), "{err}");
    assert!(err.to_string().contains("already exists"));
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");
}

#[test]
fn resize_grows_keeps_data_and_refuses_to_shrink() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.img");
    disk::create_sparse(&path, GIB).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .write_all_at(b"data", 1000)
        .unwrap();
    assert_eq!(disk::resize(&path, 3 * GIB, false).unwrap(), GIB);
    let (apparent, allocated) = disk::usage(&path).unwrap();
    assert_eq!(apparent, 3 * GIB);
    assert!(allocated < 1 << 20);
    let mut buf = [0u8; 4];
    std::fs::File::open(&path)
        .unwrap()
        .read_exact_at(&mut buf, 1000)
        .unwrap();
    assert_eq!(&buf, b"data");

    let err = disk::resize(&path, GIB, false).unwrap_err();
    assert!(
        matches!(err, Error::Shrink { old, new, .. } if old == 3 * GIB && new == GIB),
        "{err}"
    );
    assert!(err.to_string().contains("--allow-shrink"));
    assert_eq!(disk::usage(&path).unwrap().0, 3 * GIB);
    assert_eq!(disk::resize(&path, 2 * GIB, true).unwrap(), 3 * GIB);
    assert_eq!(disk::usage(&path).unwrap().0, 2 * GIB);
}

#[test]
fn resize_refuses_non_raw_images() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.qcow2");
    std::fs::write(&path, b"QFI\xfb\0\0\0\x03").unwrap();
    let err = disk::resize(&path, GIB, false).unwrap_err();
    assert!(err.to_string().contains("qcow2"), "{err}");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 8);
}

#[test]
fn subcommands_parse_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cli.img");
    let p = path.to_str().unwrap();
    run_disk(&parse(&["create", p, "2G"])).unwrap();
    assert_eq!(disk::usage(&path).unwrap().0, 2 * GIB);
    // A bare number counts MiB; +SIZE grows by that much.
    run_disk(&parse(&["resize", p, "+512M"])).unwrap();
    assert_eq!(disk::usage(&path).unwrap().0, 2 * GIB + GIB / 2);
    assert!(run_disk(&parse(&["resize", p, "1024"])).is_err());
    run_disk(&parse(&["resize", p, "1024", "--allow-shrink"])).unwrap();
    assert_eq!(disk::usage(&path).unwrap().0, GIB);
    run_disk(&parse(&["info", p])).unwrap();
    assert!(matches!(
        parse(&["which-kernel", p]),
        DiskCommand::BootInfo { .. }
    ));
    assert!(matches!(
        parse(&["boot-info", p]),
        DiskCommand::BootInfo { .. }
    ));
    assert!(
        run_disk(&parse(&["boot-info", p])).is_err(),
        "an empty disk has no kernel"
    );
    let err = run_disk(&parse(&["create", p, "2X"])).unwrap_err();
    assert!(format!("{err:#}").contains("2X"), "{err:#}");
}
