/* reset: pulse the reset line through the i8042 (command 0xFE to port 0x64).
 * Prints RESET, then the VM must end with a reset. */
#include "rt.h"

#define I8042_COMMAND   0x64
#define I8042_STATUS    0x64
#define I8042_IBF       0x02
#define I8042_RESET     0xfe

void guest_main(void)
{
    int i;
    print("RESET\n");
    for (i = 0; i < 1000 && (inb(I8042_STATUS) & I8042_IBF); i++)
        cpu_relax();
    outb(I8042_COMMAND, I8042_RESET);
    delay_us(1000000);
    fail("still running after the i8042 reset");
}
