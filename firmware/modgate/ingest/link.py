"""One frame-protocol stream (a TCP connection or a serial line) served against a sink.

Non-blocking: the owner's poll loop calls `on_readable()` when the stream has bytes and `step()`
every iteration (timeouts). `serve()` is the same loop for a link that owns its thread of control
(the serial job, tests). One receive buffer of `chunk_bytes` per link is all the RAM a frame costs.
"""

from modgate import log
from modgate.compat import ticks_diff, ticks_ms
from modgate.errors import LinkClosed, LinkTimeout
from modgate.ingest.frameproto import FrameReceiver

_READS_PER_CALL = 16  # bounded work per call, so several links share one loop fairly


class FrameLink:
    def __init__(self, stream, sink, source_id, max_frame_bytes=8 << 20, max_context_bytes=1024,
                 frame_timeout_ms=2000, idle_timeout_ms=60000, chunk_bytes=4096,
                 send_timeout_ms=5000, close_on_idle=True, recent=None):
        self.stream = stream
        self.source_id = source_id
        self.receiver = FrameReceiver(sink, source_id, max_frame_bytes, max_context_bytes, recent)
        self.frame_timeout_ms = frame_timeout_ms
        self.idle_timeout_ms = idle_timeout_ms
        self.send_timeout_ms = send_timeout_ms
        self.close_on_idle = close_on_idle
        self.buf = bytearray(chunk_bytes)
        self.view = memoryview(self.buf)
        self.last_rx = ticks_ms()
        self.idle_reported = False
        self.closed = False

    def pollable(self):
        """The object to register with select.poll for POLLIN."""
        getter = getattr(self.stream, "pollable", None)
        return getter() if getter else self.stream.sock

    def on_readable(self):
        """Read what is there (up to a bound), feed it, send responses. False once closed."""
        if self.closed:
            return False
        size = len(self.buf)
        for _ in range(_READS_PER_CALL):
            try:
                n = self.stream.recv_into(self.view, size, 0)
            except LinkTimeout:
                break
            except LinkClosed as exc:
                self._close("lost: " + str(exc))
                return False
            if n == 0:
                self._close("closed by peer")
                return False
            self.last_rx = ticks_ms()
            self.idle_reported = False
            self.receiver.feed(self.buf, 0, n)
            if not self._flush():
                return False
            if n < size:
                break
        return True

    def step(self):
        """Apply the frame and idle timeouts. False once closed."""
        if self.closed:
            return False
        idle = ticks_diff(ticks_ms(), self.last_rx)
        if self.receiver.in_frame() and idle > self.frame_timeout_ms:
            self.receiver.timeout()
            if not self._flush():
                return False
        if idle > self.idle_timeout_ms and not self.idle_reported:
            if self.close_on_idle:
                self._close("idle for " + str(idle) + " ms")
                return False
            self.idle_reported = True
            log.info("ingest", self.source_id + ": idle for " + str(idle) + " ms")
            self.receiver.close()
        return True

    def serve(self, stop=None, poll_ms=50):
        """Serve until the stream closes or `stop()` returns true."""
        while not self.closed and not (stop and stop()):
            if self.stream.readable(poll_ms):
                self.on_readable()
            self.step()

    def close(self):
        self._close("closed by device")

    def _flush(self):
        out = self.receiver.outbox
        if not out:
            return True
        try:
            self.stream.send_all(out, self.send_timeout_ms)
        except (LinkClosed, LinkTimeout) as exc:
            self._close("response not delivered: " + str(exc))
            return False
        finally:
            out[:] = b""
        return True

    def _close(self, why):
        if self.closed:
            return
        self.closed = True
        log.info("ingest", self.source_id + ": " + why)
        self.receiver.close()
        self.stream.close()
