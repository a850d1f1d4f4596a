"""Stream one DICOM object (Part 10, Explicit VR Little Endian) from pixel rows straight to a file.

Public API:
- `ObjectWriter(stream, iod_name, layout, context, uid_gen)`; `stream` is a binary file open for
  writing; multi-frame IODs need it seekable (Number of Frames and the Pixel Data length are patched
  in place by finish(); a one-frame multi-frame SC drops its Frame Increment Pointer in place).
  - `.begin()`: preamble, File Meta Information and every element up to the Pixel Data header.
  - `.write_pixels(buf)`: input-format bytes (bytes, bytearray or memoryview) in any chunking.
    GRAY8/GRAY16/RGB888 are stored as they come (gathered into a 2 KB block, or written straight
    through when the piece is bigger); RGB565 is expanded to RGB and YUYV to YBR_FULL through one
    reused buffer. Raises EncodeError on more bytes than a frame, or a second single-frame frame.
  - `.end_frame()`: closes the current frame (raises EncodeError unless exactly one frame came).
  - `.finish()` -> SOP Instance UID: pads to even length, patches the counts, flushes.
  - `.sop_instance_uid`, `.frames`, `.bytes_written`.
  - `.flush()`: writes out the gathered pixel bytes (before syncing a frame to flash).
  - `.resume_point()` -> a list of ints (JSON-able), taken right after begin(): where the pixels
    start and where finish() patches. `.resume(point, frames, sop_instance_uid)` on a new writer
    (same iod, layout) over the same file, open "r+b" and positioned after `frames` whole
    frames, goes on as if it had written them: more frames, then finish(). modgate.acquire
    keeps a series open across power cuts with these.
Context keys: see iods.py. `uid_gen` is a uids.UidGenerator (the SOP Instance UID comes from it).
"""

import struct

from modgate.dicom import iods, part10, pixels
from modgate.errors import EncodeError

# Pixel bytes are gathered into blocks this big: MicroPython's unix files are unbuffered, so one
# write per 1 KB row would be one system call per row.
BLOCK = 2048
_CHUNK_UNITS = 256  # conversion granularity: RGB565 256 px -> 768 B, YUYV 256 pairs -> 1.5 KB


# Maximum value lengths in characters (PS3.5 Table 6.2-1); longer context values are cut.
_MAX = {"AE": 16, "CS": 16, "DS": 16, "IS": 12, "LO": 64, "SH": 16, "PN": 64, "DA": 8, "TM": 16,
        "UI": 64, "LT": 10240, "ST": 1024}
_CLEAN = ("PN", "LO", "SH")  # single-valued free text: no backslash (VM 1), no control characters


def _clean(text):
    if text.isalpha():
        return text
    out = []
    for ch in text:
        out.append(" " if ch == "\\" or ord(ch) < 32 else ch)
    return "".join(out)


def _text_value(vr, value):
    if vr in _CLEAN:
        value = _clean(value).strip()  # leading and trailing spaces are insignificant (PS3.5 6.2)
    elif vr == "CS":
        value = value.upper()
    elif vr == "DA" and value and not (len(value) == 8 and value.isdigit()):
        value = ""  # an unusable date is unknown (Type 2 empty), not invalid
    limit = _MAX.get(vr)
    if limit and len(value) > limit:
        if vr in _CLEAN:
            value = value[:limit].rstrip()
        else:
            # Multi-valued VRs: the limit is per value (PS3.5 6.4).
            value = "\\".join([v[:limit].rstrip() for v in value.split("\\")])
    raw = value.encode()
    if limit and vr in _CLEAN and len(raw) > limit:
        # dciodvfy counts the limit in bytes: cut UTF-8 on a character boundary.
        cut = limit
        while raw[cut] & 0xC0 == 0x80:
            cut -= 1
        raw = raw[:cut].rstrip()
    if len(raw) & 1:
        raw += b"\x00" if vr == "UI" else b" "
    return raw


def _ascii(text):
    for ch in text:
        if ord(ch) > 127:
            return False
    return True


class ObjectWriter:
    def __init__(self, stream, iod_name, layout, context, uid_gen):
        self.iod = iods.choose(iod_name, layout.fmt, False)
        self.iod_name = iod_name
        self.layout = layout
        self.context = context
        self._uid_gen = uid_gen
        self._stream = stream
        self.sop_instance_uid = None
        self.frames = 0
        self.bytes_written = 0
        self._frame_bytes = 0
        self._frame_limit = layout.input_frame_bytes
        self._frames_pos = None
        # In the multi-frame SC IODs Frame Increment Pointer is Type 1C, absent with one frame, and so
        # is the Frame Time it points to (PS3.3 C.8.6.3, C.7.6.5). If the series closes after one
        # frame, finish() drops both in place: Image Comments (LT, trailing spaces insignificant),
        # written between them, grows by their size, and the few bytes in between are rewritten.
        self._droppable = "SC" in self.iod["tables"] and self.iod["multi_frame"]
        self._drop_start = None
        self._drop_len = 0
        self._between = None
        self._capturing = False
        self._comments = None
        self._length_pos = None
        self._hdr = bytearray(12)
        conv = pixels.converter(layout.fmt)
        self._convert = None
        if conv is not None:
            self._convert, self._unit_in, self._unit_out = conv
            self._carry = bytearray(self._unit_in)
            self._carry_n = 0
            self._out = bytearray(_CHUNK_UNITS * self._unit_out)
            self._out_mv = memoryview(self._out)
        try:
            self._block = bytearray(BLOCK)  # before begin() fragments the heap
        except MemoryError:
            self._block = None  # no room: write each piece straight through (slower, still right)
        self._fill = 0

    def _write(self, data):
        self._stream.write(data)
        if self._capturing:
            self._between += data
            if len(self._between) > 512:
                raise EncodeError("internal: Frame Time and Frame Increment Pointer too far apart")
        self.bytes_written += len(data)

    def _header(self, tag, vr, length):
        h = self._hdr
        if vr.encode() in part10.LONG_VRS:
            struct.pack_into("<HH2sHL", h, 0, tag >> 16, tag & 0xFFFF, vr.encode(), 0, length)
            self._write(memoryview(h)[:12])
            return 8  # offset of the length field within the header
        struct.pack_into("<HH2sH", h, 0, tag >> 16, tag & 0xFFFF, vr.encode(), length)
        self._write(memoryview(h)[:8])
        return 6

    def _element(self, tag, vr, value):
        if vr == "US":
            raw = struct.pack("<H", value)
        elif vr == "SS":
            raw = struct.pack("<h", value)
        elif vr == "AT":
            raw = struct.pack("<HH", value[0], value[1])
        elif vr == "SQ":
            raw = value  # only empty sequences (Type 2, zero length) are written
        else:
            raw = _text_value(vr, value)
            if tag == 0x00280008:
                raw = raw + b" " * (iods.FRAMES_FIELD - len(raw))
                self._frames_pos = self.bytes_written + 8
        drop = self._droppable and tag in (0x00181063, 0x00280009)
        if drop and tag == 0x00280009:
            self._drop_len += 12
            self._capturing = False
        elif drop:
            self._drop_start = self.bytes_written
        elif tag == 0x00204000 and self._capturing:
            # (length field offset, value length, value end offset) within the captured bytes
            self._comments = (len(self._between) + 6, len(raw), len(self._between) + 8 + len(raw))
        start = self.bytes_written
        self._header(tag, vr, len(raw))
        self._write(raw)
        if drop and tag == 0x00181063:
            self._drop_len = self.bytes_written - start
            self._between = bytearray()
            self._capturing = True

    def begin(self):
        ctx = self.context
        if ctx.get("clock_set") is False:
            from modgate import log  # only on this rare path: the log costs RAM

            log.warn("dicom", "device clock is not set: dates in new objects are not real")
        self.sop_instance_uid = self._uid_gen.new()
        self.bytes_written = part10.write_meta(
            self._stream, self.iod["sop_class_uid"], self.sop_instance_uid, part10.EXPLICIT_VR_LE)
        uid = self.sop_instance_uid
        for _, vr, value in iods.attributes(self.iod_name, self.layout, ctx, uid):
            if isinstance(value, str) and not _ascii(value):
                # PS3.3 C.12.1.1.2: UTF-8 whenever a value is not ASCII.
                self._element(0x00080005, "CS", "ISO_IR 192")
                break
        for tag, vr, value in iods.attributes(self.iod_name, self.layout, ctx, uid):
            self._element(tag, vr, value)
        vr = "OB" if self.layout.bits_allocated == 8 else "OW"
        start = self.bytes_written
        self._length_pos = start + self._header(0x7FE00010, vr, self._pixel_length(1))

    def _pixel_length(self, frames):
        n = frames * self.layout.stored_frame_bytes
        return n + (n & 1)

    def write_pixels(self, buf):
        # The hot path: a few comparisons, then the caller's buffer goes to the stream untouched.
        n = len(buf)
        filled = self._frame_bytes + n
        if filled > self._frame_limit:
            if self.frames and not self.iod["multi_frame"]:
                raise EncodeError("%s is single-frame: a second frame is not supported" % self.iod_name)
            raise EncodeError("more pixel bytes than one %s frame; call end_frame()" % self.layout.fmt)
        self._frame_bytes = filled
        if self._convert is None:
            self._put(buf, n)
            return
        mv = buf if isinstance(buf, memoryview) else memoryview(buf)
        unit_in = self._unit_in
        if self._carry_n:
            take = unit_in - self._carry_n
            if take > n:
                take = n
            self._carry[self._carry_n:self._carry_n + take] = mv[:take]
            self._carry_n += take
            mv = mv[take:]
            n -= take
            if self._carry_n < unit_in:
                return
            self._convert(self._carry, 1, self._out)
            self._put(self._out_mv[:self._unit_out], self._unit_out)
            self._carry_n = 0
        units = n // unit_in
        i = 0
        while units:
            k = units if units < _CHUNK_UNITS else _CHUNK_UNITS
            self._convert(mv[i:i + k * unit_in], k, self._out)
            self._put(self._out_mv[:k * self._unit_out], k * self._unit_out)
            i += k * unit_in
            units -= k
        if i < n:
            self._carry[0:n - i] = mv[i:n]
            self._carry_n = n - i

    def _put(self, buf, n):
        self.bytes_written += n
        if self._block is None:
            self._stream.write(buf)
            return
        fill = self._fill
        if fill + n <= BLOCK:
            self._block[fill:fill + n] = buf
            fill += n
            if fill == BLOCK:
                self._stream.write(self._block)
                fill = 0
            self._fill = fill
            return
        self._flush_block()
        if n >= BLOCK:
            self._stream.write(buf)
        else:
            self._block[0:n] = buf
            self._fill = n

    def _flush_block(self):
        if self._fill:
            self._stream.write(memoryview(self._block)[:self._fill])
            self._fill = 0

    def flush(self):
        self._flush_block()

    def resume_point(self):
        drop = (-1, -1, -1, -1, -1, -1)
        if self._drop_start is not None:
            drop = (self._drop_start, self._drop_len, len(self._between)) + tuple(self._comments)
        frames_pos = -1 if self._frames_pos is None else self._frames_pos
        return [self._length_pos + 4, self._length_pos, frames_pos] + list(drop)

    def resume(self, point, frames, sop_instance_uid):
        self.sop_instance_uid = sop_instance_uid
        self.frames = frames
        self._length_pos = point[1]
        self._frames_pos = None if point[2] < 0 else point[2]
        self.bytes_written = point[0] + frames * self.layout.stored_frame_bytes
        if point[3] >= 0:
            s = self._stream
            s.seek(point[3])
            tag = s.read(4)
            # Frame Time still at its place: finish() has not dropped it (and its pointer) yet.
            if tag == b"\x18\x00\x63\x10":
                self._drop_start, self._drop_len = point[3], point[4]
                s.seek(point[3] + point[4] - 12)
                self._between = bytearray(s.read(point[5]))
                self._comments = (point[6], point[7], point[8])
            else:
                self._droppable = False
            s.seek(self.bytes_written)

    def end_frame(self):
        if self._frame_bytes != self.layout.input_frame_bytes:
            raise EncodeError("frame %d incomplete: %d of %d bytes" % (
                self.frames + 1, self._frame_bytes, self.layout.input_frame_bytes))
        self.frames += 1
        self._frame_bytes = 0
        if not self.iod["multi_frame"]:
            self._frame_limit = 0  # a single-frame IOD takes no second frame

    def finish(self):
        if self._frame_bytes:
            raise EncodeError("frame %d incomplete at finish" % (self.frames + 1))
        if not self.frames:
            raise EncodeError("no frame was written")
        self._flush_block()
        total = self.frames * self.layout.stored_frame_bytes
        if total & 1:
            self._write(b"\x00")  # OB padded to even length (PS3.5 7.1.1)
        if self.frames == 1 and self._droppable:
            self._drop_frame_pointer()
        if self.frames != 1:
            s = self._stream
            s.seek(self._length_pos)
            s.write(struct.pack("<L", self._pixel_length(self.frames)))
            if self._frames_pos is not None:
                s.seek(self._frames_pos)
                text = str(self.frames)
                s.write((text + " " * (iods.FRAMES_FIELD - len(text))).encode())
            s.seek(0, 2)
        self._stream.flush()
        return self.sop_instance_uid

    def _drop_frame_pointer(self):
        between = self._between
        len_off, length, end = self._comments
        head = bytearray(between[:end])
        struct.pack_into("<H", head, len_off, length + self._drop_len)
        s = self._stream
        s.seek(self._drop_start)
        s.write(head)
        s.write(b" " * self._drop_len)
        s.write(between[end:])
        self._frames_pos = None  # it moved; it holds "1" already
        s.seek(0, 2)

