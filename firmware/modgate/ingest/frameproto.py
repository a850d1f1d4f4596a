"""Frame protocol v1 (docs/frame-protocol.md): header and response codecs, and the resynchronising
receiver, an incremental state machine fed with whatever bytes the transport delivered.

The receiver never holds a payload: payload bytes go to the sink as they arrive, the CRC-32 is
computed on the way, and only a frame whose CRC matches is committed.
"""

import binascii
import json
import struct

from modgate import log
from modgate.compat import const
from modgate.errors import FrameError, SpoolFull

MAGIC = b"MGFR"
RESPONSE_MAGIC = b"MGRS"
VERSION = const(1)
HEADER_SIZE = const(40)
RESPONSE_FIXED = const(20)
MAX_TEXT = const(64)

KINDS = ("single", "series_start", "series_frame", "series_end")
# code -> (name, bytes per pixel); the index in this tuple is the wire code.
FORMATS = (None, ("GRAY8", 1), ("GRAY16", 2), ("RGB888", 3), ("RGB565", 2), ("YUYV", 2))

ACK = const(1)
NAK = const(2)
BUSY = const(3)

NAK_CRC = const(1)
NAK_TIMEOUT = const(2)
NAK_TOO_LARGE = const(3)
NAK_BAD_HEADER = const(4)
NAK_BAD_CONTEXT = const(5)
NAK_REFUSED = const(6)
NAK_SERIES = const(7)
NAK_STORAGE = const(8)
NAK_INTERNAL = const(9)
NAK_BAD_VALUE = const(10)  # a context value breaks its DICOM attribute's rules (modgate.dicom.vr)
NAK_WORKLIST = const(11)  # the context names a worklist item the device has not got, or cannot use
NAK_NAMES = ("", "CRC", "TIMEOUT", "TOO_LARGE", "BAD_HEADER", "BAD_CONTEXT", "REFUSED", "SERIES",
             "STORAGE", "INTERNAL", "BAD_VALUE", "WORKLIST")

_HEADER_FMT = "<4sBBHIIIHHBBHII"  # bytes 0..35; header_crc follows at 36
_RESPONSE_FMT = "<4sBBHIIHH"
_UNKNOWN_SEQ = const(0xFFFFFFFF)
_DEDUP = const(16)
_SPOOL_FULL_RETRY_MS = const(1000)  # BUSY retry-after when the sink raised SpoolFull
# BUSY retry-after when the board had no heap for the frame: RAM is short only while other work
# (deliveries, a console command) holds it, so the resend soon finds room; a NAK would lose it.
_NO_MEMORY_RETRY_MS = const(300)

# Receiver states
_HUNT = const(0)
_HEADER = const(1)
_CONTEXT = const(2)
_PAYLOAD = const(3)
_CRC = const(4)
_DRAIN = const(5)


def format_code(name):
    """Wire code of a pixel format name, or 0 when unknown."""
    for code in range(1, len(FORMATS)):
        if FORMATS[code][0] == name:
            return code
    return 0


def bytes_per_pixel(name):
    """Bytes per pixel of a pixel format name, or 0 when unknown."""
    code = format_code(name)
    return FORMATS[code][1] if code else 0


def encode_header(buf, kind, sequence, series_id, frame_index, width, height, pixel_format,
                  bits_stored, context_length, payload_length):
    """Pack a v1 header (with its header CRC) into the first 40 bytes of `buf` (a bytearray)."""
    struct.pack_into(_HEADER_FMT, buf, 0, MAGIC, VERSION, KINDS.index(kind), 0, sequence, series_id,
                     frame_index, width, height, format_code(pixel_format), bits_stored, 0,
                     context_length, payload_length)
    struct.pack_into("<I", buf, 36, binascii.crc32(memoryview(buf)[0:36]) & 0xFFFFFFFF)
    return buf


def decode_header(buf):
    """The header dict of a 40-byte header whose CRC is right, else None (not a header: resync).

    A genuine header (CRC right) that v1 cannot accept still comes back, with its reason in
    header["problem"], so the receiver can drain that frame and NAK it (NAK_BAD_HEADER).
    """
    if binascii.crc32(memoryview(buf)[0:36]) & 0xFFFFFFFF != struct.unpack_from("<I", buf, 36)[0]:
        return None
    (magic, version, kind, flags, seq, series_id, index, width, height, fmt, bits, _reserved,
     clen, plen) = struct.unpack_from(_HEADER_FMT, buf, 0)
    if magic != MAGIC:
        return None
    header = {
        "version": version, "kind": KINDS[kind] if kind < len(KINDS) else kind, "sequence": seq,
        "series_id": series_id, "frame_index": index, "width": width, "height": height,
        "pixel_format": FORMATS[fmt][0] if 0 < fmt < len(FORMATS) else fmt, "bits_stored": bits,
        "context_length": clen, "payload_length": plen, "context": None,
    }
    header["problem"] = _check_header(header, version, kind, flags, fmt, bits)
    return header


def _check_header(h, version, kind, flags, fmt, bits):
    if version != VERSION:
        return "unsupported version " + str(version)
    if kind >= len(KINDS):
        return "unknown kind " + str(kind)
    if flags:
        return "reserved flags set"
    if h["kind"] == "series_end" and h["payload_length"] == 0:
        return None  # bare end marker: geometry ignored
    if not 0 < fmt < len(FORMATS):
        return "unknown pixel format " + str(fmt)
    if not h["width"] or not h["height"]:
        return "empty geometry"
    if fmt == 5 and h["width"] & 1:
        return "YUYV needs an even width"
    if not 0 < bits <= FORMATS[fmt][1] * 8 or (fmt != 2 and bits != 8):
        return "bits_stored " + str(bits) + " invalid for " + FORMATS[fmt][0]
    if h["payload_length"] != h["width"] * h["height"] * FORMATS[fmt][1]:
        return "payload_length does not match geometry"
    return None


def encode_response(kind, sequence, reason=0, retry_after_ms=0, text=""):
    """A complete response message (bytes)."""
    data = text.encode() if isinstance(text, str) else bytes(text)
    data = data[:MAX_TEXT]
    buf = bytearray(RESPONSE_FIXED + len(data) + 4)
    struct.pack_into(_RESPONSE_FMT, buf, 0, RESPONSE_MAGIC, VERSION, kind, reason, sequence,
                     retry_after_ms, len(data), 0)
    buf[RESPONSE_FIXED:RESPONSE_FIXED + len(data)] = data
    end = RESPONSE_FIXED + len(data)
    struct.pack_into("<I", buf, end, binascii.crc32(memoryview(buf)[0:end]) & 0xFFFFFFFF)
    return bytes(buf)


class FrameReceiver:
    """Resynchronising receiver for one stream (one source).

    `feed(buf, start, end)` consumes every byte of `buf[start:end]` (buf a bytearray) and appends
    any responses to `self.outbox` (a bytearray the transport sends and clears). `timeout()` tells
    it the frame timeout expired. It never raises on bad input; sink errors become NAKs.
    """

    def __init__(self, sink, source_id, max_frame_bytes=8 << 20, max_context_bytes=1024, recent=None):
        self.sink = sink
        self.source_id = source_id
        self.max_frame_bytes = max_frame_bytes
        self.max_context_bytes = max_context_bytes
        self.outbox = bytearray()
        self.hold = bytearray(max(HEADER_SIZE, max_context_bytes))
        self.held = 0
        self.state = _HUNT
        self.header = None
        self.target = None
        self.left = 0
        self.crc = 0
        self.nak = 0
        self.nak_text = ""
        self.busy_ms = 0
        self.busy_text = "spool full"
        # (sequence, crc, uid) of recent ACKs, for duplicate suppression; shared by the links of
        # one input so a resend on a new connection is recognised.
        self.recent = [] if recent is None else recent
        self.stats = {"frames": 0, "acked": 0, "nacked": 0, "busy": 0, "skipped_bytes": 0}

    def in_frame(self):
        """True while a frame is started but incomplete (the frame timeout applies)."""
        return self.state != _HUNT or self.held > 0

    def feed(self, buf, start, end):
        while start < end:
            state = self.state
            if state == _HUNT:
                start = self._hunt(buf, start, end)
            elif state == _HEADER:
                start = self._take_header(buf, start, end)
            elif state == _CONTEXT:
                start = self._take_context(buf, start, end)
            elif state == _PAYLOAD or state == _DRAIN:
                n = min(self.left, end - start)
                view = memoryview(buf)[start:start + n]
                self.crc = binascii.crc32(view, self.crc)
                if state == _PAYLOAD:
                    self._write(view)
                self.left -= n
                start += n
                if self.left == 0:
                    self.state = _CRC
                    self.held = 0
            else:
                start = self._take_crc(buf, start, end)

    def timeout(self):
        """The frame stopped arriving: abandon it (NAK TIMEOUT if its header was good)."""
        if self.state in (_HUNT, _HEADER):
            self.held = 0
            self.state = _HUNT
            return
        seq = self.header["sequence"]
        self._abort()
        log.warn("ingest", self.source_id + ": frame " + str(seq) + " timed out, abandoned")
        self._respond(NAK, seq, NAK_TIMEOUT, 0, "frame incomplete")
        self.state = _HUNT
        self.held = 0

    def close(self):
        """The stream closed: abandon any frame in progress and tell the sink the source is gone."""
        if self.state not in (_HUNT, _HEADER):
            self._abort()
        self.state = _HUNT
        self.held = 0
        self.sink.source_lost(self.source_id)

    # -- states ---------------------------------------------------------------------------------

    def _hunt(self, buf, start, end):
        i = buf.find(MAGIC, start, end)
        if i < 0:
            # Keep a tail that may be the start of a magic split across reads.
            keep = 0
            for k in (3, 2, 1):
                if end - start >= k and buf[end - k:end] == MAGIC[:k]:
                    keep = k
                    break
            self.stats["skipped_bytes"] += end - start - keep
            if keep:
                self.hold[0:keep] = buf[end - keep:end]
                self.held = keep
                self.state = _HEADER
            return end
        self.stats["skipped_bytes"] += i - start
        self.held = 0
        self.state = _HEADER
        return i

    def _take_header(self, buf, start, end):
        n = min(HEADER_SIZE - self.held, end - start)
        self.hold[self.held:self.held + n] = memoryview(buf)[start:start + n]
        self.held += n
        start += n
        if self.held < 4:
            return start
        if self.hold[0:4] != MAGIC:
            self._slide(1)
            return start
        if self.held < HEADER_SIZE:
            return start
        header = decode_header(self.hold)
        if header is None:
            self._slide(1)
        elif header["problem"]:
            self._start(header, header["problem"])
        else:
            self._start(header, None)
        return start

    def _slide(self, skip):
        """Drop `skip` bytes of the held header and hunt again inside what is left."""
        held = self.held
        view = memoryview(self.hold)
        i = self.hold.find(MAGIC, skip, held)
        if i < 0:
            # Keep a tail that could begin a magic.
            i = held
            for k in (3, 2, 1):
                if held - skip >= k and self.hold[held - k:held] == MAGIC[:k]:
                    i = held - k
                    break
        self.stats["skipped_bytes"] += i
        self.hold[0:held - i] = view[i:held]
        self.held = held - i
        # Fewer than 40 bytes are left, so the next feed completes the candidate header.
        self.state = _HEADER if self.held else _HUNT

    def _start(self, header, problem):
        """A header with a good CRC: decide to accept, drain (then NAK/BUSY) or read the context."""
        del header["problem"]
        header["source"] = self.source_id
        self.header = header
        self.target = None
        self.nak = 0
        self.busy_ms = 0
        self.stats["frames"] += 1
        self.crc = binascii.crc32(memoryview(self.hold)[0:HEADER_SIZE])
        self.held = 0
        clen = header["context_length"]
        if problem:
            self._refuse(NAK_BAD_HEADER, problem)
        elif clen + header["payload_length"] > self.max_frame_bytes:
            self._refuse(NAK_TOO_LARGE, "frame larger than " + str(self.max_frame_bytes) + " bytes")
        elif clen > self.max_context_bytes:
            self._refuse(NAK_BAD_CONTEXT, "context longer than " + str(self.max_context_bytes))
        elif clen:
            self.state = _CONTEXT
            self.left = clen
        else:
            self._begin()

    def _refuse(self, code, text):
        """Read and discard the rest of the frame (lengths are CRC-checked), then answer NAK."""
        self.nak = code
        self.nak_text = text
        self.left = self.header["context_length"] + self.header["payload_length"]
        self.state = _DRAIN if self.left else _CRC
        self.held = 0

    def _take_context(self, buf, start, end):
        n = min(self.left, end - start)
        view = memoryview(buf)[start:start + n]
        self.crc = binascii.crc32(view, self.crc)
        self.hold[self.held:self.held + n] = view
        self.held += n
        self.left -= n
        if self.left == 0:
            try:
                context = json.loads(bytes(memoryview(self.hold)[0:self.held]))
                if not isinstance(context, dict):
                    raise ValueError("not an object")
            except (ValueError, UnicodeError):
                self.held = 0
                self._refuse(NAK_BAD_CONTEXT, "context is not a UTF-8 JSON object")
                self.left = self.header["payload_length"]
                self.state = _DRAIN if self.left else _CRC
                return start + n
            self.header["context"] = context
            self.held = 0
            self._begin()
        return start + n

    def _begin(self):
        header = self.header
        self.left = header["payload_length"]
        self.busy_text = "spool full"
        try:
            self.busy_ms = self.sink.busy()
            if not self.busy_ms:
                self.target = self.sink.begin_frame(header)
        except SpoolFull:
            self.busy_ms = _SPOOL_FULL_RETRY_MS
        except MemoryError:
            # Before any of the frame is stored: BUSY, and the resend finds room (a commit that
            # runs out of memory stays a NAK: it may have stored the object).
            self.target = None
            self.busy_ms = _NO_MEMORY_RETRY_MS
            self.busy_text = "no memory"
            try:
                log.warn("ingest", self.source_id + ": no heap for a frame: BUSY")
            except MemoryError:
                pass
        except FrameError as exc:
            self._refuse(exc.code or NAK_REFUSED, str(exc))
            self.left = header["payload_length"]
        except Exception as exc:  # a sink bug must cost one frame, not the input
            log.error("ingest", self.source_id + ": begin_frame failed: " + repr(exc))
            self._refuse(NAK_INTERNAL, "device error")
            self.left = header["payload_length"]
        if self.busy_ms or self.nak:
            self.state = _DRAIN if self.left else _CRC
        else:
            self.state = _PAYLOAD if self.left else _CRC
        self.held = 0

    def _write(self, view):
        try:
            self.target.write(view)
        except Exception as exc:
            code = exc.code if isinstance(exc, FrameError) and exc.code else NAK_STORAGE
            log.error("ingest", self.source_id + ": write failed: " + str(exc))
            self._abort()
            self.nak = code
            self.nak_text = "storage error"
            self.state = _DRAIN

    def _take_crc(self, buf, start, end):
        n = min(4 - self.held, end - start)
        self.hold[self.held:self.held + n] = memoryview(buf)[start:start + n]
        self.held += n
        if self.held == 4:
            self.held = 0
            self.state = _HUNT
            self._finish(struct.unpack_from("<I", self.hold, 0)[0] == self.crc & 0xFFFFFFFF)
        return start + n

    def _finish(self, crc_ok):
        seq = self.header["sequence"]
        if not crc_ok:
            self._abort()
            log.warn("ingest", self.source_id + ": frame " + str(seq) + " CRC mismatch, discarded")
            self._respond(NAK, seq, NAK_CRC, 0, "CRC mismatch")
        elif self.nak:
            log.warn("ingest", self.source_id + ": frame " + str(seq) + " refused: " + self.nak_text)
            self._respond(NAK, seq, self.nak, 0, self.nak_text)
        elif self.busy_ms:
            self._respond(BUSY, seq, 0, self.busy_ms, self.busy_text)
        else:
            self._commit(seq)
        self.target = None

    def _commit(self, seq):
        crc = self.crc & 0xFFFFFFFF
        for entry in self.recent:
            if entry[0] == seq and entry[1] == crc:
                self._abort()
                log.info("ingest", self.source_id + ": frame " + str(seq) + " is a resend, ACK again")
                self._respond(ACK, seq, 0, 0, entry[2])
                return
        try:
            uid = self.sink.commit_frame(self.target)
        except SpoolFull:
            self._abort()
            self._respond(BUSY, seq, 0, _SPOOL_FULL_RETRY_MS, "spool full")
            return
        except Exception as exc:
            code = exc.code if isinstance(exc, FrameError) and exc.code else NAK_STORAGE
            log.error("ingest", self.source_id + ": commit of frame " + str(seq) + " failed: " + str(exc))
            self._abort()
            self._respond(NAK, seq, code, 0, str(exc)[:MAX_TEXT])
            return
        self.target = None
        self.recent.append((seq, crc, uid))
        if len(self.recent) > _DEDUP:
            self.recent.pop(0)
        self._respond(ACK, seq, 0, 0, uid)

    def _abort(self):
        target = self.target
        self.target = None
        if target is not None:
            try:
                self.sink.abort_frame(target)
            except Exception as exc:
                log.error("ingest", self.source_id + ": abort_frame failed: " + repr(exc))

    def _respond(self, kind, seq, reason, retry_ms, text):
        key = ("", "acked", "nacked", "busy")[kind]
        self.stats[key] += 1
        self.outbox += encode_response(kind, seq, reason, retry_ms, text)
