//! Per-vCPU architectural setup: CPUID, boot MSRs, FPU and local APIC.
//!
//! Every vCPU gets the same treatment; only the boot vCPU additionally gets
//! registers from `boot::setup_boot_vcpu`. Application processors wait in
//! KVM's in-kernel LAPIC for INIT/SIPI from the guest.

use kvm_bindings::{CpuId, Msrs, kvm_cpuid_entry2, kvm_fpu, kvm_msr_entry};
use kvm_ioctls::VcpuFd;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot add CPUID leaf {0:#x}")]
    CpuidFull(u32, #[source] vmm_sys_util::fam::Error),
    #[error("KVM_SET_CPUID2 failed")]
    SetCpuid(#[source] kvm_ioctls::Error),
    #[error("cannot build the MSR list")]
    MsrList(#[source] vmm_sys_util::fam::Error),
    #[error("KVM_SET_MSRS failed")]
    SetMsrs(#[source] kvm_ioctls::Error),
    #[error("KVM_SET_MSRS refused MSR {0:#x}")]
    MsrRefused(u32),
    #[error("KVM_SET_FPU failed")]
    SetFpu(#[source] kvm_ioctls::Error),
    #[error("KVM_GET_LAPIC failed")]
    GetLapic(#[source] kvm_ioctls::Error),
    #[error("KVM_SET_LAPIC failed")]
    SetLapic(#[source] kvm_ioctls::Error),
}

// ---------------------------------------------------------------------------
// CPUID (Intel SDM vol. 2A, "CPUID"; KVM: Documentation/virt/kvm/x86/cpuid.rst)
// ---------------------------------------------------------------------------

/// Leaf 1: version and feature information.
const LEAF_FEATURES: u32 = 0x1;
/// Leaf 4: deterministic cache parameters (EAX bits 31:26 = cores per package - 1).
const LEAF_CACHE_PARAMS: u32 = 0x4;
/// Leaf 0xB / 0x1F: extended topology enumeration (EDX = x2APIC ID).
const LEAF_TOPOLOGY: u32 = 0xb;
const LEAF_TOPOLOGY_V2: u32 = 0x1f;
/// KVM's signature leaf: EAX = highest hypervisor leaf, EBX:ECX:EDX = "KVMKVMKVM\0\0\0".
const LEAF_KVM_SIGNATURE: u32 = 0x4000_0000;
/// KVM's feature leaf, the highest hypervisor leaf we describe.
const LEAF_KVM_FEATURES: u32 = 0x4000_0001;
const KVM_SIGNATURE: &[u8; 12] = b"KVMKVMKVM\0\0\0";

/// Leaf 1 EBX bits 31:24: initial APIC ID.
const EBX_APIC_ID_SHIFT: u32 = 24;
/// Leaf 1 EBX bits 23:16: logical processors per package.
const EBX_CPU_COUNT_SHIFT: u32 = 16;
/// Leaf 1 ECX bit 24: TSC-deadline LAPIC timer (KVM_CAP_TSC_DEADLINE_TIMER).
const ECX_TSC_DEADLINE_BIT: u32 = 24;
/// Leaf 1 ECX bit 31: running under a hypervisor.
const ECX_HYPERVISOR_BIT: u32 = 31;
/// Leaf 1 EDX bit 28: HTT, EBX bits 23:16 is valid.
const EDX_HTT_BIT: u32 = 28;
/// Leaf 4 EAX bits 31:26: cores per package minus one.
const EAX_CORES_SHIFT: u32 = 26;
const EAX_CORES_MASK: u32 = 0x3f << EAX_CORES_SHIFT;
/// Leaf 0xB ECX bits 15:8: level type (1 = SMT, 2 = core).
const LEVEL_TYPE_SHIFT: u32 = 8;
const LEVEL_TYPE_SMT: u32 = 1;
const LEVEL_TYPE_CORE: u32 = 2;

/// What the guest should see about its place in the machine.
#[derive(Clone, Copy, Debug)]
pub struct CpuTopology {
    /// This vCPU's APIC ID (= its index).
    pub apic_id: u8,
    /// vCPUs in the VM; each is one core with one thread, in one package.
    pub num_cpus: u8,
    /// KVM_CAP_TSC_DEADLINE_TIMER with the in-kernel irqchip.
    pub tsc_deadline: bool,
}

/// Adjust KVM's supported CPUID for one vCPU: APIC IDs, topology, the
/// hypervisor bit and KVM's signature leaf.
pub fn normalize_cpuid(cpuid: &mut CpuId, topo: &CpuTopology) -> Result<(), Error> {
    let apic_id = u32::from(topo.apic_id);
    let cpus = u32::from(topo.num_cpus);
    // Bits needed to number the cores of the package (x2APIC ID shift).
    let core_bits = u32::BITS - (cpus.max(1) - 1).leading_zeros();
    let mut has_signature = false;

    for entry in cpuid.as_mut_slice() {
        match entry.function {
            LEAF_FEATURES => {
                entry.ebx = (entry.ebx & 0x0000_ffff)
                    | (apic_id << EBX_APIC_ID_SHIFT)
                    | (cpus << EBX_CPU_COUNT_SHIFT);
                entry.ecx |= 1 << ECX_HYPERVISOR_BIT;
                if topo.tsc_deadline {
                    entry.ecx |= 1 << ECX_TSC_DEADLINE_BIT;
                }
                if cpus > 1 {
                    entry.edx |= 1 << EDX_HTT_BIT;
                } else {
                    entry.edx &= !(1 << EDX_HTT_BIT);
                }
            }
            LEAF_CACHE_PARAMS if entry.eax & 0x1f != 0 => {
                let cores = (cpus - 1).min(0x3f);
                entry.eax = (entry.eax & !EAX_CORES_MASK) | (cores << EAX_CORES_SHIFT);
            }
            LEAF_TOPOLOGY | LEAF_TOPOLOGY_V2 => {
                let (eax, ebx, level_type) = match entry.index {
                    0 => (0, 1, LEVEL_TYPE_SMT),
                    1 => (core_bits, cpus, LEVEL_TYPE_CORE),
                    _ => (0, 0, 0),
                };
                entry.eax = eax;
                entry.ebx = ebx;
                entry.ecx = (level_type << LEVEL_TYPE_SHIFT) | (entry.index & 0xff);
                entry.edx = apic_id;
            }
            LEAF_KVM_SIGNATURE => {
                set_kvm_signature(entry);
                has_signature = true;
            }
            _ => {}
        }
    }
    if !has_signature {
        let mut entry = kvm_cpuid_entry2 {
            function: LEAF_KVM_SIGNATURE,
            ..Default::default()
        };
        set_kvm_signature(&mut entry);
        cpuid
            .push(entry)
            .map_err(|e| Error::CpuidFull(LEAF_KVM_SIGNATURE, e))?;
    }
    Ok(())
}

fn set_kvm_signature(entry: &mut kvm_cpuid_entry2) {
    let word = |i: usize| u32::from_le_bytes(KVM_SIGNATURE[i..i + 4].try_into().unwrap());
    entry.eax = entry.eax.max(LEAF_KVM_FEATURES);
    entry.ebx = word(0);
    entry.ecx = word(4);
    entry.edx = word(8);
}

// ---------------------------------------------------------------------------
// MSRs (Intel SDM vol. 4, "Model-Specific Registers")
// ---------------------------------------------------------------------------

const MSR_IA32_TSC: u32 = 0x10;
const MSR_IA32_SYSENTER_CS: u32 = 0x174;
const MSR_IA32_SYSENTER_ESP: u32 = 0x175;
const MSR_IA32_SYSENTER_EIP: u32 = 0x176;
const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
const MSR_MTRR_DEF_TYPE: u32 = 0x2ff;
const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_CSTAR: u32 = 0xc000_0083;
const MSR_SYSCALL_MASK: u32 = 0xc000_0084;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;

/// IA32_MISC_ENABLE bit 0: fast-string operations enabled.
const MISC_ENABLE_FAST_STRING: u64 = 1;
/// IA32_MTRR_DEF_TYPE: bit 11 enables MTRRs; type 6 = write-back default.
const MTRR_ENABLE: u64 = 1 << 11;
const MTRR_TYPE_WRBACK: u64 = 6;

/// The MSR values every vCPU starts with.
fn boot_msrs() -> [(u32, u64); 11] {
    [
        (MSR_IA32_SYSENTER_CS, 0),
        (MSR_IA32_SYSENTER_ESP, 0),
        (MSR_IA32_SYSENTER_EIP, 0),
        (MSR_STAR, 0),
        (MSR_CSTAR, 0),
        (MSR_KERNEL_GS_BASE, 0),
        (MSR_SYSCALL_MASK, 0),
        (MSR_LSTAR, 0),
        (MSR_IA32_TSC, 0),
        (MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING),
        (MSR_MTRR_DEF_TYPE, MTRR_ENABLE | MTRR_TYPE_WRBACK),
    ]
}

fn setup_msrs(vcpu: &VcpuFd) -> Result<(), Error> {
    let wanted = boot_msrs();
    let entries: Vec<kvm_msr_entry> = wanted
        .iter()
        .map(|&(index, data)| kvm_msr_entry {
            index,
            data,
            ..Default::default()
        })
        .collect();
    let msrs = Msrs::from_entries(&entries).map_err(Error::MsrList)?;
    // KVM_SET_MSRS stops at the first MSR it refuses and returns how many it set.
    let set = vcpu.set_msrs(&msrs).map_err(Error::SetMsrs)?;
    match wanted.get(set) {
        Some(&(index, _)) => Err(Error::MsrRefused(index)),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------------------
// FPU (Intel SDM vol. 1 §8.1.5 FNINIT state, §10.2.3.1 MXCSR reset value)
// ---------------------------------------------------------------------------

/// x87 control word after FNINIT: all exceptions masked, 64-bit precision.
const FPU_CONTROL_WORD: u16 = 0x37f;
/// MXCSR at reset: all SIMD exceptions masked, round to nearest.
const MXCSR_DEFAULT: u32 = 0x1f80;

fn setup_fpu(vcpu: &VcpuFd) -> Result<(), Error> {
    let fpu = kvm_fpu {
        fcw: FPU_CONTROL_WORD,
        mxcsr: MXCSR_DEFAULT,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu).map_err(Error::SetFpu)
}

// ---------------------------------------------------------------------------
// Local APIC (Intel SDM vol. 3 §11.5.1 "Local Vector Table")
// ---------------------------------------------------------------------------

/// LVT LINT0 / LINT1 register offsets in the APIC page.
const APIC_LVT_LINT0: usize = 0x350;
const APIC_LVT_LINT1: usize = 0x360;
/// LVT delivery mode field, bits 10:8.
const APIC_DELIVERY_MODE_SHIFT: u32 = 8;
const APIC_DELIVERY_MODE_MASK: u32 = 0x7 << APIC_DELIVERY_MODE_SHIFT;
const APIC_MODE_NMI: u32 = 0b100;
const APIC_MODE_EXTINT: u32 = 0b111;

fn lapic_reg(regs: &[std::os::raw::c_char; 1024], offset: usize) -> u32 {
    let bytes: [u8; 4] = std::array::from_fn(|i| regs[offset + i] as u8);
    u32::from_le_bytes(bytes)
}

fn set_lapic_reg(regs: &mut [std::os::raw::c_char; 1024], offset: usize, value: u32) {
    for (i, byte) in value.to_le_bytes().into_iter().enumerate() {
        regs[offset + i] = byte as std::os::raw::c_char;
    }
}

/// LINT0 delivers the legacy PIC's ExtINT, LINT1 the NMI, as a PC's BIOS
/// leaves them (MP spec §3.6.2 "virtual wire mode").
fn setup_lapic(vcpu: &VcpuFd) -> Result<(), Error> {
    let mut lapic = vcpu.get_lapic().map_err(Error::GetLapic)?;
    for (offset, mode) in [
        (APIC_LVT_LINT0, APIC_MODE_EXTINT),
        (APIC_LVT_LINT1, APIC_MODE_NMI),
    ] {
        let value = lapic_reg(&lapic.regs, offset);
        let value = (value & !APIC_DELIVERY_MODE_MASK) | (mode << APIC_DELIVERY_MODE_SHIFT);
        set_lapic_reg(&mut lapic.regs, offset, value);
    }
    vcpu.set_lapic(&lapic).map_err(Error::SetLapic)
}

/// Set up one vCPU: CPUID from `supported` adjusted for `topo`, boot MSRs,
/// FPU and LAPIC. Registers and segments are the boot loader's.
pub fn configure_vcpu(vcpu: &VcpuFd, supported: &CpuId, topo: &CpuTopology) -> Result<(), Error> {
    let mut cpuid = supported.clone();
    normalize_cpuid(&mut cpuid, topo)?;
    vcpu.set_cpuid2(&cpuid).map_err(Error::SetCpuid)?;
    setup_msrs(vcpu)?;
    setup_fpu(vcpu)?;
    setup_lapic(vcpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(function: u32, index: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            ebx: 0x0001_0800,
            ..Default::default()
        }
    }

    fn find(cpuid: &CpuId, function: u32, index: u32) -> kvm_cpuid_entry2 {
        *cpuid
            .as_slice()
            .iter()
            .find(|e| e.function == function && e.index == index)
            .expect("leaf present")
    }

    #[test]
    fn cpuid_carries_apic_id_topology_and_kvm_signature() {
        let mut cpuid = CpuId::from_entries(&[
            entry(LEAF_FEATURES, 0),
            entry(LEAF_TOPOLOGY, 0),
            entry(LEAF_TOPOLOGY, 1),
            entry(LEAF_TOPOLOGY, 2),
        ])
        .unwrap();
        let topo = CpuTopology {
            apic_id: 3,
            num_cpus: 4,
            tsc_deadline: true,
        };
        normalize_cpuid(&mut cpuid, &topo).unwrap();

        let leaf1 = find(&cpuid, LEAF_FEATURES, 0);
        assert_eq!(leaf1.ebx >> 24, 3);
        assert_eq!((leaf1.ebx >> 16) & 0xff, 4);
        assert_eq!(leaf1.ebx & 0xffff, 0x0800, "low EBX bits kept");
        assert_ne!(leaf1.ecx & (1 << 31), 0, "hypervisor bit");
        assert_ne!(leaf1.ecx & (1 << 24), 0, "TSC deadline bit");
        assert_ne!(leaf1.edx & (1 << 28), 0, "HTT bit");

        let smt = find(&cpuid, LEAF_TOPOLOGY, 0);
        assert_eq!((smt.eax, smt.ebx, smt.ecx, smt.edx), (0, 1, 0x100, 3));
        let core = find(&cpuid, LEAF_TOPOLOGY, 1);
        assert_eq!((core.eax, core.ebx, core.ecx, core.edx), (2, 4, 0x201, 3));
        let invalid = find(&cpuid, LEAF_TOPOLOGY, 2);
        assert_eq!((invalid.ebx, invalid.ecx >> 8, invalid.edx), (0, 0, 3));

        let sig = find(&cpuid, LEAF_KVM_SIGNATURE, 0);
        let mut text = Vec::new();
        for reg in [sig.ebx, sig.ecx, sig.edx] {
            text.extend_from_slice(&reg.to_le_bytes());
        }
        assert_eq!(&text, KVM_SIGNATURE);
        assert!(sig.eax >= LEAF_KVM_FEATURES);
    }

    #[test]
    fn single_cpu_has_no_htt_and_existing_signature_is_rewritten() {
        let mut sig = entry(LEAF_KVM_SIGNATURE, 0);
        sig.eax = 0x4000_0010;
        let mut leaf1 = entry(LEAF_FEATURES, 0);
        leaf1.edx = 1 << EDX_HTT_BIT;
        let mut cpuid = CpuId::from_entries(&[leaf1, sig]).unwrap();
        let topo = CpuTopology {
            apic_id: 0,
            num_cpus: 1,
            tsc_deadline: false,
        };
        normalize_cpuid(&mut cpuid, &topo).unwrap();
        assert_eq!(cpuid.as_slice().len(), 2, "no duplicate signature leaf");
        let leaf1 = find(&cpuid, LEAF_FEATURES, 0);
        assert_eq!(leaf1.edx & (1 << EDX_HTT_BIT), 0);
        assert_eq!(leaf1.ecx & (1 << ECX_TSC_DEADLINE_BIT), 0);
        assert_eq!(find(&cpuid, LEAF_KVM_SIGNATURE, 0).eax, 0x4000_0010);
    }
}
