use std::time::{Duration, Instant};

use kvm_ioctls::Kvm;

use super::*;
use crate::vmm::devices::virtio::pci::{
    COMMON_CFG_OFFSET, MSIX_TABLE_OFFSET, NOTIFY_OFFSET, VirtioPciDevice,
};
use crate::vmm::devices::virtio::{InterruptKind, VirtioInterrupt};
use crate::vmm::layout::{MIB, PCI_CONFIG_DATA_PORT};
use crate::vmm::memory::create_guest_memory;
use msi_routing::tests::RecordingRouter;

const ADDR: u64 = PCI_CONFIG_ADDRESS_PORT as u64;
const DATA: u64 = PCI_CONFIG_DATA_PORT as u64;

fn config_read(pio: &Bus, device: u32, offset: u32) -> u32 {
    let address = 1u32 << 31 | device << 11 | offset;
    assert!(pio.write(ADDR, &address.to_le_bytes()));
    let mut data = [0u8; 4];
    assert!(pio.read(DATA, &mut data));
    u32::from_le_bytes(data)
}

fn config_write(pio: &Bus, device: u32, offset: u32, value: u32) {
    let address = 1u32 << 31 | device << 11 | offset;
    assert!(pio.write(ADDR, &address.to_le_bytes()));
    assert!(pio.write(DATA, &value.to_le_bytes()));
}

fn test_rng() -> Box<dyn VirtioDevice> {
    Box::new(rng::Rng::with_source(Box::new(std::io::repeat(7))))
}

#[test]
fn guest_view_of_bus_zero() {
    let mem = create_guest_memory(16).unwrap();
    let pio = Arc::new(Bus::new());
    let mmio = Arc::new(Bus::new());
    let (tx, _rx) = crossbeam_channel::unbounded();
    let router = Arc::new(RecordingRouter::default());
    let devices = build_bus(vec![test_rng(), test_rng()], &mem, &pio, &mmio, tx, router).unwrap();
    assert_eq!(devices.virtio_count(), 2);
    // Enumerate like a guest: vendor/device of every slot.
    let ids: Vec<u32> = (0..32).map(|d| config_read(&pio, d, 0)).collect();
    assert_eq!(ids[0], 0x0008_1b36);
    assert_eq!(config_read(&pio, 0, 8) >> 8, 0x06_00_00);
    assert_eq!(ids[1], 0x1044_1af4);
    assert_eq!(ids[2], 0x1044_1af4);
    assert!(ids[3..].iter().all(|id| *id == u32::MAX));
    // BARs are distinct, aligned and inside the PCI window.
    let bar1 = u64::from(config_read(&pio, 1, 0x10));
    let bar2 = u64::from(config_read(&pio, 2, 0x10));
    assert_eq!(bar1, PCI_MMIO_START);
    assert_eq!(bar2, PCI_MMIO_START + BAR_SIZE);
    // Nothing decodes until memory space is enabled.
    let mut num_queues = [0u8; 2];
    assert!(!mmio.read(bar2 + COMMON_CFG_OFFSET + 0x12, &mut num_queues));
    config_write(&pio, 2, 0x04, 0x2);
    assert!(mmio.read(bar2 + COMMON_CFG_OFFSET + 0x12, &mut num_queues));
    assert_eq!(u16::from_le_bytes(num_queues), 1);
    // The guest moves the BAR.
    config_write(&pio, 2, 0x10, 0xd000_0000);
    assert!(!mmio.read(bar2 + 0x12, &mut num_queues));
    assert!(mmio.read(0xd000_0012, &mut num_queues));
    // Dropping stops the devices (rng has no thread; status goes to 0).
    drop(devices);
}

#[test]
fn bar_allocator_stays_in_the_window() {
    let mut bars = BarAllocator {
        next: PCI_MMIO_START + 0x10,
    };
    assert_eq!(
        bars.allocate(0x8000),
        Some((PCI_MMIO_START + 0x8000) as u32)
    );
    let mut bars = BarAllocator {
        next: PCI_MMIO_START + PCI_MMIO_SIZE - 0x4000,
    };
    assert_eq!(bars.allocate(0x8000), None);
}

/// Is `vector` pending in the IRR of vCPU `vcpu`'s local APIC?
fn irr_has(vcpu: &kvm_ioctls::VcpuFd, vector: u8) -> bool {
    const APIC_IRR: usize = 0x200;
    let lapic = vcpu.get_lapic().unwrap();
    let reg = APIC_IRR + usize::from(vector / 32) * 0x10;
    let word = u32::from_le_bytes(std::array::from_fn(|i| lapic.regs[reg + i] as u8));
    word & 1 << (vector % 32) != 0
}

/// On real KVM: the devices are created, GSI routing is installed, and an
/// MSI-X vector programmed through the BAR reaches the local APIC while
/// the legacy IOAPIC routes remain usable.
#[test]
fn create_pci_devices_routes_msix_on_kvm() {
    let kvm = Kvm::new().expect("/dev/kvm");
    let vm = Arc::new(kvm.create_vm().unwrap());
    vm.create_irq_chip().unwrap();
    let vcpu = vm.create_vcpu(0).unwrap();
    // Software-enable the local APIC (SVR bit 8) so it accepts interrupts.
    const APIC_SVR: usize = 0xf0;
    let mut lapic = vcpu.get_lapic().unwrap();
    lapic.regs[APIC_SVR + 1] |= 1;
    vcpu.set_lapic(&lapic).unwrap();

    let mem = create_guest_memory(64).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.raw");
    std::fs::write(&disk, vec![0u8; MIB as usize]).unwrap();
    let disks = [DiskConfig {
        path: disk,
        read_only: false,
    }];
    let pio = Arc::new(Bus::new());
    let mmio = Arc::new(Bus::new());
    let (tx, _rx) = crossbeam_channel::unbounded();
    let config = PciConfig {
        disks: &disks,
        nets: &[],
        rng: true,
    };
    let devices = create_pci_devices(&vm, &mem, &pio, &mmio, tx, &config).unwrap();
    assert_eq!(devices.virtio_count(), 2);
    assert_eq!(config_read(&pio, 1, 0), 0x1042_1af4);
    assert_eq!(config_read(&pio, 2, 0), 0x1044_1af4);

    // Guest-side programming of the rng (device 2): decode on, MSI-X on,
    // vector 0 -> APIC 0, vector 0x41, config interrupt on vector 0.
    let bar = u64::from(config_read(&pio, 2, 0x10));
    config_write(&pio, 2, 0x04, 0x6);
    let mut at = config_read(&pio, 2, 0x34) & 0xff;
    while config_read(&pio, 2, at) & 0xff != 0x11 {
        at = config_read(&pio, 2, at) >> 8 & 0xff;
        assert_ne!(at, 0, "no MSI-X capability");
    }
    let control = config_read(&pio, 2, at);
    config_write(&pio, 2, at, control | 1 << 31);
    let entry = bar + MSIX_TABLE_OFFSET;
    assert!(mmio.write(entry, &0xfee0_0000u32.to_le_bytes()));
    assert!(mmio.write(entry + 4, &0u32.to_le_bytes()));
    assert!(mmio.write(entry + 8, &0x41u32.to_le_bytes()));
    assert!(mmio.write(entry + 12, &0u32.to_le_bytes()));
    assert!(mmio.write(bar + COMMON_CFG_OFFSET + 0x10, &0u16.to_le_bytes()));
    let device: &Arc<Mutex<VirtioPciDevice>> = &devices.virtio[1];
    let interrupt = device.lock().unwrap().interrupt();
    assert!(!irr_has(&vcpu, 0x41));
    interrupt.trigger(InterruptKind::Config);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !irr_has(&vcpu, 0x41) {
        assert!(Instant::now() < deadline, "MSI never reached the LAPIC");
        std::thread::sleep(Duration::from_millis(1));
    }
    // Notify writes on an unconfigured device are harmless.
    assert!(mmio.write(bar + NOTIFY_OFFSET, &0u16.to_le_bytes()));

    // The legacy routes survived the table replacement: an irqfd on the
    // COM1 GSI still registers and the IOAPIC pin can be driven.
    let com1 = vmm_sys_util::eventfd::EventFd::new(0).unwrap();
    vm.register_irqfd(&com1, crate::vmm::layout::COM1_IRQ)
        .unwrap();
    vm.set_irq_line(crate::vmm::layout::COM1_IRQ, true).unwrap();
    vm.set_irq_line(crate::vmm::layout::COM1_IRQ, false)
        .unwrap();
    drop(devices);
}
