/* smp: start every other CPU the MADT lists with INIT / SIPI / SIPI through
 * the local APIC's ICR (Intel SDM vol. 3 §9.4.4), on a real-mode trampoline
 * copied to 0x10000 (smp_tramp.S). Each AP increments a counter with a
 * locked add and prints "AP <apic id> up"; the BSP waits for all of them and
 * prints CPUS_UP=N (N counts the BSP). After 10 s of PM-timer time without
 * everyone it prints CPUS_UP=N and SMP_TIMEOUT and exits EXIT_FAIL. */
#include "rt.h"

#define TRAMP_BASE          0x10000   /* must match smp_tramp.S */
#define AP_MAX              16        /* must match smp_tramp.S */
#define LAPIC_DEFAULT       0xfee00000ull
#define LAPIC_ID            0x020
#define LAPIC_SVR           0x0f0
#define LAPIC_ICR_LO        0x300
#define LAPIC_ICR_HI        0x310
#define SVR_ENABLE          0x100
#define SVR_SPURIOUS_VECTOR 0xff
#define ICR_INIT            0x00000500u
#define ICR_STARTUP         0x00000600u
#define ICR_LEVEL_ASSERT    0x00004000u
#define ICR_BUSY            0x00001000u
#define MADT_LAPIC_ADDR     36
#define MADT_ENTRIES        44
#define MADT_LAPIC          0
#define MADT_ENABLED        1u
#define WAIT_STEP_US        10000
#define WAIT_LIMIT_STEPS    1000      /* 10 s */

extern const u8 smp_tramp_start[], smp_tramp_end[];
static volatile u32 aps_up;
static u64 lapic = LAPIC_DEFAULT;

static u32 lapic_id(void)
{
    return mmio_read32(lapic + LAPIC_ID) >> 24;
}

static void send_ipi(u32 apic_id, u32 icr)
{
    int i;
    mmio_write32(lapic + LAPIC_ICR_HI, apic_id << 24);
    mmio_write32(lapic + LAPIC_ICR_LO, icr);
    for (i = 0; i < 100000 && (mmio_read32(lapic + LAPIC_ICR_LO) & ICR_BUSY); i++)
        cpu_relax();
}

void ap_main(u32 slot)
{
    u32 id = lapic_id();
    (void)slot;
    console_lock();
    print("AP ");
    put_dec(id);
    print(" up\n");
    console_unlock();
    atomic_inc(&aps_up);
    halt_forever();
}

void guest_main(void)
{
    const struct acpi_sdt *madt = acpi_table("APIC");
    const u8 *p, *end;
    u32 bsp, cpus = 0, steps;

    if (!madt)
        fail("no MADT");
    lapic = *(const u32 *)((const u8 *)madt + MADT_LAPIC_ADDR);
    bsp = lapic_id();
    put_kv_dec("BSP", bsp);
    memcpy((void *)TRAMP_BASE, smp_tramp_start, (usize)(smp_tramp_end - smp_tramp_start));
    barrier();
    mmio_write32(lapic + LAPIC_SVR, SVR_ENABLE | SVR_SPURIOUS_VECTOR);

    end = (const u8 *)madt + madt->length;
    for (p = (const u8 *)madt + MADT_ENTRIES; p + 2 <= end && p[1] >= 2; p += p[1]) {
        u32 id;
        if (p[0] != MADT_LAPIC || !(*(const u32 *)(p + 4) & MADT_ENABLED))
            continue;
        cpus++;
        id = p[3];
        if (id == bsp)
            continue;
        if (cpus > AP_MAX + 1)
            fail("more CPUs than the guest has AP stacks");
        console_lock();
        put_kv_dec("STARTING", id);
        console_unlock();
        send_ipi(id, ICR_INIT | ICR_LEVEL_ASSERT);
        delay_us(10000);
        send_ipi(id, ICR_STARTUP | (TRAMP_BASE >> 12));
        delay_us(200);
        send_ipi(id, ICR_STARTUP | (TRAMP_BASE >> 12));
    }
    for (steps = 0; aps_up + 1 < cpus && steps < WAIT_LIMIT_STEPS; steps++)
        delay_us(WAIT_STEP_US);
    console_lock();
    put_kv_dec("CPUS_UP", aps_up + 1);
    if (aps_up + 1 < cpus) {
        put_kv_dec("CPUS_EXPECTED", cpus);
        print("SMP_TIMEOUT\n");
        rt_exit(EXIT_FAIL);
    }
    console_unlock();
}
