/*
 * The Vessel test guest: a tiny PVH kernel that proves a KVM machine got what its plan says.
 *
 * Boot: a PVH loader (our VMM, or QEMU -kernel) enters `pvh_start` in 32-bit flat protected
 * mode with %ebx = guest-physical address of `struct hvm_start_info`. The guest then switches
 * itself to 64-bit long mode (PAE, EFER.LME, paging on static identity page tables covering
 * the low 4 GiB with 2 MiB pages), because entering long mode directly through KVM_SET_SREGS
 * triple-faults on the nested `kvm_pvm` hosts this project is tested on.
 *
 * Several vCPUs, two ways:
 * - smp_boot = "entry": the Vessel VMM starts *every* vCPU at `pvh_start` with
 *   %edi = 0x56534c31 ("VSL1"), %esi = vCPU index, %edx = vCPU count.
 * - otherwise (plain PVH: the VMM's default "sipi", or QEMU), vCPU 0 reads the logical
 *   processor count from CPUID leaf 1, copies a real-mode trampoline to 0x9000 and wakes
 *   the others with INIT-SIPI-SIPI through its local APIC, as Linux does; they go to
 *   protected mode, take their index from their APIC id, and join the path above.
 * Index 0 does the work; the others switch to long mode, check in (atomic counter), halt.
 *
 * Work: reads the memory map from hvm_start_info, writes one quadword to every 4 KiB page of
 * RAM at or above 1 MiB except its own image (value = address * 0x9E3779B97F4A7C15), reads
 * them all back into a wrapping sum, and prints on COM1 (0x3f8):
 *   VESSEL-GUEST top_mib=<highest RAM end in MiB> ram_kib=<sum of RAM entries in KiB>
 *                pages=<pages written> vcpus=<vCPUs that checked in> checksum=<hex sum>
 *                boot=<n> acpi_cpus=<enabled local APICs in the ACPI MADT>
 * (acpi_cpus: the RSDP from the start info, its checksums, the XSDT's, the MADT's; 0 if
 * any is missing or wrong.) Then it powers off by writing 0 to I/O port 0xf4 (the Vessel
 * VMM's power-off port; the same port as QEMU's isa-debug-exit, so the benchmark can run this
 * guest under QEMU too), or, if the command line contains "acpi-poweroff", the way ACPI says:
 * `\_S5_`'s sleep type with SLP_EN to the FADT's sleep control register.
 *
 * Boots are counted in low memory (0x8000, below anything it writes; RAM survives a reset)
 * and reported as boot=<n>. If the command line contains "reset", the first boot ends with a
 * reset through the i8042 (0xFE to port 0x64) instead of a power-off: the VMM must reboot it.
 *
 * If the command line contains "heartbeat", instead of powering off it prints
 * "VESSEL-TICK <n>" about every 2^27 TSC cycles, and powers off when the i8042 controller has
 * a byte for it (the VMM's clean-shutdown request, a Ctrl-Alt-Del on the keyboard port).
 * With "heartbeat flood" the ticks come back to back: a guest writing its console as fast as
 * it can (the bounded serial log's test). While ticking it echoes every byte it receives on
 * COM1 (the console input's test).
 */
    .set COM1, 0x3f8
    .set POWEROFF_PORT, 0xf4
    .set SMP_MAGIC, 0x56534c31
    .set MAX_CPUS, 64
    .set TICK_CYCLES, 1 << 27
    .set AP_WAIT_CYCLES, 1 << 32
    .set BOOT_COUNTER, 0x8000
    .set TRAMPOLINE, 0x9000
    .set LAPIC, 0xfee00000

    .section .note.Xen, "a"
    .p2align 2
    .long 4                     /* namesz */
    .long 4                     /* descsz */
    .long 18                    /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .long pvh_start

    .section .text.entry, "ax"
    .code32
    .globl pvh_start
pvh_start:
    cli
    cld
    xor %ebp, %ebp              /* %ebp = vCPU index */
    mov $1, %eax                /* vCPU count */
    cmp $SMP_MAGIC, %edi
    jne 1f
    mov %esi, %ebp
    mov %edx, %eax
1:  mov %eax, %edi              /* %edi = vCPU count */
    cmp $MAX_CPUS, %ebp
    jae halt32
    mov %ebp, %eax              /* own stack: stacks + (index + 1) * 4096 */
    inc %eax
    shl $12, %eax
    lea stacks(%eax), %esp

    lgdt gdt_ptr
    mov %cr4, %eax
    or $0x20, %eax              /* CR4.PAE */
    mov %eax, %cr4
    mov $pml4, %eax
    mov %eax, %cr3
    mov $0xc0000080, %ecx       /* EFER */
    rdmsr
    or $0x100, %eax             /* EFER.LME */
    wrmsr
    mov %cr0, %eax
    or $0x80000001, %eax        /* CR0.PG | CR0.PE */
    mov %eax, %cr0
    ljmp $0x08, $long_start

halt32:
    cli
    hlt
    jmp halt32

    .code64
long_start:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov %ax, %fs
    mov %ax, %gs
    mov %ebx, %ebx              /* zero-extend what 32-bit code left */
    mov %ebp, %ebp
    mov %edi, %edi
    mov %esp, %esp
    test %ebp, %ebp
    jnz ap_main

bsp_main:
    mov %rdi, vcpus_expected(%rip)
    mov %rbx, start_info(%rip)
    lea msg_banner(%rip), %rsi
    call puts
    cmp $1, %rdi                /* one vCPU said: plain PVH boot, wake the others by SIPI */
    jne 1f
    call wake_aps
1:
    mov $BOOT_COUNTER, %rax     /* count boots: RAM survives a reset */
    cmpl $0x424c5356, (%rax)    /* "VSLB" */
    je 1f
    movl $0x424c5356, (%rax)
    movq $0, 8(%rax)
1:  incq 8(%rax)
    cmpl $0x336ec578, (%rbx)    /* hvm_start_info magic */
    jne bad_start_info
    cmpl $1, 4(%rbx)            /* version 1 carries the memory map */
    jb bad_start_info

    xor %r15, %r15              /* pass 0: write */
    call walk
    mov $1, %r15                /* pass 1: sum */
    call walk

    /* wait for the other vCPUs to check in, at most AP_WAIT_CYCLES */
    mov vcpus_expected(%rip), %rcx
    dec %rcx
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    movabs $AP_WAIT_CYCLES, %rdx
    lea (%rax,%rdx), %r9
2:  mov ap_count(%rip), %eax
    cmp %rcx, %rax
    jae 3f
    pause
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    cmp %r9, %rax
    jb 2b
3:
    lea msg_top(%rip), %rsi
    call puts
    mov top(%rip), %rax
    shr $20, %rax
    call put_dec
    lea msg_ram(%rip), %rsi
    call puts
    mov ram_bytes(%rip), %rax
    shr $10, %rax
    call put_dec
    lea msg_pages(%rip), %rsi
    call puts
    mov pages(%rip), %rax
    call put_dec
    lea msg_vcpus(%rip), %rsi
    call puts
    mov ap_count(%rip), %eax
    inc %rax
    call put_dec
    lea msg_checksum(%rip), %rsi
    call puts
    mov checksum(%rip), %rax
    call put_hex
    lea msg_boot(%rip), %rsi
    call puts
    mov $BOOT_COUNTER, %rax
    mov 8(%rax), %rax
    call put_dec
    lea msg_acpi_cpus(%rip), %rsi
    call puts
    call acpi_cpus
    call put_dec
    mov $'\n', %al
    call putc

    lea word_reset(%rip), %rdi
    call cmdline_has
    test %rax, %rax
    jz 4f
    mov $BOOT_COUNTER, %rax
    cmpq $1, 8(%rax)
    jne 4f
    lea msg_reset(%rip), %rsi
    call puts
    mov $0xfe, %al              /* i8042: pulse the reset line */
    out %al, $0x64
    jmp poweroff
4:  lea word_heartbeat(%rip), %rdi
    call cmdline_has
    test %rax, %rax
    jnz heartbeat
    lea word_acpi_poweroff(%rip), %rdi
    call cmdline_has
    test %rax, %rax
    jnz acpi_poweroff
    jmp poweroff

bad_start_info:
    lea msg_bad(%rip), %rsi
    call puts
    jmp poweroff

/* INIT-SIPI-SIPI to every other vCPU (CPUID.1:EBX[23:16] of them, when HTT says the field
 * is valid); sets vcpus_expected. */
wake_aps:
    push %rbx
    mov $1, %eax
    cpuid
    bt $28, %edx                /* HTT */
    jnc 9f
    shr $16, %ebx
    movzbl %bl, %ebx
    cmp $1, %ebx
    jbe 9f
    mov %rbx, vcpus_expected(%rip)
    lea trampoline(%rip), %rsi  /* real-mode code must sit below 1 MiB, page aligned */
    mov $TRAMPOLINE, %rdi
    mov $(trampoline_end - trampoline), %rcx
    rep movsb
    mov $LAPIC, %rbx
    movl $0x1ff, 0xf0(%rbx)     /* spurious vector register: APIC on */
    movl $0, 0x310(%rbx)
    movl $0xc4500, 0x300(%rbx)  /* INIT, assert, all excluding self */
    mov $(1 << 24), %rcx        /* ~10 ms */
    call delay
    mov $2, %r8d
2:  movl $0, 0x310(%rbx)
    movl $(0xc4600 | (TRAMPOLINE >> 12)), 0x300(%rbx) /* SIPI */
    mov $(1 << 20), %rcx        /* ~200 us */
    call delay
    dec %r8d
    jnz 2b
9:  pop %rbx
    ret

delay:                          /* %rcx TSC cycles */
    push %rdx
    push %rax
    push %r9
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    lea (%rax,%rcx), %r9
1:  pause
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    cmp %r9, %rax
    jb 1b
    pop %r9
    pop %rax
    pop %rdx
    ret

/* Woken vCPUs start here, in real mode at TRAMPOLINE:0 (copied there by wake_aps). */
    .code16
trampoline:
    cli
    xor %ax, %ax
    mov %ax, %ds
    lgdtl TRAMPOLINE + (tramp_gdt_ptr - trampoline)
    mov %cr0, %eax
    or $1, %eax
    mov %eax, %cr0
    ljmpl $0x18, $ap32
    .p2align 2
tramp_gdt_ptr:
    .word gdt_end - gdt - 1
    .long gdt
trampoline_end:

    .code32
ap32:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov $1, %eax
    cpuid
    shr $24, %ebx               /* index = APIC id */
    mov %ebx, %esi
    mov $SMP_MAGIC, %edi
    xor %edx, %edx
    jmp pvh_start

    .code64
/* Other vCPUs: check in, then halt for good (interrupts off). */
ap_main:
    lock incl ap_count(%rip)
1:  cli
    hlt
    jmp 1b

/* Walks every RAM page >= 1 MiB, < 4 GiB, outside the image. %r15 = 0: write the pattern and
 * count (and sum up the RAM entries); %r15 = 1: add every page's quadword to the checksum. */
walk:
    mov start_info(%rip), %rbx
    mov 40(%rbx), %r8           /* memmap_paddr */
    mov 48(%rbx), %r9d          /* memmap_entries */
    movabs $0x9E3779B97F4A7C15, %r12
    mov $__image_start, %r10
    mov $__image_end, %r11
    movabs $0x100000000, %r13
1:  test %r9, %r9
    jz 9f
    cmpl $1, 16(%r8)            /* E820 RAM */
    jne 8f
    mov (%r8), %rcx             /* start */
    mov 8(%r8), %rdx
    add %rcx, %rdx              /* end */
    test %r15, %r15
    jnz 2f
    mov 8(%r8), %rax
    add %rax, ram_bytes(%rip)
    cmp top(%rip), %rdx
    jbe 2f
    mov %rdx, top(%rip)
2:  add $0xfff, %rcx
    and $-4096, %rcx
3:  lea 0x1000(%rcx), %rax
    cmp %rdx, %rax
    ja 8f
    cmp %r13, %rcx
    jae 8f
    cmp $0x100000, %rcx
    jb 7f
    cmp %r10, %rcx
    jb 4f
    cmp %r11, %rcx
    jb 7f
4:  test %r15, %r15
    jnz 5f
    mov %rcx, %rax
    imul %r12, %rax
    mov %rax, (%rcx)
    incq pages(%rip)
    jmp 7f
5:  mov (%rcx), %rax
    add %rax, checksum(%rip)
7:  add $0x1000, %rcx
    jmp 3b
8:  add $24, %r8
    dec %r9
    jmp 1b
9:  ret

/* %rax = 1 if the command line contains the NUL-terminated word at %rdi. */
cmdline_has:
    mov %rdi, %r8
    mov start_info(%rip), %rbx
    mov 24(%rbx), %rsi          /* cmdline_paddr */
    test %rsi, %rsi
    jz 9f
1:  cmpb $0, (%rsi)
    je 9f
    mov %r8, %rdi
    mov %rsi, %rdx
2:  mov (%rdi), %al
    test %al, %al
    jz 8f
    cmp (%rdx), %al
    jne 3f
    inc %rdi
    inc %rdx
    jmp 2b
3:  inc %rsi
    jmp 1b
8:  mov $1, %eax
    ret
9:  xor %eax, %eax
    ret

heartbeat:
    xor %r12, %r12
    mov $TICK_CYCLES, %r13
    lea word_flood(%rip), %rdi  /* "flood": no pause between ticks (a guest filling its log) */
    call cmdline_has
    test %rax, %rax
    jz 1f
    xor %r13, %r13
1:  rdtsc
    shl $32, %rdx
    or %rdx, %rax
    lea (%rax,%r13), %r9
2:  mov $COM1 + 5, %dx          /* serial input: echo every received byte */
    in %dx, %al
    test $1, %al                /* LSR.DR */
    jz 6f
    mov $COM1, %dx
    in %dx, %al
    call putc
6:  mov $0x64, %dx              /* i8042 status: a byte for us = shutdown request */
    in %dx, %al
    cmp $0xff, %al              /* no controller there (floating bus): nobody can ask */
    je 4f
    test $1, %al
    jnz 5f
4:
    pause
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    cmp %r9, %rax
    jb 2b
    inc %r12
    lea msg_tick(%rip), %rsi
    call puts
    mov %r12, %rax
    call put_dec
    mov $'\n', %al
    call putc
    jmp 1b
5:  mov $0x60, %dx
    in %dx, %al
    lea msg_shutdown(%rip), %rsi
    call puts
    jmp poweroff

/* %rax = a checksummed ACPI table at %rsi with signature %edi (4 bytes), else 0. */
acpi_table:
    xor %eax, %eax
    test %rsi, %rsi
    jz 9f
    cmp (%rsi), %edi
    jne 9f
    mov 4(%rsi), %ecx           /* length */
    cmp $36, %ecx
    jb 9f
    xor %edx, %edx
1:  add -1(%rsi,%rcx), %dl
    dec %ecx
    jnz 1b
    test %dl, %dl
    jnz 9f
    mov %rsi, %rax
9:  ret

/* %rax = the XSDT entry with signature %edi (checksummed), else 0. */
acpi_find:
    push %rbx
    push %r8
    xor %eax, %eax
    mov start_info(%rip), %rbx
    mov 32(%rbx), %rsi          /* rsdp_paddr */
    test %rsi, %rsi
    jz 9f
    movabs $0x2052545020445352, %rdx /* "RSD PTR " */
    cmp (%rsi), %rdx
    jne 9f
    xor %edx, %edx              /* RSDP checksum: first 20 bytes */
    mov $20, %ecx
1:  add -1(%rsi,%rcx), %dl
    dec %ecx
    jnz 1b
    test %dl, %dl
    jnz 9f
    mov %edi, %r8d
    mov 24(%rsi), %rsi          /* XsdtAddress */
    mov $0x54445358, %edi       /* "XSDT" */
    call acpi_table
    test %rax, %rax
    jz 9f
    mov %rax, %rbx
    mov 4(%rbx), %ecx
    sub $36, %ecx
    shr $3, %ecx                /* entries */
    lea 36(%rbx), %rbx
2:  test %ecx, %ecx
    jz 8f
    push %rcx
    mov (%rbx), %rsi
    mov %r8d, %edi
    call acpi_table
    pop %rcx
    test %rax, %rax
    jnz 9f
    add $8, %rbx
    dec %ecx
    jmp 2b
8:  xor %eax, %eax
9:  pop %r8
    pop %rbx
    ret

/* %rax = enabled processor local APICs in the MADT (0: no valid ACPI tables). */
acpi_cpus:
    push %rbx
    mov $0x43495041, %edi       /* "APIC" */
    call acpi_find
    test %rax, %rax
    jz 9f
    mov 4(%rax), %ecx
    lea (%rax,%rcx), %rdx       /* end */
    lea 44(%rax), %rbx          /* first entry */
    xor %eax, %eax
1:  lea 2(%rbx), %rcx
    cmp %rdx, %rcx
    ja 9f
    movzbl 1(%rbx), %ecx        /* entry length */
    test %ecx, %ecx
    jz 9f
    cmpb $0, (%rbx)             /* processor local APIC */
    jne 2f
    testb $1, 4(%rbx)           /* enabled */
    jz 2f
    inc %rax
2:  add %rcx, %rbx
    jmp 1b
9:  pop %rbx
    ret

/* Powers off as ACPI says: SLP_TYP (from \_S5_ in the DSDT) << 2 | SLP_EN to the FADT's
 * sleep control register (an I/O port); falls back to the power-off port. */
acpi_poweroff:
    mov $0x50434146, %edi       /* "FACP" */
    call acpi_find
    test %rax, %rax
    jz poweroff
    mov %rax, %r8
    cmpb $1, 244(%r8)           /* SLEEP_CONTROL_REG in system I/O space */
    jne poweroff
    mov 40(%r8), %esi           /* DSDT */
    mov $0x54445344, %edi       /* "DSDT" */
    call acpi_table
    test %rax, %rax
    jz poweroff
    mov 4(%rax), %ecx
    lea -8(%rax,%rcx), %rdx     /* last place a "_S5_" package can start */
    lea 36(%rax), %rsi
1:  cmp %rdx, %rsi
    ja poweroff
    cmpl $0x5f35535f, (%rsi)    /* "_S5_" */
    je 2f
    inc %rsi
    jmp 1b
2:  cmpb $0x12, 4(%rsi)         /* Package */
    jne poweroff
    cmpb $0x0a, 7(%rsi)         /* its first element: a BytePrefix constant */
    jne poweroff
    movzbl 8(%rsi), %eax
    shl $2, %eax
    or $0x20, %eax              /* SLP_EN */
    mov 248(%r8), %edx          /* the port */
    lea msg_acpi_off(%rip), %rsi
    call puts
    out %al, %dx
    lea msg_acpi_failed(%rip), %rsi /* still here: the register did nothing */
    call puts
    jmp poweroff

poweroff:
    mov $POWEROFF_PORT, %dx
    xor %eax, %eax
    out %al, %dx
1:  cli
    hlt
    jmp 1b

/* Serial output on COM1, polling the line status register. */
putc:                           /* %al */
    push %rdx
    push %rax
    mov $COM1 + 5, %dx
1:  in %dx, %al
    test $0x20, %al
    jz 1b
    pop %rax
    mov $COM1, %dx
    out %al, %dx
    pop %rdx
    ret

puts:                           /* %rsi = NUL-terminated string */
    push %rax
1:  lodsb
    test %al, %al
    jz 2f
    call putc
    jmp 1b
2:  pop %rax
    ret

put_dec:                        /* %rax, unsigned */
    push %rbx
    push %rdx
    push %rsi
    sub $32, %rsp
    lea 31(%rsp), %rsi
    movb $0, (%rsi)
    mov $10, %rbx
1:  xor %edx, %edx
    div %rbx
    add $'0', %dl
    dec %rsi
    mov %dl, (%rsi)
    test %rax, %rax
    jnz 1b
    call puts
    add $32, %rsp
    pop %rsi
    pop %rdx
    pop %rbx
    ret

put_hex:                        /* %rax, 16 digits */
    push %rcx
    push %rdx
    push %rax
    mov $16, %ecx
1:  rol $4, %rax
    mov %al, %dl
    and $0xf, %dl
    add $'0', %dl
    cmp $'9', %dl
    jbe 2f
    add $('a' - '9' - 1), %dl
2:  push %rax
    mov %dl, %al
    call putc
    pop %rax
    dec %ecx
    jnz 1b
    pop %rax
    pop %rdx
    pop %rcx
    ret

    .section .rodata
msg_banner:   .asciz "VESSEL-GUEST up\n"
msg_bad:      .asciz "VESSEL-GUEST error: no PVH start info v1\n"
msg_top:      .asciz "VESSEL-GUEST top_mib="
msg_ram:      .asciz " ram_kib="
msg_pages:    .asciz " pages="
msg_vcpus:    .asciz " vcpus="
msg_checksum: .asciz " checksum="
msg_tick:     .asciz "VESSEL-TICK "
msg_shutdown: .asciz "VESSEL-GUEST shutdown requested\n"
msg_boot:     .asciz " boot="
msg_reset:    .asciz "VESSEL-GUEST reset\n"
msg_acpi_cpus: .asciz " acpi_cpus="
msg_acpi_off: .asciz "VESSEL-GUEST acpi poweroff\n"
msg_acpi_failed: .asciz "VESSEL-GUEST acpi poweroff failed\n"
word_acpi_poweroff: .asciz "acpi-poweroff"
word_heartbeat: .asciz "heartbeat"
word_flood:     .asciz "flood"
word_reset:   .asciz "reset"

    .section .data
    .p2align 12
pml4:
    .quad pdpt + 0x3
    .fill 511, 8, 0
pdpt:
    .quad pd + 0x3, pd + 0x1003, pd + 0x2003, pd + 0x3003
    .fill 508, 8, 0
pd:                             /* 4 GiB identity map, 2 MiB pages, present | rw | PS */
    .set i, 0
    .rept 2048
    .quad (i << 21) | 0x83
    .set i, i + 1
    .endr
    .p2align 3
gdt:
    .quad 0
    .quad 0x00af9a000000ffff    /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff    /* 0x10: data */
    .quad 0x00cf9a000000ffff    /* 0x18: 32-bit code (woken vCPUs) */
gdt_end:
gdt_ptr:
    .word gdt_end - gdt - 1
    .long gdt
    .p2align 3
vcpus_expected: .quad 0
start_info:     .quad 0
ap_count:       .quad 0
ram_bytes:      .quad 0
top:            .quad 0
pages:          .quad 0
checksum:       .quad 0

    .section .bss
    .p2align 12
stacks:
    .skip MAX_CPUS * 4096
