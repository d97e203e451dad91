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
#include "virtio_pci.h"

#define VIRTIO_ID_BLOCK         2
#define VIRTIO_ID_ENTROPY       4

#define VIRTIO_BLK_F_RO         5
#define VIRTIO_BLK_F_FLUSH      9

#define VIRTIO_BLK_T_IN         0
#define VIRTIO_BLK_T_OUT        1
#define VIRTIO_BLK_T_FLUSH      4
#define VIRTIO_BLK_S_OK         0
#define SECTOR_SIZE             512
#define WRITE_SECTOR            1

#define QUEUE_SIZE              8
#define RNG_WANT                64
#define POLL_LIMIT_STEPS        100000 /* 10 s */

static struct virtq_mem blk_mem, rng_mem;
static struct virtq blk_q, rng_q;
static struct blk_req {
    u32 type, reserved;
    u64 sector;
} req __attribute__((aligned(16)));
static u8 sector_buf[SECTOR_SIZE] __attribute__((aligned(512)));
static u8 write_buf[SECTOR_SIZE] __attribute__((aligned(512)));
static u8 rng_buf[RNG_WANT] __attribute__((aligned(64)));
static volatile u8 req_status;

static struct virtio_pci blk_dev, rng_dev;
static int found_blk, found_rng;

/* §3.1.1 initialization with queue 0 only. */
static void dev_init(struct virtio_pci *d, struct virtq *q, struct virtq_mem *mem, u64 optional)
{
    virtio_begin(d, 0, optional);
    virtio_setup_queue(d, q, 0, mem, QUEUE_SIZE);
    virtio_driver_ok(d);
}

/* Publish descriptor chain `head`, notify, and poll the used ring. */
static u32 submit(struct virtio_pci *d, struct virtq *q, u16 head)
{
    virtq_publish(q, head);
    virtq_notify(q);
    return virtq_wait_used(d, q, head, POLL_LIMIT_STEPS, "no used buffer after 10 s");
}

static void blk_request(u32 type, u64 sector, u8 *buf)
{
    struct virtq_desc *desc = blk_q.mem->desc;
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
    submit(&blk_dev, &blk_q, 0);
    if (req_status != VIRTIO_BLK_S_OK)
        virtio_fail(&blk_dev, "block request failed");
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
    dev_init(&blk_dev, &blk_q, &blk_mem, 1ull << VIRTIO_BLK_F_FLUSH | 1ull << VIRTIO_BLK_F_RO);
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
    dev_init(&rng_dev, &rng_q, &rng_mem, 0);
    while (got < RNG_WANT) {
        u32 len;
        rng_q.mem->desc[0] = (struct virtq_desc){ (u64)(rng_buf + got), RNG_WANT - got, VIRTQ_DESC_F_WRITE, 0 };
        len = submit(&rng_dev, &rng_q, 0);
        if (len == 0 || len > RNG_WANT - got)
            virtio_fail(&rng_dev, "bad entropy length");
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
