//! One run of a VM inside this process: runtime files, control socket,
//! console wiring, and the supervising loop that owns the [`VmHandle`]
//! and answers the control socket through a channel until the guest ends.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use crossbeam_channel::{Receiver, Sender};

use super::console::{self, ConsoleHub, RawTerminal, Typed};
use super::protocol::{ErrorBody, ErrorCode};
use super::runtime::RunLock;
use super::server::{self, ControlTarget, SocketServer};
use crate::vmm::{self, Command, ExitReason, Response, VmConfig, VmHandle};

/// Where typed bytes for the guest's COM1 go; callable from any thread.
pub type Input = Arc<dyn Fn(&[u8]) + Send + Sync>;

/// The VM as a session drives it: the real VMM's [`VmHandle`], or a fake
/// in tests (so the sockets, daemon and console logic run without KVM).
pub trait Machine {
    /// Send a command and wait for its answer (errors as text).
    fn request(&self, command: Command) -> Result<Response, String>;
    /// Where bytes for the guest's COM1 go, usable from any thread.
    fn input(&self) -> Input;
    /// Yields the exit reason once, when the VM has stopped.
    fn exited(&self) -> Receiver<ExitReason>;
    /// Wait until every thread is joined.
    fn wait(self: Box<Self>) -> ExitReason;
}

impl Machine for VmHandle {
    fn request(&self, command: Command) -> Result<Response, String> {
        VmHandle::request(self, command).map_err(|e| error_chain(&e))
    }

    fn input(&self) -> Input {
        let input = Mutex::new(self.console_input());
        Arc::new(move |bytes: &[u8]| input.lock().unwrap_or_else(|p| p.into_inner()).send(bytes))
    }

    fn exited(&self) -> Receiver<ExitReason> {
        VmHandle::exited(self)
    }

    fn wait(self: Box<Self>) -> ExitReason {
        VmHandle::wait(*self)
    }
}

/// Builds and starts a VM whose COM1 output goes to the given writer.
pub type Launch = fn(VmConfig, Box<dyn Write + Send>) -> anyhow::Result<Box<dyn Machine>>;

/// The real VMM.
pub fn launch_vmm(
    config: VmConfig,
    console: Box<dyn Write + Send>,
) -> anyhow::Result<Box<dyn Machine>> {
    let name = config.name.clone();
    let vm = vmm::build(config, console).with_context(|| format!("cannot build VM {name}"))?;
    let handle = vm
        .start()
        .with_context(|| format!("cannot start VM {name}"))?;
    Ok(Box::new(handle))
}

/// How long a socket request waits for the supervising loop to answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Console log mode: guest output may be private.
const LOG_MODE: u32 = 0o600;

type Reply = Result<Response, ErrorBody>;
type Request = (Command, Sender<Reply>);

/// The control socket's target: passes each request to the supervising
/// loop, which owns the VM handle.
pub struct Relay {
    tx: Sender<Request>,
}

impl ControlTarget for Relay {
    fn request(&self, command: Command) -> Reply {
        let unavailable = || ErrorBody::new(ErrorCode::Unavailable, "the VM has stopped");
        let (reply_tx, reply_rx) = crossbeam_channel::bounded(1);
        self.tx
            .send((command, reply_tx))
            .map_err(|_| unavailable())?;
        match reply_rx.recv_timeout(REQUEST_TIMEOUT) {
            Ok(reply) => reply,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => Err(ErrorBody::new(
                ErrorCode::Unavailable,
                "the VM did not answer in time",
            )),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(unavailable()),
        }
    }
}

/// Things the supervising loop reacts to besides socket requests.
enum Event {
    Typed(Typed),
    /// SIGTERM, SIGINT or SIGHUP (foreground only for SIGHUP).
    Signal,
}

/// Where a detached run reports readiness (the `start --detach` parent
/// reads the other end of the pipe).
pub struct Ready {
    pipe: Option<std::io::PipeWriter>,
}

impl Ready {
    pub fn new(pipe: std::io::PipeWriter) -> Ready {
        Ready { pipe: Some(pipe) }
    }

    /// Tell the parent the VM runs.
    fn ready(&mut self) {
        if let Some(mut pipe) = self.pipe.take() {
            let _ = writeln!(pipe, "ready {}", std::process::id());
        }
    }

    /// Tell the parent why the start failed (if it is still waiting).
    pub fn fail(&mut self, error: &anyhow::Error) {
        if let Some(mut pipe) = self.pipe.take() {
            let message = format!("{error:#}").replace('\n', " ");
            let _ = writeln!(pipe, "error {message}");
        }
    }
}

/// How the run is attached to the world.
pub enum Mode<'a> {
    /// Console on this process's stdin/stdout.
    Foreground,
    /// Console in the log and on the console socket.
    Detached(&'a mut Ready),
}

/// Run the VM described by `config` under `lock` until it ends; returns
/// why it ended (also recorded in the folder). Errors are failures to start.
pub fn run(
    lock: RunLock,
    config: VmConfig,
    mode: Mode<'_>,
    launch: Launch,
) -> anyhow::Result<ExitReason> {
    let paths = lock.paths.clone();
    let owner = lock.owner;
    let detached = matches!(mode, Mode::Detached(_));
    lock.write_pid(detached)?;
    paths.prepare_socket_dir(&owner)?;

    let (request_tx, requests) = crossbeam_channel::unbounded();
    let relay: Arc<dyn ControlTarget> = Arc::new(Relay { tx: request_tx });
    let control = server::control_server(&paths.control, owner, relay, std::process::id())?;

    let (event_tx, events) = crossbeam_channel::unbounded();
    let name = config.name.clone();
    let (handle, console_server, terminal) = match mode {
        Mode::Foreground => {
            let handle = launch(config, Box::new(console::StdoutSink))?;
            if super::sys::isatty(libc::STDIN_FILENO) {
                eprintln!("Console of {name}; {} quits.", console::ESCAPE_HELP);
            }
            let terminal = RawTerminal::enter(libc::STDIN_FILENO)
                .context("cannot put the terminal in raw mode")?;
            forward_typed(&event_tx);
            watch_signals(&event_tx, true)?;
            (handle, None, terminal)
        }
        Mode::Detached(ready) => {
            let log = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(LOG_MODE)
                // Never follow a link planted in the (user's) folder.
                .custom_flags(libc::O_NOFOLLOW)
                .open(&paths.console_log)
                .with_context(|| format!("cannot create {}", paths.console_log.display()))?;
            owner.claim(&paths.console_log)?;
            let (hub, sink) = ConsoleHub::start(log).context("cannot start the console")?;
            let handle = launch(config, Box::new(sink))?;
            let input = handle.input();
            let console_server = SocketServer::spawn(
                &paths.console,
                owner,
                move |stream| hub.serve(stream, input.as_ref()),
                move |mut stream, uid| {
                    let _ = writeln!(stream, "uid {uid} may not use this console\r");
                },
            )?;
            watch_signals(&event_tx, false)?;
            ready.ready();
            (handle, Some(console_server), None)
        }
    };
    drop(event_tx);

    let reason = supervise(handle, &requests, &events);
    drop(requests);
    drop(terminal);
    drop(console_server);
    drop(control);
    lock.record_exit(&reason)?;
    Ok(reason)
}

/// Forward stdin (escape filtered) to the loop.
fn forward_typed(event_tx: &Sender<Event>) {
    let (typed_tx, typed_rx) = crossbeam_channel::unbounded();
    console::spawn_input_reader(std::io::stdin(), typed_tx);
    let tx = event_tx.clone();
    let _ = std::thread::Builder::new()
        .name("console-typed".into())
        .spawn(move || {
            for typed in typed_rx {
                if tx.send(Event::Typed(typed)).is_err() {
                    break;
                }
            }
        });
}

/// SIGTERM and SIGINT stop the VM; so does SIGHUP in the foreground (the
/// terminal went away). A detached VM ignores SIGHUP.
fn watch_signals(event_tx: &Sender<Event>, hangup_stops: bool) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .context("cannot install signal handlers")?;
    let tx = event_tx.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if (signal != SIGHUP || hangup_stops) && tx.send(Event::Signal).is_err() {
                    break;
                }
            }
        })
        .context("cannot start the signal thread")?;
    Ok(())
}

/// Own the VM until it ends: answer relayed requests, pass typed input,
/// stop on the escape or a signal.
fn supervise(
    handle: Box<dyn Machine>,
    requests: &Receiver<Request>,
    events: &Receiver<Event>,
) -> ExitReason {
    let exited = handle.exited();
    let input = handle.input();
    let mut events = events.clone();
    let reported = loop {
        crossbeam_channel::select! {
            recv(exited) -> reason => break reason.ok(),
            recv(requests) -> request => {
                if let Ok((command, reply)) = request {
                    let answer = handle
                        .request(command)
                        .map_err(|e| ErrorBody::new(ErrorCode::Refused, e));
                    let _ = reply.send(answer);
                }
            }
            recv(events) -> event => match event {
                Ok(Event::Typed(Typed::Input(bytes))) => input(&bytes),
                Ok(Event::Typed(Typed::Quit)) | Ok(Event::Signal) => {
                    // Refused only when it is already stopping.
                    let _ = handle.request(Command::Stop);
                }
                Ok(Event::Typed(Typed::Eof)) => {}
                Err(_) => events = crossbeam_channel::never(),
            },
        }
    };
    // `wait` joins every thread; the reason `exited` gave is the one to keep
    // (the channel yields it once).
    let waited = handle.wait();
    reported.unwrap_or(waited)
}

/// `error: cause: cause` in one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_passes_requests_to_the_loop_and_reports_a_gone_loop() {
        let (tx, rx) = crossbeam_channel::unbounded::<Request>();
        let relay = Relay { tx };
        let looper = std::thread::spawn(move || {
            let (command, reply) = rx.recv().unwrap();
            assert_eq!(command, Command::Pause);
            reply.send(Ok(Response::Ok)).unwrap();
            // Then the loop ends (the VM stopped).
        });
        assert_eq!(relay.request(Command::Pause), Ok(Response::Ok));
        looper.join().unwrap();
        let err = relay.request(Command::Status).unwrap_err();
        assert_eq!(err.code, ErrorCode::Unavailable);
    }

    #[test]
    fn ready_reports_once() {
        let (mut r, w) = std::io::pipe().unwrap();
        let mut ready = Ready::new(w);
        ready.fail(&anyhow::anyhow!("no kernel").context("cannot build VM x"));
        ready.ready(); // ignored: already reported
        drop(ready);
        let mut text = String::new();
        std::io::Read::read_to_string(&mut r, &mut text).unwrap();
        assert_eq!(text, "error cannot build VM x: no kernel\n");
    }
}
