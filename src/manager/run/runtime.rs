//! Runtime files of a VM folder: the run lock, the pid file, the sockets,
//! the console log and the last exit reason; and the state derived from them.
//!
//! The lock decides: a VM runs exactly while some process holds an
//! exclusive `flock(2)` on `run.lock`. Every other file is only trusted
//! when the lock is held; when it is not (kill -9, host reboot), they are
//! stale and removed while holding the lock, so nothing races with a start.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::exit;
use super::sys;
use crate::vmm::ExitReason;

/// Held (flock) by the VM process for as long as the VM runs.
pub const LOCK_FILE: &str = "run.lock";
/// Pid and start time of the running VM process (JSON).
pub const PID_FILE: &str = "run.json";
/// How the last run ended (JSON), written when a VM process ends.
pub const LAST_EXIT_FILE: &str = "last-exit.json";
/// COM1 output of a detached VM, truncated at each start.
pub const CONSOLE_LOG: &str = "console.log";
/// Control socket (JSON lines, see the README, "Control protocol").
pub const CONTROL_SOCKET: &str = "control.sock";
/// Console socket of a detached VM (raw bytes both ways).
pub const CONSOLE_SOCKET: &str = "console.sock";

/// `sizeof(sockaddr_un.sun_path)` on Linux (unix(7)), NUL included.
const SUN_PATH_LEN: usize = 108;
/// Attempts (10 ms apart) to take the lock before calling it held: a
/// `list` probing the state holds it for a moment.
const LOCK_ATTEMPTS: u32 = 10;
const LOCK_RETRY: Duration = Duration::from_millis(10);
/// How long a state probe waits for a status answer.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("VM {name} is already running (pid {pid})")]
    AlreadyRunning { name: String, pid: String },
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("socket directory {path} is not safe to use: {why}")]
    UnsafeSocketDir { path: PathBuf, why: String },
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Error + use<> {
    let path = path.to_path_buf();
    move |source| Error::Io {
        action,
        path,
        source,
    }
}

/// The user who owns a VM folder: runtime files are created for them, and
/// only they (and root) may use the sockets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

impl Owner {
    pub fn of(dir: &Path) -> Result<Owner, Error> {
        let meta = fs::metadata(dir).map_err(io_err("read the owner of", dir))?;
        Ok(Owner {
            uid: meta.uid(),
            gid: meta.gid(),
        })
    }

    /// May a peer with `uid` use this VM's sockets?
    pub fn allows(&self, uid: u32) -> bool {
        uid == self.uid || uid == 0
    }

    /// Give `path` to the owner when we run as root (e.g. under sudo).
    pub fn claim(&self, path: &Path) -> Result<(), Error> {
        if sys::geteuid() == 0 && self.uid != 0 {
            std::os::unix::fs::lchown(path, Some(self.uid), Some(self.gid))
                .map_err(io_err("change the owner of", path))?;
        }
        Ok(())
    }
}

/// Where the runtime files of the VM folder `dir` live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Paths {
    pub dir: PathBuf,
    pub lock: PathBuf,
    pub pid: PathBuf,
    pub last_exit: PathBuf,
    pub console_log: PathBuf,
    pub control: PathBuf,
    pub console: PathBuf,
    /// The fallback socket directory, when the folder's path is too long.
    pub socket_dir: Option<PathBuf>,
}

impl Paths {
    /// `dir` should be absolute (sockets are addressed by path).
    pub fn new(dir: &Path, owner_uid: u32) -> Paths {
        let in_dir = |name: &str| dir.join(name);
        let fits = |p: &Path| p.as_os_str().len() < SUN_PATH_LEN;
        let (control, console, socket_dir) =
            if fits(&in_dir(CONTROL_SOCKET)) && fits(&in_dir(CONSOLE_SOCKET)) {
                (in_dir(CONTROL_SOCKET), in_dir(CONSOLE_SOCKET), None)
            } else {
                let base = fallback_socket_dir(owner_uid);
                let tag = format!("{:016x}", fnv1a(dir.as_os_str().as_encoded_bytes()));
                (
                    base.join(format!("{tag}-{CONTROL_SOCKET}")),
                    base.join(format!("{tag}-{CONSOLE_SOCKET}")),
                    Some(base),
                )
            };
        Paths {
            dir: dir.to_path_buf(),
            lock: in_dir(LOCK_FILE),
            pid: in_dir(PID_FILE),
            last_exit: in_dir(LAST_EXIT_FILE),
            console_log: in_dir(CONSOLE_LOG),
            control,
            console,
            socket_dir,
        }
    }

    /// Paths of `dir` for its owner.
    pub fn of(dir: &Path) -> Result<Paths, Error> {
        let dir = resolve(dir)?;
        Ok(Paths::new(&dir, Owner::of(&dir)?.uid))
    }

    /// Create the fallback socket directory (0700, the owner's), or check
    /// that an existing one is a real directory nobody else controls.
    pub fn prepare_socket_dir(&self, owner: &Owner) -> Result<(), Error> {
        let Some(base) = &self.socket_dir else {
            return Ok(());
        };
        match fs::DirBuilder::new().mode(0o700).create(base) {
            Ok(()) => owner.claim(base)?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err("create", base)(e)),
        }
        let meta = fs::symlink_metadata(base).map_err(io_err("inspect", base))?;
        let unsafe_dir = |why: &str| Error::UnsafeSocketDir {
            path: base.clone(),
            why: why.into(),
        };
        if !meta.file_type().is_dir() {
            return Err(unsafe_dir("not a directory"));
        }
        if meta.uid() != owner.uid && meta.uid() != 0 {
            return Err(unsafe_dir("owned by another user"));
        }
        if meta.permissions().mode() & 0o022 != 0 {
            return Err(unsafe_dir("writable by others"));
        }
        Ok(())
    }
}

/// The one spelling of a VM folder's path (sockets are named after it):
/// canonical (symlinks and `..` resolved).
pub fn resolve(dir: &Path) -> Result<PathBuf, Error> {
    fs::canonicalize(dir).map_err(io_err("resolve", dir))
}

/// `/tmp/xhyve-manager-UID`: short, the same for root and the owner (so a
/// VM started with sudo is found by its owner), and it survives logout.
pub fn fallback_socket_dir(owner_uid: u32) -> PathBuf {
    PathBuf::from(format!("/tmp/xhyve-manager-{owner_uid}"))
}

/// FNV-1a 64-bit hash (names the fallback sockets of a folder).
fn fnv1a(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

/// Contents of the pid file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PidInfo {
    pub pid: u32,
    /// Seconds since the Unix epoch when the VM process started.
    pub started_unix: u64,
    /// Started with `--detach` (a console socket and log exist).
    pub detached: bool,
}

/// The persisted end of the last run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastExit {
    pub reason: ExitReason,
    pub ended_unix: u64,
}

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Write `bytes` to `path` atomically (temp file + rename), for the owner.
fn write_atomic(path: &Path, bytes: &[u8], owner: &Owner) -> Result<(), Error> {
    let tmp = path.with_extension("tmp");
    // The folder belongs to a user and we may be root: never follow a
    // link planted where a runtime file goes.
    remove(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(io_err("create", &tmp))?;
    file.write_all(bytes).map_err(io_err("write", &tmp))?;
    drop(file);
    owner.claim(&tmp)?;
    fs::rename(&tmp, path).map_err(io_err("rename into", path))
}

/// Remove `path` if it exists.
fn remove(path: &Path) {
    // Best effort: a file that cannot be removed is reported by the next
    // bind or create that needs the name.
    let _ = fs::remove_file(path);
}

/// Remove `path` only if it is a socket (never follows links).
fn remove_socket(path: &Path) {
    use std::os::unix::fs::FileTypeExt;
    if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
        remove(path);
    }
}

/// The exclusive run lock of a VM folder, held while the VM runs.
///
/// Dropping it removes the pid file and the sockets and releases the lock.
/// After a fork, the parent calls [`RunLock::hand_over`] so that only the
/// child's copy of the descriptor keeps the lock.
pub struct RunLock {
    file: Option<File>,
    pub paths: Paths,
    pub owner: Owner,
}

impl RunLock {
    /// Take the lock of `dir` for the VM `name`.
    pub fn acquire(dir: &Path, name: &str) -> Result<RunLock, Error> {
        let dir = &resolve(dir)?;
        let owner = Owner::of(dir)?;
        let paths = Paths::new(dir, owner.uid);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&paths.lock)
            .map_err(io_err("open the run lock", &paths.lock))?;
        owner.claim(&paths.lock)?;
        for attempt in 1..=LOCK_ATTEMPTS {
            if sys::try_flock(&file, true).map_err(io_err("lock", &paths.lock))? {
                let lock = RunLock {
                    file: Some(file),
                    paths,
                    owner,
                };
                lock.clean_stale();
                remove(&lock.paths.last_exit);
                return Ok(lock);
            }
            if attempt < LOCK_ATTEMPTS {
                std::thread::sleep(LOCK_RETRY);
            }
        }
        let pid = read_pid(&paths).map_or_else(|| "unknown".to_string(), |p| p.pid.to_string());
        Err(Error::AlreadyRunning {
            name: name.to_string(),
            pid,
        })
    }

    /// Remove what a previous run left behind (we hold the lock).
    fn clean_stale(&self) {
        clean_files(&self.paths);
    }

    /// Record this process as the VM process.
    pub fn write_pid(&self, detached: bool) -> Result<(), Error> {
        let info = PidInfo {
            pid: std::process::id(),
            started_unix: now_unix(),
            detached,
        };
        let json = serde_json::to_vec(&info).unwrap_or_default();
        write_atomic(&self.paths.pid, &json, &self.owner)
    }

    /// Persist how the run ended (shown by `status`, `list` as `crashed`).
    pub fn record_exit(&self, reason: &ExitReason) -> Result<(), Error> {
        let last = LastExit {
            reason: reason.clone(),
            ended_unix: now_unix(),
        };
        let json = serde_json::to_vec(&last).unwrap_or_default();
        write_atomic(&self.paths.last_exit, &json, &self.owner)
    }

    /// Close our descriptor without unlocking: a forked child holding the
    /// same open file description keeps the VM locked.
    pub fn hand_over(mut self) {
        self.file = None;
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        if let Some(file) = self.file.take() {
            clean_files(&self.paths);
            // Closing the last descriptor releases the lock too; unlock
            // first so that it is free before the cleanup is observed.
            let _ = sys::unlock(&file);
        }
    }
}

/// Remove the pid file and sockets (caller holds the lock).
fn clean_files(paths: &Paths) {
    remove(&paths.pid);
    remove_socket(&paths.control);
    remove_socket(&paths.console);
}

fn read_pid(paths: &Paths) -> Option<PidInfo> {
    serde_json::from_slice(&fs::read(&paths.pid).ok()?).ok()
}

/// The last exit reason recorded in `dir`, if any.
pub fn read_last_exit(paths: &Paths) -> Option<LastExit> {
    serde_json::from_slice(&fs::read(&paths.last_exit).ok()?).ok()
}

/// What the lock says about a VM folder.
pub enum Probe {
    /// A VM process holds the lock.
    Running(Option<PidInfo>),
    /// Nobody holds it (stale files, if any, were removed).
    Stopped,
}

/// Probe the lock of a VM folder; cleans stale files when it is free.
pub fn probe(paths: &Paths) -> Probe {
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&paths.lock);
    let file = match opened {
        Ok(f) => f,
        Err(_) => return Probe::Stopped,
    };
    match sys::try_flock(&file, false) {
        Ok(true) => {
            clean_files(paths);
            let _ = sys::unlock(&file);
            Probe::Stopped
        }
        Ok(false) => Probe::Running(read_pid(paths)),
        // flock on a file we could open only fails on odd filesystems;
        // trust the pid file then.
        Err(_) => match read_pid(paths) {
            Some(info) if sys::kill(info.pid as i32, 0).is_ok() => Probe::Running(Some(info)),
            _ => Probe::Stopped,
        },
    }
}

/// State of a stopped VM from its last recorded exit.
pub fn stopped_state(paths: &Paths) -> super::RuntimeState {
    match read_last_exit(paths) {
        Some(last) if exit::is_crash(&last.reason) => super::RuntimeState::Crashed {
            reason: exit::describe(&last.reason),
        },
        _ => super::RuntimeState::Stopped,
    }
}

/// How long a state probe waits for the VM to answer `status`.
pub fn probe_timeout() -> Duration {
    PROBE_TIMEOUT
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner_of(dir: &Path) -> Owner {
        Owner::of(dir).unwrap()
    }

    #[test]
    fn second_acquire_names_the_pid() {
        let tmp = tempfile::tempdir().unwrap();
        let lock = RunLock::acquire(tmp.path(), "vm").unwrap();
        lock.write_pid(false).unwrap();
        let err = RunLock::acquire(tmp.path(), "vm").err().unwrap();
        let text = err.to_string();
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        assert!(matches!(probe(&lock.paths), Probe::Running(Some(_))));
        drop(lock);
        assert!(!tmp.path().join(PID_FILE).exists());
        assert!(RunLock::acquire(tmp.path(), "vm").is_ok());
    }

    #[test]
    fn long_folders_use_the_fallback_socket_dir() {
        let long = PathBuf::from("/").join("d".repeat(120));
        let paths = Paths::new(&long, 1234);
        assert_eq!(paths.socket_dir, Some(fallback_socket_dir(1234)));
        assert!(paths.control.as_os_str().len() < SUN_PATH_LEN);
        assert!(paths.control.starts_with("/tmp/xhyve-manager-1234"));
        assert_ne!(paths.control, paths.console);
        // Another folder gets other sockets.
        let other = Paths::new(&PathBuf::from("/").join("e".repeat(120)), 1234);
        assert_ne!(paths.control, other.control);

        let short = Paths::new(Path::new("/srv/vm.xhyvm"), 1234);
        assert_eq!(short.control, Path::new("/srv/vm.xhyvm/control.sock"));
        assert_eq!(short.socket_dir, None);
    }

    #[test]
    fn fallback_dir_owned_by_someone_else_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("socks");
        fs::create_dir(&base).unwrap();
        fs::set_permissions(&base, fs::Permissions::from_mode(0o777)).unwrap();
        let mut paths = Paths::new(tmp.path(), 0);
        paths.socket_dir = Some(base.clone());
        let owner = owner_of(tmp.path());
        let err = paths.prepare_socket_dir(&owner).unwrap_err();
        assert!(err.to_string().contains("writable by others"), "{err}");
        fs::set_permissions(&base, fs::Permissions::from_mode(0o700)).unwrap();
        paths.prepare_socket_dir(&owner).unwrap();
    }

    #[test]
    fn planted_links_are_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let victim = tmp.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        let vm = tmp.path().join("vm.xhyvm");
        fs::create_dir(&vm).unwrap();
        std::os::unix::fs::symlink(&victim, vm.join("run.tmp")).unwrap();
        let lock = RunLock::acquire(&vm, "vm").unwrap();
        lock.write_pid(false).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        drop(lock);
        fs::remove_file(vm.join(LOCK_FILE)).unwrap();
        std::os::unix::fs::symlink(&victim, vm.join(LOCK_FILE)).unwrap();
        assert!(RunLock::acquire(&vm, "vm").is_err());
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
    }

    #[test]
    fn crashed_state_comes_from_the_last_exit() {
        let tmp = tempfile::tempdir().unwrap();
        let lock = RunLock::acquire(tmp.path(), "vm").unwrap();
        lock.record_exit(&ExitReason::TripleFault { vcpu: 0 })
            .unwrap();
        let paths = lock.paths.clone();
        drop(lock);
        assert_eq!(
            stopped_state(&paths),
            super::super::RuntimeState::Crashed {
                reason: "triple fault on vCPU 0".into()
            }
        );
        // A new start forgets it.
        let lock = RunLock::acquire(tmp.path(), "vm").unwrap();
        drop(lock);
        assert_eq!(stopped_state(&paths), super::super::RuntimeState::Stopped);
    }
}
