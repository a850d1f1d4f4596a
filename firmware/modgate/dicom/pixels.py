"""Input pixel formats and how each is stored (PS3.3 C.7.6.3 Image Pixel Module).

Public API:
- `FORMATS`: the raw input formats ("GRAY8", "GRAY16", "RGB888", "RGB565", "YUYV").
- `layout(fmt, width, height, bits_stored=None)` -> `Layout` with samples_per_pixel, photometric,
  bits_allocated, bits_stored, high_bit, pixel_representation, planar_configuration (None when one
  sample), input_frame_bytes, stored_frame_bytes, input_row_bytes, fmt, width, height.
  Raises EncodeError on an unsupported format or invalid geometry.
- `converter(fmt)` -> (fn, unit_in, unit_out) or None; fn(src, nunits, dst) is one of (convert.py):
  `rgb565_to_rgb`: RGB565 little-endian -> RGB888, 8-bit channels by bit replication;
  `yuyv_to_rgb`: Y0 Cb Y1 Cr -> R G B R G B: studio-range ITU-R BT.601 video (Y 16-235, Cb/Cr 16-240)
  to full-range RGB, the chroma pair shared by both pixels, rounded
  to nearest and clamped to 0-255.

GRAY16 is little-endian with Bits Stored 10, 12, 14 or 16 (unused high bits zero), stored as is.
YUYV needs an even width (two pixels share one Cb/Cr pair). It is stored as RGB: video sources
send studio range, which YBR_FULL (full range, PS3.3 C.7.6.3.1.2) would display with the wrong
black and white levels, and YBR_PARTIAL_422 is allowed only inside compressed transfer syntaxes;
RGB is also the only uncompressed colour the US IODs accept.
"""

from modgate.errors import EncodeError

FORMATS = ("GRAY8", "GRAY16", "RGB888", "RGB565", "YUYV")
GRAY16_BITS = (10, 12, 14, 16)
MAX_DIM = 65535  # Rows and Columns are US (PS3.3 C.7.6.3)


class Layout:
    def __init__(self, fmt, width, height, spp, photometric, bits_allocated, bits_stored, in_bpp, out_bpp):
        self.fmt = fmt
        self.width = width
        self.height = height
        self.samples_per_pixel = spp
        self.photometric = photometric
        self.bits_allocated = bits_allocated
        self.bits_stored = bits_stored
        self.high_bit = bits_stored - 1
        self.pixel_representation = 0
        self.planar_configuration = 0 if spp > 1 else None
        self.input_row_bytes = width * in_bpp
        self.input_frame_bytes = width * height * in_bpp
        self.stored_frame_bytes = width * height * out_bpp

    def __repr__(self):
        return "Layout(%s %dx%d %s %d/%d)" % (
            self.fmt, self.width, self.height, self.photometric, self.bits_stored, self.bits_allocated)


def layout(fmt, width, height, bits_stored=None):
    """How `fmt` frames of width x height are stored; raises EncodeError when they cannot be."""
    if not (isinstance(width, int) and isinstance(height, int)) or not (
        0 < width <= MAX_DIM and 0 < height <= MAX_DIM
    ):
        raise EncodeError("frame size %sx%s is not supported (1..%d each)" % (width, height, MAX_DIM))
    if fmt == "GRAY16":
        bits = 16 if bits_stored is None else bits_stored
        if bits not in GRAY16_BITS:
            raise EncodeError("GRAY16 Bits Stored %s is not supported (10, 12, 14 or 16)" % (bits,))
        return Layout(fmt, width, height, 1, "MONOCHROME2", 16, bits, 2, 2)
    if bits_stored not in (None, 8):
        raise EncodeError("%s has 8 bits per sample; Bits Stored %s is not supported" % (fmt, bits_stored))
    if fmt == "GRAY8":
        return Layout(fmt, width, height, 1, "MONOCHROME2", 8, 8, 1, 1)
    if fmt == "RGB888":
        return Layout(fmt, width, height, 3, "RGB", 8, 8, 3, 3)
    if fmt == "RGB565":
        return Layout(fmt, width, height, 3, "RGB", 8, 8, 2, 3)
    if fmt == "YUYV":
        if width & 1:
            raise EncodeError("YUYV width %d is not supported: 4:2:2 needs an even width" % width)
        return Layout(fmt, width, height, 3, "RGB", 8, 8, 2, 3)
    raise EncodeError("pixel format %s is not supported (one of %s)" % (fmt, ", ".join(FORMATS)))


def load_kernels():
    """The pixel kernels module: native (viper) on MicroPython, where a per-pixel loop in bytecode is
    far too slow, else the pure-Python convert.py. Imported only when a format needs a kernel."""
    try:
        from modgate.dicom import _viper as kernels
    except (ImportError, SyntaxError, NameError):  # pragma: no cover - CPython, or a port without viper
        from modgate.dicom import convert as kernels
    return kernels


def converter(fmt):
    """(function, input unit bytes, output unit bytes) converting `fmt` to its stored form, or None
    when the input is stored as is. The kernels are imported only when a format needs them."""
    if fmt not in ("RGB565", "YUYV"):
        return None
    kernels = load_kernels()
    if fmt == "RGB565":
        return kernels.rgb565_to_rgb, 2, 3
    return kernels.yuyv_to_rgb, 4, 6
