/* cad: waits for Ctrl-Alt-Del on the i8042 keyboard and resets the
 * machine through the controller, as an OS's keyboard driver would.
 *
 * It brings the keyboard interface up the way Linux's i8042 driver does
 * (drivers/input/serio/i8042.c, i8042_controller_init): flush the output
 * buffer, read the command byte (0x20), clear "keyboard disabled", set
 * "keyboard interrupt", keep the translation bit as the firmware left it,
 * write it back (0x60); then, like atkbd, enables scanning (0xF4, answered
 * by ACK 0xFA). With translation on the keyboard's bytes arrive in scancode
 * set 1, without it in set 2. IRQ 1 is routed through the IOAPIC to a
 * vector on this CPU (edge, active high: ISA default, no MADT override) and
 * interrupts stay off, so a delivered IRQ stays pending in the LAPIC's IRR.
 *
 * It polls the status port for output-buffer-full, reads the scancodes,
 * tracks Ctrl and Alt, and on Delete pressed with both held prints the
 * bytes received until every key is released again, then resets with
 * controller command 0xFE.
 *
 * Prints: CTR=0x.., SCANCODE_SET=1|2, KBD_IRQ_PENDING_BEFORE=0|1,
 * WAITING_FOR_CAD, CAD_SCANCODES=xx,xx,..., CTRL_ALT_DEL,
 * KBD_IRQ_PENDING=0|1, RESET. */
#include "rt.h"
#include "apic.h"

/* i8042 ports and status bits (IBM PS/2 Technical Reference, 8042). */
#define I8042_DATA          0x60
#define I8042_STATUS        0x64
#define I8042_COMMAND       0x64
#define I8042_STR_OBF       0x01
#define I8042_STR_IBF       0x02
/* Controller commands. */
#define I8042_CMD_READ_CTR  0x20
#define I8042_CMD_WRITE_CTR 0x60
#define I8042_CMD_RESET     0xfe
/* Command byte bits ("CTR" in Linux's i8042.h). */
#define I8042_CTR_KBDINT    0x01
#define I8042_CTR_KBDDIS    0x10
#define I8042_CTR_XLATE     0x40
/* Keyboard commands and replies (atkbd.c). */
#define KBD_CMD_ENABLE      0xf4
#define KBD_REPLY_ACK       0xfa

/* Scancodes. Set 1: break = make | 0x80. Set 2: break = 0xF0, make. */
#define SC_EXTENDED         0xe0
#define SC1_BREAK_BIT       0x80
#define SC1_LCTRL           0x1d
#define SC1_LALT            0x38
#define SC1_DELETE          0x53  /* after 0xE0 */
#define SC2_BREAK_PREFIX    0xf0
#define SC2_LCTRL           0x14
#define SC2_LALT            0x11
#define SC2_DELETE          0x71  /* after 0xE0 */


#define KBD_GSI             1
#define KBD_VECTOR          0x41
/* How long IRQ 1 may take to arrive after the scancodes were read. */
#define IRQ_WAIT_MS         1000

/* Polling: one status read per POLL_US; a controller reply must come within
 * REPLY_POLLS polls, the rest of the key sequence within TAIL_POLLS. */
#define POLL_US             1000
#define REPLY_POLLS         1000
#define TAIL_POLLS          2000
#define MAX_CODES           32

static void wait_input_empty(void)
{
    int i;
    for (i = 0; i < REPLY_POLLS && (inb(I8042_STATUS) & I8042_STR_IBF); i++)
        delay_us(POLL_US);
    if (inb(I8042_STATUS) & I8042_STR_IBF)
        fail("i8042 input buffer stays full");
}

/* The next byte from the controller, or -1 after `polls` empty polls. */
static int read_byte(int polls)
{
    int i;
    for (i = 0; i < polls; i++) {
        if (inb(I8042_STATUS) & I8042_STR_OBF)
            return inb(I8042_DATA);
        delay_us(POLL_US);
    }
    return -1;
}

static u8 reply(const char *what)
{
    int b = read_byte(REPLY_POLLS);
    if (b < 0)
        fail(what);
    return (u8)b;
}

static void command(u8 cmd)
{
    wait_input_empty();
    outb(I8042_COMMAND, cmd);
}

static void data(u8 byte)
{
    wait_input_empty();
    outb(I8042_DATA, byte);
}

static void print_hex2(u8 b)
{
    static const char digits[] = "0123456789abcdef";
    print_char(digits[b >> 4]);
    print_char(digits[b & 0xf]);
}

/* Key state decoded from one scancode set. */
struct keys {
    int set;         /* 1 or 2 */
    int extended;    /* the previous byte was 0xE0 */
    int breaking;    /* set 2: the previous byte was 0xF0 */
    int ctrl, alt, del;
};

/* Feed one byte; returns 1 when it completed a Delete press with Ctrl and
 * Alt held. */
static int feed(struct keys *k, u8 b)
{
    int down, code;
    if (b == SC_EXTENDED) {
        k->extended = 1;
        return 0;
    }
    if (k->set == 2 && b == SC2_BREAK_PREFIX) {
        k->breaking = 1;
        return 0;
    }
    if (k->set == 1) {
        down = !(b & SC1_BREAK_BIT);
        code = b & (u8)~SC1_BREAK_BIT;
    } else {
        down = !k->breaking;
        code = b;
    }
    int ext = k->extended;
    k->extended = 0;
    k->breaking = 0;
    /* Left Ctrl/Alt, or their right-hand twins (the same code after 0xE0). */
    if (code == (k->set == 1 ? SC1_LCTRL : SC2_LCTRL))
        k->ctrl = down;
    else if (code == (k->set == 1 ? SC1_LALT : SC2_LALT))
        k->alt = down;
    else if (ext && code == (k->set == 1 ? SC1_DELETE : SC2_DELETE)) {
        int pressed = down && !k->del;
        k->del = down;
        return pressed && k->ctrl && k->alt;
    }
    return 0;
}

void guest_main(void)
{
    /* Flush whatever the controller holds, then set the command byte up. */
    while (read_byte(1) >= 0)
        ;
    command(I8042_CMD_READ_CTR);
    u8 ctr = reply("no reply to 'read command byte'");
    ctr = (u8)((ctr & ~I8042_CTR_KBDDIS) | I8042_CTR_KBDINT);
    command(I8042_CMD_WRITE_CTR);
    data(ctr);
    command(I8042_CMD_READ_CTR);
    u8 readback = reply("no reply to 'read command byte'");
    if (readback != ctr)
        fail("command byte did not read back as written");
    put_kv_hex("CTR", ctr);
    data(KBD_CMD_ENABLE);
    if (reply("no reply to 'enable scanning'") != KBD_REPLY_ACK)
        fail("keyboard did not ACK 'enable scanning'");

    struct keys keys = { 0 };
    keys.set = (ctr & I8042_CTR_XLATE) ? 1 : 2;
    put_kv_dec("SCANCODE_SET", (u64)keys.set);

    /* LAPIC on, GSI 1 -> KBD_VECTOR on APIC 0, fixed, physical, edge, high. */
    route_gsi_to_vector(KBD_GSI, KBD_VECTOR);
    put_kv_dec("KBD_IRQ_PENDING_BEFORE", (u64)vector_pending(KBD_VECTOR));

    print("WAITING_FOR_CAD\n");
    u8 codes[MAX_CODES];
    int n = 0, seen = 0;
    for (;;) {
        int b = read_byte(seen ? TAIL_POLLS : 1);
        if (b < 0) {
            if (seen)
                break; /* the keys were never all released */
            continue;
        }
        if (n < MAX_CODES)
            codes[n++] = (u8)b;
        if (feed(&keys, (u8)b))
            seen = 1;
        if (seen && !keys.ctrl && !keys.alt && !keys.del && !keys.extended && !keys.breaking)
            break;
        if (!seen && !keys.ctrl && !keys.alt && !keys.del && !keys.extended && !keys.breaking)
            n = 0; /* only report the sequence that held Ctrl-Alt-Del */
    }
    print("CAD_SCANCODES=");
    for (int i = 0; i < n; i++) {
        if (i)
            print_char(',');
        print_hex2(codes[i]);
    }
    print("\nCTRL_ALT_DEL\n");
    put_kv_dec("KBD_IRQ_PENDING", (u64)wait_vector_pending(KBD_VECTOR, IRQ_WAIT_MS));

    print("RESET\n");
    command(I8042_CMD_RESET);
    delay_us(1000000);
    fail("still running after the i8042 reset");
}
