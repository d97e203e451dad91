use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Bytes, GuestAddress};

use super::*;
use crate::vmm::devices::pci::configuration::{CAPABILITIES_POINTER_OFFSET, COMMAND_MEMORY_SPACE};
use crate::vmm::devices::pci::msi_routing::MsiMessage;
use crate::vmm::devices::pci::msi_routing::tests::RecordingRouter;
use crate::vmm::devices::pci::msix::{MSIX_CAPABILITY_ID, MSIX_ENABLE};
use crate::vmm::devices::virtio::rng::Rng;
use crate::vmm::devices::virtio::test_util::{add_chain, test_memory, used, used_count};
use crate::vmm::devices::virtio::{VIRTIO_ID_RNG, VIRTIO_RING_F_INDIRECT_DESC};
use crate::vmm::layout::MSI_GSI_START;

const BAR: u32 = 0xc000_0000;

fn rng_device(mem: &GuestMemoryMmap) -> (VirtioPciDevice, Arc<RecordingRouter>) {
    let router = Arc::new(RecordingRouter::default());
    let rng = Rng::with_source(Box::new(std::io::repeat(0xaa)));
    let dev = VirtioPciDevice::new(Box::new(rng), mem.clone(), router.clone(), BAR).unwrap();
    (dev, router)
}

fn cfg_u8(dev: &mut VirtioPciDevice, offset: usize) -> u8 {
    (dev.read_config(offset / 4) >> ((offset % 4) * 8)) as u8
}

fn cfg_u32(dev: &mut VirtioPciDevice, offset: usize) -> u32 {
    assert_eq!(offset % 4, 0);
    dev.read_config(offset / 4)
}

fn common_write(dev: &mut VirtioPciDevice, offset: u64, value: u64, len: usize) {
    dev.write(0, COMMON_CFG_OFFSET + offset, &value.to_le_bytes()[..len]);
}

fn common_read(dev: &mut VirtioPciDevice, offset: u64, len: usize) -> u64 {
    let mut bytes = [0u8; 8];
    dev.read(0, COMMON_CFG_OFFSET + offset, &mut bytes[..len]);
    u64::from_le_bytes(bytes)
}

/// A vendor capability as a driver parses it.
#[derive(Debug, PartialEq, Eq)]
struct VirtioCap {
    cfg_type: u8,
    bar: u8,
    offset: u32,
    length: u32,
}

#[test]
fn identity_and_capability_chain() {
    let mem = test_memory();
    let (mut dev, _) = rng_device(&mem);
    assert_eq!(cfg_u32(&mut dev, 0), 0x1044_1af4);
    assert_eq!(cfg_u8(&mut dev, 0x08), 1); // revision
    assert_eq!(cfg_u32(&mut dev, 0x2c), 0x0040_1af4);
    assert_eq!(cfg_u8(&mut dev, 0x3d), 0); // no INTx pin
    assert_ne!(cfg_u32(&mut dev, 0x04) >> 16 & 0x10, 0); // capabilities list
    // Walk the chain from 0x34 like a driver does.
    let mut caps = Vec::new();
    let mut msix = None;
    let mut notify_multiplier = None;
    let mut at = usize::from(cfg_u8(&mut dev, CAPABILITIES_POINTER_OFFSET));
    let mut hops = 0;
    while at != 0 {
        hops += 1;
        assert!(hops < 48, "capability loop");
        assert_eq!(at % 4, 0);
        match cfg_u8(&mut dev, at) {
            PCI_CAP_ID_VENDOR => {
                let cap = VirtioCap {
                    cfg_type: cfg_u8(&mut dev, at + 3),
                    bar: cfg_u8(&mut dev, at + 4),
                    offset: cfg_u32(&mut dev, at + 8),
                    length: cfg_u32(&mut dev, at + 12),
                };
                if cap.cfg_type == VIRTIO_PCI_CAP_NOTIFY_CFG {
                    assert_eq!(cfg_u8(&mut dev, at + 2), 20);
                    notify_multiplier = Some(cfg_u32(&mut dev, at + 16));
                }
                caps.push(cap);
            }
            MSIX_CAPABILITY_ID => {
                let control = cfg_u32(&mut dev, at) >> 16;
                msix = Some((
                    control & 0x7ff,
                    cfg_u32(&mut dev, at + 4),
                    cfg_u32(&mut dev, at + 8),
                ));
            }
            other => panic!("unexpected capability {other:#x}"),
        }
        at = usize::from(cfg_u8(&mut dev, at + 1));
    }
    let cap = |cfg_type, offset, length| VirtioCap {
        cfg_type,
        bar: 0,
        offset,
        length,
    };
    assert_eq!(
        caps,
        [
            cap(VIRTIO_PCI_CAP_COMMON_CFG, 0, 0x38),
            cap(VIRTIO_PCI_CAP_NOTIFY_CFG, 0x3000, 0x1000),
            cap(VIRTIO_PCI_CAP_ISR_CFG, 0x1000, 1),
            cap(VIRTIO_PCI_CAP_DEVICE_CFG, 0x2000, 0x1000),
            cap(VIRTIO_PCI_CAP_PCI_CFG, 0, 0),
        ]
    );
    assert_eq!(notify_multiplier, Some(NOTIFY_OFF_MULTIPLIER));
    // One queue + config: 2 vectors (N-1 encoded), table and PBA in BAR 0.
    assert_eq!(msix, Some((1, 0x4000, 0x5000)));
}

#[test]
fn bar_sizing_and_decode() {
    let mem = test_memory();
    let (mut dev, _) = rng_device(&mem);
    assert_eq!(cfg_u32(&mut dev, 0x10), BAR);
    assert_eq!(dev.bar0_window(), None);
    dev.write_config(4, 0, &u32::MAX.to_le_bytes());
    assert_eq!(cfg_u32(&mut dev, 0x10), !(BAR_SIZE as u32 - 1));
    dev.write_config(4, 0, &0xd000_0000u32.to_le_bytes());
    dev.write_config(1, 0, &[COMMAND_MEMORY_SPACE as u8]);
    assert_eq!(dev.bar0_window(), Some((0xd000_0000, BAR_SIZE)));
}

#[test]
fn feature_negotiation() {
    let mem = test_memory();
    let (mut dev, _) = rng_device(&mem);
    common_write(&mut dev, common::DEVICE_FEATURE_SELECT, 1, 4);
    assert_eq!(common_read(&mut dev, common::DEVICE_FEATURE, 4), 1); // VERSION_1
    common_write(&mut dev, common::DEVICE_FEATURE_SELECT, 0, 4);
    let low = common_read(&mut dev, common::DEVICE_FEATURE, 4);
    assert_ne!(low & 1 << VIRTIO_RING_F_INDIRECT_DESC, 0);
    common_write(&mut dev, common::DEVICE_FEATURE_SELECT, 2, 4);
    assert_eq!(common_read(&mut dev, common::DEVICE_FEATURE, 4), 0);
    let status = STATUS_ACKNOWLEDGE | STATUS_DRIVER;
    common_write(&mut dev, common::DEVICE_STATUS, status.into(), 1);
    // Without VERSION_1, FEATURES_OK does not stick.
    common_write(
        &mut dev,
        common::DEVICE_STATUS,
        (status | STATUS_FEATURES_OK).into(),
        1,
    );
    assert_eq!(
        common_read(&mut dev, common::DEVICE_STATUS, 1),
        u64::from(status)
    );
    // A feature the device does not offer is refused too.
    common_write(&mut dev, common::DRIVER_FEATURE_SELECT, 0, 4);
    common_write(&mut dev, common::DRIVER_FEATURE, 1 << 7, 4);
    common_write(&mut dev, common::DRIVER_FEATURE_SELECT, 1, 4);
    common_write(&mut dev, common::DRIVER_FEATURE, 1, 4);
    common_write(
        &mut dev,
        common::DEVICE_STATUS,
        (status | STATUS_FEATURES_OK).into(),
        1,
    );
    assert_eq!(
        common_read(&mut dev, common::DEVICE_STATUS, 1),
        u64::from(status)
    );
    // VERSION_1 alone is accepted and reads back.
    common_write(&mut dev, common::DRIVER_FEATURE_SELECT, 0, 4);
    common_write(&mut dev, common::DRIVER_FEATURE, 0, 4);
    common_write(
        &mut dev,
        common::DEVICE_STATUS,
        (status | STATUS_FEATURES_OK).into(),
        1,
    );
    assert_eq!(
        common_read(&mut dev, common::DEVICE_STATUS, 1),
        u64::from(status | STATUS_FEATURES_OK)
    );
    common_write(&mut dev, common::DRIVER_FEATURE_SELECT, 1, 4);
    assert_eq!(common_read(&mut dev, common::DRIVER_FEATURE, 4), 1);
    // DRIVER_OK without a usable queue still activates (rng queue disabled).
    assert_eq!(dev.device.device_type(), VIRTIO_ID_RNG);
}

/// Drive the device the way Linux's virtio_pci does, then run a request.
#[test]
fn queue_setup_msix_and_notify() {
    let mem = test_memory();
    let (mut dev, router) = rng_device(&mem);
    let vq = MockSplitQueue::create(&mem, GuestAddress(0x8000), 16);
    // MSI-X on, vector 1 programmed and unmasked.
    let msix_reg = dev.msix_cap / 4;
    dev.write_config(msix_reg, 3, &[(MSIX_ENABLE >> 8) as u8]);
    let entry = MSIX_TABLE_OFFSET + 16;
    dev.write(0, entry, &0xfee0_0000u32.to_le_bytes());
    dev.write(0, entry + 4, &0u32.to_le_bytes());
    dev.write(0, entry + 8, &0x4051u32.to_le_bytes());
    dev.write(0, entry + 12, &0u32.to_le_bytes());
    assert_eq!(
        router.routes.lock().unwrap().get(&(MSI_GSI_START + 1)),
        Some(&MsiMessage {
            address: 0xfee0_0000,
            data: 0x4051
        })
    );
    // Features and queue 0.
    common_write(&mut dev, common::DEVICE_STATUS, 3, 1);
    common_write(&mut dev, common::DRIVER_FEATURE_SELECT, 1, 4);
    common_write(&mut dev, common::DRIVER_FEATURE, 1, 4);
    common_write(&mut dev, common::DEVICE_STATUS, 0xb, 1);
    assert_eq!(common_read(&mut dev, common::NUM_QUEUES, 2), 1);
    common_write(&mut dev, common::QUEUE_SELECT, 0, 2);
    assert_eq!(common_read(&mut dev, common::QUEUE_SIZE, 2), 256);
    common_write(&mut dev, common::QUEUE_SIZE, 16, 2);
    common_write(&mut dev, common::QUEUE_SIZE, 17, 2); // not a power of two
    assert_eq!(common_read(&mut dev, common::QUEUE_SIZE, 2), 16);
    common_write(&mut dev, common::QUEUE_MSIX_VECTOR, 1, 2);
    assert_eq!(common_read(&mut dev, common::QUEUE_MSIX_VECTOR, 2), 1);
    common_write(&mut dev, common::CONFIG_MSIX_VECTOR, 9, 2); // no such vector
    assert_eq!(
        common_read(&mut dev, common::CONFIG_MSIX_VECTOR, 2),
        u64::from(VIRTIO_MSI_NO_VECTOR)
    );
    common_write(&mut dev, common::QUEUE_DESC, vq.desc_table_addr().0, 4);
    common_write(&mut dev, common::QUEUE_DESC + 4, 0, 4);
    common_write(&mut dev, common::QUEUE_DRIVER, vq.avail_addr().0, 8);
    common_write(&mut dev, common::QUEUE_DEVICE, vq.used_addr().0, 4);
    common_write(&mut dev, common::QUEUE_DEVICE + 4, 0, 4);
    assert_eq!(
        common_read(&mut dev, common::QUEUE_DRIVER, 8),
        vq.avail_addr().0
    );
    assert_eq!(common_read(&mut dev, common::QUEUE_NOTIFY_OFF, 2), 0);
    common_write(&mut dev, common::QUEUE_ENABLE, 1, 2);
    assert_eq!(common_read(&mut dev, common::QUEUE_ENABLE, 2), 1);
    common_write(&mut dev, common::DEVICE_STATUS, 0xf, 1);
    assert_eq!(common_read(&mut dev, common::DEVICE_STATUS, 1), 0xf);
    // The driver offers a buffer and notifies queue 0.
    add_chain(&vq, 0, &[(0x2_0000, 8, true)]);
    dev.write(0, NOTIFY_OFFSET, &0u16.to_le_bytes());
    assert_eq!(used_count(&vq), 1);
    assert_eq!(used(&vq, 0), (0, 8));
    assert_eq!(
        mem.read_obj::<u64>(GuestAddress(0x2_0000)).unwrap(),
        u64::from_le_bytes([0xaa; 8])
    );
    let interrupt = dev.interrupt();
    assert_eq!(interrupt.msix().irqfd(1).unwrap().read().unwrap(), 1);
    assert!(interrupt.msix().irqfd(0).unwrap().read().is_err());
    // ISR saw a queue interrupt; reading clears it.
    let mut isr = [0u8];
    dev.read(0, ISR_OFFSET, &mut isr);
    assert_eq!(isr[0], ISR_QUEUE);
    dev.read(0, ISR_OFFSET, &mut isr);
    assert_eq!(isr[0], 0);
    // Masking vector 1 parks the next interrupt in the PBA.
    dev.write(0, entry + 12, &1u32.to_le_bytes());
    add_chain(&vq, 1, &[(0x2_0000, 8, true)]);
    dev.write(0, NOTIFY_OFFSET, &0u16.to_le_bytes());
    let mut pba = [0u8; 8];
    dev.read(0, MSIX_PBA_OFFSET, &mut pba);
    assert_eq!(pba[0], 0b10);
    assert!(interrupt.msix().irqfd(1).unwrap().read().is_err());
    dev.write(0, entry + 12, &0u32.to_le_bytes());
    assert_eq!(interrupt.msix().irqfd(1).unwrap().read().unwrap(), 1);
    // Queue configuration is frozen after DRIVER_OK.
    common_write(&mut dev, common::QUEUE_SIZE, 32, 2);
    assert_eq!(common_read(&mut dev, common::QUEUE_SIZE, 2), 16);
    // Writing 0 resets: queues, features and vectors are forgotten.
    common_write(&mut dev, common::DEVICE_STATUS, 0, 1);
    assert_eq!(common_read(&mut dev, common::DEVICE_STATUS, 1), 0);
    assert_eq!(common_read(&mut dev, common::QUEUE_ENABLE, 2), 0);
    assert_eq!(common_read(&mut dev, common::QUEUE_SIZE, 2), 256);
    assert_eq!(common_read(&mut dev, common::QUEUE_DESC, 8), 0);
    assert_eq!(
        common_read(&mut dev, common::QUEUE_MSIX_VECTOR, 2),
        u64::from(VIRTIO_MSI_NO_VECTOR)
    );
    common_write(&mut dev, common::DRIVER_FEATURE_SELECT, 1, 4);
    assert_eq!(common_read(&mut dev, common::DRIVER_FEATURE, 4), 0);
    // Notifications to a reset device are ignored.
    add_chain(&vq, 2, &[(0x2_0000, 8, true)]);
    dev.write(0, NOTIFY_OFFSET, &0u16.to_le_bytes());
    assert_eq!(used_count(&vq), 2);
}

#[test]
fn driver_ok_with_a_broken_queue_needs_reset() {
    let mem = test_memory();
    let (mut dev, _) = rng_device(&mem);
    common_write(&mut dev, common::DEVICE_STATUS, 3, 1);
    common_write(&mut dev, common::DRIVER_FEATURE_SELECT, 1, 4);
    common_write(&mut dev, common::DRIVER_FEATURE, 1, 4);
    common_write(&mut dev, common::DEVICE_STATUS, 0xb, 1);
    // Rings outside guest memory.
    common_write(&mut dev, common::QUEUE_DESC, 0x7fff_0000, 8);
    common_write(&mut dev, common::QUEUE_ENABLE, 1, 2);
    common_write(&mut dev, common::DEVICE_STATUS, 0xf, 1);
    let status = common_read(&mut dev, common::DEVICE_STATUS, 1) as u8;
    assert_ne!(status & STATUS_DEVICE_NEEDS_RESET, 0);
    let mut isr = [0u8];
    dev.read(0, ISR_OFFSET, &mut isr);
    assert_eq!(isr[0], ISR_CONFIG);
}

#[test]
fn pci_cfg_capability_reaches_the_bar() {
    let mem = test_memory();
    let (mut dev, _) = rng_device(&mem);
    let cap = dev.pci_cfg_cap;
    // bar 0, offset of num_queues, length 2.
    dev.write_config((cap + 4) / 4, 0, &[0]);
    dev.write_config((cap + 8) / 4, 0, &(common::NUM_QUEUES as u32).to_le_bytes());
    dev.write_config((cap + 12) / 4, 0, &2u32.to_le_bytes());
    assert_eq!(dev.read_config((cap + 16) / 4), 1);
    // Write device_status through the window.
    dev.write_config(
        (cap + 8) / 4,
        0,
        &(common::DEVICE_STATUS as u32).to_le_bytes(),
    );
    dev.write_config((cap + 12) / 4, 0, &1u32.to_le_bytes());
    dev.write_config((cap + 16) / 4, 0, &[STATUS_ACKNOWLEDGE, 0, 0, 0]);
    assert_eq!(dev.status(), STATUS_ACKNOWLEDGE);
}
