//! The in-process hypervisor: KVM, guest memory, vCPU threads, devices,
//! loaders and the lifecycle control channel.
//!
//! Public surface: [`VmConfig`] (plain data), [`build`] -> [`Vm`],
//! [`Vm::start`] -> [`VmHandle`], and the [`control`] messages.
//! This module never imports clap, rust-ini or the library layout.

pub mod acpi;
pub mod boot;
mod builder;
pub mod config;
mod console;
pub mod control;
mod controller;
mod cpu;
pub mod devices;
pub mod layout;
pub mod memory;
mod vcpu;
mod vm;
#[cfg(test)]
mod vm_tests;

pub use config::{BootProtocol, DiskConfig, NetConfig, VmConfig};
pub use control::{Command, ExitReason, Response, VmState, VmStatus};
pub use vm::{BuildError, ConsoleInput, Error, Vm, VmHandle, build};
