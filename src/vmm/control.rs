//! The VM lifecycle and the messages that drive it.
//!
//! `VmState` is the state machine (Created -> Running <-> Paused -> Stopped);
//! `Command`/`Response` travel on the in-process control channel that the
//! manager's control socket exposes to other processes.

use serde::{Deserialize, Serialize};

/// Lifecycle state of a VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VmState {
    Created,
    Running,
    Paused,
    Stopped,
}

/// A request to a running VM.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Stop every vCPU; the VM keeps its memory and devices.
    Pause,
    /// Let every vCPU run again.
    Resume,
    /// Ask the guest to power off (ACPI power button).
    PowerButton,
    /// Ask the guest to reboot (Ctrl-Alt-Del through the i8042).
    CtrlAltDel,
    /// End the VM now.
    Stop,
    /// Report state.
    Status,
}

/// Why the VM ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ExitReason {
    /// The guest powered off (ACPI S5).
    PowerOff,
    /// The guest asked for a reset (i8042 0xFE, port 0xCF9, ACPI reset).
    Reset,
    /// A guest wrote `code` to `layout::DEBUG_EXIT_PORT`.
    DebugExit { code: u32 },
    /// `Command::Stop` ended it.
    Stopped,
    /// KVM reported a shutdown (triple fault) on a vCPU.
    TripleFault { vcpu: u8 },
    /// KVM could not run the guest (KVM_EXIT_INTERNAL_ERROR, FAIL_ENTRY, ...).
    GuestError {
        vcpu: u8,
        exit: String,
        rip: u64,
        /// Instruction bytes at RIP, when they could be read.
        insn: Vec<u8>,
    },
    /// The VMM itself failed.
    VmmError { message: String },
}

/// Answer to `Command::Status` (and part of the socket protocol).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmStatus {
    pub name: String,
    pub state: VmState,
    pub vcpus: u8,
    pub memory_mib: u64,
    /// Seconds since the VM started running.
    pub uptime_secs: u64,
    pub exit_reason: Option<ExitReason>,
}

/// A response on the control channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Ok,
    Status(VmStatus),
}

impl VmState {
    /// The state `command` leads to from `self`, or `None` when the command
    /// is not allowed in this state (e.g. `Resume` while running, anything
    /// but `Status` once stopped).
    ///
    /// Commands that do not change the state (`Status`, and the guest
    /// notifications `PowerButton`/`CtrlAltDel` while running) map to the
    /// same state. A paused guest cannot react to a power button or
    /// Ctrl-Alt-Del, so those are refused until it is resumed.
    pub fn after(self, command: &Command) -> Option<VmState> {
        use Command::*;
        use VmState::*;
        match (self, command) {
            (state, Status) => Some(state),
            (Created | Running | Paused, Stop) => Some(Stopped),
            (Running, Pause) => Some(Paused),
            (Paused, Resume) => Some(Running),
            (Running, PowerButton | CtrlAltDel) => Some(Running),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_transitions() {
        use Command::*;
        use VmState::*;
        assert_eq!(Running.after(&Pause), Some(Paused));
        assert_eq!(Paused.after(&Resume), Some(Running));
        assert_eq!(Running.after(&Stop), Some(Stopped));
        assert_eq!(Paused.after(&Stop), Some(Stopped));
        assert_eq!(Created.after(&Stop), Some(Stopped));
        assert_eq!(Running.after(&PowerButton), Some(Running));
        assert_eq!(Running.after(&CtrlAltDel), Some(Running));
        assert_eq!(Stopped.after(&Status), Some(Stopped));
        assert_eq!(Paused.after(&Status), Some(Paused));
        // Illegal ones.
        assert_eq!(Running.after(&Resume), None);
        assert_eq!(Paused.after(&Pause), None);
        assert_eq!(Paused.after(&PowerButton), None);
        assert_eq!(Created.after(&Pause), None);
        for command in [Pause, Resume, PowerButton, CtrlAltDel, Stop] {
            assert_eq!(Stopped.after(&command), None, "{command:?} when stopped");
        }
    }
}
