"""Viper (native) pixel kernels, imported by pixels.py on MicroPython only; same contracts as the
pure-Python versions there. CPython cannot import this module (no `micropython` module)."""

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
def yuyv_to_ybr_full(src, ngroups: int, dst):
    s = ptr8(src)  # noqa: F821
    d = ptr8(dst)  # noqa: F821
    i = 0
    j = 0
    end = ngroups * 4
    while i < end:
        cb = s[i + 1]
        cr = s[i + 3]
        d[j] = s[i]
        d[j + 1] = cb
        d[j + 2] = cr
        d[j + 3] = s[i + 2]
        d[j + 4] = cb
        d[j + 5] = cr
        i += 4
        j += 6
