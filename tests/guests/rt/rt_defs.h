/* Constants shared by the assembly entry code and the C runtime. */
#ifndef RT_DEFS_H
#define RT_DEFS_H

/* Which entry point ran (boot_entry_kind). */
#define ENTRY_PVH       1       /* PVH, 32-bit protected mode, EBX = hvm_start_info */
#define ENTRY_LINUX32   2       /* Linux boot protocol code32_start, ESI = boot_params */
#define ENTRY_LINUX64   3       /* Linux boot protocol startup_64, RSI = boot_params */

/* Selectors in rt/start.S's GDT. */
#define GDT_CODE64      0x08
#define GDT_DATA        0x10
#define GDT_CODE32      0x18

/* Test port of the VMM (src/vmm/layout.rs DEBUG_EXIT_PORT; QEMU isa-debug-exit). */
#define DEBUG_EXIT_PORT 0xf4

/* Exit codes written to DEBUG_EXIT_PORT (tests/common/mod.rs mirrors them). */
#define EXIT_OK         0x10
#define EXIT_FAIL       0x11
#define EXIT_BAD_LOAD   0x12    /* image not at its link address */

#endif
