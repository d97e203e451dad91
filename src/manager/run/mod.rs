//! Running VMs (foreground and detached), the control socket, the console,
//! and the lifecycle commands: `start`, `stop`, `pause`, `resume`,
//! `restart`, `status`, `console`.
//!
//! The socket protocol is described in the README ("Control protocol"); the
//! exit statuses of `start` in [`exit`].

mod client;
mod console;
mod daemon;
pub mod exit;
#[cfg(test)]
mod lifecycle_tests;
pub mod protocol;
mod runtime;
mod server;
mod session;
mod sys;

use std::io::IsTerminal;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;

use super::library::Library;
use crate::vmm::{Command, VmConfig, VmState};
use runtime::{Paths, Probe, RunLock};

pub use console::{ESCAPE_HELP, ESCAPE_KEY, QUIT_KEY};
pub use runtime::{
    CONSOLE_LOG, CONSOLE_SOCKET, CONTROL_SOCKET, LAST_EXIT_FILE, LOCK_FILE, PID_FILE,
};
pub use server::ControlTarget;

/// How long a command waits for the VM to answer one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How often `stop` looks whether the VM has ended.
const STOP_POLL: Duration = Duration::from_millis(100);
/// How long a hard stop may take before `stop` gives up waiting.
const HARD_STOP_WAIT: Duration = Duration::from_secs(30);
/// Default `stop --timeout`.
const DEFAULT_STOP_TIMEOUT_SECS: u64 = 30;

/// Arguments of `start`.
#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// VM name.
    pub name: String,
    /// Run in the background: the console goes to console.log in the VM
    /// folder and to `console NAME`; returns once the VM runs.
    #[arg(long, short = 'd')]
    pub detach: bool,
}

/// Arguments of `stop` (and `restart`).
#[derive(Debug, clap::Args)]
pub struct StopArgs {
    /// VM name.
    pub name: String,
    /// End the VM hard: at once, or after --timeout when that is given too.
    #[arg(long, short = 'f')]
    pub force: bool,
    /// Seconds to wait for the guest to power off after the ACPI power
    /// button [default: 30].
    #[arg(long, short = 't', value_name = "SECONDS")]
    pub timeout: Option<u64>,
}

/// Arguments of `pause`, `resume` and `console`.
#[derive(Debug, clap::Args)]
pub struct VmNameArgs {
    /// VM name.
    pub name: String,
}

/// Arguments of `status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// VM name.
    pub name: String,
    /// Print the control protocol's JSON response.
    #[arg(long)]
    pub json: bool,
}

/// What `list`/`info` show as a VM's state, derived from runtime files.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase", tag = "state")]
pub enum RuntimeState {
    Stopped,
    Running { pid: u32 },
    Paused { pid: u32 },
    Crashed { reason: String },
}

/// The state of the VM whose folder is `dir` (cleans stale runtime files).
pub fn runtime_state(dir: &Path) -> RuntimeState {
    let Ok(paths) = Paths::of(dir) else {
        return RuntimeState::Stopped;
    };
    match runtime::probe(&paths) {
        Probe::Stopped => runtime::stopped_state(&paths),
        Probe::Running(info) => {
            let pid = info.map_or(0, |i| i.pid);
            match client::status(&paths.control, runtime::probe_timeout()) {
                Ok(s) if s.status.state == VmState::Paused => RuntimeState::Paused { pid },
                _ => RuntimeState::Running { pid },
            }
        }
    }
}

/// Is a VM process holding this folder's lock (edits/deletes must refuse)?
pub fn is_running(dir: &Path) -> bool {
    match Paths::of(dir) {
        Ok(paths) => matches!(runtime::probe(&paths), Probe::Running(_)),
        Err(_) => false,
    }
}

/// `start NAME [--detach]`. The exit status says how the guest ended (see
/// [`exit`]); with `--detach`, 0 once the VM runs.
pub fn start(library: &Library, args: &StartArgs) -> anyhow::Result<ExitCode> {
    let entry = library.load(&args.name)?;
    let dir = runtime::resolve(&entry.dir)?;
    let mut config = entry.vmm_config()?;
    absolute_paths(&mut config)?;
    let lock = RunLock::acquire(&dir, &args.name)?;
    if args.detach {
        let pid = daemon::start_detached(lock, config, session::launch_vmm)
            .with_context(|| format!("VM {} did not start", args.name))?;
        println!(
            "VM {} is running (pid {pid}); console: `xhyve-manager console {}`, log: {}",
            args.name,
            args.name,
            dir.join(CONSOLE_LOG).display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let reason = session::run(lock, config, session::Mode::Foreground, session::launch_vmm)?;
    let status = exit::exit_status(&reason);
    if !exit::is_clean(&reason) {
        // On a terminal the guest's last line may lack its newline: start
        // the reason on a line of its own.
        let fresh_line = if std::io::stderr().is_terminal() {
            "\n"
        } else {
            ""
        };
        eprintln!(
            "{fresh_line}xhyve-manager: VM {}: {} (exit status {status})",
            args.name,
            exit::describe(&reason)
        );
    }
    Ok(ExitCode::from(status))
}

/// Paths in the config made absolute: a detached VM runs in `/`.
fn absolute_paths(config: &mut VmConfig) -> anyhow::Result<()> {
    let abs = |p: &mut std::path::PathBuf| -> anyhow::Result<()> {
        *p = std::path::absolute(&*p).with_context(|| format!("cannot resolve {}", p.display()))?;
        Ok(())
    };
    abs(&mut config.kernel)?;
    if let Some(initrd) = &mut config.initrd {
        abs(initrd)?;
    }
    for disk in &mut config.disks {
        abs(&mut disk.path)?;
    }
    Ok(())
}

/// The runtime paths of a VM that must be running.
fn running_vm(library: &Library, name: &str) -> anyhow::Result<Paths> {
    let entry = library.load(name)?;
    let paths = Paths::of(&entry.dir)?;
    match runtime::probe(&paths) {
        Probe::Running(_) => Ok(paths),
        Probe::Stopped => bail!("VM {name} is not running"),
    }
}

fn send(paths: &Paths, name: &str, command: Command) -> anyhow::Result<serde_json::Value> {
    client::request(&paths.control, &command, REQUEST_TIMEOUT)
        .with_context(|| format!("VM {name}: {}", protocol::command_name(&command)))
}

/// Wait until nobody holds the VM's lock; false after `timeout`.
fn wait_stopped(paths: &Paths, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if matches!(runtime::probe(paths), Probe::Stopped) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(STOP_POLL);
    }
}

/// `stop NAME`: the ACPI power button, then wait up to `--timeout` for the
/// guest to power off (Linux with acpid or systemd-logind does; a guest
/// without ACPI handling ignores it). `--force` alone ends the VM at once;
/// with `--timeout` it ends it hard when the timeout expires.
pub fn stop(library: &Library, args: &StopArgs) -> anyhow::Result<ExitCode> {
    let paths = running_vm(library, &args.name)?;
    stop_running(&paths, args)?;
    println!("VM {} stopped", args.name);
    Ok(ExitCode::SUCCESS)
}

fn stop_running(paths: &Paths, args: &StopArgs) -> anyhow::Result<()> {
    let name = &args.name;
    if args.force && args.timeout.is_none() {
        return hard_stop(paths, name);
    }
    let timeout = args.timeout.unwrap_or(DEFAULT_STOP_TIMEOUT_SECS);
    // A paused guest cannot see the button: let it run first.
    if let Ok(s) = client::status(&paths.control, REQUEST_TIMEOUT)
        && s.status.state == VmState::Paused
    {
        send(paths, name, Command::Resume)?;
    }
    send(paths, name, Command::PowerButton)?;
    if wait_stopped(paths, Duration::from_secs(timeout)) {
        return Ok(());
    }
    if args.force {
        return hard_stop(paths, name);
    }
    bail!(
        "VM {name} did not power off within {timeout} s after the ACPI power button \
         (the guest may not handle it); use `stop --force {name}` to end it now"
    )
}

fn hard_stop(paths: &Paths, name: &str) -> anyhow::Result<()> {
    send(paths, name, Command::Stop)?;
    if !wait_stopped(paths, HARD_STOP_WAIT) {
        bail!(
            "VM {name} was told to stop but still runs after {} s",
            HARD_STOP_WAIT.as_secs()
        );
    }
    Ok(())
}

/// `pause NAME`: stop every vCPU; memory and devices stay.
pub fn pause(library: &Library, args: &VmNameArgs) -> anyhow::Result<ExitCode> {
    let paths = running_vm(library, &args.name)?;
    send(&paths, &args.name, Command::Pause)?;
    println!("VM {} paused", args.name);
    Ok(ExitCode::SUCCESS)
}

/// `resume NAME`: let every vCPU run again.
pub fn resume(library: &Library, args: &VmNameArgs) -> anyhow::Result<ExitCode> {
    let paths = running_vm(library, &args.name)?;
    send(&paths, &args.name, Command::Resume)?;
    println!("VM {} resumed", args.name);
    Ok(ExitCode::SUCCESS)
}

/// `restart NAME`: `stop` (same options) if it runs, then `start --detach`.
pub fn restart(library: &Library, args: &StopArgs) -> anyhow::Result<ExitCode> {
    let entry = library.load(&args.name)?;
    let paths = Paths::of(&entry.dir)?;
    if let Probe::Running(_) = runtime::probe(&paths) {
        stop_running(&paths, args)?;
    }
    start(
        library,
        &StartArgs {
            name: args.name.clone(),
            detach: true,
        },
    )
}

/// `status NAME [--json]`: state, pid, uptime, vCPUs, memory, last exit.
pub fn status(library: &Library, args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let entry = library.load(&args.name)?;
    let paths = Paths::of(&entry.dir)?;
    let mut out = std::io::stdout().lock();
    if let Probe::Running(_) = runtime::probe(&paths) {
        match print_running_status(&paths, args, &mut out) {
            Ok(()) => return Ok(ExitCode::SUCCESS),
            // It ended while we asked: once its process has let go of the
            // lock, report it as it is now.
            Err(e) => {
                if !wait_stopped(&paths, ENDING_GRACE) {
                    return Err(e);
                }
            }
        }
    }
    let last = runtime::read_last_exit(&paths);
    let state = match runtime::stopped_state(&paths) {
        RuntimeState::Crashed { .. } => "crashed",
        _ => "stopped",
    };
    if args.json {
        // The same shape as a running VM's answer, for scripts.
        let reply = protocol::Reply::success(json!({
            "name": args.name,
            "state": state,
            "exit_reason": last.as_ref().map(|l| &l.reason),
        }));
        write!(out, "{}", reply.to_line())?;
    } else {
        writeln!(out, "name:      {}", args.name)?;
        writeln!(out, "state:     {state}")?;
        if let Some(last) = &last {
            writeln!(out, "last exit: {}", exit::describe(&last.reason))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Ask a running VM for its status and print it (nothing is printed when
/// the request fails).
fn print_running_status(
    paths: &Paths,
    args: &StatusArgs,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let context = || format!("VM {}: status", args.name);
    if args.json {
        let line = client::request_raw(&paths.control, &Command::Status, REQUEST_TIMEOUT)
            .with_context(context)?;
        // Print only a success: an error reply (the VM ended while we
        // asked) must not pass for a status with exit code 0.
        let reply: serde_json::Value = serde_json::from_str(&line).with_context(context)?;
        if reply["ok"] != serde_json::Value::Bool(true) {
            bail!("{}: {}", context(), reply["error"]["message"]);
        }
        writeln!(out, "{line}")?;
        return Ok(());
    }
    let s = client::status(&paths.control, REQUEST_TIMEOUT).with_context(context)?;
    let state = serde_json::to_value(s.status.state)?;
    writeln!(out, "name:      {}", s.status.name)?;
    writeln!(out, "state:     {}", state.as_str().unwrap_or("?"))?;
    writeln!(out, "pid:       {}", s.pid)?;
    writeln!(out, "uptime:    {}", uptime(s.status.uptime_secs))?;
    writeln!(out, "vcpus:     {}", s.status.vcpus)?;
    writeln!(out, "memory:    {} MiB", s.status.memory_mib)?;
    if let Some(reason) = &s.status.exit_reason {
        writeln!(out, "last exit: {}", exit::describe(reason))?;
    }
    Ok(())
}

/// How long `status` waits for a VM that ended while it asked to release
/// its lock, before reporting the error it got.
const ENDING_GRACE: Duration = Duration::from_secs(3);

fn uptime(secs: u64) -> String {
    format!("{}h {:02}m {:02}s", secs / 3600, secs / 60 % 60, secs % 60)
}

/// `console NAME`: attach to a detached VM's serial console; Ctrl-] q
/// detaches and leaves the VM running.
pub fn console(library: &Library, args: &VmNameArgs) -> anyhow::Result<ExitCode> {
    let paths = running_vm(library, &args.name)?;
    if !paths.console.exists() {
        bail!(
            "VM {} runs in the foreground of another terminal; its console is there",
            args.name
        );
    }
    restore_terminal_on_signals()?;
    if sys::isatty(libc::STDIN_FILENO) {
        eprintln!(
            "Attached to the console of {}; {} detaches.",
            args.name, ESCAPE_HELP
        );
    }
    let how = client::attach_console(&paths.console)
        .with_context(|| format!("VM {}: console", args.name))?;
    match how {
        client::Detach::User => eprintln!("\r\nDetached; VM {} keeps running.", args.name),
        client::Detach::Closed => {
            eprintln!("\r\nVM {} closed its console (it stopped).", args.name)
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// SIGTERM/SIGINT/SIGHUP while attached: restore the terminal, then exit.
fn restore_terminal_on_signals() -> anyhow::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .context("cannot install signal handlers")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                console::restore_terminal();
                std::process::exit(128 + signal);
            }
        })
        .context("cannot start the signal thread")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kills and reaps a forked child, also when the test fails.
    struct Child(libc::pid_t);

    impl Drop for Child {
        fn drop(&mut self) {
            let _ = sys::kill(self.0, libc::SIGKILL);
            let _ = sys::waitpid(self.0);
        }
    }

    #[test]
    fn lock_held_by_a_killed_process_is_stale_and_cleaned() {
        use std::io::Read;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let (mut ready_r, ready_w) = std::io::pipe().unwrap();
        let child = match sys::fork().unwrap() {
            sys::Fork::Child => {
                // No panics in the child: unwinding would run the harness.
                let mut ready_w = ready_w;
                let Ok(lock) = RunLock::acquire(&dir, "vm") else {
                    sys::exit_now(1)
                };
                if lock.write_pid(true).is_err() {
                    sys::exit_now(1);
                }
                let _listener = std::os::unix::net::UnixListener::bind(&lock.paths.control);
                let _ = ready_w.write_all(b"x");
                drop(ready_w);
                // Bounded, in case the parent dies without killing us.
                std::thread::sleep(Duration::from_secs(60));
                sys::exit_now(0);
            }
            sys::Fork::Parent(pid) => Child(pid),
        };
        drop(ready_w);
        let mut byte = [0u8; 1];
        ready_r.read_exact(&mut byte).unwrap();

        let paths = Paths::of(&dir).unwrap();
        assert!(is_running(&dir));
        assert_eq!(
            runtime_state(&dir),
            RuntimeState::Running {
                pid: child.0 as u32
            }
        );
        let err = RunLock::acquire(&dir, "vm").err().unwrap().to_string();
        assert!(err.contains(&format!("pid {}", child.0)), "{err}");
        assert!(paths.pid.exists() && paths.control.exists());

        sys::kill(child.0, libc::SIGKILL).unwrap();
        sys::waitpid(child.0).unwrap();
        // The files are still there, but nobody holds the lock.
        assert!(paths.pid.exists() && paths.control.exists());
        assert_eq!(runtime_state(&dir), RuntimeState::Stopped);
        assert!(!paths.pid.exists(), "stale pid file removed");
        assert!(!paths.control.exists(), "stale socket removed");
        assert!(!is_running(&dir));
        assert!(RunLock::acquire(&dir, "vm").is_ok());
    }

    /// The Args structs as the CLI will wire them.
    #[derive(Debug, clap::Parser)]
    enum Cli {
        Start(StartArgs),
        Stop(StopArgs),
        Pause(VmNameArgs),
        Resume(VmNameArgs),
        Restart(StopArgs),
        Status(StatusArgs),
        Console(VmNameArgs),
    }

    #[test]
    fn args_parse_as_documented() {
        use clap::{CommandFactory, Parser};
        Cli::command().debug_assert();
        let Cli::Start(start) = Cli::try_parse_from(["x", "start", "deb", "--detach"]).unwrap()
        else {
            panic!("not start")
        };
        assert!(start.detach);
        let Cli::Stop(stop) = Cli::try_parse_from(["x", "stop", "deb", "-f"]).unwrap() else {
            panic!("not stop")
        };
        assert!(stop.force && stop.timeout.is_none());
        let Cli::Stop(stop) = Cli::try_parse_from(["x", "stop", "deb", "--timeout", "5"]).unwrap()
        else {
            panic!("not stop")
        };
        assert_eq!((stop.force, stop.timeout), (false, Some(5)));
        assert!(Cli::try_parse_from(["x", "stop", "deb", "--timeout", "soon"]).is_err());
        let Cli::Status(status) = Cli::try_parse_from(["x", "status", "deb", "--json"]).unwrap()
        else {
            panic!("not status")
        };
        assert!(status.json);
    }

    #[test]
    fn uptime_format() {
        assert_eq!(uptime(0), "0h 00m 00s");
        assert_eq!(uptime(3723), "1h 02m 03s");
    }
}
