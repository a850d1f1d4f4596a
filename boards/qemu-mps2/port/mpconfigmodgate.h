// The qemu port's configuration with what modgate's firmware needs turned on. MP_CONFIGFILE
// (mpconfigboard.mk) makes py/mpconfig.h read this file instead of the port's, which it includes.
#include <mpconfigport.h>

// time: ticks, sleeps, time()/gmtime() from modgate_hal.c (the port builds no `time` module).
#undef MICROPY_PY_TIME
#define MICROPY_PY_TIME (1)
#define MICROPY_PY_TIME_GMTIME_LOCALTIME_MKTIME (1)
#define MICROPY_PY_TIME_TIME_TIME_NS (1)
// MICROPY_PY_TIME_INCLUDEFILE (mpconfigboard.mk) names modgate_time.c: time() and gmtime().

// select.poll over stream objects (the board's UARTs are Python streams with ioctl), and the
// C task queue that asyncio uses when it is there.
#undef MICROPY_PY_SELECT
#define MICROPY_PY_SELECT (1)
#undef MICROPY_PY_ASYNCIO
#define MICROPY_PY_ASYNCIO (1)

// A random seed from the timer, so random.getrandbits differs between boots (no hardware RNG).
#define MICROPY_PY_RANDOM_SEED_INIT_FUNC (modgate_hal_seed())
#include <stdint.h>
uint32_t modgate_hal_seed(void);
