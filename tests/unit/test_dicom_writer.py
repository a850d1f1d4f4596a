"""Pixel layouts, UIDs, the test pattern and the streaming ObjectWriter, on every runtime."""

import io
import struct
import unittest

import support
from modgate.compat import MICROPYTHON
from modgate.dicom import attrs, iods, part10, pixels, uids
from modgate.dicom.writer import ObjectWriter
from modgate.errors import ConfigError, EncodeError
from modgate.port import fs
from modgate.testpattern import Pattern

# MicroPython's default test heap holds a set of ~1,000 UIDs; tests/host runs 100,000 on CPython.
PER_BOOT = 15 if MICROPYTHON else 100


def context(**extra):
    ctx = {"study_instance_uid": "1.2.3", "series_instance_uid": "1.2.3.4", "now": (2026, 11, 27, 9, 8, 7),
           "clock_set": True, "patient_name": "Doe^Jane", "patient_orientation": "A\\F",
           "conversion_type": "DI", "burned_in_annotation": "NO", "frame_time_ms": "100",
           "pixel_spacing": "0.2\\0.2", "laterality": "U"}
    for key in extra:
        ctx[key] = extra[key]
    return ctx


def elements(data):
    """{tag: (vr, value bytes)} of an Explicit VR LE Part 10 object (no sequences with items)."""
    f = io.BytesIO(data)
    meta = part10.read_meta(f)
    pos = meta["dataset_offset"]
    out = {}
    while pos < len(data):
        group, elem, vr = struct.unpack_from("<HH2s", data, pos)
        if vr in part10.LONG_VRS:
            length = struct.unpack_from("<L", data, pos + 8)[0]
            pos += 12
        else:
            length = struct.unpack_from("<H", data, pos + 6)[0]
            pos += 8
        out[(group << 16) | elem] = (vr, data[pos:pos + length])
        pos += length
    return out


def encode(iod, fmt, width, height, frames=1, chunk=None, ctx=None, bits=None, increments=None):
    lay = pixels.layout(fmt, width, height, bits)
    pattern = Pattern(fmt, width, height, bits)
    out = io.BytesIO()
    w = ObjectWriter(out, iod, lay, ctx or context(), uids.UidGenerator("1.2.826.0.1.3680043.10.1", "7", 1))
    w.begin()
    for frame in range(frames):
        data = b"".join([pattern.row(y, frame) for y in range(height)])
        step = chunk or len(data)
        for i in range(0, len(data), step):
            w.write_pixels(data[i:i + step])
        w.end_frame(increments[frame] if increments else None)
    uid = w.finish()
    return out.getvalue(), uid


class TestLayout(unittest.TestCase):
    def test_formats(self):
        lay = pixels.layout("GRAY16", 3, 5, 12)
        self.assertEqual((lay.bits_allocated, lay.bits_stored, lay.high_bit), (16, 12, 11))
        self.assertEqual((lay.input_frame_bytes, lay.stored_frame_bytes), (30, 30))
        lay = pixels.layout("RGB565", 3, 5)
        self.assertEqual((lay.samples_per_pixel, lay.photometric, lay.planar_configuration), (3, "RGB", 0))
        self.assertEqual((lay.input_frame_bytes, lay.stored_frame_bytes), (30, 45))
        lay = pixels.layout("YUYV", 4, 1)
        self.assertEqual((lay.photometric, lay.input_frame_bytes, lay.stored_frame_bytes),
                         ("RGB", 8, 12))
        self.assertEqual(pixels.layout("GRAY8", 1, 1).planar_configuration, None)

    def test_refusals(self):
        for args in (("GRAY16", 4, 4, 13), ("GRAY8", 4, 4, 12), ("YUYV", 5, 4, None), ("BGR", 4, 4, None),
                     ("GRAY8", 0, 4, None), ("GRAY8", 4, 70000, None)):
            with self.assertRaises(EncodeError):
                pixels.layout(*args)

    def test_choose(self):
        uid = iods.choose("mf-gray16", "GRAY16", True)["sop_class_uid"]
        self.assertEqual(uid, "1.2.840.10008.5.1.4.1.1.7.3")
        for args in (("sc", "GRAY8", True), ("mf-rgb", "GRAY8", False), ("us", "GRAY16", False),
                     ("xx", "GRAY8", 0)):
            with self.assertRaises(EncodeError) as cm:
                iods.choose(*args)
            self.assertIn("not supported", str(cm.exception))
        self.assertEqual(len(iods.STORAGE_SOP_CLASSES), len(iods.IODS))

    def test_attribute_tables_sorted(self):
        # attributes() merges the tables, so each must be in ascending tag order (PS3.5 7.1).
        for table in [attrs._COMMON] + list(attrs._TABLES.values()):
            tags = [int(line[:8], 16) for line in table.split("\n")]
            self.assertEqual(tags, sorted(tags))
        lay = pixels.layout("GRAY16", 4, 4)
        for name in iods.IODS:
            if "GRAY16" in iods.IODS[name]["formats"]:
                tags = [a[0] for a in iods.attributes(name, lay, context(), "1.2.3.5")]
                self.assertEqual(tags, sorted(tags))
                self.assertEqual(len(tags), len(set(tags)))

    def test_converters(self):
        conv, unit_in, unit_out = pixels.converter("RGB565")
        dst = bytearray(9)
        conv(memoryview(b"\xff\xff\x00\xf8\x1f\x00"), 2, dst)
        self.assertEqual(bytes(dst[:6]), b"\xff\xff\xff\xff\x00\x00")
        conv(b"\xe0\x07", 1, dst)
        self.assertEqual(bytes(dst[:3]), b"\x00\xff\x00")
        conv, unit_in, unit_out = pixels.converter("YUYV")
        self.assertEqual((unit_in, unit_out), (4, 6))
        dst = bytearray(12)
        # BT.601 studio range: black 16 and white 235 with neutral chroma; then red (81, 90, 240)
        # and a chroma pair beyond the legal range, clamped.
        conv(b"\x10\x80\xeb\x80" + b"\x51\x5a\x51\xf0", 2, dst)
        self.assertEqual(bytes(dst), b"\x00\x00\x00\xff\xff\xff" + b"\xff\x00\x00\xff\x00\x00")
        conv(b"\x7e\x00\x7e\xff", 1, dst)
        self.assertEqual(bytes(dst[:6]), b"\xff\x4b\x00\xff\x4b\x00")  # R 331 clamped, G 75, B < 0
        self.assertIsNone(pixels.converter("GRAY16"))


class TestUids(unittest.TestCase):
    def test_forms(self):
        g = uids.UidGenerator("1.2.826.0.1.3680043.10.1.", "0042", 3)
        self.assertEqual(g.new(), "1.2.826.0.1.3680043.10.1.42.3.1")
        g = uids.UidGenerator(None, "SN12345", 7)
        first = g.new()
        self.assertTrue(first.startswith("2.25."))
        self.assertTrue(uids.valid(first))
        self.assertNotEqual(first, g.new())
        self.assertFalse(uids.valid("1.02.3"))
        self.assertFalse(uids.valid("1.2." + "9" * 70))

    def test_bad_config(self):
        for root, serial in (("1.02", "1"), ("1.2", ""), ("1.2", "S/N"), ("1." * 30 + "1", "1")):
            with self.assertRaises(ConfigError):
                uids.UidGenerator(root, serial, 1)

    def test_unique_across_reboots_and_devices(self):
        seen = set()
        count = 0
        for root in (None, "1.2.826.0.1.3680043.10.1"):
            for serial in ("1", "2", "ZZ9"):
                for boot in range(1, 11):
                    g = uids.UidGenerator(root, serial, boot)
                    for _ in range(PER_BOOT):
                        uid = g.new()
                        self.assertTrue(len(uid) <= 64 and uids.valid(uid), uid)
                        seen.add(uid)
                        count += 1
        self.assertEqual(len(seen), count)

    def test_boot_counter_persists(self):
        d = support.scratch_dir("uids")
        self.addCleanup(support.remove_tree, d)
        path = fs.join(d, "boot")
        self.assertEqual([uids.next_boot_count(path) for _ in range(3)], [1, 2, 3])


class TestPattern(unittest.TestCase):
    def test_same_bytes_everywhere(self):
        # Literal bytes: the host computes expected pixels from this module on CPython.
        self.assertEqual(Pattern("GRAY8", 6, 3).row(0), b"\x00-[\x95\xb6\xf6")
        self.assertEqual(Pattern("GRAY8", 6, 3).row(1, 1), b"\xb6\xf6\x00-[\x95")
        self.assertEqual(Pattern("GRAY16", 3, 2, 12).row(1), b"\x70\x05\xe0\x0a\x00\x00")
        self.assertEqual(Pattern("YUYV", 4, 2).row(1), b"\x80\x25\xc0\xda\x00\x00\x40\xff")

    def test_wide_rows_repeat_the_period(self):
        p = Pattern("RGB888", 1500, 2)
        row = p.row(1)
        self.assertEqual(len(row), 4500)
        self.assertEqual(row[:2046], row[2046:4092])  # 682 pixels of 3 bytes


class TestWriter(unittest.TestCase):
    def test_single_frame_odd_size_is_padded(self):
        data, uid = encode("sc", "GRAY8", 5, 3)
        self.assertEqual(len(data) % 2, 0)
        els = elements(data)
        self.assertEqual(els[0x00080018][1].rstrip(b"\x00").decode(), uid)
        vr, pix = els[0x7FE00010]
        self.assertEqual((vr, len(pix)), (b"OB", 16))
        p = Pattern("GRAY8", 5, 3)
        self.assertEqual(pix[:15], p.row(0) + p.row(1) + p.row(2))
        self.assertEqual(els[0x00280010][1], b"\x03\x00")
        self.assertNotIn(0x00280008, els)
        self.assertNotIn(0x00080005, els)

    def test_multi_frame_counts_patched_in_place(self):
        data, _ = encode("mf-gray16", "GRAY16", 7, 3, frames=4, bits=10)
        els = elements(data)
        self.assertEqual(els[0x00280008][1].strip(), b"4")
        self.assertEqual(len(els[0x00280008][1]), iods.FRAMES_FIELD)
        vr, pix = els[0x7FE00010]
        self.assertEqual((vr, len(pix)), (b"OW", 4 * 7 * 3 * 2))
        self.assertEqual(els[0x00280101][1], b"\x0a\x00")

    def test_one_frame_series_drops_frame_pointer(self):
        # PS3.3 C.8.6.3: Frame Increment Pointer (and so Frame Time) only when more than one frame.
        one_data = encode("mf-gray8", "GRAY8", 5, 3, frames=1)[0]
        two_data = encode("mf-gray8", "GRAY8", 5, 3, frames=2)[0]
        one, two = elements(one_data), elements(two_data)
        self.assertNotIn(0x00280009, one)
        self.assertNotIn(0x00181063, one)
        self.assertEqual(one[0x00280008][1].strip(), b"1")
        # Image Comments, empty in two, took the 12 + 12 bytes: spaces only (no comment).
        self.assertEqual(two[0x00204000][1], b"")
        self.assertEqual(one[0x00204000][1], b" " * 24)
        self.assertEqual(len(one_data), len(two_data) - 14)  # pixels: 15 + 1 pad against 30
        self.assertEqual(len(one[0x7FE00010][1]), 16)
        self.assertEqual(two[0x00280009][1], b"\x18\x00\x63\x10")
        self.assertEqual(two[0x00181063][1], b"100 ")
        # US Multi-frame keeps it even for one frame (C.8.5.6.1: Type 1 there).
        self.assertIn(0x00280009, elements(encode("us-mf", "GRAY8", 5, 3, frames=1)[0]))

    def test_frame_time_vector_from_arrival_times(self):
        # PS3.3 C.7.6.5.1.2: increments in ms, the first 0; reserved for 5 frames, 3 came.
        ctx = context(frame_time_ms=None, max_frames=5, image_comments="seen")
        els = elements(encode("mf-gray8", "GRAY8", 5, 3, frames=3, ctx=ctx, increments=[None, 33, 1250])[0])
        self.assertEqual(els[0x00181065][1], b"      0\\     33\\   1250 ")
        self.assertNotIn(0x00181063, els)
        self.assertEqual(els[0x00280009][1], b"\x18\x00\x65\x10")
        self.assertEqual(els[0x00204000][1], b"seen" + b" " * 16)  # the two unused values' 16 bytes
        self.assertEqual(els[0x00280008][1].strip(), b"3")
        timed = context(frame_time_ms=None, max_frames=2)
        full = elements(encode("us-mf", "GRAY8", 5, 3, frames=2, ctx=timed, increments=[0, 40])[0])
        self.assertEqual((full[0x00181065][1], full[0x00204000][1]), (b"      0\\     40 ", b""))
        one = elements(encode("mf-gray8", "GRAY8", 5, 3, frames=1, ctx=ctx)[0])
        self.assertNotIn(0x00181065, one)
        self.assertEqual(one[0x00204000][1], b"seen" + b" " * (8 + 40 + 12))

    def test_frame_timing_is_required_and_bounded(self):
        lay = pixels.layout("GRAY8", 2, 2)
        gen = uids.UidGenerator(None, "1", 1)
        with self.assertRaises(EncodeError) as cm:
            ObjectWriter(io.BytesIO(), "mf-gray8", lay, context(frame_time_ms=None), gen).begin()
        self.assertIn("frame_time_ms", str(cm.exception))
        w = ObjectWriter(io.BytesIO(), "mf-gray8", lay, context(frame_time_ms=None, max_frames=2), gen)
        w.begin()
        w.write_pixels(b"1234")
        w.end_frame()  # the first frame's increment is 0 by definition
        w.write_pixels(b"1234")
        with self.assertRaises(EncodeError):
            w.end_frame()  # no arrival time for the second
        w.end_frame(10)
        w.write_pixels(b"1234")
        with self.assertRaises(EncodeError):
            w.end_frame(10)  # a third frame: beyond max_frames
        with self.assertRaises(EncodeError):  # cannot shrink into Image Comments (LT 10240)
            big = context(frame_time_ms=None, max_frames=1300)
            ObjectWriter(io.BytesIO(), "mf-gray8", lay, big, gen).begin()

    def test_conversion_independent_of_chunking(self):
        for fmt in ("RGB565", "YUYV"):
            whole, _ = encode("sc", fmt, 10, 3)
            for chunk in (1, 3, 7):
                data, _ = encode("sc", fmt, 10, 3, chunk=chunk)
                self.assertEqual(elements(data)[0x7FE00010], elements(whole)[0x7FE00010])

    def test_the_character_set_follows_the_context_alone(self):
        # The writer declares UTF-8 from the context's values only: that holds while every
        # value the attribute tables give themselves is ASCII.
        from modgate.dicom import attrs

        for text in [attrs._COMMON] + list(attrs._TABLES.values()):
            self.assertTrue(all(ord(ch) < 128 for ch in text))
        plain = elements(encode("sc", "GRAY8", 2, 2, ctx=context(patient_name="Doe^J"))[0])
        self.assertNotIn(0x00080005, plain)

    def test_text_values(self):
        ctx = context(patient_name="Müller^Zoë", patient_id="ABC", institution_name="St Mary's",
                      patient_sex="F")
        els = elements(encode("sc", "GRAY8", 2, 2, ctx=ctx)[0])
        self.assertEqual(els[0x00080005][1], b"ISO_IR 192")
        self.assertEqual(els[0x00100010][1], b"M\xc3\xbcller^Zo\xc3\xab")  # 12 bytes: no pad
        odd = elements(encode("sc", "GRAY8", 2, 2, ctx=context(patient_name="Doe^J"))[0])
        self.assertEqual(odd[0x00100010][1], b"Doe^J ")
        self.assertEqual(els[0x00100020][1], b"ABC ")
        self.assertEqual(els[0x00080080][1], b"St Mary's ")
        self.assertEqual(els[0x00100040][1], b"F ")
        self.assertEqual(els[0x00100030][1], b"")  # Type 2, unknown: present and empty
        self.assertEqual(els[0x00080020][1], b"20261127")

    def test_bad_values_are_refused_not_changed(self):
        for key, value in (("patient_sex", "f"), ("institution_name", "St\\Mary"), ("patient_id", "ID\\1"),
                           ("accession_number", "A" * 17), ("patient_birth_date", "19991301"),
                           ("study_instance_uid", "1.2.3.04.abc"), ("modality", "ot"), ("laterality", "X"),
                           ("pixel_spacing", "0.1"), ("frame_time_ms", "-4"), ("tz", "+25")):
            with self.assertRaises(EncodeError) as cm:
                iod = "mf-gray8" if key == "frame_time_ms" else "sc"
                encode(iod, "GRAY8", 2, 2, ctx=context(**{key: value}))
            self.assertIn(key, str(cm.exception))

    def test_required_facts_are_refused_when_unknown(self):
        for iod, key in (("sc", "conversion_type"), ("mf-rgb", "burned_in_annotation"),
                         ("dx", "pixel_spacing"), ("dx", "laterality"), ("dx", "burned_in_annotation"),
                         ("dx", "patient_orientation")):
            fmt = "RGB888" if iod == "mf-rgb" else "GRAY8"
            with self.assertRaises(EncodeError) as cm:
                encode(iod, fmt, 2, 2, ctx=context(**{key: None}))
            self.assertIn(key, str(cm.exception))
        # Type 3 where the IOD allows: absent, never a made-up value.
        unknown = context(burned_in_annotation=None, pixel_spacing=None)
        els = elements(encode("us", "GRAY8", 2, 2, ctx=unknown)[0])
        for tag in (0x00280301, 0x00280030, 0x00181164, 0x00280034, 0x00204000, 0x00080064):
            self.assertNotIn(tag, els)

    def test_calibration_and_aspect_ratio(self):
        sc = elements(encode("sc", "GRAY8", 2, 2)[0])
        self.assertEqual(sc[0x00280030][1], b"0.2\\0.2 ")
        self.assertNotIn(0x00280034, sc)  # spacing known: aspect follows from it (C.7.6.3 Type 1C)
        wide = elements(encode("sc", "GRAY8", 2, 2, ctx=context(pixel_spacing=None,
                                                                pixel_aspect_ratio="4\\3"))[0])
        self.assertEqual(wide[0x00280034][1], b"4\\3 ")
        square = elements(encode("sc", "GRAY8", 2, 2, ctx=context(pixel_spacing=None,
                                                                  pixel_aspect_ratio="2\\2"))[0])
        self.assertNotIn(0x00280034, square)
        dx = elements(encode("dx", "GRAY8", 2, 2, ctx=context(laterality="R", body_part="KNEE"))[0])
        self.assertEqual(dx[0x00181164][1], b"0.2\\0.2 ")
        self.assertNotIn(0x00280030, dx)
        self.assertNotIn(0x00180015, dx)  # its Anatomic Region Sequence would need a code
        self.assertEqual(dx[0x00200062][1], b"R ")
        self.assertEqual(dx[0x00080008][1], b"ORIGINAL\\PRIMARY\\ ")  # empty third value (C.8.11.3.1.1)

    def test_laterality(self):
        def lat(**extra):
            return elements(encode("us", "GRAY8", 2, 2, ctx=context(**extra))[0]).get(0x00200060)

        self.assertEqual(lat(laterality="L", body_part="KNEE"), (b"CS", b"L "))
        self.assertIsNone(lat(laterality="U", body_part="CHEST"))  # known unpaired: absent
        self.assertEqual(lat(laterality="U"), (b"CS", b""))  # no body part: paired or not is unknown
        self.assertEqual(lat(laterality=None, body_part="KNEE"), (b"CS", b""))

    def test_timezone_and_study_time(self):
        ctx = context(now=(2026, 12, 31, 23, 30, 5), study_started=(2026, 12, 31, 22, 0, 0), tz="+0100")
        els = elements(encode("sc", "GRAY8", 2, 2, ctx=ctx)[0])
        self.assertEqual(els[0x00080201][1], b"+0100 ")
        self.assertEqual((els[0x00080023][1], els[0x00080033][1]), (b"20270101", b"003005"))
        self.assertEqual((els[0x00080020][1], els[0x00080030][1]), (b"20261231", b"230000"))
        west = elements(encode("sc", "GRAY8", 2, 2, ctx=context(now=(2024, 3, 1, 2, 0, 0), tz="-0330"))[0])
        self.assertEqual((west[0x00080023][1], west[0x00080033][1]), (b"20240229", b"223000"))
        utc = elements(encode("sc", "GRAY8", 2, 2)[0])
        self.assertEqual(utc[0x00080201][1], b"+0000 ")
        named = context(study_date="20260101", study_time="0815")
        given = elements(encode("sc", "GRAY8", 2, 2, ctx=named)[0])
        self.assertEqual((given[0x00080020][1], given[0x00080030][1]), (b"20260101", b"0815"))

    def test_local_time(self):
        self.assertEqual(attrs.local_time((2000, 2, 28, 23, 0, 9), "+0100"), (2000, 2, 29, 0, 0, 9))
        self.assertEqual(attrs.local_time((1900, 3, 1, 0, 0, 0), "-0001"), (1900, 2, 28, 23, 59, 0))
        self.assertEqual(attrs.local_time((2026, 1, 1, 5, 0, 0), "+1400"), (2026, 1, 1, 19, 0, 0))
        self.assertEqual(attrs.local_time((2026, 1, 1, 5, 0, 0), "-1200"), (2025, 12, 31, 17, 0, 0))

    def test_unset_clock_still_valid_and_logged(self):
        from modgate import log

        data, _ = encode("sc", "GRAY8", 2, 2, ctx=context(now=(2000, 1, 1, 0, 0, 5), clock_set=False))
        els = elements(data)
        self.assertEqual(els[0x00080020][1], b"20000101")
        self.assertEqual(els[0x00080030][1], b"000005")
        self.assertTrue([line for line in log.tail(5) if "clock is not set" in str(line)])

    def test_misuse_is_refused(self):
        lay = pixels.layout("GRAY8", 2, 2)
        w = ObjectWriter(io.BytesIO(), "sc", lay, context(), uids.UidGenerator(None, "1", 1))
        w.begin()
        with self.assertRaises(EncodeError):
            w.write_pixels(b"12345")
        w.write_pixels(b"123")
        with self.assertRaises(EncodeError):
            w.end_frame()
        with self.assertRaises(EncodeError):
            w.finish()
        w.write_pixels(b"4")
        w.end_frame()
        with self.assertRaises(EncodeError):
            w.write_pixels(b"1")  # a second frame on a single-frame IOD
        with self.assertRaises(EncodeError):
            ObjectWriter(io.BytesIO(), "dx", lay, {"study_instance_uid": "1.2", "series_instance_uid": "1.3"},
                         uids.UidGenerator(None, "1", 1)).begin()

    def test_modality_as_written(self):
        lay = pixels.layout("GRAY8", 2, 2)
        gen = uids.UidGenerator(None, "1", 1)
        self.assertEqual(ObjectWriter(io.BytesIO(), "dx", lay, context(modality="OT"), gen).modality, "DX")
        self.assertEqual(ObjectWriter(io.BytesIO(), "sc", lay, context(modality="XA"), gen).modality, "XA")
        self.assertEqual(ObjectWriter(io.BytesIO(), "sc", lay, context(), gen).modality, "OT")

    def test_implicit_stream_of_written_object(self):
        data, _ = encode("mf-rgb", "RGB565", 3, 3, frames=2)
        f = io.BytesIO(data)
        meta = part10.read_meta(f)
        self.assertEqual(meta["sop_class_uid"], "1.2.840.10008.5.1.4.1.1.7.4")
        reader = part10.DatasetReader(f, meta, part10.IMPLICIT_VR_LE, bytearray(16))
        buf = bytearray(100)
        total = 0
        while True:
            n = reader.readinto(memoryview(buf))
            if not n:
                break
            total += n
        long_vrs = 0
        for vr, _ in elements(data).values():
            if vr in part10.LONG_VRS:
                long_vrs += 1
        # Implicit headers are 8 bytes; explicit long-VR headers are 12.
        self.assertEqual(total, len(data) - meta["dataset_offset"] - 4 * long_vrs)
