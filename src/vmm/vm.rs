//! PLACEHOLDER: the core helper replaces this file (builder, vCPUs, controller).
//! The signatures below are the contract other modules program against.

use std::io::Write;

use super::config::VmConfig;
use super::control::{Command, ExitReason, Response};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not implemented yet")]
    NotImplemented,
}

/// A VM that is built (memory, devices, kernel loaded) but not running.
pub struct Vm {}

/// Bytes for the guest's COM1 input. Cheap to clone; usable from any thread.
#[derive(Clone)]
pub struct ConsoleInput {}

impl ConsoleInput {
    /// Queue bytes for the guest's COM1 receiver.
    pub fn send(&self, _bytes: &[u8]) {}
}

/// Controls a running VM. Dropping it stops the VM and joins every thread.
pub struct VmHandle {}

/// Build a VM from `config`; COM1 output goes to `console`.
pub fn build(_config: VmConfig, _console: Box<dyn Write + Send>) -> Result<Vm, Error> {
    Err(Error::NotImplemented)
}

impl Vm {
    /// Start every vCPU. Returns once the VM is `Running`.
    pub fn start(self) -> Result<VmHandle, Error> {
        Err(Error::NotImplemented)
    }
}

impl VmHandle {
    /// Send a command and wait for its response.
    pub fn request(&self, _command: Command) -> Result<Response, Error> {
        Err(Error::NotImplemented)
    }

    /// Where to write the guest's console input.
    pub fn console_input(&self) -> ConsoleInput {
        ConsoleInput {}
    }

    /// A receiver that yields the exit reason once, when the VM has stopped.
    pub fn exited(&self) -> crossbeam_channel::Receiver<ExitReason> {
        crossbeam_channel::never()
    }

    /// Block until the VM has stopped and every thread has been joined.
    pub fn wait(self) -> ExitReason {
        ExitReason::Stopped
    }
}
