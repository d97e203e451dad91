//! VMs around tiny hand-assembled real-mode guests, run on /dev/kvm: the
//! vCPU threads, exit handling and the lifecycle controller without a
//! kernel loader or the device model.
//!
//! Every guest run is bounded: `wait_exit` stops the VM and fails the test
//! when the guest does not end in time, and dropping a `VmHandle` stops and
//! joins whatever is left.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use kvm_bindings::{kvm_regs, kvm_segment, kvm_sregs};
use kvm_ioctls::Kvm;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use super::builder;
use super::control::{Command, ExitReason, Response, VmState, VmStatus};
use super::devices::{Bus, BusDevice, VmEvent};
use super::layout::DEBUG_EXIT_PORT;
use super::memory::{self, GuestMemoryMmap};
use super::vm::{Devices, Error, Vm, VmHandle};

/// Where guest code is placed and where real-mode execution starts.
const CODE_ADDR: u64 = 0x1000;
/// A 32-bit counter some guests increment.
const COUNTER_ADDR: u64 = 0x2000;
/// Real-mode stack top.
const STACK_TOP: u64 = 0x8000;
/// RFLAGS bit 1 is reserved and always set.
const RFLAGS_RESERVED: u64 = 0x2;
/// Upper bound for anything a test waits for; generous for this slow host.
const TIMEOUT: Duration = Duration::from_secs(60);

/// `mov al, 0x2a; out 0xf4, al; jmp $`
const DEBUG_EXIT_GUEST: &[u8] = &[0xb0, 0x2a, 0xe6, 0xf4, 0xeb, 0xfe];
/// `l: inc dword [0x2000]; jmp l`
const COUNTER_GUEST: &[u8] = &[0x66, 0xff, 0x06, 0x00, 0x20, 0xeb, 0xf9];
/// `jmp $`
const SPIN_GUEST: &[u8] = &[0xeb, 0xfe];
/// `ud2` (with an empty IDT the #UD cannot be delivered: triple fault).
const UD2_GUEST: &[u8] = &[0x0f, 0x0b];
/// `nop; nop; xgetbv` -- not emulated by this host's kvm-pvm.
const XGETBV: &[u8] = &[0x0f, 0x01, 0xd0];

/// `in al, 0x80; out 0xf4, al; jmp $` -- port 0x80 has no device.
const UNMAPPED_PORT_GUEST: &[u8] = &[0xe4, 0x80, 0xe6, 0xf4, 0xeb, 0xfe];
/// An MMIO address with a device in the MMIO-read test, and one without.
const MMIO_DEVICE_ADDR: u64 = 0xd000_0000;
const MMIO_UNMAPPED_ADDR: u64 = 0xd000_1000;
/// What the test MMIO device returns.
const MMIO_PATTERN: u32 = 0x1234_5678;
/// 32-bit code: `mov [0xd0001000], eax` (ignored), `mov eax, [0xd0000000]`,
/// `xor eax, [0xd0001000]`, `out 0xf4, eax`, `jmp $`.
const MMIO_GUEST: &[u8] = &[
    0xa3, 0x00, 0x10, 0x00, 0xd0, // mov [0xd0001000], eax
    0xa1, 0x00, 0x00, 0x00, 0xd0, // mov eax, [0xd0000000]
    0x33, 0x05, 0x00, 0x10, 0x00, 0xd0, // xor eax, [0xd0001000]
    0xe7, 0xf4, // out 0xf4, eax
    0xeb, 0xfe, // jmp $
];

/// An MMIO register that reads as `MMIO_PATTERN`.
struct PatternRegister;

impl BusDevice for PatternRegister {
    fn read(&mut self, _base: u64, _offset: u64, data: &mut [u8]) {
        let bytes = MMIO_PATTERN.to_le_bytes();
        data.copy_from_slice(&bytes[..data.len()]);
    }
    fn write(&mut self, _base: u64, _offset: u64, _data: &[u8]) {}
}

/// `out 0x80, al; jmp $`
const POST_PORT_GUEST: &[u8] = &[0xe6, 0x80, 0xeb, 0xfe];
/// The POST diagnostic port, where a test puts a faulty device.
const POST_PORT: u64 = 0x80;

/// Where the AP starts after SIPI vector `AP_SIPI_VECTOR` (vector << 12).
const AP_SIPI_VECTOR: u8 = 0x03;
const AP_CODE_ADDR: u64 = (AP_SIPI_VECTOR as u64) << 12;
/// 32-bit BSP code that starts vCPU 1 through the in-kernel LAPIC's ICR
/// (Intel SDM vol. 3 §11.6.1, MP spec B.4): ICR high = destination APIC ID
/// 1; ICR low = INIT (delivery mode 101b, level assert), then STARTUP
/// (110b) with the vector; then spin.
const START_AP_GUEST: &[u8] = &[
    0xc7,
    0x05,
    0x10,
    0x03,
    0xe0,
    0xfe,
    0x00,
    0x00,
    0x00,
    0x01, // mov [0xfee00310], 1 << 24
    0xc7,
    0x05,
    0x00,
    0x03,
    0xe0,
    0xfe,
    0x00,
    0x45,
    0x00,
    0x00, // mov [0xfee00300], 0x4500
    0xc7,
    0x05,
    0x00,
    0x03,
    0xe0,
    0xfe,
    AP_SIPI_VECTOR,
    0x46,
    0x00,
    0x00, // 0x4600 | vector
    0xeb,
    0xfe, // jmp $
];
/// Real-mode AP code: `mov al, 0x55; out 0xf4, al; jmp $`.
const AP_GUEST: &[u8] = &[0xb0, 0x55, 0xe6, 0xf4, 0xeb, 0xfe];

/// A device with a bug.
struct PanickingDevice;

impl BusDevice for PanickingDevice {
    fn read(&mut self, _base: u64, _offset: u64, _data: &mut [u8]) {}
    fn write(&mut self, _base: u64, _offset: u64, _data: &[u8]) {
        panic!("device bug (expected by the test)");
    }
}

/// Stands in for the debug-exit device: a write of `v` ends the VM with
/// `VmEvent::DebugExit(v)`.
struct ExitPort(Sender<VmEvent>);

impl BusDevice for ExitPort {
    fn read(&mut self, _base: u64, _offset: u64, _data: &mut [u8]) {}
    fn write(&mut self, _base: u64, _offset: u64, data: &[u8]) {
        let mut value = [0u8; 4];
        let n = data.len().min(4);
        value[..n].copy_from_slice(&data[..n]);
        let _ = self.0.send(VmEvent::DebugExit(u32::from_le_bytes(value)));
    }
}

/// How vCPU 0 enters the guest, beyond real mode at `CODE_ADDR`.
#[derive(Default)]
struct Entry {
    /// 32-bit protected mode (flat segments, no paging) with an empty
    /// IDT: any exception triple-faults.
    protected_no_idt: bool,
    /// CR4.OSXSAVE, so `xgetbv` is a legal instruction.
    osxsave: bool,
}

/// Flat 4 GiB code/data segments, CR0.PE, and an IDT with no entries.
fn enter_flat_protected_mode(sregs: &mut kvm_sregs) {
    const CR0_PE: u64 = 1;
    let segment = |selector: u16, type_: u8| kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_,
        present: 1,
        dpl: 0,
        db: 1,
        s: 1,
        l: 0,
        g: 1,
        ..Default::default()
    };
    // Types (Intel SDM vol. 3 §3.4.5.1): 0xb = code execute/read accessed,
    // 0x3 = data read/write accessed.
    sregs.cs = segment(0x08, 0xb);
    let data = segment(0x10, 0x3);
    (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss) = (data, data, data, data, data);
    sregs.cr0 |= CR0_PE;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
}

/// A VM with `vcpus` vCPUs whose boot vCPU runs `code` in real mode.
fn raw_vm(code: &[u8], vcpus: u8, entry: Entry) -> Vm {
    let mem = memory::create_guest_memory(memory::MIN_MEMORY_MIB).unwrap();
    mem.write_slice(code, GuestAddress(CODE_ADDR)).unwrap();
    let kvm = Kvm::new().unwrap();
    let vm_fd = builder::create_vm(&kvm, &mem).unwrap();
    let vcpu_fds = builder::create_vcpus(&kvm, &vm_fd, vcpus).unwrap();

    let boot = &vcpu_fds[0];
    let mut sregs = boot.get_sregs().unwrap();
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    if entry.protected_no_idt {
        enter_flat_protected_mode(&mut sregs);
    }
    if entry.osxsave {
        const CR4_OSXSAVE: u64 = 1 << 18;
        sregs.cr4 |= CR4_OSXSAVE;
    }
    boot.set_sregs(&sregs).unwrap();
    boot.set_regs(&kvm_regs {
        rip: CODE_ADDR,
        rsp: STACK_TOP,
        rflags: RFLAGS_RESERVED,
        ..Default::default()
    })
    .unwrap();

    let (events_tx, events_rx) = crossbeam_channel::unbounded();
    let pio_bus = Arc::new(Bus::new());
    pio_bus
        .insert(
            Arc::new(Mutex::new(ExitPort(events_tx))),
            u64::from(DEBUG_EXIT_PORT),
            1,
        )
        .unwrap();
    Vm {
        name: "test".into(),
        memory_mib: memory::MIN_MEMORY_MIB,
        vm_fd,
        mem,
        pio_bus,
        mmio_bus: Arc::new(Bus::new()),
        vcpus: vcpu_fds,
        events: events_rx,
        devices: Devices::default(),
    }
}

/// Start `vm`, keeping a view of its memory.
fn start(vm: Vm) -> (VmHandle, GuestMemoryMmap) {
    let mem = vm.memory().clone();
    (vm.start().unwrap(), mem)
}

/// The VM's exit reason; stops the VM and fails if it takes too long.
fn wait_exit(handle: &VmHandle) -> ExitReason {
    match handle.exited().recv_timeout(TIMEOUT) {
        Ok(reason) => reason,
        Err(_) => {
            let _ = handle.request(Command::Stop);
            panic!("the guest did not end within {TIMEOUT:?}");
        }
    }
}

/// Holders of the guest memory mapping besides the test's own `mem`: 0
/// once every vCPU thread and the controller have let go of it.
fn other_memory_users(mem: &GuestMemoryMmap) -> usize {
    let region = mem.iter().next().unwrap().get_mmap();
    // Minus the test's `mem` and the `region` Arc just taken.
    Arc::strong_count(&region) - 2
}

fn counter(mem: &GuestMemoryMmap) -> u32 {
    mem.read_obj(GuestAddress(COUNTER_ADDR)).unwrap()
}

/// Poll until `cond` holds; fails the test after `TIMEOUT`.
fn wait_until(handle: &VmHandle, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !cond() {
        if Instant::now() > deadline {
            let _ = handle.request(Command::Stop);
            panic!("timed out waiting until {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn status(handle: &VmHandle) -> VmStatus {
    match handle.request(Command::Status) {
        Ok(Response::Status(status)) => status,
        other => panic!("Status answered {other:?}"),
    }
}

fn assert_illegal(result: Result<Response, Error>, command: Command, state: VmState) {
    match result {
        Err(Error::IllegalTransition {
            command: c,
            state: s,
        }) => assert_eq!((c, s), (command, state)),
        other => panic!("expected {command:?} in {state:?} to be refused, got {other:?}"),
    }
}

#[test]
fn debug_exit_port_ends_the_vm_with_the_value() {
    let (handle, mem) = start(raw_vm(DEBUG_EXIT_GUEST, 1, Entry::default()));
    assert_eq!(wait_exit(&handle), ExitReason::DebugExit { code: 0x2a });
    let status = status(&handle);
    assert_eq!(status.state, VmState::Stopped);
    assert_eq!(
        status.exit_reason,
        Some(ExitReason::DebugExit { code: 0x2a })
    );
    assert_eq!(handle.wait(), ExitReason::DebugExit { code: 0x2a });
    assert_eq!(other_memory_users(&mem), 0);
}

#[test]
fn unmapped_port_reads_as_all_ones() {
    let (handle, _mem) = start(raw_vm(UNMAPPED_PORT_GUEST, 1, Entry::default()));
    assert_eq!(wait_exit(&handle), ExitReason::DebugExit { code: 0xff });
}

#[test]
fn mmio_goes_to_the_bus_and_unmapped_mmio_reads_as_all_ones() {
    let entry = Entry {
        protected_no_idt: true,
        ..Default::default()
    };
    let vm = raw_vm(MMIO_GUEST, 1, entry);
    vm.mmio_bus
        .insert(Arc::new(Mutex::new(PatternRegister)), MMIO_DEVICE_ADDR, 4)
        .unwrap();
    const { assert!(MMIO_UNMAPPED_ADDR >= MMIO_DEVICE_ADDR + 4) };
    let (handle, _mem) = start(vm);
    assert_eq!(
        wait_exit(&handle),
        ExitReason::DebugExit {
            code: MMIO_PATTERN ^ 0xffff_ffff
        }
    );
}

#[test]
fn a_panicking_device_ends_the_vm_with_a_vmm_error() {
    let vm = raw_vm(POST_PORT_GUEST, 2, Entry::default());
    vm.pio_bus
        .insert(Arc::new(Mutex::new(PanickingDevice)), POST_PORT, 1)
        .unwrap();
    let (handle, mem) = start(vm);
    match wait_exit(&handle) {
        ExitReason::VmmError { message } => assert!(message.contains("vCPU 0"), "{message}"),
        other => panic!("expected a VMM error, got {other:?}"),
    }
    drop(handle);
    assert_eq!(other_memory_users(&mem), 0);
}

#[test]
fn the_guest_starts_an_application_processor_with_init_sipi() {
    let entry = Entry {
        protected_no_idt: true,
        ..Default::default()
    };
    let vm = raw_vm(START_AP_GUEST, 2, entry);
    vm.memory()
        .write_slice(AP_GUEST, GuestAddress(AP_CODE_ADDR))
        .unwrap();
    let (handle, _mem) = start(vm);
    assert_eq!(wait_exit(&handle), ExitReason::DebugExit { code: 0x55 });
}

#[test]
fn pause_stops_the_guest_and_resume_restarts_it() {
    let (handle, mem) = start(raw_vm(COUNTER_GUEST, 1, Entry::default()));
    wait_until(&handle, "the guest counts", || counter(&mem) > 0);

    assert_eq!(handle.request(Command::Pause).unwrap(), Response::Ok);
    assert_eq!(status(&handle).state, VmState::Paused);
    let before = counter(&mem);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(counter(&mem), before, "a paused guest must not run");

    assert_eq!(handle.request(Command::Resume).unwrap(), Response::Ok);
    assert_eq!(status(&handle).state, VmState::Running);
    wait_until(&handle, "the guest counts again", || {
        counter(&mem) != before
    });

    assert_eq!(handle.request(Command::Stop).unwrap(), Response::Ok);
    // Stop answers once everything is joined and released.
    assert_eq!(other_memory_users(&mem), 0);
    let stopped_at = counter(&mem);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(counter(&mem), stopped_at);
    assert_eq!(wait_exit(&handle), ExitReason::Stopped);
    assert_eq!(handle.wait(), ExitReason::Stopped);
}

#[test]
fn stop_ends_a_spinning_guest() {
    let (handle, mem) = start(raw_vm(SPIN_GUEST, 1, Entry::default()));
    assert_eq!(handle.request(Command::Stop).unwrap(), Response::Ok);
    assert_eq!(wait_exit(&handle), ExitReason::Stopped);
    assert_eq!(other_memory_users(&mem), 0);
}

#[test]
fn stop_ends_a_paused_vm() {
    let (handle, mem) = start(raw_vm(SPIN_GUEST, 2, Entry::default()));
    assert_eq!(handle.request(Command::Pause).unwrap(), Response::Ok);
    assert_eq!(handle.request(Command::Stop).unwrap(), Response::Ok);
    assert_eq!(other_memory_users(&mem), 0);
    assert_eq!(handle.wait(), ExitReason::Stopped);
}

#[test]
fn dropping_the_handle_stops_and_joins() {
    let (handle, mem) = start(raw_vm(SPIN_GUEST, 2, Entry::default()));
    assert_eq!(status(&handle).state, VmState::Running);
    drop(handle);
    assert_eq!(other_memory_users(&mem), 0);
}

#[test]
fn exception_without_idt_is_a_triple_fault() {
    let entry = Entry {
        protected_no_idt: true,
        ..Default::default()
    };
    let (handle, mem) = start(raw_vm(UD2_GUEST, 1, entry));
    assert_eq!(wait_exit(&handle), ExitReason::TripleFault { vcpu: 0 });
    assert_eq!(handle.wait(), ExitReason::TripleFault { vcpu: 0 });
    assert_eq!(other_memory_users(&mem), 0);
}

#[test]
fn a_triple_fault_on_one_vcpu_ends_every_vcpu() {
    let entry = Entry {
        protected_no_idt: true,
        ..Default::default()
    };
    // vCPU 1 waits for INIT/SIPI inside KVM_RUN and must be kicked out.
    let (handle, mem) = start(raw_vm(UD2_GUEST, 2, entry));
    assert_eq!(wait_exit(&handle), ExitReason::TripleFault { vcpu: 0 });
    drop(handle);
    assert_eq!(other_memory_users(&mem), 0);
}

#[test]
fn unemulated_instruction_is_a_guest_error_with_rip_and_bytes() {
    let code = [&[0x90, 0x90][..], XGETBV].concat();
    let entry = Entry {
        osxsave: true,
        ..Default::default()
    };
    let (handle, _mem) = start(raw_vm(&code, 1, entry));
    match wait_exit(&handle) {
        ExitReason::GuestError {
            vcpu,
            exit,
            rip,
            insn,
        } => {
            assert_eq!(vcpu, 0);
            assert!(exit.contains("KVM_EXIT_INTERNAL_ERROR"), "exit = {exit}");
            assert_eq!(rip, CODE_ADDR + 2);
            assert!(insn.starts_with(XGETBV), "insn = {insn:02x?}");
        }
        other => panic!("expected a guest error, got {other:?}"),
    }
}

#[test]
fn illegal_transitions_are_refused() {
    let (handle, _mem) = start(raw_vm(SPIN_GUEST, 2, Entry::default()));
    let running = status(&handle);
    assert_eq!((running.state, running.vcpus), (VmState::Running, 2));
    assert_eq!(running.exit_reason, None);

    assert_illegal(
        handle.request(Command::Resume),
        Command::Resume,
        VmState::Running,
    );
    assert_eq!(handle.request(Command::Pause).unwrap(), Response::Ok);
    assert_illegal(
        handle.request(Command::Pause),
        Command::Pause,
        VmState::Paused,
    );
    assert_illegal(
        handle.request(Command::PowerButton),
        Command::PowerButton,
        VmState::Paused,
    );
    assert_eq!(handle.request(Command::Resume).unwrap(), Response::Ok);
    // A VM without an ACPI PM device cannot press its power button.
    assert!(matches!(
        handle.request(Command::PowerButton),
        Err(Error::NoDevice(_))
    ));
    assert_eq!(handle.request(Command::Stop).unwrap(), Response::Ok);

    assert_illegal(
        handle.request(Command::Pause),
        Command::Pause,
        VmState::Stopped,
    );
    assert_illegal(
        handle.request(Command::Stop),
        Command::Stop,
        VmState::Stopped,
    );
    let stopped = status(&handle);
    assert_eq!(stopped.state, VmState::Stopped);
    assert_eq!(stopped.exit_reason, Some(ExitReason::Stopped));
    assert_eq!(handle.wait(), ExitReason::Stopped);
}

#[test]
fn requests_from_many_threads_are_serialised() {
    let (handle, mem) = start(raw_vm(COUNTER_GUEST, 2, Entry::default()));
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..5 {
                    for command in [Command::Pause, Command::Status, Command::Resume] {
                        match handle.request(command) {
                            Ok(_) | Err(Error::IllegalTransition { .. }) => {}
                            Err(e) => panic!("unexpected error {e:?}"),
                        }
                    }
                }
            });
        }
    });
    // Whatever the interleaving, the VM is in a consistent state.
    let state = status(&handle).state;
    assert!(matches!(state, VmState::Running | VmState::Paused));
    if state == VmState::Paused {
        handle.request(Command::Resume).unwrap();
    }
    let before = counter(&mem);
    wait_until(&handle, "the guest runs after the storm", || {
        counter(&mem) != before
    });
    assert_eq!(handle.request(Command::Stop).unwrap(), Response::Ok);
    assert_eq!(other_memory_users(&mem), 0);
}

#[test]
fn console_input_after_stop_is_harmless() {
    let (handle, _mem) = start(raw_vm(SPIN_GUEST, 1, Entry::default()));
    let console = handle.console_input();
    console.send(b"before");
    handle.request(Command::Stop).unwrap();
    drop(handle);
    console.send(b"after"); // must neither block nor panic
}
