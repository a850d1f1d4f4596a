// Included by MicroPython's extmod/modtime.c (MICROPY_PY_TIME_INCLUDEFILE): time() and
// gmtime()/localtime() from the clock in modgate_hal.c, seconds since the port's epoch (2000).

#include "shared/timeutils/timeutils.h"

static mp_obj_t mp_time_time_get(void) {
    return mp_obj_new_int_from_uint(timeutils_seconds_since_epoch_from_nanoseconds_since_1970(mp_hal_time_ns()));
}

static mp_obj_t mp_time_localtime_get(void) {
    timeutils_struct_time_t tm;
    timeutils_seconds_since_epoch_to_struct_time(
        timeutils_seconds_since_epoch_from_nanoseconds_since_1970(mp_hal_time_ns()), &tm);
    mp_obj_t tuple[8] = {
        mp_obj_new_int(tm.tm_year),
        mp_obj_new_int(tm.tm_mon),
        mp_obj_new_int(tm.tm_mday),
        mp_obj_new_int(tm.tm_hour),
        mp_obj_new_int(tm.tm_min),
        mp_obj_new_int(tm.tm_sec),
        mp_obj_new_int(tm.tm_wday),
        mp_obj_new_int(tm.tm_yday),
    };
    return mp_obj_new_tuple(8, tuple);
}
