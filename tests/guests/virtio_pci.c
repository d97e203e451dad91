#include "virtio_pci.h"

/* §4.1.4 virtio structure PCI capabilities */
#define PCI_CAP_VENDOR          0x09
#define VIRTIO_PCI_CAP_COMMON   1
#define VIRTIO_PCI_CAP_NOTIFY   2
#define VIRTIO_PCI_CAP_ISR      3
#define VIRTIO_PCI_CAP_DEVICE   4
#define CAP_CFG_TYPE            3
#define CAP_BAR                 4
#define CAP_OFFSET              8
#define CAP_NOTIFY_MULTIPLIER   16

/* §4.1.4.3 struct virtio_pci_common_cfg */
#define CC_DEVICE_FEATURE_SELECT 0x00
#define CC_DEVICE_FEATURE       0x04
#define CC_DRIVER_FEATURE_SELECT 0x08
#define CC_DRIVER_FEATURE       0x0c
#define CC_NUM_QUEUES           0x12
#define CC_DEVICE_STATUS        0x14
#define CC_QUEUE_SELECT         0x16
#define CC_QUEUE_SIZE           0x18
#define CC_QUEUE_ENABLE         0x1c
#define CC_QUEUE_NOTIFY_OFF     0x1e
#define CC_QUEUE_DESC           0x20
#define CC_QUEUE_DRIVER         0x28
#define CC_QUEUE_DEVICE         0x30

/* §2.1 device status */
#define STATUS_ACKNOWLEDGE      1
#define STATUS_DRIVER           2
#define STATUS_DRIVER_OK        4
#define STATUS_FEATURES_OK      8
#define STATUS_FAILED           0x80

#define RESET_POLL_LIMIT        100000
#define LOW_4G                  0x100000000ull /* the guest maps only this */

void virtio_fail(struct virtio_pci *d, const char *why)
{
    if (d->common)
        mmio_write8(d->common + CC_DEVICE_STATUS, mmio_read8(d->common + CC_DEVICE_STATUS) | STATUS_FAILED);
    fail(why);
}

/* Locate the virtio capabilities (§4.1.4) and their BAR windows; the first
 * of each type wins. */
static void find_caps(struct virtio_pci *d)
{
    u8 ptr;
    if (!(pci_read16(d->pci, PCI_STATUS) & PCI_STATUS_CAP_LIST))
        fail("virtio device without a capability list");
    for (ptr = pci_read8(d->pci, PCI_CAP_PTR) & 0xfc; ptr; ptr = pci_read8(d->pci, ptr + 1) & 0xfc) {
        u8 type;
        u64 base;
        if (pci_read8(d->pci, ptr) != PCI_CAP_VENDOR)
            continue;
        type = pci_read8(d->pci, ptr + CAP_CFG_TYPE);
        if (type < VIRTIO_PCI_CAP_COMMON || type > VIRTIO_PCI_CAP_DEVICE)
            continue;
        base = pci_bar(d->pci, pci_read8(d->pci, ptr + CAP_BAR));
        if (!base)
            fail("virtio capability in an I/O or unassigned BAR");
        if (base >= LOW_4G)
            fail("virtio BAR above 4 GiB (the guest maps only the low 4 GiB)");
        base += pci_read32(d->pci, ptr + CAP_OFFSET);
        if (type == VIRTIO_PCI_CAP_COMMON && !d->common)
            d->common = base;
        else if (type == VIRTIO_PCI_CAP_NOTIFY && !d->notify) {
            d->notify = base;
            d->notify_mul = pci_read32(d->pci, ptr + CAP_NOTIFY_MULTIPLIER);
        } else if (type == VIRTIO_PCI_CAP_ISR && !d->isr)
            d->isr = base;
        else if (type == VIRTIO_PCI_CAP_DEVICE && !d->device)
            d->device = base;
    }
    if (!d->common || !d->notify)
        fail("virtio device lacks common or notify capability");
}

static void write64(u64 addr, u64 v)
{
    mmio_write32(addr, (u32)v);
    mmio_write32(addr + 4, (u32)(v >> 32));
}

void virtio_begin(struct virtio_pci *d, u64 required, u64 optional)
{
    u64 offered;
    int i;
    pci_write16(d->pci, PCI_COMMAND, pci_read16(d->pci, PCI_COMMAND) | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    find_caps(d);
    mmio_write8(d->common + CC_DEVICE_STATUS, 0);
    for (i = 0; i < RESET_POLL_LIMIT && mmio_read8(d->common + CC_DEVICE_STATUS); i++)
        cpu_relax();
    mmio_write8(d->common + CC_DEVICE_STATUS, STATUS_ACKNOWLEDGE);
    mmio_write8(d->common + CC_DEVICE_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    mmio_write32(d->common + CC_DEVICE_FEATURE_SELECT, 0);
    offered = mmio_read32(d->common + CC_DEVICE_FEATURE);
    mmio_write32(d->common + CC_DEVICE_FEATURE_SELECT, 1);
    offered |= (u64)mmio_read32(d->common + CC_DEVICE_FEATURE) << 32;
    if (!(offered & (1ull << VIRTIO_F_VERSION_1)))
        virtio_fail(d, "device does not offer VIRTIO_F_VERSION_1");
    if ((offered & required) != required)
        virtio_fail(d, "device does not offer a required feature");
    d->features = 1ull << VIRTIO_F_VERSION_1 | required | (offered & optional);
    mmio_write32(d->common + CC_DRIVER_FEATURE_SELECT, 0);
    mmio_write32(d->common + CC_DRIVER_FEATURE, (u32)d->features);
    mmio_write32(d->common + CC_DRIVER_FEATURE_SELECT, 1);
    mmio_write32(d->common + CC_DRIVER_FEATURE, (u32)(d->features >> 32));
    mmio_write8(d->common + CC_DEVICE_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK);
    if (!(mmio_read8(d->common + CC_DEVICE_STATUS) & STATUS_FEATURES_OK))
        virtio_fail(d, "device refused our features");
}

void virtio_setup_queue(struct virtio_pci *d, struct virtq *q, u16 index, struct virtq_mem *mem, u16 size)
{
    if (size == 0 || size > VIRTQ_MAX_SIZE)
        fail("virtqueue size out of range");
    mmio_write16(d->common + CC_QUEUE_SELECT, index);
    if (mmio_read16(d->common + CC_QUEUE_SIZE) < size)
        virtio_fail(d, "a queue is missing or too small");
    mmio_write16(d->common + CC_QUEUE_SIZE, size);
    memset(mem, 0, sizeof(*mem));
    q->mem = mem;
    q->index = index;
    q->size = size;
    q->last_used = 0;
    write64(d->common + CC_QUEUE_DESC, (u64)mem->desc);
    write64(d->common + CC_QUEUE_DRIVER, (u64)&mem->avail);
    write64(d->common + CC_QUEUE_DEVICE, (u64)&mem->used);
    q->notify = d->notify + (u64)mmio_read16(d->common + CC_QUEUE_NOTIFY_OFF) * d->notify_mul;
    mmio_write16(d->common + CC_QUEUE_ENABLE, 1);
}

u16 virtio_num_queues(struct virtio_pci *d)
{
    return mmio_read16(d->common + CC_NUM_QUEUES);
}

void virtio_driver_ok(struct virtio_pci *d)
{
    mmio_write8(d->common + CC_DEVICE_STATUS,
                STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
}

void virtq_publish(struct virtq *q, u16 head)
{
    struct virtq_mem *m = q->mem;
    m->avail.ring[m->avail.idx % q->size] = head;
    barrier();
    m->avail.idx++;
    barrier();
}

void virtq_notify(struct virtq *q)
{
    mmio_write16(q->notify, q->index);
}

int virtq_take_used(struct virtq *q, u32 *id, u32 *len)
{
    volatile u16 *used_idx = &q->mem->used.idx;
    if (*used_idx == q->last_used)
        return 0;
    barrier();
    *id = q->mem->used.ring[q->last_used % q->size].id;
    *len = q->mem->used.ring[q->last_used % q->size].len;
    q->last_used++;
    return 1;
}

u32 virtq_wait_used(struct virtio_pci *d, struct virtq *q, u16 head, u32 limit_steps, const char *timeout_why)
{
    u32 steps, id, len;
    for (steps = 0; !virtq_take_used(q, &id, &len); steps++) {
        if (steps == limit_steps)
            virtio_fail(d, timeout_why);
        delay_us(VIRTIO_POLL_STEP_US);
    }
    if (id != head)
        virtio_fail(d, "used ring returned another descriptor");
    return len;
}
