/* spin: print SPINNING, then loop forever with interrupts off. Only a stop
 * from outside ends it. */
#include "rt.h"

void guest_main(void)
{
    print("SPINNING\n");
    __asm__ volatile("cli\n1:\tjmp 1b");
}
