//! A host TAP interface (Linux Documentation/networking/tuntap.rst) opened
//! for virtio-net: IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, a 12-byte vnet
//! header (`struct virtio_net_hdr_v1`, what VIRTIO_F_VERSION_1 drivers use)
//! and no offloads, so frames and headers pass through unchanged.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use virtio_bindings::virtio_net::virtio_net_hdr_v1;

/// The TUN/TAP clone device.
const TUN_DEVICE: &str = "/dev/net/tun";
/// Interface names are at most IFNAMSIZ - 1 bytes (linux/if.h).
const IFNAMSIZ: usize = 16;
/// Bytes of `struct ifreq` (linux/if.h) on 64-bit Linux.
const IFREQ_SIZE: usize = 40;
/// Size of `struct virtio_net_hdr_v1` (virtio 1.2 §5.1.6).
pub const VNET_HDR_SIZE: usize = size_of::<virtio_net_hdr_v1>();

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("TAP interface name {0:?} is empty or longer than {max} bytes", max = IFNAMSIZ - 1)]
    InvalidName(String),
    #[error("cannot open {TUN_DEVICE}")]
    OpenTun(#[source] std::io::Error),
    #[error(
        "cannot attach to TAP interface {0:?} (TUNSETIFF; it must exist or we need CAP_NET_ADMIN)"
    )]
    SetIff(String, #[source] std::io::Error),
    #[error("cannot configure TAP interface {0:?} ({1})")]
    Configure(String, &'static str, #[source] std::io::Error),
}

/// `struct ifreq` with the `ifr_flags` member of its union.
#[repr(C)]
struct IfReqFlags {
    name: [u8; IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; IFREQ_SIZE - IFNAMSIZ - 2],
}

/// An open TAP queue.
pub struct Tap {
    file: File,
    name: String,
}

impl Tap {
    /// Attach to (or create) the TAP interface `name`.
    pub fn open(name: &str) -> Result<Tap, Error> {
        if name.is_empty() || name.len() >= IFNAMSIZ || name.as_bytes().contains(&0) {
            return Err(Error::InvalidName(name.to_string()));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(TUN_DEVICE)
            .map_err(Error::OpenTun)?;
        let mut req = IfReqFlags {
            name: [0; IFNAMSIZ],
            flags: (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short,
            _pad: [0; IFREQ_SIZE - IFNAMSIZ - 2],
        };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: TUNSETIFF reads and writes a `struct ifreq`; `req` is a
        // live, correctly sized and laid out `ifreq` for the whole call.
        let ret = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req) };
        if ret < 0 {
            return Err(Error::SetIff(
                name.to_string(),
                std::io::Error::last_os_error(),
            ));
        }
        let hdr_size = VNET_HDR_SIZE as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one `int` through the pointer, which
        // points at `hdr_size` for the duration of the call.
        let ret = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETVNETHDRSZ, &hdr_size) };
        if ret < 0 {
            return Err(Error::Configure(
                name.to_string(),
                "TUNSETVNETHDRSZ",
                std::io::Error::last_os_error(),
            ));
        }
        // SAFETY: TUNSETOFFLOAD takes its argument by value; no memory is
        // accessed. Zero turns every offload off.
        let ret = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETOFFLOAD, 0 as libc::c_ulong) };
        if ret < 0 {
            return Err(Error::Configure(
                name.to_string(),
                "TUNSETOFFLOAD",
                std::io::Error::last_os_error(),
            ));
        }
        Ok(Tap {
            file,
            name: name.to_string(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

impl super::net::NetBackend for Tap {
    fn recv(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        (&self.file).read(buf)
    }

    fn send(&self, buf: &[u8]) -> std::io::Result<usize> {
        (&self.file).write(buf)
    }
}
