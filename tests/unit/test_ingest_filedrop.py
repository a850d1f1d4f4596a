"""File drop (modgate.ingest.filedrop): image parsing, stable-file detection, retire-after-durable."""

import json
import struct
import unittest

import support
from ingest_fakes import FakeSink
from modgate.errors import FrameError
from modgate.ingest.filedrop import FileDrop
from modgate.port import fs


def pgm(width, height, maxval, data, comment=b""):
    size = str(width).encode() + b" " + str(height).encode()
    return b"P5\n" + comment + size + b"\n" + str(maxval).encode() + b"\n" + data


def bmp(width, height, bpp, rows_bottom_up, palette=b"", top_down=False):
    """A BITMAPINFOHEADER BMP; `rows_bottom_up` are the unpadded stored rows in file order."""
    stride = (width * bpp // 8 + 3) & ~3
    pixels = b"".join(r + bytes(stride - len(r)) for r in rows_bottom_up)
    offset = 14 + 40 + len(palette)
    head = b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset)
    dib = struct.pack("<IiiHHIIiiII", 40, width, -height if top_down else height, 1, bpp, 0, len(pixels),
                      2835, 2835, len(palette) // 4, 0)
    return head + dib + palette + pixels


class TestFileDrop(unittest.TestCase):
    def setUp(self):
        self.dir = support.scratch_dir("drop")
        self.addCleanup(support.remove_tree, self.dir)
        self.sink = FakeSink()
        self.drop = FileDrop(self.sink, self.dir)

    def put(self, name, data):
        with open(fs.join(self.dir, name), "wb") as f:
            f.write(data)

    def two_scans(self):
        return support.run(self.drop.scan()) + support.run(self.drop.scan())

    def test_pgm8_with_comment_stored_then_removed(self):
        self.put("a.pgm", pgm(3, 2, 255, bytes([1, 2, 3, 4, 5, 6]), b"# scanner 7\n"))
        self.assertEqual(support.run(self.drop.scan()), 0)  # seen once: maybe still being written
        self.assertEqual(support.run(self.drop.scan()), 1)
        header, payload = self.sink.stored[0]
        self.assertEqual((header["pixel_format"], header["width"], header["height"]), ("GRAY8", 3, 2))
        self.assertEqual(payload, bytes([1, 2, 3, 4, 5, 6]))
        self.assertEqual(header["source"], "file:a.pgm")
        self.assertEqual(fs.listdir(self.dir), [])

    def test_pgm16_is_little_endian_with_bits_stored(self):
        self.put("b.pgm", pgm(2, 1, 4095, bytes([0x0F, 0xFF, 0x01, 0x02])))
        self.two_scans()
        header, payload = self.sink.stored[0]
        self.assertEqual((header["pixel_format"], header["bits_stored"]), ("GRAY16", 12))
        self.assertEqual(payload, bytes([0xFF, 0x0F, 0x02, 0x01]))

    def test_ppm_rgb(self):
        self.put("c.ppm", b"P6 2 1 255\n" + bytes([1, 2, 3, 4, 5, 6]))
        self.two_scans()
        self.assertEqual(self.sink.stored[0][0]["pixel_format"], "RGB888")
        self.assertEqual(self.sink.stored[0][1], bytes([1, 2, 3, 4, 5, 6]))

    def test_bmp24_bottom_up_padded_to_rgb_top_down(self):
        bottom = bytes([3, 2, 1, 6, 5, 4, 9, 8, 7])      # BGR of the bottom row
        top = bytes([30, 20, 10, 60, 50, 40, 90, 80, 70])
        self.put("d.bmp", bmp(3, 2, 24, [bottom, top]))
        self.two_scans()
        header, payload = self.sink.stored[0]
        self.assertEqual((header["pixel_format"], header["width"], header["height"]), ("RGB888", 3, 2))
        self.assertEqual(payload, bytes([10, 20, 30, 40, 50, 60, 70, 80, 90, 1, 2, 3, 4, 5, 6, 7, 8, 9]))

    def test_bmp32_top_down(self):
        self.put("e.bmp", bmp(1, 2, 32, [bytes([3, 2, 1, 0]), bytes([6, 5, 4, 0])], top_down=True))
        self.two_scans()
        self.assertEqual(self.sink.stored[0][1], bytes([1, 2, 3, 4, 5, 6]))

    def test_bmp8_grey_palettes(self):
        identity = b"".join(bytes([i, i, i, 0]) for i in range(256))
        inverted = b"".join(bytes([255 - i, 255 - i, 255 - i, 0]) for i in range(256))
        self.put("f.bmp", bmp(2, 1, 8, [bytes([7, 200])], identity))
        self.put("g.bmp", bmp(2, 1, 8, [bytes([7, 200])], inverted))
        self.two_scans()
        got = dict((h["source"], p) for h, p in self.sink.stored)
        self.assertEqual(got["file:f.bmp"], bytes([7, 200]))
        self.assertEqual(got["file:g.bmp"], bytes([248, 55]))

    def test_colour_palette_and_junk_set_aside(self):
        colour = b"".join(bytes([i, 0, 255 - i, 0]) for i in range(256))
        self.put("h.bmp", bmp(2, 1, 8, [bytes([1, 2])], colour))
        self.put("i.pgm", b"P2 2 2 255\n1 2 3 4\n")
        self.two_scans()
        self.assertEqual(self.sink.stored, [])
        self.assertEqual(fs.listdir(fs.join(self.dir, "failed")), ["h.bmp", "i.pgm"])

    def test_raw_waits_for_sidecar_then_moves_both(self):
        self.drop.done_dir = fs.join(self.dir, "done")
        self.put("j.raw", bytes([1, 0, 2, 0, 3, 0, 4, 0]))
        self.two_scans()
        self.assertEqual(self.sink.stored, [])  # no sidecar yet
        side = {"width": 2, "height": 2, "pixel_format": "GRAY16", "bits_stored": 10,
                "context": {"patient_id": "P9", "modality": "OT"}}
        self.put("j.json", json.dumps(side).encode())
        self.assertEqual(self.two_scans(), 1)
        header, payload = self.sink.stored[0]
        self.assertEqual((header["bits_stored"], header["context"]["patient_id"]), (10, "P9"))
        self.assertEqual(payload, bytes([1, 0, 2, 0, 3, 0, 4, 0]))
        self.assertEqual(fs.listdir(fs.join(self.dir, "done")), ["j.json", "j.raw"])

    def test_growing_file_is_not_taken(self):
        data = pgm(4, 4, 255, bytes(16))
        self.put("k.pgm", data[:10])
        support.run(self.drop.scan())
        self.put("k.pgm", data[:20])
        self.assertEqual(support.run(self.drop.scan()), 0)
        self.put("k.pgm", data)
        self.assertEqual(self.two_scans(), 1)

    def test_file_kept_until_durable(self):
        self.put("l.pgm", pgm(1, 1, 255, b"\x05"))

        def broken(target):
            raise OSError(5)

        self.sink.commit_frame = broken
        self.two_scans()
        self.assertEqual(fs.listdir(self.dir), ["l.pgm"])  # not durable: the file stays
        self.sink.busy_ms = 100
        self.assertEqual(self.two_scans(), 0)
        self.assertEqual(fs.listdir(self.dir), ["l.pgm"])

    def test_refused_file_set_aside(self):
        self.put("m.pgm", pgm(1, 1, 255, b"\x05"))

        def refuse(header):
            raise FrameError("geometry not allowed", 6)

        self.sink.begin_frame = refuse
        self.two_scans()
        self.assertEqual(fs.listdir(fs.join(self.dir, "failed")), ["m.pgm"])
