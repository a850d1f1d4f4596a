"""Device log: one line per event, kept in a small ring for the console's `log tail` and written
to the board's log stream (stderr in the emulator, the console UART's debug channel on boards)."""

import sys

from modgate.port import clock

LEVELS = ("debug", "info", "warn", "error")
# The ring for `log tail`: newline-ended lines in one fixed block, oldest first. One allocation,
# at the first line, of the size configure() last set (a job asks for a small one before anything
# is logged), never more however long the lines or the uptime (a list of strings grew with both).
_ring = [None]
_ring_bytes = [4096]
_ring_used = [0]
_stream = [getattr(sys, "stderr", None)]
_min_level = [1]


def configure(ring_bytes=4096, stream=None, level="info"):
    if ring_bytes != _ring_bytes[0]:
        _ring_bytes[0] = ring_bytes
        _ring[0] = None  # taken again, at that size, by the next line
        _ring_used[0] = 0
    if stream is not None:
        _stream[0] = stream
    _min_level[0] = LEVELS.index(level)


def _keep(line):
    """Append `line` to the ring, dropping the oldest lines that no longer fit."""
    ring = _ring[0]
    if ring is None:
        ring = _ring[0] = bytearray(_ring_bytes[0])
    data = line.encode()
    if len(data) >= len(ring):
        cut = len(ring) - 1
        while cut and data[cut] & 0xC0 == 0x80:
            cut -= 1  # not inside a UTF-8 sequence: `tail` must decode what it kept
        data = data[:cut]
    used = _ring_used[0]
    if used + len(data) + 1 > len(ring):
        # Drop whole lines from the front until the new one fits; shift the rest down in place.
        nl = ring.find(b"\n", used + len(data) - len(ring))
        start = nl + 1 if 0 <= nl < used else used
        view = memoryview(ring)
        view[0 : used - start] = view[start:used]
        used -= start
    ring[used : used + len(data)] = data
    ring[used + len(data)] = 10  # "\n"
    _ring_used[0] = used + len(data) + 1


def _stamp():
    t = clock.now()
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % t


def log(level, source, message):
    """Record `message` from `source` (a short layer name: net, spool, ingest...)."""
    rank = LEVELS.index(level)
    if rank < _min_level[0]:
        return
    line = _stamp() + " " + level.upper() + " " + source + ": " + message
    _keep(line)
    stream = _stream[0]
    if stream is not None:
        try:
            stream.write(line + "\n")
        except (OSError, AttributeError):
            pass  # a broken log stream must never stop the device


def debug(source, message):
    log("debug", source, message)


def info(source, message):
    log("info", source, message)


def warn(source, message):
    log("warn", source, message)


def error(source, message):
    log("error", source, message)


def tail(count=20):
    """The last `count` lines kept, oldest first."""
    ring, end = _ring[0], _ring_used[0]
    if ring is None:
        return []
    start = end
    for _ in range(count):
        if start <= 0:
            break
        start = ring.rfind(b"\n", 0, start - 1) + 1  # the line before; 0 when there is none
    return bytes(memoryview(ring)[start:end]).decode().split("\n")[:-1] if start < end else []
