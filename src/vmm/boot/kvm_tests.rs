//! `setup_boot_vcpu` on the real /dev/kvm: the registers read back, and a
//! few guest instructions run in the mode each entry promises.
//!
//! The guest (identical bytes for every mode):
//!
//! ```text
//! 48 ff c8   64-bit: dec rax          32-bit: dec eax; dec eax
//! e6 f4      out 0xf4, al             -> 0xff in long mode, 0xfe in 32-bit mode
//! 8a 06/03   mov al, [rsi] / [rbx]    the boot structure pointer the entry passes
//! e6 f4      out 0xf4, al             -> the marker byte written there
//! f4         hlt
//! ```

use std::sync::mpsc;
use std::time::Duration;

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};
use vmm_sys_util::signal::{Killable, SIGRTMIN, register_signal_handler};

use super::regs::{CR0_PE, CR0_PG, CR4_PAE, EFER_LMA, EFER_LME};
use super::*;
use crate::vmm::layout::{BOOT_STACK_POINTER, KVM_TSS_ADDRESS, PML4_START};
use crate::vmm::memory::create_guest_memory;

const TEST_PORT: u16 = 0xf4;
const MARKER: u8 = 0x5a;
/// Bound on one guest run; the guest needs microseconds.
const RUN_TIMEOUT: Duration = Duration::from_secs(30);

fn guest_code(pointer_reg_modrm: u8) -> Vec<u8> {
    vec![
        0x48,
        0xff,
        0xc8, // dec rax | dec eax; dec eax
        0xe6,
        0xf4, // out 0xf4, al
        0x8a,
        pointer_reg_modrm, // mov al, [rsi] (0x06) / [rbx] (0x03)
        0xe6,
        0xf4, // out 0xf4, al
        0xf4, // hlt
    ]
}

fn create_vm(mem: &GuestMemoryMmap) -> (Kvm, VmFd) {
    let kvm = Kvm::new().expect("open /dev/kvm");
    let vm = kvm.create_vm().unwrap();
    vm.set_tss_address(KVM_TSS_ADDRESS as usize).unwrap();
    for (slot, region) in mem.iter().enumerate() {
        let r = kvm_userspace_memory_region {
            slot: slot as u32,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: region.as_ptr() as u64,
            flags: 0,
        };
        // SAFETY: the host range is a live mapping owned by `mem`, which every
        // test keeps alive until the VM (and its vCPU thread) is gone.
        unsafe { vm.set_user_memory_region(r) }.unwrap();
    }
    (kvm, vm)
}

extern "C" fn interrupt_kvm_run(
    _num: libc::c_int,
    _info: *mut libc::siginfo_t,
    _unused: *mut libc::c_void,
) {
}

/// Run the vCPU until HLT (or anything else unexpected), at most
/// `RUN_TIMEOUT`; returns the bytes written to `TEST_PORT` and the final exit.
fn run(mut vcpu: VcpuFd) -> (Vec<u8>, String) {
    register_signal_handler(SIGRTMIN(), interrupt_kvm_run).unwrap();
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        let mut outs = Vec::new();
        let end = loop {
            match vcpu.run() {
                Ok(VcpuExit::IoOut(TEST_PORT, data)) if outs.len() < 16 => outs.push(data[0]),
                Ok(VcpuExit::Hlt) => break "hlt".to_string(),
                Ok(other) => break format!("{other:?}"),
                Err(e) => break format!("error: {e}"),
            }
        };
        let _ = tx.send((outs, end));
    });
    match rx.recv_timeout(RUN_TIMEOUT) {
        Ok(result) => {
            thread.join().unwrap();
            result
        }
        Err(_) => {
            thread.kill(SIGRTMIN()).unwrap();
            let _ = rx.recv_timeout(Duration::from_secs(5));
            panic!("guest did not halt within {RUN_TIMEOUT:?}");
        }
    }
}

fn boot(entry: EntryPoint, code_at: u64, pointer: u64, modrm: u8) -> (Vec<u8>, String) {
    let mem = create_guest_memory(16).unwrap();
    mem.write_slice(&guest_code(modrm), GuestAddress(code_at))
        .unwrap();
    mem.write_obj(MARKER, GuestAddress(pointer)).unwrap();
    let (_kvm, vm) = create_vm(&mem);
    let vcpu = vm.create_vcpu(0).unwrap();
    let setup = BootSetup {
        entry,
        initrd: None,
    };
    setup_boot_vcpu(&vcpu, &mem, &setup).unwrap();

    let regs = vcpu.get_regs().unwrap();
    let sregs = vcpu.get_sregs().unwrap();
    assert_eq!(regs.rip, code_at);
    assert_eq!(regs.rflags, 2);
    assert_eq!(regs.rsp, BOOT_STACK_POINTER);
    match entry {
        EntryPoint::Linux64 { .. } => {
            assert_eq!(sregs.cr0 & (CR0_PE | CR0_PG), CR0_PE | CR0_PG);
            assert_ne!(sregs.cr4 & CR4_PAE, 0);
            assert_eq!(sregs.efer & (EFER_LME | EFER_LMA), EFER_LME | EFER_LMA);
            assert_eq!(sregs.cr3, PML4_START);
            assert_eq!((sregs.cs.l, sregs.cs.selector), (1, 0x08));
            assert_eq!(regs.rsi, pointer);
        }
        EntryPoint::Linux32 { .. } => {
            assert_eq!(sregs.cr0 & (CR0_PE | CR0_PG), CR0_PE);
            assert_eq!(sregs.efer & EFER_LMA, 0);
            assert_eq!((sregs.cs.selector, sregs.cs.db), (0x10, 1));
            assert_eq!((sregs.ds.selector, sregs.ss.selector), (0x18, 0x18));
            assert_eq!(regs.rsi, pointer);
            assert_eq!((regs.rbx, regs.rdi, regs.rbp), (0, 0, 0));
        }
        EntryPoint::Pvh { .. } => {
            assert_eq!(sregs.cr0 & (CR0_PE | CR0_PG), CR0_PE);
            assert_eq!(sregs.efer & EFER_LMA, 0);
            assert_eq!(sregs.cs.db, 1);
            assert_eq!(regs.rbx, pointer);
        }
    }
    run(vcpu)
}

#[test]
fn linux64_entry_runs_in_long_mode() {
    let entry = EntryPoint::Linux64 {
        rip: 0x10_0200,
        boot_params: ZERO_PAGE_START,
    };
    let (outs, end) = boot(entry, 0x10_0200, ZERO_PAGE_START, 0x06);
    assert_eq!(outs, vec![0xff, MARKER], "exit: {end}");
    assert_eq!(end, "hlt");
}

#[test]
fn linux32_entry_runs_in_protected_mode() {
    let entry = EntryPoint::Linux32 {
        eip: 0x10_0000,
        boot_params: ZERO_PAGE_START,
    };
    let (outs, end) = boot(entry, 0x10_0000, ZERO_PAGE_START, 0x06);
    assert_eq!(outs, vec![0xfe, MARKER], "exit: {end}");
    assert_eq!(end, "hlt");
}

#[test]
fn pvh_entry_runs_in_protected_mode() {
    let entry = EntryPoint::Pvh {
        eip: 0x20_0000,
        start_info: PVH_INFO_START,
    };
    let (outs, end) = boot(entry, 0x20_0000, PVH_INFO_START, 0x03);
    assert_eq!(outs, vec![0xfe, MARKER], "exit: {end}");
    assert_eq!(end, "hlt");
}
