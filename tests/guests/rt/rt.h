/* Tiny runtime shared by the test guests: port and MMIO access, COM1 output,
 * number printing, exit through the debug port, ACPI table lookup and a
 * PM-timer delay. Integer code only. */
#ifndef RT_H
#define RT_H

#include "rt_defs.h"

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef unsigned long usize;

#define NORETURN __attribute__((noreturn))
#define PACKED __attribute__((packed))

/* ---- I/O --------------------------------------------------------------- */
static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outw(u16 port, u16 v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outl(u16 port, u32 v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u16 inw(u16 port) { u16 v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u32 inl(u16 port) { u32 v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }

static inline u8 mmio_read8(u64 a) { return *(volatile u8 *)a; }
static inline u16 mmio_read16(u64 a) { return *(volatile u16 *)a; }
static inline u32 mmio_read32(u64 a) { return *(volatile u32 *)a; }
static inline void mmio_write8(u64 a, u8 v) { *(volatile u8 *)a = v; }
static inline void mmio_write16(u64 a, u16 v) { *(volatile u16 *)a = v; }
static inline void mmio_write32(u64 a, u32 v) { *(volatile u32 *)a = v; }

static inline void barrier(void) { __asm__ volatile("mfence" : : : "memory"); }
static inline void cpu_relax(void) { __asm__ volatile("pause" : : : "memory"); }
static inline u32 atomic_inc(volatile u32 *p)
{
    u32 v = 1;
    __asm__ volatile("lock xaddl %0, %1" : "+r"(v), "+m"(*p) : : "memory");
    return v; /* the old value */
}

/* ---- console (COM1, 16550 at 0x3f8, polled) ----------------------------- */
void print_char(char c);
void print(const char *s);           /* no newline added */
void put_hex(u64 v);                  /* 0x-prefixed, lowercase */
void put_dec(u64 v);
void put_kv_hex(const char *key, u64 v); /* "KEY=0x..\n" */
void put_kv_dec(const char *key, u64 v); /* "KEY=N\n" */
void console_lock(void);              /* for guests printing from several CPUs */
void console_unlock(void);

/* ---- ending ------------------------------------------------------------- */
void rt_exit(u8 code) NORETURN;       /* write code to DEBUG_EXIT_PORT */
void fail(const char *why) NORETURN;  /* "FAIL: why\n", exit EXIT_FAIL */
void halt_forever(void) NORETURN;

/* ---- memory --------------------------------------------------------------- */
void *memset(void *d, int c, usize n);
void *memcpy(void *d, const void *s, usize n);
int memcmp(const void *a, const void *b, usize n);
usize strlen(const char *s);
/* FNV-1a, 32-bit (offset basis 0x811c9dc5, prime 0x01000193): the tests
 * recompute it on the host to compare. */
u32 fnv1a32(const void *p, u64 len);

/* ---- boot information (rt/start.S) ----------------------------------------- */
extern u32 boot_entry_kind;
extern u64 boot_info_ptr;
extern u64 boot_entry_cr0;

/* ---- ACPI ------------------------------------------------------------------ */
struct acpi_sdt {
    char sig[4];
    u32 length;
    u8 revision;
    u8 checksum;
    char oem_id[6];
    char oem_table_id[8];
    u32 oem_revision;
    u32 creator_id;
    u32 creator_revision;
} PACKED;

int acpi_sum_ok(const void *p, u64 len);
/* RSDP address: from the boot structure, else by scanning 0xE0000..0xFFFFF. */
u64 acpi_rsdp(void);
/* The first table with signature sig listed in the XSDT (or RSDT); 0 if none. */
const struct acpi_sdt *acpi_table(const char *sig);
/* FADT fields with the layout's defaults when there is no FADT. */
u16 acpi_pm1a_cnt_port(void);
/* ACPI PM timer (3.579545 MHz) port: the FADT's, 0x608 without a FADT,
 * 0 if the FADT describes none. */
u16 acpi_pm_timer_port(void);
/* Busy-wait: PM timer when there is one that ticks, else a calibrated-by-nobody loop. */
void delay_us(u64 us);

/* Each guest provides this; returning means success (exit EXIT_OK). */
void guest_main(void);

#endif
