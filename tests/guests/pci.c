#include "pci.h"

#define PCI_CONFIG_ADDRESS  0xcf8
#define PCI_CONFIG_DATA     0xcfc
#define PCI_ENABLE          0x80000000u
#define PCI_BAR_IO          0x1
#define PCI_BAR_MEM_64      0x4
#define PCI_BAR_TYPE_MASK   0x6

static void select(struct pci_addr a, u8 off)
{
    outl(PCI_CONFIG_ADDRESS, PCI_ENABLE | (u32)a.bus << 16 | (u32)a.dev << 11 |
                                 (u32)a.fn << 8 | (off & 0xfc));
}

u32 pci_read32(struct pci_addr a, u8 off)
{
    select(a, off);
    return inl(PCI_CONFIG_DATA);
}

u16 pci_read16(struct pci_addr a, u8 off)
{
    select(a, off);
    return inw(PCI_CONFIG_DATA + (off & 2));
}

u8 pci_read8(struct pci_addr a, u8 off)
{
    select(a, off);
    return inb(PCI_CONFIG_DATA + (off & 3));
}

void pci_write16(struct pci_addr a, u8 off, u16 v)
{
    select(a, off);
    outw(PCI_CONFIG_DATA + (off & 2), v);
}

u64 pci_bar(struct pci_addr a, u8 bar)
{
    u8 off = PCI_BAR0 + bar * 4;
    u32 lo = pci_read32(a, off);
    u64 addr;
    if (lo & PCI_BAR_IO)
        return 0;
    addr = lo & ~0xfu;
    if ((lo & PCI_BAR_TYPE_MASK) == PCI_BAR_MEM_64)
        addr |= (u64)pci_read32(a, off + 4) << 32;
    return addr;
}

static void put_hex2(u32 v)
{
    print_char("0123456789abcdef"[(v >> 4) & 0xf]);
    print_char("0123456789abcdef"[v & 0xf]);
}

void pci_print_addr(struct pci_addr a)
{
    put_hex2(a.bus);
    print_char(':');
    put_hex2(a.dev);
    print_char('.');
    print_char((char)('0' + a.fn));
}

void pci_scan_bus0(int (*fn)(struct pci_addr a, u16 vendor, u16 device))
{
    struct pci_addr a = { 0, 0, 0 };
    for (a.dev = 0; a.dev < 32; a.dev++) {
        u8 fns = 1;
        for (a.fn = 0; a.fn < fns; a.fn++) {
            u16 vendor = pci_read16(a, PCI_VENDOR_ID);
            if (vendor == 0xffff)
                continue;
            if (a.fn == 0 && (pci_read8(a, PCI_HEADER_TYPE) & PCI_HEADER_MULTI))
                fns = 8;
            if (fn(a, vendor, pci_read16(a, PCI_DEVICE_ID)))
                return;
        }
    }
}
