//! The whole lifecycle (detached daemon, control and console sockets, run
//! lock, stale state, crash record) against a fake machine, so it runs
//! without KVM. The same scenarios run through the real binary and the
//! `counter` guest in tests/lifecycle_e2e.rs.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::runtime::{Paths, RunLock};
use super::session::{Input, Machine};
use super::*;
use crate::vmm::{ExitReason, Response, VmStatus};

/// Longest any wait in these tests may take.
const PATIENCE: Duration = Duration::from_secs(20);
/// Period of the fake guest's counter lines.
const TICK: Duration = Duration::from_millis(20);

/// A guest printing `count=N` lines; echoes input as `in=...`; powers off
/// on the power button unless its cmdline says `deaf`; triple-faults after
/// five lines when its cmdline says `crash`; answers status with an error
/// (as a VM does that ended while being asked) when it says `ending`.
struct FakeVm {
    state: Arc<Mutex<VmState>>,
    stop_tx: Sender<ExitReason>,
    exited_rx: Receiver<ExitReason>,
    input_tx: Sender<Vec<u8>>,
    thread: Option<std::thread::JoinHandle<()>>,
    deaf: bool,
    ending: bool,
}

fn fake_launch(
    config: VmConfig,
    mut console: Box<dyn Write + Send>,
) -> anyhow::Result<Box<dyn Machine>> {
    if config.cmdline.contains("fail") {
        anyhow::bail!("cannot build VM {}: no kernel", config.name);
    }
    let state = Arc::new(Mutex::new(VmState::Running));
    let (stop_tx, stop_rx) = crossbeam_channel::unbounded::<ExitReason>();
    let (exited_tx, exited_rx) = crossbeam_channel::bounded(1);
    let (input_tx, input_rx) = crossbeam_channel::unbounded::<Vec<u8>>();
    let crash = config.cmdline.contains("crash");
    let thread_state = Arc::clone(&state);
    let thread = std::thread::spawn(move || {
        let mut count = 0u64;
        let reason = loop {
            if let Ok(reason) = stop_rx.recv_timeout(TICK) {
                break reason;
            }
            while let Ok(bytes) = input_rx.try_recv() {
                let _ = write!(console, "in={}\r\n", String::from_utf8_lossy(&bytes));
            }
            if *thread_state.lock().unwrap() == VmState::Running {
                let _ = write!(console, "count={count}\r\n");
                count += 1;
                if crash && count == 5 {
                    break ExitReason::TripleFault { vcpu: 0 };
                }
            }
        };
        *thread_state.lock().unwrap() = VmState::Stopped;
        let _ = exited_tx.send(reason);
    });
    Ok(Box::new(FakeVm {
        state,
        stop_tx,
        exited_rx,
        input_tx,
        thread: Some(thread),
        deaf: config.cmdline.contains("deaf"),
        ending: config.cmdline.contains("ending"),
    }))
}

impl Machine for FakeVm {
    fn request(&self, command: Command) -> Result<Response, String> {
        let mut state = self.state.lock().unwrap();
        match (command, *state) {
            (Command::Status, _) if self.ending => Err("the VM has stopped".into()),
            (Command::Status, s) => Ok(Response::Status(VmStatus {
                name: "fake".into(),
                state: s,
                vcpus: 1,
                memory_mib: 64,
                uptime_secs: 0,
                exit_reason: None,
            })),
            (_, VmState::Stopped) => Err("the VM has stopped".into()),
            (Command::Pause, VmState::Running) => {
                *state = VmState::Paused;
                Ok(Response::Ok)
            }
            (Command::Resume, VmState::Paused) => {
                *state = VmState::Running;
                Ok(Response::Ok)
            }
            (Command::PowerButton, VmState::Running) => {
                if !self.deaf {
                    let _ = self.stop_tx.send(ExitReason::PowerOff);
                }
                Ok(Response::Ok)
            }
            (Command::Stop, _) => {
                let _ = self.stop_tx.send(ExitReason::Stopped);
                Ok(Response::Ok)
            }
            (command, s) => Err(format!("{command:?} is not allowed while {s:?}")),
        }
    }

    fn input(&self) -> Input {
        let tx = Mutex::new(self.input_tx.clone());
        Arc::new(move |bytes: &[u8]| {
            let _ = tx.lock().unwrap().send(bytes.to_vec());
        })
    }

    fn exited(&self) -> Receiver<ExitReason> {
        self.exited_rx.clone()
    }

    fn wait(mut self: Box<Self>) -> ExitReason {
        let _ = self.stop_tx.send(ExitReason::Stopped);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.exited_rx.try_recv().unwrap_or(ExitReason::Stopped)
    }
}

/// A detached fake VM, killed when the test ends however it ends.
struct Daemon {
    pid: u32,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = sys::kill(self.pid as i32, libc::SIGKILL);
    }
}

fn start_fake(dir: &Path, cmdline: &str) -> Result<Daemon, daemon::Error> {
    let lock = RunLock::acquire(dir, "fake").unwrap();
    let mut config = VmConfig::new("fake", "/nonexistent/kernel", 64);
    config.cmdline = cmdline.into();
    daemon::start_detached(lock, config, fake_launch).map(|pid| Daemon { pid })
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The highest `count=N` in the console log.
fn last_count(paths: &Paths) -> Option<u64> {
    let log = std::fs::read_to_string(&paths.console_log).unwrap_or_default();
    log.lines()
        .filter_map(|l| l.trim_end().strip_prefix("count="))
        .filter_map(|n| n.parse().ok())
        .max()
}

fn raw_request(paths: &Paths, line: &[u8]) -> serde_json::Value {
    let mut stream = UnixStream::connect(&paths.control).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let _ = stream.write_all(line);
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).unwrap();
    serde_json::from_str(&answer).unwrap()
}

#[test]
fn detached_vm_lifecycle() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let vm = start_fake(dir, "").unwrap();
    let paths = Paths::of(dir).unwrap();

    // Running, and only once.
    assert_eq!(runtime_state(dir), RuntimeState::Running { pid: vm.pid });
    let err = RunLock::acquire(dir, "fake").err().unwrap().to_string();
    assert!(err.contains(&format!("pid {}", vm.pid)), "{err}");
    let status = client::status(&paths.control, PATIENCE).unwrap();
    assert_eq!(status.pid, vm.pid);
    assert_eq!(status.status.state, VmState::Running);

    // Pause freezes the counter; resume lets it go on.
    wait_for("output", || last_count(&paths).is_some());
    client::request(&paths.control, &Command::Pause, PATIENCE).unwrap();
    assert_eq!(runtime_state(dir), RuntimeState::Paused { pid: vm.pid });
    let frozen = last_count(&paths);
    std::thread::sleep(TICK * 15);
    assert_eq!(last_count(&paths), frozen, "counter moved while paused");
    let refused = client::request(&paths.control, &Command::Pause, PATIENCE).unwrap_err();
    assert!(refused.to_string().contains("refused"), "{refused}");
    client::request(&paths.control, &Command::Resume, PATIENCE).unwrap();
    wait_for("the counter to continue", || last_count(&paths) > frozen);

    // The console shows output and takes input; closing it leaves the VM.
    let mut console = UnixStream::connect(&paths.console).unwrap();
    console.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("count=") {
        let n = console.read(&mut buf).unwrap();
        assert!(n > 0, "console closed");
        seen.extend_from_slice(&buf[..n]);
    }
    console.write_all(b"hello").unwrap();
    wait_for("input to reach the guest", || {
        std::fs::read_to_string(&paths.console_log)
            .unwrap()
            .contains("in=hello")
    });
    drop(console);
    std::thread::sleep(TICK * 5);
    assert!(is_running(dir));

    // Malformed and oversized requests: errors, and the VM keeps running.
    let reply = raw_request(&paths, b"{\"v\":1,\"cmd\":\"stop\"\n");
    assert_eq!(reply["error"]["code"], "bad_request");
    let mut big = vec![b' '; protocol::MAX_REQUEST_BYTES + 1];
    big.push(b'\n');
    let reply = raw_request(&paths, &big);
    assert_eq!(reply["error"]["code"], "too_large");
    assert!(is_running(dir));
    let reply = raw_request(&paths, b"{\"v\":1,\"cmd\":\"status\"}\n");
    assert_eq!(reply["result"]["state"], "running");

    // A graceful stop: the power button powers the fake off.
    let args = StopArgs {
        name: "fake".into(),
        force: false,
        timeout: Some(PATIENCE.as_secs()),
    };
    stop_running(&paths, &args).unwrap();
    assert_eq!(runtime_state(dir), RuntimeState::Stopped);
    assert_eq!(
        runtime::read_last_exit(&paths).unwrap().reason,
        ExitReason::PowerOff
    );
    assert!(!paths.control.exists() && !paths.console.exists() && !paths.pid.exists());
}

#[test]
fn deaf_guest_needs_force_and_stop_after_a_paused_vm() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let _vm = start_fake(dir, "deaf").unwrap();
    let paths = Paths::of(dir).unwrap();
    let mut args = StopArgs {
        name: "fake".into(),
        force: false,
        timeout: Some(1),
    };
    let err = stop_running(&paths, &args).unwrap_err().to_string();
    assert!(err.contains("did not power off"), "{err}");
    assert!(is_running(dir));
    // A paused VM is stopped hard just the same.
    client::request(&paths.control, &Command::Pause, PATIENCE).unwrap();
    args.force = true;
    args.timeout = None;
    stop_running(&paths, &args).unwrap();
    assert_eq!(runtime_state(dir), RuntimeState::Stopped);
    assert_eq!(
        runtime::read_last_exit(&paths).unwrap().reason,
        ExitReason::Stopped
    );
}

#[test]
fn killed_vm_process_leaves_a_startable_vm() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let vm = start_fake(dir, "").unwrap();
    let paths = Paths::of(dir).unwrap();
    sys::kill(vm.pid as i32, libc::SIGKILL).unwrap();
    wait_for("the lock to be released", || !is_running(dir));
    assert_eq!(runtime_state(dir), RuntimeState::Stopped);
    assert!(!paths.control.exists() && !paths.pid.exists());
    let again = start_fake(dir, "").unwrap();
    assert_eq!(runtime_state(dir), RuntimeState::Running { pid: again.pid });
    client::request(&paths.control, &Command::Stop, PATIENCE).unwrap();
    wait_for("the VM to stop", || !is_running(dir));
}

#[test]
fn failed_start_is_reported_and_releases_the_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let err = start_fake(dir, "fail").err().unwrap().to_string();
    assert!(err.contains("no kernel"), "{err}");
    assert!(!is_running(dir));
    assert_eq!(runtime_state(dir), RuntimeState::Stopped);
}

#[test]
fn crashed_guest_shows_as_crashed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let _vm = start_fake(dir, "crash").unwrap();
    wait_for("the crash", || !is_running(dir));
    assert_eq!(
        runtime_state(dir),
        RuntimeState::Crashed {
            reason: "triple fault on vCPU 0".into()
        }
    );
}

/// A foreground run in a forked child whose stdin/stdout are pipes.
struct Foreground {
    pid: libc::pid_t,
    stdin: Option<std::io::PipeWriter>,
    lines: crossbeam_channel::Receiver<String>,
}

impl Foreground {
    fn start(dir: &Path) -> Foreground {
        let (in_r, in_w) = std::io::pipe().unwrap();
        let (out_r, out_w) = std::io::pipe().unwrap();
        let lock = RunLock::acquire(dir, "fake").unwrap();
        let config = VmConfig::new("fake", "/nonexistent/kernel", 64);
        match sys::fork().unwrap() {
            sys::Fork::Child => {
                // No panics in the child: unwinding would run the harness.
                if sys::redirect(&in_r, libc::STDIN_FILENO).is_err()
                    || sys::redirect(&out_w, libc::STDOUT_FILENO).is_err()
                {
                    sys::exit_now(100);
                }
                drop((in_r, in_w, out_r, out_w));
                let status =
                    match session::run(lock, config, session::Mode::Foreground, fake_launch) {
                        Ok(reason) => exit::exit_status(&reason),
                        Err(_) => 101,
                    };
                sys::exit_now(i32::from(status));
            }
            sys::Fork::Parent(pid) => {
                lock.hand_over();
                drop((in_r, out_w));
                let (tx, lines) = crossbeam_channel::unbounded();
                std::thread::spawn(move || {
                    for line in BufReader::new(out_r).lines() {
                        let Ok(line) = line else { break };
                        if tx.send(line).is_err() {
                            break;
                        }
                    }
                });
                Foreground {
                    pid,
                    stdin: Some(in_w),
                    lines,
                }
            }
        }
    }

    /// Wait for a stdout line containing `text`.
    fn expect(&self, text: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no line with {text:?} on stdout"));
            if line.contains(text) {
                return;
            }
        }
    }

    fn type_in(&mut self, bytes: &[u8]) {
        self.stdin.as_mut().unwrap().write_all(bytes).unwrap();
    }

    /// The exit status, waiting at most PATIENCE (then killed).
    fn status(&mut self) -> i32 {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = sys::try_exit_status(self.pid).unwrap() {
                self.pid = 0;
                return status.unwrap_or_else(|raw| panic!("killed: wait status {raw}"));
            }
            assert!(Instant::now() < deadline, "the foreground run did not end");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Foreground {
    fn drop(&mut self) {
        if self.pid > 0 {
            let _ = sys::kill(self.pid, libc::SIGKILL);
            let _ = sys::waitpid(self.pid);
        }
    }
}

#[test]
fn foreground_console_input_and_escape() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut vm = Foreground::start(dir);
    // Guest output reaches stdout (a pipe) unchanged.
    vm.expect("count=");
    // Typed input reaches the guest; Ctrl-C is just a byte for it.
    vm.type_in(b"hi\x03");
    vm.expect("in=hi\u{3}");
    assert!(is_running(dir));
    // The control socket works for a foreground VM too.
    let paths = Paths::of(dir).unwrap();
    client::request(&paths.control, &Command::Pause, PATIENCE).unwrap();
    assert!(matches!(runtime_state(dir), RuntimeState::Paused { .. }));
    client::request(&paths.control, &Command::Resume, PATIENCE).unwrap();
    // Ctrl-] q stops it: a clean end, status 0.
    vm.type_in(b"\x1dq");
    assert_eq!(vm.status(), 0);
    assert_eq!(runtime_state(dir), RuntimeState::Stopped);
    assert_eq!(
        runtime::read_last_exit(&paths).unwrap().reason,
        ExitReason::Stopped
    );
}

#[test]
fn foreground_sigterm_stops_the_vm() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut vm = Foreground::start(dir);
    vm.expect("count=");
    sys::kill(vm.pid, libc::SIGTERM).unwrap();
    assert_eq!(vm.status(), 0);
    assert!(!is_running(dir));
}

#[test]
fn long_folder_paths_use_the_fallback_sockets() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("v".repeat(120));
    std::fs::create_dir(&dir).unwrap();
    let vm = start_fake(&dir, "").unwrap();
    let paths = Paths::of(&dir).unwrap();
    let base = paths.socket_dir.clone().expect("a fallback socket dir");
    assert!(paths.control.starts_with(&base) && paths.control.exists());
    assert!(!dir.join(CONTROL_SOCKET).exists());
    assert_eq!(runtime_state(&dir), RuntimeState::Running { pid: vm.pid });
    client::request(&paths.control, &Command::Stop, PATIENCE).unwrap();
    wait_for("the VM to stop", || !is_running(&dir));
    assert!(!paths.control.exists() && !paths.console.exists());
}

/// `status --json` prints only a success: an error reply (the VM ended
/// while it was asked) is an error of the command, not a status.
#[test]
fn status_json_does_not_pass_an_error_reply_for_a_status() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let _vm = start_fake(dir, "ending").unwrap();
    let paths = Paths::of(dir).unwrap();
    let mut out = Vec::new();
    let args = StatusArgs {
        name: "fake".into(),
        json: true,
    };
    let err = print_running_status(&paths, &args, &mut out).unwrap_err();
    assert!(format!("{err:#}").contains("the VM has stopped"), "{err:#}");
    assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
}
