//! The client side of the sockets: one request on the control socket, and
//! attaching a terminal to a detached VM's console socket.

use std::io::{self, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::console::{self, RawTerminal, Typed};
use super::protocol::{self, ErrorBody, Line, Reply, StatusResult};
use crate::vmm::Command;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot reach the VM's socket {path}")]
    Connect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("lost the connection to the VM's socket {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the VM closed the connection without answering")]
    NoAnswer,
    #[error(
        "the VM's answer is longer than {} bytes",
        protocol::MAX_RESPONSE_BYTES
    )]
    AnswerTooLong,
    #[error("the VM refused: {0}")]
    Refused(ErrorBody),
    #[error("the VM's status is malformed")]
    BadStatus(#[source] serde_json::Error),
}

/// Send one request and return the raw answer line (without newline).
pub fn request_raw(socket: &Path, command: &Command, timeout: Duration) -> Result<String, Error> {
    let io_err = |source| Error::Io {
        path: socket.to_path_buf(),
        source,
    };
    let mut stream = UnixStream::connect(socket).map_err(|source| Error::Connect {
        path: socket.to_path_buf(),
        source,
    })?;
    stream.set_read_timeout(Some(timeout)).map_err(io_err)?;
    stream.set_write_timeout(Some(timeout)).map_err(io_err)?;
    // A refused peer may find the socket closed before its request is
    // written; the answer (the reason) is still there to read.
    let sent = stream.write_all(protocol::request_line(command).as_bytes());
    let mut reader = BufReader::new(stream);
    match protocol::read_line(&mut reader, protocol::MAX_RESPONSE_BYTES).map_err(io_err)? {
        Line::Complete(line) => Ok(String::from_utf8_lossy(&line).into_owned()),
        Line::TooLong => Err(Error::AnswerTooLong),
        Line::Eof => Err(match sent {
            Err(e) => io_err(e),
            Ok(()) => Error::NoAnswer,
        }),
    }
}

/// Send one request; the result of a successful answer.
pub fn request(
    socket: &Path,
    command: &Command,
    timeout: Duration,
) -> Result<serde_json::Value, Error> {
    let line = request_raw(socket, command, timeout)?;
    Reply::parse(line.as_bytes())
        .and_then(Reply::into_result)
        .map_err(Error::Refused)
}

/// Ask for the status.
pub fn status(socket: &Path, timeout: Duration) -> Result<StatusResult, Error> {
    let value = request(socket, &Command::Status, timeout)?;
    serde_json::from_value(value).map_err(Error::BadStatus)
}

/// How an attached console session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Detach {
    /// The user typed the escape.
    User,
    /// The VM closed the console (it stopped).
    Closed,
}

/// Attach this terminal to the console socket until the escape is typed or
/// the VM goes away. The terminal is raw meanwhile and always restored.
pub fn attach_console(socket: &Path) -> Result<Detach, Error> {
    let stream = UnixStream::connect(socket).map_err(|source| Error::Connect {
        path: socket.to_path_buf(),
        source,
    })?;
    let io_err = |source| Error::Io {
        path: socket.to_path_buf(),
        source,
    };
    let terminal = RawTerminal::enter(libc::STDIN_FILENO).map_err(io_err)?;
    let (typed_tx, typed) = crossbeam_channel::unbounded();
    console::spawn_input_reader(io::stdin(), typed_tx);
    let (closed_tx, closed) = crossbeam_channel::bounded::<()>(1);
    let mut output = stream.try_clone().map_err(io_err)?;
    std::thread::Builder::new()
        .name("console-output".into())
        .spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match output.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        let mut out = io::stdout().lock();
                        if out.write_all(&buf[..n]).and_then(|()| out.flush()).is_err() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
            let _ = closed_tx.send(());
        })
        .map_err(io_err)?;
    let mut writer = stream;
    let mut typed = typed;
    let how = loop {
        crossbeam_channel::select! {
            recv(typed) -> event => match event {
                Ok(Typed::Input(bytes)) => {
                    if writer.write_all(&bytes).is_err() {
                        break Detach::Closed;
                    }
                }
                Ok(Typed::Quit) => break Detach::User,
                // stdin ended (no terminal, e.g. a script): keep showing
                // output until the VM closes the console.
                Ok(Typed::Eof) | Err(_) => typed = crossbeam_channel::never(),
            },
            recv(closed) -> _ => break Detach::Closed,
        }
    };
    let _ = writer.shutdown(std::net::Shutdown::Both);
    drop(terminal);
    Ok(how)
}
