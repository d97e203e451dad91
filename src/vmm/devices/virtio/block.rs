//! virtio-blk (virtio 1.2 §5.2) on a raw image file.
//!
//! One request queue, processed synchronously when the driver notifies it.
//! Each request is a 16-byte header (type, reserved, sector), data buffers,
//! and a trailing status byte the device writes. Everything the guest puts
//! in a descriptor is checked: requests that do not fit the disk, are not
//! whole sectors, exceed the advertised limits or point outside guest RAM
//! end with VIRTIO_BLK_S_IOERR (or, when there is nowhere to put a status
//! byte, are returned with nothing written).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::mem::offset_of;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use virtio_bindings::virtio_blk::{self, virtio_blk_config, virtio_blk_outhdr};
use virtio_queue::{Reader, Writer};

use super::{
    ActivateError, Activation, COMMON_FEATURES, Chain, SingleQueue, VIRTIO_ID_BLOCK, VirtioDevice,
    read_config_bytes,
};
use crate::vmm::config::DiskConfig;
use crate::vmm::memory::GuestMemoryMmap;

/// Sector size of the virtio-blk protocol.
pub const SECTOR_SIZE: u64 = 512;
/// Size of the one request queue.
pub const QUEUE_SIZE: u16 = 256;
/// Feature bits (virtio 1.2 §5.2.3).
pub use virtio_blk::{
    VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_SIZE_MAX,
};
/// Request types (virtio 1.2 §5.2.6).
pub use virtio_blk::{VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT};
/// Status values (virtio 1.2 §5.2.6), as the status byte the device writes.
pub const VIRTIO_BLK_S_OK: u8 = virtio_blk::VIRTIO_BLK_S_OK as u8;
pub const VIRTIO_BLK_S_IOERR: u8 = virtio_blk::VIRTIO_BLK_S_IOERR as u8;
pub const VIRTIO_BLK_S_UNSUPP: u8 = virtio_blk::VIRTIO_BLK_S_UNSUPP as u8;
/// Length of the GET_ID string.
pub const VIRTIO_BLK_ID_BYTES: usize = virtio_blk::VIRTIO_BLK_ID_BYTES as usize;
/// `struct virtio_blk_outhdr`: its size and where `type` and `sector` are.
const REQUEST_HEADER_SIZE: usize = size_of::<virtio_blk_outhdr>();
const REQUEST_TYPE_OFFSET: usize = offset_of!(virtio_blk_outhdr, type_);
const REQUEST_SECTOR_OFFSET: usize = offset_of!(virtio_blk_outhdr, sector);
/// Advertised limits: data segments per request (the queue size minus the
/// header and status descriptors) and bytes per segment.
pub const SEG_MAX: u32 = QUEUE_SIZE as u32 - 2;
pub const SIZE_MAX: u32 = 0x1_0000;
/// Largest data transfer of one request.
const MAX_REQUEST_BYTES: u64 = SEG_MAX as u64 * SIZE_MAX as u64;
/// Bytes of config space we expose: capacity, size_max, seg_max, geometry,
/// blk_size (the last two zero: not offered), i.e. `struct virtio_blk_config`
/// up to `physical_block_exp`.
const CONFIG_SIZE: usize = offset_of!(virtio_blk_config, physical_block_exp);
const CONFIG_CAPACITY: usize = offset_of!(virtio_blk_config, capacity);
const CONFIG_SIZE_MAX: usize = offset_of!(virtio_blk_config, size_max);
const CONFIG_SEG_MAX: usize = offset_of!(virtio_blk_config, seg_max);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open disk image {0}")]
    Open(PathBuf, #[source] std::io::Error),
    #[error("cannot read the size of disk image {0}")]
    Metadata(PathBuf, #[source] std::io::Error),
}

/// A virtio-blk device.
pub struct Block {
    file: File,
    read_only: bool,
    capacity_sectors: u64,
    id: [u8; VIRTIO_BLK_ID_BYTES],
    config: [u8; CONFIG_SIZE],
    queue: SingleQueue,
}

impl Block {
    pub fn new(disk: &DiskConfig) -> Result<Self, Error> {
        let file = OpenOptions::new()
            .read(true)
            .write(!disk.read_only)
            .open(&disk.path)
            .map_err(|e| Error::Open(disk.path.clone(), e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::Metadata(disk.path.clone(), e))?
            .len();
        Ok(Self::with_file(file, &disk.path, len, disk.read_only))
    }

    fn with_file(file: File, path: &Path, len: u64, read_only: bool) -> Self {
        // A trailing partial sector cannot be addressed.
        let capacity_sectors = len / SECTOR_SIZE;
        let mut id = [0u8; VIRTIO_BLK_ID_BYTES];
        let name = path.file_name().map(|n| n.as_bytes()).unwrap_or_default();
        let n = name.len().min(VIRTIO_BLK_ID_BYTES);
        id[..n].copy_from_slice(&name[..n]);
        let mut config = [0u8; CONFIG_SIZE];
        config[CONFIG_CAPACITY..][..8].copy_from_slice(&capacity_sectors.to_le_bytes());
        config[CONFIG_SIZE_MAX..][..4].copy_from_slice(&SIZE_MAX.to_le_bytes());
        config[CONFIG_SEG_MAX..][..4].copy_from_slice(&SEG_MAX.to_le_bytes());
        Block {
            file,
            read_only,
            capacity_sectors,
            id,
            config,
            queue: SingleQueue::default(),
        }
    }

    /// The disk's size in 512-byte sectors.
    pub fn capacity(&self) -> u64 {
        self.capacity_sectors
    }

    /// Handle one request; returns the bytes written into the chain.
    fn handle_request(
        file: &File,
        read_only: bool,
        capacity: u64,
        id: &[u8],
        mem: &GuestMemoryMmap,
        chain: Chain<'_>,
    ) -> u32 {
        let (Ok(mut reader), Ok(mut writer)) = (
            Reader::new(mem, chain.clone()),
            Writer::<()>::new(mem, chain),
        ) else {
            log::warn!("virtio-blk: request points outside guest memory");
            return 0;
        };
        let Some(data_room) = writer.available_bytes().checked_sub(1) else {
            log::warn!("virtio-blk: request has no status byte");
            return 0;
        };
        let Ok(mut status_writer) = writer.split_at(data_room) else {
            return 0;
        };
        let (status, written) =
            Self::execute(file, read_only, capacity, id, &mut reader, &mut writer);
        if status_writer.write_all(&[status]).is_err() {
            return 0;
        }
        written as u32 + 1
    }

    /// Run a request; returns the status and the data bytes written.
    fn execute(
        file: &File,
        read_only: bool,
        capacity: u64,
        id: &[u8],
        reader: &mut Reader<'_>,
        writer: &mut Writer<'_>,
    ) -> (u8, usize) {
        let mut header = [0u8; REQUEST_HEADER_SIZE];
        if reader.read_exact(&mut header).is_err() {
            return (VIRTIO_BLK_S_IOERR, 0);
        }
        let request_type = u32::from_le_bytes(
            header[REQUEST_TYPE_OFFSET..][..4]
                .try_into()
                .unwrap_or_default(),
        );
        let sector = u64::from_le_bytes(
            header[REQUEST_SECTOR_OFFSET..][..8]
                .try_into()
                .unwrap_or_default(),
        );
        match request_type {
            VIRTIO_BLK_T_IN => {
                let len = writer.available_bytes();
                let Some(offset) = Self::check_range(capacity, sector, len as u64) else {
                    return (VIRTIO_BLK_S_IOERR, 0);
                };
                let mut buf = vec![0u8; len];
                if let Err(e) = file.read_exact_at(&mut buf, offset) {
                    log::warn!("virtio-blk: read at {offset:#x}: {e}");
                    return (VIRTIO_BLK_S_IOERR, 0);
                }
                match writer.write_all(&buf) {
                    Ok(()) => (VIRTIO_BLK_S_OK, len),
                    Err(_) => (VIRTIO_BLK_S_IOERR, writer.bytes_written()),
                }
            }
            VIRTIO_BLK_T_OUT => {
                if read_only {
                    return (VIRTIO_BLK_S_IOERR, 0);
                }
                let len = reader.available_bytes();
                let Some(offset) = Self::check_range(capacity, sector, len as u64) else {
                    return (VIRTIO_BLK_S_IOERR, 0);
                };
                let mut buf = vec![0u8; len];
                if reader.read_exact(&mut buf).is_err() {
                    return (VIRTIO_BLK_S_IOERR, 0);
                }
                match file.write_all_at(&buf, offset) {
                    Ok(()) => (VIRTIO_BLK_S_OK, 0),
                    Err(e) => {
                        log::warn!("virtio-blk: write at {offset:#x}: {e}");
                        (VIRTIO_BLK_S_IOERR, 0)
                    }
                }
            }
            VIRTIO_BLK_T_FLUSH => {
                if read_only {
                    return (VIRTIO_BLK_S_OK, 0);
                }
                match file.sync_data() {
                    Ok(()) => (VIRTIO_BLK_S_OK, 0),
                    Err(_) => (VIRTIO_BLK_S_IOERR, 0),
                }
            }
            VIRTIO_BLK_T_GET_ID => {
                let n = writer.available_bytes().min(id.len());
                match writer.write_all(&id[..n]) {
                    Ok(()) => (VIRTIO_BLK_S_OK, n),
                    Err(_) => (VIRTIO_BLK_S_IOERR, 0),
                }
            }
            _ => (VIRTIO_BLK_S_UNSUPP, 0),
        }
    }

    /// The byte offset of a transfer of `len` bytes at `sector`, if it is
    /// whole sectors, within the advertised limits and inside the disk.
    fn check_range(capacity: u64, sector: u64, len: u64) -> Option<u64> {
        if !len.is_multiple_of(SECTOR_SIZE) || len > MAX_REQUEST_BYTES {
            return None;
        }
        let end = sector.checked_add(len / SECTOR_SIZE)?;
        (end <= capacity).then_some(sector * SECTOR_SIZE)
    }

    fn process(&mut self) {
        let (file, read_only, capacity, id) =
            (&self.file, self.read_only, self.capacity_sectors, &self.id);
        self.queue
            .drain(|mem, chain| Self::handle_request(file, read_only, capacity, id, mem, chain));
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u16 {
        VIRTIO_ID_BLOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        let mut features = COMMON_FEATURES
            | 1 << VIRTIO_BLK_F_SIZE_MAX
            | 1 << VIRTIO_BLK_F_SEG_MAX
            | 1 << VIRTIO_BLK_F_FLUSH;
        if self.read_only {
            features |= 1 << VIRTIO_BLK_F_RO;
        }
        features
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
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
#[path = "block_tests.rs"]
mod tests;
