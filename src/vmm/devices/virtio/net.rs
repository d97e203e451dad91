//! virtio-net (virtio 1.2 §5.1) on a frame backend (a host TAP device).
//!
//! Queue 0 receives, queue 1 transmits; no offloads and no mergeable
//! buffers, so every frame travels with a 12-byte `virtio_net_hdr_v1` that
//! the TAP (IFF_VNET_HDR) reads and writes as is. Transmit runs on the vCPU
//! thread when the driver notifies queue 1. Receive runs on a worker thread
//! that waits (epoll) on the backend fd, a kick EventFd (the driver added
//! receive buffers) and a stop EventFd; it is stopped and joined on reset
//! and on drop.

use std::io::{self, Read};
use std::mem::offset_of;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::thread::JoinHandle;

use virtio_bindings::virtio_net::{virtio_net_config, virtio_net_hdr_v1};
use virtio_queue::{Queue, QueueT, Reader, Writer};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use super::tap::VNET_HDR_SIZE;
use super::{
    ActivateError, Activation, COMMON_FEATURES, Chain, InterruptKind, VIRTIO_ID_NET, VirtioDevice,
    VirtioInterrupt, drain_queue, read_config_bytes,
};
use crate::vmm::memory::GuestMemoryMmap;

/// Feature bit: the device has a MAC address in config space (§5.1.3).
pub use virtio_bindings::virtio_net::VIRTIO_NET_F_MAC;
/// Queue indices (§5.1.2).
pub const RX_QUEUE: u16 = 0;
pub const TX_QUEUE: u16 = 1;
/// Size of each queue.
pub const QUEUE_SIZE: u16 = 256;
/// Largest frame plus header we move: a 64 KiB IP packet, Ethernet and
/// VLAN headers, and the vnet header.
pub const MAX_BUFFER_SIZE: usize = 65562;
/// Offset of `num_buffers` in `virtio_net_hdr_v1`.
const NUM_BUFFERS_OFFSET: usize = offset_of!(virtio_net_hdr_v1, num_buffers);
/// Config space: `virtio_net_config` up to `mac` (status and the rest are
/// not offered).
const CONFIG_SIZE: usize = offset_of!(virtio_net_config, status);

// epoll tokens of the receive worker.
const TOKEN_BACKEND: u64 = 0;
const TOKEN_KICK: u64 = 1;
const TOKEN_STOP: u64 = 2;

/// Where frames go to and come from. Must preserve frame boundaries (one
/// `recv`/`send` per frame) and be non-blocking.
pub trait NetBackend: AsRawFd + Send + Sync {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize>;
    fn send(&self, buf: &[u8]) -> io::Result<usize>;
}

struct Active {
    mem: GuestMemoryMmap,
    tx: Queue,
    interrupt: Arc<dyn VirtioInterrupt>,
    rx_kick: Arc<EventFd>,
    stop: EventFd,
    worker: Option<JoinHandle<()>>,
}

/// A virtio-net device.
pub struct Net {
    backend: Arc<dyn NetBackend>,
    config: [u8; CONFIG_SIZE],
    active: Option<Active>,
}

impl Net {
    pub fn new(backend: Arc<dyn NetBackend>, mac: [u8; 6]) -> Self {
        Net {
            backend,
            config: mac,
            active: None,
        }
    }

    fn transmit(backend: &dyn NetBackend, mem: &GuestMemoryMmap, chain: Chain<'_>) -> u32 {
        let Ok(mut reader) = Reader::<()>::new(mem, chain) else {
            log::warn!("virtio-net: tx buffer points outside guest memory");
            return 0;
        };
        let len = reader.available_bytes();
        if !(VNET_HDR_SIZE..=MAX_BUFFER_SIZE).contains(&len) {
            log::warn!("virtio-net: dropping tx frame of {len} bytes");
            return 0;
        }
        let mut buf = vec![0u8; len];
        if reader.read_exact(&mut buf).is_err() {
            return 0;
        }
        if let Err(e) = backend.send(&buf) {
            // Like a NIC whose link is down: the frame is lost.
            log::debug!("virtio-net: tx: {e}");
        }
        0
    }

    fn stop_worker(&mut self) {
        if let Some(mut active) = self.active.take() {
            let _ = active.stop.write(1);
            if let Some(worker) = active.worker.take() {
                let _ = worker.join();
            }
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.stop_worker();
    }
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u16 {
        VIRTIO_ID_NET
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        COMMON_FEATURES | 1 << VIRTIO_NET_F_MAC
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }

    fn activate(&mut self, activation: Activation) -> Result<(), ActivateError> {
        self.stop_worker();
        let got = activation.queues.len();
        let mut queues = activation.queues.into_iter();
        let (Some(Some(rx)), Some(Some(tx))) = (queues.next(), queues.next()) else {
            return Err(ActivateError::QueueCount { expected: 2, got });
        };
        let rx_kick = Arc::new(EventFd::new(EFD_NONBLOCK).map_err(ActivateError::Event)?);
        let stop = EventFd::new(EFD_NONBLOCK).map_err(ActivateError::Event)?;
        let mut worker = RxWorker {
            backend: self.backend.clone(),
            mem: activation.mem.clone(),
            queue: rx,
            interrupt: activation.interrupt.clone(),
            kick: rx_kick.clone(),
            stop: stop.try_clone().map_err(ActivateError::Event)?,
            buf: vec![0u8; MAX_BUFFER_SIZE],
            pending: None,
            backend_gone: false,
        };
        let epoll = worker.epoll().map_err(ActivateError::Event)?;
        let handle = std::thread::Builder::new()
            .name("virtio-net-rx".into())
            .spawn(move || worker.run(epoll))
            .map_err(ActivateError::Thread)?;
        self.active = Some(Active {
            mem: activation.mem,
            tx,
            interrupt: activation.interrupt,
            rx_kick,
            stop,
            worker: Some(handle),
        });
        self.queue_notify(TX_QUEUE);
        Ok(())
    }

    fn queue_notify(&mut self, index: u16) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        match index {
            RX_QUEUE => {
                let _ = active.rx_kick.write(1);
            }
            TX_QUEUE => {
                let backend = self.backend.as_ref();
                let mem = &active.mem;
                drain_queue(
                    &mut active.tx,
                    mem,
                    active.interrupt.as_ref(),
                    TX_QUEUE,
                    |chain| Self::transmit(backend, mem, chain),
                );
            }
            _ => {}
        }
    }

    fn reset(&mut self) {
        self.stop_worker();
    }
}

/// What happened to a received frame.
enum Delivery {
    Delivered,
    /// No receive buffer: keep the frame until the driver adds one.
    NoBuffer,
    /// The frame could not be placed and is lost.
    Dropped,
}

/// The receive side, owned by its thread.
struct RxWorker {
    backend: Arc<dyn NetBackend>,
    mem: GuestMemoryMmap,
    queue: Queue,
    interrupt: Arc<dyn VirtioInterrupt>,
    kick: Arc<EventFd>,
    stop: EventFd,
    buf: Vec<u8>,
    /// Length of a frame in `buf` waiting for a receive buffer.
    pending: Option<usize>,
    /// The backend reported an error or hang-up (e.g. the TAP interface
    /// was deleted): it is no longer watched or read.
    backend_gone: bool,
}

impl RxWorker {
    fn epoll(&self) -> io::Result<Epoll> {
        let epoll = Epoll::new()?;
        for (fd, token) in [
            (self.backend.as_raw_fd(), TOKEN_BACKEND),
            (self.kick.as_raw_fd(), TOKEN_KICK),
            (self.stop.as_raw_fd(), TOKEN_STOP),
        ] {
            epoll.ctl(
                ControlOperation::Add,
                fd,
                EpollEvent::new(EventSet::IN, token),
            )?;
        }
        Ok(epoll)
    }

    fn run(&mut self, epoll: Epoll) {
        let backend_fd: RawFd = self.backend.as_raw_fd();
        let mut events = [EpollEvent::default(); 3];
        loop {
            self.receive_all();
            // While a frame waits for a buffer, only a kick can help: stop
            // watching the (level-triggered) backend fd meanwhile.
            let interest = if self.pending.is_some() {
                EventSet::empty()
            } else {
                EventSet::IN
            };
            if !self.backend_gone
                && let Err(e) = epoll.ctl(
                    ControlOperation::Modify,
                    backend_fd,
                    EpollEvent::new(interest, TOKEN_BACKEND),
                )
            {
                log::error!("virtio-net rx: epoll: {e}");
                return;
            }
            let n = match epoll.wait(-1, &mut events) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::error!("virtio-net rx: epoll: {e}");
                    return;
                }
            };
            for event in &events[..n] {
                match event.data() {
                    TOKEN_STOP => return,
                    TOKEN_KICK => {
                        let _ = self.kick.read();
                    }
                    // epoll reports these even with no events asked for;
                    // stop watching instead of spinning on them.
                    TOKEN_BACKEND
                        if event
                            .event_set()
                            .intersects(EventSet::ERROR | EventSet::HANG_UP) =>
                    {
                        log::warn!("virtio-net rx: backend failed; receive stopped");
                        let _ =
                            epoll.ctl(ControlOperation::Delete, backend_fd, EpollEvent::default());
                        self.backend_gone = true;
                    }
                    _ => {}
                }
            }
        }
    }

    /// Move frames from the backend into receive buffers until either runs out.
    fn receive_all(&mut self) {
        let mut delivered = false;
        loop {
            let len = match self.pending.take() {
                Some(len) => len,
                None if self.backend_gone => break,
                None => match self.backend.recv(&mut self.buf) {
                    Ok(len) => len,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        log::warn!("virtio-net rx: {e}");
                        break;
                    }
                },
            };
            match self.deliver(len) {
                Delivery::Delivered => delivered = true,
                Delivery::Dropped => delivered = true,
                Delivery::NoBuffer => {
                    self.pending = Some(len);
                    break;
                }
            }
        }
        if delivered && self.queue.needs_notification(&self.mem).unwrap_or(true) {
            self.interrupt.trigger(InterruptKind::Queue(RX_QUEUE));
        }
    }

    fn deliver(&mut self, len: usize) -> Delivery {
        if len < VNET_HDR_SIZE {
            return Delivery::Dropped;
        }
        let mem = &self.mem;
        let chain = match self.queue.pop_descriptor_chain(mem) {
            Some(chain) => chain,
            None => {
                // Ask for a kick, then look again in case a buffer arrived
                // in between (virtio 1.2 §2.7.10).
                match self.queue.enable_notification(mem) {
                    Ok(true) => match self.queue.pop_descriptor_chain(mem) {
                        Some(chain) => chain,
                        None => return Delivery::NoBuffer,
                    },
                    _ => return Delivery::NoBuffer,
                }
            }
        };
        let head = chain.head_index();
        // No VIRTIO_NET_F_MRG_RXBUF: one buffer per frame, num_buffers = 1.
        self.buf[NUM_BUFFERS_OFFSET..NUM_BUFFERS_OFFSET + 2].copy_from_slice(&1u16.to_le_bytes());
        let written = match Writer::<()>::new(mem, chain) {
            Ok(mut writer) if writer.available_bytes() >= len => {
                match io::Write::write_all(&mut writer, &self.buf[..len]) {
                    Ok(()) => len as u32,
                    Err(_) => 0,
                }
            }
            Ok(_) => {
                log::debug!("virtio-net rx: frame of {len} bytes does not fit its buffer");
                0
            }
            Err(_) => 0,
        };
        if let Err(e) = self.queue.add_used(mem, head, written) {
            log::error!("virtio-net rx: {e}");
        }
        if written == 0 {
            Delivery::Dropped
        } else {
            Delivery::Delivered
        }
    }
}

#[cfg(test)]
#[path = "net_tests.rs"]
mod tests;
