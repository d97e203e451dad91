/* acpid: honours the ACPI power button the way an OS's ACPI driver does,
 * so that a graceful `stop` can be tested end to end.
 *
 * From the FADT it takes the PM1a event block (status in its first half,
 * enable in its second; ACPI 6.5 §4.8.3.1) and the SCI's GSI. It sets
 * PWRBTN_EN, routes the SCI through the IOAPIC to a vector on this CPU
 * (edge, active high, as the MADT's override declares) and waits with
 * interrupts off: a delivered SCI stays pending in the LAPIC's IRR, which
 * shows it arrived without needing an IDT. When PWRBTN_STS appears it is
 * acknowledged (write 1 to clear) and the guest powers off through S5.
 *
 * Prints: PM1A_EVT=, SCI=, WAITING_FOR_POWER_BUTTON, POWER_BUTTON,
 * SCI_PENDING=0|1, PWRBTN_STS_AFTER_ACK=0|1, POWEROFF. */
#include "rt.h"
#include "apic.h"
#include "s5.h"

/* FADT field offsets (ACPI 6.5 table 5.9). */
#define FADT_SCI_INT        46
#define FADT_PM1A_EVT_BLK   56
#define FADT_PM1_EVT_LEN    88

/* PM1 status/enable bits (ACPI 6.5 tables 4.13, 4.14). */
#define PWRBTN              (1u << 8)

/* PM1 control: SLP_TYP in bits 10..12, SLP_EN bit 13 (§4.8.3.2.1). */
#define SLP_TYP_SHIFT       10
#define SLP_EN              (1u << 13)


#define SCI_VECTOR          0x40
/* How long the SCI may take to arrive after PWRBTN_STS reads as set. */
#define IRQ_WAIT_MS         1000

void guest_main(void)
{
    const u8 *fadt = (const u8 *)acpi_table("FACP");
    if (!fadt)
        fail("no FADT");
    u16 evt = (u16)*(const u32 *)(fadt + FADT_PM1A_EVT_BLK);
    u8 evt_len = fadt[FADT_PM1_EVT_LEN];
    u16 sci = *(const u16 *)(fadt + FADT_SCI_INT);
    if (evt == 0 || evt_len < 4)
        fail("no PM1a event block in the FADT");
    u16 sts_port = evt;
    u16 en_port = (u16)(evt + evt_len / 2);
    put_kv_hex("PM1A_EVT", evt);
    put_kv_dec("SCI", sci);

    /* LAPIC on, SCI pin -> SCI_VECTOR on APIC 0, fixed, physical, edge, high. */
    route_gsi_to_vector(sci, SCI_VECTOR);

    outw(sts_port, PWRBTN); /* clear anything stale */
    outw(en_port, (u16)(inw(en_port) | PWRBTN));
    print("WAITING_FOR_POWER_BUTTON\n");
    while (!(inw(sts_port) & PWRBTN))
        delay_us(1000);
    print("POWER_BUTTON\n");
    put_kv_dec("SCI_PENDING", (u64)wait_vector_pending(SCI_VECTOR, IRQ_WAIT_MS));
    outw(sts_port, PWRBTN);
    put_kv_dec("PWRBTN_STS_AFTER_ACK", (inw(sts_port) & PWRBTN) ? 1 : 0);

    const struct acpi_sdt *dsdt = fadt_dsdt((const struct acpi_sdt *)fadt);
    int typ = dsdt ? acpi_s5_slp_typ(dsdt) : -1;
    if (typ < 0)
        fail("no \\_S5 in the DSDT");
    print("POWEROFF\n");
    outw(acpi_pm1a_cnt_port(), (u16)(((u32)typ << SLP_TYP_SHIFT) | SLP_EN));
    delay_us(1000000);
    fail("still running after the S5 write");
}
