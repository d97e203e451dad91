//! Address-range dispatch for port I/O and MMIO exits.
//!
//! A `Bus` maps non-overlapping ranges `[base, base + len)` to devices. The
//! vCPU threads look up the device for each exit; PCI BAR reprogramming may
//! move a range while the guest runs, hence the `RwLock`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

/// A device on a bus. `offset` is relative to the base of the range the
/// device was inserted at; `base` tells which of its ranges was hit when a
/// device sits on several (e.g. PCI BARs).
pub trait BusDevice: Send {
    fn read(&mut self, base: u64, offset: u64, data: &mut [u8]);
    fn write(&mut self, base: u64, offset: u64, data: &[u8]);
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    #[error("bus range {base:#x}+{len:#x} is empty or wraps around")]
    InvalidRange { base: u64, len: u64 },
    #[error("bus range {base:#x}+{len:#x} overlaps an existing device")]
    Overlap { base: u64, len: u64 },
    #[error("no device at bus address {0:#x}")]
    NotFound(u64),
}

/// A shared device handle.
pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

#[derive(Clone)]
struct Entry {
    len: u64,
    device: SharedDevice,
}

/// Ranges of addresses mapped to devices.
#[derive(Default)]
pub struct Bus {
    ranges: RwLock<BTreeMap<u64, Entry>>,
}

impl Bus {
    pub fn new() -> Self {
        Self::default()
    }

    /// Map `[base, base + len)` to `device`.
    pub fn insert(&self, device: SharedDevice, base: u64, len: u64) -> Result<(), BusError> {
        let end = base.checked_add(len).filter(|_| len > 0);
        let Some(end) = end else {
            return Err(BusError::InvalidRange { base, len });
        };
        let mut ranges = self.ranges.write().unwrap_or_else(|e| e.into_inner());
        // The range starting at or before `base`, and the first one after it.
        let before = ranges.range(..=base).next_back();
        let after = ranges.range(base..).next();
        let overlaps_before = before.is_some_and(|(b, e)| b + e.len > base);
        let overlaps_after = after.is_some_and(|(b, _)| *b < end);
        if overlaps_before || overlaps_after {
            return Err(BusError::Overlap { base, len });
        }
        ranges.insert(base, Entry { len, device });
        Ok(())
    }

    /// Unmap the range that starts at `base`.
    pub fn remove(&self, base: u64) -> Result<SharedDevice, BusError> {
        let mut ranges = self.ranges.write().unwrap_or_else(|e| e.into_inner());
        ranges
            .remove(&base)
            .map(|e| e.device)
            .ok_or(BusError::NotFound(base))
    }

    /// The device covering `addr`, with the base of its range.
    fn resolve(&self, addr: u64) -> Option<(u64, SharedDevice)> {
        let ranges = self.ranges.read().unwrap_or_else(|e| e.into_inner());
        let (base, entry) = ranges.range(..=addr).next_back()?;
        (addr - base < entry.len).then(|| (*base, entry.device.clone()))
    }

    /// Run `access` on the device covering `addr`, locked, with the base of
    /// its range and the offset into it. Returns false when none does.
    fn dispatch(&self, addr: u64, access: impl FnOnce(&mut dyn BusDevice, u64, u64)) -> bool {
        let Some((base, dev)) = self.resolve(addr) else {
            return false;
        };
        let mut device = dev.lock().unwrap_or_else(|e| e.into_inner());
        access(&mut *device, base, addr - base);
        true
    }

    /// Dispatch a read. Returns false (and leaves `data` untouched) when no
    /// device covers `addr`.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        self.dispatch(addr, |dev, base, offset| dev.read(base, offset, data))
    }

    /// Dispatch a write. Returns false when no device covers `addr`.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        self.dispatch(addr, |dev, base, offset| dev.write(base, offset, data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder {
        last_write: Option<(u64, u64, Vec<u8>)>,
    }

    impl BusDevice for Recorder {
        fn read(&mut self, base: u64, offset: u64, data: &mut [u8]) {
            data.fill((base + offset) as u8);
        }
        fn write(&mut self, base: u64, offset: u64, data: &[u8]) {
            self.last_write = Some((base, offset, data.to_vec()));
        }
    }

    #[test]
    fn dispatches_by_range_with_offsets() {
        let bus = Bus::new();
        let dev = Arc::new(Mutex::new(Recorder::default()));
        bus.insert(dev.clone(), 0x3f8, 8).unwrap();
        let mut buf = [0u8; 1];
        assert!(bus.read(0x3fd, &mut buf));
        assert_eq!(buf[0], 0xfd);
        assert!(bus.write(0x3ff, &[7]));
        assert_eq!(dev.lock().unwrap().last_write, Some((0x3f8, 7, vec![7])));
        assert!(!bus.read(0x400, &mut buf));
        assert!(!bus.write(0x3f7, &[1]));
    }

    #[test]
    fn refuses_overlaps_and_empty_ranges() {
        let bus = Bus::new();
        let dev = Arc::new(Mutex::new(Recorder::default()));
        bus.insert(dev.clone(), 0x100, 0x10).unwrap();
        assert_eq!(
            bus.insert(dev.clone(), 0x10f, 1),
            Err(BusError::Overlap {
                base: 0x10f,
                len: 1
            })
        );
        assert_eq!(
            bus.insert(dev.clone(), 0xf8, 0x9),
            Err(BusError::Overlap { base: 0xf8, len: 9 })
        );
        assert!(bus.insert(dev.clone(), 0xf8, 0x8).is_ok());
        assert!(bus.insert(dev.clone(), 0x110, 0x8).is_ok());
        assert_eq!(
            bus.insert(dev.clone(), 0x200, 0),
            Err(BusError::InvalidRange {
                base: 0x200,
                len: 0
            })
        );
        assert_eq!(
            bus.insert(dev, u64::MAX, 2),
            Err(BusError::InvalidRange {
                base: u64::MAX,
                len: 2
            })
        );
    }

    #[test]
    fn remove_then_reinsert_moves_a_device() {
        let bus = Bus::new();
        let dev = Arc::new(Mutex::new(Recorder::default()));
        bus.insert(dev, 0x1000, 0x100).unwrap();
        let dev = bus.remove(0x1000).unwrap();
        assert!(!bus.write(0x1000, &[1]));
        bus.insert(dev, 0x2000, 0x100).unwrap();
        assert!(bus.write(0x2010, &[1]));
        assert!(matches!(
            bus.remove(0x1000),
            Err(BusError::NotFound(0x1000))
        ));
    }
}
