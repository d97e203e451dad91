//! The VM as the manager sees it: [`build`] a [`Vm`], [`Vm::start`] it, and
//! drive the running VM through its [`VmHandle`].
//!
//! A VM ends exactly once, with an [`ExitReason`]. A guest reboot is *not*
//! carried out here: the VM ends with [`ExitReason::Reset`] and the manager
//! decides whether to build and start a fresh one.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use kvm_ioctls::{VcpuFd, VmFd};

use super::builder;
use super::config::VmConfig;
use super::control::{Command, ExitReason, Response, VmState, VmStatus};
use super::devices::legacy::{AcpiPm, I8042, Serial};
use super::devices::pci::PciDevices;
use super::devices::{Bus, VmEvent};
use super::memory::GuestMemoryMmap;

pub use super::builder::Error as BuildError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot build the VM")]
    Build(#[source] BuildError),
    #[error("cannot start the VM")]
    Start(#[source] super::vcpu::Error),
    #[error("cannot start the VM's {0} thread")]
    Thread(&'static str, #[source] std::io::Error),
    #[error("cannot {command:?} a VM that is {state:?}")]
    IllegalTransition { command: Command, state: VmState },
    #[error("this VM has no {0} device")]
    NoDevice(&'static str),
    /// A vCPU did not acknowledge Pause/Resume; the VM has been ended.
    #[error("vCPU {0} did not answer in time; the VM was ended")]
    VcpuUnresponsive(u8),
}

/// The devices the controller acts on directly, and the PCI devices whose
/// worker threads must live as long as the VM. Absent in VMs built by tests
/// around hand-written guests.
#[derive(Default)]
pub(crate) struct Devices {
    pub serial: Option<Arc<Mutex<Serial>>>,
    pub i8042: Option<Arc<Mutex<I8042>>>,
    pub acpi_pm: Option<Arc<Mutex<AcpiPm>>>,
    pub pci: Option<PciDevices>,
}

/// A VM that is built (memory, devices, kernel loaded) but not running.
pub struct Vm {
    pub(crate) name: String,
    pub(crate) memory_mib: u64,
    pub(crate) vm_fd: Arc<VmFd>,
    pub(crate) mem: GuestMemoryMmap,
    pub(crate) pio_bus: Arc<Bus>,
    pub(crate) mmio_bus: Arc<Bus>,
    /// vCPU 0 first; only it has an entry state.
    pub(crate) vcpus: Vec<VcpuFd>,
    /// Requests from devices (reset, power off, debug exit).
    pub(crate) events: Receiver<VmEvent>,
    pub(crate) devices: Devices,
}

/// Bytes for the guest's COM1 input. Cheap to clone; usable from any thread.
#[derive(Clone)]
pub struct ConsoleInput {
    pub(crate) tx: Sender<Vec<u8>>,
}

impl ConsoleInput {
    /// Queue bytes for the guest's COM1 receiver. Never blocks: bytes the
    /// UART cannot take yet wait in the VM and are offered again. Bytes sent
    /// after the VM has stopped are discarded.
    pub fn send(&self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.tx.send(bytes.to_vec()).is_err() {
            log::debug!(
                "console input after the VM stopped: {} bytes dropped",
                bytes.len()
            );
        }
    }
}

/// A request to the controller thread and where to answer it.
pub(crate) struct Request {
    pub command: Command,
    pub reply: Sender<Result<Response, Error>>,
}

/// Controls a running VM. Usable from several threads at once (`&self`
/// methods only). Dropping it stops the VM and joins every thread.
pub struct VmHandle {
    pub(crate) requests: Sender<Request>,
    pub(crate) exited: Receiver<ExitReason>,
    pub(crate) console: ConsoleInput,
    /// Set by the controller, before it ends, to the VM's last status.
    pub(crate) final_status: Arc<OnceLock<VmStatus>>,
    pub(crate) controller: Option<JoinHandle<ExitReason>>,
}

/// Build a VM from `config`; COM1 output goes to `console`.
pub fn build(config: VmConfig, console: Box<dyn Write + Send>) -> Result<Vm, Error> {
    builder::build(config, console).map_err(Error::Build)
}

impl Vm {
    /// Start every vCPU. Returns once the VM is `Running`. If a thread
    /// cannot be started, those already started are stopped and joined.
    pub fn start(self) -> Result<VmHandle, Error> {
        super::controller::start(self)
    }

    /// Guest memory (tests read what their guests wrote).
    #[cfg(test)]
    pub(crate) fn memory(&self) -> &GuestMemoryMmap {
        &self.mem
    }
}

impl VmHandle {
    /// Send a command and wait for its response. Pause/Resume return once
    /// every vCPU has stopped/restarted; Stop once every thread is joined.
    /// Once the VM has stopped, `Status` reports its end and every other
    /// command is an [`Error::IllegalTransition`].
    pub fn request(&self, command: Command) -> Result<Response, Error> {
        let (reply_tx, reply_rx) = crossbeam_channel::bounded(1);
        let request = Request {
            command: command.clone(),
            reply: reply_tx,
        };
        if self.requests.send(request).is_ok()
            && let Ok(result) = reply_rx.recv()
        {
            return result;
        }
        // The controller has ended: the VM is stopped.
        let status = self.final_status.get().cloned();
        match (command, status) {
            (Command::Status, Some(status)) => Ok(Response::Status(status)),
            (command, _) => Err(Error::IllegalTransition {
                command,
                state: VmState::Stopped,
            }),
        }
    }

    /// Where to write the guest's console input.
    pub fn console_input(&self) -> ConsoleInput {
        self.console.clone()
    }

    /// A receiver that yields the exit reason once, when the VM has stopped
    /// (every vCPU joined). All receivers returned share that one message.
    ///
    /// `ExitReason::Reset` means the guest asked to reboot: this VM is over,
    /// and it is the manager's choice to build and start a new one.
    pub fn exited(&self) -> Receiver<ExitReason> {
        self.exited.clone()
    }

    /// Block until the VM has stopped and every thread has been joined.
    pub fn wait(mut self) -> ExitReason {
        let controller = self.controller.take();
        join_controller(controller).unwrap_or_else(|| self.stopped_reason())
    }

    fn stopped_reason(&self) -> ExitReason {
        self.final_status
            .get()
            .and_then(|s| s.exit_reason.clone())
            .unwrap_or(ExitReason::Stopped)
    }
}

fn join_controller(controller: Option<JoinHandle<ExitReason>>) -> Option<ExitReason> {
    match controller?.join() {
        Ok(reason) => Some(reason),
        Err(_) => Some(ExitReason::VmmError {
            message: "the VM controller thread panicked".into(),
        }),
    }
}

impl Drop for VmHandle {
    fn drop(&mut self) {
        if self.controller.is_some() {
            // Refused when the VM has already stopped; either way it ends.
            let _ = self.request(Command::Stop);
            join_controller(self.controller.take());
        }
    }
}
