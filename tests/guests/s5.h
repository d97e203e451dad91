/* Find SLP_TYPa of \_S5 in a DSDT without an AML interpreter: the usual
 * encoding is NameOp "_S5_" PackageOp PkgLength NumElements followed by
 * the first element as BytePrefix+byte, ZeroOp or OneOp (ACPI 6.5 §20.2). */
#ifndef S5_H
#define S5_H
#include "rt.h"

#define AML_NAME_OP     0x08
#define AML_PACKAGE_OP  0x12
#define AML_ZERO_OP     0x00
#define AML_ONE_OP      0x01
#define AML_BYTE_PREFIX 0x0a

/* Returns SLP_TYPa, or -1 when no \_S5 package is found. */
static inline int acpi_s5_slp_typ(const struct acpi_sdt *dsdt)
{
    const u8 *p = (const u8 *)dsdt + sizeof(struct acpi_sdt);
    const u8 *end = (const u8 *)dsdt + dsdt->length;
    for (; p + 8 < end; p++) {
        const u8 *q;
        if (memcmp(p, "_S5_", 4) != 0)
            continue;
        /* NameOp right before, optionally with a root prefix '\'. */
        if (!(p[-1] == AML_NAME_OP || (p[-1] == '\\' && p[-2] == AML_NAME_OP)))
            continue;
        q = p + 4;
        if (*q++ != AML_PACKAGE_OP)
            continue;
        q += ((*q >> 6) & 3) + 1; /* PkgLength: lead byte + follow bytes */
        q++;                      /* NumElements */
        if (*q == AML_BYTE_PREFIX)
            return q[1];
        if (*q == AML_ZERO_OP)
            return 0;
        if (*q == AML_ONE_OP)
            return 1;
        return -1;
    }
    return -1;
}

/* The DSDT a FADT points at: X_DSDT (offset 140) when the FADT is long
 * enough and it is set, else the 32-bit DSDT field (offset 40). */
#define FADT_DSDT_OFFSET   40
#define FADT_X_DSDT_OFFSET 140
static inline const struct acpi_sdt *fadt_dsdt(const struct acpi_sdt *fadt)
{
    const u8 *f = (const u8 *)fadt;
    u64 dsdt = 0;
    if (fadt->length >= FADT_X_DSDT_OFFSET + 8)
        dsdt = *(const u64 *)(f + FADT_X_DSDT_OFFSET);
    if (!dsdt)
        dsdt = *(const u32 *)(f + FADT_DSDT_OFFSET);
    return (const struct acpi_sdt *)dsdt;
}
#endif
