/* Routing one IOAPIC pin to this CPU and seeing it arrive, without an IDT:
 * with interrupts off, a delivered interrupt stays pending in the local
 * APIC's IRR. Used by guests that check a device raised its IRQ.
 * IOAPIC: Intel 82093AA datasheet; local APIC: SDM vol. 3 §11.4. */
#ifndef APIC_H
#define APIC_H
#include "rt.h"

#define IOAPIC_BASE         0xfec00000ull
#define IOAPIC_IOREGSEL     0x00
#define IOAPIC_IOWIN        0x10
#define IOAPIC_REDTBL(pin)  (0x10 + 2 * (pin))
#define LAPIC_BASE          0xfee00000ull
#define LAPIC_SVR           0xf0
#define LAPIC_SVR_ENABLE    (1u << 8)
#define LAPIC_IRR           0x200
#define SPURIOUS_VECTOR     0xff

static inline void ioapic_write(u32 reg, u32 value)
{
    mmio_write32(IOAPIC_BASE + IOAPIC_IOREGSEL, reg);
    mmio_write32(IOAPIC_BASE + IOAPIC_IOWIN, value);
}

/* Enable the local APIC and send IOAPIC pin `gsi` to `vector` on APIC 0:
 * fixed delivery, physical destination, edge, active high, unmasked. */
static inline void route_gsi_to_vector(u32 gsi, u8 vector)
{
    mmio_write32(LAPIC_BASE + LAPIC_SVR, LAPIC_SVR_ENABLE | SPURIOUS_VECTOR);
    ioapic_write(IOAPIC_REDTBL(gsi) + 1, 0);
    ioapic_write(IOAPIC_REDTBL(gsi), vector);
}

/* Is `vector` pending in the local APIC's IRR? */
static inline int vector_pending(u8 vector)
{
    u32 irr = mmio_read32(LAPIC_BASE + LAPIC_IRR + 0x10 * (vector / 32));
    return (irr >> (vector % 32)) & 1;
}

/* Wait up to `max_ms` for `vector` to be pending. An irqfd interrupt is
 * injected asynchronously by the host kernel, so it may land a little after
 * the device register that announced it already reads as set. */
static inline int wait_vector_pending(u8 vector, u32 max_ms)
{
    u32 ms;
    for (ms = 0; ms < max_ms && !vector_pending(vector); ms++)
        delay_us(1000);
    return vector_pending(vector);
}
#endif
