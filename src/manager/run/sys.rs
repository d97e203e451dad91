//! The few raw libc calls the lifecycle needs (flock, fork/setsid, peer
//! credentials, termios, process control), each wrapped in a safe function.
//! Every `unsafe` block of `manager::run` lives in this file.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;

/// Turn a `-1` return into the thread's `errno`.
fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Try to take an exclusive (or shared) `flock(2)` on `file` without
/// blocking. `Ok(false)` means another open file description holds it.
pub fn try_flock(file: &File, exclusive: bool) -> io::Result<bool> {
    let op = if exclusive {
        libc::LOCK_EX
    } else {
        libc::LOCK_SH
    } | libc::LOCK_NB;
    loop {
        // SAFETY: flock on a file descriptor we own; no memory is passed.
        let ret = unsafe { libc::flock(file.as_raw_fd(), op) };
        match check(ret) {
            Ok(_) => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Release a lock taken with [`try_flock`].
pub fn unlock(file: &File) -> io::Result<()> {
    // SAFETY: flock on a file descriptor we own; no memory is passed.
    check(unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) }).map(drop)
}

/// The uid of the process at the other end of a connected Unix socket, as
/// the kernel recorded it at connect time (SO_PEERCRED, unix(7)).
pub fn peer_uid(stream: &UnixStream) -> io::Result<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` is a properly sized, writable ucred and `len` says its
    // size; the kernel writes at most `len` bytes.
    let ret = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    check(ret)?;
    Ok(cred.uid)
}

/// The real uid of this process.
#[cfg(test)]
pub fn getuid() -> u32 {
    // SAFETY: getuid has no arguments and cannot fail.
    unsafe { libc::getuid() }
}

/// Result of [`fork`].
pub enum Fork {
    Parent(libc::pid_t),
    Child,
}

/// `fork(2)`. The caller must be single-threaded (the CLI before it starts
/// any VM thread), so the child inherits a consistent process.
pub fn fork() -> io::Result<Fork> {
    // SAFETY: the callers only fork before creating any thread, so no lock
    // can be held by a thread that does not exist in the child.
    let pid = check(unsafe { libc::fork() })?;
    Ok(if pid == 0 {
        Fork::Child
    } else {
        Fork::Parent(pid)
    })
}

/// `setsid(2)`: become the leader of a new session with no terminal.
pub fn setsid() -> io::Result<()> {
    // SAFETY: no arguments; fails only if already a group leader.
    check(unsafe { libc::setsid() }).map(drop)
}

/// End this (forked) process at once, without running atexit handlers or
/// destructors that belong to the parent.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no memory of ours.
    unsafe { libc::_exit(code) }
}

/// Wait for the child `pid` and return its raw wait status.
pub fn waitpid(pid: libc::pid_t) -> io::Result<i32> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid, writable int.
        let ret = unsafe { libc::waitpid(pid, &mut status, 0) };
        match check(ret) {
            Ok(_) => return Ok(status),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Point stdin, stdout and stderr at /dev/null.
pub fn stdio_to_devnull() -> io::Result<()> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for fd in [libc::STDIN_FILENO, libc::STDOUT_FILENO, libc::STDERR_FILENO] {
        // SAFETY: dup2 between two descriptors that are open; the standard
        // streams are replaced atomically.
        check(unsafe { libc::dup2(null.as_raw_fd(), fd) })?;
    }
    Ok(())
}

/// Send `signal` to `pid` (signal 0 only checks that it exists).
pub fn kill(pid: libc::pid_t, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: kill takes plain integers.
    check(unsafe { libc::kill(pid, signal) }).map(drop)
}

/// Drop to `uid`/`gid` (tests use this in a forked child).
#[cfg(test)]
pub fn set_ids(uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: plain integer arguments; order matters (gid while still root).
    check(unsafe { libc::setgroups(0, std::ptr::null()) })?;
    // SAFETY: as above.
    check(unsafe { libc::setgid(gid) })?;
    // SAFETY: as above.
    check(unsafe { libc::setuid(uid) }).map(drop)
}

/// Wait until `fd` is readable (or hung up) for at most `timeout_ms`.
pub fn wait_readable(fd: RawFd, timeout_ms: i32) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, count 1.
    let ret = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
    match check(ret) {
        Ok(n) => Ok(n > 0),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(false),
        Err(e) => Err(e),
    }
}

/// The effective uid of this process.
pub fn geteuid() -> u32 {
    // SAFETY: geteuid has no arguments and cannot fail.
    unsafe { libc::geteuid() }
}

/// Is `fd` a terminal?
pub fn isatty(fd: RawFd) -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(fd) == 1 }
}

/// A saved terminal mode.
#[derive(Clone, Copy)]
pub struct Termios(libc::termios);

/// Read the terminal mode of `fd`.
pub fn get_termios(fd: RawFd) -> io::Result<Termios> {
    // SAFETY: termios is plain old data; all-zero is a valid value to be
    // overwritten by tcgetattr.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `t` is a valid, writable termios.
    check(unsafe { libc::tcgetattr(fd, &mut t) })?;
    Ok(Termios(t))
}

/// Set the terminal mode of `fd` (after output drains).
pub fn set_termios(fd: RawFd, mode: &Termios) -> io::Result<()> {
    // SAFETY: `mode.0` is a valid termios read by tcgetattr.
    check(unsafe { libc::tcsetattr(fd, libc::TCSADRAIN, &mode.0) }).map(drop)
}

/// `mode` made raw (cfmakeraw(3)): no echo, no line editing, no signals
/// from keys (Ctrl-C goes to the guest), no output processing.
pub fn raw(mode: &Termios) -> Termios {
    let mut t = mode.0;
    // SAFETY: cfmakeraw only edits the struct it is given.
    unsafe { libc::cfmakeraw(&mut t) };
    Termios(t)
}

#[cfg(test)]
impl Termios {
    /// Local mode flags (tests inspect them).
    pub fn lflag(&self) -> libc::tcflag_t {
        self.0.c_lflag
    }
}

/// The exit status of child `pid` if it has exited (reaped), without
/// blocking; `Err` when it was killed by a signal.
#[cfg(test)]
pub fn try_exit_status(pid: libc::pid_t) -> io::Result<Option<Result<i32, i32>>> {
    let mut status = 0;
    // SAFETY: `status` is a valid int; WNOHANG never blocks.
    let reaped = check(unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) })?;
    if reaped != pid {
        return Ok(None);
    }
    Ok(Some(if libc::WIFEXITED(status) {
        Ok(libc::WEXITSTATUS(status))
    } else {
        Err(status)
    }))
}

/// Make `fd` refer to what `file` refers to (tests redirect stdio).
#[cfg(test)]
pub fn redirect(file: &impl AsRawFd, fd: RawFd) -> io::Result<()> {
    // SAFETY: dup2 between two open descriptors.
    check(unsafe { libc::dup2(file.as_raw_fd(), fd) }).map(drop)
}

/// A new pseudo-terminal pair (master, slave), for tests of terminal modes.
#[cfg(test)]
pub fn openpty() -> io::Result<(File, File)> {
    use std::os::fd::FromRawFd;
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: both out-pointers are valid ints; name, termios and winsize
    // may be null (openpty(3)).
    let ret = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    check(ret)?;
    // SAFETY: openpty succeeded, so both descriptors are open and ours.
    Ok(unsafe { (File::from_raw_fd(master), File::from_raw_fd(slave)) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flock_conflicts_between_descriptions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let a = File::create(&path).unwrap();
        let b = File::open(&path).unwrap();
        assert!(try_flock(&a, true).unwrap());
        assert!(!try_flock(&b, true).unwrap());
        assert!(!try_flock(&b, false).unwrap());
        unlock(&a).unwrap();
        assert!(try_flock(&b, false).unwrap());
    }

    #[test]
    fn peer_uid_of_a_socketpair_is_ours() {
        let (a, _b) = UnixStream::pair().unwrap();
        assert_eq!(peer_uid(&a).unwrap(), getuid());
    }

    #[test]
    fn raw_mode_disables_echo_and_signals() {
        // SAFETY: zeroed termios is valid plain data.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        t.c_lflag = libc::ECHO | libc::ICANON | libc::ISIG;
        t.c_oflag = libc::OPOST;
        let r = raw(&Termios(t));
        assert_eq!(r.0.c_lflag & (libc::ECHO | libc::ICANON | libc::ISIG), 0);
        assert_eq!(r.0.c_oflag & libc::OPOST, 0);
    }
}
