/*
 * machina's tiny test guest: a 32-bit multiboot kernel that does nothing but
 * answer the ACPI power button, on QEMU's q35 machine (ICH9 LPC at 00:1f.0).
 *
 *   1. parse the multiboot command line (`-append`):
 *        delay=S    wait S seconds (decimals allowed: delay=0.5) after the
 *                   button before powering off;
 *        ignore     never power off; report each press and keep running;
 *        poweroff=S power off by itself S seconds after READY (a guest that
 *                   shuts itself down);
 *   2. find (or program) the ICH9 PM I/O block and enable PWRBTN_EN;
 *   3. print "READY" on COM1;
 *   4. poll PM1a_STS.PWRBTN_STS 100 times a second, sleeping in `hlt` between
 *      polls (woken by the PIT through the LAPIC in virtual-wire mode; the
 *      interrupt handler returns without `iret`, see entry.S);
 *   5. print "POWERDOWN", wait the delay, write SLP_TYP=S5|SLP_EN to PM1a_CNT.
 *
 * Every line printed on COM1 ends with "\r\n".  Times are measured with the
 * ACPI PM timer (3.579545 MHz, 24 bits).
 */
#include <stdint.h>

#define COM1 0x3F8

#define PCI_ADDR 0xCF8
#define PCI_DATA 0xCFC
#define LPC_BUS 0
#define LPC_DEV 31
#define LPC_FN 0
#define ICH9_PMBASE 0x40     /* dword: bits 15:7 base, bit 0 = I/O space */
#define ICH9_ACPI_CNTL 0x44  /* byte: bit 7 = ACPI_EN (decode PMBASE) */
#define ICH9_ACPI_EN 0x80
#define DEFAULT_PMBASE 0x600 /* what SeaBIOS and OVMF use on q35 */

#define PM1_STS 0x00
#define PM1_EN 0x02
#define PM1_CNT 0x04
#define PM_TMR 0x08
#define PWRBTN 0x0100   /* PWRBTN_STS in PM1_STS, PWRBTN_EN in PM1_EN */
#define SLP_EN 0x2000
#define SLP_TYP_SHIFT 10
#define SLP_TYP_S5 0    /* QEMU: SLP_TYP 0 is "soft power off" (\_S5 = 0) */

#define PM_TMR_HZ 3579545u
#define PIT_HZ 1193182u
#define TICK_HZ 100u

struct multiboot_info {
    uint32_t flags;
    uint32_t mem_lower, mem_upper, boot_device;
    uint32_t cmdline;
};
#define MB_INFO_CMDLINE (1u << 2)
#define MB_BOOT_MAGIC 0x2BADB002u

extern volatile uint32_t timer_ticks;

static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port) { uint8_t v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint16_t inw(uint16_t port) { uint16_t v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint32_t inl(uint16_t port) { uint32_t v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }

/* ---- COM1 ------------------------------------------------------------- */

static void putc(char c) {
    while (!(inb(COM1 + 5) & 0x20))
        __asm__ volatile("pause");
    outb(COM1, (uint8_t)c);
}

static void puts(const char *s) {
    for (; *s; s++) {
        if (*s == '\n')
            putc('\r');
        putc(*s);
    }
}

static void puthex(uint32_t v) {
    puts("0x");
    for (int shift = 12; shift >= 0; shift -= 4)
        putc("0123456789abcdef"[(v >> shift) & 0xF]);
}

static void putdec(uint32_t v) {
    char buf[11];
    int i = 0;
    do {
        buf[i++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (i)
        putc(buf[--i]);
}

/* ---- command line ----------------------------------------------------- */

struct options {
    uint32_t delay_ms;
    int ignore;
    uint32_t poweroff_ms; /* 0: never by itself */
};

static int word_is(const char *w, uint32_t n, const char *lit) {
    uint32_t i = 0;
    for (; i < n && lit[i]; i++)
        if (w[i] != lit[i])
            return 0;
    return i == n && lit[i] == '\0';
}

/* "3", "0.25" -> milliseconds; stops at the first character that is neither. */
static uint32_t parse_ms(const char *s, uint32_t n) {
    uint32_t ms = 0, i = 0, scale = 100;
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++)
        ms = ms * 10 + (uint32_t)(s[i] - '0');
    ms *= 1000;
    if (i < n && s[i] == '.')
        for (i++; i < n && s[i] >= '0' && s[i] <= '9' && scale; i++, scale /= 10)
            ms += (uint32_t)(s[i] - '0') * scale;
    return ms;
}

/* QEMU passes "<kernel path> <append>"; the words are matched whole. */
static struct options parse_cmdline(const char *cmd) {
    struct options o = {0, 0, 0};
    while (cmd && *cmd) {
        while (*cmd == ' ')
            cmd++;
        const char *w = cmd;
        while (*cmd && *cmd != ' ')
            cmd++;
        uint32_t n = (uint32_t)(cmd - w);
        if (word_is(w, n, "ignore"))
            o.ignore = 1;
        else if (n > 6 && word_is(w, 6, "delay="))
            o.delay_ms = parse_ms(w + 6, n - 6);
        else if (n > 9 && word_is(w, 9, "poweroff="))
            o.poweroff_ms = parse_ms(w + 9, n - 9);
    }
    return o;
}

/* ---- PCI and ICH9 ----------------------------------------------------- */

static uint32_t lpc_addr(uint8_t reg) {
    return 0x80000000u | (LPC_BUS << 16) | (LPC_DEV << 11) | (LPC_FN << 8) | (reg & 0xFCu);
}

static uint32_t lpc_read32(uint8_t reg) {
    outl(PCI_ADDR, lpc_addr(reg));
    return inl(PCI_DATA);
}

static void lpc_write32(uint8_t reg, uint32_t v) {
    outl(PCI_ADDR, lpc_addr(reg));
    outl(PCI_DATA, v);
}

static uint8_t lpc_read8(uint8_t reg) {
    outl(PCI_ADDR, lpc_addr(reg));
    return inb((uint16_t)(PCI_DATA + (reg & 3)));
}

static void lpc_write8(uint8_t reg, uint8_t v) {
    outl(PCI_ADDR, lpc_addr(reg));
    outb((uint16_t)(PCI_DATA + (reg & 3)), v);
}

/* Returns the PM I/O base, programming it if the firmware did not (qboot). */
static uint16_t ich9_pm_setup(void) {
    uint32_t id = lpc_read32(0x00);
    puts("lpc ");
    puthex(id & 0xFFFF);
    putc(':');
    puthex(id >> 16);
    uint16_t base = (uint16_t)(lpc_read32(ICH9_PMBASE) & 0xFF80u);
    uint8_t cntl = lpc_read8(ICH9_ACPI_CNTL);
    if (base == 0 || !(cntl & ICH9_ACPI_EN)) {
        if (base == 0) {
            base = DEFAULT_PMBASE;
            lpc_write32(ICH9_PMBASE, base | 1u);
        }
        lpc_write8(ICH9_ACPI_CNTL, (uint8_t)(cntl | ICH9_ACPI_EN));
        puts(" pmbase ");
        puthex(base);
        puts(" (programmed)\n");
    } else {
        puts(" pmbase ");
        puthex(base);
        puts(" (firmware)\n");
    }
    return base;
}

/* ---- time ------------------------------------------------------------- */

/* Master PIC at vectors 0x20.., slave at 0x28..; only IRQ 0 unmasked. */
static void pic_setup(void) {
    outb(0x20, 0x11);
    outb(0xA0, 0x11);
    outb(0x21, 0x20);
    outb(0xA1, 0x28);
    outb(0x21, 0x04);
    outb(0xA1, 0x02);
    outb(0x21, 0x01);
    outb(0xA1, 0x01);
    outb(0x21, 0xFE);
    outb(0xA1, 0xFF);
}

/*
 * Route the 8259 to the CPU: LAPIC software-enabled, LINT0 = ExtINT (virtual
 * wire mode).  SeaBIOS does this; qboot does not, and KVM's in-kernel LAPIC
 * then drops PIC interrupts.
 */
#define LAPIC_SVR 0xFEE000F0u
#define LAPIC_LVT0 0xFEE00350u
static void lapic_virtual_wire(void) {
    *(volatile uint32_t *)LAPIC_SVR = 0x1FF;   /* enable, spurious vector 0xFF */
    *(volatile uint32_t *)LAPIC_LVT0 = 0x700;  /* ExtINT, unmasked */
}

/* PIT channel 0, mode 2 (rate generator) at TICK_HZ. */
static void pit_setup(void) {
    uint16_t div = (uint16_t)(PIT_HZ / TICK_HZ);
    outb(0x43, 0x34);
    outb(0x40, (uint8_t)(div & 0xFF));
    outb(0x40, (uint8_t)(div >> 8));
}

/* Sleep until the next timer interrupt (see timer_handler in entry.S). */
static void wait_tick(void) {
    __asm__ volatile("sti\n\thlt" : : : "memory", "cc");
}

struct clock {
    uint16_t tmr_port;
    uint32_t last; /* last PM timer reading */
    uint32_t ms;   /* milliseconds since clock_init */
    uint32_t frac; /* remainder, in 1/(1000 * PM_TMR_HZ) s */
};

static void clock_init(struct clock *c, uint16_t pmbase) {
    c->tmr_port = (uint16_t)(pmbase + PM_TMR);
    c->last = inl(c->tmr_port) & 0xFFFFFFu;
    c->ms = 0;
    c->frac = 0;
}

/* 32-bit arithmetic only: a 64-bit division would need libgcc. */
static void clock_update(struct clock *c) {
    uint32_t now = inl(c->tmr_port) & 0xFFFFFFu;
    uint32_t delta = (now - c->last) & 0xFFFFFFu;
    c->last = now;
    while (delta >= PM_TMR_HZ) {
        delta -= PM_TMR_HZ;
        c->ms += 1000;
    }
    c->frac += delta * 1000u; /* < PM_TMR_HZ * 1001: fits in 32 bits */
    c->ms += c->frac / PM_TMR_HZ;
    c->frac %= PM_TMR_HZ;
}

/* ---- main ------------------------------------------------------------- */

static void power_off(uint16_t pmbase) {
    uint16_t cnt = inw((uint16_t)(pmbase + PM1_CNT));
    cnt &= (uint16_t)~(7u << SLP_TYP_SHIFT);
    outw((uint16_t)(pmbase + PM1_CNT), (uint16_t)(cnt | (SLP_TYP_S5 << SLP_TYP_SHIFT) | SLP_EN));
}

void guest_main(uint32_t magic, const struct multiboot_info *mbi) {
    const char *cmdline = 0;
    if (magic == MB_BOOT_MAGIC && (mbi->flags & MB_INFO_CMDLINE))
        cmdline = (const char *)mbi->cmdline;
    struct options opt = parse_cmdline(cmdline);

    puts("\nmachina tiny guest: delay_ms=");
    putdec(opt.delay_ms);
    puts(opt.ignore ? " ignore=1\n" : " ignore=0\n");

    uint16_t pmbase = ich9_pm_setup();
    pic_setup();
    lapic_virtual_wire();
    pit_setup();

    outw((uint16_t)(pmbase + PM1_STS), PWRBTN); /* write 1 to clear */
    outw((uint16_t)(pmbase + PM1_EN), PWRBTN);
    puts("READY\n");

    struct clock clk;
    clock_init(&clk, pmbase);
    uint32_t presses = 0;
    uint32_t ready_ms = clk.ms;
    for (;;) {
        wait_tick();
        clock_update(&clk);
        if (opt.poweroff_ms && clk.ms - ready_ms >= opt.poweroff_ms) {
            puts("POWEROFF by itself at ms=");
            putdec(clk.ms);
            putc('\n');
            power_off(pmbase);
            opt.poweroff_ms = 0;
            continue;
        }
        if (!(inw((uint16_t)(pmbase + PM1_STS)) & PWRBTN))
            continue;
        outw((uint16_t)(pmbase + PM1_STS), PWRBTN);
        presses++;
        puts("POWERDOWN ");
        putdec(presses);
        puts(" at ms=");
        putdec(clk.ms);
        putc('\n');
        if (opt.ignore)
            continue;
        uint32_t start = clk.ms;
        while (clk.ms - start < opt.delay_ms) {
            wait_tick();
            clock_update(&clk);
        }
        puts("POWEROFF at ms=");
        putdec(clk.ms);
        putc('\n');
        power_off(pmbase);
        /* QEMU acts on the request asynchronously: give it a second. */
        start = clk.ms;
        while (clk.ms - start < 1000) {
            wait_tick();
            clock_update(&clk);
        }
        puts("POWEROFF FAILED\n");
        return;
    }
}
