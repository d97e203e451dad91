/* poweroff: ACPI S5 through PM1a_CNT (ACPI 6.5 §4.8.3.2.1: SLP_TYP in bits
 * 10..12, SLP_EN bit 13). The port comes from the FADT (default 0x604, the
 * layout's ACPI_PM1A_CNT_PORT) and SLP_TYP from the DSDT's \_S5 package;
 * without one we assume SLP_TYP = 5, the value xhyve-manager's DSDT is meant
 * to declare. Prints S5_SLP_TYP=, PM1A_CNT=, then POWEROFF. */
#include "rt.h"
#include "s5.h"

#define SLP_TYP_SHIFT   10
#define SLP_EN          (1u << 13)
#define ASSUMED_S5      5

void guest_main(void)
{
    const struct acpi_sdt *fadt = acpi_table("FACP");
    u16 port = acpi_pm1a_cnt_port();
    int typ = -1;
    if (fadt && fadt_dsdt(fadt))
        typ = acpi_s5_slp_typ(fadt_dsdt(fadt));
    if (typ < 0) {
        print("NOTE: no \\_S5 found, assuming SLP_TYP=5\n");
        typ = ASSUMED_S5;
    }
    put_kv_dec("S5_SLP_TYP", (u64)typ);
    put_kv_hex("PM1A_CNT", port);
    print("POWEROFF\n");
    outw(port, (u16)(((u32)typ << SLP_TYP_SHIFT) | SLP_EN));
    delay_us(1000000);
    fail("still running after the S5 write");
}
