//! Harness for the integration tests that boot the small guests of
//! `tests/guests` on the in-process VMM.
//!
//! - [`guest`] builds every guest once per test process and returns one's path.
//! - [`run_guest`] runs a VM to its end (with a timeout) and returns its exit
//!   reason and serial output; [`start_guest`] gives a [`RunningGuest`] to
//!   poll while it runs ([`RunningGuest::wait_for_serial`]).
//! - [`host_kind`] says whether guests run on hardware virtualization, on
//!   the kvm-pvm instruction emulator, or not at all.
//!
//! Every wait has a timeout; a VM that outlives it is stopped and the test
//! panics with the serial output so far. Nothing here may hang.

#![allow(dead_code)] // each test binary uses its own part of the harness

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use xhyve_manager::vmm::{self, Command, ExitReason, VmConfig, VmHandle};

/// Exit codes the guests write to the debug exit port (tests/guests/rt/rt_defs.h).
pub const EXIT_OK: u32 = 0x10;
pub const EXIT_FAIL: u32 = 0x11;
pub const EXIT_BAD_LOAD: u32 = 0x12;

/// How long the VMM gets to join its threads once the VM has ended.
const JOIN_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a stopped VM gets to report its exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest single sleep while waiting for serial output (also how often the
/// VM's exit is checked).
const POLL_STEP: Duration = Duration::from_millis(100);

/// Every guest the Makefile builds.
pub const GUESTS: &[&str] = &[
    "pvh",
    "bzimage64",
    "bzimage32",
    "acpi",
    "smp",
    "counter",
    "reset",
    "poweroff",
    "triplefault",
    "spin",
    "emufail",
    "virtio",
    "echo",
    "acpid",
    "cad",
    "net",
];

fn guests_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guests")
}

fn guests_out() -> PathBuf {
    // CARGO_TARGET_TMPDIR is <target>/tmp; the guests go to <target>/guests.
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("guests")
}

static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();

fn build_guests() -> Result<PathBuf, String> {
    let out = guests_out();
    fs::create_dir_all(&out).map_err(|e| format!("create {}: {e}", out.display()))?;
    // Test binaries of one target dir may run at the same time: one make at a time.
    let lock_path = out.join(".build.lock");
    let lock = File::create(&lock_path).map_err(|e| format!("{}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("lock {}: {e}", lock_path.display()))?;
    let output = Process::new("make")
        .arg("-C")
        .arg(guests_src())
        .arg(format!("OUT={}", out.display()))
        .output()
        .map_err(|e| format!("cannot run make (is it installed?): {e}"))?;
    drop(lock);
    if !output.status.success() {
        return Err(format!(
            "building the test guests failed ({}):\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(out)
}

/// Path of the built guest `name` (one of [`GUESTS`]); builds them all on
/// first use. Panics with make's output if the build fails.
pub fn guest(name: &str) -> PathBuf {
    assert!(GUESTS.contains(&name), "unknown test guest {name:?}");
    match BUILT.get_or_init(build_guests) {
        Ok(dir) => dir.join(name),
        Err(e) => panic!("{e}"),
    }
}

/// What kind of KVM the tests run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostKind {
    /// VT-x / AMD-V: guests run at native speed and every instruction works.
    HardwareVirt,
    /// The kvm-pvm instruction emulator: slow ring 0, no SSE/AVX/xgetbv.
    KvmPvm,
    /// No usable /dev/kvm.
    NoKvm,
}

/// Detect (and print) the host kind.
pub fn host_kind() -> HostKind {
    let kind = if fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        HostKind::NoKvm
    } else if Path::new("/sys/module/kvm_pvm").exists() {
        HostKind::KvmPvm
    } else {
        HostKind::HardwareVirt
    };
    eprintln!("host kind: {kind:?}");
    kind
}

/// Serial output captured from COM1; cheap to clone, safe to share.
#[derive(Clone, Default)]
pub struct SerialCapture {
    inner: Arc<(Mutex<Vec<u8>>, Condvar)>,
}

impl SerialCapture {
    pub fn new() -> Self {
        Self::default()
    }

    /// A writer to give the VMM as its console.
    pub fn writer(&self) -> Box<dyn Write + Send> {
        Box::new(self.clone())
    }

    /// Everything captured so far (lossy UTF-8).
    pub fn text(&self) -> String {
        let bytes = self.inner.0.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Wait up to `timeout` for the output to contain `pattern`; true if it does.
    pub fn wait_for(&self, pattern: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (lock, cond) = &*self.inner;
        let mut bytes = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if String::from_utf8_lossy(&bytes).contains(pattern) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            bytes = cond
                .wait_timeout(bytes, (deadline - now).min(POLL_STEP))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl Write for SerialCapture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (lock, cond) = &*self.inner;
        lock.lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        cond.notify_all();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// How a guest run ended.
#[derive(Clone, Debug)]
pub struct GuestRun {
    pub exit: ExitReason,
    pub serial: String,
}

impl GuestRun {
    /// Values of every `KEY=value` line for `key`, in order.
    pub fn values(&self, key: &str) -> Vec<String> {
        values(&self.serial, key)
    }

    /// The value of the single `KEY=value` line for `key`; panics (with the
    /// serial output) when there is none.
    pub fn value(&self, key: &str) -> String {
        self.values(key)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no {key}= line in the serial output:\n{}", self.serial))
    }

    /// Panics (with the serial output) unless the guest ended through the
    /// debug port with [`EXIT_OK`].
    pub fn assert_ok(&self) {
        assert_eq!(
            self.exit,
            ExitReason::DebugExit { code: EXIT_OK },
            "guest did not exit OK; serial output:\n{}",
            self.serial
        );
    }
}

/// Values of every `KEY=value` line of `serial` for `key`.
pub fn values(serial: &str, key: &str) -> Vec<String> {
    serial
        .lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .map(|v| v.trim_end_matches('\r').to_string())
        .collect()
}

/// Parse `0x...` (or decimal) as printed by the guests.
pub fn parse_num(s: &str) -> u64 {
    let s = s.trim();
    let parsed = match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    parsed.unwrap_or_else(|e| panic!("{s:?} is not a number: {e}"))
}

/// FNV-1a 32-bit, the checksum the guests print (tests/guests/rt/rt.c).
pub fn fnv1a32(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// A config for guest `guest` named `name`: 128 MiB, 1 vCPU, a short command line.
pub fn vm_config(name: &str, guest_name: &str) -> VmConfig {
    let mut config = VmConfig::new(name, guest(guest_name), 128);
    config.cmdline = format!("console=ttyS0 test={name}");
    config
}

/// A VM that is running, with its serial output captured. Dropping it stops
/// the VM (bounded by timeouts).
pub struct RunningGuest {
    name: String,
    handle: Option<VmHandle>,
    serial: SerialCapture,
    exit: Option<ExitReason>,
}

/// Build and start `config` with a capturing console. Panics with a clear
/// message on a host without a usable /dev/kvm.
pub fn start_guest(config: VmConfig) -> RunningGuest {
    let name = config.name.clone();
    static KVM: OnceLock<HostKind> = OnceLock::new();
    assert_ne!(
        *KVM.get_or_init(host_kind),
        HostKind::NoKvm,
        "VM {name}: these tests need a usable /dev/kvm"
    );
    let serial = SerialCapture::new();
    let vm = vmm::build(config, serial.writer())
        .unwrap_or_else(|e| panic!("building VM {name} failed: {e} ({e:?})"));
    let handle = vm
        .start()
        .unwrap_or_else(|e| panic!("starting VM {name} failed: {e} ({e:?})"));
    RunningGuest {
        name,
        handle: Some(handle),
        serial,
        exit: None,
    }
}

impl RunningGuest {
    pub fn serial(&self) -> String {
        self.serial.text()
    }

    pub fn capture(&self) -> &SerialCapture {
        &self.serial
    }

    pub fn handle(&self) -> &VmHandle {
        self.handle.as_ref().expect("VM handle already consumed")
    }

    /// The exit reason if the VM has ended (does not block).
    pub fn exit_reason(&mut self) -> Option<ExitReason> {
        if self.exit.is_none() {
            self.exit = self.handle().exited().try_recv().ok();
        }
        self.exit.clone()
    }

    /// Wait up to `timeout` for `pattern` in the serial output; returns the
    /// output. Panics (after stopping the VM) on timeout or if the VM ends first.
    pub fn wait_for_serial(&mut self, pattern: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let step = deadline
                .saturating_duration_since(Instant::now())
                .min(POLL_STEP);
            if self.serial.wait_for(pattern, step) {
                return self.serial.text();
            }
            if let Some(exit) = self.exit_reason() {
                // Output written just before the exit still counts.
                if self.serial.wait_for(pattern, Duration::ZERO) {
                    return self.serial.text();
                }
                panic!(
                    "VM {} ended ({exit:?}) before printing {pattern:?}; serial output:\n{}",
                    self.name,
                    self.serial.text()
                );
            }
            if Instant::now() >= deadline {
                self.stop_quietly();
                panic!(
                    "VM {}: no {pattern:?} within {timeout:?}; serial output:\n{}",
                    self.name,
                    self.serial.text()
                );
            }
        }
    }

    /// Send a control command and return its response.
    pub fn request(&self, command: Command) -> vmm::Response {
        self.handle()
            .request(command.clone())
            .unwrap_or_else(|e| panic!("VM {}: {command:?} failed: {e}", self.name))
    }

    /// Wait up to `timeout` for the VM to end by itself; panics (after
    /// stopping it) with the serial output otherwise.
    pub fn wait_exit(mut self, timeout: Duration) -> GuestRun {
        let exit = match self.exit.take() {
            Some(exit) => exit,
            None => match self.handle().exited().recv_timeout(timeout) {
                Ok(exit) => exit,
                Err(_) => {
                    self.stop_quietly();
                    panic!(
                        "VM {} did not end within {timeout:?}; serial output:\n{}",
                        self.name,
                        self.serial.text()
                    );
                }
            },
        };
        self.join();
        GuestRun {
            exit,
            serial: self.serial.text(),
        }
    }

    /// Stop the VM with `Command::Stop` and return how it ended.
    pub fn stop(mut self) -> GuestRun {
        if self.exit_reason().is_none() {
            // A VM that ends on its own right now may no longer answer.
            let _ = self.handle().request(Command::Stop);
        }
        self.wait_exit(STOP_TIMEOUT)
    }

    fn stop_quietly(&mut self) {
        if let Some(handle) = &self.handle {
            let _ = handle.request(Command::Stop);
            let _ = handle.exited().recv_timeout(STOP_TIMEOUT);
        }
        self.join();
    }

    /// Join the VMM's threads, bounded by `JOIN_TIMEOUT`.
    fn join(&mut self) {
        let Some(handle) = self.handle.take() else {
            return;
        };
        let (tx, rx) = crossbeam_channel::bounded(1);
        thread::spawn(move || {
            let _ = tx.send(handle.wait());
        });
        if rx.recv_timeout(JOIN_TIMEOUT).is_err() {
            panic!(
                "VM {}: the VMM did not join its threads within {JOIN_TIMEOUT:?}",
                self.name
            );
        }
    }
}

impl Drop for RunningGuest {
    fn drop(&mut self) {
        if self.handle.is_some() {
            if thread::panicking() {
                // Never panic again while unwinding; just try to stop.
                if let Some(handle) = self.handle.take() {
                    let _ = handle.request(Command::Stop);
                    thread::spawn(move || drop(handle.wait()));
                }
            } else {
                self.stop_quietly();
            }
        }
    }
}

/// Run `config` until the VM ends by itself, for at most `timeout`. On
/// timeout the VM is stopped and the test panics with the serial output.
pub fn run_guest(config: VmConfig, timeout: Duration) -> GuestRun {
    start_guest(config).wait_exit(timeout)
}

/// A temporary directory for test fixtures (removed when dropped).
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("xhyve-guest-test")
        .tempdir()
        .expect("create a temporary directory")
}

/// Deterministic pseudo-random bytes (xorshift64*) for fixtures.
pub fn pattern_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

/// An error and all its sources, joined with ": ".
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}
