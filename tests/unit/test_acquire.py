"""The acquisition sink: frames into durable spool objects, series into one multi-frame object."""

import unittest

import support
from modgate.acquire import Acquirer
from modgate.dicom import uids
from modgate.dicom.dsreader import read_meta
from modgate.errors import FrameError, SpoolFull
from modgate.ingest.frameproto import NAK_REFUSED, NAK_SERIES
from modgate.port import fs
from modgate.spool.queue import Spool


class Contexts:
    """The device's context provider, reduced to what the sink asks of it."""

    def __init__(self, uid_gen):
        self.uid_gen = uid_gen
        self.study = uid_gen.new()

    def for_acquisition(self, header_context, source=""):
        # The facts a source must state for the SC objects (issue 16: nothing is made up).
        context = {"patient_name": "TEST^ACQ", "patient_id": "A1", "study_instance_uid": self.study,
                   "conversion_type": "DI", "burned_in_annotation": "NO"}
        if header_context:
            context.update(header_context)
        context["now"] = (2026, 11, 27, 12, 0, 0)
        return context


def header(kind="single", width=5, height=3, fmt="GRAY8", series_id=0, index=0, payload=None):
    size = width * height * (2 if fmt == "GRAY16" else 1)
    return {
        "version": 1,
        "kind": kind,
        "sequence": index,
        "series_id": series_id,
        "frame_index": index,
        "width": width,
        "height": height,
        "pixel_format": fmt,
        "bits_stored": None,
        "payload_length": size if payload is None else payload,
        "context": None,
        "source": "test",
    }


class TestAcquirer(unittest.TestCase):
    def setUp(self):
        self.dir = support.scratch_dir("acq")
        self.addCleanup(support.remove_tree, self.dir)
        self.spool = Spool(fs.join(self.dir, "spool"), 1 << 24, destinations=["archive"])
        self.spool.recover()
        self.uid_gen = uids.UidGenerator("1.2.3", "7", 1)
        self.sink = self.make_sink({"grouping": "series", "series_timeout_ms": 60000, "iod": "sc"})

    def make_sink(self, settings):
        return Acquirer(self.spool, self.uid_gen, Contexts(self.uid_gen), settings, self.dir)

    def send(self, hdr, pixels):
        target = self.sink.begin_frame(hdr)
        target.write(memoryview(pixels))
        return self.sink.commit_frame(target)

    def stored(self):
        out = {}
        for entry in self.spool.list(100):
            path = self.spool.data_path(entry["id"])
            with fs.open_file(path, "rb") as f:
                meta = read_meta(f)
            out[meta["sop_instance_uid"]] = (meta, fs.read_bytes(path))
        return out

    def test_single_frame_is_a_durable_spool_object(self):
        uid = self.send(header(), bytes(range(15)))
        objects = self.stored()
        self.assertEqual(list(objects), [uid])
        meta, data = objects[uid]
        self.assertEqual(meta["sop_class_uid"], "1.2.840.10008.5.1.4.1.1.7")
        self.assertIn(bytes(range(15)), data)

    def test_single_frames_of_a_source_share_a_series_and_count_up(self):
        first = self.send(header(), bytes(15))
        second = self.send(header(index=1), bytes(15))
        objects = self.stored()
        self.assertIn(b"\x20\x00\x13\x00IS\x02\x001 ", objects[first][1])  # (0020,0013) IS "1 "
        self.assertIn(b"\x20\x00\x13\x00IS\x02\x002 ", objects[second][1])  # (0020,0013) IS "2 "

    def test_series_becomes_one_multiframe_object_at_its_end(self):
        frames = [bytes([i]) * 15 for i in range(3)]
        uids_seen = set()
        uids_seen.add(self.send(header("series_start", series_id=9, index=0), frames[0]))
        uids_seen.add(self.send(header("series_frame", series_id=9, index=1), frames[1]))
        self.assertEqual(self.stored(), {})  # not an object until the series closes
        uids_seen.add(self.send(header("series_end", series_id=9, index=2), frames[2]))
        self.assertEqual(len(uids_seen), 1)
        [(meta, data)] = list(self.stored().values())
        self.assertEqual(meta["sop_instance_uid"], uids_seen.pop())
        self.assertEqual(meta["sop_class_uid"], "1.2.840.10008.5.1.4.1.1.7.2")
        self.assertIn(b"".join(frames), data)

    def test_bare_series_end_closes_the_series(self):
        self.send(header("series_start", series_id=4), b"\x01" * 15)
        uid = self.send(header("series_end", series_id=4, index=1, payload=0), b"")
        self.assertEqual(list(self.stored()), [uid])
        self.assertEqual(self.sink.open_series, {})

    def test_bare_end_without_an_open_series_is_refused(self):
        with self.assertRaises(FrameError) as caught:
            self.sink.begin_frame(header("series_end", series_id=5, payload=0))
        self.assertEqual(caught.exception.code, NAK_SERIES)

    def test_geometry_change_inside_a_series_is_refused(self):
        self.send(header("series_start", series_id=3), b"\x02" * 15)
        with self.assertRaises(FrameError) as caught:
            self.sink.begin_frame(header("series_frame", series_id=3, index=1, width=6))
        self.assertEqual(caught.exception.code, NAK_SERIES)

    def test_unsupported_combination_is_refused_with_a_reason(self):
        sink = self.make_sink({"grouping": "series", "iod": "us"})
        with self.assertRaises(FrameError) as caught:
            sink.begin_frame(header(fmt="GRAY16"))
        self.assertEqual(caught.exception.code, NAK_REFUSED)
        self.assertEqual(self.stored(), {})

    def test_dx_takes_patient_orientation_from_the_context(self):
        contexts = Contexts(self.uid_gen)
        plain = contexts.for_acquisition

        contexts.for_acquisition = lambda extra, source: dict(
            plain(extra), patient_orientation="A\\F", pixel_spacing="0.1\\0.1", laterality="U")
        sink = Acquirer(self.spool, self.uid_gen, contexts, {"grouping": "series", "iod": "dx"}, self.dir)
        target = sink.begin_frame(header(fmt="GRAY16"))
        target.write(memoryview(bytes(30)))
        uid = sink.commit_frame(target)
        meta, data = self.stored()[uid]
        self.assertEqual(meta["sop_class_uid"], "1.2.840.10008.5.1.4.1.1.1.1")
        self.assertIn(b"A\\F", data)

    def test_aborted_frame_leaves_nothing_behind(self):
        target = self.sink.begin_frame(header())
        target.write(memoryview(b"\x00" * 7))
        self.sink.abort_frame(target)
        self.sink.abort_frame(target)  # the receiver may abort after a failed commit: harmless
        self.assertEqual(self.stored(), {})
        self.assertEqual(fs.listdir(fs.join(self.dir, "spool/in")), [])

    def test_aborted_series_frame_keeps_the_acknowledged_ones(self):
        uid = self.send(header("series_start", series_id=8), b"\x05" * 15)
        target = self.sink.begin_frame(header("series_frame", series_id=8, index=1))
        target.write(memoryview(b"\x06" * 15))
        self.sink.abort_frame(target)
        self.send(header("series_end", series_id=8, index=1), b"\x07" * 15)
        [(meta, data)] = list(self.stored().values())
        self.assertEqual(meta["sop_instance_uid"], uid)
        self.assertIn(b"\x05" * 15 + b"\x07" * 15, data)
        self.assertNotIn(b"\x06" * 15, data)

    def test_open_series_survives_a_restart(self):
        uid = self.send(header("series_start", series_id=2), b"\x09" * 15)
        self.send(header("series_frame", series_id=2, index=1), b"\x0a" * 15)
        # Power cut: a new sink on the same flash closes the series with the acknowledged frames.
        restarted = self.make_sink({"grouping": "series", "iod": "sc"})
        restarted.recover()
        [(meta, data)] = list(self.stored().values())
        self.assertEqual(meta["sop_instance_uid"], uid)
        self.assertIn(b"\x09" * 15 + b"\x0a" * 15, data)
        self.assertEqual(fs.listdir(fs.join(self.dir, "series")), [])

    def test_series_times_out_and_delivers_what_arrived(self):
        sink = self.make_sink({"grouping": "series", "series_timeout_ms": 0, "iod": "sc"})
        target = sink.begin_frame(header("series_start", series_id=6))
        target.write(memoryview(b"\x03" * 15))
        uid = sink.commit_frame(target)
        sink.source_lost("test")
        sink.tick()
        self.assertEqual(list(self.stored()), [uid])

    def test_full_spool_answers_busy(self):
        spool = Spool(fs.join(self.dir, "small"), 4096, high_pct=50, low_pct=25, destinations=["a"])
        spool.recover()
        sink = Acquirer(spool, self.uid_gen, Contexts(self.uid_gen), {"grouping": "series"}, self.dir)
        with self.assertRaises(SpoolFull):
            for i in range(10):
                target = sink.begin_frame(header(width=40, height=40))
                target.write(memoryview(b"\x01" * 1600))
                sink.commit_frame(target)
        self.assertEqual(fs.listdir(fs.join(self.dir, "small/in")), [])  # no partial object left
