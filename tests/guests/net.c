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
#include "virtio_pci.h"

#define VIRTIO_ID_NET           1
#define VIRTIO_NET_F_MAC        5  /* §5.1.3 */
#define NET_CFG_MAC             0  /* §5.1.4 struct virtio_net_config */

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

static struct virtq_mem rx_mem, tx_mem;
static struct virtq rxq, txq;
static u8 rx_bufs[RX_BUFS][RX_BUF_SIZE] __attribute__((aligned(4096)));
static u8 tx_buf[NET_HDR_SIZE + ETH_ZLEN] __attribute__((aligned(64)));

static struct virtio_pci net;
static int found;
static u8 mac[ETH_ALEN], my_ip[4], peer_ip[4];
/* Round 2 splits every buffer into two descriptors: the 12-byte header and
 * the frame (as Linux's driver does for TX); the device must not assume
 * any framing (virtio 1.2 §2.7.4). */
static int split_buffers;

static void dev_fail(const char *why)
{
    virtio_fail(&net, why);
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
    if (vendor != VIRTIO_VENDOR || device != VIRTIO_MODERN_BASE + VIRTIO_ID_NET)
        return 0;
    net.pci = a;
    found = 1;
    return 1;
}

/* §3.1.1 initialization: VERSION_1 and MAC, both queues, DRIVER_OK. */
static void dev_init(void)
{
    int i;
    virtio_begin(&net, 1ull << VIRTIO_NET_F_MAC, 0);
    if (!net.device)
        dev_fail("virtio-net lacks the device capability");
    if (virtio_num_queues(&net) < 2)
        dev_fail("virtio-net with fewer than 2 queues");
    virtio_setup_queue(&net, &rxq, RX_QUEUE, &rx_mem, QUEUE_SIZE);
    virtio_setup_queue(&net, &txq, TX_QUEUE, &tx_mem, QUEUE_SIZE);
    for (i = 0; i < ETH_ALEN; i++)
        mac[i] = mmio_read8(net.device + NET_CFG_MAC + i);
    virtio_driver_ok(&net);
}

/* Post receive buffer i: descriptor i, or descriptors 2i and 2i+1 when split. */
static void post_rx(u16 i)
{
    struct virtq_desc *desc = rxq.mem->desc;
    u64 buf = (u64)rx_bufs[i];
    if (split_buffers) {
        u16 head = (u16)(2 * i);
        desc[head] = (struct virtq_desc){ buf, NET_HDR_SIZE, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT,
                                          (u16)(head + 1) };
        desc[head + 1] = (struct virtq_desc){ buf + NET_HDR_SIZE, RX_BUF_SIZE - NET_HDR_SIZE,
                                              VIRTQ_DESC_F_WRITE, 0 };
        virtq_publish(&rxq, head);
    } else {
        desc[i] = (struct virtq_desc){ buf, RX_BUF_SIZE, VIRTQ_DESC_F_WRITE, 0 };
        virtq_publish(&rxq, i);
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
        txq.mem->desc[0] = (struct virtq_desc){ (u64)tx_buf, NET_HDR_SIZE, VIRTQ_DESC_F_NEXT, 1 };
        txq.mem->desc[1] = (struct virtq_desc){ (u64)f, ETH_ZLEN, 0, 0 };
    } else {
        txq.mem->desc[0] = (struct virtq_desc){ (u64)tx_buf, sizeof(tx_buf), 0, 0 };
    }
    virtq_publish(&txq, 0);
    virtq_notify(&txq);
}

/* Wait (bounded) for the device to return the TX buffer. */
static void wait_tx(void)
{
    virtq_wait_used(&net, &txq, 0, POLL_LIMIT_STEPS, "TX buffer not returned after 20 s");
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
        while (virtq_take_used(&rxq, &id, &len)) {
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
                virtq_notify(&rxq);
                return;
            }
            print("NET_RX_OTHER=");
            put_dec(len);
            print_char(',');
            put_hex(get_be16(f + ETH_TYPE));
            print_char('\n');
            post_rx(b);
            virtq_notify(&rxq);
        }
        if (resend && steps && steps % RESEND_STEPS == 0) {
            print("NET_TX_AGAIN\n");
            send_arp_request();
            wait_tx();
        }
        delay_us(VIRTIO_POLL_STEP_US);
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
    virtq_notify(&rxq);
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
    pci_print_addr(net.pci);
    print_char('\n');
    for (n = 1; n <= ROUNDS; n++)
        net_round(n);
    print("NET_WAIT_FRAME\n");
    receive(is_injected, 0);
    print("NET_DONE\n");
}
