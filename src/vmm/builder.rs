//! Building a VM: one linear function from a [`VmConfig`] to a [`Vm`] whose
//! vCPUs have not run yet.
//!
//! Everything that can fail (bad config, KVM, devices, ACPI, kernel loading)
//! fails here, before any vCPU thread exists, so a VM is never half-started.
//! The KVM steps are separate functions so tests can assemble a VM around a
//! hand-written guest without the kernel loader and the device model.

use std::io::Write;
use std::sync::{Arc, Mutex};

use crossbeam_channel::Sender;
use kvm_bindings::{
    CpuId, KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY, kvm_pit_config,
    kvm_userspace_memory_region,
};
use kvm_ioctls::{Cap, Kvm, VcpuFd, VmFd};
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use super::acpi::{self, AcpiConfig};
use super::boot::{self, KernelSpec};
use super::config::VmConfig;
use super::cpu::{self, CpuTopology};
use super::devices::legacy::{AcpiPm, DebugExit, I8042, Rtc, Serial};
use super::devices::pci::{self, PciConfig};
use super::devices::{Bus, BusError, VmEvent};
use super::layout::{
    ACPI_PM_TMR_LEN, ACPI_PM_TMR_PORT, ACPI_PM1_CNT_LEN, ACPI_PM1_EVT_LEN, ACPI_PM1A_CNT_PORT,
    ACPI_PM1A_EVT_PORT, ACPI_SCI_IRQ, COM1_IRQ, COM1_PORT, COM2_IRQ, COM2_PORT, DEBUG_EXIT_PORT,
    I8042_COMMAND_PORT, I8042_DATA_PORT, I8042_KBD_IRQ, KVM_IDENTITY_MAP_ADDRESS, KVM_TSS_ADDRESS,
    MAX_VCPUS, RTC_INDEX_PORT, UART_PORT_SIZE,
};
use super::memory::{self, GuestMemoryMmap};
use super::vm::{Devices, Vm};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("vcpus = {0} is outside 1..={MAX_VCPUS}")]
    InvalidVcpus(u8),
    #[error("no kernel image given")]
    NoKernel,
    #[error("cannot create guest memory")]
    Memory(#[source] memory::Error),
    #[error("KVM: {0} failed")]
    Kvm(&'static str, #[source] kvm_ioctls::Error),
    #[error("cannot create the eventfd for IRQ {0}")]
    EventFd(u32, #[source] std::io::Error),
    #[error("cannot place {0} on the port I/O bus")]
    Bus(&'static str, #[source] BusError),
    #[error("cannot write the ACPI tables")]
    Acpi(#[source] acpi::Error),
    #[error("cannot create the PCI devices")]
    Pci(#[source] pci::Error),
    #[error("cannot load the kernel")]
    Boot(#[source] boot::Error),
    #[error("cannot configure vCPU {0}")]
    Cpu(u8, #[source] cpu::Error),
}

/// Build the VM `config` describes; COM1 output goes to `console`.
pub fn build(config: VmConfig, console: Box<dyn Write + Send>) -> Result<Vm, Error> {
    if !(1..=MAX_VCPUS).contains(&config.vcpus) {
        return Err(Error::InvalidVcpus(config.vcpus));
    }
    if config.kernel.as_os_str().is_empty() {
        return Err(Error::NoKernel);
    }
    let mem = memory::create_guest_memory(config.memory_mib).map_err(Error::Memory)?;

    let kvm = Kvm::new().map_err(|e| Error::Kvm("opening /dev/kvm", e))?;
    let vm_fd = create_vm(&kvm, &mem)?;
    let pio_bus = Arc::new(Bus::new());
    let mmio_bus = Arc::new(Bus::new());
    let (events_tx, events_rx) = crossbeam_channel::unbounded();

    let mut devices = attach_legacy_devices(&vm_fd, &pio_bus, &events_tx, console, config.com2)?;
    acpi::create_acpi_tables(
        &mem,
        &AcpiConfig {
            num_cpus: config.vcpus,
            com2: config.com2,
        },
    )
    .map_err(Error::Acpi)?;
    let pci_config = PciConfig {
        disks: &config.disks,
        nets: &config.nets,
        rng: config.rng,
    };
    let pci = pci::create_pci_devices(&vm_fd, &mem, &pio_bus, &mmio_bus, events_tx, &pci_config)
        .map_err(Error::Pci)?;
    devices.pci = Some(pci);

    let kernel = KernelSpec {
        kernel: &config.kernel,
        initrd: config.initrd.as_deref(),
        cmdline: &config.cmdline,
        protocol: config.boot_protocol,
        memory_mib: config.memory_mib,
    };
    let boot_setup = boot::load(&mem, &kernel).map_err(Error::Boot)?;

    let vcpus = create_vcpus(&kvm, &vm_fd, config.vcpus)?;
    // Only the boot vCPU gets an entry state; the others wait in the
    // in-kernel LAPIC for the guest's INIT/SIPI.
    boot::setup_boot_vcpu(&vcpus[0], &mem, &boot_setup).map_err(Error::Boot)?;

    Ok(Vm {
        name: config.name,
        memory_mib: config.memory_mib,
        vm_fd,
        mem,
        pio_bus,
        mmio_bus,
        vcpus,
        events: events_rx,
        devices,
    })
}

/// Create the KVM VM around `mem`: memory slots, the TSS and identity-map
/// pages, the in-kernel irqchip (PIC + IOAPIC + LAPICs) and the PIT.
pub fn create_vm(kvm: &Kvm, mem: &GuestMemoryMmap) -> Result<Arc<VmFd>, Error> {
    let vm_fd = kvm
        .create_vm()
        .map_err(|e| Error::Kvm("KVM_CREATE_VM", e))?;
    for (slot, region) in mem.iter().enumerate() {
        let slot_region = kvm_userspace_memory_region {
            slot: slot as u32,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: region.as_ptr() as u64,
            flags: 0,
        };
        // SAFETY: the host range is a live mapping owned by `mem`, and every
        // holder of the VM (vCPU threads, devices, the controller) also holds
        // a clone of `mem`, so the mapping outlives the VM's use of it.
        unsafe { vm_fd.set_user_memory_region(slot_region) }
            .map_err(|e| Error::Kvm("KVM_SET_USER_MEMORY_REGION", e))?;
    }
    vm_fd
        .set_tss_address(KVM_TSS_ADDRESS as usize)
        .map_err(|e| Error::Kvm("KVM_SET_TSS_ADDR", e))?;
    vm_fd
        .set_identity_map_address(KVM_IDENTITY_MAP_ADDRESS)
        .map_err(|e| Error::Kvm("KVM_SET_IDENTITY_MAP_ADDR", e))?;
    vm_fd
        .create_irq_chip()
        .map_err(|e| Error::Kvm("KVM_CREATE_IRQCHIP", e))?;
    // The PC speaker port (0x61) is left to us; nothing is mapped there.
    let pit = kvm_pit_config {
        flags: KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    };
    vm_fd
        .create_pit2(pit)
        .map_err(|e| Error::Kvm("KVM_CREATE_PIT2", e))?;
    Ok(Arc::new(vm_fd))
}

/// Create `count` vCPUs with APIC IDs 0..count and configure each (CPUID,
/// MSRs, FPU, LAPIC). Registers stay at reset values.
pub fn create_vcpus(kvm: &Kvm, vm_fd: &VmFd, count: u8) -> Result<Vec<VcpuFd>, Error> {
    let supported: CpuId = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(|e| Error::Kvm("KVM_GET_SUPPORTED_CPUID", e))?;
    let tsc_deadline = kvm.check_extension(Cap::TscDeadlineTimer);
    (0..count)
        .map(|id| {
            let vcpu = vm_fd
                .create_vcpu(u64::from(id))
                .map_err(|e| Error::Kvm("KVM_CREATE_VCPU", e))?;
            let topo = CpuTopology {
                apic_id: id,
                num_cpus: count,
                tsc_deadline,
            };
            cpu::configure_vcpu(&vcpu, &supported, &topo).map_err(|e| Error::Cpu(id, e))?;
            Ok(vcpu)
        })
        .collect()
}

/// An EventFd wired to `gsi` of the in-kernel IOAPIC/PIC.
fn irqfd(vm_fd: &VmFd, gsi: u32) -> Result<EventFd, Error> {
    let fd = EventFd::new(EFD_NONBLOCK).map_err(|e| Error::EventFd(gsi, e))?;
    vm_fd
        .register_irqfd(&fd, gsi)
        .map_err(|e| Error::Kvm("KVM_IRQFD", e))?;
    Ok(fd)
}

/// The PC's legacy devices on the port bus: COM1 (and COM2), the i8042,
/// the RTC, the ACPI PM blocks and the debug-exit port.
fn attach_legacy_devices(
    vm_fd: &VmFd,
    pio_bus: &Bus,
    events: &Sender<VmEvent>,
    console: Box<dyn Write + Send>,
    com2: bool,
) -> Result<Devices, Error> {
    let insert = |name, device, base: u16, len: u16| {
        pio_bus
            .insert(device, u64::from(base), u64::from(len))
            .map_err(|e| Error::Bus(name, e))
    };

    let serial = Arc::new(Mutex::new(Serial::new(irqfd(vm_fd, COM1_IRQ)?, console)));
    insert("COM1", serial.clone(), COM1_PORT, UART_PORT_SIZE)?;
    if com2 {
        let com2 = Serial::new(irqfd(vm_fd, COM2_IRQ)?, Box::new(std::io::sink()));
        insert(
            "COM2",
            Arc::new(Mutex::new(com2)),
            COM2_PORT,
            UART_PORT_SIZE,
        )?;
    }

    let i8042 = Arc::new(Mutex::new(I8042::new(
        events.clone(),
        irqfd(vm_fd, I8042_KBD_IRQ)?,
    )));
    insert("i8042", i8042.clone(), I8042_DATA_PORT, 1)?;
    insert("i8042", i8042.clone(), I8042_COMMAND_PORT, 1)?;

    insert("RTC", Arc::new(Mutex::new(Rtc::new())), RTC_INDEX_PORT, 2)?;

    let acpi_pm = Arc::new(Mutex::new(AcpiPm::new(
        events.clone(),
        irqfd(vm_fd, ACPI_SCI_IRQ)?,
    )));
    for (base, len) in [
        (ACPI_PM1A_EVT_PORT, ACPI_PM1_EVT_LEN),
        (ACPI_PM1A_CNT_PORT, ACPI_PM1_CNT_LEN),
        (ACPI_PM_TMR_PORT, ACPI_PM_TMR_LEN),
    ] {
        insert("ACPI PM", acpi_pm.clone(), base, u16::from(len))?;
    }

    let debug_exit = Arc::new(Mutex::new(DebugExit::new(events.clone())));
    insert("debug exit", debug_exit, DEBUG_EXIT_PORT, 1)?;

    Ok(Devices {
        serial: Some(serial),
        i8042: Some(i8042),
        acpi_pm: Some(acpi_pm),
        pci: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn config() -> VmConfig {
        VmConfig::new("t", PathBuf::from("/nonexistent/kernel"), 16)
    }

    #[test]
    fn config_errors_come_before_kvm() {
        let mut c = config();
        c.vcpus = 0;
        assert!(matches!(
            build(c, Box::new(std::io::sink())),
            Err(Error::InvalidVcpus(0))
        ));
        let mut c = config();
        c.kernel = PathBuf::new();
        assert!(matches!(
            build(c, Box::new(std::io::sink())),
            Err(Error::NoKernel)
        ));
        let mut c = config();
        c.memory_mib = 1;
        assert!(matches!(
            build(c, Box::new(std::io::sink())),
            Err(Error::Memory(_))
        ));
    }

    #[test]
    fn legacy_devices_occupy_their_ports() {
        let kvm = Kvm::new().unwrap();
        let mem = memory::create_guest_memory(16).unwrap();
        let vm_fd = create_vm(&kvm, &mem).unwrap();
        let bus = Bus::new();
        let (tx, _rx) = crossbeam_channel::unbounded();
        let devices =
            attach_legacy_devices(&vm_fd, &bus, &tx, Box::new(std::io::sink()), true).unwrap();
        assert!(devices.serial.is_some() && devices.i8042.is_some());
        let dummy = Arc::new(Mutex::new(Rtc::new()));
        for port in [
            COM1_PORT,
            COM1_PORT + 7,
            COM2_PORT,
            I8042_DATA_PORT,
            I8042_COMMAND_PORT,
            RTC_INDEX_PORT + 1,
            ACPI_PM1A_EVT_PORT + 3,
            ACPI_PM1A_CNT_PORT + 1,
            ACPI_PM_TMR_PORT + 3,
            DEBUG_EXIT_PORT,
        ] {
            assert!(
                matches!(
                    bus.insert(dummy.clone(), u64::from(port), 1),
                    Err(BusError::Overlap { .. })
                ),
                "port {port:#x} should be taken"
            );
        }
        // The PC speaker/NMI status port between the i8042 ports stays free.
        assert!(bus.insert(dummy, 0x61, 1).is_ok());
    }

    #[test]
    fn a_missing_kernel_fails_the_build() {
        // Whichever step notices first (the kernel loader, or a device
        // still being written), the build must fail without a VM.
        assert!(build(config(), Box::new(std::io::sink())).is_err());
    }

    fn lvt_delivery_mode(regs: &[std::os::raw::c_char; 1024], offset: usize) -> u32 {
        let bytes: [u8; 4] = std::array::from_fn(|i| regs[offset + i] as u8);
        (u32::from_le_bytes(bytes) >> 8) & 0x7
    }

    #[test]
    fn every_vcpu_gets_lapic_msrs_fpu_and_cpuid() {
        let kvm = Kvm::new().unwrap();
        let mem = memory::create_guest_memory(16).unwrap();
        let vm_fd = create_vm(&kvm, &mem).unwrap();
        let vcpus = create_vcpus(&kvm, &vm_fd, 2).unwrap();
        for (id, vcpu) in vcpus.iter().enumerate() {
            let lapic = vcpu.get_lapic().unwrap();
            assert_eq!(lvt_delivery_mode(&lapic.regs, 0x350), 0b111, "LINT0 ExtINT");
            assert_eq!(lvt_delivery_mode(&lapic.regs, 0x360), 0b100, "LINT1 NMI");

            const MISC_ENABLE: u32 = 0x1a0;
            const MTRR_DEF_TYPE: u32 = 0x2ff;
            let mut msrs = kvm_bindings::Msrs::from_entries(&[
                kvm_bindings::kvm_msr_entry {
                    index: MISC_ENABLE,
                    ..Default::default()
                },
                kvm_bindings::kvm_msr_entry {
                    index: MTRR_DEF_TYPE,
                    ..Default::default()
                },
            ])
            .unwrap();
            assert_eq!(vcpu.get_msrs(&mut msrs).unwrap(), 2);
            assert_eq!(msrs.as_slice()[0].data & 1, 1, "fast strings");
            assert_eq!(msrs.as_slice()[1].data, (1 << 11) | 6, "MTRRs on, WB");

            let fpu = vcpu.get_fpu().unwrap();
            // (kvm-pvm does not report MXCSR back through KVM_GET_FPU, so
            // only the x87 control word can be checked here.)
            assert_eq!(fpu.fcw, 0x37f);

            let cpuid = vcpu.get_cpuid2(KVM_MAX_CPUID_ENTRIES).unwrap();
            let leaf1 = cpuid
                .as_slice()
                .iter()
                .find(|e| e.function == 1)
                .expect("leaf 1");
            assert_eq!(leaf1.ebx >> 24, id as u32, "APIC ID of vCPU {id}");
            assert_ne!(leaf1.ecx & (1 << 31), 0, "hypervisor bit");
        }
    }
}
