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


def _clamp(v):
    return 0 if v < 0 else (255 if v > 255 else v)


def yuyv_to_rgb(src, ngroups, dst):
    # BT.601 studio range to full-range RGB in 8.8 fixed point: 298/256 = 255/219 (luma),
    # 409, 100, 208, 516 /256 = the chroma coefficients scaled by 255/224; +128 rounds.
    j = 0
    for i in range(0, 4 * ngroups, 4):
        d = src[i + 1] - 128
        e = src[i + 3] - 128
        r = 409 * e + 128
        g = 128 - 100 * d - 208 * e
        b = 516 * d + 128
        for y in (src[i], src[i + 2]):
            c = 298 * (y - 16)
            dst[j] = _clamp((c + r) >> 8)
            dst[j + 1] = _clamp((c + g) >> 8)
            dst[j + 2] = _clamp((c + b) >> 8)
            j += 3


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
