//! Virtio 1.2 devices (blk, net, rng) and their PCI transport.
//!
//! Processing model: the guest notifies a queue by writing to the notify
//! region of the device's BAR; that MMIO exit reaches
//! [`VirtioDevice::queue_notify`] on the vCPU thread (no ioeventfd).
//! virtio-blk, virtio-rng and virtio-net's transmit queue are processed
//! right there, synchronously; virtio-net's receive side runs on a worker
//! thread that waits on the TAP fd (the notify only wakes it up).

use std::sync::Arc;

use virtio_bindings::virtio_ids;
use virtio_queue::{DescriptorChain, Queue, QueueT};

use crate::vmm::memory::GuestMemoryMmap;

pub mod block;
pub mod net;
pub mod pci;
pub mod rng;
pub mod tap;

pub use tap::Tap;

/// Device IDs (virtio 1.2 §5), as the `u16` the transports carry
/// (virtio-bindings has them as `u32`).
pub const VIRTIO_ID_NET: u16 = virtio_ids::VIRTIO_ID_NET as u16;
pub const VIRTIO_ID_BLOCK: u16 = virtio_ids::VIRTIO_ID_BLOCK as u16;
pub const VIRTIO_ID_RNG: u16 = virtio_ids::VIRTIO_ID_RNG as u16;

/// Reserved feature bits (virtio 1.2 §6).
pub use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
pub use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};

/// Features every device here offers: modern interface, indirect
/// descriptors and used/avail event suppression (virtio-queue handles both).
pub const COMMON_FEATURES: u64 =
    1 << VIRTIO_F_VERSION_1 | 1 << VIRTIO_RING_F_INDIRECT_DESC | 1 << VIRTIO_RING_F_EVENT_IDX;

/// Why a device interrupts the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterruptKind {
    /// Used buffers were added to queue `n`.
    Queue(u16),
    /// The device configuration changed.
    Config,
}

/// How a device raises interrupts; the transport decides the vector.
pub trait VirtioInterrupt: Send + Sync {
    fn trigger(&self, kind: InterruptKind);
}

#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    #[error("device expects {expected} queues, driver enabled {got}")]
    QueueCount { expected: usize, got: usize },
    #[error("cannot start the worker thread")]
    Thread(#[source] std::io::Error),
    #[error("cannot create an eventfd or epoll instance")]
    Event(#[source] std::io::Error),
}

/// Everything a device gets when the driver sets DRIVER_OK.
pub struct Activation {
    pub mem: GuestMemoryMmap,
    pub interrupt: Arc<dyn VirtioInterrupt>,
    /// One per queue the device declared, configured and enabled by the
    /// driver (a queue the driver left disabled is `None`).
    pub queues: Vec<Option<Queue>>,
    /// Features the driver accepted.
    pub acked_features: u64,
}

/// A virtio device behind a transport.
pub trait VirtioDevice: Send {
    /// Device ID (virtio 1.2 §5).
    fn device_type(&self) -> u16;
    /// Maximum size of each of its queues; the length is the queue count.
    fn queue_max_sizes(&self) -> &[u16];
    /// Feature bits the device offers (including `COMMON_FEATURES`).
    fn features(&self) -> u64;
    /// Read the device-specific configuration space.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Write the device-specific configuration space (read-only by default).
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    /// The driver set DRIVER_OK: start processing.
    fn activate(&mut self, activation: Activation) -> Result<(), ActivateError>;
    /// The driver notified queue `index`.
    fn queue_notify(&mut self, index: u16);
    /// The driver reset the device: stop processing and drop the queues.
    fn reset(&mut self);
}

/// Copy `data.len()` bytes of `config` from `offset` (zeros past its end).
pub fn read_config_bytes(config: &[u8], offset: u64, data: &mut [u8]) {
    for (i, byte) in data.iter_mut().enumerate() {
        *byte = usize::try_from(offset)
            .ok()
            .and_then(|o| o.checked_add(i))
            .and_then(|o| config.get(o))
            .copied()
            .unwrap_or(0);
    }
}

/// A chain as the devices see it.
pub type Chain<'a> = DescriptorChain<&'a GuestMemoryMmap>;

/// Hand every available chain of `queue` to `handle`, which returns how
/// many bytes it wrote into the chain, and return the chains to the driver.
/// Notifications are re-enabled before stopping and the queue re-checked,
/// so a buffer added meanwhile is not missed (virtio 1.2 §2.7.10). The
/// driver is interrupted if it asked to be (EVENT_IDX or flags).
pub fn drain_queue(
    queue: &mut Queue,
    mem: &GuestMemoryMmap,
    interrupt: &dyn VirtioInterrupt,
    index: u16,
    mut handle: impl FnMut(Chain<'_>) -> u32,
) {
    let mut used_any = false;
    let mut empty_rounds = 0;
    loop {
        let mut popped = false;
        while let Some(chain) = queue.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            let len = handle(chain);
            if let Err(e) = queue.add_used(mem, head, len) {
                log::error!("virtio queue {index}: cannot add used buffer: {e}");
            }
            popped = true;
        }
        used_any |= popped;
        if !popped {
            empty_rounds += 1;
        }
        match queue.enable_notification(mem) {
            // More arrived meanwhile. (If rounds keep popping nothing, the
            // avail index is corrupt: stop instead of spinning.)
            Ok(true) if empty_rounds < 2 => continue,
            Ok(_) => break,
            Err(e) => {
                log::error!("virtio queue {index}: {e}");
                break;
            }
        }
    }
    if used_any && queue.needs_notification(mem).unwrap_or(true) {
        interrupt.trigger(InterruptKind::Queue(index));
    }
}

/// The queue side of a device with one queue (virtio-blk, virtio-rng),
/// served synchronously: what activation hands over, until reset.
#[derive(Default)]
pub struct SingleQueue {
    active: Option<ActiveQueue>,
}

struct ActiveQueue {
    mem: GuestMemoryMmap,
    queue: Queue,
    interrupt: Arc<dyn VirtioInterrupt>,
}

impl SingleQueue {
    /// Take the one queue of `activation` (it must have been enabled).
    pub fn activate(&mut self, activation: Activation) -> Result<(), ActivateError> {
        let got = activation.queues.len();
        let Some(Some(queue)) = activation.queues.into_iter().next() else {
            return Err(ActivateError::QueueCount { expected: 1, got });
        };
        self.active = Some(ActiveQueue {
            mem: activation.mem,
            queue,
            interrupt: activation.interrupt,
        });
        Ok(())
    }

    /// Serve every available chain with `handle` (see [`drain_queue`]);
    /// nothing before activation or after reset.
    pub fn drain(&mut self, mut handle: impl FnMut(&GuestMemoryMmap, Chain<'_>) -> u32) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        let mem = &active.mem;
        drain_queue(
            &mut active.queue,
            mem,
            active.interrupt.as_ref(),
            0,
            |chain| handle(mem, chain),
        );
    }

    /// Drop the queue: the device is reset.
    pub fn reset(&mut self) {
        self.active = None;
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    use std::sync::Mutex;

    use virtio_bindings::virtio_ring;
    use virtio_queue::desc::{RawDescriptor, split::Descriptor as SplitDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::GuestAddress;

    use super::*;

    /// Descriptor flags (virtio 1.2 §2.7.5), as the `u16` a descriptor holds.
    pub const VRING_DESC_F_NEXT: u16 = virtio_ring::VRING_DESC_F_NEXT as u16;
    pub const VRING_DESC_F_WRITE: u16 = virtio_ring::VRING_DESC_F_WRITE as u16;

    /// Guest memory for device tests: 1 MiB from 0; queues at 0, buffers above.
    pub fn test_memory() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap()
    }

    /// A buffer of a chain: guest address, length, device-writable.
    pub type Buf = (u64, u32, bool);

    /// Put a chain made of `bufs` into the descriptor table from index
    /// `first` and make it available.
    pub fn add_chain(vq: &MockSplitQueue<'_, GuestMemoryMmap>, first: u16, bufs: &[Buf]) {
        let descs: Vec<RawDescriptor> = bufs
            .iter()
            .enumerate()
            .map(|(i, &(addr, len, write))| {
                let last = i + 1 == bufs.len();
                let mut flags = if write { VRING_DESC_F_WRITE } else { 0 };
                if !last {
                    flags |= VRING_DESC_F_NEXT;
                }
                let next = if last { 0 } else { first + i as u16 + 1 };
                RawDescriptor::from(SplitDescriptor::new(addr, len, flags, next))
            })
            .collect();
        vq.add_desc_chains(&descs, first).unwrap();
    }

    /// The `i`th used-ring element: (head index, length written).
    pub fn used(vq: &MockSplitQueue<'_, GuestMemoryMmap>, i: u16) -> (u32, u32) {
        let elem = vq.used().ring().ref_at(usize::from(i)).unwrap().load();
        (elem.id(), elem.len())
    }

    /// How many buffers the device has returned.
    pub fn used_count(vq: &MockSplitQueue<'_, GuestMemoryMmap>) -> u16 {
        vq.used().idx().load()
    }

    /// Records interrupts instead of raising them.
    #[derive(Default)]
    pub struct RecordingInterrupt {
        pub raised: Mutex<Vec<InterruptKind>>,
    }

    impl VirtioInterrupt for RecordingInterrupt {
        fn trigger(&self, kind: InterruptKind) {
            self.raised.lock().unwrap().push(kind);
        }
    }

    impl RecordingInterrupt {
        pub fn take(&self) -> Vec<InterruptKind> {
            std::mem::take(&mut self.raised.lock().unwrap())
        }
    }
}
