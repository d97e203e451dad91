/* echo: console input end to end. Prints READY, then reads COM1 by polling
 * LSR.DR and prints every received line back as "ECHO=<line>". The line
 * "exit" ends the guest (EXIT_OK). Lines longer than 255 bytes are cut. */
#include "rt.h"

#define COM1            0x3f8
#define UART_LSR        5
#define UART_LSR_DR     0x01
#define LINE_MAX        256

static char read_char(void)
{
    while (!(inb(COM1 + UART_LSR) & UART_LSR_DR))
        cpu_relax();
    return (char)inb(COM1);
}

void guest_main(void)
{
    char line[LINE_MAX];
    usize n = 0;
    print("READY\n");
    for (;;) {
        char c = read_char();
        if (c == '\r')
            continue;
        if (c != '\n') {
            if (n < LINE_MAX - 1)
                line[n++] = c;
            continue;
        }
        line[n] = 0;
        print("ECHO=");
        print(line);
        print_char('\n');
        if (n == 4 && memcmp(line, "exit", 4) == 0)
            return;
        n = 0;
    }
}
