/* emufail: run xgetbv (XCR0). On hardware virtualization it works (after
 * enabling CR4.OSXSAVE) and the guest prints XCR0= and exits EXIT_OK; on the
 * kvm-pvm instruction emulator it is an emulation failure and the VM ends
 * with KVM_EXIT_INTERNAL_ERROR at this instruction. Prints EMUFAIL_BEFORE
 * first; NO_XSAVE (exit EXIT_FAIL) on a CPU without XSAVE. */
#include "rt.h"

#define CPUID1_ECX_XSAVE    (1u << 26)
#define CR4_OSXSAVE         (1ull << 18)

void guest_main(void)
{
    u32 a = 1, b, c = 0, d;
    u64 cr4;
    __asm__ volatile("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d));
    if (!(c & CPUID1_ECX_XSAVE))
        fail("NO_XSAVE");
    __asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
    __asm__ volatile("mov %0, %%cr4" : : "r"(cr4 | CR4_OSXSAVE));
    print("EMUFAIL_BEFORE\n");
    c = 0;
    __asm__ volatile("xgetbv" : "=a"(a), "=d"(d) : "c"(c));
    put_kv_hex("XCR0", (u64)d << 32 | a);
    print("EMUFAIL_SURVIVED\n");
}
