"""Test-pattern source: frames from modgate.testpattern through the same sink path as the inputs,
for commissioning a board with nothing attached (console `test-pattern send`, or periodic)."""

from modgate import log
from modgate.compat import ticks_add, ticks_diff, ticks_ms
from modgate.testpattern import Pattern

DEFAULT_FORMAT = "GRAY16"
DEFAULT_SIZE = (256, 256)
DEFAULT_BITS = 12


def _setting(config, key, default):
    # Test-pattern settings are optional: a config without them uses the defaults.
    try:
        value = config.get(key) if config is not None else None
    except Exception:
        value = None
    return default if value is None or value == "" else value


class PatternSource:
    """Sends the deterministic pattern as single frames or as one series of `series` frames.
    `interval_ms` 0 sends on demand only (`send()`); otherwise `step()` sends when due."""

    def __init__(self, sink, fmt=DEFAULT_FORMAT, width=DEFAULT_SIZE[0], height=DEFAULT_SIZE[1],
                 bits_stored=None, interval_ms=0, count=0, series=0, context=None):
        if bits_stored is None and fmt == "GRAY16":
            bits_stored = DEFAULT_BITS
        self.sink = sink
        self.pattern = Pattern(fmt, width, height, bits_stored)
        self.fmt = fmt
        self.width = width
        self.height = height
        self.bits_stored = bits_stored or 8
        self.payload = self.pattern.layout.input_frame_bytes
        self.interval_ms = interval_ms
        self.count = count
        self.series = series
        self.context = context
        self.sent = 0
        self.due = ticks_ms()

    def step(self):
        """Send the next frame if it is due (and the spool accepts); return its UID or None."""
        if not self.interval_ms or (self.count and self.sent >= self.count):
            return None
        if ticks_diff(ticks_ms(), self.due) < 0 or self.sink.busy():
            return None
        self.due = ticks_add(self.due, self.interval_ms)
        return self.send()

    def send(self):
        """Send one frame now; return the SOP Instance UID it went into (durable on return)."""
        index = self.sent
        kind = "single"
        series_id = 0
        position = 0
        if self.series > 1:
            position = index % self.series
            series_id = 1 + index // self.series
            kind = "series_frame"
            if position == 0:
                kind = "series_start"
            elif position == self.series - 1:
                kind = "series_end"
        header = {
            "version": 1, "kind": kind, "sequence": index, "series_id": series_id, "frame_index": position,
            "width": self.width, "height": self.height, "pixel_format": self.fmt,
            "bits_stored": self.bits_stored, "payload_length": self.payload,
            "context": self.context if position == 0 else None, "source": "testpattern",
        }
        target = self.sink.begin_frame(header)
        try:
            for y in range(self.height):
                target.write(self.pattern.row(y, index))
        except Exception:
            self.sink.abort_frame(target)
            raise
        uid = self.sink.commit_frame(target)
        self.sent += 1
        log.info("ingest", "test pattern frame " + str(index) + " stored as " + uid)
        return uid


def send_test_pattern(sink, config=None, frame=0):
    """One test-pattern frame through `sink`; returns its SOP Instance UID once it is durable.
    Optional config keys: testpattern_format, testpattern_width, testpattern_height,
    testpattern_bits_stored."""
    source = PatternSource(
        sink,
        _setting(config, "testpattern_format", DEFAULT_FORMAT),
        _setting(config, "testpattern_width", DEFAULT_SIZE[0]),
        _setting(config, "testpattern_height", DEFAULT_SIZE[1]),
        _setting(config, "testpattern_bits_stored", None),
    )
    source.sent = frame
    return source.send()
