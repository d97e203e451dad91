//! Whose library this is: the user's home and, under `sudo`, the invoking
//! user (SUDO_UID/SUDO_GID) who should own the files we create.

use std::ffi::{CStr, OsStr};
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Buffer for getpwuid_r's strings; glibc suggests sysconf(_SC_GETPW_R_SIZE_MAX),
/// typically 1 KiB; 16 KiB is ample for any passwd entry.
const PASSWD_BUFFER_SIZE: usize = 16 * 1024;

/// A user and group to give created files to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// The user the library belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserContext {
    pub home: Option<PathBuf>,
    /// Set when running as root on behalf of another user (sudo).
    pub owner: Option<Owner>,
}

impl UserContext {
    pub fn detect() -> UserContext {
        if effective_uid() == 0
            && let Some(owner) = sudo_owner()
        {
            return UserContext {
                home: home_of(owner.uid),
                owner: Some(owner),
            };
        }
        let home = std::env::var_os("HOME")
            .filter(|h| Path::new(h).is_absolute())
            .map(PathBuf::from)
            .or_else(|| home_of(real_uid()));
        UserContext { home, owner: None }
    }
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

fn real_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// The invoking user when started through sudo (not root itself).
fn sudo_owner() -> Option<Owner> {
    let number = |var: &str| std::env::var(var).ok()?.trim().parse::<u32>().ok();
    let uid = number("SUDO_UID")?;
    let gid = number("SUDO_GID")?;
    (uid != 0).then_some(Owner { uid, gid })
}

/// The home directory of `uid` from the user database (NSS).
fn home_of(uid: u32) -> Option<PathBuf> {
    let mut entry = MaybeUninit::<libc::passwd>::uninit();
    let mut buffer = vec![0 as libc::c_char; PASSWD_BUFFER_SIZE];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call: `entry` and `result` are
    // writable locals, `buffer` is writable for `buffer.len()` bytes.
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            entry.as_mut_ptr(),
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return None;
    }
    // SAFETY: on success getpwuid_r initialised `entry` (result points to it),
    // and pw_dir points to a NUL-terminated string inside `buffer`, which
    // outlives this borrow.
    let dir = unsafe { CStr::from_ptr((*result).pw_dir) };
    let dir = Path::new(OsStr::from_bytes(dir.to_bytes()));
    (!dir.as_os_str().is_empty()).then(|| dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_has_a_home_in_the_user_database() {
        assert!(home_of(0).is_some_and(|h| h.is_absolute()));
    }
}
