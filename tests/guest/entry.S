/*
 * Entry point of the tiny multiboot guest (32-bit protected mode).
 *
 * The multiboot loader enters with flat segments, paging off, interrupts
 * disabled, EAX = 0x2BADB002 and EBX = the multiboot information structure.
 * We load our own GDT (the loader's one may be gone) and an IDT whose only
 * live vector is the timer (IRQ 0, remapped to vector 0x20), then call C.
 *
 * The timer handler never executes `iret` (the host's instruction emulator
 * cannot run it): interrupts are only ever enabled around a `hlt`, so the
 * handler acknowledges the PIC and returns to the instruction after `hlt`
 * with `ret $8`, discarding CS and EFLAGS.  IF stays clear, as the interrupt
 * gate left it, which is exactly the state the C code expects.
 */

#define MB_MAGIC 0x1BADB002
#define MB_FLAGS 0x00000000

        .section .multiboot, "a"
        .align 4
        .long MB_MAGIC
        .long MB_FLAGS
        .long -(MB_MAGIC + MB_FLAGS)

        .section .text
        .code32
        .globl _start
_start:
        cli
        movl    $stack_top, %esp
        movl    %eax, %esi              /* multiboot magic */
        movl    %ebx, %edi              /* multiboot info  */

        lgdt    gdt_descriptor
        ljmp    $0x08, $1f
1:      movw    $0x10, %ax
        movw    %ax, %ds
        movw    %ax, %es
        movw    %ax, %fs
        movw    %ax, %gs
        movw    %ax, %ss

        /* IDT entry 0x20: 32-bit interrupt gate, selector 0x08, DPL 0. */
        movl    $timer_handler, %eax
        movl    $idt + 0x20 * 8, %ebx
        movw    %ax, 0(%ebx)
        movw    $0x08, 2(%ebx)
        movw    $0x8E00, 4(%ebx)
        shrl    $16, %eax
        movw    %ax, 6(%ebx)
        lidt    idt_descriptor

        pushl   %edi
        pushl   %esi
        call    guest_main
halt_forever:
        cli
        hlt
        jmp     halt_forever

/* Timer interrupt: count, send EOI to the master PIC, resume after `hlt`. */
        .globl timer_handler
timer_handler:
        pushl   %eax
        movb    $0x20, %al
        outb    %al, $0x20
        incl    timer_ticks
        popl    %eax
        ret     $8

        .section .data
        .align 8
gdt:
        .quad   0x0000000000000000      /* null */
        .quad   0x00CF9A000000FFFF      /* 0x08: code, flat 4 GiB */
        .quad   0x00CF92000000FFFF      /* 0x10: data, flat 4 GiB */
gdt_end:
gdt_descriptor:
        .word   gdt_end - gdt - 1
        .long   gdt
idt_descriptor:
        .word   256 * 8 - 1
        .long   idt

        .globl timer_ticks
timer_ticks:
        .long   0

        .section .bss
        .align 16
idt:
        .skip   256 * 8
stack_bottom:
        .skip   16384
stack_top:

        .section .note.GNU-stack, "", @progbits
