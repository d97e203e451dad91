/* The guests' runtime: see rt.h. */
#include "rt.h"

#define COM1            0x3f8
#define UART_IER        1
#define UART_LSR        5
#define UART_LSR_THRE   0x20

/* ACPI 6.5 §5.2 table offsets used here. */
#define RSDP_SIG            "RSD PTR "
#define RSDP_V1_LEN         20
#define RSDP_REVISION       15
#define RSDP_RSDT           16
#define RSDP_LENGTH         20
#define RSDP_XSDT           24
#define FADT_PM1A_CNT_BLK   64
#define FADT_PM_TMR_BLK     76
#define FADT_FLAGS          112
#define FADT_TMR_VAL_EXT    (1u << 8)
#define BIOS_AREA_START     0xe0000
#define BIOS_AREA_END       0x100000
/* src/vmm/layout.rs ACPI_PM1A_CNT_PORT, used when no FADT says otherwise. */
#define DEFAULT_PM1A_CNT    0x604
/* src/vmm/layout.rs ACPI_PM_TMR_PORT, tried when there is no FADT. */
#define DEFAULT_PM_TMR      0x608

/* PVH hvm_start_info.rsdp_paddr, Linux boot_params.acpi_rsdp_addr. */
#define PVH_RSDP_PADDR      24
#define BP_ACPI_RSDP_ADDR   0x70

#define PM_TIMER_HZ         3579545ull

static volatile u32 console_busy;

void console_lock(void)
{
    u32 one = 1;
    for (;;) {
        __asm__ volatile("xchgl %0, %1" : "+r"(one), "+m"(console_busy) : : "memory");
        if (one == 0)
            return;
        one = 1;
        cpu_relax();
    }
}

void console_unlock(void)
{
    barrier();
    console_busy = 0;
}

void print_char(char c)
{
    while (!(inb(COM1 + UART_LSR) & UART_LSR_THRE))
        cpu_relax();
    outb(COM1, (u8)c);
}

void print(const char *s)
{
    while (*s)
        print_char(*s++);
}

void put_hex(u64 v)
{
    char buf[16];
    int n = 0;
    print("0x");
    do {
        buf[n++] = "0123456789abcdef"[v & 0xf];
        v >>= 4;
    } while (v);
    while (n)
        print_char(buf[--n]);
}

void put_dec(u64 v)
{
    char buf[20];
    int n = 0;
    do {
        buf[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        print_char(buf[--n]);
}

void put_kv_hex(const char *key, u64 v)
{
    print(key);
    print_char('=');
    put_hex(v);
    print_char('\n');
}

void put_kv_dec(const char *key, u64 v)
{
    print(key);
    print_char('=');
    put_dec(v);
    print_char('\n');
}

void halt_forever(void)
{
    for (;;)
        __asm__ volatile("cli; hlt");
}

void rt_exit(u8 code)
{
    outb(DEBUG_EXIT_PORT, code);
    /* Only reached where there is no debug-exit device. */
    halt_forever();
}

void fail(const char *why)
{
    print("FAIL: ");
    print(why);
    print_char('\n');
    rt_exit(EXIT_FAIL);
}

void *memset(void *d, int c, usize n)
{
    volatile u8 *p = d;
    while (n--)
        *p++ = (u8)c;
    return d;
}

void *memcpy(void *d, const void *s, usize n)
{
    volatile u8 *p = d;
    const u8 *q = s;
    while (n--)
        *p++ = *q++;
    return d;
}

int memcmp(const void *a, const void *b, usize n)
{
    const u8 *p = a, *q = b;
    for (; n; n--, p++, q++)
        if (*p != *q)
            return *p < *q ? -1 : 1;
    return 0;
}

usize strlen(const char *s)
{
    usize n = 0;
    while (s[n])
        n++;
    return n;
}

u32 fnv1a32(const void *p, u64 len)
{
    const u8 *b = p;
    u32 h = 0x811c9dc5u;
    while (len--) {
        h ^= *b++;
        h *= 0x01000193u;
    }
    return h;
}

int acpi_sum_ok(const void *p, u64 len)
{
    const u8 *b = p;
    u8 sum = 0;
    while (len--)
        sum = (u8)(sum + *b++);
    return sum == 0;
}

static u64 rsdp_cache;

u64 acpi_rsdp(void)
{
    u64 a = 0;
    if (rsdp_cache)
        return rsdp_cache;
    if (boot_entry_kind == ENTRY_PVH)
        a = *(const u64 *)(boot_info_ptr + PVH_RSDP_PADDR);
    else if (boot_info_ptr)
        a = *(const u64 *)(boot_info_ptr + BP_ACPI_RSDP_ADDR);
    if (a && memcmp((const void *)a, RSDP_SIG, 8) == 0) {
        rsdp_cache = a;
        return a;
    }
    for (a = BIOS_AREA_START; a < BIOS_AREA_END; a += 16) {
        if (memcmp((const void *)a, RSDP_SIG, 8) == 0 && acpi_sum_ok((const void *)a, RSDP_V1_LEN)) {
            rsdp_cache = a;
            return a;
        }
    }
    return 0;
}

const struct acpi_sdt *acpi_table(const char *sig)
{
    const u8 *rsdp = (const u8 *)acpi_rsdp();
    const struct acpi_sdt *root;
    int wide;
    u32 n, i;
    if (!rsdp)
        return 0;
    wide = rsdp[RSDP_REVISION] >= 2 && *(const u64 *)(rsdp + RSDP_XSDT) != 0;
    root = wide ? (const struct acpi_sdt *)*(const u64 *)(rsdp + RSDP_XSDT)
                : (const struct acpi_sdt *)(u64)*(const u32 *)(rsdp + RSDP_RSDT);
    n = (root->length - sizeof(struct acpi_sdt)) / (wide ? 8 : 4);
    for (i = 0; i < n; i++) {
        const u8 *entry = (const u8 *)root + sizeof(struct acpi_sdt) + i * (wide ? 8 : 4);
        u64 addr = wide ? *(const u64 *)entry : *(const u32 *)entry;
        const struct acpi_sdt *t = (const struct acpi_sdt *)addr;
        if (addr && memcmp(t->sig, sig, 4) == 0)
            return t;
    }
    return 0;
}

u16 acpi_pm1a_cnt_port(void)
{
    const struct acpi_sdt *fadt = acpi_table("FACP");
    u32 port = fadt ? *(const u32 *)((const u8 *)fadt + FADT_PM1A_CNT_BLK) : 0;
    return port ? (u16)port : DEFAULT_PM1A_CNT;
}

static int pm_timer_probed, pm_timer_ext;
static u16 pm_timer;

u16 acpi_pm_timer_port(void)
{
    if (!pm_timer_probed) {
        const struct acpi_sdt *fadt = acpi_table("FACP");
        pm_timer_probed = 1;
        if (fadt) {
            pm_timer = (u16)*(const u32 *)((const u8 *)fadt + FADT_PM_TMR_BLK);
            pm_timer_ext = (*(const u32 *)((const u8 *)fadt + FADT_FLAGS) & FADT_TMR_VAL_EXT) != 0;
        } else {
            pm_timer = DEFAULT_PM_TMR; /* 24-bit; delay_us notices if it does not tick */
        }
    }
    return pm_timer;
}

static int pm_timer_stuck;

void delay_us(u64 us)
{
    u16 port = acpi_pm_timer_port();
    if (port && !pm_timer_stuck) {
        u32 mask = pm_timer_ext ? 0xffffffffu : 0xffffffu;
        u64 want = us * PM_TIMER_HZ / 1000000 + 1, got = 0;
        u32 last = inl(port) & mask;
        u32 same = 0;
        while (got < want) {
            u32 now = inl(port) & mask;
            if (now == last) {
                if (++same > 100000) {
                    /* A timer that never moves: fall back to the loop below. */
                    pm_timer_stuck = 1;
                    print("NOTE: PM timer does not tick, delays are loops\n");
                    break;
                }
                continue;
            }
            same = 0;
            got += (now - last) & mask;
            last = now;
        }
        if (!pm_timer_stuck)
            return;
    }
    /* Roughly 1 us per iteration under kvm-pvm; much shorter on hardware. */
    for (volatile u64 i = 0; i < us; i++)
        cpu_relax();
}

void rt_main(void)
{
    outb(COM1 + UART_IER, 0); /* polled output, no UART interrupts */
    guest_main();
    rt_exit(EXIT_OK);
}
