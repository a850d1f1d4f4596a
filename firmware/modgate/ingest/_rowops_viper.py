"""Viper (native) row kernels for file drop, imported on MicroPython only; same contracts as the
pure-Python versions in filedrop.py. CPython cannot import this module (no `micropython` module)."""

import micropython


@micropython.viper
def swap_pairs(buf, n: int):
    b = ptr8(buf)  # noqa: F821 - viper builtin
    i = 0
    while i < n:
        t = b[i]
        b[i] = b[i + 1]
        b[i + 1] = t
        i += 2


@micropython.viper
def bgr_to_rgb(src, npix: int, step: int, dst):
    s = ptr8(src)  # noqa: F821
    d = ptr8(dst)  # noqa: F821
    i = 0
    j = 0
    end = npix * step
    while i < end:
        d[j] = s[i + 2]
        d[j + 1] = s[i + 1]
        d[j + 2] = s[i]
        i += step
        j += 3


@micropython.viper
def map_bytes(buf, n: int, table):
    b = ptr8(buf)  # noqa: F821
    t = ptr8(table)  # noqa: F821
    i = 0
    while i < n:
        b[i] = t[b[i]]
        i += 1
