/* PCI configuration mechanism #1 (PCI Local Bus 3.0 §3.2.2.3.2) on bus 0. */
#ifndef PCI_H
#define PCI_H
#include "rt.h"

#define PCI_VENDOR_ID       0x00
#define PCI_DEVICE_ID       0x02
#define PCI_COMMAND         0x04
#define PCI_STATUS          0x06
#define PCI_HEADER_TYPE     0x0e
#define PCI_BAR0            0x10
#define PCI_CAP_PTR         0x34
#define PCI_STATUS_CAP_LIST 0x10
#define PCI_COMMAND_MEMORY  0x02
#define PCI_COMMAND_MASTER  0x04
#define PCI_HEADER_MULTI    0x80

struct pci_addr {
    u8 bus, dev, fn;
};

u32 pci_read32(struct pci_addr a, u8 off);
u16 pci_read16(struct pci_addr a, u8 off);
u8 pci_read8(struct pci_addr a, u8 off);
void pci_write16(struct pci_addr a, u8 off, u16 v);
/* Guest-physical address of memory BAR `bar` (64-bit BARs combined); 0 for
 * an I/O or unassigned BAR. */
u64 pci_bar(struct pci_addr a, u8 bar);
void pci_print_addr(struct pci_addr a); /* "bb:dd.f" */
/* Visit every present function on bus 0; stops when fn returns nonzero. */
void pci_scan_bus0(int (*fn)(struct pci_addr a, u16 vendor, u16 device));
#endif
