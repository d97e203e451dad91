/* pvh / bzimage64 / bzimage32: report what the loader handed over.
 *
 * One line per fact, for the tests to parse:
 *   ENTRY=pvh|32|64           which entry point ran
 *   ENTRY_PAGING=0|1          CR0.PG as found at the entry
 *   PVH_MAGIC=0x336ec578      (PVH only)
 *   E820=addr,size,type       one per memory map entry (PVH memmap or e820)
 *   E820_RAM_TOTAL=0x..       sum of the type-1 (RAM) entries
 *   CMDLINE=...               the command line, up to its NUL
 *   INITRD=addr,size,fnv      address, size and FNV-1a-32 of the initrd, or INITRD=none
 *   RSDP=0x..                 RSDP address the boot structure gives (0 if none)
 *   BOOT_DONE
 */
#include "rt.h"

/* xen/include/public/arch-x86/hvm/start_info.h */
#define HVM_START_MAGIC     0x336ec578
struct hvm_start_info {
    u32 magic;
    u32 version;
    u32 flags;
    u32 nr_modules;
    u64 modlist_paddr;
    u64 cmdline_paddr;
    u64 rsdp_paddr;
    u64 memmap_paddr;    /* version >= 1 */
    u32 memmap_entries;  /* version >= 1 */
    u32 reserved;
} PACKED;
struct hvm_modlist_entry {
    u64 paddr;
    u64 size;
    u64 cmdline_paddr;
    u64 reserved;
} PACKED;
struct hvm_memmap_table_entry {
    u64 addr;
    u64 size;
    u32 type;
    u32 reserved;
} PACKED;

/* Documentation/arch/x86/zero-page.rst and boot.rst */
#define BP_EXT_RAMDISK_IMAGE    0x0c0
#define BP_EXT_RAMDISK_SIZE     0x0c4
#define BP_EXT_CMD_LINE_PTR     0x0c8
#define BP_ACPI_RSDP_ADDR       0x070
#define BP_E820_ENTRIES         0x1e8
#define BP_HDR_BOOT_FLAG        0x1fe
#define BP_HDR_MAGIC            0x202
#define BP_HDR_VERSION          0x206
#define BP_RAMDISK_IMAGE        0x218
#define BP_RAMDISK_SIZE         0x21c
#define BP_CMD_LINE_PTR         0x228
#define BP_E820_TABLE           0x2d0
#define BP_E820_MAX             128
struct boot_e820_entry {
    u64 addr;
    u64 size;
    u32 type;
} PACKED;

#define E820_RAM 1
#define CMDLINE_PRINT_MAX 4096
#define CR0_PG (1ull << 31)

static u64 ram_total;

static void memmap_entry(u64 addr, u64 size, u32 type)
{
    print("E820=");
    put_hex(addr);
    print_char(',');
    put_hex(size);
    print_char(',');
    put_dec(type);
    print_char('\n');
    if (type == E820_RAM)
        ram_total += size;
}

static void cmdline(u64 addr)
{
    const char *s = (const char *)addr;
    int i;
    print("CMDLINE=");
    for (i = 0; addr && s[i] && i < CMDLINE_PRINT_MAX; i++)
        print_char(s[i]);
    print_char('\n');
}

static void initrd(u64 addr, u64 size)
{
    if (!addr || !size) {
        print("INITRD=none\n");
        return;
    }
    print("INITRD=");
    put_hex(addr);
    print_char(',');
    put_hex(size);
    print_char(',');
    put_hex(fnv1a32((const void *)addr, size));
    print_char('\n');
}

static void pvh(const struct hvm_start_info *si)
{
    u32 i;
    print("ENTRY=pvh\n");
    put_kv_hex("PVH_MAGIC", si->magic);
    if (si->magic != HVM_START_MAGIC)
        fail("hvm_start_info magic");
    put_kv_dec("PVH_VERSION", si->version);
    if (si->version >= 1 && si->memmap_paddr) {
        const struct hvm_memmap_table_entry *m = (const void *)si->memmap_paddr;
        for (i = 0; i < si->memmap_entries; i++)
            memmap_entry(m[i].addr, m[i].size, m[i].type);
    }
    put_kv_hex("E820_RAM_TOTAL", ram_total);
    cmdline(si->cmdline_paddr);
    if (si->nr_modules && si->modlist_paddr) {
        const struct hvm_modlist_entry *mod = (const void *)si->modlist_paddr;
        initrd(mod[0].paddr, mod[0].size);
    } else {
        initrd(0, 0);
    }
    put_kv_hex("RSDP", si->rsdp_paddr);
}

static void linux_boot(const u8 *bp)
{
    const struct boot_e820_entry *e = (const void *)(bp + BP_E820_TABLE);
    u32 n = bp[BP_E820_ENTRIES], i;
    u64 cmd, rd, rd_size;
    print(boot_entry_kind == ENTRY_LINUX64 ? "ENTRY=64\n" : "ENTRY=32\n");
    if (memcmp(bp + BP_HDR_MAGIC, "HdrS", 4) != 0)
        fail("boot_params has no setup header (HdrS)");
    put_kv_hex("BOOT_PROTOCOL", *(const u16 *)(bp + BP_HDR_VERSION));
    if (n > BP_E820_MAX)
        fail("e820_entries out of range");
    for (i = 0; i < n; i++)
        memmap_entry(e[i].addr, e[i].size, e[i].type);
    put_kv_hex("E820_RAM_TOTAL", ram_total);
    cmd = *(const u32 *)(bp + BP_CMD_LINE_PTR) | (u64)*(const u32 *)(bp + BP_EXT_CMD_LINE_PTR) << 32;
    cmdline(cmd);
    rd = *(const u32 *)(bp + BP_RAMDISK_IMAGE) | (u64)*(const u32 *)(bp + BP_EXT_RAMDISK_IMAGE) << 32;
    rd_size = *(const u32 *)(bp + BP_RAMDISK_SIZE) | (u64)*(const u32 *)(bp + BP_EXT_RAMDISK_SIZE) << 32;
    initrd(rd, rd_size);
    put_kv_hex("RSDP", *(const u64 *)(bp + BP_ACPI_RSDP_ADDR));
}

void guest_main(void)
{
    if (!boot_info_ptr)
        fail("no boot structure pointer");
    put_kv_dec("ENTRY_PAGING", (boot_entry_cr0 & CR0_PG) != 0);
    if (boot_entry_kind == ENTRY_PVH)
        pvh((const struct hvm_start_info *)boot_info_ptr);
    else
        linux_boot((const u8 *)boot_info_ptr);
    print("BOOT_DONE\n");
}
