/*
 * Entry points shared by every test guest.
 *
 * The image is linked at 1 MiB (guest.ld) and starts with:
 *   offset 0x000  linux32_start  Linux boot protocol 32-bit entry (code32_start):
 *                                protected mode, paging off, ESI = boot_params
 *   offset 0x200  linux64_start  Linux boot protocol 64-bit entry (startup_64):
 *                                long mode, identity paging, RSI = boot_params
 *   pvh_start                    PVH entry (XEN_ELFNOTE_PHYS32_ENTRY note):
 *                                protected mode, paging off, EBX = hvm_start_info
 *
 * Every entry records which one ran, the boot structure pointer and CR0 as
 * found, zeroes .bss, builds its own identity map of the low 4 GiB (2 MiB
 * pages, so the LAPIC, IOAPIC and 32-bit PCI BARs are reachable), loads its
 * own GDT and calls rt_main() in 64-bit mode on its own stack.
 *
 * Integer instructions only (the kvm-pvm emulator on the development host
 * cannot run SSE/AVX/x87).
 */

#include "rt_defs.h"

#define MSR_EFER        0xc0000080
#define EFER_LME        (1 << 8)
#define CR0_PE          (1 << 0)
#define CR0_PG          (1 << 31)
#define CR4_PAE         (1 << 5)
#define PTE_P_RW        0x3
#define PDE_2M_P_RW_PS  0x83
#define LOAD_MAGIC      0x4c4f4144      /* "DAOL": proves the image sits at its link address */

/* Print one character on COM1 without a stack or memory (polls LSR.THRE). */
.macro RAW_PUTC c
        movw    $0x3fd, %dx
99:     inb     %dx, %al
        testb   $0x20, %al
        jz      99b
        movw    $0x3f8, %dx
        movb    $\c, %al
        outb    %al, %dx
.endm

/* Report an image loaded away from its link address, then leave. */
.macro BAD_LOAD
        RAW_PUTC 'B'
        RAW_PUTC 'A'
        RAW_PUTC 'D'
        RAW_PUTC '_'
        RAW_PUTC 'L'
        RAW_PUTC 'O'
        RAW_PUTC 'A'
        RAW_PUTC 'D'
        RAW_PUTC '\n'
        movb    $EXIT_BAD_LOAD, %al
        outb    %al, $DEBUG_EXIT_PORT
98:     hlt
        jmp     98b
.endm

        .section .text.entry, "ax"

/* ---- offset 0: Linux 32-bit entry ------------------------------------ */
        .code32
        .globl  linux32_start
linux32_start:
        cli
        cld
        movl    $ENTRY_LINUX32, %edi
        movl    %esi, %ebp
        jmp     enter32

/* ---- offset 0x200: Linux 64-bit entry -------------------------------- */
        .org    0x200
        .code64
        .globl  linux64_start
linux64_start:
        cli
        cld
        leaq    linux64_start(%rip), %rax
        cmpq    $linux64_start, %rax
        je      1f
        BAD_LOAD
1:      movl    $ENTRY_LINUX64, boot_entry_kind(%rip)
        movq    %rsi, boot_info_ptr(%rip)
        movq    %cr0, %rax
        movq    %rax, boot_entry_cr0(%rip)
        /* The loader's identity map covers the image; zero .bss. */
        movq    $__bss_start, %rdi
        movq    $__bss_end, %rcx
        subq    %rdi, %rcx
        shrq    $3, %rcx
        xorl    %eax, %eax
        rep stosq
        /* Our own 4 GiB identity map: PML4[0] -> PDPT, PDPT[0..3] -> PD[0..3]. */
        movq    $pdpt, %rax
        orq     $PTE_P_RW, %rax
        movq    %rax, pml4
        xorl    %ecx, %ecx
2:      movq    %rcx, %rax
        shlq    $12, %rax
        addq    $pd, %rax
        orq     $PTE_P_RW, %rax
        movq    %rax, pdpt(,%rcx,8)
        incl    %ecx
        cmpl    $4, %ecx
        jne     2b
        xorl    %ecx, %ecx
3:      movq    %rcx, %rax
        shlq    $21, %rax
        orq     $PDE_2M_P_RW_PS, %rax
        movq    %rax, pd(,%rcx,8)
        incl    %ecx
        cmpl    $2048, %ecx
        jne     3b
        movq    $pml4, %rax
        movq    %rax, %cr3
        lgdt    gdt_desc
        pushq   $GDT_CODE64
        pushq   $long_entry
        lretq

/* ---- PVH entry ------------------------------------------------------- */
        .code32
        .globl  pvh_start
pvh_start:
        cli
        cld
        movl    $ENTRY_PVH, %edi
        movl    %ebx, %ebp
        /* fall through */

/* 32-bit protected mode, paging off: EDI = entry kind, EBP = boot pointer. */
enter32:
        cmpl    $LOAD_MAGIC, load_marker
        je      1f
        BAD_LOAD
1:      movl    %edi, boot_entry_kind
        movl    %ebp, boot_info_ptr
        movl    $0, boot_info_ptr + 4
        movl    %cr0, %eax
        movl    %eax, boot_entry_cr0
        movl    $__bss_start, %edi
        movl    $__bss_end, %ecx
        subl    %edi, %ecx
        shrl    $2, %ecx
        xorl    %eax, %eax
        rep stosl
        movl    $pdpt + PTE_P_RW, pml4
        xorl    %ecx, %ecx
2:      movl    %ecx, %eax
        shll    $12, %eax
        addl    $pd + PTE_P_RW, %eax
        movl    %eax, pdpt(,%ecx,8)
        incl    %ecx
        cmpl    $4, %ecx
        jne     2b
        xorl    %ecx, %ecx
3:      movl    %ecx, %eax
        shll    $21, %eax
        orl     $PDE_2M_P_RW_PS, %eax
        movl    %eax, pd(,%ecx,8)
        incl    %ecx
        cmpl    $2048, %ecx
        jne     3b
        lgdt    gdt_desc
        movl    %cr4, %eax
        orl     $CR4_PAE, %eax
        movl    %eax, %cr4
        movl    $pml4, %eax
        movl    %eax, %cr3
        movl    $MSR_EFER, %ecx
        rdmsr
        orl     $EFER_LME, %eax
        wrmsr
        movl    %cr0, %eax
        orl     $(CR0_PG | CR0_PE), %eax
        movl    %eax, %cr0
        ljmp    $GDT_CODE64, $long_entry

/* ---- common 64-bit continuation -------------------------------------- */
        .code64
long_entry:
        movl    $GDT_DATA, %eax
        movl    %eax, %ds
        movl    %eax, %es
        movl    %eax, %ss
        movl    %eax, %fs
        movl    %eax, %gs
        movq    $boot_stack_top, %rsp
        xorl    %ebp, %ebp
        call    rt_main
1:      cli
        hlt
        jmp     1b

        .section .rodata
        .balign 4
load_marker:
        .long   LOAD_MAGIC

        .section .data
        .balign 16
        .globl  gdt
gdt:
        .quad   0                       /* null */
        .quad   0x00af9a000000ffff      /* GDT_CODE64: 64-bit code, DPL 0 */
        .quad   0x00cf92000000ffff      /* GDT_DATA:   flat 4 GiB data */
        .quad   0x00cf9a000000ffff      /* GDT_CODE32: flat 4 GiB 32-bit code */
gdt_end:
        .balign 8
        .globl  gdt_desc
gdt_desc:
        .word   gdt_end - gdt - 1
        .quad   gdt                     /* 32-bit lgdt uses the low 4 bytes */

        .balign 8
        .globl  boot_entry_kind, boot_info_ptr, boot_entry_cr0
boot_entry_kind:        .long 0
        .long   0
boot_info_ptr:          .quad 0
boot_entry_cr0:         .quad 0

        .section .bss
        .balign 4096
        .globl  pml4, pdpt, pd
pml4:   .skip   4096
pdpt:   .skip   4096
pd:     .skip   4 * 4096
        .balign 16
boot_stack:
        .skip   16384
boot_stack_top:
