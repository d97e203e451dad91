//! The serial console outside the VMM: the escape sequence, the terminal in
//! raw mode (always restored), stdin forwarding, and for detached VMs the
//! log file plus the console socket fan-out.
//!
//! Escape: Ctrl-] then `q` quits (`start`: stops the VM; `console`:
//! detaches and leaves the VM running). Ctrl-] twice sends one Ctrl-] to
//! the guest. Every other key, Ctrl-C included, goes to the guest.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::RawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, Once};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use super::sys;

/// The escape key: Ctrl-] (ASCII GS), as in telnet and virsh.
pub const ESCAPE_KEY: u8 = 0x1d;
/// After the escape key, this quits / detaches.
pub const QUIT_KEY: u8 = b'q';
/// How the escape is written in messages.
pub const ESCAPE_HELP: &str = "Ctrl-] q";

/// Chunks of guest output buffered for the log and each console client;
/// beyond that output is dropped for the slow side (the vCPU never waits).
const OUTPUT_QUEUE: usize = 4096;
const CLIENT_QUEUE: usize = 1024;
/// Bytes read from stdin or a console client at once.
const INPUT_CHUNK: usize = 1024;

/// Recent output a newly attached console client sees first (e.g. the
/// login prompt printed before it attached).
const REPLAY_BYTES: usize = 4096;

/// The attached console clients' output queues, and the recent output.
type Clients = Mutex<Attached>;

#[derive(Default)]
struct Attached {
    queues: Vec<Sender<Arc<[u8]>>>,
    recent: std::collections::VecDeque<u8>,
}

impl Attached {
    fn remember(&mut self, chunk: &[u8]) {
        self.recent.extend(chunk);
        let excess = self.recent.len().saturating_sub(REPLAY_BYTES);
        self.recent.drain(..excess);
    }
}

/// Finds the escape sequence in typed input.
#[derive(Debug, Default)]
pub struct EscapeFilter {
    pending: bool,
}

impl EscapeFilter {
    /// Append the bytes of `input` meant for the guest to `out`; returns
    /// true when the quit sequence was typed (input after it is dropped).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> bool {
        for &byte in input {
            if self.pending {
                self.pending = false;
                match byte {
                    QUIT_KEY => return true,
                    ESCAPE_KEY => out.push(ESCAPE_KEY),
                    other => out.extend_from_slice(&[ESCAPE_KEY, other]),
                }
            } else if byte == ESCAPE_KEY {
                self.pending = true;
            } else {
                out.push(byte);
            }
        }
        false
    }
}

/// The mode a terminal had before we made it raw (one at a time).
static SAVED_TERMINAL: Mutex<Option<(RawFd, sys::Termios)>> = Mutex::new(None);
static PANIC_HOOK: Once = Once::new();

/// Put the terminal back as it was, if we changed it. Idempotent; called by
/// [`RawTerminal`]'s drop, the panic hook, and signal handling threads.
pub fn restore_terminal() {
    let saved = SAVED_TERMINAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take();
    if let Some((fd, mode)) = saved {
        let _ = sys::set_termios(fd, &mode);
    }
}

/// A terminal in raw mode; dropping it (also while unwinding) restores it.
pub struct RawTerminal {
    _private: (),
}

impl RawTerminal {
    /// Make `fd` raw if it is a terminal; `None` when it is not one.
    pub fn enter(fd: RawFd) -> io::Result<Option<RawTerminal>> {
        if !sys::isatty(fd) {
            return Ok(None);
        }
        let saved = sys::get_termios(fd)?;
        PANIC_HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore_terminal();
                previous(info);
            }));
        });
        *SAVED_TERMINAL
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some((fd, saved));
        if let Err(e) = sys::set_termios(fd, &sys::raw(&saved)) {
            restore_terminal();
            return Err(e);
        }
        Ok(Some(RawTerminal { _private: () }))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// What the stdin reader reports.
#[derive(Debug, PartialEq, Eq)]
pub enum Typed {
    /// Bytes for the guest.
    Input(Vec<u8>),
    /// The escape sequence was typed.
    Quit,
    /// stdin ended (or failed).
    Eof,
}

/// Read `input` on a thread, filter the escape, and report on `tx`. The
/// thread ends at EOF, at the quit sequence, or when `tx` is gone.
pub fn spawn_input_reader(mut input: impl Read + Send + 'static, tx: Sender<Typed>) {
    let spawned = std::thread::Builder::new()
        .name("console-input".into())
        .spawn(move || {
            let mut filter = EscapeFilter::default();
            let mut buf = [0u8; INPUT_CHUNK];
            loop {
                let n = match input.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                };
                let mut out = Vec::with_capacity(n);
                let quit = filter.feed(&buf[..n], &mut out);
                if !out.is_empty() && tx.send(Typed::Input(out)).is_err() {
                    return;
                }
                if quit {
                    let _ = tx.send(Typed::Quit);
                    return;
                }
            }
            let _ = tx.send(Typed::Eof);
        });
    if spawned.is_err() {
        // Without the thread there is no input; the console still shows
        // output and the VM runs.
        log::warn!("cannot start the console input thread");
    }
}

/// Guest output of a foreground VM: straight to stdout, unchanged.
pub struct StdoutSink;

impl Write for StdoutSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut out = io::stdout().lock();
        out.write_all(buf)?;
        out.flush()?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stdout().flush()
    }
}

/// Guest output of a detached VM: queued (never blocking the vCPU) for the
/// pump thread that appends it to the log and copies it to every attached
/// console client.
pub struct HubSink {
    tx: Sender<Arc<[u8]>>,
}

impl Write for HubSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.tx.try_send(Arc::from(buf)) {
            // Full: the log cannot keep up; drop rather than stall the guest.
            Ok(()) | Err(TrySendError::Full(_)) => Ok(buf.len()),
            Err(TrySendError::Disconnected(_)) => Err(io::ErrorKind::BrokenPipe.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The console of a detached VM: log file and attached clients.
#[derive(Clone)]
pub struct ConsoleHub {
    clients: Arc<Clients>,
}

impl ConsoleHub {
    /// Start the pump writing to `log`; the returned sink goes to the VMM.
    pub fn start(log: File) -> io::Result<(ConsoleHub, HubSink)> {
        let (tx, rx) = crossbeam_channel::bounded(OUTPUT_QUEUE);
        let hub = ConsoleHub {
            clients: Arc::new(Mutex::new(Attached::default())),
        };
        let clients = Arc::clone(&hub.clients);
        std::thread::Builder::new()
            .name("console-pump".into())
            .spawn(move || pump(rx, log, &clients))?;
        Ok((hub, HubSink { tx }))
    }

    /// Serve one console client on the calling thread: its input goes to
    /// `input`, guest output is copied to it until either side closes.
    pub fn serve(&self, stream: UnixStream, input: &(dyn Fn(&[u8]) + Send + Sync)) {
        let (tx, rx) = crossbeam_channel::bounded::<Arc<[u8]>>(CLIENT_QUEUE);
        let Ok(mut writer) = stream.try_clone() else {
            return;
        };
        let spawned = std::thread::Builder::new()
            .name("console-out".into())
            .spawn(move || {
                for chunk in rx {
                    if writer.write_all(&chunk).is_err() {
                        break;
                    }
                }
                let _ = writer.shutdown(std::net::Shutdown::Both);
            });
        if spawned.is_err() {
            return;
        }
        {
            // Under the lock the pump takes, so nothing is missed or doubled.
            let mut attached = self.clients.lock().unwrap_or_else(|p| p.into_inner());
            let (a, b) = attached.recent.as_slices();
            let recent: Arc<[u8]> = [a, b].concat().into();
            if !recent.is_empty() {
                let _ = tx.try_send(recent);
            }
            attached.queues.push(tx);
        }
        let mut reader = stream;
        let mut buf = [0u8; INPUT_CHUNK];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => input(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        // Wake the output thread so the client's slot is freed.
        let _ = reader.shutdown(std::net::Shutdown::Both);
    }
}

fn pump(rx: Receiver<Arc<[u8]>>, mut log: File, clients: &Clients) {
    let mut log_ok = true;
    for chunk in rx {
        if log_ok && log.write_all(&chunk).is_err() {
            // A full disk must not stop the console clients.
            log_ok = false;
        }
        let mut attached = clients.lock().unwrap_or_else(|p| p.into_inner());
        attached.remember(&chunk);
        attached
            .queues
            .retain(|client| match client.try_send(Arc::clone(&chunk)) {
                Ok(()) | Err(TrySendError::Full(_)) => true,
                Err(TrySendError::Disconnected(_)) => false,
            });
    }
    // The VM is gone: ending the client channels closes their sockets.
    clients
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .queues
        .clear();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn filter(chunks: &[&[u8]]) -> (Vec<u8>, bool) {
        let mut f = EscapeFilter::default();
        let mut out = Vec::new();
        for chunk in chunks {
            if f.feed(chunk, &mut out) {
                return (out, true);
            }
        }
        (out, false)
    }

    #[test]
    fn escape_sequence() {
        assert_eq!(filter(&[b"ls\r"]), (b"ls\r".to_vec(), false));
        // Ctrl-C is guest input.
        assert_eq!(filter(&[b"\x03"]), (b"\x03".to_vec(), false));
        assert_eq!(filter(&[b"ab\x1dqzz"]), (b"ab".to_vec(), true));
        // Split across reads.
        assert_eq!(filter(&[b"a\x1d", b"q"]), (b"a".to_vec(), true));
        assert_eq!(filter(&[b"\x1d\x1d"]), (vec![ESCAPE_KEY], false));
        assert_eq!(filter(&[b"\x1dx"]), (vec![ESCAPE_KEY, b'x'], false));
        assert_eq!(filter(&[b"q\x1d"]), (b"q".to_vec(), false));
    }

    #[test]
    fn input_reader_reports_input_then_quit() {
        let (tx, rx) = crossbeam_channel::unbounded();
        spawn_input_reader(&b"hi\x1dqafter"[..], tx);
        let timeout = Duration::from_secs(10);
        assert_eq!(
            rx.recv_timeout(timeout).unwrap(),
            Typed::Input(b"hi".to_vec())
        );
        assert_eq!(rx.recv_timeout(timeout).unwrap(), Typed::Quit);
        let (tx, rx) = crossbeam_channel::unbounded();
        spawn_input_reader(&b""[..], tx);
        assert_eq!(rx.recv_timeout(timeout).unwrap(), Typed::Eof);
    }

    fn pty() -> (File, File) {
        let (master, slave) = sys::openpty().unwrap();
        (master, slave)
    }

    fn lflag(fd: RawFd) -> libc::tcflag_t {
        sys::get_termios(fd).unwrap().lflag()
    }

    #[test]
    fn raw_terminal_is_restored_on_drop_and_on_panic() {
        use std::os::fd::AsRawFd;
        let (_master, slave) = pty();
        let fd = slave.as_raw_fd();
        let before = lflag(fd);
        assert_ne!(before & libc::ECHO, 0);
        {
            let guard = RawTerminal::enter(fd).unwrap().expect("a pty is a tty");
            assert_eq!(lflag(fd) & (libc::ECHO | libc::ICANON | libc::ISIG), 0);
            drop(guard);
        }
        assert_eq!(lflag(fd), before);

        let result = std::panic::catch_unwind(|| {
            let _guard = RawTerminal::enter(fd).unwrap();
            assert_eq!(lflag(fd) & libc::ECHO, 0);
            panic!("boom");
        });
        assert!(result.is_err());
        assert_eq!(lflag(fd), before);

        // Not a terminal: nothing to do.
        let file = tempfile::tempfile().unwrap();
        assert!(RawTerminal::enter(file.as_raw_fd()).unwrap().is_none());
    }

    #[test]
    fn a_new_client_first_sees_recent_output() {
        let log = tempfile::tempfile().unwrap();
        let (hub, mut sink) = ConsoleHub::start(log).unwrap();
        let old = vec![b'o'; REPLAY_BYTES];
        sink.write_all(&old).unwrap();
        sink.write_all(b"login: ").unwrap();
        // Wait until the pump has seen it all.
        while hub
            .clients
            .lock()
            .unwrap()
            .recent
            .iter()
            .rev()
            .take(7)
            .ne(b" :nigol".iter())
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        let (client, server_side) = UnixStream::pair().unwrap();
        let hub2 = hub.clone();
        let server = std::thread::spawn(move || hub2.serve(server_side, &|_: &[u8]| {}));
        let mut reader = client.try_clone().unwrap();
        reader
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut got = vec![0u8; REPLAY_BYTES];
        reader.read_exact(&mut got).unwrap();
        assert!(got.ends_with(b"login: "), "{:?}", &got[got.len() - 16..]);
        assert_eq!(got.len(), REPLAY_BYTES);
        client.shutdown(std::net::Shutdown::Both).unwrap();
        server.join().unwrap();
    }

    #[test]
    fn hub_logs_output_and_serves_clients() {
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("console.log");
        let log = File::create(&log_path).unwrap();
        let (hub, mut sink) = ConsoleHub::start(log).unwrap();
        let (client, server_side) = UnixStream::pair().unwrap();
        let typed = Arc::new(Mutex::new(Vec::new()));
        let typed_in = Arc::clone(&typed);
        let hub2 = hub.clone();
        let server = std::thread::spawn(move || {
            hub2.serve(server_side, &move |b: &[u8]| {
                typed_in.lock().unwrap().extend_from_slice(b)
            })
        });
        // Wait until the client is registered, then produce output.
        while hub.clients.lock().unwrap().queues.is_empty() {
            std::thread::sleep(Duration::from_millis(5));
        }
        sink.write_all(b"count=1\r\n").unwrap();
        let mut reader = client.try_clone().unwrap();
        reader
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut got = [0u8; 9];
        reader.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"count=1\r\n");
        (&client).write_all(b"ls\n").unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        server.join().unwrap();
        assert_eq!(*typed.lock().unwrap(), b"ls\n");
        drop(sink);
        // The pump ends when the sink is gone; the log has everything.
        for _ in 0..1000 {
            if std::fs::read(&log_path).unwrap() == b"count=1\r\n" {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("log: {:?}", std::fs::read(&log_path).unwrap());
    }
}
