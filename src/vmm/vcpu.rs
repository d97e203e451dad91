//! vCPU threads: one thread per vCPU runs KVM_RUN and dispatches exits to
//! the buses; the controller drives it with messages.
//!
//! Protocol: the controller sends a [`VcpuEvent`] on the vCPU's event
//! channel, then kicks the thread out of KVM_RUN ([`VcpuHandle::kick`]); the
//! thread answers on its response channel. A kick is a real-time signal whose
//! handler sets `kvm_run.immediate_exit`, so a signal that lands between the
//! thread's check of its channel and its next KVM_RUN still makes that
//! KVM_RUN return at once with EINTR (KVM API, "immediate_exit"). When the
//! guest ends the VM (triple fault, emulation failure, ACPI/PSCI-style system
//! event), the thread reports the reason on the shared exit channel and ends.

use std::cell::Cell;
use std::os::raw::c_int;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use kvm_bindings::{
    KVM_INTERNAL_ERROR_DELIVERY_EV, KVM_INTERNAL_ERROR_EMULATION, KVM_INTERNAL_ERROR_SIMUL_EX,
    KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON, KVM_SYSTEM_EVENT_CRASH, KVM_SYSTEM_EVENT_RESET,
    KVM_SYSTEM_EVENT_SHUTDOWN,
};
use kvm_ioctls::{VcpuExit, VcpuFd};
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::signal::{Killable, SIGRTMIN, register_signal_handler, unblock_signal};

use super::control::ExitReason;
use super::devices::Bus;
use super::layout::PAGE_SIZE;
use super::memory::GuestMemoryMmap;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot install the vCPU kick signal handler (errno {0})")]
    SignalHandler(i32),
    #[error("cannot spawn the thread of vCPU {0}")]
    Spawn(u8, #[source] std::io::Error),
}

/// Offset from SIGRTMIN of the signal that kicks a vCPU out of KVM_RUN.
const KICK_SIGNAL_OFFSET: c_int = 0;
/// How often an unanswered kick is repeated while waiting for a vCPU.
const KICK_RETRY: Duration = Duration::from_millis(20);
/// How often `finish` looks whether the thread has ended.
const FINISH_POLL: Duration = Duration::from_millis(1);
/// Longest an x86 instruction can be (Intel SDM vol. 2 §2.3.11).
const MAX_INSN_LEN: u64 = 15;

/// What the controller asks of a vCPU thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VcpuEvent {
    /// Leave KVM_RUN and wait for `Resume` or `Finish`.
    Pause,
    /// Run the guest again.
    Resume,
    /// End the thread.
    Finish,
}

/// A vCPU thread's answer to `Pause`/`Resume`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VcpuResponse {
    Paused,
    Resumed,
}

thread_local! {
    /// This thread's `kvm_run.immediate_exit`, for the kick signal handler.
    static IMMEDIATE_EXIT: Cell<*mut u8> = const { Cell::new(std::ptr::null_mut()) };
}

/// Publishes a vCPU thread's immediate_exit flag to the kick handler for
/// as long as it lives.
struct PublishedFlag;

impl PublishedFlag {
    fn new(flag: *mut u8) -> Self {
        IMMEDIATE_EXIT.with(|cell| cell.set(flag));
        PublishedFlag
    }
}

impl Drop for PublishedFlag {
    fn drop(&mut self) {
        IMMEDIATE_EXIT.with(|cell| cell.set(std::ptr::null_mut()));
    }
}

extern "C" fn handle_kick(_: c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // Async-signal-safe: reads a const-initialised thread-local (no lazy
    // initialisation, no destructor) and writes one byte.
    let flag = IMMEDIATE_EXIT.with(Cell::get);
    if !flag.is_null() {
        // SAFETY: the pointer is set by this thread's vCPU loop to the
        // immediate_exit byte of its mmap'd kvm_run and cleared before the
        // VcpuFd (and its mapping) is dropped; the signal handler runs on
        // that same thread, so the mapping is alive.
        unsafe { flag.write_volatile(1) };
    }
}

fn kick_signal() -> c_int {
    SIGRTMIN() + KICK_SIGNAL_OFFSET
}

/// Install the kick handler once per process.
fn register_kick_handler() -> Result<(), Error> {
    static REGISTERED: OnceLock<Result<(), i32>> = OnceLock::new();
    let registered = REGISTERED
        .get_or_init(|| register_signal_handler(kick_signal(), handle_kick).map_err(|e| e.errno()));
    (*registered).map_err(Error::SignalHandler)
}

/// A vCPU ready to run on its own thread.
pub struct Vcpu {
    pub id: u8,
    pub fd: VcpuFd,
    pub mem: GuestMemoryMmap,
    pub pio_bus: Arc<Bus>,
    pub mmio_bus: Arc<Bus>,
}

/// What one KVM_RUN exit means for the loop.
enum Step {
    Continue,
    /// KVM_RUN was interrupted (kick): look at the event channel.
    Interrupted,
    /// The guest ended the VM.
    Exit(ExitReason),
    /// The guest cannot go on: describe the exit with RIP and insn bytes.
    Fault(String),
}

/// Why the run loop returned.
enum LoopEnd {
    Finished,
    Exited(ExitReason),
}

impl Vcpu {
    fn run(
        mut self,
        events: Receiver<VcpuEvent>,
        responses: Sender<VcpuResponse>,
        exits: Sender<ExitReason>,
    ) {
        let flag = std::ptr::addr_of_mut!(self.fd.get_kvm_run().immediate_exit);
        // Declared after `self`, so dropped before it (also when unwinding):
        // the handler never sees the flag of an unmapped kvm_run.
        let published = PublishedFlag::new(flag);
        let end = self.run_loop(&events, &responses);
        drop(published);
        if let LoopEnd::Exited(reason) = end {
            log::info!("vCPU {} ended the VM: {reason:?}", self.id);
            // The controller may already be gone when the VM is stopping.
            let _ = exits.send(reason);
        }
    }

    fn run_loop(
        &mut self,
        events: &Receiver<VcpuEvent>,
        responses: &Sender<VcpuResponse>,
    ) -> LoopEnd {
        loop {
            if !handle_events(events, responses) {
                return LoopEnd::Finished;
            }
            loop {
                match self.run_once() {
                    Step::Continue => continue,
                    Step::Interrupted => break,
                    Step::Exit(reason) => return LoopEnd::Exited(reason),
                    Step::Fault(exit) => return LoopEnd::Exited(self.guest_error(exit)),
                }
            }
        }
    }

    fn run_once(&mut self) -> Step {
        match self.fd.run() {
            Ok(VcpuExit::IoIn(port, data)) => {
                if !self.pio_bus.read(u64::from(port), data) {
                    log::debug!("vCPU {}: read of unmapped port {port:#x}", self.id);
                    data.fill(0xff);
                }
                Step::Continue
            }
            Ok(VcpuExit::IoOut(port, data)) => {
                if !self.pio_bus.write(u64::from(port), data) {
                    log::debug!(
                        "vCPU {}: write {data:x?} to unmapped port {port:#x}",
                        self.id
                    );
                }
                Step::Continue
            }
            Ok(VcpuExit::MmioRead(addr, data)) => {
                if !self.mmio_bus.read(addr, data) {
                    log::debug!("vCPU {}: read of unmapped MMIO {addr:#x}", self.id);
                    data.fill(0xff);
                }
                Step::Continue
            }
            Ok(VcpuExit::MmioWrite(addr, data)) => {
                if !self.mmio_bus.write(addr, data) {
                    log::debug!(
                        "vCPU {}: write {data:x?} to unmapped MMIO {addr:#x}",
                        self.id
                    );
                }
                Step::Continue
            }
            // With the in-kernel irqchip KVM handles HLT itself; if one
            // reaches us anyway the vCPU is idle and simply re-enters.
            Ok(VcpuExit::Hlt) => Step::Continue,
            Ok(VcpuExit::Intr) => Step::Interrupted,
            Ok(VcpuExit::Shutdown) => Step::Exit(ExitReason::TripleFault { vcpu: self.id }),
            Ok(VcpuExit::SystemEvent(kind, _)) => match kind {
                KVM_SYSTEM_EVENT_SHUTDOWN => Step::Exit(ExitReason::PowerOff),
                KVM_SYSTEM_EVENT_RESET => Step::Exit(ExitReason::Reset),
                KVM_SYSTEM_EVENT_CRASH => Step::Fault("KVM_SYSTEM_EVENT_CRASH".into()),
                other => Step::Fault(format!("KVM_EXIT_SYSTEM_EVENT type {other}")),
            },
            Ok(VcpuExit::InternalError) => Step::Fault(self.internal_error_name()),
            Ok(VcpuExit::FailEntry(reason, cpu)) => Step::Fault(format!(
                "KVM_EXIT_FAIL_ENTRY (hardware reason {reason:#x}, host cpu {cpu})"
            )),
            Ok(other) => Step::Fault(exit_name(&other)),
            Err(e) if e.errno() == libc::EINTR => {
                // A kick: clear the flag before looking at the channel, so a
                // later kick is never lost (at worst one spurious EINTR).
                self.fd.set_kvm_immediate_exit(0);
                Step::Interrupted
            }
            Err(e) if e.errno() == libc::EAGAIN => Step::Continue,
            Err(e) => Step::Exit(ExitReason::VmmError {
                message: format!("KVM_RUN on vCPU {} failed: {e}", self.id),
            }),
        }
    }

    fn internal_error_name(&mut self) -> String {
        // SAFETY: called right after KVM_EXIT_INTERNAL_ERROR, for which the
        // kernel fills the `internal` member of the exit union.
        let suberror = unsafe { self.fd.get_kvm_run().__bindgen_anon_1.internal.suberror };
        let what = match suberror {
            KVM_INTERNAL_ERROR_EMULATION => "emulation failure",
            KVM_INTERNAL_ERROR_SIMUL_EX => "exception while delivering an exception",
            KVM_INTERNAL_ERROR_DELIVERY_EV => "exit while delivering an event",
            KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON => "unexpected exit reason",
            _ => "unknown",
        };
        format!("KVM_EXIT_INTERNAL_ERROR ({what}, suberror {suberror})")
    }

    /// `GuestError` for an exit we cannot continue from, with RIP and the
    /// instruction bytes there (best effort: empty when unreadable).
    fn guest_error(&self, exit: String) -> ExitReason {
        let rip = self.fd.get_regs().map(|r| r.rip).unwrap_or(0);
        let cs_base = self.fd.get_sregs().map(|s| s.cs.base).unwrap_or(0);
        let insn = self.read_insn(cs_base.wrapping_add(rip));
        ExitReason::GuestError {
            vcpu: self.id,
            exit,
            rip,
            insn,
        }
    }

    fn read_insn(&self, linear: u64) -> Vec<u8> {
        let mut insn = Vec::new();
        let mut phys = None;
        for i in 0..MAX_INSN_LEN {
            let gva = linear.wrapping_add(i);
            if i == 0 || gva % PAGE_SIZE == 0 {
                phys = match self.fd.translate_gva(gva) {
                    Ok(t) if t.valid != 0 => Some(t.physical_address),
                    _ => None,
                };
            } else {
                phys = phys.map(|p| p + 1);
            }
            let Some(addr) = phys else { break };
            match self.mem.read_obj::<u8>(GuestAddress(addr)) {
                Ok(byte) => insn.push(byte),
                Err(_) => break,
            }
        }
        insn
    }
}

/// Drain the event channel. Returns false when the thread must finish.
/// While paused, blocks here until `Resume` or `Finish`.
fn handle_events(events: &Receiver<VcpuEvent>, responses: &Sender<VcpuResponse>) -> bool {
    let mut paused = false;
    loop {
        let event = if paused {
            events.recv().ok()
        } else {
            match events.try_recv() {
                Ok(event) => Some(event),
                Err(crossbeam_channel::TryRecvError::Empty) => return true,
                Err(crossbeam_channel::TryRecvError::Disconnected) => None,
            }
        };
        match event {
            Some(VcpuEvent::Pause) => {
                paused = true;
                let _ = responses.send(VcpuResponse::Paused);
            }
            Some(VcpuEvent::Resume) => {
                paused = false;
                let _ = responses.send(VcpuResponse::Resumed);
            }
            Some(VcpuEvent::Finish) | None => return false,
        }
    }
}

fn exit_name(exit: &VcpuExit) -> String {
    match exit {
        VcpuExit::Unknown => "KVM_EXIT_UNKNOWN".into(),
        VcpuExit::Exception => "KVM_EXIT_EXCEPTION".into(),
        VcpuExit::Hypercall(_) => "KVM_EXIT_HYPERCALL".into(),
        VcpuExit::Debug(_) => "KVM_EXIT_DEBUG".into(),
        VcpuExit::IrqWindowOpen => "KVM_EXIT_IRQ_WINDOW_OPEN".into(),
        VcpuExit::Nmi => "KVM_EXIT_NMI".into(),
        VcpuExit::IoapicEoi(v) => format!("KVM_EXIT_IOAPIC_EOI (vector {v:#x})"),
        VcpuExit::X86Rdmsr(_) => "KVM_EXIT_X86_RDMSR".into(),
        VcpuExit::X86Wrmsr(_) => "KVM_EXIT_X86_WRMSR".into(),
        VcpuExit::MemoryFault { gpa, size, .. } => {
            format!("KVM_EXIT_MEMORY_FAULT (gpa {gpa:#x}, size {size:#x})")
        }
        VcpuExit::Unsupported(reason) => format!("KVM exit reason {reason}"),
        other => format!("{other:?}"),
    }
}

/// The controller's end of a vCPU thread. Dropping it finishes and joins.
pub struct VcpuHandle {
    id: u8,
    events: Sender<VcpuEvent>,
    responses: Receiver<VcpuResponse>,
    thread: Option<JoinHandle<()>>,
}

impl VcpuHandle {
    /// Start `vcpu` running on a new thread; guest-initiated ends of the VM
    /// are reported on `exits`.
    pub fn spawn(vcpu: Vcpu, exits: Sender<ExitReason>) -> Result<Self, Error> {
        register_kick_handler()?;
        let id = vcpu.id;
        let (event_tx, event_rx) = crossbeam_channel::unbounded();
        let (response_tx, response_rx) = crossbeam_channel::unbounded();
        let thread = std::thread::Builder::new()
            .name(format!("vcpu{id}"))
            .spawn(move || {
                // The kick must reach this thread even if its creator
                // blocked the signal (the mask is inherited).
                if let Err(e) = unblock_signal(kick_signal()) {
                    log::warn!("vCPU {id}: cannot unblock the kick signal: {e:?}");
                }
                // A panic (e.g. in a device) must end the VM, not leave it
                // running without this vCPU.
                let on_panic = exits.clone();
                let run = AssertUnwindSafe(move || vcpu.run(event_rx, response_tx, exits));
                if std::panic::catch_unwind(run).is_err() {
                    let _ = on_panic.send(ExitReason::VmmError {
                        message: format!("vCPU {id} thread panicked"),
                    });
                }
            })
            .map_err(|e| Error::Spawn(id, e))?;
        Ok(VcpuHandle {
            id,
            events: event_tx,
            responses: response_rx,
            thread: Some(thread),
        })
    }

    pub fn id(&self) -> u8 {
        self.id
    }

    /// Make the thread leave KVM_RUN (or not enter it) and look at its events.
    fn kick(&self) {
        if let Some(thread) = &self.thread
            && !thread.is_finished()
        {
            // ESRCH when the thread just ended: nothing left to kick.
            let _ = thread.kill(kick_signal());
        }
    }

    /// Send `event` and kick the thread so it sees it promptly.
    pub fn send(&self, event: VcpuEvent) {
        // A send error means the thread has ended; `wait_for` notices.
        let _ = self.events.send(event);
        self.kick();
    }

    /// Wait up to `timeout` for `expected`, repeating the kick meanwhile.
    /// Returns true when it came or the thread has ended (a thread that
    /// ended on its own has reported why on the exit channel).
    pub fn wait_for(&self, expected: VcpuResponse, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            match self.responses.recv_timeout(KICK_RETRY) {
                Ok(response) if response == expected => return true,
                Ok(other) => log::debug!("vCPU {}: stale response {other:?}", self.id),
                Err(RecvTimeoutError::Disconnected) => return true,
                Err(RecvTimeoutError::Timeout) => {
                    if Instant::now() >= deadline {
                        return false;
                    }
                    self.kick();
                }
            }
        }
    }

    /// Tell the thread to finish and join it.
    pub fn finish(&mut self) {
        let _ = self.events.send(VcpuEvent::Finish);
        let Some(thread) = self.thread.take() else {
            return;
        };
        // The kick is repeated in case the thread was inside a device
        // handler when it came (it then leaves KVM_RUN at its next entry
        // anyway, thanks to immediate_exit) -- but only every KICK_RETRY,
        // as each signal also interrupts a blocking system call there.
        let mut next_kick = Instant::now();
        while !thread.is_finished() {
            if Instant::now() >= next_kick {
                let _ = thread.kill(kick_signal());
                next_kick = Instant::now() + KICK_RETRY;
            }
            std::thread::sleep(FINISH_POLL);
        }
        if thread.join().is_err() {
            log::error!("vCPU {} thread panicked", self.id);
        }
    }
}

impl Drop for VcpuHandle {
    fn drop(&mut self) {
        self.finish();
    }
}
