"""Part 10 meta writing/reading and the streaming Explicit -> Implicit VR LE data set reader."""

import io
import struct
import unittest

from modgate.dicom import part10
from modgate.errors import EncodeError


def explicit(group, elem, vr, value):
    if vr in part10.LONG_VRS:
        return struct.pack("<HH2sHL", group, elem, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, elem, vr, len(value)) + value


def implicit(group, elem, value, length=None):
    return struct.pack("<HHL", group, elem, len(value) if length is None else length) + value


def item(body, length=None):
    return struct.pack("<HHL", 0xFFFE, 0xE000, len(body) if length is None else length) + body


UNDEF = 0xFFFFFFFF
ITEM_END = struct.pack("<HHL", 0xFFFE, 0xE00D, 0)
SEQ_END = struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)


def part10_file(dataset):
    f = io.BytesIO()
    part10.write_meta(f, "1.2.840.10008.5.1.4.1.1.7", "1.2.3.4", part10.EXPLICIT_VR_LE)
    f.write(dataset)
    f.seek(0)
    return f


def drain(reader, chunk):
    out = bytearray()
    buf = bytearray(chunk)
    mv = memoryview(buf)
    while True:
        n = reader.readinto(mv)
        if not n:
            return bytes(out)
        out += buf[:n]


class TestMeta(unittest.TestCase):
    def test_meta_round_trip(self):
        f = io.BytesIO()
        n = part10.write_meta(f, "1.2.840.10008.5.1.4.1.1.7", "1.2.3.45", part10.EXPLICIT_VR_LE)
        data = f.getvalue()
        self.assertEqual(len(data), n)
        self.assertEqual(data[128:132], b"DICM")
        self.assertEqual(len(data) % 2, 0)
        group_len = struct.unpack_from("<L", data, 140)[0]
        self.assertEqual(144 + group_len, len(data))
        f.write(b"rest")
        f.seek(0)
        meta = part10.read_meta(f)
        self.assertEqual(meta["sop_class_uid"], "1.2.840.10008.5.1.4.1.1.7")
        self.assertEqual(meta["sop_instance_uid"], "1.2.3.45")
        self.assertEqual(meta["transfer_syntax_uid"], part10.EXPLICIT_VR_LE)
        self.assertEqual(meta["dataset_offset"], n)
        self.assertEqual(f.read(), b"rest")

    def test_meta_names_implementation(self):
        f = io.BytesIO()
        part10.write_meta(f, "1.2", "1.3")
        self.assertIn(part10.IMPLEMENTATION_CLASS_UID.encode(), f.getvalue())
        self.assertIn(b"MODGATE_010", f.getvalue())

    def test_not_part10(self):
        with self.assertRaises(EncodeError):
            part10.read_meta(io.BytesIO(bytes(128) + b"NOPE" + bytes(20)))
        with self.assertRaises(EncodeError):
            part10.read_meta(io.BytesIO(b"short"))


class TestDatasetReader(unittest.TestCase):
    def dataset(self):
        pixels = bytes(range(256)) * 5
        nested = explicit(0x0008, 0x0100, b"SH", b"X ")
        inner_sq = explicit(0x0008, 0x2220, b"SQ", item(nested))  # defined lengths everywhere
        outer_item = explicit(0x0008, 0x0100, b"SH", b"T-1 ") + inner_sq
        ds = explicit(0x0008, 0x0060, b"CS", b"OT")
        ds += explicit(0x0008, 0x2218, b"SQ", item(outer_item) + item(b""))
        ds += struct.pack("<HH2sHL", 0x0040, 0x0555, b"SQ", 0, UNDEF) + SEQ_END  # empty, undefined
        ds += explicit(0x0010, 0x0010, b"PN", b"Doe^J ")
        ds += explicit(0x7FE0, 0x0010, b"OB", pixels)
        nested_i = implicit(0x0008, 0x0100, b"X ")
        outer_i = implicit(0x0008, 0x0100, b"T-1 ") + implicit(0x0008, 0x2220, b"", UNDEF)
        outer_i += item(nested_i, UNDEF) + ITEM_END + SEQ_END
        expected = implicit(0x0008, 0x0060, b"OT")
        expected += implicit(0x0008, 0x2218, b"", UNDEF) + item(outer_i, UNDEF) + ITEM_END
        expected += item(b"", UNDEF) + ITEM_END + SEQ_END
        expected += implicit(0x0040, 0x0555, b"", UNDEF) + SEQ_END
        expected += implicit(0x0010, 0x0010, b"Doe^J ") + implicit(0x7FE0, 0x0010, pixels)
        return ds, expected

    def test_explicit_is_raw_copy(self):
        ds, _ = self.dataset()
        f = part10_file(ds)
        meta = part10.read_meta(f)
        for chunk in (1, 7, 4096):
            reader = part10.DatasetReader(f, meta, part10.EXPLICIT_VR_LE)
            self.assertEqual(drain(reader, chunk), ds)

    def test_implicit_reencoding_any_chunking(self):
        ds, expected = self.dataset()
        f = part10_file(ds)
        meta = part10.read_meta(f)
        for chunk in (1, 3, 8, 13, 64, 5000):
            reader = part10.DatasetReader(f, meta, part10.IMPLICIT_VR_LE, bytearray(16))
            self.assertEqual(drain(reader, chunk), expected)

    def test_length_is_counted_without_reading_and_rewinds(self):
        """length() is what readinto then gives, in either syntax: a P-DATA-TF header states the
        fragment's length before its bytes (the SCU streams PDUs larger than its buffer)."""
        ds, expected = self.dataset()
        f = part10_file(ds)
        meta = part10.read_meta(f)
        for syntax, want in ((part10.EXPLICIT_VR_LE, ds), (part10.IMPLICIT_VR_LE, expected)):
            reader = part10.DatasetReader(f, meta, syntax, bytearray(16))
            self.assertEqual(reader.length(), len(want))
            self.assertEqual(drain(reader, 13), want)

    def test_unsupported_target(self):
        f = part10_file(b"")
        meta = part10.read_meta(f)
        with self.assertRaises(EncodeError):
            part10.DatasetReader(f, meta, "1.2.840.10008.1.2.2")

    def test_truncated_value_is_an_error(self):
        f = part10_file(explicit(0x0010, 0x0010, b"PN", b"Doe^J ")[:-2])
        meta = part10.read_meta(f)
        reader = part10.DatasetReader(f, meta, part10.IMPLICIT_VR_LE)
        with self.assertRaises(EncodeError):
            drain(reader, 64)
