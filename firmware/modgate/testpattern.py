"""Deterministic synthetic test pattern, row by row, in any input pixel format.

Used by the encode job, the device's test-pattern source and the host (on CPython) to compute the
pixels it expects back, so every runtime produces the very same bytes.

Public API: `Pattern(fmt, width, height, bits_stored=None)`;
- `.write_row(y, frame, write)` calls `write(memoryview)` with the pieces of row `y` of frame
  `frame` in the input format, in order (zero-copy, for the device);
- `.row(y, frame)` -> bytes of that row (allocates; for hosts and tests).

The pattern repeats every PERIOD_BYTES // (bytes per pixel) pixels across. Row y of frame f is the
base period rotated left by (y + 3 * f) pixels (pixel pairs for YUYV). The base is built once (at
most 2 KB), so a row costs no per-pixel work and no copy, whatever the width.
"""

from modgate.dicom.pixels import layout

PERIOD_BYTES = 2048


def _base_pixel(fmt, i, width, maxv):
    if fmt == "GRAY8":
        return bytes((((i * 256 // width) ^ (i * 7)) & 0xFF,))
    if fmt == "GRAY16":
        v = ((i * (maxv + 1)) // width) ^ ((i * 37) & 0xFF)
        v &= maxv
        return bytes((v & 0xFF, v >> 8))
    if fmt == "RGB888":
        r = i * 256 // width
        return bytes((r, 255 - r, (i * 37) & 0xFF))
    # RGB565, little-endian 16-bit: r5 g6 b5
    r = i * 32 // width
    g = 63 - (i * 64 // width)
    b = (i * 7) & 31
    v = (r << 11) | (g << 5) | b
    return bytes((v & 0xFF, v >> 8))


class Pattern:
    def __init__(self, fmt, width, height, bits_stored=None):
        lay = layout(fmt, width, height, bits_stored)
        self.layout = lay
        self.width = width
        self.height = height
        self._row_bytes = lay.input_row_bytes
        unit = 2 if fmt == "YUYV" else 1  # YUYV rotates by whole Y0 Cb Y1 Cr groups
        period = PERIOD_BYTES // (lay.input_row_bytes // width) // unit * unit
        if period > width:
            period = width
        step = (lay.input_row_bytes // width) * unit  # bytes per rotation unit
        self._units = period // unit
        self._step = step
        base = bytearray(self._units * step)
        if fmt == "YUYV":
            for p in range(self._units):
                cb = (p * 37) & 0xFF
                y0 = (2 * p) * 256 // period
                base[4 * p:4 * p + 4] = bytes((y0, cb, (2 * p + 1) * 256 // period, 255 - cb))
        else:
            maxv = (1 << lay.bits_stored) - 1
            for i in range(period):
                base[step * i:step * i + step] = _base_pixel(fmt, i, period, maxv)
        self._base = memoryview(base)

    def write_row(self, y, frame, write):
        """Call write(memoryview) with the pieces of row `y` of `frame`, in order."""
        base = self._base
        start = ((y + 3 * frame) % self._units) * self._step
        left = self._row_bytes
        while left:
            n = len(base) - start
            if n > left:
                n = left
            write(base[start:start + n])
            left -= n
            start = 0

    def row(self, y, frame=0):
        out = bytearray()
        self.write_row(y, frame, out.extend)
        return bytes(out)
