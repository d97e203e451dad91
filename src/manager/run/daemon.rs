//! `start --detach`: turn into a daemon that runs the VM, and return only
//! once it runs (or with the error that stopped it).
//!
//! parent ── fork ──> child: setsid (new session, no terminal) ── fork ──>
//! grandchild (not a session leader, so it can never get a controlling
//! terminal again): chdir /, stdio to /dev/null, run the VM. The child
//! exits at once; the parent reads "ready PID" or "error MESSAGE" from a
//! pipe the grandchild holds. The run lock, taken by the parent before the
//! fork, is inherited (same open file description) and kept by the daemon.

use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use super::exit;
use super::runtime::RunLock;
use super::session::{self, Launch, Mode, Ready};
use super::sys;
use crate::vmm::VmConfig;

/// How long `start --detach` waits for the daemon to report.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest readiness message read from the pipe.
const MAX_MESSAGE: usize = 8192;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot create the readiness pipe")]
    Pipe(#[source] io::Error),
    #[error("cannot fork the VM process")]
    Fork(#[source] io::Error),
    #[error("cannot read from the VM process")]
    Read(#[source] io::Error),
    #[error("the VM process did not report within {} s", READY_TIMEOUT.as_secs())]
    Timeout,
    #[error("the VM process ended before the VM ran")]
    Vanished,
    #[error("{0}")]
    Failed(String),
    #[error("unexpected message from the VM process: {0:?}")]
    Garbled(String),
}

/// Run `config` in a daemon holding `lock`; returns the daemon's pid once
/// the VM runs. Must be called while this process is single-threaded.
pub fn start_detached(lock: RunLock, config: VmConfig, launch: Launch) -> Result<u32, Error> {
    let (reader, writer) = io::pipe().map_err(Error::Pipe)?;
    // Buffered output would otherwise be written twice.
    let _ = io::Write::flush(&mut io::stdout());
    match sys::fork().map_err(Error::Fork)? {
        sys::Fork::Child => {
            drop(reader);
            daemon_child(lock, config, writer, launch)
        }
        sys::Fork::Parent(child) => {
            drop(writer);
            lock.hand_over();
            // The child exits as soon as it has forked the daemon.
            let _ = sys::waitpid(child);
            let message = read_message(reader)?;
            parse_message(&message)
        }
    }
}

fn daemon_child(lock: RunLock, config: VmConfig, writer: io::PipeWriter, launch: Launch) -> ! {
    let mut ready = Ready::new(writer);
    if let Err(e) = sys::setsid() {
        ready.fail(&anyhow::Error::new(e).context("setsid"));
        sys::exit_now(1);
    }
    match sys::fork() {
        Ok(sys::Fork::Parent(_)) => {
            // Our copy of the lock and pipe close with us; the daemon's stay.
            lock.hand_over();
            drop(ready);
            sys::exit_now(0)
        }
        Ok(sys::Fork::Child) => {}
        Err(e) => {
            ready.fail(&anyhow::Error::new(e).context("second fork"));
            sys::exit_now(1);
        }
    }
    let status = match daemon_setup()
        .and_then(|()| session::run(lock, config, Mode::Detached(&mut ready), launch))
    {
        Ok(reason) => exit::exit_status(&reason),
        Err(e) => {
            ready.fail(&e);
            exit::EXIT_VMM_ERROR
        }
    };
    std::process::exit(i32::from(status))
}

fn daemon_setup() -> anyhow::Result<()> {
    use anyhow::Context;
    std::env::set_current_dir("/").context("chdir /")?;
    sys::stdio_to_devnull().context("cannot point stdio at /dev/null")?;
    Ok(())
}

/// Read the daemon's one-line message (until newline, EOF or timeout).
fn read_message(mut reader: io::PipeReader) -> Result<String, Error> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut message = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Timeout);
        }
        let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
        if !sys::wait_readable(reader.as_raw_fd(), ms).map_err(Error::Read)? {
            continue;
        }
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => message.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::Read(e)),
        }
        if message.contains(&b'\n') || message.len() > MAX_MESSAGE {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&message).into_owned())
}

/// `ready PID` → the pid; `error MESSAGE` → that error.
fn parse_message(message: &str) -> Result<u32, Error> {
    let line = message.lines().next().unwrap_or("");
    if line.is_empty() {
        return Err(Error::Vanished);
    }
    if let Some(pid) = line.strip_prefix("ready ") {
        return pid
            .trim()
            .parse()
            .map_err(|_| Error::Garbled(line.to_string()));
    }
    if let Some(error) = line.strip_prefix("error ") {
        return Err(Error::Failed(error.to_string()));
    }
    Err(Error::Garbled(line.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages() {
        assert_eq!(parse_message("ready 123\n").unwrap(), 123);
        assert!(matches!(parse_message(""), Err(Error::Vanished)));
        let err = parse_message("error cannot build VM x: no kernel\n").unwrap_err();
        assert_eq!(err.to_string(), "cannot build VM x: no kernel");
        assert!(matches!(parse_message("ready x"), Err(Error::Garbled(_))));
        assert!(matches!(parse_message("hello"), Err(Error::Garbled(_))));
    }

    #[test]
    fn read_message_stops_at_eof_and_newline() {
        let (r, mut w) = io::pipe().unwrap();
        io::Write::write_all(&mut w, b"ready 7\n").unwrap();
        // The writer stays open: the newline ends the read.
        assert_eq!(read_message(r).unwrap(), "ready 7\n");
        let (r, w) = io::pipe().unwrap();
        drop(w);
        assert_eq!(read_message(r).unwrap(), "");
    }
}
