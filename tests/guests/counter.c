/* counter: print "count=N" with N = 0, 1, 2, ... every ~20 ms, forever.
 * Paced by the ACPI PM timer (FADT PM_TMR_BLK, 3.579545 MHz) so the rate
 * does not depend on how fast the CPU runs instructions. */
#include "rt.h"

#define PERIOD_US 20000

void guest_main(void)
{
    u64 n;
    put_kv_hex("PM_TIMER", acpi_pm_timer_port());
    for (n = 0;; n++) {
        put_kv_dec("count", n);
        delay_us(PERIOD_US);
    }
}
