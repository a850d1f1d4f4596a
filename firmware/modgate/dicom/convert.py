"""Pixel conversion kernels in plain Python (CPython, or a MicroPython port without viper).

Contracts in pixels.py; _viper.py has the native versions that MicroPython boards use."""


def rgb565_to_rgb(src, npix, dst):
    j = 0
    for i in range(0, 2 * npix, 2):
        lo = src[i]
        hi = src[i + 1]
        r = hi >> 3
        g = ((hi & 7) << 3) | (lo >> 5)
        b = lo & 31
        dst[j] = (r << 3) | (r >> 2)
        dst[j + 1] = (g << 2) | (g >> 4)
        dst[j + 2] = (b << 3) | (b >> 2)
        j += 3


def yuyv_to_ybr_full(src, ngroups, dst):
    j = 0
    for i in range(0, 4 * ngroups, 4):
        cb = src[i + 1]
        cr = src[i + 3]
        dst[j] = src[i]
        dst[j + 1] = cb
        dst[j + 2] = cr
        dst[j + 3] = src[i + 2]
        dst[j + 4] = cb
        dst[j + 5] = cr
        j += 6


def swap_pairs(buf, n):
    """Swap the bytes of each 16-bit sample in buf[:n] (big-endian file rows to little-endian)."""
    for i in range(0, n, 2):
        buf[i], buf[i + 1] = buf[i + 1], buf[i]


def bgr_to_rgb(src, npix, step, dst):
    """BGR pixels `step` bytes apart in src (BMP rows) to packed RGB in dst."""
    j = 0
    for i in range(0, npix * step, step):
        dst[j] = src[i + 2]
        dst[j + 1] = src[i + 1]
        dst[j + 2] = src[i]
        j += 3


def map_bytes(buf, n, table):
    """Replace each byte of buf[:n] by its entry in `table` (a 256-byte palette map)."""
    for i in range(n):
        buf[i] = table[buf[i]]
