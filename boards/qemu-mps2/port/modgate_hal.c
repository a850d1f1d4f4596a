// modgate's clock for MicroPython's qemu port on the MPS2-AN385: the port has no tick source, so
// `time` had nothing to count with. Timer 1 of the board's CMSDK APB dual timer (ARM DDI 0479,
// "Dual-input timers", at 0x40002000 on AN385) runs free, 32 bits, clock/256; every read adds
// the counts since the previous one to the clock, so it stays right as long as something reads it
// at least once per wrap (2^32 * 256 / 25 MHz = 12 hours; the firmware reads it many times a second).

#include <stdint.h>

#include "py/mphal.h"
#include "py/runtime.h"

#define SYSCLK_HZ (25000000u) // AN385 SYSCLK (qemu mps2-an385 models the same)
#define PRESCALE (256u)

typedef struct {
    volatile uint32_t LOAD;
    volatile uint32_t VALUE;
    volatile uint32_t CONTROL;
    volatile uint32_t INTCLR;
    volatile uint32_t RIS;
    volatile uint32_t MIS;
    volatile uint32_t BGLOAD;
} dualtimer_t;

#define TIMER1 ((dualtimer_t *)0x40002000)
#define CONTROL_ENABLE (1u << 7)
#define CONTROL_PRESCALE_256 (2u << 2)
#define CONTROL_SIZE_32 (1u << 1)

// The clock, advanced on every read. Only 32-bit divisions: a 64-bit one would pull libgcc's
// __aeabi_uldivmod (and its unwind table, which the port's linker script does not place).
static struct {
    uint32_t last_value;  // timer VALUE at the previous read
    uint32_t rem;         // timer counts * PRESCALE not yet a whole microsecond (< SYSCLK_HZ / 1e6)
    uint32_t us;          // microseconds since boot, wrapping (ticks_us)
    uint32_t ms;          // milliseconds since boot, wrapping (ticks_ms)
    uint32_t ms_rem;      // microseconds not yet a whole millisecond
    uint32_t secs;        // whole seconds since boot (time)
    uint32_t sec_us;      // microseconds into the current second
    int started;
} clock;

static void clock_advance(void) {
    if (!clock.started) {
        // Free-running mode (CONTROL bit 6 clear): counts down from 0xffffffff and wraps.
        TIMER1->LOAD = 0xffffffffu;
        TIMER1->CONTROL = CONTROL_ENABLE | CONTROL_PRESCALE_256 | CONTROL_SIZE_32;
        clock.last_value = TIMER1->VALUE;
        clock.started = 1;
    }
    uint32_t now = TIMER1->VALUE;
    uint32_t counts = clock.last_value - now;
    clock.last_value = now;
    while (counts) {
        // At most 2^16 counts per step keeps counts * PRESCALE + rem inside 32 bits.
        uint32_t step = counts > 0xffffu ? 0xffffu : counts;
        counts -= step;
        uint32_t scaled = step * PRESCALE + clock.rem;
        uint32_t us = scaled / (SYSCLK_HZ / 1000000u);
        clock.rem = scaled % (SYSCLK_HZ / 1000000u);
        clock.us += us;
        clock.ms_rem += us;
        clock.ms += clock.ms_rem / 1000u;
        clock.ms_rem %= 1000u;
        clock.sec_us += us;
        clock.secs += clock.sec_us / 1000000u;
        clock.sec_us %= 1000000u;
    }
}

mp_uint_t mp_hal_ticks_ms(void) {
    clock_advance();
    return clock.ms;
}

mp_uint_t mp_hal_ticks_us(void) {
    clock_advance();
    return clock.us;
}

mp_uint_t mp_hal_ticks_cpu(void) {
    return ~TIMER1->VALUE;
}

uint64_t mp_hal_time_ns(void) {
    // No RTC: the clock starts at the port's epoch (2000-01-01) at power-up, like a board whose
    // RTC was never set; the firmware's clock (modgate.port.clock) keeps the offset the host sets.
    clock_advance();
    return ((uint64_t)(946684800u + clock.secs) * 1000000u + clock.sec_us) * 1000u;
}

void mp_hal_delay_us(mp_uint_t us) {
    uint32_t start = mp_hal_ticks_us();
    while (mp_hal_ticks_us() - start < us) {
    }
}

void mp_hal_delay_ms(mp_uint_t ms) {
    uint32_t start = mp_hal_ticks_ms();
    while (mp_hal_ticks_ms() - start < ms) {
        mp_event_handle_nowait();
    }
}

uint32_t modgate_hal_seed(void) {
    return mp_hal_ticks_cpu() ^ 0x9e3779b9u;
}
