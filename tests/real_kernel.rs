//! Debian's cloud kernel on our VMM, as far as this host lets it get.
//!
//! Fixture: `scripts/fixtures/debian-kernel.sh` (scripts/test.sh runs it)
//! puts `vmlinuz`, `vmlinux` and `initramfs.cpio` in
//! `$XHYVE_FIXTURE_DIR/debian` (default `target/fixtures/debian`). Without
//! them these tests fail and say how to get them.
//!
//! What is asserted depends on the host's KVM:
//! - everywhere: `Linux version`, `Command line:` with our command line,
//!   the `BIOS-e820` map of the configured RAM, `Hypervisor detected: KVM`,
//!   `ACPI: RSDP`, SMP configuration from the MADT with the
//!   IOAPIC, and `smpboot: Allowing 2 CPUs`;
//! - with hardware virtualization (kvm_intel / kvm_amd) also the
//!   initramfs's userspace marker.
//!
//! Bounds, on kvm-pvm (an instruction emulator, see /work/shared/README.md;
//! the kernel dies there on an emulation failure ~70 s into its own log):
//! - PVH: `PVM_BOUND_PVH`. Measured: ~35 s of emulated early setup pass
//!   before the first console byte, then `Linux version` ... `ACPI` within
//!   a few seconds; smpboot follows ~10 s of guest time later.
//! - bzImage: `PVM_BOUND_BZIMAGE`. The decompressor alone needs ~150 s to
//!   unpack the 50 MB LZ4 payload before the same ~35 s of early setup.
//!
//! With hardware virtualization `HW_BOUND` is ample. A run stops as soon
//! as everything asserted has appeared or the VM has exited, and the VM is
//! always stopped.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use xhyve_manager::vmm::boot::{self, EntryPoint, KernelSpec};
use xhyve_manager::vmm::layout::{BIOS_AREA_END, EBDA_START, HIMEM_START, MIB, PAGE_SIZE};
use xhyve_manager::vmm::{self, BootProtocol, Command, VmConfig, memory};

const MEMORY_MIB: u64 = 512;
const VCPUS: u8 = 2;
const USERSPACE_MARKER: &str = "XHYVE-USERSPACE-OK";
/// Parameters that postpone the kvm-pvm emulator's failures
/// (/work/shared/README.md), then what makes a crash end the VM at once.
const CMDLINE: &str = "console=ttyS0 earlyprintk=serial noxsave \
    clearcpuid=cx16,popcnt,rdtscp,rdpid,smap,pcid,invpcid nofsgsbase mitigations=off \
    panic=-1";
const PVM_BOUND_PVH: Duration = Duration::from_secs(150);
const PVM_BOUND_BZIMAGE: Duration = Duration::from_secs(330);
const HW_BOUND: Duration = Duration::from_secs(30);
/// One guest at a time: two 2-vCPU guests on a 2-core host slow each other.
static ONE_GUEST: Mutex<()> = Mutex::new(());

struct Fixture {
    vmlinuz: PathBuf,
    vmlinux: PathBuf,
    initramfs: PathBuf,
    version: String,
}

fn fixture() -> Fixture {
    let dir = std::env::var_os("XHYVE_FIXTURE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fixtures"))
        .join("debian");
    let f = Fixture {
        vmlinuz: dir.join("vmlinuz"),
        vmlinux: dir.join("vmlinux"),
        initramfs: dir.join("initramfs.cpio"),
        version: std::fs::read_to_string(dir.join("kernel-version")).unwrap_or_default(),
    };
    for path in [&f.vmlinuz, &f.vmlinux, &f.initramfs] {
        assert!(
            path.is_file(),
            "real-kernel fixture {} is missing: run scripts/fixtures/debian-kernel.sh \
             (or scripts/test.sh) first",
            path.display()
        );
    }
    f
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Host {
    /// kvm-pvm: KVM's API on an instruction emulator.
    Pvm,
    /// VT-x / AMD-V.
    HardwareVirtualization,
}

fn detect_host() -> Host {
    let module = |name: &str| Path::new("/sys/module").join(name).exists();
    let dmesg_says_pvm = || {
        std::process::Command::new("dmesg")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains("kvm-pvm"))
            .unwrap_or(false)
    };
    assert!(Path::new("/dev/kvm").exists(), "these tests need /dev/kvm");
    let host = if module("kvm_pvm") || dmesg_says_pvm() {
        Host::Pvm
    } else if module("kvm_intel") || module("kvm_amd") {
        Host::HardwareVirtualization
    } else {
        // Unknown flavour of KVM: expect no more than from the emulator.
        Host::Pvm
    };
    eprintln!("real_kernel: host is {host:?}");
    host
}

/// COM1 output, shared with the test.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// The e820 lines Linux prints for our map of `MEMORY_MIB` (see
/// `vmm::boot`: RAM below the EBDA, the BIOS area reserved, RAM from 1 MiB).
fn expected_e820_lines() -> Vec<String> {
    let line = |start: u64, end: u64, kind: &str| {
        format!("BIOS-e820: [mem {start:#018x}-{:#018x}] {kind}", end - 1)
    };
    vec![
        line(0, EBDA_START, "usable"),
        line(EBDA_START, BIOS_AREA_END, "reserved"),
        line(HIMEM_START, MEMORY_MIB * MIB, "usable"),
    ]
}

fn expected_markers(host: Host) -> Vec<String> {
    let mut m = vec![
        "Linux version".to_string(),
        format!("Command line: {CMDLINE}"),
    ];
    m.extend(expected_e820_lines());
    m.push("Hypervisor detected: KVM".into());
    m.push("ACPI: RSDP".into());
    m.push("ACPI: Using ACPI (MADT) for SMP configuration information".into());
    m.push("IOAPIC[0]:".into());
    m.push(format!("smpboot: Allowing {VCPUS} CPUs"));
    if host == Host::HardwareVirtualization {
        m.push(USERSPACE_MARKER.into());
    }
    m
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A kernel booting, either in this process through the library API or in
/// a child `xhyve-manager start` (the path a user takes).
enum Running {
    InProcess {
        handle: vmm::VmHandle,
        exited: crossbeam_channel::Receiver<vmm::ExitReason>,
    },
    Cli {
        child: std::process::Child,
        home: tempfile::TempDir,
        reader: Option<std::thread::JoinHandle<()>>,
    },
}

impl Running {
    /// Has the VM ended on its own? Returns a description if so.
    fn poll_exit(&mut self) -> Option<String> {
        match self {
            Running::InProcess { exited, .. } => exited
                .recv_timeout(Duration::from_millis(250))
                .ok()
                .map(|r| format!("{r:?}")),
            Running::Cli { child, .. } => {
                std::thread::sleep(Duration::from_millis(250));
                child
                    .try_wait()
                    .unwrap()
                    .map(|status| format!("start exited: {status}"))
            }
        }
    }

    /// Collect a VM that has already ended: join its threads or process.
    /// (Its one exit message was taken by `poll_exit`; waiting for another
    /// would only time out.)
    fn reap(self) {
        match self {
            Running::InProcess { handle, .. } => {
                handle.wait();
            }
            Running::Cli {
                mut child, reader, ..
            } => {
                let _ = child.wait();
                if let Some(reader) = reader {
                    let _ = reader.join();
                }
            }
        }
    }

    /// Stop a VM that is still running and wait for every thread/process.
    fn stop(self) -> Option<String> {
        match self {
            Running::InProcess { handle, exited } => {
                let _ = handle.request(Command::Stop);
                let reason = exited.recv_timeout(Duration::from_secs(10)).ok();
                assert!(
                    reason.is_some(),
                    "the VM did not stop within 10 s of Command::Stop"
                );
                handle.wait();
                reason.map(|r| format!("{r:?}"))
            }
            Running::Cli {
                mut child,
                home,
                reader,
            } => {
                // Through the control socket, as a user would from another terminal.
                let stop = std::process::Command::new(env!("CARGO_BIN_EXE_xhyve-manager"))
                    .arg("--home")
                    .arg(home.path())
                    .args(["stop", "real", "--force"])
                    .output()
                    .unwrap();
                let deadline = Instant::now() + Duration::from_secs(15);
                let status = loop {
                    if let Some(status) = child.try_wait().unwrap() {
                        break Some(status);
                    }
                    if Instant::now() >= deadline {
                        let _ = child.kill();
                        let _ = child.wait();
                        break None;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                };
                if let Some(reader) = reader {
                    let _ = reader.join();
                }
                let status = status.unwrap_or_else(|| {
                    panic!("`start` did not end within 15 s of `stop --force`: {stop:?}")
                });
                Some(format!(
                    "start exited: {status}; stop: {}",
                    String::from_utf8_lossy(&stop.stderr).trim()
                ))
            }
        }
    }
}

/// How the kernel is started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    LibraryApi,
    /// `xhyve-manager create` then `xhyve-manager start` (foreground, stdout piped).
    StartCommand,
}

fn start(
    kernel: &Path,
    initrd: &Path,
    protocol: BootProtocol,
    via: Via,
    console: &Capture,
) -> Running {
    match via {
        Via::LibraryApi => {
            let mut config = VmConfig::new("real-kernel", kernel, MEMORY_MIB);
            config.vcpus = VCPUS;
            config.initrd = Some(initrd.to_path_buf());
            config.cmdline = CMDLINE.to_string();
            config.boot_protocol = protocol;
            let vm = vmm::build(config, Box::new(console.clone())).expect("build the VM");
            let handle = vm.start().expect("start the VM");
            let exited = handle.exited();
            Running::InProcess { handle, exited }
        }
        Via::StartCommand => {
            let home = tempfile::tempdir().unwrap();
            let bin = env!("CARGO_BIN_EXE_xhyve-manager");
            let protocol = match protocol {
                BootProtocol::Auto => "auto",
                BootProtocol::Linux64 => "linux64",
                BootProtocol::Linux32 => "linux32",
                BootProtocol::Pvh => "pvh",
            };
            let created = std::process::Command::new(bin)
                .arg("--home")
                .arg(home.path())
                .args([
                    "create",
                    "real",
                    "--no-copy",
                    "--memory",
                    &format!("{MEMORY_MIB}M"),
                ])
                .args([
                    "--cpus",
                    &VCPUS.to_string(),
                    "--protocol",
                    protocol,
                    "--cmdline",
                    CMDLINE,
                ])
                .arg("--kernel")
                .arg(kernel)
                .arg("--initrd")
                .arg(initrd)
                .output()
                .unwrap();
            assert!(created.status.success(), "create: {created:?}");
            let mut child = std::process::Command::new(bin)
                .arg("--home")
                .arg(home.path())
                .args(["start", "real"])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdout = child.stdout.take().unwrap();
            let mut sink = console.clone();
            let reader = std::thread::spawn(move || {
                let _ = std::io::copy(&mut stdout, &mut sink);
            });
            Running::Cli {
                child,
                home,
                reader: Some(reader),
            }
        }
    }
}

/// Boot `kernel` and check its console against what this host should show.
fn boot_and_check(kernel: &Path, protocol: BootProtocol, via: Via) {
    let fx = fixture();
    let host = detect_host();
    let _one = ONE_GUEST.lock().unwrap_or_else(|e| e.into_inner());
    let bound = match (host, protocol) {
        (Host::HardwareVirtualization, _) => HW_BOUND,
        (Host::Pvm, BootProtocol::Pvh) => PVM_BOUND_PVH,
        (Host::Pvm, _) => PVM_BOUND_BZIMAGE,
    };
    eprintln!(
        "real_kernel: {} ({}) via {protocol:?} and {via:?}, bound {bound:?}",
        kernel.display(),
        fx.version.trim()
    );

    let console = Capture::default();
    let mut running = start(kernel, &fx.initramfs, protocol, via, &console);
    let markers = expected_markers(host);
    let deadline = Instant::now() + bound;
    let mut exit = None;
    loop {
        let log = console.text();
        if markers.iter().all(|m| log.contains(m.as_str())) {
            break;
        }
        if let Some(reason) = running.poll_exit() {
            exit = Some(reason);
            break;
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    // Always stop the VM, whatever happened, before asserting.
    if exit.is_none() {
        exit = running.stop();
    } else {
        running.reap();
    }

    let log = console.text();
    let missing: Vec<&String> = markers
        .iter()
        .filter(|m| !log.contains(m.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "missing from the console after at most {bound:?} on {host:?} (exit: {exit:?}): {missing:?}\n--- last console lines ---\n{}",
        tail(&log)
    );
    eprintln!(
        "real_kernel: all {} markers seen; exit: {exit:?}",
        markers.len()
    );
}

/// The user's path: `create` + `start` in a child process, `stop --force`
/// over the control socket.
#[test]
fn bzimage_boots_through_the_64bit_entry_with_start() {
    let fx = fixture();
    boot_and_check(&fx.vmlinuz, BootProtocol::Linux64, Via::StartCommand);
}

#[test]
fn vmlinux_boots_through_pvh() {
    let fx = fixture();
    boot_and_check(&fx.vmlinux, BootProtocol::Pvh, Via::LibraryApi);
}

/// The loaders alone on the real images (no vCPU runs).
#[test]
fn real_images_load() {
    let fx = fixture();
    let initrd_len = std::fs::metadata(&fx.initramfs).unwrap().len();
    for (kernel, protocol) in [
        (&fx.vmlinuz, BootProtocol::Auto),
        (&fx.vmlinux, BootProtocol::Auto),
    ] {
        let mem = memory::create_guest_memory(MEMORY_MIB).unwrap();
        let spec = KernelSpec {
            kernel,
            initrd: Some(&fx.initramfs),
            cmdline: CMDLINE,
            protocol,
            memory_mib: MEMORY_MIB,
        };
        let setup = boot::load(&mem, &spec).unwrap_or_else(|e| panic!("{}: {e}", kernel.display()));
        match setup.entry {
            EntryPoint::Linux64 { rip, .. } => {
                assert_eq!(kernel, &fx.vmlinuz);
                assert_eq!(rip, HIMEM_START + 0x200);
            }
            EntryPoint::Pvh { eip, .. } => {
                assert_eq!(kernel, &fx.vmlinux);
                // Linux's pvh_start_xen lives in its .text, above 16 MiB.
                assert!((16 * MIB..64 * MIB).contains(&eip), "{eip:#x}");
            }
            other => panic!("{}: unexpected entry {other:?}", kernel.display()),
        }
        let (addr, size) = setup.initrd.unwrap();
        assert_eq!(size, initrd_len);
        assert_eq!(addr.0 % PAGE_SIZE, 0);
        assert!(
            MEMORY_MIB * MIB - (addr.0 + size) < PAGE_SIZE,
            "initrd as high as possible"
        );
    }
}
