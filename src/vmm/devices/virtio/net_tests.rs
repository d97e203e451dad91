use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Bytes, GuestAddress};

use super::*;
use crate::vmm::devices::virtio::test_util::{
    RecordingInterrupt, add_chain, test_memory, used, used_count,
};

/// A datagram socket pair standing in for the TAP: one end is the
/// device's backend, the other plays the host network.
struct SocketBackend(UnixDatagram);

impl AsRawFd for SocketBackend {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl NetBackend for SocketBackend {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.recv(buf)
    }
    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.0.send(buf)
    }
}

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

fn setup<'a>(
    mem: &'a GuestMemoryMmap,
) -> (
    Net,
    UnixDatagram,
    MockSplitQueue<'a, GuestMemoryMmap>,
    MockSplitQueue<'a, GuestMemoryMmap>,
    Arc<RecordingInterrupt>,
) {
    let (ours, host) = UnixDatagram::pair().unwrap();
    ours.set_nonblocking(true).unwrap();
    host.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut net = Net::new(Arc::new(SocketBackend(ours)), MAC);
    let rxq = MockSplitQueue::create(mem, GuestAddress(0), 16);
    let txq = MockSplitQueue::create(mem, GuestAddress(0x8000), 16);
    let irq = Arc::new(RecordingInterrupt::default());
    net.activate(Activation {
        mem: mem.clone(),
        interrupt: irq.clone(),
        queues: vec![
            Some(rxq.create_queue().unwrap()),
            Some(txq.create_queue().unwrap()),
        ],
        acked_features: net.features(),
    })
    .unwrap();
    (net, host, rxq, txq, irq)
}

/// Wait (bounded) until the device has returned `n` buffers on `vq`.
fn wait_used(vq: &MockSplitQueue<'_, GuestMemoryMmap>, n: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while used_count(vq) < n {
        assert!(Instant::now() < deadline, "rx worker did not deliver");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn config_has_the_mac() {
    let mem = test_memory();
    let (net, _host, _rx, _tx, _irq) = setup(&mem);
    let mut mac = [0u8; 6];
    net.read_config(0, &mut mac);
    assert_eq!(mac, MAC);
    assert_ne!(net.features() & 1 << VIRTIO_NET_F_MAC, 0);
    assert_eq!(net.queue_max_sizes().len(), 2);
}

#[test]
fn tx_sends_header_and_frame_as_one_datagram() {
    let mem = test_memory();
    let (mut net, host, _rx, txq, irq) = setup(&mem);
    let header = [0u8; VNET_HDR_SIZE];
    let frame: Vec<u8> = (0..60u8).collect();
    mem.write_slice(&header, GuestAddress(0x1_0000)).unwrap();
    mem.write_slice(&frame, GuestAddress(0x2_0000)).unwrap();
    add_chain(
        &txq,
        0,
        &[
            (0x1_0000, VNET_HDR_SIZE as u32, false),
            (0x2_0000, 60, false),
        ],
    );
    net.queue_notify(TX_QUEUE);
    let mut got = [0u8; 128];
    let n = host.recv(&mut got).unwrap();
    assert_eq!(n, VNET_HDR_SIZE + 60);
    assert_eq!(&got[VNET_HDR_SIZE..n], &frame[..]);
    assert_eq!(used_count(&txq), 1);
    assert_eq!(used(&txq, 0), (0, 0));
    assert!(irq.take().contains(&InterruptKind::Queue(TX_QUEUE)));
    // A chain shorter than the vnet header is returned and not sent.
    add_chain(&txq, 2, &[(0x1_0000, 4, false)]);
    net.queue_notify(TX_QUEUE);
    assert_eq!(used_count(&txq), 2);
    host.set_nonblocking(true).unwrap();
    assert!(host.recv(&mut got).is_err());
}

#[test]
fn rx_delivers_frames_and_waits_for_buffers() {
    let mem = test_memory();
    let (mut net, host, rxq, _tx, irq) = setup(&mem);
    // A frame arrives before the driver has posted any buffer: it waits.
    let mut packet = vec![0u8; VNET_HDR_SIZE];
    packet.extend((0..42u8).map(|b| b ^ 0x5a));
    host.send(&packet).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(used_count(&rxq), 0);
    // The driver posts a buffer and kicks the receive queue.
    add_chain(&rxq, 0, &[(0x4_0000, 1526, true)]);
    net.queue_notify(RX_QUEUE);
    wait_used(&rxq, 1);
    assert_eq!(used(&rxq, 0), (0, packet.len() as u32));
    let mut got = vec![0u8; packet.len()];
    mem.read_slice(&mut got, GuestAddress(0x4_0000)).unwrap();
    assert_eq!(&got[VNET_HDR_SIZE..], &packet[VNET_HDR_SIZE..]);
    // num_buffers is 1 without mergeable buffers.
    assert_eq!(&got[10..12], &[1, 0]);
    assert!(irq.take().contains(&InterruptKind::Queue(RX_QUEUE)));
    // With a buffer already posted, the next frame goes straight in.
    add_chain(&rxq, 1, &[(0x5_0000, 1526, true)]);
    net.queue_notify(RX_QUEUE);
    host.send(&packet[..VNET_HDR_SIZE + 10]).unwrap();
    wait_used(&rxq, 2);
    assert_eq!(used(&rxq, 1), (1, VNET_HDR_SIZE as u32 + 10));
}

#[test]
fn reset_and_drop_stop_the_worker() {
    let mem = test_memory();
    let (mut net, host, rxq, _tx, _irq) = setup(&mem);
    net.reset();
    assert!(net.active.is_none());
    add_chain(&rxq, 0, &[(0x4_0000, 1526, true)]);
    host.send(&[0u8; 20]).unwrap();
    net.queue_notify(RX_QUEUE);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(used_count(&rxq), 0);
    drop(net);
}

/// A network namespace made for one test, deleted on drop.
struct NetNs(String);

impl NetNs {
    fn create() -> Option<NetNs> {
        let name = format!("xhm-pci-{}", std::process::id());
        let ok = std::process::Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(NetNs(name))
    }

    fn ip(&self, args: &[&str]) {
        let status = std::process::Command::new("ip")
            .arg("-n")
            .arg(&self.0)
            .args(args)
            .status()
            .unwrap();
        assert!(status.success(), "ip -n {} {args:?}", self.0);
    }

    /// Run `f` on a thread that has entered this namespace.
    fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.0);
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).unwrap();
            // SAFETY: setns on a namespace fd we own; it only changes this
            // (short-lived) thread's network namespace.
            let ret = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(ret, 0, "setns: {}", io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

/// An ARP who-has for 10.200.0.1 from 10.200.0.2 / MAC, with a zero vnet header.
fn arp_request() -> Vec<u8> {
    let mut p = vec![0u8; VNET_HDR_SIZE];
    p.extend([0xff; 6]);
    p.extend(MAC);
    p.extend([0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    p.extend(MAC);
    p.extend([10, 200, 0, 2]);
    p.extend([0; 6]);
    p.extend([10, 200, 0, 1]);
    p.resize(VNET_HDR_SIZE + 60, 0);
    p
}

/// Real TAP: the guest's ARP request reaches the host stack (inside a
/// namespace this test creates) and the host's reply comes back on the
/// receive queue.
#[test]
fn tap_in_a_namespace_answers_arp() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: creating a network namespace and TAP needs root");
        return;
    }
    let Some(ns) = NetNs::create() else {
        println!("skipped: `ip netns add` failed (iproute2 missing?)");
        return;
    };
    let tap = ns
        .enter(|| crate::vmm::devices::virtio::Tap::open("xhmtap0"))
        .unwrap();
    assert_eq!(tap.name(), "xhmtap0");
    ns.ip(&["addr", "add", "10.200.0.1/24", "dev", "xhmtap0"]);
    ns.ip(&["link", "set", "xhmtap0", "up"]);

    let mem = test_memory();
    let mut net = Net::new(Arc::new(tap), MAC);
    let rxq = MockSplitQueue::create(&mem, GuestAddress(0), 16);
    let txq = MockSplitQueue::create(&mem, GuestAddress(0x8000), 16);
    net.activate(Activation {
        mem: mem.clone(),
        interrupt: Arc::new(RecordingInterrupt::default()),
        queues: vec![
            Some(rxq.create_queue().unwrap()),
            Some(txq.create_queue().unwrap()),
        ],
        acked_features: net.features(),
    })
    .unwrap();
    // Eight receive buffers: the host may also send other frames (IPv6).
    for i in 0..8u16 {
        add_chain(&rxq, i, &[(0x4_0000 + u64::from(i) * 0x1000, 2048, true)]);
    }
    net.queue_notify(RX_QUEUE);
    let request = arp_request();
    mem.write_slice(&request, GuestAddress(0x2_0000)).unwrap();
    add_chain(&txq, 0, &[(0x2_0000, request.len() as u32, false)]);
    net.queue_notify(TX_QUEUE);
    assert_eq!(used_count(&txq), 1);

    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = 0;
    loop {
        assert!(
            Instant::now() < deadline,
            "no ARP reply on the receive queue"
        );
        while seen < used_count(&rxq) {
            let (head, len) = used(&rxq, seen);
            seen += 1;
            let mut frame = vec![0u8; len as usize];
            mem.read_slice(
                &mut frame,
                GuestAddress(0x4_0000 + u64::from(head) * 0x1000),
            )
            .unwrap();
            let eth = &frame[VNET_HDR_SIZE..];
            // Ethertype ARP, opcode 2 (reply), to our MAC, from 10.200.0.1.
            if eth.len() >= 42 && eth[12..14] == [0x08, 0x06] && eth[20..22] == [0, 2] {
                assert_eq!(eth[0..6], MAC);
                assert_eq!(eth[28..32], [10, 200, 0, 1]);
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn tap_names_are_checked_before_any_syscall() {
    use crate::vmm::devices::virtio::tap::Error as TapError;
    for name in ["", "a-name-much-too-long", "nul\0byte"] {
        let err = crate::vmm::devices::virtio::Tap::open(name).err().unwrap();
        assert!(matches!(err, TapError::InvalidName(_)), "{name:?}: {err}");
    }
}
