/* virtio-pci modern transport (virtio 1.2 §4.1) and split virtqueues (§2.7)
 * for the polling test guests (virtio, net). */
#ifndef VIRTIO_PCI_H
#define VIRTIO_PCI_H
#include "pci.h"

#define VIRTIO_VENDOR           0x1af4
#define VIRTIO_MODERN_BASE      0x1040 /* + device id (§4.1.2.1) */

#define VIRTIO_F_VERSION_1      32 /* §6 */

#define VIRTQ_DESC_F_NEXT       1
#define VIRTQ_DESC_F_WRITE      2
/* The largest queue a guest asks for; the rings below are sized for it and
 * a queue may use fewer entries (struct virtq.size). */
#define VIRTQ_MAX_SIZE          16
#define VIRTIO_POLL_STEP_US     100

/* §2.7.5 struct virtq_desc */
struct virtq_desc {
    u64 addr;
    u32 len;
    u16 flags;
    u16 next;
} PACKED;

/* The three parts of a split virtqueue, each on its own page. */
struct virtq_mem {
    struct virtq_desc desc[VIRTQ_MAX_SIZE] __attribute__((aligned(4096)));
    struct {
        u16 flags, idx, ring[VIRTQ_MAX_SIZE], used_event;
    } avail __attribute__((aligned(4096)));
    struct {
        u16 flags, idx;
        struct {
            u32 id, len;
        } ring[VIRTQ_MAX_SIZE];
        u16 avail_event;
    } used __attribute__((aligned(4096)));
};

struct virtq {
    struct virtq_mem *mem;
    u64 notify;    /* this queue's notification address */
    u16 index;     /* queue number, written to `notify` */
    u16 size;      /* entries in use, at most VIRTQ_MAX_SIZE */
    u16 last_used; /* used.idx the driver has consumed up to */
};

struct virtio_pci {
    struct pci_addr pci;
    /* Guest-physical addresses of the §4.1.4 structures (0 = absent). */
    u64 common, notify, isr, device;
    u32 notify_mul;
    u64 features; /* negotiated */
};

/* Set FAILED in the device status (once the common configuration is known)
 * and fail the guest. */
void virtio_fail(struct virtio_pci *d, const char *why) NORETURN;

/* §3.1.1 steps 1-6: enable memory decoding and bus mastering, locate the
 * capabilities, reset, ACKNOWLEDGE | DRIVER, then negotiate VERSION_1 and
 * `required` (failing unless offered) plus whatever of `optional` is
 * offered, and set FEATURES_OK. */
void virtio_begin(struct virtio_pci *d, u64 required, u64 optional);
/* §4.1.5.1.3: set up and enable queue `index` with `size` entries in `mem`. */
void virtio_setup_queue(struct virtio_pci *d, struct virtq *q, u16 index, struct virtq_mem *mem, u16 size);
/* num_queues from the common configuration (§4.1.4.3). */
u16 virtio_num_queues(struct virtio_pci *d);
/* §3.1.1 step 8. */
void virtio_driver_ok(struct virtio_pci *d);

/* Make descriptor chain `head` available (no notification). */
void virtq_publish(struct virtq *q, u16 head);
/* §4.1.5.2: tell the device the queue has new buffers. */
void virtq_notify(struct virtq *q);
/* The next used element, or 0 when there is none yet. */
int virtq_take_used(struct virtq *q, u32 *id, u32 *len);
/* Poll (VIRTIO_POLL_STEP_US apart, at most `limit_steps` times, failing
 * with `timeout_why`) for the next used element; fail unless it is `head`.
 * Returns its length. */
u32 virtq_wait_used(struct virtio_pci *d, struct virtq *q, u16 head, u32 limit_steps, const char *timeout_why);
#endif
