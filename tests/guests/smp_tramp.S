/*
 * AP start-up trampoline for the smp guest. smp.c copies [smp_tramp_start,
 * smp_tramp_end) to TRAMP_BASE (below 1 MiB, 4 KiB aligned) and sends
 * SIPI vector TRAMP_BASE >> 12, so an AP starts here in real mode with
 * CS = TRAMP_BASE >> 4, IP = 0. It enters protected mode with the main
 * image's GDT, then long mode with the BSP's page tables (rt/start.S), and
 * continues at ap_long_entry in the main image.
 */
#include "rt_defs.h"

#define TRAMP_BASE      0x10000
#define MSR_EFER        0xc0000080
#define EFER_LME        (1 << 8)
#define CR4_PAE         (1 << 5)
#define CR0_PE          (1 << 0)
#define CR0_PG          (1 << 31)
#define AP_STACK_SIZE   8192
#define AP_MAX          16

/* Offset inside the trampoline (for real-mode DS = CS addressing). */
#define T(label)        ((label) - smp_tramp_start)

        .section .rodata, "a"
        .code16
        .globl  smp_tramp_start, smp_tramp_end
smp_tramp_start:
        cli
        cld
        movw    %cs, %ax
        movw    %ax, %ds
        lgdtl   T(tramp_gdt_desc)
        movl    %cr0, %eax
        orl     $CR0_PE, %eax
        movl    %eax, %cr0
        ljmpl   $GDT_CODE32, $(TRAMP_BASE + T(tramp32))

        .code32
tramp32:
        movl    $GDT_DATA, %eax
        movl    %eax, %ds
        movl    %eax, %es
        movl    %eax, %ss
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
        orl     $CR0_PG, %eax
        movl    %eax, %cr0
        ljmp    $GDT_CODE64, $ap_long_entry

        .balign 8
tramp_gdt_desc:
        .word   4 * 8 - 1
        .long   gdt
smp_tramp_end:

        .text
        .code64
ap_long_entry:
        movl    $GDT_DATA, %eax
        movl    %eax, %ds
        movl    %eax, %es
        movl    %eax, %ss
        movl    %eax, %fs
        movl    %eax, %gs
        /* Take the next free stack slot. */
        movl    $1, %eax
        lock xaddl %eax, ap_stack_next
        cmpl    $AP_MAX, %eax
        jae     2f
        movl    %eax, %edi
        incl    %eax
        shlq    $13, %rax               /* * AP_STACK_SIZE */
        addq    $ap_stacks, %rax
        movq    %rax, %rsp
        call    ap_main
2:      cli
        hlt
        jmp     2b

        .data
        .balign 4
ap_stack_next:
        .long   0

        .bss
        .balign 16
ap_stacks:
        .skip   AP_MAX * AP_STACK_SIZE
