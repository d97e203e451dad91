/* PVH entry note (xen/include/public/elfnote.h: XEN_ELFNOTE_PHYS32_ENTRY = 18):
 * tells PVH loaders (linux-loader, QEMU) the 32-bit physical entry point. */
#define XEN_ELFNOTE_PHYS32_ENTRY 18
        .section .note.Xen, "a"
        .balign 4
        .long   4                       /* namesz: "Xen\0" */
        .long   4                       /* descsz */
        .long   XEN_ELFNOTE_PHYS32_ENTRY
        .asciz  "Xen"
        .long   pvh_start
