/* net: drive a virtio-net device (virtio 1.2 §5.1) through virtio-pci modern
 * (§4.1) by polling: ARP for an address and wait for the reply; then reset
 * the device, initialize it again and do it a second time.
 *
 * Command line (PVH start info or boot_params):
 *   net.ip=A.B.C.D     the guest's IPv4 address (ARP sender)
 *   net.peer=A.B.C.D   the address to ARP for
 *
 * Prints:
 *   VIRTIO_NET=bb:dd.f
 *   NET_ROUND=1|2                 before each initialization (the second
 *                                 begins with a device reset)
 *   NET_MAC=xx:xx:xx:xx:xx:xx     from the device configuration (round 1)
 *   NET_DESCRIPTORS=1|2           descriptors per buffer: round 1 one,
 *                                 round 2 two (header, frame); also for
 *                                 the injected frame after round 2
 *   NET_TX=ok                     the ARP request went through the TX queue
 *   NET_RX_OTHER=len,0xethertype  per received frame that is not the reply
 *   NET_RX=len,0xethertype,0xfnv  the ARP reply (FNV-1a-32 of the frame)
 *   NET_RX_FRAME=hex              the ARP reply's bytes
 *   (the RX and TX lines once per round)
 *   NET_WAIT_FRAME                then waits for a frame of ethertype 0x88b5
 *                                 (the test sends one) and reports it as
 *   NET_RX=len,0x88b5,0xfnv
 *   NET_DONE
 * The request is sent again every second without a reply; after 20 s, or
 * on any device error, "FAIL: ..." and EXIT_FAIL.
 */
#include "pci.h"

#define VIRTIO_VENDOR           0x1af4
#define VIRTIO_NET_DEVICE       0x1041 /* 0x1040 + device id 1 (§4.1.2.1) */

/* §4.1.4 capabilities */
#define PCI_CAP_VENDOR          0x09
#define VIRTIO_PCI_CAP_COMMON   1
#define VIRTIO_PCI_CAP_NOTIFY   2
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

#define VIRTIO_F_VERSION_1      32
#define VIRTIO_NET_F_MAC        5  /* §5.1.3 */
#define NET_CFG_MAC             0  /* §5.1.4 struct virtio_net_config */

#define VIRTQ_DESC_F_NEXT       1
#define VIRTQ_DESC_F_WRITE      2

/* §5.1.2 queues, §5.1.6 struct virtio_net_hdr (v1: 12 bytes) */
#define RX_QUEUE                0
#define TX_QUEUE                1
#define NET_HDR_SIZE            12
#define NET_HDR_NUM_BUFFERS     10
#define QUEUE_SIZE              16
#define RX_BUFS                 8
/* §5.1.6.3.1: without VIRTIO_NET_F_MRG_RXBUF or offloads, each receive
 * buffer holds a header and a 1514-byte frame. */
#define RX_BUF_SIZE             2048

/* Ethernet (IEEE 802.3) and ARP (RFC 826) for IPv4 over Ethernet. */
#define ETH_ALEN                6
#define ETH_HLEN                14
#define ETH_ZLEN                60 /* minimum frame without FCS */
#define ETHERTYPE_ARP           0x0806
#define ETHERTYPE_IPV4          0x0800
#define ETHERTYPE_TEST          0x88b5 /* IEEE 802 local experimental 1 */
#define ARP_HTYPE_ETHER         1
#define ARP_OP_REQUEST          1
#define ARP_OP_REPLY            2
#define ARP_LEN                 28
/* Offsets in the frame */
#define ETH_TYPE                12
#define ARP_OP                  (ETH_HLEN + 6)
#define ARP_SHA                 (ETH_HLEN + 8)
#define ARP_SPA                 (ETH_HLEN + 14)
#define ARP_THA                 (ETH_HLEN + 18)
#define ARP_TPA                 (ETH_HLEN + 24)

#define POLL_STEP_US            100
#define RESEND_STEPS            10000  /* 1 s */
#define POLL_LIMIT_STEPS        200000 /* 20 s */
#define CMDLINE_MAX             4096
#define ROUNDS                  2

struct hvm_start_info_head { /* xen/include/public/arch-x86/hvm/start_info.h */
    u32 magic, version, flags, nr_modules;
    u64 modlist_paddr, cmdline_paddr;
} PACKED;
#define BP_CMD_LINE_PTR         0x228 /* Documentation/arch/x86/zero-page.rst */
#define BP_EXT_CMD_LINE_PTR     0x0c8

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

struct queue {
    struct vq_mem *vq;
    u64 notify;
    u16 last_used;
};

static struct vq_mem rx_mem, tx_mem;
static struct queue rxq, txq;
static u8 rx_bufs[RX_BUFS][RX_BUF_SIZE] __attribute__((aligned(4096)));
static u8 tx_buf[NET_HDR_SIZE + ETH_ZLEN] __attribute__((aligned(64)));

static struct pci_addr net_pci;
static int found;
static u64 common_cfg, notify_base, device_cfg;
static u32 notify_mul;
static u8 mac[ETH_ALEN], my_ip[4], peer_ip[4];
/* Round 2 splits every buffer into two descriptors: the 12-byte header and
 * the frame (as Linux's driver does for TX); the device must not assume
 * any framing (virtio 1.2 §2.7.4). */
static int split_buffers;

static void dev_fail(const char *why)
{
    if (common_cfg)
        mmio_write8(common_cfg + CC_DEVICE_STATUS, mmio_read8(common_cfg + CC_DEVICE_STATUS) | STATUS_FAILED);
    fail(why);
}

static void write64(u64 addr, u64 v)
{
    mmio_write32(addr, (u32)v);
    mmio_write32(addr + 4, (u32)(v >> 32));
}

static void put_hex2(u32 v)
{
    print_char("0123456789abcdef"[(v >> 4) & 0xf]);
    print_char("0123456789abcdef"[v & 0xf]);
}

/* ---- command line ------------------------------------------------------- */

static const char *cmdline(void)
{
    u64 p;
    if (!boot_info_ptr)
        fail("no boot structure pointer");
    if (boot_entry_kind == ENTRY_PVH) {
        p = ((const struct hvm_start_info_head *)boot_info_ptr)->cmdline_paddr;
    } else {
        const u8 *bp = (const u8 *)boot_info_ptr;
        p = *(const u32 *)(bp + BP_CMD_LINE_PTR) | (u64)*(const u32 *)(bp + BP_EXT_CMD_LINE_PTR) << 32;
    }
    if (!p)
        fail("no command line");
    return (const char *)p;
}

/* The value of `key=` (a whole word) in the command line, or 0. */
static const char *param(const char *s, const char *key)
{
    usize n = strlen(key), i;
    for (i = 0; s[i] && i < CMDLINE_MAX; i++) {
        if ((i == 0 || s[i - 1] == ' ') && memcmp(s + i, key, n) == 0 && s[i + n] == '=')
            return s + i + n + 1;
    }
    return 0;
}

/* Parse a dotted quad ending at a space or NUL; 0 on bad input. */
static int parse_ipv4(const char *s, u8 out[4])
{
    int part;
    if (!s)
        return 0;
    for (part = 0; part < 4; part++) {
        u32 v = 0, digits = 0;
        while (*s >= '0' && *s <= '9' && digits < 4) {
            v = v * 10 + (u32)(*s++ - '0');
            digits++;
        }
        if (!digits || v > 255)
            return 0;
        out[part] = (u8)v;
        if (part < 3 && *s++ != '.')
            return 0;
    }
    return *s == 0 || *s == ' ';
}

static void print_ipv4(const u8 *a)
{
    int i;
    for (i = 0; i < 4; i++) {
        if (i)
            print_char('.');
        put_dec(a[i]);
    }
}

/* ---- virtio-pci ----------------------------------------------------------- */

static int visit(struct pci_addr a, u16 vendor, u16 device)
{
    if (vendor != VIRTIO_VENDOR || device != VIRTIO_NET_DEVICE)
        return 0;
    net_pci = a;
    found = 1;
    return 1;
}

/* Locate the virtio capabilities (§4.1.4) in the device's BARs. */
static void find_caps(void)
{
    u8 ptr;
    if (!(pci_read16(net_pci, PCI_STATUS) & PCI_STATUS_CAP_LIST))
        fail("virtio-net without a capability list");
    for (ptr = pci_read8(net_pci, PCI_CAP_PTR) & 0xfc; ptr; ptr = pci_read8(net_pci, ptr + 1) & 0xfc) {
        u8 type;
        u64 base;
        if (pci_read8(net_pci, ptr) != PCI_CAP_VENDOR)
            continue;
        type = pci_read8(net_pci, ptr + CAP_CFG_TYPE);
        if (type != VIRTIO_PCI_CAP_COMMON && type != VIRTIO_PCI_CAP_NOTIFY && type != VIRTIO_PCI_CAP_DEVICE)
            continue;
        base = pci_bar(net_pci, pci_read8(net_pci, ptr + CAP_BAR));
        if (!base || base >= 0x100000000ull)
            fail("virtio capability not in a memory BAR below 4 GiB");
        base += pci_read32(net_pci, ptr + CAP_OFFSET);
        if (type == VIRTIO_PCI_CAP_COMMON && !common_cfg)
            common_cfg = base;
        else if (type == VIRTIO_PCI_CAP_NOTIFY && !notify_base) {
            notify_base = base;
            notify_mul = pci_read32(net_pci, ptr + CAP_NOTIFY_MULTIPLIER);
        } else if (type == VIRTIO_PCI_CAP_DEVICE && !device_cfg)
            device_cfg = base;
    }
    if (!common_cfg || !notify_base || !device_cfg)
        fail("virtio-net lacks the common, notify or device capability");
}

static void setup_queue(u16 index, struct queue *q, struct vq_mem *mem)
{
    u16 max;
    mmio_write16(common_cfg + CC_QUEUE_SELECT, index);
    max = mmio_read16(common_cfg + CC_QUEUE_SIZE);
    if (max < QUEUE_SIZE)
        dev_fail("a queue is missing or too small");
    mmio_write16(common_cfg + CC_QUEUE_SIZE, QUEUE_SIZE);
    memset(mem, 0, sizeof(*mem));
    q->vq = mem;
    q->last_used = 0;
    write64(common_cfg + CC_QUEUE_DESC, (u64)mem->desc);
    write64(common_cfg + CC_QUEUE_DRIVER, (u64)&mem->avail);
    write64(common_cfg + CC_QUEUE_DEVICE, (u64)&mem->used);
    q->notify = notify_base + (u64)mmio_read16(common_cfg + CC_QUEUE_NOTIFY_OFF) * notify_mul;
    mmio_write16(common_cfg + CC_QUEUE_ENABLE, 1);
}

/* §3.1.1 initialization: VERSION_1 and MAC, both queues, DRIVER_OK. */
static void dev_init(void)
{
    u64 offered, features;
    int i;
    pci_write16(net_pci, PCI_COMMAND, pci_read16(net_pci, PCI_COMMAND) | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    find_caps();
    mmio_write8(common_cfg + CC_DEVICE_STATUS, 0);
    for (i = 0; i < 100000 && mmio_read8(common_cfg + CC_DEVICE_STATUS); i++)
        cpu_relax();
    mmio_write8(common_cfg + CC_DEVICE_STATUS, STATUS_ACKNOWLEDGE);
    mmio_write8(common_cfg + CC_DEVICE_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    mmio_write32(common_cfg + CC_DEVICE_FEATURE_SELECT, 0);
    offered = mmio_read32(common_cfg + CC_DEVICE_FEATURE);
    mmio_write32(common_cfg + CC_DEVICE_FEATURE_SELECT, 1);
    offered |= (u64)mmio_read32(common_cfg + CC_DEVICE_FEATURE) << 32;
    if (!(offered & (1ull << VIRTIO_F_VERSION_1)))
        dev_fail("device does not offer VIRTIO_F_VERSION_1");
    if (!(offered & (1ull << VIRTIO_NET_F_MAC)))
        dev_fail("device does not offer VIRTIO_NET_F_MAC");
    features = 1ull << VIRTIO_F_VERSION_1 | 1ull << VIRTIO_NET_F_MAC;
    mmio_write32(common_cfg + CC_DRIVER_FEATURE_SELECT, 0);
    mmio_write32(common_cfg + CC_DRIVER_FEATURE, (u32)features);
    mmio_write32(common_cfg + CC_DRIVER_FEATURE_SELECT, 1);
    mmio_write32(common_cfg + CC_DRIVER_FEATURE, (u32)(features >> 32));
    mmio_write8(common_cfg + CC_DEVICE_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK);
    if (!(mmio_read8(common_cfg + CC_DEVICE_STATUS) & STATUS_FEATURES_OK))
        dev_fail("device refused VERSION_1 | MAC");
    if (mmio_read16(common_cfg + CC_NUM_QUEUES) < 2)
        dev_fail("virtio-net with fewer than 2 queues");
    setup_queue(RX_QUEUE, &rxq, &rx_mem);
    setup_queue(TX_QUEUE, &txq, &tx_mem);
    for (i = 0; i < ETH_ALEN; i++)
        mac[i] = mmio_read8(device_cfg + NET_CFG_MAC + i);
    mmio_write8(common_cfg + CC_DEVICE_STATUS,
                STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
}

/* Make descriptor `head` available on `q` and notify the device. */
static void publish(struct queue *q, u16 head)
{
    struct vq_mem *vq = q->vq;
    vq->avail.ring[vq->avail.idx % QUEUE_SIZE] = head;
    barrier();
    vq->avail.idx++;
    barrier();
}

static void notify(struct queue *q, u16 index)
{
    mmio_write16(q->notify, index);
}

/* The next used element of `q`, or 0 when there is none yet. */
static int take_used(struct queue *q, u32 *id, u32 *len)
{
    volatile u16 *used_idx = &q->vq->used.idx;
    if (*used_idx == q->last_used)
        return 0;
    barrier();
    *id = q->vq->used.ring[q->last_used % QUEUE_SIZE].id;
    *len = q->vq->used.ring[q->last_used % QUEUE_SIZE].len;
    q->last_used++;
    return 1;
}

/* Post receive buffer i: descriptor i, or descriptors 2i and 2i+1 when split. */
static void post_rx(u16 i)
{
    struct virtq_desc *desc = rxq.vq->desc;
    u64 buf = (u64)rx_bufs[i];
    if (split_buffers) {
        u16 head = (u16)(2 * i);
        desc[head] = (struct virtq_desc){ buf, NET_HDR_SIZE, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT,
                                          (u16)(head + 1) };
        desc[head + 1] = (struct virtq_desc){ buf + NET_HDR_SIZE, RX_BUF_SIZE - NET_HDR_SIZE,
                                              VIRTQ_DESC_F_WRITE, 0 };
        publish(&rxq, head);
    } else {
        desc[i] = (struct virtq_desc){ buf, RX_BUF_SIZE, VIRTQ_DESC_F_WRITE, 0 };
        publish(&rxq, i);
    }
}

/* The receive buffer a used element's head descriptor belongs to. */
static u16 rx_buffer_of(u32 id)
{
    if (split_buffers) {
        if (id % 2 || id / 2 >= RX_BUFS)
            dev_fail("RX used ring returned a bad descriptor");
        return (u16)(id / 2);
    }
    if (id >= RX_BUFS)
        dev_fail("RX used ring returned a bad descriptor");
    return (u16)id;
}

/* ---- Ethernet and ARP ------------------------------------------------------- */

static void put_be16(u8 *p, u16 v)
{
    p[0] = (u8)(v >> 8);
    p[1] = (u8)v;
}

static u16 get_be16(const u8 *p)
{
    return (u16)(p[0] << 8 | p[1]);
}

/* Queue an ARP who-has peer_ip (broadcast, padded to ETH_ZLEN) on TX. */
static void send_arp_request(void)
{
    u8 *f = tx_buf + NET_HDR_SIZE;
    memset(tx_buf, 0, sizeof(tx_buf)); /* header: no offloads, num_buffers 0 */
    memset(f, 0xff, ETH_ALEN);
    memcpy(f + ETH_ALEN, mac, ETH_ALEN);
    put_be16(f + ETH_TYPE, ETHERTYPE_ARP);
    put_be16(f + ETH_HLEN, ARP_HTYPE_ETHER);
    put_be16(f + ETH_HLEN + 2, ETHERTYPE_IPV4);
    f[ETH_HLEN + 4] = ETH_ALEN;
    f[ETH_HLEN + 5] = 4;
    put_be16(f + ARP_OP, ARP_OP_REQUEST);
    memcpy(f + ARP_SHA, mac, ETH_ALEN);
    memcpy(f + ARP_SPA, my_ip, 4);
    memcpy(f + ARP_TPA, peer_ip, 4);
    if (split_buffers) {
        txq.vq->desc[0] = (struct virtq_desc){ (u64)tx_buf, NET_HDR_SIZE, VIRTQ_DESC_F_NEXT, 1 };
        txq.vq->desc[1] = (struct virtq_desc){ (u64)f, ETH_ZLEN, 0, 0 };
    } else {
        txq.vq->desc[0] = (struct virtq_desc){ (u64)tx_buf, sizeof(tx_buf), 0, 0 };
    }
    publish(&txq, 0);
    notify(&txq, TX_QUEUE);
}

/* Wait (bounded) for the device to return the TX buffer. */
static void wait_tx(void)
{
    u32 steps, id, len;
    for (steps = 0; !take_used(&txq, &id, &len); steps++) {
        if (steps == POLL_LIMIT_STEPS)
            dev_fail("TX buffer not returned after 20 s");
        delay_us(POLL_STEP_US);
    }
    if (id != 0)
        dev_fail("TX used ring returned another descriptor");
}

static int is_arp_reply(const u8 *f, u32 len)
{
    return len >= ETH_HLEN + ARP_LEN && get_be16(f + ETH_TYPE) == ETHERTYPE_ARP &&
           get_be16(f + ARP_OP) == ARP_OP_REPLY && memcmp(f + ARP_SPA, peer_ip, 4) == 0 &&
           memcmp(f + ARP_TPA, my_ip, 4) == 0;
}

/* NET_RX=len,0xethertype,0xfnv; with `dump`, NET_RX_FRAME=hex as well. */
static void report_frame(const u8 *f, u32 len, int dump)
{
    u32 i;
    print("NET_RX=");
    put_dec(len);
    print_char(',');
    put_hex(get_be16(f + ETH_TYPE));
    print_char(',');
    put_hex(fnv1a32(f, len));
    print_char('\n');
    if (!dump)
        return;
    print("NET_RX_FRAME=");
    for (i = 0; i < len; i++)
        put_hex2(f[i]);
    print_char('\n');
}

static int is_injected(const u8 *f, u32 len)
{
    return len >= ETH_HLEN && get_be16(f + ETH_TYPE) == ETHERTYPE_TEST;
}

/* Poll RX until a frame `wanted` accepts comes (and report it), re-posting
 * every other frame's buffer; with `resend`, send the ARP request again
 * every second. */
static void receive(int (*wanted)(const u8 *f, u32 len), int resend)
{
    u32 steps;
    for (steps = 0; steps < POLL_LIMIT_STEPS; steps++) {
        u32 id, len;
        while (take_used(&rxq, &id, &len)) {
            const u8 *buf, *f;
            u16 b = rx_buffer_of(id);
            if (len < NET_HDR_SIZE + ETH_HLEN || len > RX_BUF_SIZE)
                dev_fail("RX used length out of range");
            buf = rx_bufs[b];
            if ((buf[NET_HDR_NUM_BUFFERS] | buf[NET_HDR_NUM_BUFFERS + 1] << 8) != 1)
                dev_fail("RX header num_buffers is not 1");
            f = buf + NET_HDR_SIZE;
            len -= NET_HDR_SIZE;
            if (wanted(f, len)) {
                report_frame(f, len, wanted == is_arp_reply);
                post_rx(b);
                notify(&rxq, RX_QUEUE);
                return;
            }
            print("NET_RX_OTHER=");
            put_dec(len);
            print_char(',');
            put_hex(get_be16(f + ETH_TYPE));
            print_char('\n');
            post_rx(b);
            notify(&rxq, RX_QUEUE);
        }
        if (resend && steps && steps % RESEND_STEPS == 0) {
            print("NET_TX_AGAIN\n");
            send_arp_request();
            wait_tx();
        }
        delay_us(POLL_STEP_US);
    }
    dev_fail(resend ? "no ARP reply after 20 s" : "no injected frame after 20 s");
}

static void print_identity(void)
{
    u16 i;
    print("NET_MAC=");
    for (i = 0; i < ETH_ALEN; i++) {
        if (i)
            print_char(':');
        put_hex2(mac[i]);
    }
    print("\nNET_IP=");
    print_ipv4(my_ip);
    print("\nNET_PEER=");
    print_ipv4(peer_ip);
    print_char('\n');
}

/* Initialize the device (from reset) and exchange one ARP request and reply. */
static void net_round(u16 n)
{
    u16 i;
    put_kv_dec("NET_ROUND", n);
    dev_init();
    if (n == 1)
        print_identity();
    split_buffers = n == 2;
    put_kv_dec("NET_DESCRIPTORS", split_buffers ? 2 : 1);
    for (i = 0; i < RX_BUFS; i++)
        post_rx(i);
    notify(&rxq, RX_QUEUE);
    send_arp_request();
    wait_tx();
    print("NET_TX=ok\n");
    receive(is_arp_reply, 1);
}

void guest_main(void)
{
    const char *cmd = cmdline();
    u16 n;
    if (!parse_ipv4(param(cmd, "net.ip"), my_ip) || !parse_ipv4(param(cmd, "net.peer"), peer_ip))
        fail("command line needs net.ip=A.B.C.D net.peer=A.B.C.D");
    pci_scan_bus0(visit);
    if (!found)
        fail("no virtio-net device (1af4:1041) on bus 0");
    print("VIRTIO_NET=");
    pci_print_addr(net_pci);
    print_char('\n');
    for (n = 1; n <= ROUNDS; n++)
        net_round(n);
    print("NET_WAIT_FRAME\n");
    receive(is_injected, 0);
    print("NET_DONE\n");
}
