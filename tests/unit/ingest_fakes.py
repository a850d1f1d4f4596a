"""Test doubles for the ingest sink, and a frame builder, shared by the ingest unit tests.

The frame builder here is deliberately written from docs/frame-protocol.md with struct and
binascii only, not with modgate.ingest.frameproto, so the tests check the receiver against the spec.
"""

import binascii
import struct

from modgate.errors import FrameError

FORMATS = {"GRAY8": (1, 1), "GRAY16": (2, 2), "RGB888": (3, 3), "RGB565": (4, 2), "YUYV": (5, 2)}
KINDS = {"single": 0, "series_start": 1, "series_frame": 2, "series_end": 3}


def crc32(data, crc=0):
    return binascii.crc32(data, crc) & 0xFFFFFFFF


def frame(seq, payload, width, height, fmt="GRAY8", kind="single", series_id=0, index=0,
          bits=None, context=b""):
    code = FORMATS[fmt][0]
    if bits is None:
        bits = 16 if fmt == "GRAY16" else 8
    head = struct.pack("<4sBBHIIIHHBBHII", b"MGFR", 1, KINDS[kind], 0, seq, series_id, index,
                       width, height, code, bits,
                       0, len(context), len(payload))
    head += struct.pack("<I", crc32(head))
    body = head + context + payload
    return body + struct.pack("<I", crc32(body))


def pixels(seq, n):
    """Deterministic payload bytes that depend on the sequence, so the sink can check them."""
    out = bytearray(n)
    x = (seq * 2654435761 + 12345) & 0xFFFFFFFF
    for i in range(n):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        out[i] = (x >> 16) & 0xFF
    return bytes(out)


def parse_responses(data):
    """[(type, reason, sequence, retry_after_ms, text)] from concatenated response bytes."""
    out = []
    pos = 0
    while pos < len(data):
        magic, ver, typ, reason, seq, retry, tlen, _r = struct.unpack_from("<4sBBHIIHH", data, pos)
        assert magic == b"MGRS" and ver == 1
        end = pos + 20 + tlen
        assert struct.unpack_from("<I", data, end)[0] == crc32(data[pos:end])
        out.append((typ, reason, seq, retry, bytes(data[pos + 20:end]).decode()))
        pos = end + 4
    return out


class Rng:
    """A tiny seeded generator that gives the same numbers on CPython and MicroPython."""

    def __init__(self, seed):
        self.x = (seed * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF or 1

    def next(self):
        x = self.x
        x ^= (x << 13) & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 7
        x ^= (x << 17) & 0xFFFFFFFFFFFFFFFF
        self.x = x
        return x >> 32

    def below(self, n):
        return self.next() % n

    def bytes(self, n):
        return bytes(self.next() & 0xFF for _ in range(n))


class Target:
    def __init__(self, header):
        self.header = header
        self.data = bytearray()
        self.chunks = 0

    def write(self, chunk):
        self.data += chunk
        self.chunks += 1


class FakeSink:
    """Records everything; `stored` holds (header, payload) of committed frames only."""

    def __init__(self):
        self.stored = []
        self.aborted = 0
        self.open = 0
        self.lost = []
        self.busy_ms = 0
        self.refuse = None
        self.max_chunk = 0

    def busy(self):
        return self.busy_ms

    def begin_frame(self, header):
        if self.refuse:
            raise FrameError(self.refuse, 6)
        self.open += 1
        return Target(header)

    def commit_frame(self, target):
        self.open -= 1
        self.stored.append((target.header, bytes(target.data)))
        return "1.2.826.0.1.3680043.10.1." + str(len(self.stored))

    def abort_frame(self, target):
        self.open -= 1
        self.aborted += 1

    def source_lost(self, source_id):
        self.lost.append(source_id)
