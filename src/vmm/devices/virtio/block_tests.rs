use std::io::Write as _;
use std::sync::Arc;

use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Bytes, GuestAddress};

use super::*;
use crate::vmm::devices::virtio::InterruptKind;
use crate::vmm::devices::virtio::test_util::{
    Buf, RecordingInterrupt, add_chain, test_memory, used, used_count,
};

const HDR: u64 = 0x1_0000;
const DATA: u64 = 0x2_0000;
const STATUS: u64 = 0x3_0000;
const DISK_SECTORS: u64 = 8;

/// A disk of 8 sectors where byte i holds i % 251, named "disk-image.raw".
fn disk(read_only: bool) -> (tempfile::TempDir, DiskConfig) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk-image.raw");
    let mut f = File::create(&path).unwrap();
    let bytes: Vec<u8> = (0..DISK_SECTORS * SECTOR_SIZE)
        .map(|i| (i % 251) as u8)
        .collect();
    f.write_all(&bytes).unwrap();
    (dir, DiskConfig { path, read_only })
}

struct Harness<'a> {
    vq: MockSplitQueue<'a, GuestMemoryMmap>,
    mem: &'a GuestMemoryMmap,
    blk: Block,
    irq: Arc<RecordingInterrupt>,
    next_desc: u16,
}

impl<'a> Harness<'a> {
    fn new(mem: &'a GuestMemoryMmap, cfg: &DiskConfig) -> Self {
        let vq = MockSplitQueue::new(mem, 64);
        let mut blk = Block::new(cfg).unwrap();
        let irq = Arc::new(RecordingInterrupt::default());
        blk.activate(Activation {
            mem: mem.clone(),
            interrupt: irq.clone(),
            queues: vec![Some(vq.create_queue().unwrap())],
            acked_features: blk.features(),
        })
        .unwrap();
        Harness {
            vq,
            mem,
            blk,
            irq,
            next_desc: 0,
        }
    }

    /// Submit a request made of `bufs`; returns (used length, status byte).
    fn submit(&mut self, request_type: u32, sector: u64, bufs: &[Buf]) -> (u32, u8) {
        let mut header = [0u8; 16];
        header[0..4].copy_from_slice(&request_type.to_le_bytes());
        header[8..16].copy_from_slice(&sector.to_le_bytes());
        self.mem.write_slice(&header, GuestAddress(HDR)).unwrap();
        self.mem.write_obj(0xffu8, GuestAddress(STATUS)).unwrap();
        let first = self.next_desc;
        add_chain(&self.vq, first, bufs);
        self.next_desc += bufs.len() as u16;
        let before = used_count(&self.vq);
        self.blk.queue_notify(0);
        assert_eq!(
            used_count(&self.vq),
            before + 1,
            "request was not completed"
        );
        assert_eq!(self.irq.take(), [InterruptKind::Queue(0)]);
        let (id, len) = used(&self.vq, before);
        assert_eq!(id, u32::from(first));
        (len, self.mem.read_obj(GuestAddress(STATUS)).unwrap())
    }

    fn rw(&mut self, request_type: u32, sector: u64, len: u32) -> (u32, u8) {
        let write = request_type == VIRTIO_BLK_T_IN;
        self.submit(
            request_type,
            sector,
            &[(HDR, 16, false), (DATA, len, write), (STATUS, 1, true)],
        )
    }
}

#[test]
fn config_space_and_features() {
    let (_dir, cfg) = disk(true);
    let blk = Block::new(&cfg).unwrap();
    let mut capacity = [0u8; 8];
    blk.read_config(0, &mut capacity);
    assert_eq!(u64::from_le_bytes(capacity), DISK_SECTORS);
    let mut seg_max = [0u8; 4];
    blk.read_config(12, &mut seg_max);
    assert_eq!(u32::from_le_bytes(seg_max), SEG_MAX);
    assert_ne!(blk.features() & 1 << VIRTIO_BLK_F_RO, 0);
    assert_ne!(blk.features() & 1 << super::super::VIRTIO_F_VERSION_1, 0);
    let (_dir, cfg) = disk(false);
    assert_eq!(
        Block::new(&cfg).unwrap().features() & 1 << VIRTIO_BLK_F_RO,
        0
    );
    let missing = DiskConfig {
        path: "/nonexistent/disk.img".into(),
        read_only: false,
    };
    let err = Block::new(&missing).err().unwrap();
    assert!(err.to_string().contains("/nonexistent/disk.img"), "{err}");
}

#[test]
fn read_write_and_flush() {
    let mem = test_memory();
    let (_dir, cfg) = disk(false);
    let mut h = Harness::new(&mem, &cfg);
    // Read sectors 2..4.
    assert_eq!(h.rw(VIRTIO_BLK_T_IN, 2, 1024), (1025, VIRTIO_BLK_S_OK));
    let mut buf = vec![0u8; 1024];
    mem.read_slice(&mut buf, GuestAddress(DATA)).unwrap();
    let expected: Vec<u8> = (1024..2048u64).map(|i| (i % 251) as u8).collect();
    assert_eq!(buf, expected);
    // Write sector 7, then read it back through the device and the file.
    mem.write_slice(&[0xab; 512], GuestAddress(DATA)).unwrap();
    assert_eq!(h.rw(VIRTIO_BLK_T_OUT, 7, 512), (1, VIRTIO_BLK_S_OK));
    mem.write_slice(&[0; 512], GuestAddress(DATA)).unwrap();
    assert_eq!(h.rw(VIRTIO_BLK_T_IN, 7, 512), (513, VIRTIO_BLK_S_OK));
    mem.read_slice(&mut buf[..512], GuestAddress(DATA)).unwrap();
    assert_eq!(buf[..512], [0xab; 512]);
    let on_disk = std::fs::read(&cfg.path).unwrap();
    assert_eq!(on_disk[7 * 512..], [0xab; 512]);
    assert!(
        on_disk[..7 * 512]
            .iter()
            .enumerate()
            .all(|(i, b)| *b == (i % 251) as u8)
    );
    // Flush has only header and status.
    assert_eq!(
        h.submit(
            VIRTIO_BLK_T_FLUSH,
            0,
            &[(HDR, 16, false), (STATUS, 1, true)]
        ),
        (1, VIRTIO_BLK_S_OK)
    );
}

#[test]
fn get_id_returns_the_file_name() {
    let mem = test_memory();
    let (_dir, cfg) = disk(true);
    let mut h = Harness::new(&mem, &cfg);
    assert_eq!(
        h.submit(
            VIRTIO_BLK_T_GET_ID,
            0,
            &[(HDR, 16, false), (DATA, 20, true), (STATUS, 1, true)]
        ),
        (21, VIRTIO_BLK_S_OK)
    );
    // The name, zero-padded to 20 bytes.
    let mut id = [0xffu8; 20];
    mem.read_slice(&mut id, GuestAddress(DATA)).unwrap();
    assert_eq!(&id[..14], b"disk-image.raw");
    assert_eq!(id[14..], [0; 6]);
}

#[test]
fn out_of_range_and_malformed_requests_fail_cleanly() {
    let mem = test_memory();
    let (_dir, cfg) = disk(false);
    let mut h = Harness::new(&mem, &cfg);
    // Past the end, straddling the end, and a sector number that overflows.
    assert_eq!(h.rw(VIRTIO_BLK_T_IN, 8, 512), (1, VIRTIO_BLK_S_IOERR));
    assert_eq!(h.rw(VIRTIO_BLK_T_OUT, 7, 1024), (1, VIRTIO_BLK_S_IOERR));
    assert_eq!(
        h.rw(VIRTIO_BLK_T_IN, u64::MAX, 512),
        (1, VIRTIO_BLK_S_IOERR)
    );
    // Not a whole sector.
    assert_eq!(h.rw(VIRTIO_BLK_T_IN, 0, 100), (1, VIRTIO_BLK_S_IOERR));
    // Header too short.
    assert_eq!(
        h.submit(VIRTIO_BLK_T_IN, 0, &[(HDR, 8, false), (STATUS, 1, true)]),
        (1, VIRTIO_BLK_S_IOERR)
    );
    // Unknown request type.
    assert_eq!(
        h.submit(99, 0, &[(HDR, 16, false), (STATUS, 1, true)]),
        (1, VIRTIO_BLK_S_UNSUPP)
    );
    // No writable status byte: returned with nothing written.
    assert_eq!(
        h.submit(VIRTIO_BLK_T_FLUSH, 0, &[(HDR, 16, false)]),
        (0, 0xff)
    );
    // A data buffer outside guest memory.
    assert_eq!(
        h.submit(
            VIRTIO_BLK_T_IN,
            0,
            &[(HDR, 16, false), (0xfff_0000, 512, true), (STATUS, 1, true)]
        ),
        (0, 0xff)
    );
    // The disk is untouched.
    let on_disk = std::fs::read(&cfg.path).unwrap();
    assert!(
        on_disk
            .iter()
            .enumerate()
            .all(|(i, b)| *b == (i % 251) as u8)
    );
}

#[test]
fn read_only_disk_refuses_writes() {
    let mem = test_memory();
    let (_dir, cfg) = disk(true);
    let mut h = Harness::new(&mem, &cfg);
    mem.write_slice(&[0xcd; 512], GuestAddress(DATA)).unwrap();
    assert_eq!(h.rw(VIRTIO_BLK_T_OUT, 0, 512), (1, VIRTIO_BLK_S_IOERR));
    assert_eq!(h.rw(VIRTIO_BLK_T_IN, 0, 512), (513, VIRTIO_BLK_S_OK));
    let mut buf = [0u8; 4];
    mem.read_slice(&mut buf, GuestAddress(DATA)).unwrap();
    assert_eq!(buf, [0, 1, 2, 3]);
}

#[test]
fn reset_stops_processing() {
    let mem = test_memory();
    let (_dir, cfg) = disk(true);
    let mut h = Harness::new(&mem, &cfg);
    h.blk.reset();
    add_chain(&h.vq, 0, &[(HDR, 16, false), (STATUS, 1, true)]);
    h.blk.queue_notify(0);
    assert_eq!(used_count(&h.vq), 0);
    assert!(h.irq.take().is_empty());
}
