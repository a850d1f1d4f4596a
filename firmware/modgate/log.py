"""Device log: one line per event, kept in a small ring for the console's `log tail` and written
to the board's log stream (stderr in the emulator, the console UART's debug channel on boards)."""

import sys

from modgate.port import clock

LEVELS = ("debug", "info", "warn", "error")
_ring = []
_ring_size = [64]
_stream = [getattr(sys, "stderr", None)]
_min_level = [1]


def configure(ring_size=64, stream=None, level="info"):
    _ring_size[0] = ring_size
    if stream is not None:
        _stream[0] = stream
    _min_level[0] = LEVELS.index(level)
    del _ring[_ring_size[0] :]


def _stamp():
    t = clock.now()
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % t


def log(level, source, message):
    """Record `message` from `source` (a short layer name: net, spool, ingest...)."""
    rank = LEVELS.index(level)
    if rank < _min_level[0]:
        return
    line = _stamp() + " " + level.upper() + " " + source + ": " + message
    _ring.append(line)
    if len(_ring) > _ring_size[0]:
        _ring.pop(0)
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
    return _ring[-count:] if count > 0 else []
