/*
 * Protected-mode payload of a synthetic bzImage, to test the VMM's bzImage path (Linux's
 * 32-bit boot protocol) without a Linux kernel: the test wraps it behind a real-mode setup
 * header. Entered at code32_start (1 MiB) with %esi = the zero page (struct boot_params) and
 * CS = __BOOT_CS (0x10). Prints on COM1
 *   VESSEL-BZIMAGE cs=<cs> e820=<entries> ram_kib=<sum of RAM entries> cmdline=<command line>
 * and powers off through port 0xf4. Anything wrong with the zero page: "VESSEL-BZIMAGE bad".
 */
    .code32
    .text
    .globl _start
_start:
    cli
    cld
    mov $0x90000, %esp
    cmpl $0x53726448, 0x202(%esi)   /* setup_header.header = "HdrS" */
    jne bad
    mov %esi, %ebp
    lea msg_head, %ebx
    call puts
    xor %eax, %eax
    mov %cs, %ax
    call put_dec
    lea msg_e820, %ebx
    call puts
    movzbl 0x1e8(%ebp), %ecx        /* e820_entries */
    mov %ecx, %eax
    call put_dec
    lea 0x2d0(%ebp), %edi           /* e820_table: 20-byte entries {addr, size, type} */
    xor %edx, %edx                  /* RAM in KiB */
1:  test %ecx, %ecx
    jz 3f
    cmpl $1, 16(%edi)
    jne 2f
    mov 8(%edi), %eax
    shr $10, %eax
    add %eax, %edx
2:  add $20, %edi
    dec %ecx
    jmp 1b
3:  lea msg_ram, %ebx
    call puts
    mov %edx, %eax
    call put_dec
    lea msg_cmdline, %ebx
    call puts
    mov 0x228(%ebp), %ebx           /* setup_header.cmd_line_ptr */
    call puts
    mov $'\n', %al
    call putc
    jmp poweroff
bad:
    lea msg_bad, %ebx
    call puts
poweroff:
    mov $0xf4, %dx
    xor %eax, %eax
    out %al, %dx
4:  hlt
    jmp 4b

putc:                               /* %al */
    push %edx
    mov $0x3f8, %dx
    out %al, %dx
    pop %edx
    ret
puts:                               /* %ebx = NUL-terminated string */
    push %eax
5:  mov (%ebx), %al
    test %al, %al
    jz 6f
    call putc
    inc %ebx
    jmp 5b
6:  pop %eax
    ret
put_dec:                            /* %eax */
    push %ebx
    push %ecx
    push %edx
    sub $16, %esp
    lea 15(%esp), %ebx
    movb $0, (%ebx)
    mov $10, %ecx
7:  xor %edx, %edx
    div %ecx
    add $'0', %dl
    dec %ebx
    mov %dl, (%ebx)
    test %eax, %eax
    jnz 7b
    call puts
    add $16, %esp
    pop %edx
    pop %ecx
    pop %ebx
    ret

msg_head:    .asciz "VESSEL-BZIMAGE cs="
msg_e820:    .asciz " e820="
msg_ram:     .asciz " ram_kib="
msg_cmdline: .asciz " cmdline="
msg_bad:     .asciz "VESSEL-BZIMAGE bad\n"
