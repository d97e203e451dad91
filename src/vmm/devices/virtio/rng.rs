//! virtio-rng (virtio 1.2 §5.4): fills the driver's writable buffers with
//! bytes from the host's /dev/urandom, synchronously on notify.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use virtio_queue::Writer;

use super::{
    ActivateError, Activation, COMMON_FEATURES, Chain, SingleQueue, VIRTIO_ID_RNG, VirtioDevice,
};
use crate::vmm::memory::GuestMemoryMmap;

/// The entropy source.
pub const URANDOM_PATH: &str = "/dev/urandom";
/// Size of the one request queue.
pub const QUEUE_SIZE: u16 = 256;
/// Most bytes handed out per buffer, to bound the copy a request costs.
pub const MAX_BYTES_PER_REQUEST: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open the entropy source {URANDOM_PATH}")]
    Open(#[source] std::io::Error),
}

/// A virtio-rng device.
pub struct Rng {
    source: Box<dyn Read + Send>,
    queue: SingleQueue,
}

impl Rng {
    pub fn new() -> Result<Self, Error> {
        let file = File::open(Path::new(URANDOM_PATH)).map_err(Error::Open)?;
        Ok(Self::with_source(Box::new(file)))
    }

    /// A device drawing from `source` (tests use a known stream).
    pub fn with_source(source: Box<dyn Read + Send>) -> Self {
        Rng {
            source,
            queue: SingleQueue::default(),
        }
    }

    fn fill(source: &mut dyn Read, mem: &GuestMemoryMmap, chain: Chain<'_>) -> u32 {
        let Ok(mut writer) = Writer::<()>::new(mem, chain) else {
            log::warn!("virtio-rng: buffer points outside guest memory");
            return 0;
        };
        let len = writer.available_bytes().min(MAX_BYTES_PER_REQUEST);
        let mut buf = vec![0u8; len];
        if let Err(e) = source.read_exact(&mut buf) {
            log::error!("virtio-rng: {URANDOM_PATH}: {e}");
            return 0;
        }
        match writer.write_all(&buf) {
            Ok(()) => len as u32,
            Err(_) => writer.bytes_written() as u32,
        }
    }

    fn process(&mut self) {
        let source = &mut self.source;
        self.queue
            .drain(|mem, chain| Self::fill(source.as_mut(), mem, chain));
    }
}

impl VirtioDevice for Rng {
    fn device_type(&self) -> u16 {
        VIRTIO_ID_RNG
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        COMMON_FEATURES
    }

    /// virtio-rng has no configuration space.
    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn activate(&mut self, activation: Activation) -> Result<(), ActivateError> {
        self.queue.activate(activation)?;
        // Requests queued before DRIVER_OK are served now.
        self.process();
        Ok(())
    }

    fn queue_notify(&mut self, index: u16) {
        if index == 0 {
            self.process();
        }
    }

    fn reset(&mut self) {
        self.queue.reset();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Bytes, GuestAddress};

    use super::*;
    use crate::vmm::devices::virtio::InterruptKind;
    use crate::vmm::devices::virtio::test_util::{
        RecordingInterrupt, add_chain, test_memory, used, used_count,
    };

    /// An endless, recognisable byte stream.
    struct Counter(u8);

    impl Read for Counter {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            for b in buf.iter_mut() {
                *b = self.0;
                self.0 = self.0.wrapping_add(1);
            }
            Ok(buf.len())
        }
    }

    #[test]
    fn fills_writable_buffers_and_reports_their_length() {
        let mem = test_memory();
        let vq = MockSplitQueue::new(&mem, 16);
        let mut rng = Rng::with_source(Box::new(Counter(1)));
        let irq = Arc::new(RecordingInterrupt::default());
        rng.activate(Activation {
            mem: mem.clone(),
            interrupt: irq.clone(),
            queues: vec![Some(vq.create_queue().unwrap())],
            acked_features: rng.features(),
        })
        .unwrap();
        // One chain of two writable buffers.
        add_chain(&vq, 0, &[(0x1_0000, 3, true), (0x2_0000, 5, true)]);
        rng.queue_notify(0);
        assert_eq!(used_count(&vq), 1);
        assert_eq!(used(&vq, 0), (0, 8));
        assert_eq!(irq.take(), [InterruptKind::Queue(0)]);
        let mut a = [0u8; 4];
        mem.read_slice(&mut a, GuestAddress(0x1_0000)).unwrap();
        assert_eq!(a, [1, 2, 3, 0]);
        let mut b = [0u8; 5];
        mem.read_slice(&mut b, GuestAddress(0x2_0000)).unwrap();
        assert_eq!(b, [4, 5, 6, 7, 8]);
        // A read-only buffer gets nothing.
        add_chain(&vq, 2, &[(0x3_0000, 16, false)]);
        rng.queue_notify(0);
        assert_eq!(used(&vq, 1), (2, 0));
    }

    #[test]
    fn real_source_opens() {
        let mut rng = Rng::new().unwrap();
        let mut buf = [0u8; 32];
        rng.source.read_exact(&mut buf).unwrap();
        assert_eq!(rng.device_type(), VIRTIO_ID_RNG);
    }
}
