//! The lifecycle through the real binary with the `counter` test guest (a
//! PVH ELF printing `count=N` lines forever): detached start, status,
//! pause/resume, console attach/detach, bad socket requests, stop, a second
//! start refused, kill -9 then start again, foreground start and signals.
//!
//! Every VM is killed when its test ends (guard), every wait is bounded.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_xhyve-manager");
/// Bound of every wait and every CLI run.
const PATIENCE: Duration = Duration::from_secs(60);
/// How long a paused counter must stay frozen.
const FROZEN_FOR: Duration = Duration::from_millis(400);

/// The `counter` guest, built by the shared harness.
fn counter_guest() -> PathBuf {
    common::guest("counter")
}

/// A library with one VM running the counter guest; kills the VM on drop.
struct Lab {
    home: tempfile::TempDir,
    name: &'static str,
}

impl Lab {
    fn new(guest: &Path) -> Lab {
        let home = tempfile::tempdir().unwrap();
        let name = "counter";
        let dir = home.path().join(format!("{name}.xhyvm"));
        std::fs::create_dir(&dir).unwrap();
        let config = format!(
            "[machine]\nname = {name}\ntype = linux\n\n\
             [boot]\nkernel = {}\ninitrd =\noptions = console=ttyS0\n\n\
             [processor]\ncpus = 1\n\n[memory]\nsize = 64M\n",
            guest.display()
        );
        std::fs::write(dir.join("config.ini"), config).unwrap();
        Lab { home, name }
    }

    fn dir(&self) -> PathBuf {
        self.home.path().join(format!("{}.xhyvm", self.name))
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        command.arg("--home").arg(self.home.path()).args(args);
        command
    }

    /// Run the CLI with `args` (stdin /dev/null), bounded by PATIENCE.
    fn cli(&self, args: &[&str]) -> Output {
        let child = self
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_output(child, args)
    }

    /// Run the CLI as `uid`/`gid` (setpriv, util-linux), bounded by PATIENCE.
    fn cli_as(&self, uid: u32, gid: u32, args: &[&str]) -> Output {
        let child = Command::new("setpriv")
            .arg(format!("--reuid={uid}"))
            .arg(format!("--regid={gid}"))
            .arg("--clear-groups")
            .arg(BIN)
            .arg("--home")
            .arg(self.home.path())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_output(child, args)
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn status_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["status", self.name, "--json"])).unwrap()
    }

    fn pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.dir().join("run.json")).ok()?;
        let value: serde_json::Value = serde_json::from_str(&text).ok()?;
        value["pid"].as_u64().map(|p| p as u32)
    }

    /// The highest `count=N` in console.log.
    fn last_count(&self) -> Option<u64> {
        let log = std::fs::read(self.dir().join("console.log")).unwrap_or_default();
        count_in(&String::from_utf8_lossy(&log))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            kill(pid, libc::SIGKILL);
        }
    }
}

/// Send `signal` to `pid`.
fn kill(pid: u32, signal: libc::c_int) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill takes plain integers and touches no memory of ours.
    unsafe { libc::kill(pid, signal) == 0 }
}

fn count_in(text: &str) -> Option<u64> {
    text.lines()
        .filter_map(|l| l.trim_end_matches('\r').strip_prefix("count="))
        .filter_map(|n| n.trim().parse().ok())
        .max()
}

/// Wait for `child` with PATIENCE; kill it (and fail) when it takes longer.
fn wait_output(mut child: Child, what: &[&str]) -> Output {
    let deadline = Instant::now() + PATIENCE;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what:?} did not finish within {PATIENCE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Send raw bytes on the control socket; the answer line as JSON.
fn raw_request(dir: &Path, bytes: &[u8]) -> serde_json::Value {
    let mut stream = UnixStream::connect(dir.join("control.sock")).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    // The server may stop reading an oversized line early.
    let _ = stream.write_all(bytes);
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("answer {line:?}: {e}"))
}

/// Collect a child's stdout on a thread; lines arrive on the receiver.
fn stdout_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut buf = Vec::new();
        while reader
            .read_until(b'\n', &mut buf)
            .map(|n| n > 0)
            .unwrap_or(false)
        {
            if tx.send(String::from_utf8_lossy(&buf).into_owned()).is_err() {
                break;
            }
            buf.clear();
        }
    });
    rx
}

fn wait_for_count(lines: &mpsc::Receiver<String>) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .expect("no count= line within the timeout");
        if count_in(&line).is_some() {
            return;
        }
    }
}

#[test]
fn detached_vm_lifecycle() {
    let guest = counter_guest();
    let lab = Lab::new(&guest);
    let name = lab.name;
    let dir = lab.dir();

    let started = lab.ok(&["start", name, "--detach"]);
    assert!(started.contains("running"), "{started}");
    let status = lab.ok(&["status", name]);
    assert!(status.contains("running"), "{status}");
    let json = lab.status_json();
    assert_eq!(json["ok"], true);
    assert_eq!(json["result"]["state"], "running");
    assert_eq!(json["result"]["pid"].as_u64().map(|p| p as u32), lab.pid());

    // A second start is refused, naming the pid.
    let second = lab.cli(&["start", name, "--detach"]);
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("already running"), "{err}");
    assert!(err.contains(&lab.pid().unwrap().to_string()), "{err}");

    // Pause freezes the counter, resume continues it.
    wait_for("counter output", || lab.last_count().is_some());
    lab.ok(&["pause", name]);
    assert_eq!(lab.status_json()["result"]["state"], "paused");
    let frozen = lab.last_count();
    std::thread::sleep(FROZEN_FOR);
    assert_eq!(lab.last_count(), frozen, "counter moved while paused");
    lab.ok(&["resume", name]);
    wait_for("the counter to continue", || lab.last_count() > frozen);

    // The console shows output; Ctrl-] q detaches and the VM runs on.
    let mut console = lab
        .command(&["console", name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = stdout_lines(&mut console);
    wait_for_count(&lines);
    console.stdin.as_mut().unwrap().write_all(b"\x1dq").unwrap();
    let out = wait_output(console, &["console"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(lab.status_json()["result"]["state"], "running");

    // Malformed and oversized requests: errors; the VM keeps running.
    let reply = raw_request(&dir, b"{\"v\":1,\"cmd\":\n");
    assert_eq!(reply["error"]["code"], "bad_request");
    let reply = raw_request(&dir, b"{\"v\":1,\"cmd\":\"format_disk\"}\n");
    assert_eq!(reply["error"]["code"], "unknown_command");
    let mut big = vec![b'x'; 64 * 1024];
    big.push(b'\n');
    assert_eq!(raw_request(&dir, &big)["error"]["code"], "too_large");
    let before = lab.last_count();
    wait_for("the counter after bad requests", || {
        lab.last_count() > before
    });
    assert_eq!(lab.status_json()["result"]["state"], "running");

    // Stop ends it; list says stopped.
    lab.ok(&["stop", name, "--force"]);
    let status = lab.ok(&["status", name]);
    assert!(status.contains("stopped"), "{status}");
    let list = lab.ok(&["list"]);
    let line = list
        .lines()
        .find(|l| l.contains(name))
        .unwrap_or_else(|| panic!("{name} not in list:\n{list}"));
    assert!(line.contains("stopped"), "{line}");
    assert!(!dir.join("control.sock").exists());
}

#[test]
fn kill_9_then_start_again() {
    let guest = counter_guest();
    let lab = Lab::new(&guest);
    let name = lab.name;
    lab.ok(&["start", name, "--detach"]);
    let pid = lab.pid().expect("run.json names the VM process");
    assert!(kill(pid, libc::SIGKILL));
    // While the process dies, a status request may fail; then it is stopped.
    wait_for("the VM to be seen stopped", || {
        let out = lab.cli(&["status", name, "--json"]);
        out.status.success()
            && serde_json::from_slice::<serde_json::Value>(&out.stdout)
                .is_ok_and(|v| v["result"]["state"] == "stopped")
    });
    assert!(
        !lab.dir().join("run.json").exists(),
        "stale pid file cleaned"
    );
    lab.ok(&["start", name, "--detach"]);
    assert_ne!(lab.pid(), Some(pid));
    assert_eq!(lab.status_json()["result"]["state"], "running");
    lab.ok(&["stop", name, "--force"]);
}

#[test]
fn foreground_start_streams_the_console_and_ends_cleanly() {
    let guest = counter_guest();
    let lab = Lab::new(&guest);
    let name = lab.name;

    // Stopped from another process: exit status 0.
    let mut vm = lab
        .command(&["start", name])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = stdout_lines(&mut vm);
    wait_for_count(&lines);
    assert_eq!(lab.status_json()["result"]["state"], "running");
    lab.ok(&["stop", name, "--force"]);
    let out = wait_output(vm, &["start"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // SIGTERM stops it too, with status 0.
    let mut vm = lab
        .command(&["start", name])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = stdout_lines(&mut vm);
    wait_for_count(&lines);
    assert!(kill(vm.id(), libc::SIGTERM));
    let out = wait_output(vm, &["start"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!lab.dir().join("run.json").exists());
}

#[test]
fn vm_started_by_root_belongs_to_the_folder_owner() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    const USER: (u32, u32) = (4242, 4243);
    const STRANGER: (u32, u32) = (4244, 4244);
    let guest = counter_guest();
    // SAFETY: geteuid has no arguments and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root (as `sudo start` does)");
        return;
    }
    let lab = Lab::new(&guest);
    let name = lab.name;
    let dir = lab.dir();
    std::fs::set_permissions(lab.home.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for path in [dir.clone(), dir.join("config.ini")] {
        std::os::unix::fs::chown(&path, Some(USER.0), Some(USER.1)).unwrap();
    }

    lab.ok(&["start", name, "--detach"]);
    for file in [
        "run.lock",
        "run.json",
        "console.log",
        "control.sock",
        "console.sock",
    ] {
        let meta = std::fs::symlink_metadata(dir.join(file)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), USER, "{file}");
    }
    for socket in ["control.sock", "console.sock"] {
        let mode = std::fs::metadata(dir.join(socket)).unwrap().mode();
        assert_eq!(mode & 0o777, 0o600, "{socket}");
    }

    // The owner controls it.
    let out = lab.cli_as(USER.0, USER.1, &["status", name, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["result"]["state"], "running");
    let out = lab.cli_as(USER.0, USER.1, &["pause", name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Anyone else cannot, and the VM is unaffected.
    let out = lab.cli_as(STRANGER.0, STRANGER.1, &["resume", name]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("resume"), "refused for another reason: {err}");
    assert_eq!(lab.status_json()["result"]["state"], "paused");

    let out = lab.cli_as(USER.0, USER.1, &["stop", name, "--force"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(lab.status_json()["result"]["state"], "stopped");
}

/// `stop` without --force: the ACPI power button, honoured by the `acpid`
/// guest, which powers off; `stop` returns once the VM has ended, and the
/// last exit reason is a poweroff, not a forced stop. A guest that ignores
/// the button (the counter) makes `stop` fail after --timeout, still running.
#[test]
fn graceful_stop_presses_the_power_button() {
    let lab = Lab::new(&common::guest("acpid"));
    let name = lab.name;
    lab.ok(&["start", name, "--detach"]);
    wait_for("the guest to wait for the power button", || {
        std::fs::read_to_string(lab.dir().join("console.log"))
            .unwrap_or_default()
            .contains("WAITING_FOR_POWER_BUTTON")
    });
    lab.ok(&["stop", name, "--timeout", "30"]);
    let log = std::fs::read_to_string(lab.dir().join("console.log")).unwrap();
    assert!(log.contains("SCI_PENDING=1"), "{log}");
    assert!(log.contains("POWEROFF"), "{log}");
    let status = lab.status_json();
    assert_eq!(status["result"]["state"], "stopped", "{status}");
    assert_eq!(
        status["result"]["exit_reason"]["kind"], "power_off",
        "{status}"
    );

    let lab = Lab::new(&counter_guest());
    lab.ok(&["start", name, "--detach"]);
    wait_for("counting", || lab.last_count().is_some());
    let out = lab.cli(&["stop", name, "--timeout", "1"]);
    assert!(
        !out.status.success(),
        "a guest ignoring the button did not stop"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--force"),
        "the message says what to do: {err}"
    );
    assert_eq!(lab.status_json()["result"]["state"], "running");
    lab.ok(&["stop", name, "--force"]);
}

/// `ctrl_alt_del` on the control socket (no CLI subcommand sends it): the
/// `cad` guest reads the scancodes from the i8042 and resets through it, so
/// the detached VM ends and its last exit reason is a reset.
#[test]
fn ctrl_alt_del_on_the_socket_reaches_the_guest() {
    let lab = Lab::new(&common::guest("cad"));
    let name = lab.name;
    lab.ok(&["start", name, "--detach"]);
    let log = || std::fs::read_to_string(lab.dir().join("console.log")).unwrap_or_default();
    wait_for("the guest to wait for Ctrl-Alt-Del", || {
        log().contains("WAITING_FOR_CAD")
    });
    let reply = raw_request(&lab.dir(), b"{\"v\":1,\"cmd\":\"ctrl_alt_del\"}\n");
    assert_eq!(reply["ok"], true, "{reply}");
    // Until the VM process is gone `status` may catch it between the VM's
    // end and the recorded exit, so poll for the recorded reason.
    let mut status = serde_json::Value::Null;
    wait_for("the VM to end with a recorded exit reason", || {
        let out = lab.cli(&["status", name, "--json"]);
        status = serde_json::from_slice(&out.stdout).unwrap_or_default();
        status["ok"] == true
            && status["result"]["state"] == "stopped"
            && !status["result"]["exit_reason"].is_null()
    });
    assert_eq!(status["result"]["exit_reason"]["kind"], "reset", "{status}");
    let log = log();
    assert!(
        log.contains("CAD_SCANCODES=1d,38,e0,53,e0,d3,b8,9d"),
        "{log}"
    );
    assert!(log.contains("CTRL_ALT_DEL"), "{log}");
}
