//! A guest drives virtio-net through virtio-pci (modern) by polling: it ARPs
//! over a real TAP for the host's address and receives the host kernel's
//! reply, twice, resetting and re-initializing the device in between (and
//! the second time with header and frame in separate descriptors); then
//! it receives a full-size frame the test sends on the TAP. Everything
//! happens inside a network namespace this test creates (and always
//! deletes), so no frame ever leaves it.
//!
//! Needs root (namespaces, TAP) and iproute2; skips with a message otherwise.

mod common;

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Output};
use std::time::Duration;

use xhyve_manager::vmm::NetConfig;

const TIMEOUT: Duration = Duration::from_secs(180);
const TAP: &str = "xhvt0";
const HOST_IP: [u8; 4] = [10, 0, 2, 1];
const HOST_CIDR: &str = "10.0.2.1/24";
const GUEST_IP: [u8; 4] = [10, 0, 2, 15];
const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x4e, 0x45, 0x54];
/// ARP exchanges the guest makes, each after a device reset (tests/guests/net.c).
const ROUNDS: usize = 2;

/// Ethernet and ARP (RFC 826) for IPv4 over Ethernet: offsets in a frame.
const ETHERTYPE_ARP: u64 = 0x0806;
const ETH_DST: usize = 0;
const ETH_SRC: usize = 6;
const ETH_TYPE: usize = 12;
const ARP: usize = 14;
const ARP_OP: usize = ARP + 6;
const ARP_SHA: usize = ARP + 8;
const ARP_SPA: usize = ARP + 14;
const ARP_THA: usize = ARP + 18;
const ARP_TPA: usize = ARP + 24;
const ARP_END: usize = ARP + 28;
const ARP_OP_REPLY: [u8; 2] = [0, 2];
/// The ethertype of the frame the test sends the guest (IEEE 802 local
/// experimental 1), and its payload size (a full 1500-byte MTU).
const ETHERTYPE_TEST: u16 = 0x88b5;
const TEST_PAYLOAD: usize = 1500;
/// The guest pads its request to the minimum Ethernet frame (no FCS).
const ETH_ZLEN: u64 = 60;

/// A network namespace made for this test, deleted on drop.
struct NetNs(String);

impl NetNs {
    fn create() -> Result<NetNs, String> {
        let name = format!("xhm-gnet-{}", std::process::id());
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .map_err(|e| format!("cannot run `ip`: {e}"))?;
        if out.status.success() {
            Ok(NetNs(name))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    /// `ip -n <ns> args...`; panics with its stderr on failure.
    fn ip(&self, args: &[&str]) -> Output {
        let out = Command::new("ip")
            .arg("-n")
            .arg(&self.0)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run `ip`: {e}"));
        assert!(
            out.status.success(),
            "ip -n {} {args:?}: {}",
            self.0,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Run `f` on a thread that has entered this namespace.
    fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.0);
        std::thread::spawn(move || {
            let ns = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            // SAFETY: setns on a namespace fd we own; it changes only this
            // thread's network namespace (and that of threads it spawns).
            let ret = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(ret, 0, "setns {path}: {}", io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    }

    /// The MAC address of `dev` in this namespace, from `ip -j link`.
    fn mac(&self, dev: &str) -> [u8; 6] {
        let out = self.ip(&["-j", "link", "show", "dev", dev]);
        let json: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("`ip -j link` prints JSON");
        let text = json[0]["address"]
            .as_str()
            .unwrap_or_else(|| panic!("no address for {dev} in {json}"));
        parse_mac(text)
    }

    /// Packets and bytes `dev` has received (from the VMM), from `ip -j -s link`.
    fn rx_stats(&self, dev: &str) -> (u64, u64) {
        let out = self.ip(&["-j", "-s", "link", "show", "dev", dev]);
        let json: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("`ip -j -s link` prints JSON");
        let rx = &json[0]["stats64"]["rx"];
        match (rx["packets"].as_u64(), rx["bytes"].as_u64()) {
            (Some(packets), Some(bytes)) => (packets, bytes),
            _ => panic!("no rx statistics for {dev} in {json}"),
        }
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn parse_mac(text: &str) -> [u8; 6] {
    let bytes: Vec<u8> = text
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap_or_else(|e| panic!("MAC {text:?}: {e}")))
        .collect();
    bytes
        .try_into()
        .unwrap_or_else(|_| panic!("MAC {text:?} is not 6 bytes"))
}

fn format_mac(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn format_ip(ip: &[u8]) -> String {
    ip.iter().map(u8::to_string).collect::<Vec<_>>().join(".")
}

fn decode_hex(text: &str) -> Vec<u8> {
    assert!(text.len().is_multiple_of(2), "odd-length hex {text:?}");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// A full-size frame from the TAP to the guest: ETHERTYPE_TEST and a
/// pseudo-random payload.
fn test_frame(tap_mac: [u8; 6]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(ARP + TEST_PAYLOAD);
    frame.extend(GUEST_MAC);
    frame.extend(tap_mac);
    frame.extend(ETHERTYPE_TEST.to_be_bytes());
    frame.extend(common::pattern_bytes(0x4e45_5400, TEST_PAYLOAD));
    frame
}

/// Send `frame` (a whole Ethernet frame) out of `dev` through an AF_PACKET
/// socket, in the calling thread's network namespace.
fn send_on(dev: &str, frame: &[u8]) -> io::Result<()> {
    let name = CString::new(dev)?;
    // SAFETY: if_nametoindex reads the NUL-terminated string `name`.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socket(2) with constant arguments; no memory is passed.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a descriptor socket(2) just returned, owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain old data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_ifindex = index as i32;
    addr.sll_halen = 6;
    addr.sll_addr[..6].copy_from_slice(&frame[ETH_DST..ETH_DST + 6]);
    // SAFETY: `frame` and `addr` are live for the call and the lengths
    // passed are theirs; sendto only reads them.
    let sent = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&raw const addr).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    match usize::try_from(sent) {
        Ok(n) if n == frame.len() => Ok(()),
        Ok(n) => Err(io::Error::other(format!(
            "sent {n} of {} bytes",
            frame.len()
        ))),
        Err(_) => Err(io::Error::last_os_error()),
    }
}

/// Check `NET_RX=len,ethertype,fnv` and the frame it describes: the host's
/// ARP reply from the TAP to the guest.
fn check_arp_reply(summary: &str, frame: &[u8], tap_mac: [u8; 6], s: &str) {
    let fields: Vec<u64> = summary.split(',').map(common::parse_num).collect();
    let [len, ethertype, fnv] = fields[..] else {
        panic!("NET_RX={summary} is not len,ethertype,fnv; serial:\n{s}");
    };
    assert_eq!(len, frame.len() as u64, "{s}");
    assert_eq!(fnv, u64::from(common::fnv1a32(frame)), "{s}");
    assert_eq!(ethertype, ETHERTYPE_ARP, "{s}");
    assert!(frame.len() >= ARP_END, "short ARP reply; serial:\n{s}");
    assert_eq!(frame[ETH_TYPE..ETH_TYPE + 2], [0x08, 0x06]);
    assert_eq!(frame[ETH_DST..ETH_DST + 6], GUEST_MAC, "{s}");
    assert_eq!(frame[ETH_SRC..ETH_SRC + 6], tap_mac, "{s}");
    assert_eq!(frame[ARP_OP..ARP_OP + 2], ARP_OP_REPLY, "{s}");
    assert_eq!(frame[ARP_SHA..ARP_SHA + 6], tap_mac, "{s}");
    assert_eq!(frame[ARP_SPA..ARP_SPA + 4], HOST_IP, "{s}");
    assert_eq!(frame[ARP_THA..ARP_THA + 6], GUEST_MAC, "{s}");
    assert_eq!(frame[ARP_TPA..ARP_TPA + 4], GUEST_IP, "{s}");
}

#[test]
fn guest_arps_through_a_tap_and_gets_the_host_reply() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: a network namespace and a TAP need root");
        return;
    }
    let ns = match NetNs::create() {
        Ok(ns) => ns,
        Err(e) => {
            println!("skipped: `ip netns add` failed ({e})");
            return;
        }
    };
    common::host_kind();
    // The TAP exists, has its address and is up before the guest runs; the
    // VMM attaches to it (TUNSETIFF on an existing interface).
    ns.ip(&["tuntap", "add", "dev", TAP, "mode", "tap"]);
    ns.ip(&["addr", "add", HOST_CIDR, "dev", TAP]);
    ns.ip(&["link", "set", TAP, "up"]);
    let tap_mac = ns.mac(TAP);

    let mut config = common::vm_config("net", "net");
    config.cmdline = format!(
        "console=ttyS0 net.ip={} net.peer={}",
        format_ip(&GUEST_IP),
        format_ip(&HOST_IP)
    );
    config.nets.push(NetConfig {
        tap: TAP.to_string(),
        mac: GUEST_MAC,
    });
    // The VMM opens /dev/net/tun from a thread inside the namespace, so the
    // TAP it attaches to is the namespace's.
    let mut guest = ns.enter(move || common::start_guest(config));
    // Then a full-size frame from the host side, sent on the TAP by a
    // packet socket in the namespace.
    guest.wait_for_serial("NET_WAIT_FRAME", TIMEOUT);
    let injected = test_frame(tap_mac);
    let frame = injected.clone();
    ns.enter(move || send_on(TAP, &frame))
        .unwrap_or_else(|e| panic!("sending a frame on {TAP}: {e}"));
    let run = guest.wait_exit(TIMEOUT);
    run.assert_ok();
    let s = &run.serial;

    assert_eq!(run.value("NET_MAC"), format_mac(&GUEST_MAC), "{s}");
    // Two rounds, the second after a device reset and a new initialization.
    let rounds: Vec<String> = (1..=ROUNDS).map(|n| n.to_string()).collect();
    assert_eq!(run.values("NET_ROUND"), rounds, "{s}");
    // Round 1 uses one descriptor per buffer, round 2 two (header, frame).
    assert_eq!(run.values("NET_DESCRIPTORS"), ["1", "2"], "{s}");
    assert_eq!(run.values("NET_TX"), ["ok"; ROUNDS], "{s}");
    let mut summaries = run.values("NET_RX");
    let frames = run.values("NET_RX_FRAME");
    // The last NET_RX is the injected frame, the others the ARP replies.
    let last = summaries.pop();
    assert_eq!(
        last,
        Some(format!(
            "{},{ETHERTYPE_TEST:#x},{:#x}",
            injected.len(),
            common::fnv1a32(&injected)
        )),
        "the injected frame; serial:\n{s}"
    );
    assert_eq!(summaries.len(), ROUNDS, "one reply per round; serial:\n{s}");
    assert_eq!(frames.len(), ROUNDS, "one reply per round; serial:\n{s}");
    for (summary, frame) in summaries.iter().zip(&frames) {
        check_arp_reply(summary, &decode_hex(frame), tap_mac, s);
    }
    assert!(s.contains("NET_DONE"), "{s}");

    // The host side received exactly the guest's requests (one per round,
    // plus one per NET_TX_AGAIN), each a minimum-size Ethernet frame.
    let requests = ROUNDS as u64 + s.lines().filter(|l| *l == "NET_TX_AGAIN").count() as u64;
    let (packets, bytes) = ns.rx_stats(TAP);
    assert_eq!(packets, requests, "frames the TAP received; serial:\n{s}");
    assert_eq!(bytes, requests * ETH_ZLEN, "bytes the TAP received");
}
