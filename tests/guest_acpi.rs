//! The ACPI tables describe the VM (checked from inside by the acpi guest),
//! and every vCPU they list can be started with INIT/SIPI (the smp guest).

mod common;

use std::time::Duration;

use common::parse_num;
use xhyve_manager::vmm::layout::{
    ACPI_PM_TMR_PORT, ACPI_PM1A_CNT_PORT, ACPI_SCI_IRQ, IOAPIC_START, LAPIC_START, RSDP_START,
};

const TIMEOUT: Duration = Duration::from_secs(120);

fn acpi_run(vcpus: u8) -> common::GuestRun {
    let mut c = common::vm_config(&format!("acpi-{vcpus}"), "acpi");
    c.vcpus = vcpus;
    let run = common::run_guest(c, TIMEOUT);
    run.assert_ok();
    run
}

#[test]
fn acpi_tables_have_valid_checksums_and_describe_the_vm() {
    common::host_kind();
    let run = acpi_run(2);
    let s = &run.serial;
    assert_eq!(run.value("ACPI_CHECKSUMS"), "ok", "{s}");
    assert_eq!(parse_num(&run.value("ACPI_RSDP")), RSDP_START, "{s}");
    assert_eq!(run.value("ACPI_CPUS"), "2", "{s}");
    assert_eq!(
        run.values("LAPIC"),
        ["0", "1"],
        "APIC IDs 0..vcpus; serial:\n{s}"
    );
    assert_eq!(parse_num(&run.value("IOAPIC")), IOAPIC_START, "{s}");
    assert_eq!(parse_num(&run.value("MADT_LAPIC_ADDR")), LAPIC_START, "{s}");
    assert_eq!(
        parse_num(&run.value("FADT_PM1A_CNT")),
        u64::from(ACPI_PM1A_CNT_PORT),
        "{s}"
    );
    assert_eq!(
        parse_num(&run.value("FADT_PM_TMR")),
        u64::from(ACPI_PM_TMR_PORT),
        "{s}"
    );
    assert_eq!(
        parse_num(&run.value("FADT_SCI")),
        u64::from(ACPI_SCI_IRQ),
        "{s}"
    );
    let tables: Vec<String> = run
        .values("ACPI_TABLE")
        .iter()
        .map(|t| t.split(',').next().unwrap().to_string())
        .collect();
    for sig in ["XSDT", "FACP", "APIC", "DSDT"] {
        assert!(
            tables.iter().any(|t| t == sig),
            "no {sig} table; serial:\n{s}"
        );
    }
    // \_S5 must exist for the guest to power off the ACPI way.
    let s5 = run.value("S5_SLP_TYP");
    assert!(
        s5.parse::<u8>().is_ok_and(|v| v < 8),
        "\\_S5 SLP_TYP {s5:?}; serial:\n{s}"
    );
}

#[test]
fn madt_lists_one_enabled_lapic_per_vcpu() {
    for vcpus in [1u8, 4] {
        let run = acpi_run(vcpus);
        assert_eq!(run.value("ACPI_CPUS"), vcpus.to_string(), "{}", run.serial);
        let ids: Vec<String> = (0..vcpus).map(|i| i.to_string()).collect();
        assert_eq!(run.values("LAPIC"), ids, "{}", run.serial);
    }
}

#[test]
fn smp_guest_starts_every_ap_with_init_sipi() {
    let vcpus = 2u8;
    let mut c = common::vm_config("smp", "smp");
    c.vcpus = vcpus;
    let run = common::run_guest(c, TIMEOUT);
    run.assert_ok();
    assert_eq!(run.value("CPUS_UP"), vcpus.to_string(), "{}", run.serial);
    assert!(run.serial.contains("AP 1 up"), "{}", run.serial);
}

#[test]
fn smp_guest_with_one_cpu_starts_no_ap() {
    let run = common::run_guest(common::vm_config("smp1", "smp"), TIMEOUT);
    run.assert_ok();
    assert_eq!(run.value("CPUS_UP"), "1", "{}", run.serial);
    assert!(!run.serial.contains("AP "), "{}", run.serial);
}

#[test]
fn smp_guest_starts_four_cpus() {
    let mut c = common::vm_config("smp4", "smp");
    c.vcpus = 4;
    let run = common::run_guest(c, TIMEOUT);
    run.assert_ok();
    assert_eq!(run.value("CPUS_UP"), "4", "{}", run.serial);
    for ap in 1..4 {
        assert!(
            run.serial.contains(&format!("AP {ap} up")),
            "AP {ap}; serial:\n{}",
            run.serial
        );
    }
}
