/* triplefault: load an IDT with limit 0 and raise #UD (ud2). Delivering #UD
 * faults (#GP), delivering that faults (#DF), and that is a triple fault:
 * the CPU shuts down. Prints TRIPLEFAULT first. */
#include "rt.h"

struct PACKED idt_ptr {
    u16 limit;
    u64 base;
};

void guest_main(void)
{
    static const struct idt_ptr empty = { 0, 0 };
    print("TRIPLEFAULT\n");
    __asm__ volatile("lidt %0\n\tud2" : : "m"(empty));
    fail("survived a fault with an empty IDT");
}
