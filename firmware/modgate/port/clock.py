"""Wall clock with a settable offset: boards without an RTC start at their epoch, and the
console's `time set` corrects it without needing privileges on the host OS."""

import time

_offset_s = 0
# MicroPython ports may count from 2000-01-01; CPython and the unix port from 1970.
UNSET_BEFORE_YEAR = 2024


def epoch_seconds():
    return int(time.time()) + _offset_s


def _platform_ms():
    ns = getattr(time, "time_ns", None)
    return ns() // 1000000 if ns is not None else int(time.time()) * 1000


def unix_ms():
    """Milliseconds since 1970-01-01 UTC by the device clock (the SNTP client compares it)."""
    return _platform_ms() + (_offset_s + _EPOCH_SHIFT) * 1000


def set_unix_ms(ms):
    """Set the device clock to `ms` since 1970 UTC. It keeps whole seconds: the seconds read now
    are those of `ms` (later reads may run up to a second ahead of the platform's fraction)."""
    global _offset_s
    _offset_s = ms // 1000 - _platform_ms() // 1000 - _EPOCH_SHIFT


def utc(unix_seconds):
    """(year, month, day, hour, minute, second) of a time in seconds since 1970."""
    return tuple(time.gmtime(unix_seconds - _EPOCH_SHIFT)[:6])


def now():
    """(year, month, day, hour, minute, second) in UTC from the device clock."""
    return tuple(time.gmtime(epoch_seconds())[:6])


def local_date(offset_minutes=0, days=0):
    """(year, month, day) `days` after today, in the time zone `offset_minutes` east of UTC."""
    return tuple(time.gmtime(epoch_seconds() + offset_minutes * 60 + days * 86400)[:3])


def is_set():
    return now()[0] >= UNSET_BEFORE_YEAR


def set_time(year, month, day, hour, minute, second):
    """Set the device clock to the given UTC time."""
    global _offset_s
    target = _utc_seconds(year, month, day, hour, minute, second) - _EPOCH_SHIFT
    _offset_s = target - int(time.time())


def _utc_seconds(year, month, day, hour, minute, second):
    # time.mktime is local time on CPython; compute UTC seconds since 1970 by hand (days from civil).
    y = year - (1 if month <= 2 else 0)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    days = era * 146097 + doe - 719468
    return days * 86400 + hour * 3600 + minute * 60 + second


_EPOCH_SHIFT = _utc_seconds(*time.gmtime(0)[:6])
