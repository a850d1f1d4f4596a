"""One frame-protocol stream (a TCP connection or a serial line) served against a sink.

`run(beat)` is the link's task: it waits (without blocking other tasks) until the stream has
bytes, reads what is there (`on_readable`, a bounded amount per turn so that a fast source
cannot starve the others), sends the responses, and applies the frame and idle timeouts
(`step`). One receive buffer of `chunk_bytes` per link is all the RAM a frame costs.
"""

from modgate import log
from modgate.compat import ticks_diff, ticks_ms
from modgate.errors import LinkClosed, LinkTimeout
from modgate.ingest.frameproto import FrameReceiver
from modgate.port import aio

_READS_PER_CALL = 16  # bounded work per turn, so several links and a delivery share the loop
POLL_MS = 250  # the longest wait for input before the timeouts are looked at again
UNPOLLABLE_MS = 5
MAX_FRAME_BYTES = 16 << 20  # the frames_max_bytes setting's default (tests/unit/test_config.py)


class FrameLink:
    def __init__(self, stream, sink, source_id, max_frame_bytes=MAX_FRAME_BYTES, max_context_bytes=1024,
                 frame_timeout_ms=2000, idle_timeout_ms=60000, chunk_bytes=4096,
                 send_timeout_ms=5000, close_on_idle=True, recent=None, buf=None):
        self.stream = stream
        self.source_id = source_id
        self.receiver = FrameReceiver(sink, source_id, max_frame_bytes, max_context_bytes, recent)
        self.frame_timeout_ms = frame_timeout_ms
        self.idle_timeout_ms = idle_timeout_ms
        self.send_timeout_ms = send_timeout_ms
        self.close_on_idle = close_on_idle
        # The caller's buffer (a pool of them, kept for the device's life), else a new one.
        self.buf = buf if buf is not None else bytearray(chunk_bytes)
        self.view = memoryview(self.buf)
        self.last_rx = ticks_ms()
        self.idle_reported = False
        self.closed = False

    def pollable(self):
        """What the link's task waits on for input (None: the stream must be looked at)."""
        return self.stream.pollable()

    async def run(self, beat, stop=None):
        """Serve the stream until it closes (or `stop()` returns true); `beat()` reports
        progress to the device's supervisor at least every POLL_MS."""
        target = self.pollable()
        while not self.closed and not (stop and stop()):
            beat()
            if target is None:
                await aio.sleep_ms(UNPOLLABLE_MS)  # a UART poll cannot watch: look every few ms
                ready = self.stream.readable(0)
            else:
                ready = await aio.readable(target, POLL_MS)
            if ready:
                await self.on_readable()
            await self.step()

    async def on_readable(self):
        """Read what is there (up to a bound), feed it, send responses. False once closed."""
        if self.closed:
            return False
        size = len(self.buf)
        for _ in range(_READS_PER_CALL):
            try:
                n = self.stream.recv_now(self.view, size)
            except LinkClosed as exc:
                self._close("lost: " + str(exc))
                return False
            if n is None:
                break
            if n == 0:
                self._close("closed by peer")
                return False
            self.last_rx = ticks_ms()
            self.idle_reported = False
            self.receiver.feed(self.buf, 0, n)
            if not await self._flush():
                return False
            if n < size:
                break
        return True

    async def step(self):
        """Apply the frame and idle timeouts. False once closed."""
        if self.closed:
            return False
        idle = ticks_diff(ticks_ms(), self.last_rx)
        if self.receiver.in_frame() and idle > self.frame_timeout_ms:
            self.receiver.timeout()
            if not await self._flush():
                return False
        if idle > self.idle_timeout_ms and not self.idle_reported:
            if self.close_on_idle:
                self._close("idle for " + str(idle) + " ms")
                return False
            self.idle_reported = True
            log.info("ingest", self.source_id + ": idle for " + str(idle) + " ms")
            self.receiver.close()
        return True

    def close(self):
        self._close("closed by device")

    async def _flush(self):
        out = self.receiver.outbox
        if not out:
            return True
        try:
            await self.stream.send_all(out, self.send_timeout_ms)
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
