"""Frame protocol v1, source side: written from docs/frame-protocol.md alone, independently of the
firmware's receiver, so the two implementations check the spec against each other.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

FRAME_MAGIC = b"MGFR"
RESPONSE_MAGIC = b"MGRS"
VERSION = 1
HEADER_LEN = 40
RESPONSE_FIXED_LEN = 20

KIND_CODES = {"single": 0, "series_start": 1, "series_frame": 2, "series_end": 3}
# name -> (wire code, bytes per pixel)
PIXEL_FORMATS = {"GRAY8": (1, 1), "GRAY16": (2, 2), "RGB888": (3, 3), "RGB565": (4, 2), "YUYV": (5, 2)}

ACK, NAK, BUSY = 1, 2, 3
RESPONSE_NAMES = {ACK: "ACK", NAK: "NAK", BUSY: "BUSY"}
NAK_REASONS = {
    1: "CRC",
    2: "TIMEOUT",
    3: "TOO_LARGE",
    4: "BAD_HEADER",
    5: "BAD_CONTEXT",
    6: "REFUSED",
    7: "SERIES",
    8: "STORAGE",
    9: "INTERNAL",
    10: "BAD_VALUE",
    11: "WORKLIST",
}


def crc32(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    return zlib.crc32(data, value) & 0xFFFFFFFF


@dataclass(frozen=True)
class FrameHeader:
    sequence: int
    width: int
    height: int
    pixel_format: str
    kind: str = "single"
    series_id: int = 0
    frame_index: int = 0
    bits_stored: int | None = None
    bare_end: bool = False  # a series end marker that carries no frame (payload_length 0)

    def payload_length(self) -> int:
        if self.bare_end:
            return 0
        return self.width * self.height * PIXEL_FORMATS[self.pixel_format][1]


def encode_header(h: FrameHeader, context_length: int, payload_length: int) -> bytes:
    code, bpp = PIXEL_FORMATS[h.pixel_format]
    bits = h.bits_stored if h.bits_stored is not None else 8 * bpp if h.pixel_format == "GRAY16" else 8
    fixed = (
        FRAME_MAGIC
        + bytes((VERSION, KIND_CODES[h.kind]))
        + (0).to_bytes(2, "little")  # flags
        + h.sequence.to_bytes(4, "little")
        + h.series_id.to_bytes(4, "little")
        + h.frame_index.to_bytes(4, "little")
        + h.width.to_bytes(2, "little")
        + h.height.to_bytes(2, "little")
        + bytes((code, bits))
        + (0).to_bytes(2, "little")  # reserved
        + context_length.to_bytes(4, "little")
        + payload_length.to_bytes(4, "little")
    )
    assert len(fixed) == HEADER_LEN - 4
    return fixed + crc32(fixed).to_bytes(4, "little")


def encode_context(context: dict[str, str] | None) -> bytes:
    if not context:
        return b""
    return json.dumps(context, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def encode_frame(h: FrameHeader, payload: bytes, context: dict[str, str] | None = None) -> bytes:
    """A complete frame message: header, context, payload, CRC-32 of all three."""
    blob = encode_context(context)
    if len(payload) != h.payload_length():
        raise ValueError(f"payload is {len(payload)} bytes, geometry needs {h.payload_length()}")
    body = encode_header(h, len(blob), len(payload)) + blob + payload
    return body + crc32(body).to_bytes(4, "little")


def frame_parts(
    h: FrameHeader, rows: Iterable[bytes], context: dict[str, str] | None = None
) -> Iterable[bytes]:
    """The same message as encode_frame, as pieces, for sources that stream rows."""
    blob = encode_context(context)
    head = encode_header(h, len(blob), h.payload_length())
    value = crc32(head + blob)
    yield head + blob
    total = 0
    for row in rows:
        value = crc32(row, value)
        total += len(row)
        yield row
    if total != h.payload_length():
        raise ValueError(f"rows gave {total} bytes, geometry needs {h.payload_length()}")
    yield value.to_bytes(4, "little")


@dataclass(frozen=True)
class Response:
    type: int
    reason: int
    sequence: int
    retry_after_ms: int
    text: str

    @property
    def name(self) -> str:
        return RESPONSE_NAMES.get(self.type, f"type {self.type}")

    @property
    def reason_name(self) -> str:
        return NAK_REASONS.get(self.reason, f"reason {self.reason}")


def encode_response(r: Response) -> bytes:
    text = r.text.encode("ascii")
    fixed = struct.pack("<4sBBHIIHH", RESPONSE_MAGIC, VERSION, r.type, r.reason, r.sequence, r.retry_after_ms,
                        len(text), 0)
    return fixed + text + crc32(fixed + text).to_bytes(4, "little")


class ResponseParser:
    """Turns the device's byte stream into Responses, skipping anything whose CRC is wrong."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.skipped = 0

    def feed(self, data: bytes) -> list[Response]:
        self.buffer += data
        found: list[Response] = []
        while True:
            start = self.buffer.find(RESPONSE_MAGIC)
            if start < 0:
                keep = 3 if len(self.buffer) >= 3 else len(self.buffer)
                self.skipped += len(self.buffer) - keep
                del self.buffer[: len(self.buffer) - keep]
                return found
            if start:
                self.skipped += start
                del self.buffer[:start]
            if len(self.buffer) < RESPONSE_FIXED_LEN:
                return found
            fields = struct.unpack_from("<4sBBHIIHH", self.buffer, 0)
            _m, version, rtype, reason, seq, retry, tlen, _r = fields
            if tlen > 64 or version != VERSION:
                del self.buffer[:1]
                continue
            end = RESPONSE_FIXED_LEN + tlen
            if len(self.buffer) < end + 4:
                return found
            if int.from_bytes(self.buffer[end : end + 4], "little") != crc32(self.buffer[:end]):
                del self.buffer[:1]
                continue
            text = bytes(self.buffer[RESPONSE_FIXED_LEN:end]).decode("ascii", "replace")
            found.append(Response(rtype, reason, seq, retry, text))
            del self.buffer[: end + 4]
