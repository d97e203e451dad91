/*
 * bzImage wrapper for the boot.c guest (Documentation/arch/x86/boot.rst).
 *
 *   0x000  boot sector (not bootable from a disk), setup header from 0x1f1
 *   0x200  jump over the header to the real-mode setup code
 *   0x202  "HdrS", protocol 2.15 fields
 *   0x400  the protected-mode payload (SETUP_SECTS = 1), loaded at 1 MiB:
 *          32-bit entry at offset 0, 64-bit entry at offset 0x200
 *
 * VMMs (linux-loader) enter the payload directly. Loaders that run the
 * real-mode setup (QEMU -kernel, through its linuxboot option ROM) get a
 * small setup that does what Linux's does: copy the header into a zeroed
 * boot_params, fill the e820 table with BIOS int 0x15/E820, switch to
 * protected mode and jump to code32_start with ESI = boot_params.
 *
 * Built twice: XLOADFLAGS=1 (XLF_KERNEL_64) for bzimage64, 0 for bzimage32.
 */

#define SETUP_SECTS         1
#define LOADED_HIGH         0x01
#define LOAD_ADDRESS        0x100000
#define INIT_SIZE           0x200000    /* guest.ld asserts the image fits */
#define CMDLINE_SIZE        2047
#define INITRD_ADDR_MAX     0x7fffffff
#define KERNEL_ALIGNMENT    0x200000

/* Real-mode setup: boot_params at this offset from the setup segment. */
#define RM_BOOT_PARAMS      0x1000
#define RM_STACK            0xf000
#define BP_E820_ENTRIES     0x1e8
#define BP_E820_TABLE       0x2d0
#define BP_HDR_START        0x1f1
#define BP_HDR_END          0x290
#define E820_MAX            128
#define SMAP                0x534d4150
#define RM_CODE32_SEL       0x08
#define RM_DATA_SEL         0x10

        .code16
        .section .text, "ax"
        .globl  _start
_start:
bootsect:
        /* Booted from a disk by a BIOS: nothing to do. */
        cli
1:      hlt
        jmp     1b

        .org    0x1f1
setup_sects:        .byte   SETUP_SECTS
root_flags:         .word   0
syssize:            .long   (payload_end - payload_start + 15) / 16
ram_size:           .word   0
vid_mode:           .word   0xffff
root_dev:           .word   0
boot_flag:          .word   0xaa55

        .org    0x200
        jmp     realmode_setup              /* 2-byte short jump */
        .org    0x202
header:             .ascii  "HdrS"
version:            .word   0x020f
realmode_swtch:     .long   0
start_sys_seg:      .word   0x1000
kernel_version:     .word   version_string - 0x200
type_of_loader:     .byte   0
loadflags:          .byte   LOADED_HIGH
setup_move_size:    .word   0x8000
code32_start:       .long   LOAD_ADDRESS
ramdisk_image:      .long   0
ramdisk_size:       .long   0
bootsect_kludge:    .long   0
heap_end_ptr:       .word   0
ext_loader_ver:     .byte   0
ext_loader_type:    .byte   0
cmd_line_ptr:       .long   0
initrd_addr_max:    .long   INITRD_ADDR_MAX
kernel_alignment:   .long   KERNEL_ALIGNMENT
relocatable_kernel: .byte   0
min_alignment:      .byte   12
xloadflags:         .word   XLOADFLAGS
cmdline_size:       .long   CMDLINE_SIZE
hardware_subarch:   .long   0
hardware_subarch_data: .quad 0
payload_offset:     .long   0
payload_length:     .long   0
setup_data:         .quad   0
pref_address:       .quad   LOAD_ADDRESS
init_size:          .long   INIT_SIZE
handover_offset:    .long   0
kernel_info_offset: .long   0
        .org    0x26c

/* Entered at setup segment + 0x20 : 0 with DS = the setup segment. */
realmode_setup:
        cli
        cld
        movw    %cs, %ax
        subw    $0x20, %ax
        movw    %ax, %ds
        movw    %ax, %es
        movw    %ax, %ss
        movw    $RM_STACK, %sp
        /* Zeroed boot_params with a copy of the (loader-filled) header. */
        movw    $RM_BOOT_PARAMS, %di
        movw    $2048, %cx
        xorw    %ax, %ax
        rep stosw
        movw    $BP_HDR_START, %si
        movw    $(RM_BOOT_PARAMS + BP_HDR_START), %di
        movw    $(BP_HDR_END - BP_HDR_START), %cx
        rep movsb
        /* e820 map from the BIOS. */
        xorl    %ebx, %ebx
        movw    $(RM_BOOT_PARAMS + BP_E820_TABLE), %di
        xorw    %bp, %bp
1:      movl    $0xe820, %eax
        movl    $20, %ecx
        movl    $SMAP, %edx
        int     $0x15
        jc      2f
        cmpl    $SMAP, %eax
        jne     2f
        incw    %bp
        addw    $20, %di
        testl   %ebx, %ebx
        jz      2f
        cmpw    $E820_MAX, %bp
        jb      1b
2:      movw    %bp, %ax
        movb    %al, RM_BOOT_PARAMS + BP_E820_ENTRIES
        /* Linear addresses: ESI = boot_params, GDT base patched in. */
        xorl    %esi, %esi
        movw    %ds, %si
        shll    $4, %esi
        leal    rm_gdt(%esi), %eax
        movl    %eax, rm_gdt_desc + 2
        addl    $RM_BOOT_PARAMS, %esi
        movl    code32_start, %eax
        movl    %eax, rm_farptr
        lgdtl   rm_gdt_desc
        movl    %cr0, %eax
        orl     $1, %eax
        movl    %eax, %cr0
        movw    $RM_DATA_SEL, %ax
        movw    %ax, %ds
        movw    %ax, %es
        movw    %ax, %ss
        movw    %ax, %fs
        movw    %ax, %gs
        /* CS still has its real-mode base: setup segment + 0x200. */
        ljmpl   *%cs:(rm_farptr - 0x200)

        .balign 8
rm_farptr:
        .long   LOAD_ADDRESS
        .word   RM_CODE32_SEL
        .balign 8
rm_gdt:
        .quad   0
        .quad   0x00cf9a000000ffff          /* RM_CODE32_SEL */
        .quad   0x00cf92000000ffff          /* RM_DATA_SEL */
rm_gdt_desc:
        .word   3 * 8 - 1
        .long   0

version_string:
        .asciz  "xhyve-manager test guest"

        .org    (SETUP_SECTS + 1) * 512
payload_start:
        .incbin PAYLOAD
        .balign 16
payload_end:
