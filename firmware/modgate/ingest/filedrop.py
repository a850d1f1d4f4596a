"""File drop: images left in a watched folder (SD card, USB mass storage) become frames.

Accepted: binary PGM (P5, 8 or 16 bit), binary PPM (P6, 8 bit), BMP (uncompressed 8-bit grey
palette, 24 or 32 bit) and raw pixels NAME.raw with a NAME.json sidecar
{"width", "height", "pixel_format", "bits_stored"?, "context"?}. Any image may have a NAME.json
sidecar with a "context" object (patient/study, as in the frame protocol).

A file is taken only when its size and mtime were the same in two consecutive scans (a file
still being written is left alone). Rows go to the sink top-down in GRAY8 / GRAY16 (little-endian)
/ RGB888 through begin_frame / write / commit_frame with a synthesised header (kind "single",
sequence 0, source "file:NAME"); the file (and its sidecar) is removed, or moved to `done_dir`,
only after commit_frame returned, i.e. once the object is durable. A file that cannot be read as
an image, or that the sink refuses, is moved to `failed_dir` and never deleted.
"""

import json
import struct

from modgate import log
from modgate.dicom import pixels
from modgate.errors import FrameError
from modgate.port import aio, fs

IMAGE_EXTS = (".pgm", ".ppm", ".bmp", ".raw")
_BPP = {"GRAY8": 1, "GRAY16": 2, "RGB888": 3, "RGB565": 2, "YUYV": 2}
ROWS_PER_TURN = 32


class BadImage(Exception):
    """The file is not an image file drop accepts; the message says why."""


# Row kernels (byte swap, BGR to RGB, palette map): native on MicroPython, shared with dicom.
_kernels = pixels.load_kernels()
swap_pairs = _kernels.swap_pairs
bgr_to_rgb = _kernels.bgr_to_rgb
map_bytes = _kernels.map_bytes


# -- readers: open(path) -> an object with fmt, width, height, bits_stored, rows(buf) ------------

def _read_exact(f, n):
    data = f.read(n)
    if data is None or len(data) != n:
        raise BadImage("file ends early")
    return data


class _RowReader:
    """Rows stored contiguously from `offset`, `stride` bytes apart, optionally bottom-up."""

    def __init__(self, f, fmt, width, height, bits, offset, stride, bottom_up=False):
        self.f = f
        self.fmt = fmt
        self.width = width
        self.height = height
        self.bits_stored = bits
        self.offset = offset
        self.stride = stride
        self.bottom_up = bottom_up
        self.row_bytes = width * _BPP[fmt]

    def raw_rows(self, buf):
        """Yield a memoryview of each stored row (file order corrected to top-down)."""
        view = memoryview(buf)[0:self.stride]
        for y in range(self.height):
            if self.bottom_up or y == 0:
                row = self.height - 1 - y if self.bottom_up else 0
                self.f.seek(self.offset + row * self.stride)
            if self.f.readinto(view) != self.stride:
                raise BadImage("file ends early")
            yield view

    def rows(self, buf):
        for view in self.raw_rows(buf):
            yield view[0:self.row_bytes]


class _SwappedRows(_RowReader):
    """16-bit big-endian samples (PGM) to little-endian."""

    def rows(self, buf):
        for view in self.raw_rows(buf):
            swap_pairs(view, self.row_bytes)
            yield view[0:self.row_bytes]


class _BgrRows(_RowReader):
    """BMP 24/32-bit BGR(X) to RGB888; `step` is 3 or 4 bytes per stored pixel."""

    def __init__(self, f, width, height, offset, stride, bottom_up, step):
        _RowReader.__init__(self, f, "RGB888", width, height, 8, offset, stride, bottom_up)
        self.step = step
        self.out = bytearray(width * 3)

    def rows(self, buf):
        out = memoryview(self.out)
        for view in self.raw_rows(buf):
            bgr_to_rgb(view, self.width, self.step, out)
            yield out


class _PaletteRows(_RowReader):
    """BMP 8-bit with a grey palette that is not the identity."""

    def __init__(self, f, width, height, offset, stride, bottom_up, table):
        _RowReader.__init__(self, f, "GRAY8", width, height, 8, offset, stride, bottom_up)
        self.table = table

    def rows(self, buf):
        for view in self.raw_rows(buf):
            map_bytes(view, self.width, self.table)
            yield view[0:self.width]


def _netpbm_header(f):
    """(magic, width, height, maxval, pixel offset) of a binary PGM/PPM; comments allowed."""
    head = f.read(512)
    fields = []
    i = 0
    while len(fields) < 4:
        while i < len(head) and head[i] in b" \t\r\n":
            i += 1
        if i < len(head) and head[i] == 35:  # '#' comment to end of line
            while i < len(head) and head[i] not in b"\r\n":
                i += 1
            continue
        start = i
        while i < len(head) and head[i] not in b" \t\r\n#":
            i += 1
        if start == i:
            raise BadImage("truncated PNM header")
        fields.append(bytes(head[start:i]))
    # exactly one whitespace byte separates maxval from the pixels
    try:
        return fields[0], int(fields[1]), int(fields[2]), int(fields[3]), i + 1
    except ValueError:
        raise BadImage("bad PNM header")


def _open_netpbm(f):
    magic, width, height, maxval, offset = _netpbm_header(f)
    if not (0 < width <= 65535 and 0 < height <= 65535 and 0 < maxval < 65536):
        raise BadImage("bad PNM geometry")
    if magic == b"P5":
        if maxval < 256:
            return _RowReader(f, "GRAY8", width, height, 8, offset, width)
        bits = 0
        while (1 << bits) <= maxval:
            bits += 1
        return _SwappedRows(f, "GRAY16", width, height, bits, offset, 2 * width)
    if magic == b"P6":
        if maxval > 255:
            raise BadImage("16-bit PPM is not supported")
        return _RowReader(f, "RGB888", width, height, 8, offset, 3 * width)
    raise BadImage("only binary PGM (P5) and PPM (P6) are supported")


def _open_bmp(f):
    head = _read_exact(f, 54)
    if head[0:2] != b"BM":
        raise BadImage("not a BMP")
    offset, dib = struct.unpack_from("<II", head, 10)
    if dib < 40:
        raise BadImage("OS/2 BMP headers are not supported")
    width, height, _planes, bpp, compression = struct.unpack_from("<iiHHI", head, 18)
    colours = struct.unpack_from("<I", head, 46)[0]
    bottom_up = height > 0
    height = abs(height)
    if not (0 < width <= 65535 and 0 < height <= 65535):
        raise BadImage("bad BMP geometry")
    if compression != 0:
        raise BadImage("compressed BMP is not supported")
    stride = (width * bpp // 8 + 3) & ~3
    if bpp == 24 or bpp == 32:
        return _BgrRows(f, width, height, offset, stride, bottom_up, bpp // 8)
    if bpp != 8:
        raise BadImage("BMP with " + str(bpp) + " bits per pixel is not supported")
    count = colours or 256
    f.seek(14 + dib)
    palette = _read_exact(f, 4 * count)
    table = bytearray(256)
    identity = True
    for i in range(count):
        b, g, r = palette[4 * i], palette[4 * i + 1], palette[4 * i + 2]
        if not (b == g == r):
            raise BadImage("8-bit BMP palette is not grey")
        table[i] = r
        identity = identity and r == i
    if identity:
        return _RowReader(f, "GRAY8", width, height, 8, offset, stride, bottom_up)
    return _PaletteRows(f, width, height, offset, stride, bottom_up, table)


def _open_raw(f, sidecar):
    if not sidecar:
        raise BadImage("raw file without its .json sidecar")
    try:
        fmt = sidecar["pixel_format"]
        width = int(sidecar["width"])
        height = int(sidecar["height"])
    except (KeyError, ValueError, TypeError):
        raise BadImage("sidecar needs width, height and pixel_format")
    if fmt not in _BPP or not (0 < width <= 65535 and 0 < height <= 65535):
        raise BadImage("sidecar geometry or pixel_format invalid")
    bits = int(sidecar.get("bits_stored") or (16 if fmt == "GRAY16" else 8))
    return _RowReader(f, fmt, width, height, bits, 0, width * _BPP[fmt])


def open_image(f, ext, sidecar=None):
    """A row reader for the open file `f` (binary) of type `ext` (".pgm", ...)."""
    if ext in (".pgm", ".ppm"):
        return _open_netpbm(f)
    if ext == ".bmp":
        return _open_bmp(f)
    return _open_raw(f, sidecar)


# -- the watched folder --------------------------------------------------------------------------

def _ext(name):
    dot = name.rfind(".")
    return name[dot:].lower() if dot > 0 else ""


class FileDrop:
    def __init__(self, sink, folder, done_dir=None, failed_dir=None, row_buffer=4096):
        self.sink = sink
        self.folder = folder
        self.done_dir = done_dir  # None: remove files once stored
        self.failed_dir = failed_dir or fs.join(folder, "failed")
        # Taken once, at boot while the heap is whole, and reused for every file: a fresh 4 KB
        # block per image is hard to find in a board's fragmented heap.
        self.row_buffer = bytearray(row_buffer)
        self.seen = {}  # name -> (size, mtime) at the previous scan

    async def scan(self):
        """Look at the folder once; store every file that is stable and complete. Returns the
        number of files stored. Yields to the device's other tasks every ROWS_PER_TURN rows."""
        names = [n for n in fs.listdir(self.folder) if not n.startswith(".")]
        now = {}
        for name in names:
            path = fs.join(self.folder, name)
            if fs.isdir(path):
                continue
            try:
                now[name] = (fs.size(path), fs.mtime(path))
            except OSError:
                pass
        stable = [n for n in now if now[n][0] > 0 and self.seen.get(n) == now[n]]
        self.seen = now
        stored = 0
        for name in stable:
            ext = _ext(name)
            if ext not in IMAGE_EXTS:
                continue
            sidecar_name = name[:len(name) - len(ext)] + ".json"
            if sidecar_name in now and sidecar_name not in stable:
                continue  # its sidecar is still being written
            if ext == ".raw" and sidecar_name not in stable:
                continue
            if self.sink.busy():
                return stored  # spool full: try again on a later scan
            if await self._ingest(name, sidecar_name if sidecar_name in stable else None):
                stored += 1
        return stored

    async def _ingest(self, name, sidecar_name):
        path = fs.join(self.folder, name)
        try:
            sidecar = json.loads(fs.read_bytes(fs.join(self.folder, sidecar_name))) if sidecar_name else None
            if sidecar is not None and not isinstance(sidecar, dict):
                raise BadImage("sidecar is not a JSON object")
        except (ValueError, OSError):
            self._set_aside(name, sidecar_name, "sidecar is not valid JSON")
            return False
        except BadImage as exc:
            self._set_aside(name, sidecar_name, str(exc))
            return False
        try:
            f = fs.open_file(path, "rb")
        except OSError:
            return False  # gone (card pulled): nothing to do
        target = None
        try:
            try:
                image = open_image(f, _ext(name), sidecar)
                payload = image.width * image.height * _BPP[image.fmt]
                if _ext(name) == ".raw" and fs.size(path) != payload:
                    raise BadImage("raw file is not width x height x bytes per pixel long")
                header = {
                    "version": 1, "kind": "single", "sequence": 0, "series_id": 0, "frame_index": 0,
                    "width": image.width, "height": image.height, "pixel_format": image.fmt,
                    "bits_stored": image.bits_stored,
                    "payload_length": payload,
                    "context": (sidecar or {}).get("context"), "source": "file:" + name,
                }
                if image.stride > len(self.row_buffer):
                    self.row_buffer = bytearray(image.stride)  # a wider image than any before
                buf = self.row_buffer
                target = self.sink.begin_frame(header)
                rows = 0
                for row in image.rows(buf):
                    target.write(row)
                    rows += 1
                    if not rows % ROWS_PER_TURN:
                        await aio.sleep_ms(0)  # a large image must not starve a UART link
                uid = self.sink.commit_frame(target)
                target = None
            finally:
                f.close()
        except BadImage as exc:
            self._abort(target)
            self._set_aside(name, sidecar_name, str(exc))
            return False
        except FrameError as exc:
            self._abort(target)
            self._set_aside(name, sidecar_name, "refused: " + str(exc))
            return False
        except OSError as exc:
            self._abort(target)  # a read error (card pulled?): leave the file, retry next scan
            log.warn("ingest", "file " + name + " not stored: " + str(exc))
            return False
        log.info("ingest", "file " + name + " stored as " + uid)
        self._retire(name, sidecar_name)
        return True

    def _abort(self, target):
        if target is not None:
            self.sink.abort_frame(target)

    def _retire(self, name, sidecar_name):
        for n in (name, sidecar_name):
            if not n:
                continue
            path = fs.join(self.folder, n)
            if self.done_dir:
                fs.makedirs(self.done_dir)
                fs.rename(path, fs.join(self.done_dir, n))
            else:
                fs.remove(path)
            self.seen.pop(n, None)
        fs.sync_dir(self.folder)

    def _set_aside(self, name, sidecar_name, why):
        log.warn("ingest", "file " + name + " set aside: " + why)
        fs.makedirs(self.failed_dir)
        for n in (name, sidecar_name):
            if n:
                try:
                    fs.rename(fs.join(self.folder, n), fs.join(self.failed_dir, n))
                except OSError:
                    pass
                self.seen.pop(n, None)
