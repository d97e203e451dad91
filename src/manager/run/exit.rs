//! How a VM ended, as the exit status of `start` and as text.
//!
//! | status | meaning |
//! |---|---|
//! | 0 | the guest powered off (ACPI S5), or `stop`/the console escape ended it |
//! | 1 | the VMM failed, or `start` failed before the guest ran |
//! | 2 | the guest asked for a reset (reboot); the VM is not restarted |
//! | 3 | the guest crashed: triple fault, or KVM could not run it |
//! | 4 + c | the guest wrote `c` to the debug-exit port 0xf4 (c ≤ 250; larger c gives 255) |

use crate::vmm::ExitReason;

/// Clean end: poweroff or stop.
pub const EXIT_OK: u8 = 0;
/// The VMM itself failed (also any error before the guest ran).
pub const EXIT_VMM_ERROR: u8 = 1;
/// The guest rebooted.
pub const EXIT_RESET: u8 = 2;
/// Triple fault or a guest KVM could not run.
pub const EXIT_GUEST_CRASH: u8 = 3;
/// Debug-exit code `c` ends `start` with `EXIT_DEBUG_BASE + c`.
pub const EXIT_DEBUG_BASE: u8 = 4;

/// The exit status of `start` for `reason`.
pub fn exit_status(reason: &ExitReason) -> u8 {
    match reason {
        ExitReason::PowerOff | ExitReason::Stopped => EXIT_OK,
        ExitReason::VmmError { .. } => EXIT_VMM_ERROR,
        ExitReason::Reset => EXIT_RESET,
        ExitReason::TripleFault { .. } | ExitReason::GuestError { .. } => EXIT_GUEST_CRASH,
        ExitReason::DebugExit { code } => {
            let status = u32::from(EXIT_DEBUG_BASE).saturating_add(*code);
            u8::try_from(status).unwrap_or(u8::MAX)
        }
    }
}

/// Did the run end in a way `list` shows as `crashed`?
pub fn is_crash(reason: &ExitReason) -> bool {
    matches!(
        reason,
        ExitReason::TripleFault { .. }
            | ExitReason::GuestError { .. }
            | ExitReason::VmmError { .. }
    )
}

/// Is this a clean end that needs no message?
pub fn is_clean(reason: &ExitReason) -> bool {
    matches!(reason, ExitReason::PowerOff | ExitReason::Stopped)
}

/// One line of text for `reason`.
pub fn describe(reason: &ExitReason) -> String {
    match reason {
        ExitReason::PowerOff => "the guest powered off".into(),
        ExitReason::Stopped => "stopped".into(),
        ExitReason::Reset => "the guest rebooted (reset); the VM was not restarted".into(),
        ExitReason::DebugExit { code } => format!("the guest wrote {code} to the debug-exit port"),
        ExitReason::TripleFault { vcpu } => format!("triple fault on vCPU {vcpu}"),
        ExitReason::GuestError {
            vcpu,
            exit,
            rip,
            insn,
        } => {
            let bytes: Vec<String> = insn.iter().map(|b| format!("{b:02x}")).collect();
            format!(
                "KVM could not run vCPU {vcpu}: {exit} at RIP {rip:#x} (instruction bytes: {})",
                if bytes.is_empty() {
                    "unreadable".to_string()
                } else {
                    bytes.join(" ")
                }
            )
        }
        ExitReason::VmmError { message } => format!("VMM error: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_documented_table() {
        assert_eq!(exit_status(&ExitReason::PowerOff), 0);
        assert_eq!(exit_status(&ExitReason::Stopped), 0);
        let vmm = ExitReason::VmmError {
            message: "x".into(),
        };
        assert_eq!(exit_status(&vmm), 1);
        assert_eq!(exit_status(&ExitReason::Reset), 2);
        assert_eq!(exit_status(&ExitReason::TripleFault { vcpu: 1 }), 3);
        assert_eq!(exit_status(&ExitReason::DebugExit { code: 0 }), 4);
        assert_eq!(exit_status(&ExitReason::DebugExit { code: 250 }), 254);
        assert_eq!(exit_status(&ExitReason::DebugExit { code: 251 }), 255);
        assert_eq!(exit_status(&ExitReason::DebugExit { code: u32::MAX }), 255);
    }

    #[test]
    fn crashes_and_clean_ends() {
        assert!(is_crash(&ExitReason::TripleFault { vcpu: 0 }));
        assert!(!is_crash(&ExitReason::Reset));
        assert!(is_clean(&ExitReason::Stopped));
        assert!(!is_clean(&ExitReason::DebugExit { code: 0 }));
    }

    #[test]
    fn guest_error_names_vcpu_rip_and_bytes() {
        let text = describe(&ExitReason::GuestError {
            vcpu: 2,
            exit: "KVM_EXIT_INTERNAL_ERROR".into(),
            rip: 0x1000,
            insn: vec![0x0f, 0x01],
        });
        assert!(text.contains("vCPU 2"), "{text}");
        assert!(text.contains("0x1000"), "{text}");
        assert!(text.contains("0f 01"), "{text}");
    }
}
