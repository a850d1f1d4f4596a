"""FrameLink (timeouts, closing) over a scripted fake stream, and the test-pattern source."""

import unittest

import support
from ingest_fakes import FakeSink, frame, parse_responses, pixels
from modgate.compat import sleep_ms
from modgate.errors import LinkClosed
from modgate.ingest import frameproto as fp
from modgate.ingest.link import FrameLink
from modgate.ingest.testsource import PatternSource, send_test_pattern
from modgate.port.uart import open_serial as uart_stream
from modgate.testpattern import Pattern


class ScriptedStream:
    """Delivers `chunks` one per read; then idles (LinkTimeout) or reports the peer closed."""

    def __init__(self, chunks, close_after=False):
        self.chunks = list(chunks)
        self.close_after = close_after
        self.sent = bytearray()
        self.closed = False
        self.fail_send = False

    def recv_now(self, buf, nbytes):
        if not self.chunks:
            return 0 if self.close_after else None
        data = self.chunks.pop(0)
        n = min(nbytes, len(data))
        buf[0:n] = data[:n]
        if n < len(data):
            self.chunks.insert(0, data[n:])
        return n

    async def send_all(self, data, timeout_ms):
        if self.fail_send:
            raise LinkClosed("gone")
        self.sent += data

    def readable(self, timeout_ms=0):
        return bool(self.chunks) or self.close_after

    def close(self):
        self.closed = True

    def pollable(self):
        return self


class TestFrameLink(unittest.TestCase):
    def test_frames_in_small_reads_and_peer_close(self):
        data = frame(1, pixels(1, 300), 30, 10) + frame(2, pixels(2, 300), 30, 10)
        stream = ScriptedStream([data[i:i + 100] for i in range(0, len(data), 100)], close_after=True)
        sink = FakeSink()
        link = FrameLink(stream, sink, "s1", chunk_bytes=64)
        while support.run(link.on_readable()):
            pass
        self.assertEqual([r[2] for r in parse_responses(bytes(stream.sent))], [1, 2])
        self.assertTrue(stream.closed and link.closed)
        self.assertEqual(sink.lost, ["s1"])
        self.assertEqual(len(sink.stored), 2)

    def test_frame_timeout_then_idle_close(self):
        data = frame(5, pixels(5, 64), 8, 8)
        stream = ScriptedStream([data[:60]])
        sink = FakeSink()
        link = FrameLink(stream, sink, "s2", frame_timeout_ms=30, idle_timeout_ms=120)
        support.run(link.on_readable())
        self.assertTrue(support.run(link.step()))
        sleep_ms(60)
        self.assertTrue(support.run(link.step()))
        self.assertEqual(parse_responses(bytes(stream.sent))[0][:3], (fp.NAK, fp.NAK_TIMEOUT, 5))
        self.assertEqual((sink.aborted, sink.open), (1, 0))
        sleep_ms(100)
        self.assertFalse(support.run(link.step()))
        self.assertTrue(stream.closed)
        self.assertEqual(sink.lost, ["s2"])

    def test_serial_idle_reports_source_lost_but_stays_open(self):
        stream = ScriptedStream([])
        sink = FakeSink()
        link = FrameLink(stream, sink, "uart", idle_timeout_ms=20, close_on_idle=False)
        sleep_ms(40)
        self.assertTrue(support.run(link.step()))
        self.assertTrue(support.run(link.step()))
        self.assertEqual(sink.lost, ["uart"])  # once per quiet spell
        self.assertFalse(stream.closed)

    def test_response_undeliverable_closes(self):
        stream = ScriptedStream([frame(9, pixels(9, 4), 2, 2)])
        stream.fail_send = True
        link = FrameLink(stream, FakeSink(), "s3")
        self.assertFalse(support.run(link.on_readable()))
        self.assertTrue(stream.closed)


class TestLinkTask(unittest.TestCase):
    def test_run_serves_a_uart_that_poll_cannot_watch(self):
        data = frame(6, pixels(6, 64), 8, 8)
        uart = FakeUart(data)
        uart_stream_obj = uart_stream(uart)
        self.assertIsNone(uart_stream_obj.pollable())  # the fake has no ioctl: looked at with any()
        sink = FakeSink()
        link = FrameLink(uart_stream_obj, sink, "uart:2", close_on_idle=False)
        beats = []
        support.run(link.run(lambda: beats.append(1), stop=lambda: len(sink.stored) == 1 and len(beats) > 2))
        self.assertEqual([r[:3] for r in parse_responses(bytes(uart.tx))], [(fp.ACK, 0, 6)])
        self.assertGreater(len(beats), 2)


class FakeUart:
    """machine.UART with timeout=0, as boards/common builds it: any(), read(), write()."""

    def __init__(self, rx):
        self.rx = bytes(rx)
        self.tx = bytearray()

    def any(self):
        return len(self.rx)

    def read(self, n):
        if not self.rx:
            return None
        out, self.rx = self.rx[:n], self.rx[n:]
        return out

    def write(self, data):
        self.tx += data
        return len(data)


class TestUartLink(unittest.TestCase):
    def test_machine_uart_carries_frames(self):
        data = frame(3, pixels(3, 600), 30, 20) + frame(4, pixels(4, 600), 30, 20)
        uart = FakeUart(data)
        sink = FakeSink()
        link = FrameLink(uart_stream(uart), sink, "uart:1", chunk_bytes=256, close_on_idle=False)
        while uart.any():
            self.assertTrue(support.run(link.on_readable()))
        self.assertEqual([r[:3] for r in parse_responses(bytes(uart.tx))], [(fp.ACK, 0, 3), (fp.ACK, 0, 4)])
        self.assertEqual(sink.stored[1][1], pixels(4, 600))
        self.assertTrue(support.run(link.on_readable()))  # nothing waiting: still open


class TestTestPattern(unittest.TestCase):
    def test_one_frame_matches_pattern(self):
        sink = FakeSink()
        uid = send_test_pattern(sink, None, frame=2)
        header, payload = sink.stored[0]
        self.assertEqual(uid, "1.2.826.0.1.3680043.10.1.1")
        got = (header["pixel_format"], header["bits_stored"], header["source"])
        self.assertEqual(got, ("GRAY16", 12, "testpattern"))
        p = Pattern("GRAY16", 256, 256, 12)
        self.assertEqual(payload[:512], bytes(p.row(0, 2)))
        self.assertEqual(len(payload), 256 * 256 * 2)

    def test_periodic_series(self):
        sink = FakeSink()
        src = PatternSource(sink, "GRAY8", 16, 4, interval_ms=1, count=3, series=3)
        for _ in range(50):
            src.step()
            sleep_ms(2)
        self.assertEqual([h["kind"] for h, _ in sink.stored], ["series_start", "series_frame", "series_end"])
