"""Frame protocol v1 receiver (modgate.ingest.frameproto) against a fake sink."""

import unittest

from ingest_fakes import FakeSink, Rng, crc32, frame, parse_responses, pixels
from modgate.compat import MICROPYTHON, ticks_diff, ticks_ms
from modgate.errors import SpoolFull
from modgate.ingest import frameproto as fp

# docs/frame-protocol.md "Example": 2x2 GRAY8, sequence 7, pixels 00 40 80 FF, no context.
EXAMPLE = bytes([
    0x4D, 0x47, 0x46, 0x52,  # magic MGFR
    0x01, 0x00, 0x00, 0x00,  # version 1, kind single, flags 0
    0x07, 0x00, 0x00, 0x00,  # sequence 7
    0x00, 0x00, 0x00, 0x00,  # series_id 0
    0x00, 0x00, 0x00, 0x00,  # frame_index 0
    0x02, 0x00, 0x02, 0x00,  # width 2, height 2
    0x01, 0x08, 0x00, 0x00,  # GRAY8, bits_stored 8, reserved
    0x00, 0x00, 0x00, 0x00,  # context_length 0
    0x04, 0x00, 0x00, 0x00,  # payload_length 4
    0xB1, 0xFD, 0x2C, 0x76,  # header_crc
    0x00, 0x40, 0x80, 0xFF,  # payload
    0x6F, 0x25, 0x39, 0x03,  # CRC-32 of header + payload
])


def run(receiver, data, chunk=None):
    buf = bytearray(data)
    if chunk is None:
        receiver.feed(buf, 0, len(buf))
    else:
        for start in range(0, len(buf), chunk):
            receiver.feed(buf, start, min(len(buf), start + chunk))
    out = parse_responses(bytes(receiver.outbox))
    receiver.outbox[:] = b""
    return out


class TestCodecs(unittest.TestCase):
    def test_crc_check_value(self):
        self.assertEqual(crc32(b"123456789"), 0xCBF43926)

    def test_example_matches_builder_and_encoder(self):
        self.assertEqual(frame(7, b"\x00\x40\x80\xff", 2, 2), EXAMPLE)
        head = fp.encode_header(bytearray(40), "single", 7, 0, 0, 2, 2, "GRAY8", 8, 0, 4)
        self.assertEqual(bytes(head), EXAMPLE[:40])

    def test_response_layout(self):
        msg = fp.encode_response(fp.ACK, 7, text="1.2.3")
        self.assertEqual(msg[:20], b"MGRS\x01\x01\x00\x00\x07\x00\x00\x00\x00\x00\x00\x00\x05\x00\x00\x00")
        self.assertEqual(parse_responses(msg), [(1, 0, 7, 0, "1.2.3")])

    def test_header_checks(self):
        bad = bytearray(frame(1, b"\x00" * 6, 2, 2)[:40])  # payload_length 6 != 2*2
        bad[36:40] = crc32(bytes(bad[:36])).to_bytes(4, "little")
        self.assertEqual(fp.decode_header(bad)["problem"], "payload_length does not match geometry")
        self.assertIsNone(fp.decode_header(bytearray(40)))


class TestReceiver(unittest.TestCase):
    def setUp(self):
        self.sink = FakeSink()
        self.rx = fp.FrameReceiver(self.sink, "test", max_frame_bytes=4096, max_context_bytes=256)

    def test_example_acked_in_every_chunking(self):
        for chunk in (None, 1, 3, 7, 41):
            sink = FakeSink()
            rx = fp.FrameReceiver(sink, "t")
            out = run(rx, EXAMPLE, chunk)
            self.assertEqual(out, [(fp.ACK, 0, 7, 0, "1.2.826.0.1.3680043.10.1.1")])
            self.assertEqual(sink.stored[0][1], b"\x00\x40\x80\xff")
            self.assertEqual(sink.stored[0][0]["pixel_format"], "GRAY8")

    def test_payload_streams_in_chunks(self):
        data = frame(1, pixels(1, 2000), 40, 25, "GRAY16", bits=12)
        out = run(self.rx, data, 300)
        self.assertEqual(out[0][0], fp.ACK)
        header, payload = self.sink.stored[0]
        self.assertEqual((header["width"], header["height"], header["bits_stored"]), (40, 25, 12))
        self.assertEqual(payload, pixels(1, 2000))

    def test_context_reaches_sink(self):
        ctx = b'{"patient_name": "Doe^Jane", "modality": "XA", "study_description": "\xc3\xa9"}'
        run(self.rx, frame(2, pixels(2, 4), 2, 2, context=ctx), 5)
        self.assertEqual(self.sink.stored[0][0]["context"]["patient_name"], "Doe^Jane")
        self.assertEqual(self.sink.stored[0][0]["context"]["study_description"], "\u00e9")

    def test_bad_crc_nak_and_nothing_stored(self):
        data = bytearray(frame(3, pixels(3, 16), 4, 4))
        data[45] ^= 0x10
        self.assertEqual(run(self.rx, data), [(fp.NAK, fp.NAK_CRC, 3, 0, "CRC mismatch")])
        self.assertEqual(self.sink.stored, [])
        self.assertEqual((self.sink.aborted, self.sink.open), (1, 0))

    def test_garbage_then_frame(self):
        data = b"MGF" + b"MGFRxx" + b"\x00" * 50 + b"MG" + EXAMPLE
        self.assertEqual(run(self.rx, data, 2)[0][:3], (fp.ACK, 0, 7))
        self.assertEqual(len(self.sink.stored), 1)

    def test_corrupt_header_resyncs_to_next_frame(self):
        bad = bytearray(frame(5, pixels(5, 16), 4, 4))
        bad[33] ^= 0xFF  # payload_length: header CRC catches it, no wait for gigabytes
        out = run(self.rx, bytes(bad) + EXAMPLE)
        self.assertEqual([r[2] for r in out], [7])

    def test_truncated_frame_times_out(self):
        data = frame(8, pixels(8, 16), 4, 4)
        run(self.rx, data[:30])
        self.assertTrue(self.rx.in_frame())
        self.rx.timeout()
        self.assertEqual(parse_responses(bytes(self.rx.outbox)), [])  # header incomplete: silent
        self.rx.outbox[:] = b""
        run(self.rx, data[:50])
        self.rx.timeout()
        self.assertEqual(parse_responses(bytes(self.rx.outbox))[0][:3], (fp.NAK, fp.NAK_TIMEOUT, 8))
        self.rx.outbox[:] = b""
        self.assertEqual(run(self.rx, EXAMPLE)[0][0], fp.ACK)
        self.assertEqual(len(self.sink.stored), 1)

    def test_too_large_is_drained_then_nacked(self):
        data = frame(9, bytes(5000), 100, 50)
        out = run(self.rx, data + EXAMPLE, 512)
        self.assertEqual([(r[0], r[1], r[2]) for r in out], [(fp.NAK, fp.NAK_TOO_LARGE, 9), (fp.ACK, 0, 7)])
        self.assertEqual(self.sink.open, 0)

    def test_busy_and_refused(self):
        self.sink.busy_ms = 250
        self.assertEqual(run(self.rx, EXAMPLE)[0][:4], (fp.BUSY, 0, 7, 250))
        self.sink.busy_ms = 0
        self.sink.refuse = "no"
        self.assertEqual(run(self.rx, EXAMPLE)[0][:3], (fp.NAK, fp.NAK_REFUSED, 7))
        self.assertEqual(self.sink.stored, [])

    def test_spool_full_from_sink_is_busy(self):
        def full(header):
            raise SpoolFull("spool at high watermark")

        self.sink.begin_frame = full
        self.assertEqual(run(self.rx, EXAMPLE)[0][:4], (fp.BUSY, 0, 7, 1000))
        self.assertEqual(self.sink.stored, [])

    def test_no_heap_for_a_frame_is_busy_and_its_resend_is_stored(self):
        begin = self.sink.begin_frame
        calls = []

        def short(header):
            calls.append(1)
            if len(calls) == 1:
                raise MemoryError("memory allocation failed, allocating 216 bytes")
            return begin(header)

        self.sink.begin_frame = short
        self.assertEqual(run(self.rx, EXAMPLE)[0], (fp.BUSY, 0, 7, 300, "no memory"))
        self.assertEqual(self.sink.stored, [])
        self.assertEqual(run(self.rx, EXAMPLE)[0][:3], (fp.ACK, 0, 7))  # the resend finds room
        self.assertEqual(len(self.sink.stored), 1)

    def test_bad_context_and_geometry(self):
        out = run(self.rx, frame(10, pixels(10, 4), 2, 2, context=b"[1, 2]"))
        self.assertEqual(out[0][:3], (fp.NAK, fp.NAK_BAD_CONTEXT, 10))
        head = bytearray(frame(11, pixels(11, 4), 2, 2))
        head[24] = 9  # unknown pixel format, header CRC recomputed
        head[36:40] = crc32(bytes(head[:36])).to_bytes(4, "little")
        out = run(self.rx, bytes(head) + EXAMPLE)
        self.assertEqual([(r[0], r[1], r[2]) for r in out], [(fp.NAK, fp.NAK_BAD_HEADER, 11), (fp.ACK, 0, 7)])

    def test_resend_after_lost_ack_is_not_stored_twice(self):
        first = run(self.rx, EXAMPLE)
        again = run(self.rx, EXAMPLE)
        self.assertEqual(first, again)
        self.assertEqual(len(self.sink.stored), 1)

    def test_series_and_bare_end(self):
        data = b""
        for i in range(3):
            kind = "series_start" if i == 0 else "series_frame"
            data += frame(20 + i, pixels(i, 8), 4, 2, kind=kind, series_id=77, index=i)
        data += frame(23, b"", 4, 2, kind="series_end", series_id=77, index=3)
        out = run(self.rx, data, 13)
        self.assertEqual([r[0] for r in out], [fp.ACK] * 4)
        kinds = [h["kind"] for h, _ in self.sink.stored]
        self.assertEqual(kinds, ["series_start", "series_frame", "series_frame", "series_end"])
        self.assertEqual(self.sink.stored[3][0]["payload_length"], 0)
        self.rx.close()
        self.assertEqual(self.sink.lost, ["test"])


def fuzz_stream(rng, seq0):
    """A stream of segments and what each should produce: ('ack', seq) | ('nak', seq) | None."""
    parts = []
    seq = seq0
    for _ in range(1 + rng.below(6)):
        seq += 1
        w = 1 + rng.below(12)
        h = 1 + rng.below(6)
        fmt = ("GRAY8", "GRAY16", "RGB888")[rng.below(3)]
        bpp = {"GRAY8": 1, "GRAY16": 2, "RGB888": 3}[fmt]
        ctx = b'{"patient_id": "P' + str(seq).encode() + b'"}' if rng.below(3) == 0 else b""
        data = bytearray(frame(seq, pixels(seq, w * h * bpp), w, h, fmt, context=ctx))
        fault = rng.below(8)
        if fault == 0:  # garbage before an intact frame
            parts.append((rng.bytes(rng.below(80)) + (b"MGFR" if rng.below(2) else b""), None, False))
            parts.append((bytes(data), ("ack", seq), False))
        elif fault == 1:  # bit flip after the header: NAK (CRC or a refusal), never stored
            i = 40 + rng.below(len(data) - 40)
            data[i] ^= 1 << rng.below(8)
            parts.append((bytes(data), ("nak", seq), False))
        elif fault == 2:  # bit flip in the header: silent resync
            i = rng.below(40)
            data[i] ^= 1 << rng.below(8)
            parts.append((bytes(data), None, False))
        elif fault == 3:  # truncated, then the line goes quiet (frame timeout)
            cut = rng.below(len(data) - 1) + 1
            parts.append((bytes(data[:cut]), ("nak", seq) if cut >= 40 else None, True))
        else:
            parts.append((bytes(data), ("ack", seq), False))
    return parts, seq


class TestFuzz(unittest.TestCase):
    # 10,000 seeded streams. On MicroPython the seeds run in order until a time budget is spent
    # (all 10,000 on x86-64; a prefix of at least 500 under QEMU, to keep the suite quick).
    STREAMS = 10000
    BUDGET_MS = 20000 if MICROPYTHON else 0
    MIN_STREAMS = 500

    def test_seeded_fuzz(self):
        seq = 0
        started = ticks_ms()
        for seed in range(self.STREAMS):
            spent = ticks_diff(ticks_ms(), started)
            if self.BUDGET_MS and seed >= self.MIN_STREAMS and spent > self.BUDGET_MS:
                break
            rng = Rng(seed)
            sink = FakeSink()
            rx = fp.FrameReceiver(sink, "fuzz", max_frame_bytes=1 << 16, max_context_bytes=64)
            parts, seq = fuzz_stream(rng, seq)
            expect = []
            for data, outcome, then_timeout in parts:
                chunk = 1 + rng.below(64)
                buf = bytearray(data)
                for start in range(0, len(buf), chunk):
                    rx.feed(buf, start, min(len(buf), start + chunk))
                if then_timeout:
                    rx.timeout()
                if outcome:
                    expect.append(outcome)
            rx.timeout()
            got = parse_responses(bytes(rx.outbox))
            acked = [r[2] for r in got if r[0] == fp.ACK]
            want_ack = [s for kind, s in expect if kind == "ack"]
            want_nak = [s for kind, s in expect if kind == "nak"]
            # Every intact frame is accepted, whatever garbage came before it.
            self.assertEqual(acked, want_ack, "seed %d" % seed)
            for r in got:
                if r[0] == fp.NAK:
                    self.assertIn(r[2], want_nak, "seed %d" % seed)
            # Nothing from a corrupt frame is stored, and every stored payload is the one sent.
            self.assertEqual(len(sink.stored), len(want_ack), "seed %d" % seed)
            for header, payload in sink.stored:
                self.assertIn(header["sequence"], want_ack)
                self.assertEqual(payload, pixels(header["sequence"], header["payload_length"]))
            self.assertEqual(sink.open, 0, "seed %d" % seed)
