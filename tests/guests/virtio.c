/* virtio: drive virtio-pci modern devices on bus 0 by polling (virtio 1.2
 * §4.1 PCI transport, §2.7 split virtqueues, §5.2 block, §5.4 entropy).
 *
 * Prints:
 *   PCI_DEV=bb:dd.f,vvvv:dddd     every function on bus 0
 *   VIRTIO_BLK=bb:dd.f            (or =none)
 *   BLK_CAPACITY=N                512-byte sectors
 *   BLK_SECTOR=n,0xFNV            FNV-1a-32 of sector 0 and of the last sector
 *   BLK_WROTE=1,0xFNV             sector 1 overwritten with byte i = i*13+7
 *   BLK_READBACK=ok
 *   BLK_FLUSH=ok                  (or =unsupported when not offered)
 *   VIRTIO_RNG=bb:dd.f            (or =none)
 *   RNG_BYTES=64  RNG_NONZERO=1
 *   VIRTIO_DONE
 * Any device error: "FAIL: ..." and exit EXIT_FAIL.
 */
#include "pci.h"

#define VIRTIO_VENDOR           0x1af4
#define VIRTIO_MODERN_BASE      0x1040
#define VIRTIO_ID_BLOCK         2
#define VIRTIO_ID_ENTROPY       4

/* §4.1.4 capabilities */
#define PCI_CAP_VENDOR          0x09
#define VIRTIO_PCI_CAP_COMMON   1
#define VIRTIO_PCI_CAP_NOTIFY   2
#define VIRTIO_PCI_CAP_ISR      3
#define VIRTIO_PCI_CAP_DEVICE   4
#define CAP_CFG_TYPE            3
#define CAP_BAR                 4
#define CAP_OFFSET              8
#define CAP_LENGTH              12
#define CAP_NOTIFY_MULTIPLIER   16

/* §4.1.4.3 struct virtio_pci_common_cfg */
#define CC_DEVICE_FEATURE_SELECT 0x00
#define CC_DEVICE_FEATURE       0x04
#define CC_DRIVER_FEATURE_SELECT 0x08
#define CC_DRIVER_FEATURE       0x0c
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

#define VIRTIO_F_VERSION_1      32
#define VIRTIO_BLK_F_RO         5
#define VIRTIO_BLK_F_FLUSH      9

#define VIRTQ_DESC_F_NEXT       1
#define VIRTQ_DESC_F_WRITE      2

#define VIRTIO_BLK_T_IN         0
#define VIRTIO_BLK_T_OUT        1
#define VIRTIO_BLK_T_FLUSH      4
#define VIRTIO_BLK_S_OK         0
#define SECTOR_SIZE             512
#define WRITE_SECTOR            1

#define QUEUE_SIZE              8
#define RNG_WANT                64
#define POLL_STEP_US            100
#define POLL_LIMIT_STEPS        100000 /* 10 s */

struct virtq_desc {
    u64 addr;
    u32 len;
    u16 flags;
    u16 next;
} PACKED;

struct vq_mem {
    struct virtq_desc desc[QUEUE_SIZE] __attribute__((aligned(4096)));
    struct {
        u16 flags, idx, ring[QUEUE_SIZE], used_event;
    } avail __attribute__((aligned(4096)));
    struct {
        u16 flags, idx;
        struct {
            u32 id, len;
        } ring[QUEUE_SIZE];
        u16 avail_event;
    } used __attribute__((aligned(4096)));
};

struct vdev {
    struct pci_addr pci;
    u64 common, notify, device;
    u32 notify_mul;
    u64 features;
    u64 queue_notify;
    u16 last_used;
    struct vq_mem *vq;
};

static struct vq_mem blk_vq, rng_vq;
static struct blk_req {
    u32 type, reserved;
    u64 sector;
} req __attribute__((aligned(16)));
static u8 sector_buf[SECTOR_SIZE] __attribute__((aligned(512)));
static u8 write_buf[SECTOR_SIZE] __attribute__((aligned(512)));
static u8 rng_buf[RNG_WANT] __attribute__((aligned(64)));
static volatile u8 req_status;

static struct vdev blk_dev, rng_dev;
static int found_blk, found_rng;

static void dev_fail(struct vdev *d, const char *why)
{
    mmio_write8(d->common + CC_DEVICE_STATUS, mmio_read8(d->common + CC_DEVICE_STATUS) | STATUS_FAILED);
    fail(why);
}

/* Locate the virtio capabilities (§4.1.4) and their BAR windows. */
static void find_caps(struct vdev *d)
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
        if (base >= 0x100000000ull)
            fail("virtio BAR above 4 GiB (the guest maps only the low 4 GiB)");
        base += pci_read32(d->pci, ptr + CAP_OFFSET);
        if (type == VIRTIO_PCI_CAP_COMMON && !d->common)
            d->common = base;
        else if (type == VIRTIO_PCI_CAP_NOTIFY && !d->notify) {
            d->notify = base;
            d->notify_mul = pci_read32(d->pci, ptr + CAP_NOTIFY_MULTIPLIER);
        } else if (type == VIRTIO_PCI_CAP_DEVICE && !d->device)
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

/* §3.1.1 driver initialization up to FEATURES_OK, one queue, DRIVER_OK. */
static void dev_init(struct vdev *d, struct vq_mem *vq, u64 wanted)
{
    u64 offered;
    u16 max;
    int i;
    pci_write16(d->pci, PCI_COMMAND, pci_read16(d->pci, PCI_COMMAND) | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    find_caps(d);
    mmio_write8(d->common + CC_DEVICE_STATUS, 0);
    for (i = 0; i < 100000 && mmio_read8(d->common + CC_DEVICE_STATUS); i++)
        cpu_relax();
    mmio_write8(d->common + CC_DEVICE_STATUS, STATUS_ACKNOWLEDGE);
    mmio_write8(d->common + CC_DEVICE_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    mmio_write32(d->common + CC_DEVICE_FEATURE_SELECT, 0);
    offered = mmio_read32(d->common + CC_DEVICE_FEATURE);
    mmio_write32(d->common + CC_DEVICE_FEATURE_SELECT, 1);
    offered |= (u64)mmio_read32(d->common + CC_DEVICE_FEATURE) << 32;
    if (!(offered & (1ull << VIRTIO_F_VERSION_1)))
        dev_fail(d, "device does not offer VIRTIO_F_VERSION_1");
    d->features = offered & (wanted | 1ull << VIRTIO_F_VERSION_1);
    mmio_write32(d->common + CC_DRIVER_FEATURE_SELECT, 0);
    mmio_write32(d->common + CC_DRIVER_FEATURE, (u32)d->features);
    mmio_write32(d->common + CC_DRIVER_FEATURE_SELECT, 1);
    mmio_write32(d->common + CC_DRIVER_FEATURE, (u32)(d->features >> 32));
    mmio_write8(d->common + CC_DEVICE_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK);
    if (!(mmio_read8(d->common + CC_DEVICE_STATUS) & STATUS_FEATURES_OK))
        dev_fail(d, "device refused our features");

    mmio_write16(d->common + CC_QUEUE_SELECT, 0);
    max = mmio_read16(d->common + CC_QUEUE_SIZE);
    if (max < QUEUE_SIZE)
        dev_fail(d, "queue 0 is missing or too small");
    mmio_write16(d->common + CC_QUEUE_SIZE, QUEUE_SIZE);
    memset(vq, 0, sizeof(*vq));
    d->vq = vq;
    d->last_used = 0;
    write64(d->common + CC_QUEUE_DESC, (u64)vq->desc);
    write64(d->common + CC_QUEUE_DRIVER, (u64)&vq->avail);
    write64(d->common + CC_QUEUE_DEVICE, (u64)&vq->used);
    d->queue_notify = d->notify + (u64)mmio_read16(d->common + CC_QUEUE_NOTIFY_OFF) * d->notify_mul;
    mmio_write16(d->common + CC_QUEUE_ENABLE, 1);
    mmio_write8(d->common + CC_DEVICE_STATUS,
                STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
}

/* Publish descriptor chain `head`, notify, and poll the used ring. */
static u32 submit(struct vdev *d, u16 head)
{
    struct vq_mem *vq = d->vq;
    volatile u16 *used_idx = &vq->used.idx;
    u32 steps, len;
    vq->avail.ring[vq->avail.idx % QUEUE_SIZE] = head;
    barrier();
    vq->avail.idx++;
    barrier();
    mmio_write16(d->queue_notify, 0);
    for (steps = 0; *used_idx == d->last_used; steps++) {
        if (steps == POLL_LIMIT_STEPS)
            dev_fail(d, "no used buffer after 10 s");
        delay_us(POLL_STEP_US);
    }
    barrier();
    if (vq->used.ring[d->last_used % QUEUE_SIZE].id != head)
        dev_fail(d, "used ring returned another descriptor");
    len = vq->used.ring[d->last_used % QUEUE_SIZE].len;
    d->last_used++;
    return len;
}

static void blk_request(u32 type, u64 sector, u8 *buf)
{
    struct virtq_desc *desc = blk_dev.vq->desc;
    req.type = type;
    req.reserved = 0;
    req.sector = sector;
    req_status = 0xff;
    desc[0] = (struct virtq_desc){ (u64)&req, sizeof(req), VIRTQ_DESC_F_NEXT, 1 };
    if (buf) {
        u16 flags = VIRTQ_DESC_F_NEXT | (type == VIRTIO_BLK_T_IN ? VIRTQ_DESC_F_WRITE : 0);
        desc[1] = (struct virtq_desc){ (u64)buf, SECTOR_SIZE, flags, 2 };
        desc[2] = (struct virtq_desc){ (u64)&req_status, 1, VIRTQ_DESC_F_WRITE, 0 };
    } else {
        desc[0].next = 2;
        desc[2] = (struct virtq_desc){ (u64)&req_status, 1, VIRTQ_DESC_F_WRITE, 0 };
    }
    submit(&blk_dev, 0);
    if (req_status != VIRTIO_BLK_S_OK)
        dev_fail(&blk_dev, "block request failed");
}

static void blk_read_report(u64 sector)
{
    blk_request(VIRTIO_BLK_T_IN, sector, sector_buf);
    print("BLK_SECTOR=");
    put_dec(sector);
    print_char(',');
    put_hex(fnv1a32(sector_buf, SECTOR_SIZE));
    print_char('\n');
}

static void blk(void)
{
    u64 capacity;
    int i;
    dev_init(&blk_dev, &blk_vq, 1ull << VIRTIO_BLK_F_FLUSH | 1ull << VIRTIO_BLK_F_RO);
    if (!blk_dev.device)
        fail("virtio-blk without device configuration");
    capacity = mmio_read32(blk_dev.device) | (u64)mmio_read32(blk_dev.device + 4) << 32;
    put_kv_dec("BLK_CAPACITY", capacity);
    if (capacity < 2)
        fail("disk smaller than 2 sectors");
    blk_read_report(0);
    blk_read_report(capacity - 1);
    if (blk_dev.features & (1ull << VIRTIO_BLK_F_RO)) {
        print("BLK_WROTE=readonly\n");
        return;
    }
    for (i = 0; i < SECTOR_SIZE; i++)
        write_buf[i] = (u8)(i * 13 + 7);
    blk_request(VIRTIO_BLK_T_OUT, WRITE_SECTOR, write_buf);
    print("BLK_WROTE=");
    put_dec(WRITE_SECTOR);
    print_char(',');
    put_hex(fnv1a32(write_buf, SECTOR_SIZE));
    print_char('\n');
    memset(sector_buf, 0, SECTOR_SIZE);
    blk_request(VIRTIO_BLK_T_IN, WRITE_SECTOR, sector_buf);
    if (memcmp(sector_buf, write_buf, SECTOR_SIZE) != 0)
        fail("read back differs from what was written");
    print("BLK_READBACK=ok\n");
    if (blk_dev.features & (1ull << VIRTIO_BLK_F_FLUSH)) {
        blk_request(VIRTIO_BLK_T_FLUSH, 0, 0);
        print("BLK_FLUSH=ok\n");
    } else {
        print("BLK_FLUSH=unsupported\n");
    }
}

static void rng(void)
{
    u32 got = 0, i, nonzero = 0;
    dev_init(&rng_dev, &rng_vq, 0);
    while (got < RNG_WANT) {
        u32 len;
        rng_dev.vq->desc[0] = (struct virtq_desc){ (u64)(rng_buf + got), RNG_WANT - got, VIRTQ_DESC_F_WRITE, 0 };
        len = submit(&rng_dev, 0);
        if (len == 0 || len > RNG_WANT - got)
            dev_fail(&rng_dev, "bad entropy length");
        got += len;
    }
    for (i = 0; i < RNG_WANT; i++)
        nonzero |= rng_buf[i];
    put_kv_dec("RNG_BYTES", got);
    put_kv_dec("RNG_NONZERO", nonzero != 0);
}

static int visit(struct pci_addr a, u16 vendor, u16 device)
{
    print("PCI_DEV=");
    pci_print_addr(a);
    print_char(',');
    put_hex(vendor);
    print_char(':');
    put_hex(device);
    print_char('\n');
    if (vendor != VIRTIO_VENDOR)
        return 0;
    if (device == VIRTIO_MODERN_BASE + VIRTIO_ID_BLOCK && !found_blk) {
        found_blk = 1;
        blk_dev.pci = a;
    } else if (device == VIRTIO_MODERN_BASE + VIRTIO_ID_ENTROPY && !found_rng) {
        found_rng = 1;
        rng_dev.pci = a;
    }
    return 0;
}

void guest_main(void)
{
    pci_scan_bus0(visit);
    print("VIRTIO_BLK=");
    if (found_blk) {
        pci_print_addr(blk_dev.pci);
        print_char('\n');
        blk();
    } else {
        print("none\n");
    }
    print("VIRTIO_RNG=");
    if (found_rng) {
        pci_print_addr(rng_dev.pci);
        print_char('\n');
        rng();
    } else {
        print("none\n");
    }
    print("VIRTIO_DONE\n");
}
