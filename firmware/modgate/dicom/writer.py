"""Stream one DICOM object (Part 10, Explicit VR Little Endian) from pixel rows straight to a file.

Public API:
- `ObjectWriter(stream, iod_name, layout, context, uid_gen)`; `stream` is a binary file open for
  writing; multi-frame IODs need it seekable (Number of Frames and the Pixel Data length are patched
  in place by finish(); a one-frame multi-frame SC drops its Frame Increment Pointer in place).
  `context`: see iods.py; every value is checked (modgate.dicom.vr) and refused, never changed.
  - `.begin()`: preamble, File Meta Information and every element up to the Pixel Data header.
  - `.write_pixels(buf)`: input-format bytes (bytes, bytearray or memoryview) in any chunking.
    GRAY8/GRAY16/RGB888 are stored as they come (gathered into a 2 KB block, or written straight
    through when the piece is bigger); RGB565 is expanded to RGB and YUYV converted to RGB through
    one reused buffer. Raises EncodeError on more bytes than a frame, or a second single-frame frame.
  - `.end_frame(increment_ms=None)`: closes the current frame (EncodeError unless exactly one
    frame came); with a reserved Frame Time Vector (context `max_frames`) `increment_ms` is the
    frame's arrival time after the previous frame, in ms (the first frame's is 0 by definition).
  - `.finish()` -> SOP Instance UID: pads to even length, patches the counts, flushes.
  - `.sop_instance_uid`, `.frames`, `.bytes_written`, `.modality` (as written: routing uses it).
  - `.flush()`: writes out the gathered pixel bytes (before syncing a frame to flash).
  - `.resume_point()` -> a list of ints (JSON-able), taken right after begin(): where the pixels
    start and where end_frame() and finish() write. `.resume(point, frames, sop_instance_uid)` on
    a new writer (same iod, layout, context) over the same file, open "r+b", goes on after
    `frames` whole frames as if it had written them: more frames, then finish(). Bytes past them
    (a frame torn by a power cut) are written over. modgate.acquire keeps a series open across
    power cuts with these.
`uid_gen` is a uids.UidGenerator (the SOP Instance UID comes from it).
"""

import binascii
import struct

from modgate.dicom import iods, part10, pixels
from modgate.errors import EncodeError

# Pixel bytes are gathered into blocks this big: MicroPython's unix files are unbuffered, so one
# write per 1 KB row would be one system call per row.
BLOCK = 2048
_CHUNK_UNITS = 256  # conversion granularity: RGB565 256 px -> 768 B, YUYV 256 pairs -> 1.5 KB


# Values arrive checked (modgate.dicom.vr, through attrs); the writer only pads them to even length.
def _text_value(vr, value):
    raw = value.encode()
    if len(raw) & 1:
        raw += b"\x00" if vr == "UI" else b" "
    return raw


def _ascii(value):
    """True unless `value` is text with a character beyond ASCII."""
    if not isinstance(value, str):
        return True
    for ch in value:
        if ord(ch) > 127:
            return False
    return True


def _all_ascii(ctx):
    for key in ctx:
        if not _ascii(ctx[key]):
            return False
    return True


def _sequence(value):
    """The items of a sequence: a context gives them encoded (Explicit VR LE, defined lengths,
    modgate.dicom.dataset) in base64, so it stays small and JSON (a series' note keeps it);
    context["items_not_ascii"] says whether their text is all ASCII."""
    return value if isinstance(value, bytes) else binascii.a2b_base64(value)


_FRAME_TIME = 0x00181063
_FRAME_TIME_VECTOR = 0x00181065
_IMAGE_COMMENTS = 0x00204000
_FRAME_POINTER = 0x00280009
# Frame Time Vector values are written at a fixed width so each frame's slot is filled in place
# (DS allows leading spaces, PS3.5 6.2): up to 9999999 ms between two frames.
FTV_WIDTH = 7
_SLOT = FTV_WIDTH + 1  # one value and its separator
_LT_MAX = 10240  # Image Comments (LT) may grow to this (PS3.5 Table 6.2-1)
_CAPTURE_MAX = 2048
_CAPTURE = 640  # what is usually captured (the elements from the timing one to the pointer)
_SPACES = b" " * 256


class ObjectWriter:
    def __init__(self, stream, iod_name, layout, context, uid_gen):
        self.iod = iods.choose(iod_name, layout.fmt, False)
        self.iod_name = iod_name
        self.layout = layout
        self.context = context
        self.modality = iods.modality(iod_name, context)
        self._uid_gen = uid_gen
        self._stream = stream
        self.sop_instance_uid = None
        self.frames = 0
        self.bytes_written = 0
        self._frame_bytes = 0
        self._frame_limit = layout.input_frame_bytes
        self._frames_pos = None
        # The multi-frame elements that may change size when the object is finished: the timing
        # element (Frame Time or Frame Time Vector) is dropped when a multi-frame SC object ends
        # with one frame, with Frame Increment Pointer (PS3.3 C.8.6.3: Type 1C, only for more than
        # one frame), and a Frame Time Vector reserved for more frames than came is cut to the
        # frames written. Image Comments (LT, trailing spaces insignificant), written between them,
        # absorbs the difference, so only the few bytes in between are rewritten.
        self._droppable = "SC" in self.iod["tables"].split() and self.iod["multi_frame"]
        self._timing = None  # [file offset, total length, is vector]
        self._capacity = 0
        self._ftv_pos = None
        self._between = None  # the captured bytes, in a buffer reused as it fills (_captured of it)
        self._captured = 0
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
        n = len(data)
        if self._capturing:
            end = self._captured + n
            if end > len(self._between):
                if end > _CAPTURE_MAX:
                    raise EncodeError("image comments too long for a multi-frame object")
                grown = bytearray(_CAPTURE_MAX)
                grown[:self._captured] = memoryview(self._between)[:self._captured]
                self._between = grown
            self._between[self._captured:end] = data
            self._captured = end
        self.bytes_written += n

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
            # Items of defined length (a few hundred bytes), or an empty sequence (Type 2).
            raw = _sequence(value)
        elif tag == _FRAME_TIME_VECTOR:
            self._frame_time_vector(value)
            return
        else:
            raw = _text_value(vr, value)
            if tag == 0x00280008:
                raw = raw + b" " * (iods.FRAMES_FIELD - len(raw))
                self._frames_pos = self.bytes_written + 8
        if tag == _FRAME_POINTER:
            self._capturing = False
        elif tag == _IMAGE_COMMENTS and self._capturing:
            # (length field offset, value length, value end) within the captured bytes
            at = self._captured
            self._comments = (at + 6, len(raw), at + 8 + len(raw))
        start = self.bytes_written
        self._header(tag, vr, len(raw))
        self._write(raw)
        if tag == _FRAME_TIME:
            self._timing = [start, self.bytes_written - start, False]
            if self._droppable:
                self._capture()

    def _frame_time_vector(self, capacity):
        """`capacity` values reserved, "      0\\      0 ... 0 " (the last separator a pad space),
        written 32 slots at a time: one value of 10 KB would need a block the heap may not have."""
        self._capacity = capacity
        start = self.bytes_written
        self._header(_FRAME_TIME_VECTOR, "DS", capacity * _SLOT)
        chunk = (b" " * (FTV_WIDTH - 1) + b"0\\") * 32
        left = capacity
        while left:
            n = left if left < 32 else 32
            left -= n
            piece = memoryview(chunk)[:n * _SLOT]
            if not left:
                piece = bytearray(piece)
                piece[-1] = 32
            self._write(piece)
        self._timing = [start, self.bytes_written - start, True]
        self._ftv_pos = start + 8
        self._digits = bytearray(FTV_WIDTH)  # one value, reused for every frame
        self._capture()

    def _capture(self):
        self._between = bytearray(_CAPTURE)
        self._captured = 0
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
        # PS3.3 C.12.1.1.2: UTF-8 whenever a value is not ASCII. Text beyond ASCII can come only
        # from the context (the tables' own values and the computed ones are ASCII), so its
        # values are looked at, not every attribute: a second walk of the tables cost half of
        # an object's header work. A non-ASCII value of a field this IOD leaves out declares
        # UTF-8 all the same, which ASCII text is too.
        if ctx.get("items_not_ascii") or not _all_ascii(ctx):
            self._element(0x00080005, "CS", "ISO_IR 192")
        for tag, vr, value in iods.attributes(self.iod_name, self.layout, ctx, uid):
            self._element(tag, vr, value)
        if self._comments is not None and self._comments[1] + self._timing[1] + 12 > _LT_MAX:
            raise EncodeError("max_frames %d leaves no room in Image Comments to shrink the Frame "
                              "Time Vector" % self._capacity)
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
        timing = self._timing or (-1, -1, False)
        comments = self._comments or (-1, -1, -1)
        captured = b""
        if self._between is not None:
            # What finish() rewrites is kept here, not re-read: a finish cut short by a power cut
            # may have overwritten part of it in the file.
            captured = binascii.b2a_base64(memoryview(self._between)[:self._captured]).decode().strip()
        return [self._length_pos + 4, self._length_pos, -1 if self._frames_pos is None else self._frames_pos,
                timing[0], timing[1], 1 if timing[2] else 0, self._capacity,
                -1 if self._ftv_pos is None else self._ftv_pos] + list(comments) + [captured]

    def resume(self, point, frames, sop_instance_uid):
        """Go on from resume_point() `point` after `frames` whole frames. Everything finish()
        writes comes from `point` and the frame count, so a finish repeated after a power cut
        writes the same bytes again."""
        self.sop_instance_uid = sop_instance_uid
        self.frames = frames
        self._length_pos = point[1]
        self._frames_pos = None if point[2] < 0 else point[2]
        self.bytes_written = point[0] + frames * self.layout.stored_frame_bytes
        if point[3] >= 0:
            self._timing = [point[3], point[4], point[5] == 1]
            self._capacity = point[6]
            if point[7] >= 0:
                self._ftv_pos = point[7]
                self._digits = bytearray(FTV_WIDTH)
        if point[8] >= 0:
            self._comments = (point[8], point[9], point[10])
            self._between = bytearray(binascii.a2b_base64(point[11]))
            self._captured = len(self._between)
        self._stream.seek(self.bytes_written)

    def end_frame(self, increment_ms=None):
        """Close the current frame. With a Frame Time Vector (context max_frames), `increment_ms`
        is the time since the previous frame arrived (ignored for the first frame: always 0)."""
        if self._frame_bytes != self.layout.input_frame_bytes:
            raise EncodeError("frame %d incomplete: %d of %d bytes" % (
                self.frames + 1, self._frame_bytes, self.layout.input_frame_bytes))
        if self._ftv_pos is not None:
            self._frame_time(increment_ms)
        self.frames += 1
        self._frame_bytes = 0
        if not self.iod["multi_frame"]:
            self._frame_limit = 0  # a single-frame IOD takes no second frame

    def _frame_time(self, increment_ms):
        index = self.frames
        if index >= self._capacity:
            raise EncodeError("more than max_frames (%d) frames" % self._capacity)
        if not index:
            return  # the reserved value is 0 already (PS3.3 C.7.6.5.1.2)
        if increment_ms is None or not 0 <= increment_ms < 10 ** FTV_WIDTH:
            raise EncodeError("frame %d: no arrival time for the Frame Time Vector" % (index + 1))
        value = int(increment_ms + 0.5)
        digits = self._digits
        for i in range(FTV_WIDTH - 1, -1, -1):  # right-aligned, leading spaces (no allocation)
            digits[i] = 48 + value % 10 if value or i == FTV_WIDTH - 1 else 32
            value //= 10
        self._flush_block()
        s = self._stream
        s.seek(self._ftv_pos + index * _SLOT)
        s.write(digits)
        s.seek(self.bytes_written)  # the object's end, not the file's: a resumed file may be longer

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
            self._drop_timing()
        elif self._ftv_pos is not None and self.frames < self._capacity:
            self._cut_vector()
        if self.frames != 1:
            s = self._stream
            s.seek(self._length_pos)
            s.write(struct.pack("<L", self._pixel_length(self.frames)))
            if self._frames_pos is not None:
                s.seek(self._frames_pos)
                text = str(self.frames)
                s.write((text + " " * (iods.FRAMES_FIELD - len(text))).encode())
            s.seek(self.bytes_written)
        self._stream.flush()
        return self.sop_instance_uid

    def _rewrite(self, pos, grow, rest):
        """At `pos`: the captured bytes up to Image Comments' end with that value `grow` bytes
        longer (spaces), then `rest` of the captured bytes when they move too."""
        len_off, length, end = self._comments
        between = memoryview(self._between)
        struct.pack_into("<H", self._between, len_off, length + grow)
        s = self._stream
        s.seek(pos)
        s.write(between[:end])
        while grow:
            n = grow if grow < 256 else 256
            s.write(memoryview(_SPACES)[:n])
            grow -= n
        if rest:
            s.write(between[end:self._captured])
        s.seek(self.bytes_written)

    def _drop_timing(self):
        # Timing element and Frame Increment Pointer (12 bytes) go; what lay between moves up.
        start, length, _ = self._timing
        self._rewrite(start, length + 12, True)
        self._frames_pos = None  # it moved; it holds "1" already

    def _cut_vector(self):
        start, length, _ = self._timing
        used = self.frames * _SLOT
        s = self._stream
        s.seek(start + 6)
        s.write(struct.pack("<H", used))
        s.seek(start + 8 + used - 1)
        s.write(b" ")  # the separator after the last value becomes the pad
        self._rewrite(start + 8 + used, length - 8 - used, False)
