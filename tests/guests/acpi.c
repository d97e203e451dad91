/* acpi: walk RSDP -> XSDT (or RSDT) -> every table, FADT -> DSDT, MADT.
 *
 * Prints:
 *   ACPI_RSDP=0x..            and ACPI_REVISION=n
 *   ACPI_TABLE=SIG,addr,len   for the root table, every listed table and the DSDT
 *   FADT_PM1A_CNT=0x..  FADT_PM_TMR=0x..  FADT_SCI=n
 *   LAPIC=apic_id             one per enabled MADT processor entry
 *   ACPI_CPUS=N               enabled LAPIC (and x2APIC) entries
 *   IOAPIC=0x..               address of the (first) MADT IOAPIC entry
 *   S5_SLP_TYP=n              from the DSDT's \_S5 package, or S5_SLP_TYP=none
 *   ACPI_CHECKSUMS=ok         or =bad (then exits EXIT_FAIL)
 */
#include "rt.h"
#include "s5.h"

#define RSDP_V1_LEN         20
#define RSDP_REVISION       15
#define RSDP_RSDT           16
#define RSDP_LENGTH         20
#define RSDP_XSDT           24
#define FADT_DSDT           40
#define FADT_SCI_INT        46
#define FADT_PM1A_CNT_BLK   64
#define FADT_PM_TMR_BLK     76
#define FADT_X_DSDT         140
#define MADT_ENTRIES        44
#define MADT_LAPIC          0
#define MADT_IOAPIC         1
#define MADT_X2APIC         9
#define MADT_ENABLED        1u
#define MADT_ONLINE_CAPABLE 2u

static int bad;

static void table(const char *sig, u64 addr)
{
    const struct acpi_sdt *t = (const void *)addr;
    print("ACPI_TABLE=");
    print_char(sig[0]);
    print_char(sig[1]);
    print_char(sig[2]);
    print_char(sig[3]);
    print_char(',');
    put_hex(addr);
    print_char(',');
    put_hex(t->length);
    print_char('\n');
    if (memcmp(t->sig, sig, 4) != 0) {
        print("BAD_SIGNATURE\n");
        bad = 1;
    }
    if (!acpi_sum_ok(t, t->length)) {
        print("BAD_CHECKSUM\n");
        bad = 1;
    }
}

static void madt(const struct acpi_sdt *m)
{
    const u8 *p = (const u8 *)m + MADT_ENTRIES, *end = (const u8 *)m + m->length;
    u32 cpus = 0;
    u64 ioapic = 0;
    put_kv_hex("MADT_LAPIC_ADDR", *(const u32 *)((const u8 *)m + 36));
    while (p + 2 <= end && p[1] >= 2) {
        if (p[0] == MADT_LAPIC && (*(const u32 *)(p + 4) & (MADT_ENABLED | MADT_ONLINE_CAPABLE))) {
            put_kv_dec("LAPIC", p[3]);
            if (*(const u32 *)(p + 4) & MADT_ENABLED)
                cpus++;
        } else if (p[0] == MADT_X2APIC && (*(const u32 *)(p + 8) & MADT_ENABLED)) {
            put_kv_dec("X2APIC", *(const u32 *)(p + 4));
            cpus++;
        } else if (p[0] == MADT_IOAPIC && !ioapic) {
            ioapic = *(const u32 *)(p + 4);
        }
        p += p[1];
    }
    put_kv_dec("ACPI_CPUS", cpus);
    if (ioapic)
        put_kv_hex("IOAPIC", ioapic);
    else
        print("IOAPIC=none\n");
}

void guest_main(void)
{
    const u8 *rsdp = (const u8 *)acpi_rsdp();
    const struct acpi_sdt *root, *fadt = 0, *m = 0;
    u64 dsdt = 0;
    int wide;
    u32 n, i;
    int s5;

    if (!rsdp)
        fail("no RSDP");
    put_kv_hex("ACPI_RSDP", (u64)rsdp);
    put_kv_dec("ACPI_REVISION", rsdp[RSDP_REVISION]);
    if (!acpi_sum_ok(rsdp, RSDP_V1_LEN) ||
        (rsdp[RSDP_REVISION] >= 2 && !acpi_sum_ok(rsdp, *(const u32 *)(rsdp + RSDP_LENGTH)))) {
        print("BAD_CHECKSUM RSDP\n");
        bad = 1;
    }
    wide = rsdp[RSDP_REVISION] >= 2 && *(const u64 *)(rsdp + RSDP_XSDT) != 0;
    root = wide ? (const void *)*(const u64 *)(rsdp + RSDP_XSDT)
                : (const void *)(u64)*(const u32 *)(rsdp + RSDP_RSDT);
    table(wide ? "XSDT" : "RSDT", (u64)root);
    n = (root->length - sizeof(struct acpi_sdt)) / (wide ? 8 : 4);
    for (i = 0; i < n; i++) {
        const u8 *e = (const u8 *)root + sizeof(struct acpi_sdt) + i * (wide ? 8 : 4);
        u64 addr = wide ? *(const u64 *)e : *(const u32 *)e;
        const struct acpi_sdt *t = (const void *)addr;
        table(t->sig, addr);
        if (memcmp(t->sig, "FACP", 4) == 0)
            fadt = t;
        if (memcmp(t->sig, "APIC", 4) == 0)
            m = t;
    }
    if (!fadt)
        fail("no FADT");
    if (fadt->length >= FADT_X_DSDT + 8)
        dsdt = *(const u64 *)((const u8 *)fadt + FADT_X_DSDT);
    if (!dsdt)
        dsdt = *(const u32 *)((const u8 *)fadt + FADT_DSDT);
    if (!dsdt)
        fail("FADT has no DSDT");
    table("DSDT", dsdt);
    put_kv_hex("FADT_PM1A_CNT", *(const u32 *)((const u8 *)fadt + FADT_PM1A_CNT_BLK));
    put_kv_hex("FADT_PM_TMR", *(const u32 *)((const u8 *)fadt + FADT_PM_TMR_BLK));
    put_kv_dec("FADT_SCI", *(const u16 *)((const u8 *)fadt + FADT_SCI_INT));
    if (!m)
        fail("no MADT");
    madt(m);
    s5 = acpi_s5_slp_typ((const struct acpi_sdt *)dsdt);
    if (s5 < 0)
        print("S5_SLP_TYP=none\n");
    else
        put_kv_dec("S5_SLP_TYP", (u64)s5);
    if (bad) {
        print("ACPI_CHECKSUMS=bad\n");
        rt_exit(EXIT_FAIL);
    }
    print("ACPI_CHECKSUMS=ok\n");
}
