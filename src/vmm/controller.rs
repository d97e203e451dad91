//! The VM lifecycle controller: one thread that owns the vCPU threads and
//! devices of a running VM and is the only one to change its state.
//!
//! It serialises everything that can change the VM's state: requests from
//! [`VmHandle::request`] (from any number of threads), device events (reset,
//! power off, debug exit) and vCPUs that end the VM (triple fault, guest
//! error). The state machine is [`VmState::after`]; the controller ends, and
//! with it every vCPU, console and device thread, when the state becomes
//! `Stopped`.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, select};
use kvm_ioctls::VmFd;

use super::console::ConsolePump;
use super::control::{Command, ExitReason, Response, VmState, VmStatus};
use super::devices::VmEvent;
use super::memory::GuestMemoryMmap;
use super::vcpu::{Vcpu, VcpuEvent, VcpuHandle, VcpuResponse};
use super::vm::{ConsoleInput, Devices, Error, Request, Vm, VmHandle};

/// How long a vCPU may take to acknowledge Pause/Resume.
const VCPU_ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// What exists only while the VM has not stopped. Dropped, in field order
/// after the vCPUs are joined, when it stops.
struct Machine {
    vcpus: Vec<VcpuHandle>,
    _console: Option<ConsolePump>,
    devices: Devices,
    vm_events: Receiver<VmEvent>,
    vcpu_exits: Receiver<ExitReason>,
    _vm_fd: Arc<VmFd>,
    _mem: GuestMemoryMmap,
}

struct Controller {
    name: String,
    vcpu_count: u8,
    memory_mib: u64,
    state: VmState,
    started: Instant,
    stopped: Option<Instant>,
    exit_reason: Option<ExitReason>,
    machine: Option<Machine>,
    requests: Receiver<Request>,
    exited: Sender<ExitReason>,
    final_status: Arc<OnceLock<VmStatus>>,
}

/// Start `vm`'s vCPU threads, console thread and controller thread.
pub(crate) fn start(vm: Vm) -> Result<VmHandle, Error> {
    let Vm {
        name,
        memory_mib,
        vm_fd,
        mem,
        pio_bus,
        mmio_bus,
        vcpus,
        events,
        devices,
    } = vm;
    let vcpu_count = vcpus.len() as u8;

    let (console_tx, console_rx) = crossbeam_channel::unbounded();
    let console = match &devices.serial {
        Some(serial) => {
            let serial = serial.clone();
            let sink = Box::new(move |bytes: &[u8]| {
                serial
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .enqueue_input(bytes)
            });
            Some(ConsolePump::spawn(console_rx, sink).map_err(|e| Error::Thread("console", e))?)
        }
        None => None,
    };

    // If spawning fails part way, the handles already made are dropped,
    // which finishes and joins their threads.
    let (exits_tx, exits_rx) = crossbeam_channel::unbounded();
    let mut handles = Vec::with_capacity(vcpus.len());
    for (id, fd) in vcpus.into_iter().enumerate() {
        let vcpu = Vcpu {
            id: id as u8,
            fd,
            mem: mem.clone(),
            pio_bus: pio_bus.clone(),
            mmio_bus: mmio_bus.clone(),
        };
        handles.push(VcpuHandle::spawn(vcpu, exits_tx.clone()).map_err(Error::Start)?);
    }
    drop(exits_tx);

    let (requests_tx, requests_rx) = crossbeam_channel::unbounded();
    let (exited_tx, exited_rx) = crossbeam_channel::bounded(1);
    let final_status = Arc::new(OnceLock::new());
    let controller = Controller {
        name,
        vcpu_count,
        memory_mib,
        state: VmState::Running,
        started: Instant::now(),
        stopped: None,
        exit_reason: None,
        machine: Some(Machine {
            vcpus: handles,
            _console: console,
            devices,
            vm_events: events,
            vcpu_exits: exits_rx,
            _vm_fd: vm_fd,
            _mem: mem,
        }),
        requests: requests_rx,
        exited: exited_tx,
        final_status: final_status.clone(),
    };
    let thread = std::thread::Builder::new()
        .name(format!("vm-{}", controller.name))
        .spawn(move || controller.run())
        .map_err(|e| Error::Thread("controller", e))?;

    Ok(VmHandle {
        requests: requests_tx,
        exited: exited_rx,
        console: ConsoleInput { tx: console_tx },
        final_status,
        controller: Some(thread),
    })
}

impl Controller {
    fn run(mut self) -> ExitReason {
        while let Some(machine) = &self.machine {
            let vm_events = machine.vm_events.clone();
            let vcpu_exits = machine.vcpu_exits.clone();
            select! {
                recv(self.requests) -> request => match request {
                    Ok(Request { command, reply }) => {
                        let result = self.handle(command);
                        // The requester may have given up; nothing to do then.
                        let _ = reply.send(result);
                    }
                    // Every handle is gone without a Stop: stop anyway.
                    Err(_) => self.stop(ExitReason::Stopped),
                },
                recv(vm_events) -> event => match event {
                    Ok(event) => self.stop(exit_reason_of(event)),
                    // No device can send events any more.
                    Err(_) => self.forget_closed(|m| &mut m.vm_events),
                },
                recv(vcpu_exits) -> reason => match reason {
                    Ok(reason) => self.stop(reason),
                    Err(_) => self.forget_closed(|m| &mut m.vcpu_exits),
                },
            }
        }
        self.exit_reason.clone().unwrap_or(ExitReason::Stopped)
    }

    fn handle(&mut self, command: Command) -> Result<Response, Error> {
        let Some(next) = self.state.after(&command) else {
            return Err(Error::IllegalTransition {
                command,
                state: self.state,
            });
        };
        match command {
            Command::Status => return Ok(Response::Status(self.status())),
            Command::Pause => self.pause()?,
            Command::Resume => self.resume()?,
            Command::Stop => self.stop(ExitReason::Stopped),
            Command::PowerButton => {
                let pm = self.devices().and_then(|d| d.acpi_pm.as_ref());
                let pm = pm.ok_or(Error::NoDevice("ACPI power management"))?;
                pm.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .press_power_button();
            }
            Command::CtrlAltDel => {
                let i8042 = self.devices().and_then(|d| d.i8042.as_ref());
                let i8042 = i8042.ok_or(Error::NoDevice("i8042 keyboard controller"))?;
                i8042
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .trigger_ctrl_alt_del();
            }
        }
        self.state = next;
        Ok(Response::Ok)
    }

    /// Stop selecting on a channel whose senders are all gone.
    fn forget_closed<T>(&mut self, channel: impl FnOnce(&mut Machine) -> &mut Receiver<T>) {
        if let Some(machine) = &mut self.machine {
            *channel(machine) = crossbeam_channel::never();
        }
    }

    fn devices(&self) -> Option<&Devices> {
        self.machine.as_ref().map(|m| &m.devices)
    }

    fn vcpus(&self) -> &[VcpuHandle] {
        self.machine.as_ref().map_or(&[], |m| &m.vcpus)
    }

    /// Ask every vCPU at once, then wait for each answer. A vCPU that does
    /// not answer in time is stuck (in a device, since kicks reach KVM_RUN):
    /// the VM can no longer be trusted to be paused or running, so it ends.
    fn broadcast(&mut self, event: VcpuEvent, expected: VcpuResponse) -> Result<(), Error> {
        for vcpu in self.vcpus() {
            vcpu.send(event);
        }
        let stuck = self
            .vcpus()
            .iter()
            .find(|vcpu| !vcpu.wait_for(expected, VCPU_ANSWER_TIMEOUT))
            .map(VcpuHandle::id);
        match stuck {
            None => Ok(()),
            Some(id) => {
                let message = format!("vCPU {id} did not answer {event:?} in time");
                log::error!("{message}");
                self.stop(ExitReason::VmmError { message });
                Err(Error::VcpuUnresponsive(id))
            }
        }
    }

    fn pause(&mut self) -> Result<(), Error> {
        self.broadcast(VcpuEvent::Pause, VcpuResponse::Paused)
    }

    fn resume(&mut self) -> Result<(), Error> {
        self.broadcast(VcpuEvent::Resume, VcpuResponse::Resumed)
    }

    /// End the VM with `reason`: join every vCPU, then release the console,
    /// the devices and the memory; publish the end.
    fn stop(&mut self, reason: ExitReason) {
        let Some(mut machine) = self.machine.take() else {
            return;
        };
        log::info!("VM {} stops: {reason:?}", self.name);
        for vcpu in &machine.vcpus {
            vcpu.send(VcpuEvent::Finish);
        }
        for vcpu in &mut machine.vcpus {
            vcpu.finish();
        }
        drop(machine);
        self.state = VmState::Stopped;
        self.stopped = Some(Instant::now());
        self.exit_reason = Some(reason.clone());
        let _ = self.final_status.set(self.status());
        let _ = self.exited.try_send(reason);
    }

    fn status(&self) -> VmStatus {
        let until = self.stopped.unwrap_or_else(Instant::now);
        VmStatus {
            name: self.name.clone(),
            state: self.state,
            vcpus: self.vcpu_count,
            memory_mib: self.memory_mib,
            uptime_secs: until.duration_since(self.started).as_secs(),
            exit_reason: self.exit_reason.clone(),
        }
    }
}

fn exit_reason_of(event: VmEvent) -> ExitReason {
    match event {
        VmEvent::Reset => ExitReason::Reset,
        VmEvent::PowerOff => ExitReason::PowerOff,
        VmEvent::DebugExit(code) => ExitReason::DebugExit { code },
    }
}
