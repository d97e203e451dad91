//! xhyve-manager: a library of VMs on disk (`manager`) and the in-process
//! KVM hypervisor that runs them (`vmm`).
//!
//! The dependency between the two halves is one-way: `manager` uses `vmm`;
//! `vmm` knows nothing of config.ini, the CLI or the library layout.

pub mod manager;
pub mod vmm;
