"""Viper (native) pixel kernels, loaded by pixels.kernels() on MicroPython only; same contracts as
the pure-Python versions in convert.py. CPython cannot import this module (no `micropython` module)."""

import micropython


@micropython.viper
def rgb565_to_rgb(src, npix: int, dst):
    s = ptr8(src)  # noqa: F821 - viper builtin
    d = ptr8(dst)  # noqa: F821
    i = 0
    j = 0
    end = npix * 2
    while i < end:
        lo = s[i]
        hi = s[i + 1]
        r = hi >> 3
        g = ((hi & 7) << 3) | (lo >> 5)
        b = lo & 31
        d[j] = (r << 3) | (r >> 2)
        d[j + 1] = (g << 2) | (g >> 4)
        d[j + 2] = (b << 3) | (b >> 2)
        i += 2
        j += 3


@micropython.viper
def yuyv_to_rgb(src, ngroups: int, dst):
    s = ptr8(src)  # noqa: F821
    d = ptr8(dst)  # noqa: F821
    i = 0
    j = 0
    end = ngroups * 4
    while i < end:
        cd = int(s[i + 1]) - 128
        ce = int(s[i + 3]) - 128
        r = 409 * ce + 128
        g = 128 - 100 * cd - 208 * ce
        b = 516 * cd + 128
        k = 0
        while k < 4:
            c = 298 * (int(s[i + k]) - 16)
            v = (c + r) >> 8
            d[j] = 0 if v < 0 else (255 if v > 255 else v)
            v = (c + g) >> 8
            d[j + 1] = 0 if v < 0 else (255 if v > 255 else v)
            v = (c + b) >> 8
            d[j + 2] = 0 if v < 0 else (255 if v > 255 else v)
            j += 3
            k += 2
        i += 4


# Row kernels for file drop (modgate.ingest.filedrop): byte order, BGR rows, palettes.


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
