//! Unix socket servers of a running VM: binding (mode 0600, owned by the VM
//! folder's owner), accepting with a peer-uid check, and the control
//! protocol served against a [`ControlTarget`].

use std::io::{self, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::json;

use super::protocol::{self, ErrorBody, ErrorCode, Line, Reply, StatusResult};
use super::runtime::Owner;
use super::sys;
use crate::vmm::{Command, Response};

/// How often the accept loop checks whether it must stop.
const ACCEPT_POLL_MS: i32 = 100;
/// Connections served at once per socket; more are closed at once.
const MAX_CONNECTIONS: usize = 16;
/// A control connection idle this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a refused peer may take to send its request line.
const REFUSE_READ_TIMEOUT: Duration = Duration::from_secs(1);
/// Socket mode: owner read/write only.
const SOCKET_MODE: u32 = 0o600;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot {action} socket {path}")]
    Socket {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Owner(#[from] super::runtime::Error),
    #[error("cannot start the thread serving {path}")]
    Thread {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What the control socket drives: the VM (through the session's relay)
/// or, in tests, a fake.
pub trait ControlTarget: Send + Sync + 'static {
    fn request(&self, command: Command) -> Result<Response, ErrorBody>;
}

/// A bound socket served by a thread; dropping it stops accepting and
/// removes the socket file (connections already open finish on their own).
pub struct SocketServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SocketServer {
    /// Bind `path` (replacing a stale socket), restrict it to `owner`, and
    /// serve each connection from an allowed peer with `serve` on its own
    /// thread. Peers with another uid get `refuse` called instead.
    pub fn spawn<S, R>(
        path: &Path,
        owner: Owner,
        serve: S,
        refuse: R,
    ) -> Result<SocketServer, Error>
    where
        S: Fn(UnixStream) + Send + Sync + 'static,
        R: Fn(UnixStream, u32) + Send + Sync + 'static,
    {
        let listener = bind(path, owner)?;
        listener
            .set_nonblocking(true)
            .map_err(sock_err("configure", path))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("socket-accept".into())
            .spawn(move || accept_loop(listener, owner, &stop_flag, serve, refuse))
            .map_err(|source| Error::Thread {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(SocketServer {
            path: path.to_path_buf(),
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for SocketServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn sock_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Error + use<> {
    let path = path.to_path_buf();
    move |source| Error::Socket {
        action,
        path,
        source,
    }
}

fn bind(path: &Path, owner: Owner) -> Result<UnixListener, Error> {
    // Only called with the run lock held: a socket file here is stale.
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(sock_err("remove the stale", path)(e)),
    }
    let listener = UnixListener::bind(path).map_err(sock_err("bind", path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))
        .map_err(sock_err("set the mode of", path))?;
    owner.claim(path)?;
    Ok(listener)
}

fn accept_loop<S, R>(listener: UnixListener, owner: Owner, stop: &AtomicBool, serve: S, refuse: R)
where
    S: Fn(UnixStream) + Send + Sync + 'static,
    R: Fn(UnixStream, u32) + Send + Sync + 'static,
{
    let handlers = Arc::new((serve, refuse));
    let active = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::SeqCst) {
        match sys::wait_readable(listener.as_raw_fd(), ACCEPT_POLL_MS) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(_) => std::thread::sleep(Duration::from_millis(ACCEPT_POLL_MS as u64)),
        }
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(_) => continue,
        };
        if stream.set_nonblocking(false).is_err() {
            continue;
        }
        if active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
            continue; // dropped: closes the connection
        }
        let uid = match sys::peer_uid(&stream) {
            Ok(uid) => uid,
            Err(_) => continue,
        };
        let handlers = Arc::clone(&handlers);
        let active_now = Arc::clone(&active);
        active.fetch_add(1, Ordering::SeqCst);
        let spawned = std::thread::Builder::new()
            .name("socket-conn".into())
            .spawn(move || {
                if owner.allows(uid) {
                    (handlers.0)(stream);
                } else {
                    (handlers.1)(stream, uid);
                }
                active_now.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Serve the control socket at `path` for `target`, on behalf of the VM
/// process `pid` (reported in `status`).
pub fn control_server(
    path: &Path,
    owner: Owner,
    target: Arc<dyn ControlTarget>,
    pid: u32,
) -> Result<SocketServer, Error> {
    SocketServer::spawn(
        path,
        owner,
        move |stream| serve_control(stream, target.as_ref(), pid),
        move |mut stream, uid| {
            // Read (and drop) the request first, so the client is not cut
            // off mid-write and sees the answer.
            let _ = stream.set_read_timeout(Some(REFUSE_READ_TIMEOUT));
            if let Ok(copy) = stream.try_clone() {
                let mut reader = BufReader::with_capacity(protocol::MAX_REQUEST_BYTES, copy);
                let _ = protocol::read_line(&mut reader, protocol::MAX_REQUEST_BYTES);
            }
            let reply = Reply::failure(ErrorBody::new(
                ErrorCode::Forbidden,
                format!(
                    "uid {uid} may not control this VM (only uid {} and root)",
                    owner.uid
                ),
            ));
            let _ = stream.write_all(reply.to_line().as_bytes());
        },
    )
}

/// Answer requests on one connection until it closes, idles out, or sends
/// an oversized line (answered with `too_large`, then closed).
pub fn serve_control(stream: UnixStream, target: &dyn ControlTarget, pid: u32) {
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::with_capacity(protocol::MAX_REQUEST_BYTES, stream);
    loop {
        let (reply, close) = match protocol::read_line(&mut reader, protocol::MAX_REQUEST_BYTES) {
            Ok(Line::Complete(line)) => (answer(&line, target, pid), false),
            Ok(Line::TooLong) => (
                Reply::failure(ErrorBody::new(
                    ErrorCode::TooLarge,
                    format!("request longer than {} bytes", protocol::MAX_REQUEST_BYTES),
                )),
                true,
            ),
            Ok(Line::Eof) | Err(_) => return,
        };
        if writer.write_all(reply.to_line().as_bytes()).is_err() || close {
            return;
        }
    }
}

/// The reply to one request line.
pub fn answer(line: &[u8], target: &dyn ControlTarget, pid: u32) -> Reply {
    let command = match protocol::parse_request(line) {
        Ok(c) => c,
        Err(e) => return Reply::failure(e),
    };
    match target.request(command) {
        Ok(Response::Ok) => Reply::success(json!({})),
        Ok(Response::Status(status)) => match serde_json::to_value(StatusResult { status, pid }) {
            Ok(value) => Reply::success(value),
            Err(e) => Reply::failure(ErrorBody::new(
                ErrorCode::Unavailable,
                format!("cannot encode the status: {e}"),
            )),
        },
        Err(e) => Reply::failure(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::{VmState, VmStatus};
    use std::io::{BufRead, Read};
    use std::sync::Mutex;

    /// A VM stand-in with a real state machine.
    struct Fake {
        state: Mutex<VmState>,
        seen: Mutex<Vec<Command>>,
    }

    impl Fake {
        fn new() -> Arc<Fake> {
            Arc::new(Fake {
                state: Mutex::new(VmState::Running),
                seen: Mutex::new(Vec::new()),
            })
        }
    }

    impl ControlTarget for Fake {
        fn request(&self, command: Command) -> Result<Response, ErrorBody> {
            self.seen.lock().unwrap().push(command.clone());
            let mut state = self.state.lock().unwrap();
            let refused = |what: &str| Err(ErrorBody::new(ErrorCode::Refused, what));
            match (command, *state) {
                (Command::Status, s) => Ok(Response::Status(VmStatus {
                    name: "fake".into(),
                    state: s,
                    vcpus: 2,
                    memory_mib: 64,
                    uptime_secs: 1,
                    exit_reason: None,
                })),
                (Command::Pause, VmState::Running) => {
                    *state = VmState::Paused;
                    Ok(Response::Ok)
                }
                (Command::Resume, VmState::Paused) => {
                    *state = VmState::Running;
                    Ok(Response::Ok)
                }
                (Command::Pause | Command::Resume, _) => refused("wrong state"),
                (Command::Stop, _) => {
                    *state = VmState::Stopped;
                    Ok(Response::Ok)
                }
                _ => Ok(Response::Ok),
            }
        }
    }

    struct Setup {
        _dir: tempfile::TempDir,
        path: PathBuf,
        server: Option<SocketServer>,
        fake: Arc<Fake>,
    }

    fn setup() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let fake = Fake::new();
        let owner = Owner::of(dir.path()).unwrap();
        let server = control_server(&path, owner, fake.clone(), 4242).unwrap();
        Setup {
            _dir: dir,
            path,
            server: Some(server),
            fake,
        }
    }

    fn connect(path: &Path) -> (UnixStream, BufReader<UnixStream>) {
        let stream = UnixStream::connect(path).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        (stream, reader)
    }

    fn roundtrip(
        stream: &mut UnixStream,
        reader: &mut BufReader<UnixStream>,
        line: &[u8],
    ) -> serde_json::Value {
        stream.write_all(line).unwrap();
        let mut answer = String::new();
        reader.read_line(&mut answer).unwrap();
        serde_json::from_str(&answer).unwrap()
    }

    #[test]
    fn lifecycle_requests_over_a_real_socket() {
        let s = setup();
        let mode = std::fs::metadata(&s.path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let (mut w, mut r) = connect(&s.path);
        let status = roundtrip(&mut w, &mut r, b"{\"v\":1,\"cmd\":\"status\"}\n");
        assert_eq!(status["ok"], true);
        assert_eq!(status["v"], 1);
        assert_eq!(status["result"]["state"], "running");
        assert_eq!(status["result"]["pid"], 4242);
        assert_eq!(status["result"]["vcpus"], 2);

        let paused = roundtrip(&mut w, &mut r, b"{\"v\":1,\"cmd\":\"pause\"}\n");
        assert_eq!(paused["ok"], true);
        let again = roundtrip(&mut w, &mut r, b"{\"v\":1,\"cmd\":\"pause\"}\n");
        assert_eq!(again["ok"], false);
        assert_eq!(again["error"]["code"], "refused");
        let status = roundtrip(&mut w, &mut r, b"{\"v\":1,\"cmd\":\"status\"}\n");
        assert_eq!(status["result"]["state"], "paused");
        assert_eq!(
            *s.fake.seen.lock().unwrap(),
            vec![
                Command::Status,
                Command::Pause,
                Command::Pause,
                Command::Status
            ]
        );
    }

    #[test]
    fn malformed_requests_get_errors_and_the_connection_goes_on() {
        let s = setup();
        let (mut w, mut r) = connect(&s.path);
        for (line, code) in [
            (&b"hello\n"[..], "bad_request"),
            (b"{\"v\":9,\"cmd\":\"status\"}\n", "unsupported_version"),
            (
                b"{\"v\":1,\"cmd\":\"read_file\",\"path\":\"/etc/shadow\"}\n",
                "unknown_command",
            ),
            (b"\n", "bad_request"),
        ] {
            let reply = roundtrip(&mut w, &mut r, line);
            assert_eq!(reply["ok"], false, "{reply}");
            assert_eq!(reply["error"]["code"], code, "{reply}");
        }
        let status = roundtrip(&mut w, &mut r, b"{\"v\":1,\"cmd\":\"status\"}\n");
        assert_eq!(status["ok"], true);
        // Only the valid request reached the VM.
        assert_eq!(*s.fake.seen.lock().unwrap(), vec![Command::Status]);
    }

    #[test]
    fn oversized_request_is_refused_and_the_server_keeps_serving() {
        let s = setup();
        let (mut w, mut r) = connect(&s.path);
        let mut big = vec![b'x'; protocol::MAX_REQUEST_BYTES * 4];
        big.push(b'\n');
        // The server may close before reading everything: ignore EPIPE.
        let _ = w.write_all(&big);
        let mut answer = String::new();
        r.read_line(&mut answer).unwrap();
        let reply: serde_json::Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(reply["error"]["code"], "too_large");
        // That connection is closed; a new one works.
        let mut rest = Vec::new();
        let _ = r.read_to_end(&mut rest);
        let (mut w2, mut r2) = connect(&s.path);
        let status = roundtrip(&mut w2, &mut r2, b"{\"v\":1,\"cmd\":\"status\"}\n");
        assert_eq!(status["ok"], true);
        assert!(s.fake.seen.lock().unwrap().len() == 1);
    }

    #[test]
    fn dropping_the_server_removes_the_socket() {
        let mut s = setup();
        assert!(s.path.exists());
        s.server.take();
        assert!(!s.path.exists());
        assert!(UnixStream::connect(&s.path).is_err());
    }

    #[test]
    fn another_uid_is_refused() {
        if sys::geteuid() != 0 {
            eprintln!("skipped: needs root to switch uid");
            return;
        }
        let s = setup();
        // The socket is 0600 root's: an unprivileged process could not even
        // connect. Open it up so the SO_PEERCRED check is what refuses.
        std::fs::set_permissions(&s.path, std::fs::Permissions::from_mode(0o666)).unwrap();
        std::fs::set_permissions(s._dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let (result_r, result_w) = std::io::pipe().unwrap();
        let path = s.path.clone();
        match sys::fork().unwrap() {
            sys::Fork::Child => {
                // Child: no allocation-heavy work beyond what is needed.
                let mut out = result_w;
                // Nothing here may panic: unwinding would run the test
                // harness in the child.
                let answer = (|| -> std::io::Result<String> {
                    sys::set_ids(65534, 65534)?;
                    let mut stream = UnixStream::connect(&path)?;
                    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
                    // Even if the server has closed already, its answer is
                    // waiting: read it regardless.
                    let _ = stream.write_all(b"{\"v\":1,\"cmd\":\"stop\"}\n");
                    let mut answer = String::new();
                    BufReader::new(stream).read_line(&mut answer)?;
                    Ok(answer)
                })();
                let text = answer.unwrap_or_else(|e| format!("child error: {e}"));
                let _ = out.write_all(text.as_bytes());
                sys::exit_now(0);
            }
            sys::Fork::Parent(pid) => {
                drop(result_w);
                let mut answer = String::new();
                let mut result_r = result_r;
                result_r.read_to_string(&mut answer).unwrap();
                sys::waitpid(pid).unwrap();
                let reply: serde_json::Value = serde_json::from_str(&answer)
                    .unwrap_or_else(|e| panic!("child answer {answer:?}: {e}"));
                assert_eq!(reply["ok"], false);
                assert_eq!(reply["error"]["code"], "forbidden");
                assert!(s.fake.seen.lock().unwrap().is_empty());
            }
        }
    }
}
