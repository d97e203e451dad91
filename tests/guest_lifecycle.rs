//! The ways a guest can end a VM (reset, ACPI S5, triple fault, emulation
//! failure, debug port) and the ways the manager can (Command::Stop), plus a
//! guest that keeps running while the test watches its output.

mod common;

use std::time::Duration;

use common::HostKind;
use xhyve_manager::vmm::{Command, ExitReason, Response};

const TIMEOUT: Duration = Duration::from_secs(60);
/// xgetbv: 0f 01 d0.
const XGETBV: [u8; 3] = [0x0f, 0x01, 0xd0];

#[test]
fn i8042_reset_ends_the_vm_with_reset() {
    let run = common::run_guest(common::vm_config("reset", "reset"), TIMEOUT);
    assert_eq!(run.exit, ExitReason::Reset, "{}", run.serial);
    assert!(run.serial.contains("RESET"), "{}", run.serial);
}

#[test]
fn acpi_s5_powers_the_vm_off() {
    let run = common::run_guest(common::vm_config("poweroff", "poweroff"), TIMEOUT);
    assert_eq!(run.exit, ExitReason::PowerOff, "{}", run.serial);
    assert!(run.serial.contains("POWEROFF"), "{}", run.serial);
    // SLP_TYP read from the DSDT's \\_S5, not assumed.
    assert!(!run.serial.contains("NOTE"), "{}", run.serial);
    assert_eq!(
        common::parse_num(&run.value("S5_SLP_TYP")),
        u64::from(xhyve_manager::vmm::devices::legacy::SLP_TYP_S5)
    );
    assert_eq!(
        common::parse_num(&run.value("PM1A_CNT")),
        u64::from(xhyve_manager::vmm::layout::ACPI_PM1A_CNT_PORT)
    );
}

#[test]
fn triple_fault_is_reported_with_its_vcpu() {
    let run = common::run_guest(common::vm_config("triplefault", "triplefault"), TIMEOUT);
    assert_eq!(
        run.exit,
        ExitReason::TripleFault { vcpu: 0 },
        "{}",
        run.serial
    );
    assert!(run.serial.contains("TRIPLEFAULT"), "{}", run.serial);
}

#[test]
fn spinning_guest_ends_only_by_stop() {
    let mut vm = common::start_guest(common::vm_config("spin", "spin"));
    vm.wait_for_serial("SPINNING", TIMEOUT);
    // Still running a while later: nothing ends it but us.
    assert!(!vm.capture().wait_for("FAIL", Duration::from_millis(500)));
    assert_eq!(
        vm.exit_reason(),
        None,
        "spin guest ended by itself:\n{}",
        vm.serial()
    );
    let run = vm.stop();
    assert_eq!(run.exit, ExitReason::Stopped, "{}", run.serial);
}

#[test]
fn counter_keeps_counting_until_stopped() {
    let mut vm = common::start_guest(common::vm_config("counter", "counter"));
    let serial = vm.wait_for_serial("count=5\n", TIMEOUT);
    assert!(vm.exit_reason().is_none(), "counter ended:\n{serial}");
    let run = vm.stop();
    assert_eq!(run.exit, ExitReason::Stopped, "{}", run.serial);
    let counts: Vec<u64> = run
        .values("count")
        .iter()
        .map(|v| common::parse_num(v))
        .collect();
    assert!(counts.len() >= 6, "{}", run.serial);
    for (i, n) in counts.iter().enumerate() {
        assert_eq!(*n, i as u64, "count lines out of order:\n{}", run.serial);
    }
}

#[test]
fn unsupported_instruction_is_an_emulation_failure_or_runs() {
    let host = common::host_kind();
    let run = common::run_guest(common::vm_config("emufail", "emufail"), TIMEOUT);
    assert!(run.serial.contains("EMUFAIL_BEFORE"), "{}", run.serial);
    match &run.exit {
        ExitReason::GuestError {
            vcpu,
            insn,
            rip,
            exit,
        } => {
            eprintln!("emufail: emulation failure ({exit}) at {rip:#x}, insn {insn:02x?}");
            assert_ne!(
                host,
                HostKind::HardwareVirt,
                "xgetbv failed on hardware virtualization"
            );
            assert_eq!(*vcpu, 0);
            assert!(
                insn.starts_with(&XGETBV),
                "stopped at {insn:02x?}, not at xgetbv"
            );
            assert!(!run.serial.contains("EMUFAIL_SURVIVED"), "{}", run.serial);
        }
        ExitReason::DebugExit { code } => {
            eprintln!("emufail: xgetbv ran (XCR0={})", run.value("XCR0"));
            assert_eq!(*code, common::EXIT_OK, "{}", run.serial);
            assert_ne!(host, HostKind::KvmPvm, "xgetbv ran on kvm-pvm");
            // XCR0 always has x87 (bit 0) set.
            assert_eq!(
                common::parse_num(&run.value("XCR0")) & 1,
                1,
                "{}",
                run.serial
            );
        }
        other => panic!("unexpected exit {other:?}; serial:\n{}", run.serial),
    }
}

/// The highest `count=N` printed so far.
fn last_count(serial: &str) -> Option<u64> {
    common::values(serial, "count")
        .iter()
        .map(|v| common::parse_num(v))
        .max()
}

#[test]
fn paused_guest_does_not_run_until_resumed() {
    let mut vm = common::start_guest(common::vm_config("counter-pause", "counter"));
    vm.wait_for_serial("count=2\n", TIMEOUT);
    assert_eq!(vm.request(Command::Pause), Response::Ok);
    // Output already on its way may still arrive; after that, nothing.
    let before = vm.serial();
    std::thread::sleep(Duration::from_millis(200));
    let paused = vm.serial();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        vm.serial(),
        paused,
        "the guest printed while paused (before: {before:?})"
    );
    let last = last_count(&paused).expect("no count line");
    assert_eq!(vm.request(Command::Resume), Response::Ok);
    vm.wait_for_serial(&format!("count={}\n", last + 2), TIMEOUT);
    let run = vm.stop();
    assert_eq!(run.exit, ExitReason::Stopped, "{}", run.serial);
}

#[test]
fn console_input_reaches_the_guest() {
    let mut vm = common::start_guest(common::vm_config("echo", "echo"));
    vm.wait_for_serial("READY\n", TIMEOUT);
    let input = vm.handle().console_input();
    input.send(b"hello guest\n");
    vm.wait_for_serial("ECHO=hello guest\n", TIMEOUT);
    input.send(b"second line\r\nexit\n");
    let run = vm.wait_exit(TIMEOUT);
    run.assert_ok();
    assert_eq!(run.values("ECHO"), ["hello guest", "second line", "exit"]);
}

/// The ACPI power button (what `stop` presses first) reaches a guest that
/// honours it: PWRBTN_STS is set, the SCI is delivered through the IOAPIC,
/// and the guest's S5 ends the VM with PowerOff.
#[test]
fn power_button_reaches_a_guest_that_honours_it() {
    let mut vm = common::start_guest(common::vm_config("acpid", "acpid"));
    vm.wait_for_serial("WAITING_FOR_POWER_BUTTON\n", TIMEOUT);
    vm.request(Command::PowerButton);
    let run = vm.wait_exit(TIMEOUT);
    assert_eq!(run.exit, ExitReason::PowerOff, "{}", run.serial);
    assert_eq!(run.values("SCI"), ["9"], "{}", run.serial);
    assert_eq!(
        run.values("SCI_PENDING"),
        ["1"],
        "the SCI reached the LAPIC:\n{}",
        run.serial
    );
    assert_eq!(run.values("PWRBTN_STS_AFTER_ACK"), ["0"], "{}", run.serial);
}

#[test]
fn ctrl_alt_del_reaches_a_guest_through_the_i8042() {
    let mut vm = common::start_guest(common::vm_config("cad", "cad"));
    vm.wait_for_serial("WAITING_FOR_CAD\n", TIMEOUT);
    assert_eq!(vm.request(Command::CtrlAltDel), Response::Ok);
    let run = vm.wait_exit(TIMEOUT);
    assert_eq!(run.exit, ExitReason::Reset, "{}", run.serial);
    assert!(run.serial.contains("\nCTRL_ALT_DEL\n"), "{}", run.serial);
    // The power-on command byte translates to set 1, and the guest keeps it.
    assert_eq!(run.values("SCANCODE_SET"), ["1"], "{}", run.serial);
    assert_eq!(
        run.values("CAD_SCANCODES"),
        ["1d,38,e0,53,e0,d3,b8,9d"],
        "LCtrl, LAlt, E0 Del pressed, then released in reverse:\n{}",
        run.serial
    );
    assert_eq!(
        run.values("KBD_IRQ_PENDING_BEFORE"),
        ["0"],
        "{}",
        run.serial
    );
    assert_eq!(
        run.values("KBD_IRQ_PENDING"),
        ["1"],
        "IRQ 1 reached the LAPIC through the IOAPIC:\n{}",
        run.serial
    );
}
