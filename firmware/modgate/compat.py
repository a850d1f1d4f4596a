"""The one module that knows which runtime it is on (CPython for unit tests, MicroPython on boards).

Everything else imports `const`, the tick helpers and `MICROPYTHON` from here instead of probing.
"""

try:
    from micropython import const  # noqa: F401

    MICROPYTHON = True
except ImportError:  # pragma: no cover - CPython
    MICROPYTHON = False

    def const(value):
        return value


import time

if hasattr(time, "ticks_ms"):
    ticks_ms = time.ticks_ms
    ticks_diff = time.ticks_diff
    ticks_add = time.ticks_add
    sleep_ms = time.sleep_ms
else:  # pragma: no cover - CPython
    _TICKS_PERIOD = 1 << 30

    def ticks_ms():
        return int(time.monotonic() * 1000) & (_TICKS_PERIOD - 1)

    def ticks_diff(end, start):
        # Same contract as MicroPython: signed difference of two wrapping tick values.
        half = _TICKS_PERIOD // 2
        return ((end - start + half) & (_TICKS_PERIOD - 1)) - half

    def ticks_add(ticks, delta):
        return (ticks + delta) & (_TICKS_PERIOD - 1)

    def sleep_ms(ms):
        time.sleep(ms / 1000)


def deadline(timeout_ms):
    """A tick value `timeout_ms` from now, for `remaining_ms`."""
    return ticks_add(ticks_ms(), timeout_ms)


def remaining_ms(deadline_ticks):
    """Milliseconds left before `deadline_ticks`, never negative."""
    left = ticks_diff(deadline_ticks, ticks_ms())
    return left if left > 0 else 0
